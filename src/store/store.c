/*
 * The node database on SQLite.
 *
 * One connection per store, opened in multi-thread mode and serialized by
 * st->lock: every public function takes the lock for its whole duration, so
 * sqlite3_errmsg()/sqlite3_changes() read inside it belong to that call and a
 * multi-statement change is one transaction nobody else can interleave with.
 * Statements are prepared once (lazily) with bound parameters only; the SQL
 * text is always a constant from this file.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/log.h"
#include "util/util.h"

/* Identifies our files ("CTAG"), so we never migrate someone else's database. */
#define CTA_STORE_APP_ID 0x43544147
/* How long to wait for another process holding the database lock. */
#define CTA_STORE_BUSY_TIMEOUT_MS 5000
#define NODE_EID_KEY "cta.node_eid"

/*
 * Forward migrations: migrations[i] takes the schema from version i to i + 1
 * and sets user_version itself, so a version and its tables always change
 * together in the one transaction that cta_store_open() runs.
 */
static const char *const migrations[] = {
        /* 0 -> 1 */
        "CREATE TABLE meta (\n"
        "        key TEXT PRIMARY KEY NOT NULL,\n"
        "        value TEXT NOT NULL\n"
        ");\n"
        "CREATE TABLE passes (\n"
        "        name TEXT PRIMARY KEY NOT NULL,\n"
        "        expires_at INTEGER NOT NULL\n"
        ");\n"
        "CREATE INDEX passes_expires ON passes(expires_at);\n"
        "CREATE TABLE containers (\n"
        "        eid TEXT PRIMARY KEY NOT NULL COLLATE NOCASE,\n"
        "        veid INTEGER NOT NULL UNIQUE CHECK (veid >= 0),\n"
        "        name TEXT UNIQUE,\n"
        "        hostname TEXT,\n"
        "        description TEXT,\n"
        "        private_path TEXT NOT NULL UNIQUE,\n"
        "        os_template TEXT,\n"
        "        on_boot INTEGER NOT NULL DEFAULT 0 CHECK (on_boot IN (0, 1)),\n"
        "        config_json TEXT,\n"
        "        state INTEGER NOT NULL DEFAULT 0,\n"
        "        transition INTEGER NOT NULL DEFAULT 0,\n"
        "        created_at INTEGER NOT NULL,\n"
        "        updated_at INTEGER NOT NULL\n"
        ");\n"
        /* No foreign key to containers: the source deletes its row when a
         * migration ends and the destination has none until it commits, but
         * the journal entry must outlive both. */
        "CREATE TABLE migrations (\n"
        "        id TEXT PRIMARY KEY NOT NULL COLLATE NOCASE,\n"
        "        role TEXT NOT NULL CHECK (role IN ('src', 'dst')),\n"
        "        ct_eid TEXT NOT NULL COLLATE NOCASE,\n"
        "        peer TEXT,\n"
        "        state TEXT NOT NULL,\n"
        "        step INTEGER NOT NULL DEFAULT 0,\n"
        "        detail TEXT,\n"
        "        created_at INTEGER NOT NULL,\n"
        "        updated_at INTEGER NOT NULL\n"
        ");\n"
        "CREATE INDEX migrations_state ON migrations(state);\n"
        "PRAGMA user_version = 1;\n",
};
_Static_assert(CTA_ARRAY_SIZE(migrations) == CTA_STORE_SCHEMA_VERSION,
               "one migration per schema version");

#define CT_COLS                                                                                    \
        "eid, veid, name, hostname, description, private_path, os_template, on_boot, "            \
        "config_json, state, transition, created_at, updated_at"
#define MIG_COLS "id, role, ct_eid, peer, state, step, detail, created_at, updated_at"
#define MIG_FINISHED "('done', 'failed', 'cancelled')"

enum stmt_id {
        S_BEGIN,
        S_COMMIT,
        S_ROLLBACK,
        S_META_GET,
        S_META_SET,
        S_META_INIT,
        S_PASS_ADD,
        S_PASS_CONSUME,
        S_PASS_PURGE,
        S_CT_EXISTS,
        S_CT_CLASH,
        S_CT_INSERT,
        S_CT_UPDATE,
        S_CT_SET_STATE,
        S_CT_DELETE,
        S_CT_GET,
        S_CT_GET_VEID,
        S_CT_GET_NAME,
        S_CT_LIST,
        S_CT_VEIDS_FROM,
        S_MIG_PUT,
        S_MIG_SET_STEP,
        S_MIG_GET,
        S_MIG_UNFINISHED,
        _S_MAX,
};

static const char *const stmt_sql[_S_MAX] = {
        /* IMMEDIATE takes the write lock up front: a read-then-write
         * transaction can then never fail half way with SQLITE_BUSY. */
        [S_BEGIN] = "BEGIN IMMEDIATE",
        [S_COMMIT] = "COMMIT",
        [S_ROLLBACK] = "ROLLBACK",
        [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
        [S_META_SET] = "INSERT INTO meta (key, value) VALUES (?1, ?2) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [S_META_INIT] = "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
        [S_PASS_ADD] = "INSERT INTO passes (name, expires_at) VALUES (?1, ?2) "
                       "ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at",
        /* One statement deletes and reports, so two consumers of the same
         * pass cannot both see it. */
        [S_PASS_CONSUME] = "DELETE FROM passes WHERE name = ?1 RETURNING expires_at",
        [S_PASS_PURGE] = "DELETE FROM passes WHERE expires_at <= ?1",
        [S_CT_EXISTS] = "SELECT 1 FROM containers WHERE eid = ?1",
        /* ?5 = 1 for an update: the row's own values are no clash. */
        [S_CT_CLASH] = "SELECT eid, veid, name, private_path FROM containers "
                       "WHERE (?5 = 0 AND eid = ?1) "
                       "OR (eid <> ?1 AND (veid = ?2 OR name = ?3 OR private_path = ?4))",
        [S_CT_INSERT] = "INSERT INTO containers (" CT_COLS ") "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        [S_CT_UPDATE] = "UPDATE containers SET veid = ?2, name = ?3, hostname = ?4, "
                        "description = ?5, private_path = ?6, os_template = ?7, on_boot = ?8, "
                        "config_json = ?9, state = ?10, transition = ?11, updated_at = ?13 "
                        "WHERE eid = ?1",
        [S_CT_SET_STATE] = "UPDATE containers SET state = ?2, transition = ?3, updated_at = ?4 "
                           "WHERE eid = ?1",
        [S_CT_DELETE] = "DELETE FROM containers WHERE eid = ?1",
        [S_CT_GET] = "SELECT " CT_COLS " FROM containers WHERE eid = ?1",
        [S_CT_GET_VEID] = "SELECT " CT_COLS " FROM containers WHERE veid = ?1",
        [S_CT_GET_NAME] = "SELECT " CT_COLS " FROM containers WHERE name = ?1",
        [S_CT_LIST] = "SELECT " CT_COLS " FROM containers ORDER BY veid",
        [S_CT_VEIDS_FROM] = "SELECT veid FROM containers WHERE veid >= ?1 ORDER BY veid",
        /* role and ct_eid never change: on a mismatch the WHERE makes the
         * upsert a no-op, which the caller sees as zero changes. */
        [S_MIG_PUT] = "INSERT INTO migrations (" MIG_COLS ") "
                      "VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7, ?7) "
                      "ON CONFLICT (id) DO UPDATE SET peer = excluded.peer, "
                      "state = excluded.state, detail = excluded.detail, "
                      "updated_at = excluded.updated_at "
                      "WHERE migrations.role = excluded.role "
                      "AND migrations.ct_eid = excluded.ct_eid",
        [S_MIG_SET_STEP] = "UPDATE migrations SET step = ?2, updated_at = ?3 WHERE id = ?1",
        [S_MIG_GET] = "SELECT " MIG_COLS " FROM migrations WHERE id = ?1",
        [S_MIG_UNFINISHED] = "SELECT " MIG_COLS " FROM migrations "
                             "WHERE state NOT IN " MIG_FINISHED " ORDER BY created_at, id",
};

struct cta_store {
        pthread_mutex_t lock;
        sqlite3 *db;
        char *path;
        char node_eid[CTA_UUID_LEN + 1];
        sqlite3_stmt *stmts[_S_MAX];
};

/* ---- locking, statements, errors ---- */

static struct cta_store *store_lock(struct cta_store *st)
{
        int r = pthread_mutex_lock(&st->lock);
        assert(r == 0);
        (void)r;
        return st;
}

static void store_unlockp(struct cta_store **p)
{
        if (*p)
                (void)pthread_mutex_unlock(&(*p)->lock);
        *p = NULL;
}

/* Hold st->lock until the end of the enclosing block. */
#define STORE_LOCK(st)                                                                             \
        _cleanup_(store_unlockp) __attribute__((unused)) struct cta_store *_st_locked_ =           \
                store_lock(st)

/* Turn the connection's last error into a CTA_E_STORE error. Must run before
 * anything else touches the connection. */
static int store_fail(struct cta_store *st, struct cta_error **err, const char *what)
{
        int ec = sqlite3_extended_errcode(st->db);
        int sys = 0;

        switch (ec & 0xff) {
        case SQLITE_IOERR:
        case SQLITE_CANTOPEN:
        case SQLITE_FULL:
                sys = sqlite3_system_errno(st->db);
                break;
        default:
                break;
        }
        return cta_error_set(err, CTA_E_STORE, sys, "%s: %s", what, sqlite3_errmsg(st->db));
}

/* A cached statement, ready for binding. Borrowed: reset it when done
 * (declare it with _cleanup_(stmt_resetp)). */
static int stmt_get(struct cta_store *st, enum stmt_id id, sqlite3_stmt **ret,
                    struct cta_error **err)
{
        if (!st->stmts[id]) {
                int rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                            &st->stmts[id], NULL);
                if (rc != SQLITE_OK)
                        return store_fail(st, err, "prepare statement");
        }
        *ret = st->stmts[id];
        return 0;
}

static void stmt_resetp(sqlite3_stmt **s)
{
        if (*s) {
                (void)sqlite3_reset(*s);
                (void)sqlite3_clear_bindings(*s);
        }
        *s = NULL;
}

/* Binding with the first failure remembered, so callers check once. */
struct binder {
        sqlite3_stmt *s;
        int rc;
};

static void bind_text(struct binder *b, int idx, const char *v)
{
        if (b->rc != SQLITE_OK)
                return;
        b->rc = v ? sqlite3_bind_text(b->s, idx, v, -1, SQLITE_TRANSIENT)
                  : sqlite3_bind_null(b->s, idx);
}

static void bind_i64(struct binder *b, int idx, int64_t v)
{
        if (b->rc != SQLITE_OK)
                return;
        b->rc = sqlite3_bind_int64(b->s, idx, v);
}

static int bind_done(struct cta_store *st, struct binder *b, struct cta_error **err)
{
        if (b->rc != SQLITE_OK)
                return store_fail(st, err, "bind parameter");
        return 0;
}

/* Step once: 1 = a row is ready, 0 = done, < 0 = error. */
static int stmt_step(struct cta_store *st, sqlite3_stmt *s, const char *what,
                     struct cta_error **err)
{
        int rc = sqlite3_step(s);

        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return store_fail(st, err, what);
}

/* Run a statement that returns no rows. */
static int stmt_exec(struct cta_store *st, sqlite3_stmt *s, const char *what,
                     struct cta_error **err)
{
        int r = stmt_step(st, s, what, err);

        if (r > 0)
                return cta_error_set(err, CTA_E_INTERNAL, 0, "%s: unexpected row", what);
        return r;
}

static int run_simple(struct cta_store *st, enum stmt_id id, const char *what,
                      struct cta_error **err)
{
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        int r;

        r = stmt_get(st, id, &s, err);
        if (r < 0)
                return r;
        return stmt_exec(st, s, what, err);
}

/* A write transaction rolled back at scope exit unless committed. Declare it
 * after STORE_LOCK() and before any statement, so it ends while the lock is
 * still held and after the statements were reset. */
struct txn {
        struct cta_store *st; /* non-NULL while open */
};

static void txn_endp(struct txn *t)
{
        if (t->st) {
                sqlite3_stmt *s = NULL;
                if (stmt_get(t->st, S_ROLLBACK, &s, NULL) >= 0) {
                        (void)sqlite3_step(s);
                        (void)sqlite3_reset(s);
                }
                /* If ROLLBACK itself failed (e.g. no memory), SQLite has
                 * already rolled back on the error that got us here or will
                 * when the connection closes; nothing better to do. */
                if (!sqlite3_get_autocommit(t->st->db))
                        log_debug("store: rollback left a transaction open");
        }
        t->st = NULL;
}

static int txn_begin(struct cta_store *st, struct txn *t, struct cta_error **err)
{
        int r = run_simple(st, S_BEGIN, "begin transaction", err);
        if (r < 0)
                return r;
        t->st = st;
        return 0;
}

static int txn_commit(struct txn *t, struct cta_error **err)
{
        int r = run_simple(t->st, S_COMMIT, "commit", err);
        if (r < 0)
                return r; /* txn_endp() rolls back */
        t->st = NULL;
        return 0;
}

#define STORE_TXN(name) _cleanup_(txn_endp) struct txn name = { NULL }

/* Copy a text column; NULL stays NULL. */
static int col_dup(struct cta_store *st, sqlite3_stmt *s, int i, char **ret,
                   struct cta_error **err)
{
        const unsigned char *t;

        if (sqlite3_column_type(s, i) == SQLITE_NULL) {
                *ret = NULL;
                return 0;
        }
        t = sqlite3_column_text(s, i);
        if (!t)
                return cta_error_set(err, CTA_E_NOMEM, ENOMEM, "read column: out of memory");
        *ret = cta_xstrndup((const char *)t, (size_t)sqlite3_column_bytes(s, i));
        return 0;
}

/* Copy an eid column into a fixed buffer; a longer value means a corrupt row. */
static int col_eid(sqlite3_stmt *s, int i, char out[CTA_UUID_LEN + 1], struct cta_error **err)
{
        const unsigned char *t = sqlite3_column_text(s, i);
        int n = sqlite3_column_bytes(s, i);

        if (!t || n <= 0 || n > CTA_UUID_LEN)
                return cta_error_set(err, CTA_E_STORE, 0, "corrupt eid in database");
        memcpy(out, t, (size_t)n);
        out[n] = '\0';
        return 0;
}

static int64_t now_unix(void)
{
        return (int64_t)time(NULL);
}

/* ---- open / close / migrations ---- */

static int pragma_int(struct cta_store *st, const char *sql, int *ret, struct cta_error **err)
{
        sqlite3_stmt *s = NULL;
        int rc;

        rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
        if (rc != SQLITE_OK)
                return store_fail(st, err, sql);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
                int r = store_fail(st, err, sql);
                sqlite3_finalize(s);
                return r;
        }
        *ret = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
        return 0;
}

static int exec_sql(struct cta_store *st, const char *sql, const char *what,
                    struct cta_error **err)
{
        char *msg = NULL;
        int rc = sqlite3_exec(st->db, sql, NULL, NULL, &msg);

        if (rc != SQLITE_OK) {
                int r = cta_error_set(err, CTA_E_STORE, 0, "%s: %s", what,
                                      msg ? msg : sqlite3_errstr(rc));
                sqlite3_free(msg);
                return r;
        }
        return 0;
}

static int store_configure(struct cta_store *st, struct cta_error **err)
{
        sqlite3_stmt *s = NULL;
        const unsigned char *mode;
        bool wal;
        int rc, r;

        (void)sqlite3_extended_result_codes(st->db, 1);
        (void)sqlite3_busy_timeout(st->db, CTA_STORE_BUSY_TIMEOUT_MS);
        /* Refuse writes that could corrupt the file even through SQL
         * (writable_schema and friends); we never need them. */
        (void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        (void)sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);

        r = exec_sql(st, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                     "configure database", err);
        if (r < 0)
                return r;

        /* journal_mode answers with the mode in effect: it stays "delete"
         * when WAL is impossible (e.g. a file system without shared memory),
         * and we would rather know than silently run without it. */
        rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
        if (rc != SQLITE_OK)
                return store_fail(st, err, "set WAL mode");
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
                r = store_fail(st, err, "set WAL mode");
                sqlite3_finalize(s);
                return r;
        }
        mode = sqlite3_column_text(s, 0);
        wal = mode && strcasecmp((const char *)mode, "wal") == 0;
        sqlite3_finalize(s);
        if (!wal)
                return cta_error_set(err, CTA_E_STORE, 0, "set WAL mode: refused by SQLite");
        return 0;
}

static int store_migrate(struct cta_store *st, struct cta_error **err)
{
        STORE_TXN(tx);
        int version, app_id, r;

        r = txn_begin(st, &tx, err);
        if (r < 0)
                return r;
        r = pragma_int(st, "PRAGMA application_id", &app_id, err);
        if (r < 0)
                return r;
        r = pragma_int(st, "PRAGMA user_version", &version, err);
        if (r < 0)
                return r;
        if (app_id != 0 && app_id != CTA_STORE_APP_ID)
                return cta_error_set(err, CTA_E_STORE, 0,
                                     "not a ctagent database (application_id %#x)",
                                     (unsigned)app_id);
        if (version < 0 || version > CTA_STORE_SCHEMA_VERSION)
                return cta_error_set(err, CTA_E_STORE, 0,
                                     "database schema version %d is newer than this ctagent "
                                     "supports (%d); refusing to use it",
                                     version, CTA_STORE_SCHEMA_VERSION);
        if (version == CTA_STORE_SCHEMA_VERSION)
                return 0; /* nothing to do; txn_endp() ends the read transaction */

        for (int v = version; v < CTA_STORE_SCHEMA_VERSION; v++) {
                char what[64];

                (void)snprintf(what, sizeof(what), "migrate schema to version %d", v + 1);
                r = exec_sql(st, migrations[v], what, err);
                if (r < 0)
                        return r;
                log_debug("store: schema migrated to version %d", v + 1);
        }
        /* PRAGMA cannot take a bound parameter; the value is our constant. */
        r = exec_sql(st, "PRAGMA application_id = 1129595207", "set application id", err);
        if (r < 0)
                return r;
        return txn_commit(&tx, err);
}
_Static_assert(CTA_STORE_APP_ID == 1129595207, "application_id literal matches");

/* Create the node eid the first time, then read it (whoever won a race). */
static int store_init_node_eid(struct cta_store *st, struct cta_error **err)
{
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        char eid[CTA_UUID_LEN + 1];
        struct binder b;
        int r;

        cta_uuid_new(eid);
        r = stmt_get(st, S_META_INIT, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, NODE_EID_KEY);
        bind_text(&b, 2, eid);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_exec(st, s, "create node eid", err);
        if (r < 0)
                return r;
        stmt_resetp(&s);

        r = stmt_get(st, S_META_GET, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, NODE_EID_KEY);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_step(st, s, "read node eid", err);
        if (r < 0)
                return r;
        if (r == 0)
                return cta_error_set(err, CTA_E_STORE, 0, "read node eid: missing");
        r = col_eid(s, 0, st->node_eid, err);
        if (r < 0)
                return r;
        if (!cta_uuid_valid(st->node_eid))
                return cta_error_set(err, CTA_E_STORE, 0, "read node eid: not a UUID");
        return 0;
}

/* Create the file ourselves so it is 0600 from the first byte (SQLite would
 * use 0644 minus umask), and fix the mode of an existing one. SQLite gives
 * the -wal and -shm files the database file's mode. */
static int store_prepare_file(const char *path, struct cta_error **err)
{
        _cleanup_close_ int fd = -1;
        struct stat sb;

        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return cta_error_errno(err, CTA_E_STORE, "open database '%s'", path);
        if (fstat(fd, &sb) < 0)
                return cta_error_errno(err, CTA_E_STORE, "stat database '%s'", path);
        if (!S_ISREG(sb.st_mode))
                return cta_error_set(err, CTA_E_STORE, 0, "database '%s' is not a regular file",
                                     path);
        if ((sb.st_mode & 07777) != 0600 && fchmod(fd, 0600) < 0)
                return cta_error_errno(err, CTA_E_STORE, "chmod database '%s'", path);
        return 0;
}

struct cta_store *cta_store_close(struct cta_store *st)
{
        if (!st)
                return NULL;
        for (size_t i = 0; i < CTA_ARRAY_SIZE(st->stmts); i++)
                sqlite3_finalize(st->stmts[i]);
        /* close_v2 never fails for busy statements; the last close also
         * checkpoints the WAL into the main file. */
        if (st->db)
                (void)sqlite3_close_v2(st->db);
        (void)pthread_mutex_destroy(&st->lock);
        free(st->path);
        free(st);
        return NULL;
}
CTA_DEFINE_CLEANUP(struct cta_store, cta_store_close)

int cta_store_open(const char *path, struct cta_store **ret, struct cta_error **err)
{
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        int rc, r;

        assert(path && ret);
        r = store_prepare_file(path, err);
        if (r < 0)
                return r;

        st = cta_xcalloc(1, sizeof(*st));
        rc = pthread_mutex_init(&st->lock, NULL);
        if (rc != 0) {
                free(TAKE_PTR(st));
                return cta_error_set(err, CTA_E_INTERNAL, rc, "init store lock: %s",
                                     strerror(rc));
        }
        st->path = cta_xstrdup(path);

        /* NOMUTEX: we serialize every use of the connection ourselves. */
        rc = sqlite3_open_v2(path, &st->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
                             NULL);
        if (rc != SQLITE_OK) {
                r = st->db ? store_fail(st, err, "open database")
                           : cta_error_set(err, CTA_E_NOMEM, ENOMEM, "open database: %s",
                                           sqlite3_errstr(rc));
                return cta_error_wrap(err, "'%s'", path);
        }

        r = store_configure(st, err);
        if (r >= 0)
                r = store_migrate(st, err);
        if (r >= 0)
                r = store_init_node_eid(st, err);
        if (r < 0)
                return cta_error_wrap(err, "open database '%s'", path);

        *ret = TAKE_PTR(st);
        return 0;
}

int cta_store_schema_version(struct cta_store *st, struct cta_error **err)
{
        STORE_LOCK(st);
        int version, r;

        r = pragma_int(st, "PRAGMA user_version", &version, err);
        return r < 0 ? r : version;
}

int cta_store_node_eid(struct cta_store *st, char ret[37], struct cta_error **err)
{
        /* Set once at open and never changed: no lock needed. */
        memcpy(ret, st->node_eid, sizeof(st->node_eid));
        return 0;
}

/* ---- meta ---- */

int cta_store_meta_get(struct cta_store *st, const char *key, char **ret, struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        char *v = NULL;
        int r;

        r = stmt_get(st, S_META_GET, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, key);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_step(st, s, "read setting", err);
        if (r < 0)
                return r;
        if (r > 0) {
                r = col_dup(st, s, 0, &v, err);
                if (r < 0)
                        return r;
        }
        *ret = v;
        return 0;
}

int cta_store_meta_set(struct cta_store *st, const char *key, const char *value,
                       struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        if (!key || !value || strncmp(key, "cta.", 4) == 0)
                return cta_error_set(err, CTA_E_INVALID, 0, "set setting: invalid or reserved key");
        r = stmt_get(st, S_META_SET, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, key);
        bind_text(&b, 2, value);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        return stmt_exec(st, s, "write setting", err);
}

/* ---- one-time passes ---- */

int cta_store_pass_add(struct cta_store *st, const char *name, int64_t expires_at_unix,
                       struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        if (!name || !*name)
                return cta_error_set(err, CTA_E_INVALID, 0, "add pass: empty name");
        r = stmt_get(st, S_PASS_ADD, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, name);
        bind_i64(&b, 2, expires_at_unix);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        return stmt_exec(st, s, "add pass", err);
}

int cta_store_pass_consume(struct cta_store *st, const char *name, int64_t now,
                           struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        bool valid = false;
        int r;

        if (!name || !*name)
                return cta_error_set(err, CTA_E_AUTH_FAILED, 0, "invalid or expired pass");
        r = stmt_get(st, S_PASS_CONSUME, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, name);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_step(st, s, "consume pass", err);
        if (r < 0)
                return r;
        if (r > 0) {
                valid = now < sqlite3_column_int64(s, 0);
                /* Step to the end so the delete commits (and any failure to
                 * commit is seen) before we answer. */
                r = stmt_step(st, s, "consume pass", err);
                if (r < 0)
                        return r;
        }
        if (!valid)
                return cta_error_set(err, CTA_E_AUTH_FAILED, 0, "invalid or expired pass");
        return 0;
}

int cta_store_pass_purge(struct cta_store *st, int64_t now, struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        r = stmt_get(st, S_PASS_PURGE, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_i64(&b, 1, now);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_exec(st, s, "purge passes", err);
        if (r < 0)
                return r;
        return sqlite3_changes(st->db);
}

/* ---- containers ---- */

void cta_ct_row_done(struct cta_ct_row *r)
{
        if (!r)
                return;
        free(r->name);
        free(r->hostname);
        free(r->description);
        free(r->private_path);
        free(r->os_template);
        free(r->config_json);
        memset(r, 0, sizeof(*r));
}

void cta_ct_rows_free(struct cta_ct_row *rows, size_t n)
{
        if (!rows)
                return;
        for (size_t i = 0; i < n; i++)
                cta_ct_row_done(&rows[i]);
        free(rows);
}

static void cta_ct_row_donep(struct cta_ct_row *r)
{
        cta_ct_row_done(r);
}

/* Read a row selected with CT_COLS. On failure *ret is left zeroed. */
static int ct_row_read(struct cta_store *st, sqlite3_stmt *s, struct cta_ct_row *ret,
                       struct cta_error **err)
{
        _cleanup_(cta_ct_row_donep) struct cta_ct_row row = { .veid = 0 };
        int r;

        r = col_eid(s, 0, row.eid, err);
        if (r >= 0)
                r = col_dup(st, s, 2, &row.name, err);
        if (r >= 0)
                r = col_dup(st, s, 3, &row.hostname, err);
        if (r >= 0)
                r = col_dup(st, s, 4, &row.description, err);
        if (r >= 0)
                r = col_dup(st, s, 5, &row.private_path, err);
        if (r >= 0)
                r = col_dup(st, s, 6, &row.os_template, err);
        if (r >= 0)
                r = col_dup(st, s, 8, &row.config_json, err);
        if (r < 0)
                return r;
        row.veid = (uint64_t)sqlite3_column_int64(s, 1);
        row.on_boot = sqlite3_column_int(s, 7) != 0;
        row.state = sqlite3_column_int(s, 9);
        row.transition = sqlite3_column_int(s, 10);
        row.created_at = sqlite3_column_int64(s, 11);
        row.updated_at = sqlite3_column_int64(s, 12);

        *ret = row;
        memset(&row, 0, sizeof(row)); /* ownership moved to *ret */
        return 0;
}

static int ct_row_check(const struct cta_ct_row *r, const char *op, struct cta_error **err)
{
        if (strnlen(r->eid, sizeof(r->eid)) == sizeof(r->eid) || !cta_uuid_valid(r->eid))
                return cta_error_set(err, CTA_E_INVALID, 0, "%s container: eid is not a UUID", op);
        if (r->veid > INT64_MAX)
                return cta_error_set(err, CTA_E_INVALID, 0, "%s container: veid %" PRIu64
                                     " out of range", op, r->veid);
        if (!r->private_path || !*r->private_path)
                return cta_error_set(err, CTA_E_INVALID, 0, "%s container: no private area path",
                                     op);
        return 0;
}

/* Report the most specific clash between r and another row, if any.
 * Runs inside the caller's transaction, so the answer stays true until the
 * write that follows. */
static int ct_check_clash(struct cta_store *st, const struct cta_ct_row *r, bool update,
                          struct cta_error **err)
{
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        _cleanup_free_ char *other_eid = NULL, *what = NULL;
        struct binder b;
        int code = 0, r2;

        r2 = stmt_get(st, S_CT_CLASH, &s, err);
        if (r2 < 0)
                return r2;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, r->eid);
        bind_i64(&b, 2, (int64_t)r->veid);
        bind_text(&b, 3, r->name);
        bind_text(&b, 4, r->private_path);
        bind_i64(&b, 5, update ? 1 : 0);
        r2 = bind_done(st, &b, err);
        if (r2 < 0)
                return r2;

        /* At most four rows; keep the clash with the lowest code, which is
         * also the order the header promises (eid, veid, name, private). */
        for (;;) {
                const char *eid, *name, *priv;
                int c = 0;

                r2 = stmt_step(st, s, "check container clash", err);
                if (r2 < 0)
                        return r2;
                if (r2 == 0)
                        break;
                eid = (const char *)sqlite3_column_text(s, 0);
                name = (const char *)sqlite3_column_text(s, 2);
                priv = (const char *)sqlite3_column_text(s, 3);
                if (!update && eid && strcasecmp(eid, r->eid) == 0)
                        c = CTA_E_ENV_EXISTS;
                else if ((uint64_t)sqlite3_column_int64(s, 1) == r->veid)
                        c = CTA_E_VEID_EXISTS;
                else if (r->name && name && streq(name, r->name))
                        c = CTA_E_NAME_EXISTS;
                else if (priv && streq(priv, r->private_path))
                        c = CTA_E_PRIVATE_EXISTS;
                if (c && (!code || c < code)) {
                        code = c;
                        free(other_eid);
                        other_eid = cta_sanitize(eid, CTA_UUID_LEN);
                }
        }

        switch (code) {
        case 0:
                return 0;
        case CTA_E_ENV_EXISTS:
                return cta_error_set(err, code, 0, "container %s already exists", other_eid);
        case CTA_E_VEID_EXISTS:
                return cta_error_set(err, code, 0, "veid %" PRIu64 " is used by container %s",
                                     r->veid, other_eid);
        case CTA_E_NAME_EXISTS:
                what = cta_sanitize(r->name, 128);
                return cta_error_set(err, code, 0, "name '%s' is used by container %s", what,
                                     other_eid);
        default:
                what = cta_sanitize(r->private_path, 256);
                return cta_error_set(err, code, 0, "private area '%s' is used by container %s",
                                     what, other_eid);
        }
}

static void ct_bind_row(struct binder *b, const struct cta_ct_row *r, int64_t created,
                        int64_t now)
{
        bind_text(b, 1, r->eid);
        bind_i64(b, 2, (int64_t)r->veid);
        bind_text(b, 3, r->name);
        bind_text(b, 4, r->hostname);
        bind_text(b, 5, r->description);
        bind_text(b, 6, r->private_path);
        bind_text(b, 7, r->os_template);
        bind_i64(b, 8, r->on_boot ? 1 : 0);
        bind_text(b, 9, r->config_json);
        bind_i64(b, 10, r->state);
        bind_i64(b, 11, r->transition);
        bind_i64(b, 12, created);
        bind_i64(b, 13, now);
}

static int ct_exists(struct cta_store *st, const char *eid, struct cta_error **err)
{
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        r = stmt_get(st, S_CT_EXISTS, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, eid);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        return stmt_step(st, s, "look up container", err);
}

static int ct_not_found(const char *eid, struct cta_error **err)
{
        _cleanup_free_ char *e = cta_sanitize(eid, CTA_UUID_LEN);
        return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0, "container %s not found", e);
}

static int ct_write(struct cta_store *st, const struct cta_ct_row *row, bool update,
                    struct cta_error **err)
{
        STORE_LOCK(st);
        STORE_TXN(tx);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        const char *op = update ? "update" : "add";
        int64_t now = now_unix();
        struct binder b;
        int r;

        r = ct_row_check(row, op, err);
        if (r < 0)
                return r;
        r = txn_begin(st, &tx, err);
        if (r < 0)
                return r;
        if (update) {
                r = ct_exists(st, row->eid, err);
                if (r < 0)
                        return r;
                if (r == 0)
                        return ct_not_found(row->eid, err);
        }
        r = ct_check_clash(st, row, update, err);
        if (r < 0)
                return r;

        r = stmt_get(st, update ? S_CT_UPDATE : S_CT_INSERT, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        ct_bind_row(&b, row, row->created_at ? row->created_at : now, now);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_exec(st, s, update ? "update container" : "add container", err);
        if (r < 0)
                return r;
        stmt_resetp(&s);
        return txn_commit(&tx, err);
}

int cta_store_ct_insert(struct cta_store *st, const struct cta_ct_row *r, struct cta_error **err)
{
        return ct_write(st, r, false, err);
}

int cta_store_ct_update(struct cta_store *st, const struct cta_ct_row *r, struct cta_error **err)
{
        return ct_write(st, r, true, err);
}

int cta_store_ct_set_state(struct cta_store *st, const char *eid, int state, int transition,
                           struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        r = stmt_get(st, S_CT_SET_STATE, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, eid);
        bind_i64(&b, 2, state);
        bind_i64(&b, 3, transition);
        bind_i64(&b, 4, now_unix());
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_exec(st, s, "set container state", err);
        if (r < 0)
                return r;
        if (sqlite3_changes(st->db) == 0)
                return ct_not_found(eid, err);
        return 0;
}

int cta_store_ct_delete(struct cta_store *st, const char *eid, struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        r = stmt_get(st, S_CT_DELETE, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, eid);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_exec(st, s, "delete container", err);
        if (r < 0)
                return r;
        if (sqlite3_changes(st->db) == 0)
                return ct_not_found(eid, err);
        return 0;
}

/* Run a lookup whose parameters are already bound; at most one row. */
static int ct_get_one(struct cta_store *st, sqlite3_stmt *s, struct cta_ct_row *ret,
                      struct cta_error **err)
{
        int r = stmt_step(st, s, "look up container", err);

        if (r <= 0)
                return r < 0 ? r : -CTA_E_ENV_NOT_FOUND;
        return ct_row_read(st, s, ret, err);
}

int cta_store_ct_get(struct cta_store *st, const char *eid, struct cta_ct_row *ret,
                     struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        r = stmt_get(st, S_CT_GET, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, eid);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = ct_get_one(st, s, ret, err);
        if (r == -CTA_E_ENV_NOT_FOUND)
                return ct_not_found(eid, err);
        return r;
}

int cta_store_ct_get_by_veid(struct cta_store *st, uint64_t veid, struct cta_ct_row *ret,
                             struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        if (veid > INT64_MAX)
                return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0, "no container with veid %" PRIu64,
                                     veid);
        r = stmt_get(st, S_CT_GET_VEID, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_i64(&b, 1, (int64_t)veid);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = ct_get_one(st, s, ret, err);
        if (r == -CTA_E_ENV_NOT_FOUND)
                return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0, "no container with veid %" PRIu64,
                                     veid);
        return r;
}

int cta_store_ct_get_by_name(struct cta_store *st, const char *name, struct cta_ct_row *ret,
                             struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        r = stmt_get(st, S_CT_GET_NAME, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, name);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = ct_get_one(st, s, ret, err);
        if (r == -CTA_E_ENV_NOT_FOUND) {
                _cleanup_free_ char *n = cta_sanitize(name, 128);
                return cta_error_set(err, CTA_E_ENV_NOT_FOUND, 0, "no container named '%s'", n);
        }
        return r;
}

/* Step s to the end, reading each row with read() into a growing array of
 * elem-sized rows. On failure the rows read so far are freed with
 * free_rows() and nothing is returned. Caller holds the lock. */
static int stmt_collect(struct cta_store *st, sqlite3_stmt *s, const char *what, size_t elem,
                        int (*read)(struct cta_store *, sqlite3_stmt *, void *,
                                    struct cta_error **),
                        void (*free_rows)(void *, size_t), void **ret_rows, size_t *ret_n,
                        struct cta_error **err)
{
        char *rows = NULL;
        size_t n = 0, cap = 0;
        int r;

        for (;;) {
                r = stmt_step(st, s, what, err);
                if (r <= 0)
                        break;
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        rows = cta_xrealloc(rows, cap * elem);
                }
                r = read(st, s, rows + n * elem, err);
                if (r < 0)
                        break;
                n++;
        }
        if (r < 0) {
                free_rows(rows, n);
                return r;
        }
        *ret_rows = rows;
        *ret_n = n;
        return 0;
}

static int ct_row_read_any(struct cta_store *st, sqlite3_stmt *s, void *row,
                           struct cta_error **err)
{
        return ct_row_read(st, s, row, err);
}

static void ct_rows_free_any(void *rows, size_t n)
{
        cta_ct_rows_free(rows, n);
}

int cta_store_ct_list(struct cta_store *st, struct cta_ct_row **ret_rows, size_t *ret_n,
                      struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        int r = stmt_get(st, S_CT_LIST, &s, err);
        if (r < 0)
                return r;
        return stmt_collect(st, s, "list containers", sizeof(**ret_rows), ct_row_read_any,
                            ct_rows_free_any, (void **)ret_rows, ret_n, err);
}

int cta_store_ct_next_veid(struct cta_store *st, uint64_t min, uint64_t *ret,
                           struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        uint64_t cand = min;
        int r;

        if (min > INT64_MAX)
                return cta_error_set(err, CTA_E_INVALID, 0, "veid %" PRIu64 " out of range", min);
        r = stmt_get(st, S_CT_VEIDS_FROM, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_i64(&b, 1, (int64_t)min);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        /* Used veids >= min in ascending order: the first gap is the answer. */
        for (;;) {
                uint64_t v;

                r = stmt_step(st, s, "find free veid", err);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                v = (uint64_t)sqlite3_column_int64(s, 0);
                if (v > cand)
                        break;
                if (v == cand)
                        cand++;
        }
        if (cand > INT64_MAX)
                return cta_error_set(err, CTA_E_TOO_LARGE, 0, "no free veid from %" PRIu64, min);
        *ret = cand;
        return 0;
}

/* ---- migration journal ---- */

void cta_mig_row_done(struct cta_mig_row *r)
{
        if (!r)
                return;
        free(r->id);
        free(r->role);
        free(r->ct_eid);
        free(r->peer);
        free(r->state);
        free(r->detail);
        memset(r, 0, sizeof(*r));
}

void cta_mig_rows_free(struct cta_mig_row *rows, size_t n)
{
        if (!rows)
                return;
        for (size_t i = 0; i < n; i++)
                cta_mig_row_done(&rows[i]);
        free(rows);
}

static int mig_row_read(struct cta_store *st, sqlite3_stmt *s, struct cta_mig_row *ret,
                        struct cta_error **err)
{
        struct cta_mig_row row = { .step = 0 };
        int r;

        r = col_dup(st, s, 0, &row.id, err);
        if (r >= 0)
                r = col_dup(st, s, 1, &row.role, err);
        if (r >= 0)
                r = col_dup(st, s, 2, &row.ct_eid, err);
        if (r >= 0)
                r = col_dup(st, s, 3, &row.peer, err);
        if (r >= 0)
                r = col_dup(st, s, 4, &row.state, err);
        if (r >= 0)
                r = col_dup(st, s, 6, &row.detail, err);
        if (r < 0) {
                cta_mig_row_done(&row);
                return r;
        }
        row.step = sqlite3_column_int64(s, 5);
        row.created_at = sqlite3_column_int64(s, 7);
        row.updated_at = sqlite3_column_int64(s, 8);
        *ret = row;
        return 0;
}

int cta_store_mig_put(struct cta_store *st, const char *id, const char *role, const char *ct_eid,
                      const char *peer, const char *state, const char *detail,
                      struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        if (!id || !*id || !ct_eid || !*ct_eid || !state || !*state || !role ||
            (!streq(role, CTA_MIG_ROLE_SRC) && !streq(role, CTA_MIG_ROLE_DST)))
                return cta_error_set(err, CTA_E_INVALID, 0, "record migration: invalid arguments");
        r = stmt_get(st, S_MIG_PUT, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, id);
        bind_text(&b, 2, role);
        bind_text(&b, 3, ct_eid);
        bind_text(&b, 4, peer);
        bind_text(&b, 5, state);
        bind_text(&b, 6, detail);
        bind_i64(&b, 7, now_unix());
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_exec(st, s, "record migration", err);
        if (r < 0)
                return r;
        if (sqlite3_changes(st->db) == 0) {
                _cleanup_free_ char *i = cta_sanitize(id, 64);
                return cta_error_set(err, CTA_E_INVALID, 0,
                                     "record migration %s: role or container differs", i);
        }
        return 0;
}

int cta_store_mig_set_step(struct cta_store *st, const char *id, int64_t step,
                           struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        r = stmt_get(st, S_MIG_SET_STEP, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, id);
        bind_i64(&b, 2, step);
        bind_i64(&b, 3, now_unix());
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_exec(st, s, "record migration step", err);
        if (r < 0)
                return r;
        if (sqlite3_changes(st->db) == 0) {
                _cleanup_free_ char *i = cta_sanitize(id, 64);
                return cta_error_set(err, CTA_E_INVALID, 0, "no migration %s", i);
        }
        return 0;
}

int cta_store_mig_get(struct cta_store *st, const char *id, struct cta_mig_row *ret,
                      struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        struct binder b;
        int r;

        r = stmt_get(st, S_MIG_GET, &s, err);
        if (r < 0)
                return r;
        b = (struct binder){ s, SQLITE_OK };
        bind_text(&b, 1, id);
        r = bind_done(st, &b, err);
        if (r < 0)
                return r;
        r = stmt_step(st, s, "look up migration", err);
        if (r < 0)
                return r;
        if (r == 0) {
                _cleanup_free_ char *i = cta_sanitize(id, 64);
                return cta_error_set(err, CTA_E_INVALID, 0, "no migration %s", i);
        }
        return mig_row_read(st, s, ret, err);
}

static int mig_row_read_any(struct cta_store *st, sqlite3_stmt *s, void *row,
                            struct cta_error **err)
{
        return mig_row_read(st, s, row, err);
}

static void mig_rows_free_any(void *rows, size_t n)
{
        cta_mig_rows_free(rows, n);
}

bool cta_store_mig_finished(const char *state)
{
        /* (the states of MIG_FINISHED) */
        return state && (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0 ||
                         strcmp(state, "cancelled") == 0);
}

int cta_store_mig_list_unfinished(struct cta_store *st, struct cta_mig_row **ret_rows,
                                  size_t *ret_n, struct cta_error **err)
{
        STORE_LOCK(st);
        _cleanup_(stmt_resetp) sqlite3_stmt *s = NULL;
        int r = stmt_get(st, S_MIG_UNFINISHED, &s, err);
        if (r < 0)
                return r;
        return stmt_collect(st, s, "list migrations", sizeof(**ret_rows), mig_row_read_any,
                            mig_rows_free_any, (void **)ret_rows, ret_n, err);
}
