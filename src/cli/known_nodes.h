/*
 * Trust on first use for node certificates, like ssh's known_hosts.
 *
 * File: $XDG_CONFIG_HOME/ctagent/known_nodes (or ~/.config/ctagent/known_nodes),
 * one node a line: "host:port SHA256:AB:CD:...". Blank lines and lines starting
 * with '#' are ignored. Hosts are compared case-insensitively, as typed on the
 * command line (so "localhost" and "127.0.0.1" are different entries, as in ssh);
 * IPv6 addresses are written in brackets, "[::1]:4434". Fingerprints are
 * compared case-insensitively and stored in upper case.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cta_error;

enum cli_kn_result {
        CLI_KN_UNKNOWN = 0, /* no entry for this node */
        CLI_KN_MATCH = 1,   /* the entry has this fingerprint */
        CLI_KN_MISMATCH = 2, /* the entry has another fingerprint */
};

/* The file's key for a node: "host:port" or "[v6]:port", host lower-cased. out[300]. */
void cli_kn_key(const char *host, uint16_t port, char out[300]);

/* A syntactically valid "SHA256:" fingerprint (32 hex pairs, ':'-separated). */
bool cli_kn_fingerprint_valid(const char *fp);

/* Look key up in the file's text. On MATCH or MISMATCH the 1-based line number
 * of the first entry for the key goes to *ret_line and (if ret_pinned) a copy of
 * its fingerprint to *ret_pinned (caller frees). Malformed lines are skipped. */
enum cli_kn_result cli_kn_lookup(const char *text, const char *key, const char *fp,
                                 unsigned *ret_line, char **ret_pinned);

/* New text with every entry for key replaced by one "key fp" line (where the
 * first one was), or the line appended. Comments and other lines are kept.
 * Caller frees. */
char *cli_kn_set(const char *text, const char *key, const char *fp);

/* The file's path from $XDG_CONFIG_HOME or $HOME (caller frees); NULL and an
 * error if neither is set. */
char *cli_kn_default_path(struct cta_error **err);
/* $XDG_CONFIG_HOME/ctagent/NAME (else ~/.config/ctagent/NAME), malloc'd; NULL with
 * CTA_E_CONFIG when neither variable is an absolute path. */
char *cli_config_file(const char *name, struct cta_error **err);
/* Create the directories above path (mode 0700 for new ones). */
int cli_make_parent(const char *path, struct cta_error **err);

/*
 * Check a node's fingerprint against the file at path (created with its
 * directory, modes 0600/0700, when something is added).
 * - No entry: the entry is added (trust on first use); *ret_added = true.
 * - Same fingerprint: nothing changes.
 * - Another fingerprint: -CTA_E_PEER_CHANGED, with a message that names both
 *   fingerprints and the file and line to remove, unless `replace` is set (an
 *   explicit --fingerprint the node has just matched), which rewrites the entry
 *   and sets *ret_replaced.
 */
int cli_kn_check(const char *path, const char *key, const char *fp, bool replace,
                 bool *ret_added, bool *ret_replaced, struct cta_error **err);
