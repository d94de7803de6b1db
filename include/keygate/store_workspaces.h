/* The store's workspace rows: names, modes, rules and credit balances. */
#ifndef KEYGATE_STORE_WORKSPACES_H
#define KEYGATE_STORE_WORKSPACES_H

#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"
#include "keygate/token.h"
#include "keygate/validate.h"

/*
 * Backend-neutral: what the workspaces module asks of the store. The
 * SQLite implementation is src/store/sqlite/workspaces.c.
 */

/* The longest stored mode name ("api-keys", "credits", "hybrid", "pool"). */
#define KG_STORE_WORKSPACE_MODE_MAX 15

/* One workspace as stored. */
typedef struct kg_store_workspace {
    char id[KG_TOKEN_ID_LEN + 1];
    char name[KG_NAME_MAX + 1];
    char mode[KG_STORE_WORKSPACE_MODE_MAX + 1]; /* the mode's name */
    int64_t credits_balance;                    /* micro-USD */
    char *rules;        /* JSON text, owned (kg_store_workspace_clear) */
    int64_t created_at; /* unix seconds */
    int64_t updated_at;
    int64_t key_count; /* its keys that are not deleted */
} kg_store_workspace_t;

/*
 * Insert a new workspace: id, name, mode, created_at and updated_at of w
 * (no credits, rules "{}"), inside the caller's transaction. KG_ERR_EXISTS
 * when the id or the name is taken, else KG_OK or a store error.
 */
kg_err_t kg_store_workspace_insert(kg_store_t *store,
                                   const kg_store_workspace_t *w,
                                   kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Read the workspace whose id or, failing that, name is ref into *out
 * (kg_store_workspace_clear). KG_OK, KG_ERR_NOT_FOUND (no diag) or a store
 * error; *out is zeroed on error.
 */
kg_err_t kg_store_workspace_get(kg_store_t *store, const char *ref,
                                kg_store_workspace_t *out,
                                kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Every workspace, by name. *out is new (kg_store_workspace_list_free),
 * *count its length; NULL and 0 on error.
 */
kg_err_t kg_store_workspace_list(kg_store_t *store, kg_store_workspace_t **out,
                                 size_t *count, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Set the name, mode and rules of workspace id (each NULL: left as it is)
 * and its updated_at to now. A change of mode or rules moves the key
 * revision (running gateways reload the workspace; on PostgreSQL, whose
 * triggers run per statement, also when no workspace matched).
 * KG_ERR_NOT_FOUND when there is no such workspace, KG_ERR_EXISTS when the
 * name is taken.
 */
kg_err_t kg_store_workspace_update(kg_store_t *store, const char *id,
                                   const char *name, const char *mode,
                                   const char *rules, int64_t now,
                                   kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Add delta micro-USD (negative to deduct) to the credit balance of
 * workspace id only if the result stays within [0, max], in one
 * conditional write, and move the key revision so that running gateways
 * reload the balance. *before is the balance the write saw: on KG_OK the
 * one it replaced; on KG_ERR_STATE (the result would leave [0, max];
 * nothing changes) the current one. KG_ERR_NOT_FOUND when there is no such
 * workspace, or a store error.
 */
kg_err_t kg_store_workspace_credit(kg_store_t *store, const char *id,
                                   int64_t delta, int64_t max, int64_t now,
                                   int64_t *before,
                                   kg_diag_t *diag) KG_MUST_CHECK;

/* Free a row's rules; no-op on NULL. */
void kg_store_workspace_clear(kg_store_workspace_t *w);

/* Clear count rows and free the array; sets *list to NULL. */
void kg_store_workspace_list_free(kg_store_workspace_t **list, size_t count);

#endif /* KEYGATE_STORE_WORKSPACES_H */
