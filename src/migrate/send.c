/*
 * The source side: cta_mig_scan, cta_mig_send and cta_mig_have_build.
 *
 * cta_mig_send runs a producer thread (walk, read with prefetch, hash, encode records into
 * large buffers, merge with the destination's have stream) and writes the full buffers to
 * the io on the calling thread, so reading the disk and the transport (TLS in production)
 * overlap. Per-file state is streamed; only files with nlink > 1 are remembered.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <xxhash.h>

#include "migrate/internal.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

#define OBUF_SIZE (4u << 20)
#define OBUF_COUNT 4
#define DATA_MIN_ROOM (64u << 10)

/* ------------------------------------------------------------------ scan */

int cta_mig_scan(int root_dirfd, struct cta_mig_totals *ret, struct cta_error **err)
{
        struct cta_walk *w = NULL;
        struct cta_walk_item it;
        struct cta_mig_totals t = { 0 };
        int r = cta_walk_new(root_dirfd, 0, &w, err);
        if (r < 0)
                return r;
        while ((r = cta_walk_next(w, &it, err)) > 0) {
                t.entries++;
                if (S_ISREG(it.st.st_mode)) {
                        uint64_t alloc = (uint64_t)it.st.st_blocks * 512;
                        uint64_t sz = (uint64_t)it.st.st_size;
                        t.data_bytes += alloc < sz ? alloc : sz;
                        t.files++;
                }
        }
        cta_walk_free(w);
        if (r < 0)
                return cta_error_wrap(err, "scan");
        *ret = t;
        return 0;
}

/* ------------------------------------------------------------------ have reader */

struct have_reader {
        const struct cta_mig_io *io;
        uint8_t *buf;
        size_t pos, len, cap;
        bool eof, ended;
        uint64_t count;
        struct cta_mig_have_rec cur;
        bool valid;
        char path[PATH_MAX];
        char prev[PATH_MAX];
        size_t prev_len;
        char dead[PATH_MAX]; /* have entries under this path are skipped */
        size_t dead_len;
};

static int have_fill(struct have_reader *h, size_t need, struct cta_error **err)
{
        while (h->len - h->pos < need) {
                if (h->pos) {
                        memmove(h->buf, h->buf + h->pos, h->len - h->pos);
                        h->len -= h->pos;
                        h->pos = 0;
                }
                if (h->eof)
                        return cta_error_set(err, CTA_E_MIG_STREAM, 0, "have stream truncated");
                ssize_t n = h->io->read(h->io->ctx, h->buf + h->len, h->cap - h->len);
                if (n < 0)
                        return cta_error_set(err, CTA_E_MIG_LINK_LOST, (int)-n,
                                             "read have stream: %s", strerror((int)-n));
                if (n == 0)
                        h->eof = true;
                h->len += (size_t)n;
        }
        return 0;
}

/* Next record: *type, payload at h->buf + h->pos - len after return. */
static int have_rec(struct have_reader *h, uint8_t *type, const uint8_t **p, uint32_t *len,
                    struct cta_error **err)
{
        int r = have_fill(h, CTA_MIG_REC_HDR, err);
        if (r < 0)
                return r;
        const uint8_t *q = h->buf + h->pos;
        *type = q[0];
        *len = cta_mig_get32(q + 4);
        if (q[1] || cta_mig_get16(q + 2) || *len > CTA_MIG_HAVE_FIXED + 65535u)
                return cta_error_set(err, CTA_E_MIG_STREAM, 0, "have stream: bad record");
        r = have_fill(h, CTA_MIG_REC_HDR + *len, err);
        if (r < 0)
                return r;
        *p = h->buf + h->pos + CTA_MIG_REC_HDR;
        h->pos += CTA_MIG_REC_HDR + *len;
        return 0;
}

static int have_advance(struct have_reader *h, struct cta_error **err)
{
        for (;;) {
                h->valid = false;
                if (h->ended)
                        return 0;
                uint8_t type;
                const uint8_t *p;
                uint32_t len;
                int r = have_rec(h, &type, &p, &len, err);
                if (r < 0)
                        return r;
                if (type == CTA_MIG_R_HAVE_END) {
                        if (len != 8 || cta_mig_get64(p) != h->count)
                                return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                                     "have stream: bad end record");
                        h->ended = true;
                        return 0;
                }
                if (type != CTA_MIG_R_HAVE || cta_mig_dec_have(p, len, &h->cur) < 0)
                        return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                             "have stream: unexpected record %u", type);
                h->count++;
                if (cta_mig_path_check(h->cur.path, h->cur.path_len, PATH_MAX - 1,
                                       CTA_WALK_MAX_DEPTH) < 0 ||
                    cta_mig_path_cmp(h->prev, h->prev_len, h->cur.path, h->cur.path_len) >= 0)
                        return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                             "have stream: bad or unordered path");
                memcpy(h->prev, h->cur.path, h->cur.path_len);
                h->prev_len = h->cur.path_len;
                memcpy(h->path, h->cur.path, h->cur.path_len);
                h->path[h->cur.path_len] = 0;
                h->cur.path = h->path;
                if (h->dead_len &&
                    cta_mig_path_under(h->dead, h->dead_len, h->cur.path, h->cur.path_len))
                        continue;
                h->valid = true;
                return 0;
        }
}

static int have_open(struct have_reader *h, const struct cta_mig_io *io, struct cta_error **err)
{
        h->io = io;
        h->cap = 1u << 18;
        h->buf = cta_xmalloc(h->cap);
        uint8_t type;
        const uint8_t *p;
        uint32_t len;
        int r = have_rec(h, &type, &p, &len, err);
        if (r < 0)
                return r;
        if (type != CTA_MIG_R_HAVE_HEADER || len != 16 || memcmp(p, CTA_MIG_HAVE_MAGIC, 8) != 0)
                return cta_error_set(err, CTA_E_MIG_STREAM, 0, "not a have stream");
        if (cta_mig_get16(p + 8) != CTA_MIG_STREAM_VERSION)
                return cta_error_set(err, CTA_E_MIG_VERSION, 0, "have stream version %u",
                                     cta_mig_get16(p + 8));
        return have_advance(h, err);
}

/* ------------------------------------------------------------------ sender */

struct obuf {
        uint8_t *data;
        size_t len, cap;
        uint64_t data_bytes, entries; /* progress snapshot after this buffer */
};

struct sender {
        int root_fd;
        const struct cta_mig_io *io;
        const struct cta_mig_send_opts *o;
        struct cta_mig_totals totals;

        pthread_mutex_t mu;
        pthread_cond_t cv;
        struct obuf bufs[OBUF_COUNT];
        struct obuf *free_list[OBUF_COUNT];
        size_t nfree;
        struct obuf *full[OBUF_COUNT];
        size_t full_head, nfull;
        bool producer_done;
        bool stop; /* the writer failed or was cancelled */
        int prod_rc;
        struct cta_error *prod_err;

        /* producer state */
        struct obuf *cur;
        struct cta_mig_stats st;
        struct cta_inomap links;
        struct cta_xlist xl;
        XXH3_state_t *hash;
        struct have_reader *have;
        uint64_t next_id;
};

static bool cancelled(const struct sender *s)
{
        return s->o && s->o->cancel && atomic_load(s->o->cancel);
}

/* Hand the current buffer to the writer. */
static int flush_cur(struct sender *s, struct cta_error **err)
{
        pthread_mutex_lock(&s->mu);
        if (s->cur && s->cur->len) {
                s->cur->data_bytes = s->st.data_bytes;
                s->cur->entries = s->st.entries;
                s->full[(s->full_head + s->nfull) % OBUF_COUNT] = s->cur;
                s->nfull++;
                s->cur = NULL;
                pthread_cond_broadcast(&s->cv);
        }
        if (!s->cur) {
                while (!s->nfree && !s->stop)
                        pthread_cond_wait(&s->cv, &s->mu);
                if (s->stop) {
                        pthread_mutex_unlock(&s->mu);
                        return cta_error_set(err, CTA_E_CANCELLED, 0, "sender stopped");
                }
                s->cur = s->free_list[--s->nfree];
                s->cur->len = 0;
        }
        pthread_mutex_unlock(&s->mu);
        if (cancelled(s))
                return cta_error_set(err, CTA_E_CANCELLED, 0, "migration cancelled");
        return 0;
}

/* Room for n contiguous bytes in the current buffer. */
static uint8_t *room(struct sender *s, size_t n, struct cta_error **err)
{
        if (!s->cur || s->cur->cap - s->cur->len < n) {
                if (flush_cur(s, err) < 0)
                        return NULL;
                if (s->cur->cap < n) { /* a huge entry record (many large xattrs) */
                        s->cur->cap = n;
                        s->cur->data = cta_xrealloc(s->cur->data, n);
                }
        }
        return s->cur->data + s->cur->len;
}

static int emit_entry(struct sender *s, const struct cta_mig_entry *e, struct cta_error **err)
{
        size_t n = cta_mig_entry_size(e);
        if (n - CTA_MIG_REC_HDR > 4u << 20)
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "entry record of %zu bytes", n);
        uint8_t *p = room(s, n, err);
        if (!p)
                return -CTA_E_CANCELLED;
        s->cur->len += cta_mig_enc_entry(p, e);
        s->st.entries++;
        return 0;
}

static int emit_delete(struct sender *s, const char *path, size_t len, struct cta_error **err)
{
        uint8_t *p = room(s, CTA_MIG_REC_HDR + 2 + len, err);
        if (!p)
                return -CTA_E_CANCELLED;
        cta_mig_put_rec(p, CTA_MIG_R_DELETE, 2 + (uint32_t)len);
        cta_mig_put16(p + CTA_MIG_REC_HDR, (uint16_t)len);
        memcpy(p + CTA_MIG_REC_HDR + 2, path, len);
        s->cur->len += CTA_MIG_REC_HDR + 2 + len;
        s->st.deleted++;
        return 0;
}

/* Stream a regular file's data extents; holes are skipped (and hashed as zeros). */
static int send_data(struct sender *s, int fd, const struct stat *st, const char *path,
                     struct cta_error **err)
{
        uint64_t size = (uint64_t)st->st_size, pos = 0, sent = 0;
        bool dense = (uint64_t)st->st_blocks * 512 >= size;
        XXH3_128bits_reset(s->hash);
        if (size > (64u << 20))
                (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        uint64_t off = 0;
        while (off < size) {
                uint64_t d = off, h = size;
                if (!dense) {
                        off_t x = lseek(fd, (off_t)off, SEEK_DATA);
                        if (x < 0 && errno == ENXIO)
                                break;
                        if (x < 0)
                                return cta_error_errno(err, CTA_E_IO, "seek %s", path);
                        d = (uint64_t)x;
                        x = lseek(fd, x, SEEK_HOLE);
                        if (x < 0)
                                return cta_error_errno(err, CTA_E_IO, "seek %s", path);
                        h = (uint64_t)x < size ? (uint64_t)x : size;
                        if (d >= size)
                                break;
                }
                while (d < h) {
                        if (!s->cur || s->cur->cap - s->cur->len < DATA_MIN_ROOM) {
                                if (flush_cur(s, err) < 0)
                                        return -CTA_E_CANCELLED;
                        }
                        size_t avail = s->cur->cap - s->cur->len - CTA_MIG_REC_HDR - 8;
                        uint64_t want = h - d;
                        if (want > avail)
                                want = avail;
                        if (want > CTA_MIG_DATA_CHUNK)
                                want = CTA_MIG_DATA_CHUNK;
                        uint8_t *p = s->cur->data + s->cur->len;
                        ssize_t n = pread(fd, p + CTA_MIG_REC_HDR + 8, (size_t)want, (off_t)d);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return cta_error_errno(err, CTA_E_IO, "read %s", path);
                        if (n == 0) { /* shrank while we read: the rest is a hole */
                                s->st.changed++;
                                goto done;
                        }
                        cta_mig_enc_data_hdr(p, d, (uint32_t)n);
                        s->cur->len += CTA_MIG_REC_HDR + 8 + (size_t)n;
                        cta_mig_hash_zeros(s->hash, d - pos);
                        XXH3_128bits_update(s->hash, p + CTA_MIG_REC_HDR + 8, (size_t)n);
                        d += (uint64_t)n;
                        pos = d;
                        sent += (uint64_t)n;
                        s->st.data_bytes += (uint64_t)n;
                }
                off = h;
        }
done:
        cta_mig_hash_zeros(s->hash, size - pos);
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s->hash));
        uint8_t *p = room(s, CTA_MIG_REC_HDR + CTA_MIG_FILE_END_LEN, err);
        if (!p)
                return -CTA_E_CANCELLED;
        s->cur->len += cta_mig_enc_file_end(p, sent, c.digest);
        s->st.files++;
        return 0;
}

/* The destination has the current have entry and the source does not: delete it. */
static int have_delete_cur(struct sender *s, struct cta_error **err)
{
        struct have_reader *h = s->have;
        int r = emit_delete(s, h->cur.path, h->cur.path_len, err);
        if (r < 0)
                return r;
        if (h->cur.kind == CTA_MIG_K_DIR) {
                memcpy(h->dead, h->cur.path, h->cur.path_len);
                h->dead_len = h->cur.path_len;
        }
        return have_advance(h, err);
}

/* Merge the have stream up to path: deletions for what the destination has and the
 * source does not; *ret_have points at the have record for this very path, if any. */
static int have_merge(struct sender *s, const char *path, size_t len,
                      const struct cta_mig_have_rec **ret_have, struct cta_error **err)
{
        struct have_reader *h = s->have;
        *ret_have = NULL;
        while (h->valid) {
                int c = cta_mig_path_cmp(h->cur.path, h->cur.path_len, path, len);
                if (c > 0)
                        return 0;
                if (c == 0) {
                        *ret_have = &h->cur;
                        return 0;
                }
                int r = have_delete_cur(s, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int send_item(struct sender *s, const struct cta_walk_item *it, struct cta_error **err)
{
        const struct stat *st = &it->st;
        uint8_t kind = cta_mig_kind_of(st->st_mode);
        if (!kind)
                return 0; /* no other file types exist on Linux */
        struct cta_mig_entry e = {
                .id = s->next_id,
                .kind = kind,
                .mode = st->st_mode & 07777,
                .uid = st->st_uid,
                .gid = st->st_gid,
                .mtime_sec = st->st_mtim.tv_sec,
                .mtime_nsec = (uint32_t)st->st_mtim.tv_nsec,
                .atime_sec = st->st_atim.tv_sec,
                .atime_nsec = (uint32_t)st->st_atim.tv_nsec,
                .path = it->path,
                .path_len = (uint16_t)it->path_len,
        };
        const struct cta_mig_have_rec *hv = NULL;
        int r;
        if (s->have && !it->is_root) {
                r = have_merge(s, it->path, it->path_len, &hv, err);
                if (r < 0)
                        return r;
        }
        if (it->is_root)
                e.flags |= CTA_MIG_EF_ROOT;
        char target[PATH_MAX];
        if (kind == CTA_MIG_K_REG && st->st_nlink > 1) {
                struct cta_inomap_ent *le = cta_inomap_get_or_add(
                        &s->links, st->st_dev, st->st_ino, e.id, NULL, 0);
                if (le) {
                        e.kind = CTA_MIG_K_HARDLINK;
                        e.link_id = le->val;
                        e.mode = e.uid = e.gid = 0;
                        e.mtime_sec = e.atime_sec = 0;
                        e.mtime_nsec = e.atime_nsec = 0;
                        s->st.hardlinks++;
                        goto emit;
                }
                e.flags |= CTA_MIG_EF_LINKABLE;
        }
        if (kind == CTA_MIG_K_LNK) {
                ssize_t n = readlinkat(it->dirfd, it->name, target, sizeof(target));
                if (n < 0 && (errno == ENOENT || errno == EINVAL)) {
                        s->st.vanished++;
                        return 0;
                }
                if (n < 0)
                        return cta_error_errno(err, CTA_E_IO, "readlink %s", it->path);
                if ((size_t)n >= sizeof(target) || n == 0)
                        return cta_error_set(err, CTA_E_TOO_LARGE, 0, "symlink %s", it->path);
                e.target = target;
                e.target_len = (uint16_t)n;
                s->st.symlinks++;
        } else if (kind == CTA_MIG_K_CHR || kind == CTA_MIG_K_BLK) {
                e.rdev_major = major(st->st_rdev);
                e.rdev_minor = minor(st->st_rdev);
                s->st.specials++;
        } else if (kind == CTA_MIG_K_FIFO || kind == CTA_MIG_K_SOCK) {
                s->st.specials++;
        } else if (kind == CTA_MIG_K_DIR) {
                s->st.dirs++;
        } else if (kind == CTA_MIG_K_REG) {
                e.size = (uint64_t)st->st_size;
                if (hv && hv->kind == CTA_MIG_K_REG && hv->size == e.size &&
                    hv->mtime_sec == e.mtime_sec && hv->mtime_nsec == e.mtime_nsec) {
                        e.flags |= CTA_MIG_EF_UNCHANGED;
                        s->st.unchanged++;
                }
        }
        r = cta_xlist_read(&s->xl, kind == CTA_MIG_K_REG || kind == CTA_MIG_K_DIR ? it->fd : -1,
                               it->dirfd, it->name);
        if (r == -ENOENT) {
                s->st.vanished++;
                return 0;
        }
        if (r < 0) {
                errno = -r;
                return cta_error_errno(err, CTA_E_IO, "xattrs of %s", it->path);
        }
        if (s->xl.n > UINT16_MAX)
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "xattrs of %s", it->path);
        e.nxattr = (uint16_t)s->xl.n;
        e.xv = s->xl.v;
emit:
        if (hv) {
                /* a directory the destination has, replaced by something else here:
                 * the receiver removes it whole, so its have entries are moot */
                if (hv->kind == CTA_MIG_K_DIR && e.kind != CTA_MIG_K_DIR) {
                        memcpy(s->have->dead, it->path, it->path_len);
                        s->have->dead_len = it->path_len;
                }
                r = have_advance(s->have, err);
                if (r < 0)
                        return r;
        }
        r = emit_entry(s, &e, err);
        if (r < 0)
                return r;
        s->next_id++;
        if (e.kind == CTA_MIG_K_REG && !(e.flags & CTA_MIG_EF_UNCHANGED))
                return send_data(s, it->fd, st, it->path, err);
        return 0;
}

static int produce(struct sender *s, struct cta_error **err)
{
        struct cta_walk *w = NULL;
        struct cta_walk_item it;
        int r = cta_walk_new(s->root_fd, CTA_WALK_OPEN_FILES, &w, err);
        if (r < 0)
                return r;
        uint8_t *p = room(s, CTA_MIG_REC_HDR + CTA_MIG_HEADER_LEN, err);
        if (!p) {
                cta_walk_free(w);
                return -CTA_E_CANCELLED;
        }
        s->cur->len += cta_mig_enc_header(p, s->have ? CTA_MIG_HF_INCREMENTAL : 0,
                                          s->totals.entries, s->totals.data_bytes);
        while ((r = cta_walk_next(w, &it, err)) > 0) {
                r = send_item(s, &it, err);
                if (r < 0)
                        break;
        }
        s->st.vanished += cta_walk_vanished(w);
        cta_walk_free(w);
        if (r < 0)
                return r;
        /* what the destination has beyond the last source path */
        while (s->have && s->have->valid) {
                r = have_delete_cur(s, err);
                if (r < 0)
                        return r;
        }
        p = room(s, CTA_MIG_REC_HDR + CTA_MIG_TRAILER_LEN, err);
        if (!p)
                return -CTA_E_CANCELLED;
        s->cur->len += cta_mig_enc_trailer(p, s->st.entries, s->st.data_bytes, s->st.deleted);
        return flush_cur(s, err) < 0 ? -CTA_E_CANCELLED : 0;
}

static void *producer_main(void *arg)
{
        struct sender *s = arg;
        struct cta_error *e = NULL;
        int r = produce(s, &e);
        pthread_mutex_lock(&s->mu);
        s->prod_rc = r;
        s->prod_err = e;
        s->producer_done = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return NULL;
}

static void report(const struct sender *s, uint64_t bytes, uint64_t entries)
{
        if (s->o && s->o->progress.fn)
                s->o->progress.fn(s->o->progress.ud, bytes, s->totals.data_bytes, entries,
                                  s->totals.entries);
}

int cta_mig_send(int root_dirfd, const struct cta_mig_io *io, const struct cta_mig_send_opts *o,
                 struct cta_mig_stats *ret, struct cta_error **err)
{
        struct sender *s = cta_xcalloc(1, sizeof(*s));
        struct have_reader *have = NULL;
        int r = 0;
        s->root_fd = root_dirfd;
        s->io = io;
        s->o = o;
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cv, NULL);
        s->hash = XXH3_createState();
        if (!s->hash) {
                r = cta_error_set(err, CTA_E_NOMEM, 0, "hash state");
                goto out;
        }
        if (o && o->totals)
                s->totals = *o->totals;
        else if ((r = cta_mig_scan(root_dirfd, &s->totals, err)) < 0)
                goto out;
        if (o && o->have) {
                have = cta_xcalloc(1, sizeof(*have));
                if ((r = have_open(have, o->have, err)) < 0)
                        goto out;
                s->have = have;
        }
        for (size_t i = 0; i < OBUF_COUNT; i++) {
                s->bufs[i].cap = OBUF_SIZE;
                s->bufs[i].data = cta_xmalloc(OBUF_SIZE);
                s->free_list[s->nfree++] = &s->bufs[i];
        }
        pthread_t th;
        if ((r = pthread_create(&th, NULL, producer_main, s)) != 0) {
                r = cta_error_set(err, CTA_E_INTERNAL, r, "start the reader thread");
                goto out;
        }
        uint64_t last_ms = 0, wire = 0;
        struct cta_error *werr = NULL;
        int wrc = 0;
        for (;;) {
                pthread_mutex_lock(&s->mu);
                while (!s->nfull && !s->producer_done)
                        pthread_cond_wait(&s->cv, &s->mu);
                if (!s->nfull) {
                        pthread_mutex_unlock(&s->mu);
                        break;
                }
                struct obuf *b = s->full[s->full_head];
                s->full_head = (s->full_head + 1) % OBUF_COUNT;
                s->nfull--;
                pthread_mutex_unlock(&s->mu);

                if (wrc == 0 && o && o->cancel && atomic_load(o->cancel))
                        wrc = cta_error_set(&werr, CTA_E_CANCELLED, 0, "migration cancelled");
                if (wrc == 0) {
                        ssize_t n = io->write(io->ctx, b->data, b->len);
                        if (n < 0)
                                wrc = cta_error_set(&werr, CTA_E_MIG_LINK_LOST, (int)-n,
                                                    "write stream: %s", strerror((int)-n));
                        else
                                wire += b->len;
                }
                uint64_t now = cta_now_ms();
                if (wrc == 0 && now - last_ms >= 100) {
                        last_ms = now;
                        report(s, b->data_bytes, b->entries);
                }
                pthread_mutex_lock(&s->mu);
                s->free_list[s->nfree++] = b;
                if (wrc)
                        s->stop = true;
                pthread_cond_broadcast(&s->cv);
                pthread_mutex_unlock(&s->mu);
        }
        pthread_join(th, NULL);
        if (wrc) {
                if (io->abort)
                        io->abort(io->ctx);
                cta_error_free(s->prod_err);
                if (err)
                        *err = werr;
                else
                        cta_error_free(werr);
                r = wrc; /* already negative (cta_error_set) */
                goto out;
        }
        if (s->prod_rc < 0) {
                if (io->abort)
                        io->abort(io->ctx);
                r = s->prod_rc;
                if (err)
                        *err = s->prod_err;
                else
                        cta_error_free(s->prod_err);
                goto out;
        }
        report(s, s->st.data_bytes, s->st.entries);
        s->st.wire_bytes = wire;
        if (ret)
                *ret = s->st;
        r = 0;
out:
        for (size_t i = 0; i < OBUF_COUNT; i++)
                free(s->bufs[i].data);
        if (have)
                free(have->buf);
        free(have);
        cta_inomap_done(&s->links);
        cta_xlist_done(&s->xl);
        if (s->hash)
                XXH3_freeState(s->hash);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return r;
}

/* ------------------------------------------------------------------ have builder */

int cta_mig_have_build(int dirfd, const struct cta_mig_io *out, struct cta_mig_stats *ret,
                       struct cta_error **err)
{
        struct cta_walk *w = NULL;
        struct cta_walk_item it;
        struct cta_mig_stats st = { 0 };
        size_t cap = 1u << 20, len = 0;
        _cleanup_free_ uint8_t *buf = cta_xmalloc(cap);
        int r = cta_walk_new(dirfd, 0, &w, err);
        if (r < 0)
                return r;
        cta_mig_put_rec(buf, CTA_MIG_R_HAVE_HEADER, 16);
        memset(buf + CTA_MIG_REC_HDR, 0, 16);
        memcpy(buf + CTA_MIG_REC_HDR, CTA_MIG_HAVE_MAGIC, 8);
        cta_mig_put16(buf + CTA_MIG_REC_HDR + 8, CTA_MIG_STREAM_VERSION);
        len = CTA_MIG_REC_HDR + 16;
        while ((r = cta_walk_next(w, &it, err)) > 0) {
                if (it.is_root)
                        continue;
                struct cta_mig_have_rec h = {
                        .kind = cta_mig_kind_of(it.st.st_mode),
                        .size = S_ISREG(it.st.st_mode) ? (uint64_t)it.st.st_size : 0,
                        .mtime_sec = it.st.st_mtim.tv_sec,
                        .mtime_nsec = (uint32_t)it.st.st_mtim.tv_nsec,
                        .path = it.path,
                        .path_len = (uint16_t)it.path_len,
                };
                if (cap - len < cta_mig_have_size(h.path_len) + 16) {
                        ssize_t n = out->write(out->ctx, buf, len);
                        if (n < 0) {
                                r = cta_error_set(err, CTA_E_IO, (int)-n, "write have stream: %s",
                                                  strerror((int)-n));
                                break;
                        }
                        st.wire_bytes += len;
                        len = 0;
                }
                len += cta_mig_enc_have(buf + len, &h);
                st.entries++;
        }
        cta_walk_free(w);
        if (r < 0)
                return r;
        cta_mig_put_rec(buf + len, CTA_MIG_R_HAVE_END, 8);
        cta_mig_put64(buf + len + CTA_MIG_REC_HDR, st.entries);
        len += CTA_MIG_REC_HDR + 8;
        ssize_t n = out->write(out->ctx, buf, len);
        if (n < 0)
                return cta_error_set(err, CTA_E_IO, (int)-n, "write have stream: %s",
                                     strerror((int)-n));
        st.wire_bytes += len;
        if (ret)
                *ret = st;
        return 0;
}
