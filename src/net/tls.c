/*
 * The TLS server context, certificate generation and fingerprints, and the
 * MSG_NOSIGNAL socket BIOs shared with conn.c and client.c (the client's gathers
 * records into larger sends).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/tls-private.h"
#include "net/tls.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

/* TLS 1.2: forward secrecy and AEAD only, AES-GCM first. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls13_suites[] =
        "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

#define CERT_DAYS 3652 /* 10 years */
#define TLS_READ_BUFFER (160u << 10)

struct cta_tls_server {
        SSL_CTX *ctx;
        char fingerprint[CTA_TLS_FINGERPRINT_MAX];
};

/* ---- errors ---- */

const char *cta_tls_errstr(char *buf, size_t n)
{
        unsigned long e = ERR_get_error();

        if (e == 0) {
                snprintf(buf, n, "unknown error");
        } else {
                const char *reason = ERR_reason_error_string(e);
                if (reason)
                        snprintf(buf, n, "%s", reason);
                else
                        ERR_error_string_n(e, buf, n);
        }
        ERR_clear_error();
        return buf;
}

int cta_tls_error(struct cta_error **err, int code, const char *what)
{
        char buf[256];

        cta_tls_errstr(buf, sizeof(buf));
        return cta_error_set(err, code, 0, "%s: %s", what, buf);
}

/* ---- socket BIO ---- */

static int sbio_fd(BIO *b)
{
        return (int)(intptr_t)BIO_get_data(b);
}

/* One send() or recv() for a socket BIO: the retry flag set when the socket would block. */
static int sock_send(BIO *b, int fd, const char *data, size_t len)
{
        ssize_t n;

        BIO_clear_retry_flags(b);
        do
                n = send(fd, data, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                BIO_set_retry_write(b);
        return (int)n;
}

static int sock_recv(BIO *b, int fd, char *buf, int len)
{
        ssize_t n;

        BIO_clear_retry_flags(b);
        do
                n = recv(fd, buf, (size_t)len, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                BIO_set_retry_read(b);
        return (int)n;
}

static int sbio_write(BIO *b, const char *data, int len)
{
        return sock_send(b, sbio_fd(b), data, (size_t)len);
}

static int sbio_read(BIO *b, char *buf, int len)
{
        return sock_recv(b, sbio_fd(b), buf, len);
}

static long sbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
        switch (cmd) {
        case BIO_CTRL_FLUSH:
                return 1;
        case BIO_C_GET_FD:
                if (ptr)
                        *(int *)ptr = sbio_fd(b);
                return sbio_fd(b);
        default:
                return 0;
        }
}

static int sbio_create(BIO *b)
{
        BIO_set_init(b, 1);
        return 1;
}

static BIO_METHOD *sbio_method;
static pthread_once_t sbio_once = PTHREAD_ONCE_INIT;

/* A socket BIO's method table (both kinds are alike but for their I/O and state). */
static BIO_METHOD *sock_method_new(const char *name, int (*wr)(BIO *, const char *, int),
                                   int (*rd)(BIO *, char *, int),
                                   long (*ctrl)(BIO *, int, long, void *), int (*destroy)(BIO *))
{
        int idx = BIO_get_new_index();
        BIO_METHOD *m;

        if (idx < 0)
                abort();
        m = BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, name);
        if (!m || !BIO_meth_set_write(m, wr) || !BIO_meth_set_read(m, rd) ||
            !BIO_meth_set_ctrl(m, ctrl) || !BIO_meth_set_create(m, sbio_create) ||
            (destroy && !BIO_meth_set_destroy(m, destroy)))
                abort();
        return m;
}

static void sbio_init(void)
{
        sbio_method = sock_method_new("cta socket", sbio_write, sbio_read, sbio_ctrl, NULL);
}

BIO *cta_tls_sock_bio_new(int fd)
{
        BIO *b;

        pthread_once(&sbio_once, sbio_init);
        b = BIO_new(sbio_method);
        if (b)
                BIO_set_data(b, (void *)(intptr_t)fd);
        return b;
}

/* ---- gathering socket BIO ---- */

/*
 * OpenSSL hands its BIO one record at a time: at most 16 KiB. A sender that writes
 * megabytes made one send() per record, and on a fast link each send costs a trip
 * through the kernel's TCP stack (on loopback the receiver's too). This BIO copies
 * records into a buffer and sends it whole once it is full or flushed: the writer
 * (cta_client_write) flushes before it returns, so nothing waits here for a reply.
 */
struct gbio {
        int fd;
        size_t cap, len; /* unsent bytes: buf[0, len) */
        char buf[];
};

/* Send what is buffered: 1 when all went, 0 when the socket is full (the retry flag
 * set; what it did not take is moved to the front), -1 on an error. */
static int gbio_drain(BIO *b, struct gbio *g)
{
        size_t off = 0;
        int r = 1;

        while (off < g->len) {
                int n = sock_send(b, g->fd, g->buf + off, g->len - off);
                if (n < 0) {
                        r = BIO_should_retry(b) ? 0 : -1;
                        break;
                }
                off += (size_t)n;
        }
        memmove(g->buf, g->buf + off, g->len - off);
        g->len -= off;
        return r;
}

static int gbio_write(BIO *b, const char *data, int len)
{
        struct gbio *g = BIO_get_data(b);
        size_t n = (size_t)len;

        BIO_clear_retry_flags(b);
        if (g->len + n > g->cap) {
                if (gbio_drain(b, g) < 0)
                        return -1;
                if (g->len + n > g->cap)
                        /* full (retry once the socket takes more), or a write larger
                         * than the buffer, sent as it is once nothing waits before it */
                        return g->len ? -1 : sock_send(b, g->fd, data, n);
                BIO_clear_retry_flags(b);
        }
        memcpy(g->buf + g->len, data, n);
        g->len += n;
        return len;
}

static long gbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
        struct gbio *g = BIO_get_data(b);

        (void)num;
        switch (cmd) {
        case BIO_CTRL_FLUSH:
                BIO_clear_retry_flags(b);
                return gbio_drain(b, g);
        case BIO_CTRL_WPENDING:
                return (long)g->len;
        case BIO_C_GET_FD:
                if (ptr)
                        *(int *)ptr = g->fd;
                return g->fd;
        default:
                return 0;
        }
}

static int gbio_read(BIO *b, char *buf, int len)
{
        return sock_recv(b, ((struct gbio *)BIO_get_data(b))->fd, buf, len);
}

static int gbio_destroy(BIO *b)
{
        free(BIO_get_data(b));
        BIO_set_data(b, NULL);
        return 1;
}

static BIO_METHOD *gbio_method;
static pthread_once_t gbio_once = PTHREAD_ONCE_INIT;

static void gbio_init(void)
{
        gbio_method = sock_method_new("cta gather", gbio_write, gbio_read, gbio_ctrl,
                                      gbio_destroy);
}

BIO *cta_tls_gather_bio_new(int fd, size_t cap)
{
        struct gbio *g = cta_xmalloc(sizeof(*g) + cap);
        BIO *b;

        g->fd = fd;
        g->cap = cap;
        g->len = 0;
        pthread_once(&gbio_once, gbio_init);
        b = BIO_new(gbio_method);
        if (!b) {
                free(g);
                return NULL;
        }
        BIO_set_data(b, g);
        return b;
}

/* ---- fingerprints ---- */

int cta_tls_x509_fingerprint(X509 *x, char ret[128])
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        char out[CTA_TLS_FINGERPRINT_MAX];
        size_t pos;

        if (!x || X509_digest(x, EVP_sha256(), md, &n) != 1 || n != 32)
                return -CTA_E_TLS;
        pos = (size_t)snprintf(out, sizeof(out), "SHA256:");
        for (unsigned int i = 0; i < n; i++)
                pos += (size_t)snprintf(out + pos, sizeof(out) - pos, i ? ":%02X" : "%02X", md[i]);
        memcpy(ret, out, pos + 1);
        return 0;
}

int cta_tls_fingerprint_pem_file(const char *cert_path, char ret[128], struct cta_error **err)
{
        BIO *b;
        X509 *x;
        int r;

        ERR_clear_error();
        b = BIO_new_file(cert_path, "r");
        if (!b)
                return cta_error_errno(err, CTA_E_IO, "open certificate '%s'", cert_path);
        x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        BIO_free(b);
        if (!x) {
                char what[512];
                snprintf(what, sizeof(what), "read certificate '%s'", cert_path);
                return cta_tls_error(err, CTA_E_TLS, what);
        }
        r = cta_tls_x509_fingerprint(x, ret);
        X509_free(x);
        if (r < 0)
                return cta_tls_error(err, CTA_E_TLS, "certificate fingerprint");
        return 0;
}

/* ---- self-signed certificate ---- */

static bool hostname_ok_for_san(const char *h)
{
        if (!*h || strlen(h) > 253)
                return false;
        for (const char *p = h; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
                        return false;
        return true;
}

static int add_ext(X509 *x, int nid, const char *value)
{
        X509V3_CTX v3;
        X509_EXTENSION *ext;
        int ok;

        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        ext = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
        if (!ext)
                return -1;
        ok = X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
        return ok ? 0 : -1;
}

static int pem_to_file(const char *path, mode_t mode, EVP_PKEY *pkey, X509 *x,
                       struct cta_error **err)
{
        BIO *mem = BIO_new(BIO_s_mem());
        char *data;
        long len;
        int r;

        if (!mem)
                return cta_tls_error(err, CTA_E_TLS, "BIO_new");
        if (pkey ? !PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL, NULL)
                 : !PEM_write_bio_X509(mem, x)) {
                BIO_free(mem);
                return cta_tls_error(err, CTA_E_TLS, "encode PEM");
        }
        len = BIO_get_mem_data(mem, &data);
        r = cta_write_file_atomic(path, data, (size_t)len, mode, err);
        /* The key sat in this buffer in clear. */
        OPENSSL_cleanse(data, (size_t)len);
        BIO_free(mem);
        return r;
}

/*
 * A self-signed EC P-256 certificate and its key. A server certificate (client_cn
 * NULL) names the host in CN and SAN and is for serverAuth; a client certificate
 * has CN = client_cn, no SAN, and is for clientAuth only.
 */
static int tls_generate(const char *cert_path, const char *key_path, const char *client_cn,
                        struct cta_error **err)
{
        EVP_PKEY *pkey = NULL;
        X509 *x = NULL;
        BIGNUM *bn = NULL;
        unsigned char serial[16];
        char host[256] = "";
        char san[600];
        int r = -CTA_E_TLS;

        ERR_clear_error();
        if (client_cn)
                snprintf(host, sizeof(host), "%s", client_cn);
        else if (gethostname(host, sizeof(host) - 1) < 0 || !hostname_ok_for_san(host))
                snprintf(host, sizeof(host), "localhost");

        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        if (!pkey) {
                r = cta_tls_error(err, CTA_E_TLS, "generate EC P-256 key");
                goto out;
        }
        x = X509_new();
        if (!x || !X509_set_version(x, 2)) {
                r = cta_tls_error(err, CTA_E_TLS, "X509_new");
                goto out;
        }
        if (RAND_bytes(serial, sizeof(serial)) != 1) {
                r = cta_tls_error(err, CTA_E_TLS, "random serial number");
                goto out;
        }
        serial[0] &= 0x7f; /* positive */
        serial[0] |= 0x01; /* and of full length */
        bn = BN_bin2bn(serial, sizeof(serial), NULL);
        if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
            !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
            !X509_time_adj_ex(X509_getm_notAfter(x), CERT_DAYS, 0, NULL) ||
            !X509_set_pubkey(x, pkey)) {
                r = cta_tls_error(err, CTA_E_TLS, "fill certificate");
                goto out;
        }
        X509_NAME *name = X509_get_subject_name(x);
        if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"ctagent",
                                        -1, -1, 0) ||
            !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1,
                                        -1, 0) ||
            !X509_set_issuer_name(x, name)) {
                r = cta_tls_error(err, CTA_E_TLS, "certificate name");
                goto out;
        }
        if (streq(host, "localhost"))
                snprintf(san, sizeof(san), "DNS:localhost,IP:127.0.0.1,IP:::1");
        else
                snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", host);
        if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
            add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
            add_ext(x, NID_ext_key_usage, client_cn ? "clientAuth" : "serverAuth") < 0 ||
            add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
            (!client_cn && add_ext(x, NID_subject_alt_name, san) < 0)) {
                r = cta_tls_error(err, CTA_E_TLS, "certificate extensions");
                goto out;
        }
        if (!X509_sign(x, pkey, EVP_sha256())) {
                r = cta_tls_error(err, CTA_E_TLS, "sign certificate");
                goto out;
        }

        /* Key first: a certificate without its key would be loaded next time. */
        r = pem_to_file(key_path, 0600, pkey, NULL, err);
        if (r < 0)
                goto out;
        r = pem_to_file(cert_path, 0644, NULL, x, err);
        if (r < 0)
                goto out;
        if (!client_cn)
                log_notice("generated a self-signed TLS certificate for '%s' in '%s'", host,
                           cert_path);
        r = 0;
out:
        BN_free(bn);
        X509_free(x);
        EVP_PKEY_free(pkey);
        return r;
}

/* ---- server context ---- */

/*
 * Client certificates are asked for but never judged here: any certificate, self-signed
 * or expired, completes the handshake (its key is still proven by the handshake). What
 * a certificate may do is decided at login, by its fingerprint (daemon/auth.h). A
 * client without one sends none and logs in with a password as before.
 */
static int accept_any_client_cert(int preverify_ok, X509_STORE_CTX *x)
{
        (void)preverify_ok;
        (void)x;
        return 1;
}

static int server_ctx_new(const char *cert_path, const char *key_path, SSL_CTX **ret,
                          struct cta_error **err)
{
        SSL_CTX *ctx;
        char what[600];

        ERR_clear_error();
        ctx = SSL_CTX_new(TLS_server_method());
        if (!ctx)
                return cta_tls_error(err, CTA_E_TLS, "SSL_CTX_new");
        if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
            !SSL_CTX_set_cipher_list(ctx, tls12_ciphers) ||
            !SSL_CTX_set_ciphersuites(ctx, tls13_suites) ||
            !SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384")) {
                SSL_CTX_free(ctx);
                return cta_tls_error(err, CTA_E_TLS, "configure TLS");
        }
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                         SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
        /* Partial writes let the loop write a large queue record by record;
         * released buffers keep hundreds of idle connections cheap. */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                      SSL_MODE_RELEASE_BUFFERS);
        /* Read ahead: one recv() takes many TLS records (a migration stream brings
         * gigabytes in 16 KiB records: two recv() calls per record cost more in the
         * kernel than the decryption). */
        SSL_CTX_set_read_ahead(ctx, 1);
        SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUFFER);
        /* Clients do not resume; tickets would only cost a write per handshake. */
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, accept_any_client_cert);
        /* Required by OpenSSL once peers are verified, should sessions ever be resumed. */
        (void)SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ctagent", 7);

        if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
                snprintf(what, sizeof(what), "load certificate '%s'", cert_path);
                SSL_CTX_free(ctx);
                return cta_tls_error(err, CTA_E_TLS, what);
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
                snprintf(what, sizeof(what), "load key '%s'", key_path);
                SSL_CTX_free(ctx);
                return cta_tls_error(err, CTA_E_TLS, what);
        }
        *ret = ctx;
        return 0;
}

int cta_tls_server_new(const char *cert_path, const char *key_path, const char *state_dir,
                       char ret_fingerprint[128], struct cta_tls_server **ret,
                       struct cta_error **err)
{
        _cleanup_free_ char *dir = NULL, *gen_cert = NULL, *gen_key = NULL;
        struct cta_tls_server *t;
        struct stat st;
        SSL_CTX *ctx = NULL;
        int r;

        if (!cert_path != !key_path)
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "TLS certificate and key must be given together");
        if (!cert_path) {
                if (!state_dir)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "no TLS certificate and no state directory");
                dir = cta_xasprintf("%s/tls", state_dir);
                gen_cert = cta_xasprintf("%s/server.crt", dir);
                gen_key = cta_xasprintf("%s/server.key", dir);
                r = cta_mkdir_p(dir, 0700, err);
                if (r < 0)
                        return cta_error_wrap(err, "TLS directory");
                if (access(gen_cert, F_OK) < 0 || access(gen_key, F_OK) < 0) {
                        r = tls_generate(gen_cert, gen_key, NULL, err);
                        if (r < 0)
                                return cta_error_wrap(err, "self-signed certificate in '%s'",
                                                      dir);
                }
                cert_path = gen_cert;
                key_path = gen_key;
        }
        if (stat(key_path, &st) == 0 && (st.st_mode & 077))
                log_warning("TLS key '%s' is accessible by group or others (mode %04o)", key_path,
                            (unsigned)(st.st_mode & 07777));

        r = server_ctx_new(cert_path, key_path, &ctx, err);
        if (r < 0)
                return r;
        t = cta_xcalloc(1, sizeof(*t));
        t->ctx = ctx;
        if (cta_tls_x509_fingerprint(SSL_CTX_get0_certificate(ctx), t->fingerprint) < 0) {
                cta_tls_server_free(t);
                return cta_tls_error(err, CTA_E_TLS, "certificate fingerprint");
        }
        if (ret_fingerprint)
                snprintf(ret_fingerprint, CTA_TLS_FINGERPRINT_MAX, "%s", t->fingerprint);
        *ret = t;
        return 0;
}

struct cta_tls_server *cta_tls_server_free(struct cta_tls_server *t)
{
        if (!t)
                return NULL;
        SSL_CTX_free(t->ctx);
        free(t);
        return NULL;
}

const char *cta_tls_server_fingerprint(const struct cta_tls_server *t)
{
        return t->fingerprint;
}

SSL_CTX *cta_tls_server_ctx(struct cta_tls_server *t)
{
        return t->ctx;
}

int cta_tls_client_cert_generate(const char *cert_path, const char *key_path, const char *cn,
                                 struct cta_error **err)
{
        if (!cn || !*cn || strlen(cn) > 64)
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "client certificate name: 1 to 64 characters");
        return tls_generate(cert_path, key_path, cn, err);
}
