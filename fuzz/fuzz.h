/* Shared by the fuzz targets and the standalone replayer. */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with a message: a broken invariant, reported as a crash. */
#define FUZZ_CHECK(c)                                                                              \
        do {                                                                                       \
                if (!(c)) {                                                                        \
                        fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);  \
                        abort();                                                                   \
                }                                                                                  \
        } while (0)
