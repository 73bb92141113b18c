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
        CTA_WALK_NO_PREFETCH = 1 << 2, /* with OPEN_FILES: open each file only when reached */
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

/* --- directories held back by a pass that skips what did not change --- */

/*
 * A later pass of a live copy sends nothing for an entry unchanged since the pass before
 * it (cta_mig_send_opts.changed_since); a directory is held back instead, encoded, and
 * sent only before something inside it is (the receiver then restores its times, which
 * writing into it changed). The held ones are always a chain of ancestors of where the
 * walk is. Records carry id 0 until sent.
 */
struct cta_pend_dir {
        uint8_t *rec;
        size_t len;
        uint16_t path_len;
};
struct cta_pend_dirs {
        struct cta_pend_dir v[CTA_WALK_MAX_DEPTH + 1];
        size_t n;
};
/* Forget the held directories that are not ancestors of path. */
void cta_pend_pop(struct cta_pend_dirs *p, const char *path, size_t len);
/* Hold e (a directory entry) back. */
void cta_pend_push(struct cta_pend_dirs *p, const struct cta_mig_entry *e);
void cta_pend_done(struct cta_pend_dirs *p);

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
/* The path for an l*xattr call on dirfd/name (name never followed): name itself after
 * fchdir(dirfd) in a thread with its own working directory (cta_mig_thread_own_cwd), else
 * "/proc/self/fd/<dirfd>/<name>" in buf. */
const char *cta_mig_at_path(int dirfd, const char *name, char *buf, size_t cap);
void cta_xlist_done(struct cta_xlist *x);
/* Is this an xattr name we carry (user., trusted., security., the two POSIX ACLs)? */
bool cta_xattr_name_ok(const char *name, size_t len);

/* --- misc --- */

/* Is time a before t? */
static inline bool cta_mig_ts_before(const struct timespec *a, const struct timespec *t)
{
        return a->tv_sec < t->tv_sec || (a->tv_sec == t->tv_sec && a->tv_nsec < t->tv_nsec);
}

uint8_t cta_mig_kind_of(mode_t m);
/* Open a regular file of the source for reading (O_NOATIME when allowed, never following). */
int cta_mig_open_file(int dfd, const char *name);
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

/* --- block maps (blockmap.c): per-block hashes of large files, in a side directory --- */

#define CTA_BM_BUF 1024

uint64_t cta_mig_nblocks(uint64_t size);
/* XXH3-64 of len zero bytes (a block that is all hole). */
uint64_t cta_mig_block_hash_zeros(uint64_t len);
void cta_mig_hash64_zeros(struct XXH3_state_s *st, uint64_t n);

/*
 * The checksum of a large file (at least CTA_MIG_BLOCKMAP_MIN bytes) in a stream with
 * CTA_MIG_HF_BLOCKSUM (version 3): XXH3-128 over its block hashes (XXH3-64 of each
 * CTA_MIG_BLOCK of its logical content, holes as zeros; u64 big endian, in order). Both
 * sides hash each byte once, for the checksum and the block map together, and a hole
 * costs a constant per block instead of hashing its zeros.
 */
struct cta_bsum {
        struct XXH3_state_s *file, *blk;
        uint64_t size, pos;
};
int cta_bsum_init(struct cta_bsum *b); /* 0, or -1: out of memory */
void cta_bsum_done(struct cta_bsum *b);
void cta_bsum_begin(struct cta_bsum *b, uint64_t size);
/* The next whole block's hash, computed by the caller (who read the block). */
void cta_bsum_block(struct cta_bsum *b, uint64_t hash);
/* The file's next n bytes of content (data NULL: zeros); completed blocks' hashes also go
 * to bm (when it records). */
struct cta_bm_writer;
void cta_bsum_feed(struct cta_bsum *b, const void *data, uint64_t n, struct cta_bm_writer *bm);
/* The rest of the file as zeros, then the checksum (canonical, as in FILE_END). */
void cta_bsum_final(struct cta_bsum *b, struct cta_bm_writer *bm, uint8_t out[16]);

/* Open (creating it) the block map directory; -1 if none or unusable. */
int cta_bm_opendir(const char *path);

/* Records a file's block hashes while it is written or read, in order: either feed()
 * its logical content (data = NULL: zeros) or push() ready block hashes. */
struct cta_bm_writer {
        int dirfd, fd;
        char tmp[48];
        uint64_t size, pos, nblocks;
        struct XXH3_state_s *st, *dig;
        uint64_t *buf;
        size_t nbuf;
        bool failed;
        uint32_t tag; /* stored in the record: who wrote the file (0: nobody in particular) */
};
/* 0, or -1: not recording (every other call is then a no-op). */
int cta_bm_begin(struct cta_bm_writer *w, int dirfd, uint64_t size);
void cta_bm_feed(struct cta_bm_writer *w, const void *data, uint64_t n);
void cta_bm_push(struct cta_bm_writer *w, uint64_t hash);
/* Finish (the rest as zeros) and store under st's device and inode: st must be the file's
 * stat after its last change (ctime included). Always releases w. */
int cta_bm_commit(struct cta_bm_writer *w, const struct stat *st);
void cta_bm_abort(struct cta_bm_writer *w);
/* A valid record of the file with this stat: an fd positioned at its hashes
 * (cta_mig_nblocks(st_size) u64 LE), or -1. */
int cta_bm_open(int dirfd, const struct stat *st);
/* The same, with the tag the record was committed with. */
int cta_bm_open_tag(int dirfd, const struct stat *st, uint32_t *tag);
/* Block idx's hash from a record cta_bm_open() gave (it checked the whole array). */
int cta_bm_hash_at(int fd, uint64_t idx, uint64_t *hash);
/* We changed the file's ctime (not its content): keep its record valid if it was. */
void cta_bm_refresh(int dirfd, const struct stat *before, const struct stat *after);
void cta_bm_invalidate(int dirfd, uint64_t dev, uint64_t ino);

/* --- small files into a fresh staging directory, and the worker that creates them --- */

/* What creating a file in a directory gives (learnt from the first file created there). */
struct cta_owner_cache {
        int fd;     /* the parent fd ok was learnt for, -1: none */
        bool ok;    /* files created there get (euid, egid) */
        uid_t euid;
        gid_t egid;
        mode_t umask; /* the process umask (0777 if unknown: then never relied upon) */
};
/* Create a small file whose content is verified under its final name (O_EXCL), write its
 * extents, give it its metadata, times last; on failure it is removed. ret_st: its stat. */
int cta_mig_create_small(int pfd, const char *name, const struct cta_mig_entry *e,
                         const struct cta_mig_extent *ext, size_t next,
                         struct cta_owner_cache *oc, struct stat *ret_st,
                         struct cta_error **err);

#define CTA_AW_MAX_EXT 16
struct cta_aw;
/* NULL if the thread cannot start (the caller then creates files itself). */
struct cta_aw *cta_aw_start(int sfd, const struct cta_owner_cache *oc);
/* Queue e (a verified file: its path's first dir_len bytes are its parent directory, which
 * exists) for creation. 0; 1: too large to queue (create it yourself); < 0: an earlier
 * file failed (its error). */
int cta_aw_put(struct cta_aw *w, const struct cta_mig_entry *e, size_t dir_len,
               const struct cta_mig_extent *ext, size_t next, struct cta_error **err);
/* Wait until every queued file exists. 0 or the worker's error. */
int cta_aw_drain(struct cta_aw *w, struct cta_error **err);
/* Stop the worker (what is still queued is dropped) and free it. */
void cta_aw_stop(struct cta_aw *w);
