/*
 * The fake backend: no root, no processes. A container is its private
 * directory; its state is files under <state_dir>/fake:
 *   <veid>.conf    the rendered LXC config (defined)
 *   <veid>.run     "running", holding the made-up init pid
 *   <veid>.limits  the limits last applied live ("mem=N cpu=P")
 * Files, not memory, so a restarted agent finds its "running" containers, as
 * with LXC. start checks that the init program exists in the private area, so
 * a broken template fails as it would for real.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ct/ct_internal.h"
#include "util/error.h"
#include "util/util.h"

/* Above PID_MAX_LIMIT (2^22): never a real process, kill() gets ESRCH. */
#define FAKE_PID_BASE 5000000

static char *fake_path(const struct cta_ct_backend *b, uint64_t veid, const char *sfx)
{
        return cta_xasprintf("%s/%" PRIu64 ".%s", b->fake_dir, veid, sfx);
}

static bool exists(const char *p)
{
        return access(p, F_OK) == 0;
}

static int fake_define(struct cta_ct_backend *b, const struct cta_ct_spec *s, const char *config,
                       struct cta_error **err)
{
        _cleanup_free_ char *p = fake_path(b, s->veid, "conf");
        int r = cta_mkdir_p(b->fake_dir, 0700, err);
        if (r < 0)
                return r;
        pthread_mutex_lock(&b->lock);
        r = cta_write_file_atomic(p, config, strlen(config), 0600, err);
        pthread_mutex_unlock(&b->lock);
        return r;
}

static int start_locked(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err)
{
        _cleanup_free_ char *conf = fake_path(b, veid, "conf"), *run = fake_path(b, veid, "run");
        _cleanup_free_ char *text = NULL, *rootfs = NULL, *init = NULL, *initpath = NULL,
                           *pidtxt = NULL;
        struct stat st;

        if (cta_read_file(conf, 1 << 20, &text, NULL, NULL) < 0)
                return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0,
                                     "container %" PRIu64 " is not defined", veid);
        if (exists(run))
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "container %" PRIu64 " is already running", veid);
        rootfs = ct_config_get(text, "lxc.rootfs.path");
        init = ct_config_get(text, "lxc.init.cmd");
        if (!rootfs || strncmp(rootfs, "dir:", 4) != 0 || !init)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "bad fake config for %" PRIu64, veid);
        char *sp = strchr(init, ' ');
        if (sp)
                *sp = '\0';
        initpath = cta_xasprintf("%s%s", rootfs + 4, init);
        /* lstat: the init may be a symlink that only resolves inside the container */
        if (lstat(initpath, &st) < 0)
                return cta_error_set(err, CTA_E_CT_BACKEND, ENOENT,
                                     "start container %" PRIu64 ": no init %s in %s", veid, init,
                                     rootfs + 4);
        pidtxt = cta_xasprintf("%d\n", (int)(FAKE_PID_BASE + veid % 1000000));
        return cta_write_file_atomic(run, pidtxt, strlen(pidtxt), 0600, err);
}

static int fake_start(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err)
{
        pthread_mutex_lock(&b->lock);
        int r = start_locked(b, veid, err);
        pthread_mutex_unlock(&b->lock);
        return r;
}

static int fake_stop(struct cta_ct_backend *b, uint64_t veid, bool force, unsigned timeout_s,
                     struct cta_error **err)
{
        _cleanup_free_ char *conf = fake_path(b, veid, "conf"), *run = fake_path(b, veid, "run");
        int r = 0;
        pthread_mutex_lock(&b->lock);
        if (!exists(conf))
                r = cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0,
                                  "container %" PRIu64 " is not defined", veid);
        else if (unlink(run) < 0 && errno != ENOENT)
                r = cta_error_errno(err, CTA_E_IO, "remove '%s'", run);
        pthread_mutex_unlock(&b->lock);
        return r;
}

static int fake_state(struct cta_ct_backend *b, uint64_t veid, enum cta_ct_state *ret,
                      struct cta_error **err)
{
        _cleanup_free_ char *conf = fake_path(b, veid, "conf"), *run = fake_path(b, veid, "run");
        pthread_mutex_lock(&b->lock);
        *ret = !exists(conf) ? CTA_CT_NONEXISTENT : exists(run) ? CTA_CT_RUNNING : CTA_CT_DOWN;
        pthread_mutex_unlock(&b->lock);
        return 0;
}

static int fake_init_pid(struct cta_ct_backend *b, uint64_t veid, pid_t *ret,
                         struct cta_error **err)
{
        _cleanup_free_ char *run = fake_path(b, veid, "run"), *text = NULL;
        int64_t pid;
        pthread_mutex_lock(&b->lock);
        int r = cta_read_file(run, 64, &text, NULL, NULL);
        pthread_mutex_unlock(&b->lock);
        if (r < 0)
                return cta_error_set(err, CTA_E_BAD_STATE, 0,
                                     "container %" PRIu64 " is not running", veid);
        char *nl = strchr(text, '\n');
        if (nl)
                *nl = '\0';
        if (cta_parse_i64(text, 1, INT32_MAX, &pid) < 0)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "bad fake pid file '%s'", run);
        *ret = (pid_t)pid;
        return 0;
}

static int fake_undefine(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err)
{
        _cleanup_free_ char *conf = fake_path(b, veid, "conf"), *run = fake_path(b, veid, "run"),
                           *lim = fake_path(b, veid, "limits");
        int r = 0;
        pthread_mutex_lock(&b->lock);
        if (exists(run))
                r = cta_error_set(err, CTA_E_BAD_STATE, 0,
                                  "container %" PRIu64 " is running: stop it first", veid);
        else if ((unlink(conf) < 0 && errno != ENOENT) || (unlink(lim) < 0 && errno != ENOENT))
                r = cta_error_errno(err, CTA_E_IO, "undefine container %" PRIu64, veid);
        pthread_mutex_unlock(&b->lock);
        return r;
}

static int fake_apply_limits(struct cta_ct_backend *b, const struct cta_ct_spec *s,
                             struct cta_error **err)
{
        _cleanup_free_ char *run = fake_path(b, s->veid, "run"),
                           *lim = fake_path(b, s->veid, "limits");
        _cleanup_free_ char *text = cta_xasprintf("mem=%" PRIu64 " cpu=%u\n", s->mem_limit_bytes,
                                                  s->cpu_limit_percent);
        int r = 0;
        pthread_mutex_lock(&b->lock);
        if (exists(run))
                r = cta_write_file_atomic(lim, text, strlen(text), 0600, err);
        pthread_mutex_unlock(&b->lock);
        return r;
}

static int fake_list_running(struct cta_ct_backend *b, uint64_t **ret_veids, size_t *ret_n,
                             struct cta_error **err)
{
        uint64_t *v = NULL;
        size_t n = 0;
        pthread_mutex_lock(&b->lock);
        DIR *d = opendir(b->fake_dir);
        if (!d && errno != ENOENT) {
                int r = cta_error_errno(err, CTA_E_IO, "open '%s'", b->fake_dir);
                pthread_mutex_unlock(&b->lock);
                return r;
        }
        for (struct dirent *de; d && (de = readdir(d));) {
                char *dot = strrchr(de->d_name, '.');
                uint64_t veid;
                if (!dot || !streq(dot, ".run"))
                        continue;
                *dot = '\0';
                if (cta_parse_u64(de->d_name, INT64_MAX, &veid) < 0 || veid == 0)
                        continue;
                v = cta_xrealloc(v, (n + 1) * sizeof(*v));
                v[n++] = veid;
        }
        if (d)
                closedir(d);
        pthread_mutex_unlock(&b->lock);
        if (n)
                qsort(v, n, sizeof(*v), cta_u64_cmp);
        *ret_veids = v;
        *ret_n = n;
        return 0;
}

static const struct ct_ops fake_ops = {
        .kind = "fake",
        .define = fake_define,
        .start = fake_start,
        .stop = fake_stop,
        .state = fake_state,
        .init_pid = fake_init_pid,
        .undefine = fake_undefine,
        .apply_limits = fake_apply_limits,
        .list_running = fake_list_running,
};

int cta_ct_backend_fake(const struct cta_ct_node *node, struct cta_ct_backend **ret,
                        struct cta_error **err)
{
        struct cta_ct_backend *b = NULL;
        int r = ct_backend_new(node, &fake_ops, &b, err);
        if (r < 0)
                return r;
        /* render keys for this machine, as the LXC backend would */
        b->cg_flags = cta_ct_cgroup_detect();
        *ret = b;
        return 0;
}
