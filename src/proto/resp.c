/*
 * Reply packets → struct cta_resp, for the CLI and for agent-to-agent calls.
 * A peer's replies are as untrusted as requests; this is tolerant about
 * shape (namespaces, order, wrapped or bare progress/event) but bounded in
 * everything it computes.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/packet.h"
#include "proto/proto_limits.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

struct render {
        size_t budget; /* bytes we may still produce or compare, all levels together */
};

static bool budget_take(struct render *rs, size_t n)
{
        if (n > rs->budget) {
                rs->budget = 0;
                return false;
        }
        rs->budget -= n;
        return true;
}

/* Decoded base64 of the info's own <message>, NUL bytes shown as '?'. */
static char *info_template(const struct cta_xnode *info, size_t *ret_len)
{
        const struct cta_xnode *m = cta_xnode_child(info, "message");
        if (!m)
                return NULL;
        size_t cap = cta_b64_decoded_max(m->text_len);
        if (cap > CTA_RESP_MESSAGE_MAX)
                cap = CTA_RESP_MESSAGE_MAX;
        char *out = cta_xmalloc(cap + 1);
        size_t n;
        if (cta_b64_decode(m->text, m->text_len, (uint8_t *)out, cap, &n) < 0) {
                free(out);
                return NULL;
        }
        for (size_t i = 0; i < n; i++)
                if (out[i] == '\0')
                        out[i] = '?';
        out[n] = '\0';
        *ret_len = n;
        return out;
}

static char *render_info(const struct cta_xnode *info, unsigned depth, struct render *rs);

static int append_bounded(struct cta_buf *b, const char *s, size_t n, struct render *rs)
{
        if (b->len + n > CTA_RESP_MESSAGE_MAX)
                n = CTA_RESP_MESSAGE_MAX - b->len;
        if (!budget_take(rs, n))
                return -1;
        return cta_buf_append(b, s, n);
}

static char *render_info(const struct cta_xnode *info, unsigned depth, struct render *rs)
{
        size_t tlen;
        _cleanup_free_ char *templ = info_template(info, &tlen);
        if (!templ)
                return NULL;
        if (!budget_take(rs, tlen))
                return NULL;

        /* Parameters are rendered lazily, once each, when first referenced. */
        struct cta_buf out = CTA_BUF_INIT(CTA_RESP_MESSAGE_MAX + 1);
        size_t i = 0;
        while (i < tlen) {
                const char *pct = memchr(templ + i, '%', tlen - i);
                const char *end = pct ? memchr(pct + 1, '%', tlen - (size_t)(pct + 1 - templ)) : NULL;
                if (!pct || !end) {
                        (void)append_bounded(&out, templ + i, tlen - i, rs);
                        break;
                }
                (void)append_bounded(&out, templ + i, (size_t)(pct - templ) - i, rs);
                size_t nlen = (size_t)(end - pct - 1);
                const struct cta_xnode *hit = NULL;
                if (nlen > 0 && depth < CTA_RESP_PARAM_DEPTH) {
                        for (const struct cta_xnode *p = cta_xnode_child(info, "parameter"); p;
                             p = cta_xnode_next_named(p)) {
                                if (!budget_take(rs, 1))
                                        break;
                                const char *pn = cta_xnode_ctext(p, "name");
                                if (pn && strlen(pn) == nlen && memcmp(pn, pct + 1, nlen) == 0) {
                                        hit = p;
                                        break;
                                }
                        }
                }
                if (hit) {
                        _cleanup_free_ char *v = render_info(hit, depth + 1, rs);
                        if (v)
                                (void)append_bounded(&out, v, strlen(v), rs);
                        i = (size_t)(end - templ) + 1;
                } else {
                        /* Not a placeholder: keep the '%' and look again from the next one. */
                        (void)append_bounded(&out, pct, (size_t)(end - pct), rs);
                        i = (size_t)(end - templ);
                }
                if (rs->budget == 0 || out.len >= CTA_RESP_MESSAGE_MAX)
                        break;
        }
        if (!out.data)
                return cta_xstrdup("");
        return cta_buf_steal(&out, NULL);
}

char *cta_info_render(const struct cta_xnode *info)
{
        struct render rs = { .budget = CTA_RESP_RENDER_BUDGET };
        if (!info)
                return NULL;
        return render_info(info, 0, &rs);
}

struct cta_resp *cta_resp_free(struct cta_resp *r)
{
        if (!r)
                return NULL;
        cta_xnode_free(r->root);
        free(r->message);
        free(r);
        return NULL;
}

static long attr_long(const struct cta_xnode *n, const char *name)
{
        int64_t v;
        const char *s = cta_xnode_attr(n, name);
        if (!s || cta_parse_i64(s, INT32_MIN, INT32_MAX, &v) < 0)
                return 0;
        return (long)v;
}

static int text_int(const char *s, int dflt)
{
        int64_t v;
        if (!s || cta_parse_i64(s, INT32_MIN, INT32_MAX, &v) < 0)
                return dflt;
        return (int)v;
}

static void resp_progress(struct cta_resp *r, const struct cta_xnode *p)
{
        r->is_progress = true;
        r->progress_node = p;
        r->percent = text_int(cta_xnode_ctext(p, "percent"), -1);
        r->status = text_int(cta_xnode_ctext(p, "status"), 0);
        r->progress_op = cta_xnode_ctext(p, "op");
        r->progress_id = cta_xnode_ctext(p, "id");
        r->message = cta_info_render(cta_xnode_child(p, "message"));
}

/* Replies come from a node the client chose (and pinned); they can be far
 * bigger than a request (get_info of a node with thousands of containers),
 * so the element cap follows the frame size, still bounded. */
static const struct cta_xml_limits resp_limits = {
        .max_depth = CTA_XML_MAX_DEPTH,
        .max_nodes = 1000000,
        .max_attrs = CTA_XML_MAX_ATTRS,
        .max_text = CTA_XML_MAX_TEXT,
        .max_total = 64u << 20,
};

int cta_resp_parse(const char *frame, size_t len, struct cta_resp **ret, struct cta_error **err)
{
        _cleanup_(cta_xnode_freep) struct cta_xnode *root = NULL;
        int r = cta_xml_parse(frame, len, &resp_limits, &root, err);
        if (r < 0)
                return r;
        if (!streq(root->name, "packet"))
                return cta_error_set(err, CTA_E_PROTO, 0, "root element is not <packet>");

        struct cta_resp *p = cta_xcalloc(1, sizeof(*p));
        p->percent = -1;
        p->id = cta_xnode_attr(root, "id");
        p->version = cta_xnode_attr(root, "version");
        p->type = attr_long(root, "type");
        p->priority = attr_long(root, "priority");
        p->origin = cta_xnode_ctext(root, "origin");
        p->target = cta_xnode_ctext(root, "target");
        p->error_message = "";

        const struct cta_xnode *data = cta_xnode_child(root, "data");
        for (const struct cta_xnode *c = data ? data->first_child : NULL; c; c = c->next) {
                if (streq(c->name, "progress")) {
                        if (!p->is_progress)
                                resp_progress(p, c);
                        continue;
                }
                if (streq(c->name, "event")) {
                        if (!p->is_event) {
                                p->is_event = true;
                                p->event_node = c;
                        }
                        continue;
                }
                if (p->op_node)
                        continue;
                p->op_node = c;
                p->op = c->name;
                /* Wrapped forms: <operator xsi:type=op_logType><progress> and
                 * <operator xsi:type=event_logType><event>. */
                const struct cta_xnode *w = cta_xnode_child(c, "progress");
                if (w && !p->is_progress)
                        resp_progress(p, w);
                w = cta_xnode_child(c, "event");
                if (w && !p->is_event) {
                        p->is_event = true;
                        p->event_node = w;
                }
        }
        if (p->op_node) {
                p->ok = cta_xnode_child(p->op_node, "ok") != NULL;
                const struct cta_xnode *e = cta_xnode_child(p->op_node, "error");
                if (e) {
                        const char *m = cta_xnode_ctext(e, "message");
                        p->has_error = true;
                        p->error_code = text_int(cta_xnode_ctext(e, "code"), 0);
                        p->error_message = m ? m : "";
                }
        }
        p->root = TAKE_PTR(root);
        *ret = p;
        return 0;
}
