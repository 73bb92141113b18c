/*
 * The receiver's small-file path (docs/migration-stream.md, "How the receiver applies it"):
 * a verified small file is created under its final name in a fresh staging directory, and
 * a worker thread does that for the receiver so that its parsing, checking and hashing
 * overlap with the file system's work (creating the inode and its directory entry is most
 * of the cost of a small file).
 *
 * The receiver queues files whose checksum it has verified, with their parent directory's
 * path (which it has created before); the worker resolves that path beneath the staging
 * directory (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, once per directory: files come
 * directory by directory) and creates, writes and finishes each file in queue order. The
 * receiver drains the queue before anything that needs the files to exist (directory times
 * at the end) and stops it (dropping what is queued) before it cleans up after a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "migrate/internal.h"
#include "util/error.h"
#include "util/util.h"

static int fail_errno(struct cta_error **err, int code_or_0, const char *what,
                      const struct cta_mig_entry *e)
{
        int en = errno;
        _cleanup_free_ char *p = cta_mig_path_fmt(e->path, e->path_len);
        errno = en;
        return cta_error_errno(err, code_or_0 ? code_or_0 : cta_mig_errno_code(en), "%s '%s'",
                               what, p);
}

int cta_mig_create_small(int pfd, const char *name, const struct cta_mig_entry *e,
                         const struct cta_mig_extent *ext, size_t next,
                         struct cta_owner_cache *oc, struct stat *ret_st,
                         struct cta_error **err)
{
        bool known = oc->fd == pfd && pfd >= 0;
        bool skip_chown = known && oc->ok && e->uid == oc->euid && e->gid == oc->egid;
        bool skip_chmod = skip_chown && !e->nxattr && !(e->mode & 07000) && !(e->mode & oc->umask);
        int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        skip_chmod ? e->mode : 0600);
        if (fd < 0)
                return fail_errno(err, errno == EEXIST ? CTA_E_MIG_STREAM : 0, "create", e);
        int rr = 0;
        uint64_t pos = 0;
        struct stat st;
        for (size_t i = 0; i < next && !rr; i++) {
                const uint8_t *d = ext[i].data;
                for (size_t done = 0; done < ext[i].len;) {
                        ssize_t w = pwrite(fd, d + done, ext[i].len - done,
                                           (off_t)(ext[i].offset + done));
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0) {
                                rr = fail_errno(err, 0, "write", e);
                                break;
                        }
                        done += (size_t)w;
                }
                pos = ext[i].offset + ext[i].len;
        }
        if (!rr && pos < e->size && ftruncate(fd, (off_t)e->size) < 0)
                rr = fail_errno(err, 0, "truncate", e);
        if (!rr && (!known || ret_st)) {
                if (fstat(fd, &st) < 0) {
                        rr = fail_errno(err, 0, "stat", e);
                } else if (!known) {
                        /* what creating a file here gives: the same for every file of this
                         * directory during the stream (its mode is set at the end) */
                        oc->fd = pfd;
                        oc->ok = st.st_uid == oc->euid && st.st_gid == oc->egid;
                }
        }
        if (!rr && !skip_chown && fchown(fd, e->uid, e->gid) < 0)
                rr = fail_errno(err, 0, "chown", e);
        size_t xpos = 0;
        struct cta_mig_xattr x;
        while (!rr && cta_mig_xattr_next(e, &xpos, &x) > 0) {
                char nm[256];
                memcpy(nm, x.name, x.name_len);
                nm[x.name_len] = 0;
                if (fsetxattr(fd, nm, x.value, x.value_len, 0) < 0) {
                        int en = errno;
                        rr = fail_errno(err,
                                        en == ENOTSUP || en == EPERM  ? CTA_E_MIG_FS
                                        : en == EINVAL || en == E2BIG ? CTA_E_MIG_STREAM
                                                                      : 0,
                                        "set an xattr on", e);
                }
        }
        if (!rr && !skip_chmod && fchmod(fd, e->mode) < 0)
                rr = fail_errno(err, 0, "chmod", e);
        struct timespec ts[2] = {
                { .tv_sec = e->atime_sec, .tv_nsec = e->atime_nsec },
                { .tv_sec = e->mtime_sec, .tv_nsec = e->mtime_nsec },
        };
        if (!rr && futimens(fd, ts) < 0)
                rr = fail_errno(err, 0, "set times of", e);
        close(fd);
        if (rr < 0) {
                (void)unlinkat(pfd, name, 0);
                return rr;
        }
        if (ret_st)
                *ret_st = st;
        return 0;
}

/* ------------------------------------------------------------------ the worker */

#define AW_RING (4u << 20) /* per worker */
#define AW_WORKERS 2       /* files of one directory all go to the same one */
#define AW_MAX_JOB (2u << 20)

/* A queued file in the ring, followed by its path (NUL-terminated), its xattr area and its
 * extents (u64 offset, u64 length, the bytes), each part 8-aligned. len 0: wrap marker. */
struct job {
        uint32_t len;
        uint16_t path_len, dir_len, nxattr, next;
        uint32_t xattrs_len;
        uint32_t mode, uid, gid, atime_nsec, mtime_nsec;
        int64_t atime_sec, mtime_sec;
        uint64_t size;
};

struct aw_one {
        int sfd;
        pthread_t th;
        pthread_mutex_t mu;
        pthread_cond_t cv_work, cv_room;
        uint8_t *buf;
        uint64_t head, tail; /* absolute: head = consumed by the worker, tail = queued */
        bool stop, failed, worker_waits, producer_waits;
        struct cta_error *err;
        struct cta_owner_cache oc;
        char dir[PATH_MAX]; /* the worker's cached parent */
        size_t dir_len;
        int dfd;
};

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

static int aw_parent(struct aw_one *w, const char *path, size_t dir_len, struct cta_error **err,
                     const struct cta_mig_entry *e)
{
        if (dir_len == 0)
                return w->sfd;
        if (w->dfd >= 0 && w->dir_len == dir_len && memcmp(w->dir, path, dir_len) == 0)
                return w->dfd;
        if (w->dfd >= 0) {
                if (w->oc.fd == w->dfd)
                        w->oc.fd = -1;
                close(w->dfd);
        }
        w->dfd = -1;
        memcpy(w->dir, path, dir_len);
        w->dir[dir_len] = 0;
        w->dir_len = dir_len;
        w->dfd = cta_openat_beneath(w->sfd, w->dir, O_PATH | O_DIRECTORY);
        if (w->dfd < 0)
                return fail_errno(err, errno == ENOENT ? CTA_E_MIG_STREAM : CTA_E_MIG_PATH,
                                  "resolve the parent of", e);
        return w->dfd;
}

static int aw_do(struct aw_one *w, const uint8_t *p, struct cta_error **err)
{
        const struct job *j = (const struct job *)p;
        const char *path = (const char *)p + sizeof(struct job);
        const uint8_t *q = p + sizeof(struct job) + ALIGN8((size_t)j->path_len + 1);
        struct cta_mig_entry e = {
                .kind = CTA_MIG_K_REG,
                .mode = j->mode,
                .uid = j->uid,
                .gid = j->gid,
                .mtime_sec = j->mtime_sec,
                .atime_sec = j->atime_sec,
                .mtime_nsec = j->mtime_nsec,
                .atime_nsec = j->atime_nsec,
                .size = j->size,
                .path = path,
                .path_len = j->path_len,
                .nxattr = j->nxattr,
                .xattrs = q,
                .xattrs_len = j->xattrs_len,
        };
        q += ALIGN8(j->xattrs_len);
        struct cta_mig_extent ext[CTA_AW_MAX_EXT];
        for (size_t i = 0; i < j->next; i++) {
                ext[i].offset = cta_mig_get64(q);
                ext[i].len = (size_t)cta_mig_get64(q + 8);
                ext[i].data = q + 16;
                q += 16 + ALIGN8(ext[i].len);
        }
        int pfd = aw_parent(w, path, j->dir_len, err, &e);
        if (pfd < 0)
                return pfd;
        const char *name = path + j->dir_len + (j->dir_len ? 1 : 0);
        return cta_mig_create_small(pfd, name, &e, ext, j->next, &w->oc, NULL, err);
}

static void *aw_main(void *arg)
{
        struct aw_one *w = arg;
        pthread_setname_np(pthread_self(), "cta-mig-apply");
        pthread_mutex_lock(&w->mu);
        for (;;) {
                while (w->head == w->tail && !w->stop) {
                        w->worker_waits = true;
                        pthread_cond_wait(&w->cv_work, &w->mu);
                        w->worker_waits = false;
                }
                if (w->stop)
                        break;
                const uint8_t *p = w->buf + w->head % AW_RING;
                uint32_t len = ((const struct job *)p)->len;
                uint64_t adv = len ? len : AW_RING - w->head % AW_RING;
                struct cta_error *e = NULL;
                int r = 0;
                if (len && !w->failed) {
                        pthread_mutex_unlock(&w->mu);
                        r = aw_do(w, p, &e);
                        pthread_mutex_lock(&w->mu);
                }
                w->head += adv;
                if (r < 0 && !w->failed) {
                        w->failed = true;
                        w->err = e;
                } else {
                        cta_error_free(e);
                }
                if (w->producer_waits)
                        pthread_cond_signal(&w->cv_room);
        }
        pthread_mutex_unlock(&w->mu);
        return NULL;
}

static struct aw_one *aw_one_start(int sfd, const struct cta_owner_cache *oc)
{
        struct aw_one *w = cta_xcalloc(1, sizeof(*w));
        w->sfd = sfd;
        w->dfd = -1;
        w->oc = *oc;
        w->oc.fd = -1;
        w->buf = cta_xmalloc(AW_RING);
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv_work, NULL);
        pthread_cond_init(&w->cv_room, NULL);
        if (pthread_create(&w->th, NULL, aw_main, w) != 0) {
                pthread_mutex_destroy(&w->mu);
                pthread_cond_destroy(&w->cv_work);
                pthread_cond_destroy(&w->cv_room);
                free(w->buf);
                free(w);
                return NULL;
        }
        return w;
}

/* The worker's error, moved to *err. */
static int aw_error(struct aw_one *w, struct cta_error **err)
{
        struct cta_error *e = w->err;
        w->err = NULL;
        int code = e ? cta_error_code(e) : CTA_E_INTERNAL;
        if (!e)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "apply worker failed");
        if (err)
                *err = e;
        else
                cta_error_free(e);
        return -code;
}

static int aw_one_put(struct aw_one *w, const struct cta_mig_entry *e, size_t dir_len,
                      const struct cta_mig_extent *ext, size_t next, struct cta_error **err)
{
        size_t len = sizeof(struct job) + ALIGN8((size_t)e->path_len + 1) + ALIGN8(e->xattrs_len);
        for (size_t i = 0; i < next; i++)
                len += 16 + ALIGN8(ext[i].len);
        if (len > AW_MAX_JOB || next > CTA_AW_MAX_EXT)
                return 1;
        pthread_mutex_lock(&w->mu);
        for (;;) {
                if (w->failed) {
                        int r = aw_error(w, err);
                        pthread_mutex_unlock(&w->mu);
                        return r;
                }
                size_t pos = (size_t)(w->tail % AW_RING);
                size_t room = AW_RING - (size_t)(w->tail - w->head);
                size_t need = AW_RING - pos < len ? AW_RING - pos + len : len;
                if (room >= need)
                        break;
                w->producer_waits = true;
                pthread_cond_wait(&w->cv_room, &w->mu);
                w->producer_waits = false;
        }
        size_t pos = (size_t)(w->tail % AW_RING);
        pthread_mutex_unlock(&w->mu);
        /* only the producer writes past tail: no lock needed while filling */
        uint64_t tail = w->tail;
        if (AW_RING - pos < len) {
                ((struct job *)(w->buf + pos))->len = 0; /* wrap */
                tail += AW_RING - pos;
                pos = 0;
        }
        uint8_t *p = w->buf + pos;
        struct job *j = (struct job *)p;
        *j = (struct job){
                .len = (uint32_t)len,
                .path_len = e->path_len,
                .dir_len = (uint16_t)dir_len,
                .nxattr = e->nxattr,
                .next = (uint16_t)next,
                .xattrs_len = (uint32_t)e->xattrs_len,
                .mode = e->mode,
                .uid = e->uid,
                .gid = e->gid,
                .atime_nsec = e->atime_nsec,
                .mtime_nsec = e->mtime_nsec,
                .atime_sec = e->atime_sec,
                .mtime_sec = e->mtime_sec,
                .size = e->size,
        };
        uint8_t *q = p + sizeof(*j);
        memcpy(q, e->path, e->path_len);
        q[e->path_len] = 0;
        q += ALIGN8((size_t)e->path_len + 1);
        if (e->xattrs_len)
                memcpy(q, e->xattrs, e->xattrs_len);
        q += ALIGN8(e->xattrs_len);
        for (size_t i = 0; i < next; i++) {
                cta_mig_put64(q, ext[i].offset);
                cta_mig_put64(q + 8, ext[i].len);
                memcpy(q + 16, ext[i].data, ext[i].len);
                q += 16 + ALIGN8(ext[i].len);
        }
        pthread_mutex_lock(&w->mu);
        w->tail = tail + len;
        if (w->worker_waits)
                pthread_cond_signal(&w->cv_work);
        pthread_mutex_unlock(&w->mu);
        return 0;
}

static int aw_one_drain(struct aw_one *w, struct cta_error **err)
{
        pthread_mutex_lock(&w->mu);
        while (w->head != w->tail && !w->failed) {
                w->producer_waits = true;
                pthread_cond_wait(&w->cv_room, &w->mu);
                w->producer_waits = false;
        }
        int r = w->failed ? aw_error(w, err) : 0;
        pthread_mutex_unlock(&w->mu);
        return r;
}

static void aw_one_stop(struct aw_one *w)
{
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        pthread_cond_signal(&w->cv_work);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->th, NULL);
        if (w->dfd >= 0)
                close(w->dfd);
        cta_error_free(w->err);
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv_work);
        pthread_cond_destroy(&w->cv_room);
        free(w->buf);
        free(w);
}

/* ------------------------------------------------------------------ the workers */

struct cta_aw {
        struct aw_one *w[AW_WORKERS];
        size_t n, cur;
        char last[PATH_MAX]; /* the parent directory of the last queued file */
        size_t last_len;
        bool any;
};

struct cta_aw *cta_aw_start(int sfd, const struct cta_owner_cache *oc)
{
        struct cta_aw *a = cta_xcalloc(1, sizeof(*a));
        while (a->n < AW_WORKERS && (a->w[a->n] = aw_one_start(sfd, oc)))
                a->n++;
        if (!a->n) {
                free(a);
                return NULL;
        }
        return a;
}

/* Queued bytes of one worker (a hint for choosing). */
static uint64_t aw_load(struct aw_one *w)
{
        pthread_mutex_lock(&w->mu);
        uint64_t n = w->tail - w->head;
        pthread_mutex_unlock(&w->mu);
        return n;
}

int cta_aw_put(struct cta_aw *a, const struct cta_mig_entry *e, size_t dir_len,
               const struct cta_mig_extent *ext, size_t next, struct cta_error **err)
{
        if (!a->any || a->last_len != dir_len || memcmp(a->last, e->path, dir_len) != 0) {
                /* a new directory: to the least busy worker (so directories are created
                 * in parallel, each by one worker, in order) */
                size_t best = 0;
                uint64_t bl = UINT64_MAX;
                for (size_t i = 0; i < a->n; i++) {
                        uint64_t l = aw_load(a->w[i]);
                        if (l < bl) {
                                bl = l;
                                best = i;
                        }
                }
                a->cur = best;
                memcpy(a->last, e->path, dir_len);
                a->last_len = dir_len;
                a->any = true;
        }
        return aw_one_put(a->w[a->cur], e, dir_len, ext, next, err);
}

int cta_aw_drain(struct cta_aw *a, struct cta_error **err)
{
        int r = 0;
        for (size_t i = 0; a && i < a->n; i++) {
                int x = aw_one_drain(a->w[i], r < 0 ? NULL : err);
                if (x < 0 && r == 0)
                        r = x;
        }
        return r;
}

void cta_aw_stop(struct cta_aw *a)
{
        if (!a)
                return;
        for (size_t i = 0; i < a->n; i++)
                aw_one_stop(a->w[i]);
        free(a);
}
