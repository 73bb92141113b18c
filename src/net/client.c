/*
 * The blocking client: a non-blocking socket driven by poll() with deadlines,
 * so connect, handshake, reads and writes all honour the timeout. One shared
 * client SSL_CTX (OpenSSL 3 contexts are thread-safe once configured).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "net/client.h"
#include "net/tls-private.h"
#include "net/tls.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

#define CLIENT_DEFAULT_TIMEOUT_MS 30000

struct cta_client {
        int fd;
        SSL *ssl;
        int timeout_ms; /* 0 = forever */
        char peer[300];
        char fingerprint[CTA_TLS_FINGERPRINT_MAX];
};

/* What the TLS writer gathers into one send(): 16 records (four 64 KiB segments on
 * loopback). One send per 16 KiB record cost a source a sixth of its CPU on a large
 * copy (docs/performance.md). */
#define SEND_GATHER (256u << 10)

static SSL_CTX *client_ctx;
static pthread_once_t client_ctx_once = PTHREAD_ONCE_INIT;

static void client_ctx_init(void)
{
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

        if (!ctx)
                return;
        if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
                SSL_CTX_free(ctx);
                return;
        }
        /* No CA check: trust comes from the pinned fingerprint. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                         SSL_OP_IGNORE_UNEXPECTED_EOF);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        client_ctx = ctx;
}

/* Milliseconds left until deadline (0 = none): -1 forever, 0 expired. */
static int ms_left(uint64_t deadline)
{
        if (deadline == 0)
                return -1;
        uint64_t now = cta_now_ms();
        if (now >= deadline)
                return 0;
        uint64_t d = deadline - now;
        return d > 1000000000 ? 1000000000 : (int)d;
}

static uint64_t deadline_after(int timeout_ms)
{
        return timeout_ms > 0 ? cta_now_ms() + (uint64_t)timeout_ms : 0;
}

/* Returns 1 when ready, 0 on timeout, -1 with errno on error. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                int left = ms_left(deadline);
                if (left == 0)
                        return 0;
                int r = poll(&p, 1, left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -1;
                if (r > 0)
                        return 1;
        }
}

/* Wait until the connection is ready for events: 0, or a timeout or poll error that says
 * what waited ("write to", "read from"). */
static int wait_ready(struct cta_client *c, short events, uint64_t deadline, const char *what,
                      struct cta_error **err)
{
        int w = wait_fd(c->fd, events, deadline);
        if (w == 0)
                return cta_error_set(err, CTA_E_TIMEOUT, 0, "%s %s: timed out", what, c->peer);
        if (w < 0)
                return cta_error_errno(err, CTA_E_IO, "%s %s: poll", what, c->peer);
        return 0;
}

static int connect_one(const struct addrinfo *ai, uint64_t deadline, int *ret_fd,
                       bool *ret_timeout)
{
        _cleanup_close_ int fd = -1;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);

        *ret_timeout = false;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                if (errno != EINPROGRESS && errno != EINTR)
                        return -errno;
                int r = wait_fd(fd, POLLOUT, deadline);
                if (r == 0) {
                        *ret_timeout = true;
                        return -ETIMEDOUT;
                }
                if (r < 0)
                        return -errno;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                        return -errno;
                if (soerr)
                        return -soerr;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static bool is_ip_literal(const char *host)
{
        struct in6_addr a6;
        struct in_addr a4;

        return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

static int client_use_cert(SSL *ssl, const char *cert_path, const char *key_path,
                           struct cta_error **err)
{
        char what[600];

        if (!cert_path != !key_path)
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "client certificate and key must be given together");
        if (!cert_path)
                return 0;
        if (SSL_use_certificate_chain_file(ssl, cert_path) != 1) {
                snprintf(what, sizeof(what), "load client certificate '%s'", cert_path);
                return cta_tls_error(err, CTA_E_TLS, what);
        }
        if (SSL_use_PrivateKey_file(ssl, key_path, SSL_FILETYPE_PEM) != 1 ||
            SSL_check_private_key(ssl) != 1) {
                snprintf(what, sizeof(what), "load client key '%s'", key_path);
                return cta_tls_error(err, CTA_E_TLS, what);
        }
        return 0;
}

static int client_handshake(struct cta_client *c, const char *host,
                            const struct cta_client_opts *o, uint64_t deadline,
                            struct cta_error **err)
{
        char ebuf[256];
        BIO *bio;

        pthread_once(&client_ctx_once, client_ctx_init);
        if (!client_ctx)
                return cta_tls_error(err, CTA_E_TLS, "TLS client context");
        ERR_clear_error();
        c->ssl = SSL_new(client_ctx);
        if (!c->ssl)
                return cta_tls_error(err, CTA_E_TLS, "SSL_new");
        int rc = client_use_cert(c->ssl, o->cert_path, o->key_path, err);
        if (rc < 0)
                return rc;
        bio = cta_tls_gather_bio_new(c->fd, SEND_GATHER);
        if (!bio)
                return cta_tls_error(err, CTA_E_TLS, "BIO_new");
        SSL_set_bio(c->ssl, bio, bio);
        SSL_set_connect_state(c->ssl);
        if (!is_ip_literal(host) && !SSL_set_tlsext_host_name(c->ssl, host))
                return cta_tls_error(err, CTA_E_TLS, "TLS server name");

        for (;;) {
                ERR_clear_error();
                errno = 0;
                int r = SSL_do_handshake(c->ssl);
                if (r == 1)
                        break;
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                        int w = wait_ready(c, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                                           deadline, "TLS handshake with", err);
                        if (w < 0)
                                return w;
                        continue;
                }
                if (e == SSL_ERROR_SYSCALL) {
                        int saved = errno;
                        ERR_clear_error();
                        if (saved)
                                return cta_error_set(err, CTA_E_TLS, saved,
                                                     "TLS handshake with %s: %s", c->peer,
                                                     strerror(saved));
                        return cta_error_set(err, CTA_E_TLS, 0,
                                             "TLS handshake with %s: connection closed", c->peer);
                }
                return cta_error_set(err, CTA_E_TLS, 0, "TLS handshake with %s: %s", c->peer,
                                     cta_tls_errstr(ebuf, sizeof(ebuf)));
        }

        X509 *x = SSL_get1_peer_certificate(c->ssl);
        int r = cta_tls_x509_fingerprint(x, c->fingerprint);
        X509_free(x);
        if (r < 0)
                return cta_error_set(err, CTA_E_TLS, 0, "%s presented no usable certificate",
                                     c->peer);
        return 0;
}

int cta_client_connect(const char *host, uint16_t port, const struct cta_client_opts *o,
                       struct cta_client **ret, struct cta_error **err)
{
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
        struct addrinfo *res = NULL;
        struct cta_client *c;
        char portstr[8];
        int timeout = o ? o->timeout_ms : -1;
        int r, last = ECONNREFUSED;
        bool timed_out = false;
        uint64_t deadline;

        if (timeout < 0)
                timeout = CLIENT_DEFAULT_TIMEOUT_MS;
        deadline = deadline_after(timeout);

        c = cta_xcalloc(1, sizeof(*c));
        c->fd = -1;
        c->timeout_ms = timeout;
        if (strchr(host, ':'))
                snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, (unsigned)port);
        else
                snprintf(c->peer, sizeof(c->peer), "%s:%u", host, (unsigned)port);

        snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
        r = getaddrinfo(host, portstr, &hints, &res);
        if (r != 0) {
                r = cta_error_set(err, CTA_E_CONNECT, 0, "connect to %s: %s", c->peer,
                                  gai_strerror(r));
                goto fail;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                r = connect_one(ai, deadline, &c->fd, &timed_out);
                if (r == 0 || timed_out)
                        break;
                last = -r;
        }
        freeaddrinfo(res);
        if (timed_out) {
                r = cta_error_set(err, CTA_E_TIMEOUT, ETIMEDOUT, "connect to %s: timed out",
                                  c->peer);
                goto fail;
        }
        if (c->fd < 0) {
                r = cta_error_set(err, CTA_E_CONNECT, last, "connect to %s: %s", c->peer,
                                  strerror(last));
                goto fail;
        }
        int one = 1;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        if (o && o->tls) {
                r = client_handshake(c, host, o, deadline, err);
                if (r < 0)
                        goto fail;
                if (o->pin_fingerprint && strcasecmp(o->pin_fingerprint, c->fingerprint) != 0) {
                        r = cta_error_set(err, CTA_E_PEER_CHANGED, 0,
                                          "certificate of %s changed: pinned %s, presented %s",
                                          c->peer, o->pin_fingerprint, c->fingerprint);
                        goto fail;
                }
        }
        *ret = c;
        return 0;
fail:
        cta_client_free(c);
        return r;
}

const char *cta_client_fingerprint(const struct cta_client *c)
{
        return c->fingerprint;
}

int cta_client_fd(const struct cta_client *c)
{
        return c->fd;
}

int cta_client_limit_unsent(struct cta_client *c, unsigned bytes)
{
        int v = bytes > INT_MAX ? INT_MAX : (int)bytes;
        return setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v));
}

int cta_client_wait_sendable(struct cta_client *c, int timeout_ms)
{
        return wait_fd(c->fd, POLLOUT, deadline_after(timeout_ms > 0 ? timeout_ms : 1));
}

bool cta_client_pending(const struct cta_client *c)
{
        return c->ssl && SSL_pending(c->ssl) > 0;
}

/* Send what the gathering BIO still holds (cta_tls_gather_bio_new): every write ends
 * with it, so no request waits there while we wait for its reply. */
static int flush_sent(struct cta_client *c, struct cta_error **err)
{
        BIO *b = SSL_get_wbio(c->ssl);

        for (;;) {
                errno = 0;
                if (BIO_flush(b) > 0)
                        return 0;
                if (!BIO_should_retry(b)) {
                        int saved = errno ? errno : EPIPE;
                        return cta_error_set(err, CTA_E_IO, saved, "write to %s: %s", c->peer,
                                             strerror(saved));
                }
                int w = wait_ready(c, POLLOUT, deadline_after(c->timeout_ms), "write to", err);
                if (w < 0)
                        return w;
        }
}

int cta_client_write(struct cta_client *c, const void *data, size_t len, struct cta_error **err)
{
        const char *p = data;
        int retry_len = 0;

        while (len > 0) {
                short wait_for;

                if (!c->ssl) {
                        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
                        if (n > 0) {
                                p += n;
                                len -= (size_t)n;
                                continue;
                        }
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                                return cta_error_errno(err, CTA_E_IO, "write to %s", c->peer);
                        wait_for = POLLOUT;
                } else {
                        int want = retry_len ? retry_len : (len > INT_MAX ? INT_MAX : (int)len);
                        ERR_clear_error();
                        errno = 0;
                        int n = SSL_write(c->ssl, p, want);
                        if (n > 0) {
                                retry_len = 0;
                                p += n;
                                len -= (size_t)n;
                                continue;
                        }
                        int e = SSL_get_error(c->ssl, n);
                        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                                retry_len = want;
                                wait_for = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                        } else if (e == SSL_ERROR_SYSCALL) {
                                int saved = errno ? errno : EPIPE;
                                ERR_clear_error();
                                return cta_error_set(err, CTA_E_IO, saved, "write to %s: %s",
                                                     c->peer, strerror(saved));
                        } else {
                                char ebuf[256];
                                return cta_error_set(err, CTA_E_TLS, 0, "write to %s: %s",
                                                     c->peer, cta_tls_errstr(ebuf, sizeof(ebuf)));
                        }
                }
                int w = wait_ready(c, wait_for, deadline_after(c->timeout_ms), "write to", err);
                if (w < 0)
                        return w;
        }
        return c->ssl ? flush_sent(c, err) : 0;
}

ssize_t cta_client_read(struct cta_client *c, void *buf, size_t cap, int timeout_ms,
                        struct cta_error **err)
{
        uint64_t deadline = deadline_after(timeout_ms < 0 ? c->timeout_ms : timeout_ms);

        if (cap == 0)
                return cta_error_set(err, CTA_E_INVALID, 0, "read from %s: no room", c->peer);
        if (cap > INT_MAX)
                cap = INT_MAX;
        for (;;) {
                short wait_for;

                if (!c->ssl) {
                        ssize_t n = recv(c->fd, buf, cap, 0);
                        if (n >= 0)
                                return n;
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                return cta_error_errno(err, CTA_E_IO, "read from %s", c->peer);
                        wait_for = POLLIN;
                } else {
                        ERR_clear_error();
                        errno = 0;
                        int n = SSL_read(c->ssl, buf, (int)cap);
                        if (n > 0)
                                return n;
                        int e = SSL_get_error(c->ssl, n);
                        if (e == SSL_ERROR_ZERO_RETURN)
                                return 0;
                        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                                wait_for = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                        } else if (e == SSL_ERROR_SYSCALL) {
                                int saved = errno;
                                ERR_clear_error();
                                if (saved == 0)
                                        return 0;
                                return cta_error_set(err, CTA_E_IO, saved, "read from %s: %s",
                                                     c->peer, strerror(saved));
                        } else {
                                char ebuf[256];
                                return cta_error_set(err, CTA_E_TLS, 0, "read from %s: %s",
                                                     c->peer, cta_tls_errstr(ebuf, sizeof(ebuf)));
                        }
                }
                int w = wait_ready(c, wait_for, deadline, "read from", err);
                if (w < 0)
                        return w;
        }
}

struct cta_client *cta_client_free(struct cta_client *c)
{
        if (!c)
                return NULL;
        if (c->ssl) {
                /* One non-blocking try: a close_notify if the socket takes it. */
                ERR_clear_error();
                if (SSL_is_init_finished(c->ssl))
                        (void)SSL_shutdown(c->ssl);
                (void)BIO_flush(SSL_get_wbio(c->ssl)); /* (the alert is gathered too) */
                ERR_clear_error();
                SSL_free(c->ssl);
        }
        if (c->fd >= 0)
                close(c->fd);
        free(c);
        return NULL;
}
