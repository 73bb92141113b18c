/*
 * Server connections, plain TCP or TLS, byte-oriented: the daemon layers the
 * NUL framing on top. All socket I/O and all callbacks happen on the loop
 * thread. Functions marked thread-safe may be called from any thread; the
 * others are for the loop thread (when called elsewhere they are handed to
 * the loop and take effect shortly after).
 *
 * Life cycle: a connection starts with one reference held by its listener.
 * on_open is called once it is usable (right after accept, or after the TLS
 * handshake); on_close is called exactly once for every connection that got
 * on_open, when it is gone (peer closed, error, timeout, closed by us,
 * listener freed). A connection whose TLS handshake fails or times out gets
 * neither. After on_close the listener drops its reference; the struct lives
 * until the last cta_conn_unref(), and sends on it fail with -CTA_E_IO.
 * Callbacks never run inside a cta_conn_* call: closing from within on_data
 * makes on_close come later, from the loop (but no on_data follows a close
 * request). EOF from the peer closes the connection: half-close is not
 * supported, as in the Agent protocol a client that stops sending is gone.
 *
 * The loop must outlive every thread that may still call cta_conn_* on its
 * connections (references make the struct outlive the connection, not the
 * loop): at shutdown free the listeners (on the loop's thread), stop the
 * workers, and free the loop last.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cta_error;
struct cta_loop;
struct cta_tls_server;
struct cta_conn;
struct cta_listener;

struct cta_conn_ops {
        /* After accept (plain) or after the TLS handshake. */
        void (*on_open)(struct cta_conn *c);
        /* Bytes received, on the loop thread. data is borrowed for the call. */
        void (*on_data)(struct cta_conn *c, const char *data, size_t len);
        /* Optional, both or neither: a buffer of the upper layer's own where the next
         * bytes may be read in place of on_data's (saving it a copy): at most the
         * returned length, 0 for none (then on_data as usual). on_data_into follows with
         * the n > 0 bytes that were read there. */
        size_t (*read_into)(struct cta_conn *c, void **buf);
        void (*on_data_into)(struct cta_conn *c, size_t n);
        /* The idle timeout fired (it re-arms itself); the daemon sends an error
         * packet and calls cta_conn_close_after_flush(). NULL: close at once. */
        void (*on_idle)(struct cta_conn *c);
        /* Once, when the connection is gone. */
        void (*on_close)(struct cta_conn *c);
};

#define CTA_NET_DEFAULT_MAX_CONNS 1024u
#define CTA_NET_DEFAULT_HANDSHAKE_MS 10000u
#define CTA_NET_DEFAULT_MAX_QUEUE ((size_t)64 * 1024 * 1024)

/*
 * Listen on addr: "127.0.0.1:4434", "[::1]:0", "0.0.0.0:4433", "localhost:4433"
 * (first address only); port 0 picks a free port. ret_bound (may be NULL) gets
 * the bound "ADDR:PORT" ("[ADDR]:PORT" for IPv6). tls NULL = plain TCP; the
 * listener keeps its own reference to the TLS context, so tls may be freed
 * first. ops must stay valid for the listener's lifetime.
 * Call on the loop's owner thread (see net/loop.h).
 */
int cta_listen(struct cta_loop *l, const char *addr, struct cta_tls_server *tls,
               const struct cta_conn_ops *ops, void *listener_data, char ret_bound[80],
               struct cta_listener **ret, struct cta_error **err);
/* Stop listening and close every connection of this listener (their on_close
 * runs inside this call). Loop thread. Returns NULL. */
struct cta_listener *cta_listener_free(struct cta_listener *ls);
/* TLS handshake timeout for new connections; 0 = none. Default 10 s. */
void cta_listener_set_handshake_timeout(struct cta_listener *ls, uint64_t ms);
/* Connections beyond n are accepted and closed at once. Default 1024. */
void cta_listener_set_max_conns(struct cta_listener *ls, unsigned n);
/* Cap of each new connection's outgoing queue, in bytes. Default 64 MiB. */
void cta_listener_set_max_queue(struct cta_listener *ls, size_t bytes);
/* Connections currently open (handshaking and lingering ones included). */
unsigned cta_listener_n_conns(const struct cta_listener *ls);
int cta_listener_fd(const struct cta_listener *ls);

void *cta_conn_listener_data(struct cta_conn *c);

/*
 * Thread-safe: copy len bytes into the outgoing queue; the loop writes them.
 * Returns 0, -CTA_E_IO if the connection is closed or closing, or
 * -CTA_E_TOO_LARGE if the queue would exceed its cap (nothing is queued; the
 * caller then closes).
 */
int cta_conn_send(struct cta_conn *c, const void *data, size_t len);
/* Thread-safe: stop reading, refuse further sends, write what is queued, send
 * a TLS close_notify, then close. */
void cta_conn_close_after_flush(struct cta_conn *c);
/* Thread-safe: refuse further sends and drop the connection (queued data is
 * discarded). on_close follows from the loop. */
void cta_conn_close(struct cta_conn *c);
/* Thread-safe, atomic. Returns c / NULL respectively. */
struct cta_conn *cta_conn_ref(struct cta_conn *c);
struct cta_conn *cta_conn_unref(struct cta_conn *c);

/* The daemon's per-connection pointer; not freed by net. Thread-safe only in
 * the sense that net never touches it. */
void cta_conn_set_data(struct cta_conn *c, void *data);
void *cta_conn_get_data(struct cta_conn *c);

/* Immutable; valid as long as the struct lives. */
const char *cta_conn_peer(const struct cta_conn *c);      /* "ip:port", "[v6]:port" */
const char *cta_conn_peer_addr(const struct cta_conn *c); /* "ip" only (v4-mapped v6 shown as v4) */
uint64_t cta_conn_id(const struct cta_conn *c);           /* > 0, unique in the process */
bool cta_conn_is_tls(const struct cta_conn *c);
/* The fingerprint of the certificate the TLS client presented (net/tls.h format), ""
 * if it presented none or the connection is plain. Immutable once on_open ran. */
const char *cta_conn_peer_fingerprint(const struct cta_conn *c);
/* Thread-safe: true once sends are refused (closing or closed). */
bool cta_conn_is_closed(const struct cta_conn *c);

/* Idle timeout: fires on_idle after ms without received bytes (write progress
 * also counts as activity, so a slow download is not idle). 0 = off. */
void cta_conn_set_idle_timeout(struct cta_conn *c, uint64_t ms);
/* Backpressure: stop/resume reading from the socket (and calling on_data). */
void cta_conn_pause_read(struct cta_conn *c, bool paused);
/* Bytes waiting in the outgoing queue. Thread-safe. */
size_t cta_conn_queued(const struct cta_conn *c);
