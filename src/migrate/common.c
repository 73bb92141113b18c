/* The canonical tree walker, the inode map, xattr reading and small helpers. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "migrate/hash.h"
#include "migrate/internal.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

/* ------------------------------------------------------------------ walker */

#define PREFETCH_AHEAD 32  /* regular files opened and fadvised ahead of the reader */
#define PREFETCH_BYTES (4u << 20)

struct walk_ent {
        uint32_t name_off;
        uint16_t name_len;
        uint8_t dtype;
        bool tried; /* prefetch attempted */
        int fd;
};

struct walk_frame {
        int dfd;
        size_t dir_plen; /* path length of this directory */
        char *names;     /* NUL-separated */
        struct walk_ent *ents;
        size_t n, idx;
};

struct cta_walk {
        unsigned flags;
        int root_fd;
        bool started;
        struct walk_frame st[CTA_WALK_MAX_DEPTH + 1];
        size_t depth; /* frames in use */
        char path[PATH_MAX];
        int cur_fd;    /* a regular file fd handed out by the last next() */
        int prefetched;
        uint64_t vanished;
};

static int ent_cmp(const void *a, const void *b, void *names)
{
        const struct walk_ent *x = a, *y = b;
        const char *nm = names;
        size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
        int c = memcmp(nm + x->name_off, nm + y->name_off, n);
        if (c)
                return c;
        return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static void frame_done(struct cta_walk *w, struct walk_frame *f)
{
        for (size_t i = 0; i < f->n; i++)
                if (f->ents[i].fd >= 0) {
                        close(f->ents[i].fd);
                        w->prefetched--;
                }
        free(f->ents);
        free(f->names);
        if (f->dfd >= 0 && f->dfd != w->root_fd)
                close(f->dfd);
        memset(f, 0, sizeof(*f));
        f->dfd = -1;
}

/* Read a directory's names (without . and ..), sorted. Takes dfd. */
static int frame_push(struct cta_walk *w, int dfd, size_t dir_plen, struct cta_error **err)
{
        if (w->depth > CTA_WALK_MAX_DEPTH) {
                if (dfd != w->root_fd)
                        close(dfd);
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "tree deeper than %d levels",
                                     CTA_WALK_MAX_DEPTH);
        }
        struct walk_frame *f = &w->st[w->depth++];
        *f = (struct walk_frame){ .dfd = dfd, .dir_plen = dir_plen };
        struct cta_buf names = CTA_BUF_INIT(0);
        size_t cap = 0;
        char dbuf[32768] __attribute__((aligned(8)));
        if (lseek(dfd, 0, SEEK_SET) < 0)
                return cta_error_errno(err, CTA_E_IO, "rewind directory");
        for (;;) {
                ssize_t n = getdents64(dfd, dbuf, sizeof(dbuf));
                if (n < 0) {
                        cta_buf_done(&names);
                        return cta_error_errno(err, CTA_E_IO, "read directory");
                }
                if (n == 0)
                        break;
                for (ssize_t off = 0; off < n;) {
                        struct dirent64 *d = (struct dirent64 *)(dbuf + off);
                        off += d->d_reclen;
                        const char *nm = d->d_name;
                        if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2])))
                                continue;
                        if (f->n == cap) {
                                cap = cap ? cap * 2 : 64;
                                f->ents = cta_xrealloc(f->ents, cap * sizeof(*f->ents));
                        }
                        size_t nl = strlen(nm);
                        f->ents[f->n++] = (struct walk_ent){ .name_off = (uint32_t)names.len,
                                                             .name_len = (uint16_t)nl,
                                                             .dtype = d->d_type,
                                                             .fd = -1 };
                        if (cta_buf_append(&names, nm, nl + 1) < 0) {
                                cta_buf_done(&names);
                                return cta_error_set(err, CTA_E_NOMEM, 0, "directory names");
                        }
                }
        }
        f->names = cta_buf_steal(&names, NULL);
        if (f->n > 1) /* qsort_r: several walks may run at once (two migrations) */
                qsort_r(f->ents, f->n, sizeof(*f->ents), ent_cmp, f->names);
        return 0;
}

int cta_walk_new(int root_fd, unsigned flags, struct cta_walk **ret, struct cta_error **err)
{
        /* Our own open file description of the root: getdents64 moves a directory's offset
         * for every fd sharing it, so two walks of one fd at once (the sender's and its
         * prefetcher's) each saw entries twice or never. */
        int fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "open the root of the walk");
        struct cta_walk *w = cta_xcalloc(1, sizeof(*w));
        w->flags = flags;
        w->root_fd = fd;
        w->cur_fd = -1;
        for (size_t i = 0; i < CTA_ARRAY_SIZE(w->st); i++)
                w->st[i].dfd = -1;
        *ret = w;
        return 0;
}

struct cta_walk *cta_walk_free(struct cta_walk *w)
{
        if (!w)
                return NULL;
        while (w->depth)
                frame_done(w, &w->st[--w->depth]);
        if (w->cur_fd >= 0)
                close(w->cur_fd);
        close(w->root_fd);
        free(w);
        return NULL;
}

uint64_t cta_walk_vanished(const struct cta_walk *w)
{
        return w->vanished;
}

int cta_mig_open_file(int dfd, const char *name)
{
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOATIME | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 && errno == EPERM)
                fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        return fd;
}

/* Open and fadvise the next regular files of the current directory so their data is
 * read while earlier files are encoded (many reads in flight on a cold cache). */
static void prefetch(struct cta_walk *w, struct walk_frame *f)
{
        for (size_t i = f->idx; i < f->n && i < f->idx + PREFETCH_AHEAD; i++) {
                struct walk_ent *e = &f->ents[i];
                if (e->tried || e->dtype != DT_REG)
                        continue;
                if (w->prefetched >= PREFETCH_AHEAD)
                        return;
                e->tried = true;
                e->fd = cta_mig_open_file(f->dfd, f->names + e->name_off);
                if (e->fd < 0)
                        continue;
                w->prefetched++;
                (void)posix_fadvise(e->fd, 0, PREFETCH_BYTES, POSIX_FADV_WILLNEED);
        }
}

static bool vanish_errno(int e)
{
        return e == ENOENT || e == ENOTDIR || e == ELOOP;
}

int cta_walk_next(struct cta_walk *w, struct cta_walk_item *it, struct cta_error **err)
{
        if (w->cur_fd >= 0) {
                close(w->cur_fd);
                w->cur_fd = -1;
        }
        if (!w->started) {
                w->started = true;
                *it = (struct cta_walk_item){ .path = "", .name = ".", .dirfd = w->root_fd,
                                              .fd = w->root_fd, .is_root = true };
                if (fstat(w->root_fd, &it->st) < 0)
                        return cta_error_errno(err, CTA_E_IO, "stat root");
                if (!S_ISDIR(it->st.st_mode))
                        return cta_error_set(err, CTA_E_INVALID, 0, "root is not a directory");
                w->path[0] = 0;
                int r = frame_push(w, w->root_fd, 0, err);
                if (r < 0)
                        return r;
                return 1;
        }
        while (w->depth) {
                struct walk_frame *f = &w->st[w->depth - 1];
                if (f->idx == f->n) {
                        frame_done(w, f);
                        w->depth--;
                        continue;
                }
                if ((w->flags & CTA_WALK_OPEN_FILES) && !(w->flags & CTA_WALK_NO_PREFETCH))
                        prefetch(w, f);
                struct walk_ent *e = &f->ents[f->idx++];
                const char *name = f->names + e->name_off;
                size_t plen = f->dir_plen ? f->dir_plen + 1 + e->name_len : e->name_len;
                if (plen >= PATH_MAX)
                        return cta_error_set(err, CTA_E_TOO_LARGE, 0, "path longer than %d",
                                             PATH_MAX - 1);
                char *p = w->path + f->dir_plen;
                if (f->dir_plen)
                        *p++ = '/';
                memcpy(p, name, e->name_len + 1);

                *it = (struct cta_walk_item){ .path = w->path, .path_len = plen, .name = p,
                                              .dirfd = f->dfd, .fd = -1 };
                int fd = -1, r;
                if (e->fd >= 0) {
                        fd = e->fd;
                        e->fd = -1;
                        w->prefetched--;
                        r = fstat(fd, &it->st);
                } else if (e->dtype == DT_DIR) {
                        fd = openat(f->dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        r = fd < 0 ? -1 : fstat(fd, &it->st);
                } else {
                        r = fstatat(f->dfd, name, &it->st, AT_SYMLINK_NOFOLLOW);
                }
                if (r < 0) {
                        int e2 = errno;
                        if (fd >= 0)
                                close(fd);
                        if (vanish_errno(e2) && !(w->flags & CTA_WALK_STRICT)) {
                                w->vanished++;
                                continue;
                        }
                        errno = e2;
                        return cta_error_errno(err, CTA_E_IO, "stat %s", w->path);
                }
                if (S_ISDIR(it->st.st_mode)) {
                        if (fd < 0) {
                                fd = openat(f->dfd, name,
                                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                                if (fd < 0 || fstat(fd, &it->st) < 0) {
                                        int e2 = errno;
                                        if (fd >= 0)
                                                close(fd);
                                        if (vanish_errno(e2) && !(w->flags & CTA_WALK_STRICT)) {
                                                w->vanished++;
                                                continue;
                                        }
                                        errno = e2;
                                        return cta_error_errno(err, CTA_E_IO, "open %s", w->path);
                                }
                        }
                        it->fd = fd;
                        r = frame_push(w, fd, plen, err);
                        if (r < 0)
                                return r;
                        /* frame_push may not move it->path: w->path is stable */
                        return 1;
                }
                if (S_ISREG(it->st.st_mode) && (w->flags & CTA_WALK_OPEN_FILES)) {
                        if (fd < 0) {
                                fd = cta_mig_open_file(f->dfd, name);
                                if (fd < 0 || fstat(fd, &it->st) < 0) {
                                        int e2 = errno;
                                        if (fd >= 0)
                                                close(fd);
                                        if (vanish_errno(e2) && !(w->flags & CTA_WALK_STRICT)) {
                                                w->vanished++;
                                                continue;
                                        }
                                        errno = e2;
                                        return cta_error_errno(err, CTA_E_IO, "open %s", w->path);
                                }
                        }
                        if (!S_ISREG(it->st.st_mode)) { /* replaced under us */
                                close(fd);
                                w->vanished++;
                                continue;
                        }
                        it->fd = w->cur_fd = fd;
                        return 1;
                }
                if (fd >= 0)
                        close(fd); /* prefetched, but no longer a regular file */
                return 1;
        }
        return 0;
}

/* ------------------------------------------------------------------ inode map */

static size_t ino_hash(uint64_t dev, uint64_t ino)
{
        uint64_t h = ino * 0x9E3779B97F4A7C15ull ^ dev * 0xC2B2AE3D27D4EB4Full;
        return (size_t)(h ^ (h >> 29));
}

struct cta_inomap_ent *cta_inomap_get_or_add(struct cta_inomap *m, uint64_t dev, uint64_t ino,
                                             uint64_t val, const char *str, size_t str_len)
{
        if (ino == 0)
                ino = UINT64_MAX; /* 0 marks empty slots */
        if ((m->n + 1) * 2 > m->cap) {
                size_t ncap = m->cap ? m->cap * 2 : 64;
                struct cta_inomap_ent *nv = cta_xcalloc(ncap, sizeof(*nv));
                for (size_t i = 0; i < m->cap; i++) {
                        if (!m->v[i].ino)
                                continue;
                        size_t j = ino_hash(m->v[i].dev, m->v[i].ino) & (ncap - 1);
                        while (nv[j].ino)
                                j = (j + 1) & (ncap - 1);
                        nv[j] = m->v[i];
                }
                free(m->v);
                m->v = nv;
                m->cap = ncap;
        }
        size_t j = ino_hash(dev, ino) & (m->cap - 1);
        while (m->v[j].ino) {
                if (m->v[j].ino == ino && m->v[j].dev == dev)
                        return &m->v[j];
                j = (j + 1) & (m->cap - 1);
        }
        m->v[j] = (struct cta_inomap_ent){ .dev = dev, .ino = ino, .val = val,
                                           .str = str ? cta_xstrndup(str, str_len) : NULL };
        m->n++;
        return NULL;
}

void cta_inomap_done(struct cta_inomap *m)
{
        for (size_t i = 0; i < m->cap; i++)
                free(m->v[i].str);
        free(m->v);
        *m = (struct cta_inomap){ 0 };
}

/* ------------------------------------------------------------------ xattrs */

bool cta_xattr_name_ok(const char *name, size_t len)
{
        if (len == 0 || len > 255 || memchr(name, 0, len))
                return false;
#define PFX(s) (len > sizeof(s) - 1 && memcmp(name, s, sizeof(s) - 1) == 0)
#define IS(s) (len == sizeof(s) - 1 && memcmp(name, s, sizeof(s) - 1) == 0)
        return PFX("user.") || PFX("trusted.") || PFX("security.") ||
               IS("system.posix_acl_access") || IS("system.posix_acl_default");
#undef PFX
#undef IS
}

static int xname_cmp(const void *a, const void *b)
{
        const struct cta_mig_xattr *x = a, *y = b;
        return strcmp(x->name, y->name);
}

static __thread bool tl_own_cwd;

bool cta_mig_thread_own_cwd(void)
{
        tl_own_cwd = unshare(CLONE_FS) == 0;
        return tl_own_cwd;
}

const char *cta_mig_at_path(int dirfd, const char *name, char *buf, size_t cap)
{
        if (tl_own_cwd && fchdir(dirfd) == 0)
                return name;
        snprintf(buf, cap, "/proc/self/fd/%d/%s", dirfd, name);
        return buf;
}

int cta_xlist_read(struct cta_xlist *x, int fd, int dirfd, const char *name)
{
        char pbuf[64 + NAME_MAX];
        const char *path = fd < 0 ? cta_mig_at_path(dirfd, name, pbuf, sizeof(pbuf)) : NULL;
        x->n = 0;
        x->vals_len = 0;
        if (!x->names_cap) { /* a size of 0 would ask for the needed size instead */
                x->names_cap = 4096;
                x->names = cta_xmalloc(x->names_cap);
        }
        for (;;) {
                ssize_t n = fd >= 0 ? flistxattr(fd, x->names, x->names_cap)
                                    : llistxattr(path, x->names, x->names_cap);
                if (n < 0 && errno == ERANGE) {
                        n = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(path, NULL, 0);
                        if (n < 0)
                                return -errno;
                        x->names_cap = (size_t)n + 256;
                        x->names = cta_xrealloc(x->names, x->names_cap);
                        continue;
                }
                if (n < 0) {
                        if (errno == ENOTSUP)
                                return 0;
                        return -errno;
                }
                x->names_len = (size_t)n;
                break;
        }
        /* offsets first: vals may move while it grows */
        size_t *offs = NULL;
        for (size_t off = 0; off < x->names_len;) {
                const char *nm = x->names + off;
                size_t nl = strnlen(nm, x->names_len - off);
                off += nl + 1;
                if (!cta_xattr_name_ok(nm, nl))
                        continue;
                for (;;) {
                        if (x->vals_cap - x->vals_len < 65536) {
                                x->vals_cap = x->vals_cap * 2 + 65536;
                                x->vals = cta_xrealloc(x->vals, x->vals_cap);
                        }
                        ssize_t vl = fd >= 0 ? fgetxattr(fd, nm, x->vals + x->vals_len,
                                                         x->vals_cap - x->vals_len)
                                             : lgetxattr(path, nm, x->vals + x->vals_len,
                                                         x->vals_cap - x->vals_len);
                        if (vl < 0 && errno == ERANGE) {
                                x->vals_cap *= 2;
                                x->vals = cta_xrealloc(x->vals, x->vals_cap);
                                continue;
                        }
                        if (vl < 0 && errno == ENODATA)
                                break; /* removed meanwhile */
                        if (vl < 0) {
                                int e = errno;
                                free(offs);
                                return -e;
                        }
                        if (x->n == x->cap) {
                                x->cap = x->cap ? x->cap * 2 : 8;
                                x->v = cta_xrealloc(x->v, x->cap * sizeof(*x->v));
                        }
                        offs = cta_xrealloc(offs, x->cap * sizeof(*offs));
                        offs[x->n] = x->vals_len;
                        x->v[x->n++] = (struct cta_mig_xattr){ .name = nm, .name_len = (uint8_t)nl,
                                                               .value_len = (uint32_t)vl };
                        x->vals_len += (size_t)vl;
                        break;
                }
        }
        for (size_t i = 0; i < x->n; i++)
                x->v[i].value = x->vals + offs[i];
        free(offs);
        if (x->n > 1)
                qsort(x->v, x->n, sizeof(*x->v), xname_cmp);
        return 0;
}

void cta_xlist_done(struct cta_xlist *x)
{
        free(x->names);
        free(x->vals);
        free(x->v);
        *x = (struct cta_xlist){ 0 };
}

/* ------------------------------------------------------------------ misc */

uint8_t cta_mig_kind_of(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFREG:
                return CTA_MIG_K_REG;
        case S_IFDIR:
                return CTA_MIG_K_DIR;
        case S_IFLNK:
                return CTA_MIG_K_LNK;
        case S_IFCHR:
                return CTA_MIG_K_CHR;
        case S_IFBLK:
                return CTA_MIG_K_BLK;
        case S_IFIFO:
                return CTA_MIG_K_FIFO;
        case S_IFSOCK:
                return CTA_MIG_K_SOCK;
        default:
                return 0;
        }
}

int cta_openat_beneath(int dfd, const char *path, int flags)
{
        struct open_how how = {
                .flags = (uint64_t)(flags | O_CLOEXEC),
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                           RESOLVE_NO_XDEV,
        };
        long r = syscall(SYS_openat2, dfd, path, &how, sizeof(how));
        return r < 0 ? -1 : (int)r;
}

static int rm_contents(int fd)
{
        char dbuf[16384] __attribute__((aligned(8)));
        bool again = true;
        int ret = 0;
        while (again) {
                again = false;
                if (lseek(fd, 0, SEEK_SET) < 0)
                        return -errno;
                for (;;) {
                        ssize_t n = getdents64(fd, dbuf, sizeof(dbuf));
                        if (n < 0)
                                return -errno;
                        if (n == 0)
                                break;
                        for (ssize_t off = 0; off < n;) {
                                struct dirent64 *d = (struct dirent64 *)(dbuf + off);
                                off += d->d_reclen;
                                const char *nm = d->d_name;
                                if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2])))
                                        continue;
                                int r = cta_rm_rf_at(fd, nm);
                                if (r < 0 && r != -ENOENT)
                                        ret = r;
                                else
                                        again = true;
                        }
                }
                if (ret < 0)
                        return ret;
        }
        return 0;
}

int cta_rm_rf_at(int dfd, const char *name)
{
        if (unlinkat(dfd, name, 0) == 0)
                return 0;
        if (errno != EISDIR)
                return -errno;
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = rm_contents(fd);
        close(fd);
        if (r < 0)
                return r;
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0)
                return -errno;
        return 0;
}

int cta_mig_errno_code(int e)
{
        switch (e) {
        case ENOSPC:
        case EDQUOT:
                return CTA_E_MIG_NO_SPACE;
        case ENOTSUP:
                return CTA_E_MIG_FS;
        case ELOOP:
        case EXDEV:
                return CTA_E_MIG_PATH;
        default:
                return CTA_E_IO;
        }
}

char *cta_mig_path_fmt(const char *p, size_t len)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        size_t max = len > 200 ? 200 : len;
        for (size_t i = 0; i < max; i++) {
                unsigned char c = (unsigned char)p[i];
                if (c < 0x20 || c >= 0x7f || c == '\\')
                        (void)cta_buf_printf(&b, "\\x%02x", c);
                else
                        (void)cta_buf_putc(&b, (char)c);
        }
        if (max < len)
                (void)cta_buf_puts(&b, "...");
        if (!b.data)
                return cta_xstrdup("");
        return cta_buf_steal(&b, NULL);
}

/* Large: XXH3 runs ~40% faster on 1 MiB updates than on 64 KiB ones (holes of sparse
 * images are gigabytes of zeros to hash). Not const: it stays in .bss. */
static uint8_t zero_block[1u << 20];

void cta_mig_hash_zeros(struct XXH3_state_s *st, uint64_t n)
{
        while (n) {
                size_t k = n > sizeof(zero_block) ? sizeof(zero_block) : (size_t)n;
                cta_xxh3_128_update(st, zero_block, k);
                n -= k;
        }
}

/* ------------------------------------------------------------------ fd io */

static ssize_t fd_write(void *ctx, const void *buf, size_t len)
{
        int fd = (int)(intptr_t)ctx;
        const char *p = buf;
        size_t done = 0;
        bool sock = true;
        while (done < len) {
                ssize_t n = sock ? send(fd, p + done, len - done, MSG_NOSIGNAL) : -1;
                if (n < 0 && sock && errno == ENOTSOCK) {
                        sock = false;
                        continue;
                }
                if (!sock)
                        n = write(fd, p + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t)n;
        }
        return (ssize_t)done;
}

static ssize_t fd_read(void *ctx, void *buf, size_t len)
{
        int fd = (int)(intptr_t)ctx;
        for (;;) {
                ssize_t n = read(fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                return n < 0 ? -errno : n;
        }
}

static void fd_abort(void *ctx)
{
        (void)shutdown((int)(intptr_t)ctx, SHUT_RDWR);
}

const struct cta_mig_io cta_mig_fd_io_ops = {
        .write = fd_write,
        .read = fd_read,
        .abort = fd_abort,
};

/* ------------------------------------------------------------------ held-back directories */

static bool pend_is_ancestor(const struct cta_pend_dir *d, const char *path, size_t len)
{
        const char *dp = (const char *)d->rec + CTA_MIG_REC_HDR + CTA_MIG_ENTRY_FIXED;
        return len > d->path_len && path[d->path_len] == '/' &&
               memcmp(dp, path, d->path_len) == 0;
}

void cta_pend_pop(struct cta_pend_dirs *p, const char *path, size_t len)
{
        while (p->n && !pend_is_ancestor(&p->v[p->n - 1], path, len)) {
                p->n--;
                free(p->v[p->n].rec);
        }
}

void cta_pend_push(struct cta_pend_dirs *p, const struct cta_mig_entry *e)
{
        if (p->n == CTA_ARRAY_SIZE(p->v)) /* deeper than the walker goes: never */
                abort();
        struct cta_pend_dir *d = &p->v[p->n++];
        d->len = cta_mig_entry_size(e);
        d->rec = cta_xmalloc(d->len);
        struct cta_mig_entry c = *e;
        c.id = 0;
        cta_mig_enc_entry(d->rec, &c);
        d->path_len = e->path_len;
}

void cta_pend_done(struct cta_pend_dirs *p)
{
        while (p->n)
                free(p->v[--p->n].rec);
}

/* --------------------------------------------------------------- pass mark */

/*
 * A page written through a shared mapping is written again without a fault, so without
 * moving the file's times, until it is written back and write-protected (measured here:
 * a second write 1.5 s after the first left mtime and ctime as they were; after fsync the
 * next write moved them). So write back the file system's dirty pages after taking the
 * time: from then on a write through a mapping that a pass could miss faults first and
 * moves ctime past the mark. tmpfs, ramfs and hugetlbfs never write pages back.
 */
int cta_mig_pass_mark(int root_dirfd, struct timespec *ret)
{
        clock_gettime(CLOCK_REALTIME, ret);
        ret->tv_sec -= 1; /* file times come from a coarser clock */
        struct statfs sf;
        if (fstatfs(root_dirfd, &sf) < 0)
                goto all;
        if (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC ||
            sf.f_type == HUGETLBFS_MAGIC) {
                errno = EOPNOTSUPP;
                goto all;
        }
        if (syncfs(root_dirfd) < 0)
                goto all;
        return 0;
all:
        *ret = CTA_MIG_ALL_CHANGED;
        return 1;
}
