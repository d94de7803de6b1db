/* The workspace rows' contract on both backends, and credit races. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/store_budget.h"
#include "keygate/store_workspaces.h"
#include "pg_contract.h"
#include "pg_server.h"
#include "unit_util.h"

/* Instances crediting one workspace at once, and what each tries. */
#define RACE_THREADS 6
#define RACE_TRIES   25
#define RACE_AMOUNT  1000
/* What the debits leave of the balance they race for. */
#define RACE_LEFT 500
/* Of the RACE_THREADS * RACE_TRIES writes, how many debits fit in the
 * balance and how many credits in the room to the maximum. */
#define RACE_DEBITS_FIT  100
#define RACE_CREDITS_FIT 120
#define RACE_BALANCE     (RACE_LEFT + RACE_DEBITS_FIT * RACE_AMOUNT)
#define RACE_MAX         (RACE_LEFT + RACE_CREDITS_FIT * RACE_AMOUNT)

static pgs_t PG;

static void suite_setup(void)
{
    pgs_start(&PG);
}

static void suite_teardown(void)
{
    pgs_destroy(&PG);
}

static void ws_row(kg_store_workspace_t *w, const char *id, const char *name,
                   const char *mode, int64_t at)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", id);
    snprintf(w->name, sizeof(w->name), "%s", name);
    snprintf(w->mode, sizeof(w->mode), "%s", mode);
    w->created_at = at;
    w->updated_at = at;
}

static int64_t revision(kg_store_t *s)
{
    kg_diag_t diag = {{0}};
    int64_t rev = -1;

    ck_assert_int_eq(kg_store_budget_revision(s, &rev, &diag), KG_OK);
    return rev;
}

/* Insert, read by id or name, list in byte order, count live keys. */
static void insert_get_list_contract(kg_store_t *s)
{
    kg_store_workspace_t w, got, *list = NULL;
    kg_diag_t diag = {{0}};
    size_t n = 0;

    ws_row(&w, "wsAAAAAAAAA1", "Beta", "api-keys", 100);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);
    /* The id or the name taken: nothing is written. */
    ws_row(&w, "wsAAAAAAAAA1", "other", "credits", 100);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_ERR_EXISTS);
    ws_row(&w, "wsAAAAAAAAA2", "Beta", "credits", 100);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_ERR_EXISTS);
    ws_row(&w, "wsAAAAAAAAA2", "alpha", "credits", 200);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);
    /* A name that is another workspace's id: the id wins. */
    ws_row(&w, "wsAAAAAAAAA3", "wsAAAAAAAAA1", "pool", 300);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);

    ck_assert_int_eq(kg_store_workspace_get(s, "wsAAAAAAAAA1", &got, &diag),
                     KG_OK);
    ck_assert_str_eq(got.name, "Beta");
    ck_assert_str_eq(got.mode, "api-keys");
    ck_assert_str_eq(got.rules, "{}");
    ck_assert_int_eq(got.credits_balance, 0);
    ck_assert_int_eq(got.created_at, 100);
    ck_assert_int_eq(got.updated_at, 100);
    ck_assert_int_eq(got.key_count, 0);
    kg_store_workspace_clear(&got);
    ck_assert_int_eq(kg_store_workspace_get(s, "alpha", &got, &diag), KG_OK);
    ck_assert_str_eq(got.id, "wsAAAAAAAAA2");
    ck_assert_str_eq(got.mode, "credits");
    kg_store_workspace_clear(&got);
    ck_assert_int_eq(kg_store_workspace_get(s, "ALPHA", &got, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_ptr_null(got.rules);
    ck_assert_str_eq(got.id, "");

    /* Live keys are counted, deleted ones not. */
    pgs_add_key(s, "keyAAAAAAAA1", "wsAAAAAAAAA1", "active", "{}");
    pgs_add_key(s, "keyAAAAAAAA2", "wsAAAAAAAAA1", "inactive", "{}");
    pgs_add_key(s, "keyAAAAAAAA3", "wsAAAAAAAAA1", "deleted", "{}");
    pgs_add_key(s, "keyAAAAAAAA4", "wsAAAAAAAAA2", "active", "{}");

    /* By name, in byte order: upper case before lower case. */
    ck_assert_int_eq(kg_store_workspace_list(s, &list, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(list[0].name, "Beta");
    ck_assert_int_eq(list[0].key_count, 2);
    ck_assert_str_eq(list[1].name, "alpha");
    ck_assert_int_eq(list[1].key_count, 1);
    ck_assert_str_eq(list[2].name, "wsAAAAAAAAA1");
    ck_assert_str_eq(list[2].id, "wsAAAAAAAAA3");
    ck_assert_str_eq(list[2].mode, "pool");
    ck_assert_int_eq(list[2].key_count, 0);
    ck_assert_str_eq(list[2].rules, "{}");
    kg_store_workspace_list_free(&list, n);
    ck_assert_ptr_null(list);
}

/* Update: NULL keeps a column, the name stays unique, the revision moves. */
static void update_contract(kg_store_t *s)
{
    kg_store_workspace_t w, got;
    kg_diag_t diag = {{0}};
    int64_t rev;

    ws_row(&w, "wsBBBBBBBBB1", "one", "api-keys", 100);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);
    ws_row(&w, "wsBBBBBBBBB2", "two", "api-keys", 100);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);

    rev = revision(s);
    ck_assert_int_eq(kg_store_workspace_update(s, "wsBBBBBBBBB1", NULL,
                                               "credits", "{\"models\":[]}",
                                               150, &diag),
                     KG_OK);
    ck_assert_int_gt(revision(s), rev);
    ck_assert_int_eq(kg_store_workspace_get(s, "wsBBBBBBBBB1", &got, &diag),
                     KG_OK);
    ck_assert_str_eq(got.name, "one");
    ck_assert_str_eq(got.mode, "credits");
    ck_assert_str_eq(got.rules, "{\"models\":[]}");
    ck_assert_int_eq(got.created_at, 100);
    ck_assert_int_eq(got.updated_at, 150);
    kg_store_workspace_clear(&got);

    ck_assert_int_eq(kg_store_workspace_update(s, "wsBBBBBBBBB1", "uno", NULL,
                                               NULL, 160, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_workspace_get(s, "uno", &got, &diag), KG_OK);
    ck_assert_str_eq(got.mode, "credits");
    ck_assert_str_eq(got.rules, "{\"models\":[]}");
    ck_assert_int_eq(got.updated_at, 160);
    kg_store_workspace_clear(&got);

    /* The name of another: refused, nothing changes. */
    ck_assert_int_eq(kg_store_workspace_update(s, "wsBBBBBBBBB1", "two", "pool",
                                               NULL, 170, &diag),
                     KG_ERR_EXISTS);
    ck_assert_int_eq(kg_store_workspace_get(s, "wsBBBBBBBBB1", &got, &diag),
                     KG_OK);
    ck_assert_str_eq(got.name, "uno");
    ck_assert_str_eq(got.mode, "credits");
    ck_assert_int_eq(got.updated_at, 160);
    kg_store_workspace_clear(&got);
    ck_assert_int_eq(
        kg_store_workspace_update(s, "wsNOPE", "x", NULL, NULL, 180, &diag),
        KG_ERR_NOT_FOUND);
}

/* Credit: within [0, max] or refused with the current balance. */
static void credit_contract(kg_store_t *s)
{
    kg_store_workspace_t w, got;
    kg_diag_t diag = {{0}};
    int64_t before = -1;
    int64_t rev;

    ws_row(&w, "wsCCCCCCCCC1", "c", "credits", 100);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);
    rev = revision(s);
    ck_assert_int_eq(
        kg_store_workspace_credit(s, w.id, 5000, 10000, 200, &before, &diag),
        KG_OK);
    ck_assert_int_eq(before, 0);
    ck_assert_int_eq(revision(s), rev + 1);
    ck_assert_int_eq(
        kg_store_workspace_credit(s, w.id, -2000, 10000, 210, &before, &diag),
        KG_OK);
    ck_assert_int_eq(before, 5000);
    ck_assert_int_eq(revision(s), rev + 2);

    /* Below zero or above the maximum: refused, the balance as it is. */
    before = -1;
    ck_assert_int_eq(
        kg_store_workspace_credit(s, w.id, -3001, 10000, 220, &before, &diag),
        KG_ERR_STATE);
    ck_assert_int_eq(before, 3000);
    before = -1;
    ck_assert_int_eq(
        kg_store_workspace_credit(s, w.id, 7001, 10000, 230, &before, &diag),
        KG_ERR_STATE);
    ck_assert_int_eq(before, 3000);
    ck_assert_int_eq(revision(s), rev + 2);

    /* The bounds themselves are in range. */
    ck_assert_int_eq(
        kg_store_workspace_credit(s, w.id, 7000, 10000, 240, &before, &diag),
        KG_OK);
    ck_assert_int_eq(
        kg_store_workspace_credit(s, w.id, -10000, 10000, 250, &before, &diag),
        KG_OK);
    ck_assert_int_eq(before, 10000);
    ck_assert_int_eq(kg_store_workspace_get(s, w.id, &got, &diag), KG_OK);
    ck_assert_int_eq(got.credits_balance, 0);
    ck_assert_int_eq(got.updated_at, 250);
    kg_store_workspace_clear(&got);

    ck_assert_int_eq(
        kg_store_workspace_credit(s, "wsNOPE", 1, 10000, 260, &before, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(revision(s), rev + 4);
}

static void workspace_contract(kg_store_t *s)
{
    insert_get_list_contract(s);
    update_contract(s);
    credit_contract(s);
}

/* Names in a collation that is not byte order, as a server's default may
 * be (the test server's is C): the list keeps SQLite's order. */
static void workspace_contract_icu(kg_store_t *s)
{
    pgs_sql(s,
            "ALTER TABLE workspaces ALTER COLUMN name TYPE TEXT "
            "COLLATE \"en-x-icu\"",
            0, NULL);
    workspace_contract(s);
}

START_TEST(workspaces_on_postgresql)
{
    pgs_run_pg(&PG, "kg_workspaces", workspace_contract);
    pgs_run_pg(&PG, "kg_workspaces_icu", workspace_contract_icu);
}
END_TEST

START_TEST(workspaces_on_sqlite)
{
    pgs_run_sqlite(workspace_contract);
}
END_TEST

/* One instance of the race: its own handle, RACE_TRIES credits of delta. */
typedef struct racer {
    const char *location;
    int64_t delta;
    int64_t max;
    int accepted;
    kg_err_t failed; /* the first error other than KG_ERR_STATE */
    kg_diag_t diag;
} racer_t;

static void *racer_run(void *arg)
{
    racer_t *r = arg;
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_store_t *s = NULL;
    int64_t before = 0;

    r->failed = kg_store_open(r->location, &opts, &s, &r->diag);
    for (int i = 0; i < RACE_TRIES && r->failed == KG_OK; i++) {
        kg_err_t rc = kg_store_workspace_credit(
            s, "wsRACE000001", r->delta, r->max, 1000 + i, &before, &r->diag);

        if (rc == KG_OK) {
            r->accepted++;
        } else if (rc != KG_ERR_STATE) {
            r->failed = rc;
        }
    }
    kg_store_close(&s);
    return NULL;
}

/* RACE_THREADS handles credit delta at once; how many writes were taken. */
static int race(const char *location, int64_t delta, int64_t max)
{
    racer_t r[RACE_THREADS];
    pthread_t t[RACE_THREADS];
    int accepted = 0;

    memset(r, 0, sizeof(r));
    for (size_t i = 0; i < UT_NROWS(t); i++) {
        r[i].location = location;
        r[i].delta = delta;
        r[i].max = max;
        ck_assert_int_eq(pthread_create(&t[i], NULL, racer_run, &r[i]), 0);
    }
    for (size_t i = 0; i < UT_NROWS(t); i++) {
        pthread_join(t[i], NULL);
    }
    for (size_t i = 0; i < UT_NROWS(t); i++) {
        ck_assert_msg(r[i].failed == KG_OK, "racer %zu: %s", i, r[i].diag.msg);
        accepted += r[i].accepted;
    }
    return accepted;
}

/*
 * Debits that together exceed the balance, then credits that together
 * exceed the maximum, from several handles at once: the balance never
 * leaves [0, max], exactly the writes that fit are taken, each moves the
 * revision once.
 */
static void credit_race(kg_store_t *s, const char *location)
{
    kg_store_workspace_t w, got;
    kg_diag_t diag = {{0}};
    int64_t before = 0;
    int64_t rev;
    int taken;

    _Static_assert(RACE_DEBITS_FIT < RACE_THREADS * RACE_TRIES &&
                       RACE_CREDITS_FIT < RACE_THREADS * RACE_TRIES,
                   "the writes together exceed what fits");

    ws_row(&w, "wsRACE000001", "race", "credits", 100);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);
    ck_assert_int_eq(kg_store_workspace_credit(s, w.id, RACE_BALANCE, RACE_MAX,
                                               100, &before, &diag),
                     KG_OK);
    rev = revision(s);

    taken = race(location, -RACE_AMOUNT, RACE_MAX);
    ck_assert_int_eq(taken, RACE_DEBITS_FIT);
    ck_assert_int_eq(kg_store_workspace_get(s, w.id, &got, &diag), KG_OK);
    ck_assert_int_eq(got.credits_balance, RACE_LEFT);
    kg_store_workspace_clear(&got);
    ck_assert_int_eq(revision(s), rev + RACE_DEBITS_FIT);

    taken = race(location, RACE_AMOUNT, RACE_MAX);
    ck_assert_int_eq(taken, RACE_CREDITS_FIT);
    ck_assert_int_eq(kg_store_workspace_get(s, w.id, &got, &diag), KG_OK);
    ck_assert_int_eq(got.credits_balance, RACE_MAX);
    kg_store_workspace_clear(&got);
    ck_assert_int_eq(revision(s), rev + RACE_DEBITS_FIT + RACE_CREDITS_FIT);
}

START_TEST(credit_race_on_postgresql)
{
    char url[PGS_PATH_MAX];
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    pgs_create_db(&PG, "kg_credit_race", url);
    ck_assert_int_eq(kg_store_open(url, &opts, &s, &diag), KG_OK);
    credit_race(s, url);
    kg_store_close(&s);
}
END_TEST

START_TEST(credit_race_on_sqlite)
{
    char dir[UT_PATH_MAX], path[UT_PATH_MAX];
    kg_store_t *s;

    ut_tmpdir(dir);
    s = pgs_open_sqlite(dir);
    credit_race(s, ut_join(path, dir, "keygate.db"));
    kg_store_close(&s);
    ut_tmpdir_remove(dir);
}
END_TEST

static Suite *pg_workspaces_suite(void)
{
    Suite *s = suite_create("pg_workspaces");
    TCase *tc = tcase_create("pg");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, workspaces_on_postgresql);
    tcase_add_test(tc, workspaces_on_sqlite);
    tcase_add_test(tc, credit_race_on_postgresql);
    tcase_add_test(tc, credit_race_on_sqlite);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_workspaces_suite());
}
