/* The contract tests' helpers: one body on both backends, own statements. */
#ifndef KEYGATE_TESTS_PG_CONTRACT_H
#define KEYGATE_TESTS_PG_CONTRACT_H

#include <stdbool.h>
#include <stdint.h>

#include "keygate/store.h"
#include "pg_server.h"

/* A contract test's body: every assertion it makes holds on each backend. */
typedef void (*pgs_body_fn)(kg_store_t *s);

/* Run body on a fresh database name of pg's server (pgs_open), then close
 * it. */
void pgs_run_pg(pgs_t *pg, const char *name, pgs_body_fn body);

/* Run body on a fresh SQLite store in a temporary directory, then close it
 * and remove the directory. */
void pgs_run_sqlite(pgs_body_fn body);

/* The most parameters pgs_sql binds. */
#define PGS_SQL_MAX_ARGS 8

/* Whether s is a PostgreSQL store (else SQLite). */
bool pgs_is_pg(const kg_store_t *s);

/*
 * Run sql on s's own connection: a statement valid on both backends whose
 * text parameters $1..$n each appear once and in order (SQLite numbers
 * them as they appear), bound to args. Returns the first column of its
 * first row as an integer, -1 when there is no row or it is NULL. Fails
 * the test on an error. For rows of entities a suite does not test (a
 * key's row in a workspace) and for columns no operation reads.
 */
int64_t pgs_sql(kg_store_t *s, const char *sql, int n, const char *const *args);

/* Add a key row (id, workspace ws_id, status, rules) with pgs_sql: until
 * every backend has the keys entity, a row for the suites of others. */
void pgs_add_key(kg_store_t *s, const char *id, const char *ws_id,
                 const char *status, const char *rules);

#endif /* KEYGATE_TESTS_PG_CONTRACT_H */
