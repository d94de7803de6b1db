/* Unit tests of the store's operations: backup under writes, prune, status. */
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keygate/config.h"
#include "keygate/store.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/store_ops.h"
#include "keygate/store_usage.h"
#include "keygate/storeops.h"
#include "keygate/workspaces.h"
#include "unit_util.h"

#define UT_ACTOR "test:unit"
#define UT_KEY   "KeyAAAAAAAAA"
/* Rows of 2 KiB that make the store span several backup steps. */
#define UT_FILL_ROWS  6000
#define UT_FILL_BYTES 2048
/* 2026-03-15T00:00:00Z in milliseconds. */
#define UT_T0_MS INT64_C(1773532800000)

static char ut_dir[UT_PATH_MAX];
static char ut_path[UT_PATH_MAX];
static kg_store_t *ut_store;

static void ut_exec(sqlite3 *db, const char *sql)
{
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s",
                  sqlite3_errmsg(db));
}

static int64_t ut_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK, "%s",
                  sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static void ut_setup(void)
{
    kg_store_opts_t opts = {KG_STORE_CREATE, 5000, 0, NULL};
    kg_diag_t diag = {{0}};

    ut_tmpdir(ut_dir);
    ut_join(ut_path, ut_dir, "keygate.db");
    ck_assert_msg(kg_store_open(ut_path, &opts, &ut_store, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_int_eq(kg_workspace_ensure_default(ut_store, UT_ACTOR, &diag),
                     KG_OK);
    ut_exec(kg_sqlite_db(ut_store),
            "INSERT INTO api_keys (id, workspace_id, name, prefix, last4, "
            "created_at, updated_at) SELECT '" UT_KEY "', id, 'k', 'kg', "
            "'abcd', 1, 1 FROM workspaces WHERE name = 'default'");
}

static void ut_teardown(void)
{
    kg_store_close(&ut_store);
    ut_tmpdir_remove(ut_dir);
}

/* ---- backup ---------------------------------------------------------------
 */

/* Another connection that commits pairs of audit rows until stopped. */
typedef struct ut_writer {
    atomic_bool stop;
    atomic_int commits;
} ut_writer_t;

static void *ut_writer_main(void *arg)
{
    ut_writer_t *w = arg;
    sqlite3 *db = NULL;

    ck_assert_int_eq(sqlite3_open(ut_path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    while (!atomic_load(&w->stop)) {
        /* One transaction, two rows: a consistent copy has an even count. */
        if (sqlite3_exec(db,
                         "BEGIN IMMEDIATE; INSERT INTO audit_events (at, "
                         "actor, action, object_type, object_id) VALUES (1, "
                         "'w', 'pair', 'key', 'a'), (1, 'w', 'pair', 'key', "
                         "'b'); COMMIT",
                         NULL, NULL, NULL) == SQLITE_OK) {
            atomic_fetch_add(&w->commits, 1);
        } else {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        }
        /* A gap between commits, as the usage writer leaves: the backup's
         * record then gets the write lock too. */
        usleep(500);
    }
    sqlite3_close(db);
    return NULL;
}

/*
 * A backup of a store larger than several steps, taken while another
 * connection commits all the time: it ends (the commits never make it
 * start over), it is intact, it holds whole transactions only, and it is
 * recorded with its size.
 */
START_TEST(test_backup_consistent_under_writes)
{
    char sql[256];
    char dest[UT_PATH_MAX];
    char real[PATH_MAX];
    kg_storeops_backup_t b;
    kg_store_backup_info_t last;
    kg_diag_t diag = {{0}};
    ut_writer_t w;
    pthread_t th;
    sqlite3 *copy = NULL;
    struct stat st;
    bool found = false;
    int before;
    int64_t pairs;

    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
             "WHERE i < %d) INSERT INTO audit_events (at, actor, action, "
             "object_type, object_id, detail) SELECT 1, 'fill', 'fill', "
             "'key', i, hex(randomblob(%d)) FROM c",
             UT_FILL_ROWS, UT_FILL_BYTES / 2);
    ut_exec(kg_sqlite_db(ut_store), sql);
    ut_join(dest, ut_dir, "backup.db");
    memset(&w, 0, sizeof(w));
    ck_assert_int_eq(pthread_create(&th, NULL, ut_writer_main, &w), 0);
    while (atomic_load(&w.commits) < 10) {
        sched_yield();
    }
    before = atomic_load(&w.commits);
    ck_assert_msg(kg_storeops_backup(ut_store, dest, 0, UT_ACTOR, &b, &diag) ==
                      KG_OK,
                  "%s", diag.msg);
    ck_assert_int_gt(atomic_load(&w.commits), before); /* it went on */
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);

    ck_assert_int_gt(b.pages, 3 * KG_STORE_BACKUP_STEP_PAGES);
    ck_assert_msg(b.recorded, "%s", b.record_diag.msg);
    ck_assert_int_eq(stat(dest, &st), 0);
    ck_assert_int_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq((int64_t)st.st_size, b.bytes);
    ck_assert_ptr_nonnull(realpath(dest, real));
    ck_assert_str_eq(b.path, real);
    ck_assert_int_eq(sqlite3_open_v2(dest, &copy, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(ut_int(copy, "SELECT count(*) FROM audit_events WHERE "
                                  "action = 'fill'"),
                     UT_FILL_ROWS);
    pairs = ut_int(copy, "SELECT count(*) FROM audit_events WHERE action = "
                         "'pair'");
    ck_assert_int_ge(pairs, 2 * before);
    ck_assert_int_eq(pairs % 2, 0);
    ck_assert_int_eq(ut_int(copy, "PRAGMA user_version"),
                     KG_STORE_SCHEMA_VERSION);
    sqlite3_close(copy);

    ck_assert_int_eq(kg_store_backup_last(ut_store, &last, &found, &diag),
                     KG_OK);
    ck_assert(found);
    ck_assert_str_eq(last.path, b.path);
    ck_assert_int_eq(last.bytes, b.bytes);
    ck_assert_int_eq(last.pages, b.pages);
    ck_assert_str_eq(last.actor, UT_ACTOR);
}
END_TEST

/* Where a backup may not go; a refused or replaced one leaves no temp. */
START_TEST(test_backup_destinations)
{
    char dest[UT_PATH_MAX];
    char sub[UT_PATH_MAX + 16];
    kg_storeops_backup_t b;
    kg_diag_t diag = {{0}};

    ut_join(dest, ut_dir, "b.db");
    ck_assert_int_eq(kg_storeops_backup(ut_store, dest, 0, UT_ACTOR, &b, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_storeops_backup(ut_store, dest, 0, UT_ACTOR, &b, &diag),
                     KG_ERR_EXISTS);
    ck_assert_int_eq(kg_storeops_backup(ut_store, dest, KG_STOREOPS_REPLACE,
                                        UT_ACTOR, &b, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_storeops_backup(ut_store, ut_path, KG_STOREOPS_REPLACE,
                                        UT_ACTOR, &b, &diag),
                     KG_ERR_INVAL);
    snprintf(sub, sizeof(sub), "%s-usage-a", ut_path);
    ck_assert_int_eq(kg_storeops_backup(ut_store, sub, 0, UT_ACTOR, &b, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(kg_storeops_backup(ut_store, ut_dir, KG_STOREOPS_REPLACE,
                                        UT_ACTOR, &b, &diag),
                     KG_ERR_INVAL);
    ut_join(sub, ut_dir, "missing/b.db");
    ck_assert_int_eq(kg_storeops_backup(ut_store, sub, 0, UT_ACTOR, &b, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(kg_storeops_backup(ut_store, "", 0, UT_ACTOR, &b, &diag),
                     KG_ERR_INVAL);
    ut_join(sub, ut_dir, "sub/");
    ck_assert_int_eq(kg_storeops_backup(ut_store, sub, 0, UT_ACTOR, &b, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(
        ut_int(kg_sqlite_db(ut_store), "SELECT count(*) FROM store_backups"),
        2);
    {
        char cmd[UT_PATH_MAX + 32];
        char out[UT_PATH_MAX];
        FILE *p;

        snprintf(cmd, sizeof(cmd), "ls -A '%s'", ut_dir);
        p = popen(cmd, "r");
        ck_assert_ptr_nonnull(p);
        while (fgets(out, sizeof(out), p) != NULL) {
            ck_assert_msg(strstr(out, ".tmp-") == NULL, "left: %s", out);
        }
        pclose(p);
    }
}
END_TEST

/* ---- retention and status ------------------------------------------------
 */

/* n events of the key at at_ms, ids "<tag>-<i>". */
static void ut_events(const char *tag, int64_t at_ms, int n)
{
    char sql[640];

    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
             "WHERE i < %d) INSERT INTO usage_events (request_id, key_id, "
             "workspace_id, at_ms, operation, status) SELECT '%s-' || i, "
             "'" UT_KEY "', 'w', %lld + i, 'chat', 200 FROM c",
             n, tag, (long long)at_ms);
    ut_exec(kg_sqlite_db(ut_store), sql);
}

/* Prune takes the oldest events before the cut-off, a batch at a time,
 * and nothing else. */
START_TEST(test_prune_batches)
{
    kg_diag_t diag = {{0}};
    int64_t oldest = 0;
    int64_t newest = 0;
    bool stored = false;
    size_t n = 0;

    ck_assert_int_eq(kg_store_usage_span(ut_store, &oldest, &newest, &diag),
                     KG_OK);
    ck_assert_int_eq(oldest, -1);
    ck_assert_int_eq(newest, -1);
    ut_events("old", UT_T0_MS, 2500);
    ut_events("new", UT_T0_MS + 86400000, 10);
    ck_assert_int_eq(
        kg_store_usage_prune(ut_store, UT_T0_MS + 3600000, 1000, &n, &diag),
        KG_OK);
    ck_assert_uint_eq(n, 1000);
    /* The oldest went first. */
    ck_assert_int_eq(kg_store_usage_stored(ut_store, "old-1", &stored, &diag),
                     KG_OK);
    ck_assert(!stored);
    ck_assert_int_eq(
        kg_store_usage_stored(ut_store, "old-1001", &stored, &diag), KG_OK);
    ck_assert(stored);
    ck_assert_int_eq(
        kg_store_usage_prune(ut_store, UT_T0_MS + 3600000, 1000, &n, &diag),
        KG_OK);
    ck_assert_uint_eq(n, 1000);
    ck_assert_int_eq(
        kg_store_usage_prune(ut_store, UT_T0_MS + 3600000, 1000, &n, &diag),
        KG_OK);
    ck_assert_uint_eq(n, 500);
    ck_assert_int_eq(
        kg_store_usage_prune(ut_store, UT_T0_MS + 3600000, 1000, &n, &diag),
        KG_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(kg_store_usage_span(ut_store, &oldest, &newest, &diag),
                     KG_OK);
    ck_assert_int_eq(oldest, UT_T0_MS + 86400000 + 1);
    ck_assert_int_eq(newest, UT_T0_MS + 86400000 + 10);
    ck_assert_int_eq(kg_store_usage_prune(ut_store, 0, 0, &n, &diag),
                     KG_ERR_INVAL);
}
END_TEST

/* The status: files, rows, span, journal, backup; and its JSON. */
START_TEST(test_status)
{
    char dest[UT_PATH_MAX];
    char journal[UT_PATH_MAX + 16];
    kg_storeops_status_t *st = malloc(sizeof(*st));
    kg_storeops_backup_t b;
    kg_diag_t diag = {{0}};
    kg_config_t *cfg = NULL;
    json_t *j;

    ck_assert_ptr_nonnull(st);
    ck_assert_int_eq(kg_config_load(NULL, &cfg, &diag), KG_OK);
    free(cfg->hash_key_file);
    cfg->hash_key_file = strdup("/nonexistent/hash.key");
    cfg->usage_retention = 90 * 86400;
    ut_events("e", UT_T0_MS, 3);
    /* A journal segment with garbage: no record, its bytes torn. */
    snprintf(journal, sizeof(journal), "%s-usage-a", ut_path);
    ut_write_text(journal, "not a journal record");
    ut_join(dest, ut_dir, "b.db");
    ck_assert_int_eq(kg_storeops_backup(ut_store, dest, 0, UT_ACTOR, &b, &diag),
                     KG_OK);
    ck_assert_msg(kg_storeops_status(ut_store, cfg, st, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(st->schema_version, KG_STORE_SCHEMA_VERSION);
    ck_assert(st->files[KG_STOREOPS_FILE_DB].present);
    ck_assert_int_eq(st->files[KG_STOREOPS_FILE_DB].mode, 0600);
    ck_assert(st->files[KG_STOREOPS_FILE_JOURNAL_A].present);
    ck_assert(!st->files[KG_STOREOPS_FILE_JOURNAL_B].present);
    ck_assert(!st->files[KG_STOREOPS_FILE_HASH_KEY].present);
    ck_assert_uint_eq(st->journal.records, 0);
    ck_assert_uint_eq(st->journal.torn_bytes, strlen("not a journal record"));
    ck_assert_uint_eq(st->journal_pending, 0);
    ck_assert_str_eq(st->counts[0].table, "workspaces");
    ck_assert_int_eq(st->counts[0].rows, 1);
    ck_assert_int_eq(st->oldest_event_ms, UT_T0_MS + 1);
    ck_assert(st->has_backup);
    ck_assert_str_eq(st->backup.path, b.path);
    j = kg_storeops_status_to_json(st, st->backup.at + 90);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(j, "rows"), "usage_events")),
                     3);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "usageEvents"), "retention")),
                     "90d");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "usageEvents"), "oldest")),
                     "2026-03-15T00:00:00.001Z");
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(j, "lastBackup"), "ageSeconds")),
                     90);
    ck_assert(json_is_null(json_object_get(
        json_array_get(json_object_get(j, "files"), KG_STOREOPS_FILE_HASH_KEY),
        "bytes")));
    json_decref(j);
    kg_config_free(&cfg);
    free(st);
}
END_TEST

static Suite *storeops_suite(void)
{
    Suite *s = suite_create("storeops");
    TCase *tc = tcase_create("storeops");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, test_backup_consistent_under_writes);
    tcase_add_test(tc, test_backup_destinations);
    tcase_add_test(tc, test_prune_batches);
    tcase_add_test(tc, test_status);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(storeops_suite());
}
