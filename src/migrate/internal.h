/* Internals shared by the sender, the receiver, the have builder and the tree compare. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "migrate/stream.h"
#include "migrate/wire.h"

struct cta_error;

/* --- the canonical tree walker (depth first, siblings sorted by name bytes) --- */

enum {
        CTA_WALK_OPEN_FILES = 1 << 0, /* open regular files (O_NOATIME), prefetch ahead */
        CTA_WALK_STRICT = 1 << 1,     /* an entry that vanishes is an error, not skipped */
};

#define CTA_WALK_MAX_DEPTH 256

struct cta_walk_item {
        const char *path; /* relative to the root, "" for the root */
        size_t path_len;
        const char *name; /* last component ("." for the root) */
        int dirfd;        /* the parent directory (the root itself for the root) */
        int fd;           /* directories: their fd; regular files with OPEN_FILES: an
                           * O_RDONLY fd; else -1. Owned by the walker until next(). */
        bool is_root;
        struct stat st;
};

struct cta_walk;
int cta_walk_new(int root_fd, unsigned flags, struct cta_walk **ret, struct cta_error **err);
/* 1: *it filled; 0: done; < 0: error. */
int cta_walk_next(struct cta_walk *w, struct cta_walk_item *it, struct cta_error **err);
uint64_t cta_walk_vanished(const struct cta_walk *w);
struct cta_walk *cta_walk_free(struct cta_walk *w);

/* --- (dev, ino) map: hard links on the sender and in the compare --- */

struct cta_inomap_ent {
        uint64_t dev, ino; /* ino 0 = empty slot */
        uint64_t val;
        char *str;
};
struct cta_inomap {
        struct cta_inomap_ent *v;
        size_t n, cap;
};
/* Find (dev, ino); if absent insert it with val/str (str copied) and return NULL. */
struct cta_inomap_ent *cta_inomap_get_or_add(struct cta_inomap *m, uint64_t dev, uint64_t ino,
                                             uint64_t val, const char *str, size_t str_len);
void cta_inomap_done(struct cta_inomap *m);

/* --- xattrs --- */

struct cta_xlist {
        char *names;  /* listxattr output */
        size_t names_len, names_cap;
        uint8_t *vals; /* values back to back */
        size_t vals_len, vals_cap;
        struct cta_mig_xattr *v;
        size_t n, cap;
};
/*
 * Read all xattrs of an entry: through fd when fd >= 0 (regular files, directories),
 * else through "/proc/self/fd/<dirfd>/<name>" without following the last component
 * (symlinks, devices, fifos, sockets are never opened). system.* names other than the
 * POSIX ACLs are left out. Sorted by name. Returns 0 or < 0 (errno).
 */
int cta_xlist_read(struct cta_xlist *x, int fd, int dirfd, const char *name);
void cta_xlist_done(struct cta_xlist *x);
/* Is this an xattr name we carry (user., trusted., security., the two POSIX ACLs)? */
bool cta_xattr_name_ok(const char *name, size_t len);

/* --- misc --- */

uint8_t cta_mig_kind_of(mode_t m);
/* openat2(dfd, path, flags, RESOLVE_BENEATH|NO_SYMLINKS|NO_MAGICLINKS|NO_XDEV). */
int cta_openat_beneath(int dfd, const char *path, int flags);
/* Remove name under dfd, recursively for directories, never following symlinks. */
int cta_rm_rf_at(int dfd, const char *name);
/* Map an errno of a file operation on the destination to a cta code. */
int cta_mig_errno_code(int e);
/* Print a path for messages: bounded, control and non-ASCII bytes escaped. */
char *cta_mig_path_fmt(const char *p, size_t len);

/* Feed n zero bytes into an XXH3 state (holes). */
struct XXH3_state_s;
void cta_mig_hash_zeros(struct XXH3_state_s *st, uint64_t n);
