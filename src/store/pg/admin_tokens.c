/* The PostgreSQL implementation of the store's admin-token rows. */
#include "keygate/store_admin_tokens.h"
#include "store/pg/pg_store.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADM_COLUMNS                                                          \
    "id, name, last4, created_by, read_only, hash, created_at, expires_at, " \
    "last_used_at, revoked_at"

static const char adm_sql_insert[] =
    "INSERT INTO admin_tokens (" ADM_COLUMNS ") "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)";
static const char adm_sql_get[] =
    "SELECT " ADM_COLUMNS " FROM admin_tokens WHERE id = $1";
static const char adm_sql_list[] = "SELECT " ADM_COLUMNS " FROM admin_tokens "
                                   "WHERE $1::boolean OR revoked_at IS NULL "
                                   "ORDER BY created_at DESC, id LIMIT $2";
/* The hash is overwritten with zeros: a revoked token can never verify. */
static const char adm_sql_revoke[] = "UPDATE admin_tokens SET revoked_at = $1, "
                                     "hash = decode(repeat('00', 32), 'hex') "
                                     "WHERE id = $2 AND revoked_at IS NULL";
static const char adm_sql_touch[] =
    "UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2 AND "
    "(last_used_at IS NULL OR last_used_at < $1::bigint - $3::bigint)";

static void adm_copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

static void adm_from_row(const PGresult *res, int row,
                         kg_store_admin_token_t *t)
{
    memset(t, 0, sizeof(*t));
    adm_copy(t->id, sizeof(t->id), kg_pg_col_text(res, row, 0));
    adm_copy(t->name, sizeof(t->name), kg_pg_col_text(res, row, 1));
    adm_copy(t->last4, sizeof(t->last4), kg_pg_col_text(res, row, 2));
    adm_copy(t->created_by, sizeof(t->created_by), kg_pg_col_text(res, row, 3));
    t->read_only = kg_pg_col_bool(res, row, 4) != 0;
    (void)kg_pg_col_bytes(res, row, 5, t->hash, KG_KEYHASH_LEN);
    t->created_at = kg_pg_col_int(res, row, 6);
    t->expires_at = kg_pg_col_int(res, row, 7);
    t->last_used_at = kg_pg_col_int(res, row, 8);
    t->revoked_at = kg_pg_col_int(res, row, 9);
}

static kg_err_t adm_insert(kg_store_t *store, const kg_store_admin_token_t *t,
                           kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, t->id);
    kg_pg_param_text(&p, t->name);
    kg_pg_param_text(&p, t->last4);
    kg_pg_param_text(&p, t->created_by);
    kg_pg_param_bool(&p, t->read_only);
    kg_pg_param_bytes(&p, t->hash, KG_KEYHASH_LEN);
    kg_pg_param_int(&p, t->created_at);
    kg_pg_param_opt_int(&p, t->expires_at);
    return kg_pg_exec(store, adm_sql_insert, &p, NULL,
                      "creating an admin token", diag);
}

static kg_err_t adm_get(kg_store_t *store, const char *id,
                        kg_store_admin_token_t *out, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    kg_pg_param_text(&p, id);
    rc = kg_pg_query(store, adm_sql_get, &p, &res, "reading an admin token",
                     diag);
    if (rc == KG_OK) {
        if (PQntuples(res) == 1) {
            adm_from_row(res, 0, out);
        } else {
            rc = KG_ERR_NOT_FOUND;
        }
    }
    PQclear(res);
    return rc;
}

static kg_err_t adm_list(kg_store_t *store, bool include_revoked,
                         kg_store_admin_token_t **out, size_t *count,
                         kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_store_admin_token_t *arr = NULL;
    kg_err_t rc;
    int n;

    *out = NULL;
    *count = 0;
    kg_pg_param_bool(&p, include_revoked);
    kg_pg_param_int(&p, KG_STORE_ADMIN_TOKENS_MAX);
    rc = kg_pg_query(store, adm_sql_list, &p, &res, "listing admin tokens",
                     diag);
    if (rc != KG_OK) {
        return rc;
    }
    n = PQntuples(res);
    if (n > 0 && (arr = calloc((size_t)n, sizeof(*arr))) == NULL) {
        PQclear(res);
        return KG_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        adm_from_row(res, i, &arr[i]);
    }
    PQclear(res);
    *out = arr;
    *count = (size_t)n;
    return KG_OK;
}

static kg_err_t adm_revoke(kg_store_t *store, const char *id, int64_t at,
                           kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    int64_t changed = 0;
    kg_err_t rc;

    kg_pg_param_int(&p, at);
    kg_pg_param_text(&p, id);
    rc = kg_pg_exec(store, adm_sql_revoke, &p, &changed,
                    "revoking an admin token", diag);
    if (rc == KG_OK && changed == 0) {
        rc = KG_ERR_NOT_FOUND;
    }
    return rc;
}

static kg_err_t adm_touch(kg_store_t *store, const char *id, int64_t at,
                          int64_t min_gap, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_int(&p, at);
    kg_pg_param_text(&p, id);
    kg_pg_param_int(&p, min_gap);
    return kg_pg_exec(store, adm_sql_touch, &p, NULL,
                      "noting an admin token's use", diag);
}

const kg_store_admin_tokens_ops_t kg_pg_admin_tokens_ops = {
    .insert = adm_insert,
    .get = adm_get,
    .list = adm_list,
    .revoke = adm_revoke,
    .touch = adm_touch,
};
