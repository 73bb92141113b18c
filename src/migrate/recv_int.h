/* The receiver's state, shared by recv.c (records, tree) and recv_file.c (file data). */
#ifndef CTA_MIGRATE_RECV_INT_H
#define CTA_MIGRATE_RECV_INT_H

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "migrate/dio.h"
#include "migrate/internal.h"
#include "migrate/recv_ring.h"
#include "util/error.h"
#include "util/util.h"

/* ------------------------------------------------------------------ receiver state */

struct dir_meta {
        char *path; /* "" for the root */
        uint32_t mode;
        struct timespec ts[2];
        uint8_t *dacl; /* default ACL to set at the end, or NULL */
        uint32_t dacl_len;
};

struct link_rec {
        uint64_t id;
        char *path;
        uint64_t dev, ino;
};

enum { ST_HEADER, ST_ROOT, ST_ENTRIES, ST_FILE, ST_DONE };

struct receiver {
        const struct cta_mig_recv_opts *o;
        struct cta_mig_limits lim;
        int parent_fd;
        const char *staging_name;
        int sfd;
        bool created, existed;
        bool incr_stream; /* the header says incremental: deletions, unchanged files */
        bool replace;     /* entries may already exist (existing staging or incremental) */
        bool based_stream; /* the header allows block deltas (BASED entries, COPY records) */
        bool aligned_stream; /* the header allows PAD records (version 4) */
        bool last_pad;       /* ... and the last record was one (two in a row are not) */
        uint64_t hold;       /* view: stream bytes from here on are lent to the dio helper */
        struct cta_mig_ring ring;

        int state;
        uint64_t next_id, entries, data_bytes, deletes;
        uint64_t decl_entries, decl_bytes;
        char prev[PATH_MAX];
        size_t prev_len;

        char pc_path[PATH_MAX]; /* the cached parent directory */
        size_t pc_len;
        int pc_fd;
        char name[NAME_MAX + 1]; /* last component of the current path */

        /* the regular file being received */
        int ffd, fpfd;
        char tmpname[64], fname[NAME_MAX + 1], fpath[PATH_MAX];
        uint16_t fpath_len;
        struct cta_mig_entry fe;
        uint8_t *fx;
        size_t fx_cap;
        uint64_t fpos, frecv;
        uint64_t fsynced; /* writeback started up to here */
        uint64_t fnext; /* the next DATA or COPY may not start before this */
        XXH3_state_t *hash;
        struct cta_dio dio; /* the file being received, if large: written around the cache */
        bool blocksum;       /* the stream's large files have block-list checksums */
        bool fbsum;          /* ... and this is one */
        struct cta_bsum bsum;
        int bfd;        /* BASED: the destination's existing file, the base of COPY records */
        uint64_t bsize;
        struct stat bst;
        bool inplace;   /* BASED, updated in place: ffd is the existing file itself */
        int ibm;        /* ... and its (dropped) block map record: the hashes of COPY blocks */
        bool patched;   /* ... and o->on_patch was told */
        uint8_t *cbuf;  /* COPY: read buffer */
        int bm_dirfd;   /* block maps, or -1 */
        struct cta_bm_writer bmw;

        struct dir_meta *dirs;
        size_t ndirs, dirs_cap;
        struct link_rec *links;
        size_t nlinks, links_cap;

        struct cta_mig_stats st;
        uint64_t last_progress_ms;

        /* small files into a fresh staging directory (file_fast) */
        size_t skip; /* stream bytes the last record's handler consumed beyond it */
        struct cta_owner_cache oc;
        struct cta_aw *aw; /* the worker that creates them (apply.c) */
};

#define FAIL(r, code, ...) cta_error_set(err, code, 0, __VA_ARGS__)

static inline int sys_fail(struct cta_error **err, int code_or_0, const char *what,
                           const char *path, size_t len)
{
        int e = errno;
        _cleanup_free_ char *p = cta_mig_path_fmt(path, len);
        int code = code_or_0 ? code_or_0 : cta_mig_errno_code(e);
        errno = e;
        return cta_error_errno(err, code, "%s '%s'", what, p);
}

/* recv.c */
/* n bytes of a small file went (or go, from the apply worker) into the page cache with
 * nothing started to write them back: counted for the caller's flusher. */
static inline void cta_recv_count_cached(struct receiver *r, uint64_t n)
{
        if (r->o->cached_bytes)
                __atomic_fetch_add(r->o->cached_bytes, n, __ATOMIC_RELAXED);
}

int cta_recv_apply_meta_fd(struct receiver *r, int fd, const struct cta_mig_entry *e, bool sync,
                           struct cta_error **err);
/* Make room for a new non-directory at pfd/r->name in replace mode. */
int cta_recv_clear_name(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                        struct cta_error **err);
void cta_recv_add_link(struct receiver *r, uint64_t id, const char *path, size_t len,
                       const struct stat *st);

/* recv_file.c: a FILE entry's records */
int cta_recv_file_begin(struct receiver *r, int pfd, const struct cta_mig_entry *e,
                        struct cta_error **err);
int cta_recv_file_data(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err);
int cta_recv_file_copy(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err);
int cta_recv_file_end(struct receiver *r, const uint8_t *p, size_t len, struct cta_error **err);

#endif
