/* The PostgreSQL implementation of budget leases (store_leases.h). */
#include "keygate/period.h"
#include "keygate/store_leases.h"
#include "store/pg/pg_store.h"

#include <stdint.h>
#include <string.h>

/* "No limit" as a room: larger than any amount (budget.h clamps to 2^60). */
#define LEASE_ROOM_NONE INT64_MAX

static const char *const lease_scope_names[] = {"key", "credits"};

/*
 * A claim's statements, in one transaction. The account's row is locked
 * first (FOR UPDATE): claims on one account queue there, and the usage
 * writer, which charges the row and then its lease, locks in the same
 * order. The sum is read after the lock, so it holds every lease granted
 * by a claim that committed before.
 */
static const char lease_sql_drop_mine[] =
    "DELETE FROM budget_leases WHERE instance = $1";
static const char lease_sql_key[] =
    "SELECT usage_limit, usage, period, period_limit, period_usage, "
    "period_started_at FROM api_keys WHERE id = $1 FOR UPDATE";
static const char lease_sql_ws[] =
    "SELECT credits_balance FROM workspaces WHERE id = $1 FOR UPDATE";
/* Expired leases go (a dead instance's room returns); the data-modifying
 * CTE's delete is not visible to the outer query, hence its own filter. */
static const char lease_sql_live[] =
    "WITH gone AS (DELETE FROM budget_leases WHERE scope = $1 AND id = $2 "
    "AND expires_at <= now() RETURNING 1) "
    "SELECT coalesce(sum(granted), 0), "
    "count(*) FILTER (WHERE instance <> $3) FROM budget_leases "
    "WHERE scope = $1 AND id = $2 AND expires_at > now()";
static const char lease_sql_grant[] =
    "INSERT INTO budget_leases (scope, id, instance, granted, expires_at) "
    "VALUES ($1, $2, $3, $4, now() + $5::bigint * interval '1 millisecond') "
    "ON CONFLICT (scope, id, instance) DO UPDATE SET "
    "granted = budget_leases.granted + EXCLUDED.granted, "
    "expires_at = EXCLUDED.expires_at";
static const char lease_sql_renew[] =
    "UPDATE budget_leases SET "
    "expires_at = now() + $2::bigint * interval '1 millisecond' "
    "WHERE instance = $1";
static const char lease_sql_drop_empty[] =
    "DELETE FROM budget_leases WHERE instance = $1 AND granted = 0";
static const char lease_sql_return[] =
    "UPDATE budget_leases SET granted = GREATEST(granted - $4::bigint, 0) "
    "WHERE scope = $1 AND id = $2 AND instance = $3";
static const char lease_sql_outstanding[] =
    "SELECT coalesce(sum(granted), 0) FROM budget_leases "
    "WHERE scope = $1 AND id = $2 AND expires_at > now()";

/* min(a, b) */
static int64_t lease_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* limit - spend clamped to >= 0, or LEASE_ROOM_NONE without a limit. */
static int64_t lease_room(int64_t limit, int64_t spend)
{
    if (limit < 0) {
        return LEASE_ROOM_NONE;
    }
    spend = spend < 0 ? 0 : spend;
    return spend >= limit ? 0 : limit - spend;
}

/* The live leases on the account: their sum and the other instances. */
static kg_err_t lease_live(kg_store_t *store, const char *scope, const char *id,
                           int64_t *outstanding, int64_t *others,
                           kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    kg_pg_param_text(&p, scope);
    kg_pg_param_text(&p, id);
    kg_pg_param_text(&p, kg_store_instance(store));
    rc = kg_pg_query(store, lease_sql_live, &p, &res,
                     "reading an account's leases", diag);
    if (rc == KG_OK) {
        *outstanding = kg_pg_col_int(res, 0, 0);
        *others = kg_pg_col_int(res, 0, 1);
    }
    PQclear(res);
    return rc;
}

/*
 * Lock the account's row and read its room before leases (*room) and the
 * error that refuses a claim short of it (*short_err): the smaller of a
 * key's lifetime and current period's room, or a workspace's balance.
 */
static kg_err_t lease_account_room(kg_store_t *store,
                                   const kg_store_lease_claim_t *c,
                                   int64_t *room, kg_err_t *short_err,
                                   kg_diag_t *diag)
{
    bool key = c->scope == KG_STORE_LEASE_KEY;
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    kg_pg_param_text(&p, c->id);
    rc = kg_pg_query(store, key ? lease_sql_key : lease_sql_ws, &p, &res,
                     "locking an account for a lease", diag);
    if (rc != KG_OK) {
        goto out;
    }
    if (PQntuples(res) != 1) {
        rc = KG_ERR_NOT_FOUND;
        goto out;
    }
    if (!key) {
        *room = lease_room(kg_pg_col_int(res, 0, 0), 0);
        *short_err = KG_ERR_NO_CREDITS;
        goto out;
    }
    *room = lease_room(kg_pg_col_int(res, 0, 0), kg_pg_col_int(res, 0, 1));
    *short_err = KG_ERR_USAGE_LIMIT;
    {
        kg_period_t period = KG_PERIOD_NONE;
        int64_t limit = kg_pg_col_int(res, 0, 3);

        if (kg_period_parse(kg_pg_col_text(res, 0, 2), &period) &&
            period != KG_PERIOD_NONE && limit >= 0) {
            int64_t started = kg_pg_col_int(res, 0, 5);
            /* The stored period's spend counts unless it belongs to a
             * period that has ended (unknown start: it counts). */
            int64_t spend =
                started >= 0 && started < kg_period_start(period, c->now)
                    ? 0
                    : kg_pg_col_int(res, 0, 4);
            int64_t proom = lease_room(limit, spend);

            if (proom < *room) {
                *room = proom;
                *short_err = KG_ERR_PERIOD_LIMIT;
            }
        }
    }
out:
    PQclear(res);
    return rc;
}

/* Add g to this instance's lease and renew all of its leases. */
static kg_err_t lease_grant(kg_store_t *store, const char *scope,
                            const kg_store_lease_claim_t *c, int64_t g,
                            kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    kg_pg_params_t r = {0};
    kg_err_t rc;

    kg_pg_param_text(&p, scope);
    kg_pg_param_text(&p, c->id);
    kg_pg_param_text(&p, kg_store_instance(store));
    kg_pg_param_int(&p, g);
    kg_pg_param_int(&p, c->ttl_ms);
    rc = kg_pg_exec(store, lease_sql_grant, &p, NULL, "granting a lease", diag);
    if (rc == KG_OK) {
        kg_pg_param_text(&r, kg_store_instance(store));
        kg_pg_param_int(&r, c->ttl_ms);
        rc = kg_pg_exec(store, lease_sql_renew, &r, NULL, "renewing leases",
                        diag);
    }
    return rc;
}

static kg_err_t lease_claim(kg_store_t *store, const kg_store_lease_claim_t *c,
                            int64_t *granted, kg_diag_t *diag)
{
    const char *scope = lease_scope_names[c->scope == KG_STORE_LEASE_CREDITS];
    int64_t outstanding = 0, others = 0, room = 0, g;
    kg_err_t short_err = KG_ERR_USAGE_LIMIT;
    kg_err_t rc;

    rc = kg_store_begin(store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    if (c->fresh) {
        kg_pg_params_t p = {0};

        kg_pg_param_text(&p, kg_store_instance(store));
        rc = kg_pg_exec(store, lease_sql_drop_mine, &p, NULL,
                        "dropping lapsed leases", diag);
    }
    /* Lock the account, then read the leases on it. */
    if (rc == KG_OK) {
        rc = lease_account_room(store, c, &room, &short_err, diag);
    }
    if (rc == KG_OK) {
        rc = lease_live(store, scope, c->id, &outstanding, &others, diag);
    }
    if (rc == KG_OK && room != LEASE_ROOM_NONE) {
        outstanding = outstanding < 0 ? 0 : outstanding;
        room = outstanding >= room ? 0 : room - outstanding;
    }
    if (rc == KG_OK && (room < c->need || room <= 0)) {
        rc = short_err;
    }
    if (rc == KG_OK) {
        /* Half of the room per live instance, at least what is needed. */
        g = room == LEASE_ROOM_NONE ? c->want : room / (2 * (others + 1));
        g = lease_min(g < c->need ? c->need : g, c->want);
        rc = lease_grant(store, scope, c, g, diag);
        if (rc == KG_OK) {
            rc = kg_store_commit(store, diag);
        }
        if (rc == KG_OK) {
            *granted = g;
            return KG_OK;
        }
    }
    kg_store_rollback(store);
    return rc;
}

static kg_err_t lease_give_back(kg_store_t *store, kg_store_lease_scope_t scope,
                                const char *id, int64_t amount, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, lease_scope_names[scope == KG_STORE_LEASE_CREDITS]);
    kg_pg_param_text(&p, id);
    kg_pg_param_text(&p, kg_store_instance(store));
    kg_pg_param_int(&p, amount);
    return kg_pg_exec(store, lease_sql_return, &p, NULL, "returning a lease",
                      diag);
}

static kg_err_t lease_renew(kg_store_t *store, int64_t ttl_ms, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    kg_err_t rc;

    kg_pg_param_text(&p, kg_store_instance(store));
    kg_pg_param_int(&p, ttl_ms);
    rc = kg_pg_exec(store, lease_sql_renew, &p, NULL, "renewing leases", diag);
    if (rc == KG_OK) {
        kg_pg_params_t d = {0};

        kg_pg_param_text(&d, kg_store_instance(store));
        rc = kg_pg_exec(store, lease_sql_drop_empty, &d, NULL,
                        "dropping empty leases", diag);
    }
    return rc;
}

static kg_err_t lease_outstanding(kg_store_t *store,
                                  kg_store_lease_scope_t scope, const char *id,
                                  int64_t *outstanding, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    kg_pg_param_text(&p, lease_scope_names[scope == KG_STORE_LEASE_CREDITS]);
    kg_pg_param_text(&p, id);
    rc = kg_pg_query(store, lease_sql_outstanding, &p, &res,
                     "reading an account's leases", diag);
    if (rc == KG_OK) {
        *outstanding = kg_pg_col_int(res, 0, 0);
    }
    PQclear(res);
    return rc;
}

const kg_store_leases_ops_t kg_pg_leases_ops = {
    .claim = lease_claim,
    .give_back = lease_give_back,
    .renew = lease_renew,
    .outstanding = lease_outstanding,
};
