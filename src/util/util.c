#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/error.h"
#include "util/util.h"

void *cta_xmalloc(size_t n)
{
        void *p = malloc(n ? n : 1);
        if (!p)
                abort();
        return p;
}

void *cta_xcalloc(size_t n, size_t m)
{
        void *p = calloc(n ? n : 1, m ? m : 1);
        if (!p)
                abort();
        return p;
}

void *cta_xrealloc(void *p, size_t n)
{
        void *q = realloc(p, n ? n : 1);
        if (!q)
                abort();
        return q;
}

void *cta_xmalloc_io(size_t n)
{
        n = cta_io_size(n ? n : 1);
#ifdef __SANITIZE_ADDRESS__
        /* the sanitizer watches heap buffers, not mappings of our own */
        void *p = NULL;
        if (posix_memalign(&p, CTA_HUGE_ALIGN, n) != 0)
                abort();
#else
        /* A mapping of its own, aligned by trimming: its pages are zeroed only where they
         * are touched, where an aligned malloc is written whole under MALLOC_PERTURB_ (as
         * meson runs the tests), which costs a huge page fault for every 2 MiB. */
        size_t span = n + CTA_HUGE_ALIGN;
        uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                abort();
        uint8_t *p = (uint8_t *)cta_io_size((uintptr_t)m); /* the next 2 MiB boundary */
        size_t head = (size_t)(p - m), tail = span - head - n;
        if (head)
                (void)munmap(m, head);
        if (tail)
                (void)munmap(p + n, tail);
#endif
        /* only a hint: without THP (or with it "never") these are ordinary pages */
        (void)madvise(p, n, MADV_HUGEPAGE);
        return p;
}

void cta_free_io(void *p, size_t n)
{
        if (!p)
                return;
#ifdef __SANITIZE_ADDRESS__
        (void)n;
        free(p);
#else
        (void)munmap(p, cta_io_size(n ? n : 1));
#endif
}

char *cta_xstrdup(const char *s)
{
        char *p = strdup(s);
        if (!p)
                abort();
        return p;
}

char *cta_xstrndup(const char *s, size_t n)
{
        char *p = strndup(s, n);
        if (!p)
                abort();
        return p;
}

char *cta_xasprintf(const char *fmt, ...)
{
        va_list ap;
        char *s = NULL;
        va_start(ap, fmt);
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                abort();
        return s;
}

void cta_uuid_new(char out[CTA_UUID_LEN + 1])
{
        uint8_t u[16];
        size_t got = 0;
        while (got < sizeof(u)) {
                ssize_t n = getrandom(u + got, sizeof(u) - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        abort(); /* no entropy source: nothing sane to do */
                }
                got += (size_t)n;
        }
        u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
        u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
        snprintf(out, CTA_UUID_LEN + 1,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                 u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                 u[14], u[15]);
}

bool cta_uuid_valid(const char *s)
{
        if (!s || strlen(s) != CTA_UUID_LEN)
                return false;
        for (size_t i = 0; i < CTA_UUID_LEN; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!isxdigit((unsigned char)s[i])) {
                        return false;
                }
        }
        return true;
}

int cta_parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
        uint64_t v = 0;
        if (!s || !*s)
                return -CTA_E_INVALID;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -CTA_E_INVALID;
                unsigned d = (unsigned)(*p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -CTA_E_INVALID;
                v = v * 10 + d;
        }
        if (v > max)
                return -CTA_E_INVALID;
        *ret = v;
        return 0;
}

int cta_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
        uint64_t u;
        bool neg = false;
        if (!s)
                return -CTA_E_INVALID;
        if (*s == '-' || *s == '+') {
                neg = *s == '-';
                s++;
        }
        if (cta_parse_u64(s, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &u) < 0)
                return -CTA_E_INVALID;
        int64_t v = neg ? (int64_t)(0 - u) : (int64_t)u;
        if (v < min || v > max)
                return -CTA_E_INVALID;
        *ret = v;
        return 0;
}

int cta_parse_bool(const char *s, bool dflt, bool *ret)
{
        if (!s || !*s) {
                *ret = dflt;
                return 0;
        }
        if (streq(s, "true") || streq(s, "1") || streq(s, "yes") || streq(s, "on")) {
                *ret = true;
                return 0;
        }
        if (streq(s, "false") || streq(s, "0") || streq(s, "no") || streq(s, "off")) {
                *ret = false;
                return 0;
        }
        return -CTA_E_INVALID;
}

void cta_time_fmt(time_t t, char out[32])
{
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(out, 32, "%Y-%m-%dT%H:%M:%S+0000", &tm);
}

int cta_u64_cmp(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

bool cta_u64_in_sorted(uint64_t v, const uint64_t *set, size_t n)
{
        return n && bsearch(&v, set, n, sizeof(*set), cta_u64_cmp);
}

uint64_t cta_now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cta_ts_add_ns(struct timespec *t, long ns)
{
        t->tv_nsec += ns;
        if (t->tv_nsec >= 1000000000L) {
                t->tv_sec++;
                t->tv_nsec -= 1000000000L;
        } else if (t->tv_nsec < 0) {
                t->tv_sec--;
                t->tv_nsec += 1000000000L;
        }
}

char *cta_sanitize(const char *s, size_t max)
{
        if (!s)
                return cta_xstrdup("(null)");
        size_t n = strnlen(s, max + 1);
        bool cut = n > max;
        if (cut)
                n = max;
        char *o = cta_xmalloc(n + 4);
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                o[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
        }
        if (cut) {
                memcpy(o + n, "...", 4);
        } else {
                o[n] = '\0';
        }
        return o;
}

int cta_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          struct cta_error **err)
{
        /* Unique per process, thread and call: two writers of one path never
         * share a temp file. */
        static atomic_uint seq;
        _cleanup_free_ char *tmp = cta_xasprintf("%s.tmp.%d.%d.%u", path, (int)getpid(),
                                                 (int)gettid(), atomic_fetch_add(&seq, 1));
        /* O_EXCL|O_NOFOLLOW: never write through a planted file or symlink
         * (the TLS key goes through here); a stale temp file of ours goes. */
        (void)unlink(tmp);
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                      mode);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "create '%s'", tmp);
        const char *p = data;
        size_t left = len;
        while (left) {
                ssize_t n = write(fd, p, left);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int r = cta_error_errno(err, CTA_E_IO, "write '%s'", tmp);
                        (void)unlink(tmp);
                        return r;
                }
                p += n;
                left -= (size_t)n;
        }
        if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
                int r = cta_error_errno(err, CTA_E_IO, "sync '%s'", tmp);
                (void)unlink(tmp);
                return r;
        }
        if (rename(tmp, path) < 0) {
                int r = cta_error_errno(err, CTA_E_IO, "rename '%s' to '%s'", tmp, path);
                (void)unlink(tmp);
                return r;
        }
        return 0;
}

int cta_read_file(const char *path, size_t max, char **ret, size_t *ret_len,
                  struct cta_error **err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "open '%s'", path);
        return cta_read_fd(fd, path, max, ret, ret_len, err);
}

int cta_read_fd(int fd, const char *path, size_t max, char **ret, size_t *ret_len,
                struct cta_error **err)
{
        /* One byte beyond max is read to tell "exactly max" from "too large". */
        size_t cap = max < 4096 ? max + 1 : 4096, len = 0;
        _cleanup_free_ char *data = cta_xmalloc(cap + 1);
        for (;;) {
                if (len == cap) {
                        if (cap > max)
                                return cta_error_set(err, CTA_E_TOO_LARGE, 0,
                                                     "'%s' is larger than %zu bytes", path, max);
                        cap = cap * 2 > max ? max + 1 : cap * 2;
                        data = cta_xrealloc(data, cap + 1);
                }
                ssize_t n = read(fd, data + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return cta_error_errno(err, CTA_E_IO, "read '%s'", path);
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len > max)
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "'%s' is larger than %zu bytes",
                                     path, max);
        data[len] = '\0';
        if (ret_len)
                *ret_len = len;
        *ret = TAKE_PTR(data);
        return 0;
}

int cta_mkdir_p(const char *path, mode_t mode, struct cta_error **err)
{
        _cleanup_free_ char *p = cta_xstrdup(path);
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return cta_error_errno(err, CTA_E_IO, "create directory '%s'", p);
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return cta_error_errno(err, CTA_E_IO, "create directory '%s'", p);
        return 0;
}

int cta_fd_set_nonblock(int fd, bool on)
{
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
                return -CTA_E_IO;
        fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
        return fcntl(fd, F_SETFL, fl) < 0 ? -CTA_E_IO : 0;
}

int cta_split_hostport(const char *s, uint16_t dflt, char host[256], uint16_t *ret_port)
{
        const char *colon;
        size_t hlen;
        uint64_t port = dflt;

        if (!s || !*s)
                return -CTA_E_INVALID;
        if (*s == '[') {
                const char *end = strchr(s, ']');
                if (!end)
                        return -CTA_E_INVALID;
                hlen = (size_t)(end - s - 1);
                s++;
                colon = end[1] == ':' ? end + 1 : NULL;
                if (!colon && end[1])
                        return -CTA_E_INVALID;
        } else {
                colon = strrchr(s, ':');
                /* More than one colon without brackets: a bare IPv6 address. */
                if (colon && strchr(s, ':') != colon)
                        colon = NULL;
                hlen = colon ? (size_t)(colon - s) : strlen(s);
        }
        if (hlen == 0 || hlen > 255)
                return -CTA_E_INVALID;
        if (colon && cta_parse_u64(colon + 1, 65535, &port) < 0)
                return -CTA_E_INVALID;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        *ret_port = (uint16_t)port;
        return 0;
}
