#pragma once

/* XXH3 streaming updates on the hot path of the migration engine: the
 * fastest implementation this CPU runs (AVX2 when it has it), picked once.
 * Same results as XXH3_64bits_update / XXH3_128bits_update, on states made
 * and read by libxxhash. */
#include <stddef.h>
#include <xxhash.h>

void cta_xxh3_64_update(XXH3_state_t *st, const void *p, size_t n);
void cta_xxh3_128_update(XXH3_state_t *st, const void *p, size_t n);
/* Which implementation runs: "avx2" or "sse2" (for logs and benchmarks). */
const char *cta_xxh3_impl(void);
