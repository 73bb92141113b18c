#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/progress.h"
#include "util/util.h"

#define BAR_MIN 10
#define BAR_MAX 30
#define TTY_REDRAW_MS 100
#define PLAIN_INTERVAL_MS 10000
#define RATE_SAMPLE_MS 500
#define RATE_TAU_MS 3000.0

void cli_fmt_bytes(uint64_t n, char out[16])
{
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        double v;
        size_t u = 0;

        if (n < 1024) {
                snprintf(out, 16, "%u B", (unsigned)n);
                return;
        }
        v = (double)n / 1024.0;
        while (v >= 1024.0 && u + 1 < CTA_ARRAY_SIZE(units)) {
                v /= 1024.0;
                u++;
        }
        /* One decimal below 100 keeps the width steady while redrawing. */
        if (v < 99.95)
                snprintf(out, 16, "%.1f %s", v, units[u]);
        else
                snprintf(out, 16, "%.0f %s", v, units[u]);
}

void cli_fmt_duration(int64_t sec, char out[24])
{
        if (sec < 0)
                sec = 0;
        if (sec >= 3600)
                snprintf(out, 24, "%lld:%02d:%02d", (long long)(sec / 3600),
                         (int)(sec / 60 % 60), (int)(sec % 60));
        else
                snprintf(out, 24, "%d:%02d", (int)(sec / 60), (int)(sec % 60));
}

/* Columns of a UTF-8 string: one per code point (continuation bytes do not
 * count). Wide characters are rare in phase texts; this errs on the short
 * side at worst. */
static size_t utf8_cols(const char *s, size_t len)
{
        size_t n = 0;
        for (size_t i = 0; i < len; i++)
                if (((unsigned char)s[i] & 0xC0) != 0x80)
                        n++;
        return n;
}

/* Byte length of the longest prefix of s that has at most `cols` columns and
 * ends on a code point boundary. */
static size_t utf8_prefix(const char *s, size_t len, size_t cols)
{
        size_t n = 0, i;
        for (i = 0; i < len; i++) {
                if (((unsigned char)s[i] & 0xC0) != 0x80) {
                        if (n == cols)
                                break;
                        n++;
                }
        }
        return i;
}

/* Copy the phase text with control characters replaced, so a hostile node
 * cannot move the cursor or clear the terminal through a progress text. */
static size_t clean_phase(const char *in, char *out, size_t cap)
{
        size_t n = 0;
        if (!in)
                in = "";
        for (; *in && n + 1 < cap; in++) {
                unsigned char c = (unsigned char)*in;
                out[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
        /* Do not leave a cut multi-byte sequence at the end. */
        if (*in && n > 0) {
                size_t k = n;
                while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
                        k--;
                if (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0xC0)
                        n = k - 1;
        }
        out[n] = '\0';
        return n;
}

static void tail_add(char *out, size_t cap, size_t *n, const char *item)
{
        int w = snprintf(out + *n, cap - *n, "%s%s", *n ? "  " : "", item);
        if (w > 0)
                *n += (size_t)w < cap - *n ? (size_t)w : cap - *n - 1;
}

/* The right-hand part: percent, bytes, rate, ETA; at most `parts` of the
 * known ones, dropped from the right. `pad` right-aligns the percent so a
 * redrawn line does not jitter. */
static size_t render_tail(const struct cli_progress_state *st, int parts, bool pad, char *out,
                          size_t cap)
{
        char a[16], b[16], item[64];
        size_t n = 0;
        int k = 0;

        out[0] = '\0';
        if (st->percent >= 0 && k++ < parts) {
                snprintf(item, sizeof(item), pad ? "%3d%%" : "%d%%",
                         st->percent > 100 ? 100 : st->percent);
                tail_add(out, cap, &n, item);
        }
        if ((st->total > 0 || st->done > 0) && k++ < parts) {
                cli_fmt_bytes(st->done, a);
                cli_fmt_bytes(st->total, b);
                snprintf(item, sizeof(item), st->total > 0 ? "%s / %s" : "%s", a, b);
                tail_add(out, cap, &n, item);
        }
        if (st->rate >= 0 && (st->total > 0 || st->done > 0) && k++ < parts) {
                cli_fmt_bytes((uint64_t)st->rate, a);
                snprintf(item, sizeof(item), "%s/s", a);
                tail_add(out, cap, &n, item);
        }
        if (st->eta_sec >= 0 && k++ < parts) {
                char d[24];
                cli_fmt_duration(st->eta_sec, d);
                snprintf(item, sizeof(item), "ETA %s", d);
                tail_add(out, cap, &n, item);
        }
        return n;
}

size_t cli_progress_render(const struct cli_progress_state *st, int width, bool bar, char *out,
                           size_t cap)
{
        char phase[160], tail[128];
        size_t plen, tlen, pcols, avail, n = 0;
        size_t limit = width > 0 ? (size_t)width - 1 : SIZE_MAX; /* the last column wraps */
        bool draw_bar = bar && st->percent >= 0;
        size_t bw = 0, phase_room = 0, reserve;
        int parts = 4;

        if (cap == 0)
                return 0;
        out[0] = '\0';
        plen = clean_phase(st->phase, phase, sizeof(phase));
        pcols = utf8_cols(phase, plen);

        /* Without a bar the percent follows the phase ("phase: 42%"); with a bar
         * it is the first item after the bar. Drop tail items from the right
         * until they fit next to a minimal bar and a readable part of the phase. */
        reserve = (draw_bar ? BAR_MIN + 3 : 0) + (pcols ? (pcols < 12 ? pcols : 12) + 2 : 0);
        for (;;) {
                tlen = render_tail(st, parts, draw_bar, tail, sizeof(tail));
                if (tlen + reserve <= limit || parts == 0)
                        break;
                parts--;
        }
        if (tlen > limit)
                tlen = 0, tail[0] = '\0';
        avail = limit - tlen;

        if (draw_bar) {
                /* "[bar]" plus a space before the tail. */
                size_t fixed = 2 + (tlen ? 1 : 0);
                if (avail < BAR_MIN + fixed) {
                        draw_bar = false;
                } else {
                        size_t room = avail - fixed;
                        size_t want_phase = pcols ? pcols + 1 : 0;
                        bw = room > want_phase ? room - want_phase : 0;
                        if (bw > BAR_MAX)
                                bw = BAR_MAX;
                        if (bw < BAR_MIN)
                                bw = BAR_MIN;
                        avail = room - bw;
                        phase_room = avail > 0 ? avail - 1 : 0; /* space before the bar */
                }
        }
        if (!draw_bar)
                phase_room = !tlen ? avail : avail >= 2 ? avail - 2 : 0; /* ": " */

        /* Phase text, shortened with "..." when needed. */
        if (pcols > 0) {
                if (pcols <= phase_room) {
                        n += (size_t)snprintf(out + n, cap - n, "%s", phase);
                } else if (phase_room >= 4) {
                        size_t cut = utf8_prefix(phase, plen, phase_room - 3);
                        n += (size_t)snprintf(out + n, cap - n, "%.*s...", (int)cut, phase);
                }
                if (n >= cap)
                        n = cap - 1;
        }
        if (draw_bar) {
                int pct = st->percent > 100 ? 100 : st->percent;
                size_t fill = bw * (size_t)pct / 100;
                if (n + bw + 4 < cap) {
                        if (n > 0)
                                out[n++] = ' ';
                        out[n++] = '[';
                        for (size_t i = 0; i < bw; i++)
                                out[n++] = i < fill ? '#' : '-';
                        out[n++] = ']';
                        out[n] = '\0';
                }
        }
        if (tlen > 0) {
                const char *sep = n == 0 ? "" : draw_bar ? " " : ": ";
                n += (size_t)snprintf(out + n, cap - n, "%s%s", sep, tail);
                if (n >= cap)
                        n = cap - 1;
        }
        return n;
}

static int term_width(FILE *f)
{
        struct winsize ws;
        if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
                return ws.ws_col;
        return 80;
}

void cli_progress_init(struct cli_progress *p, FILE *out, bool tty, int width)
{
        memset(p, 0, sizeof(*p));
        p->out = out;
        p->tty = tty;
        p->width = width > 0 ? width : tty ? term_width(out) : 0;
        p->plain_interval_ms = PLAIN_INTERVAL_MS;
        p->last_percent = -2;
        p->cur_percent = -1;
        p->rate = -1;
}

static void draw(struct cli_progress *p, uint64_t now_ms)
{
        struct cli_progress_state st = {
                .phase = p->cur_phase,
                .percent = p->cur_percent,
                .done = p->cur_done,
                .total = p->cur_total,
                .rate = p->rate,
                .eta_sec = -1,
        };
        char line[512];
        size_t len;

        if (p->rate > 0 && p->cur_total > p->cur_done)
                st.eta_sec = (int64_t)((double)(p->cur_total - p->cur_done) / p->rate + 0.5);
        else if (p->cur_total == 0 && p->cur_percent > 0 && p->cur_percent < 100 &&
                 now_ms > p->start_ms + 2000) {
                /* No byte counts: extrapolate from the percent. */
                uint64_t el = now_ms - p->start_ms;
                st.eta_sec = (int64_t)(el * (uint64_t)(100 - p->cur_percent) /
                                       (uint64_t)p->cur_percent / 1000);
        }
        if (p->cur_percent >= 100 || (p->cur_total && p->cur_done >= p->cur_total))
                st.eta_sec = -1;

        len = cli_progress_render(&st, p->tty ? p->width : 0, p->tty, line, sizeof(line));
        if (p->tty) {
                fputc('\r', p->out);
                fputs(line, p->out);
                for (size_t i = len; i < p->drawn_len; i++)
                        fputc(' ', p->out);
                p->drawn = true;
                p->drawn_len = len;
        } else {
                fputs(line, p->out);
                fputc('\n', p->out);
        }
        fflush(p->out);
        p->last_draw_ms = now_ms;
        p->last_percent = p->cur_percent;
        snprintf(p->last_phase, sizeof(p->last_phase), "%s", p->cur_phase);
        p->pending = false;
}

void cli_progress_update_at(struct cli_progress *p, const char *phase, int percent,
                            uint64_t done, uint64_t total, uint64_t now_ms)
{
        bool phase_changed, due;

        if (!p->start_ms)
                p->start_ms = now_ms ? now_ms : 1;
        if (percent > 100)
                percent = 100;
        if (percent < -1)
                percent = -1;
        snprintf(p->cur_phase, sizeof(p->cur_phase), "%s", phase ? phase : "");
        phase_changed = !streq(p->cur_phase, p->last_phase) || p->last_percent == -2;

        /* Rate: instantaneous rates measured over at least RATE_SAMPLE_MS,
         * smoothed with a weight that grows with the sample's length (time
         * constant RATE_TAU_MS). A new phase or a counter going backwards
         * starts over. */
        if (phase_changed || done < p->sample_done || !p->sample_ms) {
                p->sample_ms = now_ms;
                p->sample_done = done;
                p->rate = -1;
        } else if (now_ms >= p->sample_ms + RATE_SAMPLE_MS) {
                double dt = (double)(now_ms - p->sample_ms);
                double inst = (double)(done - p->sample_done) * 1000.0 / dt;
                double a = dt / (dt + RATE_TAU_MS);
                p->rate = p->rate < 0 ? inst : (1 - a) * p->rate + a * inst;
                p->sample_ms = now_ms;
                p->sample_done = done;
        }
        p->cur_percent = percent;
        p->cur_done = done;
        p->cur_total = total;
        p->pending = true;

        if (p->tty)
                due = phase_changed || percent == 100 || !p->drawn ||
                      now_ms >= p->last_draw_ms + TTY_REDRAW_MS;
        else
                due = phase_changed || (percent == 100 && p->last_percent != 100) ||
                      (percent != p->last_percent &&
                       now_ms >= p->last_draw_ms + p->plain_interval_ms);
        if (due)
                draw(p, now_ms);
}

void cli_progress_update(struct cli_progress *p, const char *phase, int percent, uint64_t done,
                         uint64_t total)
{
        cli_progress_update_at(p, phase, percent, done, total, cta_now_ms());
}

void cli_progress_clear(struct cli_progress *p)
{
        if (!p->tty || !p->drawn)
                return;
        fputc('\r', p->out);
        for (size_t i = 0; i < p->drawn_len; i++)
                fputc(' ', p->out);
        fputc('\r', p->out);
        p->drawn = false;
        p->drawn_len = 0;
}

void cli_progress_print(struct cli_progress *p, const char *line)
{
        cli_progress_clear(p);
        fputs(line, p->out);
        if (!*line || line[strlen(line) - 1] != '\n')
                fputc('\n', p->out);
        fflush(p->out);
        /* The next update redraws the bar at once (p->drawn is false). */
}

void cli_progress_finish(struct cli_progress *p)
{
        if (p->pending && p->last_percent != -2)
                draw(p, p->last_draw_ms);
        if (p->tty && p->drawn) {
                fputc('\n', p->out);
                fflush(p->out);
        }
        p->drawn = false;
        p->drawn_len = 0;
}
