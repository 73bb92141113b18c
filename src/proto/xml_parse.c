/*
 * The only place that feeds peer bytes to libxml2. We drive its SAX2
 * interface directly, so no libxml2 tree is ever built and every cap is
 * enforced while parsing, before anything large is allocated:
 *   - no DOCTYPE at all: the internalSubset/externalSubset and all
 *     declaration callbacks stop the parser, so no entity is ever declared,
 *     loaded or expanded (billion laughs, XXE);
 *   - XML_PARSE_NONET, never NOENT/DTDLOAD/DTDVALID/XINCLUDE/HUGE;
 *   - our own depth, element, attribute and text caps;
 *   - errors go to a structured handler that records a short message;
 *     libxml2 never writes to stderr.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlversion.h>

#include "proto/proto_limits.h"
#include "proto/xml.h"
#include "util/error.h"
#include "util/util.h"

#define XSI_NS "http://www.w3.org/2001/XMLSchema-instance"
#define NAME_MAX_LEN 1024

const struct cta_xml_limits cta_xml_limits_default = {
        .max_depth = CTA_XML_MAX_DEPTH,
        .max_nodes = CTA_XML_MAX_NODES,
        .max_attrs = CTA_XML_MAX_ATTRS,
        .max_text = CTA_XML_MAX_TEXT,
        .max_total = CTA_XML_MAX_TOTAL,
};

struct xml_state {
        xmlParserCtxtPtr ctxt;
        const struct cta_xml_limits *lim;
        struct cta_xnode *root;
        struct cta_xnode *cur;        /* innermost open element */
        struct cta_xnode *last_child[CTA_XML_MAX_DEPTH + 1]; /* append in O(1) per level */
        size_t text_cap[CTA_XML_MAX_DEPTH + 1];
        size_t depth;
        size_t nodes;
        size_t total;
        int fail_code;                /* ours: set when we stop the parser */
        char fail_msg[128];
        char lib_msg[160];            /* first libxml2 error */
};

static void xml_stop(struct xml_state *st, int code, const char *msg)
{
        if (st->fail_code)
                return;
        st->fail_code = code;
        snprintf(st->fail_msg, sizeof(st->fail_msg), "%s", msg);
        xmlStopParser(st->ctxt);
}

/* ---- error sinks ---- */

static void xml_serror(void *user, xmlErrorPtr e)
{
        struct xml_state *st = user;
        if (!st || !e || e->level < XML_ERR_ERROR || st->lib_msg[0])
                return;
        /* libxml2 messages end with a newline and may quote document bytes;
         * keep it short and printable. */
        char *m = cta_sanitize(e->message ? e->message : "parse error", 100);
        size_t n = strlen(m);
        while (n > 0 && (m[n - 1] == '?' || m[n - 1] == ' '))
                m[--n] = '\0';
        snprintf(st->lib_msg, sizeof(st->lib_msg), "line %d: %s", e->line, m);
        free(m);
}

static void xml_serror_global(void *user, xmlErrorPtr e)
{
}

static void xml_generic_error(void *ctx, const char *msg, ...)
{
}

/* ---- forbidden constructs: stop at the first sight ---- */

static void sax_internal_subset(void *ctx, const xmlChar *name, const xmlChar *ext,
                                const xmlChar *sys)
{
        xml_stop(ctx, CTA_E_PROTO, "DOCTYPE is not allowed");
}

static void sax_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *pub,
                            const xmlChar *sys, xmlChar *content)
{
        xml_stop(ctx, CTA_E_PROTO, "entity declarations are not allowed");
}

static void sax_notation_decl(void *ctx, const xmlChar *name, const xmlChar *pub,
                              const xmlChar *sys)
{
        xml_stop(ctx, CTA_E_PROTO, "DTD declarations are not allowed");
}

static void sax_attribute_decl(void *ctx, const xmlChar *elem, const xmlChar *fullname, int type,
                               int def, const xmlChar *defaultValue, xmlEnumerationPtr tree)
{
        xmlFreeEnumeration(tree); /* the callback owns it */
        xml_stop(ctx, CTA_E_PROTO, "DTD declarations are not allowed");
}

static void sax_element_decl(void *ctx, const xmlChar *name, int type, xmlElementContentPtr c)
{
        xml_stop(ctx, CTA_E_PROTO, "DTD declarations are not allowed");
}

static void sax_unparsed_entity_decl(void *ctx, const xmlChar *name, const xmlChar *pub,
                                     const xmlChar *sys, const xmlChar *notation)
{
        xml_stop(ctx, CTA_E_PROTO, "entity declarations are not allowed");
}

static xmlEntityPtr sax_get_entity(void *ctx, const xmlChar *name)
{
        /* Only reached for non-predefined references; there are no others. */
        xml_stop(ctx, CTA_E_PROTO, "entity references are not allowed");
        return NULL;
}

static xmlParserInputPtr sax_resolve_entity(void *ctx, const xmlChar *pub, const xmlChar *sys)
{
        xml_stop(ctx, CTA_E_PROTO, "external entities are not allowed");
        return NULL;
}

static void sax_reference(void *ctx, const xmlChar *name)
{
        xml_stop(ctx, CTA_E_PROTO, "entity references are not allowed");
}

/* ---- tree building ---- */

static int state_count(struct xml_state *st, size_t n)
{
        if (n > st->lim->max_total || st->total > st->lim->max_total - n) {
                xml_stop(st, CTA_E_TOO_LARGE, "document is over the size limit");
                return -1;
        }
        st->total += n;
        return 0;
}

/* With replaceEntities off, libxml2 hands attribute values over with "&#38;"
 * standing for '&' (from "&amp;" or "&#38;"); nothing else is escaped. */
static char *attr_value_dup(const xmlChar *v, const xmlChar *end)
{
        size_t n = (size_t)(end - v);
        char *out = cta_xmalloc(n + 1);
        size_t o = 0;
        for (size_t i = 0; i < n;) {
                if (v[i] == '&' && n - i >= 5 && memcmp(v + i, "&#38;", 5) == 0) {
                        out[o++] = '&';
                        i += 5;
                } else {
                        out[o++] = (char)v[i++];
                }
        }
        out[o] = '\0';
        return out;
}

static void sax_start_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                              const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                              int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
        struct xml_state *st = ctx;
        if (st->fail_code)
                return;
        if (st->depth >= st->lim->max_depth || st->depth >= CTA_XML_MAX_DEPTH) {
                xml_stop(st, CTA_E_TOO_LARGE, "elements nested too deeply");
                return;
        }
        if (st->nodes >= st->lim->max_nodes) {
                xml_stop(st, CTA_E_TOO_LARGE, "too many elements");
                return;
        }
        if (nb_attributes < 0 || nb_namespaces < 0 ||
            (size_t)nb_attributes + (size_t)nb_namespaces > st->lim->max_attrs) {
                xml_stop(st, CTA_E_TOO_LARGE, "too many attributes");
                return;
        }
        size_t nlen = strlen((const char *)localname);
        if (nlen > NAME_MAX_LEN) {
                xml_stop(st, CTA_E_TOO_LARGE, "element name too long");
                return;
        }
        if (state_count(st, nlen) < 0)
                return;

        struct cta_xnode *n = cta_xcalloc(1, sizeof(*n));
        n->name = cta_xstrndup((const char *)localname, nlen);
        n->parent = st->cur;
        if (st->cur) {
                if (st->last_child[st->depth])
                        st->last_child[st->depth]->next = n;
                else
                        st->cur->first_child = n;
                st->last_child[st->depth] = n;
        } else {
                st->root = n;
        }
        st->cur = n;
        st->depth++;
        st->last_child[st->depth] = NULL;
        st->text_cap[st->depth] = 0;
        st->nodes++;

        if (nb_attributes > 0)
                n->attrs = cta_xcalloc((size_t)nb_attributes, sizeof(*n->attrs));
        for (int i = 0; i < nb_attributes; i++) {
                const xmlChar **a = attributes + 5 * i;
                if (a[2] && strcmp((const char *)a[2], XSI_NS) == 0)
                        continue; /* xsi:type and friends carry no meaning for us */
                size_t an = strlen((const char *)a[0]);
                size_t vn = (size_t)(a[4] - a[3]);
                if (an > NAME_MAX_LEN || vn > st->lim->max_text) {
                        xml_stop(st, CTA_E_TOO_LARGE, "attribute too long");
                        return;
                }
                if (state_count(st, an + vn) < 0)
                        return;
                n->attrs[n->nattrs].name = cta_xstrndup((const char *)a[0], an);
                n->attrs[n->nattrs].value = attr_value_dup(a[3], a[4]);
                n->nattrs++;
        }
}

static void sax_end_element(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                            const xmlChar *uri)
{
        struct xml_state *st = ctx;
        if (st->fail_code || !st->cur)
                return;
        st->cur = st->cur->parent;
        st->depth--;
}

static void sax_characters(void *ctx, const xmlChar *ch, int len)
{
        struct xml_state *st = ctx;
        if (st->fail_code || len <= 0)
                return;
        struct cta_xnode *n = st->cur;
        if (!n)
                return; /* whitespace outside the root */
        size_t add = (size_t)len;
        if (add > st->lim->max_text || n->text_len > st->lim->max_text - add) {
                xml_stop(st, CTA_E_TOO_LARGE, "text too long");
                return;
        }
        if (state_count(st, add) < 0)
                return;
        size_t *cap = &st->text_cap[st->depth];
        if (n->text_len + add + 1 > *cap) {
                size_t c = *cap ? *cap : 32;
                while (c < n->text_len + add + 1)
                        c *= 2;
                n->text = cta_xrealloc(n->text, c);
                *cap = c;
        }
        memcpy(n->text + n->text_len, ch, add);
        n->text_len += add;
        n->text[n->text_len] = '\0';
}

static bool is_ws(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Give every node a non-NULL text and its trimmed form (iterative: depth is
 * capped, but there is no need for recursion at all). */
static void finish_tree(struct cta_xnode *root)
{
        struct cta_xnode *n = root;
        while (n) {
                if (!n->text)
                        n->text = cta_xstrdup("");
                size_t b = 0, e = n->text_len;
                while (b < e && is_ws(n->text[b]))
                        b++;
                while (e > b && is_ws(n->text[e - 1]))
                        e--;
                if (b == 0 && e == n->text_len)
                        n->ttext = n->text;
                else
                        n->ttext = cta_xstrndup(n->text + b, e - b);

                if (n->first_child) {
                        n = n->first_child;
                        continue;
                }
                while (n && !n->next)
                        n = n->parent;
                if (n)
                        n = n->next;
        }
}

static void free_node_fields(struct cta_xnode *n)
{
        if (n->ttext != n->text)
                free(n->ttext);
        free(n->text);
        free(n->name);
        for (size_t i = 0; i < n->nattrs; i++) {
                free(n->attrs[i].name);
                free(n->attrs[i].value);
        }
        free(n->attrs);
        free(n);
}

struct cta_xnode *cta_xnode_free(struct cta_xnode *root)
{
        /* Post-order without recursion: go down first children to a leaf,
         * unlink it from its parent (it is always the first child), free it,
         * continue from the parent. */
        struct cta_xnode *n = root;
        while (n) {
                while (n->first_child)
                        n = n->first_child;
                if (n == root) {
                        free_node_fields(n);
                        break;
                }
                struct cta_xnode *p = n->parent;
                p->first_child = n->next;
                free_node_fields(n);
                n = p;
        }
        return NULL;
}

/*
 * A linear lexical pass before libxml2 sees the bytes. libxml2 2.9 checks a
 * start tag's attributes and namespace declarations for duplicates in
 * quadratic time, before any SAX callback can stop it (80,000 attributes
 * take seconds), so a tag with more than max_attrs '=' outside quotes is
 * refused here. Any "<!" that is not a comment or CDATA (DOCTYPE, ENTITY,
 * ...) is refused here as well, before libxml2 reads a single declaration.
 * On malformed input libxml2 gives up on a tag no later than we do, so it
 * never sees more attributes than we counted.
 */
static int prescan(const char *s, size_t n, size_t max_attrs, const char **msg)
{
        size_t i = 0;
        while (i < n) {
                const char *lt = memchr(s + i, '<', n - i);
                if (!lt)
                        break;
                i = (size_t)(lt - s);
                size_t rest = n - i;
                const char *end = NULL;
                size_t skip = 0;
                if (rest >= 4 && memcmp(lt, "<!--", 4) == 0) {
                        end = memmem(lt + 4, rest - 4, "-->", 3);
                        skip = 3;
                } else if (rest >= 9 && memcmp(lt, "<![CDATA[", 9) == 0) {
                        end = memmem(lt + 9, rest - 9, "]]>", 3);
                        skip = 3;
                } else if (rest >= 2 && lt[1] == '?') {
                        end = memmem(lt + 2, rest - 2, "?>", 2);
                        skip = 2;
                } else if (rest >= 2 && lt[1] == '!') {
                        *msg = "DOCTYPE and declarations are not allowed";
                        return -CTA_E_PROTO;
                } else if (rest >= 2 && lt[1] == '/') {
                        end = memchr(lt + 2, '>', rest - 2);
                        skip = 1;
                } else {
                        /* A start tag: count '=' outside quoted values. */
                        size_t eq = 0;
                        char q = 0;
                        for (i++; i < n; i++) {
                                char c = s[i];
                                if (q) {
                                        if (c == q)
                                                q = 0;
                                } else if (c == '"' || c == '\'') {
                                        q = c;
                                } else if (c == '=') {
                                        if (++eq > max_attrs) {
                                                *msg = "too many attributes";
                                                return -CTA_E_TOO_LARGE;
                                        }
                                } else if (c == '>' || c == '<') {
                                        break;
                                }
                        }
                        if (i < n && s[i] == '>')
                                i++;
                        continue;
                }
                if (!end)
                        break; /* unterminated: libxml2 reports it */
                i = (size_t)(end - s) + skip;
        }
        return 0;
}

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init_once(void)
{
        xmlInitParser();
}

int cta_xml_parse(const char *data, size_t len, const struct cta_xml_limits *lim,
                  struct cta_xnode **ret_root, struct cta_error **err)
{
        struct xml_state st = { .lim = lim ? lim : &cta_xml_limits_default };
        int opts = XML_PARSE_NONET | XML_PARSE_IGNORE_ENC;
#if LIBXML_VERSION >= 21300
        opts |= XML_PARSE_NO_XXE;
#endif
        if (!data || len == 0)
                return cta_error_set(err, CTA_E_PROTO, 0, "empty document");
        if (len > INT_MAX)
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "document too large");

        /* XML 1.0 has no U+0000, and without NULs libxml2 cannot switch to
         * UTF-16/32 either: documents are UTF-8 (or ASCII) only. */
        if (memchr(data, '\0', len))
                return cta_error_set(err, CTA_E_PROTO, 0, "XML: NUL byte in document");
        const char *pmsg = NULL;
        int pr = prescan(data, len, st.lim->max_attrs, &pmsg);
        if (pr < 0)
                return cta_error_set(err, -pr, 0, "XML: %s", pmsg);

        (void)pthread_once(&xml_once, xml_init_once);
        /* Thread-local in libxml2: errors raised without a parser context
         * (encoding, memory) must not reach stderr either. */
        xmlSetStructuredErrorFunc(NULL, xml_serror_global);
        xmlSetGenericErrorFunc(NULL, xml_generic_error);

        xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(data, (int)len);
        if (!ctxt)
                return cta_error_set(err, CTA_E_NOMEM, ENOMEM, "cannot create XML parser");
        (void)xmlCtxtUseOptions(ctxt, opts);

        xmlSAXHandler sax;
        memset(&sax, 0, sizeof(sax));
        sax.initialized = XML_SAX2_MAGIC;
        sax.internalSubset = sax_internal_subset;
        sax.externalSubset = sax_internal_subset;
        sax.entityDecl = sax_entity_decl;
        sax.notationDecl = sax_notation_decl;
        sax.attributeDecl = sax_attribute_decl;
        sax.elementDecl = sax_element_decl;
        sax.unparsedEntityDecl = sax_unparsed_entity_decl;
        sax.getEntity = sax_get_entity;
        sax.getParameterEntity = sax_get_entity;
        sax.resolveEntity = sax_resolve_entity;
        sax.reference = sax_reference;
        sax.startElementNs = sax_start_element;
        sax.endElementNs = sax_end_element;
        sax.characters = sax_characters;
        sax.ignorableWhitespace = sax_characters;
        sax.cdataBlock = sax_characters;
        sax.serror = xml_serror;

        xmlSAXHandlerPtr old_sax = ctxt->sax;
        ctxt->sax = &sax;
        ctxt->userData = &st;
        ctxt->replaceEntities = 0;
        ctxt->loadsubset = 0;
        ctxt->validate = 0;
        st.ctxt = ctxt;

        (void)xmlParseDocument(ctxt);
        bool well_formed = ctxt->wellFormed;

        /* After a fatal error libxml2 goes on through a DTD with SAX disabled
         * and, "for expat compatibility", records entity declarations in a
         * document of its own: ours to free. */
        if (ctxt->myDoc) {
                xmlFreeDoc(ctxt->myDoc);
                ctxt->myDoc = NULL;
        }
        ctxt->sax = old_sax;
        ctxt->userData = ctxt;
        xmlFreeParserCtxt(ctxt);

        int r = 0;
        if (st.fail_code)
                r = cta_error_set(err, st.fail_code, 0, "XML: %s", st.fail_msg);
        else if (!well_formed)
                r = cta_error_set(err, CTA_E_PROTO, 0, "XML not well-formed: %s",
                                  st.lib_msg[0] ? st.lib_msg : "parse error");
        else if (!st.root)
                r = cta_error_set(err, CTA_E_PROTO, 0, "XML: no root element");
        if (r < 0) {
                cta_xnode_free(st.root);
                return r;
        }
        finish_tree(st.root);
        *ret_root = st.root;
        return 0;
}

/* ---- accessors ---- */

const struct cta_xnode *cta_xnode_child(const struct cta_xnode *n, const char *name)
{
        if (!n)
                return NULL;
        for (const struct cta_xnode *c = n->first_child; c; c = c->next)
                if (streq(c->name, name))
                        return c;
        return NULL;
}

const struct cta_xnode *cta_xnode_next_named(const struct cta_xnode *n)
{
        if (!n)
                return NULL;
        for (const struct cta_xnode *c = n->next; c; c = c->next)
                if (streq(c->name, n->name))
                        return c;
        return NULL;
}

const char *cta_xnode_attr(const struct cta_xnode *n, const char *name)
{
        if (!n)
                return NULL;
        for (size_t i = 0; i < n->nattrs; i++)
                if (streq(n->attrs[i].name, name))
                        return n->attrs[i].value;
        return NULL;
}

const char *cta_xnode_ttext(const struct cta_xnode *n)
{
        if (!n)
                return NULL;
        return n->ttext ? n->ttext : n->text;
}

const char *cta_xnode_ctext(const struct cta_xnode *n, const char *child)
{
        return cta_xnode_ttext(cta_xnode_child(n, child));
}

size_t cta_xnode_nchildren(const struct cta_xnode *n)
{
        size_t k = 0;
        for (const struct cta_xnode *c = n ? n->first_child : NULL; c; c = c->next)
                k++;
        return k;
}
