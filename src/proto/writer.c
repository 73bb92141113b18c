/*
 * The escaping XML writer. Nothing reaches the buffer except through
 * put_escaped() (text, attribute values) or as a checked name.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto/writer.h"
#include "util/base64.h"
#include "util/errcodes.h"

void cta_xw_init(struct cta_xw *w, struct cta_buf *b)
{
        memset(w, 0, sizeof(*w));
        w->b = b;
}

int cta_xw_error(const struct cta_xw *w)
{
        return w->err;
}

static void xw_fail(struct cta_xw *w, int r)
{
        if (!w->err)
                w->err = r;
}

static void put(struct cta_xw *w, const char *s, size_t n)
{
        if (w->err)
                return;
        int r = cta_buf_append(w->b, s, n);
        if (r < 0)
                xw_fail(w, r);
}

static void puts_(struct cta_xw *w, const char *s)
{
        put(w, s, strlen(s));
}

static bool name_char(unsigned char c, bool first)
{
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_')
                return true;
        return !first && ((c >= '0' && c <= '9') || c == '-' || c == '.');
}

/* NCName or prefix:NCName, ASCII only, at most CTA_XW_NAME_MAX bytes. */
static bool qname_valid(const char *q)
{
        if (!q)
                return false;
        size_t n = strlen(q);
        if (n == 0 || n > CTA_XW_NAME_MAX)
                return false;
        bool first = true, colon = false;
        for (const char *p = q; *p; p++) {
                if (*p == ':') {
                        if (colon || first)
                                return false;
                        colon = true;
                        first = true;
                        continue;
                }
                if (!name_char((unsigned char)*p, first))
                        return false;
                first = false;
        }
        return !first;
}

const char *cta_xw_qname(char *out, const char *prefix, const char *local)
{
        int n = snprintf(out, CTA_XW_NAME_MAX + 1, "%s:%s", prefix, local);
        if (n < 0 || n > CTA_XW_NAME_MAX)
                out[0] = '\0'; /* rejected by qname_valid() when used */
        return out;
}

/* Length of a valid UTF-8 sequence at s[0..n) that XML 1.0 may carry, or 0. */
static size_t utf8_ok(const unsigned char *s, size_t n)
{
        unsigned char c = s[0];
        uint32_t cp;
        size_t len;
        if (c < 0x80)
                return (c >= 0x20 || c == '\t' || c == '\n' || c == '\r') ? 1 : 0;
        if (c >= 0xc2 && c <= 0xdf) {
                len = 2;
                cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                len = 3;
                cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                len = 4;
                cp = c & 0x07;
        } else {
                return 0;
        }
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0; /* overlong or out of range */
        if ((cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
                return 0; /* surrogates and non-characters XML forbids */
        return len;
}

/* Escape for both text and attribute values; \t \n \r become character
 * references so they survive attribute normalisation and keep lines intact. */
static void put_escaped(struct cta_xw *w, const char *text, size_t len)
{
        const unsigned char *s = (const unsigned char *)text;
        size_t run = 0; /* start of the pending literal run */
        for (size_t i = 0; i < len && !w->err;) {
                const char *rep = NULL;
                size_t adv = 1;
                switch (s[i]) {
                case '&': rep = "&amp;"; break;
                case '<': rep = "&lt;"; break;
                case '>': rep = "&gt;"; break;
                case '"': rep = "&quot;"; break;
                case '\t': rep = "&#9;"; break;
                case '\n': rep = "&#10;"; break;
                case '\r': rep = "&#13;"; break;
                default:
                        adv = utf8_ok(s + i, len - i);
                        if (adv == 0) {
                                rep = "?";
                                adv = 1;
                        }
                }
                if (rep) {
                        put(w, text + run, i - run);
                        puts_(w, rep);
                        run = i + adv;
                }
                i += adv;
        }
        put(w, text + run, len - run);
}

/* Finish a pending "<name" start tag with ">" and a newline. */
static void finish_tag(struct cta_xw *w)
{
        if (w->tag_open) {
                puts_(w, ">\n");
                w->tag_open = false;
        }
}

void cta_xw_open(struct cta_xw *w, const char *qname)
{
        if (w->err)
                return;
        if (!qname_valid(qname)) {
                xw_fail(w, -CTA_E_INVALID);
                return;
        }
        if (w->depth >= CTA_XW_DEPTH_SLOTS) {
                xw_fail(w, -CTA_E_TOO_LARGE);
                return;
        }
        finish_tag(w);
        puts_(w, "<");
        puts_(w, qname);
        snprintf(w->stack[w->depth++], sizeof(w->stack[0]), "%s", qname);
        w->tag_open = true;
}

void cta_xw_attr(struct cta_xw *w, const char *qname, const char *value)
{
        if (w->err)
                return;
        if (!w->tag_open || !qname_valid(qname) || !value) {
                xw_fail(w, -CTA_E_INVALID);
                return;
        }
        puts_(w, " ");
        puts_(w, qname);
        puts_(w, "=\"");
        put_escaped(w, value, strlen(value));
        puts_(w, "\"");
}

void cta_xw_close(struct cta_xw *w)
{
        if (w->err)
                return;
        if (w->depth == 0) {
                xw_fail(w, -CTA_E_INVALID);
                return;
        }
        const char *q = w->stack[--w->depth];
        if (w->tag_open) {
                puts_(w, "/>\n");
                w->tag_open = false;
                return;
        }
        puts_(w, "</");
        puts_(w, q);
        puts_(w, ">\n");
}

void cta_xw_empty(struct cta_xw *w, const char *qname)
{
        cta_xw_open(w, qname);
        cta_xw_close(w);
}

void cta_xw_textn(struct cta_xw *w, const char *qname, const char *text, size_t len)
{
        if (w->err)
                return;
        if (!qname_valid(qname)) {
                xw_fail(w, -CTA_E_INVALID);
                return;
        }
        finish_tag(w);
        puts_(w, "<");
        puts_(w, qname);
        puts_(w, ">");
        if (text)
                put_escaped(w, text, len);
        puts_(w, "</");
        puts_(w, qname);
        puts_(w, ">\n");
}

void cta_xw_text(struct cta_xw *w, const char *qname, const char *text)
{
        cta_xw_textn(w, qname, text, text ? strlen(text) : 0);
}

void cta_xw_b64(struct cta_xw *w, const char *qname, const void *data, size_t len)
{
        if (w->err)
                return;
        if (!qname_valid(qname)) {
                xw_fail(w, -CTA_E_INVALID);
                return;
        }
        finish_tag(w);
        puts_(w, "<");
        puts_(w, qname);
        puts_(w, ">");
        if (!w->err) {
                int r = cta_b64_encode_buf(w->b, data, len);
                if (r < 0)
                        xw_fail(w, r);
        }
        puts_(w, "</");
        puts_(w, qname);
        puts_(w, ">\n");
}

void cta_xw_int(struct cta_xw *w, const char *qname, long long v)
{
        char num[32];
        snprintf(num, sizeof(num), "%lld", v);
        cta_xw_text(w, qname, num);
}
