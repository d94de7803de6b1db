/* Workspaces: the owners of keys, credits, rules and provider credentials. */
#ifndef KEYGATE_WORKSPACES_H
#define KEYGATE_WORKSPACES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"
#include "keygate/token.h"
#include "keygate/validate.h"

#define KG_WORKSPACE_DEFAULT "default"
#define KG_WORKSPACE_ID_LEN  KG_TOKEN_ID_LEN

/* How a workspace reaches providers (docs/policy.md#workspace-modes). */
typedef enum kg_ws_mode {
    KG_MODE_API_KEYS = 0, /* only its own credentials */
    KG_MODE_CREDITS,      /* the pool, charged to its credits */
    KG_MODE_HYBRID,       /* its own where it has one, else credits */
    KG_MODE_POOL,         /* the pool, no credits: one tenant (init's) */
} kg_ws_mode_t;

/* The mode keygate init gives the default workspace it creates. */
#define KG_WORKSPACE_DEFAULT_MODE KG_MODE_POOL

typedef struct kg_workspace {
    char id[KG_WORKSPACE_ID_LEN + 1];
    char name[KG_NAME_MAX + 1];
    kg_ws_mode_t mode;
    int64_t credits_balance; /* micro-USD */
    char *rules;             /* JSON text, owned */
    int64_t created_at;
    int64_t updated_at;
    int64_t key_count; /* keys not deleted */
} kg_workspace_t;

/* What to change; NULL / false leaves a field as it is. */
typedef struct kg_workspace_changes {
    const char *name;
    bool set_mode;
    kg_ws_mode_t mode;
    const char *rules;
} kg_workspace_changes_t;

/* "api-keys", "credits", "hybrid", "pool". */
const char *kg_ws_mode_name(kg_ws_mode_t mode);
bool kg_ws_mode_parse(const char *s, kg_ws_mode_t *mode);

/*
 * Create a workspace. KG_ERR_INVAL for a bad name, KG_ERR_EXISTS when the
 * name is taken. On KG_OK *out (may be NULL) holds it; kg_workspace_clear.
 */
kg_err_t kg_workspace_create(kg_store_t *store, const char *actor,
                             const char *name, kg_ws_mode_t mode,
                             kg_workspace_t *out,
                             kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Create the "default" workspace in KG_WORKSPACE_DEFAULT_MODE unless it
 * exists (used by init); an existing one keeps its mode.
 */
kg_err_t kg_workspace_ensure_default(kg_store_t *store, const char *actor,
                                     kg_diag_t *diag) KG_MUST_CHECK;

/* Find by id or name. KG_ERR_NOT_FOUND when neither matches. */
kg_err_t kg_workspace_get(kg_store_t *store, const char *ref,
                          kg_workspace_t *out, kg_diag_t *diag) KG_MUST_CHECK;

/* All workspaces by name. *list is new; kg_workspace_list_free. */
kg_err_t kg_workspace_list(kg_store_t *store, kg_workspace_t **list,
                           size_t *count, kg_diag_t *diag) KG_MUST_CHECK;

/* Apply changes; audit records before and after. *out may be NULL. */
kg_err_t kg_workspace_update(kg_store_t *store, const char *actor,
                             const char *ref,
                             const kg_workspace_changes_t *changes,
                             kg_workspace_t *out,
                             kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Add delta micro-USD (negative to deduct) to the credit balance. A deduct
 * below zero is refused with KG_ERR_INVAL and changes nothing. note (may be
 * NULL) goes to the audit event.
 */
kg_err_t kg_workspace_credit(kg_store_t *store, const char *actor,
                             const char *ref, int64_t delta, const char *note,
                             kg_workspace_t *out,
                             kg_diag_t *diag) KG_MUST_CHECK;

/* Public JSON form (new reference), money as decimal strings. */
json_t *kg_workspace_to_json(const kg_workspace_t *ws);

void kg_workspace_clear(kg_workspace_t *ws);
void kg_workspace_list_free(kg_workspace_t **list, size_t count);

#endif /* KEYGATE_WORKSPACES_H */
