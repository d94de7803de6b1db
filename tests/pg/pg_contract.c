/* The contract tests' helpers: one body on both backends, own statements. */
#include "pg_contract.h"

#include "store/pg/pg_store.h"
#include "store/sqlite/sqlite_store.h"
#include "unit_util.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

void pgs_run_pg(pgs_t *pg, const char *name, pgs_body_fn body)
{
    kg_store_t *s = pgs_open(pg, name);

    body(s);
    kg_store_close(&s);
}

void pgs_run_sqlite(pgs_body_fn body)
{
    char dir[UT_PATH_MAX];
    kg_store_t *s;

    ut_tmpdir(dir);
    s = pgs_open_sqlite(dir);
    body(s);
    kg_store_close(&s);
    ut_tmpdir_remove(dir);
}

bool pgs_is_pg(const kg_store_t *s)
{
    return strcmp(kg_store_backend_name(s), "postgresql") == 0;
}

static int64_t pgs_sql_pg(kg_store_t *s, const char *sql, int n,
                          const char *const *args)
{
    PGresult *res =
        PQexecParams(kg_pg_conn(s), sql, n, NULL, args, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    int64_t v = -1;

    ck_assert_msg(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s",
                  sql, PQresultErrorMessage(res));
    if (st == PGRES_TUPLES_OK && PQntuples(res) > 0 &&
        !PQgetisnull(res, 0, 0)) {
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return v;
}

static int64_t pgs_sql_sqlite(kg_store_t *s, const char *sql, int n,
                              const char *const *args)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    int rc = sqlite3_prepare_v2(kg_sqlite_db(s), sql, -1, &st, NULL);

    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(kg_sqlite_db(s)));
    for (int i = 0; i < n; i++) {
        sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_TRANSIENT);
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        v = sqlite3_column_int64(st, 0);
    }
    ck_assert_msg(rc == SQLITE_ROW || rc == SQLITE_DONE, "%s: %s", sql,
                  sqlite3_errmsg(kg_sqlite_db(s)));
    sqlite3_finalize(st);
    return v;
}

int64_t pgs_sql(kg_store_t *s, const char *sql, int n, const char *const *args)
{
    ck_assert_int_le(n, PGS_SQL_MAX_ARGS);
    return pgs_is_pg(s) ? pgs_sql_pg(s, sql, n, args)
                        : pgs_sql_sqlite(s, sql, n, args);
}

void pgs_add_key(kg_store_t *s, const char *id, const char *ws_id,
                 const char *status, const char *rules)
{
    const char *args[] = {id, ws_id, status, rules};

    pgs_sql(s,
            "INSERT INTO api_keys (id, workspace_id, name, prefix, last4, "
            "status, created_at, updated_at, rules) VALUES ($1, $2, 'k', "
            "'kg_', 'abcd', $3, 1, 1, $4)",
            4, args);
}
