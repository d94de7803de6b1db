/*
 * keygate micro-benchmarks (bench/, not part of the main build).
 *
 *   keygate-micro DIR [--keys N] [--seconds S] [--events E]
 *
 * Works in DIR (a fresh store micro.db is made there and removed at the
 * end) and prints one "MICRO name=value ..." line per figure:
 *
 *   verify_hot      cached verifications per second of one key, one thread
 *                   (kg_keycache_verify: keyed BLAKE2b + table + compare)
 *   verify_full     the same plus kg_token_parse of the header's token
 *                   (shape + CRC32), which is what the request path does
 *   verify_negative cached "unknown id" answers per second
 *   lookup_<n>      cache-miss verification latency (store read of the key
 *                   and its secrets, hash, insert) with n keys in the store,
 *                   for a small store and for N keys (default 1,000,000)
 *   verify_ws_<w>   cached verifications per second over a working set of
 *                   w keys picked at random (hash table much larger than
 *                   the CPU caches) with N keys in the store; each copies
 *                   the key's view out, as the request path does
 *                   (verify_ws_noview_<w>: without the view)
 *   usage_commit    one usage event submitted and waited for, repeated:
 *                   the group-commit latency a JSON answer waits for
 *   usage_writer    events per second through the usage writer thread
 *                   (submit as fast as the queue takes them, then flush)
 *
 * Every loop is bounded by a count and by --seconds. Pin the process with
 * taskset to read "per core". Throughput figures give the wall-clock
 * ns_per_op and cpu_ns_per_op, the thread's own CPU time per operation
 * (without the time other processes or the hypervisor took from the CPU:
 * the steadier figure on a shared machine); lookups give cpu_mean_us.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <semaphore.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keygate/keycache.h"
#include "keygate/keyhash.h"
#include "keygate/keys.h"
#include "keygate/store.h"
#include "keygate/token.h"
#include "keygate/usagedb.h"
#include "keygate/workspaces.h"

static double opt_seconds = 3.0;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread: on a shared VM it leaves out the time
 * other processes (and the hypervisor, as steal) took from this CPU, which
 * the wall clock counts. */
static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A throughput measurement: wall and CPU time from its start. */
typedef struct meter {
    double wall;
    double cpu;
} meter_t;

static meter_t meter_start(void)
{
    meter_t m = {now_s(), cpu_s()};

    return m;
}

/* Print " ops=... seconds=... per_sec=... ns_per_op=... cpu_ns_per_op=..."
 * and the newline that ends a MICRO line. */
static void meter_print(const meter_t *m, uint64_t ops)
{
    double dt = now_s() - m->wall;
    double cpu = cpu_s() - m->cpu;

    printf(" ops=%llu seconds=%.3f per_sec=%.0f ns_per_op=%.1f "
           "cpu_ns_per_op=%.1f\n",
           (unsigned long long)ops, dt, (double)ops / dt,
           dt * 1e9 / (double)ops, cpu * 1e9 / (double)ops);
}

static void die(const char *what, kg_err_t rc, const kg_diag_t *diag)
{
    fprintf(stderr, "keygate-micro: %s: %s%s%s\n", what, kg_err_name(rc),
            diag && diag->msg[0] ? ": " : "", diag ? diag->msg : "");
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* p-th percentile (0..100) of n sorted values, nearest rank. */
static uint64_t pct(const uint64_t *v, size_t n, double p)
{
    size_t i;

    if (n == 0) {
        return 0;
    }
    i = (size_t)(p / 100.0 * (double)n);
    if (i >= n) {
        i = n - 1;
    }
    return v[i];
}

/* A small fast PRNG for bench data (not for secrets anyone relies on). */
static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static const char b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void rand_b62(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = b62[rng_next() % 62];
    }
    out[n] = '\0';
}

typedef struct bench_key {
    char id[KG_TOKEN_ID_LEN + 1];
    char secret[KG_TOKEN_SECRET_LEN + 1];
} bench_key_t;

typedef struct ctx {
    char path[4096];
    kg_store_t *store;
    kg_keyhash_t *hk;
    kg_workspace_t ws;
    char token[KG_TOKEN_STRLEN];
    kg_key_t key;
    bench_key_t *bulk;
    size_t nbulk;
} ctx_t;

/* ---- cached verification ---------------------------------------------- */

static void bench_verify_hot(ctx_t *c)
{
    kg_keycache_t *kc = NULL;
    kg_diag_t diag = {0};
    kg_token_t tok;
    kg_token_t unknown;
    kg_key_view_t view;
    kg_err_t rc;
    const uint64_t max_iter = 200000000u;
    uint64_t n;
    meter_t m;
    double t0;
    size_t toklen = strlen(c->token);

    rc = kg_keycache_new(c->path, 5000, c->hk, 0, &kc, &diag);
    if (rc != KG_OK) {
        die("keycache_new", rc, &diag);
    }
    rc = kg_token_parse(c->token, toklen, &tok);
    if (rc != KG_OK) {
        die("token_parse", rc, NULL);
    }
    rc = kg_keycache_verify(kc, &tok, &view); /* the miss that caches it */
    if (rc != KG_OK) {
        die("verify (first)", rc, NULL);
    }

    /* Cached verification of a parsed token. */
    m = meter_start();
    t0 = m.wall;
    for (n = 0; n < max_iter; n++) {
        if (kg_keycache_verify(kc, &tok, &view) != KG_OK) {
            die("verify (hot)", KG_ERR_INTERNAL, NULL);
        }
        if ((n & 4095) == 4095 && now_s() - t0 > opt_seconds) {
            n++;
            break;
        }
    }
    printf("MICRO name=verify_hot");
    meter_print(&m, n);

    /* The request path's part: parse the header's token, then verify. */
    m = meter_start();
    t0 = m.wall;
    for (n = 0; n < max_iter; n++) {
        kg_token_t t;

        if (kg_token_parse(c->token, toklen, &t) != KG_OK ||
            kg_keycache_verify(kc, &t, &view) != KG_OK) {
            die("verify (full)", KG_ERR_INTERNAL, NULL);
        }
        kg_token_wipe(&t);
        if ((n & 4095) == 4095 && now_s() - t0 > opt_seconds) {
            n++;
            break;
        }
    }
    printf("MICRO name=verify_full");
    meter_print(&m, n);

    /* An id the store does not know: cached as negative after one miss. */
    rc = kg_token_generate("kg", &unknown);
    if (rc != KG_OK) {
        die("token_generate", rc, NULL);
    }
    if (kg_keycache_verify(kc, &unknown, NULL) != KG_ERR_INVALID_KEY) {
        die("verify (unknown)", KG_ERR_INTERNAL, NULL);
    }
    m = meter_start();
    t0 = m.wall;
    for (n = 0; n < max_iter; n++) {
        if (kg_keycache_verify(kc, &unknown, NULL) != KG_ERR_INVALID_KEY) {
            die("verify (negative)", KG_ERR_INTERNAL, NULL);
        }
        if ((n & 4095) == 4095 && now_s() - t0 > opt_seconds) {
            n++;
            break;
        }
    }
    printf("MICRO name=verify_negative");
    meter_print(&m, n);

    kg_token_wipe(&tok);
    kg_token_wipe(&unknown);
    kg_keycache_free(&kc);
}

/* ---- bulk keys and lookups -------------------------------------------- */

/* Insert keys [from, to) of c->bulk straight into the store (one
 * transaction), with real keyed hashes so that they verify. */
static void bulk_insert(ctx_t *c, size_t from, size_t to)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *ik = NULL;
    sqlite3_stmt *is = NULL;
    int64_t now = (int64_t)time(NULL);
    int src;

    src = sqlite3_open_v2(c->path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (src != SQLITE_OK) {
        fprintf(stderr, "sqlite open: %s\n", sqlite3_errstr(src));
        exit(1);
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_exec(db, "PRAGMA synchronous = OFF", NULL, NULL, NULL);
    sqlite3_exec(db, "PRAGMA cache_size = -262144", NULL, NULL, NULL);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(
            db,
            "INSERT INTO api_keys (id, workspace_id, name, prefix, last4, "
            "created_at, updated_at) VALUES (?, ?, ?, 'kg', ?, ?, ?)",
            -1, &ik, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO key_secrets (key_id, hash, "
                           "created_at) VALUES (?, ?, ?)",
                           -1, &is, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite prepare: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
    for (size_t i = from; i < to; i++) {
        bench_key_t *k = &c->bulk[i];
        unsigned char h[KG_KEYHASH_LEN];
        char name[32];

        snprintf(name, sizeof(name), "bulk-%zu", i);
        kg_keyhash_compute(c->hk, k->id, k->secret, h);
        sqlite3_bind_text(ik, 1, k->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ik, 2, c->ws.id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ik, 3, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ik, 4, k->secret + KG_TOKEN_SECRET_LEN - 4, -1,
                          SQLITE_STATIC);
        sqlite3_bind_int64(ik, 5, now);
        sqlite3_bind_int64(ik, 6, now);
        sqlite3_bind_text(is, 1, k->id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(is, 2, h, sizeof(h), SQLITE_TRANSIENT);
        sqlite3_bind_int64(is, 3, now);
        if (sqlite3_step(ik) != SQLITE_DONE ||
            sqlite3_step(is) != SQLITE_DONE) {
            fprintf(stderr, "sqlite insert: %s\n", sqlite3_errmsg(db));
            exit(1);
        }
        sqlite3_reset(ik);
        sqlite3_reset(is);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite commit: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
    sqlite3_finalize(ik);
    sqlite3_finalize(is);
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(db);
}

static int cmp_key(const void *a, const void *b)
{
    return memcmp(((const bench_key_t *)a)->id, ((const bench_key_t *)b)->id,
                  KG_TOKEN_ID_LEN);
}

static void tok_of(const ctx_t *c, size_t i, kg_token_t *t)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->prefix, "kg", sizeof("kg"));
    memcpy(t->id, c->bulk[i].id, sizeof(t->id));
    memcpy(t->secret, c->bulk[i].secret, sizeof(t->secret));
}

/* Cache-miss verification latency of up to `samples` distinct random keys
 * among the first n of c->bulk, with a fresh cache. */
static void bench_lookup(ctx_t *c, size_t n, size_t samples)
{
    kg_keycache_t *kc = NULL;
    kg_diag_t diag = {0};
    uint64_t *lat;
    size_t *order;
    size_t done = 0;
    double t0;
    double c0;
    uint64_t sum = 0;
    kg_err_t rc;

    if (samples > n) {
        samples = n;
    }
    lat = calloc(samples, sizeof(*lat));
    order = calloc(n, sizeof(*order));
    if (lat == NULL || order == NULL) {
        die("calloc", KG_ERR_NOMEM, NULL);
    }
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
    }
    for (size_t i = 0; i < samples; i++) { /* partial Fisher-Yates */
        size_t j = i + (size_t)(rng_next() % (n - i));
        size_t t = order[i];

        order[i] = order[j];
        order[j] = t;
    }
    rc = kg_keycache_new(c->path, 5000, c->hk, 0, &kc, &diag);
    if (rc != KG_OK) {
        die("keycache_new", rc, &diag);
    }
    t0 = now_s();
    c0 = cpu_s();
    for (done = 0; done < samples; done++) {
        kg_token_t t;
        uint64_t a;

        tok_of(c, order[done], &t);
        a = now_ns();
        rc = kg_keycache_verify(kc, &t, NULL);
        lat[done] = now_ns() - a;
        sum += lat[done];
        if (rc != KG_OK) {
            die("verify (lookup)", rc, NULL);
        }
        if (now_s() - t0 > opt_seconds * 3) {
            done++;
            break;
        }
    }
    c0 = cpu_s() - c0;
    qsort(lat, done, sizeof(*lat), cmp_u64);
    printf("MICRO name=lookup_%zu keys_in_store=%zu samples=%zu p50_us=%.2f "
           "p99_us=%.2f mean_us=%.2f cpu_mean_us=%.2f\n",
           n, n, done, (double)pct(lat, done, 50) / 1e3,
           (double)pct(lat, done, 99) / 1e3, (double)sum / (double)done / 1e3,
           c0 * 1e6 / (double)done);

    /* Store verification without the cache (kg_keys_verify), same keys. */
    {
        kg_keys_ctx_t kctx = {.store = c->store,
                              .hashkey = c->hk,
                              .prefix = "kg",
                              .max_ttl = 0,
                              .default_ttl = 0,
                              .actor = "bench"};
        size_t m = done < 5000 ? done : 5000;

        sum = 0;
        c0 = cpu_s();
        for (size_t i = 0; i < m; i++) {
            kg_token_t t;
            kg_key_t k = {0};
            uint64_t a;

            tok_of(c, order[i], &t);
            a = now_ns();
            rc = kg_keys_verify(&kctx, &t, &k, NULL);
            lat[i] = now_ns() - a;
            sum += lat[i];
            kg_key_clear(&k);
            if (rc != KG_OK) {
                die("keys_verify", rc, NULL);
            }
        }
        c0 = cpu_s() - c0;
        qsort(lat, m, sizeof(*lat), cmp_u64);
        printf("MICRO name=store_verify_%zu keys_in_store=%zu samples=%zu "
               "p50_us=%.2f p99_us=%.2f mean_us=%.2f cpu_mean_us=%.2f\n",
               n, n, m, (double)pct(lat, m, 50) / 1e3,
               (double)pct(lat, m, 99) / 1e3, (double)sum / (double)m / 1e3,
               c0 * 1e6 / (double)m);
    }

    free(lat);
    free(order);
    kg_keycache_free(&kc);
}

/* Verify random tokens of toks[0..w) for --seconds; each copies the view
 * out when view is not NULL. Prints the rest of the MICRO line. */
static void ws_loop(kg_keycache_t *kc, const kg_token_t *toks, size_t w,
                    kg_key_view_t *view)
{
    meter_t m = meter_start();
    double t0 = m.wall;
    uint64_t ops;

    for (ops = 0; ops < 500000000u; ops++) {
        size_t i = (size_t)(rng_next() % w);

        if (kg_keycache_verify(kc, &toks[i], view) != KG_OK) {
            die("verify (working set)", KG_ERR_INTERNAL, NULL);
        }
        if ((ops & 4095) == 4095 && now_s() - t0 > opt_seconds) {
            ops++;
            break;
        }
    }
    meter_print(&m, ops);
}

/* Cached verifications per second over a random working set of w keys out
 * of the first n bulk keys. */
static void bench_working_set(ctx_t *c, size_t n, size_t w)
{
    kg_keycache_t *kc = NULL;
    kg_diag_t diag = {0};
    kg_token_t *toks;
    kg_key_view_t view;
    double t0;
    double dt;
    kg_err_t rc;

    if (w > n) {
        w = n;
    }
    toks = calloc(w, sizeof(*toks));
    if (toks == NULL) {
        die("calloc", KG_ERR_NOMEM, NULL);
    }
    for (size_t i = 0; i < w; i++) {
        tok_of(c, (size_t)(rng_next() % n), &toks[i]);
    }
    rc = kg_keycache_new(c->path, 5000, c->hk, 0, &kc, &diag);
    if (rc != KG_OK) {
        die("keycache_new", rc, &diag);
    }
    t0 = now_s();
    for (size_t i = 0; i < w; i++) { /* fill: one miss each */
        if (kg_keycache_verify(kc, &toks[i], NULL) != KG_OK) {
            die("verify (fill)", KG_ERR_INTERNAL, NULL);
        }
    }
    dt = now_s() - t0;
    fprintf(stderr, "keygate-micro: filled %zu cache entries in %.1f s\n", w,
            dt);
    printf("MICRO name=verify_ws_%zu keys_in_store=%zu working_set=%zu", w, n,
           w);
    ws_loop(kc, toks, w, &view);
    fflush(stdout);
    printf("MICRO name=verify_ws_noview_%zu keys_in_store=%zu working_set=%zu",
           w, n, w);
    ws_loop(kc, toks, w, NULL);
    free(toks);
    kg_keycache_free(&kc);
}

/* ---- usage writer ----------------------------------------------------- */

static atomic_ulong usage_done;
static atomic_ulong usage_failed;
static sem_t usage_sem; /* posted per callback in the one-at-a-time phase */

static void usage_cb(void *ud, kg_err_t rc)
{
    if (rc == KG_OK) {
        atomic_fetch_add(&usage_done, 1);
    } else {
        atomic_fetch_add(&usage_failed, 1);
    }
    if (ud != NULL) {
        sem_post(&usage_sem);
    }
}

static void fill_event(const ctx_t *c, kg_usage_event_t *ev, const char *tag,
                       unsigned long i)
{
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->request_id, sizeof(ev->request_id), "bench-%s-%lu", tag, i);
    snprintf(ev->key_id, sizeof(ev->key_id), "%s", c->key.id);
    snprintf(ev->workspace_id, sizeof(ev->workspace_id), "%s", c->ws.id);
    snprintf(ev->operation, sizeof(ev->operation), "chat");
    snprintf(ev->model, sizeof(ev->model), "gpt-4o-mini");
    snprintf(ev->provider, sizeof(ev->provider), "mock");
    snprintf(ev->mode, sizeof(ev->mode), "api-keys");
    ev->status = 200;
    ev->prompt_tokens = 10;
    ev->completion_tokens = 20;
    ev->cost = 14;
    ev->latency_ms = 1;
    ev->ttft_ms = -1;
    snprintf(ev->client_ip, sizeof(ev->client_ip), "127.0.0.1");
    ev->period_start = -1;
}

static void bench_usage(ctx_t *c, unsigned long events)
{
    kg_usagedb_t *w = NULL;
    kg_diag_t diag = {0};
    kg_usage_event_t ev;
    kg_usagedb_stats_t st;
    kg_usagedb_stats_t st0;
    unsigned long sent = 0;
    unsigned long full = 0;
    uint64_t *lat;
    size_t nlat = 0;
    const size_t max_lat = 2000;
    double t0;
    double dt;
    kg_err_t rc;

    sem_init(&usage_sem, 0, 0);
    rc = kg_usagedb_start(c->path, 5000, KG_USAGEDB_QUEUE_MAX, &w, &diag);
    if (rc != KG_OK) {
        die("usagedb_start", rc, &diag);
    }

    /* One at a time: the commit latency an answer waits for. */
    lat = calloc(max_lat, sizeof(*lat));
    if (lat == NULL) {
        die("calloc", KG_ERR_NOMEM, NULL);
    }
    t0 = now_s();
    for (nlat = 0; nlat < max_lat && now_s() - t0 < opt_seconds; nlat++) {
        uint64_t a = now_ns();

        struct timespec dl;

        fill_event(c, &ev, "one", (unsigned long)nlat);
        rc = kg_usagedb_submit(w, &ev, usage_cb, &usage_sem);
        if (rc != KG_OK) {
            die("usagedb_submit", rc, NULL);
        }
        /* Sleep until the callback (a spinning waiter would steal the
         * writer's CPU when both share one core). */
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 10;
        while (sem_timedwait(&usage_sem, &dl) != 0) {
            if (errno != EINTR) {
                die("usage commit wait (timeout)", KG_ERR_INTERNAL, NULL);
            }
        }
        if (atomic_load(&usage_failed) != 0) {
            die("usage commit", KG_ERR_INTERNAL, NULL);
        }
        lat[nlat] = now_ns() - a;
    }
    qsort(lat, nlat, sizeof(*lat), cmp_u64);
    printf("MICRO name=usage_commit samples=%zu p50_us=%.1f p99_us=%.1f\n",
           nlat, (double)pct(lat, nlat, 50) / 1e3,
           (double)pct(lat, nlat, 99) / 1e3);
    free(lat);

    /* As fast as the queue takes them. */
    atomic_store(&usage_done, 0);
    kg_usagedb_stats(w, &st0);
    t0 = now_s();
    while (sent < events) {
        fill_event(c, &ev, "bulk", sent);
        rc = kg_usagedb_submit(w, &ev, usage_cb, NULL);
        if (rc == KG_OK) {
            sent++;
        } else if (rc == KG_ERR_UNAVAILABLE) {
            full++;
            usleep(50);
        } else {
            die("usagedb_submit", rc, NULL);
        }
        if ((sent & 1023) == 0 && now_s() - t0 > opt_seconds * 4) {
            break;
        }
    }
    rc = kg_usagedb_flush(w);
    dt = now_s() - t0;
    if (rc != KG_OK) {
        die("usagedb_flush", rc, NULL);
    }
    kg_usagedb_stats(w, &st);
    printf("MICRO name=usage_writer events=%lu committed=%lu failed=%lu "
           "seconds=%.3f per_sec=%.0f batches=%llu avg_batch=%.1f "
           "queue_full_retries=%lu\n",
           sent, (unsigned long)atomic_load(&usage_done),
           (unsigned long)atomic_load(&usage_failed), dt,
           (double)atomic_load(&usage_done) / dt,
           (unsigned long long)(st.batches - st0.batches),
           st.batches > st0.batches ? (double)(st.committed - st0.committed) /
                                          (double)(st.batches - st0.batches)
                                    : 0.0,
           full);
    kg_usagedb_stop(&w);
}

/* ---- main ------------------------------------------------------------- */

static void usage_exit(void)
{
    fprintf(stderr, "usage: keygate-micro DIR [--keys N] [--seconds S] "
                    "[--events E] [--working-set W]\n"
                    "       [--only verify,usage,lookup,ws]\n"
                    "  lookup: the lookups and the working sets; ws: only "
                    "the working sets\n");
    exit(2);
}

int main(int argc, char **argv)
{
    ctx_t c;
    kg_diag_t diag = {0};
    kg_store_opts_t so = {.flags = KG_STORE_CREATE, .busy_timeout_ms = 5000};
    unsigned char raw[KG_KEYHASH_KEY_LEN];
    size_t nkeys = 1000000;
    size_t small = 1000;
    size_t wset = 100000;
    unsigned long events = 200000;
    const char *only = "verify,usage,lookup";
    kg_err_t rc;
    double t0;

    if (argc < 2) {
        usage_exit();
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--keys") == 0 && i + 1 < argc) {
            nkeys = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            opt_seconds = strtod(argv[++i], NULL);
        } else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc) {
            events = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--working-set") == 0 && i + 1 < argc) {
            wset = strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            usage_exit();
        }
    }
    if (nkeys < small) {
        nkeys = small;
    }
    if (opt_seconds <= 0 || opt_seconds > 30) {
        opt_seconds = 3.0;
    }
    if (sodium_init() < 0) {
        return 1;
    }
    memset(&c, 0, sizeof(c));
    snprintf(c.path, sizeof(c.path), "%s/micro.db", argv[1]);
    unlink(c.path);

    rc = kg_store_open(c.path, &so, &c.store, &diag);
    if (rc != KG_OK) {
        die("store_open", rc, &diag);
    }
    rc = kg_workspace_ensure_default(c.store, "bench", &diag);
    if (rc != KG_OK) {
        die("workspace", rc, &diag);
    }
    rc = kg_workspace_get(c.store, KG_WORKSPACE_DEFAULT, &c.ws, &diag);
    if (rc != KG_OK) {
        die("workspace_get", rc, &diag);
    }
    randombytes_buf(raw, sizeof(raw));
    rc = kg_keyhash_from_bytes(raw, &c.hk);
    if (rc != KG_OK) {
        die("keyhash", rc, NULL);
    }
    {
        kg_keys_ctx_t kctx = {.store = c.store,
                              .hashkey = c.hk,
                              .prefix = "kg",
                              .max_ttl = 0,
                              .default_ttl = 0,
                              .actor = "bench"};
        kg_key_spec_t spec = {.name = "micro"};

        rc = kg_keys_create(&kctx, &spec, &c.key, c.token, &diag);
        if (rc != KG_OK) {
            die("keys_create", rc, &diag);
        }
    }
    printf("MICRO name=setup seconds_per_figure=%.1f keys=%zu events=%lu\n",
           opt_seconds, nkeys, events);
    fflush(stdout);

    if (strstr(only, "verify") != NULL) {
        bench_verify_hot(&c);
        fflush(stdout);
    }
    if (strstr(only, "usage") != NULL) {
        bench_usage(&c, events);
        fflush(stdout);
    }
    if (strstr(only, "lookup") == NULL && strstr(only, "ws") == NULL) {
        goto done;
    }

    /* Bulk keys: a small store first, then N. */
    c.nbulk = nkeys;
    c.bulk = calloc(nkeys, sizeof(*c.bulk));
    if (c.bulk == NULL) {
        die("calloc", KG_ERR_NOMEM, NULL);
    }
    rng_state ^= (uint64_t)now_ns();
    for (size_t i = 0; i < nkeys; i++) {
        rand_b62(c.bulk[i].id, KG_TOKEN_ID_LEN);
        rand_b62(c.bulk[i].secret, KG_TOKEN_SECRET_LEN);
    }
    /* In id order, each stage appends to the B-trees instead of splitting
     * pages at random: the store is the same, it is built much faster. */
    qsort(c.bulk, small, sizeof(*c.bulk), cmp_key);
    qsort(c.bulk + small, nkeys - small, sizeof(*c.bulk), cmp_key);
    t0 = now_s();
    bulk_insert(&c, 0, small);
    if (strstr(only, "lookup") != NULL) {
        bench_lookup(&c, small, small);
        fflush(stdout);
    }
    bulk_insert(&c, small, nkeys);
    fprintf(stderr, "keygate-micro: %zu keys in the store after %.1f s\n",
            nkeys, now_s() - t0);
    if (strstr(only, "lookup") != NULL) {
        bench_lookup(&c, nkeys, 20000);
        fflush(stdout);
    }
    bench_working_set(&c, nkeys, small);
    fflush(stdout);
    bench_working_set(&c, nkeys, wset);
    fflush(stdout);

done:
    free(c.bulk);
    kg_key_clear(&c.key);
    kg_workspace_clear(&c.ws);
    kg_keyhash_free(&c.hk);
    kg_store_close(&c.store);
    unlink(c.path);
    {
        char p[4200];

        snprintf(p, sizeof(p), "%s-wal", c.path);
        unlink(p);
        snprintf(p, sizeof(p), "%s-shm", c.path);
        unlink(p);
    }
    return 0;
}
