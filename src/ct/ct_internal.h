/* Internals shared by the files of src/ct (not for other modules). */
#pragma once

#include <pthread.h>

#include "ct/ct.h"

struct ct_ops {
        const char *kind;
        void (*free)(struct cta_ct_backend *b);
        int (*node_setup)(struct cta_ct_backend *b, struct cta_error **err);
        int (*node_teardown)(struct cta_ct_backend *b, struct cta_error **err);
        /* config text already rendered and validated */
        int (*define)(struct cta_ct_backend *b, const struct cta_ct_spec *s, const char *config,
                      struct cta_error **err);
        int (*start)(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err);
        int (*stop)(struct cta_ct_backend *b, uint64_t veid, bool force, unsigned timeout_s,
                    struct cta_error **err);
        int (*state)(struct cta_ct_backend *b, uint64_t veid, enum cta_ct_state *ret,
                     struct cta_error **err);
        int (*init_pid)(struct cta_ct_backend *b, uint64_t veid, pid_t *ret,
                        struct cta_error **err);
        int (*undefine)(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err);
        int (*apply_limits)(struct cta_ct_backend *b, const struct cta_ct_spec *s,
                            struct cta_error **err);
        int (*list_running)(struct cta_ct_backend *b, uint64_t **ret_veids, size_t *ret_n,
                            struct cta_error **err);
};

struct cta_ct_backend {
        const struct ct_ops *ops;
        /* owned copies; node.* point into them */
        struct cta_ct_node node;
        char *state_dir, *node_id, *bridge, *bridge_cidr, *template_dir;
        char *lxcpath;  /* <state_dir>/lxc */
        char *fake_dir; /* <state_dir>/fake */
        unsigned cg_flags;
        struct ct_zygote *zygote; /* lxc: forks the liblxc children (ct_zygote.c) */
        pthread_mutex_t tpl_lock; /* template builds */
        pthread_mutex_t lock;     /* backend-specific (bridge setup, fake state) */
};

/* cta_error_wrap() that keeps the code r when the caller passed err == NULL
 * (cta_error_wrap() alone would then answer CTA_E_INTERNAL). */
#define CT_WRAP(r, err, ...) ((err) ? cta_error_wrap((err), __VA_ARGS__) : (r))

/* ct.c */
int ct_backend_new(const struct cta_ct_node *node, const struct ct_ops *ops,
                   struct cta_ct_backend **ret, struct cta_error **err);
bool ct_valid_veid(uint64_t veid);
uint64_t ct_fnv1a(uint64_t h, const void *data, size_t len);
#define CT_FNV_INIT 0xcbf29ce484222325ULL

/* ct_fs.c */
/* Run argv[0] (absolute path) with stdin on /dev/null, stdout+stderr captured
 * (at most 64 KiB kept, *ret_out may be NULL), a clean signal state and no
 * inherited descriptors. *ret_status = the wait status. Returns <0 only when it
 * could not run. */
int ct_run(const char *const argv[], char **ret_out, int *ret_status, struct cta_error **err);
/* ct_run and fail (CTA_E_IO or `code`) unless it exits 0; the message names what and
 * has the tail of the output. */
int ct_run_ok(int code, const char *what, const char *const argv[], char **ret_out,
              struct cta_error **err);
/* First of /usr/sbin, /usr/bin, /sbin, /bin that has an executable `name`; NULL if none. */
char *ct_find_tool(const char *name);
/* Recursively remove dfd/name (see cta_ct_private_remove()). ENOENT → 0. */
int ct_rm_tree_at(int dfd, const char *name, struct cta_error **err);
/* Write <root>/etc/hostname resolved inside root; 0 without writing if no /etc. */
int ct_write_hostname(const char *root, const char *hostname, struct cta_error **err);
/* Get a line-based config value ("key = value") from config text: malloc'd or NULL. */
char *ct_config_get(const char *config, const char *key);

/* ct_zygote.c: a fork server started while the process is single threaded.
 * fn runs in a fresh child per request, owns fd (the caller's result channel)
 * and must not return. */
#define CT_ZYGOTE_REQ_MAX 1024
struct ct_zygote;
typedef void (*ct_zygote_fn)(void *ctx, const void *req, size_t len, int fd)
        __attribute__((noreturn));
int ct_zygote_start(ct_zygote_fn fn, void *ctx, struct ct_zygote **ret, struct cta_error **err);
/* Hand one request and fd (the caller keeps its copy) to the server: 0, or
 * -errno (-EPIPE: the server is gone). */
int ct_zygote_spawn(struct ct_zygote *z, const void *req, size_t len, int fd);
/* Close the server's socket and reap it. NULL. */
struct ct_zygote *ct_zygote_stop(struct ct_zygote *z);
/* sendmsg all len bytes of p on a unix socket, with fd attached as SCM_RIGHTS
 * unless fd < 0: 0 or -errno. */
int ct_send_with_fd(int sock, const void *p, size_t len, int fd);
/* The first descriptor a received message carried (the caller owns it), or -1;
 * any further ones are closed. */
struct msghdr;
int ct_take_fd(struct msghdr *mh);

/* ct_lxc.c: cgroup dirs per hierarchy, for teardown */
int ct_cgroup_node_dirs(const char *node_id, char ***ret, struct cta_error **err);
