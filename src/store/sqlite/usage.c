/* SQLite statements of the usage rows: events, rollup, charges, queries. */
#include "keygate/store_usage.h"
#include "store/sqlite/sqlite_store.h"

#include <stdio.h>
#include <string.h>

/* The rollup's columns after the key, in kg_usage_sums_t order. */
#define USAGE_SUM_COLUMNS                                                    \
    "requests, errors, prompt_tokens, completion_tokens, cached_tokens, "    \
    "cost, streamed, latency_ms_sum, latency_ms_max, ttft_ms_sum, "          \
    "ttft_count, lat_5, lat_10, lat_25, lat_50, lat_100, lat_250, lat_500, " \
    "lat_1000, lat_2500, lat_5000, lat_10000, lat_30000, lat_60000, "        \
    "lat_120000, lat_inf"
#define USAGE_SUM_NCOLS (11 + KG_USAGE_LATENCY_BUCKETS)

/*
 * ?1 key, ?2 hour, ?3 model, ?4 provider, ?5 workspace, ?6.. the sums.
 * Every count adds up; latency_ms_max takes the maximum (GREATEST on
 * PostgreSQL).
 */
static const char usage_sql_rollup_add[] =
    "INSERT INTO usage_rollup (key_id, hour, model, provider, "
    "workspace_id, " USAGE_SUM_COLUMNS
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key_id, hour, model, provider) DO UPDATE SET "
    "requests = requests + excluded.requests, "
    "errors = errors + excluded.errors, "
    "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = completion_tokens + excluded.completion_tokens, "
    "cached_tokens = cached_tokens + excluded.cached_tokens, "
    "cost = cost + excluded.cost, "
    "streamed = streamed + excluded.streamed, "
    "latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum, "
    "latency_ms_max = max(latency_ms_max, excluded.latency_ms_max), "
    "ttft_ms_sum = ttft_ms_sum + excluded.ttft_ms_sum, "
    "ttft_count = ttft_count + excluded.ttft_count, "
    "lat_5 = lat_5 + excluded.lat_5, "
    "lat_10 = lat_10 + excluded.lat_10, "
    "lat_25 = lat_25 + excluded.lat_25, "
    "lat_50 = lat_50 + excluded.lat_50, "
    "lat_100 = lat_100 + excluded.lat_100, "
    "lat_250 = lat_250 + excluded.lat_250, "
    "lat_500 = lat_500 + excluded.lat_500, "
    "lat_1000 = lat_1000 + excluded.lat_1000, "
    "lat_2500 = lat_2500 + excluded.lat_2500, "
    "lat_5000 = lat_5000 + excluded.lat_5000, "
    "lat_10000 = lat_10000 + excluded.lat_10000, "
    "lat_30000 = lat_30000 + excluded.lat_30000, "
    "lat_60000 = lat_60000 + excluded.lat_60000, "
    "lat_120000 = lat_120000 + excluded.lat_120000, "
    "lat_inf = lat_inf + excluded.lat_inf";

/*
 * Rollup scans: ?1 key, ?2 from, ?3 to, ?4 workspace, ?5 model, ?6
 * provider (NULL = any). Three variants, one per leading index: the
 * primary key (key_id, hour, ...) for a key, usage_rollup_workspace for a
 * workspace, usage_rollup_hour otherwise. The other filters are checked on
 * the rows the index yields.
 */
#define USAGE_SCAN_SELECT                                                    \
    "SELECT hour, key_id, workspace_id, model, provider, " USAGE_SUM_COLUMNS \
    " FROM usage_rollup WHERE "
#define USAGE_SCAN_REST                                                     \
    "hour >= ?2 AND hour < ?3 AND (?1 IS NULL OR key_id = ?1) "             \
    "AND (?4 IS NULL OR workspace_id = ?4) AND (?5 IS NULL OR model = ?5) " \
    "AND (?6 IS NULL OR provider = ?6) ORDER BY hour"
static const char usage_sql_scan_key[] =
    USAGE_SCAN_SELECT "key_id = ?1 AND " USAGE_SCAN_REST;
static const char usage_sql_scan_workspace[] =
    USAGE_SCAN_SELECT "workspace_id = ?4 AND " USAGE_SCAN_REST;
static const char usage_sql_scan_all[] = USAGE_SCAN_SELECT USAGE_SCAN_REST;

/*
 * Event pages: ?1 key, ?2 the first at_ms, ?3 the last at_ms (the range's
 * end or the cursor's time, whichever is earlier), ?4 the cursor's id (rows
 * at ?3 must have a smaller one), ?5 workspace, ?6 model, ?7 provider, ?8
 * and ?9 the status range, ?10 the limit. Walked backwards along
 * usage_events_key_time (key_id, at_ms, rowid) for a key, else
 * usage_events_time (at_ms, rowid): both yield (at_ms, id) in the order
 * asked for, so no sort, and a page stops after its rows.
 */
#define USAGE_EVENTS_SELECT                                                  \
    "SELECT id, request_id, key_id, workspace_id, at_ms, operation, model, " \
    "provider, mode, status, prompt_tokens, completion_tokens, "             \
    "cached_tokens, cost, latency_ms, ttft_ms, streamed, client_ip, "        \
    "error_code FROM usage_events WHERE "
#define USAGE_EVENTS_REST                                                    \
    "at_ms >= ?2 AND at_ms <= ?3 AND (at_ms < ?3 OR id < ?4) "               \
    "AND (?1 IS NULL OR key_id = ?1) AND (?5 IS NULL OR workspace_id = ?5) " \
    "AND (?6 IS NULL OR model = ?6) AND (?7 IS NULL OR provider = ?7) "      \
    "AND status BETWEEN ?8 AND ?9 ORDER BY at_ms DESC, id DESC LIMIT ?10"
static const char usage_sql_events_key[] =
    USAGE_EVENTS_SELECT "key_id = ?1 AND " USAGE_EVENTS_REST;
static const char usage_sql_events_all[] =
    USAGE_EVENTS_SELECT USAGE_EVENTS_REST;

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
#undef USAGE_COUNT

/* Bind the sums from parameter first on. */
static void usage_bind_sums(sqlite3_stmt *st, int first,
                            const kg_usage_sums_t *s)
{
    int i = first;

#define USAGE_BIND(f) sqlite3_bind_int64(st, i++, s->f);
    USAGE_SUM_FIELDS(USAGE_BIND)
#undef USAGE_BIND
    for (size_t b = 0; b < KG_USAGE_LATENCY_BUCKETS; b++) {
        sqlite3_bind_int64(st, i++, s->latency_hist[b]);
    }
}

/* Read the sums from column first on. */
static void usage_read_sums(sqlite3_stmt *st, int first, kg_usage_sums_t *s)
{
    int i = first;

#define USAGE_READ(f) s->f = sqlite3_column_int64(st, i++);
    USAGE_SUM_FIELDS(USAGE_READ)
#undef USAGE_READ
    for (size_t b = 0; b < KG_USAGE_LATENCY_BUCKETS; b++) {
        s->latency_hist[b] = sqlite3_column_int64(st, i++);
    }
}

static kg_err_t usage_rollup_add(kg_store_t *store,
                                 const kg_usage_rollup_t *row, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, usage_sql_rollup_add, diag);
    int src;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, row->key_id);
    sqlite3_bind_int64(st, 2, row->hour);
    kg_sqlite_bind_text(st, 3, row->model);
    kg_sqlite_bind_text(st, 4, row->provider);
    kg_sqlite_bind_text(st, 5, row->workspace_id);
    usage_bind_sums(st, 6, &row->sums);
    src = sqlite3_step(st);
    kg_sqlite_reset(st);
    if (src == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                            "recording hourly usage: no key %s", row->key_id);
    }
    return kg_sqlite_error(store, src, "recording hourly usage", diag);
}

/* One usage_events row; a repeated request_id is not stored twice. */
static const char usage_sql_event[] =
    "INSERT INTO usage_events (request_id, key_id, workspace_id, at_ms, "
    "operation, model, provider, mode, status, prompt_tokens, "
    "completion_tokens, cached_tokens, cost, latency_ms, ttft_ms, streamed, "
    "client_ip, error_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING";
/*
 * Touches no column of the key-revision triggers: no cache flush. ?4 is
 * the start of the budget period the charge falls in (-1: the key has no
 * period): a new period restarts period_usage, a charge for a period
 * older than the stored one only counts toward the lifetime usage.
 */
static const char usage_sql_charge_key[] =
    "UPDATE api_keys SET usage = usage + ?1, "
    "last_used_at = max(coalesce(last_used_at, 0), ?2), "
    "period_usage = CASE WHEN period IS NULL OR ?4 < 0 OR "
    "coalesce(period_started_at, -1) > ?4 "
    "THEN period_usage WHEN period_started_at = ?4 THEN period_usage + ?1 "
    "ELSE ?1 END, "
    "period_started_at = CASE WHEN period IS NULL OR ?4 < 0 OR "
    "coalesce(period_started_at, -1) > ?4 THEN period_started_at ELSE ?4 END "
    "WHERE id = ?3";
/* Credits mode: the pool's cost comes off the workspace's balance. */
static const char usage_sql_charge_credits[] =
    "UPDATE workspaces SET credits_balance = credits_balance - ? "
    "WHERE id = ?";

/* SQLite calls the progress hook every this many virtual machine steps. */
#define USAGE_PROGRESS_OPS 400

/* Insert one event with st (usage_sql_event): its verdict, or the error
 * that fails the batch. */
static kg_err_t usage_insert_one(kg_store_t *store, sqlite3_stmt *st,
                                 const kg_usage_record_t *r, kg_diag_t *diag)
{
    int src;

    kg_sqlite_bind_text(st, 1, r->request_id);
    kg_sqlite_bind_text(st, 2, r->key_id);
    kg_sqlite_bind_text(st, 3, r->workspace_id);
    sqlite3_bind_int64(st, 4, r->at_ms);
    kg_sqlite_bind_text(st, 5, r->operation);
    kg_sqlite_bind_text(st, 6, r->model);
    kg_sqlite_bind_text(st, 7, r->provider);
    kg_sqlite_bind_text(st, 8, r->mode);
    sqlite3_bind_int(st, 9, r->status);
    sqlite3_bind_int64(st, 10, r->prompt_tokens);
    sqlite3_bind_int64(st, 11, r->completion_tokens);
    sqlite3_bind_int64(st, 12, r->cached_tokens);
    sqlite3_bind_int64(st, 13, r->cost);
    sqlite3_bind_int64(st, 14, r->latency_ms);
    kg_sqlite_bind_opt_int(st, 15, r->ttft_ms);
    sqlite3_bind_int(st, 16, r->streamed ? 1 : 0);
    kg_sqlite_bind_text(st, 17, r->client_ip);
    kg_sqlite_bind_text(st, 18, r->error_code[0] ? r->error_code : NULL);
    src = sqlite3_step(st);
    kg_sqlite_reset(st);
    if (src == SQLITE_DONE) {
        return sqlite3_changes(kg_sqlite_db(store)) == 0 ? KG_ERR_EXISTS
                                                         : KG_OK;
    }
    /* A failed statement undoes only itself: the batch goes on. */
    if (src == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return KG_ERR_NOT_FOUND;
    }
    if ((src & 0xff) == SQLITE_CONSTRAINT) {
        return KG_ERR_INVAL;
    }
    return kg_sqlite_error(store, src, "recording usage", diag);
}

static kg_err_t usage_events_insert(kg_store_t *store,
                                    const kg_usage_record_t *events, size_t n,
                                    kg_err_t *verdicts, kg_diag_t *diag)
{
    sqlite3_stmt *st;

    if (n > KG_STORE_USAGE_BATCH_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "recording usage: %zu events in one batch", n);
    }
    st = kg_sqlite_stmt(store, usage_sql_event, diag);
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    for (size_t i = 0; i < n; i++) {
        verdicts[i] = usage_insert_one(store, st, &events[i], diag);
        if (verdicts[i] != KG_OK && verdicts[i] != KG_ERR_EXISTS &&
            verdicts[i] != KG_ERR_NOT_FOUND && verdicts[i] != KG_ERR_INVAL) {
            return verdicts[i];
        }
    }
    return KG_OK;
}

static kg_err_t usage_charge_key(kg_store_t *store, const char *key_id,
                                 int64_t cost, int64_t last_used,
                                 int64_t period_start, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, usage_sql_charge_key, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, cost);
    sqlite3_bind_int64(st, 2, last_used);
    kg_sqlite_bind_text(st, 3, key_id);
    sqlite3_bind_int64(st, 4, period_start);
    return kg_sqlite_exec(store, st, "recording key usage", diag);
}

static kg_err_t usage_charge_credits(kg_store_t *store,
                                     const char *workspace_id, int64_t cost,
                                     kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, usage_sql_charge_credits, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, cost);
    kg_sqlite_bind_text(st, 2, workspace_id);
    return kg_sqlite_exec(store, st, "charging workspace credits", diag);
}

/* SQLite's progress handler: calls the hook, never interrupts. */
static int usage_progress(void *arg)
{
    const kg_store_progress_t *p = arg;

    p->fn(p->ud);
    return 0;
}

static void usage_set_progress(kg_store_t *store,
                               const kg_store_progress_t *progress)
{
    if (progress == NULL) {
        sqlite3_progress_handler(kg_sqlite_db(store), 0, NULL, NULL);
    } else {
        sqlite3_progress_handler(kg_sqlite_db(store), USAGE_PROGRESS_OPS,
                                 usage_progress, (void *)progress);
    }
}

/* NULL for "" (any), else the text. */
static const char *usage_opt(const char *s)
{
    return s[0] == '\0' ? NULL : s;
}

static void usage_read_rollup(sqlite3_stmt *st, kg_usage_rollup_t *row)
{
    row->hour = sqlite3_column_int64(st, 0);
    row->key_id = kg_sqlite_col_text(st, 1);
    row->workspace_id = kg_sqlite_col_text(st, 2);
    row->model = kg_sqlite_col_text(st, 3);
    row->provider = kg_sqlite_col_text(st, 4);
    usage_read_sums(st, 5, &row->sums);
}

static kg_err_t usage_rollup_scan(kg_store_t *store,
                                  const kg_usage_filter_t *filter,
                                  kg_store_rollup_fn fn, void *ud,
                                  kg_diag_t *diag)
{
    const char *sql = filter->key_id[0]         ? usage_sql_scan_key
                      : filter->workspace_id[0] ? usage_sql_scan_workspace
                                                : usage_sql_scan_all;
    sqlite3_stmt *st;
    kg_usage_rollup_t row;
    int src;

    if (filter->from % 3600 != 0 || filter->to % 3600 != 0 ||
        filter->from >= filter->to) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "usage rollup: the range must be whole hours");
    }
    st = kg_sqlite_stmt(store, sql, diag);
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, usage_opt(filter->key_id));
    sqlite3_bind_int64(st, 2, filter->from);
    sqlite3_bind_int64(st, 3, filter->to);
    kg_sqlite_bind_text(st, 4, usage_opt(filter->workspace_id));
    kg_sqlite_bind_text(st, 5, usage_opt(filter->model));
    kg_sqlite_bind_text(st, 6, usage_opt(filter->provider));
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        usage_read_rollup(st, &row);
        if (!fn(ud, &row)) {
            src = SQLITE_DONE;
            break;
        }
    }
    kg_sqlite_reset(st);
    return kg_sqlite_error(store, src, "reading usage", diag);
}

static void usage_copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

static void usage_read_event(sqlite3_stmt *st, kg_usage_record_t *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    usage_copy(r->request_id, sizeof(r->request_id), kg_sqlite_col_text(st, 1));
    usage_copy(r->key_id, sizeof(r->key_id), kg_sqlite_col_text(st, 2));
    usage_copy(r->workspace_id, sizeof(r->workspace_id),
               kg_sqlite_col_text(st, 3));
    r->at_ms = sqlite3_column_int64(st, 4);
    usage_copy(r->operation, sizeof(r->operation), kg_sqlite_col_text(st, 5));
    usage_copy(r->model, sizeof(r->model), kg_sqlite_col_text(st, 6));
    usage_copy(r->provider, sizeof(r->provider), kg_sqlite_col_text(st, 7));
    usage_copy(r->mode, sizeof(r->mode), kg_sqlite_col_text(st, 8));
    r->status = sqlite3_column_int(st, 9);
    r->prompt_tokens = sqlite3_column_int64(st, 10);
    r->completion_tokens = sqlite3_column_int64(st, 11);
    r->cached_tokens = sqlite3_column_int64(st, 12);
    r->cost = sqlite3_column_int64(st, 13);
    r->latency_ms = sqlite3_column_int64(st, 14);
    r->ttft_ms = kg_sqlite_col_opt_int(st, 15);
    r->streamed = sqlite3_column_int(st, 16) != 0;
    usage_copy(r->client_ip, sizeof(r->client_ip), kg_sqlite_col_text(st, 17));
    usage_copy(r->error_code, sizeof(r->error_code),
               kg_sqlite_col_text(st, 18));
}

static kg_err_t usage_events_page(kg_store_t *store,
                                  const kg_usage_events_filter_t *filter,
                                  int64_t before_at_ms, int64_t before_id,
                                  size_t limit, kg_usage_record_t *out,
                                  size_t *count, kg_diag_t *diag)
{
    const kg_usage_filter_t *b = &filter->base;
    sqlite3_stmt *st;
    int64_t last_ms = b->to * 1000 - 1;
    int64_t last_id = INT64_MAX;
    size_t n = 0;
    int src;

    *count = 0;
    if (limit == 0) {
        return KG_OK;
    }
    if (before_at_ms <= last_ms) {
        /* The cursor lies inside the range: start just below it. */
        last_ms = before_at_ms;
        last_id = before_id;
    }
    st = kg_sqlite_stmt(
        store, b->key_id[0] ? usage_sql_events_key : usage_sql_events_all,
        diag);
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, usage_opt(b->key_id));
    sqlite3_bind_int64(st, 2, b->from * 1000);
    sqlite3_bind_int64(st, 3, last_ms);
    sqlite3_bind_int64(st, 4, last_id);
    kg_sqlite_bind_text(st, 5, usage_opt(b->workspace_id));
    kg_sqlite_bind_text(st, 6, usage_opt(b->model));
    kg_sqlite_bind_text(st, 7, usage_opt(b->provider));
    sqlite3_bind_int(st, 8, filter->status_min);
    sqlite3_bind_int(st, 9, filter->status_max);
    sqlite3_bind_int64(st, 10, (sqlite3_int64)limit);
    while (n < limit && (src = sqlite3_step(st)) == SQLITE_ROW) {
        usage_read_event(st, &out[n++]);
    }
    if (n == limit) {
        src = SQLITE_DONE;
    }
    kg_sqlite_reset(st);
    *count = n;
    return kg_sqlite_error(store, src, "reading usage events", diag);
}

/*
 * Retention: ?1 the cut-off, ?2 the limit. The inner select walks
 * usage_events_time from the oldest event; the delete then takes each row
 * by its id.
 */
static const char usage_sql_prune[] =
    "DELETE FROM usage_events WHERE id IN (SELECT id FROM usage_events "
    "WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)";
/* Both ends of usage_events_time: two index probes. */
static const char usage_sql_span[] =
    "SELECT (SELECT min(at_ms) FROM usage_events), "
    "(SELECT max(at_ms) FROM usage_events)";
static const char usage_sql_stored[] =
    "SELECT 1 FROM usage_events WHERE request_id = ?1";

static kg_err_t usage_prune(kg_store_t *store, int64_t before_ms, size_t limit,
                            size_t *deleted, kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    kg_err_t rc;

    *deleted = 0;
    if (limit == 0 || limit > INT32_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "bad prune limit");
    }
    /* BEGIN IMMEDIATE: wait for the write lock with the busy timeout
     * rather than fail when another writer commits first. */
    rc = kg_store_begin(store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    st = kg_sqlite_stmt(store, usage_sql_prune, diag);
    if (st == NULL) {
        rc = KG_ERR_STORE;
        goto out;
    }
    sqlite3_bind_int64(st, 1, before_ms);
    sqlite3_bind_int64(st, 2, (int64_t)limit);
    rc = kg_sqlite_exec(store, st, "deleting old usage events", diag);
    if (rc == KG_OK) {
        *deleted = (size_t)sqlite3_changes(kg_sqlite_db(store));
        rc = kg_store_commit(store, diag);
    }
out:
    if (rc != KG_OK) {
        kg_store_rollback(store);
        *deleted = 0;
    }
    return rc;
}

static kg_err_t usage_span(kg_store_t *store, int64_t *oldest_ms,
                           int64_t *newest_ms, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, usage_sql_span, diag);
    int src;

    *oldest_ms = -1;
    *newest_ms = -1;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *oldest_ms = kg_sqlite_col_opt_int(st, 0);
        *newest_ms = kg_sqlite_col_opt_int(st, 1);
    }
    kg_sqlite_reset(st);
    return kg_sqlite_error(store, src, "reading the usage events' span", diag);
}

static kg_err_t usage_stored(kg_store_t *store, const char *request_id,
                             bool *stored, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, usage_sql_stored, diag);
    int src;

    *stored = false;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_text(st, 1, request_id, -1, SQLITE_STATIC);
    src = sqlite3_step(st);
    *stored = src == SQLITE_ROW;
    kg_sqlite_reset(st);
    return kg_sqlite_error(store, src, "looking up a usage event", diag);
}

const kg_store_usage_ops_t kg_sqlite_usage_ops = {
    .events_insert = usage_events_insert,
    .charge_key = usage_charge_key,
    .charge_credits = usage_charge_credits,
    .set_progress = usage_set_progress,
    .rollup_add = usage_rollup_add,
    .rollup_scan = usage_rollup_scan,
    .events_page = usage_events_page,
    .prune = usage_prune,
    .span = usage_span,
    .stored = usage_stored,
};
