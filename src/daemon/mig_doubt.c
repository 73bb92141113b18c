/*
 * Migrations in doubt (source role): the commit was sent and its reply lost, and the
 * destination has not said since whether it committed. Until it does, the container must
 * neither run here nor move anywhere else (either could make two owners), so it stays
 * stopped and locked; a job asks the destination's status again at growing intervals and
 * settles each migration it learns about (cta_mig_settle_src: retire the copy or restore
 * the container), then unlocks it. Before this, an agent asked only at start-up, and the
 * container, unlocked meanwhile, could be migrated a second time.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/envm.h"
#include "daemon/mig.h"
#include "net/loop.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

#define DOUBT_FIRST_MS 2000u
#define DOUBT_MAX_MS 60000u

struct doubt {
        char id[37], eid[37];
};

/* the list: any thread, under doubt_mu */
static pthread_mutex_t doubt_mu = PTHREAD_MUTEX_INITIALIZER;
static struct doubt *doubts;
static size_t ndoubts;

/* the schedule: loop thread only */
static uint64_t doubt_timer;
static unsigned doubt_delay_ms;
static bool doubt_running;

static void doubt_schedule(struct cta_daemon *d);

/* Job thread: one round over a copy of the list. */
static void doubt_work(void *arg)
{
        struct cta_daemon *d = arg;
        pthread_mutex_lock(&doubt_mu);
        size_t n = ndoubts;
        struct doubt *round = n ? cta_xmalloc(n * sizeof(*round)) : NULL;
        if (n)
                memcpy(round, doubts, n * sizeof(*round));
        pthread_mutex_unlock(&doubt_mu);

        for (size_t i = 0; i < n && !atomic_load(&d->stopping); i++) {
                struct cta_mig_row row = { 0 };
                bool settled = true;
                /* (a row gone or no longer committing was settled by someone: let it go) */
                if (cta_store_mig_get(d->store, round[i].id, &row, NULL) == 0) {
                        if (streq(row.state, "committing") || streq(row.state, "committed"))
                                settled = cta_mig_settle_src(d, &row);
                        cta_mig_row_done(&row);
                }
                if (!settled)
                        continue;
                pthread_mutex_lock(&doubt_mu);
                for (size_t k = 0; k < ndoubts; k++)
                        if (streq(doubts[k].id, round[i].id)) {
                                doubts[k] = doubts[--ndoubts];
                                break;
                        }
                pthread_mutex_unlock(&doubt_mu);
                cta_envm_unlock(d, round[i].eid);
                log_notice("migration %s: settled; container %s is no longer locked",
                           round[i].id, round[i].eid);
        }
        free(round);
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
        bool any = ndoubts > 0;
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
        ndoubts++;
        pthread_mutex_unlock(&doubt_mu);
        cta_loop_post(d->loop, doubt_kick, d);
}
