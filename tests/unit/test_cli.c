/* Unit tests of the client's pure parts: known_nodes, the progress renderer,
 * argument parsing, the request writer. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/conn.h"
#include "cli/known_nodes.h"
#include "cli/progress.h"
#include "proto/packet.h"
#include "tap.h"
#include "util/base64.h"
#include "util/util.h"

#define FP_A "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
#define FP_B "SHA256:FF:EE:DD:CC:BB:AA:99:88:77:66:55:44:33:22:11:00:FF:EE:DD:CC:BB:AA:99:88:77:66:55:44:33:22:11:00"

/* ---- known_nodes ---- */

TEST(kn__key)
{
        char k[300];
        cli_kn_key("Node1.Example.COM", 4434, k);
        ASSERT_STR_EQ(k, "node1.example.com:4434");
        cli_kn_key("::1", 4433, k);
        ASSERT_STR_EQ(k, "[::1]:4433");
        return 0;
}

TEST(kn__fingerprint_valid)
{
        ASSERT_TRUE(cli_kn_fingerprint_valid(FP_A));
        ASSERT_TRUE(cli_kn_fingerprint_valid("sha256:00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:"
                                             "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"));
        ASSERT_TRUE(!cli_kn_fingerprint_valid("SHA256:00:11"));
        ASSERT_TRUE(!cli_kn_fingerprint_valid(FP_A ":00"));
        ASSERT_TRUE(!cli_kn_fingerprint_valid("SHA1:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
                                              "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"));
        ASSERT_TRUE(!cli_kn_fingerprint_valid("SHA256:0011223344556677889900112233445566778899001122"
                                              "33445566778899AABBCCDDEEFF00112233"));
        ASSERT_TRUE(!cli_kn_fingerprint_valid(NULL));
        return 0;
}

TEST(kn__lookup)
{
        const char *text = "# pinned nodes\n"
                           "\n"
                           "alpha:4434 " FP_A "\n"
                           "   \n"
                           "garbage-without-fp\n"
                           "beta:4434\t" FP_B "  trailing words\n"
                           "gamma:4434 " FP_A; /* no final newline */
        unsigned line = 0;
        char *pinned = NULL;

        ASSERT_INT_EQ(cli_kn_lookup(text, "alpha:4434", FP_A, &line, &pinned), CLI_KN_MATCH);
        ASSERT_INT_EQ(line, 3);
        ASSERT_STR_EQ(pinned, FP_A);
        free(pinned);
        pinned = NULL;
        ASSERT_INT_EQ(cli_kn_lookup(text, "beta:4434", FP_A, &line, &pinned), CLI_KN_MISMATCH);
        ASSERT_INT_EQ(line, 6);
        ASSERT_STR_EQ(pinned, FP_B);
        free(pinned);
        ASSERT_INT_EQ(cli_kn_lookup(text, "gamma:4434", FP_A, &line, NULL), CLI_KN_MATCH);
        ASSERT_INT_EQ(line, 7);
        /* Case-insensitive host and fingerprint. */
        ASSERT_INT_EQ(cli_kn_lookup("ALPHA:4434 sha256:00:11\n", "alpha:4434", "SHA256:00:11",
                                    NULL, NULL),
                      CLI_KN_MATCH);
        /* Port is part of the key; a prefix of a key is not the key. */
        ASSERT_INT_EQ(cli_kn_lookup(text, "alpha:4433", FP_A, NULL, NULL), CLI_KN_UNKNOWN);
        ASSERT_INT_EQ(cli_kn_lookup(text, "alpha:443", FP_A, NULL, NULL), CLI_KN_UNKNOWN);
        ASSERT_INT_EQ(cli_kn_lookup(text, "garbage-without-fp", FP_A, NULL, NULL),
                      CLI_KN_UNKNOWN);
        ASSERT_INT_EQ(cli_kn_lookup("", "alpha:4434", FP_A, NULL, NULL), CLI_KN_UNKNOWN);
        ASSERT_INT_EQ(cli_kn_lookup("# alpha:4434 " FP_A "\n", "alpha:4434", FP_A, NULL, NULL),
                      CLI_KN_UNKNOWN);
        return 0;
}

TEST(kn__set)
{
        char *t = cli_kn_set("", "alpha:4434", "sha256:aa");
        ASSERT_STR_EQ(t, "alpha:4434 SHA256:AA\n");
        free(t);

        t = cli_kn_set("# c\nalpha:4434 X\nbeta:1 Y\nALPHA:4434 Z", "alpha:4434", FP_B);
        ASSERT_STR_EQ(t, "# c\nalpha:4434 " FP_B "\nbeta:1 Y\n");
        free(t);

        t = cli_kn_set("beta:1 Y", "alpha:4434", FP_A);
        ASSERT_STR_EQ(t, "beta:1 Y\nalpha:4434 " FP_A "\n");
        free(t);
        return 0;
}

static char *tmpdir(void)
{
        char tmpl[] = "/tmp/test_cli.XXXXXX";
        char *d = mkdtemp(tmpl);
        return d ? cta_xstrdup(d) : NULL;
}

static void rm_rf(const char *dir)
{
        char *cmd = cta_xasprintf("rm -rf '%s'", dir);
        (void)!system(cmd);
        free(cmd);
}

TEST(kn__check_file)
{
        _cleanup_free_ char *dir = tmpdir();
        ASSERT_NOT_NULL(dir);
        _cleanup_free_ char *path = cta_xasprintf("%s/sub/ctagent/known_nodes", dir);
        struct cta_error *e = NULL;
        bool added = false, replaced = false;
        char *text = NULL;
        struct stat st;
        int rc = -1;

        /* First use: added, directory 0700, file 0600. */
        ASSERT_OK(cli_kn_check(path, "alpha:4434", FP_A, false, &added, &replaced, NULL));
        ASSERT_TRUE(added && !replaced);
        ASSERT_OK(cta_read_file(path, 4096, &text, NULL, NULL));
        ASSERT_STR_EQ(text, "alpha:4434 " FP_A "\n");
        free(text);
        ASSERT_INT_EQ(stat(path, &st), 0);
        ASSERT_INT_EQ(st.st_mode & 0777, 0600);
        _cleanup_free_ char *d = cta_xasprintf("%s/sub/ctagent", dir);
        ASSERT_INT_EQ(stat(d, &st), 0);
        ASSERT_INT_EQ(st.st_mode & 0777, 0700);

        /* Same fingerprint again: nothing changes. */
        ASSERT_OK(cli_kn_check(path, "alpha:4434", FP_A, false, &added, &replaced, NULL));
        ASSERT_TRUE(!added && !replaced);

        /* A second node is appended (the file lacked a final newline). */
        FILE *f = fopen(path, "w");
        ASSERT_NOT_NULL(f);
        fputs("# mine\nalpha:4434 " FP_A, f);
        fclose(f);
        ASSERT_OK(cli_kn_check(path, "beta:4434", FP_B, false, &added, NULL, NULL));
        ASSERT_TRUE(added);
        ASSERT_OK(cta_read_file(path, 4096, &text, NULL, NULL));
        ASSERT_STR_EQ(text, "# mine\nalpha:4434 " FP_A "\nbeta:4434 " FP_B "\n");
        free(text);

        /* Changed: refused, message names both fingerprints, file and line. */
        rc = cli_kn_check(path, "alpha:4434", FP_B, false, &added, &replaced, &e);
        ASSERT_INT_EQ(rc, -CTA_E_PEER_CHANGED);
        ASSERT_INT_EQ(cta_error_code(e), CTA_E_PEER_CHANGED);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), FP_A));
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), FP_B));
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), path));
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "line 2"));
        e = cta_error_free(e);
        ASSERT_OK(cta_read_file(path, 4096, &text, NULL, NULL));
        ASSERT_STR_EQ(text, "# mine\nalpha:4434 " FP_A "\nbeta:4434 " FP_B "\n");
        free(text);

        /* An explicit fingerprint replaces the entry in place. */
        ASSERT_OK(cli_kn_check(path, "alpha:4434", FP_B, true, &added, &replaced, NULL));
        ASSERT_TRUE(!added && replaced);
        ASSERT_OK(cta_read_file(path, 4096, &text, NULL, NULL));
        ASSERT_STR_EQ(text, "# mine\nalpha:4434 " FP_B "\nbeta:4434 " FP_B "\n");
        free(text);
        ASSERT_INT_EQ(stat(path, &st), 0);
        ASSERT_INT_EQ(st.st_mode & 0777, 0600);

        /* A malformed fingerprint from the node is refused. */
        ASSERT_INT_EQ(cli_kn_check(path, "gamma:4434", "SHA256:00", false, NULL, NULL, NULL),
                      -CTA_E_TLS);
        rm_rf(dir);
        return 0;
}

TEST(kn__default_path)
{
        _cleanup_free_ char *oldx = getenv("XDG_CONFIG_HOME") ? cta_xstrdup(getenv("XDG_CONFIG_HOME")) : NULL;
        _cleanup_free_ char *oldh = getenv("HOME") ? cta_xstrdup(getenv("HOME")) : NULL;
        char *p;
        int ok = 0;

        setenv("XDG_CONFIG_HOME", "/x/cfg", 1);
        setenv("HOME", "/home/u", 1);
        p = cli_kn_default_path(NULL);
        ok |= !p || strcmp(p, "/x/cfg/ctagent/known_nodes") != 0;
        free(p);
        setenv("XDG_CONFIG_HOME", "relative", 1); /* invalid per the XDG spec */
        p = cli_kn_default_path(NULL);
        ok |= !p || strcmp(p, "/home/u/.config/ctagent/known_nodes") != 0;
        free(p);
        unsetenv("XDG_CONFIG_HOME");
        unsetenv("HOME");
        p = cli_kn_default_path(NULL);
        ok |= p != NULL;
        free(p);
        if (oldx)
                setenv("XDG_CONFIG_HOME", oldx, 1);
        if (oldh)
                setenv("HOME", oldh, 1);
        ASSERT_INT_EQ(ok, 0);
        return 0;
}

/* ---- progress ---- */

TEST(progress__fmt)
{
        char b[16], d[24];
        cli_fmt_bytes(0, b);
        ASSERT_STR_EQ(b, "0 B");
        cli_fmt_bytes(1023, b);
        ASSERT_STR_EQ(b, "1023 B");
        cli_fmt_bytes(1536, b);
        ASSERT_STR_EQ(b, "1.5 KiB");
        cli_fmt_bytes(3ull << 30, b);
        ASSERT_STR_EQ(b, "3.0 GiB");
        cli_fmt_bytes(500ull << 20, b);
        ASSERT_STR_EQ(b, "500 MiB");
        cli_fmt_bytes(UINT64_MAX, b);
        ASSERT_STR_EQ(b, "16.0 EiB");
        cli_fmt_duration(5, d);
        ASSERT_STR_EQ(d, "0:05");
        cli_fmt_duration(754, d);
        ASSERT_STR_EQ(d, "12:34");
        cli_fmt_duration(3723, d);
        ASSERT_STR_EQ(d, "1:02:03");
        cli_fmt_duration(-3, d);
        ASSERT_STR_EQ(d, "0:00");
        return 0;
}

TEST(progress__render_full)
{
        struct cli_progress_state st = {
                .phase = "copying files",
                .percent = 42,
                .done = 1288490189, /* 1.2 GiB */
                .total = 3113851290, /* 2.9 GiB */
                .rate = 32925696,   /* 31.4 MiB/s */
                .eta_sec = 55,
        };
        char line[256];
        size_t n;

        n = cli_progress_render(&st, 100, true, line, sizeof(line));
        ASSERT_STR_EQ(line, "copying files [############------------------]  42%  1.2 GiB / 2.9 GiB"
                            "  31.4 MiB/s  ETA 0:55");
        ASSERT_SIZE_EQ(n, strlen(line));
        ASSERT_TRUE(n <= 99);

        /* Plain (no bar, no width limit). */
        n = cli_progress_render(&st, 0, false, line, sizeof(line));
        ASSERT_STR_EQ(line, "copying files: 42%  1.2 GiB / 2.9 GiB  31.4 MiB/s  ETA 0:55");

        /* 100 % fills the bar. */
        st.percent = 100;
        st.eta_sec = -1;
        st.rate = -1;
        st.done = st.total;
        n = cli_progress_render(&st, 60, true, line, sizeof(line));
        ASSERT_STR_EQ(line, "copying files [###################] 100%  2.9 GiB / 2.9 GiB");
        return 0;
}

TEST(progress__render_narrow)
{
        struct cli_progress_state st = {
                .phase = "transferring the container's private area",
                .percent = 50,
                .done = 1024,
                .total = 2048,
                .rate = 100,
                .eta_sec = 10,
        };
        char line[256];

        for (int w = 1; w <= 120; w++) {
                size_t n = cli_progress_render(&st, w, true, line, sizeof(line));
                ASSERT_SIZE_EQ(n, strlen(line));
                if (n > (size_t)(w > 0 ? w - 1 : 0))
                        TAP_FAIL("width %d: %zu columns: \"%s\"", w, n, line);
        }
        cli_progress_render(&st, 50, true, line, sizeof(line));
        /* The tail keeps the percent; the phase is shortened with "...". */
        ASSERT_NOT_NULL(strstr(line, " 50%"));
        ASSERT_NOT_NULL(strstr(line, "..."));
        ASSERT_NOT_NULL(strchr(line, '['));
        return 0;
}

TEST(progress__render_unknowns)
{
        struct cli_progress_state st = { .phase = NULL, .percent = -1, .rate = -1, .eta_sec = -1 };
        char line[128];

        cli_progress_render(&st, 80, true, line, sizeof(line));
        ASSERT_STR_EQ(line, "");
        st.phase = "starting";
        cli_progress_render(&st, 80, true, line, sizeof(line));
        ASSERT_STR_EQ(line, "starting");
        st.done = 2048;
        cli_progress_render(&st, 80, true, line, sizeof(line));
        ASSERT_STR_EQ(line, "starting: 2.0 KiB");
        st.phase = NULL;
        st.done = 0;
        st.percent = 7;
        cli_progress_render(&st, 30, true, line, sizeof(line));
        ASSERT_STR_EQ(line, "[#---------------------]   7%");
        /* Control characters from the node never reach the terminal. */
        st.phase = "evil\033[2J\r\ntext";
        st.percent = -1;
        cli_progress_render(&st, 80, true, line, sizeof(line));
        ASSERT_STR_EQ(line, "evil?[2J??text");
        /* UTF-8 counts by characters and is cut on a character boundary. */
        st.phase = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
        cli_progress_render(&st, 9, false, line, sizeof(line));
        ASSERT_STR_EQ(line, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9...");
        return 0;
}

static char *read_all(FILE *f)
{
        long n;
        char *s;
        fflush(f);
        n = ftell(f);
        rewind(f);
        s = cta_xmalloc((size_t)n + 1);
        s[fread(s, 1, (size_t)n, f)] = '\0';
        return s;
}

TEST(progress__plain_lines)
{
        FILE *f = tmpfile();
        struct cli_progress p;
        _cleanup_free_ char *out = NULL;

        ASSERT_NOT_NULL(f);
        cli_progress_init(&p, f, false, 0);
        cli_progress_update_at(&p, "checking", 0, 0, 0, 1000);      /* first: printed */
        cli_progress_update_at(&p, "checking", 5, 0, 0, 2000);      /* too soon: held */
        cli_progress_update_at(&p, "copying", 10, 0, 1000, 3000);   /* new phase: printed */
        cli_progress_update_at(&p, "copying", 20, 200, 1000, 4000); /* held */
        cli_progress_update_at(&p, "copying", 60, 600, 1000, 14000); /* interval passed */
        cli_progress_update_at(&p, "copying", 90, 900, 1000, 15000); /* held */
        cli_progress_finish(&p);                                     /* held state shown */
        out = read_all(f);
        fclose(f);
        ASSERT_STR_EQ(out, "checking: 0%\n"
                           "copying: 10%  0 B / 1000 B\n"
                           /* 200 B/s, then 40 B/s over 10 s: smoothed to 76 */
                           "copying: 60%  600 B / 1000 B  76 B/s  ETA 0:05\n"
                           "copying: 90%  900 B / 1000 B  132 B/s  ETA 0:01\n");
        return 0;
}

TEST(progress__tty_redraw)
{
        FILE *f = tmpfile();
        struct cli_progress p;
        _cleanup_free_ char *out = NULL;

        ASSERT_NOT_NULL(f);
        cli_progress_init(&p, f, true, 40);
        cli_progress_update_at(&p, "phase one", 10, 0, 0, 1000);
        cli_progress_update_at(&p, "phase one", 11, 0, 0, 1050); /* throttled */
        cli_progress_print(&p, "a message");
        cli_progress_update_at(&p, "p2", 100, 0, 0, 1060);
        cli_progress_finish(&p);
        out = read_all(f);
        fclose(f);
        ASSERT_STR_EQ(out, "\rphase one [##--------------------]  10%"
                           "\r                                       \ra message\n"
                           "\rp2 [#############################] 100%\n");
        return 0;
}

/* ---- argument parsing ---- */

static int dummy_run(struct cli_ctx *ctx)
{
        return 0;
}

static const struct cli_optdef test_opts[] = {
        { "name", 'n', "NAME", "a name" },
        { "force", 'f', NULL, "a flag" },
        { NULL, 0, NULL, NULL },
};

static const struct cli_optdef vet_opts[] = {
        { "tag", 't', "TAG", "repeatable", CLI_OPT_REPEAT },
        { "name", 'n', "NAME", "not repeatable" },
        { "force", 'f', NULL, "a flag" },
        { "label", 0, "L", "repeatable, never given here", CLI_OPT_REPEAT },
        { NULL, 0, NULL, NULL },
};

static int vet_calls;

static int vet_check(struct cli_ctx *ctx, struct cta_error **err)
{
        vet_calls++;
        if (cli_opt(ctx->o, "force"))
                return cta_error_set(err, CTA_E_INVALID, 0, "--force is not for today");
        return 0;
}

/* A check that fails without saying why. */
static int mute_check(struct cli_ctx *ctx, struct cta_error **err)
{
        return -CTA_E_INVALID;
}

static const struct cli_command test_cmds[] = {
        { .name = "vet", .args = "", .summary = "s", .min_args = 0, .max_args = 0,
          .opts = vet_opts, .check = vet_check, .run = dummy_run },
        { .name = "mute", .args = "", .summary = "s", .min_args = 0, .max_args = 0,
          .check = mute_check, .run = dummy_run },
        { .name = "ping", .args = "", .summary = "s", .min_args = 0, .max_args = 0,
          .run = dummy_run },
        { .name = "raw", .args = "FILE|-", .summary = "s", .min_args = 1, .max_args = 1,
          .run = dummy_run },
        { .name = "create", .args = "CT", .summary = "s", .min_args = 1, .max_args = -1,
          .opts = test_opts, .run = dummy_run },
        { .name = NULL },
};
static const struct cli_command *const test_groups[] = { test_cmds, NULL };

static int parse(struct cli_opts *o, struct cta_error **e, ...)
{
        char *argv[32];
        int argc = 0;
        va_list ap;
        va_start(ap, e);
        argv[argc++] = (char *)"ctagent";
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        argv[argc] = NULL;
        return cli_parse_args(argc, argv, test_groups, o, e);
}

TEST(args__defaults)
{
        struct cli_opts o;
        setenv("USER", "alice", 1);
        ASSERT_OK(parse(&o, NULL, "ping", NULL));
        ASSERT_STR_EQ(o.cmd->name, "ping");
        ASSERT_STR_EQ(o.host, "localhost");
        ASSERT_INT_EQ(o.port, 4434);
        ASSERT_TRUE(!o.plain && !o.xml && !o.no_login);
        ASSERT_STR_EQ(o.user, "alice");
        ASSERT_STR_EQ(o.realm, CLI_SYSTEM_REALM);
        ASSERT_INT_EQ(o.timeout_ms, 60000);
        cli_opts_done(&o);

        ASSERT_OK(parse(&o, NULL, "--plain", "ping", NULL));
        ASSERT_INT_EQ(o.port, 4433);
        cli_opts_done(&o);
        return 0;
}

TEST(args__globals_anywhere)
{
        struct cli_opts o;
        ASSERT_OK(parse(&o, NULL, "-H", "node7:5000", "raw", "-", "--xml", "-vv", "-ubob",
                        "--timeout=5", NULL));
        ASSERT_STR_EQ(o.cmd->name, "raw");
        ASSERT_INT_EQ(o.nargs, 1);
        ASSERT_STR_EQ(o.args[0], "-");
        ASSERT_STR_EQ(o.host, "node7");
        ASSERT_INT_EQ(o.port, 5000);
        ASSERT_TRUE(o.xml);
        ASSERT_INT_EQ(o.verbose, 2);
        ASSERT_STR_EQ(o.user, "bob");
        ASSERT_INT_EQ(o.timeout_ms, 5000);
        cli_opts_done(&o);

        ASSERT_OK(parse(&o, NULL, "--host=[::1]:4500", "--no-login", "ping", NULL));
        ASSERT_STR_EQ(o.host, "::1");
        ASSERT_INT_EQ(o.port, 4500);
        ASSERT_TRUE(o.no_login);
        cli_opts_done(&o);

        /* After "--" everything is an argument. */
        ASSERT_OK(parse(&o, NULL, "raw", "--", "--xml", NULL));
        ASSERT_STR_EQ(o.args[0], "--xml");
        ASSERT_TRUE(!o.xml);
        cli_opts_done(&o);
        return 0;
}

TEST(args__command_options)
{
        struct cli_opts o;
        struct cta_error *e = NULL;

        ASSERT_OK(parse(&o, NULL, "create", "ct1", "ct2", "--name", "web", "-f", NULL));
        ASSERT_INT_EQ(o.nargs, 2);
        ASSERT_STR_EQ(cli_opt(&o, "name"), "web");
        ASSERT_STR_EQ(cli_opt(&o, "force"), "");
        cli_opts_done(&o);

        ASSERT_OK(parse(&o, NULL, "create", "-nweb", "ct1", NULL));
        ASSERT_STR_EQ(cli_opt(&o, "name"), "web");
        ASSERT_NULL(cli_opt(&o, "force"));
        ASSERT_NULL(cli_opt(&o, "nosuch"));
        cli_opts_done(&o);

        /* A command's options are not valid before the command. */
        ASSERT_INT_EQ(parse(&o, &e, "--name", "web", "create", "ct1", NULL), -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "'--name'"));
        e = cta_error_free(e);
        cli_opts_done(&o);
        /* Nor for another command. */
        ASSERT_INT_EQ(parse(&o, &e, "ping", "--force", NULL), -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "for 'ping'"));
        e = cta_error_free(e);
        cli_opts_done(&o);
        return 0;
}

TEST(args__help_version)
{
        struct cli_opts o;

        ASSERT_OK(parse(&o, NULL, "help", NULL));
        ASSERT_TRUE(o.help);
        ASSERT_NULL(o.cmd);
        cli_opts_done(&o);
        ASSERT_OK(parse(&o, NULL, "help", "raw", NULL));
        ASSERT_TRUE(o.help);
        ASSERT_STR_EQ(o.cmd->name, "raw");
        cli_opts_done(&o);
        /* `raw --help` needs no FILE. */
        ASSERT_OK(parse(&o, NULL, "raw", "--help", NULL));
        ASSERT_TRUE(o.help);
        ASSERT_STR_EQ(o.cmd->name, "raw");
        cli_opts_done(&o);
        ASSERT_OK(parse(&o, NULL, "-V", NULL));
        ASSERT_TRUE(o.version);
        cli_opts_done(&o);
        return 0;
}

static int expect_usage(const char *needle, ...)
{
        char *argv[32];
        int argc = 0;
        va_list ap;
        struct cli_opts o;
        struct cta_error *e = NULL;
        int r;

        va_start(ap, needle);
        argv[argc++] = (char *)"ctagent";
        for (char *a; (a = va_arg(ap, char *));)
                argv[argc++] = a;
        va_end(ap);
        argv[argc] = NULL;
        r = cli_parse_args(argc, argv, test_groups, &o, &e);
        cli_opts_done(&o);
        if (r != -CTA_E_INVALID || !strstr(cta_error_msg(e), needle)) {
                printf("# %s: got %d \"%s\"\n", argv[1], r, cta_error_msg(e));
                cta_error_free(e);
                return -1;
        }
        cta_error_free(e);
        return 0;
}

TEST(args__usage_errors)
{
        ASSERT_OK(expect_usage("no command", NULL));
        ASSERT_OK(expect_usage("unknown command 'pong'", "pong", NULL));
        ASSERT_OK(expect_usage("needs an argument", "raw", NULL));
        ASSERT_OK(expect_usage("too many arguments", "ping", "x", NULL));
        ASSERT_OK(expect_usage("too many arguments", "raw", "a", "b", NULL));
        ASSERT_OK(expect_usage("unknown option '--bogus'", "--bogus", "ping", NULL));
        ASSERT_OK(expect_usage("unknown option '-z'", "-vz", "ping", NULL));
        ASSERT_OK(expect_usage("needs a value", "ping", "-H", NULL));
        ASSERT_OK(expect_usage("takes no value", "--xml=1", "ping", NULL));
        ASSERT_OK(expect_usage("--timeout", "--timeout", "soon", "ping", NULL));
        ASSERT_OK(expect_usage("--timeout", "--timeout", "-1", "ping", NULL));
        ASSERT_OK(expect_usage("bad --host", "-H", "[::1", "ping", NULL));
        ASSERT_OK(expect_usage("bad --host", "-H", "host:0", "ping", NULL));
        ASSERT_OK(expect_usage("bad --host", "-H", "host:70000", "ping", NULL));
        ASSERT_OK(expect_usage("bad --realm", "--realm", "nope", "ping", NULL));
        ASSERT_OK(expect_usage("bad --fingerprint", "--fingerprint", "SHA256:00", "ping", NULL));
        ASSERT_OK(expect_usage("--plain", "--plain", "--fingerprint", FP_A, "ping", NULL));
        ASSERT_OK(expect_usage("drop --realm", "--one-time", "x", "--realm", CLI_SYSTEM_REALM,
                               "ping", NULL));
        ASSERT_OK(expect_usage("drop --password-file", "--one-time", "x", "--password-file", "f",
                               "ping", NULL));
        ASSERT_OK(expect_usage("one command name", "help", "ping", "raw", NULL));
        return 0;
}

TEST(args__one_time)
{
        struct cli_opts o;
        ASSERT_OK(parse(&o, NULL, "--one-time", "6b2f0b0e-0000-4000-8000-000000000001", "ping",
                        NULL));
        ASSERT_STR_EQ(o.realm, CLI_ONE_TIME_REALM);
        ASSERT_STR_EQ(o.one_time, "6b2f0b0e-0000-4000-8000-000000000001");
        cli_opts_done(&o);
        return 0;
}

static void touch(const char *path)
{
        FILE *f = fopen(path, "w");
        if (f)
                fclose(f);
}

TEST(args__client_cert)
{
        char dir[] = "/tmp/cta-cli-cert-XXXXXX";
        struct cli_opts o;
        _cleanup_free_ char *cdir = NULL, *crt = NULL, *key = NULL, *other = NULL,
                           *other_key = NULL, *pem = NULL;

        ASSERT_NOT_NULL(mkdtemp(dir));
        setenv("XDG_CONFIG_HOME", dir, 1);
        cdir = cta_xasprintf("%s/ctagent", dir);
        crt = cta_xasprintf("%s/client.crt", cdir);
        key = cta_xasprintf("%s/client.key", cdir);
        other = cta_xasprintf("%s/other.crt", dir);
        other_key = cta_xasprintf("%s/other.key", dir);
        pem = cta_xasprintf("%s/other.pem", dir);

        /* No default pair: no certificate. */
        ASSERT_OK(parse(&o, NULL, "ping", NULL));
        ASSERT_NULL(o.cert_path);
        cli_opts_done(&o);
        /* The default pair once both files exist. */
        ASSERT_INT_EQ(mkdir(cdir, 0700), 0);
        touch(crt);
        ASSERT_OK(parse(&o, NULL, "ping", NULL));
        ASSERT_NULL(o.cert_path); /* (no key yet) */
        cli_opts_done(&o);
        touch(key);
        ASSERT_OK(parse(&o, NULL, "ping", NULL));
        ASSERT_STR_EQ(o.cert_path, crt);
        ASSERT_STR_EQ(o.key_path, key);
        cli_opts_done(&o);
        ASSERT_OK(parse(&o, NULL, "--no-cert", "ping", NULL));
        ASSERT_NULL(o.cert_path);
        cli_opts_done(&o);
        ASSERT_OK(parse(&o, NULL, "--plain", "ping", NULL));
        ASSERT_NULL(o.cert_path); /* plain TCP carries none */
        cli_opts_done(&o);
        /* --cert: its key is the .key beside it, and both must be readable. */
        ASSERT_OK(expect_usage("--cert", "--cert", other, "ping", NULL));
        touch(other);
        ASSERT_OK(expect_usage("client key", "--cert", other, "ping", NULL));
        touch(other_key);
        ASSERT_OK(parse(&o, NULL, "--cert", other, "ping", NULL));
        ASSERT_STR_EQ(o.cert_path, other);
        ASSERT_STR_EQ(o.key_path, other_key);
        cli_opts_done(&o);
        touch(pem);
        ASSERT_OK(expect_usage("does not end in .crt", "--cert", pem, "ping", NULL));
        ASSERT_OK(parse(&o, NULL, "--cert", pem, "--key", other_key, "ping", NULL));
        ASSERT_STR_EQ(o.key_path, other_key);
        cli_opts_done(&o);
        ASSERT_OK(expect_usage("--key needs --cert", "--key", other_key, "ping", NULL));
        ASSERT_OK(expect_usage("contradicts", "--no-cert", "--cert", other, "ping", NULL));
        ASSERT_OK(expect_usage("needs TLS", "--plain", "--cert", other, "ping", NULL));

        unsetenv("XDG_CONFIG_HOME");
        unlink(crt);
        unlink(key);
        unlink(other);
        unlink(other_key);
        unlink(pem);
        rmdir(cdir);
        rmdir(dir);
        return 0;
}

TEST(args__repeatable)
{
        struct cli_opts o;
        const char *const *v = NULL;

        ASSERT_OK(parse(&o, NULL, "vet", "--tag", "a", "-n", "x", "-tb", "--tag=c,d", "-n", "y",
                        "-t", "", NULL));
        /* Every value of a repeatable option, in order; cli_opt() the last. */
        ASSERT_SIZE_EQ(cli_opt_all(&o, "tag", &v), 4);
        ASSERT_STR_EQ(v[0], "a");
        ASSERT_STR_EQ(v[1], "b");
        ASSERT_STR_EQ(v[2], "c,d");
        ASSERT_STR_EQ(v[3], "");
        ASSERT_STR_EQ(cli_opt(&o, "tag"), "");
        /* Any other option: the last value replaces the earlier ones. */
        ASSERT_SIZE_EQ(cli_opt_all(&o, "name", &v), 1);
        ASSERT_STR_EQ(v[0], "y");
        ASSERT_STR_EQ(cli_opt(&o, "name"), "y");
        ASSERT_SIZE_EQ(cli_opt_all(&o, "force", &v), 0);
        ASSERT_SIZE_EQ(cli_opt_all(&o, "label", &v), 0);
        ASSERT_SIZE_EQ(cli_opt_all(&o, "nosuch", &v), 0);
        ASSERT_NULL(v);
        cli_opts_done(&o);
        ASSERT_NULL(o.cmd_lists[0]);
        ASSERT_SIZE_EQ(o.cmd_nvals[0], 0);

        /* A fresh parse starts empty. */
        ASSERT_OK(parse(&o, NULL, "vet", "-t", "z", NULL));
        ASSERT_SIZE_EQ(cli_opt_all(&o, "tag", &v), 1);
        ASSERT_STR_EQ(v[0], "z");
        cli_opts_done(&o);
        return 0;
}

TEST(args__check_hook)
{
        struct cli_opts o;
        struct cli_ctx ctx = { .o = &o };

        /* Parsing alone never runs the hook: main.c runs it, before it
         * asks for a password or connects. */
        vet_calls = 0;
        ASSERT_OK(parse(&o, NULL, "vet", "-f", NULL));
        ASSERT_INT_EQ(vet_calls, 0);
        ASSERT_INT_EQ(cli_check(&ctx), -CTA_E_INVALID);
        ASSERT_INT_EQ(vet_calls, 1);
        ASSERT_INT_EQ(ctx.fail, CLI_FAIL_USAGE);
        ASSERT_STR_EQ(cta_error_msg(ctx.err), "--force is not for today");
        ctx.err = cta_error_free(ctx.err);
        ctx.fail = CLI_FAIL_NONE;
        cli_opts_done(&o);

        ASSERT_OK(parse(&o, NULL, "vet", "-t", "x", NULL));
        ASSERT_OK(cli_check(&ctx));
        ASSERT_INT_EQ(vet_calls, 2);
        ASSERT_TRUE(ctx.fail == CLI_FAIL_NONE && !ctx.err);
        cli_opts_done(&o);

        /* No hook: nothing to check. */
        ASSERT_OK(parse(&o, NULL, "ping", NULL));
        ASSERT_OK(cli_check(&ctx));
        ASSERT_TRUE(!ctx.err);
        cli_opts_done(&o);

        /* A hook that gives no reason still makes a usage error. */
        ASSERT_OK(parse(&o, NULL, "mute", NULL));
        ASSERT_INT_EQ(cli_check(&ctx), -CTA_E_INVALID);
        ASSERT_INT_EQ(ctx.fail, CLI_FAIL_USAGE);
        ASSERT_NOT_NULL(strstr(cta_error_msg(ctx.err), "'mute'"));
        ctx.err = cta_error_free(ctx.err);
        cli_opts_done(&o);
        return 0;
}

/* raw FILE: a missing or unreadable FILE is a usage error before connecting;
 * the file is not read by the check (a pipe stays whole for run()). */
static int raw_check_of(const char *path, char *msg, size_t cap)
{
        static const struct cli_command *const sys_groups[] = { cli_cmds_system, NULL };
        char *argv[] = { (char *)"ctagent", (char *)"raw", (char *)path, NULL };
        struct cli_opts o;
        struct cli_ctx ctx = { .o = &o };
        int r = cli_parse_args(3, argv, sys_groups, &o, NULL);

        msg[0] = '\0';
        if (r >= 0 && (r = cli_check(&ctx)) < 0)
                snprintf(msg, cap, "%s%s", ctx.fail == CLI_FAIL_USAGE ? "" : "(not usage) ",
                         cta_error_msg(ctx.err));
        cta_error_free(ctx.err);
        cli_opts_done(&o);
        return r;
}

TEST(check__raw_file)
{
        _cleanup_free_ char *dir = tmpdir();
        ASSERT_NOT_NULL(dir);
        _cleanup_free_ char *file = cta_xasprintf("%s/packets.xml", dir);
        _cleanup_free_ char *missing = cta_xasprintf("%s/nope.xml", dir);
        char msg[512], path[64], back[16] = "";
        int p[2];
        FILE *f = fopen(file, "w");

        ASSERT_NOT_NULL(f);
        fputs("<packet/>", f);
        fclose(f);
        ASSERT_OK(raw_check_of(file, msg, sizeof(msg)));
        ASSERT_OK(raw_check_of("-", msg, sizeof(msg)));
        ASSERT_INT_EQ(raw_check_of(missing, msg, sizeof(msg)), -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "cannot read"));
        ASSERT_NOT_NULL(strstr(msg, "nope.xml"));
        ASSERT_INT_EQ(raw_check_of(dir, msg, sizeof(msg)), -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(msg, "is a directory"));
        ASSERT_INT_EQ(pipe(p), 0);
        ASSERT_INT_EQ(write(p[1], "<packet/>", 9), 9);
        close(p[1]);
        snprintf(path, sizeof(path), "/dev/fd/%d", p[0]);
        ASSERT_OK(raw_check_of(path, msg, sizeof(msg)));
        ASSERT_INT_EQ(read(p[0], back, sizeof(back) - 1), 9);
        ASSERT_STR_EQ(back, "<packet/>");
        close(p[0]);
        rm_rf(dir);
        return 0;
}

/* ---- the secret prompt, on a pseudo-terminal ---- */

struct prompt_result {
        int rc;
        int code;
        bool echo_back; /* ECHO is on again afterwards */
        char got[64];
};

/* Run cli_prompt_secret(cap) in a child whose controlling terminal is a new
 * pty (none at all if !with_tty), type `input` once the prompt is shown, and
 * collect what the terminal displayed. */
static int prompt_on_pty(bool with_tty, const char *input, size_t cap, struct prompt_result *res,
                         char *screen, size_t screen_cap)
{
        int master = -1, pfd[2];
        size_t shown = 0;
        bool typed = false;
        pid_t pid;
        int status;

        memset(res, 0, sizeof(*res));
        screen[0] = '\0';
        if (with_tty) {
                master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
                if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
                        return -1;
        }
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -1;
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                struct prompt_result r = { 0 };
                struct cta_error *e = NULL;
                struct termios t;
                int fd = -1;

                setsid(); /* no controlling terminal... */
                if (with_tty) {
                        /* ...until the session leader opens one. */
                        fd = open(ptsname(master), O_RDWR);
                        if (fd < 0)
                                _exit(3);
                }
                r.rc = cli_prompt_secret("Secret: ", r.got, cap, &e);
                r.code = cta_error_code(e);
                r.echo_back = fd >= 0 && tcgetattr(fd, &t) == 0 && (t.c_lflag & ECHO);
                (void)!write(pfd[1], &r, sizeof(r));
                _exit(0);
        }
        close(pfd[1]);
        /* Read the screen until the child closes its side (EIO on Linux). */
        while (master >= 0) {
                struct pollfd pf = { .fd = master, .events = POLLIN };
                char buf[256];
                ssize_t n;

                if (poll(&pf, 1, 5000) <= 0)
                        break;
                n = read(master, buf, sizeof(buf));
                if (n <= 0)
                        break;
                if (shown + (size_t)n < screen_cap) {
                        memcpy(screen + shown, buf, (size_t)n);
                        shown += (size_t)n;
                        screen[shown] = '\0';
                }
                if (!typed && strstr(screen, "Secret: ")) {
                        (void)!write(master, input, strlen(input));
                        typed = true;
                }
        }
        if (read(pfd[0], res, sizeof(*res)) != (ssize_t)sizeof(*res))
                res->rc = 1; /* no report */
        close(pfd[0]);
        waitpid(pid, &status, 0);
        if (master >= 0)
                close(master);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

TEST(prompt__no_echo)
{
        struct prompt_result r;
        char screen[512];

        ASSERT_OK(prompt_on_pty(true, "s3cret word\n", 64, &r, screen, sizeof(screen)));
        ASSERT_INT_EQ(r.rc, 0);
        ASSERT_STR_EQ(r.got, "s3cret word");
        /* The prompt was shown, the secret never was, and echo is back on. */
        ASSERT_NOT_NULL(strstr(screen, "Secret: "));
        ASSERT_NULL(strstr(screen, "s3cret"));
        ASSERT_TRUE(r.echo_back);

        /* An empty line is an empty secret. */
        ASSERT_OK(prompt_on_pty(true, "\n", 64, &r, screen, sizeof(screen)));
        ASSERT_INT_EQ(r.rc, 0);
        ASSERT_STR_EQ(r.got, "");
        return 0;
}

TEST(prompt__failures)
{
        struct prompt_result r;
        char screen[512];

        /* Longer than cap - 1: refused and wiped, and the rest of the line
         * is read (the terminal is left clean). */
        ASSERT_OK(prompt_on_pty(true, "abcdefgh\n", 5, &r, screen, sizeof(screen)));
        ASSERT_INT_EQ(r.rc, -CTA_E_TOO_LARGE);
        ASSERT_INT_EQ(r.code, CTA_E_TOO_LARGE);
        ASSERT_STR_EQ(r.got, "");
        ASSERT_NULL(strstr(screen, "abcd"));
        ASSERT_TRUE(r.echo_back);
        /* Exactly cap - 1 fits. */
        ASSERT_OK(prompt_on_pty(true, "abcd\n", 5, &r, screen, sizeof(screen)));
        ASSERT_INT_EQ(r.rc, 0);
        ASSERT_STR_EQ(r.got, "abcd");
        /* End of input (Ctrl-D) before a line end. */
        ASSERT_OK(prompt_on_pty(true, "ab\004\004", 64, &r, screen, sizeof(screen)));
        ASSERT_INT_EQ(r.rc, -CTA_E_CANCELLED);
        ASSERT_STR_EQ(r.got, "");
        ASSERT_TRUE(r.echo_back);
        /* No controlling terminal at all. */
        ASSERT_OK(prompt_on_pty(false, "", 64, &r, screen, sizeof(screen)));
        ASSERT_INT_EQ(r.rc, -CTA_E_IO);
        ASSERT_INT_EQ(r.code, CTA_E_IO);
        return 0;
}

TEST(password_file)
{
        _cleanup_free_ char *dir = tmpdir();
        ASSERT_NOT_NULL(dir);
        _cleanup_free_ char *path = cta_xasprintf("%s/pw", dir);
        struct cta_error *e = NULL;
        char *pw = NULL;
        FILE *f;

        f = fopen(path, "w");
        ASSERT_NOT_NULL(f);
        fputs("first line\r\nsecond\n", f);
        fclose(f);
        ASSERT_OK(cli_read_password_file(path, "--password-file", &pw, NULL));
        ASSERT_STR_EQ(pw, "first line");
        cli_secret_free(pw);

        f = fopen(path, "w");
        ASSERT_NOT_NULL(f);
        for (int i = 0; i < CLI_PASSWORD_MAX + 1; i++)
                fputc('x', f);
        fclose(f);
        ASSERT_INT_EQ(cli_read_password_file(path, "--dst-password-file", &pw, &e),
                      -CTA_E_INVALID);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "--dst-password-file"));
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "longer than 1024"));
        e = cta_error_free(e);

        _cleanup_free_ char *missing = cta_xasprintf("%s/nope", dir);
        ASSERT_TRUE(cli_read_password_file(missing, "--password-file", &pw, &e) < 0);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "--password-file"));
        e = cta_error_free(e);
        rm_rf(dir);
        return 0;
}

/* ---- request writer ---- */

TEST(req__login_packet)
{
        struct cli_conn c = { 0 };
        struct cli_req r;
        _cleanup_(cta_req_freep) struct cta_req *req = NULL;
        struct cta_login login;

        c.next_id = 4;
        cli_req_begin(&r, &c, NULL, "system", false);
        cli_req_open(&r, "login");
        cli_req_b64(&r, "name", "r<o>&ot", 7);
        cli_req_text(&r, "realm", CLI_SYSTEM_REALM);
        cli_req_secret_b64(&r, "password", "s3cret", 6);
        cli_req_close(&r, "login");
        cli_req_end(&r);
        ASSERT_STR_EQ(r.id, "5");
        ASSERT_INT_EQ(c.next_id, 5);
        /* The secret range covers exactly the base64 of the password. */
        ASSERT_SIZE_EQ(r.secret_end - r.secret_start, 8);
        ASSERT_MEM_EQ(r.b.data + r.secret_start, "czNjcmV0", 8);
        ASSERT_NULL(strstr(r.b.data, "<target>"));

        /* The daemon's own parser reads it back. */
        ASSERT_OK(cta_req_parse(r.b.data, r.b.len, &req, NULL));
        ASSERT_STR_EQ(req->id, "5");
        ASSERT_STR_EQ(req->op, "system");
        ASSERT_STR_EQ(req->call, "login");
        ASSERT_OK(cta_req_parse_login(req->call_node, &login, NULL));
        ASSERT_STR_EQ(login.who.name, "r<o>&ot");
        ASSERT_STR_EQ(login.password, "s3cret");
        ASSERT_STR_EQ(login.who.realm, CLI_SYSTEM_REALM);
        cli_req_done(&r);
        return 0;
}

TEST(req__escaping_and_target)
{
        struct cli_conn c = { 0 };
        struct cli_req r;
        _cleanup_(cta_req_freep) struct cta_req *req = NULL;

        cli_req_begin(&r, &c, "vzaenvm", "vzaenvm", true);
        cli_req_text(&r, "name", "a<b>&\"c'</name><evil/>");
        cli_req_end(&r);
        ASSERT_OK(cta_req_parse(r.b.data, r.b.len, &req, NULL));
        ASSERT_STR_EQ(req->target, "vzaenvm");
        ASSERT_TRUE(req->progress);
        ASSERT_STR_EQ(req->call, "name");
        ASSERT_STR_EQ(cta_xnode_ttext(req->call_node), "a<b>&\"c'</name><evil/>");
        ASSERT_INT_EQ(cta_xnode_nchildren(req->op_node), 1);
        cli_req_done(&r);
        return 0;
}

TEST(text__clean)
{
        _cleanup_free_ char *a = cli_clean_text("ok\033]0;x\007 \xc2\x9b" "31m caf\xc3\xa9\n");
        ASSERT_STR_EQ(a, "ok?]0;x? ?31m caf\xc3\xa9?");
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(kn__key), T(kn__fingerprint_valid), T(kn__lookup), T(kn__set),
                             T(kn__check_file), T(kn__default_path), T(progress__fmt),
                             T(progress__render_full), T(progress__render_narrow),
                             T(progress__render_unknowns), T(progress__plain_lines),
                             T(progress__tty_redraw), T(args__defaults),
                             T(args__globals_anywhere), T(args__command_options),
                             T(args__help_version), T(args__usage_errors), T(args__one_time),
                             T(args__client_cert), T(args__repeatable), T(args__check_hook), T(check__raw_file),
                             T(prompt__no_echo),
                             T(prompt__failures), T(password_file),
                             T(req__login_packet), T(req__escaping_and_target),
                             T(text__clean)));
}
