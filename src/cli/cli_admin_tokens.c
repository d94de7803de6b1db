/* The 'keygate admin-tokens' subcommands: credentials of the admin API. */
#include "cli.h"

#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "keygate/admintokens.h"
#include "keygate/clock.h"
#include "keygate/timefmt.h"

enum { OPT_NAME = 256, OPT_READ_ONLY, OPT_TTL, OPT_ALL };

static bool at_help(int argc, char **argv, const char *text)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s", text);
            return true;
        }
    }
    return false;
}

static void at_ctx(kg_cli_t *cli, kg_admin_tokens_ctx_t *ctx)
{
    ctx->store = cli->store;
    ctx->hashkey = cli->hashkey;
    ctx->actor = cli->actor;
}

static const char *at_time(int64_t t, char *buf, size_t len, const char *none)
{
    return t < 0 ? none : kg_time_format_short(t, buf, len);
}

static int at_create(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, OPT_NAME},
        {"read-only", no_argument, NULL, OPT_READ_ONLY},
        {"ttl", required_argument, NULL, OPT_TTL},
        {NULL, 0, NULL, 0},
    };
    kg_admin_tokens_ctx_t ctx;
    kg_admin_token_t t;
    kg_diag_t diag = {{0}};
    char token[KG_TOKEN_STRLEN];
    char when[KG_TIME_STRLEN];
    const char *name = NULL;
    bool read_only = false;
    int64_t ttl = 0;
    kg_err_t rc;
    int opt;
    int ex;

    if (at_help(argc, argv,
                "Usage: keygate admin-tokens create --name NAME "
                "[--read-only] [--ttl DURATION]\n\n"
                "Create a token for the admin API and the dashboard and "
                "print it once.\nA read-only token can read everything and "
                "change nothing. Without\n--ttl it does not expire (revoke "
                "it when it is no longer needed).\n")) {
        return KG_EXIT_OK;
    }
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == OPT_NAME) {
            name = optarg;
        } else if (opt == OPT_READ_ONLY) {
            read_only = true;
        } else if (opt == OPT_TTL) {
            if (!kg_cli_parse_duration("--ttl", optarg, &ttl)) {
                return KG_EXIT_USAGE;
            }
            if (ttl <= 0) {
                kg_cli_errorf("--ttl: must be longer than 0s");
                return KG_EXIT_USAGE;
            }
        } else {
            return kg_cli_usage_error("admin-tokens create",
                                      "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
    }
    if (optind != argc) {
        return kg_cli_usage_error("admin-tokens create",
                                  "unexpected argument '%.40s'", argv[optind]);
    }
    if (name == NULL) {
        return kg_cli_usage_error("admin-tokens create", "--name is required");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    at_ctx(cli, &ctx);
    rc = kg_admin_tokens_create(&ctx, name, read_only, ttl, &t, token, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        ex = kg_cli_print_json(
            json_pack("{s:s, s:o}", "token", token, "adminToken",
                      kg_admin_token_to_json(&t, kg_clock_now())));
    } else {
        printf("Created %sadmin token '%s' (id %s).\n",
               read_only ? "read-only " : "", t.name, t.id);
        printf("Token, shown once; store it now:\n\n  %s\n\n", token);
        printf("Expires: %s\n",
               at_time(t.expires_at, when, sizeof(when), "never"));
    }
    sodium_memzero(token, sizeof(token));
    return ex;
}

static int at_list(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"all", no_argument, NULL, OPT_ALL},
        {NULL, 0, NULL, 0},
    };
    static const char *const headers[] = {
        "ID", "NAME", "ACCESS", "STATE", "CREATED", "LAST USED", "EXPIRES",
    };
    kg_admin_tokens_ctx_t ctx;
    kg_admin_token_t *list = NULL;
    kg_cli_table_t table;
    kg_diag_t diag = {{0}};
    bool all = false;
    int64_t now = kg_clock_now();
    size_t n = 0;
    kg_err_t rc;
    int opt;
    int ex;

    if (at_help(argc, argv,
                "Usage: keygate admin-tokens list [--all]\n\n"
                "List admin tokens (never a secret). --all includes revoked "
                "ones.\n")) {
        return KG_EXIT_OK;
    }
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt != OPT_ALL) {
            return kg_cli_usage_error("admin-tokens list",
                                      "unknown option '%s'", argv[optind - 1]);
        }
        all = true;
    }
    if (optind != argc) {
        return kg_cli_usage_error("admin-tokens list",
                                  "unexpected argument '%.40s'", argv[optind]);
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    at_ctx(cli, &ctx);
    rc = kg_admin_tokens_list(&ctx, all, &list, &n, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, kg_admin_token_to_json(&list[i], now));
        }
        free(list);
        return kg_cli_print_json(json_pack("{s:o}", "adminTokens", arr));
    }
    kg_cli_table_init(&table, 7, headers);
    for (size_t i = 0; i < n && ex == KG_EXIT_OK; i++) {
        char created[KG_TIME_STRLEN];
        char used[KG_TIME_STRLEN];
        char expires[KG_TIME_STRLEN];
        const char *row[7];

        row[0] = list[i].id;
        row[1] = list[i].name;
        row[2] = list[i].read_only ? "read-only" : "read-write";
        row[3] = kg_admin_token_state(&list[i], now);
        row[4] = at_time(list[i].created_at, created, sizeof(created), "-");
        row[5] = at_time(list[i].last_used_at, used, sizeof(used), "never");
        row[6] = at_time(list[i].expires_at, expires, sizeof(expires), "never");
        if (!kg_cli_table_add(&table, row)) {
            kg_cli_errorf("out of memory");
            ex = KG_EXIT_RUNTIME;
        }
    }
    if (ex == KG_EXIT_OK) {
        if (n == 0) {
            printf("No admin tokens. Create one with 'keygate admin-tokens "
                   "create --name NAME'.\n");
        } else {
            kg_cli_table_print(&table);
        }
    }
    kg_cli_table_free(&table);
    free(list);
    return ex;
}

static int at_revoke(kg_cli_t *cli, int argc, char **argv)
{
    kg_admin_tokens_ctx_t ctx;
    kg_admin_token_t t;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int ex;

    if (at_help(argc, argv,
                "Usage: keygate admin-tokens revoke ID\n\n"
                "Revoke an admin token: it stops working at once (signed-in "
                "dashboard\nsessions of it end too). ID is its id or "
                "kgadm_<id>.\n")) {
        return KG_EXIT_OK;
    }
    if (argc != 2 || argv[1][0] == '-') {
        return kg_cli_usage_error("admin-tokens revoke",
                                  "expected exactly one admin token id");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    at_ctx(cli, &ctx);
    rc = kg_admin_tokens_revoke(&ctx, argv[1], &t, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        return kg_cli_print_json(json_pack(
            "{s:o}", "adminToken", kg_admin_token_to_json(&t, kg_clock_now())));
    }
    printf("Revoked admin token '%s' (id %s).\n", t.name, t.id);
    return KG_EXIT_OK;
}

static const kg_cli_command_t at_commands[] = {
    {"create", at_create, "create an admin token (shown once)"},
    {"list", at_list, "list admin tokens"},
    {"revoke", at_revoke, "revoke an admin token"},
    {NULL, NULL, NULL},
};

int kg_cli_admin_tokens(kg_cli_t *cli, int argc, char **argv)
{
    return kg_cli_dispatch(cli, "admin-tokens", at_commands, argc, argv);
}
