/* The PostgreSQL implementation of the rate windows instances share. */
#include "keygate/store_rates.h"
#include "store/pg/pg_store.h"

#include <stdbool.h>
#include <stddef.h>

/* Keys one statement carries: bounds its array parameters. */
#define PG_RATES_CHUNK 1000
/* The integer columns a row publishes, in the order of rates_sql_publish. */
#define PG_RATES_INTS 5

/*
 * One statement a chunk of keys, each row replaced whole (the instance
 * publishes its own counts, never adds to them). The instance's rows are
 * its alone, so instances never wait for each other here; the time is the
 * server's, so that no instance compares its clock with another's. The
 * row of key '' (no key has an empty id) marks the instance live.
 */
static const char rates_sql_publish[] =
    "INSERT INTO rate_shares (key_id, instance, window_start, req_prev, "
    "req_cur, tok_prev, tok_cur, updated_at) "
    "SELECT DISTINCT ON (u.k) u.k, $1, u.w, u.rp, u.rc, u.tp, u.tc, now() "
    "FROM (SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[], "
    "$5::bigint[], $6::bigint[], $7::bigint[]) AS a(k, w, rp, rc, tp, tc) "
    "WHERE a.k <> '' UNION ALL SELECT '', 0, 0, 0, 0, 0) "
    "AS u(k, w, rp, rc, tp, tc) "
    "ORDER BY u.k "
    "ON CONFLICT (key_id, instance) DO UPDATE SET "
    "window_start = EXCLUDED.window_start, req_prev = EXCLUDED.req_prev, "
    "req_cur = EXCLUDED.req_cur, tok_prev = EXCLUDED.tok_prev, "
    "tok_cur = EXCLUDED.tok_cur, updated_at = EXCLUDED.updated_at";
/*
 * The others' rows aligned to the reader's windows ($3, of $4 ms), then
 * summed per key, with how many instances have a row in those windows
 * (they track the key, with counts or not): each result row names its key
 * by its place in $1 (from 1); keys no other instance has get no row.
 */
static const char rates_sql_others[] =
    "SELECT a.i, sum(a.rp)::bigint, sum(a.rc)::bigint, sum(a.tp)::bigint, "
    "sum(a.tc)::bigint, count(*) "
    "FROM (SELECT u.i, "
    "CASE WHEN r.window_start = $3::bigint THEN r.req_prev "
    "WHEN r.window_start < $3::bigint THEN r.req_cur ELSE 0 END AS rp, "
    "CASE WHEN r.window_start = $3::bigint THEN r.req_cur "
    "WHEN r.window_start > $3::bigint THEN r.req_prev + r.req_cur "
    "ELSE 0 END AS rc, "
    "CASE WHEN r.window_start = $3::bigint THEN r.tok_prev "
    "WHEN r.window_start < $3::bigint THEN r.tok_cur ELSE 0 END AS tp, "
    "CASE WHEN r.window_start = $3::bigint THEN r.tok_cur "
    "WHEN r.window_start > $3::bigint THEN r.tok_prev + r.tok_cur "
    "ELSE 0 END AS tc "
    "FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i) "
    "JOIN rate_shares r ON r.key_id = u.k "
    "WHERE r.instance <> $2 AND r.window_start IN ($3::bigint - $4::bigint, "
    "$3::bigint, $3::bigint + $4::bigint)) a "
    "GROUP BY a.i";
/* The instances live: those whose key '' row is recent (the primary key's
 * index finds them). */
static const char rates_sql_live[] =
    "SELECT count(*) FROM rate_shares WHERE key_id = '' "
    "AND updated_at >= now() - $1::bigint * interval '1 second'";
/* Rows another instance is writing are skipped, not waited for: instances
 * pruning at the same time never wait on each other either. */
static const char rates_sql_prune[] =
    "DELETE FROM rate_shares r USING (SELECT key_id, instance "
    "FROM rate_shares WHERE updated_at < now() - $1::bigint * "
    "interval '1 second' FOR UPDATE SKIP LOCKED) o "
    "WHERE r.key_id = o.key_id AND r.instance = o.instance";

/* The array parameter of the key ids of rows[0..n) into *text (owned by
 * ids). KG_OK or KG_ERR_NOMEM. */
static kg_err_t rates_ids(const kg_ratelimit_share_t *rows, size_t n,
                          kg_pg_array_t *ids, const char **text)
{
    kg_pg_array_start(ids);
    for (size_t k = 0; k < n; k++) {
        kg_pg_array_text(ids, rows[k].key_id);
    }
    return kg_pg_array_finish(ids, text);
}

/* Publish rows[0..n) (n <= PG_RATES_CHUNK) in one statement; a holds the
 * array texts: the ids, then the integer columns. */
static kg_err_t rates_publish_chunk(kg_store_t *store,
                                    const kg_ratelimit_share_t *rows, size_t n,
                                    kg_pg_array_t a[1 + PG_RATES_INTS],
                                    kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    const char *text = NULL;
    kg_err_t rc;

    kg_pg_param_text(&p, kg_store_instance(store));
    rc = rates_ids(rows, n, &a[0], &text);
    kg_pg_param_text(&p, text);
    for (int i = 1; i <= PG_RATES_INTS; i++) {
        kg_pg_array_start(&a[i]);
    }
    for (size_t k = 0; k < n; k++) {
        kg_pg_array_int(&a[1], rows[k].window_start);
        kg_pg_array_int(&a[2], rows[k].req_prev);
        kg_pg_array_int(&a[3], rows[k].req_cur);
        kg_pg_array_int(&a[4], rows[k].tok_prev);
        kg_pg_array_int(&a[5], rows[k].tok_cur);
    }
    for (int i = 1; rc == KG_OK && i <= PG_RATES_INTS; i++) {
        rc = kg_pg_array_finish(&a[i], &text);
        kg_pg_param_text(&p, text);
    }
    if (rc != KG_OK) {
        return rc;
    }
    return kg_pg_exec(store, rates_sql_publish, &p, NULL,
                      "publishing rate windows", diag);
}

static kg_err_t rates_publish(kg_store_t *store,
                              const kg_ratelimit_share_t *own, size_t n,
                              kg_diag_t *diag)
{
    size_t chunk = n < PG_RATES_CHUNK ? n : PG_RATES_CHUNK;
    kg_pg_array_t a[1 + PG_RATES_INTS];
    bool tx = n > chunk;
    size_t from = 0;
    kg_err_t rc = KG_OK;

    for (int i = 0; i <= PG_RATES_INTS; i++) {
        kg_pg_array_init(&a[i]);
    }
    if (tx) {
        rc = kg_store_begin(store, diag);
    }
    /* At least one statement: with no key it marks the instance live. */
    while (rc == KG_OK) {
        size_t m = n - from < chunk ? n - from : chunk;

        rc = rates_publish_chunk(store, own + from, m, a, diag);
        from += m;
        if (from >= n) {
            break;
        }
    }
    if (tx && rc == KG_OK) {
        rc = kg_store_commit(store, diag);
    } else if (tx) {
        kg_store_rollback(store);
    }
    for (int i = 0; i <= PG_RATES_INTS; i++) {
        kg_pg_array_free(&a[i]);
    }
    return rc;
}

/* The others' sums of rows[0..n) (n <= PG_RATES_CHUNK), zeroed before. */
static kg_err_t rates_others_chunk(kg_store_t *store, int64_t window_start,
                                   kg_ratelimit_share_t *rows, size_t n,
                                   kg_pg_array_t *ids, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    const char *text = NULL;
    kg_err_t rc = rates_ids(rows, n, ids, &text);

    if (rc != KG_OK) {
        return rc;
    }
    kg_pg_param_text(&p, text);
    kg_pg_param_text(&p, kg_store_instance(store));
    kg_pg_param_int(&p, window_start);
    kg_pg_param_int(&p, KG_RATELIMIT_WINDOW_MS);
    rc = kg_pg_query(store, rates_sql_others, &p, &res,
                     "reading the other instances' rate windows", diag);
    for (int r = 0; rc == KG_OK && r < PQntuples(res); r++) {
        int64_t i = kg_pg_col_int(res, r, 0);
        kg_ratelimit_share_t *row = NULL;

        if (i < 1 || (uint64_t)i > n) {
            continue;
        }
        row = &rows[i - 1];
        row->req_prev = kg_pg_col_int(res, r, 1);
        row->req_cur = kg_pg_col_int(res, r, 2);
        row->tok_prev = kg_pg_col_int(res, r, 3);
        row->tok_cur = kg_pg_col_int(res, r, 4);
        row->instances = kg_pg_col_int(res, r, 5);
    }
    PQclear(res);
    return rc;
}

static kg_err_t rates_others(kg_store_t *store, int64_t window_start,
                             kg_ratelimit_share_t *rows, size_t n,
                             kg_diag_t *diag)
{
    size_t chunk = n < PG_RATES_CHUNK ? n : PG_RATES_CHUNK;
    kg_pg_array_t ids;
    kg_err_t rc = KG_OK;

    if (n == 0) {
        return KG_OK;
    }
    kg_pg_array_init(&ids);
    for (size_t from = 0; rc == KG_OK && from < n; from += chunk) {
        rc =
            rates_others_chunk(store, window_start, rows + from,
                               n - from < chunk ? n - from : chunk, &ids, diag);
    }
    kg_pg_array_free(&ids);
    if (rc != KG_OK) {
        for (size_t i = 0; i < n; i++) {
            rows[i].req_prev = rows[i].req_cur = 0;
            rows[i].tok_prev = rows[i].tok_cur = 0;
            rows[i].instances = 0;
        }
    }
    return rc;
}

static kg_err_t rates_live(kg_store_t *store, int64_t within_s, int64_t *n,
                           kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    kg_pg_param_int(&p, within_s);
    rc = kg_pg_query(store, rates_sql_live, &p, &res,
                     "counting the instances sharing rate windows", diag);
    if (rc == KG_OK && PQntuples(res) == 1) {
        *n = kg_pg_col_int(res, 0, 0);
    }
    PQclear(res);
    return rc;
}

static kg_err_t rates_prune(kg_store_t *store, int64_t older_than_s,
                            int64_t *deleted, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_int(&p, older_than_s);
    return kg_pg_exec(store, rates_sql_prune, &p, deleted,
                      "deleting old rate windows", diag);
}

const kg_store_rates_ops_t kg_pg_rates_ops = {
    .publish = rates_publish,
    .others = rates_others,
    .live = rates_live,
    .prune = rates_prune,
};
