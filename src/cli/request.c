/* Request packets: a small writer that only ever emits constant element
 * names, escaped text, base64 and numbers, so no input can change the
 * structure of a packet. */
#include <stdio.h>
#include <string.h>

#include "cli/conn.h"
#include "util/base64.h"
#include "util/buf.h"

void cli_xml_escape(struct cta_buf *b, const char *s)
{
        for (; *s; s++) {
                switch (*s) {
                case '&':
                        (void)cta_buf_puts(b, "&amp;");
                        break;
                case '<':
                        (void)cta_buf_puts(b, "&lt;");
                        break;
                case '>':
                        (void)cta_buf_puts(b, "&gt;");
                        break;
                case '"':
                        (void)cta_buf_puts(b, "&quot;");
                        break;
                case '\'':
                        (void)cta_buf_puts(b, "&apos;");
                        break;
                default:
                        (void)cta_buf_putc(b, *s);
                }
        }
}

void cli_req_begin(struct cli_req *r, struct cli_conn *c, const char *target, const char *op,
                   bool progress)
{
        memset(r, 0, sizeof(*r));
        cta_buf_init(&r->b, 0);
        snprintf(r->id, sizeof(r->id), "%u", ++c->next_id);
        snprintf(r->op, sizeof(r->op), "%s", op);
        (void)cta_buf_printf(&r->b, "<packet version=\"4.0.0\" id=\"%s\"%s>\n", r->id,
                             progress ? " progress=\"on\"" : "");
        if (target) {
                (void)cta_buf_puts(&r->b, "<target>");
                cli_xml_escape(&r->b, target);
                (void)cta_buf_puts(&r->b, "</target>\n");
        }
        (void)cta_buf_printf(&r->b, "<data>\n<%s>\n", r->op);
}

void cli_req_open(struct cli_req *r, const char *name)
{
        (void)cta_buf_printf(&r->b, "<%s>\n", name);
}

void cli_req_close(struct cli_req *r, const char *name)
{
        (void)cta_buf_printf(&r->b, "</%s>\n", name);
}

void cli_req_empty(struct cli_req *r, const char *name)
{
        (void)cta_buf_printf(&r->b, "<%s/>\n", name);
}

void cli_req_text(struct cli_req *r, const char *name, const char *text)
{
        (void)cta_buf_printf(&r->b, "<%s>", name);
        cli_xml_escape(&r->b, text);
        (void)cta_buf_printf(&r->b, "</%s>\n", name);
}

void cli_req_b64(struct cli_req *r, const char *name, const void *data, size_t len)
{
        (void)cta_buf_printf(&r->b, "<%s>", name);
        (void)cta_b64_encode_buf(&r->b, data, len);
        (void)cta_buf_printf(&r->b, "</%s>\n", name);
}

void cli_req_secret_b64(struct cli_req *r, const char *name, const void *data, size_t len)
{
        /* Room for the secret and the rest of the packet up front: a realloc
         * would leave a copy of it in freed memory. */
        (void)cta_buf_reserve(&r->b, strlen(name) * 2 + (len + 2) / 3 * 4 + 512);
        (void)cta_buf_printf(&r->b, "<%s>", name);
        r->secret_start = r->b.len;
        (void)cta_b64_encode_buf(&r->b, data, len);
        r->secret_end = r->b.len;
        (void)cta_buf_printf(&r->b, "</%s>\n", name);
}

void cli_req_end(struct cli_req *r)
{
        (void)cta_buf_printf(&r->b, "</%s>\n</data>\n</packet>\n", r->op);
}

void cli_req_done(struct cli_req *r)
{
        if (r->b.data)
                explicit_bzero(r->b.data, r->b.cap);
        cta_buf_done(&r->b);
        r->secret_start = r->secret_end = 0;
}
