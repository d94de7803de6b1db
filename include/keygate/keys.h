/* The API key lifecycle: create, read, update, disable, rotate, revoke. */
#ifndef KEYGATE_KEYS_H
#define KEYGATE_KEYS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/keyhash.h"
#include "keygate/period.h"
#include "keygate/store.h"
#include "keygate/token.h"
#include "keygate/validate.h"
#include "keygate/workspaces.h"

/* An absent optional number: no limit, never used, never expires. */
#define KG_NONE INT64_C(-1)

typedef enum kg_key_status {
    KG_KEY_ACTIVE = 0,
    KG_KEY_INACTIVE, /* disabled; enable makes it active again */
    KG_KEY_DELETED,  /* revoked; the row and its usage history stay */
} kg_key_status_t;

typedef struct kg_key {
    char id[KG_TOKEN_ID_LEN + 1];
    char workspace_id[KG_WORKSPACE_ID_LEN + 1];
    char workspace_name[KG_NAME_MAX + 1];
    char name[KG_NAME_MAX + 1];
    char prefix[KG_TOKEN_PREFIX_MAX + 1];
    char last4[5];
    char *description; /* owned */
    char *metadata;    /* JSON object text, owned */
    char *rules;       /* JSON object text, owned */
    kg_key_status_t status;
    int64_t created_at;
    int64_t updated_at;
    int64_t last_used_at; /* KG_NONE: never */
    int64_t expires_at;   /* KG_NONE: never */
    int64_t usage_limit;  /* micro-USD, KG_NONE: unlimited */
    int64_t usage;        /* lifetime spend, micro-USD */
    kg_period_t period;   /* KG_PERIOD_NONE: no period limit */
    int64_t period_limit; /* micro-USD, KG_NONE without a period */
    int64_t period_usage;
    int64_t period_started_at; /* KG_NONE without a period */
    int64_t rpm;               /* KG_NONE: unlimited */
    int64_t tpm;
    int64_t max_concurrent;
    int64_t grace_until; /* an old secret is valid until then, or KG_NONE */
    int64_t reserved;    /* in flight in the running gateways (snapshots) */
} kg_key_t;

/*
 * What to set on create or update. NULL strings and false set_* flags leave
 * a field as it is (on create: its default).
 */
typedef struct kg_key_spec {
    const char *workspace; /* create only: id or name; NULL = "default" */
    const char *name;
    const char *description;
    const char *metadata; /* JSON object */
    const char *rules;    /* JSON object, see kg_validate_rules */
    bool set_expires;
    int64_t expires_at; /* unix seconds, KG_NONE = never */
    bool set_usage_limit;
    int64_t usage_limit; /* KG_NONE = unlimited */
    bool set_period_limit;
    kg_period_t period; /* KG_PERIOD_NONE removes the period limit */
    int64_t period_limit;
    bool set_rpm;
    int64_t rpm;
    bool set_tpm;
    int64_t tpm;
    bool set_max_concurrent;
    int64_t max_concurrent;
} kg_key_spec_t;

/* What every lifecycle call needs; all borrowed. */
typedef struct kg_keys_ctx {
    kg_store_t *store;
    const kg_keyhash_t *hashkey;
    const char *prefix;  /* for new tokens */
    int64_t max_ttl;     /* seconds, 0 = no maximum */
    int64_t default_ttl; /* seconds, 0 = no expiry by default */
    const char *actor;   /* for the audit trail */
} kg_keys_ctx_t;

/* Which keys kg_keys_list returns; a zeroed filter: every live key. */
typedef struct kg_key_filter {
    const char *workspace; /* id or name, NULL = all */
    bool include_deleted;
    bool status_is_set; /* only keys of this status (deleted ones too) */
    kg_key_status_t status;
    const char *name_contains; /* case-insensitive substring, NULL = any */
    bool newest_first;         /* else oldest first */
    /* Keys after (created_at, id) in the order asked, for paging; NULL
     * after_id = from the start. */
    int64_t after_created;
    const char *after_id;
    size_t limit; /* 0 = all */
} kg_key_filter_t;

/* "active", "inactive", "deleted" → the status; false when unknown. */
bool kg_key_status_parse(const char *s, kg_key_status_t *status);

#define KG_RATE_MAX INT64_C(100000000)

/* A key used at a time (unix seconds): for api_keys.last_used_at. */
typedef struct kg_key_seen {
    char id[KG_TOKEN_ID_LEN + 1];
    int64_t at;
} kg_key_seen_t;

const char *kg_key_status_name(kg_key_status_t status);

/*
 * Create a key. The full token is written to token (KG_TOKEN_STRLEN bytes)
 * and exists nowhere else: the store keeps only its keyed hash. Errors:
 * KG_ERR_INVAL (bad field, diag says which), KG_ERR_TTL_BOUND (expiry past
 * the maximum TTL, diag gives the bound), KG_ERR_NOT_FOUND (workspace),
 * store errors. On error nothing is stored and token is zeroed.
 */
kg_err_t kg_keys_create(const kg_keys_ctx_t *ctx, const kg_key_spec_t *spec,
                        kg_key_t *out, char *token,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* Find a key by id or access key ("<prefix>_<id>"). KG_ERR_NOT_FOUND. */
kg_err_t kg_keys_get(const kg_keys_ctx_t *ctx, const char *ref, kg_key_t *out,
                     kg_diag_t *diag) KG_MUST_CHECK;

/* Keys by creation time. *list is new; kg_keys_list_free. */
kg_err_t kg_keys_list(const kg_keys_ctx_t *ctx, const kg_key_filter_t *filter,
                      kg_key_t **list, size_t *count,
                      kg_diag_t *diag) KG_MUST_CHECK;

/* Apply spec to a key that is not deleted; audit has before and after. */
kg_err_t kg_keys_update(const kg_keys_ctx_t *ctx, const char *ref,
                        const kg_key_spec_t *spec, kg_key_t *out,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* active → inactive; KG_ERR_STATE for a deleted key. Idempotent. */
kg_err_t kg_keys_disable(const kg_keys_ctx_t *ctx, const char *ref,
                         kg_key_t *out, kg_diag_t *diag) KG_MUST_CHECK;

/* inactive → active; KG_ERR_STATE for a deleted or expired key. */
kg_err_t kg_keys_enable(const kg_keys_ctx_t *ctx, const char *ref,
                        kg_key_t *out, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Issue a new secret for the key (id, limits, rules, history stay). With
 * grace > 0 the current secret stays valid for grace seconds (older ones
 * keep what is left of their own grace); grace 0 ends every earlier secret
 * at once, including those still inside an earlier grace. The new token
 * goes to token, once. KG_ERR_STATE for a deleted key.
 */
kg_err_t kg_keys_rotate(const kg_keys_ctx_t *ctx, const char *ref,
                        int64_t grace, kg_key_t *out, char *token,
                        kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Status → deleted, secrets dropped; row and usage history kept. A key
 * already revoked is left as it is (KG_OK, nothing audited) and *already
 * (may be NULL) says so.
 */
kg_err_t kg_keys_revoke(const kg_keys_ctx_t *ctx, const char *ref,
                        kg_key_t *out, bool *already,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* Remove the key, its secrets and its usage for good (audit stays). */
kg_err_t kg_keys_delete(const kg_keys_ctx_t *ctx, const char *ref,
                        kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Revoke every key past its expiry (status → deleted, audited as
 * "expire") and drop old secrets past their grace. *flipped (may be NULL)
 * gets the number of keys revoked.
 */
kg_err_t kg_keys_purge_expired(const kg_keys_ctx_t *ctx, size_t *flipped,
                               kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Check a parsed token against the store: KG_OK (and *out filled, may be
 * NULL), KG_ERR_INVALID_KEY (unknown id, wrong secret, disabled, deleted),
 * KG_ERR_KEY_EXPIRED, or a store error. Hashes are compared in constant
 * time. The gateway uses a cache in front of this.
 */
kg_err_t kg_keys_verify(const kg_keys_ctx_t *ctx, const kg_token_t *tok,
                        kg_key_t *out, kg_diag_t *diag) KG_MUST_CHECK;

/* Public JSON form (new reference): no secret, no hash. */
json_t *kg_key_to_json(const kg_key_t *key);

/*
 * kg_key_to_json plus the budget as of now: "reserved" (in flight in the
 * running gateways: kg_store_budget_reservation_set), "remaining"
 * (limit − spend − reserved, or null), "periodUsage" of the current period
 * and "periodResetsAt".
 */
json_t *kg_key_to_json_budget(const kg_key_t *key, int64_t now);

void kg_key_clear(kg_key_t *key);
void kg_keys_list_free(kg_key_t **list, size_t count);

/*
 * Move last_used_at of each seen key forward to its time (never back), in
 * one transaction that audits nothing and does not move the key revision;
 * unknown ids are skipped. Returns KG_OK or a store error (nothing
 * written).
 */
kg_err_t kg_keys_touch(const kg_keys_ctx_t *ctx, const kg_key_seen_t *seen,
                       size_t n, kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_KEYS_H */
