/* Container commands: create, list, info, start, stop, restart, destroy and
 * set, on the vzaenvm operator (docs/protocol.md, "vzaenvm"). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_ct.h"
#include "cli/conn.h"
#include "cli/progress.h"
#include "proto/packet.h"
#include "util/base64.h"
#include "util/util.h"

#define ENVM "vzaenvm"
#define PAGE_BYTES 4096u
#define CPU_PERCENT_MAX 102400u
#define VEID_MAX 2147483647u
/* Per-packet wait for calls that run a container's lifecycle when the user
 * kept the default --timeout: the node itself waits up to 60 s for a
 * container to shut down, then kills it, so 60 s here would race it. */
#define CT_SLOW_TIMEOUT_MS (180 * 1000)
/* Containers per get_info when listing (see ct_fetch). */
#define CT_INFO_BATCH 100

/* ---- state names ---- */

/* The numbers are ctagent's own (the vendor's are unknown, spec Q4); this is
 * a copy of the table in src/ct/ct.h (enum cta_ct_state, enum
 * cta_ct_transition), kept here because the client does not link src/ct.
 * Change both together (docs/protocol.md shows it too). */
static const char *const state_names[] = {
        "unknown", "nonexistent", "config", "down", "mounted", "suspended", "running", "repairing",
};
static const char *const transition_names[] = {
        "none",       "creating", "starting", "stopping",
        "restarting", "destroying", "setting", "migrating",
};

const char *cli_ct_state_name(int state)
{
        if (state < 0 || (size_t)state >= CTA_ARRAY_SIZE(state_names))
                return NULL;
        return state_names[state];
}

const char *cli_ct_transition_name(int transition)
{
        if (transition < 0 || (size_t)transition >= CTA_ARRAY_SIZE(transition_names))
                return NULL;
        return transition_names[transition];
}

int cli_ct_parse_state(const char *s, int *ret)
{
        uint64_t n;

        for (size_t i = 0; i < CTA_ARRAY_SIZE(state_names); i++)
                if (strcasecmp(s, state_names[i]) == 0) {
                        *ret = (int)i;
                        return 0;
                }
        /* "stopped" is what people say; the table calls it down. */
        if (strcasecmp(s, "stopped") == 0) {
                *ret = 3;
                return 0;
        }
        if (cta_parse_u64(s, 1000, &n) < 0)
                return -CTA_E_INVALID;
        *ret = (int)n;
        return 0;
}

/* ---- sizes, CPU, addresses ---- */

int cli_ct_parse_size(const char *s, uint64_t *ret)
{
        uint64_t n = 0;
        unsigned shift = 0;
        const char *p = s;

        if (strcasecmp(s, "unlimited") == 0) {
                *ret = 0;
                return 0;
        }
        if (!isdigit((unsigned char)*p))
                return -CTA_E_INVALID;
        for (; isdigit((unsigned char)*p); p++) {
                if (n > (UINT64_MAX - 9) / 10)
                        return -CTA_E_INVALID;
                n = n * 10 + (uint64_t)(*p - '0');
        }
        switch (toupper((unsigned char)*p)) {
        case 'K':
                shift = 10;
                break;
        case 'M':
                shift = 20;
                break;
        case 'G':
                shift = 30;
                break;
        case 'T':
                shift = 40;
                break;
        case 'B':
        case '\0':
                break;
        default:
                return -CTA_E_INVALID;
        }
        if (shift) {
                p++;
                if (*p == 'i' || *p == 'I') {
                        p++;
                        if (*p != 'B' && *p != 'b')
                                return -CTA_E_INVALID;
                }
        }
        if (*p == 'B' || *p == 'b')
                p++;
        if (*p)
                return -CTA_E_INVALID;
        if (n > ((uint64_t)INT64_MAX >> shift))
                return -CTA_E_INVALID;
        *ret = n << shift;
        return 0;
}

int cli_ct_parse_cpu(const char *s, unsigned *ret)
{
        char num[16];
        size_t len = strlen(s);
        uint64_t n;

        if (strcasecmp(s, "unlimited") == 0) {
                *ret = 0;
                return 0;
        }
        if (len && s[len - 1] == '%')
                len--;
        if (len == 0 || len >= sizeof(num))
                return -CTA_E_INVALID;
        memcpy(num, s, len);
        num[len] = '\0';
        if (cta_parse_u64(num, CPU_PERCENT_MAX, &n) < 0)
                return -CTA_E_INVALID;
        *ret = (unsigned)n;
        return 0;
}

void cli_ct_fmt_size(uint64_t bytes, char out[32])
{
        static const struct {
                unsigned shift;
                char unit;
        } units[] = { { 40, 'T' }, { 30, 'G' }, { 20, 'M' }, { 10, 'K' } };

        if (bytes == 0) {
                snprintf(out, 32, "unlimited");
                return;
        }
        for (size_t i = 0; i < CTA_ARRAY_SIZE(units); i++) {
                uint64_t u = (uint64_t)1 << units[i].shift;
                if (bytes % u == 0) {
                        snprintf(out, 32, "%llu%c", (unsigned long long)(bytes / u),
                                 units[i].unit);
                        return;
                }
        }
        snprintf(out, 32, "%llu", (unsigned long long)bytes);
}

/* "a.b.c.d" or "a.b.c.d/p" (p 1-32). */
static int parse_ip(const char *s, struct cli_ct_ip *out)
{
        char host[32];
        const char *slash = strchr(s, '/');
        size_t hl = slash ? (size_t)(slash - s) : strlen(s);
        struct in_addr in;
        uint64_t p = 0;

        if (hl == 0 || hl >= sizeof(host))
                return -CTA_E_INVALID;
        memcpy(host, s, hl);
        host[hl] = '\0';
        if (inet_pton(AF_INET, host, &in) != 1)
                return -CTA_E_INVALID;
        if (slash && (cta_parse_u64(slash + 1, 32, &p) < 0 || p == 0))
                return -CTA_E_INVALID;
        if (!inet_ntop(AF_INET, &in, out->addr, sizeof(out->addr)))
                return -CTA_E_INVALID;
        out->prefix = (unsigned)p;
        return 0;
}

/* One --ip value: an address or a comma-separated list, added to cfg. */
static int parse_ip_list(const char *list, struct cli_ct_config *cfg, struct cta_error **err)
{
        _cleanup_free_ char *copy = cta_xstrdup(list);
        char *save = NULL;
        bool any = false;

        if (!*list)
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "--ip needs an address (A.B.C.D or A.B.C.D/PREFIX); "
                                     "--no-ip removes them all");
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                struct cli_ct_ip ip;
                bool dup = false;

                if (parse_ip(tok, &ip) < 0)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "bad --ip '%s': want A.B.C.D or A.B.C.D/PREFIX "
                                             "(PREFIX 1-32)",
                                             tok);
                any = true;
                for (size_t i = 0; i < cfg->n_ips && !dup; i++)
                        dup = streq(cfg->ips[i].addr, ip.addr);
                if (dup)
                        continue;
                if (cfg->n_ips >= 8)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "too many addresses in --ip (at most 8)");
                cfg->ips[cfg->n_ips++] = ip;
        }
        if (!any)
                return cta_error_set(err, CTA_E_INVALID, 0, "--ip '%s' holds no address", list);
        return 0;
}

int cli_ct_config_from_opts(const struct cli_opts *o, struct cli_ct_config *cfg,
                            struct cta_error **err)
{
        const char *const *ips;
        size_t nips;
        const char *v;
        int r;

        memset(cfg, 0, sizeof(*cfg));
        cfg->name = cli_opt(o, "name");
        cfg->hostname = cli_opt(o, "hostname");
        cfg->os_template = cli_opt(o, "template");
        cfg->description = cli_opt(o, "description");
        if (cfg->os_template && !*cfg->os_template)
                return cta_error_set(err, CTA_E_INVALID, 0, "--template needs a name");
        if (cfg->hostname && !*cfg->hostname)
                return cta_error_set(err, CTA_E_INVALID, 0, "--hostname needs a host name");
        if ((v = cli_opt(o, "veid"))) {
                if (cta_parse_u64(v, VEID_MAX, &cfg->veid) < 0 || cfg->veid == 0)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "bad --veid '%s': want a number from 1 to %u", v,
                                             VEID_MAX);
                cfg->has_veid = true;
        }
        /* --ip is repeatable, and each value may be a list: all of them count. */
        nips = cli_opt_all(o, "ip", &ips);
        if (nips) {
                if (cli_opt(o, "no-ip"))
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--ip and --no-ip contradict each other");
                for (size_t i = 0; i < nips; i++) {
                        r = parse_ip_list(ips[i], cfg, err);
                        if (r < 0)
                                return r;
                }
                cfg->has_ips = true;
        } else if (cli_opt(o, "no-ip")) {
                cfg->has_ips = true;
        }
        if ((v = cli_opt(o, "memory"))) {
                if (cli_ct_parse_size(v, &cfg->mem_bytes) < 0)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "bad --memory '%s': want a size such as 256M or "
                                             "1G (K, M, G, T are powers of 1024), or unlimited",
                                             v);
                if (cfg->mem_bytes && cfg->mem_bytes < CLI_CT_MIN_MEMORY)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--memory '%s' is under 1M; a number without a unit "
                                             "counts bytes (did you mean %sM?)",
                                             v, v);
                cfg->has_mem = true;
        }
        if ((v = cli_opt(o, "cpu"))) {
                if (cli_ct_parse_cpu(v, &cfg->cpu_percent) < 0)
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "bad --cpu '%s': want a percentage of one CPU "
                                             "(50, 250 for two and a half, up to %u), or "
                                             "unlimited",
                                             v, CPU_PERCENT_MAX);
                cfg->has_cpu = true;
        }
        if (cli_opt(o, "on-boot")) {
                if (cli_opt(o, "no-on-boot"))
                        return cta_error_set(err, CTA_E_INVALID, 0,
                                             "--on-boot and --no-on-boot contradict each other");
                cfg->has_on_boot = cfg->on_boot = true;
        } else if (cli_opt(o, "no-on-boot")) {
                cfg->has_on_boot = true;
        }
        return 0;
}

/* ---- requests ---- */

static void req_u64(struct cli_req *r, const char *name, uint64_t v)
{
        char num[24];

        snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
        cli_req_text(r, name, num);
}

/* qos{id, hard}; 0 = unlimited, which Virtuozzo spells -1. */
static void req_qos(struct cli_req *r, const char *id, uint64_t hard)
{
        cli_req_open(r, "qos");
        cli_req_text(r, "id", id);
        if (hard)
                req_u64(r, "hard", hard);
        else
                cli_req_text(r, "hard", "-1");
        cli_req_close(r, "qos");
}

/* The config element in venv_configType order (name, description, hostname,
 * address*, qos*, veid, on_boot, os_template). */
static void req_config(struct cli_req *r, const struct cli_ct_config *cfg)
{
        cli_req_open(r, "config");
        if (cfg->name)
                cli_req_text(r, "name", cfg->name);
        if (cfg->description)
                cli_req_b64(r, "description", cfg->description, strlen(cfg->description));
        if (cfg->hostname)
                cli_req_text(r, "hostname", cfg->hostname);
        for (size_t i = 0; i < cfg->n_ips; i++) {
                const struct cli_ct_ip *ip = &cfg->ips[i];
                cli_req_open(r, "address");
                cli_req_text(r, "ip", ip->addr);
                if (ip->prefix) {
                        struct in_addr m = { .s_addr = htonl(0xffffffffu << (32 - ip->prefix)) };
                        char mask[INET_ADDRSTRLEN];
                        if (inet_ntop(AF_INET, &m, mask, sizeof(mask)))
                                cli_req_text(r, "netmask", mask);
                }
                cli_req_close(r, "address");
        }
        /* An empty address list is how set says "no addresses". */
        if (cfg->has_ips && cfg->n_ips == 0)
                cli_req_empty(r, "address");
        if (cfg->has_mem) {
                /* Both names, as the node writes them: older agents read
                 * slmmemorylimit (bytes), newer ones physpages (4 KiB pages). */
                req_qos(r, "slmmemorylimit", cfg->mem_bytes);
                req_qos(r, "physpages", (cfg->mem_bytes + PAGE_BYTES - 1) / PAGE_BYTES);
        }
        if (cfg->has_cpu)
                req_qos(r, "cpulimit", cfg->cpu_percent);
        if (cfg->has_veid)
                req_u64(r, "veid", cfg->veid);
        if (cfg->has_on_boot)
                cli_req_text(r, "on_boot", cfg->on_boot ? "true" : "false");
        if (cfg->os_template) {
                cli_req_open(r, "os_template");
                cli_req_text(r, "name", cfg->os_template);
                cli_req_close(r, "os_template");
        }
        cli_req_close(r, "config");
}

void cli_ct_req_create(struct cli_req *r, struct cli_conn *c, const struct cli_ct_config *cfg)
{
        cli_req_begin(r, c, ENVM, ENVM, true);
        cli_req_open(r, "create");
        req_config(r, cfg);
        cli_req_close(r, "create");
        cli_req_end(r);
}

void cli_ct_req_set(struct cli_req *r, struct cli_conn *c, const char *eid,
                    const struct cli_ct_config *cfg)
{
        cli_req_begin(r, c, ENVM, ENVM, true);
        cli_req_open(r, "set");
        cli_req_text(r, "eid", eid);
        req_config(r, cfg);
        cli_req_close(r, "set");
        cli_req_end(r);
}

void cli_ct_req_eid(struct cli_req *r, struct cli_conn *c, const char *call, const char *eid,
                    bool force)
{
        cli_req_begin(r, c, ENVM, ENVM, true);
        cli_req_open(r, call);
        cli_req_text(r, "eid", eid);
        if (force)
                cli_req_empty(r, "force");
        cli_req_close(r, call);
        cli_req_end(r);
}

void cli_ct_req_get_info(struct cli_req *r, struct cli_conn *c, const char *const *eids,
                         size_t n)
{
        cli_req_begin(r, c, ENVM, ENVM, false);
        cli_req_open(r, "get_info");
        for (size_t i = 0; i < n; i++)
                cli_req_text(r, "eid", eids[i]);
        cli_req_empty(r, "config");
        cli_req_close(r, "get_info");
        cli_req_end(r);
}

void cli_ct_req_get_list(struct cli_req *r, struct cli_conn *c, const int *states, size_t n)
{
        cli_req_begin(r, c, ENVM, ENVM, false);
        cli_req_open(r, "get_list");
        for (size_t i = 0; i < n; i++) {
                cli_req_open(r, "status");
                req_u64(r, "state", (uint64_t)states[i]);
                cli_req_close(r, "status");
        }
        cli_req_close(r, "get_list");
        cli_req_end(r);
}

/* ---- replies ---- */

static int int_field(const struct cta_xnode *n, const char *name)
{
        const char *t = cta_xnode_ctext(n, name);
        int64_t v;

        if (!t || cta_parse_i64(t, 0, INT32_MAX, &v) < 0)
                return -1;
        return (int)v;
}

static void add_ip(struct cli_ct_env *e, const struct cta_xnode *a)
{
        const char *ip = cta_xnode_ctext(a, "ip");
        const char *mask = cta_xnode_ctext(a, "netmask");
        char ent[sizeof(e->ips[0])];
        struct in_addr m;

        if (!ip || !*ip || e->n_ips >= CLI_CT_MAX_IPS)
                return;
        if (mask && *mask && !strchr(ip, '/') && inet_pton(AF_INET, mask, &m) == 1) {
                uint32_t h = ntohl(m.s_addr);
                unsigned p = 0;
                while (h & 0x80000000u) {
                        p++;
                        h <<= 1;
                }
                snprintf(ent, sizeof(ent), "%.15s/%u", ip, p);
        } else {
                snprintf(ent, sizeof(ent), "%s", ip);
        }
        for (size_t i = 0; i < e->n_ips; i++)
                if (streq(e->ips[i], ent))
                        return;
        memcpy(e->ips[e->n_ips++], ent, sizeof(ent));
}

/* qos/hard: -1 and INT64_MAX are unlimited (0). */
static bool qos_hard(const struct cta_xnode *q, uint64_t *ret)
{
        const char *t = cta_xnode_ctext(q, "hard");
        int64_t v;

        if (!t || cta_parse_i64(t, INT64_MIN, INT64_MAX, &v) < 0 || (v < 0 && v != -1))
                return false;
        *ret = v == -1 || v == INT64_MAX ? 0 : (uint64_t)v;
        return true;
}

static void parse_config(struct cli_ct_env *e, const struct cta_xnode *cfg)
{
        const struct cta_xnode *d;
        const char *t;
        uint64_t slm = 0, phys = 0, v;
        bool has_slm = false, has_phys = false;

        e->has_config = true;
        e->name = cta_xnode_ctext(cfg, "name");
        e->hostname = cta_xnode_ctext(cfg, "hostname");
        e->ve_root = cta_xnode_ctext(cfg, "ve_root");
        e->ve_private = cta_xnode_ctext(cfg, "ve_private");
        e->os_template = cta_xnode_ctext(cta_xnode_child(cfg, "os_template"), "name");
        if ((t = cta_xnode_ctext(cfg, "veid")) && cta_parse_u64(t, UINT64_MAX, &v) == 0)
                e->veid = v;
        if ((t = cta_xnode_ctext(cfg, "on_boot")) && cta_parse_bool(t, false, &e->on_boot) == 0)
                e->has_on_boot = true;
        if ((d = cta_xnode_child(cfg, "description"))) {
                size_t cap = cta_b64_decoded_max(d->text_len) + 1;
                e->description = cta_xmalloc(cap);
                if (cta_b64_decode_str(d->text, d->text_len, e->description, cap) < 0)
                        snprintf(e->description, cap, "?");
        }
        for (const struct cta_xnode *c = cfg->first_child; c; c = c->next) {
                if (streq(c->name, "address")) {
                        add_ip(e, c);
                } else if (streq(c->name, "net_device")) {
                        for (const struct cta_xnode *a = cta_xnode_child(c, "ip_address"); a;
                             a = cta_xnode_next_named(a))
                                add_ip(e, a);
                } else if (streq(c->name, "qos")) {
                        const char *id = cta_xnode_ctext(c, "id");
                        if (!id || !qos_hard(c, &v))
                                continue;
                        if (streq(id, "slmmemorylimit")) {
                                has_slm = true;
                                slm = v;
                        } else if (streq(id, "physpages")) {
                                has_phys = true;
                                phys = v > UINT64_MAX / PAGE_BYTES ? 0 : v * PAGE_BYTES;
                        } else if (streq(id, "cpulimit")) {
                                e->cpu_percent = v > CPU_PERCENT_MAX ? 0 : (unsigned)v;
                        }
                }
        }
        /* Both memory limits: the stricter one applies (0 = unlimited). */
        if (has_slm || has_phys)
                e->mem_bytes = !slm ? phys : !phys ? slm : (slm < phys ? slm : phys);
}

int cli_ct_envs_parse(const struct cta_xnode *op_node, struct cli_ct_env **ret, size_t *ret_n)
{
        struct cli_ct_env *envs = NULL;
        size_t n = 0, cap = 0;

        for (const struct cta_xnode *x = cta_xnode_child(op_node, "env"); x;
             x = cta_xnode_next_named(x)) {
                const struct cta_xnode *st = cta_xnode_child(x, "status");
                const struct cta_xnode *cfg = cta_xnode_child(x, "virtual_config");
                const char *eid = cta_xnode_ctext(x, "eid");

                if (!eid || !*eid)
                        continue;
                if (n == cap) {
                        cap = cap ? cap * 2 : 8;
                        envs = cta_xrealloc(envs, cap * sizeof(*envs));
                }
                struct cli_ct_env *e = &envs[n++];
                memset(e, 0, sizeof(*e));
                e->eid = eid;
                e->parent_eid = cta_xnode_ctext(x, "parent_eid");
                e->state = st ? int_field(st, "state") : -1;
                e->transition = st ? int_field(st, "transition") : -1;
                if (!cfg)
                        cfg = cta_xnode_child(x, "config");
                if (cfg)
                        parse_config(e, cfg);
        }
        *ret = envs;
        *ret_n = n;
        return 0;
}

void cli_ct_envs_free(struct cli_ct_env *envs, size_t n)
{
        for (size_t i = 0; envs && i < n; i++)
                free(envs[i].description);
        free(envs);
}

static bool all_digits(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (!isdigit((unsigned char)*s))
                        return false;
        return true;
}

int cli_ct_match(const struct cli_ct_env *envs, size_t n, const char *what, size_t *ret_idx,
                 struct cta_error **err)
{
        uint64_t veid = 0;
        bool by_veid = all_digits(what) && cta_parse_u64(what, UINT64_MAX, &veid) == 0;
        size_t found = SIZE_MAX, count = 0;
        struct cta_buf list = CTA_BUF_INIT(0);
        int r;

        for (size_t i = 0; i < n; i++) {
                const struct cli_ct_env *e = &envs[i];
                if (!(strcasecmp(e->eid, what) == 0 || (by_veid && e->veid == veid) ||
                      (e->name && streq(e->name, what))))
                        continue;
                if (count++ == 0)
                        found = i;
                _cleanup_free_ char *name = cli_clean_text(e->name ? e->name : "");
                (void)cta_buf_printf(&list, "%s %s (veid %llu%s%s)", count > 1 ? "," : "", e->eid,
                                     (unsigned long long)e->veid, *name ? ", name " : "", name);
        }
        if (count == 1) {
                cta_buf_done(&list);
                *ret_idx = found;
                return 0;
        }
        _cleanup_free_ char *shown = cli_clean_text(what);
        if (count == 0)
                r = cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0,
                                  "no container has the eid, veid or name '%s'", shown);
        else
                r = cta_error_set(err, CTA_E_INVALID, 0,
                                  "'%s' is ambiguous: it names%s; use the eid", shown,
                                  list.data);
        cta_buf_done(&list);
        return r;
}

/* Columns of a UTF-8 string (one per code point). */
static size_t cols(const char *s)
{
        size_t n = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xC0) != 0x80)
                        n++;
        return n;
}

static void pad(FILE *f, const char *s, size_t width, bool last)
{
        fputs(s, f);
        if (last)
                return;
        for (size_t c = cols(s); c < width + 2; c++)
                fputc(' ', f);
}

static const char *state_text(const struct cli_ct_env *e, char buf[24])
{
        const char *s;

        /* A container in transition is best described by what it is doing. */
        if (e->transition > 0) {
                s = cli_ct_transition_name(e->transition);
                if (s)
                        return s;
                snprintf(buf, 24, "transition-%d", e->transition);
                return buf;
        }
        if (e->state < 0)
                return "-";
        s = cli_ct_state_name(e->state);
        if (s)
                return s;
        snprintf(buf, 24, "state-%d", e->state);
        return buf;
}

static char *join_ips(const struct cli_ct_env *e, const char *sep)
{
        struct cta_buf b = CTA_BUF_INIT(0);

        for (size_t i = 0; i < e->n_ips; i++)
                (void)cta_buf_printf(&b, "%s%s", i ? sep : "", e->ips[i]);
        if (!b.data)
                return cta_xstrdup("");
        return cta_buf_steal(&b, NULL);
}

static int by_veid(const void *a, const void *b)
{
        const struct cli_ct_env *x = *(const struct cli_ct_env *const *)a;
        const struct cli_ct_env *y = *(const struct cli_ct_env *const *)b;

        if (x->veid != y->veid)
                return x->veid < y->veid ? -1 : 1;
        return strcmp(x->eid, y->eid);
}

enum { COL_EID, COL_VEID, COL_NAME, COL_HOST, COL_STATE, COL_IP, NCOLS };

void cli_ct_print_table(FILE *f, const struct cli_ct_env *envs, size_t n)
{
        static const char *const heads[NCOLS] = { "EID",      "VEID",  "NAME",
                                                   "HOSTNAME", "STATE", "IP" };
        const struct cli_ct_env **order = cta_xcalloc(n ? n : 1, sizeof(*order));
        char *(*cells)[NCOLS] = cta_xcalloc(n ? n : 1, sizeof(*cells));
        size_t width[NCOLS];

        for (size_t i = 0; i < n; i++)
                order[i] = &envs[i];
        qsort(order, n, sizeof(*order), by_veid);
        for (size_t c = 0; c < NCOLS; c++)
                width[c] = strlen(heads[c]);
        for (size_t i = 0; i < n; i++) {
                const struct cli_ct_env *e = order[i];
                char st[24], veid[24] = "-";
                _cleanup_free_ char *ips = join_ips(e, ",");

                if (e->veid)
                        snprintf(veid, sizeof(veid), "%llu", (unsigned long long)e->veid);
                cells[i][COL_EID] = cli_clean_text(e->eid);
                cells[i][COL_VEID] = cta_xstrdup(veid);
                cells[i][COL_NAME] = cli_clean_text(e->name && *e->name ? e->name : "-");
                cells[i][COL_HOST] = cli_clean_text(e->hostname && *e->hostname ? e->hostname
                                                                                : "-");
                cells[i][COL_STATE] = cli_clean_text(state_text(e, st));
                cells[i][COL_IP] = cli_clean_text(*ips ? ips : "-");
                for (size_t c = 0; c < NCOLS; c++)
                        if (cols(cells[i][c]) > width[c])
                                width[c] = cols(cells[i][c]);
        }
        for (size_t c = 0; c < NCOLS; c++)
                pad(f, heads[c], width[c], c + 1 == NCOLS);
        fputc('\n', f);
        for (size_t i = 0; i < n; i++) {
                for (size_t c = 0; c < NCOLS; c++)
                        pad(f, cells[i][c], width[c], c + 1 == NCOLS);
                fputc('\n', f);
                for (size_t c = 0; c < NCOLS; c++)
                        free(cells[i][c]);
        }
        free(cells);
        free(order);
}

static void info_line(FILE *f, const char *key, const char *val)
{
        _cleanup_free_ char *v = cli_clean_text(val);
        fprintf(f, "%-12s %s\n", key, v);
}

void cli_ct_print_info(FILE *f, const struct cli_ct_env *e)
{
        char buf[32];
        const char *s;

        info_line(f, "eid:", e->eid);
        if (e->veid)
                snprintf(buf, sizeof(buf), "%llu", (unsigned long long)e->veid);
        info_line(f, "veid:", e->veid ? buf : "-");
        info_line(f, "name:", e->name && *e->name ? e->name : "-");
        info_line(f, "hostname:", e->hostname && *e->hostname ? e->hostname : "-");
        if (e->state < 0) {
                s = "-";
        } else if (!(s = cli_ct_state_name(e->state))) {
                snprintf(buf, sizeof(buf), "%d", e->state);
                s = buf;
        }
        info_line(f, "state:", s);
        if (e->transition < 0) {
                s = "-";
        } else if (!(s = cli_ct_transition_name(e->transition))) {
                snprintf(buf, sizeof(buf), "%d", e->transition);
                s = buf;
        }
        info_line(f, "transition:", s);
        info_line(f, "private:", e->ve_private ? e->ve_private : "-");
        info_line(f, "template:", e->os_template ? e->os_template : "-");
        info_line(f, "on_boot:", !e->has_on_boot ? "-" : e->on_boot ? "yes" : "no");
        _cleanup_free_ char *ips = join_ips(e, ", ");
        info_line(f, "ips:", *ips ? ips : "-");
        cli_ct_fmt_size(e->mem_bytes, buf);
        info_line(f, "memory:", buf);
        if (e->cpu_percent)
                snprintf(buf, sizeof(buf), "%u%%", e->cpu_percent);
        info_line(f, "cpu:", e->cpu_percent ? buf : "unlimited");
        info_line(f, "description:", e->description && *e->description ? e->description : "-");
}

/* ---- talking to the node ---- */

struct ct_ui {
        struct cli_ctx *ctx;
        bool bar_on;
        struct cli_progress bar;
};

/* Progress packets of our request: a bar on a terminal, -v lines elsewhere. */
static void on_packet(void *userdata, const struct cta_resp *resp, const char *frame)
{
        struct ct_ui *ui = userdata;

        if (!resp->is_progress)
                return;
        if (ui->bar_on) {
                cli_progress_show(&ui->bar, resp);
        } else if (resp->message) {
                _cleanup_free_ char *m = cli_clean_text(resp->message);
                cli_verbose(ui->ctx->o, 1, "%s", m);
        }
}

/* Send r and wait for its reply, showing progress. */
static int ct_call(struct cli_ctx *ctx, struct cli_req *r, unsigned flags, struct cta_resp **ret)
{
        struct ct_ui ui = { .ctx = ctx, .bar_on = ctx->stdout_tty && !ctx->o->xml };
        int rc;

        if (ui.bar_on)
                cli_progress_init(&ui.bar, stdout, true, 0);
        rc = cli_conn_call(ctx, ctx->conn, r, flags, on_packet, &ui, ret);
        if (ui.bar_on)
                cli_progress_finish(&ui.bar);
        cli_req_done(r);
        return rc;
}

/* A call that changes a container: allow for a slow shutdown. */
static void slow_call(struct cli_ctx *ctx)
{
        if (ctx->o->timeout_ms == CLI_DEFAULT_TIMEOUT_MS &&
            ctx->conn->timeout_ms < CT_SLOW_TIMEOUT_MS)
                ctx->conn->timeout_ms = CT_SLOW_TIMEOUT_MS;
}

static int no_op_node(struct cli_ctx *ctx)
{
        return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO, "the reply from %s has no %s element",
                        ctx->conn->key, ENVM);
}

/* Containers from one or more replies. envs borrow from the replies: free
 * everything with ct_list_done. */
struct ct_list {
        struct cta_resp **resps;
        size_t nresps;
        struct cli_ct_env *envs;
        size_t n;
};

static void ct_list_done(struct ct_list *l)
{
        cli_ct_envs_free(l->envs, l->n);
        for (size_t i = 0; i < l->nresps; i++)
                cta_resp_free(l->resps[i]);
        free(l->resps);
        memset(l, 0, sizeof(*l));
}

/* get_info (with config) of n eids, added to l. */
static int ct_get_info_add(struct cli_ctx *ctx, const char *const *eids, size_t n, unsigned flags,
                           struct ct_list *l)
{
        struct cta_resp *resp = NULL;
        struct cli_ct_env *envs = NULL;
        struct cli_req r;
        size_t k = 0;
        int rc;

        cli_ct_req_get_info(&r, ctx->conn, eids, n);
        rc = ct_call(ctx, &r, flags, &resp);
        if (rc < 0) {
                cta_resp_free(resp);
                return rc;
        }
        if (!resp->op_node) {
                cta_resp_free(resp);
                return no_op_node(ctx);
        }
        l->resps = cta_xrealloc(l->resps, (l->nresps + 1) * sizeof(*l->resps));
        l->resps[l->nresps++] = resp;
        (void)cli_ct_envs_parse(resp->op_node, &envs, &k);
        l->envs = cta_xrealloc(l->envs, (l->n + k + 1) * sizeof(*l->envs));
        if (k)
                memcpy(l->envs + l->n, envs, k * sizeof(*envs));
        l->n += k;
        free(envs); /* the descriptions moved to l */
        return 0;
}

/* The containers the node lists (get_list, optionally filtered by state),
 * with their config: get_info in batches, because a client reads at most
 * CTA_XML_MAX_NODES elements per packet and a container takes up to ~50. */
static int ct_fetch(struct cli_ctx *ctx, const int *states, size_t nstates, unsigned flags,
                    struct ct_list *out)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        const char *eids[CT_INFO_BATCH];
        const struct cta_xnode *x;
        struct cli_req r;
        int rc;

        memset(out, 0, sizeof(*out));
        cli_ct_req_get_list(&r, ctx->conn, states, nstates);
        rc = ct_call(ctx, &r, flags, &resp);
        if (rc < 0)
                return rc;
        if (!resp->op_node)
                return no_op_node(ctx);
        x = cta_xnode_child(resp->op_node, "eid");
        while (x) {
                size_t n = 0;
                for (; x && n < CT_INFO_BATCH; x = cta_xnode_next_named(x))
                        if (*cta_xnode_ttext(x))
                                eids[n++] = cta_xnode_ttext(x);
                /* Never an empty get_info: that would mean all containers. */
                if (n == 0)
                        continue;
                rc = ct_get_info_add(ctx, eids, n, flags, out);
                if (rc < 0) {
                        ct_list_done(out);
                        return rc;
                }
        }
        return 0;
}

/* The eid of the container the user named: an eid as it is, else a veid or
 * a name looked up among all containers (those replies are not shown under
 * --xml: they are not what the user asked for). */
static int ct_resolve(struct cli_ctx *ctx, const char *what, char eid[37])
{
        struct ct_list l;
        struct cta_error *e = NULL;
        size_t idx;
        int r;

        if (cta_uuid_valid(what)) {
                for (size_t i = 0; i <= 36; i++)
                        eid[i] = (char)tolower((unsigned char)what[i]);
                return 0;
        }
        r = ct_fetch(ctx, NULL, 0, CLI_CALL_QUIET, &l);
        if (r < 0)
                return r;
        r = cli_ct_match(l.envs, l.n, what, &idx, &e);
        if (r >= 0) {
                snprintf(eid, 37, "%s", l.envs[idx].eid);
                cli_verbose(ctx->o, 1, "'%s' is container %s", what, eid);
        } else {
                r = cli_fail_err(ctx, CLI_FAIL_REMOTE, e);
        }
        ct_list_done(&l);
        return r;
}

/* One container's info; a missing one is an error (get_info is silent). */
static int ct_get_one(struct cli_ctx *ctx, const char *eid, unsigned flags, struct ct_list *out)
{
        const char *eids[1] = { eid };
        int r;

        memset(out, 0, sizeof(*out));
        r = ct_get_info_add(ctx, eids, 1, flags, out);
        if (r < 0) {
                ct_list_done(out);
                return r;
        }
        for (size_t i = 0; i < out->n; i++)
                if (strcasecmp(out->envs[i].eid, eid) == 0) {
                        if (i) {
                                struct cli_ct_env t = out->envs[0];
                                out->envs[0] = out->envs[i];
                                out->envs[i] = t;
                        }
                        return 0;
                }
        ct_list_done(out);
        return cli_fail(ctx, CLI_FAIL_REMOTE, CTA_E_ENV_NOT_FOUND, "no container with eid %s on %s",
                        eid, ctx->conn->key);
}

static int usage_err(struct cli_ctx *ctx, struct cta_error *e)
{
        return cli_fail_err(ctx, CLI_FAIL_USAGE, e);
}

/* ---- usage checks (before connecting; run() repeats the ones it needs) ---- */

/* CT names a container somehow; an empty one names none. */
static int ct_arg_check(struct cli_ctx *ctx, struct cta_error **err)
{
        if (ctx->o->nargs > 0 && !*ctx->o->args[0])
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "'%s' needs a container: its eid, veid or name, not ''",
                                     ctx->o->cmd->name);
        return 0;
}

static int create_check(struct cli_ctx *ctx, struct cta_error **err)
{
        struct cli_ct_config cfg;

        return cli_ct_config_from_opts(ctx->o, &cfg, err);
}

/* set: the config, and something to change. */
static int set_config(const struct cli_opts *o, struct cli_ct_config *cfg, struct cta_error **err)
{
        int r = cli_ct_config_from_opts(o, cfg, err);

        if (r < 0)
                return r;
        if (!cfg->name && !cfg->hostname && !cfg->description && !cfg->has_ips &&
            !cfg->has_mem && !cfg->has_cpu && !cfg->has_on_boot)
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "'set' needs something to change (see 'ctagent help set')");
        return 0;
}

static int set_check(struct cli_ctx *ctx, struct cta_error **err)
{
        struct cli_ct_config cfg;
        int r = ct_arg_check(ctx, err);

        return r < 0 ? r : set_config(ctx->o, &cfg, err);
}

int cli_ct_list_states(const struct cli_opts *o, int states[CLI_CT_MAX_STATES], size_t *ret_n,
                       struct cta_error **err)
{
        const char *const *vals;
        size_t nvals = cli_opt_all(o, "status", &vals), n = 0;

        for (size_t i = 0; i < nvals; i++) {
                _cleanup_free_ char *copy = cta_xstrdup(vals[i]);
                char *save = NULL;
                size_t before = n;

                for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                        if (n == CLI_CT_MAX_STATES)
                                return cta_error_set(err, CTA_E_INVALID, 0,
                                                     "too many states in --status (at most %d)",
                                                     CLI_CT_MAX_STATES);
                        if (cli_ct_parse_state(t, &states[n++]) < 0)
                                return cta_error_set(err, CTA_E_INVALID, 0,
                                                     "bad --status '%s': want running, down, "
                                                     "mounted, suspended, config, repairing or "
                                                     "a number",
                                                     t);
                }
                if (n == before)
                        return cta_error_set(err, CTA_E_INVALID, 0, "--status needs a state");
        }
        *ret_n = n;
        return 0;
}

static int list_check(struct cli_ctx *ctx, struct cta_error **err)
{
        int states[CLI_CT_MAX_STATES];
        size_t n;

        return cli_ct_list_states(ctx->o, states, &n, err);
}

/* Without --yes somebody must confirm on standard input. */
static int destroy_unconfirmable(struct cli_ctx *ctx, struct cta_error **err)
{
        _cleanup_free_ char *w = cli_clean_text(ctx->o->args[0]);
        _cleanup_free_ char *doing = cta_xasprintf("destroying '%s'", w);
        return cli_confirmable(ctx->o, doing, err);
}

static int destroy_check(struct cli_ctx *ctx, struct cta_error **err)
{
        int r = ct_arg_check(ctx, err);

        return r < 0 ? r : destroy_unconfirmable(ctx, err);
}

/* ---- the commands ---- */

static int ct_lifecycle(struct cli_ctx *ctx, const char *call, const char *eid, bool force)
{
        struct cli_req r;

        slow_call(ctx);
        cli_ct_req_eid(&r, ctx->conn, call, eid, force);
        return ct_call(ctx, &r, 0, NULL);
}

static int cmd_create(struct cli_ctx *ctx)
{
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        struct cli_ct_config cfg;
        struct cta_error *e = NULL;
        struct cli_ct_env *envs = NULL;
        size_t n = 0;
        struct cli_req r;
        char eid[37];
        int rc;

        if (cli_ct_config_from_opts(ctx->o, &cfg, &e) < 0)
                return usage_err(ctx, e);
        slow_call(ctx);
        cli_ct_req_create(&r, ctx->conn, &cfg);
        rc = ct_call(ctx, &r, 0, &resp);
        if (rc < 0)
                return rc;
        if (!resp->op_node)
                return no_op_node(ctx);
        cli_ct_envs_parse(resp->op_node, &envs, &n);
        if (n == 0 || !cta_uuid_valid(envs[0].eid)) {
                cli_ct_envs_free(envs, n);
                return cli_fail(ctx, CLI_FAIL_CONN, CTA_E_PROTO,
                                "the create reply from %s names no container", ctx->conn->key);
        }
        snprintf(eid, sizeof(eid), "%s", envs[0].eid);
        if (!ctx->o->xml) {
                printf("eid:  %s\n", eid);
                if (envs[0].veid)
                        printf("veid: %llu\n", (unsigned long long)envs[0].veid);
                fflush(stdout);
        }
        cli_ct_envs_free(envs, n);
        if (!cli_opt(ctx->o, "start"))
                return 0;
        rc = ct_lifecycle(ctx, "start", eid, false);
        if (rc < 0)
                return rc;
        if (!ctx->o->xml)
                printf("started container %s\n", eid);
        return 0;
}

static int cmd_list(struct cli_ctx *ctx)
{
        struct cta_error *e = NULL;
        int states[CLI_CT_MAX_STATES];
        size_t nstates = 0;
        struct ct_list l;
        int rc;

        if (cli_ct_list_states(ctx->o, states, &nstates, &e) < 0)
                return usage_err(ctx, e);
        rc = ct_fetch(ctx, states, nstates, 0, &l);
        if (rc < 0)
                return rc;
        if (!ctx->o->xml)
                cli_ct_print_table(stdout, l.envs, l.n);
        ct_list_done(&l);
        return 0;
}

static int cmd_info(struct cli_ctx *ctx)
{
        struct ct_list l;
        char eid[37];
        int rc = ct_resolve(ctx, ctx->o->args[0], eid);

        if (rc < 0)
                return rc;
        rc = ct_get_one(ctx, eid, 0, &l);
        if (rc < 0)
                return rc;
        if (!ctx->o->xml)
                cli_ct_print_info(stdout, &l.envs[0]);
        ct_list_done(&l);
        return 0;
}

static int simple(struct cli_ctx *ctx, const char *call, const char *done, bool force)
{
        char eid[37];
        int rc = ct_resolve(ctx, ctx->o->args[0], eid);

        if (rc < 0)
                return rc;
        rc = ct_lifecycle(ctx, call, eid, force);
        if (rc < 0)
                return rc;
        if (!ctx->o->xml)
                printf("%s container %s\n", done, eid);
        return 0;
}

static int cmd_start(struct cli_ctx *ctx)
{
        return simple(ctx, "start", "started", false);
}

static int cmd_stop(struct cli_ctx *ctx)
{
        return simple(ctx, "stop", "stopped", cli_opt(ctx->o, "force") != NULL);
}

static int cmd_restart(struct cli_ctx *ctx)
{
        return simple(ctx, "restart", "restarted", false);
}

/* Ask on the terminal; true only for "yes" (not "y": this deletes data). */
static bool confirm(const struct cli_ct_env *e)
{
        _cleanup_free_ char *name = cli_clean_text(e->name && *e->name ? e->name : "");
        _cleanup_free_ char *priv = cli_clean_text(e->ve_private ? e->ve_private : "");

        fprintf(stderr, "Destroy container %s (veid %llu%s%s)?\n", e->eid,
                (unsigned long long)e->veid, *name ? ", name " : "", name);
        if (*priv)
                fprintf(stderr, "Its private area %s will be deleted.\n", priv);
        return cli_typed_yes("destroy it");
}

static int cmd_destroy(struct cli_ctx *ctx)
{
        const char *what = ctx->o->args[0];
        bool yes = cli_opt(ctx->o, "yes") != NULL;
        struct cta_error *e = NULL;
        char eid[37];
        int rc;

        if (destroy_unconfirmable(ctx, &e) < 0)
                return usage_err(ctx, e);
        rc = ct_resolve(ctx, what, eid);
        if (rc < 0)
                return rc;
        if (!yes) {
                struct ct_list l;
                bool ok;
                rc = ct_get_one(ctx, eid, CLI_CALL_QUIET, &l);
                if (rc < 0)
                        return rc;
                ok = confirm(&l.envs[0]);
                ct_list_done(&l);
                if (!ok)
                        return cli_fail(ctx, CLI_FAIL_LOCAL, CTA_E_CANCELLED,
                                        "not confirmed; container %s left as it was", eid);
        }
        rc = ct_lifecycle(ctx, "destroy", eid, false);
        if (rc < 0)
                return rc;
        if (!ctx->o->xml)
                printf("destroyed container %s\n", eid);
        return 0;
}

static int cmd_set(struct cli_ctx *ctx)
{
        struct cli_ct_config cfg;
        struct cta_error *e = NULL;
        struct cli_req r;
        char eid[37];
        int rc;

        if (set_config(ctx->o, &cfg, &e) < 0)
                return usage_err(ctx, e);
        rc = ct_resolve(ctx, ctx->o->args[0], eid);
        if (rc < 0)
                return rc;
        slow_call(ctx);
        cli_ct_req_set(&r, ctx->conn, eid, &cfg);
        rc = ct_call(ctx, &r, 0, NULL);
        if (rc < 0)
                return rc;
        if (!ctx->o->xml) {
                printf("updated container %s\n", eid);
                if (cfg.has_ips)
                        printf("note: address changes take effect at the container's next "
                               "start\n");
        }
        return 0;
}

/* ---- the table ---- */

#define CT_ARG "CT"
#define CT_ADDRESSING                                                                              \
        "CT is the container's eid, its veid (a number) or its name. A veid or name is\n"      \
        "looked up among all containers; if none or several match, nothing is done and\n"      \
        "the exit status is 1.\n"

static const struct cli_optdef create_opts[] = {
        { "name", 0, "NAME", "the container's name (title)" },
        { "hostname", 0, "HOST", "its host name" },
        { "veid", 0, "N", "numeric id (default: the next free one from 100)" },
        { "template", 0, "T", "OS template (default busybox)" },
        { "ip", 0, "A.B.C.D[/P]", "IPv4 address, /24 if no prefix (repeat, or a,b)",
          CLI_OPT_REPEAT },
        { "memory", 0, "SIZE", "memory limit: 256M, 1G ... (binary units)" },
        { "cpu", 0, "PERCENT", "CPU limit in percent of one CPU (250 = 2.5 CPUs)" },
        { "on-boot", 0, NULL, "start it when the node starts" },
        { "description", 0, "TEXT", "free text" },
        { "start", 0, NULL, "start it once created" },
        { NULL, 0, NULL, NULL },
};

static const struct cli_optdef list_opts[] = {
        { "status", 0, "STATE", "only containers in STATE (repeat, or a,b)",
          CLI_OPT_REPEAT },
        { NULL, 0, NULL, NULL },
};

static const struct cli_optdef stop_opts[] = {
        { "force", 0, NULL, "kill it at once instead of shutting it down" },
        { NULL, 0, NULL, NULL },
};

static const struct cli_optdef destroy_opts[] = {
        { "yes", 'y', NULL, "do not ask for confirmation" },
        { NULL, 0, NULL, NULL },
};

static const struct cli_optdef set_opts[] = {
        { "name", 0, "NAME", "new name (\"\" removes it)" },
        { "hostname", 0, "HOST", "new host name" },
        { "ip", 0, "A.B.C.D[/P]", "replace the addresses (repeat, or a,b)",
          CLI_OPT_REPEAT },
        { "no-ip", 0, NULL, "remove all addresses" },
        { "memory", 0, "SIZE", "memory limit (256M, 1G; unlimited)" },
        { "cpu", 0, "PERCENT", "CPU limit in percent of one CPU (unlimited)" },
        { "on-boot", 0, NULL, "start it when the node starts" },
        { "no-on-boot", 0, NULL, "do not start it when the node starts" },
        { "description", 0, "TEXT", "new description (\"\" clears it)" },
        { NULL, 0, NULL, NULL },
};

const struct cli_command cli_cmds_ct[] = {
        {
                .name = "create",
                .args = "",
                .summary = "create a container (vzaenvm/create)",
                .help = "Creates a container and prints its eid and veid. With --start it is\n"
                        "started afterwards (if that fails, the container stays, stopped).\n"
                        "Limits: --memory takes K, M, G or T (powers of 1024; a bare number\n"
                        "counts bytes), --cpu a percentage of one CPU; both take 'unlimited'.\n"
                        "--ip may be given several times or take a comma list (at most 8).\n"
                        "On a terminal the node's progress is shown while it works.\n"
                        "\n"
                        "Examples:\n"
                        "  ctagent create --name web --hostname web.example.net \\\n"
                        "          --ip 10.231.7.2/24 --memory 256M --cpu 50 --start\n"
                        "  ctagent create --veid 200 --template busybox --on-boot\n"
                        "  ctagent create --name db --ip 10.231.7.5 --ip 10.231.8.5/16\n",
                .min_args = 0,
                .max_args = 0,
                .opts = create_opts,
                .check = create_check,
                .run = cmd_create,
        },
        {
                .name = "list",
                .args = "",
                .summary = "list containers: eid, veid, name, host name, state, IPs",
                .help = "Prints a table sorted by veid. STATE is the state (down, running,\n"
                        "mounted, suspended, config, repairing) or, while the node is working\n"
                        "on the container, what it does (creating, starting, stopping ...).\n"
                        "--status keeps the containers in the given states (a name above,\n"
                        "stopped for down, or a number). With --xml the get_list and get_info\n"
                        "replies are printed instead.\n"
                        "\n"
                        "Examples:\n"
                        "  ctagent list\n"
                        "  ctagent list --status running\n"
                        "  ctagent list --status down,mounted\n"
                        "  ctagent list --status down --status mounted\n",
                .min_args = 0,
                .max_args = 0,
                .opts = list_opts,
                .check = list_check,
                .run = cmd_list,
        },
        {
                .name = "info",
                .args = CT_ARG,
                .summary = "show one container's state and config (vzaenvm/get_info)",
                .help = CT_ADDRESSING "\n"
                        "Prints key: value lines: eid, veid, name, hostname, state, transition,\n"
                        "private, template, on_boot, ips, memory, cpu, description.\n"
                        "\n"
                        "Examples:\n"
                        "  ctagent info web\n"
                        "  ctagent info 101\n"
                        "  ctagent --xml info 3b0c8a54-1d2e-4f60-8a71-9c0d1e2f3a4b\n",
                .min_args = 1,
                .max_args = 1,
                .check = ct_arg_check,
                .run = cmd_info,
        },
        {
                .name = "start",
                .args = CT_ARG,
                .summary = "start a stopped container",
                .help = CT_ADDRESSING "\nExample:\n  ctagent start web\n",
                .min_args = 1,
                .max_args = 1,
                .check = ct_arg_check,
                .run = cmd_start,
        },
        {
                .name = "stop",
                .args = CT_ARG,
                .summary = "stop a running container",
                .help = CT_ADDRESSING
                        "\n"
                        "The node asks the container to shut down and kills it after 60 s\n"
                        "(at once with --force). With the default --timeout the client waits\n"
                        "up to 180 s for the answer.\n"
                        "\n"
                        "Examples:\n"
                        "  ctagent stop web\n"
                        "  ctagent stop --force 101\n",
                .min_args = 1,
                .max_args = 1,
                .opts = stop_opts,
                .check = ct_arg_check,
                .run = cmd_stop,
        },
        {
                .name = "restart",
                .args = CT_ARG,
                .summary = "stop (if running) and start a container",
                .help = CT_ADDRESSING "\nExample:\n  ctagent restart web\n",
                .min_args = 1,
                .max_args = 1,
                .check = ct_arg_check,
                .run = cmd_restart,
        },
        {
                .name = "destroy",
                .args = CT_ARG,
                .summary = "delete a stopped container and its private area",
                .help = CT_ADDRESSING
                        "\n"
                        "The container must be stopped. Without --yes the client shows what\n"
                        "will be deleted and asks; when standard input is not a terminal it\n"
                        "refuses (exit status 2) unless --yes is given.\n"
                        "\n"
                        "Examples:\n"
                        "  ctagent destroy web\n"
                        "  ctagent destroy --yes 101\n",
                .min_args = 1,
                .max_args = 1,
                .opts = destroy_opts,
                .check = destroy_check,
                .run = cmd_destroy,
        },
        {
                .name = "set",
                .args = CT_ARG,
                .summary = "change a container's config (vzaenvm/set)",
                .help = CT_ADDRESSING
                        "\n"
                        "Only what is given changes. Memory and CPU limits apply at once to a\n"
                        "running container; address changes at its next start. --ip replaces\n"
                        "all addresses with the ones given (several --ip, or a comma list; at\n"
                        "most 8). The veid and the private area cannot change.\n"
                        "\n"
                        "Examples:\n"
                        "  ctagent set web --memory 1G --cpu 200\n"
                        "  ctagent set 101 --ip 10.231.7.3/24 --ip 10.231.7.4/24\n"
                        "  ctagent set web --no-ip --no-on-boot --description ''\n",
                .min_args = 1,
                .max_args = 1,
                .opts = set_opts,
                .check = set_check,
                .run = cmd_set,
        },
        { .name = NULL },
};
