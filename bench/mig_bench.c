/*
 * A local benchmark of the tree-stream engine: send → socketpair → receive (checksums
 * verified, one process, two threads per side) against `tar -cf - | tar -xf -` on the same
 * data, then an incremental pass with 1% of the small files changed.
 *
 *   ninja -C build src/migrate/cta-mig-bench
 *   build/src/migrate/cta-mig-bench [DIR](default /tmp/cta-mig-bench; kept for reruns)
 *   env: BENCH_FILES (default 50000 small files), BENCH_BIG_MB (default 512, one dense
 *        file; plus a 4 GiB sparse file with BENCH_BIG_MB/4 of data), BENCH_COLD=1 to drop
 *        the page cache before every run (root), BENCH_SKIP_TAR=1 to time only ctagent.
 *
 * Other modes (bench/fresh-fs.sh runs them on a fresh file system):
 *   --copy-only SRC DSTPARENT   one timed, verified copy (BENCH_BM=DIR: with block maps)
 *   --send-only SRC OUT         the source side alone, into a file or /dev/null
 *   --recv-only STREAM DSTPARENT  the destination side alone, from a recorded stream
 *   --incr SRC DSTPARENT        an incremental pass onto DSTPARENT/cta (an earlier copy)
 *   --make-big DIR              a dense file (BENCH_BIG_MB, default 2048) and an 8 GiB
 *                               sparse image with 1 GiB of data
 *   --delta SRC DSTPARENT BMDIR full copy with block maps, 4 KiB changed in
 *                               SRC/sparse.img, then the timed block-delta pass
 *   BENCH_PERF=FILE (--delta, --incr): perf record of just the timed pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "migrate/internal.h"
#include "migrate/stream.h"
#include "util/error.h"

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void die(const char *what)
{
        fprintf(stderr, "cta-mig-bench: %s: %s\n", what, strerror(errno));
        exit(1);
}

static void make_data(const char *dir, unsigned nfiles, unsigned big_mb)
{
        char p[4096];
        if (mkdir(dir, 0755) < 0)
                die(dir);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        static char buf[1 << 20];
        for (size_t i = 0; i < sizeof(buf); i += 8) {
                uint64_t r = next_rand();
                memcpy(buf + i, &r, 8);
        }
        unsigned per_dir = 500;
        for (unsigned i = 0; i < nfiles; i++) {
                if (i % per_dir == 0) {
                        snprintf(p, sizeof(p), "d%03u", i / per_dir / 20);
                        (void)mkdirat(dfd, p, 0755);
                        snprintf(p, sizeof(p), "d%03u/s%03u", i / per_dir / 20, i / per_dir);
                        if (mkdirat(dfd, p, 0755) < 0)
                                die(p);
                }
                snprintf(p, sizeof(p), "d%03u/s%03u/f%06u", i / per_dir / 20, i / per_dir, i);
                int fd = openat(dfd, p, O_CREAT | O_WRONLY | O_EXCL, 0644);
                if (fd < 0)
                        die(p);
                size_t n = next_rand() % 8193;
                if (n && write(fd, buf + next_rand() % (sizeof(buf) - 8192), n) != (ssize_t)n)
                        die("write");
                if (i % 50 == 0)
                        (void)fsetxattr(fd, "user.bench", "x", 1, 0);
                if (i % 97 == 0)
                        (void)fchown(fd, 1000 + i % 7, 1000);
                close(fd);
                if (i % 1000 == 1) {
                        char l[4200];
                        snprintf(l, sizeof(l), "%s.link", p);
                        (void)linkat(dfd, p, dfd, l, 0);
                        snprintf(l, sizeof(l), "%s.sym", p);
                        (void)symlinkat("../x", dfd, l);
                }
        }
        int fd = openat(dfd, "big.dense", O_CREAT | O_WRONLY | O_EXCL, 0644);
        for (unsigned i = 0; i < big_mb; i++) {
                buf[i % 4096] ^= 1;
                if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
                        die("write big");
        }
        close(fd);
        fd = openat(dfd, "big.sparse", O_CREAT | O_WRONLY | O_EXCL, 0644);
        for (unsigned i = 0; i < big_mb / 4; i++)
                if (pwrite(fd, buf, sizeof(buf), (off_t)i * 16 * sizeof(buf)) < 0)
                        die("write sparse");
        if (ftruncate(fd, 4ll << 30) < 0)
                die("truncate");
        close(fd);
        close(dfd);
        sync();
}

static void drop_caches(void)
{
        if (!getenv("BENCH_COLD"))
                return;
        sync();
        int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
        if (fd >= 0) {
                (void)!write(fd, "3", 1);
                close(fd);
        }
}

struct sjob {
        int root, fd;
        const struct cta_mig_send_opts *o;
        struct cta_mig_stats st;
        int rc;
};

static void *send_main(void *arg)
{
        struct sjob *j = arg;
        struct cta_mig_io io = cta_mig_fd_io(j->fd);
        struct cta_error *err = NULL;
        j->rc = cta_mig_send(j->root, &io, j->o, &j->st, &err);
        if (j->rc < 0)
                fprintf(stderr, "send: %s\n", cta_error_msg(err));
        cta_error_free(err);
        close(j->fd);
        return NULL;
}

static double run_cta(int src, int parent, const char *name, const struct cta_mig_send_opts *so,
                      const struct cta_mig_recv_opts *ro, struct cta_mig_stats *ret_send)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                die("socketpair");
        int sz = 4 << 20;
        setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
        struct sjob j = { .root = src, .fd = sv[1], .o = so };
        double t0 = now_s();
        pthread_t th;
        pthread_create(&th, NULL, send_main, &j);
        struct cta_mig_io io = cta_mig_fd_io(sv[0]);
        struct cta_error *err = NULL;
        struct cta_mig_stats rst;
        int r = cta_mig_recv(parent, name, &io, ro, &rst, &err);
        close(sv[0]);
        pthread_join(th, NULL);
        double t = now_s() - t0;
        if (r < 0 || j.rc < 0) {
                fprintf(stderr, "recv: %s\n", cta_error_msg(err));
                exit(1);
        }
        *ret_send = j.st;
        return t;
}

static double run_sh(const char *cmd)
{
        double t0 = now_s();
        if (system(cmd) != 0) {
                fprintf(stderr, "failed: %s\n", cmd);
                exit(1);
        }
        return now_s() - t0;
}

static long rss_mb(int who)
{
        struct rusage ru;
        getrusage(who, &ru);
        return ru.ru_maxrss / 1024;
}

/* --copy-only SRC DSTPARENT: one timed copy into DSTPARENT/cta, verified. */
static int copy_only(const char *src, const char *dst)
{
        int sfd = open(src, O_RDONLY | O_DIRECTORY), pfd = open(dst, O_RDONLY | O_DIRECTORY);
        if (sfd < 0 || pfd < 0)
                die("open");
        struct cta_mig_totals tot;
        struct cta_error *err = NULL;
        double t0 = now_s();
        if (cta_mig_scan(sfd, &tot, &err) < 0)
                die("scan");
        /* BENCH_BM=DIR: record block maps on both sides (DIR/src, DIR/dst) as the daemon does */
        char bms[512], bmd[512];
        const char *bm = getenv("BENCH_BM");
        snprintf(bms, sizeof(bms), "%s/src", bm ? bm : "");
        snprintf(bmd, sizeof(bmd), "%s/dst", bm ? bm : "");
        if (bm)
                (void)mkdir(bm, 0700);
        struct cta_mig_send_opts so = { .totals = &tot, .blockmap_dir = bm ? bms : NULL };
        struct cta_mig_recv_opts ro = { .blockmap_dir = bm ? bmd : NULL };
        struct cta_mig_stats sst;
        (void)run_cta(sfd, pfd, "cta", &so, &ro, &sst);
        double tc = now_s() - t0;
        printf("ctagent scan+send|recv: %.2f s, %.1f MB/s, %.0f files/s, peak RSS %ld MiB "
               "(both sides)\n",
               tc, (double)sst.data_bytes / 1e6 / tc, (double)tot.files / tc,
               rss_mb(RUSAGE_SELF));
        int cfd = openat(pfd, "cta", O_RDONLY | O_DIRECTORY);
        char *rep = NULL;
        int r = cta_mig_tree_compare(sfd, cfd, 0, &rep, &err);
        printf("verify: %s\n", r == 0 ? "identical" : rep ? rep : "error");
        free(rep);
        return r == 0 ? 0 : 1;
}

/* --send-only SRC OUT: scan + send into a file (or /dev/null): the source side alone. */
static int send_only(const char *src, const char *out)
{
        int sfd = open(src, O_RDONLY | O_DIRECTORY);
        int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (sfd < 0 || ofd < 0)
                die("open");
        struct cta_mig_totals tot;
        struct cta_error *err = NULL;
        double t0 = now_s();
        if (cta_mig_scan(sfd, &tot, &err) < 0)
                die("scan");
        double ts = now_s() - t0;
        struct cta_mig_send_opts so = { .totals = &tot };
        struct cta_mig_stats st;
        struct cta_mig_io io = cta_mig_fd_io(ofd);
        if (cta_mig_send(sfd, &io, &so, &st, &err) < 0) {
                fprintf(stderr, "send: %s\n", cta_error_msg(err));
                return 1;
        }
        double t = now_s() - t0;
        printf("scan %.2f s + send %.2f s = %.2f s, %.1f MB/s, %.0f files/s, wire %.1f MB, "
               "peak RSS %ld MiB\n", ts, t - ts, t, (double)st.data_bytes / 1e6 / t,
               (double)tot.files / t, (double)st.wire_bytes / 1e6, rss_mb(RUSAGE_SELF));
        return 0;
}

/* --recv-only STREAM DSTPARENT: receive a stream file into DSTPARENT/cta: the
 * destination side alone. */
static int recv_only(const char *in, const char *dst)
{
        int ifd = open(in, O_RDONLY), pfd = open(dst, O_RDONLY | O_DIRECTORY);
        if (ifd < 0 || pfd < 0)
                die("open");
        struct cta_error *err = NULL;
        struct cta_mig_stats st;
        struct cta_mig_io io = cta_mig_fd_io(ifd);
        double t0 = now_s();
        if (cta_mig_recv(pfd, "cta", &io, NULL, &st, &err) < 0) {
                fprintf(stderr, "recv: %s\n", cta_error_msg(err));
                return 1;
        }
        double t = now_s() - t0;
        printf("recv %.2f s, %.1f MB/s, %.0f entries/s, peak RSS %ld MiB\n", t,
               (double)st.data_bytes / 1e6 / t, (double)st.entries / t, rss_mb(RUSAGE_SELF));
        return 0;
}

/* --make-big DIR: a dense file (BENCH_BIG_MB, default 2048 MiB) and an 8 GiB sparse image
 * with 1 GiB of data in 64 extents of 16 MiB. */
static int make_big(const char *dir)
{
        unsigned mb = getenv("BENCH_BIG_MB") ? (unsigned)atoi(getenv("BENCH_BIG_MB")) : 2048;
        static char buf[16 << 20];
        for (size_t i = 0; i < sizeof(buf); i += 8) {
                uint64_t r = next_rand();
                memcpy(buf + i, &r, 8);
        }
        if (mkdir(dir, 0755) < 0)
                die(dir);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        int fd = openat(dfd, "dense", O_CREAT | O_WRONLY | O_EXCL, 0644);
        for (unsigned i = 0; i < mb / 16; i++) {
                memcpy(buf, &i, sizeof(i));
                if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
                        die("write dense");
        }
        close(fd);
        fd = openat(dfd, "sparse.img", O_CREAT | O_WRONLY | O_EXCL, 0644);
        for (unsigned i = 0; i < 64; i++) {
                memcpy(buf, &i, sizeof(i));
                if (pwrite(fd, buf, sizeof(buf), (off_t)i * (128ll << 20) + (5 << 20)) < 0)
                        die("write sparse");
        }
        if (ftruncate(fd, 8ll << 30) < 0)
                die("truncate");
        close(fd);
        close(dfd);
        sync();
        return 0;
}

/*
 * --delta SRC DSTPARENT BMDIR: the block-delta case. A full copy SRC -> DSTPARENT/cta that
 * records block maps in BMDIR, then 4 KiB changed in the middle of SRC/sparse.img, then the
 * timed second pass (have summary from the block maps + incremental stream), verified.
 */
static int delta(const char *src, const char *dst, const char *bm)
{
        int sfd = open(src, O_RDONLY | O_DIRECTORY), pfd = open(dst, O_RDONLY | O_DIRECTORY);
        if (sfd < 0 || pfd < 0)
                die("open");
        struct cta_error *err = NULL;
        struct cta_mig_stats sst;
        struct cta_mig_recv_opts ro = { .blockmap_dir = bm };
        double t = run_cta(sfd, pfd, "cta", NULL, &ro, &sst);
        printf("full copy: %.2f s, %.1f MB of data, %.1f MB/s\n", t,
               (double)sst.data_bytes / 1e6, (double)sst.data_bytes / 1e6 / t);
        int fd = openat(sfd, "sparse.img", O_WRONLY);
        char b[4096];
        memset(b, 'A' + (int)(time(NULL) % 26), sizeof(b)); /* differs from the last run */
        off_t off = (32ll * (128 << 20)) + (5 << 20) + (7 << 20) + 1234; /* inside extent 32 */
        if (fd < 0 || pwrite(fd, b, sizeof(b), off) != (ssize_t)sizeof(b))
                die("change");
        close(fd);
        drop_caches();
        int cfd = openat(pfd, "cta", O_RDONLY | O_DIRECTORY);
        int hfd = memfd_create("have", MFD_CLOEXEC);
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        /* BENCH_NO_BM=1: the have summary without block maps (the whole file goes again) */
        const char *nobm = getenv("BENCH_NO_BM");
        struct cta_mig_have_opts ho = { .blockmap_dir = nobm && *nobm ? NULL : bm };
        double t0 = now_s();
        if (cta_mig_have_build_opts(cfd, &ho, &hio, NULL, &err) < 0)
                die("have");
        double th = now_s() - t0;
        lseek(hfd, 0, SEEK_SET);
        struct cta_mig_send_opts so = { .have = &hio };
        struct cta_mig_recv_opts ro2 = { .allow_existing = true, .blockmap_dir = bm };
        char cmd[256];
        if (getenv("BENCH_PERF")) { /* profile just this pass */
                snprintf(cmd, sizeof(cmd),
                         "perf record -q -g ${PERF_EV:-} -p %d -o %s 2>/dev/null & sleep 1",
                         (int)getpid(), getenv("BENCH_PERF"));
                (void)!system(cmd);
        }
        struct rusage ru0, ru1;
        getrusage(RUSAGE_SELF, &ru0);
        double ti = run_cta(sfd, pfd, "cta", &so, &ro2, &sst);
        getrusage(RUSAGE_SELF, &ru1);
        printf("pass CPU: user %.2f s, sys %.2f s\n",
               (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                       (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6,
               (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                       (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6);
        if (getenv("BENCH_PERF"))
                (void)!system("pkill -INT -x perf; sleep 1");
        printf("4 KiB changed in the sparse image: have %.3f s + pass %.2f s = %.2f s; "
               "%.2f MB data sent, %.1f MB reused, %.2f MB wire, peak RSS %ld MiB\n",
               th, ti, th + ti, (double)sst.data_bytes / 1e6, (double)sst.copied_bytes / 1e6,
               (double)sst.wire_bytes / 1e6, rss_mb(RUSAGE_SELF));
        char *rep = NULL;
        int r = cta_mig_tree_compare(sfd, cfd, 0, &rep, &err);
        printf("verify: %s\n", r == 0 ? "identical" : rep ? rep : "error");
        free(rep);
        return r == 0 ? 0 : 1;
}

/* --incr SRC DSTPARENT: an incremental pass SRC -> DSTPARENT/cta (an earlier copy), cold
 * when BENCH_COLD; BENCH_PERF=FILE profiles the pass. */
static int incr_only(const char *src, const char *dst)
{
        int sfd = open(src, O_RDONLY | O_DIRECTORY), pfd = open(dst, O_RDONLY | O_DIRECTORY);
        int cfd = openat(pfd, "cta", O_RDONLY | O_DIRECTORY);
        if (sfd < 0 || pfd < 0 || cfd < 0)
                die("open");
        struct cta_error *err = NULL;
        int hfd = memfd_create("have", MFD_CLOEXEC);
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        drop_caches();
        double t0 = now_s();
        if (cta_mig_have_build(cfd, &hio, NULL, &err) < 0)
                die("have");
        double th = now_s() - t0;
        lseek(hfd, 0, SEEK_SET);
        char cmd[256];
        if (getenv("BENCH_PERF")) {
                snprintf(cmd, sizeof(cmd), "perf record -q -g -p %d -o %s 2>/dev/null & sleep 1",
                         (int)getpid(), getenv("BENCH_PERF"));
                (void)!system(cmd);
        }
        struct cta_mig_send_opts so = { .have = &hio };
        struct cta_mig_recv_opts ro = { .allow_existing = true };
        struct cta_mig_stats sst;
        double ti = run_cta(sfd, pfd, "cta", &so, &ro, &sst);
        if (getenv("BENCH_PERF"))
                (void)!system("pkill -INT -x perf; sleep 1");
        printf("incremental: have %.2f s + pass %.2f s = %.2f s, %.2f MB data, %llu unchanged, "
               "%llu files sent\n", th, ti, th + ti, (double)sst.data_bytes / 1e6,
               (unsigned long long)sst.unchanged, (unsigned long long)sst.files);
        return 0;
}

int main(int argc, char **argv)
{
        signal(SIGPIPE, SIG_IGN);
        if (argc == 4 && strcmp(argv[1], "--copy-only") == 0)
                return copy_only(argv[2], argv[3]);
        if (argc == 4 && strcmp(argv[1], "--send-only") == 0)
                return send_only(argv[2], argv[3]);
        if (argc == 4 && strcmp(argv[1], "--recv-only") == 0)
                return recv_only(argv[2], argv[3]);
        if (argc == 4 && strcmp(argv[1], "--incr") == 0)
                return incr_only(argv[2], argv[3]);
        if (argc == 3 && strcmp(argv[1], "--make-big") == 0)
                return make_big(argv[2]);
        if (argc == 5 && strcmp(argv[1], "--delta") == 0)
                return delta(argv[2], argv[3], argv[4]);
        const char *base = argc > 1 ? argv[1] : "/tmp/cta-mig-bench";
        unsigned nfiles = getenv("BENCH_FILES") ? (unsigned)atoi(getenv("BENCH_FILES")) : 50000;
        unsigned big_mb = getenv("BENCH_BIG_MB") ? (unsigned)atoi(getenv("BENCH_BIG_MB")) : 512;
        char src[1024], cmd[4096];
        signal(SIGPIPE, SIG_IGN);
        snprintf(src, sizeof(src), "%s/src", base);
        (void)mkdir(base, 0755);
        struct stat st;
        if (stat(src, &st) < 0) {
                printf("making %u small files + %u MiB dense + 4 GiB sparse in %s\n", nfiles,
                       big_mb, src);
                make_data(src, nfiles, big_mb);
        }
        int sfd = open(src, O_RDONLY | O_DIRECTORY);
        int bfd = open(base, O_RDONLY | O_DIRECTORY);
        struct cta_mig_totals tot;
        struct cta_error *err = NULL;
        double t0 = now_s();
        if (cta_mig_scan(sfd, &tot, &err) < 0)
                die("scan");
        double tscan = now_s() - t0;
        printf("source: %llu entries, %llu files, %.1f MB of data (scan %.2f s)\n",
               (unsigned long long)tot.entries, (unsigned long long)tot.files,
               (double)tot.data_bytes / 1e6, tscan);
        char run[64];
        snprintf(run, sizeof(run), "run%ld", (long)getpid());
        snprintf(cmd, sizeof(cmd), "%s/%s", base, run);
        if (mkdir(cmd, 0755) < 0)
                die(cmd);
        int pfd = open(cmd, O_RDONLY | O_DIRECTORY);

        /* 1. ctagent engine */
        drop_caches();
        struct cta_mig_send_opts so = { .totals = &tot };
        struct cta_mig_stats sst;
        double tc = run_cta(sfd, pfd, "cta", &so, NULL, &sst);
        long rss = rss_mb(RUSAGE_SELF);
        printf("%-28s %7.2f s  %7.1f MB/s  %8.0f files/s  wire %.1f MB  peak RSS %ld MiB "
               "(both sides)\n",
               "ctagent send|recv", tc, (double)sst.data_bytes / 1e6 / tc,
               (double)tot.files / tc, (double)sst.wire_bytes / 1e6, rss);
        /* 2. tar pipes */
        double tt = 0, tx = 0;
        if (getenv("BENCH_SKIP_TAR"))
                goto verify;
        drop_caches();
        snprintf(cmd, sizeof(cmd), "mkdir %s/%s/tar && tar -C %s -cf - . | tar -C %s/%s/tar -xf -",
                 base, run, src, base, run);
        tt = run_sh(cmd);
        printf("%-28s %7.2f s  %7.1f MB/s  %8.0f files/s  (holes sent as data)\n",
               "tar -cf - | tar -xf -", tt, (double)tot.data_bytes / 1e6 / tt,
               (double)tot.files / tt);
        drop_caches();
        snprintf(cmd, sizeof(cmd),
                 "mkdir %s/%s/tarx && tar -C %s --sparse --xattrs --acls --numeric-owner -cf - . | "
                 "tar -C %s/%s/tarx --xattrs --acls --numeric-owner -xpf -",
                 base, run, src, base, run);
        tx = run_sh(cmd);
        printf("%-28s %7.2f s  %7.1f MB/s  %8.0f files/s  peak RSS %ld MiB\n",
               "tar --sparse --xattrs --acls", tx, (double)tot.data_bytes / 1e6 / tx,
               (double)tot.files / tx, rss_mb(RUSAGE_CHILDREN));
        printf("ratio ctagent/tar: %.2f (plain), %.2f (with fidelity options)\n", tc / tt,
               tc / tx);

verify:;
        int cfd = openat(pfd, "cta", O_RDONLY | O_DIRECTORY);
        char *rep = NULL;
        t0 = now_s();
        int r = cta_mig_tree_compare(sfd, cfd, 0, &rep, &err);
        printf("verify: %s (%.2f s)\n", r == 0 ? "identical" : rep ? rep : "error",
               now_s() - t0);

        /* 3. incremental: 1% of the small files changed */
        unsigned changed = 0;
        for (unsigned i = 0; i < nfiles; i += 100) {
                snprintf(cmd, sizeof(cmd), "d%03u/s%03u/f%06u", i / 500 / 20, i / 500, i);
                int fd = openat(sfd, cmd, O_WRONLY | O_APPEND);
                if (fd >= 0 && write(fd, "changed", 7) == 7)
                        changed++;
                if (fd >= 0)
                        close(fd);
        }
        int hfd = memfd_create("have", MFD_CLOEXEC);
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        drop_caches();
        t0 = now_s();
        if (cta_mig_have_build(cfd, &hio, NULL, &err) < 0)
                die("have");
        double th = now_s() - t0;
        lseek(hfd, 0, SEEK_SET);
        struct cta_mig_send_opts so2 = { .have = &hio, .totals = &tot };
        struct cta_mig_recv_opts ro2 = { .allow_existing = true };
        double ti = run_cta(sfd, pfd, "cta", &so2, &ro2, &sst);
        printf("incremental, %u files changed: have %.2f s + pass %.2f s, %.2f MB data, "
               "%.2f MB wire, %llu unchanged\n",
               changed, th, ti, (double)sst.data_bytes / 1e6, (double)sst.wire_bytes / 1e6,
               (unsigned long long)sst.unchanged);
        free(rep);
        rep = NULL;
        r = cta_mig_tree_compare(sfd, cfd, 0, &rep, &err);
        printf("verify after the incremental pass: %s\n", r == 0 ? "identical" : "DIFFERENT");
        close(cfd);
        close(pfd);
        t0 = now_s();
        snprintf(cmd, sizeof(cmd), "%s/%s", base, run);
        cta_rm_rf_at(AT_FDCWD, cmd);
        printf("(removed the copies in %.1f s; the source stays in %s)\n", now_s() - t0, src);
        close(sfd);
        close(bfd);
        return r == 0 ? 0 : 1;
}
