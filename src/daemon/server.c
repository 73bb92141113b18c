/*
 * Connections, sessions and request dispatch.
 *
 * Every frame goes through handle_frame(): parse, route by operator and
 * call through the handler tables, check login and authorization, then run
 * the handler inline or on a job thread. This file is the one place where a
 * struct cta_error becomes an XML error packet.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cta_config.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/mig.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/frame.h"
#include "util/log.h"
#include "util/util.h"

#define CTA_REPLY_MAX (64u << 20)

static const struct cta_handler *const handler_tables[] = {
        cta_system_handlers,
        cta_envm_handlers,
        cta_relocator_handlers,
        cta_mig_dst_handlers,
};

/* Operators that answer under another element name share a table. */
static const struct {
        const char *alias, *op;
} op_aliases[] = {
        { "envm", "vzaenvm" },
        { "vzarelocator", "relocator" },
};

static const char *canonical_op(const char *op)
{
        for (size_t i = 0; i < CTA_ARRAY_SIZE(op_aliases); i++)
                if (streq(op, op_aliases[i].alias))
                        return op_aliases[i].op;
        return op;
}

static bool op_known(const char *op)
{
        for (size_t t = 0; t < CTA_ARRAY_SIZE(handler_tables); t++)
                for (const struct cta_handler *h = handler_tables[t]; h->op; h++)
                        if (streq(h->op, op))
                                return true;
        return false;
}

static const struct cta_handler *handler_find(const char *op, const char *call)
{
        for (size_t t = 0; t < CTA_ARRAY_SIZE(handler_tables); t++)
                for (const struct cta_handler *h = handler_tables[t]; h->op; h++)
                        if (streq(h->op, op) && streq(h->call, call))
                                return h;
        return NULL;
}

/* ---- sessions ---------------------------------------------------------- */

static struct cta_session *session_ref(struct cta_session *s)
{
        s->refs++;
        return s;
}

static void session_unref(struct cta_session *s)
{
        if (!s || --s->refs > 0)
                return;
        struct cta_daemon *d = s->d;
        for (struct cta_session **pp = &d->sessions; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        cta_framer_done(s->fr);
        free(s->fr);
        for (size_t i = 0; i < s->nsubs; i++)
                free(s->subs[i]);
        free(s->subs);
        cta_conn_unref(s->conn);
        free(s);
}

static void send_frame(struct cta_session *s, const struct cta_buf *b)
{
        if (b->len && cta_conn_send(s->conn, b->data, b->len) < 0) {
                log_warning("client %s: reply of %zu bytes not sent, closing",
                            cta_conn_peer(s->conn), b->len);
                cta_conn_close(s->conn);
        }
}

/* An error packet outside any call (bad frame, idle, malformed packet). */
static void send_error(struct cta_session *s, const struct cta_req *req, const char *origin,
                       int code, const char *msg)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(CTA_REPLY_MAX);
        struct cta_reply_hdr h = {
                .id = req ? req->id : NULL,
                .cookie = req ? req->cookie : NULL,
                .origin = origin ? origin : "system",
                .client = s->client,
        };
        if (cta_reply_error_frame(&b, &h, code, msg) < 0) {
                log_error("client %s: cannot build an error reply", cta_conn_peer(s->conn));
                return;
        }
        send_frame(s, &b);
}

/* ---- calls ------------------------------------------------------------- */

static void call_free(struct cta_call *call)
{
        if (!call)
                return;
        if (call->ctx_free)
                call->ctx_free(call->ctx);
        free(call->w);
        cta_buf_done(&call->out);
        cta_error_free(call->err);
        cta_req_free(call->req);
        free(call);
}

struct cta_xw *cta_call_begin_result(struct cta_call *call)
{
        if (!call->w) {
                call->w = cta_xcalloc(1, sizeof(*call->w));
                cta_xw_init(call->w, &call->out);
                (void)cta_reply_begin(call->w, &call->hdr);
        }
        return call->w;
}

int cta_call_end_result(struct cta_call *call, struct cta_error **err)
{
        int r = cta_reply_end(call->w);
        if (r < 0)
                return cta_error_set(err, -r, 0, "build the reply: %s", cta_errcode_name(r));
        return 0;
}

bool cta_call_cancelled(struct cta_call *call)
{
        if (call->h->flags & CTA_H_DETACHED)
                return atomic_load(&call->cancelled);
        return atomic_load(&call->cancelled) || cta_conn_is_closed(call->s->conn);
}

void cta_call_progress(struct cta_call *call, const struct cta_progress *p)
{
        if (!call->req->progress || !call->req->id)
                return;
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(CTA_REPLY_MAX);
        struct cta_reply_hdr h = call->hdr;
        h.priority = 4000;
        h.type = 1;
        if (cta_progress_frame(&b, &h, p) < 0)
                return;
        (void)cta_conn_send(call->s->conn, b.data, b.len);
}

/* Build the final reply of a call from its result and send it. */
static void call_reply(struct cta_call *call, int r, struct cta_error *err)
{
        struct cta_session *s = call->s;

        if (r < 0) {
                cta_buf_reset(&call->out);
                int code = cta_error_code(err);
                if (code == CTA_E_INCOMPLETE || code <= 0)
                        code = CTA_E_INTERNAL;
                if (code == CTA_E_INTERNAL)
                        log_error("%s/%s from %s failed: %s", call->op, call->h->call,
                                  cta_conn_peer(s->conn), cta_error_msg(err));
                else
                        log_info("%s/%s from %s: error %d: %s", call->op, call->h->call,
                                 cta_conn_peer(s->conn), code, cta_error_msg(err));
                if (cta_reply_error_frame(&call->out, &call->hdr, code, cta_error_msg(err)) < 0)
                        return;
        } else if (call->out.len == 0) {
                if (cta_reply_ok_frame(&call->out, &call->hdr) < 0)
                        return;
        }
        send_frame(s, &call->out);
}

static void inflight_remove(struct cta_session *s, struct cta_call *call)
{
        for (struct cta_call **pp = &s->inflight; *pp; pp = &(*pp)->next_inflight)
                if (*pp == call) {
                        *pp = call->next_inflight;
                        return;
                }
}

static void session_pump(struct cta_session *s);

static void job_work(void *arg)
{
        struct cta_call *call = arg;
        call->result = call->h->fn(call, &call->err);
}

static void job_done(void *arg)
{
        struct cta_call *call = arg;
        struct cta_session *s = call->s;
        int r = call->result;

        if (call->h->finish)
                r = call->h->finish(call, &call->err);
        if (!s->closed)
                call_reply(call, r, call->err);
        inflight_remove(s, call);
        if (call->h->flags & CTA_H_SERIAL) {
                s->serial_busy = false;
                if (!s->closed) {
                        cta_conn_pause_read(s->conn, false);
                        session_pump(s);
                } else if (s->end_deferred) {
                        s->end_deferred = false;
                        cta_mig_dst_session_closed(s);
                }
        }
        call_free(call);
        session_unref(s);
}

static void run_call(struct cta_session *s, struct cta_call *call)
{
        const struct cta_handler *h = call->h;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;

        if (!(h->flags & (CTA_H_SERIAL | CTA_H_BACKGROUND))) {
                int r = h->fn(call, &err);
                if (r >= 0 && h->finish)
                        r = h->finish(call, &err);
                call_reply(call, r, err);
                call_free(call);
                return;
        }
        if (h->prepare) {
                int r = h->prepare(call, &err);
                if (r < 0) {
                        call_reply(call, r, err);
                        call_free(call);
                        return;
                }
        }
        session_ref(s);
        call->next_inflight = s->inflight;
        s->inflight = call;
        if (h->flags & CTA_H_SERIAL) {
                s->serial_busy = true;
                cta_conn_pause_read(s->conn, true);
        }
        if (cta_job_spawn(s->d, job_work, job_done, call) < 0) {
                /* Complete it here as a failed run: same reply and cleanup path. */
                call->result = cta_error_set(&call->err, CTA_E_TOO_MANY, 0,
                                             "too many operations in progress on this node");
                job_done(call);
        }
}

static void handle_frame(struct cta_session *s, const char *frame, size_t len)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_req *req = NULL;

        if (cta_req_parse(frame, len, &req, &err) < 0) {
                log_info("client %s: bad packet: %s", cta_conn_peer(s->conn), cta_error_msg(err));
                send_error(s, NULL, "system", cta_error_code(err), cta_error_msg(err));
                return;
        }
        const char *op = req->op ? req->op : (req->target ? req->target : "system");
        if (!req->op_node) {
                send_error(s, req, op, CTA_E_PROTO, "the packet has no data/<operator> element");
                goto out;
        }
        if (req->target && !streq(req->target, req->op) &&
            !(streq(req->target, "system") && streq(req->op, "system"))) {
                _cleanup_free_ char *t = cta_sanitize(req->target, 64);
                _cleanup_free_ char *o = cta_sanitize(req->op, 64);
                _cleanup_free_ char *m = cta_xasprintf(
                        "the target '%s' does not match the data element '%s'", t, o);
                send_error(s, req, "system", CTA_E_PROTO, m);
                goto out;
        }
        const char *cop = canonical_op(op);
        /* Before login only the pre-auth calls exist: an anonymous client
         * learns nothing about which operators and calls this node has. */
        const struct cta_handler *pre = req->call ? handler_find(cop, req->call) : NULL;
        if (!s->logged_in && !(pre && (pre->flags & CTA_H_PREAUTH))) {
                _cleanup_free_ char *o = cta_sanitize(op, 64);
                _cleanup_free_ char *m = cta_xasprintf("%s/%s requires login (system/login)", o,
                                                       req->call ? req->call : "?");
                send_error(s, req, op_known(cop) ? op : "system", CTA_E_NOT_LOGGED_IN, m);
                goto out;
        }
        if (!op_known(cop)) {
                _cleanup_free_ char *o = cta_sanitize(op, 64);
                _cleanup_free_ char *m = cta_xasprintf("unknown operator '%s'", o);
                send_error(s, req, "system", CTA_E_UNKNOWN_OPERATOR, m);
                goto out;
        }
        if (!req->call) {
                send_error(s, req, op, CTA_E_BAD_PARAM, "the operator element names no call");
                goto out;
        }
        const struct cta_handler *h = handler_find(cop, req->call);
        if (!h) {
                _cleanup_free_ char *c = cta_sanitize(req->call, 64);
                _cleanup_free_ char *m = cta_xasprintf("operator '%s' has no call '%s'", op, c);
                send_error(s, req, op, CTA_E_UNKNOWN_CALL, m);
                goto out;
        }
        if (!(h->flags & CTA_H_PREAUTH) && !s->logged_in) {
                _cleanup_free_ char *m = cta_xasprintf("%s/%s requires login (system/login)", op,
                                                       h->call);
                send_error(s, req, op, CTA_E_NOT_LOGGED_IN, m);
                goto out;
        }
        if (!(h->flags & (CTA_H_PREAUTH | CTA_H_ANYUSER)) && !s->is_admin) {
                _cleanup_free_ char *m = cta_xasprintf(
                        "access denied: %s/%s needs root or a member of group '%s'", op, h->call,
                        s->d->cfg->admin_group);
                send_error(s, req, op, CTA_E_ACCESS_DENIED, m);
                goto out;
        }

        struct cta_call *call = cta_xcalloc(1, sizeof(*call));
        call->s = s;
        call->req = TAKE_PTR(req);
        call->h = h;
        snprintf(call->op, sizeof(call->op), "%s", op);
        cta_buf_init(&call->out, CTA_REPLY_MAX);
        call->hdr = (struct cta_reply_hdr){
                .id = call->req->id,
                .cookie = call->req->cookie,
                .origin = call->op,
                .client = s->client,
        };
        run_call(s, call);
out:
        cta_req_free(req);
}

/* Bulk data of an open migration stream (docs/migration-protocol.md).
 * false: refused, the connection is closing. */
static bool session_binary(struct cta_session *s, const char *data, size_t len)
{
        /* the framer's count of the frame's bytes still to come: 0 at its end */
        if (cta_mig_dst_binary(s, data, len, s->fr->bin_left == 0) == 0)
                return true;
        send_error(s, NULL, "ctamig", CTA_E_MIG_STREAM,
                   "binary frame outside an open migration stream");
        cta_conn_close_after_flush(s->conn);
        return false;
}

static void session_pump(struct cta_session *s)
{
        while (!s->serial_busy && !s->closed && !cta_conn_is_closed(s->conn)) {
                enum cta_frame_kind kind;
                const char *frame;
                size_t len;
                int r = cta_framer_next_any(s->fr, &kind, &frame, &len);
                if (r == 0)
                        break;
                if (r < 0) {
                        send_error(s, NULL, "system", -r == CTA_E_PROTO ? CTA_E_PROTO
                                                                         : CTA_E_FRAME_TOO_LARGE,
                                   -r == CTA_E_PROTO
                                           ? "binary frame outside a migration stream"
                                           : "packet is larger than the limit for this connection");
                        cta_conn_close_after_flush(s->conn);
                        break;
                }
                if (kind == CTA_FRAME_BINARY) {
                        if (!session_binary(s, frame, len))
                                break;
                        continue;
                }
                handle_frame(s, frame, len);
        }
}

/* ---- connection callbacks --------------------------------------------- */

static void on_open(struct cta_conn *c)
{
        struct cta_daemon *d = cta_conn_listener_data(c);
        struct cta_session *s = cta_xcalloc(1, sizeof(*s));

        s->d = d;
        s->conn = cta_conn_ref(c);
        s->refs = 1;
        s->fr = cta_xcalloc(1, sizeof(*s->fr));
        cta_framer_init(s->fr, d->cfg->frame_max_prelogin);
        snprintf(s->client, sizeof(s->client), "vzclient%llu-%s",
                 (unsigned long long)++d->client_counter, d->node_eid);
        s->next = d->sessions;
        d->sessions = s;
        cta_conn_set_data(c, s);
        cta_conn_set_idle_timeout(c, d->cfg->idle_timeout_prelogin_s * 1000);
        log_debug("client %s connected as %s (%s)", cta_conn_peer(c), s->client,
                  cta_conn_is_tls(c) ? "tls" : "plain");

        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(CTA_REPLY_MAX);
        if (cta_reply_greeting_frame(&b, s->client, CTA_VERSION) == 0)
                send_frame(s, &b);
}

static void on_data(struct cta_conn *c, const char *data, size_t len)
{
        struct cta_session *s = cta_conn_get_data(c);
        if (!s || s->closed)
                return;
        /* The middle of a binary frame goes to the stream without a stop in
         * the framer's buffer. */
        for (size_t k; len && (k = cta_framer_bin_direct(s->fr, len)) > 0; data += k, len -= k)
                if (!session_binary(s, data, k))
                        return;
        if (!len)
                return;
        if (cta_framer_feed(s->fr, data, len) < 0) {
                send_error(s, NULL, "system", CTA_E_FRAME_TOO_LARGE,
                           "packet is larger than the limit for this connection");
                cta_conn_close_after_flush(c);
                return;
        }
        session_pump(s);
}

/* The middle of a binary frame of an open stream is read straight into the stream's
 * queue (one copy less than on_data's buffer; at least a TLS record's room, else the
 * usual way, which grows the queue). */
#define READ_INTO_MIN (16u * 1024)

static size_t on_read_into(struct cta_conn *c, void **buf)
{
        struct cta_session *s = cta_conn_get_data(c);
        if (!s || s->closed)
                return 0;
        size_t want = cta_framer_bin_pending(s->fr);
        if (!want)
                return 0;
        size_t len;
        *buf = cta_mig_dst_binary_span(s, READ_INTO_MIN < want ? READ_INTO_MIN : want, &len);
        return *buf ? (len < want ? len : want) : 0;
}

static void on_data_into(struct cta_conn *c, size_t n)
{
        struct cta_session *s = cta_conn_get_data(c);
        size_t k = cta_framer_bin_direct(s->fr, n); /* == n: no more than pending */
        cta_mig_dst_binary_commit(s, k, s->fr->bin_left == 0);
}

static void on_idle(struct cta_conn *c)
{
        struct cta_session *s = cta_conn_get_data(c);
        if (!s || s->closed)
                return;
        /* A connection with a long request running is not idle. */
        if (s->inflight)
                return;
        send_error(s, NULL, "system", CTA_E_IDLE, "connection idle for too long, closing");
        cta_conn_close_after_flush(c);
}

static void on_close(struct cta_conn *c)
{
        struct cta_session *s = cta_conn_get_data(c);
        if (!s)
                return;
        s->closed = true;
        /* Requests still running see the closed connection through
         * cta_call_cancelled() and stop; their replies are dropped. */
        for (struct cta_call *call = s->inflight; call; call = call->next_inflight)
                if (!(call->h->flags & CTA_H_DETACHED))
                        atomic_store(&call->cancelled, true);
        /* What the session leaves half done is undone now, or, while a serial call still
         * works on it (a reset is seen even while that call pauses our reads), when that
         * call ends (job_done): never under it. */
        if (s->serial_busy)
                s->end_deferred = true;
        else
                cta_mig_dst_session_closed(s);
        cta_conn_set_data(c, NULL);
        log_debug("client %s (%s) disconnected", cta_conn_peer(c), s->client);
        session_unref(s);
}

static const struct cta_conn_ops server_ops = {
        .on_open = on_open,
        .on_data = on_data,
        .read_into = on_read_into,
        .on_data_into = on_data_into,
        .on_idle = on_idle,
        .on_close = on_close,
};

void cta_server_broadcast(struct cta_daemon *d, const char *name, const struct cta_buf *frame)
{
        for (struct cta_session *s = d->sessions; s; s = s->next) {
                if (s->closed || !s->logged_in)
                        continue;
                for (size_t i = 0; i < s->nsubs; i++)
                        if (streq(s->subs[i], name)) {
                                send_frame(s, frame);
                                break;
                        }
        }
}

/* Called by system/login's finish step: raise the limits for a session. */
void cta_server_session_logged_in(struct cta_session *s);
void cta_server_session_logged_in(struct cta_session *s)
{
        cta_framer_set_max(s->fr, s->d->cfg->frame_max);
        /* Binary frames carry migration streams between logged-in agents. */
        s->fr->binary_ok = s->is_admin;
        cta_conn_set_idle_timeout(s->conn, s->d->cfg->idle_timeout_s * 1000);
}

int cta_server_start(struct cta_daemon *d, char ret_tls[80], char ret_plain[80],
                     struct cta_error **err)
{
        int r = cta_listen(d->loop, d->cfg->listen, d->tls, &server_ops, d, ret_tls, &d->tls_ls,
                           err);
        if (r < 0)
                return cta_error_wrap(err, "TLS listener on '%s'", d->cfg->listen);
        cta_listener_set_handshake_timeout(d->tls_ls, d->cfg->handshake_timeout_s * 1000);
        cta_listener_set_max_conns(d->tls_ls, (unsigned)d->cfg->max_connections);
        ret_plain[0] = '\0';
        if (d->cfg->plain_listen) {
                r = cta_listen(d->loop, d->cfg->plain_listen, NULL, &server_ops, d, ret_plain,
                               &d->plain_ls, err);
                if (r < 0)
                        return cta_error_wrap(err, "plain listener on '%s'",
                                              d->cfg->plain_listen);
                cta_listener_set_max_conns(d->plain_ls, (unsigned)d->cfg->max_connections);
                if (!cta_addr_is_loopback(d->cfg->plain_listen))
                        log_warning("plain listener on %s is reachable from the network: "
                                    "passwords cross it unencrypted (plain_open = yes)",
                                    ret_plain);
        }
        return 0;
}

void cta_server_stop(struct cta_daemon *d)
{
        d->tls_ls = cta_listener_free(d->tls_ls);
        d->plain_ls = cta_listener_free(d->plain_ls);
}

/* ---- job threads ------------------------------------------------------- */

struct job {
        struct cta_daemon *d;
        void (*work)(void *);
        void (*done)(void *);
        void *arg;
};

static void *job_main(void *p)
{
        struct job *j = p;
        j->work(j->arg);
        atomic_fetch_sub(&j->d->jobs, 1);
        cta_loop_post(j->d->loop, j->done, j->arg);
        free(j);
        return NULL;
}

int cta_job_spawn(struct cta_daemon *d, void (*work)(void *), void (*done)(void *), void *arg)
{
        pthread_attr_t attr;
        pthread_t t;

        if (atomic_fetch_add(&d->jobs, 1) >= (int)d->cfg->max_jobs) {
                atomic_fetch_sub(&d->jobs, 1);
                return -CTA_E_TOO_MANY;
        }
        struct job *j = cta_xmalloc(sizeof(*j));
        *j = (struct job){ d, work, done, arg };
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* Job threads do not need the default 8 MiB stack. */
        pthread_attr_setstacksize(&attr, 1u << 20);
        int r = pthread_create(&t, &attr, job_main, j);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                free(j);
                atomic_fetch_sub(&d->jobs, 1);
                return -CTA_E_TOO_MANY;
        }
        return 0;
}
