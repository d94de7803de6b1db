/* The store's admin-token operations, forwarded to the handle's backend. */
#include "keygate/store_admin_tokens.h"
#include "store/backend.h"

/* The backend's table, or NULL when it has none. */
#define ADM_OPS(s) ((s)->be->admin_tokens)
#define ADM_WHAT   "admin tokens"

kg_err_t kg_store_admin_token_insert(kg_store_t *store,
                                     const kg_store_admin_token_t *t,
                                     kg_diag_t *diag)
{
    return ADM_OPS(store) ? ADM_OPS(store)->insert(store, t, diag)
                          : kg_store_unsupported(store, ADM_WHAT, diag);
}

kg_err_t kg_store_admin_token_get(kg_store_t *store, const char *id,
                                  kg_store_admin_token_t *out, kg_diag_t *diag)
{
    return ADM_OPS(store) ? ADM_OPS(store)->get(store, id, out, diag)
                          : kg_store_unsupported(store, ADM_WHAT, diag);
}

kg_err_t kg_store_admin_token_list(kg_store_t *store, bool include_revoked,
                                   kg_store_admin_token_t **out, size_t *count,
                                   kg_diag_t *diag)
{
    *out = NULL;
    *count = 0;
    return ADM_OPS(store)
               ? ADM_OPS(store)->list(store, include_revoked, out, count, diag)
               : kg_store_unsupported(store, ADM_WHAT, diag);
}

kg_err_t kg_store_admin_token_revoke(kg_store_t *store, const char *id,
                                     int64_t at, kg_diag_t *diag)
{
    return ADM_OPS(store) ? ADM_OPS(store)->revoke(store, id, at, diag)
                          : kg_store_unsupported(store, ADM_WHAT, diag);
}

kg_err_t kg_store_admin_token_touch(kg_store_t *store, const char *id,
                                    int64_t at, int64_t min_gap,
                                    kg_diag_t *diag)
{
    return ADM_OPS(store) ? ADM_OPS(store)->touch(store, id, at, min_gap, diag)
                          : kg_store_unsupported(store, ADM_WHAT, diag);
}
