/* The usage writer: one thread that commits usage events in batches. */
#include "keygate/usagedb.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keygate/clock.h"
#include "keygate/store.h"

static const char ud_sql_event[] =
    "INSERT INTO usage_events (request_id, key_id, workspace_id, at_ms, "
    "operation, model, provider, mode, status, prompt_tokens, "
    "completion_tokens, cached_tokens, cost, latency_ms, ttft_ms, streamed, "
    "client_ip, error_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
    "?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING";
static const char ud_sql_hourly[] =
    "INSERT INTO usage_hourly (key_id, hour, model, requests, errors, "
    "prompt_tokens, completion_tokens, cached_tokens, cost, latency_ms_sum) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key_id, hour, model) DO UPDATE SET "
    "requests = requests + excluded.requests, "
    "errors = errors + excluded.errors, "
    "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = completion_tokens + excluded.completion_tokens, "
    "cached_tokens = cached_tokens + excluded.cached_tokens, "
    "cost = cost + excluded.cost, "
    "latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum";
/*
 * Touches no column of the key-revision triggers: no cache flush. ?4 is
 * the start of the budget period the charge falls in (-1: the key has no
 * period): a new period restarts period_usage, a charge for a period
 * older than the stored one only counts toward the lifetime usage.
 */
static const char ud_sql_key[] =
    "UPDATE api_keys SET usage = usage + ?1, "
    "last_used_at = max(coalesce(last_used_at, 0), ?2), "
    "period_usage = CASE WHEN period IS NULL OR ?4 < 0 OR "
    "coalesce(period_started_at, -1) > ?4 "
    "THEN period_usage WHEN period_started_at = ?4 THEN period_usage + ?1 "
    "ELSE ?1 END, "
    "period_started_at = CASE WHEN period IS NULL OR ?4 < 0 OR "
    "coalesce(period_started_at, -1) > ?4 THEN period_started_at ELSE ?4 END "
    "WHERE id = ?3";
/* Credits mode: the pool's cost comes off the workspace's balance. */
static const char ud_sql_credits[] =
    "UPDATE workspaces SET credits_balance = credits_balance - ? "
    "WHERE id = ?";

/* A queued event and, once its batch ran, its outcome. */
typedef struct ud_item {
    kg_usage_event_t ev;
    kg_usage_done_fn done;
    void *ud;
    kg_err_t rc;
} ud_item_t;

/*
 * A batch's totals, folded before they are written: one usage_hourly
 * upsert per (key, hour, model), one api_keys update per (key, budget
 * period) and one credits update per workspace, instead of one of each per
 * event. Folding is exact: each statement adds its values (last_used_at
 * takes the maximum), and two charges for the same period_start applied
 * one after the other give the same row as their sum applied once (see
 * ud_sql_key); charges for different periods stay separate statements.
 * Only events whose usage_events row was inserted are folded, so an event
 * already stored (the same request_id) is never counted twice.
 */
typedef enum ud_fold_kind {
    UD_FOLD_HOURLY,  /* (key_id, hour, model) */
    UD_FOLD_KEY,     /* (key_id, period_start) */
    UD_FOLD_CREDITS, /* (workspace_id) */
    UD_FOLD__COUNT
} ud_fold_kind_t;

/* A power of two, at least twice KG_USAGEDB_BATCH_MAX: few collisions. */
#define UD_FOLD_SLOTS 1024
_Static_assert(UD_FOLD_SLOTS >= 2 * KG_USAGEDB_BATCH_MAX,
               "the fold's hash table has room for a batch");

typedef struct ud_acc {
    const kg_usage_event_t *ev; /* the group's first event: its strings */
    int64_t num;                /* hourly: the hour; key: period_start */
    int64_t requests;
    int64_t errors;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t cost;
    int64_t latency_ms;
    int64_t last_s; /* the latest event time, unix seconds */
} ud_acc_t;

typedef struct ud_fold {
    ud_acc_t acc[KG_USAGEDB_BATCH_MAX]; /* in order of first appearance */
    uint16_t slot[UD_FOLD_SLOTS];       /* index + 1 into acc; 0: empty */
    size_t n;
} ud_fold_t;

struct kg_usagedb {
    kg_store_t *store; /* the writer thread's alone once it runs */
    pthread_t thread;

    /* Everything below is guarded by mu. The ring holds count items from
     * head; the writer works on the first of them without the lock and
     * frees their slots only when their callbacks have run. */
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* the writer waits for events or stop */
    pthread_cond_t done_cv; /* flushers wait for done_seq */
    ud_item_t *ring;
    size_t cap;
    size_t head;
    size_t count;
    bool stopping;
    uint64_t submit_seq; /* events accepted so far */
    uint64_t done_seq;   /* events committed or reported so far */
    kg_err_t last_failure;
    kg_usagedb_stats_t stats;

    /* The batch's folded totals: the writer thread's alone. */
    ud_fold_t fold[UD_FOLD__COUNT];
};

/* True when s has a NUL within its size bytes. */
static bool ud_terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

#define UD_TERMINATED(ev, field) ud_terminated((ev)->field, sizeof((ev)->field))

static bool ud_event_valid(const kg_usage_event_t *ev)
{
    if (!UD_TERMINATED(ev, request_id) || !UD_TERMINATED(ev, key_id) ||
        !UD_TERMINATED(ev, workspace_id) || !UD_TERMINATED(ev, operation) ||
        !UD_TERMINATED(ev, model) || !UD_TERMINATED(ev, provider) ||
        !UD_TERMINATED(ev, mode) || !UD_TERMINATED(ev, client_ip) ||
        !UD_TERMINATED(ev, error_code)) {
        return false;
    }
    if (ev->request_id[0] == '\0' || ev->operation[0] == '\0' ||
        !kg_token_id_valid(ev->key_id)) {
        return false;
    }
    if (strcmp(ev->mode, "api-keys") != 0 && strcmp(ev->mode, "credits") != 0) {
        return false;
    }
    return ev->status >= 0 && ev->status <= 999 && ev->at_ms >= 0 &&
           ev->prompt_tokens >= 0 && ev->completion_tokens >= 0 &&
           ev->cached_tokens >= 0 && ev->cost >= 0 && ev->latency_ms >= 0 &&
           ev->ttft_ms >= -1;
}

/* The usage_events row. KG_OK, a per-event verdict, or a batch failure. */
static kg_err_t ud_insert_event(kg_usagedb_t *w, const kg_usage_event_t *ev,
                                kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_store_stmt(w->store, ud_sql_event, diag);
    int src;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_store_bind_text(st, 1, ev->request_id);
    kg_store_bind_text(st, 2, ev->key_id);
    kg_store_bind_text(st, 3, ev->workspace_id);
    sqlite3_bind_int64(st, 4, ev->at_ms);
    kg_store_bind_text(st, 5, ev->operation);
    kg_store_bind_text(st, 6, ev->model);
    kg_store_bind_text(st, 7, ev->provider);
    kg_store_bind_text(st, 8, ev->mode);
    sqlite3_bind_int(st, 9, ev->status);
    sqlite3_bind_int64(st, 10, ev->prompt_tokens);
    sqlite3_bind_int64(st, 11, ev->completion_tokens);
    sqlite3_bind_int64(st, 12, ev->cached_tokens);
    sqlite3_bind_int64(st, 13, ev->cost);
    sqlite3_bind_int64(st, 14, ev->latency_ms);
    kg_store_bind_opt_int(st, 15, ev->ttft_ms);
    sqlite3_bind_int(st, 16, ev->streamed ? 1 : 0);
    kg_store_bind_text(st, 17, ev->client_ip);
    kg_store_bind_text(st, 18, ev->error_code[0] ? ev->error_code : NULL);
    src = sqlite3_step(st);
    kg_store_reset(st);
    if (src == SQLITE_DONE) {
        return sqlite3_changes(kg_store_db(w->store)) == 0 ? KG_ERR_EXISTS
                                                           : KG_OK;
    }
    /* A failed statement undoes only itself: the batch goes on. */
    if (src == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return KG_ERR_NOT_FOUND;
    }
    if ((src & 0xff) == SQLITE_CONSTRAINT) {
        return KG_ERR_INVAL;
    }
    return kg_store_error(w->store, src, "recording usage", diag);
}

static uint32_t ud_hash_str(uint32_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u; /* FNV-1a */
    }
    return (h ^ 0xffu) * 16777619u;
}

static uint32_t ud_hash_int(uint32_t h, int64_t v)
{
    uint64_t u = (uint64_t)v;

    for (int i = 0; i < 8; i++, u >>= 8) {
        h = (h ^ (uint32_t)(u & 0xff)) * 16777619u;
    }
    return h;
}

/* The group of ev under kind (num: its hour or period), made if new. */
static ud_acc_t *ud_fold_get(ud_fold_t *f, ud_fold_kind_t kind,
                             const kg_usage_event_t *ev, int64_t num)
{
    uint32_t h = 2166136261u;
    size_t i;

    if (kind == UD_FOLD_CREDITS) {
        h = ud_hash_str(h, ev->workspace_id);
    } else {
        h = ud_hash_int(ud_hash_str(h, ev->key_id), num);
        if (kind == UD_FOLD_HOURLY) {
            h = ud_hash_str(h, ev->model);
        }
    }
    /* Linear probing; the table is never more than half full. */
    for (i = h & (UD_FOLD_SLOTS - 1); f->slot[i] != 0;
         i = (i + 1) & (UD_FOLD_SLOTS - 1)) {
        ud_acc_t *a = &f->acc[f->slot[i] - 1];
        bool same;

        if (kind == UD_FOLD_CREDITS) {
            same = strcmp(a->ev->workspace_id, ev->workspace_id) == 0;
        } else {
            same = a->num == num && strcmp(a->ev->key_id, ev->key_id) == 0 &&
                   (kind != UD_FOLD_HOURLY ||
                    strcmp(a->ev->model, ev->model) == 0);
        }
        if (same) {
            return a;
        }
    }
    f->slot[i] = (uint16_t)(f->n + 1);
    memset(&f->acc[f->n], 0, sizeof(f->acc[f->n]));
    f->acc[f->n].ev = ev;
    f->acc[f->n].num = num;
    return &f->acc[f->n++];
}

static void ud_fold_reset(ud_fold_t *f)
{
    if (f->n > 0) {
        memset(f->slot, 0, sizeof(f->slot));
        f->n = 0;
    }
}

/* *acc += v, saturating: the sums of a batch never overflow. */
static void ud_add(int64_t *acc, int64_t v)
{
    if (__builtin_add_overflow(*acc, v, acc)) {
        *acc = v < 0 ? INT64_MIN : INT64_MAX;
    }
}

/* Add an inserted event to the batch's totals. */
static void ud_fold_event(kg_usagedb_t *w, const kg_usage_event_t *ev)
{
    int64_t at = ev->at_ms / 1000;
    ud_acc_t *a = ud_fold_get(&w->fold[UD_FOLD_HOURLY], UD_FOLD_HOURLY, ev,
                              at - at % 3600);

    a->requests++;
    a->errors += ev->status >= 400 ? 1 : 0;
    ud_add(&a->prompt_tokens, ev->prompt_tokens);
    ud_add(&a->completion_tokens, ev->completion_tokens);
    ud_add(&a->cached_tokens, ev->cached_tokens);
    ud_add(&a->cost, ev->cost);
    ud_add(&a->latency_ms, ev->latency_ms);

    a = ud_fold_get(&w->fold[UD_FOLD_KEY], UD_FOLD_KEY, ev, ev->period_start);
    ud_add(&a->cost, ev->cost);
    a->last_s = at > a->last_s ? at : a->last_s;

    if (ev->charge_credits && ev->cost != 0) {
        a = ud_fold_get(&w->fold[UD_FOLD_CREDITS], UD_FOLD_CREDITS, ev, 0);
        ud_add(&a->cost, ev->cost);
    }
}

/* Write the batch's folded totals: hourly rows, keys, workspace credits. */
static kg_err_t ud_fold_write(kg_usagedb_t *w, kg_diag_t *diag)
{
    const ud_fold_t *f = &w->fold[UD_FOLD_HOURLY];
    sqlite3_stmt *st;
    kg_err_t rc = KG_OK;

    for (size_t i = 0; rc == KG_OK && i < f->n; i++) {
        const ud_acc_t *a = &f->acc[i];

        st = kg_store_stmt(w->store, ud_sql_hourly, diag);
        if (st == NULL) {
            return KG_ERR_STORE;
        }
        kg_store_bind_text(st, 1, a->ev->key_id);
        sqlite3_bind_int64(st, 2, a->num);
        kg_store_bind_text(st, 3, a->ev->model);
        sqlite3_bind_int64(st, 4, a->requests);
        sqlite3_bind_int64(st, 5, a->errors);
        sqlite3_bind_int64(st, 6, a->prompt_tokens);
        sqlite3_bind_int64(st, 7, a->completion_tokens);
        sqlite3_bind_int64(st, 8, a->cached_tokens);
        sqlite3_bind_int64(st, 9, a->cost);
        sqlite3_bind_int64(st, 10, a->latency_ms);
        rc = kg_store_exec_stmt(w->store, st, "recording hourly usage", diag);
    }
    f = &w->fold[UD_FOLD_KEY];
    for (size_t i = 0; rc == KG_OK && i < f->n; i++) {
        const ud_acc_t *a = &f->acc[i];

        st = kg_store_stmt(w->store, ud_sql_key, diag);
        if (st == NULL) {
            return KG_ERR_STORE;
        }
        sqlite3_bind_int64(st, 1, a->cost);
        sqlite3_bind_int64(st, 2, a->last_s);
        kg_store_bind_text(st, 3, a->ev->key_id);
        sqlite3_bind_int64(st, 4, a->num);
        rc = kg_store_exec_stmt(w->store, st, "recording key usage", diag);
    }
    f = &w->fold[UD_FOLD_CREDITS];
    for (size_t i = 0; rc == KG_OK && i < f->n; i++) {
        const ud_acc_t *a = &f->acc[i];

        st = kg_store_stmt(w->store, ud_sql_credits, diag);
        if (st == NULL) {
            return KG_ERR_STORE;
        }
        sqlite3_bind_int64(st, 1, a->cost);
        kg_store_bind_text(st, 2, a->ev->workspace_id);
        rc = kg_store_exec_stmt(w->store, st, "charging workspace credits",
                                diag);
    }
    return rc;
}

/*
 * Record n items (items[(head + i) % cap]) inside the open transaction:
 * each item's usage_events row and its verdict, then the folded totals.
 * Returns KG_OK, or the error that fails the whole batch (the caller rolls
 * back).
 */
static kg_err_t ud_apply(kg_usagedb_t *w, ud_item_t *items, size_t cap,
                         size_t head, size_t n, kg_diag_t *diag)
{
    for (int k = 0; k < UD_FOLD__COUNT; k++) {
        ud_fold_reset(&w->fold[k]);
    }
    for (size_t i = 0; i < n; i++) {
        ud_item_t *it = &items[(head + i) % cap];

        it->rc = ud_insert_event(w, &it->ev, diag);
        if (it->rc == KG_OK) {
            ud_fold_event(w, &it->ev);
        } else if (it->rc != KG_ERR_NOT_FOUND && it->rc != KG_ERR_EXISTS &&
                   it->rc != KG_ERR_INVAL) {
            return it->rc;
        }
    }
    return ud_fold_write(w, diag);
}

/* The size of the next batch: what is queued now, up to the maximum. */
static size_t ud_batch_size(kg_usagedb_t *w)
{
    size_t n;

    pthread_mutex_lock(&w->mu);
    n = w->count < KG_USAGEDB_BATCH_MAX ? w->count : KG_USAGEDB_BATCH_MAX;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/*
 * One try at a batch from the ring's head, in one transaction. The batch
 * is sized once the write lock is held, so events that arrived while the
 * writer waited for it join in. Sets *n and each item's verdict; returns
 * KG_OK when committed, or the error that failed the whole batch (rolled
 * back).
 */
static kg_err_t ud_try_batch(kg_usagedb_t *w, size_t *n, kg_diag_t *diag)
{
    kg_err_t rc;

    rc = kg_store_begin(w->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    *n = ud_batch_size(w);
    rc = ud_apply(w, w->ring, w->cap, w->head, *n, diag);
    if (rc != KG_OK) {
        kg_store_rollback(w->store);
        return rc;
    }
    return kg_store_commit(w->store, diag);
}

static void ud_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/*
 * Commit a batch, retrying a busy store; *n gets its size and every item of
 * it its verdict.
 */
static kg_err_t ud_commit_batch(kg_usagedb_t *w, size_t *n, uint64_t *retries)
{
    kg_diag_t diag;
    int backoff = 10;
    kg_err_t rc;

    *retries = 0;
    for (int attempt = 0;; attempt++) {
        rc = ud_try_batch(w, n, &diag);
        if (rc != KG_ERR_STORE_BUSY || attempt == KG_USAGEDB_BUSY_RETRIES) {
            break;
        }
        (*retries)++;
        ud_sleep_ms(backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
    if (rc != KG_OK) {
        *n = ud_batch_size(w);
        for (size_t i = 0; i < *n; i++) {
            w->ring[(w->head + i) % w->cap].rc = rc;
        }
    }
    return rc;
}

static void *ud_main(void *arg)
{
    kg_usagedb_t *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        size_t n = 0;
        uint64_t retries;
        uint64_t ok = 0;
        uint64_t skipped = 0;
        kg_err_t rc;

        while (w->count == 0 && !w->stopping) {
            pthread_cond_wait(&w->work_cv, &w->mu);
        }
        if (w->count == 0) {
            break; /* stopping and drained */
        }
        pthread_mutex_unlock(&w->mu);

        rc = ud_commit_batch(w, &n, &retries);
        for (size_t i = 0; i < n; i++) {
            ud_item_t *it = &w->ring[(w->head + i) % w->cap];

            ok += it->rc == KG_OK;
            skipped += rc == KG_OK && it->rc != KG_OK;
            if (it->done != NULL) {
                it->done(it->ud, it->rc);
            }
        }

        pthread_mutex_lock(&w->mu);
        w->head = (w->head + n) % w->cap;
        w->count -= n;
        w->done_seq += n;
        w->stats.busy_retries += retries;
        if (rc == KG_OK) {
            w->stats.batches++;
            w->stats.committed += ok;
            w->stats.skipped += skipped;
        } else {
            w->stats.failures++;
            w->stats.failed += n;
            w->last_failure = rc;
        }
        pthread_cond_broadcast(&w->done_cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

kg_err_t kg_usagedb_submit(kg_usagedb_t *w, const kg_usage_event_t *ev,
                           kg_usage_done_fn done, void *ud)
{
    ud_item_t *it;
    kg_err_t rc = ud_event_valid(ev) ? KG_OK : KG_ERR_INVAL;

    pthread_mutex_lock(&w->mu);
    if (rc == KG_OK && (w->stopping || w->count == w->cap)) {
        rc = KG_ERR_UNAVAILABLE;
    }
    if (rc != KG_OK) {
        w->stats.rejected++;
        goto out;
    }
    it = &w->ring[(w->head + w->count) % w->cap];
    it->ev = *ev;
    if (it->ev.at_ms == 0) {
        it->ev.at_ms = kg_clock_now_ms();
    }
    it->done = done;
    it->ud = ud;
    it->rc = KG_OK;
    w->count++;
    w->submit_seq++;
    w->stats.submitted++;
    pthread_cond_signal(&w->work_cv);
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

kg_err_t kg_usagedb_flush(kg_usagedb_t *w)
{
    uint64_t target;
    uint64_t failures;
    kg_err_t rc = KG_OK;

    pthread_mutex_lock(&w->mu);
    target = w->submit_seq;
    failures = w->stats.failures;
    while (w->done_seq < target) {
        pthread_cond_wait(&w->done_cv, &w->mu);
    }
    if (w->stats.failures != failures) {
        rc = w->last_failure;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void kg_usagedb_stats(kg_usagedb_t *w, kg_usagedb_stats_t *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    out->queued = w->count;
    pthread_mutex_unlock(&w->mu);
}

/* Destroy what start set up; the thread is not running. */
static void ud_free(kg_usagedb_t **wp)
{
    kg_usagedb_t *w = *wp;

    kg_store_close(&w->store);
    pthread_cond_destroy(&w->done_cv);
    pthread_cond_destroy(&w->work_cv);
    pthread_mutex_destroy(&w->mu);
    free(w->ring);
    free(w);
    *wp = NULL;
}

kg_err_t kg_usagedb_start(const char *store_path, int busy_timeout_ms,
                          size_t queue_max, kg_usagedb_t **out, kg_diag_t *diag)
{
    kg_store_opts_t opts = {.flags = 0, .busy_timeout_ms = busy_timeout_ms};
    kg_usagedb_t *w = NULL;
    kg_err_t rc = KG_OK;

    *out = NULL;
    if (queue_max > KG_USAGEDB_QUEUE_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "usage queue of %zu events is over the maximum "
                            "of %u",
                            queue_max, (unsigned)KG_USAGEDB_QUEUE_MAX);
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return KG_ERR_NOMEM;
    }
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "usage writer: no mutex");
    }
    if (pthread_cond_init(&w->work_cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "usage writer: no condvar");
    }
    if (pthread_cond_init(&w->done_cv, NULL) != 0) {
        pthread_cond_destroy(&w->work_cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "usage writer: no condvar");
    }
    w->cap = queue_max ? queue_max : KG_USAGEDB_DEFAULT_QUEUE;
    w->ring = calloc(w->cap, sizeof(*w->ring));
    if (w->ring == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    rc = kg_store_open(store_path, &opts, &w->store, diag);
    if (rc != KG_OK) {
        goto out;
    }
    if (pthread_create(&w->thread, NULL, ud_main, w) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_INTERNAL,
                          "usage writer: cannot start its thread");
    }
out:
    if (rc != KG_OK) {
        ud_free(&w);
    }
    *out = w;
    return rc;
}

void kg_usagedb_stop(kg_usagedb_t **wp)
{
    kg_usagedb_t *w;

    if (wp == NULL || *wp == NULL) {
        return;
    }
    w = *wp;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    ud_free(wp);
}
