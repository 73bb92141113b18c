/*
 * The vzaenvm operator: containers on this node.
 *
 * The registry (store) is the node's truth about which containers exist;
 * liblxc (through src/ct) is the truth about which run. Every change is
 * written to the registry before and after it is made on disk, so a crash
 * in between is visible at the next start and reconciled there
 * (reconcile()). Operations on one container are serialized by a per-eid
 * lock; a second operation gets CTA_E_BUSY.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ct/ct.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/envm.h"
#include "net/conn.h"
#include "net/loop.h"
#include "proto/envm/envm.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

#define CTA_VEID_MIN 100
#define CTA_STOP_TIMEOUT_S 60

struct cta_envm {
        struct cta_ct_backend *ct;
        char node_id[CTA_CT_NODE_ID_MAX + 1];
        char *private_root; /* <state_dir>/private */
        char *lxc_root;
        pthread_mutex_t mu;
        pthread_cond_t unlocked; /* (CLOCK_MONOTONIC) */
        struct held {
                char eid[37];
                bool brief; /* the watch's: a refresh, released in moments */
        } *locked;
        size_t nlocked;
        atomic_long event_count;
};

/* ---- per-container locks ------------------------------------------------ */

/* How long an operation waits for a lock the watch holds (one LXC query and one registry
 * write) before it answers busy. */
#define CTA_ENVM_BRIEF_WAIT_MS 30000u

static struct held *held_find(struct cta_envm *e, const char *eid)
{
        for (size_t i = 0; i < e->nlocked; i++)
                if (strcasecmp(e->locked[i].eid, eid) == 0)
                        return &e->locked[i];
        return NULL;
}

static int lock_as(struct cta_daemon *d, const char *eid, bool brief, struct cta_error **err)
{
        struct cta_envm *e = d->envm;
        struct held *h;
        struct timespec until;
        int r = 0;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += CTA_ENVM_BRIEF_WAIT_MS / 1000;
        pthread_mutex_lock(&e->mu);
        /* An operation never fails because the watch was fixing the same row (a busy
         * answer the client could not explain); the loop thread never waits. */
        while ((h = held_find(e, eid)) && h->brief && !brief &&
               !cta_loop_in_loop_thread(d->loop))
                if (pthread_cond_timedwait(&e->unlocked, &e->mu, &until) == ETIMEDOUT)
                        break;
        if ((h = held_find(e, eid))) {
                r = cta_error_set(err, CTA_E_BUSY, 0,
                                  "container %s is busy with another operation", eid);
                goto out;
        }
        e->locked = cta_xrealloc(e->locked, (e->nlocked + 1) * sizeof(*e->locked));
        h = &e->locked[e->nlocked++];
        snprintf(h->eid, sizeof(h->eid), "%s", eid);
        h->brief = brief;
out:
        pthread_mutex_unlock(&e->mu);
        return r;
}

int cta_envm_lock(struct cta_daemon *d, const char *eid, struct cta_error **err)
{
        return lock_as(d, eid, false, err);
}

int cta_envm_lock_brief(struct cta_daemon *d, const char *eid)
{
        return lock_as(d, eid, true, NULL);
}

void cta_envm_unlock(struct cta_daemon *d, const char *eid)
{
        struct cta_envm *e = d->envm;
        pthread_mutex_lock(&e->mu);
        struct held *h = held_find(e, eid);
        if (h) {
                if (h->brief)
                        pthread_cond_broadcast(&e->unlocked);
                *h = e->locked[--e->nlocked];
        }
        pthread_mutex_unlock(&e->mu);
}

/* ---- the extra config kept opaque in the registry ---------------------- */

/* Fields that have no column of their own, kept as "key=value" lines. */
struct ct_extra {
        size_t n_ips;
        char ips[CTA_ENV_MAX_IPS][19];
        uint64_t mem_bytes;
        unsigned cpu_percent;
};

static void extra_parse(const char *text, struct ct_extra *x)
{
        memset(x, 0, sizeof(*x));
        if (!text)
                return;
        _cleanup_free_ char *copy = cta_xstrdup(text);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                uint64_t v;
                if (strncmp(line, "ip=", 3) == 0 && x->n_ips < CTA_ENV_MAX_IPS)
                        snprintf(x->ips[x->n_ips++], sizeof(x->ips[0]), "%s", line + 3);
                else if (strncmp(line, "mem=", 4) == 0 && cta_parse_u64(line + 4, UINT64_MAX, &v) == 0)
                        x->mem_bytes = v;
                else if (strncmp(line, "cpu=", 4) == 0 && cta_parse_u64(line + 4, 100000, &v) == 0)
                        x->cpu_percent = (unsigned)v;
        }
}

static char *extra_format(const struct ct_extra *x)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        for (size_t i = 0; i < x->n_ips; i++)
                (void)cta_buf_printf(&b, "ip=%s\n", x->ips[i]);
        if (x->mem_bytes)
                (void)cta_buf_printf(&b, "mem=%" PRIu64 "\n", x->mem_bytes);
        if (x->cpu_percent)
                (void)cta_buf_printf(&b, "cpu=%u\n", x->cpu_percent);
        return cta_buf_steal(&b, NULL);
}

static void spec_from_row(const struct cta_ct_row *row, const struct ct_extra *x,
                          struct cta_ct_spec *s)
{
        memset(s, 0, sizeof(*s));
        s->veid = row->veid;
        s->hostname = row->hostname;
        s->private_path = row->private_path;
        for (size_t i = 0; i < x->n_ips; i++)
                s->ipv4[i] = x->ips[i];
        s->n_ipv4 = x->n_ips;
        s->mem_limit_bytes = x->mem_bytes;
        s->cpu_limit_percent = x->cpu_percent;
}

/* The address part of "a.b.c.d/nn". */
static bool same_ip(const char *a, const char *b)
{
        size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
        return la == lb && strncmp(a, b, la) == 0;
}

/* Refuse addresses that another container of this node already uses. */
static int check_ips(struct cta_daemon *d, const char *self_eid, const struct ct_extra *x,
                     struct cta_error **err)
{
        struct cta_ct_row *rows = NULL;
        size_t n = 0;
        const char *bridge = d->cfg->bridge_cidr;

        for (size_t i = 0; bridge && i < x->n_ips; i++)
                if (same_ip(x->ips[i], bridge))
                        return cta_error_set(err, CTA_E_IP_IN_USE, 0,
                                             "address %.*s is the node's bridge address",
                                             (int)strcspn(x->ips[i], "/"), x->ips[i]);
        int r = cta_store_ct_list(d->store, &rows, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < x->n_ips && r == 0; i++) {
                for (size_t j = i + 1; j < x->n_ips; j++)
                        if (same_ip(x->ips[i], x->ips[j]))
                                r = cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                                  "address %s is listed twice", x->ips[i]);
                for (size_t k = 0; k < n && r == 0; k++) {
                        if (self_eid && strcasecmp(rows[k].eid, self_eid) == 0)
                                continue;
                        struct ct_extra o;
                        extra_parse(rows[k].config_json, &o);
                        for (size_t m = 0; m < o.n_ips; m++)
                                if (same_ip(x->ips[i], o.ips[m])) {
                                        r = cta_error_set(err, CTA_E_IP_IN_USE, 0,
                                                          "address %.*s is already used by "
                                                          "container %s (veid %" PRIu64 ")",
                                                          (int)strcspn(x->ips[i], "/"),
                                                          x->ips[i], rows[k].eid, rows[k].veid);
                                        break;
                                }
                }
        }
        cta_ct_rows_free(rows, n);
        return r;
}

/* ---- status events ------------------------------------------------------ */

struct event_post {
        struct cta_daemon *d;
        struct cta_buf frame;
};

static void event_deliver(void *p)
{
        struct event_post *ev = p;
        cta_server_broadcast(ev->d, "env_status_subscription", &ev->frame);
        cta_buf_done(&ev->frame);
        free(ev);
}

/* Thread-safe: build an env_status_event and hand it to the loop thread. */
void cta_envm_emit(struct cta_daemon *d, const char *eid, int new_state, int new_tr,
                   int old_state, int old_tr)
{
        struct event_post *ev = cta_xcalloc(1, sizeof(*ev));
        char id[37];

        if (new_state == old_state && new_tr == old_tr) {
                free(ev);
                return;
        }
        ev->d = d;
        cta_buf_init(&ev->frame, 1 << 20);
        cta_uuid_new(id);
        long count = atomic_fetch_add(&d->envm->event_count, 1) + 1;
        if (cta_event_env_status_frame(&ev->frame, eid, d->node_eid,
                                       (struct cta_env_status){ new_state, new_tr },
                                       (struct cta_env_status){ old_state, old_tr }, count, id,
                                       "vzaenvm") < 0) {
                cta_buf_done(&ev->frame);
                free(ev);
                return;
        }
        cta_loop_post(d->loop, event_deliver, ev);
}

/* Record a state change in the registry and announce it. */
int cta_envm_set_state(struct cta_daemon *d, struct cta_ct_row *row, int state, int tr,
                       struct cta_error **err)
{
        int r = cta_store_ct_set_state(d->store, row->eid, state, tr, err);
        if (r < 0)
                return r;
        cta_envm_emit(d, row->eid, state, tr, row->state, row->transition);
        if (state == CTA_CT_RUNNING && tr == CTA_TR_NONE && row->state != CTA_CT_RUNNING)
                cta_envm_watch_kick(d); /* (to watch its new init) */
        row->state = state;
        row->transition = tr;
        return 0;
}

/* The transitions of an operation that holds the container's lock from before it records
 * one until after it clears it: found in a row whose lock the caller holds, one was left
 * by a registry write that failed (creating, destroying and migrating are settled by
 * start-up and the migration journal instead). */
static bool lock_held_transition(int tr)
{
        return tr == CTA_TR_STARTING || tr == CTA_TR_STOPPING || tr == CTA_TR_RESTARTING ||
               tr == CTA_TR_SETTING;
}

/* A row a refresh may fix: not in a transition other than such a leftover, and in a state
 * LXC can contradict (a container only configured has nothing to run). */
static bool row_refreshable(const struct cta_ct_row *row)
{
        if (row->transition != CTA_TR_NONE && !lock_held_transition(row->transition))
                return false;
        return row->state == CTA_CT_RUNNING || row->state == CTA_CT_DOWN ||
               row->state == CTA_CT_MOUNTED;
}

bool cta_envm_row_disagrees(const struct cta_ct_row *row, bool runs)
{
        return row_refreshable(row) && (lock_held_transition(row->transition) ||
                                        runs != (row->state == CTA_CT_RUNNING));
}

int cta_envm_refresh_row(struct cta_daemon *d, struct cta_ct_row *row, struct cta_error **err)
{
        struct cta_ct_row fresh = { 0 };
        enum cta_ct_state now = CTA_CT_UNKNOWN;
        int r = cta_store_ct_get(d->store, row->eid, &fresh, err);
        if (r < 0)
                return r;
        cta_ct_row_done(row);
        *row = fresh;
        if (!row_refreshable(row))
                return 0; /* (without asking LXC) */
        r = cta_ct_state(d->envm->ct, row->veid, &now, err);
        if (r < 0)
                return r;
        bool runs = now == CTA_CT_RUNNING || now == CTA_CT_SUSPENDED;
        if (!cta_envm_row_disagrees(row, runs))
                return 0;
        bool stale = lock_held_transition(row->transition);
        int want = runs ? CTA_CT_RUNNING : row->state == CTA_CT_RUNNING ? CTA_CT_DOWN : row->state;
        if (want != row->state)
                log_notice("container %s (veid %" PRIu64 ") is %s, the registry said %s "
                           "(changed outside the agent); fixed",
                           row->eid, row->veid, cta_ct_state_name(want),
                           cta_ct_state_name(row->state));
        if (stale)
                log_notice("container %s (veid %" PRIu64 "): cleared the transition %d a failed "
                           "registry write left",
                           row->eid, row->veid, row->transition);
        return cta_envm_set_state(d, row, want, CTA_TR_NONE, err);
}

/* ---- lookups ------------------------------------------------------------- */

static int find_row(struct cta_daemon *d, const char *eid, struct cta_ct_row *row,
                    struct cta_error **err)
{
        if (!cta_uuid_valid(eid)) {
                _cleanup_free_ char *s = cta_sanitize(eid, 64);
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "'%s' is not an eid", s);
        }
        int r = cta_store_ct_get(d->store, eid, row, err);
        if (r == -CTA_E_ENV_NOT_FOUND) {
                cta_error_free(*err);
                *err = NULL;
                return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0, "no container with eid %s",
                                     eid);
        }
        return r;
}

static void view_from_row(struct cta_daemon *d, const struct cta_ct_row *row,
                          const struct ct_extra *x, const char **ips, struct cta_env_view *v)
{
        memset(v, 0, sizeof(*v));
        v->eid = row->eid;
        v->parent_eid = d->node_eid;
        v->state = row->state;
        v->transition = row->transition;
        v->name = row->name;
        v->hostname = row->hostname;
        v->description = row->description;
        v->veid = row->veid;
        v->ve_root = row->private_path; /* a directory-backed container is its own root */
        v->ve_private = row->private_path;
        v->os_template = row->os_template;
        v->on_boot = row->on_boot;
        for (size_t i = 0; i < x->n_ips; i++)
                ips[i] = x->ips[i];
        v->n_ips = x->n_ips;
        v->ips = ips;
        v->mem_bytes = x->mem_bytes;
        v->cpu_percent = x->cpu_percent;
}

static int reply_env(struct cta_call *call, const struct cta_ct_row *row, bool config_only,
                     struct cta_error **err)
{
        struct ct_extra x;
        const char *ips[CTA_ENV_MAX_IPS];
        struct cta_env_view v;
        int r;

        extra_parse(row->config_json, &x);
        view_from_row(call->s->d, row, &x, ips, &v);
        cta_buf_reset(&call->out);
        if (config_only)
                r = cta_envm_env_config_frame(&call->out, &call->hdr, &v);
        else
                r = cta_envm_envs_frame(&call->out, &call->hdr, &v, 1, true);
        return r < 0 ? cta_error_set(err, -r, 0, "build the reply") : 0;
}

static void progress(struct cta_call *call, const char *eid, int status)
{
        static const char *const names[] = { "", "started", "processing", "finished", "failed" };
        const char *eids[1] = { eid };
        char op[80];
        snprintf(op, sizeof(op), "vzaenvm.%s", call->h->call);
        struct cta_info_param params[2] = {
                { "op_name", call->h->call },
                { "status", names[status] },
        };
        struct cta_progress p = {
                .template_text = "Operation %op_name% is %status%",
                .params = params,
                .nparams = 2,
                .percent = status == 3 ? 100 : -1,
                .eids = eids,
                .neids = eid ? 1 : 0,
                .op = op,
                .status = status,
                .req_id = call->req->id,
        };
        cta_call_progress(call, &p);
}

/* ---- create -------------------------------------------------------------- */

struct create_ctx {
        struct cta_envm_create_req req;
        char eid[37];
        bool locked;
};

static void create_ctx_free(void *p)
{
        free(p);
}

static int envm_create_prepare(struct cta_call *call, struct cta_error **err)
{
        struct create_ctx *c = cta_xcalloc(1, sizeof(*c));
        call->ctx = c;
        call->ctx_free = create_ctx_free;
        int r = cta_envm_parse_create(call->req->call_node, &c->req, err);
        if (r < 0)
                return r;
        if (c->req.has_eid)
                snprintf(c->eid, sizeof(c->eid), "%s", c->req.eid);
        else
                cta_uuid_new(c->eid);
        for (char *p = c->eid; *p; p++)
                *p = (char)tolower((unsigned char)*p);
        return 0;
}

/* Undo a half-made container: whatever exists is removed, the row last. */
static void create_rollback(struct cta_daemon *d, const struct cta_ct_row *row, bool made_private)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        (void)cta_ct_stop(d->envm->ct, row->veid, true, 0, NULL);
        if (cta_ct_undefine(d->envm->ct, row->veid, &err) < 0)
                log_warning("create rollback of %s: %s", row->eid, cta_error_msg(err));
        if (made_private && cta_ct_private_remove(d->envm->ct, row->private_path, NULL) < 0)
                log_warning("create rollback of %s: private area %s left behind", row->eid,
                            row->private_path);
        (void)cta_store_ct_delete(d->store, row->eid, NULL);
}

static int envm_create(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct create_ctx *c = call->ctx;
        const struct cta_env_config *cfg = &c->req.cfg;
        struct ct_extra x = { 0 };
        struct cta_ct_row row = { 0 };
        struct cta_ct_spec spec;
        _cleanup_free_ char *extra = NULL, *tpl = NULL;
        bool made_private = false;
        int r;

        progress(call, c->eid, 1);
        for (size_t i = 0; i < cfg->n_ips; i++)
                snprintf(x.ips[x.n_ips++], sizeof(x.ips[0]), "%s", cfg->ips[i]);
        x.mem_bytes = cfg->has_mem ? cfg->mem_bytes : 0;
        x.cpu_percent = cfg->has_cpu ? cfg->cpu_percent : 0;
        r = check_ips(d, NULL, &x, err);
        if (r < 0)
                return r;

        snprintf(row.eid, sizeof(row.eid), "%s", c->eid);
        if (cfg->has_veid) {
                row.veid = cfg->veid;
        } else {
                r = cta_store_ct_next_veid(d->store, CTA_VEID_MIN, &row.veid, err);
                if (r < 0)
                        return r;
        }
        char veid_s[24];
        snprintf(veid_s, sizeof(veid_s), "%" PRIu64, row.veid);
        row.name = cfg->has_name && cfg->name[0] ? (char *)cfg->name : NULL;
        row.hostname = cfg->has_hostname ? (char *)cfg->hostname : NULL;
        row.description = cfg->has_description ? (char *)cfg->description : NULL;
        _cleanup_free_ char *priv = cfg->has_ve_private
                                            ? cta_xstrdup(cfg->ve_private)
                                            : cta_xasprintf("%s/%s", d->envm->private_root, veid_s);
        row.private_path = priv;
        row.os_template = cfg->has_os_template ? (char *)cfg->os_template : (char *)"busybox";
        row.on_boot = cfg->has_on_boot && cfg->on_boot;
        extra = extra_format(&x);
        row.config_json = extra;
        /* The row goes in first, in transition "creating": the registry's
         * unique keys decide clashes atomically, and a crash from here on
         * leaves a row that reconcile() recognizes as unfinished. */
        row.state = CTA_CT_CONFIG;
        row.transition = CTA_TR_CREATING;
        r = cta_store_ct_insert(d->store, &row, err);
        if (r < 0)
                return r;
        r = cta_envm_lock(d, row.eid, err);
        if (r < 0) {
                (void)cta_store_ct_delete(d->store, row.eid, NULL);
                return r;
        }
        cta_envm_emit(d, row.eid, CTA_CT_CONFIG, CTA_TR_CREATING, CTA_CT_NONEXISTENT, 0);

        spec_from_row(&row, &x, &spec);
        r = cta_ct_spec_validate(&spec, err);
        if (r >= 0)
                r = cta_ct_template_prepare(d->envm->ct, row.os_template, &tpl, err);
        if (r >= 0) {
                r = cta_ct_private_create(d->envm->ct, row.os_template, row.private_path, err);
                made_private = r >= 0;
        }
        if (r >= 0)
                r = cta_ct_define(d->envm->ct, &spec, err);
        if (r >= 0)
                r = cta_envm_set_state(d, &row, CTA_CT_DOWN, CTA_TR_NONE, err);
        if (r < 0) {
                create_rollback(d, &row, made_private);
                cta_envm_emit(d, row.eid, CTA_CT_NONEXISTENT, 0, CTA_CT_CONFIG, CTA_TR_CREATING);
                cta_envm_unlock(d, row.eid);
                progress(call, row.eid, 4);
                return cta_error_wrap(err, "create container %s", row.eid);
        }
        cta_envm_unlock(d, row.eid);
        log_notice("created container %s (veid %" PRIu64 ") in %s", row.eid, row.veid,
                   row.private_path);
        progress(call, row.eid, 3);
        return reply_env(call, &row, false, err);
}

/* ---- start / stop / restart / destroy ------------------------------------ */

struct eid_ctx {
        struct cta_envm_eid_req req;
};

static int eid_prepare(struct cta_call *call, struct cta_error **err)
{
        struct eid_ctx *c = cta_xcalloc(1, sizeof(*c));
        call->ctx = c;
        call->ctx_free = free;
        return cta_envm_parse_eid_req(call->req->call_node, &c->req, err);
}

int cta_envm_start_row(struct cta_daemon *d, struct cta_ct_row *row, struct cta_error **err)
{
        struct ct_extra x;
        struct cta_ct_spec spec;
        int r;

        if (row->state == CTA_CT_RUNNING)
                return cta_error_set(err, CTA_E_BAD_STATE, 0, "container %s is already running",
                                     row->eid);
        if (row->transition == CTA_TR_MIGRATING)
                return cta_error_set(err, CTA_E_BUSY, 0,
                                     "container %s is being migrated; it starts again when the "
                                     "migration is rolled back",
                                     row->eid);
        if (row->state != CTA_CT_DOWN && row->state != CTA_CT_MOUNTED)
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "container %s cannot start in state %s", row->eid,
                                     cta_ct_state_name(row->state));
        extra_parse(row->config_json, &x);
        spec_from_row(row, &x, &spec);
        r = cta_envm_set_state(d, row, row->state, CTA_TR_STARTING, err);
        if (r < 0)
                return r;
        /* Rewrite the LXC config from the registry: it is the source of truth. */
        r = cta_ct_define(d->envm->ct, &spec, err);
        if (r >= 0)
                r = cta_ct_start(d->envm->ct, row->veid, err);
        if (r < 0) {
                (void)cta_envm_set_state(d, row, CTA_CT_DOWN, CTA_TR_NONE, NULL);
                return cta_error_wrap(err, "start container %s", row->eid);
        }
        r = cta_envm_set_state(d, row, CTA_CT_RUNNING, CTA_TR_NONE, err);
        if (r >= 0)
                log_notice("started container %s (veid %" PRIu64 ")", row->eid, row->veid);
        return r;
}

int cta_envm_stop_row(struct cta_daemon *d, struct cta_ct_row *row, bool force,
                      struct cta_error **err)
{
        int r;

        if (row->state != CTA_CT_RUNNING)
                return cta_error_set(err, CTA_E_BAD_STATE, 0, "container %s is not running",
                                     row->eid);
        r = cta_envm_set_state(d, row, row->state, CTA_TR_STOPPING, err);
        if (r < 0)
                return r;
        r = cta_ct_stop(d->envm->ct, row->veid, force, CTA_STOP_TIMEOUT_S, err);
        if (r < 0) {
                (void)cta_envm_set_state(d, row, CTA_CT_RUNNING, CTA_TR_NONE, NULL);
                return cta_error_wrap(err, "stop container %s", row->eid);
        }
        r = cta_envm_set_state(d, row, CTA_CT_DOWN, CTA_TR_NONE, err);
        if (r >= 0)
                log_notice("stopped container %s (veid %" PRIu64 ")%s", row->eid, row->veid,
                           force ? " (forced)" : "");
        return r;
}

static int do_destroy(struct cta_daemon *d, struct cta_ct_row *row, struct cta_error **err)
{
        int r;

        if (row->state == CTA_CT_RUNNING || row->state == CTA_CT_SUSPENDED)
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "container %s is running: stop it before destroying it",
                                     row->eid);
        r = cta_envm_set_state(d, row, row->state, CTA_TR_DESTROYING, err);
        if (r < 0)
                return r;
        r = cta_ct_undefine(d->envm->ct, row->veid, err);
        if (r >= 0)
                r = cta_ct_private_remove(d->envm->ct, row->private_path, err);
        if (r < 0) {
                (void)cta_envm_set_state(d, row, CTA_CT_DOWN, CTA_TR_NONE, NULL);
                return cta_error_wrap(err, "destroy container %s", row->eid);
        }
        r = cta_store_ct_delete(d->store, row->eid, err);
        if (r < 0)
                return r;
        cta_envm_emit(d, row->eid, CTA_CT_NONEXISTENT, CTA_TR_NONE, row->state, row->transition);
        log_notice("destroyed container %s (veid %" PRIu64 "), removed %s", row->eid, row->veid,
                   row->private_path);
        return 0;
}

static int envm_lifecycle(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct eid_ctx *c = call->ctx;
        struct cta_ct_row row = { 0 };
        const char *what = call->h->call;
        int r;

        r = find_row(d, c->req.eid, &row, err);
        if (r < 0)
                return r;
        r = cta_envm_lock(d, row.eid, err);
        if (r < 0) {
                cta_ct_row_done(&row);
                return r;
        }
        progress(call, row.eid, 1);
        r = cta_envm_refresh_row(d, &row, err);
        if (r < 0) {
                /* (what runs is not known: nothing is done) */
        } else if (streq(what, "start")) {
                r = cta_envm_start_row(d, &row, err);
        } else if (streq(what, "stop")) {
                r = cta_envm_stop_row(d, &row, c->req.force, err);
        } else if (streq(what, "restart")) {
                r = 0;
                if (row.state == CTA_CT_RUNNING)
                        r = cta_envm_stop_row(d, &row, false, err);
                if (r >= 0)
                        r = cta_envm_start_row(d, &row, err);
        } else {
                r = do_destroy(d, &row, err);
        }
        progress(call, row.eid, r < 0 ? 4 : 3);
        cta_envm_unlock(d, row.eid);
        cta_ct_row_done(&row);
        return r;
}

/* ---- set ----------------------------------------------------------------- */

struct set_ctx {
        struct cta_envm_set_req req;
};

static int envm_set_prepare(struct cta_call *call, struct cta_error **err)
{
        struct set_ctx *c = cta_xcalloc(1, sizeof(*c));
        call->ctx = c;
        call->ctx_free = free;
        return cta_envm_parse_set(call->req->call_node, &c->req, err);
}

static int envm_set(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct set_ctx *c = call->ctx;
        const struct cta_env_config *cfg = &c->req.cfg;
        struct cta_ct_row row = { 0 };
        struct ct_extra x;
        struct cta_ct_spec spec;
        int r;

        r = find_row(d, c->req.eid, &row, err);
        if (r < 0)
                return r;
        r = cta_envm_lock(d, row.eid, err);
        if (r < 0)
                goto out_row;
        r = cta_envm_refresh_row(d, &row, err); /* (live limits go to what runs) */
        if (r < 0)
                goto out;
        if (cfg->has_veid && cfg->veid != row.veid) {
                r = cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                  "set cannot change the veid (%" PRIu64 "); use "
                                  "relocator/move semantics, not supported yet",
                                  row.veid);
                goto out;
        }
        if (cfg->has_ve_private && !streq(cfg->ve_private, row.private_path)) {
                r = cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                  "set cannot move the private area of %s", row.eid);
                goto out;
        }
        extra_parse(row.config_json, &x);
        if (cfg->has_ips) {
                x.n_ips = 0;
                for (size_t i = 0; i < cfg->n_ips; i++)
                        snprintf(x.ips[x.n_ips++], sizeof(x.ips[0]), "%s", cfg->ips[i]);
                r = check_ips(d, row.eid, &x, err);
                if (r < 0)
                        goto out;
        }
        if (cfg->has_mem)
                x.mem_bytes = cfg->mem_bytes;
        if (cfg->has_cpu)
                x.cpu_percent = cfg->cpu_percent;
        /* Replace the strings the packet carried; the row owns its strings. */
        if (cfg->has_name) {
                free(row.name);
                row.name = cfg->name[0] ? cta_xstrdup(cfg->name) : NULL;
        }
        if (cfg->has_hostname) {
                free(row.hostname);
                row.hostname = cta_xstrdup(cfg->hostname);
        }
        if (cfg->has_description) {
                free(row.description);
                row.description = cta_xstrdup(cfg->description);
        }
        if (cfg->has_on_boot)
                row.on_boot = cfg->on_boot;
        free(row.config_json);
        row.config_json = extra_format(&x);
        spec_from_row(&row, &x, &spec);
        r = cta_ct_spec_validate(&spec, err);
        if (r < 0)
                goto out;
        r = cta_store_ct_update(d->store, &row, err);
        if (r < 0)
                goto out;
        /* The config applies at the next start; limits also apply live. */
        r = cta_ct_define(d->envm->ct, &spec, err);
        if (r >= 0 && row.state == CTA_CT_RUNNING && (cfg->has_mem || cfg->has_cpu))
                r = cta_ct_apply_limits(d->envm->ct, &spec, err);
        if (r < 0) {
                r = cta_error_wrap(err, "set container %s", row.eid);
                goto out;
        }
        log_notice("updated the config of container %s", row.eid);
        r = reply_env(call, &row, true, err);
out:
        cta_envm_unlock(d, row.eid);
out_row:
        cta_ct_row_done(&row);
        return r;
}

/* ---- get_list / get_info -------------------------------------------------- */

static int envm_get_list(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct cta_envm_list_req q;
        struct cta_ct_row *rows = NULL;
        size_t n = 0, k = 0;
        int r;

        r = cta_envm_parse_get_list(call->req->call_node, &q, err);
        if (r < 0)
                return r;
        r = cta_store_ct_list(d->store, &rows, &n, err);
        if (r < 0)
                return r;
        const char **eids = cta_xcalloc(n ? n : 1, sizeof(*eids));
        for (size_t i = 0; i < n; i++) {
                bool match = q.n_status == 0;
                for (size_t j = 0; j < q.n_status && !match; j++)
                        match = rows[i].state == q.status[j];
                if (match && (!q.has_count || k < q.count))
                        eids[k++] = rows[i].eid;
        }
        r = cta_envm_eids_frame(&call->out, &call->hdr, eids, k);
        free(eids);
        cta_ct_rows_free(rows, n);
        return r < 0 ? cta_error_set(err, -r, 0, "build the reply") : 0;
}

static int envm_get_info(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct cta_envm_info_req q = { 0 };
        struct cta_ct_row *rows = NULL;
        size_t n = 0, k = 0;
        int r;

        r = cta_envm_parse_get_info(call->req->call_node, &q, err);
        if (r < 0)
                return r;
        r = cta_store_ct_list(d->store, &rows, &n, err);
        if (r < 0) {
                cta_envm_info_req_done(&q);
                return r;
        }
        struct cta_env_view *views = cta_xcalloc(n ? n : 1, sizeof(*views));
        struct ct_extra *xs = cta_xcalloc(n ? n : 1, sizeof(*xs));
        const char *(*ips)[CTA_ENV_MAX_IPS] = cta_xcalloc(n ? n : 1, sizeof(*ips));
        for (size_t i = 0; i < n; i++) {
                /* Unknown eids are silently left out, as the vendor's agent does. */
                bool match = q.n_eids == 0;
                for (size_t j = 0; j < q.n_eids && !match; j++)
                        match = strcasecmp(rows[i].eid, q.eids[j]) == 0;
                if (!match)
                        continue;
                extra_parse(rows[i].config_json, &xs[k]);
                view_from_row(d, &rows[i], &xs[k], ips[k], &views[k]);
                k++;
        }
        r = cta_envm_envs_frame(&call->out, &call->hdr, views, k, q.config);
        free(ips);
        free(xs);
        free(views);
        cta_ct_rows_free(rows, n);
        cta_envm_info_req_done(&q);
        return r < 0 ? cta_error_set(err, -r, 0, "build the reply") : 0;
}

static int envm_unavailable(struct cta_call *call, struct cta_error **err)
{
        return cta_error_set(err, CTA_E_NOT_IMPLEMENTED, 0, "vzaenvm/%s is not implemented",
                             call->h->call);
}

#define JOB (CTA_H_SERIAL)
const struct cta_handler cta_envm_handlers[] = {
        { "vzaenvm", "create", JOB, envm_create, NULL, envm_create_prepare },
        { "vzaenvm", "start", JOB, envm_lifecycle, NULL, eid_prepare },
        { "vzaenvm", "stop", JOB, envm_lifecycle, NULL, eid_prepare },
        { "vzaenvm", "restart", JOB, envm_lifecycle, NULL, eid_prepare },
        { "vzaenvm", "destroy", JOB, envm_lifecycle, NULL, eid_prepare },
        { "vzaenvm", "set", JOB, envm_set, NULL, envm_set_prepare },
        { "vzaenvm", "get_list", 0, envm_get_list, NULL, NULL },
        { "vzaenvm", "get_info", 0, envm_get_info, NULL, NULL },
        { "vzaenvm", "suspend", 0, envm_unavailable, NULL, NULL },
        { "vzaenvm", "resume", 0, envm_unavailable, NULL, NULL },
        { "vzaenvm", "mount", 0, envm_unavailable, NULL, NULL },
        { "vzaenvm", "umount", 0, envm_unavailable, NULL, NULL },
        { NULL, NULL, 0, NULL, NULL, NULL },
};

/* ---- start-up: reconcile and on_boot ------------------------------------- */

/* Make the registry agree with the disk and with what LXC runs after a crash
 * or a reboot. Never deletes user data: an orphan private area is reported. */
static int reconcile(struct cta_daemon *d, struct cta_error **err)
{
        struct cta_envm *e = d->envm;
        struct cta_ct_row *rows = NULL;
        uint64_t *running = NULL;
        size_t n = 0, nrun = 0;
        int r;

        r = cta_store_ct_list(d->store, &rows, &n, err);
        if (r < 0)
                return r;
        r = cta_ct_list_running(e->ct, &running, &nrun, err);
        if (r < 0) {
                cta_ct_rows_free(rows, n);
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                struct cta_ct_row *row = &rows[i];
                struct stat st;
                bool runs = cta_u64_in_sorted(row->veid, running, nrun);
                bool has_private = stat(row->private_path, &st) == 0 && S_ISDIR(st.st_mode);

                if (row->transition == CTA_TR_CREATING) {
                        /* The agent died while creating it: finish the rollback. */
                        log_warning("reconcile: container %s was being created when the "
                                    "agent stopped; removing the unfinished container",
                                    row->eid);
                        create_rollback(d, row, true);
                        continue;
                }
                if (!has_private)
                        log_warning("reconcile: container %s (veid %" PRIu64 ") has no "
                                    "private area at %s",
                                    row->eid, row->veid, row->private_path);
                int want = runs ? CTA_CT_RUNNING : CTA_CT_DOWN;
                if (row->state == CTA_CT_CONFIG)
                        want = CTA_CT_CONFIG;
                if (row->state != want || row->transition != CTA_TR_NONE) {
                        log_notice("reconcile: container %s (veid %" PRIu64 ") is %s, the "
                                   "registry said %s%s; fixed",
                                   row->eid, row->veid, cta_ct_state_name(want),
                                   cta_ct_state_name(row->state),
                                   row->transition ? " (in transition)" : "");
                        (void)cta_envm_set_state(d, row, want, CTA_TR_NONE, NULL);
                }
        }
        /* Private areas nobody owns: report, never delete. */
        _cleanup_closedir_ DIR *dir = opendir(e->private_root);
        struct dirent *de;
        while (dir && (de = readdir(dir))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *path = cta_xasprintf("%s/%s", e->private_root, de->d_name);
                bool owned = false;
                for (size_t i = 0; i < n && !owned; i++)
                        owned = streq(rows[i].private_path, path);
                if (!owned)
                        log_warning("reconcile: orphan private area %s has no registry entry; "
                                    "left in place",
                                    path);
        }
        free(running);
        cta_ct_rows_free(rows, n);
        return 0;
}

int cta_envm_init(struct cta_daemon *d, struct cta_error **err)
{
        struct cta_config *cfg = d->cfg;
        struct cta_envm *e = cta_xcalloc(1, sizeof(*e));
        int r;

        pthread_mutex_init(&e->mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&e->unlocked, &ca);
        pthread_condattr_destroy(&ca);
        d->envm = e;
        cta_ct_node_id_from_eid(d->node_eid, e->node_id);
        e->private_root = cta_xasprintf("%s/private", cfg->state_dir);
        r = cta_mkdir_p(e->private_root, 0700, err);
        if (r < 0)
                return r;
        struct cta_ct_node node = {
                .state_dir = cfg->state_dir,
                .node_id = e->node_id,
                .bridge = cfg->bridge,
                .bridge_cidr = cfg->bridge_cidr,
                .template_dir = cfg->template_dir,
        };
        bool fake = cfg->ct_backend && streq(cfg->ct_backend, "fake");
        r = fake ? cta_ct_backend_fake(&node, &e->ct, err) : cta_ct_backend_lxc(&node, &e->ct, err);
        if (r < 0)
                return cta_error_wrap(err, "container backend");
        log_notice("containers: %s backend, node id %s, private areas in %s",
                   cta_ct_backend_kind(e->ct), e->node_id, e->private_root);
        return reconcile(d, err);
}

struct boot_ctx {
        struct cta_daemon *d;
};

static void boot_work(void *p)
{
        struct boot_ctx *b = p;
        struct cta_daemon *d = b->d;
        struct cta_ct_row *rows = NULL;
        size_t n = 0;

        if (cta_store_ct_list(d->store, &rows, &n, NULL) < 0)
                return;
        for (size_t i = 0; i < n && !atomic_load(&d->stopping); i++) {
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                if (!rows[i].on_boot || rows[i].state != CTA_CT_DOWN)
                        continue;
                if (cta_envm_lock(d, rows[i].eid, &err) < 0)
                        continue;
                /* (read before the lock: an operation or a migration may have come first,
                 * or it was started by hand) */
                int r = cta_envm_refresh_row(d, &rows[i], &err);
                if (r >= 0 && rows[i].on_boot && rows[i].state == CTA_CT_DOWN &&
                    rows[i].transition == CTA_TR_NONE)
                        r = cta_envm_start_row(d, &rows[i], &err);
                if (r < 0)
                        log_error("on_boot start of %s failed: %s", rows[i].eid,
                                  cta_error_msg(err));
                cta_envm_unlock(d, rows[i].eid);
        }
        cta_ct_rows_free(rows, n);
}

void cta_envm_started(struct cta_daemon *d)
{
        cta_envm_watch_start(d);
        struct boot_ctx *b = cta_xcalloc(1, sizeof(*b));
        b->d = d;
        if (cta_job_spawn(d, boot_work, free, b) < 0) {
                log_error("cannot start the on_boot containers: too many jobs");
                free(b);
        }
}

void cta_envm_free(struct cta_daemon *d)
{
        struct cta_envm *e = d->envm;
        if (!e)
                return;
        cta_envm_watch_free(d);
        /* Job threads may still use the backend while the process exits;
         * the OS reclaims it. Only an idle envm is freed. */
        if (atomic_load(&d->jobs) == 0) {
                cta_ct_backend_free(e->ct);
                free(e->locked);
                free(e->private_root);
                pthread_mutex_destroy(&e->mu);
                pthread_cond_destroy(&e->unlocked);
                free(e);
                d->envm = NULL;
        }
}

struct cta_ct_backend *cta_envm_backend(struct cta_daemon *d)
{
        return d->envm->ct;
}

const char *cta_envm_private_root(struct cta_daemon *d)
{
        return d->envm->private_root;
}

int cta_envm_check_ips(struct cta_daemon *d, const char *self_eid, const char *const *ips,
                       size_t n, struct cta_error **err)
{
        struct ct_extra x = { 0 };
        for (size_t i = 0; i < n && i < CTA_ENV_MAX_IPS; i++)
                snprintf(x.ips[x.n_ips++], sizeof(x.ips[0]), "%s", ips[i]);
        return check_ips(d, self_eid, &x, err);
}

void cta_envm_row_extra(const struct cta_ct_row *row, char ips[][19], size_t *n_ips,
                        uint64_t *mem, unsigned *cpu)
{
        struct ct_extra x;
        extra_parse(row->config_json, &x);
        for (size_t i = 0; i < x.n_ips; i++)
                memcpy(ips[i], x.ips[i], sizeof(x.ips[i]));
        *n_ips = x.n_ips;
        *mem = x.mem_bytes;
        *cpu = x.cpu_percent;
}

int cta_envm_adopt(struct cta_daemon *d, struct cta_ct_row *row, const char *const *ips,
                   size_t n_ips, uint64_t mem, unsigned cpu, struct cta_error **err)
{
        struct ct_extra x = { .mem_bytes = mem, .cpu_percent = cpu };
        struct cta_ct_spec spec;
        int r;

        for (size_t i = 0; i < n_ips && i < CTA_ENV_MAX_IPS; i++)
                snprintf(x.ips[x.n_ips++], sizeof(x.ips[0]), "%s", ips[i]);
        free(row->config_json);
        row->config_json = extra_format(&x);
        row->state = CTA_CT_DOWN;
        row->transition = CTA_TR_NONE;
        spec_from_row(row, &x, &spec);
        r = cta_ct_spec_validate(&spec, err);
        if (r < 0)
                return r;
        r = cta_store_ct_insert(d->store, row, err);
        if (r < 0)
                return r;
        r = cta_ct_define(d->envm->ct, &spec, err);
        if (r < 0) {
                (void)cta_store_ct_delete(d->store, row->eid, NULL);
                return r;
        }
        cta_envm_emit(d, row->eid, CTA_CT_DOWN, CTA_TR_NONE, CTA_CT_NONEXISTENT, CTA_TR_NONE);
        return 0;
}
