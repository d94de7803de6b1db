/* The 'keygate audit' command: the audit trail, newest first, by pages. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/timefmt.h"

/* The table shows at most this much of an event's detail. */
#define AUDIT_DETAIL_COLS 72

#define AUDIT_OPT(name)                                 \
    {                                                   \
        name, required_argument, NULL, KG_CLI_OPT_PARAM \
    }

static const char audit_help[] =
    "Usage: keygate audit [--actor A] [--action X] [--object ID]\n"
    "                     [--object-type key|workspace] [--from T] [--to T]\n"
    "                     [--limit N] [--cursor C] [--json]\n\n"
    "Administrative changes, newest first, one page at a time.\n\n"
    "  --actor A           who: cli:<user>, admin:<token id>\n"
    "  --action X          create, update, disable, enable, rotate, revoke,\n"
    "                      expire, delete, mode, credit, credential-set, ...\n"
    "  --object ID         one key or workspace id\n"
    "  --object-type T     key or workspace\n"
    "  --from T, --to T    the time range [from, to): RFC 3339, a date, "
    "'now',\n"
    "                      or a duration back from now (24h, 30d)\n"
    "  --limit N           events per page, 1-1000 (default 100)\n"
    "  --cursor C          the next page: the cursor the previous one "
    "printed\n";

static int audit_table(const kg_audit_event_t *ev, size_t n)
{
    static const char *const headers[] = {"TIME", "ACTOR", "ACTION", "OBJECT",
                                          "DETAIL"};
    kg_cli_table_t table;
    int ex = KG_EXIT_OK;

    kg_cli_table_init(&table, 5, headers);
    for (size_t i = 0; i < n && ex == KG_EXIT_OK; i++) {
        char at[KG_TIME_STRLEN];
        char object[KG_AUDIT_OBJECT_TYPE_MAX + KG_AUDIT_OBJECT_ID_MAX + 2];
        char detail[AUDIT_DETAIL_COLS + 4];
        const char *d = ev[i].detail ? ev[i].detail : "";
        const char *row[5] = {
            kg_time_format(ev[i].at, at, sizeof(at)),
            ev[i].actor,
            ev[i].action,
            object,
            detail,
        };

        snprintf(object, sizeof(object), "%s %s", ev[i].object_type,
                 ev[i].object_id);
        snprintf(detail, sizeof(detail), "%.*s%s", AUDIT_DETAIL_COLS, d,
                 strlen(d) > AUDIT_DETAIL_COLS ? "..." : "");
        if (!kg_cli_table_add(&table, row)) {
            ex = KG_EXIT_RUNTIME;
        }
    }
    if (ex == KG_EXIT_OK && n > 0) {
        kg_cli_table_print(&table);
    } else if (ex == KG_EXIT_OK) {
        printf("No audit events.\n");
    }
    kg_cli_table_free(&table);
    return ex;
}

int kg_cli_audit(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        AUDIT_OPT("actor"),
        AUDIT_OPT("action"),
        AUDIT_OPT("object"),
        AUDIT_OPT("object-type"),
        AUDIT_OPT("from"),
        AUDIT_OPT("to"),
        AUDIT_OPT("limit"),
        AUDIT_OPT("cursor"),
        {"help", no_argument, NULL, KG_CLI_OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    kg_query_param_t params[KG_QUERY_PARAMS_MAX];
    kg_audit_query_t q;
    kg_audit_event_t *ev = NULL;
    char next[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};
    bool help = false;
    size_t n = 0;
    kg_err_t rc;
    int ex;

    ex = kg_cli_query_options("audit", argc, argv, opts, params, &n, NULL,
                              &help);
    if (help) {
        printf("%s", audit_help);
        return KG_EXIT_OK;
    }
    if (ex != -1) {
        return ex;
    }
    rc = kg_audit_query_parse(params, n, kg_clock_now(), &q, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_audit_page(cli->store, &q, &ev, &n, next, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        ex = kg_cli_print_json(kg_audit_events_to_json(ev, n, next));
    } else {
        ex = audit_table(ev, n);
        if (ex == KG_EXIT_OK && next[0] != '\0') {
            printf("\nMore: add --cursor %s\n", next);
        }
    }
    kg_audit_events_free(&ev, n);
    return ex;
}
