/* Connecting, pinning, logging in, and request/reply exchange. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/conn.h"
#include "cli/known_nodes.h"
#include "cli/progress.h"
#include "net/client.h"
#include "net/tls.h"
#include "proto/packet.h"
#include "util/util.h"

/* Replies can be as large as the daemon's post-login frame limit (16 MiB by
 * default) plus headers; refuse anything beyond that. */
#define CLI_FRAME_MAX ((size_t)32 << 20)

void cli_secret_free(char *s)
{
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

struct cli_conn *cli_conn_free(struct cli_conn *c)
{
        if (!c)
                return NULL;
        if (c->c)
                cta_client_free(c->c);
        cta_framer_done(&c->fr);
        free(c->client_name);
        free(c->parse_error);
        free(c);
        return NULL;
}

static bool is_loopback(const char *host)
{
        return streq(host, "localhost") || strncmp(host, "127.", 4) == 0 || streq(host, "::1");
}

/* Check the certificate against an explicit --fingerprint and known_nodes. */
static int check_pin(struct cli_ctx *ctx, struct cli_conn *c, const struct cli_target *t)
{
        _cleanup_free_ char *dflt = NULL;
        struct cta_error *e = NULL;
        const char *path = t->known_nodes;
        bool added = false, replaced = false;

        if (t->fingerprint && strcasecmp(t->fingerprint, c->fingerprint) != 0)
                return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PEER_CHANGED,
                                "node %s presented certificate %s, not the %s given with "
                                "--fingerprint; nothing was sent",
                                c->key, c->fingerprint, t->fingerprint);
        if (!path) {
                dflt = cli_kn_default_path(&e);
                if (!dflt) {
                        /* An explicit fingerprint already did the check. */
                        if (t->fingerprint) {
                                cta_error_free(e);
                                return 0;
                        }
                        return cli_fail_err(ctx, CLI_FAIL_CONN, e);
                }
                path = dflt;
        }
        if (cli_kn_check(path, c->key, c->fingerprint, t->fingerprint != NULL, &added, &replaced,
                         &e) < 0)
                return cli_fail_err(ctx, CLI_FAIL_CONN, e);
        if (added)
                fprintf(stderr, "ctagent: trusting node %s on first use: pinned %s in %s\n",
                        c->key, c->fingerprint, path);
        if (replaced)
                fprintf(stderr, "ctagent: pinned the new certificate %s of node %s in %s\n",
                        c->fingerprint, c->key, path);
        return 0;
}

int cli_conn_open(struct cli_ctx *ctx, const struct cli_target *t, struct cli_conn **ret)
{
        struct cli_conn *c = cta_xcalloc(1, sizeof(*c));
        struct cta_client_opts copts = { 0 };
        struct cta_error *e = NULL;
        _cleanup_free_ char *frame = NULL;
        _cleanup_(cta_resp_freep) struct cta_resp *greet = NULL;
        int r;

        cta_framer_init(&c->fr, CLI_FRAME_MAX);
        snprintf(c->host, sizeof(c->host), "%s", t->host);
        c->port = t->port;
        c->tls = !t->plain;
        c->o = ctx->o;
        c->timeout_ms = ctx->o ? ctx->o->timeout_ms : CLI_DEFAULT_TIMEOUT_MS;
        cli_kn_key(c->host, c->port, c->key);

        copts.tls = c->tls;
        copts.timeout_ms = c->timeout_ms;
        if (c->tls && ctx->o) {
                copts.cert_path = ctx->o->cert_path;
                copts.key_path = ctx->o->key_path;
        }
        cli_verbose(ctx->o, 1, "connecting to %s (%s)", c->key, c->tls ? "TLS" : "plain TCP");
        if (cta_client_connect(c->host, c->port, &copts, &c->c, &e) < 0) {
                if (c->tls && cta_error_code(e) == CTA_E_TLS) {
                        r = cli_fail(ctx, CLI_FAIL_CONN, CTA_E_TLS,
                                     "%s (if %s is a plain port, use --plain)", cta_error_msg(e),
                                     c->key);
                        cta_error_free(e);
                        goto fail;
                }
                r = cli_fail_err(ctx, CLI_FAIL_CONN, e);
                goto fail;
        }
        if (c->tls) {
                snprintf(c->fingerprint, sizeof(c->fingerprint), "%s",
                         cta_client_fingerprint(c->c));
                cli_verbose(ctx->o, 1, "certificate %s", c->fingerprint);
                r = check_pin(ctx, c, t);
                if (r < 0)
                        goto fail;
        } else if (!is_loopback(c->host)) {
                fprintf(stderr, "ctagent: warning: plain TCP to %s: the password and all data "
                                "travel unencrypted\n",
                        c->key);
        }

        /* The node speaks first; nothing is sent before its greeting. */
        r = cli_conn_recv(ctx, c, &frame, NULL, &greet);
        if (r < 0) {
                if (!c->tls && cta_error_code(ctx->err) == CTA_E_TIMEOUT)
                        cta_error_wrap(&ctx->err, "no greeting (if %s is a TLS port, drop --plain)",
                                       c->key);
                goto fail;
        }
        if (!greet) {
                r = cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                             "%s sent a greeting that is not an XML packet; is it a ctagentd?",
                             c->key);
                goto fail;
        }
        if (greet->has_error) {
                _cleanup_free_ char *m = cli_clean_text(greet->error_message);
                r = cli_fail(ctx, CLI_FAIL_CONN, greet->error_code ? greet->error_code : CTA_E_PROTO,
                             "%s refused the connection: %s", c->key, m);
                goto fail;
        }
        if (greet->target)
                c->client_name = cta_xstrdup(greet->target);
        cli_verbose(ctx->o, 1, "connected as %s", c->client_name ? c->client_name : "(unnamed)");
        *ret = c;
        return 0;
fail:
        cli_conn_free(c);
        return r;
}

/* ---- password ---- */

static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_restore;

static void tty_signal(int sig)
{
        if (tty_restore)
                (void)tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
        signal(sig, SIG_DFL);
        raise(sig);
}

int cli_prompt_secret(const char *prompt, char *buf, size_t cap, struct cta_error **err)
{
        _cleanup_close_ int fd = -1;
        struct sigaction sa = { .sa_handler = tty_signal }, old[4];
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
        struct termios t;
        size_t len = 0;
        bool ok = false, too_long = false;

        if (cap < 1)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "no room for the secret");
        buf[0] = '\0';
        fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "no terminal to ask on: /dev/tty");
        if (tcgetattr(fd, &tty_saved) < 0)
                return cta_error_errno(err, CTA_E_IO, "no terminal to ask on: /dev/tty");
        tty_fd = fd;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < CTA_ARRAY_SIZE(sigs); i++)
                sigaction(sigs[i], &sa, &old[i]);
        t = tty_saved;
        t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
        tty_restore = 1;
        /* Echo goes off before the prompt appears: whatever is typed after
         * the prompt is never shown (TCSAFLUSH drops earlier typeahead). */
        (void)tcsetattr(fd, TCSAFLUSH, &t);
        (void)!write(fd, prompt, strlen(prompt));
        for (;;) {
                char ch;
                ssize_t n = read(fd, &ch, 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (ch == '\n' || ch == '\r') {
                        ok = true;
                        break;
                }
                /* Read on to the line end even when it does not fit, so the
                 * rest is not left for the shell to run. */
                if (len < cap - 1)
                        buf[len++] = ch;
                else
                        too_long = true;
        }
        (void)tcsetattr(fd, TCSAFLUSH, &tty_saved);
        tty_restore = 0;
        for (size_t i = 0; i < CTA_ARRAY_SIZE(sigs); i++)
                sigaction(sigs[i], &old[i], NULL);
        tty_fd = -1;
        (void)!write(fd, "\n", 1);
        buf[len] = '\0';
        if (!ok || too_long) {
                explicit_bzero(buf, cap);
                if (!ok)
                        return cta_error_set(err, CTA_E_CANCELLED, 0, "nothing was entered");
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "the input is longer than %zu bytes",
                                     cap - 1);
        }
        return 0;
}

int cli_read_password_file(const char *path, const char *opt, char **ret,
                           struct cta_error **err)
{
        char *data = NULL;
        size_t len = 0;

        if (cta_read_file(path, 64 * 1024, &data, &len, err) < 0)
                return cta_error_wrap(err, "%s", opt);
        /* The first line, without its line ending. */
        len = strcspn(data, "\r\n");
        explicit_bzero(data + len, strlen(data + len));
        data[len] = '\0';
        if (len > CLI_PASSWORD_MAX) {
                cli_secret_free(data);
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "%s: the password in '%s' is longer than %d bytes", opt,
                                     path, CLI_PASSWORD_MAX);
        }
        *ret = data;
        return 0;
}

int cli_get_password(struct cli_ctx *ctx, const struct cli_opts *o, char **ret)
{
        const char *env = getenv("CTAGENT_PASSWORD");
        struct cta_error *e = NULL;
        char buf[CLI_PASSWORD_MAX + 1];
        int r;

        if (o->password_file) {
                if (cli_read_password_file(o->password_file, "--password-file", ret, &e) < 0)
                        return cli_fail_err(ctx, CLI_FAIL_USAGE, e);
                return 0;
        }
        if (env) {
                if (strlen(env) > CLI_PASSWORD_MAX)
                        return cli_fail(ctx, CLI_FAIL_USAGE, CTA_E_INVALID,
                                        "$CTAGENT_PASSWORD is longer than %d bytes",
                                        CLI_PASSWORD_MAX);
                *ret = cta_xstrdup(env);
                return 0;
        }
        _cleanup_free_ char *prompt =
                cta_xasprintf("Password for %s@%s: ", o->user, o->host_arg ? o->host : "localhost");
        r = cli_prompt_secret(prompt, buf, sizeof(buf), &e);
        if (r < 0) {
                int code = cta_error_code(e);
                cta_error_free(e);
                if (code == CTA_E_TOO_LARGE)
                        return cli_fail(ctx, CLI_FAIL_USAGE, CTA_E_INVALID,
                                        "the password is longer than %d bytes",
                                        CLI_PASSWORD_MAX);
                if (code == CTA_E_CANCELLED)
                        return cli_fail(ctx, CLI_FAIL_LOGIN, CTA_E_AUTH_FAILED,
                                        "no password entered");
                return cli_fail(ctx, CLI_FAIL_LOGIN, CTA_E_AUTH_FAILED,
                                "no password: set CTAGENT_PASSWORD, use --password-file, or run "
                                "ctagent on a terminal");
        }
        *ret = cta_xstrdup(buf);
        explicit_bzero(buf, sizeof(buf));
        return 0;
}

/* ---- I/O ---- */

/* -vv: show a packet on stderr, with the secret range masked. */
static void dump_packet(const struct cli_opts *o, const char *dir, const char *data, size_t len,
                        size_t secret_start, size_t secret_end)
{
        struct cta_buf b = CTA_BUF_INIT(0);

        if (!o || o->verbose < 2)
                return;
        if (secret_end > secret_start && secret_end <= len) {
                (void)cta_buf_append(&b, data, secret_start);
                (void)cta_buf_puts(&b, "********");
                (void)cta_buf_append(&b, data + secret_end, len - secret_end);
        } else {
                (void)cta_buf_append(&b, data, len);
        }
        _cleanup_free_ char *clean = cli_clean_frame(b.data ? b.data : "", b.len);
        cta_buf_done(&b);
        fprintf(stderr, "ctagent: %s\n%s%s", dir, clean,
                *clean && clean[strlen(clean) - 1] == '\n' ? "" : "\n");
}

int cli_conn_send_raw(struct cli_ctx *ctx, struct cli_conn *c, const void *data, size_t len)
{
        struct cta_error *e = NULL;

        if (cta_client_write(c->c, data, len, &e) < 0) {
                cta_error_wrap(&e, "send to %s", c->key);
                return cli_fail_err(ctx, CLI_FAIL_CONN, e);
        }
        return 0;
}

int cli_conn_recv(struct cli_ctx *ctx, struct cli_conn *c, char **ret_frame, size_t *ret_len,
                  struct cta_resp **ret_resp)
{
        uint64_t deadline = c->timeout_ms ? cta_now_ms() + (uint64_t)c->timeout_ms : 0;
        char buf[16384];

        for (;;) {
                const char *frame;
                size_t len;
                int r = cta_framer_next(&c->fr, &frame, &len);

                if (r < 0)
                        return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_FRAME_TOO_LARGE,
                                        "%s sent a packet larger than %zu bytes", c->key,
                                        (size_t)CLI_FRAME_MAX);
                if (r > 0) {
                        struct cta_resp *resp = NULL;
                        dump_packet(c->o, "received:", frame, len, 0, 0);
                        if (ret_resp) {
                                /* Garbage is handed on unparsed: `raw` prints it. */
                                struct cta_error *e = NULL;
                                free(c->parse_error);
                                c->parse_error = NULL;
                                if (cta_resp_parse(frame, len, &resp, &e) < 0) {
                                        c->parse_error = cta_xstrdup(cta_error_msg(e));
                                        cli_verbose(c->o, 1, "unparsable packet: %s",
                                                    c->parse_error);
                                        cta_error_free(e);
                                        resp = NULL;
                                }
                                *ret_resp = resp;
                        }
                        *ret_frame = cta_xstrndup(frame, len);
                        if (ret_len)
                                *ret_len = len;
                        return 0;
                }

                int wait_ms = 0; /* forever */
                if (deadline) {
                        uint64_t now = cta_now_ms();
                        if (now >= deadline)
                                return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_TIMEOUT,
                                                "no reply from %s within %d s (see --timeout)",
                                                c->key, c->timeout_ms / 1000);
                        wait_ms = (int)(deadline - now);
                }
                struct cta_error *e = NULL;
                ssize_t n = cta_client_read(c->c, buf, sizeof(buf), wait_ms, &e);
                if (n == 0)
                        return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_IO,
                                        "%s closed the connection%s", c->key,
                                        cta_framer_pending(&c->fr) ? " in the middle of a packet"
                                                                   : "");
                if (n < 0) {
                        if (cta_error_code(e) == CTA_E_TIMEOUT) {
                                cta_error_free(e);
                                continue; /* the deadline check above reports it */
                        }
                        cta_error_wrap(&e, "receive from %s", c->key);
                        return cli_fail_err(ctx, CLI_FAIL_CONN, e);
                }
                if (cta_framer_feed(&c->fr, buf, (size_t)n) < 0)
                        return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_FRAME_TOO_LARGE,
                                        "%s sent a packet larger than %zu bytes", c->key,
                                        (size_t)CLI_FRAME_MAX);
        }
}

void cli_progress_show(struct cli_progress *bar, const struct cta_resp *resp)
{
        const char *phase = resp->message && *resp->message ? resp->message
                            : resp->progress_op               ? resp->progress_op
                                                              : "working";

        cli_progress_update(bar, phase, resp->percent, 0, 0);
}

static bool is_progress(const struct cta_resp *resp)
{
        return resp->is_progress || (resp->type & 1);
}

int cli_conn_send(struct cli_ctx *ctx, struct cli_conn *c, struct cli_req *r)
{
        int rc;

        dump_packet(c->o, "sending:", r->b.data, r->b.len, r->secret_start, r->secret_end);
        (void)cta_buf_putc(&r->b, '\0');
        rc = cli_conn_send_raw(ctx, c, r->b.data, r->b.len);
        r->b.len--;
        r->b.data[r->b.len] = '\0';
        return rc;
}

int cli_conn_call(struct cli_ctx *ctx, struct cli_conn *c, struct cli_req *r, unsigned flags,
                  cli_packet_fn cb, void *userdata, struct cta_resp **ret)
{
        int rc = cli_conn_send(ctx, c, r);

        return rc < 0 ? rc : cli_conn_reply(ctx, c, r, flags, cb, userdata, ret);
}

int cli_conn_reply(struct cli_ctx *ctx, struct cli_conn *c, const struct cli_req *r,
                   unsigned flags, cli_packet_fn cb, void *userdata, struct cta_resp **ret)
{
        bool print = ctx->o && ctx->o->xml && !(flags & CLI_CALL_QUIET);
        int rc;

        for (;;) {
                _cleanup_free_ char *frame = NULL;
                struct cta_resp *resp = NULL;
                size_t len = 0;

                rc = cli_conn_recv(ctx, c, &frame, &len, &resp);
                if (rc < 0)
                        return rc;
                if (print)
                        cli_print_frame(stdout, frame, len);
                /* Replies come in order: garbage now is most likely the answer
                 * to our request, and waiting on would only hit the timeout. */
                if (!resp)
                        return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                                        "%s sent a malformed packet: %s", c->key,
                                        c->parse_error ? c->parse_error : "not a packet");
                /* A final reply carries our id; an error without an id is the
                 * node giving up on the connection (idle, frame too large). */
                if (resp && !is_progress(resp) &&
                    ((resp->id && streq(resp->id, r->id)) || (!resp->id && resp->has_error))) {
                        if (resp->has_error) {
                                _cleanup_free_ char *m = cli_clean_text(resp->error_message);
                                rc = cli_fail(ctx, CLI_FAIL_REMOTE,
                                              resp->error_code > 0 ? resp->error_code
                                                                   : CTA_E_INTERNAL,
                                              "%s", *m ? m : "(no message)");
                        }
                        if (ret)
                                *ret = resp;
                        else
                                cta_resp_free(resp);
                        return rc < 0 ? rc : 0;
                }
                if (cb)
                        cb(userdata, resp, frame);
                cta_resp_free(resp);
        }
}

int cli_conn_login_send(struct cli_ctx *ctx, struct cli_conn *c, struct cli_req *r,
                        const char *user, const char *password, const char *realm)
{
        cli_req_begin(r, c, NULL, "system", false);
        cli_req_open(r, "login");
        cli_req_b64(r, "name", user, strlen(user));
        cli_req_text(r, "realm", realm);
        if (password)
                cli_req_secret_b64(r, "password", password, strlen(password));
        cli_req_close(r, "login");
        cli_req_end(r);
        return cli_conn_send(ctx, c, r);
}

int cli_conn_login_reply(struct cli_ctx *ctx, struct cli_conn *c, const struct cli_req *r,
                         const char *user)
{
        int rc = cli_conn_reply(ctx, c, r, CLI_CALL_QUIET, NULL, NULL, NULL);

        if (rc < 0) {
                if (ctx->fail == CLI_FAIL_REMOTE) {
                        ctx->fail = CLI_FAIL_LOGIN;
                        cta_error_wrap(&ctx->err, "login as '%s' on %s", user, c->key);
                }
                return rc;
        }
        cli_verbose(ctx->o, 1, "logged in as %s", user);
        return 0;
}

bool cli_can_prompt(void)
{
        int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);

        if (fd < 0)
                return false;
        close(fd);
        return true;
}

int cli_cert_refused(struct cli_ctx *ctx, const char *node, const char *user)
{
        if (!cli_can_prompt()) {
                cli_cert_login_hint(ctx, node, user);
                return -cta_error_code(ctx->err);
        }
        fprintf(stderr, "ctagent: %s did not accept the client certificate %s for %s\n", node,
                ctx->o->cert_path, user);
        ctx->err = cta_error_free(ctx->err);
        ctx->fail = CLI_FAIL_NONE;
        return 0;
}

void cli_cert_login_hint(struct cli_ctx *ctx, const char *node, const char *user)
{
        char fp[CTA_TLS_FINGERPRINT_MAX];
        struct cta_error *e = NULL;
        _cleanup_free_ char *msg = NULL;
        int code;

        if (!ctx->err || !ctx->o->cert_path)
                return;
        if (cta_tls_fingerprint_pem_file(ctx->o->cert_path, fp, &e) < 0) {
                cta_error_free(e);
                return;
        }
        msg = cta_xstrdup(cta_error_msg(ctx->err));
        code = cta_error_code(ctx->err);
        cta_error_free(ctx->err);
        ctx->err = NULL;
        (void)cli_fail(ctx, CLI_FAIL_LOGIN, code,
                       "%s (client certificate %s: %s accepts it when its authorized_clients "
                       "file has the line '%s %s' and the account is neither locked nor "
                       "expired; or give a password)",
                       msg, ctx->o->cert_path, node, fp, user);
}

int cli_conn_login(struct cli_ctx *ctx, struct cli_conn *c, const char *user,
                   const char *password, const char *realm)
{
        struct cli_req r;
        int rc = cli_conn_login_send(ctx, c, &r, user, password, realm);

        if (rc >= 0)
                rc = cli_conn_login_reply(ctx, c, &r, user);
        cli_req_done(&r);
        return rc;
}
