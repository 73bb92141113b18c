/*
 * The source side: cta_mig_scan and cta_mig_send (the destination's summary that it merges
 * with its walk is built by have_build.c).
 *
 * cta_mig_send runs a producer thread (walk, read with prefetch, hash, encode records into
 * large buffers, merge with the destination's have stream) and writes the full buffers to
 * the io on the calling thread, so reading the disk and the transport (TLS in production)
 * overlap. Per-file state is streamed; only files with nlink > 1 are remembered.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h> /* EXT4_SUPER_MAGIC, also ext2/3 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include "migrate/dio.h"
#include "migrate/hash.h"
#include "migrate/internal.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

#define OBUF_SIZE ((4u << 20) + (512u << 10)) /* four whole blocks, headers and padding */
#define OBUF_COUNT 4
#define DATA_MIN_ROOM (64u << 10)
#define COPY_FLUSH (4u << 20)    /* a COPY range this large is handed on at once */
#define READ_AHEAD (16u << 20)   /* large files: asynchronous readahead this far ahead */
/* Version 4: a DATA payload of a direct-I/O file at least this large gets a PAD record
 * before it, so that it lands in the receiver's buffer aligned like its file offset and
 * is written to disk from there (no copy). At most 1 MiB / ALIGN_MIN_DATA pads a block. */
#define ALIGN_MIN_DATA (64u << 10)
#define BLOCK_SLACK (128u << 10) /* record headers and pads of one block */

/* ------------------------------------------------------------------ scan */

/*
 * On a cold cache the scan waits for inode and xattr block reads, one at a time when
 * walked in order: it runs SCAN_THREADS threads over a shared stack of directories (paths
 * relative to the root) so that many reads are in flight. The order does not matter for
 * totals. (A cold scan of 206k entries on a direct-I/O loop device: 4 threads 1.31 s,
 * 8 threads 1.22 s, 16 threads 0.90 s.)
 */
#define SCAN_THREADS 16

struct scan {
        int root_fd;
        /* ext4 counts an inode's own xattr block in st_blocks: only such inodes (9% of a
         * container with ACLs on 2% and xattrs on 10% of its files) are worth an
         * llistxattr here; 0 when the file system is another (then every entry is) */
        uint64_t xblock_size;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        char **stack;
        size_t n, cap;
        unsigned busy;
        bool failed;
        int err_no;
        char err_path[256];
        const struct timespec *since; /* for changed_bytes; NULL: every file */
        struct cta_mig_totals t;
};

static void scan_push(struct scan *sc, char *path)
{
        if (sc->n == sc->cap) {
                sc->cap = sc->cap ? sc->cap * 2 : 256;
                sc->stack = cta_xrealloc(sc->stack, sc->cap * sizeof(*sc->stack));
        }
        sc->stack[sc->n++] = path;
}

static bool scan_vanished(int e)
{
        return e == ENOENT || e == ENOTDIR || e == ELOOP;
}

/* Might st's inode have an xattr block of its own (more blocks than its size needs)?
 * Only a hint for the read-ahead above: a wrong answer costs time, never correctness. */
static bool xattr_block_likely(const struct scan *sc, const struct stat *st)
{
        if (!sc->xblock_size)
                return true;
        uint64_t sz = S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode)
                              ? (uint64_t)st->st_size
                              : 0;
        uint64_t need = (sz + sc->xblock_size - 1) / sc->xblock_size * sc->xblock_size;
        return (uint64_t)st->st_blocks * 512 > need;
}

/* One directory: its entries' stat into t, subdirectories onto the stack. */
static int scan_dir(struct scan *sc, const char *path, struct cta_mig_totals *t, char **ret_bad)
{
        /* the root too gets its own open file description: the caller's offset stays */
        int dfd = cta_openat_beneath(sc->root_fd, path[0] ? path : ".",
                                     O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (dfd < 0)
                return scan_vanished(errno) ? 0 : -errno;
        char dbuf[32768] __attribute__((aligned(8)));
        size_t plen = strlen(path);
        int r = 0;
        for (;;) {
                ssize_t n = getdents64(dfd, dbuf, sizeof(dbuf));
                if (n <= 0) {
                        if (n < 0)
                                r = -errno;
                        break;
                }
                for (ssize_t off = 0; off < n && !r;) {
                        struct dirent64 *d = (struct dirent64 *)(dbuf + off);
                        off += d->d_reclen;
                        const char *nm = d->d_name;
                        if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2])))
                                continue;
                        struct stat st;
                        if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                                if (!scan_vanished(errno)) {
                                        r = -errno;
                                        *ret_bad = cta_xasprintf("%s/%s", path, nm);
                                }
                                continue;
                        }
                        t->entries++;
                        /* Both sides read every entry's xattrs later, one at a time;
                         * an inode whose xattrs live in their own block costs a disk
                         * read then. Asking here, in parallel, brings those blocks in
                         * (the later walks of a cold second pass were bound by them). */
                        if (xattr_block_likely(sc, &st)) {
                                char xp[40 + NAME_MAX];
                                (void)llistxattr(cta_mig_at_path(dfd, nm, xp, sizeof(xp)),
                                                 NULL, 0);
                        }
                        if (S_ISREG(st.st_mode)) {
                                uint64_t alloc = (uint64_t)st.st_blocks * 512;
                                uint64_t sz = (uint64_t)st.st_size;
                                uint64_t data = alloc < sz ? alloc : sz;
                                t->data_bytes += data;
                                if (!sc->since || !cta_mig_ts_before(&st.st_ctim, sc->since))
                                        t->changed_bytes += data;
                                t->files++;
                        } else if (S_ISDIR(st.st_mode)) {
                                size_t nl = strlen(nm);
                                if (plen + 1 + nl >= PATH_MAX) {
                                        r = -ENAMETOOLONG;
                                        *ret_bad = cta_xstrdup(path);
                                        continue;
                                }
                                char *sub = cta_xmalloc(plen + nl + 2);
                                if (plen) {
                                        memcpy(sub, path, plen);
                                        sub[plen] = '/';
                                        memcpy(sub + plen + 1, nm, nl + 1);
                                } else {
                                        memcpy(sub, nm, nl + 1);
                                }
                                pthread_mutex_lock(&sc->mu);
                                scan_push(sc, sub);
                                pthread_cond_signal(&sc->cv);
                                pthread_mutex_unlock(&sc->mu);
                        }
                }
                if (r)
                        break;
        }
        close(dfd);
        return r;
}

static void *scan_main(void *arg)
{
        struct scan *sc = arg;
        pthread_setname_np(pthread_self(), "cta-mig-scan");
        (void)cta_mig_thread_own_cwd();
        struct cta_mig_totals t = { 0 };
        pthread_mutex_lock(&sc->mu);
        for (;;) {
                while (!sc->n && sc->busy && !sc->failed)
                        pthread_cond_wait(&sc->cv, &sc->mu);
                if (!sc->n || sc->failed)
                        break;
                char *path = sc->stack[--sc->n];
                sc->busy++;
                pthread_mutex_unlock(&sc->mu);
                char *bad = NULL;
                int r = scan_dir(sc, path, &t, &bad);
                pthread_mutex_lock(&sc->mu);
                sc->busy--;
                if (r < 0 && !sc->failed) {
                        sc->failed = true;
                        sc->err_no = -r;
                        snprintf(sc->err_path, sizeof(sc->err_path), "%s", bad ? bad : path);
                }
                free(bad);
                free(path);
                if (!sc->busy || sc->failed)
                        pthread_cond_broadcast(&sc->cv);
        }
        sc->t.entries += t.entries;
        sc->t.data_bytes += t.data_bytes;
        sc->t.files += t.files;
        sc->t.changed_bytes += t.changed_bytes;
        pthread_mutex_unlock(&sc->mu);
        return NULL;
}

int cta_mig_scan(int root_dirfd, struct cta_mig_totals *ret, struct cta_error **err)
{
        return cta_mig_scan_since(root_dirfd, NULL, ret, err);
}

int cta_mig_scan_since(int root_dirfd, const struct timespec *since, struct cta_mig_totals *ret,
                       struct cta_error **err)
{
        struct stat st;
        if (fstat(root_dirfd, &st) < 0)
                return cta_error_errno(err, CTA_E_IO, "scan: stat root");
        if (!S_ISDIR(st.st_mode))
                return cta_error_set(err, CTA_E_INVALID, 0, "scan: root is not a directory");
        struct scan sc = { .root_fd = root_dirfd, .since = since, .t = { .entries = 1 } };
        struct statfs sf;
        if (fstatfs(root_dirfd, &sf) == 0 && sf.f_type == EXT4_SUPER_MAGIC && sf.f_bsize >= 512)
                sc.xblock_size = (uint64_t)sf.f_bsize;
        pthread_mutex_init(&sc.mu, NULL);
        pthread_cond_init(&sc.cv, NULL);
        scan_push(&sc, cta_xstrdup(""));
        pthread_t th[SCAN_THREADS];
        size_t nth = 0;
        while (nth < SCAN_THREADS && pthread_create(&th[nth], NULL, scan_main, &sc) == 0)
                nth++;
        if (!nth)
                scan_main(&sc);
        for (size_t i = 0; i < nth; i++)
                pthread_join(th[i], NULL);
        while (sc.n)
                free(sc.stack[--sc.n]);
        free(sc.stack);
        pthread_mutex_destroy(&sc.mu);
        pthread_cond_destroy(&sc.cv);
        if (sc.failed) {
                _cleanup_free_ char *p = cta_mig_path_fmt(sc.err_path, strlen(sc.err_path));
                errno = sc.err_no;
                return cta_error_errno(err, sc.err_no == ENAMETOOLONG ? CTA_E_TOO_LARGE : CTA_E_IO,
                                       "scan %s", p);
        }
        *ret = sc.t;
        return 0;
}

void cta_mig_warm(int root_dirfd)
{
        struct cta_mig_totals t;
        (void)cta_mig_scan(root_dirfd, &t, NULL);
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
        bool blocks_ok;      /* the header allows block hashes */
        /* block hashes of the current entry, streamed: bl_total announced, bl_seen read
         * from the stream so far, bl_first..bl_first+bl_n held in bl */
        uint64_t bl_total, bl_seen, bl_first, bl_n;
        uint64_t bl[CTA_MIG_BLOCKS_PER_REC];
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

/* The next HAVE_BLOCKS record of the current entry into h->bl. */
static int have_blocks_next(struct have_reader *h, struct cta_error **err)
{
        uint8_t type;
        const uint8_t *p;
        uint32_t len;
        int r = have_rec(h, &type, &p, &len, err);
        if (r < 0)
                return r;
        if (type != CTA_MIG_R_HAVE_BLOCKS || len < 16 || (len - 8) % 8 ||
            (len - 8) / 8 > CTA_MIG_BLOCKS_PER_REC || p[0] != CTA_MIG_BLOCK_SHIFT || p[1] ||
            cta_mig_get16(p + 2) || cta_mig_get32(p + 4) != h->bl_seen ||
            (len - 8) / 8 > h->bl_total - h->bl_seen)
                return cta_error_set(err, CTA_E_MIG_STREAM, 0, "have stream: bad block hashes");
        h->bl_first = h->bl_seen;
        h->bl_n = (len - 8) / 8;
        for (uint64_t i = 0; i < h->bl_n; i++)
                h->bl[i] = cta_mig_get64(p + 8 + 8 * i);
        h->bl_seen += h->bl_n;
        return 0;
}

/* The destination's hash of block idx of the current entry (idx only ever grows). */
static int have_block(struct have_reader *h, uint64_t idx, uint64_t *ret, struct cta_error **err)
{
        if (idx >= h->bl_total)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "block %llu past the map",
                                     (unsigned long long)idx);
        while (idx >= h->bl_first + h->bl_n) {
                int r = have_blocks_next(h, err);
                if (r < 0)
                        return r;
        }
        if (idx < h->bl_first)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "block hashes read backwards");
        *ret = h->bl[idx - h->bl_first];
        return 0;
}

static int have_advance(struct have_reader *h, struct cta_error **err)
{
        for (;;) {
                h->valid = false;
                while (h->bl_seen < h->bl_total) { /* the rest of the last entry's hashes */
                        int r = have_blocks_next(h, err);
                        if (r < 0)
                                return r;
                }
                h->bl_total = h->bl_seen = h->bl_first = h->bl_n = 0;
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
                if (h->cur.flags & ~(CTA_MIG_HAVE_F_SUM | CTA_MIG_HAVE_F_BLOCKS))
                        return cta_error_set(err, CTA_E_MIG_STREAM, 0, "have stream: bad flags");
                if (h->cur.flags & CTA_MIG_HAVE_F_BLOCKS) {
                        if (!h->blocks_ok || h->cur.kind != CTA_MIG_K_REG || !h->cur.size)
                                return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                                     "have stream: unexpected block hashes");
                        h->bl_total = cta_mig_nblocks(h->cur.size);
                }
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
        uint16_t ver = cta_mig_get16(p + 8);
        uint32_t flags = cta_mig_get32(p + 12);
        if (ver < 1 || ver > CTA_MIG_HAVE_VERSION)
                return cta_error_set(err, CTA_E_MIG_VERSION, 0, "have stream version %u", ver);
        if (flags & ~(uint32_t)CTA_MIG_HAVE_HF_BLOCKS || (ver < 2 && flags))
                return cta_error_set(err, CTA_E_MIG_STREAM, 0, "have stream flags 0x%x", flags);
        h->blocks_ok = flags & CTA_MIG_HAVE_HF_BLOCKS;
        return have_advance(h, err);
}

/* ------------------------------------------------------------------ sender */

struct obuf {
        uint8_t *data;
        size_t len, cap;
        uint64_t data_bytes, entries; /* progress snapshot after this buffer */
};

struct prefetcher;
static void pf_done(struct prefetcher *p, uint64_t size);

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
        int bm_dirfd; /* block maps of what we read, or -1 */
        struct cta_bm_writer bmw;
        XXH3_state_t *bhash; /* one block's hash */
        struct prefetcher *pf;
        struct cta_dio dio; /* large files: read around the page cache */
        bool blocksum;         /* large files' checksums are block lists (version 3) */
        bool align;            /* PAD records align large DATA payloads (version 4) */
        uint64_t out_pos;      /* stream offset of the current buffer's first byte */
        struct cta_bsum bsum;
        bool skip_quiet;           /* a live copy's next pass: changed_since with have */
        struct cta_pend_dirs pend; /* its directories held back (internal.h) */
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
                s->cur->data_bytes = s->st.data_bytes + s->st.copied_bytes;
                s->cur->entries = s->st.entries;
                s->full[(s->full_head + s->nfull) % OBUF_COUNT] = s->cur;
                s->nfull++;
                s->out_pos += s->cur->len;
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

/* Before a record at path: the held-back directories above it (internal.h), in order. */
static int pend_flush(struct sender *s, const char *path, size_t len, struct cta_error **err)
{
        cta_pend_pop(&s->pend, path, len);
        for (size_t i = 0; i < s->pend.n; i++) {
                const struct cta_pend_dir *d = &s->pend.v[i];
                uint8_t *p = room(s, d->len, err);
                if (!p)
                        return -CTA_E_CANCELLED;
                memcpy(p, d->rec, d->len);
                cta_mig_put64(p + CTA_MIG_REC_HDR, s->next_id++);
                s->cur->len += d->len;
                s->st.entries++;
                s->st.dirs++;
                s->st.quiet--;
        }
        cta_pend_done(&s->pend);
        return 0;
}

/* Make sure n contiguous bytes are free in the current buffer (flushing it if not). */
static int ensure_room(struct sender *s, size_t n, struct cta_error **err)
{
        if (!s->cur || s->cur->cap - s->cur->len < n)
                if (flush_cur(s, err) < 0)
                        return -CTA_E_CANCELLED;
        return 0;
}

/* n bytes of the file at off into p: through the direct-I/O window (reading ahead no
 * further than limit) or plainly. */
static ssize_t read_data(struct sender *s, int fd, bool direct, void *p, size_t n, uint64_t off,
                         uint64_t limit)
{
        return direct ? cta_dio_pread(&s->dio, p, n, off, limit) : pread(fd, p, n, (off_t)off);
}

static int emit_copy(struct sender *s, uint64_t *off, uint64_t *len, struct cta_error **err)
{
        if (!*len)
                return 0;
        if (ensure_room(s, CTA_MIG_REC_HDR + CTA_MIG_COPY_LEN, err) < 0)
                return -CTA_E_CANCELLED;
        s->cur->len += cta_mig_enc_copy(s->cur->data + s->cur->len, *off, *len);
        s->st.copied_bytes += *len;
        bool big = *len >= COPY_FLUSH;
        *off = *len = 0;
        /* let the receiver start copying now, while we read on (it reads its own disk) */
        return big && flush_cur(s, err) < 0 ? -CTA_E_CANCELLED : 0;
}

/*
 * A large file, block by block (CTA_MIG_BLOCK): each block's data extents are read into
 * DATA records in the output buffer while its XXH3-64 is computed; with base (the
 * destination's have record carrying block hashes) a block whose hash equals the
 * destination's is taken back out of the buffer and becomes part of a COPY range instead.
 * Holes are never sent. The whole-file XXH3-128 covers the content either way, so the
 * receiver checks what it built from its own blocks too. With a block map directory the
 * block hashes are recorded for this file.
 */
static int send_blocks(struct sender *s, int fd, const struct stat *st, const char *path,
                       const struct cta_mig_have_rec *base, struct cta_error **err)
{
        uint64_t size = (uint64_t)st->st_size, pos = 0, sent = 0;
        uint64_t ed = 0, eh = 0; /* the current data extent [ed, eh) */
        uint64_t copy_off = 0, copy_len = 0, ra = 0;
        bool dense = (uint64_t)st->st_blocks * 512 >= size, eof = false;
        bool recording = size >= CTA_MIG_BLOCKMAP_MIN &&
                         cta_bm_begin(&s->bmw, s->bm_dirfd, size) == 0;
        int r = 0;
        if (dense) {
                ed = 0;
                eh = size;
        }
        bool direct = size >= CTA_DIO_MIN && !cta_dio_cached(fd, size) &&
                      cta_dio_begin(&s->dio, fd);
        bool bsum = s->blocksum && size >= CTA_MIG_BLOCKMAP_MIN;
        if (bsum)
                cta_bsum_begin(&s->bsum, size);
        else
                XXH3_128bits_reset(s->hash);
        if (dense && !direct) /* the kernel's readahead does well on one long extent */
                (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        for (uint64_t b = 0; b < cta_mig_nblocks(size); b++) {
                uint64_t bs = b << CTA_MIG_BLOCK_SHIFT;
                uint64_t be = size - bs < CTA_MIG_BLOCK ? size : bs + CTA_MIG_BLOCK;
                bool cmp = base && be <= base->size &&
                           (be - bs == CTA_MIG_BLOCK || be == base->size);
                if (!cmp && (r = emit_copy(s, &copy_off, &copy_len, err)) < 0)
                        goto out;
                /* the whole block fits (with padding): it can be taken back */
                if ((r = ensure_room(s, CTA_MIG_BLOCK + BLOCK_SLACK, err)) < 0)
                        goto out;
                size_t mark = s->cur->len;
                uint64_t bpos = bs, bsent = 0;
                XXH3_64bits_reset(s->bhash);
                for (uint64_t off = bs; off < be && !eof;) {
                        if (!dense && off >= eh) {
                                off_t x = lseek(fd, (off_t)off, SEEK_DATA);
                                if (x < 0 && errno == ENXIO) {
                                        eof = true;
                                        break;
                                }
                                if (x < 0 ||
                                    (eh = (uint64_t)lseek(fd, x, SEEK_HOLE)) == (uint64_t)-1) {
                                        r = cta_error_errno(err, CTA_E_IO, "seek %s", path);
                                        goto out;
                                }
                                ed = (uint64_t)x;
                                if (eh > size)
                                        eh = size;
                                if (ed >= size) {
                                        eof = true;
                                        break;
                                }
                        }
                        uint64_t d = off > ed ? off : ed;
                        if (d >= be)
                                break; /* the next data is in a later block */
                        if (ra < d)
                                ra = d;
                        if (!direct && !dense && ra < eh && ra < d + READ_AHEAD / 2) {
                                /* keep the disk busy while we hash and send; data only:
                                 * readahead of a hole would fill the cache with zeros */
                                uint64_t k = eh - ra < READ_AHEAD ? eh - ra : READ_AHEAD;
                                (void)posix_fadvise(fd, (off_t)ra, (off_t)k,
                                                    POSIX_FADV_WILLNEED);
                                ra += k;
                        }
                        uint64_t want = (eh < be ? eh : be) - d;
                        /* (for the receiver's direct writes: whether we read direct
                         * or from the page cache does not matter) */
                        if (s->align && size >= CTA_DIO_MIN && want >= ALIGN_MIN_DATA) {
                                size_t pad = cta_mig_pad_for(s->out_pos + s->cur->len, d);
                                if (pad)
                                        s->cur->len += cta_mig_enc_pad(s->cur->data +
                                                                       s->cur->len, pad);
                        }
                        uint8_t *p = s->cur->data + s->cur->len;
                        ssize_t n = read_data(s, fd, direct, p + CTA_MIG_REC_HDR + 8,
                                              (size_t)want, d, eh);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0) {
                                r = cta_error_errno(err, CTA_E_IO, "read %s", path);
                                goto out;
                        }
                        if (n == 0) { /* shrank while we read: the rest is a hole */
                                s->st.changed++;
                                eof = true;
                                break;
                        }
                        const uint8_t *data = p + CTA_MIG_REC_HDR + 8;
                        cta_mig_enc_data_hdr(p, d, (uint32_t)n);
                        s->cur->len += CTA_MIG_REC_HDR + 8 + (size_t)n;
                        if (!bsum) {
                                cta_mig_hash_zeros(s->hash, d - pos);
                                cta_xxh3_128_update(s->hash, data, (size_t)n);
                        }
                        cta_mig_hash64_zeros(s->bhash, d - bpos);
                        cta_xxh3_64_update(s->bhash, data, (size_t)n);
                        pos = bpos = off = d + (uint64_t)n;
                        bsent += (uint64_t)n;
                }
                if (!bsent) { /* all hole here: nothing to send or copy */
                        if ((r = emit_copy(s, &copy_off, &copy_len, err)) < 0)
                                goto out;
                        uint64_t zh = cta_mig_block_hash_zeros(be - bs);
                        cta_bm_push(&s->bmw, zh);
                        if (bsum)
                                cta_bsum_block(&s->bsum, zh);
                        continue;
                }
                cta_mig_hash64_zeros(s->bhash, be - bpos);
                uint64_t bh = XXH3_64bits_digest(s->bhash), theirs = 0;
                cta_bm_push(&s->bmw, bh);
                if (bsum)
                        cta_bsum_block(&s->bsum, bh);
                if (cmp && (r = have_block(s->have, b, &theirs, err)) < 0)
                        goto out;
                if (cmp && theirs == bh) {
                        s->cur->len = mark;
                        if (copy_len && copy_off + copy_len == bs) {
                                copy_len += be - bs;
                        } else {
                                if ((r = emit_copy(s, &copy_off, &copy_len, err)) < 0)
                                        goto out;
                                copy_off = bs;
                                copy_len = be - bs;
                        }
                        continue;
                }
                if (copy_len) { /* the pending COPY goes before this block's DATA */
                        uint8_t *m = s->cur->data + mark;
                        memmove(m + CTA_MIG_REC_HDR + CTA_MIG_COPY_LEN, m, s->cur->len - mark);
                        cta_mig_enc_copy(m, copy_off, copy_len);
                        s->cur->len += CTA_MIG_REC_HDR + CTA_MIG_COPY_LEN;
                        s->st.copied_bytes += copy_len;
                        copy_off = copy_len = 0;
                }
                sent += bsent;
                s->st.data_bytes += bsent;
        }
        if ((r = emit_copy(s, &copy_off, &copy_len, err)) < 0)
                goto out;
        uint8_t sum[16];
        if (bsum) {
                cta_bsum_final(&s->bsum, NULL, sum);
        } else {
                cta_mig_hash_zeros(s->hash, size - pos);
                XXH128_canonical_t c;
                XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s->hash));
                memcpy(sum, c.digest, sizeof(sum));
        }
        if ((r = ensure_room(s, CTA_MIG_REC_HDR + CTA_MIG_FILE_END_LEN, err)) < 0)
                goto out;
        s->cur->len += cta_mig_enc_file_end(s->cur->data + s->cur->len, sent, sum);
        s->st.files++;
        if (base)
                s->st.delta_files++;
        if (recording) {
                /* only a file that did not change while we read it is worth a record */
                struct stat after;
                if (fstat(fd, &after) == 0 && after.st_size == st->st_size &&
                    after.st_mtim.tv_sec == st->st_mtim.tv_sec &&
                    after.st_mtim.tv_nsec == st->st_mtim.tv_nsec &&
                    after.st_ctim.tv_sec == st->st_ctim.tv_sec &&
                    after.st_ctim.tv_nsec == st->st_ctim.tv_nsec &&
                    cta_bm_commit(&s->bmw, &after) == 0)
                        s->st.blockmaps++;
        }
out:
        if (direct)
                cta_dio_end(&s->dio);
        cta_bm_abort(&s->bmw);
        return r;
}

/* Stream a regular file's data extents; holes are skipped (and hashed as zeros). */
static int send_data(struct sender *s, int fd, const struct stat *st, const char *path,
                     struct cta_error **err)
{
        uint64_t size = (uint64_t)st->st_size, pos = 0, sent = 0;
        bool dense = (uint64_t)st->st_blocks * 512 >= size;
        bool direct = size >= CTA_DIO_MIN && !cta_dio_cached(fd, size) &&
                      cta_dio_begin(&s->dio, fd);
        int r = 0;
        XXH3_128bits_reset(s->hash);
        if (size > (64u << 20) && !direct)
                (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        uint64_t off = 0;
        while (off < size) {
                uint64_t d = off, h = size;
                if (!dense) {
                        off_t x = lseek(fd, (off_t)off, SEEK_DATA);
                        if (x < 0 && errno == ENXIO)
                                break;
                        if (x < 0) {
                                r = cta_error_errno(err, CTA_E_IO, "seek %s", path);
                                goto out;
                        }
                        d = (uint64_t)x;
                        x = lseek(fd, x, SEEK_HOLE);
                        if (x < 0) {
                                r = cta_error_errno(err, CTA_E_IO, "seek %s", path);
                                goto out;
                        }
                        h = (uint64_t)x < size ? (uint64_t)x : size;
                        if (d >= size)
                                break;
                }
                while (d < h) {
                        if (!s->cur || s->cur->cap - s->cur->len < DATA_MIN_ROOM) {
                                if (flush_cur(s, err) < 0) {
                                        r = -CTA_E_CANCELLED;
                                        goto out;
                                }
                        }
                        size_t avail = s->cur->cap - s->cur->len - CTA_MIG_REC_HDR - 8;
                        uint64_t want = h - d;
                        if (want > avail)
                                want = avail;
                        if (want > CTA_MIG_DATA_CHUNK)
                                want = CTA_MIG_DATA_CHUNK;
                        uint8_t *p = s->cur->data + s->cur->len;
                        ssize_t n = read_data(s, fd, direct, p + CTA_MIG_REC_HDR + 8,
                                              (size_t)want, d, h);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0) {
                                r = cta_error_errno(err, CTA_E_IO, "read %s", path);
                                goto out;
                        }
                        if (n == 0) { /* shrank while we read: the rest is a hole */
                                s->st.changed++;
                                goto done;
                        }
                        cta_mig_enc_data_hdr(p, d, (uint32_t)n);
                        s->cur->len += CTA_MIG_REC_HDR + 8 + (size_t)n;
                        cta_mig_hash_zeros(s->hash, d - pos);
                        cta_xxh3_128_update(s->hash, p + CTA_MIG_REC_HDR + 8, (size_t)n);
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
        if (!p) {
                r = -CTA_E_CANCELLED;
                goto out;
        }
        s->cur->len += cta_mig_enc_file_end(p, sent, c.digest);
        s->st.files++;
out:
        if (direct)
                cta_dio_end(&s->dio);
        return r;
}

/* The destination has the current have entry and the source does not: delete it. */
static int have_delete_cur(struct sender *s, struct cta_error **err)
{
        struct have_reader *h = s->have;
        int r = s->pend.n ? pend_flush(s, h->cur.path, h->cur.path_len, err) : 0;
        if (r == 0)
                r = emit_delete(s, h->cur.path, h->cur.path_len, err);
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

static int send_item_fd(struct sender *s, const struct cta_walk_item *it,
                        struct cta_error **err);

/*
 * Does the destination hold this regular file already (the have record's size and mtime
 * match st's), so that only its metadata goes? Not when its ctime is at or after
 * changed_since: see cta_mig_send_opts.
 */
static bool have_unchanged(const struct sender *s, const struct cta_mig_have_rec *hv,
                           const struct stat *st)
{
        if (!hv || hv->kind != CTA_MIG_K_REG || !S_ISREG(st->st_mode) ||
            hv->size != (uint64_t)st->st_size || hv->mtime_sec != st->st_mtim.tv_sec ||
            hv->mtime_nsec != (uint32_t)st->st_mtim.tv_nsec)
                return false;
        const struct timespec *t = s->o ? &s->o->changed_since : NULL;
        if (!t || (!t->tv_sec && !t->tv_nsec))
                return true;
        return cta_mig_ts_before(&st->st_ctim, t);
}

/*
 * A live copy's next pass (changed_since, with a have stream): is this entry as the pass
 * before left it on both sides, so that nothing need be sent for it? Its ctime is before
 * that pass began (no write, chmod, chown, xattr or time change since; a rename or a new
 * link changes it too) and the destination's summary shows the same kind and mtime (and
 * size). For a regular file, so is its atime: one read meanwhile gets its record, and so
 * its atime (we read files with O_NOATIME; directories and symlinks have atimes our own
 * walks move, left as the first pass saw them). Files with several links always go, so
 * that every link finds its first path.
 */
static bool quiet(const struct sender *s, const struct cta_mig_have_rec *hv,
                  const struct stat *st, uint8_t kind)
{
        const struct timespec *t = &s->o->changed_since;
        if (!hv || hv->kind != kind || hv->mtime_sec != st->st_mtim.tv_sec ||
            hv->mtime_nsec != (uint32_t)st->st_mtim.tv_nsec)
                return false;
        if (!cta_mig_ts_before(&st->st_ctim, t) ||
            (kind == CTA_MIG_K_REG && !cta_mig_ts_before(&st->st_atim, t)))
                return false;
        if (kind == CTA_MIG_K_REG)
                return st->st_nlink == 1 && hv->size == (uint64_t)st->st_size;
        return true;
}

/*
 * An incremental pass walks without opening regular files (most are unchanged: their
 * metadata comes from the walk, their xattrs by path); a file whose data must go is opened
 * here, and described by the stat of what was opened.
 */
static int send_item(struct sender *s, const struct cta_walk_item *it, struct cta_error **err)
{
        if (!S_ISREG(it->st.st_mode) || it->fd >= 0 || !s->have)
                return send_item_fd(s, it, err);
        const struct cta_mig_have_rec *hv = NULL;
        int r = have_merge(s, it->path, it->path_len, &hv, err);
        if (r < 0)
                return r;
        if (have_unchanged(s, hv, &it->st))
                return send_item_fd(s, it, err);
        struct cta_walk_item o = *it;
        o.fd = cta_mig_open_file(it->dirfd, it->name);
        if (o.fd < 0 || fstat(o.fd, &o.st) < 0 || !S_ISREG(o.st.st_mode)) {
                int e = errno;
                if (o.fd >= 0)
                        close(o.fd);
                if (o.fd >= 0 || e == ENOENT || e == ENOTDIR || e == ELOOP) {
                        s->st.vanished++;
                        return 0;
                }
                errno = e;
                return cta_error_errno(err, CTA_E_IO, "open %s", it->path);
        }
        r = send_item_fd(s, &o, err);
        close(o.fd);
        return r;
}

static int send_item_fd(struct sender *s, const struct cta_walk_item *it,
                        struct cta_error **err)
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
        bool hold = false; /* a quiet directory: held back until something inside goes */
        if (s->skip_quiet && !it->is_root) {
                cta_pend_pop(&s->pend, it->path, it->path_len);
                if (quiet(s, hv, st, kind)) {
                        s->st.quiet++;
                        if (kind != CTA_MIG_K_DIR)
                                return have_advance(s->have, err);
                        hold = true;
                } else if (s->pend.n) {
                        /* the directories above go first, and take the next ids */
                        if ((r = pend_flush(s, it->path, it->path_len, err)) < 0)
                                return r;
                        e.id = s->next_id;
                }
        }
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
                if (have_unchanged(s, hv, st)) {
                        e.flags |= CTA_MIG_EF_UNCHANGED;
                        s->st.unchanged++;
                } else if (hv && (hv->flags & CTA_MIG_HAVE_F_BLOCKS) && e.size) {
                        e.flags |= CTA_MIG_EF_BASED;
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
        if (hold) {
                cta_pend_push(&s->pend, &e);
                s->st.dirs--; /* counted if it goes after all */
                return have_advance(s->have, err);
        }
        if (hv && (e.flags & CTA_MIG_EF_BASED)) {
                /* the block hashes follow this have record: advance after the data */
                r = emit_entry(s, &e, err);
                if (r < 0)
                        return r;
                s->next_id++;
                r = send_blocks(s, it->fd, st, it->path, hv, err);
                return r < 0 ? r : have_advance(s->have, err);
        }
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
        if (e.kind == CTA_MIG_K_REG && !(e.flags & CTA_MIG_EF_UNCHANGED)) {
                pf_done(s->pf, e.size);
                if ((s->bm_dirfd >= 0 || s->blocksum) && e.size >= CTA_MIG_BLOCKMAP_MIN)
                        return send_blocks(s, it->fd, st, it->path, NULL, err);
                return send_data(s, it->fd, st, it->path, err);
        }
        return 0;
}

/* ------------------------------------------------------------------ prefetcher */

/*
 * A full copy of many small files on a cold cache is bound by read latency: a second
 * walker runs ahead of the producer in the same canonical order and starts the reads of
 * the next files (open, POSIX_FADV_WILLNEED, close; the pages stay in the cache), at most
 * PF_AHEAD_FILES files or PF_AHEAD_BYTES ahead. Its CPU (path lookups, inode reads, I/O
 * submission) is taken off the producer's thread.
 */
#define PF_AHEAD_FILES 1024
#define PF_AHEAD_BYTES (48u << 20)
#define PF_FILE_BYTES (1u << 20)

struct prefetcher {
        int root_fd;
        pthread_t th;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int64_t issued_files, issued_bytes; /* the prefetcher's count */
        int64_t done_files, done_bytes;     /* the producer's count of the same files */
        bool waiting, stop;
};

static bool pf_too_far(const struct prefetcher *p)
{
        return p->issued_files - p->done_files > PF_AHEAD_FILES ||
               p->issued_bytes - p->done_bytes > PF_AHEAD_BYTES;
}

static void *prefetch_main(void *arg)
{
        struct prefetcher *p = arg;
        pthread_setname_np(pthread_self(), "cta-mig-ahead");
        struct cta_walk *w = NULL;
        struct cta_walk_item it;
        if (cta_walk_new(p->root_fd, 0, &w, NULL) < 0)
                return NULL;
        while (cta_walk_next(w, &it, NULL) > 0) {
                if (!S_ISREG(it.st.st_mode) || it.st.st_size <= 0)
                        continue;
                int64_t n = it.st.st_size < PF_FILE_BYTES ? it.st.st_size : PF_FILE_BYTES;
                pthread_mutex_lock(&p->mu);
                while (pf_too_far(p) && !p->stop) {
                        p->waiting = true;
                        pthread_cond_wait(&p->cv, &p->mu);
                }
                p->waiting = false;
                bool stop = p->stop;
                pthread_mutex_unlock(&p->mu);
                if (stop)
                        break;
                int fd = openat(it.dirfd, it.name, O_RDONLY | O_NOFOLLOW | O_NOATIME | O_NONBLOCK |
                                                           O_NOCTTY | O_CLOEXEC);
                if (fd >= 0) {
                        (void)posix_fadvise(fd, 0, n, POSIX_FADV_WILLNEED);
                        close(fd);
                }
                pthread_mutex_lock(&p->mu);
                p->issued_files++;
                p->issued_bytes += n;
                pthread_mutex_unlock(&p->mu);
        }
        cta_walk_free(w);
        return NULL;
}

/* The producer has read a file the prefetcher counted. */
static void pf_done(struct prefetcher *p, uint64_t size)
{
        if (!p || !size)
                return;
        pthread_mutex_lock(&p->mu);
        p->done_files++;
        p->done_bytes += size < PF_FILE_BYTES ? (int64_t)size : PF_FILE_BYTES;
        if (p->waiting && p->issued_files - p->done_files < PF_AHEAD_FILES / 2 &&
            p->issued_bytes - p->done_bytes < PF_AHEAD_BYTES / 2)
                pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
}

static struct prefetcher *pf_start(int root_fd)
{
        struct prefetcher *p = cta_xcalloc(1, sizeof(*p));
        p->root_fd = root_fd;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        if (pthread_create(&p->th, NULL, prefetch_main, p) != 0) {
                pthread_mutex_destroy(&p->mu);
                pthread_cond_destroy(&p->cv);
                free(p);
                return NULL;
        }
        return p;
}

static void pf_stop(struct prefetcher *p)
{
        if (!p)
                return;
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->th, NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
}

static int produce(struct sender *s, struct cta_error **err)
{
        struct cta_walk *w = NULL;
        struct cta_walk_item it;
        /* an incremental pass reads few files: no read-ahead of the ones it skips */
        int r = cta_walk_new(s->root_fd,
                             s->have ? 0 : CTA_WALK_OPEN_FILES | CTA_WALK_NO_PREFETCH, &w, err);
        if (r < 0)
                return r;
        if (!s->have) /* an incremental pass reads few files */
                s->pf = pf_start(s->root_fd);
        uint8_t *p = room(s, CTA_MIG_REC_HDR + CTA_MIG_HEADER_LEN, err);
        if (!p) {
                pf_stop(s->pf);
                s->pf = NULL;
                cta_walk_free(w);
                return -CTA_E_CANCELLED;
        }
        uint32_t hf = s->have ? CTA_MIG_HF_INCREMENTAL : 0;
        if (s->have && s->have->blocks_ok)
                hf |= CTA_MIG_HF_BASED;
        if (s->blocksum)
                hf |= CTA_MIG_HF_BLOCKSUM;
        if (s->align)
                hf |= CTA_MIG_HF_ALIGNED;
        s->cur->len += cta_mig_enc_header(p, hf,
                                          s->totals.entries, s->totals.data_bytes);
        while ((r = cta_walk_next(w, &it, err)) > 0) {
                r = send_item(s, &it, err);
                if (r < 0)
                        break;
        }
        s->st.vanished += cta_walk_vanished(w);
        pf_stop(s->pf);
        s->pf = NULL;
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
        pthread_setname_np(pthread_self(), "cta-mig-read");
        (void)cta_mig_thread_own_cwd();
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
        s->bhash = XXH3_createState();
        s->bm_dirfd = cta_bm_opendir(o ? o->blockmap_dir : NULL);
        s->bmw.fd = -1;
        cta_dio_init(&s->dio);
        s->blocksum = !o || !o->peer_version || o->peer_version >= 3;
        s->align = !o || !o->peer_version || o->peer_version >= 4;
        if (!s->hash || !s->bhash || cta_bsum_init(&s->bsum) < 0) {
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
                s->skip_quiet = o->changed_since.tv_sec || o->changed_since.tv_nsec;
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
        report(s, s->st.data_bytes + s->st.copied_bytes, s->st.entries);
        s->st.wire_bytes = wire;
        s->st.direct_bytes = s->dio.direct_bytes;
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
        cta_pend_done(&s->pend);
        cta_dio_free(&s->dio);
        cta_bsum_done(&s->bsum);
        if (s->hash)
                XXH3_freeState(s->hash);
        if (s->bhash)
                XXH3_freeState(s->bhash);
        if (s->bm_dirfd >= 0)
                close(s->bm_dirfd);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return r;
}
