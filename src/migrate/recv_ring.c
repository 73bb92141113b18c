/* The receiver's ring on the incoming stream (recv_ring.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migrate/internal.h"
#include "migrate/recv_ring.h"
#include "util/error.h"
#include "util/util.h"

#define RING_MIN (8u << 20)
#define READ_MAX (2u << 20)
/* The reader sleeps until this much room is free, so a full ring (the applying thread is
 * the bottleneck with many small files) does not cost a wakeup per consumed record. */
#define READ_MIN_ROOM (1u << 20)

static size_t ring_idx(const struct cta_mig_ring *r, uint64_t at)
{
        return (size_t)((at + r->shift) % r->cap);
}

static void ring_copy_out(const struct cta_mig_ring *r, uint64_t at, void *dst, size_t n)
{
        size_t off = ring_idx(r, at), first = r->cap - off < n ? r->cap - off : n;
        memcpy(dst, r->buf + off, first);
        memcpy((uint8_t *)dst + first, r->buf, n - first);
}

static void *reader_main(void *arg)
{
        struct cta_mig_ring *r = arg;
        pthread_setname_np(pthread_self(), "cta-mig-recv");
        pthread_mutex_lock(&r->mu);
        for (;;) {
                while (!r->stop && r->cap - (size_t)(r->tail - r->head) < READ_MIN_ROOM) {
                        r->reader_waits = true;
                        pthread_cond_wait(&r->cv, &r->mu);
                        r->reader_waits = false;
                }
                if (r->stop || r->tail >= r->stop_at)
                        break;
                size_t off = ring_idx(r, r->tail);
                size_t n = r->cap - off;
                if (n > r->cap - (size_t)(r->tail - r->head))
                        n = r->cap - (size_t)(r->tail - r->head);
                if (n > READ_MAX)
                        n = READ_MAX;
                pthread_mutex_unlock(&r->mu);
                ssize_t got = r->io->read(r->io->ctx, r->own + off, n);
                pthread_mutex_lock(&r->mu);
                if (got <= 0) {
                        r->rerr = got < 0 ? (int)-got : 0;
                        break;
                }
                r->tail += (uint64_t)got;
                /* follow the record lengths so we stop reading after the trailer */
                while (r->stop_at == UINT64_MAX && r->next_hdr + CTA_MIG_REC_HDR <= r->tail) {
                        uint8_t h[CTA_MIG_REC_HDR];
                        ring_copy_out(r, r->next_hdr, h, sizeof(h));
                        uint32_t len = cta_mig_get32(h + 4);
                        if (len > r->max_record) {
                                r->stop_at = r->next_hdr + CTA_MIG_REC_HDR;
                                break;
                        }
                        if (h[0] == CTA_MIG_R_TRAILER)
                                r->stop_at = r->next_hdr + CTA_MIG_REC_HDR + len;
                        r->next_hdr += CTA_MIG_REC_HDR + len;
                }
                /* wake the consumer only once what it waits for is complete */
                if (r->want && (r->tail >= r->want || r->tail >= r->stop_at))
                        pthread_cond_broadcast(&r->cv);
        }
        r->done = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        return NULL;
}

/* The io's ring in place: at least n bytes past the head (0: what is there now). False
 * with rerr set, or with fewer bytes at a clean end. */
bool cta_mig_ring_view(struct cta_mig_ring *r, size_t n)
{
        const uint8_t *base;
        size_t cap, hidx;
        size_t lent = (size_t)(r->head - r->rel); /* still queued before the head */
        ssize_t got = r->io->view(r->io->ctx, n ? lent + n : 0, &base, &cap, &hidx);
        if (got < 0) {
                r->rerr = (int)-got;
                return false;
        }
        r->buf = base;
        r->cap = cap;
        r->shift = (hidx + cap - (size_t)(r->rel % cap)) % cap;
        r->tail = r->rel + (uint64_t)got;
        return r->tail - r->head >= n;
}

/* The stream offset up to which bytes have arrived (without waiting). */
uint64_t cta_mig_ring_tail(struct cta_mig_ring *r)
{
        if (r->view) {
                (void)cta_mig_ring_view(r, 0);
                return r->tail;
        }
        pthread_mutex_lock(&r->mu);
        uint64_t tail = r->tail;
        pthread_mutex_unlock(&r->mu);
        return tail;
}

/* n contiguous bytes at the head, waiting for the reader. */
int cta_mig_ring_get(struct cta_mig_ring *r, size_t n, const uint8_t **ret, struct cta_error **err)
{
        bool have;
        int rerr;
        if (r->view) {
                have = r->tail - r->head >= n || cta_mig_ring_view(r, n);
                rerr = r->rerr;
        } else {
                pthread_mutex_lock(&r->mu);
                while (r->tail - r->head < n && !r->done) {
                        r->want = r->head + n;
                        pthread_cond_wait(&r->cv, &r->mu);
                        r->want = 0;
                }
                have = r->tail - r->head >= n;
                rerr = r->rerr;
                pthread_mutex_unlock(&r->mu);
        }
        if (!have) {
                if (rerr && r->view) /* the io's own code, not an errno */
                        return cta_error_set(err, CTA_E_MIG_LINK_LOST, 0,
                                             "read stream: closed with error %d", rerr);
                if (rerr == EBADMSG) /* a decoder below us (zio.c) could not decode */
                        return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                             "read stream: the compressed stream is corrupt");
                if (rerr)
                        return cta_error_set(err, CTA_E_MIG_LINK_LOST, rerr, "read stream: %s",
                                             strerror(rerr));
                return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                     "stream truncated at byte %llu",
                                     (unsigned long long)r->tail);
        }
        size_t off = ring_idx(r, r->head);
        if (off + n <= r->cap) {
                *ret = r->buf + off;
                return 0;
        }
        if (r->asm_cap < n) {
                r->asm_cap = n;
                r->asm_buf = cta_xrealloc(r->asm_buf, n);
        }
        ring_copy_out(r, r->head, r->asm_buf, n);
        *ret = r->asm_buf;
        return 0;
}

/* Done with n bytes at the head; in view mode those from hold on stay lent (to the
 * direct-I/O helper) and are given back by a later call. */
void cta_mig_ring_consume(struct cta_mig_ring *r, size_t n, uint64_t hold)
{
        if (r->view) {
                r->head += n;
                uint64_t upto = hold < r->head ? hold : r->head;
                if (upto > r->rel) {
                        r->io->release(r->io->ctx, (size_t)(upto - r->rel));
                        r->rel = upto;
                }
                return;
        }
        pthread_mutex_lock(&r->mu);
        r->head += n;
        if (r->reader_waits && r->cap - (size_t)(r->tail - r->head) >= READ_MIN_ROOM)
                pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
}

/* Is [p, p + n) in the io's ring (not the copy of a record that wrapped)? */
bool cta_mig_ring_owns(const struct cta_mig_ring *r, const uint8_t *p, size_t n)
{
        return r->view && p >= r->buf && n <= r->cap && p <= r->buf + (r->cap - n);
}


/* Stream bytes [at, at + n) if the reader already has them, contiguous in the ring. */
const uint8_t *cta_mig_ring_peek(const struct cta_mig_ring *g, uint64_t at, size_t n, uint64_t tail)
{
        if (at + n > tail)
                return NULL;
        size_t off = ring_idx(g, at);
        return off + n <= g->cap ? g->buf + off : NULL;
}

int cta_mig_ring_open(struct cta_mig_ring *g, const struct cta_mig_io *io, uint32_t max_record,
                      struct cta_error **err)
{
        memset(g, 0, sizeof(*g));
        g->io = io;
        g->max_record = max_record;
        g->stop_at = UINT64_MAX;
        pthread_mutex_init(&g->mu, NULL);
        pthread_cond_init(&g->cv, NULL);
        if (io->view && io->release) {
                g->view = true;
                return 0;
        }
        g->cap = (size_t)max_record + CTA_MIG_REC_HDR;
        g->cap = g->cap * 2 < RING_MIN ? RING_MIN : g->cap * 2;
        g->cap = cta_io_size(g->cap);
        g->buf = g->own = cta_xmalloc_io(g->cap); /* direct writes lend from it */
        int rr = pthread_create(&g->th, NULL, reader_main, g);
        if (rr != 0)
                return cta_error_set(err, CTA_E_INTERNAL, rr, "start the reader thread");
        g->started = true;
        return 0;
}

void cta_mig_ring_close(struct cta_mig_ring *g, bool failed)
{
        if (g->view) {
                if (failed && g->io->abort)
                        g->io->abort(g->io->ctx);
                return;
        }
        if (!g->started)
                return;
        pthread_mutex_lock(&g->mu);
        g->stop = true;
        bool reading = !g->done;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        if (reading && failed && g->io->abort)
                g->io->abort(g->io->ctx);
        pthread_join(g->th, NULL);
        g->started = false;
}

void cta_mig_ring_free(struct cta_mig_ring *g)
{
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
        cta_free_io(g->own, g->cap);
        free(g->asm_buf);
}
