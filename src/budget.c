/* In-memory spend accounts with reservations: key budgets and credits. */

/* For pthread_rwlockattr_setkind_np: a writer-preferring table lock, so a
 * steady stream of reservations cannot starve the making of an account. */
#define _GNU_SOURCE
#include "keygate/budget.h"
#include "keygate/clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* An allocation failure inside uthash leaves the item out of the table
 * (item->hh.tbl == NULL) instead of exiting the process. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#define BG_MICRO INT64_C(1000000)

/* The numbers of an account, copied out whole for snapshots. */
typedef struct bg_state {
    int64_t reserved; /* sum of the live holds' amounts */
    /* Key accounts. */
    int64_t usage_limit; /* KG_NONE: none */
    int64_t usage;
    kg_period_t period;
    int64_t period_limit; /* KG_NONE: none */
    int64_t period_usage;
    int64_t period_start; /* KG_NONE: set at the next use */
    int64_t period_end;   /* kg_period_next of period_start */
    /* Credit accounts. */
    int64_t balance;
    int64_t persisted_seen; /* the store's balance as last reflected */
    /* Leases (kg_budget_leases_enable): the room this instance may spend,
     * holds included: granted less what it settled since. */
    int64_t lease;
    int64_t lease_used_ms; /* monotonic ms of the last reservation */
    int64_t lease_back;    /* taken off the lease, to give back at once */
} bg_state_t;

/*
 * One account. s is read and written under mu; id, credits and hh are
 * fixed once the account is in its table. Accounts are
 * freed only by kg_budget_free, so a hold may keep a pointer to one.
 */
struct kg_budget_acct {
    UT_hash_handle hh;
    char id[KG_BUDGET_ID_MAX + 1];
    bool credits;
    pthread_mutex_t mu;
    bg_state_t s;
};

struct kg_budget {
    size_t max_accounts;
    /* Both tables: looked up under the read lock, added to under the
     * write lock. Lock order: lock, then an account's mu. */
    pthread_rwlock_t lock;
    kg_budget_acct_t *keys;
    kg_budget_acct_t *workspaces;
    /* Leases: on for a shared store; their validity, monotonic ms. */
    atomic_bool leases;
    _Atomic int64_t lease_valid_until;
};

/* v clamped to [-KG_BUDGET_AMOUNT_MAX, KG_BUDGET_AMOUNT_MAX]. */
static int64_t bg_clamp(int64_t v)
{
    if (v > KG_BUDGET_AMOUNT_MAX) {
        return KG_BUDGET_AMOUNT_MAX;
    }
    if (v < -KG_BUDGET_AMOUNT_MAX) {
        return -KG_BUDGET_AMOUNT_MAX;
    }
    return v;
}

/* a + b for clamped a and b, saturating: |a + b| <= 2^61 cannot overflow. */
static int64_t bg_add(int64_t a, int64_t b)
{
    return bg_clamp(bg_clamp(a) + bg_clamp(b));
}

/* A limit as stored: any negative value means none. */
static int64_t bg_limit(int64_t v)
{
    return v < 0 ? KG_NONE : bg_clamp(v);
}

/* A spend as stored: never negative. */
static int64_t bg_spend(int64_t v)
{
    return v < 0 ? 0 : bg_clamp(v);
}

static bool bg_id_ok(const char *id)
{
    return id != NULL && id[0] != '\0' &&
           strnlen(id, KG_BUDGET_ID_MAX + 1) <= KG_BUDGET_ID_MAX;
}

kg_err_t kg_budget_new(size_t max_accounts, kg_budget_t **out)
{
    kg_err_t rc = KG_OK;
    kg_budget_t *b = NULL;
    pthread_rwlockattr_t attr;
    bool attr_made = false;

    *out = NULL;
    b = calloc(1, sizeof(*b));
    if (b == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    b->max_accounts =
        max_accounts == 0 ? KG_BUDGET_DEFAULT_MAX_ACCOUNTS : max_accounts;
    if (pthread_rwlockattr_init(&attr) != 0) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    attr_made = true;
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_rwlock_init(&b->lock, &attr) != 0) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    *out = b;
    b = NULL;
out:
    if (attr_made) {
        pthread_rwlockattr_destroy(&attr);
    }
    free(b);
    return rc;
}

static void bg_table_free(kg_budget_acct_t **table)
{
    kg_budget_acct_t *a = NULL;
    kg_budget_acct_t *tmp = NULL;

    HASH_ITER(hh, *table, a, tmp)
    {
        HASH_DEL(*table, a);
        pthread_mutex_destroy(&a->mu);
        free(a);
    }
    *table = NULL;
}

void kg_budget_free(kg_budget_t **b)
{
    if (b == NULL || *b == NULL) {
        return;
    }
    bg_table_free(&(*b)->keys);
    bg_table_free(&(*b)->workspaces);
    pthread_rwlock_destroy(&(*b)->lock);
    free(*b);
    *b = NULL;
}

/* The account id in the table (credits or keys), or NULL. */
static kg_budget_acct_t *bg_find(kg_budget_t *b, bool credits, const char *id)
{
    kg_budget_acct_t *a = NULL;

    if (!bg_id_ok(id)) {
        return NULL;
    }
    pthread_rwlock_rdlock(&b->lock);
    if (credits) {
        HASH_FIND_STR(b->workspaces, id, a);
    } else {
        HASH_FIND_STR(b->keys, id, a);
    }
    pthread_rwlock_unlock(&b->lock);
    return a;
}

/*
 * The account id in the table, made by init(a, arg) when missing. Returns
 * KG_OK with *out set and *made telling whether it is new, or
 * KG_ERR_NOMEM.
 */
static kg_err_t bg_get(kg_budget_t *b, bool credits, const char *id,
                       kg_budget_acct_t **out, bool *made)
{
    kg_err_t rc = KG_OK;
    kg_budget_acct_t **table = credits ? &b->workspaces : &b->keys;
    kg_budget_acct_t *a = bg_find(b, credits, id);
    bool locked = false;

    *made = false;
    if (a != NULL) {
        goto out;
    }
    pthread_rwlock_wrlock(&b->lock);
    locked = true;
    HASH_FIND_STR(*table, id, a);
    if (a != NULL) {
        goto out;
    }
    if (HASH_COUNT(b->keys) + HASH_COUNT(b->workspaces) >= b->max_accounts) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    if (pthread_mutex_init(&a->mu, NULL) != 0) {
        free(a);
        a = NULL;
        rc = KG_ERR_NOMEM;
        goto out;
    }
    memcpy(a->id, id, strlen(id) + 1);
    a->credits = credits;
    a->s.usage_limit = KG_NONE;
    a->s.period_limit = KG_NONE;
    a->s.period_start = KG_NONE;
    a->s.period_end = KG_NONE;
    HASH_ADD_STR(*table, id, a);
    if (a->hh.tbl == NULL) {
        pthread_mutex_destroy(&a->mu);
        free(a);
        a = NULL;
        rc = KG_ERR_NOMEM;
        goto out;
    }
    *made = true;
out:
    if (locked) {
        pthread_rwlock_unlock(&b->lock);
    }
    *out = a;
    return rc;
}

/* Set s's period to the one containing start (KG_NONE: unknown). */
static void bg_period_set(bg_state_t *s, int64_t start)
{
    if (s->period == KG_PERIOD_NONE || start == KG_NONE) {
        s->period_start = KG_NONE;
        s->period_end = KG_NONE;
        return;
    }
    s->period_start = kg_period_start(s->period, start);
    s->period_end = kg_period_next(s->period, s->period_start);
}

/* The store's period start, aligned; KG_NONE when unknown or no period. */
static int64_t bg_aligned_start(kg_period_t period, int64_t started_at)
{
    if (period == KG_PERIOD_NONE || started_at < 0) {
        return KG_NONE;
    }
    return kg_period_start(period, started_at);
}

/*
 * Make s's period the one containing now (its lock held): an unknown start
 * becomes the current period keeping period_usage; a period that has
 * ended restarts at zero. A clock that went back changes nothing.
 */
static void bg_roll(bg_state_t *s, int64_t now)
{
    if (s->period == KG_PERIOD_NONE) {
        return;
    }
    if (s->period_start == KG_NONE) {
        bg_period_set(s, now);
        return;
    }
    if (now >= s->period_end) {
        bg_period_set(s, now);
        s->period_usage = 0;
    }
}

/* Take st's period into a (a->mu held), following kg_budget_sync_key. */
static void bg_sync_period(kg_budget_acct_t *a, const kg_budget_key_state_t *st,
                           bool made)
{
    kg_period_t kind = st->period;
    int64_t start = KG_NONE;
    int64_t usage = bg_spend(st->period_usage);

    if ((int)kind < (int)KG_PERIOD_NONE || kind > KG_PERIOD_MONTH) {
        kind = KG_PERIOD_NONE;
    }
    start = bg_aligned_start(kind, st->period_started_at);
    if (made || kind != a->s.period) {
        a->s.period = kind;
        bg_period_set(&a->s, start);
        a->s.period_usage = kind == KG_PERIOD_NONE ? 0 : usage;
        return;
    }
    if (kind == KG_PERIOD_NONE || start == KG_NONE) {
        return;
    }
    if (a->s.period_start == KG_NONE || start > a->s.period_start) {
        bg_period_set(&a->s, start);
        a->s.period_usage = usage;
    } else if (start == a->s.period_start && usage > a->s.period_usage) {
        a->s.period_usage = usage;
    }
}

/* Whether limit now is tighter than before (KG_NONE: none). */
static bool bg_tighter(int64_t before, int64_t now)
{
    return now != KG_NONE && (before == KG_NONE || now < before);
}

kg_err_t kg_budget_sync_key(kg_budget_t *b, const kg_budget_key_state_t *st)
{
    kg_err_t rc = KG_OK;
    kg_budget_acct_t *a = NULL;
    bool made = false;

    if (!bg_id_ok(st->id)) {
        rc = KG_ERR_INVAL;
        goto out;
    }
    rc = bg_get(b, false, st->id, &a, &made);
    if (rc != KG_OK) {
        goto out;
    }
    pthread_mutex_lock(&a->mu);
    if (!made && (bg_tighter(a->s.usage_limit, bg_limit(st->usage_limit)) ||
                  bg_tighter(a->s.period_limit, bg_limit(st->period_limit)))) {
        /* Room leased under the old limits goes back at the next tick;
         * new room is claimed under the new ones. */
        if (a->s.lease > a->s.reserved) {
            a->s.lease_back =
                bg_add(a->s.lease_back, a->s.lease - a->s.reserved);
            a->s.lease = a->s.reserved;
        }
    }
    a->s.usage_limit = bg_limit(st->usage_limit);
    a->s.period_limit = bg_limit(st->period_limit);
    if (made || bg_spend(st->usage) > a->s.usage) {
        a->s.usage = bg_spend(st->usage);
    }
    bg_sync_period(a, st, made);
    pthread_mutex_unlock(&a->mu);
out:
    return rc;
}

/*
 * Whether spend + reserved + amount fits limit, and spend has not reached
 * it (all clamped, so the sum cannot overflow).
 */
static bool bg_fits(int64_t limit, int64_t spend, int64_t reserved,
                    int64_t amount)
{
    if (limit == KG_NONE) {
        return true;
    }
    return spend < limit && spend + reserved + amount <= limit;
}

/* Monotonic milliseconds. */
static int64_t bg_mono_ms(void)
{
    return kg_clock_mono_us() / 1000;
}

/*
 * Whether a reservation of amount on account a (locked) must wait for a
 * lease: leases are on, the account has a limit (a key's lifetime or
 * period limit; credits always), and the lease is void or too small.
 * Marks the account used.
 */
static bool bg_lease_short(kg_budget_t *b, kg_budget_acct_t *a, int64_t amount)
{
    int64_t now;

    if (!atomic_load(&b->leases)) {
        return false;
    }
    if (!a->credits && a->s.usage_limit == KG_NONE &&
        (a->s.period == KG_PERIOD_NONE || a->s.period_limit == KG_NONE)) {
        return false;
    }
    now = bg_mono_ms();
    a->s.lease_used_ms = now;
    return now >= atomic_load(&b->lease_valid_until) ||
           bg_add(a->s.reserved, amount) > a->s.lease;
}

static void bg_hold_fill(kg_budget_hold_t *hold, kg_budget_acct_t *a,
                         int64_t amount, int64_t period_start)
{
    hold->acct = a;
    memcpy(hold->id, a->id, sizeof(hold->id));
    hold->credits = a->credits;
    hold->live = true;
    hold->amount = amount;
    hold->period_start = period_start;
    hold->charged_period_start = KG_NONE;
}

kg_err_t kg_budget_reserve_key(kg_budget_t *b, const char *key_id,
                               int64_t amount, int64_t now,
                               kg_budget_hold_t *hold)
{
    kg_err_t rc = KG_OK;
    kg_budget_acct_t *a = NULL;

    memset(hold, 0, sizeof(*hold));
    if (amount < 0) {
        rc = KG_ERR_INVAL;
        goto out;
    }
    amount = bg_clamp(amount);
    a = bg_find(b, false, key_id);
    if (a == NULL) {
        rc = KG_ERR_NOT_FOUND;
        goto out;
    }
    pthread_mutex_lock(&a->mu);
    bg_roll(&a->s, now);
    if (!bg_fits(a->s.usage_limit, a->s.usage, a->s.reserved, amount)) {
        rc = KG_ERR_USAGE_LIMIT;
    } else if (a->s.period != KG_PERIOD_NONE &&
               !bg_fits(a->s.period_limit, a->s.period_usage, a->s.reserved,
                        amount)) {
        rc = KG_ERR_PERIOD_LIMIT;
    } else if (bg_lease_short(b, a, amount)) {
        rc = KG_ERR_STATE;
    } else {
        a->s.reserved = bg_add(a->s.reserved, amount);
        bg_hold_fill(hold, a, amount, a->s.period_start);
    }
    pthread_mutex_unlock(&a->mu);
out:
    return rc;
}

kg_err_t kg_budget_sync_credits(kg_budget_t *b, const char *ws_id,
                                int64_t balance)
{
    kg_err_t rc = KG_OK;
    kg_budget_acct_t *a = NULL;
    bool made = false;

    if (!bg_id_ok(ws_id)) {
        rc = KG_ERR_INVAL;
        goto out;
    }
    rc = bg_get(b, true, ws_id, &a, &made);
    if (rc != KG_OK) {
        goto out;
    }
    balance = bg_clamp(balance);
    pthread_mutex_lock(&a->mu);
    if (made) {
        a->s.balance = balance;
    } else {
        /* All three within +-2^60: the sum fits before it is clamped. */
        a->s.balance = bg_clamp(a->s.balance + (balance - a->s.persisted_seen));
    }
    a->s.persisted_seen = balance;
    pthread_mutex_unlock(&a->mu);
out:
    return rc;
}

void kg_budget_credits_persisted(kg_budget_t *b, const char *ws_id,
                                 int64_t charged)
{
    kg_budget_acct_t *a = bg_find(b, true, ws_id);

    if (a == NULL) {
        return;
    }
    pthread_mutex_lock(&a->mu);
    a->s.persisted_seen = bg_add(a->s.persisted_seen, -bg_clamp(charged));
    pthread_mutex_unlock(&a->mu);
}

kg_err_t kg_budget_reserve_credits(kg_budget_t *b, const char *ws_id,
                                   int64_t amount, kg_budget_hold_t *hold)
{
    kg_err_t rc = KG_OK;
    kg_budget_acct_t *a = NULL;

    memset(hold, 0, sizeof(*hold));
    if (amount < 0) {
        rc = KG_ERR_INVAL;
        goto out;
    }
    amount = bg_clamp(amount);
    a = bg_find(b, true, ws_id);
    if (a == NULL) {
        rc = KG_ERR_NOT_FOUND;
        goto out;
    }
    pthread_mutex_lock(&a->mu);
    if (a->s.balance <= 0 || a->s.balance - a->s.reserved < amount) {
        rc = KG_ERR_NO_CREDITS;
    } else if (bg_lease_short(b, a, amount)) {
        rc = KG_ERR_STATE;
    } else {
        a->s.reserved = bg_add(a->s.reserved, amount);
        bg_hold_fill(hold, a, amount, KG_NONE);
    }
    pthread_mutex_unlock(&a->mu);
out:
    return rc;
}

void kg_budget_settle(kg_budget_t *b, kg_budget_hold_t *hold,
                      int64_t actual_cost, int64_t now)
{
    kg_budget_acct_t *a = hold->acct;
    int64_t cost = bg_spend(actual_cost);

    (void)b;
    if (a == NULL) {
        return;
    }
    /* live is read and cleared under the account's lock: of two threads
     * settling one hold, exactly one sees it live. */
    pthread_mutex_lock(&a->mu);
    if (!hold->live) {
        goto out;
    }
    hold->live = false;
    a->s.reserved = a->s.reserved - hold->amount;
    if (a->s.reserved < 0) {
        a->s.reserved = 0; /* only after saturation */
    }
    /* Spent from the lease (the store's grant shrinks when the usage
     * writer commits the cost). */
    a->s.lease = a->s.lease > cost ? a->s.lease - cost : 0;
    if (a->credits) {
        a->s.balance = bg_add(a->s.balance, -cost);
        goto out;
    }
    a->s.usage = bg_add(a->s.usage, cost);
    bg_roll(&a->s, now);
    if (a->s.period != KG_PERIOD_NONE) {
        a->s.period_usage = bg_add(a->s.period_usage, cost);
        hold->charged_period_start = a->s.period_start;
    }
out:
    pthread_mutex_unlock(&a->mu);
}

/* limit - spend - reserved clamped to >= 0; KG_NONE without a limit. */
static int64_t bg_remaining(int64_t limit, int64_t spend, int64_t reserved)
{
    int64_t left = 0;

    if (limit == KG_NONE) {
        return KG_NONE;
    }
    left = limit - spend - reserved;
    return left < 0 ? 0 : left;
}

kg_err_t kg_budget_key_snapshot(kg_budget_t *b, const char *key_id, int64_t now,
                                kg_budget_key_view_t *out)
{
    kg_budget_acct_t *a = bg_find(b, false, key_id);
    bg_state_t copy;

    memset(out, 0, sizeof(*out));
    if (a == NULL) {
        return KG_ERR_NOT_FOUND;
    }
    pthread_mutex_lock(&a->mu);
    copy = a->s;
    pthread_mutex_unlock(&a->mu);
    bg_roll(&copy, now); /* on the copy: display only */
    out->usage_limit = copy.usage_limit;
    out->usage = copy.usage;
    out->reserved = copy.reserved;
    out->remaining = bg_remaining(copy.usage_limit, copy.usage, copy.reserved);
    out->period = copy.period;
    out->period_limit = KG_NONE;
    out->period_usage = KG_NONE;
    out->period_reserved = KG_NONE;
    out->period_start = KG_NONE;
    out->period_reset = KG_NONE;
    out->period_remaining = KG_NONE;
    if (copy.period != KG_PERIOD_NONE) {
        out->period_limit = copy.period_limit;
        out->period_usage = copy.period_usage;
        out->period_reserved = copy.reserved;
        out->period_start = copy.period_start;
        out->period_reset = copy.period_end;
        out->period_remaining =
            bg_remaining(copy.period_limit, copy.period_usage, copy.reserved);
    }
    return KG_OK;
}

kg_err_t kg_budget_credits_snapshot(kg_budget_t *b, const char *ws_id,
                                    kg_budget_credits_view_t *out)
{
    kg_budget_acct_t *a = bg_find(b, true, ws_id);
    int64_t available = 0;

    memset(out, 0, sizeof(*out));
    if (a == NULL) {
        return KG_ERR_NOT_FOUND;
    }
    pthread_mutex_lock(&a->mu);
    out->balance = a->s.balance;
    out->reserved = a->s.reserved;
    pthread_mutex_unlock(&a->mu);
    available = out->balance - out->reserved;
    out->available = available < 0 ? 0 : available;
    return KG_OK;
}

static size_t bg_visit(kg_budget_acct_t *table, kg_budget_foreach_cb cb,
                       void *ud)
{
    kg_budget_acct_t *a = NULL;
    kg_budget_acct_t *tmp = NULL;
    kg_budget_entry_t e;
    size_t n = 0;

    HASH_ITER(hh, table, a, tmp)
    {
        pthread_mutex_lock(&a->mu);
        e.id = a->id;
        e.credits = a->credits;
        e.reserved = a->s.reserved;
        e.usage = a->credits ? 0 : a->s.usage;
        e.balance = a->credits ? a->s.balance : 0;
        pthread_mutex_unlock(&a->mu);
        cb(ud, &e);
        n++;
    }
    return n;
}

size_t kg_budget_foreach_reserved(kg_budget_t *b, kg_budget_foreach_cb cb,
                                  void *ud)
{
    size_t n = 0;

    pthread_rwlock_rdlock(&b->lock);
    n += bg_visit(b->keys, cb, ud);
    n += bg_visit(b->workspaces, cb, ud);
    pthread_rwlock_unlock(&b->lock);
    return n;
}

void kg_budget_leases_enable(kg_budget_t *b)
{
    atomic_store(&b->leases, true);
}

bool kg_budget_leases_lapsed(kg_budget_t *b)
{
    return bg_mono_ms() >= atomic_load(&b->lease_valid_until);
}

void kg_budget_leases_valid(kg_budget_t *b, int64_t until_ms)
{
    int64_t cur = atomic_load(&b->lease_valid_until);

    while (until_ms > cur && !atomic_compare_exchange_weak(
                                 &b->lease_valid_until, &cur, until_ms)) {
    }
}

/* Zero the leases of every account of table. */
static void bg_leases_zero(kg_budget_acct_t *table)
{
    kg_budget_acct_t *a = NULL;
    kg_budget_acct_t *tmp = NULL;

    HASH_ITER(hh, table, a, tmp)
    {
        pthread_mutex_lock(&a->mu);
        a->s.lease = 0;
        pthread_mutex_unlock(&a->mu);
    }
}

void kg_budget_leases_reset(kg_budget_t *b)
{
    pthread_rwlock_rdlock(&b->lock);
    bg_leases_zero(b->keys);
    bg_leases_zero(b->workspaces);
    pthread_rwlock_unlock(&b->lock);
}

int64_t kg_budget_lease_shortfall(kg_budget_t *b, bool credits, const char *id,
                                  int64_t amount)
{
    kg_budget_acct_t *a = bg_find(b, credits, id);
    int64_t need = 0;

    if (a == NULL) {
        return 0;
    }
    pthread_mutex_lock(&a->mu);
    need = bg_add(bg_add(a->s.reserved, bg_spend(amount)), -a->s.lease);
    pthread_mutex_unlock(&a->mu);
    return need > 0 ? need : 0;
}

kg_err_t kg_budget_lease_add(kg_budget_t *b, bool credits, const char *id,
                             int64_t amount)
{
    kg_budget_acct_t *a = bg_find(b, credits, id);

    if (a == NULL) {
        return KG_ERR_NOT_FOUND;
    }
    pthread_mutex_lock(&a->mu);
    a->s.lease = bg_add(a->s.lease, bg_spend(amount));
    pthread_mutex_unlock(&a->mu);
    return KG_OK;
}

/* Take the unused lease of table's accounts idle since before cutoff
 * into out[n..max); returns the new n. */
static size_t bg_leases_take(kg_budget_acct_t *table, int64_t cutoff,
                             kg_budget_lease_back_t *out, size_t n, size_t max)
{
    kg_budget_acct_t *a = NULL;
    kg_budget_acct_t *tmp = NULL;

    HASH_ITER(hh, table, a, tmp)
    {
        if (n >= max) {
            break;
        }
        pthread_mutex_lock(&a->mu);
        if (a->s.lease > a->s.reserved && a->s.lease_used_ms < cutoff) {
            a->s.lease_back =
                bg_add(a->s.lease_back, a->s.lease - a->s.reserved);
            a->s.lease = a->s.reserved;
        }
        if (a->s.lease_back > 0) {
            memcpy(out[n].id, a->id, sizeof(out[n].id));
            out[n].credits = a->credits;
            out[n].unused = a->s.lease_back;
            a->s.lease_back = 0;
            n++;
        }
        pthread_mutex_unlock(&a->mu);
    }
    return n;
}

size_t kg_budget_leases_take_idle(kg_budget_t *b, int64_t idle_ms,
                                  kg_budget_lease_back_t *out, size_t max)
{
    int64_t cutoff = idle_ms <= 0 ? INT64_MAX : bg_mono_ms() - idle_ms;
    size_t n = 0;

    pthread_rwlock_rdlock(&b->lock);
    n = bg_leases_take(b->keys, cutoff, out, n, max);
    n = bg_leases_take(b->workspaces, cutoff, out, n, max);
    pthread_rwlock_unlock(&b->lock);
    return n;
}

int64_t kg_budget_lease_held(kg_budget_t *b, bool credits, const char *id)
{
    kg_budget_acct_t *a = bg_find(b, credits, id);
    int64_t held = 0;

    if (a != NULL) {
        pthread_mutex_lock(&a->mu);
        held = a->s.lease;
        pthread_mutex_unlock(&a->mu);
    }
    return held;
}

size_t kg_budget_count(kg_budget_t *b)
{
    size_t n = 0;

    pthread_rwlock_rdlock(&b->lock);
    n = HASH_COUNT(b->keys) + HASH_COUNT(b->workspaces);
    pthread_rwlock_unlock(&b->lock);
    return n;
}

/* v clamped to [0, max]. */
static int64_t bg_bound(int64_t v, int64_t max)
{
    if (v < 0) {
        return 0;
    }
    return v > max ? max : v;
}

int64_t kg_budget_worst_case(int64_t input_tokens, int64_t max_output_tokens,
                             int64_t input_price_per_mtok,
                             int64_t output_price_per_mtok)
{
    int64_t tokens[2];
    int64_t prices[2];
    int64_t whole = 0;
    int64_t rest = 0;
    int64_t total = 0;

    tokens[0] = bg_bound(input_tokens, KG_BUDGET_TOKENS_MAX);
    tokens[1] = bg_bound(max_output_tokens, KG_BUDGET_TOKENS_MAX);
    prices[0] = bg_bound(input_price_per_mtok, KG_BUDGET_PRICE_MAX);
    prices[1] = bg_bound(output_price_per_mtok, KG_BUDGET_PRICE_MAX);
    /*
     * tokens = q * 1e6 + r with q <= 1e6 and r < 1e6: each product is at
     * most 1e18, so whole and rest stay below 2e18 (int64 holds 9.2e18).
     */
    for (int i = 0; i < 2; i++) {
        whole += tokens[i] / BG_MICRO * prices[i];
        rest += tokens[i] % BG_MICRO * prices[i];
    }
    total = whole + rest / BG_MICRO + (rest % BG_MICRO != 0);
    return total > KG_BUDGET_AMOUNT_MAX ? KG_BUDGET_AMOUNT_MAX : total;
}
