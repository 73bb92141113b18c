/* Small helpers with no project knowledge. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "util/cleanup.h"

struct cta_error;

static inline bool streq(const char *a, const char *b)
{
        return strcmp(a, b) == 0;
}

static inline bool streq_ptr(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

/* Allocation that aborts on OOM: acceptable only because nothing is ever
 * sized from untrusted input without a cap (docs/limits.md). */
void *cta_xmalloc(size_t n);
void *cta_xcalloc(size_t n, size_t m);
void *cta_xrealloc(void *p, size_t n);
/* n bytes (rounded up to CTA_HUGE_ALIGN) for buffers that direct I/O reads or writes,
 * asking for transparent huge pages (madvise mode): a 4 MiB transfer from 4 KiB pages
 * is up to 1,024 physical segments, and a virtio disk takes at most 254 per request,
 * so it gets split into many small requests; from 2 MiB pages it is a few. Free with
 * cta_free_io(p, n), the same n. Aborts on OOM like cta_xmalloc. */
#define CTA_HUGE_ALIGN (2u << 20)
void *cta_xmalloc_io(size_t n);
void cta_free_io(void *p, size_t n);
/* What cta_xmalloc_io(n) really gives: n rounded up to whole CTA_HUGE_ALIGN. */
static inline size_t cta_io_size(size_t n)
{
        return (n + CTA_HUGE_ALIGN - 1) & ~(size_t)(CTA_HUGE_ALIGN - 1);
}
char *cta_xstrdup(const char *s);
char *cta_xstrndup(const char *s, size_t n);
char *cta_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CTA_UUID_LEN 36
/* A fresh random (v4) UUID, lower case, into out[37]. */
void cta_uuid_new(char out[CTA_UUID_LEN + 1]);
/* 8-4-4-4-12 hex digits, either case. */
bool cta_uuid_valid(const char *s);

/* Strict decimal parsing: no sign (u64), no spaces, no trailing garbage,
 * value <= max. Return 0 or -CTA_E_INVALID. */
int cta_parse_u64(const char *s, uint64_t max, uint64_t *ret);
int cta_parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret);
/* "true"/"1"/"yes"/"on" and "false"/"0"/"no"/"off"; "" → dflt. */
int cta_parse_bool(const char *s, bool dflt, bool *ret);

/* The protocol's datetime_type: "YYYY-MM-DDThh:mm:ss+0000" (UTC). out[32]. */
void cta_time_fmt(time_t t, char out[32]);
/* Monotonic milliseconds. */
uint64_t cta_now_ms(void);
/* qsort/bsearch order of uint64_t, and membership in an array sorted by it. */
int cta_u64_cmp(const void *a, const void *b);
bool cta_u64_in_sorted(uint64_t v, const uint64_t *set, size_t n);
/* t += ns (ns may be negative, |ns| under a second), normalized. */
void cta_ts_add_ns(struct timespec *t, long ns);

/* Copy s into a printable, bounded form for logs and error messages:
 * control and non-ASCII bytes become '?', and it is cut at max bytes
 * with "..." appended. Caller frees. */
char *cta_sanitize(const char *s, size_t max);

/* Write a file atomically: temp file in the same directory, fsync, rename. */
int cta_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          struct cta_error **err);
/* Read a whole small file (at most max bytes) into a NUL-terminated string. */
int cta_read_file(const char *path, size_t max, char **ret, size_t *ret_len,
                  struct cta_error **err);
/* The same from an open fd (read to its end; not closed); name is for messages. */
int cta_read_fd(int fd, const char *name, size_t max, char **ret, size_t *ret_len,
                struct cta_error **err);
/* mkdir -p with mode for the created components. */
int cta_mkdir_p(const char *path, mode_t mode, struct cta_error **err);
int cta_fd_set_nonblock(int fd, bool on);

/* Split "host:port", "[v6]:port" or "host" (port = dflt). Host out[256]. */
int cta_split_hostport(const char *s, uint16_t dflt, char host[256], uint16_t *ret_port);
