/*
 * A growable byte buffer with a hard maximum. Appends past the maximum fail
 * with -CTA_E_TOO_LARGE and leave the buffer unchanged, so a peer can never
 * make us allocate more than `max` bytes through one buffer.
 * The data is always NUL-terminated (the NUL is not counted in len).
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct cta_buf {
        char *data;
        size_t len;
        size_t cap;
        size_t max; /* 0 = SIZE_MAX */
};

#define CTA_BUF_INIT(m) { .data = NULL, .len = 0, .cap = 0, .max = (m) }

void cta_buf_init(struct cta_buf *b, size_t max);
void cta_buf_done(struct cta_buf *b);   /* frees the data */
void cta_buf_reset(struct cta_buf *b);  /* len = 0, keeps memory */
int cta_buf_reserve(struct cta_buf *b, size_t extra);
int cta_buf_append(struct cta_buf *b, const void *data, size_t len);
int cta_buf_puts(struct cta_buf *b, const char *s);
int cta_buf_putc(struct cta_buf *b, char c);
int cta_buf_printf(struct cta_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cta_buf_vprintf(struct cta_buf *b, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));
/* Drop n bytes from the front. */
void cta_buf_consume(struct cta_buf *b, size_t n);
/* Take the data (NUL-terminated, caller frees); the buffer becomes empty. */
char *cta_buf_steal(struct cta_buf *b, size_t *ret_len);
static inline void cta_buf_donep(struct cta_buf *b)
{
        cta_buf_done(b);
}
