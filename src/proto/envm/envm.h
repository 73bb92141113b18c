/*
 * vzaenvm packets: typed requests (env_configType / venv_configType) and
 * replies (envType). XML stays in src/proto; the daemon sees these structs.
 * Names and shapes: ../shared/xsd/v4/VZAEnvm.xsd, VZLEnvm.xsd,
 * VZACommonTypes.xsd, VZLCommonTypes.xsd.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/writer.h"
#include "proto/xml.h"

struct cta_buf;
struct cta_error;

#define CTA_ENV_MAX_IPS 8
#define CTA_ENV_TEXT_MAX 255
#define CTA_ENV_DESC_MAX 4096
#define CTA_ENV_PATH_MAX 4096

/* A container's config as sent by a client (create, set, migrate options/config).
 * has_* tells which fields the packet carried (set changes only those). */
struct cta_env_config {
        bool has_name, has_hostname, has_description, has_veid, has_ve_private, has_on_boot,
                has_os_template, has_ips, has_mem, has_cpu;
        char name[CTA_ENV_TEXT_MAX + 1];
        char hostname[CTA_ENV_TEXT_MAX + 1];
        char description[CTA_ENV_DESC_MAX + 1]; /* decoded from base64 */
        uint64_t veid;
        char ve_private[CTA_ENV_PATH_MAX + 1];
        bool on_boot;
        char os_template[CTA_ENV_TEXT_MAX + 1];
        /* IPv4 "a.b.c.d/prefix" from address{ip, netmask?} and net_device/ip_address. */
        size_t n_ips;
        char ips[CTA_ENV_MAX_IPS][19];
        uint64_t mem_bytes;   /* qos slmmemorylimit (bytes) or physpages (4 KiB pages); 0 = none */
        unsigned cpu_percent; /* qos id cpulimit (percent of one CPU); 0 = none */
};

/* Parse a <config> element (any order, no namespaces, xsi:type ignored;
 * unknown children ignored). *out is zeroed first and again on error.
 * Checks, each failure CTA_E_BAD_PARAM (description: CTA_E_BAD_BASE64)
 * with a message naming the field ("create/config/veid ..."):
 * - name: <= 255 bytes, no control characters. hostname: RFC 1123 labels
 *   (1-63 of [A-Za-z0-9-], no leading/trailing '-'), <= 253 bytes.
 * - description: base64 (whitespace skipped), <= 4096 bytes, no NUL.
 * - veid: decimal 1-2147483647.
 * - ve_private: absolute, no ".." component, not "/" itself, <= 4096 bytes.
 *   ve_root is not read (the agent derives it).
 * - on_boot: true/false/1/0 (empty is an error).
 * - os_template/name: [A-Za-z0-9._+-], starting with a letter or digit.
 * - address{ip, netmask?} and net_device/ip_address{ip, netmask?}: IPv4
 *   unicast only (no 0.0.0.0, 127/8, multicast or 240/4); netmask dotted
 *   and contiguous or a prefix number; ip may also be "a.b.c.d/prefix";
 *   **no netmask means /24**. Stored as "a.b.c.d/prefix", the same address
 *   given twice is kept once, more than CTA_ENV_MAX_IPS is an error.
 *   has_ips is set by any address/ip_address element, so an empty
 *   <address/> in set means "no addresses".
 * - qos{id, hard}: slmmemorylimit (bytes), physpages (4 KiB pages),
 *   cpulimit (percent, <= 102400); hard -1 or 9223372036854775807 (LONG_MAX)
 *   means unlimited → 0. Both memory ids: the stricter limit wins. An id
 *   twice is an error; other ids are ignored. */
int cta_env_config_parse(const struct cta_xnode *config, struct cta_env_config *out,
                         struct cta_error **err);

/* Calls. The call node is struct cta_req.call_node. */
struct cta_envm_eid_req {
        char eid[37];
        bool force; /* stop */
};
int cta_envm_parse_eid_req(const struct cta_xnode *call, struct cta_envm_eid_req *out,
                           struct cta_error **err); /* start, stop, restart, destroy, get_info (first eid) */
struct cta_envm_create_req {
        bool force;
        bool has_eid; char eid[37]; /* config/… may carry no eid; an <eid> child of create is accepted */
        struct cta_env_config cfg;
};
int cta_envm_parse_create(const struct cta_xnode *call, struct cta_envm_create_req *out,
                          struct cta_error **err);
#define CTA_ENVM_MAX_EIDS 1024
#define CTA_ENVM_MAX_STATUS 16
struct cta_envm_list_req {
        size_t n_status; int status[CTA_ENVM_MAX_STATUS]; /* get_list status filter (state numbers) */
        bool has_count; uint64_t count;
};
int cta_envm_parse_get_list(const struct cta_xnode *call, struct cta_envm_list_req *out,
                            struct cta_error **err);
struct cta_envm_info_req {
        size_t n_eids; char (*eids)[37]; /* malloc'd, at most CTA_ENVM_MAX_EIDS; 0 = all */
        bool config;
};
int cta_envm_parse_get_info(const struct cta_xnode *call, struct cta_envm_info_req *out,
                            struct cta_error **err);
void cta_envm_info_req_done(struct cta_envm_info_req *r);
struct cta_envm_set_req {
        char eid[37];
        bool force;
        struct cta_env_config cfg;
};
int cta_envm_parse_set(const struct cta_xnode *call, struct cta_envm_set_req *out,
                       struct cta_error **err);

/* One container as the replies show it. */
struct cta_env_view {
        const char *eid, *parent_eid;
        int state, transition;
        /* config (written when with_config): */
        const char *name, *hostname, *description; /* description raw text, sent base64 */
        uint64_t veid;
        const char *ve_root, *ve_private, *os_template;
        bool on_boot;
        size_t n_ips;
        const char *const *ips; /* "a.b.c.d/prefix" */
        uint64_t mem_bytes;
        unsigned cpu_percent;
};
/* get_list → <eid>… ; get_info → <env>… ; create → <env> ; set → <env_config>.
 * Frames are appended to out (trailing NUL included); out is unchanged on
 * error (-CTA_E_INVALID bad header, -CTA_E_TOO_LARGE buffer max).
 * Namespaces: eid/env/env_config ns2 (vzl envm), envType and config children
 * ns4 (vzl types), container fields ns3 (vzatypes); virtual_config and
 * env_config carry xsi:type="ns3:venv_configType". Config written: name,
 * description, hostname, address{ip, netmask} per ip, qos slmmemorylimit +
 * physpages (if mem_bytes) and cpulimit (if cpu_percent), veid (if != 0),
 * ve_root, ve_private, on_boot (always), os_template{name}; NULL strings
 * are left out. */
int cta_envm_eids_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                        const char *const *eids, size_t n);
int cta_envm_envs_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                        const struct cta_env_view *envs, size_t n, bool with_config);
int cta_envm_env_config_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                              const struct cta_env_view *env);
