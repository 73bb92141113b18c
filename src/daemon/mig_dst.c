/*
 * The destination side of a migration: operator ctamig
 * (docs/migration-protocol.md). The source drives; we check, receive into a
 * staging area of our own, and commit only when told, journaling each step
 * so a crash leaves a state that cta_mig_recover() can finish or undo.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "ct/ct.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/envm.h"
#include "daemon/mig.h"
#include "migrate/stream.h"
#include "net/conn.h"
#include "proto/frame.h"
#include "proto/xml.h"
#include "store/store.h"
#include "util/base64.h"
#include "util/log.h"
#include "util/util.h"

#define SPACE_MARGIN_BYTES (64ull << 20)
#define SPACE_MARGIN_INODES 1000ull

enum dst_state { D_CHECKED, D_STREAMING, D_STREAMED, D_DONE };

/* One incoming migration. Owned by the list below; its session pointer is
 * only touched on the loop thread. */
struct mig_dst {
        struct mig_dst *next;
        struct cta_daemon *d;
        struct cta_session *s;
        char id[37], token[65], eid[37];
        uint64_t veid;
        uint64_t decl_bytes, decl_inodes; /* what hello declared: the stream may not exceed it */
        char *private_path, *parent, *staging_name;
        bool force_used;
        bool have;       /* staging holds a copy (earlier, or the last pass's): a have summary */
        unsigned streams; /* streams received: a second one follows a copy made while the
                           * container ran (the source's pre-copy) */
        char *base_from; /* that copy's own path (a retired .migrated area), to give back */
        char *lineage;   /* the migration that left the copy in the staging area, or NULL */
        struct timespec retired_at; /* a retired copy's: when it was retired ({0}: unknown) */
        struct timespec arrival; /* the end of the last stream: the mark this node keeps
                                  * when it commits (CTA_MARK_ARRIVED), see arrival_mark() */
        uint32_t bm_tag; /* our own random tag on the block maps of the files we write */
        bool then_have;  /* the source asks for a summary right after this stream */
        bool zstd;       /* this stream's frames carry one zstd stream */
        int next_have_fd; /* ... built at its end (a memfd), or -1 */
        uint64_t next_have_entries;
        enum dst_state state;
        /* (loop thread) */
        bool in_commit;  /* between commit's prepare and its finish */
        bool fenced;     /* the source asked status while it was open: it never commits */
        struct cta_chanq *q;
        struct cta_mig_stats stats;
};

static pthread_mutex_t dst_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mig_dst *dst_list;

static struct mig_dst *dst_find(const char *id)
{
        struct mig_dst *m;
        pthread_mutex_lock(&dst_mu);
        for (m = dst_list; m; m = m->next)
                if (strcasecmp(m->id, id) == 0)
                        break;
        pthread_mutex_unlock(&dst_mu);
        return m;
}

static void drop_prepared_have(const char *eid); /* (prepare, below) */
static int prepare_have(int dirfd, const char *bmdir, bool warm, const struct timespec *since,
                        uint64_t *entries, uint64_t *touched);

static void dst_unlink_free(struct mig_dst *m)
{
        pthread_mutex_lock(&dst_mu);
        for (struct mig_dst **pp = &dst_list; *pp; pp = &(*pp)->next)
                if (*pp == m) {
                        *pp = m->next;
                        break;
                }
        pthread_mutex_unlock(&dst_mu);
        drop_prepared_have(m->eid);
        if (m->next_have_fd >= 0)
                close(m->next_have_fd);
        cta_chanq_free(m->q);
        free(m->private_path);
        free(m->parent);
        free(m->staging_name);
        free(m->base_from);
        free(m->lineage);
        free(m);
}

/* Journal the migration's step; "checked" (it names the kept copy taken as the staging
 * area) and "committing" are checked by their callers: recovery must see them. */
static int journal(struct cta_daemon *d, struct mig_dst *m, const char *state,
                   const char *extra, struct cta_error **err)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        char veid[24];

        snprintf(veid, sizeof(veid), "%" PRIu64, m->veid);
        cta_kv_add(&b, "token", m->token);
        cta_kv_add(&b, "veid", veid);
        cta_kv_add(&b, "private", m->private_path);
        cta_kv_add(&b, "parent", m->parent);
        cta_kv_add(&b, "staging", m->staging_name);
        cta_kv_add(&b, "base_from", m->base_from);
        if (extra)
                (void)cta_buf_puts(&b, extra);
        return cta_mig_journal(d, m->id, CTA_MIG_ROLE_DST, m->eid, NULL, state, b.data, err);
}

/* The staging area of a migration that did not commit: a reused earlier
 * copy goes back where it came from (it is the user's kept data); a kept
 * one stays for a retry when configured; otherwise it is removed. */
void cta_mig_drop_staging(struct cta_daemon *d, const char *eid, const char *parent,
                          const char *name, const char *base_from, bool keep)
{
        if (!parent || !name)
                return;
        _cleanup_free_ char *path = cta_xasprintf("%s/%s", parent, name);
        struct stat st;
        if (lstat(path, &st) < 0)
                return;
        if (base_from && *base_from) {
                if (rename(path, base_from) == 0) {
                        cta_mig_note_set(d, "retired", eid, base_from);
                        log_notice("gave the earlier copy back to %s", base_from);
                        return;
                }
                log_error("cannot give %s back to %s: %m", path, base_from);
                return; /* never delete the user's kept copy */
        }
        if (keep) {
                log_notice("keeping staging area %s for a retry", path);
                return;
        }
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        if (cta_ct_private_remove(cta_envm_backend(d), path, &err) < 0)
                log_error("remove staging area %s: %s", path, cta_error_msg(err));
}

/* Seed the staging area from what this node already has of the container:
 * a staging area kept from a failed attempt, or the private area it left
 * behind (renamed .migrated) when it migrated away from here. The lineage
 * says which migration left that copy (the source may hold its mark).
 * This half only decides: m->base_from names the kept copy to take, which
 * seed_apply() moves once the journal says where it came from. */
static void seed_prepare(struct cta_daemon *d, struct mig_dst *m)
{
        _cleanup_free_ char *staging = cta_xasprintf("%s/%s", m->parent, m->staging_name);
        _cleanup_free_ char *retired = NULL;
        struct stat st, pst;

        if (lstat(staging, &st) == 0) {
                if (d->cfg->keep_staging && S_ISDIR(st.st_mode)) {
                        m->have = true;
                        m->lineage = cta_mig_note(d, "staging-lineage", m->eid);
                        log_notice("migration %s: resuming from the kept staging area", m->id);
                        return;
                }
                cta_mig_drop_staging(d, m->eid, m->parent, m->staging_name, NULL, false);
        }
        /* (where the private area went when the container left this node: "retired") */
        if (!(retired = cta_mig_note(d, "retired", m->eid)))
                return;
        /* Only a copy on the same file system can become the staging area by
         * a rename; anything else stays where it is. */
        if (lstat(retired, &st) < 0 || !S_ISDIR(st.st_mode) || stat(m->parent, &pst) < 0 ||
            st.st_dev != pst.st_dev)
                return;
        m->base_from = TAKE_PTR(retired);
}

/* The user's kept copy becomes the staging area (journaled "checked" with base_from
 * first: a crash recovery gives it back, a failure's undo too). */
static void seed_apply(struct cta_daemon *d, struct mig_dst *m)
{
        if (!m->base_from)
                return;
        _cleanup_free_ char *staging = cta_xasprintf("%s/%s", m->parent, m->staging_name);
        if (rename(m->base_from, staging) < 0) {
                log_warning("migration %s: cannot reuse %s: %m", m->id, m->base_from);
                free(m->base_from);
                m->base_from = NULL;
                (void)journal(d, m, "checked", NULL, NULL);
                return;
        }
        cta_mig_note_set(d, "retired", m->eid, "");
        m->have = true;
        char lin[37];
        if (cta_mig_mark_read(d, CTA_MARK_RETIRED, m->eid, lin, &m->retired_at))
                m->lineage = cta_xstrdup(lin);
        log_notice("migration %s: starting from this node's earlier copy %s", m->id,
                   m->base_from);
}

/* ---- small XML helpers for our own calls ------------------------------- */

static const char *arg(const struct cta_call *call, const char *name)
{
        return cta_xnode_ctext(call->req->call_node, name);
}

static int arg_u64(const struct cta_call *call, const char *name, uint64_t max, uint64_t *ret,
                   bool required, struct cta_error **err)
{
        const char *v = arg(call, name);
        if (!v || !*v) {
                if (required)
                        return cta_error_set(err, CTA_E_BAD_PARAM, 0, "ctamig: %s is missing",
                                             name);
                *ret = 0;
                return 0;
        }
        if (cta_parse_u64(v, max, ret) < 0)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "ctamig: %s is not a number",
                                     name);
        return 0;
}

static int arg_uuid(const struct cta_call *call, const char *name, char out[37],
                    struct cta_error **err)
{
        const char *v = arg(call, name);
        if (!v || !cta_uuid_valid(v))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "ctamig: %s is not a uuid", name);
        for (size_t i = 0; i <= 36; i++)
                out[i] = (char)tolower((unsigned char)v[i]);
        return 0;
}

/* A base64 text argument, bounded; NULL when absent. */
static char *arg_b64(const struct cta_call *call, const char *name, size_t max)
{
        const char *v = arg(call, name);
        if (!v)
                return NULL;
        char *out = cta_xmalloc(max + 1);
        if (cta_b64_decode_str(v, strlen(v), out, max + 1) < 0) {
                free(out);
                return NULL;
        }
        return out;
}

/* ---- hello: every check at once ----------------------------------------- */

static bool path_ok(const char *p)
{
        if (!p || p[0] != '/' || strlen(p) > 4000 || streq(p, "/"))
                return false;
        for (const char *c = p; *c; c++)
                if ((unsigned char)*c < 0x20)
                        return false;
        return !strstr(p, "/../") && !strstr(p, "/./") &&
               !(strlen(p) >= 3 && streq(p + strlen(p) - 3, "/.."));
}

/* The file system must keep user xattrs and POSIX ACLs: try both on a
 * scratch file next to where the private area will live. */
static const char *fs_check(const char *dir)
{
        _cleanup_free_ char *path = cta_xasprintf("%s/.cta-fscheck-%d", dir, (int)gettid());
        _cleanup_close_ int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW,
                                      0600);
        const char *problem = NULL;
        /* An ACL with user::rw- group::r-- other::r-- (version 2 xattr format). */
        static const uint8_t acl[] = { 2, 0, 0, 0,  1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
                                       4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
                                       0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff };
        if (fd < 0)
                return "cannot create files in the private area's directory";
        if (fsetxattr(fd, "user.ctagent.check", "1", 1, 0) < 0)
                problem = "the file system does not support user extended attributes";
        else if (fsetxattr(fd, "system.posix_acl_access", acl, sizeof(acl), 0) < 0)
                problem = "the file system does not support POSIX ACLs";
        (void)unlink(path);
        return problem;
}

struct hello_ctx {
        struct mig_dst *m;
        struct cta_buf problems;   /* never overridable */
        struct cta_buf warnings;   /* overridable by force */
        bool space_only;
};

static void hello_ctx_free(void *p)
{
        struct hello_ctx *h = p;
        if (!h)
                return;
        if (h->m) /* (not listed, no queue or fd yet) */
                free(h->m->private_path), free(h->m->parent), free(h->m->staging_name),
                        free(h->m->base_from), free(h->m->lineage), free(h->m);
        cta_buf_done(&h->problems);
        cta_buf_done(&h->warnings);
        free(h);
}

static int mig_hello(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct hello_ctx *h = cta_xcalloc(1, sizeof(*h));
        struct cta_ct_row row = { 0 };
        uint64_t vmin, vmax, bytes, inodes, veid, force;
        int r;

        call->ctx = h;
        call->ctx_free = hello_ctx_free;
        cta_buf_init(&h->problems, 1 << 16);
        cta_buf_init(&h->warnings, 1 << 16);
        struct mig_dst *m = h->m = cta_xcalloc(1, sizeof(*m));
        m->next_have_fd = -1;
        m->d = d;
        if ((r = arg_uuid(call, "id", m->id, err)) < 0 ||
            (r = arg_uuid(call, "eid", m->eid, err)) < 0 ||
            (r = arg_u64(call, "version_min", 1000, &vmin, true, err)) < 0 ||
            (r = arg_u64(call, "version_max", 1000, &vmax, true, err)) < 0 ||
            (r = arg_u64(call, "veid", INT32_MAX, &veid, true, err)) < 0 ||
            (r = arg_u64(call, "bytes", UINT64_MAX / 4, &bytes, true, err)) < 0 ||
            (r = arg_u64(call, "inodes", UINT64_MAX / 4, &inodes, true, err)) < 0 ||
            (r = arg_u64(call, "force", 1, &force, false, err)) < 0)
                return r;
        if (vmin > CTA_MIG_PROTO_MAX || vmax < CTA_MIG_PROTO_MIN)
                return cta_error_set(err, CTA_E_MIG_VERSION, 0,
                                     "no common migration protocol version (source %" PRIu64
                                     "..%" PRIu64 ", destination %d..%d)",
                                     vmin, vmax, CTA_MIG_PROTO_MIN, CTA_MIG_PROTO_MAX);
        if (dst_find(m->id))
                return cta_error_set(err, CTA_E_BUSY, 0, "migration %s is already open", m->id);
        m->veid = veid;
        m->decl_bytes = bytes;
        m->decl_inodes = inodes;
        _cleanup_free_ char *name = arg_b64(call, "name", 255);
        _cleanup_free_ char *priv = arg_b64(call, "private", 4000);
        if (priv && !path_ok(priv))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "ctamig: the destination private path must be absolute, "
                                     "without '..'");
        char veid_s[24];
        snprintf(veid_s, sizeof(veid_s), "%" PRIu64, veid);
        m->private_path = priv ? TAKE_PTR(priv)
                               : cta_xasprintf("%s/%s", cta_envm_private_root(d), veid_s);
        _cleanup_free_ char *pcopy = cta_xstrdup(m->private_path);
        m->parent = cta_xstrdup(dirname(pcopy));
        /* Per container, not per attempt: a retry finds a kept staging area. */
        m->staging_name = cta_xasprintf(".cta-staging-%s", m->eid);

        /* Never overridable: what would make two containers one. */
        if (cta_store_ct_get(d->store, m->eid, &row, NULL) == 0) {
                (void)cta_buf_printf(&h->problems, "container %s already exists on this node\n",
                                     m->eid);
                cta_ct_row_done(&row);
        }
        if (cta_store_ct_get_by_veid(d->store, veid, &row, NULL) == 0) {
                (void)cta_buf_printf(&h->problems, "veid %" PRIu64 " is used by container %s\n",
                                     veid, row.eid);
                cta_ct_row_done(&row);
        }
        if (name && *name && cta_store_ct_get_by_name(d->store, name, &row, NULL) == 0) {
                _cleanup_free_ char *n = cta_sanitize(name, 64);
                (void)cta_buf_printf(&h->problems, "name '%s' is used by container %s\n", n,
                                     row.eid);
                cta_ct_row_done(&row);
        }
        struct stat st;
        if (lstat(m->private_path, &st) == 0)
                (void)cta_buf_printf(&h->problems, "private area %s already exists\n",
                                     m->private_path);
        if (cta_mkdir_p(m->parent, 0700, NULL) < 0)
                (void)cta_buf_printf(&h->problems, "cannot create %s\n", m->parent);

        /* Overridable with force. */
        struct statvfs vfs;
        if (statvfs(m->parent, &vfs) == 0) {
                uint64_t need_b = bytes + bytes / 10 + SPACE_MARGIN_BYTES;
                uint64_t need_i = inodes + inodes / 10 + SPACE_MARGIN_INODES;
                uint64_t free_b = (uint64_t)vfs.f_bavail * vfs.f_frsize;
                if (free_b < need_b)
                        (void)cta_buf_printf(&h->warnings,
                                             "not enough free space: %" PRIu64 " bytes free, %" PRIu64
                                             " needed (with margin)\n",
                                             free_b, need_b);
                if (vfs.f_files && vfs.f_favail < need_i)
                        (void)cta_buf_printf(&h->warnings,
                                             "not enough free inodes: %" PRIu64 " free, %" PRIu64
                                             " needed (with margin)\n",
                                             (uint64_t)vfs.f_favail, need_i);
                h->space_only = h->warnings.len > 0;
        }
        for (const struct cta_xnode *ip = cta_xnode_child(call->req->call_node, "ip"); ip;
             ip = cta_xnode_next_named(ip)) {
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                const char *one[1] = { cta_xnode_ttext(ip) };
                if (cta_envm_check_ips(d, NULL, one, 1, &e) < 0) {
                        (void)cta_buf_printf(&h->warnings, "%s\n", cta_error_msg(e));
                        h->space_only = false;
                }
        }
        const char *fsp = fs_check(m->parent);
        if (fsp) {
                (void)cta_buf_printf(&h->warnings, "%s\n", fsp);
                h->space_only = false;
        }

        if (h->problems.len || (h->warnings.len && !force)) {
                int code = !h->problems.len && h->space_only ? CTA_E_MIG_NO_SPACE
                                                               : CTA_E_MIG_CHECK;
                return cta_error_set(err, code, 0, "destination checks failed: %s%s",
                                     h->problems.len ? h->problems.data : "",
                                     h->warnings.len ? h->warnings.data : "");
        }
        if (h->warnings.len) {
                log_warning("migration %s: forced past: %s", m->id, h->warnings.data);
                m->force_used = true;
        }
        r = cta_envm_lock(d, m->eid, err);
        if (r < 0)
                return r;
        /* 122 random bits: the secret that lets the source ask status() later. */
        cta_uuid_new(m->token);
        /* not from the id (the source chose that): a file of a kept copy must never look
         * like one this migration wrote */
        while (!m->bm_tag)
                if (getrandom(&m->bm_tag, sizeof(m->bm_tag), 0) != sizeof(m->bm_tag))
                        m->bm_tag = 0;
        m->s = call->s;
        m->state = D_CHECKED;
        seed_prepare(d, m);
        /* (a must: recovery finds the staging area, and the kept copy in it, by this) */
        r = journal(d, m, "checked", NULL, err);
        if (r < 0) {
                cta_envm_unlock(d, m->eid);
                return r;
        }
        seed_apply(d, m);
        pthread_mutex_lock(&dst_mu);
        m->next = dst_list;
        dst_list = m;
        pthread_mutex_unlock(&dst_mu);
        h->m = NULL;
        log_notice("migration %s: container %s (veid %" PRIu64 ") checked, will land in %s",
                   m->id, m->eid, m->veid, m->private_path);

        struct cta_xw *w = cta_call_begin_result(call);
        const char *p = cta_reply_op_prefix(w);
        char qn[80];
        cta_xw_int(w, cta_xw_qname(qn, p, "version"), CTA_MIG_PROTO_MAX);
        cta_xw_text(w, cta_xw_qname(qn, p, "token"), m->token);
        cta_xw_int(w, cta_xw_qname(qn, p, "veid"), (long long)m->veid);
        cta_xw_b64(w, cta_xw_qname(qn, p, "private"), m->private_path,
                   strlen(m->private_path));
        cta_xw_int(w, cta_xw_qname(qn, p, "forced"), m->force_used);
        cta_xw_int(w, cta_xw_qname(qn, p, "have"), m->have);
        /* the migration that left that copy, unvouched (have's reply says whether it was
         * changed since): the source judges by it whether a link probe is worth it */
        if (m->have && m->lineage && *m->lineage)
                cta_xw_text(w, cta_xw_qname(qn, p, "lineage"), m->lineage);
        /* the newest tree-stream format we read (older agents do not say: 2) */
        cta_xw_int(w, cta_xw_qname(qn, p, "stream"), CTA_MIG_STREAM_VERSION);
        /* we take a second stream (have, stream) after the first: the source may copy a
         * running container first and stop it only for what changed (older agents: 1) */
        cta_xw_int(w, cta_xw_qname(qn, p, "passes"), 2);
        /* we read streams compressed with zstd (stream/compress; older agents do not say) */
        cta_xw_text(w, cta_xw_qname(qn, p, "compress"), "zstd");
        return cta_call_end_result(call, err);
}

/* The migration a call names: it must exist, belong to this connection and
 * be in one of the states of want (a mask of 1 << state). */
static int dst_get(struct cta_call *call, unsigned want, struct mig_dst **ret,
                   struct cta_error **err)
{
        char id[37];
        int r = arg_uuid(call, "id", id, err);
        if (r < 0)
                return r;
        struct mig_dst *m = dst_find(id);
        if (!m || m->s != call->s)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "ctamig: no open migration %s on this connection", id);
        if (!(want & (1u << m->state)))
                return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                     "ctamig: migration %s is not ready for %s", id,
                                     call->req->call);
        *ret = m;
        return 0;
}

/* Undo everything of an incoming migration that did not commit. */
static void dst_undo(struct mig_dst *m, const char *why)
{
        struct cta_daemon *d = m->d;
        cta_mig_drop_staging(d, m->eid, m->parent, m->staging_name, m->base_from,
                             d->cfg->keep_staging);
        (void)journal(d, m, "failed", NULL, NULL);
        cta_envm_unlock(d, m->eid);
        log_notice("migration %s: container %s not taken: %s", m->id, m->eid, why);
}

/* ... and forget it. Loop thread: only the loop thread frees a listed migration (status
 * looks migrations up there), and the session's end, which frees what its source left,
 * waits for a serial call still running on it (server.c). */
static void dst_abort(struct mig_dst *m, const char *why)
{
        dst_undo(m, why);
        dst_unlink_free(m);
}

/* ---- stream ---------------------------------------------------------------- */

static ssize_t q_view(void *ctx, size_t want, const uint8_t **ring, size_t *cap, size_t *head)
{
        return cta_chanq_view(ctx, want, ring, cap, head);
}

/* Bytes of the stream being received on this thread (a test fault point). */
static _Thread_local uint64_t tl_released;

static void q_release(void *ctx, size_t n)
{
        cta_chanq_release(ctx, n);
        if ((tl_released += n) > (1u << 20))
                cta_fault_point("dst_mid_receive");
}

static void on_patch(void *ud, const char *path, size_t len)
{
        struct mig_dst *m = ud;
        log_debug("migration %s: patching '%.*s' in place", m->id, (int)len, path);
        cta_fault_point("dst_mid_patch");
}

static void q_abort(void *ctx)
{
        cta_chanq_close(ctx, -CTA_E_CANCELLED);
}

static int mig_stream_prepare(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m;
        /* a second stream after the first: the pass after a pre-copy */
        int r = dst_get(call, 1u << D_CHECKED | 1u << D_STREAMED, &m, err);
        if (r < 0)
                return r;
        if (m->streams >= 2)
                return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                     "ctamig: migration %s already had two streams", m->id);
        if (call->s->binsink)
                return cta_error_set(err, CTA_E_BUSY, 0, "ctamig: a stream is already open");
        m->then_have = arg(call, "then_have") != NULL;
        const char *z = arg(call, "compress");
        if (z && *z && !streq(z, "zstd"))
                return cta_error_set(err, CTA_E_MIG_VERSION, 0,
                                     "ctamig: unknown stream compression '%.32s'", z);
        m->zstd = z && *z;
        if (m->next_have_fd >= 0) { /* a summary of the tree this stream changes */
                close(m->next_have_fd);
                m->next_have_fd = -1;
        }
        if (!m->have) /* a fresh staging area: what a failure keeps there came from us */
                cta_mig_note_set(m->d, "staging-lineage", m->eid, m->id);
        m->q = cta_chanq_new(call->s->conn, m->zstd ? CTA_MIG_ZQUEUE_MAX : CTA_MIG_QUEUE_MAX);
        call->s->binsink = m->q;
        call->s->bin_discard = false;
        m->state = D_STREAMING;
        call->ctx = m;
        (void)journal(m->d, m, "receiving", NULL, NULL);
        return 0;
}

/*
 * The mark the commit records (CTA_MARK_ARRIVED), taken when the receiver is done:
 * every entry's last change here came before it. A file system with nanosecond times
 * (the staging root's times show a fraction) gets the time itself, and the commit waits
 * until CTA_MIG_TICK_MARGIN_NS have passed since, so that nothing after it can be
 * stamped older; one with whole seconds gets the start of the second (an entry stamped
 * in that second then counts as changed).
 */
static void arrival_mark(int pfd, struct mig_dst *m)
{
        struct stat st;
        clock_gettime(CLOCK_REALTIME, &m->arrival);
        if (fstatat(pfd, m->staging_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            (!st.st_ctim.tv_nsec && !st.st_mtim.tv_nsec && !st.st_atim.tv_nsec))
                m->arrival.tv_nsec = 0;
}

/* Before the commit changes anything: see arrival_mark(). */
static void arrival_wait(const struct mig_dst *m)
{
        struct timespec until = m->arrival;
        if (!until.tv_nsec)
                return;
        cta_ts_add_ns(&until, CTA_MIG_TICK_MARGIN_NS);
        (void)clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &until, NULL); /* (past: at once) */
}

static int mig_stream(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m = call->ctx;
        struct cta_daemon *d = m->d;
        /* the receiver reads the queue in place */
        struct cta_mig_io io = { .view = q_view, .release = q_release, .abort = q_abort,
                                 .ctx = m->q };
        /* compressed: decoded on the receiver's reader thread into its own ring */
        _cleanup_(cta_mig_zio_freep) struct cta_mig_zio *z = NULL;
        if (m->zstd) {
                if (cta_mig_zio_decompress(&io, &z, err) < 0)
                        return cta_error_wrap(err, "receive container %s", m->eid);
                io = cta_mig_zio_io(z);
        }
        _cleanup_free_ char *bmdir = cta_mig_blockmap_dir(d);
        /* The free-space check passed for what hello declared: a source that
         * sends more than that (plus the same margin) is lying. */
        struct cta_mig_recv_opts o = {
                .limits = {
                        .max_total_bytes = m->decl_bytes + m->decl_bytes / 10 + SPACE_MARGIN_BYTES,
                        .max_entries = m->decl_inodes + m->decl_inodes / 10 + SPACE_MARGIN_INODES,
                },
                /* A reused earlier copy is never deleted on failure: it goes back. */
                .blockmap_dir = bmdir,
                .keep_on_failure = d->cfg->keep_staging || m->base_from,
                .allow_existing = m->have,
                /* a staging area all our own may be patched where it is (a pre-copy's
                 * second pass writes only the blocks that changed); in a user's kept copy
                 * only the files this migration wrote itself (its first pass) */
                .inplace = !m->base_from,
                .inplace_tag = m->bm_tag,
                .on_patch = on_patch,
                .on_patch_ud = m,
                .cancel = &call->cancelled,
        };
        _cleanup_close_ int pfd = open(m->parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0)
                return cta_error_errno(err, CTA_E_IO, "open '%s'", m->parent);
        struct cta_mig_flusher fl;
        bool flushing = cta_mig_flusher_start(&fl, pfd, CTA_MIG_FLUSH_EVERY_MS) == 0;
        if (flushing)
                o.cached_bytes = &fl.cached;
        /* a job thread ends with its job: the receiver may move its working directory */
        (void)cta_mig_thread_own_cwd();
        tl_released = 0;
        int r = cta_mig_recv(pfd, m->staging_name, &io, &o, &m->stats, err);
        if (flushing)
                cta_mig_flusher_stop(&fl);
        if (r < 0)
                return cta_error_wrap(err, "receive container %s", m->eid);
        cta_fault_point("dst_stream_tail");
        arrival_mark(pfd, m); /* (before the flush: the commit then seldom waits) */
        /* Nothing is committed that is not on disk: once the source hears
         * "committed" it may delete its copy (options/remove), and a power cut
         * a second later must not leave empty files here. One syncfs covers
         * every file, directory and inode of the staging area; the receiver
         * already started writeback of big files while they arrived. */
        uint64_t t0 = cta_now_ms();
        if (syncfs(pfd) < 0)
                return cta_error_errno(err, CTA_E_IO, "flush the received container to disk");
        log_notice("migration %s: received %" PRIu64 " entries, %" PRIu64
                   " data bytes (%" PRIu64 " written direct, %" PRIu64
                   " of them from the stream queue; %" PRIu64 " files patched in place; "
                   "flushed %" PRIu64 " times during the stream; final flush to disk %" PRIu64
                   " ms)",
                   m->id, m->stats.entries, m->stats.data_bytes, m->stats.direct_bytes,
                   m->stats.lent_bytes, m->stats.inplace_files, flushing ? fl.flushes : 0,
                   cta_now_ms() - t0);
        if (z) {
                uint64_t plain, packed;
                cta_mig_zio_counts(z, &plain, &packed);
                log_info("migration %s: zstd: %" PRIu64 " stream bytes arrived as %" PRIu64,
                         m->id, plain, packed);
        }
        if (m->then_have) {
                /* The source stops the container next and asks what we hold now: the
                 * summary is built here, while the container still runs, and not in its
                 * downtime. Nothing touches the staging area in between. */
                uint64_t t1 = cta_now_ms();
                _cleanup_close_ int sfd = openat(pfd, m->staging_name,
                                                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sfd >= 0)
                        m->next_have_fd = prepare_have(sfd, bmdir, false, NULL,
                                                       &m->next_have_entries, NULL);
                log_info("migration %s: summary for the next pass built in %" PRIu64 " ms",
                         m->id, cta_now_ms() - t1);
        }
        return 0;
}

/* Loop thread, after the receiver: success or not. */
static int mig_stream_finish(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m = call->ctx;
        if (call->s->binsink == m->q) {
                call->s->binsink = NULL;
                /* The source may still have frames in flight when we refuse: drop
                 * them quietly so our error reply reaches it, not a closed link. */
                call->s->bin_discard = call->result < 0;
        }
        cta_chanq_close(m->q, -CTA_E_MIG_STREAM);
        if (call->result < 0) {
                /* The receiver already removed (or kept) the staging area. */
                dst_abort(m, cta_error_msg(call->err));
                return call->result;
        }
        m->state = D_STREAMED;
        /* the staging area is a whole copy now: a next pass starts from it */
        m->have = true;
        m->streams++;
        (void)journal(m->d, m, "streamed", NULL, NULL);
        /* The source went away after its last frame (while we flushed): nobody will
         * commit or abort this one, and the session's end left it to us. */
        if (call->s->closed)
                dst_abort(m, "the source went away");
        return 0;
}

int cta_mig_dst_binary(struct cta_session *s, const void *data, size_t len, bool frame_end)
{
        if (!s->binsink)
                return s->bin_discard ? 0 : -CTA_E_PROTO;
        int r = cta_chanq_push(s->binsink, data, len, frame_end);
        /* A closed queue is a stream whose receiver already gave up: its error
         * reply is on the way, so frames still in flight are dropped, not
         * answered by closing the connection. */
        return r == -CTA_E_INVALID ? 0 : r;
}

/* Where the socket may be read straight into the stream's queue: at least min bytes,
 * else NULL (then the bytes come through cta_mig_dst_binary()). */
void *cta_mig_dst_binary_span(struct cta_session *s, size_t min, size_t *len)
{
        *len = 0;
        return s->binsink ? cta_chanq_reserve(s->binsink, min, len) : NULL;
}

void cta_mig_dst_binary_commit(struct cta_session *s, size_t n, bool frame_end)
{
        cta_chanq_commit(s->binsink, n, frame_end);
}

/* ---- have: what the staging area already holds ----------------------------- */

/* The have summary goes back to the source as binary frames, followed by the
 * call's reply; frames wait while the connection's queue is long. */
static ssize_t conn_frame_write(void *ctx, const void *buf, size_t len)
{
        struct cta_conn *c = ctx;
        const char *b = buf;
        while (len) {
                size_t n = len > CTA_BINFRAME_MAX ? CTA_BINFRAME_MAX : len;
                uint8_t hdr[CTA_BINFRAME_HDR];
                while (cta_conn_queued(c) > (8u << 20) && !cta_conn_is_closed(c))
                        usleep(2000);
                cta_binframe_header(hdr, (uint32_t)n);
                if (cta_conn_send(c, hdr, sizeof(hdr)) < 0 || cta_conn_send(c, b, n) < 0)
                        return -CTA_E_MIG_LINK_LOST;
                b += n;
                len -= n;
        }
        return 0;
}

static bool warmed_recently(const char *eid); /* (prepare, below) */
static int take_prepared_have(const char *eid, int dirfd, uint64_t *entries,
                              uint64_t *touched, uint64_t *waited_ms);

/* Send a spooled summary as it is (from its start, wherever its offset is). */
static int send_prepared_have(const struct cta_mig_io *io, int hfd, struct cta_error **err)
{
        _cleanup_free_ char *buf = cta_xmalloc(1u << 20);
        for (off_t off = 0;;) {
                ssize_t n = pread(hfd, buf, 1u << 20, off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return cta_error_errno(err, CTA_E_IO, "read the prepared summary");
                if (n == 0)
                        return 0;
                off += n;
                if (io->write(io->ctx, buf, (size_t)n) < 0)
                        return cta_error_set(err, CTA_E_MIG_LINK_LOST, 0,
                                             "the source went away during the summary");
        }
}

/*
 * The reply after a summary: before the first stream, the migration that left the copy
 * (the lineage; older agents do not say), if nothing changed it since: a retired copy
 * with an entry changed after its retirement (by hand, or by a return that failed half
 * way) is offered without one, and the source trusts sizes and mtimes alone.
 */
static int have_reply(struct cta_call *call, const struct mig_dst *m, uint64_t touched,
                      const struct cta_mig_zio *z, struct cta_error **err)
{
        struct cta_xw *w = cta_call_begin_result(call);
        const char *p = cta_reply_op_prefix(w);
        char qn[80];
        if (z) { /* the summary went compressed: the source reads it through a decoder */
                uint64_t plain, packed;
                cta_xw_text(w, cta_xw_qname(qn, p, "compress"), "zstd");
                cta_mig_zio_counts(z, &plain, &packed);
                log_info("migration %s: zstd: summary of %" PRIu64 " bytes sent as %" PRIu64,
                         m->id, plain, packed);
        }
        bool vouched = m->base_from ? (m->retired_at.tv_sec && !touched) : true;
        if (!m->streams && m->lineage && vouched) {
                cta_xw_text(w, cta_xw_qname(qn, p, "lineage"), m->lineage);
        } else if (!m->streams && m->lineage) {
                log_notice("migration %s: %" PRIu64 " entries of the earlier copy changed since "
                           "it was retired: offered without its lineage",
                           m->id, touched);
        }
        return cta_call_end_result(call, err);
}

/* Summaries compress well (paths, times): a source that compresses its streams asks. */
#define HAVE_ZSTD_LEVEL 1

static int mig_have(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m = call->ctx;
        struct cta_mig_io io = { .write = conn_frame_write, .ctx = call->s->conn };
        _cleanup_(cta_mig_zio_freep) struct cta_mig_zio *z = NULL;
        const char *zs = arg(call, "compress");
        if (zs && streq(zs, "zstd")) {
                if (cta_mig_zio_compress(&io, HAVE_ZSTD_LEVEL, &z, err) < 0)
                        return cta_error_wrap(err, "compress the summary");
                io = cta_mig_zio_io(z);
        }
        struct cta_mig_stats st = { 0 };
        _cleanup_free_ char *staging = cta_xasprintf("%s/%s", m->parent, m->staging_name);
        _cleanup_close_ int fd = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "open '%s'", staging);
        uint64_t entries = 0, waited_ms = 0, touched = 0;
        /* prepare's summary describes the tree before any stream of this migration; the
         * last stream's, the tree it left */
        _cleanup_close_ int hfd = -1;
        const char *when = "built during the source's scan";
        if (m->streams && m->next_have_fd >= 0) {
                hfd = m->next_have_fd;
                m->next_have_fd = -1;
                entries = m->next_have_entries;
                when = "built at the end of the last stream";
        } else if (!m->streams) {
                hfd = take_prepared_have(m->eid, fd, &entries, &touched, &waited_ms);
        }
        if (hfd >= 0) {
                int r = send_prepared_have(&io, hfd, err);
                if (r < 0)
                        return r;
                log_info("migration %s: have summary of %" PRIu64
                         " entries sent (%s; waited %.2f s for it)",
                         m->id, entries, when, (double)waited_ms / 1000);
                return have_reply(call, m, touched, z, err);
        }
        _cleanup_free_ char *bmdir = cta_mig_blockmap_dir(call->s->d);
        /* no warm-up scan beside the walk when prepare did one, or when this is the
         * summary of what the last stream wrote (its inodes are cached) */
        struct cta_mig_have_opts ho = { .blockmap_dir = bmdir,
                                        .no_warm = m->streams || warmed_recently(m->eid) };
        if (m->base_from)
                ho.touched_since = m->retired_at;
        int r = cta_mig_have_build_opts(fd, &ho, &io, &st, err);
        if (r < 0)
                return cta_error_wrap(err, "summarize %s", staging);
        log_info("migration %s: have summary of %" PRIu64 " entries sent", m->id, st.entries);
        return have_reply(call, m, st.touched, z, err);
}

static int mig_have_prepare(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m;
        int r = dst_get(call, 1u << D_CHECKED | 1u << D_STREAMED, &m, err);
        if (r < 0)
                return r;
        if (!m->have)
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "ctamig: this node has no earlier copy of %s", m->eid);
        call->ctx = m;
        return 0;
}

/* ---- commit: the point of no return ---------------------------------------- */

static int mig_commit(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct mig_dst *m = call->ctx;
        struct cta_ct_row row = { 0 };
        const char *ips[8];
        size_t n_ips = 0;
        uint64_t mem, cpu, on_boot, start;
        int r;

        if ((r = arg_u64(call, "memory", UINT64_MAX, &mem, false, err)) < 0 ||
            (r = arg_u64(call, "cpu", 102400, &cpu, false, err)) < 0 ||
            (r = arg_u64(call, "on_boot", 1, &on_boot, false, err)) < 0 ||
            (r = arg_u64(call, "start", 1, &start, false, err)) < 0)
                return r;
        for (const struct cta_xnode *ip = cta_xnode_child(call->req->call_node, "ip");
             ip && n_ips < 8; ip = cta_xnode_next_named(ip))
                ips[n_ips++] = cta_xnode_ttext(ip);
        _cleanup_free_ char *name = arg_b64(call, "name", 255);
        _cleanup_free_ char *hostname = arg_b64(call, "hostname", 255);
        _cleanup_free_ char *desc = arg_b64(call, "description", 4096);
        _cleanup_free_ char *tpl = arg_b64(call, "template", 255);

        /* Journal the row before the rename, so recovery can finish it. */
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        char num[24];
        cta_kv_add(&b, "name", name);
        cta_kv_add(&b, "hostname", hostname);
        cta_kv_add(&b, "description", desc);
        cta_kv_add(&b, "template", tpl);
        snprintf(num, sizeof(num), "%" PRIu64, mem);
        cta_kv_add(&b, "memory", num);
        snprintf(num, sizeof(num), "%" PRIu64, cpu);
        cta_kv_add(&b, "cpu", num);
        cta_kv_add(&b, "on_boot", on_boot ? "1" : "0");
        _cleanup_(cta_buf_donep) struct cta_buf iplist = CTA_BUF_INIT(0);
        for (size_t i = 0; i < n_ips; i++)
                (void)cta_buf_printf(&iplist, "%s%s", i ? "," : "", ips[i]);
        cta_kv_add(&b, "ips", iplist.data ? iplist.data : "");
        /* (journaled now: a crash between the rename and "committed" is finished by
         * recovery, which must start the container as the source asked) */
        bool want_start = start && !m->force_used;
        cta_kv_add(&b, "start", want_start ? "1" : "0");
        r = journal(d, m, "committing", b.data, err);
        if (r < 0)
                return r; /* not committed: the staging area is as it was */

        _cleanup_free_ char *staging = cta_xasprintf("%s/%s", m->parent, m->staging_name);
        arrival_wait(m);
        cta_fault_point("dst_before_rename");
        if (rename(staging, m->private_path) < 0) {
                r = cta_error_errno(err, CTA_E_IO, "move %s into place", staging);
                (void)journal(d, m, "streamed", NULL, NULL);
                return r;
        }
        /* The rename must be on disk before the registry says we own it. */
        {
                _cleanup_close_ int pd = open(m->parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (pd < 0 || fsync(pd) < 0)
                        log_warning("migration %s: cannot flush %s: %m", m->id, m->parent);
        }
        cta_fault_point("dst_after_rename");
        snprintf(row.eid, sizeof(row.eid), "%s", m->eid);
        row.veid = m->veid;
        row.name = name && *name ? name : NULL;
        row.hostname = hostname;
        row.description = desc;
        row.private_path = m->private_path;
        row.os_template = tpl;
        row.on_boot = on_boot;
        r = cta_envm_adopt(d, &row, ips, n_ips, mem, (unsigned)cpu, err);
        if (r < 0) {
                /* Not committed: put the staging area back so abort removes it. */
                if (rename(m->private_path, staging) < 0)
                        log_error("migration %s: cannot move %s back: %m", m->id,
                                  m->private_path);
                (void)journal(d, m, "streamed", NULL, NULL);
                free(row.config_json);
                return cta_error_wrap(err, "register container %s", m->eid);
        }
        free(row.config_json);
        row.config_json = NULL;
        /* From here this node owns the container. "committed" is unfinished
         * on purpose: if we die before the start, recovery starts it. */
        (void)journal(d, m, "committed", b.data, NULL);
        /* If the container goes back to where it came from, that node's retired copy is
         * what arrived here: a later change here moves an entry's ctime past this mark. */
        cta_mig_mark_put(d, CTA_MARK_ARRIVED, m->eid, m->id, &m->arrival);
        cta_mig_note_set(d, "staging-lineage", m->eid, "");
        cta_fault_point("dst_after_commit");
        log_notice("migration %s: container %s committed at %s", m->id, m->eid,
                   m->private_path);

        bool started = false, later = false;
        _cleanup_(cta_error_freep) struct cta_error *serr = NULL;
        if (want_start) {
                int sr = cta_mig_dst_start(d, m->eid, &serr);
                started = sr > 0;
                /* A registry that cannot take the start now: tried again (the journal
                 * stays "committed", so a restart meanwhile starts it too). */
                later = sr == -CTA_E_STORE;
                if (later)
                        (void)cta_error_wrap(&serr, "the agent starts it when its registry "
                                                    "can be written");
                if (sr < 0)
                        log_error("migration %s: container %s did not start: %s", m->id,
                                  m->eid, cta_error_msg(serr));
        }
        if (later)
                cta_mig_start_later(d, m->id, m->eid);
        else
                (void)journal(d, m, "done", b.data, NULL);
        m->state = D_DONE;
        struct cta_xw *w = cta_call_begin_result(call);
        const char *p = cta_reply_op_prefix(w);
        char qn[80];
        cta_xw_int(w, cta_xw_qname(qn, p, "started"), started);
        if (serr)
                cta_xw_text(w, cta_xw_qname(qn, p, "start_error"), cta_error_msg(serr));
        return cta_call_end_result(call, err);
}

static int mig_commit_prepare(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m;
        int r = dst_get(call, 1u << D_STREAMED, &m, err);
        if (r < 0)
                return r;
        /* (status sets fenced on this thread too: one of the two comes first) */
        if (m->fenced)
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "ctamig: migration %s was given up by its source (it "
                                     "asked for its status): it cannot commit",
                                     m->id);
        call->ctx = m;
        m->in_commit = true;
        return 0;
}

static int mig_commit_finish(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m = call->ctx;
        (void)err;
        m->in_commit = false;
        if (m->state == D_DONE) {
                cta_envm_unlock(m->d, m->eid);
                dst_unlink_free(m);
        }
        return call->result;
}

/* ---- abort, status ---------------------------------------------------------- */

/* Loop thread: which migration, and a stream's end at once; the rest is the job's. */
static int mig_abort_prepare(struct cta_call *call, struct cta_error **err)
{
        char id[37];
        int r = arg_uuid(call, "id", id, err);
        if (r < 0)
                return r;
        struct mig_dst *m = dst_find(id);
        if (!m || m->s != call->s)
                return 0; /* nothing of it here: aborting is idempotent */
        if (m->state == D_STREAMING) {
                /* The receiver fails, removes the staging area and finishes. */
                cta_chanq_close(m->q, -CTA_E_CANCELLED);
                return 0;
        }
        if (m->state == D_DONE)
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "ctamig: migration %s is already committed", id);
        call->ctx = m;
        return 0;
}

static int mig_abort(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m = call->ctx;
        (void)err;
        if (m)
                dst_undo(m, "aborted by the source");
        return 0;
}

static int mig_abort_finish(struct cta_call *call, struct cta_error **err)
{
        struct mig_dst *m = call->ctx;
        (void)err;
        if (m)
                dst_unlink_free(m);
        return call->result;
}

/* ---- probe: how fast the link carries a stream ------------------------- */

/* A source that chooses compression by the link's speed times a few MiB of binary
 * frames between <probe><state>begin</state></probe> and ...end: we drop them and
 * answer each call at once (inline, on the loop thread: in order with the frames). */
static int mig_probe(struct cta_call *call, struct cta_error **err)
{
        const char *st = arg(call, "state");
        bool begin = st && streq(st, "begin");
        if (!begin && !(st && streq(st, "end")))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "ctamig: probe state must be begin or end");
        if (call->s->binsink)
                return cta_error_set(err, CTA_E_BUSY, 0, "ctamig: a stream is open");
        call->s->bin_discard = begin;
        return 0;
}

/* ---- prepare: warm and summarize an earlier copy ----------------------- */

/* A source about to migrate a container here says so before it scans its own
 * tree: if this node has an earlier copy of it (it left from here), reading
 * that copy's inodes and xattrs starts now, in parallel with the source's
 * scan, and so does writing its have summary into a memfd. `have`, after
 * hello, then sends that summary instead of walking the tree while the
 * source waits (with its container stopped, on a live migration). Nothing
 * changes on disk or in the registry; one warm-up at a time per node. */
static atomic_bool g_warming;
/* The container whose copy is being or was last warmed, when that ended (0: still
 * running), and the summary it built (a memfd, or -1) of the tree whose root was
 * (have_dev, have_ino). Guarded by g_warm_mu; g_warm_cv signals the end. */
static pthread_mutex_t g_warm_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_warm_cv = PTHREAD_COND_INITIALIZER;
static char g_warm_eid[37];
static uint64_t g_warm_end_ms;
static int g_have_fd = -1;
static dev_t g_have_dev;
static ino_t g_have_ino;
static uint64_t g_have_entries, g_have_touched;
#define WARM_FRESH_MS (5u * 60 * 1000)
/* A prepared summary larger than this is dropped; `have` then builds it as it goes. */
#define PREPARED_HAVE_MAX (64u << 20)
/* How long `have` waits for a prepared summary still being built. */
#define PREPARED_HAVE_WAIT_MS (60u * 1000)

struct warm_job {
        char *path, *bmdir;
        struct timespec since; /* count what changed since (the copy's retirement) */
};

struct capped_fd {
        int fd;
        uint64_t written;
};

static ssize_t capped_write(void *ctx, const void *buf, size_t len)
{
        struct capped_fd *c = ctx;
        if (c->written + len > PREPARED_HAVE_MAX)
                return -CTA_E_TOO_LARGE;
        ssize_t r = cta_mig_fd_io_ops.write((void *)(intptr_t)c->fd, buf, len);
        if (r >= 0)
                c->written += len;
        return r;
}

/* The summary of the tree at dirfd into a new memfd, or -1; *touched: entries changed
 * since *since (if given). */
static int prepare_have(int dirfd, const char *bmdir, bool warm, const struct timespec *since,
                        uint64_t *entries, uint64_t *touched)
{
        int fd = memfd_create("ctagent-have", MFD_CLOEXEC);
        if (fd < 0)
                return -1;
        struct capped_fd cf = { .fd = fd };
        struct cta_mig_io io = { .write = capped_write, .ctx = &cf };
        /* for a cold tree (warm), with its own warm-up beside the walk: the two together
         * take the time of the slower, where warming first and walking after took the
         * sum (and the source's scan is over before the sum) */
        struct cta_mig_have_opts ho = { .blockmap_dir = bmdir, .no_warm = !warm };
        if (since)
                ho.touched_since = *since;
        struct cta_mig_stats st = { 0 };
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        if (cta_mig_have_build_opts(dirfd, &ho, &io, &st, &err) < 0) {
                log_info("no summary ahead of time: %s", cta_error_msg(err));
                close(fd);
                return -1;
        }
        *entries = st.entries;
        if (touched)
                *touched = st.touched;
        return fd;
}

static void warm_work(void *arg)
{
        struct warm_job *j = arg;
        int hfd = -1;
        uint64_t entries = 0, touched = 0;
        struct stat st;
        int fd = open(j->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
                if (fstat(fd, &st) == 0)
                        hfd = prepare_have(fd, j->bmdir, true, &j->since, &entries, &touched);
                close(fd);
        }
        pthread_mutex_lock(&g_warm_mu);
        if (hfd >= 0) {
                g_have_fd = hfd;
                g_have_dev = st.st_dev;
                g_have_ino = st.st_ino;
                g_have_entries = entries;
                g_have_touched = touched;
        }
        g_warm_end_ms = cta_now_ms();
        pthread_cond_broadcast(&g_warm_cv);
        pthread_mutex_unlock(&g_warm_mu);
}

static void warm_done(void *arg)
{
        struct warm_job *j = arg;
        free(j->path);
        free(j->bmdir);
        free(j);
        atomic_store(&g_warming, false);
}

/* Was eid's earlier copy warmed just now (or is it being warmed)? */
static bool warmed_recently(const char *eid)
{
        pthread_mutex_lock(&g_warm_mu);
        bool r = streq(g_warm_eid, eid) &&
                 (!g_warm_end_ms || cta_now_ms() - g_warm_end_ms < WARM_FRESH_MS);
        pthread_mutex_unlock(&g_warm_mu);
        return r;
}

/*
 * The summary prepare built of eid's earlier copy, if it is the tree at dirfd (the
 * same root inode: hello renames that copy into the staging area) and fresh: a memfd
 * that the caller now owns, or -1. Waits for a build still running. Each
 * summary is used once: the stream that follows changes the tree it describes.
 */
static int take_prepared_have(const char *eid, int dirfd, uint64_t *entries,
                              uint64_t *touched, uint64_t *waited_ms)
{
        struct stat st;
        if (fstat(dirfd, &st) < 0)
                return -1;
        int fd = -1;
        pthread_mutex_lock(&g_warm_mu);
        uint64_t t0 = cta_now_ms(), until = t0 + PREPARED_HAVE_WAIT_MS;
        while (streq(g_warm_eid, eid) && !g_warm_end_ms && cta_now_ms() < until) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&g_warm_cv, &g_warm_mu, &ts);
        }
        if (streq(g_warm_eid, eid) && g_warm_end_ms && g_have_fd >= 0 &&
            cta_now_ms() - g_warm_end_ms < WARM_FRESH_MS && g_have_dev == st.st_dev &&
            g_have_ino == st.st_ino) {
                fd = g_have_fd;
                *entries = g_have_entries;
                *touched = g_have_touched;
                g_have_fd = -1;
        }
        pthread_mutex_unlock(&g_warm_mu);
        *waited_ms = cta_now_ms() - t0;
        return fd;
}

/* A migration of eid ended: a summary it did not use is of no use to a later one. */
static void drop_prepared_have(const char *eid)
{
        pthread_mutex_lock(&g_warm_mu);
        if (streq(g_warm_eid, eid) && g_warm_end_ms && g_have_fd >= 0) {
                close(g_have_fd);
                g_have_fd = -1;
        }
        pthread_mutex_unlock(&g_warm_mu);
}

static int mig_prepare(struct cta_call *call, struct cta_error **err)
{
        char eid[37];
        int r = arg_uuid(call, "eid", eid, err);
        if (r < 0)
                return r;
        char *retired = cta_mig_note(call->s->d, "retired", eid);
        if (!retired || atomic_exchange(&g_warming, true)) {
                free(retired);
                return 0;
        }
        struct warm_job *j = cta_xcalloc(1, sizeof(*j));
        j->path = retired;
        j->bmdir = cta_mig_blockmap_dir(call->s->d);
        char lin[37];
        if (!cta_mig_mark_read(call->s->d, CTA_MARK_RETIRED, eid, lin, &j->since))
                j->since = (struct timespec){ 0 };
        pthread_mutex_lock(&g_warm_mu);
        snprintf(g_warm_eid, sizeof(g_warm_eid), "%s", eid);
        g_warm_end_ms = 0;
        if (g_have_fd >= 0)
                close(g_have_fd); /* another container's, or an older one of this */
        g_have_fd = -1;
        pthread_mutex_unlock(&g_warm_mu);
        if (cta_job_spawn(call->s->d, warm_work, warm_done, j) < 0) {
                pthread_mutex_lock(&g_warm_mu);
                g_warm_eid[0] = 0;
                pthread_mutex_unlock(&g_warm_mu);
                warm_done(j);
        }
        return 0;
}

static bool token_eq(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);
        unsigned char diff = (unsigned char)(la != lb);
        for (size_t i = 0; i < la && i < lb; i++)
                diff |= (unsigned char)(a[i] ^ b[i]);
        return diff == 0;
}

/* Pre-auth with the migration's token: the source may have lost its
 * credentials (a one-time pass is gone) when it needs to ask. */
static int mig_status(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct cta_mig_row row = { 0 };
        char id[37];
        int r = arg_uuid(call, "id", id, err);
        if (r < 0)
                return r;
        const char *token = arg(call, "token");
        if (cta_store_mig_get(d->store, id, &row, NULL) < 0)
                return cta_error_set(err, CTA_E_AUTH_FAILED, 0, "ctamig: unknown migration or token");
        _cleanup_free_ char *want = cta_kv_get(row.detail, "token");
        bool ok = token && want && token_eq(token, want) && streq(row.role, CTA_MIG_ROLE_DST);
        const char *state = streq(row.state, "done") || streq(row.state, "committed")
                                    ? "committed"
                            : streq(row.state, "committing") ? "committing"
                            : streq(row.state, "failed") ? "aborted"
                                                          : "open";
        if (ok && streq(state, "open")) {
                /* A source asks when it gave the migration up or lost the commit's reply.
                 * A commit in flight may still land: "committing", ask again. One not
                 * begun never will (commit's prepare runs on this thread too): the answer
                 * "open" then means "not committed, and it will not be". */
                struct mig_dst *m = dst_find(id);
                if (m && m->in_commit)
                        state = "committing";
                else if (m)
                        m->fenced = true;
        }
        struct cta_ct_row ct = { 0 };
        bool running = cta_store_ct_get(d->store, row.ct_eid, &ct, NULL) == 0 &&
                       ct.state == CTA_CT_RUNNING;
        cta_ct_row_done(&ct);
        cta_mig_row_done(&row);
        if (!ok)
                return cta_error_set(err, CTA_E_AUTH_FAILED, 0, "ctamig: unknown migration or token");
        struct cta_xw *w = cta_call_begin_result(call);
        char qn[80];
        cta_xw_text(w, cta_xw_qname(qn, cta_reply_op_prefix(w), "state"), state);
        cta_xw_int(w, cta_xw_qname(qn, cta_reply_op_prefix(w), "running"), running);
        return cta_call_end_result(call, err);
}

void cta_mig_dst_session_closed(struct cta_session *s)
{
        for (;;) {
                struct mig_dst *m = NULL;
                pthread_mutex_lock(&dst_mu);
                for (struct mig_dst *i = dst_list; i; i = i->next)
                        if (i->s == s && i->state != D_STREAMING && i->state != D_DONE) {
                                m = i;
                                break;
                        }
                for (struct mig_dst *i = dst_list; i; i = i->next)
                        if (i->s == s && i->state == D_STREAMING)
                                cta_chanq_close(i->q, -CTA_E_MIG_LINK_LOST);
                pthread_mutex_unlock(&dst_mu);
                if (!m)
                        break;
                dst_abort(m, "the source went away");
        }
        s->binsink = NULL;
}

const struct cta_handler cta_mig_dst_handlers[] = {
        { "ctamig", "prepare", CTA_H_SERIAL, mig_prepare, NULL, NULL },
        { "ctamig", "hello", CTA_H_SERIAL, mig_hello, NULL, NULL },
        { "ctamig", "probe", 0, mig_probe, NULL, NULL },
        { "ctamig", "stream", CTA_H_BACKGROUND, mig_stream, mig_stream_finish,
          mig_stream_prepare },
        { "ctamig", "have", CTA_H_SERIAL, mig_have, NULL, mig_have_prepare },
        { "ctamig", "commit", CTA_H_SERIAL, mig_commit, mig_commit_finish, mig_commit_prepare },
        { "ctamig", "abort", CTA_H_SERIAL, mig_abort, mig_abort_finish, mig_abort_prepare },
        { "ctamig", "status", CTA_H_PREAUTH, mig_status, NULL, NULL },
        { NULL, NULL, 0, NULL, NULL, NULL },
};
