/*
 * Containers: the only place that knows about LXC. The daemon drives
 * containers through a backend (an ops table): the real one runs them with
 * liblxc, the fake one keeps "containers" as directories plus state files so
 * unit tests and daemon tests run without root.
 *
 * Node layout (per agent state dir, so several agents can share a machine):
 *   <state_dir>/lxc/<name>/{config,lxc.log}   LXC's lxcpath, one dir per container
 *   <state_dir>/templates/                    default template dir
 *   <state_dir>/fake/                         fake backend state
 * and the private areas wherever the daemon puts them (ve_private).
 * The LXC name is "cta-<node_id>-<veid>", the cgroups live under
 * "ctagent-<node_id>/" in every hierarchy, the bridge is node->bridge or
 * "ctabr-<node_id>": two nodes never collide on names, cgroups or networks.
 *
 * Threads: every function may be called from any thread, several containers at
 * once. The daemon serializes operations on ONE veid (its per-container lock).
 * The LXC backend runs each liblxc call in a forked child, so liblxc never runs
 * in the multithreaded daemon; the child resets the signal mask and handlers,
 * closes inherited descriptors and starts a new session, and the container's
 * monitor is daemonized by LXC: containers outlive the agent (even SIGKILL).
 * The caller must not set SIGCHLD to SIG_IGN or reap children with
 * waitpid(-1): the module waits for its own children by pid.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cta_error;

/* env_statusType state numbers (agent-xml-api.md 6.5, proposed numbering):
 * the only table of them in the code. */
enum cta_ct_state {
        CTA_CT_UNKNOWN = 0,
        CTA_CT_NONEXISTENT = 1,
        CTA_CT_CONFIG = 2,
        CTA_CT_DOWN = 3,
        CTA_CT_MOUNTED = 4,
        CTA_CT_SUSPENDED = 5,
        CTA_CT_RUNNING = 6,
        CTA_CT_REPAIRING = 7,
};

/* env_statusType transition numbers; 0 = none. */
enum cta_ct_transition {
        CTA_TR_NONE = 0,
        CTA_TR_CREATING = 1,
        CTA_TR_STARTING = 2,
        CTA_TR_STOPPING = 3,
        CTA_TR_RESTARTING = 4,
        CTA_TR_DESTROYING = 5,
        CTA_TR_SETTING = 6,
        CTA_TR_MIGRATING = 7,
};

/* "running", "down", ...; "unknown" for values outside the table. */
const char *cta_ct_state_name(enum cta_ct_state s);
const char *cta_ct_transition_name(enum cta_ct_transition t);

#define CTA_CT_MAX_IPV4 8
#define CTA_CT_NODE_ID_MAX 8

/* Everything needed to define and run one container. */
struct cta_ct_spec {
        uint64_t veid;            /* > 0 */
        const char *hostname;     /* NULL = "ct<veid>"; RFC 1123 name, at most 64 bytes */
        const char *private_path; /* absolute, normalized: the container's root tree */
        /* "a.b.c.d/prefix"; without "/prefix" the bridge_cidr prefix is used (else /32).
         * n_ipv4 == 0: no network device but lo. */
        const char *ipv4[CTA_CT_MAX_IPV4];
        size_t n_ipv4;
        uint64_t mem_limit_bytes;   /* 0 = none */
        unsigned cpu_limit_percent; /* 0 = none; 100 = one full CPU, 250 = two and a half */
        const char *init_cmd;       /* NULL = /sbin/init; split on spaces by LXC */
};

/* One agent's place on the machine. Strings are copied by the backends. */
struct cta_ct_node {
        const char *state_dir;    /* absolute */
        const char *node_id;      /* [a-z0-9]{1,8}; see cta_ct_node_id_from_eid() */
        const char *bridge;       /* NULL = "ctabr-<node_id>"; at most 15 bytes */
        const char *bridge_cidr;  /* host address of the bridge ("10.77.0.1/24"); NULL = none */
        const char *template_dir; /* NULL = <state_dir>/templates */
};

struct cta_ct_backend;

/* The liblxc backend: root only. Creates <state_dir>/lxc and the template dir. */
int cta_ct_backend_lxc(const struct cta_ct_node *node, struct cta_ct_backend **ret,
                       struct cta_error **err);
/* The fake backend: a container is its private directory; the defined config and
 * the running flag are files under <state_dir>/fake, so they survive a restart of
 * the process (like real containers). start checks that the init program exists in
 * the private area; init_pid returns a made-up pid (not a process!). */
int cta_ct_backend_fake(const struct cta_ct_node *node, struct cta_ct_backend **ret,
                        struct cta_error **err);
struct cta_ct_backend *cta_ct_backend_free(struct cta_ct_backend *b);
/* "lxc" or "fake". */
const char *cta_ct_backend_kind(const struct cta_ct_backend *b);

/* Node level: make sure the bridge exists, is up and has bridge_cidr (with the
 * `ip` tool). The daemon calls it once at start-up; cta_ct_start() also calls it
 * when the bridge has gone. The fake backend does nothing. */
int cta_ct_node_setup(struct cta_ct_backend *b, struct cta_error **err);
/* Remove the bridge and the node's (empty) cgroup directories. Fails with
 * CTA_E_BUSY while a container of this node runs. For tests and uninstall. */
int cta_ct_node_teardown(struct cta_ct_backend *b, struct cta_error **err);

/* Templates: <template_dir>/<name> as a directory tree, or a tarball
 * <name>.tar[.gz|.xz|.zst|.bz2] / <name>.tgz, or <name> itself a tarball file.
 * "busybox" is built from the host's static /bin/busybox when missing.
 * *ret_path (caller frees) is the directory or tarball. CTA_E_TEMPLATE if none. */
int cta_ct_template_prepare(struct cta_ct_backend *b, const char *name, char **ret_path,
                            struct cta_error **err);
/* Copy the template into private_path (cp -a --reflink=auto, or tar -xpf for a tarball)
 * via a temp sibling and an atomic rename. CTA_E_PRIVATE_EXISTS if it exists. The
 * parent directory is created with mode 0700 if missing. */
int cta_ct_private_create(struct cta_ct_backend *b, const char *template_name,
                          const char *private_path, struct cta_error **err);
/* rm -rf that never follows symlinks and never crosses into another mount
 * (CTA_E_BUSY). The tree is first renamed aside, so a half-deleted area never
 * sits at its path. 0 if it does not exist. The container must be stopped. */
int cta_ct_private_remove(struct cta_ct_backend *b, const char *private_path,
                          struct cta_error **err);

/* Write (or rewrite) the container's config. Also writes <private>/etc/hostname
 * (inside the private root; symlinks there cannot escape it) when the private area
 * has an /etc. Takes effect at the next start; see cta_ct_apply_limits(). */
int cta_ct_define(struct cta_ct_backend *b, const struct cta_ct_spec *s, struct cta_error **err);
/* Start and wait until RUNNING. CTA_E_ENV_NOT_FOUND if not defined, CTA_E_BAD_STATE if
 * already running, CTA_E_CT_BACKEND (with the LXC log's last errors) if it fails. */
int cta_ct_start(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err);
/* Graceful: the halt signal (lxc.signal.halt; SIGRTMIN+3 when init blocks it, as systemd
 * does; else SIGPWR), re-sent after 1, 3, 8, 13 … s (PID 1 drops a signal that arrives
 * before it installed its handler), for up to timeout_s seconds (0 = 60, at most 3600),
 * then SIGKILL. force = SIGKILL now. 0 if it was not running. */
int cta_ct_stop(struct cta_ct_backend *b, uint64_t veid, bool force, unsigned timeout_s,
                struct cta_error **err);
/* NONEXISTENT (not defined), DOWN, RUNNING (also while starting/stopping) or SUSPENDED
 * (frozen). */
int cta_ct_state(struct cta_ct_backend *b, uint64_t veid, enum cta_ct_state *ret,
                 struct cta_error **err);
/* The pid (in our pid namespace) of the container's init; CTA_E_BAD_STATE if not running. */
int cta_ct_init_pid(struct cta_ct_backend *b, uint64_t veid, pid_t *ret, struct cta_error **err);
/* A descriptor that polls readable once the container's init has exited (a pidfd; the
 * caller owns it), so that the daemon notices at once a container halted from inside or
 * stopped by hand. CTA_E_BAD_STATE if it does not run or its init has exited already (it
 * is stopping); CTA_E_NOT_IMPLEMENTED for the fake backend, which runs no processes. A pid
 * reused between the lookup and the open gives another process's descriptor: its exit is
 * then only a wake-up with nothing changed. */
int cta_ct_exit_fd(struct cta_ct_backend *b, uint64_t veid, int *ret_fd, struct cta_error **err);
/* Remove the config dir (config + log). CTA_E_BAD_STATE while running; 0 if not defined. */
int cta_ct_undefine(struct cta_ct_backend *b, uint64_t veid, struct cta_error **err);
/* Live update of the memory and CPU limits of a running container (0 = remove the
 * limit). Does not touch the config: call cta_ct_define() too so the limits
 * persist. 0 without doing anything if the container is not running. */
int cta_ct_apply_limits(struct cta_ct_backend *b, const struct cta_ct_spec *s,
                        struct cta_error **err);
/* veids of THIS node's containers that are running (for reconcile after an agent
 * crash), sorted ascending; *ret_veids is malloc'd (NULL when none). */
int cta_ct_list_running(struct cta_ct_backend *b, uint64_t **ret_veids, size_t *ret_n,
                        struct cta_error **err);

/* ---- pure helpers (no side effects; exposed for tests and the daemon) ---- */

/* A short node id from the node eid: 8 lower-case hex digits of a hash of the
 * (case-folded) eid. out[CTA_CT_NODE_ID_MAX + 1]. */
void cta_ct_node_id_from_eid(const char *eid, char out[CTA_CT_NODE_ID_MAX + 1]);
/* Validate a node description (ids, bridge name, CIDR, absolute paths). */
int cta_ct_node_validate(const struct cta_ct_node *node, struct cta_error **err);
/* Validate a spec (veid, hostname, paths, addresses, init command) so that
 * nothing from it can break out of its config line. */
int cta_ct_spec_validate(const struct cta_ct_spec *s, struct cta_error **err);
/* "cta-<node_id>-<veid>" (caller frees). */
char *cta_ct_lxc_name(const struct cta_ct_node *node, uint64_t veid);
/* The bridge the node uses (node->bridge or the default) into out[16]. */
void cta_ct_bridge_name(const struct cta_ct_node *node, char out[16]);

/* Where the memory / cpu / devices controllers are: a bit set = on the cgroup2
 * (unified) hierarchy, so the config uses lxc.cgroup2.* keys for it. */
enum {
        CTA_CT_CG_MEMORY_V2 = 1u << 0,
        CTA_CT_CG_CPU_V2 = 1u << 1,
        CTA_CT_CG_DEVICES_V2 = 1u << 2,
};
/* The flags for this machine (from /proc/self/cgroup). */
unsigned cta_ct_cgroup_detect(void);

/* The LXC config text for a spec on a node (caller frees). No lxc.apparmor.* keys;
 * ttys and the console off; rootfs = dir:<private_path>; veth on the node's bridge
 * when the spec has addresses; the limits as cgroup keys per cg_flags. */
int cta_ct_render_config(const struct cta_ct_node *node, unsigned cg_flags,
                         const struct cta_ct_spec *s, char **ret, struct cta_error **err);
