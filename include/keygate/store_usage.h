/* The store's usage rows: events, hourly rollups, charges, retention. */
#ifndef KEYGATE_STORE_USAGE_H
#define KEYGATE_STORE_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"
#include "keygate/token.h"
#include "keygate/usage_sums.h"

/*
 * Backend-neutral: what the usage writer and the usage queries ask of the
 * store. The SQLite implementation is src/store/sqlite/usage.c; its
 * statements and index choices are in docs/store.md.
 */

/* Bounds of the stored strings (those of the usage writer's events). */
#define KG_USAGE_REQUEST_ID_MAX 39
#define KG_USAGE_OPERATION_MAX  15
#define KG_USAGE_MODEL_MAX      256
#define KG_USAGE_PROVIDER_MAX   64
#define KG_USAGE_MODE_MAX       15
#define KG_USAGE_CLIENT_IP_MAX  45
#define KG_USAGE_ERROR_CODE_MAX 47

/* The largest time the queries take: 10000-01-01T00:00:00Z. */
#define KG_USAGE_TIME_MAX INT64_C(253402300800)

/*
 * One hourly rollup row: the events of one key and model, through one
 * provider, in one hour. The strings are borrowed: valid during the call
 * that hands the row out, or the one it is passed to.
 */
typedef struct kg_usage_rollup {
    int64_t hour; /* unix seconds, a multiple of 3600 */
    const char *key_id;
    const char *workspace_id; /* the key's; keys never change workspace */
    const char *model;
    const char *provider;
    kg_usage_sums_t sums;
} kg_usage_rollup_t;

/*
 * What a usage query selects: [from, to) in unix seconds, and exact
 * matches on each string that is not "" ("" = any).
 */
typedef struct kg_usage_filter {
    int64_t from;
    int64_t to;
    char key_id[KG_TOKEN_ID_LEN + 1];
    char workspace_id[KG_TOKEN_ID_LEN + 1];
    char model[KG_USAGE_MODEL_MAX + 1];
    char provider[KG_USAGE_PROVIDER_MAX + 1];
} kg_usage_filter_t;

/* Events: the filter, and status_min <= status <= status_max. */
typedef struct kg_usage_events_filter {
    kg_usage_filter_t base;
    int status_min; /* 0 .. 999 */
    int status_max;
} kg_usage_events_filter_t;

/* One stored usage event (a usage_events row). */
typedef struct kg_usage_record {
    int64_t id; /* the store's row id: ties of at_ms are ordered by it */
    char request_id[KG_USAGE_REQUEST_ID_MAX + 1];
    char key_id[KG_TOKEN_ID_LEN + 1];
    char workspace_id[KG_TOKEN_ID_LEN + 1];
    int64_t at_ms;
    char operation[KG_USAGE_OPERATION_MAX + 1];
    char model[KG_USAGE_MODEL_MAX + 1];
    char provider[KG_USAGE_PROVIDER_MAX + 1];
    char mode[KG_USAGE_MODE_MAX + 1];
    int status;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t cost; /* micro-USD */
    int64_t latency_ms;
    int64_t ttft_ms; /* -1: none */
    bool streamed;
    char client_ip[KG_USAGE_CLIENT_IP_MAX + 1];
    char error_code[KG_USAGE_ERROR_CODE_MAX + 1]; /* "": none */
} kg_usage_record_t;

/*
 * Insert n (<= KG_STORE_USAGE_BATCH_MAX) usage events in order, inside
 * the caller's transaction; each record's id is ignored (the store assigns
 * it). verdicts[i] gets the outcome of events[i]: KG_OK (stored),
 * KG_ERR_EXISTS (an event with its request_id is already stored; nothing
 * written), KG_ERR_NOT_FOUND (its key does not exist) or KG_ERR_INVAL (the
 * store refused its values); a refused event undoes only itself. Returns
 * KG_OK when every event has its verdict, else a store error that fails
 * the whole batch (diag; the caller rolls back, the verdicts mean nothing).
 */
#define KG_STORE_USAGE_BATCH_MAX 512
kg_err_t kg_store_usage_events_insert(kg_store_t *store,
                                      const kg_usage_record_t *events, size_t n,
                                      kg_err_t *verdicts,
                                      kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Charge cost (micro-USD) to key_id inside the caller's transaction: its
 * lifetime usage grows by cost and its last_used_at becomes at least
 * last_used (unix seconds). period_start is the start of the budget period
 * the charge falls in (-1: none): for a key with a period, a charge for its
 * current period adds to its period usage, one for a newer period starts
 * that period with cost, one for an older period counts toward the
 * lifetime usage only. Two charges for the same period_start give the same
 * row as their sum charged once. Changes nothing that invalidates cached
 * keys. Returns KG_OK (also when no key has the id) or a store error.
 */
kg_err_t kg_store_usage_charge_key(kg_store_t *store, const char *key_id,
                                   int64_t cost, int64_t last_used,
                                   int64_t period_start,
                                   kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Credits mode: take cost (micro-USD) off workspace_id's credits balance
 * inside the caller's transaction. Returns KG_OK (also when no workspace
 * has the id) or a store error (diag).
 */
kg_err_t kg_store_usage_charge_credits(kg_store_t *store,
                                       const char *workspace_id, int64_t cost,
                                       kg_diag_t *diag) KG_MUST_CHECK;

/*
 * A background writer's hook into long work on its handle: fn(ud) is
 * called now and then while a statement runs (there it may give up the
 * CPU); it must not use the store. The struct is borrowed until the hook
 * is cleared (NULL) or the handle closed.
 */
typedef struct kg_store_progress {
    void (*fn)(void *ud);
    void *ud;
} kg_store_progress_t;

/*
 * Install (or, with NULL, clear) the hook on this handle. A backend that
 * cannot call it ignores it (PostgreSQL: its statements wait for the
 * server, off the CPU): nothing to check.
 */
void kg_store_usage_set_progress(kg_store_t *store,
                                 const kg_store_progress_t *progress);

/*
 * Add row's sums to its stored rollup row (created when missing), inside
 * the caller's transaction: counts add up, latency_ms_max takes the
 * maximum; workspace_id is set when the row is made. Returns KG_OK,
 * KG_ERR_NOT_FOUND when the key does not exist, or a store error (diag).
 */
kg_err_t kg_store_usage_rollup_add(kg_store_t *store,
                                   const kg_usage_rollup_t *row,
                                   kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Called for each rollup row, in order of hour (rows of one hour in no
 * particular order). Returns true to go on, false to stop the scan.
 */
typedef bool (*kg_store_rollup_fn)(void *ud, const kg_usage_rollup_t *row);

/*
 * Hand every rollup row the filter selects to fn: hours in [from, to)
 * (both multiples of 3600, from < to). SQLite reads them in one snapshot;
 * PostgreSQL in queries of up to 1024 rows, each its own snapshot outside
 * a transaction (a row is still handed out once). Returns KG_OK (also when
 * fn stopped the scan), KG_ERR_INVAL for unaligned bounds, or a store
 * error (diag).
 */
kg_err_t kg_store_usage_rollup_scan(kg_store_t *store,
                                    const kg_usage_filter_t *filter,
                                    kg_store_rollup_fn fn, void *ud,
                                    kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Up to limit events the filter selects (at_ms in [from × 1000, to ×
 * 1000)), newest first, ordered by (at_ms, id) descending and starting
 * strictly below the position (before_at_ms, before_id); pass INT64_MAX
 * for both to start at the newest. out has room for limit records (limit
 * >= 1); *count gets how many were written. Returns KG_OK or a store
 * error (diag).
 */
kg_err_t kg_store_usage_events_page(kg_store_t *store,
                                    const kg_usage_events_filter_t *filter,
                                    int64_t before_at_ms, int64_t before_id,
                                    size_t limit, kg_usage_record_t *out,
                                    size_t *count,
                                    kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Delete up to limit (>= 1) usage events with at_ms < before_ms, oldest
 * first, in one transaction ([usage] retention). The rollup rows, which
 * hold their sums, stay. *deleted gets how many went. Returns KG_OK or a
 * store error (diag; nothing deleted).
 */
kg_err_t kg_store_usage_prune(kg_store_t *store, int64_t before_ms,
                              size_t limit, size_t *deleted,
                              kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The at_ms of the oldest and the newest usage event into *oldest_ms and
 * *newest_ms (-1 for both when there is none). KG_OK or a store error.
 */
kg_err_t kg_store_usage_span(kg_store_t *store, int64_t *oldest_ms,
                             int64_t *newest_ms, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Whether an event with request_id is stored (*stored). KG_OK or a store
 * error (diag).
 */
kg_err_t kg_store_usage_stored(kg_store_t *store, const char *request_id,
                               bool *stored, kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_USAGE_H */
