/*
 * A tiny TAP harness for unit tests. Usage:
 *
 *   TEST(base64__roundtrip) { ASSERT_INT_EQ(f(), 0); return 0; }
 *   int main(void) { return tap_run(TESTS(base64__roundtrip, ...)); }
 *
 * A test returns 0 (pass), -1 (fail) or 77 (skip). ASSERT_* print both
 * values and return -1 from the test on failure.
 */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tap_test {
        const char *name;
        int (*fn)(void);
};

#define TEST(name) static int test_##name(void)
#define T(name) { #name, test_##name }
#define TESTS(...) ((const struct tap_test[]){ __VA_ARGS__, { NULL, NULL } })

static inline int tap_run(const struct tap_test *tests)
{
        int n = 0, failed = 0, skipped = 0;
        const char *only = getenv("TAP_ONLY");

        for (const struct tap_test *t = tests; t->name; t++)
                n++;
        printf("1..%d\n", n);
        for (int i = 0; i < n; i++) {
                const struct tap_test *t = &tests[i];
                if (only && !strstr(t->name, only)) {
                        printf("ok %d - %s # SKIP not selected\n", i + 1, t->name);
                        continue;
                }
                fflush(stdout);
                int r = t->fn();
                if (r == 77) {
                        skipped++;
                        printf("ok %d - %s # SKIP\n", i + 1, t->name);
                } else if (r == 0) {
                        printf("ok %d - %s\n", i + 1, t->name);
                } else {
                        failed++;
                        printf("not ok %d - %s\n", i + 1, t->name);
                }
                fflush(stdout);
        }
        printf("# %d passed, %d failed, %d skipped\n", n - failed - skipped, failed, skipped);
        return failed ? 1 : 0;
}

#define TAP_FAIL(...)                                                                              \
        do {                                                                                       \
                printf("# %s:%d: ", __FILE__, __LINE__);                                           \
                printf(__VA_ARGS__);                                                               \
                printf("\n");                                                                      \
                return -1;                                                                         \
        } while (0)

#define ASSERT_TRUE(c)                                                                             \
        do {                                                                                       \
                if (!(c))                                                                          \
                        TAP_FAIL("assertion failed: %s", #c);                                      \
        } while (0)

#define ASSERT_INT_EQ(a, b)                                                                        \
        do {                                                                                       \
                long long _a = (long long)(a), _b = (long long)(b);                                \
                if (_a != _b)                                                                      \
                        TAP_FAIL("%s == %s: %lld != %lld", #a, #b, _a, _b);                        \
        } while (0)

#define ASSERT_SIZE_EQ(a, b)                                                                       \
        do {                                                                                       \
                size_t _a = (size_t)(a), _b = (size_t)(b);                                         \
                if (_a != _b)                                                                      \
                        TAP_FAIL("%s == %s: %zu != %zu", #a, #b, _a, _b);                          \
        } while (0)

#define ASSERT_OK(r)                                                                               \
        do {                                                                                       \
                long long _r = (long long)(r);                                                     \
                if (_r < 0)                                                                        \
                        TAP_FAIL("%s failed: %lld", #r, _r);                                       \
        } while (0)

#define ASSERT_STR_EQ(a, b)                                                                        \
        do {                                                                                       \
                const char *_a = (a), *_b = (b);                                                   \
                if (!_a || !_b || strcmp(_a, _b) != 0)                                             \
                        TAP_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, _a ? _a : "(null)",         \
                                 _b ? _b : "(null)");                                              \
        } while (0)

#define ASSERT_MEM_EQ(a, b, n)                                                                     \
        do {                                                                                       \
                if (memcmp((a), (b), (n)) != 0)                                                    \
                        TAP_FAIL("%s and %s differ in their first %zu bytes", #a, #b, (size_t)(n)); \
        } while (0)

#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)
