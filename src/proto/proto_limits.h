/*
 * Limits of the protocol layer, in one place (docs/limits.md mirrors them).
 * Everything a peer controls is bounded by one of these before we allocate.
 */
#pragma once

/* XML tree caps (struct cta_xml_limits defaults). */
#define CTA_XML_MAX_DEPTH 32
#define CTA_XML_MAX_NODES 10000
#define CTA_XML_MAX_ATTRS 32                    /* per element, xmlns declarations included */
#define CTA_XML_MAX_TEXT (1024 * 1024)          /* per text node or attribute value */
#define CTA_XML_MAX_TOTAL (16 * 1024 * 1024)    /* all text and attribute bytes kept */

/* Packet header fields. */
#define CTA_PACKET_ID_MAX 128                   /* [A-Za-z0-9._:-] */

/* Typed call fields (sizes without the terminating NUL). */
#define CTA_NAME_MAX 256
#define CTA_PASSWORD_MAX 1024
#define CTA_ADDRESS_MAX 255
#define CTA_PATH_MAX 4096
#define CTA_SUBSCRIBE_MAX 16
#define CTA_SUBSCRIBE_NAME_MAX 63
#define CTA_CANCEL_TARGET_MAX 63
#define CTA_MIGRATE_MAX_EIDS 64

/* Reply side (cta_resp_parse): the decoded progress message and the total
 * work spent expanding %param% references. */
#define CTA_RESP_MESSAGE_MAX (64 * 1024)
#define CTA_RESP_RENDER_BUDGET (1024 * 1024)
#define CTA_RESP_PARAM_DEPTH 8

/* Writer: element nesting and qualified name length. */
#define CTA_XW_MAX_DEPTH 32
#define CTA_XW_DEPTH_SLOTS CTA_XW_MAX_DEPTH
#define CTA_XW_NAME_MAX 63
