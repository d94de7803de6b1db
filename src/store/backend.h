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
#include "keygate/store_budget.h"
#include "keygate/store_credentials.h"
#include "keygate/store_keys.h"
#include "keygate/store_leases.h"
#include "keygate/store_ops.h"
#include "keygate/store_rates.h"
#include "keygate/store_usage.h"
#include "keygate/store_workspaces.h"

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
    char instance[KG_STORE_INSTANCE_LEN + 1]; /* set by kg_store_open */
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

typedef struct kg_store_keys_ops {
    kg_err_t (*get)(kg_store_t *s, const char *id, kg_key_t *out,
                    kg_diag_t *diag);
    kg_err_t (*list)(kg_store_t *s, const kg_key_filter_t *filter,
                     kg_key_t **out, size_t *count, kg_diag_t *diag);
    kg_err_t (*insert)(kg_store_t *s, const kg_key_t *k, kg_diag_t *diag);
    kg_err_t (*update)(kg_store_t *s, const kg_key_t *k, bool reset_period,
                       int64_t now, kg_diag_t *diag);
    kg_err_t (*set_status)(kg_store_t *s, const char *id,
                           kg_key_status_t status, int64_t now,
                           kg_diag_t *diag);
    kg_err_t (*set_last4)(kg_store_t *s, const char *id, const char *last4,
                          int64_t now, kg_diag_t *diag);
    kg_err_t (*delete)(kg_store_t *s, const char *id, kg_diag_t *diag);
    kg_err_t (*expired)(kg_store_t *s, int64_t now,
                        char (*ids)[KG_TOKEN_ID_LEN + 1], size_t max, size_t *n,
                        kg_diag_t *diag);
    kg_err_t (*touch)(kg_store_t *s, const kg_key_seen_t *seen, size_t n,
                      kg_diag_t *diag);
    kg_err_t (*secret_add)(kg_store_t *s, const char *id,
                           const unsigned char *hash, int64_t created_at,
                           kg_diag_t *diag);
    kg_err_t (*secret_grace)(kg_store_t *s, const char *id, int64_t until,
                             kg_diag_t *diag);
    kg_err_t (*secret_drop)(kg_store_t *s, const char *id, kg_diag_t *diag);
    kg_err_t (*secret_drop_stale)(kg_store_t *s, int64_t now, kg_diag_t *diag);
    kg_err_t (*secret_each)(kg_store_t *s, const char *id, int64_t now,
                            kg_store_key_secret_fn fn, void *arg,
                            kg_diag_t *diag);
    kg_err_t (*revision)(kg_store_t *s, int64_t *rev, kg_diag_t *diag);
    kg_err_t (*load_view)(kg_store_t *s, const char *id, int64_t *rev,
                          kg_key_view_t *view, bool *found,
                          kg_store_key_secret_t *secrets, size_t max, size_t *n,
                          kg_diag_t *diag);
} kg_store_keys_ops_t;

typedef struct kg_store_workspaces_ops {
    kg_err_t (*insert)(kg_store_t *s, const kg_store_workspace_t *w,
                       kg_diag_t *diag);
    kg_err_t (*get)(kg_store_t *s, const char *ref, kg_store_workspace_t *out,
                    kg_diag_t *diag);
    kg_err_t (*list)(kg_store_t *s, kg_store_workspace_t **out, size_t *count,
                     kg_diag_t *diag);
    kg_err_t (*update)(kg_store_t *s, const char *id, const char *name,
                       const char *mode, const char *rules, int64_t now,
                       kg_diag_t *diag);
    kg_err_t (*credit)(kg_store_t *s, const char *id, int64_t delta,
                       int64_t max, int64_t now, int64_t *before,
                       kg_diag_t *diag);
} kg_store_workspaces_ops_t;

typedef struct kg_store_credentials_ops {
    kg_err_t (*put)(kg_store_t *s, const kg_store_credential_t *row,
                    const kg_store_sealed_t *sealed, kg_diag_t *diag);
    kg_err_t (*get)(kg_store_t *s, const char *workspace_id,
                    const char *provider, kg_store_credential_t *out,
                    kg_diag_t *diag);
    kg_err_t (*list)(kg_store_t *s, const char *workspace_id,
                     kg_store_credential_t **out, size_t *count,
                     kg_diag_t *diag);
    kg_err_t (*remove)(kg_store_t *s, const char *workspace_id,
                       const char *provider, kg_diag_t *diag);
    kg_err_t (*count)(kg_store_t *s, int64_t *n, kg_diag_t *diag);
    kg_err_t (*sealed)(kg_store_t *s, const char *workspace_id,
                       const char *provider, kg_store_sealed_t *out,
                       kg_diag_t *diag);
} kg_store_credentials_ops_t;

typedef struct kg_store_budget_ops {
    kg_err_t (*revision)(kg_store_t *s, int64_t *rev, kg_diag_t *diag);
    kg_err_t (*key_get)(kg_store_t *s, const char *key_id,
                        kg_store_budget_key_t *out, kg_diag_t *diag);
    kg_err_t (*workspace_get)(kg_store_t *s, const char *ws_id,
                              kg_store_budget_workspace_t *out,
                              kg_diag_t *diag);
    kg_err_t (*reservations_clear)(kg_store_t *s, kg_diag_t *diag);
    kg_err_t (*reservation_set)(kg_store_t *s, const char *key_id,
                                int64_t amount, kg_diag_t *diag);
} kg_store_budget_ops_t;

/* Budget leases (include/keygate/store_leases.h); shared stores only. */
typedef struct kg_store_leases_ops {
    kg_err_t (*claim)(kg_store_t *s, const kg_store_lease_claim_t *c,
                      int64_t *granted, kg_diag_t *diag);
    kg_err_t (*give_back)(kg_store_t *s, kg_store_lease_scope_t scope,
                          const char *id, int64_t amount, kg_diag_t *diag);
    kg_err_t (*renew)(kg_store_t *s, int64_t ttl_ms, kg_diag_t *diag);
    kg_err_t (*outstanding)(kg_store_t *s, kg_store_lease_scope_t scope,
                            const char *id, int64_t *outstanding,
                            kg_diag_t *diag);
} kg_store_leases_ops_t;

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

typedef struct kg_store_audit_ops {
    kg_err_t (*insert)(kg_store_t *s, int64_t at, const char *actor,
                       const char *action, const char *object_type,
                       const char *object_id, const char *detail,
                       kg_diag_t *diag);
    kg_err_t (*page)(kg_store_t *s, const kg_audit_filter_t *filter,
                     int64_t before_id, size_t limit, kg_audit_event_t **events,
                     size_t *count, kg_diag_t *diag);
} kg_store_audit_ops_t;

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

/* Shared rate windows (include/keygate/store_rates.h). The forwarder
 * zeroes the counts of others' rows before the call. */
typedef struct kg_store_rates_ops {
    kg_err_t (*publish)(kg_store_t *s, const kg_ratelimit_share_t *own,
                        size_t n, kg_diag_t *diag);
    kg_err_t (*others)(kg_store_t *s, int64_t window_start,
                       kg_ratelimit_share_t *rows, size_t n, kg_diag_t *diag);
    kg_err_t (*live)(kg_store_t *s, int64_t within_s, int64_t *n,
                     kg_diag_t *diag);
    kg_err_t (*prune)(kg_store_t *s, int64_t older_than_s, int64_t *deleted,
                      kg_diag_t *diag);
} kg_store_rates_ops_t;

/* API keys, their secrets and the key revision (include/keygate/
 * store_keys.h). */

/* One backend: its handle's life, transactions, and one table per entity. */
struct kg_store_backend {
    const char *name; /* "sqlite", "postgresql": for messages */
    void (*close)(kg_store_t *s);
    kg_err_t (*begin)(kg_store_t *s, kg_diag_t *diag);
    kg_err_t (*commit)(kg_store_t *s, kg_diag_t *diag);
    void (*rollback)(kg_store_t *s);
    kg_err_t (*ping)(kg_store_t *s, kg_diag_t *diag);
    /* NULL when the backend cannot push changes (SQLite). */
    kg_err_t (*wait_change)(kg_store_t *s, int timeout_ms, bool *changed,
                            kg_diag_t *diag);

    const kg_store_admin_tokens_ops_t *admin_tokens;
    const kg_store_keys_ops_t *keys;
    const kg_store_workspaces_ops_t *workspaces;
    const kg_store_credentials_ops_t *credentials;
    const kg_store_budget_ops_t *budget;
    const kg_store_usage_ops_t *usage;
    const kg_store_audit_ops_t *audit;
    const kg_store_maint_ops_t *maint;
    /* What instances sharing a store keep per instance (NULL on SQLite,
     * which serves one gateway): budget leases and rate-window shares. */
    const kg_store_leases_ops_t *leases;
    const struct kg_store_rates_ops *rates;
};

/*
 * The error of an operation the handle's backend lacks: KG_ERR_STORE, with
 * diag naming the entity and the backend.
 */
kg_err_t kg_store_unsupported(const kg_store_t *s, const char *what,
                              kg_diag_t *diag);

/* The backends' openers (src/store/sqlite/sqlite.c, src/store/pg/pg.c). */
kg_err_t kg_sqlite_open(const char *path, const kg_store_opts_t *opts,
                        kg_store_t **out, kg_diag_t *diag);
kg_err_t kg_pg_open(const char *url, const kg_store_opts_t *opts,
                    kg_store_t **out, kg_diag_t *diag);

#endif /* KEYGATE_STORE_BACKEND_H */
