/* What the policy reads and writes of the store, on both backends. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/store_budget.h"
#include "keygate/store_workspaces.h"
#include "pg_contract.h"
#include "pg_server.h"
#include "unit_util.h"

static pgs_t PG;

static void suite_setup(void)
{
    pgs_start(&PG);
}

static void suite_teardown(void)
{
    pgs_destroy(&PG);
}

static int64_t revision(kg_store_t *s)
{
    kg_diag_t diag = {{0}};
    int64_t rev = -1;

    ck_assert_int_eq(kg_store_budget_revision(s, &rev, &diag), KG_OK);
    return rev;
}

/* The stored reservations of key id (no operation reads them). */
static int64_t reserved(kg_store_t *s, const char *id)
{
    const char *args[] = {id};

    return pgs_sql(s, "SELECT reserved FROM api_keys WHERE id = $1", 1, args);
}

static void add_workspace(kg_store_t *s, const char *id, const char *mode)
{
    kg_store_workspace_t w;
    kg_diag_t diag = {{0}};

    memset(&w, 0, sizeof(w));
    snprintf(w.id, sizeof(w.id), "%s", id);
    snprintf(w.name, sizeof(w.name), "name-%s", id);
    snprintf(w.mode, sizeof(w.mode), "%s", mode);
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);
}

/* The revision, a key's rules and workspace, a workspace's policy. */
static void reads_contract(kg_store_t *s)
{
    kg_store_budget_key_t key;
    kg_store_budget_workspace_t ws;
    kg_diag_t diag = {{0}};
    int64_t before = 0;
    int64_t rev = revision(s);

    ck_assert_int_ge(rev, 0);
    add_workspace(s, "wsAAAAAAAAA1", "credits");
    ck_assert_int_eq(kg_store_workspace_credit(s, "wsAAAAAAAAA1", 4200, 10000,
                                               10, &before, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_workspace_update(s, "wsAAAAAAAAA1", NULL, NULL,
                                               "{\"models\":[\"m\"]}", 20,
                                               &diag),
                     KG_OK);
    pgs_add_key(s, "keyAAAAAAAA1", "wsAAAAAAAAA1", "active",
                "{\"ips\":[\"10.0.0.0/8\"]}");
    pgs_add_key(s, "keyAAAAAAAA2", "wsAAAAAAAAA1", "deleted", "{}");
    ck_assert_int_gt(revision(s), rev);

    ck_assert_int_eq(kg_store_budget_key_get(s, "keyAAAAAAAA1", &key, &diag),
                     KG_OK);
    ck_assert_str_eq(key.workspace_id, "wsAAAAAAAAA1");
    ck_assert_str_eq(key.rules, "{\"ips\":[\"10.0.0.0/8\"]}");
    kg_store_budget_key_clear(&key);
    /* Any status. */
    ck_assert_int_eq(kg_store_budget_key_get(s, "keyAAAAAAAA2", &key, &diag),
                     KG_OK);
    ck_assert_str_eq(key.rules, "{}");
    kg_store_budget_key_clear(&key);
    ck_assert_int_eq(kg_store_budget_key_get(s, "keyNOPE", &key, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_ptr_null(key.rules);
    ck_assert_str_eq(key.workspace_id, "");

    ck_assert_int_eq(
        kg_store_budget_workspace_get(s, "wsAAAAAAAAA1", &ws, &diag), KG_OK);
    ck_assert_str_eq(ws.mode, "credits");
    ck_assert_str_eq(ws.rules, "{\"models\":[\"m\"]}");
    ck_assert_int_eq(ws.credits_balance, 4200);
    kg_store_budget_workspace_clear(&ws);
    /* An id only, never a name. */
    ck_assert_int_eq(
        kg_store_budget_workspace_get(s, "name-wsAAAAAAAAA1", &ws, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_ptr_null(ws.rules);
    ck_assert_str_eq(ws.mode, "");
}

/* The snapshot: set, cleared, in the caller's transaction; no revision. */
static void reservations_contract(kg_store_t *s)
{
    kg_diag_t diag = {{0}};
    int64_t rev;

    add_workspace(s, "wsBBBBBBBBB1", "api-keys");
    pgs_add_key(s, "keyBBBBBBBB1", "wsBBBBBBBBB1", "active", "{}");
    pgs_add_key(s, "keyBBBBBBBB2", "wsBBBBBBBBB1", "active", "{}");
    rev = revision(s);
    ck_assert_int_eq(reserved(s, "keyBBBBBBBB1"), 0);
    ck_assert_int_eq(
        kg_store_budget_reservation_set(s, "keyBBBBBBBB1", 500, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_budget_reservation_set(s, "keyBBBBBBBB2", 700, &diag), KG_OK);
    /* An unknown key: nothing to store, not an error. */
    ck_assert_int_eq(kg_store_budget_reservation_set(s, "keyNOPE", 1, &diag),
                     KG_OK);
    ck_assert_int_eq(reserved(s, "keyBBBBBBBB1"), 500);
    ck_assert_int_eq(reserved(s, "keyBBBBBBBB2"), 700);

    /* A snapshot rolled back leaves the previous one. */
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_int_eq(kg_store_budget_reservations_clear(s, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_budget_reservation_set(s, "keyBBBBBBBB2", 900, &diag), KG_OK);
    kg_store_rollback(s);
    ck_assert_int_eq(reserved(s, "keyBBBBBBBB1"), 500);
    ck_assert_int_eq(reserved(s, "keyBBBBBBBB2"), 700);

    /* A snapshot committed replaces it whole. */
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_int_eq(kg_store_budget_reservations_clear(s, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_budget_reservation_set(s, "keyBBBBBBBB2", 900, &diag), KG_OK);
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
    ck_assert_int_eq(reserved(s, "keyBBBBBBBB1"), 0);
    ck_assert_int_eq(reserved(s, "keyBBBBBBBB2"), 900);

    ck_assert_int_eq(kg_store_budget_reservations_clear(s, &diag), KG_OK);
    ck_assert_int_eq(reserved(s, "keyBBBBBBBB2"), 0);
    /* Bookkeeping: running gateways keep their caches. */
    ck_assert_int_eq(revision(s), rev);
}

static void budget_contract(kg_store_t *s)
{
    reads_contract(s);
    reservations_contract(s);
}

START_TEST(budget_on_postgresql)
{
    pgs_run_pg(&PG, "kg_budget", budget_contract);
}
END_TEST

START_TEST(budget_on_sqlite)
{
    pgs_run_sqlite(budget_contract);
}
END_TEST

static Suite *pg_budget_suite(void)
{
    Suite *s = suite_create("pg_budget");
    TCase *tc = tcase_create("pg");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, budget_on_postgresql);
    tcase_add_test(tc, budget_on_sqlite);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_budget_suite());
}
