#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tap.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

TEST(base64__roundtrip)
{
        for (size_t n = 0; n < 64; n++) {
                uint8_t in[64], out[64];
                size_t olen = 0;
                for (size_t i = 0; i < n; i++)
                        in[i] = (uint8_t)(i * 37 + n);
                _cleanup_free_ char *enc = cta_b64_encode(in, n);
                ASSERT_SIZE_EQ(strlen(enc), (n + 2) / 3 * 4);
                ASSERT_TRUE(strchr(enc, '\n') == NULL);
                ASSERT_OK(cta_b64_decode(enc, strlen(enc), out, sizeof(out), &olen));
                ASSERT_SIZE_EQ(olen, n);
                ASSERT_MEM_EQ(in, out, n);
        }
        return 0;
}

TEST(base64__known_and_tolerant)
{
        static const struct {
                const char *in;
                const char *out;
        } ok[] = {
                { "cm9vdA==", "root" },     { "cm9vdA", "root" },       { "bXlwYXNz", "mypass" },
                { " cm9v\r\ndA==\n", "root" }, { "czNjcmV0", "s3cret" }, { "", "" },
                { "YQ==", "a" },             { "YWI=", "ab" },           { "YWI", "ab" },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(ok); i++) {
                char out[64];
                ASSERT_OK(cta_b64_decode_str(ok[i].in, strlen(ok[i].in), out, sizeof(out)));
                ASSERT_STR_EQ(out, ok[i].out);
        }
        return 0;
}

TEST(base64__garbage)
{
        static const char *bad[] = { "c", "cm9vdA===", "=cm9v", "cm9v*A==", "cm=9vdA==",
                                     "Y===", "YQ=x", "AA==AA==" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++) {
                uint8_t out[64];
                size_t n;
                ASSERT_INT_EQ(cta_b64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n),
                              -CTA_E_BAD_BASE64);
        }
        /* Bounded: the output never overruns the caller's buffer. */
        uint8_t small[3];
        size_t n;
        ASSERT_INT_EQ(cta_b64_decode("cm9vdA==", 8, small, sizeof(small), &n), -CTA_E_TOO_LARGE);
        /* A string field must not contain NUL. */
        char s[16];
        ASSERT_INT_EQ(cta_b64_decode_str("AGE=", 4, s, sizeof(s)), -CTA_E_BAD_BASE64);
        return 0;
}

TEST(buf__cap)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(10);
        ASSERT_OK(cta_buf_puts(&b, "hello"));
        ASSERT_OK(cta_buf_printf(&b, "%d", 1234));
        ASSERT_STR_EQ(b.data, "hello1234");
        ASSERT_INT_EQ(cta_buf_puts(&b, "xy"), -CTA_E_TOO_LARGE);
        ASSERT_STR_EQ(b.data, "hello1234");
        ASSERT_OK(cta_buf_putc(&b, '!'));
        cta_buf_consume(&b, 5);
        ASSERT_STR_EQ(b.data, "1234!");
        ASSERT_SIZE_EQ(b.len, 5);
        return 0;
}

TEST(error__wrap_keeps_code)
{
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        errno = ENOENT;
        int r = cta_error_errno(&e, CTA_E_IO, "open '%s'", "x");
        ASSERT_INT_EQ(r, -CTA_E_IO);
        ASSERT_INT_EQ(cta_error_wrap(&e, "load config"), -CTA_E_IO);
        ASSERT_STR_EQ(cta_error_msg(e), "load config: open 'x': No such file or directory");
        ASSERT_INT_EQ(e->sys_errno, ENOENT);
        ASSERT_STR_EQ(cta_errcode_name(CTA_E_NOT_LOGGED_IN), "not_logged_in");
        return 0;
}

TEST(error__set_may_quote_the_error_it_replaces)
{
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        (void)cta_error_set(&e, CTA_E_IO, 0, "read failed");
        ASSERT_INT_EQ(cta_error_set(&e, CTA_E_MIG_LINK_LOST, 0, "link lost: %s", cta_error_msg(e)),
                      -CTA_E_MIG_LINK_LOST);
        ASSERT_STR_EQ(cta_error_msg(e), "link lost: read failed");
        return 0;
}

TEST(parse__numbers)
{
        uint64_t u;
        int64_t i;
        bool b;
        ASSERT_OK(cta_parse_u64("4434", 65535, &u));
        ASSERT_INT_EQ(u, 4434);
        ASSERT_TRUE(cta_parse_u64("65536", 65535, &u) < 0);
        ASSERT_TRUE(cta_parse_u64("", 10, &u) < 0);
        ASSERT_TRUE(cta_parse_u64(" 1", 10, &u) < 0);
        ASSERT_TRUE(cta_parse_u64("1x", 10, &u) < 0);
        ASSERT_TRUE(cta_parse_u64("99999999999999999999999", UINT64_MAX, &u) < 0);
        ASSERT_OK(cta_parse_i64("-3000", -3000, 3000, &i));
        ASSERT_INT_EQ(i, -3000);
        ASSERT_TRUE(cta_parse_i64("-3001", -3000, 3000, &i) < 0);
        ASSERT_OK(cta_parse_bool("", true, &b));
        ASSERT_TRUE(b);
        ASSERT_OK(cta_parse_bool("0", true, &b));
        ASSERT_TRUE(!b);
        ASSERT_TRUE(cta_parse_bool("maybe", true, &b) < 0);
        return 0;
}

TEST(uuid__fresh_and_valid)
{
        char a[37], b[37];
        cta_uuid_new(a);
        cta_uuid_new(b);
        ASSERT_TRUE(cta_uuid_valid(a));
        ASSERT_TRUE(strcmp(a, b) != 0);
        ASSERT_TRUE(a[14] == '4');
        ASSERT_TRUE(cta_uuid_valid("A8A73D01-2969-6b48-9544-5cbf6ea7c554"));
        ASSERT_TRUE(!cta_uuid_valid("a8a73d01-2969-6b48-9544-5cbf6ea7c55"));
        ASSERT_TRUE(!cta_uuid_valid("a8a73d01x2969-6b48-9544-5cbf6ea7c554"));
        return 0;
}

TEST(hostport__split)
{
        char h[256];
        uint16_t p;
        ASSERT_OK(cta_split_hostport("127.0.0.11:4434", 1, h, &p));
        ASSERT_STR_EQ(h, "127.0.0.11");
        ASSERT_INT_EQ(p, 4434);
        ASSERT_OK(cta_split_hostport("node1", 4434, h, &p));
        ASSERT_INT_EQ(p, 4434);
        ASSERT_OK(cta_split_hostport("[::1]:0", 4434, h, &p));
        ASSERT_STR_EQ(h, "::1");
        ASSERT_INT_EQ(p, 0);
        ASSERT_OK(cta_split_hostport("::1", 4433, h, &p));
        ASSERT_STR_EQ(h, "::1");
        ASSERT_TRUE(cta_split_hostport("h:99999", 1, h, &p) < 0);
        ASSERT_TRUE(cta_split_hostport(":80", 1, h, &p) < 0);
        return 0;
}

TEST(file__atomic_write_and_read)
{
        char dir[] = "/tmp/cta-util-XXXXXX";
        ASSERT_NOT_NULL(mkdtemp(dir));
        _cleanup_free_ char *path = cta_xasprintf("%s/a/b/f", dir);
        _cleanup_free_ char *sub = cta_xasprintf("%s/a/b", dir);
        ASSERT_OK(cta_mkdir_p(sub, 0700, NULL));
        ASSERT_OK(cta_write_file_atomic(path, "abc\n", 4, 0600, NULL));
        struct stat st;
        ASSERT_OK(stat(path, &st));
        ASSERT_INT_EQ(st.st_mode & 0777, 0600);
        _cleanup_free_ char *data = NULL;
        size_t len;
        ASSERT_OK(cta_read_file(path, 100, &data, &len, NULL));
        ASSERT_STR_EQ(data, "abc\n");
        free(data);
        data = NULL;
        ASSERT_INT_EQ(cta_read_file(path, 2, &data, &len, NULL), -CTA_E_TOO_LARGE);
        _cleanup_free_ char *cmd = cta_xasprintf("rm -rf %s", dir);
        ASSERT_INT_EQ(system(cmd), 0);
        return 0;
}

TEST(sanitize__controls)
{
        _cleanup_free_ char *a = cta_sanitize("a\nb\x01\xff", 100);
        ASSERT_STR_EQ(a, "a?b??");
        _cleanup_free_ char *b = cta_sanitize("abcdef", 3);
        ASSERT_STR_EQ(b, "abc...");
        return 0;
}

/* Adding and taking nanoseconds carries into and borrows from the seconds. */
TEST(ts__add_ns)
{
        struct timespec t = { 10, 990000000L };
        cta_ts_add_ns(&t, 20000000L);
        ASSERT_TRUE(t.tv_sec == 11 && t.tv_nsec == 10000000L);
        cta_ts_add_ns(&t, -20000000L);
        ASSERT_TRUE(t.tv_sec == 10 && t.tv_nsec == 990000000L);
        cta_ts_add_ns(&t, 0);
        ASSERT_TRUE(t.tv_sec == 10 && t.tv_nsec == 990000000L);
        return 0;
}

TEST(u64__sorted_membership)
{
        /* (values past INT64_MAX and either side of every element: the order is unsigned) */
        uint64_t v[] = { UINT64_MAX, 7, 1ull << 63, 3, 100 };
        qsort(v, 5, sizeof(v[0]), cta_u64_cmp);
        ASSERT_TRUE(v[0] == 3 && v[1] == 7 && v[2] == 100 && v[3] == 1ull << 63 &&
                    v[4] == UINT64_MAX);
        for (size_t i = 0; i < 5; i++) {
                ASSERT_TRUE(cta_u64_in_sorted(v[i], v, 5));
                ASSERT_TRUE(!cta_u64_in_sorted(v[i] - 1, v, 5));
        }
        ASSERT_TRUE(!cta_u64_in_sorted(0, v, 5));
        ASSERT_TRUE(!cta_u64_in_sorted(3, NULL, 0));
        return 0;
}

/* Whether the kernel would back the mapping holding p with transparent huge pages
 * (smaps: 1 or 0; -1 if it cannot tell). */
static int thp_eligible(const void *p)
{
        FILE *f = fopen("/proc/self/smaps", "re");
        if (!f)
                return -1;
        char line[512];
        int in = 0, ret = -1;
        uintptr_t a = (uintptr_t)p;
        while (fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;
                if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
                        in = a >= lo && a < hi;
                else if (in && strncmp(line, "THPeligible:", 12) == 0) {
                        ret = atoi(line + 12);
                        break;
                }
        }
        fclose(f);
        return ret;
}

TEST(xmalloc_io__aligned_and_huge_where_allowed)
{
        ASSERT_SIZE_EQ(cta_io_size(5u << 20), 6u << 20);
        ASSERT_SIZE_EQ(cta_io_size(4u << 20), 4u << 20);
        uint8_t *p = cta_xmalloc_io(5u << 20);
        ASSERT_TRUE(((uintptr_t)p & (CTA_HUGE_ALIGN - 1)) == 0);
        memset(p, 0xa5, 6u << 20); /* rounded up to whole huge pages: 6 MiB are ours */
        ASSERT_TRUE(p[(6u << 20) - 1] == 0xa5);
        char mode[128] = "";
        FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
        if (f) {
                if (!fgets(mode, sizeof(mode), f))
                        mode[0] = 0;
                fclose(f);
        }
        /* with THP at [always] or [madvise] the buffer must be eligible: it is what lets a
         * direct read into it go to the disk in large requests */
        if (strstr(mode, "[always]") || strstr(mode, "[madvise]"))
                ASSERT_INT_EQ(thp_eligible(p), 1);
        cta_free_io(p, 5u << 20);
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(base64__roundtrip), T(base64__known_and_tolerant),
                             T(base64__garbage), T(buf__cap), T(error__wrap_keeps_code),
                             T(error__set_may_quote_the_error_it_replaces), T(parse__numbers), T(uuid__fresh_and_valid), T(hostport__split),
                             T(file__atomic_write_and_read), T(sanitize__controls),
                             T(ts__add_ns), T(u64__sorted_membership),
                             T(xmalloc_io__aligned_and_huge_where_allowed)));
}
