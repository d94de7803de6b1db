/* Budget leases: slices of a key's budget or a workspace's credits that
 * one instance of several sharing a store may spend. */
#ifndef KEYGATE_STORE_LEASES_H
#define KEYGATE_STORE_LEASES_H

#include <stdbool.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"

/*
 * Backend-neutral. Several gateways on one PostgreSQL store must not each
 * spend what remains of a budget (docs/scale-out.md, "Budgets"). Each
 * instance spends from leases it claims: rows (scope, id, instance,
 * granted, expires_at) in the store. The store keeps, for every account,
 *
 *     committed spend + Σ granted of the live leases <= limit
 *
 * (for a key: its lifetime limit and its current period's limit; for a
 * workspace: spend is what left the balance, so Σ granted <= balance). A
 * claim grants only room that keeps it; the usage writer, charging
 * committed cost, takes the same cost off its own lease in the same
 * transaction (kg_store_usage_charge_key / _credits), so the sum does not
 * move; returning unused room lowers granted. A lease whose instance
 * stopped renewing it expires, and its room is the others' again.
 *
 * Only a store that several gateways share has leases
 * (kg_store_leases_shared); SQLite serves one gateway, whose in-memory
 * accounts are exact on their own. Times are the server's, so instances
 * never compare their clocks. Every lease is the handle's instance's
 * (kg_store_instance).
 */

/* Lease scopes. */
typedef enum kg_store_lease_scope {
    KG_STORE_LEASE_KEY = 0, /* a key's lifetime and period budgets */
    KG_STORE_LEASE_CREDITS, /* a workspace's credits */
} kg_store_lease_scope_t;

/* What a claim asks for. */
typedef struct kg_store_lease_claim {
    kg_store_lease_scope_t scope;
    const char *id; /* the key's or the workspace's id */
    /* The least worth granting (micro-USD, >= 0): the request that asks. */
    int64_t need;
    /* The most to take (>= need): the store grants
     * clamp(room / (2 × live instances), need, want), so one instance
     * does not take what the others will ask for. */
    int64_t want;
    int64_t ttl_ms; /* leases live this long after each renewal (> 0) */
    int64_t now;    /* unix seconds: which period of a key is current */
    /* Drop every lease of this instance first: its own count of them was
     * lost (a lapse). */
    bool fresh;
} kg_store_lease_claim_t;

/*
 * Whether the handle's store is shared by several gateways and so needs
 * leases (PostgreSQL: true; SQLite: false).
 */
bool kg_store_leases_shared(const kg_store_t *store);

/*
 * Claim room in one transaction: lock the account's row, drop expired
 * leases of every instance on it, sum the live ones, grant g in
 * [need, want] (see want) to this instance (added to its lease, created
 * when missing), and renew every lease of this instance for ttl_ms.
 * Returns KG_OK with *granted = g, or with *granted = 0 and
 *   KG_ERR_USAGE_LIMIT   the key's lifetime room is below need
 *   KG_ERR_PERIOD_LIMIT  its current period's room is below need
 *   KG_ERR_NO_CREDITS    the workspace's room is below need
 *   KG_ERR_NOT_FOUND     no such key or workspace (no diag)
 *   KG_ERR_INVAL         bad arguments (no diag)
 *   a store error (diag)
 * Nothing is granted on error.
 */
kg_err_t kg_store_leases_claim(kg_store_t *store,
                               const kg_store_lease_claim_t *claim,
                               int64_t *granted, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Give back amount (>= 0) of this instance's lease on (scope, id): granted
 * goes down by it, never below zero. KG_OK (also when there is no such
 * lease) or a store error (diag).
 */
kg_err_t kg_store_leases_return(kg_store_t *store, kg_store_lease_scope_t scope,
                                const char *id, int64_t amount,
                                kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Renew every lease of this instance for ttl_ms (> 0) from the server's
 * now, and drop its empty ones. KG_OK or a store error (diag).
 */
kg_err_t kg_store_leases_renew(kg_store_t *store, int64_t ttl_ms,
                               kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The live granted sum on (scope, id) over all instances, into *outstanding
 * (for `keys show` and tests). KG_OK or a store error (diag).
 */
kg_err_t kg_store_leases_outstanding(kg_store_t *store,
                                     kg_store_lease_scope_t scope,
                                     const char *id, int64_t *outstanding,
                                     kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_LEASES_H */
