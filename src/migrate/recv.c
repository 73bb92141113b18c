/*
 * The destination side: cta_mig_recv. It trusts nothing in the stream.
 *
 * A reader thread fills a ring buffer from the io with large reads (it follows the record
 * lengths to stop after the trailer); this thread checks and applies the records. Every
 * path is validated, then its parent is resolved beneath the pinned staging directory with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)
 * and the last component is only used with *at() calls that do not follow it. Regular
 * files are written under a temporary name (O_CREAT | O_EXCL | O_NOFOLLOW) and renamed into
 * place only once their checksum matched (recv_file.c; small ones in bulk, apply.c).
 * Directory modes, times and default ACLs are applied at the end (a default ACL would
 * otherwise be inherited by what we create).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include "migrate/dio.h"
#include "migrate/hash.h"
#include "migrate/internal.h"
#include "migrate/recv_int.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

#define ACL_DEFAULT "system.posix_acl_default"
#define ACL_ACCESS "system.posix_acl_access"

static void pcache_drop(struct receiver *r)
{
        if (r->oc.fd == r->pc_fd)
                r->oc.fd = -1; /* the number may be reused for another directory */
        if (r->pc_fd >= 0)
                close(r->pc_fd);
        r->pc_fd = -1;
        r->pc_len = 0;
}

/* Something at path was removed: forget the cached parent if it was inside. */
static void pcache_invalidate(struct receiver *r, const char *path, size_t len)
{
        if (r->pc_fd >= 0 && ((r->pc_len == len && memcmp(r->pc_path, path, len) == 0) ||
                              cta_mig_path_under(path, len, r->pc_path, r->pc_len)))
                pcache_drop(r);
}

/*
 * The parent directory of a validated path, confined beneath the staging directory; the
 * last component goes to r->name. ENOENT → *ret_fd = -1 when missing_ok.
 */
static int get_parent(struct receiver *r, const char *path, size_t len, bool missing_ok,
                      int *ret_fd, struct cta_error **err)
{
        size_t dl = len;
        while (dl > 0 && path[dl - 1] != '/')
                dl--;
        memcpy(r->name, path + dl, len - dl);
        r->name[len - dl] = 0;
        if (dl == 0) {
                *ret_fd = r->sfd;
                return 0;
        }
        dl--; /* without the slash */
        if (r->pc_fd >= 0 && r->pc_len == dl && memcmp(r->pc_path, path, dl) == 0) {
                *ret_fd = r->pc_fd;
                return 0;
        }
        pcache_drop(r);
        memcpy(r->pc_path, path, dl);
        r->pc_path[dl] = 0;
        int fd = cta_openat_beneath(r->sfd, r->pc_path, O_PATH | O_DIRECTORY);
        if (fd < 0 && errno == ENOENT && r->aw) {
                /* perhaps a file still queued for the worker: see what it really is */
                int dr = cta_aw_drain(r->aw, err);
                if (dr < 0)
                        return dr;
                fd = cta_openat_beneath(r->sfd, r->pc_path, O_PATH | O_DIRECTORY);
        }
        if (fd < 0) {
                if (errno == ENOENT && missing_ok) {
                        *ret_fd = -1;
                        return 0;
                }
                int code = errno == ENOENT ? CTA_E_MIG_STREAM
                           : (errno == ELOOP || errno == EXDEV || errno == ENOTDIR ||
                              errno == EAGAIN)
                                   ? CTA_E_MIG_PATH
                                   : CTA_E_IO;
                return sys_fail(err, code, "resolve the parent of", path, len);
        }
        r->pc_fd = fd;
        r->pc_len = dl;
        *ret_fd = fd;
        return 0;
}

/* Strictly increasing canonical order: no duplicates, parents before children. */
static int check_order(struct receiver *r, const char *path, size_t len, struct cta_error **err)
{
        if (r->prev_len && cta_mig_path_cmp(r->prev, r->prev_len, path, len) >= 0) {
                _cleanup_free_ char *p = cta_mig_path_fmt(path, len);
                return FAIL(r, CTA_E_MIG_STREAM, "path '%s' out of order or repeated", p);
        }
        memcpy(r->prev, path, len);
        r->prev_len = len;
        return 0;
}

static int check_path(struct receiver *r, const char *path, size_t len, struct cta_error **err)
{
        if (cta_mig_path_check(path, len, r->lim.max_path, r->lim.max_depth) < 0) {
                _cleanup_free_ char *p = cta_mig_path_fmt(path, len);
                return FAIL(r, CTA_E_MIG_PATH, "refused path '%s'", p);
        }
        return check_order(r, path, len, err);
}

static void progress(struct receiver *r, bool force)
{
        if (!r->o->progress.fn)
                return;
        uint64_t now = cta_now_ms();
        if (!force && now - r->last_progress_ms < 100)
                return;
        r->last_progress_ms = now;
        r->o->progress.fn(r->o->progress.ud, r->data_bytes + r->st.copied_bytes, r->decl_bytes,
                          r->entries, r->decl_entries);
}

/* ------------------------------------------------------------------ metadata */

static int set_one_xattr(int fd, const char *proc, const char *nm, const void *v, size_t vl)
{
        return fd >= 0 ? fsetxattr(fd, nm, v, vl, 0) : lsetxattr(proc, nm, v, vl, 0);
}

static bool entry_has_xattr(const struct cta_mig_entry *e, const char *nm)
{
        size_t pos = 0, nl = strlen(nm);
        struct cta_mig_xattr x;
        while (cta_mig_xattr_next(e, &pos, &x) > 0)
                if (x.name_len == nl && memcmp(x.name, nm, nl) == 0)
                        return true;
        return false;
}

/*
 * Set the entry's xattrs on fd (or on pfd/name when fd < 0, never following it). With
 * sync, xattrs the entry does not have are removed (existing or inherited ones).
 * A directory's default ACL is left to the end (skip_dacl).
 */
static int apply_xattrs(struct receiver *r, int fd, int pfd, const char *name,
                        const struct cta_mig_entry *e, bool skip_dacl, bool sync,
                        struct cta_error **err)
{
        char pbuf[64 + NAME_MAX];
        const char *proc = fd < 0 ? cta_mig_at_path(pfd, name, pbuf, sizeof(pbuf)) : NULL;
        if (sync) {
                char names[65536];
                ssize_t n = fd >= 0 ? flistxattr(fd, names, sizeof(names))
                                    : llistxattr(proc, names, sizeof(names));
                for (ssize_t off = 0; n > 0 && off < n;) {
                        const char *nm = names + off;
                        size_t nl = strnlen(nm, (size_t)(n - off));
                        off += (ssize_t)nl + 1;
                        if (!cta_xattr_name_ok(nm, nl) || (skip_dacl && streq(nm, ACL_DEFAULT)))
                                continue;
                        if (entry_has_xattr(e, nm))
                                continue;
                        int rr = fd >= 0 ? fremovexattr(fd, nm) : lremovexattr(proc, nm);
                        if (rr < 0 && errno != ENODATA)
                                return sys_fail(err, 0, "remove an xattr of", e->path, e->path_len);
                }
        }
        size_t pos = 0;
        struct cta_mig_xattr x;
        while (cta_mig_xattr_next(e, &pos, &x) > 0) {
                char nm[256];
                memcpy(nm, x.name, x.name_len);
                nm[x.name_len] = 0;
                if (skip_dacl && streq(nm, ACL_DEFAULT))
                        continue;
                if (set_one_xattr(fd, proc, nm, x.value, x.value_len) < 0) {
                        int e2 = errno;
                        _cleanup_free_ char *p = cta_mig_path_fmt(e->path, e->path_len);
                        int code = e2 == ENOTSUP || e2 == EPERM ? CTA_E_MIG_FS
                                   : e2 == EINVAL || e2 == E2BIG ? CTA_E_MIG_STREAM
                                                                : cta_mig_errno_code(e2);
                        errno = e2;
                        return cta_error_errno(err, code, "set xattr %s on '%s'", nm, p);
                }
        }
        return 0;
}

static void entry_times(const struct cta_mig_entry *e, struct timespec ts[2])
{
        ts[0] = (struct timespec){ .tv_sec = e->atime_sec, .tv_nsec = e->atime_nsec };
        ts[1] = (struct timespec){ .tv_sec = e->mtime_sec, .tv_nsec = e->mtime_nsec };
}

/* Owner, xattrs, mode (after chown, which clears setuid), times of an open file. */
int cta_recv_apply_meta_fd(struct receiver *r, int fd, const struct cta_mig_entry *e, bool sync,
                           struct cta_error **err)
{
        if (fchown(fd, e->uid, e->gid) < 0)
                return sys_fail(err, 0, "chown", e->path, e->path_len);
        int rr = apply_xattrs(r, fd, -1, NULL, e, false, sync, err);
        if (rr < 0)
                return rr;
        if (fchmod(fd, e->mode) < 0)
                return sys_fail(err, 0, "chmod", e->path, e->path_len);
        struct timespec ts[2];
        entry_times(e, ts);
        if (futimens(fd, ts) < 0)
                return sys_fail(err, 0, "set times of", e->path, e->path_len);
        return 0;
}

/* The same for a symlink or special file by name (never opened, never followed). */
static int apply_meta_at(struct receiver *r, int pfd, const char *name,
                         const struct cta_mig_entry *e, bool sync, struct cta_error **err)
{
        if (fchownat(pfd, name, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
                return sys_fail(err, 0, "chown", e->path, e->path_len);
        int rr = apply_xattrs(r, -1, pfd, name, e, false, sync, err);
        if (rr < 0)
                return rr;
        if (e->kind != CTA_MIG_K_LNK && fchmodat(pfd, name, e->mode, AT_SYMLINK_NOFOLLOW) < 0)
                return sys_fail(err, 0, "chmod", e->path, e->path_len);
        struct timespec ts[2];
        entry_times(e, ts);
        if (utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return sys_fail(err, 0, "set times of", e->path, e->path_len);
        return 0;
}

static int push_dir(struct receiver *r, const struct cta_mig_entry *e)
{
        if (r->ndirs == r->dirs_cap) {
                r->dirs_cap = r->dirs_cap ? r->dirs_cap * 2 : 256;
                r->dirs = cta_xrealloc(r->dirs, r->dirs_cap * sizeof(*r->dirs));
        }
        struct dir_meta *d = &r->dirs[r->ndirs++];
        *d = (struct dir_meta){ .path = cta_xstrndup(e->path, e->path_len), .mode = e->mode };
        entry_times(e, d->ts);
        size_t pos = 0;
        struct cta_mig_xattr x;
        while (cta_mig_xattr_next(e, &pos, &x) > 0)
                if (x.name_len == sizeof(ACL_DEFAULT) - 1 &&
                    memcmp(x.name, ACL_DEFAULT, x.name_len) == 0) {
                        d->dacl = cta_xmalloc(x.value_len ? x.value_len : 1);
                        memcpy(d->dacl, x.value, x.value_len);
                        d->dacl_len = x.value_len;
                }
        return 0;
}

static int finish_dirs(struct receiver *r, struct cta_error **err)
{
        for (size_t i = r->ndirs; i-- > 0;) {
                struct dir_meta *d = &r->dirs[i];
                int fd = d->path[0] ? cta_openat_beneath(r->sfd, d->path, O_RDONLY | O_DIRECTORY)
                                    : r->sfd;
                if (fd < 0)
                        return sys_fail(err, 0, "open directory", d->path, strlen(d->path));
                int rr = 0;
                if (d->dacl) {
                        if (fsetxattr(fd, ACL_DEFAULT, d->dacl, d->dacl_len, 0) < 0)
                                rr = sys_fail(err, errno == ENOTSUP ? CTA_E_MIG_FS : 0,
                                              "set the default ACL of", d->path, strlen(d->path));
                } else if (r->replace || !d->path[0]) {
                        if (fremovexattr(fd, ACL_DEFAULT) < 0 && errno != ENODATA &&
                            errno != ENOTSUP)
                                rr = sys_fail(err, 0, "remove the default ACL of", d->path,
                                              strlen(d->path));
                }
                if (!rr && fchmod(fd, d->mode) < 0)
                        rr = sys_fail(err, 0, "chmod", d->path, strlen(d->path));
                if (!rr && futimens(fd, d->ts) < 0)
                        rr = sys_fail(err, 0, "set times of", d->path, strlen(d->path));
                if (fd != r->sfd)
                        close(fd);
                if (rr < 0)
                        return rr;
        }
        return 0;
}

/* ------------------------------------------------------------------ records */

static int check_entry(struct receiver *r, const struct cta_mig_entry *e, struct cta_error **err)
{
        if (e->flags & ~CTA_MIG_EF_KNOWN)
                return FAIL(r, CTA_E_MIG_STREAM, "entry %llu: unknown flags 0x%x",
                            (unsigned long long)e->id, e->flags);
        if (e->id != r->next_id)
                return FAIL(r, CTA_E_MIG_STREAM, "entry id %llu, expected %llu",
                            (unsigned long long)e->id, (unsigned long long)r->next_id);
        if (++r->entries > r->lim.max_entries)
                return FAIL(r, CTA_E_TOO_LARGE, "more than %llu entries",
                            (unsigned long long)r->lim.max_entries);
        bool root = e->flags & CTA_MIG_EF_ROOT;
        if (root != (e->id == 0) || (root && (e->kind != CTA_MIG_K_DIR || e->path_len)))
                return FAIL(r, CTA_E_MIG_STREAM, "entry %llu: bad root flag",
                            (unsigned long long)e->id);
        if (e->mode & ~07777u || e->mtime_nsec >= 1000000000u || e->atime_nsec >= 1000000000u)
                return FAIL(r, CTA_E_MIG_STREAM, "entry %llu: bad mode or time",
                            (unsigned long long)e->id);
        if (!root) {
                int rr = check_path(r, e->path, e->path_len, err);
                if (rr < 0)
                        return rr;
        }
        if (e->nxattr > r->lim.max_xattrs)
                return FAIL(r, CTA_E_TOO_LARGE, "entry %llu: %u xattrs",
                            (unsigned long long)e->id, e->nxattr);
        size_t pos = 0, n = 0;
        struct cta_mig_xattr x;
        int xr;
        while ((xr = cta_mig_xattr_next(e, &pos, &x)) > 0) {
                n++;
                if (!cta_xattr_name_ok(x.name, x.name_len))
                        return FAIL(r, CTA_E_MIG_STREAM, "entry %llu: bad xattr name",
                                    (unsigned long long)e->id);
                if (x.value_len > r->lim.max_xattr_value)
                        return FAIL(r, CTA_E_TOO_LARGE, "entry %llu: xattr value of %u bytes",
                                    (unsigned long long)e->id, x.value_len);
        }
        if (xr < 0 || n != e->nxattr)
                return FAIL(r, CTA_E_MIG_STREAM, "entry %llu: malformed xattrs",
                            (unsigned long long)e->id);
        uint8_t other = e->flags & ~CTA_MIG_EF_ROOT;
        switch (e->kind) {
        case CTA_MIG_K_REG:
                if (e->target_len)
                        break;
                if ((e->flags & CTA_MIG_EF_UNCHANGED) && !r->incr_stream)
                        break;
                if ((e->flags & CTA_MIG_EF_BASED) &&
                    (!r->based_stream || (e->flags & CTA_MIG_EF_UNCHANGED)))
                        break;
                if (e->size > r->lim.max_file_size)
                        return FAIL(r, CTA_E_TOO_LARGE, "entry %llu: file of %llu bytes",
                                    (unsigned long long)e->id, (unsigned long long)e->size);
                return 0;
        case CTA_MIG_K_LNK:
                if (other || !e->target_len || memchr(e->target, 0, e->target_len))
                        break;
                return 0;
        case CTA_MIG_K_HARDLINK:
                if (other || e->target_len || e->nxattr || e->link_id >= e->id)
                        break;
                return 0;
        case CTA_MIG_K_DIR:
        case CTA_MIG_K_CHR:
        case CTA_MIG_K_BLK:
        case CTA_MIG_K_FIFO:
        case CTA_MIG_K_SOCK:
                if (other || e->target_len)
                        break;
                return 0;
        default:
                break;
        }
        return FAIL(r, CTA_E_MIG_STREAM, "entry %llu: bad kind %u or fields",
                    (unsigned long long)e->id, e->kind);
}

static int do_root(struct receiver *r, const struct cta_mig_entry *e, struct cta_error **err)
{
        if (fchown(r->sfd, e->uid, e->gid) < 0)
                return sys_fail(err, 0, "chown", "(root)", 6);
        /* a default ACL inherited from above would be inherited by everything we create;
         * the root's own one, if any, is set at the end */
        if (fremovexattr(r->sfd, ACL_DEFAULT) < 0 && errno != ENODATA && errno != ENOTSUP)
                return sys_fail(err, 0, "remove the default ACL of", "(root)", 6);
        int rr = apply_xattrs(r, r->sfd, -1, NULL, e, true, true, err);
        if (rr < 0)
                return rr;
        push_dir(r, e);
        r->st.dirs++;
        return 0;
}

static int do_dir(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                  struct cta_error **err)
{
        if (mkdirat(pfd, r->name, 0700) < 0) {
                if (errno != EEXIST || !r->replace)
                        return sys_fail(err, errno == EEXIST ? CTA_E_MIG_STREAM : 0, "mkdir",
                                        e->path, e->path_len);
                struct stat st;
                if (fstatat(pfd, r->name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return sys_fail(err, 0, "stat", e->path, e->path_len);
                if (!S_ISDIR(st.st_mode)) {
                        int rr = cta_rm_rf_at(pfd, r->name);
                        if (rr < 0 || mkdirat(pfd, r->name, 0700) < 0) {
                                if (rr < 0)
                                        errno = -rr;
                                return sys_fail(err, 0, "replace", e->path, e->path_len);
                        }
                }
        }
        int fd = openat(pfd, r->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return sys_fail(err, 0, "open directory", e->path, e->path_len);
        int rr = 0;
        if (fchown(fd, e->uid, e->gid) < 0)
                rr = sys_fail(err, 0, "chown", e->path, e->path_len);
        if (!rr)
                rr = apply_xattrs(r, fd, -1, NULL, e, true, r->replace, err);
        close(fd);
        if (rr < 0)
                return rr;
        push_dir(r, e);
        r->st.dirs++;
        return 0;
}

/* Make room for a new non-directory at pfd/name in replace mode. Returns 1 if what is
 * there can stay (same kind, same target or device), 0 if the name is now free. */
int cta_recv_clear_name(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                        struct cta_error **err)
{
        struct stat st;
        if (fstatat(pfd, r->name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 0;
                return sys_fail(err, 0, "stat", e->path, e->path_len);
        }
        if (cta_mig_kind_of(st.st_mode) == e->kind) {
                if (e->kind == CTA_MIG_K_LNK) {
                        char t[PATH_MAX];
                        ssize_t n = readlinkat(pfd, r->name, t, sizeof(t));
                        if (n == e->target_len && memcmp(t, e->target, (size_t)n) == 0)
                                return 1;
                } else if (e->kind == CTA_MIG_K_CHR || e->kind == CTA_MIG_K_BLK) {
                        if (major(st.st_rdev) == e->rdev_major && minor(st.st_rdev) == e->rdev_minor)
                                return 1;
                } else {
                        return 1;
                }
        }
        if (S_ISDIR(st.st_mode))
                pcache_invalidate(r, e->path, e->path_len);
        int rr = cta_rm_rf_at(pfd, r->name);
        if (rr < 0) {
                errno = -rr;
                return sys_fail(err, 0, "replace", e->path, e->path_len);
        }
        return 0;
}

static int do_special(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                      struct cta_error **err)
{
        char target[PATH_MAX];
        mode_t type = 0;
        dev_t dev = 0;
        switch (e->kind) {
        case CTA_MIG_K_LNK:
                memcpy(target, e->target, e->target_len);
                target[e->target_len] = 0;
                break;
        case CTA_MIG_K_CHR:
        case CTA_MIG_K_BLK:
                if (r->o->deny_devices || geteuid() != 0) {
                        _cleanup_free_ char *p = cta_mig_path_fmt(e->path, e->path_len);
                        return FAIL(r, CTA_E_MIG_STREAM, "device node '%s' not allowed here", p);
                }
                type = e->kind == CTA_MIG_K_CHR ? S_IFCHR : S_IFBLK;
                dev = makedev(e->rdev_major, e->rdev_minor);
                break;
        case CTA_MIG_K_FIFO:
                type = S_IFIFO;
                break;
        default:
                type = S_IFSOCK;
                break;
        }
        for (int attempt = 0;; attempt++) {
                int rr = e->kind == CTA_MIG_K_LNK ? symlinkat(target, pfd, r->name)
                                                   : mknodat(pfd, r->name, type | 0600, dev);
                if (rr == 0)
                        break;
                if (errno != EEXIST || !r->replace || attempt)
                        return sys_fail(err, errno == EEXIST ? CTA_E_MIG_STREAM : 0, "create",
                                        e->path, e->path_len);
                rr = cta_recv_clear_name(r, pfd, e, err);
                if (rr < 0)
                        return rr;
                if (rr == 1)
                        break;
        }
        if (e->kind == CTA_MIG_K_LNK)
                r->st.symlinks++;
        else
                r->st.specials++;
        return apply_meta_at(r, pfd, r->name, e, r->replace, err);
}

static struct link_rec *find_link(struct receiver *r, uint64_t id)
{
        size_t lo = 0, hi = r->nlinks;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (r->links[mid].id == id)
                        return &r->links[mid];
                if (r->links[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

void cta_recv_add_link(struct receiver *r, uint64_t id, const char *path, size_t len,
                       const struct stat *st)
{
        if (r->nlinks == r->links_cap) {
                r->links_cap = r->links_cap ? r->links_cap * 2 : 64;
                r->links = cta_xrealloc(r->links, r->links_cap * sizeof(*r->links));
        }
        r->links[r->nlinks++] = (struct link_rec){ .id = id, .path = cta_xstrndup(path, len),
                                                   .dev = st->st_dev, .ino = st->st_ino };
}

static int do_hardlink(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                       struct cta_error **err)
{
        struct link_rec *l = find_link(r, e->link_id);
        if (!l)
                return FAIL(r, CTA_E_MIG_STREAM, "entry %llu: hard link to unknown id %llu",
                            (unsigned long long)e->id, (unsigned long long)e->link_id);
        const char *slash = strrchr(l->path, '/');
        const char *tname = slash ? slash + 1 : l->path;
        int tpfd = r->sfd;
        if (slash) {
                _cleanup_free_ char *dir = cta_xstrndup(l->path, (size_t)(slash - l->path));
                tpfd = cta_openat_beneath(r->sfd, dir, O_PATH | O_DIRECTORY);
                if (tpfd < 0)
                        return sys_fail(err, CTA_E_MIG_STREAM, "hard link target", l->path,
                                        strlen(l->path));
        }
        int rr = 0;
        struct stat st;
        if (fstatat(tpfd, tname, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            st.st_ino != l->ino || st.st_dev != l->dev) {
                rr = FAIL(r, CTA_E_MIG_STREAM, "entry %llu: hard link target changed",
                          (unsigned long long)e->id);
                goto out;
        }
        if (linkat(tpfd, tname, pfd, r->name, 0) == 0)
                goto out;
        if (errno != EEXIST || !r->replace) {
                rr = sys_fail(err, errno == EEXIST ? CTA_E_MIG_STREAM : 0, "link", e->path,
                              e->path_len);
                goto out;
        }
        struct stat cur;
        if (fstatat(pfd, r->name, &cur, AT_SYMLINK_NOFOLLOW) == 0 && cur.st_ino == st.st_ino &&
            cur.st_dev == st.st_dev)
                goto out; /* already that file */
        char tmp[64];
        snprintf(tmp, sizeof(tmp), ".cta-mig.%llu.link", (unsigned long long)e->id);
        (void)unlinkat(pfd, tmp, 0);
        if (linkat(tpfd, tname, pfd, tmp, 0) < 0) {
                rr = sys_fail(err, 0, "link", e->path, e->path_len);
                goto out;
        }
        if (renameat(pfd, tmp, pfd, r->name) < 0) {
                if (errno != EISDIR && errno != ENOTEMPTY && errno != EEXIST)
                        rr = sys_fail(err, 0, "link", e->path, e->path_len);
                else if ((rr = cta_recv_clear_name(r, pfd, e, err)) == 0 &&
                         renameat(pfd, tmp, pfd, r->name) < 0)
                        rr = sys_fail(err, 0, "link", e->path, e->path_len);
                if (rr < 0) {
                        (void)unlinkat(pfd, tmp, 0);
                        goto out;
                }
        }
out:
        if (rr == 0 && r->bm_dirfd >= 0 && (uint64_t)st.st_size >= CTA_MIG_BLOCKMAP_MIN) {
                /* linking changed the target's ctime, not its content */
                struct stat after;
                if (fstatat(tpfd, tname, &after, AT_SYMLINK_NOFOLLOW) == 0)
                        cta_bm_refresh(r->bm_dirfd, &st, &after);
        }
        if (tpfd != r->sfd)
                close(tpfd);
        if (rr == 0)
                r->st.hardlinks++;
        return rr;
}

/* A regular file the destination already has (incremental): metadata only. */
/* Does the file at pfd/r->name already have e's owner, mode, times and (no) xattrs? */
static bool meta_already(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                         const struct stat *st)
{
        if (e->nxattr || st->st_uid != e->uid || st->st_gid != e->gid ||
            (st->st_mode & 07777) != e->mode || st->st_mtim.tv_sec != e->mtime_sec ||
            st->st_mtim.tv_nsec != (long)e->mtime_nsec || st->st_atim.tv_sec != e->atime_sec ||
            st->st_atim.tv_nsec != (long)e->atime_nsec)
                return false;
        char pbuf[64 + NAME_MAX], names[4096];
        ssize_t n = llistxattr(cta_mig_at_path(pfd, r->name, pbuf, sizeof(pbuf)), names,
                               sizeof(names));
        if (n < 0)
                return errno == ENOTSUP;
        for (ssize_t off = 0; off < n;) {
                size_t nl = strnlen(names + off, (size_t)(n - off));
                if (cta_xattr_name_ok(names + off, nl))
                        return false; /* one to remove */
                off += (ssize_t)nl + 1;
        }
        return true;
}

static int do_unchanged(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                        struct cta_error **err)
{
        /* the common case of a later pass: nothing to do, found with two system calls */
        struct stat pre;
        if (fstatat(pfd, r->name, &pre, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(pre.st_mode) &&
            (uint64_t)pre.st_size == e->size && meta_already(r, pfd, e, &pre)) {
                if (e->flags & CTA_MIG_EF_LINKABLE)
                        cta_recv_add_link(r, e->id, e->path, e->path_len, &pre);
                r->st.unchanged++;
                return 0;
        }
        int fd = openat(pfd, r->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return sys_fail(err, CTA_E_MIG_STREAM, "unchanged file", e->path, e->path_len);
        struct stat st;
        int rr = 0;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != e->size) {
                _cleanup_free_ char *p = cta_mig_path_fmt(e->path, e->path_len);
                rr = FAIL(r, CTA_E_MIG_STREAM, "'%s' is not the file the source expects", p);
        }
        if (!rr)
                rr = cta_recv_apply_meta_fd(r, fd, e, true, err);
        if (!rr && r->bm_dirfd >= 0 && e->size >= CTA_MIG_BLOCKMAP_MIN) {
                /* the metadata changed the ctime, not the content */
                struct stat after;
                if (fstat(fd, &after) == 0)
                        cta_bm_refresh(r->bm_dirfd, &st, &after);
        }
        if (!rr && (e->flags & CTA_MIG_EF_LINKABLE))
                cta_recv_add_link(r, e->id, e->path, e->path_len, &st);
        close(fd);
        if (!rr)
                r->st.unchanged++;
        return rr;
}

/* ------------------------------------------------------------------ small files, fast */

#define FAST_MAX_SIZE (1u << 20)
#define FAST_MAX_EXT CTA_AW_MAX_EXT


/*
 * A small regular file into a fresh staging directory, when all its records (DATA*,
 * FILE_END after the entry of elen bytes at the ring's head) have arrived: the checksum is
 * verified on the records themselves first, then the file is created under its final name
 * with O_EXCL, written and given its metadata, times last (so a crash in between leaves a
 * file whose mtime does not match the source's: a later pass resends it). No temporary
 * name, no rename, and no chown/chmod when creation already gives the right owner and mode.
 * Returns 1 when it does not apply (the normal path then runs and reports any error).
 */
static int file_fast(struct receiver *r, int pfd, const struct cta_mig_entry *e, size_t elen,
                     struct cta_error **err)
{
        struct cta_mig_ring *g = &r->ring;
        struct {
                const uint8_t *p;
                uint64_t off;
                size_t n;
        } ext[FAST_MAX_EXT];
        size_t next = 0;
        if (r->replace || e->size > FAST_MAX_SIZE || (e->flags & ~CTA_MIG_EF_LINKABLE))
                return 1;
        uint64_t tail = cta_mig_ring_tail(g);
        uint64_t start = g->head + elen, at = start, pos = 0, total = 0;
        const uint8_t *fend = NULL;
        while (!fend) {
                const uint8_t *h = cta_mig_ring_peek(g, at, CTA_MIG_REC_HDR, tail);
                if (!h)
                        return 1;
                uint32_t len = cta_mig_get32(h + 4);
                if (h[1] || cta_mig_get16(h + 2) || len > r->lim.max_record)
                        return 1;
                const uint8_t *p = cta_mig_ring_peek(g, at + CTA_MIG_REC_HDR, len, tail);
                if (!p)
                        return 1;
                at += CTA_MIG_REC_HDR + len;
                if (h[0] == CTA_MIG_R_FILE_END && len == CTA_MIG_FILE_END_LEN) {
                        fend = p;
                } else if (h[0] == CTA_MIG_R_DATA && len > 8 && next < FAST_MAX_EXT) {
                        uint64_t off = cta_mig_get64(p), n = len - 8;
                        if (off < pos || n > e->size || off > e->size - n)
                                return 1;
                        ext[next++] = (typeof(ext[0])){ p + 8, off, (size_t)n };
                        pos = off + n;
                        total += n;
                } else {
                        return 1;
                }
        }
        if (cta_mig_get64(fend) != total || total > r->lim.max_total_bytes - r->data_bytes)
                return 1;
        XXH3_128bits_reset(r->hash);
        pos = 0;
        for (size_t i = 0; i < next; i++) {
                cta_mig_hash_zeros(r->hash, ext[i].off - pos);
                cta_xxh3_128_update(r->hash, ext[i].p, ext[i].n);
                pos = ext[i].off + ext[i].n;
        }
        cta_mig_hash_zeros(r->hash, e->size - pos);
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(r->hash));
        if (memcmp(c.digest, fend + 8, 16) != 0) {
                _cleanup_free_ char *ps = cta_mig_path_fmt(e->path, e->path_len);
                return FAIL(r, CTA_E_MIG_CHECKSUM, "'%s': checksum mismatch", ps);
        }

        struct cta_mig_extent xv[FAST_MAX_EXT];
        for (size_t i = 0; i < next; i++)
                xv[i] = (struct cta_mig_extent){ ext[i].off, ext[i].p, ext[i].n };
        struct stat st;
        int rr = 1;
        if (!(e->flags & CTA_MIG_EF_LINKABLE)) { /* (linkable ones must exist at once) */
                if (!r->aw)
                        r->aw = cta_aw_start(r->sfd, &r->oc);
                size_t dl = e->path_len;
                while (dl > 0 && e->path[dl - 1] != '/')
                        dl--;
                if (r->aw)
                        rr = cta_aw_put(r->aw, e, dl ? dl - 1 : 0, xv, next, err);
                if (rr < 0)
                        return rr;
        }
        if (rr > 0) {
                rr = cta_mig_create_small(pfd, r->name, e, xv, next, &r->oc,
                                          (e->flags & CTA_MIG_EF_LINKABLE) ? &st : NULL, err);
                if (rr < 0)
                        return rr;
        }
        if (e->flags & CTA_MIG_EF_LINKABLE)
                cta_recv_add_link(r, e->id, e->path, e->path_len, &st);
        r->skip = (size_t)(at - start);
        r->data_bytes += total;
        cta_recv_count_cached(r, total);
        r->st.files++;
        return 0;
}


static int do_entry(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err)
{
        struct cta_mig_entry e;
        if (cta_mig_dec_entry(p, len, &e) < 0)
                return FAIL(r, CTA_E_MIG_STREAM, "malformed entry record");
        int rr = check_entry(r, &e, err);
        if (rr < 0)
                return rr;
        r->next_id++;
        if (r->state == ST_ROOT) {
                r->state = ST_ENTRIES;
                return do_root(r, &e, err);
        }
        int pfd;
        rr = get_parent(r, e.path, e.path_len, false, &pfd, err);
        if (rr < 0)
                return rr;
        switch (e.kind) {
        case CTA_MIG_K_DIR:
                return do_dir(r, pfd, &e, err);
        case CTA_MIG_K_REG:
                if (e.flags & CTA_MIG_EF_UNCHANGED)
                        return do_unchanged(r, pfd, &e, err);
                rr = file_fast(r, pfd, &e, len, err);
                if (rr <= 0)
                        return rr;
                return cta_recv_file_begin(r, pfd, &e, err);
        case CTA_MIG_K_HARDLINK:
                return do_hardlink(r, pfd, &e, err);
        default:
                return do_special(r, pfd, &e, err);
        }
}

static int do_delete(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err)
{
        if (!r->incr_stream)
                return FAIL(r, CTA_E_MIG_STREAM, "delete record in a full stream");
        if (len < 2 || (size_t)cta_mig_get16(p) + 2 != len)
                return FAIL(r, CTA_E_MIG_STREAM, "malformed delete record");
        const char *path = (const char *)p + 2;
        size_t pl = len - 2;
        int rr = check_path(r, path, pl, err);
        if (rr < 0)
                return rr;
        int pfd;
        rr = get_parent(r, path, pl, true, &pfd, err);
        if (rr < 0)
                return rr;
        r->deletes++;
        if (pfd < 0)
                return 0;
        pcache_invalidate(r, path, pl);
        rr = cta_rm_rf_at(pfd, r->name);
        if (rr < 0 && rr != -ENOENT) {
                errno = -rr;
                return sys_fail(err, 0, "delete", path, pl);
        }
        r->st.deleted++;
        return 0;
}

static int do_header(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err)
{
        if (len != CTA_MIG_HEADER_LEN || memcmp(p, CTA_MIG_MAGIC, 8) != 0)
                return FAIL(r, CTA_E_MIG_STREAM, "not a migration stream");
        uint16_t ver = cta_mig_get16(p + 8), minver = cta_mig_get16(p + 10);
        if (minver > CTA_MIG_STREAM_VERSION || minver < 1 || minver > ver)
                return FAIL(r, CTA_E_MIG_VERSION, "stream version %u (min %u), we speak %u", ver,
                            minver, CTA_MIG_STREAM_VERSION);
        uint32_t flags = cta_mig_get32(p + 12);
        if (flags & ~(uint32_t)CTA_MIG_HF_KNOWN)
                return FAIL(r, CTA_E_MIG_STREAM, "unknown stream flags 0x%x", flags);
        r->incr_stream = flags & CTA_MIG_HF_INCREMENTAL;
        r->based_stream = (flags & CTA_MIG_HF_BASED) && r->incr_stream && minver >= 2;
        if ((flags & CTA_MIG_HF_BASED) && !r->based_stream)
                return FAIL(r, CTA_E_MIG_STREAM, "block deltas outside an incremental v2 stream");
        r->blocksum = flags & CTA_MIG_HF_BLOCKSUM;
        r->aligned_stream = flags & CTA_MIG_HF_ALIGNED;
        if (r->aligned_stream && minver < 4)
                return FAIL(r, CTA_E_MIG_STREAM, "padding in a stream for version %u", minver);
        if (r->blocksum && minver < 3)
                return FAIL(r, CTA_E_MIG_STREAM, "block-list checksums in a stream for version %u",
                            minver);
        if (r->incr_stream && !r->o->allow_existing)
                return FAIL(r, CTA_E_MIG_STREAM, "incremental stream not allowed here");
        r->replace = r->existed || r->incr_stream;
        r->decl_entries = cta_mig_get64(p + 16);
        r->decl_bytes = cta_mig_get64(p + 24);
        if (r->decl_entries > r->lim.max_entries || r->decl_bytes > r->lim.max_total_bytes)
                return FAIL(r, CTA_E_TOO_LARGE, "declared %llu entries, %llu bytes: over the limits",
                            (unsigned long long)r->decl_entries,
                            (unsigned long long)r->decl_bytes);
        r->state = ST_ROOT;
        return 0;
}

static int do_trailer(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err)
{
        if (len != CTA_MIG_TRAILER_LEN)
                return FAIL(r, CTA_E_MIG_STREAM, "bad trailer");
        if (cta_mig_get64(p) != r->entries || cta_mig_get64(p + 8) != r->data_bytes ||
            cta_mig_get64(p + 16) != r->deletes)
                return FAIL(r, CTA_E_MIG_STREAM, "trailer counts differ from the stream");
        int rr = cta_aw_drain(r->aw, err); /* directory times go last */
        if (rr < 0)
                return rr;
        rr = finish_dirs(r, err);
        if (rr < 0)
                return rr;
        r->state = ST_DONE;
        return 0;
}

/* ring_get, for a receiver that may have lent the io's bytes to the direct-I/O helper:
 * if the lent bytes and the record together are more than the io can ever queue, it
 * takes them back first. (Gathered pieces are not handed on early when it waits: writes
 * of a window's size keep this disk faster than writes of what arrived so far.) */
static int rec_get(struct receiver *r, size_t n, const uint8_t **ret, struct cta_error **err)
{
        struct cta_mig_ring *g = &r->ring;
        if (g->view && g->rel < g->head && g->tail - g->head < n &&
            !cta_mig_ring_view(g, n) && g->rerr == CTA_E_TOO_LARGE) {
                g->rerr = 0;
                if (cta_dio_unlend(&r->dio) < 0)
                        return sys_fail(err, 0, "write", r->fpath, r->fpath_len);
                r->hold = UINT64_MAX;
                cta_mig_ring_consume(g, 0, r->hold);
        }
        return cta_mig_ring_get(g, n, ret, err);
}

static int run(struct receiver *r, struct cta_error **err)
{
        unsigned n = 0;
        while (r->state != ST_DONE) {
                const uint8_t *h, *p;
                int rr = rec_get(r, CTA_MIG_REC_HDR, &h, err);
                if (rr < 0)
                        return rr;
                uint8_t type = h[0];
                uint32_t len = cta_mig_get32(h + 4);
                if (h[1] || cta_mig_get16(h + 2))
                        return FAIL(r, CTA_E_MIG_STREAM, "record flags set");
                if (len > r->lim.max_record)
                        return FAIL(r, CTA_E_TOO_LARGE, "record of %u bytes", len);
                cta_mig_ring_consume(&r->ring, CTA_MIG_REC_HDR, r->hold);
                rr = rec_get(r, len, &p, err);
                if (rr < 0)
                        return rr;
                if (type == CTA_MIG_R_PAD) {
                        /* at most one, shorter than the alignment, before a record
                         * after the root */
                        if (!r->aligned_stream || r->state == ST_HEADER ||
                            r->state == ST_ROOT || r->last_pad ||
                            len >= CTA_MIG_ALIGN)
                                return FAIL(r, CTA_E_MIG_STREAM, "unexpected padding record");
                        r->last_pad = true;
                        cta_mig_ring_consume(&r->ring, len, r->hold);
                        continue;
                }
                r->last_pad = false;
                if (r->o->cancel && atomic_load(r->o->cancel))
                        return FAIL(r, CTA_E_CANCELLED, "migration cancelled");
                bool ok_type;
                switch (r->state) {
                case ST_HEADER:
                        ok_type = type == CTA_MIG_R_HEADER;
                        rr = ok_type ? do_header(r, p, len, err) : 0;
                        break;
                case ST_ROOT:
                        ok_type = type == CTA_MIG_R_ENTRY;
                        rr = ok_type ? do_entry(r, p, len, err) : 0;
                        break;
                case ST_FILE:
                        ok_type = type == CTA_MIG_R_DATA || type == CTA_MIG_R_FILE_END ||
                                  type == CTA_MIG_R_COPY;
                        if (type == CTA_MIG_R_DATA)
                                rr = cta_recv_file_data(r, p, len, err);
                        else if (type == CTA_MIG_R_COPY)
                                rr = cta_recv_file_copy(r, p, len, err);
                        else if (ok_type)
                                rr = cta_recv_file_end(r, p, len, err);
                        break;
                default:
                        ok_type = type == CTA_MIG_R_ENTRY || type == CTA_MIG_R_DELETE ||
                                  type == CTA_MIG_R_TRAILER;
                        if (type == CTA_MIG_R_ENTRY)
                                rr = do_entry(r, p, len, err);
                        else if (type == CTA_MIG_R_DELETE)
                                rr = do_delete(r, p, len, err);
                        else if (ok_type)
                                rr = do_trailer(r, p, len, err);
                        break;
                }
                if (!ok_type)
                        return FAIL(r, CTA_E_MIG_STREAM, "unexpected record type %u", type);
                if (rr < 0)
                        return rr;
                r->hold = cta_dio_lent_from(&r->dio);
                cta_mig_ring_consume(&r->ring, len + r->skip, r->hold);
                r->skip = 0;
                if ((++n & 63) == 0)
                        progress(r, false);
        }
        progress(r, true);
        return 0;
}

static void limits_default(struct cta_mig_limits *l, const struct cta_mig_limits *in)
{
        *l = *in;
        if (!l->max_entries)
                l->max_entries = 16u << 20;
        if (!l->max_total_bytes)
                l->max_total_bytes = UINT64_MAX;
        if (!l->max_file_size)
                l->max_file_size = 16ull << 40;
        if (!l->max_xattrs)
                l->max_xattrs = 256;
        if (!l->max_xattr_value)
                l->max_xattr_value = 65536;
        if (!l->max_path || l->max_path > PATH_MAX - 1)
                l->max_path = PATH_MAX - 1;
        if (!l->max_depth || l->max_depth > CTA_WALK_MAX_DEPTH)
                l->max_depth = CTA_WALK_MAX_DEPTH;
        if (!l->max_record)
                l->max_record = 8u << 20;
}

/* Create (or open, when allowed) the staging directory. */
static int open_staging(struct receiver *r, struct cta_error **err)
{
        const char *n = r->staging_name;
        if (!n || !n[0] || strchr(n, '/') || streq(n, ".") || streq(n, "..") ||
            strlen(n) > NAME_MAX)
                return cta_error_set(err, CTA_E_INVALID, 0, "bad staging name");
        if (mkdirat(r->parent_fd, n, 0700) == 0)
                r->created = true;
        else if (errno != EEXIST || !r->o->allow_existing)
                return cta_error_errno(err, errno == EEXIST ? CTA_E_PRIVATE_EXISTS
                                                            : cta_mig_errno_code(errno),
                                       "create the staging directory %s", n);
        r->sfd = openat(r->parent_fd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r->sfd < 0) {
                int e = errno;
                if (r->created)
                        (void)unlinkat(r->parent_fd, n, AT_REMOVEDIR);
                errno = e;
                return cta_error_errno(err, CTA_E_IO, "open the staging directory %s", n);
        }
        r->existed = !r->created;
        return 0;
}

/* The process umask without changing it (umask(2) would race with other threads). */
static mode_t read_umask(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[128];
        unsigned m = 0777;
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "Umask: %o", &m) == 1)
                        break;
        if (f)
                fclose(f);
        return (mode_t)m & 0777;
}

static void remove_staging(struct receiver *r)
{
        struct stat a, b;
        if (fstat(r->sfd, &a) < 0 || fstatat(r->parent_fd, r->staging_name, &b,
                                             AT_SYMLINK_NOFOLLOW) < 0 ||
            a.st_ino != b.st_ino || a.st_dev != b.st_dev)
                return; /* moved away by someone else: leave it */
        int rr = cta_rm_rf_at(r->parent_fd, r->staging_name);
        if (rr < 0)
                log_warning("migrate: cannot remove the staging directory: %s", strerror(-rr));
}

int cta_mig_recv(int parent_dirfd, const char *staging_name, const struct cta_mig_io *io,
                 const struct cta_mig_recv_opts *o, struct cta_mig_stats *ret,
                 struct cta_error **err)
{
        static const struct cta_mig_recv_opts no_opts;
        struct receiver *r = cta_xcalloc(1, sizeof(*r));
        struct cta_error *e = NULL;
        int rr;
        r->o = o ? o : &no_opts;
        limits_default(&r->lim, &r->o->limits);
        r->parent_fd = parent_dirfd;
        r->staging_name = staging_name;
        r->sfd = r->pc_fd = r->ffd = r->oc.fd = r->bfd = r->ibm = -1;
        r->hold = UINT64_MAX;
        r->bmw.fd = -1;
        cta_dio_init(&r->dio);
        r->bm_dirfd = cta_bm_opendir(r->o->blockmap_dir);
        r->oc.euid = geteuid();
        r->oc.egid = getegid();
        r->oc.umask = read_umask();
        r->hash = XXH3_createState();
        if (!r->hash || cta_bsum_init(&r->bsum) < 0) {
                rr = cta_error_set(&e, CTA_E_NOMEM, 0, "hash state");
                goto out;
        }
        rr = open_staging(r, &e);
        if (rr < 0)
                goto out;

        struct cta_mig_ring *g = &r->ring;
        rr = cta_mig_ring_open(g, io, r->lim.max_record, &e);
        if (rr == 0) {
                rr = run(r, &e);
                cta_mig_ring_close(g, rr < 0);
        }
        r->st.wire_bytes = g->head;
        r->st.entries = r->entries;
        r->st.data_bytes = r->data_bytes;
        cta_mig_ring_free(g);
out:
        /* before any cleanup: it creates files in the staging tree (a kept one gets the
         * verified files still queued) */
        if (rr < 0 && r->o->keep_on_failure)
                (void)cta_aw_drain(r->aw, NULL);
        cta_aw_stop(r->aw);
        r->aw = NULL;
        cta_dio_end(&r->dio); /* what it still holds is dropped with the file */
        if (r->ffd >= 0) {
                close(r->ffd);
                if (!r->inplace) /* (one updated in place is left as it is) */
                        (void)unlinkat(r->fpfd, r->tmpname, 0);
        }
        if (r->ibm >= 0)
                close(r->ibm);
        cta_bm_abort(&r->bmw);
        if (r->bfd >= 0)
                close(r->bfd);
        if (r->bm_dirfd >= 0)
                close(r->bm_dirfd);
        free(r->cbuf);
        pcache_drop(r);
        if (rr < 0 && r->sfd >= 0 && !r->o->keep_on_failure)
                remove_staging(r);
        if (r->sfd >= 0)
                close(r->sfd);
        for (size_t i = 0; i < r->ndirs; i++) {
                free(r->dirs[i].path);
                free(r->dirs[i].dacl);
        }
        free(r->dirs);
        for (size_t i = 0; i < r->nlinks; i++)
                free(r->links[i].path);
        free(r->links);
        free(r->fx);
        if (r->hash)
                XXH3_freeState(r->hash);
        r->st.direct_bytes = r->dio.direct_bytes;
        r->st.lent_bytes = r->dio.lent_bytes;
        cta_dio_free(&r->dio);
        cta_bsum_done(&r->bsum);
        if (rr >= 0 && ret)
                *ret = r->st;
        free(r);
        if (rr < 0) {
                if (err)
                        *err = e;
                else
                        cta_error_free(e);
                return rr;
        }
        return 0;
}
