/* The vzaenvm operator: containers on this node (envm.c). */
#pragma once

struct cta_daemon;
struct cta_error;

/* Open the container backend and reconcile the registry with what runs. */
int cta_envm_init(struct cta_daemon *d, struct cta_error **err);
/* Called once the listeners accept: start on_boot containers. */
void cta_envm_started(struct cta_daemon *d);
void cta_envm_free(struct cta_daemon *d);

/* Per-container operation lock: CTA_E_BUSY if another operation holds it. */
int cta_envm_lock(struct cta_daemon *d, const char *eid, struct cta_error **err);
void cta_envm_unlock(struct cta_daemon *d, const char *eid);
/* Announce a status change to env_status_subscription subscribers (thread-safe). */
void cta_envm_emit(struct cta_daemon *d, const char *eid, int new_state, int new_tr,
                   int old_state, int old_tr);
