/* The stream queue between the loop thread and a migration's receiver (daemon/mig.h):
 * bytes come out in order however they went in (copied by push, or read in place into a
 * reserved span and committed), across the ring's wrap, and a closed queue takes none. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/mig.h"
#include "tap.h"
#include "util/error.h"
#include "util/util.h"

#define TOTAL (24u << 20) /* three times the queue: the ring wraps */

static uint8_t byte_at(size_t i)
{
        return (uint8_t)(i * 131u + (i >> 12));
}

struct consumer {
        struct cta_chanq *q;
        size_t got;
        bool in_order;
        long end;
};

static void *consume(void *arg)
{
        struct consumer *c = arg;
        static uint8_t buf[100000];
        c->in_order = true;
        for (;;) {
                long n = cta_chanq_pop(c->q, buf, sizeof(buf));
                if (n <= 0) {
                        c->end = n;
                        return NULL;
                }
                for (long i = 0; i < n; i++)
                        if (buf[i] != byte_at(c->got + (size_t)i))
                                c->in_order = false;
                c->got += (size_t)n;
        }
}

TEST(chanq__push_and_in_place_in_order)
{
        /* no connection: nothing to pause, the producer just waits for room */
        struct cta_chanq *q = cta_chanq_new(NULL, 8u << 20);
        struct consumer c = { .q = q };
        pthread_t th;
        ASSERT_INT_EQ(pthread_create(&th, NULL, consume, &c), 0);
        static uint8_t piece[70000];
        size_t sent = 0, in_place = 0;
        for (unsigned k = 0; sent < TOTAL; k++) {
                size_t want = 1 + (k * 7919u) % sizeof(piece);
                if (want > TOTAL - sent)
                        want = TOTAL - sent;
                pthread_mutex_lock(&q->mu);
                bool full = q->cap - q->len < want + (1u << 20);
                pthread_mutex_unlock(&q->mu);
                if (full) {
                        usleep(200);
                        continue;
                }
                size_t len = 0;
                uint8_t *p = k % 2 ? cta_chanq_reserve(q, 1, &len) : NULL;
                if (p) {
                        size_t n = len < want ? len : want;
                        for (size_t i = 0; i < n; i++)
                                p[i] = byte_at(sent + i);
                        cta_chanq_commit(q, n, k % 5 == 0);
                        sent += n;
                        in_place += n;
                } else {
                        for (size_t i = 0; i < want; i++)
                                piece[i] = byte_at(sent + i);
                        ASSERT_OK(cta_chanq_push(q, piece, want, k % 5 == 0));
                        sent += want;
                }
        }
        cta_chanq_close(q, 0);
        pthread_join(th, NULL);
        ASSERT_TRUE(c.in_order);
        ASSERT_SIZE_EQ(c.got, TOTAL);
        ASSERT_INT_EQ(c.end, 0);
        ASSERT_TRUE(in_place > TOTAL / 4); /* both ways were taken */
        cta_chanq_free(q);
        return 0;
}

TEST(chanq__closed_takes_nothing)
{
        struct cta_chanq *q = cta_chanq_new(NULL, 1u << 20);
        size_t len = 0;
        uint8_t *p = cta_chanq_reserve(q, 16, &len);
        ASSERT_NOT_NULL(p);
        ASSERT_TRUE(len >= 16);
        /* the receiver gives up while bytes are being read in place: they are dropped */
        cta_chanq_close(q, -CTA_E_MIG_STREAM);
        memset(p, 'x', 16);
        cta_chanq_commit(q, 16, true);
        ASSERT_NULL(cta_chanq_reserve(q, 1, &len));
        ASSERT_SIZE_EQ(len, 0);
        ASSERT_INT_EQ(cta_chanq_push(q, "y", 1, true), -CTA_E_INVALID);
        char b[4];
        ASSERT_INT_EQ(cta_chanq_pop(q, b, sizeof(b)), -CTA_E_MIG_STREAM);
        /* too little contiguous room: NULL, not a short span */
        struct cta_chanq *q2 = cta_chanq_new(NULL, 1000);
        ASSERT_NULL(cta_chanq_reserve(q2, (1u << 20) + 1000 + 1, &len));
        ASSERT_NOT_NULL(cta_chanq_reserve(q2, (1u << 20) + 1000, &len));
        cta_chanq_free(q2);
        cta_chanq_free(q);
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(chanq__push_and_in_place_in_order), T(chanq__closed_takes_nothing)));
}
