/* The SQLite implementation of what the policy reads and writes. */
#include "keygate/store_budget.h"
#include "store/sqlite/sqlite_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char bud_sql_rev[] = "SELECT rev FROM key_revision WHERE id = 1";
static const char bud_sql_key[] =
    "SELECT rules, workspace_id FROM api_keys WHERE id = ?";
static const char bud_sql_ws[] =
    "SELECT mode, rules, credits_balance FROM workspaces WHERE id = ?";
/* One gateway a file: its snapshot is every key's api_keys.reserved, so a
 * clear takes them all (at start, a crashed run's too). Bookkeeping: no
 * trigger moves the revision on it. */
static const char bud_sql_clear[] =
    "UPDATE api_keys SET reserved = 0 WHERE reserved != 0";
static const char bud_sql_reserved[] =
    "UPDATE api_keys SET reserved = ? WHERE id = ?";

static kg_err_t bud_revision(kg_store_t *store, int64_t *rev, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, bud_sql_rev, diag);
    int src;

    *rev = -1;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *rev = sqlite3_column_int64(st, 0);
    }
    kg_sqlite_reset(st);
    return src == SQLITE_ROW
               ? KG_OK
               : kg_sqlite_error(store,
                                 src == SQLITE_DONE ? SQLITE_CORRUPT : src,
                                 "reading the key revision", diag);
}

static kg_err_t bud_key_get(kg_store_t *store, const char *key_id,
                            kg_store_budget_key_t *out, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, bud_sql_key, diag);
    kg_err_t rc = KG_OK;
    int src;

    memset(out, 0, sizeof(*out));
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, key_id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        out->rules = strdup(kg_sqlite_col_text(st, 0));
        snprintf(out->workspace_id, sizeof(out->workspace_id), "%s",
                 kg_sqlite_col_text(st, 1));
        rc = out->rules ? KG_OK : KG_ERR_NOMEM;
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_NOT_FOUND;
    } else {
        rc = kg_sqlite_error(store, src, "reading a key's rules", diag);
    }
    kg_sqlite_reset(st);
    if (rc != KG_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static kg_err_t bud_workspace_get(kg_store_t *store, const char *ws_id,
                                  kg_store_budget_workspace_t *out,
                                  kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, bud_sql_ws, diag);
    kg_err_t rc = KG_OK;
    int src;

    memset(out, 0, sizeof(*out));
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, ws_id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        snprintf(out->mode, sizeof(out->mode), "%s", kg_sqlite_col_text(st, 0));
        out->rules = strdup(kg_sqlite_col_text(st, 1));
        out->credits_balance = sqlite3_column_int64(st, 2);
        rc = out->rules ? KG_OK : KG_ERR_NOMEM;
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_NOT_FOUND;
    } else {
        rc = kg_sqlite_error(store, src, "reading a workspace's policy", diag);
    }
    kg_sqlite_reset(st);
    if (rc != KG_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static kg_err_t bud_reservations_clear(kg_store_t *store, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, bud_sql_clear, diag);

    return st ? kg_sqlite_exec(store, st, "clearing reservations", diag)
              : KG_ERR_STORE;
}

static kg_err_t bud_reservation_set(kg_store_t *store, const char *key_id,
                                    int64_t amount, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, bud_sql_reserved, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, amount);
    kg_sqlite_bind_text(st, 2, key_id);
    return kg_sqlite_exec(store, st, "saving reservations", diag);
}

const kg_store_budget_ops_t kg_sqlite_budget_ops = {
    .revision = bud_revision,
    .key_get = bud_key_get,
    .workspace_get = bud_workspace_get,
    .reservations_clear = bud_reservations_clear,
    .reservation_set = bud_reservation_set,
};
