/*
 * Real containers through liblxc (suite 'lxc'; root only, skipped otherwise).
 * Two "nodes" (state dirs, node ids, bridges) under one temp dir; the bridges
 * get 10.199.<r>.1/24 and 10.199.<r+1>.1/24 host addresses: all traffic stays
 * on this machine (the bridges have no uplink). Everything is removed at the
 * end, also after a failure or SIGTERM/SIGINT.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/ct.h"
#include "tap.h"
#include "util/error.h"
#include "util/util.h"

#define VEID 101

struct tnode {
        char id[9];
        char dir[420];
        char bridge[16];
        char cidr[32];
        char ip[32];   /* the container's, with prefix */
        char ipnp[32]; /* without */
        char priv[460];
        char priv103[460];
        struct cta_ct_node node;
        struct cta_ct_backend *b;
};

static char g_root[400];
static struct tnode g_n[2];
static bool g_ready;

static void print_err(const char *what, struct cta_error *e)
{
        printf("# %s: %s\n", what, cta_error_msg(e));
}

#define ASSERT_CT(call)                                                                            \
        do {                                                                                       \
                _cleanup_(cta_error_freep) struct cta_error *_e = NULL;                            \
                int _r = (call);                                                                   \
                if (_r < 0) {                                                                      \
                        print_err(#call, _e);                                                      \
                        TAP_FAIL("%s failed: %d", #call, _r);                                      \
                }                                                                                  \
        } while (0)

static void cleanup(void)
{
        if (!g_root[0])
                return;
        for (int i = 0; i < 2; i++) {
                struct tnode *t = &g_n[i];
                if (!t->id[0])
                        continue;
                if (!t->b && cta_ct_backend_lxc(&t->node, &t->b, NULL) < 0)
                        t->b = NULL;
                if (t->b) {
                        for (uint64_t v = 101; v <= 103; v++) {
                                (void)cta_ct_stop(t->b, v, true, 1, NULL);
                                (void)cta_ct_undefine(t->b, v, NULL);
                        }
                        (void)cta_ct_private_remove(t->b, t->priv, NULL);
                        (void)cta_ct_private_remove(t->b, t->priv103, NULL);
                        (void)cta_ct_node_teardown(t->b, NULL);
                        t->b = cta_ct_backend_free(t->b);
                }
                if (if_nametoindex(t->bridge)) {
                        char cmd[128];
                        snprintf(cmd, sizeof(cmd), "ip link del '%s' 2>/dev/null", t->bridge);
                        (void)system(cmd);
                }
        }
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_root);
        (void)system(cmd);
        g_root[0] = '\0';
}

static void on_signal(int sig)
{
        /* not async-signal-safe, but this is a test: leaking containers and
         * bridges on the machine is worse */
        cleanup();
        _exit(128 + sig);
}

static int setup(void)
{
        uint8_t rnd[2];
        if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
                return -1;
        unsigned net = 100 + rnd[0] % 150; /* 10.199.100-249 and the next */
        /* CTA_LXC_TEST_TMPDIR: e.g. a long path, to exercise LXC's hashed socket names */
        const char *base = getenv("CTA_LXC_TEST_TMPDIR");
        snprintf(g_root, sizeof(g_root), "%.300s/cta-lxc-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(g_root))
                return -1;
        for (int i = 0; i < 2; i++) {
                struct tnode *t = &g_n[i];
                snprintf(t->id, sizeof(t->id), "t%02x%c", rnd[1], 'a' + i);
                snprintf(t->dir, sizeof(t->dir), "%s/%c", g_root, 'a' + i);
                snprintf(t->bridge, sizeof(t->bridge), "ctabr-%.8s", t->id);
                snprintf(t->cidr, sizeof(t->cidr), "10.199.%u.1/24", net + (unsigned)i);
                snprintf(t->ip, sizeof(t->ip), "10.199.%u.2/24", net + (unsigned)i);
                snprintf(t->ipnp, sizeof(t->ipnp), "10.199.%u.2", net + (unsigned)i);
                snprintf(t->priv, sizeof(t->priv), "%s/private/%d", t->dir, VEID);
                snprintf(t->priv103, sizeof(t->priv103), "%s/private/103", t->dir);
                t->node = (struct cta_ct_node){ .state_dir = t->dir, .node_id = t->id,
                                                .bridge_cidr = t->cidr };
                if (mkdir(t->dir, 0700) < 0)
                        return -1;
                if (cta_ct_backend_lxc(&t->node, &t->b, NULL) < 0)
                        return -1;
        }
        g_ready = true;
        return 0;
}

static struct cta_ct_spec spec_for(const struct tnode *t, uint64_t veid, const char *hostname)
{
        struct cta_ct_spec s = { .veid = veid,
                                 .hostname = hostname,
                                 .private_path = t->priv,
                                 .ipv4 = { t->ip },
                                 .n_ipv4 = 1,
                                 .mem_limit_bytes = 256u << 20,
                                 .cpu_limit_percent = 50 };
        return s;
}

static int ping(const char *ip)
{
        char cmd[160];
        if (access("/usr/bin/ping", X_OK) == 0 || access("/bin/ping", X_OK) == 0)
                snprintf(cmd, sizeof(cmd), "ping -c1 -W2 %s >/dev/null 2>&1", ip);
        else
                snprintf(cmd, sizeof(cmd), "/bin/busybox ping -c1 -W2 %s >/dev/null 2>&1", ip);
        int st = system(cmd);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The hostname inside the container's UTS namespace, read from a child that
 * joined it. */
static int ct_hostname(pid_t init, char *out, size_t len)
{
        char path[64];
        int p[2];
        snprintf(path, sizeof(path), "/proc/%d/ns/uts", (int)init);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || pipe(p) < 0)
                return -1;
        pid_t pid = fork();
        if (pid == 0) {
                char h[128] = "";
                if (setns(fd, CLONE_NEWUTS) == 0)
                        (void)gethostname(h, sizeof(h));
                (void)!write(p[1], h, strlen(h));
                _exit(0);
        }
        close(p[1]);
        close(fd);
        ssize_t n = read(p[0], out, len - 1);
        close(p[0]);
        waitpid(pid, NULL, 0);
        out[n > 0 ? n : 0] = '\0';
        return n > 0 ? 0 : -1;
}

static bool same_ns(pid_t pid, const char *ns)
{
        char a[64], la[64] = "", lb[64] = "";
        snprintf(a, sizeof(a), "/proc/%d/ns/%s", (int)pid, ns);
        char b[64];
        snprintf(b, sizeof(b), "/proc/self/ns/%s", ns);
        if (readlink(a, la, sizeof(la) - 1) < 0 || readlink(b, lb, sizeof(lb) - 1) < 0)
                return true;
        return streq(la, lb);
}

static long long read_ll(const char *path)
{
        _cleanup_free_ char *s = NULL;
        if (cta_read_file(path, 4096, &s, NULL, NULL) < 0)
                return -2;
        return strtoll(s, NULL, 10);
}

static char *cg_file(const struct tnode *t, const char *ctrl, const char *file)
{
        return cta_xasprintf("/sys/fs/cgroup/%s/ctagent-%s/lxc.payload.cta-%s-%d/%s", ctrl, t->id,
                             t->id, VEID, file);
}

TEST(lxc__template_and_private)
{
        char *path = NULL;
        uint64_t t0 = cta_now_ms();
        ASSERT_CT(cta_ct_template_prepare(g_n[0].b, "busybox", &path, &_e));
        printf("# busybox template built in %" PRIu64 " ms: %s\n", cta_now_ms() - t0, path);
        free(path);
        for (int i = 0; i < 2; i++) {
                t0 = cta_now_ms();
                ASSERT_CT(cta_ct_private_create(g_n[i].b, "busybox", g_n[i].priv, &_e));
                printf("# private area %s copied in %" PRIu64 " ms\n", g_n[i].priv,
                       cta_now_ms() - t0);
                ASSERT_OK(access(g_n[i].priv, F_OK));
        }
        return 0;
}

TEST(lxc__lifecycle_one_node)
{
        struct tnode *t = &g_n[0];
        struct cta_ct_spec s = spec_for(t, VEID, "cta-test-a101");
        enum cta_ct_state st;
        pid_t pid = 0;
        char host[128];
        char pair[32];

        snprintf(pair, sizeof(pair), "v%.8s.%d", t->id, VEID);
        ASSERT_CT(cta_ct_node_setup(t->b, &_e));
        ASSERT_TRUE(if_nametoindex(t->bridge) != 0);
        ASSERT_CT(cta_ct_define(t->b, &s, &_e));
        ASSERT_CT(cta_ct_state(t->b, VEID, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_DOWN);
        ASSERT_INT_EQ(cta_ct_init_pid(t->b, VEID, &pid, NULL), -CTA_E_BAD_STATE);

        uint64_t t0 = cta_now_ms();
        ASSERT_CT(cta_ct_start(t->b, VEID, &_e));
        printf("# start: %" PRIu64 " ms\n", cta_now_ms() - t0);
        ASSERT_CT(cta_ct_state(t->b, VEID, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_RUNNING);
        ASSERT_INT_EQ(cta_ct_start(t->b, VEID, NULL), -CTA_E_BAD_STATE);
        t0 = cta_now_ms();
        for (int i = 0; i < 20; i++) {
                ASSERT_CT(cta_ct_state(t->b, VEID, &st, &_e));
                ASSERT_INT_EQ(st, CTA_CT_RUNNING);
        }
        printf("# state query: %.1f ms each\n", (double)(cta_now_ms() - t0) / 20);
        ASSERT_CT(cta_ct_init_pid(t->b, VEID, &pid, &_e));
        ASSERT_TRUE(pid > 1);
        ASSERT_TRUE(!same_ns(pid, "pid"));
        ASSERT_TRUE(!same_ns(pid, "net"));
        ASSERT_TRUE(!same_ns(pid, "mnt"));
        ASSERT_OK(ct_hostname(pid, host, sizeof(host)));
        ASSERT_STR_EQ(host, "cta-test-a101");
        {
                char hp[480];
                snprintf(hp, sizeof(hp), "%s/etc/hostname", t->priv);
                _cleanup_free_ char *h = NULL;
                ASSERT_OK(cta_read_file(hp, 256, &h, NULL, NULL));
                ASSERT_STR_EQ(h, "cta-test-a101\n");
        }
        ASSERT_TRUE(if_nametoindex(pair) != 0);
        ASSERT_INT_EQ(ping(t->ipnp), 0);

        unsigned cg = cta_ct_cgroup_detect();
        if (!(cg & CTA_CT_CG_MEMORY_V2)) {
                _cleanup_free_ char *f = cg_file(t, "memory", "memory.limit_in_bytes");
                ASSERT_INT_EQ(read_ll(f), 256 << 20);
        }
        if (!(cg & CTA_CT_CG_CPU_V2)) {
                _cleanup_free_ char *f = cg_file(t, "cpu", "cpu.cfs_quota_us");
                ASSERT_INT_EQ(read_ll(f), 50000);
        }
        /* live limits */
        s.mem_limit_bytes = 128u << 20;
        s.cpu_limit_percent = 25;
        ASSERT_CT(cta_ct_apply_limits(t->b, &s, &_e));
        if (!(cg & CTA_CT_CG_MEMORY_V2)) {
                _cleanup_free_ char *f = cg_file(t, "memory", "memory.limit_in_bytes");
                ASSERT_INT_EQ(read_ll(f), 128 << 20);
        }
        if (!(cg & CTA_CT_CG_CPU_V2)) {
                _cleanup_free_ char *f = cg_file(t, "cpu", "cpu.cfs_quota_us");
                ASSERT_INT_EQ(read_ll(f), 25000);
        }
        s.cpu_limit_percent = 0;
        ASSERT_CT(cta_ct_apply_limits(t->b, &s, &_e));
        if (!(cg & CTA_CT_CG_CPU_V2)) {
                _cleanup_free_ char *f = cg_file(t, "cpu", "cpu.cfs_quota_us");
                ASSERT_INT_EQ(read_ll(f), -1);
        }

        t0 = cta_now_ms();
        ASSERT_CT(cta_ct_stop(t->b, VEID, false, 20, &_e));
        uint64_t dt = cta_now_ms() - t0;
        printf("# graceful stop: %" PRIu64 " ms\n", dt);
        ASSERT_TRUE(dt < 5000); /* init honoured SIGPWR: no timeout, no kill */
        ASSERT_CT(cta_ct_state(t->b, VEID, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_DOWN);
        ASSERT_TRUE(if_nametoindex(pair) == 0);
        ASSERT_CT(cta_ct_stop(t->b, VEID, false, 20, &_e)); /* stopped: a no-op */

        t0 = cta_now_ms();
        ASSERT_CT(cta_ct_start(t->b, VEID, &_e));
        printf("# second start: %" PRIu64 " ms\n", cta_now_ms() - t0);
        ASSERT_INT_EQ(ping(t->ipnp), 0);
        t0 = cta_now_ms();
        ASSERT_CT(cta_ct_stop(t->b, VEID, true, 0, &_e));
        printf("# forced stop: %" PRIu64 " ms\n", cta_now_ms() - t0);
        ASSERT_CT(cta_ct_state(t->b, VEID, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_DOWN);

        /* a graceful stop right after start: the halt signal may arrive before
         * init has its handler; it is re-sent, so no full timeout */
        for (int i = 0; i < 3; i++) {
                ASSERT_CT(cta_ct_start(t->b, VEID, &_e));
                t0 = cta_now_ms();
                ASSERT_CT(cta_ct_stop(t->b, VEID, false, 20, &_e));
                dt = cta_now_ms() - t0;
                printf("# graceful stop right after start: %" PRIu64 " ms\n", dt);
                ASSERT_TRUE(dt < 8000);
        }
        return 0;
}

TEST(lxc__bad_init_fails_cleanly)
{
        struct tnode *t = &g_n[0];
        struct cta_ct_spec s = spec_for(t, 102, "bad");
        enum cta_ct_state st;
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;

        s.init_cmd = "/sbin/no-such-init";
        s.n_ipv4 = 0;
        ASSERT_CT(cta_ct_define(t->b, &s, &_e));
        ASSERT_INT_EQ(cta_ct_start(t->b, 102, &e), -CTA_E_CT_BACKEND);
        printf("# expected error: %s\n", cta_error_msg(e));
        ASSERT_CT(cta_ct_state(t->b, 102, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_DOWN);
        ASSERT_CT(cta_ct_undefine(t->b, 102, &_e));
        ASSERT_CT(cta_ct_state(t->b, 102, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_NONEXISTENT);
        ASSERT_INT_EQ(cta_ct_start(t->b, 102, NULL), -CTA_E_ENV_NOT_FOUND);
        return 0;
}

static void *start_thread(void *arg)
{
        struct tnode *t = arg;
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        uint64_t t0 = cta_now_ms();
        int r = cta_ct_start(t->b, VEID, &e);
        if (r < 0)
                printf("# start on node %s: %s\n", t->id, cta_error_msg(e));
        else
                printf("# start on node %s (threaded): %" PRIu64 " ms\n", t->id, cta_now_ms() - t0);
        return (void *)(intptr_t)r;
}

TEST(lxc__two_nodes_same_veid)
{
        pthread_t th[2];
        pid_t pid[2];
        char host[128];

        for (int i = 0; i < 2; i++) {
                char hn[32];
                snprintf(hn, sizeof(hn), "node%c-101", 'a' + i);
                struct cta_ct_spec s = spec_for(&g_n[i], VEID, hn);
                ASSERT_CT(cta_ct_node_setup(g_n[i].b, &_e));
                ASSERT_CT(cta_ct_define(g_n[i].b, &s, &_e));
        }
        /* both at once, from two threads */
        for (int i = 0; i < 2; i++)
                ASSERT_INT_EQ(pthread_create(&th[i], NULL, start_thread, &g_n[i]), 0);
        for (int i = 0; i < 2; i++) {
                void *rv;
                pthread_join(th[i], &rv);
                ASSERT_INT_EQ((intptr_t)rv, 0);
        }
        for (int i = 0; i < 2; i++) {
                uint64_t *v = NULL;
                size_t n = 0;
                char hn[32];
                ASSERT_CT(cta_ct_init_pid(g_n[i].b, VEID, &pid[i], &_e));
                ASSERT_OK(ct_hostname(pid[i], host, sizeof(host)));
                snprintf(hn, sizeof(hn), "node%c-101", 'a' + i);
                ASSERT_STR_EQ(host, hn);
                ASSERT_INT_EQ(ping(g_n[i].ipnp), 0);
                ASSERT_CT(cta_ct_list_running(g_n[i].b, &v, &n, &_e));
                ASSERT_SIZE_EQ(n, 1);
                ASSERT_INT_EQ(v[0], VEID);
                free(v);
        }
        ASSERT_TRUE(pid[0] != pid[1]);
        /* stopping node a's 101 leaves node b's alone */
        ASSERT_CT(cta_ct_stop(g_n[0].b, VEID, false, 20, &_e));
        enum cta_ct_state st;
        ASSERT_CT(cta_ct_state(g_n[1].b, VEID, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_RUNNING);
        ASSERT_INT_EQ(ping(g_n[1].ipnp), 0);
        ASSERT_CT(cta_ct_stop(g_n[1].b, VEID, false, 20, &_e));
        ASSERT_CT(cta_ct_state(g_n[1].b, VEID, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_DOWN);
        return 0;
}

/* An "agent" process with a daemon's signal state (terminating signals blocked
 * for a signalfd, SIGPIPE ignored) starts the container and is SIGKILLed. */
TEST(lxc__container_outlives_killed_agent)
{
        struct tnode *t = &g_n[0];
        int p[2];
        char c = 0;
        enum cta_ct_state st;
        pid_t init = 0;

        ASSERT_OK(pipe(p));
        pid_t agent = fork();
        if (agent == 0) {
                sigset_t set;
                struct cta_ct_backend *b = NULL;
                sigemptyset(&set);
                sigaddset(&set, SIGTERM);
                sigaddset(&set, SIGINT);
                sigaddset(&set, SIGHUP);
                sigaddset(&set, SIGPWR);
                sigaddset(&set, SIGUSR1);
                sigaddset(&set, SIGUSR2);
                sigaddset(&set, SIGCHLD);
                sigprocmask(SIG_BLOCK, &set, NULL);
                signal(SIGPIPE, SIG_IGN);
                char ok = cta_ct_backend_lxc(&t->node, &b, NULL) == 0 &&
                                          cta_ct_start(b, VEID, NULL) == 0
                                  ? 'y'
                                  : 'n';
                (void)!write(p[1], &ok, 1);
                pause();
                _exit(0);
        }
        close(p[1]);
        ASSERT_INT_EQ(read(p[0], &c, 1), 1);
        close(p[0]);
        kill(agent, SIGKILL);
        waitpid(agent, NULL, 0);
        ASSERT_INT_EQ(c, 'y');

        /* a "restarted agent" (a fresh backend) finds it running */
        struct cta_ct_backend *b2 = NULL;
        ASSERT_CT(cta_ct_backend_lxc(&t->node, &b2, &_e));
        uint64_t *v = NULL;
        size_t n = 0;
        int r = cta_ct_list_running(b2, &v, &n, NULL);
        cta_ct_backend_free(b2);
        ASSERT_OK(r);
        ASSERT_SIZE_EQ(n, 1);
        ASSERT_INT_EQ(v[0], VEID);
        free(v);
        ASSERT_CT(cta_ct_state(t->b, VEID, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_RUNNING);
        ASSERT_INT_EQ(ping(t->ipnp), 0);

        /* the container's init did not inherit the agent's blocked signals */
        ASSERT_CT(cta_ct_init_pid(t->b, VEID, &init, &_e));
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/status", (int)init);
        _cleanup_free_ char *status = NULL;
        ASSERT_OK(cta_read_file(path, 1 << 16, &status, NULL, NULL));
        ASSERT_NOT_NULL(strstr(status, "\nSigBlk:\t0000000000000000\n"));

        uint64_t t0 = cta_now_ms();
        ASSERT_CT(cta_ct_stop(t->b, VEID, false, 20, &_e));
        uint64_t dt = cta_now_ms() - t0;
        printf("# graceful stop after agent kill: %" PRIu64 " ms\n", dt);
        ASSERT_TRUE(dt < 5000);
        return 0;
}

TEST(lxc__undefine_and_nothing_remains)
{
        for (int i = 0; i < 2; i++) {
                struct tnode *t = &g_n[i];
                char path[512];
                ASSERT_CT(cta_ct_undefine(t->b, VEID, &_e));
                _cleanup_free_ char *cdir = cta_xasprintf("%s/lxc/cta-%s-%d", t->dir, t->id, VEID);
                ASSERT_TRUE(access(cdir, F_OK) < 0);
                uint64_t t0 = cta_now_ms();
                ASSERT_CT(cta_ct_private_remove(t->b, t->priv, &_e));
                printf("# private area removed in %" PRIu64 " ms\n", cta_now_ms() - t0);
                ASSERT_TRUE(access(t->priv, F_OK) < 0);
                ASSERT_CT(cta_ct_node_teardown(t->b, &_e));
                ASSERT_TRUE(if_nametoindex(t->bridge) == 0);
                snprintf(path, sizeof(path), "v%.8s.%d", t->id, VEID);
                ASSERT_TRUE(if_nametoindex(path) == 0);
                const char *ctrls[] = { "memory", "cpu", "pids", "unified", "systemd" };
                for (size_t k = 0; k < CTA_ARRAY_SIZE(ctrls); k++) {
                        snprintf(path, sizeof(path), "/sys/fs/cgroup/%s/ctagent-%.8s", ctrls[k],
                                 t->id);
                        if (access(path, F_OK) == 0) {
                                char cmd[600];
                                snprintf(cmd, sizeof(cmd), "find '%s' -type d | sed 's/^/# /'", path);
                                (void)system(cmd);
                                TAP_FAIL("%s remains", path);
                        }
                }
        }
        return 0;
}

/* CTA_LXC_TEST_ROOTFS=<a debootstrap tree with systemd-sysv>: it must boot as a
 * directory template with init /sbin/init, and stop gracefully (SIGRTMIN+3). */
TEST(lxc__debootstrap_tree)
{
        const char *rootfs = getenv("CTA_LXC_TEST_ROOTFS");
        struct tnode *t = &g_n[0];
        enum cta_ct_state st;
        pid_t pid = 0;
        char host[128], ip[32], ipnp[32];

        if (!rootfs)
                return 77;
        _cleanup_free_ char *link = cta_xasprintf("%s/templates/debian", t->dir);
        ASSERT_OK(symlink(rootfs, link));
        uint64_t t0 = cta_now_ms();
        ASSERT_CT(cta_ct_private_create(t->b, "debian", t->priv103, &_e));
        printf("# debian private area copied in %" PRIu64 " ms\n", cta_now_ms() - t0);
        snprintf(ip, sizeof(ip), "%.20s", t->ip);
        ip[strlen(ip) - 4] = '3'; /* 10.199.N.3/24 */
        snprintf(ipnp, sizeof(ipnp), "%.20s", t->ipnp);
        ipnp[strlen(ipnp) - 1] = '3';
        struct cta_ct_spec s = { .veid = 103, .hostname = "deb103", .private_path = t->priv103,
                                 .ipv4 = { ip }, .n_ipv4 = 1, .mem_limit_bytes = 512u << 20 };
        ASSERT_CT(cta_ct_node_setup(t->b, &_e));
        ASSERT_CT(cta_ct_define(t->b, &s, &_e));
        t0 = cta_now_ms();
        ASSERT_CT(cta_ct_start(t->b, 103, &_e));
        printf("# debian start: %" PRIu64 " ms\n", cta_now_ms() - t0);
        ASSERT_CT(cta_ct_init_pid(t->b, 103, &pid, &_e));
        char exep[64], exe[256] = "";
        snprintf(exep, sizeof(exep), "/proc/%d/exe", (int)pid);
        ASSERT_TRUE(readlink(exep, exe, sizeof(exe) - 1) > 0);
        ASSERT_NOT_NULL(strstr(exe, "/systemd")); /* /sbin/init → systemd */
        char cmd[700];
        snprintf(cmd, sizeof(cmd),
                 "for i in $(seq 100); do o=$(timeout 10 lxc-attach -P '%s/lxc' -n cta-%s-103 -- "
                 "systemctl is-system-running 2>&1); case $o in running|degraded) break;; esac; "
                 "sleep 0.1; done; echo \"# systemctl is-system-running: $o\"",
                 t->dir, t->id);
        t0 = cta_now_ms();
        (void)system(cmd);
        printf("# systemd settled after %" PRIu64 " ms more\n", cta_now_ms() - t0);
        ASSERT_OK(ct_hostname(pid, host, sizeof(host)));
        ASSERT_STR_EQ(host, "deb103");
        ASSERT_INT_EQ(ping(ipnp), 0);
        t0 = cta_now_ms();
        ASSERT_CT(cta_ct_stop(t->b, 103, false, 30, &_e));
        uint64_t dt = cta_now_ms() - t0;
        printf("# debian graceful stop: %" PRIu64 " ms\n", dt);
        ASSERT_TRUE(dt < 15000);
        ASSERT_CT(cta_ct_state(t->b, 103, &st, &_e));
        ASSERT_INT_EQ(st, CTA_CT_DOWN);
        ASSERT_CT(cta_ct_undefine(t->b, 103, &_e));
        t0 = cta_now_ms();
        ASSERT_CT(cta_ct_private_remove(t->b, t->priv103, &_e));
        printf("# debian private area removed in %" PRIu64 " ms\n", cta_now_ms() - t0);
        return 0;
}

int main(void)
{
        if (geteuid() != 0 || access("/bin/busybox", X_OK) < 0) {
                printf("1..0 # SKIP needs root and /bin/busybox\n");
                return 0;
        }
        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        atexit(cleanup);
        if (setup() < 0) {
                printf("Bail out! setup failed: %s\n", strerror(errno));
                return 1;
        }
        int r = tap_run(TESTS(T(lxc__template_and_private), T(lxc__lifecycle_one_node),
                              T(lxc__bad_init_fails_cleanly), T(lxc__two_nodes_same_veid),
                              T(lxc__container_outlives_killed_agent),
                              T(lxc__debootstrap_tree), T(lxc__undefine_and_nothing_remains)));
        cleanup();
        return r;
}
