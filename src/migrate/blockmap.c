/*
 * Block maps: per-block XXH3-64 hashes of large regular files, kept in a side directory
 * (never in the tree itself: an xattr would leak into the container) so that a later have
 * stream can tell the source what the destination holds without reading it.
 *
 * One file per recorded inode, named "<st_dev>-<st_ino>" (hex), written under a temporary
 * name and renamed into place. A record is only believed while the file's device, inode,
 * size, mtime and ctime (which no one can set back) are all those recorded, and while its
 * own digests are intact; anything else is ignored (and the receiver verifies the content
 * it builds from the destination's blocks anyway, so a wrong record costs a retry, never a
 * wrong file). The directory is a cache: any record may be deleted at any time.
 *
 * Layout (little endian): magic "CTABLKS1", u32 block shift, u32 tag, u64 dev, u64 ino,
 * u64 size, i64 mtime s, u32 mtime ns, u32 ctime ns, i64 ctime s, u64 block count,
 * u64 XXH3-64 of the hash array, u64 XXH3-64 of the 80 bytes before it; then the hashes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "migrate/hash.h"
#include "migrate/internal.h"
#include "util/error.h"
#include "util/util.h"

#define BM_MAGIC "CTABLKS1"
#define BM_HDR 88u

static const uint8_t zero_block[65536];
static uint64_t g_zero_hash;
static pthread_once_t g_zero_once = PTHREAD_ONCE_INIT;

static void zero_hash_init(void)
{
        XXH3_state_t *st = XXH3_createState();
        XXH3_64bits_reset(st);
        for (size_t i = 0; i < CTA_MIG_BLOCK / sizeof(zero_block); i++)
                cta_xxh3_64_update(st, zero_block, sizeof(zero_block));
        g_zero_hash = XXH3_64bits_digest(st);
        XXH3_freeState(st);
}

uint64_t cta_mig_block_hash_zeros(uint64_t len)
{
        if (len == CTA_MIG_BLOCK) {
                pthread_once(&g_zero_once, zero_hash_init);
                return g_zero_hash;
        }
        XXH3_state_t *st = XXH3_createState();
        XXH3_64bits_reset(st);
        cta_mig_hash64_zeros(st, len);
        uint64_t h = XXH3_64bits_digest(st);
        XXH3_freeState(st);
        return h;
}

void cta_mig_hash64_zeros(struct XXH3_state_s *st, uint64_t n)
{
        while (n) {
                size_t k = n > sizeof(zero_block) ? sizeof(zero_block) : (size_t)n;
                cta_xxh3_64_update(st, zero_block, k);
                n -= k;
        }
}

uint64_t cta_mig_nblocks(uint64_t size)
{
        return (size >> CTA_MIG_BLOCK_SHIFT) + ((size & (CTA_MIG_BLOCK - 1)) != 0);
}

int cta_bm_opendir(const char *path)
{
        if (!path || !path[0])
                return -1;
        (void)mkdir(path, 0700);
        return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void bm_name(char *buf, size_t len, uint64_t dev, uint64_t ino)
{
        snprintf(buf, len, "%llx-%llx", (unsigned long long)dev, (unsigned long long)ino);
}

/* ------------------------------------------------------------------ writer */

int cta_bm_begin(struct cta_bm_writer *w, int dirfd, uint64_t size)
{
        static atomic_uint seq;
        *w = (struct cta_bm_writer){ .dirfd = dirfd, .fd = -1, .size = size };
        if (dirfd < 0)
                return -1;
        snprintf(w->tmp, sizeof(w->tmp), ".tmp.%d.%u", (int)getpid(), atomic_fetch_add(&seq, 1));
        w->fd = openat(dirfd, w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                       0600);
        if (w->fd < 0)
                return -1;
        w->st = XXH3_createState();
        w->dig = XXH3_createState();
        w->buf = malloc(CTA_BM_BUF * sizeof(uint64_t));
        if (!w->st || !w->dig || !w->buf) {
                cta_bm_abort(w);
                return -1;
        }
        XXH3_64bits_reset(w->dig);
        return 0;
}

static void bm_flush(struct cta_bm_writer *w)
{
        if (!w->nbuf || w->fd < 0)
                return;
        uint8_t raw[CTA_BM_BUF * 8];
        for (size_t i = 0; i < w->nbuf; i++)
                cta_mig_put64(raw + 8 * i, w->buf[i]);
        size_t n = w->nbuf * 8;
        cta_xxh3_64_update(w->dig, raw, n);
        if (pwrite(w->fd, raw, n, (off_t)(BM_HDR + (w->nblocks - w->nbuf) * 8)) != (ssize_t)n)
                w->failed = true;
        w->nbuf = 0;
}

void cta_bm_push(struct cta_bm_writer *w, uint64_t hash)
{
        if (w->fd < 0)
                return;
        w->buf[w->nbuf++] = hash;
        w->nblocks++;
        w->pos = w->nblocks << CTA_MIG_BLOCK_SHIFT;
        if (w->pos > w->size)
                w->pos = w->size;
        if (w->nbuf == CTA_BM_BUF)
                bm_flush(w);
}

/* Cut n bytes of a file's content at *pos (data NULL: zeros) into its CTA_MIG_BLOCK
 * blocks, hashing them in st (a whole block of zeros is a constant); each finished block's
 * hash goes to done(ctx, hash), and *pos moves on. Used by the block map writer and the
 * block-list checksum alike. */
typedef void block_done_fn(void *ctx, uint64_t hash);

static void feed_blocks(XXH3_state_t *st, uint64_t *pos, uint64_t size, const void *data,
                        uint64_t n, block_done_fn *done, void *ctx)
{
        const uint8_t *p = data;
        while (n && *pos < size) {
                uint64_t bs = *pos & ~(CTA_MIG_BLOCK - 1);
                uint64_t blen = size - bs < CTA_MIG_BLOCK ? size - bs : CTA_MIG_BLOCK;
                uint64_t in = *pos - bs, k = blen - in < n ? blen - in : n;
                n -= k;
                /* done() sees *pos still inside the block it finishes */
                if (!p && in == 0 && k == blen) {
                        done(ctx, cta_mig_block_hash_zeros(blen));
                } else {
                        if (in == 0)
                                XXH3_64bits_reset(st);
                        if (p)
                                cta_xxh3_64_update(st, p, (size_t)k);
                        else
                                cta_mig_hash64_zeros(st, k);
                        if (p)
                                p += k;
                        if (in + k == blen)
                                done(ctx, XXH3_64bits_digest(st));
                }
                *pos = bs + in + k;
        }
}

static void bm_done(void *ctx, uint64_t hash)
{
        cta_bm_push(ctx, hash);
}

void cta_bm_feed(struct cta_bm_writer *w, const void *data, uint64_t n)
{
        if (w->fd >= 0)
                feed_blocks(w->st, &w->pos, w->size, data, n, bm_done, w);
}

static void put_stat(uint8_t *h, const struct stat *st, uint64_t nblocks, uint64_t dig,
                     uint32_t tag)
{
        memset(h, 0, BM_HDR);
        memcpy(h, BM_MAGIC, 8);
        cta_mig_put32(h + 8, CTA_MIG_BLOCK_SHIFT);
        cta_mig_put32(h + 12, tag);
        cta_mig_put64(h + 16, (uint64_t)st->st_dev);
        cta_mig_put64(h + 24, (uint64_t)st->st_ino);
        cta_mig_put64(h + 32, (uint64_t)st->st_size);
        cta_mig_put64(h + 40, (uint64_t)st->st_mtim.tv_sec);
        cta_mig_put32(h + 48, (uint32_t)st->st_mtim.tv_nsec);
        cta_mig_put32(h + 52, (uint32_t)st->st_ctim.tv_nsec);
        cta_mig_put64(h + 56, (uint64_t)st->st_ctim.tv_sec);
        cta_mig_put64(h + 64, nblocks);
        cta_mig_put64(h + 72, dig);
        cta_mig_put64(h + 80, XXH3_64bits(h, 80));
}

int cta_bm_commit(struct cta_bm_writer *w, const struct stat *st)
{
        if (w->fd < 0)
                return -1;
        if (w->pos < w->size)
                cta_bm_feed(w, NULL, w->size - w->pos);
        bm_flush(w);
        uint8_t h[BM_HDR];
        int r = -1;
        if (!w->failed && (uint64_t)st->st_size == w->size &&
            w->nblocks == cta_mig_nblocks(w->size)) {
                put_stat(h, st, w->nblocks, XXH3_64bits_digest(w->dig), w->tag);
                if (pwrite(w->fd, h, BM_HDR, 0) == (ssize_t)BM_HDR) {
                        char name[64];
                        bm_name(name, sizeof(name), (uint64_t)st->st_dev, (uint64_t)st->st_ino);
                        if (renameat(w->dirfd, w->tmp, w->dirfd, name) == 0) {
                                w->tmp[0] = 0;
                                r = 0;
                        }
                }
        }
        cta_bm_abort(w);
        return r;
}

void cta_bm_abort(struct cta_bm_writer *w)
{
        if (w->fd >= 0) {
                close(w->fd);
                if (w->tmp[0])
                        (void)unlinkat(w->dirfd, w->tmp, 0);
        }
        w->fd = -1;
        if (w->st)
                XXH3_freeState(w->st);
        if (w->dig)
                XXH3_freeState(w->dig);
        free(w->buf);
        w->st = w->dig = NULL;
        w->buf = NULL;
}

/* ------------------------------------------------------------------ reader */

static bool hdr_matches(const uint8_t *h, const struct stat *st)
{
        return memcmp(h, BM_MAGIC, 8) == 0 && cta_mig_get32(h + 8) == CTA_MIG_BLOCK_SHIFT &&
               cta_mig_get64(h + 80) == XXH3_64bits(h, 80) &&
               cta_mig_get64(h + 16) == (uint64_t)st->st_dev &&
               cta_mig_get64(h + 24) == (uint64_t)st->st_ino &&
               cta_mig_get64(h + 32) == (uint64_t)st->st_size &&
               cta_mig_get64(h + 40) == (uint64_t)st->st_mtim.tv_sec &&
               cta_mig_get32(h + 48) == (uint32_t)st->st_mtim.tv_nsec &&
               cta_mig_get32(h + 52) == (uint32_t)st->st_ctim.tv_nsec &&
               cta_mig_get64(h + 56) == (uint64_t)st->st_ctim.tv_sec &&
               cta_mig_get64(h + 64) == cta_mig_nblocks((uint64_t)st->st_size);
}

int cta_bm_open(int dirfd, const struct stat *st)
{
        uint32_t tag;
        return cta_bm_open_tag(dirfd, st, &tag);
}

int cta_bm_open_tag(int dirfd, const struct stat *st, uint32_t *tag)
{
        char name[64];
        uint8_t h[BM_HDR];
        if (dirfd < 0 || !S_ISREG(st->st_mode) || st->st_size <= 0)
                return -1;
        bm_name(name, sizeof(name), (uint64_t)st->st_dev, (uint64_t)st->st_ino);
        int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -1;
        if (pread(fd, h, BM_HDR, 0) != (ssize_t)BM_HDR || !hdr_matches(h, st))
                goto bad;
        /* the whole hash array must be intact before any of it is believed */
        uint64_t n = cta_mig_get64(h + 64) * 8, off = 0;
        XXH3_state_t *dig = XXH3_createState();
        uint8_t buf[65536];
        XXH3_64bits_reset(dig);
        while (off < n) {
                size_t k = n - off > sizeof(buf) ? sizeof(buf) : (size_t)(n - off);
                if (pread(fd, buf, k, (off_t)(BM_HDR + off)) != (ssize_t)k)
                        break;
                cta_xxh3_64_update(dig, buf, k);
                off += k;
        }
        bool ok = off == n && XXH3_64bits_digest(dig) == cta_mig_get64(h + 72);
        XXH3_freeState(dig);
        *tag = cta_mig_get32(h + 12);
        if (ok && lseek(fd, BM_HDR, SEEK_SET) == (off_t)BM_HDR)
                return fd;
bad:
        close(fd);
        return -1;
}

int cta_bm_hash_at(int fd, uint64_t idx, uint64_t *hash)
{
        uint8_t h[8];
        if (pread(fd, h, sizeof(h), (off_t)(BM_HDR + idx * 8)) != (ssize_t)sizeof(h))
                return -1;
        *hash = cta_mig_get64(h);
        return 0;
}

void cta_bm_refresh(int dirfd, const struct stat *before, const struct stat *after)
{
        char name[64];
        uint8_t h[BM_HDR];
        if (dirfd < 0 || before->st_ino != after->st_ino || before->st_dev != after->st_dev)
                return;
        bm_name(name, sizeof(name), (uint64_t)before->st_dev, (uint64_t)before->st_ino);
        int fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return;
        if (pread(fd, h, BM_HDR, 0) == (ssize_t)BM_HDR && hdr_matches(h, before)) {
                if (after->st_size == before->st_size &&
                    after->st_mtim.tv_sec == before->st_mtim.tv_sec &&
                    after->st_mtim.tv_nsec == before->st_mtim.tv_nsec) {
                        put_stat(h, after, cta_mig_get64(h + 64), cta_mig_get64(h + 72),
                                 cta_mig_get32(h + 12));
                        if (pwrite(fd, h, BM_HDR, 0) == (ssize_t)BM_HDR) {
                                close(fd);
                                return;
                        }
                }
        }
        close(fd);
        (void)unlinkat(dirfd, name, 0);
}

void cta_bm_invalidate(int dirfd, uint64_t dev, uint64_t ino)
{
        char name[64];
        if (dirfd < 0)
                return;
        bm_name(name, sizeof(name), dev, ino);
        (void)unlinkat(dirfd, name, 0);
}

int cta_mig_blockmap_prune(const char *dir, uint64_t max_age_sec, struct cta_error **err)
{
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                return cta_error_errno(err, CTA_E_IO, "open %s", dir);
        }
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return cta_error_errno(err, CTA_E_IO, "open %s", dir);
        }
        time_t now = time(NULL);
        struct dirent *e;
        while ((e = readdir(d))) {
                struct stat st;
                if (e->d_name[0] == '.' && (!e->d_name[1] || streq(e->d_name, "..")))
                        continue;
                if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if ((uint64_t)(now - st.st_mtim.tv_sec) >= max_age_sec)
                        (void)unlinkat(fd, e->d_name, 0);
        }
        closedir(d);
        return 0;
}

/* ------------------------------------------------------------------ block-list checksum */

int cta_bsum_init(struct cta_bsum *b)
{
        *b = (struct cta_bsum){ .file = XXH3_createState(), .blk = XXH3_createState() };
        if (b->file && b->blk)
                return 0;
        cta_bsum_done(b);
        return -1;
}

void cta_bsum_done(struct cta_bsum *b)
{
        XXH3_freeState(b->file);
        XXH3_freeState(b->blk);
        b->file = b->blk = NULL;
}

void cta_bsum_begin(struct cta_bsum *b, uint64_t size)
{
        XXH3_128bits_reset(b->file);
        b->size = size;
        b->pos = 0;
}

void cta_bsum_block(struct cta_bsum *b, uint64_t hash)
{
        uint8_t h[8];
        cta_mig_put64(h, hash);
        XXH3_128bits_update(b->file, h, sizeof(h));
        b->pos = (b->pos & ~(CTA_MIG_BLOCK - 1)) + CTA_MIG_BLOCK; /* the next block */
        if (b->pos > b->size)
                b->pos = b->size;
}

struct bsum_done_ctx {
        struct cta_bsum *b;
        struct cta_bm_writer *bm;
};

static void bsum_done(void *ctx, uint64_t hash)
{
        struct bsum_done_ctx *c = ctx;
        cta_bsum_block(c->b, hash);
        if (c->bm)
                cta_bm_push(c->bm, hash);
}

void cta_bsum_feed(struct cta_bsum *b, const void *data, uint64_t n, struct cta_bm_writer *bm)
{
        struct bsum_done_ctx c = { b, bm };
        feed_blocks(b->blk, &b->pos, b->size, data, n, bsum_done, &c);
}

void cta_bsum_final(struct cta_bsum *b, struct cta_bm_writer *bm, uint8_t out[16])
{
        cta_bsum_feed(b, NULL, b->size - b->pos, bm);
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(b->file));
        memcpy(out, c.digest, 16);
}
