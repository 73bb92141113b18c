/*
 * The ctagent client: shared types.
 *
 * Commands are data: each command group (cmd_system.c, later cmd_ct.c,
 * cmd_migrate.c) exports a table of struct cli_command, and main.c lists the
 * tables. The argument parser, the help texts and the dispatcher all work
 * from these tables, so a new command is one table entry and one function.
 *
 * Errors: a command returns a negative value with ctx->err set and says what
 * kind of failure it was (ctx->fail, via cli_fail()). main.c turns the kind
 * into the exit status and prints the message; nothing else exits.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/error.h"

struct cli_conn;

/* Exit statuses (documented in man/ctagent.1). */
enum cli_exit {
        CLI_EXIT_OK = 0,
        CLI_EXIT_REMOTE = 1, /* the node answered with an error (or a local failure) */
        CLI_EXIT_USAGE = 2,  /* bad command line */
        CLI_EXIT_CONN = 3,   /* cannot connect, TLS, fingerprint, lost connection, timeout */
        CLI_EXIT_LOGIN = 4,  /* login refused or no password */
};

/* Kinds of failure; cli_exit_status() in main.c maps them. */
enum cli_fail {
        CLI_FAIL_NONE = 0,
        CLI_FAIL_LOCAL,  /* something on this machine (a file, memory) */
        CLI_FAIL_USAGE,  /* the command line */
        CLI_FAIL_CONN,   /* transport: connect, TLS, pinning, EOF, timeout, garbage */
        CLI_FAIL_REMOTE, /* an <error> reply */
        CLI_FAIL_LOGIN,  /* the login was refused, or no credentials */
};

#define CLI_SYSTEM_REALM "00000000-0000-0000-0000-000000000000"
#define CLI_ONE_TIME_REALM "00000000-0000-0000-0000-000000000002"
#define CLI_DEFAULT_TLS_PORT 4434
#define CLI_DEFAULT_PLAIN_PORT 4433
#define CLI_DEFAULT_TIMEOUT_MS 60000
#define CLI_MAX_CMD_OPTS 16

enum cli_opt_flags {
        /* Every value counts (`--ip A --ip B`): cli_opt_all() returns them in
         * order. Without it a later value replaces an earlier one. */
        CLI_OPT_REPEAT = 1u << 0,
};

/* A command's own option. `arg` NULL = a flag. */
struct cli_optdef {
        const char *name; /* long name, without "--" */
        char short_name;  /* 0 = none */
        const char *arg;  /* metavariable shown in help ("NAME"), NULL for a flag */
        const char *help;
        unsigned flags;   /* enum cli_opt_flags */
};

struct cli_ctx;

enum cli_cmd_flags {
        CLI_CMD_NO_LOGIN = 1u << 0,   /* never log in (the call works before login) */
        CLI_CMD_NO_CONNECT = 1u << 1, /* runs locally; no connection is opened */
};

struct cli_command {
        const char *name;
        const char *args;    /* synopsis of the arguments, "FILE|-", or "" */
        const char *summary; /* one line for the command list */
        const char *help;    /* paragraphs for `ctagent help CMD` */
        int min_args, max_args; /* positional arguments; max -1 = no limit */
        unsigned flags;      /* enum cli_cmd_flags */
        const struct cli_optdef *opts; /* terminated by { NULL }, or NULL */
        /* Optional: the usage errors that need no node (option values,
         * options that contradict each other), run after the command line is
         * parsed and before any password is asked for or connection opened.
         * Returns 0, or -CTA_E_INVALID with *err saying what is wrong (exit
         * status 2). Must not change anything: run() may repeat the checks. */
        int (*check)(struct cli_ctx *ctx, struct cta_error **err);
        /* Optional: work that needs nothing from this node, done while it
         * checks the login's password (an OS password hash: tens of ms) —
         * after the login request is sent, before its reply is read. It may
         * prompt (a logged-in connection idles for minutes). Returns 0, or
         * a negative code with ctx->err set: the command ends with that error. */
        int (*while_login)(struct cli_ctx *ctx);
        int (*run)(struct cli_ctx *ctx);
};

/* Everything the command line says. Strings point into argv or are static. */
struct cli_opts {
        const char *host_arg; /* -H as given, NULL = default */
        char host[256];
        uint16_t port;
        bool plain;
        const char *fingerprint;
        const char *user;
        const char *password_file;
        const char *realm;
        const char *one_time;
        bool no_login;
        /* Client certificate and key: --cert/--key as given, and what is presented:
         * those, else the default pair when both files exist; NULL = none. */
        const char *cert_arg, *key_arg;
        bool no_cert;
        const char *cert_path, *key_path;
        char cert_buf[4096], key_buf[4096];
        bool xml;
        int timeout_ms; /* 0 = wait forever */
        int verbose;
        bool help;
        bool version;

        const struct cli_command *cmd; /* NULL: none given */
        int nargs;
        char **args;
        /* The command's options, indexed like cmd->opts: value (or "" for a
         * flag) when given, else NULL; the last one if given several times. */
        const char *cmd_vals[CLI_MAX_CMD_OPTS];
        /* CLI_OPT_REPEAT options: every value, in order (malloc'd). */
        const char **cmd_lists[CLI_MAX_CMD_OPTS];
        size_t cmd_nvals[CLI_MAX_CMD_OPTS];
        char user_buf[256];
};

/* The client certificate and key paths --cert/--key name, else the default pair
 * ($XDG_CONFIG_HOME/ctagent/client.crt and client.key), whether or not they exist.
 * Returns 0, or -CTA_E_INVALID / -CTA_E_CONFIG with *err set. */
int cli_client_cert_paths(const struct cli_opts *o, char cert[4096], char key[4096],
                          struct cta_error **err);
/* True when a password was given (--password-file or $CTAGENT_PASSWORD). */
bool cli_password_given(const struct cli_opts *o);

struct cli_ctx {
        struct cli_opts *o;
        struct cli_conn *conn; /* open (and logged in, unless told not to) when run() starts */
        enum cli_fail fail;
        struct cta_error *err;
        bool stdout_tty;
};

/*
 * Parse the command line. Global options may come before or after the
 * command; the command's own options only after it. "--" ends the options.
 * `ctagent help [CMD]` and `ctagent CMD --help` set o->help (and o->cmd).
 * groups: NULL-terminated list of NULL-name-terminated command tables.
 * Returns 0, or -CTA_E_INVALID with *err explaining the usage error.
 * Defaults (port, user, realm, timeout) are filled in here.
 */
int cli_parse_args(int argc, char **argv, const struct cli_command *const *groups,
                   struct cli_opts *o, struct cta_error **err);

/* Find a command by name in the groups. */
const struct cli_command *cli_find_command(const struct cli_command *const *groups,
                                           const char *name);

/* The value of the command option `name`, NULL if not given (the last
 * value if it was given several times). */
const char *cli_opt(const struct cli_opts *o, const char *name);

/* Every value of the command option `name` in command-line order (all of a
 * CLI_OPT_REPEAT option's, else at most the one that counts); *ret points
 * into o. Returns how many. */
size_t cli_opt_all(const struct cli_opts *o, const char *name, const char *const **ret);

/* Run the command's check hook, if it has one. Returns 0, or < 0 with a
 * CLI_FAIL_USAGE failure recorded in ctx. main.c calls it before
 * connecting; a unit test can call it the same way after cli_parse_args(). */
int cli_check(struct cli_ctx *ctx);

/* Help texts (to the given stream). */
void cli_print_usage(FILE *f, const struct cli_command *const *groups);
void cli_print_command_help(FILE *f, const struct cli_command *cmd);

/* Record a failure with a new error; returns -code. The first failure wins
 * (a later one is dropped), so the message names the root cause. */
int cli_fail(struct cli_ctx *ctx, enum cli_fail kind, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Record a failure from an error object (ownership taken; NULL = internal).
 * Returns -code. */
int cli_fail_err(struct cli_ctx *ctx, enum cli_fail kind, struct cta_error *e);

/* A command that asks before it acts: 0 when --yes was given or standard input is a
 * terminal to ask on, else an error "not <doing>: ... add --yes". */
int cli_confirmable(const struct cli_opts *o, const char *doing, struct cta_error **err);
/* Ask "Type 'yes' to <what>: " on stderr; true only for a typed "yes" (not "y"). */
bool cli_typed_yes(const char *what);

/* Messages for -v (1) and -vv (2) to stderr, prefixed "ctagent: ". */
void cli_verbose(const struct cli_opts *o, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Free what cli_parse_args() allocated. */
void cli_opts_done(struct cli_opts *o);

/* The command tables (one per group). */
extern const struct cli_command cli_cmds_system[];
