/* The PostgreSQL implementation of the store's operations queries. */
#include "keygate/store_ops.h"
#include "store/pg/pg_store.h"

#include <string.h>

/*
 * PostgreSQL has no online backup here (pg_dump and the server's own tools
 * copy it) and its schema no store_backups table: backup_copy is NULL,
 * recording a backup is not supported, and there is never a last backup.
 */

/* The counts of SQLite's table list, one round trip; store_backups, which
 * this schema lacks, counts 0 rows. */
static const char *const ops_tables[KG_STORE_NTABLES] = {
    "workspaces",    "api_keys",     "key_secrets",  "workspace_credentials",
    "admin_tokens",  "audit_events", "usage_events", "usage_rollup",
    "store_backups",
};
static const char ops_sql_counts[] =
    "SELECT (SELECT count(*) FROM workspaces), "
    "(SELECT count(*) FROM api_keys), (SELECT count(*) FROM key_secrets), "
    "(SELECT count(*) FROM workspace_credentials), "
    "(SELECT count(*) FROM admin_tokens), "
    "(SELECT count(*) FROM audit_events), "
    "(SELECT count(*) FROM usage_events), "
    "(SELECT count(*) FROM usage_rollup), 0";
/* The database's size on disk, in the server's blocks. */
static const char ops_sql_space[] =
    "SELECT current_setting('block_size')::bigint, "
    "pg_database_size(current_database())";

static kg_err_t ops_backup_record(kg_store_t *store,
                                  const kg_store_backup_info_t *info,
                                  kg_diag_t *diag)
{
    (void)info;
    return kg_store_unsupported(store, "backup records", diag);
}

static kg_err_t ops_backup_last(kg_store_t *store, kg_store_backup_info_t *out,
                                bool *found, kg_diag_t *diag)
{
    (void)store;
    (void)diag;
    memset(out, 0, sizeof(*out));
    *found = false;
    return KG_OK;
}

static kg_err_t ops_counts(kg_store_t *store, kg_store_count_t *out,
                           kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_err_t rc =
        kg_pg_query(store, ops_sql_counts, NULL, &res, "counting rows", diag);

    for (int i = 0; i < KG_STORE_NTABLES; i++) {
        out[i].table = ops_tables[i];
        out[i].rows =
            rc == KG_OK && PQntuples(res) == 1 ? kg_pg_col_int(res, 0, i) : 0;
    }
    PQclear(res);
    return rc;
}

/* page_size is the server's block size, pages the database's size in
 * blocks (rounded up), free_pages 0: PostgreSQL reuses its free space
 * inside the tables and reports none apart. */
static kg_err_t ops_space(kg_store_t *store, kg_store_space_t *out,
                          kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_err_t rc = kg_pg_query(store, ops_sql_space, NULL, &res,
                              "reading the database size", diag);

    memset(out, 0, sizeof(*out));
    if (rc == KG_OK && PQntuples(res) == 1) {
        int64_t block = kg_pg_col_int(res, 0, 0);
        int64_t bytes = kg_pg_col_int(res, 0, 1);

        if (block > 0 && bytes >= 0) {
            out->page_size = block;
            out->pages = (bytes + block - 1) / block;
        }
    }
    PQclear(res);
    return rc;
}

const kg_store_maint_ops_t kg_pg_maint_ops = {
    .backup_copy = NULL,
    .backup_record = ops_backup_record,
    .backup_last = ops_backup_last,
    .counts = ops_counts,
    .space = ops_space,
};
