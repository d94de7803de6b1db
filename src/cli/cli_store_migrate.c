/* 'keygate store migrate': copy a SQLite store into a PostgreSQL store. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "keygate/store_import.h"

static const char store_migrate_help[] =
    "Usage: keygate [--json] store migrate --from FILE.db --to URL\n\n"
    "Copy every row of the SQLite store FILE.db (workspaces, keys and their\n"
    "hashed secrets, encrypted workspace credentials, admin tokens, audit\n"
    "and usage) into the PostgreSQL store at URL (postgresql://...), in one\n"
    "transaction, then verify it before it commits: the rows of each table\n"
    "on both sides, and a sample of key secrets and credentials byte for\n"
    "byte. The target must hold no store yet. Stop the daemon first; keep\n"
    "the hash key and secret key files: the copy needs the same ones.\n"
    "The password comes from libpq's passfile or PGPASSWORD, not the URL\n"
    "(docs/scale-out.md).\n";

static int store_migrate_print(const kg_cli_t *cli, const char *from,
                               const kg_store_import_report_t *r)
{
    if (cli->json) {
        json_t *tables = json_object();

        for (size_t i = 0; tables != NULL && i < KG_STORE_IMPORT_NTABLES; i++) {
            json_object_set_new(tables, r->tables[i].table,
                                json_integer(r->tables[i].target_rows));
        }
        return kg_cli_print_json(json_pack(
            "{s:s, s:o, s:I, s:I}", "from", from, "rows", tables, "sampled",
            (json_int_t)r->sampled, "revision", (json_int_t)r->revision));
    }
    printf("Copied %s:\n", from);
    for (size_t i = 0; i < KG_STORE_IMPORT_NTABLES; i++) {
        printf("  %-22s %lld rows\n", r->tables[i].table,
               (long long)r->tables[i].target_rows);
    }
    printf("Verified: row counts of every table, %lld secrets and "
           "credentials compared.\n",
           (long long)r->sampled);
    return KG_EXIT_OK;
}

int kg_cli_store_migrate(kg_cli_t *cli, int argc, char **argv)
{
    kg_store_import_report_t report;
    kg_diag_t diag = {{0}};
    const char *from = NULL, *to = NULL;
    kg_err_t rc;

    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s", store_migrate_help);
        return KG_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char **slot = strcmp(argv[i], "--from") == 0 ? &from
                            : strcmp(argv[i], "--to") == 0 ? &to
                                                           : NULL;

        if (slot == NULL) {
            return kg_cli_usage_error("store migrate",
                                      "unexpected argument '%.40s'", argv[i]);
        }
        if (i + 1 >= argc) {
            return kg_cli_usage_error("store migrate", "%s needs a value",
                                      argv[i]);
        }
        *slot = argv[++i];
    }
    if (from == NULL || to == NULL) {
        return kg_cli_usage_error("store migrate",
                                  "both --from FILE.db and --to URL are "
                                  "needed");
    }
    if (strncmp(to, "postgresql://", 13) != 0 &&
        strncmp(to, "postgres://", 11) != 0) {
        return kg_cli_usage_error("store migrate",
                                  "--to must be a postgresql:// URL");
    }
    rc = kg_store_import_sqlite(from, to, &report, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    return store_migrate_print(cli, from, &report);
}
