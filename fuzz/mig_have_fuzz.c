/*
 * The have stream is what a destination node sends back before a second pass: bytes →
 * the sender (cta_mig_send with them as its have stream) over a small fixed tree, output
 * discarded. Whatever the have stream says, the sender either sends a stream or fails
 * with an error; it never trusts a length or a block index it was given. Built again with
 * CTA_FUZZ_ZSTD (mig_zhave_fuzz.c): the bytes are a compressed summary (the source asked
 * for one), decoded by cta_mig_zio_decompress on their way to the sender.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "migrate/internal.h"
#include "migrate/stream.h"
#include "util/error.h"

static int g_root = -1;
static char g_dir[] = "/tmp/cta-fuzz-have.XXXXXX";

static void cleanup(void)
{
        (void)cta_rm_rf_at(AT_FDCWD, g_dir);
}

static void put(int dfd, const char *name, const char *text, off_t size)
{
        int fd = openat(dfd, name, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
        if (size)
                FUZZ_CHECK(ftruncate(fd, size) == 0);
        close(fd);
}

/* a/, a/f, b (sparse, 9 MiB: block-wise, with a block map candidate), c, l -> c */
static void setup(void)
{
        if (g_root >= 0)
                return;
        FUZZ_CHECK(mkdtemp(g_dir) != NULL);
        g_root = open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        FUZZ_CHECK(g_root >= 0);
        atexit(cleanup);
        FUZZ_CHECK(mkdirat(g_root, "a", 0755) == 0);
        put(g_root, "a/f", "in a", 0);
        put(g_root, "b", "big and sparse", 9 << 20);
        put(g_root, "c", "c", 0);
        FUZZ_CHECK(symlinkat("c", g_root, "l") == 0);
}

static ssize_t discard(void *ctx, const void *buf, size_t len)
{
        (void)ctx;
        (void)buf;
        return (ssize_t)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        setup();
        int fd = memfd_create("have", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
        FUZZ_CHECK(lseek(fd, 0, SEEK_SET) == 0);
        struct cta_mig_io have = cta_mig_fd_io(fd);
#ifdef CTA_FUZZ_ZSTD
        struct cta_error *zerr = NULL;
        struct cta_mig_zio *z = NULL;
        FUZZ_CHECK(cta_mig_zio_decompress(&have, &z, &zerr) == 0);
        have = cta_mig_zio_io(z);
#endif
        struct cta_mig_io out = { .write = discard };
        struct cta_mig_send_opts o = { .have = &have };
        struct cta_error *err = NULL;
        struct cta_mig_stats st;
        int r = cta_mig_send(g_root, &out, &o, &st, &err);
        FUZZ_CHECK(r == 0 || err != NULL);
        cta_error_free(err);
#ifdef CTA_FUZZ_ZSTD
        cta_mig_zio_free(z);
#endif
        close(fd);
        return 0;
}
