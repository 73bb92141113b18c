#pragma once

/*
 * The receiver's window on the incoming stream (migrate/recv.c): records are parsed in a
 * ring buffer, either its own, filled by a reader thread with large reads from the io, or
 * the io's own queue read in place (cta_mig_io.view: no copy, no thread), where bytes the
 * receiver lent to the direct-I/O writer stay queued until they are on disk.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrate/stream.h"

struct cta_error;

struct cta_mig_ring {
        const struct cta_mig_io *io;
        const uint8_t *buf; /* own (the reader thread's) or the io's (view) */
        uint8_t *own;
        size_t cap;
        size_t shift;             /* stream offset at + shift is at buf[(at + shift) % cap] */
        bool view;                /* the io's ring, read in place: no reader thread */
        uint64_t head, tail;      /* absolute stream offsets */
        uint64_t rel;             /* view: given back up to here (head, or a lent write's start) */
        uint64_t next_hdr, stop_at;
        uint32_t max_record;
        uint64_t want;      /* the consumer sleeps until tail reaches this (0: awake) */
        bool reader_waits;  /* the reader sleeps until there is room */
        bool done, stop;
        int rerr;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        uint8_t *asm_buf; /* a record that wraps around the ring end is copied here */
        size_t asm_cap;
        pthread_t th;
        bool started; /* the reader thread runs */
};

/* Start reading io (view mode when it has view and release). 0 or -1 with *err. */
int cta_mig_ring_open(struct cta_mig_ring *g, const struct cta_mig_io *io, uint32_t max_record,
                      struct cta_error **err);
/* Stop: the reader thread ends; a receiver that failed aborts an io still being read. */
void cta_mig_ring_close(struct cta_mig_ring *g, bool failed);
void cta_mig_ring_free(struct cta_mig_ring *g);

/* View mode: at least n bytes past the head (0: what is there now). False with rerr set,
 * or with fewer bytes at a clean end. */
bool cta_mig_ring_view(struct cta_mig_ring *g, size_t n);
/* The stream offset up to which bytes have arrived (without waiting). */
uint64_t cta_mig_ring_tail(struct cta_mig_ring *g);
/* n contiguous bytes at the head (waiting for them): 0, or -1 with *err. */
int cta_mig_ring_get(struct cta_mig_ring *g, size_t n, const uint8_t **ret,
                     struct cta_error **err);
/* Done with n bytes at the head; in view mode those from hold on stay lent. */
void cta_mig_ring_consume(struct cta_mig_ring *g, size_t n, uint64_t hold);
/* Is [p, p + n) in the io's own ring (not a copy of a record that wrapped)? */
bool cta_mig_ring_owns(const struct cta_mig_ring *g, const uint8_t *p, size_t n);
/* Stream bytes [at, at + n) if already there and contiguous in the ring, else NULL. */
const uint8_t *cta_mig_ring_peek(const struct cta_mig_ring *g, uint64_t at, size_t n,
                                 uint64_t tail);
