/* Unit tests for src/store: the node database. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "tap.h"
#include "util/error.h"
#include "util/util.h"

/* A fresh directory per test with the database path inside it. */
struct tdb {
        char dir[64];
        char path[128];
};

static int tdb_init(struct tdb *t)
{
        (void)snprintf(t->dir, sizeof(t->dir), "/tmp/cta-test-store-XXXXXX");
        if (!mkdtemp(t->dir))
                return -1;
        (void)snprintf(t->path, sizeof(t->path), "%s/" CTA_STORE_FILE, t->dir);
        return 0;
}

static void tdb_done(struct tdb *t)
{
        static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
        char p[160];

        if (!t->dir[0])
                return;
        for (size_t i = 0; i < CTA_ARRAY_SIZE(sfx); i++) {
                (void)snprintf(p, sizeof(p), "%s%s", t->path, sfx[i]);
                (void)unlink(p);
        }
        (void)rmdir(t->dir);
        t->dir[0] = '\0';
}

static void tdb_donep(struct tdb *t)
{
        tdb_done(t);
}

CTA_DEFINE_CLEANUP(struct cta_store, cta_store_close)

#define OPEN_OR_FAIL(t, st)                                                                        \
        do {                                                                                       \
                _cleanup_(cta_error_freep) struct cta_error *_e = NULL;                            \
                if (cta_store_open((t)->path, &(st), &_e) < 0)                                     \
                        TAP_FAIL("open: %s", cta_error_msg(_e));                                   \
        } while (0)

/* Expect r to be the negative code and err to carry the same code. */
#define ASSERT_ERR(call, ecode)                                                                    \
        do {                                                                                       \
                _cleanup_(cta_error_freep) struct cta_error *_e = NULL;                            \
                struct cta_error **err = &_e;                                                      \
                int _r = (call);                                                                   \
                ASSERT_INT_EQ(_r, -(ecode));                                                       \
                ASSERT_NOT_NULL(_e);                                                               \
                ASSERT_INT_EQ(_e->code, (ecode));                                                  \
                printf("#   (expected) %s\n", _e->msg);                                            \
        } while (0)

#define ASSERT_CALL_OK(call)                                                                       \
        do {                                                                                       \
                _cleanup_(cta_error_freep) struct cta_error *_e = NULL;                            \
                struct cta_error **err = &_e;                                                      \
                int _r = (call);                                                                   \
                if (_r < 0)                                                                        \
                        TAP_FAIL("%s: %d %s", #call, _r, cta_error_msg(_e));                       \
        } while (0)

/* A raw connection to look at the file from outside the store. */
static int raw_pragma_int(const char *path, const char *sql, int *ret)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);

        if (rc == SQLITE_OK)
                rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
        if (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
                *ret = sqlite3_column_int(s, 0);
        else
                rc = SQLITE_ERROR;
        sqlite3_finalize(s);
        sqlite3_close(db);
        return rc == SQLITE_OK ? 0 : -1;
}

static int raw_exec(const char *path, const char *sql)
{
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);

        if (rc == SQLITE_OK)
                rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        sqlite3_close(db);
        return rc == SQLITE_OK ? 0 : -1;
}

static void make_row(struct cta_ct_row *r, const char *eid, uint64_t veid, const char *name,
                     const char *priv)
{
        memset(r, 0, sizeof(*r));
        (void)snprintf(r->eid, sizeof(r->eid), "%s", eid);
        r->veid = veid;
        r->name = name ? cta_xstrdup(name) : NULL;
        r->private_path = priv ? cta_xstrdup(priv) : NULL;
}

static void cta_ct_row_donep(struct cta_ct_row *r)
{
        cta_ct_row_done(r);
}

#define EID1 "3b0c8a54-1d2e-4f60-8a71-9c0d1e2f3a4b"
#define EID2 "b1e7f2c3-0a4d-4e5f-8b6a-7c8d9e0f1a2b"
#define EID3 "6a1f0c7e-52d4-4b0e-9a4e-0f1b2c3d4e5f"

TEST(store__reopen_keeps_node_eid)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        char eid1[37], eid2[37];

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        ASSERT_CALL_OK(cta_store_node_eid(st, eid1, err));
        ASSERT_TRUE(cta_uuid_valid(eid1));
        ASSERT_INT_EQ(eid1[14], '4'); /* version 4 */
        st = cta_store_close(st);

        OPEN_OR_FAIL(&t, st);
        ASSERT_CALL_OK(cta_store_node_eid(st, eid2, err));
        ASSERT_STR_EQ(eid1, eid2);
        return 0;
}

TEST(store__file_mode_0600)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        char wal[160];
        struct stat sb;
        mode_t old;

        ASSERT_OK(tdb_init(&t));
        /* Even with a permissive umask the file must never be readable by others. */
        old = umask(0);
        OPEN_OR_FAIL(&t, st);
        (void)umask(old);
        ASSERT_OK(stat(t.path, &sb));
        ASSERT_INT_EQ(sb.st_mode & 07777, 0600);
        ASSERT_CALL_OK(cta_store_pass_add(st, "p", 10, err));
        (void)snprintf(wal, sizeof(wal), "%s-wal", t.path);
        ASSERT_OK(stat(wal, &sb));
        ASSERT_INT_EQ(sb.st_mode & 07777, 0600);
        st = cta_store_close(st);

        /* An existing file with a loose mode is tightened at open. */
        ASSERT_OK(chmod(t.path, 0644));
        OPEN_OR_FAIL(&t, st);
        ASSERT_OK(stat(t.path, &sb));
        ASSERT_INT_EQ(sb.st_mode & 07777, 0600);
        return 0;
}

TEST(store__wal_and_schema_version)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        char wal[160];
        int v = -1;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        ASSERT_CALL_OK(cta_store_pass_add(st, "p", 10, err));
        /* The WAL file exists while the store is open and has written. */
        (void)snprintf(wal, sizeof(wal), "%s-wal", t.path);
        ASSERT_OK(access(wal, F_OK));
        {
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                ASSERT_INT_EQ(cta_store_schema_version(st, &e), CTA_STORE_SCHEMA_VERSION);
        }
        st = cta_store_close(st);

        /* WAL mode is persistent in the file: a fresh connection sees it. */
        {
                sqlite3 *db = NULL;
                sqlite3_stmt *s = NULL;
                ASSERT_INT_EQ(sqlite3_open_v2(t.path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
                ASSERT_INT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL),
                              SQLITE_OK);
                ASSERT_INT_EQ(sqlite3_step(s), SQLITE_ROW);
                int is_wal = streq((const char *)sqlite3_column_text(s, 0), "wal");
                sqlite3_finalize(s);
                sqlite3_close(db);
                ASSERT_TRUE(is_wal);
        }
        ASSERT_OK(raw_pragma_int(t.path, "PRAGMA user_version", &v));
        ASSERT_INT_EQ(v, CTA_STORE_SCHEMA_VERSION);
        ASSERT_OK(raw_pragma_int(t.path, "PRAGMA application_id", &v));
        ASSERT_INT_EQ(v, 0x43544147);
        return 0;
}

TEST(store__newer_schema_refused)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        _cleanup_(cta_error_freep) struct cta_error *e = NULL;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        st = cta_store_close(st);
        ASSERT_OK(raw_exec(t.path, "PRAGMA user_version = 99"));

        ASSERT_INT_EQ(cta_store_open(t.path, &st, &e), -CTA_E_STORE);
        ASSERT_NULL(st);
        ASSERT_NOT_NULL(e);
        ASSERT_INT_EQ(e->code, CTA_E_STORE);
        printf("#   (expected) %s\n", e->msg);
        ASSERT_NOT_NULL(strstr(e->msg, "version 99 is newer"));
        return 0;
}

TEST(store__foreign_database_refused)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        int v = -1;

        ASSERT_OK(tdb_init(&t));
        /* Another program's database: refused by its application_id. */
        ASSERT_OK(raw_exec(t.path, "PRAGMA application_id = 42; CREATE TABLE x (a);"));
        ASSERT_ERR(cta_store_open(t.path, &st, err), CTA_E_STORE);
        ASSERT_NULL(st);
        tdb_done(&t);

        /* A version-0 file that already has one of our table names: the
         * migration fails as a whole and leaves the file untouched. */
        ASSERT_OK(tdb_init(&t));
        ASSERT_OK(raw_exec(t.path, "CREATE TABLE containers (a);"));
        ASSERT_ERR(cta_store_open(t.path, &st, err), CTA_E_STORE);
        ASSERT_OK(raw_pragma_int(t.path, "PRAGMA user_version", &v));
        ASSERT_INT_EQ(v, 0);
        ASSERT_OK(raw_pragma_int(t.path,
                                 "SELECT count(*) FROM sqlite_master WHERE name = 'passes'", &v));
        ASSERT_INT_EQ(v, 0);
        return 0;
}

TEST(store__passes)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);

        /* Consumed once only. */
        ASSERT_CALL_OK(cta_store_pass_add(st, "once", 1000, err));
        ASSERT_CALL_OK(cta_store_pass_consume(st, "once", 999, err));
        ASSERT_ERR(cta_store_pass_consume(st, "once", 999, err), CTA_E_AUTH_FAILED);

        /* Expired at exactly expires_at; deleted by the failed attempt too. */
        ASSERT_CALL_OK(cta_store_pass_add(st, "late", 1000, err));
        ASSERT_ERR(cta_store_pass_consume(st, "late", 1000, err), CTA_E_AUTH_FAILED);
        ASSERT_ERR(cta_store_pass_consume(st, "late", 10, err), CTA_E_AUTH_FAILED);

        /* Unknown and empty names. */
        ASSERT_ERR(cta_store_pass_consume(st, "nope", 0, err), CTA_E_AUTH_FAILED);
        ASSERT_ERR(cta_store_pass_consume(st, "", 0, err), CTA_E_AUTH_FAILED);

        /* Re-adding replaces the expiry. */
        ASSERT_CALL_OK(cta_store_pass_add(st, "again", 10, err));
        ASSERT_CALL_OK(cta_store_pass_add(st, "again", 2000, err));
        ASSERT_CALL_OK(cta_store_pass_consume(st, "again", 1500, err));

        /* Purge deletes exactly the expired ones. */
        ASSERT_CALL_OK(cta_store_pass_add(st, "a", 100, err));
        ASSERT_CALL_OK(cta_store_pass_add(st, "b", 200, err));
        ASSERT_CALL_OK(cta_store_pass_add(st, "c", 300, err));
        {
                _cleanup_(cta_error_freep) struct cta_error *e = NULL;
                ASSERT_INT_EQ(cta_store_pass_purge(st, 200, &e), 2);
                ASSERT_INT_EQ(cta_store_pass_purge(st, 200, &e), 0);
        }
        ASSERT_ERR(cta_store_pass_consume(st, "a", 0, err), CTA_E_AUTH_FAILED);
        ASSERT_ERR(cta_store_pass_consume(st, "b", 0, err), CTA_E_AUTH_FAILED);
        ASSERT_CALL_OK(cta_store_pass_consume(st, "c", 0, err));

        /* Passes survive a reopen. */
        ASSERT_CALL_OK(cta_store_pass_add(st, "kept", 50, err));
        st = cta_store_close(st);
        OPEN_OR_FAIL(&t, st);
        ASSERT_CALL_OK(cta_store_pass_consume(st, "kept", 49, err));
        return 0;
}

static int row_eq(const struct cta_ct_row *a, const struct cta_ct_row *b)
{
        ASSERT_TRUE(strcasecmp(a->eid, b->eid) == 0);
        ASSERT_INT_EQ(a->veid, b->veid);
        ASSERT_TRUE(streq_ptr(a->name, b->name));
        ASSERT_TRUE(streq_ptr(a->hostname, b->hostname));
        ASSERT_TRUE(streq_ptr(a->description, b->description));
        ASSERT_TRUE(streq_ptr(a->private_path, b->private_path));
        ASSERT_TRUE(streq_ptr(a->os_template, b->os_template));
        ASSERT_INT_EQ(a->on_boot, b->on_boot);
        ASSERT_TRUE(streq_ptr(a->config_json, b->config_json));
        ASSERT_INT_EQ(a->state, b->state);
        ASSERT_INT_EQ(a->transition, b->transition);
        return 0;
}

TEST(store__containers_crud)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        _cleanup_(cta_ct_row_donep) struct cta_ct_row a = { .veid = 0 };
        _cleanup_(cta_ct_row_donep) struct cta_ct_row b = { .veid = 0 };
        _cleanup_(cta_ct_row_donep) struct cta_ct_row got = { .veid = 0 };
        struct cta_ct_row *rows = NULL;
        size_t n = 0;
        int64_t before = (int64_t)time(NULL);

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);

        make_row(&a, EID1, 101, "web", "/vz/private/101");
        a.hostname = cta_xstrdup("web.example.com");
        /* Raw bytes, not UTF-8: stored and returned unchanged. */
        a.description = cta_xstrdup("caf\xe9 \xff\xfe\x01 end");
        a.os_template = cta_xstrdup("debian-12-x86_64");
        a.on_boot = true;
        a.config_json = cta_xstrdup("{\"ip\":[\"10.0.0.5\"]}");
        a.state = 3;
        a.transition = 1;
        ASSERT_CALL_OK(cta_store_ct_insert(st, &a, err));

        make_row(&b, EID2, 100, NULL, "/vz/private/100"); /* no name, other fields NULL */
        ASSERT_CALL_OK(cta_store_ct_insert(st, &b, err));

        ASSERT_CALL_OK(cta_store_ct_get(st, EID1, &got, err));
        ASSERT_OK(row_eq(&got, &a));
        ASSERT_TRUE(got.created_at >= before && got.created_at <= before + 5);
        ASSERT_INT_EQ(got.updated_at, got.created_at);
        ASSERT_STR_EQ(got.description, "caf\xe9 \xff\xfe\x01 end");
        cta_ct_row_done(&got);

        /* eid lookups ignore case (a UUID is a UUID). */
        {
                char upper[37];
                for (size_t i = 0; i < sizeof(upper); i++)
                        upper[i] = (char)toupper((unsigned char)EID1[i]);
                ASSERT_CALL_OK(cta_store_ct_get(st, upper, &got, err));
                ASSERT_INT_EQ(got.veid, 101);
                cta_ct_row_done(&got);
        }

        ASSERT_CALL_OK(cta_store_ct_get_by_veid(st, 100, &got, err));
        ASSERT_OK(row_eq(&got, &b));
        ASSERT_NULL(got.name);
        ASSERT_NULL(got.description);
        cta_ct_row_done(&got);

        ASSERT_CALL_OK(cta_store_ct_get_by_name(st, "web", &got, err));
        ASSERT_STR_EQ(got.eid, EID1);
        cta_ct_row_done(&got);

        ASSERT_ERR(cta_store_ct_get(st, EID3, &got, err), CTA_E_ENV_NOT_FOUND);
        ASSERT_ERR(cta_store_ct_get_by_veid(st, 999, &got, err), CTA_E_ENV_NOT_FOUND);
        ASSERT_ERR(cta_store_ct_get_by_veid(st, UINT64_MAX, &got, err), CTA_E_ENV_NOT_FOUND);
        ASSERT_ERR(cta_store_ct_get_by_name(st, "nope", &got, err), CTA_E_ENV_NOT_FOUND);
        ASSERT_STR_EQ(got.eid, ""); /* untouched on failure */

        /* Update every field but eid/created_at. */
        free(a.name);
        a.name = cta_xstrdup("web2");
        free(a.hostname);
        a.hostname = NULL;
        a.veid = 105;
        a.on_boot = false;
        a.created_at = 1; /* ignored by update */
        ASSERT_CALL_OK(cta_store_ct_update(st, &a, err));
        ASSERT_CALL_OK(cta_store_ct_get(st, EID1, &got, err));
        ASSERT_OK(row_eq(&got, &a));
        ASSERT_TRUE(got.created_at >= before);
        cta_ct_row_done(&got);
        ASSERT_ERR(cta_store_ct_get_by_name(st, "web", &got, err), CTA_E_ENV_NOT_FOUND);

        ASSERT_CALL_OK(cta_store_ct_set_state(st, EID2, 7, 2, err));
        ASSERT_CALL_OK(cta_store_ct_get(st, EID2, &got, err));
        ASSERT_INT_EQ(got.state, 7);
        ASSERT_INT_EQ(got.transition, 2);
        cta_ct_row_done(&got);

        /* List is ordered by veid. */
        ASSERT_CALL_OK(cta_store_ct_list(st, &rows, &n, err));
        ASSERT_SIZE_EQ(n, 2);
        ASSERT_INT_EQ(rows[0].veid, 100);
        ASSERT_INT_EQ(rows[1].veid, 105);
        ASSERT_STR_EQ(rows[1].name, "web2");
        cta_ct_rows_free(rows, n);

        /* Survives a reopen. */
        st = cta_store_close(st);
        OPEN_OR_FAIL(&t, st);
        ASSERT_CALL_OK(cta_store_ct_get_by_veid(st, 105, &got, err));
        ASSERT_OK(row_eq(&got, &a));
        cta_ct_row_done(&got);

        ASSERT_CALL_OK(cta_store_ct_delete(st, EID1, err));
        ASSERT_ERR(cta_store_ct_delete(st, EID1, err), CTA_E_ENV_NOT_FOUND);
        ASSERT_ERR(cta_store_ct_get(st, EID1, &got, err), CTA_E_ENV_NOT_FOUND);
        ASSERT_ERR(cta_store_ct_update(st, &a, err), CTA_E_ENV_NOT_FOUND);
        ASSERT_ERR(cta_store_ct_set_state(st, EID1, 1, 0, err), CTA_E_ENV_NOT_FOUND);
        ASSERT_CALL_OK(cta_store_ct_delete(st, EID2, err));
        ASSERT_CALL_OK(cta_store_ct_list(st, &rows, &n, err));
        ASSERT_SIZE_EQ(n, 0);
        ASSERT_NULL(rows);
        return 0;
}

TEST(store__containers_clash)
{
        static const struct {
                const char *eid;
                uint64_t veid;
                const char *name, *priv;
                int code;
        } cases[] = {
                /* existing: EID1 101 "web" /p/101 and EID2 102 NULL /p/102 */
                { EID1, 200, "x", "/p/x", CTA_E_ENV_EXISTS },
                { "3B0C8A54-1D2E-4F60-8A71-9C0D1E2F3A4B", 200, "x", "/p/x", CTA_E_ENV_EXISTS },
                { EID1, 101, "web", "/p/101", CTA_E_ENV_EXISTS }, /* eid reported first */
                { EID3, 101, "x", "/p/x", CTA_E_VEID_EXISTS },
                { EID3, 102, "web", "/p/101", CTA_E_VEID_EXISTS }, /* veid before name */
                { EID3, 200, "web", "/p/x", CTA_E_NAME_EXISTS },
                { EID3, 200, "web", "/p/102", CTA_E_NAME_EXISTS }, /* name before private */
                { EID3, 200, "x", "/p/102", CTA_E_PRIVATE_EXISTS },
                { EID3, 200, NULL, "/p/101", CTA_E_PRIVATE_EXISTS },
                { "not-a-uuid", 200, "x", "/p/x", CTA_E_INVALID },
                { "", 200, "x", "/p/x", CTA_E_INVALID },
                { EID3, (uint64_t)INT64_MAX + 1, "x", "/p/x", CTA_E_INVALID },
                { EID3, 200, "x", NULL, CTA_E_INVALID },
                { EID3, 200, "x", "", CTA_E_INVALID },
                { EID3, 200, NULL, "/p/200", 0 }, /* a second NULL name is fine */
        };
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        _cleanup_(cta_ct_row_donep) struct cta_ct_row r = { .veid = 0 };
        struct cta_ct_row *rows = NULL;
        size_t n = 0;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        make_row(&r, EID1, 101, "web", "/p/101");
        ASSERT_CALL_OK(cta_store_ct_insert(st, &r, err));
        cta_ct_row_done(&r);
        make_row(&r, EID2, 102, NULL, "/p/102");
        ASSERT_CALL_OK(cta_store_ct_insert(st, &r, err));
        cta_ct_row_done(&r);

        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                printf("# case %zu\n", i);
                make_row(&r, cases[i].eid, cases[i].veid, cases[i].name, cases[i].priv);
                if (cases[i].code)
                        ASSERT_ERR(cta_store_ct_insert(st, &r, err), cases[i].code);
                else
                        ASSERT_CALL_OK(cta_store_ct_insert(st, &r, err));
                cta_ct_row_done(&r);
        }
        /* Nothing of the failed inserts was written. */
        ASSERT_CALL_OK(cta_store_ct_list(st, &rows, &n, err));
        ASSERT_SIZE_EQ(n, 3);
        cta_ct_rows_free(rows, n);

        /* Update: the row's own values are no clash, others' are. */
        make_row(&r, EID2, 102, NULL, "/p/102");
        ASSERT_CALL_OK(cta_store_ct_update(st, &r, err));
        r.veid = 101;
        ASSERT_ERR(cta_store_ct_update(st, &r, err), CTA_E_VEID_EXISTS);
        r.veid = 102;
        r.name = cta_xstrdup("web");
        ASSERT_ERR(cta_store_ct_update(st, &r, err), CTA_E_NAME_EXISTS);
        free(r.name);
        r.name = cta_xstrdup("db");
        free(r.private_path);
        r.private_path = cta_xstrdup("/p/200");
        ASSERT_ERR(cta_store_ct_update(st, &r, err), CTA_E_PRIVATE_EXISTS);
        free(r.private_path);
        r.private_path = cta_xstrdup("/p/db");
        ASSERT_CALL_OK(cta_store_ct_update(st, &r, err));
        cta_ct_row_done(&r);
        ASSERT_CALL_OK(cta_store_ct_get_by_name(st, "db", &r, err));
        ASSERT_STR_EQ(r.eid, EID2);
        ASSERT_STR_EQ(r.private_path, "/p/db");
        return 0;
}

TEST(store__next_veid)
{
        static const struct {
                uint64_t min, want;
        } cases[] = {
                { 0, 0 }, { 99, 99 }, { 100, 102 }, { 101, 102 }, { 102, 102 },
                { 103, 105 }, { 104, 105 }, { 105, 105 }, { 1000, 1000 },
        };
        static const uint64_t used[] = { 100, 101, 103, 104 };
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        uint64_t v = 0;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        ASSERT_CALL_OK(cta_store_ct_next_veid(st, 100, &v, err));
        ASSERT_INT_EQ(v, 100);
        for (size_t i = 0; i < CTA_ARRAY_SIZE(used); i++) {
                _cleanup_(cta_ct_row_donep) struct cta_ct_row r = { .veid = 0 };
                char eid[37], priv[32];
                cta_uuid_new(eid);
                (void)snprintf(priv, sizeof(priv), "/p/%" PRIu64, used[i]);
                make_row(&r, eid, used[i], NULL, priv);
                ASSERT_CALL_OK(cta_store_ct_insert(st, &r, err));
        }
        for (size_t i = 0; i < CTA_ARRAY_SIZE(cases); i++) {
                ASSERT_CALL_OK(cta_store_ct_next_veid(st, cases[i].min, &v, err));
                if (v != cases[i].want)
                        TAP_FAIL("next_veid(%" PRIu64 ") = %" PRIu64 ", want %" PRIu64,
                                 cases[i].min, v, cases[i].want);
        }
        ASSERT_ERR(cta_store_ct_next_veid(st, (uint64_t)INT64_MAX + 1, &v, err), CTA_E_INVALID);
        return 0;
}

TEST(store__migrations_journal)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        struct cta_mig_row m = { .step = 0 };
        struct cta_mig_row *rows = NULL;
        size_t n = 0;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        ASSERT_CALL_OK(cta_store_mig_put(st, "m1", "src", EID1, "10.0.0.2:4433", "sending", NULL,
                                         err));
        ASSERT_CALL_OK(cta_store_mig_put(st, "m2", "dst", EID2, NULL, "receiving", "x", err));
        ASSERT_CALL_OK(cta_store_mig_put(st, "m3", "src", EID3, NULL, "done", NULL, err));
        ASSERT_CALL_OK(cta_store_mig_set_step(st, "m1", 4, err));
        ASSERT_CALL_OK(cta_store_mig_put(st, "m1", "src", EID1, "10.0.0.2:4433", "syncing",
                                         "pass 2", err));
        ASSERT_ERR(cta_store_mig_put(st, "m1", "dst", EID1, NULL, "x", NULL, err), CTA_E_INVALID);
        ASSERT_ERR(cta_store_mig_put(st, "m1", "src", EID2, NULL, "x", NULL, err), CTA_E_INVALID);
        ASSERT_ERR(cta_store_mig_put(st, "m9", "both", EID2, NULL, "x", NULL, err),
                   CTA_E_INVALID);
        ASSERT_ERR(cta_store_mig_set_step(st, "m9", 1, err), CTA_E_INVALID);
        ASSERT_ERR(cta_store_mig_get(st, "m9", &m, err), CTA_E_INVALID);

        ASSERT_CALL_OK(cta_store_mig_get(st, "m1", &m, err));
        ASSERT_STR_EQ(m.role, "src");
        ASSERT_STR_EQ(m.ct_eid, EID1);
        ASSERT_STR_EQ(m.peer, "10.0.0.2:4433");
        ASSERT_STR_EQ(m.state, "syncing");
        ASSERT_STR_EQ(m.detail, "pass 2");
        ASSERT_INT_EQ(m.step, 4);
        cta_mig_row_done(&m);

        ASSERT_CALL_OK(cta_store_mig_list_unfinished(st, &rows, &n, err));
        ASSERT_SIZE_EQ(n, 2);
        ASSERT_TRUE((streq(rows[0].id, "m1") && streq(rows[1].id, "m2")) ||
                    (streq(rows[0].id, "m2") && streq(rows[1].id, "m1")));
        cta_mig_rows_free(rows, n);
        return 0;
}

TEST(store__meta)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        _cleanup_free_ char *v = NULL;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        ASSERT_CALL_OK(cta_store_meta_get(st, "k", &v, err));
        ASSERT_NULL(v);
        ASSERT_CALL_OK(cta_store_meta_set(st, "k", "1", err));
        ASSERT_CALL_OK(cta_store_meta_set(st, "k", "2", err));
        ASSERT_CALL_OK(cta_store_meta_get(st, "k", &v, err));
        ASSERT_STR_EQ(v, "2");
        ASSERT_ERR(cta_store_meta_set(st, "cta.node_eid", "x", err), CTA_E_INVALID);
        return 0;
}

/* ---- concurrency ---- */

struct worker {
        struct cta_store *st;
        int id;
        int failures;
        int pass_ok;
        int same_veid_ok;
};

#define PER_THREAD 50

static void *worker_main(void *arg)
{
        struct worker *w = arg;

        for (int i = 0; i < PER_THREAD; i++) {
                struct cta_ct_row r, got = { .veid = 0 };
                struct cta_error *e = NULL;
                char eid[37], priv[32], pass[32];
                uint64_t veid = 1000 + (uint64_t)w->id * PER_THREAD + (uint64_t)i;
                struct cta_ct_row *rows = NULL;
                size_t n = 0;

                cta_uuid_new(eid);
                (void)snprintf(priv, sizeof(priv), "/p/%" PRIu64, veid);
                make_row(&r, eid, veid, NULL, priv);
                if (cta_store_ct_insert(w->st, &r, &e) < 0)
                        w->failures++;
                e = cta_error_free(e);
                if (cta_store_ct_get(w->st, eid, &got, &e) < 0 || got.veid != veid)
                        w->failures++;
                e = cta_error_free(e);
                cta_ct_row_done(&got);
                if (cta_store_ct_list(w->st, &rows, &n, &e) < 0 || n == 0)
                        w->failures++;
                e = cta_error_free(e);
                cta_ct_rows_free(rows, n);

                /* Everybody races for the same pass and the same veid: exactly
                 * one thread may win each round. */
                (void)snprintf(pass, sizeof(pass), "race-%d", i);
                if (cta_store_pass_add(w->st, pass, 100, &e) < 0)
                        w->failures++;
                e = cta_error_free(e);
                if (cta_store_pass_consume(w->st, pass, 50, &e) == 0)
                        w->pass_ok++;
                e = cta_error_free(e);

                cta_ct_row_done(&r);
                cta_uuid_new(eid);
                (void)snprintf(priv, sizeof(priv), "/p/same-%d-%d", w->id, i);
                make_row(&r, eid, 5000 + (uint64_t)i, NULL, priv);
                int rc = cta_store_ct_insert(w->st, &r, &e);
                if (rc == 0)
                        w->same_veid_ok++;
                else if (rc != -CTA_E_VEID_EXISTS)
                        w->failures++;
                e = cta_error_free(e);
                cta_ct_row_done(&r);
        }
        return NULL;
}

TEST(store__concurrency)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        struct worker w[4];
        pthread_t th[4];
        struct cta_ct_row *rows = NULL;
        size_t n = 0;
        int pass_ok = 0, same_ok = 0;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        for (int i = 0; i < 4; i++) {
                w[i] = (struct worker){ .st = st, .id = i };
                ASSERT_INT_EQ(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                ASSERT_INT_EQ(pthread_join(th[i], NULL), 0);
                ASSERT_INT_EQ(w[i].failures, 0);
                pass_ok += w[i].pass_ok;
                same_ok += w[i].same_veid_ok;
        }
        /* A pass re-added after being consumed can be consumed again, so a
         * round may see up to 4 winners but never more wins than adds. Each
         * consume that won deleted the pass, so a consume never wins twice
         * for one add: wins <= adds and at least one per round. */
        ASSERT_TRUE(pass_ok >= PER_THREAD && pass_ok <= 4 * PER_THREAD);
        ASSERT_INT_EQ(same_ok, PER_THREAD);
        ASSERT_CALL_OK(cta_store_ct_list(st, &rows, &n, err));
        ASSERT_SIZE_EQ(n, 4 * PER_THREAD + PER_THREAD);
        for (size_t i = 1; i < n; i++)
                ASSERT_TRUE(rows[i - 1].veid < rows[i].veid);
        cta_ct_rows_free(rows, n);
        return 0;
}

/* Strict one-winner check for the pass: add once, race consumers. */
struct consumer {
        struct cta_store *st;
        pthread_barrier_t *bar;
        int ok;
};

static void *consumer_main(void *arg)
{
        struct consumer *c = arg;
        struct cta_error *e = NULL;

        (void)pthread_barrier_wait(c->bar);
        c->ok = cta_store_pass_consume(c->st, "only-one", 1, &e) == 0;
        cta_error_free(e);
        return NULL;
}

TEST(store__pass_single_winner)
{
        _cleanup_(tdb_donep) struct tdb t = { "" };
        _cleanup_(cta_store_closep) struct cta_store *st = NULL;
        struct consumer c[8];
        pthread_t th[8];
        pthread_barrier_t bar;

        ASSERT_OK(tdb_init(&t));
        OPEN_OR_FAIL(&t, st);
        for (int round = 0; round < 20; round++) {
                int wins = 0;
                ASSERT_CALL_OK(cta_store_pass_add(st, "only-one", 100, err));
                ASSERT_INT_EQ(pthread_barrier_init(&bar, NULL, 8), 0);
                for (int i = 0; i < 8; i++) {
                        c[i] = (struct consumer){ .st = st, .bar = &bar };
                        ASSERT_INT_EQ(pthread_create(&th[i], NULL, consumer_main, &c[i]), 0);
                }
                for (int i = 0; i < 8; i++) {
                        ASSERT_INT_EQ(pthread_join(th[i], NULL), 0);
                        wins += c[i].ok;
                }
                (void)pthread_barrier_destroy(&bar);
                ASSERT_INT_EQ(wins, 1);
        }
        return 0;
}

int main(void)
{
        return tap_run(TESTS(T(store__reopen_keeps_node_eid), T(store__file_mode_0600),
                             T(store__wal_and_schema_version), T(store__newer_schema_refused),
                             T(store__foreign_database_refused), T(store__passes),
                             T(store__containers_crud), T(store__containers_clash),
                             T(store__next_veid), T(store__migrations_journal), T(store__meta),
                             T(store__concurrency), T(store__pass_single_winner)));
}
