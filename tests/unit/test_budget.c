/* Unit tests of budgets: reservations, periods, sync, credits, worst case. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "keygate/budget.h"
#include "unit_util.h"

/* Threads of the concurrent reservation test and the holds they cover. */
#define UT_THREADS    50
#define UT_COVERED    5
#define UT_WORST      1234
#define UT_HOLDS      100
#define UT_LOOP_ITERS 2000

static kg_budget_t *ut_new(void)
{
    kg_budget_t *b = NULL;

    ck_assert_int_eq(kg_budget_new(0, &b), KG_OK);
    ck_assert_ptr_nonnull(b);
    return b;
}

/* Sync key id with a lifetime limit and no period. */
static void ut_key(kg_budget_t *b, const char *id, int64_t limit, int64_t usage)
{
    kg_budget_key_state_t st = {
        .id = id,
        .usage_limit = limit,
        .usage = usage,
        .period = KG_PERIOD_NONE,
        .period_limit = KG_NONE,
        .period_usage = 0,
        .period_started_at = KG_NONE,
    };

    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
}

static kg_budget_key_view_t ut_view(kg_budget_t *b, const char *id, int64_t now)
{
    kg_budget_key_view_t v;

    ck_assert_int_eq(kg_budget_key_snapshot(b, id, now, &v), KG_OK);
    return v;
}

START_TEST(test_limit_reached_exactly)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h1 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h2 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h3 = KG_BUDGET_HOLD_INIT;
    kg_budget_key_view_t v;

    ut_key(b, "k1", 100, 0);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 60, 1000, &h1), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 40, 1000, &h2), KG_OK);
    ck_assert(h1.live && h2.live);
    ck_assert_str_eq(h1.id, "k1");
    ck_assert_int_eq(h1.amount, 60);
    /* Exactly at the limit with the holds: one more micro-USD is over. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 1, 1000, &h3),
                     KG_ERR_USAGE_LIMIT);
    ck_assert(!h3.live);
    /* An amount of 0 still fits while usage < limit. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 0, 1000, &h3), KG_OK);
    kg_budget_settle(b, &h3, 0, 1000);
    v = ut_view(b, "k1", 1000);
    ck_assert_int_eq(v.reserved, 100);
    ck_assert_int_eq(v.remaining, 0);

    kg_budget_settle(b, &h1, 60, 1001);
    kg_budget_settle(b, &h2, 40, 1001);
    v = ut_view(b, "k1", 1001);
    ck_assert_int_eq(v.usage, 100);
    ck_assert_int_eq(v.reserved, 0);
    ck_assert_int_eq(v.remaining, 0);
    ck_assert_int_eq(v.usage_limit, 100);
    ck_assert_int_eq(v.period, KG_PERIOD_NONE);
    ck_assert_int_eq(v.period_limit, KG_NONE);
    ck_assert_int_eq(v.period_reset, KG_NONE);
    /* Reached: refused even for an amount of 0. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 0, 1002, &h3),
                     KG_ERR_USAGE_LIMIT);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_USAGE_LIMIT), 401);
    kg_budget_free(&b);
    ck_assert_ptr_null(b);
}
END_TEST

START_TEST(test_reservation_blocks_overspend)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h1 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h2 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h3 = KG_BUDGET_HOLD_INIT;
    kg_budget_key_view_t v;

    ut_key(b, "k1", 100, 0);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 70, 5, &h1), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 40, 5, &h2),
                     KG_ERR_USAGE_LIMIT);
    /* The real cost is below the hold: the rest is released. */
    kg_budget_settle(b, &h1, 50, 6);
    ck_assert(!h1.live);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 40, 7, &h2), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 11, 7, &h3),
                     KG_ERR_USAGE_LIMIT);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 10, 7, &h3), KG_OK);
    v = ut_view(b, "k1", 7);
    ck_assert_int_eq(v.usage, 50);
    ck_assert_int_eq(v.reserved, 50);
    ck_assert_int_eq(v.remaining, 0);
    kg_budget_settle(b, &h2, 40, 8);
    kg_budget_settle(b, &h3, 10, 8);
    v = ut_view(b, "k1", 8);
    ck_assert_int_eq(v.usage, 100);
    ck_assert_int_eq(v.reserved, 0);
    /* A key without limits takes anything. */
    ut_key(b, "free", KG_NONE, 0);
    ck_assert_int_eq(
        kg_budget_reserve_key(b, "free", KG_BUDGET_AMOUNT_MAX, 8, &h1), KG_OK);
    ck_assert_int_eq(
        kg_budget_reserve_key(b, "free", KG_BUDGET_AMOUNT_MAX, 8, &h2), KG_OK);
    v = ut_view(b, "free", 8);
    ck_assert_int_eq(v.remaining, KG_NONE);
    ck_assert_int_eq(v.reserved, KG_BUDGET_AMOUNT_MAX); /* saturated */
    kg_budget_settle(b, &h1, 0, 8);
    kg_budget_settle(b, &h2, 0, 8);
    ck_assert_int_eq(ut_view(b, "free", 8).reserved, 0);
    kg_budget_free(&b);
}
END_TEST

START_TEST(test_errors)
{
    kg_budget_t *b = NULL;
    kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
    kg_budget_key_view_t v;
    kg_budget_credits_view_t cv;
    char long_id[KG_BUDGET_ID_MAX + 2];
    kg_budget_key_state_t st = {.id = long_id, .usage_limit = KG_NONE};

    ck_assert_int_eq(kg_budget_new(2, &b), KG_OK);
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_ERR_INVAL);
    st.id = "";
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_ERR_INVAL);
    ck_assert_int_eq(kg_budget_sync_credits(b, long_id, 5), KG_ERR_INVAL);
    ck_assert_int_eq(kg_budget_reserve_key(b, "nope", 1, 0, &h),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "nope", 1, &h),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_budget_key_snapshot(b, "nope", 0, &v),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "nope", &cv),
                     KG_ERR_NOT_FOUND);
    ut_key(b, "k1", 10, 0);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", -1, 0, &h), KG_ERR_INVAL);
    ck_assert_ptr_null(h.acct);
    /* Key and workspace ids live apart: the same id is two accounts. */
    ck_assert_int_eq(kg_budget_sync_credits(b, "k1", 5), KG_OK);
    ck_assert_int_eq(kg_budget_count(b), 2);
    /* The bound: a third account is refused, existing ones still sync. */
    ck_assert_int_eq(kg_budget_sync_credits(b, "w2", 5), KG_ERR_NOMEM);
    ut_key(b, "k1", 20, 0);
    ck_assert_int_eq(kg_budget_count(b), 2);
    ck_assert_int_eq(ut_view(b, "k1", 0).usage_limit, 20);
    /* Settling a zeroed hold and a refused one does nothing. */
    kg_budget_settle(b, &h, 5, 0);
    ck_assert_int_eq(ut_view(b, "k1", 0).usage, 0);
    kg_budget_free(&b);
    kg_budget_free(&b);
    kg_budget_free(NULL);
}
END_TEST

START_TEST(test_settle_idempotent)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t c = KG_BUDGET_HOLD_INIT;
    kg_budget_credits_view_t cv;
    kg_budget_key_view_t v;

    ut_key(b, "k1", 1000, 0);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 1000), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 300, 0, &h), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", 300, &c), KG_OK);
    ck_assert(c.credits && !h.credits);
    for (int i = 0; i < 3; i++) {
        kg_budget_settle(b, &h, 120, 1);
        kg_budget_settle(b, &c, 120, 1);
    }
    v = ut_view(b, "k1", 1);
    ck_assert_int_eq(v.usage, 120);
    ck_assert_int_eq(v.reserved, 0);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, 880);
    ck_assert_int_eq(cv.reserved, 0);
    ck_assert_int_eq(cv.available, 880);
    /* A negative cost counts as 0. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 10, 2, &h), KG_OK);
    kg_budget_settle(b, &h, -50, 2);
    ck_assert_int_eq(ut_view(b, "k1", 2).usage, 120);
    kg_budget_free(&b);
}
END_TEST

typedef struct ut_race {
    kg_budget_t *b;
    kg_budget_hold_t *hold;
    pthread_barrier_t *barrier;
} ut_race_t;

static void *ut_settle_once(void *arg)
{
    ut_race_t *r = arg;

    pthread_barrier_wait(r->barrier);
    kg_budget_settle(r->b, r->hold, 77, 10);
    return NULL;
}

/* Two threads settle one hold at once (abort and completion): once. */
START_TEST(test_settle_race)
{
    kg_budget_t *b = ut_new();
    pthread_barrier_t barrier;
    pthread_t th[2];

    ut_key(b, "k1", KG_NONE, 0);
    for (int round = 0; round < 200; round++) {
        kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
        ut_race_t r = {b, &h, &barrier};

        ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 100, 10, &h), KG_OK);
        pthread_barrier_init(&barrier, NULL, 2);
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(pthread_create(&th[i], NULL, ut_settle_once, &r),
                             0);
        }
        for (int i = 0; i < 2; i++) {
            pthread_join(th[i], NULL);
        }
        pthread_barrier_destroy(&barrier);
    }
    ck_assert_int_eq(ut_view(b, "k1", 10).usage, 200 * 77);
    ck_assert_int_eq(ut_view(b, "k1", 10).reserved, 0);
    kg_budget_free(&b);
}
END_TEST

typedef struct ut_worker {
    kg_budget_t *b;
    pthread_barrier_t *barrier;
    kg_budget_hold_t hold;
    kg_err_t rc;
} ut_worker_t;

static void *ut_reserve_once(void *arg)
{
    ut_worker_t *w = arg;

    pthread_barrier_wait(w->barrier);
    w->rc = kg_budget_reserve_key(w->b, "k1", UT_WORST, 100, &w->hold);
    return NULL;
}

/* 50 threads against a budget of exactly 5 worst cases: 5 holds. */
START_TEST(test_concurrent_exact)
{
    static ut_worker_t w[UT_THREADS];
    kg_budget_t *b = ut_new();
    pthread_barrier_t barrier;
    pthread_t th[UT_THREADS];
    int granted = 0;
    int refused = 0;
    kg_budget_key_view_t v;

    ut_key(b, "k1", UT_COVERED * UT_WORST, 0);
    pthread_barrier_init(&barrier, NULL, UT_THREADS);
    for (int i = 0; i < UT_THREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].b = b;
        w[i].barrier = &barrier;
        ck_assert_int_eq(pthread_create(&th[i], NULL, ut_reserve_once, &w[i]),
                         0);
    }
    for (int i = 0; i < UT_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < UT_THREADS; i++) {
        granted += w[i].rc == KG_OK;
        refused += w[i].rc == KG_ERR_USAGE_LIMIT;
    }
    ck_assert_int_eq(granted, UT_COVERED);
    ck_assert_int_eq(refused, UT_THREADS - UT_COVERED);
    v = ut_view(b, "k1", 100);
    ck_assert_int_eq(v.reserved, UT_COVERED * UT_WORST);
    ck_assert_int_eq(v.remaining, 0);
    /* The answers cost at most what was reserved. */
    for (int i = 0; i < UT_THREADS; i++) {
        kg_budget_settle(b, &w[i].hold, UT_WORST - i, 101);
    }
    v = ut_view(b, "k1", 101);
    ck_assert_int_eq(v.reserved, 0);
    ck_assert_int_le(v.usage, UT_COVERED * UT_WORST);
    ck_assert_int_gt(v.usage, 0);
    kg_budget_free(&b);
}
END_TEST

typedef struct ut_looper {
    kg_budget_t *b;
    int64_t granted_cost;
} ut_looper_t;

static void *ut_reserve_loop(void *arg)
{
    ut_looper_t *l = arg;

    for (int i = 0; i < UT_LOOP_ITERS; i++) {
        kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
        kg_budget_hold_t c = KG_BUDGET_HOLD_INIT;
        kg_budget_key_view_t v;

        if (kg_budget_reserve_key(l->b, "k1", 10, 50, &h) == KG_OK &&
            kg_budget_reserve_credits(l->b, "w1", 10, &c) == KG_OK) {
            l->granted_cost += 7;
        }
        /* Settled with a cost only when both were granted. */
        kg_budget_settle(l->b, &h, c.live ? 7 : 0, 50);
        kg_budget_settle(l->b, &c, 7, 50);
        ck_assert_int_eq(kg_budget_key_snapshot(l->b, "k1", 50, &v), KG_OK);
        ck_assert_int_le(v.usage + v.reserved, 20000);
    }
    return NULL;
}

/* Reserve and settle from many threads while syncs raise the limits. */
START_TEST(test_concurrent_loops)
{
    static ut_looper_t l[8];
    kg_budget_t *b = ut_new();
    pthread_t th[8];
    int64_t total = 0;
    kg_budget_key_view_t v;
    kg_budget_credits_view_t cv;

    ut_key(b, "k1", 20000, 0);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 50000), KG_OK);
    for (int i = 0; i < 8; i++) {
        l[i].b = b;
        l[i].granted_cost = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, ut_reserve_loop, &l[i]),
                         0);
    }
    for (int i = 0; i < 100; i++) {
        ut_key(b, "k1", 20000, 0); /* same limits, lower usage: no-op */
        ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 50000), KG_OK);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += l[i].granted_cost;
    }
    v = ut_view(b, "k1", 50);
    ck_assert_int_eq(v.reserved, 0);
    ck_assert_int_eq(v.usage, total);
    ck_assert_int_le(v.usage, 20000);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.reserved, 0);
    ck_assert_int_eq(cv.balance, 50000 - total);
    kg_budget_free(&b);
}
END_TEST

/*
 * A period boundary: spend the whole period limit at `used`, then a
 * reservation at `refused` (the period's last second) is refused and one
 * at `accepted` (the next period's first seconds) is granted.
 */
typedef struct ut_boundary {
    const char *what;
    kg_period_t period;
    int used[6];
    int refused[6];
    int accepted[6];
    int next_reset[6]; /* period_reset seen at `accepted` */
} ut_boundary_t;

static const ut_boundary_t ut_boundaries[] = {
    {"hour",
     KG_PERIOD_HOUR,
     {2026, 3, 10, 10, 5, 0},
     {2026, 3, 10, 10, 59, 59},
     {2026, 3, 10, 11, 0, 1},
     {2026, 3, 10, 12, 0, 0}},
    {"day",
     KG_PERIOD_DAY,
     {2026, 3, 10, 0, 0, 0},
     {2026, 3, 10, 23, 59, 59},
     {2026, 3, 11, 0, 0, 1},
     {2026, 3, 12, 0, 0, 0}},
    {"week: Sunday night to Monday",
     KG_PERIOD_WEEK,
     {2026, 3, 9, 0, 0, 0},
     {2026, 3, 15, 23, 59, 59},
     {2026, 3, 16, 0, 0, 1},
     {2026, 3, 23, 0, 0, 0}},
    {"month: first of the month",
     KG_PERIOD_MONTH,
     {2026, 1, 1, 0, 0, 0},
     {2026, 1, 31, 23, 59, 59},
     {2026, 2, 1, 0, 0, 1},
     {2026, 3, 1, 0, 0, 0}},
    {"month: Dec to Jan",
     KG_PERIOD_MONTH,
     {2026, 12, 15, 8, 0, 0},
     {2026, 12, 31, 23, 59, 59},
     {2027, 1, 1, 0, 0, 1},
     {2027, 2, 1, 0, 0, 0}},
    {"month: leap February",
     KG_PERIOD_MONTH,
     {2028, 2, 29, 12, 0, 0},
     {2028, 2, 29, 23, 59, 59},
     {2028, 3, 1, 0, 0, 1},
     {2028, 4, 1, 0, 0, 0}},
};

static int64_t ut_at(const int *t)
{
    return ut_utc(t[0], t[1], t[2], t[3], t[4], t[5]);
}

START_TEST(test_period_boundaries)
{
    const ut_boundary_t *row = &ut_boundaries[_i];
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
    int64_t used = ut_at(row->used);
    int64_t refused = ut_at(row->refused);
    int64_t accepted = ut_at(row->accepted);
    kg_budget_key_state_t st = {
        .id = "k1",
        .usage_limit = 1000000,
        .usage = 0,
        .period = row->period,
        .period_limit = 500,
        .period_usage = 0,
        .period_started_at = kg_period_start(row->period, used),
    };
    kg_budget_key_view_t v;

    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 500, used, &h), KG_OK);
    ck_assert_int_eq(h.period_start, kg_period_start(row->period, used));
    kg_budget_settle(b, &h, 500, used + 1);
    ck_assert_int_eq(h.charged_period_start,
                     kg_period_start(row->period, used));
    ck_assert_msg(kg_budget_reserve_key(b, "k1", 0, refused, &h) ==
                      KG_ERR_PERIOD_LIMIT,
                  "%s: not refused at the period's end", row->what);
    v = ut_view(b, "k1", refused);
    ck_assert_int_eq(v.period_usage, 500);
    ck_assert_int_eq(v.period_remaining, 0);
    ck_assert_int_eq(v.period_reset, accepted - 1);
    /* The snapshot rolls for display only. */
    v = ut_view(b, "k1", accepted);
    ck_assert_int_eq(v.period_usage, 0);
    ck_assert_int_eq(v.period_start, accepted - 1);
    ck_assert_msg(kg_budget_reserve_key(b, "k1", 500, accepted, &h) == KG_OK,
                  "%s: not accepted in the next period", row->what);
    ck_assert_int_eq(h.period_start, accepted - 1);
    v = ut_view(b, "k1", accepted);
    ck_assert_int_eq(v.period_start, accepted - 1);
    ck_assert_int_eq(v.period_reset, ut_at(row->next_reset));
    ck_assert_int_eq(v.period_reserved, 500);
    ck_assert_int_eq(v.period_usage, 0);
    ck_assert_int_eq(v.usage, 500); /* lifetime usage does not roll */
    kg_budget_settle(b, &h, 200, accepted);
    v = ut_view(b, "k1", accepted);
    ck_assert_int_eq(v.period_usage, 200);
    ck_assert_int_eq(v.period_remaining, 300);
    ck_assert_int_eq(v.usage, 700);
    ck_assert_int_eq(v.remaining, 1000000 - 700);
    kg_budget_free(&b);
}
END_TEST

/* A request reserved before midnight and settled after it. */
START_TEST(test_period_straddle)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h2 = KG_BUDGET_HOLD_INIT;
    int64_t before = ut_utc(2026, 5, 31, 23, 59, 59);
    int64_t after = ut_utc(2026, 6, 1, 0, 0, 1);
    kg_budget_key_state_t st = {
        .id = "k1",
        .usage_limit = KG_NONE,
        .period = KG_PERIOD_DAY,
        .period_limit = 100,
        .period_usage = 90,
        .period_started_at = ut_utc(2026, 5, 31, 0, 0, 0),
    };
    kg_budget_key_view_t v;

    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 10, before, &h), KG_OK);
    /* After midnight the hold in flight counts against the new day. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 91, after, &h2),
                     KG_ERR_PERIOD_LIMIT);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 90, after, &h2), KG_OK);
    kg_budget_settle(b, &h, 10, after + 1);
    ck_assert_int_eq(h.period_start, ut_utc(2026, 5, 31, 0, 0, 0));
    ck_assert_int_eq(h.charged_period_start, ut_utc(2026, 6, 1, 0, 0, 0));
    kg_budget_settle(b, &h2, 90, after + 2);
    v = ut_view(b, "k1", after + 2);
    ck_assert_int_eq(v.period_usage, 100);
    ck_assert_int_eq(v.usage, 100);
    ck_assert_int_eq(v.reserved, 0);
    ck_assert_int_eq(v.remaining, KG_NONE);
    /* A clock that goes back never restarts a period. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 0, before, &h),
                     KG_ERR_PERIOD_LIMIT);
    ck_assert_int_eq(ut_view(b, "k1", before).period_usage, 100);
    kg_budget_free(&b);
}
END_TEST

/* A period without a known start begins at the first use. */
START_TEST(test_period_unknown_start)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
    int64_t now = ut_utc(2026, 7, 4, 13, 30, 0);
    kg_budget_key_state_t st = {
        .id = "k1",
        .usage_limit = KG_NONE,
        .period = KG_PERIOD_HOUR,
        .period_limit = 50,
        .period_usage = 20,
        .period_started_at = KG_NONE,
    };
    kg_budget_key_view_t v;

    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 31, now, &h),
                     KG_ERR_PERIOD_LIMIT);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 30, now, &h), KG_OK);
    v = ut_view(b, "k1", now);
    ck_assert_int_eq(v.period_start, ut_utc(2026, 7, 4, 13, 0, 0));
    ck_assert_int_eq(v.period_reset, ut_utc(2026, 7, 4, 14, 0, 0));
    kg_budget_settle(b, &h, 30, now);
    /* An unaligned stored start is aligned. */
    st.id = "k2";
    st.period_started_at = ut_utc(2026, 7, 4, 13, 17, 5);
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    v = ut_view(b, "k2", now);
    ck_assert_int_eq(v.period_start, ut_utc(2026, 7, 4, 13, 0, 0));
    ck_assert_int_eq(v.period_usage, 20);
    kg_budget_free(&b);
}
END_TEST

START_TEST(test_sync_semantics)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h2 = KG_BUDGET_HOLD_INIT;
    int64_t day = ut_utc(2026, 3, 10, 0, 0, 0);
    int64_t now = day + 3600;
    kg_budget_key_state_t st = {
        .id = "k1",
        .usage_limit = 1000,
        .usage = 100,
        .period = KG_PERIOD_DAY,
        .period_limit = 500,
        .period_usage = 50,
        .period_started_at = day,
    };
    kg_budget_key_view_t v;

    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 200, now, &h), KG_OK);
    kg_budget_settle(b, &h, 200, now);
    v = ut_view(b, "k1", now);
    ck_assert_int_eq(v.usage, 300);
    ck_assert_int_eq(v.period_usage, 250);

    /* The store lags (the writer has not persisted): memory wins. */
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    v = ut_view(b, "k1", now);
    ck_assert_int_eq(v.usage, 300);
    ck_assert_int_eq(v.period_usage, 250);

    /* A lower limit applies at once, holds in flight are kept. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 100, now, &h), KG_OK);
    st.usage_limit = 400;
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 0, now, &h2), KG_OK);
    kg_budget_settle(b, &h2, 0, now);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 1, now, &h2),
                     KG_ERR_USAGE_LIMIT);
    v = ut_view(b, "k1", now);
    ck_assert_int_eq(v.usage_limit, 400);
    ck_assert_int_eq(v.reserved, 100);
    ck_assert_int_eq(v.remaining, 0);
    kg_budget_settle(b, &h, 100, now);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 0, now, &h2),
                     KG_ERR_USAGE_LIMIT);
    /* Raised: at once too. */
    st.usage_limit = KG_NONE;
    st.period_limit = 400;
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 51, now, &h2),
                     KG_ERR_PERIOD_LIMIT);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 50, now, &h2), KG_OK);
    kg_budget_settle(b, &h2, 0, now);

    /* An operator raised usage in the store: the higher value wins. */
    st.usage = 5000;
    st.period_usage = 380;
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    v = ut_view(b, "k1", now);
    ck_assert_int_eq(v.usage, 5000);
    ck_assert_int_eq(v.period_usage, 380);
    /* A store value for an older period does not count. */
    st.period_usage = 499;
    st.period_started_at = day - 86400;
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    ck_assert_int_eq(ut_view(b, "k1", now).period_usage, 380);
    /* One for a later period replaces memory's. */
    st.period_usage = 7;
    st.period_started_at = day + 86400;
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    v = ut_view(b, "k1", day + 86400 + 5);
    ck_assert_int_eq(v.period_usage, 7);
    ck_assert_int_eq(v.period_start, day + 86400);

    /* A new period kind takes the store's period as it is. */
    st.period = KG_PERIOD_MONTH;
    st.period_usage = 0;
    st.period_started_at = ut_utc(2026, 3, 1, 0, 0, 0);
    st.period_limit = 10;
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    v = ut_view(b, "k1", now);
    ck_assert_int_eq(v.period, KG_PERIOD_MONTH);
    ck_assert_int_eq(v.period_usage, 0);
    ck_assert_int_eq(v.period_start, ut_utc(2026, 3, 1, 0, 0, 0));
    ck_assert_int_eq(v.period_reset, ut_utc(2026, 4, 1, 0, 0, 0));
    ck_assert_int_eq(v.period_limit, 10);
    /* And no period at all. */
    st.period = KG_PERIOD_NONE;
    st.period_limit = KG_NONE;
    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    v = ut_view(b, "k1", now);
    ck_assert_int_eq(v.period, KG_PERIOD_NONE);
    ck_assert_int_eq(v.period_usage, KG_NONE);
    ck_assert_int_eq(v.period_remaining, KG_NONE);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 1000, now, &h), KG_OK);
    ck_assert_int_eq(h.period_start, KG_NONE);
    kg_budget_settle(b, &h, 1, now);
    ck_assert_int_eq(h.charged_period_start, KG_NONE);
    kg_budget_free(&b);
}
END_TEST

START_TEST(test_credits)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h1 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h2 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h3 = KG_BUDGET_HOLD_INIT;
    kg_budget_credits_view_t cv;

    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 1000), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", 600, &h1), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", 500, &h2),
                     KG_ERR_NO_CREDITS);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_NO_CREDITS), 402);
    /* The operator adds 500 while h1 is in flight. */
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 1500), KG_OK);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, 1500);
    ck_assert_int_eq(cv.reserved, 600);
    ck_assert_int_eq(cv.available, 900);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", 500, &h2), KG_OK);
    kg_budget_settle(b, &h1, 600, 0);
    kg_budget_settle(b, &h2, 450, 0);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, 450);
    ck_assert_int_eq(cv.reserved, 0);
    /* The store has not seen the charges yet: a sync changes nothing. */
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 1500), KG_OK);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, 450);
    /* The writer commits 1050 of charges and says so. */
    kg_budget_credits_persisted(b, "w1", 1050);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 450), KG_OK);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, 450);
    /* A sync read between the commit and the call: double-counted until
     * the next sync. */
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", 50, &h3), KG_OK);
    kg_budget_settle(b, &h3, 50, 0);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 400), KG_OK);
    kg_budget_credits_persisted(b, "w1", 50);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, 350);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 400), KG_OK);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, 400);
    kg_budget_credits_persisted(b, "unknown", 5); /* ignored */

    /* A request costing more than its hold drives the balance below 0. */
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", 400, &h1), KG_OK);
    kg_budget_settle(b, &h1, 430, 0);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, -30);
    ck_assert_int_eq(cv.available, 0);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", 0, &h1),
                     KG_ERR_NO_CREDITS);
    /* Zero balance: refused even for 0. */
    ck_assert_int_eq(kg_budget_sync_credits(b, "w0", 0), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w0", 0, &h1),
                     KG_ERR_NO_CREDITS);
    ck_assert_ptr_null(h1.acct);
    /* An operator top-up brings it back. */
    ck_assert_int_eq(kg_budget_sync_credits(b, "w0", 10), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w0", 10, &h1), KG_OK);
    kg_budget_settle(b, &h1, 10, 0);
    kg_budget_free(&b);
}
END_TEST

/* Aborted requests settle with 0: every reservation comes back. */
START_TEST(test_release_all)
{
    static kg_budget_hold_t holds[UT_HOLDS];
    static kg_budget_hold_t credit_holds[UT_HOLDS];
    kg_budget_hold_t extra = KG_BUDGET_HOLD_INIT;
    kg_budget_t *b = ut_new();
    kg_budget_key_view_t v;
    kg_budget_credits_view_t cv;

    ut_key(b, "k1", UT_HOLDS * 10, 0);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", UT_HOLDS * 10), KG_OK);
    for (int i = 0; i < UT_HOLDS; i++) {
        ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 10, 0, &holds[i]),
                         KG_OK);
        ck_assert_int_eq(
            kg_budget_reserve_credits(b, "w1", 10, &credit_holds[i]), KG_OK);
    }
    ck_assert_int_eq(ut_view(b, "k1", 0).reserved, UT_HOLDS * 10);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 1, 0, &extra),
                     KG_ERR_USAGE_LIMIT);
    for (int i = 0; i < UT_HOLDS; i++) {
        kg_budget_settle(b, &holds[i], 0, 1);
        kg_budget_settle(b, &credit_holds[i], 0, 1);
    }
    v = ut_view(b, "k1", 1);
    ck_assert_int_eq(v.reserved, 0);
    ck_assert_int_eq(v.remaining, UT_HOLDS * 10);
    ck_assert_int_eq(v.usage, 0);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.reserved, 0);
    ck_assert_int_eq(cv.balance, UT_HOLDS * 10);
    kg_budget_free(&b);
}
END_TEST

/* The same without the overwrite: exactly back to 0. */
START_TEST(test_release_all_exact)
{
    static kg_budget_hold_t holds[UT_HOLDS];
    kg_budget_t *b = ut_new();
    kg_budget_key_view_t v;

    ut_key(b, "k1", KG_NONE, 42);
    for (int i = 0; i < UT_HOLDS; i++) {
        ck_assert_int_eq(kg_budget_reserve_key(b, "k1", i + 1, 0, &holds[i]),
                         KG_OK);
    }
    ck_assert_int_eq(ut_view(b, "k1", 0).reserved,
                     UT_HOLDS * (UT_HOLDS + 1) / 2);
    for (int i = UT_HOLDS - 1; i >= 0; i--) {
        kg_budget_settle(b, &holds[i], 0, 1);
    }
    v = ut_view(b, "k1", 1);
    ck_assert_int_eq(v.reserved, 0);
    ck_assert_int_eq(v.usage, 42);
    kg_budget_free(&b);
}
END_TEST

typedef struct ut_seen {
    int keys;
    int workspaces;
    int64_t key_reserved;
    int64_t ws_reserved;
    int64_t usage;
    int64_t balance;
} ut_seen_t;

static void ut_collect(void *ud, const kg_budget_entry_t *e)
{
    ut_seen_t *s = ud;

    if (e->credits) {
        s->workspaces++;
        s->ws_reserved += e->reserved;
        s->balance += e->balance;
    } else {
        s->keys++;
        s->key_reserved += e->reserved;
        s->usage += e->usage;
    }
    ck_assert(e->id[0] != '\0');
}

START_TEST(test_foreach_reserved)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h1 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h2 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h3 = KG_BUDGET_HOLD_INIT;
    ut_seen_t seen = {0};

    ut_key(b, "k1", KG_NONE, 5);
    ut_key(b, "k2", KG_NONE, 7);
    ut_key(b, "k3", KG_NONE, 0);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", 100), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", 11, 0, &h1), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k2", 13, 0, &h2), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", 17, &h3), KG_OK);
    ck_assert_uint_eq(kg_budget_foreach_reserved(b, ut_collect, &seen), 4);
    ck_assert_int_eq(seen.keys, 3);
    ck_assert_int_eq(seen.workspaces, 1);
    ck_assert_int_eq(seen.key_reserved, 24);
    ck_assert_int_eq(seen.ws_reserved, 17);
    ck_assert_int_eq(seen.usage, 12);
    ck_assert_int_eq(seen.balance, 100);
    kg_budget_settle(b, &h1, 1, 0);
    kg_budget_settle(b, &h2, 1, 0);
    kg_budget_settle(b, &h3, 1, 0);
    kg_budget_free(&b);
}
END_TEST

typedef struct ut_worst_row {
    int64_t in;
    int64_t out;
    int64_t in_price;
    int64_t out_price;
    int64_t want;
} ut_worst_row_t;

static const ut_worst_row_t ut_worst_rows[] = {
    {0, 0, 2500000, 10000000, 0},
    {1, 0, 1, 0, 1},           /* 1e-6 micro-USD rounds up to 1 */
    {999999, 1, 1, 1, 1},      /* exactly 1 */
    {1000000, 0, 1, 0, 1},     /* exactly 1 */
    {1000001, 0, 1, 0, 2},     /* just above */
    {3, 7, 333333, 142857, 2}, /* 1.999998 */
    {1000, 4096, 2500000, 10000000, 43460},
    {1234567, 7654321, 2500001, 10000003, 79629652},
    {-5, -7, 1000000, 1000000, 0}, /* negatives count as 0 */
    {100, 100, -3, -4, 0},
    {KG_BUDGET_TOKENS_MAX, 0, 1000000, 0, KG_BUDGET_TOKENS_MAX},
    {KG_BUDGET_TOKENS_MAX, KG_BUDGET_TOKENS_MAX, KG_BUDGET_PRICE_MAX,
     KG_BUDGET_PRICE_MAX, KG_BUDGET_AMOUNT_MAX},
    {INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, KG_BUDGET_AMOUNT_MAX},
    {INT64_MAX, 0, 1, 0, KG_BUDGET_TOKENS_MAX / 1000000},
};

START_TEST(test_worst_case)
{
    const ut_worst_row_t *r = &ut_worst_rows[_i];
    int64_t got =
        kg_budget_worst_case(r->in, r->out, r->in_price, r->out_price);

    ck_assert_msg(got == r->want, "row %d: %lld, want %lld", _i, (long long)got,
                  (long long)r->want);
}
END_TEST

/* Huge persisted numbers are clamped: sums cannot overflow. */
START_TEST(test_huge_values)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h = KG_BUDGET_HOLD_INIT;
    kg_budget_credits_view_t cv;
    kg_budget_key_state_t st = {
        .id = "k1",
        .usage_limit = INT64_MAX,
        .usage = INT64_MAX - 1,
        .period = KG_PERIOD_DAY,
        .period_limit = INT64_MAX,
        .period_usage = INT64_MAX,
        .period_started_at = 0,
    };

    ck_assert_int_eq(kg_budget_sync_key(b, &st), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_key(b, "k1", INT64_MAX, 10, &h),
                     KG_ERR_USAGE_LIMIT);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", INT64_MAX), KG_OK);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", INT64_MIN), KG_OK);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, -KG_BUDGET_AMOUNT_MAX);
    ck_assert_int_eq(kg_budget_sync_credits(b, "w1", INT64_MAX), KG_OK);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, KG_BUDGET_AMOUNT_MAX);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "w1", INT64_MAX, &h), KG_OK);
    kg_budget_settle(b, &h, INT64_MAX, 0);
    ck_assert_int_eq(kg_budget_credits_snapshot(b, "w1", &cv), KG_OK);
    ck_assert_int_eq(cv.balance, 0);
    kg_budget_free(&b);
}
END_TEST

/* Monotonic ms, as the leases' validity counts. */
static int64_t ut_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* With leases on, a limited account spends only its lease: short or void
 * leases answer KG_ERR_STATE with the shortfall; grants, settles, idle
 * give-back and a lapse move the lease as budget.h says. */
START_TEST(test_leases)
{
    kg_budget_t *b = ut_new();
    kg_budget_hold_t h1 = KG_BUDGET_HOLD_INIT;
    kg_budget_hold_t h2 = KG_BUDGET_HOLD_INIT;
    kg_budget_lease_back_t back[4];

    ut_key(b, "lim", 1000, 0);
    ut_key(b, "free", KG_NONE, 0);
    kg_budget_leases_enable(b);
    ck_assert(kg_budget_leases_lapsed(b));
    /* An account without a limit needs no lease. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "free", 50, 1000, &h1), KG_OK);
    kg_budget_settle(b, &h1, 50, 1000);
    /* No valid lease: refused with the whole amount short. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "lim", 100, 1000, &h1),
                     KG_ERR_STATE);
    ck_assert_int_eq(kg_budget_lease_shortfall(b, false, "lim", 100), 100);
    ck_assert_int_eq(kg_budget_lease_add(b, false, "lim", 150), KG_OK);
    ck_assert_int_eq(kg_budget_lease_add(b, false, "none", 1),
                     KG_ERR_NOT_FOUND);
    /* Granted but not valid yet. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "lim", 100, 1000, &h1),
                     KG_ERR_STATE);
    kg_budget_leases_valid(b, ut_mono_ms() + 60000);
    ck_assert(!kg_budget_leases_lapsed(b));
    ck_assert_int_eq(kg_budget_reserve_key(b, "lim", 100, 1000, &h1), KG_OK);
    /* 100 held of 150: another 100 is 50 short. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "lim", 100, 1000, &h2),
                     KG_ERR_STATE);
    ck_assert_int_eq(kg_budget_lease_shortfall(b, false, "lim", 100), 50);
    /* The limit itself still refuses first. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "lim", 1000, 1000, &h2),
                     KG_ERR_USAGE_LIMIT);
    /* Settling spends the cost from the lease: 150 - 70 = 80 left. */
    kg_budget_settle(b, &h1, 70, 1000);
    ck_assert_int_eq(kg_budget_lease_held(b, false, "lim"), 80);
    /* A busy account gives nothing back; with idle 0 all unused goes. */
    ck_assert_int_eq(kg_budget_reserve_key(b, "lim", 30, 1000, &h1), KG_OK);
    ck_assert_uint_eq(kg_budget_leases_take_idle(b, 60000, back, 4), 0);
    ck_assert_uint_eq(kg_budget_leases_take_idle(b, 0, back, 4), 1);
    ck_assert_str_eq(back[0].id, "lim");
    ck_assert(!back[0].credits);
    ck_assert_int_eq(back[0].unused, 50); /* the 30 held stays */
    ck_assert_int_eq(kg_budget_lease_held(b, false, "lim"), 30);
    /* A tightened limit sets the unused lease aside for the next give
     * back, busy or not. */
    ck_assert_int_eq(kg_budget_lease_add(b, false, "lim", 100), KG_OK);
    ut_key(b, "lim", 900, 0);
    ck_assert_int_eq(kg_budget_lease_held(b, false, "lim"), 30);
    ck_assert_uint_eq(kg_budget_leases_take_idle(b, 60000, back, 4), 1);
    ck_assert_int_eq(back[0].unused, 100);
    ut_key(b, "lim", 2000, 0); /* looser: nothing set aside */
    ck_assert_uint_eq(kg_budget_leases_take_idle(b, 60000, back, 4), 0);
    /* A cost above the lease empties it, never below zero. */
    kg_budget_settle(b, &h1, 45, 1000);
    ck_assert_int_eq(kg_budget_lease_held(b, false, "lim"), 0);
    /* Credits always spend from a lease; a reset forgets every lease. */
    ck_assert_int_eq(kg_budget_sync_credits(b, "ws", 500), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "ws", 10, &h2), KG_ERR_STATE);
    ck_assert_int_eq(kg_budget_lease_add(b, true, "ws", 10), KG_OK);
    ck_assert_int_eq(kg_budget_reserve_credits(b, "ws", 10, &h2), KG_OK);
    kg_budget_leases_reset(b);
    ck_assert_int_eq(kg_budget_lease_held(b, true, "ws"), 0);
    ck_assert_int_eq(kg_budget_lease_shortfall(b, true, "ws", 5), 15);
    kg_budget_settle(b, &h2, 10, 1000);
    kg_budget_free(&b);
}
END_TEST

static Suite *budget_suite(void)
{
    Suite *s = suite_create("budget");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_limit_reached_exactly);
    tcase_add_test(tc, test_reservation_blocks_overspend);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_settle_idempotent);
    tcase_add_test(tc, test_settle_race);
    tcase_add_test(tc, test_concurrent_exact);
    tcase_add_test(tc, test_concurrent_loops);
    tcase_add_loop_test(tc, test_period_boundaries, 0,
                        (int)UT_NROWS(ut_boundaries));
    tcase_add_test(tc, test_period_straddle);
    tcase_add_test(tc, test_period_unknown_start);
    tcase_add_test(tc, test_sync_semantics);
    tcase_add_test(tc, test_credits);
    tcase_add_test(tc, test_release_all);
    tcase_add_test(tc, test_release_all_exact);
    tcase_add_test(tc, test_foreach_reserved);
    tcase_add_loop_test(tc, test_worst_case, 0, (int)UT_NROWS(ut_worst_rows));
    tcase_add_test(tc, test_huge_values);
    tcase_add_test(tc, test_leases);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(budget_suite());
}
