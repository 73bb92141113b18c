/*
 * cta_mig_tree_compare: two canonical walkers in lockstep. Used by the tests and by the
 * benchmark to prove a copy identical; also usable by an operator tool.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrate/internal.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

#define MAX_DIFFS 100
#define CMP_CHUNK (1u << 20)

struct cmp {
        unsigned flags;
        struct cta_buf rep;
        unsigned ndiff;
        struct cta_inomap la, lb;
        struct cta_xlist xa, xb;
        uint8_t *ba, *bb;
};

static void diff(struct cmp *c, const char *path, size_t len, const char *what)
{
        c->ndiff++;
        if (c->ndiff > MAX_DIFFS)
                return;
        _cleanup_free_ char *p = cta_mig_path_fmt(path, len);
        (void)cta_buf_printf(&c->rep, "%s: %s\n", len ? p : "(root)", what);
}

/* Compare content over the union of both files' data regions (holes read as zeros). */
static int content_differs(struct cmp *c, int fa, int fb, uint64_t size, bool *ret)
{
        uint64_t pos = 0;
        *ret = false;
        while (pos < size) {
                off_t da = lseek(fa, (off_t)pos, SEEK_DATA), db = lseek(fb, (off_t)pos, SEEK_DATA);
                if ((da < 0 && errno != ENXIO) || (db < 0 && errno != ENXIO))
                        return -errno;
                uint64_t d = size;
                if (da >= 0 && (uint64_t)da < d)
                        d = (uint64_t)da;
                if (db >= 0 && (uint64_t)db < d)
                        d = (uint64_t)db;
                if (d >= size)
                        break;
                size_t n = size - d > CMP_CHUNK ? CMP_CHUNK : (size_t)(size - d);
                ssize_t ra = pread(fa, c->ba, n, (off_t)d), rb = pread(fb, c->bb, n, (off_t)d);
                if (ra < 0 || rb < 0)
                        return -errno;
                if (ra != rb || memcmp(c->ba, c->bb, (size_t)ra) != 0) {
                        *ret = true;
                        return 0;
                }
                if (ra == 0)
                        break;
                pos = d + (uint64_t)ra;
        }
        return 0;
}

static int xattrs_differ(struct cmp *c, const struct cta_walk_item *a,
                         const struct cta_walk_item *b, bool *ret)
{
        bool use_fd = S_ISREG(a->st.st_mode) || S_ISDIR(a->st.st_mode);
        int fa = -1, fb = -1, r;
        if (S_ISREG(a->st.st_mode)) {
                fa = openat(a->dirfd, a->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                fb = openat(b->dirfd, b->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (fa < 0 || fb < 0) {
                        r = -errno;
                        goto out;
                }
        } else if (use_fd) {
                fa = dup(a->fd);
                fb = dup(b->fd);
        }
        r = cta_xlist_read(&c->xa, use_fd ? fa : -1, a->dirfd, a->name);
        if (r >= 0)
                r = cta_xlist_read(&c->xb, use_fd ? fb : -1, b->dirfd, b->name);
        if (r < 0)
                goto out;
        *ret = c->xa.n != c->xb.n;
        for (size_t i = 0; !*ret && i < c->xa.n; i++) {
                const struct cta_mig_xattr *x = &c->xa.v[i], *y = &c->xb.v[i];
                *ret = x->name_len != y->name_len || x->value_len != y->value_len ||
                       strcmp(x->name, y->name) != 0 ||
                       memcmp(x->value, y->value, x->value_len) != 0;
        }
out:
        if (fa >= 0)
                close(fa);
        if (fb >= 0)
                close(fb);
        return r;
}

static int compare_items(struct cmp *c, const struct cta_walk_item *a,
                         const struct cta_walk_item *b)
{
        const struct stat *x = &a->st, *y = &b->st;
        const char *p = a->path;
        size_t pl = a->path_len;
        if ((x->st_mode & S_IFMT) != (y->st_mode & S_IFMT)) {
                diff(c, p, pl, "type differs");
                return 0;
        }
        if (a->is_root && (c->flags & CTA_MIG_CMP_NO_ROOT))
                return 0;
        char msg[160];
        if ((x->st_mode & 07777) != (y->st_mode & 07777)) {
                snprintf(msg, sizeof(msg), "mode %04o != %04o", x->st_mode & 07777,
                         y->st_mode & 07777);
                diff(c, p, pl, msg);
        }
        if (x->st_uid != y->st_uid || x->st_gid != y->st_gid) {
                snprintf(msg, sizeof(msg), "owner %u:%u != %u:%u", x->st_uid, x->st_gid,
                         y->st_uid, y->st_gid);
                diff(c, p, pl, msg);
        }
        if (x->st_mtim.tv_sec != y->st_mtim.tv_sec || x->st_mtim.tv_nsec != y->st_mtim.tv_nsec) {
                snprintf(msg, sizeof(msg), "mtime %lld.%09ld != %lld.%09ld",
                         (long long)x->st_mtim.tv_sec, x->st_mtim.tv_nsec,
                         (long long)y->st_mtim.tv_sec, y->st_mtim.tv_nsec);
                diff(c, p, pl, msg);
        }
        if ((c->flags & CTA_MIG_CMP_ATIME) && (x->st_atim.tv_sec != y->st_atim.tv_sec ||
                                               x->st_atim.tv_nsec != y->st_atim.tv_nsec))
                diff(c, p, pl, "atime differs");
        bool xd = false;
        int r = xattrs_differ(c, a, b, &xd);
        if (r < 0)
                return r;
        if (xd)
                diff(c, p, pl, "xattrs differ");
        if (S_ISLNK(x->st_mode)) {
                char ta[PATH_MAX], tb[PATH_MAX];
                ssize_t na = readlinkat(a->dirfd, a->name, ta, sizeof(ta));
                ssize_t nb = readlinkat(b->dirfd, b->name, tb, sizeof(tb));
                if (na < 0 || nb < 0)
                        return -errno;
                if (na != nb || memcmp(ta, tb, (size_t)na) != 0)
                        diff(c, p, pl, "symlink target differs");
        } else if (S_ISCHR(x->st_mode) || S_ISBLK(x->st_mode)) {
                if (x->st_rdev != y->st_rdev)
                        diff(c, p, pl, "device number differs");
        } else if (S_ISREG(x->st_mode)) {
                if (x->st_size != y->st_size) {
                        snprintf(msg, sizeof(msg), "size %lld != %lld", (long long)x->st_size,
                                 (long long)y->st_size);
                        diff(c, p, pl, msg);
                        return 0;
                }
                if (x->st_nlink != y->st_nlink) {
                        snprintf(msg, sizeof(msg), "nlink %lu != %lu", (unsigned long)x->st_nlink,
                                 (unsigned long)y->st_nlink);
                        diff(c, p, pl, msg);
                }
                if (x->st_nlink > 1 || y->st_nlink > 1) {
                        struct cta_inomap_ent *ea =
                                cta_inomap_get_or_add(&c->la, x->st_dev, x->st_ino, 0, p, pl);
                        struct cta_inomap_ent *eb =
                                cta_inomap_get_or_add(&c->lb, y->st_dev, y->st_ino, 0, p, pl);
                        const char *fa = ea ? ea->str : p, *fb = eb ? eb->str : p;
                        if (!streq(fa, fb))
                                diff(c, p, pl, "hard link structure differs");
                }
                if (!(c->flags & CTA_MIG_CMP_NO_SPARSE)) {
                        int64_t ba = x->st_blocks, bb = y->st_blocks;
                        int64_t lo = ba < bb ? ba : bb, hi = ba < bb ? bb : ba;
                        if (hi - lo > lo / 8 + 256) {
                                snprintf(msg, sizeof(msg), "allocated blocks %lld != %lld",
                                         (long long)ba, (long long)bb);
                                diff(c, p, pl, msg);
                        }
                }
                int fa = a->fd, fb = b->fd;
                fa = openat(a->dirfd, a->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                fb = openat(b->dirfd, b->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                bool cd = false;
                r = fa < 0 || fb < 0 ? -errno : content_differs(c, fa, fb, (uint64_t)x->st_size, &cd);
                if (fa >= 0)
                        close(fa);
                if (fb >= 0)
                        close(fb);
                if (r < 0)
                        return r;
                if (cd)
                        diff(c, p, pl, "content differs");
        }
        return 0;
}

int cta_mig_tree_compare(int a_dirfd, int b_dirfd, unsigned flags, char **ret_report,
                         struct cta_error **err)
{
        struct cmp c = { .flags = flags, .rep = CTA_BUF_INIT(0) };
        struct cta_walk *wa = NULL, *wb = NULL;
        struct cta_walk_item ia, ib;
        int r = cta_walk_new(a_dirfd, CTA_WALK_STRICT, &wa, err);
        if (r >= 0)
                r = cta_walk_new(b_dirfd, CTA_WALK_STRICT, &wb, err);
        c.ba = cta_xmalloc(CMP_CHUNK);
        c.bb = cta_xmalloc(CMP_CHUNK);
        int ra = r >= 0 ? cta_walk_next(wa, &ia, err) : r;
        int rb = ra >= 0 ? cta_walk_next(wb, &ib, err) : ra;
        /* the walkers reuse their path buffers: compare before advancing either */
        while (ra > 0 || rb > 0) {
                if (ra < 0 || rb < 0)
                        break;
                int k = ra <= 0 ? 1 : rb <= 0 ? -1
                                            : cta_mig_path_cmp(ia.path, ia.path_len, ib.path,
                                                               ib.path_len);
                if (k < 0) {
                        diff(&c, ia.path, ia.path_len, "only in the first tree");
                        ra = cta_walk_next(wa, &ia, err);
                } else if (k > 0) {
                        diff(&c, ib.path, ib.path_len, "only in the second tree");
                        rb = cta_walk_next(wb, &ib, err);
                } else {
                        r = compare_items(&c, &ia, &ib);
                        if (r < 0) {
                                _cleanup_free_ char *p = cta_mig_path_fmt(ia.path, ia.path_len);
                                r = cta_error_set(err, CTA_E_IO, -r, "compare %s: %s", p,
                                                  strerror(-r));
                                break;
                        }
                        ra = cta_walk_next(wa, &ia, err);
                        if (ra >= 0)
                                rb = cta_walk_next(wb, &ib, err);
                }
        }
        if (r >= 0 && (ra < 0 || rb < 0))
                r = ra < 0 ? ra : rb;
        cta_walk_free(wa);
        cta_walk_free(wb);
        cta_inomap_done(&c.la);
        cta_inomap_done(&c.lb);
        cta_xlist_done(&c.xa);
        cta_xlist_done(&c.xb);
        free(c.ba);
        free(c.bb);
        if (r < 0) {
                cta_buf_done(&c.rep);
                return r;
        }
        if (c.ndiff > MAX_DIFFS)
                (void)cta_buf_printf(&c.rep, "... %u differences in all\n", c.ndiff);
        if (ret_report)
                *ret_report = c.ndiff ? cta_buf_steal(&c.rep, NULL) : NULL;
        cta_buf_done(&c.rep);
        return c.ndiff ? 1 : 0;
}
