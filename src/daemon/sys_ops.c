/*
 * The system operator: get_realm, login, ping, get_version, get_eid,
 * generate_pass, cancel, subscribe, unsubscribe.
 */
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cta_config.h"
#include "daemon/auth.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "net/conn.h"
#include "net/tls.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

#define CTA_REALM_SYSTEM "00000000-0000-0000-0000-000000000000"
#define CTA_REALM_ONETIME "00000000-0000-0000-0000-000000000002"
#define CTA_MAX_SUBSCRIPTIONS 32

void cta_server_session_logged_in(struct cta_session *s);

static int sys_ping(struct cta_call *call, struct cta_error **err)
{
        return 0;
}

static int sys_get_realm(struct cta_call *call, struct cta_error **err)
{
        cta_buf_reset(&call->out);
        int r = cta_reply_realms_frame(&call->out, &call->hdr);
        return r < 0 ? cta_error_set(err, -r, 0, "build the realm list") : 0;
}

static int sys_get_version(struct cta_call *call, struct cta_error **err)
{
        int r = cta_reply_text_frame(&call->out, &call->hdr, "version",
                                     "vzagent-4.0.0 ctagent/" CTA_VERSION);
        return r < 0 ? cta_error_set(err, -r, 0, "build the version reply") : 0;
}

static int sys_get_eid(struct cta_call *call, struct cta_error **err)
{
        int r = cta_reply_text_frame(&call->out, &call->hdr, "eid", call->s->d->node_eid);
        return r < 0 ? cta_error_set(err, -r, 0, "build the eid reply") : 0;
}

/* ---- login ------------------------------------------------------------- */

struct login_ctx {
        struct cta_login in;
        char peer_addr[64];
        char peer_fp[CTA_TLS_FINGERPRINT_MAX]; /* the client's certificate, "" for none */
        uint64_t delay_ms;
        bool one_time;
        bool by_cert;
        struct cta_user_info info;
};

static void login_ctx_free(void *p)
{
        struct login_ctx *l = p;
        if (l)
                explicit_bzero(l->in.password, sizeof(l->in.password));
        free(l);
}

/* Job thread: the slow part (delay, PAM, one-time pass). */
static int sys_login_work(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct login_ctx *l = call->ctx;
        int r;

        if (l->delay_ms)
                usleep((useconds_t)(l->delay_ms * 1000));
        if (strcasecmp(l->in.who.realm, CTA_REALM_ONETIME) == 0) {
                if (!cta_uuid_valid(l->in.who.name)) {
                        cta_ratelimit_fail(d->rl, l->peer_addr, cta_now_ms());
                        return cta_error_set(err, CTA_E_AUTH_FAILED, 0,
                                             "login failed: the one-time pass is unknown, "
                                             "used or expired");
                }
                char name[37];
                for (size_t i = 0; i < sizeof(name); i++)
                        name[i] = (char)tolower((unsigned char)l->in.who.name[i]);
                r = cta_store_pass_consume(d->store, name, (int64_t)time(NULL), err);
                if (r < 0) {
                        cta_ratelimit_fail(d->rl, l->peer_addr, cta_now_ms());
                        log_warning("failed one-time login from %s: %s", l->peer_addr,
                                    cta_error_msg(*err));
                        cta_error_free(*err);
                        *err = NULL;
                        return cta_error_set(err, CTA_E_AUTH_FAILED, 0,
                                             "login failed: the one-time pass is unknown, "
                                             "used or expired");
                }
                l->one_time = true;
                return 0;
        }
        if ((!l->in.has_password || !l->in.password[0]) && l->peer_fp[0]) {
                /* No password, and a certificate: the certificate must be listed for the
                 * user. The account checks still run. */
                _cleanup_free_ char *path =
                        d->cfg->authorized_clients
                                ? cta_xstrdup(d->cfg->authorized_clients)
                                : cta_xasprintf("%s/authorized_clients", d->cfg->state_dir);
                r = cta_auth_cert(path, l->peer_fp, l->in.who.name, err);
                if (r >= 0)
                        r = cta_auth_pam_account(d->cfg->pam_service, l->in.who.name, err);
                l->by_cert = true;
        } else {
                r = cta_auth_pam(d->cfg->pam_service, l->in.who.name, l->in.password, err);
        }
        if (r >= 0)
                r = cta_auth_user_info(l->in.who.name, d->cfg->admin_group, &l->info, err);
        if (r < 0) {
                _cleanup_free_ char *who = cta_sanitize(l->in.who.name, 64);
                cta_ratelimit_fail(d->rl, l->peer_addr, cta_now_ms());
                log_warning("failed login for '%s' from %s: %s", who, l->peer_addr,
                            cta_error_msg(*err));
                /* One message for every cause: never tell whether the user exists. */
                cta_error_free(*err);
                *err = NULL;
                return cta_error_set(err, CTA_E_AUTH_FAILED, 0, "%s",
                                     l->by_cert ? "login failed: wrong user name, or the "
                                                  "client certificate may not log in as it"
                                                : "login failed: wrong user name or password");
        }
        return 0;
}

/* Loop thread: bookkeeping and the token reply. */
static int sys_login_finish(struct cta_call *call, struct cta_error **err)
{
        struct cta_session *s = call->s;
        struct login_ctx *l = call->ctx;
        int r;

        if (call->result < 0)
                return call->result;
        cta_ratelimit_success(s->d->rl, l->peer_addr);
        s->logged_in = true;
        s->one_time = l->one_time;
        /* A one-time pass is what a peer agent uses to drive a migration: it
         * acts with the node's full management rights, once. */
        s->is_admin = l->one_time ? true : l->info.is_admin;
        s->uid = l->one_time ? 0 : l->info.uid;
        snprintf(s->user, sizeof(s->user), "%s", l->in.who.name);
        cta_server_session_logged_in(s);
        log_notice("client %s (%s) logged in as %s%s%s%s%s", cta_conn_peer(s->conn), s->client,
                   l->one_time ? "one-time pass " : "", s->user,
                   l->by_cert ? " with certificate " : "", l->by_cert ? l->peer_fp : "",
                   s->is_admin ? "" : " (not an administrator)");
        if (l->one_time)
                r = cta_reply_token_frame(&call->out, &call->hdr, s->user, 0, NULL, 0);
        else
                r = cta_reply_token_frame(&call->out, &call->hdr, s->user, l->info.uid,
                                          l->info.groups, (size_t)l->info.ngroups);
        return r < 0 ? cta_error_set(err, -r, 0, "build the token reply") : 0;
}

static int sys_login_prepare(struct cta_call *call, struct cta_error **err)
{
        struct cta_session *s = call->s;
        struct login_ctx *l = cta_xcalloc(1, sizeof(*l));
        int r;

        call->ctx = l;
        call->ctx_free = login_ctx_free;
        if (s->logged_in)
                return cta_error_set(err, CTA_E_ALREADY_LOGGED_IN, 0,
                                     "this connection is already logged in as %s", s->user);
        r = cta_req_parse_login(call->req->call_node, &l->in, err);
        if (r < 0)
                return r;
        if (strcasecmp(l->in.who.realm, CTA_REALM_SYSTEM) != 0 &&
            strcasecmp(l->in.who.realm, CTA_REALM_ONETIME) != 0) {
                _cleanup_free_ char *rl = cta_sanitize(l->in.who.realm, 40);
                return cta_error_set(err, CTA_E_UNKNOWN_REALM, 0,
                                     "unknown realm '%s' (system/get_realm lists them)", rl);
        }
        if (!l->in.who.has_name || !l->in.who.name[0])
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "login: name is missing");
        snprintf(l->peer_addr, sizeof(l->peer_addr), "%s", cta_conn_peer_addr(s->conn));
        snprintf(l->peer_fp, sizeof(l->peer_fp), "%s", cta_conn_peer_fingerprint(s->conn));
        l->delay_ms = cta_ratelimit_delay_ms(s->d->rl, l->peer_addr, cta_now_ms());
        if (l->delay_ms > s->d->cfg->login_delay_max_ms)
                l->delay_ms = s->d->cfg->login_delay_max_ms;
        return 0;
}

/* ---- generate_pass ------------------------------------------------------ */

static int sys_generate_pass(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        char name[37];
        int r;

        if (call->req->dst_host && !streq(call->req->dst_host, d->node_eid)) {
                _cleanup_free_ char *h = cta_sanitize(call->req->dst_host, 64);
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "generate_pass: dst/host '%s' is not this node (%s); "
                                     "call generate_pass on the node itself",
                                     h, d->node_eid);
        }
        (void)cta_store_pass_purge(d->store, (int64_t)time(NULL), NULL);
        cta_uuid_new(name);
        r = cta_store_pass_add(d->store, name,
                               (int64_t)time(NULL) + (int64_t)d->cfg->one_time_pass_ttl_s, err);
        if (r < 0)
                return cta_error_wrap(err, "generate_pass");
        log_info("one-time pass issued to %s (%s), valid %llu s", call->s->user,
                 cta_conn_peer(call->s->conn), (unsigned long long)d->cfg->one_time_pass_ttl_s);
        r = cta_reply_pass_frame(&call->out, &call->hdr, name);
        return r < 0 ? cta_error_set(err, -r, 0, "build the pass reply") : 0;
}

/* ---- cancel, subscribe ---------------------------------------------------- */

static int sys_cancel(struct cta_call *call, struct cta_error **err)
{
        struct cta_cancel c;
        int r = cta_req_parse_cancel(call->req->call_node, &c, err);
        if (r < 0)
                return r;
        if (c.global && !call->s->is_admin)
                return cta_error_set(err, CTA_E_ACCESS_DENIED, 0,
                                     "cancel: only administrators may cancel globally");
        /* A message id names a request of this connection; with `global`
         * any connection's (ids are then expected to be unique). */
        for (struct cta_session *s = call->s->d->sessions; s; s = s->next) {
                if (s != call->s && !c.global)
                        continue;
                for (struct cta_call *o = s->inflight; o; o = o->next_inflight) {
                        if (!o->req->id || !streq(o->req->id, c.message_id))
                                continue;
                        if (c.target[0] && !streq(c.target, o->op))
                                continue;
                        atomic_store(&o->cancelled, true);
                        log_notice("client %s cancelled request %s (%s/%s)",
                                   cta_conn_peer(call->s->conn), c.message_id, o->op,
                                   o->h->call);
                        return 0;
                }
        }
        _cleanup_free_ char *id = cta_sanitize(c.message_id, 64);
        return cta_error_set(err, CTA_E_BAD_PARAM, 0, "cancel: no running request with id '%s'",
                             id);
}

static int sys_subscribe(struct cta_call *call, struct cta_error **err)
{
        struct cta_session *s = call->s;
        struct cta_subscribe sub;
        int r = cta_req_parse_subscribe(call->req->call_node, &sub, err);
        if (r < 0)
                return r;
        bool add = streq(call->req->call, "subscribe");
        for (size_t i = 0; i < sub.n; i++) {
                size_t j;
                for (j = 0; j < s->nsubs; j++)
                        if (streq(s->subs[j], sub.names[i]))
                                break;
                if (add && j == s->nsubs) {
                        if (s->nsubs >= CTA_MAX_SUBSCRIPTIONS)
                                return cta_error_set(err, CTA_E_TOO_MANY, 0,
                                                     "at most %d subscriptions per connection",
                                                     CTA_MAX_SUBSCRIPTIONS);
                        s->subs = cta_xrealloc(s->subs, (s->nsubs + 1) * sizeof(*s->subs));
                        s->subs[s->nsubs++] = cta_xstrdup(sub.names[i]);
                } else if (!add && j < s->nsubs) {
                        free(s->subs[j]);
                        s->subs[j] = s->subs[--s->nsubs];
                }
        }
        return 0;
}

/* Calls of the vendor's system operator that ctagent does not implement:
 * named so that clients get "not implemented" rather than "unknown call". */
static int sys_not_implemented(struct cta_call *call, struct cta_error **err)
{
        return cta_error_set(err, CTA_E_NOT_IMPLEMENTED, 0,
                             "system/%s is not implemented by ctagent", call->h->call);
}

const struct cta_handler cta_system_handlers[] = {
        { "system", "get_realm", CTA_H_PREAUTH, sys_get_realm, NULL, NULL },
        { "system", "login", CTA_H_PREAUTH | CTA_H_SERIAL, sys_login_work, sys_login_finish,
          sys_login_prepare },
        { "system", "ping", CTA_H_PREAUTH, sys_ping, NULL, NULL },
        { "system", "get_version", CTA_H_PREAUTH, sys_get_version, NULL, NULL },
        { "system", "get_eid", CTA_H_ANYUSER, sys_get_eid, NULL, NULL },
        { "system", "generate_pass", 0, sys_generate_pass, NULL, NULL },
        { "system", "cancel", CTA_H_ANYUSER, sys_cancel, NULL, NULL },
        { "system", "subscribe", CTA_H_ANYUSER, sys_subscribe, NULL, NULL },
        { "system", "unsubscribe", CTA_H_ANYUSER, sys_subscribe, NULL, NULL },
        { "system", "get_state", 0, sys_not_implemented, NULL, NULL },
        { "system", "get_configuration", 0, sys_not_implemented, NULL, NULL },
        { "system", "get_plugins", 0, sys_not_implemented, NULL, NULL },
        { "system", "connect", 0, sys_not_implemented, NULL, NULL },
        { "system", "read_block", 0, sys_not_implemented, NULL, NULL },
        { "system", "write_block", 0, sys_not_implemented, NULL, NULL },
        { NULL, NULL, 0, NULL, NULL, NULL },
};
