/* The store's usage operations, forwarded to the handle's backend. */
#include "keygate/store_usage.h"
#include "store/backend.h"

/* The backend's table, or NULL when it has none. */
#define USAGE_OPS(s) ((s)->be->usage)
#define USAGE_WHAT   "usage"

kg_err_t kg_store_usage_events_insert(kg_store_t *store,
                                      const kg_usage_record_t *events, size_t n,
                                      kg_err_t *verdicts, kg_diag_t *diag)
{
    return USAGE_OPS(store) ? USAGE_OPS(store)->events_insert(store, events, n,
                                                              verdicts, diag)
                            : kg_store_unsupported(store, USAGE_WHAT, diag);
}

kg_err_t kg_store_usage_charge_key(kg_store_t *store, const char *key_id,
                                   int64_t cost, int64_t last_used,
                                   int64_t period_start, kg_diag_t *diag)
{
    return USAGE_OPS(store)
               ? USAGE_OPS(store)->charge_key(store, key_id, cost, last_used,
                                              period_start, diag)
               : kg_store_unsupported(store, USAGE_WHAT, diag);
}

kg_err_t kg_store_usage_charge_credits(kg_store_t *store,
                                       const char *workspace_id, int64_t cost,
                                       kg_diag_t *diag)
{
    return USAGE_OPS(store) ? USAGE_OPS(store)->charge_credits(
                                  store, workspace_id, cost, diag)
                            : kg_store_unsupported(store, USAGE_WHAT, diag);
}

void kg_store_usage_set_progress(kg_store_t *store,
                                 const kg_store_progress_t *progress)
{
    if (USAGE_OPS(store) != NULL && USAGE_OPS(store)->set_progress != NULL) {
        USAGE_OPS(store)->set_progress(store, progress);
    }
}

kg_err_t kg_store_usage_rollup_add(kg_store_t *store,
                                   const kg_usage_rollup_t *row,
                                   kg_diag_t *diag)
{
    return USAGE_OPS(store) ? USAGE_OPS(store)->rollup_add(store, row, diag)
                            : kg_store_unsupported(store, USAGE_WHAT, diag);
}

kg_err_t kg_store_usage_rollup_scan(kg_store_t *store,
                                    const kg_usage_filter_t *filter,
                                    kg_store_rollup_fn fn, void *ud,
                                    kg_diag_t *diag)
{
    return USAGE_OPS(store)
               ? USAGE_OPS(store)->rollup_scan(store, filter, fn, ud, diag)
               : kg_store_unsupported(store, USAGE_WHAT, diag);
}

kg_err_t kg_store_usage_events_page(kg_store_t *store,
                                    const kg_usage_events_filter_t *filter,
                                    int64_t before_at_ms, int64_t before_id,
                                    size_t limit, kg_usage_record_t *out,
                                    size_t *count, kg_diag_t *diag)
{
    *count = 0;
    return USAGE_OPS(store)
               ? USAGE_OPS(store)->events_page(store, filter, before_at_ms,
                                               before_id, limit, out, count,
                                               diag)
               : kg_store_unsupported(store, USAGE_WHAT, diag);
}

kg_err_t kg_store_usage_prune(kg_store_t *store, int64_t before_ms,
                              size_t limit, size_t *deleted, kg_diag_t *diag)
{
    *deleted = 0;
    return USAGE_OPS(store)
               ? USAGE_OPS(store)->prune(store, before_ms, limit, deleted, diag)
               : kg_store_unsupported(store, USAGE_WHAT, diag);
}

kg_err_t kg_store_usage_span(kg_store_t *store, int64_t *oldest_ms,
                             int64_t *newest_ms, kg_diag_t *diag)
{
    *oldest_ms = -1;
    *newest_ms = -1;
    return USAGE_OPS(store)
               ? USAGE_OPS(store)->span(store, oldest_ms, newest_ms, diag)
               : kg_store_unsupported(store, USAGE_WHAT, diag);
}

kg_err_t kg_store_usage_stored(kg_store_t *store, const char *request_id,
                               bool *stored, kg_diag_t *diag)
{
    *stored = false;
    return USAGE_OPS(store)
               ? USAGE_OPS(store)->stored(store, request_id, stored, diag)
               : kg_store_unsupported(store, USAGE_WHAT, diag);
}
