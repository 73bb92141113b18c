/* Direct I/O windows for large files (see dio.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrate/dio.h"
#include "util/util.h"

void cta_dio_init(struct cta_dio *d)
{
        memset(d, 0, sizeof(*d));
        d->fd = -1;
}

void cta_dio_free(struct cta_dio *d)
{
        cta_dio_end(d);
        free(d->buf);
        d->buf = NULL;
}

bool cta_dio_on(const struct cta_dio *d)
{
        return d->fd >= 0;
}

bool cta_dio_begin(struct cta_dio *d, int fd)
{
        cta_dio_end(d);
        if (!d->buf) {
                void *p = NULL;
                if (posix_memalign(&p, CTA_DIO_ALIGN, CTA_DIO_WINDOW) != 0)
                        return false;
                d->buf = p;
        }
        int fl = fcntl(fd, F_GETFL);
        /* EINVAL here: the file system does not do direct I/O */
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0)
                return false;
        d->fd = fd;
        d->flags = fl;
        d->direct = true;
        d->off = 0;
        d->len = 0;
        return true;
}

void cta_dio_end(struct cta_dio *d)
{
        if (d->fd >= 0 && d->direct)
                (void)fcntl(d->fd, F_SETFL, d->flags);
        d->fd = -1;
        d->direct = false;
        d->len = 0;
}

/* Direct I/O refused half way (an alignment this device wants and we do not give):
 * the file goes on through the page cache. */
static void direct_off(struct cta_dio *d)
{
        (void)fcntl(d->fd, F_SETFL, d->flags);
        d->direct = false;
}

static bool is_direct(const struct cta_dio *d)
{
        return d->fd >= 0 && d->direct;
}

static ssize_t pread_full(int fd, void *p, size_t n, uint64_t off)
{
        for (;;) {
                ssize_t r = pread(fd, p, n, (off_t)off);
                if (r >= 0 || errno != EINTR)
                        return r;
        }
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
        while (n) {
                ssize_t w = pwrite(fd, p, n, (off_t)off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -1;
                if (w == 0) {
                        errno = EIO;
                        return -1;
                }
                p += w;
                n -= (size_t)w;
                off += (uint64_t)w;
        }
        return 0;
}

ssize_t cta_dio_pread(struct cta_dio *d, void *dst, size_t n, uint64_t off, uint64_t limit)
{
        if (d->fd < 0) {
                errno = EBADF;
                return -1;
        }
        if (!(off >= d->off && off < d->off + d->len)) {
                uint64_t a = off & ~(uint64_t)(CTA_DIO_ALIGN - 1);
                uint64_t end = limit > off + n ? limit : off + n;
                uint64_t want = (end - a + CTA_DIO_ALIGN - 1) & ~(uint64_t)(CTA_DIO_ALIGN - 1);
                if (want > CTA_DIO_WINDOW)
                        want = CTA_DIO_WINDOW;
                d->len = 0;
                ssize_t got = pread_full(d->fd, d->buf, (size_t)want, a);
                if (got < 0 && errno == EINVAL && is_direct(d)) {
                        direct_off(d);
                        got = pread_full(d->fd, d->buf, (size_t)want, a);
                }
                if (got < 0)
                        return -1;
                if (is_direct(d))
                        d->direct_bytes += (uint64_t)got;
                d->off = a;
                d->len = (size_t)got;
                if (off >= a + (uint64_t)got)
                        return 0; /* end of file */
        }
        size_t k = (size_t)(d->off + d->len - off);
        if (k > n)
                k = n;
        memcpy(dst, d->buf + (off - d->off), k);
        return (ssize_t)k;
}

/* Through the page cache: O_DIRECT is a property of the open file, so it is switched off
 * around the write (only for the few unaligned bytes of a file). */
static int buffered_write(struct cta_dio *d, const uint8_t *p, size_t n, uint64_t off)
{
        bool was = is_direct(d);
        if (was)
                direct_off(d);
        int r = pwrite_all(d->fd, p, n, off);
        int e = errno;
        if (was && fcntl(d->fd, F_SETFL, d->flags | O_DIRECT) == 0)
                d->direct = true;
        errno = e;
        return r;
}

/* Write window bytes [0, n) at d->off: the aligned part direct, the rest buffered. */
static int write_window(struct cta_dio *d, size_t n)
{
        size_t aligned = n & ~(size_t)(CTA_DIO_ALIGN - 1), done = 0;
        while (done < aligned && is_direct(d)) {
                ssize_t w = pwrite(d->fd, d->buf + done, aligned - done, (off_t)(d->off + done));
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EINVAL) {
                        direct_off(d);
                        break;
                }
                if (w < 0)
                        return -1;
                if (w == 0) {
                        errno = EIO;
                        return -1;
                }
                done += (size_t)w;
                d->direct_bytes += (uint64_t)w;
                if (done % CTA_DIO_ALIGN)
                        break; /* a short write left us unaligned: the rest buffered */
        }
        return buffered_write(d, d->buf + done, n - done, d->off + done);
}

int cta_dio_flush(struct cta_dio *d)
{
        if (d->fd < 0 || !d->len)
                return 0;
        size_t n = d->len;
        d->len = 0;
        return write_window(d, n);
}

int cta_dio_pwrite(struct cta_dio *d, const void *src, size_t n, uint64_t off)
{
        const uint8_t *p = src;
        if (d->fd < 0) {
                errno = EBADF;
                return -1;
        }
        if (d->len && off != d->off + d->len && cta_dio_flush(d) < 0)
                return -1;
        while (n) {
                if (!d->len) {
                        if (off % CTA_DIO_ALIGN) {
                                /* up to the next aligned offset through the page cache */
                                size_t k = CTA_DIO_ALIGN - (size_t)(off % CTA_DIO_ALIGN);
                                if (k > n)
                                        k = n;
                                if (buffered_write(d, p, k, off) < 0)
                                        return -1;
                                p += k;
                                off += k;
                                n -= k;
                                continue;
                        }
                        d->off = off;
                }
                size_t k = CTA_DIO_WINDOW - d->len;
                if (k > n)
                        k = n;
                memcpy(d->buf + d->len, p, k);
                d->len += k;
                p += k;
                off += k;
                n -= k;
                if (d->len == CTA_DIO_WINDOW && cta_dio_flush(d) < 0)
                        return -1;
        }
        return 0;
}
