/*
 * Replies from a peer are untrusted too: bytes → cta_resp_parse (with the
 * %param% renderer). Then the writer: the input as an error message, cookie
 * and client name must always produce a frame that parses back, and text
 * that is valid XML-safe UTF-8 must come back byte for byte.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto/packet.h"
#include "proto/writer.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

/* Mirrors the writer's rule: UTF-8 that XML 1.0 can carry. */
static bool xml_safe(const unsigned char *s, size_t n)
{
        for (size_t i = 0; i < n;) {
                unsigned char c = s[i];
                size_t len;
                uint32_t cp;
                if (c < 0x80) {
                        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                                return false;
                        i++;
                        continue;
                }
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
                        return false;
                }
                if (n - i < len)
                        return false;
                for (size_t k = 1; k < len; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (s[i + k] & 0x3f);
                }
                if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
                        return false;
                i += len;
        }
        return true;
}

static void parse_reply(const char *data, size_t size)
{
        struct cta_resp *p = NULL;
        struct cta_error *err = NULL;
        if (cta_resp_parse(data, size, &p, &err) < 0) {
                FUZZ_CHECK(err && !p);
                cta_error_free(err);
                return;
        }
        FUZZ_CHECK(p->root && p->error_message);
        FUZZ_CHECK(!p->message || strlen(p->message) <= CTA_RESP_MESSAGE_MAX);
        if (p->is_progress)
                FUZZ_CHECK(p->progress_node);
        if (p->is_event) {
                FUZZ_CHECK(p->event_node);
                char *m = cta_info_render(cta_xnode_child(p->event_node, "info"));
                FUZZ_CHECK(!m || strlen(m) <= CTA_RESP_MESSAGE_MAX);
                free(m);
        }
        cta_resp_free(p);
}

static void writer_roundtrip(const char *data, size_t size)
{
        char *text = cta_xstrndup(data, size); /* up to the first NUL */
        size_t tlen = strlen(text);
        struct cta_buf out = CTA_BUF_INIT(0);
        struct cta_reply_hdr h = { .id = "1", .cookie = text, .origin = "relocator", .client = text };
        FUZZ_CHECK(cta_reply_error_frame(&out, &h, 500, text) == 0);
        struct cta_resp *p = NULL;
        FUZZ_CHECK(cta_resp_parse(out.data, out.len - 1, &p, NULL) == 0);
        FUZZ_CHECK(p->has_error && p->error_code == 500);
        const struct cta_xnode *m = cta_xnode_child(cta_xnode_child(p->op_node, "error"), "message");
        const struct cta_xnode *c = cta_xnode_child(p->root, "cookie");
        FUZZ_CHECK(m && c);
        FUZZ_CHECK(m->text_len == tlen && c->text_len == tlen);
        if (xml_safe((const unsigned char *)text, tlen)) {
                FUZZ_CHECK(m->text_len == tlen && memcmp(m->text, text, tlen) == 0);
                FUZZ_CHECK(c->text_len == tlen && memcmp(c->text, text, tlen) == 0);
        }
        cta_resp_free(p);
        cta_buf_reset(&out);

        /* Progress with the input as template, parameter value and op. */
        struct cta_info_param prm = { "x", text };
        const char *eids[] = { text };
        struct cta_progress pr = { .template_text = text, .params = &prm, .nparams = 1,
                                   .percent = 5, .eids = eids, .neids = 1, .op = text,
                                   .status = 2, .req_id = text };
        FUZZ_CHECK(cta_progress_frame(&out, &h, &pr) == 0);
        FUZZ_CHECK(cta_resp_parse(out.data, out.len - 1, &p, NULL) == 0);
        FUZZ_CHECK(p->is_progress && p->status == 2 && p->percent == 5);
        if (tlen > 0 && !memchr(text, '%', tlen))
                FUZZ_CHECK(p->message && strcmp(p->message, text) == 0);
        cta_resp_free(p);
        cta_buf_done(&out);
        free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > (1u << 20))
                return 0;
        parse_reply((const char *)data, size);
        if (size <= 64 * 1024)
                writer_roundtrip((const char *)data, size);
        return 0;
}
