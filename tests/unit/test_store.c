/* Unit tests of the SQLite store: opening, refusing, migrating, helpers. */
#include <sodium.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keygate/keys.h"
#include "keygate/store.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/workspaces.h"
#include "unit_util.h"

#define UT_ACTOR "test:unit"

static const kg_store_opts_t ut_create = {KG_STORE_CREATE, 1000, 0, NULL};
static const kg_store_opts_t ut_existing = {0, 1000, 0, NULL};

/* A single integer from sql (a PRAGMA or a count). */
static int64_t ut_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static bool ut_has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    bool found;

    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT 1 FROM sqlite_schema WHERE "
                                        "type = 'table' AND name = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* Run sql on a plain SQLite connection to path (not through keygate). */
static void ut_raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;

    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s",
                  sqlite3_errmsg(db));
    sqlite3_close(db);
}

START_TEST(test_create)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};
    sqlite3_stmt *st = NULL;
    sqlite3 *db;

    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    umask(0); /* the mode must come from keygate, not the umask */
    ck_assert_msg(kg_store_open(path, &ut_create, &store, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(ut_file_mode(path), 0600);
    ck_assert_int_eq(kg_store_schema_version(store), KG_STORE_SCHEMA_VERSION);
    ck_assert_str_eq(kg_store_path(store), path);
    db = kg_sqlite_db(store);
    ck_assert_int_eq(ut_int(db, "PRAGMA user_version"),
                     KG_STORE_SCHEMA_VERSION);
    ck_assert_int_eq(ut_int(db, "PRAGMA application_id"),
                     KG_STORE_APPLICATION_ID);
    ck_assert_int_eq(ut_int(db, "PRAGMA foreign_keys"), 1);
    /* Reads through a 1 GiB map (store_set_io). */
    ck_assert_int_eq(ut_int(db, "PRAGMA mmap_size"), INT64_C(1) << 30);
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    ck_assert(ut_has_table(db, "workspaces"));
    ck_assert(ut_has_table(db, "api_keys"));
    ck_assert(ut_has_table(db, "key_secrets"));
    ck_assert(ut_has_table(db, "audit_events"));
    ck_assert(ut_has_table(db, "usage_events"));
    ck_assert(ut_has_table(db, "usage_rollup"));
    kg_store_close(&store);
    ck_assert_ptr_null(store);
    kg_store_close(&store); /* twice is harmless */

    /* Reopening an existing store needs no CREATE and changes nothing. */
    ck_assert_int_eq(kg_store_open(path, &ut_existing, &store, &diag), KG_OK);
    ck_assert_int_eq(kg_store_schema_version(store), KG_STORE_SCHEMA_VERSION);
    kg_store_close(&store);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_missing)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *store = (kg_store_t *)(void *)dir;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    ck_assert_int_eq(kg_store_open(path, &ut_existing, &store, &diag),
                     KG_ERR_STORE_MISSING);
    ck_assert_ptr_null(store);
    ck_assert_ptr_nonnull(strstr(diag.msg, path));
    ck_assert_ptr_nonnull(strstr(diag.msg, "keygate init"));
    ck_assert_int_eq(ut_file_mode(path), -1); /* not created */
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_not_a_file)
{
    char dir[UT_PATH_MAX];
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ck_assert_int_eq(kg_store_open(dir, &ut_create, &store, &diag),
                     KG_ERR_STORE);
    ck_assert_ptr_null(store);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_random_bytes_corrupt)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    unsigned char junk[8192];
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};
    char *after;
    size_t len = 0;

    randombytes_buf(junk, sizeof(junk));
    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    ut_write_file(path, junk, sizeof(junk), 0600);
    ck_assert_int_eq(kg_store_open(path, &ut_existing, &store, &diag),
                     KG_ERR_STORE_CORRUPT);
    ck_assert_ptr_null(store);
    ck_assert_ptr_nonnull(strstr(diag.msg, path));
    /* CREATE does not clobber it either, and the bytes are untouched. */
    ck_assert_int_eq(kg_store_open(path, &ut_create, &store, &diag),
                     KG_ERR_STORE_CORRUPT);
    after = ut_read_file(path, &len);
    ck_assert_uint_eq(len, sizeof(junk));
    ck_assert_int_eq(memcmp(after, junk, len), 0);
    free(after);
    ut_tmpdir_remove(dir);
}
END_TEST

typedef struct ut_foreign_row {
    const char *what;
    const char *sql;
    kg_err_t want;
} ut_foreign_row_t;

static const ut_foreign_row_t ut_foreign_rows[] = {
    {"another application's table",
     "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
     "INSERT INTO notes (body) VALUES ('hello');",
     KG_ERR_STORE_CORRUPT},
    {"another application id", "PRAGMA application_id = 1234;",
     KG_ERR_STORE_CORRUPT},
    {"a table named like ours",
     "CREATE TABLE workspaces (id TEXT); PRAGMA user_version = 1;",
     KG_ERR_STORE_CORRUPT},
};

START_TEST(test_foreign_sqlite_db)
{
    const ut_foreign_row_t *row = &ut_foreign_rows[_i];
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};
    sqlite3 *db = NULL;

    ut_tmpdir(dir);
    ut_join(path, dir, "other.db");
    ut_raw_exec(path, row->sql);
    ck_assert_msg(kg_store_open(path, &ut_create, &store, &diag) == row->want,
                  "%s: %s", row->what, diag.msg);
    ck_assert_ptr_null(store);
    ck_assert_ptr_nonnull(strstr(diag.msg, "not a keygate store"));
    /* Nothing was added to the other application's database. */
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert(!ut_has_table(db, "api_keys"));
    /* A foreign database is refused before its journal mode is touched. */
    {
        sqlite3_stmt *st = NULL;

        ck_assert_int_eq(
            sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
            SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "delete");
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_newer_version)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    char sql[64];
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    ck_assert_int_eq(kg_store_open(path, &ut_create, &store, &diag), KG_OK);
    kg_store_close(&store);
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
             KG_STORE_SCHEMA_VERSION + 1);
    ut_raw_exec(path, sql);
    ck_assert_int_eq(kg_store_open(path, &ut_existing, &store, &diag),
                     KG_ERR_STORE_VERSION);
    ck_assert_ptr_null(store);
    ck_assert_ptr_nonnull(strstr(diag.msg, "upgrade"));
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_bad_target)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_opts_t opts = {KG_STORE_CREATE, 1000, KG_STORE_SCHEMA_VERSION + 1,
                            NULL};
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    ck_assert_int_eq(kg_store_open(path, &opts, &store, &diag),
                     KG_ERR_INTERNAL);
    ck_assert_ptr_null(store);
    opts.target_version = -1;
    ck_assert_int_eq(kg_store_open(path, &opts, &store, &diag),
                     KG_ERR_INTERNAL);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_migrate_from_v1)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    unsigned char key[KG_KEYHASH_KEY_LEN];
    kg_store_opts_t v1 = {KG_STORE_CREATE, 1000, 1, NULL};
    kg_store_t *store = NULL;
    kg_keyhash_t *hk = NULL;
    kg_keys_ctx_t ctx;
    kg_key_t made;
    kg_key_t got;
    kg_workspace_t ws;
    kg_token_t tok;
    kg_diag_t diag = {{0}};
    char token[KG_TOKEN_STRLEN];
    sqlite3 *db;

    memset(key, 3, sizeof(key));
    ck_assert_int_eq(kg_keyhash_from_bytes(key, &hk), KG_OK);
    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    ck_assert_msg(kg_store_open(path, &v1, &store, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(store), 1);
    db = kg_sqlite_db(store);
    ck_assert_int_eq(ut_int(db, "PRAGMA user_version"), 1);
    ck_assert(ut_has_table(db, "api_keys"));
    ck_assert(!ut_has_table(db, "usage_events"));
    ck_assert(!ut_has_table(db, "usage_rollup"));

    /* Data written by the version-1 schema through the library (whose
     * default workspace was in api-keys mode). */
    ck_assert_int_eq(kg_workspace_create(store, UT_ACTOR, KG_WORKSPACE_DEFAULT,
                                         KG_MODE_API_KEYS, NULL, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_create(store, UT_ACTOR, "team-a",
                                         KG_MODE_CREDITS, &ws, &diag),
                     KG_OK);
    memset(&ctx, 0, sizeof(ctx));
    ctx.store = store;
    ctx.hashkey = hk;
    ctx.prefix = "kg";
    ctx.max_ttl = 90 * 86400;
    ctx.default_ttl = 30 * 86400;
    ctx.actor = UT_ACTOR;
    /* A key as version-1 code wrote it: today's library speaks the newest
     * schema, so the rows are written with version 1's columns by hand. */
    {
        unsigned char hash[KG_KEYHASH_LEN];
        sqlite3_stmt *st = NULL;
        kg_token_t t;

        memset(&made, 0, sizeof(made));
        ck_assert_int_eq(kg_token_generate("kg", &t), KG_OK);
        ck_assert_int_eq(kg_token_format(&t, token, sizeof(token)), KG_OK);
        kg_keyhash_compute(hk, t.id, t.secret, hash);
        snprintf(made.id, sizeof(made.id), "%s", t.id);
        memcpy(made.last4, t.secret + KG_TOKEN_SECRET_LEN - 4, 4);
        made.rules = strdup("{\"allow_models\": [\"gpt-4o\"]}");
        made.expires_at = 2000000000;
        ck_assert_int_eq(
            sqlite3_prepare_v2(
                db,
                "INSERT INTO api_keys (id, workspace_id, name, prefix, last4, "
                "created_at, updated_at, expires_at, rules) SELECT ?1, id, "
                "'before-migration', 'kg', ?2, 1, 1, ?3, ?4 FROM workspaces "
                "WHERE name = 'team-a'",
                -1, &st, NULL),
            SQLITE_OK);
        sqlite3_bind_text(st, 1, made.id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, made.last4, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, made.expires_at);
        sqlite3_bind_text(st, 4, made.rules, -1, SQLITE_STATIC);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        ck_assert_int_eq(
            sqlite3_prepare_v2(db,
                               "INSERT INTO key_secrets (key_id, hash, "
                               "created_at) VALUES (?, ?, 1)",
                               -1, &st, NULL),
            SQLITE_OK);
        sqlite3_bind_text(st, 1, made.id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, hash, sizeof(hash), SQLITE_STATIC);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        ck_assert_int_eq(sqlite3_exec(db,
                                      "INSERT INTO audit_events (at, actor, "
                                      "action, object_type, object_id) "
                                      "VALUES (1, 'test', 'create', 'key', "
                                      "'x')",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        kg_token_wipe(&t);
    }
    kg_store_close(&store);

    /* Reopen with the default target: migrated to the newest version. */
    ck_assert_msg(kg_store_open(path, &ut_existing, &store, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_int_eq(kg_store_schema_version(store), KG_STORE_SCHEMA_VERSION);
    db = kg_sqlite_db(store);
    ck_assert_int_eq(ut_int(db, "PRAGMA user_version"),
                     KG_STORE_SCHEMA_VERSION);
    ck_assert(ut_has_table(db, "usage_events"));
    ck_assert(ut_has_table(db, "usage_rollup"));
    ctx.store = store;
    ck_assert_int_eq(kg_keys_get(&ctx, made.id, &got, &diag), KG_OK);
    ck_assert_str_eq(got.name, "before-migration");
    ck_assert_str_eq(got.workspace_name, "team-a");
    ck_assert_str_eq(got.rules, made.rules);
    ck_assert_int_eq(got.expires_at, made.expires_at);
    ck_assert_str_eq(got.last4, made.last4);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM workspaces"), 2);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM audit_events"), 3);
    /* The token issued before the migration still verifies. */
    ck_assert_int_eq(kg_token_parse(token, strlen(token), &tok), KG_OK);
    ck_assert_int_eq(kg_keys_verify(&ctx, &tok, NULL, &diag), KG_OK);
    /* The new tables work, with their foreign keys. */
    ck_assert_int_eq(sqlite3_exec(db,
                                  "INSERT INTO usage_events (request_id, "
                                  "key_id, workspace_id, at_ms, operation, "
                                  "status) SELECT 'r1', id, workspace_id, 1, "
                                  "'chat', 200 FROM api_keys",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    ck_assert_int_ne(sqlite3_exec(db,
                                  "INSERT INTO usage_events (request_id, "
                                  "key_id, workspace_id, at_ms, operation, "
                                  "status) VALUES ('r2', 'nokey', 'w', 1, "
                                  "'chat', 200)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    kg_key_clear(&made);
    kg_key_clear(&got);
    kg_workspace_clear(&ws);
    kg_token_wipe(&tok);
    kg_store_close(&store);
    kg_keyhash_free(&hk);
    ut_tmpdir_remove(dir);
}
END_TEST

/* sql on db: SQLite's result code. */
static int ut_try(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/*
 * 4 → 5 lets 'pool' into workspaces.mode and usage_events.mode and keeps
 * every row and every other constraint; a connection opened before the
 * migration sees the new schema too.
 */
START_TEST(test_migrate_v4_to_v5_pool_mode)
{
    kg_store_opts_t v4 = {KG_STORE_CREATE, 1000, 4, NULL};
    kg_store_opts_t v5 = {0, 1000, 5, NULL};
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *old = NULL;
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};
    sqlite3 *db;

    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    ck_assert_msg(kg_store_open(path, &v4, &old, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(old), 4);
    db = kg_sqlite_db(old);
    ck_assert_int_eq(ut_try(db, "INSERT INTO workspaces (id, name, mode, "
                                "created_at, updated_at) VALUES "
                                "('WWWWWWWWWWWW', 'default', 'credits', 1, 1)"),
                     SQLITE_OK);
    ck_assert_int_eq(ut_try(db, "INSERT INTO api_keys (id, workspace_id, "
                                "name, prefix, last4, created_at, updated_at) "
                                "VALUES ('KKKKKKKKKKKK', 'WWWWWWWWWWWW', 'k', "
                                "'kg', 'abcd', 1, 1)"),
                     SQLITE_OK);
    ck_assert_int_eq(ut_try(db, "INSERT INTO usage_events (request_id, key_id, "
                                "workspace_id, at_ms, operation, mode, status) "
                                "VALUES ('r1', 'KKKKKKKKKKKK', 'WWWWWWWWWWWW', "
                                "1, 'chat', 'credits', 200)"),
                     SQLITE_OK);
    ck_assert_int_ne(ut_try(db, "UPDATE workspaces SET mode = 'pool'"),
                     SQLITE_OK);

    /* Another connection migrates (exactly 4 → 5) while this one stays
     * open. */
    ck_assert_msg(kg_store_open(path, &v5, &store, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(store), 5);
    ck_assert_int_eq(ut_int(kg_sqlite_db(store), "PRAGMA user_version"), 5);
    for (int i = 0; i < 2; i++) {
        db = kg_sqlite_db(i == 0 ? store : old);
        ck_assert_int_eq(ut_try(db, "UPDATE workspaces SET mode = 'pool'"),
                         SQLITE_OK);
        ck_assert_int_ne(ut_try(db, "UPDATE workspaces SET mode = 'free'"),
                         SQLITE_OK);
        ck_assert_int_ne(ut_try(db, "UPDATE usage_events SET mode = 'hybrid'"),
                         SQLITE_OK);
        ck_assert_int_eq(ut_try(db, "UPDATE usage_events SET mode = 'pool'"),
                         SQLITE_OK);
        ck_assert_int_eq(ut_try(db, "UPDATE usage_events SET mode = 'credits'"),
                         SQLITE_OK);
    }
    db = kg_sqlite_db(store);
    /* Rows, foreign keys and the revision trigger are as before. */
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM usage_events"), 1);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM api_keys"), 1);
    ck_assert_int_ne(ut_try(db, "DELETE FROM workspaces"), SQLITE_OK);
    {
        int64_t rev = ut_int(db, "SELECT rev FROM key_revision");

        ck_assert_int_eq(ut_try(db, "UPDATE workspaces SET mode = 'hybrid'"),
                         SQLITE_OK);
        ck_assert_int_gt(ut_int(db, "SELECT rev FROM key_revision"), rev);
    }
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM pragma_integrity_check "
                                "WHERE integrity_check != 'ok'"),
                     0);
    kg_store_close(&old);
    kg_store_close(&store);
    /* Opening again changes nothing. */
    ck_assert_msg(kg_store_open(path, &v5, &store, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(store), 5);
    kg_store_close(&store);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_wal_files_private)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    char wal[UT_PATH_MAX + 8];
    char shm[UT_PATH_MAX + 8];
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    umask(0);
    ck_assert_int_eq(kg_store_open(path, &ut_create, &store, &diag), KG_OK);
    ck_assert_int_eq(kg_workspace_ensure_default(store, UT_ACTOR, &diag),
                     KG_OK);
    ck_assert_int_eq(ut_file_mode(path), 0600);
    ck_assert_int_eq(ut_file_mode(wal), 0600);
    ck_assert_int_eq(ut_file_mode(shm), 0600);
    kg_store_close(&store);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_transactions)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *store = NULL;
    kg_store_t *other = NULL;
    kg_store_opts_t quick = {0, 50, 0, NULL};
    kg_diag_t diag = {{0}};
    sqlite3 *db;

    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    ck_assert_int_eq(kg_store_open(path, &ut_create, &store, &diag), KG_OK);
    db = kg_sqlite_db(store);
    ck_assert_int_eq(kg_store_begin(store, &diag), KG_OK);
    ck_assert_int_eq(sqlite3_exec(db,
                                  "INSERT INTO workspaces (id, name, "
                                  "created_at, updated_at) VALUES "
                                  "('w1', 'a', 1, 1)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    kg_store_rollback(store);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM workspaces"), 0);
    kg_store_rollback(store); /* outside a transaction: harmless */

    /* A second handle waits busy_timeout for the write lock, then fails. */
    ck_assert_int_eq(kg_store_open(path, &quick, &other, &diag), KG_OK);
    ck_assert_int_eq(kg_store_begin(store, &diag), KG_OK);
    ck_assert_int_eq(kg_store_begin(other, &diag), KG_ERR_STORE_BUSY);
    ck_assert_ptr_nonnull(strstr(diag.msg, "locked"));
    ck_assert_int_eq(kg_store_commit(store, &diag), KG_OK);
    ck_assert_int_eq(kg_store_begin(other, &diag), KG_OK);
    ck_assert_int_eq(kg_store_commit(other, &diag), KG_OK);
    kg_store_close(&other);
    kg_store_close(&store);
    ut_tmpdir_remove(dir);
}
END_TEST

typedef struct ut_errmap_row {
    int sqlite_rc;
    kg_err_t want;
} ut_errmap_row_t;

static const ut_errmap_row_t ut_errmap_rows[] = {
    {SQLITE_OK, KG_OK},
    {SQLITE_DONE, KG_OK},
    {SQLITE_ROW, KG_OK},
    {SQLITE_BUSY, KG_ERR_STORE_BUSY},
    {SQLITE_BUSY_SNAPSHOT, KG_ERR_STORE_BUSY},
    {SQLITE_LOCKED, KG_ERR_STORE_BUSY},
    {SQLITE_CORRUPT, KG_ERR_STORE_CORRUPT},
    {SQLITE_NOTADB, KG_ERR_STORE_CORRUPT},
    {SQLITE_CONSTRAINT, KG_ERR_EXISTS},
    {SQLITE_CONSTRAINT_UNIQUE, KG_ERR_EXISTS},
    {SQLITE_NOMEM, KG_ERR_NOMEM},
    {SQLITE_IOERR, KG_ERR_STORE},
    {SQLITE_IOERR_WRITE, KG_ERR_STORE},
    {SQLITE_FULL, KG_ERR_STORE},
    {SQLITE_READONLY, KG_ERR_STORE},
    {SQLITE_CANTOPEN, KG_ERR_STORE},
};

START_TEST(test_error_map)
{
    const ut_errmap_row_t *row = &ut_errmap_rows[_i];
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_sqlite_error(NULL, row->sqlite_rc, "testing", &diag),
                     row->want);
    if (row->want != KG_OK) {
        ck_assert_ptr_nonnull(strstr(diag.msg, "testing"));
    }
}
END_TEST

START_TEST(test_stmt_helpers)
{
    static const char sql_a[] = "SELECT ?1, ?2, ?3";
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *store = NULL;
    kg_diag_t diag = {{0}};
    sqlite3_stmt *st;

    ut_tmpdir(dir);
    ut_join(path, dir, "keygate.db");
    ck_assert_int_eq(kg_store_open(path, &ut_create, &store, &diag), KG_OK);
    st = kg_sqlite_stmt(store, sql_a, &diag);
    ck_assert_ptr_nonnull(st);
    /* Cached by the address of the text. */
    ck_assert_ptr_eq(kg_sqlite_stmt(store, sql_a, &diag), st);
    ck_assert_int_eq(kg_sqlite_bind_text(st, 1, NULL), SQLITE_OK);
    ck_assert_int_eq(kg_sqlite_bind_opt_int(st, 2, -1), SQLITE_OK);
    ck_assert_int_eq(kg_sqlite_bind_opt_int(st, 3, 7), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq(kg_sqlite_col_text(st, 0), "");
    ck_assert_int_eq(kg_sqlite_col_opt_int(st, 1), -1);
    ck_assert_int_eq(kg_sqlite_col_opt_int(st, 2), 7);
    kg_sqlite_reset(st);
    kg_sqlite_reset(NULL);
    /* Bindings were cleared by the reset. */
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(kg_sqlite_col_opt_int(st, 2), -1);
    kg_sqlite_reset(st);
    ck_assert_ptr_null(kg_sqlite_stmt(store, "SELECT FROM nothing", &diag));
    ck_assert(diag.msg[0] != '\0');
    kg_store_close(&store);
    ut_tmpdir_remove(dir);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_create);
    tcase_add_test(tc, test_missing);
    tcase_add_test(tc, test_not_a_file);
    tcase_add_test(tc, test_random_bytes_corrupt);
    tcase_add_loop_test(tc, test_foreign_sqlite_db, 0,
                        (int)UT_NROWS(ut_foreign_rows));
    tcase_add_test(tc, test_newer_version);
    tcase_add_test(tc, test_bad_target);
    tcase_add_test(tc, test_migrate_from_v1);
    tcase_add_test(tc, test_migrate_v4_to_v5_pool_mode);
    tcase_add_test(tc, test_wal_files_private);
    tcase_add_test(tc, test_transactions);
    tcase_add_loop_test(tc, test_error_map, 0, (int)UT_NROWS(ut_errmap_rows));
    tcase_add_test(tc, test_stmt_helpers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(store_suite());
}
