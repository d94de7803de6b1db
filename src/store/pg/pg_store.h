/* The PostgreSQL backend's internals: handle, statements and helpers. */
#ifndef KEYGATE_STORE_PG_STORE_H
#define KEYGATE_STORE_PG_STORE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/buf.h"
#include "store/backend.h"

/*
 * Only src/store/pg/ (and tests of the PostgreSQL backend) include this.
 * Every statement is a string literal prepared once per connection
 * (PQprepare, named by its place in the handle's cache) and run with
 * PQexecPrepared: values travel as parameters, never in SQL text.
 */

/* The newest schema version of the PostgreSQL backend (its own sequence:
 * version 1 is the whole schema of SQLite's version 8; version 2 adds what
 * instances sharing the store keep per instance). */
#define KG_PG_SCHEMA_VERSION 2
/* Parameters one statement may take. */
#define KG_PG_MAX_PARAMS 40
/* The notification channel the revision triggers signal. */
#define KG_PG_CHANNEL "keygate_revision"
/*
 * The oldest updated_at of a key_reservations row that still counts, as
 * an SQL expression: KG_STORE_RESERVATION_TTL_S before the transaction's
 * start, on the server's clock (instances never compare their own).
 */
#define KG_PG_STR_(x) #x
#define KG_PG_STR(x)  KG_PG_STR_(x)
#define KG_PG_RESERVATION_CUTOFF \
    "(now() - interval '" KG_PG_STR(KG_STORE_RESERVATION_TTL_S) " seconds')"

/* The backend's table (src/store/pg/pg.c). */
extern const kg_store_backend_t kg_pg_backend;

/* The entity tables, one per file of src/store/pg/. */
extern const kg_store_admin_tokens_ops_t kg_pg_admin_tokens_ops;
extern const kg_store_workspaces_ops_t kg_pg_workspaces_ops;
extern const kg_store_credentials_ops_t kg_pg_credentials_ops;
extern const kg_store_budget_ops_t kg_pg_budget_ops;
extern const kg_store_usage_ops_t kg_pg_usage_ops;
extern const kg_store_audit_ops_t kg_pg_audit_ops;
extern const kg_store_maint_ops_t kg_pg_maint_ops;
extern const kg_store_keys_ops_t kg_pg_keys_ops;
extern const kg_store_leases_ops_t kg_pg_leases_ops;
extern const kg_store_rates_ops_t kg_pg_rates_ops;

/* The values of one statement's parameters, in order ($1, $2, ...). */
typedef struct kg_pg_params {
    int n;
    const char *values[KG_PG_MAX_PARAMS];
    int lengths[KG_PG_MAX_PARAMS];
    int formats[KG_PG_MAX_PARAMS]; /* 0 text, 1 binary (bytea) */
    char ints[KG_PG_MAX_PARAMS][24];
} kg_pg_params_t;

/* Append a parameter: text (NULL → SQL NULL), an integer, an integer that
 * is NULL when negative, a boolean, or bytes (bytea, sent in binary). The
 * strings and bytes are borrowed until the statement has run. */
void kg_pg_param_text(kg_pg_params_t *p, const char *s);
void kg_pg_param_int(kg_pg_params_t *p, int64_t v);
void kg_pg_param_opt_int(kg_pg_params_t *p, int64_t v);
void kg_pg_param_bool(kg_pg_params_t *p, int v);
void kg_pg_param_bytes(kg_pg_params_t *p, const void *b, size_t len);

/* Bytes the text of one array parameter may take, its braces included. */
#define KG_PG_ARRAY_MAX ((size_t)4 << 20)

/*
 * The text of one array parameter ({...}, sent as a text parameter and
 * cast to an array type in the statement), built element by element:
 * init once, then for each statement start, add its elements and finish;
 * free at the end. start empties the text and keeps its memory, so one
 * builder serves statement after statement. Adding never fails by
 * itself: the first failure (memory, or KG_PG_ARRAY_MAX passed) is kept
 * and finish reports it.
 */
typedef struct kg_pg_array {
    kg_buf_t buf;
    size_t n;     /* elements since start */
    kg_err_t err; /* the first failure since start */
} kg_pg_array_t;

void kg_pg_array_init(kg_pg_array_t *a);
void kg_pg_array_start(kg_pg_array_t *a);

/* Append an element: text (quoted, a backslash before each quote and
 * backslash; NULL → the element NULL), an integer, or an integer that is
 * NULL when negative. */
void kg_pg_array_text(kg_pg_array_t *a, const char *s);
void kg_pg_array_int(kg_pg_array_t *a, int64_t v);
void kg_pg_array_opt_int(kg_pg_array_t *a, int64_t v);

/*
 * Close the array: *text is its NUL-terminated text, owned by a and valid
 * until the next start or free. KG_OK, or KG_ERR_NOMEM (*text NULL) when
 * an append since start failed: out of memory or past KG_PG_ARRAY_MAX.
 */
kg_err_t kg_pg_array_finish(kg_pg_array_t *a, const char **text) KG_MUST_CHECK;

/* Free the text; a is as after init. */
void kg_pg_array_free(kg_pg_array_t *a);

/*
 * Run the prepared statement for sql (a string literal: the cache key is
 * its address) with params (NULL: none). Reconnects first when the
 * connection was lost outside a transaction. On KG_OK *res is the result
 * (rows or a command's; PQclear it), else NULL with diag naming action:
 * KG_ERR_EXISTS for a unique or foreign-key violation, KG_ERR_STORE_BUSY for
 * a serialization failure or deadlock, KG_ERR_STORE otherwise (the server
 * unreachable included). diag never holds SQL text or parameter values.
 */
kg_err_t kg_pg_query(kg_store_t *store, const char *sql,
                     const kg_pg_params_t *params, PGresult **res,
                     const char *action, kg_diag_t *diag) KG_MUST_CHECK;

/* kg_pg_query for a statement whose rows are not needed; *changed (may be
 * NULL) gets the rows it changed. */
kg_err_t kg_pg_exec(kg_store_t *store, const char *sql,
                    const kg_pg_params_t *params, int64_t *changed,
                    const char *action, kg_diag_t *diag) KG_MUST_CHECK;

/* Column helpers: "" for NULL text, -1 for NULL integers, 0/1 booleans
 * ('t'/'f' or an integer); bytes decodes a bytea of exactly len bytes into
 * out (false when NULL or another length). */
const char *kg_pg_col_text(const PGresult *res, int row, int col);
int64_t kg_pg_col_int(const PGresult *res, int row, int col);
int kg_pg_col_bool(const PGresult *res, int row, int col);
int kg_pg_col_bytes(const PGresult *res, int row, int col, void *out,
                    size_t len);

/* The underlying connection (borrowed), e.g. for LISTEN. */
PGconn *kg_pg_conn(kg_store_t *store);

/* How many times the handle reconnected: a caller that caches what the
 * store said compares it to know it may have missed notifications. */
uint64_t kg_pg_reconnects(const kg_store_t *store);

/* The PostgreSQL backend's opener. */
kg_err_t kg_pg_open(const char *url, const kg_store_opts_t *opts,
                    kg_store_t **out, kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_PG_STORE_H */
