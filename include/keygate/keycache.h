/* The in-memory key cache that verifies tokens on the gateway's hot path. */
#ifndef KEYGATE_KEYCACHE_H
#define KEYGATE_KEYCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/keyhash.h"
#include "keygate/keys.h"
#include "keygate/period.h"
#include "keygate/token.h"
#include "keygate/validate.h"
#include "keygate/workspaces.h"

/* Entries (keys and unknown ids) held when the caller passes 0. */
#define KG_KEYCACHE_DEFAULT_MAX_ENTRIES ((size_t)1 << 20)
/* The refresh thread's period when kg_keycache_start gets 0. */
#define KG_KEYCACHE_DEFAULT_INTERVAL_MS 200
/*
 * Live secrets cached per key: the current one and those still in a
 * rotation's grace period, newest first. A key with more (many rotations
 * inside one grace period) has its oldest grace secrets ignored by the
 * cache.
 */
#define KG_KEYCACHE_MAX_SECRETS 16

/*
 * Keys seen (verified) and not yet written to api_keys.last_used_at, at
 * most this many between two kg_keycache_swap_seen calls; a key seen past
 * it is queued again in the next second it is used.
 */
#define KG_KEYCACHE_SEEN_MAX 16384

typedef struct kg_keycache kg_keycache_t;

/*
 * What the gateway needs of a verified key: a copy, nothing in it points
 * into the cache. The key's access rules, its metadata and its workspace's
 * mode and rules are not part of the view yet: the policy layer reads them
 * itself.
 *
 * The fields change only when the store's key revision does (see
 * docs/store.md): status, expiry, limits and rates are current within one
 * refresh interval. usage, period_usage and period_started_at are as they
 * were when the key was loaded into the cache (the usage writer does not
 * bump the revision), so they are a starting point for in-memory
 * accounting, not live totals; name and last4 may lag the same way.
 */
typedef struct kg_key_view {
    char id[KG_TOKEN_ID_LEN + 1];
    char workspace_id[KG_WORKSPACE_ID_LEN + 1];
    char name[KG_NAME_MAX + 1];
    char prefix[KG_TOKEN_PREFIX_MAX + 1];
    char last4[5];
    kg_key_status_t status;
    int64_t expires_at;  /* unix seconds, KG_NONE: never */
    int64_t usage_limit; /* micro-USD, KG_NONE: unlimited */
    int64_t usage;       /* as loaded, micro-USD */
    int64_t period_limit;
    int64_t period_usage;      /* as loaded */
    int64_t period_started_at; /* KG_NONE without a period */
    kg_period_t period;
    int64_t rpm; /* KG_NONE: unlimited */
    int64_t tpm;
    int64_t max_concurrent;
} kg_key_view_t;

/* Counters for /metrics; each is a snapshot, read without a lock. */
typedef struct kg_keycache_stats {
    uint64_t hits;           /* answered from a cached key */
    uint64_t negative_hits;  /* answered from a cached unknown id */
    uint64_t misses;         /* went to the store */
    uint64_t store_errors;   /* misses that failed with a store error */
    uint64_t flushes;        /* times the revision changed and all went */
    uint64_t evictions;      /* entries dropped to stay under max_entries */
    uint64_t refresh_errors; /* refreshes that could not read the store */
    uint64_t entries;        /* cached keys and unknown ids now */
    uint64_t negatives;      /* of which unknown ids */
    int64_t revision;        /* the key revision the entries belong to */
    uint64_t seen_dropped;   /* sightings past KG_KEYCACHE_SEEN_MAX */
} kg_keycache_stats_t;

/*
 * Make a cache in front of the store at store_path, with its own
 * connection (opened here, migrated like any kg_store_open) and at most
 * max_entries entries (0: KG_KEYCACHE_DEFAULT_MAX_ENTRIES). hk is borrowed
 * and must outlive the cache. Returns KG_OK with *out new (free it with
 * kg_keycache_free), or a store error, KG_ERR_NOMEM or KG_ERR_INTERNAL with
 * diag; *out is NULL on error.
 *
 * When full, the cache drops the oldest unknown id first, and the oldest
 * key only when it holds no unknown ids, so a flood of random ids never
 * pushes out the keys in use.
 */
kg_err_t kg_keycache_new(const char *store_path, int busy_timeout_ms,
                         const kg_keyhash_t *hk, size_t max_entries,
                         kg_keycache_t **out, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Stop the refresh thread (if started) and wait for it, close the
 * connection, wipe and free everything, set *c to NULL. No other call on
 * the cache may be running or start. NULL or *c NULL: nothing happens.
 */
void kg_keycache_free(kg_keycache_t **c);

/*
 * Verify a parsed token (borrowed; the caller wipes it) with the same
 * answers as kg_keys_verify at kg_clock_now():
 *   KG_OK               *out (may be NULL) gets the key's view
 *   KG_ERR_INVALID_KEY  unknown id, wrong secret (or a grace secret past
 *                       its grace), wrong prefix, disabled or revoked key
 *   KG_ERR_KEY_EXPIRED  the secret matched but the key has expired
 *   KG_ERR_STORE*       the store could not be read: answer 503, never
 *                       let the request through
 *   KG_ERR_NOMEM
 * On any error *out is zeroed. Thread-safe. A cached key or unknown id is
 * answered under a read lock without allocating or touching the store; a
 * miss reads the store and caches what it found, an unknown id too. On
 * KG_OK the key is noted as seen (kg_keycache_swap_seen).
 */
kg_err_t kg_keycache_verify(kg_keycache_t *c, const kg_token_t *tok,
                            kg_key_view_t *out) KG_MUST_CHECK;

/*
 * Read the store's key revision; when it differs from the one the entries
 * belong to, drop every entry. Returns KG_OK or a store error (the entries
 * stay; they are dropped by the next refresh that can read). Thread-safe.
 */
kg_err_t kg_keycache_refresh(kg_keycache_t *c) KG_MUST_CHECK;

/*
 * Bound how long cached entries answer while the store cannot be read:
 * once no read of the store (a refresh or a miss) has succeeded for
 * seconds, every verification goes to the store, which answers it or
 * fails with a store error (503), never a pass. 0 (the default): cached
 * entries never go stale. Call before the cache is shared.
 */
void kg_keycache_set_stale_after(kg_keycache_t *c, int64_t seconds);

/*
 * Start a thread that calls kg_keycache_refresh every interval_ms (0:
 * KG_KEYCACHE_DEFAULT_INTERVAL_MS, at most 60000); kg_keycache_free stops
 * it. Without it the cache sees store changes only when
 * kg_keycache_refresh is called. Returns KG_OK, KG_ERR_INVAL for a bad
 * interval, KG_ERR_STATE when already started, KG_ERR_INTERNAL when no
 * thread could be made.
 */
kg_err_t kg_keycache_start(kg_keycache_t *c, int interval_ms) KG_MUST_CHECK;

/*
 * Every successful verification notes its key as seen, once per key and
 * second, without touching the store. This hands the sightings over:
 * *buf must be an array of KG_KEYCACHE_SEEN_MAX entries owned by the
 * caller; it is exchanged for the cache's array of sightings (the caller
 * owns that one now and passes it back on the next call; free() it at the
 * end). Returns how many entries of the new *buf are filled; a key may be
 * there more than once, with different times. Thread-safe, O(1).
 */
size_t kg_keycache_swap_seen(kg_keycache_t *c, kg_key_seen_t **buf);

/* Copy the counters into *out. Thread-safe. */
void kg_keycache_stats(const kg_keycache_t *c, kg_keycache_stats_t *out);

#endif /* KEYGATE_KEYCACHE_H */
