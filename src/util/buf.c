#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/errcodes.h"
#include "util/util.h"

void cta_buf_init(struct cta_buf *b, size_t max)
{
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
        b->max = max;
}

void cta_buf_done(struct cta_buf *b)
{
        free(b->data);
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
}

void cta_buf_reset(struct cta_buf *b)
{
        b->len = 0;
        if (b->data)
                b->data[0] = '\0';
}

int cta_buf_reserve(struct cta_buf *b, size_t extra)
{
        size_t max = b->max ? b->max : SIZE_MAX - 1;

        if (extra > max || b->len > max - extra)
                return -CTA_E_TOO_LARGE;
        size_t need = b->len + extra + 1; /* room for the terminating NUL */
        if (need <= b->cap)
                return 0;
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < need)
                ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
        if (ncap > max + 1)
                ncap = max + 1;
        b->data = cta_xrealloc(b->data, ncap);
        b->cap = ncap;
        return 0;
}

int cta_buf_append(struct cta_buf *b, const void *data, size_t len)
{
        int r = cta_buf_reserve(b, len);
        if (r < 0)
                return r;
        if (len)
                memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = '\0';
        return 0;
}

int cta_buf_puts(struct cta_buf *b, const char *s)
{
        return cta_buf_append(b, s, strlen(s));
}

int cta_buf_putc(struct cta_buf *b, char c)
{
        return cta_buf_append(b, &c, 1);
}

int cta_buf_vprintf(struct cta_buf *b, const char *fmt, va_list ap)
{
        va_list ap2;
        va_copy(ap2, ap);
        int n = vsnprintf(NULL, 0, fmt, ap2);
        va_end(ap2);
        if (n < 0)
                return -CTA_E_INVALID;
        int r = cta_buf_reserve(b, (size_t)n);
        if (r < 0)
                return r;
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        b->len += (size_t)n;
        return 0;
}

int cta_buf_printf(struct cta_buf *b, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = cta_buf_vprintf(b, fmt, ap);
        va_end(ap);
        return r;
}

void cta_buf_consume(struct cta_buf *b, size_t n)
{
        if (n >= b->len) {
                cta_buf_reset(b);
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        b->data[b->len] = '\0';
}

char *cta_buf_steal(struct cta_buf *b, size_t *ret_len)
{
        char *d = b->data ? b->data : cta_xstrdup("");
        if (ret_len)
                *ret_len = b->len;
        b->data = NULL;
        b->len = 0;
        b->cap = 0;
        return d;
}
