/*
 * Listeners and server connections.
 *
 * Threading: the socket, the SSL object and the state machine belong to the
 * loop thread. Other threads touch only the outgoing queue and the request
 * flags, under c->lock, and then "kick" the connection: a cta_loop_post() (one
 * outstanding per connection) makes the loop act on the request. Close
 * requests are handled the same way on the loop thread too, so a callback
 * never runs inside a cta_conn_* call.
 *
 * The fd is watched level-triggered; the interest set follows the state and
 * OpenSSL's WANT_READ / WANT_WRITE (conn_update_interest()). Data OpenSSL has
 * already decrypted is invisible to epoll, so a read round that stops early
 * with SSL_has_pending() re-posts itself.
 *
 * Closing: conn_teardown() does it all at once. A close-after-flush goes
 * FLUSHING (write the queue, close_notify) -> LINGER (shutdown(SHUT_WR), read
 * and discard until EOF or a short timer) -> teardown, so that unread input
 * does not make the kernel reset the connection and destroy the last
 * response in flight. on_close is called when LINGER starts.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "net/conn.h"
#include "net/loop.h"
#include "net/tls-private.h"
#include "net/tls.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

#define CHUNK_MIN (16 * 1024)
#define READ_BUF (64 * 1024)
#define READ_BUDGET (1024 * 1024)  /* per event, for fairness */
#define WRITE_BUDGET (4096 * 1024) /* per event */
#define WRITE_MAX (1024 * 1024)    /* per write call */
#define LINGER_MS 2000
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100

enum conn_state {
        CONN_HANDSHAKE,
        CONN_OPEN,
        CONN_FLUSHING,
        CONN_LINGER,
        CONN_CLOSED,
};

struct chunk {
        struct chunk *next;
        size_t off; /* loop thread only */
        size_t len; /* under c->lock */
        size_t cap;
        char data[];
};

struct cta_listener {
        struct cta_loop *loop;
        int fd;
        SSL_CTX *ctx; /* own reference, NULL = plain */
        const struct cta_conn_ops *ops;
        void *data;
        struct cta_conn *conns;
        unsigned n_conns;
        unsigned max_conns;
        uint64_t hs_timeout_ms;
        size_t max_queue;
        uint64_t resume_timer;
        uint64_t refused;
};

struct cta_conn {
        atomic_uint refs;
        uint64_t id;
        struct cta_loop *loop;
        struct cta_listener *ls; /* NULL once torn down */
        const struct cta_conn_ops *ops;
        void *listener_data;
        void *data;
        struct cta_conn *prev, *next; /* in ls->conns */
        bool tls;
        char peer[INET6_ADDRSTRLEN + 16];
        char peer_addr[INET6_ADDRSTRLEN];
        /* The client certificate's fingerprint, "" for none; set before on_open. */
        char peer_fp[CTA_TLS_FINGERPRINT_MAX];

        /* Loop thread only. */
        int fd;
        SSL *ssl;
        enum conn_state state;
        uint32_t interest;
        bool opened;         /* on_open was called */
        bool close_notified; /* on_close was called */
        bool paused;
        bool write_blocked;  /* the last write would block: wait for the fd */
        bool hs_want_write;
        bool ssl_write_wants_read;
        bool ssl_read_wants_write;
        bool shutdown_sent;
        int ssl_retry_len; /* an SSL_write to repeat with this length */
        uint64_t hs_timer, idle_timer, linger_timer;
        uint64_t idle_ms;
        uint64_t last_active;

        /* Shared, under lock. */
        pthread_mutex_t lock;
        struct chunk *out_head, *out_tail;
        size_t out_bytes;
        size_t out_max;
        bool closed;    /* sends refused */
        bool close_req; /* cta_conn_close() */
        bool flush_req; /* cta_conn_close_after_flush() */
        bool kick_posted;
        bool read_posted;
        /* Set with closed: no on_data after a close request, even in the same
         * read round (read by the loop without the lock). */
        atomic_bool stop_reading;
};

static atomic_uint_fast64_t conn_next_id = 1;

static void conn_update_interest(struct cta_conn *c);
static void conn_do_flush(struct cta_conn *c);
static void conn_do_read(struct cta_conn *c);
static void conn_teardown(struct cta_conn *c, const char *why);

/* ---- references and accessors ---- */

struct cta_conn *cta_conn_ref(struct cta_conn *c)
{
        if (c)
                atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        return c;
}

static void conn_free_queue(struct cta_conn *c)
{
        while (c->out_head) {
                struct chunk *ch = c->out_head;
                c->out_head = ch->next;
                free(ch);
        }
        c->out_tail = NULL;
        c->out_bytes = 0;
}

struct cta_conn *cta_conn_unref(struct cta_conn *c)
{
        if (!c)
                return NULL;
        if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
                return NULL;
        /* The listener's reference goes only at teardown. */
        assert(c->state == CONN_CLOSED);
        conn_free_queue(c);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

void *cta_conn_listener_data(struct cta_conn *c)
{
        return c->listener_data;
}

void cta_conn_set_data(struct cta_conn *c, void *data)
{
        c->data = data;
}

void *cta_conn_get_data(struct cta_conn *c)
{
        return c->data;
}

const char *cta_conn_peer(const struct cta_conn *c)
{
        return c->peer;
}

const char *cta_conn_peer_addr(const struct cta_conn *c)
{
        return c->peer_addr;
}

uint64_t cta_conn_id(const struct cta_conn *c)
{
        return c->id;
}

const char *cta_conn_peer_fingerprint(const struct cta_conn *c)
{
        return c->peer_fp;
}

bool cta_conn_is_tls(const struct cta_conn *c)
{
        return c->tls;
}

bool cta_conn_is_closed(const struct cta_conn *c)
{
        struct cta_conn *m = (struct cta_conn *)c;
        bool closed;

        pthread_mutex_lock(&m->lock);
        closed = m->closed;
        pthread_mutex_unlock(&m->lock);
        return closed;
}

size_t cta_conn_queued(const struct cta_conn *c)
{
        struct cta_conn *m = (struct cta_conn *)c;
        size_t n;

        pthread_mutex_lock(&m->lock);
        n = m->out_bytes;
        pthread_mutex_unlock(&m->lock);
        return n;
}

/* ---- cross-thread requests ---- */

static void conn_kick_cb(void *data)
{
        struct cta_conn *c = data;
        bool close_now, close_flush;

        pthread_mutex_lock(&c->lock);
        c->kick_posted = false;
        close_now = c->close_req;
        close_flush = c->flush_req;
        pthread_mutex_unlock(&c->lock);

        if (c->state == CONN_CLOSED)
                goto out;
        if (close_now) {
                conn_teardown(c, "closed by us");
                goto out;
        }
        if (close_flush) {
                if (c->state == CONN_HANDSHAKE) {
                        conn_teardown(c, "closed by us");
                        goto out;
                }
                if (c->state == CONN_OPEN) {
                        c->state = CONN_FLUSHING;
                        cta_loop_timer_cancel(c->loop, c->idle_timer);
                        c->idle_timer = 0;
                }
        }
        if ((c->state == CONN_OPEN || c->state == CONN_FLUSHING) && !c->write_blocked)
                conn_do_flush(c);
        else
                conn_update_interest(c);
out:
        cta_conn_unref(c);
}

/* Make the loop look at the queue and the request flags. */
static void conn_kick(struct cta_conn *c)
{
        bool post = false;

        pthread_mutex_lock(&c->lock);
        if (!c->kick_posted) {
                c->kick_posted = true;
                post = true;
        }
        pthread_mutex_unlock(&c->lock);
        if (post)
                cta_loop_post(c->loop, conn_kick_cb, cta_conn_ref(c));
}

static void conn_read_cb(void *data)
{
        struct cta_conn *c = data;

        c->read_posted = false;
        if (c->state == CONN_OPEN && !c->paused)
                conn_do_read(c);
        cta_conn_unref(c);
}

/* Loop thread: read again soon (decrypted data epoll cannot see). */
static void conn_schedule_read(struct cta_conn *c)
{
        if (c->read_posted)
                return;
        c->read_posted = true;
        cta_loop_post(c->loop, conn_read_cb, cta_conn_ref(c));
}

int cta_conn_send(struct cta_conn *c, const void *data, size_t len)
{
        struct chunk *big = NULL;

        /* Copy large payloads outside the lock so the loop is not held up. */
        if (len >= CHUNK_MIN) {
                big = cta_xmalloc(sizeof(*big) + len);
                *big = (struct chunk){ .len = len, .cap = len };
                memcpy(big->data, data, len);
        }

        pthread_mutex_lock(&c->lock);
        if (c->closed) {
                pthread_mutex_unlock(&c->lock);
                free(big);
                return -CTA_E_IO;
        }
        if (len > c->out_max || c->out_bytes > c->out_max - len) {
                pthread_mutex_unlock(&c->lock);
                free(big);
                return -CTA_E_TOO_LARGE;
        }
        if (len == 0) {
                pthread_mutex_unlock(&c->lock);
                return 0;
        }
        if (!big && c->out_tail && c->out_tail->cap - c->out_tail->len >= len) {
                memcpy(c->out_tail->data + c->out_tail->len, data, len);
                c->out_tail->len += len;
        } else {
                struct chunk *ch = big;
                if (!ch) {
                        ch = cta_xmalloc(sizeof(*ch) + CHUNK_MIN);
                        *ch = (struct chunk){ .len = len, .cap = CHUNK_MIN };
                        memcpy(ch->data, data, len);
                }
                if (c->out_tail)
                        c->out_tail->next = ch;
                else
                        c->out_head = ch;
                c->out_tail = ch;
        }
        c->out_bytes += len;
        pthread_mutex_unlock(&c->lock);

        conn_kick(c);
        return 0;
}

void cta_conn_close_after_flush(struct cta_conn *c)
{
        pthread_mutex_lock(&c->lock);
        c->closed = true;
        c->flush_req = true;
        pthread_mutex_unlock(&c->lock);
        atomic_store(&c->stop_reading, true);
        conn_kick(c);
}

void cta_conn_close(struct cta_conn *c)
{
        pthread_mutex_lock(&c->lock);
        c->closed = true;
        c->close_req = true;
        pthread_mutex_unlock(&c->lock);
        atomic_store(&c->stop_reading, true);
        conn_kick(c);
}

/* ---- idle timeout and read pausing ---- */

static void conn_idle_cb(struct cta_loop *l, void *data)
{
        struct cta_conn *c = data;
        uint64_t now = cta_now_ms(), deadline = c->last_active + c->idle_ms;

        c->idle_timer = 0;
        if (c->state != CONN_OPEN || c->idle_ms == 0)
                return;
        if (now < deadline) {
                c->idle_timer = cta_loop_timer_add(l, deadline - now, conn_idle_cb, c);
                return;
        }
        /* Re-arm first: if on_idle closes, teardown cancels the timer. */
        c->last_active = now;
        c->idle_timer = cta_loop_timer_add(l, c->idle_ms, conn_idle_cb, c);
        if (!c->ops->on_idle) {
                conn_teardown(c, "idle");
                return;
        }
        cta_conn_ref(c);
        c->ops->on_idle(c);
        cta_conn_unref(c);
}

static void conn_apply_idle(struct cta_conn *c, uint64_t ms)
{
        c->idle_ms = ms;
        c->last_active = cta_now_ms();
        cta_loop_timer_cancel(c->loop, c->idle_timer);
        c->idle_timer = 0;
        if (ms && c->state == CONN_OPEN)
                c->idle_timer = cta_loop_timer_add(c->loop, ms, conn_idle_cb, c);
}

struct conn_arg {
        struct cta_conn *c;
        uint64_t v;
};

static void conn_set_idle_cb(void *data)
{
        struct conn_arg *a = data;

        if (a->c->state != CONN_CLOSED)
                conn_apply_idle(a->c, a->v);
        cta_conn_unref(a->c);
        free(a);
}

void cta_conn_set_idle_timeout(struct cta_conn *c, uint64_t ms)
{
        if (cta_loop_in_loop_thread(c->loop)) {
                if (c->state != CONN_CLOSED)
                        conn_apply_idle(c, ms);
                return;
        }
        struct conn_arg *a = cta_xmalloc(sizeof(*a));
        *a = (struct conn_arg){ .c = cta_conn_ref(c), .v = ms };
        cta_loop_post(c->loop, conn_set_idle_cb, a);
}

static void conn_apply_pause(struct cta_conn *c, bool paused)
{
        if (c->paused == paused || c->state == CONN_CLOSED)
                return;
        c->paused = paused;
        conn_update_interest(c);
        /* Bytes OpenSSL already decrypted would not wake epoll again. */
        if (!paused && c->state == CONN_OPEN)
                conn_schedule_read(c);
}

static void conn_pause_cb(void *data)
{
        struct conn_arg *a = data;

        conn_apply_pause(a->c, a->v != 0);
        cta_conn_unref(a->c);
        free(a);
}

void cta_conn_pause_read(struct cta_conn *c, bool paused)
{
        if (cta_loop_in_loop_thread(c->loop)) {
                conn_apply_pause(c, paused);
                return;
        }
        struct conn_arg *a = cta_xmalloc(sizeof(*a));
        *a = (struct conn_arg){ .c = cta_conn_ref(c), .v = paused };
        cta_loop_post(c->loop, conn_pause_cb, a);
}

/* ---- state machine (loop thread) ---- */

static void conn_update_interest(struct cta_conn *c)
{
        uint32_t ev = 0;

        switch (c->state) {
        case CONN_HANDSHAKE:
                ev = c->hs_want_write ? EPOLLOUT : EPOLLIN;
                break;
        case CONN_OPEN:
                if (!c->paused && !atomic_load(&c->stop_reading))
                        ev |= c->ssl_read_wants_write ? EPOLLOUT : EPOLLIN;
                /* fall through */
        case CONN_FLUSHING:
                if (c->write_blocked)
                        ev |= c->ssl_write_wants_read ? EPOLLIN : EPOLLOUT;
                break;
        case CONN_LINGER:
                ev = EPOLLIN;
                break;
        case CONN_CLOSED:
                return;
        }
        if (ev != c->interest && cta_loop_mod_fd(c->loop, c->fd, ev) == 0)
                c->interest = ev;
}

static void conn_notify_close(struct cta_conn *c)
{
        if (!c->opened || c->close_notified)
                return;
        c->close_notified = true;
        if (c->ops->on_close)
                c->ops->on_close(c);
}

static void conn_teardown(struct cta_conn *c, const char *why)
{
        struct cta_listener *ls = c->ls;

        if (c->state == CONN_CLOSED)
                return;
        log_debug("connection %" PRIu64 " from %s: %s", c->id, c->peer, why);

        pthread_mutex_lock(&c->lock);
        c->closed = true;
        conn_free_queue(c);
        pthread_mutex_unlock(&c->lock);

        c->state = CONN_CLOSED;
        cta_loop_timer_cancel(c->loop, c->hs_timer);
        cta_loop_timer_cancel(c->loop, c->idle_timer);
        cta_loop_timer_cancel(c->loop, c->linger_timer);
        c->hs_timer = c->idle_timer = c->linger_timer = 0;
        cta_loop_del_fd(c->loop, c->fd);
        if (c->ssl) {
                SSL_free(c->ssl);
                c->ssl = NULL;
        }
        close(c->fd);
        c->fd = -1;

        if (c->prev)
                c->prev->next = c->next;
        else
                ls->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        ls->n_conns--;
        c->ls = NULL;

        cta_conn_ref(c);
        conn_notify_close(c);
        cta_conn_unref(c); /* ours */
        cta_conn_unref(c); /* the listener's */
}

static void conn_linger_cb(struct cta_loop *l, void *data)
{
        struct cta_conn *c = data;

        c->linger_timer = 0;
        conn_teardown(c, "linger timeout");
}

/* The queue is empty in FLUSHING: say goodbye, then linger. */
static void conn_finish_flush(struct cta_conn *c)
{
        if (c->ssl && !c->shutdown_sent) {
                ERR_clear_error();
                int r = SSL_shutdown(c->ssl);
                if (r < 0) {
                        int e = SSL_get_error(c->ssl, r);
                        if (e == SSL_ERROR_WANT_WRITE) {
                                c->write_blocked = true;
                                c->ssl_write_wants_read = false;
                                conn_update_interest(c);
                                return;
                        }
                        ERR_clear_error();
                        if (e != SSL_ERROR_WANT_READ) {
                                conn_teardown(c, "TLS shutdown failed");
                                return;
                        }
                }
                c->shutdown_sent = true;
        }
        (void)shutdown(c->fd, SHUT_WR);
        c->state = CONN_LINGER;
        c->write_blocked = false;
        c->linger_timer = cta_loop_timer_add(c->loop, LINGER_MS, conn_linger_cb, c);
        conn_update_interest(c);
        conn_notify_close(c);
}

/* Returns bytes written, -EAGAIN, or another negative errno. */
static ssize_t conn_raw_write(struct cta_conn *c, const char *p, size_t len)
{
        if (!c->ssl) {
                ssize_t n;
                do
                        n = send(c->fd, p, len, MSG_NOSIGNAL);
                while (n < 0 && errno == EINTR);
                if (n >= 0)
                        return n;
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }

        /* A write that OpenSSL asked us to repeat must be repeated with the
         * same length (the buffer may move: ACCEPT_MOVING_WRITE_BUFFER). */
        int want = c->ssl_retry_len ? c->ssl_retry_len : (int)len;
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(c->ssl, p, want);
        if (n > 0) {
                c->ssl_retry_len = 0;
                c->ssl_write_wants_read = false;
                return n;
        }
        int e = SSL_get_error(c->ssl, n);
        switch (e) {
        case SSL_ERROR_WANT_WRITE:
        case SSL_ERROR_WANT_READ:
                c->ssl_retry_len = want;
                c->ssl_write_wants_read = e == SSL_ERROR_WANT_READ;
                return -EAGAIN;
        case SSL_ERROR_SYSCALL: {
                int saved = errno ? errno : EPIPE;
                ERR_clear_error();
                return -saved;
        }
        default: {
                char buf[256];
                log_debug("connection %" PRIu64 " from %s: TLS write: %s", c->id, c->peer,
                          cta_tls_errstr(buf, sizeof(buf)));
                return -EPROTO;
        }
        }
}

static void conn_do_flush(struct cta_conn *c)
{
        size_t done = 0;

        for (;;) {
                struct chunk *ch;
                size_t avail;

                pthread_mutex_lock(&c->lock);
                ch = c->out_head;
                avail = ch ? ch->len - ch->off : 0;
                pthread_mutex_unlock(&c->lock);
                if (!ch)
                        break;
                if (done >= WRITE_BUDGET) {
                        /* Let others run; level-triggered EPOLLOUT brings us back. */
                        c->write_blocked = true;
                        c->ssl_write_wants_read = false;
                        break;
                }
                ssize_t n = conn_raw_write(c, ch->data + ch->off,
                                           avail < WRITE_MAX ? avail : WRITE_MAX);
                if (n == -EAGAIN) {
                        c->write_blocked = true;
                        break;
                }
                if (n < 0) {
                        char what[128];
                        snprintf(what, sizeof(what), "write: %s", strerror((int)-n));
                        conn_teardown(c, what);
                        return;
                }
                done += (size_t)n;
                c->write_blocked = false;

                struct chunk *drop = NULL;
                pthread_mutex_lock(&c->lock);
                ch->off += (size_t)n;
                c->out_bytes -= (size_t)n;
                if (ch->off == ch->len) {
                        c->out_head = ch->next;
                        if (!c->out_head)
                                c->out_tail = NULL;
                        drop = ch;
                }
                pthread_mutex_unlock(&c->lock);
                free(drop);
        }
        if (done)
                c->last_active = cta_now_ms();
        if (!c->write_blocked && c->state == CONN_FLUSHING) {
                bool empty;
                pthread_mutex_lock(&c->lock);
                empty = c->out_head == NULL;
                pthread_mutex_unlock(&c->lock);
                if (empty) {
                        conn_finish_flush(c);
                        return;
                }
        }
        conn_update_interest(c);
}

/* Returns bytes read (> 0), 0 on EOF, -EAGAIN, or another negative errno. */
static ssize_t conn_raw_read(struct cta_conn *c, char *buf, size_t cap)
{
        if (!c->ssl || c->state == CONN_LINGER) {
                ssize_t n;
                do
                        n = recv(c->fd, buf, cap, 0);
                while (n < 0 && errno == EINTR);
                if (n >= 0)
                        return n;
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        }

        ERR_clear_error();
        errno = 0;
        int n = SSL_read(c->ssl, buf, (int)cap);
        if (n > 0) {
                c->ssl_read_wants_write = false;
                return n;
        }
        int e = SSL_get_error(c->ssl, n);
        switch (e) {
        case SSL_ERROR_WANT_READ:
                c->ssl_read_wants_write = false;
                return -EAGAIN;
        case SSL_ERROR_WANT_WRITE:
                c->ssl_read_wants_write = true;
                return -EAGAIN;
        case SSL_ERROR_ZERO_RETURN:
                return 0;
        case SSL_ERROR_SYSCALL: {
                int saved = errno;
                ERR_clear_error();
                return saved ? -saved : 0;
        }
        default: {
                char ebuf[256];
                log_debug("connection %" PRIu64 " from %s: TLS read: %s", c->id, c->peer,
                          cta_tls_errstr(ebuf, sizeof(ebuf)));
                return -EPROTO;
        }
        }
}

static void conn_do_read(struct cta_conn *c)
{
        char buf[READ_BUF];
        size_t total = 0;

        while (c->state == CONN_OPEN && !c->paused && total < READ_BUDGET &&
               !atomic_load(&c->stop_reading)) {
                void *into = NULL;
                size_t into_cap = c->ops->read_into ? c->ops->read_into(c, &into) : 0;
                ssize_t n = into_cap ? conn_raw_read(c, into, into_cap)
                                     : conn_raw_read(c, buf, sizeof(buf));
                if (n == -EAGAIN)
                        break;
                if (n == 0) {
                        conn_teardown(c, "closed by peer");
                        return;
                }
                if (n < 0) {
                        char what[128];
                        snprintf(what, sizeof(what), "read: %s", strerror((int)-n));
                        conn_teardown(c, what);
                        return;
                }
                total += (size_t)n;
                c->last_active = cta_now_ms();
                if (into_cap)
                        c->ops->on_data_into(c, (size_t)n);
                else if (c->ops->on_data)
                        c->ops->on_data(c, buf, (size_t)n);
        }
        if (c->state != CONN_OPEN)
                return;
        if (!c->paused && total >= READ_BUDGET && c->ssl && SSL_has_pending(c->ssl))
                conn_schedule_read(c);
        conn_update_interest(c);
}

/* LINGER: discard what the peer still sends until it closes. */
static void conn_do_drain(struct cta_conn *c)
{
        char buf[READ_BUF];

        for (size_t total = 0; total < READ_BUDGET;) {
                ssize_t n = conn_raw_read(c, buf, sizeof(buf));
                if (n == -EAGAIN)
                        return;
                if (n <= 0) {
                        conn_teardown(c, "closed");
                        return;
                }
                total += (size_t)n;
        }
}

static void conn_open(struct cta_conn *c)
{
        c->state = CONN_OPEN;
        c->opened = true;
        c->last_active = cta_now_ms();
        if (c->ops->on_open)
                c->ops->on_open(c);
        if (c->state != CONN_OPEN)
                return;
        if (c->idle_ms && !c->idle_timer)
                c->idle_timer = cta_loop_timer_add(c->loop, c->idle_ms, conn_idle_cb, c);
        /* The client's first bytes may have come with its Finished message. */
        if (c->ssl)
                conn_do_read(c);
        else
                conn_update_interest(c);
}

static void conn_do_handshake(struct cta_conn *c)
{
        ERR_clear_error();
        errno = 0;
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
                cta_loop_timer_cancel(c->loop, c->hs_timer);
                c->hs_timer = 0;
                log_debug("connection %" PRIu64 " from %s: %s %s", c->id, c->peer,
                          SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
                X509 *x = SSL_get0_peer_certificate(c->ssl);
                if (x && cta_tls_x509_fingerprint(x, c->peer_fp) < 0)
                        c->peer_fp[0] = '\0';
                conn_open(c);
                return;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                c->hs_want_write = e == SSL_ERROR_WANT_WRITE;
                conn_update_interest(c);
                return;
        }
        char buf[256], what[300];
        if (e == SSL_ERROR_SYSCALL) {
                snprintf(buf, sizeof(buf), "%s", errno ? strerror(errno) : "unexpected EOF");
                ERR_clear_error();
        } else {
                cta_tls_errstr(buf, sizeof(buf));
        }
        snprintf(what, sizeof(what), "TLS handshake failed: %s", buf);
        conn_teardown(c, what);
}

static void conn_hs_timeout_cb(struct cta_loop *l, void *data)
{
        struct cta_conn *c = data;

        c->hs_timer = 0;
        conn_teardown(c, "TLS handshake timed out");
}

static void conn_io_cb(struct cta_loop *l, int fd, uint32_t events, void *data)
{
        struct cta_conn *c = cta_conn_ref(data);
        bool dead = events & (EPOLLERR | EPOLLHUP);

        switch (c->state) {
        case CONN_HANDSHAKE:
                conn_do_handshake(c);
                break;
        case CONN_OPEN:
                if ((events & EPOLLOUT) || (c->ssl_write_wants_read && (events & EPOLLIN)))
                        if (c->write_blocked || dead)
                                conn_do_flush(c);
                if (c->state == CONN_OPEN && !c->paused &&
                    ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ||
                     (c->ssl_read_wants_write && (events & EPOLLOUT))))
                        conn_do_read(c);
                break;
        case CONN_FLUSHING:
                conn_do_flush(c);
                break;
        case CONN_LINGER:
                conn_do_drain(c);
                break;
        case CONN_CLOSED:
                break;
        }
        /* A dead socket keeps reporting HUP/ERR even with no interest; if
         * nothing above noticed (reading paused, say), drop it now. */
        if (dead && c->state != CONN_CLOSED)
                conn_teardown(c, events & EPOLLERR ? "socket error" : "hang-up");
        cta_conn_unref(c);
}

/* ---- addresses ---- */

static void format_sockaddr(const struct sockaddr_storage *ss, char addr[INET6_ADDRSTRLEN],
                            uint16_t *port)
{
        addr[0] = '\0';
        *port = 0;
        if (ss->ss_family == AF_INET) {
                const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
                inet_ntop(AF_INET, &sin->sin_addr, addr, INET6_ADDRSTRLEN);
                *port = ntohs(sin->sin_port);
        } else if (ss->ss_family == AF_INET6) {
                const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
                if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
                        inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], addr, INET6_ADDRSTRLEN);
                else
                        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, INET6_ADDRSTRLEN);
                *port = ntohs(sin6->sin6_port);
        }
}

static void format_hostport(const char *addr, uint16_t port, char *out, size_t n)
{
        if (strchr(addr, ':'))
                snprintf(out, n, "[%s]:%u", addr, (unsigned)port);
        else
                snprintf(out, n, "%s:%u", addr, (unsigned)port);
}

/* "host:port", "[v6]:port". */
static int split_listen_addr(const char *s, char host[256], char port[8])
{
        const char *colon;
        size_t hl;

        if (s[0] == '[') {
                const char *end = strchr(s, ']');
                if (!end || end[1] != ':')
                        return -CTA_E_INVALID;
                hl = (size_t)(end - s - 1);
                if (hl >= 256)
                        return -CTA_E_INVALID;
                memcpy(host, s + 1, hl);
                colon = end + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t)(colon - s)))
                        return -CTA_E_INVALID;
                hl = (size_t)(colon - s);
                if (hl >= 256)
                        return -CTA_E_INVALID;
                memcpy(host, s, hl);
        }
        host[hl] = '\0';
        uint64_t p;
        if (cta_parse_u64(colon + 1, 65535, &p) < 0)
                return -CTA_E_INVALID;
        snprintf(port, 8, "%u", (unsigned)p);
        return 0;
}

/* ---- accepting ---- */

static void listener_io_cb(struct cta_loop *l, int fd, uint32_t events, void *data);

static void listener_resume_cb(struct cta_loop *l, void *data)
{
        struct cta_listener *ls = data;

        ls->resume_timer = 0;
        (void)cta_loop_mod_fd(l, ls->fd, EPOLLIN);
}

static void listener_new_conn(struct cta_listener *ls, int fd,
                              const struct sockaddr_storage *ss)
{
        struct cta_conn *c;
        uint16_t port;
        int one = 1;

        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        c = cta_xcalloc(1, sizeof(*c));
        atomic_init(&c->refs, 1);
        atomic_init(&c->stop_reading, false);
        c->id = atomic_fetch_add(&conn_next_id, 1);
        c->loop = ls->loop;
        c->ls = ls;
        c->ops = ls->ops;
        c->listener_data = ls->data;
        c->fd = fd;
        c->out_max = ls->max_queue;
        c->tls = ls->ctx != NULL;
        pthread_mutex_init(&c->lock, NULL);
        format_sockaddr(ss, c->peer_addr, &port);
        format_hostport(c->peer_addr, port, c->peer, sizeof(c->peer));

        if (c->tls) {
                char ebuf[256];
                BIO *bio = NULL;
                ERR_clear_error();
                c->ssl = SSL_new(ls->ctx);
                if (c->ssl)
                        bio = cta_tls_sock_bio_new(fd);
                if (!bio) {
                        log_warning("connection from %s: TLS setup: %s", c->peer,
                                    cta_tls_errstr(ebuf, sizeof(ebuf)));
                        SSL_free(c->ssl);
                        close(fd);
                        pthread_mutex_destroy(&c->lock);
                        free(c);
                        return;
                }
                SSL_set_bio(c->ssl, bio, bio);
                SSL_set_accept_state(c->ssl);
                c->state = CONN_HANDSHAKE;
        } else {
                c->state = CONN_OPEN;
        }

        c->interest = EPOLLIN;
        if (cta_loop_add_fd(ls->loop, fd, EPOLLIN, conn_io_cb, c) < 0) {
                log_warning("connection from %s: epoll: %m", c->peer);
                SSL_free(c->ssl);
                close(fd);
                pthread_mutex_destroy(&c->lock);
                free(c);
                return;
        }
        c->next = ls->conns;
        if (ls->conns)
                ls->conns->prev = c;
        ls->conns = c;
        ls->n_conns++;
        log_debug("connection %" PRIu64 " from %s accepted%s", c->id, c->peer,
                  c->tls ? " (TLS)" : "");

        cta_conn_ref(c);
        if (c->tls) {
                if (ls->hs_timeout_ms)
                        c->hs_timer = cta_loop_timer_add(ls->loop, ls->hs_timeout_ms,
                                                         conn_hs_timeout_cb, c);
                conn_do_handshake(c);
        } else {
                conn_open(c);
        }
        cta_conn_unref(c);
}

static void listener_io_cb(struct cta_loop *l, int fd, uint32_t events, void *data)
{
        struct cta_listener *ls = data;

        for (int i = 0; i < ACCEPT_BATCH; i++) {
                struct sockaddr_storage ss = { 0 };
                socklen_t len = sizeof(ss);
                int cfd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        switch (errno) {
                        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
                        case EWOULDBLOCK:
#endif
                                return;
                        case EINTR:
                        case ECONNABORTED:
                        case EPROTO:
                        case EPERM:
                                continue;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                /* Level-triggered: without a pause this would spin. */
                                log_warning("accept: %m; pausing the listener for %d ms",
                                            ACCEPT_PAUSE_MS);
                                if (!ls->resume_timer) {
                                        (void)cta_loop_mod_fd(l, fd, 0);
                                        ls->resume_timer = cta_loop_timer_add(
                                                l, ACCEPT_PAUSE_MS, listener_resume_cb, ls);
                                }
                                return;
                        default:
                                log_error("accept: %m");
                                return;
                        }
                }
                if (ls->n_conns >= ls->max_conns) {
                        if (ls->refused++ % 1000 == 0)
                                log_warning("too many connections (%u), refusing", ls->n_conns);
                        close(cfd);
                        continue;
                }
                listener_new_conn(ls, cfd, &ss);
        }
}

int cta_listen(struct cta_loop *l, const char *addr, struct cta_tls_server *tls,
               const struct cta_conn_ops *ops, void *listener_data, char ret_bound[80],
               struct cta_listener **ret, struct cta_error **err)
{
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        _cleanup_close_ int fd = -1;
        char host[256], port[8];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int one = 1, r;

        if (split_listen_addr(addr, host, port) < 0)
                return cta_error_set(err, CTA_E_INVALID, 0, "invalid listen address '%s'", addr);
        r = getaddrinfo(host[0] && !streq(host, "*") ? host : NULL, port, &hints, &ai);
        if (r != 0)
                return cta_error_set(err, CTA_E_INVALID, 0, "listen address '%s': %s", addr,
                                     gai_strerror(r));
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                freeaddrinfo(ai);
                return cta_error_errno(err, CTA_E_IO, "listen on '%s': socket", addr);
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                freeaddrinfo(ai);
                return cta_error_errno(err, CTA_E_IO, "listen on '%s': bind", addr);
        }
        freeaddrinfo(ai);
        if (listen(fd, SOMAXCONN) < 0)
                return cta_error_errno(err, CTA_E_IO, "listen on '%s'", addr);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
                return cta_error_errno(err, CTA_E_IO, "listen on '%s': getsockname", addr);

        struct cta_listener *ls = cta_xcalloc(1, sizeof(*ls));
        ls->loop = l;
        ls->ops = ops;
        ls->data = listener_data;
        ls->max_conns = CTA_NET_DEFAULT_MAX_CONNS;
        ls->hs_timeout_ms = CTA_NET_DEFAULT_HANDSHAKE_MS;
        ls->max_queue = CTA_NET_DEFAULT_MAX_QUEUE;
        if (tls) {
                ls->ctx = cta_tls_server_ctx(tls);
                SSL_CTX_up_ref(ls->ctx);
        }
        if (cta_loop_add_fd(l, fd, EPOLLIN, listener_io_cb, ls) < 0) {
                r = cta_error_errno(err, CTA_E_IO, "listen on '%s': epoll", addr);
                SSL_CTX_free(ls->ctx);
                free(ls);
                return r;
        }
        ls->fd = TAKE_FD(fd);
        if (ret_bound) {
                char a[INET6_ADDRSTRLEN];
                uint16_t p;
                format_sockaddr(&ss, a, &p);
                format_hostport(a, p, ret_bound, 80);
        }
        *ret = ls;
        return 0;
}

struct cta_listener *cta_listener_free(struct cta_listener *ls)
{
        if (!ls)
                return NULL;
        cta_loop_del_fd(ls->loop, ls->fd);
        close(ls->fd);
        cta_loop_timer_cancel(ls->loop, ls->resume_timer);
        while (ls->conns)
                conn_teardown(ls->conns, "listener closed");
        SSL_CTX_free(ls->ctx);
        free(ls);
        return NULL;
}

void cta_listener_set_handshake_timeout(struct cta_listener *ls, uint64_t ms)
{
        ls->hs_timeout_ms = ms;
}

void cta_listener_set_max_conns(struct cta_listener *ls, unsigned n)
{
        ls->max_conns = n;
}

void cta_listener_set_max_queue(struct cta_listener *ls, size_t bytes)
{
        ls->max_queue = bytes;
}

unsigned cta_listener_n_conns(const struct cta_listener *ls)
{
        return ls->n_conns;
}

int cta_listener_fd(const struct cta_listener *ls)
{
        return ls->fd;
}
