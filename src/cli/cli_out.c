/* Output of the keygate command: errors, JSON, tables and option values. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/duration.h"
#include "keygate/money.h"

void kg_cli_errorf(const char *fmt, ...)
{
    char msg[KG_DIAG_MAX + 64];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "keygate: %s\n", msg);
}

int kg_cli_fail(kg_err_t rc, const kg_diag_t *diag)
{
    if (diag != NULL && diag->msg[0] != '\0') {
        kg_cli_errorf("%s", diag->msg);
    } else if (rc == KG_ERR_NOMEM) {
        kg_cli_errorf("out of memory");
    } else {
        kg_cli_errorf("failed (%s)", kg_err_name(rc));
    }
    return (rc == KG_ERR_INVAL || rc == KG_ERR_TTL_BOUND) ? KG_EXIT_USAGE
                                                          : KG_EXIT_RUNTIME;
}

int kg_cli_usage_error(const char *command, const char *fmt, ...)
{
    char msg[KG_DIAG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kg_cli_errorf("%s: %s (see 'keygate %s --help')", command, msg, command);
    return KG_EXIT_USAGE;
}

int kg_cli_print_json(json_t *json)
{
    int rc;

    if (json == NULL) {
        kg_cli_errorf("out of memory");
        return KG_EXIT_RUNTIME;
    }
    rc = json_dumpf(json, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(json);
    fputc('\n', stdout);
    return rc == 0 ? KG_EXIT_OK : KG_EXIT_RUNTIME;
}

bool kg_cli_parse_money(const char *opt, const char *s, int64_t *out,
                        bool allow_none)
{
    kg_diag_t diag = {{0}};

    if (allow_none && strcmp(s, "none") == 0) {
        *out = KG_NONE;
        return true;
    }
    if (kg_money_parse(s, out, &diag) != KG_OK) {
        kg_cli_errorf("%s: %s", opt, diag.msg);
        return false;
    }
    return true;
}

bool kg_cli_parse_duration(const char *opt, const char *s, int64_t *out)
{
    kg_diag_t diag = {{0}};

    if (kg_duration_parse(s, out, &diag) != KG_OK) {
        kg_cli_errorf("%s: %s", opt, diag.msg);
        return false;
    }
    return true;
}

bool kg_cli_parse_count(const char *opt, const char *s, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (strcmp(s, "none") == 0) {
        *out = KG_NONE;
        return true;
    }
    if (*s < '0' || *s > '9' || strlen(s) > 12) {
        goto bad;
    }
    v = strtoll(s, &end, 10);
    if (*end != '\0' || v <= 0 || v > KG_RATE_MAX) {
        goto bad;
    }
    *out = (int64_t)v;
    return true;
bad:
    kg_cli_errorf("%s: '%.32s' is not a whole number from 1 to %lld, or "
                  "'none'",
                  opt, s, (long long)KG_RATE_MAX);
    return false;
}

int kg_cli_query_options(const char *cmd, int argc, char **argv,
                         const struct option *opts, kg_query_param_t *params,
                         size_t *n, bool *csv, bool *help)
{
    int longindex = -1;
    int opt;

    *n = 0;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+h", opts, &longindex)) != -1) {
        if (opt == KG_CLI_OPT_HELP || opt == 'h') {
            *help = true;
            return -1;
        }
        if (opt == KG_CLI_OPT_CSV && csv != NULL) {
            *csv = true;
        } else if (opt == KG_CLI_OPT_PARAM && *n < KG_QUERY_PARAMS_MAX &&
                   longindex >= 0) {
            params[*n].name = opts[longindex].name;
            params[*n].value = optarg ? optarg : "true";
            (*n)++;
        } else {
            return kg_cli_usage_error(cmd, "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
        longindex = -1;
    }
    if (optind < argc) {
        return kg_cli_usage_error(cmd, "unexpected argument '%.40s'",
                                  argv[optind]);
    }
    return -1;
}

void kg_cli_table_init(kg_cli_table_t *t, size_t ncols,
                       const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols < KG_CLI_TABLE_MAX_COLS ? ncols : KG_CLI_TABLE_MAX_COLS;
    for (size_t i = 0; i < t->ncols; i++) {
        t->headers[i] = headers[i];
        t->widths[i] = strlen(headers[i]);
    }
}

bool kg_cli_table_add(kg_cli_table_t *t, const char *const *row)
{
    if (t->nrows == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        char **grown = realloc(t->cells, ncap * t->ncols * sizeof(*grown));

        if (grown == NULL) {
            return false;
        }
        t->cells = grown;
        t->cap = ncap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        char *copy = strdup(row[i] ? row[i] : "");
        size_t w;

        if (copy == NULL) {
            for (size_t j = 0; j < i; j++) {
                free(t->cells[t->nrows * t->ncols + j]);
            }
            return false;
        }
        t->cells[t->nrows * t->ncols + i] = copy;
        w = strlen(copy);
        if (w > t->widths[i]) {
            t->widths[i] = w;
        }
    }
    t->nrows++;
    return true;
}

static void cli_table_row(const kg_cli_table_t *t, const char *const *cells)
{
    for (size_t i = 0; i < t->ncols; i++) {
        if (i + 1 == t->ncols) {
            printf("%s\n", cells[i]);
        } else {
            printf("%-*s  ", (int)t->widths[i], cells[i]);
        }
    }
}

void kg_cli_table_print(const kg_cli_table_t *t)
{
    cli_table_row(t, t->headers);
    for (size_t r = 0; r < t->nrows; r++) {
        cli_table_row(t, (const char *const *)&t->cells[r * t->ncols]);
    }
}

void kg_cli_table_free(kg_cli_table_t *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
    memset(t, 0, sizeof(*t));
}
