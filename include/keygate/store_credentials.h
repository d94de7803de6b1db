/* The store's workspace credential rows: sealed secrets, never plaintext. */
#ifndef KEYGATE_STORE_CREDENTIALS_H
#define KEYGATE_STORE_CREDENTIALS_H

#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/providers.h"
#include "keygate/secretbox.h"
#include "keygate/store.h"
#include "keygate/token.h"

/*
 * Backend-neutral: what the workspace credentials module (src/wscred.c)
 * asks of the store. The store holds each credential sealed (a nonce and
 * a ciphertext the module made) and never sees the secret. The SQLite
 * implementation is src/store/sqlite/credentials.c.
 */

/* The largest ciphertext a row holds: a credential and its MAC. */
#define KG_STORE_SEALED_MAX (KG_CREDENTIAL_MAX + KG_SECRETBOX_MAC_LEN)

/* What a row shows of a credential: never the secret. */
typedef struct kg_store_credential {
    char workspace_id[KG_TOKEN_ID_LEN + 1];
    char provider[KG_PROVIDER_NAME_MAX + 1];
    char last4[5];      /* "" for a short credential */
    int64_t created_at; /* unix seconds */
    int64_t updated_at;
} kg_store_credential_t;

/*
 * A row's sealed secret, as stored. A damaged row is handed out as it is:
 * nonce_len and cipher_len are the stored lengths, and the bytes are
 * copied only when they fit (nonce_len == KG_SECRETBOX_NONCE_LEN,
 * cipher_len <= KG_STORE_SEALED_MAX); the caller checks them.
 */
typedef struct kg_store_sealed {
    unsigned char nonce[KG_SECRETBOX_NONCE_LEN];
    size_t nonce_len;
    unsigned char cipher[KG_STORE_SEALED_MAX];
    size_t cipher_len;
} kg_store_sealed_t;

/*
 * Store the sealed credential of (row->workspace_id, row->provider) with
 * row->last4, replacing the one it has: a new row gets created_at =
 * updated_at = row->updated_at, a replaced one keeps its created_at.
 * sealed's lengths must be valid and the workspace must exist (the
 * caller checks both). Moves the key revision. KG_OK or a store error.
 */
kg_err_t kg_store_credential_put(kg_store_t *store,
                                 const kg_store_credential_t *row,
                                 const kg_store_sealed_t *sealed,
                                 kg_diag_t *diag) KG_MUST_CHECK;

/* The row of (workspace_id, provider) into *out: KG_OK, KG_ERR_NOT_FOUND
 * (no diag) or a store error. */
kg_err_t kg_store_credential_get(kg_store_t *store, const char *workspace_id,
                                 const char *provider,
                                 kg_store_credential_t *out,
                                 kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The rows of workspace_id, by provider name. *out is new (free(); NULL
 * when *count is 0).
 */
kg_err_t kg_store_credential_list(kg_store_t *store, const char *workspace_id,
                                  kg_store_credential_t **out, size_t *count,
                                  kg_diag_t *diag) KG_MUST_CHECK;

/* Delete the row of (workspace_id, provider); moves the key revision (on
 * PostgreSQL, whose triggers run per statement, also when there was none).
 * KG_ERR_NOT_FOUND (no diag) when there is none. */
kg_err_t kg_store_credential_delete(kg_store_t *store, const char *workspace_id,
                                    const char *provider,
                                    kg_diag_t *diag) KG_MUST_CHECK;

/* How many rows the store holds, in every workspace. */
kg_err_t kg_store_credential_count(kg_store_t *store, int64_t *n,
                                   kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The sealed secret of (workspace_id, provider) into *out: KG_OK,
 * KG_ERR_NOT_FOUND (no diag) or a store error.
 */
kg_err_t kg_store_credential_sealed(kg_store_t *store, const char *workspace_id,
                                    const char *provider,
                                    kg_store_sealed_t *out,
                                    kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_CREDENTIALS_H */
