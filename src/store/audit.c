/* The store's audit operations, forwarded to the handle's backend. */
#include "keygate/store_audit.h"
#include "store/backend.h"

/* The backend's table, or NULL when it has none. */
#define AUDIT_OPS(s) ((s)->be->audit)
#define AUDIT_WHAT   "the audit trail"

kg_err_t kg_store_audit_insert(kg_store_t *store, int64_t at, const char *actor,
                               const char *action, const char *object_type,
                               const char *object_id, const char *detail,
                               kg_diag_t *diag)
{
    return AUDIT_OPS(store)
               ? AUDIT_OPS(store)->insert(store, at, actor, action, object_type,
                                          object_id, detail, diag)
               : kg_store_unsupported(store, AUDIT_WHAT, diag);
}

kg_err_t kg_store_audit_page(kg_store_t *store, const kg_audit_filter_t *filter,
                             int64_t before_id, size_t limit,
                             kg_audit_event_t **events, size_t *count,
                             kg_diag_t *diag)
{
    *events = NULL;
    *count = 0;
    return AUDIT_OPS(store) ? AUDIT_OPS(store)->page(store, filter, before_id,
                                                     limit, events, count, diag)
                            : kg_store_unsupported(store, AUDIT_WHAT, diag);
}
