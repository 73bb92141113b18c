/*
 * `ctagent migrate` (cmd_migrate.c): the pure parts, exported for the unit
 * tests. Command line → what relocator/migrate_v2v sends, that → the request
 * packet, a progress packet → phase and byte counts, and the summary line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cli_conn;
struct cli_opts;
struct cli_req;
struct cta_error;
struct cta_resp;

/* What migrate_v2v sends. Strings are borrowed (argv, or the caller's). */
struct cli_mig_spec {
        const char *eid;
        char dst_host[256];
        uint16_t dst_port;
        bool dst_plain;          /* dst/protocol TCP instead of SSL */
        const char *login_name;  /* user name, or the one-time pass name (decoded) */
        const char *login_realm; /* uuid */
        const char *password;    /* NULL: no <password> (one-time pass) */
        bool force, nostart, remove;
        bool has_new_veid;
        uint64_t new_veid;
        const char *new_name, *new_private; /* NULL = not sent */
        bool has_compress; /* send options/compress (ours): */
        int compress;      /* 0 off, else a zstd level */
};

/* The destination (o->args[1], DST_HOST[:PORT]; port 4434, or 4433 with
 * --dst-plain) and the options of `migrate` (o->cmd) into s. The eid and the
 * credentials are left for the caller. Usage errors: -CTA_E_INVALID with
 * *err naming the option. */
int cli_mig_spec_from_opts(const struct cli_opts *o, struct cli_mig_spec *s,
                           struct cta_error **err);

/* relocator/migrate_v2v with progress="on", in the XSD's element order
 * (options, eid_list, dst). The password is marked secret in r. */
void cli_mig_req_build(struct cli_req *r, struct cli_conn *c, const struct cli_mig_spec *s);

/* One progress packet of a migration. */
struct cli_mig_progress {
        char phase[160]; /* the phase parameter without its ", N of M bytes" tail */
        int percent;     /* -1 = unknown */
        int status;      /* 1 started, 2 processing, 3 finished, 4 failed; 0 = absent */
        bool has_bytes;
        uint64_t done, total;
};

/* Read a progress packet: the phase from the message's `phase` parameter
 * (else the whole message, else the op); the bytes from the parameters
 * bytes_done and bytes_total, else from a "…, N of M bytes" phase text. */
void cli_mig_progress_parse(const struct cta_resp *resp, struct cli_mig_progress *out);

/* Split a trailing ", N of M bytes" off text (in place). true if found. */
bool cli_mig_split_bytes(char *text, uint64_t *ret_done, uint64_t *ret_total);

/* "container WHAT moved to DST in 12.3 s (1.2 GiB copied at 98.0 MiB/s)".
 * copy_ms: how long the data took (0 = unknown: the whole time counts). */
void cli_mig_summary(char *out, size_t cap, const char *what, const char *dst,
                     uint64_t elapsed_ms, uint64_t bytes, uint64_t copy_ms);

/* The command table (listed in main.c). */
struct cli_command;
extern const struct cli_command cli_cmds_migrate[];
