/*
 * Migration between agents (docs/migration-protocol.md): the source side
 * (relocator/migrate_v2v, mig_src.c), the destination side (operator
 * ctamig, mig_dst.c) and what they share (mig_common.c).
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "util/buf.h"

struct cta_call;
struct cta_conn;
struct cta_daemon;
struct cta_error;
struct cta_ct_row;
struct cta_mig_row;
struct cta_session;

#define CTA_MIG_PROTO_MIN 1
#define CTA_MIG_PROTO_MAX 1
#define CTA_MIG_QUEUE_MAX (16u << 20) /* bytes buffered per incoming stream */
/* ... when it is compressed: the decoder takes bytes as they come (the receiver's records
 * wait, decoded, in its own ring), so the queue need not hold a whole record */
#define CTA_MIG_ZQUEUE_MAX (4u << 20)

/* A bounded byte queue between the loop thread (which receives binary
 * frames) and the job thread running the stream receiver. When it holds
 * more than max bytes the connection stops reading: TCP backpressure
 * reaches the source. */
struct cta_chanq {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        uint8_t *ring; /* a ring: releasing never moves what is still queued */
        size_t cap, head, len;
        size_t max;
        bool waiting; /* the job thread sleeps in view: push may have to wake it */
        size_t want;  /* ... until this many bytes are queued */
        bool viewed;  /* the consumer reads the ring in place: it must never move */
        bool closed;
        int close_code; /* 0 = clean end, else -CTA_E_* */
        bool paused;
        struct cta_conn *conn; /* referenced */
};
struct cta_chanq *cta_chanq_new(struct cta_conn *conn, size_t max);
void cta_chanq_free(struct cta_chanq *q);
/* Loop thread: queue bytes; -CTA_E_INVALID if the queue is closed. A waiting consumer
 * is woken once CTA_CHANQ_WAKE bytes are queued or at a boundary (the end of a frame):
 * not for every TLS record's worth, which cost a context switch per 16 KiB. */
#define CTA_CHANQ_WAKE (1u << 20)
int cta_chanq_push(struct cta_chanq *q, const void *data, size_t len, bool boundary);
/* Loop thread, instead of push: where the next bytes may be written in place (saving a
 * copy when the socket is read straight into it), at most *len contiguous bytes; NULL
 * when the queue is closed or has less than min room there. Then commit what was
 * written (nothing else may touch the queue from this thread in between). */
void *cta_chanq_reserve(struct cta_chanq *q, size_t min, size_t *len);
void cta_chanq_commit(struct cta_chanq *q, size_t n, bool boundary);
/* Any thread: no more data; code 0 = end of stream, else the reason. */
void cta_chanq_close(struct cta_chanq *q, int code);
/* Job thread: the queued bytes read in place, without a copy. Waits until
 * at least want bytes are queued (0: does not wait) and returns how many are, starting at
 * ring + *head and wrapping at *cap (the ring never moves once viewed). Fewer than want
 * only after a clean close; -code after close(code) with fewer than want queued;
 * -CTA_E_TOO_LARGE if want could never be queued (more than the queue's max). */
long cta_chanq_view(struct cta_chanq *q, size_t want, const uint8_t **ring, size_t *cap,
                    size_t *head);
/* Job thread: the first n viewed bytes are done with (their room goes back to the loop). */
void cta_chanq_release(struct cta_chanq *q, size_t n);

/* Background flushes of the file system a stream arrives into (mig_flush.c): one
 * every CTA_MIG_FLUSH_EVERY_MS, and sooner once the receiver has counted
 * CTA_MIG_FLUSH_EVERY_BYTES of small files in the page cache (give it &cached as
 * cta_mig_recv_opts.cached_bytes). */
#define CTA_MIG_FLUSH_EVERY_MS 1000
#define CTA_MIG_FLUSH_EVERY_BYTES (64ull << 20)
struct cta_mig_flusher {
        pthread_mutex_t mu;
        pthread_cond_t cv;
        bool stop;
        int fd;
        uint64_t every_ms;
        uint64_t cached;  /* the receiver's count (relaxed atomic) */
        uint64_t flushes; /* done so far (read it after _stop) */
        pthread_t th;
};
/* A flush every every_ms (CTA_MIG_FLUSH_EVERY_MS; tests take longer) or on bytes. 0, or
 * -1 when no thread could be started (then nothing flushes before the end). */
int cta_mig_flusher_start(struct cta_mig_flusher *f, int fd, uint64_t every_ms);
void cta_mig_flusher_stop(struct cta_mig_flusher *f);

/* STATE_DIR/blockmaps: per-file block hashes recorded while files are sent
 * or received, so a later migration of a large file sends only the blocks
 * that changed (a cache: may be emptied at any time). Created on first use;
 * caller frees. */
char *cta_mig_blockmap_dir(struct cta_daemon *d);

/* Journal details are "key=base64(value)" lines. */
void cta_kv_add(struct cta_buf *b, const char *key, const char *value);
/* A copy of the value of key (caller frees), or NULL. */
char *cta_kv_get(const char *detail, const char *key);
/* Journal migration id's step `state` (table migrations; role CTA_MIG_ROLE_*, peer may be
 * NULL). A failure is logged; err NULL: the step may go on without it, else *err says so
 * (the steps recovery must see). */
int cta_mig_journal(struct cta_daemon *d, const char *id, const char *role, const char *eid,
                    const char *peer, const char *state, const char *detail,
                    struct cta_error **err);

/* The registry note "<what>:<eid>" (table meta): a copy (caller frees), or NULL if none or
 * empty; and setting it ("" clears it). Notes: "retired" (where the retired private area
 * is), "staging-lineage", and the marks below. */
char *cta_mig_note(struct cta_daemon *d, const char *what, const char *eid);
void cta_mig_note_set(struct cta_daemon *d, const char *what, const char *eid, const char *v);

/*
 * Marks: what lets a later migration of a container trust a copy it finds at the other end
 * (docs/migration-protocol.md, "A copy that descends from an earlier migration"). A
 * record "<migration id> <sec>.<nsec>" under "<kind>:<eid>" in the node's meta table says:
 * every entry of that copy that this node still has with a ctime before the time is as
 * this node has it. Kinds: CTA_MARK_ARRIVED (written by a destination at commit, the
 * copy the source retired), CTA_MARK_STAGED (written by a source before its first stream
 * into a fresh staging area, for a retry against what a failure kept there). And
 * CTA_MARK_RETIRED, written by a source when it retires the private area: the migration
 * it left with (the lineage it offers when the container comes back) and when, so that
 * a change to that copy since (by hand, or a return that failed half way) is seen.
 */
/* A change a moment after the clock was read may get an older file time: the kernel
 * stamps files from a clock updated once per tick (4 ms here; 10 ms at HZ=100). */
#define CTA_MIG_TICK_MARGIN_NS 20000000L
#define CTA_MARK_ARRIVED "arrived"
#define CTA_MARK_STAGED "staged"
#define CTA_MARK_RETIRED "retired-mark"
void cta_mig_mark_put(struct cta_daemon *d, const char *kind, const char *eid, const char *mid,
                      const struct timespec *t);
/* The mark of kind for eid if it was written for migration mid and is not in the future
 * (a clock set back): true and *ret, else false. */
bool cta_mig_mark_get(struct cta_daemon *d, const char *kind, const char *eid, const char *mid,
                      struct timespec *ret);
/* Whatever mark of kind eid has: its migration id and time. */
bool cta_mig_mark_read(struct cta_daemon *d, const char *kind, const char *eid, char id[37],
                       struct timespec *ret);

/* Automatic compression (migrate_compress = auto): the source times a probe of
 * CTA_MIG_PROBE_BYTES (at most CTA_MIG_PROBE_MS of sending) before a tree of at least
 * CTA_MIG_PROBE_MIN_DATA bytes, and cta_mig_auto_level() turns the rate it measured
 * (MB/s, < 0: not measured) into a zstd level: 0 (none) at below_mbs or faster, or
 * when nothing was measured; 1 below it; CTA_COMPRESS_LEVEL_ON below an eighth of it,
 * where the link is so slow that a better ratio pays for the slower compressor. */
#define CTA_MIG_PROBE_MIN_DATA (64ull << 20)
#define CTA_MIG_PROBE_BYTES (8u << 20)
#define CTA_MIG_PROBE_MS 250
int cta_mig_auto_level(double mbs, uint64_t below_mbs);

/* The rates the probe measured, per destination ("tls:ADDR:PORT"), for later migrations
 * to the same node: one within migrate_probe_reuse_s of the probe takes its rate instead
 * of probing again (an evacuation of many containers to one node; a retry after a
 * failure; a second pass that sends little). At most CTA_MIG_LINKRATES destinations, the
 * least recently measured replaced. Safe from any thread; NULL is an empty table. */
#define CTA_MIG_LINKRATES 32
struct cta_mig_linkrates *cta_mig_linkrates_new(void);
void cta_mig_linkrates_free(struct cta_mig_linkrates *t);
void cta_mig_linkrate_put(struct cta_mig_linkrates *t, const char *dst, double mbs,
                          uint64_t now_ms);
/* The rate measured to dst at most max_age_ms before now_ms: true, *mbs and *age_ms. */
bool cta_mig_linkrate_get(struct cta_mig_linkrates *t, const char *dst, uint64_t now_ms,
                          uint64_t max_age_ms, double *mbs, uint64_t *age_ms);

/* Destination side (mig_dst.c). */
/* Binary frame received on a session: feed its open stream. Loop thread.
 * -CTA_E_PROTO if the session has no stream open. */
int cta_mig_dst_binary(struct cta_session *s, const void *data, size_t len, bool frame_end);
/* Loop thread: where the socket may be read straight into the open stream's queue (at
 * least min bytes, at most *len), or NULL; then commit the n bytes read there. */
void *cta_mig_dst_binary_span(struct cta_session *s, size_t min, size_t *len);
void cta_mig_dst_binary_commit(struct cta_session *s, size_t n, bool frame_end);
/* The session went away: abort what it left half done. Loop thread. */
void cta_mig_dst_session_closed(struct cta_session *s);
/* Start-up: finish or undo what a crash interrupted, both roles (mig_settle.c). */
int cta_mig_recover(struct cta_daemon *d, struct cta_error **err);
/* A source's journal entry jr: finish it (retire the copy when the destination committed,
 * restore the container when it did not, asking the destination's status for one left in
 * "committing"). False while the destination cannot tell (the container then stays
 * stopped and marked migrating), or the registry cannot take the retire or restore yet.
 * mig_settle.c.
 * verdict: CTA_MIG_ASK, or the operator's word (relocator/settle) for when the
 * destination does not answer: the destination's answer, when it gives one, still wins
 * (then *err says so, error 511, and it is settled); a copy declared moved is retired but
 * never deleted. With a verdict, *err says why it is not settled. */
enum cta_mig_verdict { CTA_MIG_ASK, CTA_MIG_STAYS, CTA_MIG_MOVED };
/* (mig_settle.c) After the commit: the destination owns the container; retire the copy
 * here (undefine; rename the private area to .migrated, or remove it; delete the row).
 * The caller holds the container's lock. */
int cta_mig_retire(struct cta_daemon *d, struct cta_ct_row *row, bool remove, const char *mid,
                   struct cta_error **err);
/* (mig_settle.c) Not committed: make the container as it was (not migrating; running if it
 * ran). < 0 only while the registry cannot take it: the caller keeps the container locked
 * and the in-doubt job tries again. The caller holds the container's lock. */
int cta_mig_restore(struct cta_daemon *d, const char *eid, bool was_running,
                    struct cta_error **err);
/* (mig_dst.c) The staging area of a migration that did not commit: a reused earlier copy
 * (base_from) goes back where it came from, a kept one stays for a retry when keep,
 * otherwise it is removed. */
void cta_mig_drop_staging(struct cta_daemon *d, const char *eid, const char *parent,
                          const char *name, const char *base_from, bool keep);
/* (mig_src.c) Ask the destination whether migration id committed: 2 yes and the container
 * runs there, 1 yes, 0 no; -1 no answer, -2 it is committing (both: ask again). */
int cta_mig_ask_status(struct cta_daemon *d, const char *host, uint16_t port, bool tls,
                       const char *id, const char *token);
bool cta_mig_settle_src(struct cta_daemon *d, const struct cta_mig_row *jr,
                        enum cta_mig_verdict verdict, struct cta_error **err);
/*
 * Migrations in doubt (mig_doubt.c): the commit's outcome is unknown, so the container
 * stays locked (every call on it answers busy) while a job asks the destination again,
 * 2 s after this and then at doubling intervals up to a minute, until it can settle it;
 * then it unlocks it. lock: take the container's lock (start-up); else the caller holds
 * it and hands it over. Any thread.
 */
void cta_mig_doubt_add(struct cta_daemon *d, const char *id, const char *eid, bool lock);
/* Destination role: start the committed container eid as its source asked (caller holds
 * its lock, or nothing else runs; err must not be NULL): 1 started (or it runs already),
 * 0 nothing to start (gone meanwhile, or in another state), < 0 (*err) the start failed;
 * -CTA_E_STORE when the registry could not take it. */
int cta_mig_dst_start(struct cta_daemon *d, const char *eid, struct cta_error **err);
/* Such a start that failed on the registry: the in-doubt job tries it again on its
 * schedule (2 s, doubling up to a minute) and journals migration id "done" once it is
 * started or fails otherwise. */
void cta_mig_start_later(struct cta_daemon *d, const char *id, const char *eid);
/* The operator's word on eid's migration in doubt (relocator/settle; cta_mig_settle_src
 * with that verdict). Job thread. 406 when eid has none, 110 while the job is asking. */
int cta_mig_doubt_settle(struct cta_daemon *d, const char *eid, enum cta_mig_verdict verdict,
                         struct cta_error **err);
/* relocator/settle's handler (cta_relocator_handlers). */
int cta_mig_settle_prepare(struct cta_call *call, struct cta_error **err);
int cta_mig_settle_run(struct cta_call *call, struct cta_error **err);

/*
 * Test hook: when the environment variable CTA_FAULT names this point
 * (comma-separated list), the thread writes "<point>" to the file named by
 * CTA_FAULT_FILE (if set) and then blocks forever, so a test can kill -9 the
 * agent exactly there. Points: src_in_probe (the destination dropping frames, after
 * hello), src_after_hello, src_mid_copy,
 * src_before_commit, src_after_commit, dst_mid_receive, dst_mid_patch (the first write
 * into a file patched in place), dst_stream_tail (all of a stream received, before its
 * flush), dst_before_rename, dst_after_rename (in place, not registered yet),
 * dst_after_commit; watch_refresh (the watch holds a container's lock to fix its row,
 * envm_watch.c). With CTA_FAULT_PAUSE_MS the thread
 * sleeps that long there and goes on instead (a test then acts on the other side
 * meanwhile). Without CTA_FAULT this is a no-op.
 */
void cta_fault_point(const char *point);
