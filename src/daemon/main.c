/* ctagentd: the container host agent daemon. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cta_config.h"
#include "daemon/auth.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/envm.h"
#include "daemon/mig.h"
#include "net/loop.h"
#include "net/tls.h"
#include "proto/writer.h"
#include "store/store.h"
#include "util/log.h"
#include "util/util.h"

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: ctagentd [OPTIONS]\n"
                "\n"
                "The ctagent container host agent: serves the Virtuozzo Agent XML API 4.0.0\n"
                "over TLS (default 0.0.0.0:4434) and plain TCP (default 127.0.0.1:4433).\n"
                "\n"
                "Options:\n"
                "  -f, --foreground         run in the foreground, log to stderr (the only\n"
                "                           mode; systemd supervises the service)\n"
                "  -c, --config FILE        config file (default " CTA_DEFAULT_CONFIG ")\n"
                "      --check-config       validate the configuration and exit\n"
                "  -s, --state-dir DIR      state directory (default " CTA_DEFAULT_STATE_DIR ")\n"
                "  -l, --listen ADDR:PORT   TLS listener; port 0 picks a free port\n"
                "  -p, --plain-listen ADDR:PORT|none\n"
                "                           plain listener (loopback only unless\n"
                "                           plain_open = yes in the config)\n"
                "  -r, --ready-file FILE    once listening, write 'tls ADDR:PORT' and\n"
                "                           'plain ADDR:PORT' lines to FILE (atomically)\n"
                "  -t, --template-dir DIR   OS templates (default STATE_DIR/templates)\n"
                "      --log-level LEVEL    error, warning, notice, info (default), debug\n"
                "  -h, --help               show this help\n"
                "  -V, --version            show the version\n"
                "\n"
                "See ctagentd(8) and ctagentd.conf(5).\n");
}

enum { OPT_CHECK = 0x100, OPT_LOGLEVEL };

static const struct option long_opts[] = {
        { "foreground", no_argument, NULL, 'f' },
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, OPT_CHECK },
        { "state-dir", required_argument, NULL, 's' },
        { "listen", required_argument, NULL, 'l' },
        { "plain-listen", required_argument, NULL, 'p' },
        { "ready-file", required_argument, NULL, 'r' },
        { "template-dir", required_argument, NULL, 't' },
        { "log-level", required_argument, NULL, OPT_LOGLEVEL },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
};

struct cli_override {
        const char *key;
        const char *value;
};

static int parse_args(int argc, char **argv, struct cta_config *cfg, bool *ret_check)
{
        const char *config_path = NULL;
        struct cli_override ov[16];
        size_t nov = 0;
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "fc:s:l:p:r:t:hV", long_opts, NULL)) != -1) {
                const char *key = NULL;
                switch (c) {
                case 'f':
                        break;
                case 'c':
                        config_path = optarg;
                        break;
                case OPT_CHECK:
                        *ret_check = true;
                        break;
                case 's':
                        key = "state_dir";
                        break;
                case 'l':
                        key = "listen";
                        break;
                case 'p':
                        key = "plain_listen";
                        break;
                case 't':
                        key = "template_dir";
                        break;
                case OPT_LOGLEVEL:
                        key = "log_level";
                        break;
                case 'r':
                        free(cfg->ready_file);
                        cfg->ready_file = cta_xstrdup(optarg);
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                case 'V':
                        printf("ctagentd " CTA_VERSION " (Agent XML API 4.0.0)\n");
                        exit(0);
                default:
                        usage(stderr);
                        return -1;
                }
                if (key && nov < CTA_ARRAY_SIZE(ov))
                        ov[nov++] = (struct cli_override){ key, optarg };
        }
        if (optind < argc) {
                fprintf(stderr, "ctagentd: unexpected argument '%s'\n", argv[optind]);
                return -1;
        }
        /* Defaults, then the file, then the command line. */
        if (cta_config_load(cfg, config_path ? config_path : CTA_DEFAULT_CONFIG,
                            config_path != NULL, &err) < 0) {
                fprintf(stderr, "ctagentd: %s\n", cta_error_msg(err));
                return -1;
        }
        for (size_t i = 0; i < nov; i++)
                if (cta_config_set(cfg, ov[i].key, ov[i].value, &err) < 0) {
                        fprintf(stderr, "ctagentd: --%s: %s\n", ov[i].key, cta_error_msg(err));
                        return -1;
                }
        if (cta_config_validate(cfg, &err) < 0) {
                fprintf(stderr, "ctagentd: %s\n", cta_error_msg(err));
                return -1;
        }
        return 0;
}

static void on_signal(struct cta_loop *l, int fd, uint32_t events, void *data)
{
        struct signalfd_siginfo si;
        while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                log_notice("signal %u received, shutting down", si.ssi_signo);
                cta_loop_stop(l);
        }
}

static int write_ready_file(const char *path, const char *tls, const char *plain,
                            struct cta_error **err)
{
        _cleanup_(cta_buf_donep) struct cta_buf b = CTA_BUF_INIT(4096);
        (void)cta_buf_printf(&b, "tls %s\n", tls);
        if (plain[0])
                (void)cta_buf_printf(&b, "plain %s\n", plain);
        return cta_write_file_atomic(path, b.data, b.len, 0644, err);
}

static int open_state(struct cta_daemon *d, struct cta_error **err)
{
        struct cta_config *cfg = d->cfg;
        int r;

        umask(022);
        r = cta_mkdir_p(cfg->state_dir, 0700, err);
        if (r < 0)
                return r;
        if (chmod(cfg->state_dir, 0700) < 0)
                return cta_error_errno(err, CTA_E_IO, "chmod '%s'", cfg->state_dir);
        _cleanup_free_ char *db = cta_xasprintf("%s/ctagent.db", cfg->state_dir);
        r = cta_store_open(db, &d->store, err);
        if (r < 0)
                return r;
        r = cta_store_node_eid(d->store, d->node_eid, err);
        if (r < 0)
                return r;
        r = cta_tls_server_new(cfg->tls_cert, cfg->tls_key, cfg->state_dir, d->tls_fingerprint,
                               &d->tls, err);
        if (r < 0)
                return r;
        return 0;
}

static int run(struct cta_daemon *d, struct cta_error **err)
{
        char tls_addr[80], plain_addr[80];
        sigset_t mask;
        int r;

        r = open_state(d, err);
        if (r < 0)
                return r;
        log_notice("node eid %s, state in %s", d->node_eid, d->cfg->state_dir);
        log_notice("TLS certificate fingerprint %s", d->tls_fingerprint);

        d->rl = cta_ratelimit_new();
        d->linkrates = cta_mig_linkrates_new();
        r = cta_loop_new(&d->loop, err);
        if (r < 0)
                return r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        /* Block before any thread exists so that every thread inherits it. */
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (sfd < 0)
                return cta_error_errno(err, CTA_E_IO, "signalfd");
        r = cta_loop_add_fd(d->loop, sfd, EPOLLIN, on_signal, d);
        if (r < 0)
                return cta_error_set(err, CTA_E_IO, 0, "watch signals");

        r = cta_envm_init(d, err);
        if (r < 0)
                return r;
        r = cta_mig_recover(d, err);
        if (r < 0)
                return r;
        r = cta_server_start(d, tls_addr, plain_addr, err);
        if (r < 0)
                return r;
        log_notice("listening: tls %s%s%s", tls_addr, plain_addr[0] ? ", plain " : "",
                   plain_addr);
        if (d->cfg->ready_file) {
                r = write_ready_file(d->cfg->ready_file, tls_addr, plain_addr, err);
                if (r < 0)
                        return cta_error_wrap(err, "ready file");
        }
        cta_envm_started(d);
        r = cta_loop_run(d->loop);
        atomic_store(&d->stopping, true);
        cta_server_stop(d);
        cta_loop_del_fd(d->loop, sfd);
        return r < 0 ? cta_error_set(err, CTA_E_INTERNAL, 0, "event loop failed") : 0;
}

int main(int argc, char **argv)
{
        struct cta_config cfg;
        struct cta_daemon d = { .cfg = &cfg };
        _cleanup_(cta_error_freep) struct cta_error *err = NULL;
        bool check = false;

        cta_log_set_ident("ctagentd");
        cta_config_defaults(&cfg);
        if (parse_args(argc, argv, &cfg, &check) < 0) {
                cta_config_done(&cfg);
                return 1;
        }
        if (check) {
                printf("config OK\n");
                cta_config_done(&cfg);
                return 0;
        }
        cta_log_set_level(cfg.log_level);
        cta_reply_set_vendor_forms(cfg.vendor_forms);

        int r = run(&d, &err);
        if (r < 0)
                log_error("%s", cta_error_msg(err));
        /* Job threads still running hold references to the loop; a clean
         * exit does not wait for them (their work is journaled). */
        cta_envm_free(&d);
        d.store = cta_store_close(d.store);
        d.tls = cta_tls_server_free(d.tls);
        d.rl = cta_ratelimit_free(d.rl);
        if (atomic_load(&d.jobs) == 0) { /* (a job may still look a rate up) */
                d.loop = cta_loop_free(d.loop);
                cta_mig_linkrates_free(d.linkrates);
        }
        cta_config_done(&cfg);
        return r < 0 ? 1 : 0;
}
