/* Copying a SQLite store into a PostgreSQL store ('keygate store migrate'). */
#ifndef KEYGATE_STORE_IMPORT_H
#define KEYGATE_STORE_IMPORT_H

#include <stdint.h>

#include "keygate/err.h"

/* The tables copied, in the order their references need. */
#define KG_STORE_IMPORT_NTABLES 8
/* Secrets (and credentials) compared row by row after the copy. */
#define KG_STORE_IMPORT_SAMPLE 200

typedef struct kg_store_import_table {
    const char *table; /* a string literal */
    int64_t source_rows;
    int64_t target_rows; /* counted in the target after the copy */
} kg_store_import_table_t;

typedef struct kg_store_import_report {
    kg_store_import_table_t tables[KG_STORE_IMPORT_NTABLES];
    int64_t sampled;  /* key secrets and credentials compared */
    int64_t revision; /* the target's key revision after the copy */
} kg_store_import_report_t;

/*
 * Copy every row of the SQLite store at sqlite_path (opened, and migrated
 * to this build's schema like any open) into the PostgreSQL store at
 * pg_url (created or migrated), in one transaction of the target with
 * COPY: workspaces, keys, their secrets, workspace credentials (still
 * encrypted: the same secret key file reads them), admin tokens, audit
 * events, usage events and their rollup, ids kept. The target must hold
 * no workspace yet (KG_ERR_EXISTS otherwise: nothing is changed). Then
 * the copy is verified inside the same transaction before it commits: the
 * rows of each table counted on both sides, and up to
 * KG_STORE_IMPORT_SAMPLE random key secrets and credentials found byte
 * for byte in the target; any difference rolls everything back
 * (KG_ERR_STORE_CORRUPT). The daemon should be stopped: rows it writes to
 * the SQLite store during the copy are not copied. Returns KG_OK with
 * *report filled, or an error with diag (never a secret or a password).
 */
kg_err_t kg_store_import_sqlite(const char *sqlite_path, const char *pg_url,
                                kg_store_import_report_t *report,
                                kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_IMPORT_H */
