/*
 * A progress display for long operations (migration, container creation,
 * progress packets shown by `raw`).
 *
 * On a terminal one line is redrawn in place with '\r':
 *   copying files [########------------]  42%  1.2 GiB / 2.9 GiB  31.4 MiB/s  ETA 0:55
 * Elsewhere (a log, a pipe) plain lines are printed instead, and only when the
 * phase changes, the operation ends, or enough time has passed, so a log of a
 * long migration stays readable.
 *
 * The renderer is pure (cli_progress_render) so tests can check the text;
 * the stateful part keeps the rate estimate and decides when to draw.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What one line shows. Unknown values are left out of the line. */
struct cli_progress_state {
        const char *phase; /* text; NULL or "" = none */
        int percent;       /* 0..100, or -1 = unknown */
        uint64_t done;     /* bytes done */
        uint64_t total;    /* bytes in all; 0 = unknown (then `done` alone is shown if > 0) */
        double rate;       /* bytes per second; < 0 = unknown */
        int64_t eta_sec;   /* seconds left; < 0 = unknown */
};

/* Render one line without a newline into out[cap] (always NUL-terminated).
 * It fits in `width` columns (the phase text is shortened first). With
 * `bar`, a [####----] bar is drawn when the percent is known. Returns the
 * length written. Control characters in the phase become '?'. */
size_t cli_progress_render(const struct cli_progress_state *st, int width, bool bar, char *out,
                           size_t cap);

/* "512 B", "1.5 KiB", "3.2 GiB": out[16]. */
void cli_fmt_bytes(uint64_t n, char out[16]);
/* "0:05", "12:34", "1:02:03": out[24]. */
void cli_fmt_duration(int64_t sec, char out[24]);

struct cli_progress {
        FILE *out;
        bool tty;             /* redraw in place */
        int width;            /* columns */
        bool drawn;           /* a partial line is on screen (tty) */
        size_t drawn_len;
        uint64_t start_ms;
        uint64_t last_draw_ms;
        uint64_t plain_interval_ms; /* non-tty: at most one line per this, unless the phase changes */
        bool pending;         /* the latest update has not been drawn yet */
        char last_phase[160]; /* what was drawn last */
        int last_percent;
        char cur_phase[160];  /* the latest update */
        int cur_percent;
        uint64_t cur_done, cur_total;
        /* rate estimate: exponentially smoothed over byte samples */
        uint64_t sample_ms, sample_done;
        double rate;
};

/* tty: draw in place. width <= 0: ask the terminal (80 if unknown). */
void cli_progress_init(struct cli_progress *p, FILE *out, bool tty, int width);

/* Report the current state; now_ms is a monotonic clock (cta_now_ms()).
 * Rate and ETA are derived from the byte counts over time. */
void cli_progress_update_at(struct cli_progress *p, const char *phase, int percent,
                            uint64_t done, uint64_t total, uint64_t now_ms);
void cli_progress_update(struct cli_progress *p, const char *phase, int percent, uint64_t done,
                         uint64_t total);

/* Print a full line (a warning, a reply) without corrupting the bar: the
 * bar is cleared first and redrawn by the next update. */
void cli_progress_print(struct cli_progress *p, const char *line);

/* Take the bar off the screen (tty) so other output can follow; the next
 * update draws it again. */
void cli_progress_clear(struct cli_progress *p);

/* End the display: on a tty, finish the drawn line with a newline. */
void cli_progress_finish(struct cli_progress *p);
