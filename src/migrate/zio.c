/*
 * zstd compression of a migration stream (stream.h, cta_mig_zio_*): an io adapter on
 * each side, so that neither the sender nor the receiver knows about it. The whole tree
 * stream is one zstd frame that is flushed at the end of every write and never ended
 * (the receiver stops at the trailer record, and a frame end would be bytes past it).
 * The decoder's window is capped, so a peer cannot make us allocate more than
 * CTA_MIG_ZSTD_WINDOW_LOG bytes of history whatever its frame header asks for.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "migrate/stream.h"
#include "util/error.h"
#include "util/util.h"

/* Compressed bytes handed to the inner io at a time (it frames them further). */
#define ZOUT_SIZE (1u << 20)
/* Compressed bytes read from an inner read() io at a time. */
#define ZIN_SIZE (256u << 10)
/* The magic number every frame we decode starts with. libzstd's streaming decoder also
 * takes the legacy formats (v0.5-v0.7), whose decoders size their buffers from the frame
 * header (up to a 2^27 window) whatever ZSTD_d_windowLogMax says: refused. */
static const uint8_t zmagic[4] = { 0x28, 0xb5, 0x2f, 0xfd };

struct cta_mig_zio {
        struct cta_mig_io inner;
        ZSTD_CCtx *cctx; /* compressing: a writer */
        ZSTD_DCtx *dctx; /* decompressing: a reader */
        uint8_t *buf;    /* writer: compressed output; reader over read(): compressed input */
        size_t len, pos; /* reader over read(): buf[pos, len) not yet decoded */
        bool pending;    /* reader: the decoder may hold output it could not give yet */
        bool ended;      /* reader: the inner io ended */
        uint8_t magic;   /* reader: bytes of the current frame's magic number seen (4: all) */
        uint64_t plain, packed;
};

static ssize_t zw_write(void *ctx, const void *data, size_t len)
{
        struct cta_mig_zio *z = ctx;
        ZSTD_inBuffer in = { data, len, 0 };
        for (;;) {
                ZSTD_outBuffer out = { z->buf, ZOUT_SIZE, 0 };
                /* flush: the receiver can decode everything written so far */
                size_t left = ZSTD_compressStream2(z->cctx, &out, &in, ZSTD_e_flush);
                if (ZSTD_isError(left))
                        return -ENOMEM; /* only allocation fails on valid input */
                if (out.pos) {
                        ssize_t n = z->inner.write(z->inner.ctx, z->buf, out.pos);
                        if (n < 0)
                                return n;
                        z->packed += out.pos;
                }
                if (left == 0 && in.pos == in.size)
                        break;
        }
        z->plain += len;
        return (ssize_t)len;
}

static void z_abort(void *ctx)
{
        struct cta_mig_zio *z = ctx;
        if (z->inner.abort)
                z->inner.abort(z->inner.ctx);
}

/* Compressed input, contiguous: from the inner io's own ring (view) or our buffer.
 * wait: block until some is there. > 0 bytes at *src, 0 at the end (or none yet when
 * !wait), < 0 an errno. */
static ssize_t zr_input(struct cta_mig_zio *z, bool wait, const uint8_t **src)
{
        if (z->inner.view) {
                const uint8_t *ring;
                size_t cap, head;
                ssize_t n = z->inner.view(z->inner.ctx, wait ? 1 : 0, &ring, &cap, &head);
                if (n < 0) /* the io's own code: the link is gone or we were stopped */
                        return -ECONNRESET;
                if (n == 0 && wait)
                        z->ended = true;
                *src = ring + head;
                return (size_t)n > cap - head ? (ssize_t)(cap - head) : n;
        }
        if (z->pos == z->len && wait && !z->ended) {
                ssize_t n = z->inner.read(z->inner.ctx, z->buf, ZIN_SIZE);
                if (n < 0)
                        return n;
                z->pos = 0;
                z->len = (size_t)n;
                z->ended = n == 0;
        }
        *src = z->buf + z->pos;
        return (ssize_t)(z->len - z->pos);
}

static void zr_consumed(struct cta_mig_zio *z, size_t n)
{
        if (!n)
                return;
        z->packed += n;
        if (z->inner.view)
                z->inner.release(z->inner.ctx, n);
        else
                z->pos += n;
}

/* Decode into out from what is there; -EBADMSG on a corrupt stream. */
static int zr_step(struct cta_mig_zio *z, ZSTD_outBuffer *out, const uint8_t *src, size_t n)
{
        ZSTD_inBuffer in = { src, n, 0 };
        size_t m = n < 4u - z->magic ? n : 4u - z->magic;
        if (z->magic < 4 && memcmp(src, zmagic + z->magic, m) != 0)
                return -EBADMSG; /* not a zstd frame */
        size_t r = ZSTD_decompressStream(z->dctx, out, &in);
        if (ZSTD_isError(r))
                return -EBADMSG;
        if (n && !in.pos && !out->pos) /* zstd always moves one of them: never spin */
                return -EBADMSG;
        z->magic = in.pos >= 4u - z->magic ? 4 : (uint8_t)(z->magic + in.pos);
        if (r == 0) /* a frame ended (not ours: we never end it): the next one starts */
                z->magic = 0;
        zr_consumed(z, in.pos);
        /* a full output may leave decoded bytes inside the decoder */
        z->pending = out->pos == out->size;
        return 0;
}

static ssize_t zr_read(void *ctx, void *buf, size_t len)
{
        struct cta_mig_zio *z = ctx;
        ZSTD_outBuffer out = { buf, len, 0 };
        /* what the decoder holds and the input already there, without waiting */
        const uint8_t *src;
        ssize_t n = zr_input(z, false, &src);
        if (n < 0)
                return n;
        if ((n > 0 || z->pending) && zr_step(z, &out, src, (size_t)n) < 0)
                return -EBADMSG;
        while (out.pos == 0) {
                n = zr_input(z, true, &src);
                if (n < 0)
                        return n;
                if (n == 0) /* a stream cut inside a block: the receiver says truncated */
                        return 0;
                if (zr_step(z, &out, src, (size_t)n) < 0)
                        return -EBADMSG;
        }
        z->plain += out.pos;
        return (ssize_t)out.pos;
}

int cta_mig_zio_compress(const struct cta_mig_io *out, int level, struct cta_mig_zio **ret,
                         struct cta_error **err)
{
        if (level < 1 || level > CTA_MIG_ZSTD_LEVEL_MAX)
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "compression level %d is not within 1-%d", level,
                                     CTA_MIG_ZSTD_LEVEL_MAX);
        struct cta_mig_zio *z = calloc(1, sizeof(*z));
        if (!z)
                return cta_error_set(err, CTA_E_NOMEM, ENOMEM, "compression state");
        z->inner = *out;
        z->cctx = ZSTD_createCCtx();
        z->buf = malloc(ZOUT_SIZE);
        /* each level's own window: up to 19 they stay within the one every receiver
         * accepts (the fast levels' 512 KiB keep both sides' memory small: forcing 8 MiB
         * cost about 8 MiB of RSS on each side in bench/migrate, for a ratio better by
         * half a percent there) */
        if (!z->cctx || !z->buf ||
            ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel, level))) {
                cta_mig_zio_free(z);
                return cta_error_set(err, CTA_E_NOMEM, ENOMEM, "compression state");
        }
        *ret = z;
        return 0;
}

int cta_mig_zio_decompress(const struct cta_mig_io *in, struct cta_mig_zio **ret,
                           struct cta_error **err)
{
        struct cta_mig_zio *z = calloc(1, sizeof(*z));
        if (!z)
                return cta_error_set(err, CTA_E_NOMEM, ENOMEM, "decompression state");
        z->inner = *in;
        z->dctx = ZSTD_createDCtx();
        if (!in->view)
                z->buf = malloc(ZIN_SIZE);
        if (!z->dctx || (!in->view && !z->buf) ||
            ZSTD_isError(ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax,
                                                CTA_MIG_ZSTD_WINDOW_LOG))) {
                cta_mig_zio_free(z);
                return cta_error_set(err, CTA_E_NOMEM, ENOMEM, "decompression state");
        }
        *ret = z;
        return 0;
}

struct cta_mig_io cta_mig_zio_io(struct cta_mig_zio *z)
{
        struct cta_mig_io io = { .abort = z_abort, .ctx = z };
        if (z->cctx)
                io.write = zw_write;
        else
                io.read = zr_read;
        return io;
}

void cta_mig_zio_counts(const struct cta_mig_zio *z, uint64_t *plain, uint64_t *packed)
{
        *plain = z ? z->plain : 0;
        *packed = z ? z->packed : 0;
}

void cta_mig_zio_free(struct cta_mig_zio *z)
{
        if (!z)
                return;
        ZSTD_freeCCtx(z->cctx);
        ZSTD_freeDCtx(z->dctx);
        free(z->buf);
        free(z);
}
