/* Unit tests of src/ct without root: names, validation, the LXC config text,
 * templates, private areas and the fake backend's lifecycle. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/ct.h"
#include "ct/ct_internal.h"
#include "tap.h"
#include "util/error.h"
#include "util/util.h"

static char *mktmp(void)
{
        char *d = cta_xstrdup("/tmp/cta-test-ct-XXXXXX");
        if (!mkdtemp(d))
                abort();
        return d;
}

static void rmrf(const char *d)
{
        char *cmd = cta_xasprintf("rm -rf '%s'", d);
        if (system(cmd) != 0)
                fprintf(stderr, "# rm -rf %s failed\n", d);
        free(cmd);
}

static bool has_line(const char *text, const char *line)
{
        size_t n = strlen(line);
        for (const char *p = text; (p = strstr(p, line)); p += n)
                if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
                        return true;
        return false;
}

static int count_lines_with(const char *text, const char *needle)
{
        int n = 0;
        for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static char *slurp(const char *path)
{
        char *s = NULL;
        if (cta_read_file(path, 1 << 20, &s, NULL, NULL) < 0)
                return NULL;
        return s;
}

static const struct cta_ct_node node_a = {
        .state_dir = "/var/lib/cta-a", .node_id = "n1a2b3c4", .bridge_cidr = "10.199.7.1/24"
};
static const struct cta_ct_node node_b = { .state_dir = "/var/lib/cta-b",
                                           .node_id = "beef",
                                           .bridge = "brtest0" };

TEST(names__node_id_and_names)
{
        char a[CTA_CT_NODE_ID_MAX + 1], b[CTA_CT_NODE_ID_MAX + 1], c[CTA_CT_NODE_ID_MAX + 1];
        cta_ct_node_id_from_eid("3b0c8a54-1d2e-4f60-8a71-9c0d1e2f3a4b", a);
        cta_ct_node_id_from_eid("3B0C8A54-1D2E-4F60-8A71-9C0D1E2F3A4B", b);
        cta_ct_node_id_from_eid("00000000-0000-0000-0000-000000000002", c);
        ASSERT_SIZE_EQ(strlen(a), 8);
        ASSERT_STR_EQ(a, b);
        ASSERT_TRUE(strcmp(a, c) != 0);
        for (const char *p = a; *p; p++)
                ASSERT_TRUE((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
        struct cta_ct_node n = { .state_dir = "/x/y", .node_id = a };
        ASSERT_OK(cta_ct_node_validate(&n, NULL));

        _cleanup_free_ char *na = cta_ct_lxc_name(&node_a, 101);
        _cleanup_free_ char *nb = cta_ct_lxc_name(&node_b, 101);
        ASSERT_STR_EQ(na, "cta-n1a2b3c4-101");
        ASSERT_STR_EQ(nb, "cta-beef-101");
        char br[16];
        cta_ct_bridge_name(&node_a, br);
        ASSERT_STR_EQ(br, "ctabr-n1a2b3c4");
        cta_ct_bridge_name(&node_b, br);
        ASSERT_STR_EQ(br, "brtest0");
        ASSERT_STR_EQ(cta_ct_state_name(CTA_CT_RUNNING), "running");
        ASSERT_STR_EQ(cta_ct_state_name(CTA_CT_DOWN), "down");
        ASSERT_STR_EQ(cta_ct_state_name((enum cta_ct_state)99), "unknown");
        ASSERT_STR_EQ(cta_ct_transition_name(CTA_TR_MIGRATING), "migrating");
        ASSERT_INT_EQ(CTA_CT_RUNNING, 6);
        ASSERT_INT_EQ(CTA_CT_DOWN, 3);
        return 0;
}

TEST(validate__node)
{
        struct cta_ct_node n = node_a;
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        ASSERT_OK(cta_ct_node_validate(&n, NULL));
        n.node_id = "ABC";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, &e), -CTA_E_CONFIG);
        n.node_id = "123456789";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, NULL), -CTA_E_CONFIG);
        n.node_id = "";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, NULL), -CTA_E_CONFIG);
        n = node_a;
        n.bridge = "a-very-long-bridge-name";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, NULL), -CTA_E_CONFIG);
        n.bridge = "br 0";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, NULL), -CTA_E_CONFIG);
        n = node_a;
        n.bridge_cidr = "10.1.2.3";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, NULL), -CTA_E_CONFIG);
        n.bridge_cidr = "10.1.2.300/24";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, NULL), -CTA_E_CONFIG);
        n = node_a;
        n.state_dir = "relative/dir";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, NULL), -CTA_E_CONFIG);
        n.state_dir = "/a/../b";
        ASSERT_INT_EQ(cta_ct_node_validate(&n, NULL), -CTA_E_CONFIG);
        return 0;
}

TEST(validate__spec_rejects_config_injection)
{
        struct cta_ct_spec s = { .veid = 101, .hostname = "web01.example.net",
                                 .private_path = "/vz/private/101" };
        ASSERT_OK(cta_ct_spec_validate(&s, NULL));
        const char *bad_hosts[] = { "a\nlxc.hook.pre-start = /tmp/evil", "-a", "a-", "a..b",
                                    "a b", "", "x.", "a_b",
                                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad_hosts); i++) {
                s.hostname = bad_hosts[i];
                ASSERT_INT_EQ(cta_ct_spec_validate(&s, NULL), -CTA_E_BAD_PARAM);
        }
        s.hostname = NULL;
        const char *bad_paths[] = { "rel/path", "/", "/a/../b", "/a/./b", "/a//b", "/a/b/",
                                    "/a\nlxc.hook.mount = /x", "/a b", "/a/.." };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad_paths); i++) {
                s.private_path = bad_paths[i];
                ASSERT_INT_EQ(cta_ct_spec_validate(&s, NULL), -CTA_E_BAD_PARAM);
        }
        s.private_path = "/vz/private/101";
        const char *bad_ips[] = { "10.0.0.1/33", "10.0.0", "1.2.3.4/24\nlxc.x = y", "127.0.0.2/8",
                                  "224.0.0.1/24", "0.0.0.0/0", "10.0.0.1/", "10.0.0.1/-1" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(bad_ips); i++) {
                s.ipv4[0] = bad_ips[i];
                s.n_ipv4 = 1;
                ASSERT_INT_EQ(cta_ct_spec_validate(&s, NULL), -CTA_E_BAD_PARAM);
        }
        s.n_ipv4 = CTA_CT_MAX_IPV4 + 1;
        ASSERT_INT_EQ(cta_ct_spec_validate(&s, NULL), -CTA_E_TOO_LARGE);
        s.n_ipv4 = 0;
        s.init_cmd = "/sbin/init\nlxc.hook.start = /x";
        ASSERT_INT_EQ(cta_ct_spec_validate(&s, NULL), -CTA_E_BAD_PARAM);
        s.init_cmd = "sbin/init";
        ASSERT_INT_EQ(cta_ct_spec_validate(&s, NULL), -CTA_E_BAD_PARAM);
        s.init_cmd = "/bin/sh /etc/rc";
        ASSERT_OK(cta_ct_spec_validate(&s, NULL));
        s.veid = 0;
        ASSERT_INT_EQ(cta_ct_spec_validate(&s, NULL), -CTA_E_BAD_PARAM);
        return 0;
}

TEST(config__content_v1)
{
        struct cta_ct_spec s = { .veid = 101,
                                 .hostname = "web01.example.net",
                                 .private_path = "/var/lib/cta-a/private/101",
                                 .ipv4 = { "10.199.7.2/24", "10.199.7.3" },
                                 .n_ipv4 = 2,
                                 .mem_limit_bytes = 268435456,
                                 .cpu_limit_percent = 50 };
        _cleanup_free_ char *c = NULL;
        ASSERT_OK(cta_ct_render_config(&node_a, 0, &s, &c, NULL));
        ASSERT_NULL(strstr(c, "apparmor"));
        ASSERT_TRUE(has_line(c, "lxc.uts.name = web01.example.net"));
        ASSERT_TRUE(has_line(c, "lxc.rootfs.path = dir:/var/lib/cta-a/private/101"));
        ASSERT_TRUE(has_line(c, "lxc.init.cmd = /sbin/init"));
        ASSERT_TRUE(has_line(c, "lxc.tty.max = 0"));
        ASSERT_TRUE(has_line(c, "lxc.pty.max = 0"));
        ASSERT_TRUE(has_line(c, "lxc.console.path = none"));
        ASSERT_TRUE(has_line(c, "lxc.mount.auto = cgroup:mixed proc:mixed sys:mixed"));
        ASSERT_TRUE(has_line(c, "lxc.cgroup.dir = ctagent-n1a2b3c4"));
        ASSERT_TRUE(has_line(c, "lxc.log.file = /var/lib/cta-a/lxc/cta-n1a2b3c4-101/lxc.log"));
        ASSERT_TRUE(has_line(c, "lxc.net.0.type = veth"));
        ASSERT_TRUE(has_line(c, "lxc.net.0.link = ctabr-n1a2b3c4"));
        ASSERT_TRUE(has_line(c, "lxc.net.0.name = eth0"));
        ASSERT_TRUE(has_line(c, "lxc.net.0.flags = up"));
        ASSERT_TRUE(has_line(c, "lxc.net.0.ipv4.address = 10.199.7.2/24"));
        /* no prefix: the bridge's */
        ASSERT_TRUE(has_line(c, "lxc.net.0.ipv4.address = 10.199.7.3/24"));
        ASSERT_TRUE(has_line(c, "lxc.net.0.ipv4.gateway = 10.199.7.1"));
        /* "v" + node + "." + veid = 14 bytes: fits IFNAMSIZ */
        ASSERT_TRUE(has_line(c, "lxc.net.0.veth.pair = vn1a2b3c4.101"));
        ASSERT_TRUE(strstr(c, "\nlxc.net.0.hwaddr = 02:") != NULL);
        ASSERT_TRUE(has_line(c, "lxc.cgroup.memory.limit_in_bytes = 268435456"));
        ASSERT_TRUE(has_line(c, "lxc.cgroup.cpu.cfs_period_us = 100000"));
        ASSERT_TRUE(has_line(c, "lxc.cgroup.cpu.cfs_quota_us = 50000"));
        ASSERT_TRUE(has_line(c, "lxc.cgroup.devices.deny = a"));
        ASSERT_NULL(strstr(c, "lxc.cgroup2."));
        ASSERT_NULL(strstr(c, "lxc.net.0.link = lxcbr0"));
        /* every line is a comment or a key = value: nothing was smuggled in */
        for (const char *l = c; *l;) {
                const char *e = strchr(l, '\n');
                ASSERT_NOT_NULL(e);
                ASSERT_TRUE(l[0] == '#' || strncmp(l, "lxc.", 4) == 0);
                ASSERT_TRUE(memchr(l, '=', (size_t)(e - l)) != NULL || l[0] == '#');
                l = e + 1;
        }
        return 0;
}

TEST(config__content_v2_no_net_unique_per_node)
{
        struct cta_ct_spec s = { .veid = 101,
                                 .private_path = "/srv/b/private/101",
                                 .mem_limit_bytes = 1 << 30,
                                 .cpu_limit_percent = 250,
                                 .init_cmd = "/sbin/ctinit" };
        _cleanup_free_ char *c = NULL, *ca = NULL, *cb = NULL;
        ASSERT_OK(cta_ct_render_config(&node_b,
                                       CTA_CT_CG_MEMORY_V2 | CTA_CT_CG_CPU_V2 | CTA_CT_CG_DEVICES_V2,
                                       &s, &c, NULL));
        ASSERT_NULL(strstr(c, "apparmor"));
        ASSERT_TRUE(has_line(c, "lxc.uts.name = ct101"));
        ASSERT_TRUE(has_line(c, "lxc.init.cmd = /sbin/ctinit"));
        ASSERT_TRUE(has_line(c, "lxc.net.0.type = empty"));
        ASSERT_NULL(strstr(c, "ipv4"));
        ASSERT_TRUE(has_line(c, "lxc.cgroup2.memory.max = 1073741824"));
        ASSERT_TRUE(has_line(c, "lxc.cgroup2.cpu.max = 250000 100000"));
        ASSERT_TRUE(has_line(c, "lxc.cgroup2.devices.deny = a"));
        ASSERT_NULL(strstr(c, "lxc.cgroup.memory"));
        ASSERT_NULL(strstr(c, "lxc.cgroup.devices"));
        ASSERT_TRUE(has_line(c, "lxc.cgroup.dir = ctagent-beef"));

        /* the same veid on two nodes: different cgroups, logs, veths, MACs */
        s.ipv4[0] = "10.199.7.2/24";
        s.n_ipv4 = 1;
        s.private_path = "/srv/a/101";
        ASSERT_OK(cta_ct_render_config(&node_a, 0, &s, &ca, NULL));
        s.private_path = "/srv/b/101";
        ASSERT_OK(cta_ct_render_config(&node_b, 0, &s, &cb, NULL));
        const char *keys[] = { "lxc.cgroup.dir = ", "lxc.log.file = ", "lxc.net.0.veth.pair = ",
                               "lxc.net.0.hwaddr = ", "lxc.net.0.link = " };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(keys); i++) {
                const char *pa = strstr(ca, keys[i]), *pb = strstr(cb, keys[i]);
                ASSERT_NOT_NULL(pa);
                ASSERT_NOT_NULL(pb);
                size_t la = strcspn(pa, "\n"), lb = strcspn(pb, "\n");
                ASSERT_TRUE(la != lb || memcmp(pa, pb, la) != 0);
        }
        /* node b has no bridge_cidr: no gateway */
        ASSERT_NULL(strstr(cb, "gateway"));
        ASSERT_INT_EQ(count_lines_with(ca, "lxc.net.0.ipv4.address"), 1);
        return 0;
}

TEST(config__long_veid_no_pair_name)
{
        struct cta_ct_spec s = { .veid = 123456789012ULL, .private_path = "/p/x",
                                 .ipv4 = { "10.199.7.9/24" }, .n_ipv4 = 1 };
        _cleanup_free_ char *c = NULL;
        ASSERT_OK(cta_ct_render_config(&node_a, 0, &s, &c, NULL));
        ASSERT_NULL(strstr(c, "veth.pair"));
        ASSERT_TRUE(has_line(c, "lxc.net.0.type = veth"));
        return 0;
}

static int make_node(const char *root, struct cta_ct_backend **ret)
{
        struct cta_ct_node n = { .state_dir = root, .node_id = "fake1" };
        return cta_ct_backend_fake(&n, ret, NULL);
}

TEST(template__busybox_build)
{
        _cleanup_free_ char *root = mktmp(), *path = NULL, *path2 = NULL;
        struct cta_ct_backend *b = NULL;
        struct stat st;
        char link[PATH_MAX];

        if (access("/bin/busybox", X_OK) < 0) {
                rmrf(root);
                return 77;
        }
        ASSERT_OK(make_node(root, &b));
        ASSERT_OK(cta_ct_template_prepare(b, "busybox", &path, NULL));
        _cleanup_free_ char *want = cta_xasprintf("%s/templates/busybox", root);
        ASSERT_STR_EQ(path, want);
        _cleanup_free_ char *bb = cta_xasprintf("%s/bin/busybox", path);
        ASSERT_OK(stat(bb, &st));
        ASSERT_TRUE(S_ISREG(st.st_mode) && (st.st_mode & 0111));
        _cleanup_free_ char *sh = cta_xasprintf("%s/bin/sh", path);
        ssize_t n = readlink(sh, link, sizeof(link) - 1);
        ASSERT_TRUE(n > 0);
        link[n] = '\0';
        ASSERT_STR_EQ(link, "/bin/busybox");
        _cleanup_free_ char *init = cta_xasprintf("%s/sbin/init", path);
        ASSERT_OK(lstat(init, &st));
        ASSERT_TRUE(S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0755);
        _cleanup_free_ char *it = slurp(init);
        ASSERT_NOT_NULL(it);
        ASSERT_TRUE(strncmp(it, "#!/bin/sh\n", 10) == 0);
        ASSERT_NOT_NULL(strstr(it, "trap ctagent_halt PWR"));
        _cleanup_free_ char *pw = cta_xasprintf("%s/etc/passwd", path);
        _cleanup_free_ char *pwt = slurp(pw);
        ASSERT_NOT_NULL(pwt);
        ASSERT_TRUE(strncmp(pwt, "root:x:0:0:", 11) == 0);
        const char *dirs[] = { "dev", "proc", "sys", "tmp", "root", "usr/bin" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(dirs); i++) {
                _cleanup_free_ char *d = cta_xasprintf("%s/%s", path, dirs[i]);
                ASSERT_OK(stat(d, &st));
                ASSERT_TRUE(S_ISDIR(st.st_mode));
        }
        _cleanup_free_ char *tmpd = cta_xasprintf("%s/tmp", path);
        ASSERT_OK(stat(tmpd, &st));
        ASSERT_INT_EQ(st.st_mode & 07777, 01777);
        /* second time: found, not rebuilt */
        ASSERT_OK(cta_ct_template_prepare(b, "busybox", &path2, NULL));
        ASSERT_STR_EQ(path2, path);

        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        char *p3 = NULL;
        ASSERT_INT_EQ(cta_ct_template_prepare(b, "nosuch", &p3, &e), -CTA_E_TEMPLATE);
        ASSERT_INT_EQ(cta_ct_template_prepare(b, "../etc", &p3, NULL), -CTA_E_TEMPLATE);
        ASSERT_INT_EQ(cta_ct_template_prepare(b, ".busybox", &p3, NULL), -CTA_E_TEMPLATE);
        ASSERT_NULL(p3);
        cta_ct_backend_free(b);
        rmrf(root);
        return 0;
}

TEST(private__create_copy_and_tarball)
{
        _cleanup_free_ char *root = mktmp();
        _cleanup_free_ char *tdir = cta_xasprintf("%s/templates/mini", root);
        _cleanup_free_ char *priv = cta_xasprintf("%s/private/101", root);
        _cleanup_free_ char *priv2 = cta_xasprintf("%s/private/102", root);
        struct cta_ct_backend *b = NULL;
        struct stat st1, st2;

        ASSERT_OK(make_node(root, &b));
        /* a template with a hard link pair, a symlink and modes */
        _cleanup_free_ char *mk = cta_xasprintf(
                "mkdir -p '%s/etc' '%s/sbin' && echo hi > '%s/etc/a' && ln '%s/etc/a' '%s/etc/b' && "
                "ln -s /etc/a '%s/etc/c' && printf '#!/bin/sh\\n' > '%s/sbin/init' && "
                "chmod 755 '%s' '%s/sbin/init' && chmod 640 '%s/etc/a'",
                tdir, tdir, tdir, tdir, tdir, tdir, tdir, tdir, tdir, tdir);
        ASSERT_INT_EQ(system(mk), 0);
        ASSERT_OK(cta_ct_private_create(b, "mini", priv, NULL));
        _cleanup_free_ char *a = cta_xasprintf("%s/etc/a", priv), *bb = cta_xasprintf("%s/etc/b", priv),
                           *c = cta_xasprintf("%s/etc/c", priv);
        ASSERT_OK(stat(a, &st1));
        ASSERT_OK(stat(bb, &st2));
        ASSERT_TRUE(st1.st_ino == st2.st_ino); /* hard link kept */
        ASSERT_INT_EQ(st1.st_mode & 0777, 0640);
        ASSERT_OK(lstat(c, &st1));
        ASSERT_TRUE(S_ISLNK(st1.st_mode));
        ASSERT_OK(stat(priv, &st1));
        ASSERT_INT_EQ(st1.st_mode & 0777, 0755); /* the tree's root attributes too */
        _cleanup_free_ char *privdir = cta_xasprintf("%s/private", root);
        ASSERT_OK(stat(privdir, &st1));
        ASSERT_INT_EQ(st1.st_mode & 0777, 0700);
        /* exists → error, and nothing left behind */
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        ASSERT_INT_EQ(cta_ct_private_create(b, "mini", priv, &e), -CTA_E_PRIVATE_EXISTS);
        ASSERT_INT_EQ(cta_ct_private_create(b, "missing", priv2, NULL), -CTA_E_TEMPLATE);
        ASSERT_TRUE(access(priv2, F_OK) < 0);

        /* tarball template */
        _cleanup_free_ char *tar = cta_xasprintf("tar -C '%s' -czf '%s/templates/tarred.tar.gz' .",
                                                 tdir, root);
        ASSERT_INT_EQ(system(tar), 0);
        ASSERT_OK(cta_ct_private_create(b, "tarred", priv2, NULL));
        _cleanup_free_ char *a2 = cta_xasprintf("%s/etc/a", priv2), *b2 = cta_xasprintf("%s/etc/b", priv2);
        _cleanup_free_ char *txt = slurp(a2);
        ASSERT_STR_EQ(txt, "hi\n");
        ASSERT_OK(stat(a2, &st1));
        ASSERT_OK(stat(b2, &st2));
        ASSERT_TRUE(st1.st_ino == st2.st_ino);
        _cleanup_free_ char *ls = cta_xasprintf("ls -a '%s/private' | grep -q cta-", root);
        ASSERT_TRUE(system(ls) != 0); /* no temp dirs left */
        cta_ct_backend_free(b);
        rmrf(root);
        return 0;
}

TEST(private__remove_never_follows_symlinks)
{
        _cleanup_free_ char *root = mktmp();
        _cleanup_free_ char *outside = cta_xasprintf("%s/outside", root);
        _cleanup_free_ char *priv = cta_xasprintf("%s/private/101", root);
        struct cta_ct_backend *b = NULL;

        ASSERT_OK(make_node(root, &b));
        _cleanup_free_ char *mk = cta_xasprintf(
                "mkdir -p '%s/keep' '%s/a/b/c' && echo data > '%s/keep/f' && "
                "ln -s '%s' '%s/a/link' && ln -s '%s/keep/f' '%s/a/b/flink' && "
                "echo x > '%s/a/b/c/file'",
                outside, priv, outside, outside, priv, outside, priv, priv);
        ASSERT_INT_EQ(system(mk), 0);
        ASSERT_OK(cta_ct_private_remove(b, priv, NULL));
        ASSERT_TRUE(access(priv, F_OK) < 0 && errno == ENOENT);
        _cleanup_free_ char *f = cta_xasprintf("%s/keep/f", outside);
        _cleanup_free_ char *txt = slurp(f);
        ASSERT_STR_EQ(txt, "data\n");
        /* gone already: fine; nothing renamed aside remains */
        ASSERT_OK(cta_ct_private_remove(b, priv, NULL));
        _cleanup_free_ char *ls = cta_xasprintf("ls -a '%s/private' | grep -q cta-", root);
        ASSERT_TRUE(system(ls) != 0);
        /* refused paths */
        ASSERT_INT_EQ(cta_ct_private_remove(b, "/", NULL), -CTA_E_BAD_PARAM);
        ASSERT_INT_EQ(cta_ct_private_remove(b, "/tmp", NULL), -CTA_E_BAD_PARAM);
        ASSERT_INT_EQ(cta_ct_private_remove(b, root, NULL), -CTA_E_BAD_PARAM);
        _cleanup_free_ char *dots = cta_xasprintf("%s/private/../outside", root);
        ASSERT_INT_EQ(cta_ct_private_remove(b, dots, NULL), -CTA_E_BAD_PARAM);
        ASSERT_OK(access(f, F_OK));
        cta_ct_backend_free(b);
        rmrf(root);
        return 0;
}

TEST(fake__lifecycle)
{
        _cleanup_free_ char *root = mktmp();
        _cleanup_free_ char *priv = cta_xasprintf("%s/private/101", root);
        struct cta_ct_backend *b = NULL, *b2 = NULL;
        enum cta_ct_state st;
        uint64_t *v = NULL;
        size_t n = 99;
        pid_t pid = 0;

        ASSERT_OK(make_node(root, &b));
        ASSERT_STR_EQ(cta_ct_backend_kind(b), "fake");
        struct cta_ct_spec s = { .veid = 101, .hostname = "fake101", .private_path = priv,
                                 .ipv4 = { "10.199.9.2/24" }, .n_ipv4 = 1 };
        ASSERT_OK(cta_ct_state(b, 101, &st, NULL));
        ASSERT_INT_EQ(st, CTA_CT_NONEXISTENT);
        ASSERT_INT_EQ(cta_ct_start(b, 101, NULL), -CTA_E_ENV_NOT_FOUND);

        _cleanup_free_ char *mk = cta_xasprintf("mkdir -p '%s/etc' '%s/sbin' && touch '%s/sbin/init'",
                                                priv, priv, priv);
        ASSERT_INT_EQ(system(mk), 0);
        ASSERT_OK(cta_ct_define(b, &s, NULL));
        _cleanup_free_ char *hn = cta_xasprintf("%s/etc/hostname", priv);
        _cleanup_free_ char *hnt = slurp(hn);
        ASSERT_STR_EQ(hnt, "fake101\n");
        ASSERT_OK(cta_ct_state(b, 101, &st, NULL));
        ASSERT_INT_EQ(st, CTA_CT_DOWN);
        ASSERT_INT_EQ(cta_ct_init_pid(b, 101, &pid, NULL), -CTA_E_BAD_STATE);
        ASSERT_OK(cta_ct_list_running(b, &v, &n, NULL));
        ASSERT_SIZE_EQ(n, 0);
        ASSERT_NULL(v);

        ASSERT_OK(cta_ct_start(b, 101, NULL));
        ASSERT_OK(cta_ct_state(b, 101, &st, NULL));
        ASSERT_INT_EQ(st, CTA_CT_RUNNING);
        ASSERT_INT_EQ(cta_ct_start(b, 101, NULL), -CTA_E_BAD_STATE);
        ASSERT_OK(cta_ct_init_pid(b, 101, &pid, NULL));
        ASSERT_TRUE(pid > 4194304); /* never a real process */
        ASSERT_INT_EQ(cta_ct_undefine(b, 101, NULL), -CTA_E_BAD_STATE);

        /* live limits */
        s.mem_limit_bytes = 1 << 28;
        s.cpu_limit_percent = 50;
        ASSERT_OK(cta_ct_apply_limits(b, &s, NULL));
        _cleanup_free_ char *lim = cta_xasprintf("%s/fake/101.limits", root);
        _cleanup_free_ char *limt = slurp(lim);
        ASSERT_STR_EQ(limt, "mem=268435456 cpu=50\n");

        /* a "restarted agent" finds it running */
        ASSERT_OK(make_node(root, &b2));
        ASSERT_OK(cta_ct_list_running(b2, &v, &n, NULL));
        ASSERT_SIZE_EQ(n, 1);
        ASSERT_INT_EQ(v[0], 101);
        free(v);
        v = NULL;

        ASSERT_OK(cta_ct_stop(b2, 101, false, 5, NULL));
        ASSERT_OK(cta_ct_state(b, 101, &st, NULL));
        ASSERT_INT_EQ(st, CTA_CT_DOWN);
        ASSERT_OK(cta_ct_stop(b, 101, true, 0, NULL)); /* already down: fine */
        ASSERT_OK(cta_ct_undefine(b, 101, NULL));
        ASSERT_OK(cta_ct_state(b, 101, &st, NULL));
        ASSERT_INT_EQ(st, CTA_CT_NONEXISTENT);
        ASSERT_OK(cta_ct_undefine(b, 101, NULL));
        ASSERT_OK(cta_ct_private_remove(b, priv, NULL));
        ASSERT_TRUE(access(priv, F_OK) < 0);

        /* no init in the private area: start fails like a broken template */
        struct cta_ct_spec s2 = { .veid = 102, .private_path = priv };
        _cleanup_free_ char *mk2 = cta_xasprintf("mkdir -p '%s'", priv);
        ASSERT_INT_EQ(system(mk2), 0);
        ASSERT_OK(cta_ct_define(b, &s2, NULL));
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;
        ASSERT_INT_EQ(cta_ct_start(b, 102, &e), -CTA_E_CT_BACKEND);
        ASSERT_NOT_NULL(strstr(cta_error_msg(e), "no init /sbin/init"));
        ASSERT_INT_EQ(cta_ct_start(b, 0, NULL), -CTA_E_BAD_PARAM);
        cta_ct_backend_free(b);
        cta_ct_backend_free(b2);
        rmrf(root);
        return 0;
}

TEST(fake__busybox_private_starts)
{
        _cleanup_free_ char *root = mktmp();
        _cleanup_free_ char *priv = cta_xasprintf("%s/private/7", root);
        struct cta_ct_backend *b = NULL;
        enum cta_ct_state st;

        if (access("/bin/busybox", X_OK) < 0) {
                rmrf(root);
                return 77;
        }
        ASSERT_OK(make_node(root, &b));
        ASSERT_OK(cta_ct_private_create(b, "busybox", priv, NULL));
        struct cta_ct_spec s = { .veid = 7, .hostname = "bb7", .private_path = priv };
        ASSERT_OK(cta_ct_define(b, &s, NULL));
        ASSERT_OK(cta_ct_start(b, 7, NULL));
        ASSERT_OK(cta_ct_state(b, 7, &st, NULL));
        ASSERT_INT_EQ(st, CTA_CT_RUNNING);
        ASSERT_OK(cta_ct_stop(b, 7, false, 1, NULL));
        ASSERT_OK(cta_ct_undefine(b, 7, NULL));
        ASSERT_OK(cta_ct_private_remove(b, priv, NULL));
        cta_ct_backend_free(b);
        rmrf(root);
        return 0;
}

TEST(define__hostname_stays_inside_private)
{
        _cleanup_free_ char *root = mktmp();
        _cleanup_free_ char *priv = cta_xasprintf("%s/private/5", root);
        _cleanup_free_ char *victim = cta_xasprintf("%s/victim", root);
        struct cta_ct_backend *b = NULL;
        struct stat st;

        ASSERT_OK(make_node(root, &b));
        /* /etc/hostname in the container is a symlink to an absolute host path */
        _cleanup_free_ char *mk = cta_xasprintf(
                "mkdir -p '%s/etc' && echo precious > '%s' && ln -s '%s' '%s/etc/hostname'", priv,
                victim, victim, priv);
        ASSERT_INT_EQ(system(mk), 0);
        struct cta_ct_spec s = { .veid = 5, .hostname = "evil", .private_path = priv };
        ASSERT_OK(cta_ct_define(b, &s, NULL));
        _cleanup_free_ char *v = slurp(victim);
        ASSERT_STR_EQ(v, "precious\n");
        _cleanup_free_ char *hn = cta_xasprintf("%s/etc/hostname", priv);
        ASSERT_OK(lstat(hn, &st));
        ASSERT_TRUE(S_ISREG(st.st_mode));
        _cleanup_free_ char *hnt = slurp(hn);
        ASSERT_STR_EQ(hnt, "evil\n");

        /* /etc itself a symlink out of the tree: resolved inside, so nothing written */
        _cleanup_free_ char *vdir = cta_xasprintf("%s/vdir", root);
        _cleanup_free_ char *mk2 = cta_xasprintf("rm -rf '%s/etc' && mkdir '%s' && ln -s '%s' '%s/etc'",
                                                 priv, vdir, vdir, priv);
        ASSERT_INT_EQ(system(mk2), 0);
        ASSERT_OK(cta_ct_define(b, &s, NULL));
        _cleanup_free_ char *vh = cta_xasprintf("%s/hostname", vdir);
        ASSERT_TRUE(access(vh, F_OK) < 0);
        cta_ct_backend_free(b);
        rmrf(root);
        return 0;
}

/* ---- the fork server (ct_zygote.c) ---- */

struct zy_answer {
        pid_t pid, ppid;
        char echo[64];
};

__attribute__((noreturn)) static void zy_serve(void *ctx, const void *req, size_t len, int fd)
{
        struct zy_answer a = { .pid = getpid(), .ppid = getppid() };
        snprintf(a.echo, sizeof(a.echo), "%s:%.*s", (const char *)ctx, (int)len,
                 (const char *)req);
        (void)!write(fd, &a, sizeof(a));
        _exit(0);
}

/* One request through z; the answer in *a. 0, or the spawn error. */
static int zy_ask(struct ct_zygote *z, const char *what, struct zy_answer *a)
{
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        int r = ct_zygote_spawn(z, what, strlen(what), sv[1]);
        (void)close(sv[1]);
        memset(a, 0, sizeof(*a));
        if (r == 0 && read(sv[0], a, sizeof(*a)) != (ssize_t)sizeof(*a))
                r = -EPIPE;
        (void)close(sv[0]);
        return r;
}

struct zy_thread {
        struct ct_zygote *z;
        int n, ok;
        pid_t server;
};

static void *zy_thread_main(void *p)
{
        struct zy_thread *t = p;
        char what[32];
        for (int i = 0; i < t->n; i++) {
                struct zy_answer a;
                snprintf(what, sizeof(what), "t%d", i);
                if (zy_ask(t->z, what, &a) == 0 && a.ppid == t->server &&
                    strncmp(a.echo, "ctx:t", 5) == 0)
                        t->ok++;
        }
        return NULL;
}

TEST(zygote__forks_each_request_from_one_server)
{
        struct ct_zygote *z = NULL;
        struct zy_answer a, b;
        char ctx[] = "ctx";
        char big[CT_ZYGOTE_REQ_MAX + 1];

        ASSERT_OK(ct_zygote_start(zy_serve, ctx, &z, NULL));
        ASSERT_INT_EQ(zy_ask(z, "one", &a), 0);
        ASSERT_STR_EQ(a.echo, "ctx:one");
        ASSERT_INT_EQ(zy_ask(z, "two", &b), 0);
        ASSERT_STR_EQ(b.echo, "ctx:two");
        /* a child per request, both of the server, neither of us */
        ASSERT_TRUE(a.pid != b.pid);
        ASSERT_TRUE(a.ppid == b.ppid);
        ASSERT_TRUE(a.ppid != getpid() && a.pid != getpid());

        /* threads share it */
        struct zy_thread t[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
                t[i] = (struct zy_thread){ .z = z, .n = 25, .server = a.ppid };
                ASSERT_INT_EQ(pthread_create(&th[i], NULL, zy_thread_main, &t[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                ASSERT_INT_EQ(t[i].ok, 25);
        }

        memset(big, 'x', sizeof(big));
        ASSERT_INT_EQ(ct_zygote_spawn(z, big, sizeof(big), 0), -EINVAL);

        /* a dead server is reported, not waited for (waitid WNOWAIT: stop reaps it) */
        ASSERT_INT_EQ(kill(a.ppid, SIGKILL), 0);
        siginfo_t si;
        ASSERT_INT_EQ(waitid(P_PID, (id_t)a.ppid, &si, WEXITED | WNOWAIT), 0);
        ASSERT_INT_EQ(zy_ask(z, "three", &a), -EPIPE);
        ASSERT_NULL(ct_zygote_stop(z));
        return 0;
}

TEST(backend__lxc_needs_root)
{
        struct cta_ct_backend *b = NULL;
        if (geteuid() == 0)
                return 77;
        ASSERT_INT_EQ(cta_ct_backend_lxc(&node_a, &b, NULL), -CTA_E_CONFIG);
        ASSERT_NULL(b);
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(names__node_id_and_names), T(validate__node),
                             T(validate__spec_rejects_config_injection), T(config__content_v1),
                             T(config__content_v2_no_net_unique_per_node),
                             T(config__long_veid_no_pair_name), T(template__busybox_build),
                             T(private__create_copy_and_tarball),
                             T(private__remove_never_follows_symlinks), T(fake__lifecycle),
                             T(fake__busybox_private_starts),
                             T(define__hostname_stays_inside_private),
                             T(backend__lxc_needs_root),
                             T(zygote__forks_each_request_from_one_server)));
}
