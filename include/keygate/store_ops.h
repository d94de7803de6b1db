/* The store's operations queries: online backup, its record, sizes, counts. */
#ifndef KEYGATE_STORE_OPS_H
#define KEYGATE_STORE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"

/*
 * Backend-neutral: what 'keygate store backup' and 'keygate store status'
 * ask of the store. The SQLite implementation is src/store/sqlite/ops.c;
 * docs/store.md says how a backup stays consistent while the daemon
 * writes.
 */

/* A backup copies this many pages per step (4 MiB of 4 KiB pages). */
#define KG_STORE_BACKUP_STEP_PAGES 1024
/* Longest path a backup record keeps. */
#define KG_STORE_BACKUP_PATH_MAX 4095
/* Longest actor a backup record keeps ("cli:<user>"). */
#define KG_STORE_BACKUP_ACTOR_MAX 64
/* Tables whose rows kg_store_counts counts. */
#define KG_STORE_NTABLES 9

/* One backup, as recorded in the store it copied. */
typedef struct kg_store_backup_info {
    int64_t at; /* unix seconds: when the copy was complete */
    char path[KG_STORE_BACKUP_PATH_MAX + 1];
    int64_t bytes; /* size of the file written */
    int64_t pages;
    int64_t duration_ms;
    char actor[KG_STORE_BACKUP_ACTOR_MAX + 1];
} kg_store_backup_info_t;

/* The rows of one table. */
typedef struct kg_store_count {
    const char *table; /* a string literal */
    int64_t rows;
} kg_store_count_t;

/* The database's space: pages in use and free. */
typedef struct kg_store_space {
    int64_t page_size; /* bytes */
    int64_t pages;     /* in the database (the main file once checkpointed) */
    int64_t free_pages;
} kg_store_space_t;

/*
 * Online backup is the SQLite store's: a file copied page by page. Another
 * backend (PostgreSQL has its own tools) may lack it and then answers
 * KG_ERR_STORE, "not supported by the <name> store"; the other operations
 * below every backend has.
 *
 * Copy the store's committed state into dest, an existing empty file the
 * caller made (mode 0600), which becomes a complete store. The copy is one
 * consistent snapshot: it is taken in steps of KG_STORE_BACKUP_STEP_PAGES
 * pages under one read transaction on store, during which other
 * connections (the daemon) go on reading and writing; their commits are
 * not in the copy. The copy is then checked (quick_check). *pages gets the
 * pages copied. Returns KG_OK, a store error for store, or KG_ERR_IO for
 * dest (diag); on error dest holds no usable store.
 */
kg_err_t kg_store_backup_copy(kg_store_t *store, const char *dest,
                              int64_t *pages, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Record a completed backup (one transaction). KG_OK or a store error.
 * PostgreSQL keeps no backup records: KG_ERR_STORE, not supported.
 */
kg_err_t kg_store_backup_record(kg_store_t *store,
                                const kg_store_backup_info_t *info,
                                kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The newest backup record into *out, *found telling whether there is
 * one (never on PostgreSQL). KG_OK or a store error (diag).
 */
kg_err_t kg_store_backup_last(kg_store_t *store, kg_store_backup_info_t *out,
                              bool *found, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The rows of each of keygate's KG_STORE_NTABLES tables into out, in a
 * fixed order (workspaces first; store_backups last, 0 rows on PostgreSQL,
 * which lacks it). Counting reads every row of the large tables: about a
 * second per 10 million usage events. KG_OK or a store error (diag).
 */
kg_err_t kg_store_counts(kg_store_t *store, kg_store_count_t *out,
                         kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Page size, page count and free pages into *out. On PostgreSQL: the
 * server's block size, the database's size (pg_database_size) in blocks
 * rounded up, and 0 free pages. KG_OK or a store error.
 */
kg_err_t kg_store_space(kg_store_t *store, kg_store_space_t *out,
                        kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_OPS_H */
