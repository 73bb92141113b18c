/*
 * TLS server context (OpenSSL stays inside src/net; nothing here needs its
 * headers) and certificate fingerprints.
 *
 * A fingerprint is "SHA256:" followed by the 32 bytes of the SHA-256 of the
 * DER certificate as uppercase hex separated by colons (the format of
 * `openssl x509 -fingerprint -sha256` after its "=").
 */
#pragma once

struct cta_error;
struct cta_tls_server;

#define CTA_TLS_FINGERPRINT_MAX 128

/*
 * Load the server certificate and key. If cert_path and key_path are both
 * NULL, use <state_dir>/tls/server.crt and server.key, generating a self-signed
 * EC P-256 key and certificate (CN = host name, SAN = host name, localhost,
 * 127.0.0.1, ::1; valid 10 years; key mode 0600, directory 0700) when either
 * file is missing. TLS 1.2 minimum, ECDHE + AEAD suites only, AES-GCM first.
 * ret_fingerprint (may be NULL) gets the certificate's fingerprint.
 */
int cta_tls_server_new(const char *cert_path, const char *key_path, const char *state_dir,
                       char ret_fingerprint[128], struct cta_tls_server **ret,
                       struct cta_error **err);
/* Connections already made keep working (they hold their own reference). */
struct cta_tls_server *cta_tls_server_free(struct cta_tls_server *t);
/* The fingerprint of the loaded certificate. */
const char *cta_tls_server_fingerprint(const struct cta_tls_server *t);

/* Fingerprint of the first certificate in a PEM file. */
int cta_tls_fingerprint_pem_file(const char *cert_path, char ret[128], struct cta_error **err);

/*
 * Write a new self-signed client certificate (EC P-256, CN = cn, clientAuth, 10 years)
 * and its key (mode 0600), each replaced atomically. A node accepts it for logins once
 * its fingerprint is listed in the node's authorized_clients file.
 */
int cta_tls_client_cert_generate(const char *cert_path, const char *key_path, const char *cn,
                                 struct cta_error **err);
