/* The 'keygate workspaces' subcommands: workspaces, modes and credits. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "keygate/money.h"
#include "keygate/timefmt.h"
#include "keygate/workspaces.h"

enum {
    OPT_MODE = 256,
    OPT_NAME,
    OPT_RULES,
    OPT_ADD,
    OPT_DEDUCT,
    OPT_NOTE,
    OPT_HELP,
};

static bool ws_parse_mode(const char *s, kg_ws_mode_t *mode)
{
    if (!kg_ws_mode_parse(s, mode)) {
        kg_cli_errorf("--mode: '%.40s' is not one of api-keys, credits, "
                      "hybrid",
                      s);
        return false;
    }
    return true;
}

static int ws_report(kg_cli_t *cli, kg_workspace_t *ws, const char *what)
{
    char money[KG_MONEY_STRLEN];
    int ex = KG_EXIT_OK;

    if (cli->json) {
        ex = kg_cli_print_json(kg_workspace_to_json(ws));
    } else if (what != NULL) {
        printf("Workspace '%s' (%s) %s; mode %s, credits %s USD.\n", ws->name,
               ws->id, what, kg_ws_mode_name(ws->mode),
               kg_money_format(ws->credits_balance, money, sizeof(money)));
    } else {
        char t[KG_TIME_STRLEN];

        printf("ID:        %s\n", ws->id);
        printf("Name:      %s\n", ws->name);
        printf("Mode:      %s\n", kg_ws_mode_name(ws->mode));
        printf("Credits:   %s USD\n",
               kg_money_format(ws->credits_balance, money, sizeof(money)));
        printf("Keys:      %lld\n", (long long)ws->key_count);
        printf("Rules:     %s\n", ws->rules ? ws->rules : "{}");
        printf("Created:   %s\n", kg_time_format(ws->created_at, t, sizeof(t)));
    }
    kg_workspace_clear(ws);
    return ex;
}

static bool ws_help(int argc, char **argv, const char *text)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s", text);
            return true;
        }
    }
    return false;
}

static int ws_create(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"mode", required_argument, NULL, OPT_MODE},
        {NULL, 0, NULL, 0},
    };
    kg_ws_mode_t mode = KG_MODE_API_KEYS;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int opt;
    int ex;

    if (ws_help(argc, argv,
                "Usage: keygate workspaces create NAME [--mode MODE]\n\n"
                "Create a workspace. MODE: api-keys (default), credits, "
                "hybrid.\n")) {
        return KG_EXIT_OK;
    }
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt != OPT_MODE) {
            return kg_cli_usage_error("workspaces create",
                                      "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
        if (!ws_parse_mode(optarg, &mode)) {
            return KG_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        return kg_cli_usage_error("workspaces create",
                                  "expected exactly one workspace name");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_workspace_create(cli->store, cli->actor, argv[optind], mode, &ws,
                             &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    return ws_report(cli, &ws, "created");
}

static int ws_list(kg_cli_t *cli, int argc, char **argv)
{
    static const char *const headers[] = {"ID",      "NAME", "MODE",
                                          "CREDITS", "KEYS", "CREATED"};
    kg_workspace_t *list = NULL;
    kg_cli_table_t table;
    kg_diag_t diag = {{0}};
    size_t n = 0;
    kg_err_t rc;
    int ex;

    if (ws_help(argc, argv,
                "Usage: keygate workspaces list [--json]\n\nList "
                "workspaces.\n")) {
        return KG_EXIT_OK;
    }
    if (argc != 1) {
        return kg_cli_usage_error("workspaces list",
                                  "unexpected argument '%.40s'", argv[1]);
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_workspace_list(cli->store, &list, &n, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, kg_workspace_to_json(&list[i]));
        }
        kg_workspace_list_free(&list, n);
        return kg_cli_print_json(json_pack("{s:o}", "workspaces", arr));
    }
    kg_cli_table_init(&table, 6, headers);
    for (size_t i = 0; i < n && ex == KG_EXIT_OK; i++) {
        char money[KG_MONEY_STRLEN];
        char keys[24];
        char created[KG_TIME_STRLEN];
        const char *row[6] = {
            list[i].id,
            list[i].name,
            kg_ws_mode_name(list[i].mode),
            kg_money_format(list[i].credits_balance, money, sizeof(money)),
            keys,
            kg_time_format_short(list[i].created_at, created, sizeof(created)),
        };

        snprintf(keys, sizeof(keys), "%lld", (long long)list[i].key_count);
        if (!kg_cli_table_add(&table, row)) {
            ex = KG_EXIT_RUNTIME;
        }
    }
    if (ex == KG_EXIT_OK) {
        kg_cli_table_print(&table);
    }
    kg_cli_table_free(&table);
    kg_workspace_list_free(&list, n);
    return ex;
}

static int ws_show(kg_cli_t *cli, int argc, char **argv)
{
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int ex;

    if (ws_help(argc, argv,
                "Usage: keygate workspaces show WORKSPACE [--json]\n\n"
                "Show a workspace by name or id.\n")) {
        return KG_EXIT_OK;
    }
    if (argc != 2) {
        return kg_cli_usage_error("workspaces show",
                                  "expected exactly one workspace");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_workspace_get(cli->store, argv[1], &ws, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    return ws_report(cli, &ws, NULL);
}

static int ws_update(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, OPT_NAME},
        {"mode", required_argument, NULL, OPT_MODE},
        {"rules", required_argument, NULL, OPT_RULES},
        {NULL, 0, NULL, 0},
    };
    kg_workspace_changes_t changes;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int opt;
    int ex;

    if (ws_help(argc, argv,
                "Usage: keygate workspaces update WORKSPACE [--name NAME] "
                "[--mode MODE] [--rules JSON]\n\nChange a workspace.\n")) {
        return KG_EXIT_OK;
    }
    memset(&changes, 0, sizeof(changes));
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == OPT_NAME) {
            changes.name = optarg;
        } else if (opt == OPT_RULES) {
            changes.rules = optarg;
        } else if (opt == OPT_MODE) {
            if (!ws_parse_mode(optarg, &changes.mode)) {
                return KG_EXIT_USAGE;
            }
            changes.set_mode = true;
        } else {
            return kg_cli_usage_error("workspaces update",
                                      "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
    }
    if (argc - optind != 1) {
        return kg_cli_usage_error("workspaces update",
                                  "expected exactly one workspace");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_workspace_update(cli->store, cli->actor, argv[optind], &changes,
                             &ws, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    return ws_report(cli, &ws, "updated");
}

static int ws_credit(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"add", required_argument, NULL, OPT_ADD},
        {"deduct", required_argument, NULL, OPT_DEDUCT},
        {"note", required_argument, NULL, OPT_NOTE},
        {NULL, 0, NULL, 0},
    };
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    const char *note = NULL;
    int64_t amount = 0;
    int given = 0;
    int sign = 1;
    kg_err_t rc;
    int opt;
    int ex;

    if (ws_help(argc, argv,
                "Usage: keygate workspaces credit WORKSPACE (--add USD | "
                "--deduct USD) [--note TEXT]\n\nAdjust a workspace's "
                "credit balance; it never goes below zero.\n")) {
        return KG_EXIT_OK;
    }
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == OPT_ADD || opt == OPT_DEDUCT) {
            given++;
            sign = opt == OPT_ADD ? 1 : -1;
            if (!kg_cli_parse_money(opt == OPT_ADD ? "--add" : "--deduct",
                                    optarg, &amount, false)) {
                return KG_EXIT_USAGE;
            }
        } else if (opt == OPT_NOTE) {
            note = optarg;
        } else {
            return kg_cli_usage_error("workspaces credit",
                                      "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
    }
    if (given != 1 || argc - optind != 1) {
        return kg_cli_usage_error("workspaces credit",
                                  "expected one workspace and exactly one "
                                  "of --add or --deduct");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_workspace_credit(cli->store, cli->actor, argv[optind],
                             sign * amount, note, &ws, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    return ws_report(cli, &ws, "credited");
}

static const kg_cli_command_t ws_commands[] = {
    {"create", ws_create, "create a workspace"},
    {"list", ws_list, "list workspaces"},
    {"show", ws_show, "show one workspace"},
    {"update", ws_update, "rename, change mode or rules"},
    {"credit", ws_credit, "add or deduct credits"},
    {NULL, NULL, NULL},
};

int kg_cli_workspaces(kg_cli_t *cli, int argc, char **argv)
{
    return kg_cli_dispatch(cli, "workspaces", ws_commands, argc, argv);
}
