/* The store's workspace credential operations, forwarded to the backend. */
#include "keygate/store_credentials.h"
#include "store/backend.h"

#include <string.h>

/* The backend's table, or NULL when it has none. */
#define CRED_OPS(s) ((s)->be->credentials)
#define CRED_WHAT   "workspace credentials"

kg_err_t kg_store_credential_put(kg_store_t *store,
                                 const kg_store_credential_t *row,
                                 const kg_store_sealed_t *sealed,
                                 kg_diag_t *diag)
{
    return CRED_OPS(store) ? CRED_OPS(store)->put(store, row, sealed, diag)
                           : kg_store_unsupported(store, CRED_WHAT, diag);
}

kg_err_t kg_store_credential_get(kg_store_t *store, const char *workspace_id,
                                 const char *provider,
                                 kg_store_credential_t *out, kg_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    return CRED_OPS(store)
               ? CRED_OPS(store)->get(store, workspace_id, provider, out, diag)
               : kg_store_unsupported(store, CRED_WHAT, diag);
}

kg_err_t kg_store_credential_list(kg_store_t *store, const char *workspace_id,
                                  kg_store_credential_t **out, size_t *count,
                                  kg_diag_t *diag)
{
    *out = NULL;
    *count = 0;
    return CRED_OPS(store)
               ? CRED_OPS(store)->list(store, workspace_id, out, count, diag)
               : kg_store_unsupported(store, CRED_WHAT, diag);
}

kg_err_t kg_store_credential_delete(kg_store_t *store, const char *workspace_id,
                                    const char *provider, kg_diag_t *diag)
{
    return CRED_OPS(store)
               ? CRED_OPS(store)->remove(store, workspace_id, provider, diag)
               : kg_store_unsupported(store, CRED_WHAT, diag);
}

kg_err_t kg_store_credential_count(kg_store_t *store, int64_t *n,
                                   kg_diag_t *diag)
{
    *n = 0;
    return CRED_OPS(store) ? CRED_OPS(store)->count(store, n, diag)
                           : kg_store_unsupported(store, CRED_WHAT, diag);
}

kg_err_t kg_store_credential_sealed(kg_store_t *store, const char *workspace_id,
                                    const char *provider,
                                    kg_store_sealed_t *out, kg_diag_t *diag)
{
    out->nonce_len = 0;
    out->cipher_len = 0;
    return CRED_OPS(store) ? CRED_OPS(store)->sealed(store, workspace_id,
                                                     provider, out, diag)
                           : kg_store_unsupported(store, CRED_WHAT, diag);
}
