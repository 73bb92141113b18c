/* The vzaenvm operator. Containers arrive with the containers issue. */
#include "daemon/daemon.h"
#include "daemon/envm.h"

int cta_envm_init(struct cta_daemon *d, struct cta_error **err)
{
        return 0;
}

void cta_envm_started(struct cta_daemon *d)
{
}

void cta_envm_free(struct cta_daemon *d)
{
}

const struct cta_handler cta_envm_handlers[] = {
        { NULL, NULL, 0, NULL, NULL, NULL },
};
