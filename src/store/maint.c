/* The store's operations queries (backups, counts, space), forwarded. */
#include "keygate/store_ops.h"
#include "store/backend.h"

#include <string.h>

/* The backend's table, or NULL when it has none. */
#define MAINT_OPS(s) ((s)->be->maint)
#define MAINT_WHAT   "store operations"

kg_err_t kg_store_backup_copy(kg_store_t *store, const char *dest,
                              int64_t *pages, kg_diag_t *diag)
{
    *pages = 0;
    return MAINT_OPS(store) && MAINT_OPS(store)->backup_copy
               ? MAINT_OPS(store)->backup_copy(store, dest, pages, diag)
               : kg_store_unsupported(store, "online backup", diag);
}

kg_err_t kg_store_backup_record(kg_store_t *store,
                                const kg_store_backup_info_t *info,
                                kg_diag_t *diag)
{
    return MAINT_OPS(store) ? MAINT_OPS(store)->backup_record(store, info, diag)
                            : kg_store_unsupported(store, MAINT_WHAT, diag);
}

kg_err_t kg_store_backup_last(kg_store_t *store, kg_store_backup_info_t *out,
                              bool *found, kg_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    *found = false;
    return MAINT_OPS(store)
               ? MAINT_OPS(store)->backup_last(store, out, found, diag)
               : kg_store_unsupported(store, MAINT_WHAT, diag);
}

kg_err_t kg_store_counts(kg_store_t *store, kg_store_count_t *out,
                         kg_diag_t *diag)
{
    return MAINT_OPS(store) ? MAINT_OPS(store)->counts(store, out, diag)
                            : kg_store_unsupported(store, MAINT_WHAT, diag);
}

kg_err_t kg_store_space(kg_store_t *store, kg_store_space_t *out,
                        kg_diag_t *diag)
{
    memset(out, 0, sizeof(*out));
    return MAINT_OPS(store) ? MAINT_OPS(store)->space(store, out, diag)
                            : kg_store_unsupported(store, MAINT_WHAT, diag);
}
