/*
 * Unit tests for src/proto: framing, the hardened XML reader, request
 * parsing (every example packet of the spec and the seed), the garbage
 * table, the reply writer and the reply parser.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/frame.h"
#include "proto/proto_limits.h"
#include "proto/packet.h"
#include "proto/writer.h"
#include "proto/xml.h"
#include "tap.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

#define EID "3b0c8a54-1d2e-4f60-8a71-9c0d1e2f3a4b"
#define CLIENT "vzclient7-6a1f0c7e-52d4-4b0e-9a4e-0f1b2c3d4e5f"

/* ------------------------------------------------------------------ */
/* helpers */

static char *data_dir;

static bool dir_ok(const char *d)
{
        struct stat st;
        _cleanup_free_ char *p = cta_xasprintf("%s/seed-migrate-v2v-request.xml", d);
        return stat(p, &st) == 0;
}

/* tests/data/packets: $CTA_TEST_DATA, or found from this file's path
 * (relative to the build directory, which may be the cwd or an ancestor of
 * the test executable). */
static const char *packets_dir(void)
{
        if (data_dir)
                return data_dir;
        const char *env = getenv("CTA_TEST_DATA");
        if (env && dir_ok(env))
                return data_dir = cta_xstrdup(env);
        _cleanup_free_ char *src = cta_xstrdup(__FILE__);
        char *s = strstr(src, "tests/unit/test_proto.c");
        if (!s)
                return NULL;
        *s = '\0';
        _cleanup_free_ char *rel = cta_xasprintf("%stests/data/packets", src);
        if (dir_ok(rel))
                return data_dir = TAKE_PTR(rel);
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0)
                return NULL;
        exe[n] = '\0';
        for (int up = 0; up < 4; up++) {
                char *slash = strrchr(exe, '/');
                if (!slash)
                        break;
                *slash = '\0';
                _cleanup_free_ char *cand = cta_xasprintf("%s/%s", exe, rel);
                if (dir_ok(cand))
                        return data_dir = TAKE_PTR(cand);
        }
        return NULL;
}

static char *read_fixture(const char *name, size_t *len)
{
        const char *d = packets_dir();
        char *data = NULL;
        if (!d)
                return NULL;
        _cleanup_free_ char *path = cta_xasprintf("%s/%s", d, name);
        if (cta_read_file(path, 1 << 20, &data, len, NULL) < 0)
                return NULL;
        return data;
}

static struct cta_req *parse_fixture(const char *name)
{
        size_t len;
        _cleanup_free_ char *data = read_fixture(name, &len);
        struct cta_req *r = NULL;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        if (!data) {
                printf("# cannot read fixture %s\n", name);
                return NULL;
        }
        if (cta_req_parse(data, len, &r, &err) < 0) {
                printf("# %s: %s\n", name, cta_error_msg(err));
                return NULL;
        }
        return r;
}

static struct cta_req *parse_str(const char *s)
{
        struct cta_req *r = NULL;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        if (cta_req_parse(s, strlen(s), &r, &err) < 0) {
                printf("# parse failed: %s\n", cta_error_msg(err));
                return NULL;
        }
        return r;
}

/* Build a string of n copies of unit between head and tail. */
static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        (void)cta_buf_puts(&b, head);
        for (size_t i = 0; i < n; i++)
                (void)cta_buf_puts(&b, unit);
        (void)cta_buf_puts(&b, tail);
        return cta_buf_steal(&b, NULL);
}

/* Strip the frame's NUL for parsing. */
static struct cta_resp *resp_of(const struct cta_buf *b)
{
        struct cta_resp *r = NULL;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        if (b->len == 0 || b->data[b->len - 1] != '\0') {
                printf("# frame does not end with NUL\n");
                return NULL;
        }
        if (cta_resp_parse(b->data, b->len - 1, &r, &err) < 0) {
                printf("# resp parse failed: %s\n", cta_error_msg(err));
                return NULL;
        }
        return r;
}

/* ------------------------------------------------------------------ */
/* framing */

struct frames {
        char got[16][64];
        size_t n;
};

static int drain(struct cta_framer *f, struct frames *fr)
{
        const char *p;
        size_t len;
        int r;
        while ((r = cta_framer_next(f, &p, &len)) == 1) {
                if (fr->n >= 16 || len >= 64 || strlen(p) != len)
                        return -1;
                memcpy(fr->got[fr->n++], p, len + 1);
        }
        return r;
}

TEST(frame__split_and_joined)
{
        struct cta_framer f;
        struct frames fr = { .n = 0 };
        cta_framer_init(&f, 1024);
        ASSERT_OK(cta_framer_feed(&f, "<a/>\0<b/>\0<c", 12));
        ASSERT_INT_EQ(drain(&f, &fr), 0);
        ASSERT_SIZE_EQ(fr.n, 2);
        ASSERT_STR_EQ(fr.got[0], "<a/>");
        ASSERT_STR_EQ(fr.got[1], "<b/>");
        ASSERT_OK(cta_framer_feed(&f, "/>", 2));
        ASSERT_INT_EQ(drain(&f, &fr), 0);
        ASSERT_SIZE_EQ(fr.n, 2);
        ASSERT_OK(cta_framer_feed(&f, "\0", 1));
        ASSERT_INT_EQ(drain(&f, &fr), 0);
        ASSERT_SIZE_EQ(fr.n, 3);
        ASSERT_STR_EQ(fr.got[2], "<c/>");
        ASSERT_SIZE_EQ(cta_framer_pending(&f), 0);
        cta_framer_done(&f);
        return 0;
}

TEST(frame__byte_at_a_time)
{
        static const char stream[] = "\0<packet id=\"1\"/>\0\0 \r\n\t\0<x>y</x>\0<z/>\0";
        struct cta_framer f;
        struct frames fr = { .n = 0 };
        cta_framer_init(&f, 64);
        for (size_t i = 0; i < sizeof(stream) - 1; i++) {
                ASSERT_OK(cta_framer_feed(&f, stream + i, 1));
                ASSERT_INT_EQ(drain(&f, &fr), 0);
        }
        ASSERT_SIZE_EQ(fr.n, 3);
        ASSERT_STR_EQ(fr.got[0], "<packet id=\"1\"/>");
        ASSERT_STR_EQ(fr.got[1], "<x>y</x>");
        ASSERT_STR_EQ(fr.got[2], "<z/>");
        cta_framer_done(&f);
        return 0;
}

TEST(frame__empty_and_ebh_style)
{
        struct cta_framer f;
        struct frames fr = { .n = 0 };
        cta_framer_init(&f, 64);
        /* EBH writes a NUL before and after every packet. */
        ASSERT_OK(cta_framer_feed(&f, "\0<packet/>\0\0<packet/>\0", 22));
        ASSERT_INT_EQ(drain(&f, &fr), 0);
        ASSERT_SIZE_EQ(fr.n, 2);
        ASSERT_STR_EQ(fr.got[0], "<packet/>");
        ASSERT_STR_EQ(fr.got[1], "<packet/>");
        /* Whitespace-only frames are skipped too; whitespace around a packet is kept. */
        ASSERT_OK(cta_framer_feed(&f, "  \n\0\n<a/>\n\0", 11));
        ASSERT_INT_EQ(drain(&f, &fr), 0);
        ASSERT_SIZE_EQ(fr.n, 3);
        ASSERT_STR_EQ(fr.got[2], "\n<a/>\n");
        ASSERT_SIZE_EQ(cta_framer_pending(&f), 0);
        cta_framer_done(&f);
        return 0;
}

TEST(frame__over_limit)
{
        struct cta_framer f;
        const char *p;
        size_t len;

        /* Exactly max_frame bytes is fine. */
        cta_framer_init(&f, 8);
        ASSERT_OK(cta_framer_feed(&f, "12345678\0", 9));
        ASSERT_INT_EQ(cta_framer_next(&f, &p, &len), 1);
        ASSERT_SIZE_EQ(len, 8);
        cta_framer_done(&f);

        /* A complete frame longer than max_frame. */
        cta_framer_init(&f, 8);
        ASSERT_OK(cta_framer_feed(&f, "123456789\0", 10));
        ASSERT_INT_EQ(cta_framer_next(&f, &p, &len), -CTA_E_FRAME_TOO_LARGE);
        cta_framer_done(&f);

        /* Unterminated data past the cap: next() reports it, feed() refuses to grow. */
        cta_framer_init(&f, 8);
        ASSERT_OK(cta_framer_feed(&f, "123456789", 9));
        ASSERT_INT_EQ(cta_framer_next(&f, &p, &len), -CTA_E_FRAME_TOO_LARGE);
        ASSERT_INT_EQ(cta_framer_feed(&f, "x", 1), -CTA_E_FRAME_TOO_LARGE);
        cta_framer_done(&f);

        /* Never buffers more than max_frame + one read, even without next(). */
        cta_framer_init(&f, 4096);
        char chunk[1000];
        memset(chunk, 'a', sizeof(chunk));
        int r = 0;
        for (int i = 0; i < 100 && r == 0; i++)
                r = cta_framer_feed(&f, chunk, sizeof(chunk));
        ASSERT_INT_EQ(r, -CTA_E_FRAME_TOO_LARGE);
        ASSERT_TRUE(cta_framer_pending(&f) <= 4096 + sizeof(chunk));
        cta_framer_done(&f);

        /* Raising the cap (after login) lets the same frame through. */
        cta_framer_init(&f, 4);
        ASSERT_OK(cta_framer_feed(&f, "<abc/>", 6));
        ASSERT_INT_EQ(cta_framer_next(&f, &p, &len), -CTA_E_FRAME_TOO_LARGE);
        cta_framer_set_max(&f, 64);
        ASSERT_OK(cta_framer_feed(&f, "\0", 1));
        ASSERT_INT_EQ(cta_framer_next(&f, &p, &len), 1);
        ASSERT_STR_EQ(p, "<abc/>");
        cta_framer_done(&f);
        return 0;
}

TEST(frame__many_pipelined)
{
        /* 200k frames in one buffer must be linear, not quadratic. */
        struct cta_framer f;
        const char *p;
        size_t len, n = 0;
        _cleanup_free_ char *s = repeat("", "<a/>", 1, "");
        struct cta_buf b = CTA_BUF_INIT(0);
        for (int i = 0; i < 200000; i++)
                ASSERT_OK(cta_buf_append(&b, "<a/>\0", 5));
        cta_framer_init(&f, 16);
        ASSERT_OK(cta_framer_feed(&f, b.data, b.len));
        while (cta_framer_next(&f, &p, &len) == 1) {
                if (len != 4 || memcmp(p, s, 4) != 0)
                        TAP_FAIL("frame %zu wrong", n);
                n++;
        }
        ASSERT_SIZE_EQ(n, 200000);
        cta_buf_done(&b);
        cta_framer_done(&f);
        return 0;
}

TEST(frame__binary_in_pieces)
{
        /* A binary frame is handed out as it arrives, never as a whole; XML
         * after it comes out only once its last byte has; the middle of a
         * frame can bypass the buffer (cta_framer_bin_direct). */
        struct cta_framer f;
        enum cta_frame_kind kind;
        const char *p;
        size_t len;
        uint8_t hdr[CTA_BINFRAME_HDR];
        char got[32] = "";
        size_t ngot = 0;

        cta_framer_init(&f, 64);
        f.binary_ok = true;
        cta_binframe_header(hdr, 10);
        ASSERT_OK(cta_framer_feed(&f, hdr, 3));
        ASSERT_INT_EQ(cta_framer_next_any(&f, &kind, &p, &len), 0);
        ASSERT_OK(cta_framer_feed(&f, hdr + 3, 2));
        ASSERT_OK(cta_framer_feed(&f, "0123", 4));
        ASSERT_SIZE_EQ(cta_framer_bin_pending(&f), 0); /* "0123" is buffered */
        ASSERT_INT_EQ(cta_framer_next_any(&f, &kind, &p, &len), 1);
        ASSERT_INT_EQ(kind, CTA_FRAME_BINARY);
        ASSERT_SIZE_EQ(len, 4);
        memcpy(got + ngot, p, len);
        ngot += len;
        ASSERT_INT_EQ(cta_framer_next_any(&f, &kind, &p, &len), 0);
        /* Nothing buffered, 6 payload bytes to come: 4 of "45678<x/>" go direct. */
        ASSERT_SIZE_EQ(cta_framer_bin_pending(&f), 6);
        ASSERT_SIZE_EQ(cta_framer_bin_pending(&f), 6); /* asking takes nothing */
        ASSERT_SIZE_EQ(cta_framer_bin_direct(&f, 4), 4);
        ASSERT_SIZE_EQ(cta_framer_bin_pending(&f), 2);
        memcpy(got + ngot, "4567", 4);
        ngot += 4;
        ASSERT_SIZE_EQ(cta_framer_bin_direct(&f, 0), 0);
        /* The last 2 payload bytes and an XML frame in one read: not direct
         * as a whole; fed, they come out in order. */
        ASSERT_SIZE_EQ(cta_framer_bin_direct(&f, 7), 2);
        memcpy(got + ngot, "89", 2);
        ngot += 2;
        ASSERT_SIZE_EQ(cta_framer_bin_direct(&f, 5), 0);
        ASSERT_SIZE_EQ(cta_framer_bin_pending(&f), 0); /* the frame is complete */
        ASSERT_OK(cta_framer_feed(&f, "<x/>\0", 5));
        ASSERT_INT_EQ(cta_framer_next_any(&f, &kind, &p, &len), 1);
        ASSERT_INT_EQ(kind, CTA_FRAME_XML);
        ASSERT_STR_EQ(p, "<x/>");
        ASSERT_SIZE_EQ(ngot, 10);
        ASSERT_TRUE(memcmp(got, "0123456789", 10) == 0);

        /* XML never comes out of the middle of a binary frame, even if the
         * payload looks like a packet; an empty binary frame is skipped. */
        cta_binframe_header(hdr, 5);
        ASSERT_OK(cta_framer_feed(&f, hdr, 5));
        ASSERT_OK(cta_framer_feed(&f, "<y/>", 4));
        ASSERT_INT_EQ(cta_framer_next(&f, &p, &len), 0);
        ASSERT_INT_EQ(cta_framer_next_any(&f, &kind, &p, &len), 1);
        ASSERT_INT_EQ(kind, CTA_FRAME_BINARY);
        ASSERT_SIZE_EQ(len, 4);
        ASSERT_OK(cta_framer_feed(&f, "\0", 1));
        cta_binframe_header(hdr, 0);
        ASSERT_OK(cta_framer_feed(&f, hdr, 5));
        ASSERT_OK(cta_framer_feed(&f, "<z/>\0", 5));
        ASSERT_INT_EQ(cta_framer_next_any(&f, &kind, &p, &len), 1);
        ASSERT_INT_EQ(kind, CTA_FRAME_BINARY);
        ASSERT_SIZE_EQ(len, 1);
        ASSERT_INT_EQ(cta_framer_next_any(&f, &kind, &p, &len), 1);
        ASSERT_INT_EQ(kind, CTA_FRAME_XML);
        ASSERT_STR_EQ(p, "<z/>");

        /* A header announcing more than the maximum is refused. */
        cta_binframe_header(hdr, CTA_BINFRAME_MAX + 1);
        ASSERT_OK(cta_framer_feed(&f, hdr, 5));
        ASSERT_INT_EQ(cta_framer_next_any(&f, &kind, &p, &len), -CTA_E_FRAME_TOO_LARGE);
        cta_framer_done(&f);
        return 0;
}

/* ------------------------------------------------------------------ */
/* XML reader */

TEST(xml__dom_local_names_text_attrs)
{
        static const char doc[] =
                "<?xml version=\"1.0\"?>\n"
                "<p:a xmlns:p=\"urn:p\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\""
                " x=\"1\" p:y=\"a&amp;b&#38;c&lt;&#x41;&quot;\" xsi:type=\"p:t\">"
                "<p:b> t1 </p:b><c><![CDATA[<raw>&amp;]]></c>head&lt;&amp;&#65;<b>two</b>"
                "<!-- comment --><?pi x?></p:a>";
        _cleanup_(cta_xnode_freep) struct cta_xnode *root = NULL;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_xnode *x = NULL;
        /* NUL bytes (and with them UTF-16/32) are refused. */
        ASSERT_INT_EQ(cta_xml_parse("<a/>\0", 5, NULL, &x, NULL), -CTA_E_PROTO);
        ASSERT_INT_EQ(cta_xml_parse("\xff\xfe<\0a\0/\0>\0", 10, NULL, &x, NULL), -CTA_E_PROTO);
        ASSERT_NULL(x);
        ASSERT_OK(cta_xml_parse(doc, sizeof(doc) - 1, NULL, &root, &err));
        ASSERT_STR_EQ(root->name, "a");
        ASSERT_SIZE_EQ(root->nattrs, 2); /* xsi:type dropped, xmlns not attributes */
        ASSERT_STR_EQ(cta_xnode_attr(root, "x"), "1");
        ASSERT_STR_EQ(cta_xnode_attr(root, "y"), "a&b&c<A\"");
        ASSERT_NULL(cta_xnode_attr(root, "type"));
        ASSERT_STR_EQ(root->text, "head<&A");
        ASSERT_SIZE_EQ(root->text_len, 7);
        const struct cta_xnode *b = cta_xnode_child(root, "b");
        ASSERT_NOT_NULL(b);
        ASSERT_STR_EQ(b->text, " t1 ");
        ASSERT_STR_EQ(cta_xnode_ctext(root, "b"), "t1");
        ASSERT_STR_EQ(cta_xnode_ctext(root, "c"), "<raw>&amp;");
        const struct cta_xnode *b2 = cta_xnode_next_named(b);
        ASSERT_NOT_NULL(b2);
        ASSERT_STR_EQ(b2->text, "two");
        ASSERT_NULL(cta_xnode_next_named(b2));
        ASSERT_TRUE(b2->parent == root);
        ASSERT_NULL(cta_xnode_ctext(root, "nope"));
        ASSERT_SIZE_EQ(cta_xnode_nchildren(root), 3);
        ASSERT_STR_EQ(cta_xnode_child(root, "c")->text, "<raw>&amp;");
        /* Empty elements have "" text, never NULL. */
        ASSERT_STR_EQ(cta_xnode_ctext(b2, "x") ? "x" : "", "");
        return 0;
}

TEST(xml__custom_limits)
{
        struct cta_xml_limits lim = { .max_depth = 3, .max_nodes = 4, .max_attrs = 2,
                                      .max_text = 8, .max_total = 64 };
        struct {
                const char *doc;
                int code;
        } cases[] = {
                { "<a><b><c/></b></a>", 0 },
                { "<a><b><c><d/></c></b></a>", -CTA_E_TOO_LARGE },
                { "<a><b/><b/><b/></a>", 0 },
                { "<a><b/><b/><b/><b/></a>", -CTA_E_TOO_LARGE },
                { "<a x='1' y='2'/>", 0 },
                { "<a x='1' y='2' z='3'/>", -CTA_E_TOO_LARGE },
                { "<a xmlns:p='u' xmlns:q='v' x='1'/>", -CTA_E_TOO_LARGE },
                { "<a>12345678</a>", 0 },
                { "<a>123456789</a>", -CTA_E_TOO_LARGE },
                { "<a>1234<!-- -->56789</a>", -CTA_E_TOO_LARGE },
                { "<a x='123456789'/>", -CTA_E_TOO_LARGE },
                { "<a><b>12345678</b><b>12345678</b><b>12345678</b></a>", 0 },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                struct cta_xnode *root = NULL;
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                int r = cta_xml_parse(cases[i].doc, strlen(cases[i].doc), &lim, &root, &err);
                if (r != cases[i].code)
                        TAP_FAIL("case %zu (%s): %d != %d (%s)", i, cases[i].doc, r, cases[i].code,
                                 cta_error_msg(err));
                cta_xnode_free(root);
        }
        struct cta_xml_limits tot = { .max_depth = 8, .max_nodes = 100, .max_attrs = 8,
                                      .max_text = 100, .max_total = 20 };
        struct cta_xnode *root = NULL;
        ASSERT_INT_EQ(cta_xml_parse("<a><b>1234567890</b><b>1234567890</b></a>", 41, &tot, &root,
                                    NULL),
                      -CTA_E_TOO_LARGE);
        ASSERT_NULL(root);
        return 0;
}

/* Every entry must fail, with an error message, without crashing and
 * without libxml2 writing to stderr. */
TEST(xml__garbage_table)
{
        _cleanup_free_ char *deep = repeat("<packet>", "<a>", 10000, "");
        _cleanup_free_ char *deep_closed = NULL;
        {
                struct cta_buf b = CTA_BUF_INIT(0);
                (void)cta_buf_puts(&b, "<packet>");
                for (int i = 0; i < 10000; i++)
                        (void)cta_buf_puts(&b, "<a>");
                for (int i = 0; i < 10000; i++)
                        (void)cta_buf_puts(&b, "</a>");
                (void)cta_buf_puts(&b, "</packet>");
                deep_closed = cta_buf_steal(&b, NULL);
        }
        _cleanup_free_ char *huge = repeat("<packet><cookie>", "0123456789abcdef", 70000,
                                           "</cookie></packet>");
        _cleanup_free_ char *attrs = NULL;
        {
                struct cta_buf b = CTA_BUF_INIT(0);
                (void)cta_buf_puts(&b, "<packet");
                for (int i = 0; i < 200; i++)
                        (void)cta_buf_printf(&b, " a%d=\"%d\"", i, i);
                (void)cta_buf_puts(&b, "/>");
                attrs = cta_buf_steal(&b, NULL);
        }
        _cleanup_free_ char *nodes = repeat("<packet>", "<a/>", 10001, "</packet>");
        _cleanup_free_ char *longname = repeat("<packet><", "n", 2000, "/></packet>");
        static const char laughs[] =
                "<?xml version=\"1.0\"?>\n"
                "<!DOCTYPE lolz [\n"
                " <!ENTITY lol \"lol\">\n"
                " <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
                " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
                " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
                " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
                " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
                " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
                " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
                "]>\n"
                "<packet><cookie>&lol9;</cookie></packet>";
        const char *cases[] = {
                "",
                "   ",
                "<packet",
                "<packet version=\"4.0.0\"><data><system><login>",
                "<packet></packed>",
                "<packet><a></b></packet>",
                "<packet/><packet/>",
                "text only",
                "<packet>&undefined;</packet>",
                "<packet a=\"&undefined;\"/>",
                "<packet a=\"1\" a=\"2\"/>",
                "<packet>\x01</packet>",
                "<packet>\xff\xfe</packet>",
                "<packet>&#0;</packet>",
                "<1packet/>",
                laughs,
                "<?xml version=\"1.0\"?><!DOCTYPE packet [<!ENTITY xxe SYSTEM "
                "\"file:///etc/passwd\">]><packet><cookie>&xxe;</cookie></packet>",
                "<!DOCTYPE packet SYSTEM \"http://127.0.0.1:9/x.dtd\"><packet/>",
                "<!DOCTYPE packet PUBLIC \"-//x//EN\" \"x.dtd\"><packet/>",
                "<!DOCTYPE packet><packet/>",
                "<!DOCTYPE packet [<!ELEMENT packet ANY>]><packet/>",
                "<!DOCTYPE packet [<!ATTLIST packet id CDATA \"x\">]><packet/>",
                "<!DOCTYPE packet [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]><packet/>",
                "<?xml version=\"1.0\" encoding=\"UTF-7\"?><packet/>x",
                "<?xml version=\"2.0\"?><!DOCTYPE a [<!ENTITY x \"y\">]><packet/>",
                "<packet><!-- unterminated comment </packet>",
                "<packet><![CDATA[ unterminated </packet>",
                "<packet><? unterminated pi </packet>",
                "<packet></",
                deep,
                deep_closed,
                huge,
                attrs,
                nodes,
                longname,
        };
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        FILE *cap = tmpfile();
        ASSERT_TRUE(saved >= 0 && cap);
        ASSERT_TRUE(dup2(fileno(cap), STDERR_FILENO) >= 0);
        int bad = -1;
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases) && bad < 0; i++) {
                struct cta_xnode *root = NULL;
                struct cta_req *q = NULL;
                struct cta_resp *p = NULL;
                _cleanup_(cta_error_freep) struct cta_error *e1 = NULL;
                _cleanup_(cta_error_freep) struct cta_error *e2 = NULL;
                _cleanup_(cta_error_freep) struct cta_error *e3 = NULL;
                size_t n = strlen(cases[i]);
                int r1 = cta_xml_parse(cases[i], n, NULL, &root, &e1);
                int r2 = cta_req_parse(cases[i], n, &q, &e2);
                int r3 = cta_resp_parse(cases[i], n, &p, &e3);
                /* Replies may hold more elements than requests (a node's full
                 * get_info): the element-count case is a request-only limit. */
                if (cases[i] == nodes && r3 >= 0) {
                        cta_resp_free(p);
                        p = NULL;
                        r3 = -1;
                        e3 = cta_error_free(e3);
                        (void)cta_error_set(&e3, CTA_E_PROTO, 0, "n/a");
                }
                if (r1 >= 0 || r2 >= 0 || r3 >= 0 || !e1 || !e2 || !e3 || !*cta_error_msg(e1))
                        bad = (int)i;
                cta_xnode_free(root);
                cta_req_free(q);
                cta_resp_free(p);
        }
        fflush(stderr);
        ASSERT_TRUE(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        long written = ftell(cap);
        fclose(cap);
        if (bad >= 0)
                TAP_FAIL("garbage case %d was accepted: %.60s", bad, cases[bad]);
        ASSERT_INT_EQ(written, 0);
        return 0;
}

/* libxml2 2.9 checks one tag's attributes for duplicates in quadratic time:
 * floods must be refused before it sees them (these take minutes there). */
TEST(xml__attribute_flood_is_linear)
{
        for (size_t u = 0; u < 3; u++) {
                struct cta_buf b = CTA_BUF_INIT(0);
                /* A broken tag first (SAX off), then the flood in a later tag. */
                ASSERT_OK(cta_buf_puts(&b, "<packet><x a='1' a='2'/><y"));
                for (int i = 0; i < 300000; i++) {
                        if (u == 0)
                                ASSERT_OK(cta_buf_printf(&b, " a%d='1'", i));
                        else if (u == 1)
                                ASSERT_OK(cta_buf_printf(&b, " xmlns:p%d='u'", i));
                        else
                                ASSERT_OK(cta_buf_printf(&b, " a%d='=\"=>'", i));
                }
                ASSERT_OK(cta_buf_puts(&b, "/></packet>"));
                uint64_t t0 = cta_now_ms();
                struct cta_xnode *root = NULL;
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                int r = cta_xml_parse(b.data, b.len, NULL, &root, &err);
                uint64_t ms = cta_now_ms() - t0;
                cta_buf_done(&b);
                ASSERT_INT_EQ(r, -CTA_E_TOO_LARGE);
                ASSERT_TRUE(strstr(cta_error_msg(err), "attributes") != NULL);
                if (ms > 2000)
                        TAP_FAIL("flood %zu took %" PRIu64 " ms", u, ms);
        }
        /* Quoted '=' and '>' do not count; 32 attributes are fine. */
        struct cta_buf ok = CTA_BUF_INIT(0);
        ASSERT_OK(cta_buf_puts(&ok, "<packet"));
        for (int i = 0; i < 32; i++)
                ASSERT_OK(cta_buf_printf(&ok, " a%d=\"x=y>z\"", i));
        ASSERT_OK(cta_buf_puts(&ok, "><!-- <a b=c> --><![CDATA[<x y=1 z=2>]]><?pi a=b c=d?></packet>"));
        _cleanup_(cta_xnode_freep) struct cta_xnode *root = NULL;
        int r = cta_xml_parse(ok.data, ok.len, NULL, &root, NULL);
        cta_buf_done(&ok);
        ASSERT_OK(r);
        ASSERT_SIZE_EQ(root->nattrs, 32);
        ASSERT_STR_EQ(cta_xnode_attr(root, "a31"), "x=y>z");
        return 0;
}

TEST(xml__error_messages)
{
        struct {
                const char *doc;
                int code;
                const char *needle;
        } cases[] = {
                { "<!DOCTYPE packet><packet/>", CTA_E_PROTO, "DOCTYPE" },
                { "<packet><a></b></packet>", CTA_E_PROTO, "not well-formed" },
                { "<data/>", CTA_E_PROTO, "<packet>" },
                { "<packet id=\"a b\"/>", CTA_E_BAD_PARAM, "packet id" },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                struct cta_req *q = NULL;
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                int r = cta_req_parse(cases[i].doc, strlen(cases[i].doc), &q, &err);
                if (r != -cases[i].code || cta_error_code(err) != cases[i].code ||
                    !strstr(cta_error_msg(err), cases[i].needle))
                        TAP_FAIL("case %zu: r=%d msg=%s", i, r, cta_error_msg(err));
                ASSERT_NULL(q);
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* requests */

static const char *const fixtures[] = {
        "seed-migrate-ok-reply.xml",
        "seed-migrate-v2v-request.xml",
        "seed-progress-reply.xml",
        "spec-error-reply.xml",
        "spec-event.xml",
        "spec-generate-pass-request.xml",
        "spec-get-info-reply.xml",
        "spec-get-info-request.xml",
        "spec-get-list-reply.xml",
        "spec-get-list-request.xml",
        "spec-get-realm-reply.xml",
        "spec-greeting-reply.xml",
        "spec-login-request.xml",
        "spec-migrate-eid-list-request.xml",
        "spec-migrate-ok-reply.xml",
        "spec-progress-reply.xml",
        "extra-cancel-request.xml",
        "extra-ebh-get-list-request.xml",
        "extra-login-namespaced-request.xml",
        "extra-migrate-config-request.xml",
        "extra-no-data-request.xml",
        "extra-subscribe-request.xml",
};

TEST(packet__all_fixtures_parse)
{
        if (!packets_dir())
                TAP_FAIL("tests/data/packets not found (set CTA_TEST_DATA)");
        /* Every fixture in the directory is listed above, and parses both ways. */
        DIR *d = opendir(packets_dir());
        ASSERT_NOT_NULL(d);
        size_t seen = 0;
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_name[0] == '.')
                        continue;
                bool listed = false;
                for (size_t i = 0; i < CTA_ARRAY_SIZE(fixtures); i++)
                        listed |= streq(fixtures[i], de->d_name);
                if (!listed) {
                        closedir(d);
                        TAP_FAIL("fixture %s not in the list", de->d_name);
                }
                seen++;
        }
        closedir(d);
        ASSERT_SIZE_EQ(seen, CTA_ARRAY_SIZE(fixtures));
        for (size_t i = 0; i < CTA_ARRAY_SIZE(fixtures); i++) {
                size_t len;
                _cleanup_free_ char *data = read_fixture(fixtures[i], &len);
                _cleanup_(cta_req_freep) struct cta_req *q = NULL;
                _cleanup_(cta_resp_freep) struct cta_resp *p = NULL;
                ASSERT_NOT_NULL(data);
                if (cta_req_parse(data, len, &q, NULL) < 0 || cta_resp_parse(data, len, &p, NULL) < 0)
                        TAP_FAIL("%s does not parse", fixtures[i]);
                ASSERT_STR_EQ(q->root->name, "packet");
                ASSERT_TRUE(streq(q->version, "4.0.0") || streq(q->version, "4.5.0"));
        }
        return 0;
}

TEST(packet__seed_migrate_v2v)
{
        _cleanup_(cta_req_freep) struct cta_req *q = parse_fixture("seed-migrate-v2v-request.xml");
        ASSERT_NOT_NULL(q);
        ASSERT_NULL(q->id);
        ASSERT_TRUE(q->progress);
        ASSERT_TRUE(!q->log);
        ASSERT_STR_EQ(q->target, "relocator");
        ASSERT_STR_EQ(cta_req_operator(q), "relocator");
        ASSERT_STR_EQ(q->op, "relocator");
        ASSERT_STR_EQ(q->call, "migrate_v2v");
        struct cta_migrate_req m;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        ASSERT_OK(cta_req_parse_migrate_v2v(q->call_node, &m, &err));
        ASSERT_SIZE_EQ(m.n_eids, 1);
        ASSERT_STR_EQ(m.eids[0], "a8a73d01-2969-6b48-9544-5cbf6ea7c554");
        ASSERT_TRUE(m.force);
        ASSERT_TRUE(m.nostart);
        ASSERT_TRUE(!m.remove);
        ASSERT_INT_EQ(m.type, 0);
        ASSERT_TRUE(!m.has_new_veid);
        ASSERT_STR_EQ(m.new_private, "");
        ASSERT_INT_EQ(m.dst.protocol, CTA_DST_SSL);
        ASSERT_STR_EQ(m.dst.address, "192.168.0.240");
        ASSERT_INT_EQ(m.dst.port, 4434);
        ASSERT_TRUE(m.dst.has_login);
        ASSERT_TRUE(m.dst.login.has_name);
        ASSERT_STR_EQ(m.dst.login.name, "root");
        ASSERT_STR_EQ(m.dst.login.domain, "");
        ASSERT_STR_EQ(m.dst.login.realm, CTA_REALM_SYSTEM);
        ASSERT_TRUE(m.dst.has_password);
        ASSERT_STR_EQ(m.dst.password, "mypass");
        return 0;
}

TEST(packet__spec_migrate_eid_list)
{
        _cleanup_(cta_req_freep) struct cta_req *q =
                parse_fixture("spec-migrate-eid-list-request.xml");
        ASSERT_NOT_NULL(q);
        ASSERT_STR_EQ(q->id, "31");
        struct cta_migrate_req m;
        ASSERT_OK(cta_req_parse_migrate_v2v(q->call_node, &m, NULL));
        ASSERT_SIZE_EQ(m.n_eids, 1);
        ASSERT_STR_EQ(m.eids[0], EID);
        ASSERT_TRUE(!m.force);
        ASSERT_TRUE(m.nostart);
        ASSERT_TRUE(m.remove);
        ASSERT_INT_EQ(m.type, 0);
        ASSERT_INT_EQ(m.dst.protocol, CTA_DST_SSL);
        ASSERT_STR_EQ(m.dst.address, "10.0.0.2");
        ASSERT_INT_EQ(m.dst.port, 4434);
        ASSERT_STR_EQ(m.dst.login.name, "root");
        ASSERT_STR_EQ(m.dst.password, "s3cret");
        return 0;
}

TEST(packet__migrate_config_any_order)
{
        _cleanup_(cta_req_freep) struct cta_req *q =
                parse_fixture("extra-migrate-config-request.xml");
        ASSERT_NOT_NULL(q);
        ASSERT_STR_EQ(q->id, "m-7");
        ASSERT_TRUE(q->progress && q->log);
        ASSERT_INT_EQ(q->priority, -5);
        ASSERT_STR_EQ(q->target, "vzarelocator");
        ASSERT_STR_EQ(q->session, "vzl.30100.ba7be334-4804-4494-a9c8-15149a0438a5.8c446ae612t2cd6");
        ASSERT_STR_EQ(q->dst_host, "0C2D9B1E-7F6A-4C3B-9E8D-1A2B3C4D5E6F");
        ASSERT_STR_EQ(q->op, "vzarelocator");
        struct cta_migrate_req m;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        ASSERT_OK(cta_req_parse_migrate_v2v(q->call_node, &m, &err));
        ASSERT_SIZE_EQ(m.n_eids, 2);
        ASSERT_STR_EQ(m.eids[0], EID); /* lower-cased */
        ASSERT_STR_EQ(m.eids[1], "b1e7f2c3-0a4d-4e5f-8b6a-7c8d9e0f1a2b");
        ASSERT_TRUE(!m.remove && !m.force && !m.nostart);
        ASSERT_INT_EQ(m.type, 1);
        ASSERT_TRUE(m.has_new_veid);
        ASSERT_INT_EQ(m.new_veid, 1234);
        ASSERT_STR_EQ(m.new_private, "/vz/private/1234");
        ASSERT_STR_EQ(m.new_name, "web 01 & co");
        ASSERT_INT_EQ(m.dst.protocol, CTA_DST_PLAIN);
        ASSERT_INT_EQ(m.dst.port, 4433);
        ASSERT_STR_EQ(m.dst.address, "node2.example.net");
        ASSERT_STR_EQ(m.dst.login.name, "4fce28dd-0cd3-1345-bb94-3192b940fb90");
        ASSERT_STR_EQ(m.dst.login.domain, "master");
        ASSERT_STR_EQ(m.dst.login.realm, CTA_REALM_ONETIME);
        ASSERT_TRUE(m.dst.has_password);
        ASSERT_STR_EQ(m.dst.password, "");
        return 0;
}

TEST(packet__login)
{
        _cleanup_(cta_req_freep) struct cta_req *q = parse_fixture("spec-login-request.xml");
        ASSERT_NOT_NULL(q);
        ASSERT_NULL(q->target);
        ASSERT_STR_EQ(cta_req_operator(q), "system");
        ASSERT_STR_EQ(q->op, "system");
        ASSERT_STR_EQ(q->call, "login");
        struct cta_login l;
        ASSERT_OK(cta_req_parse_login(q->call_node, &l, NULL));
        ASSERT_TRUE(l.who.has_name);
        ASSERT_STR_EQ(l.who.name, "root");
        ASSERT_STR_EQ(l.who.realm, CTA_REALM_SYSTEM);
        ASSERT_TRUE(l.has_password);
        ASSERT_STR_EQ(l.password, "s3cret");

        _cleanup_(cta_req_freep) struct cta_req *n =
                parse_fixture("extra-login-namespaced-request.xml");
        ASSERT_NOT_NULL(n);
        ASSERT_STR_EQ(n->id, "login:1");
        ASSERT_STR_EQ(n->version, "4.5.0");
        ASSERT_INT_EQ(n->type, 2);
        ASSERT_STR_EQ(n->cookie, "  keep me  "); /* returned unchanged */
        ASSERT_STR_EQ(n->call, "login");
        ASSERT_OK(cta_req_parse_login(n->call_node, &l, NULL));
        ASSERT_STR_EQ(l.who.name, "admin"); /* line break inside base64 */
        ASSERT_STR_EQ(l.who.domain, "");
        ASSERT_STR_EQ(l.who.realm, CTA_REALM_ONETIME);
        ASSERT_STR_EQ(l.password, "s3cret");

        /* No realm: the system realm. No password: has_password false. */
        _cleanup_(cta_req_freep) struct cta_req *m =
                parse_str("<packet><data><system><login><name>cm9vdA==</name></login></system></data></packet>");
        ASSERT_NOT_NULL(m);
        ASSERT_OK(cta_req_parse_login(m->call_node, &l, NULL));
        ASSERT_STR_EQ(l.who.realm, CTA_REALM_SYSTEM);
        ASSERT_TRUE(!l.has_password);
        return 0;
}

TEST(packet__cancel_subscribe_misc)
{
        _cleanup_(cta_req_freep) struct cta_req *c = parse_fixture("extra-cancel-request.xml");
        ASSERT_NOT_NULL(c);
        struct cta_cancel cc;
        ASSERT_OK(cta_req_parse_cancel(c->call_node, &cc, NULL));
        ASSERT_STR_EQ(cc.message_id, "31");
        ASSERT_STR_EQ(cc.target, "relocator");
        ASSERT_TRUE(cc.global);

        _cleanup_(cta_req_freep) struct cta_req *s = parse_fixture("extra-subscribe-request.xml");
        ASSERT_NOT_NULL(s);
        struct cta_subscribe sub;
        ASSERT_OK(cta_req_parse_subscribe(s->call_node, &sub, NULL));
        ASSERT_SIZE_EQ(sub.n, 2);
        ASSERT_STR_EQ(sub.names[0], "env_status_subscription");
        ASSERT_STR_EQ(sub.names[1], "events_subscription");

        _cleanup_(cta_req_freep) struct cta_req *g = parse_fixture("spec-generate-pass-request.xml");
        ASSERT_NOT_NULL(g);
        ASSERT_STR_EQ(g->dst_host, "0c2d9b1e-7f6a-4c3b-9e8d-1a2b3c4d5e6f");
        ASSERT_STR_EQ(g->call, "generate_pass");

        _cleanup_(cta_req_freep) struct cta_req *l = parse_fixture("spec-get-list-request.xml");
        ASSERT_NOT_NULL(l);
        ASSERT_STR_EQ(l->cookie, "job-42");
        ASSERT_STR_EQ(l->target, "vzaenvm");
        ASSERT_STR_EQ(l->call, "get_list");

        _cleanup_(cta_req_freep) struct cta_req *nd = parse_fixture("extra-no-data-request.xml");
        ASSERT_NOT_NULL(nd);
        ASSERT_STR_EQ(nd->id, "77");
        ASSERT_NULL(nd->op_node);
        ASSERT_NULL(nd->op);
        ASSERT_NULL(nd->call);

        _cleanup_(cta_req_freep) struct cta_req *e = parse_str("<packet id=\"\"><data><system/></data></packet>");
        ASSERT_NOT_NULL(e);
        ASSERT_NULL(e->id);
        ASSERT_STR_EQ(e->op, "system");
        ASSERT_NULL(e->call);

        /* ids: 128 allowed chars ok, 129 or a bad char not. */
        _cleanup_free_ char *id128 = repeat("<packet id=\"", "a", 128, "\"/>");
        _cleanup_free_ char *id129 = repeat("<packet id=\"", "a", 129, "\"/>");
        _cleanup_(cta_req_freep) struct cta_req *i1 = parse_str(id128);
        ASSERT_NOT_NULL(i1);
        struct cta_req *i2 = NULL;
        ASSERT_INT_EQ(cta_req_parse(id129, strlen(id129), &i2, NULL), -CTA_E_BAD_PARAM);
        ASSERT_INT_EQ(cta_req_parse("<packet id=\"a/b\"/>", 18, &i2, NULL), -CTA_E_BAD_PARAM);
        ASSERT_TRUE(cta_packet_id_valid("Az09._:-"));
        ASSERT_TRUE(!cta_packet_id_valid("a&b"));
        ASSERT_TRUE(!cta_packet_id_valid(""));
        return 0;
}

/* Typed call errors: each must fail with the given code and a message that
 * names the field. */
TEST(packet__typed_errors)
{
        _cleanup_free_ char *long_name = NULL, *long_pw = NULL, *many_names = NULL,
                             *many_eids = NULL;
        {
                char raw[400];
                memset(raw, 'a', sizeof(raw) - 1);
                raw[300] = '\0';
                _cleanup_free_ char *b = cta_b64_encode(raw, 300);
                long_name = cta_xasprintf("<login><name>%s</name></login>", b);
                memset(raw, 'a', sizeof(raw) - 1);
                raw[399] = '\0';
                _cleanup_free_ char *p1 = repeat("", raw, 3, "");
                _cleanup_free_ char *b2 = cta_b64_encode(p1, strlen(p1));
                long_pw = cta_xasprintf("<login><password>%s</password></login>", b2);
                many_names = repeat("<subscribe>", "<name>x</name>", 17, "</subscribe>");
                struct cta_buf e = CTA_BUF_INIT(0);
                (void)cta_buf_puts(&e, "<migrate_v2v><dst><address>h</address></dst>");
                for (int i = 0; i < 65; i++)
                        (void)cta_buf_printf(&e, "<eid>00000000-0000-0000-0000-%012d</eid>", i);
                (void)cta_buf_puts(&e, "</migrate_v2v>");
                many_eids = cta_buf_steal(&e, NULL);
        }
        enum { LOGIN, CANCEL, SUB, CONN, MIG };
        struct {
                int kind;
                const char *xml;
                int code;
                const char *needle;
        } cases[] = {
                { LOGIN, "<login><name>cm9v!dA==</name></login>", CTA_E_BAD_BASE64, "login/name" },
                { LOGIN, "<login><name>cm9vdA=</name></login>", CTA_E_BAD_BASE64, "login/name" },
                { LOGIN, "<login><name>AA==</name></login>", CTA_E_BAD_BASE64, "login/name" },
                { LOGIN, "<login><domain>@@@@</domain></login>", CTA_E_BAD_BASE64, "login/domain" },
                { LOGIN, "<login><password>x</password></login>", CTA_E_BAD_BASE64, "login/password" },
                { LOGIN, long_name, CTA_E_BAD_PARAM, "login/name" },
                { LOGIN, long_pw, CTA_E_BAD_PARAM, "login/password" },
                { LOGIN, "<login><realm>system</realm></login>", CTA_E_BAD_PARAM, "login/realm" },
                { CANCEL, "<cancel/>", CTA_E_BAD_PARAM, "message_id" },
                { CANCEL, "<cancel><message_id>a b</message_id></cancel>", CTA_E_BAD_PARAM, "message_id" },
                { CANCEL, "<cancel><message_id>1</message_id><target>a/b</target></cancel>",
                  CTA_E_BAD_PARAM, "cancel/target" },
                { CANCEL, "<cancel><message_id>1</message_id><global>maybe</global></cancel>",
                  CTA_E_BAD_PARAM, "cancel/global" },
                { SUB, "<subscribe/>", CTA_E_BAD_PARAM, "no name" },
                { SUB, "<subscribe><name></name></subscribe>", CTA_E_BAD_PARAM, "subscribe/name" },
                { SUB, "<subscribe><name>a b</name></subscribe>", CTA_E_BAD_PARAM, "subscribe/name" },
                { SUB, many_names, CTA_E_BAD_PARAM, "more than" },
                { CONN, "<dst/>", CTA_E_BAD_PARAM, "dst/address" },
                { CONN, "<dst><address>a b</address></dst>", CTA_E_BAD_PARAM, "dst/address" },
                { CONN, "<dst><address>h</address><protocol>ssh</protocol></dst>", CTA_E_BAD_PARAM,
                  "dst/protocol" },
                { CONN, "<dst><address>h</address><port>0</port></dst>", CTA_E_BAD_PARAM, "dst/port" },
                { CONN, "<dst><address>h</address><port>65536</port></dst>", CTA_E_BAD_PARAM, "dst/port" },
                { CONN, "<dst><address>h</address><port>-1</port></dst>", CTA_E_BAD_PARAM, "dst/port" },
                { CONN, "<dst><address>h</address><port>44 34</port></dst>", CTA_E_BAD_PARAM, "dst/port" },
                { CONN, "<dst><address>h</address><password>!</password></dst>", CTA_E_BAD_BASE64,
                  "dst/password" },
                { CONN, "<dst><address>h</address><login><realm>x</realm></login></dst>",
                  CTA_E_BAD_PARAM, "dst/login/realm" },
                { MIG, "<migrate_v2v><dst><address>h</address></dst></migrate_v2v>", CTA_E_BAD_PARAM,
                  "no eid" },
                { MIG, "<migrate_v2v><eid>101</eid><dst><address>h</address></dst></migrate_v2v>",
                  CTA_E_BAD_PARAM, "migrate_v2v/eid" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><eid_list><eid>" EID "</eid></eid_list>"
                       "<dst><address>h</address></dst></migrate_v2v>", CTA_E_BAD_PARAM, "twice" },
                { MIG, many_eids, CTA_E_BAD_PARAM, "more than" },
                { MIG, "<migrate_v2v><eid>" EID "</eid></migrate_v2v>", CTA_E_BAD_PARAM, "dst" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><dst/></migrate_v2v>", CTA_E_BAD_PARAM,
                  "migrate_v2v/dst/address" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><options><type>x</type></options>"
                       "<dst><address>h</address></dst></migrate_v2v>", CTA_E_BAD_PARAM, "options/type" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><options><remove>maybe</remove></options>"
                       "<dst><address>h</address></dst></migrate_v2v>", CTA_E_BAD_PARAM, "options/remove" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><options><config><veid>-1</veid></config>"
                       "</options><dst><address>h</address></dst></migrate_v2v>", CTA_E_BAD_PARAM,
                  "config/veid" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><options><config><ve_private>a&#9;b</ve_private>"
                       "</config></options><dst><address>h</address></dst></migrate_v2v>",
                  CTA_E_BAD_PARAM, "ve_private" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><dst><address>h</address><password>****</password>"
                       "</dst></migrate_v2v>", CTA_E_BAD_BASE64, "migrate_v2v/dst/password" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><options><compress>20</compress></options>"
                       "<dst><address>h</address></dst></migrate_v2v>", CTA_E_BAD_PARAM,
                  "options/compress" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><options><compress>lz4</compress></options>"
                       "<dst><address>h</address></dst></migrate_v2v>", CTA_E_BAD_PARAM,
                  "options/compress" },
                { MIG, "<migrate_v2v><eid>" EID "</eid><options><compress>-1</compress></options>"
                       "<dst><address>h</address></dst></migrate_v2v>", CTA_E_BAD_PARAM,
                  "options/compress" },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                _cleanup_(cta_xnode_freep) struct cta_xnode *n = NULL;
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                if (cta_xml_parse(cases[i].xml, strlen(cases[i].xml), NULL, &n, NULL) < 0)
                        TAP_FAIL("case %zu is not XML", i);
                int r = 0;
                union {
                        struct cta_login l;
                        struct cta_cancel c;
                        struct cta_subscribe s;
                        struct cta_conn_info ci;
                        struct cta_migrate_req m;
                } u;
                switch (cases[i].kind) {
                case LOGIN: r = cta_req_parse_login(n, &u.l, &err); break;
                case CANCEL: r = cta_req_parse_cancel(n, &u.c, &err); break;
                case SUB: r = cta_req_parse_subscribe(n, &u.s, &err); break;
                case CONN: r = cta_req_parse_conn_info(n, &u.ci, &err); break;
                case MIG: r = cta_req_parse_migrate_v2v(n, &u.m, &err); break;
                }
                if (r != -cases[i].code || cta_error_code(err) != cases[i].code ||
                    !strstr(cta_error_msg(err), cases[i].needle))
                        TAP_FAIL("case %zu: r=%d code=%d msg='%s' (want %d, '%s')", i, r,
                                 cta_error_code(err), cta_error_msg(err), -cases[i].code,
                                 cases[i].needle);
        }
        /* NULL call nodes are errors, not crashes. */
        struct cta_login l;
        struct cta_migrate_req m;
        struct cta_conn_info ci;
        ASSERT_INT_EQ(cta_req_parse_login(NULL, &l, NULL), -CTA_E_BAD_PARAM);
        ASSERT_INT_EQ(cta_req_parse_migrate_v2v(NULL, &m, NULL), -CTA_E_BAD_PARAM);
        ASSERT_INT_EQ(cta_req_parse_conn_info(NULL, &ci, NULL), -CTA_E_BAD_PARAM);
        return 0;
}

/* options/compress (ours): absent -1, a level, a flag, auto; any position among the options. */
TEST(packet__migrate_compress_values)
{
        static const struct {
                const char *opt;
                int level;
        } cases[] = {
                { "", -1 },
                { "<compress/>", CTA_COMPRESS_LEVEL_ON },
                { "<compress>true</compress>", CTA_COMPRESS_LEVEL_ON },
                { "<compress>zstd</compress><force/>", CTA_COMPRESS_LEVEL_ON },
                { "<compress> on </compress>", CTA_COMPRESS_LEVEL_ON },
                { "<compress>off</compress>", 0 },
                { "<compress>false</compress>", 0 },
                { "<compress>0</compress>", 0 },
                { "<type>0</type><compress>1</compress>", 1 },
                { "<compress>19</compress>", 19 },
                { "<force/><compress>auto</compress>", CTA_COMPRESS_AUTO },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                char xml[512];
                snprintf(xml, sizeof(xml),
                         "<migrate_v2v><eid>" EID "</eid><options>%s</options><dst><address>h"
                         "</address></dst></migrate_v2v>",
                         cases[i].opt);
                _cleanup_(cta_xnode_freep) struct cta_xnode *n = NULL;
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                struct cta_migrate_req m;
                ASSERT_OK(cta_xml_parse(xml, strlen(xml), NULL, &n, NULL));
                if (cta_req_parse_migrate_v2v(n, &m, &err) < 0)
                        TAP_FAIL("'%s': %s", cases[i].opt, cta_error_msg(err));
                if (m.compress != cases[i].level)
                        TAP_FAIL("'%s': level %d, want %d", cases[i].opt, m.compress,
                                 cases[i].level);
        }
        return 0;
}

/* relocator/settle (ours): an eid and outcome "moved" or "stays", any order; else 204. */
TEST(packet__mig_settle)
{
        static const struct {
                const char *xml;
                int ok; /* 1 moved, 0 stays, -1 refused */
        } cases[] = {
                { "<settle><eid>" EID "</eid><outcome>moved</outcome></settle>", 1 },
                { "<settle><outcome> stays </outcome><eid>" EID "</eid></settle>", 0 },
                { "<settle><eid>" EID "</eid></settle>", -1 },
                { "<settle><eid>" EID "</eid><outcome>Moved</outcome></settle>", -1 },
                { "<settle><eid>" EID "</eid><outcome></outcome></settle>", -1 },
                { "<settle><outcome>moved</outcome></settle>", -1 },
                { "<settle><eid>web</eid><outcome>moved</outcome></settle>", -1 },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                _cleanup_(cta_xnode_freep) struct cta_xnode *n = NULL;
                _cleanup_(cta_error_freep) struct cta_error *err = NULL;
                struct cta_mig_settle_req q;
                ASSERT_OK(cta_xml_parse(cases[i].xml, strlen(cases[i].xml), NULL, &n, NULL));
                int r = cta_req_parse_mig_settle(n, &q, &err);
                if (cases[i].ok < 0) {
                        ASSERT_INT_EQ(r, -CTA_E_BAD_PARAM);
                        ASSERT_TRUE(strstr(cta_error_msg(err), "settle/") != NULL);
                        continue;
                }
                if (r < 0)
                        TAP_FAIL("'%s': %s", cases[i].xml, cta_error_msg(err));
                ASSERT_STR_EQ(q.eid, EID);
                ASSERT_INT_EQ(q.moved, cases[i].ok);
        }
        ASSERT_INT_EQ(cta_req_parse_mig_settle(NULL, &(struct cta_mig_settle_req){ 0 }, NULL),
                      -CTA_E_BAD_PARAM);
        return 0;
}

TEST(packet__conn_info_defaults)
{
        struct {
                const char *xml;
                int proto;
                int port;
        } cases[] = {
                { "<dst><address>h</address></dst>", CTA_DST_SSL, 4434 },
                { "<dst><address>h</address><protocol>tls</protocol></dst>", CTA_DST_SSL, 4434 },
                { "<dst><address>h</address><protocol>PLAIN</protocol></dst>", CTA_DST_PLAIN, 4433 },
                { "<dst><protocol> TCP </protocol><port>1</port><address>[::1]</address></dst>",
                  CTA_DST_PLAIN, 1 },
                { "<dst><address>fe80::1%eth0</address><port>65535</port></dst>", CTA_DST_SSL, 65535 },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                _cleanup_(cta_xnode_freep) struct cta_xnode *n = NULL;
                struct cta_conn_info ci;
                ASSERT_OK(cta_xml_parse(cases[i].xml, strlen(cases[i].xml), NULL, &n, NULL));
                ASSERT_OK(cta_req_parse_conn_info(n, &ci, NULL));
                ASSERT_INT_EQ(ci.protocol, cases[i].proto);
                ASSERT_INT_EQ(ci.port, cases[i].port);
                ASSERT_TRUE(!ci.has_login && !ci.has_password);
        }
        return 0;
}

/* ------------------------------------------------------------------ */
/* replies: parser on the spec/seed samples */

TEST(resp__samples)
{
        size_t len;
        _cleanup_free_ char *d1 = read_fixture("seed-progress-reply.xml", &len);
        _cleanup_(cta_resp_freep) struct cta_resp *p = NULL;
        ASSERT_NOT_NULL(d1);
        ASSERT_OK(cta_resp_parse(d1, len, &p, NULL));
        ASSERT_TRUE(p->is_progress);
        ASSERT_INT_EQ(p->type, 1);
        ASSERT_INT_EQ(p->priority, 4000);
        ASSERT_STR_EQ(p->id, "4fc46559f47tbdbrd64");
        ASSERT_STR_EQ(p->origin, "relocator");
        ASSERT_INT_EQ(p->status, 2);
        ASSERT_INT_EQ(p->percent, -1);
        ASSERT_STR_EQ(p->message, "Calling vzmsrc...");
        /* The nested parameter renders with its own parameters substituted. */
        const struct cta_xnode *se = cta_xnode_child(cta_xnode_child(p->progress_node, "message"),
                                                     "parameter");
        _cleanup_free_ char *title = cta_info_render(se);
        ASSERT_STR_EQ(title, "dhcp0-136.sw.ru");

        _cleanup_free_ char *d2 = read_fixture("spec-progress-reply.xml", &len);
        _cleanup_(cta_resp_freep) struct cta_resp *q = NULL;
        ASSERT_OK(cta_resp_parse(d2, len, &q, NULL));
        ASSERT_TRUE(q->is_progress);
        ASSERT_INT_EQ(q->percent, 40);
        ASSERT_INT_EQ(q->status, 2);
        ASSERT_STR_EQ(q->progress_op, "relocator.migrate_v2v");
        ASSERT_STR_EQ(q->progress_id, "31");
        ASSERT_STR_EQ(q->message, "Operation migrate_v2v is processing");

        _cleanup_free_ char *d3 = read_fixture("spec-error-reply.xml", &len);
        _cleanup_(cta_resp_freep) struct cta_resp *e = NULL;
        ASSERT_OK(cta_resp_parse(d3, len, &e, NULL));
        ASSERT_TRUE(e->has_error && !e->ok && !e->is_progress);
        ASSERT_INT_EQ(e->error_code, 9);
        ASSERT_STR_EQ(e->error_message, "Container " EID " already exists on destination");
        ASSERT_STR_EQ(e->op, "relocator");

        _cleanup_free_ char *d4 = read_fixture("seed-migrate-ok-reply.xml", &len);
        _cleanup_(cta_resp_freep) struct cta_resp *o = NULL;
        ASSERT_OK(cta_resp_parse(d4, len, &o, NULL));
        ASSERT_TRUE(o->ok && !o->has_error);
        ASSERT_STR_EQ(o->op, "relocator");
        ASSERT_STR_EQ(o->target, "vzclient7-1df4b04e-0d55-f246-b718-89bbc62fd371");

        _cleanup_free_ char *d5 = read_fixture("spec-event.xml", &len);
        _cleanup_(cta_resp_freep) struct cta_resp *ev = NULL;
        ASSERT_OK(cta_resp_parse(d5, len, &ev, NULL));
        ASSERT_TRUE(ev->is_event);
        ASSERT_STR_EQ(cta_xnode_ctext(ev->event_node, "category"), "env_status");
        ASSERT_STR_EQ(ev->target, "events_subscription");

        _cleanup_free_ char *d6 = read_fixture("spec-get-list-reply.xml", &len);
        _cleanup_(cta_resp_freep) struct cta_resp *gl = NULL;
        ASSERT_OK(cta_resp_parse(d6, len, &gl, NULL));
        ASSERT_STR_EQ(gl->op, "vzaenvm");
        ASSERT_STR_EQ(cta_xnode_ctext(gl->op_node, "eid"), EID);
        ASSERT_NOT_NULL(cta_xnode_next_named(cta_xnode_child(gl->op_node, "eid")));
        return 0;
}

static struct cta_xnode *info_of(const char *xml)
{
        struct cta_xnode *n = NULL;
        if (cta_xml_parse(xml, strlen(xml), NULL, &n, NULL) < 0)
                return NULL;
        return n;
}

TEST(resp__info_render)
{
        /* "%a% and %b% at 100%" with a = "x%c%y" (c = "C") and no b. */
        _cleanup_(cta_xnode_freep) struct cta_xnode *n = info_of(
                "<message><message>JWElIGFuZCAlYiUgYXQgMTAwJQ==</message>"
                "<parameter><message>eCVjJXk=</message><name>a</name>"
                "<parameter><message>Qw==</message><name>c</name></parameter></parameter>"
                "<name></name></message>");
        ASSERT_NOT_NULL(n);
        _cleanup_free_ char *s = cta_info_render(n);
        ASSERT_STR_EQ(s, "xCy and %b% at 100%");

        /* Bad base64 → NULL; missing message → NULL. */
        _cleanup_(cta_xnode_freep) struct cta_xnode *bad = info_of("<m><message>@@</message></m>");
        ASSERT_NULL(cta_info_render(bad));
        ASSERT_NULL(cta_info_render(NULL));

        /* Amplification is bounded: 2000 references to a 1000-byte parameter. */
        struct cta_buf tb = CTA_BUF_INIT(0);
        for (int i = 0; i < 2000; i++)
                ASSERT_OK(cta_buf_puts(&tb, "%a%"));
        _cleanup_free_ char *t64 = cta_b64_encode(tb.data, tb.len);
        char val[1001];
        memset(val, 'v', 1000);
        val[1000] = '\0';
        _cleanup_free_ char *v64 = cta_b64_encode(val, 1000);
        _cleanup_free_ char *xml = cta_xasprintf(
                "<m><message>%s</message><parameter><message>%s</message><name>a</name>"
                "</parameter><name/></m>", t64, v64);
        cta_buf_done(&tb);
        _cleanup_(cta_xnode_freep) struct cta_xnode *amp = info_of(xml);
        ASSERT_NOT_NULL(amp);
        _cleanup_free_ char *big = cta_info_render(amp);
        ASSERT_NOT_NULL(big);
        ASSERT_TRUE(strlen(big) <= CTA_RESP_MESSAGE_MAX);
        ASSERT_TRUE(strlen(big) >= 60000);

        /* Self-reference stops at the depth cap. */
        _cleanup_(cta_xnode_freep) struct cta_xnode *self = info_of(
                "<m><message>JWElJWEl</message><parameter><message>JWElJWEl</message><name>a</name>"
                "</parameter><name/></m>");
        _cleanup_free_ char *ss = cta_info_render(self);
        ASSERT_STR_EQ(ss, "%a%%a%%a%%a%");
        return 0;
}

/* ------------------------------------------------------------------ */
/* writer */

/* Replies must keep one element per line: after the first line (XML
 * declaration + root), no line holds more than one start tag. */
static int check_layout(const struct cta_buf *b)
{
        if (b->len < 12 || memcmp(b->data + b->len - 11, "</packet>\n", 10) != 0 ||
            b->data[b->len - 1] != '\0' || memchr(b->data, '\0', b->len - 1))
                return -1;
        if (strncmp(b->data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><packet ", 46) != 0)
                return -1;
        const char *line = strchr(b->data, '\n');
        while (line && *++line) {
                const char *eol = strchr(line, '\n');
                int starts = 0;
                for (const char *p = line; p < eol; p++)
                        if (*p == '<' && p[1] != '/')
                                starts++;
                if (starts > 1)
                        return -1;
                line = eol;
        }
        return 0;
}

TEST(writer__escaping_roundtrip)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_reply_hdr h = { .id = "9", .origin = "relocator", .client = CLIENT,
                                   .cookie = "c<&>\"'\n" };
        static const char msg[] = "a<b>&\"c\"\n\tline\r\x01\x02 caf\xc3\xa9 \xff \xed\xa0\x80 \xf0\x9f\x98\x80 end";
        ASSERT_OK(cta_reply_error_frame(&b, &h, 401, msg));
        ASSERT_OK(check_layout(&b));
        ASSERT_TRUE(strstr(b.data, "<ns1:message>a&lt;b&gt;&amp;&quot;c&quot;&#10;&#9;line&#13;") != NULL);
        _cleanup_(cta_resp_freep) struct cta_resp *r = resp_of(&b);
        ASSERT_NOT_NULL(r);
        ASSERT_STR_EQ(r->id, "9");
        ASSERT_STR_EQ(r->origin, "relocator");
        ASSERT_STR_EQ(r->target, CLIENT);
        ASSERT_TRUE(r->has_error && !r->ok);
        ASSERT_INT_EQ(r->error_code, 401);
        /* Controls and invalid UTF-8 become '?'; \t \n \r survive as references. */
        const struct cta_xnode *em = cta_xnode_child(cta_xnode_child(r->op_node, "error"), "message");
        ASSERT_STR_EQ(em->text, "a<b>&\"c\"\n\tline\r?? caf\xc3\xa9 ? ??? \xf0\x9f\x98\x80 end");
        ASSERT_STR_EQ(cta_xnode_child(r->root, "cookie")->text, "c<&>\"'\n");
        cta_buf_done(&b);
        return 0;
}

TEST(writer__ok_greeting_text)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_reply_hdr h = { .id = "31", .origin = "relocator", .client = CLIENT };
        ASSERT_OK(cta_reply_ok_frame(&b, &h));
        ASSERT_OK(check_layout(&b));
        ASSERT_TRUE(strstr(b.data, "\n<ns1:target>" CLIENT "</ns1:target>\n<ns1:origin>relocator"
                               "</ns1:origin>\n<ns1:dst>\n<ns1:director>gend</ns1:director>\n"
                               "</ns1:dst>\n<ns1:data>\n<ns2:relocator>\n<ns1:ok/>\n</ns2:relocator>\n"
                               "</ns1:data>\n</packet>\n") != NULL);
        ASSERT_TRUE(strstr(b.data, "xmlns:ns2=\"http://www.swsoft.com/webservices/vzl/4.0.0/relocator\""));
        ASSERT_TRUE(strstr(b.data, " id=\"31\" time=\"") != NULL);
        ASSERT_TRUE(strstr(b.data, "\" priority=\"0\" version=\"4.0.0\">\n") != NULL);
        ASSERT_NULL(strstr(b.data, " type="));
        _cleanup_(cta_resp_freep) struct cta_resp *r = resp_of(&b);
        ASSERT_TRUE(r && r->ok && !r->has_error);

        /* Two frames appended back to back. */
        size_t first = b.len;
        ASSERT_OK(cta_reply_greeting_frame(&b, CLIENT, "vzagent-4.0.0"));
        ASSERT_SIZE_EQ(strlen(b.data), first - 1);
        struct cta_buf g = { .data = b.data + first, .len = b.len - first };
        ASSERT_OK(check_layout(&g));
        _cleanup_(cta_resp_freep) struct cta_resp *gr = resp_of(&g);
        ASSERT_NOT_NULL(gr);
        ASSERT_NULL(gr->id);
        ASSERT_STR_EQ(gr->origin, "system");
        ASSERT_TRUE(gr->ok);
        ASSERT_STR_EQ(cta_xnode_ctext(gr->op_node, "version"), "vzagent-4.0.0");
        cta_buf_reset(&b);

        /* vzaenvm: envm results in ns2, vzaenvm's own in ns5. */
        struct cta_reply_hdr e = { .id = "40", .origin = "vzaenvm", .client = CLIENT, .type = 2 };
        ASSERT_OK(cta_reply_text_frame(&b, &e, "eid", EID));
        ASSERT_TRUE(strstr(b.data, "xmlns:ns2=\"http://www.swsoft.com/webservices/vzl/4.0.0/envm\""));
        ASSERT_TRUE(strstr(b.data, "xmlns:ns5=\"http://www.swsoft.com/webservices/vza/4.0.0/vzaenvm\""));
        ASSERT_TRUE(strstr(b.data, "\n<ns5:vzaenvm>\n<ns2:eid>" EID "</ns2:eid>\n</ns5:vzaenvm>\n"));
        ASSERT_TRUE(strstr(b.data, " type=\"2\" priority=\"0\""));
        cta_buf_reset(&b);
        ASSERT_OK(cta_reply_text_frame(&b, &e, "veid", "101"));
        ASSERT_TRUE(strstr(b.data, "\n<ns5:veid>101</ns5:veid>\n"));
        cta_buf_reset(&b);
        struct cta_reply_hdr s = { .origin = "system" };
        ASSERT_OK(cta_reply_text_frame(&b, &s, "version", "vzagent-4.0.0"));
        ASSERT_TRUE(strstr(b.data, "\n<ns2:system>\n<ns2:version>vzagent-4.0.0</ns2:version>\n"));
        cta_buf_done(&b);
        return 0;
}

TEST(writer__system_results)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_reply_hdr h = { .id = "1", .origin = "system", .client = CLIENT };
        ASSERT_OK(cta_reply_realms_frame(&b, &h));
        ASSERT_OK(check_layout(&b));
        _cleanup_(cta_resp_freep) struct cta_resp *r = resp_of(&b);
        ASSERT_NOT_NULL(r);
        const struct cta_xnode *realm = cta_xnode_child(cta_xnode_child(r->op_node, "realms"), "realm");
        ASSERT_STR_EQ(cta_xnode_ctext(realm, "id"), CTA_REALM_SYSTEM);
        ASSERT_STR_EQ(cta_xnode_ctext(realm, "type"), "0");
        ASSERT_STR_EQ(cta_xnode_ctext(realm, "name"), "System");
        ASSERT_NOT_NULL(cta_xnode_child(realm, "builtin"));
        realm = cta_xnode_next_named(realm);
        ASSERT_STR_EQ(cta_xnode_ctext(realm, "id"), CTA_REALM_ONETIME);
        ASSERT_STR_EQ(cta_xnode_ctext(realm, "type"), "2");
        ASSERT_STR_EQ(cta_xnode_ctext(realm, "name"), "One-time passwords");
        ASSERT_NULL(cta_xnode_next_named(realm));
        cta_buf_reset(&b);

        static const gid_t gids[] = { 0, 1000 };
        ASSERT_OK(cta_reply_token_frame(&b, &h, "root", 0, gids, 2));
        _cleanup_(cta_resp_freep) struct cta_resp *t = resp_of(&b);
        ASSERT_NOT_NULL(t);
        const struct cta_xnode *tok = cta_xnode_child(t->op_node, "token");
        /* S-1-22-1-0 and S-1-22-2-1000, binary, base64. */
        ASSERT_STR_EQ(cta_xnode_ctext(tok, "user"), "AQIAAAAAABYBAAAAAAAAAA==");
        const struct cta_xnode *sid = cta_xnode_child(cta_xnode_child(tok, "groups"), "sid");
        ASSERT_STR_EQ(cta_xnode_ttext(sid), "AQIAAAAAABYCAAAAAAAAAA==");
        ASSERT_STR_EQ(cta_xnode_ttext(cta_xnode_next_named(sid)), "AQIAAAAAABYCAAAA6AMAAA==");
        ASSERT_STR_EQ(cta_xnode_ctext(cta_xnode_child(tok, "name"), "name"), "cm9vdA==");
        cta_buf_reset(&b);

        ASSERT_OK(cta_reply_pass_frame(&b, &h, "4fce28dd-0cd3-1345-bb94-3192b940fb90"));
        _cleanup_(cta_resp_freep) struct cta_resp *p = resp_of(&b);
        ASSERT_NOT_NULL(p);
        const struct cta_xnode *pass = cta_xnode_child(p->op_node, "pass");
        struct cta_login l;
        ASSERT_OK(cta_req_parse_login(pass, &l, NULL)); /* a pass reads like a login */
        ASSERT_STR_EQ(l.who.name, "4fce28dd-0cd3-1345-bb94-3192b940fb90");
        ASSERT_STR_EQ(l.who.domain, "master");
        ASSERT_STR_EQ(l.who.realm, CTA_REALM_ONETIME);
        ASSERT_TRUE(!l.has_password);
        cta_buf_done(&b);
        return 0;
}

TEST(writer__progress_and_event)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_reply_hdr h = { .id = "31", .origin = "relocator", .client = CLIENT };
        static const struct cta_info_param params[] = {
                { "op_name", "migrate_v2v" }, { "status", "processing" },
        };
        static const char *const eids[] = { EID };
        struct cta_progress pr = {
                .template_text = "Operation %op_name% is %status%", .params = params, .nparams = 2,
                .percent = 40, .eids = eids, .neids = 1, .op = "relocator.migrate_v2v",
                .status = 2, .req_id = "31",
        };
        for (int vendor = 0; vendor < 2; vendor++) {
                cta_reply_set_vendor_forms(vendor);
                ASSERT_OK(cta_progress_frame(&b, &h, &pr));
                ASSERT_OK(check_layout(&b));
                ASSERT_TRUE(strstr(b.data, " id=\"31\" time=\"") != NULL);
                ASSERT_TRUE(strstr(b.data, "\" type=\"1\" priority=\"4000\" version=\"4.0.0\">") != NULL);
                ASSERT_TRUE(strstr(b.data, vendor ? "<ns1:data>\n<ns2:progress>\n"
                                                  : "<ns1:data>\n<ns1:operator xsi:type=\"ns5:op_logType\">\n"
                                                    "<ns5:progress>\n") != NULL);
                _cleanup_(cta_resp_freep) struct cta_resp *r = resp_of(&b);
                ASSERT_NOT_NULL(r);
                ASSERT_TRUE(r->is_progress);
                ASSERT_INT_EQ(r->type, 1);
                ASSERT_INT_EQ(r->priority, 4000);
                ASSERT_INT_EQ(r->percent, 40);
                ASSERT_INT_EQ(r->status, 2);
                ASSERT_STR_EQ(r->progress_op, "relocator.migrate_v2v");
                ASSERT_STR_EQ(r->progress_id, "31");
                ASSERT_STR_EQ(r->message, "Operation migrate_v2v is processing");
                ASSERT_STR_EQ(cta_xnode_ctext(cta_xnode_child(r->progress_node, "eid_list"), "eid"), EID);
                cta_buf_reset(&b);

                ASSERT_OK(cta_event_env_status_frame(&b, EID, "6a1f0c7e-52d4-4b0e-9a4e-0f1b2c3d4e5f",
                                                     (struct cta_env_status){ 1, 0 },
                                                     (struct cta_env_status){ 6, 0 }, 12,
                                                     "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "vzaenvm"));
                ASSERT_OK(check_layout(&b));
                ASSERT_NULL(strstr(b.data, " id="));
                ASSERT_TRUE(strstr(b.data, "\n<ns1:target>events_subscription</ns1:target>\n"
                                           "<ns1:target>env_status_subscription</ns1:target>\n"));
                _cleanup_(cta_resp_freep) struct cta_resp *e = resp_of(&b);
                ASSERT_NOT_NULL(e);
                ASSERT_TRUE(e->is_event && !e->is_progress);
                ASSERT_STR_EQ(cta_xnode_ctext(e->event_node, "eid"), EID);
                ASSERT_STR_EQ(cta_xnode_ctext(e->event_node, "category"), "env_status");
                ASSERT_STR_EQ(cta_xnode_ctext(e->event_node, "count"), "12");
                _cleanup_free_ char *m = cta_info_render(cta_xnode_child(e->event_node, "info"));
                ASSERT_STR_EQ(m, "Status of environment " EID " changed from 6 to 1");
                const struct cta_xnode *ese =
                        cta_xnode_child(cta_xnode_child(e->event_node, "data"), "env_status_event");
                if (vendor) {
                        ASSERT_NOT_NULL(ese);
                        ASSERT_STR_EQ(cta_xnode_ctext(cta_xnode_child(ese, "new"), "state"), "1");
                        ASSERT_STR_EQ(cta_xnode_ctext(cta_xnode_child(ese, "old"), "state"), "6");
                } else {
                        ASSERT_NULL(ese);
                }
                cta_buf_reset(&b);
        }
        cta_reply_set_vendor_forms(false);
        cta_buf_done(&b);
        return 0;
}

TEST(writer__errors_leave_buffer_unchanged)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        ASSERT_OK(cta_buf_puts(&b, "keep"));
        struct cta_reply_hdr bad = { .origin = "Bad Op" };
        ASSERT_INT_EQ(cta_reply_ok_frame(&b, &bad), -CTA_E_INVALID);
        ASSERT_SIZE_EQ(b.len, 4);
        ASSERT_STR_EQ(b.data, "keep");
        struct cta_reply_hdr inj = { .origin = "a\"><x" };
        ASSERT_INT_EQ(cta_reply_error_frame(&b, &inj, 1, "m"), -CTA_E_INVALID);
        ASSERT_INT_EQ(cta_reply_text_frame(&b, &(struct cta_reply_hdr){ 0 }, "a b", "x"),
                      -CTA_E_INVALID);
        ASSERT_SIZE_EQ(b.len, 4);
        cta_buf_done(&b);

        /* The buffer's max: -CTA_E_TOO_LARGE, nothing appended. */
        struct cta_buf small = CTA_BUF_INIT(300);
        struct cta_reply_hdr h = { .origin = "system" };
        ASSERT_INT_EQ(cta_reply_ok_frame(&small, &h), -CTA_E_TOO_LARGE);
        ASSERT_SIZE_EQ(small.len, 0);
        cta_buf_done(&small);

        /* Raw writer misuse is sticky and reported. */
        struct cta_buf r = CTA_BUF_INIT(0);
        struct cta_xw w;
        cta_xw_init(&w, &r);
        cta_xw_open(&w, "a");
        cta_xw_text(&w, "b", "x");
        cta_xw_attr(&w, "late", "1"); /* tag already closed */
        ASSERT_INT_EQ(cta_xw_error(&w), -CTA_E_INVALID);
        cta_xw_init(&w, &r);
        cta_xw_close(&w);
        ASSERT_INT_EQ(cta_xw_error(&w), -CTA_E_INVALID);
        cta_xw_init(&w, &r);
        for (int i = 0; i < CTA_XW_MAX_DEPTH + 1; i++)
                cta_xw_open(&w, "d");
        ASSERT_INT_EQ(cta_xw_error(&w), -CTA_E_TOO_LARGE);
        const char *bad_names[] = { "", ":a", "a:", "a:b:c", "1a", "a b", "a<", "é" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad_names); i++) {
                cta_xw_init(&w, &r);
                cta_xw_empty(&w, bad_names[i]);
                if (cta_xw_error(&w) != -CTA_E_INVALID)
                        TAP_FAIL("name '%s' accepted", bad_names[i]);
        }
        cta_buf_reset(&r);
        cta_xw_init(&w, &r);
        cta_xw_open(&w, "ns1:a");
        cta_xw_attr(&w, "x", "1\"2");
        cta_xw_int(&w, "n", -5);
        cta_xw_b64(&w, "b", "\0\1", 2);
        cta_xw_empty(&w, "e");
        cta_xw_textn(&w, "t", "a\0b", 3);
        cta_xw_close(&w);
        ASSERT_OK(cta_xw_error(&w));
        ASSERT_STR_EQ(r.data, "<ns1:a x=\"1&quot;2\">\n<n>-5</n>\n<b>AAE=</b>\n<e/>\n<t>a?b</t>\n</ns1:a>\n");
        cta_buf_done(&r);
        return 0;
}

int main(void)
{
        int r = tap_run(TESTS(T(frame__split_and_joined), T(frame__byte_at_a_time),
                             T(frame__empty_and_ebh_style), T(frame__over_limit),
                             T(frame__many_pipelined), T(frame__binary_in_pieces),
                             T(xml__dom_local_names_text_attrs),
                             T(xml__custom_limits), T(xml__garbage_table), T(xml__attribute_flood_is_linear), T(xml__error_messages),
                             T(packet__all_fixtures_parse), T(packet__seed_migrate_v2v),
                             T(packet__spec_migrate_eid_list), T(packet__migrate_config_any_order),
                             T(packet__login), T(packet__cancel_subscribe_misc),
                             T(packet__typed_errors), T(packet__conn_info_defaults),
                             T(packet__migrate_compress_values),
                             T(packet__mig_settle),
                             T(resp__samples), T(resp__info_render), T(writer__escaping_roundtrip),
                             T(writer__ok_greeting_text), T(writer__system_results),
                             T(writer__progress_and_event),
                             T(writer__errors_leave_buffer_unchanged)));
        free(data_dir);
        return r;
}
