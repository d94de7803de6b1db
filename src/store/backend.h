/* What a store backend provides: the handle's base and its table of operations.
 */
#ifndef KEYGATE_STORE_BACKEND_H
#define KEYGATE_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"
#include "keygate/store_admin_tokens.h"
#include "keygate/store_audit.h"
#include "keygate/store_ops.h"
#include "keygate/store_usage.h"

/*
 * The store is one interface with one backend per database (docs/
 * architecture.md, "The store"): the modules above it call the
 * kg_store_<entity>_<op>() functions of include/keygate/store*.h, which
 * src/store/<entity>.c forwards to the handle's backend through the tables
 * below; each backend's SQL lives in src/store/<backend>/ alone. A backend
 * that lacks an entity's table (NULL) answers its operations with
 * KG_ERR_STORE, "not supported by the <name> store".
 */

typedef struct kg_store_backend kg_store_backend_t;

/*
 * The base of every handle: a backend's handle embeds it first, so that a
 * kg_store_t * is the backend's handle. Owned by the backend.
 */
struct kg_store {
    const kg_store_backend_t *be;
    char *location; /* a path, or a URL without its password */
    int schema_version;
};

/* Admin tokens (include/keygate/store_admin_tokens.h). */
typedef struct kg_store_admin_tokens_ops {
    kg_err_t (*insert)(kg_store_t *s, const kg_store_admin_token_t *t,
                       kg_diag_t *diag);
    kg_err_t (*get)(kg_store_t *s, const char *id, kg_store_admin_token_t *out,
                    kg_diag_t *diag);
    kg_err_t (*list)(kg_store_t *s, bool include_revoked,
                     kg_store_admin_token_t **out, size_t *count,
                     kg_diag_t *diag);
    kg_err_t (*revoke)(kg_store_t *s, const char *id, int64_t at,
                       kg_diag_t *diag);
    kg_err_t (*touch)(kg_store_t *s, const char *id, int64_t at,
                      int64_t min_gap, kg_diag_t *diag);
} kg_store_admin_tokens_ops_t;

/* Usage rows (include/keygate/store_usage.h). */
typedef struct kg_store_usage_ops {
    kg_err_t (*events_insert)(kg_store_t *s, const kg_usage_record_t *events,
                              size_t n, kg_err_t *verdicts, kg_diag_t *diag);
    kg_err_t (*charge_key)(kg_store_t *s, const char *key_id, int64_t cost,
                           int64_t last_used, int64_t period_start,
                           kg_diag_t *diag);
    kg_err_t (*charge_credits)(kg_store_t *s, const char *workspace_id,
                               int64_t cost, kg_diag_t *diag);
    /* NULL: the backend has no such hook (nothing happens). */
    void (*set_progress)(kg_store_t *s, const kg_store_progress_t *progress);
    kg_err_t (*rollup_add)(kg_store_t *s, const kg_usage_rollup_t *row,
                           kg_diag_t *diag);
    kg_err_t (*rollup_scan)(kg_store_t *s, const kg_usage_filter_t *filter,
                            kg_store_rollup_fn fn, void *ud, kg_diag_t *diag);
    kg_err_t (*events_page)(kg_store_t *s,
                            const kg_usage_events_filter_t *filter,
                            int64_t before_at_ms, int64_t before_id,
                            size_t limit, kg_usage_record_t *out, size_t *count,
                            kg_diag_t *diag);
    kg_err_t (*prune)(kg_store_t *s, int64_t before_ms, size_t limit,
                      size_t *deleted, kg_diag_t *diag);
    kg_err_t (*span)(kg_store_t *s, int64_t *oldest_ms, int64_t *newest_ms,
                     kg_diag_t *diag);
    kg_err_t (*stored)(kg_store_t *s, const char *request_id, bool *stored,
                       kg_diag_t *diag);
} kg_store_usage_ops_t;

/* Audit events (include/keygate/store_audit.h). */
typedef struct kg_store_audit_ops {
    kg_err_t (*insert)(kg_store_t *s, int64_t at, const char *actor,
                       const char *action, const char *object_type,
                       const char *object_id, const char *detail,
                       kg_diag_t *diag);
    kg_err_t (*page)(kg_store_t *s, const kg_audit_filter_t *filter,
                     int64_t before_id, size_t limit, kg_audit_event_t **events,
                     size_t *count, kg_diag_t *diag);
} kg_store_audit_ops_t;

/* Backups, row counts, space (include/keygate/store_ops.h). */
typedef struct kg_store_maint_ops {
    /* NULL: the backend has no online backup (KG_ERR_STORE). */
    kg_err_t (*backup_copy)(kg_store_t *s, const char *dest, int64_t *pages,
                            kg_diag_t *diag);
    kg_err_t (*backup_record)(kg_store_t *s, const kg_store_backup_info_t *info,
                              kg_diag_t *diag);
    kg_err_t (*backup_last)(kg_store_t *s, kg_store_backup_info_t *out,
                            bool *found, kg_diag_t *diag);
    kg_err_t (*counts)(kg_store_t *s, kg_store_count_t *out, kg_diag_t *diag);
    kg_err_t (*space)(kg_store_t *s, kg_store_space_t *out, kg_diag_t *diag);
} kg_store_maint_ops_t;

/* One backend: its handle's life, transactions, and one table per entity. */
struct kg_store_backend {
    const char *name; /* "sqlite", "postgresql": for messages */
    void (*close)(kg_store_t *s);
    kg_err_t (*begin)(kg_store_t *s, kg_diag_t *diag);
    kg_err_t (*commit)(kg_store_t *s, kg_diag_t *diag);
    void (*rollback)(kg_store_t *s);
    kg_err_t (*ping)(kg_store_t *s, kg_diag_t *diag);

    const kg_store_admin_tokens_ops_t *admin_tokens;

    const kg_store_usage_ops_t *usage;
    const kg_store_audit_ops_t *audit;
    const kg_store_maint_ops_t *maint;
};

/*
 * The error of an operation the handle's backend lacks: KG_ERR_STORE, with
 * diag naming the entity and the backend.
 */
kg_err_t kg_store_unsupported(const kg_store_t *s, const char *what,
                              kg_diag_t *diag);

/* The SQLite backend's opener (src/store/sqlite/sqlite.c). */
kg_err_t kg_sqlite_open(const char *path, const kg_store_opts_t *opts,
                        kg_store_t **out, kg_diag_t *diag);

#endif /* KEYGATE_STORE_BACKEND_H */
