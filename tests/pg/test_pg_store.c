/* The PostgreSQL store against a real server, and the contract on both. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keygate/store.h"
#include "keygate/store_admin_tokens.h"
#include "keygate/watch.h"
#include "pg_server.h"
#include "store/pg/pg_store.h"
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

static kg_store_t *open_pg(const char *db)
{
    return pgs_open(&PG, db);
}

START_TEST(migrates_once_and_reopens)
{
    char url[PGS_PATH_MAX];
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *a = NULL, *b = NULL;

    pgs_create_db(&PG, "kg_migrate", url);
    ck_assert_int_eq(kg_store_open(url, &opts, &a, &diag), KG_OK);
    ck_assert_str_eq(kg_store_backend_name(a), "postgresql");
    ck_assert_int_eq(kg_store_schema_version(a), KG_PG_SCHEMA_VERSION);
    ck_assert_int_eq(kg_store_ping(a, &diag), KG_OK);
    /* A second open finds the schema in place and changes nothing. */
    ck_assert_int_eq(kg_store_open(url, &opts, &b, &diag), KG_OK);
    ck_assert_int_eq(kg_store_schema_version(b), KG_PG_SCHEMA_VERSION);
    kg_store_close(&a);
    kg_store_close(&b);
    ck_assert_ptr_null(a);
}
END_TEST

/* Instances starting together: every open migrates or finds it done. */
static void *open_racer(void *arg)
{
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;
    kg_err_t rc = kg_store_open(arg, &opts, &s, &diag);

    kg_store_close(&s);
    return (void *)(intptr_t)rc;
}

START_TEST(concurrent_opens_migrate_once)
{
    char url[PGS_PATH_MAX];
    pthread_t t[6];

    pgs_create_db(&PG, "kg_race", url);
    for (size_t i = 0; i < UT_NROWS(t); i++) {
        ck_assert_int_eq(pthread_create(&t[i], NULL, open_racer, url), 0);
    }
    for (size_t i = 0; i < UT_NROWS(t); i++) {
        void *rc = NULL;

        pthread_join(t[i], &rc);
        ck_assert_int_eq((int)(intptr_t)rc, KG_OK);
    }
}
END_TEST

START_TEST(location_and_errors_never_show_the_password)
{
    char url[PGS_PATH_MAX];
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    /* A password in the URL itself: it works, and is never shown. */
    snprintf(url, sizeof(url),
             "postgresql://keygate_test:wrong-Secret-123@127.0.0.1:%d/postgres",
             PG.port);
    ck_assert_int_eq(kg_store_open(url, &opts, &s, &diag), KG_ERR_STORE);
    ck_assert_ptr_null(strstr(diag.msg, "wrong-Secret-123"));
    ck_assert_ptr_nonnull(strstr(diag.msg, "127.0.0.1"));
    ck_assert_ptr_nonnull(strstr(diag.msg, "keygate_test"));

    s = open_pg("kg_location");
    ck_assert_ptr_null(strstr(kg_store_path(s), "passfile"));
    ck_assert_ptr_nonnull(strstr(kg_store_path(s), "/kg_location"));
    kg_store_close(&s);
}
END_TEST

START_TEST(unreachable_server_is_a_store_error)
{
    char url[PGS_PATH_MAX];
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    /* The server's port +1 (nobody listens there in this test). */
    snprintf(url, sizeof(url),
             "postgresql://keygate_test@127.0.0.1:%d/postgres?passfile=%s",
             PG.port == 65535 ? 1 : PG.port + 1, PG.passfile);
    ck_assert_int_eq(kg_store_open(url, &opts, &s, &diag), KG_ERR_STORE);
    ck_assert_ptr_nonnull(strstr(diag.msg, "cannot connect"));
    ck_assert_ptr_null(s);
}
END_TEST

/* A restart of the server: calls fail while it is down, then the handle
 * reconnects by itself and prepares its statements again. */
START_TEST(reconnects_after_a_server_restart)
{
    kg_store_t *s = open_pg("kg_restart");
    kg_diag_t diag = {{0}};
    uint64_t before = kg_pg_reconnects(s);

    ck_assert_int_eq(kg_store_ping(s, &diag), KG_OK);
    pgs_stop(&PG, true);
    ck_assert_int_eq(kg_store_ping(s, &diag), KG_ERR_STORE);
    ck_assert_int_eq(kg_store_ping(s, &diag), KG_ERR_STORE);
    pgs_restart(&PG);
    ck_assert_msg(kg_store_ping(s, &diag) == KG_OK, "%s", diag.msg);
    ck_assert_uint_gt(kg_pg_reconnects(s), before);
    ck_assert_int_eq(kg_store_ping(s, &diag), KG_OK);
    kg_store_close(&s);
}
END_TEST

/* The admin-token contract, the same on every backend. */
static void admin_token_contract(kg_store_t *s)
{
    kg_store_admin_token_t t, got, *list = NULL;
    kg_diag_t diag = {{0}};
    size_t n = 0;

    memset(&t, 0, sizeof(t));
    snprintf(t.id, sizeof(t.id), "abcdefghij");
    snprintf(t.name, sizeof(t.name), "ops");
    snprintf(t.last4, sizeof(t.last4), "wxyz");
    snprintf(t.created_by, sizeof(t.created_by), "cli:root");
    t.read_only = true;
    for (size_t i = 0; i < sizeof(t.hash); i++) {
        t.hash[i] = (unsigned char)(i * 7 + 1);
    }
    t.created_at = 1700000000;
    t.expires_at = -1;
    ck_assert_int_eq(kg_store_admin_token_insert(s, &t, &diag), KG_OK);
    ck_assert_int_eq(kg_store_admin_token_insert(s, &t, &diag), KG_ERR_EXISTS);
    ck_assert_int_eq(kg_store_admin_token_get(s, "abcdefghij", &got, &diag),
                     KG_OK);
    ck_assert_str_eq(got.name, "ops");
    ck_assert_str_eq(got.created_by, "cli:root");
    ck_assert(got.read_only);
    ck_assert_mem_eq(got.hash, t.hash, sizeof(t.hash));
    ck_assert_int_eq(got.created_at, 1700000000);
    ck_assert_int_eq(got.expires_at, -1);
    ck_assert_int_eq(got.last_used_at, -1);
    ck_assert_int_eq(kg_store_admin_token_get(s, "nope", &got, &diag),
                     KG_ERR_NOT_FOUND);
    /* Touch writes only when the last use is older than the gap. */
    ck_assert_int_eq(kg_store_admin_token_touch(s, t.id, 1700000100, 60, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_admin_token_touch(s, t.id, 1700000130, 60, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_admin_token_get(s, t.id, &got, &diag), KG_OK);
    ck_assert_int_eq(got.last_used_at, 1700000100);
    ck_assert_int_eq(kg_store_admin_token_revoke(s, t.id, 1700000200, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_admin_token_revoke(s, t.id, 1700000300, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_store_admin_token_get(s, t.id, &got, &diag), KG_OK);
    ck_assert_int_eq(got.revoked_at, 1700000200);
    for (size_t i = 0; i < sizeof(got.hash); i++) {
        ck_assert_int_eq(got.hash[i], 0);
    }
    ck_assert_int_eq(kg_store_admin_token_list(s, false, &list, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 0);
    free(list);
    ck_assert_int_eq(kg_store_admin_token_list(s, true, &list, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(list[0].id, "abcdefghij");
    free(list);
}

START_TEST(admin_tokens_on_postgresql)
{
    kg_store_t *s = open_pg("kg_admin_tokens");

    admin_token_contract(s);
    kg_store_close(&s);
}
END_TEST

START_TEST(admin_tokens_on_sqlite)
{
    char dir[UT_PATH_MAX], path[UT_PATH_MAX];
    kg_store_opts_t opts = {KG_STORE_CREATE, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    ut_tmpdir(dir);
    ck_assert_int_eq(
        kg_store_open(ut_join(path, dir, "k.db"), &opts, &s, &diag), KG_OK);
    ck_assert_str_eq(kg_store_backend_name(s), "sqlite");
    admin_token_contract(s);
    kg_store_close(&s);
    ut_tmpdir_remove(dir);
}
END_TEST

/* The revision triggers notify listeners at commit. */
START_TEST(revision_changes_are_notified)
{
    kg_store_t *s = open_pg("kg_notify");
    kg_store_t *w = NULL;
    char url[PGS_PATH_MAX];
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    PGconn *c = kg_pg_conn(s);
    PGnotify *n = NULL;
    PGresult *r;

    snprintf(url, sizeof(url),
             "postgresql://keygate_test@127.0.0.1:%d/kg_notify?passfile=%s",
             PG.port, PG.passfile);
    r = PQexec(c, "LISTEN " KG_PG_CHANNEL);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    ck_assert_int_eq(kg_store_open(url, &opts, &w, &diag), KG_OK);
    r = PQexec(kg_pg_conn(w),
               "INSERT INTO workspaces (id, name, created_at, updated_at) "
               "VALUES ('w1', 'one', 1, 1);"
               "UPDATE workspaces SET mode = 'credits' WHERE id = 'w1'");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    for (int i = 0; i < 50 && n == NULL; i++) {
        ck_assert_int_eq(PQconsumeInput(c), 1);
        n = PQnotifies(c);
        if (n == NULL) {
            usleep(20 * 1000);
        }
    }
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(n->relname, KG_PG_CHANNEL);
    ck_assert_str_eq(n->extra, "1");
    PQfreemem(n);
    kg_store_close(&w);
    kg_store_close(&s);
}
END_TEST

static atomic_int WATCHED;

static void on_change(void *arg)
{
    (void)arg;
    atomic_fetch_add(&WATCHED, 1);
}

/* Wait (bounded) until the callback count passes from; its new value. */
static int watched_after(int from, int max_ms)
{
    for (int waited = 0; waited < max_ms && atomic_load(&WATCHED) <= from;
         waited += 10) {
        usleep(10 * 1000);
    }
    return atomic_load(&WATCHED);
}

/* The watch thread calls back within a second of another process's change,
 * and again once a restarted server is back. */
START_TEST(watch_calls_back_on_changes_and_after_restarts)
{
    kg_store_t *s = open_pg("kg_watch");
    char url[PGS_PATH_MAX];
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_watch_t *w = NULL;
    PGresult *r;
    int n;

    snprintf(url, sizeof(url),
             "postgresql://keygate_test@127.0.0.1:%d/kg_watch?passfile=%s",
             PG.port, PG.passfile);
    atomic_store(&WATCHED, 0);
    ck_assert_int_eq(kg_watch_start(url, &opts, on_change, NULL, &w, &diag),
                     KG_OK);
    ck_assert_ptr_nonnull(w);
    /* The first wait listens and calls back: it may have missed changes. */
    n = watched_after(0, 2000);
    ck_assert_int_ge(n, 1);
    usleep(300 * 1000);
    n = atomic_load(&WATCHED);
    r = PQexec(kg_pg_conn(s),
               "INSERT INTO workspaces (id, name, created_at, updated_at) "
               "VALUES ('w1', 'one', 1, 1);"
               "UPDATE workspaces SET rules = '{}' WHERE id = 'w1'");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    ck_assert_int_gt(watched_after(n, 1000), n);
    /* No change, no call. */
    usleep(500 * 1000);
    n = atomic_load(&WATCHED);
    usleep(500 * 1000);
    ck_assert_int_eq(atomic_load(&WATCHED), n);
    /* Server restart: the watch reconnects and calls back. */
    pgs_stop(&PG, false);
    usleep(300 * 1000);
    n = atomic_load(&WATCHED);
    pgs_restart(&PG);
    ck_assert_int_gt(watched_after(n, 5000), n);
    kg_watch_stop(&w);
    ck_assert_ptr_null(w);
    kg_store_close(&s);
}
END_TEST

/* SQLite does not notify: no thread, its readers poll. */
START_TEST(watch_is_not_started_on_sqlite)
{
    char dir[UT_PATH_MAX], path[UT_PATH_MAX];
    kg_store_opts_t opts = {KG_STORE_CREATE, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_watch_t *w = NULL;
    kg_store_t *s = NULL;
    bool changed = true;

    ut_tmpdir(dir);
    ck_assert_int_eq(kg_watch_start(ut_join(path, dir, "k.db"), &opts,
                                    on_change, NULL, &w, &diag),
                     KG_OK);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(kg_store_open(path, &opts, &s, &diag), KG_OK);
    ck_assert(!kg_store_notifies(s));
    ck_assert_int_eq(kg_store_wait_change(s, 10, &changed, &diag),
                     KG_ERR_STORE);
    ck_assert(!changed);
    kg_store_close(&s);
    ut_tmpdir_remove(dir);
}
END_TEST

/* ---- array parameters ---------------------------------------------- */

/* Text elements that need their quotes (and two their backslashes). */
static const char *const ARRAY_TEXTS[] = {"a\"b",   "c\\d",    "e,f",  "{g}",
                                          "",       NULL,      "NULL", " h ",
                                          "\"\\\"", "\xc3\xa9"};
#define ARRAY_NTEXTS (sizeof(ARRAY_TEXTS) / sizeof(*ARRAY_TEXTS))

/* What the server makes of an array text: element i into got[i] (NULL
 * for a NULL element; freed by the caller), the count returned. */
static size_t array_round_trip(kg_store_t *s, const char *text, char **got,
                               size_t max)
{
    const char *params[] = {text};
    PGresult *res = PQexecParams(
        kg_pg_conn(s),
        "SELECT e FROM unnest($1::text[]) WITH ORDINALITY AS u(e, i) "
        "ORDER BY i",
        1, NULL, params, NULL, NULL, 0);
    size_t n;

    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s",
                  PQresultErrorMessage(res));
    n = (size_t)PQntuples(res);
    ck_assert_uint_le(n, max);
    for (size_t i = 0; i < n; i++) {
        got[i] = PQgetisnull(res, (int)i, 0)
                     ? NULL
                     : strdup(PQgetvalue(res, (int)i, 0));
        ck_assert(PQgetisnull(res, (int)i, 0) || got[i] != NULL);
    }
    PQclear(res);
    return n;
}

START_TEST(array_parameters_escape_their_elements)
{
    kg_store_t *s = open_pg("kg_arrays");
    kg_pg_array_t a;
    const char *text = "x";
    char *got[ARRAY_NTEXTS];
    char *big = NULL;
    size_t n;

    kg_pg_array_init(&a);
    /* Empty, then quoted text, NULL unquoted, integers. */
    kg_pg_array_start(&a);
    ck_assert_int_eq(kg_pg_array_finish(&a, &text), KG_OK);
    ck_assert_str_eq(text, "{}");
    kg_pg_array_start(&a);
    for (size_t i = 0; i < ARRAY_NTEXTS; i++) {
        kg_pg_array_text(&a, ARRAY_TEXTS[i]);
    }
    ck_assert_int_eq(kg_pg_array_finish(&a, &text), KG_OK);
    ck_assert_str_eq(text, "{\"a\\\"b\",\"c\\\\d\",\"e,f\",\"{g}\",\"\",NULL,"
                           "\"NULL\",\" h \",\"\\\"\\\\\\\"\",\"\xc3\xa9\"}");
    /* The server reads each element back as it was given. */
    n = array_round_trip(s, text, got, ARRAY_NTEXTS);
    ck_assert_uint_eq(n, ARRAY_NTEXTS);
    for (size_t i = 0; i < n; i++) {
        if (ARRAY_TEXTS[i] == NULL) {
            ck_assert_ptr_null(got[i]);
        } else {
            ck_assert_ptr_nonnull(got[i]);
            ck_assert_str_eq(got[i], ARRAY_TEXTS[i]);
        }
        free(got[i]);
    }
    /* Started again: a new text, the memory kept. */
    kg_pg_array_start(&a);
    kg_pg_array_int(&a, 0);
    kg_pg_array_int(&a, -5);
    kg_pg_array_int(&a, INT64_MAX);
    kg_pg_array_int(&a, INT64_MIN);
    kg_pg_array_opt_int(&a, -1);
    kg_pg_array_opt_int(&a, 7);
    ck_assert_int_eq(kg_pg_array_finish(&a, &text), KG_OK);
    ck_assert_str_eq(text, "{0,-5,9223372036854775807,-9223372036854775808,"
                           "NULL,7}");
    /* Past KG_PG_ARRAY_MAX: the finish fails, the next start is clean. */
    big = malloc(KG_PG_ARRAY_MAX / 2);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', KG_PG_ARRAY_MAX / 2 - 1);
    big[KG_PG_ARRAY_MAX / 2 - 1] = '\0';
    kg_pg_array_start(&a);
    kg_pg_array_text(&a, big);
    kg_pg_array_text(&a, big);
    kg_pg_array_int(&a, 1);
    ck_assert_int_eq(kg_pg_array_finish(&a, &text), KG_ERR_NOMEM);
    ck_assert_ptr_null(text);
    kg_pg_array_start(&a);
    kg_pg_array_text(&a, big);
    ck_assert_int_eq(kg_pg_array_finish(&a, &text), KG_OK);
    ck_assert_uint_eq(strlen(text), KG_PG_ARRAY_MAX / 2 + 3);
    free(big);
    kg_pg_array_free(&a);
    kg_pg_array_free(&a);
    kg_store_close(&s);
}
END_TEST

static Suite *pg_store_suite(void)
{
    Suite *s = suite_create("pg_store");
    TCase *tc = tcase_create("pg");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, migrates_once_and_reopens);
    tcase_add_test(tc, concurrent_opens_migrate_once);
    tcase_add_test(tc, location_and_errors_never_show_the_password);
    tcase_add_test(tc, unreachable_server_is_a_store_error);
    tcase_add_test(tc, admin_tokens_on_postgresql);
    tcase_add_test(tc, admin_tokens_on_sqlite);
    tcase_add_test(tc, revision_changes_are_notified);
    tcase_add_test(tc, reconnects_after_a_server_restart);
    tcase_add_test(tc, watch_calls_back_on_changes_and_after_restarts);
    tcase_add_test(tc, watch_is_not_started_on_sqlite);
    tcase_add_test(tc, array_parameters_escape_their_elements);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_store_suite());
}
