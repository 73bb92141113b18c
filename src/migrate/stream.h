/*
 * The tree-stream engine of migrate_v2v: a directory tree becomes a byte stream on the
 * source node (cta_mig_send) and the stream becomes a tree again on the destination
 * (cta_mig_recv), with full fidelity (types, hard links, sparse files, numeric owners,
 * all mode bits, all xattrs, ns times), a per-file XXH3-128 checksum verified before each
 * file is committed, and strict confinement of the receiver beneath a staging directory
 * it creates itself. docs/migration-stream.md is the wire format.
 *
 * Everything works on abstract byte sources and sinks (struct cta_mig_io) so the
 * orchestrator can plug in TLS frames and tests can use pipes or files.
 *
 * Incremental passes: the destination summarizes what it already has
 * (cta_mig_have_build → a "have" stream), the source consumes it
 * (cta_mig_send_opts.have) and sends only changed files, metadata-only records for
 * unchanged ones, and deletions for entries the source no longer has. With block maps
 * (blockmap_dir, version 2) a large changed file is sent as the blocks that differ.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct cta_error;

/* The stream format version this build speaks (docs/migration-stream.md). */
#define CTA_MIG_STREAM_VERSION 4
/* The have stream's (unchanged since version 2). */
#define CTA_MIG_HAVE_VERSION 2

/*
 * The transport. write() writes all len bytes or fails (< 0); read() returns > 0 bytes,
 * 0 at end of stream, < 0 on error. abort() is optional: the engine calls it (from any
 * thread) when it gives up, so that a read() or write() blocked in another engine thread
 * returns (e.g. shutdown(2) of a socket). Callbacks are called from engine threads, one
 * at a time per direction. One io carries exactly one stream: the receiver stops reading
 * after the trailer record but may have read (and ignores) bytes past it.
 */
struct cta_mig_io {
        ssize_t (*write)(void *ctx, const void *buf, size_t len);
        ssize_t (*read)(void *ctx, void *buf, size_t len);
        void (*abort)(void *ctx);
        void *ctx;
        /* Optional for a receiver, instead of read: the producer's own ring buffer, read
         * in place (no copy into the receiver's ring, no reader thread). view waits until
         * want bytes are there (0: does not wait) and returns how many are, from ring +
         * *head, wrapping at *cap; fewer only at a clean end; negative: the error code.
         * release gives back the first n of them. The ring must not move or change size. */
        ssize_t (*view)(void *ctx, size_t want, const uint8_t **ring, size_t *cap,
                        size_t *head);
        void (*release)(void *ctx, size_t n);
};

/* Progress: called from the sender's writer thread at most every ~100 ms and once at
 * the end; and from the receiver's applying thread. Totals come from cta_mig_scan. */
struct cta_mig_progress_cb {
        void (*fn)(void *ud, uint64_t bytes_done, uint64_t bytes_total, uint64_t files_done,
                   uint64_t files_total);
        void *ud;
};

/* What cta_mig_scan measures on the source before a copy. */
struct cta_mig_totals {
        uint64_t entries;    /* every entry, the root directory included */
        uint64_t data_bytes; /* file data without holes (estimate: min(size, st_blocks*512)) */
        uint64_t files;      /* regular files */
        /* of data_bytes, the regular files' whose ctime is not before the scan's `since`
         * (cta_mig_scan_since; all of it without one): data changed since a mark */
        uint64_t changed_bytes;
};

/* Counters of one send, receive or have build. */
struct cta_mig_stats {
        uint64_t entries;         /* entry records (root included) */
        uint64_t files;           /* regular files whose data moved */
        uint64_t unchanged;       /* regular files skipped: metadata-only records */
        uint64_t dirs, symlinks, specials, hardlinks;
        uint64_t deleted;         /* delete records */
        uint64_t data_bytes;      /* file data bytes sent/received (holes excluded) */
        uint64_t wire_bytes;      /* stream bytes written/read */
        uint64_t vanished;        /* sender: entries gone between readdir and open */
        uint64_t changed;         /* sender: files that changed size while being read */
        uint64_t delta_files;     /* files sent as block deltas against the destination's */
        uint64_t copied_bytes;    /* data the destination reused from its own files (not sent) */
        uint64_t blockmaps;       /* block maps recorded (send, recv) or offered (have) */
        uint64_t direct_bytes;    /* file bytes read/written with O_DIRECT (migrate/dio.h) */
        uint64_t lent_bytes;      /* ... written from the io's own ring (cta_mig_io.view) */
        uint64_t inplace_files;   /* receiver: block deltas written into the existing file */
        uint64_t quiet;           /* sender: entries not sent at all, unchanged since the
                                   * pass before (cta_mig_send_opts.changed_since) */
        uint64_t touched;         /* have builder: entries changed since touched_since */
};

/* Receiver limits; a field left 0 takes the default in brackets. */
struct cta_mig_limits {
        uint64_t max_entries;        /* [16M] entry records */
        uint64_t max_total_bytes;    /* [unlimited] file data bytes */
        uint64_t max_file_size;      /* [16 TiB] declared (logical) size of one file */
        uint32_t max_xattrs;         /* [256] xattrs per entry */
        uint32_t max_xattr_value;    /* [65536] bytes of one xattr value */
        uint32_t max_path;           /* [4095] bytes of a path (PATH_MAX - 1 at most) */
        uint32_t max_depth;          /* [256] components of a path */
        uint32_t max_record;         /* [8 MiB] bytes of one record's payload */
};

struct cta_mig_send_opts {
        /* The destination's have stream (cta_mig_have_build) or NULL for a full copy.
         * Read synchronously by the sender; the sender validates it. */
        const struct cta_mig_io *have;
        /* Declared totals for the header and progress; NULL: the sender scans first. */
        const struct cta_mig_totals *totals;
        struct cta_mig_progress_cb progress;
        atomic_bool *cancel; /* set to true (any thread) to stop with CTA_E_CANCELLED */
        /* Optional block map directory (see cta_mig_recv_opts.blockmap_dir): the sender
         * records the block hashes of the large files it reads, so that if this tree is
         * later a destination (migration back) its have stream can offer them. */
        const char *blockmap_dir;
        /* The highest stream version the receiver reads (from its hello); 0: this build's.
         * Below 3, large files get the older whole-content checksum (CTA_MIG_HF_BLOCKSUM). */
        uint16_t peer_version;
        /* With have: regular files whose ctime is at or after this time (CLOCK_REALTIME) are
         * sent even when the have stream says the destination holds that size and mtime.
         * For the pass after a copy made while the tree was in use, given the time that
         * copy started: a write in the same clock tick as its read leaves size and mtime as
         * they were, but the ctime cannot be set back. {0, 0}: off.
         * With have, an entry whose ctime is before it and whose have record shows the same
         * kind and mtime (and size) is not sent at all (stats.quiet): the pass before left
         * it right. A directory then goes only before something inside it does (writing
         * into it changes its times, which its record restores). */
        struct timespec changed_since;
};

struct cta_mig_recv_opts {
        struct cta_mig_limits limits;
        /* Keep the staging directory on failure (retry sends only the rest). Files are
         * only ever present there once verified (but see inplace); temporary files are
         * always removed. */
        bool keep_on_failure;
        /* Accept an existing staging directory (a kept failed attempt or an earlier
         * copy) and incremental streams (metadata-only records, deletions). */
        bool allow_existing;
        /* Refuse device nodes (mknod is only tried as root anyway). */
        bool deny_devices;
        struct cta_mig_progress_cb progress;
        atomic_bool *cancel;
        /* Optional: the receiver adds (relaxed atomic) the data bytes of small files it
         * writes through the page cache, whose writeback nothing has started yet (large
         * files start their own as they arrive), so that the caller can flush when there
         * is enough to flush rather than on a clock alone (daemon/mig_dst.c). */
        uint64_t *cached_bytes;
        /*
         * Optional: a directory of this node's own (created 0700 if missing; e.g.
         * <state dir>/blockmaps, on any file system) where the receiver records per-block
         * hashes of the large files it commits, keyed by device and inode (so they follow
         * the tree through renames of the staging directory into place). Give the same
         * directory to cta_mig_have_build_opts() later: large files then travel as block
         * deltas. A cache: it may be emptied at any time (cta_mig_blockmap_prune()).
         */
        const char *blockmap_dir;
        /*
         * Block deltas (BASED files) may update the existing file in place, writing only
         * the blocks that changed, when that file is a regular file with one link and a
         * valid block map record (its unchanged blocks' hashes are then taken from the
         * record, not read back). Only for a staging tree that is all the caller's own:
         * a failure can leave such a file half updated (its record dropped and its mtime
         * new, so the next pass sends it again), which a user's kept copy must never be.
         */
        bool inplace;
        /*
         * Nonzero: the block map records of the files this receiver writes carry this tag,
         * and a file whose record carries it may be updated in place even without inplace
         * (a file this migration wrote itself, in its first pass, is no longer the user's
         * kept data). Give every migration its own random tag.
         */
        uint32_t inplace_tag;
        /* Optional: called once a file patched in place has had its first write (its
         * path, not NUL-terminated): for the caller's log and test fault points. */
        void (*on_patch)(void *ud, const char *path, size_t len);
        void *on_patch_ud;
};

/* A changed_since that counts every file as changed (see cta_mig_pass_mark). */
#define CTA_MIG_ALL_CHANGED ((struct timespec){ 0, 1 })

/*
 * The mark of a pass over the tree at root_dirfd that a later pass will take as its
 * changed_since: the time now, less a second (file times come from a coarser clock),
 * taken before the file system's dirty pages are written back (syncfs), because a page
 * written through a shared mapping is written again without moving the file's times
 * until then. Call it before the pass reads anything. Returns 0, or 1 (errno set) when
 * the file system cannot promise that a later write moves ctime (tmpfs, ramfs: no write
 * back; syncfs failed): *ret is then CTA_MIG_ALL_CHANGED and the later pass sends the
 * data of every regular file again (a large one's changed blocks only).
 */
int cta_mig_pass_mark(int root_dirfd, struct timespec *ret);

/* Entries and data bytes of the tree at root_dirfd, in parallel threads (nothing is read
 * but metadata: inodes, and the xattr names, to bring their blocks into the cache). */
int cta_mig_scan(int root_dirfd, struct cta_mig_totals *ret, struct cta_error **err);
/* The same, and changed_bytes counts only the files whose ctime is at or after *since
 * (NULL: every file), a conservative measure of what a stream with that changed_since
 * would send of the data a copy there already holds. */
int cta_mig_scan_since(int root_dirfd, const struct timespec *since, struct cta_mig_totals *ret,
                       struct cta_error **err);
/* The same parallel scan for its side effect only: every entry's inode and xattr
 * blocks read into the caches, so a later sorted walk of a cold tree finds them
 * there. Errors are ignored (the walk reports its own). */
void cta_mig_warm(int root_dirfd);

/*
 * Stream the tree at root_dirfd into io. Files that vanish while the tree is walked are
 * skipped (counted in stats.vanished), a file that shrinks while read is sent with the
 * missing tail as a hole (stats.changed): a later pass fixes both. Returns 0 or < 0.
 */
int cta_mig_send(int root_dirfd, const struct cta_mig_io *io, const struct cta_mig_send_opts *o,
                 struct cta_mig_stats *ret, struct cta_error **err);

/*
 * Receive a stream from io into parent_dirfd/staging_name (a single path component),
 * which is created (mode 0700 until the root's metadata is applied at the end) unless
 * o->allow_existing and it exists. Every path is confined beneath it. On failure the
 * staging directory is removed entirely unless o->keep_on_failure. Errors:
 * CTA_E_MIG_STREAM (malformed/truncated), CTA_E_MIG_PATH (path escapes or goes through
 * a symlink), CTA_E_MIG_CHECKSUM, CTA_E_TOO_LARGE (limits), CTA_E_MIG_VERSION,
 * CTA_E_MIG_NO_SPACE, CTA_E_MIG_FS (xattr not supported), CTA_E_IO, CTA_E_CANCELLED.
 */
int cta_mig_recv(int parent_dirfd, const char *staging_name, const struct cta_mig_io *io,
                 const struct cta_mig_recv_opts *o, struct cta_mig_stats *ret,
                 struct cta_error **err);

/*
 * The destination's summary of the tree at dirfd (type, size, mtime of every entry, in
 * stream order) written to out as a have stream; give it to the sender as
 * cta_mig_send_opts.have. Memory does not grow with the tree.
 */
int cta_mig_have_build(int dirfd, const struct cta_mig_io *out, struct cta_mig_stats *ret,
                       struct cta_error **err);

struct cta_mig_have_opts {
        /* The block map directory the receiver (or sender) recorded into: large files
         * with a valid record are offered with their block hashes (have version 2), so
         * the source sends only the blocks that differ. NULL: version 1, no hashes. */
        const char *blockmap_dir;
        /* The caller already read this tree's inodes into the cache (ctamig/prepare did):
         * no parallel warm-up scan beside the walk (it cost a CPU second per 200k entries). */
        bool no_warm;
        /* Count the entries (the root aside) whose ctime is at or after this time
         * (stats.touched): has anything changed the tree since it was left? {0, 0}: off. */
        struct timespec touched_since;
};
int cta_mig_have_build_opts(int dirfd, const struct cta_mig_have_opts *o,
                            const struct cta_mig_io *out, struct cta_mig_stats *ret,
                            struct cta_error **err);

/* Remove block map records not used for max_age_sec (the daemon may call it at start). */
int cta_mig_blockmap_prune(const char *dir, uint64_t max_age_sec, struct cta_error **err);

enum {
        CTA_MIG_CMP_ATIME = 1 << 0,     /* compare atimes too */
        CTA_MIG_CMP_NO_SPARSE = 1 << 1, /* do not compare allocated blocks */
        CTA_MIG_CMP_NO_ROOT = 1 << 2,   /* skip the roots' own metadata */
};

/*
 * Compare two trees: types, content, sizes, modes, owners, ns mtimes (directories and
 * symlinks too), xattrs, symlink targets, device numbers, hard-link structure of regular
 * files, and sparseness (allocated blocks within 1/8 + 128 KiB). Returns 0 if identical,
 * 1 if not (*ret_report, if given, lists the first differences), < 0 on error.
 */
int cta_mig_tree_compare(int a_dirfd, int b_dirfd, unsigned flags, char **ret_report,
                         struct cta_error **err);

/*
 * Give the calling thread a working directory of its own (unshare(CLONE_FS)): this
 * module's xattr calls on entries it never opens (symlinks, devices, the files an
 * incremental pass leaves alone) then reach them by fchdir to their directory and the bare
 * name, one lookup, instead of "/proc/self/fd/<dir>/<name>" (six and a task lookup; for a
 * second pass of 200k files about 1 µs each, on both sides). Only for a thread that ends
 * with its work and relies on no relative path afterwards (a job thread, our own threads);
 * elsewhere nothing changes. Returns true if it took effect.
 */
bool cta_mig_thread_own_cwd(void);

/*
 * Optional zstd compression of a stream (docs/migration-stream.md, "Compression"): wrap
 * the sender's io with a compressor and the receiver's with a decompressor; the engine
 * does not know. Every write is flushed, so the receiver decodes all of it at once. The
 * decoder refuses a window above 2^CTA_MIG_ZSTD_WINDOW_LOG bytes (its memory is bounded
 * whatever the peer's frame header says), which levels up to CTA_MIG_ZSTD_LEVEL_MAX keep.
 * A corrupt stream reads as -EBADMSG. Free the wrapper after the engine returned.
 */
#define CTA_MIG_ZSTD_LEVEL_MAX 19
#define CTA_MIG_ZSTD_WINDOW_LOG 23
struct cta_mig_zio;
int cta_mig_zio_compress(const struct cta_mig_io *out, int level, struct cta_mig_zio **ret,
                         struct cta_error **err);
/* in: read(), or view() and release() (read in place, released as decoded) */
int cta_mig_zio_decompress(const struct cta_mig_io *in, struct cta_mig_zio **ret,
                           struct cta_error **err);
/* The io to give the engine: write() for a compressor, read() for a decompressor. */
struct cta_mig_io cta_mig_zio_io(struct cta_mig_zio *z);
/* Stream bytes (plain) and compressed bytes (packed) that went through so far. */
void cta_mig_zio_counts(const struct cta_mig_zio *z, uint64_t *plain, uint64_t *packed);
void cta_mig_zio_free(struct cta_mig_zio *z);
static inline void cta_mig_zio_freep(struct cta_mig_zio **z)
{
        cta_mig_zio_free(*z);
}

/* io helpers for plain file descriptors (pipes, sockets, files): ctx is (intptr_t)fd.
 * abort() shuts a socket down (a no-op for other fds). */
extern const struct cta_mig_io cta_mig_fd_io_ops;
static inline struct cta_mig_io cta_mig_fd_io(int fd)
{
        struct cta_mig_io io = cta_mig_fd_io_ops;
        io.ctx = (void *)(intptr_t)fd;
        return io;
}
