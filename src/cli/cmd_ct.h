/*
 * The container commands (cmd_ct.c): the pure parts, exported for the unit
 * tests. Option values → a config, a config → vzaenvm request packets, and
 * vzaenvm replies → tables and key: value lines.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cli_conn;
struct cli_opts;
struct cli_req;
struct cta_error;
struct cta_xnode;

#define CLI_CT_MAX_IPS 16
#define CLI_CT_MIN_MEMORY ((uint64_t)1 << 20)

/* State and transition numbers → names ("running", "stopping"); NULL for a
 * number outside the table. */
const char *cli_ct_state_name(int state);
const char *cli_ct_transition_name(int transition);
/* A state name or number → the number. -CTA_E_INVALID if unknown. */
int cli_ct_parse_state(const char *s, int *ret);

/* "256M", "1G", "512MiB", "1073741824" (bytes), binary units K M G T with
 * an optional B or iB; "0" and "unlimited" → 0. -CTA_E_INVALID otherwise
 * (also over INT64_MAX bytes). */
int cli_ct_parse_size(const char *s, uint64_t *ret);
/* "50", "50%", "250" (2.5 CPUs), up to 102400; "0" and "unlimited" → 0. */
int cli_ct_parse_cpu(const char *s, unsigned *ret);
/* 0 → "unlimited", else the largest exact unit ("256M", "1G", "1000"). */
void cli_ct_fmt_size(uint64_t bytes, char out[32]);

struct cli_ct_ip {
        char addr[16];   /* dotted IPv4 */
        unsigned prefix; /* 0 = not given (the node's default, /24) */
};

/* What create or set sends. Strings point into argv. */
struct cli_ct_config {
        const char *name, *hostname, *os_template, *description; /* NULL = not sent */
        bool has_veid;
        uint64_t veid;
        bool has_ips; /* set: replace the addresses (n_ips 0 = remove them all) */
        size_t n_ips;
        struct cli_ct_ip ips[CLI_CT_MAX_IPS];
        bool has_mem;
        uint64_t mem_bytes; /* 0 = unlimited */
        bool has_cpu;
        unsigned cpu_percent; /* 0 = unlimited */
        bool has_on_boot, on_boot;
};

/* Read the options of `create` or `set` (o->cmd) into cfg. --ip may be given
 * several times, each a single address or a comma list (at most 8 distinct
 * addresses in all). Usage errors: -CTA_E_INVALID with *err naming the
 * option. */
int cli_ct_config_from_opts(const struct cli_opts *o, struct cli_ct_config *cfg,
                            struct cta_error **err);

/* The states of `list --status` (repeatable; each value a state or a comma
 * list of them) in the order given; *ret_n = 0 without --status. */
#define CLI_CT_MAX_STATES 16
int cli_ct_list_states(const struct cli_opts *o, int states[CLI_CT_MAX_STATES], size_t *ret_n,
                       struct cta_error **err);

/* Requests to vzaenvm (r is begun here; the caller sends and frees it).
 * create, set and the eid calls ask for progress packets. */
void cli_ct_req_create(struct cli_req *r, struct cli_conn *c, const struct cli_ct_config *cfg);
void cli_ct_req_set(struct cli_req *r, struct cli_conn *c, const char *eid,
                    const struct cli_ct_config *cfg);
/* start, stop (force), restart, destroy. */
void cli_ct_req_eid(struct cli_req *r, struct cli_conn *c, const char *call, const char *eid,
                    bool force);
/* get_info with the config; n = 0: every container. */
void cli_ct_req_get_info(struct cli_req *r, struct cli_conn *c, const char *const *eids,
                         size_t n);
/* get_list; n = 0: every container. */
void cli_ct_req_get_list(struct cli_req *r, struct cli_conn *c, const int *states, size_t n);

/* One container as a reply describes it. Strings are borrowed from the
 * reply's tree (NULL = absent) except description (decoded, owned). */
struct cli_ct_env {
        const char *eid, *parent_eid;
        int state, transition; /* -1 = absent */
        bool has_config;
        const char *name, *hostname, *ve_root, *ve_private, *os_template;
        char *description;
        uint64_t veid; /* 0 = absent */
        bool has_on_boot, on_boot;
        size_t n_ips;
        char ips[CLI_CT_MAX_IPS][20]; /* "a.b.c.d/prefix" (or as sent) */
        uint64_t mem_bytes;   /* 0 = unlimited */
        unsigned cpu_percent; /* 0 = unlimited */
};

/* The <env> children of a reply's operator element. Tolerant like the
 * other reply readers: local names, any order; an <env> without <eid> is
 * skipped, a description that is not base64 is shown as "?". */
int cli_ct_envs_parse(const struct cta_xnode *op_node, struct cli_ct_env **ret, size_t *ret_n);
void cli_ct_envs_free(struct cli_ct_env *envs, size_t n);

/* Find the container `what` names: a veid (all digits) or a name; an eid
 * is compared too. Returns its index, -CTA_E_ENV_NOT_FOUND (none) or
 * -CTA_E_INVALID (more than one), with *err saying which. */
int cli_ct_match(const struct cli_ct_env *envs, size_t n, const char *what, size_t *ret_idx,
                 struct cta_error **err);

/* The table of `list`: EID VEID NAME HOSTNAME STATE IP, sorted by veid. */
void cli_ct_print_table(FILE *f, const struct cli_ct_env *envs, size_t n);
/* The key: value lines of `info`. */
void cli_ct_print_info(FILE *f, const struct cli_ct_env *e);

/* The command table (listed in main.c). */
struct cli_command;
extern const struct cli_command cli_cmds_ct[];
