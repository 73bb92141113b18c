/* ctagent: the command-line client of ctagentd. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_ct.h"
#include "cli/cmd_migrate.h"
#include "cli/conn.h"
#include "cta_config.h"
#include "util/util.h"

/* Command groups; a new group (cmd_ct.c, cmd_migrate.c) adds one line. */
static const struct cli_command *const cli_groups[] = {
        cli_cmds_system,
        cli_cmds_ct,
        cli_cmds_migrate,
        NULL,
};

/*
 * The one place where failures become exit statuses and messages:
 *   usage  → 2, "ctagent: MESSAGE" and a hint
 *   others → "ctagent: error N (name): MESSAGE", and
 *            connection/TLS/pinning → 3, login → 4, a node's error or a
 *            local failure → 1.
 */
static int cli_exit_status(struct cli_ctx *ctx)
{
        int code;

        if (!ctx->err && ctx->fail == CLI_FAIL_NONE)
                return CLI_EXIT_OK;
        code = cta_error_code(ctx->err);
        if (ctx->fail == CLI_FAIL_USAGE) {
                if (ctx->o->cmd)
                        fprintf(stderr, "ctagent: %s\nTry 'ctagent help %s'.\n",
                                cta_error_msg(ctx->err), ctx->o->cmd->name);
                else
                        fprintf(stderr, "ctagent: %s\nTry 'ctagent --help'.\n",
                                cta_error_msg(ctx->err));
                return CLI_EXIT_USAGE;
        }
        fprintf(stderr, "ctagent: error %d (%s): %s\n", code, cta_errcode_name(code),
                cta_error_msg(ctx->err));
        switch (ctx->fail) {
        case CLI_FAIL_CONN:
                return CLI_EXIT_CONN;
        case CLI_FAIL_LOGIN:
                return CLI_EXIT_LOGIN;
        case CLI_FAIL_REMOTE:
        case CLI_FAIL_LOCAL:
        case CLI_FAIL_NONE:
        case CLI_FAIL_USAGE:
                break;
        }
        return CLI_EXIT_REMOTE;
}

static int connect_and_login(struct cli_ctx *ctx)
{
        struct cli_opts *o = ctx->o;
        const struct cli_target t = {
                .host = o->host,
                .port = o->port,
                .plain = o->plain,
                .fingerprint = o->fingerprint,
        };
        char *password = NULL;
        bool login = !o->no_login && !(o->cmd->flags & CLI_CMD_NO_LOGIN);
        bool by_cert = login && !o->one_time && o->cert_path && !cli_password_given(o);
        int r;

        /* Ask for the password before connecting: the node drops connections
         * that stay silent for 30 s before login, and people type slowly.
         * With a client certificate and no password given, the certificate logs in. */
        if (login && !o->one_time && !by_cert) {
                r = cli_get_password(ctx, o, &password);
                if (r < 0)
                        return r;
        }
        r = cli_conn_open(ctx, &t, &ctx->conn);
        if (r >= 0 && login) {
                const char *who = o->one_time ? o->one_time : o->user;
                struct cli_req lr;

                r = cli_conn_login_send(ctx, ctx->conn, &lr, who, password, o->realm);
                if (r >= 0 && o->cmd->while_login)
                        r = o->cmd->while_login(ctx);
                if (r >= 0) {
                        r = cli_conn_login_reply(ctx, ctx->conn, &lr, who);
                        /* Refused certificate: a password instead, when there is a
                         * terminal to ask on (a second login on the connection). */
                        if (r < 0 && by_cert && ctx->fail == CLI_FAIL_LOGIN &&
                            (r = cli_cert_refused(ctx, ctx->conn->key, who)) >= 0 &&
                            (r = cli_get_password(ctx, o, &password)) >= 0)
                                r = cli_conn_login(ctx, ctx->conn, who, password, o->realm);
                }
                cli_req_done(&lr);
        }
        cli_secret_free(password);
        return r;
}

int main(int argc, char **argv)
{
        struct cli_opts o;
        struct cli_ctx ctx = { .o = &o };
        struct cta_error *e = NULL;
        int status;

        signal(SIGPIPE, SIG_IGN);
        if (cli_parse_args(argc, argv, cli_groups, &o, &e) < 0) {
                if (argc <= 1) {
                        cta_error_free(e);
                        cli_print_usage(stderr, cli_groups);
                        cli_opts_done(&o);
                        return CLI_EXIT_USAGE;
                }
                cli_fail_err(&ctx, CLI_FAIL_USAGE, e);
                status = cli_exit_status(&ctx);
                goto out;
        }
        if (o.version) {
                printf("ctagent %s\n", CTA_VERSION);
                status = CLI_EXIT_OK;
                goto out;
        }
        if (o.help) {
                if (o.cmd)
                        cli_print_command_help(stdout, o.cmd);
                else
                        cli_print_usage(stdout, cli_groups);
                status = CLI_EXIT_OK;
                goto out;
        }

        ctx.stdout_tty = isatty(STDOUT_FILENO);
        /* Usage errors first: nobody should type a password, or wait for a
         * connection, only to learn that --memory 12X means nothing. */
        if (cli_check(&ctx) < 0) {
                status = cli_exit_status(&ctx);
                goto out;
        }
        if (!(o.cmd->flags & CLI_CMD_NO_CONNECT) && connect_and_login(&ctx) < 0) {
                status = cli_exit_status(&ctx);
                goto out;
        }
        if (o.cmd->run(&ctx) < 0 && !ctx.err)
                cli_fail(&ctx, CLI_FAIL_LOCAL, CTA_E_INTERNAL, "'%s' failed", o.cmd->name);
        if (fflush(stdout) != 0 && !ctx.err)
                cli_fail(&ctx, CLI_FAIL_LOCAL, CTA_E_IO, "cannot write the output");
        status = cli_exit_status(&ctx);
out:
        cli_conn_free(ctx.conn);
        cta_error_free(ctx.err);
        cli_opts_done(&o);
        return status;
}
