/* The SQLite implementation of the store's workspace rows. */
#include "keygate/store_workspaces.h"
#include "store/sqlite/sqlite_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS_COLUMNS                                                           \
    "w.id, w.name, w.mode, w.credits_balance, w.rules, w.created_at, "       \
    "w.updated_at, (SELECT count(*) FROM api_keys k WHERE k.workspace_id = " \
    "w.id AND k.status != 'deleted')"

static const char ws_sql_get[] = "SELECT " WS_COLUMNS " FROM workspaces w "
                                 "WHERE w.id = ?1 OR w.name = ?1 "
                                 "ORDER BY w.id = ?1 DESC LIMIT 1";
static const char ws_sql_list[] =
    "SELECT " WS_COLUMNS " FROM workspaces w ORDER BY w.name";
static const char ws_sql_insert[] =
    "INSERT INTO workspaces (id, name, mode, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?)";
/* mode and rules are always SET: workspaces_rev_update fires on them. */
static const char ws_sql_update[] =
    "UPDATE workspaces SET name = coalesce(?1, name), "
    "mode = coalesce(?2, mode), rules = coalesce(?3, rules), updated_at = ?4 "
    "WHERE id = ?5";
static const char ws_sql_credit[] =
    "UPDATE workspaces SET credits_balance = credits_balance + ?1, "
    "updated_at = ?2 WHERE id = ?3 AND credits_balance + ?1 BETWEEN 0 AND ?4 "
    "RETURNING credits_balance - ?1";
static const char ws_sql_balance[] =
    "SELECT credits_balance FROM workspaces WHERE id = ?";
/*
 * An operator's credit change must reach a running gateway, but the usage
 * writer's own charges must not flush its caches: so the revision is
 * bumped here, not by a trigger on credits_balance.
 */
static const char ws_sql_bump_revision[] =
    "UPDATE key_revision SET rev = rev + 1 WHERE id = 1";

static kg_err_t ws_from_row(sqlite3_stmt *st, kg_store_workspace_t *w)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", kg_sqlite_col_text(st, 0));
    snprintf(w->name, sizeof(w->name), "%s", kg_sqlite_col_text(st, 1));
    snprintf(w->mode, sizeof(w->mode), "%s", kg_sqlite_col_text(st, 2));
    w->credits_balance = sqlite3_column_int64(st, 3);
    w->rules = strdup(kg_sqlite_col_text(st, 4));
    w->created_at = sqlite3_column_int64(st, 5);
    w->updated_at = sqlite3_column_int64(st, 6);
    w->key_count = sqlite3_column_int64(st, 7);
    return w->rules ? KG_OK : KG_ERR_NOMEM;
}

static kg_err_t ws_insert(kg_store_t *store, const kg_store_workspace_t *w,
                          kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ws_sql_insert, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, w->id);
    kg_sqlite_bind_text(st, 2, w->name);
    kg_sqlite_bind_text(st, 3, w->mode);
    sqlite3_bind_int64(st, 4, w->created_at);
    sqlite3_bind_int64(st, 5, w->updated_at);
    return kg_sqlite_exec(store, st, "creating a workspace", diag);
}

static kg_err_t ws_get(kg_store_t *store, const char *ref,
                       kg_store_workspace_t *out, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ws_sql_get, diag);
    kg_err_t rc;
    int src;

    memset(out, 0, sizeof(*out));
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, ref);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        rc = ws_from_row(st, out);
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_NOT_FOUND;
    } else {
        rc = kg_sqlite_error(store, src, "reading a workspace", diag);
    }
    kg_sqlite_reset(st);
    if (rc != KG_OK) {
        kg_store_workspace_clear(out);
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static kg_err_t ws_list(kg_store_t *store, kg_store_workspace_t **out,
                        size_t *count, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ws_sql_list, diag);
    kg_store_workspace_t *arr = NULL;
    size_t n = 0;
    size_t cap = 0;
    kg_err_t rc = KG_OK;
    int src;

    *out = NULL;
    *count = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            kg_store_workspace_t *grown = realloc(arr, ncap * sizeof(*arr));

            if (grown == NULL) {
                rc = KG_ERR_NOMEM;
                break;
            }
            arr = grown;
            cap = ncap;
        }
        rc = ws_from_row(st, &arr[n++]);
        if (rc != KG_OK) {
            break;
        }
    }
    if (rc == KG_OK && src != SQLITE_DONE) {
        rc = kg_sqlite_error(store, src, "listing workspaces", diag);
    }
    kg_sqlite_reset(st);
    if (rc != KG_OK) {
        kg_store_workspace_list_free(&arr, n);
        return rc;
    }
    *out = arr;
    *count = n;
    return KG_OK;
}

static kg_err_t ws_update(kg_store_t *store, const char *id, const char *name,
                          const char *mode, const char *rules, int64_t now,
                          kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ws_sql_update, diag);
    kg_err_t rc;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, name);
    kg_sqlite_bind_text(st, 2, mode);
    kg_sqlite_bind_text(st, 3, rules);
    sqlite3_bind_int64(st, 4, now);
    kg_sqlite_bind_text(st, 5, id);
    rc = kg_sqlite_exec(store, st, "updating a workspace", diag);
    if (rc == KG_OK && sqlite3_changes(kg_sqlite_db(store)) == 0) {
        rc = KG_ERR_NOT_FOUND;
    }
    return rc;
}

/* The balance of workspace id into *balance: KG_OK or KG_ERR_NOT_FOUND. */
static kg_err_t ws_balance(kg_store_t *store, const char *id, int64_t *balance,
                           kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ws_sql_balance, diag);
    kg_err_t rc = KG_OK;
    int src;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *balance = sqlite3_column_int64(st, 0);
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_NOT_FOUND;
    } else {
        rc = kg_sqlite_error(store, src, "crediting a workspace", diag);
    }
    kg_sqlite_reset(st);
    return rc;
}

static kg_err_t ws_credit(kg_store_t *store, const char *id, int64_t delta,
                          int64_t max, int64_t now, int64_t *before,
                          kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ws_sql_credit, diag);
    kg_err_t rc = KG_OK;
    int src;

    *before = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, delta);
    sqlite3_bind_int64(st, 2, now);
    kg_sqlite_bind_text(st, 3, id);
    sqlite3_bind_int64(st, 4, max);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *before = sqlite3_column_int64(st, 0);
        src = sqlite3_step(st);
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_STATE; /* out of range, or no such workspace */
    }
    if (src != SQLITE_DONE) {
        rc = kg_sqlite_error(store, src, "crediting a workspace", diag);
    }
    kg_sqlite_reset(st);
    if (rc == KG_ERR_STATE) {
        kg_err_t brc = ws_balance(store, id, before, diag);

        return brc == KG_OK ? KG_ERR_STATE : brc;
    }
    if (rc != KG_OK) {
        return rc;
    }
    st = kg_sqlite_stmt(store, ws_sql_bump_revision, diag);
    return st ? kg_sqlite_exec(store, st, "crediting a workspace", diag)
              : KG_ERR_STORE;
}

const kg_store_workspaces_ops_t kg_sqlite_workspaces_ops = {
    .insert = ws_insert,
    .get = ws_get,
    .list = ws_list,
    .update = ws_update,
    .credit = ws_credit,
};
