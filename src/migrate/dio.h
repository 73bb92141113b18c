#pragma once

/*
 * Direct I/O (O_DIRECT) for the bulk of large files.
 *
 * Buffered reads and writes copy every byte between the page cache and our buffers in the
 * kernel; for gigabytes that copy (and, on the receiver, allocating and dirtying page-cache
 * pages and writing them back later) was most of the CPU time of a large migration. With
 * O_DIRECT the disk reads into and writes from our own aligned windows, and the page cache
 * is left alone (the migrated data would only push the node's useful cache out).
 *
 * Two windows of CTA_DIO_WINDOW bytes, allocated once: the caller works in one while a
 * helper thread reads the next one ahead (reader) or writes the last full one (writer),
 * so the disk works while we hash, encrypt and send. Direct transfers cover whole
 * CTA_DIO_ALIGN units at aligned offsets; what is not aligned (a file's tail, data starting
 * inside a unit) goes through the page cache as before. A file system that refuses
 * O_DIRECT, or a direct transfer failing with EINVAL, turns direct I/O off for that file
 * and the rest goes buffered: same bytes, only slower.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define CTA_DIO_ALIGN 4096u
#define CTA_DIO_WINDOW (4u << 20)
/* Files smaller than this are read and written through the page cache. */
#define CTA_DIO_MIN (8ull << 20)
/* Pieces of lent memory gathered into one write (cta_dio_pwrite_lend). */
#define CTA_DIO_LEND_IOV 16

struct dio_worker;

struct cta_dio {
        uint8_t *win[2]; /* CTA_DIO_WINDOW bytes each, aligned to CTA_DIO_ALIGN */
        int cur;         /* the caller's window; the other may be the helper's */
        uint64_t off;    /* file offset of the caller's window: aligned */
        size_t len;      /* bytes in it: read ahead, or waiting to be written */
        int fd;          /* the file while direct I/O is on, else -1 */
        int flags;       /* its file status flags before */
        bool direct;     /* O_DIRECT is set on fd now */
        int werr;        /* a write-behind failed with this errno: reported next call */
        uint64_t direct_bytes; /* moved by direct transfers (statistics, tests) */
        uint64_t lent_bytes;   /* ... of them written straight from the caller's memory */
        bool lent;             /* the helper writes from memory the caller lent it */
        uint64_t job_tag;      /* ... the tag of its first piece */
        struct iovec lv[CTA_DIO_LEND_IOV]; /* lent pieces gathered for the next write */
        int nlv;
        uint64_t lv_off;       /* their file offset (they are contiguous in the file) */
        size_t lv_len;
        uint64_t lv_tag;       /* the tag of the first */
        struct dio_worker *w;  /* the helper thread, started on first use */
};

void cta_dio_init(struct cta_dio *d);
void cta_dio_free(struct cta_dio *d);

/* Start direct I/O on fd (already open; its status flags are restored by _end). False if
 * it cannot be had: then use fd as before. */
bool cta_dio_begin(struct cta_dio *d, int fd);
/* Most of a sample of the file's pages are in the page cache: a reader copies them from
 * memory faster than O_DIRECT reads them from the disk (a live container's database). */
bool cta_dio_cached(int fd, uint64_t size);
bool cta_dio_on(const struct cta_dio *d);

/* Read up to n bytes at off into dst, reading ahead no further than limit (the end of
 * the data the caller will ask for next: an extent's end). Returns the bytes copied, 0 at
 * end of file, -1 with errno. */
ssize_t cta_dio_pread(struct cta_dio *d, void *dst, size_t n, uint64_t off, uint64_t limit);

/* Write n bytes at off: they may wait in a window until the next non-adjacent write,
 * cta_dio_flush or cta_dio_end. 0, or -1 with errno (possibly of an earlier write). */
int cta_dio_pwrite(struct cta_dio *d, const void *src, size_t n, uint64_t off);
/*
 * Like cta_dio_pwrite, but when src is aligned like off (src - off a multiple of
 * CTA_DIO_ALIGN) its aligned middle is written straight from src, without the copy into a
 * window: pieces contiguous in the file are gathered into one write of up to a window's
 * size, which the helper does while the caller goes on. Returns 1 when src is now lent:
 * the caller keeps it unchanged until cta_dio_lent_from() is past its tag (a number the
 * caller chooses, increasing from call to call: a stream offset); 0 when done with src;
 * -1 with errno.
 */
int cta_dio_pwrite_lend(struct cta_dio *d, const void *src, size_t n, uint64_t off,
                        uint64_t tag);
/* The tag of the oldest memory still lent, or UINT64_MAX. */
static inline uint64_t cta_dio_lent_from(const struct cta_dio *d)
{
        return d->lent ? d->job_tag : d->nlv ? d->lv_tag : UINT64_MAX;
}
static inline bool cta_dio_lent(const struct cta_dio *d)
{
        return d->lent || d->nlv;
}
/* Write what is gathered and wait until nothing is lent: 0, or -1 with errno. */
int cta_dio_unlend(struct cta_dio *d);
/* Everything written and done with: 0, or -1 with errno. */
int cta_dio_flush(struct cta_dio *d);

/* Stop: waits for the helper, a reader forgets its windows, a writer must have flushed
 * (pending bytes are dropped: the caller failed). Restores fd's status flags. */
void cta_dio_end(struct cta_dio *d);
