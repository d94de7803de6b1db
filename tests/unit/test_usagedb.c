/* Unit tests of the usage writer: batches, sums, callbacks, locks, journal. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "keygate/clock.h"
#include "keygate/keyhash.h"
#include "keygate/keys.h"
#include "keygate/store.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/token.h"
#include "keygate/usagedb.h"
#include "keygate/workspaces.h"
#include "unit_util.h"

/* 2030-01-01T00:00:00Z in milliseconds. */
#define UT_T0_MS INT64_C(1893456000000)

typedef struct ut_fx {
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *store;
    kg_keyhash_t *hk;
    kg_keys_ctx_t ctx;
} ut_fx_t;

static void ut_fx_open(ut_fx_t *fx)
{
    kg_store_opts_t opts = {.flags = KG_STORE_CREATE, .busy_timeout_ms = 5000};
    unsigned char key[KG_KEYHASH_KEY_LEN];
    kg_diag_t diag = {{0}};

    memset(fx, 0, sizeof(*fx));
    memset(key, 0x33, sizeof(key));
    ut_tmpdir(fx->dir);
    ut_join(fx->path, fx->dir, "keygate.db");
    ck_assert_msg(kg_store_open(fx->path, &opts, &fx->store, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_int_eq(kg_workspace_ensure_default(fx->store, "cli:test", &diag),
                     KG_OK);
    ck_assert_int_eq(kg_keyhash_from_bytes(key, &fx->hk), KG_OK);
    fx->ctx.store = fx->store;
    fx->ctx.hashkey = fx->hk;
    fx->ctx.prefix = "kg";
    fx->ctx.actor = "cli:test";
}

static void ut_fx_close(ut_fx_t *fx)
{
    kg_store_close(&fx->store);
    kg_keyhash_free(&fx->hk);
    ut_tmpdir_remove(fx->dir);
}

/* Create a key and write its id to id. */
static void ut_key(ut_fx_t *fx, char id[KG_TOKEN_ID_LEN + 1])
{
    kg_key_spec_t spec;
    kg_key_t k;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    memset(&spec, 0, sizeof(spec));
    spec.name = "k";
    ck_assert_msg(kg_keys_create(&fx->ctx, &spec, &k, token, &diag) == KG_OK,
                  "%s", diag.msg);
    memcpy(id, k.id, KG_TOKEN_ID_LEN + 1);
    kg_key_clear(&k);
}

static kg_usagedb_t *ut_writer(const ut_fx_t *fx, int busy_ms, size_t qmax)
{
    kg_usagedb_t *w = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_usagedb_start(fx->path, busy_ms, qmax, &w, &diag) == KG_OK,
                  "%s", diag.msg);
    return w;
}

static void ut_event(kg_usage_event_t *ev, const char *key_id, int n,
                     int64_t at_ms)
{
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->request_id, sizeof(ev->request_id), "req-%s-%d", key_id, n);
    snprintf(ev->key_id, sizeof(ev->key_id), "%s", key_id);
    snprintf(ev->workspace_id, sizeof(ev->workspace_id), "ws0000000000");
    ev->at_ms = at_ms;
    snprintf(ev->operation, sizeof(ev->operation), "chat");
    snprintf(ev->model, sizeof(ev->model), "%s", n % 2 ? "gpt-x" : "claude-y");
    snprintf(ev->provider, sizeof(ev->provider), "mock");
    snprintf(ev->mode, sizeof(ev->mode), "api-keys");
    ev->status = n % 5 == 0 ? 500 : 200;
    ev->prompt_tokens = n % 7;
    ev->completion_tokens = n % 11;
    ev->cached_tokens = n % 3;
    ev->cost = 100 + n % 13;
    ev->latency_ms = n % 17;
    ev->ttft_ms = n % 2 ? -1 : 5;
    ev->streamed = n % 2;
    snprintf(ev->client_ip, sizeof(ev->client_ip), "127.0.0.1");
}

/* A raw read-only connection, separate from every keygate handle. */
static sqlite3 *ut_reader(const ut_fx_t *fx)
{
    sqlite3 *db = NULL;

    ck_assert_int_eq(
        sqlite3_open_v2(fx->path, &db,
                        SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, NULL),
        SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* One integer from sql with an optional text parameter; -1 for NULL. */
static int64_t ut_int(sqlite3 *db, const char *sql, const char *param)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        return -2;
    }
    if (param != NULL) {
        sqlite3_bind_text(st, 1, param, -1, SQLITE_TRANSIENT);
    }
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

/* Counts outcomes by error code; thread-safe. */
typedef struct ut_tally {
    atomic_int by_rc[KG_ERR__COUNT];
    atomic_int calls;
} ut_tally_t;

static void ut_tally_done(void *ud, kg_err_t rc)
{
    ut_tally_t *t = ud;

    if ((int)rc >= 0 && rc < KG_ERR__COUNT) {
        atomic_fetch_add(&t->by_rc[rc], 1);
    }
    atomic_fetch_add(&t->calls, 1);
}

#define UT_PRODUCERS 4
#define UT_PER_PROD  2500
#define UT_KEYS      3

typedef struct ut_prod {
    kg_usagedb_t *w;
    ut_tally_t *tally;
    char (*keys)[KG_TOKEN_ID_LEN + 1];
    int n;
    int refused;
} ut_prod_t;

/* The n-th event overall: key i % UT_KEYS, spread over three hours. */
static void ut_nth_event(kg_usage_event_t *ev,
                         char (*keys)[KG_TOKEN_ID_LEN + 1], int i)
{
    ut_event(ev, keys[i % UT_KEYS], i,
             UT_T0_MS + (int64_t)((i / UT_KEYS) % 3) * 3600 * 1000 + i);
}

static void *ut_produce(void *arg)
{
    ut_prod_t *p = arg;
    kg_usage_event_t ev;

    for (int j = 0; j < UT_PER_PROD; j++) {
        int i = p->n * UT_PER_PROD + j;

        ut_nth_event(&ev, p->keys, i);
        while (kg_usagedb_submit(p->w, &ev, ut_tally_done, p->tally) ==
               KG_ERR_UNAVAILABLE) {
            struct timespec ts = {0, 1000000L};

            p->refused++;
            nanosleep(&ts, NULL); /* full: back off, as a test may */
        }
    }
    return NULL;
}

/* Events from several threads land exactly once, with exact sums. */
START_TEST(test_many_threads_exact_sums)
{
    ut_fx_t fx;
    char keys[UT_KEYS][KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    ut_prod_t prods[UT_PRODUCERS];
    pthread_t th[UT_PRODUCERS];
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *db;
    const int total = UT_PRODUCERS * UT_PER_PROD;

    ut_fx_open(&fx);
    for (int k = 0; k < UT_KEYS; k++) {
        ut_key(&fx, keys[k]);
    }
    w = ut_writer(&fx, 5000, 1024);
    for (int i = 0; i < UT_PRODUCERS; i++) {
        prods[i] = (ut_prod_t){.w = w, .tally = tally, .keys = keys, .n = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, ut_produce, &prods[i]),
                         0);
    }
    for (int i = 0; i < UT_PRODUCERS; i++) {
        pthread_join(th[i], NULL);
    }
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->calls), total);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), total);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.committed, (uint64_t)total);
    ck_assert_uint_eq(st.submitted, (uint64_t)total);
    ck_assert_uint_eq(st.failures, 0);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_ge(st.batches, (uint64_t)total / KG_USAGEDB_BATCH_MAX);
    ck_assert_uint_lt(st.batches, (uint64_t)total); /* grouped */
    kg_usagedb_stop(&w);
    ck_assert_ptr_null(w);

    db = ut_reader(&fx);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM usage_events", NULL),
                     total);
    ck_assert_int_eq(ut_int(db,
                            "SELECT count(DISTINCT request_id) FROM "
                            "usage_events",
                            NULL),
                     total);
    for (int k = 0; k < UT_KEYS; k++) {
        int64_t cost = 0, requests = 0, errors = 0, prompt = 0, completion = 0;
        int64_t cached = 0, latency = 0, last = 0;
        kg_usage_event_t ev;

        for (int i = k; i < total; i += UT_KEYS) {
            ut_nth_event(&ev, keys, i);
            cost += ev.cost;
            requests++;
            errors += ev.status >= 400;
            prompt += ev.prompt_tokens;
            completion += ev.completion_tokens;
            cached += ev.cached_tokens;
            latency += ev.latency_ms;
            last = ev.at_ms / 1000 > last ? ev.at_ms / 1000 : last;
        }
        ck_assert_int_eq(
            ut_int(db, "SELECT usage FROM api_keys WHERE id = ?", keys[k]),
            cost);
        ck_assert_int_eq(ut_int(db,
                                "SELECT last_used_at FROM api_keys WHERE "
                                "id = ?",
                                keys[k]),
                         last);
        ck_assert_int_eq(ut_int(db,
                                "SELECT sum(cost) FROM usage_rollup WHERE "
                                "key_id = ?",
                                keys[k]),
                         cost);
        ck_assert_int_eq(ut_int(db,
                                "SELECT sum(requests) FROM usage_rollup "
                                "WHERE key_id = ?",
                                keys[k]),
                         requests);
        ck_assert_int_eq(ut_int(db,
                                "SELECT sum(errors) FROM usage_rollup "
                                "WHERE key_id = ?",
                                keys[k]),
                         errors);
        ck_assert_int_eq(ut_int(db,
                                "SELECT sum(prompt_tokens) FROM "
                                "usage_rollup WHERE key_id = ?",
                                keys[k]),
                         prompt);
        ck_assert_int_eq(ut_int(db,
                                "SELECT sum(completion_tokens) FROM "
                                "usage_rollup WHERE key_id = ?",
                                keys[k]),
                         completion);
        ck_assert_int_eq(ut_int(db,
                                "SELECT sum(cached_tokens) FROM "
                                "usage_rollup WHERE key_id = ?",
                                keys[k]),
                         cached);
        ck_assert_int_eq(ut_int(db,
                                "SELECT sum(latency_ms_sum) FROM "
                                "usage_rollup WHERE key_id = ?",
                                keys[k]),
                         latency);
        /* Three hours × two models, each hour on the top of the hour. */
        ck_assert_int_eq(ut_int(db,
                                "SELECT count(*) FROM usage_rollup WHERE "
                                "key_id = ? AND hour % 3600 = 0",
                                keys[k]),
                         6);
    }
    /* The hourly rows agree with the events they sum. */
    ck_assert_int_eq(ut_int(db,
                            "SELECT count(*) FROM (SELECT key_id, "
                            "at_ms / 3600000 * 3600 AS hour, model, "
                            "count(*) AS n, sum(cost) AS c FROM usage_events "
                            "GROUP BY 1, 2, 3) e JOIN usage_rollup h "
                            "USING (key_id, hour, model) "
                            "WHERE h.requests != e.n OR h.cost != e.c",
                            NULL),
                     0);
    ck_assert_int_eq(ut_int(db,
                            "SELECT count(*) FROM usage_events WHERE "
                            "ttft_ms IS NULL",
                            NULL),
                     total / 2);
    sqlite3_close(db);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* The callback runs after commit: another connection already sees it. */
typedef struct ut_seen {
    sqlite3 *db;
    atomic_int calls;
    atomic_int unseen;
    atomic_int bad_rc;
} ut_seen_t;

typedef struct ut_seen_ud {
    ut_seen_t *seen;
    char request_id[40];
} ut_seen_ud_t;

static void ut_seen_done(void *ud, kg_err_t rc)
{
    ut_seen_ud_t *u = ud;

    if (rc != KG_OK) {
        atomic_fetch_add(&u->seen->bad_rc, 1);
    }
    if (ut_int(u->seen->db,
               "SELECT count(*) FROM usage_events WHERE request_id = ?",
               u->request_id) != 1) {
        atomic_fetch_add(&u->seen->unseen, 1);
    }
    atomic_fetch_add(&u->seen->calls, 1);
}

START_TEST(test_callback_after_commit)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_seen_t seen;
    ut_seen_ud_t uds[300];
    kg_usage_event_t ev;
    kg_usagedb_t *w;

    ut_fx_open(&fx);
    ut_key(&fx, key);
    memset(&seen, 0, sizeof(seen));
    seen.db = ut_reader(&fx);
    w = ut_writer(&fx, 5000, 0);
    for (int i = 0; i < 300; i++) {
        ut_event(&ev, key, i, UT_T0_MS + i);
        uds[i].seen = &seen;
        memcpy(uds[i].request_id, ev.request_id, sizeof(ev.request_id));
        ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_seen_done, &uds[i]),
                         KG_OK);
    }
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&seen.calls), 300);
    ck_assert_int_eq(atomic_load(&seen.unseen), 0);
    ck_assert_int_eq(atomic_load(&seen.bad_rc), 0);
    kg_usagedb_stop(&w);
    sqlite3_close(seen.db);
    ut_fx_close(&fx);
}
END_TEST

/* Stop commits everything queued and calls every callback. */
START_TEST(test_stop_drains)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    sqlite3 *db;

    ut_fx_open(&fx);
    ut_key(&fx, key);
    w = ut_writer(&fx, 5000, 4096);
    for (int i = 0; i < 3000; i++) {
        ut_event(&ev, key, i, UT_T0_MS + i);
        ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally),
                         KG_OK);
    }
    kg_usagedb_stop(&w);
    kg_usagedb_stop(&w); /* NULL: nothing */
    ck_assert_int_eq(atomic_load(&tally->calls), 3000);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 3000);
    db = ut_reader(&fx);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM usage_events", NULL),
                     3000);
    sqlite3_close(db);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* Hold the store's write lock from another connection. */
static sqlite3 *ut_lock_store(const ut_fx_t *fx)
{
    sqlite3 *db = NULL;

    ck_assert_int_eq(
        sqlite3_open_v2(fx->path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static void ut_unlock_store(sqlite3 *db)
{
    ck_assert_int_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void ut_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* An event for a key deleted meanwhile is reported; its batch commits. */
START_TEST(test_deleted_key_skipped)
{
    ut_fx_t fx;
    char live[KG_TOKEN_ID_LEN + 1];
    char gone[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *t_live = calloc(1, sizeof(*t_live));
    ut_tally_t *t_gone = calloc(1, sizeof(*t_gone));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    kg_diag_t diag = {{0}};
    sqlite3 *lock;
    sqlite3 *db;

    ut_fx_open(&fx);
    ut_key(&fx, live);
    ut_key(&fx, gone);
    ck_assert_int_eq(kg_keys_delete(&fx.ctx, gone, &diag), KG_OK);
    w = ut_writer(&fx, 5000, 0);
    /* Queue all while the store is locked, so they form one batch. */
    lock = ut_lock_store(&fx);
    for (int i = 0; i < 6; i++) {
        bool is_gone = i % 3 == 1;

        ut_event(&ev, is_gone ? gone : live, i, UT_T0_MS + i);
        ck_assert_int_eq(
            kg_usagedb_submit(w, &ev, ut_tally_done, is_gone ? t_gone : t_live),
            KG_OK);
    }
    ut_sleep_ms(50);
    ut_unlock_store(lock);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&t_live->by_rc[KG_OK]), 4);
    ck_assert_int_eq(atomic_load(&t_gone->by_rc[KG_ERR_NOT_FOUND]), 2);
    ck_assert_int_eq(atomic_load(&t_gone->calls), 2);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.committed, 4);
    ck_assert_uint_eq(st.skipped, 2);
    ck_assert_uint_eq(st.batches, 1);
    kg_usagedb_stop(&w);
    db = ut_reader(&fx);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM usage_events", NULL), 4);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM usage_rollup", NULL), 2);
    sqlite3_close(db);
    free(t_live);
    free(t_gone);
    ut_fx_close(&fx);
}
END_TEST

/* A repeated request_id is stored and counted once, and reported. */
START_TEST(test_duplicate_request_id)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    sqlite3 *db;

    ut_fx_open(&fx);
    ut_key(&fx, key);
    w = ut_writer(&fx, 5000, 0);
    ut_event(&ev, key, 1, UT_T0_MS);
    ev.cost = 700;
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally), KG_OK);
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally), KG_OK);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally), KG_OK);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 1);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_ERR_EXISTS]), 2);
    kg_usagedb_stop(&w);
    db = ut_reader(&fx);
    ck_assert_int_eq(ut_int(db, "SELECT usage FROM api_keys WHERE id = ?", key),
                     700);
    ck_assert_int_eq(ut_int(db, "SELECT sum(requests) FROM usage_rollup", NULL),
                     1);
    sqlite3_close(db);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* Another process holding the write lock: the writer waits, commits once
 * it is released, and calls back only then. */
START_TEST(test_waits_for_write_lock)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;
    sqlite3 *db;

    ut_fx_open(&fx);
    ut_key(&fx, key);
    /* A short busy timeout: the wait spans several bounded retries. */
    w = ut_writer(&fx, 50, 0);
    lock = ut_lock_store(&fx);
    for (int i = 0; i < 10; i++) {
        ut_event(&ev, key, i, UT_T0_MS + i);
        ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally),
                         KG_OK);
    }
    ut_sleep_ms(300);
    ck_assert_int_eq(atomic_load(&tally->calls), 0);
    ck_assert_int_eq(ut_int(lock, "SELECT count(*) FROM usage_events", NULL),
                     0);
    ut_unlock_store(lock);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 10);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_gt(st.busy_retries, 0);
    ck_assert_uint_eq(st.failures, 0);
    kg_usagedb_stop(&w);
    db = ut_reader(&fx);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM usage_events", NULL), 10);
    sqlite3_close(db);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* A lock held past every retry fails the batch loudly; later events go
 * through once it is released, and the failed one, kept in the journal,
 * is stored with them. */
START_TEST(test_busy_past_retries_fails_batch)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;
    sqlite3 *db;

    ut_fx_open(&fx);
    ut_key(&fx, key);
    w = ut_writer(&fx, 10, 0);
    lock = ut_lock_store(&fx);
    ut_event(&ev, key, 1, UT_T0_MS);
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally), KG_OK);
    /* 7 tries × 10 ms + 10+20+...+320 ms of backoff < 1 s. */
    ck_assert_int_eq(kg_usagedb_flush(w), KG_ERR_STORE_BUSY);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_ERR_STORE_BUSY]), 1);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.failures, 1);
    ck_assert_uint_eq(st.failed, 1);
    ck_assert_uint_eq(st.busy_retries, KG_USAGEDB_BUSY_RETRIES);
    ut_unlock_store(lock);
    ut_event(&ev, key, 2, UT_T0_MS);
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally), KG_OK);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 1);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.replayed, 1);
    kg_usagedb_stop(&w);
    db = ut_reader(&fx);
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM usage_events", NULL), 2);
    ck_assert_int_eq(ut_int(db, "SELECT sum(requests) FROM usage_rollup", NULL),
                     2);
    sqlite3_close(db);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* Submit checks its input and its bound, without blocking. */
START_TEST(test_submit_refuses)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    kg_usage_event_t ev;
    kg_usage_event_t bad;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    kg_diag_t diag = {{0}};
    sqlite3 *lock;
    sqlite3 *db;
    int64_t at;

    ut_fx_open(&fx);
    ut_key(&fx, key);
    ck_assert_int_eq(
        kg_usagedb_start(fx.path, 100, KG_USAGEDB_QUEUE_MAX + 1, &w, &diag),
        KG_ERR_INVAL);
    ck_assert_ptr_null(w);
    w = ut_writer(&fx, 5000, 2);
    ut_event(&ev, key, 1, 0); /* at_ms 0: the time of submit */

    bad = ev;
    snprintf(bad.mode, sizeof(bad.mode), "hybrid");
    ck_assert_int_eq(kg_usagedb_submit(w, &bad, NULL, NULL), KG_ERR_INVAL);
    bad = ev;
    memset(bad.model, 'm', sizeof(bad.model)); /* no NUL */
    ck_assert_int_eq(kg_usagedb_submit(w, &bad, NULL, NULL), KG_ERR_INVAL);
    bad = ev;
    snprintf(bad.key_id, sizeof(bad.key_id), "short");
    ck_assert_int_eq(kg_usagedb_submit(w, &bad, NULL, NULL), KG_ERR_INVAL);
    bad = ev;
    bad.request_id[0] = '\0';
    ck_assert_int_eq(kg_usagedb_submit(w, &bad, NULL, NULL), KG_ERR_INVAL);
    bad = ev;
    bad.cost = -1;
    ck_assert_int_eq(kg_usagedb_submit(w, &bad, NULL, NULL), KG_ERR_INVAL);

    /* A full queue answers at once. */
    lock = ut_lock_store(&fx);
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, NULL, NULL), KG_OK);
    snprintf(ev.request_id, sizeof(ev.request_id), "second");
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, NULL, NULL), KG_OK);
    snprintf(ev.request_id, sizeof(ev.request_id), "third");
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, NULL, NULL), KG_ERR_UNAVAILABLE);
    ut_unlock_store(lock);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.rejected, 6);
    ck_assert_uint_eq(st.committed, 2);
    kg_usagedb_stop(&w);
    db = ut_reader(&fx);
    at = ut_int(db, "SELECT min(at_ms) FROM usage_events", NULL);
    ck_assert_int_lt(llabs(at - kg_clock_now_ms()), 60000);
    sqlite3_close(db);
    ut_fx_close(&fx);
}
END_TEST

/* Run sql on the fixture's store, with one text parameter. */
static void ut_exec(ut_fx_t *fx, const char *sql, const char *param)
{
    sqlite3_stmt *st = NULL;

    ck_assert_int_eq(
        sqlite3_prepare_v2(kg_sqlite_db(fx->store), sql, -1, &st, NULL),
        SQLITE_OK);
    if (param != NULL) {
        sqlite3_bind_text(st, 1, param, -1, SQLITE_TRANSIENT);
    }
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* The text of one row of sql with a text parameter, into out. */
static void ut_text(sqlite3 *db, const char *sql, const char *param, char *out,
                    size_t size)
{
    sqlite3_stmt *st = NULL;

    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, param, -1, SQLITE_TRANSIENT);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, size, "%s",
             sqlite3_column_type(st, 0) == SQLITE_NULL
                 ? "(null)"
                 : (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

#define UT_FOLD_EVENTS 60
#define UT_DAY         INT64_C(86400)

/* The i-th event of the fold test for key_id and workspace ws: periods
 * newer, equal to and older than the stored one, none, credits or not,
 * several hours and models, one repeated request id. */
static void ut_fold_event(kg_usage_event_t *ev, const char *tag,
                          const char *key_id, const char *ws, int i)
{
    static const int64_t periods[] = {0, 0, -UT_DAY, UT_DAY, -2 * UT_DAY};
    int64_t t0 = UT_T0_MS / 1000;

    ut_event(ev, key_id, i, UT_T0_MS + (int64_t)(i % 4) * 1800 * 1000 + i);
    snprintf(ev->request_id, sizeof(ev->request_id), "%s-%d", tag,
             i == 7 ? 3 : i);
    snprintf(ev->workspace_id, sizeof(ev->workspace_id), "%s", ws);
    snprintf(ev->model, sizeof(ev->model), "m%d", i % 3);
    ev->period_start = i % 5 == 0 ? -1 : t0 + periods[i % 5];
    ev->charge_credits = i % 4 == 1;
    if (ev->charge_credits) {
        snprintf(ev->mode, sizeof(ev->mode), "credits");
    }
}

/*
 * One batch folds its totals per key, hour, model, period and workspace;
 * the rows must be exactly those of the same events recorded one by one.
 */
START_TEST(test_folded_batch_matches_one_by_one)
{
    static const char *const key_sql[] = {
        "SELECT usage FROM api_keys WHERE id = ?",
        "SELECT period_usage FROM api_keys WHERE id = ?",
        "SELECT period_started_at FROM api_keys WHERE id = ?",
        "SELECT last_used_at FROM api_keys WHERE id = ?",
        "SELECT group_concat(r, ';') FROM (SELECT hour || ',' || model || "
        "',' || requests || ',' || errors || ',' || prompt_tokens || ',' || "
        "completion_tokens || ',' || cached_tokens || ',' || cost || ',' || "
        "latency_ms_sum AS r FROM usage_rollup WHERE key_id = ? "
        "ORDER BY hour, model)",
        "SELECT count(*) FROM usage_events WHERE key_id = ?",
    };
    static const char *const ws_ids[] = {"wsFoldAAAAAA", "wsFoldBBBBBB"};
    ut_fx_t fx;
    char keys[2][KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;
    sqlite3 *db;

    ut_fx_open(&fx);
    for (int k = 0; k < 2; k++) {
        ut_key(&fx, keys[k]);
        ut_exec(&fx,
                "UPDATE api_keys SET period = 'day', period_usage = 50, "
                "period_started_at = 1893456000 WHERE id = ?",
                keys[k]);
        ut_exec(&fx,
                "INSERT INTO workspaces (id, name, mode, credits_balance, "
                "created_at, updated_at) VALUES (?1, ?1, 'credits', "
                "1000000, 0, 0)",
                ws_ids[k]);
    }
    w = ut_writer(&fx, 5000, 0);
    /* Key 0: all in one batch. */
    lock = ut_lock_store(&fx);
    for (int i = 0; i < UT_FOLD_EVENTS; i++) {
        ut_fold_event(&ev, "a", keys[0], ws_ids[0], i);
        ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally),
                         KG_OK);
    }
    ut_sleep_ms(50);
    ut_unlock_store(lock);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.batches, 1);
    /* Key 1: one batch per event. */
    for (int i = 0; i < UT_FOLD_EVENTS; i++) {
        ut_fold_event(&ev, "b", keys[1], ws_ids[1], i);
        ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally),
                         KG_OK);
        ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    }
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]),
                     2 * (UT_FOLD_EVENTS - 1));
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_ERR_EXISTS]), 2);
    kg_usagedb_stop(&w);

    db = ut_reader(&fx);
    for (size_t q = 0; q < UT_NROWS(key_sql); q++) {
        char a[4096];
        char b[4096];

        ut_text(db, key_sql[q], keys[0], a, sizeof(a));
        ut_text(db, key_sql[q], keys[1], b, sizeof(b));
        ck_assert_msg(strcmp(a, b) == 0, "%s: folded %s, one by one %s",
                      key_sql[q], a, b);
    }
    ck_assert_int_eq(ut_int(db,
                            "SELECT credits_balance FROM workspaces WHERE "
                            "id = ?",
                            ws_ids[0]),
                     ut_int(db,
                            "SELECT credits_balance FROM workspaces WHERE "
                            "id = ?",
                            ws_ids[1]));
    ck_assert_int_lt(ut_int(db,
                            "SELECT credits_balance FROM workspaces WHERE "
                            "id = ?",
                            ws_ids[0]),
                     1000000);
    /* The newest period won: it restarted period_usage. */
    ck_assert_int_eq(ut_int(db,
                            "SELECT period_started_at FROM api_keys WHERE "
                            "id = ?",
                            keys[0]),
                     UT_T0_MS / 1000 + UT_DAY);
    sqlite3_close(db);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* ---- the usage journal ------------------------------------------------ */

#define UT_WS_CREDITS "wsJournalAAA"
#define UT_CREDITS0   INT64_C(1000000000)

/* A key with a daily period started at UT_T0 and a credits workspace. */
static void ut_journal_fx(ut_fx_t *fx, char key[KG_TOKEN_ID_LEN + 1])
{
    ut_fx_open(fx);
    ut_key(fx, key);
    ut_exec(fx,
            "UPDATE api_keys SET period = 'day', period_usage = 0, "
            "period_started_at = 1893456000 WHERE id = ?",
            key);
    ut_exec(fx,
            "INSERT INTO workspaces (id, name, mode, credits_balance, "
            "created_at, updated_at) VALUES (?1, ?1, 'credits', 1000000000, "
            "0, 0)",
            UT_WS_CREDITS);
}

/* The i-th journal test event: half of them charge credits. */
static void ut_jevent(kg_usage_event_t *ev, const char *key, int i)
{
    ut_event(ev, key, i, UT_T0_MS + (int64_t)(i % 5) * 1000 * 1000 + i);
    snprintf(ev->workspace_id, sizeof(ev->workspace_id), UT_WS_CREDITS);
    ev->period_start = UT_T0_MS / 1000;
    ev->charge_credits = i % 2 == 1;
    if (ev->charge_credits) {
        snprintf(ev->mode, sizeof(ev->mode), "credits");
    }
}

/* Every event 0..n-1 is stored exactly once and every total is exact. */
static void ut_assert_jevents(ut_fx_t *fx, const char *key, int n)
{
    int64_t cost = 0, charged = 0, errors = 0, prompt = 0, latency = 0;
    sqlite3 *db = ut_reader(fx);
    kg_usage_event_t ev;

    for (int i = 0; i < n; i++) {
        ut_jevent(&ev, key, i);
        cost += ev.cost;
        charged += ev.charge_credits ? ev.cost : 0;
        errors += ev.status >= 400;
        prompt += ev.prompt_tokens;
        latency += ev.latency_ms;
        ck_assert_int_eq(ut_int(db,
                                "SELECT count(*) FROM usage_events WHERE "
                                "request_id = ?",
                                ev.request_id),
                         1);
    }
    ck_assert_int_eq(ut_int(db, "SELECT count(*) FROM usage_events", NULL), n);
    ck_assert_int_eq(ut_int(db, "SELECT sum(requests) FROM usage_rollup", NULL),
                     n);
    ck_assert_int_eq(ut_int(db, "SELECT sum(errors) FROM usage_rollup", NULL),
                     errors);
    ck_assert_int_eq(ut_int(db, "SELECT sum(cost) FROM usage_rollup", NULL),
                     cost);
    ck_assert_int_eq(
        ut_int(db, "SELECT sum(prompt_tokens) FROM usage_rollup", NULL),
        prompt);
    ck_assert_int_eq(
        ut_int(db, "SELECT sum(latency_ms_sum) FROM usage_rollup", NULL),
        latency);
    ck_assert_int_eq(ut_int(db, "SELECT usage FROM api_keys WHERE id = ?", key),
                     cost);
    ck_assert_int_eq(
        ut_int(db, "SELECT period_usage FROM api_keys WHERE id = ?", key),
        cost);
    ck_assert_int_eq(ut_int(db,
                            "SELECT credits_balance FROM workspaces WHERE "
                            "id = ?",
                            UT_WS_CREDITS),
                     UT_CREDITS0 - charged);
    sqlite3_close(db);
}

/* "<store>-usage-a" or "-b". */
static const char *ut_jpath(const ut_fx_t *fx, char seg, char *out)
{
    int n = snprintf(out, UT_PATH_MAX, "%s-usage-%c", fx->path, seg);

    ck_assert(n > 0 && n < UT_PATH_MAX);
    return out;
}

static int64_t ut_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static bool ut_read_all(int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);

        if (n <= 0) {
            return false;
        }
        got += (size_t)n;
    }
    return true;
}

/*
 * A daemon killed before its commits: a child starts a writer, submits
 * events 0..committed-1 and flushes them, then, once the parent holds the
 * store's write lock (so nothing more can commit), submits events
 * committed..committed+pending-1 and is killed with SIGKILL. Returns the
 * parent's lock connection, still holding the lock, and checks that every
 * pending event was durable and none committed.
 */
static sqlite3 *ut_crash(ut_fx_t *fx, const char *key, int committed,
                         int pending)
{
    int to_child[2];
    int to_parent[2];
    char c = 0;
    int status = 0;
    sqlite3 *lock;
    pid_t pid;

    ck_assert_int_eq(pipe(to_child), 0);
    ck_assert_int_eq(pipe(to_parent), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        kg_usagedb_t *w = NULL;
        kg_usage_event_t ev;
        char verdict = 'D';

        /* The child: no Check assertion, only an exit status. */
        close(to_child[1]);
        close(to_parent[0]);
        if (kg_usagedb_start(fx->path, 50, 0, &w, NULL) != KG_OK) {
            _exit(2);
        }
        for (int i = 0; i < committed; i++) {
            ut_jevent(&ev, key, i);
            if (kg_usagedb_submit(w, &ev, NULL, NULL) != KG_OK) {
                _exit(3);
            }
        }
        if (kg_usagedb_flush(w) != KG_OK || write(to_parent[1], "S", 1) != 1 ||
            read(to_child[0], &c, 1) != 1) {
            _exit(4);
        }
        for (int i = committed; i < committed + pending; i++) {
            bool durable = false;

            ut_jevent(&ev, key, i);
            if (kg_usagedb_submit_ex(w, &ev, NULL, NULL, &durable) != KG_OK ||
                !durable) {
                verdict = 'N';
            }
        }
        if (write(to_parent[1], &verdict, 1) != 1) {
            _exit(5);
        }
        ut_sleep_ms(30000); /* killed long before */
        _exit(6);
    }
    close(to_child[0]);
    close(to_parent[1]);
    ck_assert_msg(ut_read_all(to_parent[0], &c, 1) && c == 'S',
                  "the child did not start its writer");
    lock = ut_lock_store(fx);
    ck_assert_int_eq(write(to_child[1], "L", 1), 1);
    ck_assert_msg(ut_read_all(to_parent[0], &c, 1), "the child died");
    ck_assert_msg(c == 'D', "an event was not durable at submit");
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    close(to_child[1]);
    close(to_parent[0]);
    ck_assert_int_eq(ut_int(lock, "SELECT count(*) FROM usage_events", NULL),
                     committed);
    return lock;
}

/* A normal submit is durable at once: its record is in the journal before
 * its commit. */
START_TEST(test_journal_durable_submit)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    char path[UT_PATH_MAX];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;
    bool durable = false;

    ut_journal_fx(&fx, key);
    w = ut_writer(&fx, 5000, 0);
    ck_assert_int_eq(ut_size(ut_jpath(&fx, 'a', path)), 0);
    lock = ut_lock_store(&fx);
    ut_jevent(&ev, key, 0);
    ck_assert_int_eq(
        kg_usagedb_submit_ex(w, &ev, ut_tally_done, tally, &durable), KG_OK);
    ck_assert(durable);
    ck_assert_int_gt(ut_size(path), 0);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.journaled, 1);
    ck_assert_uint_eq(st.unjournaled, 0);
    ck_assert_uint_eq(st.journal_bytes, (uint64_t)ut_size(path));
    ck_assert_int_eq(atomic_load(&tally->calls), 0); /* not committed yet */

    /* A refused event is not durable, and not journaled. */
    durable = true;
    ev.cost = -1;
    ck_assert_int_eq(kg_usagedb_submit_ex(w, &ev, NULL, NULL, &durable),
                     KG_ERR_INVAL);
    ck_assert(!durable);
    ck_assert_uint_eq((uint64_t)ut_size(path), st.journal_bytes);

    ut_unlock_store(lock);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 1);
    kg_usagedb_stop(&w);
    ck_assert_int_eq(ut_size(path), 0); /* a clean stop empties it */
    ut_assert_jevents(&fx, key, 1);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

#define UT_CRASH_EVENTS 200

/* kill -9 before any commit: every durable event is in the store after
 * the next start, exactly once, with exact totals. */
START_TEST(test_journal_crash_before_commit)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    char path[UT_PATH_MAX];
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;

    ut_journal_fx(&fx, key);
    lock = ut_crash(&fx, key, 0, UT_CRASH_EVENTS);
    ck_assert_int_gt(ut_size(ut_jpath(&fx, 'a', path)), 0);
    ut_unlock_store(lock);
    w = ut_writer(&fx, 5000, 0);
    ck_assert_int_eq(ut_size(path), 0); /* replayed, then emptied */
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.replayed, UT_CRASH_EVENTS);
    ck_assert_uint_eq(st.journal_bytes, 0);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, UT_CRASH_EVENTS);
    /* Another start has nothing to replay. */
    w = ut_writer(&fx, 5000, 0);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.replayed, 0);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, UT_CRASH_EVENTS);
    ut_fx_close(&fx);
}
END_TEST

/* A journal whose first events had committed before the crash: replaying
 * them adds nothing (no second row, no second charge to the key's usage,
 * its period, its hourly rows or the workspace's credits). */
START_TEST(test_journal_replay_committed_not_double_counted)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;

    ut_journal_fx(&fx, key);
    lock = ut_crash(&fx, key, 150, 50);
    ut_unlock_store(lock);
    ut_assert_jevents(&fx, key, 150); /* what had committed */
    w = ut_writer(&fx, 5000, 0);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.replayed, 50);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, 200);

    /* Only committed events in the journal: a crash right after a flush. */
    lock = ut_crash(&fx, key, 200, 0);
    ut_unlock_store(lock);
    w = ut_writer(&fx, 5000, 0);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.replayed, 0);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, 200);
    ut_fx_close(&fx);
}
END_TEST

/* A torn or damaged last record is ignored; the others are applied. */
START_TEST(test_journal_torn_tail_ignored)
{
    for (int variant = 0; variant < 3; variant++) {
        ut_fx_t fx;
        char key[KG_TOKEN_ID_LEN + 1];
        char path[UT_PATH_MAX];
        kg_usagedb_t *w;
        kg_usagedb_stats_t st;
        sqlite3 *lock;
        int64_t size;
        int fd;

        ut_journal_fx(&fx, key);
        lock = ut_crash(&fx, key, 0, 20);
        ut_unlock_store(lock);
        size = ut_size(ut_jpath(&fx, 'a', path));
        ck_assert_int_gt(size, 100);
        if (variant == 0) {
            /* A write cut short: the last record misses its end. */
            ck_assert_int_eq(truncate(path, size - 5), 0);
        } else if (variant == 1) {
            /* A damaged byte in the last record: its checksum fails. */
            unsigned char b;

            fd = open(path, O_RDWR);
            ck_assert_int_ge(fd, 0);
            ck_assert_int_eq(pread(fd, &b, 1, size - 3), 1);
            b ^= 0x5a;
            ck_assert_int_eq(pwrite(fd, &b, 1, size - 3), 1);
            close(fd);
        } else {
            /* A record's header alone, then zeros. */
            static const unsigned char junk[16] = {'K', 'G', 'U', 'J', 40};

            fd = open(path, O_WRONLY | O_APPEND);
            ck_assert_int_ge(fd, 0);
            ck_assert_int_eq(write(fd, junk, sizeof(junk)), sizeof(junk));
            close(fd);
        }
        w = ut_writer(&fx, 5000, 0);
        kg_usagedb_stats(w, &st);
        ck_assert_uint_eq(st.replayed, variant == 2 ? 20 : 19);
        ck_assert_int_eq(ut_size(path), 0);
        kg_usagedb_stop(&w);
        ut_assert_jevents(&fx, key, variant == 2 ? 20 : 19);
        ut_fx_close(&fx);
    }
}
END_TEST

/* The journal's files are created with mode 0600, and made 0600. */
START_TEST(test_journal_mode_0600)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    char a[UT_PATH_MAX];
    char b[UT_PATH_MAX];
    kg_usagedb_t *w;
    mode_t old = umask(0);

    ut_journal_fx(&fx, key);
    ut_write_file(ut_jpath(&fx, 'b', b), "", 0, 0644);
    ck_assert_int_eq(ut_file_mode(b), 0644);
    w = ut_writer(&fx, 5000, 0);
    umask(old);
    ck_assert_int_eq(ut_file_mode(ut_jpath(&fx, 'a', a)), 0600);
    ck_assert_int_eq(ut_file_mode(b), 0600);
    kg_usagedb_stop(&w);
    ck_assert_int_eq(ut_file_mode(a), 0600);
    ut_fx_close(&fx);
}
END_TEST

#define UT_ROUND 500

/* Submit UT_ROUND durable events from *next on and flush them. */
static void ut_round(kg_usagedb_t *w, const char *key, int *next)
{
    kg_usage_event_t ev;

    for (int i = 0; i < UT_ROUND; i++, (*next)++) {
        bool durable = false;

        ut_jevent(&ev, key, *next);
        ck_assert_int_eq(kg_usagedb_submit_ex(w, &ev, NULL, NULL, &durable),
                         KG_OK);
        ck_assert(durable);
    }
}

/* The journal's space comes back once its events have committed: it
 * switches segments and empties the older one, and stays bounded. */
START_TEST(test_journal_space_reclaimed)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    char a[UT_PATH_MAX];
    char b[UT_PATH_MAX];
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    int next = 0;
    int64_t peak_a = 0;
    bool reclaimed = false;

    ut_journal_fx(&fx, key);
    ut_jpath(&fx, 'a', a);
    ut_jpath(&fx, 'b', b);
    w = ut_writer(&fx, 5000, 4096);
    for (int round = 0; round < 40 && !reclaimed; round++) {
        int64_t sa;
        int64_t sb;

        ut_round(w, key, &next);
        ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
        sa = ut_size(a);
        sb = ut_size(b);
        kg_usagedb_stats(w, &st);
        ck_assert_uint_eq(st.journal_bytes, (uint64_t)(sa + sb));
        /* Bounded: a segment switches once past the threshold. */
        ck_assert_int_lt(sa + sb, 2 * (int64_t)KG_USAGEDB_JOURNAL_SWITCH +
                                      UT_ROUND * 1100);
        peak_a = sa > peak_a ? sa : peak_a;
        /* Switched to b, a emptied (within one round: the first submit
         * that finds a past the threshold seals it). */
        reclaimed = peak_a >= (int64_t)KG_USAGEDB_JOURNAL_SWITCH / 2 &&
                    sa == 0 && sb > 0;
    }
    ck_assert_msg(reclaimed, "segment a was never emptied (peak %lld)",
                  (long long)peak_a);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.journaled, (uint64_t)next);
    ck_assert_uint_eq(st.committed, (uint64_t)next);
    ck_assert_uint_eq(st.replayed, 0);
    kg_usagedb_stop(&w);
    ck_assert_int_eq(ut_size(a), 0);
    ck_assert_int_eq(ut_size(b), 0);
    ut_assert_jevents(&fx, key, next);
    ut_fx_close(&fx);
}
END_TEST

/* An event whose batch failed stays in the journal; its segment is sealed
 * at the next submit and, once the events before are settled, the writer
 * applies it while running. */
START_TEST(test_journal_failed_batch_applied_later)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;
    sqlite3 *db;
    bool durable = false;
    int next = 1;

    ut_journal_fx(&fx, key);
    w = ut_writer(&fx, 10, 4096);
    lock = ut_lock_store(&fx);
    ut_jevent(&ev, key, 0);
    ck_assert_int_eq(
        kg_usagedb_submit_ex(w, &ev, ut_tally_done, tally, &durable), KG_OK);
    ck_assert(durable);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_ERR_STORE_BUSY);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_ERR_STORE_BUSY]), 1);
    ut_unlock_store(lock);
    db = ut_reader(&fx);
    for (int round = 0; round < 40; round++) {
        ut_round(w, key, &next);
        ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
        kg_usagedb_stats(w, &st);
        if (st.replayed > 0) {
            break;
        }
    }
    ck_assert_uint_eq(st.replayed, 1);
    ut_jevent(&ev, key, 0);
    ck_assert_int_eq(ut_int(db,
                            "SELECT count(*) FROM usage_events WHERE "
                            "request_id = ?",
                            ev.request_id),
                     1);
    sqlite3_close(db);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, next);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* The descriptor this process has open on path, or -1. */
static int ut_fd_of(const char *path)
{
    char link[64];
    char target[UT_PATH_MAX];

    for (int fd = 3; fd < 1024; fd++) {
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            if (strcmp(target, path) == 0) {
                return fd;
            }
        }
    }
    return -1;
}

/* When the journal cannot take an event, submit says so (durable false)
 * and the event still commits; writing resumes when it can. */
START_TEST(test_journal_unavailable_not_durable)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    char a[UT_PATH_MAX];
    char real[UT_PATH_MAX];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    kg_usagedb_t *w2;
    kg_usagedb_stats_t st;
    bool durable = true;
    int fd;
    int saved;
    int ro;

    ut_journal_fx(&fx, key);
    w = ut_writer(&fx, 5000, 0);

    /* A second writer on the same store: the first one holds the journal,
     * so this one runs without. */
    w2 = ut_writer(&fx, 5000, 0);
    ut_jevent(&ev, key, 0);
    ck_assert_int_eq(
        kg_usagedb_submit_ex(w2, &ev, ut_tally_done, tally, &durable), KG_OK);
    ck_assert(!durable);
    ck_assert_int_eq(kg_usagedb_flush(w2), KG_OK);
    kg_usagedb_stats(w2, &st);
    ck_assert_uint_eq(st.unjournaled, 1);
    ck_assert_uint_eq(st.journaled, 0);
    kg_usagedb_stop(&w2);

    /* A write error (here: the descriptor made read-only). */
    ck_assert_ptr_nonnull(realpath(ut_jpath(&fx, 'a', a), real));
    fd = ut_fd_of(real);
    ck_assert_int_ge(fd, 0);
    saved = dup(fd);
    ro = open(real, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(ro, 0);
    ck_assert_int_eq(dup2(ro, fd), fd);
    ut_jevent(&ev, key, 1);
    durable = true;
    ck_assert_int_eq(
        kg_usagedb_submit_ex(w, &ev, ut_tally_done, tally, &durable), KG_OK);
    ck_assert(!durable);
    ck_assert_int_eq(ut_size(a), 0);
    ck_assert_int_eq(dup2(saved, fd), fd);
    close(saved);
    close(ro);
    ut_jevent(&ev, key, 2);
    ck_assert_int_eq(
        kg_usagedb_submit_ex(w, &ev, ut_tally_done, tally, &durable), KG_OK);
    ck_assert(durable);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 3);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.unjournaled, 1);
    ck_assert_uint_eq(st.journaled, 1);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, 3);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* Durable events nobody waits for are grouped: the writer lingers for more
 * of them; a stop still commits everything at once. */
START_TEST(test_journal_durable_events_grouped)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;

    ut_journal_fx(&fx, key);
    w = ut_writer(&fx, 5000, 0);
    for (int i = 0; i < 20; i++) {
        bool durable = false;

        ut_jevent(&ev, key, i);
        ck_assert_int_eq(
            kg_usagedb_submit_ex(w, &ev, ut_tally_done, tally, &durable),
            KG_OK);
        ck_assert(durable);
        ut_sleep_ms(i % 2); /* 10 ms in all, at most 2 lingers */
    }
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_lt(st.batches, 20);
    for (int i = 20; i < 40; i++) {
        bool durable = false;

        ut_jevent(&ev, key, i);
        ck_assert_int_eq(
            kg_usagedb_submit_ex(w, &ev, ut_tally_done, tally, &durable),
            KG_OK);
    }
    kg_usagedb_stop(&w);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 40);
    ut_assert_jevents(&fx, key, 40);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* Submit journal event i durably and flush; returns the flush's result. */
static kg_err_t ut_durable_one(kg_usagedb_t *w, const char *key, int i)
{
    kg_usage_event_t ev;
    bool durable = false;

    ut_jevent(&ev, key, i);
    ck_assert_int_eq(kg_usagedb_submit_ex(w, &ev, NULL, NULL, &durable), KG_OK);
    ck_assert(durable);
    return kg_usagedb_flush(w);
}

/* Failed batches in both segments, one re-apply failing too: each failed
 * event is stored once the store takes writes again, counted once, even
 * with nothing more submitted. */
START_TEST(test_journal_failed_reapply_retried)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;

    ut_journal_fx(&fx, key);
    w = ut_writer(&fx, 10, 0);
    lock = ut_lock_store(&fx);
    /* 0 fails in a; 1 goes to b (a sealed) and fails; re-applying a fails. */
    ck_assert_int_eq(ut_durable_one(w, key, 0), KG_ERR_STORE_BUSY);
    ck_assert_int_eq(ut_durable_one(w, key, 1), KG_ERR_STORE_BUSY);
    ut_unlock_store(lock);
    /* 2 commits; a is not tried again within a second. */
    ck_assert_int_eq(ut_durable_one(w, key, 2), KG_OK);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.replayed, 0);
    /* With nothing more submitted, the idle writer applies a (0 stored)
     * a second after its failed re-apply, then seals b and applies it (1
     * stored): usage comes back with the store, not at the next append.
     * Bounded: 5 s of 100 ms steps. */
    for (int i = 0; i < 50 && st.replayed < 2; i++) {
        ut_sleep_ms(100);
        kg_usagedb_stats(w, &st);
    }
    ck_assert_uint_eq(st.replayed, 2);
    ck_assert_int_eq(ut_durable_one(w, key, 3), KG_OK);
    ck_assert_int_eq(ut_durable_one(w, key, 4), KG_OK);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.replayed, 2);
    ck_assert_uint_eq(st.failures, 2);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, 5);
    ut_fx_close(&fx);
}
END_TEST

/* The nice value of this process's thread named name; -100: none. */
static int ut_thread_nice(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    int nice = -100;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        char path[300];
        char comm[32] = "";
        char *end = NULL;
        long tid = strtol(de->d_name, &end, 10);
        FILE *f;

        if (end == de->d_name || *end != '\0' || tid <= 0) {
            continue; /* ".", ".." */
        }
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        if (fgets(comm, sizeof(comm), f) != NULL) {
            comm[strcspn(comm, "\n")] = '\0';
        }
        fclose(f);
        if (strcmp(comm, name) == 0) {
            errno = 0;
            nice = getpriority(PRIO_PROCESS, (id_t)tid);
            ck_assert_int_eq(errno, 0);
        }
    }
    closedir(d);
    return nice;
}

/*
 * Places kept for events to come (kg_usagedb_hold): they count against
 * the queue's room for every submit but the held ones, which are never
 * refused for room; a refused held event frees its place.
 */
START_TEST(test_places_kept)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usage_event_t bad;
    kg_usagedb_receipt_t r;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;

    ut_journal_fx(&fx, key);
    w = ut_writer(&fx, 5000, 3);
    lock = ut_lock_store(&fx); /* the writer cannot commit */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(kg_usagedb_hold(w), KG_OK);
    }
    ck_assert_int_eq(kg_usagedb_hold(w), KG_ERR_UNAVAILABLE);
    ut_jevent(&ev, key, 0);
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, NULL, NULL), KG_ERR_UNAVAILABLE);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.held, 3);
    ck_assert_uint_eq(st.shed, 1);

    /* A held event takes its place: accepted with the queue "full". */
    ck_assert_int_eq(kg_usagedb_submit_held(w, &ev, ut_tally_done, tally, &r),
                     KG_OK);
    ck_assert(r.journaled);
    ck_assert(r.release); /* the writer is not behind */
    ck_assert_int_eq(kg_usagedb_hold(w), KG_ERR_UNAVAILABLE);
    /* A place given back is room for any submit. */
    kg_usagedb_unhold(w);
    ut_jevent(&ev, key, 1);
    ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_tally_done, tally), KG_OK);
    ck_assert_int_eq(kg_usagedb_hold(w), KG_ERR_UNAVAILABLE);
    /* A refused held event frees its place. */
    bad = ev;
    bad.cost = -1;
    r.journaled = r.release = true;
    ck_assert_int_eq(kg_usagedb_submit_held(w, &bad, NULL, NULL, &r),
                     KG_ERR_INVAL);
    ck_assert(!r.journaled && !r.release);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.held, 0);
    ck_assert_uint_eq(st.queued, 2);
    ck_assert_int_eq(kg_usagedb_hold(w), KG_OK);
    ut_unlock_store(lock);

    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 2);
    ut_jevent(&ev, key, 2);
    ck_assert_int_eq(kg_usagedb_submit_held(w, &ev, ut_tally_done, tally, &r),
                     KG_OK);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.shed, 3);
    ck_assert_uint_eq(st.held, 0);
    ck_assert_uint_eq(st.committed, 3);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, 3);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/*
 * With the store failing and no journal to keep events (a second writer
 * on the store runs without), no request is admitted; once the store
 * answers again (the idle writer asks it every second), requests are.
 */
START_TEST(test_no_place_while_store_fails_unjournaled)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_receipt_t r;
    kg_usagedb_t *w;
    kg_usagedb_t *w2;
    sqlite3 *lock;
    kg_err_t rc = KG_ERR_UNAVAILABLE;

    ut_journal_fx(&fx, key);
    w = ut_writer(&fx, 5000, 0); /* holds the journal */
    w2 = ut_writer(&fx, 10, 0);  /* without one; gives up on a lock fast */
    lock = ut_lock_store(&fx);
    ck_assert_int_eq(kg_usagedb_hold(w2), KG_OK);
    ut_jevent(&ev, key, 0);
    ck_assert_int_eq(kg_usagedb_submit_held(w2, &ev, ut_tally_done, tally, &r),
                     KG_OK);
    ck_assert(!r.journaled && !r.release);
    /* 7 tries × 10 ms + 10+20+...+320 ms of backoff < 1 s. */
    ck_assert_int_eq(kg_usagedb_flush(w2), KG_ERR_STORE_BUSY);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_ERR_STORE_BUSY]), 1);
    ck_assert_int_eq(kg_usagedb_hold(w2), KG_ERR_UNAVAILABLE);
    /* The journaled writer still admits: its journal keeps the events. */
    ck_assert_int_eq(kg_usagedb_hold(w), KG_OK);
    kg_usagedb_unhold(w);
    ut_unlock_store(lock);
    /* Bounded: 5 s for the writer's next ping. */
    for (int i = 0; i < 100 && rc != KG_OK; i++) {
        rc = kg_usagedb_hold(w2);
        if (rc != KG_OK) {
            usleep(50 * 1000);
        }
    }
    ck_assert_int_eq(rc, KG_OK);
    ut_jevent(&ev, key, 1);
    ck_assert_int_eq(kg_usagedb_submit_held(w2, &ev, ut_tally_done, tally, &r),
                     KG_OK);
    ck_assert_int_eq(kg_usagedb_flush(w2), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 1);
    kg_usagedb_stop(&w2);
    kg_usagedb_stop(&w);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/*
 * Back-pressure: with KG_USAGEDB_BACKLOG events waiting, a held event is
 * journaled but its answer waits for the commit (release false); below
 * it, the journal is enough again.
 */
START_TEST(test_backlog_holds_answers)
{
    ut_fx_t fx;
    char key[KG_TOKEN_ID_LEN + 1];
    ut_tally_t *tally = calloc(1, sizeof(*tally));
    kg_usage_event_t ev;
    kg_usagedb_receipt_t r;
    kg_usagedb_t *w;
    kg_usagedb_stats_t st;
    sqlite3 *lock;
    bool durable = false;
    int n = 0;

    ut_journal_fx(&fx, key);
    w = ut_writer(&fx, 5000, 2 * KG_USAGEDB_BACKLOG);
    lock = ut_lock_store(&fx);
    for (; n < KG_USAGEDB_BACKLOG - 1; n++) {
        ut_jevent(&ev, key, n);
        ck_assert_int_eq(kg_usagedb_submit_ex(w, &ev, NULL, NULL, &durable),
                         KG_OK);
    }
    ck_assert_int_eq(kg_usagedb_hold(w), KG_OK);
    ut_jevent(&ev, key, n++);
    ck_assert_int_eq(kg_usagedb_submit_held(w, &ev, NULL, NULL, &r), KG_OK);
    ck_assert(r.journaled && r.release); /* BACKLOG - 1 waited before it */
    ck_assert_int_eq(kg_usagedb_hold(w), KG_OK);
    ut_jevent(&ev, key, n++);
    ck_assert_int_eq(kg_usagedb_submit_held(w, &ev, ut_tally_done, tally, &r),
                     KG_OK);
    ck_assert(r.journaled);
    ck_assert(!r.release); /* BACKLOG waited before it */
    kg_usagedb_stats(w, &st);
    ck_assert_uint_eq(st.backlogged, 1);
    ck_assert_int_eq(atomic_load(&tally->calls), 0);
    ut_unlock_store(lock);
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    ck_assert_int_eq(atomic_load(&tally->by_rc[KG_OK]), 1);

    ck_assert_int_eq(kg_usagedb_hold(w), KG_OK);
    ut_jevent(&ev, key, n++);
    ck_assert_int_eq(kg_usagedb_submit_held(w, &ev, NULL, NULL, &r), KG_OK);
    ck_assert(r.journaled && r.release);
    kg_usagedb_stop(&w);
    ut_assert_jevents(&fx, key, n);
    free(tally);
    ut_fx_close(&fx);
}
END_TEST

/* The writer thread runs at nice 5: it gives the CPU up to an event loop
 * on the same core soon after it has had its share. */
START_TEST(test_writer_nice)
{
    ut_fx_t fx;
    kg_usagedb_t *w;

    ut_fx_open(&fx);
    w = ut_writer(&fx, 5000, 0);
    /* The thread sets its own priority when it starts. */
    for (int i = 0; i < 200 && ut_thread_nice("kg-usage") != 5; i++) {
        ut_sleep_ms(5);
    }
    ck_assert_int_eq(ut_thread_nice("kg-usage"), 5);
    ck_assert_int_eq(getpriority(PRIO_PROCESS, 0), 0); /* only the writer */
    kg_usagedb_stop(&w);
    ck_assert_int_eq(ut_thread_nice("kg-usage"), -100);
    ut_fx_close(&fx);
}
END_TEST

static Suite *usagedb_suite(void)
{
    Suite *s = suite_create("usagedb");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_many_threads_exact_sums);
    tcase_add_test(tc, test_callback_after_commit);
    tcase_add_test(tc, test_stop_drains);
    tcase_add_test(tc, test_deleted_key_skipped);
    tcase_add_test(tc, test_duplicate_request_id);
    tcase_add_test(tc, test_waits_for_write_lock);
    tcase_add_test(tc, test_busy_past_retries_fails_batch);
    tcase_add_test(tc, test_submit_refuses);
    tcase_add_test(tc, test_folded_batch_matches_one_by_one);
    tcase_add_test(tc, test_writer_nice);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);

    tc = tcase_create("journal");
    tcase_add_test(tc, test_journal_durable_submit);
    tcase_add_test(tc, test_journal_crash_before_commit);
    tcase_add_test(tc, test_journal_replay_committed_not_double_counted);
    tcase_add_test(tc, test_journal_torn_tail_ignored);
    tcase_add_test(tc, test_journal_mode_0600);
    tcase_add_test(tc, test_journal_space_reclaimed);
    tcase_add_test(tc, test_journal_failed_batch_applied_later);
    tcase_add_test(tc, test_journal_failed_reapply_retried);
    tcase_add_test(tc, test_journal_unavailable_not_durable);
    tcase_add_test(tc, test_journal_durable_events_grouped);
    tcase_add_test(tc, test_places_kept);
    tcase_add_test(tc, test_backlog_holds_answers);
    tcase_add_test(tc, test_no_place_while_store_fails_unjournaled);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(usagedb_suite());
}
