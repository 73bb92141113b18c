/* What both sides of a migration share: the stream queue, journal details. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/mig.h"
#include "net/conn.h"
#include "proto/packet.h"
#include "store/store.h"
#include "util/base64.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

/* Room above the pause threshold for what the loop already read (frames
 * arrive in pieces of one socket read, 64 KiB). */
#define CHANQ_SLACK (1u << 20)

struct cta_chanq *cta_chanq_new(struct cta_conn *conn, size_t max)
{
        struct cta_chanq *q = cta_xcalloc(1, sizeof(*q));
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->cv, NULL);
        /* page-aligned, a whole number of pages: a stream offset aligned like a file
         * offset stays so in the ring, for direct writes from it (cta_mig_io.view) */
        q->cap = cta_io_size(max + CHANQ_SLACK);
        q->ring = cta_xmalloc_io(q->cap);
        q->max = max;
        q->conn = conn ? cta_conn_ref(conn) : NULL;
        return q;
}

void cta_chanq_free(struct cta_chanq *q)
{
        if (!q)
                return;
        if (q->paused && q->conn)
                cta_conn_pause_read(q->conn, false);
        cta_conn_unref(q->conn);
        cta_free_io(q->ring, q->cap);
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        free(q);
}

/* Reading pauses above max, so this only happens if more than the slack
 * arrived in one go: make room rather than fail (bounded by that). */
static void chanq_grow(struct cta_chanq *q, size_t need)
{
        size_t cap = cta_io_size(q->cap * 2 > need ? q->cap * 2 : need);
        uint8_t *r = cta_xmalloc_io(cap); /* aligned as before: direct writes lend from it */
        size_t first = q->cap - q->head < q->len ? q->cap - q->head : q->len;
        memcpy(r, q->ring + q->head, first);
        memcpy(r + first, q->ring, q->len - first);
        cta_free_io(q->ring, q->cap);
        q->ring = r;
        q->cap = cap;
        q->head = 0;
}

/* n more bytes are queued (q->mu held): pause reading above max, wake the consumer. */
static void chanq_added(struct cta_chanq *q, size_t n, bool boundary)
{
        q->len += n;
        if (q->len > q->max && !q->paused) { /* (without a connection: a test's producer) */
                q->paused = true;
                if (q->conn)
                        cta_conn_pause_read(q->conn, true);
        }
        /* a consumer that waits for a large record wakes once it is whole; otherwise
         * at a frame's end, a megabyte, or a full queue (not every TLS record): full, not
         * paused, which needs a connection to pause */
        if (q->waiting && q->len >= q->want &&
            (boundary || q->len >= CTA_CHANQ_WAKE || q->len > q->max ||
             q->want > CTA_CHANQ_WAKE))
                pthread_cond_signal(&q->cv);
}

int cta_chanq_push(struct cta_chanq *q, const void *data, size_t len, bool boundary)
{
        pthread_mutex_lock(&q->mu);
        if (q->closed) {
                pthread_mutex_unlock(&q->mu);
                return -CTA_E_INVALID;
        }
        if (q->cap - q->len < len) {
                if (q->viewed) { /* the consumer reads the ring in place: it cannot move */
                        q->closed = true;
                        q->close_code = -CTA_E_TOO_LARGE;
                        pthread_cond_broadcast(&q->cv);
                        pthread_mutex_unlock(&q->mu);
                        return -CTA_E_TOO_LARGE;
                }
                chanq_grow(q, q->len + len);
        }
        size_t tail = (q->head + q->len) % q->cap;
        size_t first = q->cap - tail < len ? q->cap - tail : len;
        memcpy(q->ring + tail, data, first);
        memcpy(q->ring, (const uint8_t *)data + first, len - first);
        chanq_added(q, len, boundary);
        pthread_mutex_unlock(&q->mu);
        return 0;
}

/* The consumer only reads [head, head + len) and only the loop thread moves the ring
 * (chanq_grow), so the free span after the tail is this thread's until commit. */
void *cta_chanq_reserve(struct cta_chanq *q, size_t min, size_t *len)
{
        pthread_mutex_lock(&q->mu);
        size_t tail = (q->head + q->len) % q->cap;
        size_t room = q->cap - q->len;
        size_t contig = q->cap - tail < room ? q->cap - tail : room;
        bool ok = !q->closed && contig >= min && contig > 0;
        pthread_mutex_unlock(&q->mu);
        *len = ok ? contig : 0;
        return ok ? q->ring + tail : NULL;
}

void cta_chanq_commit(struct cta_chanq *q, size_t n, bool boundary)
{
        pthread_mutex_lock(&q->mu);
        if (!q->closed) /* a receiver that gave up meanwhile: dropped, as push does */
                chanq_added(q, n, boundary);
        pthread_mutex_unlock(&q->mu);
}

static void chanq_resume(struct cta_chanq *q)
{
        q->paused = false;
        if (q->conn)
                cta_conn_pause_read(q->conn, false);
}

/* Bytes were taken (q->mu held): resume reading once half the queue is free. */
static void chanq_taken(struct cta_chanq *q)
{
        if (q->paused && q->len < q->max / 2)
                chanq_resume(q);
}

void cta_chanq_close(struct cta_chanq *q, int code)
{
        pthread_mutex_lock(&q->mu);
        if (!q->closed) {
                q->closed = true;
                q->close_code = code;
        }
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
}

long cta_chanq_view(struct cta_chanq *q, size_t want, const uint8_t **ring, size_t *cap,
                    size_t *head)
{
        /* reading pauses only above max: a consumer waiting for more would wait forever */
        if (want > q->max)
                return -CTA_E_TOO_LARGE;
        pthread_mutex_lock(&q->mu);
        q->viewed = true;
        while (q->len < want && !q->closed) {
                /* what the consumer still holds may keep the queue above the resume mark;
                 * it cannot go on without more, so reading resumes (it pauses again above
                 * max, and want is at most max) */
                if (q->paused)
                        chanq_resume(q);
                q->waiting = true;
                q->want = want;
                pthread_cond_wait(&q->cv, &q->mu);
                q->waiting = false;
        }
        long n = q->len < want && q->close_code ? q->close_code : (long)q->len;
        *ring = q->ring;
        *cap = q->cap;
        *head = q->head;
        pthread_mutex_unlock(&q->mu);
        return n;
}

void cta_chanq_release(struct cta_chanq *q, size_t n)
{
        pthread_mutex_lock(&q->mu);
        if (n > q->len)
                n = q->len;
        q->head = (q->head + n) % q->cap;
        q->len -= n;
        chanq_taken(q);
        pthread_mutex_unlock(&q->mu);
}

void cta_kv_add(struct cta_buf *b, const char *key, const char *value)
{
        if (!value)
                return;
        (void)cta_buf_printf(b, "%s=", key);
        (void)cta_b64_encode_buf(b, value, strlen(value));
        (void)cta_buf_putc(b, '\n');
}

int cta_mig_journal(struct cta_daemon *d, const char *id, const char *role, const char *eid,
                    const char *peer, const char *state, const char *detail,
                    struct cta_error **err)
{
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        if (cta_store_mig_put(d->store, id, role, eid, peer, state, detail, &e) == 0)
                return 0;
        log_error("migration %s: journal '%s': %s", id, state, cta_error_msg(e));
        if (!err)
                return -cta_error_code(e);
        *err = TAKE_PTR(e);
        return cta_error_wrap(err, "cannot journal the migration's step '%s'", state);
}

char *cta_kv_get(const char *detail, const char *key)
{
        size_t klen = strlen(key);
        for (const char *p = detail; p && *p;) {
                const char *eol = strchr(p, '\n');
                size_t len = eol ? (size_t)(eol - p) : strlen(p);
                if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
                        size_t enc = len - klen - 1, n;
                        char *out = cta_xmalloc(cta_b64_decoded_max(enc) + 1);
                        if (cta_b64_decode(p + klen + 1, enc, (uint8_t *)out,
                                           cta_b64_decoded_max(enc), &n) < 0) {
                                free(out);
                                return NULL;
                        }
                        out[n] = '\0';
                        return out;
                }
                p = eol ? eol + 1 : p + len;
        }
        return NULL;
}

void cta_fault_point(const char *point)
{
        const char *list = getenv("CTA_FAULT");
        if (!list || !*list)
                return;
        size_t n = strlen(point);
        for (const char *p = list; (p = strstr(p, point)); p += n) {
                bool start = p == list || p[-1] == ',';
                bool end = p[n] == '\0' || p[n] == ',';
                if (!start || !end)
                        continue;
                const char *file = getenv("CTA_FAULT_FILE");
                if (file)
                        (void)cta_write_file_atomic(file, point, n, 0644, NULL);
                uint64_t ms = 0;
                const char *pause_ms = getenv("CTA_FAULT_PAUSE_MS");
                if (pause_ms && cta_parse_u64(pause_ms, 600000, &ms) == 0 && ms) {
                        usleep((useconds_t)(ms * 1000));
                        return;
                }
                for (;;)
                        pause();
        }
}

char *cta_mig_blockmap_dir(struct cta_daemon *d)
{
        char *dir = cta_xasprintf("%s/blockmaps", d->cfg->state_dir);
        (void)cta_mkdir_p(dir, 0700, NULL);
        return dir;
}

/* ---- registry notes and marks ----------------------------------------------- */

char *cta_mig_note(struct cta_daemon *d, const char *what, const char *eid)
{
        _cleanup_free_ char *key = cta_xasprintf("%s:%s", what, eid);
        char *v = NULL;
        if (cta_store_meta_get(d->store, key, &v, NULL) < 0 || (v && !*v)) {
                free(v);
                return NULL;
        }
        return v;
}

void cta_mig_note_set(struct cta_daemon *d, const char *what, const char *eid, const char *v)
{
        _cleanup_free_ char *key = cta_xasprintf("%s:%s", what, eid);
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        if (cta_store_meta_set(d->store, key, v, &err) < 0)
                log_warning("cannot record the note %s: %s", key, cta_error_msg(err));
}

void cta_mig_mark_put(struct cta_daemon *d, const char *kind, const char *eid, const char *mid,
                      const struct timespec *t)
{
        _cleanup_free_ char *v = cta_xasprintf("%s %lld.%09ld", mid, (long long)t->tv_sec,
                                               (long)t->tv_nsec);
        cta_mig_note_set(d, kind, eid, v);
}

bool cta_mig_mark_read(struct cta_daemon *d, const char *kind, const char *eid, char id[37],
                       struct timespec *ret)
{
        _cleanup_free_ char *v = cta_mig_note(d, kind, eid);
        if (!v)
                return false;
        long long sec;
        long nsec;
        if (sscanf(v, "%36s %lld.%ld", id, &sec, &nsec) != 3 || sec <= 0 || nsec < 0 ||
            nsec >= 1000000000L)
                return false;
        *ret = (struct timespec){ (time_t)sec, nsec };
        return true;
}

bool cta_mig_mark_get(struct cta_daemon *d, const char *kind, const char *eid, const char *mid,
                      struct timespec *ret)
{
        char id[37];
        struct timespec t, now;
        if (!cta_mig_mark_read(d, kind, eid, id, &t) || !streq(id, mid))
                return false;
        clock_gettime(CLOCK_REALTIME, &now);
        if (t.tv_sec > now.tv_sec) /* the clock was set back since: no telling what it missed */
                return false;
        *ret = t;
        return true;
}

int cta_mig_auto_level(double mbs, uint64_t below_mbs)
{
        if (mbs < 0 || mbs >= (double)below_mbs)
                return 0;
        return mbs < (double)below_mbs / 8 ? CTA_COMPRESS_LEVEL_ON : 1;
}

/* ---- link rates measured by the probe -------------------------------------- */

struct cta_mig_linkrates {
        pthread_mutex_t mu;
        struct {
                char dst[320]; /* "" : a free slot */
                double mbs;
                uint64_t at_ms;
        } e[CTA_MIG_LINKRATES];
};

struct cta_mig_linkrates *cta_mig_linkrates_new(void)
{
        struct cta_mig_linkrates *t = cta_xcalloc(1, sizeof(*t));
        pthread_mutex_init(&t->mu, NULL);
        return t;
}

void cta_mig_linkrates_free(struct cta_mig_linkrates *t)
{
        if (!t)
                return;
        pthread_mutex_destroy(&t->mu);
        free(t);
}

void cta_mig_linkrate_put(struct cta_mig_linkrates *t, const char *dst, double mbs,
                          uint64_t now_ms)
{
        if (!t || strlen(dst) >= sizeof(t->e[0].dst))
                return;
        pthread_mutex_lock(&t->mu);
        size_t slot = 0;
        for (size_t i = 0; i < CTA_MIG_LINKRATES; i++) {
                if (streq(t->e[i].dst, dst)) {
                        slot = i;
                        break;
                }
                /* else the first free slot, or the oldest measurement */
                if (t->e[slot].dst[0] && (!t->e[i].dst[0] || t->e[i].at_ms < t->e[slot].at_ms))
                        slot = i;
        }
        snprintf(t->e[slot].dst, sizeof(t->e[slot].dst), "%s", dst);
        t->e[slot].mbs = mbs;
        t->e[slot].at_ms = now_ms;
        pthread_mutex_unlock(&t->mu);
}

bool cta_mig_linkrate_get(struct cta_mig_linkrates *t, const char *dst, uint64_t now_ms,
                          uint64_t max_age_ms, double *mbs, uint64_t *age_ms)
{
        bool found = false;
        if (!t)
                return false;
        pthread_mutex_lock(&t->mu);
        for (size_t i = 0; i < CTA_MIG_LINKRATES && !found; i++) {
                if (!t->e[i].dst[0] || !streq(t->e[i].dst, dst) || now_ms < t->e[i].at_ms ||
                    now_ms - t->e[i].at_ms > max_age_ms)
                        continue;
                *mbs = t->e[i].mbs;
                *age_ms = now_ms - t->e[i].at_ms;
                found = true;
        }
        pthread_mutex_unlock(&t->mu);
        return found;
}
