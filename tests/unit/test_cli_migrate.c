/* Unit tests of `ctagent migrate`'s pure parts: the command line, the
 * migrate_v2v request (read back with the node's own parser), progress
 * packets made by the node's own writer (both shapes) → phase and bytes,
 * and the summary line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_migrate.h"
#include "cli/conn.h"
#include "proto/packet.h"
#include "proto/writer.h"
#include "tap.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

#define EID1 "3b0c8a54-1d2e-4f60-8a71-9c0d1e2f3a4b"
#define FP                                                                                 \
        "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"                          \
        "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
#define PASS "6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f"

static const struct cli_command *const groups[] = { cli_cmds_migrate, NULL };

/* Parse "ctagent ARGS..." (NULL-terminated) and read the migrate options. */
static int spec_of(struct cli_opts *o, struct cli_mig_spec *s, struct cta_error **err, ...)
{
        char *argv[32] = { (char *)"ctagent" };
        int argc = 1, r;
        va_list ap;

        va_start(ap, err);
        for (const char *a; argc < 31 && (a = va_arg(ap, const char *));)
                argv[argc++] = (char *)a;
        va_end(ap);
        r = cli_parse_args(argc, argv, groups, o, err);
        if (r < 0)
                return r;
        return cli_mig_spec_from_opts(o, s, err);
}

TEST(spec__destination_and_options)
{
        struct cli_opts o;
        struct cli_mig_spec s;
        struct cta_error *e = NULL;

        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "web", "127.0.0.12", NULL), 0);
        ASSERT_TRUE(streq(s.dst_host, "127.0.0.12"));
        ASSERT_INT_EQ(s.dst_port, 4434);
        ASSERT_TRUE(!s.dst_plain && !s.force && !s.nostart && !s.remove && !s.has_new_veid);
        ASSERT_TRUE(!s.new_name && !s.new_private);
        cli_opts_done(&o);

        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "web", "node-b.example:44342", "--force",
                              "--nostart", "--remove", "--new-veid", "205", "--new-name",
                              "web-b", "--new-private", "/srv/ct/205", NULL),
                      0);
        ASSERT_TRUE(streq(s.dst_host, "node-b.example"));
        ASSERT_INT_EQ(s.dst_port, 44342);
        ASSERT_TRUE(s.force && s.nostart && s.remove && s.has_new_veid);
        ASSERT_TRUE(cli_opt(&o, "dst-fingerprint") == NULL);
        ASSERT_TRUE(s.new_veid == 205);
        ASSERT_TRUE(streq(s.new_name, "web-b") && streq(s.new_private, "/srv/ct/205"));
        cli_opts_done(&o);

        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "web", "h", "--one-time-pass",
                              "--dst-fingerprint", FP, NULL),
                      0);
        ASSERT_TRUE(streq(cli_opt(&o, "dst-fingerprint"), FP));
        cli_opts_done(&o);

        /* --dst-plain: port 4433 by default, an explicit one stays. */
        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "--dst-plain", "101", "127.0.0.12", NULL),
                      0);
        ASSERT_TRUE(s.dst_plain);
        ASSERT_INT_EQ(s.dst_port, 4433);
        ASSERT_TRUE(!s.has_compress);
        cli_opts_done(&o);
        /* --compress: zstd at the default level; --compress-level N: that one (0: off), or auto */
        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "101", "h", "--compress", NULL), 0);
        ASSERT_TRUE(s.has_compress && s.compress == CTA_COMPRESS_LEVEL_ON);
        cli_opts_done(&o);
        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "101", "h", "--compress-level", "19", NULL),
                      0);
        ASSERT_TRUE(s.has_compress && s.compress == 19);
        cli_opts_done(&o);
        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "101", "h", "--compress-level", "0", NULL),
                      0);
        ASSERT_TRUE(s.has_compress && s.compress == 0);
        cli_opts_done(&o);
        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "101", "h", "--compress-level", "auto",
                              NULL),
                      0);
        ASSERT_TRUE(s.has_compress && s.compress == CTA_COMPRESS_AUTO);
        cli_opts_done(&o);
        ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "101", "[::1]:5000", "--dst-plain", NULL), 0);
        ASSERT_TRUE(streq(s.dst_host, "::1"));
        ASSERT_INT_EQ(s.dst_port, 5000);
        cli_opts_done(&o);
        return 0;
}

TEST(spec__usage_errors)
{
        static const char *const bad[][4] = {
                { "--new-veid", "0" },
                { "--new-veid", "abc" },
                { "--new-veid", "2147483648" },
                { "--new-private", "relative/path" },
                { "--new-name", "" },
                { "--dst-user", "" },
                { "--dst-fingerprint", "SHA256:00" }, /* without --one-time-pass */
                { "--dst-plain", "--one-time-pass", "--dst-fingerprint", FP },
                { "--one-time-pass", "--dst-fingerprint", "SHA256:00" },
                { "--dst-fingerprint", FP }, /* without --one-time-pass */
                { "--compress-level", "20" },
                { "--compress-level", "fast" },
        };
        static const char *const bad_dst[] = { "host:0", "host:99999", ":4434", "[::1" };
        struct cli_opts o;
        struct cli_mig_spec s;

        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++) {
                struct cta_error *e = NULL;
                int r = spec_of(&o, &s, &e, "migrate", "web", "h", bad[i][0], bad[i][1],
                                bad[i][2], bad[i][3], NULL);
                if (r != -CTA_E_INVALID)
                        TAP_FAIL("%s %s: %d, want a usage error", bad[i][0], bad[i][1], r);
                cta_error_free(e);
                cli_opts_done(&o);
        }
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad_dst); i++) {
                struct cta_error *e = NULL;
                int r = spec_of(&o, &s, &e, "migrate", "web", bad_dst[i], NULL);
                if (r != -CTA_E_INVALID)
                        TAP_FAIL("destination '%s' accepted", bad_dst[i]);
                if (!strstr(cta_error_msg(e), "destination"))
                        TAP_FAIL("message does not say what is wrong: %s", cta_error_msg(e));
                cta_error_free(e);
                cli_opts_done(&o);
        }
        /* Both arguments are required. */
        {
                struct cta_error *e = NULL;
                ASSERT_INT_EQ(spec_of(&o, &s, &e, "migrate", "web", NULL), -CTA_E_INVALID);
                cta_error_free(e);
                cli_opts_done(&o);
        }
        return 0;
}

/* Parse, then run migrate's check hook as main.c does before the source's
 * password prompt and the connection. */
static int check_of(char *msg, size_t cap, ...)
{
        char *argv[32] = { (char *)"ctagent" };
        struct cli_opts o;
        struct cli_ctx ctx = { .o = &o };
        struct cta_error *e = NULL;
        int argc = 1, r;
        va_list ap;

        va_start(ap, cap);
        for (const char *a; argc < 31 && (a = va_arg(ap, const char *));)
                argv[argc++] = (char *)a;
        va_end(ap);
        msg[0] = '\0';
        r = cli_parse_args(argc, argv, groups, &o, &e);
        if (r < 0) {
                snprintf(msg, cap, "parse: %s", cta_error_msg(e));
                cta_error_free(e);
        } else if ((r = cli_check(&ctx)) < 0) {
                if (ctx.fail != CLI_FAIL_USAGE)
                        r = -1000;
                snprintf(msg, cap, "%s", cta_error_msg(ctx.err));
        }
        cta_error_free(ctx.err);
        cli_opts_done(&o);
        return r;
}

TEST(check__before_connecting)
{
        char dir[] = "/tmp/test_cli_migrate.XXXXXX";
        char msg[512], pw[256], missing[256], big[CLI_PASSWORD_MAX + 2];
        FILE *f;

        ASSERT_NOT_NULL(mkdtemp(dir));
        snprintf(pw, sizeof(pw), "%s/pw", dir);
        snprintf(missing, sizeof(missing), "%s/missing", dir);
        f = fopen(pw, "w");
        ASSERT_NOT_NULL(f);
        fputs("dst-secret\n", f);
        fclose(f);
        unsetenv("CTAGENT_DST_PASSWORD");

        ASSERT_OK(check_of(msg, sizeof(msg), "migrate", "web", "h", NULL));
        ASSERT_OK(check_of(msg, sizeof(msg), "migrate", "web", "h:4434", "--dst-password-file",
                           pw, "--one-time-pass", "--dst-fingerprint", FP, NULL));
        /* What cli_mig_spec_from_opts() refuses, the hook refuses. */
        ASSERT_INT_EQ(check_of(msg, sizeof(msg), "migrate", "web", "h", "--new-veid", "0", NULL),
                      -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "bad --new-veid '0'"));
        ASSERT_INT_EQ(check_of(msg, sizeof(msg), "migrate", "web", "h:0", NULL), -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "bad destination 'h:0'"));
        ASSERT_INT_EQ(check_of(msg, sizeof(msg), "migrate", "web", "h", "--dst-fingerprint", FP,
                               NULL),
                      -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "--one-time-pass"));
        ASSERT_INT_EQ(check_of(msg, sizeof(msg), "migrate", "web", "h", "--dst-plain",
                               "--one-time-pass", "--dst-fingerprint", FP, NULL),
                      -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "drop --dst-plain"));
        /* The credentials: an unreadable --dst-password-file, an oversized
         * $CTAGENT_DST_PASSWORD, an empty container name. */
        ASSERT_INT_EQ(check_of(msg, sizeof(msg), "migrate", "web", "h", "--dst-password-file",
                               missing, NULL),
                      -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "--dst-password-file"));
        ASSERT_NOT_NULL(strstr(msg, missing));
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        setenv("CTAGENT_DST_PASSWORD", big, 1);
        ASSERT_INT_EQ(check_of(msg, sizeof(msg), "migrate", "web", "h", NULL), -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "CTAGENT_DST_PASSWORD"));
        /* The file comes first, as in run(). */
        ASSERT_OK(check_of(msg, sizeof(msg), "migrate", "web", "h", "--dst-password-file", pw,
                           NULL));
        unsetenv("CTAGENT_DST_PASSWORD");
        ASSERT_INT_EQ(check_of(msg, sizeof(msg), "migrate", "", "h", NULL), -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "needs a container"));
        ASSERT_INT_EQ(check_of(msg, sizeof(msg), "migrate", "web", "h", "--dst-password-file",
                               dir, NULL),
                      -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "is a directory"));
        /* A pipe (--dst-password-file /dev/stdin) is not read by the check:
         * run() gets all of it. */
        {
                int p[2];
                char path[64], back[32] = "";
                ASSERT_INT_EQ(pipe(p), 0);
                ASSERT_INT_EQ(write(p[1], "piped-pw\n", 9), 9);
                close(p[1]);
                snprintf(path, sizeof(path), "/dev/fd/%d", p[0]);
                ASSERT_OK(check_of(msg, sizeof(msg), "migrate", "web", "h",
                                   "--dst-password-file", path, NULL));
                ASSERT_INT_EQ(read(p[0], back, sizeof(back) - 1), 9);
                ASSERT_STR_EQ(back, "piped-pw\n");
                close(p[0]);
        }
        unlink(pw);
        rmdir(dir);
        return 0;
}

/* ---- the request, read back by the node's parser ---- */

static int parse_req(const struct cli_req *r, struct cta_req **ret_req,
                     struct cta_migrate_req *mr)
{
        struct cta_error *e = NULL;

        if (cta_req_parse(r->b.data, r->b.len, ret_req, &e) < 0)
                TAP_FAIL("request does not parse: %s\n%s", cta_error_msg(e), r->b.data);
        if (cta_req_parse_migrate_v2v((*ret_req)->call_node, mr, &e) < 0)
                TAP_FAIL("migrate_v2v does not parse: %s\n%s", cta_error_msg(e), r->b.data);
        return 0;
}

TEST(request__password_login)
{
        struct cli_conn c = { .next_id = 6 };
        struct cli_mig_spec s = {
                .eid = EID1,
                .dst_host = "127.0.0.12",
                .dst_port = 44342,
                .login_name = "admin <&>",
                .login_realm = CLI_SYSTEM_REALM,
                .password = "p&ss\"w<rd>",
                .remove = true,
        };
        _cleanup_(cta_req_freep) struct cta_req *req = NULL;
        struct cta_migrate_req mr;
        struct cli_req r;

        cli_mig_req_build(&r, &c, &s);
        if (parse_req(&r, &req, &mr) < 0)
                return -1;
        ASSERT_TRUE(streq(req->id, "7") && streq(r.id, "7"));
        ASSERT_TRUE(req->progress);
        ASSERT_TRUE(streq(cta_req_operator(req), "relocator"));
        ASSERT_TRUE(streq(req->op, "relocator") && streq(req->call, "migrate_v2v"));
        ASSERT_SIZE_EQ(mr.n_eids, 1);
        ASSERT_TRUE(streq(mr.eids[0], EID1));
        ASSERT_TRUE(mr.remove && !mr.force && !mr.nostart && mr.type == 0);
        ASSERT_TRUE(!mr.has_new_veid && !mr.new_name[0] && !mr.new_private[0]);
        ASSERT_TRUE(mr.dst.protocol == CTA_DST_SSL);
        ASSERT_TRUE(streq(mr.dst.address, "127.0.0.12"));
        ASSERT_INT_EQ(mr.dst.port, 44342);
        ASSERT_TRUE(streq(mr.dst.login.name, "admin <&>"));
        ASSERT_TRUE(streq(mr.dst.login.realm, CLI_SYSTEM_REALM));
        ASSERT_TRUE(mr.dst.has_password && streq(mr.dst.password, "p&ss\"w<rd>"));
        /* The password is the masked range (for -vv dumps), and only there. */
        {
                char enc[64];
                size_t n = r.secret_end - r.secret_start;
                ASSERT_TRUE(r.secret_end > r.secret_start && n < sizeof(enc));
                memcpy(enc, r.b.data + r.secret_start, n);
                enc[n] = '\0';
                char dec[64];
                ASSERT_TRUE(cta_b64_decode_str(enc, n, dec, sizeof(dec)) >= 0);
                ASSERT_TRUE(streq(dec, "p&ss\"w<rd>"));
                ASSERT_TRUE(!strstr(r.b.data, "p&ss"));
        }
        /* XSD order: options before eid_list before dst; the login before the password. */
        const char *opt = strstr(r.b.data, "<options>"), *el = strstr(r.b.data, "<eid_list>");
        const char *dst = strstr(r.b.data, "<dst>"), *login = strstr(r.b.data, "<login>");
        const char *pw = strstr(r.b.data, "<password>"), *port = strstr(r.b.data, "<port>");
        ASSERT_TRUE(opt && el && dst && login && pw && port);
        ASSERT_TRUE(opt < el && el < dst && port < login && login < pw);
        ASSERT_TRUE(strstr(r.b.data, "<remove>true</remove>") != NULL);
        ASSERT_TRUE(strstr(r.b.data, "<type>0</type>") != NULL);
        /* no compress element unless asked: the node's default applies */
        ASSERT_TRUE(strstr(r.b.data, "compress") == NULL && mr.compress == -1);
        cli_req_done(&r);
        return 0;
}

TEST(request__compress_level_reaches_the_agent)
{
        static const int levels[] = { 0, 1, CTA_COMPRESS_LEVEL_ON, 19, CTA_COMPRESS_AUTO };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(levels); i++) {
                struct cli_conn c = { .next_id = 0 };
                struct cli_mig_spec s = {
                        .eid = EID1, .dst_host = "h", .dst_port = 4434, .login_name = "a",
                        .login_realm = CLI_SYSTEM_REALM, .password = "p",
                        .has_compress = true, .compress = levels[i],
                };
                _cleanup_(cta_req_freep) struct cta_req *req = NULL;
                struct cta_migrate_req mr;
                struct cli_req r;
                cli_mig_req_build(&r, &c, &s);
                if (parse_req(&r, &req, &mr) < 0)
                        return -1;
                ASSERT_INT_EQ(mr.compress, levels[i]);
                /* after the schema's fields (type), so that they keep their order */
                const char *t = strstr(r.b.data, "<type>"), *z = strstr(r.b.data, "<compress>");
                ASSERT_TRUE(t && z && t < z);
                cli_req_done(&r);
        }
        return 0;
}

TEST(request__one_time_pass_and_config)
{
        struct cli_conn c = { .next_id = 0 };
        struct cli_mig_spec s = {
                .eid = EID1,
                .dst_host = "::1",
                .dst_port = 4433,
                .dst_plain = true,
                .login_name = PASS,
                .login_realm = CLI_ONE_TIME_REALM,
                .password = NULL,
                .force = true,
                .nostart = true,
                .has_new_veid = true,
                .new_veid = 2147483647u,
                .new_name = "web & co",
                .new_private = "/srv/ct/b",
        };
        _cleanup_(cta_req_freep) struct cta_req *req = NULL;
        struct cta_migrate_req mr;
        struct cli_req r;

        cli_mig_req_build(&r, &c, &s);
        if (parse_req(&r, &req, &mr) < 0)
                return -1;
        ASSERT_TRUE(mr.force && mr.nostart && !mr.remove);
        ASSERT_TRUE(mr.has_new_veid && mr.new_veid == 2147483647u);
        ASSERT_TRUE(streq(mr.new_name, "web & co"));
        ASSERT_TRUE(streq(mr.new_private, "/srv/ct/b"));
        ASSERT_TRUE(mr.dst.protocol == CTA_DST_PLAIN);
        ASSERT_TRUE(streq(mr.dst.address, "::1"));
        ASSERT_INT_EQ(mr.dst.port, 4433);
        ASSERT_TRUE(streq(mr.dst.login.name, PASS));
        ASSERT_TRUE(streq(mr.dst.login.realm, CLI_ONE_TIME_REALM));
        ASSERT_TRUE(!mr.dst.has_password);
        ASSERT_TRUE(!strstr(r.b.data, "<password"));
        ASSERT_TRUE(r.secret_start == 0 && r.secret_end == 0);
        cli_req_done(&r);
        return 0;
}

/* ---- progress packets as the node writes them ---- */

static struct cta_resp *progress_packet(bool vendor, const char *phase, const char *done,
                                        const char *total, int percent, int status)
{
        struct cta_info_param params[5] = {
                { "eid", EID1 },
                { "dst", "127.0.0.12:44342" },
                { "phase", phase },
                { "bytes_done", done },
                { "bytes_total", total },
        };
        const char *eids[1] = { EID1 };
        struct cta_progress p = {
                .template_text = "Migrating container %eid% to %dst%: %phase%",
                .params = params,
                .nparams = done ? 5 : 3,
                .percent = percent,
                .eids = eids,
                .neids = 1,
                .op = "relocator.migrate_v2v",
                .status = status,
                .req_id = "7",
        };
        struct cta_reply_hdr h = { .id = "7", .origin = "relocator", .client = "vzclient1-x" };
        struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_resp *resp = NULL;

        cta_reply_set_vendor_forms(vendor);
        if (cta_progress_frame(&b, &h, &p) < 0 ||
            cta_resp_parse(b.data, b.len - 1, &resp, NULL) < 0)
                resp = NULL;
        cta_reply_set_vendor_forms(false);
        cta_buf_done(&b);
        return resp;
}

TEST(progress__parameters_and_text)
{
        for (int vendor = 0; vendor < 2; vendor++) {
                struct cli_mig_progress p;
                struct cta_resp *resp = progress_packet(
                        vendor, "copying data, 1048576 of 268435456 bytes", "1048576",
                        "268435456", 0, 2);

                ASSERT_TRUE(resp && resp->is_progress);
                cli_mig_progress_parse(resp, &p);
                cta_resp_free(resp);
                if (!streq(p.phase, "copying data"))
                        TAP_FAIL("phase '%s'", p.phase);
                ASSERT_TRUE(p.has_bytes && p.done == 1048576 && p.total == 268435456);
                ASSERT_INT_EQ(p.percent, 0);
                ASSERT_INT_EQ(p.status, 2);

                /* The parameters win over the text. */
                resp = progress_packet(vendor, "copying data, 1 of 2 bytes", "300", "400", 75, 2);
                ASSERT_TRUE(resp);
                cli_mig_progress_parse(resp, &p);
                cta_resp_free(resp);
                ASSERT_TRUE(streq(p.phase, "copying data") && p.done == 300 && p.total == 400);
                ASSERT_INT_EQ(p.percent, 75);

                /* Without the parameters: from the text. */
                resp = progress_packet(vendor, "copying data, 5 of 10 bytes", NULL, NULL, 50, 2);
                ASSERT_TRUE(resp);
                cli_mig_progress_parse(resp, &p);
                cta_resp_free(resp);
                ASSERT_TRUE(streq(p.phase, "copying data") && p.has_bytes);
                ASSERT_TRUE(p.done == 5 && p.total == 10);

                /* A phase without bytes; done and failed. */
                resp = progress_packet(vendor, "stopping the container", "0", "4096", 0, 2);
                ASSERT_TRUE(resp);
                cli_mig_progress_parse(resp, &p);
                cta_resp_free(resp);
                ASSERT_TRUE(streq(p.phase, "stopping the container"));
                ASSERT_TRUE(p.has_bytes && p.done == 0 && p.total == 4096);
                resp = progress_packet(vendor, "failed", NULL, NULL, -1, 4);
                ASSERT_TRUE(resp);
                cli_mig_progress_parse(resp, &p);
                cta_resp_free(resp);
                ASSERT_TRUE(streq(p.phase, "failed") && !p.has_bytes);
                ASSERT_INT_EQ(p.percent, -1);
                ASSERT_INT_EQ(p.status, 4);
        }
        return 0;
}

TEST(progress__hostile_values)
{
        struct cli_mig_progress p;
        /* Not numbers, or done beyond total: never trusted as they are. */
        struct cta_resp *resp = progress_packet(false, "copying", "-5", "12x", 250, 2);

        ASSERT_TRUE(resp);
        cli_mig_progress_parse(resp, &p);
        cta_resp_free(resp);
        ASSERT_TRUE(!p.has_bytes);
        ASSERT_INT_EQ(p.percent, 100);
        resp = progress_packet(false, "copying", "900", "100", 90, 2);
        ASSERT_TRUE(resp);
        cli_mig_progress_parse(resp, &p);
        cta_resp_free(resp);
        ASSERT_TRUE(p.has_bytes && p.done == 100 && p.total == 100);
        resp = progress_packet(false, "copying", "1", "99999999999999999999999", 1, 2);
        ASSERT_TRUE(resp);
        cli_mig_progress_parse(resp, &p);
        cta_resp_free(resp);
        ASSERT_TRUE(!p.has_bytes);
        return 0;
}

TEST(split_bytes)
{
        static const struct {
                const char *in, *rest;
                bool ok;
                uint64_t done, total;
        } cases[] = {
                { "copying data, 10 of 20 bytes", "copying data", true, 10, 20 },
                { "a, b, 0 of 0 bytes", "a, b", true, 0, 0 },
                { "copying data", "copying data", false, 0, 0 },
                { "copying data, 10 of 20 bytes left", "copying data, 10 of 20 bytes left", false,
                  0, 0 },
                { "copying data,10 of 20 bytes", "copying data,10 of 20 bytes", false, 0, 0 },
                { "copying data, -1 of 20 bytes", "copying data, -1 of 20 bytes", false, 0, 0 },
                { "copying data, 10 of  bytes", "copying data, 10 of  bytes", false, 0, 0 },
                { "copying data, 99999999999999999999 of 1 bytes",
                  "copying data, 99999999999999999999 of 1 bytes", false, 0, 0 },
        };

        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                char buf[128];
                uint64_t d = 7, t = 7;
                snprintf(buf, sizeof(buf), "%s", cases[i].in);
                bool ok = cli_mig_split_bytes(buf, &d, &t);
                if (ok != cases[i].ok || !streq(buf, cases[i].rest))
                        TAP_FAIL("'%s' → %d '%s'", cases[i].in, ok, buf);
                if (ok && (d != cases[i].done || t != cases[i].total))
                        TAP_FAIL("'%s' → %llu of %llu", cases[i].in, (unsigned long long)d,
                                 (unsigned long long)t);
        }
        return 0;
}

TEST(summary)
{
        char line[256];

        cli_mig_summary(line, sizeof(line), "web", "127.0.0.12:44342", 12345,
                        (uint64_t)1 << 30, 10000);
        if (!streq(line, "container web moved to 127.0.0.12:44342 in 12.3 s (1.0 GiB copied at "
                         "102 MiB/s)"))
                TAP_FAIL("'%s'", line);
        /* No copy time measured: the whole time counts. */
        cli_mig_summary(line, sizeof(line), "web", "b:4434", 2000, 4u << 20, 0);
        if (!streq(line, "container web moved to b:4434 in 2.0 s (4.0 MiB copied at 2.0 MiB/s)"))
                TAP_FAIL("'%s'", line);
        cli_mig_summary(line, sizeof(line), EID1, "b:4434", 0, 0, 0);
        if (!streq(line, "container " EID1 " moved to b:4434 in 0.0 s"))
                TAP_FAIL("'%s'", line);
        return 0;
}

TEST(help_lists_migrate)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        cli_print_usage(f, groups);
        cli_print_command_help(f, &cli_cmds_migrate[0]);
        fclose(f);
        ASSERT_TRUE(strstr(buf, "migrate CT DST_HOST[:PORT]") != NULL);
        ASSERT_TRUE(strstr(buf, "--one-time-pass") != NULL);
        ASSERT_TRUE(strstr(buf, "--dst-password-file FILE") != NULL);
        ASSERT_TRUE(strstr(buf, "--compress-level N") != NULL);
        free(buf);
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(spec__destination_and_options), T(spec__usage_errors),
                             T(check__before_connecting),
                             T(request__password_login), T(request__one_time_pass_and_config),
                             T(request__compress_level_reaches_the_agent),
                             T(progress__parameters_and_text), T(progress__hostile_values),
                             T(split_bytes), T(summary), T(help_lists_migrate)));
}
