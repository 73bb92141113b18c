/*
 * `ctagent migrate`: relocator/migrate_v2v on the node the client is
 * connected to (the source), with a live progress display built from the
 * progress packets, and Ctrl-C turned into system/cancel.
 *
 * The call runs detached on the node: if this client goes away, the
 * migration goes on. So Ctrl-C does not just exit: it sends system/cancel for
 * the migrate packet's id on the same connection and keeps reading until the
 * node's final reply says how it ended (a cancel before the point of no
 * return rolls everything back). A second Ctrl-C stops waiting.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_ct.h"
#include "cli/cmd_migrate.h"
#include "cli/conn.h"
#include "cli/known_nodes.h"
#include "cli/progress.h"
#include "net/client.h"
#include "proto/packet.h"
#include "util/base64.h"
#include "util/util.h"

#define ENVM "vzaenvm"
#define RELOCATOR "relocator"
#define VEID_MAX 2147483647u
/* Per-packet wait when the user kept the default --timeout: the node says
 * nothing while it stops the container (up to 60 s, then it kills it) or
 * while the destination starts it. */
#define MIG_SLOW_TIMEOUT_MS (300 * 1000)
#define PLAIN_LINE_MS 1000
#define POLL_SLICE_MS 1000
#define INFO_BATCH 100

/* Unless the user set --timeout: wait MIG_SLOW_TIMEOUT_MS for a packet. */
static void slow_wait(struct cli_ctx *ctx)
{
        if (ctx->o->timeout_ms == CLI_DEFAULT_TIMEOUT_MS &&
            ctx->conn->timeout_ms < MIG_SLOW_TIMEOUT_MS)
                ctx->conn->timeout_ms = MIG_SLOW_TIMEOUT_MS;
}

/* The client logs in to the destination with its certificate: it has one, the
 * connection there is TLS (plain TCP carries none), and no password is given. */
static bool dst_by_cert(const struct cli_opts *o)
{
        return o->cert_path && !cli_opt(o, "dst-plain") && !cli_opt(o, "dst-password-file") &&
               !getenv("CTAGENT_DST_PASSWORD");
}

/* A one-time pass from the destination: asked for (--one-time-pass), or implied by a
 * certificate login there, so that no password is needed anywhere. */
static bool use_one_time_pass(const struct cli_opts *o)
{
        return cli_opt(o, "one-time-pass") || dst_by_cert(o);
}

/* ---- the command line ---- */

int cli_mig_spec_from_opts(const struct cli_opts *o, struct cli_mig_spec *s,
                           struct cta_error **err)
{
        const char *dst = o->nargs > 1 ? o->args[1] : "";
        const char *v;

        memset(s, 0, sizeof(*s));
        s->dst_plain = cli_opt(o, "dst-plain") != NULL;
        if (!*dst || cta_split_hostport(dst, s->dst_plain ? CLI_DEFAULT_PLAIN_PORT
                                                         : CLI_DEFAULT_TLS_PORT,
                                        s->dst_host, &s->dst_port) < 0 ||
            s->dst_port == 0 || !s->dst_host[0])
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "bad destination '%s': want HOST, HOST:PORT or [IPv6]:PORT",
                                     dst);
        s->force = cli_opt(o, "force") != NULL;
        s->nostart = cli_opt(o, "nostart") != NULL;
        s->remove = cli_opt(o, "remove") != NULL;
        s->has_compress = cli_opt(o, "compress") != NULL;
        s->compress = CTA_COMPRESS_LEVEL_ON;
        if ((v = cli_opt(o, "compress-level"))) {
                uint64_t l;
                if (streq(v, "auto"))
                        s->compress = CTA_COMPRESS_AUTO;
                else if (cta_parse_u64(v, CTA_COMPRESS_LEVEL_MAX, &l) < 0)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "bad --compress-level '%s': want auto, or 0 (off) "
                                             "to %d",
                                             v, CTA_COMPRESS_LEVEL_MAX);
                else
                        s->compress = (int)l;
                s->has_compress = true;
        }
        if ((v = cli_opt(o, "new-veid"))) {
                if (cta_parse_u64(v, VEID_MAX, &s->new_veid) < 0 || s->new_veid == 0)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "bad --new-veid '%s': want a number from 1 to %u",
                                             v, VEID_MAX);
                s->has_new_veid = true;
        }
        if ((v = cli_opt(o, "new-name"))) {
                if (!*v)
                        return cta_error_set(err, CTA_E_INVALID, 0, "--new-name needs a name");
                if (strlen(v) > CTA_NAME_MAX)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--new-name is longer than %d bytes", CTA_NAME_MAX);
                s->new_name = v;
        }
        if ((v = cli_opt(o, "new-private"))) {
                if (v[0] != '/')
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--new-private '%s' is not an absolute path (it "
                                             "names a directory on the destination)",
                                             v);
                if (strlen(v) > CTA_PATH_MAX)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--new-private is longer than %d bytes",
                                             CTA_PATH_MAX);
                s->new_private = v;
        }
        if ((v = cli_opt(o, "dst-user")) && !*v)
                return cta_error_set(err, CTA_E_INVALID, 0, "--dst-user needs a name");
        if ((v = cli_opt(o, "dst-fingerprint"))) {
                if (!cli_kn_fingerprint_valid(v))
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "bad --dst-fingerprint '%s': want SHA256: and 32 "
                                             "colon-separated hex bytes",
                                             v);
                if (s->dst_plain)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--dst-fingerprint needs TLS; drop --dst-plain");
                if (!use_one_time_pass(o))
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--dst-fingerprint is for the client's own "
                                             "connection to the destination, which only "
                                             "--one-time-pass (or a client certificate) "
                                             "makes");
        }
        return 0;
}

/* ---- the request ---- */

static void req_u64(struct cli_req *r, const char *name, uint64_t v)
{
        char num[24];

        snprintf(num, sizeof(num), "%" PRIu64, v);
        cli_req_text(r, name, num);
}

void cli_mig_req_build(struct cli_req *r, struct cli_conn *c, const struct cli_mig_spec *s)
{
        cli_req_begin(r, c, RELOCATOR, RELOCATOR, true);
        cli_req_open(r, "migrate_v2v");

        /* v2v_migrate_optionsType: force, nostart, remove, config, type. */
        cli_req_open(r, "options");
        if (s->force)
                cli_req_empty(r, "force");
        if (s->nostart)
                cli_req_empty(r, "nostart");
        if (s->remove)
                cli_req_text(r, "remove", "true");
        if (s->new_name || s->has_new_veid || s->new_private) {
                /* venv_configType order: name … veid, ve_private. */
                cli_req_open(r, "config");
                if (s->new_name)
                        cli_req_text(r, "name", s->new_name);
                if (s->has_new_veid)
                        req_u64(r, "veid", s->new_veid);
                if (s->new_private)
                        cli_req_text(r, "ve_private", s->new_private);
                cli_req_close(r, "config");
        }
        cli_req_text(r, "type", "0");
        if (s->has_compress && s->compress == CTA_COMPRESS_AUTO)
                cli_req_text(r, "compress", "auto");
        else if (s->has_compress) /* ours, after the schema's fields; others ignore it */
                req_u64(r, "compress", (uint64_t)s->compress);
        cli_req_close(r, "options");

        cli_req_open(r, "eid_list");
        cli_req_text(r, "eid", s->eid);
        cli_req_close(r, "eid_list");

        /* connection_infoType: protocol, address, port, login, password. */
        cli_req_open(r, "dst");
        cli_req_text(r, "protocol", s->dst_plain ? "TCP" : "SSL");
        cli_req_text(r, "address", s->dst_host);
        req_u64(r, "port", s->dst_port);
        cli_req_open(r, "login");
        cli_req_b64(r, "name", s->login_name, strlen(s->login_name));
        cli_req_text(r, "realm", s->login_realm);
        cli_req_close(r, "login");
        if (s->password)
                cli_req_secret_b64(r, "password", s->password, strlen(s->password));
        cli_req_close(r, "dst");

        cli_req_close(r, "migrate_v2v");
        cli_req_end(r);
}

/* ---- progress packets ---- */

/* Digits only, no sign or space, no overflow. */
static const char *parse_digits(const char *p, uint64_t *ret)
{
        uint64_t n = 0;
        const char *start = p;

        for (; *p >= '0' && *p <= '9'; p++) {
                if (n > (UINT64_MAX - 9) / 10)
                        return NULL;
                n = n * 10 + (uint64_t)(*p - '0');
        }
        if (p == start)
                return NULL;
        *ret = n;
        return p;
}

bool cli_mig_split_bytes(char *text, uint64_t *ret_done, uint64_t *ret_total)
{
        char *sep = strrchr(text, ',');
        const char *p;
        uint64_t done, total;

        if (!sep || sep[1] != ' ')
                return false;
        p = parse_digits(sep + 2, &done);
        if (!p || strncmp(p, " of ", 4) != 0)
                return false;
        p = parse_digits(p + 4, &total);
        if (!p || !streq(p, " bytes"))
                return false;
        *sep = '\0';
        *ret_done = done;
        *ret_total = total;
        return true;
}

/* The rendered value of parameter `name` of the progress message, or NULL. */
static char *message_param(const struct cta_resp *resp, const char *name)
{
        const struct cta_xnode *msg =
                resp->progress_node ? cta_xnode_child(resp->progress_node, "message") : NULL;

        for (const struct cta_xnode *p = msg ? cta_xnode_child(msg, "parameter") : NULL; p;
             p = cta_xnode_next_named(p)) {
                const char *pn = cta_xnode_ctext(p, "name");
                if (pn && streq(pn, name))
                        return cta_info_render(p);
        }
        return NULL;
}

static bool param_u64(const struct cta_resp *resp, const char *name, uint64_t *ret)
{
        _cleanup_free_ char *v = message_param(resp, name);
        const char *end;

        if (!v)
                return false;
        end = parse_digits(v, ret);
        return end && !*end;
}

void cli_mig_progress_parse(const struct cta_resp *resp, struct cli_mig_progress *out)
{
        _cleanup_free_ char *phase = message_param(resp, "phase");
        const char *text = phase && *phase           ? phase
                           : resp->message && *resp->message ? resp->message
                           : resp->progress_op             ? resp->progress_op
                                                           : "migrating";
        uint64_t d, t;

        memset(out, 0, sizeof(*out));
        out->percent = resp->percent < -1 ? -1 : resp->percent > 100 ? 100 : resp->percent;
        out->status = resp->status;
        snprintf(out->phase, sizeof(out->phase), "%s", text);
        if (cli_mig_split_bytes(out->phase, &d, &t)) {
                out->has_bytes = true;
                out->done = d;
                out->total = t;
        }
        /* The explicit parameters win over the text. */
        if (param_u64(resp, "bytes_total", &t)) {
                out->has_bytes = true;
                out->total = t;
                out->done = param_u64(resp, "bytes_done", &d) ? d : 0;
        }
        if (out->done > out->total && out->total)
                out->done = out->total;
}

void cli_mig_summary(char *out, size_t cap, const char *what, const char *dst,
                     uint64_t elapsed_ms, uint64_t bytes, uint64_t copy_ms)
{
        char b[16], rate[16];
        uint64_t ms = copy_ms ? copy_ms : elapsed_ms;

        if (ms == 0)
                ms = 1;
        cli_fmt_bytes(bytes, b);
        cli_fmt_bytes((uint64_t)((double)bytes * 1000.0 / (double)ms), rate);
        if (bytes)
                snprintf(out, cap, "container %s moved to %s in %.1f s (%s copied at %s/s)",
                         what, dst, (double)elapsed_ms / 1000.0, b, rate);
        else
                snprintf(out, cap, "container %s moved to %s in %.1f s", what, dst,
                         (double)elapsed_ms / 1000.0);
}

/* ---- finding the container on the source ---- */

struct mig_ct {
        char eid[37];
        char *label; /* its name, else its eid (cleaned for the terminal) */
};

/* get_info of some eids (quiet: not what the user asked to see), then pick
 * the container `what` names among them. 1 = found, 0 = not there. */
static int info_match(struct cli_ctx *ctx, const char *const *eids, size_t n, const char *what,
                      struct mig_ct *ct, struct cta_error **ambiguous)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        struct cli_ct_env *envs = NULL;
        struct cli_req r;
        size_t k = 0, idx;
        int rc;

        cli_ct_req_get_info(&r, ctx->conn, eids, n);
        rc = cli_conn_call(ctx, ctx->conn, &r, CLI_CALL_QUIET, NULL, NULL, &resp);
        cli_req_done(&r);
        if (rc < 0)
                return rc;
        if (!resp->op_node)
                return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                                "the reply from %s has no %s element", ctx->conn->key, ENVM);
        (void)cli_ct_envs_parse(resp->op_node, &envs, &k);
        struct cta_error *e = NULL;
        rc = cli_ct_match(envs, k, what, &idx, &e);
        if (rc >= 0) {
                snprintf(ct->eid, sizeof(ct->eid), "%s", envs[idx].eid);
                ct->label = cli_clean_text(envs[idx].name && *envs[idx].name ? envs[idx].name
                                                                              : envs[idx].eid);
                rc = 1;
        } else if (rc == -CTA_E_ENV_NOT_FOUND) {
                cta_error_free(e);
                rc = 0;
        } else {
                *ambiguous = e;
                rc = 0;
        }
        cli_ct_envs_free(envs, k);
        return rc;
}

/* CT is an eid, a veid or a name (as for the container commands). */
static int mig_resolve(struct cli_ctx *ctx, const char *what, struct mig_ct *ct)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        struct cta_error *ambiguous = NULL;
        const struct cta_xnode *x;
        struct cli_req r;
        int rc, found = 0;

        if (cta_uuid_valid(what)) {
                const char *one[1] = { what };
                rc = info_match(ctx, one, 1, what, ct, &ambiguous);
                cta_error_free(ambiguous);
                if (rc < 0)
                        return rc;
                if (!rc)
                        return cli_fail(ctx, CLI_FAIL_REMOTE, CTA_E_ENV_NOT_FOUND,
                                        "no container with eid %s on %s", what, ctx->conn->key);
                return 0;
        }
        cli_ct_req_get_list(&r, ctx->conn, NULL, 0);
        rc = cli_conn_call(ctx, ctx->conn, &r, CLI_CALL_QUIET, NULL, NULL, &resp);
        cli_req_done(&r);
        if (rc < 0)
                return rc;
        x = resp->op_node ? cta_xnode_child(resp->op_node, "eid") : NULL;
        /* In batches: a veid or a name matches at most one container, which
         * is checked across batches too. */
        while (x) {
                const char *eids[INFO_BATCH];
                struct mig_ct hit = { .label = NULL };
                size_t n = 0;

                for (; x && n < INFO_BATCH; x = cta_xnode_next_named(x))
                        if (*cta_xnode_ttext(x))
                                eids[n++] = cta_xnode_ttext(x);
                if (n == 0)
                        continue;
                rc = info_match(ctx, eids, n, what, &hit, &ambiguous);
                if (rc < 0) {
                        free(hit.label);
                        free(ct->label);
                        cta_error_free(ambiguous);
                        return rc;
                }
                if (ambiguous) {
                        free(ct->label);
                        ct->label = NULL;
                        return cli_fail_err(ctx, CLI_FAIL_REMOTE, ambiguous);
                }
                if (rc && found++) {
                        _cleanup_free_ char *w = cli_clean_text(what);
                        free(hit.label);
                        free(ct->label);
                        ct->label = NULL;
                        return cli_fail(ctx, CLI_FAIL_REMOTE, CTA_E_INVALID,
                                        "'%s' is ambiguous: it names several containers; use "
                                        "the eid",
                                        w);
                }
                if (rc)
                        *ct = hit;
        }
        if (!found) {
                _cleanup_free_ char *w = cli_clean_text(what);
                return cli_fail(ctx, CLI_FAIL_REMOTE, CTA_E_ENV_NOT_FOUND,
                                "no container on %s has the eid, veid or name '%s'",
                                ctx->conn->key, w);
        }
        cli_verbose(ctx->o, 1, "'%s' is container %s", what, ct->eid);
        return 0;
}

/* After a failure: is the container (still) on the source, and how? Best
 * effort: a failure of this check itself is dropped. Returns 1 (there: its
 * state and transition in *ret_state, *ret_tr), 0 (not there), -1 (unknown). */
static int source_has(struct cli_ctx *ctx, const char *eid, int *ret_state, int *ret_tr)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        const char *one[1] = { eid };
        struct cli_ct_env *envs = NULL;
        struct cli_req r;
        size_t n = 0;
        int rc, found = 0;

        cli_ct_req_get_info(&r, ctx->conn, one, 1);
        rc = cli_conn_call(ctx, ctx->conn, &r, CLI_CALL_QUIET, NULL, NULL, &resp);
        cli_req_done(&r);
        if (rc < 0 || !resp->op_node) {
                ctx->err = cta_error_free(ctx->err);
                ctx->fail = CLI_FAIL_NONE;
                return -1;
        }
        (void)cli_ct_envs_parse(resp->op_node, &envs, &n);
        for (size_t i = 0; i < n && !found; i++)
                if (strcasecmp(envs[i].eid, eid) == 0) {
                        found = 1;
                        *ret_state = envs[i].state;
                        *ret_tr = envs[i].transition;
                }
        cli_ct_envs_free(envs, n);
        return found;
}

/* ---- credentials for the destination ---- */

/* The destination's password from --dst-password-file or
 * $CTAGENT_DST_PASSWORD: 1 (*ret set), 0 (neither: ask), or a usage error. */
static int dst_password_given(const struct cli_opts *o, char **ret, struct cta_error **err)
{
        const char *file = cli_opt(o, "dst-password-file");
        const char *env = getenv("CTAGENT_DST_PASSWORD");
        int r;

        if (file) {
                r = cli_read_password_file(file, "--dst-password-file", ret, err);
                if (r < 0) /* unreadable or too long: the command line's fault */
                        return err ? cta_error_set(err, CTA_E_INVALID, 0, "%s",
                                                   cta_error_msg(*err))
                                   : -CTA_E_INVALID;
                return 1;
        }
        if (env) {
                if (strlen(env) > CLI_PASSWORD_MAX)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "$CTAGENT_DST_PASSWORD is longer than %d bytes",
                                             CLI_PASSWORD_MAX);
                *ret = cta_xstrdup(env);
                return 1;
        }
        return 0;
}

/* --dst-password-file, $CTAGENT_DST_PASSWORD, or a prompt without echo. */
static int dst_password(struct cli_ctx *ctx, const char *user, const struct cli_mig_spec *s,
                        char **ret)
{
        struct cta_error *e = NULL;
        char buf[CLI_PASSWORD_MAX + 1];
        int r, code;

        r = dst_password_given(ctx->o, ret, &e);
        if (r < 0)
                return cli_fail_err(ctx, CLI_FAIL_USAGE, e);
        if (r > 0)
                return 0;
        /* Not cli_get_password(): that would take $CTAGENT_PASSWORD, the
         * source's password, first. */
        _cleanup_free_ char *prompt = cta_xasprintf("Password for %s@%s (destination): ", user,
                                                    s->dst_host);
        if (cli_prompt_secret(prompt, buf, sizeof(buf), &e) >= 0) {
                *ret = cta_xstrdup(buf);
                explicit_bzero(buf, sizeof(buf));
                return 0;
        }
        code = cta_error_code(e);
        cta_error_free(e);
        if (code == CTA_E_TOO_LARGE)
                return cli_fail(ctx, CLI_FAIL_USAGE, CTA_E_INVALID,
                                "the password is longer than %d bytes", CLI_PASSWORD_MAX);
        if (code == CTA_E_CANCELLED)
                return cli_fail(ctx, CLI_FAIL_LOGIN, CTA_E_AUTH_FAILED,
                                "no password entered for %s on the destination %s", user,
                                s->dst_host);
        return cli_fail(ctx, CLI_FAIL_LOGIN, CTA_E_AUTH_FAILED,
                        "no password for %s on the destination %s: use --dst-password-file, "
                        "set CTAGENT_DST_PASSWORD, or run ctagent on a terminal",
                        user, s->dst_host);
}

/* Log in to the destination and ask it for a one-time pass (its decoded
 * name goes to name_out). The connection is closed afterwards: the pass is
 * kept by the destination until it is used or expires. */
static int one_time_pass(struct cli_ctx *ctx, const struct cli_mig_spec *s, const char *user,
                         const char *password, char name_out[CTA_NAME_MAX + 1])
{
        const struct cli_target t = {
                .host = s->dst_host,
                .port = s->dst_port,
                .plain = s->dst_plain,
                .fingerprint = cli_opt(ctx->o, "dst-fingerprint"),
        };
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        struct cli_conn *dc = NULL;
        const struct cta_xnode *pass;
        const char *name;
        struct cli_req r;
        int rc;

        rc = cli_conn_open(ctx, &t, &dc);
        if (rc >= 0) {
                rc = cli_conn_login(ctx, dc, user, password, CLI_SYSTEM_REALM);
                /* Refused certificate: a password instead, when a terminal can ask. */
                if (rc < 0 && !password && ctx->fail == CLI_FAIL_LOGIN &&
                    (rc = cli_cert_refused(ctx, dc->key, user)) >= 0) {
                        char *pw = NULL;
                        rc = dst_password(ctx, user, s, &pw);
                        if (rc >= 0)
                                rc = cli_conn_login(ctx, dc, user, pw, CLI_SYSTEM_REALM);
                        cli_secret_free(pw);
                }
        }
        if (rc >= 0) {
                cli_req_begin(&r, dc, NULL, "system", false);
                cli_req_empty(&r, "generate_pass");
                cli_req_end(&r);
                rc = cli_conn_call(ctx, dc, &r, CLI_CALL_QUIET, NULL, NULL, &resp);
                cli_req_done(&r);
        }
        if (rc < 0) {
                cta_error_wrap(&ctx->err, "one-time pass from the destination");
                cli_conn_free(dc);
                return rc;
        }
        pass = resp->op_node ? cta_xnode_child(resp->op_node, "pass") : NULL;
        name = pass ? cta_xnode_ctext(pass, "name") : NULL;
        if (!name || cta_b64_decode_str(name, strlen(name), name_out, CTA_NAME_MAX + 1) < 0 ||
            !*name_out) {
                rc = cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                              "the generate_pass reply from %s has no valid <pass><name>",
                              dc->key);
                cli_conn_free(dc);
                return rc;
        }
        cli_verbose(ctx->o, 1, "one-time pass from %s made", dc->key);
        cli_conn_free(dc);
        return 0;
}

/* ---- the call, with Ctrl-C ---- */

static volatile sig_atomic_t mig_signals;
static volatile sig_atomic_t mig_cancel_sent;
static int mig_wake[2] = { -1, -1 };

static void mig_on_signal(int sig)
{
        int saved = errno;

        (void)sig;
        if (mig_signals++ > 0) {
                static const char sent[] =
                        "\nctagent: not waiting any longer; the node finishes the cancel on "
                        "its own ('ctagent list' shows where the container is)\n";
                static const char unsent[] =
                        "\nctagent: interrupted before the cancel was sent; the migration "
                        "goes on without this client\n";
                if (mig_cancel_sent)
                        (void)!write(STDERR_FILENO, sent, sizeof(sent) - 1);
                else
                        (void)!write(STDERR_FILENO, unsent, sizeof(unsent) - 1);
                _exit(130);
        }
        if (mig_wake[1] >= 0)
                (void)!write(mig_wake[1], "x", 1);
        errno = saved;
}

struct mig_run {
        struct cli_ctx *ctx;
        struct cli_conn *c;
        const char *req_id;
        char cancel_id[24];
        bool show;  /* progress display (not --xml) */
        struct cli_progress bar;
        uint64_t start_ms, copy_start_ms, copy_end_ms;
        uint64_t total;
};

static void mig_note(struct mig_run *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A line on stderr that does not tear the bar. */
static void mig_note(struct mig_run *m, const char *fmt, ...)
{
        va_list ap;

        if (m->show) {
                cli_progress_clear(&m->bar);
                fflush(m->bar.out);
        }
        fputs("ctagent: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        fflush(stderr);
}

static void mig_progress(struct mig_run *m, const struct cta_resp *resp)
{
        struct cli_mig_progress p;
        uint64_t now = cta_now_ms();

        cli_mig_progress_parse(resp, &p);
        if (p.has_bytes && p.total)
                m->total = p.total;
        if (strncmp(p.phase, "copying", 7) == 0) {
                if (!m->copy_start_ms)
                        m->copy_start_ms = now;
                if (p.has_bytes && p.total && p.done >= p.total && !m->copy_end_ms)
                        m->copy_end_ms = now;
        }
        if (p.status == 4) /* the reply that follows says why; no counts */
                p.has_bytes = false;
        if (m->show)
                cli_progress_update_at(&m->bar, p.phase, p.percent, p.has_bytes ? p.done : 0,
                                       p.has_bytes ? p.total : 0, now);
        else if (p.status == 4 || p.status == 1)
                cli_verbose(m->ctx->o, 1, "%s", p.phase);
}

static int mig_send_cancel(struct mig_run *m)
{
        struct cli_req q;
        int rc;

        cli_req_begin(&q, m->c, NULL, "system", false);
        cli_req_open(&q, "cancel");
        cli_req_text(&q, "message_id", m->req_id);
        cli_req_close(&q, "cancel");
        cli_req_end(&q);
        snprintf(m->cancel_id, sizeof(m->cancel_id), "%s", q.id);
        cli_verbose(m->ctx->o, 2, "sending system/cancel %s for request %s", q.id, m->req_id);
        (void)cta_buf_putc(&q.b, '\0');
        rc = cli_conn_send_raw(m->ctx, m->c, q.b.data, q.b.len);
        cli_req_done(&q);
        mig_cancel_sent = 1;
        return rc;
}

/* -vv: the request as sent, the password masked. */
static void mig_dump(const struct cli_ctx *ctx, const struct cli_req *r)
{
        if (ctx->o->verbose < 2)
                return;
        const char *d = r->b.data;
        size_t len = r->b.len;
        size_t s0 = r->secret_end > r->secret_start ? r->secret_start : len;
        size_t s1 = r->secret_end > r->secret_start ? r->secret_end : len;
        _cleanup_free_ char *a = cli_clean_frame(d, s0);
        _cleanup_free_ char *b = cli_clean_frame(d + s1, len - s1);
        fprintf(stderr, "ctagent: sending:\n%s%s%s", a, s1 > s0 ? "********" : "", b);
}

/* Wait until the fd is readable, a signal came, or the slice ends.
 * 1 = readable, 0 = not (yet). */
static int mig_wait(struct mig_run *m, int slice_ms)
{
        struct pollfd pf[2] = {
                { .fd = cta_client_fd(m->c->c), .events = POLLIN },
                { .fd = mig_wake[0], .events = POLLIN },
        };
        int n = poll(pf, 2, slice_ms);

        if (n <= 0)
                return 0;
        if (pf[1].revents & POLLIN) {
                char buf[16];
                while (read(mig_wake[0], buf, sizeof(buf)) > 0) {
                }
        }
        return (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

/*
 * Send the migrate request and read until its final reply. Returns 0 with
 * *ret the reply (which may be an <error>; nothing is recorded for it yet),
 * or < 0 on a transport failure (recorded in ctx).
 */
static int mig_call(struct mig_run *m, struct cli_req *r, struct cta_resp **ret)
{
        struct cli_ctx *ctx = m->ctx;
        bool print = ctx->o->xml;
        uint64_t last = cta_now_ms();
        int rc;

        mig_dump(ctx, r);
        (void)cta_buf_putc(&r->b, '\0');
        rc = cli_conn_send_raw(ctx, m->c, r->b.data, r->b.len);
        if (rc < 0)
                return rc;
        m->start_ms = cta_now_ms();

        for (;;) {
                _cleanup_free_ char *frame = NULL;
                struct cta_resp *resp = NULL;
                size_t len = 0;

                if (mig_signals && !m->cancel_id[0]) {
                        mig_note(m, "cancelling: the migration is rolled back unless it is past "
                                    "the point of no return (Ctrl-C again to stop waiting)");
                        rc = mig_send_cancel(m);
                        if (rc < 0)
                                return rc;
                }
                /* Frames already buffered (or a partial one) are read at once;
                 * otherwise wait in slices so a signal is seen promptly. */
                if (!cta_framer_pending(&m->c->fr) && !cta_client_pending(m->c->c)) {
                        int slice = POLL_SLICE_MS;
                        if (m->c->timeout_ms) {
                                uint64_t now = cta_now_ms();
                                uint64_t end = last + (uint64_t)m->c->timeout_ms;
                                if (now >= end)
                                        return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_TIMEOUT,
                                                        "no word from %s for %d s (see "
                                                        "--timeout); the migration may still "
                                                        "be running there",
                                                        m->c->key, m->c->timeout_ms / 1000);
                                if (end - now < (uint64_t)slice)
                                        slice = (int)(end - now);
                        }
                        if (!mig_wait(m, slice))
                                continue;
                }
                rc = cli_conn_recv(ctx, m->c, &frame, &len, &resp);
                if (rc < 0)
                        return rc;
                last = cta_now_ms();
                if (print)
                        cli_print_frame(stdout, frame, len);
                if (!resp)
                        return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                                        "%s sent a malformed packet: %s", m->c->key,
                                        m->c->parse_error ? m->c->parse_error : "not a packet");
                bool progress = resp->is_progress || (resp->type & 1);
                bool mine = resp->id && streq(resp->id, m->req_id);
                if (!progress && (mine || (!resp->id && resp->has_error))) {
                        *ret = resp;
                        return 0;
                }
                if (progress && mine && resp->is_progress) {
                        mig_progress(m, resp);
                } else if (!progress && m->cancel_id[0] && resp->id &&
                           streq(resp->id, m->cancel_id) && resp->has_error) {
                        /* Most likely the migration ended meanwhile; its reply follows. */
                        _cleanup_free_ char *msg = cli_clean_text(resp->error_message);
                        mig_note(m, "the node did not take the cancel: %s", msg);
                }
                cta_resp_free(resp);
        }
}

static int mig_run_call(struct cli_ctx *ctx, struct cli_req *r, struct mig_run *m,
                        struct cta_resp **ret)
{
        struct sigaction sa = { .sa_handler = mig_on_signal }, old_int, old_term;
        int rc;

        memset(m, 0, sizeof(*m));
        m->ctx = ctx;
        m->c = ctx->conn;
        m->req_id = r->id;
        m->show = !ctx->o->xml;
        if (m->show) {
                cli_progress_init(&m->bar, stdout, ctx->stdout_tty, 0);
                m->bar.plain_interval_ms = PLAIN_LINE_MS;
        }
        if (pipe2(mig_wake, O_CLOEXEC | O_NONBLOCK) < 0)
                return cli_fail(ctx, CLI_FAIL_LOCAL, CTA_E_IO, "pipe: %s", strerror(errno));
        mig_signals = 0;
        mig_cancel_sent = 0;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);

        rc = mig_call(m, r, ret);

        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        close(mig_wake[0]);
        close(mig_wake[1]);
        mig_wake[0] = mig_wake[1] = -1;
        if (m->show)
                cli_progress_finish(&m->bar);
        return rc;
}

/* The node's error, and where the container is now (asked, not assumed). */
static int mig_failed(struct cli_ctx *ctx, const struct mig_run *m, const struct cta_resp *resp,
                      const char *eid)
{
        _cleanup_free_ char *msg = cli_clean_text(resp->error_message);
        int code = resp->error_code > 0 ? resp->error_code : CTA_E_INTERNAL;
        const char *src = ctx->conn->key;
        const char *st_name;
        char where[512];
        int state = -1, tr = -1;
        int has = source_has(ctx, eid, &state, &tr);

        if (has == 1 && tr > 0) {
                const char *t = cli_ct_transition_name(tr);
                snprintf(where, sizeof(where), "container %s is on %s, busy (%s)", eid, src,
                         t ? t : "in transition");
        } else if (has == 1) {
                st_name = cli_ct_state_name(state);
                snprintf(where, sizeof(where), "container %s stays on %s%s%s%s", eid, src,
                         st_name ? " (" : "", st_name ? st_name : "", st_name ? ")" : "");
        } else if (has == 0) {
                snprintf(where, sizeof(where), "container %s is no longer on %s", eid, src);
        } else {
                where[0] = '\0';
        }
        if (m->cancel_id[0] && has == 1 && tr <= 0) {
                /* Cancelled and rolled back, whatever words the node chose. */
                if (code != CTA_E_CANCELLED)
                        return cli_fail(ctx, CLI_FAIL_REMOTE, CTA_E_CANCELLED,
                                        "cancelled; %s (the node said: error %d: %s)", where,
                                        code, *msg ? msg : "(no message)");
                return cli_fail(ctx, CLI_FAIL_REMOTE, CTA_E_CANCELLED, "cancelled; %s", where);
        }
        return cli_fail(ctx, CLI_FAIL_REMOTE, code, "%s%s%s", *msg ? msg : "(no message)",
                        where[0] ? "; " : "", where);
}

/* ---- the command ---- */

/* Before the source's password is asked for: the destination, the options,
 * and a --dst-password-file that cannot be read (or $CTAGENT_DST_PASSWORD
 * too long). A password read here is dropped and run() reads it again, so
 * only a regular file is read now: a pipe (/dev/stdin, <(...)) would be
 * empty the second time, and is only looked for. */
static int migrate_check(struct cli_ctx *ctx, struct cta_error **err)
{
        const char *file = cli_opt(ctx->o, "dst-password-file");
        struct cli_mig_spec s;
        char *password = NULL;
        struct stat st;
        int r = cli_mig_spec_from_opts(ctx->o, &s, err);

        if (r < 0)
                return r;
        if (!*ctx->o->args[0])
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "'migrate' needs a container: its eid, veid or name, "
                                     "not ''");
        if (file) {
                if (stat(file, &st) < 0)
                        return cta_error_errno(err, CTA_E_INVALID, "--dst-password-file: '%s'",
                                               file);
                if (S_ISDIR(st.st_mode))
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--dst-password-file: '%s' is a directory", file);
                if (!S_ISREG(st.st_mode))
                        return access(file, R_OK) == 0
                                       ? 0
                                       : cta_error_errno(err, CTA_E_INVALID,
                                                         "--dst-password-file: '%s'", file);
        }
        r = dst_password_given(ctx->o, &password, err);
        cli_secret_free(password);
        return r < 0 ? r : 0;
}

static const char *dst_user(const struct cli_opts *o)
{
        const char *u = cli_opt(o, "dst-user");

        return u ? u : o->user;
}

/* --one-time-pass: the destination's password, then a one-time pass from it. */
static int pass_from_dst(struct cli_ctx *ctx, const struct cli_mig_spec *s,
                         char name_out[CTA_NAME_MAX + 1])
{
        char *password = NULL;
        int rc = 0;

        if (!dst_by_cert(ctx->o))
                rc = dst_password(ctx, dst_user(ctx->o), s, &password);
        if (rc < 0)
                return rc;
        rc = one_time_pass(ctx, s, dst_user(ctx->o), password, name_out);
        cli_secret_free(password);
        return rc;
}

/* A one-time pass fetched by migrate_while_login() for run() (one command per
 * process; run() takes it and wipes it). */
static char early_pass[CTA_NAME_MAX + 1];

/* With --one-time-pass: the destination's password check and the source's run
 * at the same time (each an OS password hash, tens of ms) - the pass is fetched
 * while the source checks the client's login. */
static int migrate_while_login(struct cli_ctx *ctx)
{
        struct cta_error *e = NULL;
        struct cli_mig_spec s;

        explicit_bzero(early_pass, sizeof(early_pass));
        if (!use_one_time_pass(ctx->o))
                return 0;
        if (cli_mig_spec_from_opts(ctx->o, &s, &e) < 0)
                return cli_fail_err(ctx, CLI_FAIL_USAGE, e);
        return pass_from_dst(ctx, &s, early_pass);
}

static int cmd_migrate(struct cli_ctx *ctx)
{
        struct cli_opts *o = ctx->o;
        bool otp = use_one_time_pass(o);
        const char *user = dst_user(o);
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        char pass_name[CTA_NAME_MAX + 1] = "";
        struct mig_ct ct = { .label = NULL };
        struct cli_mig_spec s;
        struct cta_error *e = NULL;
        char *password = NULL;
        char dst_label[300];
        struct mig_run m;
        struct cli_req r;
        int rc;

        if (cli_mig_spec_from_opts(o, &s, &e) < 0)
                return cli_fail_err(ctx, CLI_FAIL_USAGE, e);
        if (s.dst_host[0] && strchr(s.dst_host, ':'))
                snprintf(dst_label, sizeof(dst_label), "[%s]:%u", s.dst_host, s.dst_port);
        else
                snprintf(dst_label, sizeof(dst_label), "%s:%u", s.dst_host, s.dst_port);

        rc = mig_resolve(ctx, o->args[0], &ct);
        if (rc < 0)
                return rc;
        _cleanup_free_ char *label = ct.label;

        s.eid = ct.eid;
        if (otp) {
                if (early_pass[0]) {
                        memcpy(pass_name, early_pass, sizeof(pass_name));
                        explicit_bzero(early_pass, sizeof(early_pass));
                } else if ((rc = pass_from_dst(ctx, &s, pass_name)) < 0) {
                        return rc;
                }
                s.login_name = pass_name;
                s.login_realm = CLI_ONE_TIME_REALM;
                s.password = NULL;
        } else {
                rc = dst_password(ctx, user, &s, &password);
                if (rc < 0)
                        return rc;
                s.login_name = user;
                s.login_realm = CLI_SYSTEM_REALM;
                s.password = password;
        }

        slow_wait(ctx);
        cli_mig_req_build(&r, ctx->conn, &s);
        cli_secret_free(password);
        password = NULL;
        explicit_bzero(pass_name, sizeof(pass_name));
        if (!o->xml) {
                printf("migrating container %s (%s) from %s to %s%s\n", label, ct.eid,
                       ctx->conn->key, dst_label, otp ? " with a one-time pass" : "");
                fflush(stdout);
        }
        rc = mig_run_call(ctx, &r, &m, &resp);
        cli_req_done(&r);
        if (rc < 0) {
                if (ctx->fail == CLI_FAIL_CONN)
                        fprintf(stderr,
                                "ctagent: the node carries on without this client: "
                                "'ctagent -H %s list' and 'ctagent -H %s list' show where "
                                "container %s ends up\n",
                                ctx->conn->key, dst_label, ct.eid);
                return rc;
        }

        uint64_t elapsed = cta_now_ms() - m.start_ms;
        if (resp->has_error)
                return mig_failed(ctx, &m, resp, ct.eid);
        if (!o->xml) {
                char line[600];
                uint64_t copy_ms = m.copy_end_ms > m.copy_start_ms + 100
                                           ? m.copy_end_ms - m.copy_start_ms
                                           : 0;
                cli_mig_summary(line, sizeof(line), label, dst_label, elapsed, m.total, copy_ms);
                printf("%s\n", line);
                if (m.cancel_id[0])
                        printf("(the cancel came too late: the destination had already taken "
                               "the container)\n");
        }
        return 0;
}

/* ---- settle: the operator's word on a migration in doubt ---- */

static int settle_check(struct cli_ctx *ctx, struct cta_error **err)
{
        bool moved = cli_opt(ctx->o, "moved") != NULL, stays = cli_opt(ctx->o, "stays") != NULL;

        if (moved == stays)
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "'settle' needs exactly one of --moved and --stays");
        if (!*ctx->o->args[0])
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "'settle' needs a container: its eid, veid or name");
        return cli_confirmable(ctx->o, "settling", err);
}

/* Ask on the terminal; true only for "yes". */
static bool settle_confirm(const struct mig_ct *ct, bool moved)
{
        if (moved)
                fprintf(stderr, "Declare that container %s moved to its destination?\n"
                                "This node retires its copy (renamed to <private>.migrated, "
                                "never deleted)\nand forgets the container.\n",
                        ct->label);
        else
                fprintf(stderr, "Declare that container %s never arrived at its destination?\n"
                                "This node takes it back and starts it if it ran. If the "
                                "destination did\ncommit it and comes back, the container "
                                "will exist on both nodes.\n",
                        ct->label);
        return cli_typed_yes("settle it");
}

static int settle_call(struct cli_ctx *ctx, const struct mig_ct *ct, bool moved)
{
        struct cli_req r;
        int rc;

        if (!cli_opt(ctx->o, "yes") && !settle_confirm(ct, moved))
                return cli_fail(ctx, CLI_FAIL_LOCAL, CTA_E_CANCELLED,
                                "not confirmed; container %s left as it was", ct->eid);
        slow_wait(ctx); /* the node asks the destination first (a connect may take 60 s) */
        cli_req_begin(&r, ctx->conn, RELOCATOR, RELOCATOR, false);
        cli_req_open(&r, "settle");
        cli_req_text(&r, "eid", ct->eid);
        cli_req_text(&r, "outcome", moved ? "moved" : "stays");
        cli_req_close(&r, "settle");
        cli_req_end(&r);
        rc = cli_conn_call(ctx, ctx->conn, &r, 0, NULL, NULL, NULL);
        cli_req_done(&r);
        if (rc < 0)
                return rc;
        if (!ctx->o->xml)
                printf(moved ? "settled: container %s moved; the copy here is retired (kept)\n"
                             : "settled: container %s stays on this node\n",
                       ct->eid);
        return 0;
}

static int cmd_settle(struct cli_ctx *ctx)
{
        bool moved = cli_opt(ctx->o, "moved") != NULL;
        struct mig_ct ct = { .label = NULL };
        int rc = mig_resolve(ctx, ctx->o->args[0], &ct);

        if (rc < 0)
                return rc;
        rc = settle_call(ctx, &ct, moved);
        free(ct.label);
        return rc;
}

/* ---- the table ---- */

static const struct cli_optdef migrate_opts[] = {
        { "dst-user", 0, "USER", "log in to the destination as USER (default: -u's)" },
        { "dst-password-file", 0, "FILE",
          "its password (else $CTAGENT_DST_PASSWORD, a prompt)" },
        { "one-time-pass", 0, NULL,
          "log in to the destination here, send a one-time pass" },
        { "dst-plain", 0, NULL, "the nodes talk plain TCP (port 4433), not TLS" },
        { "dst-fingerprint", 0, "SHA256:..",
          "require this destination certificate (--one-time-pass)" },
        { "remove", 0, NULL, "delete the source's copy (default: keep it renamed)" },
        { "nostart", 0, NULL, "leave it stopped on the destination" },
        { "force", 0, NULL, "skip the overridable checks (then it stays stopped)" },
        { "new-veid", 0, "N", "its veid on the destination" },
        { "new-name", 0, "NAME", "its name on the destination" },
        { "new-private", 0, "PATH", "its private area on the destination" },
        { "compress", 0, NULL, "compress the data with zstd (for slow links)" },
        { "compress-level", 0, "N", "zstd level 1-19, 0 (off) or auto (by the link's speed)" },
        { NULL, 0, NULL, NULL },
};

static const struct cli_optdef settle_opts[] = {
        { "moved", 0, NULL, "the destination has it: retire the copy here" },
        { "stays", 0, NULL, "it never arrived there: take it back here" },
        { "yes", 'y', NULL, "do not ask for confirmation" },
        { NULL, 0, NULL, NULL },
};

const struct cli_command cli_cmds_migrate[] = {
        {
                .name = "migrate",
                .args = "CT DST_HOST[:PORT]",
                .summary = "move a container to another node (relocator/migrate_v2v)",
                .help = "CT is the container's eid, its veid or its name on the node the client\n"
                        "is connected to (-H), the source. That node moves it to the node at\n"
                        "DST_HOST[:PORT] (port 4434, TLS; 4433 with --dst-plain): offline\n"
                        "migration (type 0) - a running container is stopped, copied, and\n"
                        "started on the destination, keeping its eid. Until the destination has\n"
                        "taken it, any failure leaves it whole on the source; afterwards the\n"
                        "source's private area is kept as <private>.migrated (deleted with\n"
                        "--remove).\n"
                        "\n"
                        "The source logs in to the destination with --dst-user (default: the -u\n"
                        "user) and its password from --dst-password-file, $CTAGENT_DST_PASSWORD\n"
                        "or a prompt. With --one-time-pass the password never leaves this\n"
                        "machine: the client logs in to the destination itself (pinning its\n"
                        "certificate in known_nodes like any node), gets a one-time pass from\n"
                        "system/generate_pass there and sends only that. A client with a\n"
                        "certificate (see 'ctagent help keygen') and no destination password\n"
                        "given does the same, logging in to both nodes with the certificate.\n"
                        "\n"
                        "Compression: by default (the source node's migrate_compress = auto)\n"
                        "the source times a few MiB to the destination before a container of\n"
                        "64 MiB or more and compresses with zstd only on a link slower than\n"
                        "migrate_compress_auto_mbs (250 MB/s): level 1, or 3 below an eighth\n"
                        "of it; a rate measured to the same destination within the node's\n"
                        "migrate_probe_reuse_s (600 s) is taken instead of probing again, and\n"
                        "a container going back onto the copy it left there, with less than\n"
                        "64 MiB changed since it came, goes uncompressed without a probe.\n"
                        "--compress forces level 3 (1-19 with --compress-level),\n"
                        "--compress-level 0 turns it off, --compress-level auto asks for the\n"
                        "automatic choice whatever the node's default. A destination that\n"
                        "cannot read it gets the data uncompressed.\n"
                        "\n"
                        "Progress (phase, bytes, rate, ETA) is drawn in place on a terminal,\n"
                        "else printed as lines (at most one a second). Ctrl-C cancels: the\n"
                        "client sends system/cancel, waits for the rollback and exits with\n"
                        "status 1; a second Ctrl-C stops waiting. The exit status is 0 once\n"
                        "the container is on the destination.\n"
                        "\n"
                        "Examples:\n"
                        "  ctagent -H node1 migrate web node2 --one-time-pass\n"
                        "  ctagent -H node1 migrate 101 node2:4434 --dst-user admin \\\n"
                        "          --dst-password-file ~/.node2-pw --remove\n"
                        "  ctagent migrate web 10.0.0.2 --new-veid 205 --new-name web-b \\\n"
                        "          --nostart\n",
                .min_args = 2,
                .max_args = 2,
                .opts = migrate_opts,
                .check = migrate_check,
                .while_login = migrate_while_login,
                .run = cmd_migrate,
        },
        {
                .name = "settle",
                .args = "CT",
                .summary = "decide a migration in doubt whose destination is gone (ours)",
                .help = "A migration is in doubt when the source sent the commit and lost the\n"
                        "reply: it cannot know whether the destination took the container.\n"
                        "Until it learns, the container stays stopped and locked on the source\n"
                        "(transition 'migrating'; every call on it answers busy, 110), and the\n"
                        "source asks the destination again, 2 s after and then up to once a\n"
                        "minute, for as long as it takes. This command is for a destination\n"
                        "that will not answer again (a dead node): the operator decides.\n"
                        "\n"
                        "The node asks the destination once more first: if it answers, its\n"
                        "answer settles the migration, and when that differs from the one\n"
                        "given here the command fails with error 511 saying what happened.\n"
                        "\n"
                        "--moved  the destination has it: the copy here is retired (renamed to\n"
                        "         <private>.migrated, never deleted, even if the migration asked\n"
                        "         for --remove) and the container leaves this node.\n"
                        "--stays  it never committed there: the container is unlocked here and\n"
                        "         started if it ran. Only when the destination's disks are gone\n"
                        "         or you checked it has no such container: a destination that\n"
                        "         committed and comes back would run it too.\n"
                        "\n"
                        "Without --yes the client asks; when standard input is not a terminal\n"
                        "it refuses (exit status 2). Error 406: no migration of CT is in doubt.\n"
                        "\n"
                        "Examples:\n"
                        "  ctagent -H node1 settle web --moved\n"
                        "  ctagent settle --yes --stays 101\n",
                .min_args = 1,
                .max_args = 1,
                .opts = settle_opts,
                .check = settle_check,
                .run = cmd_settle,
        },
        { .name = NULL },
};
