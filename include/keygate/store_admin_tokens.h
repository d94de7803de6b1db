/* The store's admin-token rows: backend-neutral declarations. */
#ifndef KEYGATE_STORE_ADMIN_TOKENS_H
#define KEYGATE_STORE_ADMIN_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/keyhash.h"
#include "keygate/store.h"
#include "keygate/token.h"
#include "keygate/validate.h"

/* One admin token as stored: never the secret, the hash only here. */
typedef struct kg_store_admin_token {
    char id[KG_TOKEN_ID_LEN + 1];
    char name[KG_NAME_MAX + 1];
    char last4[5];
    char created_by[KG_ACTOR_MAX + 1];
    bool read_only;
    unsigned char hash[KG_KEYHASH_LEN];
    int64_t created_at;
    int64_t expires_at;   /* unix seconds; -1: never */
    int64_t last_used_at; /* -1: never */
    int64_t revoked_at;   /* -1: live */
} kg_store_admin_token_t;

/* Insert a new row (inside the caller's transaction). KG_ERR_EXISTS on an
 * id already taken, else a store error. */
kg_err_t kg_store_admin_token_insert(kg_store_t *store,
                                     const kg_store_admin_token_t *t,
                                     kg_diag_t *diag) KG_MUST_CHECK;

/* Read the row of id into *out: KG_OK, KG_ERR_NOT_FOUND or a store error. */
kg_err_t kg_store_admin_token_get(kg_store_t *store, const char *id,
                                  kg_store_admin_token_t *out,
                                  kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Every row, newest first (revoked ones only when include_revoked).
 * *out is new (free()); *count its length. At most KG_STORE_ADMIN_TOKENS_MAX
 * rows are read.
 */
#define KG_STORE_ADMIN_TOKENS_MAX 10000
kg_err_t kg_store_admin_token_list(kg_store_t *store, bool include_revoked,
                                   kg_store_admin_token_t **out, size_t *count,
                                   kg_diag_t *diag) KG_MUST_CHECK;

/* Mark the row revoked at `at` (and wipe its hash). KG_ERR_NOT_FOUND when
 * no live row has this id. */
kg_err_t kg_store_admin_token_revoke(kg_store_t *store, const char *id,
                                     int64_t at, kg_diag_t *diag) KG_MUST_CHECK;

/* Set last_used_at to `at` when it is older than at - min_gap seconds
 * (so a busy token does not write on every request). */
kg_err_t kg_store_admin_token_touch(kg_store_t *store, const char *id,
                                    int64_t at, int64_t min_gap,
                                    kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_ADMIN_TOKENS_H */
