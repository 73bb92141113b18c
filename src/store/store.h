/*
 * The node database: one SQLite file (conventionally <state dir>/ctagent.db,
 * mode 0600) holding the node eid, one-time passes, the container registry
 * and the migration journal.
 *
 * Thread-safe: every function may be called from any thread. All calls on one
 * store share a single connection and are serialized by a mutex, so each call
 * sees a consistent database and multi-step changes are single transactions.
 * Calls block on disk I/O (and for up to the busy timeout if another process
 * holds the database), which is short but not free: the daemon's loop thread
 * may call the cheap reads, long batches belong on a worker.
 *
 * Errors: a failing call returns a negative -CTA_E_* and fills *err (if err is
 * not NULL); SQLite failures are CTA_E_STORE with SQLite's message.
 * Nothing here logs above debug level.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cta_error;
struct cta_store;

#define CTA_STORE_FILE "ctagent.db"
/* The schema version this code writes. A database with a higher version is
 * refused by cta_store_open() (a newer ctagent made it). */
#define CTA_STORE_SCHEMA_VERSION 1

/* Open (creating if needed, mode 0600) the database file at path, apply
 * pending schema migrations in one transaction and make sure the node eid
 * exists. On success *ret is owned by the caller (cta_store_close()). */
int cta_store_open(const char *path, struct cta_store **ret, struct cta_error **err);
/* Close; NULL-safe; returns NULL. No call may be running on st. */
struct cta_store *cta_store_close(struct cta_store *st);

/* The schema version found in the file after open (== CTA_STORE_SCHEMA_VERSION). */
int cta_store_schema_version(struct cta_store *st, struct cta_error **err);

/* The node eid: a random UUID v4 created when the database is created, never
 * changed afterwards. Copied into ret (NUL-terminated). */
int cta_store_node_eid(struct cta_store *st, char ret[37], struct cta_error **err);

/*
 * One-time passes (system/generate_pass). A pass is valid while
 * now < expires_at. Adding an existing name replaces its expiry.
 */
int cta_store_pass_add(struct cta_store *st, const char *name, int64_t expires_at_unix,
                       struct cta_error **err);
/* Atomically consume: returns 0 if the pass existed and had not expired,
 * -CTA_E_AUTH_FAILED otherwise (err says "invalid or expired pass" in both
 * cases). The pass is deleted either way, so two racing consumers cannot both
 * succeed. */
int cta_store_pass_consume(struct cta_store *st, const char *name, int64_t now_unix,
                           struct cta_error **err);
/* Delete expired passes (expires_at <= now). Returns the number deleted. */
int cta_store_pass_purge(struct cta_store *st, int64_t now_unix, struct cta_error **err);

/*
 * Container registry. Strings in a row are owned by the row (malloc'd);
 * cta_ct_row_done() frees them. eid is compared case-insensitively (UUIDs),
 * name and private_path byte-wise. veid must be <= INT64_MAX (xs:long).
 * The store keeps created_at/updated_at (unix seconds): insert sets
 * created_at (to r->created_at if non-zero, else now) and updated_at = now;
 * update and set_state set updated_at = now.
 */
struct cta_ct_row {
        char eid[37];
        uint64_t veid;
        char *name;         /* may be NULL; unique when set */
        char *hostname;     /* may be NULL */
        char *description;  /* raw bytes as a C string, may be NULL */
        char *private_path; /* required, unique */
        char *os_template;  /* may be NULL */
        bool on_boot;
        char *config_json;  /* opaque to the store, may be NULL */
        int state;
        int transition;
        int64_t created_at;
        int64_t updated_at;
};
/* Free the strings of r and zero it (NULL-safe). */
void cta_ct_row_done(struct cta_ct_row *r);
/* Free an array from cta_store_ct_list() (NULL-safe). */
void cta_ct_rows_free(struct cta_ct_row *rows, size_t n);

/* Insert a new container. A clash with an existing row fails with
 * CTA_E_ENV_EXISTS (eid), CTA_E_VEID_EXISTS, CTA_E_NAME_EXISTS or
 * CTA_E_PRIVATE_EXISTS, checked in that order; the message names the other
 * container. CTA_E_INVALID for a missing eid/private_path or a veid > INT64_MAX. */
int cta_store_ct_insert(struct cta_store *st, const struct cta_ct_row *r, struct cta_error **err);
/* Replace every field of the row with eid r->eid except eid and created_at.
 * -CTA_E_ENV_NOT_FOUND if there is no such row; clashes as for insert. */
int cta_store_ct_update(struct cta_store *st, const struct cta_ct_row *r, struct cta_error **err);
int cta_store_ct_set_state(struct cta_store *st, const char *eid, int state, int transition,
                           struct cta_error **err);
/* -CTA_E_ENV_NOT_FOUND if there is no such row. */
int cta_store_ct_delete(struct cta_store *st, const char *eid, struct cta_error **err);
/* Lookups: 0 and *ret filled (caller calls cta_ct_row_done()), or
 * -CTA_E_ENV_NOT_FOUND (with err set) and *ret untouched. */
int cta_store_ct_get(struct cta_store *st, const char *eid, struct cta_ct_row *ret,
                     struct cta_error **err);
int cta_store_ct_get_by_veid(struct cta_store *st, uint64_t veid, struct cta_ct_row *ret,
                             struct cta_error **err);
int cta_store_ct_get_by_name(struct cta_store *st, const char *name, struct cta_ct_row *ret,
                             struct cta_error **err);
/* All rows ordered by veid. *ret_rows is NULL when *ret_n is 0; caller frees
 * with cta_ct_rows_free(). */
int cta_store_ct_list(struct cta_store *st, struct cta_ct_row **ret_rows, size_t *ret_n,
                      struct cta_error **err);
/* Lowest veid >= min not used by any row (only a hint: insert decides). */
int cta_store_ct_next_veid(struct cta_store *st, uint64_t min, uint64_t *ret,
                           struct cta_error **err);

/*
 * Migration journal (minimal for now). role is "src" or "dst". A migration
 * whose state is one of "done", "failed" or "cancelled" is finished.
 */
#define CTA_MIG_ROLE_SRC "src"
#define CTA_MIG_ROLE_DST "dst"

struct cta_mig_row {
        char *id;
        char *role;
        char *ct_eid;
        char *peer;   /* may be NULL */
        char *state;
        int64_t step;
        char *detail; /* may be NULL */
        int64_t created_at;
        int64_t updated_at;
};
void cta_mig_row_done(struct cta_mig_row *r);
void cta_mig_rows_free(struct cta_mig_row *rows, size_t n);

/* Insert, or update peer/state/detail of an existing id. role and ct_eid are
 * fixed at creation: an update with different ones fails with CTA_E_INVALID. */
int cta_store_mig_put(struct cta_store *st, const char *id, const char *role, const char *ct_eid,
                      const char *peer, const char *state, const char *detail,
                      struct cta_error **err);
/* Record progress; -CTA_E_INVALID if there is no such id. */
int cta_store_mig_set_step(struct cta_store *st, const char *id, int64_t step,
                           struct cta_error **err);
/* 0 and *ret filled (cta_mig_row_done()), or -CTA_E_INVALID if there is no such id. */
int cta_store_mig_get(struct cta_store *st, const char *id, struct cta_mig_row *ret,
                      struct cta_error **err);
/* A state a migration's row keeps for good ("done", "failed", "cancelled"). */
bool cta_store_mig_finished(const char *state);
/* Rows not finished, oldest first; caller frees with cta_mig_rows_free(). */
int cta_store_mig_list_unfinished(struct cta_store *st, struct cta_mig_row **ret_rows,
                                  size_t *ret_n, struct cta_error **err);

/* Generic key/value settings. get: 0 and *ret = a copy of the value (caller
 * frees) or NULL if the key is absent. Keys starting with "cta." are reserved
 * for the store itself (set refuses them with CTA_E_INVALID). */
int cta_store_meta_get(struct cta_store *st, const char *key, char **ret, struct cta_error **err);
int cta_store_meta_set(struct cta_store *st, const char *key, const char *value,
                       struct cta_error **err);
