/* The store's shared rate windows, forwarded to the handle's backend. */
#include "keygate/store_rates.h"
#include "store/backend.h"

/* The backend's table, or NULL when it has none. */
#define RATES_OPS(s) ((s)->be->rates)
#define RATES_WHAT   "shared rate limits"

bool kg_store_rates_shared(const kg_store_t *store)
{
    return RATES_OPS(store) != NULL;
}

kg_err_t kg_store_rates_publish(kg_store_t *store,
                                const kg_ratelimit_share_t *own, size_t n,
                                kg_diag_t *diag)
{
    return RATES_OPS(store) ? RATES_OPS(store)->publish(store, own, n, diag)
                            : kg_store_unsupported(store, RATES_WHAT, diag);
}

kg_err_t kg_store_rates_others(kg_store_t *store, int64_t window_start,
                               kg_ratelimit_share_t *rows, size_t n,
                               kg_diag_t *diag)
{
    for (size_t i = 0; i < n; i++) {
        rows[i].window_start = window_start;
        rows[i].req_prev = 0;
        rows[i].req_cur = 0;
        rows[i].tok_prev = 0;
        rows[i].tok_cur = 0;
        rows[i].instances = 0;
    }
    return RATES_OPS(store)
               ? RATES_OPS(store)->others(store, window_start, rows, n, diag)
               : kg_store_unsupported(store, RATES_WHAT, diag);
}

kg_err_t kg_store_rates_live(kg_store_t *store, int64_t within_s, int64_t *n,
                             kg_diag_t *diag)
{
    *n = 0;
    return RATES_OPS(store) ? RATES_OPS(store)->live(store, within_s, n, diag)
                            : kg_store_unsupported(store, RATES_WHAT, diag);
}

kg_err_t kg_store_rates_prune(kg_store_t *store, int64_t older_than_s,
                              int64_t *deleted, kg_diag_t *diag)
{
    if (deleted != NULL) {
        *deleted = 0;
    }
    return RATES_OPS(store)
               ? RATES_OPS(store)->prune(store, older_than_s, deleted, diag)
               : kg_store_unsupported(store, RATES_WHAT, diag);
}
