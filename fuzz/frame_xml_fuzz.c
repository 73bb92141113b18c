/*
 * Bytes → framer → cta_req_parse → every typed parser, plus the reply
 * writer echoing what was parsed (its output must always parse back).
 *
 * Input: the first byte picks the read size (1..64) the stream is fed in
 * (low 6 bits) and whether binary frames are allowed (0x80, logged-in
 * agent-to-agent mode, cta_framer_next_any()); the rest is the byte stream
 * as a peer would send it. The whole rest is also parsed once as a single
 * document, NULs and all.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto/frame.h"
#include "proto/packet.h"
#include "proto/writer.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

static void echo_reply(const struct cta_req *q, int code, const char *msg)
{
        struct cta_buf out = CTA_BUF_INIT(0);
        struct cta_reply_hdr h = { .id = q ? q->id : NULL, .cookie = q ? q->cookie : NULL,
                                   .origin = "system", .client = q ? q->target : NULL };
        int r = code ? cta_reply_error_frame(&out, &h, code, msg) : cta_reply_ok_frame(&out, &h);
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(out.len > 0 && out.data[out.len - 1] == '\0');
        struct cta_resp *p = NULL;
        r = cta_resp_parse(out.data, out.len - 1, &p, NULL);
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(p->ok == (code == 0));
        FUZZ_CHECK(p->has_error == (code != 0));
        if (code)
                FUZZ_CHECK(p->error_code == code);
        if (h.id)
                FUZZ_CHECK(p->id && strcmp(p->id, h.id) == 0);
        cta_resp_free(p);
        cta_buf_done(&out);
}

static void typed(const struct cta_xnode *n)
{
        struct cta_login l;
        struct cta_cancel c;
        struct cta_subscribe s;
        struct cta_conn_info ci;
        struct cta_migrate_req m;
        struct cta_mig_settle_req st;
        struct cta_error *err = NULL;

        if (cta_req_parse_login(n, &l, &err) < 0)
                FUZZ_CHECK(err && *cta_error_msg(err));
        else
                FUZZ_CHECK(strlen(l.who.realm) == 36 && strlen(l.password) <= CTA_PASSWORD_MAX);
        err = cta_error_free(err);
        if (cta_req_parse_cancel(n, &c, &err) == 0)
                FUZZ_CHECK(cta_packet_id_valid(c.message_id));
        err = cta_error_free(err);
        if (cta_req_parse_subscribe(n, &s, &err) == 0)
                FUZZ_CHECK(s.n >= 1 && s.n <= CTA_SUBSCRIBE_MAX);
        err = cta_error_free(err);
        if (cta_req_parse_conn_info(n, &ci, &err) == 0)
                FUZZ_CHECK(ci.port > 0 && ci.address[0]);
        err = cta_error_free(err);
        if (cta_req_parse_conn_info(cta_xnode_child(n, "dst"), &ci, &err) == 0)
                FUZZ_CHECK(ci.port > 0);
        err = cta_error_free(err);
        if (cta_req_parse_migrate_v2v(n, &m, &err) == 0) {
                FUZZ_CHECK(m.n_eids >= 1 && m.n_eids <= CTA_MIGRATE_MAX_EIDS);
                for (size_t i = 0; i < m.n_eids; i++)
                        FUZZ_CHECK(cta_uuid_valid(m.eids[i]));
        }
        err = cta_error_free(err);
        if (cta_req_parse_mig_settle(n, &st, &err) == 0)
                FUZZ_CHECK(cta_uuid_valid(st.eid));
        err = cta_error_free(err);
}

static void one_frame(const char *frame, size_t len)
{
        struct cta_req *q = NULL;
        struct cta_error *err = NULL;
        if (cta_req_parse(frame, len, &q, &err) < 0) {
                FUZZ_CHECK(err && cta_error_code(err) > 0 && !q);
                echo_reply(NULL, cta_error_code(err), cta_error_msg(err));
                cta_error_free(err);
                return;
        }
        FUZZ_CHECK(q->root && strcmp(q->root->name, "packet") == 0);
        FUZZ_CHECK(!q->id || cta_packet_id_valid(q->id));
        (void)cta_req_operator(q);
        typed(q->call_node);
        typed(q->op_node);
        echo_reply(q, 0, NULL);
        echo_reply(q, CTA_E_BAD_PARAM, q->cookie ? q->cookie : "");
        cta_req_free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > (1u << 20))
                return 0;
        size_t chunk = (size_t)(data[0] & 0x3f) + 1;
        bool binary = data[0] & 0x80;
        const char *s = (const char *)data + 1;
        size_t n = size - 1;

        struct cta_framer f;
        cta_framer_init(&f, 64 * 1024);
        f.binary_ok = binary;
        const char *frame;
        size_t flen;
        enum cta_frame_kind kind = CTA_FRAME_XML;
        int r = 0;
        for (size_t off = 0; off < n && r >= 0; off += chunk) {
                size_t k = n - off < chunk ? n - off : chunk;
                r = cta_framer_feed(&f, s + off, k);
                while (r >= 0) {
                        r = binary ? cta_framer_next_any(&f, &kind, &frame, &flen)
                                   : cta_framer_next(&f, &frame, &flen);
                        if (r != 1)
                                break;
                        if (kind == CTA_FRAME_BINARY) {
                                FUZZ_CHECK(flen <= CTA_BINFRAME_MAX);
                                continue;
                        }
                        FUZZ_CHECK(frame[flen] == '\0' && flen <= 64 * 1024);
                        one_frame(frame, flen);
                }
        }
        FUZZ_CHECK(r == 0 || r == -CTA_E_FRAME_TOO_LARGE || (binary && r == -CTA_E_PROTO));
        FUZZ_CHECK(r < 0 || cta_framer_pending(&f) <= (binary ? CTA_BINFRAME_MAX + CTA_BINFRAME_HDR : 64 * 1024) + chunk);
        cta_framer_done(&f);

        /* The same bytes as one document (NULs, trailing garbage and all). */
        struct cta_xnode *root = NULL;
        if (cta_xml_parse(s, n, NULL, &root, NULL) == 0)
                FUZZ_CHECK(root->name && root->text);
        cta_xnode_free(root);
        return 0;
}
