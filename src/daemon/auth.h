/*
 * Authentication for system/login: passwords through PAM, the admin check,
 * and a per-source-address slowdown after failed logins.
 *
 * auth.c is the only user of libpam in the tree. It does not use the store.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cta_error;

/* The PAM service name (/etc/pam.d/ctagent, shipped as dist/pam.d/ctagent). */
#define CTA_PAM_SERVICE "ctagent"

/*
 * Check user + password through PAM service `service`: pam_authenticate()
 * then pam_acct_mgmt() (expired or locked accounts fail). The conversation
 * answers password prompts from memory and never logs the password; PAM's own
 * failure delay is replaced by a no-op because the caller applies the
 * per-address slowdown below.
 *
 * Returns 0, or -CTA_E_AUTH_FAILED with the message "authentication failed"
 * whatever the cause (unknown user, wrong password, expired account, bad
 * input), so a client cannot probe for user names. Only a broken PAM setup
 * (pam_start() failing) is reported as CTA_E_INTERNAL.
 *
 * Blocking (modules may sleep or talk to the network): call it on a worker
 * thread. Thread-safe: every call uses its own PAM handle, and calls are
 * serialized inside because stock modules (pam_cap) use non-reentrant libc
 * functions. For the same reason nothing else in the daemon may call
 * getpwnam()/getgrgid() & co. (use the _r variants) while logins can run.
 */
int cta_auth_pam(const char *service, const char *user, const char *password,
                 struct cta_error **err);

/*
 * A certificate login: the account checks of cta_auth_pam() (pam_acct_mgmt(): expired
 * accounts fail) without asking for a password, and a password locked with `usermod -L`
 * fails too. The caller has checked the certificate with cta_auth_cert(). Same errors
 * and threading as cta_auth_pam().
 */
int cta_auth_pam_account(const char *service, const char *user, struct cta_error **err);

/*
 * The authorized clients file lets a TLS client certificate stand for a password:
 * one "FINGERPRINT USER [comment]" per line (FINGERPRINT in the net/tls.h format, as
 * `ctagent keygen` prints it, either case), '#' starts a comment line. The file is read
 * at every certificate login, so an edit takes effect at once; it is ignored unless it
 * is a regular file of at most CTA_AUTH_CLIENTS_FILE_MAX bytes owned by root (or the
 * daemon's user) and writable by no one else.
 *
 * cta_auth_cert(): 0 if fingerprint is listed for user; -CTA_E_AUTH_FAILED if it is not
 * (or the file is missing), -CTA_E_IO (-CTA_E_TOO_LARGE if it grew past the limit while
 * being read) if the file is unusable; the message says which,
 * for the log (the client is told only that the login failed).
 * cta_auth_cert_match(): the parser on the file's text: 1 listed for user, 0 listed for
 * others only, -1 not listed.
 */
#define CTA_AUTH_CLIENTS_FILE_MAX (1024 * 1024)
int cta_auth_cert(const char *path, const char *fingerprint, const char *user,
                  struct cta_error **err);
int cta_auth_cert_match(const char *text, size_t len, const char *fingerprint,
                        const char *user);

#define CTA_AUTH_MAX_GROUPS 64

/* Who a logged-in user is, for the session token. */
struct cta_user_info {
        uid_t uid;
        gid_t gid;                          /* primary group */
        gid_t groups[CTA_AUTH_MAX_GROUPS];  /* primary first, then supplementary */
        int ngroups;                        /* entries used (list cut at 64) */
        bool is_admin;
};

/*
 * Look up user (getpwnam_r + getgrouplist). is_admin is true for uid 0 and
 * for members, primary or supplementary, of admin_group (NULL or "" = root
 * only; a group that does not exist admits nobody but root). Membership is
 * decided on the full group list even when groups[] is cut at 64.
 * Returns 0 and fills *ret, or -CTA_E_AUTH_FAILED ("authentication failed")
 * for an unknown user, or CTA_E_IO if the user database cannot be read.
 */
int cta_auth_user_info(const char *user, const char *admin_group, struct cta_user_info *ret,
                       struct cta_error **err);

/*
 * Failed-login slowdown per source address. The table is thread-safe and
 * capped (CTA_RATELIMIT_MAX entries; when full the entry with the oldest
 * failure is evicted). After n failures in a row the next attempt waits:
 * n = 0 or 1 -> 0 ms, 2 -> 250 ms, 3 -> 500 ms, ... doubling up to 8 s.
 * An address is forgotten 15 minutes after its last failure, and a success
 * clears it at once. Times are the caller's monotonic milliseconds
 * (cta_now_ms()), so tests can use synthetic time.
 * addr is the peer address as text without the port; only its first
 * CTA_RATELIMIT_ADDR_MAX - 1 bytes are compared.
 */
#define CTA_RATELIMIT_MAX 4096
#define CTA_RATELIMIT_ADDR_MAX 64
#define CTA_RATELIMIT_BASE_MS 250
#define CTA_RATELIMIT_CAP_MS 8000
#define CTA_RATELIMIT_FORGET_MS (15 * 60 * 1000)

struct cta_ratelimit;
/* Caller frees with cta_ratelimit_free() (NULL-safe, returns NULL). new()
 * returns NULL only if its mutex cannot be created. */
struct cta_ratelimit *cta_ratelimit_new(void);
struct cta_ratelimit *cta_ratelimit_free(struct cta_ratelimit *rl);
/* The delay to apply before answering the next attempt from addr. */
uint64_t cta_ratelimit_delay_ms(struct cta_ratelimit *rl, const char *addr, uint64_t now_ms);
void cta_ratelimit_fail(struct cta_ratelimit *rl, const char *addr, uint64_t now_ms);
void cta_ratelimit_success(struct cta_ratelimit *rl, const char *addr);
/* Number of addresses remembered (for tests and stats). */
size_t cta_ratelimit_count(struct cta_ratelimit *rl);
