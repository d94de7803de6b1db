/* Budget leases between the in-memory accounts and a shared store. */
#ifndef KEYGATE_LEASES_H
#define KEYGATE_LEASES_H

#include <stdbool.h>
#include <stdint.h>

#include "keygate/budget.h"
#include "keygate/err.h"
#include "keygate/store.h"

/*
 * When several gateways share a PostgreSQL store, each spends a budget
 * only from the room it leased (keygate/store_leases.h holds the store's
 * side and its invariant, keygate/budget.h the accounts'). This module
 * moves room between the two: claims when a reservation finds its lease
 * short, renewals, and giving back what idle accounts do not use. Every
 * call takes the store handle the caller serializes (the policy's, under
 * its store lock). docs/scale-out.md, "Budgets", tells the whole story.
 */

/* Leases live this long after each claim or renewal. */
#define KG_LEASES_TTL_MS INT64_C(30000)
/* They are renewed this often (a third of their life). */
#define KG_LEASES_RENEW_MS (KG_LEASES_TTL_MS / 3)
/* An account not reserved on for this long gives its unused room back. */
#define KG_LEASES_IDLE_MS INT64_C(2000)

typedef struct kg_leases {
    bool on;               /* the store is shared */
    int64_t next_renew_ms; /* monotonic */
} kg_leases_t;

/*
 * Start: leases are on when store is shared (kg_store_leases_shared),
 * and then b's accounts spend from leases (kg_budget_leases_enable).
 */
void kg_leases_init(kg_leases_t *l, kg_budget_t *b, const kg_store_t *store);

/*
 * A reservation of amount on account (credits, id) at now (unix seconds)
 * found its lease short (KG_ERR_STATE): claim from the store the
 * shortfall or, when more is free, half the free room per live instance
 * (kg_store_leases_claim). When every lease
 * lapsed, they are forgotten and the claim starts afresh. Returns KG_OK
 * (also when another thread's claim already covers it: reserve again),
 * KG_ERR_USAGE_LIMIT / KG_ERR_PERIOD_LIMIT / KG_ERR_NO_CREDITS when the
 * store has not that much room left, or a store error (diag).
 */
kg_err_t kg_leases_claim(kg_leases_t *l, kg_budget_t *b, kg_store_t *store,
                         bool credits, const char *id, int64_t amount,
                         int64_t now, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Once a second: give back the unused room of idle accounts, and renew
 * this instance's leases when due. A store that fails leaves the room
 * counted in the store (never more spent) until the leases expire.
 */
void kg_leases_tick(kg_leases_t *l, kg_budget_t *b, kg_store_t *store);

/* At a stop, after the usage writer has written what it could: give
 * back every lease's unused room. */
void kg_leases_stop(kg_leases_t *l, kg_budget_t *b, kg_store_t *store);

#endif /* KEYGATE_LEASES_H */
