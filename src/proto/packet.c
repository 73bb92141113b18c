/*
 * Request packets → typed structs. Input is untrusted: every field is
 * checked for syntax and size here, so handlers only see bounded,
 * validated values.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/packet.h"
#include "util/base64.h"
#include "util/error.h"
#include "util/util.h"

bool cta_packet_id_valid(const char *id)
{
        size_t n = 0;
        if (!id)
                return false;
        for (const char *p = id; *p; p++, n++) {
                unsigned char c = (unsigned char)*p;
                if (n >= CTA_PACKET_ID_MAX)
                        return false;
                if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-')
                        return false;
        }
        return n > 0;
}

static long parse_long_or_zero(const char *s)
{
        int64_t v;
        if (!s || cta_parse_i64(s, INT32_MIN, INT32_MAX, &v) < 0)
                return 0;
        return (long)v;
}

static bool attr_on(const struct cta_xnode *n, const char *name)
{
        const char *v = cta_xnode_attr(n, name);
        return v && strcasecmp(v, "on") == 0;
}

struct cta_req *cta_req_free(struct cta_req *r)
{
        if (!r)
                return NULL;
        cta_xnode_free(r->root);
        free(r);
        return NULL;
}

/* First element child, whatever its name. */
static const struct cta_xnode *first_elem(const struct cta_xnode *n)
{
        return n ? n->first_child : NULL;
}

int cta_req_parse(const char *frame, size_t len, struct cta_req **ret, struct cta_error **err)
{
        _cleanup_(cta_xnode_freep) struct cta_xnode *root = NULL;
        int r = cta_xml_parse(frame, len, NULL, &root, err);
        if (r < 0)
                return r;
        if (!streq(root->name, "packet"))
                return cta_error_set(err, CTA_E_PROTO, 0, "root element is not <packet>");

        const char *id = cta_xnode_attr(root, "id");
        if (id && *id == '\0')
                id = NULL;
        if (id && !cta_packet_id_valid(id))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "packet id must be 1-%d characters of [A-Za-z0-9._:-]",
                                     CTA_PACKET_ID_MAX);

        struct cta_req *q = cta_xcalloc(1, sizeof(*q));
        q->id = id;
        q->version = cta_xnode_attr(root, "version");
        q->progress = attr_on(root, "progress");
        q->log = attr_on(root, "log");
        q->priority = parse_long_or_zero(cta_xnode_attr(root, "priority"));
        q->type = parse_long_or_zero(cta_xnode_attr(root, "type"));
        q->cookie = cta_xnode_child(root, "cookie") ? cta_xnode_child(root, "cookie")->text : NULL;
        q->session = cta_xnode_ctext(root, "session");
        q->target = cta_xnode_ctext(root, "target");
        if (q->target && *q->target == '\0')
                q->target = NULL;
        q->dst_host = cta_xnode_ctext(cta_xnode_child(root, "dst"), "host");
        if (q->dst_host && *q->dst_host == '\0')
                q->dst_host = NULL;
        q->op_node = first_elem(cta_xnode_child(root, "data"));
        q->op = q->op_node ? q->op_node->name : NULL;
        q->call_node = first_elem(q->op_node);
        q->call = q->call_node ? q->call_node->name : NULL;
        q->root = TAKE_PTR(root);
        *ret = q;
        return 0;
}

const char *cta_req_operator(const struct cta_req *r)
{
        if (r->target)
                return r->target;
        return "system";
}

/* ---- field helpers ---- */

/* Decode base64 child `field` of `parent` into out[outcap] (NUL-terminated). */
static int b64_field(const struct cta_xnode *parent, const char *field, const char *what,
                     char *out, size_t outcap, bool *present, struct cta_error **err)
{
        const struct cta_xnode *n = cta_xnode_child(parent, field);
        out[0] = '\0';
        if (present)
                *present = n != NULL;
        if (!n)
                return 0;
        int r = cta_b64_decode_str(n->text, n->text_len, out, outcap);
        if (r == -CTA_E_TOO_LARGE) {
                out[0] = '\0';
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/%s is too long (max %zu bytes)",
                                     what, field, outcap - 1);
        }
        if (r < 0) {
                out[0] = '\0';
                return cta_error_set(err, CTA_E_BAD_BASE64, 0, "%s/%s is not valid base64", what,
                                     field);
        }
        return 0;
}

/* A flag element: absent → false, empty or true/1 → true, false/0 → false. */
static int flag_field(const struct cta_xnode *parent, const char *field, const char *what,
                      bool *out, struct cta_error **err)
{
        const char *v = cta_xnode_ctext(parent, field);
        if (!v) {
                *out = false;
                return 0;
        }
        if (cta_parse_bool(v, true, out) < 0)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/%s must be true or false",
                                     what, field);
        return 0;
}

static bool is_ctl_free(const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return false;
        return true;
}

static bool chars_ok(const char *s, const char *extra, size_t max)
{
        size_t n = 0;
        for (const char *p = s; *p; p++, n++) {
                if (n >= max)
                        return false;
                if (!isalnum((unsigned char)*p) && !strchr(extra, *p))
                        return false;
        }
        return n > 0;
}

static void lower_copy(char *dst, const char *src, size_t cap)
{
        size_t i = 0;
        for (; src[i] && i + 1 < cap; i++)
                dst[i] = (char)tolower((unsigned char)src[i]);
        dst[i] = '\0';
}

static int uuid_field(const char *v, const char *what, char out[37], struct cta_error **err)
{
        if (!v || !cta_uuid_valid(v)) {
                _cleanup_free_ char *s = cta_sanitize(v ? v : "", 40);
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s is not a UUID: '%s'", what, s);
        }
        lower_copy(out, v, 37);
        return 0;
}

static int auth_name_parse(const struct cta_xnode *n, const char *what, struct cta_auth_name *out,
                           struct cta_error **err)
{
        int r = b64_field(n, "name", what, out->name, sizeof(out->name), &out->has_name, err);
        if (r < 0)
                return r;
        r = b64_field(n, "domain", what, out->domain, sizeof(out->domain), NULL, err);
        if (r < 0)
                return r;
        const char *realm = cta_xnode_ctext(n, "realm");
        if (!realm || !*realm) {
                /* Required by the XSD; older clients leave it out and mean the
                 * host's own user registry. */
                snprintf(out->realm, sizeof(out->realm), "%s", CTA_REALM_SYSTEM);
                return 0;
        }
        char field[64];
        snprintf(field, sizeof(field), "%.48s/realm", what);
        return uuid_field(realm, field, out->realm, err);
}

/* ---- calls ---- */

int cta_req_parse_login(const struct cta_xnode *call, struct cta_login *out,
                        struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        if (!call)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "login: missing");
        int r = auth_name_parse(call, "login", &out->who, err);
        if (r >= 0)
                r = b64_field(call, "password", "login", out->password, sizeof(out->password),
                              &out->has_password, err);
        if (r < 0)
                explicit_bzero(out, sizeof(*out));
        return r;
}

int cta_req_parse_cancel(const struct cta_xnode *call, struct cta_cancel *out,
                         struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        const char *id = cta_xnode_ctext(call, "message_id");
        if (!id || !*id)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "cancel/message_id is missing");
        if (!cta_packet_id_valid(id))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "cancel/message_id must be 1-%d characters of [A-Za-z0-9._:-]",
                                     CTA_PACKET_ID_MAX);
        snprintf(out->message_id, sizeof(out->message_id), "%s", id);

        const char *t = cta_xnode_ctext(call, "target");
        if (t && *t) {
                if (!chars_ok(t, "_", CTA_CANCEL_TARGET_MAX))
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "cancel/target must be 1-%d characters of [A-Za-z0-9_]",
                                             CTA_CANCEL_TARGET_MAX);
                snprintf(out->target, sizeof(out->target), "%s", t);
        }
        return flag_field(call, "global", "cancel", &out->global, err);
}

int cta_req_parse_subscribe(const struct cta_xnode *call, struct cta_subscribe *out,
                            struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        const char *what = call ? call->name : "subscribe";
        for (const struct cta_xnode *n = cta_xnode_child(call, "name"); n;
             n = cta_xnode_next_named(n)) {
                const char *v = cta_xnode_ttext(n);
                if (out->n >= CTA_SUBSCRIBE_MAX)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s: more than %d names",
                                             what, CTA_SUBSCRIBE_MAX);
                if (!chars_ok(v, "_.-", CTA_SUBSCRIBE_NAME_MAX))
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "%s/name must be 1-%d characters of [A-Za-z0-9_.-]",
                                             what, CTA_SUBSCRIBE_NAME_MAX);
                snprintf(out->names[out->n++], sizeof(out->names[0]), "%s", v);
        }
        if (out->n == 0)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s: no name given", what);
        return 0;
}

static int conn_info_parse(const struct cta_xnode *dst, const char *what,
                           struct cta_conn_info *out, struct cta_error **err)
{
        const char *proto = cta_xnode_ctext(dst, "protocol");
        if (!proto || !*proto || strcasecmp(proto, "SSL") == 0 || strcasecmp(proto, "TLS") == 0)
                out->protocol = CTA_DST_SSL;
        else if (strcasecmp(proto, "TCP") == 0 || strcasecmp(proto, "plain") == 0)
                out->protocol = CTA_DST_PLAIN;
        else {
                _cleanup_free_ char *s = cta_sanitize(proto, 32);
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "%s/protocol '%s' is not supported (SSL or TCP)", what, s);
        }

        const char *addr = cta_xnode_ctext(dst, "address");
        if (!addr || !*addr)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "%s/address is missing", what);
        if (!chars_ok(addr, ".:_%-[]", CTA_ADDRESS_MAX))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "%s/address is not a host name or IP address", what);
        snprintf(out->address, sizeof(out->address), "%s", addr);

        const char *port = cta_xnode_ctext(dst, "port");
        if (port && *port) {
                uint64_t p;
                if (cta_parse_u64(port, 65535, &p) < 0 || p == 0)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "%s/port must be 1-65535", what);
                out->port = (uint16_t)p;
        } else {
                out->port = out->protocol == CTA_DST_SSL ? CTA_PORT_SSL : CTA_PORT_PLAIN;
        }

        const struct cta_xnode *login = cta_xnode_child(dst, "login");
        if (login) {
                char w[64];
                snprintf(w, sizeof(w), "%.48s/login", what);
                int r = auth_name_parse(login, w, &out->login, err);
                if (r < 0)
                        return r;
                out->has_login = true;
        }
        return b64_field(dst, "password", what, out->password, sizeof(out->password),
                         &out->has_password, err);
}

int cta_req_parse_conn_info(const struct cta_xnode *dst, struct cta_conn_info *out,
                            struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        if (!dst)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "connection info is missing");
        /* The element's own name ("dst", "conn_info", ...) prefixes messages. */
        int r = conn_info_parse(dst, strlen(dst->name) <= 32 ? dst->name : "connection", out, err);
        if (r < 0)
                explicit_bzero(out, sizeof(*out));
        return r;
}

static int migrate_add_eid(struct cta_migrate_req *out, const struct cta_xnode *n,
                           struct cta_error **err)
{
        char eid[37];
        int r = uuid_field(cta_xnode_ttext(n), "migrate_v2v/eid", eid, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < out->n_eids; i++)
                if (streq(out->eids[i], eid))
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "migrate_v2v: eid %s given twice", eid);
        if (out->n_eids >= CTA_MIGRATE_MAX_EIDS)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "migrate_v2v: more than %d eids",
                                     CTA_MIGRATE_MAX_EIDS);
        memcpy(out->eids[out->n_eids++], eid, sizeof(eid));
        return 0;
}

/* options/compress: a zstd level 1-19, a flag (on: CTA_COMPRESS_LEVEL_ON) or "auto". */
static int compress_field(const struct cta_xnode *opt, struct cta_migrate_req *out,
                          struct cta_error **err)
{
        const char *v = cta_xnode_ctext(opt, "compress");
        if (!v)
                return 0;
        uint64_t level;
        bool on;
        if (*v >= '0' && *v <= '9' && cta_parse_u64(v, CTA_COMPRESS_LEVEL_MAX, &level) == 0)
                out->compress = (int)level;
        else if (streq(v, "auto"))
                out->compress = CTA_COMPRESS_AUTO;
        else if (streq(v, "zstd") || cta_parse_bool(v, true, &on) == 0)
                out->compress = streq(v, "zstd") || on ? CTA_COMPRESS_LEVEL_ON : 0;
        else
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "migrate_v2v/options/compress must be a zstd level "
                                     "0-%d, true, false or auto",
                                     CTA_COMPRESS_LEVEL_MAX);
        return 0;
}

static int migrate_options(const struct cta_xnode *opt, struct cta_migrate_req *out,
                           struct cta_error **err)
{
        int r;
        if ((r = flag_field(opt, "force", "migrate_v2v/options", &out->force, err)) < 0 ||
            (r = flag_field(opt, "nostart", "migrate_v2v/options", &out->nostart, err)) < 0 ||
            (r = flag_field(opt, "remove", "migrate_v2v/options", &out->remove, err)) < 0)
                return r;

        const char *type = cta_xnode_ctext(opt, "type");
        if (type && *type) {
                int64_t t;
                if (cta_parse_i64(type, INT32_MIN, INT32_MAX, &t) < 0)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "migrate_v2v/options/type is not an integer");
                out->type = (long)t;
        }

        if ((r = compress_field(opt, out, err)) < 0)
                return r;
        const struct cta_xnode *cfg = cta_xnode_child(opt, "config");
        if (!cfg)
                return 0;
        const char *veid = cta_xnode_ctext(cfg, "veid");
        if (veid && *veid) {
                if (cta_parse_u64(veid, INT64_MAX, &out->new_veid) < 0)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "migrate_v2v/options/config/veid is not a number");
                out->has_new_veid = true;
        }
        const char *priv = cta_xnode_ctext(cfg, "ve_private");
        if (priv && *priv) {
                if (strlen(priv) > CTA_PATH_MAX || !is_ctl_free(priv))
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "migrate_v2v/options/config/ve_private is not a valid path");
                snprintf(out->new_private, sizeof(out->new_private), "%s", priv);
        }
        const char *name = cta_xnode_ctext(cfg, "name");
        if (name && *name) {
                if (strlen(name) > CTA_NAME_MAX || !is_ctl_free(name))
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                             "migrate_v2v/options/config/name is not a valid name");
                snprintf(out->new_name, sizeof(out->new_name), "%s", name);
        }
        return 0;
}

static int migrate_parse(const struct cta_xnode *call, struct cta_migrate_req *out,
                         struct cta_error **err)
{
        int r;
        for (const struct cta_xnode *c = call->first_child; c; c = c->next) {
                if (streq(c->name, "eid")) {
                        if ((r = migrate_add_eid(out, c, err)) < 0)
                                return r;
                } else if (streq(c->name, "eid_list")) {
                        for (const struct cta_xnode *e = cta_xnode_child(c, "eid"); e;
                             e = cta_xnode_next_named(e))
                                if ((r = migrate_add_eid(out, e, err)) < 0)
                                        return r;
                }
        }
        if (out->n_eids == 0)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "migrate_v2v: no eid given");

        const struct cta_xnode *opt = cta_xnode_child(call, "options");
        if (opt && (r = migrate_options(opt, out, err)) < 0)
                return r;

        const struct cta_xnode *dst = cta_xnode_child(call, "dst");
        if (!dst)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "migrate_v2v/dst is missing");
        return conn_info_parse(dst, "migrate_v2v/dst", &out->dst, err);
}

int cta_req_parse_migrate_v2v(const struct cta_xnode *call, struct cta_migrate_req *out,
                              struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        out->compress = -1;
        if (!call)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "migrate_v2v: missing");
        int r = migrate_parse(call, out, err);
        if (r < 0)
                explicit_bzero(out, sizeof(*out));
        return r;
}

int cta_req_parse_mig_settle(const struct cta_xnode *call, struct cta_mig_settle_req *out,
                             struct cta_error **err)
{
        memset(out, 0, sizeof(*out));
        if (!call)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "settle: missing");
        int r = uuid_field(cta_xnode_ctext(call, "eid"), "settle/eid", out->eid, err);
        if (r < 0)
                return r;
        const char *o = cta_xnode_ctext(call, "outcome");
        if (o && streq(o, "moved")) {
                out->moved = true;
        } else if (!o || !streq(o, "stays")) {
                _cleanup_free_ char *s = cta_sanitize(o ? o : "", 40);
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "settle/outcome must be 'moved' or 'stays', not '%s'", s);
        }
        return 0;
}
