/*
 * The epoll loop. fd registrations are heap objects so that an event already
 * returned by epoll_wait() for an fd that a callback deleted (and maybe
 * reused) in the same round is recognised as stale and dropped; the objects
 * are freed after the round. Timers live in a slot table with a binary heap
 * of slot indices on top: an id is (generation << 32 | slot + 1), so cancel is
 * O(log n) and a stale id can never cancel a newer timer in the same slot.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net/loop.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

#define LOOP_MAX_EVENTS 128
#define TIMER_NONE UINT32_MAX

struct loop_io {
        int fd;
        bool dead;
        cta_io_cb cb;
        void *data;
        struct loop_io *next_dead;
};

struct loop_timer {
        uint64_t deadline;
        uint64_t seq;
        cta_timer_cb cb;
        void *data;
        uint32_t gen;
        uint32_t heap_idx;  /* TIMER_NONE when the slot is free */
        uint32_t next_free; /* free list link */
};

struct loop_post {
        struct loop_post *next;
        void (*fn)(void *data);
        void *data;
};

struct cta_loop {
        int epfd;
        int evfd;

        struct loop_io **ios; /* indexed by fd */
        size_t n_ios;
        struct loop_io *dead; /* deleted during this round, freed after it */

        struct loop_timer *timers;
        uint32_t n_timers;
        uint32_t free_timer;
        uint32_t *heap;
        uint32_t heap_len;
        uint64_t timer_seq;

        pthread_mutex_t post_lock;
        struct loop_post *post_head;
        struct loop_post **post_tail;
        atomic_bool wake_pending;

        atomic_bool stop;
        atomic_bool running;
        pthread_t thread;
};

/* ---- timers ---- */

static bool timer_before(const struct cta_loop *l, uint32_t a, uint32_t b)
{
        const struct loop_timer *ta = &l->timers[a], *tb = &l->timers[b];

        if (ta->deadline != tb->deadline)
                return ta->deadline < tb->deadline;
        return ta->seq < tb->seq;
}

static void heap_set(struct cta_loop *l, uint32_t idx, uint32_t slot)
{
        l->heap[idx] = slot;
        l->timers[slot].heap_idx = idx;
}

static void heap_up(struct cta_loop *l, uint32_t idx)
{
        uint32_t slot = l->heap[idx];

        while (idx > 0) {
                uint32_t parent = (idx - 1) / 2;
                if (!timer_before(l, slot, l->heap[parent]))
                        break;
                heap_set(l, idx, l->heap[parent]);
                idx = parent;
        }
        heap_set(l, idx, slot);
}

static void heap_down(struct cta_loop *l, uint32_t idx)
{
        uint32_t slot = l->heap[idx];

        for (;;) {
                uint32_t child = 2 * idx + 1;
                if (child >= l->heap_len)
                        break;
                if (child + 1 < l->heap_len && timer_before(l, l->heap[child + 1], l->heap[child]))
                        child++;
                if (!timer_before(l, l->heap[child], slot))
                        break;
                heap_set(l, idx, l->heap[child]);
                idx = child;
        }
        heap_set(l, idx, slot);
}

static void heap_remove(struct cta_loop *l, uint32_t idx)
{
        uint32_t last = l->heap[--l->heap_len];

        if (idx == l->heap_len)
                return;
        heap_set(l, idx, last);
        heap_up(l, idx);
        heap_down(l, l->timers[last].heap_idx);
}

static void timer_slot_release(struct cta_loop *l, uint32_t slot)
{
        struct loop_timer *t = &l->timers[slot];

        t->heap_idx = TIMER_NONE;
        t->cb = NULL;
        t->data = NULL;
        if (++t->gen == 0)
                t->gen = 1;
        t->next_free = l->free_timer;
        l->free_timer = slot;
}

uint64_t cta_loop_timer_add(struct cta_loop *l, uint64_t after_ms, cta_timer_cb cb, void *data)
{
        uint64_t now = cta_now_ms();
        uint32_t slot;

        assert(l && cb);
        if (l->free_timer == TIMER_NONE) {
                uint32_t n = l->n_timers ? l->n_timers * 2 : 64;
                assert(n > l->n_timers && n < TIMER_NONE);
                l->timers = cta_xrealloc(l->timers, n * sizeof(*l->timers));
                l->heap = cta_xrealloc(l->heap, n * sizeof(*l->heap));
                for (uint32_t i = n; i > l->n_timers; i--) {
                        struct loop_timer *t = &l->timers[i - 1];
                        *t = (struct loop_timer){ .gen = 1, .heap_idx = TIMER_NONE,
                                                  .next_free = l->free_timer };
                        l->free_timer = i - 1;
                }
                l->n_timers = n;
        }
        slot = l->free_timer;
        struct loop_timer *t = &l->timers[slot];
        l->free_timer = t->next_free;
        t->deadline = after_ms > UINT64_MAX - now ? UINT64_MAX : now + after_ms;
        t->seq = l->timer_seq++;
        t->cb = cb;
        t->data = data;
        l->heap[l->heap_len] = slot;
        t->heap_idx = l->heap_len++;
        heap_up(l, t->heap_idx);
        return ((uint64_t)t->gen << 32) | ((uint64_t)slot + 1);
}

void cta_loop_timer_cancel(struct cta_loop *l, uint64_t id)
{
        uint32_t low = (uint32_t)id, gen = (uint32_t)(id >> 32);

        if (!l || low == 0 || low > l->n_timers)
                return;
        uint32_t slot = low - 1;
        struct loop_timer *t = &l->timers[slot];
        if (t->gen != gen || t->heap_idx == TIMER_NONE)
                return;
        heap_remove(l, t->heap_idx);
        timer_slot_release(l, slot);
}

/* Fire due timers. Timers added by callbacks wait for the next round even if
 * already due, so a callback that re-adds itself with 0 ms cannot starve I/O. */
static void loop_run_timers(struct cta_loop *l)
{
        uint64_t now = cta_now_ms();
        uint64_t seq_limit = l->timer_seq;

        while (l->heap_len > 0) {
                uint32_t slot = l->heap[0];
                struct loop_timer *t = &l->timers[slot];
                if (t->deadline > now || t->seq >= seq_limit)
                        break;
                cta_timer_cb cb = t->cb;
                void *data = t->data;
                heap_remove(l, 0);
                timer_slot_release(l, slot);
                cb(l, data);
        }
}

static int loop_timeout(struct cta_loop *l)
{
        bool posts;

        pthread_mutex_lock(&l->post_lock);
        posts = l->post_head != NULL;
        pthread_mutex_unlock(&l->post_lock);
        if (posts)
                return 0;
        if (l->heap_len == 0)
                return -1;
        uint64_t now = cta_now_ms(), deadline = l->timers[l->heap[0]].deadline;
        if (deadline <= now)
                return 0;
        uint64_t d = deadline - now;
        return d > INT_MAX ? INT_MAX : (int)d;
}

/* ---- posts ---- */

void cta_loop_post(struct cta_loop *l, void (*fn)(void *data), void *data)
{
        struct loop_post *p = cta_xmalloc(sizeof(*p));

        *p = (struct loop_post){ .fn = fn, .data = data };
        pthread_mutex_lock(&l->post_lock);
        *l->post_tail = p;
        l->post_tail = &p->next;
        pthread_mutex_unlock(&l->post_lock);

        /* The loop thread looks at the queue before it sleeps; others wake it,
         * once per batch. */
        if (atomic_load(&l->running) && pthread_equal(pthread_self(), l->thread))
                return;
        if (!atomic_exchange(&l->wake_pending, true)) {
                uint64_t one = 1;
                ssize_t n;
                do
                        n = write(l->evfd, &one, sizeof(one));
                while (n < 0 && errno == EINTR);
        }
}

/* Run the posts queued so far; ones queued meanwhile wait for the next round. */
static size_t loop_run_posts(struct cta_loop *l)
{
        struct loop_post *p;
        size_t n = 0;

        atomic_store(&l->wake_pending, false);
        pthread_mutex_lock(&l->post_lock);
        p = l->post_head;
        l->post_head = NULL;
        l->post_tail = &l->post_head;
        pthread_mutex_unlock(&l->post_lock);

        while (p) {
                struct loop_post *next = p->next;
                p->fn(p->data);
                free(p);
                p = next;
                n++;
        }
        return n;
}

static void loop_wake_cb(struct cta_loop *l, int fd, uint32_t events, void *data)
{
        uint64_t v;

        /* Non-blocking: EAGAIN when already drained. */
        (void)!read(fd, &v, sizeof(v));
}

/* ---- fds ---- */

int cta_loop_add_fd(struct cta_loop *l, int fd, uint32_t events, cta_io_cb cb, void *data)
{
        struct loop_io *io;

        if (fd < 0 || !cb)
                return -CTA_E_INVALID;
        if ((size_t)fd >= l->n_ios) {
                size_t n = l->n_ios ? l->n_ios : 64;
                while (n <= (size_t)fd)
                        n *= 2;
                l->ios = cta_xrealloc(l->ios, n * sizeof(*l->ios));
                memset(l->ios + l->n_ios, 0, (n - l->n_ios) * sizeof(*l->ios));
                l->n_ios = n;
        }
        if (l->ios[fd])
                return -CTA_E_INVALID;

        io = cta_xmalloc(sizeof(*io));
        *io = (struct loop_io){ .fd = fd, .cb = cb, .data = data };
        struct epoll_event ev = { .events = events, .data.ptr = io };
        if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int saved = errno;
                free(io);
                errno = saved;
                return -CTA_E_IO;
        }
        l->ios[fd] = io;
        return 0;
}

int cta_loop_mod_fd(struct cta_loop *l, int fd, uint32_t events)
{
        if (fd < 0 || (size_t)fd >= l->n_ios || !l->ios[fd])
                return -CTA_E_INVALID;
        struct epoll_event ev = { .events = events, .data.ptr = l->ios[fd] };
        if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
                return -CTA_E_IO;
        return 0;
}

void cta_loop_del_fd(struct cta_loop *l, int fd)
{
        struct loop_io *io;

        if (!l || fd < 0 || (size_t)fd >= l->n_ios || !l->ios[fd])
                return;
        io = l->ios[fd];
        l->ios[fd] = NULL;
        (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
        io->dead = true;
        io->next_dead = l->dead;
        l->dead = io;
}

static void loop_free_dead(struct cta_loop *l)
{
        while (l->dead) {
                struct loop_io *io = l->dead;
                l->dead = io->next_dead;
                free(io);
        }
}

/* ---- life cycle ---- */

int cta_loop_new(struct cta_loop **ret, struct cta_error **err)
{
        struct cta_loop *l = cta_xcalloc(1, sizeof(*l));
        int r;

        l->epfd = -1;
        l->evfd = -1;
        l->free_timer = TIMER_NONE;
        l->post_tail = &l->post_head;
        pthread_mutex_init(&l->post_lock, NULL);
        atomic_init(&l->wake_pending, false);
        atomic_init(&l->stop, false);
        atomic_init(&l->running, false);

        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0) {
                r = cta_error_errno(err, CTA_E_IO, "epoll_create1");
                goto fail;
        }
        l->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->evfd < 0) {
                r = cta_error_errno(err, CTA_E_IO, "eventfd");
                goto fail;
        }
        if (cta_loop_add_fd(l, l->evfd, EPOLLIN, loop_wake_cb, NULL) < 0) {
                r = cta_error_errno(err, CTA_E_IO, "epoll_ctl");
                goto fail;
        }
        *ret = l;
        return 0;
fail:
        cta_loop_free(l);
        return r;
}

struct cta_loop *cta_loop_free(struct cta_loop *l)
{
        if (!l)
                return NULL;
        /* Posted functions usually carry references (connections); run them
         * so nothing leaks. Bounded in case they keep re-posting. */
        for (int i = 0; i < 1000 && loop_run_posts(l) > 0; i++)
                ;
        loop_free_dead(l);
        for (size_t i = 0; i < l->n_ios; i++)
                free(l->ios[i]);
        free(l->ios);
        free(l->timers);
        free(l->heap);
        while (l->post_head) {
                struct loop_post *p = l->post_head;
                l->post_head = p->next;
                free(p);
        }
        if (l->evfd >= 0)
                close(l->evfd);
        if (l->epfd >= 0)
                close(l->epfd);
        pthread_mutex_destroy(&l->post_lock);
        free(l);
        return NULL;
}

bool cta_loop_in_loop_thread(struct cta_loop *l)
{
        if (!atomic_load(&l->running))
                return true;
        return pthread_equal(pthread_self(), l->thread);
}

int cta_loop_run(struct cta_loop *l)
{
        struct epoll_event evs[LOOP_MAX_EVENTS];
        int r = 0;

        l->thread = pthread_self();
        atomic_store(&l->running, true);
        for (;;) {
                if (atomic_exchange(&l->stop, false))
                        break;
                loop_run_timers(l);
                loop_run_posts(l);
                if (atomic_exchange(&l->stop, false))
                        break;

                int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, loop_timeout(l));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -CTA_E_IO;
                        log_error("epoll_wait: %m");
                        break;
                }
                for (int i = 0; i < n; i++) {
                        struct loop_io *io = evs[i].data.ptr;
                        if (io->dead)
                                continue;
                        io->cb(l, io->fd, evs[i].events, io->data);
                }
                loop_free_dead(l);
        }
        atomic_store(&l->running, false);
        return r;
}

void cta_loop_stop(struct cta_loop *l)
{
        uint64_t one = 1;
        int saved = errno;
        ssize_t n;

        atomic_store(&l->stop, true);
        do
                n = write(l->evfd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
        errno = saved;
}
