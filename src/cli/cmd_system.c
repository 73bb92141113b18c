/* Commands for the system operator: ping, version, eid, realms, gen-pass,
 * and raw (send packets from a file); and keygen, the client's certificate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/conn.h"
#include "cli/known_nodes.h"
#include "cli/progress.h"
#include "cta_config.h"
#include "net/tls.h"
#include "proto/packet.h"
#include "util/base64.h"
#include "util/util.h"

#define RAW_FILE_MAX ((size_t)64 << 20)

/* Send system/<call/> and wait for the reply (printed as XML under --xml). */
static int system_call(struct cli_ctx *ctx, const char *call, struct cta_resp **ret)
{
        struct cli_req r;
        int rc;

        cli_req_begin(&r, ctx->conn, NULL, "system", false);
        cli_req_empty(&r, call);
        cli_req_end(&r);
        rc = cli_conn_call(ctx, ctx->conn, &r, 0, NULL, NULL, ret);
        cli_req_done(&r);
        return rc;
}

/* The trimmed text of result element `name` in the reply's operator element. */
static int result_text(struct cli_ctx *ctx, const struct cta_resp *resp, const char *name,
                       const char **ret)
{
        const char *t = resp->op_node ? cta_xnode_ctext(resp->op_node, name) : NULL;

        if (!t)
                return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                                "the reply from %s has no <%s>", ctx->conn->key, name);
        *ret = t;
        return 0;
}

static int cmd_ping(struct cli_ctx *ctx)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        uint64_t t0 = cta_now_ms();
        int r = system_call(ctx, "ping", &resp);

        if (r < 0)
                return r;
        if (!ctx->o->xml)
                printf("ok: %s answered in %llu ms\n", ctx->conn->key,
                       (unsigned long long)(cta_now_ms() - t0));
        return 0;
}

static int print_result(struct cli_ctx *ctx, const char *call, const char *elem)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        const char *t = NULL;
        int r = system_call(ctx, call, &resp);

        if (r < 0)
                return r;
        if (ctx->o->xml)
                return 0;
        r = result_text(ctx, resp, elem, &t);
        if (r < 0)
                return r;
        _cleanup_free_ char *c = cli_clean_text(t);
        printf("%s\n", c);
        return 0;
}

static int cmd_version(struct cli_ctx *ctx)
{
        return print_result(ctx, "get_version", "version");
}

static int cmd_eid(struct cli_ctx *ctx)
{
        return print_result(ctx, "get_eid", "eid");
}

static int cmd_realms(struct cli_ctx *ctx)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        const struct cta_xnode *realms, *rl;
        int r = system_call(ctx, "get_realm", &resp);

        if (r < 0)
                return r;
        if (ctx->o->xml)
                return 0;
        realms = resp->op_node ? cta_xnode_child(resp->op_node, "realms") : NULL;
        if (!realms)
                return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                                "the reply from %s has no <realms>", ctx->conn->key);
        printf("%-36s  %-5s  %s\n", "ID", "TYPE", "NAME");
        for (rl = cta_xnode_child(realms, "realm"); rl; rl = cta_xnode_next_named(rl)) {
                const char *id = cta_xnode_ctext(rl, "id");
                const char *type = cta_xnode_ctext(rl, "type");
                const char *name = cta_xnode_ctext(rl, "name");
                _cleanup_free_ char *cid = cli_clean_text(id ? id : "-");
                _cleanup_free_ char *ctype = cli_clean_text(type ? type : "-");
                _cleanup_free_ char *cname = cli_clean_text(name ? name : "");
                printf("%-36s  %-5s  %s%s\n", cid, ctype, cname,
                       cta_xnode_child(rl, "builtin") ? " (builtin)" : "");
        }
        return 0;
}

/* Decode a base64 text field of a reply into out[cap]; "" if absent. */
static int b64_field(struct cli_ctx *ctx, const struct cta_xnode *n, const char *name, char *out,
                     size_t cap)
{
        const char *t = cta_xnode_ctext(n, name);

        out[0] = '\0';
        if (!t)
                return 0;
        if (cta_b64_decode_str(t, strlen(t), out, cap) < 0)
                return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_BAD_BASE64,
                                "the <%s> in the reply from %s is not valid base64", name,
                                ctx->conn->key);
        return 0;
}

static int cmd_gen_pass(struct cli_ctx *ctx)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        const struct cta_xnode *pass;
        char name[CTA_NAME_MAX + 1], domain[CTA_NAME_MAX + 1];
        const char *realm;
        int r = system_call(ctx, "generate_pass", &resp);

        if (r < 0)
                return r;
        if (ctx->o->xml)
                return 0;
        pass = resp->op_node ? cta_xnode_child(resp->op_node, "pass") : NULL;
        if (!pass)
                return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                                "the reply from %s has no <pass>", ctx->conn->key);
        r = b64_field(ctx, pass, "name", name, sizeof(name));
        if (r >= 0)
                r = b64_field(ctx, pass, "domain", domain, sizeof(domain));
        if (r < 0)
                return r;
        realm = cta_xnode_ctext(pass, "realm");
        _cleanup_free_ char *cname = cli_clean_text(name);
        _cleanup_free_ char *crealm = cli_clean_text(realm ? realm : CLI_ONE_TIME_REALM);
        _cleanup_free_ char *cdomain = cli_clean_text(domain);
        printf("name:   %s\n", cname);
        printf("realm:  %s\n", crealm);
        if (*cdomain)
                printf("domain: %s\n", cdomain);
        printf("This pass is good for one login, within the node's one_time_pass_ttl\n"
               "(10 minutes unless configured otherwise), for example:\n"
               "  ctagent -H %s --one-time %s ping\n",
               ctx->o->host_arg ? ctx->o->host_arg : "localhost", cname);
        return 0;
}

/* ---- raw ---- */

struct raw_expect {
        char *id; /* NULL: the packet had none (or did not parse) */
        bool answered;
};

struct raw_state {
        struct raw_expect *exp;
        size_t nexp, done;
        bool bar_on;
        struct cli_progress bar;
};

static bool blank(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
                        return false;
        return true;
}

/* Note what reply each packet waits for. */
static void raw_expect_packet(struct raw_state *st, const char *p, size_t len)
{
        _cleanup_(cta_req_freep) struct cta_req *req = NULL;
        struct cta_error *e = NULL;

        if (blank(p, len))
                return; /* the node ignores empty frames */
        if (cta_req_parse(p, len, &req, &e) < 0)
                cta_error_free(e);
        st->exp = cta_xrealloc(st->exp, (st->nexp + 1) * sizeof(*st->exp));
        st->exp[st->nexp].id = req && req->id ? cta_xstrdup(req->id) : NULL;
        st->exp[st->nexp].answered = false;
        st->nexp++;
}

/* A final reply arrived: tick off the request it answers. Replies come in
 * request order, so it is the first open request with the same id; a reply
 * without an id answers the first open request without one (or, failing
 * that, the first open request: its id may not have been readable). Returns
 * false if it answers nothing we sent (an event, a stray reply). */
static bool raw_match(struct raw_state *st, const char *id)
{
        size_t i, any = SIZE_MAX;

        for (i = 0; i < st->nexp; i++) {
                const struct raw_expect *x = &st->exp[i];
                if (x->answered)
                        continue;
                if (any == SIZE_MAX)
                        any = i;
                if (id ? streq_ptr(x->id, id) : !x->id)
                        break;
        }
        if (i == st->nexp) {
                if (id || any == SIZE_MAX)
                        return false;
                i = any;
        }
        st->exp[i].answered = true;
        st->done++;
        return true;
}

static void raw_show(struct raw_state *st, const char *frame, size_t len)
{
        if (st->bar_on)
                cli_progress_clear(&st->bar);
        cli_print_frame(stdout, frame, len);
}

static int read_input(struct cli_ctx *ctx, const char *path, char **ret, size_t *ret_len)
{
        struct cta_error *e = NULL;

        if (streq(path, "-")) {
                struct cta_buf b = CTA_BUF_INIT(RAW_FILE_MAX);
                char buf[65536];
                size_t n;

                while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
                        if (cta_buf_append(&b, buf, n) < 0) {
                                cta_buf_done(&b);
                                return cli_fail(ctx, CLI_FAIL_USAGE, CTA_E_TOO_LARGE,
                                                "standard input is larger than %zu bytes",
                                                RAW_FILE_MAX);
                        }
                if (ferror(stdin)) {
                        cta_buf_done(&b);
                        return cli_fail(ctx, CLI_FAIL_USAGE, CTA_E_IO,
                                        "cannot read standard input");
                }
                *ret = cta_buf_steal(&b, ret_len);
                return 0;
        }
        if (cta_read_file(path, RAW_FILE_MAX, ret, ret_len, &e) < 0)
                return cli_fail_err(ctx, CLI_FAIL_USAGE, e);
        return 0;
}

/* Before connecting: FILE exists, can be read and is not too large. It is
 * not read here: it may be a pipe, which run() must get whole. */
static int raw_check(struct cli_ctx *ctx, struct cta_error **err)
{
        const char *path = ctx->o->args[0];
        struct stat st;

        if (streq(path, "-"))
                return 0;
        if (stat(path, &st) < 0 || access(path, R_OK) < 0)
                return cta_error_errno(err, CTA_E_INVALID, "cannot read '%s'", path);
        if (S_ISDIR(st.st_mode))
                return cta_error_set(err, CTA_E_INVALID, 0, "'%s' is a directory", path);
        if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > RAW_FILE_MAX)
                return cta_error_set(err, CTA_E_INVALID, 0, "'%s' is larger than %zu bytes", path,
                                     RAW_FILE_MAX);
        return 0;
}

static int cmd_raw(struct cli_ctx *ctx)
{
        _cleanup_free_ char *data = NULL;
        struct raw_state st = { 0 };
        size_t len = 0;
        int r;

        r = read_input(ctx, ctx->o->args[0], &data, &len);
        if (r < 0)
                return r;

        /* Split as the node will: on NUL; a file without NULs is one packet. */
        if (!memchr(data, '\0', len)) {
                raw_expect_packet(&st, data, len);
                data = cta_xrealloc(data, len + 1);
                data[len++] = '\0';
        } else {
                size_t start = 0;
                for (size_t i = 0; i < len; i++)
                        if (data[i] == '\0') {
                                raw_expect_packet(&st, data + start, i - start);
                                start = i + 1;
                        }
                /* Text after the last NUL still is a packet: terminate it. */
                if (start < len && !blank(data + start, len - start)) {
                        raw_expect_packet(&st, data + start, len - start);
                        data = cta_xrealloc(data, len + 1);
                        data[len++] = '\0';
                }
        }
        if (st.nexp == 0) {
                r = cli_fail(ctx, CLI_FAIL_USAGE, CTA_E_INVALID, "'%s' holds no packet",
                             ctx->o->args[0]);
                goto out;
        }

        st.bar_on = ctx->stdout_tty && !ctx->o->xml;
        if (st.bar_on)
                cli_progress_init(&st.bar, stdout, true, 0);

        r = cli_conn_send_raw(ctx, ctx->conn, data, len);
        while (r >= 0 && st.done < st.nexp) {
                _cleanup_free_ char *frame = NULL;
                _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
                size_t flen = 0;

                r = cli_conn_recv(ctx, ctx->conn, &frame, &flen, &resp);
                if (r < 0)
                        break;
                if (resp && (resp->is_progress || (resp->type & 1))) {
                        if (st.bar_on) {
                                cli_progress_show(&st.bar, resp);
                        } else {
                                cli_print_frame(stdout, frame, flen);
                        }
                        continue;
                }
                raw_show(&st, frame, flen);
                if (resp && resp->is_event)
                        continue;
                if (!raw_match(&st, resp ? resp->id : NULL))
                        continue;
                if (resp && resp->has_error) {
                        _cleanup_free_ char *m = cli_clean_text(resp->error_message);
                        /* Report the first error; keep reading the rest. */
                        (void)cli_fail(ctx, CLI_FAIL_REMOTE,
                                       resp->error_code > 0 ? resp->error_code : CTA_E_INTERNAL,
                                       "%s", *m ? m : "(no message)");
                }
        }
        if (st.bar_on)
                cli_progress_finish(&st.bar);
        if (r >= 0 && ctx->err)
                r = -cta_error_code(ctx->err);
out:
        for (size_t i = 0; i < st.nexp; i++)
                free(st.exp[i].id);
        free(st.exp);
        return r;
}

/* ---- keygen ---- */

static int keygen_check(struct cli_ctx *ctx, struct cta_error **err)
{
        const char *n = cli_opt(ctx->o, "name");
        char cert[4096], key[4096];

        if (n && (!*n || strlen(n) > 64))
                return cta_error_set(err, CTA_E_INVALID, 0, "--name: 1 to 64 characters");
        return cli_client_cert_paths(ctx->o, cert, key, err) < 0 ? -CTA_E_INVALID : 0;
}

static int cmd_keygen(struct cli_ctx *ctx)
{
        const struct cli_opts *o = ctx->o;
        char cert[4096], key[4096], fp[CTA_TLS_FINGERPRINT_MAX];
        struct cta_error *e = NULL;
        bool exists;

        if (cli_client_cert_paths(o, cert, key, &e) < 0)
                return cli_fail_err(ctx, CLI_FAIL_USAGE, e);
        exists = access(cert, F_OK) == 0 || access(key, F_OK) == 0;
        if (exists && !cli_opt(o, "force")) {
                if (cta_tls_fingerprint_pem_file(cert, fp, &e) < 0)
                        return cli_fail_err(ctx, CLI_FAIL_LOCAL, e);
                fprintf(stderr, "ctagent: %s exists (--force makes a new pair); its line:\n",
                        cert);
        } else {
                char host[256] = "localhost", cn[300];

                if (cli_make_parent(cert, &e) < 0 || cli_make_parent(key, &e) < 0)
                        return cli_fail_err(ctx, CLI_FAIL_LOCAL, e);
                (void)gethostname(host, sizeof(host) - 1);
                snprintf(cn, sizeof(cn), "%.64s", cli_opt(o, "name") ? cli_opt(o, "name") : "");
                if (!*cn)
                        snprintf(cn, sizeof(cn), "%.30s@%.33s", o->user, host);
                if (cta_tls_client_cert_generate(cert, key, cn, &e) < 0 ||
                    cta_tls_fingerprint_pem_file(cert, fp, &e) < 0)
                        return cli_fail_err(ctx, CLI_FAIL_LOCAL, e);
                fprintf(stderr, "ctagent: wrote %s and its key %s (mode 0600)\n", cert, key);
        }
        printf("%s %s\n", fp, o->user);
        fprintf(stderr,
                "ctagent: a node lets this certificate log in as %s once the line above is in "
                "its authorized_clients file (default " CTA_DEFAULT_STATE_DIR
                "/authorized_clients, owned by root, mode 0600)\n",
                o->user);
        return 0;
}

static const struct cli_optdef keygen_opts[] = {
        { "force", 0, NULL, "replace an existing certificate and key" },
        { "name", 0, "CN", "the certificate's common name (default USER@HOST)" },
        { NULL, 0, NULL, NULL },
};

const struct cli_command cli_cmds_system[] = {
        {
                .name = "ping",
                .args = "",
                .summary = "check that the node answers (system/ping)",
                .help = "Sends system/ping and prints how long the answer took. With --no-login\n"
                        "it works without credentials.\n",
                .min_args = 0,
                .max_args = 0,
                .run = cmd_ping,
        },
        {
                .name = "version",
                .args = "",
                .summary = "print the node's agent version (system/get_version)",
                .help = "Works without credentials with --no-login.\n",
                .min_args = 0,
                .max_args = 0,
                .run = cmd_version,
        },
        {
                .name = "eid",
                .args = "",
                .summary = "print the node's environment id (system/get_eid)",
                .min_args = 0,
                .max_args = 0,
                .run = cmd_eid,
        },
        {
                .name = "realms",
                .args = "",
                .summary = "list the login realms: id, type, name (system/get_realm)",
                .help = "Never logs in: realms are what a client asks before it logs in.\n",
                .min_args = 0,
                .max_args = 0,
                .flags = CLI_CMD_NO_LOGIN,
                .run = cmd_realms,
        },
        {
                .name = "gen-pass",
                .args = "",
                .summary = "make a one-time pass for this node (system/generate_pass)",
                .help = "Prints the pass name and its realm. The pass logs in once, without a\n"
                        "password, with 'ctagent --one-time NAME', and expires after the node's\n"
                        "one_time_pass_ttl. Needs an administrator login.\n",
                .min_args = 0,
                .max_args = 0,
                .run = cmd_gen_pass,
        },
        {
                .name = "keygen",
                .args = "",
                .summary = "make a client certificate for logins without a password",
                .help = "Writes a new self-signed client certificate (EC P-256, clientAuth,\n"
                        "valid 10 years) and its key (mode 0600) to --cert/--key, by default\n"
                        "$XDG_CONFIG_HOME/ctagent/client.crt and client.key, and prints the line\n"
                        "'FINGERPRINT USER' (USER from -u, default $USER) for the nodes'\n"
                        "authorized_clients files. If the certificate exists, it prints its line\n"
                        "and changes nothing (--force replaces it).\n"
                        "\n"
                        "Once a node lists the line, a client presenting the certificate logs in\n"
                        "there as USER without a password, whenever no password is given\n"
                        "(--password-file, $CTAGENT_PASSWORD). The node still refuses expired or\n"
                        "locked accounts and grants rights as for a password login. 'migrate'\n"
                        "then logs in to the destination with the certificate too, and sends\n"
                        "the source a one-time pass from there. Anyone with the key file can log\n"
                        "in as USER: keep it like an ssh key; remove the line to revoke it.\n"
                        "\n"
                        "Example:\n"
                        "  ctagent -u admin keygen | ssh root@node1 "
                        "'cat >> /var/lib/ctagent/authorized_clients'\n",
                .min_args = 0,
                .max_args = 0,
                .flags = CLI_CMD_NO_CONNECT,
                .opts = keygen_opts,
                .check = keygen_check,
                .run = cmd_keygen,
        },
        {
                .name = "raw",
                .args = "FILE|-",
                .summary = "send the packets in FILE (or stdin) and print every reply",
                .help = "Packets are separated by NUL bytes; a file without NULs is one packet.\n"
                        "They are sent as written, after the login (none with --no-login; the\n"
                        "greeting is always read first). Every packet received is printed,\n"
                        "progress packets included, until each request has its final reply: the\n"
                        "reply with its id that is not a progress packet (for a packet without an\n"
                        "id, the next such reply). On a terminal progress is shown as a bar\n"
                        "unless --xml is given. The exit status is 1 if any reply is an error.\n",
                .min_args = 1,
                .max_args = 1,
                .check = raw_check,
                .run = cmd_raw,
        },
        { .name = NULL },
};
