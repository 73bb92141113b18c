/* The vzaenvm operator: containers on this node (envm.c). */
#pragma once

struct cta_daemon;
struct cta_error;

/* Open the container backend and reconcile the registry with what runs. */
int cta_envm_init(struct cta_daemon *d, struct cta_error **err);
/* Called once the listeners accept: start on_boot containers. */
void cta_envm_started(struct cta_daemon *d);
void cta_envm_free(struct cta_daemon *d);
