/* The store's budget leases, forwarded to the handle's backend. */
#include "keygate/store_leases.h"
#include "store/backend.h"

/* The backend's table, or NULL when it has none (one gateway per store). */
#define LEASE_OPS(s) ((s)->be->leases)
#define LEASE_WHAT   "budget leases"

bool kg_store_leases_shared(const kg_store_t *store)
{
    return LEASE_OPS(store) != NULL;
}

kg_err_t kg_store_leases_claim(kg_store_t *store,
                               const kg_store_lease_claim_t *claim,
                               int64_t *granted, kg_diag_t *diag)
{
    *granted = 0;
    if (claim->id == NULL || claim->id[0] == '\0' || claim->need < 0 ||
        claim->want < claim->need || claim->ttl_ms <= 0) {
        return KG_ERR_INVAL;
    }
    return LEASE_OPS(store)
               ? LEASE_OPS(store)->claim(store, claim, granted, diag)
               : kg_store_unsupported(store, LEASE_WHAT, diag);
}

kg_err_t kg_store_leases_return(kg_store_t *store, kg_store_lease_scope_t scope,
                                const char *id, int64_t amount, kg_diag_t *diag)
{
    if (amount < 0) {
        return KG_ERR_INVAL;
    }
    return LEASE_OPS(store)
               ? LEASE_OPS(store)->give_back(store, scope, id, amount, diag)
               : kg_store_unsupported(store, LEASE_WHAT, diag);
}

kg_err_t kg_store_leases_renew(kg_store_t *store, int64_t ttl_ms,
                               kg_diag_t *diag)
{
    if (ttl_ms <= 0) {
        return KG_ERR_INVAL;
    }
    return LEASE_OPS(store) ? LEASE_OPS(store)->renew(store, ttl_ms, diag)
                            : kg_store_unsupported(store, LEASE_WHAT, diag);
}

kg_err_t kg_store_leases_outstanding(kg_store_t *store,
                                     kg_store_lease_scope_t scope,
                                     const char *id, int64_t *outstanding,
                                     kg_diag_t *diag)
{
    *outstanding = 0;
    return LEASE_OPS(store) ? LEASE_OPS(store)->outstanding(store, scope, id,
                                                            outstanding, diag)
                            : kg_store_unsupported(store, LEASE_WHAT, diag);
}
