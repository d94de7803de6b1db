/* The SQLite store: opening, schema migrations and cached statements. */
#ifndef KEYGATE_STORE_H
#define KEYGATE_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "keygate/err.h"

/* 'KGAT': marks a file as a keygate store (PRAGMA application_id). */
#define KG_STORE_APPLICATION_ID 0x4B474154
/* The newest schema version this build knows. */
#define KG_STORE_SCHEMA_VERSION 8
/*
 * The version that brought usage_rollup (and dropped usage_hourly): tests
 * that migrate a store holding usage events start one below it.
 */
#define KG_STORE_VERSION_USAGE_ROLLUP 6

/* Open flags. */
#define KG_STORE_CREATE 0x1u /* create the file (mode 0600) if missing */

typedef struct kg_store kg_store_t;

typedef struct kg_store_opts {
    unsigned flags;
    int busy_timeout_ms;
    /* Migrate up to this version; 0 = KG_STORE_SCHEMA_VERSION (tests). */
    int target_version;
} kg_store_opts_t;

/*
 * Open the store at path: WAL, busy timeout, foreign keys, then migrate the
 * schema to the target version. A handle belongs to one thread at a time.
 * Returns KG_OK with *out new (kg_store_close), or one of
 * KG_ERR_STORE_MISSING, KG_ERR_STORE_CORRUPT (not a keygate store),
 * KG_ERR_STORE_VERSION (newer than this build), KG_ERR_STORE (unwritable,
 * I/O), KG_ERR_STORE_BUSY, with diag for the operator.
 */
kg_err_t kg_store_open(const char *path, const kg_store_opts_t *opts,
                       kg_store_t **out, kg_diag_t *diag) KG_MUST_CHECK;

/* Finalize statements, close, set *store to NULL. */
void kg_store_close(kg_store_t **store);

/* The schema version of the open store. */
int kg_store_schema_version(kg_store_t *store);

/* The path the store was opened with (borrowed). */
const char *kg_store_path(const kg_store_t *store);

/*
 * A prepared statement for sql, compiled once per handle and cached by the
 * address of sql, which must be a string literal or otherwise live as long
 * as the store. The statement is reset and unbound; call kg_store_reset()
 * when done with it. Returns NULL on error (diag set).
 */
sqlite3_stmt *kg_store_stmt(kg_store_t *store, const char *sql,
                            kg_diag_t *diag);

/* Reset and clear a statement from kg_store_stmt(). */
void kg_store_reset(sqlite3_stmt *stmt);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. */
kg_err_t kg_store_begin(kg_store_t *store, kg_diag_t *diag) KG_MUST_CHECK;
kg_err_t kg_store_commit(kg_store_t *store, kg_diag_t *diag) KG_MUST_CHECK;
void kg_store_rollback(kg_store_t *store);

/*
 * Map an SQLite result code to a keygate error, with diag describing the
 * failed action (no SQL text, no bound values). SQLITE_OK/DONE/ROW → KG_OK.
 */
kg_err_t kg_store_error(kg_store_t *store, int sqlite_rc, const char *action,
                        kg_diag_t *diag);

/* Execute a statement that returns no rows; KG_OK or a mapped error. */
kg_err_t kg_store_exec_stmt(kg_store_t *store, sqlite3_stmt *stmt,
                            const char *action, kg_diag_t *diag) KG_MUST_CHECK;

/* Bind helpers: NULL for an absent string, or for a negative int64. */
int kg_store_bind_text(sqlite3_stmt *stmt, int idx, const char *s);
int kg_store_bind_opt_int(sqlite3_stmt *stmt, int idx, int64_t v);

/* Column helpers: "" for NULL text, -1 for NULL integers. */
const char *kg_store_col_text(sqlite3_stmt *stmt, int col);
int64_t kg_store_col_opt_int(sqlite3_stmt *stmt, int col);

/*
 * A cheap read that proves the store answers (for /readyz): KG_OK or the
 * store error with diag.
 */
kg_err_t kg_store_ping(kg_store_t *store, kg_diag_t *diag) KG_MUST_CHECK;

/* The underlying handle, for code that needs sqlite3 directly (borrowed). */
sqlite3 *kg_store_db(kg_store_t *store);

#endif /* KEYGATE_STORE_H */
