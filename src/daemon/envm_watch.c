/*
 * The watch: what changed behind the agent's back.
 *
 * Containers stop from inside (their init halts them) and admins start and stop them with
 * the LXC tools. A pass (a job) compares the registry with what LXC runs and refreshes
 * the rows that differ, under their lock (cta_envm_refresh_row), so that get_info says
 * what runs and env_status subscribers get the event. A row in a transition or locked by
 * an operation is left to that operation: each one refreshes its row under the lock.
 *
 * When passes run:
 * - every ct_watch_interval_s (the only way to see a container started by hand);
 * - at once when the init of a running container exits: the pass holds a pidfd of each
 *   running container's init (cta_ct_exit_fd), watched by the loop. LXC still reports the
 *   container running while it tears it down, so after an exit passes follow every
 *   CTA_WATCH_QUICK_MS until LXC no longer runs it (or CTA_WATCH_QUICK_MAX passes);
 * - soon after a row turns running (cta_envm_watch_kick from cta_envm_set_state), which
 *   arms the new init's pidfd.
 *
 * The watch's state belongs to the loop thread; a pass gets a copy of what it needs and
 * hands back the pidfds it opened.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ct/ct.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/envm.h"
#include "daemon/mig.h"
#include "net/loop.h"
#include "store/store.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

#define CTA_WATCH_QUICK_MS 250u
#define CTA_WATCH_QUICK_MAX 40u /* 10 s of quick passes after an exit */
/* pidfds held: at most a quarter of the descriptor limit (connections need the rest), and
 * never more than this; containers past it are seen by the poll only. */
#define CTA_WATCH_PIDFDS_MAX 8192u

struct armed {
        uint64_t veid;
        int fd; /* pidfd of its init, watched by the loop */
};

struct cta_envm_watch {
        struct cta_daemon *d;
        struct armed *armed;
        size_t narmed;
        uint64_t *exited; /* veids whose init exited that LXC still ran at the last pass */
        size_t nexited;
        uint64_t timer;  /* the next pass's timer, 0: none */
        bool busy;       /* a pass runs */
        bool again;      /* run another pass as soon as it ends */
        bool no_pidfds;  /* the backend has no processes (fake): poll only */
        size_t max_armed; /* pidfds it may hold */
        unsigned quick;  /* quick passes left */
};

struct pass {
        struct cta_daemon *d;
        uint64_t *armed; /* veids armed when it started (sorted) */
        size_t narmed;
        size_t room; /* pidfds it may open */
        bool no_pidfds;
        /* results */
        bool listed;
        uint64_t *running;
        size_t nrun;
        struct armed *fresh;
        size_t nfresh;
        uint64_t *gone; /* running, but their init has exited already (stopping) */
        size_t ngone;
        bool unsupported;
};

/* ---- the pass (a job thread) --------------------------------------------- */

static void fix_rows(struct pass *p)
{
        struct cta_daemon *d = p->d;
        struct cta_ct_row *rows = NULL;
        size_t n = 0;
        if (cta_store_ct_list(d->store, &rows, &n, NULL) < 0)
                return;
        for (size_t i = 0; i < n && !atomic_load(&d->stopping); i++) {
                struct cta_ct_row *row = &rows[i];
                if (!cta_envm_row_disagrees(row, cta_u64_in_sorted(row->veid, p->running,
                                                                   p->nrun)))
                        continue;
                if (cta_envm_lock_brief(d, row->eid) < 0)
                        continue; /* (an operation holds it: it refreshes the row itself) */
                cta_fault_point("watch_refresh");
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                if (cta_envm_refresh_row(d, row, &err) < 0)
                        log_warning("watch: container %s: %s", row->eid, cta_error_msg(err));
                cta_envm_unlock(d, row->eid);
        }
        cta_ct_rows_free(rows, n);
}

/* Open the exit descriptor of every running container not armed yet. */
static void arm_running(struct pass *p)
{
        struct cta_ct_backend *ct = cta_envm_backend(p->d);
        for (size_t i = 0; i < p->nrun && !p->no_pidfds && p->nfresh < p->room; i++) {
                uint64_t veid = p->running[i];
                if (cta_u64_in_sorted(veid, p->armed, p->narmed))
                        continue;
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                int fd = -1;
                int r = cta_ct_exit_fd(ct, veid, &fd, &err);
                if (r == -CTA_E_NOT_IMPLEMENTED) {
                        p->unsupported = true;
                        return;
                }
                if (r == -CTA_E_BAD_STATE) {
                        /* stopping, or gone since the list: quick passes follow it */
                        p->gone = cta_xrealloc(p->gone, (p->ngone + 1) * sizeof(uint64_t));
                        p->gone[p->ngone++] = veid;
                        continue;
                }
                if (r < 0) {
                        log_warning("watch: veid %" PRIu64 ": %s", veid, cta_error_msg(err));
                        continue;
                }
                p->fresh = cta_xrealloc(p->fresh, (p->nfresh + 1) * sizeof(*p->fresh));
                p->fresh[p->nfresh++] = (struct armed){ veid, fd };
        }
}

static void pass_work(void *arg)
{
        struct pass *p = arg;
        if (atomic_load(&p->d->stopping))
                return;
        if (cta_ct_list_running(cta_envm_backend(p->d), &p->running, &p->nrun, NULL) < 0)
                return;
        p->listed = true;
        fix_rows(p);
        arm_running(p);
}

/* ---- the loop thread ----------------------------------------------------- */

static void pass_start(struct cta_loop *l, void *arg);

static void schedule(struct cta_envm_watch *w, uint64_t ms)
{
        if (atomic_load(&w->d->stopping))
                return;
        if (w->busy) {
                if (ms < CTA_WATCH_QUICK_MS)
                        w->again = true;
                return; /* (the pass's end schedules the next) */
        }
        cta_loop_timer_cancel(w->d->loop, w->timer);
        w->timer = cta_loop_timer_add(w->d->loop, ms, pass_start, w);
}

static void disarm(struct cta_envm_watch *w, size_t i)
{
        cta_loop_del_fd(w->d->loop, w->armed[i].fd);
        close(w->armed[i].fd);
        w->armed[i] = w->armed[--w->narmed];
}

/* veid's init exited: passes follow quickly until LXC no longer runs it. */
static void add_exited(struct cta_envm_watch *w, uint64_t veid)
{
        if (cta_u64_in_sorted(veid, w->exited, w->nexited))
                return; /* (its quick passes are under way: bounded, not restarted) */
        w->exited = cta_xrealloc(w->exited, (w->nexited + 1) * sizeof(uint64_t));
        w->exited[w->nexited++] = veid;
        qsort(w->exited, w->nexited, sizeof(uint64_t), cta_u64_cmp);
        w->quick = CTA_WATCH_QUICK_MAX;
}

static void on_exit_fd(struct cta_loop *l, int fd, uint32_t events, void *arg)
{
        struct cta_envm_watch *w = arg;
        (void)l;
        (void)events;
        for (size_t i = 0; i < w->narmed; i++) {
                if (w->armed[i].fd != fd)
                        continue;
                uint64_t veid = w->armed[i].veid;
                log_debug("watch: the init of veid %" PRIu64 " exited", veid);
                disarm(w, i);
                add_exited(w, veid);
                schedule(w, 0);
                return;
        }
}

/* What the pass learnt: arm the new pidfds; forget pidfds and exits of containers LXC no
 * longer runs (a pidfd whose exit was not seen yet belongs to a reused pid). */
static void pass_merge(struct cta_envm_watch *w, struct pass *p)
{
        if (p->unsupported && !w->no_pidfds) {
                log_info("watch: the %s backend has no processes to watch; polling only",
                         cta_ct_backend_kind(cta_envm_backend(w->d)));
                w->no_pidfds = true;
        }
        for (size_t i = 0; i < p->nfresh; i++) {
                struct armed *a = &p->fresh[i];
                if (atomic_load(&w->d->stopping) ||
                    cta_loop_add_fd(w->d->loop, a->fd, EPOLLIN, on_exit_fd, w) < 0) {
                        close(a->fd);
                        continue;
                }
                w->armed = cta_xrealloc(w->armed, (w->narmed + 1) * sizeof(*w->armed));
                w->armed[w->narmed++] = *a;
        }
        for (size_t i = 0; i < p->ngone; i++)
                add_exited(w, p->gone[i]);
        if (!p->listed)
                return;
        for (size_t i = w->narmed; i-- > 0;)
                if (!cta_u64_in_sorted(w->armed[i].veid, p->running, p->nrun))
                        disarm(w, i);
        size_t k = 0;
        for (size_t i = 0; i < w->nexited; i++)
                if (cta_u64_in_sorted(w->exited[i], p->running, p->nrun))
                        w->exited[k++] = w->exited[i];
        w->nexited = k;
}

static void pass_done(void *arg)
{
        struct pass *p = arg;
        struct cta_envm_watch *w = p->d->watch;
        w->busy = false;
        pass_merge(w, p);
        free(p->armed);
        free(p->running);
        free(p->fresh);
        free(p->gone);
        free(p);
        uint64_t next = w->d->cfg->ct_watch_interval_s * 1000;
        if (w->again)
                next = 0;
        else if (w->nexited && w->quick)
                next = CTA_WATCH_QUICK_MS;
        w->again = false;
        if (w->quick)
                w->quick--;
        schedule(w, next);
}

static void pass_start(struct cta_loop *l, void *arg)
{
        struct cta_envm_watch *w = arg;
        (void)l;
        w->timer = 0;
        if (atomic_load(&w->d->stopping))
                return;
        struct pass *p = cta_xcalloc(1, sizeof(*p));
        p->d = w->d;
        p->no_pidfds = w->no_pidfds;
        p->armed = cta_xcalloc(w->narmed + 1, sizeof(uint64_t));
        for (size_t i = 0; i < w->narmed; i++)
                p->armed[i] = w->armed[i].veid;
        p->narmed = w->narmed;
        p->room = w->max_armed > w->narmed ? w->max_armed - w->narmed : 0;
        qsort(p->armed, p->narmed, sizeof(uint64_t), cta_u64_cmp);
        w->busy = true;
        if (cta_job_spawn(w->d, pass_work, pass_done, p) < 0) {
                /* (all job slots busy: the next tick) */
                free(p->armed);
                free(p);
                w->busy = false;
                schedule(w, w->d->cfg->ct_watch_interval_s * 1000);
        }
}

void cta_envm_watch_start(struct cta_daemon *d)
{
        struct cta_envm_watch *w = cta_xcalloc(1, sizeof(*w));
        w->d = d;
        struct rlimit rl;
        rlim_t lim = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
        w->max_armed = lim / 4 < CTA_WATCH_PIDFDS_MAX ? (size_t)(lim / 4) : CTA_WATCH_PIDFDS_MAX;
        d->watch = w;
        /* the first pass at once: it arms the pidfds of what runs already */
        schedule(w, 0);
}

static void kick(void *arg)
{
        struct cta_daemon *d = arg;
        if (d->watch)
                schedule(d->watch, 0);
}

void cta_envm_watch_kick(struct cta_daemon *d)
{
        if (d->loop && !atomic_load(&d->stopping))
                cta_loop_post(d->loop, kick, d);
}

void cta_envm_watch_free(struct cta_daemon *d)
{
        struct cta_envm_watch *w = d->watch;
        if (!w || w->busy)
                return; /* (a pass still runs: the process exits with it) */
        cta_loop_timer_cancel(d->loop, w->timer);
        while (w->narmed)
                disarm(w, w->narmed - 1);
        free(w->armed);
        free(w->exited);
        free(w);
        d->watch = NULL;
}
