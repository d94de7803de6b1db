/* The rate windows instances share on a PostgreSQL store: each sees the
 * others' counts, aligned to its windows, and never its own. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/rateshare.h"
#include "keygate/store_rates.h"
#include "pg_contract.h"
#include "pg_server.h"
#include "unit_util.h"

/* A time on a window boundary, in ms. */
#define T0 INT64_C(1700000040000)
#define W  KG_RATELIMIT_WINDOW_MS
/* More keys than one statement carries (1000). */
#define MANY_KEYS 2500

static pgs_t PG;
static char URL[PGS_PATH_MAX];

static void suite_setup(void)
{
    pgs_start(&PG);
}

static void suite_teardown(void)
{
    pgs_destroy(&PG);
}

/* A fresh database for each test (its URL in URL). */
static void setup_db(void)
{
    static int n;
    char name[32];

    snprintf(name, sizeof(name), "kg_rates_%d", n++);
    pgs_create_db(&PG, name, URL);
}

/* A handle on the test's database acting for instance. */
static kg_store_t *open_as(const char *instance)
{
    kg_store_opts_t opts = {0, 5000, 0, instance};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    ck_assert_msg(kg_store_open(URL, &opts, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert(kg_store_rates_shared(s));
    return s;
}

static kg_ratelimit_share_t row(const char *id, int64_t window,
                                int64_t req_prev, int64_t req_cur,
                                int64_t tok_prev, int64_t tok_cur)
{
    kg_ratelimit_share_t r;

    memset(&r, 0, sizeof(r));
    snprintf(r.key_id, sizeof(r.key_id), "%s", id);
    r.window_start = window;
    r.req_prev = req_prev;
    r.req_cur = req_cur;
    r.tok_prev = tok_prev;
    r.tok_cur = tok_cur;
    return r;
}

static void publish(kg_store_t *s, kg_ratelimit_share_t r)
{
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_store_rates_publish(s, &r, 1, &diag) == KG_OK, "%s",
                  diag.msg);
}

/* The others' counts of id as s reads them at window. */
static kg_ratelimit_share_t others(kg_store_t *s, const char *id,
                                   int64_t window)
{
    kg_ratelimit_share_t r = row(id, -1, -1, -1, -1, -1);
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_store_rates_others(s, window, &r, 1, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_str_eq(r.key_id, id);
    ck_assert_int_eq(r.window_start, window);
    return r;
}

static void assert_counts(kg_ratelimit_share_t r, int64_t req_prev,
                          int64_t req_cur, int64_t tok_prev, int64_t tok_cur)
{
    ck_assert_int_eq(r.req_prev, req_prev);
    ck_assert_int_eq(r.req_cur, req_cur);
    ck_assert_int_eq(r.tok_prev, tok_prev);
    ck_assert_int_eq(r.tok_cur, tok_cur);
}

/* Two instances publish; each reads the other's rows, never its own; a
 * third reads the sum; a publish replaces the instance's row. */
START_TEST(each_reads_the_others)
{
    kg_store_t *a = open_as("inst-a");
    kg_store_t *b = open_as("inst-b");
    kg_store_t *c = open_as("inst-c");
    kg_ratelimit_share_t rows[3];
    kg_diag_t diag = {{0}};

    rows[0] = row("k1", T0, 1, 2, 3, 4);
    rows[1] = row("k2", T0, 5, 0, 0, 0);
    ck_assert_int_eq(kg_store_rates_publish(a, rows, 2, &diag), KG_OK);
    ck_assert_int_eq(kg_store_rates_publish(a, rows, 0, &diag), KG_OK);
    publish(b, row("k1", T0, 10, 20, 30, 40));

    rows[0] = row("k1", 0, 9, 9, 9, 9);
    rows[1] = row("k2", 0, 9, 9, 9, 9);
    rows[2] = row("k3", 0, 9, 9, 9, 9);
    ck_assert_int_eq(kg_store_rates_others(a, T0, rows, 3, &diag), KG_OK);
    assert_counts(rows[0], 10, 20, 30, 40);
    assert_counts(rows[1], 0, 0, 0, 0); /* only a's own */
    assert_counts(rows[2], 0, 0, 0, 0); /* nobody's */
    ck_assert_int_eq(rows[0].instances, 1);
    ck_assert_int_eq(rows[1].instances, 0);
    ck_assert_int_eq(rows[2].instances, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(rows[i].window_start, T0);
    }
    assert_counts(others(b, "k1", T0), 1, 2, 3, 4);
    assert_counts(others(b, "k2", T0), 5, 0, 0, 0);
    assert_counts(others(c, "k1", T0), 11, 22, 33, 44);
    ck_assert_int_eq(others(c, "k1", T0).instances, 2);

    /* Replaced, not added to. */
    publish(a, row("k1", T0, 0, 7, 0, 9));
    assert_counts(others(b, "k1", T0), 0, 7, 0, 9);
    assert_counts(others(c, "k1", T0), 10, 27, 30, 49);
    /* Three keys' rows and the two instances' marks. */
    ck_assert_int_eq(pgs_sql(a, "SELECT count(*) FROM rate_shares", 0, NULL),
                     5);
    kg_store_close(&a);
    kg_store_close(&b);
    kg_store_close(&c);
}
END_TEST

/* Publishing marks an instance live, with or without keys; an instance
 * that stopped publishing is not live after the given time. */
START_TEST(live_instances)
{
    kg_store_t *a = open_as("inst-a");
    kg_store_t *b = open_as("inst-b");
    kg_store_t *c = open_as("inst-c");
    const char *args[] = {"inst-a"};
    kg_diag_t diag = {{0}};
    int64_t n = -1;

    ck_assert_int_eq(kg_store_rates_live(c, 5, &n, &diag), KG_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(kg_store_rates_publish(a, NULL, 0, &diag), KG_OK);
    publish(b, row("k", T0, 0, 1, 0, 0));
    ck_assert_int_eq(kg_store_rates_live(c, 5, &n, &diag), KG_OK);
    ck_assert_int_eq(n, 2);
    /* The mark is no key's row. */
    assert_counts(others(c, "", T0), 0, 0, 0, 0);
    pgs_sql(a,
            "UPDATE rate_shares SET updated_at = now() - interval '10 seconds' "
            "WHERE instance = $1",
            1, args);
    ck_assert_int_eq(kg_store_rates_live(c, 5, &n, &diag), KG_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(kg_store_rates_live(c, 60, &n, &diag), KG_OK);
    ck_assert_int_eq(n, 2);
    kg_store_close(&a);
    kg_store_close(&b);
    kg_store_close(&c);
}
END_TEST

/* Rows are aligned to the reader's windows: one behind counts its current
 * window as previous, two behind nothing, one ahead all as current. */
START_TEST(windows_aligned_to_the_reader)
{
    kg_store_t *a = open_as("inst-a");
    kg_store_t *b = open_as("inst-b");
    kg_store_t *c = open_as("inst-c");

    publish(a, row("k", T0 - W, 100, 8, 1000, 80));
    assert_counts(others(b, "k", T0 - W), 100, 8, 1000, 80);
    assert_counts(others(b, "k", T0), 8, 0, 80, 0);
    assert_counts(others(b, "k", T0 + W), 0, 0, 0, 0);
    ck_assert_int_eq(others(b, "k", T0).instances, 1);
    ck_assert_int_eq(others(b, "k", T0 + W).instances, 0);
    assert_counts(others(b, "k", T0 - 2 * W), 0, 108, 0, 1080);
    assert_counts(others(b, "k", T0 - 3 * W), 0, 0, 0, 0);
    /* Two instances on either side of a boundary, read by a third. */
    publish(b, row("k", T0, 8, 3, 80, 30));
    assert_counts(others(c, "k", T0), 16, 3, 160, 30);
    kg_store_close(&a);
    kg_store_close(&b);
    kg_store_close(&c);
}
END_TEST

/* An instance that stopped still counts for the windows it published (it
 * admitted those requests); pruning deletes only rows nobody published
 * for the given time, whoever they belong to, and the maintenance prunes
 * only in the first seconds of a minute. */
START_TEST(stopped_counts_and_prune)
{
    kg_store_t *a = open_as("inst-a");
    kg_store_t *b = open_as("inst-b");
    kg_store_t *c = open_as("inst-c");
    const char *args[] = {"inst-b", "inst-a"};
    kg_diag_t diag = {{0}};
    int64_t deleted = -1;

    publish(a, row("k", T0, 0, 4, 0, 0));
    publish(b, row("k", T0, 0, 5, 0, 0));
    kg_store_close(&b);
    assert_counts(others(c, "k", T0), 0, 9, 0, 0);
    ck_assert_int_eq(kg_store_rates_prune(c, 180, &deleted, &diag), KG_OK);
    ck_assert_int_eq(deleted, 0);
    pgs_sql(a,
            "UPDATE rate_shares SET updated_at = now() - interval '1 hour' "
            "WHERE instance = $1",
            1, args);
    /* The maintenance's prune runs in the first seconds of a minute. */
    ck_assert_int_eq(
        kg_rateshare_prune(c, T0 + KG_RATESHARE_PRUNE_SLOT_MS, &diag), KG_OK);
    ck_assert_int_eq(pgs_sql(a, "SELECT count(*) FROM rate_shares", 0, NULL),
                     4);
    ck_assert_int_eq(kg_store_rates_prune(c, 180, &deleted, &diag), KG_OK);
    ck_assert_int_eq(deleted, 2); /* its key's row and its mark */
    assert_counts(others(c, "k", T0), 0, 4, 0, 0);
    pgs_sql(a,
            "UPDATE rate_shares SET updated_at = now() - interval '1 hour' "
            "WHERE instance = $1",
            1, args + 1);
    ck_assert_int_eq(kg_rateshare_prune(c, T0 + 1, &diag), KG_OK);
    ck_assert_int_eq(pgs_sql(a, "SELECT count(*) FROM rate_shares", 0, NULL),
                     0);
    publish(a, row("k", T0, 0, 4, 0, 0));
    ck_assert_int_eq(kg_store_rates_prune(c, 180, NULL, &diag), KG_OK);
    assert_counts(others(c, "k", T0), 0, 4, 0, 0);
    kg_store_close(&a);
    kg_store_close(&c);
}
END_TEST

/* More keys than a statement carries, and ids with the characters an
 * array's text must escape, published in one go and read back. */
START_TEST(many_keys_and_odd_ids)
{
    static const char *const odd[] = {"q\"uote", "back\\slash", "a,b",
                                      "{brace}", "sp ace",      "NULL"};
    size_t nodd = sizeof(odd) / sizeof(*odd);
    size_t n = MANY_KEYS + nodd;
    kg_store_t *a = open_as("inst-a");
    kg_store_t *b = open_as("inst-b");
    kg_ratelimit_share_t *rows = calloc(n, sizeof(*rows));
    kg_diag_t diag = {{0}};

    ck_assert_ptr_nonnull(rows);
    for (size_t i = 0; i < n; i++) {
        char id[KG_RATELIMIT_ID_MAX + 1];

        if (i < MANY_KEYS) {
            snprintf(id, sizeof(id), "key%05zu", i);
        } else {
            snprintf(id, sizeof(id), "%s", odd[i - MANY_KEYS]);
        }
        rows[i] = row(id, T0, (int64_t)i, (int64_t)i + 1, 2 * (int64_t)i,
                      INT64_C(1000000000000));
    }
    ck_assert_msg(kg_store_rates_publish(a, rows, n, &diag) == KG_OK, "%s",
                  diag.msg);
    for (size_t i = 0; i < n; i++) {
        rows[i].req_prev = rows[i].req_cur = -1;
    }
    ck_assert_msg(kg_store_rates_others(b, T0, rows, n, &diag) == KG_OK, "%s",
                  diag.msg);
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(rows[i].req_prev == (int64_t)i &&
                          rows[i].req_cur == (int64_t)i + 1 &&
                          rows[i].tok_prev == 2 * (int64_t)i &&
                          rows[i].tok_cur == INT64_C(1000000000000),
                      "row %zu (%s)", i, rows[i].key_id);
    }
    ck_assert_int_eq(pgs_sql(a, "SELECT count(*) FROM rate_shares", 0, NULL),
                     (int64_t)n + 1);
    free(rows);
    kg_store_close(&a);
    kg_store_close(&b);
}
END_TEST

/* How many requests of key "k" (limits lim) rl admits in a row at now. */
static int admit_all(kg_ratelimit_t *rl, const kg_ratelimit_limits_t *lim,
                     int64_t now)
{
    kg_ratelimit_ticket_t t = {0};
    int n = 0;

    while (n < 100 &&
           kg_ratelimit_acquire(rl, "k", lim, 0, now, &t, NULL) == KG_OK) {
        kg_ratelimit_release(rl, &t, 0, now);
        n++;
    }
    return n;
}

static void tick(kg_store_t *s, kg_ratelimit_t *rl, int64_t now)
{
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_rateshare_tick(s, rl, now, &diag) == KG_OK, "%s",
                  diag.msg);
}

/* The whole round between two rate limiters, each on its own handle: what
 * one admitted the other counts after a tick of each, and between ticks
 * each takes its share of the room left; together exactly the limit. */
START_TEST(ticks_share_between_limiters)
{
    kg_store_t *a = open_as("inst-a");
    kg_store_t *b = open_as("inst-b");
    kg_ratelimit_t *ra = NULL;
    kg_ratelimit_t *rb = NULL;
    kg_ratelimit_limits_t lim = {10, KG_NONE, KG_NONE};

    ck_assert_int_eq(kg_ratelimit_new(NULL, &ra), KG_OK);
    ck_assert_int_eq(kg_ratelimit_new(NULL, &rb), KG_OK);
    ck_assert_int_eq(admit_all(ra, &lim, T0 + 1000), 10);
    ck_assert_int_eq(admit_all(rb, &lim, T0 + 1000), 10); /* not shared yet */
    tick(a, ra, T0 + 2000);
    tick(b, rb, T0 + 2100);
    tick(a, ra, T0 + 2200);
    ck_assert_int_eq(admit_all(ra, &lim, T0 + 2300), 0);
    ck_assert_int_eq(admit_all(rb, &lim, T0 + 2300), 0);

    /* Two windows later, b then a in turns, each ticking right after the
     * other published what it admitted: b's room of 10 is split with a
     * (which tracks the key) until b's next tick; then each takes its
     * share of what the other left (the first of a round always), and
     * together they admit exactly the limit. */
    static const int takes[] = {5, 2, 1, 1, 1, 0, 0};
    int64_t at = T0 + 2 * W + 1000;

    for (size_t i = 0; i < sizeof(takes) / sizeof(*takes); i++) {
        bool b_turn = i % 2 == 0;

        tick(b_turn ? a : b, b_turn ? ra : rb, at);
        tick(b_turn ? b : a, b_turn ? rb : ra, at + 100);
        ck_assert_int_eq(admit_all(b_turn ? rb : ra, &lim, at + 200), takes[i]);
        at += 1000;
    }
    kg_ratelimit_free(&ra);
    kg_ratelimit_free(&rb);
    kg_store_close(&a);
    kg_store_close(&b);
}
END_TEST

/* Three limiters, each on its own handle, ticking every ROUND_MS at
 * staggered times as gateways do, for run_ms from T0 + W (the fake clock;
 * one step a millisecond), with one request of key "k" every gap_ms
 * round-robin to them once each has ticked twice. Returns how many were
 * admitted, and in *worst the most admitted in any minute. */
#define ROUND_MS 200
static int staggered(int64_t rpm, int64_t gap_ms, int64_t run_ms,
                     int64_t *worst)
{
    static const char *const names[] = {"inst-a", "inst-b", "inst-c"};
    static int64_t at[8192];
    kg_ratelimit_limits_t lim = {rpm, KG_NONE, KG_NONE};
    kg_store_t *s[3];
    kg_ratelimit_t *rl[3];
    int n = 0;

    for (int i = 0; i < 3; i++) {
        s[i] = open_as(names[i]);
        ck_assert_int_eq(kg_ratelimit_new(NULL, &rl[i]), KG_OK);
    }
    for (int64_t t = 0; t < run_ms; t++) {
        kg_ratelimit_ticket_t tk = {0};
        int i = (int)(t / gap_ms % 3);

        for (int r = 0; r < 3; r++) {
            if (t % ROUND_MS == r * ROUND_MS / 3 + 7) {
                tick(s[r], rl[r], T0 + W + t);
            }
        }
        if (t >= 2 * ROUND_MS && t % gap_ms == 0 &&
            kg_ratelimit_acquire(rl[i], "k", &lim, 0, T0 + W + t, &tk, NULL) ==
                KG_OK) {
            kg_ratelimit_release(rl[i], &tk, 0, T0 + W + t);
            ck_assert_int_lt(n, (int)(sizeof(at) / sizeof(*at)));
            at[n++] = t;
        }
    }
    *worst = 0;
    for (int a = 0, b = 0; b < n; b++) {
        while (at[b] - at[a] >= W) {
            a++;
        }
        *worst = b - a + 1 > *worst ? b - a + 1 : *worst;
    }
    for (int i = 0; i < 3; i++) {
        kg_ratelimit_free(&rl[i]);
        kg_store_close(&s[i]);
    }
    return n;
}

/* Rounds at staggered times: each instance reads the others' counts as
 * they were at their last round, before what they admitted since, and its
 * own last round counts against its share (docs/scale-out.md, "Rate
 * limits"). A burst at all three, one request a millisecond for two
 * seconds across ten rounds, gets exactly the limit; a limit below the
 * number of instances, one request every 10 ms for three minutes, at most
 * one request an instance in any minute. */
START_TEST(staggered_rounds_hold_the_limit)
{
    int64_t worst = 0;

    ck_assert_int_eq(staggered(30, 1, 2 * ROUND_MS + 2000, &worst), 30);
    setup_db();
    ck_assert_int_ge(staggered(2, 10, 3 * W, &worst), 2 * 3);
    ck_assert_int_le(worst, 3);
}
END_TEST

/* SQLite serves one gateway: it does not share, and says so. */
START_TEST(sqlite_does_not_share)
{
    char dir[UT_PATH_MAX];
    kg_store_t *s = NULL;
    kg_ratelimit_t *rl = NULL;
    kg_ratelimit_share_t r = row("k", T0, 1, 2, 3, 4);
    kg_diag_t diag = {{0}};
    int64_t n = -1;

    ut_tmpdir(dir);
    s = pgs_open_sqlite(dir);
    ck_assert(!kg_store_rates_shared(s));
    ck_assert_int_eq(kg_store_rates_publish(s, &r, 1, &diag), KG_ERR_STORE);
    ck_assert_ptr_nonnull(strstr(diag.msg, "not supported"));
    ck_assert_int_eq(kg_store_rates_others(s, T0, &r, 1, &diag), KG_ERR_STORE);
    assert_counts(r, 0, 0, 0, 0);
    ck_assert_int_eq(kg_store_rates_prune(s, 1, NULL, &diag), KG_ERR_STORE);
    ck_assert_int_eq(kg_store_rates_live(s, 5, &n, &diag), KG_ERR_STORE);
    ck_assert_int_eq(n, 0);
    /* The tick and the prune do nothing there. */
    ck_assert_int_eq(kg_ratelimit_new(NULL, &rl), KG_OK);
    ck_assert_int_eq(kg_rateshare_tick(s, rl, T0, &diag), KG_OK);
    ck_assert_int_eq(kg_rateshare_prune(s, T0, &diag), KG_OK);
    kg_ratelimit_free(&rl);
    kg_store_close(&s);
    ut_tmpdir_remove(dir);
}
END_TEST

static Suite *pg_rates_suite(void)
{
    Suite *s = suite_create("pg_rates");
    TCase *tc = tcase_create("contract");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup_db, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, each_reads_the_others);
    tcase_add_test(tc, live_instances);
    tcase_add_test(tc, windows_aligned_to_the_reader);
    tcase_add_test(tc, stopped_counts_and_prune);
    tcase_add_test(tc, many_keys_and_odd_ids);
    tcase_add_test(tc, ticks_share_between_limiters);
    tcase_add_test(tc, staggered_rounds_hold_the_limit);
    tcase_add_test(tc, sqlite_does_not_share);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_rates_suite());
}
