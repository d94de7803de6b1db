/* What the policy reads and writes of the store, on both backends. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/store_budget.h"
#include "keygate/store_keys.h"
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

/* Key id's reserved as the store reads it (kg_store_key_get). */
static int64_t reserved(kg_store_t *s, const char *id)
{
    kg_diag_t diag = {{0}};
    kg_key_t k;
    int64_t v;

    ck_assert_msg(kg_store_key_get(s, id, &k, &diag) == KG_OK, "%s: %s", id,
                  diag.msg);
    v = k.reserved;
    kg_key_clear(&k);
    return v;
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

/* ---- per instance (PostgreSQL: SQLite serves one gateway a file) ------ */

static kg_store_t *open_instance(const char *url, const char *instance)
{
    kg_store_opts_t opts = {0, 5000, 0, instance};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    ck_assert_msg(kg_store_open(url, &opts, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    return s;
}

static void set_reserved(kg_store_t *s, const char *id, int64_t amount)
{
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_store_budget_reservation_set(s, id, amount, &diag) ==
                      KG_OK,
                  "%s", diag.msg);
}

static void clear_reserved(kg_store_t *s)
{
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_store_budget_reservations_clear(s, &diag) == KG_OK, "%s",
                  diag.msg);
}

/* The rows of instance in key_reservations, counted through s. */
static int64_t rows_of(kg_store_t *s, const char *instance)
{
    const char *args[] = {instance};

    return pgs_sql(s,
                   "SELECT count(*) FROM key_reservations WHERE instance = $1",
                   1, args);
}

/* As if instance had last written its rows age_s seconds ago. */
static void age_rows(kg_store_t *s, const char *instance, int age_s)
{
    char age[16];
    const char *args[] = {age, instance};

    snprintf(age, sizeof(age), "%d", age_s);
    pgs_sql(s,
            "UPDATE key_reservations SET updated_at = now() - "
            "make_interval(secs => $1::int) WHERE instance = $2",
            2, args);
}

/* Key id's reserved in the key list read through s. */
static int64_t listed_reserved(kg_store_t *s, const char *id)
{
    kg_key_filter_t filter;
    kg_diag_t diag = {{0}};
    kg_key_t *keys = NULL;
    size_t n = 0;
    int64_t v = -1;

    memset(&filter, 0, sizeof(filter));
    ck_assert_msg(kg_store_key_list(s, &filter, &keys, &n, &diag) == KG_OK,
                  "%s", diag.msg);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i].id, id) == 0) {
            v = keys[i].reserved;
        }
    }
    kg_keys_list_free(&keys, n);
    ck_assert_int_ge(v, 0);
    return v;
}

#define K1 "keyCCCCCCCC1"
#define K2 "keyCCCCCCCC2"

/*
 * Three handles acting for three instances on one database: each keeps
 * its own snapshot, a key reads the sum of the live ones, a clear takes
 * only its instance's rows and those of instances that stopped writing.
 */
START_TEST(reservations_per_instance_on_postgresql)
{
    char url[PGS_PATH_MAX];
    kg_diag_t diag = {{0}};
    kg_store_t *a, *b, *c;
    int64_t rev;

    pgs_create_db(&PG, "kg_budget_instances", url);
    a = open_instance(url, "instanceA");
    b = open_instance(url, "instanceB");
    c = open_instance(url, "instanceC");
    add_workspace(a, "wsCCCCCCCCC1", "api-keys");
    pgs_add_key(a, K1, "wsCCCCCCCCC1", "active", "{}");
    pgs_add_key(a, K2, "wsCCCCCCCCC1", "active", "{}");
    rev = revision(a);

    /* Each instance its own rows; every handle reads the sum. */
    set_reserved(a, K1, 500);
    set_reserved(b, K1, 700);
    set_reserved(b, K2, 300);
    ck_assert_int_eq(reserved(a, K1), 1200);
    ck_assert_int_eq(reserved(c, K1), 1200);
    ck_assert_int_eq(reserved(c, K2), 300);
    ck_assert_int_eq(listed_reserved(c, K1), 1200);
    ck_assert_int_eq(listed_reserved(a, K2), 300);
    /* The column SQLite keeps is not written here. */
    ck_assert_int_eq(pgs_sql(a, "SELECT sum(reserved) FROM api_keys", 0, NULL),
                     0);

    /* A snapshot replaces its instance's rows and no other's. */
    ck_assert_int_eq(kg_store_begin(a, &diag), KG_OK);
    clear_reserved(a);
    set_reserved(a, K2, 40);
    ck_assert_int_eq(kg_store_commit(a, &diag), KG_OK);
    ck_assert_int_eq(reserved(c, K1), 700);
    ck_assert_int_eq(reserved(c, K2), 340);
    clear_reserved(b);
    ck_assert_int_eq(rows_of(c, "instanceB"), 0);
    ck_assert_int_eq(reserved(c, K1), 0);
    ck_assert_int_eq(reserved(c, K2), 40);

    /* An instance that stopped writing: past the bound its rows no longer
     * count; the next clear of any instance deletes them, and leaves the
     * rows of one still within it. */
    set_reserved(b, K1, 700);
    set_reserved(c, K1, 20);
    age_rows(a, "instanceB", KG_STORE_RESERVATION_TTL_S + 1);
    ck_assert_int_eq(reserved(a, K1), 20);
    ck_assert_int_eq(listed_reserved(a, K1), 20);
    ck_assert_int_eq(rows_of(a, "instanceB"), 1); /* reads delete nothing */
    age_rows(a, "instanceC", KG_STORE_RESERVATION_TTL_S - 2);
    ck_assert_int_eq(reserved(a, K1), 20);
    clear_reserved(a);
    ck_assert_int_eq(rows_of(c, "instanceA"), 0);
    ck_assert_int_eq(rows_of(c, "instanceB"), 0);
    ck_assert_int_eq(rows_of(c, "instanceC"), 1);
    ck_assert_int_eq(reserved(c, K1), 20);
    ck_assert_int_eq(reserved(c, K2), 0);

    /* Two instances sweeping the same stale row: the second skips the row
     * the first holds instead of waiting for its commit (a wait would hit
     * the statement timeout and fail the clear). */
    set_reserved(c, K2, 5);
    age_rows(a, "instanceC", KG_STORE_RESERVATION_TTL_S + 1);
    pgs_sql(b, "SET statement_timeout = 3000", 0, NULL);
    ck_assert_int_eq(kg_store_begin(a, &diag), KG_OK);
    clear_reserved(a);
    clear_reserved(b);
    ck_assert_int_eq(rows_of(b, "instanceC"), 2); /* a has not committed */
    ck_assert_int_eq(kg_store_commit(a, &diag), KG_OK);
    ck_assert_int_eq(rows_of(b, "instanceC"), 0);

    /* The sum saturates instead of failing the read. */
    set_reserved(a, K1, INT64_MAX);
    set_reserved(b, K1, INT64_MAX);
    ck_assert_int_eq(reserved(c, K1), INT64_MAX);
    ck_assert_int_eq(listed_reserved(c, K1), INT64_MAX);

    /* Bookkeeping: running gateways keep their caches. */
    ck_assert_int_eq(revision(c), rev);
    kg_store_close(&a);
    kg_store_close(&b);
    kg_store_close(&c);
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
    tcase_add_test(tc, reservations_per_instance_on_postgresql);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_budget_suite());
}
