/* XXH3 update loops built for AVX2 (this file only is compiled with -mavx2;
 * hash.c calls it only on CPUs that have AVX2). Debian's libxxhash is built
 * for baseline x86-64 (SSE2): hashing every byte twice on each side of a
 * migration (file checksum and block map) was a tenth of the CPU of a big
 * copy. Same header, same algorithm: the results are bit-identical, so
 * states stay interchangeable with the library's reset/digest. */
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

#include "migrate/hash.h"

int cta_xxh3_avx2_64_update(void *state, const void *p, size_t n);
int cta_xxh3_avx2_128_update(void *state, const void *p, size_t n);

int cta_xxh3_avx2_64_update(void *state, const void *p, size_t n)
{
        return XXH3_64bits_update(state, p, n) == XXH_OK ? 0 : -1;
}

int cta_xxh3_avx2_128_update(void *state, const void *p, size_t n)
{
        return XXH3_128bits_update(state, p, n) == XXH_OK ? 0 : -1;
}
