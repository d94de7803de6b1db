/* Shared state and helpers of the keygate command's subcommands. */
#ifndef KEYGATE_CLI_H
#define KEYGATE_CLI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/config.h"
#include "keygate/err.h"
#include "keygate/keyhash.h"
#include "keygate/keys.h"
#include "keygate/query.h"
#include "keygate/store.h"
#include "keygate/validate.h"

/* Exit codes. */
#define KG_EXIT_OK      0
#define KG_EXIT_RUNTIME 1
#define KG_EXIT_USAGE   2

typedef struct kg_cli {
    const char *config_path; /* --config, or NULL */
    bool json;               /* --json */
    bool need_credentials;   /* read provider secrets (serve, config check) */
    kg_config_t *cfg;        /* owned, loaded by kg_cli_open */
    kg_store_t *store;       /* owned */
    kg_keyhash_t *hashkey;   /* owned */
    kg_keys_ctx_t keys;      /* borrows the above */
    char actor[KG_ACTOR_MAX + 1];
} kg_cli_t;

/* A subcommand: argv[0] is its own name. Returns an exit code. */
typedef int (*kg_cli_fn)(kg_cli_t *cli, int argc, char **argv);

typedef struct kg_cli_command {
    const char *name;
    kg_cli_fn fn;
    const char *summary;
} kg_cli_command_t;

/* The entry point used by main(). */
int kg_cli_main(int argc, char **argv);

/* Command groups. */
int kg_cli_keys(kg_cli_t *cli, int argc, char **argv);
int kg_cli_workspaces(kg_cli_t *cli, int argc, char **argv);
int kg_cli_config(kg_cli_t *cli, int argc, char **argv);
int kg_cli_init(kg_cli_t *cli, int argc, char **argv);
int kg_cli_admin_tokens(kg_cli_t *cli, int argc, char **argv);
int kg_cli_usage(kg_cli_t *cli, int argc, char **argv);
int kg_cli_audit(kg_cli_t *cli, int argc, char **argv);
int kg_cli_store(kg_cli_t *cli, int argc, char **argv);
/* store migrate (cli_store_migrate.c). */
int kg_cli_store_migrate(kg_cli_t *cli, int argc, char **argv);

/*
 * Run the subcommand named argv[0] from table (NULL-terminated), or print
 * the group's help. group is e.g. "keys".
 */
int kg_cli_dispatch(kg_cli_t *cli, const char *group,
                    const kg_cli_command_t *table, int argc, char **argv);

/* Load the configuration only. Returns an exit code (0 = ok). */
int kg_cli_load_config(kg_cli_t *cli);

/* Load the configuration and open the store (not the hash key). Exit
 * code. */
int kg_cli_open_store(kg_cli_t *cli);

/* Load the configuration, open the store and the hash key. Exit code. */
int kg_cli_open(kg_cli_t *cli);

/* Release what kg_cli_open acquired. */
void kg_cli_close(kg_cli_t *cli);

/* Print "keygate: <message>" to stderr. */
void kg_cli_errorf(const char *fmt, ...) KG_PRINTF(1, 2);

/* Report a failed call (diag's message, else the error's name); returns
 * KG_EXIT_USAGE for bad input (INVAL, TTL_BOUND), else KG_EXIT_RUNTIME. */
int kg_cli_fail(kg_err_t rc, const kg_diag_t *diag);

/* Report a usage error naming the command's help; returns KG_EXIT_USAGE. */
int kg_cli_usage_error(const char *command, const char *fmt, ...)
    KG_PRINTF(2, 3);

/* Print json (stolen reference) to stdout, indented. Returns an exit code. */
int kg_cli_print_json(json_t *json);

/* Value parsers for options; each prints the error and returns false. */
bool kg_cli_parse_money(const char *opt, const char *s, int64_t *out,
                        bool allow_none);
bool kg_cli_parse_duration(const char *opt, const char *s, int64_t *out);
bool kg_cli_parse_count(const char *opt, const char *s, int64_t *out);

/*
 * The options of a read query (keygate usage, keygate audit). An option
 * whose val is KG_CLI_OPT_PARAM becomes the query parameter named like the
 * long option (a flag without argument: "true"), so the CLI and the admin
 * API share one vocabulary and one validation; "--csv" sets *csv (csv may
 * be NULL: refused) and "--help"/-h sets *help. opts must include csv and
 * help with those vals. Returns -1 to go on, or an exit code after
 * printing the error.
 */
#define KG_CLI_OPT_PARAM 0x4B01
#define KG_CLI_OPT_CSV   0x4B02
#define KG_CLI_OPT_HELP  0x4B03
int kg_cli_query_options(const char *cmd, int argc, char **argv,
                         const struct option *opts, kg_query_param_t *params,
                         size_t *n, bool *csv, bool *help);

/* A text table printed with aligned columns. */
#define KG_CLI_TABLE_MAX_COLS 10
typedef struct kg_cli_table {
    size_t ncols;
    const char *headers[KG_CLI_TABLE_MAX_COLS];
    size_t widths[KG_CLI_TABLE_MAX_COLS];
    char **cells; /* row-major, owned */
    size_t nrows;
    size_t cap;
} kg_cli_table_t;

void kg_cli_table_init(kg_cli_table_t *t, size_t ncols,
                       const char *const *headers);
/* Append a row of ncols strings (copied). false on no memory. */
bool kg_cli_table_add(kg_cli_table_t *t, const char *const *row);
void kg_cli_table_print(const kg_cli_table_t *t);
void kg_cli_table_free(kg_cli_table_t *t);

#endif /* KEYGATE_CLI_H */
