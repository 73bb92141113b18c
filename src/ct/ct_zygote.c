/*
 * A fork server for the liblxc children.
 *
 * Why: every liblxc call runs in a forked child (see ct_lxc.c), and forking a
 * multithreaded daemon copies whatever locks its other threads hold at that
 * instant. glibc re-initialises its malloc and stdio locks in the child, but
 * not every allocator does: under AddressSanitizer (GCC 12's libasan) a child
 * forked while another thread was inside malloc waited forever on the
 * allocator's lock, and the container call timed out after 30 s (seen about
 * once in 15 runs of the integration suite). Nor is forking a process that
 * holds hundreds of MiB of migration buffers cheap.
 *
 * So the backend forks this small server once, while the daemon is still
 * single threaded. It does nothing but wait for requests on a SOCK_SEQPACKET
 * socketpair (one datagram: the request bytes, plus the caller's result
 * descriptor as SCM_RIGHTS) and fork one child per request; the child runs the
 * serve function, which never returns. The server itself uses only system
 * calls between forks, so nothing it inherits can deadlock it, and its
 * children are single-threaded forks of a single-threaded process. Children
 * are reaped by the kernel (SIGCHLD ignored with SA_NOCLDWAIT). The server
 * ends when the daemon closes its end or dies (PR_SET_PDEATHSIG).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/ct_internal.h"
#include "util/error.h"
#include "util/util.h"

struct ct_zygote {
        pid_t pid;
        int sock; /* our end of the request socketpair */
};

int ct_take_fd(struct msghdr *mh)
{
        int fd = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < n; i++) {
                        int x;
                        memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (fd < 0)
                                fd = x;
                        else
                                (void)close(x); /* more than we asked for */
                }
        }
        return fd;
}

int ct_send_with_fd(int sock, const void *p, size_t len, int fd)
{
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } cm;
        struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (fd >= 0) {
                memset(cm.buf, 0, sizeof(cm.buf));
                mh.msg_control = cm.buf;
                mh.msg_controllen = sizeof(cm.buf);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        for (;;) {
                ssize_t w = sendmsg(sock, &mh, MSG_NOSIGNAL);
                if (w == (ssize_t)len)
                        return 0;
                if (w < 0 && errno == EINTR)
                        continue;
                return w < 0 ? -errno : -EIO;
        }
}

__attribute__((noreturn)) static void zygote_main(int sock, pid_t parent, ct_zygote_fn fn,
                                                  void *ctx)
{
        struct sigaction sa = { .sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT };
        sigemptyset(&sa.sa_mask);
        (void)sigaction(SIGCHLD, &sa, NULL);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                _exit(0);
        /* keep only the request socket (as 3) and 0-2 on /dev/null: the daemon's
         * database, listening and client sockets must not live on in here */
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int fd = 0; fd < 3 && null >= 0; fd++)
                if (fd != null && fd != sock)
                        (void)dup2(null, fd);
        if (sock != 3 && dup3(sock, 3, O_CLOEXEC) < 0)
                _exit(1);
        (void)close_range(4, ~0u, 0);
        sock = 3;
        (void)prctl(PR_SET_NAME, "ctagentd-lxc");

        for (;;) {
                static unsigned char req[CT_ZYGOTE_REQ_MAX];
                union {
                        char buf[CMSG_SPACE(sizeof(int) * 4)];
                        struct cmsghdr align;
                } cm;
                struct iovec iov = { .iov_base = req, .iov_len = sizeof(req) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                                     .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
                ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
                if (n == 0)
                        _exit(0); /* the daemon closed its end */
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(1);
                }
                int fd = ct_take_fd(&mh);
                if (fd < 0)
                        continue;
                /* a cut request is not run: closing fd tells the caller (EOF) */
                if (!(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && fork() == 0) {
                        (void)close(sock);
                        fn(ctx, req, (size_t)n, fd);
                }
                (void)close(fd);
        }
}

int ct_zygote_start(ct_zygote_fn fn, void *ctx, struct ct_zygote **ret, struct cta_error **err)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return cta_error_errno(err, CTA_E_IO, "socketpair");
        pid_t parent = getpid(), pid = fork();
        if (pid < 0) {
                int r = cta_error_errno(err, CTA_E_IO, "fork the liblxc helper");
                (void)close(sv[0]);
                (void)close(sv[1]);
                return r;
        }
        if (pid == 0) {
                (void)close(sv[0]);
                zygote_main(sv[1], parent, fn, ctx);
        }
        (void)close(sv[1]);
        struct ct_zygote *z = cta_xcalloc(1, sizeof(*z));
        z->pid = pid;
        z->sock = sv[0];
        *ret = z;
        return 0;
}

int ct_zygote_spawn(struct ct_zygote *z, const void *req, size_t len, int fd)
{
        if (!z || len == 0 || len > CT_ZYGOTE_REQ_MAX || fd < 0)
                return -EINVAL;
        return ct_send_with_fd(z->sock, req, len, fd);
}

struct ct_zygote *ct_zygote_stop(struct ct_zygote *z)
{
        if (!z)
                return NULL;
        (void)close(z->sock); /* EOF: it exits; children it forked run on */
        while (waitpid(z->pid, NULL, 0) < 0 && errno == EINTR)
                ;
        free(z);
        return NULL;
}
