/*
 * A blocking TCP/TLS client for the CLI and for agent-to-agent links.
 * Different clients may be used from different threads at once; one client
 * is not to be used by two threads at the same time. The server certificate
 * is not checked against any CA: the caller pins its fingerprint (net/tls.h
 * format), or passes NULL, reads cta_client_fingerprint() and decides (TOFU).
 * SIGPIPE is never raised.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cta_error;
struct cta_client;

struct cta_client_opts {
        bool tls;
        /* "SHA256:AA:BB:..." (case-insensitive); NULL = accept any and report it. */
        const char *pin_fingerprint;
        /* A client certificate and its key (PEM) to present, both or neither: a node
         * that lists its fingerprint lets the client log in without a password. */
        const char *cert_path, *key_path;
        /* connect + handshake budget, and the default wait of each read and
         * of each write's progress. 0 = forever, < 0 = 30 s. */
        int timeout_ms;
};

/*
 * Resolve host (name or literal, IPv4 or IPv6), connect with the timeout
 * (trying each address in turn), and do the TLS handshake if asked.
 * o NULL = plain, 30 s. Errors: CTA_E_CONNECT (resolve/connect), CTA_E_TIMEOUT,
 * CTA_E_TLS (handshake, or an unreadable client certificate or key), CTA_E_PEER_CHANGED (pin mismatch, both fingerprints
 * in the message).
 */
int cta_client_connect(const char *host, uint16_t port, const struct cta_client_opts *o,
                       struct cta_client **ret, struct cta_error **err);
/* The peer certificate's fingerprint; "" for plain. Valid while c lives. */
const char *cta_client_fingerprint(const struct cta_client *c);
/* Write all len bytes. Errors: CTA_E_TIMEOUT (no progress within the
 * timeout), CTA_E_IO, CTA_E_TLS. */
int cta_client_write(struct cta_client *c, const void *data, size_t len, struct cta_error **err);
/*
 * Read what is available (at most cap bytes), waiting up to timeout_ms
 * (-1 = the opts default, 0 = forever). Returns bytes read (> 0), 0 on EOF,
 * or < 0 (CTA_E_TIMEOUT, CTA_E_IO, CTA_E_TLS). A TLS peer that closes without
 * close_notify reads as EOF: the NUL framing above detects truncation.
 */
ssize_t cta_client_read(struct cta_client *c, void *buf, size_t cap, int timeout_ms,
                        struct cta_error **err);
/* For poll(). With TLS, check cta_client_pending() first: decrypted bytes
 * already buffered do not make the fd readable. */
int cta_client_fd(const struct cta_client *c);
bool cta_client_pending(const struct cta_client *c);
/*
 * Let the kernel hold at most about `bytes` of this connection that TCP has not sent yet
 * (TCP_NOTSENT_LOWAT), as cta_client_wait_sendable() sees it; 0 restores the system's
 * default. Writes are not refused beyond it: a writer that wants a bound waits first.
 * For timing a link: what a socket buffer of megabytes queued would cross the link after
 * the clock stopped. Returns 0, or -1 with errno.
 */
int cta_client_limit_unsent(struct cta_client *c, unsigned bytes);
/* Wait up to timeout_ms (> 0) until the connection takes more without going beyond that
 * limit: 1, 0 on timeout, -1 with errno. An error or a hang-up counts as ready (the
 * write that follows reports it). */
int cta_client_wait_sendable(struct cta_client *c, int timeout_ms);
/* Sends a TLS close_notify (best effort, without waiting) and closes. */
struct cta_client *cta_client_free(struct cta_client *c);
