/* Usage queries: totals and time series from the rollup, event history. */
#ifndef KEYGATE_USAGE_QUERY_H
#define KEYGATE_USAGE_QUERY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/query.h"
#include "keygate/store.h"
#include "keygate/store_usage.h"
#include "keygate/usage_sums.h"
#include "keygate/validate.h"

/*
 * The library behind `keygate usage`, `keygate usage events` and the admin
 * API's usage routes: one code path from name/value parameters (an HTTP
 * query string, the CLI's options) to JSON and CSV. No SQL here: the store
 * layer (keygate/store_usage.h) reads.
 *
 * Parameters (all optional; each at most once; see kg_query_check):
 *   from, to    time range [from, to): RFC 3339, a date, "now", or a
 *               duration back from now ("24h", "30d")
 *   by          bucket: hour | day | month (calendar months, UTC)
 *   group       none | key | model | provider | workspace
 *   key         a key id, or its access key "<prefix>_<id>"
 *   workspace   a workspace name or id
 *   model, provider   exact names
 * and for events only (not by or group):
 *   status      "2xx".."5xx" (any Nxx) or one status 0-999
 *   errors      true | false: only events with status >= 400
 *   limit       1..KG_USAGE_EVENTS_LIMIT_MAX (default
 *               KG_USAGE_EVENTS_LIMIT_DEFAULT)
 *   cursor      the nextCursor of the previous page
 * A bad one gives KG_ERR_INVAL with a diag naming it (HTTP 400).
 */

/* The bounds of a series query; above them the query is refused. */
#define KG_USAGE_BUCKETS_MAX                                                 \
    2400                          /* buckets in the range (100 days by hour) \
                                   */
#define KG_USAGE_GROUPS_MAX 500   /* groups with usage in the range */
#define KG_USAGE_POINTS_MAX 50000 /* groups × buckets */

#define KG_USAGE_EVENTS_LIMIT_MAX     1000
#define KG_USAGE_EVENTS_LIMIT_DEFAULT 100

/* Room for any CSV row these functions write (with CRLF and the NUL). */
#define KG_USAGE_CSV_ROW_MAX 2048

typedef enum kg_usage_bucket {
    KG_USAGE_BY_HOUR,
    KG_USAGE_BY_DAY,
    KG_USAGE_BY_MONTH,
} kg_usage_bucket_t;

typedef enum kg_usage_group {
    KG_USAGE_GROUP_NONE,
    KG_USAGE_GROUP_KEY,
    KG_USAGE_GROUP_MODEL,
    KG_USAGE_GROUP_PROVIDER,
    KG_USAGE_GROUP_WORKSPACE,
} kg_usage_group_t;

/* "hour", "day", "month" / "none", "key", "model", "provider", ... */
const char *kg_usage_bucket_name(kg_usage_bucket_t b);
const char *kg_usage_group_name(kg_usage_group_t g);

/* A parsed series query. */
typedef struct kg_usage_query {
    /*
     * from and to aligned to the bucket (from down to the start of its
     * bucket, to up to the end of its bucket); filter.workspace_id is ""
     * until kg_usage_query_run resolves workspace.
     */
    kg_usage_filter_t filter;
    char workspace[KG_NAME_MAX + 1]; /* name or id as given; "" = any */
    kg_usage_bucket_t bucket;
    kg_usage_group_t group;
    size_t nbuckets;
} kg_usage_query_t;

/*
 * Parse and validate a series query from n name/value pairs (above), with
 * now (unix seconds) for relative times and defaults: by day; to now; from
 * 24 hours, 30 days or 365 days before to for hour, day, month buckets.
 * Refuses from >= to and more than KG_USAGE_BUCKETS_MAX buckets. Returns
 * KG_OK with *q filled, or KG_ERR_INVAL with diag naming the parameter.
 */
kg_err_t kg_usage_query_parse(const kg_query_param_t *params, size_t n,
                              int64_t now, kg_usage_query_t *q,
                              kg_diag_t *diag) KG_MUST_CHECK;

/* One group's time series: totals, and sums per bucket (zero-filled). */
typedef struct kg_usage_series {
    char name[KG_USAGE_MODEL_MAX + 1]; /* the group's value; "" for none */
    kg_usage_sums_t totals;
    kg_usage_sums_t *buckets; /* nbuckets, owned */
} kg_usage_series_t;

/* The answer to a series query; read-only for callers. */
typedef struct kg_usage_result {
    kg_usage_query_t query; /* as run: filter.workspace_id resolved */
    size_t nbuckets;
    int64_t *starts; /* nbuckets + 1: bucket i is [starts[i], starts[i+1]) */
    kg_usage_sums_t totals;
    size_t ngroups;
    /*
     * By total cost, then requests, descending, then name. Group none: one
     * series, also when nothing matched; otherwise one per value with
     * usage in the range (none when nothing matched).
     */
    kg_usage_series_t *groups;
} kg_usage_result_t;

/*
 * Run q against the store: resolve workspace (KG_ERR_NOT_FOUND when no
 * workspace has that name or id), read the rollup rows of the range and
 * fold them into per-bucket sums per group. Returns KG_OK with *out new
 * (kg_usage_result_free), KG_ERR_INVAL (diag) when more than
 * KG_USAGE_GROUPS_MAX groups or KG_USAGE_POINTS_MAX groups × buckets would
 * be needed, KG_ERR_NOMEM, or a store error; *out is NULL on error.
 */
kg_err_t kg_usage_query_run(kg_store_t *store, const kg_usage_query_t *q,
                            kg_usage_result_t **out,
                            kg_diag_t *diag) KG_MUST_CHECK;

void kg_usage_result_free(kg_usage_result_t **r);

/*
 * The result as JSON (new reference; NULL when out of memory):
 *
 *   {"from": TIME, "to": TIME, "bucket": "day", "groupBy": "model",
 *    "filter": {"keyId": S|null, "workspaceId": S|null, "model": S|null,
 *               "provider": S|null},
 *    "totals": STATS,
 *    "groups": [{"group": S|null, "totals": STATS,
 *                "series": [{"start": TIME, ...STATS}, ...]}, ...]}
 *
 *   STATS = {"requests": N, "errors": N, "promptTokens": N,
 *            "completionTokens": N, "cachedTokens": N, "totalTokens": N,
 *            "cost": "0.00", "streamed": N, "latencyMsAvg": N|null,
 *            "latencyMsP50": N|null, "latencyMsP95": N|null,
 *            "latencyMsMax": N|null, "ttftMsAvg": N|null}
 *
 * TIME is RFC 3339 UTC; cost is USD as a decimal string (kg_money_format);
 * totalTokens is prompt + completion; latencies are whole milliseconds,
 * null without requests; p50/p95 are histogram estimates
 * (kg_usage_sums_quantile); "group" is null for groupBy "none".
 */
json_t *kg_usage_result_to_json(const kg_usage_result_t *r);

/*
 * CSV of a result, one row per group and bucket (zero-filled), with the
 * columns group, start and STATS' (empty for null). Each writes one line
 * with CRLF into buf (KG_USAGE_CSV_ROW_MAX is enough) and returns its
 * length, or 0 when it does not fit.
 */
size_t kg_usage_result_csv_header(char *buf, size_t len);
size_t kg_usage_result_csv_row(const kg_usage_result_t *r, size_t group,
                               size_t bucket, char *buf, size_t len);

/* ---- usage events ------------------------------------------------------ */

/* A parsed events query. */
typedef struct kg_usage_events_query {
    kg_usage_events_filter_t filter; /* workspace_id "" until resolved */
    char workspace[KG_NAME_MAX + 1];
    size_t limit;
    char cursor[KG_QUERY_CURSOR_STRLEN]; /* "" = the first page */
} kg_usage_events_query_t;

/*
 * Parse and validate an events query (parameters above; from and to are
 * not aligned, and default to the whole history). Returns KG_OK or
 * KG_ERR_INVAL with diag naming the parameter.
 */
kg_err_t kg_usage_events_query_parse(const kg_query_param_t *params, size_t n,
                                     int64_t now, kg_usage_events_query_t *q,
                                     kg_diag_t *diag) KG_MUST_CHECK;

/*
 * One page of events, newest first: resolve workspace (KG_ERR_NOT_FOUND),
 * check the cursor against the filters (KG_ERR_INVAL, diag "cursor: ..."),
 * read up to q->limit events. *events is new (free()), NULL when none;
 * next_cursor gets the cursor of the following page, or "" when this page
 * is the last. Returns KG_OK, KG_ERR_INVAL, KG_ERR_NOT_FOUND, KG_ERR_NOMEM
 * or a store error; *events is NULL on error.
 */
kg_err_t kg_usage_events_page(kg_store_t *store,
                              const kg_usage_events_query_t *q,
                              kg_usage_record_t **events, size_t *count,
                              char next_cursor[KG_QUERY_CURSOR_STRLEN],
                              kg_diag_t *diag) KG_MUST_CHECK;

/*
 * One event as JSON (new reference, NULL when out of memory):
 *   {"requestId", "at": TIME with milliseconds, "keyId", "workspaceId",
 *    "operation", "model", "provider", "mode", "status": N,
 *    "promptTokens", "completionTokens", "cachedTokens", "totalTokens",
 *    "cost": "0.000125", "latencyMs": N, "ttftMs": N|null,
 *    "streamed": bool, "clientIp", "errorCode": S|null}
 */
json_t *kg_usage_event_to_json(const kg_usage_record_t *ev);

/* {"events": [...], "nextCursor": S|null} (new reference, or NULL). */
json_t *kg_usage_events_to_json(const kg_usage_record_t *events, size_t n,
                                const char *next_cursor);

/*
 * CSV of events: the header row names the JSON fields in the same order;
 * a row has the same values (empty for null, streamed as true/false).
 * Each writes one line with CRLF into buf (KG_USAGE_CSV_ROW_MAX is enough
 * for any event) and returns its length, or 0 when it does not fit. The
 * HTTP layer can stream an export page by page with a buffer of that size.
 */
size_t kg_usage_event_csv_header(char *buf, size_t len);
size_t kg_usage_event_csv_row(const kg_usage_record_t *ev, char *buf,
                              size_t len);

#endif /* KEYGATE_USAGE_QUERY_H */
