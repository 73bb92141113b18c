/*
 * Unit tests for src/daemon/auth.c.
 *
 * The user/group and PAM tests need root: they create a throwaway user
 * cta-t-<pid> with groups cta-tp-<pid> (primary) and cta-ts-<pid>
 * (supplementary), set its password with chpasswd, and install
 * dist/pam.d/ctagent as the PAM service cta-t-<pid> (/etc/pam.d/cta-t-<pid>):
 * the same file under a private name, so the test neither depends on nor
 * disturbs an /etc/pam.d/ctagent that a running daemon or another test uses.
 * Everything is undone at exit, also after a crash (see fx_start_janitor()).
 * Without root they are skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/auth.h"
#include "tap.h"
#include "util/error.h"
#include "util/util.h"

#ifndef CTA_TEST_SRCDIR
#error "CTA_TEST_SRCDIR (the source root) must be defined"
#endif
#define PAM_SRC CTA_TEST_SRCDIR "/dist/pam.d/ctagent"
#define PASSWORD "Corr3ct-h0rse:battery staple"

/* ---- ratelimit ---- */

enum rl_op { DELAY, FAIL, OK };

struct rl_step {
        enum rl_op op;
        const char *addr;
        uint64_t t;
        uint64_t want; /* for DELAY */
};

#define MIN15 (15ULL * 60 * 1000)

TEST(auth__ratelimit_sequence)
{
        static const struct rl_step steps[] = {
                { DELAY, "10.0.0.1", 0, 0 },       /* unknown address */
                { FAIL, "10.0.0.1", 0, 0 },
                { DELAY, "10.0.0.1", 1, 0 },       /* first failure: no delay */
                { FAIL, "10.0.0.1", 2, 0 },
                { DELAY, "10.0.0.1", 3, 250 },
                { FAIL, "10.0.0.1", 4, 0 },
                { DELAY, "10.0.0.1", 5, 500 },
                { FAIL, "10.0.0.1", 6, 0 },
                { DELAY, "10.0.0.1", 7, 1000 },
                { FAIL, "10.0.0.1", 8, 0 },
                { DELAY, "10.0.0.1", 9, 2000 },
                { FAIL, "10.0.0.1", 10, 0 },
                { DELAY, "10.0.0.1", 11, 4000 },
                { FAIL, "10.0.0.1", 12, 0 },
                { DELAY, "10.0.0.1", 13, 8000 },
                { FAIL, "10.0.0.1", 14, 0 },
                { DELAY, "10.0.0.1", 15, 8000 },   /* capped */
                { DELAY, "10.0.0.2", 15, 0 },      /* other addresses unaffected */
                { DELAY, "10.0.0.10", 15, 0 },
                { OK, "10.0.0.1", 16, 0 },
                { DELAY, "10.0.0.1", 17, 0 },      /* success clears */
                { FAIL, "10.0.0.1", 18, 0 },
                { DELAY, "10.0.0.1", 19, 0 },      /* and the count restarts */
                { FAIL, "10.0.0.1", 20, 0 },
                { DELAY, "10.0.0.1", 21, 250 },

                /* Forgotten 15 minutes after the last failure. */
                { FAIL, "::1", 1000, 0 },
                { FAIL, "::1", 2000, 0 },
                { FAIL, "::1", 3000, 0 },
                { DELAY, "::1", 3000 + MIN15 - 1, 500 },
                { DELAY, "::1", 3000 + MIN15, 0 },
                { FAIL, "::1", 3000 + MIN15 + 1, 0 },
                { DELAY, "::1", 3000 + MIN15 + 2, 0 }, /* starts over */

                /* A failure refreshes the window. */
                { FAIL, "192.0.2.7", 0, 0 },
                { FAIL, "192.0.2.7", MIN15 - 1, 0 },
                { DELAY, "192.0.2.7", 2 * MIN15 - 2, 250 },
                { DELAY, "192.0.2.7", 2 * MIN15 - 1, 0 },
                /* Time going backwards is not an expiry. */
                { FAIL, "192.0.2.8", 5000, 0 },
                { FAIL, "192.0.2.8", 5000, 0 },
                { DELAY, "192.0.2.8", 10, 250 },
        };
        struct cta_ratelimit *rl = cta_ratelimit_new();

        ASSERT_NOT_NULL(rl);
        for (size_t i = 0; i < CTA_ARRAY_SIZE(steps); i++) {
                const struct rl_step *s = &steps[i];
                uint64_t d;

                switch (s->op) {
                case FAIL:
                        cta_ratelimit_fail(rl, s->addr, s->t);
                        break;
                case OK:
                        cta_ratelimit_success(rl, s->addr);
                        break;
                case DELAY:
                        d = cta_ratelimit_delay_ms(rl, s->addr, s->t);
                        if (d != s->want) {
                                cta_ratelimit_free(rl);
                                TAP_FAIL("step %zu: delay(%s, %llu) = %llu, want %llu", i,
                                         s->addr, (unsigned long long)s->t,
                                         (unsigned long long)d, (unsigned long long)s->want);
                        }
                        break;
                }
        }
        cta_ratelimit_free(rl);
        return 0;
}

TEST(auth__ratelimit_cap_evicts_oldest)
{
        struct cta_ratelimit *rl = cta_ratelimit_new();
        char a[64];
        int bad = 0;

        ASSERT_NOT_NULL(rl);
        /* Two failures each, in address order, so each delay is 250 ms. */
        for (int i = 0; i < CTA_RATELIMIT_MAX; i++) {
                (void)snprintf(a, sizeof(a), "10.%d.%d.1", i / 256, i % 256);
                cta_ratelimit_fail(rl, a, (uint64_t)i);
                cta_ratelimit_fail(rl, a, (uint64_t)i);
        }
        ASSERT_SIZE_EQ(cta_ratelimit_count(rl), CTA_RATELIMIT_MAX);
        /* Address 0 fails again: it becomes the newest, so 1 is the oldest. */
        cta_ratelimit_fail(rl, "10.0.0.1", 5000);
        cta_ratelimit_fail(rl, "203.0.113.1", 5001);
        ASSERT_SIZE_EQ(cta_ratelimit_count(rl), CTA_RATELIMIT_MAX);
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, "10.0.1.1", 5002), 0);   /* evicted */
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, "10.0.0.1", 5002), 500); /* kept, 3 failures */
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, "10.0.2.1", 5002), 250);
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, "203.0.113.1", 5002), 0);
        for (int i = 2; i < CTA_RATELIMIT_MAX; i++) {
                (void)snprintf(a, sizeof(a), "10.%d.%d.1", i / 256, i % 256);
                bad += cta_ratelimit_delay_ms(rl, a, 5003) != 250;
        }
        ASSERT_INT_EQ(bad, 0);

        /* Expiry frees everything once the window has passed for all. */
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, "x", 5001 + MIN15), 0);
        ASSERT_SIZE_EQ(cta_ratelimit_count(rl), 0);
        cta_ratelimit_free(rl);
        return 0;
}

TEST(auth__ratelimit_long_and_odd_addresses)
{
        struct cta_ratelimit *rl = cta_ratelimit_new();
        char a[200], b[200];

        ASSERT_NOT_NULL(rl);
        /* Only the first CTA_RATELIMIT_ADDR_MAX - 1 bytes count. */
        memset(a, 'a', sizeof(a) - 1);
        a[sizeof(a) - 1] = '\0';
        memcpy(b, a, sizeof(b));
        b[150] = 'b';
        cta_ratelimit_fail(rl, a, 0);
        cta_ratelimit_fail(rl, b, 0);
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, a, 1), 250);
        ASSERT_SIZE_EQ(cta_ratelimit_count(rl), 1);
        b[10] = 'b';
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, b, 1), 0);

        /* NULL and "" are one (bogus) address, not a crash. */
        cta_ratelimit_fail(rl, NULL, 0);
        cta_ratelimit_fail(rl, "", 0);
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, NULL, 1), 250);
        cta_ratelimit_success(rl, "");
        ASSERT_INT_EQ(cta_ratelimit_delay_ms(rl, NULL, 1), 0);
        ASSERT_NULL(cta_ratelimit_free(rl));
        ASSERT_NULL(cta_ratelimit_free(NULL));
        return 0;
}

struct rl_worker {
        struct cta_ratelimit *rl;
        int id;
};

static void *rl_worker_main(void *arg)
{
        struct rl_worker *w = arg;
        char a[32];

        for (int i = 0; i < 2000; i++) {
                (void)snprintf(a, sizeof(a), "t%d-%d", w->id, i % 500);
                cta_ratelimit_fail(w->rl, a, (uint64_t)i);
                (void)cta_ratelimit_delay_ms(w->rl, a, (uint64_t)i);
                if (i % 7 == 0)
                        cta_ratelimit_success(w->rl, "shared");
                else
                        cta_ratelimit_fail(w->rl, "shared", (uint64_t)i);
        }
        return NULL;
}

TEST(auth__ratelimit_threads)
{
        struct cta_ratelimit *rl = cta_ratelimit_new();
        struct rl_worker w[4];
        pthread_t th[4];
        char a[32];
        int bad = 0;

        ASSERT_NOT_NULL(rl);
        for (int i = 0; i < 4; i++) {
                w[i] = (struct rl_worker){ rl, i };
                ASSERT_INT_EQ(pthread_create(&th[i], NULL, rl_worker_main, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++)
                ASSERT_INT_EQ(pthread_join(th[i], NULL), 0);
        /* Each of the 4 x 500 addresses failed exactly 4 times: 1000 ms. */
        for (int t = 0; t < 4; t++)
                for (int i = 0; i < 500; i++) {
                        (void)snprintf(a, sizeof(a), "t%d-%d", t, i);
                        bad += cta_ratelimit_delay_ms(rl, a, 2000) != 1000;
                }
        ASSERT_INT_EQ(bad, 0);
        ASSERT_TRUE(cta_ratelimit_count(rl) == 2000 || cta_ratelimit_count(rl) == 2001);
        cta_ratelimit_free(rl);
        return 0;
}

/* ---- throwaway user, groups and PAM file (root only) ---- */

static struct {
        bool tried, ready, pam_ok;
        bool user, gprimary, gsupp;
        char name[64], gp[64], gs[64];
        char pam_path[96];      /* /etc/pam.d/<name>, the service is fx.name */
        bool pam_installed;
        bool janitor;           /* this process is the janitor */
} fx;

/* Run argv quietly; stdin from `input` if given. Returns the exit status or -1. */
static int run(const char *const argv[], const char *input)
{
        int in[2] = { -1, -1 }, status = 0;
        pid_t pid;

        if (input && pipe2(in, O_CLOEXEC) < 0)
                return -1;
        pid = fork();
        if (pid < 0)
                return -1;
        if (pid == 0) {
                int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull < 0)
                        _exit(127);
                (void)dup2(input ? in[0] : devnull, 0);
                (void)dup2(devnull, 1);
                (void)dup2(devnull, 2);
                execvp(argv[0], (char *const *)argv);
                _exit(127);
        }
        if (input) {
                size_t n = strlen(input);
                (void)close(in[0]);
                if (write(in[1], input, n) != (ssize_t)n)
                        status = -1;
                (void)close(in[1]);
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Undo everything the fixture did. Idempotent; runs in the test at exit and
 * in the janitor (where the userdel/groupdel of an already cleaned fixture
 * just fail). */
static void fx_cleanup(void)
{
        if (fx.user) {
                (void)run((const char *const[]){ "userdel", "-f", fx.name, NULL }, NULL);
                fx.user = false;
        }
        if (fx.gsupp) {
                (void)run((const char *const[]){ "groupdel", fx.gs, NULL }, NULL);
                fx.gsupp = false;
        }
        if (fx.gprimary) {
                (void)run((const char *const[]){ "groupdel", fx.gp, NULL }, NULL);
                fx.gprimary = false;
        }
        if (fx.pam_installed) {
                (void)unlink(fx.pam_path);
                fx.pam_installed = false;
        }
        fx.ready = false;
}

static void fx_atexit(void)
{
        if (!fx.janitor)
                fx_cleanup();
}

/*
 * A child that waits for this process to go away, however it goes (a crash
 * skips atexit), and then removes the fixture. The test cleans up itself on
 * a normal exit; the janitor then finds nothing left to do.
 */
static void fx_start_janitor(void)
{
        int p[2];
        char c;
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                return;
        pid = fork();
        if (pid < 0) {
                (void)close(p[0]);
                (void)close(p[1]);
                return;
        }
        if (pid > 0) {
                (void)close(p[0]); /* p[1] stays open until we die */
                return;
        }
        fx.janitor = true;
        (void)close(p[1]);
        /* Do not hold the test's output open for the harness. */
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull >= 0) {
                (void)dup2(devnull, 1);
                (void)dup2(devnull, 2);
        }
        (void)setsid();
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        while (read(p[0], &c, 1) < 0 && errno == EINTR)
                ;
        fx_cleanup();
        _exit(0);
}

/* Install the shipped PAM file as service fx.name. */
static int fx_pam(void)
{
        _cleanup_free_ char *want = NULL;
        struct cta_error *e = NULL;

        if (access("/etc/pam.d/common-auth", F_OK) < 0 ||
            access("/etc/pam.d/common-account", F_OK) < 0) {
                printf("# no Debian-style common-auth/common-account: skipping PAM tests\n");
                return 77;
        }
        (void)snprintf(fx.pam_path, sizeof(fx.pam_path), "/etc/pam.d/%s", fx.name);
        fx.pam_installed = true;
        if (cta_read_file(PAM_SRC, 65536, &want, NULL, &e) < 0 ||
            cta_write_file_atomic(fx.pam_path, want, strlen(want), 0644, &e) < 0) {
                printf("# %s\n", cta_error_msg(e));
                cta_error_free(e);
                return -1;
        }
        return 0;
}

/* 0 when the user and groups exist (fx.pam_ok says whether PAM is set up
 * too), 77 to skip, -1 on failure. Runs once. */
static int fx_setup(void)
{
        int r = -1;

        if (fx.tried)
                return fx.ready ? 0 : 77;
        fx.tried = true;
        if (geteuid() != 0) {
                printf("# not root: skipping user and PAM tests\n");
                return 77;
        }
        (void)snprintf(fx.name, sizeof(fx.name), "cta-t-%d", (int)getpid());
        (void)snprintf(fx.gp, sizeof(fx.gp), "cta-tp-%d", (int)getpid());
        (void)snprintf(fx.gs, sizeof(fx.gs), "cta-ts-%d", (int)getpid());
        atexit(fx_atexit);
        /* Mark everything before creating it: cleanup of a thing that does
         * not exist is harmless, a thing created but not marked would stay. */
        fx.gprimary = fx.gsupp = fx.user = true;
        if (run((const char *const[]){ "groupadd", fx.gp, NULL }, NULL) != 0) {
                printf("# groupadd failed: skipping\n");
                fx.gprimary = fx.gsupp = fx.user = false;
                return 77;
        }
        if (run((const char *const[]){ "groupadd", fx.gs, NULL }, NULL) != 0)
                goto out;
        if (run((const char *const[]){ "useradd", "-M", "-N", "-d", "/nonexistent", "-s",
                                       "/usr/sbin/nologin", "-g", fx.gp, "-G", fx.gs, fx.name,
                                       NULL },
                NULL) != 0)
                goto out;
        r = fx_pam();
        if (r == 0) {
                char line[160];
                (void)snprintf(line, sizeof(line), "%s:%s\n", fx.name, PASSWORD);
                fx.pam_ok = run((const char *const[]){ "chpasswd", NULL }, line) == 0;
                if (!fx.pam_ok)
                        printf("# chpasswd failed\n");
        } else if (r != 77) {
                goto out;
        }
        fx_start_janitor();
        fx.ready = true;
        return 0;
out:
        fx_cleanup();
        return -1;
}

/* ---- user info ---- */

static bool has_group(const struct cta_user_info *u, gid_t g)
{
        for (int i = 0; i < u->ngroups; i++)
                if (u->groups[i] == g)
                        return true;
        return false;
}

TEST(auth__user_info_root)
{
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        struct cta_user_info u;

        memset(&u, 0xaa, sizeof(u));
        ASSERT_OK(cta_auth_user_info("root", NULL, &u, &e));
        ASSERT_INT_EQ(u.uid, 0);
        ASSERT_INT_EQ(u.gid, 0);
        ASSERT_TRUE(u.ngroups >= 1 && u.ngroups <= CTA_AUTH_MAX_GROUPS);
        ASSERT_INT_EQ(u.groups[0], 0);
        ASSERT_TRUE(u.is_admin);
        ASSERT_OK(cta_auth_user_info("root", "no-such-group-cta", &u, &e));
        ASSERT_TRUE(u.is_admin);
        return 0;
}

TEST(auth__user_info_unknown_or_bad_name)
{
        static const char *const names[] = {
                "cta-no-such-user-x9", "", "-root", "ro:ot", "a/b", "a b", "r\noot", "\xc3\xa9",
        };
        struct cta_user_info u = { .uid = 4242 };

        for (size_t i = 0; i < CTA_ARRAY_SIZE(names); i++) {
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                ASSERT_INT_EQ(cta_auth_user_info(names[i], "root", &u, &e), -CTA_E_AUTH_FAILED);
                ASSERT_STR_EQ(cta_error_msg(e), "authentication failed");
        }
        ASSERT_INT_EQ(u.uid, 4242); /* untouched */
        {
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                ASSERT_INT_EQ(cta_auth_user_info(NULL, NULL, &u, &e), -CTA_E_AUTH_FAILED);
        }
        return 0;
}

TEST(auth__user_info_groups)
{
        struct passwd *pw;
        struct group *gp, *gs;
        struct cta_user_info u;
        int r = fx_setup();

        if (r)
                return r;
        pw = getpwnam(fx.name);
        ASSERT_NOT_NULL(pw);
        uid_t uid = pw->pw_uid;
        gp = getgrnam(fx.gp);
        ASSERT_NOT_NULL(gp);
        gid_t gpid = gp->gr_gid;
        gs = getgrnam(fx.gs);
        ASSERT_NOT_NULL(gs);
        gid_t gsid = gs->gr_gid;

        static const struct {
                int which; /* 0 none, 1 primary, 2 supplementary, 3 missing, 4 other */
                bool admin;
        } cases[] = { { 0, false }, { 1, true }, { 2, true }, { 3, false }, { 4, false } };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                const char *g = cases[i].which == 1   ? fx.gp
                                : cases[i].which == 2 ? fx.gs
                                : cases[i].which == 3 ? "cta-no-such-group-x9"
                                : cases[i].which == 4 ? "root"
                                                      : NULL;
                memset(&u, 0, sizeof(u));
                if (cta_auth_user_info(fx.name, g, &u, &e) < 0)
                        TAP_FAIL("case %zu: %s", i, cta_error_msg(e));
                ASSERT_INT_EQ(u.uid, uid);
                ASSERT_INT_EQ(u.gid, gpid);
                ASSERT_INT_EQ(u.groups[0], gpid);
                ASSERT_INT_EQ(u.ngroups, 2);
                ASSERT_TRUE(has_group(&u, gsid));
                if (u.is_admin != cases[i].admin)
                        TAP_FAIL("case %zu (group %s): is_admin %d", i, g ? g : "(none)",
                                 u.is_admin);
        }
        return 0;
}

/* ---- PAM ---- */

static int pam_ready(void)
{
        int r = fx_setup();

        if (r)
                return r;
        if (!fx.pam_ok)
                return 77;
        return 0;
}

TEST(auth__pam_password)
{
        static const struct {
                const char *user; /* NULL = the throwaway user */
                const char *password;
                bool ok;
        } cases[] = {
                { NULL, PASSWORD, true },
                { NULL, "Corr3ct-h0rse:battery stapl", false },
                { NULL, PASSWORD "x", false },
                { NULL, "", false },
                { NULL, NULL, false },
                { "cta-no-such-user-x9", PASSWORD, false },
                { "-cta", PASSWORD, false },
        };
        int r = pam_ready();

        if (r)
                return r;
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                const char *user = cases[i].user ? cases[i].user : fx.name;
                uint64_t t0 = cta_now_ms();

                r = cta_auth_pam(fx.name, user, cases[i].password, &e);
                uint64_t dt = cta_now_ms() - t0;
                printf("# case %zu: r=%d in %llu ms\n", i, r, (unsigned long long)dt);
                if (cases[i].ok) {
                        if (r != 0)
                                TAP_FAIL("case %zu: %s", i, cta_error_msg(e));
                        ASSERT_NULL(e);
                } else {
                        ASSERT_INT_EQ(r, -CTA_E_AUTH_FAILED);
                        /* The same words whatever went wrong. */
                        ASSERT_STR_EQ(cta_error_msg(e), "authentication failed");
                        /* pam_unix asks for a 2 s (+-25%) delay on failure; ours replaces it. */
                        ASSERT_TRUE(dt < 1000);
                }
        }
        return 0;
}

TEST(auth__pam_expired_account)
{
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        int r = pam_ready();

        if (r)
                return r;
        /* Right password, but the account expired: pam_acct_mgmt says no. */
        ASSERT_INT_EQ(run((const char *const[]){ "usermod", "-e", "1970-01-02", fx.name, NULL },
                          NULL),
                      0);
        r = cta_auth_pam(fx.name, fx.name, PASSWORD, &e);
        (void)run((const char *const[]){ "usermod", "-e", "", fx.name, NULL }, NULL);
        ASSERT_INT_EQ(r, -CTA_E_AUTH_FAILED);
        ASSERT_STR_EQ(cta_error_msg(e), "authentication failed");
        return 0;
}

struct pam_worker {
        bool good;
        int result;
};

static void *pam_worker_main(void *arg)
{
        struct pam_worker *w = arg;
        struct cta_error *e = NULL;

        w->result = 0;
        for (int i = 0; i < 5 && w->result == 0; i++) {
                int r = cta_auth_pam(fx.name, fx.name, w->good ? PASSWORD : "nope", &e);
                if ((r == 0) != w->good)
                        w->result = -1;
                e = cta_error_free(e);
        }
        return NULL;
}

TEST(auth__pam_threads)
{
        struct pam_worker w[4];
        pthread_t th[4];
        int r = pam_ready();

        if (r)
                return r;
        for (int i = 0; i < 4; i++) {
                w[i] = (struct pam_worker){ .good = i % 2 == 0 };
                ASSERT_INT_EQ(pthread_create(&th[i], NULL, pam_worker_main, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                ASSERT_INT_EQ(pthread_join(th[i], NULL), 0);
                ASSERT_INT_EQ(w[i].result, 0);
        }
        return 0;
}

TEST(auth__pam_unknown_service)
{
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        int r;

        if (geteuid() != 0)
                return 77; /* an unprivileged pam_unix answers differently */
        /* Linux-PAM falls back to /etc/pam.d/other, which denies on Debian. */
        r = cta_auth_pam("cta-no-such-service", "root", "x", &e);
        ASSERT_TRUE(r == -CTA_E_AUTH_FAILED || r == -CTA_E_INTERNAL);
        return 0;
}

/* ---- authorized client certificates ---- */

#define FP_A "SHA256:16:5E:5A:FF:6D:94:B1:49:75:F9:D7:25:35:4E:F9:3E:28:F0:B8:2F:6D:04:82:58:4E:8A:23:60:FB:72:3A:53"
#define FP_B "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"

TEST(auth__cert_match)
{
        static const struct {
                const char *text, *fp, *user;
                int want;
        } cases[] = {
                { FP_A " alice\n", FP_A, "alice", 1 },
                { FP_A " alice", FP_A, "alice", 1 },                    /* no final newline */
                { "  \t" FP_A "\talice laptop key\r\n", FP_A, "alice", 1 }, /* blanks, CRLF */
                { "sha256:16:5e:5a:ff:6d:94:b1:49:75:f9:d7:25:35:4e:f9:3e:28:f0:b8:2f:6d:04:82:"
                  "58:4e:8a:23:60:fb:72:3a:53 alice\n",
                  FP_A, "alice", 1 },                                   /* either case */
                { FP_A " bob\n" FP_A " alice\n", FP_A, "alice", 1 },   /* one certificate, two users */
                { FP_A " bob\n", FP_A, "alice", 0 },
                { FP_A " alicex\n", FP_A, "alice", 0 },                 /* whole names only */
                { FP_A " alic\n", FP_A, "alice", 0 },
                { FP_B " alice\n", FP_A, "alice", -1 },
                { "#" FP_A " alice\n", FP_A, "alice", -1 },              /* a comment */
                { FP_A "\n", FP_A, "alice", 0 },                         /* no user */
                { "SHA256:16:5E alice\n", "SHA256:16:5E", "alice", -1 }, /* a prefix is no fingerprint */
                { FP_A ":00 alice\n", FP_A, "alice", -1 },
                { "SHA1:" FP_A " alice\n", FP_A, "alice", -1 },
                { "", FP_A, "alice", -1 },
                { "\n\n\n", FP_A, "alice", -1 },
        };

        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                int m = cta_auth_cert_match(cases[i].text, strlen(cases[i].text), cases[i].fp,
                                            cases[i].user);
                if (m != cases[i].want)
                        TAP_FAIL("case %zu: got %d, want %d", i, m, cases[i].want);
        }
        /* A NUL inside the text ends no line early and matches nothing. */
        static const char nul[] = FP_A "\0alice\n";
        ASSERT_INT_EQ(cta_auth_cert_match(nul, sizeof(nul) - 1, FP_A, "alice"), -1);
        return 0;
}

static int write_clients(const char *path, const char *text, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        if (fd < 0)
                return -1;
        if (write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fchmod(fd, mode) < 0) {
                close(fd);
                return -1;
        }
        return close(fd);
}

TEST(auth__cert_file)
{
        char dir[] = "/tmp/cta-auth-XXXXXX";
        _cleanup_free_ char *path = NULL;
        struct cta_error *e = NULL;
        int r;

        ASSERT_NOT_NULL(mkdtemp(dir));
        path = cta_xasprintf("%s/authorized_clients", dir);
        /* Missing: refused, not an error of the daemon. */
        ASSERT_INT_EQ(cta_auth_cert(path, FP_A, "alice", &e), -CTA_E_AUTH_FAILED);
        e = cta_error_free(e);
        ASSERT_INT_EQ(write_clients(path, FP_A " alice\n", 0600), 0);
        r = cta_auth_cert(path, FP_A, "alice", &e);
        if (r != 0)
                TAP_FAIL("listed: %s", cta_error_msg(e));
        ASSERT_INT_EQ(cta_auth_cert(path, FP_A, "bob", &e), -CTA_E_AUTH_FAILED);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "another user"));
        e = cta_error_free(e);
        ASSERT_INT_EQ(cta_auth_cert(path, FP_B, "alice", &e), -CTA_E_AUTH_FAILED);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "not listed"));
        e = cta_error_free(e);
        /* Bad names never reach the file. */
        ASSERT_INT_EQ(cta_auth_cert(path, FP_A, "-alice", &e), -CTA_E_AUTH_FAILED);
        e = cta_error_free(e);
        ASSERT_INT_EQ(cta_auth_cert(path, "", "alice", &e), -CTA_E_AUTH_FAILED);
        e = cta_error_free(e);
        /* Writable by group or others: ignored whatever it says. */
        ASSERT_INT_EQ(chmod(path, 0620), 0);
        ASSERT_INT_EQ(cta_auth_cert(path, FP_A, "alice", &e), -CTA_E_IO);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "ignored"));
        e = cta_error_free(e);
        ASSERT_INT_EQ(chmod(path, 0644), 0);
        ASSERT_INT_EQ(cta_auth_cert(path, FP_A, "alice", &e), 0);
        /* Owned by someone else (when we can arrange it). */
        if (geteuid() == 0) {
                ASSERT_INT_EQ(chown(path, 65534, 65534), 0);
                ASSERT_INT_EQ(cta_auth_cert(path, FP_A, "alice", &e), -CTA_E_IO);
                e = cta_error_free(e);
                ASSERT_INT_EQ(chown(path, 0, 0), 0);
        }
        /* A directory, and a file beyond the size limit. */
        ASSERT_INT_EQ(unlink(path), 0);
        ASSERT_INT_EQ(mkdir(path, 0700), 0);
        ASSERT_INT_EQ(cta_auth_cert(path, FP_A, "alice", &e), -CTA_E_IO);
        e = cta_error_free(e);
        ASSERT_INT_EQ(rmdir(path), 0);
        ASSERT_INT_EQ(write_clients(path, FP_A " alice\n", 0600), 0);
        ASSERT_INT_EQ(truncate(path, CTA_AUTH_CLIENTS_FILE_MAX + 1), 0);
        ASSERT_INT_EQ(cta_auth_cert(path, FP_A, "alice", &e), -CTA_E_IO);
        e = cta_error_free(e);
        ASSERT_INT_EQ(unlink(path), 0);
        ASSERT_INT_EQ(rmdir(dir), 0);
        return 0;
}

TEST(auth__pam_account_only)
{
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        int r = pam_ready();

        if (r)
                return r;
        /* No password asked: the account checks alone. */
        r = cta_auth_pam_account(fx.name, fx.name, &e);
        if (r != 0)
                TAP_FAIL("account check: %s", cta_error_msg(e));
        ASSERT_INT_EQ(cta_auth_pam_account(fx.name, "cta-no-such-user-x9", &e), -CTA_E_AUTH_FAILED);
        e = cta_error_free(e);
        /* A locked password locks certificate logins too. */
        ASSERT_INT_EQ(run((const char *const[]){ "usermod", "-L", fx.name, NULL }, NULL), 0);
        r = cta_auth_pam_account(fx.name, fx.name, &e);
        (void)run((const char *const[]){ "usermod", "-U", fx.name, NULL }, NULL);
        ASSERT_INT_EQ(r, -CTA_E_AUTH_FAILED);
        e = cta_error_free(e);
        /* An expired account. */
        ASSERT_INT_EQ(run((const char *const[]){ "usermod", "-e", "1970-01-02", fx.name, NULL },
                          NULL),
                      0);
        r = cta_auth_pam_account(fx.name, fx.name, &e);
        (void)run((const char *const[]){ "usermod", "-e", "", fx.name, NULL }, NULL);
        ASSERT_INT_EQ(r, -CTA_E_AUTH_FAILED);
        e = cta_error_free(e);
        ASSERT_INT_EQ(cta_auth_pam_account(fx.name, fx.name, &e), 0);
        return 0;
}

int main(void)
{
        int r = tap_run(TESTS(T(auth__ratelimit_sequence), T(auth__ratelimit_cap_evicts_oldest),
                              T(auth__ratelimit_long_and_odd_addresses),
                              T(auth__ratelimit_threads), T(auth__user_info_root),
                              T(auth__user_info_unknown_or_bad_name), T(auth__user_info_groups),
                              T(auth__pam_password), T(auth__pam_expired_account),
                              T(auth__pam_threads), T(auth__pam_unknown_service),
                              T(auth__cert_match), T(auth__cert_file),
                              T(auth__pam_account_only)));
        fx_cleanup();
        return r;
}
