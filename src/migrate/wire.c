/* Record encoders and decoders, path order and validation (docs/migration-stream.md). */
#include <limits.h>
#include <string.h>
#include <xxhash.h>

#include "migrate/hash.h"
#include "migrate/wire.h"
#include "util/buf.h"
#include "util/errcodes.h"

size_t cta_mig_enc_header(uint8_t *p, uint32_t flags, uint64_t entries, uint64_t bytes)
{
        cta_mig_put_rec(p, CTA_MIG_R_HEADER, CTA_MIG_HEADER_LEN);
        uint8_t *q = p + CTA_MIG_REC_HDR;
        memset(q, 0, CTA_MIG_HEADER_LEN);
        memcpy(q, CTA_MIG_MAGIC, 8);
        cta_mig_put16(q + 8, CTA_MIG_STREAM_VERSION);
        /* the oldest reader that understands what this stream uses */
        cta_mig_put16(q + 10, (flags & CTA_MIG_HF_ALIGNED)    ? 4
                              : (flags & CTA_MIG_HF_BLOCKSUM) ? 3
                              : (flags & CTA_MIG_HF_BASED)    ? 2
                                                              : 1);
        cta_mig_put32(q + 12, flags);
        cta_mig_put64(q + 16, entries);
        cta_mig_put64(q + 24, bytes);
        return CTA_MIG_REC_HDR + CTA_MIG_HEADER_LEN;
}

size_t cta_mig_enc_pad(uint8_t *p, size_t n)
{
        cta_mig_put_rec(p, CTA_MIG_R_PAD, (uint32_t)(n - CTA_MIG_REC_HDR));
        memset(p + CTA_MIG_REC_HDR, 0, n - CTA_MIG_REC_HDR);
        return n;
}

size_t cta_mig_pad_for(uint64_t pos, uint64_t off)
{
        /* the payload follows the record header and the u64 offset */
        size_t pad = (size_t)((off - pos - CTA_MIG_REC_HDR - 8) & (CTA_MIG_ALIGN - 1));
        return pad && pad < CTA_MIG_REC_HDR ? pad + CTA_MIG_ALIGN : pad;
}

static size_t xattr_area_len(const struct cta_mig_entry *e)
{
        size_t n = 0;
        for (uint16_t i = 0; i < e->nxattr; i++)
                n += 6 + e->xv[i].name_len + e->xv[i].value_len;
        return n;
}

size_t cta_mig_entry_size(const struct cta_mig_entry *e)
{
        return CTA_MIG_REC_HDR + CTA_MIG_ENTRY_FIXED + e->path_len + e->target_len +
               xattr_area_len(e);
}

size_t cta_mig_enc_entry(uint8_t *p, const struct cta_mig_entry *e)
{
        size_t xlen = xattr_area_len(e);
        size_t len = CTA_MIG_ENTRY_FIXED + e->path_len + e->target_len + xlen;
        cta_mig_put_rec(p, CTA_MIG_R_ENTRY, (uint32_t)len);
        uint8_t *q = p + CTA_MIG_REC_HDR;
        cta_mig_put64(q, e->id);
        q[8] = e->kind;
        q[9] = e->flags;
        cta_mig_put16(q + 10, e->path_len);
        cta_mig_put32(q + 12, e->mode);
        cta_mig_put32(q + 16, e->uid);
        cta_mig_put32(q + 20, e->gid);
        cta_mig_put64(q + 24, (uint64_t)e->mtime_sec);
        cta_mig_put32(q + 32, e->mtime_nsec);
        cta_mig_put32(q + 36, e->atime_nsec);
        cta_mig_put64(q + 40, (uint64_t)e->atime_sec);
        cta_mig_put64(q + 48, e->size);
        cta_mig_put32(q + 56, e->rdev_major);
        cta_mig_put32(q + 60, e->rdev_minor);
        cta_mig_put64(q + 64, e->link_id);
        cta_mig_put16(q + 72, e->target_len);
        cta_mig_put16(q + 74, e->nxattr);
        cta_mig_put32(q + 76, (uint32_t)xlen);
        q += CTA_MIG_ENTRY_FIXED;
        if (e->path_len)
                memcpy(q, e->path, e->path_len);
        q += e->path_len;
        if (e->target_len)
                memcpy(q, e->target, e->target_len);
        q += e->target_len;
        for (uint16_t i = 0; i < e->nxattr; i++) {
                const struct cta_mig_xattr *x = &e->xv[i];
                q[0] = x->name_len;
                q[1] = 0;
                cta_mig_put32(q + 2, x->value_len);
                memcpy(q + 6, x->name, x->name_len);
                if (x->value_len)
                        memcpy(q + 6 + x->name_len, x->value, x->value_len);
                q += 6 + x->name_len + x->value_len;
        }
        return CTA_MIG_REC_HDR + len;
}

size_t cta_mig_enc_file_end(uint8_t *p, uint64_t data_bytes, const uint8_t sum[16])
{
        cta_mig_put_rec(p, CTA_MIG_R_FILE_END, CTA_MIG_FILE_END_LEN);
        cta_mig_put64(p + CTA_MIG_REC_HDR, data_bytes);
        memcpy(p + CTA_MIG_REC_HDR + 8, sum, 16);
        return CTA_MIG_REC_HDR + CTA_MIG_FILE_END_LEN;
}

size_t cta_mig_enc_trailer(uint8_t *p, uint64_t entries, uint64_t bytes, uint64_t deletes)
{
        cta_mig_put_rec(p, CTA_MIG_R_TRAILER, CTA_MIG_TRAILER_LEN);
        cta_mig_put64(p + CTA_MIG_REC_HDR, entries);
        cta_mig_put64(p + CTA_MIG_REC_HDR + 8, bytes);
        cta_mig_put64(p + CTA_MIG_REC_HDR + 16, deletes);
        return CTA_MIG_REC_HDR + CTA_MIG_TRAILER_LEN;
}

size_t cta_mig_enc_data_hdr(uint8_t *p, uint64_t offset, uint32_t len)
{
        cta_mig_put_rec(p, CTA_MIG_R_DATA, 8 + len);
        cta_mig_put64(p + CTA_MIG_REC_HDR, offset);
        return CTA_MIG_REC_HDR + 8;
}

size_t cta_mig_enc_copy(uint8_t *p, uint64_t offset, uint64_t len)
{
        cta_mig_put_rec(p, CTA_MIG_R_COPY, CTA_MIG_COPY_LEN);
        cta_mig_put64(p + CTA_MIG_REC_HDR, offset);
        cta_mig_put64(p + CTA_MIG_REC_HDR + 8, len);
        return CTA_MIG_REC_HDR + CTA_MIG_COPY_LEN;
}

/* Reserve room at the end of b and return it; the caller fills exactly n bytes. */
static uint8_t *buf_room(struct cta_buf *b, size_t n)
{
        if (cta_buf_reserve(b, n) < 0)
                return NULL;
        uint8_t *p = (uint8_t *)b->data + b->len;
        b->len += n;
        b->data[b->len] = 0;
        return p;
}

int cta_mig_buf_header(struct cta_buf *b, uint32_t flags, uint64_t entries, uint64_t bytes)
{
        uint8_t *p = buf_room(b, CTA_MIG_REC_HDR + CTA_MIG_HEADER_LEN);
        if (!p)
                return -CTA_E_TOO_LARGE;
        cta_mig_enc_header(p, flags, entries, bytes);
        return 0;
}

int cta_mig_buf_entry(struct cta_buf *b, const struct cta_mig_entry *e)
{
        uint8_t *p = buf_room(b, cta_mig_entry_size(e));
        if (!p)
                return -CTA_E_TOO_LARGE;
        cta_mig_enc_entry(p, e);
        return 0;
}

int cta_mig_buf_data(struct cta_buf *b, uint64_t offset, const void *data, uint32_t len)
{
        uint8_t *p = buf_room(b, CTA_MIG_REC_HDR + 8 + (size_t)len);
        if (!p)
                return -CTA_E_TOO_LARGE;
        size_t h = cta_mig_enc_data_hdr(p, offset, len);
        if (len)
                memcpy(p + h, data, len);
        return 0;
}

int cta_mig_buf_file_end(struct cta_buf *b, uint64_t data_bytes, const uint8_t sum[16])
{
        uint8_t *p = buf_room(b, CTA_MIG_REC_HDR + CTA_MIG_FILE_END_LEN);
        if (!p)
                return -CTA_E_TOO_LARGE;
        cta_mig_enc_file_end(p, data_bytes, sum);
        return 0;
}

int cta_mig_buf_copy(struct cta_buf *b, uint64_t offset, uint64_t len)
{
        uint8_t *p = buf_room(b, CTA_MIG_REC_HDR + CTA_MIG_COPY_LEN);
        if (!p)
                return -CTA_E_TOO_LARGE;
        cta_mig_enc_copy(p, offset, len);
        return 0;
}

int cta_mig_buf_delete(struct cta_buf *b, const char *path, uint16_t len)
{
        uint8_t *p = buf_room(b, CTA_MIG_REC_HDR + 2 + (size_t)len);
        if (!p)
                return -CTA_E_TOO_LARGE;
        cta_mig_put_rec(p, CTA_MIG_R_DELETE, 2 + (uint32_t)len);
        cta_mig_put16(p + CTA_MIG_REC_HDR, len);
        memcpy(p + CTA_MIG_REC_HDR + 2, path, len);
        return 0;
}

int cta_mig_buf_trailer(struct cta_buf *b, uint64_t entries, uint64_t bytes, uint64_t deletes)
{
        uint8_t *p = buf_room(b, CTA_MIG_REC_HDR + CTA_MIG_TRAILER_LEN);
        if (!p)
                return -CTA_E_TOO_LARGE;
        cta_mig_enc_trailer(p, entries, bytes, deletes);
        return 0;
}

int cta_mig_buf_raw(struct cta_buf *b, uint8_t type, const void *payload, uint32_t len)
{
        uint8_t *p = buf_room(b, CTA_MIG_REC_HDR + (size_t)len);
        if (!p)
                return -CTA_E_TOO_LARGE;
        cta_mig_put_rec(p, type, len);
        if (len)
                memcpy(p + CTA_MIG_REC_HDR, payload, len);
        return 0;
}

int cta_mig_dec_entry(const uint8_t *p, size_t len, struct cta_mig_entry *ret)
{
        if (len < CTA_MIG_ENTRY_FIXED)
                return -CTA_E_MIG_STREAM;
        struct cta_mig_entry e = {
                .id = cta_mig_get64(p),
                .kind = p[8],
                .flags = p[9],
                .path_len = cta_mig_get16(p + 10),
                .mode = cta_mig_get32(p + 12),
                .uid = cta_mig_get32(p + 16),
                .gid = cta_mig_get32(p + 20),
                .mtime_sec = (int64_t)cta_mig_get64(p + 24),
                .mtime_nsec = cta_mig_get32(p + 32),
                .atime_nsec = cta_mig_get32(p + 36),
                .atime_sec = (int64_t)cta_mig_get64(p + 40),
                .size = cta_mig_get64(p + 48),
                .rdev_major = cta_mig_get32(p + 56),
                .rdev_minor = cta_mig_get32(p + 60),
                .link_id = cta_mig_get64(p + 64),
                .target_len = cta_mig_get16(p + 72),
                .nxattr = cta_mig_get16(p + 74),
        };
        uint64_t xlen = cta_mig_get32(p + 76);
        if ((uint64_t)CTA_MIG_ENTRY_FIXED + e.path_len + e.target_len + xlen != len)
                return -CTA_E_MIG_STREAM;
        e.path = (const char *)p + CTA_MIG_ENTRY_FIXED;
        e.target = e.path + e.path_len;
        e.xattrs = (const uint8_t *)e.target + e.target_len;
        e.xattrs_len = (size_t)xlen;
        *ret = e;
        return 0;
}

int cta_mig_xattr_next(const struct cta_mig_entry *e, size_t *pos, struct cta_mig_xattr *ret)
{
        if (*pos == e->xattrs_len)
                return 0;
        if (e->xattrs_len - *pos < 6)
                return -CTA_E_MIG_STREAM;
        const uint8_t *q = e->xattrs + *pos;
        uint8_t nl = q[0];
        uint32_t vl = cta_mig_get32(q + 2);
        if (q[1] != 0 || (uint64_t)6 + nl + vl > e->xattrs_len - *pos)
                return -CTA_E_MIG_STREAM;
        ret->name_len = nl;
        ret->name = (const char *)q + 6;
        ret->value_len = vl;
        ret->value = q + 6 + nl;
        *pos += 6 + (size_t)nl + vl;
        return 1;
}

size_t cta_mig_have_size(uint16_t path_len)
{
        return CTA_MIG_REC_HDR + CTA_MIG_HAVE_FIXED + path_len;
}

size_t cta_mig_enc_have(uint8_t *p, const struct cta_mig_have_rec *h)
{
        cta_mig_put_rec(p, CTA_MIG_R_HAVE, CTA_MIG_HAVE_FIXED + h->path_len);
        uint8_t *q = p + CTA_MIG_REC_HDR;
        q[0] = h->kind;
        q[1] = h->flags;
        cta_mig_put16(q + 2, h->path_len);
        cta_mig_put32(q + 4, h->mtime_nsec);
        cta_mig_put64(q + 8, h->size);
        cta_mig_put64(q + 16, (uint64_t)h->mtime_sec);
        memcpy(q + 24, h->checksum, 16);
        memcpy(q + CTA_MIG_HAVE_FIXED, h->path, h->path_len);
        return cta_mig_have_size(h->path_len);
}

int cta_mig_dec_have(const uint8_t *p, size_t len, struct cta_mig_have_rec *ret)
{
        if (len < CTA_MIG_HAVE_FIXED)
                return -CTA_E_MIG_STREAM;
        struct cta_mig_have_rec h = {
                .kind = p[0],
                .flags = p[1],
                .path_len = cta_mig_get16(p + 2),
                .mtime_nsec = cta_mig_get32(p + 4),
                .size = cta_mig_get64(p + 8),
                .mtime_sec = (int64_t)cta_mig_get64(p + 16),
        };
        if ((size_t)CTA_MIG_HAVE_FIXED + h.path_len != len)
                return -CTA_E_MIG_STREAM;
        memcpy(h.checksum, p + 24, 16);
        h.path = (const char *)p + CTA_MIG_HAVE_FIXED;
        *ret = h;
        return 0;
}

/* The index of the first byte where a and b differ, scanning 8 bytes at a time: sorted
 * siblings share long prefixes, and both streams compare every path with its neighbour
 * (callgrind: a byte loop here was a quarter of an incremental pass's instructions). */
static size_t first_diff(const char *a, const char *b, size_t n)
{
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
                uint64_t x, y;
                memcpy(&x, a + i, 8);
                memcpy(&y, b + i, 8);
                if (x != y) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                        return i + (size_t)__builtin_ctzll(x ^ y) / 8;
#else
                        return i + (size_t)__builtin_clzll(x ^ y) / 8;
#endif
                }
        }
        while (i < n && a[i] == b[i])
                i++;
        return i;
}

int cta_mig_path_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
        size_t n = alen < blen ? alen : blen;
        size_t i = first_diff(a, b, n);
        if (i == n)
                return alen < blen ? -1 : alen > blen ? 1 : 0;
        unsigned ca = (unsigned char)a[i], cb = (unsigned char)b[i];
        ca = ca == '/' ? 0 : ca;
        cb = cb == '/' ? 0 : cb;
        return ca < cb ? -1 : 1;
}

bool cta_mig_path_under(const char *a, size_t alen, const char *b, size_t blen)
{
        return blen > alen && b[alen] == '/' && memcmp(a, b, alen) == 0;
}

int cta_mig_path_check(const char *p, size_t len, size_t max_len, unsigned max_depth)
{
        if (len == 0 || len > max_len || len >= PATH_MAX || p[0] == '/')
                return -CTA_E_MIG_PATH;
        if (memchr(p, 0, len))
                return -CTA_E_MIG_PATH;
        /* one memchr per component, not a test per byte (the receiver checks every path) */
        unsigned depth = 0;
        const char *c = p, *end = p + len;
        for (;;) {
                const char *slash = memchr(c, '/', (size_t)(end - c));
                size_t cl = (size_t)((slash ? slash : end) - c);
                if (cl == 0 || cl > NAME_MAX)
                        return -CTA_E_MIG_PATH;
                if (c[0] == '.' && (cl == 1 || (cl == 2 && c[1] == '.')))
                        return -CTA_E_MIG_PATH;
                if (++depth > max_depth)
                        return -CTA_E_MIG_PATH;
                if (!slash)
                        return 0;
                c = slash + 1;
        }
}

static const uint8_t zeros[65536];

void cta_mig_checksum(const struct cta_mig_extent *ext, size_t n, uint64_t size, uint8_t out[16])
{
        XXH3_state_t *st = XXH3_createState();
        XXH3_128bits_reset(st);
        uint64_t pos = 0;
        for (size_t i = 0; i <= n; i++) {
                uint64_t off = i < n ? ext[i].offset : size;
                while (pos < off) {
                        size_t k = off - pos > sizeof(zeros) ? sizeof(zeros) : (size_t)(off - pos);
                        cta_xxh3_128_update(st, zeros, k);
                        pos += k;
                }
                if (i < n) {
                        cta_xxh3_128_update(st, ext[i].data, ext[i].len);
                        pos += ext[i].len;
                }
        }
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
        memcpy(out, c.digest, 16);
        XXH3_freeState(st);
}
