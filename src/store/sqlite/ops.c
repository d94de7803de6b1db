/* SQLite statements of the store's operations: online backup, counts, size. */
#include "keygate/store_ops.h"
#include "store/sqlite/sqlite_store.h"

#include <stdio.h>
#include <string.h>

/* How often a step that finds the source busy is tried again, 10 ms apart
 * (a read transaction is open, so only a checkpoint in progress may). */
#define OPS_BUSY_TRIES 500

static const char ops_sql_record[] =
    "INSERT INTO store_backups (at, path, bytes, pages, duration_ms, actor) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
static const char ops_sql_last[] =
    "SELECT at, path, bytes, pages, duration_ms, actor FROM store_backups "
    "ORDER BY id DESC LIMIT 1";

/* One statement per table: table names cannot be bound parameters. */
static const struct ops_table {
    const char *table;
    const char *sql;
} ops_tables[KG_STORE_NTABLES] = {
    {"workspaces", "SELECT count(*) FROM workspaces"},
    {"api_keys", "SELECT count(*) FROM api_keys"},
    {"key_secrets", "SELECT count(*) FROM key_secrets"},
    {"workspace_credentials", "SELECT count(*) FROM workspace_credentials"},
    {"admin_tokens", "SELECT count(*) FROM admin_tokens"},
    {"audit_events", "SELECT count(*) FROM audit_events"},
    {"usage_events", "SELECT count(*) FROM usage_events"},
    {"usage_rollup", "SELECT count(*) FROM usage_rollup"},
    {"store_backups", "SELECT count(*) FROM store_backups"},
};

static const char *const ops_space_sql[3] = {
    "PRAGMA page_size",
    "PRAGMA page_count",
    "PRAGMA freelist_count",
};

/* One integer from a statement of the cached set. */
static kg_err_t ops_int(kg_store_t *store, const char *sql, const char *action,
                        int64_t *out, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, sql, diag);
    int src;

    *out = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
    }
    kg_sqlite_reset(st);
    return kg_sqlite_error(store, src, action, diag);
}

/* PRAGMA quick_check on the copy: "ok" or the first problem. */
static kg_err_t ops_check_copy(sqlite3 *db, const char *dest, kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    kg_err_t rc = KG_OK;
    int src;

    src = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
    if (src == SQLITE_OK) {
        src = sqlite3_step(st);
    }
    if (src != SQLITE_ROW) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "%s: checking the copy: %s", dest,
                          sqlite3_errstr(src));
    } else if (strcmp(kg_sqlite_col_text(st, 0), "ok") != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "%s: the copy is damaged: %.200s",
                          dest, kg_sqlite_col_text(st, 0));
    }
    sqlite3_finalize(st);
    return rc;
}

/* Step the backup to its end; busy sources are waited for, bounded. */
static int ops_step_all(sqlite3_backup *bk)
{
    int src;
    int busy = 0;

    do {
        src = sqlite3_backup_step(bk, KG_STORE_BACKUP_STEP_PAGES);
        if (src == SQLITE_BUSY || src == SQLITE_LOCKED) {
            if (++busy > OPS_BUSY_TRIES) {
                break;
            }
            sqlite3_sleep(10);
            src = SQLITE_OK;
        }
    } while (src == SQLITE_OK);
    return src;
}

static kg_err_t ops_backup_copy(kg_store_t *store, const char *dest,
                                int64_t *pages, kg_diag_t *diag)
{
    sqlite3 *src_db = kg_sqlite_db(store);
    sqlite3 *dst = NULL;
    sqlite3_backup *bk = NULL;
    kg_err_t rc;
    int src;

    *pages = 0;
    /*
     * A read transaction held across every step: each step reads the same
     * snapshot, so the copy is consistent, and writes by other connections
     * (which WAL lets go on meanwhile) never make the backup start over.
     * Reading the schema opens it.
     */
    src = sqlite3_exec(src_db, "BEGIN; SELECT count(*) FROM sqlite_schema",
                       NULL, NULL, NULL);
    rc = kg_sqlite_error(store, src, "starting the backup", diag);
    if (rc != KG_OK) {
        goto out;
    }
    src = sqlite3_open_v2(dest, &dst,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL);
    if (src == SQLITE_OK) {
        bk = sqlite3_backup_init(dst, "main", src_db, "main");
        src = bk == NULL ? sqlite3_errcode(dst) : SQLITE_OK;
    }
    if (src != SQLITE_OK) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "%s: cannot write the backup: %s",
                          dest, sqlite3_errstr(src));
        goto out;
    }
    src = ops_step_all(bk);
    *pages = sqlite3_backup_pagecount(bk);
    if (sqlite3_backup_finish(bk) != SQLITE_OK && src == SQLITE_DONE) {
        src = sqlite3_errcode(dst);
    }
    bk = NULL;
    if (src != SQLITE_DONE) {
        rc = kg_diag_fail(
            diag, src == SQLITE_BUSY ? KG_ERR_STORE_BUSY : KG_ERR_IO,
            "%s: the backup failed: %s", dest, sqlite3_errstr(src));
        goto out;
    }
    rc = ops_check_copy(dst, dest, diag);
out:
    if (bk != NULL) {
        sqlite3_backup_finish(bk);
    }
    sqlite3_close(dst);
    kg_store_rollback(store); /* ends the read transaction */
    return rc;
}

static kg_err_t ops_backup_record(kg_store_t *store,
                                  const kg_store_backup_info_t *info,
                                  kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    kg_err_t rc;

    rc = kg_store_begin(store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    st = kg_sqlite_stmt(store, ops_sql_record, diag);
    if (st == NULL) {
        kg_store_rollback(store);
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, info->at);
    kg_sqlite_bind_text(st, 2, info->path);
    sqlite3_bind_int64(st, 3, info->bytes);
    sqlite3_bind_int64(st, 4, info->pages);
    sqlite3_bind_int64(st, 5, info->duration_ms);
    kg_sqlite_bind_text(st, 6, info->actor);
    rc = kg_sqlite_exec(store, st, "recording the backup", diag);
    if (rc == KG_OK) {
        rc = kg_store_commit(store, diag);
    } else {
        kg_store_rollback(store);
    }
    return rc;
}

static kg_err_t ops_backup_last(kg_store_t *store, kg_store_backup_info_t *out,
                                bool *found, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ops_sql_last, diag);
    int src;

    memset(out, 0, sizeof(*out));
    *found = false;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *found = true;
        out->at = sqlite3_column_int64(st, 0);
        snprintf(out->path, sizeof(out->path), "%s", kg_sqlite_col_text(st, 1));
        out->bytes = sqlite3_column_int64(st, 2);
        out->pages = sqlite3_column_int64(st, 3);
        out->duration_ms = sqlite3_column_int64(st, 4);
        snprintf(out->actor, sizeof(out->actor), "%s",
                 kg_sqlite_col_text(st, 5));
    }
    kg_sqlite_reset(st);
    return kg_sqlite_error(store, src, "reading the last backup", diag);
}

static kg_err_t ops_counts(kg_store_t *store, kg_store_count_t *out,
                           kg_diag_t *diag)
{
    kg_err_t rc = KG_OK;

    for (size_t i = 0; i < KG_STORE_NTABLES && rc == KG_OK; i++) {
        out[i].table = ops_tables[i].table;
        rc = ops_int(store, ops_tables[i].sql, "counting rows", &out[i].rows,
                     diag);
    }
    return rc;
}

static kg_err_t ops_space(kg_store_t *store, kg_store_space_t *out,
                          kg_diag_t *diag)
{
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    rc = ops_int(store, ops_space_sql[0], "reading the page size",
                 &out->page_size, diag);
    if (rc == KG_OK) {
        rc = ops_int(store, ops_space_sql[1], "reading the page count",
                     &out->pages, diag);
    }
    if (rc == KG_OK) {
        rc = ops_int(store, ops_space_sql[2], "reading the free pages",
                     &out->free_pages, diag);
    }
    return rc;
}

const kg_store_maint_ops_t kg_sqlite_maint_ops = {
    .backup_copy = ops_backup_copy,
    .backup_record = ops_backup_record,
    .backup_last = ops_backup_last,
    .counts = ops_counts,
    .space = ops_space,
};
