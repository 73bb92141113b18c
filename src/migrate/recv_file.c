/*
 * The receiver's regular files that travel as records (recv.c hands them over): written
 * under a temporary name and renamed into place once their checksum matched; large ones
 * around the page cache (dio.h) with their block map recorded; block deltas (BASED) built
 * from the destination's own file, or patched into it in place.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "migrate/hash.h"
#include "migrate/recv_int.h"
#include "util/error.h"
#include "util/util.h"

/* Large files' writeback is started every this many bytes. */
#define WRITEBACK_CHUNK (8u << 20)

/* The regular file at pfd/name, opened with flags, never followed, and not opened at
 * all unless it is a regular file (a device's open may act); its stat in *st. Or -1. */
static int open_existing(int pfd, const char *name, int flags, struct stat *st)
{
        struct stat pre;
        if (fstatat(pfd, name, &pre, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(pre.st_mode))
                return -1;
        int fd = openat(pfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0 && (fstat(fd, st) < 0 || !S_ISREG(st->st_mode) || st->st_ino != pre.st_ino)) {
                close(fd);
                fd = -1;
        }
        return fd;
}

/*
 * A BASED file updated where it is (cta_mig_recv_opts.inplace, or a record carrying our
 * inplace_tag): our own regular file with one link and a valid block map record, on a file
 * system that punches holes. The record is dropped before the first write (it no longer
 * describes the file) but kept open: the blocks the source does not send are the ones it
 * lists.
 */
static bool inplace_open(struct receiver *r, int pfd, const struct cta_mig_entry *e)
{
        struct stat st;
        if (!(r->o->inplace || r->o->inplace_tag) || r->bm_dirfd < 0 || !r->blocksum ||
            e->size < CTA_MIG_BLOCKMAP_MIN)
                return false;
        int fd = open_existing(pfd, r->name, O_RDWR, &st);
        if (fd < 0)
                return false;
        int bm = -1;
        uint32_t tag = 0;
        /* a punch beyond the end changes nothing, and says whether punching works */
        if (st.st_nlink != 1 ||
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size, 1) < 0 ||
            (bm = cta_bm_open_tag(r->bm_dirfd, &st, &tag)) < 0 ||
            !(r->o->inplace || tag == r->o->inplace_tag)) {
                if (bm >= 0)
                        close(bm);
                close(fd);
                return false;
        }
        /* Durably: after a power cut the file's new blocks may be on disk with its old
         * times, and a record that survived would then vouch for blocks it does not have
         * (in place, the record's hashes are believed, not the blocks). */
        cta_bm_invalidate(r->bm_dirfd, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
        if (fsync(r->bm_dirfd) < 0) {
                close(bm);
                close(fd);
                return false;
        }
        r->ffd = fd;
        r->ibm = bm;
        r->bst = st;
        r->bsize = (uint64_t)st.st_size;
        r->inplace = true;
        r->patched = false;
        r->tmpname[0] = 0;
        return true;
}

/* In place: what the source's file has as a hole in [from, to) may be data in ours. */
static int inplace_zero(struct receiver *r, uint64_t from, uint64_t to, struct cta_error **err)
{
        if (to > r->bsize)
                to = r->bsize;
        if (from >= to)
                return 0;
        if (fallocate(r->ffd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
                      (off_t)(to - from)) < 0)
                return sys_fail(err, 0, "punch a hole in", r->fpath, r->fpath_len);
        return 0;
}

int cta_recv_file_begin(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                        struct cta_error **err)
{
        r->inplace = false;
        r->fbsum = r->blocksum && e->size >= CTA_MIG_BLOCKMAP_MIN;
        bool inplace = (e->flags & CTA_MIG_EF_BASED) && inplace_open(r, pfd, e);
        for (unsigned attempt = 0; !inplace; attempt++) {
                snprintf(r->tmpname, sizeof(r->tmpname), ".cta-mig.%llu.%u.tmp",
                         (unsigned long long)e->id, attempt);
                r->ffd = openat(pfd, r->tmpname,
                                O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (r->ffd >= 0)
                        break;
                if (errno != EEXIST || attempt >= 16)
                        return sys_fail(err, 0, "create a temporary file for", e->path,
                                        e->path_len);
        }
        r->fpfd = pfd;
        memcpy(r->fname, r->name, sizeof(r->fname));
        memcpy(r->fpath, e->path, e->path_len);
        r->fpath_len = e->path_len;
        if (r->fx_cap < e->xattrs_len) {
                r->fx_cap = e->xattrs_len;
                r->fx = cta_xrealloc(r->fx, r->fx_cap);
        }
        if (e->xattrs_len)
                memcpy(r->fx, e->xattrs, e->xattrs_len);
        r->fe = *e;
        r->fe.path = r->fpath;
        r->fe.xattrs = r->fx;
        r->fe.target = NULL;
        r->fpos = r->frecv = r->fnext = r->fsynced = 0;
        if ((e->flags & CTA_MIG_EF_BASED) && !inplace) {
                /* the file this delta is against: ours, at the same path */
                r->bfd = open_existing(pfd, r->fname, O_RDONLY, &r->bst);
                if (r->bfd < 0) {
                        _cleanup_free_ char *ps = cta_mig_path_fmt(e->path, e->path_len);
                        return FAIL(r, CTA_E_MIG_STREAM, "'%s': no existing file to patch", ps);
                }
                r->bsize = (uint64_t)r->bst.st_size;
        }
        if (e->size >= CTA_MIG_BLOCKMAP_MIN)
                if (cta_bm_begin(&r->bmw, r->bm_dirfd, e->size) == 0)
                        r->bmw.tag = r->o->inplace_tag;
        if (e->size >= CTA_DIO_MIN)
                (void)cta_dio_begin(&r->dio, r->ffd);
        if (r->fbsum)
                cta_bsum_begin(&r->bsum, e->size);
        else
                XXH3_128bits_reset(r->hash);
        r->state = ST_FILE;
        return 0;
}

/* Write n bytes at off of the file being received (off >= fpos), hashing the gap as
 * zeros, and feed the block map. */
static int put_data(struct receiver *r, uint64_t off, const uint8_t *d, uint64_t n,
                    struct cta_error **err)
{
        if (r->inplace && off > r->fpos) {
                int rr = inplace_zero(r, r->fpos, off, err);
                if (rr < 0)
                        return rr;
        }
        bool direct = cta_dio_on(&r->dio);
        if (direct) {
                /* straight from the io's ring when it is there (the helper writes it
                 * while we hash; its bytes stay queued until the write is done) */
                int lr = cta_mig_ring_owns(&r->ring, d, (size_t)n)
                                 ? cta_dio_pwrite_lend(&r->dio, d, (size_t)n, off, r->ring.head)
                                 : cta_dio_pwrite(&r->dio, d, (size_t)n, off);
                if (lr < 0)
                        return sys_fail(err, 0, "write", r->fpath, r->fpath_len);
                r->hold = cta_dio_lent_from(&r->dio);
        }
        for (uint64_t done = 0; !direct && done < n;) {
                ssize_t w = pwrite(r->ffd, d + done, (size_t)(n - done), (off_t)(off + done));
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return sys_fail(err, 0, "write", r->fpath, r->fpath_len);
                done += (uint64_t)w;
        }
        if (!direct && r->fe.size < WRITEBACK_CHUNK)
                cta_recv_count_cached(r, n);
        if (r->fbsum) { /* one pass: block hashes for the checksum and the block map */
                cta_bsum_feed(&r->bsum, NULL, off - r->fpos, &r->bmw);
                cta_bsum_feed(&r->bsum, d, n, &r->bmw);
        } else {
                cta_mig_hash_zeros(r->hash, off - r->fpos);
                cta_xxh3_128_update(r->hash, d, (size_t)n);
                cta_bm_feed(&r->bmw, NULL, off - r->fpos);
                cta_bm_feed(&r->bmw, d, n);
        }
        r->fpos = off + n;
        if (r->inplace && !r->patched && r->o->on_patch) {
                r->patched = true;
                r->o->on_patch(r->o->on_patch_ud, r->fpath, r->fpath_len);
        }
        /* Start writeback of what is behind us now (it does not wait): the
         * final sync before commit then has little left to do, and the page
         * cache does not fill with dirty pages until the kernel throttles us. */
        if (!direct && r->fpos - r->fsynced >= WRITEBACK_CHUNK) {
                (void)sync_file_range(r->ffd, (off_t)r->fsynced, (off_t)(r->fpos - r->fsynced),
                                      SYNC_FILE_RANGE_WRITE);
                r->fsynced = r->fpos;
        }
        return 0;
}

#define COPY_BUF (1u << 20)
#define COPY_AHEAD (16u << 20)

/* COPY in place: the bytes are there already; their blocks' hashes come from the record.
 * The source only copies whole blocks (the last one only when both files end there). */
static int copy_in_place(struct receiver *r, uint64_t off, uint64_t n, struct cta_error **err)
{
        uint64_t end = off + n, mask = CTA_MIG_BLOCK - 1;
        if ((off & mask) || ((end & mask) && (end != r->fe.size || end != r->bsize))) {
                _cleanup_free_ char *ps = cta_mig_path_fmt(r->fpath, r->fpath_len);
                return FAIL(r, CTA_E_MIG_STREAM, "'%s': copy of %llu+%llu is not whole blocks",
                            ps, (unsigned long long)off, (unsigned long long)n);
        }
        if (off > r->fpos) {
                int rr = inplace_zero(r, r->fpos, off, err);
                if (rr < 0)
                        return rr;
                cta_bsum_feed(&r->bsum, NULL, off - r->fpos, &r->bmw);
        }
        for (uint64_t b = off >> CTA_MIG_BLOCK_SHIFT; b < cta_mig_nblocks(end); b++) {
                uint64_t h;
                if (cta_bm_hash_at(r->ibm, b, &h) < 0)
                        return sys_fail(err, 0, "read the block map of", r->fpath, r->fpath_len);
                cta_bsum_block(&r->bsum, h);
                cta_bm_push(&r->bmw, h);
        }
        r->fpos = r->fnext = end;
        r->st.copied_bytes += n;
        return 0;
}

/* COPY: bytes the destination's existing file (the base) already has at the same offsets;
 * its data extents are copied (its holes stay holes) and hashed like received data. */
int cta_recv_file_copy(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err)
{
        _cleanup_free_ char *ps = cta_mig_path_fmt(r->fpath, r->fpath_len);
        if ((r->bfd < 0 && !r->inplace) || len != CTA_MIG_COPY_LEN)
                return FAIL(r, CTA_E_MIG_STREAM, "'%s': unexpected copy record", ps);
        uint64_t off = cta_mig_get64(p), n = cta_mig_get64(p + 8);
        if (!n || off < r->fnext || n > r->fe.size || off > r->fe.size - n || n > r->bsize ||
            off > r->bsize - n)
                return FAIL(r, CTA_E_MIG_STREAM,
                            "'%s': copy of %llu+%llu overlaps or exceeds the sizes", ps,
                            (unsigned long long)off, (unsigned long long)n);
        if (r->inplace)
                return copy_in_place(r, off, n, err);
        if (!r->cbuf)
                r->cbuf = cta_xmalloc(COPY_BUF);
        uint64_t end = off + n, ra = off;
        for (uint64_t pos = off; pos < end;) {
                off_t x = lseek(r->bfd, (off_t)pos, SEEK_DATA);
                if (x < 0 && errno == ENXIO)
                        break;
                if (x < 0)
                        return sys_fail(err, 0, "seek in the existing", r->fpath, r->fpath_len);
                uint64_t d = (uint64_t)x;
                if (d >= end)
                        break;
                off_t y = lseek(r->bfd, x, SEEK_HOLE);
                if (y < 0)
                        return sys_fail(err, 0, "seek in the existing", r->fpath, r->fpath_len);
                uint64_t h = (uint64_t)y < end ? (uint64_t)y : end;
                while (d < h) {
                        if (ra < d)
                                ra = d;
                        if (ra < h && ra < d + COPY_AHEAD / 2) {
                                /* asynchronous readahead, of data only (not holes) */
                                uint64_t k = h - ra < COPY_AHEAD ? h - ra : COPY_AHEAD;
                                (void)posix_fadvise(r->bfd, (off_t)ra, (off_t)k,
                                                    POSIX_FADV_WILLNEED);
                                ra += k;
                        }
                        size_t k = h - d > COPY_BUF ? COPY_BUF : (size_t)(h - d);
                        ssize_t got = pread(r->bfd, r->cbuf, k, (off_t)d);
                        if (got < 0 && errno == EINTR)
                                continue;
                        if (got < 0)
                                return sys_fail(err, 0, "read the existing", r->fpath,
                                                r->fpath_len);
                        if (got == 0)
                                return FAIL(r, CTA_E_MIG_CHECKSUM,
                                            "'%s': the existing file changed", ps);
                        int rr = put_data(r, d, r->cbuf, (uint64_t)got, err);
                        if (rr < 0)
                                return rr;
                        d += (uint64_t)got;
                        r->st.copied_bytes += (uint64_t)got;
                }
                pos = h;
        }
        r->fnext = end;
        return 0;
}

int cta_recv_file_data(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err)
{
        if (len <= 8)
                return FAIL(r, CTA_E_MIG_STREAM, "empty data record");
        uint64_t off = cta_mig_get64(p), n = len - 8;
        if (off < r->fnext || n > r->fe.size || off > r->fe.size - n) {
                _cleanup_free_ char *ps = cta_mig_path_fmt(r->fpath, r->fpath_len);
                return FAIL(r, CTA_E_MIG_STREAM,
                            "'%s': data at %llu+%llu overlaps or exceeds the declared size %llu",
                            ps, (unsigned long long)off, (unsigned long long)n,
                            (unsigned long long)r->fe.size);
        }
        if (n > r->lim.max_total_bytes - r->data_bytes)
                return FAIL(r, CTA_E_TOO_LARGE, "more than %llu data bytes",
                            (unsigned long long)r->lim.max_total_bytes);
        int rr = put_data(r, off, p + 8, n, err);
        if (rr < 0)
                return rr;
        r->fnext = off + n;
        r->frecv += n;
        r->data_bytes += n;
        return 0;
}

/* The verified temporary file takes the entry's name. */
static int file_commit(struct receiver *r, struct cta_error **err)
{
        /* Renaming over an existing file makes ext4 (auto_da_alloc) start writing the new
         * one back at once, inside the rename: for a large file, remove the old name first
         * (a crash in between leaves no file there: the next pass sends it again). */
        if (r->replace && r->fe.size >= CTA_MIG_BLOCKMAP_MIN &&
            unlinkat(r->fpfd, r->fname, 0) < 0 && errno != ENOENT && errno != EISDIR)
                return sys_fail(err, 0, "replace", r->fpath, r->fpath_len);
        if (!r->replace) {
                if (renameat2(r->fpfd, r->tmpname, r->fpfd, r->fname, RENAME_NOREPLACE) < 0)
                        return sys_fail(err, errno == EEXIST ? CTA_E_MIG_STREAM : 0,
                                        "commit", r->fpath, r->fpath_len);
        } else if (renameat(r->fpfd, r->tmpname, r->fpfd, r->fname) < 0) {
                if (errno != EISDIR && errno != ENOTEMPTY && errno != EEXIST)
                        return sys_fail(err, 0, "commit", r->fpath, r->fpath_len);
                memcpy(r->name, r->fname, sizeof(r->name));
                int rr = cta_recv_clear_name(r, r->fpfd, &r->fe, err);
                if (rr < 0)
                        return rr;
                if (renameat(r->fpfd, r->tmpname, r->fpfd, r->fname) < 0)
                        return sys_fail(err, 0, "commit", r->fpath, r->fpath_len);
        }
        return 0;
}

int cta_recv_file_end(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err)
{
        _cleanup_free_ char *ps = cta_mig_path_fmt(r->fpath, r->fpath_len);
        if (len != CTA_MIG_FILE_END_LEN)
                return FAIL(r, CTA_E_MIG_STREAM, "'%s': bad file end record", ps);
        if (cta_mig_get64(p) != r->frecv)
                return FAIL(r, CTA_E_MIG_STREAM, "'%s': %llu data bytes declared, %llu received",
                            ps, (unsigned long long)cta_mig_get64(p),
                            (unsigned long long)r->frecv);
        if (cta_dio_on(&r->dio)) {
                if (cta_dio_flush(&r->dio) < 0)
                        return sys_fail(err, 0, "write", r->fpath, r->fpath_len);
                cta_dio_end(&r->dio);
        }
        if (r->inplace && r->fpos < r->fe.size) {
                int rr = inplace_zero(r, r->fpos, r->fe.size, err);
                if (rr < 0)
                        return rr;
        }
        if ((r->fpos < r->fe.size || (r->inplace && r->bsize != r->fe.size)) &&
            ftruncate(r->ffd, (off_t)r->fe.size) < 0)
                return sys_fail(err, 0, "truncate", r->fpath, r->fpath_len);
        XXH128_canonical_t c;
        if (r->fbsum) {
                cta_bsum_final(&r->bsum, &r->bmw, c.digest);
        } else {
                cta_mig_hash_zeros(r->hash, r->fe.size - r->fpos);
                XXH128_canonicalFromHash(&c, XXH3_128bits_digest(r->hash));
        }
        if (memcmp(c.digest, p + 8, 16) != 0) {
                /* a delta built on a block map that lied: never offer it again, so that
                 * the retry sends the whole file */
                if (r->bfd >= 0)
                        cta_bm_invalidate(r->bm_dirfd, (uint64_t)r->bst.st_dev,
                                          (uint64_t)r->bst.st_ino);
                return FAIL(r, CTA_E_MIG_CHECKSUM, "'%s': checksum mismatch", ps);
        }
        int rr = cta_recv_apply_meta_fd(r, r->ffd, &r->fe, r->replace, err);
        if (rr < 0)
                return rr;
        struct stat st = { 0 };
        if ((r->fe.flags & CTA_MIG_EF_LINKABLE) && fstat(r->ffd, &st) < 0)
                return sys_fail(err, 0, "stat", r->fpath, r->fpath_len);
        if (r->inplace) {
                close(r->ibm);
                r->ibm = -1;
                r->inplace = false;
                r->st.inplace_files++;
                r->st.delta_files++;
        } else if ((rr = file_commit(r, err)) < 0) {
                return rr;
        }
        if (r->fe.flags & CTA_MIG_EF_LINKABLE)
                cta_recv_add_link(r, r->fe.id, r->fpath, r->fpath_len, &st);
        /* the block map is keyed by the stat after the rename (it sets the ctime) */
        if (r->bmw.fd >= 0 && fstat(r->ffd, &st) == 0 && cta_bm_commit(&r->bmw, &st) == 0)
                r->st.blockmaps++;
        cta_bm_abort(&r->bmw);
        close(r->ffd);
        r->ffd = -1;
        if (r->bfd >= 0) {
                close(r->bfd);
                r->bfd = -1;
                r->st.delta_files++;
        }
        r->st.files++;
        r->state = ST_ENTRIES;
        return 0;
}
