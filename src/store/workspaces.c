/* The store's workspace operations, forwarded to the handle's backend. */
#include "keygate/store_workspaces.h"
#include "store/backend.h"

#include <stdlib.h>
#include <string.h>

/* The backend's table, or NULL when it has none. */
#define WS_OPS(s) ((s)->be->workspaces)
#define WS_WHAT   "workspaces"

kg_err_t kg_store_workspace_insert(kg_store_t *store,
                                   const kg_store_workspace_t *w,
                                   kg_diag_t *diag)
{
    return WS_OPS(store) ? WS_OPS(store)->insert(store, w, diag)
                         : kg_store_unsupported(store, WS_WHAT, diag);
}

kg_err_t kg_store_workspace_get(kg_store_t *store, const char *ref,
                                kg_store_workspace_t *out, kg_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    return WS_OPS(store) ? WS_OPS(store)->get(store, ref, out, diag)
                         : kg_store_unsupported(store, WS_WHAT, diag);
}

kg_err_t kg_store_workspace_list(kg_store_t *store, kg_store_workspace_t **out,
                                 size_t *count, kg_diag_t *diag)
{
    *out = NULL;
    *count = 0;
    return WS_OPS(store) ? WS_OPS(store)->list(store, out, count, diag)
                         : kg_store_unsupported(store, WS_WHAT, diag);
}

kg_err_t kg_store_workspace_update(kg_store_t *store, const char *id,
                                   const char *name, const char *mode,
                                   const char *rules, int64_t now,
                                   kg_diag_t *diag)
{
    return WS_OPS(store)
               ? WS_OPS(store)->update(store, id, name, mode, rules, now, diag)
               : kg_store_unsupported(store, WS_WHAT, diag);
}

kg_err_t kg_store_workspace_credit(kg_store_t *store, const char *id,
                                   int64_t delta, int64_t max, int64_t now,
                                   int64_t *before, kg_diag_t *diag)
{
    *before = 0;
    return WS_OPS(store)
               ? WS_OPS(store)->credit(store, id, delta, max, now, before, diag)
               : kg_store_unsupported(store, WS_WHAT, diag);
}

void kg_store_workspace_clear(kg_store_workspace_t *w)
{
    if (w != NULL) {
        free(w->rules);
        w->rules = NULL;
    }
}

void kg_store_workspace_list_free(kg_store_workspace_t **list, size_t count)
{
    if (list == NULL || *list == NULL) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        kg_store_workspace_clear(&(*list)[i]);
    }
    free(*list);
    *list = NULL;
}
