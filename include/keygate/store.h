/* The key store: one handle on SQLite or PostgreSQL, its schema and
 * transactions. */
#ifndef KEYGATE_STORE_H
#define KEYGATE_STORE_H

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
    /* The instance this handle acts for: NULL is kg_store_instance_id();
     * tests that play several instances in one process give 1 to
     * KG_STORE_INSTANCE_LEN characters of their own. */
    const char *instance;
} kg_store_opts_t;

/*
 * Open the store at location — a file path (SQLite, the embedded default)
 * or a postgresql:// URL — and migrate its schema to the target version.
 * A handle belongs to one thread at a time. Returns KG_OK with *out new
 * (kg_store_close), or one of KG_ERR_STORE_MISSING, KG_ERR_STORE_CORRUPT
 * (not a keygate store), KG_ERR_STORE_VERSION (newer than this build),
 * KG_ERR_STORE (unreachable, unwritable, I/O), KG_ERR_STORE_BUSY, with diag
 * for the operator (never a password).
 */
kg_err_t kg_store_open(const char *location, const kg_store_opts_t *opts,
                       kg_store_t **out, kg_diag_t *diag) KG_MUST_CHECK;

/* Close the handle (NULL is fine), set *store to NULL. */
void kg_store_close(kg_store_t **store);

/* The schema version of the open store. */
int kg_store_schema_version(const kg_store_t *store);

/*
 * Where the store is, for messages: the path, or the URL without its
 * password (borrowed).
 */
const char *kg_store_path(const kg_store_t *store);

/* The backend's name: "sqlite" or "postgresql". */
const char *kg_store_backend_name(const kg_store_t *store);

/*
 * The version of the libpq this process runs with (PQlibVersion, not the
 * headers it was built with), as "15.10" ("9.6.24" before 10), into out
 * of len bytes (KG_STORE_LIBPQ_VERSION_LEN is room enough). Returns out.
 */
#define KG_STORE_LIBPQ_VERSION_LEN 24
const char *kg_store_libpq_version(char *out, size_t len);

/*
 * This process's instance id: 16 lowercase hex characters, random, made
 * once per process start (a restart is a new instance). Instances sharing
 * a PostgreSQL store mark what is theirs alone with it: budget leases,
 * reservations in flight, published rate-window counts.
 */
#define KG_STORE_INSTANCE_LEN 16
const char *kg_store_instance_id(void);

/* The instance the handle acts for (kg_store_opts_t.instance; borrowed). */
const char *kg_store_instance(const kg_store_t *store);

/*
 * A transaction: begin takes the write lock at once on SQLite (BEGIN
 * IMMEDIATE); commit rolls back when it fails.
 */
kg_err_t kg_store_begin(kg_store_t *store, kg_diag_t *diag) KG_MUST_CHECK;
kg_err_t kg_store_commit(kg_store_t *store, kg_diag_t *diag) KG_MUST_CHECK;
void kg_store_rollback(kg_store_t *store);

/*
 * A cheap read that proves the store answers (for /readyz): KG_OK or the
 * store error with diag.
 */
kg_err_t kg_store_ping(kg_store_t *store, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Whether the store pushes changes of the key revision made by any
 * process (PostgreSQL: LISTEN/NOTIFY); SQLite does not, and its readers
 * poll the revision.
 */
bool kg_store_notifies(const kg_store_t *store);

/*
 * Wait up to timeout_ms for a change of the key revision. *changed is true
 * when one was signalled, and also on the first call of a connection (after
 * every reconnect): what changed while nobody listened is unknown, so the
 * caller reads the revision then. Use a handle of its own for this: it
 * holds the connection while it waits. KG_OK, or a store error when the
 * server cannot be reached (the next call reconnects); KG_ERR_STORE on a
 * backend that does not notify.
 */
kg_err_t kg_store_wait_change(kg_store_t *store, int timeout_ms, bool *changed,
                              kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_H */
