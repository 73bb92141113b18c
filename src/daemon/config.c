#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cta_config.h"
#include "daemon/config.h"
#include "proto/packet.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

enum key_type { K_STR, K_STR_OPT, K_BOOL, K_U64, K_LEVEL, K_COMPRESS };

struct key_def {
        const char *name;
        enum key_type type;
        size_t off;
        uint64_t min, max; /* K_U64 */
};

#define STR(n) { #n, K_STR, offsetof(struct cta_config, n), 0, 0 }
#define STR_OPT(n) { #n, K_STR_OPT, offsetof(struct cta_config, n), 0, 0 }
#define U64(n, lo, hi) { #n, K_U64, offsetof(struct cta_config, n), lo, hi }

/* The one table of config keys; docs/limits.md mirrors the bounds. */
static const struct key_def keys[] = {
        STR(state_dir),
        STR(listen),
        STR_OPT(plain_listen),
        { "plain_open", K_BOOL, offsetof(struct cta_config, plain_open), 0, 0 },
        { "vendor_forms", K_BOOL, offsetof(struct cta_config, vendor_forms), 0, 0 },
        { "keep_staging", K_BOOL, offsetof(struct cta_config, keep_staging), 0, 0 },
        STR_OPT(tls_cert),
        STR_OPT(tls_key),
        STR(admin_group),
        STR(pam_service),
        STR_OPT(authorized_clients),
        STR_OPT(template_dir),
        STR_OPT(bridge),
        STR_OPT(bridge_cidr),
        STR_OPT(ct_backend),
        { "log_level", K_LEVEL, offsetof(struct cta_config, log_level), 0, 0 },
        U64(one_time_pass_ttl_s, 1, 86400),
        U64(max_connections, 1, 65536),
        U64(idle_timeout_prelogin_s, 1, 3600),
        U64(idle_timeout_s, 1, 86400),
        U64(frame_max_prelogin, 1024, 1 << 20),
        U64(frame_max, 4096, 64 << 20),
        U64(login_delay_max_ms, 0, 60000),
        U64(max_jobs, 1, 4096),
        U64(handshake_timeout_s, 1, 300),
        { "migrate_compress", K_COMPRESS, offsetof(struct cta_config, migrate_compress), 0,
          CTA_COMPRESS_LEVEL_MAX },
        U64(migrate_compress_auto_mbs, 1, 1000000),
        U64(migrate_probe_reuse_s, 0, 86400),
        U64(ct_watch_interval_s, 1, 3600),
};

/* Accept the names the contract documents without the _s suffix too. */
static const struct {
        const char *alias, *name;
} aliases[] = {
        { "one_time_pass_ttl", "one_time_pass_ttl_s" },
        { "idle_timeout_prelogin", "idle_timeout_prelogin_s" },
        { "idle_timeout", "idle_timeout_s" },
        { "handshake_timeout", "handshake_timeout_s" },
        { "ct_watch_interval", "ct_watch_interval_s" },
};

void cta_config_defaults(struct cta_config *c)
{
        memset(c, 0, sizeof(*c));
        c->state_dir = cta_xstrdup(CTA_DEFAULT_STATE_DIR);
        c->listen = cta_xstrdup("0.0.0.0:4434");
        c->plain_listen = cta_xstrdup("127.0.0.1:4433");
        c->admin_group = cta_xstrdup("ctagent");
        c->pam_service = cta_xstrdup("ctagent");
        c->log_level = LOG_INFO;
        c->migrate_compress = CTA_COMPRESS_AUTO;
        /* zstd level 1 compresses about 350 MB/s on one core of the machines we
         * measured: a link much slower than that gains by it, a faster one loses */
        c->migrate_compress_auto_mbs = 250;
        /* a link's rate is taken as it was measured for ten minutes: long enough for an
         * evacuation's next container or a retry, short against a link's changes */
        c->migrate_probe_reuse_s = 600;
        c->ct_watch_interval_s = 10;
        c->one_time_pass_ttl_s = 600;
        c->max_connections = 1024;
        c->idle_timeout_prelogin_s = 30;
        c->idle_timeout_s = 600;
        c->frame_max_prelogin = 64 * 1024;
        c->frame_max = 16 * 1024 * 1024;
        c->login_delay_max_ms = 8000;
        c->max_jobs = 256;
        c->handshake_timeout_s = 10;
}

void cta_config_done(struct cta_config *c)
{
        for (size_t i = 0; i < CTA_ARRAY_SIZE(keys); i++)
                if (keys[i].type == K_STR || keys[i].type == K_STR_OPT) {
                        char **p = (char **)((char *)c + keys[i].off);
                        free(*p);
                        *p = NULL;
                }
        free(c->ready_file);
        c->ready_file = NULL;
}

int cta_config_set(struct cta_config *c, const char *key, const char *value,
                   struct cta_error **err)
{
        for (size_t i = 0; i < CTA_ARRAY_SIZE(aliases); i++)
                if (streq(key, aliases[i].alias))
                        key = aliases[i].name;
        for (size_t i = 0; i < CTA_ARRAY_SIZE(keys); i++) {
                const struct key_def *k = &keys[i];
                void *p = (char *)c + k->off;
                if (!streq(k->name, key))
                        continue;
                switch (k->type) {
                case K_STR:
                        if (!*value)
                                return cta_error_set(err, CTA_E_CONFIG, 0, "%s must not be empty",
                                                     key);
                        free(*(char **)p);
                        *(char **)p = cta_xstrdup(value);
                        return 0;
                case K_STR_OPT:
                        free(*(char **)p);
                        *(char **)p = (*value && !streq(value, "none")) ? cta_xstrdup(value)
                                                                       : NULL;
                        return 0;
                case K_BOOL:
                        if (cta_parse_bool(value, false, (bool *)p) < 0)
                                return cta_error_set(err, CTA_E_CONFIG, 0,
                                                     "%s: '%s' is not yes/no", key, value);
                        return 0;
                case K_U64: {
                        uint64_t v;
                        if (cta_parse_u64(value, UINT64_MAX, &v) < 0 || v < k->min ||
                            v > k->max)
                                return cta_error_set(err, CTA_E_CONFIG, 0,
                                                     "%s: '%s' is not a number in %llu..%llu",
                                                     key, value, (unsigned long long)k->min,
                                                     (unsigned long long)k->max);
                        *(uint64_t *)p = v;
                        return 0;
                }
                case K_COMPRESS: {
                        uint64_t v;
                        if (streq(value, "auto")) {
                                *(int *)p = CTA_COMPRESS_AUTO;
                                return 0;
                        }
                        if (cta_parse_u64(value, UINT64_MAX, &v) < 0 || v > k->max)
                                return cta_error_set(err, CTA_E_CONFIG, 0,
                                                     "%s: '%s' is neither auto nor a zstd "
                                                     "level in 0..%llu",
                                                     key, value, (unsigned long long)k->max);
                        *(int *)p = (int)v;
                        return 0;
                }
                case K_LEVEL: {
                        int l = cta_log_level_parse(value);
                        if (l < 0)
                                return cta_error_set(err, CTA_E_CONFIG, 0,
                                                     "%s: unknown level '%s' (error, warning, "
                                                     "notice, info, debug)",
                                                     key, value);
                        *(int *)p = l;
                        return 0;
                }
                }
        }
        return cta_error_set(err, CTA_E_CONFIG, 0, "unknown key '%s'", key);
}

static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
                s[--n] = '\0';
        return s;
}

int cta_config_load(struct cta_config *c, const char *path, bool must_exist,
                    struct cta_error **err)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char line[4096];
        unsigned lineno = 0;

        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                return cta_error_errno(err, CTA_E_CONFIG, "open config '%s'", path);
        }
        while (fgets(line, sizeof(line), f)) {
                lineno++;
                if (!strchr(line, '\n') && !feof(f))
                        return cta_error_set(err, CTA_E_CONFIG, 0, "%s:%u: line too long", path,
                                             lineno);
                char *s = trim(line);
                if (!*s || *s == '#')
                        continue;
                char *eq = strchr(s, '=');
                if (!eq)
                        return cta_error_set(err, CTA_E_CONFIG, 0,
                                             "%s:%u: expected 'key = value'", path, lineno);
                *eq = '\0';
                char *key = trim(s), *value = trim(eq + 1);
                /* Allow trailing comments after a value. */
                char *hash = strstr(value, " #");
                if (hash)
                        *hash = '\0', value = trim(value);
                if (cta_config_set(c, key, value, err) < 0)
                        return cta_error_wrap(err, "%s:%u", path, lineno);
        }
        return 0;
}

bool cta_addr_is_loopback(const char *hostport)
{
        char host[256];
        uint16_t port;
        struct in_addr a4;
        struct in6_addr a6;

        if (cta_split_hostport(hostport, 0, host, &port) < 0)
                return false;
        if (streq(host, "localhost"))
                return true;
        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, host, &a6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&a6);
        return false;
}

int cta_config_validate(const struct cta_config *c, struct cta_error **err)
{
        char host[256];
        uint16_t port;

        if (cta_split_hostport(c->listen, 4434, host, &port) < 0)
                return cta_error_set(err, CTA_E_CONFIG, 0, "listen: '%s' is not ADDR:PORT",
                                     c->listen);
        if (c->plain_listen) {
                if (cta_split_hostport(c->plain_listen, 4433, host, &port) < 0)
                        return cta_error_set(err, CTA_E_CONFIG, 0,
                                             "plain_listen: '%s' is not ADDR:PORT",
                                             c->plain_listen);
                if (!c->plain_open && !cta_addr_is_loopback(c->plain_listen))
                        return cta_error_set(err, CTA_E_CONFIG, 0,
                                             "plain_listen: '%s' is not a loopback address; "
                                             "unencrypted XML with passwords would cross the "
                                             "network. Set plain_open = yes to allow it",
                                             c->plain_listen);
        }
        if (c->state_dir[0] != '/')
                return cta_error_set(err, CTA_E_CONFIG, 0, "state_dir: '%s' is not absolute",
                                     c->state_dir);
        if ((c->tls_cert == NULL) != (c->tls_key == NULL))
                return cta_error_set(err, CTA_E_CONFIG, 0,
                                     "tls_cert and tls_key must be set together");
        if (c->ct_backend && !streq(c->ct_backend, "lxc") && !streq(c->ct_backend, "fake"))
                return cta_error_set(err, CTA_E_CONFIG, 0,
                                     "ct_backend: '%s' is not lxc or fake", c->ct_backend);
        if (c->frame_max < c->frame_max_prelogin)
                return cta_error_set(err, CTA_E_CONFIG, 0,
                                     "frame_max must be at least frame_max_prelogin");
        return 0;
}
