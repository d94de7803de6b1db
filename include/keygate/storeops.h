/* Operating the store: online backups to a file and the status report. */
#ifndef KEYGATE_STOREOPS_H
#define KEYGATE_STOREOPS_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "keygate/config.h"
#include "keygate/err.h"
#include "keygate/store.h"
#include "keygate/store_ops.h"
#include "keygate/usagedb.h"

/* kg_storeops_backup flags. */
#define KG_STOREOPS_REPLACE 0x1u /* replace an existing file */

/* A backup that was written. */
typedef struct kg_storeops_backup {
    char path[PATH_MAX]; /* absolute */
    int64_t bytes;
    int64_t pages;
    int64_t duration_ms;
    bool recorded;         /* its record is in the store */
    kg_diag_t record_diag; /* why not, when it is not */
} kg_storeops_backup_t;

/*
 * Back the store up into dest: a consistent copy of its committed state
 * (kg_store_backup_copy) written to a new file "<dir>/.<name>.tmp-XXXXXX"
 * next to dest, mode 0600, checked, flushed to disk (fsync), then renamed
 * onto dest and the directory flushed: dest is either the complete copy or
 * untouched. Then the backup is recorded in the store (at, path, size,
 * actor; for 'keygate store status'); when that fails the file stays
 * good and out->recorded is false with out->record_diag saying why.
 * Refuses a dest that is a directory, the store or one of its companion
 * files, and an existing file unless flags has KG_STOREOPS_REPLACE
 * (KG_ERR_EXISTS). Returns KG_OK with *out filled, KG_ERR_INVAL,
 * KG_ERR_EXISTS, KG_ERR_IO or a store error (diag); on error nothing is
 * left behind.
 */
kg_err_t kg_storeops_backup(kg_store_t *store, const char *dest, unsigned flags,
                            const char *actor, kg_storeops_backup_t *out,
                            kg_diag_t *diag) KG_MUST_CHECK;

/* The files 'keygate store status' reports, in this order. */
typedef enum kg_storeops_file_kind {
    KG_STOREOPS_FILE_DB,
    KG_STOREOPS_FILE_WAL,
    KG_STOREOPS_FILE_SHM,
    KG_STOREOPS_FILE_JOURNAL_A,
    KG_STOREOPS_FILE_JOURNAL_B,
    KG_STOREOPS_FILE_HASH_KEY,
    KG_STOREOPS_FILE_SECRET_KEY,
    KG_STOREOPS_NFILES
} kg_storeops_file_kind_t;

typedef struct kg_storeops_file {
    const char *name; /* "store", "wal", "shm", "usage-a", ... (literal);
                         NULL: not a file of this store (the store's own
                         files on PostgreSQL) */
    char path[PATH_MAX];
    bool present;
    int64_t bytes;
    int mode; /* permission bits */
} kg_storeops_file_t;

/* The state of a store, for 'keygate store status'. */
typedef struct kg_storeops_status {
    char path[PATH_MAX];
    int schema_version;
    kg_storeops_file_t files[KG_STOREOPS_NFILES];
    kg_store_space_t space;
    kg_store_count_t counts[KG_STORE_NTABLES];
    int64_t oldest_event_ms; /* -1: no event */
    int64_t newest_event_ms;
    int64_t retention; /* [usage] retention, seconds; 0 = for ever */
    kg_usagedb_journal_info_t journal;
    uint64_t journal_pending; /* journal records not (yet) in the store */
    bool has_backup;
    kg_store_backup_info_t backup; /* the newest, when has_backup */
} kg_storeops_status_t;

/*
 * Fill *out for the open store and the configuration that names it (key
 * files, retention): file sizes and modes, space, row counts, the usage
 * events' span, the usage journal (its records, and how many of them are
 * not in the store: the backlog a running writer has not committed yet,
 * or what the next start replays), the last backup. Reads only. Returns
 * KG_OK, or a store error or KG_ERR_IO (diag).
 */
kg_err_t kg_storeops_status(kg_store_t *store, const kg_config_t *cfg,
                            kg_storeops_status_t *out,
                            kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The status as a new JSON object (docs/cli.md, 'store status --json');
 * now (unix seconds) gives the last backup's age. NULL on no memory.
 */
json_t *kg_storeops_status_to_json(const kg_storeops_status_t *st, int64_t now);

#endif /* KEYGATE_STOREOPS_H */
