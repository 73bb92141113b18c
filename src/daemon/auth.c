/*
 * PAM authentication, client certificates, the admin check and the failed-login
 * slowdown.
 * The only user of libpam in the tree.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <security/pam_appl.h>
#include <shadow.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/auth.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

/* Longest login name we pass on (LOGIN_NAME_MAX on Linux). */
#define AUTH_USER_MAX 256
/* Linux-PAM refuses longer answers anyway (pam_unix: PAM_MAX_RESP_SIZE). */
#define AUTH_PASSWORD_MAX PAM_MAX_RESP_SIZE
/* Bounds for growing getpwnam_r/getgrnam_r buffers and group lists. */
#define AUTH_NSS_BUF_MAX (1024 * 1024)
#define AUTH_GROUPS_MAX 65536

static int auth_failed(struct cta_error **err)
{
        /* One message for every cause: a client must not learn whether the
         * user exists, the password was wrong or the account is locked. */
        return cta_error_set(err, CTA_E_AUTH_FAILED, 0, "authentication failed");
}

/* A name we are willing to hand to PAM and NSS: printable ASCII, no
 * separators used by passwd/group files, and no leading '-' that a helper
 * could read as an option. Anything else cannot be a real account name. */
static bool user_name_ok(const char *user)
{
        size_t n;

        if (!user || !*user || user[0] == '-')
                return false;
        n = strnlen(user, AUTH_USER_MAX + 1);
        if (n > AUTH_USER_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)user[i];
                if (c <= 0x20 || c >= 0x7f || c == ':' || c == '/' || c == ',')
                        return false;
        }
        return true;
}

/* ---- PAM ---- */

struct conv_data {
        const char *password;
};

static void free_responses(struct pam_response *r, int n)
{
        if (!r)
                return;
        for (int i = 0; i < n; i++) {
                if (r[i].resp) {
                        explicit_bzero(r[i].resp, strlen(r[i].resp));
                        free(r[i].resp);
                }
        }
        free(r);
}

/*
 * Answer every hidden prompt with the password. A visible prompt (echo on)
 * asks for something we do not have (the user name was given to pam_start,
 * so it is an OTP or similar), so the conversation fails. Messages for the
 * user are dropped: there is nobody to show them to. PAM frees the answers.
 */
static int conv_cb(int n, const struct pam_message **msg, struct pam_response **resp,
                   void *appdata)
{
        const struct conv_data *d = appdata;
        struct pam_response *r;

        if (n <= 0 || n > PAM_MAX_NUM_MSG)
                return PAM_CONV_ERR;
        r = calloc((size_t)n, sizeof(*r));
        if (!r)
                return PAM_BUF_ERR;
        for (int i = 0; i < n; i++) {
                switch (msg[i]->msg_style) {
                case PAM_PROMPT_ECHO_OFF:
                        r[i].resp = strdup(d->password);
                        if (!r[i].resp) {
                                free_responses(r, n);
                                return PAM_BUF_ERR;
                        }
                        break;
                case PAM_ERROR_MSG:
                case PAM_TEXT_INFO:
                        break;
                default:
                        free_responses(r, n);
                        return PAM_CONV_ERR;
                }
        }
        *resp = r;
        return PAM_SUCCESS;
}

/* Installed as PAM_FAIL_DELAY: modules ask for a delay after a failure
 * (pam_unix: 2 s), and libpam calls this instead of sleeping. The caller
 * delays per source address instead, which does not tie up a worker thread
 * for every failed guess. */
static void no_fail_delay(int retval, unsigned usec_delay, void *appdata)
{
}

/*
 * One PAM transaction at a time. Separate handles are not enough: modules
 * call non-reentrant libc functions (Debian's common-auth runs pam_cap, which
 * uses getpwnam()/getgrgid(); ThreadSanitizer catches the race in
 * test_auth). A login costs one password hash (~30 ms) since PAM's failure
 * sleep is disabled, so serializing is cheap; the price is that a module
 * hanging on the network delays the other logins, which beats corrupting
 * memory.
 */
static pthread_mutex_t pam_lock = PTHREAD_MUTEX_INITIALIZER;

/* A password locked with `usermod -L` / `passwd -l` ('!' before the hash) also locks
 * certificate logins here, which pam_unix's account check alone would let through. */
static bool password_locked(const char *user)
{
        char buf[4096];
        struct spwd sp, *res = NULL;
        int r = getspnam_r(user, &sp, buf, sizeof(buf), &res);

        if (r == ERANGE)
                return true; /* an entry we cannot read is not one we let in */
        if (r != 0 || !res)
                return false; /* no shadow entry (e.g. a directory user): PAM decides */
        return res->sp_pwdp && res->sp_pwdp[0] == '!';
}

/* password NULL: the account checks only (a certificate login). */
static int auth_pam_locked(const char *service, const char *user, const char *password,
                           struct cta_error **err)
{
        struct conv_data d = { .password = password };
        const struct pam_conv conv = { .conv = conv_cb, .appdata_ptr = &d };
        pam_handle_t *pamh = NULL;
        const void *item = NULL;
        int pr;

        pr = pam_start(service, user, &conv, &pamh);
        if (pr != PAM_SUCCESS)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "PAM service '%s': %s", service,
                                     pam_strerror(pamh, pr));

        pr = pam_set_item(pamh, PAM_FAIL_DELAY, (const void *)no_fail_delay);
        if (pr == PAM_SUCCESS && password)
                pr = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
        else if (pr == PAM_SUCCESS && password_locked(user))
                pr = PAM_ACCT_EXPIRED;
        if (pr == PAM_SUCCESS)
                pr = pam_acct_mgmt(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
        /* A module may rename the user (e.g. case folding, mapping). The
         * caller looks up and grants rights to the name it asked about, so
         * a different final name is a failure, not a silent identity swap. */
        if (pr == PAM_SUCCESS) {
                pr = pam_get_item(pamh, PAM_USER, &item);
                if (pr == PAM_SUCCESS && (!item || !streq((const char *)item, user)))
                        pr = PAM_AUTH_ERR;
        }
        if (pr != PAM_SUCCESS) {
                _cleanup_free_ char *u = cta_sanitize(user, 64);
                /* Server-side detail only; the client gets auth_failed(). */
                log_debug("PAM login of '%s' via '%s' failed: %s", u, service,
                          pam_strerror(pamh, pr));
        }
        (void)pam_end(pamh, pr);
        return pr == PAM_SUCCESS ? 0 : auth_failed(err);
}

int cta_auth_pam(const char *service, const char *user, const char *password,
                 struct cta_error **err)
{
        int r;

        assert(service);
        if (!user_name_ok(user) || !password || !*password ||
            strnlen(password, AUTH_PASSWORD_MAX + 1) > AUTH_PASSWORD_MAX)
                return auth_failed(err);

        (void)pthread_mutex_lock(&pam_lock);
        r = auth_pam_locked(service, user, password, err);
        (void)pthread_mutex_unlock(&pam_lock);
        return r;
}

int cta_auth_pam_account(const char *service, const char *user, struct cta_error **err)
{
        int r;

        assert(service);
        if (!user_name_ok(user))
                return auth_failed(err);
        (void)pthread_mutex_lock(&pam_lock);
        r = auth_pam_locked(service, user, NULL, err);
        (void)pthread_mutex_unlock(&pam_lock);
        return r;
}

/* ---- authorized client certificates ---- */

/* "SHA256:" and 32 colon-separated hex pairs, either case: the net/tls.h format. */
static bool fingerprint_syntax_ok(const char *f, size_t n)
{
        if (n != 7 + 32 * 3 - 1 || strncasecmp(f, "SHA256:", 7) != 0)
                return false;
        for (size_t i = 7; i < n; i++) {
                bool colon = (i - 7) % 3 == 2;
                if (colon ? f[i] != ':' : !isxdigit((unsigned char)f[i]))
                        return false;
        }
        return true;
}

/* Only root (or the daemon's own user) may decide who gets in without a password. */
static int clients_file_open(const char *path, struct cta_error **err)
{
        struct stat st;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

        if (fd < 0 && errno == ENOENT)
                return cta_error_set(err, CTA_E_AUTH_FAILED, 0,
                                     "a client certificate, but no authorized clients file "
                                     "'%s' (certificate logins are off)",
                                     path);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_IO, "authorized clients file '%s'", path);
        if (fstat(fd, &st) < 0) {
                int e = errno;
                close(fd);
                return cta_error_set(err, CTA_E_IO, e, "authorized clients file '%s': %s", path,
                                     strerror(e));
        }
        if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
            (st.st_mode & 022) || st.st_size > CTA_AUTH_CLIENTS_FILE_MAX) {
                close(fd);
                return cta_error_set(err, CTA_E_IO, 0,
                                     "authorized clients file '%s' ignored: it must be a regular "
                                     "file of at most %d bytes, owned by root, writable by no "
                                     "one else (mode 0600 or 0644)",
                                     path, CTA_AUTH_CLIENTS_FILE_MAX);
        }
        return fd;
}

/* The next blank-separated field in [*p, end) (a CR ends it too): its start and length;
 * *p moves past it. */
static const char *next_field(const char **p, const char *end, size_t *len)
{
        const char *s = *p, *f;

        while (s < end && (*s == ' ' || *s == '\t'))
                s++;
        f = s;
        while (s < end && *s != ' ' && *s != '\t' && *s != '\r')
                s++;
        *len = (size_t)(s - f);
        *p = s;
        return f;
}

int cta_auth_cert_match(const char *text, size_t len, const char *fingerprint,
                        const char *user)
{
        const char *p = text, *end = text + len;
        bool listed = false;

        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                const char *le = eol ? eol : end;
                size_t fn, un;
                const char *f = next_field(&p, le, &fn);
                const char *u = next_field(&p, le, &un);

                p = eol ? eol + 1 : end;
                if (fn == 0 || f[0] == '#' || !fingerprint_syntax_ok(f, fn) ||
                    strncasecmp(f, fingerprint, fn) != 0 || fingerprint[fn] != '\0')
                        continue;
                listed = true;
                if (un == strlen(user) && memcmp(u, user, un) == 0)
                        return 1;
        }
        return listed ? 0 : -1;
}

int cta_auth_cert(const char *path, const char *fingerprint, const char *user,
                  struct cta_error **err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int fd, r, m;

        if (!user_name_ok(user) || !fingerprint || !*fingerprint)
                return auth_failed(err);
        fd = clients_file_open(path, err);
        if (fd < 0)
                return fd;
        /* the fd checked, not the path again: the file read is the file vetted */
        r = cta_read_fd(fd, path, CTA_AUTH_CLIENTS_FILE_MAX, &buf, &len, err);
        close(fd);
        if (r < 0) /* (read error, or grown beyond the limit since the check) */
                return r;
        m = cta_auth_cert_match(buf, len, fingerprint, user);
        if (m > 0)
                return 0;
        return cta_error_set(err, CTA_E_AUTH_FAILED, 0, "certificate %s is %s in '%s'",
                             fingerprint, m == 0 ? "listed for another user" : "not listed",
                             path);
}

/* ---- users and groups ---- */

static long nss_buf_start(int name)
{
        long n = sysconf(name);
        return n > 0 && n <= AUTH_NSS_BUF_MAX ? n : 4096;
}

/* Not-found answers of getgrnam_r/getpwnam_r besides 0 (getpwnam_r(3)). */
static bool nss_not_found(int r)
{
        return r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM;
}

/* Resolve a group name; *found = false if there is no such group. */
static int admin_gid(const char *group, gid_t *ret, bool *found, struct cta_error **err)
{
        _cleanup_free_ char *buf = NULL;
        size_t size = (size_t)nss_buf_start(_SC_GETGR_R_SIZE_MAX);
        struct group gr, *res = NULL;
        int r;

        for (;;) {
                buf = cta_xrealloc(buf, size);
                r = getgrnam_r(group, &gr, buf, size, &res);
                if (r != ERANGE)
                        break;
                if (size >= AUTH_NSS_BUF_MAX)
                        return cta_error_set(err, CTA_E_IO, r, "look up group: entry too large");
                size *= 2;
        }
        if (!res) {
                if (!nss_not_found(r))
                        return cta_error_set(err, CTA_E_IO, r, "look up group: %s", strerror(r));
                *found = false;
                return 0;
        }
        *ret = gr.gr_gid;
        *found = true;
        return 0;
}

/* All groups of user (primary included), malloc'd into *ret. */
static int user_groups(const char *user, gid_t primary, gid_t **ret, int *ret_n,
                       struct cta_error **err)
{
        _cleanup_free_ gid_t *list = NULL;
        int cap = CTA_AUTH_MAX_GROUPS;

        for (int tries = 0; tries < 8; tries++) {
                int n = cap;

                list = cta_xrealloc(list, (size_t)cap * sizeof(*list));
                if (getgrouplist(user, primary, list, &n) >= 0) {
                        *ret = TAKE_PTR(list);
                        *ret_n = n;
                        return 0;
                }
                /* n is now the size needed; the list may still grow between
                 * calls, so at least double. */
                if (cap >= AUTH_GROUPS_MAX)
                        break;
                cap = n > cap ? n : cap * 2;
                if (cap > AUTH_GROUPS_MAX)
                        cap = AUTH_GROUPS_MAX;
        }
        return cta_error_set(err, CTA_E_IO, 0, "list groups: too many groups");
}

int cta_auth_user_info(const char *user, const char *admin_group, struct cta_user_info *ret,
                       struct cta_error **err)
{
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ gid_t *all = NULL;
        size_t size = (size_t)nss_buf_start(_SC_GETPW_R_SIZE_MAX);
        struct passwd pw, *res = NULL;
        struct cta_user_info info = { .ngroups = 0 };
        bool have_admin = false;
        gid_t agid = 0;
        int nall = 0, r;

        if (!user_name_ok(user))
                return auth_failed(err);
        for (;;) {
                buf = cta_xrealloc(buf, size);
                r = getpwnam_r(user, &pw, buf, size, &res);
                if (r != ERANGE)
                        break;
                if (size >= AUTH_NSS_BUF_MAX)
                        return cta_error_set(err, CTA_E_IO, r, "look up user: entry too large");
                size *= 2;
        }
        if (!res) {
                if (!nss_not_found(r))
                        return cta_error_set(err, CTA_E_IO, r, "look up user: %s", strerror(r));
                return auth_failed(err);
        }
        info.uid = pw.pw_uid;
        info.gid = pw.pw_gid;

        r = user_groups(user, pw.pw_gid, &all, &nall, err);
        if (r < 0)
                return r;
        if (admin_group && *admin_group) {
                r = admin_gid(admin_group, &agid, &have_admin, err);
                if (r < 0)
                        return r;
        }

        /* Primary first, then the rest without duplicates, cut at the cap. */
        info.groups[info.ngroups++] = pw.pw_gid;
        for (int i = 0; i < nall; i++) {
                bool dup = false;

                if (have_admin && all[i] == agid)
                        info.is_admin = true;
                for (int j = 0; j < info.ngroups && !dup; j++)
                        dup = info.groups[j] == all[i];
                if (!dup && info.ngroups < CTA_AUTH_MAX_GROUPS)
                        info.groups[info.ngroups++] = all[i];
        }
        if (pw.pw_uid == 0 || (have_admin && pw.pw_gid == agid))
                info.is_admin = true;

        *ret = info;
        return 0;
}

/* ---- failed-login slowdown ---- */

/*
 * A fixed pool of entries, found through a seeded hash (addresses are chosen
 * by the peer, so the seed keeps them from piling into one chain) and kept on
 * a list ordered by last failure, oldest first: eviction and expiry take the
 * head. Indices instead of pointers keep the pool one allocation.
 */
#define RL_BUCKETS 8192 /* power of two, 2x the pool */
#define RL_NONE (-1)

struct rl_entry {
        char addr[CTA_RATELIMIT_ADDR_MAX];
        uint64_t last_fail_ms;
        uint32_t fails;
        int32_t hnext;        /* bucket chain, or free list */
        int32_t prev, next;   /* age list */
};

struct cta_ratelimit {
        pthread_mutex_t lock;
        uint64_t seed;
        int32_t head, tail, free;
        size_t count;
        int32_t buckets[RL_BUCKETS];
        struct rl_entry e[CTA_RATELIMIT_MAX];
};

static uint32_t rl_hash(const struct cta_ratelimit *rl, const char *key)
{
        /* FNV-1a, seeded. */
        uint64_t h = 0xcbf29ce484222325ULL ^ rl->seed;

        for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
                h ^= *p;
                h *= 0x100000001b3ULL;
        }
        h ^= h >> 29;
        return (uint32_t)h & (RL_BUCKETS - 1);
}

static void rl_key(const char *addr, char key[CTA_RATELIMIT_ADDR_MAX])
{
        size_t n = strnlen(addr ? addr : "", CTA_RATELIMIT_ADDR_MAX - 1);

        memcpy(key, addr ? addr : "", n);
        key[n] = '\0';
}

static int32_t rl_find(const struct cta_ratelimit *rl, const char *key)
{
        for (int32_t i = rl->buckets[rl_hash(rl, key)]; i != RL_NONE; i = rl->e[i].hnext)
                if (streq(rl->e[i].addr, key))
                        return i;
        return RL_NONE;
}

static void rl_list_unlink(struct cta_ratelimit *rl, int32_t i)
{
        struct rl_entry *e = &rl->e[i];

        if (e->prev != RL_NONE)
                rl->e[e->prev].next = e->next;
        else
                rl->head = e->next;
        if (e->next != RL_NONE)
                rl->e[e->next].prev = e->prev;
        else
                rl->tail = e->prev;
        e->prev = e->next = RL_NONE;
}

static void rl_list_append(struct cta_ratelimit *rl, int32_t i)
{
        struct rl_entry *e = &rl->e[i];

        e->prev = rl->tail;
        e->next = RL_NONE;
        if (rl->tail != RL_NONE)
                rl->e[rl->tail].next = i;
        else
                rl->head = i;
        rl->tail = i;
}

static void rl_remove(struct cta_ratelimit *rl, int32_t i)
{
        int32_t *pp = &rl->buckets[rl_hash(rl, rl->e[i].addr)];

        while (*pp != i) {
                assert(*pp != RL_NONE);
                pp = &rl->e[*pp].hnext;
        }
        *pp = rl->e[i].hnext;
        rl_list_unlink(rl, i);
        memset(rl->e[i].addr, 0, sizeof(rl->e[i].addr));
        rl->e[i].hnext = rl->free;
        rl->free = i;
        rl->count--;
}

static bool rl_expired(const struct rl_entry *e, uint64_t now_ms)
{
        return now_ms >= e->last_fail_ms && now_ms - e->last_fail_ms >= CTA_RATELIMIT_FORGET_MS;
}

/* Drop expired entries from the old end of the list. */
static void rl_expire(struct cta_ratelimit *rl, uint64_t now_ms)
{
        while (rl->head != RL_NONE && rl_expired(&rl->e[rl->head], now_ms))
                rl_remove(rl, rl->head);
}

static uint64_t rl_delay_for(uint32_t fails)
{
        if (fails < 2)
                return 0;
        if (fails - 2 >= 6) /* 250 << 5 = 8000 */
                return CTA_RATELIMIT_CAP_MS;
        uint64_t d = (uint64_t)CTA_RATELIMIT_BASE_MS << (fails - 2);
        return d < CTA_RATELIMIT_CAP_MS ? d : CTA_RATELIMIT_CAP_MS;
}

struct cta_ratelimit *cta_ratelimit_new(void)
{
        struct cta_ratelimit *rl = cta_xcalloc(1, sizeof(*rl));

        if (pthread_mutex_init(&rl->lock, NULL) != 0) {
                free(rl);
                return NULL;
        }
        if (getrandom(&rl->seed, sizeof(rl->seed), GRND_NONBLOCK) != sizeof(rl->seed))
                rl->seed = (uint64_t)cta_now_ms() ^ ((uint64_t)getpid() << 32);
        rl->head = rl->tail = RL_NONE;
        for (size_t b = 0; b < RL_BUCKETS; b++)
                rl->buckets[b] = RL_NONE;
        /* Free list in index order. */
        for (int32_t i = 0; i < CTA_RATELIMIT_MAX; i++) {
                rl->e[i].hnext = i + 1 < CTA_RATELIMIT_MAX ? i + 1 : RL_NONE;
                rl->e[i].prev = rl->e[i].next = RL_NONE;
        }
        rl->free = 0;
        return rl;
}

struct cta_ratelimit *cta_ratelimit_free(struct cta_ratelimit *rl)
{
        if (!rl)
                return NULL;
        (void)pthread_mutex_destroy(&rl->lock);
        free(rl);
        return NULL;
}

uint64_t cta_ratelimit_delay_ms(struct cta_ratelimit *rl, const char *addr, uint64_t now_ms)
{
        char key[CTA_RATELIMIT_ADDR_MAX];
        uint64_t d = 0;
        int32_t i;

        rl_key(addr, key);
        (void)pthread_mutex_lock(&rl->lock);
        rl_expire(rl, now_ms);
        i = rl_find(rl, key);
        if (i != RL_NONE) {
                if (rl_expired(&rl->e[i], now_ms))
                        rl_remove(rl, i);
                else
                        d = rl_delay_for(rl->e[i].fails);
        }
        (void)pthread_mutex_unlock(&rl->lock);
        return d;
}

void cta_ratelimit_fail(struct cta_ratelimit *rl, const char *addr, uint64_t now_ms)
{
        char key[CTA_RATELIMIT_ADDR_MAX];
        struct rl_entry *e;
        int32_t i;

        rl_key(addr, key);
        (void)pthread_mutex_lock(&rl->lock);
        rl_expire(rl, now_ms);
        i = rl_find(rl, key);
        if (i != RL_NONE && rl_expired(&rl->e[i], now_ms)) {
                rl_remove(rl, i);
                i = RL_NONE;
        }
        if (i == RL_NONE) {
                uint32_t b = rl_hash(rl, key);

                if (rl->free == RL_NONE)
                        rl_remove(rl, rl->head); /* full: forget the oldest failure */
                i = rl->free;
                e = &rl->e[i];
                rl->free = e->hnext;
                memcpy(e->addr, key, sizeof(key));
                e->fails = 0;
                e->hnext = rl->buckets[b];
                rl->buckets[b] = i;
                rl->count++;
        } else {
                rl_list_unlink(rl, i);
        }
        e = &rl->e[i];
        if (e->fails < UINT32_MAX)
                e->fails++;
        e->last_fail_ms = now_ms;
        rl_list_append(rl, i);
        (void)pthread_mutex_unlock(&rl->lock);
}

void cta_ratelimit_success(struct cta_ratelimit *rl, const char *addr)
{
        char key[CTA_RATELIMIT_ADDR_MAX];
        int32_t i;

        rl_key(addr, key);
        (void)pthread_mutex_lock(&rl->lock);
        i = rl_find(rl, key);
        if (i != RL_NONE)
                rl_remove(rl, i);
        (void)pthread_mutex_unlock(&rl->lock);
}

size_t cta_ratelimit_count(struct cta_ratelimit *rl)
{
        size_t n;

        (void)pthread_mutex_lock(&rl->lock);
        n = rl->count;
        (void)pthread_mutex_unlock(&rl->lock);
        return n;
}
