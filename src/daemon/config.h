/*
 * ctagentd configuration: defaults, the config file (key = value) and the
 * command line, applied in that order. docs/limits.md lists every limit.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct cta_error;

struct cta_config {
        char *state_dir;
        char *listen;       /* TLS listener "ADDR:PORT" */
        char *plain_listen; /* plain listener, NULL = disabled */
        bool plain_open;    /* allow a non-loopback plain listener */
        bool vendor_forms;  /* progress/events in the vendor's (non-XSD-valid) shapes */
        bool keep_staging;  /* keep a failed migration's staging area for a faster retry */
        char *tls_cert, *tls_key;
        char *admin_group;
        char *pam_service;
        /* certificates that may log in without a password; NULL = STATE_DIR/authorized_clients */
        char *authorized_clients;
        char *template_dir;
        char *bridge, *bridge_cidr;
        char *ct_backend; /* "lxc" (default) or "fake" (tests without root) */
        char *ready_file;
        int log_level;
        uint64_t one_time_pass_ttl_s;
        uint64_t max_connections;
        uint64_t idle_timeout_prelogin_s, idle_timeout_s;
        uint64_t frame_max_prelogin, frame_max;
        uint64_t login_delay_max_ms;
        uint64_t max_jobs;
        uint64_t handshake_timeout_s;
        /* zstd level of outgoing migration streams when the request does not say
         * (options/compress); 0: not compressed; CTA_COMPRESS_AUTO (the default):
         * measure the link first and compress only when it is slower than
         * migrate_compress_auto_mbs MB/s (fast links go uncompressed) */
        int migrate_compress;
        uint64_t migrate_compress_auto_mbs;
        /* a later migration to the same destination within this many seconds of a link
         * probe takes its rate instead of probing again (0: always probe) */
        uint64_t migrate_probe_reuse_s;
        uint64_t ct_watch_interval_s; /* the watch's poll (envm_watch.c) */
};

/* Fill c with the built-in defaults. */
void cta_config_defaults(struct cta_config *c);
/* Parse a config file over c. A missing file is an error only if must_exist. */
int cta_config_load(struct cta_config *c, const char *path, bool must_exist,
                    struct cta_error **err);
/* Cross-field checks (addresses parse, plain listener on loopback unless plain_open…). */
int cta_config_validate(const struct cta_config *c, struct cta_error **err);
void cta_config_done(struct cta_config *c);
/* Set one key from a string (used by the file parser and the command line). */
int cta_config_set(struct cta_config *c, const char *key, const char *value,
                   struct cta_error **err);
/* True if "ADDR:PORT" names a loopback address (127/8 or ::1). */
bool cta_addr_is_loopback(const char *hostport);
