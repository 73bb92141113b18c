#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/util.h"

static const struct {
        int code;
        const char *name;
} cta_errnames[] = {
        { CTA_E_INTERNAL, "internal" },
        { CTA_E_NOMEM, "nomem" },
        { CTA_E_IO, "io" },
        { CTA_E_INVALID, "invalid" },
        { CTA_E_TOO_LARGE, "too_large" },
        { CTA_E_INCOMPLETE, "incomplete" },
        { CTA_E_TIMEOUT, "timeout" },
        { CTA_E_CANCELLED, "cancelled" },
        { CTA_E_CONFIG, "config" },
        { CTA_E_STORE, "store" },
        { CTA_E_BUSY, "busy" },
        { CTA_E_NOT_IMPLEMENTED, "not_implemented" },
        { CTA_E_PROTO, "proto" },
        { CTA_E_FRAME_TOO_LARGE, "frame_too_large" },
        { CTA_E_UNKNOWN_OPERATOR, "unknown_operator" },
        { CTA_E_UNKNOWN_CALL, "unknown_call" },
        { CTA_E_BAD_PARAM, "bad_param" },
        { CTA_E_IDLE, "idle" },
        { CTA_E_BAD_BASE64, "bad_base64" },
        { CTA_E_TOO_MANY, "too_many" },
        { CTA_E_TLS, "tls" },
        { CTA_E_CONNECT, "connect" },
        { CTA_E_PEER_CHANGED, "peer_changed" },
        { CTA_E_NOT_LOGGED_IN, "not_logged_in" },
        { CTA_E_AUTH_FAILED, "auth_failed" },
        { CTA_E_ACCESS_DENIED, "access_denied" },
        { CTA_E_ALREADY_LOGGED_IN, "already_logged_in" },
        { CTA_E_UNKNOWN_REALM, "unknown_realm" },
        { CTA_E_ENV_NOT_FOUND, "env_not_found" },
        { CTA_E_ENV_EXISTS, "env_exists" },
        { CTA_E_VEID_EXISTS, "veid_exists" },
        { CTA_E_NAME_EXISTS, "name_exists" },
        { CTA_E_PRIVATE_EXISTS, "private_exists" },
        { CTA_E_IP_IN_USE, "ip_in_use" },
        { CTA_E_BAD_STATE, "bad_state" },
        { CTA_E_TEMPLATE, "template" },
        { CTA_E_CT_BACKEND, "ct_backend" },
        { CTA_E_MIG_UNSUPPORTED_TYPE, "mig_unsupported_type" },
        { CTA_E_MIG_DST_CONNECT, "mig_dst_connect" },
        { CTA_E_MIG_DST_LOGIN, "mig_dst_login" },
        { CTA_E_MIG_CHECK, "mig_check" },
        { CTA_E_MIG_NO_SPACE, "mig_no_space" },
        { CTA_E_MIG_CHECKSUM, "mig_checksum" },
        { CTA_E_MIG_PATH, "mig_path" },
        { CTA_E_MIG_STREAM, "mig_stream" },
        { CTA_E_MIG_LINK_LOST, "mig_link_lost" },
        { CTA_E_MIG_VERSION, "mig_version" },
        { CTA_E_MIG_FS, "mig_fs" },
        { CTA_E_MIG_SETTLED, "mig_settled_otherwise" },
};

const char *cta_errcode_name(int code)
{
        if (code < 0)
                code = -code;
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cta_errnames); i++)
                if (cta_errnames[i].code == code)
                        return cta_errnames[i].name;
        return "unknown";
}

__attribute__((format(printf, 4, 0))) static int error_vset(struct cta_error **err, int code,
                                                             int sys_errno, const char *fmt,
                                                             va_list ap)
{
        if (code <= 0)
                code = CTA_E_INTERNAL;
        if (!err)
                return -code;
        /* Format first: the arguments may point into the error being replaced
         * ("...: %s", cta_error_msg(*err)). */
        struct cta_error *e = cta_xcalloc(1, sizeof(*e));
        e->code = code;
        e->sys_errno = sys_errno;
        if (vasprintf(&e->msg, fmt, ap) < 0)
                abort();
        cta_error_free(*err);
        *err = e;
        return -code;
}

int cta_error_set(struct cta_error **err, int code, int sys_errno, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int r = error_vset(err, code, sys_errno, fmt, ap);
        va_end(ap);
        return r;
}

int cta_error_errno(struct cta_error **err, int code, const char *fmt, ...)
{
        int saved = errno;
        va_list ap;
        _cleanup_free_ char *head = NULL;

        va_start(ap, fmt);
        if (vasprintf(&head, fmt, ap) < 0)
                abort();
        va_end(ap);
        return cta_error_set(err, code, saved, "%s: %s", head, strerror(saved));
}

int cta_error_wrap(struct cta_error **err, const char *fmt, ...)
{
        va_list ap;
        _cleanup_free_ char *ctx = NULL;

        if (!err)
                return -CTA_E_INTERNAL;
        va_start(ap, fmt);
        if (vasprintf(&ctx, fmt, ap) < 0)
                abort();
        va_end(ap);
        if (!*err)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "%s: unknown error", ctx);
        char *msg = cta_xasprintf("%s: %s", ctx, (*err)->msg);
        free((*err)->msg);
        (*err)->msg = msg;
        return -(*err)->code;
}

int cta_error_from_code(struct cta_error **err, int r, const char *fmt, ...)
{
        va_list ap;
        _cleanup_free_ char *ctx = NULL;
        int code = r < 0 ? -r : r;

        va_start(ap, fmt);
        if (vasprintf(&ctx, fmt, ap) < 0)
                abort();
        va_end(ap);
        if (err && *err)
                return cta_error_wrap(err, "%s", ctx);
        return cta_error_set(err, code ? code : CTA_E_INTERNAL, 0, "%s: %s", ctx,
                             cta_errcode_name(code));
}

struct cta_error *cta_error_free(struct cta_error *e)
{
        if (e) {
                free(e->msg);
                free(e);
        }
        return NULL;
}

const char *cta_error_msg(const struct cta_error *e)
{
        return e && e->msg ? e->msg : "unknown error";
}

int cta_error_code(const struct cta_error *e)
{
        return e ? e->code : CTA_E_INTERNAL;
}
