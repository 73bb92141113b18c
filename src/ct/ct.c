/*
 * The backend-independent half of src/ct: validation, names, the LXC config
 * renderer and the public entry points that dispatch to a backend's ops.
 *
 * Every string that ends up in the LXC config is validated here first: the
 * config is line based ("key = value"), so a newline in a hostname would let a
 * client add arbitrary keys (lxc.hook.* = root on the host).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ct/ct_internal.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

/* cgroup v1 CPU period: quota = percent * 1000 µs per 100 ms */
#define CT_CPU_PERIOD_US 100000u
#define CT_CPU_PERCENT_MAX 102400u /* 1024 CPUs, as the protocol layer accepts */

static const char *const state_names[] = {
        [CTA_CT_UNKNOWN] = "unknown",     [CTA_CT_NONEXISTENT] = "nonexistent",
        [CTA_CT_CONFIG] = "config",       [CTA_CT_DOWN] = "down",
        [CTA_CT_MOUNTED] = "mounted",     [CTA_CT_SUSPENDED] = "suspended",
        [CTA_CT_RUNNING] = "running",     [CTA_CT_REPAIRING] = "repairing",
};

static const char *const transition_names[] = {
        [CTA_TR_NONE] = "none",           [CTA_TR_CREATING] = "creating",
        [CTA_TR_STARTING] = "starting",   [CTA_TR_STOPPING] = "stopping",
        [CTA_TR_RESTARTING] = "restarting", [CTA_TR_DESTROYING] = "destroying",
        [CTA_TR_SETTING] = "setting",     [CTA_TR_MIGRATING] = "migrating",
};

const char *cta_ct_state_name(enum cta_ct_state s)
{
        if ((unsigned)s >= CTA_ARRAY_SIZE(state_names))
                return "unknown";
        return state_names[s];
}

const char *cta_ct_transition_name(enum cta_ct_transition t)
{
        if ((unsigned)t >= CTA_ARRAY_SIZE(transition_names))
                return "unknown";
        return transition_names[t];
}

uint64_t ct_fnv1a(uint64_t h, const void *data, size_t len)
{
        const unsigned char *p = data;
        for (size_t i = 0; i < len; i++) {
                h ^= p[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

void cta_ct_node_id_from_eid(const char *eid, char out[CTA_CT_NODE_ID_MAX + 1])
{
        uint64_t h = CT_FNV_INIT;
        for (const char *p = eid; *p; p++) {
                unsigned char c = (unsigned char)*p;
                if (c >= 'A' && c <= 'Z')
                        c = (unsigned char)(c - 'A' + 'a');
                h = ct_fnv1a(h, &c, 1);
        }
        snprintf(out, CTA_CT_NODE_ID_MAX + 1, "%08" PRIx32, (uint32_t)(h ^ (h >> 32)));
}

bool ct_valid_veid(uint64_t veid)
{
        /* veid_type is xs:long */
        return veid > 0 && veid <= (uint64_t)INT64_MAX;
}

static bool valid_node_id(const char *s)
{
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > CTA_CT_NODE_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
                        return false;
        return true;
}

static bool valid_ifname(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 15 || streq(s, ".") || streq(s, ".."))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.'))
                        return false;
        }
        return true;
}

/* "a.b.c.d[/p]" → address and prefix; dflt_prefix < 0 = the prefix is required. */
static int parse_cidr(const char *s, int dflt_prefix, struct in_addr *ret_addr, int *ret_prefix)
{
        char host[INET_ADDRSTRLEN];
        const char *slash = strchr(s, '/');
        size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
        uint64_t prefix;

        if (hlen == 0 || hlen >= sizeof(host))
                return -CTA_E_INVALID;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET, host, ret_addr) != 1)
                return -CTA_E_INVALID;
        if (slash) {
                if (cta_parse_u64(slash + 1, 32, &prefix) < 0)
                        return -CTA_E_INVALID;
        } else {
                if (dflt_prefix < 0)
                        return -CTA_E_INVALID;
                prefix = (uint64_t)dflt_prefix;
        }
        *ret_prefix = (int)prefix;
        return 0;
}

static uint32_t prefix_mask(int prefix)
{
        return prefix == 0 ? 0 : htonl(~0u << (32 - prefix));
}

/* Absolute, normalized (no //, /./, /../, trailing /), printable, no whitespace. */
static bool valid_abs_path(const char *p)
{
        size_t n = p ? strlen(p) : 0;
        if (n < 2 || n >= 4096 || p[0] != '/' || p[n - 1] == '/')
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)p[i];
                if (c <= 0x20 || c == 0x7f)
                        return false;
                if (c == '/') {
                        const char *q = p + i + 1;
                        if (*q == '/' || (q[0] == '.' && (q[1] == '/' || q[1] == '\0')) ||
                            (q[0] == '.' && q[1] == '.' && (q[2] == '/' || q[2] == '\0')))
                                return false;
                }
        }
        return true;
}

static bool valid_hostname(const char *h)
{
        size_t n = strlen(h), label = 0;
        if (n == 0 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = h[i];
                if (c == '.') {
                        if (label == 0 || h[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-'))
                        return false;
                if (c == '-' && label == 0)
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0 && h[n - 1] != '-';
}

static bool valid_init_cmd(const char *s)
{
        size_t n = strlen(s);
        if (n < 2 || n > 1024 || s[0] != '/')
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c < 0x20 || c == 0x7f)
                        return false;
        }
        return s[n - 1] != ' ';
}

int cta_ct_node_validate(const struct cta_ct_node *node, struct cta_error **err)
{
        struct in_addr a;
        int prefix;

        if (!node)
                return cta_error_set(err, CTA_E_CONFIG, 0, "no node description");
        if (!valid_abs_path(node->state_dir))
                return cta_error_set(err, CTA_E_CONFIG, 0,
                                     "state dir must be an absolute normalized path");
        if (!valid_node_id(node->node_id))
                return cta_error_set(err, CTA_E_CONFIG, 0, "node id must be 1-8 of [a-z0-9]");
        if (node->bridge && !valid_ifname(node->bridge))
                return cta_error_set(err, CTA_E_CONFIG, 0,
                                     "bridge name must be 1-15 of [A-Za-z0-9_.-]");
        if (node->bridge_cidr && (parse_cidr(node->bridge_cidr, -1, &a, &prefix) < 0 ||
                                  prefix < 1 || prefix > 30))
                return cta_error_set(err, CTA_E_CONFIG, 0,
                                     "bridge_cidr must look like 10.77.0.1/24 (prefix 1-30)");
        if (node->template_dir && !valid_abs_path(node->template_dir))
                return cta_error_set(err, CTA_E_CONFIG, 0,
                                     "template dir must be an absolute normalized path");
        return 0;
}

int cta_ct_spec_validate(const struct cta_ct_spec *s, struct cta_error **err)
{
        if (!s)
                return cta_error_set(err, CTA_E_INVALID, 0, "no container spec");
        if (!ct_valid_veid(s->veid))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "veid must be 1..2^63-1");
        if (s->hostname && !valid_hostname(s->hostname))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "hostname must be an RFC 1123 name of at most 64 bytes");
        if (!valid_abs_path(s->private_path))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "private area must be an absolute normalized path "
                                     "without whitespace");
        if (s->n_ipv4 > CTA_CT_MAX_IPV4)
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "at most %d IPv4 addresses",
                                     CTA_CT_MAX_IPV4);
        for (size_t i = 0; i < s->n_ipv4; i++) {
                struct in_addr a;
                int prefix;
                if (!s->ipv4[i] || parse_cidr(s->ipv4[i], 32, &a, &prefix) < 0)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "IPv4 address %zu is not a.b.c.d[/prefix]", i + 1);
                uint32_t h = ntohl(a.s_addr);
                if (h == 0 || (h >> 24) == 127 || (h >> 28) >= 14)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "IPv4 address %zu is not a unicast address", i + 1);
        }
        if (s->cpu_limit_percent > CT_CPU_PERCENT_MAX)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "cpu limit over %u%%",
                                     CT_CPU_PERCENT_MAX);
        if (s->mem_limit_bytes > (uint64_t)INT64_MAX)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "memory limit too large");
        if (s->init_cmd && !valid_init_cmd(s->init_cmd))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "init command must be an absolute path (and arguments) "
                                     "without control characters");
        return 0;
}

char *cta_ct_lxc_name(const struct cta_ct_node *node, uint64_t veid)
{
        return cta_xasprintf("cta-%s-%" PRIu64, node->node_id, veid);
}

void cta_ct_bridge_name(const struct cta_ct_node *node, char out[16])
{
        if (node->bridge)
                snprintf(out, 16, "%s", node->bridge);
        else
                snprintf(out, 16, "ctabr-%s", node->node_id);
}

static void devices_allow(struct cta_buf *b, const char *pfx)
{
        /* the usual LXC allow list: mknod of anything, use of the harmless nodes */
        static const char *const allow[] = {
                "c *:* m",    "b *:* m",    "c 1:3 rwm",   "c 1:5 rwm",  "c 1:7 rwm",
                "c 1:8 rwm",  "c 1:9 rwm",  "c 5:0 rwm",   "c 5:1 rwm",  "c 5:2 rwm",
                "c 136:* rwm", "c 10:229 rwm", "c 10:200 rwm",
        };
        cta_buf_printf(b, "%s.devices.deny = a\n", pfx);
        for (size_t i = 0; i < CTA_ARRAY_SIZE(allow); i++)
                cta_buf_printf(b, "%s.devices.allow = %s\n", pfx, allow[i]);
}

int cta_ct_render_config(const struct cta_ct_node *node, unsigned cg_flags,
                         const struct cta_ct_spec *s, char **ret, struct cta_error **err)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        _cleanup_free_ char *name = NULL;
        char bridge[16];
        int r;

        r = cta_ct_node_validate(node, err);
        if (r < 0)
                return r;
        r = cta_ct_spec_validate(s, err);
        if (r < 0)
                return r;
        name = cta_ct_lxc_name(node, s->veid);
        cta_ct_bridge_name(node, bridge);

        cta_buf_printf(&b, "# Written by ctagent (node %s, veid %" PRIu64 "); it is rewritten on "
                           "every change: do not edit.\n",
                       node->node_id, s->veid);
        if (s->hostname)
                cta_buf_printf(&b, "lxc.uts.name = %s\n", s->hostname);
        else
                cta_buf_printf(&b, "lxc.uts.name = ct%" PRIu64 "\n", s->veid);
        cta_buf_printf(&b, "lxc.rootfs.path = dir:%s\n", s->private_path);
        cta_buf_printf(&b, "lxc.init.cmd = %s\n", s->init_cmd ? s->init_cmd : "/sbin/init");
        /* No AppArmor keys at all (the kernel has none, and CRIU refuses a profile it
         * lacks); no ttys, ptys or console, which CRIU cannot checkpoint. */
        cta_buf_puts(&b, "lxc.autodev = 1\n"
                         "lxc.tty.max = 0\n"
                         "lxc.pty.max = 0\n"
                         "lxc.console.path = none\n"
                         "lxc.mount.auto = cgroup:mixed proc:mixed sys:mixed\n"
                         "lxc.cap.drop = mac_admin mac_override sys_time sys_module sys_rawio\n"
                         "lxc.start.auto = 0\n");
        /* the node's own cgroup parent: two nodes' containers never share a cgroup */
        cta_buf_printf(&b, "lxc.cgroup.dir = ctagent-%s\n", node->node_id);
        devices_allow(&b, (cg_flags & CTA_CT_CG_DEVICES_V2) ? "lxc.cgroup2" : "lxc.cgroup");
        cta_buf_printf(&b, "lxc.log.file = %s/lxc/%s/lxc.log\n", node->state_dir, name);
        cta_buf_puts(&b, "lxc.log.level = WARN\n");

        if (s->n_ipv4 == 0) {
                cta_buf_puts(&b, "lxc.net.0.type = empty\n");
        } else {
                struct in_addr br_addr = { 0 };
                int br_prefix = -1;
                bool have_gw = false;
                char pair[32];
                uint64_t h = ct_fnv1a(CT_FNV_INIT, node->node_id, strlen(node->node_id));
                h = ct_fnv1a(h, &s->veid, sizeof(s->veid));

                if (node->bridge_cidr)
                        (void)parse_cidr(node->bridge_cidr, -1, &br_addr, &br_prefix);
                cta_buf_printf(&b, "lxc.net.0.type = veth\n"
                                   "lxc.net.0.link = %s\n"
                                   "lxc.net.0.flags = up\n"
                                   "lxc.net.0.name = eth0\n",
                               bridge);
                /* A stable host-side name when it fits IFNAMSIZ; otherwise LXC picks one. */
                snprintf(pair, sizeof(pair), "v%s.%" PRIu64, node->node_id, s->veid);
                if (strlen(pair) <= 15)
                        cta_buf_printf(&b, "lxc.net.0.veth.pair = %s\n", pair);
                /* locally administered unicast MAC, stable per node and veid */
                cta_buf_printf(&b, "lxc.net.0.hwaddr = 02:%02x:%02x:%02x:%02x:%02x\n",
                               (unsigned)(h & 0xff), (unsigned)((h >> 8) & 0xff),
                               (unsigned)((h >> 16) & 0xff), (unsigned)((h >> 24) & 0xff),
                               (unsigned)((h >> 32) & 0xff));
                for (size_t i = 0; i < s->n_ipv4; i++) {
                        struct in_addr a;
                        int prefix;
                        char abuf[INET_ADDRSTRLEN];
                        (void)parse_cidr(s->ipv4[i], br_prefix >= 0 ? br_prefix : 32, &a, &prefix);
                        inet_ntop(AF_INET, &a, abuf, sizeof(abuf));
                        cta_buf_printf(&b, "lxc.net.0.ipv4.address = %s/%d\n", abuf, prefix);
                        if (!have_gw && br_prefix >= 0 && a.s_addr != br_addr.s_addr &&
                            (a.s_addr & prefix_mask(br_prefix)) ==
                                    (br_addr.s_addr & prefix_mask(br_prefix)))
                                have_gw = true;
                }
                if (have_gw) {
                        char gbuf[INET_ADDRSTRLEN];
                        inet_ntop(AF_INET, &br_addr, gbuf, sizeof(gbuf));
                        cta_buf_printf(&b, "lxc.net.0.ipv4.gateway = %s\n", gbuf);
                }
        }

        if (s->mem_limit_bytes) {
                if (cg_flags & CTA_CT_CG_MEMORY_V2)
                        cta_buf_printf(&b, "lxc.cgroup2.memory.max = %" PRIu64 "\n",
                                       s->mem_limit_bytes);
                else
                        cta_buf_printf(&b, "lxc.cgroup.memory.limit_in_bytes = %" PRIu64 "\n",
                                       s->mem_limit_bytes);
        }
        if (s->cpu_limit_percent) {
                uint64_t quota = (uint64_t)s->cpu_limit_percent * (CT_CPU_PERIOD_US / 100);
                if (cg_flags & CTA_CT_CG_CPU_V2)
                        cta_buf_printf(&b, "lxc.cgroup2.cpu.max = %" PRIu64 " %u\n", quota,
                                       CT_CPU_PERIOD_US);
                else
                        cta_buf_printf(&b,
                                       "lxc.cgroup.cpu.cfs_period_us = %u\n"
                                       "lxc.cgroup.cpu.cfs_quota_us = %" PRIu64 "\n",
                                       CT_CPU_PERIOD_US, quota);
        }
        *ret = cta_buf_steal(&b, NULL);
        return 0;
}

int ct_backend_new(const struct cta_ct_node *node, const struct ct_ops *ops,
                   struct cta_ct_backend **ret, struct cta_error **err)
{
        char bridge[16];
        int r = cta_ct_node_validate(node, err);
        if (r < 0)
                return r;

        struct cta_ct_backend *b = cta_xcalloc(1, sizeof(*b));
        b->ops = ops;
        b->state_dir = cta_xstrdup(node->state_dir);
        b->node_id = cta_xstrdup(node->node_id);
        cta_ct_bridge_name(node, bridge);
        b->bridge = cta_xstrdup(bridge);
        b->bridge_cidr = node->bridge_cidr ? cta_xstrdup(node->bridge_cidr) : NULL;
        b->template_dir = node->template_dir ? cta_xstrdup(node->template_dir)
                                             : cta_xasprintf("%s/templates", node->state_dir);
        b->lxcpath = cta_xasprintf("%s/lxc", node->state_dir);
        b->fake_dir = cta_xasprintf("%s/fake", node->state_dir);
        b->node = (struct cta_ct_node){ .state_dir = b->state_dir,
                                        .node_id = b->node_id,
                                        .bridge = b->bridge,
                                        .bridge_cidr = b->bridge_cidr,
                                        .template_dir = b->template_dir };
        pthread_mutex_init(&b->tpl_lock, NULL);
        pthread_mutex_init(&b->lock, NULL);
        *ret = b;
        return 0;
}

struct cta_ct_backend *cta_ct_backend_free(struct cta_ct_backend *b)
{
        if (!b)
                return NULL;
        if (b->ops->free)
                b->ops->free(b);
        pthread_mutex_destroy(&b->tpl_lock);
        pthread_mutex_destroy(&b->lock);
        free(b->state_dir);
        free(b->node_id);
        free(b->bridge);
        free(b->bridge_cidr);
        free(b->template_dir);
        free(b->lxcpath);
        free(b->fake_dir);
        free(b);
        return NULL;
}

const char *cta_ct_backend_kind(const struct cta_ct_backend *b)
{
        return b->ops->kind;
}

int cta_ct_node_setup(struct cta_ct_backend *b, struct cta_error **err)
{
        return b->ops->node_setup ? b->ops->node_setup(b, err) : 0;
}

int cta_ct_node_teardown(struct cta_ct_backend *b, struct cta_error **err)
{
        return b->ops->node_teardown ? b->ops->node_teardown(b, err) : 0;
}

int cta_ct_define(struct cta_ct_backend *b, const struct cta_ct_spec *s, struct cta_error **err)
{
        _cleanup_free_ char *config = NULL;
        int r = cta_ct_render_config(&b->node, b->cg_flags, s, &config, err);
        if (r < 0)
                return r;
        r = b->ops->define(b, s, config, err);
        if (r < 0)
                return r;
        if (s->hostname) {
                r = ct_write_hostname(s->private_path, s->hostname, err);
                if (r < 0)
                        return CT_WRAP(r, err, "veid %" PRIu64, s->veid);
        }
        return 0;
}

#define CHECK_VEID(veid)                                                                           \
        do {                                                                                       \
                if (!ct_valid_veid(veid))                                                          \
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0, "invalid veid");             \
        } while (0)

int cta_ct_start(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err)
{
        CHECK_VEID(veid);
        return b->ops->start(b, veid, err);
}

int cta_ct_stop(struct cta_ct_backend *b, uint64_t veid, bool force, unsigned timeout_s,
                struct cta_error **err)
{
        CHECK_VEID(veid);
        if (timeout_s == 0)
                timeout_s = 60;
        if (timeout_s > 3600)
                timeout_s = 3600;
        return b->ops->stop(b, veid, force, timeout_s, err);
}

int cta_ct_state(struct cta_ct_backend *b, uint64_t veid, enum cta_ct_state *ret,
                 struct cta_error **err)
{
        CHECK_VEID(veid);
        return b->ops->state(b, veid, ret, err);
}

int cta_ct_init_pid(struct cta_ct_backend *b, uint64_t veid, pid_t *ret, struct cta_error **err)
{
        CHECK_VEID(veid);
        return b->ops->init_pid(b, veid, ret, err);
}

int cta_ct_exit_fd(struct cta_ct_backend *b, uint64_t veid, int *ret_fd, struct cta_error **err)
{
        CHECK_VEID(veid);
        if (streq(b->ops->kind, "fake"))
                return cta_error_set(err, CTA_E_NOT_IMPLEMENTED, 0,
                                     "the fake backend runs no processes to watch");
        pid_t pid;
        int r = b->ops->init_pid(b, veid, &pid, err);
        if (r < 0)
                return r;
        /* (pidfds are close-on-exec) */
        int fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0) {
                if (errno == ESRCH)
                        return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                             "container %" PRIu64 ": its init %d has exited",
                                             veid, (int)pid);
                return cta_error_errno(err, CTA_E_IO, "pidfd_open(%d)", (int)pid);
        }
        /* An init that exited but is not reaped yet (LXC is tearing the container down)
         * still opens: its descriptor is readable at once. */
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 0) != 0) {
                close(fd);
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "container %" PRIu64 ": its init %d has exited", veid,
                                     (int)pid);
        }
        *ret_fd = fd;
        return 0;
}

int cta_ct_undefine(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err)
{
        CHECK_VEID(veid);
        return b->ops->undefine(b, veid, err);
}

int cta_ct_apply_limits(struct cta_ct_backend *b, const struct cta_ct_spec *s,
                        struct cta_error **err)
{
        int r = cta_ct_spec_validate(s, err);
        if (r < 0)
                return r;
        return b->ops->apply_limits(b, s, err);
}

int cta_ct_list_running(struct cta_ct_backend *b, uint64_t **ret_veids, size_t *ret_n,
                        struct cta_error **err)
{
        return b->ops->list_running(b, ret_veids, ret_n, err);
}
