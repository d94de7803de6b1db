/* Workspace provider credentials (bring your own key), encrypted at rest. */
#ifndef KEYGATE_WSCRED_H
#define KEYGATE_WSCRED_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/providers.h"
#include "keygate/secretbox.h"
#include "keygate/store.h"
#include "keygate/store_credentials.h"
#include "keygate/workspaces.h"

/* A credential: 1..KG_WSCRED_MAX bytes of printable ASCII, no spaces. */
#define KG_WSCRED_MAX KG_CREDENTIAL_MAX
/* The characters of a credential shown to humans: its last 4 ... */
#define KG_WSCRED_LAST4_LEN 4
/* ... and only when it has at least this many (else none are shown). */
#define KG_WSCRED_LAST4_MIN 12

/*
 * What may be shown of a stored credential, never the secret: the store's
 * row (keygate/store_credentials.h) of workspace_id, provider, last4 (""
 * for a short credential), created_at and updated_at (unix seconds).
 */
typedef kg_store_credential_t kg_wscred_info_t;

/*
 * Whether secret (len bytes) may be a credential: 1..KG_WSCRED_MAX bytes of
 * printable ASCII without spaces, CR or LF (it goes into an HTTP header).
 * Returns KG_OK, or KG_ERR_INVAL with diag saying what is wrong (never the
 * bytes).
 */
kg_err_t kg_wscred_check(const char *secret, size_t len,
                         kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Store secret (len bytes, kg_wscred_check) as the credential of the
 * workspace (id or name) for provider (a provider name, 1..64 of
 * [a-z0-9_-]; whether it is configured is the caller's concern), replacing
 * the one it has. Encrypted under sb, bound to the workspace id and the
 * provider, with a fresh nonce. Audited as "credential-set" with the
 * provider and last4. Returns KG_OK, KG_ERR_INVAL (bad provider name or
 * secret), KG_ERR_NOT_FOUND (no such workspace) or a store error, with
 * diag; nothing changes on error.
 */
kg_err_t kg_wscred_set(kg_store_t *s, const kg_secretbox_t *sb,
                       const char *actor, const char *workspace_ref,
                       const char *provider, const char *secret,
                       size_t secret_len, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Delete the credential of the workspace (id or name) for provider.
 * Audited as "credential-delete" with the provider and last4. On KG_OK
 * *deleted (may be NULL) describes what was removed. KG_ERR_NOT_FOUND when
 * there is no such workspace or it has no credential for provider.
 */
kg_err_t kg_wscred_delete(kg_store_t *s, const char *actor,
                          const char *workspace_ref, const char *provider,
                          kg_wscred_info_t *deleted,
                          kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The credentials of the workspace (id or name), by provider name, without
 * secrets. *list is new (kg_wscred_list_free; NULL when *n is 0).
 * KG_ERR_NOT_FOUND when there is no such workspace.
 */
kg_err_t kg_wscred_list(kg_store_t *s, const char *workspace_ref,
                        kg_wscred_info_t **list, size_t *n,
                        kg_diag_t *diag) KG_MUST_CHECK;

/*
 * One credential's description, without the secret. KG_ERR_NOT_FOUND when
 * there is no such workspace or no credential for provider.
 */
kg_err_t kg_wscred_get(kg_store_t *s, const char *workspace_ref,
                       const char *provider, kg_wscred_info_t *out,
                       kg_diag_t *diag) KG_MUST_CHECK;

/* How many credentials the store holds, in every workspace. */
kg_err_t kg_wscred_count(kg_store_t *s, int64_t *n,
                         kg_diag_t *diag) KG_MUST_CHECK;

/*
 * For the gateway: decrypt the credential of workspace_id (an id, not a
 * name) for provider. On KG_OK *secret is new sodium_malloc'd memory of
 * *len bytes plus a NUL (kg_wscred_secret_free). KG_ERR_NOT_FOUND when
 * there is none; KG_ERR_STORE_CORRUPT when it does not decrypt (another
 * secret key file, or a row altered or moved), with a diag naming the
 * workspace and provider, never bytes; or a store error. *secret is NULL
 * on error.
 */
kg_err_t kg_wscred_load(kg_store_t *s, const kg_secretbox_t *sb,
                        const char *workspace_id, const char *provider,
                        char **secret, size_t *len,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* Wipe and free a secret from kg_wscred_load; sets *secret to NULL. */
void kg_wscred_secret_free(char **secret, size_t len);

/* The last4 of a credential (KG_WSCRED_LAST4_MIN): out gets 0 or 4 chars. */
void kg_wscred_last4(const char *secret, size_t len,
                     char out[KG_WSCRED_LAST4_LEN + 1]);

/* {"provider", "last4" (null when none), "createdAt", "updatedAt"}: new. */
json_t *kg_wscred_to_json(const kg_wscred_info_t *info);

void kg_wscred_list_free(kg_wscred_info_t **list);

#endif /* KEYGATE_WSCRED_H */
