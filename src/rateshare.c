/* Rate limits shared by the gateway instances on one store. */
#include "keygate/rateshare.h"

#include <stdlib.h>

#include "keygate/store_rates.h"

kg_err_t kg_rateshare_tick(kg_store_t *store, kg_ratelimit_t *rl,
                           int64_t now_ms, kg_diag_t *diag)
{
    kg_ratelimit_share_t *rows = NULL;
    size_t max = kg_ratelimit_key_count(rl);
    size_t n = 0;
    int64_t live = 0;
    /* The window of now_ms, to which the others' counts are aligned. */
    int64_t window = now_ms - now_ms % KG_RATELIMIT_WINDOW_MS;
    kg_err_t rc = KG_OK;

    if (!kg_store_rates_shared(store)) {
        goto out;
    }
    max = max < KG_RATESHARE_MAX_KEYS ? max : KG_RATESHARE_MAX_KEYS;
    if (max > 0) {
        rows = calloc(max, sizeof(*rows));
        if (rows == NULL) {
            rc = KG_ERR_NOMEM;
            goto out;
        }
        kg_ratelimit_export(rl, now_ms, rows, max, &n);
    }
    /* With no key to share it still tells the others it is there. */
    rc = kg_store_rates_publish(store, rows, n, diag);
    if (rc == KG_OK) {
        rc = kg_store_rates_live(store, KG_RATESHARE_LIVE_S, &live, diag);
    }
    if (rc == KG_OK) {
        rc = kg_store_rates_others(store, window, rows, n, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    kg_ratelimit_import(rl, rows, n, live, now_ms);
out:
    free(rows);
    return rc;
}

kg_err_t kg_rateshare_prune(kg_store_t *store, int64_t now_ms, kg_diag_t *diag)
{
    kg_err_t rc = KG_OK;

    if (kg_store_rates_shared(store) &&
        now_ms % KG_RATESHARE_PRUNE_EVERY_MS < KG_RATESHARE_PRUNE_SLOT_MS) {
        rc = kg_store_rates_prune(store, KG_RATESHARE_KEEP_S, NULL, diag);
    }
    return rc;
}
