/*
 * vzaenvm packets: request fixtures (namespaced VZA style and plain), a
 * garbage table, and every reply builder's output checked with xmllint
 * against the vendor XSDs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/envm/envm.h"
#include "proto/packet.h"
#include "proto/xml.h"
#include "tap.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

#define DATA_DIR CTA_TEST_SRCDIR "/tests/data/envm"
#define VALIDATE CTA_TEST_SRCDIR "/scripts/validate-xsd.sh"
#define SCHEMA CTA_TEST_SHAREDDIR "/xsd/all.xsd"

#define EID1 "3b0c8a54-1d2e-4f60-8a71-9c0d1e2f3a4b"
#define EID2 "b1e7f2c3-0a4d-4e5f-8b6a-7c8d9e0f1a2b"
#define NODE "6a1f0c7e-52d4-4b0e-9a4e-0f1b2c3d4e5f"
#define CLIENT "vzclient7-" NODE

/* ---- helpers ---- */

static struct cta_req *load_req(const char *name)
{
        char path[512];
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_req *req = NULL;

        snprintf(path, sizeof(path), "%s/%s", DATA_DIR, name);
        if (cta_read_file(path, 1 << 20, &data, &len, &err) < 0) {
                printf("# %s: %s\n", path, cta_error_msg(err));
                return NULL;
        }
        if (cta_req_parse(data, len, &req, &err) < 0) {
                printf("# %s: %s\n", path, cta_error_msg(err));
                return NULL;
        }
        return req;
}

static struct cta_req *parse_str(const char *xml)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_req *req = NULL;
        if (cta_req_parse(xml, strlen(xml), &req, &err) < 0) {
                printf("# parse: %s\n", cta_error_msg(err));
                return NULL;
        }
        return req;
}

/* Run validate-xsd.sh on one frame (written without its NUL). Its output is
 * echoed as TAP comments. 0 = valid, 77 = no xmllint/schema, else invalid. */
static int validate_frame(const struct cta_buf *b, const char *name)
{
        char dir[] = "/tmp/test_envm.XXXXXX", path[256], cmd[1024], line[1024];
        if (!mkdtemp(dir))
                return -1;
        snprintf(path, sizeof(path), "%s/%s.xml", dir, name);
        size_t len = b->len;
        if (len && b->data[len - 1] == '\0')
                len--;
        FILE *f = fopen(path, "wb");
        if (!f)
                return -1;
        bool ok = fwrite(b->data, 1, len, f) == len;
        if (fclose(f) != 0 || !ok)
                return -1;

        snprintf(cmd, sizeof(cmd), "sh '%s' --schema '%s' '%s' 2>&1", VALIDATE, SCHEMA, path);
        FILE *p = popen(cmd, "r");
        if (!p)
                return -1;
        while (fgets(line, sizeof(line), p))
                printf("# %s", line);
        int st = pclose(p);
        unlink(path);
        rmdir(dir);
        if (st == -1 || !WIFEXITED(st))
                return -1;
        return WEXITSTATUS(st);
}

#define ASSERT_VALID(b, name)                                                                      \
        do {                                                                                       \
                int _v = validate_frame((b), (name));                                              \
                if (_v == 77)                                                                      \
                        printf("# %s: XSD check skipped (no xmllint or schema)\n", (name));        \
                else if (_v != 0)                                                                  \
                        TAP_FAIL("%s does not validate (%d)", (name), _v);                         \
        } while (0)

static bool contains(const struct cta_buf *b, const char *s)
{
        return b->data && strstr(b->data, s) != NULL;
}

#define ASSERT_CONTAINS(b, s)                                                                      \
        do {                                                                                       \
                if (!contains((b), (s)))                                                           \
                        TAP_FAIL("output lacks \"%s\":\n%s", (s), (b)->data ? (b)->data : "");     \
        } while (0)

/* ---- request fixtures ---- */

TEST(create__vza_namespaced)
{
        _cleanup_(cta_req_freep) struct cta_req *req = load_req("create_vza.xml");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_envm_create_req *c = cta_xcalloc(1, sizeof(*c));

        ASSERT_NOT_NULL(req);
        ASSERT_STR_EQ(cta_req_operator(req), "vzaenvm");
        ASSERT_STR_EQ(req->call, "create");
        ASSERT_OK(cta_envm_parse_create(req->call_node, c, &err));
        ASSERT_TRUE(c->force);
        ASSERT_TRUE(!c->has_eid);
        const struct cta_env_config *g = &c->cfg;
        ASSERT_TRUE(g->has_name && g->has_hostname && g->has_description && g->has_veid);
        ASSERT_TRUE(g->has_ve_private && g->has_on_boot && g->has_os_template && g->has_ips);
        ASSERT_TRUE(g->has_mem && g->has_cpu);
        ASSERT_STR_EQ(g->name, "web01");
        ASSERT_STR_EQ(g->hostname, "web01.example.net");
        ASSERT_STR_EQ(g->description, "Web server #1 <prod> & friends");
        ASSERT_INT_EQ(g->veid, 101);
        ASSERT_STR_EQ(g->ve_private, "/vz/private/101");
        ASSERT_TRUE(g->on_boot);
        ASSERT_STR_EQ(g->os_template, "centos-7-x86_64");
        /* net_device repeats 10.0.0.5: kept once. */
        ASSERT_SIZE_EQ(g->n_ips, 2);
        ASSERT_STR_EQ(g->ips[0], "10.0.0.5/24");
        ASSERT_STR_EQ(g->ips[1], "192.168.10.7/16");
        ASSERT_INT_EQ(g->mem_bytes, 536870912);
        ASSERT_INT_EQ(g->cpu_percent, 50);
        return 0;
}

TEST(create__plain_any_order)
{
        _cleanup_(cta_req_freep) struct cta_req *req = load_req("create_plain.xml");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_envm_create_req *c = cta_xcalloc(1, sizeof(*c));

        ASSERT_NOT_NULL(req);
        ASSERT_OK(cta_envm_parse_create(req->call_node, c, &err));
        ASSERT_TRUE(!c->force);
        ASSERT_TRUE(c->has_eid);
        ASSERT_STR_EQ(c->eid, EID1); /* lower-cased */
        const struct cta_env_config *g = &c->cfg;
        ASSERT_INT_EQ(g->veid, 202);
        ASSERT_TRUE(g->has_on_boot && !g->on_boot);
        ASSERT_STR_EQ(g->os_template, "ubuntu-22.04-x86_64");
        ASSERT_STR_EQ(g->hostname, "DB-1.internal");
        ASSERT_STR_EQ(g->name, "db server (staging)");
        ASSERT_STR_EQ(g->description, "db server"); /* base64 with line breaks */
        ASSERT_STR_EQ(g->ve_private, "/vz/private/202/");
        /* "/16" in ip, a numeric netmask, the /24 default, a duplicate. */
        ASSERT_SIZE_EQ(g->n_ips, 3);
        ASSERT_STR_EQ(g->ips[0], "172.16.5.9/16");
        ASSERT_STR_EQ(g->ips[1], "172.16.5.10/20");
        ASSERT_STR_EQ(g->ips[2], "172.16.5.11/24");
        /* physpages 262144 × 4 KiB = 1 GiB is stricter than slmmemorylimit 2 GiB. */
        ASSERT_TRUE(g->has_mem);
        ASSERT_INT_EQ(g->mem_bytes, 1073741824);
        /* LONG_MAX is Virtuozzo's "unlimited". */
        ASSERT_TRUE(g->has_cpu);
        ASSERT_INT_EQ(g->cpu_percent, 0);
        return 0;
}

TEST(set__vza_namespaced)
{
        _cleanup_(cta_req_freep) struct cta_req *req = load_req("set_vza.xml");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_envm_set_req *s = cta_xcalloc(1, sizeof(*s));

        ASSERT_NOT_NULL(req);
        ASSERT_STR_EQ(req->call, "set");
        ASSERT_OK(cta_envm_parse_set(req->call_node, s, &err));
        ASSERT_STR_EQ(s->eid, EID1);
        ASSERT_TRUE(s->force);
        /* Only what the packet carried is marked. */
        ASSERT_TRUE(s->cfg.has_hostname && s->cfg.has_mem && s->cfg.has_on_boot);
        ASSERT_TRUE(!s->cfg.has_name && !s->cfg.has_description && !s->cfg.has_veid);
        ASSERT_TRUE(!s->cfg.has_ve_private && !s->cfg.has_os_template && !s->cfg.has_ips);
        ASSERT_TRUE(!s->cfg.has_cpu);
        ASSERT_STR_EQ(s->cfg.hostname, "web02.example.net");
        ASSERT_INT_EQ(s->cfg.mem_bytes, 131072ULL * 4096);
        ASSERT_TRUE(!s->cfg.on_boot);
        return 0;
}

TEST(set__empty_address_clears_ips)
{
        _cleanup_(cta_req_freep) struct cta_req *req = parse_str(
                "<packet version=\"4.0.0\"><target>vzaenvm</target><data><vzaenvm><set>"
                "<eid>" EID2 "</eid><config><address/></config></set></vzaenvm></data></packet>");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_envm_set_req *s = cta_xcalloc(1, sizeof(*s));

        ASSERT_NOT_NULL(req);
        ASSERT_OK(cta_envm_parse_set(req->call_node, s, &err));
        ASSERT_STR_EQ(s->eid, EID2);
        ASSERT_TRUE(!s->force);
        ASSERT_TRUE(s->cfg.has_ips);
        ASSERT_SIZE_EQ(s->cfg.n_ips, 0);
        return 0;
}

TEST(get_info__plain)
{
        _cleanup_(cta_req_freep) struct cta_req *req = load_req("get_info_plain.xml");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_envm_info_req r;

        ASSERT_NOT_NULL(req);
        ASSERT_OK(cta_envm_parse_get_info(req->call_node, &r, &err));
        /* Lower-cased, duplicate dropped, order kept. */
        ASSERT_SIZE_EQ(r.n_eids, 2);
        ASSERT_STR_EQ(r.eids[0], EID1);
        ASSERT_STR_EQ(r.eids[1], EID2);
        ASSERT_TRUE(r.config);
        cta_envm_info_req_done(&r);
        ASSERT_NULL(r.eids);

        /* The first eid is also what an eid request sees. */
        struct cta_envm_eid_req e;
        ASSERT_OK(cta_envm_parse_eid_req(req->call_node, &e, &err));
        ASSERT_STR_EQ(e.eid, EID1);

        /* No eid: all, without config. */
        _cleanup_(cta_req_freep) struct cta_req *all = parse_str(
                "<packet version=\"4.0.0\"><target>vzaenvm</target>"
                "<data><vzaenvm><get_info/></vzaenvm></data></packet>");
        ASSERT_NOT_NULL(all);
        ASSERT_OK(cta_envm_parse_get_info(all->call_node, &r, &err));
        ASSERT_SIZE_EQ(r.n_eids, 0);
        ASSERT_NULL(r.eids);
        ASSERT_TRUE(!r.config);
        cta_envm_info_req_done(&r);
        return 0;
}

TEST(get_list__vza_namespaced)
{
        _cleanup_(cta_req_freep) struct cta_req *req = load_req("get_list_vza.xml");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_envm_list_req l;

        ASSERT_NOT_NULL(req);
        ASSERT_OK(cta_envm_parse_get_list(req->call_node, &l, &err));
        ASSERT_TRUE(l.has_count);
        ASSERT_INT_EQ(l.count, 100);
        /* The transition-only filter carries no state. */
        ASSERT_SIZE_EQ(l.n_status, 2);
        ASSERT_INT_EQ(l.status[0], 6);
        ASSERT_INT_EQ(l.status[1], 3);

        _cleanup_(cta_req_freep) struct cta_req *bare = parse_str(
                "<packet version=\"4.0.0\"><target>vzaenvm</target>"
                "<data><vzaenvm><get_list/></vzaenvm></data></packet>");
        ASSERT_NOT_NULL(bare);
        ASSERT_OK(cta_envm_parse_get_list(bare->call_node, &l, &err));
        ASSERT_TRUE(!l.has_count);
        ASSERT_SIZE_EQ(l.n_status, 0);
        return 0;
}

TEST(stop__plain_force)
{
        _cleanup_(cta_req_freep) struct cta_req *req = load_req("stop_plain.xml");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_envm_eid_req e;

        ASSERT_NOT_NULL(req);
        ASSERT_STR_EQ(req->call, "stop");
        ASSERT_OK(cta_envm_parse_eid_req(req->call_node, &e, &err));
        ASSERT_STR_EQ(e.eid, EID1);
        ASSERT_TRUE(e.force);
        return 0;
}

TEST(config__direct)
{
        _cleanup_(cta_req_freep) struct cta_req *req = load_req("create_vza.xml");
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_env_config *g = cta_xcalloc(1, sizeof(*g));

        ASSERT_NOT_NULL(req);
        ASSERT_OK(cta_env_config_parse(cta_xnode_child(req->call_node, "config"), g, &err));
        ASSERT_INT_EQ(g->veid, 101);
        ASSERT_INT_EQ(cta_env_config_parse(NULL, g, &err), -CTA_E_BAD_PARAM);
        return 0;
}

/* ---- garbage ---- */

#define CREATE_PRE                                                                                 \
        "<packet version=\"4.0.0\" id=\"1\"><target>vzaenvm</target>"                             \
        "<data><vzaenvm><create><config>"
#define CREATE_POST "</config></create></vzaenvm></data></packet>"

static char *repeat(const char *unit, size_t n)
{
        size_t u = strlen(unit);
        char *s = cta_xmalloc(u * n + 1);
        for (size_t i = 0; i < n; i++)
                memcpy(s + i * u, unit, u);
        s[u * n] = '\0';
        return s;
}

static int expect_create_fails(const char *config_xml, int code, const char *msg_part)
{
        _cleanup_free_ char *xml = cta_xasprintf("%s%s%s", CREATE_PRE, config_xml, CREATE_POST);
        _cleanup_(cta_req_freep) struct cta_req *req = parse_str(xml);
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_envm_create_req *c = cta_xcalloc(1, sizeof(*c));

        if (!req)
                TAP_FAIL("does not parse: %.200s", config_xml);
        int r = cta_envm_parse_create(req->call_node, c, &err);
        if (r != -code || cta_error_code(err) != code)
                TAP_FAIL("%.200s: got %d (%s), want -%d", config_xml, r, cta_error_msg(err), code);
        if (!strstr(cta_error_msg(err), msg_part))
                TAP_FAIL("%.200s: message \"%s\" lacks \"%s\"", config_xml, cta_error_msg(err),
                         msg_part);
        /* Nothing half-parsed is left behind. */
        if (c->cfg.has_name || c->cfg.n_ips || c->cfg.veid || c->has_eid)
                TAP_FAIL("%.200s: output not cleared", config_xml);
        return 0;
}

TEST(create__garbage)
{
        static const struct {
                const char *xml;
                int code;
                const char *msg;
        } bad[] = {
                { "<veid>abc</veid>", CTA_E_BAD_PARAM, "create/config/veid" },
                { "<veid>0</veid>", CTA_E_BAD_PARAM, "create/config/veid" },
                { "<veid>-5</veid>", CTA_E_BAD_PARAM, "create/config/veid" },
                { "<veid>2147483648</veid>", CTA_E_BAD_PARAM, "create/config/veid" },
                { "<veid>101x</veid>", CTA_E_BAD_PARAM, "create/config/veid" },
                { "<veid></veid>", CTA_E_BAD_PARAM, "create/config/veid" },
                { "<address><ip>10.0.0.256</ip></address>", CTA_E_BAD_PARAM,
                  "create/config/address/ip" },
                { "<address><ip>10.0.0</ip></address>", CTA_E_BAD_PARAM,
                  "create/config/address/ip" },
                { "<address><ip>010.0.0.1</ip></address>", CTA_E_BAD_PARAM,
                  "create/config/address/ip" },
                { "<address><ip>fe80::1</ip></address>", CTA_E_BAD_PARAM, "IPv6" },
                { "<address><ip>127.0.0.1</ip></address>", CTA_E_BAD_PARAM, "unicast" },
                { "<address><ip>0.0.0.0</ip></address>", CTA_E_BAD_PARAM, "unicast" },
                { "<address><ip>224.0.0.1</ip></address>", CTA_E_BAD_PARAM, "unicast" },
                { "<address><ip>255.255.255.255</ip></address>", CTA_E_BAD_PARAM, "unicast" },
                { "<address><ip>10.0.0.1/33</ip></address>", CTA_E_BAD_PARAM,
                  "create/config/address/ip" },
                { "<address><ip>10.0.0.1/0</ip></address>", CTA_E_BAD_PARAM,
                  "create/config/address/ip" },
                { "<address><ip>10.0.0.1</ip><netmask>255.0.255.0</netmask></address>",
                  CTA_E_BAD_PARAM, "create/config/address/netmask" },
                { "<address><ip>10.0.0.1</ip><netmask>0.0.0.0</netmask></address>",
                  CTA_E_BAD_PARAM, "create/config/address/netmask" },
                { "<address><ip>10.0.0.1/8</ip><netmask>255.255.0.0</netmask></address>",
                  CTA_E_BAD_PARAM, "contradicts" },
                { "<address><netmask>255.255.255.0</netmask></address>", CTA_E_BAD_PARAM,
                  "create/config/address/ip is missing" },
                { "<net_device><ip_address><ip>10.1.1.300</ip></ip_address></net_device>",
                  CTA_E_BAD_PARAM, "create/config/net_device/ip_address/ip" },
                { "<description>!!!notbase64</description>", CTA_E_BAD_BASE64,
                  "create/config/description" },
                { "<description>AGE=</description>", CTA_E_BAD_BASE64,
                  "create/config/description" },
                { "<ve_private>/vz/private/../../etc</ve_private>", CTA_E_BAD_PARAM,
                  "create/config/ve_private" },
                { "<ve_private>/vz/private/101/..</ve_private>", CTA_E_BAD_PARAM, "'..'" },
                { "<ve_private>vz/private/101</ve_private>", CTA_E_BAD_PARAM, "absolute" },
                { "<ve_private>/</ve_private>", CTA_E_BAD_PARAM, "root directory" },
                { "<ve_private>//./</ve_private>", CTA_E_BAD_PARAM, "root directory" },
                { "<ve_private></ve_private>", CTA_E_BAD_PARAM, "create/config/ve_private" },
                { "<ve_private>/vz/pri&#10;vate</ve_private>", CTA_E_BAD_PARAM,
                  "control character" },
                { "<hostname>-bad.example</hostname>", CTA_E_BAD_PARAM, "create/config/hostname" },
                { "<hostname>bad-.example</hostname>", CTA_E_BAD_PARAM, "create/config/hostname" },
                { "<hostname>a..b</hostname>", CTA_E_BAD_PARAM, "create/config/hostname" },
                { "<hostname>web.example.</hostname>", CTA_E_BAD_PARAM, "create/config/hostname" },
                { "<hostname>under_score.example</hostname>", CTA_E_BAD_PARAM,
                  "create/config/hostname" },
                { "<hostname>web 1</hostname>", CTA_E_BAD_PARAM, "create/config/hostname" },
                { "<hostname></hostname>", CTA_E_BAD_PARAM, "create/config/hostname" },
                { "<name>tab&#9;name</name>", CTA_E_BAD_PARAM, "create/config/name" },
                { "<on_boot>maybe</on_boot>", CTA_E_BAD_PARAM, "create/config/on_boot" },
                { "<on_boot/>", CTA_E_BAD_PARAM, "create/config/on_boot" },
                { "<os_template><name>../etc</name></os_template>", CTA_E_BAD_PARAM,
                  "create/config/os_template/name" },
                { "<os_template><name>a/b</name></os_template>", CTA_E_BAD_PARAM,
                  "create/config/os_template/name" },
                { "<os_template><version>1</version></os_template>", CTA_E_BAD_PARAM,
                  "create/config/os_template/name is missing" },
                { "<qos><id>slmmemorylimit</id><hard>lots</hard></qos>", CTA_E_BAD_PARAM,
                  "create/config/qos[slmmemorylimit]/hard" },
                { "<qos><id>slmmemorylimit</id><soft>1</soft></qos>", CTA_E_BAD_PARAM,
                  "create/config/qos[slmmemorylimit]/hard is missing" },
                { "<qos><id>physpages</id><hard>-5</hard></qos>", CTA_E_BAD_PARAM,
                  "create/config/qos[physpages]/hard" },
                { "<qos><id>physpages</id><hard>9223372036854775806</hard></qos>",
                  CTA_E_BAD_PARAM, "too large" },
                { "<qos><id>cpulimit</id><hard>200000</hard></qos>", CTA_E_BAD_PARAM,
                  "create/config/qos[cpulimit]/hard" },
                { "<qos><id>cpulimit</id><hard>10</hard></qos>"
                  "<qos><id>cpulimit</id><hard>20</hard></qos>",
                  CTA_E_BAD_PARAM, "given twice" },
                { "<qos><hard>10</hard></qos>", CTA_E_BAD_PARAM, "create/config/qos/id" },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++)
                if (expect_create_fails(bad[i].xml, bad[i].code, bad[i].msg) < 0)
                        return -1;

        /* Long values. */
        _cleanup_free_ char *name = repeat("n", CTA_ENV_TEXT_MAX + 1);
        _cleanup_free_ char *xml = cta_xasprintf("<name>%s</name>", name);
        if (expect_create_fails(xml, CTA_E_BAD_PARAM, "create/config/name is too long") < 0)
                return -1;
        _cleanup_free_ char *label = repeat("a", 64);
        free(xml);
        xml = cta_xasprintf("<hostname>%s.example</hostname>", label);
        if (expect_create_fails(xml, CTA_E_BAD_PARAM, "create/config/hostname") < 0)
                return -1;
        /* 4097 bytes of description ("AAAA" decodes to 3 bytes). */
        _cleanup_free_ char *desc = repeat("QUFB", 1366);
        free(xml);
        xml = cta_xasprintf("<description>%s</description>", desc);
        if (expect_create_fails(xml, CTA_E_BAD_PARAM, "create/config/description is too long") < 0)
                return -1;
        _cleanup_free_ char *path = repeat("/abc", 1025);
        free(xml);
        xml = cta_xasprintf("<ve_private>%s</ve_private>", path);
        if (expect_create_fails(xml, CTA_E_BAD_PARAM, "create/config/ve_private is too long") < 0)
                return -1;

        /* Nine distinct addresses. */
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        for (int i = 1; i <= CTA_ENV_MAX_IPS + 1; i++)
                ASSERT_OK(cta_buf_printf(&b, "<address><ip>10.0.0.%d</ip></address>", i));
        if (expect_create_fails(b.data, CTA_E_BAD_PARAM, "too many IP addresses") < 0)
                return -1;
        /* ... but eight, each sent twice, are fine. */
        cta_buf_reset(&b);
        for (int i = 1; i <= CTA_ENV_MAX_IPS; i++)
                ASSERT_OK(cta_buf_printf(&b, "<address><ip>10.0.0.%d</ip></address>"
                                             "<net_device><ip_address><ip>10.0.0.%d</ip>"
                                             "</ip_address></net_device>", i, i));
        free(xml);
        xml = cta_xasprintf("%s%s%s", CREATE_PRE, b.data, CREATE_POST);
        _cleanup_(cta_req_freep) struct cta_req *req = parse_str(xml);
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_envm_create_req *c = cta_xcalloc(1, sizeof(*c));
        ASSERT_NOT_NULL(req);
        ASSERT_OK(cta_envm_parse_create(req->call_node, c, &err));
        ASSERT_SIZE_EQ(c->cfg.n_ips, CTA_ENV_MAX_IPS);
        ASSERT_STR_EQ(c->cfg.ips[7], "10.0.0.8/24");
        return 0;
}

static int expect_call_fails(const char *call_xml, int (*fn)(const struct cta_xnode *),
                             const char *msg_part)
{
        _cleanup_free_ char *xml = cta_xasprintf(
                "<packet version=\"4.0.0\"><target>vzaenvm</target><data><vzaenvm>%s"
                "</vzaenvm></data></packet>", call_xml);
        _cleanup_(cta_req_freep) struct cta_req *req = parse_str(xml);
        if (!req)
                TAP_FAIL("does not parse: %.200s", call_xml);
        if (fn(req->call_node) < 0)
                TAP_FAIL("%.200s: wrong error (want \"%s\")", call_xml, msg_part);
        return 0;
}

static const char *want_msg;

/* Each returns 0 when the call fails with CTA_E_BAD_PARAM naming want_msg. */
static int check_err(int r, struct cta_error *err)
{
        if (r != -CTA_E_BAD_PARAM || cta_error_code(err) != CTA_E_BAD_PARAM ||
            !strstr(cta_error_msg(err), want_msg)) {
                printf("# got %d: %s\n", r, cta_error_msg(err));
                return -1;
        }
        return 0;
}

static int fail_eid_req(const struct cta_xnode *call)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_envm_eid_req e;
        int r = cta_envm_parse_eid_req(call, &e, &err);
        return check_err(r, err);
}

static int fail_get_info(const struct cta_xnode *call)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_envm_info_req r;
        int ret = cta_envm_parse_get_info(call, &r, &err);
        ret = check_err(ret, err);
        if (r.eids || r.n_eids) {
                printf("# get_info left eids behind\n");
                return -1;
        }
        return ret;
}

static int fail_get_list(const struct cta_xnode *call)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_envm_list_req l;
        int r = cta_envm_parse_get_list(call, &l, &err);
        return check_err(r, err);
}

static int fail_set(const struct cta_xnode *call)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_envm_set_req *s = cta_xcalloc(1, sizeof(*s));
        int r = cta_envm_parse_set(call, s, &err);
        return check_err(r, err);
}

static int fail_create(const struct cta_xnode *call)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_envm_create_req *c = cta_xcalloc(1, sizeof(*c));
        int r = cta_envm_parse_create(call, c, &err);
        return check_err(r, err);
}

TEST(calls__garbage)
{
        static const struct {
                const char *xml;
                int (*fn)(const struct cta_xnode *);
                const char *msg;
        } bad[] = {
                { "<start/>", fail_eid_req, "start/eid is missing" },
                { "<start><eid>101</eid></start>", fail_eid_req, "start/eid is not a UUID" },
                { "<destroy><eid>3b0c8a54-1d2e-4f60-8a71-9c0d1e2f3a4</eid></destroy>",
                  fail_eid_req, "destroy/eid" },
                { "<stop><eid>" EID1 "</eid><force>maybe</force></stop>", fail_eid_req,
                  "stop/force" },
                { "<get_info><eid>" EID1 "</eid><eid>nope</eid></get_info>", fail_get_info,
                  "get_info/eid is not a UUID" },
                { "<get_list><count>-1</count></get_list>", fail_get_list, "get_list/count" },
                { "<get_list><count>ten</count></get_list>", fail_get_list, "get_list/count" },
                { "<get_list><status><state>x</state></status></get_list>", fail_get_list,
                  "get_list/status/state" },
                { "<set><config><name>x</name></config></set>", fail_set, "set/eid is missing" },
                { "<set><eid>" EID1 "</eid><apply_config><sample_conf>" EID2
                  "</sample_conf></apply_config></set>", fail_set, "set/apply_config" },
                { "<set><eid>" EID1 "</eid><config><veid>x</veid></config></set>", fail_set,
                  "set/config/veid" },
                { "<create><force/></create>", fail_create, "create/config is missing" },
                { "<create><eid>bad</eid><config/></create>", fail_create, "create/eid" },
        };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad); i++) {
                want_msg = bad[i].msg;
                if (expect_call_fails(bad[i].xml, bad[i].fn, bad[i].msg) < 0)
                        return -1;
        }

        /* Too many eids for get_info (1025), too many status filters (17). */
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        ASSERT_OK(cta_buf_puts(&b, "<get_info>"));
        for (int i = 0; i <= CTA_ENVM_MAX_EIDS; i++)
                ASSERT_OK(cta_buf_printf(&b, "<eid>3b0c8a54-1d2e-4f60-8a71-%012x</eid>", i));
        ASSERT_OK(cta_buf_puts(&b, "</get_info>"));
        want_msg = "too many eids";
        if (expect_call_fails(b.data, fail_get_info, want_msg) < 0)
                return -1;
        cta_buf_reset(&b);
        ASSERT_OK(cta_buf_puts(&b, "<get_list>"));
        for (int i = 0; i <= CTA_ENVM_MAX_STATUS; i++)
                ASSERT_OK(cta_buf_printf(&b, "<status><state>%d</state></status>", i));
        ASSERT_OK(cta_buf_puts(&b, "</get_list>"));
        want_msg = "too many status filters";
        if (expect_call_fails(b.data, fail_get_list, want_msg) < 0)
                return -1;

        /* Exactly 1024 eids are accepted. */
        cta_buf_reset(&b);
        ASSERT_OK(cta_buf_puts(&b, "<packet><data><vzaenvm><get_info>"));
        for (int i = 0; i < CTA_ENVM_MAX_EIDS; i++)
                ASSERT_OK(cta_buf_printf(&b, "<eid>3b0c8a54-1d2e-4f60-8a71-%012x</eid>", i));
        ASSERT_OK(cta_buf_puts(&b, "</get_info></vzaenvm></data></packet>"));
        _cleanup_(cta_req_freep) struct cta_req *req = parse_str(b.data);
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        struct cta_envm_info_req r;
        ASSERT_NOT_NULL(req);
        ASSERT_OK(cta_envm_parse_get_info(req->call_node, &r, &err));
        ASSERT_SIZE_EQ(r.n_eids, CTA_ENVM_MAX_EIDS);
        ASSERT_STR_EQ(r.eids[1023], "3b0c8a54-1d2e-4f60-8a71-0000000003ff");
        cta_envm_info_req_done(&r);

        /* NULL call nodes. */
        struct cta_envm_eid_req e;
        ASSERT_INT_EQ(cta_envm_parse_eid_req(NULL, &e, NULL), -CTA_E_BAD_PARAM);
        return 0;
}

/* ---- replies ---- */

static const char *const ips_full[] = { "10.0.0.5/24", "192.168.10.7/16", "172.16.0.1/32" };

static struct cta_env_view view_full(void)
{
        return (struct cta_env_view){
                .eid = EID1,
                .parent_eid = NODE,
                .state = 6,
                .transition = 0,
                .name = "web01 <prod> & \"friends\"",
                .hostname = "web01.example.net",
                .description = "Web server #1\nsecond line",
                .veid = 101,
                .ve_root = "/vz/root/101",
                .ve_private = "/vz/private/101",
                .os_template = "centos-7-x86_64",
                .on_boot = true,
                .n_ips = 3,
                .ips = ips_full,
                .mem_bytes = 536870912,
                .cpu_percent = 50,
        };
}

static struct cta_env_view view_min(void)
{
        return (struct cta_env_view){ .eid = EID2, .parent_eid = NODE, .state = 3,
                                      .transition = 2 };
}

static const struct cta_reply_hdr hdr_vza = { .id = "17", .cookie = "job-42", .origin = "vzaenvm",
                                              .client = CLIENT };

TEST(reply__get_list_eids)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        const char *eids[] = { EID1, EID2 };

        ASSERT_OK(cta_envm_eids_frame(&b, &hdr_vza, eids, 2));
        ASSERT_TRUE(b.len > 0 && b.data[b.len - 1] == '\0');
        ASSERT_CONTAINS(&b, "<ns5:vzaenvm>\n<ns2:eid>" EID1 "</ns2:eid>\n<ns2:eid>" EID2
                            "</ns2:eid>\n</ns5:vzaenvm>");
        ASSERT_CONTAINS(&b, "xmlns:ns2=\"http://www.swsoft.com/webservices/vzl/4.0.0/envm\"");
        ASSERT_CONTAINS(&b, "<ns1:cookie>job-42</ns1:cookie>");
        ASSERT_VALID(&b, "get_list");

        /* None: an empty operator element. */
        cta_buf_reset(&b);
        ASSERT_OK(cta_envm_eids_frame(&b, &hdr_vza, NULL, 0));
        ASSERT_CONTAINS(&b, "<ns5:vzaenvm/>");
        ASSERT_VALID(&b, "get_list_empty");

        /* The base operator name works too. */
        struct cta_reply_hdr h = hdr_vza;
        h.origin = "envm";
        cta_buf_reset(&b);
        ASSERT_OK(cta_envm_eids_frame(&b, &h, eids, 1));
        ASSERT_CONTAINS(&b, "<ns2:envm>\n<ns2:eid>" EID1 "</ns2:eid>");
        ASSERT_VALID(&b, "get_list_envm");
        return 0;
}

TEST(reply__get_info_status_only)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_env_view v[2] = { view_full(), view_min() };

        ASSERT_OK(cta_envm_envs_frame(&b, &hdr_vza, v, 2, false));
        ASSERT_CONTAINS(&b, "<ns2:env>\n<ns4:parent_eid>" NODE "</ns4:parent_eid>\n<ns4:eid>" EID1
                            "</ns4:eid>\n<ns4:status>\n<ns4:state>6</ns4:state>\n"
                            "<ns4:transition>0</ns4:transition>\n</ns4:status>\n</ns2:env>");
        ASSERT_CONTAINS(&b, "<ns4:state>3</ns4:state>\n<ns4:transition>2</ns4:transition>");
        ASSERT_TRUE(!contains(&b, "virtual_config"));
        ASSERT_VALID(&b, "get_info");
        return 0;
}

TEST(reply__get_info_with_config)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_env_view v[2] = { view_full(), view_min() };

        ASSERT_OK(cta_envm_envs_frame(&b, &hdr_vza, v, 2, true));
        ASSERT_CONTAINS(&b, "<ns4:virtual_config xsi:type=\"ns3:venv_configType\">\n"
                            "<ns4:name>web01 &lt;prod&gt; &amp; &quot;friends&quot;</ns4:name>\n");
        ASSERT_CONTAINS(&b, "<ns4:description>V2ViIHNlcnZlciAjMQpzZWNvbmQgbGluZQ=="
                            "</ns4:description>\n");
        ASSERT_CONTAINS(&b, "<ns4:address>\n<ns4:ip>10.0.0.5</ns4:ip>\n"
                            "<ns4:netmask>255.255.255.0</ns4:netmask>\n</ns4:address>");
        ASSERT_CONTAINS(&b, "<ns4:ip>192.168.10.7</ns4:ip>\n"
                            "<ns4:netmask>255.255.0.0</ns4:netmask>");
        ASSERT_CONTAINS(&b, "<ns4:ip>172.16.0.1</ns4:ip>\n"
                            "<ns4:netmask>255.255.255.255</ns4:netmask>");
        ASSERT_CONTAINS(&b, "<ns4:qos>\n<ns4:id>slmmemorylimit</ns4:id>\n"
                            "<ns4:hard>536870912</ns4:hard>\n</ns4:qos>");
        ASSERT_CONTAINS(&b, "<ns4:id>physpages</ns4:id>\n<ns4:hard>131072</ns4:hard>");
        ASSERT_CONTAINS(&b, "<ns4:id>cpulimit</ns4:id>\n<ns4:hard>50</ns4:hard>");
        ASSERT_CONTAINS(&b, "<ns3:veid>101</ns3:veid>\n<ns3:ve_root>/vz/root/101</ns3:ve_root>\n"
                            "<ns3:ve_private>/vz/private/101</ns3:ve_private>\n"
                            "<ns3:on_boot>true</ns3:on_boot>\n<ns3:os_template>\n"
                            "<ns3:name>centos-7-x86_64</ns3:name>\n</ns3:os_template>");
        /* The minimal one still says on_boot. */
        ASSERT_CONTAINS(&b, "<ns4:virtual_config xsi:type=\"ns3:venv_configType\">\n"
                            "<ns3:on_boot>false</ns3:on_boot>\n</ns4:virtual_config>");
        ASSERT_VALID(&b, "get_info_config");
        return 0;
}

TEST(reply__create_env)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_env_view v = view_full();
        struct cta_reply_hdr h = { .id = "c7", .origin = "vzaenvm", .client = CLIENT };

        ASSERT_OK(cta_envm_envs_frame(&b, &h, &v, 1, true));
        ASSERT_CONTAINS(&b, " id=\"c7\"");
        ASSERT_CONTAINS(&b, "<ns2:env>\n<ns4:parent_eid>");
        /* EBH reads the new eid, ip and veid from these lines. */
        ASSERT_CONTAINS(&b, "\n<ns4:eid>" EID1 "</ns4:eid>\n");
        ASSERT_CONTAINS(&b, "\n<ns4:ip>10.0.0.5</ns4:ip>\n");
        ASSERT_CONTAINS(&b, "\n<ns3:veid>101</ns3:veid>\n");
        ASSERT_TRUE(b.len > 10 && memcmp(b.data + b.len - 11, "</packet>\n", 11) == 0);
        ASSERT_VALID(&b, "create");
        return 0;
}

TEST(reply__set_env_config)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_env_view v = view_full();

        ASSERT_OK(cta_envm_env_config_frame(&b, &hdr_vza, &v));
        ASSERT_CONTAINS(&b, "<ns5:vzaenvm>\n<ns2:env_config xsi:type=\"ns3:venv_configType\">\n"
                            "<ns4:name>");
        ASSERT_TRUE(!contains(&b, "<ns4:status>"));
        ASSERT_VALID(&b, "set");

        struct cta_env_view m = view_min();
        cta_buf_reset(&b);
        ASSERT_OK(cta_envm_env_config_frame(&b, &hdr_vza, &m));
        ASSERT_VALID(&b, "set_min");
        return 0;
}

/* The node of data/<operator>/<elem> in a frame we built, parsed tolerantly. */
static const struct cta_xnode *reply_elem(const struct cta_buf *b, const char *elem,
                                          struct cta_xnode **root)
{
        if (cta_xml_parse(b->data, b->len - 1, NULL, root, NULL) < 0)
                return NULL;
        const struct cta_xnode *data = cta_xnode_child(*root, "data");
        return data ? cta_xnode_child(data->first_child, elem) : NULL;
}

TEST(reply__round_trip)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        _cleanup_(cta_xnode_freep) struct cta_xnode *root = NULL;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_free_ struct cta_env_config *g = cta_xcalloc(1, sizeof(*g));
        struct cta_env_view v = view_full();
        v.name = "web01";

        /* set's env_config parses back into the same config. */
        ASSERT_OK(cta_envm_env_config_frame(&b, &hdr_vza, &v));
        const struct cta_xnode *cfg = reply_elem(&b, "env_config", &root);
        ASSERT_NOT_NULL(cfg);
        ASSERT_OK(cta_env_config_parse(cfg, g, &err));
        ASSERT_STR_EQ(g->name, v.name);
        ASSERT_STR_EQ(g->hostname, v.hostname);
        ASSERT_STR_EQ(g->description, v.description);
        ASSERT_INT_EQ(g->veid, v.veid);
        ASSERT_STR_EQ(g->ve_private, v.ve_private);
        ASSERT_TRUE(g->has_on_boot && g->on_boot);
        ASSERT_STR_EQ(g->os_template, v.os_template);
        ASSERT_SIZE_EQ(g->n_ips, 3);
        for (size_t i = 0; i < 3; i++)
                ASSERT_STR_EQ(g->ips[i], ips_full[i]);
        ASSERT_INT_EQ(g->mem_bytes, v.mem_bytes);
        ASSERT_INT_EQ(g->cpu_percent, v.cpu_percent);

        /* get_info's virtual_config too. */
        cta_xnode_free(TAKE_PTR(root));
        cta_buf_reset(&b);
        ASSERT_OK(cta_envm_envs_frame(&b, &hdr_vza, &v, 1, true));
        const struct cta_xnode *env = reply_elem(&b, "env", &root);
        ASSERT_NOT_NULL(env);
        ASSERT_STR_EQ(cta_xnode_ctext(env, "eid"), EID1);
        ASSERT_STR_EQ(cta_xnode_ctext(cta_xnode_child(env, "status"), "state"), "6");
        ASSERT_OK(cta_env_config_parse(cta_xnode_child(env, "virtual_config"), g, &err));
        ASSERT_INT_EQ(g->veid, 101);
        ASSERT_SIZE_EQ(g->n_ips, 3);
        return 0;
}

TEST(reply__errors_leave_buffer_unchanged)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        struct cta_env_view v = view_full();
        const char *eids[] = { EID1 };
        struct cta_reply_hdr bad = hdr_vza;
        bad.origin = "Bad Operator";

        ASSERT_OK(cta_buf_puts(&b, "prefix"));
        ASSERT_TRUE(cta_envm_eids_frame(&b, &bad, eids, 1) < 0);
        ASSERT_TRUE(cta_envm_envs_frame(&b, &bad, &v, 1, true) < 0);
        ASSERT_TRUE(cta_envm_env_config_frame(&b, &bad, &v) < 0);
        ASSERT_SIZE_EQ(b.len, 6);
        ASSERT_STR_EQ(b.data, "prefix");

        /* A buffer cap too small for the reply. */
        _cleanup_(cta_buf_donep) struct cta_buf small = CTA_BUF_INIT(600);
        ASSERT_OK(cta_buf_puts(&small, "x"));
        ASSERT_INT_EQ(cta_envm_envs_frame(&small, &hdr_vza, &v, 1, true), -CTA_E_TOO_LARGE);
        ASSERT_SIZE_EQ(small.len, 1);
        ASSERT_STR_EQ(small.data, "x");

        /* Appends after what is already there. */
        ASSERT_OK(cta_envm_eids_frame(&b, &hdr_vza, eids, 1));
        ASSERT_TRUE(memcmp(b.data, "prefix<?xml", 11) == 0);
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(create__vza_namespaced), T(create__plain_any_order),
                             T(set__vza_namespaced), T(set__empty_address_clears_ips),
                             T(get_info__plain), T(get_list__vza_namespaced), T(stop__plain_force),
                             T(config__direct), T(create__garbage), T(calls__garbage),
                             T(reply__get_list_eids), T(reply__get_info_status_only),
                             T(reply__get_info_with_config), T(reply__create_env),
                             T(reply__set_env_config), T(reply__round_trip),
                             T(reply__errors_leave_buffer_unchanged)));
}
