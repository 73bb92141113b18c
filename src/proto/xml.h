/*
 * A hardened XML reader: libxml2 (SAX2, no DTD, no entities, no network)
 * parses one complete frame from memory and we build our own small tree
 * while enforcing our own caps. Namespaces are dropped: elements and
 * attributes are known by their local names, xmlns declarations and
 * xsi:* attributes are not kept (clients send packets with and without
 * namespaces, and with or without xsi:type).
 */
#pragma once

#include <stddef.h>

#include "util/cleanup.h"

struct cta_error;

struct cta_xml_limits {
        size_t max_depth; /* element nesting, root = 1 */
        size_t max_nodes; /* elements */
        size_t max_attrs; /* attributes + namespace declarations per element */
        size_t max_text;  /* bytes of one element's text or one attribute value */
        size_t max_total; /* bytes of all text and attribute values */
};

/* CTA_XML_MAX_* from proto/proto_limits.h. */
extern const struct cta_xml_limits cta_xml_limits_default;

struct cta_xattr {
        char *name; /* local name */
        char *value;
};

struct cta_xnode {
        char *name;      /* local name, namespace prefix stripped */
        char *text;      /* direct text + CDATA concatenated, not trimmed, never NULL */
        size_t text_len; /* never contains NUL bytes (XML cannot carry U+0000) */
        struct cta_xattr *attrs;
        size_t nattrs;
        struct cta_xnode *first_child, *next, *parent;
        /* private */
        char *ttext; /* text trimmed of ASCII whitespace; == text when nothing to trim */
};

/* Parse data[0..len) (need not be NUL-terminated). Errors: -CTA_E_PROTO
 * (not well-formed, DOCTYPE/entities, no root), -CTA_E_TOO_LARGE (a cap).
 * err gets a short message; libxml2 never prints anything. */
int cta_xml_parse(const char *data, size_t len, const struct cta_xml_limits *lim,
                  struct cta_xnode **ret_root, struct cta_error **err);

/* Frees n and its subtree (n must be a root or detached). Returns NULL. */
struct cta_xnode *cta_xnode_free(struct cta_xnode *n);
CTA_DEFINE_CLEANUP(struct cta_xnode, cta_xnode_free)

/* First child element with this local name, or NULL. n may be NULL. */
const struct cta_xnode *cta_xnode_child(const struct cta_xnode *n, const char *name);
/* Next sibling with the same local name, or NULL. */
const struct cta_xnode *cta_xnode_next_named(const struct cta_xnode *n);
/* Attribute value by local name, or NULL. */
const char *cta_xnode_attr(const struct cta_xnode *n, const char *name);
/* Text of n trimmed of ASCII whitespace (never NULL for n != NULL). */
const char *cta_xnode_ttext(const struct cta_xnode *n);
/* Trimmed text of the first child named `child`, or NULL if there is none. */
const char *cta_xnode_ctext(const struct cta_xnode *n, const char *child);
/* Number of child elements (all names). */
size_t cta_xnode_nchildren(const struct cta_xnode *n);
