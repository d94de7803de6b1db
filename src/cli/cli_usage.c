/* The 'keygate usage' commands: totals, time series and request history. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/clock.h"
#include "keygate/money.h"
#include "keygate/timefmt.h"
#include "keygate/usage_query.h"

#define USAGE_OPT(name)                                 \
    {                                                   \
        name, required_argument, NULL, KG_CLI_OPT_PARAM \
    }
#define USAGE_COMMON_OPTIONS                                       \
    USAGE_OPT("key"), USAGE_OPT("workspace"), USAGE_OPT("model"),  \
        USAGE_OPT("provider"), USAGE_OPT("from"), USAGE_OPT("to"), \
        {"csv", no_argument, NULL, KG_CLI_OPT_CSV},                \
    {                                                              \
        "help", no_argument, NULL, KG_CLI_OPT_HELP                 \
    }

static const char usage_filter_help[] =
    "  --key ID            one key (its id or access key kg_<id>)\n"
    "  --workspace W       one workspace (name or id)\n"
    "  --model M           one model (its public name)\n"
    "  --provider P        one provider\n"
    "  --from T, --to T    the time range [from, to): RFC 3339, a date, "
    "'now',\n"
    "                      or a duration back from now (24h, 30d)\n"
    "  --csv               CSV instead of a table (--json: JSON)\n";

static const char usage_help[] =
    "Usage: keygate usage [--key ID] [--workspace W] [--model M]\n"
    "                     [--provider P] [--from T] [--to T]\n"
    "                     [--by hour|day|month] [--group "
    "key|model|provider|workspace]\n"
    "                     [--csv | --json]\n"
    "       keygate usage events [filters] [--status S] [--errors]\n"
    "                     [--limit N] [--cursor C] [--csv | --json]\n\n"
    "Requests, errors, tokens, cost and latency (p50/p95) per hour, day or\n"
    "calendar month (UTC), in total and per group. By default: by day over "
    "the\nlast 30 days (hour: 24 hours, month: 12 months).\n\n";

static const char usage_series_help[] =
    "  --by B              bucket: hour, day (default) or month\n"
    "  --group G           a series per key, model, provider or workspace\n";

static const char usage_events_help[] =
    "Usage: keygate usage events [--key ID] [--workspace W] [--model M]\n"
    "                            [--provider P] [--from T] [--to T]\n"
    "                            [--status S] [--errors] [--limit N]\n"
    "                            [--cursor C] [--csv | --json]\n\n"
    "The request history, newest first, one page at a time.\n\n";

static const char usage_events_opt_help[] =
    "  --status S          one status (429) or a class (4xx)\n"
    "  --errors            only requests answered with a status >= 400\n"
    "  --limit N           events per page, 1-1000 (default 100)\n"
    "  --cursor C          the next page: the cursor the previous one "
    "printed\n";

/* "-" for a JSON null, else the integer. */
static const char *usage_ms(json_t *v, char *buf, size_t len)
{
    if (!json_is_integer(v)) {
        snprintf(buf, len, "-");
        return buf;
    }
    snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return buf;
}

static const char *usage_int(json_t *v, char *buf, size_t len)
{
    snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return buf;
}

/* The STATS columns of one JSON object into cells[0..6]. */
#define USAGE_STATS_COLS 7
typedef struct usage_cells {
    char c[USAGE_STATS_COLS][32];
} usage_cells_t;

static void usage_stats_cells(json_t *st, usage_cells_t *out,
                              const char **cells)
{
    static const char *const fields[USAGE_STATS_COLS] = {
        "requests", "errors",       "totalTokens",  NULL,
        "cost",     "latencyMsP50", "latencyMsP95",
    };

    for (int i = 0; i < USAGE_STATS_COLS; i++) {
        json_t *v = fields[i] ? json_object_get(st, fields[i]) : NULL;

        if (i == 3) { /* prompt/completion */
            snprintf(
                out->c[i], sizeof(out->c[i]),
                "%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
                json_integer_value(json_object_get(st, "promptTokens")),
                json_integer_value(json_object_get(st, "completionTokens")));
        } else if (json_is_string(v)) {
            snprintf(out->c[i], sizeof(out->c[i]), "%s", json_string_value(v));
        } else if (i >= 5) {
            usage_ms(v, out->c[i], sizeof(out->c[i]));
        } else {
            usage_int(v, out->c[i], sizeof(out->c[i]));
        }
        cells[i] = out->c[i];
    }
}

/* The human form, read from the library's JSON (one source of truth). */
static int usage_print_table(json_t *j)
{
    static const char *const headers[] = {
        "GROUP",  "START",    "REQUESTS", "ERRORS", "TOKENS",
        "IN/OUT", "COST USD", "P50 MS",   "P95 MS",
    };
    json_t *groups = json_object_get(j, "groups");
    bool grouped =
        strcmp(json_string_value(json_object_get(j, "groupBy")), "none") != 0;
    size_t first = grouped ? 0 : 1; /* no GROUP column without groups */
    kg_cli_table_t table;
    usage_cells_t cells;
    const char *row[9];
    json_t *g;
    size_t gi;
    size_t shown = 0;
    size_t empty = 0;
    int ex = KG_EXIT_OK;

    printf("Usage from %s to %s by %s%s%s\n\nTotal",
           json_string_value(json_object_get(j, "from")),
           json_string_value(json_object_get(j, "to")),
           json_string_value(json_object_get(j, "bucket")),
           grouped ? ", per " : "",
           grouped ? json_string_value(json_object_get(j, "groupBy")) : "");
    usage_stats_cells(json_object_get(j, "totals"), &cells, row);
    printf(": %s requests, %s errors, %s tokens (in/out %s), %s USD, latency "
           "p50 %s ms, p95 %s ms\n\n",
           row[0], row[1], row[2], row[3], row[4], row[5], row[6]);
    kg_cli_table_init(&table, 9 - first, headers + first);
    json_array_foreach(groups, gi, g)
    {
        json_t *pt;
        size_t bi;

        json_array_foreach(json_object_get(g, "series"), bi, pt)
        {
            char start[KG_TIME_STRLEN];
            int64_t t = 0;

            if (json_integer_value(json_object_get(pt, "requests")) == 0) {
                empty++;
                continue;
            }
            if (kg_time_parse(json_string_value(json_object_get(pt, "start")),
                              &t, NULL) != KG_OK) {
                t = 0;
            }
            row[0] = json_string_value(json_object_get(g, "group"));
            row[1] = kg_time_format_short(t, start, sizeof(start));
            usage_stats_cells(pt, &cells, row + 2);
            if (!kg_cli_table_add(&table, row + first)) {
                ex = KG_EXIT_RUNTIME;
            }
            shown++;
        }
    }
    if (shown > 0) {
        kg_cli_table_print(&table);
    }
    if (empty > 0) {
        printf("%s%zu bucket%s without requests not shown (--json and --csv "
               "have every bucket).\n",
               shown > 0 ? "\n" : "", empty, empty == 1 ? "" : "s");
    }
    kg_cli_table_free(&table);
    return ex;
}

static int usage_print_csv(const kg_usage_result_t *r)
{
    char buf[KG_USAGE_CSV_ROW_MAX];

    if (kg_usage_result_csv_header(buf, sizeof(buf)) == 0) {
        return KG_EXIT_RUNTIME;
    }
    fputs(buf, stdout);
    for (size_t g = 0; g < r->ngroups; g++) {
        for (size_t b = 0; b < r->nbuckets; b++) {
            if (kg_usage_result_csv_row(r, g, b, buf, sizeof(buf)) == 0) {
                return KG_EXIT_RUNTIME;
            }
            fputs(buf, stdout);
        }
    }
    return fflush(stdout) == 0 ? KG_EXIT_OK : KG_EXIT_RUNTIME;
}

static int usage_series(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        USAGE_COMMON_OPTIONS,
        USAGE_OPT("by"),
        USAGE_OPT("group"),
        {NULL, 0, NULL, 0},
    };
    kg_query_param_t params[KG_QUERY_PARAMS_MAX];
    kg_usage_query_t q;
    kg_usage_result_t *r = NULL;
    kg_diag_t diag = {{0}};
    bool csv = false;
    bool help = false;
    size_t n = 0;
    json_t *j;
    kg_err_t rc;
    int ex;

    ex = kg_cli_query_options("usage", argc, argv, opts, params, &n, &csv,
                              &help);
    if (help) {
        printf("%s%s%s", usage_help, usage_filter_help, usage_series_help);
        return KG_EXIT_OK;
    }
    if (ex != -1) {
        return ex;
    }
    if (csv && cli->json) {
        return kg_cli_usage_error("usage", "--csv and --json exclude each "
                                           "other");
    }
    rc = kg_usage_query_parse(params, n, kg_clock_now(), &q, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_usage_query_run(cli->store, &q, &r, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (csv) {
        ex = usage_print_csv(r);
    } else {
        j = kg_usage_result_to_json(r);
        if (cli->json) {
            ex = kg_cli_print_json(j);
        } else {
            ex = j ? usage_print_table(j) : KG_EXIT_RUNTIME;
            json_decref(j);
        }
    }
    kg_usage_result_free(&r);
    return ex;
}

static int usage_events_table(const kg_usage_record_t *ev, size_t n)
{
    static const char *const headers[] = {
        "TIME",   "REQUEST ID", "KEY",     "MODEL", "STATUS",
        "IN/OUT", "COST USD",   "LATENCY", "ERROR",
    };
    kg_cli_table_t table;
    int ex = KG_EXIT_OK;

    kg_cli_table_init(&table, 9, headers);
    for (size_t i = 0; i < n; i++) {
        char at[KG_TIME_STRLEN];
        char status[8];
        char tokens[48];
        char cost[KG_MONEY_STRLEN];
        char latency[24];
        const char *row[9] = {
            kg_time_format(ev[i].at_ms / 1000, at, sizeof(at)),
            ev[i].request_id,
            ev[i].key_id,
            ev[i].model,
            status,
            tokens,
            kg_money_format(ev[i].cost, cost, sizeof(cost)),
            latency,
            ev[i].error_code,
        };

        snprintf(status, sizeof(status), "%d", ev[i].status);
        snprintf(tokens, sizeof(tokens), "%" PRId64 "/%" PRId64,
                 ev[i].prompt_tokens, ev[i].completion_tokens);
        snprintf(latency, sizeof(latency), "%" PRId64 " ms", ev[i].latency_ms);
        if (!kg_cli_table_add(&table, row)) {
            ex = KG_EXIT_RUNTIME;
            break;
        }
    }
    if (n > 0) {
        kg_cli_table_print(&table);
    } else {
        printf("No requests.\n");
    }
    kg_cli_table_free(&table);
    return ex;
}

static int usage_events_csv(const kg_usage_record_t *ev, size_t n)
{
    char buf[KG_USAGE_CSV_ROW_MAX];

    if (kg_usage_event_csv_header(buf, sizeof(buf)) == 0) {
        return KG_EXIT_RUNTIME;
    }
    fputs(buf, stdout);
    for (size_t i = 0; i < n; i++) {
        if (kg_usage_event_csv_row(&ev[i], buf, sizeof(buf)) == 0) {
            return KG_EXIT_RUNTIME;
        }
        fputs(buf, stdout);
    }
    return fflush(stdout) == 0 ? KG_EXIT_OK : KG_EXIT_RUNTIME;
}

static int usage_events(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        USAGE_COMMON_OPTIONS,
        USAGE_OPT("status"),
        {"errors", no_argument, NULL, KG_CLI_OPT_PARAM},
        USAGE_OPT("limit"),
        USAGE_OPT("cursor"),
        {NULL, 0, NULL, 0},
    };
    kg_query_param_t params[KG_QUERY_PARAMS_MAX];
    kg_usage_events_query_t q;
    kg_usage_record_t *ev = NULL;
    char next[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};
    bool csv = false;
    bool help = false;
    size_t n = 0;
    kg_err_t rc;
    int ex;

    ex = kg_cli_query_options("usage events", argc, argv, opts, params, &n,
                              &csv, &help);
    if (help) {
        printf("%s%s%s", usage_events_help, usage_filter_help,
               usage_events_opt_help);
        return KG_EXIT_OK;
    }
    if (ex != -1) {
        return ex;
    }
    if (csv && cli->json) {
        return kg_cli_usage_error("usage events", "--csv and --json exclude "
                                                  "each other");
    }
    rc = kg_usage_events_query_parse(params, n, kg_clock_now(), &q, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_usage_events_page(cli->store, &q, &ev, &n, next, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        ex = kg_cli_print_json(kg_usage_events_to_json(ev, n, next));
    } else if (csv) {
        ex = usage_events_csv(ev, n);
        if (next[0] != '\0') {
            fprintf(stderr, "keygate: more: add --cursor %s\n", next);
        }
    } else {
        ex = usage_events_table(ev, n);
        if (next[0] != '\0') {
            printf("\nMore: add --cursor %s\n", next);
        }
    }
    free(ev);
    return ex;
}

int kg_cli_usage(kg_cli_t *cli, int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "events") == 0) {
        return usage_events(cli, argc - 1, argv + 1);
    }
    return usage_series(cli, argc, argv);
}
