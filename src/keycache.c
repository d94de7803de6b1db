/* The in-memory key cache that verifies tokens on the gateway's hot path. */

/* For pthread_rwlockattr_setkind_np: a writer-preferring lock, so a steady
 * stream of verifications cannot starve a refresh. */
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

static unsigned kc_hash(const void *key, size_t len)
{
    unsigned char h[crypto_shorthash_BYTES];
    unsigned v;

    crypto_shorthash(h, key, len, kc_siphash_key);
    memcpy(&v, h, sizeof(v));
    return v;
}

#define HASH_FUNCTION(keyptr, keylen, hashv) \
    ((hashv) = kc_hash((keyptr), (size_t)(keylen)))
/* An allocation failure inside uthash leaves the item out of the table
 * (item->hh.tbl == NULL) instead of exiting the process. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

static const char kc_sql_begin[] = "BEGIN";
static const char kc_sql_commit[] = "COMMIT";
static const char kc_sql_rev[] = "SELECT rev FROM key_revision WHERE id = 1";
static const char kc_sql_key[] =
    "SELECT id, workspace_id, name, prefix, last4, status, expires_at, "
    "usage_limit, usage, period, period_limit, period_usage, "
    "period_started_at, rpm, tpm, max_concurrent FROM api_keys WHERE id = ?";
/* Newest first: the current secret, then grace secrets by expiry. */
static const char kc_sql_secrets[] =
    "SELECT hash, expires_at FROM key_secrets WHERE key_id = ? "
    "ORDER BY expires_at IS NULL DESC, expires_at DESC LIMIT ?";

typedef struct kc_secret {
    unsigned char hash[KG_KEYHASH_LEN];
    int64_t expires_at; /* KG_NONE: the current secret */
} kc_secret_t;

/* A key as loaded from the store: one allocation. */
typedef struct kc_key {
    kg_key_view_t view;
    size_t nsecrets;
    kc_secret_t secrets[];
} kc_key_t;

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

/* One table entry: a key, or (key NULL) an id the store does not know. */
typedef struct kc_entry {
    char id[KG_TOKEN_ID_LEN + 1];
    kc_key_t *key;             /* owned; NULL for an unknown id */
    struct kc_entry *neg_prev; /* unknown ids, oldest first */
    struct kc_entry *neg_next;
    UT_hash_handle hh;
} kc_entry_t;

struct kg_keycache {
    const kg_keyhash_t *hk; /* borrowed */
    size_t max_entries;

    /* The table, the list of unknown ids and rev: read under a read lock,
     * changed under the write lock. */
    pthread_rwlock_t lock;
    kc_entry_t *table;
    kc_entry_t *neg_head;
    kc_entry_t *neg_tail;
    /* The key revision every entry was loaded at; written under the write
     * lock, atomic so the refresh and the stats can peek without it. */
    _Atomic int64_t rev;

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

static void kc_key_free(kc_key_t **key)
{
    if (key == NULL || *key == NULL) {
        return;
    }
    sodium_memzero((*key)->secrets,
                   (*key)->nsecrets * sizeof((*key)->secrets[0]));
    free(*key);
    *key = NULL;
}

static void kc_entry_free(kc_entry_t **e)
{
    if (e == NULL || *e == NULL) {
        return;
    }
    kc_key_free(&(*e)->key);
    free(*e);
    *e = NULL;
}

/* Free the entries of a detached table, linked by their hh.next. */
static void kc_free_chain(kc_entry_t *e)
{
    while (e != NULL) {
        kc_entry_t *next = e->hh.next;

        kc_entry_free(&e);
        e = next;
    }
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
    HASH_DEL(c->table, e);
    if (e->key == NULL) {
        kc_neg_unlink(c, e);
        atomic_fetch_sub_explicit(&c->negatives, 1, memory_order_relaxed);
    }
    atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
}

/*
 * Empty the table (write lock held) and return its entries, still linked
 * by hh.next, for kc_free_chain: freeing a million entries happens after
 * the lock is released, only the bucket array goes under it.
 */
static kc_entry_t *kc_detach_all(kg_keycache_t *c)
{
    kc_entry_t *chain = c->table;

    HASH_CLEAR(hh, c->table);
    c->neg_head = NULL;
    c->neg_tail = NULL;
    atomic_store_explicit(&c->entries, 0, memory_order_relaxed);
    atomic_store_explicit(&c->negatives, 0, memory_order_relaxed);
    return chain;
}

/* Make room for one entry (write lock held): unknown ids go first. */
static void kc_make_room(kg_keycache_t *c)
{
    while (c->table != NULL && HASH_COUNT(c->table) >= c->max_entries) {
        kc_entry_t *victim = c->neg_head ? c->neg_head : c->table;

        kc_remove(c, victim);
        kc_entry_free(&victim);
        kc_count(&c->evictions);
    }
}

/*
 * Add e (write lock held). Returns false when uthash could not allocate;
 * e is then not in the table and stays the caller's.
 */
static bool kc_insert(kg_keycache_t *c, kc_entry_t *e)
{
    kc_make_room(c);
    HASH_ADD(hh, c->table, id, KG_TOKEN_ID_LEN, e);
    if (e->hh.tbl == NULL) {
        return false;
    }
    if (e->key == NULL) {
        e->neg_prev = c->neg_tail;
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

/*
 * The verdict for a token whose keyed hash is want, against key (NULL: the
 * id is unknown), at now. Mirrors kg_keys_verify: every live secret is
 * compared in constant time, then status and prefix, then expiry.
 */
static kg_err_t kc_judge(const kc_key_t *key, const unsigned char *want,
                         const kg_token_t *tok, int64_t now, kg_key_view_t *out)
{
    bool match = false;

    if (key == NULL) {
        return KG_ERR_INVALID_KEY;
    }
    for (size_t i = 0; i < key->nsecrets; i++) {
        const kc_secret_t *s = &key->secrets[i];
        bool live = s->expires_at == KG_NONE || s->expires_at > now;
        bool equal = kg_keyhash_equal(want, s->hash);

        match = match || (live && equal);
    }
    if (!match || key->view.status != KG_KEY_ACTIVE ||
        strcmp(key->view.prefix, tok->prefix) != 0) {
        return KG_ERR_INVALID_KEY;
    }
    if (key->view.expires_at != KG_NONE && key->view.expires_at <= now) {
        return KG_ERR_KEY_EXPIRED;
    }
    if (out != NULL) {
        *out = key->view;
    }
    return KG_OK;
}

static kg_key_status_t kc_status_parse(const char *s)
{
    for (int i = KG_KEY_ACTIVE; i <= KG_KEY_DELETED; i++) {
        if (strcmp(s, kg_key_status_name((kg_key_status_t)i)) == 0) {
            return (kg_key_status_t)i;
        }
    }
    return KG_KEY_DELETED; /* unknown text never grants access */
}

static void kc_view_from_row(sqlite3_stmt *st, kg_key_view_t *v)
{
    memset(v, 0, sizeof(*v));
    snprintf(v->id, sizeof(v->id), "%s", kg_store_col_text(st, 0));
    snprintf(v->workspace_id, sizeof(v->workspace_id), "%s",
             kg_store_col_text(st, 1));
    snprintf(v->name, sizeof(v->name), "%s", kg_store_col_text(st, 2));
    snprintf(v->prefix, sizeof(v->prefix), "%s", kg_store_col_text(st, 3));
    snprintf(v->last4, sizeof(v->last4), "%s", kg_store_col_text(st, 4));
    v->status = kc_status_parse(kg_store_col_text(st, 5));
    v->expires_at = kg_store_col_opt_int(st, 6);
    v->usage_limit = kg_store_col_opt_int(st, 7);
    v->usage = sqlite3_column_int64(st, 8);
    if (!kg_period_parse(kg_store_col_text(st, 9), &v->period)) {
        v->period = KG_PERIOD_NONE;
    }
    v->period_limit = kg_store_col_opt_int(st, 10);
    v->period_usage = sqlite3_column_int64(st, 11);
    v->period_started_at = kg_store_col_opt_int(st, 12);
    v->rpm = kg_store_col_opt_int(st, 13);
    v->tpm = kg_store_col_opt_int(st, 14);
    v->max_concurrent = kg_store_col_opt_int(st, 15);
}

/* Run a cached statement that returns no rows (store_mu held). */
static int kc_step_once(kg_keycache_t *c, const char *sql)
{
    sqlite3_stmt *st = kg_store_stmt(c->store, sql, NULL);
    int src;

    if (st == NULL) {
        return SQLITE_ERROR;
    }
    src = sqlite3_step(st);
    kg_store_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Read the key revision (store_mu held); an SQLite result code. */
static int kc_read_rev(kg_keycache_t *c, int64_t *rev)
{
    sqlite3_stmt *st = kg_store_stmt(c->store, kc_sql_rev, NULL);
    int src;

    if (st == NULL) {
        return SQLITE_ERROR;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *rev = sqlite3_column_int64(st, 0);
        src = SQLITE_OK;
    } else if (src == SQLITE_DONE) {
        src = SQLITE_CORRUPT; /* the migration inserts the only row */
    }
    kg_store_reset(st);
    return src;
}

/* Read the key's secrets into secrets (store_mu held, in the snapshot). */
static int kc_read_secrets(kg_keycache_t *c, const char *id,
                           kc_secret_t *secrets, size_t *n)
{
    sqlite3_stmt *st = kg_store_stmt(c->store, kc_sql_secrets, NULL);
    int src;

    *n = 0;
    if (st == NULL) {
        return SQLITE_ERROR;
    }
    kg_store_bind_text(st, 1, id);
    sqlite3_bind_int(st, 2, KG_KEYCACHE_MAX_SECRETS);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const void *h = sqlite3_column_blob(st, 0);

        if (*n < KG_KEYCACHE_MAX_SECRETS && h != NULL &&
            sqlite3_column_bytes(st, 0) == KG_KEYHASH_LEN) {
            memcpy(secrets[*n].hash, h, KG_KEYHASH_LEN);
            secrets[*n].expires_at = kg_store_col_opt_int(st, 1);
            (*n)++;
        }
    }
    kg_store_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/*
 * Load the key id and its secrets from one read snapshot (store_mu held).
 * On KG_OK *rev is the snapshot's key revision and *key is new, or NULL
 * when the store has no such key.
 */
static kg_err_t kc_load(kg_keycache_t *c, const char *id, int64_t *rev,
                        kc_key_t **key)
{
    kc_secret_t secrets[KG_KEYCACHE_MAX_SECRETS];
    kg_key_view_t view;
    kc_key_t *k = NULL;
    sqlite3_stmt *st = NULL;
    bool found = false;
    size_t n = 0;
    kg_err_t rc = KG_OK;
    int src;

    *key = NULL;
    src = kc_step_once(c, kc_sql_begin);
    if (src == SQLITE_OK) {
        src = kc_read_rev(c, rev);
    }
    if (src != SQLITE_OK) {
        goto out;
    }
    st = kg_store_stmt(c->store, kc_sql_key, NULL);
    if (st == NULL) {
        src = SQLITE_ERROR;
        goto out;
    }
    kg_store_bind_text(st, 1, id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        kc_view_from_row(st, &view);
        found = true;
        src = SQLITE_OK;
    } else if (src == SQLITE_DONE) {
        src = SQLITE_OK;
    }
    kg_store_reset(st);
    if (src == SQLITE_OK && found) {
        src = kc_read_secrets(c, id, secrets, &n);
    }
    if (src == SQLITE_OK) {
        src = kc_step_once(c, kc_sql_commit);
    }
out:
    kg_store_rollback(c->store); /* ends the read snapshot if still open */
    rc = kg_store_error(c->store, src, "loading a key", NULL);
    if (rc == KG_OK && found) {
        k = malloc(sizeof(*k) + n * sizeof(k->secrets[0]));
        if (k == NULL) {
            rc = KG_ERR_NOMEM;
        } else {
            k->view = view;
            k->nsecrets = n;
            memcpy(k->secrets, secrets, n * sizeof(secrets[0]));
        }
    }
    sodium_memzero(secrets, sizeof(secrets));
    *key = k;
    return rc;
}

/*
 * A miss: load the key, cache what was found (an unknown id too) when the
 * snapshot belongs to the cache's revision or a newer one (then the older
 * entries go first), and judge the token.
 */
static kg_err_t kc_miss(kg_keycache_t *c, const kg_token_t *tok,
                        const unsigned char *want, int64_t now,
                        kg_key_view_t *out)
{
    kc_entry_t *e = NULL;
    kc_entry_t *found = NULL;
    kc_entry_t *chain = NULL;
    kc_key_t *key = NULL;
    int64_t rev = 0;
    int64_t cur;
    kg_err_t rc;

    kc_count(&c->misses);
    pthread_mutex_lock(&c->store_mu);
    rc = kc_load(c, tok->id, &rev, &key);
    pthread_mutex_unlock(&c->store_mu);
    if (rc != KG_OK) {
        if (rc != KG_ERR_NOMEM) {
            kc_count(&c->store_errors);
        }
        return rc;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        kc_key_free(&key);
        return KG_ERR_NOMEM;
    }
    memcpy(e->id, tok->id, KG_TOKEN_ID_LEN + 1);
    e->key = key;

    pthread_rwlock_wrlock(&c->lock);
    cur = atomic_load_explicit(&c->rev, memory_order_relaxed);
    if (rev > cur) {
        /* The store moved on before a refresh noticed: catch up now. */
        chain = kc_detach_all(c);
        atomic_store_explicit(&c->rev, rev, memory_order_relaxed);
        kc_count(&c->flushes);
    }
    if (rev >= cur) {
        HASH_FIND(hh, c->table, tok->id, KG_TOKEN_ID_LEN, found);
        if (found == NULL && kc_insert(c, e)) {
            found = e;
            e = NULL;
        }
    }
    /* An older snapshot (a refresh ran meanwhile) is judged, not kept. */
    rc = kc_judge(found ? found->key : e->key, want, tok, now, out);
    pthread_rwlock_unlock(&c->lock);

    kc_free_chain(chain);
    kc_entry_free(&e);
    return rc;
}

kg_err_t kg_keycache_verify(kg_keycache_t *c, const kg_token_t *tok,
                            kg_key_view_t *out)
{
    unsigned char want[KG_KEYHASH_LEN];
    kc_entry_t *e = NULL;
    kc_stripe_t *stripe = &c->stripes[kc_stripe_index()];
    int64_t now = kg_clock_now();
    kg_err_t rc = KG_OK;

    kg_keyhash_compute(c->hk, tok->id, tok->secret, want);

    /* The id array always holds KG_TOKEN_ID_LEN bytes to hash; an id that
     * is not a valid one is simply not found. */
    pthread_rwlock_rdlock(&c->lock);
    HASH_FIND(hh, c->table, tok->id, KG_TOKEN_ID_LEN, e);
    if (e != NULL) {
        rc = kc_judge(e->key, want, tok, now, out);
        kc_count(e->key != NULL ? &stripe->hits : &stripe->negative_hits);
    }
    pthread_rwlock_unlock(&c->lock);

    if (e == NULL) {
        rc = kg_token_id_valid(tok->id) ? kc_miss(c, tok, want, now, out)
                                        : KG_ERR_INVALID_KEY;
    }
    sodium_memzero(want, sizeof(want));
    if (rc != KG_OK && out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

kg_err_t kg_keycache_refresh(kg_keycache_t *c)
{
    kc_entry_t *chain = NULL;
    int64_t rev = 0;
    kg_err_t rc;
    int src;

    /* store_mu stays held through the flush, so no miss can load a newer
     * snapshot between the read and the flush. */
    pthread_mutex_lock(&c->store_mu);
    src = kc_read_rev(c, &rev);
    rc = kg_store_error(c->store, src, "reading the key revision", NULL);
    if (rc != KG_OK) {
        kc_count(&c->refresh_errors);
    } else if (rev != atomic_load_explicit(&c->rev, memory_order_relaxed)) {
        /* Not only rev > cur: a store restored from a backup goes back. */
        pthread_rwlock_wrlock(&c->lock);
        chain = kc_detach_all(c);
        atomic_store_explicit(&c->rev, rev, memory_order_relaxed);
        pthread_rwlock_unlock(&c->lock);
        kc_count(&c->flushes);
    }
    pthread_mutex_unlock(&c->store_mu);
    kc_free_chain(chain);
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
    int src;

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
    c->max_entries =
        max_entries ? max_entries : KG_KEYCACHE_DEFAULT_MAX_ENTRIES;
    rc = kg_store_open(store_path, &opts, &c->store, diag);
    if (rc != KG_OK) {
        goto out;
    }
    src = kc_read_rev(c, &rev);
    rc = kg_store_error(c->store, src, "reading the key revision", diag);
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
    kc_free_chain(kc_detach_all(c));
    kg_store_close(&c->store);
    pthread_cond_destroy(&c->thr_cv);
    pthread_mutex_destroy(&c->thr_mu);
    pthread_mutex_destroy(&c->store_mu);
    pthread_rwlock_destroy(&c->lock);
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
}
