/*
 * Migrations in doubt (source role): the commit was sent and its reply lost, and the
 * destination has not said since whether it committed. Until it does, the container must
 * neither run here nor move anywhere else (either could make two owners), so it stays
 * stopped and locked; a job asks the destination's status again at growing intervals and
 * settles each migration it learns about (cta_mig_settle_src: retire the copy or restore
 * the container), then unlocks it. Before this, an agent asked only at start-up, and the
 * container, unlocked meanwhile, could be migrated a second time.
 *
 * The same job finishes a rollback whose registry writes failed (a full disk, a writer
 * holding the database's lock): the journal still says where the migration stopped, so
 * settling it restores the container once the registry can be written. On a destination
 * it tries again a start after the commit that the registry could not take.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ct/ct.h"
#include "daemon/daemon.h"
#include "daemon/envm.h"
#include "daemon/mig.h"
#include "net/loop.h"
#include "proto/packet.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

#define DOUBT_FIRST_MS 2000u
#define DOUBT_MAX_MS 60000u
/* how long the operator's settle waits for a round's ask of the same migration (a
 * connect to a dead node times out after 60 s) */
#define SETTLE_WAIT_S 90

struct doubt {
        char id[37], eid[37];
        bool busy; /* a round or the operator's settle works on it (no second one) */
};

/* the list: any thread, under doubt_mu; doubt_cv: an entry was released */
static pthread_mutex_t doubt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t doubt_cv = PTHREAD_COND_INITIALIZER;
static struct doubt *doubts;
static size_t ndoubts;

/* Starts the registry could not take (destination role): committed containers the source
 * asked to start; the journal stays "committed" until one goes through. Any thread, under
 * doubt_mu; each is worked on under the container's lock, taken for the try. */
struct later_start {
        char id[37], eid[37];
};
static struct later_start *laters;
static size_t nlaters;

/* the schedule: loop thread only */
static uint64_t doubt_timer;
static unsigned doubt_delay_ms;
static bool doubt_running;

static void doubt_schedule(struct cta_daemon *d);
static void doubt_kick(void *arg);
static void later_starts_work(struct cta_daemon *d);

/* Any thread: the doubt of id is settled (its lock released) or not (free again). */
static void doubt_release(struct cta_daemon *d, const char *id, const char *eid, bool settled)
{
        pthread_mutex_lock(&doubt_mu);
        for (size_t k = 0; k < ndoubts; k++)
                if (streq(doubts[k].id, id)) {
                        if (settled)
                                doubts[k] = doubts[--ndoubts];
                        else
                                doubts[k].busy = false;
                        break;
                }
        pthread_cond_broadcast(&doubt_cv);
        pthread_mutex_unlock(&doubt_mu);
        if (settled)
                cta_envm_unlock(d, eid);
}

/* Settle one doubt (claimed by the caller): a commit in doubt, or a rollback the
 * registry could not take yet. (A journal row gone or finished was settled by someone:
 * let it go; one that cannot be read is asked for again.) */
static bool doubt_settle_one(struct cta_daemon *d, const struct doubt *x,
                             enum cta_mig_verdict verdict, struct cta_error **err)
{
        struct cta_mig_row row = { 0 };
        bool settled = true;
        int r = cta_store_mig_get(d->store, x->id, &row, NULL);
        if (r == 0) {
                if (!cta_store_mig_finished(row.state))
                        settled = cta_mig_settle_src(d, &row, verdict, err);
                cta_mig_row_done(&row);
        } else if (r == -CTA_E_STORE) {
                settled = false;
        }
        doubt_release(d, x->id, x->eid, settled);
        if (settled)
                log_notice("migration %s: settled; container %s is no longer locked", x->id,
                           x->eid);
        return settled;
}

int cta_mig_dst_start(struct cta_daemon *d, const char *eid, struct cta_error **err)
{
        struct cta_ct_row ct = { 0 };
        int r = cta_store_ct_get(d->store, eid, &ct, err);
        if (r == -CTA_E_ENV_NOT_FOUND) {
                /* (gone meanwhile: moved on or destroyed; nothing to start) */
                cta_error_free(*err);
                *err = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        r = cta_envm_refresh_row(d, &ct, err);
        if (r >= 0 && ct.transition == CTA_TR_NONE &&
            (ct.state == CTA_CT_DOWN || ct.state == CTA_CT_MOUNTED))
                r = cta_envm_start_row(d, &ct, err) < 0 ? -cta_error_code(*err) : 1;
        else if (r >= 0)
                r = ct.state == CTA_CT_RUNNING;
        cta_ct_row_done(&ct);
        return r;
}

void cta_mig_start_later(struct cta_daemon *d, const char *id, const char *eid)
{
        pthread_mutex_lock(&doubt_mu);
        laters = cta_xrealloc(laters, (nlaters + 1) * sizeof(*laters));
        snprintf(laters[nlaters].id, sizeof(laters[nlaters].id), "%s", id);
        snprintf(laters[nlaters].eid, sizeof(laters[nlaters].eid), "%s", eid);
        nlaters++;
        pthread_mutex_unlock(&doubt_mu);
        cta_loop_post(d->loop, doubt_kick, d);
}

/* One try of a later start (its container locked by the caller): whether it is over
 * (started, or failed for another reason than the registry: that one is logged, as any
 * failed start after a commit). */
static bool later_start_one(struct cta_daemon *d, const struct later_start *x)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_mig_row jr = { 0 };
        int r = cta_store_mig_get(d->store, x->id, &jr, NULL);
        if (r == -CTA_E_STORE)
                return false;
        if (r < 0 || cta_store_mig_finished(jr.state)) {
                cta_mig_row_done(&jr);
                return true;
        }
        r = cta_mig_dst_start(d, x->eid, &err);
        if (r == -CTA_E_STORE) {
                cta_mig_row_done(&jr);
                return false;
        }
        if (r < 0)
                log_error("migration %s: start %s: %s", x->id, x->eid, cta_error_msg(err));
        else if (r > 0)
                log_notice("migration %s: started container %s as its source asked, once "
                           "the registry could be written",
                           x->id, x->eid);
        bool over = cta_mig_journal(d, x->id, CTA_MIG_ROLE_DST, x->eid, NULL, "done",
                                    jr.detail, NULL) == 0;
        cta_mig_row_done(&jr);
        return over;
}

/* Job thread: one try of each later start whose container is not locked. */
static void later_starts_work(struct cta_daemon *d)
{
        pthread_mutex_lock(&doubt_mu);
        size_t n = nlaters;
        struct later_start *round = n ? cta_xmalloc(n * sizeof(*round)) : NULL;
        if (n)
                memcpy(round, laters, n * sizeof(*round));
        pthread_mutex_unlock(&doubt_mu);
        for (size_t i = 0; i < n && !atomic_load(&d->stopping); i++) {
                if (cta_envm_lock(d, round[i].eid, NULL) < 0)
                        continue; /* (an operation on it: the next round) */
                bool over = later_start_one(d, &round[i]);
                cta_envm_unlock(d, round[i].eid);
                if (!over)
                        continue;
                pthread_mutex_lock(&doubt_mu);
                for (size_t k = 0; k < nlaters; k++)
                        if (streq(laters[k].id, round[i].id)) {
                                laters[k] = laters[--nlaters];
                                break;
                        }
                pthread_mutex_unlock(&doubt_mu);
        }
        free(round);
}

/* Job thread: one round over the doubts nobody works on. */
static void doubt_work(void *arg)
{
        struct cta_daemon *d = arg;
        pthread_mutex_lock(&doubt_mu);
        size_t n = 0;
        struct doubt *round = ndoubts ? cta_xmalloc(ndoubts * sizeof(*round)) : NULL;
        for (size_t k = 0; k < ndoubts; k++)
                if (!doubts[k].busy) {
                        doubts[k].busy = true;
                        round[n++] = doubts[k];
                }
        pthread_mutex_unlock(&doubt_mu);

        for (size_t i = 0; i < n; i++) {
                if (atomic_load(&d->stopping))
                        doubt_release(d, round[i].id, round[i].eid, false);
                else
                        (void)doubt_settle_one(d, &round[i], CTA_MIG_ASK, NULL);
        }
        free(round);
        later_starts_work(d);
}

/* Loop thread, after a round: again later while anything is left. */
static void doubt_done(void *arg)
{
        struct cta_daemon *d = arg;
        doubt_running = false;
        doubt_delay_ms = doubt_delay_ms * 2 > DOUBT_MAX_MS ? DOUBT_MAX_MS : doubt_delay_ms * 2;
        doubt_schedule(d);
}

static void doubt_on_timer(struct cta_loop *l, void *arg)
{
        struct cta_daemon *d = arg;
        (void)l;
        doubt_timer = 0;
        doubt_running = true;
        if (cta_job_spawn(d, doubt_work, doubt_done, d) < 0) {
                doubt_running = false; /* (all job slots busy: the next tick) */
                doubt_schedule(d);
        }
}

static void doubt_schedule(struct cta_daemon *d)
{
        pthread_mutex_lock(&doubt_mu);
        bool any = ndoubts > 0 || nlaters > 0;
        pthread_mutex_unlock(&doubt_mu);
        if (any && !doubt_timer && !doubt_running && !atomic_load(&d->stopping))
                doubt_timer = cta_loop_timer_add(d->loop, doubt_delay_ms, doubt_on_timer, d);
}

/* Loop thread: a new doubt starts the schedule over (ask again soon). */
static void doubt_kick(void *arg)
{
        struct cta_daemon *d = arg;
        doubt_delay_ms = DOUBT_FIRST_MS;
        if (doubt_timer) {
                cta_loop_timer_cancel(d->loop, doubt_timer);
                doubt_timer = 0;
        }
        doubt_schedule(d);
}

void cta_mig_doubt_add(struct cta_daemon *d, const char *id, const char *eid, bool lock)
{
        /* (at start-up nothing else holds a lock; a failure would leave it unlocked, so
         * say so) */
        if (lock && cta_envm_lock(d, eid, NULL) < 0)
                log_error("migration %s: cannot lock container %s while in doubt", id, eid);
        pthread_mutex_lock(&doubt_mu);
        doubts = cta_xrealloc(doubts, (ndoubts + 1) * sizeof(*doubts));
        snprintf(doubts[ndoubts].id, sizeof(doubts[ndoubts].id), "%s", id);
        snprintf(doubts[ndoubts].eid, sizeof(doubts[ndoubts].eid), "%s", eid);
        doubts[ndoubts].busy = false;
        ndoubts++;
        pthread_mutex_unlock(&doubt_mu);
        cta_loop_post(d->loop, doubt_kick, d);
}

/* The round the operator's settle waited for settled it by the destination's answer:
 * the container is still registered here (it stayed) or not (it moved). */
static int settled_meanwhile(struct cta_daemon *d, const char *eid, enum cta_mig_verdict verdict,
                             struct cta_error **err)
{
        struct cta_ct_row row = { 0 };
        bool moved = cta_store_ct_get(d->store, eid, &row, NULL) < 0;
        if (!moved)
                cta_ct_row_done(&row);
        if (moved == (verdict == CTA_MIG_MOVED))
                return 0;
        return cta_error_set(err, CTA_E_MIG_SETTLED, 0,
                             "the destination answered meanwhile that container %s %s; settled "
                             "by its answer, not the one asked for",
                             eid, moved ? "moved there (the copy here is retired)"
                                        : "never committed there (it stays here)");
}

int cta_mig_doubt_settle(struct cta_daemon *d, const char *eid, enum cta_mig_verdict verdict,
                         struct cta_error **err)
{
        struct doubt x = { .busy = false };
        bool exists = false, seen = false, claimed = false;
        /* A round may be asking the destination about it (up to a connect timeout):
         * wait for that ask, whose answer may settle it. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += SETTLE_WAIT_S;
        pthread_mutex_lock(&doubt_mu);
        for (;;) {
                struct doubt *e = NULL;
                for (size_t k = 0; k < ndoubts && !e; k++)
                        if (strcasecmp(doubts[k].eid, eid) == 0)
                                e = &doubts[k];
                exists = e != NULL;
                seen = seen || exists;
                if (e && !e->busy) {
                        e->busy = true;
                        x = *e;
                        claimed = true;
                }
                if (!e || claimed || pthread_cond_timedwait(&doubt_cv, &doubt_mu, &until) != 0)
                        break;
        }
        pthread_mutex_unlock(&doubt_mu);
        if (seen && !exists)
                return settled_meanwhile(d, eid, verdict, err);
        if (!exists)
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "container %s has no migration in doubt (nothing to settle)",
                                     eid);
        if (!claimed)
                return cta_error_set(err, CTA_E_BUSY, 0,
                                     "the agent has been asking the destination about container "
                                     "%s for %d s; try again later",
                                     eid, SETTLE_WAIT_S);
        log_notice("migration %s: the operator says container %s %s", x.id, eid,
                   verdict == CTA_MIG_MOVED ? "moved" : "stays here");
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        bool settled = doubt_settle_one(d, &x, verdict, &e);
        if (e) {
                *err = e;
                e = NULL;
                return -cta_error_code(*err);
        }
        if (!settled) /* (cannot happen with a verdict: it says why) */
                return cta_error_set(err, CTA_E_INTERNAL, 0, "migration %s not settled", x.id);
        return 0;
}

/* ---- relocator/settle: the operator's word ------------------------------------ */

int cta_mig_settle_prepare(struct cta_call *call, struct cta_error **err)
{
        struct cta_mig_settle_req *q = cta_xcalloc(1, sizeof(*q));
        call->ctx = q;
        call->ctx_free = free;
        return cta_req_parse_mig_settle(call->req->call_node, q, err);
}

int cta_mig_settle_run(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        const struct cta_mig_settle_req *q = call->ctx;
        struct cta_ct_row row = { 0 };
        if (cta_store_ct_get(d->store, q->eid, &row, NULL) < 0)
                return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0,
                                     "no container with eid %s on this node", q->eid);
        cta_ct_row_done(&row);
        log_notice("%s asks to settle container %s's migration as %s", call->s->user, q->eid,
                   q->moved ? "moved" : "stays");
        return cta_mig_doubt_settle(d, q->eid, q->moved ? CTA_MIG_MOVED : CTA_MIG_STAYS, err);
}
