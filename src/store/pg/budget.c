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
 * The reservations snapshot: each instance's rows of key_reservations
 * (kg_store_instance), rewritten every second, so instances sharing the
 * store never overwrite each other's. A row not rewritten for
 * KG_STORE_RESERVATION_TTL_S is an instance that stopped (or is cut off):
 * reads leave it out, and the next clear of any instance deletes it.
 *
 * A clear deletes its own rows first, then sweeps other instances' stale
 * ones skipping rows locked (by their owner's clear or another sweep). A
 * sweep never waits, and an instance's rows are all its own once its
 * first statement is done, so its upserts never wait either: clears
 * cannot deadlock, even when every row went stale at once (the store was
 * down). The table holds the keys with requests in flight of the live
 * instances, so the sweep's scan is small. No trigger moves the revision
 * on it: bookkeeping.
 */
static const char bud_sql_clear_own[] =
    "DELETE FROM key_reservations WHERE instance = $1";
static const char bud_sql_clear_stale[] =
    "WITH l AS (SELECT key_id, instance FROM key_reservations "
    "WHERE instance <> $1 AND updated_at <= " KG_PG_RESERVATION_CUTOFF " "
    "FOR UPDATE SKIP LOCKED) "
    "DELETE FROM key_reservations r USING l "
    "WHERE r.key_id = l.key_id AND r.instance = l.instance";
static const char bud_sql_reserved[] =
    "INSERT INTO key_reservations (key_id, instance, amount, updated_at) "
    "VALUES ($1, $2, $3, now()) ON CONFLICT (key_id, instance) "
    "DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at";

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
    kg_pg_params_t p = {0};

    kg_err_t rc;

    kg_pg_param_text(&p, kg_store_instance(store));
    rc = kg_pg_exec(store, bud_sql_clear_own, &p, NULL, "clearing reservations",
                    diag);
    if (rc == KG_OK) {
        rc = kg_pg_exec(store, bud_sql_clear_stale, &p, NULL,
                        "clearing stale reservations", diag);
    }
    return rc;
}

static kg_err_t bud_reservation_set(kg_store_t *store, const char *key_id,
                                    int64_t amount, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, key_id);
    kg_pg_param_text(&p, kg_store_instance(store));
    kg_pg_param_int(&p, amount);
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
