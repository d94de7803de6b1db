/* Per-key request, token and concurrency limits; per-IP auth throttling. */

/* For pthread_rwlockattr_setkind_np: writer-preferring table locks, so a
 * steady stream of lookups cannot starve the adding of an entry. */
#define _GNU_SOURCE
#include "keygate/ratelimit.h"

#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Client IPs are chosen by clients, so both tables hash with SipHash under
 * a random per-process key: chosen strings cannot pile into one bucket.
 */
static unsigned char rl_siphash_key[crypto_shorthash_KEYBYTES];
static pthread_once_t rl_siphash_once = PTHREAD_ONCE_INIT;

static void rl_siphash_init(void)
{
    randombytes_buf(rl_siphash_key, sizeof(rl_siphash_key));
}

static unsigned rl_hash(const void *key, size_t len)
{
    unsigned char h[crypto_shorthash_BYTES];
    unsigned v;

    crypto_shorthash(h, key, len, rl_siphash_key);
    memcpy(&v, h, sizeof(v));
    return v;
}

#define HASH_FUNCTION(keyptr, keylen, hashv) \
    ((hashv) = rl_hash((keyptr), (size_t)(keylen)))
/* An allocation failure inside uthash leaves the item out of the table
 * (item->hh.tbl == NULL) instead of exiting the process. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#define RL_W KG_RATELIMIT_WINDOW_MS
/*
 * Window sums saturate here: times RL_W it is 6e17, so three such terms
 * (previous, current, in flight) stay below int64's 9.2e18.
 */
#define RL_SUM_MAX (KG_RATELIMIT_VALUE_MAX * 10)
/* Retry-After when the limit is 0 (never fits) or concurrency refused. */
#define RL_RETRY_NEVER_MS      RL_W
#define RL_RETRY_CONCURRENT_MS INT64_C(1000)
/* Retry-After when this instance's share of the room is used: the next
 * import splits the room again sooner, but Retry-After counts whole
 * seconds. */
#define RL_RETRY_SHARE_MS INT64_C(1000)

/*
 * One key's windows; everything after mu is read and written under it.
 * The counts are of the two fixed windows [win_start - W, win_start) and
 * [win_start, win_start + W). An entry is freed only when nothing is in
 * flight (kg_ratelimit_sweep), so a ticket may keep a pointer to it.
 * The o_ counts are the other instances' on a shared store, as last
 * imported and rolled with the entry's own windows; they count in the
 * request and token checks, never in concurrency.
 */
struct kg_ratelimit_entry {
    UT_hash_handle hh;
    char id[KG_RATELIMIT_ID_MAX + 1];
    pthread_mutex_t mu;
    int64_t win_start; /* ms, a multiple of RL_W */
    int64_t req_prev;
    int64_t req_cur;
    int64_t tok_prev;   /* settled tokens */
    int64_t tok_cur;    /* settled tokens */
    int64_t tok_flight; /* estimates of the requests in flight */
    int64_t flight;     /* requests in flight */
    int64_t o_req_prev;
    int64_t o_req_cur;
    int64_t o_tok_prev; /* settled and in flight */
    int64_t o_tok_cur;
    /*
     * This instance's share of the room between two imports (a round):
     * while the others' counts are unknown, it takes at most 1/share_n of
     * the room it sees. The others split theirs before they see what it
     * admitted in its last round, so share_req and share_tok (its own
     * requests and token estimates counted against the share) are those
     * of this round and the last, round_req and round_tok those of this
     * round. Anything fits while share_req (share_tok) is 0. share_at
     * INT64_MIN: no split.
     */
    int64_t share_at;
    int64_t share_n;
    int64_t share_req;
    int64_t share_tok;
    int64_t round_req;
    int64_t round_tok;
    bool shares; /* its last request had an rpm or a tpm limit */
};

/* An entry's counts as its checks see them: its own and the others'. */
typedef struct rl_counts {
    int64_t req_prev;
    int64_t req_cur;
    int64_t tok_prev;
    int64_t tok_cur; /* settled and in flight */
} rl_counts_t;

/* One client IP's failed authentications. */
typedef struct rl_ip {
    UT_hash_handle hh;
    char ip[KG_RATELIMIT_IP_MAX + 1];
    int64_t win_start; /* ms of the window's first failure */
    int64_t failures;
    int64_t blocked_until; /* ms; INT64_MIN: not blocked */
    struct rl_ip *prev;    /* by last failure, oldest first */
    struct rl_ip *next;
} rl_ip_t;

struct kg_ratelimit {
    kg_ratelimit_opts_t opts;
    /* Lock order: keys_lock, then an entry's mu. */
    pthread_rwlock_t keys_lock;
    kg_ratelimit_entry_t *keys;
    bool keys_lock_made;
    /* The IP table and its list: read under the read lock (the fields of
     * an entry too), changed under the write lock. */
    pthread_rwlock_t ips_lock;
    rl_ip_t *ips;
    rl_ip_t *lru_head;
    rl_ip_t *lru_tail;
    bool ips_lock_made;
    /* Where the next kg_ratelimit_export starts among the keys that
     * share, when they are more than one call takes. */
    atomic_size_t share_next;
    /* The instances sharing the store at the last import, and when: a new
     * key's room is split among them until its first import. */
    atomic_llong live_n;
    atomic_llong live_at;
};

/* v clamped to [0, max]. */
static int64_t rl_bound(int64_t v, int64_t max)
{
    if (v < 0) {
        return 0;
    }
    return v > max ? max : v;
}

/* a + b (both in [0, RL_SUM_MAX]) saturating at RL_SUM_MAX. */
static int64_t rl_add(int64_t a, int64_t b)
{
    return rl_bound(a + b, RL_SUM_MAX);
}

/* A limit as given: negative means none, large ones are clamped. */
static int64_t rl_limit(int64_t v)
{
    return v < 0 ? KG_NONE : rl_bound(v, KG_RATELIMIT_VALUE_MAX);
}

/* ceil(a / b) for a >= 0, b > 0. */
static int64_t rl_ceil_div(int64_t a, int64_t b)
{
    return a / b + (a % b != 0);
}

/* The start of the fixed window holding now (floor, negative times too). */
static int64_t rl_window_of(int64_t now)
{
    int64_t q = now / RL_W;

    if (now % RL_W < 0) {
        q--;
    }
    return q * RL_W;
}

static kg_err_t rl_lock_new(pthread_rwlock_t *lock)
{
    pthread_rwlockattr_t attr;
    kg_err_t rc = KG_OK;

    if (pthread_rwlockattr_init(&attr) != 0) {
        return KG_ERR_NOMEM;
    }
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_rwlock_init(lock, &attr) != 0) {
        rc = KG_ERR_NOMEM;
    }
    pthread_rwlockattr_destroy(&attr);
    return rc;
}

kg_err_t kg_ratelimit_new(const kg_ratelimit_opts_t *opts, kg_ratelimit_t **out)
{
    kg_err_t rc = KG_OK;
    kg_ratelimit_t *rl = NULL;
    kg_ratelimit_opts_t o = {0};

    *out = NULL;
    if (opts != NULL) {
        o = *opts;
    }
    if (o.auth_max_failures < 0 || o.auth_window_ms < 0) {
        rc = KG_ERR_INVAL;
        goto out;
    }
    o.max_keys = o.max_keys ? o.max_keys : KG_RATELIMIT_DEFAULT_MAX_KEYS;
    o.auth_max_failures = o.auth_max_failures
                              ? o.auth_max_failures
                              : KG_RATELIMIT_DEFAULT_AUTH_FAILURES;
    o.auth_window_ms = o.auth_window_ms ? o.auth_window_ms
                                        : KG_RATELIMIT_DEFAULT_AUTH_WINDOW_MS;
    o.auth_max_ips =
        o.auth_max_ips ? o.auth_max_ips : KG_RATELIMIT_DEFAULT_AUTH_MAX_IPS;
    pthread_once(&rl_siphash_once, rl_siphash_init);
    rl = calloc(1, sizeof(*rl));
    if (rl == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    rl->opts = o;
    atomic_init(&rl->share_next, 0);
    atomic_init(&rl->live_n, 1);
    atomic_init(&rl->live_at, INT64_MIN);
    rc = rl_lock_new(&rl->keys_lock);
    if (rc != KG_OK) {
        goto out;
    }
    rl->keys_lock_made = true;
    rc = rl_lock_new(&rl->ips_lock);
    if (rc != KG_OK) {
        goto out;
    }
    rl->ips_lock_made = true;
    *out = rl;
    rl = NULL;
out:
    kg_ratelimit_free(&rl);
    return rc;
}

void kg_ratelimit_free(kg_ratelimit_t **rl)
{
    kg_ratelimit_entry_t *e = NULL;
    kg_ratelimit_entry_t *etmp = NULL;
    rl_ip_t *ip = NULL;
    rl_ip_t *iptmp = NULL;

    if (rl == NULL || *rl == NULL) {
        return;
    }
    HASH_ITER(hh, (*rl)->keys, e, etmp)
    {
        HASH_DEL((*rl)->keys, e);
        pthread_mutex_destroy(&e->mu);
        free(e);
    }
    HASH_ITER(hh, (*rl)->ips, ip, iptmp)
    {
        HASH_DEL((*rl)->ips, ip);
        free(ip);
    }
    if ((*rl)->keys_lock_made) {
        pthread_rwlock_destroy(&(*rl)->keys_lock);
    }
    if ((*rl)->ips_lock_made) {
        pthread_rwlock_destroy(&(*rl)->ips_lock);
    }
    free(*rl);
    *rl = NULL;
}

/* Move e's windows to the one holding now (e->mu held). */
static void rl_roll(kg_ratelimit_entry_t *e, int64_t now)
{
    int64_t w = rl_window_of(now);

    if (w <= e->win_start) {
        return; /* the same window, or a clock that went back */
    }
    if (w == e->win_start + RL_W) {
        e->req_prev = e->req_cur;
        e->tok_prev = e->tok_cur;
        e->o_req_prev = e->o_req_cur;
        e->o_tok_prev = e->o_tok_cur;
    } else {
        e->req_prev = 0;
        e->tok_prev = 0;
        e->o_req_prev = 0;
        e->o_tok_prev = 0;
    }
    e->req_cur = 0;
    e->tok_cur = 0;
    e->o_req_cur = 0;
    e->o_tok_cur = 0;
    e->win_start = w;
}

/* e's counts, its own and the others' (e->mu held, e rolled). */
static void rl_counts(const kg_ratelimit_entry_t *e, rl_counts_t *c)
{
    c->req_prev = rl_add(e->req_prev, e->o_req_prev);
    c->req_cur = rl_add(e->req_cur, e->o_req_cur);
    c->tok_prev = rl_add(e->tok_prev, e->o_tok_prev);
    c->tok_cur = rl_add(rl_add(e->tok_cur, e->tok_flight), e->o_tok_cur);
}

/* How far into its current window now is, in [0, RL_W). */
static int64_t rl_elapsed(const kg_ratelimit_entry_t *e, int64_t now)
{
    int64_t el = now - e->win_start;

    return el < 0 ? 0 : (el >= RL_W ? RL_W - 1 : el);
}

/* The sliding count times RL_W: prev weighted by the overlap, plus cur. */
static int64_t rl_used(int64_t prev, int64_t cur, int64_t el)
{
    return prev * (RL_W - el) + cur * RL_W;
}

/*
 * Milliseconds from elapsed el until the sliding count of (prev, cur)
 * plus need fits limit, if nothing else arrives (0 < need <= limit).
 */
static int64_t rl_wait_ms(int64_t prev, int64_t cur, int64_t need,
                          int64_t limit, int64_t el)
{
    int64_t room = (limit - need) * RL_W;
    int64_t at = 0;

    if (cur * RL_W <= room) {
        /* In this window, once prev * (W - at) <= room - cur * W. */
        if (prev == 0) {
            return 0;
        }
        at = RL_W - (room - cur * RL_W) / prev;
        return at > el ? at - el : 0;
    }
    /* In the next one, where prev' = cur and cur' = 0. */
    at = RL_W - room / cur;
    return RL_W - el + (at > 0 ? at : 0);
}

/* Milliseconds until the sliding count of (prev, cur) is zero. */
static int64_t rl_reset_ms(int64_t prev, int64_t cur, int64_t el)
{
    if (cur > 0) {
        return RL_W - el + RL_W;
    }
    return prev > 0 ? RL_W - el : 0;
}

/* limit - ceil(used / W), at least 0. */
static int64_t rl_remaining(int64_t limit, int64_t used)
{
    int64_t left = limit - rl_ceil_div(used, RL_W);

    return left < 0 ? 0 : left;
}

/* info's limits, with nothing counted yet. */
static void rl_info_init(kg_ratelimit_info_t *info,
                         const kg_ratelimit_limits_t *l)
{
    memset(info, 0, sizeof(*info));
    info->limit_requests = l->rpm;
    info->remaining_requests = l->rpm;
    info->limit_tokens = l->tpm;
    info->remaining_tokens = l->tpm;
    info->limit_concurrent = l->max_concurrent;
}

/* Fill info's counts from e at el (e->mu held). */
static void rl_info_fill(kg_ratelimit_info_t *info,
                         const kg_ratelimit_entry_t *e, int64_t el)
{
    rl_counts_t c;

    rl_counts(e, &c);
    if (info->limit_requests != KG_NONE) {
        info->remaining_requests = rl_remaining(
            info->limit_requests, rl_used(c.req_prev, c.req_cur, el));
        info->reset_requests_ms = rl_reset_ms(c.req_prev, c.req_cur, el);
    }
    if (info->limit_tokens != KG_NONE) {
        info->remaining_tokens = rl_remaining(
            info->limit_tokens, rl_used(c.tok_prev, c.tok_cur, el));
        info->reset_tokens_ms = rl_reset_ms(c.tok_prev, c.tok_cur, el);
    }
    info->concurrent = e->flight;
}

/*
 * Whether this instance has taken its share of the room of a limit at now
 * (see kg_ratelimit_entry): taken (own in this round and the last) plus
 * need above 1/share_n of the room it would see without them (the room
 * left, limit * W - used, plus taken * W). Anything fits when taken is 0.
 */
static bool rl_share_used(const kg_ratelimit_entry_t *e, int64_t limit,
                          int64_t used, int64_t taken, int64_t need,
                          int64_t now)
{
    int64_t room = limit * RL_W - used + taken * RL_W;

    if (e->share_at == INT64_MIN ||
        now - e->share_at > KG_RATELIMIT_SHARE_HOLD_MS || e->share_n <= 1 ||
        taken == 0) {
        return false;
    }
    return room < 0 || taken + need > room / (e->share_n * RL_W);
}

/*
 * Check e (rolled, e->mu held) against l for a request estimating est
 * tokens at now; count it when it fits. Returns the limit that refused it
 * (KG_RATELIMIT_OK: admitted), in *wait_ms when to retry and in *share
 * whether this instance's share of the room refused it (the window has
 * room).
 */
static kg_ratelimit_kind_t rl_admit(kg_ratelimit_entry_t *e,
                                    const kg_ratelimit_limits_t *l, int64_t est,
                                    int64_t el, int64_t now, int64_t *wait_ms,
                                    bool *share)
{
    rl_counts_t c;
    int64_t need = 0;

    *wait_ms = 0;
    *share = false;
    rl_counts(e, &c);
    if (l->rpm != KG_NONE &&
        rl_used(c.req_prev, c.req_cur, el) + RL_W > l->rpm * RL_W) {
        *wait_ms = l->rpm == 0
                       ? RL_RETRY_NEVER_MS
                       : rl_wait_ms(c.req_prev, c.req_cur, 1, l->rpm, el);
        return KG_RATELIMIT_REQUESTS;
    }
    if (l->rpm != KG_NONE &&
        rl_share_used(e, l->rpm, rl_used(c.req_prev, c.req_cur, el),
                      e->share_req, 1, now)) {
        *wait_ms = RL_RETRY_SHARE_MS;
        *share = true;
        return KG_RATELIMIT_REQUESTS;
    }
    if (l->tpm != KG_NONE) {
        need = est < 1 ? 1 : (est > l->tpm ? l->tpm : est);
        if (l->tpm == 0) {
            *wait_ms = RL_RETRY_NEVER_MS;
            return KG_RATELIMIT_TOKENS;
        }
        if (rl_used(c.tok_prev, c.tok_cur, el) + need * RL_W > l->tpm * RL_W) {
            *wait_ms = rl_wait_ms(c.tok_prev, c.tok_cur, need, l->tpm, el);
            return KG_RATELIMIT_TOKENS;
        }
        if (rl_share_used(e, l->tpm, rl_used(c.tok_prev, c.tok_cur, el),
                          e->share_tok, need, now)) {
            *wait_ms = RL_RETRY_SHARE_MS;
            *share = true;
            return KG_RATELIMIT_TOKENS;
        }
    }
    if (l->max_concurrent != KG_NONE && e->flight >= l->max_concurrent) {
        *wait_ms = RL_RETRY_CONCURRENT_MS;
        return KG_RATELIMIT_CONCURRENT;
    }
    e->req_cur = rl_add(e->req_cur, 1);
    e->tok_flight = rl_add(e->tok_flight, est);
    e->flight = rl_add(e->flight, 1);
    e->share_req = rl_add(e->share_req, 1);
    e->share_tok = rl_add(e->share_tok, est);
    e->round_req = rl_add(e->round_req, 1);
    e->round_tok = rl_add(e->round_tok, est);
    return KG_RATELIMIT_OK;
}

/* Whether e has nothing in flight nor in its windows at now (mu held). */
static bool rl_idle(const kg_ratelimit_entry_t *e, int64_t now)
{
    return e->flight == 0 && now - e->win_start >= 2 * RL_W;
}

/* Drop idle entries (keys_lock written). Returns how many. */
static size_t rl_sweep_keys(kg_ratelimit_t *rl, int64_t now)
{
    kg_ratelimit_entry_t *e = NULL;
    kg_ratelimit_entry_t *tmp = NULL;
    size_t n = 0;
    bool idle = false;

    HASH_ITER(hh, rl->keys, e, tmp)
    {
        pthread_mutex_lock(&e->mu);
        idle = rl_idle(e, now);
        pthread_mutex_unlock(&e->mu);
        if (idle) {
            HASH_DEL(rl->keys, e);
            pthread_mutex_destroy(&e->mu);
            free(e);
            n++;
        }
    }
    return n;
}

/*
 * A new key's first round (e->mu not needed: e is not in the table yet):
 * until its first import it knows nothing of the others, so when others
 * shared the store lately its room is split among all the instances.
 */
static void rl_share_start(kg_ratelimit_t *rl, kg_ratelimit_entry_t *e,
                           int64_t now)
{
    int64_t at = atomic_load(&rl->live_at);

    e->share_at = INT64_MIN;
    if (at != INT64_MIN && now - at <= KG_RATELIMIT_SHARE_HOLD_MS) {
        e->share_at = now;
        e->share_n = atomic_load(&rl->live_n);
    }
}

/* A new entry for id at now, added (keys_lock written); see acquire. */
static kg_err_t rl_entry_add(kg_ratelimit_t *rl, const char *id, int64_t now,
                             kg_ratelimit_entry_t **out)
{
    kg_err_t rc = KG_OK;
    kg_ratelimit_entry_t *e = NULL;

    *out = NULL;
    if (HASH_COUNT(rl->keys) >= rl->opts.max_keys) {
        rl_sweep_keys(rl, now);
    }
    if (HASH_COUNT(rl->keys) >= rl->opts.max_keys) {
        rc = KG_ERR_UNAVAILABLE;
        goto out;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    if (pthread_mutex_init(&e->mu, NULL) != 0) {
        free(e);
        e = NULL;
        rc = KG_ERR_NOMEM;
        goto out;
    }
    memcpy(e->id, id, strlen(id) + 1);
    e->win_start = rl_window_of(now);
    rl_share_start(rl, e, now);
    HASH_ADD_STR(rl->keys, id, e);
    if (e->hh.tbl == NULL) {
        pthread_mutex_destroy(&e->mu);
        free(e);
        e = NULL;
        rc = KG_ERR_NOMEM;
        goto out;
    }
out:
    *out = e;
    return rc;
}

/*
 * id's entry, made when missing, returned with its mu locked. Returns
 * KG_OK, KG_ERR_UNAVAILABLE (full) or KG_ERR_NOMEM.
 */
static kg_err_t rl_entry_get(kg_ratelimit_t *rl, const char *id, int64_t now,
                             kg_ratelimit_entry_t **out)
{
    kg_err_t rc = KG_OK;
    kg_ratelimit_entry_t *e = NULL;

    pthread_rwlock_rdlock(&rl->keys_lock);
    HASH_FIND_STR(rl->keys, id, e);
    if (e != NULL) {
        /* Locked before the table is let go: a sweep cannot free it. */
        pthread_mutex_lock(&e->mu);
    }
    pthread_rwlock_unlock(&rl->keys_lock);
    if (e != NULL) {
        goto out;
    }
    pthread_rwlock_wrlock(&rl->keys_lock);
    HASH_FIND_STR(rl->keys, id, e);
    if (e == NULL) {
        rc = rl_entry_add(rl, id, now, &e);
    }
    if (e != NULL) {
        pthread_mutex_lock(&e->mu);
    }
    pthread_rwlock_unlock(&rl->keys_lock);
out:
    *out = e;
    return rc;
}

kg_err_t kg_ratelimit_acquire(kg_ratelimit_t *rl, const char *key_id,
                              const kg_ratelimit_limits_t *lim,
                              int64_t est_tokens, int64_t now_ms,
                              kg_ratelimit_ticket_t *t,
                              kg_ratelimit_info_t *info)
{
    kg_err_t rc = KG_OK;
    kg_ratelimit_limits_t l = {KG_NONE, KG_NONE, KG_NONE};
    kg_ratelimit_info_t local;
    kg_ratelimit_entry_t *e = NULL;
    int64_t est = rl_bound(est_tokens, KG_RATELIMIT_VALUE_MAX);
    int64_t el = 0;
    int64_t wait = 0;
    bool share = false;

    memset(t, 0, sizeof(*t));
    info = info != NULL ? info : &local;
    if (lim != NULL) {
        l.rpm = rl_limit(lim->rpm);
        l.tpm = rl_limit(lim->tpm);
        l.max_concurrent = rl_limit(lim->max_concurrent);
    }
    rl_info_init(info, &l);
    if (l.rpm == KG_NONE && l.tpm == KG_NONE && l.max_concurrent == KG_NONE) {
        goto out;
    }
    if (key_id == NULL || key_id[0] == '\0' ||
        strnlen(key_id, KG_RATELIMIT_ID_MAX + 1) > KG_RATELIMIT_ID_MAX) {
        rc = KG_ERR_INVAL;
        goto out;
    }
    rc = rl_entry_get(rl, key_id, now_ms, &e);
    if (rc != KG_OK) {
        goto out;
    }
    rl_roll(e, now_ms);
    e->shares = l.rpm != KG_NONE || l.tpm != KG_NONE;
    el = rl_elapsed(e, now_ms);
    info->refused = rl_admit(e, &l, est, el, now_ms, &wait, &share);
    rl_info_fill(info, e, el);
    if (share && info->refused == KG_RATELIMIT_REQUESTS) {
        info->remaining_requests = 0;
    } else if (share) {
        info->remaining_tokens = 0;
    }
    if (info->refused == KG_RATELIMIT_OK) {
        t->entry = e;
        t->est_tokens = est;
    } else {
        info->retry_after_s = wait < 1000 ? 1 : rl_ceil_div(wait, 1000);
        rc = KG_ERR_RATE_LIMITED;
    }
    pthread_mutex_unlock(&e->mu);
out:
    if (rc != KG_OK && rc != KG_ERR_RATE_LIMITED) {
        kg_ratelimit_limits_t none = {KG_NONE, KG_NONE, KG_NONE};

        rl_info_init(info, &none);
    }
    return rc;
}

void kg_ratelimit_release(kg_ratelimit_t *rl, kg_ratelimit_ticket_t *t,
                          int64_t actual_tokens, int64_t now_ms)
{
    kg_ratelimit_entry_t *e = t->entry;

    (void)rl;
    if (e == NULL) {
        return;
    }
    pthread_mutex_lock(&e->mu);
    rl_roll(e, now_ms);
    e->flight = e->flight > 0 ? e->flight - 1 : 0;
    e->tok_flight = rl_bound(e->tok_flight - t->est_tokens, RL_SUM_MAX);
    e->tok_cur =
        rl_add(e->tok_cur, rl_bound(actual_tokens, KG_RATELIMIT_VALUE_MAX));
    pthread_mutex_unlock(&e->mu);
    t->entry = NULL;
    t->est_tokens = 0;
}

/* Unlink ip from the list (ips_lock written). */
static void rl_ip_unlink(kg_ratelimit_t *rl, rl_ip_t *ip)
{
    if (ip->prev != NULL) {
        ip->prev->next = ip->next;
    } else {
        rl->lru_head = ip->next;
    }
    if (ip->next != NULL) {
        ip->next->prev = ip->prev;
    } else {
        rl->lru_tail = ip->prev;
    }
    ip->prev = NULL;
    ip->next = NULL;
}

/* Append ip to the list as the newest (ips_lock written). */
static void rl_ip_append(kg_ratelimit_t *rl, rl_ip_t *ip)
{
    ip->prev = rl->lru_tail;
    ip->next = NULL;
    if (rl->lru_tail != NULL) {
        rl->lru_tail->next = ip;
    } else {
        rl->lru_head = ip;
    }
    rl->lru_tail = ip;
}

/* Drop IPs whose window is over (ips_lock written). Returns how many. */
static size_t rl_sweep_ips(kg_ratelimit_t *rl, int64_t now)
{
    rl_ip_t *ip = NULL;
    rl_ip_t *tmp = NULL;
    size_t n = 0;

    HASH_ITER(hh, rl->ips, ip, tmp)
    {
        if (now - ip->win_start >= rl->opts.auth_window_ms &&
            now >= ip->blocked_until) {
            rl_ip_unlink(rl, ip);
            HASH_DEL(rl->ips, ip);
            free(ip);
            n++;
        }
    }
    return n;
}

size_t kg_ratelimit_sweep(kg_ratelimit_t *rl, int64_t now_ms)
{
    size_t n = 0;

    pthread_rwlock_wrlock(&rl->keys_lock);
    n += rl_sweep_keys(rl, now_ms);
    pthread_rwlock_unlock(&rl->keys_lock);
    pthread_rwlock_wrlock(&rl->ips_lock);
    n += rl_sweep_ips(rl, now_ms);
    pthread_rwlock_unlock(&rl->ips_lock);
    return n;
}

size_t kg_ratelimit_key_count(kg_ratelimit_t *rl)
{
    size_t n = 0;

    pthread_rwlock_rdlock(&rl->keys_lock);
    n = HASH_COUNT(rl->keys);
    pthread_rwlock_unlock(&rl->keys_lock);
    return n;
}

/* e's own counts at now into *out (e->mu held). */
static void rl_export_one(kg_ratelimit_entry_t *e, int64_t now,
                          kg_ratelimit_share_t *out)
{
    rl_roll(e, now);
    memcpy(out->key_id, e->id, sizeof(out->key_id));
    out->window_start = e->win_start;
    out->req_prev = e->req_prev;
    out->req_cur = e->req_cur;
    out->tok_prev = e->tok_prev;
    out->tok_cur = rl_add(e->tok_cur, e->tok_flight);
    out->instances = 0; /* the import's field: nothing read from memory */
}

/*
 * Append to out (while *n < max) the keys that share whose place among
 * them, counting from 0 in the table's order, is in [from, to) (keys_lock
 * read). Returns how many keys share.
 */
static size_t rl_export_range(kg_ratelimit_t *rl, int64_t now, size_t from,
                              size_t to, kg_ratelimit_share_t *out, size_t max,
                              size_t *n)
{
    kg_ratelimit_entry_t *e = NULL;
    kg_ratelimit_entry_t *tmp = NULL;
    size_t pos = 0;

    HASH_ITER(hh, rl->keys, e, tmp)
    {
        pthread_mutex_lock(&e->mu);
        if (e->shares) {
            if (pos >= from && pos < to && *n < max) {
                rl_export_one(e, now, &out[(*n)++]);
            }
            pos++;
        }
        pthread_mutex_unlock(&e->mu);
    }
    return pos;
}

void kg_ratelimit_export(kg_ratelimit_t *rl, int64_t now_ms,
                         kg_ratelimit_share_t *out, size_t max, size_t *n)
{
    size_t start = atomic_load(&rl->share_next);
    size_t total = 0;
    size_t first = 0;

    *n = 0;
    pthread_rwlock_rdlock(&rl->keys_lock);
    total = rl_export_range(rl, now_ms, start, SIZE_MAX, out, max, n);
    first = *n;
    if (*n < max && start > 0) {
        /* From the first key again, up to where this call began. */
        rl_export_range(rl, now_ms, 0, start, out, max, n);
    }
    pthread_rwlock_unlock(&rl->keys_lock);
    /* The next call goes on after the last key taken. */
    atomic_store(&rl->share_next,
                 start + first < total ? start + first : *n - first);
}

/*
 * o (the other instances' counts) as e's others, aligned to e's windows,
 * and a new round of e's share of the room at now, split among the live
 * instances, or those that count the key when they are more (e->mu held,
 * e rolled).
 */
static void rl_import_one(kg_ratelimit_entry_t *e,
                          const kg_ratelimit_share_t *o, int64_t live,
                          int64_t now)
{
    int64_t counting = 1 + rl_bound(o->instances, KG_RATELIMIT_SHARE_MAX_N - 1);

    int64_t req_prev = rl_bound(o->req_prev, RL_SUM_MAX);
    int64_t req_cur = rl_bound(o->req_cur, RL_SUM_MAX);
    int64_t tok_prev = rl_bound(o->tok_prev, RL_SUM_MAX);
    int64_t tok_cur = rl_bound(o->tok_cur, RL_SUM_MAX);
    bool last = false;

    e->o_req_prev = 0;
    e->o_req_cur = 0;
    e->o_tok_prev = 0;
    e->o_tok_cur = 0;
    if (o->window_start == e->win_start) {
        e->o_req_prev = req_prev;
        e->o_req_cur = req_cur;
        e->o_tok_prev = tok_prev;
        e->o_tok_cur = tok_cur;
    } else if (o->window_start == e->win_start - RL_W) {
        /* Its current window is this one's previous. */
        e->o_req_prev = req_cur;
        e->o_tok_prev = tok_cur;
    } else if (o->window_start == e->win_start + RL_W) {
        /* A clock a little ahead: everything it counted is recent. */
        e->o_req_cur = rl_add(req_prev, req_cur);
        e->o_tok_cur = rl_add(tok_prev, tok_cur);
    }
    /* The last round's takes count against this one's share too, unless
     * it had lapsed (the others have seen them since). */
    last = e->share_at != INT64_MIN &&
           now - e->share_at <= KG_RATELIMIT_SHARE_HOLD_MS;
    e->share_req = last ? e->round_req : 0;
    e->share_tok = last ? e->round_tok : 0;
    e->round_req = 0;
    e->round_tok = 0;
    e->share_at = now;
    e->share_n = counting > live ? counting : live;
}

void kg_ratelimit_import(kg_ratelimit_t *rl, const kg_ratelimit_share_t *others,
                         size_t n, int64_t live, int64_t now_ms)
{
    kg_ratelimit_entry_t *e = NULL;

    live = live < 1 ? 1 : rl_bound(live, KG_RATELIMIT_SHARE_MAX_N);
    atomic_store(&rl->live_n, live);
    atomic_store(&rl->live_at, now_ms);
    pthread_rwlock_rdlock(&rl->keys_lock);
    for (size_t i = 0; i < n; i++) {
        const char *id = others[i].key_id;

        if (strnlen(id, sizeof(others[i].key_id)) > KG_RATELIMIT_ID_MAX) {
            continue; /* not a string */
        }
        HASH_FIND_STR(rl->keys, id, e);
        if (e != NULL) {
            pthread_mutex_lock(&e->mu);
            rl_roll(e, now_ms);
            rl_import_one(e, &others[i], live, now_ms);
            pthread_mutex_unlock(&e->mu);
        }
    }
    pthread_rwlock_unlock(&rl->keys_lock);
}

/* ip cut to KG_RATELIMIT_IP_MAX bytes into key (that size + 1). */
static void rl_ip_key(const char *ip, char *key)
{
    size_t n = strnlen(ip, KG_RATELIMIT_IP_MAX);

    memcpy(key, ip, n);
    key[n] = '\0';
}

bool kg_ratelimit_auth_allowed(kg_ratelimit_t *rl, const char *ip,
                               int64_t now_ms, int64_t *retry_after_s)
{
    char key[KG_RATELIMIT_IP_MAX + 1];
    rl_ip_t *e = NULL;
    int64_t wait = 0;

    if (retry_after_s != NULL) {
        *retry_after_s = 0;
    }
    if (ip == NULL) {
        return true;
    }
    rl_ip_key(ip, key);
    pthread_rwlock_rdlock(&rl->ips_lock);
    HASH_FIND_STR(rl->ips, key, e);
    if (e != NULL && now_ms < e->blocked_until) {
        wait = e->blocked_until - now_ms;
    }
    pthread_rwlock_unlock(&rl->ips_lock);
    if (wait == 0) {
        return true;
    }
    if (retry_after_s != NULL) {
        *retry_after_s = wait < 1000 ? 1 : rl_ceil_div(wait, 1000);
    }
    return false;
}

/*
 * A fresh entry for key (ips_lock written), recycling the oldest when
 * auth_max_ips are tracked; NULL when none could be made.
 */
static rl_ip_t *rl_ip_add(kg_ratelimit_t *rl, const char *key)
{
    rl_ip_t *e = NULL;

    if (HASH_COUNT(rl->ips) >= rl->opts.auth_max_ips && rl->lru_head) {
        e = rl->lru_head;
        rl_ip_unlink(rl, e);
        HASH_DEL(rl->ips, e);
        memset(e, 0, sizeof(*e));
    } else {
        e = calloc(1, sizeof(*e));
        if (e == NULL) {
            return NULL;
        }
    }
    memcpy(e->ip, key, strlen(key) + 1);
    e->blocked_until = INT64_MIN;
    HASH_ADD_STR(rl->ips, ip, e);
    if (e->hh.tbl == NULL) {
        free(e);
        return NULL;
    }
    rl_ip_append(rl, e);
    return e;
}

void kg_ratelimit_auth_failed(kg_ratelimit_t *rl, const char *ip,
                              int64_t now_ms)
{
    char key[KG_RATELIMIT_IP_MAX + 1];
    rl_ip_t *e = NULL;

    if (ip == NULL) {
        return;
    }
    rl_ip_key(ip, key);
    pthread_rwlock_wrlock(&rl->ips_lock);
    HASH_FIND_STR(rl->ips, key, e);
    if (e != NULL && now_ms - e->win_start < rl->opts.auth_window_ms) {
        e->failures++;
        rl_ip_unlink(rl, e);
        rl_ip_append(rl, e);
    } else {
        if (e == NULL) {
            e = rl_ip_add(rl, key);
        } else {
            rl_ip_unlink(rl, e);
            rl_ip_append(rl, e);
        }
        if (e == NULL) {
            goto out;
        }
        e->win_start = now_ms;
        e->failures = 1;
        e->blocked_until = INT64_MIN;
    }
    if (e->failures >= rl->opts.auth_max_failures) {
        e->blocked_until = e->win_start + rl->opts.auth_window_ms;
    }
out:
    pthread_rwlock_unlock(&rl->ips_lock);
}

size_t kg_ratelimit_auth_count(kg_ratelimit_t *rl)
{
    size_t n = 0;

    pthread_rwlock_rdlock(&rl->ips_lock);
    n = HASH_COUNT(rl->ips);
    pthread_rwlock_unlock(&rl->ips_lock);
    return n;
}

const char *kg_ratelimit_kind_name(kg_ratelimit_kind_t kind)
{
    switch (kind) {
    case KG_RATELIMIT_REQUESTS:
        return "requests per minute";
    case KG_RATELIMIT_TOKENS:
        return "tokens per minute";
    case KG_RATELIMIT_CONCURRENT:
        return "concurrent requests";
    case KG_RATELIMIT_OK:
        break;
    }
    return "";
}

const char *kg_ratelimit_describe(const kg_ratelimit_info_t *info, char *buf,
                                  size_t len)
{
    int64_t limit = KG_NONE;

    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    switch (info->refused) {
    case KG_RATELIMIT_REQUESTS:
        limit = info->limit_requests;
        break;
    case KG_RATELIMIT_TOKENS:
        limit = info->limit_tokens;
        break;
    case KG_RATELIMIT_CONCURRENT:
        limit = info->limit_concurrent;
        break;
    case KG_RATELIMIT_OK:
        return buf;
    }
    snprintf(buf, len, "%s (limit %" PRId64 ")",
             kg_ratelimit_kind_name(info->refused), limit);
    return buf;
}

const char *kg_ratelimit_format_reset(int64_t ms, char *buf, size_t len)
{
    int64_t s = 0;

    if (len == 0) {
        return buf;
    }
    if (ms <= 0) {
        snprintf(buf, len, "0s");
    } else if (ms < 1000) {
        snprintf(buf, len, "%" PRId64 "ms", ms);
    } else {
        s = rl_ceil_div(ms, 1000);
        if (s < 60) {
            snprintf(buf, len, "%" PRId64 "s", s);
        } else {
            snprintf(buf, len, "%" PRId64 "m%" PRId64 "s", s / 60, s % 60);
        }
    }
    return buf;
}
