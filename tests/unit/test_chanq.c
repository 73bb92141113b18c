/* The stream queue between the loop thread and a migration's receiver (daemon/mig.h):
 * bytes come out in order however they went in (copied by push, or read in place into a
 * reserved span and committed), across the ring's wrap, viewed in place,
 * and a closed queue takes none. A tree sent through the queue and received from it in
 * place (as the destination daemon does) arrives identical. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/mig.h"
#include "migrate/internal.h"
#include "migrate/stream.h"
#include "tap.h"
#include "util/error.h"
#include "util/util.h"

#define TOTAL (24u << 20) /* three times the queue: the ring wraps */

static uint8_t byte_at(size_t i)
{
        return (uint8_t)(i * 131u + (i >> 12));
}

/* The loop thread's part: TOTAL bytes in pieces of varied sizes, copied by push or (every
 * other piece, when there is room) written in place into a reserved span; some pieces end
 * a frame. The bytes read in place are added to *in_place. */
static int produce(struct cta_chanq *q, size_t *in_place)
{
        static uint8_t piece[70000];
        size_t sent = 0;
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
                        if (in_place)
                                *in_place += n;
                } else {
                        for (size_t i = 0; i < want; i++)
                                piece[i] = byte_at(sent + i);
                        ASSERT_OK(cta_chanq_push(q, piece, want, k % 5 == 0));
                        sent += want;
                }
        }
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
        const uint8_t *ring;
        size_t cap, head;
        ASSERT_INT_EQ(cta_chanq_view(q, 1, &ring, &cap, &head), -CTA_E_MIG_STREAM);
        /* too little contiguous room: NULL, not a short span */
        struct cta_chanq *q2 = cta_chanq_new(NULL, 1000);
        ASSERT_TRUE(q2->cap >= (1u << 20) + 1000 && q2->cap % 4096 == 0);
        ASSERT_NULL(cta_chanq_reserve(q2, q2->cap + 1, &len));
        ASSERT_NOT_NULL(cta_chanq_reserve(q2, q2->cap, &len));
        cta_chanq_free(q2);
        cta_chanq_free(q);
        return 0;
}

/* The consumer views the queue in place with varied wants and releases in varied steps. */
struct viewer {
        struct cta_chanq *q;
        size_t got;
        bool in_order, wrapped;
        long end;
};

static void *view_consume(void *arg)
{
        struct viewer *c = arg;
        c->in_order = true;
        for (unsigned k = 0;; k++) {
                size_t want = k % 3 == 0 ? (1u << 20) + k % 4096 : 1 + (k * 4099u) % 200000;
                const uint8_t *ring;
                size_t cap, head;
                long n = cta_chanq_view(c->q, want, &ring, &cap, &head);
                if (n < 0 || (size_t)n < want) {
                        c->end = n < 0 ? n : (long)(TOTAL - c->got - (size_t)n);
                        /* a clean end: what is left is still there, in order */
                        for (long i = 0; n > 0 && i < n; i++)
                                if (ring[(head + (size_t)i) % cap] != byte_at(c->got + (size_t)i))
                                        c->in_order = false;
                        c->got += n > 0 ? (size_t)n : 0;
                        return NULL;
                }
                if (head + (size_t)n > cap)
                        c->wrapped = true;
                for (size_t i = 0; i < (size_t)n; i++)
                        if (ring[(head + i) % cap] != byte_at(c->got + i))
                                c->in_order = false;
                size_t take = k % 2 ? (size_t)n : want;
                cta_chanq_release(c->q, take);
                c->got += take;
        }
}

TEST(chanq__view_in_place_in_order)
{
        struct cta_chanq *q = cta_chanq_new(NULL, 8u << 20);
        struct viewer c = { .q = q };
        pthread_t th;
        ASSERT_INT_EQ(pthread_create(&th, NULL, view_consume, &c), 0);
        size_t in_place = 0;
        ASSERT_OK(produce(q, &in_place));
        cta_chanq_close(q, 0);
        pthread_join(th, NULL);
        ASSERT_TRUE(c.in_order);
        ASSERT_TRUE(c.wrapped);
        ASSERT_TRUE(in_place > TOTAL / 4); /* both ways were taken */
        ASSERT_SIZE_EQ(c.got, TOTAL);
        ASSERT_INT_EQ(c.end, 0);
        cta_chanq_free(q);
        return 0;
}

TEST(chanq__view_ends_and_limits)
{
        struct cta_chanq *q = cta_chanq_new(NULL, 1u << 20);
        const uint8_t *ring;
        size_t cap, head;
        /* more than the queue may ever hold: an error now, not a wait forever */
        ASSERT_INT_EQ(cta_chanq_view(q, (1u << 20) + 1, &ring, &cap, &head), -CTA_E_TOO_LARGE);
        ASSERT_OK(cta_chanq_push(q, "abcdef", 6, true));
        ASSERT_INT_EQ(cta_chanq_view(q, 0, &ring, &cap, &head), 6);
        ASSERT_INT_EQ(memcmp(ring + head, "abcdef", 6), 0);
        cta_chanq_release(q, 2);
        ASSERT_INT_EQ(cta_chanq_view(q, 4, &ring, &cap, &head), 4);
        ASSERT_INT_EQ(memcmp(ring + head, "cdef", 4), 0);
        /* viewed: a push the ring has no room for fails instead of moving it */
        static uint8_t big[(2u << 20) + 1];
        ASSERT_INT_EQ(cta_chanq_push(q, big, sizeof(big), false), -CTA_E_TOO_LARGE);
        ASSERT_INT_EQ(cta_chanq_view(q, 5, &ring, &cap, &head), -CTA_E_TOO_LARGE);
        cta_chanq_free(q);

        q = cta_chanq_new(NULL, 1u << 20);
        ASSERT_OK(cta_chanq_push(q, "xyz", 3, true));
        cta_chanq_close(q, 0); /* clean end: what is there, short */
        ASSERT_INT_EQ(cta_chanq_view(q, 10, &ring, &cap, &head), 3);
        cta_chanq_free(q);
        q = cta_chanq_new(NULL, 1u << 20);
        ASSERT_OK(cta_chanq_push(q, "xyz", 3, true));
        cta_chanq_close(q, -CTA_E_MIG_LINK_LOST); /* queued bytes first, then the code */
        ASSERT_INT_EQ(cta_chanq_view(q, 3, &ring, &cap, &head), 3);
        ASSERT_INT_EQ(cta_chanq_view(q, 4, &ring, &cap, &head), -CTA_E_MIG_LINK_LOST);
        cta_chanq_free(q);
        return 0;
}

/* ---- a tree through the queue, received in place ---- */

static ssize_t q_view(void *ctx, size_t want, const uint8_t **ring, size_t *cap, size_t *head)
{
        return cta_chanq_view(ctx, want, ring, cap, head);
}

static void q_release(void *ctx, size_t n)
{
        cta_chanq_release(ctx, n);
}

static void q_abort(void *ctx)
{
        cta_chanq_close(ctx, -CTA_E_CANCELLED);
}

struct pump {
        int fd;
        struct cta_chanq *q;
};

/* The loop thread's part: socket → queue, in pieces, some read in place. */
static void *pump_main(void *arg)
{
        struct pump *p = arg;
        static uint8_t buf[100000];
        for (unsigned k = 0;; k++) {
                size_t len = 0, want = 1 + (k * 7919u) % sizeof(buf);
                pthread_mutex_lock(&p->q->mu);
                bool full = p->q->paused;
                bool closed = p->q->closed;
                pthread_mutex_unlock(&p->q->mu);
                if (closed)
                        break;
                if (full) { /* paused: as the loop stops reading the socket, until the
                             * queue is half empty or the receiver waits for more */
                        usleep(100);
                        continue;
                }
                uint8_t *in = k % 2 ? cta_chanq_reserve(p->q, 16384, &len) : NULL;
                ssize_t n = read(p->fd, in ? in : buf, in ? (len < want ? len : want) : want);
                if (n <= 0) {
                        cta_chanq_close(p->q, n < 0 ? -CTA_E_MIG_LINK_LOST : 0);
                        break;
                }
                if (in)
                        cta_chanq_commit(p->q, (size_t)n, k % 7 == 0);
                else if (cta_chanq_push(p->q, buf, (size_t)n, k % 7 == 0) < 0)
                        break;
        }
        return NULL;
}

struct sendjob {
        int root, fd, rc;
};

static void *send_main(void *arg)
{
        struct sendjob *j = arg;
        struct cta_mig_io io = cta_mig_fd_io(j->fd);
        j->rc = cta_mig_send(j->root, &io, NULL, NULL, NULL);
        shutdown(j->fd, SHUT_WR);
        return NULL;
}

static void fill(uint8_t *b, size_t n, uint32_t seed)
{
        for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                b[i] = (uint8_t)(seed >> 16);
        }
}

static int write_at(int dfd, const char *name, uint64_t off, size_t n, uint32_t seed,
                    uint64_t size)
{
        uint8_t *b = malloc(n);
        int fd = openat(dfd, name, O_CREAT | O_WRONLY, 0644);
        if (!b || fd < 0)
                return -1;
        fill(b, n, seed);
        int r = pwrite(fd, b, n, (off_t)off) == (ssize_t)n && ftruncate(fd, (off_t)size) == 0;
        close(fd);
        free(b);
        return r ? 0 : -1;
}

/* Small files, a directory, a symlink, a 20 MiB dense file and a sparse 64 MiB one with
 * data at an unaligned offset: records of every kind and size, the ring's wrap. */
static int build(int dfd)
{
        if (mkdirat(dfd, "d", 0750) < 0 || symlinkat("d/f7", dfd, "ln") < 0)
                return -1;
        int sub = openat(dfd, "d", O_RDONLY | O_DIRECTORY);
        for (unsigned i = 0; i < 300; i++) {
                char name[16];
                snprintf(name, sizeof(name), "f%u", i);
                size_t n = (i * 977u) % 9000;
                if (write_at(sub, name, 0, n, i, n) < 0)
                        return -1;
        }
        close(sub);
        if (write_at(dfd, "dense", 0, 20u << 20, 7, 20u << 20) < 0 ||
            write_at(dfd, "sparse", (5u << 20) + 123, 9u << 20, 8, 64u << 20) < 0)
                return -1;
        return 0;
}

static int receive_through_queue(int src, int parent, const char *name, size_t qmax,
                                 struct cta_mig_stats *st, struct cta_error **err)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -1;
        struct cta_chanq *q = cta_chanq_new(NULL, qmax);
        struct sendjob sj = { .root = src, .fd = sv[1] };
        struct pump pu = { .fd = sv[0], .q = q };
        pthread_t ts, tp;
        pthread_create(&ts, NULL, send_main, &sj);
        pthread_create(&tp, NULL, pump_main, &pu);
        struct cta_mig_io io = { .view = q_view, .release = q_release, .abort = q_abort,
                                 .ctx = q };
        int r = cta_mig_recv(parent, name, &io, NULL, st, err);
        cta_chanq_close(q, -CTA_E_CANCELLED);
        shutdown(sv[0], SHUT_RDWR); /* a sender still writing gets EPIPE */
        pthread_join(tp, NULL);
        pthread_join(ts, NULL);
        close(sv[0]);
        close(sv[1]);
        cta_chanq_free(q);
        return r;
}

TEST(chanq__tree_received_in_place)
{
        signal(SIGPIPE, SIG_IGN);
        char root[] = "/var/tmp/cta-chanq-test.XXXXXX";
        ASSERT_NOT_NULL(mkdtemp(root));
        int rfd = open(root, O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(rfd >= 0);
        ASSERT_OK(mkdirat(rfd, "src", 0755));
        int src = openat(rfd, "src", O_RDONLY | O_DIRECTORY);
        ASSERT_OK(build(src));
        struct cta_error *err = NULL;
        struct cta_mig_stats st = { 0 };
        int r = receive_through_queue(src, rfd, "dst", 8u << 20, &st, &err);
        if (r < 0)
                printf("# recv: %s\n", cta_error_msg(err));
        ASSERT_OK(r);
        int dst = openat(rfd, "dst", O_RDONLY | O_DIRECTORY);
        char *rep = NULL;
        r = cta_mig_tree_compare(src, dst, CTA_MIG_CMP_NO_ROOT, &rep, NULL);
        if (rep)
                printf("# differences: %s\n", rep);
        free(rep);
        ASSERT_OK(r);
        close(dst);
        /* the large files' payloads arrived aligned (padding) and were written to disk
         * from the queue itself: 20 MiB dense, 9 MiB at an unaligned offset, less the
         * records that wrapped around the ring's end (copied: one per 9 MiB queued) */
        printf("# %llu bytes direct, %llu from the queue\n",
               (unsigned long long)st.direct_bytes, (unsigned long long)st.lent_bytes);
        if (st.direct_bytes)
                ASSERT_TRUE(st.lent_bytes >= 24u << 20);

        /* a queue smaller than the sender's 1 MiB data records: a clear failure, no hang,
         * and the staging directory is gone */
        cta_error_free(err);
        err = NULL;
        r = receive_through_queue(src, rfd, "dst2", 256u << 10, NULL, &err);
        ASSERT_TRUE(r < 0);
        ASSERT_INT_EQ(cta_error_code(err), CTA_E_MIG_LINK_LOST);
        struct stat sb;
        ASSERT_TRUE(fstatat(rfd, "dst2", &sb, 0) < 0);
        cta_error_free(err);
        close(src);
        close(rfd);
        ASSERT_OK(cta_rm_rf_at(AT_FDCWD, root));
        return 0;
}

static uint64_t flushes_of(struct cta_mig_flusher *f)
{
        pthread_mutex_lock(&f->mu);
        uint64_t n = f->flushes;
        pthread_mutex_unlock(&f->mu);
        return n;
}

/* Polls (up to ms) until the flusher has done at least n flushes: how long it took. */
static uint64_t wait_flushes(struct cta_mig_flusher *f, uint64_t n, uint64_t ms)
{
        uint64_t t0 = cta_now_ms();
        while (flushes_of(f) < n && cta_now_ms() - t0 < ms)
                usleep(5000);
        return cta_now_ms() - t0;
}

/* The destination's background flusher: none while less than its period passed and
 * fewer than CTA_MIG_FLUSH_EVERY_BYTES of small files are counted; one soon after the
 * receiver counts that many; then one a period after the last. (A period of 4 s here,
 * not the daemon's 1 s, so that a flush on bytes cannot be the clock's on a busy
 * machine.) */
#define TEST_EVERY_MS 4000
TEST(flusher__on_bytes_or_on_the_clock)
{
        char dir[] = "/tmp/cta-flush-test.XXXXXX";
        ASSERT_TRUE(mkdtemp(dir) != NULL);
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        struct cta_mig_flusher f;
        uint64_t t0 = cta_now_ms();
        ASSERT_OK(cta_mig_flusher_start(&f, fd, TEST_EVERY_MS));
        usleep(300 * 1000);
        __atomic_fetch_add(&f.cached, CTA_MIG_FLUSH_EVERY_BYTES / 2, __ATOMIC_RELAXED);
        usleep(300 * 1000);
        uint64_t early = flushes_of(&f), early_at = cta_now_ms() - t0;
        if (early_at < TEST_EVERY_MS)
                ASSERT_INT_EQ(early, 0);
        __atomic_fetch_add(&f.cached, CTA_MIG_FLUSH_EVERY_BYTES / 2, __ATOMIC_RELAXED);
        uint64_t took = wait_flushes(&f, 1, 3000);
        uint64_t at = cta_now_ms() - t0;
        printf("# first flush %llu ms after the bytes, %llu ms after the start\n",
               (unsigned long long)took, (unsigned long long)at);
        ASSERT_TRUE(flushes_of(&f) >= 1);
        ASSERT_TRUE(at < TEST_EVERY_MS); /* the bytes', not the clock's */
        /* nothing more counted: the next comes from the clock, a period later */
        uint64_t one = flushes_of(&f);
        took = wait_flushes(&f, one + 1, 2 * TEST_EVERY_MS);
        printf("# the next flush %llu ms later\n", (unsigned long long)took);
        ASSERT_TRUE(flushes_of(&f) > one);
        ASSERT_TRUE(took >= TEST_EVERY_MS / 2);
        cta_mig_flusher_stop(&f);
        close(fd);
        ASSERT_TRUE(rmdir(dir) == 0);
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(chanq__closed_takes_nothing),
                             T(chanq__view_in_place_in_order), T(chanq__view_ends_and_limits),
                             T(chanq__tree_received_in_place),
                             T(flusher__on_bytes_or_on_the_clock)));
}
