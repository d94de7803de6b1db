/* The PostgreSQL implementation of the store's workspace credential rows. */
#include "keygate/store_credentials.h"
#include "store/pg/pg_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CRED_COLUMNS "workspace_id, provider, last4, created_at, updated_at"

/* One statement: instances setting the same credential at once each
 * insert or replace it whole, the last to commit wins. */
static const char cred_sql_upsert[] =
    "INSERT INTO workspace_credentials (workspace_id, provider, nonce, "
    "ciphertext, last4, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, "
    "$6, $6) ON CONFLICT (workspace_id, provider) DO UPDATE SET "
    "nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, "
    "last4 = EXCLUDED.last4, updated_at = EXCLUDED.updated_at";
static const char cred_sql_get[] =
    "SELECT " CRED_COLUMNS " FROM workspace_credentials "
    "WHERE workspace_id = $1 AND provider = $2";
/* Byte order, as SQLite's BINARY collation sorts. */
static const char cred_sql_list[] =
    "SELECT " CRED_COLUMNS " FROM workspace_credentials "
    "WHERE workspace_id = $1 ORDER BY provider COLLATE \"C\"";
static const char cred_sql_delete[] =
    "DELETE FROM workspace_credentials "
    "WHERE workspace_id = $1 AND provider = $2";
static const char cred_sql_count[] =
    "SELECT count(*) FROM workspace_credentials";
static const char cred_sql_sealed[] =
    "SELECT nonce, ciphertext FROM workspace_credentials "
    "WHERE workspace_id = $1 AND provider = $2";

static void cred_from_row(const PGresult *res, int row,
                          kg_store_credential_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->workspace_id, sizeof(c->workspace_id), "%s",
             kg_pg_col_text(res, row, 0));
    snprintf(c->provider, sizeof(c->provider), "%s",
             kg_pg_col_text(res, row, 1));
    snprintf(c->last4, sizeof(c->last4), "%s", kg_pg_col_text(res, row, 2));
    c->created_at = kg_pg_col_int(res, row, 3);
    c->updated_at = kg_pg_col_int(res, row, 4);
}

static kg_err_t cred_put(kg_store_t *store, const kg_store_credential_t *row,
                         const kg_store_sealed_t *sealed, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, row->workspace_id);
    kg_pg_param_text(&p, row->provider);
    kg_pg_param_bytes(&p, sealed->nonce, sealed->nonce_len);
    kg_pg_param_bytes(&p, sealed->cipher, sealed->cipher_len);
    kg_pg_param_text(&p, row->last4);
    kg_pg_param_int(&p, row->updated_at);
    return kg_pg_exec(store, cred_sql_upsert, &p, NULL,
                      "storing a workspace credential", diag);
}

/* Run sql, bound to (workspace_id, provider), and hand its one row to
 * fill: KG_OK, KG_ERR_NOT_FOUND or a store error. */
static kg_err_t cred_one(kg_store_t *store, const char *sql,
                         const char *workspace_id, const char *provider,
                         void (*fill)(const PGresult *res, void *out),
                         void *out, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    kg_pg_param_text(&p, workspace_id);
    kg_pg_param_text(&p, provider);
    rc = kg_pg_query(store, sql, &p, &res, "reading a workspace credential",
                     diag);
    if (rc == KG_OK) {
        if (PQntuples(res) == 1) {
            fill(res, out);
        } else {
            rc = KG_ERR_NOT_FOUND;
        }
    }
    PQclear(res);
    return rc;
}

static void cred_fill_row(const PGresult *res, void *out)
{
    cred_from_row(res, 0, out);
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
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_store_credential_t *arr = NULL;
    kg_err_t rc;
    int n;

    *out = NULL;
    *count = 0;
    kg_pg_param_text(&p, workspace_id);
    rc = kg_pg_query(store, cred_sql_list, &p, &res,
                     "listing workspace credentials", diag);
    if (rc != KG_OK) {
        return rc;
    }
    n = PQntuples(res);
    if (n > 0 && (arr = calloc((size_t)n, sizeof(*arr))) == NULL) {
        PQclear(res);
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        cred_from_row(res, i, &arr[i]);
    }
    PQclear(res);
    *out = arr;
    *count = (size_t)n;
    return KG_OK;
}

static kg_err_t cred_delete(kg_store_t *store, const char *workspace_id,
                            const char *provider, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    int64_t changed = 0;
    kg_err_t rc;

    kg_pg_param_text(&p, workspace_id);
    kg_pg_param_text(&p, provider);
    rc = kg_pg_exec(store, cred_sql_delete, &p, &changed,
                    "deleting a workspace credential", diag);
    if (rc == KG_OK && changed == 0) {
        rc = KG_ERR_NOT_FOUND;
    }
    return rc;
}

static kg_err_t cred_count(kg_store_t *store, int64_t *n, kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_err_t rc;

    *n = 0;
    rc = kg_pg_query(store, cred_sql_count, NULL, &res,
                     "counting workspace credentials", diag);
    if (rc == KG_OK) {
        *n = kg_pg_col_int(res, 0, 0);
    }
    PQclear(res);
    return rc;
}

/* Copy the bytea of column col into buf (cap bytes) when it fits; *len is
 * its stored length either way (text results show it as "\x" and two hex
 * digits a byte). */
static void cred_blob(const PGresult *res, int col, unsigned char *buf,
                      size_t cap, size_t *len)
{
    const char *v = kg_pg_col_text(res, 0, col);

    *len = strncmp(v, "\\x", 2) == 0 ? strlen(v + 2) / 2 : 0;
    if (*len > 0 && *len <= cap && !kg_pg_col_bytes(res, 0, col, buf, *len)) {
        *len = 0;
    }
}

static void cred_fill_sealed(const PGresult *res, void *out)
{
    kg_store_sealed_t *sealed = out;

    cred_blob(res, 0, sealed->nonce, sizeof(sealed->nonce), &sealed->nonce_len);
    cred_blob(res, 1, sealed->cipher, sizeof(sealed->cipher),
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

const kg_store_credentials_ops_t kg_pg_credentials_ops = {
    .put = cred_put,
    .get = cred_get,
    .list = cred_list,
    .remove = cred_delete,
    .count = cred_count,
    .sealed = cred_sealed,
};
