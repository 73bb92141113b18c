/*
 * Reply packet builders. Every builder output is checked against the vendor
 * XSDs by the `xsd` test (scripts/validate-xsd.sh over proto-samples).
 *
 * Namespace notes (from the XSDs, elementFormDefault="qualified" everywhere):
 * - packet, its header children, data, ok and error (with code/message) are
 *   in the protocol namespace. The root is written unprefixed with the
 *   protocol namespace as default (so it closes with a plain "</packet>"
 *   line, which line-based clients wait for) and also bound to ns1, which
 *   every other protocol element uses.
 * - Header order follows packet_headerType: cookie, target*, origin, src,
 *   dst, session (the vendor's own samples put origin first and do not
 *   validate).
 * - Global result elements (system/version, system/token, envm/eid …) are in
 *   the namespace of the schema that declares them: ns2 for the base
 *   interface, ns5 for a vza extension's own elements.
 * - Local elements of a named type are in the namespace of the schema that
 *   declares the type: realmType, tokenType, auth_nameType, infoType,
 *   eventType and eid_listType children are in vzl types (ns4).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proto/packet.h"
#include "proto/writer.h"
#include "util/base64.h"
#include "util/errcodes.h"
#include "util/util.h"

#define NS_VZL "http://www.swsoft.com/webservices/vzl/4.0.0/"
#define NS_VZA "http://www.swsoft.com/webservices/vza/4.0.0/"
#define NS_PROGRESS NS_VZL "progress_event"
#define NS_OP_LOG NS_VZL "op_log"
#define NS_EVENT_LOG NS_VZL "event_log"

static bool vendor_forms;

void cta_reply_set_vendor_forms(bool on)
{
        vendor_forms = on;
}

bool cta_reply_vendor_forms(void)
{
        return vendor_forms;
}

/* vza operators that extend a vzl base interface, and the result elements
 * the extension declares in its own namespace (all others are the base's). */
static const char *const vzaenvm_own[] = { "veid", "ugid_quota", "config", "validation",
                                           "script", NULL };
static const char *const vzanetworkm_own[] = { "net_config", NULL };
static const char *const vzaproc_info_own[] = { "ps_info", NULL };
static const char *const no_own[] = { NULL };

static const struct vza_base {
        const char *op, *base;
        const char *const *own;
} vza_bases[] = {
        { "vzaenvm", "envm", vzaenvm_own },
        { "vzarelocator", "relocator", no_own },
        { "vzadevm", "devm", no_own },
        { "vzanetworkm", "networkm", vzanetworkm_own },
        { "vzapackagem", "packagem", no_own },
        { "vzaproc_info", "proc_info", vzaproc_info_own },
};

static const struct vza_base *vza_base_of(const char *op)
{
        for (size_t i = 0; i < CTA_ARRAY_SIZE(vza_bases); i++)
                if (streq(vza_bases[i].op, op))
                        return &vza_bases[i];
        return NULL;
}

/* Operators whose element the XSDs leave out of the operator substitution
 * group (so <data> cannot hold it): the reply uses an element that may stand
 * there with xsi:type naming the operator's type, unless vendor forms are on. */
static const struct nonsub {
        const char *op, *elem, *type;
} nonsubs[] = {
        { "vzarelocator", "ns2:relocator", "ns5:vzarelocatorType" },
        { "op_log", "ns1:operator", "ns2:op_logType" },
        { "event_log", "ns1:operator", "ns2:event_logType" },
};

static const struct nonsub *nonsub_of(const char *op)
{
        for (size_t i = 0; i < CTA_ARRAY_SIZE(nonsubs); i++)
                if (streq(nonsubs[i].op, op))
                        return &nonsubs[i];
        return NULL;
}

/* Operator names become element names and namespace URIs: [a-z][a-z0-9_]{0,31}. */
static bool op_name_valid(const char *op)
{
        size_t n = 0;
        if (!op || !(*op >= 'a' && *op <= 'z'))
                return false;
        for (const char *p = op; *p; p++, n++)
                if (n >= 32 || !((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
                        return false;
        return true;
}

static void op_uri(char out[128], const char *op)
{
        snprintf(out, 128, "%s%s", strncmp(op, "vza", 3) == 0 ? NS_VZA : NS_VZL, op);
}

enum reply_kind { KIND_REPLY, KIND_PROGRESS, KIND_EVENT };

static int reply_begin_kind(struct cta_xw *w, const struct cta_reply_hdr *h, enum reply_kind kind,
                            const char *const *targets, size_t ntargets)
{
        const char *op = h->origin ? h->origin : "system";
        char ns2[128], ns5[128] = "";
        char qn[CTA_XW_NAME_MAX + 1];

        if (!op_name_valid(op)) {
                if (!w->err)
                        w->err = -CTA_E_INVALID;
                return w->err;
        }
        snprintf(w->op, sizeof(w->op), "%s", op);
        w->op_has_base = false;
        switch (kind) {
        case KIND_REPLY: {
                const struct vza_base *vb = vza_base_of(op);
                if (vb) {
                        op_uri(ns2, vb->base);
                        op_uri(ns5, op);
                        w->op_has_base = true;
                } else {
                        op_uri(ns2, op);
                }
                break;
        }
        case KIND_PROGRESS:
                snprintf(ns2, sizeof(ns2), "%s", NS_PROGRESS);
                snprintf(ns5, sizeof(ns5), "%s", NS_OP_LOG);
                break;
        case KIND_EVENT:
                snprintf(ns2, sizeof(ns2), "%s", NS_EVENT_LOG);
                break;
        }

        char now[32], num[32];
        cta_time_fmt(time(NULL), now);
        if (!w->err) {
                int r = cta_buf_puts(w->b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
                if (r < 0)
                        w->err = r;
        }
        cta_xw_open(w, "packet");
        cta_xw_attr(w, "xmlns", CTA_NS_PROTOCOL);
        cta_xw_attr(w, "xmlns:ns1", CTA_NS_PROTOCOL);
        cta_xw_attr(w, "xmlns:ns2", ns2);
        cta_xw_attr(w, "xmlns:ns3", CTA_NS_VZATYPES);
        cta_xw_attr(w, "xmlns:ns4", CTA_NS_TYPES);
        if (ns5[0])
                cta_xw_attr(w, "xmlns:ns5", ns5);
        cta_xw_attr(w, "xmlns:xsi", CTA_NS_XSI);
        if (h->id)
                cta_xw_attr(w, "id", h->id);
        cta_xw_attr(w, "time", now);
        if (h->type) {
                snprintf(num, sizeof(num), "%ld", h->type);
                cta_xw_attr(w, "type", num);
        }
        snprintf(num, sizeof(num), "%ld", h->priority);
        cta_xw_attr(w, "priority", num);
        cta_xw_attr(w, "version", CTA_PROTOCOL_VERSION);

        if (h->cookie)
                cta_xw_text(w, "ns1:cookie", h->cookie);
        if (h->client)
                cta_xw_text(w, "ns1:target", h->client);
        for (size_t i = 0; i < ntargets; i++)
                cta_xw_text(w, "ns1:target", targets[i]);
        cta_xw_text(w, "ns1:origin", op);
        cta_xw_open(w, "ns1:dst");
        cta_xw_text(w, "ns1:director", "gend");
        cta_xw_close(w);
        cta_xw_open(w, "ns1:data");
        if (kind == KIND_REPLY) {
                const struct nonsub *ns = vendor_forms ? NULL : nonsub_of(op);
                if (ns) {
                        cta_xw_open(w, ns->elem);
                        cta_xw_attr(w, "xsi:type", ns->type);
                } else {
                        cta_xw_open(w, cta_xw_qname(qn, w->op_has_base ? CTA_PFX_OP : CTA_PFX_BASE, op));
                }
                w->reply_depth = w->depth;
        }
        return w->err;
}

int cta_reply_begin(struct cta_xw *w, const struct cta_reply_hdr *h)
{
        return reply_begin_kind(w, h, KIND_REPLY, NULL, 0);
}

int cta_reply_end(struct cta_xw *w)
{
        while (w->depth > 0 && !w->err)
                cta_xw_close(w);
        if (!w->err) {
                /* The document ends with "</packet>\n"; the NUL ends the frame. */
                int r = cta_buf_append(w->b, "", 1);
                if (r < 0)
                        w->err = r;
        }
        return w->err;
}

const char *cta_reply_op_prefix(struct cta_xw *w)
{
        return w->op_has_base ? CTA_PFX_OP : CTA_PFX_BASE;
}

const char *cta_reply_elem_prefix(struct cta_xw *w, const char *elem)
{
        if (!w->op_has_base)
                return CTA_PFX_BASE;
        const struct vza_base *vb = vza_base_of(w->op);
        if (vb)
                for (const char *const *o = vb->own; *o; o++)
                        if (streq(*o, elem))
                                return CTA_PFX_OP;
        return CTA_PFX_BASE;
}

/* ---- frames ---- */

static void buf_truncate(struct cta_buf *b, size_t len)
{
        if (b->data && len <= b->len) {
                b->len = len;
                b->data[len] = '\0';
        }
}

static int frame_end(struct cta_xw *w, size_t mark)
{
        int r = cta_reply_end(w);
        if (r < 0)
                buf_truncate(w->b, mark);
        return r;
}

int cta_reply_ok_frame(struct cta_buf *out, const struct cta_reply_hdr *h)
{
        struct cta_xw w;
        size_t mark = out->len;
        cta_xw_init(&w, out);
        (void)cta_reply_begin(&w, h);
        cta_xw_empty(&w, "ns1:ok");
        return frame_end(&w, mark);
}

int cta_reply_error_frame(struct cta_buf *out, const struct cta_reply_hdr *h, int code,
                          const char *message)
{
        struct cta_xw w;
        size_t mark = out->len;
        cta_xw_init(&w, out);
        (void)cta_reply_begin(&w, h);
        cta_xw_open(&w, "ns1:error");
        cta_xw_int(&w, "ns1:code", code);
        cta_xw_text(&w, "ns1:message", message ? message : "");
        cta_xw_close(&w);
        return frame_end(&w, mark);
}

int cta_reply_greeting_frame(struct cta_buf *out, const char *client, const char *agent_version)
{
        struct cta_reply_hdr h = { .origin = "system", .client = client };
        struct cta_xw w;
        size_t mark = out->len;
        cta_xw_init(&w, out);
        (void)cta_reply_begin(&w, &h);
        cta_xw_empty(&w, "ns1:ok");
        if (agent_version)
                cta_xw_text(&w, "ns2:version", agent_version);
        return frame_end(&w, mark);
}

static void write_realm(struct cta_xw *w, const char *id, int type, const char *name)
{
        cta_xw_open(w, "ns2:realm");
        cta_xw_text(w, "ns4:id", id);
        cta_xw_int(w, "ns4:type", type);
        cta_xw_text(w, "ns4:name", name);
        cta_xw_empty(w, "ns4:builtin");
        cta_xw_close(w);
}

int cta_reply_realms_frame(struct cta_buf *out, const struct cta_reply_hdr *h)
{
        struct cta_reply_hdr hs = *h;
        struct cta_xw w;
        size_t mark = out->len;
        hs.origin = "system";
        cta_xw_init(&w, out);
        (void)cta_reply_begin(&w, &hs);
        cta_xw_open(&w, "ns2:realms");
        write_realm(&w, CTA_REALM_SYSTEM, CTA_REALM_TYPE_SYSTEM, "System");
        write_realm(&w, CTA_REALM_ONETIME, CTA_REALM_TYPE_ONETIME, "One-time passwords");
        cta_xw_close(&w);
        return frame_end(&w, mark);
}

/* Binary SID S-1-22-<kind>-<id>: revision 1, two sub-authorities, identifier
 * authority 22 (Unix users and groups), little-endian sub-authorities. */
static void write_sid(struct cta_xw *w, const char *qname, uint32_t kind, uint32_t id)
{
        uint8_t sid[16] = { 1, 2, 0, 0, 0, 0, 0, 22 };
        for (int i = 0; i < 4; i++) {
                sid[8 + i] = (uint8_t)(kind >> (8 * i));
                sid[12 + i] = (uint8_t)(id >> (8 * i));
        }
        cta_xw_b64(w, qname, sid, sizeof(sid));
}

int cta_reply_token_frame(struct cta_buf *out, const struct cta_reply_hdr *h, const char *user,
                          uid_t uid, const gid_t *gids, size_t ngids)
{
        struct cta_reply_hdr hs = *h;
        struct cta_xw w;
        size_t mark = out->len;
        hs.origin = h->origin ? h->origin : "system";
        cta_xw_init(&w, out);
        (void)cta_reply_begin(&w, &hs);
        cta_xw_open(&w, "ns2:token"); /* system or sessionm: both declare a global token */
        write_sid(&w, "ns4:user", 1, (uint32_t)uid);
        if (ngids > 0) {
                cta_xw_open(&w, "ns4:groups");
                for (size_t i = 0; i < ngids; i++)
                        write_sid(&w, "ns4:sid", 2, (uint32_t)gids[i]);
                cta_xw_close(&w);
        }
        if (user) {
                cta_xw_open(&w, "ns4:name");
                cta_xw_b64(&w, "ns4:name", user, strlen(user));
                cta_xw_text(&w, "ns4:realm", CTA_REALM_SYSTEM);
                cta_xw_close(&w);
        }
        cta_xw_close(&w);
        return frame_end(&w, mark);
}

int cta_reply_pass_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                         const char *uuid_name)
{
        struct cta_reply_hdr hs = *h;
        struct cta_xw w;
        size_t mark = out->len;
        hs.origin = h->origin ? h->origin : "system";
        if (!uuid_name)
                return -CTA_E_INVALID;
        cta_xw_init(&w, out);
        (void)cta_reply_begin(&w, &hs);
        cta_xw_open(&w, "ns2:pass");
        cta_xw_b64(&w, "ns4:name", uuid_name, strlen(uuid_name));
        cta_xw_b64(&w, "ns4:domain", "master", 6);
        cta_xw_text(&w, "ns4:realm", CTA_REALM_ONETIME);
        cta_xw_close(&w);
        return frame_end(&w, mark);
}

int cta_reply_text_frame(struct cta_buf *out, const struct cta_reply_hdr *h, const char *elem,
                         const char *text)
{
        char qn[CTA_XW_NAME_MAX + 1];
        struct cta_xw w;
        size_t mark = out->len;
        if (!elem)
                return -CTA_E_INVALID;
        cta_xw_init(&w, out);
        (void)cta_reply_begin(&w, h);
        cta_xw_text(&w, cta_xw_qname(qn, cta_reply_elem_prefix(&w, elem), elem), text);
        return frame_end(&w, mark);
}

/* infoType: message (base64 template), parameter* (each an infoType with
 * its name), name ("" at the top level). translate is never sent. */
static void write_info(struct cta_xw *w, const char *qname, const char *templ,
                       const struct cta_info_param *params, size_t nparams)
{
        cta_xw_open(w, qname);
        cta_xw_b64(w, "ns4:message", templ, strlen(templ));
        for (size_t i = 0; i < nparams; i++) {
                const char *v = params[i].value ? params[i].value : "";
                cta_xw_open(w, "ns4:parameter");
                cta_xw_b64(w, "ns4:message", v, strlen(v));
                cta_xw_text(w, "ns4:name", params[i].name ? params[i].name : "");
                cta_xw_close(w);
        }
        cta_xw_text(w, "ns4:name", "");
        cta_xw_close(w);
}

int cta_progress_frame(struct cta_buf *out, const struct cta_reply_hdr *h,
                       const struct cta_progress *p)
{
        struct cta_reply_hdr hp = *h;
        struct cta_xw w;
        size_t mark = out->len;
        hp.type = 1;        /* UNFINISHED */
        hp.priority = 4000;
        cta_xw_init(&w, out);
        (void)reply_begin_kind(&w, &hp, KIND_PROGRESS, NULL, 0);
        if (vendor_forms) {
                cta_xw_open(&w, "ns2:progress");
        } else {
                cta_xw_open(&w, "ns1:operator");
                cta_xw_attr(&w, "xsi:type", "ns5:op_logType");
                cta_xw_open(&w, "ns5:progress");
        }
        if (p->template_text)
                write_info(&w, "ns2:message", p->template_text, p->params, p->nparams);
        if (p->percent >= 0)
                cta_xw_int(&w, "ns2:percent", p->percent);
        if (p->neids > 0) {
                cta_xw_open(&w, "ns2:eid_list");
                for (size_t i = 0; i < p->neids; i++)
                        cta_xw_text(&w, "ns4:eid", p->eids[i]);
                cta_xw_close(&w);
        }
        if (p->op)
                cta_xw_text(&w, "ns2:op", p->op);
        if (p->status > 0)
                cta_xw_int(&w, "ns2:status", p->status);
        if (p->req_id)
                cta_xw_text(&w, "ns2:id", p->req_id);
        return frame_end(&w, mark);
}

static void write_status(struct cta_xw *w, const char *qname, struct cta_env_status st)
{
        cta_xw_open(w, qname);
        cta_xw_int(w, "ns4:state", st.state);
        cta_xw_int(w, "ns4:transition", st.transition);
        cta_xw_close(w);
}

int cta_event_env_status_frame(struct cta_buf *out, const char *eid, const char *parent_eid,
                               struct cta_env_status new_st, struct cta_env_status old_st,
                               long count, const char *event_id, const char *source)
{
        static const char *const targets[] = { "events_subscription", "env_status_subscription" };
        struct cta_reply_hdr h = { .origin = source ? source : "vzaenvm" };
        struct cta_xw w;
        size_t mark = out->len;
        char now[32], ns[4][16];
        if (!eid || !event_id)
                return -CTA_E_INVALID;
        snprintf(ns[0], sizeof(ns[0]), "%d", new_st.state);
        snprintf(ns[1], sizeof(ns[1]), "%d", new_st.transition);
        snprintf(ns[2], sizeof(ns[2]), "%d", old_st.state);
        snprintf(ns[3], sizeof(ns[3]), "%d", old_st.transition);
        const struct cta_info_param params[] = {
                { "eid", eid },
                { "parent_eid", parent_eid ? parent_eid : "" },
                { "new_state", ns[0] },
                { "new_transition", ns[1] },
                { "old_state", ns[2] },
                { "old_transition", ns[3] },
        };

        cta_time_fmt(time(NULL), now);
        cta_xw_init(&w, out);
        (void)reply_begin_kind(&w, &h, KIND_EVENT, targets, CTA_ARRAY_SIZE(targets));
        if (vendor_forms) {
                cta_xw_open(&w, "ns2:event");
        } else {
                cta_xw_open(&w, "ns1:operator");
                cta_xw_attr(&w, "xsi:type", "ns2:event_logType");
                cta_xw_open(&w, "ns2:event");
        }
        cta_xw_text(&w, "ns4:eid", eid);
        cta_xw_text(&w, "ns4:time", now);
        cta_xw_text(&w, "ns4:source", h.origin);
        cta_xw_text(&w, "ns4:category", "env_status");
        cta_xw_int(&w, "ns4:count", count);
        cta_xw_text(&w, "ns4:id", event_id);
        write_info(&w, "ns4:info",
                   "Status of environment %eid% changed from %old_state% to %new_state%", params,
                   CTA_ARRAY_SIZE(params));
        if (vendor_forms) {
                cta_xw_open(&w, "ns4:data");
                cta_xw_open(&w, "ns4:env_status_event");
                cta_xw_text(&w, "ns4:eid", eid);
                cta_xw_text(&w, "ns4:parent_eid", parent_eid ? parent_eid : "");
                write_status(&w, "ns4:new", new_st);
                write_status(&w, "ns4:old", old_st);
                cta_xw_close(&w);
                cta_xw_close(&w);
        }
        return frame_end(&w, mark);
}
