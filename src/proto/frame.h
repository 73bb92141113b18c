/*
 * NUL framing: every message on the wire is one XML document followed by a
 * 0x00 byte. The framer buffers what the socket delivers and hands out one
 * complete frame at a time, in order, skipping empty and whitespace-only
 * frames (some clients send "\0<packet/>\0").
 *
 * Memory is bounded: a pending frame that has grown past max_frame without
 * its NUL is an error, so the buffer never holds more than max_frame plus
 * one read (plus complete frames the caller has not taken yet).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

struct cta_framer {
        struct cta_buf in;
        size_t max_frame;
        bool binary_ok; /* accept binary frames (logged-in agent-to-agent traffic) */
        size_t scan;  /* in.data[start..scan) is known to contain no NUL */
        size_t start; /* first byte not yet handed out */
        uint32_t bin_left; /* payload bytes of the current binary frame still to come */
};

void cta_framer_init(struct cta_framer *f, size_t max_frame);
/* Change the cap, e.g. raise it after login. Applies to the pending frame too. */
void cta_framer_set_max(struct cta_framer *f, size_t max_frame);
void cta_framer_done(struct cta_framer *f);

/* Append bytes. -CTA_E_FRAME_TOO_LARGE when the pending unterminated data
 * already exceeds max_frame (the caller then sends an error and closes). */
int cta_framer_feed(struct cta_framer *f, const void *data, size_t len);

/* 1 = a frame is ready (*ret_frame is NUL-terminated, borrowed until the next
 * feed/next call), 0 = need more, -CTA_E_FRAME_TOO_LARGE = a complete frame
 * longer than max_frame, or an unterminated one that already is. */
int cta_framer_next(struct cta_framer *f, const char **ret_frame, size_t *ret_len);

/* Bytes buffered and not yet handed out (for tests and accounting). */
size_t cta_framer_pending(const struct cta_framer *f);

/*
 * Binary frames (docs/migration-protocol.md): 0x01, a u32 big-endian length,
 * then that many payload bytes, no NUL. 0x01 cannot start an XML document,
 * so the two kinds never mix up. Only accepted when binary_ok is set.
 */
#define CTA_BINFRAME_MAGIC 0x01
#define CTA_BINFRAME_HDR 5u
#define CTA_BINFRAME_MAX (4u << 20)

enum cta_frame_kind { CTA_FRAME_XML = 1, CTA_FRAME_BINARY = 2 };

/* Like cta_framer_next(), also handing out binary frames when binary_ok:
 * *ret_kind says which. A binary frame's payload is handed out in pieces as it
 * arrives (a byte stream: the framer never holds a whole 4 MiB frame, and
 * bulk data is copied once, to its consumer); no XML frame is handed out
 * before the last piece. A binary frame while !binary_ok, or one longer than
 * CTA_BINFRAME_MAX, is -CTA_E_PROTO / -CTA_E_FRAME_TOO_LARGE. */
int cta_framer_next_any(struct cta_framer *f, enum cta_frame_kind *ret_kind,
                        const char **ret_frame, size_t *ret_len);

/* When nothing is buffered and a binary frame's payload is still to come:
 * how many of the next avail bytes straight from the socket are that payload
 * (counted as handed out). The caller passes them on without feeding them,
 * saving a copy of the bulk data. 0 otherwise. */
size_t cta_framer_bin_direct(struct cta_framer *f, size_t avail);
/* How many bytes straight from the socket cta_framer_bin_direct() would take now (the
 * rest of the binary frame's payload when nothing is buffered, else 0); counts nothing. */
size_t cta_framer_bin_pending(const struct cta_framer *f);

/* Write a binary frame header for a payload of len bytes into hdr[5]. */
void cta_binframe_header(uint8_t hdr[CTA_BINFRAME_HDR], uint32_t len);
