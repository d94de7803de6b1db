/* The SQLite backend's internals: its handle, cached statements and helpers. */
#ifndef KEYGATE_STORE_SQLITE_STORE_H
#define KEYGATE_STORE_SQLITE_STORE_H

#include <sqlite3.h>
#include <stdint.h>

#include "store/backend.h"

/*
 * Only src/store/sqlite/ (and tests of the SQLite backend) include this:
 * the modules above the store never see SQL or sqlite3 types.
 */

/* The backend's table (src/store/sqlite/sqlite.c). */
extern const kg_store_backend_t kg_sqlite_backend;

/* The entity tables, one per file of src/store/sqlite/. */
extern const kg_store_admin_tokens_ops_t kg_sqlite_admin_tokens_ops;
extern const kg_store_keys_ops_t kg_sqlite_keys_ops;

extern const kg_store_workspaces_ops_t kg_sqlite_workspaces_ops;
extern const kg_store_credentials_ops_t kg_sqlite_credentials_ops;
extern const kg_store_budget_ops_t kg_sqlite_budget_ops;

extern const kg_store_usage_ops_t kg_sqlite_usage_ops;
extern const kg_store_audit_ops_t kg_sqlite_audit_ops;
extern const kg_store_maint_ops_t kg_sqlite_maint_ops;

/* The underlying connection of an SQLite handle (borrowed). */
sqlite3 *kg_sqlite_db(kg_store_t *store);

/*
 * A prepared statement for sql, compiled once per handle and cached by the
 * address of sql, which must be a string literal or otherwise live as long
 * as the store. The statement is reset and unbound; call kg_sqlite_reset()
 * when done with it. Returns NULL on error (diag set).
 */
sqlite3_stmt *kg_sqlite_stmt(kg_store_t *store, const char *sql,
                             kg_diag_t *diag);

/* Reset and clear a statement from kg_sqlite_stmt(). */
void kg_sqlite_reset(sqlite3_stmt *stmt);

/*
 * Map an SQLite result code to a keygate error, with diag describing the
 * failed action (no SQL text, no bound values). SQLITE_OK/DONE/ROW → KG_OK.
 */
kg_err_t kg_sqlite_error(kg_store_t *store, int sqlite_rc, const char *action,
                         kg_diag_t *diag);

/* Execute a statement that returns no rows; KG_OK or a mapped error. */
kg_err_t kg_sqlite_exec(kg_store_t *store, sqlite3_stmt *stmt,
                        const char *action, kg_diag_t *diag) KG_MUST_CHECK;

/* Bind helpers: NULL for an absent string, or for a negative int64. */
int kg_sqlite_bind_text(sqlite3_stmt *stmt, int idx, const char *s);
int kg_sqlite_bind_opt_int(sqlite3_stmt *stmt, int idx, int64_t v);

/* Column helpers: "" for NULL text, -1 for NULL integers. */
const char *kg_sqlite_col_text(sqlite3_stmt *stmt, int col);
int64_t kg_sqlite_col_opt_int(sqlite3_stmt *stmt, int col);

#endif /* KEYGATE_STORE_SQLITE_STORE_H */
