/* In-memory spend accounts with reservations: key budgets and credits. */
#ifndef KEYGATE_BUDGET_H
#define KEYGATE_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/period.h"

#ifndef KG_NONE
/* "No limit" / "not set"; the same definition as in keygate/keys.h. */
#define KG_NONE INT64_C(-1)
#endif

/* Longest account id (key ids and workspace ids are 12 characters). */
#define KG_BUDGET_ID_MAX 64
/* Accounts (keys and workspaces together) held when the caller passes 0. */
#define KG_BUDGET_DEFAULT_MAX_ACCOUNTS ((size_t)1 << 20)
/*
 * Every amount the module takes in (limits, spend, costs, balances) is
 * clamped to [-KG_BUDGET_AMOUNT_MAX, KG_BUDGET_AMOUNT_MAX] micro-USD
 * (about 1.15e12 USD, above any limit an operator can set), and every
 * sum saturates there, so no arithmetic can overflow.
 */
#define KG_BUDGET_AMOUNT_MAX (INT64_C(1) << 60)
/* kg_budget_worst_case clamps its token counts and prices to these. */
#define KG_BUDGET_TOKENS_MAX INT64_C(1000000000000)
#define KG_BUDGET_PRICE_MAX  INT64_C(1000000000000)

typedef struct kg_budget kg_budget_t;
/* One account; private to budget.c. */
typedef struct kg_budget_acct kg_budget_acct_t;

/*
 * A key's budget as the store has it (kg_key_view_t carries the same
 * fields). Money in micro-USD, times in unix seconds; KG_NONE (-1) for
 * "no limit" and for an unknown period_started_at.
 */
typedef struct kg_budget_key_state {
    const char *id; /* borrowed, 1..KG_BUDGET_ID_MAX bytes */
    int64_t usage_limit;
    int64_t usage;
    kg_period_t period;
    int64_t period_limit;
    int64_t period_usage;
    int64_t period_started_at;
} kg_budget_key_state_t;

/*
 * A reservation. Belongs to one request; zero it (or use
 * KG_BUDGET_HOLD_INIT) before the first use so that settling a hold that
 * was never granted does nothing. The fields are read-only for callers.
 */
typedef struct kg_budget_hold {
    kg_budget_acct_t *acct; /* private; NULL: never granted */
    char id[KG_BUDGET_ID_MAX + 1];
    bool credits;         /* a workspace credit hold, not a key hold */
    bool live;            /* granted and not settled yet */
    int64_t amount;       /* micro-USD held */
    int64_t period_start; /* key period when reserved; KG_NONE: none */
    /* Set by kg_budget_settle: the start of the period the cost was
     * charged to (KG_NONE: no period, or a credit hold); this is the
     * period_start a usage event for the request carries. */
    int64_t charged_period_start;
} kg_budget_hold_t;

#define KG_BUDGET_HOLD_INIT \
    {                       \
        0                   \
    }

/* A key account as /v1/key, `keys show` and /metrics print it. */
typedef struct kg_budget_key_view {
    int64_t usage_limit; /* KG_NONE: no lifetime limit */
    int64_t usage;       /* settled lifetime spend */
    int64_t reserved;    /* held by requests in flight */
    /* usage_limit - usage - reserved clamped to >= 0; KG_NONE: no limit */
    int64_t remaining;
    kg_period_t period;       /* KG_PERIOD_NONE: the fields below are KG_NONE */
    int64_t period_limit;     /* KG_NONE: no period limit */
    int64_t period_usage;     /* settled spend in the current period */
    int64_t period_reserved;  /* equals reserved: see kg_budget_settle */
    int64_t period_start;     /* current period, unix seconds */
    int64_t period_reset;     /* start of the next period */
    int64_t period_remaining; /* like remaining, for the period limit */
} kg_budget_key_view_t;

/* A workspace credit account. */
typedef struct kg_budget_credits_view {
    int64_t balance;   /* may be negative: see kg_budget_settle */
    int64_t reserved;  /* held by requests in flight */
    int64_t available; /* balance - reserved, clamped to >= 0 */
} kg_budget_credits_view_t;

/* One account as kg_budget_foreach_reserved hands it out. */
typedef struct kg_budget_entry {
    const char *id; /* borrowed for the callback's duration */
    bool credits;   /* a workspace credit account, not a key */
    int64_t reserved;
    int64_t usage;   /* keys: lifetime spend; credits: 0 */
    int64_t balance; /* credits: the balance; keys: 0 */
} kg_budget_entry_t;

typedef void (*kg_budget_foreach_cb)(void *ud, const kg_budget_entry_t *e);

/*
 * Make an empty budget holding at most max_accounts accounts (0:
 * KG_BUDGET_DEFAULT_MAX_ACCOUNTS). Returns KG_OK with *out new (free it
 * with kg_budget_free), or KG_ERR_NOMEM with *out NULL.
 */
kg_err_t kg_budget_new(size_t max_accounts, kg_budget_t **out) KG_MUST_CHECK;

/*
 * Free every account and the budget, set *b to NULL. No other call may be
 * running; outstanding holds must not be settled afterwards. NULL or *b
 * NULL: nothing happens.
 */
void kg_budget_free(kg_budget_t **b);

/*
 * Bring a key's account in line with the store (st borrowed).
 *   - First sight: the account is made with st's numbers (reserved 0).
 *   - Later: the limits (usage_limit, period_limit) and the period kind
 *     are taken at once. Spend in memory is authoritative while the
 *     daemon runs (the usage writer persists it, so the store lags), so
 *     st->usage is taken only when it is higher than memory's (an
 *     operator changed it), and st->period_usage only when it is higher
 *     for the same period, or belongs to a later period. When the period
 *     kind changed, the store's period_usage and period_started_at are
 *     taken as they are (the store restarts the period on such a change).
 *   - A period_started_at that is KG_NONE or not aligned is aligned to the
 *     kind's period containing it; KG_NONE means "the period in force at
 *     the next reserve", keeping period_usage.
 * Lowering usage in the store (a reset) is not seen: memory stays higher.
 * Holds in flight are kept. Returns KG_OK, KG_ERR_INVAL for an empty or
 * too long id, KG_ERR_NOMEM when the account could not be made or the
 * budget already holds max_accounts accounts. Thread-safe; allocates only
 * on first sight.
 */
kg_err_t kg_budget_sync_key(kg_budget_t *b,
                            const kg_budget_key_state_t *st) KG_MUST_CHECK;

/*
 * Reserve amount (micro-USD, >= 0) against key_id's budgets at now (unix
 * seconds). Under the account's lock, first the period is rolled when now
 * is at or past its end (period_usage = 0, period_start = the new start),
 * then:
 *   KG_ERR_USAGE_LIMIT   usage >= usage_limit (even for amount 0), or
 *                        usage + reserved + amount > usage_limit
 *   KG_ERR_PERIOD_LIMIT  the same against period_usage + reserved and
 *                        period_limit
 *   KG_ERR_NOT_FOUND     no account: call kg_budget_sync_key first
 *   KG_ERR_INVAL         amount < 0
 *   KG_OK                the amount is held; *hold says by whom
 * The lifetime limit is checked first. *hold is overwritten: reserving
 * into a live hold loses it (settle it first). On error *hold is zeroed. Holds
 * count against both limits whatever period they were taken in (see
 * kg_budget_settle). Thread-safe; never allocates.
 */
kg_err_t kg_budget_reserve_key(kg_budget_t *b, const char *key_id,
                               int64_t amount, int64_t now,
                               kg_budget_hold_t *hold) KG_MUST_CHECK;

/*
 * Bring a workspace's credit account in line with the store's balance.
 * First sight: balance = persisted. Later: the change since the balance
 * last seen (balance - persisted_seen) is applied to memory's balance as
 * a delta, so an operator's top-up (`workspaces credit`) adds to it
 * without losing the charges of requests in flight or not yet persisted.
 *
 * Protocol with the usage writer: it deducts committed charges from the
 * stored balance (credits_balance = credits_balance - cost) and then calls
 * kg_budget_credits_persisted with the same amount, which moves
 * persisted_seen along so the next sync does not count the charge twice.
 * A sync that reads the store between that commit and that call deducts
 * the charge twice until the next sync, which gives it back.
 *
 * Returns KG_OK, KG_ERR_INVAL for a bad id, KG_ERR_NOMEM (see
 * kg_budget_sync_key). Thread-safe; allocates only on first sight.
 */
kg_err_t kg_budget_sync_credits(kg_budget_t *b, const char *ws_id,
                                int64_t balance) KG_MUST_CHECK;

/*
 * The usage writer committed charged micro-USD of ws_id's charges to the
 * store's balance (see kg_budget_sync_credits). Unknown ws_id: nothing.
 * Thread-safe.
 */
void kg_budget_credits_persisted(kg_budget_t *b, const char *ws_id,
                                 int64_t charged);

/*
 * Reserve amount (>= 0) of ws_id's credits:
 *   KG_ERR_NO_CREDITS  balance <= 0, or balance - reserved < amount
 *   KG_ERR_NOT_FOUND   no account: call kg_budget_sync_credits first
 *   KG_ERR_INVAL       amount < 0
 *   KG_OK              held
 * *hold is overwritten as by kg_budget_reserve_key; on error zeroed.
 * Thread-safe; never allocates.
 */
kg_err_t kg_budget_reserve_credits(kg_budget_t *b, const char *ws_id,
                                   int64_t amount,
                                   kg_budget_hold_t *hold) KG_MUST_CHECK;

/*
 * Release the held amount and charge actual_cost (clamped to >= 0) at now
 * (unix seconds).
 *
 * Key holds: actual_cost is added to usage and to the period_usage of the
 * period containing now (the period is rolled first): a request that
 * straddles a boundary is charged to the period in which it settles, and
 * hold->charged_period_start says which. For that reason a hold counts
 * against the limits of whatever period is current while it is in
 * flight, not only the one it was taken in: a request reserved at
 * 23:59:59 counts against the new day's room after midnight, so neither
 * day's spend passes its limit when actual <= reserved.
 *
 * Credit holds: actual_cost comes off the balance. The balance goes below
 * zero only when a request costs more than its reservation (a request
 * without max_tokens), by at most that excess.
 *
 * Idempotent: a hold that was never granted or is already settled is left
 * alone, so every exit path of a request may call this. Two threads may
 * even race on one hold: exactly one settles it. Thread-safe; never
 * allocates.
 */
void kg_budget_settle(kg_budget_t *b, kg_budget_hold_t *hold,
                      int64_t actual_cost, int64_t now);

/*
 * key_id's account as of now (the period rolled for display only). Returns
 * KG_OK with *out filled, or KG_ERR_NOT_FOUND with *out zeroed.
 * Thread-safe.
 */
kg_err_t kg_budget_key_snapshot(kg_budget_t *b, const char *key_id, int64_t now,
                                kg_budget_key_view_t *out) KG_MUST_CHECK;

/* ws_id's credits: KG_OK, or KG_ERR_NOT_FOUND with *out zeroed. */
kg_err_t
kg_budget_credits_snapshot(kg_budget_t *b, const char *ws_id,
                           kg_budget_credits_view_t *out) KG_MUST_CHECK;

/*
 * Call cb(ud, entry) once for every account (keys, then workspaces), for
 * the writer to persist `reserved` where the CLI can show it. cb runs with
 * the table read-locked and one account locked: it must be quick and must
 * not call any kg_budget_* function. Returns how many accounts were
 * visited.
 */
size_t kg_budget_foreach_reserved(kg_budget_t *b, kg_budget_foreach_cb cb,
                                  void *ud);

/*
 * Leases: when several gateways share a store, an account with a limit
 * (a key with a lifetime or period limit; every credit account) spends
 * only from the room this instance leased from the store
 * (keygate/store_leases.h, docs/scale-out.md "Budgets"). The lease of an
 * account counts its holds; settling a hold takes its cost off the lease.
 * Leases are valid until a monotonic time the caller moves forward after
 * each claim or renewal; once it passes, every lease is void.
 *
 * With leases on, kg_budget_reserve_key and kg_budget_reserve_credits
 * also answer KG_ERR_STATE: the account's limits allow the amount but its
 * lease is void or short by kg_budget_lease_shortfall. The caller claims
 * that much from the store (fresh when kg_budget_leases_lapsed: reset
 * first), adds the grant with kg_budget_lease_add and reserves again.
 */

/* Turn leases on (once, before the first reservation). Thread-safe. */
void kg_budget_leases_enable(kg_budget_t *b);

/* Whether the leases' validity has passed (or was never set). */
bool kg_budget_leases_lapsed(kg_budget_t *b);

/* Leases are valid until until_ms (monotonic ms, kg_clock_mono_us /
 * 1000); the validity only moves forward. Thread-safe. */
void kg_budget_leases_valid(kg_budget_t *b, int64_t until_ms);

/* Forget every lease (they lapsed: the store may have given their room
 * to other instances). Holds stay. Thread-safe. */
void kg_budget_leases_reset(kg_budget_t *b);

/* How much the account's lease lacks for a reservation of amount on top
 * of its holds (0: none, or no such account). Thread-safe. */
int64_t kg_budget_lease_shortfall(kg_budget_t *b, bool credits, const char *id,
                                  int64_t amount);

/* Add a grant (>= 0) to the account's lease: KG_OK or KG_ERR_NOT_FOUND. */
kg_err_t kg_budget_lease_add(kg_budget_t *b, bool credits, const char *id,
                             int64_t amount) KG_MUST_CHECK;

/* The account's lease (0 without one). Thread-safe. */
int64_t kg_budget_lease_held(kg_budget_t *b, bool credits, const char *id);

/* Unused room taken back from an account's lease. */
typedef struct kg_budget_lease_back {
    char id[KG_BUDGET_ID_MAX + 1];
    bool credits;
    int64_t unused;
} kg_budget_lease_back_t;

/*
 * Take back the unused part of the lease (lease - holds) of up to max
 * accounts not reserved on for idle_ms (<= 0: any account, for a stop),
 * and of those whose limits kg_budget_sync_key saw tightened (their
 * unused lease was set aside then), into out[], for the caller to give
 * back to the store. Returns how many
 * were filled; the rest wait for the next call. Thread-safe; never
 * allocates.
 */
size_t kg_budget_leases_take_idle(kg_budget_t *b, int64_t idle_ms,
                                  kg_budget_lease_back_t *out, size_t max);

/* How many key and workspace accounts exist. Thread-safe. */
size_t kg_budget_count(kg_budget_t *b);

/*
 * The worst-case cost in micro-USD of a request with input_tokens of
 * input and up to max_output_tokens of output at these prices (micro-USD
 * per 1M tokens), rounded UP to the next micro-USD. Negative inputs count
 * as 0; tokens are clamped to KG_BUDGET_TOKENS_MAX and prices to
 * KG_BUDGET_PRICE_MAX, and the result never exceeds KG_BUDGET_AMOUNT_MAX,
 * so it cannot overflow.
 */
int64_t kg_budget_worst_case(int64_t input_tokens, int64_t max_output_tokens,
                             int64_t input_price_per_mtok,
                             int64_t output_price_per_mtok);

#endif /* KEYGATE_BUDGET_H */
