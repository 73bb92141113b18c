/*
 * Reply side: an escaping XML writer into a struct cta_buf, and builders for
 * every reply packet the agent sends. Untrusted text only ever reaches the
 * output through the escaping functions: invalid UTF-8 and characters XML
 * cannot carry become '?', and \t \n \r are written as character references
 * so every element stays on one line (simple clients read replies line by
 * line).
 *
 * Reply layout (validates against the vendor XSDs, see docs in writer.c):
 *   <?xml version="1.0" encoding="UTF-8"?><packet xmlns="…/protocol" xmlns:ns1="…/protocol"
 *     xmlns:ns2="…" xmlns:ns3="…/vzatypes" xmlns:ns4="…/types" [xmlns:ns5="…"]
 *     xmlns:xsi="…" [id=".."] time=".." [type=".."] priority=".." version="4.0.0">
 *   <ns1:cookie>…</ns1:cookie>          (if the request had one)
 *   <ns1:target>vzclientN-…</ns1:target>
 *   <ns1:origin>relocator</ns1:origin>
 *   <ns1:dst>
 *   <ns1:director>gend</ns1:director>
 *   </ns1:dst>
 *   <ns1:data>
 *   <ns2:relocator>                     (operator element)
 *   <ns1:ok/>                           (ok/error are protocol elements)
 *   </ns2:relocator>
 *   </ns1:data>
 *   </packet>
 * followed by "\n" and the frame's NUL.
 *
 * Prefixes are fixed so results can be written without lookups:
 *   ns1 protocol; ns2 the operator's base interface (system, relocator, envm
 *   for vzaenvm, ...); ns3 vza/4.0.0/vzatypes; ns4 vzl/4.0.0/types; ns5 the
 *   operator's own namespace when it differs from its base (vzaenvm, ...).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "proto/proto_limits.h"
#include "util/buf.h"

#define CTA_NS_PROTOCOL "http://www.swsoft.com/webservices/vzl/4.0.0/protocol"
#define CTA_NS_TYPES "http://www.swsoft.com/webservices/vzl/4.0.0/types"
#define CTA_NS_VZATYPES "http://www.swsoft.com/webservices/vza/4.0.0/vzatypes"
#define CTA_NS_XSI "http://www.w3.org/2001/XMLSchema-instance"
#define CTA_PFX_PROTOCOL "ns1"
#define CTA_PFX_BASE "ns2"
#define CTA_PFX_VZATYPES "ns3"
#define CTA_PFX_TYPES "ns4"
#define CTA_PFX_OP "ns5"

#define CTA_PROTOCOL_VERSION "4.0.0"

/* ---- the writer ---- */

struct cta_xw {
        struct cta_buf *b;
        int err;                 /* first error (negative), sticky */
        size_t depth;
        bool tag_open;           /* "<name" written, attributes may follow */
        char stack[CTA_XW_DEPTH_SLOTS][CTA_XW_NAME_MAX + 1];
        /* reply context, set by cta_reply_begin() */
        char op[CTA_XW_NAME_MAX + 1];
        bool op_has_base;        /* operator namespace differs from its base (ns5 used) */
        size_t reply_depth;      /* depth of the operator element */
};

void cta_xw_init(struct cta_xw *w, struct cta_buf *b);
/* Open an element "<qname"; attributes may follow until the next call. */
void cta_xw_open(struct cta_xw *w, const char *qname);
void cta_xw_attr(struct cta_xw *w, const char *qname, const char *value);
/* Close the innermost open element ("<x/>" if it has no content). */
void cta_xw_close(struct cta_xw *w);
void cta_xw_empty(struct cta_xw *w, const char *qname);
/* <qname>escaped text</qname>; text NULL → empty element with no text. */
void cta_xw_text(struct cta_xw *w, const char *qname, const char *text);
void cta_xw_textn(struct cta_xw *w, const char *qname, const char *text, size_t len);
void cta_xw_b64(struct cta_xw *w, const char *qname, const void *data, size_t len);
void cta_xw_int(struct cta_xw *w, const char *qname, long long v);
/* Build "prefix:local" into out[CTA_XW_NAME_MAX + 1] (for computed names). */
const char *cta_xw_qname(char *out, const char *prefix, const char *local);
/* 0, or the first error: -CTA_E_INVALID (bad name, misuse), -CTA_E_TOO_LARGE
 * (buffer max, nesting). Does not require depth 0. */
int cta_xw_error(const struct cta_xw *w);

/* ---- reply packets ---- */

struct cta_reply_hdr {
        const char *id;      /* request id, NULL → no id attribute */
        const char *cookie;  /* echoed unchanged, NULL → none */
        const char *origin;  /* operator name, also the operator element; NULL → "system" */
        const char *client;  /* <target>: "vzclientN-<eid>"; NULL → none */
        long priority;       /* always written */
        long type;           /* 0 = omit the attribute */
};

/* Begin a reply packet up to and including the opening operator element
 * (w must be initialized on the output buffer). Returns 0 or the writer
 * error; on error the caller drops the buffer. */
int cta_reply_begin(struct cta_xw *w, const struct cta_reply_hdr *h);
/* Close operator, data and packet, append "\n" and the frame's NUL. */
int cta_reply_end(struct cta_xw *w);
/* Prefix of the operator's own namespace ("ns2", or "ns5" for vza operators
 * that extend a base interface). */
const char *cta_reply_op_prefix(struct cta_xw *w);
/* Prefix for a result element that is a direct child of the operator
 * element: the namespace the XSD declares it in (e.g. vzaenvm: "eid"/"env"
 * → ns2 (envm), "veid"/"config" → ns5 (vzaenvm); system: everything ns2).
 * Children of results use CTA_PFX_TYPES / CTA_PFX_VZATYPES as the XSD says. */
const char *cta_reply_elem_prefix(struct cta_xw *w, const char *elem);

/* Complete frames, appended to out with the trailing NUL; out is left
 * unchanged on error. */
int cta_reply_ok_frame(struct cta_buf *out, const struct cta_reply_hdr *h);
int cta_reply_error_frame(struct cta_buf *out, const struct cta_reply_hdr *h, int code,
                          const char *message);
/* Sent on connect: origin system, target client, no id, priority 0;
 * data/system holds <ok/> and, if agent_version is set, <version>. */
int cta_reply_greeting_frame(struct cta_buf *out, const char *client, const char *agent_version);
/* system/realms: System (type 0, id …0000, builtin) and One-time passwords
 * (type 2, id …0002, builtin). */
#define CTA_REALM_TYPE_SYSTEM 0
#define CTA_REALM_TYPE_ONETIME 2
int cta_reply_realms_frame(struct cta_buf *out, const struct cta_reply_hdr *h);
/* system/token: user sid and group sids are SIDs S-1-22-1-uid / S-1-22-2-gid
 * (the "Unix user/group" authority) in binary, base64; name = user in the
 * system realm. */
int cta_reply_token_frame(struct cta_buf *out, const struct cta_reply_hdr *h, const char *user,
                          uid_t uid, const gid_t *gids, size_t ngids);
/* system/pass: name = b64(uuid_name), domain = b64("master"), realm …0002. */
int cta_reply_pass_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                         const char *uuid_name);
/* One text result element, e.g. system <version>, <eid>; the namespace is
 * chosen with cta_reply_elem_prefix(). */
int cta_reply_text_frame(struct cta_buf *out, const struct cta_reply_hdr *h, const char *elem,
                         const char *text);

/* Progress packets: type="1" priority="4000" (h->type/priority ignored). */
struct cta_info_param {
        const char *name;
        const char *value; /* sent base64 */
};
struct cta_progress {
        const char *template_text;            /* "%name%" placeholders; NULL → no message */
        const struct cta_info_param *params;
        size_t nparams;
        int percent;                          /* -1 → omitted */
        const char *const *eids;
        size_t neids;
        const char *op;                       /* "relocator.migrate_v2v"; NULL → omitted */
        int status;                           /* 1 started, 2 processing, 3 success, 4 error; 0 → omitted */
        const char *req_id;                   /* progress/id: the request id; NULL → omitted */
};
int cta_progress_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                       const struct cta_progress *p);

/* env_status event for subscribers: no id, targets events_subscription and
 * env_status_subscription, category env_status. */
struct cta_env_status {
        int state, transition;
};
int cta_event_env_status_frame(struct cta_buf *out, const char *eid, const char *parent_eid,
                               struct cta_env_status new_st, struct cta_env_status old_st,
                               long count, const char *event_id, const char *source);

/*
 * The vendor XSD cannot validate a progress or event element directly in
 * <data> (neither is in the operator substitution group), nor the
 * env_status_event payload (event_data is abstract with no members). By
 * default we send forms that validate:
 *   progress: data/ns1:operator[xsi:type=op_log:op_logType]/op_log:progress
 *   event:    data/ns1:operator[xsi:type=event_log:event_logType]/event_log:event,
 *             with the old/new status as info parameters (no event data).
 * Likewise replies from vzarelocator (whose element the XSD leaves out of the
 * substitution group) are data/ns2:relocator[xsi:type=vzarelocatorType].
 * With vendor forms on, progress is data/progress, the event also carries
 * data/env_status_event and vzarelocator replies use <vzarelocator>, as the
 * vendor's agent sends them (not XSD-valid).
 * Process-wide; set once at startup.
 */
void cta_reply_set_vendor_forms(bool on);
bool cta_reply_vendor_forms(void);
