/* The 'keygate store' subcommands: online backup and the store's status. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/clock.h"
#include "keygate/duration.h"
#include "keygate/storeops.h"
#include "keygate/timefmt.h"

/* Room for a size such as "1023.9 KiB". */
#define STORE_SIZE_STRLEN 24

static const char store_backup_help[] =
    "Usage: keygate [--config FILE] store backup FILE [--force] [--json]\n\n"
    "Copy the store into FILE while the daemon keeps serving: a consistent\n"
    "snapshot of what is committed (SQLite's online backup), written to a\n"
    "temporary file next to FILE (mode 0600), checked, flushed, then renamed\n"
    "onto FILE. The backup is recorded in the store ('keygate store "
    "status').\n\n"
    "  --force   replace FILE when it exists\n\n"
    "The backup does not hold the hash key and secret key files: keep\n"
    "copies of them with it (docs/operations.md, Backups).\n";

static const char store_status_help[] =
    "Usage: keygate [--config FILE] store status [--json]\n\n"
    "The store's files (sizes and modes, with the usage journal and the key\n"
    "files), its pages, the rows of each table, the span of the usage\n"
    "events and [usage] retention, the usage journal's backlog (records\n"
    "not yet in the store) and the last backup. Reads only.\n";

/* "512 B", "12.0 KiB", "3.4 GiB". */
static const char *store_size(int64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    size_t u = 0;

    if (bytes < 1024) {
        snprintf(buf, len, "%lld B", (long long)bytes);
        return buf;
    }
    v /= 1024.0;
    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(*units)) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

static bool store_is_help(int argc, char **argv)
{
    return argc == 2 &&
           (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
}

static int store_backup_print(const kg_cli_t *cli,
                              const kg_storeops_backup_t *b)
{
    char size[STORE_SIZE_STRLEN];

    if (!b->recorded) {
        kg_cli_errorf("the backup is complete, but it could not be recorded "
                      "in the store: %s",
                      b->record_diag.msg);
    }
    if (cli->json) {
        return kg_cli_print_json(json_pack(
            "{s:s, s:s, s:I, s:I, s:I, s:b, s:[s, s]}", "store",
            cli->cfg->store_path, "path", b->path, "bytes",
            (json_int_t)b->bytes, "pages", (json_int_t)b->pages, "durationMs",
            (json_int_t)b->duration_ms, "recorded", b->recorded, "notIncluded",
            cli->cfg->hash_key_file, cli->cfg->secret_key_file));
    }
    printf("Backed up %s to %s (%s, %lld pages) in %.1f s.\n",
           cli->cfg->store_path, b->path,
           store_size(b->bytes, size, sizeof(size)), (long long)b->pages,
           (double)b->duration_ms / 1000.0);
    printf("Not in the backup; keep copies of these with it (mode 0600):\n"
           "  hash key:   %s (without it no key verifies)\n"
           "  secret key: %s (without it no workspace credential decrypts)\n",
           cli->cfg->hash_key_file, cli->cfg->secret_key_file);
    return KG_EXIT_OK;
}

static int store_backup(kg_cli_t *cli, int argc, char **argv)
{
    kg_storeops_backup_t b;
    kg_diag_t diag = {{0}};
    const char *dest = NULL;
    unsigned flags = 0;
    kg_err_t rc;
    int ex;

    if (store_is_help(argc, argv)) {
        printf("%s", store_backup_help);
        return KG_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0) {
            flags |= KG_STOREOPS_REPLACE;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return kg_cli_usage_error("store backup", "unknown option '%.40s'",
                                      argv[i]);
        } else if (dest == NULL) {
            dest = argv[i];
        } else {
            return kg_cli_usage_error("store backup",
                                      "unexpected argument '%.40s'", argv[i]);
        }
    }
    if (dest == NULL) {
        return kg_cli_usage_error("store backup", "FILE is missing");
    }
    ex = kg_cli_open_store(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_storeops_backup(cli->store, dest, flags, cli->actor, &b, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    return store_backup_print(cli, &b);
}

static bool store_files_table(const kg_storeops_status_t *st)
{
    static const char *const headers[] = {"FILE", "SIZE", "MODE", "PATH"};
    kg_cli_table_t t;
    bool ok = true;

    kg_cli_table_init(&t, 4, headers);
    for (int i = 0; ok && i < KG_STOREOPS_NFILES; i++) {
        const kg_storeops_file_t *f = &st->files[i];
        char size[STORE_SIZE_STRLEN];
        char mode[8];
        const char *row[4] = {f->name, "missing", "-", f->path};

        if (f->name == NULL) {
            continue; /* not a file of this store (PostgreSQL) */
        }
        if (f->present) {
            snprintf(mode, sizeof(mode), "%04o", (unsigned)f->mode);
            row[1] = store_size(f->bytes, size, sizeof(size));
            row[2] = mode;
        }
        ok = kg_cli_table_add(&t, row);
    }
    if (ok) {
        kg_cli_table_print(&t);
    }
    kg_cli_table_free(&t);
    return ok;
}

static bool store_rows_table(const kg_storeops_status_t *st)
{
    static const char *const headers[] = {"TABLE", "ROWS"};
    kg_cli_table_t t;
    bool ok = true;

    kg_cli_table_init(&t, 2, headers);
    for (size_t i = 0; ok && i < KG_STORE_NTABLES; i++) {
        char rows[24];
        const char *row[2] = {st->counts[i].table, rows};

        snprintf(rows, sizeof(rows), "%lld", (long long)st->counts[i].rows);
        ok = kg_cli_table_add(&t, row);
    }
    if (ok) {
        kg_cli_table_print(&t);
    }
    kg_cli_table_free(&t);
    return ok;
}

/* The lines about usage events, the journal and the last backup. */
static void store_status_lines(const kg_storeops_status_t *st, int64_t now)
{
    const kg_usagedb_journal_info_t *j = &st->journal;
    char a[KG_TIME_STRLEN];
    char b[KG_TIME_STRLEN];
    char d[KG_DURATION_STRLEN];
    char size[STORE_SIZE_STRLEN];

    if (st->oldest_event_ms >= 0) {
        printf("Usage events:  from %s to %s\n",
               kg_time_format_short(st->oldest_event_ms / 1000, a, sizeof(a)),
               kg_time_format_short(st->newest_event_ms / 1000, b, sizeof(b)));
    } else {
        printf("Usage events:  none\n");
    }
    if (st->retention > 0) {
        printf("Retention:     %s (older usage events are deleted; the "
               "hourly totals stay)\n",
               kg_duration_format(st->retention, d, sizeof(d)));
    } else {
        printf("Retention:     none (every usage event is kept)\n");
    }
    printf("Usage journal: %s in %llu record%s, %llu not yet in the store",
           store_size((int64_t)(j->bytes[0] + j->bytes[1]), size, sizeof(size)),
           (unsigned long long)j->records, j->records == 1 ? "" : "s",
           (unsigned long long)st->journal_pending);
    if (j->invalid > 0 || j->torn_bytes > 0) {
        printf(" (%llu invalid, %llu bytes after the last whole record)",
               (unsigned long long)j->invalid,
               (unsigned long long)j->torn_bytes);
    }
    printf("\n");
    if (!st->has_backup) {
        printf("Last backup:   never ('keygate store backup FILE')\n");
        return;
    }
    printf("Last backup:   %s (%s ago) to %s, %s, by %s\n",
           kg_time_format(st->backup.at, a, sizeof(a)),
           kg_duration_format(now > st->backup.at ? now - st->backup.at : 0, d,
                              sizeof(d)),
           st->backup.path, store_size(st->backup.bytes, size, sizeof(size)),
           st->backup.actor);
}

static int store_status(kg_cli_t *cli, int argc, char **argv)
{
    kg_storeops_status_t *st = NULL;
    kg_diag_t diag = {{0}};
    int64_t now = kg_clock_now();
    kg_err_t rc;
    int ex;

    if (store_is_help(argc, argv)) {
        printf("%s", store_status_help);
        return KG_EXIT_OK;
    }
    if (argc != 1) {
        return kg_cli_usage_error("store status", "unexpected argument '%.40s'",
                                  argv[1]);
    }
    ex = kg_cli_open_store(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    st = malloc(sizeof(*st));
    if (st == NULL) {
        return kg_cli_fail(KG_ERR_NOMEM, NULL);
    }
    rc = kg_storeops_status(cli->store, cli->cfg, st, &diag);
    if (rc != KG_OK) {
        ex = kg_cli_fail(rc, &diag);
    } else if (cli->json) {
        ex = kg_cli_print_json(kg_storeops_status_to_json(st, now));
    } else {
        printf("Store:         %s (schema %d, %lld pages of %lld bytes, %lld "
               "free)\n\n",
               st->path, st->schema_version, (long long)st->space.pages,
               (long long)st->space.page_size, (long long)st->space.free_pages);
        ex = store_files_table(st) ? KG_EXIT_OK : KG_EXIT_RUNTIME;
        printf("\n");
        if (ex == KG_EXIT_OK) {
            ex = store_rows_table(st) ? KG_EXIT_OK : KG_EXIT_RUNTIME;
        }
        printf("\n");
        store_status_lines(st, now);
    }
    free(st);
    return ex;
}

static const kg_cli_command_t store_commands[] = {
    {"backup", store_backup, "copy the store into a file, online"},
    {"status", store_status,
     "files, rows, usage journal backlog and the last backup"},
    {"migrate", kg_cli_store_migrate,
     "copy a SQLite store into a PostgreSQL store"},
    {NULL, NULL, NULL},
};

int kg_cli_store(kg_cli_t *cli, int argc, char **argv)
{
    return kg_cli_dispatch(cli, "store", store_commands, argc, argv);
}
