/*
 * What a migration leaves to settle after its calls. Source: retiring the copy a commit
 * left here, restoring the container when the migration did not commit, and settling a
 * journal entry left unfinished (crash recovery, a commit in doubt, a rollback the
 * registry could not take; mig_doubt.c schedules the tries). Destination: crash recovery
 * of its journal entries. The calls themselves are in mig_src.c and mig_dst.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ct/ct.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/envm.h"
#include "daemon/mig.h"
#include "migrate/stream.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

/* After the commit: the destination owns the container; retire ours. */
int cta_mig_retire(struct cta_daemon *d, struct cta_ct_row *row, bool remove, const char *mid,
                   struct cta_error **err)
{
        struct cta_ct_backend *ct = cta_envm_backend(d);
        enum cta_ct_state was = CTA_CT_UNKNOWN;
        int r;

        /* It was stopped at the commit; running now, it was started by hand since, and
         * what it wrote is nowhere else: stopped, and its private area kept whatever
         * remove asked for. */
        if (cta_ct_state(ct, row->veid, &was, NULL) == 0 &&
            (was == CTA_CT_RUNNING || was == CTA_CT_SUSPENDED)) {
                log_warning("migration %s: container %s runs here although it moved (started "
                            "outside the agent after the commit); stopping it, and keeping its "
                            "private area",
                            mid, row->eid);
                remove = false;
        }
        (void)cta_ct_stop(ct, row->veid, true, 0, NULL);
        r = cta_ct_undefine(ct, row->veid, err);
        if (r < 0)
                return r;
        struct stat st;
        if (lstat(row->private_path, &st) == 0) {
                if (remove) {
                        r = cta_ct_private_remove(ct, row->private_path, err);
                        if (r < 0)
                                return r;
                } else {
                        /* Keep the data, renamed, as vzmigrate does. */
                        /* (before the rename: whatever changes the copy after it is later;
                         * less a margin for the kernel's tick clock) */
                        struct timespec now;
                        clock_gettime(CLOCK_REALTIME, &now);
                        cta_ts_add_ns(&now, -CTA_MIG_TICK_MARGIN_NS);
                        _cleanup_free_ char *to = cta_xasprintf("%s.migrated", row->private_path);
                        for (int i = 1; lstat(to, &st) == 0 && i < 1000; i++) {
                                free(to);
                                to = cta_xasprintf("%s.migrated.%d", row->private_path, i);
                        }
                        if (rename(row->private_path, to) < 0)
                                return cta_error_errno(err, CTA_E_IO, "rename '%s'",
                                                       row->private_path);
                        /* If the container comes back, its migration starts from this;
                         * the mark names the migration the copy went out with, and when
                         * (a change to the copy after it is seen). */
                        cta_mig_mark_put(d, CTA_MARK_RETIRED, row->eid, mid, &now);
                        cta_mig_note_set(d, "retired", row->eid, to);
                        log_notice("migration %s: kept the old private area as %s", mid, to);
                }
        }
        r = cta_store_ct_delete(d->store, row->eid, err);
        if (r < 0 && r != -CTA_E_ENV_NOT_FOUND)
                return r;
        cta_envm_emit(d, row->eid, CTA_CT_NONEXISTENT, CTA_TR_NONE, row->state, row->transition);
        return 0;
}

/* Before the commit, or after one that did not happen: the container is ours; make it as
 * it was, no longer marked migrating and running if it ran. What LXC runs decides, not a
 * row kept in memory: a stop or a start whose registry write failed left the row saying
 * otherwise. < 0 while the registry cannot be read or written: the caller keeps the
 * container locked and the in-doubt job tries again (mig_doubt.c); before this, the
 * container stayed stopped and marked migrating until the agent restarted. A start that
 * LXC refuses is logged, not tried again (the container stays down, as after any failed
 * start). */
int cta_mig_restore(struct cta_daemon *d, const char *eid, bool was_running,
                    struct cta_error **err)
{
        struct cta_ct_row row = { 0 };
        enum cta_ct_state now = CTA_CT_UNKNOWN;
        int r = cta_store_ct_get(d->store, eid, &row, err);
        if (r < 0)
                return r;
        r = cta_ct_state(cta_envm_backend(d), row.veid, &now, err);
        if (r < 0)
                goto out;
        bool runs = now == CTA_CT_RUNNING;
        int want = runs ? CTA_CT_RUNNING : row.state == CTA_CT_RUNNING ? CTA_CT_DOWN : row.state;
        if (want != row.state || row.transition != CTA_TR_NONE) {
                r = cta_envm_set_state(d, &row, want, CTA_TR_NONE, err);
                if (r < 0)
                        goto out;
        }
        if (was_running && !runs) {
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                r = cta_envm_start_row(d, &row, &e);
                if (r < 0 && cta_error_code(e) == CTA_E_STORE) {
                        *err = TAKE_PTR(e);
                        goto out;
                }
                if (r < 0)
                        log_error("could not start container %s again after a failed "
                                  "migration: %s",
                                  eid, cta_error_msg(e));
                r = 0;
        }
out:
        cta_ct_row_done(&row);
        return r;
}

/* ---- recovery after a crash, and migrations in doubt (source role) ------------ */

/* Who owns jr's container, 1 the destination or 0 us, by the journal and, for a commit
 * in doubt, by asking the destination; -1 while it cannot tell (no answer), -2 while it
 * is committing. */
static int settle_owner(struct cta_daemon *d, const struct cta_mig_row *jr)
{
        if (streq(jr->state, "committed"))
                return 1;
        if (!streq(jr->state, "committing"))
                return 0;
        _cleanup_free_ char *host = cta_kv_get(jr->detail, "host");
        _cleanup_free_ char *port_s = cta_kv_get(jr->detail, "port");
        _cleanup_free_ char *tls = cta_kv_get(jr->detail, "tls");
        _cleanup_free_ char *token = cta_kv_get(jr->detail, "token");
        uint64_t port = 0;
        (void)cta_parse_u64(port_s ? port_s : "", 65535, &port);
        int owner = host && token ? cta_mig_ask_status(d, host, (uint16_t)port,
                                                       tls && streq(tls, "1"), jr->id, token)
                                  : 0;
        return owner > 1 ? 1 : owner;
}

/* The operator's word on jr (relocator/settle) when the destination does not answer:
 * the owner it names, or < 0 (*err). A copy declared moved is never deleted here (a
 * remove asked for is not honoured): if the word was wrong, its data is still in the
 * retired private area. *detail: jr's detail saying so (the first of a key wins: these
 * go before the old). */
static int operator_word(struct cta_daemon *d, const struct cta_mig_row *jr,
                         enum cta_mig_verdict verdict, struct cta_buf *detail,
                         struct cta_error **err)
{
        int owner = verdict == CTA_MIG_MOVED;
        cta_kv_add(detail, "settled_by", "operator");
        if (owner)
                cta_kv_add(detail, "remove", "0");
        (void)cta_buf_puts(detail, jr->detail ? jr->detail : "");
        /* Journaled as committed first (a must: only the journal knows it then): a retire
         * that fails is tried again by the in-doubt job as after any commit, still
         * without deleting. */
        if (owner && cta_mig_journal(d, jr->id, CTA_MIG_ROLE_SRC, jr->ct_eid, jr->peer,
                                     "committed", detail->data, err) < 0)
                return -1;
        return owner;
}

bool cta_mig_settle_src(struct cta_daemon *d, const struct cta_mig_row *jr,
                        enum cta_mig_verdict verdict, struct cta_error **err)
{
        _cleanup_free_ char *was = cta_kv_get(jr->detail, "was_running");
        _cleanup_free_ char *rm = cta_kv_get(jr->detail, "remove");
        _cleanup_(cta_error_freep) struct cta_error *rerr = NULL;
        struct cta_ct_row row = { 0 };
        bool was_running = was && streq(was, "1");
        bool remove = rm && streq(rm, "1");
        const char *by = "";
        _cleanup_(cta_buf_donep) struct cta_buf detail = CTA_BUF_INIT(0);

        int r = cta_store_ct_get(d->store, jr->ct_eid, &row, &rerr);
        if (r == -CTA_E_ENV_NOT_FOUND) {
                /* Already retired. */
                (void)cta_store_mig_put(d->store, jr->id, CTA_MIG_ROLE_SRC, jr->ct_eid, jr->peer,
                                        "done", jr->detail, NULL);
                return true;
        }
        if (r < 0) {
                /* (a registry that cannot be read says nothing: ask again later) */
                log_error("migration %s: %s", jr->id, cta_error_msg(rerr));
                if (err)
                        *err = TAKE_PTR(rerr);
                return false;
        }
        int owner = settle_owner(d, jr); /* 1 = the destination, 0 = us */
        if (verdict == CTA_MIG_STAYS && streq(jr->state, "committed")) {
                cta_ct_row_done(&row);
                cta_error_set(err, CTA_E_BAD_STATE, 0,
                              "migration %s: the destination committed %s (this node's journal "
                              "says so); the copy here can only be retired",
                              jr->id, jr->ct_eid);
                return false;
        }
        if (owner == -2 && verdict != CTA_MIG_ASK) {
                cta_ct_row_done(&row);
                cta_error_set(err, CTA_E_BUSY, 0,
                              "migration %s: the destination %s is committing %s right now; "
                              "it settles when the commit ends",
                              jr->id, jr->peer ? jr->peer : "?", jr->ct_eid);
                return false;
        }
        if (owner < 0 && verdict != CTA_MIG_ASK) {
                owner = operator_word(d, jr, verdict, &detail, err);
                if (owner < 0) {
                        cta_ct_row_done(&row);
                        return false;
                }
                remove = false;
                by = " (settled by the operator: the destination did not answer)";
        } else if (owner >= 0 && verdict != CTA_MIG_ASK && owner != (verdict == CTA_MIG_MOVED)) {
                cta_error_set(err, CTA_E_MIG_SETTLED, 0,
                              "migration %s: the destination %s answered that %s %s; settled "
                              "by its answer, not the one asked for",
                              jr->id, jr->peer ? jr->peer : "?", jr->ct_eid,
                              owner ? "moved there (the copy here is retired)"
                                    : "never committed there (it stays here)");
        }
        if (owner < 0) {
                log_warning("migration %s of %s: the destination %s cannot tell yet "
                            "whether it committed; the container stays stopped and "
                            "locked here (the agent asks again)",
                            jr->id, jr->ct_eid, jr->peer ? jr->peer : "?");
                if (row.transition != CTA_TR_MIGRATING)
                        (void)cta_envm_set_state(d, &row, row.state, CTA_TR_MIGRATING, NULL);
                cta_ct_row_done(&row);
                return false;
        }
        bool settled = true;
        const char *jr_detail = detail.len ? detail.data : jr->detail;
        if (owner == 1) {
                if (cta_mig_retire(d, &row, remove, jr->id, &rerr) < 0) {
                        /* still ours on paper: stays locked until a retire succeeds */
                        log_error("migration %s: retire %s: %s", jr->id, jr->ct_eid,
                                  cta_error_msg(rerr));
                        if (err) {
                                (void)cta_error_wrap(&rerr, "retire the copy of %s",
                                                     jr->ct_eid);
                                cta_error_free(*err);
                                *err = rerr;
                                rerr = NULL;
                        }
                        settled = false;
                } else {
                        (void)cta_store_mig_put(d->store, jr->id, CTA_MIG_ROLE_SRC, jr->ct_eid,
                                                jr->peer, "done", jr_detail, NULL);
                        log_warning("migration %s: %s belongs to %s now; source copy retired%s",
                                    jr->id, jr->ct_eid,
                                    jr->peer ? jr->peer : "the destination", by);
                }
        } else if (cta_mig_restore(d, jr->ct_eid, was_running, &rerr) < 0 ||
                   cta_mig_journal(d, jr->id, CTA_MIG_ROLE_SRC, jr->ct_eid, jr->peer, "failed",
                                   jr_detail, &rerr) < 0) {
                /* stays locked, still unfinished in the journal: tried again */
                log_error("migration %s: cannot finish the rollback of %s yet: %s", jr->id,
                          jr->ct_eid, cta_error_msg(rerr));
                if (err) {
                        (void)cta_error_wrap(&rerr, "restore %s", jr->ct_eid);
                        cta_error_free(*err);
                        *err = TAKE_PTR(rerr);
                }
                settled = false;
        } else {
                log_warning("migration %s of %s did not complete (%s); the container "
                            "stays here%s%s",
                            jr->id, jr->ct_eid, jr->state,
                            was_running ? " and was restarted" : "", by);
        }
        cta_ct_row_done(&row);
        return settled;
}

/* ---- recovery after a crash (destination role) --------------------------- */

/* A commit that recovery finished: start the container if the source asked for it (it ran
 * there) and it is not running. Returns 1 started, 0 not, -1 the registry could not take
 * the start: the in-doubt job tries again (the journal row is left "committed"). */
static int recover_start(struct cta_daemon *d, const struct cta_mig_row *row)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ char *start = cta_kv_get(row->detail, "start");
        if (!start || !streq(start, "1"))
                return 0;
        int r = cta_mig_dst_start(d, row->ct_eid, &err);
        if (r < 0)
                log_error("recover: migration %s: start %s: %s", row->id, row->ct_eid,
                          cta_error_msg(err));
        if (r == -CTA_E_STORE) {
                cta_mig_start_later(d, row->id, row->ct_eid);
                return -1;
        }
        return r > 0;
}

static void recover_dst(struct cta_daemon *d, const struct cta_mig_row *row)
{
        _cleanup_free_ char *parent = cta_kv_get(row->detail, "parent");
        _cleanup_free_ char *staging = cta_kv_get(row->detail, "staging");
        _cleanup_free_ char *priv = cta_kv_get(row->detail, "private");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_ct_row ct = { 0 };
        struct stat st;

        /* (a registry that cannot be read says nothing: a committed container taken for
         * unregistered would have its journal row closed as failed) */
        int have_row = cta_store_ct_get(d->store, row->ct_eid, &ct, &err);
        if (have_row < 0 && have_row != -CTA_E_ENV_NOT_FOUND) {
                log_error("recover: migration %s: %s; left for the next start", row->id,
                          cta_error_msg(err));
                return;
        }
        cta_error_free(err);
        err = NULL;
        cta_ct_row_done(&ct); /* (and zeroed: the adoption below fills it) */
        if (streq(row->state, "committing") && priv && lstat(priv, &st) == 0 && have_row < 0) {
                /* Moved into place but not registered yet: finish the commit. */
                _cleanup_free_ char *veid_s = cta_kv_get(row->detail, "veid");
                _cleanup_free_ char *name = cta_kv_get(row->detail, "name");
                _cleanup_free_ char *host = cta_kv_get(row->detail, "hostname");
                _cleanup_free_ char *desc = cta_kv_get(row->detail, "description");
                _cleanup_free_ char *tpl = cta_kv_get(row->detail, "template");
                _cleanup_free_ char *mem_s = cta_kv_get(row->detail, "memory");
                _cleanup_free_ char *cpu_s = cta_kv_get(row->detail, "cpu");
                _cleanup_free_ char *boot = cta_kv_get(row->detail, "on_boot");
                uint64_t veid = 0, mem = 0, cpu = 0;
                (void)cta_parse_u64(veid_s ? veid_s : "", INT32_MAX, &veid);
                (void)cta_parse_u64(mem_s ? mem_s : "0", UINT64_MAX, &mem);
                (void)cta_parse_u64(cpu_s ? cpu_s : "0", 102400, &cpu);
                snprintf(ct.eid, sizeof(ct.eid), "%s", row->ct_eid);
                ct.veid = veid;
                ct.name = name && *name ? name : NULL;
                ct.hostname = host;
                ct.description = desc;
                ct.private_path = priv;
                ct.os_template = tpl;
                ct.on_boot = boot && streq(boot, "1");
                _cleanup_free_ char *iplist = cta_kv_get(row->detail, "ips");
                const char *ips[8];
                size_t n_ips = 0;
                char *save = NULL;
                for (char *t = iplist ? strtok_r(iplist, ",", &save) : NULL; t && n_ips < 8;
                     t = strtok_r(NULL, ",", &save))
                        ips[n_ips++] = t;
                if (cta_envm_adopt(d, &ct, ips, n_ips, mem, (unsigned)cpu, &err) == 0) {
                        free(ct.config_json);
                        int started = recover_start(d, row);
                        if (started >= 0)
                                (void)cta_store_mig_put(d->store, row->id, CTA_MIG_ROLE_DST,
                                                        row->ct_eid, NULL, "done", row->detail,
                                                        NULL);
                        log_warning("recover: migration %s: finished committing container %s%s",
                                    row->id, row->ct_eid, started > 0 ? " and started it" : "");
                        return;
                }
                free(ct.config_json);
                log_error("recover: migration %s: %s", row->id, cta_error_msg(err));
                return;
        }
        if ((streq(row->state, "committed") || streq(row->state, "committing")) &&
            have_row == 0) {
                /* Registered: committed, but we died before starting it as asked. */
                int started = recover_start(d, row);
                if (started >= 0)
                        (void)cta_store_mig_put(d->store, row->id, CTA_MIG_ROLE_DST,
                                                row->ct_eid, NULL, "done", row->detail, NULL);
                log_warning("recover: migration %s: container %s is committed here%s", row->id,
                            row->ct_eid, started > 0 ? " and was started" : "");
                return;
        }
        _cleanup_free_ char *base_from = cta_kv_get(row->detail, "base_from");
        cta_mig_drop_staging(d, row->ct_eid, parent, staging, base_from, d->cfg->keep_staging);
        (void)cta_store_mig_put(d->store, row->id, CTA_MIG_ROLE_DST, row->ct_eid, NULL,
                                "failed", row->detail, NULL);
        log_warning("recover: incoming migration %s of %s was interrupted (%s); staging "
                    "removed",
                    row->id, row->ct_eid, row->state);
}

int cta_mig_recover(struct cta_daemon *d, struct cta_error **err)
{
        struct cta_mig_row *rows = NULL;
        size_t n = 0;
        _cleanup_free_ char *bmdir = cta_mig_blockmap_dir(d);
        /* Block maps are a cache for later migrations; a month old is stale. */
        (void)cta_mig_blockmap_prune(bmdir, 30 * 86400, NULL);
        int r = cta_store_mig_list_unfinished(d->store, &rows, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                if (streq(rows[i].role, CTA_MIG_ROLE_DST))
                        recover_dst(d, &rows[i]);
                else if (!cta_mig_settle_src(d, &rows[i], CTA_MIG_ASK, NULL))
                        cta_mig_doubt_add(d, rows[i].id, rows[i].ct_eid, true);
        }
        cta_mig_rows_free(rows, n);
        return 0;
}
