/* Direct I/O windows for large files, with a helper thread for the other window (dio.h). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "migrate/dio.h"
#include "util/util.h"

#define ALIGN_DOWN(x) ((x) & ~(uint64_t)(CTA_DIO_ALIGN - 1))
#define ALIGN_UP(x) ALIGN_DOWN((x) + CTA_DIO_ALIGN - 1)

enum job { J_NONE, J_READ, J_WRITE, J_QUIT };

/* One transfer at a time on the window the caller is not using. */
struct dio_worker {
        pthread_t th;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        enum job job;   /* submitted and not yet collected (J_NONE: idle) */
        bool done;      /* ... and finished: got, err are set */
        int fd;
        uint8_t *buf;   /* J_READ: into here */
        struct iovec iov[CTA_DIO_LEND_IOV]; /* J_WRITE: from here */
        int niov;
        uint64_t off;
        size_t len;     /* in all */
        ssize_t got;
        int err;
};

static ssize_t pread_full(int fd, void *p, size_t n, uint64_t off)
{
        for (;;) {
                ssize_t r = pread(fd, p, n, (off_t)off);
                if (r >= 0 || errno != EINTR)
                        return r;
        }
}

/* All bytes of iov[0, n), or -1: what a short write left is retried (a direct write may
 * stop at an aligned boundary). Returns the bytes written before a failure in *done.
 * iov is consumed. */
static int pwritev_all(int fd, struct iovec *iov, int n, uint64_t off, size_t *done)
{
        size_t k = 0, total = 0;
        int i = 0;
        for (int j = 0; j < n; j++)
                total += iov[j].iov_len;
        for (;;) {
                while (i < n && !iov[i].iov_len)
                        i++;
                if (i == n)
                        break;
                ssize_t w = pwritev(fd, iov + i, n - i, (off_t)(off + k));
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        if (w == 0)
                                errno = EIO;
                        break;
                }
                k += (size_t)w;
                for (size_t left = (size_t)w; left;) {
                        size_t t = left < iov[i].iov_len ? left : iov[i].iov_len;
                        iov[i].iov_base = (uint8_t *)iov[i].iov_base + t;
                        iov[i].iov_len -= t;
                        left -= t;
                        if (!iov[i].iov_len)
                                i++;
                }
                if (k % CTA_DIO_ALIGN && k < total)
                        break; /* unaligned now: the caller goes on buffered */
        }
        if (done)
                *done = k;
        return k == total ? 0 : -1;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off, size_t *done)
{
        struct iovec v = { (void *)(uintptr_t)p, n };
        return pwritev_all(fd, &v, 1, off, done);
}

static void *worker_main(void *arg)
{
        struct dio_worker *w = arg;
        pthread_setname_np(pthread_self(), "cta-mig-dio");
        pthread_mutex_lock(&w->mu);
        for (;;) {
                while (w->job != J_QUIT && (w->job == J_NONE || w->done))
                        pthread_cond_wait(&w->cv, &w->mu);
                if (w->job == J_QUIT)
                        break;
                pthread_mutex_unlock(&w->mu);
                ssize_t got;
                int err = 0;
                if (w->job == J_READ) {
                        got = pread_full(w->fd, w->buf, w->len, w->off);
                } else {
                        size_t k = 0;
                        struct iovec v[CTA_DIO_LEND_IOV];
                        memcpy(v, w->iov, sizeof(v[0]) * (size_t)w->niov);
                        got = pwritev_all(w->fd, v, w->niov, w->off, &k) == 0 ? (ssize_t)w->len
                                                                              : (ssize_t)k;
                        if ((size_t)got < w->len && !errno)
                                errno = EIO;
                }
                if (got < 0 || (w->job == J_WRITE && (size_t)got < w->len))
                        err = errno;
                pthread_mutex_lock(&w->mu);
                w->got = got;
                w->err = err;
                w->done = true;
                pthread_cond_broadcast(&w->cv);
        }
        pthread_mutex_unlock(&w->mu);
        return NULL;
}

static bool worker_start(struct cta_dio *d)
{
        if (d->w)
                return true;
        struct dio_worker *w = calloc(1, sizeof(*w));
        if (!w)
                return false;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
                pthread_mutex_destroy(&w->mu);
                pthread_cond_destroy(&w->cv);
                free(w);
                return false;
        }
        d->w = w;
        return true;
}

static bool busy(const struct cta_dio *d, enum job kind)
{
        return d->w && d->w->job == kind; /* only the caller's thread changes job */
}

static void submit_v(struct cta_dio *d, enum job kind, uint8_t *buf, const struct iovec *iov,
                     int niov, uint64_t off, size_t len)
{
        struct dio_worker *w = d->w;
        pthread_mutex_lock(&w->mu);
        w->job = kind;
        w->done = false;
        w->fd = d->fd;
        w->buf = buf;
        if (niov)
                memcpy(w->iov, iov, sizeof(iov[0]) * (size_t)niov);
        w->niov = niov;
        w->off = off;
        w->len = len;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
}

static void submit(struct cta_dio *d, enum job kind, uint8_t *buf, uint64_t off, size_t len)
{
        struct iovec v = { buf, len };
        submit_v(d, kind, buf, &v, kind == J_WRITE, off, len);
}

/* Wait for the submitted job; its result (the job is then idle again). */
static ssize_t collect(struct cta_dio *d, int *err)
{
        struct dio_worker *w = d->w;
        pthread_mutex_lock(&w->mu);
        while (!w->done)
                pthread_cond_wait(&w->cv, &w->mu);
        w->job = J_NONE;
        w->done = false;
        ssize_t got = w->got;
        *err = w->err;
        pthread_mutex_unlock(&w->mu);
        return got;
}

void cta_dio_init(struct cta_dio *d)
{
        memset(d, 0, sizeof(*d));
        d->fd = -1;
}

void cta_dio_free(struct cta_dio *d)
{
        cta_dio_end(d);
        if (d->w) {
                pthread_mutex_lock(&d->w->mu);
                d->w->job = J_QUIT;
                pthread_cond_broadcast(&d->w->cv);
                pthread_mutex_unlock(&d->w->mu);
                pthread_join(d->w->th, NULL);
                pthread_mutex_destroy(&d->w->mu);
                pthread_cond_destroy(&d->w->cv);
                free(d->w);
                d->w = NULL;
        }
        for (int i = 0; i < 2; i++) {
                cta_free_io(d->win[i], CTA_DIO_WINDOW);
                d->win[i] = NULL;
        }
}

bool cta_dio_on(const struct cta_dio *d)
{
        return d->fd >= 0;
}

bool cta_dio_begin(struct cta_dio *d, int fd)
{
        cta_dio_end(d);
        for (int i = 0; i < 2; i++) {
                if (!d->win[i])
                        d->win[i] = cta_xmalloc_io(CTA_DIO_WINDOW);
        }
        if (!worker_start(d))
                return false;
        int fl = fcntl(fd, F_GETFL);
        /* EINVAL here: the file system does not do direct I/O */
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0)
                return false;
        d->fd = fd;
        d->flags = fl;
        d->direct = true;
        d->werr = 0;
        d->off = 0;
        d->len = 0;
        return true;
}

/* 64 samples of 16 pages spread over the file: cheap (no page is touched) and enough to
 * tell a file in use from one that is not. Holes count as not cached. */
#define CACHED_SAMPLES 64
#define CACHED_PAGES 16

bool cta_dio_cached(int fd, uint64_t size)
{
        long pg = sysconf(_SC_PAGESIZE);
        uint64_t span = CACHED_PAGES * (uint64_t)pg;
        if (pg <= 0 || size < 2 * span || size > (uint64_t)SIZE_MAX)
                return false;
        void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
                return false;
        unsigned char vec[CACHED_PAGES];
        unsigned in = 0, all = 0;
        for (uint64_t i = 0; i < CACHED_SAMPLES; i++) {
                uint64_t off = (size - span) / (CACHED_SAMPLES - 1) * i & ~((uint64_t)pg - 1);
                if (mincore((uint8_t *)map + off, (size_t)span, vec) < 0)
                        break;
                for (unsigned j = 0; j < CACHED_PAGES; j++, all++)
                        in += vec[j] & 1;
        }
        munmap(map, (size_t)size);
        return all && in * 10 >= all * 9;
}

/* Wait for whatever the helper does (results dropped: a reader's read-ahead, or a writer
 * that failed anyway). */
static void quiesce(struct cta_dio *d)
{
        int err;
        if (d->w && d->w->job != J_NONE)
                (void)collect(d, &err);
        d->lent = false;
        d->nlv = 0;
        d->lv_len = 0;
}

void cta_dio_end(struct cta_dio *d)
{
        quiesce(d);
        if (d->fd >= 0 && d->direct)
                (void)fcntl(d->fd, F_SETFL, d->flags);
        d->fd = -1;
        d->direct = false;
        d->len = 0;
}

/* Direct I/O refused half way (an alignment this device wants and we do not give):
 * the file goes on through the page cache. Only with the helper idle. */
static void direct_off(struct cta_dio *d)
{
        (void)fcntl(d->fd, F_SETFL, d->flags);
        d->direct = false;
}

/* ------------------------------------------------------------------ reading */

static void read_ahead(struct cta_dio *d, uint64_t limit)
{
        uint64_t next = d->off + d->len;
        if (!d->direct || d->len != CTA_DIO_WINDOW || next >= ALIGN_UP(limit) ||
            busy(d, J_READ))
                return;
        uint64_t want = ALIGN_UP(limit) - next;
        submit(d, J_READ, d->win[d->cur ^ 1], next, want > CTA_DIO_WINDOW ? CTA_DIO_WINDOW
                                                                       : (size_t)want);
}

/* Make the caller's window hold offset a (aligned), from the read-ahead if it has it. */
static int refill(struct cta_dio *d, uint64_t a, uint64_t off, size_t n, uint64_t limit)
{
        if (busy(d, J_READ)) {
                uint64_t ra = d->w->off;
                int err;
                ssize_t got = collect(d, &err);
                if (ra == a && got > 0) {
                        d->cur ^= 1;
                        d->off = a;
                        d->len = (size_t)got;
                        d->direct_bytes += (uint64_t)got;
                        return 0;
                }
        }
        uint64_t end = limit > off + n ? limit : off + n;
        uint64_t want = ALIGN_UP(end) - a;
        if (want > CTA_DIO_WINDOW)
                want = CTA_DIO_WINDOW;
        d->len = 0;
        ssize_t got = pread_full(d->fd, d->win[d->cur], (size_t)want, a);
        if (got < 0 && errno == EINVAL && d->direct) {
                direct_off(d);
                got = pread_full(d->fd, d->win[d->cur], (size_t)want, a);
        }
        if (got < 0)
                return -1;
        if (d->direct)
                d->direct_bytes += (uint64_t)got;
        d->off = a;
        d->len = (size_t)got;
        return 0;
}

ssize_t cta_dio_pread(struct cta_dio *d, void *dst, size_t n, uint64_t off, uint64_t limit)
{
        if (d->fd < 0) {
                errno = EBADF;
                return -1;
        }
        if (!(off >= d->off && off < d->off + d->len)) {
                if (refill(d, ALIGN_DOWN(off), off, n, limit) < 0)
                        return -1;
                if (off >= d->off + d->len)
                        return 0; /* end of file */
                read_ahead(d, limit);
        }
        size_t k = (size_t)(d->off + d->len - off);
        if (k > n)
                k = n;
        memcpy(dst, d->win[d->cur] + (off - d->off), k);
        return (ssize_t)k;
}

/* ------------------------------------------------------------------ writing */

/* Through the page cache: O_DIRECT is a property of the open file, so it is switched off
 * around the write (only for the few unaligned bytes of a file), with the helper idle. */
static int buffered_write(struct cta_dio *d, const uint8_t *p, size_t n, uint64_t off)
{
        bool was = d->direct;
        if (was)
                direct_off(d);
        int r = pwrite_all(d->fd, p, n, off, NULL);
        int e = errno;
        if (was && fcntl(d->fd, F_SETFL, d->flags | O_DIRECT) == 0)
                d->direct = true;
        errno = e;
        return r;
}

/* buf[0, n) at off (aligned): the aligned part direct, the rest buffered. Synchronous. */
static int write_out(struct cta_dio *d, const uint8_t *buf, size_t n, uint64_t off)
{
        size_t aligned = n & ~(size_t)(CTA_DIO_ALIGN - 1), done = 0;
        if (aligned && d->direct) {
                int r = pwrite_all(d->fd, buf, aligned, off, &done);
                d->direct_bytes += done;
                if (r < 0 && errno != EINVAL && done % CTA_DIO_ALIGN == 0)
                        return -1;
                if (r < 0 && errno == EINVAL)
                        direct_off(d);
        }
        return buffered_write(d, buf + done, n - done, off + done);
}

/* The write-behind's outcome; what it could not write direct is written here. */
static int collect_write(struct cta_dio *d)
{
        if (!busy(d, J_WRITE))
                return 0;
        uint64_t off = d->w->off;
        size_t len = d->w->len;
        int err;
        ssize_t got = collect(d, &err);
        size_t done = got > 0 ? (size_t)got : 0;
        d->direct_bytes += done;
        if (d->lent)
                d->lent_bytes += done;
        /* (what is retried below still reads lent memory: the caller has not had it back) */
        if (done == len) {
                d->lent = false;
                return 0;
        }
        if (err == EINVAL) {
                direct_off(d);
        } else if (err && done % CTA_DIO_ALIGN == 0) {
                d->werr = errno = err;
                d->lent = false;
                return -1;
        }
        /* the rest of the job's buffers, from byte done on */
        int r = 0;
        size_t pos = 0;
        for (int i = 0; i < d->w->niov && r == 0; i++) {
                const struct iovec *v = &d->w->iov[i];
                size_t skip = done > pos ? done - pos : 0;
                if (skip < v->iov_len)
                        r = buffered_write(d, (const uint8_t *)v->iov_base + skip,
                                           v->iov_len - skip, off + pos + skip);
                pos += v->iov_len;
        }
        if (r < 0)
                d->werr = errno;
        d->lent = false;
        return r;
}

static int lend_submit(struct cta_dio *d);

int cta_dio_flush(struct cta_dio *d)
{
        if (d->fd < 0)
                return 0;
        if (d->nlv && lend_submit(d) < 0)
                return -1;
        if (collect_write(d) < 0)
                return -1;
        if (d->werr) {
                errno = d->werr;
                return -1;
        }
        size_t n = d->len;
        d->len = 0;
        return n ? write_out(d, d->win[d->cur], n, d->off) : 0;
}

/* A full window goes to the helper; the caller fills the other one meanwhile. */
static int write_behind(struct cta_dio *d)
{
        if (collect_write(d) < 0)
                return -1;
        if (!d->direct) {
                size_t n = d->len;
                d->len = 0;
                return write_out(d, d->win[d->cur], n, d->off);
        }
        submit(d, J_WRITE, d->win[d->cur], d->off, d->len);
        d->cur ^= 1;
        d->off += d->len;
        d->len = 0;
        return 0;
}

int cta_dio_pwrite(struct cta_dio *d, const void *src, size_t n, uint64_t off)
{
        const uint8_t *p = src;
        if (d->fd < 0) {
                errno = EBADF;
                return -1;
        }
        if (d->werr) {
                errno = d->werr;
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
                                if (collect_write(d) < 0 || buffered_write(d, p, k, off) < 0)
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
                memcpy(d->win[d->cur] + d->len, p, k);
                d->len += k;
                p += k;
                off += k;
                n -= k;
                if (d->len == CTA_DIO_WINDOW && write_behind(d) < 0)
                        return -1;
        }
        return 0;
}

/* A lent piece smaller than this is copied: not worth an entry in a job. */
#define LEND_MIN (64u << 10)
/* Lent pieces are gathered into one write of up to this many bytes. */
#define LEND_BATCH CTA_DIO_WINDOW

/* The gathered pieces go to the helper (after what it is doing now). */
static int lend_submit(struct cta_dio *d)
{
        if (collect_write(d) < 0)
                return -1;
        int n = d->nlv;
        d->nlv = 0;
        size_t len = d->lv_len;
        d->lv_len = 0;
        if (!d->direct) { /* refused meanwhile: through the page cache, now */
                uint64_t off = d->lv_off;
                for (int i = 0; i < n; i++) {
                        if (buffered_write(d, d->lv[i].iov_base, d->lv[i].iov_len, off) < 0)
                                return -1;
                        off += d->lv[i].iov_len;
                }
                return 0;
        }
        submit_v(d, J_WRITE, NULL, d->lv, n, d->lv_off, len);
        d->lent = true;
        d->job_tag = d->lv_tag;
        return 0;
}

int cta_dio_pwrite_lend(struct cta_dio *d, const void *src, size_t n, uint64_t off, uint64_t tag)
{
        const uint8_t *p = src;
        uint64_t a = ALIGN_UP(off), b = ALIGN_DOWN(off + n);
        if (d->fd < 0 || !d->direct || d->werr || b <= a || b - a < LEND_MIN ||
            ((uintptr_t)p - off) % CTA_DIO_ALIGN)
                return cta_dio_pwrite(d, src, n, off) < 0 ? -1 : 0;
        /* the unaligned head and tail go through the window (or buffered) */
        if (a > off && cta_dio_pwrite(d, p, (size_t)(a - off), off) < 0)
                return -1;
        if (d->nlv && (a != d->lv_off + d->lv_len || d->nlv == CTA_DIO_LEND_IOV ||
                       d->lv_len + (b - a) > LEND_BATCH) &&
            lend_submit(d) < 0)
                return -1;
        if (!d->direct) /* the last collect found direct I/O refused */
                return cta_dio_pwrite(d, p + (a - off), (size_t)(off + n - a), a) < 0 ? -1 : 0;
        if (!d->nlv) {
                d->lv_off = a;
                d->lv_tag = tag;
        }
        d->lv[d->nlv++] = (struct iovec){ (void *)(uintptr_t)(p + (a - off)), (size_t)(b - a) };
        d->lv_len += (size_t)(b - a);
        if (d->lv_len >= LEND_BATCH && lend_submit(d) < 0)
                return -1;
        if (off + n > b && cta_dio_pwrite(d, p + (b - off), (size_t)(off + n - b), b) < 0)
                return -1;
        return 1;
}

int cta_dio_unlend(struct cta_dio *d)
{
        if (d->nlv && lend_submit(d) < 0)
                return -1;
        return d->lent ? collect_write(d) : 0;
}
