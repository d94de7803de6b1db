/* The SQLite implementation of the store's workspace credential rows. */
#include "keygate/store_credentials.h"
#include "store/sqlite/sqlite_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CRED_COLUMNS "workspace_id, provider, last4, created_at, updated_at"

static const char cred_sql_upsert[] =
    "INSERT INTO workspace_credentials (workspace_id, provider, nonce, "
    "ciphertext, last4, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, "
    "?6, ?6) ON CONFLICT (workspace_id, provider) DO UPDATE SET "
    "nonce = excluded.nonce, ciphertext = excluded.ciphertext, "
    "last4 = excluded.last4, updated_at = excluded.updated_at";
static const char cred_sql_get[] =
    "SELECT " CRED_COLUMNS " FROM workspace_credentials "
    "WHERE workspace_id = ? AND provider = ?";
static const char cred_sql_list[] =
    "SELECT " CRED_COLUMNS " FROM workspace_credentials "
    "WHERE workspace_id = ? ORDER BY provider";
static const char cred_sql_delete[] =
    "DELETE FROM workspace_credentials WHERE workspace_id = ? AND provider = ?";
static const char cred_sql_count[] =
    "SELECT count(*) FROM workspace_credentials";
static const char cred_sql_sealed[] =
    "SELECT nonce, ciphertext FROM workspace_credentials "
    "WHERE workspace_id = ? AND provider = ?";

static void cred_from_row(sqlite3_stmt *st, kg_store_credential_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->workspace_id, sizeof(c->workspace_id), "%s",
             kg_sqlite_col_text(st, 0));
    snprintf(c->provider, sizeof(c->provider), "%s", kg_sqlite_col_text(st, 1));
    snprintf(c->last4, sizeof(c->last4), "%s", kg_sqlite_col_text(st, 2));
    c->created_at = sqlite3_column_int64(st, 3);
    c->updated_at = sqlite3_column_int64(st, 4);
}

static kg_err_t cred_put(kg_store_t *store, const kg_store_credential_t *row,
                         const kg_store_sealed_t *sealed, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, cred_sql_upsert, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, row->workspace_id);
    kg_sqlite_bind_text(st, 2, row->provider);
    sqlite3_bind_blob(st, 3, sealed->nonce, (int)sealed->nonce_len,
                      SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, sealed->cipher, (int)sealed->cipher_len,
                      SQLITE_TRANSIENT);
    kg_sqlite_bind_text(st, 5, row->last4);
    sqlite3_bind_int64(st, 6, row->updated_at);
    return kg_sqlite_exec(store, st, "storing a workspace credential", diag);
}

/* Step sql, bound to (workspace_id, provider), and hand its one row to
 * fill: KG_OK, KG_ERR_NOT_FOUND or a store error. */
static kg_err_t cred_one(kg_store_t *store, const char *sql,
                         const char *workspace_id, const char *provider,
                         void (*fill)(sqlite3_stmt *st, void *out), void *out,
                         kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, sql, diag);
    kg_err_t rc = KG_OK;
    int src;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, workspace_id);
    kg_sqlite_bind_text(st, 2, provider);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        fill(st, out);
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_NOT_FOUND;
    } else {
        rc =
            kg_sqlite_error(store, src, "reading a workspace credential", diag);
    }
    kg_sqlite_reset(st);
    return rc;
}

static void cred_fill_row(sqlite3_stmt *st, void *out)
{
    cred_from_row(st, out);
}

static kg_err_t cred_get(kg_store_t *store, const char *workspace_id,
                         const char *provider, kg_store_credential_t *out,
                         kg_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    return cred_one(store, cred_sql_get, workspace_id, provider, cred_fill_row,
                    out, diag);
}

static kg_err_t cred_list(kg_store_t *store, const char *workspace_id,
                          kg_store_credential_t **out, size_t *count,
                          kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, cred_sql_list, diag);
    kg_store_credential_t *arr = NULL;
    size_t used = 0;
    size_t cap = 0;
    kg_err_t rc = KG_OK;
    int src;

    *out = NULL;
    *count = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, workspace_id);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            kg_store_credential_t *grown = realloc(arr, ncap * sizeof(*arr));

            if (grown == NULL) {
                rc = kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
                break;
            }
            arr = grown;
            cap = ncap;
        }
        cred_from_row(st, &arr[used++]);
    }
    if (rc == KG_OK && src != SQLITE_DONE) {
        rc = kg_sqlite_error(store, src, "listing workspace credentials", diag);
    }
    kg_sqlite_reset(st);
    if (rc != KG_OK || used == 0) {
        free(arr);
        return rc;
    }
    *out = arr;
    *count = used;
    return KG_OK;
}

static kg_err_t cred_delete(kg_store_t *store, const char *workspace_id,
                            const char *provider, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, cred_sql_delete, diag);
    kg_err_t rc;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, workspace_id);
    kg_sqlite_bind_text(st, 2, provider);
    rc = kg_sqlite_exec(store, st, "deleting a workspace credential", diag);
    if (rc == KG_OK && sqlite3_changes(kg_sqlite_db(store)) == 0) {
        rc = KG_ERR_NOT_FOUND;
    }
    return rc;
}

static kg_err_t cred_count(kg_store_t *store, int64_t *n, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, cred_sql_count, diag);
    kg_err_t rc = KG_OK;
    int src;

    *n = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
    } else {
        rc =
            kg_sqlite_error(store, src, "counting workspace credentials", diag);
    }
    kg_sqlite_reset(st);
    return rc;
}

/* Copy the blob of column col into buf (cap bytes) when it fits; *len is
 * its stored length either way. */
static void cred_blob(sqlite3_stmt *st, int col, unsigned char *buf, size_t cap,
                      size_t *len)
{
    const void *blob = sqlite3_column_blob(st, col);
    int bytes = sqlite3_column_bytes(st, col);

    *len = blob != NULL && bytes > 0 ? (size_t)bytes : 0;
    if (*len > 0 && *len <= cap) {
        memcpy(buf, blob, *len);
    }
}

static void cred_fill_sealed(sqlite3_stmt *st, void *out)
{
    kg_store_sealed_t *sealed = out;

    cred_blob(st, 0, sealed->nonce, sizeof(sealed->nonce), &sealed->nonce_len);
    cred_blob(st, 1, sealed->cipher, sizeof(sealed->cipher),
              &sealed->cipher_len);
}

static kg_err_t cred_sealed(kg_store_t *store, const char *workspace_id,
                            const char *provider, kg_store_sealed_t *out,
                            kg_diag_t *diag)
{
    out->nonce_len = 0;
    out->cipher_len = 0;
    return cred_one(store, cred_sql_sealed, workspace_id, provider,
                    cred_fill_sealed, out, diag);
}

const kg_store_credentials_ops_t kg_sqlite_credentials_ops = {
    .put = cred_put,
    .get = cred_get,
    .list = cred_list,
    .remove = cred_delete,
    .count = cred_count,
    .sealed = cred_sealed,
};
