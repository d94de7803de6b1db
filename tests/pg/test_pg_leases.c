/* Budget leases on PostgreSQL: claims keep spend plus leases within the
 * limit, across instances, periods, credits, charges and expiry. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keygate/period.h"
#include "keygate/store_leases.h"
#include "keygate/store_usage.h"
#include "keygate/store_workspaces.h"
#include "pg_contract.h"
#include "pg_server.h"
#include "unit_util.h"

/* Instances of the race and what each claims at a time. */
#define N_INST      3
#define RACE_LIMIT  1000
#define RACE_SLICE  7
#define RACE_CLAIMS (RACE_LIMIT / RACE_SLICE + 2)

static pgs_t PG;
static char URL[PGS_PATH_MAX];
static kg_store_t *S[N_INST];

static void suite_setup(void)
{
    pgs_start(&PG);
}

static void suite_teardown(void)
{
    pgs_destroy(&PG);
}

/* A fresh database and one handle per instance on it ("inst0".."inst2"),
 * with workspace ws1 (credits 1000) and key key1 (no limits yet). */
static void setup(void)
{
    static int n;
    char name[32];
    kg_store_workspace_t w;
    kg_diag_t diag = {{0}};
    int64_t before = 0;

    snprintf(name, sizeof(name), "kg_leases_%d_%d", (int)getpid(), n++);
    pgs_create_db(&PG, name, URL);
    for (int i = 0; i < N_INST; i++) {
        char inst[8];
        kg_store_opts_t opts = {0, 5000, 0, inst};

        snprintf(inst, sizeof(inst), "inst%d", i);
        ck_assert_msg(kg_store_open(URL, &opts, &S[i], &diag) == KG_OK, "%s",
                      diag.msg);
        ck_assert_str_eq(kg_store_instance(S[i]), inst);
    }
    memset(&w, 0, sizeof(w));
    snprintf(w.id, sizeof(w.id), "wsLEASE00001");
    snprintf(w.name, sizeof(w.name), "leases");
    snprintf(w.mode, sizeof(w.mode), "credits");
    ck_assert_int_eq(kg_store_workspace_insert(S[0], &w, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_workspace_credit(S[0], w.id, 1000, 1000000, 1, &before, &diag),
        KG_OK);
    pgs_add_key(S[0], "keyLEASE0001", w.id, "active", "{}");
}

static void teardown(void)
{
    for (int i = 0; i < N_INST; i++) {
        kg_store_close(&S[i]);
    }
}

static void set_key(const char *column, const char *value)
{
    char sql[128];
    const char *args[] = {value};

    snprintf(sql, sizeof(sql),
             "UPDATE api_keys SET %s = $1 WHERE id = 'keyLEASE0001'", column);
    pgs_sql(S[0], sql, 1, args);
}

static kg_err_t claim(kg_store_t *s, kg_store_lease_scope_t scope, int64_t need,
                      int64_t want, int64_t ttl_ms, int64_t *granted)
{
    kg_store_lease_claim_t c = {
        .scope = scope,
        .id = scope == KG_STORE_LEASE_KEY ? "keyLEASE0001" : "wsLEASE00001",
        .need = need,
        .want = want,
        .ttl_ms = ttl_ms,
        .now = (int64_t)time(NULL),
        .fresh = false,
    };
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_store_leases_claim(s, &c, granted, &diag);

    ck_assert_msg(rc != KG_ERR_STORE && rc != KG_ERR_STORE_BUSY, "%s",
                  diag.msg);
    return rc;
}

static int64_t outstanding(kg_store_lease_scope_t scope)
{
    kg_diag_t diag = {{0}};
    int64_t out = -1;

    ck_assert_int_eq(kg_store_leases_outstanding(S[1], scope,
                                                 scope == KG_STORE_LEASE_KEY
                                                     ? "keyLEASE0001"
                                                     : "wsLEASE00001",
                                                 &out, &diag),
                     KG_OK);
    return out;
}

/* Charge cost to the key as the usage writer does, from instance i. */
static void charge_key(int i, int64_t cost)
{
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_store_begin(S[i], &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_usage_charge_key(S[i], "keyLEASE0001", cost, 1, -1, &diag),
        KG_OK);
    ck_assert_int_eq(kg_store_commit(S[i], &diag), KG_OK);
}

/* Grants are half the room per live instance, never below need nor
 * above want; a claim the room cannot cover changes nothing; a committed
 * charge moves spend and lease together; a return frees room. */
START_TEST(key_claims_keep_spend_plus_leases_within_the_limit)
{
    int64_t g = -1;
    kg_diag_t diag = {{0}};

    ck_assert(kg_store_leases_shared(S[0]));
    set_key("usage_limit", "1000");
    ck_assert_int_eq(claim(S[0], KG_STORE_LEASE_KEY, 100, 10000, 30000, &g),
                     KG_OK);
    ck_assert_int_eq(g, 500); /* 1000 / (2 × 1) */
    ck_assert_int_eq(claim(S[1], KG_STORE_LEASE_KEY, 100, 10000, 30000, &g),
                     KG_OK);
    ck_assert_int_eq(g, 125); /* 500 / (2 × 2) */
    ck_assert_int_eq(claim(S[2], KG_STORE_LEASE_KEY, 10, 20, 30000, &g), KG_OK);
    ck_assert_int_eq(g, 20); /* capped by want */
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), 645);
    /* 355 left: 400 cannot be granted, and nothing is. */
    ck_assert_int_eq(claim(S[0], KG_STORE_LEASE_KEY, 400, 400, 30000, &g),
                     KG_ERR_USAGE_LIMIT);
    ck_assert_int_eq(g, 0);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), 645);
    /* Instance 0 spends 300 of its 500: the sum does not move. */
    charge_key(0, 300);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), 345);
    ck_assert_int_eq(pgs_sql(S[0],
                             "SELECT usage FROM api_keys WHERE id = "
                             "'keyLEASE0001'",
                             0, NULL),
                     300);
    /* Another instance's charge does not touch instance 0's lease. */
    charge_key(1, 25);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), 320);
    /* Giving back 150 of the 200 left: room returns to the others. */
    ck_assert_int_eq(kg_store_leases_return(S[0], KG_STORE_LEASE_KEY,
                                            "keyLEASE0001", 150, &diag),
                     KG_OK);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), 170);
    /* Never below zero. */
    ck_assert_int_eq(kg_store_leases_return(S[2], KG_STORE_LEASE_KEY,
                                            "keyLEASE0001", 1000, &diag),
                     KG_OK);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), 150);
    /* 1000 - 325 spent - 150 leased = 525: exactly that is grantable. */
    ck_assert_int_eq(claim(S[2], KG_STORE_LEASE_KEY, 525, 525, 30000, &g),
                     KG_OK);
    ck_assert_int_eq(claim(S[2], KG_STORE_LEASE_KEY, 1, 1, 30000, &g),
                     KG_ERR_USAGE_LIMIT);
}
END_TEST

/* The current period's spend counts against its limit; a past period's
 * does not. */
START_TEST(period_limit_bounds_claims)
{
    char start[32];
    int64_t now = (int64_t)time(NULL);
    int64_t g = -1;

    set_key("usage_limit", "100000");
    set_key("period", "day");
    set_key("period_limit", "200");
    set_key("period_usage", "150");
    snprintf(start, sizeof(start), "%lld",
             (long long)kg_period_start(KG_PERIOD_DAY, now));
    set_key("period_started_at", start);
    ck_assert_int_eq(claim(S[0], KG_STORE_LEASE_KEY, 60, 60, 30000, &g),
                     KG_ERR_PERIOD_LIMIT);
    ck_assert_int_eq(claim(S[0], KG_STORE_LEASE_KEY, 50, 50, 30000, &g), KG_OK);
    /* Yesterday's spend: the whole limit less the live lease. */
    snprintf(start, sizeof(start), "%lld",
             (long long)kg_period_start(KG_PERIOD_DAY, now) - 86400);
    set_key("period_started_at", start);
    ck_assert_int_eq(claim(S[1], KG_STORE_LEASE_KEY, 150, 150, 30000, &g),
                     KG_OK);
    ck_assert_int_eq(claim(S[1], KG_STORE_LEASE_KEY, 1, 1, 30000, &g),
                     KG_ERR_PERIOD_LIMIT);
}
END_TEST

/* Credits: leases never promise more than the balance; the writer's
 * charge takes its cost off the balance and its lease together. */
START_TEST(credit_claims_keep_the_balance_covered)
{
    kg_diag_t diag = {{0}};
    int64_t g = -1;

    ck_assert_int_eq(claim(S[0], KG_STORE_LEASE_CREDITS, 600, 600, 30000, &g),
                     KG_OK);
    ck_assert_int_eq(claim(S[1], KG_STORE_LEASE_CREDITS, 401, 401, 30000, &g),
                     KG_ERR_NO_CREDITS);
    ck_assert_int_eq(claim(S[1], KG_STORE_LEASE_CREDITS, 400, 400, 30000, &g),
                     KG_OK);
    ck_assert_int_eq(kg_store_begin(S[0], &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_usage_charge_credits(S[0], "wsLEASE00001", 250, &diag), KG_OK);
    ck_assert_int_eq(kg_store_commit(S[0], &diag), KG_OK);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_CREDITS), 750);
    ck_assert_int_eq(pgs_sql(S[0],
                             "SELECT credits_balance FROM workspaces WHERE "
                             "id = 'wsLEASE00001'",
                             0, NULL),
                     750);
    ck_assert_int_eq(claim(S[2], KG_STORE_LEASE_CREDITS, 1, 1, 30000, &g),
                     KG_ERR_NO_CREDITS);
    ck_assert_int_eq(claim(S[2], KG_STORE_LEASE_KEY, 1, 1, 30000, &g), KG_OK);
}
END_TEST

/* A lease its instance stops renewing expires and its room is claimable;
 * renewals keep it; a fresh claim drops the instance's own leases. */
START_TEST(expired_leases_return_their_room)
{
    kg_diag_t diag = {{0}};
    kg_store_lease_claim_t c = {
        .scope = KG_STORE_LEASE_KEY,
        .id = "keyLEASE0001",
        .need = 10,
        .want = 10,
        .ttl_ms = 30000,
        .now = (int64_t)time(NULL),
        .fresh = true,
    };
    int64_t g = -1;

    set_key("usage_limit", "100");
    ck_assert_int_eq(claim(S[0], KG_STORE_LEASE_KEY, 100, 100, 300, &g), KG_OK);
    ck_assert_int_eq(claim(S[1], KG_STORE_LEASE_KEY, 1, 1, 30000, &g),
                     KG_ERR_USAGE_LIMIT);
    /* Renewed: still there after its first life. */
    ck_assert_int_eq(kg_store_leases_renew(S[0], 30000, &diag), KG_OK);
    usleep(400 * 1000);
    ck_assert_int_eq(claim(S[1], KG_STORE_LEASE_KEY, 1, 1, 30000, &g),
                     KG_ERR_USAGE_LIMIT);
    /* Not renewed: gone after it. */
    ck_assert_int_eq(kg_store_leases_renew(S[0], 1, &diag), KG_OK);
    usleep(50 * 1000);
    ck_assert_int_eq(claim(S[1], KG_STORE_LEASE_KEY, 60, 60, 30000, &g), KG_OK);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), 60);
    /* Instance 1 lapsed: a fresh claim replaces its leases. */
    ck_assert_int_eq(kg_store_leases_claim(S[1], &c, &g, &diag), KG_OK);
    ck_assert_int_eq(g, 10);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), 10);
    /* Renewal drops empty leases. */
    ck_assert_int_eq(kg_store_leases_return(S[1], KG_STORE_LEASE_KEY,
                                            "keyLEASE0001", 10, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_leases_renew(S[1], 30000, &diag), KG_OK);
    ck_assert_int_eq(
        pgs_sql(S[1], "SELECT count(*) FROM budget_leases", 0, NULL), 0);
    /* An unknown account. */
    c.id = "keyNOTTHERE1";
    c.fresh = false;
    ck_assert_int_eq(kg_store_leases_claim(S[1], &c, &g, &diag),
                     KG_ERR_NOT_FOUND);
}
END_TEST

typedef struct racer {
    kg_store_t *s;
    int64_t granted;
    int refusals;
    int errors;
} racer_t;

static void *race_main(void *arg)
{
    racer_t *r = arg;

    for (int i = 0; i < RACE_CLAIMS; i++) {
        kg_store_lease_claim_t c = {
            .scope = KG_STORE_LEASE_KEY,
            .id = "keyLEASE0001",
            .need = RACE_SLICE,
            .want = RACE_SLICE,
            .ttl_ms = 30000,
            .now = (int64_t)time(NULL),
            .fresh = false,
        };
        kg_diag_t diag = {{0}};
        int64_t g = 0;
        kg_err_t rc = kg_store_leases_claim(r->s, &c, &g, &diag);

        if (rc == KG_OK) {
            r->granted += g;
        } else if (rc == KG_ERR_USAGE_LIMIT) {
            r->refusals++;
            break;
        } else {
            r->errors++;
        }
    }
    return NULL;
}

/* Three instances claiming at once grant the limit exactly: every grant
 * fits, and the room left is less than one claim. */
START_TEST(racing_instances_grant_the_limit_exactly)
{
    racer_t r[N_INST];
    pthread_t t[N_INST];
    int64_t total = 0;
    char limit[16];

    snprintf(limit, sizeof(limit), "%d", RACE_LIMIT);
    set_key("usage_limit", limit);
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N_INST; i++) {
        r[i].s = S[i];
        ck_assert_int_eq(pthread_create(&t[i], NULL, race_main, &r[i]), 0);
    }
    for (int i = 0; i < N_INST; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(r[i].errors, 0);
        ck_assert_int_eq(r[i].refusals, 1);
        total += r[i].granted;
    }
    ck_assert_int_le(total, RACE_LIMIT);
    ck_assert_int_gt(total, RACE_LIMIT - RACE_SLICE);
    ck_assert_int_eq(outstanding(KG_STORE_LEASE_KEY), total);
}
END_TEST

/* SQLite serves one gateway: no leases. */
START_TEST(sqlite_has_no_leases)
{
    char dir[UT_PATH_MAX];
    kg_store_t *s = NULL;
    kg_store_lease_claim_t c = {KG_STORE_LEASE_KEY, "k", 1, 1, 1000, 0, false};
    kg_diag_t diag = {{0}};
    int64_t g = -1;

    ut_tmpdir(dir);
    s = pgs_open_sqlite(dir);
    ck_assert(!kg_store_leases_shared(s));
    ck_assert_int_eq(kg_store_leases_claim(s, &c, &g, &diag), KG_ERR_STORE);
    ck_assert_int_eq(g, 0);
    kg_store_close(&s);
    ut_tmpdir_remove(dir);
}
END_TEST

static Suite *pg_leases_suite(void)
{
    Suite *s = suite_create("pg_leases");
    TCase *tc = tcase_create("leases");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, key_claims_keep_spend_plus_leases_within_the_limit);
    tcase_add_test(tc, period_limit_bounds_claims);
    tcase_add_test(tc, credit_claims_keep_the_balance_covered);
    tcase_add_test(tc, expired_leases_return_their_room);
    tcase_add_test(tc, racing_instances_grant_the_limit_exactly);
    suite_add_tcase(s, tc);
    tc = tcase_create("sqlite");
    tcase_add_test(tc, sqlite_has_no_leases);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_leases_suite());
}
