/*
 * vzaenvm requests → typed structs, and the envm reply packets.
 *
 * Input is untrusted and parsed tolerantly (local names, any order, xsi:type
 * and unknown children ignored) but every value is checked here: handlers
 * only see bounded, validated fields.
 *
 * Reply namespaces (all from the XSDs, elementFormDefault="qualified"):
 * - the results directly in the operator element (eid, env, env_config) are
 *   global elements of vzl envm: ns2 (cta_reply_elem_prefix());
 * - envType, env_statusType, env_configType and vzl venv_configType declare
 *   their children locally in vzl types: ns4 (parent_eid, eid, status/state,
 *   virtual_config, name, description, hostname, address/ip, qos/id ...);
 * - the container fields come from vza venv_configType, which extends
 *   vzl venv_configType; its children are in vzatypes: ns3 (veid, ve_root,
 *   ve_private, on_boot, os_template/name). They are only allowed where the
 *   element says xsi:type="ns3:venv_configType" (virtual_config and
 *   env_config are declared with vzl types), so both carry it.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/envm/envm.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

#define VEID_MAX INT32_MAX
#define PAGE_BYTES 4096ULL
#define CPU_PERCENT_MAX 102400u /* 1024 CPUs at 100 % */
#define DEFAULT_PREFIX 24u

#define NS4(local) CTA_PFX_TYPES ":" local
#define NS3(local) CTA_PFX_VZATYPES ":" local

/* ---- field helpers ---- */

static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* CTA_E_BAD_PARAM "<what>/<field> <why>: '<value>'" with the value made printable. */
static int bad_value(struct cta_error **err, const char *what, const char *field,
                     const char *value, const char *why)
{
        _cleanup_free_ char *s = cta_sanitize(value ? value : "", 64);
        return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/%s %s: '%s'", what, field, why, s);
}

static void lower_copy(char *dst, const char *src, size_t cap)
{
        size_t i = 0;
        for (; src[i] && i + 1 < cap; i++)
                dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] - 'A' + 'a') : src[i];
        dst[i] = '\0';
}

static int eid_value(const char *v, const char *what, const char *field, char out[37],
                     struct cta_error **err)
{
        if (!v || !*v)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/%s is missing", what, field);
        if (!cta_uuid_valid(v))
                return bad_value(err, what, field, v, "is not a UUID");
        lower_copy(out, v, 37);
        return 0;
}

/* A flag element: absent → false, empty or true/1/yes/on → true, false/0/no/off → false. */
static int flag_field(const struct cta_xnode *parent, const char *field, const char *what,
                      bool *out, struct cta_error **err)
{
        const char *v = cta_xnode_ctext(parent, field);
        if (!v) {
                *out = false;
                return 0;
        }
        if (cta_parse_bool(v, true, out) < 0)
                return bad_value(err, what, field, v, "must be empty, true or false");
        return 0;
}

/* Plain text of at most cap - 1 bytes with no control characters. */
static int text_value(const char *v, const char *what, const char *field, char *out, size_t cap,
                      struct cta_error **err)
{
        size_t n = strlen(v);
        if (n >= cap)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/%s is too long (max %zu bytes)",
                                     what, field, cap - 1);
        for (const unsigned char *p = (const unsigned char *)v; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return bad_value(err, what, field, v, "contains a control character");
        memcpy(out, v, n + 1);
        return 0;
}

/* RFC 1123 host name: dot-separated labels of 1-63 [A-Za-z0-9-], no leading
 * or trailing '-', at most 253 bytes, no trailing dot. */
static bool hostname_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 253)
                return false;
        const char *label = s;
        for (const char *p = s;; p++) {
                if (*p == '.' || *p == '\0') {
                        size_t len = (size_t)(p - label);
                        if (len == 0 || len > 63 || label[0] == '-' || p[-1] == '-')
                                return false;
                        if (*p == '\0')
                                return true;
                        label = p + 1;
                } else if (!is_alnum(*p) && *p != '-') {
                        return false;
                }
        }
}

/* Template names become path components in the ct layer: [A-Za-z0-9._+-],
 * starting with a letter or digit (so never "." or ".."). */
static bool template_name_valid(const char *s)
{
        if (!is_alnum(s[0]))
                return false;
        for (const char *p = s; *p; p++)
                if (!is_alnum(*p) && !strchr("._+-", *p))
                        return false;
        return true;
}

/* An absolute path with no ".." component that names something below "/". */
static int path_value(const char *v, const char *what, const char *field, char *out, size_t cap,
                      struct cta_error **err)
{
        int r = text_value(v, what, field, out, cap, err);
        if (r < 0)
                return r;
        if (v[0] != '/')
                return bad_value(err, what, field, v, "must be an absolute path");
        bool named = false;
        for (const char *c = v; *c;) {
                while (*c == '/')
                        c++;
                const char *e = c;
                while (*e && *e != '/')
                        e++;
                size_t len = (size_t)(e - c);
                if (len == 2 && c[0] == '.' && c[1] == '.')
                        return bad_value(err, what, field, v, "must not contain a '..' component");
                if (len > 0 && !(len == 1 && c[0] == '.'))
                        named = true;
                c = e;
        }
        if (!named)
                return bad_value(err, what, field, v, "must not be the root directory");
        return 0;
}

/* ---- IPv4 addresses ---- */

/* Contiguous netmask → prefix length, or -1. */
static int mask_prefix(uint32_t m)
{
        uint32_t inv = ~m;
        if (inv & (inv + 1))
                return -1;
        int n = 0;
        for (; m; m <<= 1)
                n++;
        return n;
}

/* One ip_addressType {ip, netmask?}: "a.b.c.d" (also "a.b.c.d/prefix") and a
 * dotted or numeric netmask; no netmask means /24. Added to out->ips unless
 * the same address is already there (clients may send it both as address
 * and as net_device/ip_address). */
static int add_address(const struct cta_xnode *a, const char *what, struct cta_env_config *out,
                       struct cta_error **err)
{
        const char *ip = cta_xnode_ctext(a, "ip");
        const char *mask = cta_xnode_ctext(a, "netmask");
        if ((!ip || !*ip) && (!mask || !*mask))
                return 0; /* an empty <address/>: nothing to add */
        if (!ip || !*ip)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/ip is missing", what);

        char host[64];
        unsigned prefix = 0;
        if (strlen(ip) >= sizeof(host))
                return bad_value(err, what, "ip", ip, "is not an IPv4 address");
        snprintf(host, sizeof(host), "%s", ip);
        char *slash = strchr(host, '/');
        if (slash) {
                uint64_t p;
                *slash = '\0';
                if (cta_parse_u64(slash + 1, 32, &p) < 0 || p == 0)
                        return bad_value(err, what, "ip", ip, "has a prefix length not in 1-32");
                prefix = (unsigned)p;
        }
        struct in_addr in;
        if (inet_pton(AF_INET, host, &in) != 1)
                return bad_value(err, what, "ip", ip,
                                 strchr(host, ':') ? "is IPv6 (only IPv4 is supported)"
                                                   : "is not an IPv4 address");
        uint32_t h = ntohl(in.s_addr);
        if (h == 0 || (h >> 24) == 127 || (h >> 28) >= 0xe)
                return bad_value(err, what, "ip", ip,
                                 "is not a unicast address (0.0.0.0, loopback, multicast)");

        if (mask && *mask) {
                unsigned mp;
                uint64_t p;
                struct in_addr m;
                if (cta_parse_u64(mask, 32, &p) == 0 && p > 0) {
                        mp = (unsigned)p;
                } else if (inet_pton(AF_INET, mask, &m) == 1 && mask_prefix(ntohl(m.s_addr)) > 0) {
                        mp = (unsigned)mask_prefix(ntohl(m.s_addr));
                } else {
                        return bad_value(err, what, "netmask", mask,
                                         "is not a contiguous IPv4 netmask");
                }
                if (prefix && prefix != mp)
                        return bad_value(err, what, "netmask", mask,
                                         "contradicts the prefix length in ip");
                prefix = mp;
        }
        if (!prefix)
                prefix = DEFAULT_PREFIX;

        char norm[INET_ADDRSTRLEN];
        if (!inet_ntop(AF_INET, &in, norm, sizeof(norm)))
                return bad_value(err, what, "ip", ip, "is not an IPv4 address");
        size_t nl = strlen(norm);
        for (size_t i = 0; i < out->n_ips; i++)
                if (strncmp(out->ips[i], norm, nl) == 0 && out->ips[i][nl] == '/')
                        return 0;
        if (out->n_ips >= CTA_ENV_MAX_IPS)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "%s: too many IP addresses (max %d)", what, CTA_ENV_MAX_IPS);
        char ent[32];
        int n = snprintf(ent, sizeof(ent), "%s/%u", norm, prefix);
        if (n < 0 || (size_t)n >= sizeof(out->ips[0]))
                return bad_value(err, what, "ip", ip, "is not an IPv4 address");
        memcpy(out->ips[out->n_ips++], ent, (size_t)n + 1);
        return 0;
}

/* ---- QoS ---- */

struct qos_seen {
        bool slm, phys, cpu;
        uint64_t slm_bytes, phys_bytes; /* 0 = unlimited */
};

/* qos/hard as a limit: -1 and LONG_MAX (Virtuozzo's "unlimited") → *unlimited. */
static int qos_hard(const struct cta_xnode *q, const char *what, const char *id, uint64_t *ret,
                    bool *unlimited, struct cta_error **err)
{
        char field[96];
        snprintf(field, sizeof(field), "qos[%s]/hard", id);
        const char *v = cta_xnode_ctext(q, "hard");
        if (!v || !*v)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/%s is missing", what, field);
        int64_t x;
        if (cta_parse_i64(v, INT64_MIN, INT64_MAX, &x) < 0)
                return bad_value(err, what, field, v, "is not an integer");
        if (x == -1 || x == INT64_MAX) {
                *unlimited = true;
                *ret = 0;
                return 0;
        }
        if (x < 0)
                return bad_value(err, what, field, v, "must not be negative");
        *unlimited = false;
        *ret = (uint64_t)x;
        return 0;
}

static int qos_parse(const struct cta_xnode *q, const char *what, struct qos_seen *seen,
                     struct cta_env_config *out, struct cta_error **err)
{
        const char *id = cta_xnode_ctext(q, "id");
        if (!id || !*id)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/qos/id is missing", what);
        bool *dup;
        if (streq(id, "slmmemorylimit"))
                dup = &seen->slm;
        else if (streq(id, "physpages"))
                dup = &seen->phys;
        else if (streq(id, "cpulimit"))
                dup = &seen->cpu;
        else
                return 0; /* other resources are not ours to manage */
        if (*dup)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/qos[%s] given twice", what, id);
        *dup = true;

        uint64_t v = 0;
        bool unlimited = false;
        int r = qos_hard(q, what, id, &v, &unlimited, err);
        if (r < 0)
                return r;
        if (streq(id, "slmmemorylimit")) {
                seen->slm_bytes = v;
        } else if (streq(id, "physpages")) {
                if (v > INT64_MAX / PAGE_BYTES)
                        return bad_value(err, what, "qos[physpages]/hard",
                                         cta_xnode_ctext(q, "hard"), "is too large");
                seen->phys_bytes = v * PAGE_BYTES;
        } else {
                if (v > CPU_PERCENT_MAX)
                        return bad_value(err, what, "qos[cpulimit]/hard",
                                         cta_xnode_ctext(q, "hard"), "must be 0-102400 (percent)");
                out->has_cpu = true;
                out->cpu_percent = (unsigned)v;
        }
        return 0;
}

/* ---- config ---- */

static int config_parse(const struct cta_xnode *cfg, const char *what, struct cta_env_config *out,
                        struct cta_error **err)
{
        int r;
        const char *v;
        char sub[128];

        if ((v = cta_xnode_ctext(cfg, "name"))) {
                if ((r = text_value(v, what, "name", out->name, sizeof(out->name), err)) < 0)
                        return r;
                out->has_name = true;
        }
        if ((v = cta_xnode_ctext(cfg, "hostname"))) {
                if (!hostname_valid(v))
                        return bad_value(err, what, "hostname", v,
                                         "is not a valid host name (RFC 1123)");
                snprintf(out->hostname, sizeof(out->hostname), "%s", v);
                out->has_hostname = true;
        }
        const struct cta_xnode *d = cta_xnode_child(cfg, "description");
        if (d) {
                r = cta_b64_decode_str(d->text, d->text_len, out->description,
                                       sizeof(out->description));
                if (r == -CTA_E_TOO_LARGE)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "%s/description is too long (max %d bytes)", what,
                                             CTA_ENV_DESC_MAX);
                if (r < 0)
                        return cta_error_set(err, CTA_E_BAD_BASE64, 0,
                                             "%s/description is not valid base64 text", what);
                out->has_description = true;
        }
        if ((v = cta_xnode_ctext(cfg, "veid"))) {
                if (cta_parse_u64(v, VEID_MAX, &out->veid) < 0 || out->veid == 0)
                        return bad_value(err, what, "veid", v, "is not a number in 1-2147483647");
                out->has_veid = true;
        }
        if ((v = cta_xnode_ctext(cfg, "ve_private"))) {
                r = path_value(v, what, "ve_private", out->ve_private, sizeof(out->ve_private),
                               err);
                if (r < 0)
                        return r;
                out->has_ve_private = true;
        }
        if ((v = cta_xnode_ctext(cfg, "on_boot"))) {
                if (!*v || cta_parse_bool(v, false, &out->on_boot) < 0)
                        return bad_value(err, what, "on_boot", v, "must be true or false");
                out->has_on_boot = true;
        }
        const struct cta_xnode *t = cta_xnode_child(cfg, "os_template");
        if (t) {
                v = cta_xnode_ctext(t, "name");
                if (!v || !*v)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "%s/os_template/name is missing", what);
                if (strlen(v) > CTA_ENV_TEXT_MAX || !template_name_valid(v))
                        return bad_value(err, what, "os_template/name", v,
                                         "is not a template name ([A-Za-z0-9._+-])");
                snprintf(out->os_template, sizeof(out->os_template), "%s", v);
                out->has_os_template = true;
        }

        /* The element order of a packet is not ours to rely on: walk all
         * children once for the repeated ones. */
        struct qos_seen seen = { 0 };
        for (const struct cta_xnode *c = cfg->first_child; c; c = c->next) {
                if (streq(c->name, "address")) {
                        out->has_ips = true;
                        snprintf(sub, sizeof(sub), "%s/address", what);
                        if ((r = add_address(c, sub, out, err)) < 0)
                                return r;
                } else if (streq(c->name, "net_device")) {
                        snprintf(sub, sizeof(sub), "%s/net_device/ip_address", what);
                        for (const struct cta_xnode *a = cta_xnode_child(c, "ip_address"); a;
                             a = cta_xnode_next_named(a)) {
                                out->has_ips = true;
                                if ((r = add_address(a, sub, out, err)) < 0)
                                        return r;
                        }
                } else if (streq(c->name, "qos")) {
                        if ((r = qos_parse(c, what, &seen, out, err)) < 0)
                                return r;
                }
        }
        if (seen.slm || seen.phys) {
                /* Both given: the stricter limit wins (0 = unlimited). */
                uint64_t a = seen.slm ? seen.slm_bytes : 0, b = seen.phys ? seen.phys_bytes : 0;
                out->has_mem = true;
                out->mem_bytes = !a ? b : !b ? a : (a < b ? a : b);
        }
        return 0;
}

int cta_env_config_parse(const struct cta_xnode *config, struct cta_env_config *out,
                         struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        if (!config)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "config is missing");
        int r = config_parse(config, "config", out, err);
        if (r < 0)
                memset(out, 0, sizeof(*out));
        return r;
}

/* ---- calls ---- */

static const char *call_name(const struct cta_xnode *call, const char *dflt)
{
        return call ? call->name : dflt;
}

int cta_envm_parse_eid_req(const struct cta_xnode *call, struct cta_envm_eid_req *out,
                           struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        if (!call)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "envm call is missing");
        int r = eid_value(cta_xnode_ctext(call, "eid"), call->name, "eid", out->eid, err);
        if (r >= 0)
                r = flag_field(call, "force", call->name, &out->force, err);
        if (r < 0)
                memset(out, 0, sizeof(*out));
        return r;
}

int cta_envm_parse_create(const struct cta_xnode *call, struct cta_envm_create_req *out,
                          struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        const char *what = call_name(call, "create");
        if (!call)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "create is missing");
        int r = flag_field(call, "force", what, &out->force, err);
        const char *eid = cta_xnode_ctext(call, "eid");
        if (r >= 0 && eid && *eid) {
                r = eid_value(eid, what, "eid", out->eid, err);
                out->has_eid = r >= 0;
        }
        const struct cta_xnode *cfg = cta_xnode_child(call, "config");
        if (r >= 0 && !cfg)
                r = cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/config is missing", what);
        if (r >= 0) {
                char w[64];
                snprintf(w, sizeof(w), "%s/config", what);
                r = config_parse(cfg, w, &out->cfg, err);
        }
        if (r < 0)
                memset(out, 0, sizeof(*out));
        return r;
}

static int get_list_parse(const struct cta_xnode *call, const char *what,
                          struct cta_envm_list_req *out, struct cta_error **err)
{
        const char *v = cta_xnode_ctext(call, "count");
        if (v) {
                if (cta_parse_u64(v, INT32_MAX, &out->count) < 0)
                        return bad_value(err, what, "count", v, "is not a number in 0-2147483647");
                out->has_count = true;
        }
        for (const struct cta_xnode *s = cta_xnode_child(call, "status"); s;
             s = cta_xnode_next_named(s)) {
                v = cta_xnode_ctext(s, "state");
                if (!v)
                        continue; /* a transition-only filter: we filter on states */
                int64_t st;
                if (cta_parse_i64(v, 0, INT32_MAX, &st) < 0)
                        return bad_value(err, what, "status/state", v, "is not a state number");
                if (out->n_status >= CTA_ENVM_MAX_STATUS)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "%s: too many status filters (max %d)", what,
                                             CTA_ENVM_MAX_STATUS);
                out->status[out->n_status++] = (int)st;
        }
        return 0;
}

int cta_envm_parse_get_list(const struct cta_xnode *call, struct cta_envm_list_req *out,
                            struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        if (!call)
                return 0; /* every filter is optional */
        int r = get_list_parse(call, call->name, out, err);
        if (r < 0)
                memset(out, 0, sizeof(*out));
        return r;
}

void cta_envm_info_req_done(struct cta_envm_info_req *r)
{
        free(r->eids);
        r->eids = NULL;
        r->n_eids = 0;
}

static int get_info_parse(const struct cta_xnode *call, const char *what,
                          struct cta_envm_info_req *out, struct cta_error **err)
{
        size_t n = 0;
        for (const struct cta_xnode *e = cta_xnode_child(call, "eid"); e;
             e = cta_xnode_next_named(e))
                if (++n > CTA_ENVM_MAX_EIDS)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "%s: too many eids (max %d)", what,
                                             CTA_ENVM_MAX_EIDS);
        if (n)
                out->eids = cta_xcalloc(n, sizeof(*out->eids));
        for (const struct cta_xnode *e = cta_xnode_child(call, "eid"); e;
             e = cta_xnode_next_named(e)) {
                char eid[37];
                int r = eid_value(cta_xnode_ttext(e), what, "eid", eid, err);
                if (r < 0)
                        return r;
                bool dup = false;
                for (size_t i = 0; i < out->n_eids && !dup; i++)
                        dup = streq(out->eids[i], eid);
                if (!dup)
                        memcpy(out->eids[out->n_eids++], eid, sizeof(eid));
        }
        out->config = cta_xnode_child(call, "config") != NULL;
        return 0;
}

int cta_envm_parse_get_info(const struct cta_xnode *call, struct cta_envm_info_req *out,
                            struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        if (!call)
                return 0; /* no eid: all environments, without config */
        int r = get_info_parse(call, call->name, out, err);
        if (r < 0)
                cta_envm_info_req_done(out);
        return r;
}

int cta_envm_parse_set(const struct cta_xnode *call, struct cta_envm_set_req *out,
                       struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        if (!call)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "set is missing");
        const char *what = call->name;
        int r = eid_value(cta_xnode_ctext(call, "eid"), what, "eid", out->eid, err);
        if (r >= 0)
                r = flag_field(call, "force", what, &out->force, err);
        const struct cta_xnode *cfg = cta_xnode_child(call, "config");
        if (r >= 0 && !cfg && cta_xnode_child(call, "apply_config"))
                r = cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                  "%s/apply_config (sample configurations) is not supported",
                                  what);
        if (r >= 0 && cfg) {
                char w[64];
                snprintf(w, sizeof(w), "%s/config", what);
                r = config_parse(cfg, w, &out->cfg, err);
        }
        if (r < 0)
                memset(out, 0, sizeof(*out));
        return r;
}

/* ---- replies ---- */

static void buf_truncate(struct cta_buf *b, size_t len)
{
        if (b->data && len <= b->len) {
                b->len = len;
                b->data[len] = '\0';
        }
}

/* Begin a reply; a bad header (e.g. an invalid origin) leaves no writer
 * error behind, so it is checked here. */
static int begin(struct cta_xw *w, struct cta_buf *out, const struct cta_reply_hdr *h)
{
        cta_xw_init(w, out);
        int r = cta_reply_begin(w, h);
        if (r < 0 && !w->err)
                w->err = r;
        return r;
}

static int finish(struct cta_xw *w, size_t mark)
{
        int r = w->err ? w->err : cta_reply_end(w);
        if (r < 0)
                buf_truncate(w->b, mark);
        return r;
}

static void write_u64(struct cta_xw *w, const char *qname, uint64_t v)
{
        char num[24];
        snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
        cta_xw_text(w, qname, num);
}

/* "a.b.c.d/prefix" → address{ip, netmask}; anything else is sent as the ip. */
static void write_address(struct cta_xw *w, const char *ip)
{
        char host[32];
        const char *slash = strchr(ip, '/');
        uint64_t prefix = 0;
        cta_xw_open(w, NS4("address"));
        if (slash && (size_t)(slash - ip) < sizeof(host) &&
            cta_parse_u64(slash + 1, 32, &prefix) == 0) {
                memcpy(host, ip, (size_t)(slash - ip));
                host[slash - ip] = '\0';
                struct in_addr m = { .s_addr = htonl(prefix ? 0xffffffffu << (32 - prefix) : 0) };
                char mask[INET_ADDRSTRLEN] = "";
                inet_ntop(AF_INET, &m, mask, sizeof(mask));
                cta_xw_text(w, NS4("ip"), host);
                cta_xw_text(w, NS4("netmask"), mask);
        } else {
                cta_xw_text(w, NS4("ip"), ip);
        }
        cta_xw_close(w);
}

static void write_qos(struct cta_xw *w, const char *id, uint64_t hard)
{
        cta_xw_open(w, NS4("qos"));
        cta_xw_text(w, NS4("id"), id);
        write_u64(w, NS4("hard"), hard > INT64_MAX ? INT64_MAX : hard);
        cta_xw_close(w);
}

/* The children of a vza venv_configType, in XSD order: env_configType's
 * (ns4), then vzl venv_configType's qos (ns4), then vzatypes' own (ns3). */
static void write_config_body(struct cta_xw *w, const struct cta_env_view *e)
{
        if (e->name)
                cta_xw_text(w, NS4("name"), e->name);
        if (e->description)
                cta_xw_b64(w, NS4("description"), e->description, strlen(e->description));
        if (e->hostname)
                cta_xw_text(w, NS4("hostname"), e->hostname);
        for (size_t i = 0; i < e->n_ips; i++)
                if (e->ips && e->ips[i])
                        write_address(w, e->ips[i]);
        if (e->mem_bytes) {
                /* Both names: older clients read slmmemorylimit, newer physpages. */
                write_qos(w, "slmmemorylimit", e->mem_bytes);
                write_qos(w, "physpages", (e->mem_bytes + PAGE_BYTES - 1) / PAGE_BYTES);
        }
        if (e->cpu_percent)
                write_qos(w, "cpulimit", e->cpu_percent);
        if (e->veid)
                write_u64(w, NS3("veid"), e->veid);
        if (e->ve_root)
                cta_xw_text(w, NS3("ve_root"), e->ve_root);
        if (e->ve_private)
                cta_xw_text(w, NS3("ve_private"), e->ve_private);
        cta_xw_text(w, NS3("on_boot"), e->on_boot ? "true" : "false");
        if (e->os_template) {
                cta_xw_open(w, NS3("os_template"));
                cta_xw_text(w, NS3("name"), e->os_template);
                cta_xw_close(w);
        }
}

static void write_env(struct cta_xw *w, const struct cta_env_view *e, bool with_config)
{
        char qn[CTA_XW_NAME_MAX + 1];
        cta_xw_open(w, cta_xw_qname(qn, cta_reply_elem_prefix(w, "env"), "env"));
        cta_xw_text(w, NS4("parent_eid"), e->parent_eid ? e->parent_eid : "");
        cta_xw_text(w, NS4("eid"), e->eid ? e->eid : "");
        cta_xw_open(w, NS4("status"));
        cta_xw_int(w, NS4("state"), e->state);
        cta_xw_int(w, NS4("transition"), e->transition);
        cta_xw_close(w);
        if (with_config) {
                cta_xw_open(w, NS4("virtual_config"));
                cta_xw_attr(w, "xsi:type", NS3("venv_configType"));
                write_config_body(w, e);
                cta_xw_close(w);
        }
        cta_xw_close(w);
}

int cta_envm_eids_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                        const char *const *eids, size_t n)
{
        struct cta_xw w;
        size_t mark = out->len;
        char qn[CTA_XW_NAME_MAX + 1];
        if (begin(&w, out, h) >= 0) {
                cta_xw_qname(qn, cta_reply_elem_prefix(&w, "eid"), "eid");
                for (size_t i = 0; i < n; i++)
                        cta_xw_text(&w, qn, eids[i]);
        }
        return finish(&w, mark);
}

int cta_envm_envs_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                        const struct cta_env_view *envs, size_t n, bool with_config)
{
        struct cta_xw w;
        size_t mark = out->len;
        if (begin(&w, out, h) >= 0)
                for (size_t i = 0; i < n; i++)
                        write_env(&w, &envs[i], with_config);
        return finish(&w, mark);
}

int cta_envm_env_config_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                              const struct cta_env_view *env)
{
        struct cta_xw w;
        size_t mark = out->len;
        char qn[CTA_XW_NAME_MAX + 1];
        if (begin(&w, out, h) >= 0) {
                cta_xw_open(&w, cta_xw_qname(qn, cta_reply_elem_prefix(&w, "env_config"),
                                             "env_config"));
                cta_xw_attr(&w, "xsi:type", NS3("venv_configType"));
                write_config_body(&w, env);
                cta_xw_close(&w);
        }
        return finish(&w, mark);
}
