#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/known_nodes.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/util.h"

#define KN_FILE_MAX (4u << 20)

void cli_kn_key(const char *host, uint16_t port, char out[300])
{
        char h[260];
        size_t i;

        for (i = 0; host[i] && i < 255; i++)
                h[i] = (char)tolower((unsigned char)host[i]);
        h[i] = '\0';
        if (strchr(h, ':'))
                snprintf(out, 300, "[%s]:%u", h, (unsigned)port);
        else
                snprintf(out, 300, "%s:%u", h, (unsigned)port);
}

bool cli_kn_fingerprint_valid(const char *fp)
{
        if (!fp || strncasecmp(fp, "SHA256:", 7) != 0)
                return false;
        fp += 7;
        for (int i = 0; i < 32; i++) {
                if (!isxdigit((unsigned char)fp[0]) || !isxdigit((unsigned char)fp[1]))
                        return false;
                fp += 2;
                if (i < 31 && *fp++ != ':')
                        return false;
        }
        return *fp == '\0';
}

/* One parsed line: [key, key+klen) and [fp, fp+flen), both within the text. */
struct kn_line {
        const char *key, *fp;
        size_t klen, flen;
};

/* Parse the line [s, e). Returns false for blank, comment or malformed lines. */
static bool parse_line(const char *s, const char *e, struct kn_line *l)
{
        while (s < e && (*s == ' ' || *s == '\t'))
                s++;
        if (s == e || *s == '#' || *s == '\r')
                return false;
        l->key = s;
        while (s < e && *s != ' ' && *s != '\t')
                s++;
        l->klen = (size_t)(s - l->key);
        while (s < e && (*s == ' ' || *s == '\t'))
                s++;
        l->fp = s;
        while (s < e && *s != ' ' && *s != '\t' && *s != '\r')
                s++;
        l->flen = (size_t)(s - l->fp);
        return l->klen > 0 && l->flen > 0;
}

static bool key_eq(const struct kn_line *l, const char *key)
{
        return strlen(key) == l->klen && strncasecmp(l->key, key, l->klen) == 0;
}

enum cli_kn_result cli_kn_lookup(const char *text, const char *key, const char *fp,
                                 unsigned *ret_line, char **ret_pinned)
{
        unsigned lineno = 0;

        for (const char *s = text; s && *s;) {
                const char *e = strchr(s, '\n');
                struct kn_line l;

                if (!e)
                        e = s + strlen(s);
                lineno++;
                if (parse_line(s, e, &l) && key_eq(&l, key)) {
                        bool same = strlen(fp) == l.flen && strncasecmp(l.fp, fp, l.flen) == 0;
                        if (ret_line)
                                *ret_line = lineno;
                        if (ret_pinned)
                                *ret_pinned = cta_xstrndup(l.fp, l.flen);
                        return same ? CLI_KN_MATCH : CLI_KN_MISMATCH;
                }
                s = *e ? e + 1 : e;
        }
        return CLI_KN_UNKNOWN;
}

static void put_entry(struct cta_buf *b, const char *key, const char *fp)
{
        (void)cta_buf_puts(b, key);
        (void)cta_buf_putc(b, ' ');
        for (const char *p = fp; *p; p++)
                (void)cta_buf_putc(b, (char)toupper((unsigned char)*p));
        (void)cta_buf_putc(b, '\n');
}

char *cli_kn_set(const char *text, const char *key, const char *fp)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        bool done = false;

        for (const char *s = text; s && *s;) {
                const char *e = strchr(s, '\n');
                struct kn_line l;

                if (!e)
                        e = s + strlen(s);
                if (parse_line(s, e, &l) && key_eq(&l, key)) {
                        if (!done)
                                put_entry(&b, key, fp);
                        done = true;
                } else {
                        (void)cta_buf_append(&b, s, (size_t)(e - s));
                        (void)cta_buf_putc(&b, '\n');
                }
                s = *e ? e + 1 : e;
        }
        if (!done)
                put_entry(&b, key, fp);
        return cta_buf_steal(&b, NULL);
}

char *cli_config_file(const char *name, struct cta_error **err)
{
        const char *x = getenv("XDG_CONFIG_HOME");
        const char *h = getenv("HOME");

        /* The XDG spec says a relative XDG_CONFIG_HOME is invalid: ignore it. */
        if (x && x[0] == '/')
                return cta_xasprintf("%s/ctagent/%s", x, name);
        if (h && h[0] == '/')
                return cta_xasprintf("%s/.config/ctagent/%s", h, name);
        cta_error_set(err, CTA_E_CONFIG, 0,
                      "cannot find the %s file: neither $XDG_CONFIG_HOME nor $HOME is set", name);
        return NULL;
}

char *cli_kn_default_path(struct cta_error **err)
{
        return cli_config_file("known_nodes", err);
}

int cli_make_parent(const char *path, struct cta_error **err)
{
        _cleanup_free_ char *dir = cta_xstrdup(path);
        char *slash = strrchr(dir, '/');

        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        return cta_mkdir_p(dir, 0700, err);
}

/* Append one entry with O_APPEND, so two clients adding different nodes at
 * the same time do not lose each other's line. */
static int append_entry(const char *path, const char *text, const char *key, const char *fp,
                        struct cta_error **err)
{
        struct cta_buf b = CTA_BUF_INIT(0);
        _cleanup_close_ int fd = -1;
        size_t tl = text ? strlen(text) : 0;
        int r = 0;

        if (cli_make_parent(path, err) < 0)
                return cta_error_wrap(err, "known_nodes");
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "open '%s'", path);
        if (tl > 0 && text[tl - 1] != '\n')
                (void)cta_buf_putc(&b, '\n');
        put_entry(&b, key, fp);
        for (size_t off = 0; off < b.len;) {
                ssize_t n = write(fd, b.data + off, b.len - off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = cta_error_errno(err, CTA_E_IO, "write '%s'", path);
                        break;
                }
                off += (size_t)n;
        }
        cta_buf_done(&b);
        return r;
}

int cli_kn_check(const char *path, const char *key, const char *fp, bool replace,
                 bool *ret_added, bool *ret_replaced, struct cta_error **err)
{
        _cleanup_free_ char *text = NULL, *pinned = NULL;
        _cleanup_(cta_error_freep) struct cta_error *rerr = NULL;
        unsigned line = 0;
        int r;

        if (!cli_kn_fingerprint_valid(fp))
                return cta_error_set(err, CTA_E_TLS, 0, "the node sent a malformed fingerprint");
        r = cta_read_file(path, KN_FILE_MAX, &text, NULL, &rerr);
        if (r < 0) {
                if (rerr->sys_errno != ENOENT) {
                        if (err)
                                *err = TAKE_PTR(rerr);
                        return r;
                }
                text = cta_xstrdup("");
        }

        switch (cli_kn_lookup(text, key, fp, &line, &pinned)) {
        case CLI_KN_MATCH:
                if (ret_added)
                        *ret_added = false;
                if (ret_replaced)
                        *ret_replaced = false;
                return 0;
        case CLI_KN_UNKNOWN:
                r = append_entry(path, text, key, fp, err);
                if (r < 0)
                        return r;
                if (ret_added)
                        *ret_added = true;
                if (ret_replaced)
                        *ret_replaced = false;
                return 0;
        case CLI_KN_MISMATCH:
                break;
        }
        if (!replace)
                return cta_error_set(
                        err, CTA_E_PEER_CHANGED, 0,
                        "the certificate of node %s has CHANGED: it is now %s, but %s was pinned "
                        "(%s line %u). This may be an attack on the connection, or the node's "
                        "certificate was replaced. If you know it was replaced, remove line %u "
                        "from %s, or pass --fingerprint with the new fingerprint after checking it "
                        "on the node",
                        key, fp, pinned, path, line, line, path);

        _cleanup_free_ char *updated = cli_kn_set(text, key, fp);
        if (cli_make_parent(path, err) < 0)
                return cta_error_wrap(err, "known_nodes");
        r = cta_write_file_atomic(path, updated, strlen(updated), 0600, err);
        if (r < 0)
                return r;
        if (ret_added)
                *ret_added = false;
        if (ret_replaced)
                *ret_replaced = true;
        return 0;
}
