/* keygate store migrate against a real server: a CLI-made store, copied. */
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "pg_server.h"

static pgs_t PG;
static char *DIR_;
static char CONF[512], DB[512];

/* Run the keygate CLI with the test's configuration and the arguments
 * that follow in (stdin, or NULL), up to a NULL; *res owned by caller. */
static void cli(kg_harness_result_t *res, const char *in, ...)
{
    const char *argv[16] = {kg_harness_bin("KEYGATE_BIN"), "--config", CONF};
    const char *env[] = {"PATH=/usr/bin:/bin", NULL};
    kg_harness_cmd_t cmd = {argv, env, in, in ? strlen(in) : 0, 60000};
    size_t n = 3;
    va_list ap;

    va_start(ap, in);
    while (n < 15 && (argv[n] = va_arg(ap, const char *)) != NULL) {
        n++;
    }
    va_end(ap);
    argv[n] = NULL;
    ck_assert_int_eq(kg_harness_run(&cmd, res), 0);
}

/* cli() that must succeed. */
#define CLI_OK(...)                                                          \
    do {                                                                     \
        kg_harness_result_t r_;                                              \
        cli(&r_, __VA_ARGS__, NULL);                                         \
        ck_assert_msg(r_.status == 0, "keygate: %d: %s", r_.status, r_.err); \
        kg_harness_result_free(&r_);                                         \
    } while (0)

static void suite_setup(void)
{
    char text[2048];

    pgs_start(&PG);
    DIR_ = kg_harness_tmpdir_new("pgmigrate");
    ck_assert_ptr_nonnull(DIR_);
    kg_harness_path(CONF, sizeof(CONF), DIR_, "keygate.ini");
    kg_harness_path(DB, sizeof(DB), DIR_, "keygate.db");
    snprintf(
        text, sizeof(text),
        "[store]\npath = %s\n[security]\nhash_key_file = %s/hash.key\n"
        "secret_key_file = %s/secret.key\n"
        "[provider mock]\ntype = openai\nbase_url = http://127.0.0.1:9/v1\n"
        "[model gpt-test]\nprovider = mock\ninput_price = 1\n"
        "output_price = 2\n",
        DB, DIR_, DIR_);
    ck_assert_int_eq(kg_harness_write_file(CONF, text, strlen(text), 0600), 0);
}

static void suite_teardown(void)
{
    pgs_destroy(&PG);
    if (DIR_ != NULL) {
        kg_harness_rmtree(DIR_);
        free(DIR_);
    }
}

/* Rows of table in the SQLite store. */
static long long sqlite_rows(const char *table)
{
    char sql[128];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long n = -1;

    ck_assert_int_eq(sqlite3_open_v2(DB, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* One integer from sql on the PostgreSQL database at url. */
static long long pg_value(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    PGresult *r;
    long long v;

    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql,
                  PQerrorMessage(c));
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

START_TEST(copies_a_store_made_by_the_cli)
{
    static const char *const tables[] = {
        "workspaces",   "api_keys",     "key_secrets",  "workspace_credentials",
        "admin_tokens", "audit_events", "usage_events", "usage_rollup"};
    char url[PGS_PATH_MAX], sql[128], id[64];
    kg_harness_result_t res;
    json_error_t jerr;
    json_t *doc, *rows;

    CLI_OK(NULL, "init");
    CLI_OK(NULL, "workspaces", "create", "acme", "--mode", "api-keys");
    CLI_OK("sk-provider-secret-0001\n", "workspaces", "credential", "set",
           "acme", "--provider", "mock", "--stdin");
    cli(&res, NULL, "--json", "keys", "create", "--name", "first", NULL);
    ck_assert_msg(res.status == 0, "%s", res.err);
    doc = json_loads(res.out, 0, &jerr);
    ck_assert_ptr_nonnull(doc);
    snprintf(
        id, sizeof(id), "%s",
        json_string_value(json_object_get(json_object_get(doc, "key"), "id")));
    json_decref(doc);
    kg_harness_result_free(&res);
    CLI_OK(NULL, "keys", "create", "--name", "second", "--workspace", "acme");
    /* Two secrets for one key: the old one in its grace period. */
    CLI_OK(NULL, "keys", "rotate", id, "--grace", "1h");
    CLI_OK(NULL, "admin-tokens", "create", "--name", "ops");

    /* Served traffic, as the usage writer leaves it; an error text with
     * the characters COPY's format escapes. */
    {
        sqlite3 *db = NULL;
        char ins[512];

        ck_assert_int_eq(sqlite3_open(DB, &db), SQLITE_OK);
        for (int i = 0; i < 50; i++) {
            snprintf(ins, sizeof(ins),
                     "INSERT INTO usage_events (request_id, key_id, "
                     "workspace_id, at_ms, operation, model, provider, status, "
                     "prompt_tokens, cost, latency_ms, error_code) SELECT "
                     "'req-%d', id, workspace_id, %d, 'chat', 'gpt-test', "
                     "'mock', 200, 10, 25, 3, %s FROM api_keys WHERE name = "
                     "'first'",
                     i, 1700000000 + i, i == 7 ? "'a\\b\tc\nd'" : "NULL");
            ck_assert_int_eq(sqlite3_exec(db, ins, NULL, NULL, NULL),
                             SQLITE_OK);
        }
        ck_assert_int_eq(
            sqlite3_exec(db,
                         "INSERT INTO usage_rollup (key_id, hour, model, "
                         "provider, workspace_id, requests, cost) SELECT id, "
                         "472222, 'gpt-test', 'mock', workspace_id, 50, 1250 "
                         "FROM api_keys WHERE name = 'first'",
                         NULL, NULL, NULL),
            SQLITE_OK);
        sqlite3_close(db);
    }
    pgs_create_db(&PG, "kg_migrated", url);
    {
        const char *argv[] = {kg_harness_bin("KEYGATE_BIN"),
                              "--config",
                              CONF,
                              "--json",
                              "store",
                              "migrate",
                              "--from",
                              DB,
                              "--to",
                              url,
                              NULL};
        kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 60000};

        ck_assert_int_eq(kg_harness_run(&cmd, &res), 0);
    }
    ck_assert_msg(res.status == 0, "migrate: %s", res.err);
    doc = json_loads(res.out, 0, &jerr);
    ck_assert_ptr_nonnull(doc);
    rows = json_object_get(doc, "rows");
    for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++) {
        long long n = sqlite_rows(tables[i]);

        ck_assert_int_eq(json_integer_value(json_object_get(rows, tables[i])),
                         n);
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i]);
        ck_assert_int_eq(pg_value(url, sql), n);
    }
    ck_assert_int_ge(json_integer_value(json_object_get(doc, "sampled")), 3);
    ck_assert_int_eq(sqlite_rows("api_keys"), 2);
    ck_assert_int_eq(sqlite_rows("key_secrets"), 3);
    ck_assert_int_eq(sqlite_rows("usage_events"), 50);
    ck_assert_int_eq(
        pg_value(url, "SELECT count(*) FROM usage_events WHERE error_code = "
                      "E'a\\\\b\\tc\\nd' AND request_id = 'req-7'"),
        1);
    ck_assert_int_eq(pg_value(url, "SELECT sum(cost) FROM usage_events"), 1250);
    ck_assert_int_eq(sqlite_rows("workspace_credentials"), 1);
    /* The provider credential travels encrypted, never in clear. */
    ck_assert_int_eq(
        pg_value(url, "SELECT count(*) FROM workspace_credentials WHERE "
                      "position('sk-provider' in encode(ciphertext, "
                      "'escape')) > 0"),
        0);
    /* New audit events continue after the copied ids. */
    ck_assert_int_eq(pg_value(url,
                              "SELECT (nextval(pg_get_serial_sequence("
                              "'audit_events', 'id')) > (SELECT max(id) FROM "
                              "audit_events))::int"),
                     1);
    ck_assert_ptr_null(strstr(res.out, "sk-provider"));
    json_decref(doc);
    kg_harness_result_free(&res);

    /* A second copy into the same store is refused; nothing changes. */
    {
        const char *argv[] = {kg_harness_bin("KEYGATE_BIN"),
                              "--config",
                              CONF,
                              "store",
                              "migrate",
                              "--from",
                              DB,
                              "--to",
                              url,
                              NULL};
        kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 60000};

        ck_assert_int_eq(kg_harness_run(&cmd, &res), 0);
    }
    ck_assert_int_eq(res.status, 1);
    ck_assert_ptr_nonnull(strstr(res.err, "already holds a store"));
    kg_harness_result_free(&res);
    ck_assert_int_eq(pg_value(url, "SELECT count(*) FROM api_keys"), 2);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    kg_harness_result_t res;

    cli(&res, NULL, "store", "migrate", "--from", DB, NULL);
    ck_assert_int_eq(res.status, 2);
    ck_assert_ptr_nonnull(strstr(res.err, "--to"));
    kg_harness_result_free(&res);
    cli(&res, NULL, "store", "migrate", "--from", DB, "--to", "/tmp/x.db",
        NULL);
    ck_assert_int_eq(res.status, 2);
    ck_assert_ptr_nonnull(strstr(res.err, "postgresql://"));
    kg_harness_result_free(&res);
}
END_TEST

static Suite *pg_migrate_suite(void)
{
    Suite *s = suite_create("pg_migrate");
    TCase *tc = tcase_create("migrate");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, copies_a_store_made_by_the_cli);
    tcase_add_test(tc, bad_arguments_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pg_migrate_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
