/* The PostgreSQL implementation of the store's workspace rows. */
#include "keygate/store_workspaces.h"
#include "store/pg/pg_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WS_COLUMNS                                                           \
    "w.id, w.name, w.mode, w.credits_balance, w.rules, w.created_at, "       \
    "w.updated_at, (SELECT count(*) FROM api_keys k WHERE k.workspace_id = " \
    "w.id AND k.status <> 'deleted')"

static const char ws_sql_get[] = "SELECT " WS_COLUMNS " FROM workspaces w "
                                 "WHERE w.id = $1 OR w.name = $1 "
                                 "ORDER BY w.id = $1 DESC LIMIT 1";
/* Byte order, as SQLite's BINARY collation sorts. */
static const char ws_sql_list[] =
    "SELECT " WS_COLUMNS " FROM workspaces w ORDER BY w.name COLLATE \"C\"";
static const char ws_sql_insert[] =
    "INSERT INTO workspaces (id, name, mode, created_at, updated_at) "
    "VALUES ($1, $2, $3, $4, $5)";
/* mode and rules are always SET: workspaces_rev fires on them. */
static const char ws_sql_update[] =
    "UPDATE workspaces SET name = coalesce($1, name), "
    "mode = coalesce($2, mode), rules = coalesce($3, rules), updated_at = $4 "
    "WHERE id = $5";
/*
 * The conditional write and the revision bump in one statement. Under
 * READ COMMITTED an instance that waited for another's write to the row
 * re-checks the range on the committed balance before writing, so
 * concurrent credits and debits never take it out of [0, max]. The
 * revision row is joined to the workspace's update (no row, no bump) and
 * so locked after it, the order every writer of both follows. An
 * operator's credit change must reach running gateways, but the usage
 * writer's own charges must not flush their caches: so the revision is
 * bumped (and notified, as the triggers do) here, not by a trigger on
 * credits_balance.
 */
static const char ws_sql_credit[] =
    "WITH c AS (UPDATE workspaces SET "
    "credits_balance = credits_balance + $1::bigint, updated_at = $2 "
    "WHERE id = $3 AND credits_balance + $1::bigint BETWEEN 0 AND $4::bigint "
    "RETURNING credits_balance - $1::bigint AS before) "
    "UPDATE key_revision r SET rev = r.rev + 1 FROM c WHERE r.id = 1 "
    "RETURNING c.before, pg_notify('" KG_PG_CHANNEL "', r.rev::text)";
static const char ws_sql_balance[] =
    "SELECT credits_balance FROM workspaces WHERE id = $1";

static kg_err_t ws_from_row(const PGresult *res, int row,
                            kg_store_workspace_t *w)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", kg_pg_col_text(res, row, 0));
    snprintf(w->name, sizeof(w->name), "%s", kg_pg_col_text(res, row, 1));
    snprintf(w->mode, sizeof(w->mode), "%s", kg_pg_col_text(res, row, 2));
    w->credits_balance = kg_pg_col_int(res, row, 3);
    w->rules = strdup(kg_pg_col_text(res, row, 4));
    w->created_at = kg_pg_col_int(res, row, 5);
    w->updated_at = kg_pg_col_int(res, row, 6);
    w->key_count = kg_pg_col_int(res, row, 7);
    return w->rules ? KG_OK : KG_ERR_NOMEM;
}

static kg_err_t ws_insert(kg_store_t *store, const kg_store_workspace_t *w,
                          kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, w->id);
    kg_pg_param_text(&p, w->name);
    kg_pg_param_text(&p, w->mode);
    kg_pg_param_int(&p, w->created_at);
    kg_pg_param_int(&p, w->updated_at);
    return kg_pg_exec(store, ws_sql_insert, &p, NULL, "creating a workspace",
                      diag);
}

static kg_err_t ws_get(kg_store_t *store, const char *ref,
                       kg_store_workspace_t *out, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    kg_pg_param_text(&p, ref);
    rc = kg_pg_query(store, ws_sql_get, &p, &res, "reading a workspace", diag);
    if (rc == KG_OK) {
        rc = PQntuples(res) == 1 ? ws_from_row(res, 0, out) : KG_ERR_NOT_FOUND;
    }
    PQclear(res);
    if (rc != KG_OK) {
        kg_store_workspace_clear(out);
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static kg_err_t ws_list(kg_store_t *store, kg_store_workspace_t **out,
                        size_t *count, kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_store_workspace_t *arr = NULL;
    kg_err_t rc;
    int n;
    int i;

    *out = NULL;
    *count = 0;
    rc =
        kg_pg_query(store, ws_sql_list, NULL, &res, "listing workspaces", diag);
    if (rc != KG_OK) {
        return rc;
    }
    n = PQntuples(res);
    if (n > 0 && (arr = calloc((size_t)n, sizeof(*arr))) == NULL) {
        PQclear(res);
        return KG_ERR_NOMEM;
    }
    for (i = 0; i < n && rc == KG_OK; i++) {
        rc = ws_from_row(res, i, &arr[i]);
    }
    PQclear(res);
    if (rc != KG_OK) {
        kg_store_workspace_list_free(&arr, (size_t)i);
        return rc;
    }
    *out = arr;
    *count = (size_t)n;
    return KG_OK;
}

static kg_err_t ws_update(kg_store_t *store, const char *id, const char *name,
                          const char *mode, const char *rules, int64_t now,
                          kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    int64_t changed = 0;
    kg_err_t rc;

    kg_pg_param_text(&p, name);
    kg_pg_param_text(&p, mode);
    kg_pg_param_text(&p, rules);
    kg_pg_param_int(&p, now);
    kg_pg_param_text(&p, id);
    rc = kg_pg_exec(store, ws_sql_update, &p, &changed, "updating a workspace",
                    diag);
    if (rc == KG_OK && changed == 0) {
        rc = KG_ERR_NOT_FOUND;
    }
    return rc;
}

/* The balance of workspace id into *balance: KG_OK or KG_ERR_NOT_FOUND. */
static kg_err_t ws_balance(kg_store_t *store, const char *id, int64_t *balance,
                           kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    kg_pg_param_text(&p, id);
    rc = kg_pg_query(store, ws_sql_balance, &p, &res, "crediting a workspace",
                     diag);
    if (rc == KG_OK) {
        if (PQntuples(res) == 1) {
            *balance = kg_pg_col_int(res, 0, 0);
        } else {
            rc = KG_ERR_NOT_FOUND;
        }
    }
    PQclear(res);
    return rc;
}

static kg_err_t ws_credit(kg_store_t *store, const char *id, int64_t delta,
                          int64_t max, int64_t now, int64_t *before,
                          kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    *before = 0;
    kg_pg_param_int(&p, delta);
    kg_pg_param_int(&p, now);
    kg_pg_param_text(&p, id);
    kg_pg_param_int(&p, max);
    rc = kg_pg_query(store, ws_sql_credit, &p, &res, "crediting a workspace",
                     diag);
    if (rc == KG_OK) {
        if (PQntuples(res) == 1) {
            *before = kg_pg_col_int(res, 0, 0);
        } else {
            rc = KG_ERR_STATE; /* out of range, or no such workspace */
        }
    }
    PQclear(res);
    if (rc == KG_ERR_STATE) {
        kg_err_t brc = ws_balance(store, id, before, diag);

        rc = brc == KG_OK ? KG_ERR_STATE : brc;
    }
    return rc;
}

const kg_store_workspaces_ops_t kg_pg_workspaces_ops = {
    .insert = ws_insert,
    .get = ws_get,
    .list = ws_list,
    .update = ws_update,
    .credit = ws_credit,
};
