/*
 * Typed view of request packets (and of reply packets, for the CLI and for
 * agent-to-agent calls). Everything here works on local names in any order
 * and ignores namespaces, xsi:type and unknown extra children.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto_limits.h"
#include "proto/xml.h"
#include "util/cleanup.h"

struct cta_error;

#define CTA_REALM_SYSTEM "00000000-0000-0000-0000-000000000000"
#define CTA_REALM_ONETIME "00000000-0000-0000-0000-000000000002"

struct cta_req {
        struct cta_xnode *root;                       /* owned */
        const char *id, *cookie, *version, *session;  /* borrowed from root or NULL */
        const char *target;                           /* first header <target>, NULL → "system" */
        const char *dst_host;                         /* header dst/host */
        bool progress, log;                           /* progress="on", log="on" */
        long priority;                                /* 0 if absent or not a number */
        long type;                                    /* 0 if absent or not a number */
        const struct cta_xnode *op_node;              /* data/<operator> element, or NULL */
        const char *op;                               /* its local name, or NULL */
        const struct cta_xnode *call_node;            /* first element child of op_node, or NULL */
        const char *call;                             /* its local name, or NULL */
};

/* Fails only if the frame is not well-formed XML within the limits
 * (-CTA_E_PROTO / -CTA_E_TOO_LARGE), the root is not <packet> (-CTA_E_PROTO),
 * or the id attribute is not at most 128 chars of [A-Za-z0-9._:-]
 * (-CTA_E_BAD_PARAM). A packet without data/operator/call still parses. */
int cta_req_parse(const char *frame, size_t len, struct cta_req **ret, struct cta_error **err);
struct cta_req *cta_req_free(struct cta_req *r);
CTA_DEFINE_CLEANUP(struct cta_req, cta_req_free)

/* Operator the request is addressed to: the first header <target>, or
 * "system" when there is none (as the vendor agent routes it). */
const char *cta_req_operator(const struct cta_req *r);

/* True for [A-Za-z0-9._:-]{1,128} (packet ids, cancel message_id). */
bool cta_packet_id_valid(const char *id);

/* ---- typed calls. All bounded; base64 decoded into the fixed arrays;
 * errors CTA_E_BAD_PARAM / CTA_E_BAD_BASE64 with a message naming the
 * field. *out is zeroed first and is only meaningful on success. ---- */

struct cta_auth_name {
        char name[CTA_NAME_MAX + 1];   /* decoded; "" if absent */
        char domain[CTA_NAME_MAX + 1]; /* decoded; "" if absent */
        char realm[37];                /* lower-case uuid; CTA_REALM_SYSTEM if absent */
        bool has_name;
};

/* system/login and sessionm/login (the extra expiration is ignored). */
struct cta_login {
        struct cta_auth_name who;
        char password[CTA_PASSWORD_MAX + 1];
        bool has_password;
};
int cta_req_parse_login(const struct cta_xnode *call, struct cta_login *out,
                        struct cta_error **err);

/* system/cancel: message_id required (packet id syntax); target optional
 * ([A-Za-z0-9_]{1,63}); global: the <global/> flag. */
struct cta_cancel {
        char message_id[CTA_PACKET_ID_MAX + 1];
        char target[CTA_CANCEL_TARGET_MAX + 1];
        bool global;
};
int cta_req_parse_cancel(const struct cta_xnode *call, struct cta_cancel *out,
                         struct cta_error **err);

/* system/subscribe and system/unsubscribe: 1..16 <name>, each
 * [A-Za-z0-9_.-]{1,63}. */
struct cta_subscribe {
        size_t n;
        char names[CTA_SUBSCRIBE_MAX][CTA_SUBSCRIBE_NAME_MAX + 1];
};
int cta_req_parse_subscribe(const struct cta_xnode *call, struct cta_subscribe *out,
                            struct cta_error **err);

/* connection_infoType (migrate_v2v/dst, system/connect/conn_info ...).
 * protocol: SSL/TLS (default) or TCP/plain, case-insensitive; port default
 * 4434 for SSL and 4433 for plain; address required, host name or IP
 * ([A-Za-z0-9.:_%-], IPv6 may be bracketed). */
enum cta_dst_proto { CTA_DST_SSL, CTA_DST_PLAIN };
#define CTA_PORT_SSL 4434
#define CTA_PORT_PLAIN 4433
struct cta_conn_info {
        enum cta_dst_proto protocol;
        char address[CTA_ADDRESS_MAX + 1];
        uint16_t port;
        struct cta_auth_name login;
        bool has_login;
        char password[CTA_PASSWORD_MAX + 1];
        bool has_password;
};
int cta_req_parse_conn_info(const struct cta_xnode *dst, struct cta_conn_info *out,
                            struct cta_error **err);

/* relocator/migrate_v2v (also under vzarelocator). */
struct cta_migrate_req {
        size_t n_eids;
        char eids[CTA_MIGRATE_MAX_EIDS][37]; /* <eid>… and/or <eid_list><eid>…; lower case, unique */
        bool force, nostart, remove;         /* flags; remove: <remove/>, true/1 or false/0 */
        long type;                           /* options/type, default 0 */
        bool has_new_veid;                   /* options/config/veid */
        uint64_t new_veid;
        char new_private[CTA_PATH_MAX + 1];  /* options/config/ve_private, "" if absent */
        char new_name[CTA_NAME_MAX + 1];     /* options/config/name, "" if absent */
        /* options/compress (ours, not the vendor's): -1 absent (the node's default), 0 off,
         * else the zstd level; true/yes/on or an empty element: CTA_COMPRESS_LEVEL_ON;
         * "auto": CTA_COMPRESS_AUTO (the source measures the link and decides) */
        int compress;
        struct cta_conn_info dst;
};
#define CTA_COMPRESS_LEVEL_ON 3
#define CTA_COMPRESS_AUTO (-2)
#define CTA_COMPRESS_LEVEL_MAX 19
int cta_req_parse_migrate_v2v(const struct cta_xnode *call, struct cta_migrate_req *out,
                              struct cta_error **err);

/* relocator/settle (ours, not the vendor's): the operator settles a migration in doubt
 * whose destination does not answer. <eid>, and <outcome> "moved" (the destination has
 * it) or "stays" (it never committed there). */
struct cta_mig_settle_req {
        char eid[37]; /* lower case */
        bool moved;
};
int cta_req_parse_mig_settle(const struct cta_xnode *call, struct cta_mig_settle_req *out,
                             struct cta_error **err);

/* ---- replies (tolerant: no namespaces required, any order) ---- */

struct cta_resp {
        struct cta_xnode *root;           /* owned */
        const char *id, *origin, *version;
        const char *target;               /* first <target> */
        long type, priority;              /* 0 if absent */
        /* The first operator element in data (the one holding ok/error/results),
         * or NULL; for progress and event packets the element holding them. */
        const struct cta_xnode *op_node;
        const char *op;                   /* op_node's local name */
        bool ok;                          /* an <ok/> is present */
        bool has_error;
        int error_code;                   /* first <error>; 0 if unparsable */
        const char *error_message;        /* first <error>'s message, "" if none */
        /* progress packets: a <progress> element in data (bare or wrapped) */
        bool is_progress;
        const struct cta_xnode *progress_node;
        int percent;                      /* -1 if absent */
        int status;                       /* 1..4, 0 if absent */
        const char *progress_op;          /* progress/op or NULL */
        const char *progress_id;          /* progress/id or NULL */
        char *message;                    /* decoded, %param% substituted; NULL if none */
        /* event packets: an <event> element in data (bare or wrapped) */
        bool is_event;
        const struct cta_xnode *event_node;
};

/* Fails only if the frame is not well-formed within the limits or the root
 * is not <packet>. */
int cta_resp_parse(const char *frame, size_t len, struct cta_resp **ret, struct cta_error **err);
struct cta_resp *cta_resp_free(struct cta_resp *r);
CTA_DEFINE_CLEANUP(struct cta_resp, cta_resp_free)

/* Decode an infoType element (message + parameter* + name): the base64
 * template with every %name% replaced by its parameter's decoded text,
 * recursively. Bounded (CTA_RESP_MESSAGE_MAX); returns a malloc'd string or
 * NULL if info is NULL or its message is not valid base64. */
char *cta_info_render(const struct cta_xnode *info);
