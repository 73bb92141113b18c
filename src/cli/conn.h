/*
 * The client side of one connection to a node: connect (TLS with
 * trust-on-first-use pinning, or plain), read the greeting, log in, send
 * requests and wait for their replies while passing progress packets to a
 * callback. Failures are recorded in the cli_ctx with their kind (connection,
 * login, remote error), which decides the exit status.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/frame.h"
#include "util/buf.h"

struct cli_ctx;
struct cli_opts;
struct cli_progress;
struct cta_client;
struct cli_req;
struct cta_error;
struct cta_resp;

struct cli_conn {
        struct cta_client *c;
        struct cta_framer fr;
        char host[256];
        uint16_t port;
        bool tls;
        char key[300];          /* "host:port" as in known_nodes */
        char fingerprint[128];  /* TLS only */
        char *client_name;      /* greeting target ("vzclientN-<eid>"), may be NULL */
        unsigned next_id;
        int timeout_ms;         /* per packet; 0 = wait forever */
        const struct cli_opts *o;
        char *parse_error;      /* why the last frame received did not parse */
};

/* Where to connect. known_nodes: path of the pin file; NULL = the default. */
struct cli_target {
        const char *host;
        uint16_t port;
        bool plain;
        const char *fingerprint; /* explicit pin, or NULL for trust on first use */
        const char *known_nodes;
};

/* Connect, check the certificate against known_nodes (pinning it the first
 * time), and read the greeting. */
int cli_conn_open(struct cli_ctx *ctx, const struct cli_target *t, struct cli_conn **ret);
struct cli_conn *cli_conn_free(struct cli_conn *c);

/* system/login. password NULL = none (one-time passes). A refused login is a
 * CLI_FAIL_LOGIN failure. */
int cli_conn_login(struct cli_ctx *ctx, struct cli_conn *c, const char *user,
                   const char *password, const char *realm);
/* The same in two halves, for work done while the node checks the password
 * (an OS password hash takes tens of milliseconds): _send builds r and sends
 * it, _reply waits for the answer. r is the caller's, cli_req_done() after. */
int cli_conn_login_send(struct cli_ctx *ctx, struct cli_conn *c, struct cli_req *r,
                        const char *user, const char *password, const char *realm);
int cli_conn_login_reply(struct cli_ctx *ctx, struct cli_conn *c, const struct cli_req *r,
                         const char *user);

/* After a refused certificate login (no password): add to ctx->err which line the
 * node's authorized_clients file lacks. */
void cli_cert_login_hint(struct cli_ctx *ctx, const char *node, const char *user);
/* True when there is a terminal to ask a password on (/dev/tty opens). */
bool cli_can_prompt(void);
/* After a refused certificate login: with a terminal, say so, clear the failure and
 * return 0 (the caller asks for a password and logs in again, as ssh falls back from
 * keys); without one, the hint above and the failure's negative code. */
int cli_cert_refused(struct cli_ctx *ctx, const char *node, const char *user);

/* Longest password accepted from a file, the environment or a prompt. */
#define CLI_PASSWORD_MAX 1024

/* Get the password as the options say: --password-file, $CTAGENT_PASSWORD or
 * a prompt on the terminal without echo. Caller wipes and frees it. */
int cli_get_password(struct cli_ctx *ctx, const struct cli_opts *o, char **ret);

/*
 * Ask for a secret on the controlling terminal (/dev/tty, whatever stdin and
 * stdout are): echo off, then the prompt, then one line into buf (without
 * its line end, NUL-terminated, at most cap - 1 bytes). The terminal is
 * restored afterwards, also when SIGINT, SIGTERM, SIGHUP or SIGQUIT arrive
 * meanwhile. Returns 0, or with *err set and buf wiped:
 *   -CTA_E_IO         no controlling terminal to ask on
 *   -CTA_E_CANCELLED  end of input before a line end (nothing entered)
 *   -CTA_E_TOO_LARGE  the line is longer than cap - 1 bytes
 * The caller wipes buf (explicit_bzero) when done.
 */
int cli_prompt_secret(const char *prompt, char *buf, size_t cap, struct cta_error **err);

/* The first line of a password file (without its line end), at most
 * CLI_PASSWORD_MAX bytes; what follows it is wiped. opt names the option in
 * messages ("--password-file"). Caller wipes and frees it (cli_secret_free).
 * -CTA_E_IO etc. if unreadable, -CTA_E_INVALID if too long. */
int cli_read_password_file(const char *path, const char *opt, char **ret,
                           struct cta_error **err);

/* Wipe and free a secret. */
void cli_secret_free(char *s);

/* ---- building requests ---- */

/* A request packet under construction. Only constant element names, escaped
 * text, base64 and numbers are written. */
struct cli_req {
        struct cta_buf b;
        char id[24];
        char op[32];
        size_t secret_start, secret_end; /* bytes hidden in -vv dumps (0, 0 = none) */
};

/* <packet version="4.0.0" id="N" [progress="on"]>[<target>T</target>]<data><op>
 * target NULL = a system call (no <target>, as clients traditionally do). */
void cli_req_begin(struct cli_req *r, struct cli_conn *c, const char *target, const char *op,
                   bool progress);
void cli_req_open(struct cli_req *r, const char *name);
void cli_req_close(struct cli_req *r, const char *name);
void cli_req_empty(struct cli_req *r, const char *name);               /* <name/> */
void cli_req_text(struct cli_req *r, const char *name, const char *text); /* escaped */
void cli_req_b64(struct cli_req *r, const char *name, const void *data, size_t len);
void cli_req_secret_b64(struct cli_req *r, const char *name, const void *data, size_t len);
/* </op></data></packet> */
void cli_req_end(struct cli_req *r);
void cli_req_done(struct cli_req *r);

/* Append XML-escaped text. */
void cli_xml_escape(struct cta_buf *b, const char *s);

/* ---- sending and receiving ---- */

/* Send bytes as they are (the caller supplies the NUL terminators). */
int cli_conn_send_raw(struct cli_ctx *ctx, struct cli_conn *c, const void *data, size_t len);

/* The next frame, waiting at most the connection's timeout. *ret_frame is
 * malloc'd and NUL-terminated; *ret_resp (may be NULL) is the parsed reply,
 * or NULL if the frame did not parse (c->parse_error says why). */
int cli_conn_recv(struct cli_ctx *ctx, struct cli_conn *c, char **ret_frame, size_t *ret_len,
                  struct cta_resp **ret_resp);

/* Called for every packet that is not the final reply: progress packets,
 * events, and anything unexpected. frame is the raw XML. */
typedef void (*cli_packet_fn)(void *userdata, const struct cta_resp *resp, const char *frame);

enum cli_call_flags {
        CLI_CALL_QUIET = 1u << 0, /* do not print packets under --xml (login) */
};

/*
 * Send r and wait for its final reply: the next packet with the same id that
 * is not a progress packet (type bit 1). Everything before it goes to cb
 * (NULL = ignored). Under --xml every packet received is printed to stdout.
 * On an <error> reply: a CLI_FAIL_REMOTE failure carrying the node's code and
 * message, and *ret (if given) still gets the reply.
 */
int cli_conn_call(struct cli_ctx *ctx, struct cli_conn *c, struct cli_req *r, unsigned flags,
                  cli_packet_fn cb, void *userdata, struct cta_resp **ret);
/* cli_conn_call in two halves: send r; wait for the final reply to r. */
int cli_conn_send(struct cli_ctx *ctx, struct cli_conn *c, struct cli_req *r);
int cli_conn_reply(struct cli_ctx *ctx, struct cli_conn *c, const struct cli_req *r,
                   unsigned flags, cli_packet_fn cb, void *userdata, struct cta_resp **ret);

/* Show a progress packet on a progress display: the decoded message (else
 * the op name) as the phase, and the percent. */
void cli_progress_show(struct cli_progress *bar, const struct cta_resp *resp);

/* A copy of s that is safe to print on a terminal: control characters
 * (including C1 controls encoded in UTF-8) become '?'. Caller frees. */
char *cli_clean_text(const char *s);

/* The same for a whole packet: tabs and line ends are kept. */
char *cli_clean_frame(const char *s, size_t len);

/* Print a frame to f as received, ending with a newline. */
void cli_print_frame(FILE *f, const char *frame, size_t len);
