/*
 * proto-samples DIR: write one file per reply builder (frame bytes as sent,
 * trailing NUL included) for scripts/validate-xsd.sh. Not installed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/writer.h"
#include "util/buf.h"

#define CLIENT "vzclient7-6a1f0c7e-52d4-4b0e-9a4e-0f1b2c3d4e5f"
#define EID "3b0c8a54-1d2e-4f60-8a71-9c0d1e2f3a4b"
#define NODE "6a1f0c7e-52d4-4b0e-9a4e-0f1b2c3d4e5f"

static int failures;

static void save(const char *dir, const char *name, struct cta_buf *b, int r)
{
        char path[4096];
        if (r < 0) {
                fprintf(stderr, "%s: builder failed: %d\n", name, r);
                failures++;
                cta_buf_reset(b);
                return;
        }
        snprintf(path, sizeof(path), "%s/%s.xml", dir, name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                failures++;
        }
        cta_buf_reset(b);
}

/* A vzaenvm get_info result written with the raw writer: shows which prefix
 * each level of an env needs (ns2 envm, ns4 types, ns3 vzatypes). */
static int env_info(struct cta_buf *b, const struct cta_reply_hdr *h)
{
        struct cta_xw w;
        char qn[CTA_XW_NAME_MAX + 1];
        cta_xw_init(&w, b);
        cta_reply_begin(&w, h);
        cta_xw_open(&w, cta_xw_qname(qn, cta_reply_elem_prefix(&w, "env"), "env"));
        cta_xw_text(&w, "ns4:parent_eid", NODE);
        cta_xw_text(&w, "ns4:eid", EID);
        cta_xw_open(&w, "ns4:status");
        cta_xw_int(&w, "ns4:state", 6);
        cta_xw_int(&w, "ns4:transition", 0);
        cta_xw_close(&w);
        cta_xw_open(&w, "ns4:virtual_config");
        cta_xw_attr(&w, "xsi:type", "ns3:venv_configType");
        cta_xw_text(&w, "ns4:name", "web01");
        cta_xw_text(&w, "ns4:hostname", "web01.example.net");
        cta_xw_open(&w, "ns4:address");
        cta_xw_text(&w, "ns4:ip", "10.0.0.5");
        cta_xw_close(&w);
        cta_xw_int(&w, "ns3:veid", 101);
        cta_xw_text(&w, "ns3:ve_root", "/vz/root/101");
        cta_xw_text(&w, "ns3:ve_private", "/vz/private/101");
        cta_xw_text(&w, "ns3:on_boot", "true");
        cta_xw_close(&w);
        cta_xw_close(&w);
        return cta_reply_end(&w);
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
                return 2;
        }
        const char *dir = argv[1];
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "%s: %s\n", dir, strerror(errno));
                return 1;
        }
        struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_reply_hdr sys = { .id = "2", .origin = "system", .client = CLIENT };
        struct cta_reply_hdr rel = { .id = "31", .origin = "relocator", .client = CLIENT,
                                     .cookie = "job-42 <&> \"q\"" };
        struct cta_reply_hdr env = { .id = "40", .origin = "vzaenvm", .client = CLIENT };
        struct cta_reply_hdr ses = { .id = "3", .origin = "sessionm", .client = CLIENT };
        static const gid_t gids[] = { 0, 1000, 4294967294u };

        save(dir, "greeting", &b, cta_reply_greeting_frame(&b, CLIENT, "vzagent-4.0.0 ctagent/0.1.0"));
        save(dir, "greeting-bare", &b, cta_reply_greeting_frame(&b, NULL, NULL));
        save(dir, "ok-relocator", &b, cta_reply_ok_frame(&b, &rel));
        save(dir, "ok-system", &b, cta_reply_ok_frame(&b, &sys));
        save(dir, "ok-vzaenvm", &b, cta_reply_ok_frame(&b, &env));
        save(dir, "ok-vzarelocator", &b,
             cta_reply_ok_frame(&b, &(struct cta_reply_hdr){ .id = "5", .origin = "vzarelocator" }));
        save(dir, "error-op-log", &b,
             cta_reply_error_frame(&b, &(struct cta_reply_hdr){ .origin = "op_log" }, 111, "n/a"));
        save(dir, "ok-sessionm", &b, cta_reply_ok_frame(&b, &ses));
        save(dir, "ok-envm", &b,
             cta_reply_ok_frame(&b, &(struct cta_reply_hdr){ .origin = "envm", .type = 2 }));
        save(dir, "error-relocator", &b,
             cta_reply_error_frame(&b, &rel, 401, "Container " EID " already exists on destination"));
        save(dir, "error-escaping", &b,
             cta_reply_error_frame(&b, &sys, 204,
                                   "bad <x> & \"y\" 'z'\n\tline2\r\x01\x7f \xc3\xa9 \xff\xfe \xed\xa0\x80 "
                                   "\xef\xbf\xbe end"));
        save(dir, "error-noid", &b,
             cta_reply_error_frame(&b, &(struct cta_reply_hdr){ .origin = "system" }, 200,
                                   "XML not well-formed"));
        save(dir, "realms", &b, cta_reply_realms_frame(&b, &sys));
        save(dir, "token", &b, cta_reply_token_frame(&b, &sys, "root", 0, gids, 3));
        save(dir, "token-nogroups", &b, cta_reply_token_frame(&b, &sys, NULL, 1000, NULL, 0));
        save(dir, "token-sessionm", &b, cta_reply_token_frame(&b, &ses, "admin", 1000, gids, 1));
        save(dir, "pass", &b, cta_reply_pass_frame(&b, &sys, "4fce28dd-0cd3-1345-bb94-3192b940fb90"));
        save(dir, "version", &b, cta_reply_text_frame(&b, &sys, "version", "vzagent-4.0.0"));
        save(dir, "eid-system", &b, cta_reply_text_frame(&b, &sys, "eid", NODE));
        save(dir, "eid-vzaenvm", &b, cta_reply_text_frame(&b, &env, "eid", EID));
        save(dir, "veid-vzaenvm", &b, cta_reply_text_frame(&b, &env, "veid", "101"));
        save(dir, "env-vzaenvm", &b, env_info(&b, &env));

        static const struct cta_info_param params[] = {
                { "op_name", "migrate_v2v" }, { "status", "processing <50%>" },
        };
        static const char *const eids[] = { EID, "a8a73d01-2969-6b48-9544-5cbf6ea7c554" };
        struct cta_progress p = {
                .template_text = "Operation %op_name% is %status%",
                .params = params, .nparams = 2, .percent = 40, .eids = eids, .neids = 2,
                .op = "relocator.migrate_v2v", .status = 2, .req_id = "31",
        };
        save(dir, "progress", &b, cta_progress_frame(&b, &rel, &p));
        struct cta_progress pmin = { .percent = -1, .status = 1 };
        save(dir, "progress-min", &b, cta_progress_frame(&b, &rel, &pmin));
        save(dir, "event", &b,
             cta_event_env_status_frame(&b, EID, NODE, (struct cta_env_status){ 1, 0 },
                                        (struct cta_env_status){ 6, 0 }, 12,
                                        "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "vzaenvm"));
        cta_buf_done(&b);
        return failures ? 1 : 0;
}
