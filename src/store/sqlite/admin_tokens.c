/* The SQLite implementation of the store's admin-token rows. */
#include "keygate/store_admin_tokens.h"
#include "store/sqlite/sqlite_store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADM_COLUMNS                                                          \
    "id, name, last4, created_by, read_only, hash, created_at, expires_at, " \
    "last_used_at, revoked_at"

static const char adm_sql_insert[] =
    "INSERT INTO admin_tokens (" ADM_COLUMNS ") "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)";
static const char adm_sql_get[] =
    "SELECT " ADM_COLUMNS " FROM admin_tokens WHERE id = ?";
static const char adm_sql_list[] =
    "SELECT " ADM_COLUMNS " FROM admin_tokens "
    "WHERE ?1 OR revoked_at IS NULL ORDER BY created_at DESC, id LIMIT ?2";
/* The hash is overwritten with zeros: a revoked token can never verify. */
static const char adm_sql_revoke[] =
    "UPDATE admin_tokens SET revoked_at = ?1, hash = zeroblob(32) "
    "WHERE id = ?2 AND revoked_at IS NULL";
static const char adm_sql_touch[] =
    "UPDATE admin_tokens SET last_used_at = ?1 WHERE id = ?2 AND "
    "(last_used_at IS NULL OR last_used_at < ?1 - ?3)";

static void adm_copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

static void adm_from_row(sqlite3_stmt *st, kg_store_admin_token_t *t)
{
    const void *hash = sqlite3_column_blob(st, 5);

    memset(t, 0, sizeof(*t));
    adm_copy(t->id, sizeof(t->id), kg_sqlite_col_text(st, 0));
    adm_copy(t->name, sizeof(t->name), kg_sqlite_col_text(st, 1));
    adm_copy(t->last4, sizeof(t->last4), kg_sqlite_col_text(st, 2));
    adm_copy(t->created_by, sizeof(t->created_by), kg_sqlite_col_text(st, 3));
    t->read_only = sqlite3_column_int(st, 4) != 0;
    if (hash != NULL && sqlite3_column_bytes(st, 5) == KG_KEYHASH_LEN) {
        memcpy(t->hash, hash, KG_KEYHASH_LEN);
    }
    t->created_at = sqlite3_column_int64(st, 6);
    t->expires_at = kg_sqlite_col_opt_int(st, 7);
    t->last_used_at = kg_sqlite_col_opt_int(st, 8);
    t->revoked_at = kg_sqlite_col_opt_int(st, 9);
}

static kg_err_t adm_insert(kg_store_t *store, const kg_store_admin_token_t *t,
                           kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, adm_sql_insert, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, t->id);
    kg_sqlite_bind_text(st, 2, t->name);
    kg_sqlite_bind_text(st, 3, t->last4);
    kg_sqlite_bind_text(st, 4, t->created_by);
    sqlite3_bind_int(st, 5, t->read_only ? 1 : 0);
    sqlite3_bind_blob(st, 6, t->hash, KG_KEYHASH_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 7, t->created_at);
    kg_sqlite_bind_opt_int(st, 8, t->expires_at);
    return kg_sqlite_exec(store, st, "creating an admin token", diag);
}

static kg_err_t adm_get(kg_store_t *store, const char *id,
                        kg_store_admin_token_t *out, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, adm_sql_get, diag);
    kg_err_t rc = KG_OK;
    int src;

    memset(out, 0, sizeof(*out));
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        adm_from_row(st, out);
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_NOT_FOUND;
    } else {
        rc = kg_sqlite_error(store, src, "reading an admin token", diag);
    }
    kg_sqlite_reset(st);
    return rc;
}

static kg_err_t adm_list(kg_store_t *store, bool include_revoked,
                         kg_store_admin_token_t **out, size_t *count,
                         kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, adm_sql_list, diag);
    kg_store_admin_token_t *arr = NULL;
    size_t n = 0;
    size_t cap = 0;
    kg_err_t rc = KG_OK;
    int src;

    *out = NULL;
    *count = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int(st, 1, include_revoked ? 1 : 0);
    sqlite3_bind_int(st, 2, KG_STORE_ADMIN_TOKENS_MAX);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            kg_store_admin_token_t *grown = realloc(arr, ncap * sizeof(*arr));

            if (grown == NULL) {
                rc = KG_ERR_NOMEM;
                break;
            }
            arr = grown;
            cap = ncap;
        }
        adm_from_row(st, &arr[n++]);
    }
    if (rc == KG_OK && src != SQLITE_DONE) {
        rc = kg_sqlite_error(store, src, "listing admin tokens", diag);
    }
    kg_sqlite_reset(st);
    if (rc != KG_OK) {
        sodium_memzero(arr, n * sizeof(*arr));
        free(arr);
        return rc;
    }
    *out = arr;
    *count = n;
    return KG_OK;
}

static kg_err_t adm_revoke(kg_store_t *store, const char *id, int64_t at,
                           kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, adm_sql_revoke, diag);
    kg_err_t rc;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, at);
    kg_sqlite_bind_text(st, 2, id);
    rc = kg_sqlite_exec(store, st, "revoking an admin token", diag);
    if (rc == KG_OK && sqlite3_changes(kg_sqlite_db(store)) == 0) {
        rc = KG_ERR_NOT_FOUND;
    }
    return rc;
}

static kg_err_t adm_touch(kg_store_t *store, const char *id, int64_t at,
                          int64_t min_gap, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, adm_sql_touch, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, at);
    kg_sqlite_bind_text(st, 2, id);
    sqlite3_bind_int64(st, 3, min_gap);
    return kg_sqlite_exec(store, st, "noting an admin token's use", diag);
}

const kg_store_admin_tokens_ops_t kg_sqlite_admin_tokens_ops = {
    .insert = adm_insert,
    .get = adm_get,
    .list = adm_list,
    .revoke = adm_revoke,
    .touch = adm_touch,
};
