/*
 * The liblxc backend.
 *
 * Why every liblxc call runs in a forked child: liblxc is not written for a
 * multithreaded host. Its log target is process-global (lxc.log.file of the
 * last loaded container wins), it forks and clones internally, and the monitor
 * and the container's init inherit the caller's signal mask and ignored
 * signals (a daemon that blocks SIGTERM for a signalfd would hand a container
 * an init that cannot be stopped). The children are forked by a small fork
 * server (ct_zygote.c) that the backend starts while the daemon is still
 * single threaded, so no lock another thread held at fork time comes along.
 * The child resets signals, closes every inherited descriptor but its result
 * socket, starts a new session, sends a pidfd of itself (so that a caller
 * that gives up can kill exactly it) and only then touches liblxc. The result
 * (a fixed-size message plus optional payload) comes back through the socket;
 * the caller never waits for EOF, because LXC's daemonized monitor may keep a
 * copy of it. Only if the fork server is gone does the calling thread fork
 * the child itself, as before it existed (glibc makes malloc and stdio usable
 * after fork() in a threaded process; other allocators may not).
 *
 * Containers are started daemonized (LXC double-forks the monitor and calls
 * setsid), without PDEATHSIG: they outlive the agent, also a SIGKILLed one, and
 * list_running() finds them again.
 *
 * Config files are written by the parent (no liblxc needed): define/undefine
 * are plain file operations.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef CTA_HAVE_LXC
#include <lxc/lxccontainer.h>
#endif

#include "ct/ct_internal.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

/* ---- cgroup layout (no liblxc) ---- */

/* Is `ctrl` in the comma-separated list? */
static bool list_has(const char *list, const char *ctrl)
{
        size_t n = strlen(ctrl);
        for (const char *p = list; p && *p;) {
                const char *e = strchr(p, ',');
                size_t len = e ? (size_t)(e - p) : strlen(p);
                if (len == n && strncmp(p, ctrl, n) == 0)
                        return true;
                p = e ? e + 1 : NULL;
        }
        return false;
}

/* The mount point of the cgroup2 hierarchy (malloc'd), NULL if none. */
static char *cgroup2_mount(void)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        char line[4096];
        while (f && fgets(line, sizeof(line), f)) {
                char *sep = strstr(line, " - ");
                char mnt[4096], root[4096];
                if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
                        continue;
                if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) == 2 && streq(root, "/"))
                        return cta_xstrdup(mnt);
        }
        return NULL;
}

unsigned cta_ct_cgroup_detect(void)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        _cleanup_free_ char *v2 = cgroup2_mount(), *ctrls = NULL;
        bool mem_v1 = false, cpu_v1 = false, dev_v1 = false;
        char line[4096];
        unsigned flags = 0;

        while (f && fgets(line, sizeof(line), f)) {
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2 || strncmp(line, "0:", 2) == 0)
                        continue;
                *c2 = '\0';
                mem_v1 |= list_has(c1 + 1, "memory");
                cpu_v1 |= list_has(c1 + 1, "cpu");
                dev_v1 |= list_has(c1 + 1, "devices");
        }
        if (v2) {
                _cleanup_free_ char *p = cta_xasprintf("%s/cgroup.controllers", v2);
                if (cta_read_file(p, 4096, &ctrls, NULL, NULL) == 0) {
                        char *nl = strchr(ctrls, '\n');
                        if (nl)
                                *nl = '\0';
                        for (char *s = ctrls; *s; s++)
                                if (*s == ' ')
                                        *s = ',';
                }
        }
        if (!mem_v1 && ctrls && list_has(ctrls, "memory"))
                flags |= CTA_CT_CG_MEMORY_V2;
        if (!cpu_v1 && ctrls && list_has(ctrls, "cpu"))
                flags |= CTA_CT_CG_CPU_V2;
        /* cgroup2 has no devices controller file: LXC uses BPF there */
        if (!dev_v1 && v2)
                flags |= CTA_CT_CG_DEVICES_V2;
        return flags;
}

/* <mount>/ctagent-<node> for every cgroup hierarchy mounted at its root. LXC (as
 * root, lxc.cgroup.relative unset) creates lxc.cgroup.dir below the root cgroup. */
int ct_cgroup_node_dirs(const char *node_id, char ***ret, struct cta_error **err)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        char line[4096];
        char **v = NULL;
        size_t n = 0;

        if (!f)
                return cta_error_errno(err, CTA_E_IO, "open /proc/self/mountinfo");
        while (fgets(line, sizeof(line), f)) {
                char *sep = strstr(line, " - ");
                char mnt[4096], root[4096];
                if (!sep || (strncmp(sep + 3, "cgroup ", 7) != 0 &&
                             strncmp(sep + 3, "cgroup2 ", 8) != 0))
                        continue;
                if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 || !streq(root, "/"))
                        continue;
                v = cta_xrealloc(v, (n + 2) * sizeof(*v));
                v[n++] = cta_xasprintf("%s/ctagent-%s", mnt, node_id);
                v[n] = NULL;
        }
        if (!v)
                v = cta_xcalloc(1, sizeof(*v));
        *ret = v;
        return 0;
}

#ifdef CTA_HAVE_LXC

/* rmdir a cgroup directory and its sub-cgroups, deepest first. A cgroup with
 * processes refuses (EBUSY) and stays: only empty ones go. */
static void cgroup_rmdir_tree(int dfd, const char *name, unsigned depth)
{
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return;
        DIR *d = fdopendir(fd);
        if (!d) {
                (void)close(fd);
                return;
        }
        for (struct dirent *de; depth < 16 && (de = readdir(d));)
                if (de->d_type == DT_DIR && de->d_name[0] != '.')
                        cgroup_rmdir_tree(dirfd(d), de->d_name, depth + 1);
        (void)closedir(d);
        (void)unlinkat(dfd, name, AT_REMOVEDIR);
}

/* Remove what LXC leaves behind after a failed start (the monitor's cgroup), or
 * everything of the node (name == NULL; after its last container stopped). */
static void cgroup_cleanup(const char *node_id, const char *name)
{
        char **dirs = NULL;
        if (ct_cgroup_node_dirs(node_id, &dirs, NULL) < 0)
                return;
        for (char **d = dirs; *d; d++) {
                if (name) {
                        _cleanup_free_ char *mon = cta_xasprintf("%s/lxc.monitor.%s", *d, name);
                        _cleanup_free_ char *pay = cta_xasprintf("%s/lxc.payload.%s", *d, name);
                        cgroup_rmdir_tree(AT_FDCWD, mon, 0);
                        cgroup_rmdir_tree(AT_FDCWD, pay, 0);
                } else {
                        cgroup_rmdir_tree(AT_FDCWD, *d, 0);
                }
                free(*d);
        }
        free(dirs);
}

#define LXC_MSG_MAX 480
#define LXC_EXTRA_MAX (1u << 24)

/* What a child reports. */
struct lxc_msg {
        int32_t r; /* 0 or -CTA_E_* */
        int32_t sys_errno;
        int64_t val;        /* op result: state, pid, … */
        uint32_t extra_len; /* bytes of payload after the message */
        char msg[LXC_MSG_MAX];
};

struct lxc_child_out {
        struct lxc_msg m;
        void *extra; /* malloc'd payload */
};

typedef int (*lxc_child_fn)(struct cta_ct_backend *b, struct lxc_container *c, const void *arg,
                             struct lxc_child_out *out);

__attribute__((format(printf, 4, 5))) static int child_fail(struct lxc_child_out *out, int code,
                                                             int sys_errno, const char *fmt, ...)
{
        va_list ap;
        out->m.r = -code;
        out->m.sys_errno = sys_errno;
        va_start(ap, fmt);
        vsnprintf(out->m.msg, sizeof(out->m.msg), fmt, ap);
        va_end(ap);
        return -1;
}

static void write_all(int fd, const void *p, size_t n)
{
        const char *s = p;
        while (n) {
                ssize_t w = write(fd, s, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return;
                s += w;
                n -= (size_t)w;
        }
}

/* Make the forked child a clean process: default signals, nothing blocked, only
 * 0-2 (/dev/null) and the result pipe (returned, as fd 3) open, own session. */
static int child_sanitize(int wfd)
{
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t none;

        sigemptyset(&sa.sa_mask);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void)sigaction(sig, &sa, NULL);
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);

        int hi = fcntl(wfd, F_DUPFD, 10);
        int null = open("/dev/null", O_RDWR);
        if (hi < 0 || null < 0)
                _exit(127);
        for (int fd = 0; fd < 3; fd++)
                if (null != fd)
                        (void)dup2(null, fd);
        if (dup2(hi, 3) < 0)
                _exit(127);
        (void)close_range(4, ~0u, 0);
        (void)fcntl(3, F_SETFD, FD_CLOEXEC);
        (void)setsid();
        umask(022);
        if (chdir("/") < 0)
                _exit(127);
        return 3;
}

/* The child's first message: one byte, with a pidfd of itself attached when
 * the kernel has pidfd_open (5.3+). Without one a caller that times out
 * kills nothing it did not fork itself: a bare pid could have been reused. */
#define LXC_HELLO 'H'

static void child_hello(int wfd)
{
        const char h = LXC_HELLO;
        int pfd = pidfd_open(getpid(), 0);
        (void)ct_send_with_fd(wfd, &h, 1, pfd);
        if (pfd >= 0)
                (void)close(pfd);
}

__attribute__((noreturn)) static void child_main(struct cta_ct_backend *b, const char *name,
                                                 lxc_child_fn fn, const void *arg, int wfd)
{
        struct lxc_child_out out;
        memset(&out, 0, sizeof(out));
        wfd = child_sanitize(wfd);
        child_hello(wfd);
        struct lxc_container *c = NULL;
        if (name) {
                c = lxc_container_new(name, b->lxcpath);
                if (!c)
                        child_fail(&out, CTA_E_CT_BACKEND, errno, "liblxc cannot load '%s'", name);
        }
        if (!name || c)
                (void)fn(b, c, arg, &out);
        if (c)
                lxc_container_put(c);
        if (!out.extra)
                out.m.extra_len = 0;
        write_all(wfd, &out.m, sizeof(out.m));
        if (out.m.extra_len)
                write_all(wfd, out.extra, out.m.extra_len);
        _exit(0);
}

/* Wait until fd is readable (or at EOF) before the deadline (monotonic ms).
 * 0, -ETIMEDOUT, -EIO. */
static int wait_readable(int fd, uint64_t deadline)
{
        for (;;) {
                uint64_t now = cta_now_ms();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                int pr = poll(&pfd, 1, (int)(deadline - now > 60000 ? 60000 : deadline - now));
                if (pr < 0 && errno != EINTR)
                        return -EIO;
                if (pr > 0)
                        return 0;
                /* EINTR or time: the deadline check ends it */
        }
}

/* Read exactly n bytes before the deadline. 0, -ETIMEDOUT, -EPIPE, -EIO. */
static int read_full(int fd, void *p, size_t n, uint64_t deadline)
{
        char *s = p;
        while (n) {
                int w = wait_readable(fd, deadline);
                if (w < 0)
                        return w;
                ssize_t r = read(fd, s, n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -EPIPE;
                s += r;
                n -= (size_t)r;
        }
        return 0;
}

/* What a caller sends the fork server: everything child_main() needs, by value
 * (the server is a fork of this process, so fn is valid there). */
struct lxc_req {
        lxc_child_fn fn;
        uint32_t arg_len;
        char name[128];
        _Alignas(16) unsigned char arg[128];
};

__attribute__((noreturn)) static void lxc_serve(void *ctx, const void *p, size_t len, int fd)
{
        static struct lxc_req q;
        if (len != sizeof(q))
                _exit(127);
        memcpy(&q, p, sizeof(q));
        q.name[sizeof(q.name) - 1] = '\0';
        if (q.arg_len > sizeof(q.arg))
                _exit(127);
        child_main(ctx, q.name[0] ? q.name : NULL, q.fn, q.arg_len ? q.arg : NULL, fd);
}

/* Start the child that runs fn with wfd as its result socket: through the fork
 * server, or (server gone) by forking this thread; then *ret_pid is its pid,
 * for waitpid. 0 or -errno. */
static int lxc_spawn(struct cta_ct_backend *b, const char *name, lxc_child_fn fn,
                     const void *arg, size_t arg_len, int wfd, pid_t *ret_pid)
{
        static atomic_bool warned;
        struct lxc_req q;

        *ret_pid = -1;
        memset(&q, 0, sizeof(q));
        if (arg_len > sizeof(q.arg) || (name && strlen(name) >= sizeof(q.name)))
                return -EINVAL;
        q.fn = fn;
        q.arg_len = (uint32_t)arg_len;
        if (arg_len)
                memcpy(q.arg, arg, arg_len);
        if (name)
                memcpy(q.name, name, strlen(name) + 1);
        if (b->zygote) {
                int r = ct_zygote_spawn(b->zygote, &q, sizeof(q), wfd);
                if (r == 0)
                        return 0;
                if (!atomic_exchange(&warned, true))
                        log_warning("the liblxc fork server is gone (%s): the daemon forks "
                                    "the liblxc children itself from now on",
                                    strerror(-r));
        }
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                child_main(b, name, fn, arg, wfd);
        *ret_pid = pid;
        return 0;
}

/* The child's hello before the deadline: its pidfd (or -1) in *ret_pidfd. */
static int read_hello(int fd, int *ret_pidfd, uint64_t deadline)
{
        char h;
        union {
                char buf[CMSG_SPACE(sizeof(int) * 4)];
                struct cmsghdr align;
        } cm;
        struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
        ssize_t n;

        *ret_pidfd = -1;
        int w = wait_readable(fd, deadline);
        if (w < 0)
                return w;
        while ((n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT)) < 0 && errno == EINTR)
                ;
        if (n <= 0)
                return -EPIPE;
        *ret_pidfd = ct_take_fd(&mh);
        return h == LXC_HELLO ? 0 : -EPROTO;
}

/* Run fn in a child against container `name` (NULL: none); arg is copied
 * (arg_len bytes). On success *ret holds the child's message; a child-reported
 * failure becomes *err. */
static int lxc_call(struct cta_ct_backend *b, const char *name, lxc_child_fn fn, const void *arg,
                    size_t arg_len, unsigned timeout_s, struct lxc_msg *ret, void **ret_extra,
                    struct cta_error **err)
{
        struct lxc_msg m;
        void *extra = NULL;
        int sv[2], status = 0, rr, pidfd = -1;
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return cta_error_errno(err, CTA_E_IO, "socketpair");
        rr = lxc_spawn(b, name, fn, arg, arg_len, sv[1], &pid);
        (void)close(sv[1]);
        if (rr < 0) {
                (void)close(sv[0]);
                return cta_error_set(err, CTA_E_IO, -rr, "cannot start the liblxc helper");
        }
        uint64_t deadline = cta_now_ms() + (uint64_t)timeout_s * 1000;
        memset(&m, 0, sizeof(m));
        rr = read_hello(sv[0], &pidfd, deadline);
        if (rr == 0)
                rr = read_full(sv[0], &m, sizeof(m), deadline);
        if (rr == 0 && m.extra_len) {
                if (m.extra_len > LXC_EXTRA_MAX) {
                        rr = -EPROTO;
                } else {
                        extra = cta_xmalloc(m.extra_len);
                        rr = read_full(sv[0], extra, m.extra_len, deadline);
                }
        }
        (void)close(sv[0]);
        if (rr == -ETIMEDOUT) {
                if (pidfd >= 0)
                        (void)pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
                else if (pid > 0)
                        (void)kill(pid, SIGKILL);
        }
        if (pidfd >= 0)
                (void)close(pidfd);
        while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (rr < 0) {
                free(extra);
                if (rr == -ETIMEDOUT)
                        return cta_error_set(err, CTA_E_TIMEOUT, ETIMEDOUT,
                                             "liblxc did not answer within %u s", timeout_s);
                if (pid > 0 && WIFSIGNALED(status))
                        return cta_error_set(err, CTA_E_CT_BACKEND, 0,
                                             "liblxc helper killed by signal %d",
                                             WTERMSIG(status));
                return cta_error_set(err, CTA_E_CT_BACKEND, 0,
                                     "the liblxc helper ended without an answer");
        }
        m.msg[sizeof(m.msg) - 1] = '\0';
        if (m.r < 0) {
                free(extra);
                _cleanup_free_ char *msg = cta_sanitize(m.msg, LXC_MSG_MAX);
                return cta_error_set(err, -m.r, m.sys_errno, "%s", msg);
        }
        *ret = m;
        if (ret_extra)
                *ret_extra = extra;
        else
                free(extra);
        return 0;
}

/* ---- child-side operations (run in the forked child only) ---- */

static enum cta_ct_state map_state(const char *s)
{
        if (!s)
                return CTA_CT_UNKNOWN;
        if (streq(s, "STOPPED"))
                return CTA_CT_DOWN;
        if (streq(s, "FROZEN"))
                return CTA_CT_SUSPENDED;
        if (streq(s, "RUNNING") || streq(s, "STARTING") || streq(s, "STOPPING") ||
            streq(s, "ABORTING") || streq(s, "FREEZING") || streq(s, "THAWED"))
                return CTA_CT_RUNNING;
        return CTA_CT_UNKNOWN;
}

static int op_state(struct cta_ct_backend *b, struct lxc_container *c, const void *arg,
                     struct lxc_child_out *out)
{
        out->m.val = c->is_defined(c) ? map_state(c->state(c)) : CTA_CT_NONEXISTENT;
        return 0;
}

static int op_start(struct cta_ct_backend *b, struct lxc_container *c, const void *arg,
                     struct lxc_child_out *out)
{
        if (!c->is_defined(c))
                return child_fail(out, CTA_E_ENV_NOT_FOUND, 0, "not defined");
        if (c->is_running(c))
                return child_fail(out, CTA_E_BAD_STATE, 0, "already running");
        c->want_daemonize(c, true);
        c->want_close_all_fds(c, true);
        if (!c->start(c, 0, NULL))
                return child_fail(out, CTA_E_CT_BACKEND, 0, "LXC could not start it");
        if (!c->is_running(c))
                return child_fail(out, CTA_E_CT_BACKEND, 0, "its init exited at once");
        out->m.val = c->init_pid(c);
        return 0;
}

struct stop_arg {
        bool force;
        int timeout_s;
};

static int op_stop(struct cta_ct_backend *b, struct lxc_container *c, const void *arg,
                    struct lxc_child_out *out)
{
        const struct stop_arg *a = arg;
        bool done = false;

        if (!c->is_defined(c))
                return child_fail(out, CTA_E_ENV_NOT_FOUND, 0, "not defined");
        if (!c->is_running(c))
                return 0;
        /* shutdown: lxc.signal.halt, or SIGRTMIN+3 when init blocks it (systemd),
         * else SIGPWR; then wait for STOPPED. The signal is sent again every few
         * seconds: PID 1 of a namespace drops signals it has no handler for yet,
         * so one sent just after start (before init set up its handlers) is lost. */
        int left = a->force ? 0 : a->timeout_s, slice = 1; /* 1 s, 2 s, then 5 s each */
        while (left > 0 && !done) {
                int t = left < slice ? left : slice;
                done = c->shutdown(c, t);
                left -= t;
                slice = slice == 1 ? 2 : 5;
        }
        if (!done) {
                out->m.val = 1; /* killed */
                if (!c->stop(c) && c->is_running(c))
                        return child_fail(out, CTA_E_CT_BACKEND, 0, "LXC could not kill it");
        }
        if (!c->wait(c, "STOPPED", 30))
                return child_fail(out, CTA_E_TIMEOUT, 0, "still not stopped after 30 s");
        return 0;
}

static int op_init_pid(struct cta_ct_backend *b, struct lxc_container *c, const void *arg,
                        struct lxc_child_out *out)
{
        if (!c->is_defined(c))
                return child_fail(out, CTA_E_ENV_NOT_FOUND, 0, "not defined");
        pid_t pid = c->is_running(c) ? c->init_pid(c) : -1;
        if (pid <= 0)
                return child_fail(out, CTA_E_BAD_STATE, 0, "not running");
        out->m.val = pid;
        return 0;
}

struct limits_arg {
        unsigned cg_flags;
        uint64_t mem;
        unsigned cpu;
};

static int op_limits(struct cta_ct_backend *b, struct lxc_container *c, const void *arg,
                      struct lxc_child_out *out)
{
        const struct limits_arg *a = arg;
        char v[64];

        if (!c->is_running(c))
                return 0;
        if (a->cg_flags & CTA_CT_CG_MEMORY_V2) {
                if (a->mem)
                        snprintf(v, sizeof(v), "%" PRIu64, a->mem);
                else
                        snprintf(v, sizeof(v), "max");
                if (!c->set_cgroup_item(c, "memory.max", v))
                        return child_fail(out, CTA_E_CT_BACKEND, errno, "set memory.max = %s", v);
        } else {
                snprintf(v, sizeof(v), "%" PRId64, a->mem ? (int64_t)a->mem : (int64_t)-1);
                if (!c->set_cgroup_item(c, "memory.limit_in_bytes", v))
                        return child_fail(out, CTA_E_CT_BACKEND, errno,
                                          "set memory.limit_in_bytes = %s (below the usage?)", v);
        }
        uint64_t quota = (uint64_t)a->cpu * 1000; /* per 100 ms */
        if (a->cg_flags & CTA_CT_CG_CPU_V2) {
                if (a->cpu)
                        snprintf(v, sizeof(v), "%" PRIu64 " 100000", quota);
                else
                        snprintf(v, sizeof(v), "max 100000");
                if (!c->set_cgroup_item(c, "cpu.max", v))
                        return child_fail(out, CTA_E_CT_BACKEND, errno, "set cpu.max = %s", v);
        } else {
                if (!c->set_cgroup_item(c, "cpu.cfs_period_us", "100000"))
                        return child_fail(out, CTA_E_CT_BACKEND, errno, "set cpu.cfs_period_us");
                snprintf(v, sizeof(v), "%" PRId64, a->cpu ? (int64_t)quota : (int64_t)-1);
                if (!c->set_cgroup_item(c, "cpu.cfs_quota_us", v))
                        return child_fail(out, CTA_E_CT_BACKEND, errno,
                                          "set cpu.cfs_quota_us = %s", v);
        }
        return 0;
}

/* Our containers are exactly the config dirs "cta-<node>-<veid>" in our lxcpath
 * (undefine refuses while running), so ask each whether it runs. This does not
 * depend on how LXC names its command sockets (list_active_containers() parses
 * /proc/net/unix, where long lxcpaths are hashed). */
static int op_list(struct cta_ct_backend *b, struct lxc_container *unused, const void *arg,
                   struct lxc_child_out *out)
{
        _cleanup_free_ char *prefix = cta_xasprintf("cta-%s-", b->node_id);
        _cleanup_closedir_ DIR *d = opendir(b->lxcpath);
        size_t pl = strlen(prefix), n = 0, cap = 16;
        uint64_t *v;

        if (!d)
                return child_fail(out, CTA_E_IO, errno, "cannot open %s", b->lxcpath);
        v = cta_xcalloc(cap, sizeof(*v));
        for (struct dirent *de; (de = readdir(d));) {
                uint64_t veid;
                if (strncmp(de->d_name, prefix, pl) != 0 ||
                    cta_parse_u64(de->d_name + pl, INT64_MAX, &veid) < 0 || veid == 0)
                        continue;
                struct lxc_container *c = lxc_container_new(de->d_name, b->lxcpath);
                if (!c)
                        continue;
                bool running = c->is_defined(c) && c->is_running(c);
                lxc_container_put(c);
                if (!running)
                        continue;
                if (n == cap) {
                        cap *= 2;
                        v = cta_xrealloc(v, cap * sizeof(*v));
                }
                v[n++] = veid;
        }
        qsort(v, n, sizeof(*v), cta_u64_cmp);
        out->extra = v;
        out->m.extra_len = (uint32_t)(n * sizeof(*v));
        out->m.val = (int64_t)n;
        return 0;
}

/* ---- parent side ---- */

static int lxc_op(struct cta_ct_backend *b, uint64_t veid, lxc_child_fn fn, const void *arg,
                  size_t arg_len, unsigned timeout_s, int64_t *ret_val, struct cta_error **err)
{
        _cleanup_free_ char *name = cta_ct_lxc_name(&b->node, veid);
        struct lxc_msg m;
        int r = lxc_call(b, name, fn, arg, arg_len, timeout_s, &m, NULL, err);
        if (r < 0)
                return CT_WRAP(r, err, "container %" PRIu64, veid);
        if (ret_val)
                *ret_val = m.val;
        return 0;
}

static char *log_path(struct cta_ct_backend *b, const char *name)
{
        return cta_xasprintf("%s/%s/lxc.log", b->lxcpath, name);
}

static off_t log_size(struct cta_ct_backend *b, const char *name)
{
        _cleanup_free_ char *path = log_path(b, name);
        struct stat st;
        return stat(path, &st) == 0 ? st.st_size : 0;
}

/* The ERROR lines LXC logged since offset `from` (this start attempt), on one
 * line, for the error message. */
static char *log_errors(struct cta_ct_backend *b, const char *name, off_t from)
{
        _cleanup_free_ char *path = log_path(b, name);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_(cta_buf_donep) struct cta_buf out = CTA_BUF_INIT(0);
        char buf[16384];
        ssize_t n;

        if (fd < 0)
                return NULL;
        n = pread(fd, buf, sizeof(buf) - 1, from);
        if (n <= 0)
                return NULL;
        buf[n] = '\0';
        for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l && out.len < 1000;
             l = strtok_r(NULL, "\n", &save)) {
                /* "lxc NAME TIME ERROR    file - where - msg": keep from "ERROR" */
                const char *e = strstr(l, " ERROR ");
                if (e)
                        cta_buf_printf(&out, "%s%s", out.len ? "; " : "", e + 1);
        }
        if (!out.len)
                return NULL;
        return cta_sanitize(out.data, 1000);
}

static int net_setup_locked(struct cta_ct_backend *b, struct cta_error **err)
{
        _cleanup_free_ char *ip = ct_find_tool("ip"), *out = NULL, *sysbr = NULL;
        int r;

        if (!ip)
                return cta_error_set(err, CTA_E_CONFIG, 0, "no `ip` tool (install iproute2)");
        if (if_nametoindex(b->bridge) == 0) {
                r = ct_run_ok(CTA_E_IO, "create the bridge",
                              (const char *const[]){ ip, "link", "add", "name", b->bridge, "type",
                                                     "bridge", NULL },
                              NULL, err);
                if (r < 0)
                        return r;
                log_info("created bridge %s", b->bridge);
        }
        sysbr = cta_xasprintf("/sys/class/net/%s/bridge", b->bridge);
        if (access(sysbr, F_OK) < 0)
                return cta_error_set(err, CTA_E_CONFIG, 0, "'%s' exists but is not a bridge",
                                     b->bridge);
        if (b->bridge_cidr) {
                _cleanup_free_ char *needle = cta_xasprintf(" inet %s ", b->bridge_cidr);
                r = ct_run_ok(CTA_E_IO, "list the bridge addresses",
                              (const char *const[]){ ip, "-o", "-4", "addr", "show", "dev",
                                                     b->bridge, NULL },
                              &out, err);
                if (r < 0)
                        return r;
                if (!strstr(out, needle)) {
                        r = ct_run_ok(CTA_E_IO, "address the bridge",
                                      (const char *const[]){ ip, "addr", "add", b->bridge_cidr,
                                                             "dev", b->bridge, NULL },
                                      NULL, err);
                        if (r < 0)
                                return r;
                }
        }
        return ct_run_ok(CTA_E_IO, "bring the bridge up",
                         (const char *const[]){ ip, "link", "set", b->bridge, "up", NULL }, NULL,
                         err);
}

static int lxc_node_setup(struct cta_ct_backend *b, struct cta_error **err)
{
        pthread_mutex_lock(&b->lock);
        int r = net_setup_locked(b, err);
        pthread_mutex_unlock(&b->lock);
        if (r < 0)
                return CT_WRAP(r, err, "bridge %s", b->bridge);
        return 0;
}

static int lxc_list_running(struct cta_ct_backend *b, uint64_t **ret_veids, size_t *ret_n,
                            struct cta_error **err)
{
        struct lxc_msg m;
        void *extra = NULL;
        int r = lxc_call(b, NULL, op_list, NULL, 0, 30, &m, &extra, err);
        if (r < 0)
                return CT_WRAP(r, err, "list running containers");
        if (m.val < 0 || (uint64_t)m.val * sizeof(uint64_t) != m.extra_len) {
                free(extra);
                return cta_error_set(err, CTA_E_INTERNAL, 0, "bad list from the liblxc helper");
        }
        *ret_n = (size_t)m.val;
        *ret_veids = m.val ? extra : NULL;
        if (!m.val)
                free(extra);
        return 0;
}

static int lxc_node_teardown(struct cta_ct_backend *b, struct cta_error **err)
{
        _cleanup_free_ uint64_t *v = NULL;
        _cleanup_free_ char *ip = ct_find_tool("ip"), *brif = NULL;
        size_t n = 0;
        int r;

        r = lxc_list_running(b, &v, &n, err);
        if (r < 0)
                return r;
        if (n)
                return cta_error_set(err, CTA_E_BUSY, 0, "%zu containers of node %s still run", n,
                                     b->node_id);
        pthread_mutex_lock(&b->lock);
        brif = cta_xasprintf("/sys/class/net/%s/brif", b->bridge);
        if (if_nametoindex(b->bridge) != 0 && access(brif, F_OK) == 0) {
                _cleanup_closedir_ DIR *d = opendir(brif);
                struct dirent *de;
                bool ports = false;
                while (d && (de = readdir(d)))
                        if (de->d_name[0] != '.')
                                ports = true;
                if (ports)
                        r = cta_error_set(err, CTA_E_BUSY, 0, "bridge %s still has ports",
                                          b->bridge);
                else if (!ip)
                        r = cta_error_set(err, CTA_E_CONFIG, 0, "no `ip` tool");
                else
                        r = ct_run_ok(CTA_E_IO, "delete the bridge",
                                      (const char *const[]){ ip, "link", "del", b->bridge, NULL },
                                      NULL, err);
        }
        pthread_mutex_unlock(&b->lock);
        if (r < 0)
                return r;
        /* LXC leaves <dir>/lxc.pivot and <dir> behind (and a monitor cgroup after a
         * failed start); they are empty once no container of ours runs */
        cgroup_cleanup(b->node_id, NULL);
        return 0;
}

static int lxc_define(struct cta_ct_backend *b, const struct cta_ct_spec *s, const char *config,
                      struct cta_error **err)
{
        _cleanup_free_ char *name = cta_ct_lxc_name(&b->node, s->veid);
        _cleanup_free_ char *dir = cta_xasprintf("%s/%s", b->lxcpath, name);
        _cleanup_free_ char *path = cta_xasprintf("%s/config", dir);
        int r = cta_mkdir_p(dir, 0700, err);
        if (r < 0)
                return r;
        return cta_write_file_atomic(path, config, strlen(config), 0600, err);
}

static int lxc_start(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err)
{
        _cleanup_free_ char *name = cta_ct_lxc_name(&b->node, veid);
        _cleanup_free_ char *cfgpath = cta_xasprintf("%s/%s/config", b->lxcpath, name);
        _cleanup_free_ char *config = NULL, *nettype = NULL;
        struct lxc_msg m;
        int r;

        r = cta_read_file(cfgpath, 1 << 20, &config, NULL, NULL);
        if (r < 0)
                return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0,
                                     "container %" PRIu64 " is not defined", veid);
        nettype = ct_config_get(config, "lxc.net.0.type");
        if (nettype && streq(nettype, "veth") && if_nametoindex(b->bridge) == 0) {
                r = lxc_node_setup(b, err);
                if (r < 0)
                        return CT_WRAP(r, err, "start container %" PRIu64, veid);
        }
        off_t log_from = log_size(b, name);
        r = lxc_call(b, name, op_start, NULL, 0, 120, &m, NULL, err);
        if (r < 0) {
                /* LXC 5.0.2 leaves the monitor's cgroups behind when a daemonized
                 * start fails */
                if (r == -CTA_E_CT_BACKEND) {
                        _cleanup_free_ char *why = log_errors(b, name, log_from);
                        cgroup_cleanup(b->node_id, name);
                        if (why && err && *err) {
                                _cleanup_free_ char *inner = cta_xstrdup(cta_error_msg(*err));
                                *err = cta_error_free(*err);
                                return cta_error_set(err, CTA_E_CT_BACKEND, 0,
                                                     "start container %" PRIu64
                                                     ": %s (LXC log: %s)",
                                                     veid, inner, why);
                        }
                }
                return CT_WRAP(r, err, "start container %" PRIu64, veid);
        }
        log_info("container %" PRIu64 " (%s) started, init pid %" PRId64, veid, name, m.val);
        return 0;
}

static int lxc_stop(struct cta_ct_backend *b, uint64_t veid, bool force, unsigned timeout_s,
                    struct cta_error **err)
{
        struct stop_arg a = { .force = force, .timeout_s = (int)timeout_s };
        int64_t killed = 0;
        int r = lxc_op(b, veid, op_stop, &a, sizeof(a), timeout_s + 60, &killed, err);
        if (r < 0)
                return CT_WRAP(r, err, "stop");
        if (killed && !force)
                log_notice("container %" PRIu64 " did not stop within %u s: killed", veid,
                           timeout_s);
        return 0;
}

static int lxc_state(struct cta_ct_backend *b, uint64_t veid, enum cta_ct_state *ret,
                     struct cta_error **err)
{
        int64_t v;
        int r = lxc_op(b, veid, op_state, NULL, 0, 30, &v, err);
        if (r < 0)
                return r;
        *ret = (enum cta_ct_state)v;
        return 0;
}

static int lxc_init_pid(struct cta_ct_backend *b, uint64_t veid, pid_t *ret,
                        struct cta_error **err)
{
        int64_t v;
        int r = lxc_op(b, veid, op_init_pid, NULL, 0, 30, &v, err);
        if (r < 0)
                return r;
        *ret = (pid_t)v;
        return 0;
}

static int lxc_undefine(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err)
{
        _cleanup_free_ char *name = cta_ct_lxc_name(&b->node, veid);
        _cleanup_free_ char *dir = cta_xasprintf("%s/%s", b->lxcpath, name);
        enum cta_ct_state st;
        int r;

        if (access(dir, F_OK) < 0 && errno == ENOENT)
                return 0;
        r = lxc_state(b, veid, &st, err);
        if (r < 0)
                return r;
        if (st != CTA_CT_DOWN && st != CTA_CT_NONEXISTENT)
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "container %" PRIu64 " is %s: stop it first", veid,
                                     cta_ct_state_name(st));
        r = ct_rm_tree_at(AT_FDCWD, dir, err);
        if (r < 0)
                return CT_WRAP(r, err, "undefine container %" PRIu64, veid);
        return 0;
}

static int lxc_apply_limits(struct cta_ct_backend *b, const struct cta_ct_spec *s,
                            struct cta_error **err)
{
        struct limits_arg a = { .cg_flags = b->cg_flags,
                                .mem = s->mem_limit_bytes,
                                .cpu = s->cpu_limit_percent };
        int r = lxc_op(b, s->veid, op_limits, &a, sizeof(a), 30, NULL, err);
        if (r < 0)
                return CT_WRAP(r, err, "apply limits");
        return 0;
}

static void lxc_free(struct cta_ct_backend *b)
{
        b->zygote = ct_zygote_stop(b->zygote);
}

static const struct ct_ops lxc_ops = {
        .kind = "lxc",
        .free = lxc_free,
        .node_setup = lxc_node_setup,
        .node_teardown = lxc_node_teardown,
        .define = lxc_define,
        .start = lxc_start,
        .stop = lxc_stop,
        .state = lxc_state,
        .init_pid = lxc_init_pid,
        .undefine = lxc_undefine,
        .apply_limits = lxc_apply_limits,
        .list_running = lxc_list_running,
};

int cta_ct_backend_lxc(const struct cta_ct_node *node, struct cta_ct_backend **ret,
                       struct cta_error **err)
{
        struct cta_ct_backend *b = NULL;
        int r;

        if (geteuid() != 0)
                return cta_error_set(err, CTA_E_CONFIG, EPERM, "the LXC backend needs root");
        r = ct_backend_new(node, &lxc_ops, &b, err);
        if (r < 0)
                return r;
        r = cta_mkdir_p(b->lxcpath, 0700, err);
        if (r < 0) {
                cta_ct_backend_free(b);
                return r;
        }
        b->cg_flags = cta_ct_cgroup_detect();
        /* after every field the children read is set: the server holds a copy */
        r = ct_zygote_start(lxc_serve, b, &b->zygote, err);
        if (r < 0) {
                cta_ct_backend_free(b);
                return r;
        }
        *ret = b;
        return 0;
}

#else /* !CTA_HAVE_LXC */

int cta_ct_backend_lxc(const struct cta_ct_node *node, struct cta_ct_backend **ret,
                       struct cta_error **err)
{
        return cta_error_set(err, CTA_E_NOT_IMPLEMENTED, 0, "built without liblxc");
}

#endif
