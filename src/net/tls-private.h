/* Shared between the src/net .c files only: the OpenSSL side of tls.h. */
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

struct cta_error;
struct cta_tls_server;

/* Borrowed; valid while t lives (SSL_CTX_up_ref() to keep it longer). */
SSL_CTX *cta_tls_server_ctx(struct cta_tls_server *t);

/* A socket BIO that sends with MSG_NOSIGNAL, so a peer reset never raises
 * SIGPIPE whatever the process's signal disposition. Does not own fd. */
BIO *cta_tls_sock_bio_new(int fd);
/* The same, gathering writes into sends of up to cap bytes: a write may stay buffered
 * until BIO_flush() (which returns 1 when all is sent, else 0 with the retry flag set
 * when the socket is full). Owns its buffer, not fd. */
BIO *cta_tls_gather_bio_new(int fd, size_t cap);

/* Format the certificate's SHA-256 fingerprint. Returns 0 or -CTA_E_TLS. */
int cta_tls_x509_fingerprint(X509 *x, char ret[128]);

/* Set *err to "<what>: <OpenSSL's reason>" with the given code and clear the
 * thread's OpenSSL error queue. Returns -code. */
int cta_tls_error(struct cta_error **err, int code, const char *what);

/* The reason of the oldest queued OpenSSL error (or "unknown error") into buf,
 * clearing the queue. For log messages. */
const char *cta_tls_errstr(char *buf, size_t n);
