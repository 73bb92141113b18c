/*
 * The tree-stream engine end to end: a rich tree (owners, devices, fifo, socket,
 * setuid/sticky, user/trusted xattrs, POSIX ACLs, file capabilities, a 1 GiB sparse file,
 * hard links across directories, dangling and absolute symlinks, long and odd names, odd
 * times) goes send → socketpair → receive and must compare identical; then an
 * incremental pass moves only what changed; a kept staging directory is resumed; cancel.
 * The zstd wrappers (zio.c): trees through a compressor and a decompressor over read() and
 * view() ios, and a decompressor fed garbage, wide windows, legacy frames, cut streams.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <xxhash.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_getFrameHeader, ZSTD_frameHeaderSize */
#include <zstd.h>

#include "migrate/dio.h"
#include "migrate/hash.h"
#include "migrate/internal.h"
#include "migrate/stream.h"
#include "migrate/wire.h"
#include "tap.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/util.h"

static char g_root[256];
static int g_rootfd = -1;

static int setup(void)
{
        if (g_rootfd >= 0)
                return 0;
        signal(SIGPIPE, SIG_IGN);
        snprintf(g_root, sizeof(g_root), "/tmp/cta-mig-test.XXXXXX");
        if (!mkdtemp(g_root))
                return -1;
        g_rootfd = open(g_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return g_rootfd >= 0 ? 0 : -1;
}

static int count_entries(int dfd, const char *path)
{
        int fd = openat(dfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        DIR *d = fdopendir(fd);
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static int put_file(int dfd, const char *name, const void *data, size_t len, mode_t mode)
{
        int fd = openat(dfd, name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        if (len && write(fd, data, len) != (ssize_t)len) {
                close(fd);
                return -EIO;
        }
        close(fd);
        return 0;
}

static int set_time(int dfd, const char *name, time_t sec, long nsec)
{
        struct timespec ts[2] = { { sec - 1000, 111111111 }, { sec, nsec } };
        return utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

/* A POSIX ACL in its xattr form: user::rwx user:<uid>:r-x group::r-x mask::r-x other::r-- */
static size_t make_acl(uint8_t *b, uint32_t uid)
{
        static const struct {
                uint16_t tag, perm;
                uint32_t id;
        } ents[] = {
                { 0x01, 7, 0xffffffff }, { 0x02, 5, 0 }, { 0x04, 5, 0xffffffff },
                { 0x10, 5, 0xffffffff }, { 0x20, 4, 0xffffffff },
        };
        cta_mig_put32(b, 2);
        for (size_t i = 0; i < CTA_ARRAY_SIZE(ents); i++) {
                uint8_t *q = b + 4 + i * 8;
                cta_mig_put16(q, ents[i].tag);
                cta_mig_put16(q + 2, ents[i].perm);
                cta_mig_put32(q + 4, ents[i].tag == 0x02 ? uid : ents[i].id);
        }
        return 4 + CTA_ARRAY_SIZE(ents) * 8;
}

#define CHK(x)                                                                                     \
        do {                                                                                       \
                if ((x) < 0) {                                                                     \
                        printf("# %s:%d: %s: %s\n", __FILE__, __LINE__, #x, strerror(errno));     \
                        return -1;                                                                 \
                }                                                                                  \
        } while (0)

/* The rich tree under dfd. */
static int build_tree(int dfd)
{
        uint8_t acl[64];
        size_t acl_len;
        CHK(mkdirat(dfd, "d1", 0755));
        CHK(mkdirat(dfd, "d1/sub", 0750));
        CHK(mkdirat(dfd, "d2", 0711));
        CHK(mkdirat(dfd, "empty", 0700));
        CHK(mkdirat(dfd, "tmp", 0755));
        CHK(fchmodat(dfd, "tmp", 01777, 0));
        CHK(mkdirat(dfd, "dev", 0755));
        CHK(mkdirat(dfd, "many", 0755));
        CHK(put_file(dfd, "d1/f", "hello world\n", 12, 0644));
        CHK(put_file(dfd, "f_empty", "", 0, 0600));
        CHK(put_file(dfd, "f_setuid", "#!/bin/sh\n", 10, 0755));
        CHK(put_file(dfd, "f_setgid", "x", 1, 0755));
        CHK(fchownat(dfd, "f_setuid", 0, 0, 0));
        CHK(fchmodat(dfd, "f_setuid", 04755, 0));
        CHK(fchownat(dfd, "f_setgid", 1000, 1000, 0));
        CHK(fchmodat(dfd, "f_setgid", 02755, 0));
        CHK(fchownat(dfd, "d1/sub", 1234, 5678, 0));
        CHK(put_file(dfd, "d1/sub/odd_owner", "o", 1, 0640));
        CHK(fchownat(dfd, "d1/sub/odd_owner", 100000, 4294967294u, 0));
        /* xattrs: user (binary value), trusted, a capability, ACLs */
        int fd = openat(dfd, "d1/f", O_RDONLY);
        CHK(fd);
        CHK(fsetxattr(fd, "user.test", "hello", 5, 0));
        CHK(fsetxattr(fd, "user.bin", "\0\1\2\0\xff", 5, 0));
        CHK(fsetxattr(fd, "trusted.ctagent", "t", 1, 0));
        close(fd);
        uint8_t cap[20] = { 0 };
        cta_mig_put32(cap, 0x02000001);  /* VFS_CAP_REVISION_2 | effective */
        cta_mig_put32(cap + 4, 1u << 13); /* CAP_NET_RAW permitted */
        CHK(setxattr(g_root, "user.probe", "1", 1, 0) < 0 && errno == ENOTSUP ? -1 : 0);
        char p[512];
        CHK(put_file(dfd, "ping", "\x7f" "ELF", 4, 0755));
        snprintf(p, sizeof(p), "/proc/self/fd/%d/ping", dfd);
        CHK(setxattr(p, "security.capability", cap, sizeof(cap), 0));
        acl_len = make_acl(acl, 1000);
        CHK(put_file(dfd, "acl_file", "acl", 3, 0644));
        snprintf(p, sizeof(p), "/proc/self/fd/%d/acl_file", dfd);
        CHK(setxattr(p, "system.posix_acl_access", acl, acl_len, 0));
        CHK(mkdirat(dfd, "acl_dir", 0755));
        snprintf(p, sizeof(p), "/proc/self/fd/%d/acl_dir", dfd);
        CHK(setxattr(p, "system.posix_acl_default", acl, acl_len, 0));
        CHK(put_file(dfd, "acl_dir/inherits", "i", 1, 0666)); /* gets an access ACL */
        CHK(put_file(dfd, "acl_dir/plain", "p", 1, 0644));
        snprintf(p, sizeof(p), "/proc/self/fd/%d/acl_dir/plain", dfd);
        CHK(removexattr(p, "system.posix_acl_access"));   /* and this one does not */
        CHK(mkdirat(dfd, "acl_dir/subdir", 0755));         /* inherits the default ACL */
        /* a 1 GiB sparse file with a few extents, a 3 MiB dense one */
        fd = openat(dfd, "sparse", O_CREAT | O_WRONLY, 0644);
        CHK(fd);
        char blk[65536];
        memset(blk, 'S', sizeof(blk));
        CHK(pwrite(fd, blk, 4096, 0));
        CHK(pwrite(fd, blk, sizeof(blk), 300 << 20));
        CHK(pwrite(fd, "E", 1, (1 << 30) - 1));
        close(fd);
        fd = openat(dfd, "sparse_tail", O_CREAT | O_WRONLY, 0644);
        CHK(pwrite(fd, blk, 100, 8192));
        CHK(ftruncate(fd, 10 << 20)); /* a trailing hole */
        close(fd);
        fd = openat(dfd, "dense", O_CREAT | O_WRONLY, 0600);
        uint32_t x = 12345;
        for (int i = 0; i < 48; i++) {
                for (size_t j = 0; j < sizeof(blk); j += 4) {
                        x = x * 1103515245u + 12345u;
                        memcpy(blk + j, &x, 4);
                }
                CHK(write(fd, blk, sizeof(blk)));
        }
        close(fd);
        /* hard links across directories, nlink 3 */
        CHK(put_file(dfd, "d1/hl_a", "linked", 6, 0640));
        CHK(linkat(dfd, "d1/hl_a", dfd, "d2/hl_b", 0));
        CHK(linkat(dfd, "d1/hl_a", dfd, "hl_c", 0));
        /* symlinks: relative, dangling, absolute, to a directory */
        CHK(symlinkat("d1/f", dfd, "ln_rel"));
        CHK(symlinkat("nowhere/x", dfd, "ln_dangling"));
        CHK(symlinkat("/etc/passwd", dfd, "ln_abs"));
        CHK(symlinkat("d1", dfd, "ln_dir"));
        CHK(fchownat(dfd, "ln_abs", 4321, 4321, AT_SYMLINK_NOFOLLOW));
        /* devices, fifo, socket */
        CHK(mknodat(dfd, "dev/null", S_IFCHR | 0666, makedev(1, 3)));
        CHK(mknodat(dfd, "dev/loop200", S_IFBLK | 0660, makedev(7, 200)));
        CHK(fchownat(dfd, "dev/loop200", 0, 6, 0));
        CHK(mknodat(dfd, "fifo", S_IFIFO | 0620, 0));
        CHK(mknodat(dfd, "sock", S_IFSOCK | 0755, 0));
        /* names: 255 bytes, a newline, non-UTF-8 bytes */
        char longname[256];
        memset(longname, 'L', 255);
        longname[255] = 0;
        CHK(put_file(dfd, longname, "long", 4, 0644));
        CHK(put_file(dfd, "new\nline", "nl", 2, 0644));
        CHK(put_file(dfd, "bytes\xff\xfe\x80", "nb", 2, 0644));
        /* many small files (batched into large records) */
        for (int i = 0; i < 300; i++) {
                char n[32], c[600];
                snprintf(n, sizeof(n), "many/s%03d", i);
                memset(c, 'a' + i % 26, sizeof(c));
                CHK(put_file(dfd, n, c, (size_t)(i * 2), 0644));
        }
        /* odd times, directories last */
        static const char *timed[] = { "d1/f", "f_empty", "sparse", "dense", "ln_rel",
                                       "ln_abs", "dev/null", "fifo", "sock", "hl_c" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(timed); i++)
                CHK(set_time(dfd, timed[i], 1000000000 + (time_t)i * 7777, 123456789 + (long)i));
        static const char *dirs[] = { "d1/sub", "d1", "d2", "empty", "tmp", "dev", "many",
                                      "acl_dir/subdir", "acl_dir" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(dirs); i++)
                CHK(set_time(dfd, dirs[i], 900000000 + (time_t)i * 3333, 987654321 - (long)i));
        CHK(set_time(dfd, ".", 1234567890, 1));
        return 0;
}

struct send_job {
        int root, fd;
        const struct cta_mig_send_opts *o;
        struct cta_mig_stats st;
        int rc, code;
        char msg[256];
};

static void *send_thread(void *arg)
{
        struct send_job *j = arg;
        struct cta_mig_io io = cta_mig_fd_io(j->fd);
        struct cta_error *err = NULL;
        j->rc = cta_mig_send(j->root, &io, j->o, &j->st, &err);
        j->code = j->rc < 0 ? cta_error_code(err) : 0;
        snprintf(j->msg, sizeof(j->msg), "%s", j->rc < 0 ? cta_error_msg(err) : "");
        cta_error_free(err);
        close(j->fd);
        return NULL;
}

/* send(src) → socketpair → recv(parent, name). Returns the receiver's code (0 = ok). */
static int transfer(int src, int parent, const char *name, const struct cta_mig_send_opts *so,
                    const struct cta_mig_recv_opts *ro, struct send_job *job,
                    struct cta_mig_stats *rst)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -1;
        *job = (struct send_job){ .root = src, .fd = sv[1], .o = so };
        pthread_t th;
        pthread_create(&th, NULL, send_thread, job);
        struct cta_mig_io io = cta_mig_fd_io(sv[0]);
        struct cta_error *err = NULL;
        int r = cta_mig_recv(parent, name, &io, ro, rst, &err);
        close(sv[0]);
        pthread_join(th, NULL);
        if (r < 0)
                printf("# recv: %s (sender: %s)\n", cta_error_msg(err), job->msg);
        int code = r < 0 ? cta_error_code(err) : 0;
        cta_error_free(err);
        return code;
}

/* Fresh directories <tag>src and <tag>dst beneath the test root, opened: 0 or -1. */
static int tree_pair(const char *tag, int *src, int *dst)
{
        char a[32], b[32];
        snprintf(a, sizeof(a), "%ssrc", tag);
        snprintf(b, sizeof(b), "%sdst", tag);
        if (mkdirat(g_rootfd, a, 0755) < 0 || mkdirat(g_rootfd, b, 0755) < 0)
                return -1;
        *src = openat(g_rootfd, a, O_RDONLY | O_DIRECTORY);
        *dst = openat(g_rootfd, b, O_RDONLY | O_DIRECTORY);
        return *src >= 0 && *dst >= 0 ? 0 : -1;
}

static int compare(int a, int b, unsigned flags)
{
        char *rep = NULL;
        struct cta_error *err = NULL;
        int r = cta_mig_tree_compare(a, b, flags, &rep, &err);
        if (r < 0)
                printf("# compare: %s\n", cta_error_msg(err));
        if (rep) { /* every line a TAP comment: a bare one is "unknown TAP output" */
                printf("# differences:\n");
                for (char *line = strtok(rep, "\n"); line; line = strtok(NULL, "\n"))
                        printf("# %s\n", line);
        }
        free(rep);
        cta_error_free(err);
        return r;
}

/* The obvious byte-at-a-time definitions, against which the word-at-a-time ones are
 * checked. */
static int ref_path_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
        for (size_t i = 0; i < alen && i < blen; i++) {
                unsigned ca = (unsigned char)a[i], cb = (unsigned char)b[i];
                if (ca != cb)
                        return (ca == '/' ? 0 : ca) < (cb == '/' ? 0 : cb) ? -1 : 1;
        }
        return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int ref_path_check(const char *p, size_t len, size_t max_len, unsigned max_depth)
{
        if (len == 0 || len > max_len || p[0] == '/' || memchr(p, 0, len))
                return -CTA_E_MIG_PATH;
        unsigned depth = 0;
        for (size_t i = 0, start = 0; i <= len; i++) {
                if (i < len && p[i] != '/')
                        continue;
                size_t cl = i - start;
                if (cl == 0 || cl > NAME_MAX || ++depth > max_depth ||
                    (p[start] == '.' && (cl == 1 || (cl == 2 && p[start + 1] == '.'))))
                        return -CTA_E_MIG_PATH;
                start = i + 1;
        }
        return 0;
}

static int sign(int v)
{
        return v < 0 ? -1 : v > 0;
}

TEST(wire__paths_match_the_byte_loop)
{
        static const char alpha[] = { 'a', 'a', 'b', '/', '/', '.', '\x01', '\x7f', (char)0xff, 0 };
        uint64_t x = 0x9E3779B97F4A7C15ull;
        char a[48], b[48];
        for (int round = 0; round < 200000; round++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                size_t alen = x % 41, blen = (x >> 8) % 41;
                for (size_t i = 0; i < sizeof(a); i++) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        a[i] = alpha[x % sizeof(alpha)];
                        /* mostly a shared prefix, as sorted neighbours have */
                        b[i] = (x >> 20) % 8 ? a[i] : alpha[(x >> 32) % sizeof(alpha)];
                }
                ASSERT_INT_EQ(sign(cta_mig_path_cmp(a, alen, b, blen)),
                              ref_path_cmp(a, alen, b, blen));
                ASSERT_INT_EQ(sign(cta_mig_path_cmp(b, blen, a, alen)),
                              ref_path_cmp(b, blen, a, alen));
                unsigned depth = (unsigned)(x >> 40) % 6 + 1;
                ASSERT_INT_EQ(cta_mig_path_check(a, alen, 32, depth),
                              ref_path_check(a, alen, 32, depth));
        }
        return 0;
}

TEST(wire__paths)
{
        ASSERT_INT_EQ(cta_mig_path_check("a/b", 3, 4095, 256), 0);
        ASSERT_INT_EQ(cta_mig_path_check("..a/b..", 7, 4095, 256), 0);
        ASSERT_INT_EQ(cta_mig_path_check("a/b/c", 5, 4095, 2), -CTA_E_MIG_PATH);
        ASSERT_INT_EQ(cta_mig_path_check("a/../b", 6, 4095, 256), -CTA_E_MIG_PATH);
        ASSERT_INT_EQ(cta_mig_path_check("/a", 2, 4095, 256), -CTA_E_MIG_PATH);
        ASSERT_TRUE(cta_mig_path_cmp("a", 1, "a/b", 3) < 0);
        ASSERT_TRUE(cta_mig_path_cmp("a/b", 3, "a.txt", 5) < 0); /* dir contents first */
        ASSERT_TRUE(cta_mig_path_cmp("a/z", 3, "a\x01", 2) < 0);
        ASSERT_TRUE(cta_mig_path_cmp("b", 1, "a/zzz", 5) > 0);
        ASSERT_TRUE(cta_mig_path_under("a", 1, "a/b", 3));
        ASSERT_TRUE(!cta_mig_path_under("a", 1, "ab", 2));
        /* checksum: holes hash as zeros */
        uint8_t s1[16], s2[16];
        char z[10] = { 0 };
        memcpy(z + 4, "abc", 3);
        struct cta_mig_extent e1 = { 0, z, 10 }, e2 = { 4, "abc", 3 };
        cta_mig_checksum(&e1, 1, 10, s1);
        cta_mig_checksum(&e2, 1, 10, s2);
        ASSERT_MEM_EQ(s1, s2, 16);
        return 0;
}

/* The scan's changed_bytes: the data of files whose ctime is at or after the mark, however
 * their mtimes were set; without a mark, all of it. */
TEST(scan__changed_since_mark)
{
        ASSERT_OK(setup());
        ASSERT_OK(mkdirat(g_rootfd, "scan", 0755));
        int d = openat(g_rootfd, "scan", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(d >= 0);
        ASSERT_OK(mkdirat(d, "sub", 0755));
        static char blk[12288];
        memset(blk, 'x', sizeof(blk));
        ASSERT_OK(put_file(d, "old", blk, 8192, 0644));
        ASSERT_OK(put_file(d, "sub/old", blk, 4096, 0644));
        ASSERT_OK(put_file(d, "touched", blk, 4096, 0644));
        ASSERT_OK(fsync(d));
        struct timespec mark;
        clock_gettime(CLOCK_REALTIME, &mark);
        usleep(50 * 1000); /* past the clock tick file times come from */
        ASSERT_OK(put_file(d, "sub/new", blk, 12288, 0644));
        ASSERT_OK(set_time(d, "sub/new", 1000000, 0)); /* an old mtime does not hide it */
        ASSERT_OK(fchmodat(d, "touched", 0600, 0));    /* a ctime change counts as a change */
        struct cta_mig_totals all, since;
        struct cta_error *err = NULL;
        ASSERT_OK(cta_mig_scan(d, &all, &err));
        ASSERT_OK(cta_mig_scan_since(d, &mark, &since, &err));
        ASSERT_INT_EQ(all.files, 4);
        ASSERT_INT_EQ(all.data_bytes, 8192 + 4096 + 4096 + 12288);
        ASSERT_INT_EQ(all.changed_bytes, all.data_bytes);
        ASSERT_INT_EQ(since.data_bytes, all.data_bytes);
        ASSERT_INT_EQ(since.changed_bytes, 12288 + 4096);
        close(d);
        return 0;
}

TEST(roundtrip__rich_tree)
{
        ASSERT_OK(setup());
        ASSERT_OK(mkdirat(g_rootfd, "src", 0755));
        ASSERT_OK(mkdirat(g_rootfd, "dst", 0755));
        ASSERT_OK(mkdirat(g_rootfd, "dst/sentinel", 0755));
        int src = openat(g_rootfd, "src", O_RDONLY | O_DIRECTORY);
        int dst = openat(g_rootfd, "dst", O_RDONLY | O_DIRECTORY);
        ASSERT_OK(build_tree(src));
        /* a default ACL on the destination's parent must not leak into the copy */
        uint8_t acl[64];
        size_t acl_len = make_acl(acl, 77);
        ASSERT_OK(fsetxattr(dst, "system.posix_acl_default", acl, acl_len, 0));

        struct cta_mig_totals tot;
        struct cta_error *err = NULL;
        ASSERT_OK(cta_mig_scan(src, &tot, &err));
        ASSERT_TRUE(tot.entries > 330 && tot.files > 310);
        ASSERT_TRUE(tot.data_bytes > (3u << 20) && tot.data_bytes < (4u << 20));

        struct cta_mig_send_opts so = { .totals = &tot };
        struct send_job job;
        struct cta_mig_stats rst = { 0 };
        ASSERT_INT_EQ(transfer(src, dst, "stage", &so, NULL, &job, &rst), 0);
        ASSERT_INT_EQ(job.rc, 0);
        ASSERT_INT_EQ(job.st.entries, tot.entries);
        ASSERT_INT_EQ(rst.entries, tot.entries);
        ASSERT_INT_EQ(rst.hardlinks, 2);
        ASSERT_INT_EQ(rst.specials, 4);
        ASSERT_INT_EQ(rst.data_bytes, job.st.data_bytes);
        /* holes were not sent: 1 GiB apparent, ~3.2 MiB of data in all */
        ASSERT_TRUE(job.st.wire_bytes < (4u << 20));

        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(stage >= 0);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        /* spot checks beyond the compare */
        struct stat a, b;
        ASSERT_OK(fstatat(stage, "sparse", &b, 0));
        ASSERT_OK(fstatat(src, "sparse", &a, 0));
        ASSERT_INT_EQ(b.st_size, 1 << 30);
        ASSERT_TRUE(b.st_blocks * 512 < (1 << 20) && b.st_blocks <= a.st_blocks + 16);
        ASSERT_OK(fstatat(stage, "f_setuid", &b, 0));
        ASSERT_INT_EQ(b.st_mode & 07777, 04755);
        ASSERT_OK(fstatat(stage, "d1/sub/odd_owner", &b, 0));
        ASSERT_INT_EQ(b.st_uid, 100000);
        ASSERT_INT_EQ(b.st_gid, 4294967294u);
        ASSERT_OK(fstatat(stage, "tmp", &b, 0));
        ASSERT_INT_EQ(b.st_mode & 07777, 01777);
        ASSERT_OK(fstatat(stage, "d2/hl_b", &b, 0));
        ASSERT_OK(fstatat(stage, "hl_c", &a, 0));
        ASSERT_INT_EQ(a.st_ino, b.st_ino);
        ASSERT_INT_EQ(a.st_nlink, 3);
        ASSERT_OK(fstatat(stage, "dev/loop200", &b, AT_SYMLINK_NOFOLLOW));
        ASSERT_TRUE(S_ISBLK(b.st_mode) && major(b.st_rdev) == 7 && minor(b.st_rdev) == 200);
        ASSERT_OK(fstatat(stage, "d1/f", &b, 0));
        ASSERT_OK(fstatat(src, "d1/f", &a, 0));
        ASSERT_INT_EQ(b.st_atim.tv_nsec, a.st_atim.tv_nsec); /* atimes travel too */
        char cap[32];
        char p[512];
        snprintf(p, sizeof(p), "/proc/self/fd/%d/ping", stage);
        ASSERT_INT_EQ(getxattr(p, "security.capability", cap, sizeof(cap)), 20);
        snprintf(p, sizeof(p), "/proc/self/fd/%d/acl_dir/plain", stage);
        ASSERT_TRUE(getxattr(p, "system.posix_acl_access", cap, sizeof(cap)) < 0);
        ASSERT_OK(fstatat(stage, ".", &b, 0));
        ASSERT_INT_EQ(b.st_mtim.tv_sec, 1234567890);
        /* nothing next to the staging directory changed */
        ASSERT_INT_EQ(count_entries(dst, "."), 2);
        ASSERT_INT_EQ(count_entries(dst, "sentinel"), 0);

        /* the compare is not vacuous: it sees a changed xattr, ns time, content, link */
        ASSERT_OK(fsetxattr(stage, "user.extra", "1", 1, 0));
        struct timespec ts[2] = { { 0, UTIME_OMIT }, { 1000000000 + 7777 * 3, 123456790 } };
        ASSERT_OK(utimensat(stage, "dense", ts, 0));
        int fd = openat(stage, "many/s100", O_WRONLY);
        ASSERT_INT_EQ(pwrite(fd, "Z", 1, 5), 1);
        close(fd);
        ASSERT_OK(unlinkat(stage, "hl_c", 0));
        ASSERT_OK(put_file(stage, "hl_c", "linked", 6, 0640));
        char *rep = NULL;
        ASSERT_INT_EQ(cta_mig_tree_compare(src, stage, CTA_MIG_CMP_NO_ROOT, &rep, &err), 1);
        ASSERT_TRUE(rep && strstr(rep, "(root)") == NULL);
        ASSERT_TRUE(strstr(rep, "dense: mtime"));
        ASSERT_TRUE(strstr(rep, "many/s100: content differs"));
        ASSERT_TRUE(strstr(rep, "hl_c: nlink"));
        free(rep);
        close(stage);
        close(src);
        close(dst);
        return 0;
}

static uint64_t g_progress_calls, g_progress_last;
static void on_progress(void *ud, uint64_t done, uint64_t total, uint64_t files, uint64_t ftotal)
{
        g_progress_calls++;
        g_progress_last = done;
        (void)ud;
        (void)total;
        (void)files;
        (void)ftotal;
}

static int have_to_memfd(int dirfd, int *ret_fd, struct cta_mig_stats *st)
{
        int fd = memfd_create("have", MFD_CLOEXEC);
        struct cta_mig_io io = cta_mig_fd_io(fd);
        struct cta_error *err = NULL;
        int r = cta_mig_have_build(dirfd, &io, st, &err);
        if (r < 0)
                printf("# have: %s\n", cta_error_msg(err));
        cta_error_free(err);
        lseek(fd, 0, SEEK_SET);
        *ret_fd = fd;
        return r;
}

/* An incremental pass onto dst/"stage" (open as stage): its have stream first, then the
 * transfer with it (so->have is set for the call only). */
static int transfer_incr(int src, int dst, int stage, struct cta_mig_send_opts *so,
                         const struct cta_mig_recv_opts *ro, struct send_job *job,
                         struct cta_mig_stats *rst)
{
        int hfd;
        struct cta_mig_stats hst;
        if (have_to_memfd(stage, &hfd, &hst) < 0)
                return -1;
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        so->have = &hio;
        int r = transfer(src, dst, "stage", so, ro, job, rst);
        so->have = NULL;
        close(hfd);
        return r;
}

TEST(incremental__one_percent)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("i", &src, &dst));
        char c[4096];
        for (int d = 0; d < 10; d++) {
                char n[64];
                snprintf(n, sizeof(n), "dir%d", d);
                ASSERT_OK(mkdirat(src, n, 0755));
                for (int i = 0; i < 100; i++) {
                        snprintf(n, sizeof(n), "dir%d/file%03d", d, i);
                        memset(c, 'a' + (i + d) % 26, sizeof(c));
                        ASSERT_OK(put_file(src, n, c, 1000 + (size_t)i, 0644));
                }
        }
        ASSERT_OK(mkdirat(src, "gone_dir", 0755));
        ASSERT_OK(put_file(src, "gone_dir/x", "x", 1, 0644));
        ASSERT_OK(put_file(src, "becomes_dir", "f", 1, 0644));
        ASSERT_OK(put_file(src, "hl1", "link", 4, 0644));
        ASSERT_OK(linkat(src, "hl1", src, "hl2", 0));
        struct send_job job;
        struct cta_mig_stats rst;
        ASSERT_INT_EQ(transfer(src, dst, "stage", NULL, NULL, &job, &rst), 0);
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        uint64_t full_bytes = job.st.data_bytes;

        /* change 1% of the files (10), delete a tree, turn a file into a directory, add a
         * file, change only the mode of one */
        uint64_t changed = 0;
        for (int k = 0; k < 10; k++) {
                char n[64];
                snprintf(n, sizeof(n), "dir%d/file%03d", k, k * 7);
                memset(c, 'Z', sizeof(c));
                ASSERT_OK(put_file(src, n, c, 2000, 0644));
                changed += 2000;
        }
        ASSERT_OK(cta_rm_rf_at(src, "gone_dir"));
        ASSERT_OK(unlinkat(src, "becomes_dir", 0));
        ASSERT_OK(mkdirat(src, "becomes_dir", 0700));
        ASSERT_OK(put_file(src, "becomes_dir/new", "new!", 4, 0644));
        changed += 4;
        ASSERT_OK(fchmodat(src, "dir3/file050", 0600, 0));
        ASSERT_OK(put_file(stage, "dir5/extra_on_dst", "e", 1, 0644));

        int hfd;
        struct cta_mig_stats hst;
        ASSERT_OK(have_to_memfd(stage, &hfd, &hst));
        ASSERT_TRUE(hst.entries > 1000);
        close(stage);
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        g_progress_calls = 0;
        struct cta_mig_send_opts so = { .have = &hio, .progress = { on_progress, NULL } };
        struct cta_mig_recv_opts ro = { .allow_existing = true };
        ASSERT_INT_EQ(transfer(src, dst, "stage", &so, &ro, &job, &rst), 0);
        close(hfd);
        printf("# full pass %llu data bytes; second pass %llu data bytes, %llu wire bytes, "
               "%llu unchanged, %llu deleted\n",
               (unsigned long long)full_bytes, (unsigned long long)job.st.data_bytes,
               (unsigned long long)job.st.wire_bytes, (unsigned long long)job.st.unchanged,
               (unsigned long long)job.st.deleted);
        ASSERT_INT_EQ(job.st.data_bytes, changed);
        ASSERT_INT_EQ(rst.data_bytes, changed);
        ASSERT_INT_EQ(job.st.files, 11);
        ASSERT_INT_EQ(rst.files, 11);
        ASSERT_INT_EQ(job.st.deleted, 2); /* gone_dir (whole) and dir5/extra_on_dst */
        ASSERT_TRUE(g_progress_calls >= 1 && g_progress_last == changed);
        stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);

        /* nothing changed: no data at all */
        ASSERT_INT_EQ(transfer_incr(src, dst, stage, &so, &ro, &job, &rst), 0);
        ASSERT_INT_EQ(job.st.data_bytes, 0);
        ASSERT_INT_EQ(job.st.deleted, 0);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        close(stage);
        close(src);
        close(dst);
        return 0;
}

/* A time for changed_since that the ctimes of what came before fall before and those of
 * what comes after fall after: file times come from a coarse clock (a tick behind). */
static int pass_start(struct timespec *t)
{
        usleep(50 * 1000);
        int r = clock_gettime(CLOCK_REALTIME, t);
        usleep(50 * 1000);
        return r;
}

/* A copy made while the tree is in use, then the pass after it: a file rewritten in the
 * same clock tick as the first pass read it keeps its size and mtime (here: set back, as a
 * coarse clock would leave it). Trusting the have stream misses it; with changed_since (the
 * first pass's start) its new ctime sends it again. */
TEST(incremental__changed_since_precopy)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("pc", &src, &dst));
        ASSERT_OK(put_file(src, "old", "untouched", 9, 0644));
        ASSERT_OK(put_file(src, "busy", "before!!", 8, 0644));
        struct send_job job;
        struct cta_mig_stats rst;
        ASSERT_INT_EQ(transfer(src, dst, "stage", NULL, NULL, &job, &rst), 0);
        /* the first pass "started" at t */
        struct timespec t;
        ASSERT_OK(pass_start(&t));
        /* "busy" rewritten while that pass ran: size and mtime as before */
        struct stat st;
        ASSERT_OK(fstatat(src, "busy", &st, 0));
        ASSERT_OK(put_file(src, "busy", "after!!!", 8, 0644));
        struct timespec same[2] = { st.st_atim, st.st_mtim };
        ASSERT_OK(utimensat(src, "busy", same, 0));
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(stage >= 0);

        /* trusting the have stream alone, the destination keeps the old "busy" */
        struct cta_mig_send_opts so = { 0 };
        struct cta_mig_recv_opts ro = { .allow_existing = true };
        ASSERT_INT_EQ(transfer_incr(src, dst, stage, &so, &ro, &job, &rst), 0);
        ASSERT_INT_EQ(job.st.data_bytes, 0);
        char buf[16] = { 0 };
        int fd = openat(stage, "busy", O_RDONLY);
        ASSERT_INT_EQ(read(fd, buf, sizeof(buf)), 8);
        close(fd);
        ASSERT_STR_EQ(buf, "before!!");

        /* with changed_since = t, "busy" (changed after t) is sent again, "old" not at
         * all (not even its metadata: it is as the pass before left it) */
        so.changed_since = t;
        ASSERT_INT_EQ(transfer_incr(src, dst, stage, &so, &ro, &job, &rst), 0);
        ASSERT_INT_EQ(job.st.data_bytes, 8);
        ASSERT_INT_EQ(job.st.unchanged, 0);
        ASSERT_INT_EQ(job.st.quiet, 1);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        close(stage);
        close(src);
        close(dst);
        return 0;
}

/* A database written through a shared mapping during a live copy: the page it dirtied
 * before the copy began is written again after the first pass read it, without a fault,
 * so without moving the file's times. The pass mark writes the file system back after
 * taking the time, so that write faults and moves ctime past it: the next pass sends the
 * file (with a mark from the clock alone it was left out as unchanged: the copy kept the
 * old page). */
TEST(incremental__mapped_write_after_first_pass)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("mm", &src, &dst));
        char c[16384];
        memset(c, 'a', sizeof(c));
        ASSERT_OK(put_file(src, "db", c, sizeof(c), 0644));
        int fd = openat(src, "db", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        char *map = mmap(NULL, sizeof(c), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(map != MAP_FAILED);
        map[0] = 'b'; /* the write fault: ctime now, the page dirty and writable */
        usleep(1200 * 1000); /* the mark lies a second back */
        struct timespec t;
        if (cta_mig_pass_mark(src, &t) != 0)
                printf("# this file system does not write pages back: every file goes\n");
        struct send_job job;
        struct cta_mig_stats rst;
        ASSERT_INT_EQ(transfer(src, dst, "stage", NULL, NULL, &job, &rst), 0);
        map[1] = 'c'; /* after the first pass read it */
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(stage >= 0);
        struct cta_mig_send_opts so = { .changed_since = t };
        struct cta_mig_recv_opts ro = { .allow_existing = true };
        ASSERT_INT_EQ(transfer_incr(src, dst, stage, &so, &ro, &job, &rst), 0);
        ASSERT_INT_EQ(job.st.data_bytes, sizeof(c));
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        char got[2];
        int cfd = openat(stage, "db", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(cfd >= 0 && read(cfd, got, 2) == 2);
        close(cfd);
        ASSERT_TRUE(got[0] == 'b' && got[1] == 'c');
        munmap(map, sizeof(c));
        close(fd);
        close(stage);
        close(src);
        close(dst);
        return 0;
}

/* The have builder counts the entries changed since a time (a retired copy changed by
 * hand since its retirement): a chmod, an xattr, a new file; not the root, which the
 * rename into the staging area changes anyway. */
TEST(have__touched_since)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("ht", &src, &dst));
        ASSERT_OK(mkdirat(src, "d", 0755));
        static const char *const files[] = { "a", "b", "d/c", "d/e" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(files); i++)
                ASSERT_OK(put_file(src, files[i], "x", 1, 0644));
        struct timespec t;
        ASSERT_OK(pass_start(&t));
        struct cta_mig_have_opts ho = { .touched_since = t };
        struct cta_mig_stats st;
        int fd = memfd_create("have", MFD_CLOEXEC);
        struct cta_mig_io io = cta_mig_fd_io(fd);
        struct cta_error *err = NULL;
        ASSERT_OK(cta_mig_have_build_opts(src, &ho, &io, &st, &err));
        ASSERT_INT_EQ(st.entries, 5);
        ASSERT_INT_EQ(st.touched, 0);
        ASSERT_OK(fchmod(src, 0700)); /* the root: not counted */
        ASSERT_OK(fchmodat(src, "a", 0600, 0));
        int efd = openat(src, "d/e", O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(efd >= 0 && fsetxattr(efd, "user.k", "v", 1, 0) == 0);
        close(efd);
        ASSERT_OK(put_file(src, "d/new", "y", 1, 0644)); /* d's times move too */
        ASSERT_OK(cta_mig_have_build_opts(src, &ho, &io, &st, &err));
        ASSERT_INT_EQ(st.entries, 6);
        ASSERT_INT_EQ(st.touched, 4);
        close(fd);
        close(src);
        close(dst);
        return 0;
}

/* The mark is a second before now on a file system that writes pages back; on tmpfs,
 * which never does, it counts every file as changed. */
TEST(pass_mark__clock_or_all_changed)
{
        ASSERT_OK(setup());
        struct timespec now, t;
        clock_gettime(CLOCK_REALTIME, &now);
        ASSERT_INT_EQ(cta_mig_pass_mark(g_rootfd, &t), 0);
        ASSERT_TRUE(t.tv_sec == now.tv_sec - 1 || t.tv_sec == now.tv_sec);
        struct statfs sf;
        int shm = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (shm < 0 || fstatfs(shm, &sf) < 0 || sf.f_type != TMPFS_MAGIC) {
                printf("# no tmpfs at /dev/shm: the second half is skipped\n");
        } else {
                ASSERT_INT_EQ(cta_mig_pass_mark(shm, &t), 1);
                ASSERT_TRUE(t.tv_sec == 0 && t.tv_nsec == 1);
        }
        if (shm >= 0)
                close(shm);
        return 0;
}

/* The pass after a live copy sends nothing for what did not change since the copy began:
 * untouched files, symlinks and whole untouched subtrees go without a record. A directory
 * is held back and sent only before a change inside it (here a/ and a/b/ before a/b/f1),
 * as the receiver's writing into it changes its times, which its record restores; the
 * copy is exact, directory times included. */
TEST(incremental__quiet_entries_not_sent)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("quiet", &src, &dst));
        static const char *const dirs[] = { "a", "a/b", "c", "e", "x", "x/y" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(dirs); i++)
                ASSERT_OK(mkdirat(src, dirs[i], 0755));
        static const char *const files[] = { "a/b/f1", "a/b/f2", "a/f3", "c/old",
                                             "e/gone", "e/keep", "x/y/z1", "x/y/z2" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(files); i++)
                ASSERT_OK(put_file(src, files[i], files[i], strlen(files[i]), 0644));
        ASSERT_OK(symlinkat("a/f3", src, "l"));
        {
                int yfd = openat(src, "x/y", O_RDONLY | O_DIRECTORY);
                ASSERT_TRUE(yfd >= 0);
                ASSERT_OK(fsetxattr(yfd, "user.k", "v", 1, 0));
                close(yfd);
        }
        /* times from a coarse clock: set them apart from now */
        struct timespec old[2] = { { 1700000000, 5 }, { 1700000000, 7 } };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(dirs); i++)
                ASSERT_OK(utimensat(src, dirs[i], old, AT_SYMLINK_NOFOLLOW));
        struct send_job job;
        struct cta_mig_stats rst;
        ASSERT_INT_EQ(transfer(src, dst, "stage", NULL, NULL, &job, &rst), 0);
        struct timespec t;
        ASSERT_OK(pass_start(&t));
        ASSERT_OK(put_file(src, "a/b/f1", "changed!", 8, 0644)); /* a/b's times stay */
        ASSERT_OK(put_file(src, "c/new", "new", 3, 0644));
        ASSERT_OK(unlinkat(src, "e/gone", 0));
        /* a/f3 read meanwhile: its atime moves (relatime: it was not after its mtime), not
         * its ctime; it gets its record, so the copy has that atime too */
        char c1;
        int rfd = openat(src, "a/f3", O_RDONLY);
        ASSERT_TRUE(rfd >= 0 && read(rfd, &c1, 1) == 1);
        close(rfd);
        struct stat f3;
        ASSERT_OK(fstatat(src, "a/f3", &f3, AT_SYMLINK_NOFOLLOW));
        bool read_moved = f3.st_atim.tv_sec > t.tv_sec ||
                          (f3.st_atim.tv_sec == t.tv_sec && f3.st_atim.tv_nsec >= t.tv_nsec);
        if (!read_moved)
                printf("# this file system did not move a/f3's atime on read\n");
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(stage >= 0);
        struct cta_mig_send_opts so = { .changed_since = t };
        struct cta_mig_recv_opts ro = { .allow_existing = true };
        ASSERT_INT_EQ(transfer_incr(src, dst, stage, &so, &ro, &job, &rst), 0);
        /* (before the compare reads it: the copy's new ctime lets relatime move its atime) */
        struct stat cf3;
        ASSERT_OK(fstatat(stage, "a/f3", &cf3, AT_SYMLINK_NOFOLLOW));
        if (read_moved)
                ASSERT_TRUE(cf3.st_atim.tv_sec == f3.st_atim.tv_sec &&
                            cf3.st_atim.tv_nsec == f3.st_atim.tv_nsec);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        /* sent: the root, a, a/b, a/b/f1, (a/f3,) c, c/new, e (and e/gone's deletion); not:
         * a/b/f2, (a/f3,) c/old, e/keep, l, x, x/y, x/y/z1, x/y/z2 */
        ASSERT_INT_EQ(job.st.entries, read_moved ? 8 : 7);
        ASSERT_INT_EQ(job.st.quiet, read_moved ? 8 : 9);
        ASSERT_INT_EQ(job.st.deleted, 1);
        ASSERT_INT_EQ(job.st.dirs, 5); /* the root too */
        ASSERT_INT_EQ(rst.entries, job.st.entries);

        /* and without changed_since every entry has its record, as before */
        so.changed_since = (struct timespec){ 0 };
        ASSERT_INT_EQ(transfer_incr(src, dst, stage, &so, &ro, &job, &rst), 0);
        ASSERT_INT_EQ(job.st.entries, 16);
        ASSERT_INT_EQ(job.st.quiet, 0);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        close(stage);
        close(src);
        close(dst);
        return 0;
}

/* The receiver in a thread with its own working directory (as the daemon's stream job
 * runs it): xattrs of entries it never opens (symlinks, a fifo, unchanged files) go by
 * fchdir + name; the copy is the same, and the process's own directory stays put. */
struct cwd_job {
        int src, dst;
        const struct cta_mig_send_opts *so;
        const struct cta_mig_recv_opts *ro;
        int rc;
        bool own;
};
static void *cwd_job_main(void *arg)
{
        struct cwd_job *j = arg;
        struct send_job job;
        struct cta_mig_stats rst;
        j->own = cta_mig_thread_own_cwd();
        j->rc = transfer(j->src, j->dst, "stage", j->so, j->ro, &job, &rst);
        return NULL;
}

static int transfer_own_cwd(struct cwd_job *j)
{
        pthread_t th;
        if (pthread_create(&th, NULL, cwd_job_main, j) != 0)
                return -1;
        pthread_join(th, NULL);
        return j->own ? j->rc : -1;
}

TEST(own_cwd__xattrs_by_name)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("ow", &src, &dst));
        char cwd0[PATH_MAX], cwd1[PATH_MAX], p[64];
        ASSERT_NOT_NULL(getcwd(cwd0, sizeof(cwd0)));
        ASSERT_OK(mkdirat(src, "d", 0755));
        for (int i = 0; i < 20; i++) {
                snprintf(p, sizeof(p), "d/f%02d", i);
                ASSERT_OK(put_file(src, p, "data", 4, 0644));
                snprintf(p, sizeof(p), "d/l%02d", i);
                ASSERT_OK(symlinkat("f00", src, p));
                char proc[96];
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d/d/l%02d", src, i);
                ASSERT_OK(lsetxattr(proc, "trusted.link", p, strlen(p), 0));
        }
        ASSERT_OK(mkfifoat(src, "d/fifo", 0600));
        char fifo[96];
        snprintf(fifo, sizeof(fifo), "/proc/self/fd/%d/d/fifo", src);
        ASSERT_OK(lsetxattr(fifo, "trusted.fifo", "y", 1, 0));
        struct cwd_job j = { .src = src, .dst = dst };
        ASSERT_INT_EQ(transfer_own_cwd(&j), 0);
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);

        /* incremental: a symlink's xattr changed, another's removed, a file's added */
        char proc[96];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/d/l03", src);
        ASSERT_OK(lsetxattr(proc, "trusted.link", "new", 3, 0));
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/d/l04", src);
        ASSERT_OK(lremovexattr(proc, "trusted.link"));
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/d/f05", src);
        ASSERT_OK(lsetxattr(proc, "user.added", "1", 1, 0));
        int hfd;
        struct cta_mig_stats hst;
        ASSERT_OK(have_to_memfd(stage, &hfd, &hst));
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        struct cta_mig_send_opts so = { .have = &hio };
        struct cta_mig_recv_opts ro = { .allow_existing = true };
        j = (struct cwd_job){ .src = src, .dst = dst, .so = &so, .ro = &ro };
        ASSERT_INT_EQ(transfer_own_cwd(&j), 0);
        close(hfd);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        ASSERT_NOT_NULL(getcwd(cwd1, sizeof(cwd1)));
        ASSERT_STR_EQ(cwd1, cwd0);
        close(stage);
        close(src);
        close(dst);
        return 0;
}

/* A transfer cut mid-stream with keep_on_failure: the kept staging holds only verified
 * files; a second (incremental) pass completes it without resending them. */
struct cut_io {
        int fd;
        size_t left;
};
static ssize_t cut_write(void *ctx, const void *buf, size_t len)
{
        struct cut_io *c = ctx;
        size_t n = len < c->left ? len : c->left;
        ssize_t w = cta_mig_fd_io_ops.write((void *)(intptr_t)c->fd, buf, n);
        if (w < 0)
                return w;
        c->left -= n;
        if (n < len) {
                shutdown(c->fd, SHUT_WR);
                return -ECONNRESET;
        }
        return w;
}

TEST(retry__kept_staging_resumes)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("r", &src, &dst));
        static char c[200000];
        for (int i = 0; i < 40; i++) {
                char n[32];
                snprintf(n, sizeof(n), "f%02d", i);
                memset(c, 'a' + i % 26, sizeof(c));
                ASSERT_OK(put_file(src, n, c, sizeof(c), 0644));
        }
        int sv[2];
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        struct cut_io cio = { .fd = sv[1], .left = 20 * sizeof(c) + 5000 };
        struct cta_mig_io wio = { .write = cut_write, .ctx = &cio };
        /* the sender writes 4 MiB buffers: run it in a thread through a pipe */
        struct cta_mig_io rio = cta_mig_fd_io(sv[0]);
        struct cta_mig_recv_opts ro = { .keep_on_failure = true, .allow_existing = true };
        struct cta_error *err = NULL, *serr = NULL;
        pid_t pid = fork();
        if (pid == 0) {
                int r = cta_mig_send(src, &wio, NULL, NULL, &serr);
                _exit(r < 0 ? 1 : 0);
        }
        close(sv[1]);
        int r = cta_mig_recv(dst, "stage", &rio, &ro, NULL, &err);
        close(sv[0]);
        int status;
        waitpid(pid, &status, 0);
        ASSERT_TRUE(r < 0);
        ASSERT_INT_EQ(cta_error_code(err), CTA_E_MIG_STREAM);
        cta_error_free(err);
        err = NULL;
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(stage >= 0);
        int kept = count_entries(stage, ".");
        printf("# kept %d verified files after the cut\n", kept);
        ASSERT_TRUE(kept >= 15 && kept < 40);
        /* every kept file is complete (no temporary files) */
        DIR *d = fdopendir(dup(stage));
        struct dirent *e;
        while ((e = readdir(d))) {
                struct stat st;
                if (e->d_name[0] == '.')
                        ASSERT_TRUE(!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."));
                else {
                        ASSERT_OK(fstatat(stage, e->d_name, &st, 0));
                        ASSERT_INT_EQ(st.st_size, sizeof(c));
                }
        }
        closedir(d);
        int hfd;
        struct cta_mig_stats hst;
        ASSERT_OK(have_to_memfd(stage, &hfd, &hst));
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        struct cta_mig_send_opts so = { .have = &hio };
        struct send_job job;
        struct cta_mig_stats rst;
        ASSERT_INT_EQ(transfer(src, dst, "stage", &so, &ro, &job, &rst), 0);
        close(hfd);
        ASSERT_INT_EQ(job.st.files, 40 - (uint64_t)kept);
        ASSERT_INT_EQ(job.st.unchanged, kept);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        close(stage);
        close(src);
        close(dst);
        return 0;
}

TEST(cancel__removes_staging)
{
        ASSERT_OK(setup());
        int src = openat(g_rootfd, "src", O_RDONLY | O_DIRECTORY);
        ASSERT_OK(mkdirat(g_rootfd, "cdst", 0755));
        int dst = openat(g_rootfd, "cdst", O_RDONLY | O_DIRECTORY);
        atomic_bool cancel = true;
        struct cta_mig_recv_opts ro = { .cancel = &cancel };
        struct send_job job;
        ASSERT_INT_EQ(transfer(src, dst, "stage", NULL, &ro, &job, NULL), CTA_E_CANCELLED);
        ASSERT_INT_EQ(count_entries(dst, "."), 0);
        struct cta_mig_send_opts so = { .cancel = &cancel };
        ASSERT_INT_EQ(transfer(src, dst, "stage", &so, NULL, &job, NULL), CTA_E_MIG_STREAM);
        ASSERT_INT_EQ(job.code, CTA_E_CANCELLED);
        ASSERT_INT_EQ(count_entries(dst, "."), 0);
        close(src);
        close(dst);
        return 0;
}

struct conc {
        int src, dst, code;
        struct send_job job;
};
static void *conc_main(void *arg)
{
        struct conc *c = arg;
        c->code = transfer(c->src, c->dst, "stage", NULL, NULL, &c->job, NULL);
        return NULL;
}

/* Two migrations at once (two containers): no shared state between them. */
TEST(concurrent__two_transfers)
{
        ASSERT_OK(setup());
        int src = openat(g_rootfd, "isrc", O_RDONLY | O_DIRECTORY);
        struct conc c[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
                char n[16];
                snprintf(n, sizeof(n), "conc%d", i);
                ASSERT_OK(mkdirat(g_rootfd, n, 0755));
                c[i] = (struct conc){ .src = src, .dst = openat(g_rootfd, n, O_RDONLY) };
                pthread_create(&th[i], NULL, conc_main, &c[i]);
        }
        for (int i = 0; i < 2; i++) {
                pthread_join(th[i], NULL);
                ASSERT_INT_EQ(c[i].code, 0);
                int stage = openat(c[i].dst, "stage", O_RDONLY | O_DIRECTORY);
                ASSERT_INT_EQ(compare(src, stage, 0), 0);
                close(stage);
                close(c[i].dst);
        }
        close(src);
        return 0;
}


/* ------------------------------------------------------------------ block deltas */

#define MiB (1ull << 20)

static void fill_rand(uint8_t *b, size_t n, uint32_t seed)
{
        for (size_t i = 0; i < n; i += 4) {
                seed = seed * 1103515245u + 12345u;
                memcpy(b + i, &seed, 4);
        }
}

/* A 256 MiB sparse image with 20 MiB of data in 5 extents, and a 12 MiB dense file. */
static int build_big(int dfd)
{
        static uint8_t buf[4 * MiB];
        int fd = openat(dfd, "img", O_CREAT | O_WRONLY | O_TRUNC, 0640);
        CHK(fd);
        for (int i = 0; i < 5; i++) {
                fill_rand(buf, sizeof(buf), 77u + (uint32_t)i);
                CHK(pwrite(fd, buf, sizeof(buf), (off_t)((uint64_t)i * 48 * MiB + 3 * MiB / 2)));
        }
        CHK(ftruncate(fd, (off_t)(256 * MiB)));
        close(fd);
        fd = openat(dfd, "dense", O_CREAT | O_WRONLY | O_TRUNC, 0600);
        CHK(fd);
        for (int i = 0; i < 3; i++) {
                fill_rand(buf, sizeof(buf), 999u + (uint32_t)i);
                CHK(write(fd, buf, sizeof(buf)));
        }
        close(fd);
        CHK(put_file(dfd, "small", "small", 5, 0644));
        return 0;
}

/* The receiver counts the bytes of small files it leaves in the page cache (those of
 * large files start their own writeback, or go direct): the destination's flusher
 * flushes sooner when they add up (daemon/mig_flush.c). */
TEST(recv__counts_small_files_left_in_the_page_cache)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("cached", &src, &dst));
        ASSERT_OK(build_big(src)); /* img (20 MiB of data), dense (12 MiB), small (5 B) */
        static uint8_t mid[3 * MiB + 17];
        fill_rand(mid, sizeof(mid) & ~(size_t)3, 4711u);
        ASSERT_OK(put_file(src, "mid", mid, sizeof(mid), 0600));
        ASSERT_TRUE(mkdirat(src, "d", 0755) == 0);
        ASSERT_OK(put_file(src, "d/text", "some text\n", 10, 0644));
        ASSERT_OK(put_file(src, "d/empty", "", 0, 0644));
        uint64_t cached = 0;
        struct cta_mig_recv_opts ro = { .cached_bytes = &cached };
        struct send_job job;
        struct cta_mig_stats st;
        ASSERT_INT_EQ(transfer(src, dst, "t", NULL, &ro, &job, &st), 0);
        int t = openat(dst, "t", O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(t >= 0);
        ASSERT_INT_EQ(compare(src, t, 0), 0);
        /* small + mid + d/text: not img or dense, whatever direct I/O did with them */
        ASSERT_INT_EQ(cached, 5 + sizeof(mid) + 10);
        ASSERT_TRUE(st.data_bytes > cached + 30 * MiB);
        close(t);
        close(src);
        close(dst);
        return 0;
}

/* Overwrite n bytes at off with a pattern (which moves the mtime). */
static int scribble(int dfd, const char *name, uint64_t off, size_t n, char c)
{
        char b[8192];
        memset(b, c, sizeof(b));
        int fd = openat(dfd, name, O_WRONLY);
        if (fd < 0)
                return -1;
        int r = pwrite(fd, b, n, (off_t)off) == (ssize_t)n ? 0 : -1;
        close(fd);
        return r;
}

static int have_bm_memfd(int dirfd, const char *bm, int *ret_fd, struct cta_mig_stats *st)
{
        int fd = memfd_create("have", MFD_CLOEXEC);
        struct cta_mig_io io = cta_mig_fd_io(fd);
        struct cta_error *err = NULL;
        struct cta_mig_have_opts ho = { .blockmap_dir = bm };
        int r = cta_mig_have_build_opts(dirfd, &ho, &io, st, &err);
        if (r < 0)
                printf("# have: %s\n", cta_error_msg(err));
        cta_error_free(err);
        lseek(fd, 0, SEEK_SET);
        *ret_fd = fd;
        return r;
}

/* In a have stream (memfd), the hash of block idx of path: a pointer into map. */
static uint8_t *have_hash_at(uint8_t *map, size_t len, const char *path, uint64_t idx)
{
        size_t pos = 0, pl = strlen(path);
        bool in = false;
        while (pos + CTA_MIG_REC_HDR <= len) {
                uint8_t type = map[pos];
                uint32_t rl = cta_mig_get32(map + pos + 4);
                uint8_t *p = map + pos + CTA_MIG_REC_HDR;
                if (type == CTA_MIG_R_HAVE)
                        in = cta_mig_get16(p + 2) == pl &&
                             memcmp(p + CTA_MIG_HAVE_FIXED, path, pl) == 0;
                if (type == CTA_MIG_R_HAVE_BLOCKS && in) {
                        uint64_t first = cta_mig_get32(p + 4), n = (rl - 8) / 8;
                        if (idx >= first && idx < first + n)
                                return p + 8 + 8 * (idx - first);
                }
                pos += CTA_MIG_REC_HDR + rl;
        }
        return NULL;
}

static uint64_t block_hash_of(int dfd, const char *name, uint64_t idx)
{
        static uint8_t b[MiB];
        int fd = openat(dfd, name, O_RDONLY);
        ssize_t n = pread(fd, b, sizeof(b), (off_t)(idx * MiB));
        close(fd);
        return XXH3_64bits(b, n > 0 ? (size_t)n : 0);
}

/* A tree pair tagged tag with build_big() as the source, its block map directories
 * (bmd, bms: PATH_MAX bytes each) and a first full pass into dst/stage that records them. */
static int big_first_pass(const char *tag, char *bmd, char *bms, int *src, int *dst,
                          struct send_job *job, struct cta_mig_stats *rst)
{
        snprintf(bmd, PATH_MAX, "%s/%sbm-dst", g_root, tag);
        snprintf(bms, PATH_MAX, "%s/%sbm-src", g_root, tag);
        if (setup() < 0 || tree_pair(tag, src, dst) < 0 || build_big(*src) < 0)
                return -1;
        struct cta_mig_send_opts so = { .blockmap_dir = bms };
        struct cta_mig_recv_opts ro = { .blockmap_dir = bmd };
        return transfer(*src, *dst, "stage", &so, &ro, job, rst);
}

TEST(delta__block_changes_only)
{
        char bmd[PATH_MAX], bms[PATH_MAX];
        int src, dst;
        struct send_job job;
        struct cta_mig_stats rst, hst;
        /* the first pass records block maps on both sides */
        ASSERT_INT_EQ(big_first_pass("b", bmd, bms, &src, &dst, &job, &rst), 0);
        ASSERT_INT_EQ(rst.blockmaps, 2);
        ASSERT_INT_EQ(job.st.blockmaps, 2);
        uint64_t full = job.st.data_bytes;
        ASSERT_INT_EQ(full, 32 * MiB + 5);
        /* the daemon moves the staging directory into place: the maps follow the inodes */
        ASSERT_OK(renameat(dst, "stage", dst, "private"));
        int priv = openat(dst, "private", O_RDONLY | O_DIRECTORY);
        ASSERT_INT_EQ(compare(src, priv, 0), 0);

        /* 4 KiB changed in the middle of the image (inside one 1 MiB block) */
        ASSERT_OK(scribble(src, "img", 96 * MiB + 2 * MiB + 12345, 4096, 'X'));
        int hfd;
        ASSERT_OK(have_bm_memfd(priv, bmd, &hfd, &hst));
        ASSERT_INT_EQ(hst.blockmaps, 2);
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        struct cta_mig_send_opts so2 = { .have = &hio, .blockmap_dir = bms };
        struct cta_mig_recv_opts ro2 = { .allow_existing = true, .blockmap_dir = bmd };
        ASSERT_INT_EQ(transfer(src, dst, "private", &so2, &ro2, &job, &rst), 0);
        close(hfd);
        printf("# 4 KiB changed: %llu data bytes sent, %llu reused, %llu wire bytes\n",
               (unsigned long long)job.st.data_bytes, (unsigned long long)job.st.copied_bytes,
               (unsigned long long)job.st.wire_bytes);
        ASSERT_INT_EQ(job.st.data_bytes, MiB); /* the one block */
        ASSERT_INT_EQ(rst.data_bytes, MiB);
        ASSERT_INT_EQ(job.st.delta_files, 1);
        ASSERT_INT_EQ(rst.delta_files, 1);
        ASSERT_INT_EQ(rst.copied_bytes, 19 * MiB);
        ASSERT_TRUE(job.st.wire_bytes < MiB + 16384);
        ASSERT_INT_EQ(compare(src, priv, 0), 0); /* content, sparseness, metadata */

        /* the image's blocks changed on the destination behind our back (its mtime even
         * put back): the map is stale by the ctime, so the whole file goes again */
        ASSERT_OK(scribble(priv, "img", 2 * MiB, 100, 'D'));
        struct stat sst;
        ASSERT_OK(fstatat(src, "img", &sst, 0));
        struct timespec ts[2] = { sst.st_atim, sst.st_mtim };
        ASSERT_OK(utimensat(priv, "img", ts, 0));
        ASSERT_OK(scribble(src, "img", 144 * MiB + 2 * MiB, 10, 'Y'));
        ASSERT_OK(have_bm_memfd(priv, bmd, &hfd, &hst));
        ASSERT_INT_EQ(hst.blockmaps, 1); /* only "dense" still has a valid map */
        hio = cta_mig_fd_io(hfd);
        ASSERT_INT_EQ(transfer(src, dst, "private", &so2, &ro2, &job, &rst), 0);
        close(hfd);
        ASSERT_INT_EQ(job.st.data_bytes, 20 * MiB);
        ASSERT_INT_EQ(job.st.delta_files, 0);
        ASSERT_INT_EQ(compare(src, priv, 0), 0);

        /* a have stream that lies: block 99's hash replaced by the source's new one, so
         * the source believes the destination has it and sends a COPY. The receiver builds
         * the file from what it really has: the checksum refuses it, the old file stays,
         * the lying map is dropped, and the retry sends the whole file. */
        ASSERT_OK(scribble(src, "img", 99 * MiB + 5, 4096, 'Z'));
        ASSERT_OK(have_bm_memfd(priv, bmd, &hfd, &hst));
        ASSERT_INT_EQ(hst.blockmaps, 2);
        struct stat hs;
        ASSERT_OK(fstat(hfd, &hs));
        uint8_t *map = mmap(NULL, (size_t)hs.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, hfd, 0);
        ASSERT_TRUE(map != MAP_FAILED);
        uint8_t *hp = have_hash_at(map, (size_t)hs.st_size, "img", 99);
        ASSERT_TRUE(hp != NULL);
        ASSERT_TRUE(cta_mig_get64(hp) != block_hash_of(src, "img", 99));
        cta_mig_put64(hp, block_hash_of(src, "img", 99));
        munmap(map, (size_t)hs.st_size);
        struct stat before, after;
        ASSERT_OK(fstatat(priv, "img", &before, 0));
        hio = cta_mig_fd_io(hfd);
        struct cta_mig_recv_opts ro3 = { .allow_existing = true, .keep_on_failure = true,
                                         .blockmap_dir = bmd };
        ASSERT_INT_EQ(transfer(src, dst, "private", &so2, &ro3, &job, &rst), CTA_E_MIG_CHECKSUM);
        close(hfd);
        ASSERT_OK(fstatat(priv, "img", &after, 0));
        ASSERT_INT_EQ(after.st_ino, before.st_ino);
        ASSERT_INT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
        ASSERT_OK(have_bm_memfd(priv, bmd, &hfd, &hst));
        ASSERT_INT_EQ(hst.blockmaps, 1); /* the lying map is gone */
        hio = cta_mig_fd_io(hfd);
        ASSERT_INT_EQ(transfer(src, dst, "private", &so2, &ro2, &job, &rst), 0);
        close(hfd);
        ASSERT_INT_EQ(job.st.data_bytes, 20 * MiB);
        ASSERT_INT_EQ(compare(src, priv, 0), 0);

        /* lying the other way (every hash garbage) only costs bytes */
        ASSERT_OK(scribble(src, "dense", 5 * MiB, 4096, 'W'));
        ASSERT_OK(have_bm_memfd(priv, bmd, &hfd, &hst));
        ASSERT_INT_EQ(hst.blockmaps, 2);
        ASSERT_OK(fstat(hfd, &hs));
        map = mmap(NULL, (size_t)hs.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, hfd, 0);
        for (uint64_t i = 0; i < 12; i++)
                cta_mig_put64(have_hash_at(map, (size_t)hs.st_size, "dense", i), 0x1234 + i);
        munmap(map, (size_t)hs.st_size);
        hio = cta_mig_fd_io(hfd);
        ASSERT_INT_EQ(transfer(src, dst, "private", &so2, &ro2, &job, &rst), 0);
        close(hfd);
        ASSERT_INT_EQ(job.st.data_bytes, 12 * MiB);
        ASSERT_INT_EQ(job.st.delta_files, 1);
        ASSERT_INT_EQ(compare(src, priv, 0), 0);

        /* migration back: the source's own maps (recorded while it sent) serve when the
         * old source tree is the destination; 4 KiB changed on the new side */
        ASSERT_OK(scribble(priv, "img", 200 * MiB, 4096, 'B'));
        ASSERT_OK(have_bm_memfd(src, bms, &hfd, &hst));
        ASSERT_INT_EQ(hst.blockmaps, 2);
        hio = cta_mig_fd_io(hfd);
        struct cta_mig_send_opts so4 = { .have = &hio, .blockmap_dir = bmd };
        ASSERT_INT_EQ(transfer(priv, g_rootfd, "bsrc", &so4, &ro2, &job, &rst), 0);
        close(hfd);
        ASSERT_INT_EQ(job.st.data_bytes, 4096); /* written into a hole: 4 KiB of data */
        ASSERT_INT_EQ(job.st.delta_files, 1);
        ASSERT_INT_EQ(compare(src, priv, 0), 0);
        close(priv);
        close(src);
        close(dst);
        return 0;
}

/* One delta pass of src onto dst/name (a tree at tree), with the have summary of tree. */
static int delta_pass(int src, int dst, int tree, const char *bmd, const char *bms,
                      const struct cta_mig_recv_opts *ro, struct send_job *job,
                      struct cta_mig_stats *rst)
{
        int hfd;
        struct cta_mig_stats hst;
        if (have_bm_memfd(tree, bmd, &hfd, &hst) < 0)
                return -1;
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        struct cta_mig_send_opts so = { .have = &hio, .blockmap_dir = bms };
        int r = transfer(src, dst, "stage", &so, ro, job, rst);
        close(hfd);
        return r;
}

static ino_t ino_of(int dfd, const char *name)
{
        struct stat st;
        return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_ino : 0;
}

/* With inplace, a block delta writes only the changed blocks into the staging file itself
 * (same inode); holes the source gained are punched, the size follows both ways, and the
 * result is the source's file exactly. A have stream that lies is still caught (the
 * unchanged blocks' hashes come from our own record, not from what the source believed),
 * and the retry sends the whole file. */
TEST(delta__in_place)
{
        char bmd[PATH_MAX], bms[PATH_MAX];
        int src, dst;
        struct send_job job;
        struct cta_mig_stats rst;
        ASSERT_INT_EQ(big_first_pass("ip", bmd, bms, &src, &dst, &job, &rst), 0);
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY);
        ino_t ino = ino_of(stage, "img");
        struct cta_mig_recv_opts rip = { .allow_existing = true, .blockmap_dir = bmd,
                                         .inplace = true };

        /* 4 KiB rewritten in blocks 98 and 51, block 50 (data here) made a hole on the
         * source, and so is block 2 (followed by blocks this side still has) */
        ASSERT_OK(scribble(src, "img", 98 * MiB + 12345, 4096, 'X'));
        ASSERT_OK(scribble(src, "img", 51 * MiB + 100, 4096, 'X'));
        int fd = openat(src, "img", O_WRONLY);
        ASSERT_OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(50 * MiB),
                            (off_t)MiB));
        ASSERT_OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(2 * MiB),
                            (off_t)MiB));
        close(fd);
        ASSERT_INT_EQ(delta_pass(src, dst, stage, bmd, bms, &rip, &job, &rst), 0);
        ASSERT_INT_EQ(rst.inplace_files, 1);
        ASSERT_INT_EQ(rst.data_bytes, 2 * MiB);
        ASSERT_INT_EQ(ino_of(stage, "img"), ino);
        ASSERT_INT_EQ(compare(src, stage, 0), 0); /* content, sparseness, metadata */

        /* shrunk into the middle of a data extent, then grown with data far beyond */
        fd = openat(src, "img", O_WRONLY);
        ASSERT_OK(ftruncate(fd, (off_t)(100 * MiB + 123)));
        close(fd);
        ASSERT_INT_EQ(delta_pass(src, dst, stage, bmd, bms, &rip, &job, &rst), 0);
        ASSERT_INT_EQ(rst.inplace_files, 1);
        ASSERT_INT_EQ(rst.data_bytes, 123);
        ASSERT_INT_EQ(ino_of(stage, "img"), ino);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        ASSERT_OK(scribble(src, "img", 300 * MiB, 4096, 'G'));
        ASSERT_INT_EQ(delta_pass(src, dst, stage, bmd, bms, &rip, &job, &rst), 0);
        ASSERT_INT_EQ(rst.inplace_files, 1);
        /* (the old tail's file system block is data up to its end now) */
        ASSERT_INT_EQ(rst.data_bytes, 4096 + 4096);
        ASSERT_INT_EQ(ino_of(stage, "img"), ino);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        /* the file's last data made a hole again: the end is punched too */
        fd = openat(src, "img", O_WRONLY);
        ASSERT_OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(300 * MiB),
                            4096));
        close(fd);
        ASSERT_INT_EQ(delta_pass(src, dst, stage, bmd, bms, &rip, &job, &rst), 0);
        ASSERT_INT_EQ(rst.inplace_files, 1);
        ASSERT_INT_EQ(rst.data_bytes, 0);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);

        /* the lie: block 3's hash replaced by the source's new one */
        ASSERT_OK(scribble(src, "img", 3 * MiB + 5, 4096, 'Z'));
        int hfd;
        struct cta_mig_stats hst;
        ASSERT_OK(have_bm_memfd(stage, bmd, &hfd, &hst));
        struct stat hs;
        ASSERT_OK(fstat(hfd, &hs));
        uint8_t *map = mmap(NULL, (size_t)hs.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, hfd, 0);
        ASSERT_TRUE(map != MAP_FAILED);
        uint8_t *hp = have_hash_at(map, (size_t)hs.st_size, "img", 3);
        ASSERT_TRUE(hp != NULL);
        cta_mig_put64(hp, block_hash_of(src, "img", 3));
        munmap(map, (size_t)hs.st_size);
        struct cta_mig_io hio = cta_mig_fd_io(hfd);
        struct cta_mig_send_opts so2 = { .have = &hio, .blockmap_dir = bms };
        rip.keep_on_failure = true;
        ASSERT_INT_EQ(transfer(src, dst, "stage", &so2, &rip, &job, &rst), CTA_E_MIG_CHECKSUM);
        close(hfd);
        ASSERT_TRUE(compare(src, stage, 0) != 0);
        ASSERT_OK(have_bm_memfd(stage, bmd, &hfd, &hst));
        close(hfd);
        ASSERT_INT_EQ(hst.blockmaps, 1); /* only "dense": img's record went before its writes */
        ASSERT_INT_EQ(delta_pass(src, dst, stage, bmd, bms, &rip, &job, &rst), 0);
        ASSERT_INT_EQ(rst.inplace_files, 0);
        /* all of img's data: 3 + 3 + 2.5 MiB and a file system block */
        ASSERT_INT_EQ(rst.data_bytes, 8 * MiB + MiB / 2 + 4096);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);

        /* without the option the delta goes into a new file, as before */
        ASSERT_OK(scribble(src, "img", 98 * MiB, 4096, 'N'));
        ino = ino_of(stage, "img");
        rip.inplace = false;
        ASSERT_INT_EQ(delta_pass(src, dst, stage, bmd, bms, &rip, &job, &rst), 0);
        ASSERT_INT_EQ(rst.inplace_files, 0);
        ASSERT_INT_EQ(rst.delta_files, 1);
        ASSERT_TRUE(ino_of(stage, "img") != ino);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);

        /* a tag (the daemon's, per migration, for a user's kept copy): only a file whose
         * record carries it, i.e. one a receiver with that tag wrote, is patched */
        struct cta_mig_recv_opts rt = { .allow_existing = true, .blockmap_dir = bmd,
                                        .inplace_tag = 0x5151 };
        struct cta_mig_recv_opts ru = rt;
        ru.inplace_tag = 0x6161;
        char c = 'T';
        const struct cta_mig_recv_opts *seq[] = { &rt, &ru, &ru };
        for (int i = 0; i < 3; i++) {
                ASSERT_OK(scribble(src, "img", 98 * MiB, 4096, c++));
                ino = ino_of(stage, "img");
                ASSERT_INT_EQ(delta_pass(src, dst, stage, bmd, bms, seq[i], &job, &rst), 0);
                ASSERT_INT_EQ(rst.delta_files, 1);
                ASSERT_INT_EQ(rst.inplace_files, i == 2); /* untagged, 0x5151, 0x6161 */
                ASSERT_INT_EQ(ino_of(stage, "img") == ino, i == 2);
                ASSERT_INT_EQ(compare(src, stage, 0), 0);
        }
        close(stage);
        close(src);
        close(dst);
        return 0;
}

/* cta_dio_cached: a file just written is in the page cache (read buffered); once its pages
 * are dropped, or with most of it a hole, it is not (read with O_DIRECT). */
TEST(dio__cached_sample)
{
        ASSERT_OK(setup());
        static uint8_t buf[MiB];
        int fd = openat(g_rootfd, "cached", O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        for (int i = 0; i < 16; i++) {
                fill_rand(buf, sizeof(buf), 5u + (uint32_t)i);
                ASSERT_INT_EQ(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
        }
        ASSERT_TRUE(cta_dio_cached(fd, 16 * MiB));
        ASSERT_OK(fdatasync(fd));
        ASSERT_OK(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
        ASSERT_TRUE(!cta_dio_cached(fd, 16 * MiB));
        /* read back: cached again; then mostly a hole */
        for (int i = 0; i < 16; i++)
                ASSERT_INT_EQ(pread(fd, buf, sizeof(buf), (off_t)(i * MiB)), (ssize_t)sizeof(buf));
        ASSERT_TRUE(cta_dio_cached(fd, 16 * MiB));
        ASSERT_OK(ftruncate(fd, (off_t)(256 * MiB)));
        ASSERT_TRUE(!cta_dio_cached(fd, 256 * MiB));
        ASSERT_TRUE(!cta_dio_cached(fd, 4096)); /* too small to sample */
        close(fd);
        return 0;
}

/* Direct I/O windows (migrate/dio.h): writes at unaligned offsets, in odd pieces, with gaps
 * and a ragged tail, and reads of any range give the bytes plain pwrite/pread give; on this
 * file system most of them go direct, and the file's flags are restored afterwards. */
TEST(dio__same_bytes_as_buffered)
{
        ASSERT_OK(setup());
        const size_t n = 11 * MiB + 1234;
        /* (fill_rand writes whole 4-byte words) */
        _cleanup_free_ uint8_t *src = malloc(n + 4), *want = calloc(1, n), *got = malloc(n);
        ASSERT_TRUE(src && want && got);
        fill_rand(src, n, 4242u);
        int fd = openat(g_rootfd, "dio", O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        struct cta_dio d;
        cta_dio_init(&d);
        bool direct = cta_dio_begin(&d, fd);
        /* [0, 5 MiB + 100), a gap, [6 MiB + 77, 9 MiB), a gap, [9 MiB + 4096, n) */
        static const uint64_t runs[][2] = { { 0, 5 * MiB + 100 }, { 6 * MiB + 77, 9 * MiB },
                                            { 9 * MiB + 4096, 11 * MiB + 1234 } };
        uint32_t seed = 7;
        for (size_t i = 0; i < 3; i++) {
                for (uint64_t off = runs[i][0]; off < runs[i][1];) {
                        seed = seed * 1103515245u + 12345u;
                        uint64_t k = 1 + (seed >> 8) % (700u << 10);
                        if (k > runs[i][1] - off)
                                k = runs[i][1] - off;
                        ASSERT_OK(cta_dio_pwrite(&d, src + off, (size_t)k, off));
                        memcpy(want + off, src + off, (size_t)k);
                        off += k;
                }
        }
        ASSERT_OK(cta_dio_flush(&d));
        cta_dio_end(&d);
        ASSERT_TRUE(!(fcntl(fd, F_GETFL) & O_DIRECT));
        ASSERT_TRUE(pread(fd, got, n, 0) == (ssize_t)n);
        ASSERT_MEM_EQ(got, want, n);
        if (direct)
                ASSERT_TRUE(d.direct_bytes >= 9 * MiB);
        printf("# direct I/O %s: %llu bytes written direct\n", direct ? "on" : "refused",
               (unsigned long long)d.direct_bytes);
        /* reads: any range, read-ahead limits short and long, the end of the file */
        uint64_t before = d.direct_bytes;
        direct = cta_dio_begin(&d, fd);
        for (int i = 0; i < 300; i++) {
                seed = seed * 1103515245u + 12345u;
                uint64_t off = (seed >> 4) % n;
                seed = seed * 1103515245u + 12345u;
                size_t k = 1 + (seed >> 8) % (1u << 20);
                uint64_t limit = off + (i % 3 ? k : 3 * MiB);
                ssize_t r = cta_dio_pread(&d, got, k, off, limit);
                size_t expect = k < n - off ? k : (size_t)(n - off);
                ASSERT_TRUE(r > 0 && (size_t)r <= expect);
                ASSERT_MEM_EQ(got, want + off, (size_t)r);
        }
        ASSERT_INT_EQ(cta_dio_pread(&d, got, 10, n, n + 10), 0);
        /* front to back, as the sender reads: the helper reads the next window ahead */
        memset(got, 0, n);
        for (uint64_t off = 0; off < n;) {
                ssize_t r = cta_dio_pread(&d, got + off, 1000003, off, n);
                ASSERT_TRUE(r > 0);
                off += (uint64_t)r;
        }
        ASSERT_MEM_EQ(got, want, n);
        if (direct)
                ASSERT_TRUE(d.direct_bytes > before + 8 * MiB);
        cta_dio_end(&d);
        /* a long sequential write (windows written behind) then an unaligned jump */
        ASSERT_TRUE(ftruncate(fd, 0) == 0);
        direct = cta_dio_begin(&d, fd);
        for (uint64_t off = 0; off < 9 * MiB; off += MiB)
                ASSERT_OK(cta_dio_pwrite(&d, src + off, MiB, off));
        ASSERT_OK(cta_dio_pwrite(&d, src + 9 * MiB + 5, n - 9 * MiB - 5, 9 * MiB + 5));
        ASSERT_OK(cta_dio_flush(&d));
        cta_dio_end(&d);
        memcpy(want, src, n);
        memset(want + 9 * MiB, 0, 5);
        ASSERT_TRUE(pread(fd, got, n, 0) == (ssize_t)n);
        ASSERT_MEM_EQ(got, want, n);
        cta_dio_free(&d);
        ASSERT_TRUE(!(fcntl(fd, F_GETFL) & O_DIRECT));
        close(fd);
        return 0;
}

/* Writes from lent memory: the same bytes as copies, whatever the alignment of memory and
 * offset; the memory is the caller's again (and may change) once it is no longer lent. */
TEST(dio__lent_writes_same_bytes)
{
        ASSERT_OK(setup());
        const size_t n = 13 * MiB + 3; /* the end of the last write below */
        void *m = NULL;
        ASSERT_INT_EQ(posix_memalign(&m, 4096, n + 8192), 0);
        uint8_t *src = m;
        _cleanup_free_ uint8_t *want = calloc(1, n), *got = malloc(n),
                              *keep = malloc(n + 8192 + 4); /* (whole words) */
        ASSERT_TRUE(want && got && keep);
        fill_rand(keep, n + 8192, 99u);
        int fd = openat(g_rootfd, "lend", O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        struct cta_dio d;
        cta_dio_init(&d);
        bool direct = cta_dio_begin(&d, fd);
        /* memory aligned like the offset (lent), 1 MiB records; unaligned offsets with
         * memory aligned like them (head and tail through the window); memory that is not
         * aligned like the offset (copied); a small one (copied) */
        static const struct { uint64_t off, len, mem; } w[] = {
                { 0, MiB, 0 },
                { MiB, MiB, MiB },
                { 2 * MiB, 300 << 10, 2 * MiB },
                { 2 * MiB + (300 << 10), MiB + 77, 2 * MiB + (300 << 10) },
                { 4 * MiB + 5, 2 * MiB, 4 * MiB + 5 },
                { 6 * MiB + 5, MiB, 6 * MiB + 9 },
                { 8 * MiB + 100, 1000, 8 * MiB + 100 },
                { 9 * MiB, 4 * MiB + 3, 9 * MiB },
        };
        for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
                memcpy(src + w[i].mem, keep + w[i].mem, w[i].len);
                int r = cta_dio_pwrite_lend(&d, src + w[i].mem, w[i].len, w[i].off, i);
                ASSERT_TRUE(r >= 0);
                if (r > 0)
                        ASSERT_TRUE(cta_dio_lent(&d));
                if (i == 1) /* gathered with the first (contiguous): lent from its tag */
                        ASSERT_INT_EQ(cta_dio_lent_from(&d), 0);
                memcpy(want + w[i].off, keep + w[i].mem, w[i].len);
                if (i % 2) { /* taken back now: the caller may scribble over it */
                        ASSERT_OK(cta_dio_unlend(&d));
                        ASSERT_TRUE(!cta_dio_lent(&d));
                        memset(src + w[i].mem, 0xee, w[i].len);
                }
        }
        ASSERT_OK(cta_dio_flush(&d));
        ASSERT_TRUE(!cta_dio_lent(&d));
        memset(src, 0xdd, n);
        cta_dio_end(&d);
        ASSERT_TRUE(pread(fd, got, n, 0) == (ssize_t)n);
        ASSERT_MEM_EQ(got, want, n);
        printf("# direct I/O %s: %llu bytes direct, %llu of them lent\n",
               direct ? "on" : "refused", (unsigned long long)d.direct_bytes,
               (unsigned long long)d.lent_bytes);
        if (direct)
                ASSERT_TRUE(d.lent_bytes >= 8 * MiB);
        cta_dio_free(&d);
        free(m);
        close(fd);
        return 0;
}

/* The definition of the block-list checksum, straight from the library. */
static XXH128_canonical_t block_list_sum(const uint8_t *c, size_t n)
{
        XXH3_state_t *st = XXH3_createState();
        XXH3_128bits_reset(st);
        for (size_t off = 0; off < n; off += MiB) {
                uint8_t h[8];
                cta_mig_put64(h, XXH3_64bits(c + off, n - off < MiB ? n - off : MiB));
                XXH3_128bits_update(st, h, 8);
        }
        XXH128_canonical_t w;
        XXH128_canonicalFromHash(&w, XXH3_128bits_digest(st));
        XXH3_freeState(st);
        return w;
}

/* The block-list checksum (stream version 3) is exactly its definition: XXH3-128 over the
 * big-endian XXH3-64 of every 1 MiB block of the logical content (holes as zeros), however
 * the content is fed, whole hole blocks included; and a sender told its receiver reads
 * only version 2 writes the older whole-content checksums, which that receiver checks. */
TEST(bsum__definition_and_version_2_peers)
{
        ASSERT_OK(setup());
        const size_t n = 9 * MiB + 4321;
        _cleanup_free_ uint8_t *c = calloc(1, n);
        ASSERT_NOT_NULL(c);
        fill_rand(c + MiB / 2, 2 * MiB, 5); /* data across blocks 0-2 */
        fill_rand(c + 6 * MiB + 7, 3 * MiB + 4000, 6); /* data to the ragged end */
        XXH128_canonical_t w = block_list_sum(c, n);
        struct cta_bsum b;
        ASSERT_OK(cta_bsum_init(&b));
        for (int round = 0; round < 3; round++) {
                cta_bsum_begin(&b, n);
                uint32_t seed = 11u + (uint32_t)round;
                size_t off = 0;
                while (off < n) {
                        seed = seed * 1103515245u + 12345u;
                        size_t k = 1 + (seed >> 8) % (round == 1 ? 3 * MiB : 300000);
                        if (k > n - off)
                                k = n - off;
                        bool zero = true;
                        for (size_t i = 0; i < k && zero; i++)
                                zero = !c[off + i];
                        cta_bsum_feed(&b, zero ? NULL : c + off, k, NULL); /* holes: NULL */
                        off += k;
                        if (round == 2 && off > 8 * MiB)
                                break; /* the rest as zeros by final */
                }
                if (round == 2)
                        memset(c + off, 0, n - off);
                uint8_t got[16];
                cta_bsum_final(&b, NULL, got);
                if (round == 2) { /* the tail cut off (last round): its own expected value */
                        XXH128_canonical_t tw = block_list_sum(c, n);
                        ASSERT_MEM_EQ(got, tw.digest, 16);
                } else {
                        ASSERT_MEM_EQ(got, w.digest, 16);
                }
        }
        cta_bsum_done(&b);

        /* to a version 2 receiver: the whole-content checksum, minimum version below 3 */
        ASSERT_OK(mkdirat(g_rootfd, "v2src", 0755));
        ASSERT_OK(mkdirat(g_rootfd, "v2dst", 0755));
        int src = openat(g_rootfd, "v2src", O_RDONLY | O_DIRECTORY);
        int dst = openat(g_rootfd, "v2dst", O_RDONLY | O_DIRECTORY);
        ASSERT_OK(build_big(src));
        struct send_job job;
        struct cta_mig_stats rst;
        for (int v = 2; v <= 3; v++) {
                /* the receiver's block maps, recorded by either path, hold the real hashes */
                char bm[300];
                snprintf(bm, sizeof(bm), "%s/bm-v%d", g_root, v);
                struct cta_mig_send_opts so = { .peer_version = (uint16_t)v };
                struct cta_mig_recv_opts ro = { .blockmap_dir = bm };
                const char *stage = v == 2 ? "s2" : "s3";
                ASSERT_INT_EQ(transfer(src, dst, stage, &so, &ro, &job, &rst), 0);
                ASSERT_INT_EQ(rst.blockmaps, 2);
                int sfd = openat(dst, stage, O_RDONLY | O_DIRECTORY);
                ASSERT_INT_EQ(compare(src, sfd, 0), 0);
                int hfd;
                struct cta_mig_stats hst;
                ASSERT_OK(have_bm_memfd(sfd, bm, &hfd, &hst));
                struct stat hs;
                ASSERT_OK(fstat(hfd, &hs));
                uint8_t *map = mmap(NULL, (size_t)hs.st_size, PROT_READ, MAP_SHARED, hfd, 0);
                ASSERT_TRUE(map != MAP_FAILED);
                for (uint64_t i = 0; i < 256; i += 17) { /* data blocks and hole blocks */
                        uint8_t *hp = have_hash_at(map, (size_t)hs.st_size, "img", i);
                        ASSERT_TRUE(hp != NULL);
                        ASSERT_TRUE(cta_mig_get64(hp) == block_hash_of(src, "img", i));
                }
                munmap(map, (size_t)hs.st_size);
                close(hfd);
                close(sfd);
        }
        uint8_t hdr[CTA_MIG_REC_HDR + CTA_MIG_HEADER_LEN];
        cta_mig_enc_header(hdr, 0, 1, 1);
        ASSERT_INT_EQ(cta_mig_get16(hdr + CTA_MIG_REC_HDR + 10), 1);
        cta_mig_enc_header(hdr, CTA_MIG_HF_BLOCKSUM, 1, 1);
        ASSERT_INT_EQ(cta_mig_get16(hdr + CTA_MIG_REC_HDR + 10), 3);
        close(src);
        close(dst);
        return 0;
}

/* Walks of one root fd in several threads at once (the sender's walk and its prefetcher
 * do that) each see every entry once, in order: a directory's read offset is shared by all
 * fds of one open file description, so each walk must have its own. */
struct walk_job {
        int fd;
        int bad;
};

static void *walk_many(void *arg)
{
        struct walk_job *j = arg;
        for (int round = 0; round < 20; round++) {
                struct cta_walk *w = NULL;
                struct cta_walk_item it;
                if (cta_walk_new(j->fd, 0, &w, NULL) < 0) {
                        j->bad++;
                        return NULL;
                }
                char prev[64] = "";
                int n = 0, r;
                while ((r = cta_walk_next(w, &it, NULL)) > 0) {
                        if (it.is_root)
                                continue;
                        if (n && strcmp(prev, it.path) >= 0)
                                j->bad++;
                        snprintf(prev, sizeof(prev), "%s", it.path);
                        n++;
                }
                if (r < 0 || n != 3000)
                        j->bad++;
                cta_walk_free(w);
        }
        return NULL;
}

TEST(walk__concurrent_walks_of_one_fd)
{
        ASSERT_OK(setup());
        ASSERT_OK(mkdirat(g_rootfd, "wsame", 0755));
        int dfd = openat(g_rootfd, "wsame", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(dfd >= 0);
        for (int i = 0; i < 3000; i++) {
                char n[64];
                snprintf(n, sizeof(n), "entry-with-a-longish-name-%05d", i);
                int fd = openat(dfd, n, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
                ASSERT_TRUE(fd >= 0);
                close(fd);
        }
        struct walk_job jobs[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
                jobs[i] = (struct walk_job){ .fd = dfd };
                ASSERT_INT_EQ(pthread_create(&th[i], NULL, walk_many, &jobs[i]), 0);
        }
        int bad = 0;
        for (int i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                bad += jobs[i].bad;
        }
        close(dfd);
        ASSERT_INT_EQ(bad, 0);
        return 0;
}

/* ------------------------------------------------------------------ zstd (zio.c) */

/* Lines of a log, size bytes: compressible like the text in a container (about 9:1 at
 * level 1). */
static int put_text(int dfd, const char *name, size_t size)
{
        static char buf[1 << 20];
        int fd = openat(dfd, name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
        CHK(fd);
        size_t done = 0, len = 0;
        for (unsigned i = 0; done < size; i++) {
                len += (size_t)snprintf(buf + len, sizeof(buf) - len,
                                        "2024-05-%02u %06u host ctagentd[%u]: migration %u: "
                                        "sent %u bytes to node-%u\n",
                                        i % 28 + 1, i, 1000 + i % 97, i / 1000,
                                        i * 4096u % 1000003u, i % 7);
                if (len > sizeof(buf) - 256 || done + len >= size) {
                        size_t n = done + len > size ? size - done : len;
                        CHK(write(fd, buf, n) == (ssize_t)n ? 0 : -1);
                        done += n;
                        len = 0;
                }
        }
        close(fd);
        return 0;
}

/* Small files, a symlink, text_size bytes of text and a 64 MiB sparse file. */
static int build_ztree(int dfd, size_t text_size)
{
        CHK(mkdirat(dfd, "etc", 0755));
        CHK(put_file(dfd, "etc/hostname", "zhost\n", 6, 0644));
        CHK(put_file(dfd, "etc/empty", "", 0, 0600));
        CHK(put_file(dfd, "etc/bin", "\0\1\2\3\xff", 5, 0755));
        CHK(symlinkat("etc/hostname", dfd, "hostname"));
        CHK(mkdirat(dfd, "var", 0750));
        CHK(put_text(dfd, "var/log", text_size));
        static uint8_t blk[65536];
        fill_rand(blk, sizeof(blk), 7u);
        int fd = openat(dfd, "var/sparse", O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0640);
        CHK(fd);
        CHK(pwrite(fd, blk, sizeof(blk), 0));
        CHK(pwrite(fd, blk, 4096, 20 * MiB));
        CHK(pwrite(fd, "E", 1, 64 * MiB - 1));
        close(fd);
        CHK(set_time(dfd, "var/log", 1700000000, 5));
        CHK(set_time(dfd, "var", 1700000001, 6));
        return 0;
}

/* A view() io like the daemon's stream queue: a ring of 64 KiB written by one thread and
 * read in place by the decompressor. The writer adds pieces of 40000 bytes (waiting for
 * the room), so that pieces keep straddling the ring end: views of wrapped bytes. */
#define TRING_CAP (64u << 10)
#define TRING_PIECE 40000u
struct tring {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        uint8_t buf[TRING_CAP];
        size_t head, len;
        bool closed, aborted;
        unsigned wrapped;   /* views whose bytes wrapped around the ring end */
        unsigned overdrawn; /* releases of more than was there */
};

static void tring_init(struct tring *r)
{
        memset(r, 0, sizeof(*r));
        pthread_mutex_init(&r->mu, NULL);
        pthread_cond_init(&r->cv, NULL);
}

static void tring_destroy(struct tring *r)
{
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
}

static ssize_t tring_write(void *ctx, const void *data, size_t len)
{
        struct tring *r = ctx;
        const uint8_t *p = data;
        pthread_mutex_lock(&r->mu);
        for (size_t left = len; left;) {
                size_t n = left < TRING_PIECE ? left : TRING_PIECE;
                while (TRING_CAP - r->len < n && !r->aborted)
                        pthread_cond_wait(&r->cv, &r->mu);
                if (r->aborted) {
                        pthread_mutex_unlock(&r->mu);
                        return -ECONNRESET;
                }
                size_t tail = (r->head + r->len) % TRING_CAP;
                size_t first = n < TRING_CAP - tail ? n : TRING_CAP - tail;
                memcpy(r->buf + tail, p, first);
                memcpy(r->buf, p + first, n - first);
                p += n;
                left -= n;
                r->len += n;
                pthread_cond_broadcast(&r->cv);
        }
        pthread_mutex_unlock(&r->mu);
        return (ssize_t)len;
}

static ssize_t tring_view(void *ctx, size_t want, const uint8_t **ring, size_t *cap,
                          size_t *head)
{
        struct tring *r = ctx;
        pthread_mutex_lock(&r->mu);
        while (r->len < want && !r->closed && !r->aborted)
                pthread_cond_wait(&r->cv, &r->mu);
        ssize_t n = r->len < want && r->aborted ? -CTA_E_CANCELLED : (ssize_t)r->len;
        if (r->head + r->len > TRING_CAP)
                r->wrapped++;
        *ring = r->buf;
        *cap = TRING_CAP;
        *head = r->head;
        pthread_mutex_unlock(&r->mu);
        return n;
}

static void tring_release(void *ctx, size_t n)
{
        struct tring *r = ctx;
        pthread_mutex_lock(&r->mu);
        if (n > r->len) {
                r->overdrawn++;
                n = r->len;
        }
        r->head = (r->head + n) % TRING_CAP;
        r->len -= n;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
}

static void tring_abort(void *ctx)
{
        struct tring *r = ctx;
        pthread_mutex_lock(&r->mu);
        r->aborted = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
}

/* The writer's end of stream. */
static void tring_close(void *ctx)
{
        struct tring *r = ctx;
        pthread_mutex_lock(&r->mu);
        r->closed = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
}

static struct cta_mig_io tring_io(struct tring *r)
{
        return (struct cta_mig_io){ .write = tring_write, .view = tring_view,
                                    .release = tring_release, .abort = tring_abort, .ctx = r };
}

static void fd_close(void *ctx)
{
        close((int)(intptr_t)ctx);
}

/* The sender of a compressed transfer (a thread): the tree at root through a compressor
 * at level over inner; fin(inner.ctx) at the end (the end of the stream). */
struct zsend {
        int root, level;
        struct cta_mig_io inner;
        void (*fin)(void *ctx);
        struct cta_mig_zio *z;
        struct cta_mig_stats st;
        int rc;
        char msg[256];
};

static void *zsend_main(void *arg)
{
        struct zsend *j = arg;
        struct cta_error *err = NULL;
        j->rc = cta_mig_zio_compress(&j->inner, j->level, &j->z, &err);
        if (j->rc == 0) {
                struct cta_mig_io io = cta_mig_zio_io(j->z);
                j->rc = cta_mig_send(j->root, &io, NULL, &j->st, &err);
        }
        snprintf(j->msg, sizeof(j->msg), "%s", j->rc < 0 ? cta_error_msg(err) : "");
        cta_error_free(err);
        j->fin(j->inner.ctx);
        return NULL;
}

/* The receiver: the stream from in through a decompressor into parent/name. Returns the
 * receiver's error code (0: received), its message in msg (if given); *ret_z the
 * decompressor (to free). */
static int zrecv(int parent, const char *name, const struct cta_mig_io *in,
                 struct cta_mig_zio **ret_z, struct cta_mig_stats *st, char *msg, size_t msglen)
{
        struct cta_error *err = NULL;
        struct cta_mig_zio *z = NULL;
        int r = cta_mig_zio_decompress(in, &z, &err);
        if (r == 0) {
                struct cta_mig_io io = cta_mig_zio_io(z);
                r = cta_mig_recv(parent, name, &io, NULL, st, &err);
        }
        int code = r < 0 ? cta_error_code(err) : 0;
        if (r < 0)
                printf("# recv: %s\n", cta_error_msg(err));
        if (msg)
                snprintf(msg, msglen, "%s", r < 0 ? cta_error_msg(err) : "");
        cta_error_free(err);
        *ret_z = z;
        return code;
}

/* A compressed transfer of src into dst/"stage" over a socketpair (view: the test ring):
 * 0, with both ends' counts checked. */
static int ztransfer(int src, int dst, int level, bool view, uint64_t *ret_plain,
                     uint64_t *ret_packed)
{
        static struct tring ring;
        int sv[2] = { -1, -1 };
        struct zsend s = { .root = src, .level = level };
        struct cta_mig_io in;
        if (view) {
                tring_init(&ring);
                s.inner = in = tring_io(&ring);
                s.fin = tring_close;
        } else {
                ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
                s.inner = cta_mig_fd_io(sv[1]);
                in = cta_mig_fd_io(sv[0]);
                s.fin = fd_close;
        }
        pthread_t th;
        ASSERT_INT_EQ(pthread_create(&th, NULL, zsend_main, &s), 0);
        struct cta_mig_zio *z = NULL;
        struct cta_mig_stats rst = { 0 };
        int code = zrecv(dst, "stage", &in, &z, &rst, NULL, 0);
        if (view)
                tring_abort(&ring); /* (a sender still writing would stop) */
        else
                close(sv[0]);
        pthread_join(th, NULL);
        if (s.rc < 0)
                printf("# send: %s\n", s.msg);
        uint64_t plain, packed, rplain, rpacked;
        cta_mig_zio_counts(s.z, &plain, &packed);
        cta_mig_zio_counts(z, &rplain, &rpacked);
        cta_mig_zio_free(s.z);
        cta_mig_zio_free(z);
        printf("# level %d%s: %llu stream bytes sent as %llu (%.1f%%); received %llu as %llu\n",
               level, view ? ", view io" : "", (unsigned long long)plain,
               (unsigned long long)packed, plain ? 100.0 * (double)packed / (double)plain : 0.0,
               (unsigned long long)rplain, (unsigned long long)rpacked);
        ASSERT_INT_EQ(s.rc, 0);
        ASSERT_INT_EQ(code, 0);
        /* the compressor saw the whole stream, the decompressor gave all of it back */
        ASSERT_INT_EQ(plain, s.st.wire_bytes);
        ASSERT_INT_EQ(rplain, plain);
        ASSERT_INT_EQ(rpacked, packed);
        ASSERT_INT_EQ(rst.wire_bytes, plain);
        if (view) {
                printf("# ring views that wrapped: %u\n", ring.wrapped);
                ASSERT_TRUE(ring.wrapped > 0);
                ASSERT_INT_EQ(ring.overdrawn, 0);
                ASSERT_INT_EQ(ring.len, 0); /* every byte given back */
                tring_destroy(&ring);
        }
        *ret_plain = plain;
        *ret_packed = packed;
        return 0;
}

static int zsrc_fd = -1; /* the tree of zio__tree_round_trip, for the view io too */

TEST(zio__tree_round_trip)
{
        ASSERT_OK(setup());
        int src, dst;
        ASSERT_OK(tree_pair("z", &src, &dst));
        ASSERT_OK(build_ztree(src, 16 * MiB + 12345));
        uint64_t plain, packed;
        ASSERT_OK(ztransfer(src, dst, 1, false, &plain, &packed));
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(stage >= 0);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        ASSERT_TRUE(plain > 16 * MiB);
        ASSERT_TRUE(packed < plain / 4);
        close(stage);
        close(dst);
        zsrc_fd = src;
        return 0;
}

TEST(zio__view_io_round_trip)
{
        ASSERT_OK(setup());
        ASSERT_TRUE(zsrc_fd >= 0); /* (zio__tree_round_trip made it) */
        ASSERT_OK(mkdirat(g_rootfd, "zvdst", 0755));
        int dst = openat(g_rootfd, "zvdst", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(dst >= 0);
        uint64_t plain, packed;
        ASSERT_OK(ztransfer(zsrc_fd, dst, 1, true, &plain, &packed));
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(stage >= 0);
        ASSERT_INT_EQ(compare(zsrc_fd, stage, 0), 0);
        ASSERT_TRUE(packed < plain / 4);
        close(stage);
        close(dst);
        close(zsrc_fd);
        zsrc_fd = -1;
        return 0;
}

/* A write() io collecting everything in memory. */
struct membuf {
        uint8_t *b;
        size_t len, cap;
};
static ssize_t mem_write(void *ctx, const void *data, size_t len)
{
        struct membuf *m = ctx;
        if (m->len + len > m->cap) {
                m->cap = (m->len + len) * 2;
                m->b = cta_xrealloc(m->b, m->cap);
        }
        memcpy(m->b + m->len, data, len);
        m->len += len;
        return (ssize_t)len;
}

/* The tree at src as a stream in memory: plain (level 0) or through a compressor. */
static uint8_t *stream_of(int src, int level, size_t *len)
{
        struct membuf m = { 0 };
        struct cta_mig_io io = { .write = mem_write, .ctx = &m };
        struct cta_mig_zio *z = NULL;
        struct cta_error *err = NULL;
        int r = 0;
        if (level > 0 && (r = cta_mig_zio_compress(&io, level, &z, &err)) == 0)
                io = cta_mig_zio_io(z);
        if (r == 0)
                r = cta_mig_send(src, &io, NULL, NULL, &err);
        if (r < 0) {
                printf("# send: %s\n", cta_error_msg(err));
                free(m.b);
                m.b = NULL;
        }
        cta_error_free(err);
        cta_mig_zio_free(z);
        *len = m.len;
        return m.b;
}

/* The window a zstd frame's header asks for (0: not a frame header). */
static unsigned long long frame_window(const uint8_t *b, size_t n)
{
        ZSTD_frameHeader fh;
        size_t r = ZSTD_getFrameHeader(&fh, b, n);
        return r == 0 && fh.frameType == ZSTD_frame ? fh.windowSize : 0;
}

/* A thread writing b[0, n) into the test ring, then its end. */
struct feed {
        struct tring *r;
        const uint8_t *b;
        size_t n;
};
static void *feed_main(void *arg)
{
        struct feed *f = arg;
        (void)tring_write(f->r, f->b, f->n);
        tring_close(f->r);
        return NULL;
}

/* The bytes b[0, n) received through a decompressor over a read() io (a memfd) or the
 * test ring (view, fed by a thread) into g_rootfd/"zbad": the receiver's error code
 * (0: it succeeded), its message in msg. */
static int zrecv_bytes(const uint8_t *b, size_t n, bool view, char *msg, size_t msglen)
{
        static struct tring ring;
        struct cta_mig_zio *z = NULL;
        int code;
        if (view) {
                tring_init(&ring);
                struct feed f = { &ring, b, n };
                pthread_t th;
                pthread_create(&th, NULL, feed_main, &f);
                struct cta_mig_io in = tring_io(&ring);
                code = zrecv(g_rootfd, "zbad", &in, &z, NULL, msg, msglen);
                tring_abort(&ring); /* the feeder may wait for room still */
                pthread_join(th, NULL);
                tring_destroy(&ring);
        } else {
                int fd = memfd_create("zbad", MFD_CLOEXEC);
                if (fd < 0 || write(fd, b, n) != (ssize_t)n || lseek(fd, 0, SEEK_SET) != 0)
                        return -1;
                struct cta_mig_io in = cta_mig_fd_io(fd);
                code = zrecv(g_rootfd, "zbad", &in, &z, NULL, msg, msglen);
                close(fd);
        }
        cta_mig_zio_free(z);
        return code;
}

/* Both ways, each must fail with want_code (and a message containing want_msg), leaving
 * nothing in the test root (no staging directory). */
static int zrecv_refused(const uint8_t *b, size_t n, int want_code, const char *want_msg)
{
        for (int view = 0; view < 2; view++) {
                int before = count_entries(g_rootfd, ".");
                char msg[512];
                int code = zrecv_bytes(b, n, view, msg, sizeof(msg));
                struct stat st;
                bool staged = fstatat(g_rootfd, "zbad", &st, AT_SYMLINK_NOFOLLOW) == 0;
                if (staged)
                        (void)cta_rm_rf_at(g_rootfd, "zbad");
                if (code != want_code || !strstr(msg, want_msg))
                        TAP_FAIL("%s io: code %d (want %d), \"%s\" (want \"%s\")",
                                 view ? "view" : "read", code, want_code, msg, want_msg);
                ASSERT_TRUE(!staged);
                ASSERT_INT_EQ(count_entries(g_rootfd, "."), before);
        }
        return 0;
}

/* The decompressor's read() on the bytes b[0, n) (from a memfd) until it fails or ends:
 * its last return value. */
static ssize_t zread_all(const uint8_t *b, size_t n)
{
        int fd = memfd_create("zr", MFD_CLOEXEC);
        if (fd < 0 || write(fd, b, n) != (ssize_t)n || lseek(fd, 0, SEEK_SET) != 0)
                return -1000;
        struct cta_mig_io in = cta_mig_fd_io(fd);
        struct cta_mig_zio *z = NULL;
        struct cta_error *err = NULL;
        if (cta_mig_zio_decompress(&in, &z, &err) < 0) {
                cta_error_free(err);
                close(fd);
                return -1000;
        }
        struct cta_mig_io io = cta_mig_zio_io(z);
        static uint8_t out[1 << 20];
        ssize_t r;
        while ((r = io.read(io.ctx, out, sizeof(out))) > 0)
                ;
        cta_mig_zio_free(z);
        close(fd);
        return r;
}

/* Decode b[0, n) with a plain decoder taking windows up to 2^wlog into out: the decoded
 * size, or -1. */
static ssize_t zdecode(const uint8_t *b, size_t n, int wlog, uint8_t *out, size_t cap)
{
        ZSTD_DCtx *d = ZSTD_createDCtx();
        ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, wlog);
        ZSTD_outBuffer ob = { out, cap, 0 };
        ZSTD_inBuffer ib = { b, n, 0 };
        while (ib.pos < ib.size && ob.pos < ob.size) {
                size_t r = ZSTD_decompressStream(d, &ob, &ib);
                if (ZSTD_isError(r)) {
                        ZSTD_freeDCtx(d);
                        return -1;
                }
        }
        ZSTD_freeDCtx(d);
        return (ssize_t)ob.pos;
}

/* Levels up to the maximum all ask for a window within what every decoder takes, and a
 * level 19 stream is received; levels outside 1-19 are refused. */
TEST(zio__levels)
{
        ASSERT_OK(setup());
        for (int level = 1; level <= CTA_MIG_ZSTD_LEVEL_MAX; level++) {
                struct membuf m = { 0 };
                struct cta_mig_io io = { .write = mem_write, .ctx = &m };
                struct cta_mig_zio *z = NULL;
                struct cta_error *err = NULL;
                ASSERT_OK(cta_mig_zio_compress(&io, level, &z, &err));
                struct cta_mig_io zw = cta_mig_zio_io(z);
                static uint8_t data[64 << 10];
                fill_rand(data, sizeof(data), (uint32_t)level);
                ASSERT_INT_EQ(zw.write(zw.ctx, data, sizeof(data)), sizeof(data));
                unsigned long long w = frame_window(m.b, m.len);
                if (w == 0 || w > 1ull << CTA_MIG_ZSTD_WINDOW_LOG)
                        TAP_FAIL("level %d asks for a window of %llu", level, w);
                cta_mig_zio_free(z);
                free(m.b);
        }
        static const int bad[] = { 0, -1, CTA_MIG_ZSTD_LEVEL_MAX + 1, 22, 1 << 30 };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++) {
                struct cta_mig_io io = cta_mig_fd_io(1);
                struct cta_mig_zio *z = NULL;
                struct cta_error *err = NULL;
                ASSERT_TRUE(cta_mig_zio_compress(&io, bad[i], &z, &err) < 0);
                ASSERT_INT_EQ(cta_error_code(err), CTA_E_INVALID);
                ASSERT_NULL(z);
                cta_error_free(err);
        }
        /* level 19, received from a read() io */
        int src, dst;
        ASSERT_OK(tree_pair("z19", &src, &dst));
        ASSERT_OK(build_ztree(src, 384 << 10));
        size_t len;
        _cleanup_free_ uint8_t *b = stream_of(src, 19, &len);
        ASSERT_NOT_NULL(b);
        ASSERT_TRUE(frame_window(b, len) == 1ull << CTA_MIG_ZSTD_WINDOW_LOG);
        int fd = memfd_create("z19", MFD_CLOEXEC);
        ASSERT_TRUE(fd >= 0 && write(fd, b, len) == (ssize_t)len && lseek(fd, 0, SEEK_SET) == 0);
        struct cta_mig_io in = cta_mig_fd_io(fd);
        struct cta_mig_zio *z = NULL;
        struct cta_mig_stats rst;
        ASSERT_INT_EQ(zrecv(dst, "stage", &in, &z, &rst, NULL, 0), 0);
        uint64_t plain, packed;
        cta_mig_zio_counts(z, &plain, &packed);
        ASSERT_INT_EQ(packed, len);
        ASSERT_INT_EQ(plain, rst.wire_bytes);
        cta_mig_zio_free(z);
        close(fd);
        int stage = openat(dst, "stage", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(stage >= 0);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        close(stage);
        close(src);
        close(dst);
        return 0;
}

/* The plain stream of a small tree with a 1.5 MiB text file (the hostile tests' payload,
 * which a decoder without our limits would take). */
static uint8_t *hostile_payload(size_t *len)
{
        static uint8_t *plain;
        static size_t plain_len;
        if (!plain) {
                if (mkdirat(g_rootfd, "zhsrc", 0755) < 0)
                        return NULL;
                int src = openat(g_rootfd, "zhsrc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (src < 0 || build_ztree(src, 3 * MiB / 2) < 0)
                        return NULL;
                plain = stream_of(src, 0, &plain_len);
                close(src);
        }
        *len = plain_len;
        return plain;
}

TEST(zio__garbage_refused)
{
        ASSERT_OK(setup());
        static uint8_t junk[256 << 10];
        fill_rand(junk, sizeof(junk), 4242u);
        ASSERT_INT_EQ(zread_all(junk, sizeof(junk)), -EBADMSG);
        ASSERT_OK(zrecv_refused(junk, sizeof(junk), CTA_E_MIG_STREAM, "corrupt"));
        /* a frame header, then garbage */
        static const uint8_t hdr[] = { 0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x48 };
        memcpy(junk, hdr, sizeof(hdr));
        ASSERT_INT_EQ(zread_all(junk, sizeof(junk)), -EBADMSG);
        ASSERT_OK(zrecv_refused(junk, sizeof(junk), CTA_E_MIG_STREAM, "corrupt"));
        /* a plain (uncompressed) stream */
        size_t plen;
        const uint8_t *plain = hostile_payload(&plen);
        ASSERT_NOT_NULL(plain);
        ASSERT_OK(zrecv_refused(plain, plen, CTA_E_MIG_STREAM, "corrupt"));
        return 0;
}

/* A valid frame of a valid stream whose header asks for a 2^27 window. */
TEST(zio__large_window_refused)
{
        ASSERT_OK(setup());
        size_t plen;
        const uint8_t *plain = hostile_payload(&plen);
        ASSERT_NOT_NULL(plain);
        ASSERT_TRUE(plen > MiB);
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ASSERT_NOT_NULL(c);
        ASSERT_TRUE(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3)));
        ASSERT_TRUE(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, 27)));
        size_t cap = ZSTD_compressBound(plen) + 4096;
        _cleanup_free_ uint8_t *b = malloc(cap), *out = malloc(plen + 1);
        ASSERT_TRUE(b && out);
        ZSTD_outBuffer ob = { b, cap, 0 };
        ZSTD_inBuffer ib = { plain, plen, 0 };
        /* flushed, not ended, as we send: the size stays unknown, the window as set */
        ASSERT_INT_EQ(ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_flush), 0);
        ZSTD_freeCCtx(c);
        ASSERT_TRUE(frame_window(b, ob.pos) == 1ull << 27);
        /* a decoder taking that window decodes it to the stream; ours refuses it */
        ASSERT_INT_EQ(zdecode(b, ob.pos, 27, out, plen + 1), plen);
        ASSERT_MEM_EQ(out, plain, plen);
        ASSERT_INT_EQ(zdecode(b, ob.pos, CTA_MIG_ZSTD_WINDOW_LOG, out, plen + 1), -1);
        ASSERT_INT_EQ(zread_all(b, ob.pos), -EBADMSG);
        ASSERT_OK(zrecv_refused(b, ob.pos, CTA_E_MIG_STREAM, "corrupt"));
        return 0;
}

/* A legacy (v0.7) zstd frame: libzstd's streaming decoder takes those too, and sizes its
 * buffers by their header (here a 2^27 window) whatever ZSTD_d_windowLogMax says. */
TEST(zio__legacy_frame_refused)
{
        ASSERT_OK(setup());
        size_t plen;
        const uint8_t *plain = hostile_payload(&plen);
        ASSERT_NOT_NULL(plain);
        size_t blocks = (plen + 65535) / 65536;
        _cleanup_free_ uint8_t *b = malloc(6 + blocks * 3 + plen + 3), *out = malloc(plen + 1);
        ASSERT_TRUE(b && out);
        static const uint8_t hdr[6] = { 0x27, 0xb5, 0x2f, 0xfd, 0x00, (27 - 10) << 3 };
        uint8_t *p = b;
        memcpy(p, hdr, sizeof(hdr));
        p += sizeof(hdr);
        for (size_t off = 0; off < plen; off += 65536) {
                size_t k = plen - off < 65536 ? plen - off : 65536;
                p[0] = (uint8_t)(1u << 6 | k >> 16); /* a raw block */
                p[1] = (uint8_t)(k >> 8);
                p[2] = (uint8_t)k;
                memcpy(p + 3, plain + off, k);
                p += 3 + k;
        }
        p[0] = 3u << 6; /* the end */
        p[1] = p[2] = 0;
        p += 3;
        size_t n = (size_t)(p - b);
        ssize_t plain_decoder = zdecode(b, n, CTA_MIG_ZSTD_WINDOW_LOG, out, plen + 1);
        printf("# this libzstd %s legacy frames beyond the window cap\n",
               plain_decoder >= 0 ? "decodes" : "refuses");
        if (plain_decoder >= 0) {
                ASSERT_INT_EQ(plain_decoder, plen);
                ASSERT_MEM_EQ(out, plain, plen);
        }
        ASSERT_INT_EQ(zread_all(b, n), -EBADMSG);
        ASSERT_OK(zrecv_refused(b, n, CTA_E_MIG_STREAM, "corrupt"));
        /* nor after a zstd frame that ended (an empty one) */
        _cleanup_free_ uint8_t *two = malloc(64 + n);
        ASSERT_NOT_NULL(two);
        size_t e = ZSTD_compress(two, 64, "", 0, 1);
        ASSERT_TRUE(!ZSTD_isError(e));
        memcpy(two + e, b, n);
        ASSERT_INT_EQ(zread_all(two, e + n), -EBADMSG);
        ASSERT_OK(zrecv_refused(two, e + n, CTA_E_MIG_STREAM, "corrupt"));
        /* while a stream in two frames of zstd's own, with checksums as its CLI writes
         * them, is received */
        ZSTD_CCtx *c = ZSTD_createCCtx();
        ASSERT_NOT_NULL(c);
        ASSERT_TRUE(!ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)));
        size_t half = plen / 2 + 333, cap = ZSTD_compressBound(plen) + 1024;
        _cleanup_free_ uint8_t *frames = malloc(cap);
        ASSERT_NOT_NULL(frames);
        size_t f1 = ZSTD_compress2(c, frames, cap, plain, half);
        ASSERT_TRUE(!ZSTD_isError(f1));
        size_t f2 = ZSTD_compress2(c, frames + f1, cap - f1, plain + half, plen - half);
        ASSERT_TRUE(!ZSTD_isError(f2));
        ZSTD_freeCCtx(c);
        for (int view = 0; view < 2; view++) {
                ASSERT_INT_EQ(zrecv_bytes(frames, f1 + f2, view, NULL, 0), 0);
                int src = openat(g_rootfd, "zhsrc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                int stage = openat(g_rootfd, "zbad", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                ASSERT_TRUE(src >= 0 && stage >= 0);
                ASSERT_INT_EQ(compare(src, stage, 0), 0);
                close(stage);
                close(src);
                ASSERT_OK(cta_rm_rf_at(g_rootfd, "zbad"));
        }
        return 0;
}

/* The decompressor's read() in small pieces, over a read() io (a memfd) and the test ring:
 * the decoder then often holds output it could not give yet, also once all the input is
 * consumed or ended; every byte of the stream still comes out, then the end. */
TEST(zio__small_reads)
{
        ASSERT_OK(setup());
        size_t plen, len;
        ASSERT_NOT_NULL(hostile_payload(&plen)); /* (it makes zhsrc) */
        int src = openat(g_rootfd, "zhsrc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(src >= 0);
        _cleanup_free_ uint8_t *b = stream_of(src, 1, &len), *out = malloc(plen + 65536),
                              *ref = malloc(plen + 65536);
        close(src);
        ASSERT_TRUE(b && out && ref);
        /* what libzstd decodes it to (not quite the payload: the atimes moved) */
        ssize_t want = zdecode(b, len, CTA_MIG_ZSTD_WINDOW_LOG, ref, plen + 65536);
        ASSERT_TRUE(want > (ssize_t)MiB);
        static const size_t sizes[] = { 1, 7, 100, 4096, 65539, 3 };
        for (int view = 0; view < 2; view++) {
                static struct tring ring;
                struct feed f = { &ring, b, len };
                pthread_t th;
                int fd = -1;
                struct cta_mig_io in;
                if (view) {
                        tring_init(&ring);
                        ASSERT_INT_EQ(pthread_create(&th, NULL, feed_main, &f), 0);
                        in = tring_io(&ring);
                } else {
                        fd = memfd_create("zsmall", MFD_CLOEXEC);
                        ASSERT_TRUE(fd >= 0 && write(fd, b, len) == (ssize_t)len &&
                                    lseek(fd, 0, SEEK_SET) == 0);
                        in = cta_mig_fd_io(fd);
                }
                struct cta_mig_zio *z = NULL;
                struct cta_error *err = NULL;
                ASSERT_OK(cta_mig_zio_decompress(&in, &z, &err));
                struct cta_mig_io io = cta_mig_zio_io(z);
                size_t got = 0;
                ssize_t r = -1;
                for (unsigned i = 0; got + sizes[i % 6] <= plen + 65536; i++) {
                        if ((r = io.read(io.ctx, out + got, sizes[i % 6])) <= 0)
                                break;
                        ASSERT_TRUE((size_t)r <= sizes[i % 6]);
                        got += (size_t)r;
                }
                uint64_t zplain, zpacked;
                cta_mig_zio_counts(z, &zplain, &zpacked);
                cta_mig_zio_free(z);
                if (view) {
                        tring_abort(&ring);
                        pthread_join(th, NULL);
                        tring_destroy(&ring);
                } else {
                        close(fd);
                }
                ASSERT_INT_EQ(r, 0);
                ASSERT_INT_EQ(got, want);
                ASSERT_MEM_EQ(out, ref, want);
                ASSERT_INT_EQ(zplain, want);
                ASSERT_INT_EQ(zpacked, len);
        }
        return 0;
}

/* Offset of the middle of the largest compressed block of a zstd frame that is made of
 * whole blocks (0: none). */
static size_t mid_block(const uint8_t *b, size_t n)
{
        size_t p = ZSTD_frameHeaderSize(b, n), best = 0, best_size = 0;
        if (ZSTD_isError(p))
                return 0;
        while (p + 3 <= n) {
                uint32_t h = b[p] | (uint32_t)b[p + 1] << 8 | (uint32_t)b[p + 2] << 16;
                uint32_t type = h >> 1 & 3, size = h >> 3;
                if (type == 2 && size > best_size) {
                        best = p + 3 + size / 2;
                        best_size = size;
                }
                p += 3 + (type == 1 ? 1 : size);
                if (h & 1)
                        break;
        }
        printf("# largest compressed block: %zu bytes\n", best_size);
        return p == n && best_size >= 16 ? best : 0;
}

TEST(zio__truncated_in_block)
{
        ASSERT_OK(setup());
        size_t plen;
        ASSERT_NOT_NULL(hostile_payload(&plen)); /* (it makes zhsrc) */
        int src = openat(g_rootfd, "zhsrc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(src >= 0);
        size_t len;
        _cleanup_free_ uint8_t *b = stream_of(src, 1, &len);
        ASSERT_NOT_NULL(b);
        size_t cut = mid_block(b, len);
        ASSERT_TRUE(cut > 0);
        /* whole, the stream is received; cut in the middle of a block, it is truncated */
        ASSERT_INT_EQ(zrecv_bytes(b, len, false, NULL, 0), 0);
        int stage = openat(g_rootfd, "zbad", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(stage >= 0);
        ASSERT_INT_EQ(compare(src, stage, 0), 0);
        close(stage);
        ASSERT_OK(cta_rm_rf_at(g_rootfd, "zbad"));
        ASSERT_INT_EQ(zread_all(b, cut), 0);
        ASSERT_OK(zrecv_refused(b, cut, CTA_E_MIG_STREAM, "truncated"));
        close(src);
        return 0;
}

TEST(zz_cleanup)
{
        if (g_rootfd >= 0)
                close(g_rootfd);
        return cta_rm_rf_at(AT_FDCWD, g_root) < 0 ? -1 : 0;
}

/* The AVX2 update loop (when this CPU has it) gives exactly the library's results, for
 * every length around its stripe and block boundaries and any split of the input. */
TEST(hash__fast_update_matches_library)
{
        static uint8_t data[3 * 1024 * 1024 + 77];
        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t)(i * 2654435761u >> 13);
        static const size_t lens[] = { 0, 1, 15, 16, 63, 64, 65, 239, 240, 241, 255, 256, 1023,
                                       1024, 1025, 4096, 65536, 65537, 1u << 20,
                                       sizeof(data) };
        static const size_t splits[] = { 1, 7, 64, 1000, 65536, 1u << 20 };
        XXH3_state_t *a = XXH3_createState(), *b = XXH3_createState();
        ASSERT_TRUE(a && b);
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
                size_t n = lens[i];
                XXH128_hash_t want128 = XXH3_128bits(data, n);
                XXH64_hash_t want64 = XXH3_64bits(data, n);
                for (size_t j = 0; j < sizeof(splits) / sizeof(splits[0]); j++) {
                        XXH3_128bits_reset(a);
                        XXH3_64bits_reset(b);
                        for (size_t off = 0; off < n; off += splits[j]) {
                                size_t k = n - off < splits[j] ? n - off : splits[j];
                                cta_xxh3_128_update(a, data + off, k);
                                cta_xxh3_64_update(b, data + off, k);
                        }
                        XXH128_hash_t got128 = XXH3_128bits_digest(a);
                        if (!XXH128_isEqual(got128, want128) || XXH3_64bits_digest(b) != want64)
                                TAP_FAIL("%s: length %zu in pieces of %zu differs",
                                         cta_xxh3_impl(), n, splits[j]);
                }
        }
        XXH3_freeState(a);
        XXH3_freeState(b);
        printf("# XXH3 update loop: %s\n", cta_xxh3_impl());
        return 0;
}

int main(void)
{
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root (owners, device nodes, trusted xattrs)\n");
                return 0;
        }
        return tap_run(TESTS(T(wire__paths), T(wire__paths_match_the_byte_loop),
                             T(scan__changed_since_mark), T(roundtrip__rich_tree),
                             T(incremental__one_percent),
                             T(incremental__changed_since_precopy),
                             T(incremental__mapped_write_after_first_pass),
                             T(pass_mark__clock_or_all_changed), T(have__touched_since),
                             T(incremental__quiet_entries_not_sent),
                             T(own_cwd__xattrs_by_name),
                             T(retry__kept_staging_resumes), T(cancel__removes_staging),
                             T(concurrent__two_transfers), T(delta__block_changes_only), T(delta__in_place),
                             T(hash__fast_update_matches_library), T(dio__cached_sample), T(dio__same_bytes_as_buffered), T(dio__lent_writes_same_bytes),
                             T(recv__counts_small_files_left_in_the_page_cache),
                             T(bsum__definition_and_version_2_peers),
                             T(walk__concurrent_walks_of_one_fd),
                             T(zio__tree_round_trip), T(zio__view_io_round_trip), T(zio__levels),
                             T(zio__garbage_refused), T(zio__large_window_refused),
                             T(zio__legacy_frame_refused), T(zio__small_reads),
                             T(zio__truncated_in_block),
                             T(zz_cleanup)));
}
