/* The store's API key operations, forwarded to the handle's backend. */
#include "keygate/store_keys.h"
#include "store/backend.h"

/* The backend's table, or NULL when it has none. */
#define KEY_OPS(s) ((s)->be->keys)
#define KEY_WHAT   "API keys"

kg_err_t kg_store_key_get(kg_store_t *store, const char *id, kg_key_t *out,
                          kg_diag_t *diag)
{
    return KEY_OPS(store) ? KEY_OPS(store)->get(store, id, out, diag)
                          : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_list(kg_store_t *store, const kg_key_filter_t *filter,
                           kg_key_t **out, size_t *count, kg_diag_t *diag)
{
    *out = NULL;
    *count = 0;
    return KEY_OPS(store)
               ? KEY_OPS(store)->list(store, filter, out, count, diag)
               : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_insert(kg_store_t *store, const kg_key_t *k,
                             kg_diag_t *diag)
{
    return KEY_OPS(store) ? KEY_OPS(store)->insert(store, k, diag)
                          : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_update(kg_store_t *store, const kg_key_t *k,
                             bool reset_period, int64_t now, kg_diag_t *diag)
{
    return KEY_OPS(store)
               ? KEY_OPS(store)->update(store, k, reset_period, now, diag)
               : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_set_status(kg_store_t *store, const char *id,
                                 kg_key_status_t status, int64_t now,
                                 kg_diag_t *diag)
{
    return KEY_OPS(store)
               ? KEY_OPS(store)->set_status(store, id, status, now, diag)
               : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_set_last4(kg_store_t *store, const char *id,
                                const char *last4, int64_t now, kg_diag_t *diag)
{
    return KEY_OPS(store)
               ? KEY_OPS(store)->set_last4(store, id, last4, now, diag)
               : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_delete(kg_store_t *store, const char *id, kg_diag_t *diag)
{
    return KEY_OPS(store) ? KEY_OPS(store)->delete (store, id, diag)
                          : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_expired(kg_store_t *store, int64_t now,
                              char (*ids)[KG_TOKEN_ID_LEN + 1], size_t max,
                              size_t *n, kg_diag_t *diag)
{
    *n = 0;
    return KEY_OPS(store)
               ? KEY_OPS(store)->expired(store, now, ids, max, n, diag)
               : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_touch(kg_store_t *store, const kg_key_seen_t *seen,
                            size_t n, kg_diag_t *diag)
{
    return KEY_OPS(store) ? KEY_OPS(store)->touch(store, seen, n, diag)
                          : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_secret_add(kg_store_t *store, const char *id,
                                 const unsigned char hash[KG_KEYHASH_LEN],
                                 int64_t created_at, kg_diag_t *diag)
{
    return KEY_OPS(store)
               ? KEY_OPS(store)->secret_add(store, id, hash, created_at, diag)
               : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_secret_grace(kg_store_t *store, const char *id,
                                   int64_t until, kg_diag_t *diag)
{
    return KEY_OPS(store) ? KEY_OPS(store)->secret_grace(store, id, until, diag)
                          : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_secret_drop(kg_store_t *store, const char *id,
                                  kg_diag_t *diag)
{
    return KEY_OPS(store) ? KEY_OPS(store)->secret_drop(store, id, diag)
                          : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_secret_drop_stale(kg_store_t *store, int64_t now,
                                        kg_diag_t *diag)
{
    return KEY_OPS(store) ? KEY_OPS(store)->secret_drop_stale(store, now, diag)
                          : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_secret_each(kg_store_t *store, const char *id,
                                  int64_t now, kg_store_key_secret_fn fn,
                                  void *arg, kg_diag_t *diag)
{
    return KEY_OPS(store)
               ? KEY_OPS(store)->secret_each(store, id, now, fn, arg, diag)
               : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_revision(kg_store_t *store, int64_t *rev, kg_diag_t *diag)
{
    return KEY_OPS(store) ? KEY_OPS(store)->revision(store, rev, diag)
                          : kg_store_unsupported(store, KEY_WHAT, diag);
}

kg_err_t kg_store_key_load_view(kg_store_t *store, const char *id, int64_t *rev,
                                kg_key_view_t *view, bool *found,
                                kg_store_key_secret_t *secrets, size_t max,
                                size_t *n, kg_diag_t *diag)
{
    *found = false;
    *n = 0;
    return KEY_OPS(store)
               ? KEY_OPS(store)->load_view(store, id, rev, view, found, secrets,
                                           max, n, diag)
               : kg_store_unsupported(store, KEY_WHAT, diag);
}
