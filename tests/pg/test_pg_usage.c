/* The usage, audit and store-operations contract on both backends. */
#include <check.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keygate/audit.h"
#include "keygate/store.h"
#include "keygate/store_audit.h"
#include "keygate/store_ops.h"
#include "keygate/store_usage.h"
#include "keygate/storeops.h"
#include "pg_server.h"
#include "store/pg/pg_store.h"
#include "store/sqlite/sqlite_store.h"
#include "unit_util.h"

static pgs_t PG;

/* Threads and batches of the races; events per batch. */
#define RACE_THREADS 4
#define RACE_BATCHES 25
#define RACE_EVENTS  8

static void suite_setup(void)
{
    pgs_start(&PG);
}

static void suite_teardown(void)
{
    pgs_destroy(&PG);
}

/* Where a contract test's store lives: a PostgreSQL URL or a SQLite
 * file, so that the races can open more handles on it. */
typedef struct where {
    char loc[PGS_PATH_MAX + UT_PATH_MAX];
    char dir[UT_PATH_MAX]; /* SQLite: the temporary directory */
    bool pg;
} where_t;

static kg_store_t *where_open(const where_t *w)
{
    kg_store_opts_t opts = {w->pg ? 0 : KG_STORE_CREATE, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    ck_assert_msg(kg_store_open(w->loc, &opts, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    return s;
}

static void where_pg(where_t *w, const char *db)
{
    memset(w, 0, sizeof(*w));
    w->pg = true;
    pgs_create_db(&PG, db, w->loc);
}

static void where_sqlite(where_t *w)
{
    memset(w, 0, sizeof(*w));
    ut_tmpdir(w->dir);
    snprintf(w->loc, sizeof(w->loc), "%s/keygate.db", w->dir);
}

static void where_done(const where_t *w)
{
    if (!w->pg) {
        ut_tmpdir_remove(w->dir);
    }
}

static bool is_pg(kg_store_t *s)
{
    return strcmp(kg_store_backend_name(s), "postgresql") == 0;
}

/*
 * Seeding and checking rows of other entities: plain SQL on the handle's
 * own connection (the same text on both backends).
 */
static void sql_exec(kg_store_t *s, const char *sql)
{
    if (is_pg(s)) {
        PGresult *r = PQexec(kg_pg_conn(s), sql);

        ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK ||
                          PQresultStatus(r) == PGRES_TUPLES_OK,
                      "%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        char *err = NULL;

        ck_assert_msg(sqlite3_exec(kg_sqlite_db(s), sql, NULL, NULL, &err) ==
                          SQLITE_OK,
                      "%s: %s", sql, err ? err : "?");
    }
}

/* The one integer sql selects (-1 for NULL). */
static int64_t sql_int(kg_store_t *s, const char *sql)
{
    int64_t v = -1;

    if (is_pg(s)) {
        PGresult *r = PQexec(kg_pg_conn(s), sql);

        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1,
                      "%s: %s", sql, PQresultErrorMessage(r));
        v = kg_pg_col_int(r, 0, 0);
        PQclear(r);
    } else {
        sqlite3_stmt *st = NULL;

        ck_assert_int_eq(
            sqlite3_prepare_v2(kg_sqlite_db(s), sql, -1, &st, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
            v = sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
    }
    return v;
}

/* Workspace wsA (credits 1000) with keys keyA1 (a day period started at
 * 86400) and keyA2, workspace wsB with key keyB1. */
static void seed(kg_store_t *s)
{
    sql_exec(s, "INSERT INTO workspaces (id, name, credits_balance, "
                "created_at, updated_at) VALUES "
                "('wsA', 'a', 1000, 1, 1), ('wsB', 'b', 0, 1, 1)");
    sql_exec(s, "INSERT INTO api_keys (id, workspace_id, name, prefix, "
                "last4, created_at, updated_at, period, period_started_at) "
                "VALUES ('keyA1', 'wsA', 'one', 'kg', 'aaaa', 1, 1, 'day', "
                "86400)");
    sql_exec(s, "INSERT INTO api_keys (id, workspace_id, name, prefix, "
                "last4, created_at, updated_at) VALUES "
                "('keyA2', 'wsA', 'two', 'kg', 'bbbb', 1, 1), "
                "('keyB1', 'wsB', 'three', 'kg', 'cccc', 1, 1)");
}

static void event(kg_usage_record_t *r, const char *req, const char *key,
                  int64_t at_ms, const char *model, int status)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "%s", req);
    snprintf(r->key_id, sizeof(r->key_id), "%s", key);
    snprintf(r->workspace_id, sizeof(r->workspace_id), "%s",
             key[3] == 'A' ? "wsA" : "wsB");
    r->at_ms = at_ms;
    snprintf(r->operation, sizeof(r->operation), "chat");
    snprintf(r->model, sizeof(r->model), "%s", model);
    snprintf(r->provider, sizeof(r->provider), "openai");
    snprintf(r->mode, sizeof(r->mode), "api-keys");
    r->status = status;
    r->prompt_tokens = 10;
    r->completion_tokens = 20;
    r->cached_tokens = 3;
    r->cost = 1234;
    r->latency_ms = 56;
    r->ttft_ms = -1;
    snprintf(r->client_ip, sizeof(r->client_ip), "127.0.0.1");
}

/* ---- events: batch verdicts --------------------------------------------- */

static void events_contract(kg_store_t *s)
{
    kg_usage_record_t ev[6], got[4];
    kg_err_t verdicts[6];
    kg_diag_t diag = {{0}};
    kg_usage_events_filter_t f;
    bool stored = true;
    size_t n = 0;

    seed(s);
    event(&ev[0], "req-0", "keyA1", 1000, "gpt", 200);
    ck_assert_int_eq(kg_store_usage_events_insert(s, ev, 1, verdicts, &diag),
                     KG_OK);
    ck_assert_int_eq(verdicts[0], KG_OK);
    /* One batch: a duplicate, an unknown key, a refused mode among good
     * events; each has its own verdict, the good ones are committed. */
    event(&ev[0], "req-1", "keyA1", 2000, "gpt", 200);
    event(&ev[1], "req-0", "keyA2", 2001, "gpt", 200);
    event(&ev[2], "req-2", "nokey", 2002, "gpt", 200);
    event(&ev[3], "req-3", "keyA2", 2003, "gpt", 200);
    snprintf(ev[3].mode, sizeof(ev[3].mode), "barter");
    event(&ev[4], "req-4", "keyB1", 2004, "claude", 500);
    ev[4].ttft_ms = 17;
    ev[4].streamed = true;
    snprintf(ev[4].error_code, sizeof(ev[4].error_code), "upstream_error");
    event(&ev[5], "req-1", "keyB1", 2005, "gpt", 200); /* repeated in batch */
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_msg(kg_store_usage_events_insert(s, ev, 6, verdicts, &diag) ==
                      KG_OK,
                  "%s", diag.msg);
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
    ck_assert_int_eq(verdicts[0], KG_OK);
    ck_assert_int_eq(verdicts[1], KG_ERR_EXISTS);
    ck_assert_int_eq(verdicts[2], KG_ERR_NOT_FOUND);
    ck_assert_int_eq(verdicts[3], KG_ERR_INVAL);
    ck_assert_int_eq(verdicts[4], KG_OK);
    ck_assert_int_eq(verdicts[5], KG_ERR_EXISTS);
    ck_assert_int_eq(sql_int(s, "SELECT count(*) FROM usage_events"), 3);
    ck_assert_int_eq(kg_store_usage_stored(s, "req-4", &stored, &diag), KG_OK);
    ck_assert(stored);
    ck_assert_int_eq(kg_store_usage_stored(s, "req-2", &stored, &diag), KG_OK);
    ck_assert(!stored);
    /* The stored values come back as given, NULLs as -1 and "". */
    memset(&f, 0, sizeof(f));
    f.base.from = 0;
    f.base.to = 100;
    f.status_max = 999;
    ck_assert_int_eq(kg_store_usage_events_page(s, &f, INT64_MAX, INT64_MAX, 4,
                                                got, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(got[0].request_id, "req-4");
    ck_assert_str_eq(got[0].workspace_id, "wsB");
    ck_assert_str_eq(got[0].model, "claude");
    ck_assert_int_eq(got[0].status, 500);
    ck_assert_int_eq(got[0].ttft_ms, 17);
    ck_assert(got[0].streamed);
    ck_assert_str_eq(got[0].error_code, "upstream_error");
    ck_assert_int_eq(got[0].cost, 1234);
    ck_assert_int_eq(got[0].cached_tokens, 3);
    ck_assert_str_eq(got[0].client_ip, "127.0.0.1");
    ck_assert_str_eq(got[1].request_id, "req-1");
    ck_assert_int_eq(got[1].ttft_ms, -1);
    ck_assert(!got[1].streamed);
    ck_assert_str_eq(got[1].error_code, "");
    ck_assert_str_eq(got[2].request_id, "req-0");
    ck_assert_int_gt(got[0].id, got[1].id);
    /* Too many events for one batch: refused whole. */
    ck_assert_int_eq(kg_store_usage_events_insert(
                         s, ev, KG_STORE_USAGE_BATCH_MAX + 1, verdicts, &diag),
                     KG_ERR_INVAL);
}

/* Text the array parameters carry quoted and escaped. */
#define ODD_MODEL      "m\"o\\d,e{l}"
#define ODD_CLIENT_IP  "1\"\\,{}"
#define ODD_ERROR_CODE "e\"\\,{}NULL"

/* Requests stored before batch_contract's batch: old-0 .. old-15. */
#define BATCH_OLD 16

/*
 * Event i of batch_contract's full batch, and its verdict on backend pg:
 * in each run of 64, a few cases at fixed places, new events elsewhere.
 * Pairs refer to the event before them. All at one time, so that a page
 * orders them by id.
 */
static kg_err_t batch_event(kg_usage_record_t *r, int i, bool pg)
{
    static const char *const keys[] = {"keyA1", "keyB1"};
    const int k = i % 64, old = i / 64;
    kg_err_t want = KG_OK;
    char req[40];

    snprintf(req, sizeof(req), "ev-%d", i);
    event(r, req, keys[i % 2], 5000, "gpt", 200);
    switch (k) {
    case 5: /* already stored */
        snprintf(r->request_id, sizeof(r->request_id), "old-%d", old);
        want = KG_ERR_EXISTS;
        break;
    case 9: /* unknown key */
    case 50:
    case 51: /* twice: both unknown */
        snprintf(r->request_id, sizeof(r->request_id), "miss-%d",
                 k == 51 ? i - 1 : i);
        snprintf(r->key_id, sizeof(r->key_id), "nokey");
        want = KG_ERR_NOT_FOUND;
        break;
    case 13: /* stored and unknown key: the stored request_id wins */
        snprintf(r->request_id, sizeof(r->request_id), "old-%d", 8 + old);
        snprintf(r->key_id, sizeof(r->key_id), "nokey");
        want = KG_ERR_EXISTS;
        break;
    case 17: /* refused by either store */
    case 33:
        snprintf(r->mode, sizeof(r->mode), "barter");
        want = KG_ERR_INVAL;
        break;
    case 21: /* not UTF-8: PostgreSQL refuses it, SQLite stores it */
        snprintf(r->model, sizeof(r->model), "g\xffpt");
        want = pg ? KG_ERR_INVAL : KG_OK;
        break;
    case 26: /* the same request_id twice in the batch: the first wins */
    case 41: /* stored earlier in the batch, and an unknown key */
        snprintf(r->request_id, sizeof(r->request_id), "ev-%d", i - 1);
        if (k == 41) {
            snprintf(r->key_id, sizeof(r->key_id), "nokey");
        }
        want = KG_ERR_EXISTS;
        break;
    case 30: /* an unknown key: the next event of its request_id counts */
        snprintf(r->key_id, sizeof(r->key_id), "nokey");
        want = KG_ERR_NOT_FOUND;
        break;
    case 31: /* after an unknown key, and after a refused event: stored */
    case 34:
        snprintf(r->request_id, sizeof(r->request_id), "ev-%d", i - 1);
        break;
    case 45: /* text to escape in the array parameters */
        snprintf(r->model, sizeof(r->model), ODD_MODEL);
        snprintf(r->client_ip, sizeof(r->client_ip), ODD_CLIENT_IP);
        snprintf(r->error_code, sizeof(r->error_code), ODD_ERROR_CODE);
        r->ttft_ms = 0;
        r->streamed = true;
        break;
    default:
        break;
    }
    return want;
}

/* A full batch of every case at once: each event's verdict, the rows
 * stored in batch order (ids ascending), their values as given. */
static void batch_contract(kg_store_t *s)
{
    static kg_usage_record_t ev[KG_STORE_USAGE_BATCH_MAX];
    static kg_usage_record_t got[KG_STORE_USAGE_BATCH_MAX];
    static kg_err_t want[KG_STORE_USAGE_BATCH_MAX];
    static kg_err_t verdicts[KG_STORE_USAGE_BATCH_MAX];
    kg_usage_events_filter_t f;
    kg_diag_t diag = {{0}};
    size_t stored = 0, n = 0, next = 0;
    char req[40];

    seed(s);
    for (int i = 0; i < BATCH_OLD; i++) {
        snprintf(req, sizeof(req), "old-%d", i);
        event(&ev[i], req, "keyA1", 1000, "gpt", 200);
    }
    ck_assert_int_eq(
        kg_store_usage_events_insert(s, ev, BATCH_OLD, verdicts, &diag), KG_OK);
    for (int i = 0; i < KG_STORE_USAGE_BATCH_MAX; i++) {
        want[i] = batch_event(&ev[i], i, is_pg(s));
        stored += want[i] == KG_OK;
    }
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_msg(kg_store_usage_events_insert(s, ev, KG_STORE_USAGE_BATCH_MAX,
                                               verdicts, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
    for (int i = 0; i < KG_STORE_USAGE_BATCH_MAX; i++) {
        ck_assert_msg(verdicts[i] == want[i], "event %d: %d, not %d", i,
                      verdicts[i], want[i]);
    }
    ck_assert_int_eq(sql_int(s, "SELECT count(*) FROM usage_events"),
                     BATCH_OLD + (int64_t)stored);
    /* Newest first, ties by id: the batch's rows in reverse order. */
    memset(&f, 0, sizeof(f));
    f.base.from = 5;
    f.base.to = 6;
    f.status_max = 999;
    ck_assert_int_eq(kg_store_usage_events_page(s, &f, INT64_MAX, INT64_MAX,
                                                KG_STORE_USAGE_BATCH_MAX, got,
                                                &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, stored);
    for (int i = KG_STORE_USAGE_BATCH_MAX - 1; i >= 0; i--) {
        const kg_usage_record_t *g = &got[next];

        if (want[i] != KG_OK) {
            continue;
        }
        ck_assert_uint_lt(next, n);
        ck_assert_str_eq(g->request_id, ev[i].request_id);
        ck_assert_str_eq(g->key_id, ev[i].key_id);
        ck_assert_str_eq(g->model, ev[i].model);
        ck_assert_str_eq(g->client_ip, ev[i].client_ip);
        ck_assert_str_eq(g->error_code, ev[i].error_code);
        ck_assert_int_eq(g->ttft_ms, ev[i].ttft_ms);
        ck_assert(g->streamed == ev[i].streamed);
        ck_assert(next == 0 || g->id < got[next - 1].id);
        next++;
    }
    ck_assert_uint_eq(next, n);
}

/* ---- rollup ------------------------------------------------------------- */

static void sums(kg_usage_sums_t *x, int64_t k)
{
    memset(x, 0, sizeof(*x));
    x->requests = k;
    x->errors = 1;
    x->prompt_tokens = 100 * k;
    x->completion_tokens = 200 * k;
    x->cached_tokens = k;
    x->cost = 1000 * k;
    x->streamed = k;
    x->latency_ms_sum = 50 * k;
    x->latency_ms_max = 40 + k;
    x->ttft_ms_sum = 7 * k;
    x->ttft_count = k;
    for (size_t b = 0; b < KG_USAGE_LATENCY_BUCKETS; b++) {
        x->latency_hist[b] = (int64_t)b + k;
    }
}

static void rollup(kg_usage_rollup_t *r, const char *key, int64_t hour,
                   const char *model, const char *provider, int64_t k)
{
    memset(r, 0, sizeof(*r));
    r->key_id = key;
    r->workspace_id = key[3] == 'A' ? "wsA" : "wsB";
    r->hour = hour;
    r->model = model;
    r->provider = provider;
    sums(&r->sums, k);
}

/* What a scan saw: the rows, their hours in order, their sums. */
typedef struct scan {
    size_t rows;
    size_t stop_after; /* 0: never stop */
    int64_t last_hour;
    bool ordered;
    kg_usage_sums_t total;
    kg_usage_rollup_t first;
    char first_key[KG_TOKEN_ID_LEN + 1];
    char first_model[32];
} scan_t;

static bool scan_fn(void *ud, const kg_usage_rollup_t *row)
{
    scan_t *sc = ud;

    if (sc->rows == 0) {
        sc->first = *row;
        snprintf(sc->first_key, sizeof(sc->first_key), "%s", row->key_id);
        snprintf(sc->first_model, sizeof(sc->first_model), "%s", row->model);
        sc->ordered = true;
    } else if (row->hour < sc->last_hour) {
        sc->ordered = false;
    }
    sc->last_hour = row->hour;
    sc->rows++;
    kg_usage_sums_merge(&sc->total, &row->sums);
    return sc->stop_after == 0 || sc->rows < sc->stop_after;
}

static scan_t do_scan(kg_store_t *s, int64_t from, int64_t to, const char *key,
                      const char *ws, const char *model, const char *provider)
{
    kg_usage_filter_t f;
    kg_diag_t diag = {{0}};
    scan_t sc;

    memset(&sc, 0, sizeof(sc));
    memset(&f, 0, sizeof(f));
    f.from = from;
    f.to = to;
    snprintf(f.key_id, sizeof(f.key_id), "%s", key);
    snprintf(f.workspace_id, sizeof(f.workspace_id), "%s", ws);
    snprintf(f.model, sizeof(f.model), "%s", model);
    snprintf(f.provider, sizeof(f.provider), "%s", provider);
    ck_assert_msg(kg_store_usage_rollup_scan(s, &f, scan_fn, &sc, &diag) ==
                      KG_OK,
                  "%s", diag.msg);
    return sc;
}

static void rollup_contract(kg_store_t *s)
{
    kg_usage_rollup_t r;
    kg_usage_filter_t f;
    kg_diag_t diag = {{0}};
    scan_t sc;

    seed(s);
    /* Two batches add up; the maximum latency is the larger. */
    rollup(&r, "keyA1", 3600, "gpt", "openai", 2);
    ck_assert_int_eq(kg_store_usage_rollup_add(s, &r, &diag), KG_OK);
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    rollup(&r, "keyA1", 3600, "gpt", "openai", 5);
    ck_assert_int_eq(kg_store_usage_rollup_add(s, &r, &diag), KG_OK);
    /* An unknown key: not found, and the transaction goes on. */
    rollup(&r, "nokey", 3600, "gpt", "openai", 1);
    ck_assert_int_eq(kg_store_usage_rollup_add(s, &r, &diag), KG_ERR_NOT_FOUND);
    rollup(&r, "keyA2", 7200, "gpt", "openai", 1);
    ck_assert_int_eq(kg_store_usage_rollup_add(s, &r, &diag), KG_OK);
    rollup(&r, "keyB1", 7200, "claude", "anthropic", 3);
    ck_assert_int_eq(kg_store_usage_rollup_add(s, &r, &diag), KG_OK);
    rollup(&r, "keyA1", 10800, "claude", "anthropic", 4);
    ck_assert_int_eq(kg_store_usage_rollup_add(s, &r, &diag), KG_OK);
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);

    sc = do_scan(s, 0, 14400, "keyA1", "", "gpt", "");
    ck_assert_uint_eq(sc.rows, 1);
    ck_assert_int_eq(sc.first.hour, 3600);
    ck_assert_str_eq(sc.first_key, "keyA1");
    ck_assert_int_eq(sc.total.requests, 7);
    ck_assert_int_eq(sc.total.errors, 2);
    ck_assert_int_eq(sc.total.cost, 7000);
    ck_assert_int_eq(sc.total.latency_ms_max, 45);
    ck_assert_int_eq(sc.total.ttft_count, 7);
    ck_assert_int_eq(sc.total.latency_hist[0], 7);
    ck_assert_int_eq(sc.total.latency_hist[KG_USAGE_LATENCY_BUCKETS - 1],
                     2 * (KG_USAGE_LATENCY_BUCKETS - 1) + 7);
    /* Every filter, alone and together; hours in [from, to). */
    ck_assert_uint_eq(do_scan(s, 0, 14400, "", "", "", "").rows, 4);
    sc = do_scan(s, 0, 14400, "", "", "", "");
    ck_assert(sc.ordered);
    ck_assert_int_eq(sc.total.requests, 7 + 1 + 3 + 4);
    ck_assert_uint_eq(do_scan(s, 0, 14400, "keyA1", "", "", "").rows, 2);
    ck_assert_uint_eq(do_scan(s, 0, 14400, "", "wsA", "", "").rows, 3);
    ck_assert_uint_eq(do_scan(s, 0, 14400, "", "wsB", "", "").rows, 1);
    ck_assert_uint_eq(do_scan(s, 0, 14400, "", "", "claude", "").rows, 2);
    ck_assert_uint_eq(do_scan(s, 0, 14400, "", "wsA", "claude", "").rows, 1);
    ck_assert_uint_eq(do_scan(s, 0, 14400, "", "", "", "anthropic").rows, 2);
    ck_assert_uint_eq(do_scan(s, 7200, 10800, "", "", "", "").rows, 2);
    ck_assert_uint_eq(do_scan(s, 3600, 7200, "", "", "", "").rows, 1);
    ck_assert_uint_eq(do_scan(s, 14400, 18000, "", "", "", "").rows, 0);
    ck_assert_uint_eq(do_scan(s, 0, 14400, "keyB1", "wsA", "", "").rows, 0);
    /* The callback stops the scan. */
    memset(&sc, 0, sizeof(sc));
    memset(&f, 0, sizeof(f));
    f.from = 0;
    f.to = 14400;
    sc.stop_after = 2;
    ck_assert_int_eq(kg_store_usage_rollup_scan(s, &f, scan_fn, &sc, &diag),
                     KG_OK);
    ck_assert_uint_eq(sc.rows, 2);
    /* Unaligned or empty ranges. */
    f.from = 1;
    ck_assert_int_eq(kg_store_usage_rollup_scan(s, &f, scan_fn, &sc, &diag),
                     KG_ERR_INVAL);
    f.from = 7200;
    f.to = 7200;
    ck_assert_int_eq(kg_store_usage_rollup_scan(s, &f, scan_fn, &sc, &diag),
                     KG_ERR_INVAL);
}

/* More rows than one query of a scan fetches (PostgreSQL pages them):
 * every row once, in hour order, on each index's variant. */
static void rollup_many_contract(kg_store_t *s)
{
    static const char *const models[] = {"m0", "m1", "m2", "m3", "m4"};
    const int hours = 500;
    kg_usage_rollup_t r;
    kg_diag_t diag = {{0}};
    scan_t sc;

    seed(s);
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    for (int h = 0; h < hours; h++) {
        for (size_t m = 0; m < UT_NROWS(models); m++) {
            rollup(&r, m % 2 ? "keyA1" : "keyA2", 3600 * (int64_t)h, models[m],
                   "openai", 1);
            ck_assert_int_eq(kg_store_usage_rollup_add(s, &r, &diag), KG_OK);
        }
    }
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
    sc = do_scan(s, 0, 3600 * hours, "", "", "", "");
    ck_assert_uint_eq(sc.rows, (size_t)hours * UT_NROWS(models));
    ck_assert_int_eq(sc.total.requests, hours * (int)UT_NROWS(models));
    ck_assert(sc.ordered);
    sc = do_scan(s, 0, 3600 * hours, "", "wsA", "", "");
    ck_assert_uint_eq(sc.rows, (size_t)hours * UT_NROWS(models));
    ck_assert(sc.ordered);
    sc = do_scan(s, 0, 3600 * hours, "keyA2", "", "", "");
    ck_assert_uint_eq(sc.rows, (size_t)hours * 3);
    ck_assert(sc.ordered);
    sc = do_scan(s, 3600, 3600 * hours, "", "", "m1", "");
    ck_assert_uint_eq(sc.rows, (size_t)hours - 1);
}

/* ---- event pages, span, prune ------------------------------------------- */

#define PAGE_EVENTS 40

/* Event i: at 1000 + (i / 3) * 500 ms (ties of three), key by i % 4,
 * model by i % 2, status 200 or 429 by i % 5. */
static void page_seed(kg_store_t *s)
{
    kg_usage_record_t ev[PAGE_EVENTS];
    kg_err_t verdicts[PAGE_EVENTS];
    kg_diag_t diag = {{0}};
    static const char *const keys[] = {"keyA1", "keyA2", "keyB1", "keyA1"};
    char req[32];

    seed(s);
    for (int i = 0; i < PAGE_EVENTS; i++) {
        snprintf(req, sizeof(req), "page-%d", i);
        event(&ev[i], req, keys[i % 4], 1000 + (i / 3) * 500,
              i % 2 ? "gpt" : "claude", i % 5 ? 200 : 429);
    }
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_usage_events_insert(s, ev, PAGE_EVENTS, verdicts, &diag),
        KG_OK);
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
    for (int i = 0; i < PAGE_EVENTS; i++) {
        ck_assert_int_eq(verdicts[i], KG_OK);
    }
}

/* Page through f by limit: the request numbers seen, in order, into out;
 * their count. Checks the order (at_ms, id) descending. */
static size_t page_all(kg_store_t *s, const kg_usage_events_filter_t *f,
                       size_t limit, int *out, size_t max)
{
    kg_usage_record_t got[PAGE_EVENTS];
    kg_diag_t diag = {{0}};
    int64_t at = INT64_MAX, id = INT64_MAX;
    size_t total = 0, n = 0;

    for (int guard = 0; guard <= PAGE_EVENTS; guard++) {
        ck_assert_int_eq(
            kg_store_usage_events_page(s, f, at, id, limit, got, &n, &diag),
            KG_OK);
        ck_assert_uint_le(n, limit);
        for (size_t i = 0; i < n; i++) {
            ck_assert(got[i].at_ms < at ||
                      (got[i].at_ms == at && got[i].id < id));
            at = got[i].at_ms;
            id = got[i].id;
            ck_assert_uint_lt(total, max);
            out[total++] =
                (int)strtol(got[i].request_id + 5, NULL, 10); /* page-N */
        }
        if (n < limit) {
            return total;
        }
    }
    ck_abort_msg("paging did not end");
    return total;
}

/* The events the filter should select, newest first (ties: later
 * inserted, a larger id, first). */
static size_t page_expect(const kg_usage_events_filter_t *f, int *out)
{
    static const char *const keys[] = {"keyA1", "keyA2", "keyB1", "keyA1"};
    size_t n = 0;

    for (int i = PAGE_EVENTS - 1; i >= 0; i--) {
        int64_t at = 1000 + (i / 3) * 500;
        int status = i % 5 ? 200 : 429;

        if (at < f->base.from * 1000 || at >= f->base.to * 1000 ||
            status < f->status_min || status > f->status_max ||
            (f->base.key_id[0] && strcmp(f->base.key_id, keys[i % 4]) != 0) ||
            (f->base.model[0] &&
             strcmp(f->base.model, i % 2 ? "gpt" : "claude") != 0) ||
            (f->base.workspace_id[0] &&
             strcmp(f->base.workspace_id, i % 4 == 2 ? "wsB" : "wsA") != 0)) {
            continue;
        }
        out[n++] = i;
    }
    return n;
}

static void page_check(kg_store_t *s, const kg_usage_events_filter_t *f)
{
    int want[PAGE_EVENTS], got[PAGE_EVENTS];
    size_t nw = page_expect(f, want);

    for (size_t limit = 1; limit <= 8; limit += 3) {
        size_t ng = page_all(s, f, limit, got, PAGE_EVENTS);

        ck_assert_uint_eq(ng, nw);
        for (size_t i = 0; i < nw; i++) {
            ck_assert_int_eq(got[i], want[i]);
        }
    }
}

static void pages_contract(kg_store_t *s)
{
    kg_usage_events_filter_t f;
    kg_usage_record_t got[4];
    kg_diag_t diag = {{0}};
    size_t n = 9;

    page_seed(s);
    memset(&f, 0, sizeof(f));
    f.base.from = 0;
    f.base.to = 100;
    f.status_max = 999;
    page_check(s, &f);
    snprintf(f.base.key_id, sizeof(f.base.key_id), "keyA1");
    page_check(s, &f);
    f.status_min = 429;
    page_check(s, &f);
    f.status_min = 0;
    f.base.key_id[0] = '\0';
    snprintf(f.base.workspace_id, sizeof(f.base.workspace_id), "wsB");
    page_check(s, &f);
    f.base.workspace_id[0] = '\0';
    snprintf(f.base.model, sizeof(f.base.model), "gpt");
    f.base.from = 3;
    f.base.to = 7;
    page_check(s, &f);
    /* Nothing in range, and the provider filter. */
    f.base.model[0] = '\0';
    snprintf(f.base.provider, sizeof(f.base.provider), "anthropic");
    ck_assert_int_eq(kg_store_usage_events_page(s, &f, INT64_MAX, INT64_MAX, 4,
                                                got, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 0);
    /* A cursor past the range's end starts at the range's newest. */
    snprintf(f.base.provider, sizeof(f.base.provider), "openai");
    f.base.from = 0;
    f.base.to = 2;
    ck_assert_int_eq(
        kg_store_usage_events_page(s, &f, 99999, 0, 4, got, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(got[0].request_id, "page-5");
    ck_assert_int_eq(got[0].at_ms, 1500);
}

static void prune_contract(kg_store_t *s)
{
    kg_diag_t diag = {{0}};
    int64_t oldest = 0, newest = 0;
    size_t deleted = 99;
    bool stored = true;

    ck_assert_int_eq(kg_store_usage_span(s, &oldest, &newest, &diag), KG_OK);
    ck_assert_int_eq(oldest, -1);
    ck_assert_int_eq(newest, -1);
    page_seed(s);
    ck_assert_int_eq(kg_store_usage_span(s, &oldest, &newest, &diag), KG_OK);
    ck_assert_int_eq(oldest, 1000);
    ck_assert_int_eq(newest, 1000 + ((PAGE_EVENTS - 1) / 3) * 500);
    ck_assert_int_eq(kg_store_usage_prune(s, 2000, 0, &deleted, &diag),
                     KG_ERR_INVAL);
    /* Events before 2000 ms: six (1000 and 1500 ms); oldest first. */
    ck_assert_int_eq(kg_store_usage_prune(s, 2000, 4, &deleted, &diag), KG_OK);
    ck_assert_uint_eq(deleted, 4);
    ck_assert_int_eq(kg_store_usage_span(s, &oldest, &newest, &diag), KG_OK);
    ck_assert_int_eq(oldest, 1500);
    ck_assert_int_eq(kg_store_usage_stored(s, "page-2", &stored, &diag), KG_OK);
    ck_assert(!stored);
    ck_assert_int_eq(kg_store_usage_prune(s, 2000, 4, &deleted, &diag), KG_OK);
    ck_assert_uint_eq(deleted, 2);
    ck_assert_int_eq(kg_store_usage_prune(s, 2000, 4, &deleted, &diag), KG_OK);
    ck_assert_uint_eq(deleted, 0);
    ck_assert_int_eq(sql_int(s, "SELECT count(*) FROM usage_events"),
                     PAGE_EVENTS - 6);
    ck_assert_int_eq(kg_store_usage_stored(s, "page-6", &stored, &diag), KG_OK);
    ck_assert(stored);
}

/* ---- charges ------------------------------------------------------------ */

static void charges_contract(kg_store_t *s)
{
    kg_diag_t diag = {{0}};

    seed(s);
    /* The current period (86400) adds up; last_used only moves forward. */
    ck_assert_int_eq(
        kg_store_usage_charge_key(s, "keyA1", 10, 500, 86400, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_usage_charge_key(s, "keyA1", 5, 400, 86400, &diag), KG_OK);
    ck_assert_int_eq(sql_int(s, "SELECT usage FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     15);
    ck_assert_int_eq(sql_int(s, "SELECT period_usage FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     15);
    ck_assert_int_eq(sql_int(s, "SELECT last_used_at FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     500);
    /* A newer period restarts with the cost. */
    ck_assert_int_eq(
        kg_store_usage_charge_key(s, "keyA1", 7, 600, 172800, &diag), KG_OK);
    ck_assert_int_eq(sql_int(s, "SELECT period_usage FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     7);
    ck_assert_int_eq(sql_int(s, "SELECT period_started_at FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     172800);
    /* An older period: the lifetime usage only. */
    ck_assert_int_eq(
        kg_store_usage_charge_key(s, "keyA1", 3, 550, 86400, &diag), KG_OK);
    ck_assert_int_eq(sql_int(s, "SELECT usage FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     25);
    ck_assert_int_eq(sql_int(s, "SELECT period_usage FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     7);
    ck_assert_int_eq(sql_int(s, "SELECT period_started_at FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     172800);
    ck_assert_int_eq(sql_int(s, "SELECT last_used_at FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     600);
    /* No period (the key's, or the charge's): lifetime only. */
    ck_assert_int_eq(
        kg_store_usage_charge_key(s, "keyA2", 9, 100, 86400, &diag), KG_OK);
    ck_assert_int_eq(kg_store_usage_charge_key(s, "keyA1", 1, 100, -1, &diag),
                     KG_OK);
    ck_assert_int_eq(sql_int(s, "SELECT usage FROM api_keys "
                                "WHERE id = 'keyA2'"),
                     9);
    ck_assert_int_eq(sql_int(s, "SELECT period_usage FROM api_keys "
                                "WHERE id = 'keyA2'"),
                     0);
    ck_assert_int_eq(sql_int(s, "SELECT period_started_at FROM api_keys "
                                "WHERE id = 'keyA2'"),
                     -1);
    ck_assert_int_eq(sql_int(s, "SELECT period_usage FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     7);
    /* Unknown rows: nothing, no error. */
    ck_assert_int_eq(kg_store_usage_charge_key(s, "nokey", 1, 1, -1, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_usage_charge_credits(s, "wsA", 250, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_usage_charge_credits(s, "nows", 250, &diag),
                     KG_OK);
    ck_assert_int_eq(sql_int(s, "SELECT credits_balance FROM workspaces "
                                "WHERE id = 'wsA'"),
                     750);
}

/* ---- races: several handles, one database ------------------------------- */

typedef struct racer {
    const where_t *w;
    int n;
    int shared_ok; /* shared request ids this thread stored */
    kg_err_t rc;
    kg_diag_t diag;
    double max_ms; /* the slowest batch */
} racer_t;

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* One batch as the usage writer commits it: events (one shared with the
 * other threads), the rollup row, the key and credit charges. */
static kg_err_t race_batch(racer_t *r, kg_store_t *s, int b, kg_diag_t *diag)
{
    kg_usage_record_t ev[RACE_EVENTS + 1];
    kg_err_t verdicts[RACE_EVENTS + 1];
    kg_usage_rollup_t row;
    char req[40];
    kg_err_t rc;

    for (int e = 0; e < RACE_EVENTS; e++) {
        snprintf(req, sizeof(req), "race-%d-%d-%d", r->n, b, e);
        event(&ev[e], req, "keyA1", 1000 + b, "gpt", 200);
    }
    snprintf(req, sizeof(req), "shared-%d", b);
    event(&ev[RACE_EVENTS], req, "keyA2", 1000 + b, "gpt", 200);
    rollup(&row, "keyA1", 3600, "gpt", "openai", 1);
    row.sums.latency_ms_max = 100 * r->n + b;
    rc = kg_store_begin(s, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_store_usage_events_insert(s, ev, RACE_EVENTS + 1, verdicts, diag);
    for (int e = 0; rc == KG_OK && e < RACE_EVENTS; e++) {
        if (verdicts[e] != KG_OK) {
            rc = kg_diag_fail(diag, KG_ERR_INTERNAL, "verdict %d", verdicts[e]);
        }
    }
    if (rc == KG_OK) {
        rc = kg_store_usage_rollup_add(s, &row, diag);
    }
    if (rc == KG_OK) {
        rc = kg_store_usage_charge_key(s, "keyA1", 3, 1000 + b, 86400, diag);
    }
    if (rc == KG_OK) {
        rc = kg_store_usage_charge_credits(s, "wsA", 2, diag);
    }
    if (rc == KG_OK) {
        rc = kg_store_commit(s, diag);
    } else {
        kg_store_rollback(s);
    }
    if (rc == KG_OK && verdicts[RACE_EVENTS] == KG_OK) {
        r->shared_ok++;
    }
    return rc;
}

static void *race_thread(void *arg)
{
    racer_t *r = arg;
    kg_store_opts_t opts = {r->w->pg ? 0 : KG_STORE_CREATE, 10000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    r->rc = kg_store_open(r->w->loc, &opts, &s, &diag);
    for (int b = 0; r->rc == KG_OK && b < RACE_BATCHES; b++) {
        double t0 = now_ms();

        /* A busy store (SQLite's lock, a PostgreSQL deadlock) is tried
         * again, as the usage writer does. */
        for (int tries = 0; tries < 50; tries++) {
            r->rc = race_batch(r, s, b, &diag);
            if (r->rc != KG_ERR_STORE_BUSY) {
                break;
            }
        }
        if (now_ms() - t0 > r->max_ms) {
            r->max_ms = now_ms() - t0;
        }
    }
    r->diag = diag;
    kg_store_close(&s);
    return NULL;
}

/* Totals exact after RACE_THREADS handles raced: events, the rollup's
 * additions, the charges; each shared request id stored once. */
static void race_contract(const where_t *w)
{
    racer_t r[RACE_THREADS];
    pthread_t t[RACE_THREADS];
    kg_store_t *s = where_open(w);
    const int64_t batches = RACE_THREADS * RACE_BATCHES;
    int shared = 0;
    scan_t sc;

    seed(s);
    for (int i = 0; i < RACE_THREADS; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].w = w;
        r[i].n = i;
        ck_assert_int_eq(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        ck_assert_msg(r[i].rc == KG_OK, "thread %d: %s", i, r[i].diag.msg);
        shared += r[i].shared_ok;
    }
    ck_assert_int_eq(shared, RACE_BATCHES);
    ck_assert_int_eq(sql_int(s, "SELECT count(*) FROM usage_events"),
                     batches * RACE_EVENTS + RACE_BATCHES);
    sc = do_scan(s, 0, 7200, "keyA1", "", "", "");
    ck_assert_uint_eq(sc.rows, 1);
    ck_assert_int_eq(sc.total.requests, batches);
    ck_assert_int_eq(sc.total.cost, 1000 * batches);
    ck_assert_int_eq(sc.total.latency_ms_max,
                     100 * (RACE_THREADS - 1) + RACE_BATCHES - 1);
    ck_assert_int_eq(sql_int(s, "SELECT usage FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     3 * batches);
    ck_assert_int_eq(sql_int(s, "SELECT period_usage FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     3 * batches);
    ck_assert_int_eq(sql_int(s, "SELECT last_used_at FROM api_keys "
                                "WHERE id = 'keyA1'"),
                     1000 + RACE_BATCHES - 1);
    ck_assert_int_eq(sql_int(s, "SELECT credits_balance FROM workspaces "
                                "WHERE id = 'wsA'"),
                     1000 - 2 * batches);
    kg_store_close(&s);
}

/* ---- audit -------------------------------------------------------------- */

#define AUDIT_EVENTS 30

/* Event i at 100 + i: actor by i % 3, action by i % 2, object by i % 5. */
static void audit_seed(kg_store_t *s)
{
    static const char *const actors[] = {"cli:root", "admin:tok1", "system"};
    kg_diag_t diag = {{0}};
    char oid[16], detail[64];

    for (int i = 0; i < AUDIT_EVENTS; i++) {
        snprintf(oid, sizeof(oid), "obj%d", i % 5);
        snprintf(detail, sizeof(detail), "{\"n\":%d,\"s\":\"\xc3\xa9\"}", i);
        ck_assert_int_eq(kg_store_audit_insert(
                             s, 100 + i, actors[i % 3],
                             i % 2 ? "key.create" : "key.revoke",
                             i % 4 ? "key" : "workspace", oid, detail, &diag),
                         KG_OK);
    }
}

/* Page through f: the event numbers, newest first. */
static size_t audit_all(kg_store_t *s, const kg_audit_filter_t *f, size_t limit,
                        int *out)
{
    kg_audit_event_t *ev = NULL;
    kg_diag_t diag = {{0}};
    int64_t before = INT64_MAX;
    size_t total = 0, n = 0;

    for (int guard = 0; guard <= AUDIT_EVENTS; guard++) {
        ck_assert_int_eq(
            kg_store_audit_page(s, f, before, limit, &ev, &n, &diag), KG_OK);
        ck_assert_uint_le(n, limit);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_lt(ev[i].id, before);
            before = ev[i].id;
            ck_assert_uint_lt(total, AUDIT_EVENTS);
            out[total++] = (int)(ev[i].at - 100);
            ck_assert_ptr_nonnull(strstr(ev[i].detail, "\xc3\xa9"));
        }
        kg_audit_events_free(&ev, n);
        if (n < limit) {
            return total;
        }
    }
    ck_abort_msg("paging did not end");
    return total;
}

static void audit_check(kg_store_t *s, const kg_audit_filter_t *f)
{
    static const char *const actors[] = {"cli:root", "admin:tok1", "system"};
    int want[AUDIT_EVENTS], got[AUDIT_EVENTS];
    size_t nw = 0;
    char oid[16];

    for (int i = AUDIT_EVENTS - 1; i >= 0; i--) {
        snprintf(oid, sizeof(oid), "obj%d", i % 5);
        if (100 + i < f->from || 100 + i >= f->to ||
            (f->actor[0] && strcmp(f->actor, actors[i % 3]) != 0) ||
            (f->action[0] &&
             strcmp(f->action, i % 2 ? "key.create" : "key.revoke") != 0) ||
            (f->object_type[0] &&
             strcmp(f->object_type, i % 4 ? "key" : "workspace") != 0) ||
            (f->object_id[0] && strcmp(f->object_id, oid) != 0)) {
            continue;
        }
        want[nw++] = i;
    }
    for (size_t limit = 1; limit <= 10; limit += 4) {
        size_t ng = audit_all(s, f, limit, got);

        ck_assert_uint_eq(ng, nw);
        for (size_t i = 0; i < nw; i++) {
            ck_assert_int_eq(got[i], want[i]);
        }
    }
}

static void audit_contract(kg_store_t *s)
{
    kg_audit_filter_t f;
    kg_audit_event_t *ev = NULL;
    kg_diag_t diag = {{0}};
    size_t n = 9;

    /* Nothing yet. */
    memset(&f, 0, sizeof(f));
    f.to = KG_AUDIT_TIME_MAX;
    ck_assert_int_eq(kg_store_audit_page(s, &f, INT64_MAX, 5, &ev, &n, &diag),
                     KG_OK);
    ck_assert_ptr_null(ev);
    ck_assert_uint_eq(n, 0);
    audit_seed(s);
    ck_assert_int_eq(kg_store_audit_page(s, &f, INT64_MAX, 1, &ev, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ev[0].at, 100 + AUDIT_EVENTS - 1);
    ck_assert_str_eq(ev[0].actor, "system");
    ck_assert_str_eq(ev[0].action, "key.create");
    ck_assert_str_eq(ev[0].object_type, "key");
    ck_assert_str_eq(ev[0].object_id, "obj4");
    ck_assert_str_eq(ev[0].detail, "{\"n\":29,\"s\":\"\xc3\xa9\"}");
    kg_audit_events_free(&ev, n);
    audit_check(s, &f);
    snprintf(f.actor, sizeof(f.actor), "system");
    audit_check(s, &f);
    snprintf(f.action, sizeof(f.action), "key.revoke");
    audit_check(s, &f);
    memset(&f, 0, sizeof(f));
    f.from = 105;
    f.to = 120;
    snprintf(f.object_id, sizeof(f.object_id), "obj2");
    audit_check(s, &f);
    f.object_id[0] = '\0';
    snprintf(f.object_type, sizeof(f.object_type), "workspace");
    audit_check(s, &f);
    /* Exact matches only (no pattern, no case folding). */
    snprintf(f.object_type, sizeof(f.object_type), "Workspace");
    ck_assert_int_eq(kg_store_audit_page(s, &f, INT64_MAX, 5, &ev, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 0);
    /* Inside a transaction: rolled back with it. */
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_audit_insert(s, 1, "a", "b", "c", "d", "{}", &diag), KG_OK);
    kg_store_rollback(s);
    ck_assert_int_eq(sql_int(s, "SELECT count(*) FROM audit_events"),
                     AUDIT_EVENTS);
}

/* ---- store operations --------------------------------------------------- */

/* What 'keygate store backup' and 'keygate store status' run: the backup
 * is not supported and leaves no file behind; the status has no backup. */
static void storeops_on_postgresql(kg_store_t *s)
{
    static kg_storeops_status_t st;
    kg_storeops_backup_t bk;
    kg_config_t cfg;
    kg_diag_t diag = {{0}};
    char dir[UT_PATH_MAX], dest[UT_PATH_MAX];
    struct dirent *de;
    DIR *d;
    int entries = 0;

    ut_tmpdir(dir);
    ck_assert_int_eq(kg_storeops_backup(s, ut_join(dest, dir, "k.db"), 0,
                                        "cli:root", &bk, &diag),
                     KG_ERR_STORE);
    ck_assert_ptr_nonnull(strstr(diag.msg, "not supported by the postgresql"));
    d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        entries += de->d_name[0] != '.' || strlen(de->d_name) > 2;
    }
    closedir(d);
    ck_assert_int_eq(entries, 0);
    ut_tmpdir_remove(dir);
    memset(&cfg, 0, sizeof(cfg));
    cfg.hash_key_file = "/nonexistent/hash.key";
    cfg.secret_key_file = "/nonexistent/secret.key";
    ck_assert_msg(kg_storeops_status(s, &cfg, &st, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert(!st.has_backup);
    ck_assert_int_eq(st.counts[6].rows, PAGE_EVENTS);
    ck_assert_int_gt(st.space.pages, 0);
    ck_assert_int_eq(st.oldest_event_ms, 1000);
}

static void maint_contract(kg_store_t *s)
{
    kg_store_count_t counts[KG_STORE_NTABLES];
    kg_store_space_t space;
    kg_store_backup_info_t info, last;
    kg_diag_t diag = {{0}};
    bool found = true;

    page_seed(s);
    audit_seed(s);
    ck_assert_int_eq(kg_store_counts(s, counts, &diag), KG_OK);
    ck_assert_str_eq(counts[0].table, "workspaces");
    ck_assert_int_eq(counts[0].rows, 2);
    ck_assert_str_eq(counts[1].table, "api_keys");
    ck_assert_int_eq(counts[1].rows, 3);
    ck_assert_str_eq(counts[5].table, "audit_events");
    ck_assert_int_eq(counts[5].rows, AUDIT_EVENTS);
    ck_assert_str_eq(counts[6].table, "usage_events");
    ck_assert_int_eq(counts[6].rows, PAGE_EVENTS);
    ck_assert_str_eq(counts[7].table, "usage_rollup");
    ck_assert_int_eq(counts[7].rows, 0);
    ck_assert_str_eq(counts[8].table, "store_backups");
    ck_assert_int_eq(counts[8].rows, 0);
    ck_assert_int_eq(kg_store_space(s, &space, &diag), KG_OK);
    ck_assert_int_gt(space.page_size, 0);
    ck_assert_int_gt(space.pages, 0);
    ck_assert_int_ge(space.free_pages, 0);
    ck_assert_int_eq(kg_store_backup_last(s, &last, &found, &diag), KG_OK);
    ck_assert(!found);
    memset(&info, 0, sizeof(info));
    info.at = 1700000000;
    snprintf(info.path, sizeof(info.path), "/var/backups/k.db");
    info.bytes = 4096;
    info.pages = 1;
    info.duration_ms = 3;
    snprintf(info.actor, sizeof(info.actor), "cli:root");
    if (is_pg(s)) {
        int64_t pages = 7;

        /* No online backup, and so no record of one. */
        ck_assert_int_eq(kg_store_backup_copy(s, "/nonexistent", &pages, &diag),
                         KG_ERR_STORE);
        ck_assert_ptr_nonnull(strstr(diag.msg, "not supported"));
        ck_assert_int_eq(pages, 0);
        ck_assert_int_eq(kg_store_backup_record(s, &info, &diag), KG_ERR_STORE);
        ck_assert_ptr_nonnull(strstr(diag.msg, "not supported"));
        ck_assert_int_eq(kg_store_backup_last(s, &last, &found, &diag), KG_OK);
        ck_assert(!found);
        storeops_on_postgresql(s);
    } else {
        ck_assert_int_eq(kg_store_backup_record(s, &info, &diag), KG_OK);
        ck_assert_int_eq(kg_store_backup_last(s, &last, &found, &diag), KG_OK);
        ck_assert(found);
        ck_assert_str_eq(last.path, "/var/backups/k.db");
        ck_assert_int_eq(last.at, 1700000000);
    }
}

/* ---- one body, two backends --------------------------------------------- */

typedef void (*contract_fn)(kg_store_t *s);

static void run_pg(const char *db, contract_fn fn)
{
    where_t w;
    kg_store_t *s;

    where_pg(&w, db);
    s = where_open(&w);
    fn(s);
    kg_store_close(&s);
}

static void run_sqlite(contract_fn fn)
{
    where_t w;
    kg_store_t *s;

    where_sqlite(&w);
    s = where_open(&w);
    fn(s);
    kg_store_close(&s);
    where_done(&w);
}

#define CONTRACT(name)                        \
    START_TEST(name##_on_postgresql)          \
    {                                         \
        run_pg("kg_" #name, name##_contract); \
    }                                         \
    END_TEST                                  \
    START_TEST(name##_on_sqlite)              \
    {                                         \
        run_sqlite(name##_contract);          \
    }                                         \
    END_TEST

CONTRACT(events)
CONTRACT(batch)
CONTRACT(rollup)
CONTRACT(rollup_many)
CONTRACT(pages)
CONTRACT(prune)
CONTRACT(charges)
CONTRACT(audit)
CONTRACT(maint)

START_TEST(races_on_postgresql)
{
    where_t w;

    where_pg(&w, "kg_race");
    race_contract(&w);
}
END_TEST

START_TEST(races_on_sqlite)
{
    where_t w;

    where_sqlite(&w);
    race_contract(&w);
    where_done(&w);
}
END_TEST

/* ---- a batch waiting for another instance's transaction ---------------- */

/* A batch of two events of one request_id (a known key, then an unknown
 * one) on a handle of its own, while another holds that request_id. */
typedef struct waiter {
    const where_t *w;
    const char *req;
    kg_err_t rc;
    kg_err_t verdicts[2];
    kg_diag_t diag;
} waiter_t;

static void *waiter_thread(void *arg)
{
    waiter_t *x = arg;
    kg_store_opts_t opts = {0, 10000, 0, NULL};
    kg_usage_record_t ev[2];
    kg_store_t *s = NULL;

    event(&ev[0], x->req, "keyA1", 1000, "gpt", 200);
    event(&ev[1], x->req, "nokey", 1000, "gpt", 200);
    x->rc = kg_store_open(x->w->loc, &opts, &s, &x->diag);
    if (x->rc == KG_OK) {
        x->rc = kg_store_begin(s, &x->diag);
    }
    if (x->rc == KG_OK) {
        x->rc = kg_store_usage_events_insert(s, ev, 2, x->verdicts, &x->diag);
    }
    if (x->rc == KG_OK) {
        x->rc = kg_store_commit(s, &x->diag);
    } else if (s != NULL) {
        kg_store_rollback(s);
    }
    kg_store_close(&s);
    return NULL;
}

/*
 * holder stores req (key keyA2) in an open transaction; a batch of req
 * waits for it (ON CONFLICT) and gets its verdicts once holder commits
 * (commit true) or rolls back.
 */
static void wait_for_holder(const where_t *w, kg_store_t *s, const char *req,
                            bool commit)
{
    kg_store_t *holder = where_open(w);
    kg_usage_record_t ev;
    kg_err_t verdict = KG_ERR_INTERNAL;
    kg_diag_t diag = {{0}};
    waiter_t x = {w, req, KG_ERR_INTERNAL, {0, 0}, {{0}}};
    pthread_t t;
    int64_t waiting = 0;
    char sql[160];

    event(&ev, req, "keyA2", 900, "gpt", 200);
    ck_assert_int_eq(kg_store_begin(holder, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_usage_events_insert(holder, &ev, 1, &verdict, &diag), KG_OK);
    ck_assert_int_eq(verdict, KG_OK);
    ck_assert_int_eq(pthread_create(&t, NULL, waiter_thread, &x), 0);
    for (int i = 0; i < 1000 && waiting == 0; i++) {
        usleep(10 * 1000);
        waiting = sql_int(s, "SELECT count(*) FROM pg_stat_activity "
                             "WHERE wait_event_type = 'Lock' "
                             "AND datname = current_database()");
    }
    ck_assert_int_eq(waiting, 1);
    if (commit) {
        ck_assert_int_eq(kg_store_commit(holder, &diag), KG_OK);
    } else {
        kg_store_rollback(holder);
    }
    pthread_join(t, NULL);
    kg_store_close(&holder);
    ck_assert_msg(x.rc == KG_OK, "%s", x.diag.msg);
    /* Committed: both are duplicates (the second, whose key is unknown,
     * of a stored request_id). Rolled back: the first is stored. */
    ck_assert_int_eq(x.verdicts[0], commit ? KG_ERR_EXISTS : KG_OK);
    ck_assert_int_eq(x.verdicts[1], KG_ERR_EXISTS);
    snprintf(sql, sizeof(sql),
             "SELECT at_ms FROM usage_events WHERE request_id = '%s'", req);
    ck_assert_int_eq(sql_int(s, sql), commit ? 900 : 1000);
}

START_TEST(batch_waits_for_another_instance_on_postgresql)
{
    where_t w;
    kg_store_t *s;

    where_pg(&w, "kg_wait");
    s = where_open(&w);
    seed(s);
    wait_for_holder(&w, s, "held-commit", true);
    wait_for_holder(&w, s, "held-rollback", false);
    ck_assert_int_eq(sql_int(s, "SELECT count(*) FROM usage_events"), 2);
    kg_store_close(&s);
}
END_TEST

/* Full batches timed by full_batch_on_postgresql. */
#define FULL_BATCHES 20

/*
 * Full batches as the usage writer commits them on a local server: 512
 * events, their rollup row and charges, one transaction each. Measured
 * and printed (speed is a benchmark's to judge, never asserted here).
 */
START_TEST(full_batch_on_postgresql)
{
    static kg_usage_record_t ev[KG_STORE_USAGE_BATCH_MAX];
    static kg_err_t verdicts[KG_STORE_USAGE_BATCH_MAX];
    kg_usage_rollup_t row;
    kg_diag_t diag = {{0}};
    where_t w;
    kg_store_t *s;
    char req[40];
    double best = 1e9, worst = 0, inserts = 0, total = 0;

    where_pg(&w, "kg_batch");
    s = where_open(&w);
    seed(s);
    for (int round = 0; round < FULL_BATCHES; round++) {
        double t0, t1;

        for (int i = 0; i < KG_STORE_USAGE_BATCH_MAX; i++) {
            snprintf(req, sizeof(req), "batch-%d-%d", round, i);
            event(&ev[i], req, i % 2 ? "keyA1" : "keyB1", 1000 + i, "gpt", 200);
        }
        rollup(&row, "keyA1", 0, "gpt", "openai", KG_STORE_USAGE_BATCH_MAX);
        t0 = now_ms();
        ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
        t1 = now_ms();
        ck_assert_int_eq(kg_store_usage_events_insert(
                             s, ev, KG_STORE_USAGE_BATCH_MAX, verdicts, &diag),
                         KG_OK);
        inserts += now_ms() - t1;
        ck_assert_int_eq(kg_store_usage_rollup_add(s, &row, &diag), KG_OK);
        ck_assert_int_eq(
            kg_store_usage_charge_key(s, "keyA1", 100, 1000, 86400, &diag),
            KG_OK);
        ck_assert_int_eq(kg_store_usage_charge_credits(s, "wsA", 100, &diag),
                         KG_OK);
        ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
        t0 = now_ms() - t0;
        total += t0;
        best = t0 < best ? t0 : best;
        worst = t0 > worst ? t0 : worst;
        for (int i = 0; i < KG_STORE_USAGE_BATCH_MAX; i++) {
            ck_assert_int_eq(verdicts[i], KG_OK);
        }
    }
    ck_assert_int_eq(sql_int(s, "SELECT count(*) FROM usage_events"),
                     FULL_BATCHES * KG_STORE_USAGE_BATCH_MAX);
    printf("pg_usage: %d batches of %d events: inserts %.1f ms in all "
           "(%.1f us an event), commits %.1f ms in all (best %.1f ms, worst "
           "%.1f ms)\n",
           FULL_BATCHES, KG_STORE_USAGE_BATCH_MAX, inserts,
           1000.0 * inserts / (FULL_BATCHES * KG_STORE_USAGE_BATCH_MAX), total,
           best, worst);
    kg_store_close(&s);
}
END_TEST

static Suite *pg_usage_suite(void)
{
    Suite *s = suite_create("pg_usage");
    TCase *tc = tcase_create("pg");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, events_on_postgresql);
    tcase_add_test(tc, events_on_sqlite);
    tcase_add_test(tc, batch_on_postgresql);
    tcase_add_test(tc, batch_on_sqlite);
    tcase_add_test(tc, rollup_on_postgresql);
    tcase_add_test(tc, rollup_on_sqlite);
    tcase_add_test(tc, rollup_many_on_postgresql);
    tcase_add_test(tc, rollup_many_on_sqlite);
    tcase_add_test(tc, pages_on_postgresql);
    tcase_add_test(tc, pages_on_sqlite);
    tcase_add_test(tc, prune_on_postgresql);
    tcase_add_test(tc, prune_on_sqlite);
    tcase_add_test(tc, charges_on_postgresql);
    tcase_add_test(tc, charges_on_sqlite);
    tcase_add_test(tc, audit_on_postgresql);
    tcase_add_test(tc, audit_on_sqlite);
    tcase_add_test(tc, maint_on_postgresql);
    tcase_add_test(tc, maint_on_sqlite);
    tcase_add_test(tc, races_on_postgresql);
    tcase_add_test(tc, races_on_sqlite);
    tcase_add_test(tc, batch_waits_for_another_instance_on_postgresql);
    tcase_add_test(tc, full_batch_on_postgresql);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_usage_suite());
}
