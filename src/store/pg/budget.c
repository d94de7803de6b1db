/* The PostgreSQL implementation of what the policy reads and writes. */
#include "keygate/store_budget.h"
#include "store/pg/pg_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char bud_sql_rev[] = "SELECT rev FROM key_revision WHERE id = 1";
static const char bud_sql_key[] =
    "SELECT rules, workspace_id FROM api_keys WHERE id = $1";
static const char bud_sql_ws[] =
    "SELECT mode, rules, credits_balance FROM workspaces WHERE id = $1";
/*
 * The reservations snapshot assumes one gateway per store, as on SQLite:
 * every instance clears every key's reserved and writes its own, so
 * instances sharing the database overwrite each other's snapshot (and one
 * starting clears the others'). api_keys.reserved is bookkeeping: no
 * trigger moves the revision on it.
 */
static const char bud_sql_clear[] =
    "UPDATE api_keys SET reserved = 0 WHERE reserved <> 0";
static const char bud_sql_reserved[] =
    "UPDATE api_keys SET reserved = $1 WHERE id = $2";

static kg_err_t bud_revision(kg_store_t *store, int64_t *rev, kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_err_t rc;

    *rev = -1;
    rc = kg_pg_query(store, bud_sql_rev, NULL, &res, "reading the key revision",
                     diag);
    if (rc == KG_OK && PQntuples(res) == 1) {
        *rev = kg_pg_col_int(res, 0, 0);
    } else if (rc == KG_OK) {
        rc = kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                          "%s: reading the key revision: no revision row",
                          kg_store_path(store));
    }
    PQclear(res);
    return rc;
}

static kg_err_t bud_key_get(kg_store_t *store, const char *key_id,
                            kg_store_budget_key_t *out, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    kg_pg_param_text(&p, key_id);
    rc = kg_pg_query(store, bud_sql_key, &p, &res, "reading a key's rules",
                     diag);
    if (rc == KG_OK && PQntuples(res) == 1) {
        out->rules = strdup(kg_pg_col_text(res, 0, 0));
        snprintf(out->workspace_id, sizeof(out->workspace_id), "%s",
                 kg_pg_col_text(res, 0, 1));
        rc = out->rules ? KG_OK : KG_ERR_NOMEM;
    } else if (rc == KG_OK) {
        rc = KG_ERR_NOT_FOUND;
    }
    PQclear(res);
    if (rc != KG_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static kg_err_t bud_workspace_get(kg_store_t *store, const char *ws_id,
                                  kg_store_budget_workspace_t *out,
                                  kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    kg_pg_param_text(&p, ws_id);
    rc = kg_pg_query(store, bud_sql_ws, &p, &res,
                     "reading a workspace's policy", diag);
    if (rc == KG_OK && PQntuples(res) == 1) {
        snprintf(out->mode, sizeof(out->mode), "%s", kg_pg_col_text(res, 0, 0));
        out->rules = strdup(kg_pg_col_text(res, 0, 1));
        out->credits_balance = kg_pg_col_int(res, 0, 2);
        rc = out->rules ? KG_OK : KG_ERR_NOMEM;
    } else if (rc == KG_OK) {
        rc = KG_ERR_NOT_FOUND;
    }
    PQclear(res);
    if (rc != KG_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static kg_err_t bud_reservations_clear(kg_store_t *store, kg_diag_t *diag)
{
    return kg_pg_exec(store, bud_sql_clear, NULL, NULL, "clearing reservations",
                      diag);
}

static kg_err_t bud_reservation_set(kg_store_t *store, const char *key_id,
                                    int64_t amount, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_int(&p, amount);
    kg_pg_param_text(&p, key_id);
    return kg_pg_exec(store, bud_sql_reserved, &p, NULL, "saving reservations",
                      diag);
}

const kg_store_budget_ops_t kg_pg_budget_ops = {
    .revision = bud_revision,
    .key_get = bud_key_get,
    .workspace_get = bud_workspace_get,
    .reservations_clear = bud_reservations_clear,
    .reservation_set = bud_reservation_set,
};
