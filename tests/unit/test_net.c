/*
 * src/net: the loop, plain and TLS connections and the blocking client, over
 * real sockets on 127.0.0.1 in one process. The loop runs on its own thread;
 * the server side is a set of listeners with small test behaviours (echo,
 * idle, bulk send then close, ...).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>

#include "net/client.h"
#include "net/conn.h"
#include "net/loop.h"
#include "net/tls-private.h"
#include "net/tls.h"
#include "util/error.h"
#include "util/util.h"

#include "tap.h"

#define MIB ((size_t)1024 * 1024)
#define CLIENT_TIMEOUT_MS 20000

/* ---- helpers ---- */

static uint8_t pat(uint64_t seed, size_t i)
{
        uint64_t x = seed * 0x9E3779B97F4A7C15ull + i;
        x ^= x >> 29;
        x *= 0xBF58476D1CE4E5B9ull;
        return (uint8_t)(x >> 32);
}

static void fill(uint8_t *buf, size_t n, uint64_t seed, size_t off)
{
        for (size_t i = 0; i < n; i++)
                buf[i] = pat(seed, off + i);
}

static bool check(const uint8_t *buf, size_t n, uint64_t seed, size_t off)
{
        for (size_t i = 0; i < n; i++)
                if (buf[i] != pat(seed, off + i))
                        return false;
        return true;
}

static bool wait_until(atomic_int *v, int want, int timeout_ms)
{
        uint64_t end = cta_now_ms() + (uint64_t)timeout_ms;

        while (atomic_load(v) < want) {
                if (cta_now_ms() > end)
                        return false;
                usleep(2000);
        }
        return true;
}

/* Read exactly n bytes; 0 or a negative code. */
static int read_exact(struct cta_client *c, void *buf, size_t n)
{
        size_t got = 0;

        while (got < n) {
                ssize_t r = cta_client_read(c, (char *)buf + got, n - got, -1, NULL);
                if (r <= 0)
                        return r == 0 ? -CTA_E_IO : (int)r;
                got += (size_t)r;
        }
        return 0;
}

/* Read until EOF; returns the byte count, or a negative code. */
static ssize_t read_to_eof(struct cta_client *c, uint8_t *buf, size_t cap, int timeout_ms)
{
        size_t got = 0;

        for (;;) {
                struct cta_error *e = NULL;
                ssize_t r = cta_client_read(c, buf ? buf + got : (uint8_t[65536]){ 0 },
                                            buf ? cap - got : 65536, timeout_ms, &e);
                if (r < 0) {
                        printf("# read_to_eof after %zu: %s\n", got, cta_error_msg(e));
                        cta_error_free(e);
                        return r;
                }
                if (r == 0)
                        return (ssize_t)got;
                if (buf && got + (size_t)r > cap)
                        return -CTA_E_TOO_LARGE;
                got += (size_t)r;
                if (buf && got == cap) {
                        /* full: the next read must be EOF */
                        uint8_t extra;
                        r = cta_client_read(c, &extra, 1, timeout_ms, NULL);
                        return r == 0 ? (ssize_t)got : -CTA_E_TOO_LARGE;
                }
        }
}

static int run_cmd(const char *cmd, char *out, size_t cap)
{
        FILE *f = popen(cmd, "r");
        size_t n;

        if (!f)
                return -1;
        n = fread(out, 1, cap - 1, f);
        out[n] = '\0';
        return pclose(f) == 0 ? 0 : -1;
}

static int raw_connect(uint16_t port);
static int raw_wait_closed(int fd, int timeout_ms);

/* ---- the server fixture ---- */

enum mode {
        M_ECHO,   /* echo on the loop thread */
        M_WORKER, /* echo from a worker thread */
        M_IDLE,   /* echo, idle timeout 200 ms -> "IDLE\n" and close after flush */
        M_BIG,    /* on open: send `big` pattern bytes, close after flush */
        M_HOLD,   /* on open: hand a reference to the test thread */
        M_CAP,    /* queue cap 1 MiB: try 2 MiB (must fail), send 512 KiB, close */
        M_PAUSE,  /* echo; "P" pauses reading for 300 ms */
        M_PEERFP, /* on open: send the client certificate's fingerprint and "\n", close */
};

struct lcfg {
        const char *name;
        enum mode mode;
        bool tls;
        const char *addr;
        size_t big;
        struct cta_listener *ls;
        uint16_t port;
        atomic_int opens, closes, idles;
        atomic_int result;
};

static struct lcfg L_ECHO = { "echo", M_ECHO, false, "127.0.0.1:0" };
static struct lcfg L_ECHO_TLS = { "echo-tls", M_ECHO, true, "127.0.0.1:0" };
static struct lcfg L_ECHO6 = { "echo6", M_ECHO, true, "[::1]:0" };
static struct lcfg L_WORKER = { "worker", M_WORKER, true, "127.0.0.1:0" };
static struct lcfg L_IDLE = { "idle", M_IDLE, true, "127.0.0.1:0" };
static struct lcfg L_BIG = { "big", M_BIG, false, "127.0.0.1:0", 8 * MIB };
static struct lcfg L_BIG_TLS = { "big-tls", M_BIG, true, "127.0.0.1:0", 8 * MIB };
static struct lcfg L_HOLD = { "hold", M_HOLD, false, "127.0.0.1:0" };
static struct lcfg L_CAP = { "cap", M_CAP, true, "127.0.0.1:0" };
static struct lcfg L_HS = { "handshake", M_ECHO, true, "127.0.0.1:0" };
static struct lcfg L_MAX2 = { "max2", M_ECHO, false, "127.0.0.1:0" };
static struct lcfg L_PAUSE = { "pause", M_PAUSE, true, "127.0.0.1:0" };
static struct lcfg L_PEERFP = { "peerfp", M_PEERFP, true, "127.0.0.1:0" };
static struct lcfg L_PEERFP_PLAIN = { "peerfp-plain", M_PEERFP, false, "127.0.0.1:0" };
static struct lcfg *listeners[] = { &L_ECHO, &L_ECHO_TLS, &L_ECHO6, &L_WORKER, &L_IDLE,
                                    &L_BIG,  &L_BIG_TLS,  &L_HOLD,  &L_CAP,    &L_HS,
                                    &L_MAX2, &L_PAUSE,    &L_PEERFP, &L_PEERFP_PLAIN };

#define BIG_SEED 77

struct job {
        struct job *next;
        struct cta_conn *c;
        size_t len;
        char data[];
};

static struct {
        struct cta_loop *loop;
        pthread_t thread;
        struct cta_tls_server *tls;
        char fp[128];
        char dir[64];
        bool ipv6;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct cta_conn *held; /* M_HOLD */
        struct job *jobs, **jobs_tail;
        bool worker_stop;
        pthread_t worker;
} S = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void srv_on_open(struct cta_conn *c)
{
        struct lcfg *cfg = cta_conn_listener_data(c);

        atomic_fetch_add(&cfg->opens, 1);
        switch (cfg->mode) {
        case M_IDLE:
                cta_conn_set_idle_timeout(c, 200);
                break;
        case M_BIG: {
                uint8_t *buf = cta_xmalloc(MIB);
                for (size_t off = 0; off < cfg->big; off += MIB) {
                        size_t n = cfg->big - off < MIB ? cfg->big - off : MIB;
                        fill(buf, n, BIG_SEED, off);
                        if (cta_conn_send(c, buf, n) < 0)
                                atomic_store(&cfg->result, -1);
                }
                free(buf);
                cta_conn_close_after_flush(c);
                break;
        }
        case M_HOLD:
                pthread_mutex_lock(&S.lock);
                cta_conn_unref(S.held);
                S.held = cta_conn_ref(c);
                pthread_cond_broadcast(&S.cond);
                pthread_mutex_unlock(&S.lock);
                break;
        case M_PEERFP: {
                const char *fp = cta_conn_peer_fingerprint(c);
                if (cta_conn_send(c, fp, strlen(fp)) < 0 || cta_conn_send(c, "\n", 1) < 0)
                        atomic_store(&cfg->result, -1);
                cta_conn_close_after_flush(c);
                break;
        }
        case M_CAP: {
                uint8_t *buf = cta_xcalloc(1, 2 * MIB);
                int r = cta_conn_send(c, buf, 2 * MIB);
                fill(buf, MIB / 2, BIG_SEED, 0);
                int r2 = cta_conn_send(c, buf, MIB / 2);
                atomic_store(&cfg->result, r == -CTA_E_TOO_LARGE && r2 == 0 ? 1 : -1);
                free(buf);
                cta_conn_close_after_flush(c);
                break;
        }
        default:
                break;
        }
}

static void unpause_cb(struct cta_loop *l, void *data)
{
        struct cta_conn *c = data;

        cta_conn_pause_read(c, false);
        cta_conn_unref(c);
}

static void srv_on_data(struct cta_conn *c, const char *data, size_t len)
{
        struct lcfg *cfg = cta_conn_listener_data(c);

        switch (cfg->mode) {
        case M_WORKER: {
                struct job *j = cta_xmalloc(sizeof(*j) + len);
                j->next = NULL;
                j->c = cta_conn_ref(c);
                j->len = len;
                memcpy(j->data, data, len);
                pthread_mutex_lock(&S.lock);
                *S.jobs_tail = j;
                S.jobs_tail = &j->next;
                pthread_cond_broadcast(&S.cond);
                pthread_mutex_unlock(&S.lock);
                return;
        }
        case M_PAUSE:
                if (len >= 1 && data[0] == 'P') {
                        /* Echo the rest of this read, then stop reading for a while. */
                        if (cta_conn_send(c, data, len) < 0)
                                cta_conn_close(c);
                        cta_conn_pause_read(c, true);
                        cta_loop_timer_add(S.loop, 300, unpause_cb, cta_conn_ref(c));
                        return;
                }
                break;
        case M_BIG:
        case M_CAP:
                return;
        default:
                break;
        }
        if (cta_conn_send(c, data, len) < 0)
                cta_conn_close(c);
}

static void srv_on_idle(struct cta_conn *c)
{
        struct lcfg *cfg = cta_conn_listener_data(c);

        atomic_fetch_add(&cfg->idles, 1);
        (void)cta_conn_send(c, "IDLE\n", 5);
        cta_conn_close_after_flush(c);
}

static void srv_on_close(struct cta_conn *c)
{
        struct lcfg *cfg = cta_conn_listener_data(c);

        atomic_fetch_add(&cfg->closes, 1);
}

static const struct cta_conn_ops srv_ops = {
        .on_open = srv_on_open,
        .on_data = srv_on_data,
        .on_idle = srv_on_idle,
        .on_close = srv_on_close,
};

static void *worker_main(void *arg)
{
        pthread_mutex_lock(&S.lock);
        for (;;) {
                while (!S.jobs && !S.worker_stop)
                        pthread_cond_wait(&S.cond, &S.lock);
                if (!S.jobs)
                        break;
                struct job *j = S.jobs;
                S.jobs = j->next;
                if (!S.jobs)
                        S.jobs_tail = &S.jobs;
                pthread_mutex_unlock(&S.lock);
                if (cta_conn_send(j->c, j->data, j->len) < 0)
                        cta_conn_close(j->c);
                cta_conn_unref(j->c);
                free(j);
                pthread_mutex_lock(&S.lock);
        }
        pthread_mutex_unlock(&S.lock);
        return NULL;
}

static void *loop_main(void *arg)
{
        if (cta_loop_run(S.loop) < 0)
                abort();
        return NULL;
}

static int fixture_start(void)
{
        struct cta_error *e = NULL;

        snprintf(S.dir, sizeof(S.dir), "/tmp/cta-test-net-XXXXXX");
        if (!mkdtemp(S.dir))
                return -1;
        S.jobs_tail = &S.jobs;
        if (cta_loop_new(&S.loop, &e) < 0 ||
            cta_tls_server_new(NULL, NULL, S.dir, S.fp, &S.tls, &e) < 0) {
                printf("# fixture: %s\n", cta_error_msg(e));
                return -1;
        }
        for (size_t i = 0; i < CTA_ARRAY_SIZE(listeners); i++) {
                struct lcfg *cfg = listeners[i];
                char bound[80];
                if (cta_listen(S.loop, cfg->addr, cfg->tls ? S.tls : NULL, &srv_ops, cfg, bound,
                               &cfg->ls, &e) < 0) {
                        if (cfg == &L_ECHO6) { /* no IPv6 here */
                                e = cta_error_free(e);
                                continue;
                        }
                        printf("# listen %s: %s\n", cfg->addr, cta_error_msg(e));
                        return -1;
                }
                if (cfg == &L_ECHO6)
                        S.ipv6 = true;
                cfg->port = (uint16_t)atoi(strrchr(bound, ':') + 1);
                printf("# %s listens on %s\n", cfg->name, bound);
        }
        cta_listener_set_max_queue(L_CAP.ls, MIB);
        cta_listener_set_handshake_timeout(L_HS.ls, 300);
        cta_listener_set_max_conns(L_MAX2.ls, 2);
        if (pthread_create(&S.thread, NULL, loop_main, NULL) != 0 ||
            pthread_create(&S.worker, NULL, worker_main, NULL) != 0)
                return -1;
        return 0;
}

static void fixture_stop(void)
{
        char cmd[128];

        pthread_mutex_lock(&S.lock);
        S.worker_stop = true;
        pthread_cond_broadcast(&S.cond);
        pthread_mutex_unlock(&S.lock);
        pthread_join(S.worker, NULL);

        cta_loop_stop(S.loop);
        pthread_join(S.thread, NULL);
        S.held = cta_conn_unref(S.held);
        for (size_t i = 0; i < CTA_ARRAY_SIZE(listeners); i++)
                listeners[i]->ls = cta_listener_free(listeners[i]->ls);
        S.loop = cta_loop_free(S.loop);
        S.tls = cta_tls_server_free(S.tls);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", S.dir);
        if (system(cmd) != 0)
                printf("# could not remove %s\n", S.dir);
}

static struct cta_client *connect_to(const struct lcfg *cfg, const char *pin)
{
        struct cta_client_opts o = { .tls = cfg->tls, .pin_fingerprint = pin,
                                     .timeout_ms = CLIENT_TIMEOUT_MS };
        struct cta_client *c = NULL;
        struct cta_error *e = NULL;

        if (cta_client_connect(cfg == &L_ECHO6 ? "::1" : "127.0.0.1", cfg->port, &o, &c, &e) < 0) {
                printf("# connect to %s: %s\n", cfg->name, cta_error_msg(e));
                cta_error_free(e);
                return NULL;
        }
        return c;
}

/* One round trip of n pattern bytes. */
static int echo_round(struct cta_client *c, size_t n, uint64_t seed)
{
        uint8_t *out = cta_xmalloc(n), *in = cta_xmalloc(n);
        int r;

        fill(out, n, seed, 0);
        r = cta_client_write(c, out, n, NULL);
        if (r == 0)
                r = read_exact(c, in, n);
        if (r == 0 && memcmp(in, out, n) != 0)
                r = -CTA_E_PROTO;
        free(out);
        free(in);
        return r;
}

/* ---- the loop on its own ---- */

struct tstate {
        char order[16];
        int n;
};

struct tmark {
        struct tstate *t;
        char label;
};

static void t_mark(struct cta_loop *l, void *data)
{
        struct tmark *m = data;

        m->t->order[m->t->n++] = m->label;
}

static void t_stop(struct cta_loop *l, void *data)
{
        cta_loop_stop(l);
}

TEST(loop__timers)
{
        struct tstate t = { 0 };
        struct tmark ma = { &t, 'a' }, mb = { &t, 'b' }, mc = { &t, 'c' }, md = { &t, 'd' },
                     me = { &t, 'e' };
        struct cta_loop *l = NULL;
        uint64_t a, b, c, d;

        ASSERT_OK(cta_loop_new(&l, NULL));
        uint64_t t0 = cta_now_ms();
        a = cta_loop_timer_add(l, 30, t_mark, &ma);
        b = cta_loop_timer_add(l, 10, t_mark, &mb);
        c = cta_loop_timer_add(l, 20, t_mark, &mc);
        d = cta_loop_timer_add(l, 30, t_mark, &md); /* same deadline as a: after a */
        ASSERT_TRUE(a > 0 && b > 0 && c > 0 && d > 0);
        ASSERT_TRUE(a != b && b != c && c != d);
        cta_loop_timer_cancel(l, c);
        cta_loop_timer_cancel(l, c); /* twice: no-op */
        cta_loop_timer_cancel(l, 0);
        cta_loop_timer_cancel(l, 0xdead00000001ull); /* stale generation */
        cta_loop_timer_add(l, 60, t_stop, NULL);
        ASSERT_OK(cta_loop_run(l));
        ASSERT_TRUE(cta_now_ms() - t0 >= 59);
        ASSERT_INT_EQ(t.n, 3);
        ASSERT_MEM_EQ(t.order, "bad", 3);

        /* A fired id is dead: cancelling it does not hit the slot's next user. */
        uint64_t e = cta_loop_timer_add(l, 10, t_mark, &me);
        cta_loop_timer_cancel(l, b);
        cta_loop_timer_cancel(l, a);
        cta_loop_timer_add(l, 30, t_stop, NULL);
        ASSERT_OK(cta_loop_run(l));
        ASSERT_INT_EQ(t.n, 4);
        ASSERT_INT_EQ(t.order[3], 'e');
        ASSERT_TRUE(e != b && e != a);
        cta_loop_free(l);
        return 0;
}

struct heapstate {
        uint64_t last;
        int fired, bad;
};

static void t_heap(struct cta_loop *l, void *data)
{
        struct heapstate *h = data;
        uint64_t now = cta_now_ms();

        if (now < h->last)
                h->bad++;
        h->last = now;
        h->fired++;
}

TEST(loop__many_timers)
{
        struct cta_loop *l = NULL;
        struct heapstate h = { 0 };
        uint64_t ids[2000];
        unsigned seed = 1;

        ASSERT_OK(cta_loop_new(&l, NULL));
        for (int i = 0; i < 2000; i++)
                ids[i] = cta_loop_timer_add(l, (uint64_t)(rand_r(&seed) % 100), t_heap, &h);
        for (int i = 0; i < 2000; i += 2)
                cta_loop_timer_cancel(l, ids[i]);
        cta_loop_timer_add(l, 150, t_stop, NULL);
        ASSERT_OK(cta_loop_run(l));
        ASSERT_INT_EQ(h.fired, 1000);
        ASSERT_INT_EQ(h.bad, 0);
        cta_loop_free(l);
        return 0;
}

struct poststate {
        struct cta_loop *l;
        int count;
        int last[4];
        int bad;
};

struct postmsg {
        struct poststate *ps;
        int thread, seq;
};

static void post_fn(void *data)
{
        struct postmsg *m = data;
        struct poststate *ps = m->ps;

        if (m->seq != ps->last[m->thread] + 1)
                ps->bad++;
        ps->last[m->thread] = m->seq;
        if (++ps->count == 4000)
                cta_loop_stop(ps->l);
        free(m);
}

static void *post_thread(void *arg)
{
        struct postmsg *tmpl = arg;

        for (int i = 1; i <= 1000; i++) {
                struct postmsg *m = cta_xmalloc(sizeof(*m));
                *m = (struct postmsg){ tmpl->ps, tmpl->thread, i };
                cta_loop_post(tmpl->ps->l, post_fn, m);
        }
        return NULL;
}

TEST(loop__post_from_threads)
{
        struct poststate ps = { 0 };
        struct postmsg tmpl[4];
        pthread_t th[4];

        ASSERT_OK(cta_loop_new(&ps.l, NULL));
        for (int i = 0; i < 4; i++) {
                tmpl[i] = (struct postmsg){ &ps, i, 0 };
                ASSERT_INT_EQ(pthread_create(&th[i], NULL, post_thread, &tmpl[i]), 0);
        }
        ASSERT_OK(cta_loop_run(ps.l));
        for (int i = 0; i < 4; i++)
                pthread_join(th[i], NULL);
        ASSERT_INT_EQ(ps.count, 4000);
        ASSERT_INT_EQ(ps.bad, 0); /* per-thread FIFO */
        cta_loop_free(ps.l);
        return 0;
}

struct fdstate {
        int fds[2];
        int other[2];
        char got[8];
        int calls_other;
};

static void fd_cb_other(struct cta_loop *l, int fd, uint32_t events, void *data)
{
        struct fdstate *s = data;

        s->calls_other++;
}

static void fd_cb(struct cta_loop *l, int fd, uint32_t events, void *data)
{
        struct fdstate *s = data;

        if (!(events & EPOLLIN) || read(fd, s->got, sizeof(s->got)) <= 0)
                abort();
        /* Deleting another ready fd in the same round: it must not be called. */
        cta_loop_del_fd(l, s->other[0]);
        cta_loop_del_fd(l, fd);
        cta_loop_stop(l);
}

static void *stop_later(void *arg)
{
        usleep(50000);
        cta_loop_stop(arg);
        return NULL;
}

TEST(loop__fds_and_stop)
{
        struct cta_loop *l = NULL;
        struct fdstate s = { 0 };
        pthread_t th;

        ASSERT_OK(cta_loop_new(&l, NULL));
        ASSERT_INT_EQ(pipe2(s.fds, O_CLOEXEC), 0);
        ASSERT_INT_EQ(pipe2(s.other, O_CLOEXEC), 0);
        ASSERT_OK(cta_loop_add_fd(l, s.fds[0], EPOLLIN, fd_cb, &s));
        ASSERT_OK(cta_loop_add_fd(l, s.other[0], EPOLLIN, fd_cb_other, &s));
        ASSERT_INT_EQ(cta_loop_add_fd(l, s.fds[0], EPOLLIN, fd_cb, &s), -CTA_E_INVALID);
        /* Register the first pipe first so that epoll most likely reports it first;
         * either way the other fd may be reported at most once. */
        ASSERT_INT_EQ(write(s.fds[1], "ping", 4), 4);
        ASSERT_INT_EQ(write(s.other[1], "x", 1), 1);
        ASSERT_OK(cta_loop_run(l));
        ASSERT_MEM_EQ(s.got, "ping", 4);
        ASSERT_TRUE(s.calls_other <= 1);

        /* Stop from another thread while blocked in epoll_wait. */
        ASSERT_INT_EQ(pthread_create(&th, NULL, stop_later, l), 0);
        uint64_t t0 = cta_now_ms();
        ASSERT_OK(cta_loop_run(l));
        pthread_join(th, NULL);
        ASSERT_TRUE(cta_now_ms() - t0 >= 40);

        /* A stop before run makes run return at once. */
        cta_loop_stop(l);
        ASSERT_OK(cta_loop_run(l));

        for (int i = 0; i < 2; i++) {
                close(s.fds[i]);
                close(s.other[i]);
        }
        cta_loop_free(l);
        return 0;
}

/* ---- TLS context ---- */

TEST(tls__self_signed)
{
        char dir[64], path[128], fp[128] = "", fp2[128] = "", fp3[128] = "", out[512];
        char cmd[512], host[256] = "";
        struct cta_tls_server *t = NULL;
        struct cta_error *e = NULL;
        struct stat st;

        snprintf(dir, sizeof(dir), "/tmp/cta-test-tls-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(dir));
        ASSERT_OK(cta_tls_server_new(NULL, NULL, dir, fp, &t, &e));
        ASSERT_STR_EQ(fp, cta_tls_server_fingerprint(t));
        t = cta_tls_server_free(t);

        /* Format: "SHA256:" + 32 uppercase hex pairs. */
        ASSERT_SIZE_EQ(strlen(fp), 7 + 32 * 3 - 1);
        ASSERT_TRUE(strncmp(fp, "SHA256:", 7) == 0);
        for (int i = 0; i < 32; i++) {
                const char *p = fp + 7 + i * 3;
                ASSERT_TRUE(strchr("0123456789ABCDEF", p[0]) && strchr("0123456789ABCDEF", p[1]));
                ASSERT_TRUE(i == 31 || p[2] == ':');
        }

        snprintf(path, sizeof(path), "%s/tls/server.key", dir);
        ASSERT_INT_EQ(stat(path, &st), 0);
        ASSERT_INT_EQ(st.st_mode & 07777, 0600);
        snprintf(path, sizeof(path), "%s/tls", dir);
        ASSERT_INT_EQ(stat(path, &st), 0);
        ASSERT_INT_EQ(st.st_mode & 07777, 0700);

        /* Same digest as the openssl tool's. */
        snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s/tls/server.crt' -noout -fingerprint -sha256",
                 dir);
        ASSERT_INT_EQ(run_cmd(cmd, out, sizeof(out)), 0);
        char *eq = strchr(out, '=');
        ASSERT_NOT_NULL(eq);
        eq[1 + 95] = '\0';
        ASSERT_STR_EQ(eq + 1, fp + 7);

        /* EC P-256, 10 years, CN = host name, SAN with the loopback addresses. */
        snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s/tls/server.crt' -noout -text", dir);
        ASSERT_INT_EQ(run_cmd(cmd, out, sizeof(out)), 0);
        {
                static char text[16384];
                ASSERT_INT_EQ(run_cmd(cmd, text, sizeof(text)), 0);
                ASSERT_NOT_NULL(strstr(text, "prime256v1"));
                ASSERT_NOT_NULL(strstr(text, "IP Address:127.0.0.1"));
                ASSERT_NOT_NULL(strstr(text, "DNS:localhost"));
                gethostname(host, sizeof(host) - 1);
                char cn[300];
                snprintf(cn, sizeof(cn), "CN = %s", host);
                ASSERT_NOT_NULL(strstr(text, cn));
                char year[16];
                time_t now = time(NULL);
                struct tm tm;
                gmtime_r(&now, &tm);
                snprintf(year, sizeof(year), "%d", tm.tm_year + 1900 + 10);
                const char *after = strstr(text, "Not After");
                ASSERT_NOT_NULL(after);
                ASSERT_NOT_NULL(strstr(after, year));
        }

        /* The PEM helper agrees. */
        snprintf(path, sizeof(path), "%s/tls/server.crt", dir);
        ASSERT_OK(cta_tls_fingerprint_pem_file(path, fp2, NULL));
        ASSERT_STR_EQ(fp2, fp);

        /* A second start loads, does not regenerate. */
        ASSERT_OK(cta_tls_server_new(NULL, NULL, dir, fp3, &t, NULL));
        ASSERT_STR_EQ(fp3, fp);
        t = cta_tls_server_free(t);

        /* Explicit paths. */
        char key[128];
        snprintf(key, sizeof(key), "%s/tls/server.key", dir);
        fp3[0] = '\0';
        ASSERT_OK(cta_tls_server_new(path, key, NULL, fp3, &t, NULL));
        ASSERT_STR_EQ(fp3, fp);
        t = cta_tls_server_free(t);

        /* Errors. */
        ASSERT_INT_EQ(cta_tls_server_new(path, NULL, dir, NULL, &t, &e), -CTA_E_INVALID);
        e = cta_error_free(e);
        ASSERT_INT_EQ(cta_tls_server_new(NULL, NULL, NULL, NULL, &t, &e), -CTA_E_INVALID);
        e = cta_error_free(e);
        ASSERT_INT_EQ(cta_tls_server_new(key, key, NULL, NULL, &t, &e), -CTA_E_TLS);
        e = cta_error_free(e);
        ASSERT_INT_EQ(cta_tls_fingerprint_pem_file(key, fp2, &e), -CTA_E_TLS);
        e = cta_error_free(e);
        snprintf(path, sizeof(path), "%s/missing.crt", dir);
        ASSERT_INT_EQ(cta_tls_fingerprint_pem_file(path, fp2, &e), -CTA_E_IO);
        e = cta_error_free(e);

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ASSERT_INT_EQ(system(cmd), 0);
        return 0;
}

/* Byte k of the gathering BIO's test stream. */
static uint8_t gather_byte(uint64_t k)
{
        return (uint8_t)(k % 251);
}

/* Read what the peer can read now (at most until want bytes in all): false if a byte
 * is out of order. */
static bool gather_take(int fd, uint64_t *got, uint64_t want)
{
        uint8_t buf[65536];
        while (*got < want) {
                size_t n = want - *got < sizeof(buf) ? (size_t)(want - *got) : sizeof(buf);
                ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
                if (r <= 0)
                        break;
                for (ssize_t i = 0; i < r; i++)
                        if (buf[i] != gather_byte(*got + (uint64_t)i))
                                return false;
                *got += (uint64_t)r;
        }
        return true;
}

/* The TLS writer's gathering BIO: writes wait in its buffer until it is full or
 * flushed, go out in order, and a socket that takes no more makes a write or a flush
 * ask to be retried, without losing or reordering a byte. */
TEST(tls__gather_bio)
{
        enum { CAP = 64 << 10, REC = 1000 };
        int sv[2], small = 32 << 10;
        uint8_t rec[REC];
        uint64_t sent = 0, got = 0;

        ASSERT_INT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        ASSERT_INT_EQ(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
        BIO *b = cta_tls_gather_bio_new(sv[0], CAP);
        ASSERT_NOT_NULL(b);

        /* gathered: nothing reaches the peer before the flush */
        for (int i = 0; i < 10; i++, sent += REC) {
                for (int j = 0; j < REC; j++)
                        rec[j] = gather_byte(sent + (uint64_t)j);
                ASSERT_INT_EQ(BIO_write(b, rec, REC), REC);
        }
        ASSERT_INT_EQ(BIO_ctrl_wpending(b), 10 * REC);
        ASSERT_TRUE(gather_take(sv[1], &got, sent));
        ASSERT_INT_EQ(got, 0);
        ASSERT_INT_EQ(BIO_flush(b), 1);
        ASSERT_INT_EQ(BIO_ctrl_wpending(b), 0);
        ASSERT_TRUE(gather_take(sv[1], &got, sent));
        ASSERT_INT_EQ(got, sent);

        /* a peer that does not read: the socket and then the buffer fill up */
        for (;;) {
                for (int j = 0; j < REC; j++)
                        rec[j] = gather_byte(sent + (uint64_t)j);
                int r = BIO_write(b, rec, REC);
                if (r < 0) {
                        ASSERT_TRUE(BIO_should_retry(b) && BIO_should_write(b));
                        break;
                }
                ASSERT_INT_EQ(r, REC);
                sent += REC;
                ASSERT_TRUE(sent < 64 * CAP);
        }
        ASSERT_TRUE(sent - got >= CAP);
        ASSERT_TRUE(BIO_ctrl_wpending(b) > CAP - REC);
        ASSERT_INT_EQ(BIO_flush(b), 0);
        ASSERT_TRUE(BIO_should_retry(b));

        /* the peer reads: every byte arrives, in order, once flushed */
        for (int i = 0; i < 100000 && got < sent; i++) {
                ASSERT_TRUE(gather_take(sv[1], &got, sent));
                (void)BIO_flush(b);
        }
        ASSERT_INT_EQ(got, sent);
        ASSERT_INT_EQ(BIO_ctrl_wpending(b), 0);
        ASSERT_INT_EQ(BIO_flush(b), 1);

        /* a peer gone: an error, not a retry (and no SIGPIPE) */
        close(sv[1]);
        ASSERT_INT_EQ(BIO_write(b, rec, REC), REC);
        ASSERT_TRUE(BIO_flush(b) < 0 || !BIO_should_retry(b));
        BIO_free(b);
        close(sv[0]);
        return 0;
}

/* ---- connections ---- */

TEST(conn__echo_plain)
{
        struct cta_client *c = connect_to(&L_ECHO, NULL);
        char buf[64];

        ASSERT_NOT_NULL(c);
        ASSERT_STR_EQ(cta_client_fingerprint(c), "");
        ASSERT_TRUE(cta_client_fd(c) >= 0);
        ASSERT_OK(cta_client_write(c, "hello\0world\0", 12, NULL));
        ASSERT_OK(read_exact(c, buf, 12));
        ASSERT_MEM_EQ(buf, "hello\0world\0", 12);
        for (int i = 0; i < 50; i++)
                ASSERT_OK(echo_round(c, 1 + (size_t)i * 977, (uint64_t)i));
        /* Nothing more arrives. */
        struct cta_error *e = NULL;
        ASSERT_INT_EQ(cta_client_read(c, buf, sizeof(buf), 50, &e), -CTA_E_TIMEOUT);
        ASSERT_INT_EQ(cta_error_code(e), CTA_E_TIMEOUT);
        e = cta_error_free(e);
        cta_client_free(c);
        return 0;
}

TEST(conn__echo_tls_pinned)
{
        struct cta_client *c;
        struct cta_error *e = NULL;
        char lower[128];

        /* Unpinned: reports the server's fingerprint (TOFU). */
        c = connect_to(&L_ECHO_TLS, NULL);
        ASSERT_NOT_NULL(c);
        ASSERT_STR_EQ(cta_client_fingerprint(c), S.fp);
        ASSERT_OK(echo_round(c, 100000, 5));
        cta_client_free(c);

        /* Pinned right (either case). */
        c = connect_to(&L_ECHO_TLS, S.fp);
        ASSERT_NOT_NULL(c);
        ASSERT_OK(echo_round(c, 12345, 6));
        cta_client_free(c);
        for (size_t i = 0; i <= strlen(S.fp); i++)
                lower[i] = (char)(S.fp[i] >= 'A' && S.fp[i] <= 'F' ? S.fp[i] + 32 : S.fp[i]);
        c = connect_to(&L_ECHO_TLS, lower);
        ASSERT_NOT_NULL(c);
        cta_client_free(c);

        /* Pinned wrong. */
        const char *wrong = "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
                            "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF";
        struct cta_client_opts o = { .tls = true, .pin_fingerprint = wrong, .timeout_ms = 5000 };
        c = NULL;
        ASSERT_INT_EQ(cta_client_connect("127.0.0.1", L_ECHO_TLS.port, &o, &c, &e),
                      -CTA_E_PEER_CHANGED);
        ASSERT_NULL(c);
        ASSERT_INT_EQ(cta_error_code(e), CTA_E_PEER_CHANGED);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), wrong));
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), S.fp));
        e = cta_error_free(e);

        /* TLS client to the plain port fails cleanly. */
        o.pin_fingerprint = NULL;
        ASSERT_INT_EQ(cta_client_connect("127.0.0.1", L_ECHO.port, &o, &c, &e), -CTA_E_TLS);
        e = cta_error_free(e);

        /* Nobody listening. */
        o.tls = false;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sin);
        ASSERT_INT_EQ(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        ASSERT_INT_EQ(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
        ASSERT_INT_EQ(cta_client_connect("127.0.0.1", ntohs(sin.sin_port), &o, &c, &e),
                      -CTA_E_CONNECT);
        e = cta_error_free(e);
        close(fd);
        return 0;
}

/* What the server saw of the client's certificate: the line M_PEERFP sends. */
static int peer_fp_seen(const struct lcfg *cfg, const char *cert, const char *key,
                        char out[CTA_TLS_FINGERPRINT_MAX])
{
        struct cta_client_opts o = { .tls = cfg->tls, .cert_path = cert, .key_path = key,
                                     .timeout_ms = CLIENT_TIMEOUT_MS };
        struct cta_client *c = NULL;
        struct cta_error *e = NULL;
        char buf[256];
        size_t n = 0;

        if (cta_client_connect("127.0.0.1", cfg->port, &o, &c, &e) < 0) {
                printf("# connect to %s: %s\n", cfg->name, cta_error_msg(e));
                cta_error_free(e);
                return -1;
        }
        for (;;) {
                ssize_t r = cta_client_read(c, buf + n, sizeof(buf) - 1 - n, -1, NULL);
                if (r <= 0)
                        break;
                n += (size_t)r;
                if (memchr(buf, '\n', n))
                        break;
        }
        cta_client_free(c);
        buf[n] = '\0';
        char *nl = strchr(buf, '\n');
        if (!nl)
                return -1;
        *nl = '\0';
        if ((size_t)(nl - buf) >= CTA_TLS_FINGERPRINT_MAX)
                return -1;
        memcpy(out, buf, (size_t)(nl - buf) + 1);
        return 0;
}

TEST(conn__client_certificate)
{
        _cleanup_free_ char *crt = cta_xasprintf("%s/client.crt", S.dir);
        _cleanup_free_ char *key = cta_xasprintf("%s/client.key", S.dir);
        _cleanup_free_ char *other_key = cta_xasprintf("%s/tls/server.key", S.dir);
        char want[CTA_TLS_FINGERPRINT_MAX], got[CTA_TLS_FINGERPRINT_MAX];
        struct cta_client_opts o = { .tls = true, .timeout_ms = CLIENT_TIMEOUT_MS };
        struct cta_client *c = NULL;
        struct cta_error *e = NULL;
        struct stat st;

        ASSERT_OK(cta_tls_client_cert_generate(crt, key, "alice@test", NULL));
        ASSERT_INT_EQ(stat(key, &st), 0);
        ASSERT_INT_EQ(st.st_mode & 0777, 0600);
        ASSERT_OK(cta_tls_fingerprint_pem_file(crt, want, NULL));
        ASSERT_TRUE(strcmp(want, S.fp) != 0);
        /* The server sees the certificate the client presents, and none otherwise. */
        ASSERT_OK(peer_fp_seen(&L_PEERFP, crt, key, got));
        ASSERT_STR_EQ(got, want);
        ASSERT_OK(peer_fp_seen(&L_PEERFP, NULL, NULL, got));
        ASSERT_STR_EQ(got, "");
        ASSERT_OK(peer_fp_seen(&L_PEERFP_PLAIN, NULL, NULL, got));
        ASSERT_STR_EQ(got, "");
        /* A certificate without its key, a key of another certificate, a missing file. */
        o.cert_path = crt;
        ASSERT_INT_EQ(cta_client_connect("127.0.0.1", L_PEERFP.port, &o, &c, &e), -CTA_E_INVALID);
        e = cta_error_free(e);
        o.key_path = other_key;
        ASSERT_INT_EQ(cta_client_connect("127.0.0.1", L_PEERFP.port, &o, &c, &e), -CTA_E_TLS);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "client key"));
        e = cta_error_free(e);
        o.cert_path = "/nonexistent/client.crt";
        ASSERT_INT_EQ(cta_client_connect("127.0.0.1", L_PEERFP.port, &o, &c, &e), -CTA_E_TLS);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "client certificate"));
        e = cta_error_free(e);
        ASSERT_NULL(c);
        ASSERT_INT_EQ(cta_tls_client_cert_generate(crt, key, "", &e), -CTA_E_INVALID);
        e = cta_error_free(e);
        return 0;
}

TEST(conn__ipv6)
{
        if (!S.ipv6)
                return 77;
        struct cta_client *c = connect_to(&L_ECHO6, S.fp);
        ASSERT_NOT_NULL(c);
        ASSERT_OK(echo_round(c, 4096, 9));
        cta_client_free(c);
        return 0;
}

struct cl_arg {
        const struct lcfg *cfg;
        int idx;
        int rounds;
        int ok;
};

static void *cl_thread(void *p)
{
        struct cl_arg *a = p;
        unsigned seed = (unsigned)a->idx;
        struct cta_client *c = connect_to(a->cfg, a->cfg->tls ? S.fp : NULL);

        if (!c)
                return NULL;
        for (int i = 0; i < a->rounds; i++) {
                size_t n = 1 + (size_t)(rand_r(&seed) % 16384);
                if (echo_round(c, n, (uint64_t)a->idx * 1000 + (uint64_t)i) < 0) {
                        cta_client_free(c);
                        return NULL;
                }
        }
        cta_client_free(c);
        a->ok = 1;
        return NULL;
}

TEST(conn__200_concurrent)
{
        enum { N = 200 };
        static struct cl_arg args[N];
        pthread_t th[N];
        pthread_attr_t attr;
        int ok = 0;

        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        for (int i = 0; i < N; i++) {
                const struct lcfg *cfg = i % 4 == 0 ? &L_ECHO : i % 4 == 1 ? &L_ECHO_TLS
                                       : i % 4 == 2 ? &L_WORKER : &L_PAUSE;
                args[i] = (struct cl_arg){ cfg, i, 10, 0 };
                ASSERT_INT_EQ(pthread_create(&th[i], &attr, cl_thread, &args[i]), 0);
        }
        for (int i = 0; i < N; i++) {
                pthread_join(th[i], NULL);
                ok += args[i].ok;
        }
        pthread_attr_destroy(&attr);
        ASSERT_INT_EQ(ok, N);
        return 0;
}

static int large_transfer(const struct lcfg *cfg, size_t total)
{
        struct cta_client *c = connect_to(cfg, cfg->tls ? S.fp : NULL);
        uint8_t *buf = cta_xmalloc(total);
        int r;

        ASSERT_NOT_NULL(c);
        fill(buf, total, 1234, 0);
        /* The server echoes while we write; what we do not read yet piles up
         * in its queue (below the 64 MiB cap). */
        r = cta_client_write(c, buf, total, NULL);
        if (r == 0) {
                memset(buf, 0, total);
                r = read_exact(c, buf, total);
        }
        if (r == 0 && !check(buf, total, 1234, 0))
                r = -CTA_E_PROTO;
        free(buf);
        cta_client_free(c);
        return r;
}

TEST(conn__large_transfer)
{
        ASSERT_OK(large_transfer(&L_ECHO_TLS, 32 * MIB));
        ASSERT_OK(large_transfer(&L_ECHO, 32 * MIB));
        ASSERT_OK(large_transfer(&L_WORKER, 8 * MIB));
        return 0;
}

static struct cta_conn *take_held(void)
{
        struct cta_conn *held;

        pthread_mutex_lock(&S.lock);
        while (!S.held)
                pthread_cond_wait(&S.cond, &S.lock);
        held = TAKE_PTR(S.held);
        pthread_mutex_unlock(&S.lock);
        return held;
}

TEST(conn__send_from_thread)
{
        struct cta_client *c;
        struct cta_conn *held;
        struct cta_error *e = NULL;
        char buf[64];
        int closes = atomic_load(&L_HOLD.closes), idles = atomic_load(&L_HOLD.idles);

        c = connect_to(&L_HOLD, NULL);
        ASSERT_NOT_NULL(c);
        held = take_held();

        ASSERT_STR_EQ(cta_conn_peer_addr(held), "127.0.0.1");
        ASSERT_TRUE(strncmp(cta_conn_peer(held), "127.0.0.1:", 10) == 0);
        ASSERT_TRUE(cta_conn_id(held) > 0);
        ASSERT_TRUE(!cta_conn_is_tls(held));
        ASSERT_TRUE(!cta_conn_is_closed(held));
        cta_conn_set_data(held, &closes);
        ASSERT_TRUE(cta_conn_get_data(held) == &closes);

        /* This (test) thread is not the loop thread. */
        ASSERT_OK(cta_conn_send(held, "from ", 5));
        ASSERT_OK(cta_conn_send(held, "another thread", 14));
        ASSERT_OK(read_exact(c, buf, 19));
        ASSERT_MEM_EQ(buf, "from another thread", 19);
        ASSERT_OK(cta_conn_send(held, "", 0));
        /* The loop accounts a write after the syscall returns: the client can
         * be faster. */
        for (int i = 0; i < 500 && cta_conn_queued(held) > 0; i++)
                usleep(2000);
        ASSERT_SIZE_EQ(cta_conn_queued(held), 0);

        /* Data the client sends is echoed (M_HOLD echoes too). */
        ASSERT_OK(echo_round(c, 3000, 3));

        /* Pause reading from this thread: no echo until resumed. */
        cta_conn_pause_read(held, true);
        usleep(50000);
        ASSERT_OK(cta_client_write(c, "paused", 6, NULL));
        ASSERT_INT_EQ(cta_client_read(c, buf, sizeof(buf), 200, NULL), -CTA_E_TIMEOUT);
        cta_conn_pause_read(held, false);
        ASSERT_OK(read_exact(c, buf, 6));
        ASSERT_MEM_EQ(buf, "paused", 6);

        /* Close from this thread: the client sees EOF, sends then fail cleanly. */
        cta_conn_close(held);
        ASSERT_TRUE(cta_conn_is_closed(held));
        ASSERT_INT_EQ(cta_conn_send(held, "late", 4), -CTA_E_IO);
        ASSERT_INT_EQ(cta_client_read(c, buf, sizeof(buf), 5000, NULL), 0);
        ASSERT_TRUE(wait_until(&L_HOLD.closes, closes + 1, 5000));
        ASSERT_INT_EQ(cta_conn_send(held, "later", 5), -CTA_E_IO);
        cta_conn_close(held); /* again: harmless */
        cta_conn_close_after_flush(held);
        cta_conn_pause_read(held, true);
        cta_conn_set_idle_timeout(held, 10);
        held = cta_conn_unref(held);

        /* The client's writes to the closed connection end in CTA_E_IO. */
        int r = 0;
        for (int i = 0; i < 100 && r == 0; i++) {
                r = cta_client_write(c, "x", 1, &e);
                usleep(5000);
        }
        ASSERT_INT_EQ(r, -CTA_E_IO);
        e = cta_error_free(e);
        cta_client_free(c);

        /* Idle timeout set from another thread. */
        c = connect_to(&L_HOLD, NULL);
        ASSERT_NOT_NULL(c);
        held = take_held();
        cta_conn_set_idle_timeout(held, 100);
        uint64_t t0 = cta_now_ms();
        ASSERT_OK(read_exact(c, buf, 5));
        ASSERT_MEM_EQ(buf, "IDLE\n", 5);
        ASSERT_TRUE(cta_now_ms() - t0 >= 80);
        ASSERT_INT_EQ(cta_client_read(c, buf, sizeof(buf), 5000, NULL), 0);
        ASSERT_INT_EQ(atomic_load(&L_HOLD.idles), idles + 1);
        cta_conn_unref(held);
        cta_client_free(c);

        /* on_close exactly once each */
        ASSERT_TRUE(wait_until(&L_HOLD.closes, closes + 2, 5000));
        usleep(50000);
        ASSERT_INT_EQ(atomic_load(&L_HOLD.closes), closes + 2);
        return 0;
}

TEST(conn__idle_timeout)
{
        struct cta_client *c = connect_to(&L_IDLE, S.fp);
        int idles = atomic_load(&L_IDLE.idles), closes = atomic_load(&L_IDLE.closes);
        char buf[64];

        ASSERT_NOT_NULL(c);
        /* Activity every 80 ms keeps it alive past several timeouts. */
        for (int i = 0; i < 8; i++) {
                ASSERT_OK(echo_round(c, 10, (uint64_t)i));
                usleep(80000);
        }
        ASSERT_INT_EQ(atomic_load(&L_IDLE.idles), idles);

        uint64_t t0 = cta_now_ms();
        ASSERT_OK(read_exact(c, buf, 5));
        uint64_t dt = cta_now_ms() - t0;
        ASSERT_MEM_EQ(buf, "IDLE\n", 5);
        ASSERT_TRUE(dt >= 100 && dt < 2000);
        ASSERT_INT_EQ(cta_client_read(c, buf, sizeof(buf), 5000, NULL), 0);
        ASSERT_INT_EQ(atomic_load(&L_IDLE.idles), idles + 1);
        ASSERT_TRUE(wait_until(&L_IDLE.closes, closes + 1, 5000));
        cta_client_free(c);
        return 0;
}

static int close_after_flush(const struct lcfg *cfg)
{
        struct cta_client *c = connect_to(cfg, cfg->tls ? S.fp : NULL);
        uint8_t *buf = cta_xmalloc(cfg->big);
        int closes = atomic_load(&cfg->closes);
        ssize_t n;

        ASSERT_NOT_NULL(c);
        /* Let the server finish writing into the socket buffers before reading,
         * and send it bytes it will never read (must not turn into a reset). */
        ASSERT_OK(cta_client_write(c, "unread", 6, NULL));
        usleep(100000);
        n = read_to_eof(c, buf, cfg->big, 10000);
        ASSERT_INT_EQ(n, (ssize_t)cfg->big);
        ASSERT_TRUE(check(buf, cfg->big, BIG_SEED, 0));
        ASSERT_TRUE(wait_until((atomic_int *)&cfg->closes, closes + 1, 5000));
        ASSERT_INT_EQ(atomic_load(&cfg->result), 0);
        free(buf);
        cta_client_free(c);
        return 0;
}

TEST(conn__close_after_flush)
{
        ASSERT_OK(close_after_flush(&L_BIG));
        ASSERT_OK(close_after_flush(&L_BIG_TLS));
        return 0;
}

static int tcp_state(int fd)
{
        struct tcp_info ti;
        socklen_t sl = sizeof(ti);

        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &sl) < 0)
                return -1;
        return ti.tcpi_state;
}

TEST(conn__linger)
{
        /* After close-after-flush the server half-closes and discards input
         * for a while (no reset while the peer still sends), then closes. */
        int fd = raw_connect(L_BIG.port), closes = atomic_load(&L_BIG.closes);
        char buf[65536];
        size_t got = 0;
        ssize_t n;

        ASSERT_TRUE(fd >= 0);
        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
                got += (size_t)n;
        ASSERT_INT_EQ(n, 0);
        ASSERT_SIZE_EQ(got, L_BIG.big);
        ASSERT_TRUE(wait_until(&L_BIG.closes, closes + 1, 1000)); /* on_close at the half-close */
        ASSERT_INT_EQ(send(fd, "x", 1, MSG_NOSIGNAL), 1);
        usleep(100000);
        ASSERT_INT_EQ(send(fd, "y", 1, MSG_NOSIGNAL), 1);
        usleep(50000);
        /* Still drained by the server, not reset. (recv() cannot tell: after
         * a FIN it reports EOF even once reset; the TCP state can.) */
        ASSERT_INT_EQ(tcp_state(fd), TCP_CLOSE_WAIT);
        usleep(2200000);
        /* The linger timer closed it: now the kernel answers with a reset. */
        (void)send(fd, "z", 1, MSG_NOSIGNAL);
        usleep(50000);
        ASSERT_INT_EQ(tcp_state(fd), TCP_CLOSE);
        close(fd);
        return 0;
}

TEST(conn__queue_cap)
{
        struct cta_client *c = connect_to(&L_CAP, S.fp);
        uint8_t *buf = cta_xmalloc(MIB);

        ASSERT_NOT_NULL(c);
        ASSERT_INT_EQ(read_to_eof(c, buf, MIB / 2, 10000), (ssize_t)(MIB / 2));
        ASSERT_TRUE(check(buf, MIB / 2, BIG_SEED, 0));
        ASSERT_INT_EQ(atomic_load(&L_CAP.result), 1);
        free(buf);
        cta_client_free(c);
        return 0;
}

static int reset_mid_write(const struct lcfg *big)
{
        struct cta_client *victim, *other;
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        uint8_t buf[65536];
        int closes = atomic_load(&big->closes);

        other = connect_to(&L_ECHO_TLS, S.fp);
        ASSERT_NOT_NULL(other);
        ASSERT_OK(echo_round(other, 1000, 1));

        victim = connect_to(big, big->tls ? S.fp : NULL);
        ASSERT_NOT_NULL(victim);
        ASSERT_OK(read_exact(victim, buf, sizeof(buf)));
        ASSERT_TRUE(check(buf, sizeof(buf), BIG_SEED, 0));
        /* Close with unread data and SO_LINGER 0: an RST mid-transfer. */
        ASSERT_INT_EQ(setsockopt(cta_client_fd(victim), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        cta_client_free(victim);

        ASSERT_TRUE(wait_until((atomic_int *)&big->closes, closes + 1, 5000));
        ASSERT_OK(echo_round(other, 200000, 2));
        cta_client_free(other);
        return 0;
}

TEST(conn__peer_reset)
{
        ASSERT_OK(reset_mid_write(&L_BIG));
        ASSERT_OK(reset_mid_write(&L_BIG_TLS));
        return 0;
}

static int raw_connect(uint16_t port)
{
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

/* Wait for EOF or reset on a raw socket; returns ms waited or -1. */
static int raw_wait_closed(int fd, int timeout_ms)
{
        uint64_t t0 = cta_now_ms();
        char buf[4096];

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int left = timeout_ms - (int)(cta_now_ms() - t0);
                if (left <= 0 || poll(&p, 1, left) <= 0)
                        return -1;
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                if (n <= 0)
                        return (int)(cta_now_ms() - t0);
        }
}

TEST(conn__handshake_timeout)
{
        int opens = atomic_load(&L_HS.opens);
        int silent = raw_connect(L_HS.port);
        int garbage = raw_connect(L_HS.port);

        ASSERT_TRUE(silent >= 0 && garbage >= 0);
        /* Garbage instead of a ClientHello: dropped at once. */
        ASSERT_INT_EQ(write(garbage, "GET / HTTP/1.0\r\n\r\n", 18), 18);
        int gt = raw_wait_closed(garbage, 5000);
        ASSERT_TRUE(gt >= 0 && gt < 250);

        /* A real client on the same listener is unaffected. */
        struct cta_client *c = connect_to(&L_HS, S.fp);
        ASSERT_NOT_NULL(c);
        ASSERT_OK(echo_round(c, 5000, 4));

        /* The silent one is dropped after 300 ms. */
        int st = raw_wait_closed(silent, 5000);
        ASSERT_TRUE(st >= 150 && st < 3000);
        ASSERT_OK(echo_round(c, 5000, 5));
        cta_client_free(c);
        ASSERT_INT_EQ(atomic_load(&L_HS.opens), opens + 1);
        close(silent);
        close(garbage);
        return 0;
}

TEST(conn__max_conns)
{
        struct cta_client *a = connect_to(&L_MAX2, NULL), *b = connect_to(&L_MAX2, NULL);
        int closes = atomic_load(&L_MAX2.closes);

        ASSERT_TRUE(a && b);
        ASSERT_OK(echo_round(a, 10, 1));
        ASSERT_OK(echo_round(b, 10, 2));
        int third = raw_connect(L_MAX2.port);
        ASSERT_TRUE(third >= 0);
        ASSERT_TRUE(raw_wait_closed(third, 5000) >= 0);
        close(third);
        ASSERT_OK(echo_round(a, 10, 3));

        cta_client_free(a);
        ASSERT_TRUE(wait_until(&L_MAX2.closes, closes + 1, 5000));
        struct cta_client *d = connect_to(&L_MAX2, NULL);
        ASSERT_NOT_NULL(d);
        ASSERT_OK(echo_round(d, 10, 4));
        cta_client_free(b);
        cta_client_free(d);
        return 0;
}

TEST(conn__pause_read)
{
        struct cta_client *c = connect_to(&L_PAUSE, S.fp);
        char buf[8];

        ASSERT_NOT_NULL(c);
        ASSERT_OK(cta_client_write(c, "P", 1, NULL));
        ASSERT_OK(read_exact(c, buf, 1));
        /* Reading is paused for 300 ms: this echo comes late but intact. */
        uint64_t t0 = cta_now_ms();
        ASSERT_OK(cta_client_write(c, "abc", 3, NULL));
        ASSERT_OK(read_exact(c, buf, 3));
        ASSERT_MEM_EQ(buf, "abc", 3);
        ASSERT_TRUE(cta_now_ms() - t0 >= 200);
        ASSERT_OK(echo_round(c, 300000, 8));
        cta_client_free(c);
        return 0;
}

TEST(conn__client_timeouts)
{
        /* A listener that never accepts: connect succeeds (backlog), a read
         * times out, and a TLS handshake times out. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sin);
        struct cta_client_opts o = { .tls = true, .timeout_ms = 200 };
        struct cta_client *c = NULL;
        struct cta_error *e = NULL;

        ASSERT_INT_EQ(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        ASSERT_INT_EQ(listen(fd, 8), 0);
        ASSERT_INT_EQ(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
        uint64_t t0 = cta_now_ms();
        ASSERT_INT_EQ(cta_client_connect("localhost", ntohs(sin.sin_port), &o, &c, &e),
                      -CTA_E_TIMEOUT);
        ASSERT_TRUE(cta_now_ms() - t0 >= 150);
        e = cta_error_free(e);

        o.tls = false;
        ASSERT_OK(cta_client_connect("127.0.0.1", ntohs(sin.sin_port), &o, &c, &e));
        char b;
        ASSERT_INT_EQ(cta_client_read(c, &b, 1, -1, NULL), -CTA_E_TIMEOUT);
        ASSERT_INT_EQ(cta_client_read(c, &b, 1, 30, NULL), -CTA_E_TIMEOUT);
        cta_client_free(c);
        close(fd);

        ASSERT_INT_EQ(cta_client_connect("no-such-host.invalid", 1, &o, &c, &e), -CTA_E_CONNECT);
        e = cta_error_free(e);
        return 0;
}

/* A peer that takes 4 KiB every 5 ms (≈ 800 KB/s: a slow link) until told to stop. */
struct slow_reader {
        int fd;
        atomic_bool stop;
};

static void *slow_reader_main(void *p)
{
        struct slow_reader *r = p;
        char buf[4096];
        while (!atomic_load(&r->stop)) {
                if (recv(r->fd, buf, sizeof(buf), MSG_DONTWAIT) == 0)
                        break;
                usleep(5000);
        }
        return NULL;
}

/* Write 16 KiB whenever the client is sendable, for 300 ms; the bytes left unsent. */
static int fill_for_300ms(struct cta_client *c)
{
        static char chunk[16384];
        uint64_t end = cta_now_ms() + 300;
        for (uint64_t now = cta_now_ms(); now < end; now = cta_now_ms()) {
                int w = cta_client_wait_sendable(c, (int)(end - now));
                if (w < 0)
                        return -1;
                if (w == 1 && cta_client_write(c, chunk, sizeof(chunk), NULL) < 0)
                        return -1;
        }
        int unsent = -1;
        return ioctl(cta_client_fd(c), SIOCOUTQNSD, &unsent) < 0 ? -1 : unsent;
}

/* The link probe's bound (mig_src.c): with a limit, a writer that waits until the
 * connection is sendable leaves at most the limit and one write unsent, where a socket
 * buffer alone lets it queue hundreds of KiB for a slow peer. */
TEST(client__unsent_limit)
{
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof(sin);
        ASSERT_INT_EQ(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
        ASSERT_INT_EQ(listen(lfd, 8), 0);
        ASSERT_INT_EQ(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
        int unsent[2];
        for (int limited = 0; limited < 2; limited++) {
                struct cta_client_opts o = { .tls = false, .timeout_ms = 5000 };
                struct cta_client *c = NULL;
                ASSERT_OK(cta_client_connect("127.0.0.1", ntohs(sin.sin_port), &o, &c, NULL));
                struct slow_reader r = { .fd = accept(lfd, NULL, NULL) };
                ASSERT_TRUE(r.fd >= 0);
                int sndbuf = 2 * (int)MIB;
                ASSERT_INT_EQ(setsockopt(cta_client_fd(c), SOL_SOCKET, SO_SNDBUF, &sndbuf,
                                         sizeof(sndbuf)), 0);
                if (limited)
                        ASSERT_INT_EQ(cta_client_limit_unsent(c, 64 << 10), 0);
                pthread_t th;
                ASSERT_INT_EQ(pthread_create(&th, NULL, slow_reader_main, &r), 0);
                unsent[limited] = fill_for_300ms(c);
                if (limited) { /* back to the default: sendable again at once */
                        ASSERT_INT_EQ(cta_client_limit_unsent(c, 0), 0);
                        ASSERT_INT_EQ(cta_client_wait_sendable(c, 1000), 1);
                }
                atomic_store(&r.stop, true);
                pthread_join(th, NULL);
                cta_client_free(c);
                close(r.fd);
        }
        close(lfd);
        printf("# unsent after 300 ms: %d bytes with no limit, %d with 64 KiB\n", unsent[0],
               unsent[1]);
        ASSERT_TRUE(unsent[1] >= 0 && unsent[1] <= (64 << 10) + 16384);
        ASSERT_TRUE(unsent[0] > 2 * ((64 << 10) + 16384));
        return 0;
}

int main(void)
{
        int r;

        if (fixture_start() < 0) {
                printf("Bail out! server fixture\n");
                return 1;
        }
        r = tap_run(TESTS(T(loop__timers), T(loop__many_timers), T(loop__post_from_threads),
                          T(loop__fds_and_stop), T(tls__self_signed), T(conn__echo_plain),
                          T(conn__echo_tls_pinned), T(conn__client_certificate), T(tls__gather_bio), T(conn__ipv6), T(conn__200_concurrent),
                          T(conn__large_transfer), T(conn__send_from_thread),
                          T(conn__idle_timeout), T(conn__close_after_flush), T(conn__linger),
                          T(conn__queue_cap),
                          T(conn__peer_reset), T(conn__handshake_timeout), T(conn__max_conns),
                          T(conn__pause_read), T(conn__client_timeouts),
                          T(client__unsent_limit)));
        fixture_stop();
        return r;
}
