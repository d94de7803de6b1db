/* The PostgreSQL implementation of the usage rows: events, rollup, charges. */
#include "keygate/store_usage.h"
#include "keygate/validate.h"
#include "store/pg/pg_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rollup rows one scan query fetches; the scan pages on through them. */
#define USAGE_SCAN_PAGE 1024

/* The rollup's columns after the key, in kg_usage_sums_t order. */
#define USAGE_SUM_COLUMNS                                                    \
    "requests, errors, prompt_tokens, completion_tokens, cached_tokens, "    \
    "cost, streamed, latency_ms_sum, latency_ms_max, ttft_ms_sum, "          \
    "ttft_count, lat_5, lat_10, lat_25, lat_50, lat_100, lat_250, lat_500, " \
    "lat_1000, lat_2500, lat_5000, lat_10000, lat_30000, lat_60000, "        \
    "lat_120000, lat_inf"
#define USAGE_SUM_NCOLS (11 + KG_USAGE_LATENCY_BUCKETS)

/*
 * $1 key, $2 hour, $3 model, $4 provider, $5 workspace, $6.. the sums.
 * Additive whatever other instances add at the same time: the conflict
 * arm updates the stored row in place (latency_ms_max by GREATEST), never
 * writes a value read earlier. The key is locked FOR KEY SHARE (it cannot
 * be deleted before commit); an unknown key inserts nothing (0 rows: not
 * found) instead of failing on the foreign key, which would abort the
 * caller's transaction.
 */
static const char usage_sql_rollup_add[] =
    "WITH k AS (SELECT id FROM api_keys WHERE id = $1 FOR KEY SHARE) "
    "INSERT INTO usage_rollup (key_id, hour, model, provider, "
    "workspace_id, " USAGE_SUM_COLUMNS
    ") SELECT k.id, $2::bigint, $3::text, $4::text, $5::text, "
    "$6::bigint, $7::bigint, $8::bigint, $9::bigint, $10::bigint, "
    "$11::bigint, $12::bigint, $13::bigint, $14::bigint, $15::bigint, "
    "$16::bigint, $17::bigint, $18::bigint, $19::bigint, $20::bigint, "
    "$21::bigint, $22::bigint, $23::bigint, $24::bigint, $25::bigint, "
    "$26::bigint, $27::bigint, $28::bigint, $29::bigint, $30::bigint, "
    "$31::bigint FROM k "
    "ON CONFLICT (key_id, hour, model, provider) DO UPDATE SET "
    "requests = usage_rollup.requests + EXCLUDED.requests, "
    "errors = usage_rollup.errors + EXCLUDED.errors, "
    "prompt_tokens = usage_rollup.prompt_tokens + EXCLUDED.prompt_tokens, "
    "completion_tokens = usage_rollup.completion_tokens + "
    "EXCLUDED.completion_tokens, "
    "cached_tokens = usage_rollup.cached_tokens + EXCLUDED.cached_tokens, "
    "cost = usage_rollup.cost + EXCLUDED.cost, "
    "streamed = usage_rollup.streamed + EXCLUDED.streamed, "
    "latency_ms_sum = usage_rollup.latency_ms_sum + EXCLUDED.latency_ms_sum, "
    "latency_ms_max = GREATEST(usage_rollup.latency_ms_max, "
    "EXCLUDED.latency_ms_max), "
    "ttft_ms_sum = usage_rollup.ttft_ms_sum + EXCLUDED.ttft_ms_sum, "
    "ttft_count = usage_rollup.ttft_count + EXCLUDED.ttft_count, "
    "lat_5 = usage_rollup.lat_5 + EXCLUDED.lat_5, "
    "lat_10 = usage_rollup.lat_10 + EXCLUDED.lat_10, "
    "lat_25 = usage_rollup.lat_25 + EXCLUDED.lat_25, "
    "lat_50 = usage_rollup.lat_50 + EXCLUDED.lat_50, "
    "lat_100 = usage_rollup.lat_100 + EXCLUDED.lat_100, "
    "lat_250 = usage_rollup.lat_250 + EXCLUDED.lat_250, "
    "lat_500 = usage_rollup.lat_500 + EXCLUDED.lat_500, "
    "lat_1000 = usage_rollup.lat_1000 + EXCLUDED.lat_1000, "
    "lat_2500 = usage_rollup.lat_2500 + EXCLUDED.lat_2500, "
    "lat_5000 = usage_rollup.lat_5000 + EXCLUDED.lat_5000, "
    "lat_10000 = usage_rollup.lat_10000 + EXCLUDED.lat_10000, "
    "lat_30000 = usage_rollup.lat_30000 + EXCLUDED.lat_30000, "
    "lat_60000 = usage_rollup.lat_60000 + EXCLUDED.lat_60000, "
    "lat_120000 = usage_rollup.lat_120000 + EXCLUDED.lat_120000, "
    "lat_inf = usage_rollup.lat_inf + EXCLUDED.lat_inf";

/*
 * Rollup scans: $1 key, $2 from, $3 to, $4 workspace, $5 model, $6
 * provider (NULL = any), then the page's start: rows after ($7 hour, $8
 * key, $9 model, $10 provider), NULL for the first page, and $11 the page
 * size. Three variants, one per leading index as on SQLite: the primary
 * key (key_id, hour, ...) for a key, usage_rollup_workspace for a
 * workspace, usage_rollup_hour otherwise. Pages are ordered by the whole
 * primary key, so that the next page starts exactly after the last row.
 */
#define USAGE_SCAN_SELECT                                                    \
    "SELECT hour, key_id, workspace_id, model, provider, " USAGE_SUM_COLUMNS \
    " FROM usage_rollup WHERE "
#define USAGE_SCAN_REST                                             \
    "hour >= $2::bigint AND hour < $3::bigint "                     \
    "AND ($1::text IS NULL OR key_id = $1) "                        \
    "AND ($4::text IS NULL OR workspace_id = $4) "                  \
    "AND ($5::text IS NULL OR model = $5) "                         \
    "AND ($6::text IS NULL OR provider = $6) "                      \
    "AND ($7::bigint IS NULL OR (hour, key_id, model, provider) > " \
    "($7, $8::text, $9::text, $10::text)) "                         \
    "ORDER BY hour, key_id, model, provider LIMIT $11"
static const char usage_sql_scan_key[] =
    USAGE_SCAN_SELECT "key_id = $1 AND " USAGE_SCAN_REST;
static const char usage_sql_scan_workspace[] =
    USAGE_SCAN_SELECT "workspace_id = $4 AND " USAGE_SCAN_REST;
static const char usage_sql_scan_all[] = USAGE_SCAN_SELECT USAGE_SCAN_REST;

/*
 * Event pages: $1 key, $2 the first at_ms, $3 the last at_ms (the range's
 * end or the cursor's time, whichever is earlier), $4 the cursor's id (rows
 * at $3 must have a smaller one), $5 workspace, $6 model, $7 provider, $8
 * and $9 the status range, $10 the limit. Walked backwards along
 * usage_events_key_time for a key, else usage_events_time.
 */
#define USAGE_EVENTS_SELECT                                                  \
    "SELECT id, request_id, key_id, workspace_id, at_ms, operation, model, " \
    "provider, mode, status, prompt_tokens, completion_tokens, "             \
    "cached_tokens, cost, latency_ms, ttft_ms, streamed, client_ip, "        \
    "error_code FROM usage_events WHERE "
#define USAGE_EVENTS_REST                           \
    "at_ms >= $2::bigint AND at_ms <= $3::bigint "  \
    "AND (at_ms < $3 OR id < $4::bigint) "          \
    "AND ($1::text IS NULL OR key_id = $1) "        \
    "AND ($5::text IS NULL OR workspace_id = $5) "  \
    "AND ($6::text IS NULL OR model = $6) "         \
    "AND ($7::text IS NULL OR provider = $7) "      \
    "AND status BETWEEN $8::bigint AND $9::bigint " \
    "ORDER BY at_ms DESC, id DESC LIMIT $10"
static const char usage_sql_events_key[] =
    USAGE_EVENTS_SELECT "key_id = $1 AND " USAGE_EVENTS_REST;
static const char usage_sql_events_all[] =
    USAGE_EVENTS_SELECT USAGE_EVENTS_REST;

/*
 * A batch of usage_events rows in one statement, one round trip: $1..$18
 * are arrays, one per column, row i of the batch at place i of each. The
 * batch's keys are locked FOR KEY SHARE (no instance can delete one before
 * commit) and a row is inserted only when its key exists: an unknown key
 * would fail the foreign key and abort the caller's transaction. Of the
 * rows of one request_id whose key exists, the first is the candidate, the
 * others are duplicates; a candidate whose request_id is already stored,
 * or being stored by another instance's open transaction (ON CONFLICT
 * waits for it), inserts nothing. Rows are inserted in batch order, so
 * their ids ascend in it. Answers, one row per batch row in order: its
 * place, (key found, inserted, request_id seen), seen meaning stored
 * before the statement or by an earlier row of the batch whose key exists.
 */
static const char usage_sql_events[] =
    "WITH u AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::text[], "
    "$3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], "
    "$8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], "
    "$13::bigint[], $14::bigint[], $15::bigint[], $16::smallint[], "
    "$17::text[], $18::text[]) WITH ORDINALITY AS u(request_id, key_id, "
    "workspace_id, at_ms, operation, model, provider, mode, status, "
    "prompt_tokens, completion_tokens, cached_tokens, cost, latency_ms, "
    "ttft_ms, streamed, client_ip, error_code, i)), "
    "k AS MATERIALIZED (SELECT id FROM api_keys "
    "WHERE id IN (SELECT key_id FROM u) FOR KEY SHARE), "
    "c AS MATERIALIZED (SELECT u.*, k.id IS NOT NULL AS found, "
    "min(u.i) FILTER (WHERE k.id IS NOT NULL) "
    "OVER (PARTITION BY u.request_id COLLATE \"C\") AS first "
    "FROM u LEFT JOIN k ON k.id = u.key_id), "
    "ins AS (INSERT INTO usage_events (request_id, key_id, workspace_id, "
    "at_ms, operation, model, provider, mode, status, prompt_tokens, "
    "completion_tokens, cached_tokens, cost, latency_ms, ttft_ms, streamed, "
    "client_ip, error_code) SELECT request_id, key_id, workspace_id, at_ms, "
    "operation, model, provider, mode, status, prompt_tokens, "
    "completion_tokens, cached_tokens, cost, latency_ms, ttft_ms, streamed, "
    "client_ip, error_code FROM c WHERE c.i = c.first ORDER BY c.i "
    "ON CONFLICT (request_id) DO NOTHING RETURNING request_id) "
    "SELECT c.i, c.found, ins.request_id IS NOT NULL AND c.i = c.first, "
    "NOT c.found AND (coalesce(c.first < c.i, false) OR EXISTS (SELECT 1 "
    "FROM usage_events e WHERE e.request_id = c.request_id)) "
    "FROM c LEFT JOIN ins ON ins.request_id = c.request_id ORDER BY c.i";

/*
 * SQLite's statement, row for row: touches no column of the key-revision
 * trigger (no cache flush). $4 is the start of the budget period the
 * charge falls in (-1: the key has no period): a newer period restarts
 * period_usage with the cost, a charge for a period older than the stored
 * one only counts toward the lifetime usage, last_used_at only moves
 * forward. Concurrent charges from several instances queue on the row
 * lock, and each one's SET is evaluated on the row the previous committed
 * (READ COMMITTED re-reads it): they add up.
 */
static const char usage_sql_charge_key[] =
    "UPDATE api_keys SET usage = usage + $1::bigint, "
    "last_used_at = GREATEST(coalesce(last_used_at, 0), $2::bigint), "
    "period_usage = CASE WHEN period IS NULL OR $4::bigint < 0 OR "
    "coalesce(period_started_at, -1) > $4::bigint "
    "THEN period_usage WHEN period_started_at = $4::bigint "
    "THEN period_usage + $1::bigint ELSE $1::bigint END, "
    "period_started_at = CASE WHEN period IS NULL OR $4::bigint < 0 OR "
    "coalesce(period_started_at, -1) > $4::bigint THEN period_started_at "
    "ELSE $4::bigint END "
    "WHERE id = $3";
/* Credits mode: the pool's cost comes off the workspace's balance, in
 * place (additive across instances). */
/* The same as kg_store_leases_return: granted never goes below zero (a
 * request without max_tokens may cost more than its reservation). */
static const char usage_sql_spend_lease[] =
    "UPDATE budget_leases SET granted = GREATEST(granted - $4::bigint, 0) "
    "WHERE scope = $1 AND id = $2 AND instance = $3";
static const char usage_sql_charge_credits[] =
    "UPDATE workspaces SET credits_balance = credits_balance - $1::bigint "
    "WHERE id = $2";

/*
 * Retention: $1 the cut-off, $2 the limit; one statement, so one
 * transaction. Instances pruning at once may pick the same rows: the
 * later delete finds them gone and counts only what it deleted.
 */
static const char usage_sql_prune[] =
    "DELETE FROM usage_events WHERE id IN (SELECT id FROM usage_events "
    "WHERE at_ms < $1::bigint ORDER BY at_ms LIMIT $2::bigint)";
/* Both ends of usage_events_time: two index probes. */
static const char usage_sql_span[] =
    "SELECT (SELECT min(at_ms) FROM usage_events), "
    "(SELECT max(at_ms) FROM usage_events)";
static const char usage_sql_stored[] =
    "SELECT 1 FROM usage_events WHERE request_id = $1";

/* The sums in USAGE_SUM_COLUMNS order: one table for binding and reading. */
#define USAGE_SUM_FIELDS(X) \
    X(requests)             \
    X(errors)               \
    X(prompt_tokens)        \
    X(completion_tokens)    \
    X(cached_tokens)        \
    X(cost)                 \
    X(streamed)             \
    X(latency_ms_sum)       \
    X(latency_ms_max)       \
    X(ttft_ms_sum)          \
    X(ttft_count)

#define USAGE_COUNT(f) +1
_Static_assert(0 USAGE_SUM_FIELDS(USAGE_COUNT) + KG_USAGE_LATENCY_BUCKETS ==
                   USAGE_SUM_NCOLS,
               "one field per sum column");
_Static_assert(5 + USAGE_SUM_NCOLS <= KG_PG_MAX_PARAMS,
               "the rollup row fits one statement's parameters");
#undef USAGE_COUNT

/* Append the sums as parameters. */
static void usage_param_sums(kg_pg_params_t *p, const kg_usage_sums_t *s)
{
#define USAGE_PARAM(f) kg_pg_param_int(p, s->f);
    USAGE_SUM_FIELDS(USAGE_PARAM)
#undef USAGE_PARAM
    for (size_t b = 0; b < KG_USAGE_LATENCY_BUCKETS; b++) {
        kg_pg_param_int(p, s->latency_hist[b]);
    }
}

/* Read the sums of row from column first on. */
static void usage_read_sums(const PGresult *res, int row, int first,
                            kg_usage_sums_t *s)
{
    int i = first;

#define USAGE_READ(f) s->f = kg_pg_col_int(res, row, i++);
    USAGE_SUM_FIELDS(USAGE_READ)
#undef USAGE_READ
    for (size_t b = 0; b < KG_USAGE_LATENCY_BUCKETS; b++) {
        s->latency_hist[b] = kg_pg_col_int(res, row, i++);
    }
}

static kg_err_t usage_rollup_add(kg_store_t *store,
                                 const kg_usage_rollup_t *row, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    int64_t changed = 0;
    kg_err_t rc;

    kg_pg_param_text(&p, row->key_id);
    kg_pg_param_int(&p, row->hour);
    kg_pg_param_text(&p, row->model);
    kg_pg_param_text(&p, row->provider);
    kg_pg_param_text(&p, row->workspace_id);
    usage_param_sums(&p, &row->sums);
    rc = kg_pg_exec(store, usage_sql_rollup_add, &p, &changed,
                    "recording hourly usage", diag);
    if (rc == KG_OK && changed == 0) {
        rc = kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                          "recording hourly usage: no key %s", row->key_id);
    }
    return rc;
}

/*
 * Whether PostgreSQL would refuse r's values: the mode's CHECK, or text
 * that is not UTF-8 (the database's encoding). Refused here, such an event
 * never reaches the server, where its error would abort the batch's
 * transaction.
 */
static bool usage_refused(const kg_usage_record_t *r)
{
    const char *texts[] = {r->request_id, r->key_id,    r->workspace_id,
                           r->operation,  r->model,     r->provider,
                           r->client_ip,  r->error_code};

    if (strcmp(r->mode, "api-keys") != 0 && strcmp(r->mode, "credits") != 0 &&
        strcmp(r->mode, "pool") != 0) {
        return true;
    }
    for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
        const unsigned char *s = (const unsigned char *)texts[i];
        size_t left = strlen(texts[i]);

        while (left > 0) {
            size_t len = kg_validate_utf8_len(s, left);

            if (len == 0) {
                return true;
            }
            s += len;
            left -= len;
        }
    }
    return false;
}

/* The columns of usage_sql_events, one array parameter each. */
#define USAGE_EVENT_COLUMNS 18
_Static_assert(USAGE_EVENT_COLUMNS <= KG_PG_MAX_PARAMS,
               "one parameter per column of the batch");

/* The arrays of one batch and, for each row sent, its event's place. */
typedef struct usage_batch {
    kg_pg_array_t cols[USAGE_EVENT_COLUMNS];
    size_t event[KG_STORE_USAGE_BATCH_MAX];
    size_t n; /* rows sent */
} usage_batch_t;

/* Add r as the batch's next row, in usage_sql_events' column order. */
static void usage_batch_add(usage_batch_t *b, const kg_usage_record_t *r)
{
    kg_pg_array_t *c = b->cols;

    kg_pg_array_text(&c[0], r->request_id);
    kg_pg_array_text(&c[1], r->key_id);
    kg_pg_array_text(&c[2], r->workspace_id);
    kg_pg_array_int(&c[3], r->at_ms);
    kg_pg_array_text(&c[4], r->operation);
    kg_pg_array_text(&c[5], r->model);
    kg_pg_array_text(&c[6], r->provider);
    kg_pg_array_text(&c[7], r->mode);
    kg_pg_array_int(&c[8], r->status);
    kg_pg_array_int(&c[9], r->prompt_tokens);
    kg_pg_array_int(&c[10], r->completion_tokens);
    kg_pg_array_int(&c[11], r->cached_tokens);
    kg_pg_array_int(&c[12], r->cost);
    kg_pg_array_int(&c[13], r->latency_ms);
    kg_pg_array_opt_int(&c[14], r->ttft_ms);
    kg_pg_array_int(&c[15], r->streamed ? 1 : 0);
    kg_pg_array_text(&c[16], r->client_ip);
    kg_pg_array_text(&c[17], r->error_code[0] ? r->error_code : NULL);
}

/* The verdict of answer row of usage_sql_events, as the batch's events
 * had one statement each: inserted, else a stored request_id wins over an
 * unknown key (as on SQLite), else the key is unknown. */
static kg_err_t usage_verdict(const PGresult *res, int row)
{
    if (kg_pg_col_bool(res, row, 2)) {
        return KG_OK;
    }
    if (kg_pg_col_bool(res, row, 1) || kg_pg_col_bool(res, row, 3)) {
        return KG_ERR_EXISTS;
    }
    return KG_ERR_NOT_FOUND;
}

/* Send the batch's rows (usage_sql_events) and give each its verdict. */
static kg_err_t usage_batch_send(kg_store_t *store, usage_batch_t *b,
                                 kg_err_t *verdicts, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    const char *text = NULL;
    kg_err_t rc = KG_OK;

    for (int c = 0; rc == KG_OK && c < USAGE_EVENT_COLUMNS; c++) {
        rc = kg_pg_array_finish(&b->cols[c], &text);
        kg_pg_param_text(&p, text);
    }
    if (rc != KG_OK) {
        return kg_diag_fail(diag, rc, "recording usage: out of memory");
    }
    rc =
        kg_pg_query(store, usage_sql_events, &p, &res, "recording usage", diag);
    if (rc != KG_OK) {
        /* A violated constraint the statement guards against: an error
         * that fails the batch (its transaction is aborted), no verdict. */
        return rc == KG_ERR_EXISTS ? KG_ERR_STORE : rc;
    }
    if ((size_t)PQntuples(res) != b->n) {
        rc = kg_diag_fail(diag, KG_ERR_STORE, "recording usage: no answer");
    }
    for (int r = 0; rc == KG_OK && r < PQntuples(res); r++) {
        if (kg_pg_col_int(res, r, 0) != r + 1) {
            rc = kg_diag_fail(diag, KG_ERR_STORE,
                              "recording usage: answers out of order");
        } else {
            verdicts[b->event[r]] = usage_verdict(res, r);
        }
    }
    PQclear(res);
    return rc;
}

static kg_err_t usage_events_insert(kg_store_t *store,
                                    const kg_usage_record_t *events, size_t n,
                                    kg_err_t *verdicts, kg_diag_t *diag)
{
    usage_batch_t *b = NULL;
    kg_err_t rc = KG_OK;

    if (n > KG_STORE_USAGE_BATCH_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "recording usage: %zu events in one batch", n);
    }
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM,
                            "recording usage: out of memory");
    }
    for (int c = 0; c < USAGE_EVENT_COLUMNS; c++) {
        kg_pg_array_init(&b->cols[c]);
        kg_pg_array_start(&b->cols[c]);
    }
    for (size_t i = 0; i < n; i++) {
        if (usage_refused(&events[i])) {
            verdicts[i] = KG_ERR_INVAL;
        } else {
            b->event[b->n++] = i;
            usage_batch_add(b, &events[i]);
        }
    }
    if (b->n > 0) {
        rc = usage_batch_send(store, b, verdicts, diag);
    }
    for (int c = 0; c < USAGE_EVENT_COLUMNS; c++) {
        kg_pg_array_free(&b->cols[c]);
    }
    free(b);
    return rc;
}

/*
 * The committed cost comes off this instance's lease on the account (if
 * it holds one) in the transaction that charges it, so that spend plus
 * the live leases does not move (store_leases.h). After the account's
 * row, the order claims lock in too.
 */
static kg_err_t usage_spend_lease(kg_store_t *store, const char *scope,
                                  const char *id, int64_t cost, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    if (cost <= 0) {
        return KG_OK;
    }
    kg_pg_param_text(&p, scope);
    kg_pg_param_text(&p, id);
    kg_pg_param_text(&p, kg_store_instance(store));
    kg_pg_param_int(&p, cost);
    return kg_pg_exec(store, usage_sql_spend_lease, &p, NULL,
                      "spending from a lease", diag);
}

static kg_err_t usage_charge_key(kg_store_t *store, const char *key_id,
                                 int64_t cost, int64_t last_used,
                                 int64_t period_start, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    kg_err_t rc;

    kg_pg_param_int(&p, cost);
    kg_pg_param_int(&p, last_used);
    kg_pg_param_text(&p, key_id);
    kg_pg_param_int(&p, period_start);
    rc = kg_pg_exec(store, usage_sql_charge_key, &p, NULL,
                    "recording key usage", diag);
    return rc == KG_OK ? usage_spend_lease(store, "key", key_id, cost, diag)
                       : rc;
}

static kg_err_t usage_charge_credits(kg_store_t *store,
                                     const char *workspace_id, int64_t cost,
                                     kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    kg_err_t rc;

    kg_pg_param_int(&p, cost);
    kg_pg_param_text(&p, workspace_id);
    rc = kg_pg_exec(store, usage_sql_charge_credits, &p, NULL,
                    "charging workspace credits", diag);
    return rc == KG_OK
               ? usage_spend_lease(store, "credits", workspace_id, cost, diag)
               : rc;
}

/* NULL for "" (any), else the text. */
static const char *usage_opt(const char *s)
{
    return s[0] == '\0' ? NULL : s;
}

/* Hand the rows of one scan page to fn; false when fn stopped. */
static bool usage_scan_rows(const PGresult *res, kg_store_rollup_fn fn,
                            void *ud)
{
    kg_usage_rollup_t row;

    for (int i = 0; i < PQntuples(res); i++) {
        row.hour = kg_pg_col_int(res, i, 0);
        row.key_id = kg_pg_col_text(res, i, 1);
        row.workspace_id = kg_pg_col_text(res, i, 2);
        row.model = kg_pg_col_text(res, i, 3);
        row.provider = kg_pg_col_text(res, i, 4);
        usage_read_sums(res, i, 5, &row.sums);
        if (!fn(ud, &row)) {
            return false;
        }
    }
    return true;
}

/* The cursor of a scan: the last row handed out (its strings copied). */
typedef struct usage_scan_pos {
    bool set;
    int64_t hour;
    char key_id[KG_TOKEN_ID_LEN + 1];
    char model[KG_USAGE_MODEL_MAX + 1];
    char provider[KG_USAGE_PROVIDER_MAX + 1];
} usage_scan_pos_t;

static void usage_scan_params(kg_pg_params_t *p,
                              const kg_usage_filter_t *filter,
                              const usage_scan_pos_t *pos)
{
    memset(p, 0, sizeof(*p));
    kg_pg_param_text(p, usage_opt(filter->key_id));
    kg_pg_param_int(p, filter->from);
    kg_pg_param_int(p, filter->to);
    kg_pg_param_text(p, usage_opt(filter->workspace_id));
    kg_pg_param_text(p, usage_opt(filter->model));
    kg_pg_param_text(p, usage_opt(filter->provider));
    if (pos->set) {
        kg_pg_param_int(p, pos->hour);
        kg_pg_param_text(p, pos->key_id);
        kg_pg_param_text(p, pos->model);
        kg_pg_param_text(p, pos->provider);
    } else {
        for (int i = 0; i < 4; i++) {
            kg_pg_param_text(p, NULL);
        }
    }
    kg_pg_param_int(p, USAGE_SCAN_PAGE);
}

static kg_err_t usage_rollup_scan(kg_store_t *store,
                                  const kg_usage_filter_t *filter,
                                  kg_store_rollup_fn fn, void *ud,
                                  kg_diag_t *diag)
{
    const char *sql = filter->key_id[0]         ? usage_sql_scan_key
                      : filter->workspace_id[0] ? usage_sql_scan_workspace
                                                : usage_sql_scan_all;
    usage_scan_pos_t pos = {0};
    kg_pg_params_t p;
    kg_err_t rc = KG_OK;
    bool more = true;

    if (filter->from % 3600 != 0 || filter->to % 3600 != 0 ||
        filter->from >= filter->to) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "usage rollup: the range must be whole hours");
    }
    while (more && rc == KG_OK) {
        PGresult *res = NULL;
        int n;

        usage_scan_params(&p, filter, &pos);
        rc = kg_pg_query(store, sql, &p, &res, "reading usage", diag);
        if (rc != KG_OK) {
            break;
        }
        n = PQntuples(res);
        more = usage_scan_rows(res, fn, ud) && n == USAGE_SCAN_PAGE;
        if (more) {
            pos.set = true;
            pos.hour = kg_pg_col_int(res, n - 1, 0);
            snprintf(pos.key_id, sizeof(pos.key_id), "%s",
                     kg_pg_col_text(res, n - 1, 1));
            snprintf(pos.model, sizeof(pos.model), "%s",
                     kg_pg_col_text(res, n - 1, 3));
            snprintf(pos.provider, sizeof(pos.provider), "%s",
                     kg_pg_col_text(res, n - 1, 4));
        }
        PQclear(res);
    }
    return rc;
}

static void usage_copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

static void usage_read_event(const PGresult *res, int row, kg_usage_record_t *r)
{
    memset(r, 0, sizeof(*r));
    r->id = kg_pg_col_int(res, row, 0);
    usage_copy(r->request_id, sizeof(r->request_id),
               kg_pg_col_text(res, row, 1));
    usage_copy(r->key_id, sizeof(r->key_id), kg_pg_col_text(res, row, 2));
    usage_copy(r->workspace_id, sizeof(r->workspace_id),
               kg_pg_col_text(res, row, 3));
    r->at_ms = kg_pg_col_int(res, row, 4);
    usage_copy(r->operation, sizeof(r->operation), kg_pg_col_text(res, row, 5));
    usage_copy(r->model, sizeof(r->model), kg_pg_col_text(res, row, 6));
    usage_copy(r->provider, sizeof(r->provider), kg_pg_col_text(res, row, 7));
    usage_copy(r->mode, sizeof(r->mode), kg_pg_col_text(res, row, 8));
    r->status = (int)kg_pg_col_int(res, row, 9);
    r->prompt_tokens = kg_pg_col_int(res, row, 10);
    r->completion_tokens = kg_pg_col_int(res, row, 11);
    r->cached_tokens = kg_pg_col_int(res, row, 12);
    r->cost = kg_pg_col_int(res, row, 13);
    r->latency_ms = kg_pg_col_int(res, row, 14);
    r->ttft_ms = kg_pg_col_int(res, row, 15);
    r->streamed = kg_pg_col_bool(res, row, 16) != 0;
    usage_copy(r->client_ip, sizeof(r->client_ip),
               kg_pg_col_text(res, row, 17));
    usage_copy(r->error_code, sizeof(r->error_code),
               kg_pg_col_text(res, row, 18));
}

static kg_err_t usage_events_page(kg_store_t *store,
                                  const kg_usage_events_filter_t *filter,
                                  int64_t before_at_ms, int64_t before_id,
                                  size_t limit, kg_usage_record_t *out,
                                  size_t *count, kg_diag_t *diag)
{
    const kg_usage_filter_t *b = &filter->base;
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    int64_t last_ms = b->to * 1000 - 1;
    int64_t last_id = INT64_MAX;
    size_t n;
    kg_err_t rc;

    *count = 0;
    if (limit == 0) {
        return KG_OK;
    }
    if (before_at_ms <= last_ms) {
        /* The cursor lies inside the range: start just below it. */
        last_ms = before_at_ms;
        last_id = before_id;
    }
    kg_pg_param_text(&p, usage_opt(b->key_id));
    kg_pg_param_int(&p, b->from * 1000);
    kg_pg_param_int(&p, last_ms);
    kg_pg_param_int(&p, last_id);
    kg_pg_param_text(&p, usage_opt(b->workspace_id));
    kg_pg_param_text(&p, usage_opt(b->model));
    kg_pg_param_text(&p, usage_opt(b->provider));
    kg_pg_param_int(&p, filter->status_min);
    kg_pg_param_int(&p, filter->status_max);
    kg_pg_param_int(&p, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    rc = kg_pg_query(store,
                     b->key_id[0] ? usage_sql_events_key : usage_sql_events_all,
                     &p, &res, "reading usage events", diag);
    if (rc != KG_OK) {
        return rc;
    }
    n = (size_t)PQntuples(res);
    for (size_t i = 0; i < n && i < limit; i++) {
        usage_read_event(res, (int)i, &out[i]);
    }
    *count = n < limit ? n : limit;
    PQclear(res);
    return KG_OK;
}

static kg_err_t usage_prune(kg_store_t *store, int64_t before_ms, size_t limit,
                            size_t *deleted, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    int64_t changed = 0;
    kg_err_t rc;

    *deleted = 0;
    if (limit == 0 || limit > INT32_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "bad prune limit");
    }
    kg_pg_param_int(&p, before_ms);
    kg_pg_param_int(&p, (int64_t)limit);
    rc = kg_pg_exec(store, usage_sql_prune, &p, &changed,
                    "deleting old usage events", diag);
    if (rc == KG_OK) {
        *deleted = (size_t)changed;
    }
    return rc;
}

static kg_err_t usage_span(kg_store_t *store, int64_t *oldest_ms,
                           int64_t *newest_ms, kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_err_t rc;

    *oldest_ms = -1;
    *newest_ms = -1;
    rc = kg_pg_query(store, usage_sql_span, NULL, &res,
                     "reading the usage events' span", diag);
    if (rc == KG_OK && PQntuples(res) == 1) {
        *oldest_ms = kg_pg_col_int(res, 0, 0);
        *newest_ms = kg_pg_col_int(res, 0, 1);
    }
    PQclear(res);
    return rc;
}

static kg_err_t usage_stored(kg_store_t *store, const char *request_id,
                             bool *stored, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    *stored = false;
    kg_pg_param_text(&p, request_id);
    rc = kg_pg_query(store, usage_sql_stored, &p, &res,
                     "looking up a usage event", diag);
    if (rc == KG_OK) {
        *stored = PQntuples(res) > 0;
    }
    PQclear(res);
    return rc;
}

/* No progress hook: libpq waits for the server in a system call, which
 * gives up the CPU by itself. */
const kg_store_usage_ops_t kg_pg_usage_ops = {
    .events_insert = usage_events_insert,
    .charge_key = usage_charge_key,
    .charge_credits = usage_charge_credits,
    .set_progress = NULL,
    .rollup_add = usage_rollup_add,
    .rollup_scan = usage_rollup_scan,
    .events_page = usage_events_page,
    .prune = usage_prune,
    .span = usage_span,
    .stored = usage_stored,
};
