/* The in-memory key cache that verifies tokens on the gateway's hot path. */

/* For pthread_rwlockattr_setkind_np: a writer-preferring lock, so a steady
 * stream of verifications cannot starve a refresh; pthread_setname_np. */
#define _GNU_SOURCE
#include "keygate/keycache.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keygate/clock.h"
#include "keygate/store.h"
#include "keygate/store_keys.h"

/*
 * Key ids come from clients, so the table hashes them with SipHash under a
 * random per-process key: chosen ids cannot pile into one bucket.
 */
static unsigned char kc_siphash_key[crypto_shorthash_KEYBYTES];
static pthread_once_t kc_siphash_once = PTHREAD_ONCE_INIT;

static void kc_siphash_init(void)
{
    randombytes_buf(kc_siphash_key, sizeof(kc_siphash_key));
}

/* The table hash of an id's KG_TOKEN_ID_LEN bytes. */
static uint64_t kc_hash(const char *id)
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v;

    crypto_shorthash(h, (const unsigned char *)id, KG_TOKEN_ID_LEN,
                     kc_siphash_key);
    memcpy(&v, h, sizeof(v));
    return v;
}

/*
 * A cached secret. memo is what makes a hit cheap: once a token has
 * matched hash (keyed BLAKE2b, ~1,700 instructions), the cache keeps
 * SipHash-2-4-128 of the same "<id>:<secret>" under a random key of its
 * own (kc_memo, ~400 instructions), and later tokens are compared with
 * that first. A token whose memo matches no slot is judged by its BLAKE2b
 * hash as before, so a wrong secret, or a right one not seen yet, gets
 * the full check. The memo is written under the read lock by any thread
 * that verified the secret (all write the same value: the same secret),
 * its words first, then memo_set with release; readers load memo_set with
 * acquire. It is wiped with the slot.
 */
typedef struct kc_slot {
    unsigned char hash[KG_KEYHASH_LEN];
    int64_t expires_at;
    _Atomic uint64_t memo[2];
    _Atomic uint64_t memo_set; /* 0 or 1 */
} kc_slot_t;

#define KC_MEMO_LEN crypto_shorthash_siphashx24_BYTES

/*
 * One table entry, one allocation: a key, or (known false, no secrets, no
 * view) an id the store does not know. The links and the id come first,
 * then the secrets, then the key's view, so that a hit reads a few
 * consecutive cache lines that kg_keycache_verify prefetches together as
 * soon as it has the bucket, while it hashes the secret.
 */
typedef struct kc_entry {
    struct kc_entry *next; /* the bucket's chain */
    uint64_t hash;         /* kc_hash(id) */
    _Atomic int64_t seen;  /* the last second a token of it verified */
    char id[KG_TOKEN_ID_LEN + 1];
    bool known;
    uint8_t nsecrets;
    struct kc_entry *age_prev; /* every entry, oldest first */
    struct kc_entry *age_next;
    struct kc_entry *neg_prev; /* unknown ids, oldest first */
    struct kc_entry *neg_next;
    kc_slot_t secrets[]; /* nsecrets, then a kg_key_view_t if known */
} kc_entry_t;

_Static_assert(KG_KEYCACHE_MAX_SECRETS <= UINT8_MAX, "nsecrets fits");
_Static_assert(sizeof(kc_slot_t) % _Alignof(kg_key_view_t) == 0,
               "the view after the secrets is aligned");
_Static_assert(KC_MEMO_LEN == 2 * sizeof(uint64_t), "a memo is two words");

/* The view of a known key: right after its secrets. */
static kg_key_view_t *kc_view(const kc_entry_t *e)
{
    return (kg_key_view_t *)(void *)(e->secrets + e->nsecrets);
}

/* What a hit reads: the entry up to the end of its view for a key with one
 * secret, wherever malloc put it. */
#define KC_PREFETCH_BYTES \
    (sizeof(kc_entry_t) + sizeof(kc_slot_t) + sizeof(kg_key_view_t) + 63)

/*
 * Buckets: chained, a power of two of them, at most KC_LOAD_NUM /
 * KC_LOAD_DEN entries per bucket on average before the table doubles, so
 * that a lookup seldom walks past the first entry (each step is a cache
 * miss on a large table). This table is keygate's own rather than uthash
 * (used elsewhere) because uthash only expands once a bucket holds 10
 * items (HASH_BKT_CAPACITY_THRESH, not configurable): over a 100,000-key
 * working set its chains cost a cache miss per step and kept cached
 * verification under 1M/s (docs/performance.md).
 */
#define KC_MIN_BUCKETS ((size_t)1 << 10)
#define KC_LOAD_NUM    1 /* grow when entries > buckets * NUM / DEN */
#define KC_LOAD_DEN    2

/* The bucket array of an empty cache: one empty bucket, never written
 * (kc_insert gives the table its own array first). */
static kc_entry_t *kc_no_buckets[1];

/*
 * Hit counters, striped so that threads verifying at once do not all
 * write one cache line: each thread adds to its own stripe, 128 bytes
 * apart whatever the allocation's alignment.
 */
#define KC_STRIPES 16

typedef struct kc_stripe {
    _Atomic uint64_t hits;
    _Atomic uint64_t negative_hits;
    char pad[128 - 2 * sizeof(uint64_t)];
} kc_stripe_t;

static _Thread_local unsigned kc_my_stripe; /* 0: not assigned yet */
static atomic_uint kc_next_stripe;

static unsigned kc_stripe_index(void)
{
    if (kc_my_stripe == 0) {
        kc_my_stripe = 1 + atomic_fetch_add_explicit(&kc_next_stripe, 1,
                                                     memory_order_relaxed) %
                               KC_STRIPES;
    }
    return kc_my_stripe - 1;
}

struct kg_keycache {
    const kg_keyhash_t *hk;  /* borrowed */
    unsigned char *memo_key; /* sodium_malloc: random, this cache's own */
    size_t max_entries;

    /* The table, the lists and rev: read under a read lock, changed under
     * the write lock. */
    pthread_rwlock_t lock;
    kc_entry_t **buckets; /* kc_no_buckets or owned */
    size_t mask;          /* buckets - 1 */
    size_t count;         /* entries in the table */
    kc_entry_t *age_head;
    kc_entry_t *age_tail;
    kc_entry_t *neg_head;
    kc_entry_t *neg_tail;
    /* The key revision every entry was loaded at; written under the write
     * lock, atomic so the refresh and the stats can peek without it. */
    _Atomic int64_t rev;
    /* Until when (unix seconds) cached entries may answer without the
     * store: moved on by every read of the store that succeeds;
     * INT64_MAX when stale_after is 0. */
    _Atomic int64_t fresh_until;
    int64_t stale_after; /* seconds; 0: cached entries never go stale */

    /* The connection, one user at a time. Lock order: store_mu, then
     * lock; never store_mu while holding lock. */
    pthread_mutex_t store_mu;
    kg_store_t *store;

    /* The refresh thread. */
    pthread_mutex_t thr_mu;
    pthread_cond_t thr_cv;
    pthread_t thread;
    bool started;
    bool stopping;
    int interval_ms;

    /* Keys seen, for api_keys.last_used_at: each key at most once per
     * second (kc_seen_first), taken by kg_keycache_swap_seen. */
    pthread_mutex_t seen_mu;
    kg_key_seen_t *seen; /* KG_KEYCACHE_SEEN_MAX entries, owned */
    size_t nseen;
    _Atomic uint64_t seen_dropped;

    kc_stripe_t stripes[KC_STRIPES];
    _Atomic uint64_t misses;
    _Atomic uint64_t store_errors;
    _Atomic uint64_t flushes;
    _Atomic uint64_t evictions;
    _Atomic uint64_t refresh_errors;
    _Atomic uint64_t entries;
    _Atomic uint64_t negatives;
};

static void kc_count(_Atomic uint64_t *counter)
{
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

static void kc_entry_free(kc_entry_t **e)
{
    if (e == NULL || *e == NULL) {
        return;
    }
    sodium_memzero((void *)(*e)->secrets,
                   (*e)->nsecrets * sizeof((*e)->secrets[0]));
    free(*e);
    *e = NULL;
}

/* Free the entries of a detached table, linked by their age_next. */
static void kc_free_chain(kc_entry_t *e)
{
    while (e != NULL) {
        kc_entry_t *next = e->age_next;

        kc_entry_free(&e);
        e = next;
    }
}

/* Free a bucket array taken out of the table (not kc_no_buckets). */
static void kc_free_buckets(kc_entry_t **buckets)
{
    if (buckets != kc_no_buckets) {
        free(buckets);
    }
}

/* The entry for id (hash h) or NULL; read lock held. */
static kc_entry_t *kc_find(const kg_keycache_t *c, const char *id, uint64_t h)
{
    kc_entry_t *e = c->buckets[h & c->mask];

    while (e != NULL &&
           (e->hash != h || memcmp(e->id, id, KG_TOKEN_ID_LEN) != 0)) {
        e = e->next;
    }
    return e;
}

/*
 * Double the buckets when the table is over its load (write lock held).
 * Without memory the table keeps its buckets: longer chains, same answers.
 */
static void kc_grow(kg_keycache_t *c)
{
    size_t n = c->mask + 1;
    kc_entry_t **nb;

    if (c->buckets != kc_no_buckets &&
        c->count * KC_LOAD_DEN <= n * KC_LOAD_NUM) {
        return;
    }
    n = c->buckets == kc_no_buckets ? KC_MIN_BUCKETS : 2 * n;
    nb = calloc(n, sizeof(*nb));
    if (nb == NULL) {
        return;
    }
    for (kc_entry_t *e = c->age_head; e != NULL; e = e->age_next) {
        size_t b = e->hash & (n - 1);

        e->next = nb[b];
        nb[b] = e;
    }
    kc_free_buckets(c->buckets);
    c->buckets = nb;
    c->mask = n - 1;
}

static void kc_neg_unlink(kg_keycache_t *c, kc_entry_t *e)
{
    if (e->neg_prev != NULL) {
        e->neg_prev->neg_next = e->neg_next;
    } else {
        c->neg_head = e->neg_next;
    }
    if (e->neg_next != NULL) {
        e->neg_next->neg_prev = e->neg_prev;
    } else {
        c->neg_tail = e->neg_prev;
    }
    e->neg_prev = NULL;
    e->neg_next = NULL;
}

/* Take e out of the table (write lock held); the caller frees it. */
static void kc_remove(kg_keycache_t *c, kc_entry_t *e)
{
    /* e is in the table, so its bucket is a real (owned) array. */
    kc_entry_t **link = &c->buckets[e->hash & c->mask];

    while (*link != e) {
        link = &(*link)->next;
    }
    *link = e->next;
    e->next = NULL;
    if (e->age_prev != NULL) {
        e->age_prev->age_next = e->age_next;
    } else {
        c->age_head = e->age_next;
    }
    if (e->age_next != NULL) {
        e->age_next->age_prev = e->age_prev;
    } else {
        c->age_tail = e->age_prev;
    }
    e->age_prev = NULL;
    e->age_next = NULL;
    if (!e->known) {
        kc_neg_unlink(c, e);
        atomic_fetch_sub_explicit(&c->negatives, 1, memory_order_relaxed);
    }
    c->count--;
    atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
}

/*
 * Empty the table (write lock held). Returns its entries, linked by
 * age_next, for kc_free_chain, and its bucket array in *buckets for
 * kc_free_buckets: freeing a million entries happens after the lock is
 * released.
 */
static kc_entry_t *kc_detach_all(kg_keycache_t *c, kc_entry_t ***buckets)
{
    kc_entry_t *chain = c->age_head;

    *buckets = c->buckets;
    c->buckets = kc_no_buckets;
    c->mask = 0;
    c->count = 0;
    c->age_head = NULL;
    c->age_tail = NULL;
    c->neg_head = NULL;
    c->neg_tail = NULL;
    atomic_store_explicit(&c->entries, 0, memory_order_relaxed);
    atomic_store_explicit(&c->negatives, 0, memory_order_relaxed);
    return chain;
}

/* Make room for one entry (write lock held): unknown ids go first. */
static void kc_make_room(kg_keycache_t *c)
{
    while (c->age_head != NULL && c->count >= c->max_entries) {
        kc_entry_t *victim = c->neg_head ? c->neg_head : c->age_head;

        kc_remove(c, victim);
        kc_entry_free(&victim);
        kc_count(&c->evictions);
    }
}

/*
 * Add e, whose id is not in the table (write lock held). Returns false when
 * there was no memory for the table's first buckets; e is then not in the
 * table and stays the caller's.
 */
static bool kc_insert(kg_keycache_t *c, kc_entry_t *e)
{
    kc_entry_t **bucket;

    kc_make_room(c);
    c->count++;
    kc_grow(c);
    if (c->buckets == kc_no_buckets) {
        /* No memory for a first bucket array: the entry is not kept. */
        c->count--;
        return false;
    }
    bucket = &c->buckets[e->hash & c->mask];
    e->next = *bucket;
    *bucket = e;
    e->age_prev = c->age_tail;
    e->age_next = NULL;
    if (c->age_tail != NULL) {
        c->age_tail->age_next = e;
    } else {
        c->age_head = e;
    }
    c->age_tail = e;
    if (!e->known) {
        e->neg_prev = c->neg_tail;
        e->neg_next = NULL;
        if (c->neg_tail != NULL) {
            c->neg_tail->neg_next = e;
        } else {
            c->neg_head = e;
        }
        c->neg_tail = e;
        atomic_fetch_add_explicit(&c->negatives, 1, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&c->entries, 1, memory_order_relaxed);
    return true;
}

/* The memo of a token: SipHash-2-4-128 of "<id>:<secret>" under the
 * cache's memo key. */
static void kc_memo(const kg_keycache_t *c, const kg_token_t *tok,
                    unsigned char memo[KC_MEMO_LEN])
{
    unsigned char msg[KG_TOKEN_ID_LEN + 1 + KG_TOKEN_SECRET_LEN];

    memcpy(msg, tok->id, KG_TOKEN_ID_LEN);
    msg[KG_TOKEN_ID_LEN] = ':';
    memcpy(msg + KG_TOKEN_ID_LEN + 1, tok->secret, KG_TOKEN_SECRET_LEN);
    crypto_shorthash_siphashx24(memo, msg, sizeof(msg), c->memo_key);
    sodium_memzero(msg, sizeof(msg));
}

/* Whether slot s has a memo and it is memo, in constant time. */
static bool kc_memo_equal(const kc_slot_t *s,
                          const unsigned char memo[KC_MEMO_LEN])
{
    uint64_t w[2];
    bool equal;

    if (atomic_load_explicit(&s->memo_set, memory_order_acquire) == 0) {
        return false;
    }
    w[0] = atomic_load_explicit(&s->memo[0], memory_order_relaxed);
    w[1] = atomic_load_explicit(&s->memo[1], memory_order_relaxed);
    equal = crypto_verify_16((const unsigned char *)w, memo) == 0;
    sodium_memzero(w, sizeof(w));
    return equal;
}

/* Give slot s its memo, once (read or write lock held). */
static void kc_memo_put(kc_slot_t *s, const unsigned char memo[KC_MEMO_LEN])
{
    uint64_t w[2];

    if (atomic_load_explicit(&s->memo_set, memory_order_relaxed) != 0) {
        return;
    }
    memcpy(w, memo, sizeof(w));
    atomic_store_explicit(&s->memo[0], w[0], memory_order_relaxed);
    atomic_store_explicit(&s->memo[1], w[1], memory_order_relaxed);
    atomic_store_explicit(&s->memo_set, 1, memory_order_release);
    sodium_memzero(w, sizeof(w));
}

static bool kc_live(const kc_slot_t *s, int64_t now)
{
    return s->expires_at == KG_NONE || s->expires_at > now;
}

/* The live slot of e whose memo is memo, or NULL; every slot is compared
 * in constant time. */
static kc_slot_t *
kc_match_memo(kc_entry_t *e, const unsigned char memo[KC_MEMO_LEN], int64_t now)
{
    kc_slot_t *found = NULL;

    for (size_t i = 0; i < e->nsecrets; i++) {
        kc_slot_t *s = &e->secrets[i];
        bool equal = kc_memo_equal(s, memo);

        if (equal && kc_live(s, now) && found == NULL) {
            found = s;
        }
    }
    return found;
}

/* The live slot of e whose hash is want, or NULL; every slot is compared
 * in constant time. */
static kc_slot_t *kc_match_hash(kc_entry_t *e, const unsigned char *want,
                                int64_t now)
{
    kc_slot_t *found = NULL;

    for (size_t i = 0; i < e->nsecrets; i++) {
        kc_slot_t *s = &e->secrets[i];
        bool equal = kg_keyhash_equal(want, s->hash);

        if (equal && kc_live(s, now) && found == NULL) {
            found = s;
        }
    }
    return found;
}

/*
 * The verdict for a token against the entry e (NULL or not known: the id
 * is unknown) when its secret matched the live slot s (NULL: none did), at
 * now. Mirrors kg_keys_verify: the secret, then status and prefix, then
 * expiry.
 */
static kg_err_t kc_verdict(const kc_entry_t *e, const kc_slot_t *s,
                           const kg_token_t *tok, int64_t now,
                           kg_key_view_t *out)
{
    const kg_key_view_t *view;

    if (e == NULL || !e->known || s == NULL) {
        return KG_ERR_INVALID_KEY;
    }
    view = kc_view(e);
    if (view->status != KG_KEY_ACTIVE ||
        strcmp(view->prefix, tok->prefix) != 0) {
        return KG_ERR_INVALID_KEY;
    }
    if (view->expires_at != KG_NONE && view->expires_at <= now) {
        return KG_ERR_KEY_EXPIRED;
    }
    if (out != NULL) {
        *out = *view;
    }
    return KG_OK;
}

/*
 * A new entry for id (table hash h): the key with its n secrets and view
 * when view is not NULL, else an unknown id. NULL without memory.
 */
static kc_entry_t *kc_entry_new(const char *id, uint64_t h,
                                const kg_key_view_t *view,
                                const kg_store_key_secret_t *secrets, size_t n)
{
    size_t size = sizeof(kc_entry_t);
    kc_entry_t *e;

    if (view != NULL) {
        size += n * sizeof(kc_slot_t) + sizeof(kg_key_view_t);
    } else {
        n = 0;
    }
    e = calloc(1, size);
    if (e == NULL) {
        return NULL;
    }
    e->hash = h;
    atomic_init(&e->seen, 0);
    memcpy(e->id, id, KG_TOKEN_ID_LEN);
    e->known = view != NULL;
    e->nsecrets = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        memcpy(e->secrets[i].hash, secrets[i].hash, KG_KEYHASH_LEN);
        e->secrets[i].expires_at = secrets[i].expires_at;
        atomic_init(&e->secrets[i].memo[0], 0);
        atomic_init(&e->secrets[i].memo[1], 0);
        atomic_init(&e->secrets[i].memo_set, 0);
    }
    if (view != NULL) {
        *kc_view(e) = *view;
    }
    return e;
}

/*
 * Load the key id (table hash h) and its secrets from one read of the
 * store (store_mu held). On KG_OK *rev is the key revision of that read
 * and *entry is new: the key, or an unknown id when the store has no such
 * key.
 */
static kg_err_t kc_load(kg_keycache_t *c, const char *id, uint64_t h,
                        int64_t *rev, kc_entry_t **entry)
{
    kg_store_key_secret_t secrets[KG_KEYCACHE_MAX_SECRETS];
    kg_key_view_t view;
    bool found = false;
    size_t n = 0;
    kg_err_t rc;

    *entry = NULL;
    rc = kg_store_key_load_view(c->store, id, rev, &view, &found, secrets,
                                KG_KEYCACHE_MAX_SECRETS, &n, NULL);
    if (rc == KG_OK) {
        *entry = kc_entry_new(id, h, found ? &view : NULL, secrets, n);
        if (*entry == NULL) {
            rc = KG_ERR_NOMEM;
        }
    }
    sodium_memzero(secrets, sizeof(secrets));
    return rc;
}

/*
 * Whether e's key was seen in second now for the first time (any lock on
 * the table held): a key is queued for last_used_at at most once per
 * second, so the hot path costs one load of e->seen almost always.
 */
static bool kc_seen_first(kc_entry_t *e, int64_t now)
{
    if (atomic_load_explicit(&e->seen, memory_order_relaxed) == now) {
        return false;
    }
    atomic_store_explicit(&e->seen, now, memory_order_relaxed);
    return true;
}

/* Queue the key id, seen at now, for last_used_at (no table lock held). */
static void kc_seen_push(kg_keycache_t *c, const char *id, int64_t now)
{
    pthread_mutex_lock(&c->seen_mu);
    if (c->nseen < KG_KEYCACHE_SEEN_MAX) {
        kg_key_seen_t *s = &c->seen[c->nseen++];

        memcpy(s->id, id, KG_TOKEN_ID_LEN);
        s->id[KG_TOKEN_ID_LEN] = '\0';
        s->at = now;
    } else {
        /* Its next second queues it again. */
        kc_count(&c->seen_dropped);
    }
    pthread_mutex_unlock(&c->seen_mu);
}

size_t kg_keycache_swap_seen(kg_keycache_t *c, kg_key_seen_t **buf)
{
    kg_key_seen_t *full;
    size_t n;

    pthread_mutex_lock(&c->seen_mu);
    full = c->seen;
    n = c->nseen;
    c->seen = *buf;
    c->nseen = 0;
    pthread_mutex_unlock(&c->seen_mu);
    *buf = full;
    return n;
}

/*
 * A miss: load the key, cache what was found (an unknown id too) when the
 * snapshot belongs to the cache's revision or a newer one (then the older
 * entries go first), and judge the token.
 */
/* The store answered: cached entries may serve for stale_after more. */
static void kc_confirm(kg_keycache_t *c)
{
    if (c->stale_after > 0) {
        atomic_store_explicit(&c->fresh_until, kg_clock_now() + c->stale_after,
                              memory_order_relaxed);
    }
}

static kg_err_t kc_miss(kg_keycache_t *c, const kg_token_t *tok, uint64_t h,
                        const unsigned char *want,
                        const unsigned char memo[KC_MEMO_LEN], int64_t now,
                        kg_key_view_t *out)
{
    kc_slot_t *s = NULL;
    kc_entry_t *e = NULL;
    kc_entry_t *found = NULL;
    kc_entry_t *chain = NULL;
    kc_entry_t **old_buckets = kc_no_buckets;
    int64_t rev = 0;
    int64_t cur;
    bool seen;
    kg_err_t rc;

    kc_count(&c->misses);
    pthread_mutex_lock(&c->store_mu);
    rc = kc_load(c, tok->id, h, &rev, &e);
    pthread_mutex_unlock(&c->store_mu);
    if (rc == KG_OK) {
        kc_confirm(c);
    }
    if (rc != KG_OK) {
        if (rc != KG_ERR_NOMEM) {
            kc_count(&c->store_errors);
        }
        return rc;
    }

    pthread_rwlock_wrlock(&c->lock);
    cur = atomic_load_explicit(&c->rev, memory_order_relaxed);
    if (rev > cur) {
        /* The store moved on before a refresh noticed: catch up now. */
        chain = kc_detach_all(c, &old_buckets);
        atomic_store_explicit(&c->rev, rev, memory_order_relaxed);
        kc_count(&c->flushes);
    }
    if (rev >= cur) {
        found = kc_find(c, tok->id, h);
        if (found == NULL && kc_insert(c, e)) {
            found = e;
            e = NULL;
        }
    }
    /* An older snapshot (a refresh ran meanwhile) is judged, not kept. */
    if (found == NULL) {
        found = e;
    }
    if (found->known) {
        s = kc_match_hash(found, want, now);
    }
    if (s != NULL) {
        kc_memo_put(s, memo);
    }
    rc = kc_verdict(found, s, tok, now, out);
    seen = rc == KG_OK && kc_seen_first(found, now);
    pthread_rwlock_unlock(&c->lock);

    if (seen) {
        kc_seen_push(c, tok->id, now);
    }
    kc_free_chain(chain);
    kc_free_buckets(old_buckets);
    kc_entry_free(&e);
    return rc;
}

/* Start loading the first entry of id's bucket into the CPU caches. */
static void kc_prefetch(const kg_keycache_t *c, uint64_t h)
{
    const char *p = (const char *)c->buckets[h & c->mask];

    /* A prefetch never faults: NULL, or a few bytes past the entry, are
     * harmless. */
    for (size_t off = 0; off < KC_PREFETCH_BYTES; off += 64) {
        __builtin_prefetch(p + off);
    }
}

kg_err_t kg_keycache_verify(kg_keycache_t *c, const kg_token_t *tok,
                            kg_key_view_t *out)
{
    unsigned char memo[KC_MEMO_LEN];
    unsigned char want[KG_KEYHASH_LEN];
    kc_entry_t *e = NULL;
    kc_stripe_t *stripe = &c->stripes[kc_stripe_index()];
    int64_t now = kg_clock_now();
    /* The id array always holds KG_TOKEN_ID_LEN bytes to hash; an id that
     * is not a valid one is simply not found. */
    uint64_t h = kc_hash(tok->id);
    bool seen = false;
    kg_err_t rc = KG_OK;

    pthread_rwlock_rdlock(&c->lock);
    /* On a table larger than the CPU caches the bucket and the entry are
     * cache misses: start them, then hash the secret while they load. */
    kc_prefetch(c, h);
    kc_memo(c, tok, memo);
    /* Unconfirmed by the store for longer than stale_after: every answer
     * goes to the store, which then gives it or a 503 (never a pass). */
    e = now <= atomic_load_explicit(&c->fresh_until, memory_order_relaxed)
            ? kc_find(c, tok->id, h)
            : NULL;
    if (e != NULL) {
        /* A secret verified before matches its memo; anything else gets
         * the keyed BLAKE2b check against the stored hashes. */
        kc_slot_t *s = kc_match_memo(e, memo, now);

        if (s == NULL) {
            kg_keyhash_compute(c->hk, tok->id, tok->secret, want);
            s = kc_match_hash(e, want, now);
            if (s != NULL) {
                kc_memo_put(s, memo);
            }
        }
        rc = kc_verdict(e, s, tok, now, out);
        seen = rc == KG_OK && kc_seen_first(e, now);
        kc_count(e->known ? &stripe->hits : &stripe->negative_hits);
    }
    pthread_rwlock_unlock(&c->lock);

    if (seen) {
        kc_seen_push(c, tok->id, now);
    }
    if (e == NULL && kg_token_id_valid(tok->id)) {
        kg_keyhash_compute(c->hk, tok->id, tok->secret, want);
        rc = kc_miss(c, tok, h, want, memo, now, out);
    } else if (e == NULL) {
        rc = KG_ERR_INVALID_KEY;
    }
    sodium_memzero(want, sizeof(want));
    sodium_memzero(memo, sizeof(memo));
    if (rc != KG_OK && out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

kg_err_t kg_keycache_refresh(kg_keycache_t *c)
{
    kc_entry_t *chain = NULL;
    kc_entry_t **old_buckets = kc_no_buckets;
    int64_t rev = 0;
    kg_err_t rc;

    /* store_mu stays held through the flush, so no miss can load a newer
     * snapshot between the read and the flush. */
    pthread_mutex_lock(&c->store_mu);
    rc = kg_store_key_revision(c->store, &rev, NULL);
    if (rc == KG_OK) {
        kc_confirm(c);
    }
    if (rc != KG_OK) {
        kc_count(&c->refresh_errors);
    } else if (rev != atomic_load_explicit(&c->rev, memory_order_relaxed)) {
        /* Not only rev > cur: a store restored from a backup goes back. */
        pthread_rwlock_wrlock(&c->lock);
        chain = kc_detach_all(c, &old_buckets);
        atomic_store_explicit(&c->rev, rev, memory_order_relaxed);
        pthread_rwlock_unlock(&c->lock);
        kc_count(&c->flushes);
    }
    pthread_mutex_unlock(&c->store_mu);
    kc_free_chain(chain);
    kc_free_buckets(old_buckets);
    return rc;
}

/* now + ms on the monotonic clock the thread's condvar waits on. */
static struct timespec kc_deadline(int ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void *kc_thread_main(void *arg)
{
    kg_keycache_t *c = arg;
    kg_err_t rc;

    pthread_setname_np(pthread_self(), "kg-keycache");
    pthread_mutex_lock(&c->thr_mu);
    while (!c->stopping) {
        struct timespec deadline = kc_deadline(c->interval_ms);
        int w = 0;

        while (!c->stopping && w != ETIMEDOUT) {
            w = pthread_cond_timedwait(&c->thr_cv, &c->thr_mu, &deadline);
        }
        if (c->stopping) {
            break;
        }
        pthread_mutex_unlock(&c->thr_mu);
        /* A failure is counted in refresh_errors; the next tick retries. */
        rc = kg_keycache_refresh(c);
        (void)rc;
        pthread_mutex_lock(&c->thr_mu);
    }
    pthread_mutex_unlock(&c->thr_mu);
    return NULL;
}

void kg_keycache_set_stale_after(kg_keycache_t *c, int64_t seconds)
{
    c->stale_after = seconds > 0 ? seconds : 0;
    atomic_store_explicit(&c->fresh_until,
                          seconds > 0 ? kg_clock_now() + seconds : INT64_MAX,
                          memory_order_relaxed);
}

kg_err_t kg_keycache_start(kg_keycache_t *c, int interval_ms)
{
    kg_err_t rc = KG_OK;

    if (interval_ms == 0) {
        interval_ms = KG_KEYCACHE_DEFAULT_INTERVAL_MS;
    }
    if (interval_ms < 1 || interval_ms > 60000) {
        return KG_ERR_INVAL;
    }
    pthread_mutex_lock(&c->thr_mu);
    if (c->started) {
        rc = KG_ERR_STATE;
        goto out;
    }
    c->interval_ms = interval_ms;
    c->stopping = false;
    if (pthread_create(&c->thread, NULL, kc_thread_main, c) != 0) {
        rc = KG_ERR_INTERNAL;
        goto out;
    }
    c->started = true;
out:
    pthread_mutex_unlock(&c->thr_mu);
    return rc;
}

/* The locks and the condvar; false (nothing left initialised) on error. */
static bool kc_init_sync(kg_keycache_t *c)
{
    pthread_rwlockattr_t rwa;
    pthread_condattr_t ca;
    bool ok = false;

    if (pthread_rwlockattr_init(&rwa) != 0) {
        return false;
    }
    pthread_rwlockattr_setkind_np(&rwa,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    if (pthread_condattr_init(&ca) != 0) {
        pthread_rwlockattr_destroy(&rwa);
        return false;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_rwlock_init(&c->lock, &rwa) != 0) {
        goto out;
    }
    if (pthread_mutex_init(&c->store_mu, NULL) != 0) {
        pthread_rwlock_destroy(&c->lock);
        goto out;
    }
    if (pthread_mutex_init(&c->thr_mu, NULL) != 0) {
        pthread_mutex_destroy(&c->store_mu);
        pthread_rwlock_destroy(&c->lock);
        goto out;
    }
    if (pthread_cond_init(&c->thr_cv, &ca) != 0) {
        pthread_mutex_destroy(&c->thr_mu);
        pthread_mutex_destroy(&c->store_mu);
        pthread_rwlock_destroy(&c->lock);
        goto out;
    }
    if (pthread_mutex_init(&c->seen_mu, NULL) != 0) {
        pthread_cond_destroy(&c->thr_cv);
        pthread_mutex_destroy(&c->thr_mu);
        pthread_mutex_destroy(&c->store_mu);
        pthread_rwlock_destroy(&c->lock);
        goto out;
    }
    ok = true;
out:
    pthread_condattr_destroy(&ca);
    pthread_rwlockattr_destroy(&rwa);
    return ok;
}

kg_err_t kg_keycache_new(const char *store_path, int busy_timeout_ms,
                         const kg_keyhash_t *hk, size_t max_entries,
                         kg_keycache_t **out, kg_diag_t *diag)
{
    kg_store_opts_t opts = {.flags = 0, .busy_timeout_ms = busy_timeout_ms};
    kg_keycache_t *c = NULL;
    int64_t rev = 0;
    kg_err_t rc = KG_OK;

    *out = NULL;
    if (sodium_init() < 0) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "libsodium init failed");
    }
    pthread_once(&kc_siphash_once, kc_siphash_init);
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return KG_ERR_NOMEM;
    }
    if (!kc_init_sync(c)) {
        free(c);
        return kg_diag_fail(diag, KG_ERR_INTERNAL,
                            "key cache: cannot initialise locks");
    }
    c->hk = hk;
    c->buckets = kc_no_buckets;
    c->memo_key = sodium_malloc(crypto_shorthash_siphashx24_KEYBYTES);
    if (c->memo_key == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    randombytes_buf(c->memo_key, crypto_shorthash_siphashx24_KEYBYTES);
    c->seen = calloc(KG_KEYCACHE_SEEN_MAX, sizeof(*c->seen));
    if (c->seen == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    atomic_init(&c->fresh_until, INT64_MAX);
    c->max_entries =
        max_entries ? max_entries : KG_KEYCACHE_DEFAULT_MAX_ENTRIES;
    rc = kg_store_open(store_path, &opts, &c->store, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = kg_store_key_revision(c->store, &rev, diag);
    if (rc != KG_OK) {
        goto out;
    }
    atomic_store_explicit(&c->rev, rev, memory_order_relaxed);
out:
    if (rc != KG_OK) {
        kg_keycache_free(&c);
    }
    *out = c;
    return rc;
}

void kg_keycache_free(kg_keycache_t **cp)
{
    kc_entry_t **buckets = kc_no_buckets;
    kg_keycache_t *c;

    if (cp == NULL || *cp == NULL) {
        return;
    }
    c = *cp;
    pthread_mutex_lock(&c->thr_mu);
    c->stopping = true;
    pthread_cond_broadcast(&c->thr_cv);
    pthread_mutex_unlock(&c->thr_mu);
    if (c->started) {
        pthread_join(c->thread, NULL);
    }
    kc_free_chain(kc_detach_all(c, &buckets));
    kc_free_buckets(buckets);
    kg_store_close(&c->store);
    pthread_cond_destroy(&c->thr_cv);
    pthread_mutex_destroy(&c->thr_mu);
    pthread_mutex_destroy(&c->store_mu);
    pthread_mutex_destroy(&c->seen_mu);
    pthread_rwlock_destroy(&c->lock);
    free(c->seen);
    if (c->memo_key != NULL) {
        sodium_free(c->memo_key); /* wipes it */
    }
    free(c);
    *cp = NULL;
}

void kg_keycache_stats(const kg_keycache_t *c, kg_keycache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < KC_STRIPES; i++) {
        out->hits +=
            atomic_load_explicit(&c->stripes[i].hits, memory_order_relaxed);
        out->negative_hits += atomic_load_explicit(&c->stripes[i].negative_hits,
                                                   memory_order_relaxed);
    }
    out->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
    out->store_errors =
        atomic_load_explicit(&c->store_errors, memory_order_relaxed);
    out->flushes = atomic_load_explicit(&c->flushes, memory_order_relaxed);
    out->evictions = atomic_load_explicit(&c->evictions, memory_order_relaxed);
    out->refresh_errors =
        atomic_load_explicit(&c->refresh_errors, memory_order_relaxed);
    out->entries = atomic_load_explicit(&c->entries, memory_order_relaxed);
    out->negatives = atomic_load_explicit(&c->negatives, memory_order_relaxed);
    out->revision = atomic_load_explicit(&c->rev, memory_order_relaxed);
    out->seen_dropped =
        atomic_load_explicit(&c->seen_dropped, memory_order_relaxed);
}
