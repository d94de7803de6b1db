/* The store's API key rows and secrets: backend-neutral declarations. */
#ifndef KEYGATE_STORE_KEYS_H
#define KEYGATE_STORE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/keycache.h"
#include "keygate/keyhash.h"
#include "keygate/keys.h"
#include "keygate/store.h"
#include "keygate/token.h"

/*
 * A key row is the keys module's kg_key_t (plain C: fixed strings, owned
 * strings, numbers, KG_NONE for an absent one), the key cache's row its
 * kg_key_view_t. The store never holds a secret: a secret row is the keyed
 * hash of the token's secret (keyhash.h) and its end of grace.
 *
 * Every write that belongs to a lifecycle change runs inside the caller's
 * kg_store_begin/commit; a change to a key's status, expiry, limits, rates,
 * rules or secrets moves the key revision (see docs/store.md), which the
 * key cache reads.
 */

/* One secret of a key: its keyed hash, never the secret. */
typedef struct kg_store_key_secret {
    unsigned char hash[KG_KEYHASH_LEN];
    int64_t expires_at; /* end of its grace; KG_NONE: the current secret */
} kg_store_key_secret_t;

/* Called once per secret by kg_store_key_secret_each; s is borrowed (and
 * wiped after the call). */
typedef void (*kg_store_key_secret_fn)(void *arg,
                                       const kg_store_key_secret_t *s);

/*
 * Read the key id into *out with its workspace's name, and in grace_until
 * the latest end of grace among its secrets (KG_NONE: none, past or not;
 * the caller judges it against the clock). The strings of *out are new
 * (kg_key_clear, also on error). KG_OK, KG_ERR_NOT_FOUND (no diag) or a
 * store error. Inside a transaction the read decides the writes that
 * follow: on PostgreSQL it locks the key's row until the commit (SQLite's
 * transaction already keeps every other writer out).
 */
kg_err_t kg_store_key_get(kg_store_t *store, const char *id, kg_key_t *out,
                          kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The keys that filter selects, as kg_store_key_get reads them, in its
 * order and after its cursor, at most filter->limit (0: all). Here
 * filter->workspace is a workspace id (or NULL), never a name. *out is new
 * (kg_keys_list_free), *count its length; both empty on error.
 */
kg_err_t kg_store_key_list(kg_store_t *store, const kg_key_filter_t *filter,
                           kg_key_t **out, size_t *count,
                           kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Insert a new active key: id, workspace_id, name, description, metadata,
 * rules, prefix, last4, created_at, updated_at, expiry, limits, period and
 * rates of k (usage, last use and grace are not written). KG_ERR_EXISTS
 * when the id is taken, else a store error.
 */
kg_err_t kg_store_key_insert(kg_store_t *store, const kg_key_t *k,
                             kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Write the settings of k to its row: name, description, metadata, rules,
 * expiry, usage limit, period, period limit, rates, and updated_at = now.
 * With reset_period the period's spend restarts: period_usage = 0 and
 * period_started_at = k->period_started_at; without it both are left as
 * they are (the usage writer adds to them). Spend and last use are never
 * written. KG_OK (also for an unknown id) or a store error.
 */
kg_err_t kg_store_key_update(kg_store_t *store, const kg_key_t *k,
                             bool reset_period, int64_t now,
                             kg_diag_t *diag) KG_MUST_CHECK;

/* Set the key's status and updated_at = now. KG_OK or a store error. */
kg_err_t kg_store_key_set_status(kg_store_t *store, const char *id,
                                 kg_key_status_t status, int64_t now,
                                 kg_diag_t *diag) KG_MUST_CHECK;

/* Set the key's last4 (a new secret's) and updated_at = now. */
kg_err_t kg_store_key_set_last4(kg_store_t *store, const char *id,
                                const char *last4, int64_t now,
                                kg_diag_t *diag) KG_MUST_CHECK;

/* Remove the key's row with its secrets and usage. KG_OK or a store error. */
kg_err_t kg_store_key_delete(kg_store_t *store, const char *id,
                             kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The ids of at most max keys, not revoked, whose expiry is at or before
 * now, in ids (max entries); *n how many. The caller revokes them in the
 * same transaction and asks again until none is left. On PostgreSQL the
 * keys stay locked until the commit (taken in id order).
 */
#define KG_STORE_KEYS_EXPIRED_BATCH 1000
kg_err_t kg_store_key_expired(kg_store_t *store, int64_t now,
                              char (*ids)[KG_TOKEN_ID_LEN + 1], size_t max,
                              size_t *n, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Move last_used_at of each of the n seen keys forward to its time, never
 * back; unknown ids are skipped. The key revision does not move. Inside
 * the caller's transaction; KG_OK or a store error.
 */
kg_err_t kg_store_key_touch(kg_store_t *store, const kg_key_seen_t *seen,
                            size_t n, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Add hash as the key's current secret (no end of grace), made at
 * created_at. KG_OK or a store error.
 */
kg_err_t kg_store_key_secret_add(kg_store_t *store, const char *id,
                                 const unsigned char hash[KG_KEYHASH_LEN],
                                 int64_t created_at,
                                 kg_diag_t *diag) KG_MUST_CHECK;

/* Give the key's current secret(s) an end of grace at until. */
kg_err_t kg_store_key_secret_grace(kg_store_t *store, const char *id,
                                   int64_t until,
                                   kg_diag_t *diag) KG_MUST_CHECK;

/* Drop every secret of the key, in grace or not. */
kg_err_t kg_store_key_secret_drop(kg_store_t *store, const char *id,
                                  kg_diag_t *diag) KG_MUST_CHECK;

/* Drop the secrets of every key whose grace ended at or before now. */
kg_err_t kg_store_key_secret_drop_stale(kg_store_t *store, int64_t now,
                                        kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Call fn(arg, secret) for each secret of the key still valid at now (the
 * current one, and those whose grace ends after now), in no set order.
 * KG_OK (also for none) or a store error.
 */
kg_err_t kg_store_key_secret_each(kg_store_t *store, const char *id,
                                  int64_t now, kg_store_key_secret_fn fn,
                                  void *arg, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The key revision: a number that moves whenever something a verification
 * or a policy depends on changes (a key's status, expiry, limits, rates,
 * rules or secrets; a workspace's mode, rules or credentials). Read alone,
 * without a transaction. KG_OK with *rev, KG_ERR_STORE_CORRUPT when the
 * store has none, or a store error.
 */
kg_err_t kg_store_key_revision(kg_store_t *store, int64_t *rev,
                               kg_diag_t *diag) KG_MUST_CHECK;

/*
 * For the key cache: in one consistent read, the key revision (*rev), the
 * view of the key id (*found false when the store has no such key) and at
 * most max of its secrets, past their grace or not: the current one first,
 * then by end of grace, latest first (*n of them in secrets). Starts and
 * ends its own read (the caller holds no transaction). KG_OK or a store
 * error; secrets may hold rows on error and are the caller's to wipe.
 */
kg_err_t kg_store_key_load_view(kg_store_t *store, const char *id, int64_t *rev,
                                kg_key_view_t *view, bool *found,
                                kg_store_key_secret_t *secrets, size_t max,
                                size_t *n, kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_KEYS_H */
