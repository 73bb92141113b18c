/*
 * The source side of a migration: relocator/migrate_v2v (also vzarelocator).
 *
 * The container stays whole here until the destination has committed it.
 * Each step is journaled before it is taken; a failure before the commit
 * rolls both sides back, a failure after it only means retiring our copy,
 * and a lost reply to the commit itself leaves the container stopped and
 * marked "migrating" here until the destination tells us (status) who owns
 * it — never zero owners, never two.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ct/ct.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/envm.h"
#include "daemon/mig.h"
#include "migrate/stream.h"
#include "net/client.h"
#include "proto/frame.h"
#include "proto/xml.h"
#include "store/store.h"
#include "util/base64.h"
#include "util/log.h"
#include "util/util.h"

#define PEER_TIMEOUT_MS 60000
/* The commit's reply lost: ask this often before the call answers; mig_doubt.c asks on. */
#define STATUS_RETRIES 5
#define STATUS_RETRY_MS 2000
#define PROGRESS_EVERY_MS 500

/* ---- a connection to the destination agent ------------------------------- */

struct peer {
        struct cta_client *c;
        struct cta_framer fr;
        int bin_fd; /* where binary frames from the peer go (the have summary), or -1 */
        unsigned next_id;
        char host[256];
        uint16_t port;
        bool tls;
};

static void peer_close(struct peer *p)
{
        p->c = cta_client_free(p->c);
        cta_framer_done(&p->fr);
}

/* A pin for host:port from STATE_DIR/known_nodes ("host:port SHA256:…"), or NULL. */
static char *peer_pin(struct cta_daemon *d, const char *host, uint16_t port)
{
        _cleanup_free_ char *path = cta_xasprintf("%s/known_nodes", d->cfg->state_dir);
        _cleanup_free_ char *data = NULL;
        char key[300];
        if (cta_read_file(path, 1 << 20, &data, NULL, NULL) < 0)
                return NULL;
        snprintf(key, sizeof(key), "%s:%u ", host, port);
        for (char *line = data; line && *line;) {
                char *eol = strchr(line, '\n');
                if (eol)
                        *eol = '\0';
                if (strncmp(line, key, strlen(key)) == 0) {
                        /* "SHA256:AB:…" as we log it, or bare "AB:…" as openssl
                         * prints it; surrounding blanks ignored. */
                        char *v = line + strlen(key);
                        v += strspn(v, " \t");
                        v[strcspn(v, " \t\r")] = '\0';
                        if (strncasecmp(v, "SHA256:", 7) == 0)
                                v += 7;
                        return cta_xasprintf("SHA256:%s", v);
                }
                line = eol ? eol + 1 : NULL;
        }
        return NULL;
}

static int peer_recv(struct peer *p, struct cta_resp **ret, struct cta_error **err)
{
        for (;;) {
                enum cta_frame_kind kind;
                const char *frame;
                size_t len;
                int r = cta_framer_next_any(&p->fr, &kind, &frame, &len);
                if (r < 0)
                        return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                             "the destination sent an oversized packet");
                if (r == 1 && kind == CTA_FRAME_BINARY) {
                        if (p->bin_fd < 0)
                                return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                                     "unexpected binary frame from the "
                                                     "destination");
                        for (size_t off = 0; off < len;) {
                                ssize_t w = write(p->bin_fd, frame + off, len - off);
                                if (w < 0 && errno == EINTR)
                                        continue;
                                if (w < 0)
                                        return cta_error_errno(err, CTA_E_IO,
                                                               "spool the have summary");
                                off += (size_t)w;
                        }
                        continue;
                }
                if (r == 1)
                        return cta_resp_parse(frame, len, ret, err);
                char buf[65536];
                ssize_t n = cta_client_read(p->c, buf, sizeof(buf), PEER_TIMEOUT_MS, err);
                if (n < 0) {
                        /* cta_error_set() frees *err first: keep its text. */
                        _cleanup_free_ char *why = cta_xstrdup(cta_error_msg(*err));
                        return cta_error_set(err, CTA_E_MIG_LINK_LOST, 0,
                                             "connection to the destination lost: %s", why);
                }
                if (n == 0)
                        return cta_error_set(err, CTA_E_MIG_LINK_LOST, 0,
                                             "the destination closed the connection");
                if (cta_framer_feed(&p->fr, buf, (size_t)n) < 0)
                        return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                             "the destination sent an oversized packet");
        }
}

static int peer_connect(struct cta_daemon *d, const char *host, uint16_t port, bool tls,
                        struct peer *p, struct cta_error **err)
{
        _cleanup_free_ char *pin = peer_pin(d, host, port);
        struct cta_client_opts o = { .tls = tls, .pin_fingerprint = pin,
                                     .timeout_ms = PEER_TIMEOUT_MS };
        _cleanup_(cta_resp_freep) struct cta_resp *greet = NULL;
        int r;

        memset(p, 0, sizeof(*p));
        p->bin_fd = -1;
        snprintf(p->host, sizeof(p->host), "%s", host);
        p->port = port;
        p->tls = tls;
        cta_framer_init(&p->fr, 16u << 20);
        p->fr.binary_ok = true;
        r = cta_client_connect(host, port, &o, &p->c, err);
        if (r < 0) {
                int code = cta_error_code(*err) == CTA_E_PEER_CHANGED ? CTA_E_PEER_CHANGED
                                                                      : CTA_E_MIG_DST_CONNECT;
                _cleanup_free_ char *m = cta_xstrdup(cta_error_msg(*err));
                cta_error_free(*err);
                *err = NULL;
                return cta_error_set(err, code, 0, "cannot connect to the destination %s:%u: %s",
                                     host, port, m);
        }
        if (tls && !pin)
                log_notice("destination %s:%u presents certificate %s (not pinned: add it to "
                           "%s/known_nodes to pin it)",
                           host, port, cta_client_fingerprint(p->c), d->cfg->state_dir);
        r = peer_recv(p, &greet, err);
        if (r < 0)
                return r;
        if (greet->has_error)
                return cta_error_set(err, CTA_E_MIG_DST_CONNECT, 0,
                                     "the destination refused the connection: %s",
                                     greet->error_message);
        return 0;
}

/* Request builder: <packet version id><target>op</target><data><op><call>… */
struct req {
        struct cta_buf b;
        struct cta_xw w;
        char id[32];
};

static void req_begin(struct req *q, struct peer *p, const char *op, const char *call)
{
        cta_buf_init(&q->b, 16u << 20);
        cta_xw_init(&q->w, &q->b);
        snprintf(q->id, sizeof(q->id), "ctamig-%u", ++p->next_id);
        cta_xw_open(&q->w, "packet");
        cta_xw_attr(&q->w, "version", "4.0.0");
        cta_xw_attr(&q->w, "id", q->id);
        if (!streq(op, "system"))
                cta_xw_text(&q->w, "target", op);
        cta_xw_open(&q->w, "data");
        cta_xw_open(&q->w, op);
        cta_xw_open(&q->w, call);
}

/* Send the request; its reply is read (or skipped) by a later peer_call. */
static int peer_send(struct peer *p, struct req *q, const char *what, struct cta_error **err)
{
        int r;
        for (int i = 0; i < 4; i++)
                cta_xw_close(&q->w);
        (void)cta_buf_putc(&q->b, '\0');
        if (cta_xw_error(&q->w) < 0) {
                cta_buf_done(&q->b);
                return cta_error_set(err, CTA_E_INTERNAL, 0, "%s: cannot build the request",
                                     what);
        }
        r = cta_client_write(p->c, q->b.data, q->b.len, err);
        cta_buf_done(&q->b);
        if (r < 0)
                return cta_error_set(err, CTA_E_MIG_LINK_LOST, 0,
                                     "%s: connection to the destination lost", what);
        return 0;
}

/* Send the request and wait for its final reply; an <error> becomes *err
 * with the peer's code (wrapped with `what`). */
static int peer_call(struct peer *p, struct req *q, const char *what, struct cta_resp **ret,
                     struct cta_error **err)
{
        int r = peer_send(p, q, what, err);
        if (r < 0)
                return r;
        for (;;) {
                struct cta_resp *resp = NULL;
                r = peer_recv(p, &resp, err);
                if (r < 0)
                        return cta_error_wrap(err, "%s", what);
                if (resp->is_progress || resp->is_event || !resp->id ||
                    !streq(resp->id, q->id)) {
                        cta_resp_free(resp);
                        continue;
                }
                if (resp->has_error) {
                        int code = resp->error_code > 0 ? resp->error_code : CTA_E_MIG_STREAM;
                        r = cta_error_set(err, code, 0, "%s: the destination says: %s", what,
                                          resp->error_message);
                        cta_resp_free(resp);
                        return r;
                }
                if (ret)
                        *ret = resp;
                else
                        cta_resp_free(resp);
                return 0;
        }
}

static void req_b64(struct req *q, const char *name, const char *value)
{
        if (value)
                cta_xw_b64(&q->w, name, value, strlen(value));
}

static int peer_login(struct peer *p, const struct cta_conn_info *dst, struct cta_error **err)
{
        struct req q;
        req_begin(&q, p, "system", "login");
        req_b64(&q, "name", dst->login.name);
        if (dst->login.domain[0])
                req_b64(&q, "domain", dst->login.domain);
        cta_xw_text(&q.w, "realm",
                    dst->login.realm[0] ? dst->login.realm : CTA_REALM_SYSTEM);
        req_b64(&q, "password", dst->has_password ? dst->password : "");
        int r = peer_call(p, &q, "log in to the destination", NULL, err);
        if (r < 0 && cta_error_code(*err) != CTA_E_MIG_LINK_LOST) {
                _cleanup_free_ char *m = cta_xstrdup(cta_error_msg(*err));
                cta_error_free(*err);
                *err = NULL;
                return cta_error_set(err, CTA_E_MIG_DST_LOGIN, 0, "%s", m);
        }
        return r;
}

/* ---- one container ---------------------------------------------------------- */

struct mig_src {
        struct cta_daemon *d;
        struct cta_call *call;
        const struct cta_migrate_req *req;
        struct cta_ct_row row;
        char id[37];
        char token[64];
        char dst_veid[24];
        char *dst_private;
        bool was_running, stopped, forced, have;
        uint16_t stream_version; /* the newest stream format the destination reads */
        unsigned dst_passes;     /* streams the destination takes in one migration (1 or 2) */
        int zstd_level;          /* compress the streams at this level (0: not) */
        int auto_level;          /* migrate_compress = auto: what the link probe chose */
        bool zstd_ok;            /* the destination reads compressed streams (hello) */
        bool have_zstd_anyway;   /* ask for the summary compressed, streams or not */
        /* The migration that left the copy the destination holds (hello; "" if none or
         * an older agent), and whether this node held the mark of the last migration that
         * brought the container here when it scanned: when that is the same migration,
         * the scan's changed_bytes is about what the streams will send of the data */
        char dst_lineage[37];
        bool arrived_known;
        /* A running container is copied while it runs (pre-copy), then stopped for a
         * pass of what changed: files changed since precopy_start go again. */
        bool precopying, precopied;
        struct timespec precopy_start;
        /* The destination's copy descends from a migration whose mark this node holds
         * (cta_mig_mark_get): the first stream takes it as its changed_since. */
        bool base_marked;
        struct timespec base_mark;
        int have_fd; /* the destination's have summary, spooled (memfd), or -1 */
        bool have_zstd; /* ... compressed (the have reply said so) */
        struct peer peer;
        bool connected;
        struct cta_mig_totals totals;
        uint64_t last_progress_ms;
        int last_percent;
        uint64_t last_done; /* bytes_done of the last status 2 packet */
        char dst_label[300];
        /* where the time went, for the log line at the end */
        uint64_t t_mark;
        struct cta_buf phases;
};

/* Note that a phase ended: "name 1.23 s" goes into the summary log line. */
static void phase(struct mig_src *m, const char *name)
{
        uint64_t now = cta_now_ms();
        (void)cta_buf_printf(&m->phases, "%s%s %.2f s", m->phases.len ? ", " : "", name,
                             (double)(now - m->t_mark) / 1000.0);
        m->t_mark = now;
}

/* Journal the migration's step. Only the steps that recovery must see are checked
 * (the first, and "committing"): a commit sent without it in the journal would be
 * rolled back here by a crash recovery while the destination owns the container. */
static int src_journal(struct mig_src *m, const char *state, struct cta_error **err)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(0);
        char port[8];
        snprintf(port, sizeof(port), "%u", m->req->dst.port);
        cta_kv_add(&b, "host", m->req->dst.address);
        cta_kv_add(&b, "port", port);
        cta_kv_add(&b, "tls", m->req->dst.protocol == CTA_DST_SSL ? "1" : "0");
        cta_kv_add(&b, "token", m->token[0] ? m->token : NULL);
        cta_kv_add(&b, "was_running", m->was_running ? "1" : "0");
        cta_kv_add(&b, "remove", m->req->remove ? "1" : "0");
        return cta_mig_journal(m->d, m->id, CTA_MIG_ROLE_SRC, m->row.eid, m->dst_label, state,
                               b.data, err);
}

/* Progress packets carry the phase as text and, for clients that draw a
 * bar, the byte counts as their own parameters (bytes_done, bytes_total). */
static void progress_bytes(struct mig_src *m, int status, const char *phase, int percent,
                           uint64_t done, uint64_t total)
{
        const char *eids[1] = { m->row.eid };
        char d[24], t[24];
        /* A client draws a bar: the percent of status 2 never goes back. With a pre-copy
         * that pass is 0-90 % and the pass after the stop 90-100 %. */
        if (status == 2) {
                if (m->precopying)
                        percent = percent * 90 / 100;
                else if (m->precopied)
                        percent = 90 + percent / 10;
                if (percent < m->last_percent)
                        percent = m->last_percent;
                m->last_percent = percent;
        }
        /* nor do the bytes: the pass after a pre-copy, and the phases between the passes,
         * report the bytes the first one copied (the phase text has the pass's own) */
        if (status == 2) {
                if (done < m->last_done)
                        done = m->last_done;
                m->last_done = done;
        }
        snprintf(d, sizeof(d), "%" PRIu64, done);
        snprintf(t, sizeof(t), "%" PRIu64, total);
        struct cta_info_param params[5] = {
                { "eid", m->row.eid },
                { "dst", m->dst_label },
                { "phase", phase },
                { "bytes_done", d },
                { "bytes_total", t },
        };
        struct cta_progress p = {
                .template_text = "Migrating container %eid% to %dst%: %phase%",
                .params = params,
                .nparams = 5,
                .percent = percent,
                .eids = eids,
                .neids = 1,
                .op = "relocator.migrate_v2v",
                .status = status,
                .req_id = m->call->req->id,
        };
        cta_call_progress(m->call, &p);
}

static void progress(struct mig_src *m, int status, const char *phase, int percent)
{
        uint64_t total = m->totals.data_bytes;
        progress_bytes(m, status, phase, percent, percent >= 100 ? total : 0, total);
}

static void on_copy_progress(void *ud, uint64_t done, uint64_t total, uint64_t files_done,
                             uint64_t files_total)
{
        struct mig_src *m = ud;
        /* (a test hook: at the first report past half, not the first packet after it) */
        if (done >= total / 2 && done > 0)
                cta_fault_point("src_mid_copy");
        uint64_t now = cta_now_ms();
        if (now - m->last_progress_ms < PROGRESS_EVERY_MS && done < total)
                return;
        m->last_progress_ms = now;
        char phase[160];
        snprintf(phase, sizeof(phase), "%s, %" PRIu64 " of %" PRIu64 " bytes",
                 m->precopying  ? "copying data while the container runs"
                 : m->precopied ? "copying what changed meanwhile"
                                : "copying data",
                 done, total);
        /* done counts reused bytes too and may pass the scan's estimate. */
        int pct = total ? (int)(done * 100 / total) : 100;
        progress_bytes(m, 2, phase, pct > 100 ? 100 : pct, done, total);
}

/* Binary frames to the destination: the tree stream's transport. */
/* The destination only speaks during the stream to refuse it: once it has,
 * stop sending, and let the caller read why. */
static bool peer_has_spoken(struct peer *p)
{
        struct pollfd pfd = { .fd = cta_client_fd(p->c), .events = POLLIN };
        return cta_client_pending(p->c) > 0 || cta_framer_pending(&p->fr) > 0 ||
               (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)));
}

static ssize_t peer_stream_write(void *ctx, const void *buf, size_t len)
{
        struct peer *p = ctx;
        const char *b = buf;
        if (peer_has_spoken(p))
                return -CTA_E_MIG_LINK_LOST;
        while (len) {
                size_t n = len > CTA_BINFRAME_MAX ? CTA_BINFRAME_MAX : len;
                uint8_t hdr[CTA_BINFRAME_HDR];
                cta_binframe_header(hdr, (uint32_t)n);
                if (cta_client_write(p->c, hdr, sizeof(hdr), NULL) < 0 ||
                    cta_client_write(p->c, b, n, NULL) < 0)
                        return -CTA_E_MIG_LINK_LOST;
                b += n;
                len -= n;
        }
        return 0;
}

#define PROBE_CHUNK (256u << 10)
/* What the probe lets wait unsent in the kernel before its next chunk. */
#define PROBE_UNSENT (256u << 10)

/* The compression the request asks for, else the node's default: a level (0: none) or
 * CTA_COMPRESS_AUTO. */
static int asked_level(const struct mig_src *m)
{
        return m->req->compress != -1 ? m->req->compress : m->d->cfg->migrate_compress;
}

static double secs_since(const struct timespec *a, const struct timespec *b)
{
        return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* Time a few MiB of binary frames that the destination drops: *mbs. A destination that
 * refuses to start the probe (an older agent) is not timed; a lost link, or one that
 * accepted the probe and then fails it, is an error. 1 if the link was timed, else 0. */
static int src_probe_time(struct mig_src *m, double *mbs, double *rtt_ms, size_t *bytes,
                          struct cta_error **err)
{
        struct timespec t0, t1, t2;
        struct req q;
        _cleanup_(cta_error_freep) struct cta_error *perr = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        req_begin(&q, &m->peer, "ctamig", "probe");
        cta_xw_text(&q.w, "state", "begin");
        int r = peer_call(&m->peer, &q, "link probe", NULL, &perr);
        if (r < 0) {
                if (cta_error_code(perr) == CTA_E_MIG_LINK_LOST)
                        return cta_error_set(err, CTA_E_MIG_LINK_LOST, 0, "%s",
                                             cta_error_msg(perr));
                log_notice("migration %s: no link probe (%s): sending uncompressed", m->id,
                           cta_error_msg(perr));
                return 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        cta_fault_point("src_in_probe");
        _cleanup_free_ uint8_t *zero = calloc(1, PROBE_CHUNK);
        if (!zero)
                return cta_error_set(err, CTA_E_NOMEM, ENOMEM, "link probe");
        size_t sent = 0;
        /* A chunk goes only while the kernel holds little unsent: else a socket buffer of
         * megabytes, filled in the 250 ms, would still cross a slow link after them (5 MiB
         * at 20 Mbit/s: 1.7 s). The rate stays true: the clock runs until they are across. */
        (void)cta_client_limit_unsent(m->peer.c, PROBE_UNSENT);
        t2 = t1;
        do { /* (zeros: TLS makes them random on the wire, and nothing compresses them) */
                double left = CTA_MIG_PROBE_MS - secs_since(&t1, &t2) * 1e3;
                int w = cta_client_wait_sendable(m->peer.c, left >= 1 ? (int)left : 1);
                if (w == 0)
                        break;
                if (w < 0 || peer_stream_write(&m->peer, zero, PROBE_CHUNK) < 0)
                        return cta_error_set(err, CTA_E_MIG_LINK_LOST, 0,
                                             "link probe: connection to the destination lost");
                sent += PROBE_CHUNK;
                clock_gettime(CLOCK_MONOTONIC, &t2);
        } while (sent < CTA_MIG_PROBE_BYTES && secs_since(&t1, &t2) * 1e3 < CTA_MIG_PROBE_MS);
        (void)cta_client_limit_unsent(m->peer.c, 0);
        req_begin(&q, &m->peer, "ctamig", "probe");
        cta_xw_text(&q.w, "state", "end");
        if (peer_call(&m->peer, &q, "link probe", NULL, err) < 0)
                return -1;
        clock_gettime(CLOCK_MONOTONIC, &t2);
        /* the frames took from the first reply until the second, less one round trip */
        double rtt = secs_since(&t0, &t1), s = secs_since(&t1, &t2) - rtt;
        *mbs = (double)sent / 1e6 / (s > 1e-4 ? s : 1e-4);
        *rtt_ms = rtt * 1e3;
        *bytes = sent;
        return 1;
}

/* migrate_compress = auto: before a tree big enough to gain by it, choose the level by
 * the link's rate: the one measured to this destination within migrate_probe_reuse_s,
 * else a probe's (src_probe_time; no probe, no compression). 1 if the link was timed
 * now, else 0. */
static int src_probe_link(struct mig_src *m, struct cta_error **err)
{
        const struct cta_config *cfg = m->d->cfg;
        m->auto_level = 0;
        if (asked_level(m) != CTA_COMPRESS_AUTO || !m->zstd_ok ||
            m->totals.data_bytes < CTA_MIG_PROBE_MIN_DATA)
                return 0;
        char key[sizeof(m->dst_label) + 4];
        snprintf(key, sizeof(key), "%s:%s", m->req->dst.protocol == CTA_DST_SSL ? "tls" : "tcp",
                 m->dst_label);
        double mbs = -1, rtt_ms = 0;
        uint64_t age_ms;
        size_t sent = 0;
        if (cfg->migrate_probe_reuse_s > 0 &&
            cta_mig_linkrate_get(m->d->linkrates, key, cta_now_ms(),
                                 cfg->migrate_probe_reuse_s * 1000, &mbs, &age_ms)) {
                m->auto_level = cta_mig_auto_level(mbs, cfg->migrate_compress_auto_mbs);
                log_notice("migration %s: link rate %.0f MB/s, probed %.1f s ago (compressed "
                           "below %" PRIu64 " MB/s): zstd level %d%s",
                           m->id, mbs, (double)age_ms / 1000.0, cfg->migrate_compress_auto_mbs,
                           m->auto_level, m->auto_level ? "" : " (uncompressed)");
                return 0;
        }
        /* The destination holds the copy that the last migration here brought, and this
         * node its mark: only the data changed since will go (files whose ctime is not
         * before it; fewer still if some changed back), not worth a probe when small. Its
         * summary, which does not shrink with the change, still comes compressed: the
         * link may be slow, and a summary costs the destination little to compress. */
        struct timespec t;
        if (m->arrived_known && m->dst_lineage[0] &&
            cta_mig_mark_get(m->d, CTA_MARK_ARRIVED, m->row.eid, m->dst_lineage, &t) &&
            m->totals.changed_bytes < CTA_MIG_PROBE_MIN_DATA) {
                m->have_zstd_anyway = true;
                log_notice("migration %s: no link probe: %.1f MB of data changed since the "
                           "copy on the destination arrived here: sending uncompressed",
                           m->id, (double)m->totals.changed_bytes / 1e6);
                return 0;
        }
        int r = src_probe_time(m, &mbs, &rtt_ms, &sent, err);
        if (r <= 0)
                return r;
        cta_mig_linkrate_put(m->d->linkrates, key, mbs, cta_now_ms());
        m->auto_level = cta_mig_auto_level(mbs, cfg->migrate_compress_auto_mbs);
        log_notice("migration %s: link probe: %zu bytes at %.0f MB/s (round trip %.2f ms; "
                   "compressed below %" PRIu64 " MB/s): zstd level %d%s",
                   m->id, sent, mbs, rtt_ms, cfg->migrate_compress_auto_mbs, m->auto_level,
                   m->auto_level ? "" : " (uncompressed)");
        return 1;
}

static int src_hello(struct mig_src *m, struct cta_error **err)
{
        const struct cta_migrate_req *rq = m->req;
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        char ips[8][19];
        size_t n_ips = 0;
        uint64_t mem;
        unsigned cpu;
        struct req q;
        int r;

        cta_envm_row_extra(&m->row, ips, &n_ips, &mem, &cpu);
        req_begin(&q, &m->peer, "ctamig", "hello");
        cta_xw_text(&q.w, "id", m->id);
        cta_xw_int(&q.w, "version_min", CTA_MIG_PROTO_MIN);
        cta_xw_int(&q.w, "version_max", CTA_MIG_PROTO_MAX);
        cta_xw_text(&q.w, "eid", m->row.eid);
        cta_xw_int(&q.w, "veid", (long long)(rq->has_new_veid ? rq->new_veid : m->row.veid));
        const char *name = rq->new_name[0] ? rq->new_name : m->row.name;
        req_b64(&q, "name", name);
        if (rq->new_private[0])
                req_b64(&q, "private", rq->new_private);
        for (size_t i = 0; i < n_ips; i++)
                cta_xw_text(&q.w, "ip", ips[i]);
        cta_xw_int(&q.w, "bytes", (long long)m->totals.data_bytes);
        cta_xw_int(&q.w, "inodes", (long long)m->totals.entries);
        cta_xw_int(&q.w, "force", rq->force);
        r = peer_call(&m->peer, &q, "destination checks", &resp, err);
        if (r < 0)
                return r;
        const char *token = resp->op_node ? cta_xnode_ctext(resp->op_node, "token") : NULL;
        const char *forced = resp->op_node ? cta_xnode_ctext(resp->op_node, "forced") : NULL;
        const char *have = resp->op_node ? cta_xnode_ctext(resp->op_node, "have") : NULL;
        m->have = have && streq(have, "1");
        const char *sv = resp->op_node ? cta_xnode_ctext(resp->op_node, "stream") : NULL;
        long v = sv ? strtol(sv, NULL, 10) : 0;
        m->stream_version = v >= 1 && v <= UINT16_MAX ? (uint16_t)v : 2;
        const char *passes = resp->op_node ? cta_xnode_ctext(resp->op_node, "passes") : NULL;
        m->dst_passes = passes && streq(passes, "2") ? 2 : 1;
        const char *zs = resp->op_node ? cta_xnode_ctext(resp->op_node, "compress") : NULL;
        m->zstd_ok = zs && streq(zs, "zstd");
        const char *lin = resp->op_node ? cta_xnode_ctext(resp->op_node, "lineage") : NULL;
        snprintf(m->dst_lineage, sizeof(m->dst_lineage), "%s",
                 m->have && lin && strlen(lin) < sizeof(m->dst_lineage) ? lin : "");
        if (!token || strlen(token) >= sizeof(m->token))
                return cta_error_set(err, CTA_E_MIG_STREAM, 0,
                                     "the destination's hello reply has no token");
        snprintf(m->token, sizeof(m->token), "%s", token);
        m->forced = forced && streq(forced, "1");
        return 0;
}

/* The streams' compression, once hello and the probe are done: the level asked for (or
 * the probe's, for auto), if the destination reads it (older agents do not say, and get
 * the stream as it is). */
static void src_set_level(struct mig_src *m)
{
        int level = asked_level(m) == CTA_COMPRESS_AUTO ? m->auto_level : asked_level(m);
        m->zstd_level = level > 0 && m->zstd_ok ? level : 0;
        if (level > 0 && !m->zstd_ok)
                log_warning("migration %s: the destination does not read compressed streams: "
                            "sending uncompressed",
                            m->id);
}

/* Fetch what the destination already has, so only the rest is sent. */
static int src_fetch_have(struct mig_src *m, struct cta_error **err)
{
        struct req q;
        int fd = memfd_create("ctagent-have", MFD_CLOEXEC);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "memfd_create");
        m->peer.bin_fd = fd;
        req_begin(&q, &m->peer, "ctamig", "have");
        cta_xw_text(&q.w, "id", m->id);
        /* compressed too, when we compress our streams or skipped the probe (older agents
         * ignore it) */
        if (m->zstd_level > 0 || m->have_zstd_anyway)
                cta_xw_text(&q.w, "compress", "zstd");
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        int r = peer_call(&m->peer, &q, "fetch the destination's summary", &resp, err);
        m->peer.bin_fd = -1;
        if (r < 0 || lseek(fd, 0, SEEK_SET) < 0) {
                close(fd);
                return r < 0 ? r : cta_error_errno(err, CTA_E_IO, "rewind the summary");
        }
        m->have_fd = fd;
        const char *zs = resp && resp->op_node ? cta_xnode_ctext(resp->op_node, "compress")
                                               : NULL;
        m->have_zstd = zs && streq(zs, "zstd");
        /* Which migration left that copy, when nothing else changed it since: one this
         * node sent (a kept staging area) or received (the copy the container left
         * there). Holding that migration's mark, the first stream need not trust sizes
         * and mtimes alone (cta_mig_mark_get). */
        const char *lin = resp && resp->op_node ? cta_xnode_ctext(resp->op_node, "lineage")
                                                : NULL;
        if (!m->precopied && lin && *lin)
                m->base_marked =
                        cta_mig_mark_get(m->d, CTA_MARK_ARRIVED, m->row.eid, lin, &m->base_mark) ||
                        cta_mig_mark_get(m->d, CTA_MARK_STAGED, m->row.eid, lin, &m->base_mark);
        return 0;
}

/* One stream: open it, send the tree through io (zstd: compressed), await the verdict. */
static int src_stream_io(struct mig_src *m, const struct cta_mig_io *io, bool zstd,
                         struct cta_error **err)
{
        struct cta_mig_io have_io = cta_mig_fd_io(m->have_fd);
        _cleanup_(cta_mig_zio_freep) struct cta_mig_zio *hz = NULL;
        if (m->have_fd >= 0 && m->have_zstd) {
                if (cta_mig_zio_decompress(&have_io, &hz, err) < 0)
                        return cta_error_wrap(err, "read the destination's summary");
                have_io = cta_mig_zio_io(hz);
        }
        _cleanup_free_ char *bmdir = cta_mig_blockmap_dir(m->d);
        struct cta_mig_send_opts o = {
                .blockmap_dir = bmdir,
                .have = m->have_fd >= 0 ? &have_io : NULL,
                .totals = &m->totals,
                .progress = { on_copy_progress, m },
                .cancel = &m->call->cancelled,
                .peer_version = m->stream_version,
                .changed_since = m->precopied     ? m->precopy_start
                                 : m->base_marked ? m->base_mark
                                                  : (struct timespec){ 0 },
        };
        struct cta_mig_stats st = { 0 };
        struct req q;
        int r;

        /* The stream call's reply comes after the data: send it first, then
         * the binary frames, then wait. */
        req_begin(&q, &m->peer, "ctamig", "stream");
        cta_xw_text(&q.w, "id", m->id);
        /* the pass after it asks for a summary: the destination builds it ahead, while
         * the container still runs (an older one ignores the element) */
        if (m->precopying)
                cta_xw_int(&q.w, "then_have", 1);
        if (zstd) /* the binary frames carry one zstd stream (hello said it reads it) */
                cta_xw_text(&q.w, "compress", "zstd");
        for (int i = 0; i < 4; i++)
                cta_xw_close(&q.w);
        (void)cta_buf_putc(&q.b, '\0');
        r = cta_client_write(m->peer.c, q.b.data, q.b.len, err);
        cta_buf_done(&q.b);
        if (r < 0)
                return cta_error_set(err, CTA_E_MIG_LINK_LOST, 0, "open the stream: link lost");
        _cleanup_close_ int fd = open(m->row.private_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "open '%s'", m->row.private_path);
        r = cta_mig_send(fd, io, &o, &st, err);
        if (r < 0 && cta_error_code(*err) == CTA_E_MIG_LINK_LOST) {
                /* The destination may have stopped reading because it refused
                 * the data: its reply, if it came, says why. */
                struct cta_resp *resp = NULL;
                struct cta_error *e2 = NULL;
                while (peer_recv(&m->peer, &resp, &e2) == 0) {
                        bool mine = resp->id && streq(resp->id, q.id) && !resp->is_progress;
                        if (mine && resp->has_error) {
                                cta_error_free(*err);
                                *err = NULL;
                                r = cta_error_set(err, resp->error_code > 0 ? resp->error_code
                                                                            : CTA_E_MIG_STREAM,
                                                  0, "the destination refused the data: %s",
                                                  resp->error_message);
                        }
                        cta_resp_free(resp);
                        resp = NULL;
                        if (mine)
                                break;
                }
                cta_error_free(e2);
        }
        if (r < 0)
                return cta_error_wrap(err, "send the private area");
        /* Wait for the destination's verdict on the stream. */
        for (;;) {
                _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
                r = peer_recv(&m->peer, &resp, err);
                if (r < 0)
                        return cta_error_wrap(err, "stream");
                if (resp->is_progress || resp->is_event || !resp->id || !streq(resp->id, q.id))
                        continue;
                if (resp->has_error)
                        return cta_error_set(err, resp->error_code > 0 ? resp->error_code
                                                                       : CTA_E_MIG_STREAM,
                                             0, "the destination refused the data: %s",
                                             resp->error_message);
                break;
        }
        char quiet[80] = "";
        if (m->precopied)
                snprintf(quiet, sizeof(quiet), "; %" PRIu64 " entries as the first pass left them",
                         st.quiet);
        else if (m->base_marked)
                snprintf(quiet, sizeof(quiet), "; %" PRIu64 " entries as the copy there has them",
                         st.quiet);
        log_notice("migration %s: sent %" PRIu64 " entries, %" PRIu64 " data bytes (%" PRIu64
                   " on the wire%s)",
                   m->id, st.entries, st.data_bytes, st.wire_bytes, quiet);
        return 0;
}

/* A stream of the tree, compressed when asked for and the destination reads it. */
static int src_stream(struct mig_src *m, struct cta_error **err)
{
        struct cta_mig_io io = { .write = peer_stream_write, .ctx = &m->peer };
        _cleanup_(cta_mig_zio_freep) struct cta_mig_zio *z = NULL;
        if (m->zstd_level > 0) {
                int r = cta_mig_zio_compress(&io, m->zstd_level, &z, err);
                if (r < 0)
                        return cta_error_wrap(err, "compress the stream");
                io = cta_mig_zio_io(z);
        }
        int r = src_stream_io(m, &io, z != NULL, err);
        uint64_t plain, packed;
        cta_mig_zio_counts(z, &plain, &packed);
        if (r == 0 && z)
                log_notice("migration %s: zstd level %d: %" PRIu64 " stream bytes sent as %" PRIu64
                           " (%.1f%%)",
                           m->id, m->zstd_level, plain, packed,
                           plain ? 100.0 * (double)packed / (double)plain : 100.0);
        return r;
}

/*
 * The mark the pass after the stop compares ctimes with (cta_mig_pass_mark): taken
 * before this pass reads anything, with the private area's file system written back, so
 * that a write through a mapping the container holds cannot slip past it.
 */
static int src_pass_mark(struct mig_src *m, struct cta_error **err)
{
        _cleanup_close_ int fd = open(m->row.private_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "open '%s'", m->row.private_path);
        uint64_t t0 = cta_now_ms();
        if (cta_mig_pass_mark(fd, &m->precopy_start) != 0)
                log_warning("migration %s: writes through shared mappings may not move file "
                            "times on this file system (%m): the pass after the stop sends "
                            "every file's data again",
                            m->id);
        uint64_t ms = cta_now_ms() - t0;
        if (ms >= 1000)
                log_notice("migration %s: writing back the file system took %.1f s", m->id,
                           (double)ms / 1000.0);
        return 0;
}

/*
 * Before the first stream into a fresh staging area: should it fail and the destination
 * keep what arrived, a retry takes t as its changed_since (every entry there was read
 * after t, and a later change moves its ctime past t).
 */
static void src_note_fresh(struct mig_src *m, const struct timespec *t)
{
        if (!m->have)
                cta_mig_mark_put(m->d, CTA_MARK_STAGED, m->row.eid, m->id, t);
}

/*
 * Copy a running container while it runs, into the destination's staging area: the
 * pass after the stop then sends only what changed meanwhile (vzmigrate's two rsync
 * passes, without its blind spots: a file rewritten in the clock tick it was read keeps
 * its size and mtime, and one written through a mapping keeps its times, so files whose
 * ctime is after this pass's mark go again).
 */
static int src_precopy(struct mig_src *m, struct cta_error **err)
{
        int r = src_pass_mark(m, err);
        if (r < 0)
                return r;
        src_note_fresh(m, &m->precopy_start);
        if (m->have) {
                progress(m, 2, "comparing with the destination's copy", 0);
                r = src_fetch_have(m, err);
        }
        if (r == 0) {
                progress(m, 2, "copying data while the container runs", 0);
                m->precopying = true;
                r = src_stream(m, err);
                m->precopying = false;
        }
        if (m->have_fd >= 0) {
                close(m->have_fd);
                m->have_fd = -1;
        }
        if (r < 0)
                return r;
        m->have = true; /* the staging area holds this copy now */
        m->precopied = true;
        /* Its summary, for the pass after the stop, is fetched now, while the container
         * still runs: nothing changes the staging area before the next stream, and the
         * destination built the summary at the end of this one (on a slow link sending it
         * was downtime: some 14 MB for 200,000 entries). */
        progress(m, 2, "comparing with the copy just made", 0);
        return src_fetch_have(m, err);
}

/* Send commit. Returns 0 (committed; *started says whether it runs there),
 * or < 0 with *in_doubt telling whether the destination may have committed
 * (the reply was lost) or certainly did not (it answered with an error). */
static int src_commit(struct mig_src *m, bool *started, bool *in_doubt, struct cta_error **err)
{
        const struct cta_migrate_req *rq = m->req;
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        char ips[8][19];
        size_t n_ips = 0;
        uint64_t mem;
        unsigned cpu;
        struct req q;

        cta_envm_row_extra(&m->row, ips, &n_ips, &mem, &cpu);
        req_begin(&q, &m->peer, "ctamig", "commit");
        cta_xw_text(&q.w, "id", m->id);
        req_b64(&q, "name", rq->new_name[0] ? rq->new_name : m->row.name);
        req_b64(&q, "hostname", m->row.hostname);
        req_b64(&q, "description", m->row.description);
        req_b64(&q, "template", m->row.os_template);
        cta_xw_int(&q.w, "on_boot", m->row.on_boot);
        cta_xw_int(&q.w, "memory", (long long)mem);
        cta_xw_int(&q.w, "cpu", cpu);
        for (size_t i = 0; i < n_ips; i++)
                cta_xw_text(&q.w, "ip", ips[i]);
        cta_xw_int(&q.w, "start", m->was_running && !rq->nostart && !m->forced);
        int r = peer_call(&m->peer, &q, "commit", &resp, err);
        if (r < 0) {
                *in_doubt = cta_error_code(*err) == CTA_E_MIG_LINK_LOST;
                return r;
        }
        const char *s = resp->op_node ? cta_xnode_ctext(resp->op_node, "started") : NULL;
        *started = s && streq(s, "1");
        const char *se = resp->op_node ? cta_xnode_ctext(resp->op_node, "start_error") : NULL;
        if (se)
                log_error("migration %s: the container did not start on the destination: %s",
                          m->id, se);
        return 0;
}

/* Ask the destination whether migration id committed: 2 yes and the container
 * runs there, 1 yes, 0 no; -1 no answer, -2 it is committing (both: ask again). */
int cta_mig_ask_status(struct cta_daemon *d, const char *host, uint16_t port, bool tls,
                       const char *id, const char *token)
{
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        _cleanup_(cta_resp_freep) struct cta_resp *resp = NULL;
        struct peer p;
        struct req q;
        int r = peer_connect(d, host, port, tls, &p, &err);
        if (r >= 0) {
                req_begin(&q, &p, "ctamig", "status");
                cta_xw_text(&q.w, "id", id);
                cta_xw_text(&q.w, "token", token);
                r = peer_call(&p, &q, "status", &resp, &err);
        }
        peer_close(&p);
        if (r < 0) {
                log_warning("migration %s: status from %s:%u: %s", id, host, port,
                            cta_error_msg(err));
                return cta_error_code(err) == CTA_E_AUTH_FAILED ? 0 : -1;
        }
        const char *state = resp->op_node ? cta_xnode_ctext(resp->op_node, "state") : NULL;
        const char *running = resp->op_node ? cta_xnode_ctext(resp->op_node, "running") : NULL;
        if (state && streq(state, "committed"))
                return running && streq(running, "1") ? 2 : 1;
        if (state && (streq(state, "aborted") || streq(state, "open")))
                return 0;
        return -2; /* "committing": ask again */
}

/*
 * The last stream was a copy of a stopped container: if it runs now (started by hand with
 * the LXC tools while the agent held it), what it wrote since is not in the copy, and a
 * commit would leave it behind and run two copies. Then the migration must not commit;
 * the rollback finds it running and keeps it so.
 */
static int src_still_stopped(struct mig_src *m, struct cta_error **err)
{
        enum cta_ct_state now = CTA_CT_UNKNOWN;
        int r = cta_ct_state(cta_envm_backend(m->d), m->row.veid, &now, err);
        if (r < 0)
                return cta_error_wrap(err, "check that container %s is still stopped",
                                      m->row.eid);
        if (now == CTA_CT_RUNNING || now == CTA_CT_SUSPENDED)
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "container %s was started outside the agent during its "
                                     "migration; not committed (it stays here, running)",
                                     m->row.eid);
        return 0;
}

static int migrate_one(struct mig_src *m, struct cta_error **err)
{
        struct cta_daemon *d = m->d;
        bool started = false, in_doubt = false;
        int r;

        cta_uuid_new(m->id);
        m->t_mark = cta_now_ms();
        cta_buf_init(&m->phases, 0);
        snprintf(m->dst_label, sizeof(m->dst_label), "%s:%u", m->req->dst.address,
                 m->req->dst.port);
        r = cta_envm_lock(d, m->row.eid, err);
        if (r < 0)
                return r;
        if (m->row.transition == CTA_TR_MIGRATING) {
                /* (a migration not settled yet holds the lock; this is a second line) */
                cta_envm_unlock(d, m->row.eid);
                return cta_error_set(err, CTA_E_BUSY, 0,
                                     "container %s is marked migrating: an earlier migration "
                                     "of it is not settled",
                                     m->row.eid);
        }
        /* What runs decides whether the copy is made stopped, not a row read before the
         * lock or a registry that missed a start by hand: a running container copied as
         * if it were down would lose what it writes after the copy. */
        r = cta_envm_refresh_row(d, &m->row, err);
        if (r < 0) {
                cta_envm_unlock(d, m->row.eid);
                return r;
        }
        m->was_running = m->row.state == CTA_CT_RUNNING;
        r = src_journal(m, "locked", err);
        if (r < 0) {
                /* nothing done yet: without a journal, a crash could not be undone */
                cta_envm_unlock(d, m->row.eid);
                return r;
        }
        progress(m, 1, "checking", 0);

        _cleanup_close_ int fd = open(m->row.private_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                r = cta_error_errno(err, CTA_E_IO, "open '%s'", m->row.private_path);
                goto fail;
        }
        r = peer_connect(d, m->req->dst.address, m->req->dst.port,
                         m->req->dst.protocol == CTA_DST_SSL, &m->peer, err);
        if (r < 0)
                goto fail;
        m->connected = true;
        r = peer_login(&m->peer, &m->req->dst, err);
        if (r < 0)
                goto fail;
        phase(m, "connect");
        /* The destination warms its earlier copy (if any) while we scan ours;
         * its reply comes at once and is skipped by the next call. */
        {
                struct req q;
                req_begin(&q, &m->peer, "ctamig", "prepare");
                cta_xw_text(&q.w, "eid", m->row.eid);
                if ((r = peer_send(&m->peer, &q, "prepare", err)) < 0)
                        goto fail;
        }
        /* (what changed since the container last arrived here, should the destination hold
         * the copy it left there: then a probe of the link may not be worth it; the
         * container is locked, so the mark stays the one src_probe_link finds) */
        char arrived_id[37];
        struct timespec arrived_at;
        m->arrived_known =
                cta_mig_mark_read(d, CTA_MARK_ARRIVED, m->row.eid, arrived_id, &arrived_at);
        r = cta_mig_scan_since(fd, m->arrived_known ? &arrived_at : NULL, &m->totals, err);
        if (r < 0)
                goto fail;
        phase(m, "scan");
        r = src_hello(m, err);
        if (r < 0)
                goto fail;
        phase(m, "hello");
        r = src_probe_link(m, err);
        if (r < 0)
                goto fail;
        if (r > 0)
                phase(m, "probe");
        src_set_level(m);
        (void)src_journal(m, "checked", NULL);
        cta_fault_point("src_after_hello");
        if (cta_call_cancelled(m->call)) {
                r = cta_error_set(err, CTA_E_CANCELLED, 0, "migration cancelled");
                goto fail;
        }

        /* A running container is copied first while it runs, when the destination
         * takes a second stream; it is stopped only for what changed meanwhile. */
        if (m->was_running && m->dst_passes >= 2) {
                r = src_precopy(m, err);
                if (r < 0)
                        goto fail;
                phase(m, "precopy");
                if (cta_call_cancelled(m->call)) {
                        r = cta_error_set(err, CTA_E_CANCELLED, 0, "migration cancelled");
                        goto fail;
                }
        }
        /* Offline migration (type 0): the container is stopped for the (last) copy. */
        if (m->was_running) {
                progress(m, 2, "stopping the container", 0);
                r = cta_envm_stop_row(d, &m->row, false, err);
                if (r < 0)
                        goto fail;
        }
        (void)cta_envm_set_state(d, &m->row, m->row.state, CTA_TR_MIGRATING, NULL);
        (void)src_journal(m, "stopped", NULL);
        bool have_now = m->have && m->have_fd < 0; /* (a pre-copy fetched it already) */
        if (have_now) {
                progress(m, 2, "comparing with the destination's copy", 0);
                r = src_fetch_have(m, err);
                if (r < 0)
                        goto fail;
        }
        phase(m, have_now ? "stop+have" : "stop");
        if (!m->precopied) { /* (stopped: no mapping can write without a fault) */
                struct timespec t;
                clock_gettime(CLOCK_REALTIME, &t);
                t.tv_sec -= 1;
                src_note_fresh(m, &t);
        }
        progress(m, 2, m->precopied ? "copying what changed meanwhile" : "copying data", 0);
        /* the pass's first count of bytes goes out however soon after the last one: a
         * pass that takes less than PROGRESS_EVERY_MS is still shown with its bytes */
        m->last_progress_ms = 0;
        r = src_stream(m, err);
        if (r < 0)
                goto fail;
        phase(m, "stream");
        (void)src_journal(m, "streamed", NULL);
        if (cta_call_cancelled(m->call)) {
                r = cta_error_set(err, CTA_E_CANCELLED, 0, "migration cancelled");
                goto fail;
        }

        /* The point of no return. */
        cta_fault_point("src_before_commit");
        r = src_still_stopped(m, err);
        if (r < 0)
                goto fail;
        r = src_journal(m, "committing", err);
        if (r < 0)
                goto fail; /* (the destination has not been asked: it aborts) */
        progress(m, 2, "committing on the destination", 100);
        r = src_commit(m, &started, &in_doubt, err);
        if (r < 0 && in_doubt) {
                /* We do not know who owns it: ask until the destination tells. */
                int st = -1;
                for (int i = 0; i < STATUS_RETRIES && st < 0; i++) {
                        usleep(STATUS_RETRY_MS * 1000);
                        st = cta_mig_ask_status(d, m->req->dst.address, m->req->dst.port,
                                        m->req->dst.protocol == CTA_DST_SSL, m->id, m->token);
                }
                if (st < 0) {
                        /* Neither start it nor let anything else touch it (a second
                         * migration elsewhere would make two owners): it stays locked,
                         * and the resolver unlocks it when the destination tells. */
                        log_error("migration %s: outcome unknown; container %s stays stopped "
                                  "and locked here until the destination answers (the agent "
                                  "keeps asking)",
                                  m->id, m->row.eid);
                        peer_close(&m->peer);
                        cta_mig_doubt_add(d, m->id, m->row.eid, false);
                        return cta_error_wrap(err, "migration outcome unknown (the container "
                                                   "stays stopped and locked here until the "
                                                   "destination tells; the agent keeps "
                                                   "asking)");
                }
                if (st >= 1) {
                        cta_error_free(*err);
                        *err = NULL;
                        started = st == 2;
                        r = 0;
                }
        }
        if (r < 0)
                goto fail;
        (void)src_journal(m, "committed", NULL);
        phase(m, "commit");
        cta_fault_point("src_after_commit");
        peer_close(&m->peer);
        r = cta_mig_retire(d, &m->row, m->req->remove, m->id, err);
        if (r < 0) {
                /* The destination owns it: what is left here must neither start nor move
                 * (locked), and the retire is tried again (mig_doubt.c settles the
                 * journal's "committed" as start-up recovery would). */
                log_error("migration %s: retiring the source copy of %s failed: %s", m->id,
                          m->row.eid, cta_error_msg(*err));
                cta_error_free(*err);
                *err = NULL;
                cta_mig_doubt_add(d, m->id, m->row.eid, false);
        } else {
                (void)src_journal(m, "done", NULL);
                cta_envm_unlock(d, m->row.eid);
        }
        phase(m, "retire");
        log_notice("migration %s: container %s moved to %s%s (%s)", m->id, m->row.eid,
                   m->dst_label, started ? " and started there" : "", m->phases.data);
        progress(m, 3, "done", 100);
        if (m->was_running && !m->req->nostart && !m->forced && !started)
                return cta_error_set(err, CTA_E_CT_BACKEND, 0,
                                     "container %s moved to %s but did not start there (see "
                                     "the destination's log)",
                                     m->row.eid, m->dst_label);
        return 0;

fail:
        log_warning("migration %s of %s to %s failed: %s", m->id, m->row.eid, m->dst_label,
                    cta_error_msg(*err));
        if (m->connected && m->peer.c) {
                struct req q;
                _cleanup_(cta_error_freep) struct cta_error *e2 = NULL;
                req_begin(&q, &m->peer, "ctamig", "abort");
                cta_xw_text(&q.w, "id", m->id);
                (void)peer_call(&m->peer, &q, "abort", NULL, &e2);
        }
        peer_close(&m->peer);
        _cleanup_(cta_error_freep) struct cta_error *rerr = NULL;
        if (cta_mig_restore(d, m->row.eid, m->was_running, &rerr) < 0 ||
            src_journal(m, "failed", &rerr) < 0) {
                /* The registry cannot be written (full disk, a writer holding its lock):
                 * the container stays locked, and the in-doubt job finishes the rollback
                 * once it can (the journal still says where it stopped). */
                log_error("migration %s: cannot finish the rollback of %s yet: %s; it stays "
                          "locked here, and the agent tries again",
                          m->id, m->row.eid, cta_error_msg(rerr));
                cta_mig_doubt_add(d, m->id, m->row.eid, false);
                r = cta_error_wrap(err, "the container is not restored yet: this node's "
                                        "registry cannot be written (it stays locked here, "
                                        "and the agent restores it when it can)");
        } else {
                cta_envm_unlock(d, m->row.eid);
        }
        progress(m, 4, "failed", -1);
        return r;
}

/* ---- the call ----------------------------------------------------------------- */

struct v2v_ctx {
        struct cta_migrate_req req;
};

static void v2v_ctx_free(void *p)
{
        struct v2v_ctx *c = p;
        if (c)
                explicit_bzero(c->req.dst.password, sizeof(c->req.dst.password));
        free(c);
}

static int v2v_prepare(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct v2v_ctx *c = cta_xcalloc(1, sizeof(*c));
        int r;

        call->ctx = c;
        call->ctx_free = v2v_ctx_free;
        r = cta_req_parse_migrate_v2v(call->req->call_node, &c->req, err);
        if (r < 0)
                return r;
        if (c->req.type != 0)
                return cta_error_set(err, CTA_E_MIG_UNSUPPORTED_TYPE, 0,
                                     "unsupported migration type %ld: ctagent implements type 0 "
                                     "(offline migration)",
                                     c->req.type);
        if (c->req.n_eids > 1 && (c->req.has_new_veid || c->req.new_private[0] ||
                                  c->req.new_name[0]))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "options/config (new veid, private path or name) applies "
                                     "to one container; several eids were given");
        /* Every container must exist before anything moves. */
        for (size_t i = 0; i < c->req.n_eids; i++) {
                struct cta_ct_row row = { 0 };
                if (cta_store_ct_get(d->store, c->req.eids[i], &row, NULL) < 0)
                        return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0,
                                             "no container with eid %s on this node",
                                             c->req.eids[i]);
                cta_ct_row_done(&row);
        }
        return 0;
}

static int v2v_run(struct cta_call *call, struct cta_error **err)
{
        struct cta_daemon *d = call->s->d;
        struct v2v_ctx *c = call->ctx;

        /* Containers move in order; the first failure stops the list (the
         * ones before it have moved, the rest have not been touched). */
        for (size_t i = 0; i < c->req.n_eids; i++) {
                struct mig_src m = { .d = d, .call = call, .req = &c->req, .have_fd = -1 };
                int r = cta_store_ct_get(d->store, c->req.eids[i], &m.row, err);
                if (r < 0)
                        return r;
                r = migrate_one(&m, err);
                cta_buf_done(&m.phases);
                if (m.have_fd >= 0)
                        close(m.have_fd);
                cta_ct_row_done(&m.row);
                if (r < 0)
                        return c->req.n_eids > 1 ? cta_error_wrap(err, "container %zu of %zu",
                                                                   i + 1, c->req.n_eids)
                                                 : r;
        }
        return 0;
}

const struct cta_handler cta_relocator_handlers[] = {
        { "relocator", "migrate_v2v", CTA_H_BACKGROUND | CTA_H_DETACHED, v2v_run, NULL,
          v2v_prepare },
        /* ours: the operator settles a migration in doubt (mig_doubt.c) */
        { "relocator", "settle", CTA_H_BACKGROUND | CTA_H_DETACHED, cta_mig_settle_run, NULL,
          cta_mig_settle_prepare },
        { NULL, NULL, 0, NULL, NULL, NULL },
};
