/* Command line parsing, help texts and failure bookkeeping of the client. */
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/conn.h"
#include "cli/known_nodes.h"
#include "util/util.h"

enum {
        G_HOST,
        G_PLAIN,
        G_FINGERPRINT,
        G_USER,
        G_PASSWORD_FILE,
        G_REALM,
        G_ONE_TIME,
        G_NO_LOGIN,
        G_CERT,
        G_KEY,
        G_NO_CERT,
        G_XML,
        G_TIMEOUT,
        G_VERBOSE,
        G_HELP,
        G_VERSION,
};

/* Indexed by the G_* values. */
static const struct cli_optdef global_opts[] = {
        [G_HOST] = { "host", 'H', "HOST[:PORT]",
                     "node (default localhost:4434; :4433 if --plain)" },
        [G_PLAIN] = { "plain", 0, NULL, "plain TCP instead of TLS (unencrypted)" },
        [G_FINGERPRINT] = { "fingerprint", 0, "SHA256:..",
                            "require this certificate; pin it in known_nodes" },
        [G_USER] = { "user", 'u', "USER", "log in as USER (default: $USER)" },
        [G_PASSWORD_FILE] = { "password-file", 0, "FILE",
                              "password file (else $CTAGENT_PASSWORD, a prompt)" },
        [G_REALM] = { "realm", 0, "UUID", "login realm (default: System, 0000..0000)" },
        [G_ONE_TIME] = { "one-time", 0, "NAME",
                         "log in with a one-time pass from gen-pass" },
        [G_NO_LOGIN] = { "no-login", 0, NULL,
                         "do not log in (enough for ping, version, raw)" },
        [G_CERT] = { "cert", 0, "FILE",
                     "client certificate: log in without a password (keygen)" },
        [G_KEY] = { "key", 0, "FILE", "its key (default: FILE with .key for .crt)" },
        [G_NO_CERT] = { "no-cert", 0, NULL, "present no client certificate" },
        [G_XML] = { "xml", 0, NULL, "print the reply packets' XML instead" },
        [G_TIMEOUT] = { "timeout", 0, "SEC",
                        "max wait for a packet (default 60; 0 = none)" },
        [G_VERBOSE] = { "verbose", 'v', NULL,
                        "say what happens (-vv: show the packets too)" },
        [G_HELP] = { "help", 'h', NULL, "show help (for a command: help COMMAND)" },
        [G_VERSION] = { "version", 'V', NULL, "show the client version" },
        { NULL, 0, NULL, NULL },
};

const struct cli_command *cli_find_command(const struct cli_command *const *groups,
                                           const char *name)
{
        for (; *groups; groups++)
                for (const struct cli_command *c = *groups; c->name; c++)
                        if (streq(c->name, name))
                                return c;
        return NULL;
}

const char *cli_opt(const struct cli_opts *o, const char *name)
{
        if (!o->cmd || !o->cmd->opts)
                return NULL;
        for (int i = 0; o->cmd->opts[i].name && i < CLI_MAX_CMD_OPTS; i++)
                if (streq(o->cmd->opts[i].name, name))
                        return o->cmd_vals[i];
        return NULL;
}

size_t cli_opt_all(const struct cli_opts *o, const char *name, const char *const **ret)
{
        *ret = NULL;
        if (!o->cmd || !o->cmd->opts)
                return 0;
        for (int i = 0; o->cmd->opts[i].name && i < CLI_MAX_CMD_OPTS; i++) {
                if (!streq(o->cmd->opts[i].name, name))
                        continue;
                if (o->cmd->opts[i].flags & CLI_OPT_REPEAT) {
                        *ret = o->cmd_lists[i];
                        return o->cmd_nvals[i];
                }
                *ret = &o->cmd_vals[i];
                return o->cmd_vals[i] ? 1 : 0;
        }
        return 0;
}

int cli_check(struct cli_ctx *ctx)
{
        const struct cli_command *c = ctx->o->cmd;
        struct cta_error *e = NULL;

        if (!c || !c->check || c->check(ctx, &e) >= 0) {
                cta_error_free(e);
                return 0;
        }
        if (!e)
                cta_error_set(&e, CTA_E_INVALID, 0, "bad command line for '%s'", c->name);
        return cli_fail_err(ctx, CLI_FAIL_USAGE, e);
}

void cli_opts_done(struct cli_opts *o)
{
        free(o->args);
        o->args = NULL;
        o->nargs = 0;
        for (size_t i = 0; i < CLI_MAX_CMD_OPTS; i++) {
                free(o->cmd_lists[i]);
                o->cmd_lists[i] = NULL;
                o->cmd_nvals[i] = 0;
        }
}

/* Find an option by long name (len bytes of name) or by short letter. */
static int find_long(const struct cli_optdef *defs, const char *name, size_t len)
{
        if (!defs)
                return -1;
        for (int i = 0; defs[i].name; i++)
                if (strlen(defs[i].name) == len && strncmp(defs[i].name, name, len) == 0)
                        return i;
        return -1;
}

static int find_short(const struct cli_optdef *defs, char c)
{
        if (!defs)
                return -1;
        for (int i = 0; defs[i].name; i++)
                if (defs[i].short_name && defs[i].short_name == c)
                        return i;
        return -1;
}

static int set_global(struct cli_opts *o, int id, const char *val, struct cta_error **err)
{
        uint64_t n;

        switch (id) {
        case G_HOST:
                o->host_arg = val;
                break;
        case G_PLAIN:
                o->plain = true;
                break;
        case G_FINGERPRINT:
                o->fingerprint = val;
                break;
        case G_USER:
                o->user = val;
                break;
        case G_PASSWORD_FILE:
                o->password_file = val;
                break;
        case G_REALM:
                o->realm = val;
                break;
        case G_ONE_TIME:
                o->one_time = val;
                break;
        case G_NO_LOGIN:
                o->no_login = true;
                break;
        case G_CERT:
                o->cert_arg = val;
                break;
        case G_KEY:
                o->key_arg = val;
                break;
        case G_NO_CERT:
                o->no_cert = true;
                break;
        case G_XML:
                o->xml = true;
                break;
        case G_TIMEOUT:
                if (cta_parse_u64(val, 7 * 86400, &n) < 0)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--timeout wants whole seconds (0 = never), not '%s'",
                                             val);
                o->timeout_ms = (int)(n * 1000);
                break;
        case G_VERBOSE:
                o->verbose++;
                break;
        case G_HELP:
                o->help = true;
                break;
        case G_VERSION:
                o->version = true;
                break;
        }
        return 0;
}

/* An option was found: fetch its value if it takes one and store it.
 * inline_val: text after '=' or after a short letter; NULL if none. */
static int take_option(struct cli_opts *o, bool global, int id, const char *shown,
                       const char *inline_val, int argc, char **argv, int *i,
                       struct cta_error **err)
{
        const struct cli_optdef *d = global ? &global_opts[id] : &o->cmd->opts[id];
        const char *val = "";

        if (d->arg) {
                if (inline_val) {
                        val = inline_val;
                } else if (*i + 1 < argc) {
                        val = argv[++*i];
                } else {
                        return cta_error_set(err, CTA_E_INVALID, 0, "option '%s' needs a value (%s)",
                                             shown, d->arg);
                }
        } else if (inline_val) {
                return cta_error_set(err, CTA_E_INVALID, 0, "option '%s' takes no value", shown);
        }
        if (global)
                return set_global(o, id, val, err);
        if (d->flags & CLI_OPT_REPEAT) {
                o->cmd_lists[id] = cta_xrealloc(o->cmd_lists[id],
                                                (o->cmd_nvals[id] + 1) * sizeof(*o->cmd_lists[id]));
                o->cmd_lists[id][o->cmd_nvals[id]++] = val;
        }
        o->cmd_vals[id] = val;
        return 0;
}

static int unknown_option(const struct cli_opts *o, const char *shown, struct cta_error **err)
{
        if (o->cmd)
                return cta_error_set(err, CTA_E_INVALID, 0, "unknown option '%s' for '%s'", shown,
                                     o->cmd->name);
        return cta_error_set(err, CTA_E_INVALID, 0, "unknown option '%s'", shown);
}

static int parse_long(struct cli_opts *o, const char *a, int argc, char **argv, int *i,
                      struct cta_error **err)
{
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        _cleanup_free_ char *shown = cta_xstrndup(a, len + 2);
        int id;

        id = find_long(global_opts, name, len);
        if (id >= 0)
                return take_option(o, true, id, shown, eq ? eq + 1 : NULL, argc, argv, i, err);
        id = o->cmd ? find_long(o->cmd->opts, name, len) : -1;
        if (id >= 0)
                return take_option(o, false, id, shown, eq ? eq + 1 : NULL, argc, argv, i, err);
        return unknown_option(o, shown, err);
}

static int parse_short(struct cli_opts *o, const char *a, int argc, char **argv, int *i,
                       struct cta_error **err)
{
        for (size_t j = 1; a[j]; j++) {
                char shown[3] = { '-', a[j], '\0' };
                const char *rest = a[j + 1] ? a + j + 1 : NULL;
                bool global = true;
                int id = find_short(global_opts, a[j]), r;

                if (id < 0 && o->cmd) {
                        id = find_short(o->cmd->opts, a[j]);
                        global = false;
                }
                if (id < 0)
                        return unknown_option(o, shown, err);
                /* "-Hhost": the rest of the word is the value; "-vv": more flags. */
                if ((global ? global_opts[id] : o->cmd->opts[id]).arg)
                        return take_option(o, global, id, shown, rest, argc, argv, i, err);
                r = take_option(o, global, id, shown, NULL, argc, argv, i, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_command(struct cli_opts *o, struct cta_error **err)
{
        const struct cli_command *c = o->cmd;

        if (o->nargs < c->min_args)
                return cta_error_set(err, CTA_E_INVALID, 0, "'%s' needs %s: ctagent %s %s",
                                     c->name, c->min_args == 1 ? "an argument" : "more arguments",
                                     c->name, c->args);
        if (c->max_args >= 0 && o->nargs > c->max_args)
                return cta_error_set(err, CTA_E_INVALID, 0, "too many arguments for '%s': ctagent %s%s%s",
                                     c->name, c->name, *c->args ? " " : "", c->args);
        return 0;
}

bool cli_password_given(const struct cli_opts *o)
{
        return o->password_file || getenv("CTAGENT_PASSWORD");
}

int cli_client_cert_paths(const struct cli_opts *o, char cert[4096], char key[4096],
                          struct cta_error **err)
{
        _cleanup_free_ char *dc = NULL, *dk = NULL;
        size_t n;

        if (o->cert_arg) {
                if (!*o->cert_arg)
                        return cta_error_set(err, CTA_E_INVALID, 0, "--cert needs a file");
                snprintf(cert, 4096, "%s", o->cert_arg);
                n = strlen(o->cert_arg);
                if (o->key_arg)
                        snprintf(key, 4096, "%s", o->key_arg);
                else if (n > 4 && streq(o->cert_arg + n - 4, ".crt"))
                        snprintf(key, 4096, "%.*s.key", (int)(n - 4), o->cert_arg);
                else
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--cert '%s' does not end in .crt: name its key "
                                             "with --key",
                                             o->cert_arg);
                return 0;
        }
        if (o->key_arg)
                return cta_error_set(err, CTA_E_INVALID, 0, "--key needs --cert");
        /* beside known_nodes */
        dc = cli_config_file("client.crt", err);
        dk = dc ? cli_config_file("client.key", err) : NULL;
        if (!dk)
                return -CTA_E_CONFIG;
        snprintf(cert, 4096, "%s", dc);
        snprintf(key, 4096, "%s", dk);
        return 0;
}

/* Which certificate to present: --cert (its files must be readable), else the
 * default pair if both exist, else none. */
static int finish_cert(struct cli_opts *o, struct cta_error **err)
{
        if (o->no_cert) {
                if (o->cert_arg || o->key_arg)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--no-cert contradicts --cert/--key");
                return 0;
        }
        if (o->plain && (o->cert_arg || o->key_arg))
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "--cert needs TLS; it makes no sense with --plain");
        /* keygen writes them: they need not exist yet. */
        if (o->cmd && (o->cmd->flags & CLI_CMD_NO_CONNECT))
                return 0;
        if (cli_client_cert_paths(o, o->cert_buf, o->key_buf, err) < 0) {
                if (o->cert_arg || o->key_arg)
                        return -CTA_E_INVALID;
                cta_error_free(*err);
                *err = NULL;
                return 0; /* no home, no default certificate */
        }
        if (o->cert_arg) {
                if (access(o->cert_buf, R_OK) < 0)
                        return cta_error_errno(err, CTA_E_INVALID, "--cert '%s'", o->cert_buf);
                if (access(o->key_buf, R_OK) < 0)
                        return cta_error_errno(err, CTA_E_INVALID, "client key '%s'",
                                               o->key_buf);
        } else if (o->plain || access(o->cert_buf, R_OK) < 0 || access(o->key_buf, R_OK) < 0) {
                return 0;
        }
        o->cert_path = o->cert_buf;
        o->key_path = o->key_buf;
        return 0;
}

/* Defaults and cross-option checks once everything is read. */
static int finish_opts(struct cli_opts *o, struct cta_error **err)
{
        uint16_t dflt = o->plain ? CLI_DEFAULT_PLAIN_PORT : CLI_DEFAULT_TLS_PORT;

        if (cta_split_hostport(o->host_arg ? o->host_arg : "localhost", dflt, o->host, &o->port) <
                    0 ||
            o->port == 0)
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "bad --host '%s': want HOST, HOST:PORT or [IPv6]:PORT",
                                     o->host_arg);
        if (o->fingerprint) {
                if (o->plain)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--fingerprint needs TLS; it makes no sense with --plain");
                if (!cli_kn_fingerprint_valid(o->fingerprint))
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "bad --fingerprint '%s': want SHA256: and 32 "
                                             "colon-separated hex bytes",
                                             o->fingerprint);
        }
        if (o->one_time) {
                if (o->realm && !streq(o->realm, CLI_ONE_TIME_REALM))
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--one-time logs in to realm %s; drop --realm",
                                             CLI_ONE_TIME_REALM);
                if (o->password_file)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--one-time needs no password; drop --password-file");
                if (!*o->one_time)
                        return cta_error_set(err, CTA_E_INVALID, 0, "--one-time needs a name");
                o->realm = CLI_ONE_TIME_REALM;
        }
        if (!o->realm)
                o->realm = CLI_SYSTEM_REALM;
        if (!cta_uuid_valid(o->realm))
                return cta_error_set(err, CTA_E_INVALID, 0, "bad --realm '%s': want a UUID",
                                     o->realm);
        if (o->user && !*o->user)
                return cta_error_set(err, CTA_E_INVALID, 0, "--user needs a name");
        if (!o->user) {
                const char *u = getenv("USER");
                if (!u || !*u) {
                        struct passwd *pw = getpwuid(geteuid());
                        u = pw ? pw->pw_name : "root";
                }
                snprintf(o->user_buf, sizeof(o->user_buf), "%s", u);
                o->user = o->user_buf;
        }
        return finish_cert(o, err);
}

int cli_parse_args(int argc, char **argv, const struct cli_command *const *groups,
                   struct cli_opts *o, struct cta_error **err)
{
        bool opts_done = false, help_cmd = false;
        int r;

        memset(o, 0, sizeof(*o));
        o->timeout_ms = CLI_DEFAULT_TIMEOUT_MS;
        o->args = cta_xcalloc((size_t)(argc > 0 ? argc : 1), sizeof(char *));

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (!opts_done && streq(a, "--")) {
                        opts_done = true;
                        continue;
                }
                if (!opts_done && a[0] == '-' && a[1] == '-') {
                        r = parse_long(o, a, argc, argv, &i, err);
                } else if (!opts_done && a[0] == '-' && a[1]) {
                        r = parse_short(o, a, argc, argv, &i, err);
                } else if (!o->cmd && !help_cmd && streq(a, "help")) {
                        help_cmd = true;
                        o->help = true;
                        r = 0;
                } else if (!o->cmd) {
                        o->cmd = cli_find_command(groups, a);
                        if (!o->cmd)
                                r = cta_error_set(err, CTA_E_INVALID, 0, "unknown command '%s'",
                                                  a);
                        else
                                r = 0;
                        if (o->cmd && o->cmd->opts) {
                                int n = 0;
                                while (o->cmd->opts[n].name)
                                        n++;
                                if (n > CLI_MAX_CMD_OPTS)
                                        r = cta_error_set(err, CTA_E_INTERNAL, 0,
                                                          "command '%s' has too many options",
                                                          a);
                        }
                } else if (help_cmd) {
                        r = cta_error_set(err, CTA_E_INVALID, 0,
                                          "'help' takes one command name, not '%s'", a);
                } else {
                        o->args[o->nargs++] = argv[i];
                        r = 0;
                }
                if (r < 0)
                        return r;
        }
        if (o->help || o->version)
                return 0;
        if (!o->cmd)
                return cta_error_set(err, CTA_E_INVALID, 0, "no command given");
        r = check_command(o, err);
        if (r < 0)
                return r;
        return finish_opts(o, err);
}

static void print_opts(FILE *f, const struct cli_optdef *defs)
{
        for (int i = 0; defs && defs[i].name; i++) {
                char left[64];
                if (defs[i].short_name)
                        snprintf(left, sizeof(left), "-%c, --%s%s%s", defs[i].short_name,
                                 defs[i].name, defs[i].arg ? " " : "",
                                 defs[i].arg ? defs[i].arg : "");
                else
                        snprintf(left, sizeof(left), "    --%s%s%s", defs[i].name,
                                 defs[i].arg ? " " : "", defs[i].arg ? defs[i].arg : "");
                if (strlen(left) > 28)
                        fprintf(f, "  %s\n  %-28s  %s\n", left, "", defs[i].help);
                else
                        fprintf(f, "  %-28s  %s\n", left, defs[i].help);
        }
}

void cli_print_usage(FILE *f, const struct cli_command *const *groups)
{
        fprintf(f, "Usage: ctagent [OPTIONS] COMMAND [ARGS...]\n\n"
                   "Talk to a ctagentd node over its Agent XML API (TLS port 4434).\n\n"
                   "Commands:\n");
        for (; *groups; groups++)
                for (const struct cli_command *c = *groups; c->name; c++) {
                        char left[64];
                        snprintf(left, sizeof(left), "%s%s%s", c->name, *c->args ? " " : "",
                                 c->args);
                        fprintf(f, "  %-18s  %s\n", left, c->summary);
                }
        fprintf(f, "  %-18s  %s\n", "help [COMMAND]", "show help about a command");
        fprintf(f, "\nOptions (before or after the command):\n");
        print_opts(f, global_opts);
        fprintf(f, "\nWith a client certificate (made by 'ctagent keygen', found in\n"
                   "~/.config/ctagent/client.crt or given with --cert) and no password given,\n"
                   "the client logs in with the certificate; a node accepts it once its\n"
                   "fingerprint is listed for the user in the node's authorized_clients\n"
                   "(refused, the client asks for the password if it has a terminal).\n");
        fprintf(f, "\nThe first TLS connection to a node pins its certificate fingerprint in\n"
                   "$XDG_CONFIG_HOME/ctagent/known_nodes (~/.config/ctagent/known_nodes).\n"
                   "Exit status: 0 ok, 1 the node returned an error, 2 usage error,\n"
                   "3 connection/TLS/fingerprint problem, 4 login failed.\n"
                   "Run 'ctagent help COMMAND' for more about a command.\n");
}

void cli_print_command_help(FILE *f, const struct cli_command *cmd)
{
        fprintf(f, "Usage: ctagent [OPTIONS] %s%s%s\n\n%s\n", cmd->name, *cmd->args ? " " : "",
                cmd->args, cmd->summary);
        if (cmd->help && *cmd->help)
                fprintf(f, "\n%s", cmd->help);
        if (cmd->opts && cmd->opts[0].name) {
                fprintf(f, "\nOptions of %s:\n", cmd->name);
                print_opts(f, cmd->opts);
        }
        fprintf(f, "\nGlobal options: see 'ctagent --help'.\n");
}

int cli_confirmable(const struct cli_opts *o, const char *doing, struct cta_error **err)
{
        if (cli_opt(o, "yes") || isatty(STDIN_FILENO))
                return 0;
        return cta_error_set(err, CTA_E_INVALID, 0,
                             "not %s: standard input is not a terminal, so nobody can confirm; "
                             "add --yes",
                             doing);
}

bool cli_typed_yes(const char *what)
{
        char line[64];

        fprintf(stderr, "Type 'yes' to %s: ", what);
        fflush(stderr);
        if (!fgets(line, sizeof(line), stdin))
                return false;
        line[strcspn(line, "\r\n")] = '\0';
        return strcasecmp(line, "yes") == 0;
}

int cli_fail(struct cli_ctx *ctx, enum cli_fail kind, int code, const char *fmt, ...)
{
        va_list ap;
        char msg[1024];

        if (code < 0)
                code = -code;
        if (ctx->err)
                return -code;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        ctx->fail = kind;
        return cta_error_set(&ctx->err, code, 0, "%s", msg);
}

int cli_fail_err(struct cli_ctx *ctx, enum cli_fail kind, struct cta_error *e)
{
        int code = cta_error_code(e);

        if (ctx->err) {
                cta_error_free(e);
                return -code;
        }
        if (!e)
                return cli_fail(ctx, kind, CTA_E_INTERNAL, "unknown error");
        ctx->fail = kind;
        ctx->err = e;
        return -code;
}

void cli_verbose(const struct cli_opts *o, int level, const char *fmt, ...)
{
        va_list ap;

        if (!o || o->verbose < level)
                return;
        fputs("ctagent: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

/* Copy s, replacing C0 controls other than tab/newline (when keep_ws), DEL
 * and C1 controls in their UTF-8 form (C2 80..C2 9F) with '?'. */
static char *clean(const char *s, size_t len, bool keep_ws)
{
        char *o = cta_xmalloc(len + 1);
        size_t n = 0;

        for (size_t i = 0; i < len; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (ch == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
                    (unsigned char)s[i + 1] <= 0x9F) {
                        o[n++] = '?';
                        i++;
                } else if ((ch < 0x20 && !(keep_ws && (ch == '\t' || ch == '\n'))) ||
                           ch == 0x7f) {
                        o[n++] = (keep_ws && ch == '\r') ? '\r' : '?';
                } else {
                        o[n++] = (char)ch;
                }
        }
        o[n] = '\0';
        return o;
}

char *cli_clean_text(const char *s)
{
        return s ? clean(s, strlen(s), false) : cta_xstrdup("");
}

char *cli_clean_frame(const char *s, size_t len)
{
        return clean(s, len, true);
}

void cli_print_frame(FILE *f, const char *frame, size_t len)
{
        /* A terminal gets no escape sequences from the node; a pipe or file
         * gets the bytes as they came. */
        if (isatty(fileno(f))) {
                _cleanup_free_ char *c = cli_clean_frame(frame, len);
                fputs(c, f);
        } else {
                fwrite(frame, 1, len, f);
        }
        if (len == 0 || frame[len - 1] != '\n')
                fputc('\n', f);
        fflush(f);
}
