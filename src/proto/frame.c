#include <stdbool.h>
#include <string.h>

#include "proto/frame.h"
#include "util/errcodes.h"

void cta_framer_init(struct cta_framer *f, size_t max_frame)
{
        cta_buf_init(&f->in, 0);
        f->max_frame = max_frame;
        f->binary_ok = false;
        f->scan = 0;
        f->start = 0;
        f->bin_left = 0;
}

void cta_framer_set_max(struct cta_framer *f, size_t max_frame)
{
        f->max_frame = max_frame;
}

void cta_framer_done(struct cta_framer *f)
{
        cta_buf_done(&f->in);
        f->scan = 0;
        f->start = 0;
        f->bin_left = 0;
}

size_t cta_framer_pending(const struct cta_framer *f)
{
        return f->in.len - f->start;
}

/* Advance f->scan to the first NUL at or after it, or to the end.
 * Returns true if a NUL was found (f->scan is its offset). */
static bool framer_find_nul(struct cta_framer *f)
{
        if (f->scan < f->start)
                f->scan = f->start;
        if (f->scan >= f->in.len)
                return false;
        const char *p = memchr(f->in.data + f->scan, '\0', f->in.len - f->scan);
        if (!p) {
                f->scan = f->in.len;
                return false;
        }
        f->scan = (size_t)(p - f->in.data);
        return true;
}

/* A binary frame at f->start, complete or not. */
static bool binframe_at_start(const struct cta_framer *f)
{
        return f->start < f->in.len && (unsigned char)f->in.data[f->start] == CTA_BINFRAME_MAGIC;
}

/* Binary data comes next: the rest of a frame's payload, or a new frame. */
static bool binary_next(const struct cta_framer *f)
{
        return f->bin_left || (f->binary_ok && binframe_at_start(f));
}

int cta_framer_feed(struct cta_framer *f, const void *data, size_t len)
{
        if (len == 0)
                return 0;
        if (binary_next(f)) {
                /* A partial binary frame: its own length field bounds it. */
                if (f->start > 0) {
                        cta_buf_consume(&f->in, f->start);
                        f->scan = f->start = 0;
                }
                return cta_buf_append(&f->in, data, len);
        }
        /* If no complete frame is pending, the whole rest is one unterminated
         * frame: refuse to grow it once it is already over the cap. */
        if (!framer_find_nul(f) && f->in.len - f->start > f->max_frame)
                return -CTA_E_FRAME_TOO_LARGE;

        /* Drop what was handed out before the buffer grows (cheap: what
         * remains is at most one partial frame plus the last read). */
        if (f->start > 0) {
                cta_buf_consume(&f->in, f->start);
                f->scan -= f->start;
                f->start = 0;
        }
        return cta_buf_append(&f->in, data, len);
}

static bool is_blank(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
                        return false;
        return true;
}

int cta_framer_next(struct cta_framer *f, const char **ret_frame, size_t *ret_len)
{
        for (;;) {
                /* A binary frame is cta_framer_next_any()'s to hand out. */
                if (binary_next(f))
                        return 0;
                if (!framer_find_nul(f)) {
                        if (f->in.len - f->start > f->max_frame)
                                return -CTA_E_FRAME_TOO_LARGE;
                        if (f->start == f->in.len && f->start > 0) {
                                /* Everything handed out: reuse the buffer from the start. */
                                cta_buf_reset(&f->in);
                                f->start = f->scan = 0;
                        }
                        return 0;
                }
                const char *frame = f->in.data + f->start;
                size_t n = f->scan - f->start;
                if (n > f->max_frame)
                        return -CTA_E_FRAME_TOO_LARGE;
                f->start = f->scan + 1;
                f->scan = f->start;
                if (is_blank(frame, n))
                        continue;
                /* The NUL that ended the frame terminates the string in place. */
                *ret_frame = frame;
                *ret_len = n;
                return 1;
        }
}

void cta_binframe_header(uint8_t hdr[CTA_BINFRAME_HDR], uint32_t len)
{
        hdr[0] = CTA_BINFRAME_MAGIC;
        hdr[1] = (uint8_t)(len >> 24);
        hdr[2] = (uint8_t)(len >> 16);
        hdr[3] = (uint8_t)(len >> 8);
        hdr[4] = (uint8_t)len;
}

size_t cta_framer_bin_direct(struct cta_framer *f, size_t avail)
{
        if (!f->bin_left || f->start < f->in.len)
                return 0;
        size_t n = avail < f->bin_left ? avail : f->bin_left;
        f->bin_left -= (uint32_t)n;
        return n;
}

size_t cta_framer_bin_pending(const struct cta_framer *f)
{
        return f->start < f->in.len ? 0 : f->bin_left;
}

int cta_framer_next_any(struct cta_framer *f, enum cta_frame_kind *ret_kind,
                        const char **ret_frame, size_t *ret_len)
{
        for (;;) {
                size_t have = f->in.len - f->start;
                if (f->bin_left) {
                        if (!have) {
                                cta_buf_reset(&f->in);
                                f->start = f->scan = 0;
                                return 0;
                        }
                        size_t n = have < f->bin_left ? have : f->bin_left;
                        *ret_kind = CTA_FRAME_BINARY;
                        *ret_frame = f->in.data + f->start;
                        *ret_len = n;
                        f->start += n;
                        f->scan = f->start;
                        f->bin_left -= (uint32_t)n;
                        return 1;
                }
                if (!binframe_at_start(f))
                        break;
                if (!f->binary_ok)
                        return -CTA_E_PROTO;
                if (have < CTA_BINFRAME_HDR)
                        return 0;
                const uint8_t *h = (const uint8_t *)f->in.data + f->start;
                uint32_t len = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 |
                               (uint32_t)h[3] << 8 | h[4];
                if (len > CTA_BINFRAME_MAX)
                        return -CTA_E_FRAME_TOO_LARGE;
                f->start += CTA_BINFRAME_HDR;
                f->scan = f->start;
                f->bin_left = len; /* an empty frame is simply skipped */
        }
        int r = cta_framer_next(f, ret_frame, ret_len);
        if (r == 1)
                *ret_kind = CTA_FRAME_XML;
        else if (r == 0 && f->binary_ok && binframe_at_start(f))
                return cta_framer_next_any(f, ret_kind, ret_frame, ret_len);
        return r;
}
