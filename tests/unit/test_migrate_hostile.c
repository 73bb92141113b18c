/*
 * A hostile source: streams crafted by hand must each be refused with the right code,
 * create nothing outside the staging directory (a sentinel directory beside it and an
 * "outside" directory above it are checked), and leave no staging directory behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "migrate/internal.h"
#include "migrate/stream.h"
#include "migrate/wire.h"
#include "tap.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

static char g_root[256];   /* T */
static int g_parent = -1;  /* T/parent: the receiver's parent; holds sentinel/ */
static char g_outside[300]; /* T/outside: escapes would land here */

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

static int setup(void)
{
        if (g_parent >= 0)
                return 0;
        signal(SIGPIPE, SIG_IGN);
        snprintf(g_root, sizeof(g_root), "/tmp/cta-mig-hostile.XXXXXX");
        if (!mkdtemp(g_root))
                return -1;
        char p[300];
        snprintf(p, sizeof(p), "%s/parent", g_root);
        mkdir(p, 0755);
        snprintf(p, sizeof(p), "%s/parent/sentinel", g_root);
        mkdir(p, 0755);
        snprintf(p, sizeof(p), "%s/parent/sentinel/keep", g_root);
        close(open(p, O_CREAT | O_WRONLY, 0644));
        snprintf(g_outside, sizeof(g_outside), "%s/outside", g_root);
        mkdir(g_outside, 0755);
        snprintf(p, sizeof(p), "%s/parent", g_root);
        g_parent = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return g_parent >= 0 ? 0 : -1;
}

/* Nothing outside staging, and staging itself gone (unless kept). */
static int check_clean(bool staging_kept)
{
        int root = open(g_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int n_root = count_entries(root, "."), n_out = count_entries(root, "outside");
        int n_par = count_entries(g_parent, "."), n_sen = count_entries(g_parent, "sentinel");
        close(root);
        if (n_root != 2 || n_out != 0 || n_sen != 1 || n_par != (staging_kept ? 2 : 1)) {
                printf("# not clean: root %d outside %d parent %d sentinel %d\n", n_root, n_out,
                       n_par, n_sen);
                return -1;
        }
        return 0;
}

struct feed {
        int fd;
        const uint8_t *p;
        size_t n;
};

static void *feeder(void *arg)
{
        struct feed *f = arg;
        size_t done = 0;
        while (done < f->n) {
                ssize_t w = send(f->fd, f->p + done, f->n - done, MSG_NOSIGNAL);
                if (w <= 0)
                        break;
                done += (size_t)w;
        }
        close(f->fd);
        return NULL;
}

/* Feed bytes to cta_mig_recv(parent, "stage"); returns its code (0 or a positive code). */
static int recv_bytes(const void *p, size_t n, const struct cta_mig_recv_opts *o,
                      struct cta_mig_stats *st)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -1;
        struct feed f = { .fd = sv[1], .p = p, .n = n };
        pthread_t th;
        pthread_create(&th, NULL, feeder, &f);
        struct cta_mig_io io = cta_mig_fd_io(sv[0]);
        struct cta_error *err = NULL;
        int r = cta_mig_recv(g_parent, "stage", &io, o, st, &err);
        close(sv[0]);
        pthread_join(th, NULL);
        if (r < 0 && getenv("MIG_DEBUG"))
                printf("# recv: %s\n", cta_error_msg(err));
        int code = r < 0 ? cta_error_code(err) : 0;
        if (r < 0 && code != -r)
                code = -1000;
        cta_error_free(err);
        return code;
}

/* A stream builder. */
struct sb {
        struct cta_buf b;
        uint64_t id, entries, bytes, deletes;
};

static void sb_init(struct sb *s, uint32_t flags)
{
        *s = (struct sb){ .b = CTA_BUF_INIT(0) };
        cta_mig_buf_header(&s->b, flags, 0, 0);
        struct cta_mig_entry root = { .id = 0, .kind = CTA_MIG_K_DIR, .flags = CTA_MIG_EF_ROOT,
                                      .mode = 0755 };
        cta_mig_buf_entry(&s->b, &root);
        s->id = 1;
        s->entries = 1;
}

static void sb_ent(struct sb *s, uint8_t kind, const char *path, const char *target)
{
        struct cta_mig_entry e = { .id = s->id++, .kind = kind, .mode = 0644, .path = path,
                                   .path_len = (uint16_t)strlen(path), .target = target,
                                   .target_len = target ? (uint16_t)strlen(target) : 0 };
        cta_mig_buf_entry(&s->b, &e);
        s->entries++;
}

/* A complete, correct regular file with content c. */
static void sb_file(struct sb *s, const char *path, const char *c, uint8_t flags)
{
        size_t n = strlen(c);
        struct cta_mig_entry e = { .id = s->id++, .kind = CTA_MIG_K_REG, .flags = flags,
                                   .mode = 0644, .path = path,
                                   .path_len = (uint16_t)strlen(path), .size = n };
        cta_mig_buf_entry(&s->b, &e);
        s->entries++;
        if (n)
                cta_mig_buf_data(&s->b, 0, c, (uint32_t)n);
        struct cta_mig_extent x = { 0, c, n };
        uint8_t sum[16];
        cta_mig_checksum(&x, 1, n, sum);
        cta_mig_buf_file_end(&s->b, n, sum);
        s->bytes += n;
}

static void sb_end(struct sb *s)
{
        cta_mig_buf_trailer(&s->b, s->entries, s->bytes, s->deletes);
}

static int expect(struct sb *s, const struct cta_mig_recv_opts *o, int code)
{
        int got = recv_bytes(s->b.data, s->b.len, o, NULL);
        cta_buf_done(&s->b);
        if (got != code) {
                printf("# expected code %d, got %d\n", code, got);
                return -1;
        }
        return check_clean(false);
}

/* A stream that must be taken whole: one regular file at path with content c, nothing
 * beside the staging area; which is removed afterwards. */
static int expect_one_file(struct sb *s, const char *path, const char *c)
{
        struct cta_mig_stats st = { 0 };
        int r = recv_bytes(s->b.data, s->b.len, NULL, &st);
        cta_buf_done(&s->b);
        ASSERT_INT_EQ(r, 0);
        ASSERT_INT_EQ(st.files, 1);
        ASSERT_INT_EQ(check_clean(true), 0);
        char buf[64] = { 0 }, at[PATH_MAX];
        snprintf(at, sizeof(at), "stage/%s", path);
        int fd = openat(g_parent, at, O_RDONLY);
        ASSERT_TRUE(fd >= 0);
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        ASSERT_INT_EQ(n, (ssize_t)strlen(c));
        ASSERT_STR_EQ(buf, c);
        ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));
        return 0;
}

TEST(hostile__valid_control)
{
        ASSERT_OK(setup());
        struct sb s;
        sb_init(&s, 0);
        sb_ent(&s, CTA_MIG_K_DIR, "a", NULL);
        sb_file(&s, "a/f", "hello", 0);
        sb_ent(&s, CTA_MIG_K_LNK, "a/l", "../../../etc/passwd");
        sb_end(&s);
        ASSERT_OK(expect_one_file(&s, "a/f", "hello"));
        return 0;
}

TEST(hostile__bad_paths)
{
        ASSERT_OK(setup());
        static const char *bad[] = { "../x", "/abs", "a/../../x", "a/../b", "./x", "a//b",
                                     "a/", "a/.", "..", "x\0y" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++) {
                struct sb s;
                sb_init(&s, 0);
                sb_ent(&s, CTA_MIG_K_DIR, "a", NULL);
                if (i == CTA_ARRAY_SIZE(bad) - 1) { /* embedded NUL */
                        struct cta_mig_entry e = { .id = s.id++, .kind = CTA_MIG_K_DIR,
                                                   .path = "b\0c", .path_len = 3 };
                        cta_mig_buf_entry(&s.b, &e);
                } else {
                        sb_file(&s, bad[i], "x", 0);
                }
                sb_end(&s);
                if (expect(&s, NULL, CTA_E_MIG_PATH) < 0)
                        TAP_FAIL("path #%zu", i);
        }
        /* empty path on a non-root entry, a name over NAME_MAX, a path over the limit */
        struct sb s;
        sb_init(&s, 0);
        sb_ent(&s, CTA_MIG_K_DIR, "", NULL);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_PATH));
        char longname[300];
        memset(longname, 'n', 256);
        longname[256] = 0;
        sb_init(&s, 0);
        sb_file(&s, longname, "x", 0);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_PATH));
        struct cta_mig_recv_opts o = { .limits.max_path = 10 };
        sb_init(&s, 0);
        sb_file(&s, "abcdefghijk", "x", 0);
        sb_end(&s);
        ASSERT_OK(expect(&s, &o, CTA_E_MIG_PATH));
        return 0;
}

TEST(hostile__through_symlinks)
{
        ASSERT_OK(setup());
        /* an absolute symlink to outside, then a file and a directory through it */
        static const uint8_t kinds[] = { CTA_MIG_K_REG, CTA_MIG_K_DIR, CTA_MIG_K_FIFO,
                                         CTA_MIG_K_LNK };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(kinds); i++) {
                struct sb s;
                sb_init(&s, 0);
                sb_ent(&s, CTA_MIG_K_LNK, "l", g_outside);
                if (kinds[i] == CTA_MIG_K_REG)
                        sb_file(&s, "l/f", "pwned", 0);
                else
                        sb_ent(&s, kinds[i], "l/x", kinds[i] == CTA_MIG_K_LNK ? "t" : NULL);
                sb_end(&s);
                if (expect(&s, NULL, CTA_E_MIG_PATH) < 0)
                        TAP_FAIL("kind %u", kinds[i]);
        }
        /* a relative symlink to a directory inside staging: still never followed */
        struct sb s;
        sb_init(&s, 0);
        sb_ent(&s, CTA_MIG_K_DIR, "d", NULL);
        sb_ent(&s, CTA_MIG_K_LNK, "l", "d");
        sb_file(&s, "l/f", "x", 0);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_PATH));
        /* a symlink to the parent of staging */
        sb_init(&s, 0);
        sb_ent(&s, CTA_MIG_K_LNK, "up", "..");
        sb_file(&s, "up/sentinel/evil", "x", 0);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_PATH));
        /* a regular file used as a directory */
        sb_init(&s, 0);
        sb_file(&s, "f", "x", 0);
        sb_file(&s, "f/g", "y", 0);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_PATH));
        return 0;
}

TEST(hostile__hard_links)
{
        ASSERT_OK(setup());
        struct sb s;
        /* to an id never sent */
        sb_init(&s, 0);
        struct cta_mig_entry e = { .kind = CTA_MIG_K_HARDLINK, .path = "h", .path_len = 1 };
        e.id = s.id++;
        e.link_id = 0; /* the root directory */
        cta_mig_buf_entry(&s.b, &e);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* to an id in the future */
        sb_init(&s, 0);
        e.id = s.id++;
        e.link_id = 7;
        cta_mig_buf_entry(&s.b, &e);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* to a file that was not marked linkable */
        sb_init(&s, 0);
        sb_file(&s, "f", "data", 0);
        e.id = s.id++;
        e.link_id = 1;
        cta_mig_buf_entry(&s.b, &e);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* to a directory */
        sb_init(&s, 0);
        sb_ent(&s, CTA_MIG_K_DIR, "d", NULL);
        e.id = s.id++;
        e.link_id = 1;
        cta_mig_buf_entry(&s.b, &e);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* a valid link works */
        sb_init(&s, 0);
        sb_file(&s, "f", "data", CTA_MIG_EF_LINKABLE);
        e.id = s.id++;
        e.link_id = 1;
        cta_mig_buf_entry(&s.b, &e);
        s.entries++;
        sb_end(&s);
        ASSERT_INT_EQ(recv_bytes(s.b.data, s.b.len, NULL, NULL), 0);
        cta_buf_done(&s.b);
        struct stat a, b;
        ASSERT_OK(fstatat(g_parent, "stage/f", &a, 0));
        ASSERT_OK(fstatat(g_parent, "stage/h", &b, 0));
        ASSERT_INT_EQ(a.st_ino, b.st_ino);
        ASSERT_INT_EQ(a.st_nlink, 2);
        ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));
        return 0;
}

TEST(hostile__lying_data)
{
        ASSERT_OK(setup());
        struct sb s;
        uint8_t sum[16];
        struct cta_mig_entry e = { .kind = CTA_MIG_K_REG, .mode = 0644, .path = "f",
                                   .path_len = 1, .size = 10 };
        /* wrong checksum */
        sb_init(&s, 0);
        e.id = s.id++;
        cta_mig_buf_entry(&s.b, &e);
        cta_mig_buf_data(&s.b, 0, "0123456789", 10);
        memset(sum, 0x5a, sizeof(sum));
        cta_mig_buf_file_end(&s.b, 10, sum);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_CHECKSUM));
        /* more data than declared */
        sb_init(&s, 0);
        e.id = s.id++;
        cta_mig_buf_entry(&s.b, &e);
        cta_mig_buf_data(&s.b, 0, "0123456789AB", 12);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* an extent past the end */
        sb_init(&s, 0);
        e.id = s.id++;
        cta_mig_buf_entry(&s.b, &e);
        cta_mig_buf_data(&s.b, UINT64_MAX - 2, "012", 3);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* less data than the end record says */
        sb_init(&s, 0);
        e.id = s.id++;
        cta_mig_buf_entry(&s.b, &e);
        cta_mig_buf_data(&s.b, 0, "01234", 5);
        struct cta_mig_extent x = { 0, "01234", 5 };
        cta_mig_checksum(&x, 1, 10, sum);
        cta_mig_buf_file_end(&s.b, 10, sum);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* overlapping and out-of-order extents */
        sb_init(&s, 0);
        e.id = s.id++;
        cta_mig_buf_entry(&s.b, &e);
        cta_mig_buf_data(&s.b, 0, "01234", 5);
        cta_mig_buf_data(&s.b, 3, "34567", 5);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        sb_init(&s, 0);
        e.id = s.id++;
        cta_mig_buf_entry(&s.b, &e);
        cta_mig_buf_data(&s.b, 5, "56789", 5);
        cta_mig_buf_data(&s.b, 0, "01234", 5);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* a new entry in the middle of a file */
        sb_init(&s, 0);
        e.id = s.id++;
        cta_mig_buf_entry(&s.b, &e);
        sb_ent(&s, CTA_MIG_K_DIR, "g", NULL);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* trailer counts that do not match */
        sb_init(&s, 0);
        sb_file(&s, "f", "abc", 0);
        s.bytes++;
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        return 0;
}

TEST(hostile__bad_checksum_keep_leaves_no_file)
{
        ASSERT_OK(setup());
        struct sb s;
        sb_init(&s, 0);
        sb_file(&s, "good", "fine", 0);
        struct cta_mig_entry e = { .id = s.id++, .kind = CTA_MIG_K_REG, .mode = 0644,
                                   .path = "zbad", .path_len = 4, .size = 4 };
        cta_mig_buf_entry(&s.b, &e);
        cta_mig_buf_data(&s.b, 0, "evil", 4);
        uint8_t sum[16] = { 1 };
        cta_mig_buf_file_end(&s.b, 4, sum);
        sb_end(&s);
        struct cta_mig_recv_opts o = { .keep_on_failure = true };
        ASSERT_INT_EQ(recv_bytes(s.b.data, s.b.len, &o, NULL), CTA_E_MIG_CHECKSUM);
        cta_buf_done(&s.b);
        ASSERT_OK(check_clean(true));
        /* the verified file is there, the bad one and its temporary file are not */
        ASSERT_INT_EQ(count_entries(g_parent, "stage"), 1);
        struct stat st;
        ASSERT_OK(fstatat(g_parent, "stage/good", &st, 0));
        ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));
        return 0;
}

TEST(hostile__limits)
{
        ASSERT_OK(setup());
        struct sb s;
        struct cta_mig_recv_opts o = { 0 };
        /* declared totals over the limits */
        o.limits.max_entries = 4;
        s = (struct sb){ .b = CTA_BUF_INIT(0) };
        cta_mig_buf_header(&s.b, 0, 1000, 0);
        ASSERT_OK(expect(&s, &o, CTA_E_TOO_LARGE));
        /* more entries than allowed (declared 0) */
        sb_init(&s, 0);
        for (int i = 0; i < 6; i++) {
                char p[8];
                snprintf(p, sizeof(p), "d%d", i);
                sb_ent(&s, CTA_MIG_K_DIR, p, NULL);
        }
        sb_end(&s);
        ASSERT_OK(expect(&s, &o, CTA_E_TOO_LARGE));
        o.limits.max_entries = 0;
        /* a file over the size limit */
        o.limits.max_file_size = 100;
        struct cta_mig_entry e = { .kind = CTA_MIG_K_REG, .mode = 0644, .path = "f",
                                   .path_len = 1, .size = 101 };
        sb_init(&s, 0);
        e.id = s.id++;
        cta_mig_buf_entry(&s.b, &e);
        sb_end(&s);
        ASSERT_OK(expect(&s, &o, CTA_E_TOO_LARGE));
        o.limits.max_file_size = 0;
        /* total data over the limit */
        o.limits.max_total_bytes = 10;
        sb_init(&s, 0);
        sb_file(&s, "a", "0123456", 0);
        sb_file(&s, "b", "0123456", 0);
        sb_end(&s);
        ASSERT_OK(expect(&s, &o, CTA_E_TOO_LARGE));
        o.limits.max_total_bytes = 0;
        /* too many xattrs, an xattr value too large */
        struct cta_mig_xattr xv[3] = {
                { "user.a", 6, "1", 1 }, { "user.b", 6, "2", 1 }, { "user.c", 6, "3", 1 }
        };
        o.limits.max_xattrs = 2;
        sb_init(&s, 0);
        struct cta_mig_entry d = { .id = s.id++, .kind = CTA_MIG_K_DIR, .mode = 0755,
                                   .path = "d", .path_len = 1, .nxattr = 3, .xv = xv };
        cta_mig_buf_entry(&s.b, &d);
        sb_end(&s);
        ASSERT_OK(expect(&s, &o, CTA_E_TOO_LARGE));
        o.limits.max_xattrs = 0;
        static char big[70000];
        struct cta_mig_xattr xb = { "user.big", 8, big, sizeof(big) };
        sb_init(&s, 0);
        d = (struct cta_mig_entry){ .id = s.id++, .kind = CTA_MIG_K_DIR, .mode = 0755,
                                    .path = "d", .path_len = 1, .nxattr = 1, .xv = &xb };
        cta_mig_buf_entry(&s.b, &d);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_TOO_LARGE));
        /* a record over the record limit (and a huge length that is never sent) */
        o.limits.max_record = 4096;
        sb_init(&s, 0);
        static char chunk[8192];
        cta_mig_buf_raw(&s.b, CTA_MIG_R_DATA, chunk, sizeof(chunk));
        ASSERT_OK(expect(&s, &o, CTA_E_TOO_LARGE));
        sb_init(&s, 0);
        uint8_t hdr[8];
        cta_mig_put_rec(hdr, CTA_MIG_R_ENTRY, 0xfffffff0u);
        cta_buf_append(&s.b, hdr, sizeof(hdr));
        ASSERT_OK(expect(&s, NULL, CTA_E_TOO_LARGE));
        return 0;
}

TEST(hostile__malformed)
{
        ASSERT_OK(setup());
        struct sb s;
        /* not a stream at all */
        s = (struct sb){ .b = CTA_BUF_INIT(0) };
        cta_buf_puts(&s.b, "GET / HTTP/1.1\r\n\r\n");
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* a future version only */
        s = (struct sb){ .b = CTA_BUF_INIT(0) };
        cta_mig_buf_header(&s.b, 0, 0, 0);
        cta_mig_put16((uint8_t *)s.b.data + CTA_MIG_REC_HDR + 8, CTA_MIG_STREAM_VERSION + 2);
        cta_mig_put16((uint8_t *)s.b.data + CTA_MIG_REC_HDR + 10, CTA_MIG_STREAM_VERSION + 1);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_VERSION));
        /* block-list checksums claimed in a stream older readers may take */
        sb_init(&s, CTA_MIG_HF_BLOCKSUM);
        sb_end(&s);
        cta_mig_put16((uint8_t *)s.b.data + CTA_MIG_REC_HDR + 10, 2);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM)); /* (valid but for the minimum) */
        /* unknown header flags, record flags, record types */
        s = (struct sb){ .b = CTA_BUF_INIT(0) };
        cta_mig_buf_header(&s.b, 0x80, 0, 0);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        sb_init(&s, 0);
        s.b.data[1] = 1;
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        sb_init(&s, 0);
        cta_mig_buf_raw(&s.b, 99, "x", 1);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* no root entry first */
        s = (struct sb){ .b = CTA_BUF_INIT(0) };
        cta_mig_buf_header(&s.b, 0, 0, 0);
        struct cta_mig_entry e = { .id = 0, .kind = CTA_MIG_K_DIR, .path = "a", .path_len = 1 };
        cta_mig_buf_entry(&s.b, &e);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* ids out of sequence, duplicate and unordered paths */
        sb_init(&s, 0);
        e = (struct cta_mig_entry){ .id = 5, .kind = CTA_MIG_K_DIR, .path = "a", .path_len = 1 };
        cta_mig_buf_entry(&s.b, &e);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        sb_init(&s, 0);
        sb_ent(&s, CTA_MIG_K_DIR, "a", NULL);
        sb_ent(&s, CTA_MIG_K_DIR, "a", NULL);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        sb_init(&s, 0);
        sb_file(&s, "b", "x", 0);
        sb_file(&s, "a", "x", 0);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* a child before its parent directory exists */
        sb_init(&s, 0);
        sb_file(&s, "nodir/f", "x", 0);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* bad xattr names */
        static const char *names[] = { "foo.bar", "system.evil", "user." };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(names); i++) {
                struct cta_mig_xattr x = { names[i], (uint8_t)strlen(names[i]), "v", 1 };
                sb_init(&s, 0);
                e = (struct cta_mig_entry){ .id = s.id++, .kind = CTA_MIG_K_DIR, .mode = 0755,
                                            .path = "d", .path_len = 1, .nxattr = 1, .xv = &x };
                cta_mig_buf_entry(&s.b, &e);
                sb_end(&s);
                ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        }
        /* bad mode bits, unknown kind, unknown entry flags, unchanged in a full stream */
        static const struct cta_mig_entry bad[] = {
                { .kind = CTA_MIG_K_DIR, .mode = 0170755 },
                { .kind = 42 },
                { .kind = CTA_MIG_K_DIR, .flags = 0x80 },
                { .kind = CTA_MIG_K_REG, .flags = CTA_MIG_EF_UNCHANGED },
                { .kind = CTA_MIG_K_LNK },
                { .kind = CTA_MIG_K_DIR, .mtime_nsec = 1000000000 },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++) {
                sb_init(&s, 0);
                e = bad[i];
                e.id = s.id++;
                e.path = "x";
                e.path_len = 1;
                cta_mig_buf_entry(&s.b, &e);
                sb_end(&s);
                if (expect(&s, NULL, CTA_E_MIG_STREAM) < 0)
                        TAP_FAIL("bad entry #%zu", i);
        }
        /* a delete record in a full stream */
        sb_init(&s, 0);
        cta_mig_buf_delete(&s.b, "sentinel", 8);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* device nodes when refused */
        struct cta_mig_recv_opts o = { .deny_devices = true };
        sb_init(&s, 0);
        sb_ent(&s, CTA_MIG_K_CHR, "null", NULL);
        sb_end(&s);
        ASSERT_OK(expect(&s, &o, CTA_E_MIG_STREAM));
        /* an incremental stream without allow_existing */
        sb_init(&s, CTA_MIG_HF_INCREMENTAL);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        return 0;
}

/* Version 4 padding: where the header allows it, one PAD (shorter than the alignment) may
 * stand before any record after the header; nowhere else. */
TEST(hostile__padding)
{
        ASSERT_OK(setup());
        static const uint8_t zeros[CTA_MIG_ALIGN];
        struct sb s;
        sb_init(&s, CTA_MIG_HF_ALIGNED);
        cta_mig_buf_raw(&s.b, CTA_MIG_R_PAD, zeros, 100);
        struct cta_mig_entry e = { .id = s.id++, .kind = CTA_MIG_K_REG, .mode = 0644,
                                   .path = "f", .path_len = 1, .size = 5 };
        cta_mig_buf_entry(&s.b, &e);
        s.entries++;
        cta_mig_buf_raw(&s.b, CTA_MIG_R_PAD, zeros, CTA_MIG_ALIGN - 1);
        cta_mig_buf_data(&s.b, 0, "hello", 5);
        struct cta_mig_extent x = { 0, "hello", 5 };
        uint8_t sum[16];
        cta_mig_checksum(&x, 1, 5, sum);
        cta_mig_buf_raw(&s.b, CTA_MIG_R_PAD, zeros, 0);
        cta_mig_buf_file_end(&s.b, 5, sum);
        s.bytes += 5;
        sb_end(&s);
        ASSERT_OK(expect_one_file(&s, "f", "hello"));

        /* a stream that does not declare it */
        sb_init(&s, 0);
        cta_mig_buf_raw(&s.b, CTA_MIG_R_PAD, zeros, 8);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* declared, but for readers older than version 4 */
        sb_init(&s, CTA_MIG_HF_ALIGNED);
        sb_end(&s);
        cta_mig_put16((uint8_t *)s.b.data + CTA_MIG_REC_HDR + 10, 3);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        /* two in a row, one as long as the alignment, one before the root */
        sb_init(&s, CTA_MIG_HF_ALIGNED);
        cta_mig_buf_raw(&s.b, CTA_MIG_R_PAD, zeros, 8);
        cta_mig_buf_raw(&s.b, CTA_MIG_R_PAD, zeros, 8);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        sb_init(&s, CTA_MIG_HF_ALIGNED);
        cta_mig_buf_raw(&s.b, CTA_MIG_R_PAD, zeros, CTA_MIG_ALIGN);
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        s = (struct sb){ .b = CTA_BUF_INIT(0) };
        cta_mig_buf_header(&s.b, CTA_MIG_HF_ALIGNED, 0, 0);
        cta_mig_buf_raw(&s.b, CTA_MIG_R_PAD, zeros, 8);
        struct cta_mig_entry root = { .id = 0, .kind = CTA_MIG_K_DIR, .flags = CTA_MIG_EF_ROOT,
                                      .mode = 0755 };
        cta_mig_buf_entry(&s.b, &root);
        s.entries = 1;
        sb_end(&s);
        ASSERT_OK(expect(&s, NULL, CTA_E_MIG_STREAM));
        return 0;
}

TEST(hostile__existing_staging_untouched)
{
        ASSERT_OK(setup());
        ASSERT_OK(mkdirat(g_parent, "stage", 0700));
        ASSERT_OK(mkdirat(g_parent, "stage/precious", 0700));
        struct sb s;
        sb_init(&s, 0);
        sb_end(&s);
        int got = recv_bytes(s.b.data, s.b.len, NULL, NULL);
        cta_buf_done(&s.b);
        ASSERT_INT_EQ(got, CTA_E_PRIVATE_EXISTS);
        struct stat st;
        ASSERT_OK(fstatat(g_parent, "stage/precious", &st, 0));
        ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));
        return 0;
}

/* A real stream of a small tree, cut at many points: every cut is refused, nothing left. */
TEST(hostile__truncated_everywhere)
{
        ASSERT_OK(setup());
        char src[300];
        snprintf(src, sizeof(src), "%s/src", g_root);
        ASSERT_OK(mkdir(src, 0755));
        int sfd = open(src, O_RDONLY | O_DIRECTORY);
        mkdirat(sfd, "d", 0755);
        for (int i = 0; i < 20; i++) {
                char n[32], c[200];
                snprintf(n, sizeof(n), "d/f%02d", i);
                int fd = openat(sfd, n, O_CREAT | O_WRONLY, 0644);
                memset(c, 'a' + i, sizeof(c));
                ASSERT_INT_EQ(write(fd, c, (size_t)(i * 10)), i * 10);
                fsetxattr(fd, "user.k", "value", 5, 0);
                close(fd);
        }
        symlinkat("d/f01", sfd, "ln");
        mkfifoat(sfd, "fifo", 0600);
        /* the stream into a file */
        char sp[320];
        snprintf(sp, sizeof(sp), "%s/stream", g_root);
        int out = open(sp, O_CREAT | O_RDWR | O_TRUNC, 0600);
        struct cta_mig_io io = cta_mig_fd_io(out);
        struct cta_error *err = NULL;
        ASSERT_OK(cta_mig_send(sfd, &io, NULL, NULL, &err));
        off_t len = lseek(out, 0, SEEK_END);
        uint8_t *buf = malloc((size_t)len);
        ASSERT_INT_EQ(pread(out, buf, (size_t)len, 0), len);
        close(out);
        unlink(sp);
        close(sfd);
        ASSERT_OK(cta_rm_rf_at(AT_FDCWD, src));
        /* the whole stream works */
        ASSERT_INT_EQ(recv_bytes(buf, (size_t)len, NULL, NULL), 0);
        ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));
        unsigned cuts = 0;
        for (off_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 7)) {
                int code = recv_bytes(buf, (size_t)cut, NULL, NULL);
                if (code != CTA_E_MIG_STREAM)
                        TAP_FAIL("cut at %lld of %lld: code %d", (long long)cut, (long long)len,
                                 code);
                if (check_clean(false) < 0)
                        TAP_FAIL("cut at %lld left something", (long long)cut);
                cuts++;
        }
        printf("# %u cut points over %lld bytes\n", cuts, (long long)len);
        /* and the same with flipped bytes: never a crash, never outside, never a success
         * with wrong content (the checksum catches data, the checks the rest) */
        for (off_t pos = 0; pos < len; pos += 13) {
                buf[pos] ^= 0x41;
                int code = recv_bytes(buf, (size_t)len, NULL, NULL);
                buf[pos] ^= 0x41;
                if (code == 0) {
                        /* a flip in a time, mode or owner field is legal content */
                        ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));
                        continue;
                }
                if (code < 0 || check_clean(false) < 0)
                        TAP_FAIL("flip at %lld: code %d", (long long)pos, code);
        }
        free(buf);
        return 0;
}


/* ------------------------------------------------------------------ block deltas */

/* 64 bytes */
static const char g_base[] = "0123456789bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/* A staging directory holding "base" (g_base), a directory "dir" and a fifo "fifo". */
static int make_base(void)
{
        struct sb s;
        sb_init(&s, 0);
        sb_file(&s, "base", g_base, 0);
        sb_ent(&s, CTA_MIG_K_DIR, "dir", NULL);
        sb_ent(&s, CTA_MIG_K_FIFO, "fifo", NULL);
        sb_end(&s);
        int r = recv_bytes(s.b.data, s.b.len, NULL, NULL);
        cta_buf_done(&s.b);
        return r == 0 ? 0 : -1;
}

/* Header, root and one regular file entry at path. */
static void delta_begin(struct sb *s, uint32_t hflags, const char *path, uint8_t eflags,
                        uint64_t size)
{
        sb_init(s, hflags);
        struct cta_mig_entry e = { .id = s->id++, .kind = CTA_MIG_K_REG, .flags = eflags,
                                   .mode = 0644, .path = path,
                                   .path_len = (uint16_t)strlen(path), .size = size };
        cta_mig_buf_entry(&s->b, &e);
        s->entries++;
}

static void sum_of(const char *c, size_t n, uint8_t sum[16])
{
        struct cta_mig_extent x = { 0, c, n };
        cta_mig_checksum(&x, 1, n, sum);
}

TEST(hostile__block_deltas)
{
        ASSERT_OK(setup());
        const uint32_t hf = CTA_MIG_HF_INCREMENTAL | CTA_MIG_HF_BASED;
        struct cta_mig_recv_opts o = { .allow_existing = true };
        char want[65];
        memcpy(want, g_base, 65);
        memcpy(want, "abcdefghij", 10);
        uint8_t sum[16];
        sum_of(want, 64, sum);
        struct sb s;

        /* a valid delta: bytes 0-9 sent, 10-63 reused */
        ASSERT_OK(make_base());
        delta_begin(&s, hf, "base", CTA_MIG_EF_BASED, 64);
        cta_mig_buf_data(&s.b, 0, want, 10);
        cta_mig_buf_copy(&s.b, 10, 54);
        cta_mig_buf_file_end(&s.b, 10, sum);
        s.bytes = 10;
        sb_end(&s);
        struct cta_mig_stats st = { 0 };
        ASSERT_INT_EQ(recv_bytes(s.b.data, s.b.len, &o, &st), 0);
        cta_buf_done(&s.b);
        ASSERT_INT_EQ(st.copied_bytes, 54);
        ASSERT_INT_EQ(st.delta_files, 1);
        char got[80];
        int fd = openat(g_parent, "stage/base", O_RDONLY);
        ASSERT_INT_EQ(read(fd, got, sizeof(got)), 64);
        close(fd);
        ASSERT_MEM_EQ(got, want, 64);
        ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));

        /* a lying delta: the source claims the base has "abcdefghij" at 0 */
        struct cta_mig_recv_opts ok = { .allow_existing = true, .keep_on_failure = true };
        ASSERT_OK(make_base());
        delta_begin(&s, hf, "base", CTA_MIG_EF_BASED, 64);
        cta_mig_buf_copy(&s.b, 0, 64);
        cta_mig_buf_file_end(&s.b, 0, sum);
        sb_end(&s);
        ASSERT_INT_EQ(recv_bytes(s.b.data, s.b.len, &ok, NULL), CTA_E_MIG_CHECKSUM);
        cta_buf_done(&s.b);
        ASSERT_OK(check_clean(true));
        fd = openat(g_parent, "stage/base", O_RDONLY);
        ASSERT_INT_EQ(read(fd, got, sizeof(got)), 64);
        close(fd);
        ASSERT_MEM_EQ(got, g_base, 64); /* untouched */
        ASSERT_INT_EQ(count_entries(g_parent, "stage"), 3); /* no temporary file left */
        ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));

        /* each of these is refused and leaves nothing behind */
        struct {
                uint32_t hflags;
                const char *path;
                uint8_t eflags;
                uint64_t size;
                uint64_t copy_off, copy_len; /* a COPY record (copy_len 0: none) */
                uint64_t data_off;           /* a 10-byte DATA record first (~0: none) */
                int code;
        } bad[] = {
                /* BASED in a full stream, in an incremental stream that does not allow it */
                { CTA_MIG_HF_BASED, "base", CTA_MIG_EF_BASED, 64, 10, 54, 0, CTA_E_MIG_STREAM },
                { CTA_MIG_HF_INCREMENTAL, "base", CTA_MIG_EF_BASED, 64, 10, 54, 0,
                  CTA_E_MIG_STREAM },
                /* BASED with UNCHANGED */
                { hf, "base", CTA_MIG_EF_BASED | CTA_MIG_EF_UNCHANGED, 64, 0, 0, ~0ull,
                  CTA_E_MIG_STREAM },
                /* COPY in a file that is not BASED */
                { hf, "base", 0, 64, 10, 54, 0, CTA_E_MIG_STREAM },
                /* the base is missing, a directory, a fifo (never opened for reading) */
                { hf, "nobase", CTA_MIG_EF_BASED, 64, 10, 54, 0, CTA_E_MIG_STREAM },
                { hf, "dir", CTA_MIG_EF_BASED, 64, 10, 54, 0, CTA_E_MIG_STREAM },
                { hf, "fifo", CTA_MIG_EF_BASED, 64, 10, 54, 0, CTA_E_MIG_STREAM },
                /* COPY past the base's size, past the declared size, empty, overlapping */
                { hf, "base", CTA_MIG_EF_BASED, 80, 10, 70, 0, CTA_E_MIG_STREAM },
                { hf, "base", CTA_MIG_EF_BASED, 32, 10, 54, 0, CTA_E_MIG_STREAM },
                { hf, "base", CTA_MIG_EF_BASED, 64, 10, 0, 0, CTA_E_MIG_STREAM },
                { hf, "base", CTA_MIG_EF_BASED, 64, 5, 54, 0, CTA_E_MIG_STREAM },
                { hf, "base", CTA_MIG_EF_BASED, 64, UINT64_MAX - 3, 54, 0, CTA_E_MIG_STREAM },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++) {
                ASSERT_OK(make_base());
                delta_begin(&s, bad[i].hflags, bad[i].path, bad[i].eflags, bad[i].size);
                if (bad[i].data_off != ~0ull) {
                        cta_mig_buf_data(&s.b, bad[i].data_off, want, 10);
                        s.bytes = 10;
                }
                if (bad[i].copy_len || bad[i].copy_off) {
                        uint8_t raw[16];
                        cta_mig_put64(raw, bad[i].copy_off);
                        cta_mig_put64(raw + 8, bad[i].copy_len);
                        cta_mig_buf_raw(&s.b, CTA_MIG_R_COPY, raw, sizeof(raw));
                }
                cta_mig_buf_file_end(&s.b, s.bytes, sum);
                sb_end(&s);
                if (expect(&s, &o, bad[i].code) < 0)
                        TAP_FAIL("block delta case #%zu", i);
        }
        return 0;
}

/* In place (cta_mig_recv_opts.inplace): a base of 8 MiB + 100 bytes received with a
 * block-list checksum and a block map record; COPY records that are not whole blocks are
 * refused before anything is written, and the file is as it was. */
#define BIG_N ((size_t)(8u << 20) + 100)

static int make_big_base(const char *bmd, const uint8_t *c, uint8_t sum[16])
{
        struct cta_bsum b;
        if (cta_bsum_init(&b) < 0)
                return -1;
        cta_bsum_begin(&b, BIG_N);
        cta_bsum_feed(&b, c, BIG_N, NULL);
        cta_bsum_final(&b, NULL, sum);
        cta_bsum_done(&b);
        struct sb s;
        sb_init(&s, CTA_MIG_HF_BLOCKSUM);
        struct cta_mig_entry e = { .id = s.id++, .kind = CTA_MIG_K_REG, .mode = 0644,
                                   .path = "big", .path_len = 3, .size = BIG_N };
        cta_mig_buf_entry(&s.b, &e);
        s.entries++;
        for (size_t off = 0; off < BIG_N; off += 1u << 20) {
                size_t k = BIG_N - off < (1u << 20) ? BIG_N - off : 1u << 20;
                cta_mig_buf_data(&s.b, off, c + off, (uint32_t)k);
        }
        cta_mig_buf_file_end(&s.b, BIG_N, sum);
        s.bytes = BIG_N;
        sb_end(&s);
        struct cta_mig_recv_opts o = { .blockmap_dir = bmd };
        struct cta_mig_stats st = { 0 };
        int r = recv_bytes(s.b.data, s.b.len, &o, &st);
        cta_buf_done(&s.b);
        return r == 0 && st.blockmaps == 1 ? 0 : -1;
}

TEST(hostile__in_place)
{
        ASSERT_OK(setup());
        char bmd[] = "/tmp/cta-hostile-bm.XXXXXX";
        ASSERT_TRUE(mkdtemp(bmd) != NULL);
        uint8_t *c = malloc(BIG_N), *got = malloc(BIG_N), sum[16];
        ASSERT_TRUE(c && got);
        for (size_t i = 0; i < BIG_N; i++)
                c[i] = (uint8_t)(i * 131 + (i >> 12));
        const uint32_t hf = CTA_MIG_HF_INCREMENTAL | CTA_MIG_HF_BASED | CTA_MIG_HF_BLOCKSUM;
        struct cta_mig_recv_opts o = { .allow_existing = true, .keep_on_failure = true,
                                       .blockmap_dir = bmd, .inplace = true };
        const uint64_t M = 1u << 20;
        struct {
                uint64_t off, len;
                int code;
        } cases[] = {
                { M / 2, M, CTA_E_MIG_STREAM },          /* starts inside a block */
                { 0, M + 5, CTA_E_MIG_STREAM },          /* ends inside one, not at the end */
                { 8 * M, 100, 0 },                       /* the short last block: fine */
                { 8 * M, 99, CTA_E_MIG_STREAM },         /* ... but not a part of it */
                { 0, BIG_N, 0 },                         /* everything: fine */
                { 0, BIG_N + 1, CTA_E_MIG_STREAM },      /* past both sizes */
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                ASSERT_OK(make_big_base(bmd, c, sum));
                struct stat before, after;
                ASSERT_OK(fstatat(g_parent, "stage/big", &before, 0));
                struct sb s;
                delta_begin(&s, hf, "big", CTA_MIG_EF_BASED, BIG_N);
                uint64_t sent = 0;
                if (cases[i].off) { /* the blocks before it, sent */
                        uint64_t a = cases[i].off & ~(M - 1);
                        for (uint64_t off = 0; off < a; off += M)
                                cta_mig_buf_data(&s.b, off, c + off, (uint32_t)M);
                        sent = a;
                }
                cta_mig_buf_copy(&s.b, cases[i].off, cases[i].len);
                uint64_t end = cases[i].off + cases[i].len;
                if (end < BIG_N && !cases[i].code) {
                        cta_mig_buf_data(&s.b, end, c + end, (uint32_t)(BIG_N - end));
                        sent += BIG_N - end;
                }
                cta_mig_buf_file_end(&s.b, sent, sum);
                s.bytes = sent;
                sb_end(&s);
                struct cta_mig_stats st = { 0 };
                int r = recv_bytes(s.b.data, s.b.len, &o, &st);
                cta_buf_done(&s.b);
                if (r != cases[i].code)
                        TAP_FAIL("in-place case #%zu: code %d", i, r);
                ASSERT_OK(fstatat(g_parent, "stage/big", &after, 0));
                ASSERT_INT_EQ(after.st_ino, before.st_ino);
                int fd = openat(g_parent, "stage/big", O_RDONLY);
                ASSERT_INT_EQ(read(fd, got, BIG_N), (ssize_t)BIG_N);
                close(fd);
                ASSERT_TRUE(memcmp(got, c, BIG_N) == 0);
                if (!cases[i].code)
                        ASSERT_INT_EQ(st.inplace_files, 1);
                ASSERT_OK(cta_rm_rf_at(g_parent, "stage"));
        }
        free(c);
        free(got);
        ASSERT_OK(cta_rm_rf_at(AT_FDCWD, bmd));
        return 0;
}

TEST(zz_cleanup)
{
        if (g_parent >= 0)
                close(g_parent);
        return cta_rm_rf_at(AT_FDCWD, g_root) < 0 ? -1 : 0;
}

int main(void)
{
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root (device nodes, owners)\n");
                return 0;
        }
        return tap_run(TESTS(T(hostile__valid_control), T(hostile__bad_paths),
                             T(hostile__through_symlinks), T(hostile__hard_links),
                             T(hostile__lying_data), T(hostile__bad_checksum_keep_leaves_no_file),
                             T(hostile__limits), T(hostile__malformed),
                             T(hostile__padding), T(hostile__existing_staging_untouched),
                             T(hostile__truncated_everywhere), T(hostile__block_deltas),
                             T(hostile__in_place),
                             T(zz_cleanup)));
}
