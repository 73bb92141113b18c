/*
 * The stable error codes of ctagent. They travel on the wire inside
 * <error><code>N</code>, and the CLI maps them to exit statuses, so a value
 * never changes meaning once released. docs/errors.md is the table for users;
 * keep the two in step.
 */
#pragma once

enum cta_errcode {
        CTA_E_OK = 0,

        /* 1xx: generic */
        CTA_E_INTERNAL = 100,     /* a bug or an unexpected failure */
        CTA_E_NOMEM = 101,        /* out of memory */
        CTA_E_IO = 102,           /* an I/O or system call failed */
        CTA_E_INVALID = 103,      /* an argument is invalid */
        CTA_E_TOO_LARGE = 104,    /* a size or count is over its limit */
        CTA_E_INCOMPLETE = 105,   /* need more bytes (internal, never on the wire) */
        CTA_E_TIMEOUT = 106,      /* an operation or a peer took too long */
        CTA_E_CANCELLED = 107,    /* cancelled by system/cancel or a signal */
        CTA_E_CONFIG = 108,       /* the configuration is invalid */
        CTA_E_STORE = 109,        /* the node database failed */
        CTA_E_BUSY = 110,         /* the object is locked by another operation */
        CTA_E_NOT_IMPLEMENTED = 111, /* known call, not implemented by ctagent */

        /* 2xx: packets and protocol */
        CTA_E_PROTO = 200,        /* malformed packet or frame */
        CTA_E_FRAME_TOO_LARGE = 201, /* a frame is over the size limit */
        CTA_E_UNKNOWN_OPERATOR = 202, /* no such operator (target) */
        CTA_E_UNKNOWN_CALL = 203, /* the operator has no such call */
        CTA_E_BAD_PARAM = 204,    /* a parameter is missing or malformed */
        CTA_E_IDLE = 205,         /* the connection was idle too long */
        CTA_E_BAD_BASE64 = 206,   /* a base64 field does not decode */
        CTA_E_TOO_MANY = 207,     /* too many connections or requests in flight */
        CTA_E_TLS = 208,          /* TLS setup or handshake failed */
        CTA_E_CONNECT = 209,      /* cannot connect to a node */
        CTA_E_PEER_CHANGED = 210, /* a node's certificate fingerprint differs from the pinned one */

        /* 3xx: authentication and authorization */
        CTA_E_NOT_LOGGED_IN = 300, /* a call that needs login came before login */
        CTA_E_AUTH_FAILED = 301,  /* wrong user name, password or realm */
        CTA_E_ACCESS_DENIED = 302, /* logged in, but not allowed to do this */
        CTA_E_ALREADY_LOGGED_IN = 303, /* login on a connection that has a session */
        CTA_E_UNKNOWN_REALM = 304, /* the realm id is not one of ours */

        /* 4xx: environments (containers) */
        CTA_E_ENV_NOT_FOUND = 400, /* no container with that eid/veid/name */
        CTA_E_ENV_EXISTS = 401,   /* eid already present */
        CTA_E_VEID_EXISTS = 402,  /* veid already present */
        CTA_E_NAME_EXISTS = 403,  /* name already present */
        CTA_E_PRIVATE_EXISTS = 404, /* private area path already present */
        CTA_E_IP_IN_USE = 405,    /* an IPv4 address is used by another container */
        CTA_E_BAD_STATE = 406,    /* the call is not allowed in the container's state */
        CTA_E_TEMPLATE = 407,     /* the OS template is missing or broken */
        CTA_E_CT_BACKEND = 408,   /* liblxc failed to do what was asked */

        /* 5xx: migration */
        CTA_E_MIG_UNSUPPORTED_TYPE = 500, /* options/type is not supported */
        CTA_E_MIG_DST_CONNECT = 501, /* cannot reach the destination node */
        CTA_E_MIG_DST_LOGIN = 502, /* the destination refused the credentials */
        CTA_E_MIG_CHECK = 503,    /* destination pre-checks failed (message lists all) */
        CTA_E_MIG_NO_SPACE = 504, /* not enough free bytes or inodes */
        CTA_E_MIG_CHECKSUM = 505, /* a file's checksum did not match */
        CTA_E_MIG_PATH = 506,     /* a received path escapes the staging area */
        CTA_E_MIG_STREAM = 507,   /* the migration stream is malformed or truncated */
        CTA_E_MIG_LINK_LOST = 508, /* the connection to the peer was lost */
        CTA_E_MIG_VERSION = 509,  /* no common migration protocol version */
        CTA_E_MIG_FS = 510,       /* the destination file system lacks a needed feature */
        CTA_E_MIG_SETTLED = 511,  /* settle: the destination answered otherwise; settled by it */
};

/* A short stable name for a code ("CTA_E_PROTO" → "proto"), or "unknown". */
const char *cta_errcode_name(int code);
