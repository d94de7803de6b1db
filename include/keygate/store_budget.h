/* The store as the request policy reads it: revision, rules, reservations. */
#ifndef KEYGATE_STORE_BUDGET_H
#define KEYGATE_STORE_BUDGET_H

#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"
#include "keygate/store_workspaces.h"
#include "keygate/token.h"

/*
 * Backend-neutral: what the policy (src/policy.c) asks of the store. It
 * loads a key's rules and workspace and a workspace's mode, rules and
 * credit balance when it first sees them, drops them when the key
 * revision moves, and writes a snapshot of its budget reservations in
 * flight for the CLI, the admin API and the dashboard to show (each
 * instance its own on a shared PostgreSQL store). The spend itself is
 * charged by the usage writer. The implementations are
 * src/store/sqlite/budget.c and src/store/pg/budget.c.
 */

/* What the policy loads of a key. */
typedef struct kg_store_budget_key {
    char workspace_id[KG_TOKEN_ID_LEN + 1];
    char *rules; /* JSON text, owned (kg_store_budget_key_clear) */
} kg_store_budget_key_t;

/* What the policy loads of a workspace. */
typedef struct kg_store_budget_workspace {
    char mode[KG_STORE_WORKSPACE_MODE_MAX + 1]; /* the mode's name */
    char *rules;             /* JSON text, owned (..._workspace_clear) */
    int64_t credits_balance; /* micro-USD */
} kg_store_budget_workspace_t;

/*
 * The key revision into *rev: a counter every change that matters to
 * verifying a key or applying its policy moves (keys, their secrets, a
 * workspace's mode, rules, credentials, an operator's credit change), and
 * spend does not. KG_OK or a store error (*rev is -1).
 */
kg_err_t kg_store_budget_revision(kg_store_t *store, int64_t *rev,
                                  kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The rules and workspace of key key_id (any status) into *out
 * (kg_store_budget_key_clear). KG_OK, KG_ERR_NOT_FOUND (no diag) or a
 * store error; *out is zeroed on error.
 */
kg_err_t kg_store_budget_key_get(kg_store_t *store, const char *key_id,
                                 kg_store_budget_key_t *out,
                                 kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The mode, rules and credit balance of workspace ws_id (an id) into *out
 * (kg_store_budget_workspace_clear). KG_OK, KG_ERR_NOT_FOUND (no diag) or
 * a store error; *out is zeroed on error.
 */
kg_err_t kg_store_budget_workspace_get(kg_store_t *store, const char *ws_id,
                                       kg_store_budget_workspace_t *out,
                                       kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Seconds after which a reservation snapshot its instance stopped
 * rewriting no longer counts (PostgreSQL): instances rewrite theirs every
 * second, so only an instance stopped, cut off from the store or stalled
 * for this long stops counting.
 */
#define KG_STORE_RESERVATION_TTL_S 10

/*
 * Forget the stored reservations of the handle's instance: at start, and
 * before each snapshot. On SQLite (one gateway per store) that is every
 * key's api_keys.reserved, so a start reclaims those of a run that did
 * not stop cleanly. On PostgreSQL it deletes the instance's rows of
 * key_reservations (kg_store_instance) and every instance's rows not
 * rewritten for KG_STORE_RESERVATION_TTL_S (rows another instance is
 * deleting meanwhile are left to it): another instance's snapshot stays,
 * and a stopped one's stops counting, then goes. KG_OK or a store error.
 */
kg_err_t kg_store_budget_reservations_clear(kg_store_t *store,
                                            kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Store amount (micro-USD, >= 0) as the handle's instance's reservations
 * in flight of key key_id. A snapshot is kg_store_budget_reservations_clear
 * and one of these per key with reservations, in one transaction of the
 * caller's, so readers see the previous snapshot or the new one whole.
 * A key's reserved as the store reads it (kg_store_key_get, the key list)
 * is, on SQLite, the last snapshot; on PostgreSQL, the sum over instances
 * of their rows rewritten within KG_STORE_RESERVATION_TTL_S (saturated at
 * INT64_MAX). An unknown key is not an error (SQLite stores nothing;
 * PostgreSQL keeps a row nothing reads until the next clear). The
 * snapshot is bookkeeping: it never moves the key revision. KG_OK or a
 * store error.
 */
kg_err_t kg_store_budget_reservation_set(kg_store_t *store, const char *key_id,
                                         int64_t amount,
                                         kg_diag_t *diag) KG_MUST_CHECK;

/* Free the rules of a row; no-op on NULL. */
void kg_store_budget_key_clear(kg_store_budget_key_t *k);
void kg_store_budget_workspace_clear(kg_store_budget_workspace_t *w);

#endif /* KEYGATE_STORE_BUDGET_H */
