/*
 * The daemon's core objects, shared by the files of src/daemon.
 *
 * Threads: one event loop thread owns every struct cta_session and runs all
 * synchronous handlers. Calls that block (PAM, liblxc, migration) run on a
 * job thread of their own; they may only touch their struct cta_call, the
 * thread-safe store and backends, and send packets through cta_call_send()
 * (progress). Their `finish` step runs back on the loop thread.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/packet.h"
#include "proto/writer.h"
#include "util/buf.h"
#include "util/error.h"

struct cta_config;
struct cta_conn;
struct cta_loop;
struct cta_store;
struct cta_tls_server;
struct cta_listener;
struct cta_ratelimit;
struct cta_call;
struct cta_session;
struct cta_envm;
struct cta_envm_watch;
struct cta_chanq;
struct cta_mig_linkrates;

struct cta_daemon {
        struct cta_config *cfg;
        struct cta_loop *loop;
        struct cta_store *store;
        struct cta_tls_server *tls;
        struct cta_listener *tls_ls, *plain_ls;
        struct cta_ratelimit *rl;
        struct cta_mig_linkrates *linkrates; /* the link probe's results, per destination */
        struct cta_envm *envm;  /* containers (vzaenvm), NULL if unavailable */
        struct cta_envm_watch *watch; /* registry vs LXC (envm_watch.c), loop thread */
        char node_eid[37];
        char tls_fingerprint[128];
        uint64_t client_counter;
        struct cta_session *sessions; /* loop thread only */
        atomic_int jobs;              /* job threads running */
        atomic_bool stopping;
};

enum cta_handler_flags {
        CTA_H_PREAUTH = 1u << 0,    /* allowed before login */
        CTA_H_ANYUSER = 1u << 1,    /* any logged-in user; default is admin only */
        CTA_H_SERIAL = 1u << 2,     /* runs on a job thread; later frames wait for it */
        CTA_H_BACKGROUND = 1u << 3, /* runs on a job thread; the connection keeps serving */
        CTA_H_DETACHED = 1u << 4,   /* keeps running when the client disconnects */
};

/*
 * A handler returns 0 or a negative code with *err set. It writes a result
 * frame into call->out (cta_call_begin_result()…cta_call_end_result(), or a
 * proto *_frame builder), or nothing, in which case the reply is <ok/>.
 * For job handlers, `prepare` (optional) runs on the loop thread first,
 * `fn` on the job thread and `finish` (optional) on the loop thread after,
 * whether fn succeeded or not: it sees fn's result in call->result (and
 * call->err) and returns the final result.
 */
typedef int (*cta_handler_fn)(struct cta_call *call, struct cta_error **err);

struct cta_handler {
        const char *op;
        const char *call;
        unsigned flags;
        cta_handler_fn fn;
        cta_handler_fn finish;
        cta_handler_fn prepare;
};

struct cta_session {
        struct cta_daemon *d;
        struct cta_conn *conn;
        struct cta_session *next;
        unsigned refs;
        char client[96]; /* "vzclientN-<node eid>" */
        struct cta_framer *fr;
        bool closed;
        bool logged_in, is_admin, one_time;
        char user[257];
        uid_t uid;
        bool serial_busy;
        bool end_deferred; /* closed while a serial call ran: its end waits for the call */
        struct cta_call *inflight; /* job calls, for system/cancel */
        struct cta_chanq *binsink; /* where binary frames go (an open migration stream) */
        bool bin_discard; /* the stream failed: drop frames still in flight until the source reacts */
        char **subs;
        size_t nsubs;
};

struct cta_call {
        struct cta_session *s;
        struct cta_req *req;
        const struct cta_handler *h;
        struct cta_reply_hdr hdr;
        char op[64];
        struct cta_buf out;     /* the reply frame being built */
        struct cta_xw *w;       /* writer over out, between begin/end_result */
        struct cta_error *err;  /* job result */
        int result;
        atomic_bool cancelled;
        struct cta_call *next_inflight;
        void *ctx;              /* handler state */
        void (*ctx_free)(void *);
};

/* Handler tables of the operators (NULL-terminated). */
extern const struct cta_handler cta_system_handlers[];
extern const struct cta_handler cta_envm_handlers[];
extern const struct cta_handler cta_mig_dst_handlers[];
extern const struct cta_handler cta_relocator_handlers[];

/* Start a result reply body in the operator element; returns the writer. */
struct cta_xw *cta_call_begin_result(struct cta_call *call);
int cta_call_end_result(struct cta_call *call, struct cta_error **err);
/* Send a progress packet for this call if the request asked for progress.
 * Thread-safe. */
void cta_call_progress(struct cta_call *call, const struct cta_progress *p);
bool cta_call_cancelled(struct cta_call *call);

/* Sessions and connections (server.c). */
int cta_server_start(struct cta_daemon *d, char ret_tls[80], char ret_plain[80],
                     struct cta_error **err);
void cta_server_stop(struct cta_daemon *d);
/* Send a frame to every session subscribed to `name`. Loop thread only. */
void cta_server_broadcast(struct cta_daemon *d, const char *name, const struct cta_buf *frame);
/* Run work(arg) on a job thread, then done(arg) on the loop thread.
 * -CTA_E_TOO_MANY when max_jobs threads already run. */
int cta_job_spawn(struct cta_daemon *d, void (*work)(void *), void (*done)(void *), void *arg);
