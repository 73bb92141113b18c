/*
 * The records of the migration stream and of the have stream
 * (docs/migration-stream.md): encoders used by the sender and by the hostile-stream
 * tests, the decoder of entry records, the canonical path order and path validation.
 * All integers are little endian.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "migrate/stream.h"

struct cta_buf;

#define CTA_MIG_MAGIC "CTAMIG\r\n"
#define CTA_MIG_HAVE_MAGIC "CTAHAV\r\n"
#define CTA_MIG_REC_HDR 8u          /* u8 type, u8 flags, u16 reserved, u32 payload length */
#define CTA_MIG_DATA_CHUNK (1u << 20) /* the sender's largest DATA payload */

enum cta_mig_rec {
        CTA_MIG_R_HEADER = 1,
        CTA_MIG_R_ENTRY = 2,
        CTA_MIG_R_DATA = 3,
        CTA_MIG_R_FILE_END = 4,
        CTA_MIG_R_DELETE = 5,
        CTA_MIG_R_TRAILER = 6,
        CTA_MIG_R_COPY = 7, /* version 2: bytes the destination's existing file already has */
        CTA_MIG_R_PAD = 8,  /* version 4: skipped; puts the next DATA payload in alignment */
        CTA_MIG_R_HAVE_HEADER = 16,
        CTA_MIG_R_HAVE = 17,
        CTA_MIG_R_HAVE_END = 18,
        CTA_MIG_R_HAVE_BLOCKS = 19, /* have version 2: block hashes of the last HAVE */
};

/* Block deltas (version 2): files of at least CTA_MIG_BLOCKMAP_MIN bytes get a block map
 * of XXH3-64 hashes per CTA_MIG_BLOCK bytes of logical content (holes as zeros). */
#define CTA_MIG_BLOCK_SHIFT 20
#define CTA_MIG_BLOCK (1ull << CTA_MIG_BLOCK_SHIFT)
#define CTA_MIG_BLOCKMAP_MIN (8ull << 20)
#define CTA_MIG_BLOCKS_PER_REC 8192u
#define CTA_MIG_COPY_LEN 16u /* u64 offset, u64 length */

enum cta_mig_kind {
        CTA_MIG_K_REG = 1,
        CTA_MIG_K_DIR = 2,
        CTA_MIG_K_LNK = 3,
        CTA_MIG_K_CHR = 4,
        CTA_MIG_K_BLK = 5,
        CTA_MIG_K_FIFO = 6,
        CTA_MIG_K_SOCK = 7,
        CTA_MIG_K_HARDLINK = 8, /* another name of an earlier regular file (link_id) */
};

enum {
        CTA_MIG_EF_ROOT = 1 << 0,      /* the root directory itself: empty path, first entry */
        CTA_MIG_EF_LINKABLE = 1 << 1,  /* later HARDLINK entries may name this file's id */
        CTA_MIG_EF_UNCHANGED = 1 << 2, /* regular file the destination has: metadata only */
        CTA_MIG_EF_BASED = 1 << 3,     /* v2: data is DATA and COPY against the existing file */
        CTA_MIG_EF_KNOWN = 0x0f,
};

enum {
        CTA_MIG_HAVE_HF_BLOCKS = 1 << 0, /* have header: records may carry block hashes */
        CTA_MIG_HAVE_F_SUM = 1 << 0,     /* have record: checksum present (never produced) */
        CTA_MIG_HAVE_F_BLOCKS = 1 << 1,  /* have record: HAVE_BLOCKS records follow */
};

enum {
        CTA_MIG_HF_INCREMENTAL = 1 << 0, /* the sender used a have stream */
        CTA_MIG_HF_BASED = 1 << 1,       /* v2: BASED entries and COPY records may occur */
        CTA_MIG_HF_BLOCKSUM = 1 << 2,    /* v3: large files' checksums are block lists */
        CTA_MIG_HF_ALIGNED = 1 << 3,     /* v4: PAD records align large DATA payloads */
        CTA_MIG_HF_KNOWN = 0x0f,
};

#define CTA_MIG_HEADER_LEN 48u /* magic[8] u16 ver u16 minver u32 flags u64 entries u64 bytes u64 0 u64 0 */
#define CTA_MIG_ENTRY_FIXED 80u
#define CTA_MIG_FILE_END_LEN 24u /* u64 data bytes, XXH3-128 canonical (big endian) */
#define CTA_MIG_TRAILER_LEN 24u  /* u64 entries, u64 data bytes, u64 deletes */
#define CTA_MIG_HAVE_FIXED 40u

struct cta_mig_xattr {
        const char *name; /* not NUL-terminated on decode: name_len bytes */
        uint8_t name_len;
        const void *value;
        uint32_t value_len;
};

/* One entry record, decoded (pointers into the record) or to encode. */
struct cta_mig_entry {
        uint64_t id;
        uint8_t kind;
        uint8_t flags;
        uint32_t mode; /* permission bits, 07777 */
        uint32_t uid, gid;
        int64_t mtime_sec, atime_sec;
        uint32_t mtime_nsec, atime_nsec;
        uint64_t size;     /* REG: logical size */
        uint32_t rdev_major, rdev_minor;
        uint64_t link_id;  /* HARDLINK */
        const char *path;
        uint16_t path_len;
        const char *target; /* LNK */
        uint16_t target_len;
        uint16_t nxattr;
        const uint8_t *xattrs; /* decode: raw xattr area, walk with cta_mig_xattr_next() */
        size_t xattrs_len;
        const struct cta_mig_xattr *xv; /* encode: nxattr items */
};

/* A have record: what the destination holds at a path. */
struct cta_mig_have_rec {
        uint8_t kind;
        uint8_t flags; /* bit 0: checksum present (never produced by version 1) */
        uint64_t size;
        int64_t mtime_sec;
        uint32_t mtime_nsec;
        uint8_t checksum[16];
        const char *path;
        uint16_t path_len;
};

static inline void cta_mig_put16(uint8_t *p, uint16_t v)
{
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}
static inline void cta_mig_put32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}
static inline void cta_mig_put64(uint8_t *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t cta_mig_get16(const uint8_t *p)
{
        return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t cta_mig_get32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
               (uint32_t)p[3] << 24;
}
static inline uint64_t cta_mig_get64(const uint8_t *p)
{
        return (uint64_t)cta_mig_get32(p) | (uint64_t)cta_mig_get32(p + 4) << 32;
}

/* Record header at p. */
static inline void cta_mig_put_rec(uint8_t *p, uint8_t type, uint32_t len)
{
        p[0] = type;
        p[1] = 0;
        cta_mig_put16(p + 2, 0);
        cta_mig_put32(p + 4, len);
}

/* Encoders into raw memory: each returns the record's total size (header included);
 * cta_mig_entry_size() says how much room cta_mig_enc_entry() needs. */
size_t cta_mig_enc_header(uint8_t *p, uint32_t flags, uint64_t entries, uint64_t bytes);
size_t cta_mig_entry_size(const struct cta_mig_entry *e);
size_t cta_mig_enc_entry(uint8_t *p, const struct cta_mig_entry *e);
size_t cta_mig_enc_file_end(uint8_t *p, uint64_t data_bytes, const uint8_t sum[16]);
size_t cta_mig_enc_trailer(uint8_t *p, uint64_t entries, uint64_t bytes, uint64_t deletes);
/* PAD: a record of n bytes in all (n >= CTA_MIG_REC_HDR), payload zeros. */
size_t cta_mig_enc_pad(uint8_t *p, size_t n);
/* The PAD size (0, or at least CTA_MIG_REC_HDR) that puts a DATA payload for file offset
 * off, whose record would start at stream offset pos, at a stream offset aligned like
 * off (modulo CTA_MIG_ALIGN): what a receiver needs to write it direct from its buffer. */
#define CTA_MIG_ALIGN 4096u
size_t cta_mig_pad_for(uint64_t pos, uint64_t off);
/* DATA: header + offset; the caller puts len bytes after the 16 returned. */
size_t cta_mig_enc_data_hdr(uint8_t *p, uint64_t offset, uint32_t len);
size_t cta_mig_enc_copy(uint8_t *p, uint64_t offset, uint64_t len);

/* The same, appended to a cta_buf (tests craft streams with these). */
int cta_mig_buf_header(struct cta_buf *b, uint32_t flags, uint64_t entries, uint64_t bytes);
int cta_mig_buf_entry(struct cta_buf *b, const struct cta_mig_entry *e);
int cta_mig_buf_data(struct cta_buf *b, uint64_t offset, const void *data, uint32_t len);
int cta_mig_buf_file_end(struct cta_buf *b, uint64_t data_bytes, const uint8_t sum[16]);
int cta_mig_buf_copy(struct cta_buf *b, uint64_t offset, uint64_t len);
int cta_mig_buf_delete(struct cta_buf *b, const char *path, uint16_t len);
int cta_mig_buf_trailer(struct cta_buf *b, uint64_t entries, uint64_t bytes, uint64_t deletes);
/* Any record with a raw payload (for malformed-record tests). */
int cta_mig_buf_raw(struct cta_buf *b, uint8_t type, const void *payload, uint32_t len);

/* Decode an entry payload. Checks only the layout (lengths add up); the receiver checks
 * the values. Returns 0 or -CTA_E_MIG_STREAM. */
int cta_mig_dec_entry(const uint8_t *p, size_t len, struct cta_mig_entry *ret);
/* Walk the xattr area: *pos starts at 0. Returns 1 with *ret filled, 0 at the end,
 * -CTA_E_MIG_STREAM if malformed. */
int cta_mig_xattr_next(const struct cta_mig_entry *e, size_t *pos, struct cta_mig_xattr *ret);

size_t cta_mig_have_size(uint16_t path_len);
size_t cta_mig_enc_have(uint8_t *p, const struct cta_mig_have_rec *h);
int cta_mig_dec_have(const uint8_t *p, size_t len, struct cta_mig_have_rec *ret);

/*
 * The canonical order of paths in both streams: depth-first, siblings by bytes of their
 * names, a directory before its contents. Equal to memcmp with '/' sorting below every
 * other byte. Returns < 0, 0, > 0.
 */
int cta_mig_path_cmp(const char *a, size_t alen, const char *b, size_t blen);
/* Is b inside directory a ("a/..." )? */
bool cta_mig_path_under(const char *a, size_t alen, const char *b, size_t blen);

/* Validate a received relative path: non-empty, no leading '/', no empty, "." or ".."
 * component, no NUL, components <= NAME_MAX, at most max_len bytes and max_depth
 * components. Returns 0 or -CTA_E_MIG_PATH. */
int cta_mig_path_check(const char *p, size_t len, size_t max_len, unsigned max_depth);

/* The content checksum (XXH3-128 over the logical content, holes as zeros) of data
 * given as in-order, non-overlapping extents; for tests and tools. out: canonical. */
struct cta_mig_extent {
        uint64_t offset;
        const void *data;
        size_t len;
};
void cta_mig_checksum(const struct cta_mig_extent *ext, size_t n, uint64_t size, uint8_t out[16]);
