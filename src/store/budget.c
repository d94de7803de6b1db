/* The store's policy operations, forwarded to the handle's backend. */
#include "keygate/store_budget.h"
#include "store/backend.h"

#include <stdlib.h>
#include <string.h>

/* The backend's table, or NULL when it has none. */
#define BUD_OPS(s) ((s)->be->budget)
#define BUD_WHAT   "budgets"

kg_err_t kg_store_budget_revision(kg_store_t *store, int64_t *rev,
                                  kg_diag_t *diag)
{
    *rev = -1;
    return BUD_OPS(store) ? BUD_OPS(store)->revision(store, rev, diag)
                          : kg_store_unsupported(store, BUD_WHAT, diag);
}

kg_err_t kg_store_budget_key_get(kg_store_t *store, const char *key_id,
                                 kg_store_budget_key_t *out, kg_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    return BUD_OPS(store) ? BUD_OPS(store)->key_get(store, key_id, out, diag)
                          : kg_store_unsupported(store, BUD_WHAT, diag);
}

kg_err_t kg_store_budget_workspace_get(kg_store_t *store, const char *ws_id,
                                       kg_store_budget_workspace_t *out,
                                       kg_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    return BUD_OPS(store)
               ? BUD_OPS(store)->workspace_get(store, ws_id, out, diag)
               : kg_store_unsupported(store, BUD_WHAT, diag);
}

kg_err_t kg_store_budget_reservations_clear(kg_store_t *store, kg_diag_t *diag)
{
    return BUD_OPS(store) ? BUD_OPS(store)->reservations_clear(store, diag)
                          : kg_store_unsupported(store, BUD_WHAT, diag);
}

kg_err_t kg_store_budget_reservation_set(kg_store_t *store, const char *key_id,
                                         int64_t amount, kg_diag_t *diag)
{
    return BUD_OPS(store)
               ? BUD_OPS(store)->reservation_set(store, key_id, amount, diag)
               : kg_store_unsupported(store, BUD_WHAT, diag);
}

void kg_store_budget_key_clear(kg_store_budget_key_t *k)
{
    if (k != NULL) {
        free(k->rules);
        k->rules = NULL;
    }
}

void kg_store_budget_workspace_clear(kg_store_budget_workspace_t *w)
{
    if (w != NULL) {
        free(w->rules);
        w->rules = NULL;
    }
}
