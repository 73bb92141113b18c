/* The vzaenvm operator: containers on this node (envm.c). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cta_daemon;
struct cta_error;

/* Open the container backend and reconcile the registry with what runs. */
int cta_envm_init(struct cta_daemon *d, struct cta_error **err);
/* Called once the listeners accept: start on_boot containers. */
void cta_envm_started(struct cta_daemon *d);
void cta_envm_free(struct cta_daemon *d);

/* The watch (envm_watch.c): registry vs LXC, each interval and at once when a running
 * container's init exits. Loop thread, but kick: any thread (a row turned running). */
void cta_envm_watch_start(struct cta_daemon *d);
void cta_envm_watch_kick(struct cta_daemon *d);
void cta_envm_watch_free(struct cta_daemon *d);

/* Per-container operation lock: CTA_E_BUSY if another operation holds it. */
int cta_envm_lock(struct cta_daemon *d, const char *eid, struct cta_error **err);
void cta_envm_unlock(struct cta_daemon *d, const char *eid);
/* The watch's lock for a refresh: never waits; an operation that wants it meanwhile
 * waits for it (up to 30 s) instead of answering busy. */
int cta_envm_lock_brief(struct cta_daemon *d, const char *eid);
/* Announce a status change to env_status_subscription subscribers (thread-safe). */
void cta_envm_emit(struct cta_daemon *d, const char *eid, int new_state, int new_tr,
                   int old_state, int old_tr);

struct cta_ct_row;
/* Record a state change in the registry and announce it. */
int cta_envm_set_state(struct cta_daemon *d, struct cta_ct_row *row, int state, int tr,
                       struct cta_error **err);
/* Caller holds row's lock: read row again (it may have been read before the lock) and
 * make its state agree with what LXC runs: a container that stopped from inside, or was
 * started or stopped by hand behind the agent's back (the registry is fixed, the change
 * announced). A start, stop, restart or set transition still in the row was left by a
 * failed registry write (its operation would hold the lock) and is cleared; a row
 * creating, destroying or migrating is left as it is. */
int cta_envm_refresh_row(struct cta_daemon *d, struct cta_ct_row *row, struct cta_error **err);
/* Whether cta_envm_refresh_row would fix row, LXC running it or not (runs): its state
 * says otherwise, or it holds a start, stop, restart or set transition, which only an
 * operation holding the lock has, so found outside one it was left by a failed registry
 * write. A row creating, destroying or migrating, or only configured, never. */
bool cta_envm_row_disagrees(const struct cta_ct_row *row, bool runs);
/* Start / stop a registered container (caller holds its lock). */
int cta_envm_start_row(struct cta_daemon *d, struct cta_ct_row *row, struct cta_error **err);
int cta_envm_stop_row(struct cta_daemon *d, struct cta_ct_row *row, bool force,
                      struct cta_error **err);
/* The container backend and the private root, for migration. */
struct cta_ct_backend *cta_envm_backend(struct cta_daemon *d);
const char *cta_envm_private_root(struct cta_daemon *d);
/* Refuse addresses used by another container of this node or the bridge. */
int cta_envm_check_ips(struct cta_daemon *d, const char *self_eid, const char *const *ips,
                       size_t n, struct cta_error **err);
/* The addresses and limits kept in a row's extra config (ips: 8 slots). */
void cta_envm_row_extra(const struct cta_ct_row *row, char ips[][19], size_t *n_ips,
                        uint64_t *mem, unsigned *cpu);
/* Register a container whose private area is already in place (a migrated
 * one): insert the row (state down) and define it. The row's config_json is
 * replaced; other strings stay the caller's. */
int cta_envm_adopt(struct cta_daemon *d, struct cta_ct_row *row, const char *const *ips,
                   size_t n_ips, uint64_t mem, unsigned cpu, struct cta_error **err);
