/*
 * The migration tree stream is what a source node sends us: bytes → cta_mig_recv into a
 * staging directory beneath a scratch parent, with small limits. Invariants: a failed
 * stream leaves no staging directory behind, and nothing ever appears beside it (every
 * path confined beneath the staging directory). Built a second time as mig_zstream_fuzz
 * (CTA_FUZZ_ZSTD): the bytes are a compressed stream (options/compress), decoded by
 * cta_mig_zio_decompress on their way to the receiver.
 */
#include <dirent.h>
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

static int g_parent = -1;
#ifdef CTA_FUZZ_ZSTD
static char g_dir[] = "/tmp/cta-fuzz-migz.XXXXXX";
#else
static char g_dir[] = "/tmp/cta-fuzz-mig.XXXXXX";
#endif

static void cleanup(void)
{
        (void)rmdir(g_dir); /* empty after every input */
}

static void setup(void)
{
        if (g_parent >= 0)
                return;
        FUZZ_CHECK(mkdtemp(g_dir) != NULL);
        g_parent = open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        FUZZ_CHECK(g_parent >= 0);
        atexit(cleanup);
}

/* Entries of the scratch parent other than "stage". */
static int strays(void)
{
        int fd = openat(g_parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        FUZZ_CHECK(d != NULL);
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                    strcmp(e->d_name, "stage"))
                        n++;
        closedir(d);
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        setup();
        int fd = memfd_create("stream", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
        FUZZ_CHECK(lseek(fd, 0, SEEK_SET) == 0);
        struct cta_mig_io io = cta_mig_fd_io(fd);
        struct cta_error *err = NULL;
#ifdef CTA_FUZZ_ZSTD
        struct cta_mig_zio *z = NULL;
        FUZZ_CHECK(cta_mig_zio_decompress(&io, &z, &err) == 0);
        io = cta_mig_zio_io(z);
#endif
        struct cta_mig_recv_opts o = {
                .limits = { .max_entries = 2000, .max_total_bytes = 16u << 20,
                            .max_file_size = 64u << 20, .max_record = 1u << 20 },
                .deny_devices = true,
                .allow_existing = true, /* incremental streams parse further */
        };
        struct cta_mig_stats st;
        int r = cta_mig_recv(g_parent, "stage", &io, &o, &st, &err);
#ifdef CTA_FUZZ_ZSTD
        cta_mig_zio_free(z);
#endif
        close(fd);
        struct stat sb;
        bool there = fstatat(g_parent, "stage", &sb, AT_SYMLINK_NOFOLLOW) == 0;
        if (r < 0) {
                FUZZ_CHECK(err != NULL);
                FUZZ_CHECK(!there); /* a failed stream leaves nothing */
        }
        cta_error_free(err);
        FUZZ_CHECK(strays() == 0);
        if (there)
                FUZZ_CHECK(cta_rm_rf_at(g_parent, "stage") == 0);
        return 0;
}
