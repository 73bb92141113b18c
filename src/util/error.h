/*
 * Error objects: a failing function returns a negative value and fills a
 * struct cta_error with a stable code, the errno at the root cause and a
 * message. Callers add context with cta_error_wrap() on the way up; the
 * error becomes an XML error packet or an exit status in exactly one place.
 *
 * Every function here accepts err == NULL (the caller does not want details).
 * cta_error_set() replaces an error already in *err; its arguments may refer
 * to that error's message.
 */
#pragma once

#include "util/cleanup.h"
#include "util/errcodes.h"

struct cta_error {
        int code;      /* enum cta_errcode, > 0 */
        int sys_errno; /* errno at the root cause, or 0 */
        char *msg;     /* "outer context: inner context: root cause" */
};

/* Set *err. Always returns -code (a negative value). */
int cta_error_set(struct cta_error **err, int code, int sys_errno, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Like cta_error_set() with sys_errno = errno and ": strerror" appended. */
int cta_error_errno(struct cta_error **err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Prepend "context: " to the message, keep code and errno. Returns -code.
 * If *err is NULL (a leaf returned a bare code) an internal error is made. */
int cta_error_wrap(struct cta_error **err, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Turn a bare negative leaf code (-CTA_E_*) into an error object. */
int cta_error_from_code(struct cta_error **err, int r, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

struct cta_error *cta_error_free(struct cta_error *e);
CTA_DEFINE_CLEANUP(struct cta_error, cta_error_free)

/* Message of e, or "unknown error" for NULL. */
const char *cta_error_msg(const struct cta_error *e);
/* Code of e, or CTA_E_INTERNAL for NULL. */
int cta_error_code(const struct cta_error *e);
