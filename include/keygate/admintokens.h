/* Admin tokens: the credentials of the admin listener (prefix kgadm). */
#ifndef KEYGATE_ADMINTOKENS_H
#define KEYGATE_ADMINTOKENS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/keyhash.h"
#include "keygate/store.h"
#include "keygate/token.h"
#include "keygate/validate.h"

/* Longest lifetime an admin token may be given (--ttl). */
#define KG_ADMIN_TOKEN_MAX_TTL (INT64_C(3650) * 86400)
/* last_used_at is written at most this often per token (seconds). */
#define KG_ADMIN_TOKEN_TOUCH_GAP 60

/* An admin token as operators see it: never its secret or hash. */
typedef struct kg_admin_token {
    char id[KG_TOKEN_ID_LEN + 1];
    char name[KG_NAME_MAX + 1];
    char last4[5];
    char created_by[KG_ACTOR_MAX + 1];
    bool read_only;
    int64_t created_at;
    int64_t expires_at;   /* unix seconds; -1: never */
    int64_t last_used_at; /* -1: never */
    int64_t revoked_at;   /* -1: live */
} kg_admin_token_t;

/* What every call needs; all borrowed. */
typedef struct kg_admin_tokens_ctx {
    kg_store_t *store;
    const kg_keyhash_t *hashkey;
    const char *actor; /* for the audit trail */
} kg_admin_tokens_ctx_t;

/*
 * Create an admin token named name (validated like key names), read-only
 * or not, expiring ttl seconds from now (0: never; at most
 * KG_ADMIN_TOKEN_MAX_TTL). The full token ("kgadm_<id>_<secret><check>")
 * goes to token (KG_TOKEN_STRLEN bytes) once; the store keeps its keyed
 * hash. Audited as "create" on "admin_token". *out (may be NULL) gets the
 * new token's public view. Errors: KG_ERR_INVAL (diag names the field), a
 * store error; token is zeroed on error.
 */
kg_err_t kg_admin_tokens_create(const kg_admin_tokens_ctx_t *ctx,
                                const char *name, bool read_only, int64_t ttl,
                                kg_admin_token_t *out, char *token,
                                kg_diag_t *diag) KG_MUST_CHECK;

/* Admin tokens, newest first (revoked ones too when include_revoked).
 * *out is new (free()). */
kg_err_t kg_admin_tokens_list(const kg_admin_tokens_ctx_t *ctx,
                              bool include_revoked, kg_admin_token_t **out,
                              size_t *count, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Revoke the token ref (its id or "kgadm_<id>"): it stops working at
 * once, its row stays. Audited. KG_ERR_NOT_FOUND, KG_ERR_STATE when it
 * was already revoked (diag says so), or a store error.
 */
kg_err_t kg_admin_tokens_revoke(const kg_admin_tokens_ctx_t *ctx,
                                const char *ref, kg_admin_token_t *out,
                                kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Verify a presented admin token (len bytes, not necessarily terminated):
 * shape and checksum, prefix "kgadm" (a client key is refused), the row,
 * the keyed hash compared in constant time, not revoked, not expired at
 * now. KG_OK fills *out (may be NULL) and notes the use (last_used_at, at
 * most every KG_ADMIN_TOKEN_TOUCH_GAP seconds; a failure to write it is
 * ignored). Every refusal is KG_ERR_ADMIN_AUTH (diag says why, for the
 * log: never the token); a store that cannot be read gives its error.
 */
kg_err_t kg_admin_tokens_verify(kg_store_t *store, const kg_keyhash_t *hk,
                                const char *token, size_t len, int64_t now,
                                kg_admin_token_t *out,
                                kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The live token id (a session's): KG_OK with *out (may be NULL), or
 * KG_ERR_ADMIN_AUTH when it is unknown, revoked or expired at now, or a
 * store error.
 */
kg_err_t kg_admin_tokens_get(kg_store_t *store, const char *id, int64_t now,
                             kg_admin_token_t *out,
                             kg_diag_t *diag) KG_MUST_CHECK;

/* "active", "expired" or "revoked" at now. */
const char *kg_admin_token_state(const kg_admin_token_t *t, int64_t now);

/* Public JSON form (new reference): id, name, display, readOnly, state,
 * createdAt, createdBy, expiresAt, lastUsedAt, revokedAt. */
json_t *kg_admin_token_to_json(const kg_admin_token_t *t, int64_t now);

#endif /* KEYGATE_ADMINTOKENS_H */
