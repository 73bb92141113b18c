/*
 * File-system side of containers, common to both backends: running helper
 * tools, templates (and the busybox template builder), private areas (copy,
 * safe removal) and the hostname file inside a container.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ct/ct_internal.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

#define CT_RUN_OUT_MAX (64 * 1024)
#define CT_RM_DEPTH_MAX 2048

static char *const ct_run_env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };

int ct_run(const char *const argv[], char **ret_out, int *ret_status, struct cta_error **err)
{
        _cleanup_(cta_buf_donep) struct cta_buf out = CTA_BUF_INIT(0);
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t at;
        sigset_t none, dflt;
        int pfd[2], status = 0, r;
        pid_t pid;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return cta_error_errno(err, CTA_E_IO, "pipe");
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
        posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
        /* the daemon's sockets must not leak into tools (or containers) */
        posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        posix_spawnattr_init(&at);
        /* the daemon may block or ignore signals; a tool must start clean */
        sigemptyset(&none);
        sigfillset(&dflt);
        sigdelset(&dflt, SIGKILL);
        sigdelset(&dflt, SIGSTOP);
        posix_spawnattr_setsigmask(&at, &none);
        posix_spawnattr_setsigdefault(&at, &dflt);
        posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        r = posix_spawn(&pid, argv[0], &fa, &at, (char *const *)argv, ct_run_env);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&at);
        (void)close(pfd[1]);
        if (r != 0) {
                (void)close(pfd[0]);
                errno = r;
                return cta_error_errno(err, CTA_E_IO, "run %s", argv[0]);
        }
        for (;;) {
                char tmp[4096];
                ssize_t n = read(pfd[0], tmp, sizeof(tmp));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                /* keep the tail: that is where tools put their errors */
                if (out.len + (size_t)n > CT_RUN_OUT_MAX) {
                        size_t drop = out.len + (size_t)n - CT_RUN_OUT_MAX / 2;
                        cta_buf_consume(&out, drop < out.len ? drop : out.len);
                }
                cta_buf_append(&out, tmp, (size_t)n);
        }
        (void)close(pfd[0]);
        while (waitpid(pid, &status, 0) < 0) {
                if (errno != EINTR)
                        return cta_error_errno(err, CTA_E_INTERNAL, "wait for %s", argv[0]);
        }
        *ret_status = status;
        if (ret_out)
                *ret_out = cta_buf_steal(&out, NULL);
        return 0;
}

/* The last few hundred bytes of a tool's output, on one printable line. */
static char *output_tail(const char *out)
{
        size_t n = out ? strlen(out) : 0;
        while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
                n--;
        size_t start = n > 300 ? n - 300 : 0;
        char *s = cta_xstrndup(out ? out + start : "", n - start);
        for (char *p = s; *p; p++)
                if (*p == '\n')
                        *p = ';';
        char *clean = cta_sanitize(s, 320);
        free(s);
        return clean;
}

int ct_run_ok(int code, const char *what, const char *const argv[], char **ret_out,
              struct cta_error **err)
{
        _cleanup_free_ char *out = NULL;
        int status, r;

        r = ct_run(argv, &out, &status, err);
        if (r < 0)
                return CT_WRAP(r, err, "%s", what);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                _cleanup_free_ char *tail = output_tail(out);
                if (WIFEXITED(status))
                        return cta_error_set(err, code, 0, "%s: %s exited with %d: %s", what,
                                             argv[0], WEXITSTATUS(status), tail);
                return cta_error_set(err, code, 0, "%s: %s killed by signal %d", what, argv[0],
                                     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        }
        if (ret_out)
                *ret_out = TAKE_PTR(out);
        return 0;
}

char *ct_find_tool(const char *name)
{
        static const char *const dirs[] = { "/usr/sbin", "/usr/bin", "/sbin", "/bin" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(dirs); i++) {
                char *p = cta_xasprintf("%s/%s", dirs[i], name);
                if (access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

/* ---- removal ---- */

static int rm_rec(int dfd, const char *name, dev_t dev, unsigned depth, struct cta_error **err)
{
        struct statx stx;
        int r = 0;

        if (statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx) < 0) {
                if (errno == ENOENT)
                        return 0;
                return cta_error_errno(err, CTA_E_IO, "stat '%s'", name);
        }
        if (!S_ISDIR(stx.stx_mode)) {
                if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
                        return cta_error_errno(err, CTA_E_IO, "remove '%s'", name);
                return 0;
        }
        /* never descend into something mounted there: it is not ours to delete */
        if (((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
             (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) ||
            (dev != 0 && makedev(stx.stx_dev_major, stx.stx_dev_minor) != dev))
                return cta_error_set(err, CTA_E_BUSY, 0,
                                     "'%s' is a mount point: unmount it first", name);
        if (depth > CT_RM_DEPTH_MAX)
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "directory tree too deep");

        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "open directory '%s'", name);
        DIR *d = fdopendir(fd);
        if (!d) {
                (void)close(fd);
                return cta_error_errno(err, CTA_E_IO, "open directory '%s'", name);
        }
        struct dirent *de;
        while ((errno = 0, de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
                        r = rm_rec(dirfd(d), de->d_name,
                                   makedev(stx.stx_dev_major, stx.stx_dev_minor), depth + 1, err);
                        if (r < 0)
                                break;
                } else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
                        r = cta_error_errno(err, CTA_E_IO, "remove '%s'", de->d_name);
                        break;
                }
        }
        if (r == 0 && errno != 0)
                r = cta_error_errno(err, CTA_E_IO, "read directory '%s'", name);
        (void)closedir(d);
        if (r < 0)
                return CT_WRAP(r, err, "in '%s'", name);
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return cta_error_errno(err, CTA_E_IO, "remove directory '%s'", name);
        return 0;
}

int ct_rm_tree_at(int dfd, const char *name, struct cta_error **err)
{
        return rm_rec(dfd, name, 0, 0, err);
}

/* ---- hostname ---- */

int ct_write_hostname(const char *root, const char *hostname, struct cta_error **err)
{
        static const char tmpname[] = ".hostname.ctagent-new";
        _cleanup_close_ int rootfd = -1, etcfd = -1, fd = -1;
        struct open_how how = {
                .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                /* resolve as if chrooted: the container's symlinks cannot point out */
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
        };
        _cleanup_free_ char *line = cta_xasprintf("%s\n", hostname);

        rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0) {
                if (errno == ENOENT)
                        return 0;
                return cta_error_errno(err, CTA_E_IO, "open private area '%s'", root);
        }
        etcfd = (int)syscall(SYS_openat2, rootfd, "etc", &how, sizeof(how));
        if (etcfd < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0;
                return cta_error_errno(err, CTA_E_IO, "open '%s/etc'", root);
        }
        /* Leave a file that already says it alone: a migrated container's
         * private area must arrive exactly as it left (mode, times, xattrs). */
        {
                char cur[300];
                _cleanup_close_ int rfd = openat(etcfd, "hostname",
                                                 O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                ssize_t n = rfd >= 0 ? read(rfd, cur, sizeof(cur)) : -1;
                if (n >= 0 && (size_t)n == strlen(line) && memcmp(cur, line, (size_t)n) == 0)
                        return 0;
        }
        (void)unlinkat(etcfd, tmpname, 0);
        fd = openat(etcfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "create '%s/etc/%s'", root, tmpname);
        size_t len = strlen(line);
        if (write(fd, line, len) != (ssize_t)len) {
                int r = cta_error_errno(err, CTA_E_IO, "write '%s/etc/hostname'", root);
                (void)unlinkat(etcfd, tmpname, 0);
                return r;
        }
        if (renameat(etcfd, tmpname, etcfd, "hostname") < 0) {
                int r = cta_error_errno(err, CTA_E_IO, "replace '%s/etc/hostname'", root);
                (void)unlinkat(etcfd, tmpname, 0);
                return r;
        }
        return 0;
}

char *ct_config_get(const char *config, const char *key)
{
        size_t klen = strlen(key);
        for (const char *l = config; l && *l;) {
                const char *e = strchr(l, '\n');
                size_t n = e ? (size_t)(e - l) : strlen(l);
                if (n > klen && strncmp(l, key, klen) == 0 &&
                    (l[klen] == ' ' || l[klen] == '=')) {
                        const char *v = l + klen;
                        while (v < l + n && (*v == ' ' || *v == '='))
                                v++;
                        return cta_xstrndup(v, (size_t)(l + n - v));
                }
                l = e ? e + 1 : NULL;
        }
        return NULL;
}

/* ---- templates ---- */

static bool valid_template_name(const char *n)
{
        size_t len = n ? strlen(n) : 0;
        if (len == 0 || len > 128 || n[0] == '.' || n[0] == '-')
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = n[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-' || c == '+'))
                        return false;
        }
        return true;
}

/* 0 and *ret_path, or -CTA_E_TEMPLATE without touching err. */
static int find_template(const struct cta_ct_backend *b, const char *name, char **ret_path,
                         bool *ret_is_dir)
{
        static const char *const sfx[] = { "", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.zst",
                                           ".tar.bz2" };
        for (size_t i = 0; i < CTA_ARRAY_SIZE(sfx); i++) {
                char *p = cta_xasprintf("%s/%s%s", b->template_dir, name, sfx[i]);
                struct stat st;
                if (stat(p, &st) == 0 && (S_ISREG(st.st_mode) || (i == 0 && S_ISDIR(st.st_mode)))) {
                        *ret_path = p;
                        *ret_is_dir = S_ISDIR(st.st_mode);
                        return 0;
                }
                free(p);
        }
        return -CTA_E_TEMPLATE;
}

/* A dynamically linked busybox would not run inside a bare tree. */
static int elf_is_static(const char *path, bool *ret)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        Elf64_Ehdr eh;
        if (fd < 0 || pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh))
                return -CTA_E_IO;
        if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
            eh.e_phentsize != sizeof(Elf64_Phdr))
                return -CTA_E_INVALID;
        for (unsigned i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;
                if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
                    (ssize_t)sizeof(ph))
                        return -CTA_E_IO;
                if (ph.p_type == PT_INTERP) {
                        *ret = false;
                        return 0;
                }
        }
        *ret = true;
        return 0;
}

static int copy_file(const char *src, const char *dst, mode_t mode, struct cta_error **err)
{
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return cta_error_errno(err, CTA_E_IO, "open '%s'", src);
        _cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                       mode);
        if (out < 0)
                return cta_error_errno(err, CTA_E_IO, "create '%s'", dst);
        for (;;) {
                char buf[65536];
                ssize_t n = read(in, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return cta_error_errno(err, CTA_E_IO, "read '%s'", src);
                if (n == 0)
                        break;
                for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(out, buf + off, (size_t)(n - off));
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0)
                                return cta_error_errno(err, CTA_E_IO, "write '%s'", dst);
                        off += w;
                }
        }
        if (fchmod(out, mode) < 0)
                return cta_error_errno(err, CTA_E_IO, "chmod '%s'", dst);
        return 0;
}

static int write_text(const char *root, const char *rel, const char *text, mode_t mode,
                      struct cta_error **err)
{
        _cleanup_free_ char *p = cta_xasprintf("%s/%s", root, rel);
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                                      mode);
        size_t len = strlen(text);
        if (fd < 0 || write(fd, text, len) != (ssize_t)len || fchmod(fd, mode) < 0)
                return cta_error_errno(err, CTA_E_IO, "write '%s'", p);
        return 0;
}

/* PID 1 of the busybox template. LXC has set the hostname (lxc.uts.name) and eth0's
 * addresses and gateway (lxc.net.0.ipv4.*) before exec'ing it. The shell only runs
 * a trap between commands, so it sleeps in the background and `wait`s: a halt signal
 * (SIGPWR from lxc's shutdown, SIGUSR1/2 and SIGTERM from busybox halt/poweroff/
 * reboot) interrupts the wait at once. `wait` also reaps orphans re-parented to us.
 * No `sync` on the way out: it would flush every file system of the host and can
 * take longer than the stop timeout on a busy machine. */
static const char busybox_init[] =
        "#!/bin/sh\n"
        "# PID 1 of a ctagent busybox container (written by ctagent's template builder).\n"
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
        "export PATH\n"
        "ctagent_halt() {\n"
        "        [ -x /etc/rc.shutdown ] && /etc/rc.shutdown </dev/null >/dev/null 2>&1\n"
        "        kill -TERM -1 2>/dev/null\n"
        "        exit 0\n"
        "}\n"
        "trap ctagent_halt PWR TERM INT USR1 USR2\n"
        "cd /\n"
        "ip link set lo up 2>/dev/null\n"
        "[ -x /etc/rc.local ] && /etc/rc.local </dev/null >/dev/null 2>&1 &\n"
        "while :; do\n"
        "        sleep 3600 &\n"
        "        wait $!\n"
        "done\n";

static int build_busybox(struct cta_ct_backend *b, char **ret_path, struct cta_error **err)
{
        static const char *const bb_paths[] = { "/bin/busybox", "/usr/bin/busybox",
                                                "/sbin/busybox", "/usr/sbin/busybox" };
        static const struct {
                const char *path;
                mode_t mode;
        } dirs[] = {
                { "bin", 0755 },      { "sbin", 0755 },     { "usr", 0755 },
                { "usr/bin", 0755 },  { "usr/sbin", 0755 }, { "lib", 0755 },
                { "etc", 0755 },      { "etc/init.d", 0755 }, { "dev", 0755 },
                { "proc", 0555 },     { "sys", 0555 },      { "tmp", 01777 },
                { "root", 0700 },     { "home", 0755 },     { "mnt", 0755 },
                { "run", 0755 },      { "var", 0755 },      { "var/log", 0755 },
                { "var/tmp", 01777 },
        };
        static const struct {
                const char *path, *text;
                mode_t mode;
        } files[] = {
                { "sbin/init", busybox_init, 0755 },
                { "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0644 },
                { "etc/group", "root:x:0:\nnogroup:x:65534:\n", 0644 },
                { "etc/shadow", "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", 0600 },
                { "etc/hostname", "localhost\n", 0644 },
                { "etc/hosts", "127.0.0.1\tlocalhost\n", 0644 },
                { "etc/profile", "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n", 0644 },
                { "etc/os-release", "NAME=BusyBox\nID=busybox\nPRETTY_NAME=\"BusyBox (ctagent)\"\n",
                  0644 },
        };
        _cleanup_free_ char *tmp = NULL, *dst = NULL, *list = NULL, *bbdst = NULL;
        const char *bb = NULL;
        bool is_static = false;
        int r;

        for (size_t i = 0; i < CTA_ARRAY_SIZE(bb_paths) && !bb; i++)
                if (access(bb_paths[i], X_OK) == 0)
                        bb = bb_paths[i];
        if (!bb)
                return cta_error_set(err, CTA_E_TEMPLATE, 0,
                                     "busybox template: no /bin/busybox (install busybox-static)");
        if (elf_is_static(bb, &is_static) < 0 || !is_static)
                return cta_error_set(err, CTA_E_TEMPLATE, 0,
                                     "busybox template: %s is not a static ELF binary "
                                     "(install busybox-static)",
                                     bb);
        r = ct_run_ok(CTA_E_TEMPLATE, "busybox template: list applets",
                      (const char *const[]){ bb, "--list-full", NULL }, &list, err);
        if (r < 0)
                return r;
        r = cta_mkdir_p(b->template_dir, 0755, err);
        if (r < 0)
                return r;
        tmp = cta_xasprintf("%s/.busybox.XXXXXX", b->template_dir);
        if (!mkdtemp(tmp))
                return cta_error_errno(err, CTA_E_IO, "create '%s'", tmp);

        for (size_t i = 0; i < CTA_ARRAY_SIZE(dirs) && r == 0; i++) {
                _cleanup_free_ char *p = cta_xasprintf("%s/%s", tmp, dirs[i].path);
                if (mkdir(p, dirs[i].mode) < 0 || chmod(p, dirs[i].mode) < 0)
                        r = cta_error_errno(err, CTA_E_IO, "create '%s'", p);
        }
        bbdst = cta_xasprintf("%s/bin/busybox", tmp);
        if (r == 0)
                r = copy_file(bb, bbdst, 0755, err);
        for (size_t i = 0; i < CTA_ARRAY_SIZE(files) && r == 0; i++)
                r = write_text(tmp, files[i].path, files[i].text, files[i].mode, err);
        /* applet links: "usr/bin/[" … → /bin/busybox; our own init stays */
        for (char *save = NULL, *l = strtok_r(list, "\n", &save); l && r == 0;
             l = strtok_r(NULL, "\n", &save)) {
                if (l[0] == '/' || strstr(l, "..") || strchr(l, ' ') || streq(l, "sbin/init") ||
                    streq(l, "linuxrc") || streq(l, "bin/busybox"))
                        continue;
                _cleanup_free_ char *p = cta_xasprintf("%s/%s", tmp, l);
                char *slash = strrchr(p, '/');
                *slash = '\0';
                r = cta_mkdir_p(p, 0755, err);
                *slash = '/';
                if (r == 0 && symlink("/bin/busybox", p) < 0 && errno != EEXIST)
                        r = cta_error_errno(err, CTA_E_IO, "create '%s'", p);
        }
        if (r == 0 && chmod(tmp, 0755) < 0)
                r = cta_error_errno(err, CTA_E_IO, "chmod '%s'", tmp);
        dst = cta_xasprintf("%s/busybox", b->template_dir);
        if (r == 0 && rename(tmp, dst) < 0) {
                if (errno != EEXIST && errno != ENOTEMPTY)
                        r = cta_error_errno(err, CTA_E_IO, "rename '%s' to '%s'", tmp, dst);
                /* else another agent sharing the template dir built it first */
        } else if (r == 0) {
                log_info("built the busybox template in %s", dst);
                *ret_path = TAKE_PTR(dst);
                return 0;
        }
        {
                _cleanup_(cta_error_freep) struct cta_error *e2 = NULL;
                (void)ct_rm_tree_at(AT_FDCWD, tmp, &e2);
        }
        if (r < 0)
                return CT_WRAP(r, err, "busybox template");
        *ret_path = TAKE_PTR(dst);
        return 0;
}

int cta_ct_template_prepare(struct cta_ct_backend *b, const char *name, char **ret_path,
                            struct cta_error **err)
{
        bool is_dir;
        char *path = NULL;
        int r;

        if (!valid_template_name(name))
                return cta_error_set(err, CTA_E_TEMPLATE, 0, "invalid template name");
        pthread_mutex_lock(&b->tpl_lock);
        r = find_template(b, name, &path, &is_dir);
        if (r < 0 && streq(name, "busybox")) {
                r = build_busybox(b, &path, err);
        } else if (r < 0) {
                _cleanup_free_ char *n = cta_sanitize(name, 64);
                r = cta_error_set(err, CTA_E_TEMPLATE, 0, "template '%s' not found in %s", n,
                                  b->template_dir);
        }
        pthread_mutex_unlock(&b->tpl_lock);
        if (r < 0)
                return r;
        *ret_path = path;
        return 0;
}

/* ---- private areas ---- */

static bool valid_private_path(const char *p)
{
        /* the same rule as the spec's private_path; and never "/" or a top dir */
        struct cta_ct_spec s = { .veid = 1, .private_path = p };
        if (cta_ct_spec_validate(&s, NULL) < 0)
                return false;
        return strchr(p + 1, '/') != NULL;
}

int cta_ct_private_create(struct cta_ct_backend *b, const char *template_name,
                          const char *private_path, struct cta_error **err)
{
        _cleanup_free_ char *tpl = NULL, *tmp = NULL, *parent = NULL, *src = NULL, *cp = NULL,
                           *tar = NULL;
        struct stat st;
        bool is_dir;
        int r;

        if (!valid_private_path(private_path))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "private area must be an absolute normalized path");
        r = cta_ct_template_prepare(b, template_name, &tpl, err);
        if (r < 0)
                return r;
        if (stat(tpl, &st) < 0)
                return cta_error_errno(err, CTA_E_TEMPLATE, "template '%s'", tpl);
        is_dir = S_ISDIR(st.st_mode);
        if (lstat(private_path, &st) == 0)
                return cta_error_set(err, CTA_E_PRIVATE_EXISTS, 0, "'%s' already exists",
                                     private_path);
        parent = cta_xstrdup(private_path);
        *strrchr(parent, '/') = '\0';
        if (parent[0]) {
                r = cta_mkdir_p(parent, 0700, err);
                if (r < 0)
                        return r;
        }
        tmp = cta_xasprintf("%s.cta-new-XXXXXX", private_path);
        if (!mkdtemp(tmp))
                return cta_error_errno(err, CTA_E_IO, "create '%s'", tmp);
        if (is_dir) {
                cp = ct_find_tool("cp");
                src = cta_xasprintf("%s/.", tpl);
                r = cp ? ct_run_ok(CTA_E_TEMPLATE, "copy the template",
                                   (const char *const[]){ cp, "-a", "--reflink=auto", "--", src,
                                                          tmp, NULL },
                                   NULL, err)
                       : cta_error_set(err, CTA_E_IO, 0, "no cp tool");
        } else {
                tar = ct_find_tool("tar");
                if (!tar)
                        r = cta_error_set(err, CTA_E_IO, 0, "no tar tool");
                else if (geteuid() == 0)
                        r = ct_run_ok(CTA_E_TEMPLATE, "extract the template",
                                      (const char *const[]){ tar, "--numeric-owner", "--xattrs",
                                                             "--xattrs-include=*", "-xpf", tpl,
                                                             "-C", tmp, NULL },
                                      NULL, err);
                else
                        r = ct_run_ok(CTA_E_TEMPLATE, "extract the template",
                                      (const char *const[]){ tar, "--numeric-owner", "-xpf", tpl,
                                                             "-C", tmp, NULL },
                                      NULL, err);
        }
        if (r == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, private_path, RENAME_NOREPLACE) < 0) {
                if (errno == EEXIST)
                        r = cta_error_set(err, CTA_E_PRIVATE_EXISTS, 0, "'%s' already exists",
                                          private_path);
                else
                        r = cta_error_errno(err, CTA_E_IO, "rename '%s' to '%s'", tmp,
                                            private_path);
        }
        if (r < 0) {
                _cleanup_(cta_error_freep) struct cta_error *e2 = NULL;
                (void)ct_rm_tree_at(AT_FDCWD, tmp, &e2);
                return r;
        }
        return 0;
}

int cta_ct_private_remove(struct cta_ct_backend *b, const char *private_path,
                          struct cta_error **err)
{
        static unsigned counter;
        _cleanup_free_ char *del = NULL;
        struct stat st;
        uint64_t rnd;

        if (!valid_private_path(private_path))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0,
                                     "private area must be an absolute normalized path");
        if (streq(private_path, b->state_dir) || streq(private_path, b->template_dir) ||
            streq(private_path, b->lxcpath))
                return cta_error_set(err, CTA_E_BAD_PARAM, 0, "refusing to remove '%s'",
                                     private_path);
        if (lstat(private_path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return cta_error_errno(err, CTA_E_IO, "stat '%s'", private_path);
        }
        rnd = ct_fnv1a(CT_FNV_INIT, &st.st_ino, sizeof(st.st_ino)) ^ cta_now_ms();
        del = cta_xasprintf("%s.cta-del-%d-%u-%08" PRIx32, private_path, (int)getpid(),
                            __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED), (uint32_t)rnd);
        /* out of the way first: a half-deleted tree never sits where a container
         * (or a new create) would look */
        if (rename(private_path, del) < 0) {
                if (errno == EBUSY)
                        return cta_error_set(err, CTA_E_BUSY, EBUSY,
                                             "'%s' is a mount point: unmount it first",
                                             private_path);
                return cta_error_errno(err, CTA_E_IO, "rename '%s'", private_path);
        }
        int r = ct_rm_tree_at(AT_FDCWD, del, err);
        if (r < 0)
                return CT_WRAP(r, err, "remove private area '%s' (left as '%s')", private_path,
                                      del);
        return 0;
}
