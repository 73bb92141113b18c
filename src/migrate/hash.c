/* Picks the XXH3 update loop for this CPU (see hash_avx2.c). */
#include <pthread.h>
#include <stdbool.h>

#include "migrate/hash.h"

int cta_xxh3_avx2_64_update(void *state, const void *p, size_t n);
int cta_xxh3_avx2_128_update(void *state, const void *p, size_t n);

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_avx2;

static void pick(void)
{
#if defined(__x86_64__) && defined(CTA_HAVE_XXH_AVX2)
        __builtin_cpu_init();
        g_avx2 = __builtin_cpu_supports("avx2");
#endif
}

static bool use_avx2(void)
{
        pthread_once(&g_once, pick);
        return g_avx2;
}

void cta_xxh3_64_update(XXH3_state_t *st, const void *p, size_t n)
{
#ifdef CTA_HAVE_XXH_AVX2
        if (use_avx2()) {
                (void)cta_xxh3_avx2_64_update(st, p, n);
                return;
        }
#endif
        (void)XXH3_64bits_update(st, p, n);
}

void cta_xxh3_128_update(XXH3_state_t *st, const void *p, size_t n)
{
#ifdef CTA_HAVE_XXH_AVX2
        if (use_avx2()) {
                (void)cta_xxh3_avx2_128_update(st, p, n);
                return;
        }
#endif
        (void)XXH3_128bits_update(st, p, n);
}

const char *cta_xxh3_impl(void)
{
        return use_avx2() ? "avx2" : "sse2";
}
