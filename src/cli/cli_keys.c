/* The 'keygate keys' subcommands: the key lifecycle from the shell. */
#include "cli.h"
#include "cli_rules.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "keygate/clock.h"
#include "keygate/duration.h"
#include "keygate/money.h"
#include "keygate/timefmt.h"

enum {
    OPT_NAME = 256,
    OPT_WORKSPACE,
    OPT_DESCRIPTION,
    OPT_METADATA,
    OPT_RULES,
    OPT_TTL,
    OPT_EXPIRES_AT,
    OPT_NO_EXPIRY,
    OPT_USAGE_LIMIT,
    OPT_PERIOD_LIMIT,
    OPT_RPM,
    OPT_TPM,
    OPT_MAX_CONCURRENT,
    OPT_GRACE,
    OPT_ALL,
    OPT_YES,
    OPT_HELP,
};

static const char keys_spec_help[] =
    "  --name NAME            name, e.g. production-backend (1-64 bytes)\n"
    "  --description TEXT     free text (up to 1024 bytes)\n"
    "  --metadata JSON        a JSON object kept with the key\n"
    "  --ttl DURATION         expire after DURATION (30d, 12h, 1h30m)\n"
    "  --expires-at TIME      expire at TIME (2026-12-31T00:00:00Z)\n"
    "  --no-expiry            never expire (only when [keys] max_ttl = 0)\n"
    "  --usage-limit USD      lifetime budget, e.g. 25.00, or 'none'\n"
    "  --period-limit USD/P   budget per hour|day|week|month (UTC), e.g.\n"
    "                         5.00/day, or 'none'\n"
    "  --rpm N                requests per minute, or 'none'\n"
    "  --tpm N                tokens per minute, or 'none'\n"
    "  --max-concurrent N     requests in flight at once, or 'none'\n"
    "  --rules JSON           access rules (see docs/cli.md)\n";

static const struct option keys_spec_options[] = {
    {"name", required_argument, NULL, OPT_NAME},
    {"workspace", required_argument, NULL, OPT_WORKSPACE},
    {"description", required_argument, NULL, OPT_DESCRIPTION},
    {"metadata", required_argument, NULL, OPT_METADATA},
    {"rules", required_argument, NULL, OPT_RULES},
    {"ttl", required_argument, NULL, OPT_TTL},
    {"expires-at", required_argument, NULL, OPT_EXPIRES_AT},
    {"no-expiry", no_argument, NULL, OPT_NO_EXPIRY},
    {"usage-limit", required_argument, NULL, OPT_USAGE_LIMIT},
    {"period-limit", required_argument, NULL, OPT_PERIOD_LIMIT},
    {"rpm", required_argument, NULL, OPT_RPM},
    {"tpm", required_argument, NULL, OPT_TPM},
    {"max-concurrent", required_argument, NULL, OPT_MAX_CONCURRENT},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* "5.00/day" → amount and period; "none" removes the period limit. */
static bool keys_parse_period_limit(const char *s, kg_key_spec_t *spec)
{
    char amount[KG_MONEY_STRLEN];
    const char *slash = strchr(s, '/');
    size_t n;

    spec->set_period_limit = true;
    if (strcmp(s, "none") == 0) {
        spec->period = KG_PERIOD_NONE;
        spec->period_limit = KG_NONE;
        return true;
    }
    n = slash ? (size_t)(slash - s) : 0;
    if (slash == NULL || n == 0 || n >= sizeof(amount) ||
        !kg_period_parse(slash + 1, &spec->period)) {
        kg_cli_errorf("--period-limit: '%.40s' is not USD/PERIOD like "
                      "5.00/day (periods: hour, day, week, month)",
                      s);
        return false;
    }
    memcpy(amount, s, n);
    amount[n] = '\0';
    return kg_cli_parse_money("--period-limit", amount, &spec->period_limit,
                              false);
}

/* One option of create/update into spec. false after printing an error. */
static bool keys_spec_option(int opt, const char *arg, kg_key_spec_t *spec)
{
    kg_diag_t diag = {{0}};
    int64_t v;

    switch (opt) {
    case OPT_NAME:
        spec->name = arg;
        return true;
    case OPT_WORKSPACE:
        spec->workspace = arg;
        return true;
    case OPT_DESCRIPTION:
        spec->description = arg;
        return true;
    case OPT_METADATA:
        spec->metadata = arg;
        return true;
    case OPT_RULES:
        spec->rules = arg;
        return true;
    case OPT_TTL:
        if (!kg_cli_parse_duration("--ttl", arg, &v)) {
            return false;
        }
        if (v <= 0) {
            kg_cli_errorf("--ttl: must be longer than 0s; use --no-expiry "
                          "for a key that never expires");
            return false;
        }
        spec->set_expires = true;
        spec->expires_at = kg_clock_now() + v;
        return true;
    case OPT_EXPIRES_AT:
        if (kg_time_parse(arg, &v, &diag) != KG_OK) {
            kg_cli_errorf("--expires-at: %s", diag.msg);
            return false;
        }
        spec->set_expires = true;
        spec->expires_at = v;
        return true;
    case OPT_NO_EXPIRY:
        spec->set_expires = true;
        spec->expires_at = KG_NONE;
        return true;
    case OPT_USAGE_LIMIT:
        spec->set_usage_limit = true;
        return kg_cli_parse_money("--usage-limit", arg, &spec->usage_limit,
                                  true);
    case OPT_PERIOD_LIMIT:
        return keys_parse_period_limit(arg, spec);
    case OPT_RPM:
        spec->set_rpm = true;
        return kg_cli_parse_count("--rpm", arg, &spec->rpm);
    case OPT_TPM:
        spec->set_tpm = true;
        return kg_cli_parse_count("--tpm", arg, &spec->tpm);
    case OPT_MAX_CONCURRENT:
        spec->set_max_concurrent = true;
        return kg_cli_parse_count("--max-concurrent", arg,
                                  &spec->max_concurrent);
    default:
        return false;
    }
}

static const char *keys_time(int64_t t, char *buf, size_t len, const char *none)
{
    if (t == KG_NONE) {
        snprintf(buf, len, "%s", none);
        return buf;
    }
    return kg_time_format_short(t, buf, len);
}

/* "12.50 / 25.00", or "12.50 / no limit" (USD, named in the header). */
static const char *keys_usage_cell(const kg_key_t *k, char *buf, size_t len)
{
    char used[KG_MONEY_STRLEN];
    char limit[KG_MONEY_STRLEN];

    snprintf(buf, len, "%s / %s", kg_money_format(k->usage, used, sizeof(used)),
             kg_money_format_limit(k->usage_limit, limit, sizeof(limit)));
    return buf;
}

/* Spend, reserved, remaining and the next period reset, as of now. */
static void keys_print_budget(const kg_key_t *k)
{
    json_t *j = kg_key_to_json_budget(k, kg_clock_now());
    const char *reserved = json_string_value(json_object_get(j, "reserved"));
    const char *remaining = json_string_value(json_object_get(j, "remaining"));
    const char *pusage = json_string_value(json_object_get(j, "periodUsage"));
    const char *reset = json_string_value(json_object_get(j, "periodResetsAt"));
    char m1[KG_MONEY_STRLEN];

    printf("Spend:         %s " KG_MONEY_UNIT " (reserved %s " KG_MONEY_UNIT
           ")\n",
           kg_money_format(k->usage, m1, sizeof(m1)),
           reserved ? reserved : "0.00");
    if (k->usage_limit == KG_NONE) {
        printf("Usage limit:   " KG_MONEY_NO_LIMIT "\n");
    } else {
        printf("Usage limit:   %s " KG_MONEY_UNIT
               " (remaining %s " KG_MONEY_UNIT ")\n",
               kg_money_format(k->usage_limit, m1, sizeof(m1)),
               remaining ? remaining : "0.00");
    }
    if (k->period != KG_PERIOD_NONE) {
        printf("Period limit:  %s " KG_MONEY_UNIT
               " per %s (spent %s " KG_MONEY_UNIT " this %s; resets %s)\n",
               kg_money_format(k->period_limit, m1, sizeof(m1)),
               kg_period_name(k->period), pusage ? pusage : "0.00",
               kg_period_name(k->period), reset ? reset : "?");
    } else {
        printf("Period limit:  " KG_MONEY_NO_LIMIT "\n");
    }
    json_decref(j);
}

static void keys_print_detail(const kg_key_t *k)
{
    char display[KG_TOKEN_DISPLAY_STRLEN];
    char t[KG_TIME_STRLEN];
    char m1[KG_MONEY_STRLEN];
    char m2[KG_MONEY_STRLEN];

    printf("ID:            %s\n", k->id);
    printf("Name:          %s\n", k->name);
    printf("Display:       %s\n", kg_token_display(k->prefix, k->id, k->last4,
                                                   display, sizeof(display)));
    printf("Status:        %s\n", kg_key_status_name(k->status));
    printf("Workspace:     %s (%s)\n", k->workspace_name, k->workspace_id);
    if (k->description && *k->description) {
        printf("Description:   %s\n", k->description);
    }
    printf("Metadata:      %s\n", k->metadata ? k->metadata : "{}");
    printf("Created:       %s\n", kg_time_format(k->created_at, t, sizeof(t)));
    printf("Last used:     %s\n",
           keys_time(k->last_used_at, t, sizeof(t), "never"));
    printf("Expires:       %s\n",
           keys_time(k->expires_at, t, sizeof(t), "never"));
    if (k->grace_until != KG_NONE) {
        printf("Old secret:    valid until %s\n",
               kg_time_format(k->grace_until, t, sizeof(t)));
    }
    keys_print_budget(k);
    printf("Rate limits:   rpm %s, tpm %s, concurrent %s\n",
           k->rpm == KG_NONE
               ? "none"
               : (snprintf(m1, sizeof(m1), "%lld", (long long)k->rpm), m1),
           k->tpm == KG_NONE
               ? "none"
               : (snprintf(m2, sizeof(m2), "%lld", (long long)k->tpm), m2),
           k->max_concurrent == KG_NONE
               ? "none"
               : (snprintf(t, sizeof(t), "%lld", (long long)k->max_concurrent),
                  t));
    printf("Rules:         %s\n", k->rules ? k->rules : "{}");
}

/* Print a freshly issued token: to stdout only, once. */
static int keys_print_token(kg_cli_t *cli, const kg_key_t *k, const char *token,
                            const char *verb)
{
    char t[KG_TIME_STRLEN];

    if (cli->json) {
        return kg_cli_print_json(
            json_pack("{s:s, s:o}", "token", token, "key", kg_key_to_json(k)));
    }
    printf("%s key '%s' (id %s, workspace %s).\n", verb, k->name, k->id,
           k->workspace_name);
    printf("Token, shown once; store it now:\n\n  %s\n\n", token);
    printf("Expires: %s\n", keys_time(k->expires_at, t, sizeof(t), "never"));
    return KG_EXIT_OK;
}

/* getopt_long over the create/update options; returns -1 or an exit code. */
static int keys_parse_spec(const char *cmd, int argc, char **argv,
                           kg_key_spec_t *spec, kg_cli_rules_t *rules,
                           bool *help)
{
    struct option all[64];
    int opt;

    if (kg_cli_rules_options_join(keys_spec_options, all,
                                  sizeof(all) / sizeof(*all)) == NULL) {
        return KG_EXIT_RUNTIME;
    }
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+h", all, NULL)) != -1) {
        if (opt == OPT_HELP || opt == 'h') {
            *help = true;
            return -1;
        }
        if (opt == '?') {
            return kg_cli_usage_error(cmd, "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
        if (kg_cli_rules_is_option(opt)) {
            if (!kg_cli_rules_take(rules, opt, optarg)) {
                return KG_EXIT_USAGE;
            }
        } else if (!keys_spec_option(opt, optarg, spec)) {
            return KG_EXIT_USAGE;
        }
    }
    if (rules->any && spec->rules != NULL) {
        return kg_cli_usage_error(cmd, "--rules replaces all rules; do not "
                                       "combine it with rule options");
    }
    return -1;
}

/* Create the key of spec and print its token once. */
static int keys_create_run(kg_cli_t *cli, const kg_key_spec_t *spec)
{
    kg_key_t key;
    kg_diag_t diag = {{0}};
    char token[KG_TOKEN_STRLEN];
    kg_err_t rc;
    int ex;

    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keys_create(&cli->keys, spec, &key, token, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    ex = keys_print_token(cli, &key, token, "Created");
    sodium_memzero(token, sizeof(token));
    kg_key_clear(&key);
    return ex;
}

static int keys_create(kg_cli_t *cli, int argc, char **argv)
{
    kg_key_spec_t spec;
    kg_cli_rules_t rules;
    char *merged = NULL;
    bool help = false;
    int ex;

    memset(&spec, 0, sizeof(spec));
    kg_cli_rules_init(&rules);
    ex = keys_parse_spec("keys create", argc, argv, &spec, &rules, &help);
    if (help) {
        printf("Usage: keygate keys create --name NAME [--workspace W] "
               "[OPTIONS]\n\nCreate a key and print its token once.\n\n"
               "  --workspace W          workspace name or id (default: "
               "default)\n%s%s",
               keys_spec_help, kg_cli_rules_help);
        ex = KG_EXIT_OK;
    } else if (ex == -1 && optind < argc) {
        ex = kg_cli_usage_error("keys create", "unexpected argument '%.40s'",
                                argv[optind]);
    } else if (ex == -1 && spec.name == NULL) {
        ex = kg_cli_usage_error("keys create", "--name is required");
    } else if (ex == -1 && rules.any) {
        merged = kg_cli_rules_merge(&rules, NULL);
        spec.rules = merged;
        ex = merged ? -1 : KG_EXIT_RUNTIME;
    }
    kg_cli_rules_free(&rules);
    if (ex == -1) {
        ex = keys_create_run(cli, &spec);
    }
    free(merged);
    return ex;
}

static int keys_list(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"workspace", required_argument, NULL, OPT_WORKSPACE},
        {"all", no_argument, NULL, OPT_ALL},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    static const char *const headers[] = {
        "ID",      "NAME",      "DISPLAY", "STATUS",
        "CREATED", "LAST USED", "EXPIRES", "USAGE / LIMIT (" KG_MONEY_UNIT ")",
    };
    kg_key_filter_t filter = {.workspace = NULL};
    kg_cli_table_t table;
    kg_key_t *keys = NULL;
    kg_diag_t diag = {{0}};
    size_t n = 0;
    kg_err_t rc;
    int opt;
    int ex;

    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (opt == OPT_WORKSPACE) {
            filter.workspace = optarg;
        } else if (opt == OPT_ALL) {
            filter.include_deleted = true;
        } else if (opt == OPT_HELP || opt == 'h') {
            printf("Usage: keygate keys list [--workspace W] [--all] "
                   "[--json]\n\nList keys (--all: revoked ones too). "
                   "Secrets are never shown.\n");
            return KG_EXIT_OK;
        } else {
            return kg_cli_usage_error("keys list", "unknown option '%s'",
                                      argv[optind - 1]);
        }
    }
    if (optind < argc) {
        return kg_cli_usage_error("keys list", "unexpected argument '%.40s'",
                                  argv[optind]);
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keys_list(&cli->keys, &filter, &keys, &n, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, kg_key_to_json(&keys[i]));
        }
        kg_keys_list_free(&keys, n);
        return kg_cli_print_json(json_pack("{s:o}", "keys", arr));
    }
    kg_cli_table_init(&table, 8, headers);
    for (size_t i = 0; i < n; i++) {
        char display[KG_TOKEN_DISPLAY_STRLEN];
        char created[KG_TIME_STRLEN];
        char used[KG_TIME_STRLEN];
        char expires[KG_TIME_STRLEN];
        char usage[2 * KG_MONEY_STRLEN];
        const kg_key_t *k = &keys[i];
        const char *row[8] = {
            k->id,
            k->name,
            kg_token_display(k->prefix, k->id, k->last4, display,
                             sizeof(display)),
            kg_key_status_name(k->status),
            kg_time_format_short(k->created_at, created, sizeof(created)),
            keys_time(k->last_used_at, used, sizeof(used), "never"),
            keys_time(k->expires_at, expires, sizeof(expires), "never"),
            keys_usage_cell(k, usage, sizeof(usage)),
        };
        if (!kg_cli_table_add(&table, row)) {
            ex = KG_EXIT_RUNTIME;
            break;
        }
    }
    if (ex == KG_EXIT_OK) {
        kg_cli_table_print(&table);
    }
    kg_cli_table_free(&table);
    kg_keys_list_free(&keys, n);
    return ex;
}

/* Parse "COMMAND ID [--help]" for the one-argument subcommands. */
static int keys_one_id(const char *cmd, const char *help, int argc, char **argv,
                       const char **id)
{
    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("%s", help);
        return KG_EXIT_OK;
    }
    if (argc != 2 || argv[1][0] == '-') {
        return kg_cli_usage_error(cmd, "expected exactly one key id");
    }
    *id = argv[1];
    return -1;
}

/* Print a key after a change: JSON, or one line. */
static int keys_report(kg_cli_t *cli, kg_key_t *k, const char *what)
{
    int ex = KG_EXIT_OK;

    if (cli->json) {
        ex = kg_cli_print_json(kg_key_to_json(k));
    } else {
        printf("Key '%s' (%s) %s.\n", k->name, k->id, what);
    }
    kg_key_clear(k);
    return ex;
}

static int keys_show(kg_cli_t *cli, int argc, char **argv)
{
    const char *id = NULL;
    kg_key_t key;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int ex;

    ex = keys_one_id("keys show",
                     "Usage: keygate keys show ID [--json]\n\nShow one key "
                     "(never its secret).\n",
                     argc, argv, &id);
    if (ex != -1) {
        return ex;
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keys_get(&cli->keys, id, &key, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        ex = kg_cli_print_json(kg_key_to_json_budget(&key, kg_clock_now()));
    } else {
        keys_print_detail(&key);
    }
    kg_key_clear(&key);
    return ex;
}

static int keys_update(kg_cli_t *cli, int argc, char **argv)
{
    kg_key_spec_t spec;
    kg_cli_rules_t rules;
    kg_key_t key;
    kg_diag_t diag = {{0}};
    char *merged = NULL;
    bool help = false;
    const char *id = NULL;
    kg_err_t rc;
    int ex;

    memset(&spec, 0, sizeof(spec));
    kg_cli_rules_init(&rules);
    if (argc >= 2 && argv[1][0] != '-') {
        id = argv[1];
        argc--;
        argv++;
    }
    ex = keys_parse_spec("keys update", argc, argv, &spec, &rules, &help);
    if (help) {
        printf("Usage: keygate keys update ID [OPTIONS]\n\nChange a key; "
               "options not given stay as they are.\n\n%s%s",
               keys_spec_help, kg_cli_rules_help);
        ex = KG_EXIT_OK;
    } else if (ex == -1 && (id == NULL || optind < argc)) {
        ex = kg_cli_usage_error("keys update",
                                "expected one key id and options");
    } else if (ex == -1 && spec.workspace != NULL) {
        ex = kg_cli_usage_error("keys update",
                                "a key cannot move to another workspace");
    } else if (ex == -1 && !rules.any && spec.name == NULL &&
               spec.description == NULL && spec.metadata == NULL &&
               spec.rules == NULL && !spec.set_expires &&
               !spec.set_usage_limit && !spec.set_period_limit &&
               !spec.set_rpm && !spec.set_tpm && !spec.set_max_concurrent) {
        ex = kg_cli_usage_error("keys update", "nothing to change");
    } else if (ex == -1) {
        ex = kg_cli_open(cli);
        ex = ex == KG_EXIT_OK ? -1 : ex;
    }
    if (ex == -1 && rules.any) {
        /* Rule options replace their rule and keep the key's others. */
        rc = kg_keys_get(&cli->keys, id, &key, &diag);
        if (rc != KG_OK) {
            ex = kg_cli_fail(rc, &diag);
        } else {
            merged = kg_cli_rules_merge(&rules, key.rules);
            spec.rules = merged;
            ex = merged ? -1 : KG_EXIT_RUNTIME;
            kg_key_clear(&key);
        }
    }
    kg_cli_rules_free(&rules);
    if (ex == -1) {
        rc = kg_keys_update(&cli->keys, id, &spec, &key, &diag);
        ex = rc == KG_OK ? keys_report(cli, &key, "updated")
                         : kg_cli_fail(rc, &diag);
    }
    free(merged);
    return ex;
}

typedef kg_err_t (*keys_change_fn)(const kg_keys_ctx_t *ctx, const char *ref,
                                   kg_key_t *out, kg_diag_t *diag);

static int keys_change(kg_cli_t *cli, int argc, char **argv, keys_change_fn fn,
                       const char *cmd, const char *help, const char *what)
{
    const char *id = NULL;
    kg_key_t key;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int ex;

    ex = keys_one_id(cmd, help, argc, argv, &id);
    if (ex != -1) {
        return ex;
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = fn(&cli->keys, id, &key, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    return keys_report(cli, &key, what);
}

static int keys_disable(kg_cli_t *cli, int argc, char **argv)
{
    return keys_change(cli, argc, argv, kg_keys_disable, "keys disable",
                       "Usage: keygate keys disable ID\n\nRefuse the key "
                       "until it is enabled again.\n",
                       "disabled");
}

static int keys_enable(kg_cli_t *cli, int argc, char **argv)
{
    return keys_change(cli, argc, argv, kg_keys_enable, "keys enable",
                       "Usage: keygate keys enable ID\n\nAccept a disabled "
                       "key again.\n",
                       "enabled");
}

static int keys_revoke(kg_cli_t *cli, int argc, char **argv)
{
    const char *id = NULL;
    kg_key_t key;
    kg_diag_t diag = {{0}};
    bool already = false;
    kg_err_t rc;
    int ex;

    ex = keys_one_id("keys revoke",
                     "Usage: keygate keys revoke ID\n\nRevoke the key for "
                     "good (status deleted); its usage history stays.\n",
                     argc, argv, &id);
    if (ex != -1) {
        return ex;
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keys_revoke(&cli->keys, id, &key, &already, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        json_t *j = kg_key_to_json(&key);

        if (j != NULL) {
            json_object_set_new(j, "alreadyRevoked", json_boolean(already));
        }
        kg_key_clear(&key);
        return kg_cli_print_json(j);
    }
    return keys_report(cli, &key,
                       already ? "was already revoked; nothing changed"
                               : "revoked");
}

/* What became of the earlier secrets after a rotation. */
static void keys_print_rotation(const kg_key_t *k, int64_t grace)
{
    char t[KG_TIME_STRLEN];
    char d[KG_DURATION_STRLEN];

    if (grace == 0) {
        printf("Earlier secrets: all stopped working now, also any still "
               "inside an earlier\ngrace period.\n");
        return;
    }
    printf("Previous secret: valid until %s (grace %s).\nTo end it and "
           "every older secret at once: keygate keys rotate %s\n",
           keys_time(k->updated_at + grace, t, sizeof(t), "now"),
           kg_duration_format(grace, d, sizeof(d)), k->id);
}

static int keys_rotate(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"grace", required_argument, NULL, OPT_GRACE},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    kg_key_t key;
    kg_diag_t diag = {{0}};
    char token[KG_TOKEN_STRLEN];
    int64_t grace = 0;
    kg_err_t rc;
    int opt;
    int ex;

    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == OPT_HELP || opt == 'h') {
            printf("Usage: keygate keys rotate ID [--grace DURATION]\n\n"
                   "Issue a new secret for the key and print the new token "
                   "once.\nThe previous secret stays valid for the grace "
                   "period. Without --grace\n(or with 0) every earlier "
                   "secret stops working at once, also those still\ninside "
                   "an earlier grace period: rotate that way after a "
                   "leak.\n");
            return KG_EXIT_OK;
        }
        if (opt != OPT_GRACE) {
            return kg_cli_usage_error("keys rotate",
                                      "unknown or incomplete option '%s'",
                                      argv[optind - 1]);
        }
        if (!kg_cli_parse_duration("--grace", optarg, &grace)) {
            return KG_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        return kg_cli_usage_error("keys rotate", "expected exactly one key id");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keys_rotate(&cli->keys, argv[optind], grace, &key, token, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    ex = keys_print_token(cli, &key, token, "Rotated");
    sodium_memzero(token, sizeof(token));
    if (ex == KG_EXIT_OK && !cli->json) {
        keys_print_rotation(&key, grace);
    }
    kg_key_clear(&key);
    return ex;
}

static int keys_delete(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"yes", no_argument, NULL, OPT_YES},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    kg_diag_t diag = {{0}};
    bool yes = false;
    kg_err_t rc;
    int opt;
    int ex;

    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == OPT_HELP || opt == 'h') {
            printf("Usage: keygate keys delete ID --yes\n\nRemove the key, "
                   "its secrets and its usage history for good.\nTo stop a "
                   "key but keep its history, use 'keys revoke'.\n");
            return KG_EXIT_OK;
        }
        if (opt != OPT_YES) {
            return kg_cli_usage_error("keys delete", "unknown option '%s'",
                                      argv[optind - 1]);
        }
        yes = true;
    }
    if (argc - optind != 1) {
        return kg_cli_usage_error("keys delete", "expected exactly one key id");
    }
    if (!yes) {
        return kg_cli_usage_error("keys delete",
                                  "deleting erases the key's usage history; "
                                  "add --yes to confirm");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keys_delete(&cli->keys, argv[optind], &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        return kg_cli_print_json(
            json_pack("{s:s, s:b}", "id", argv[optind], "deleted", 1));
    }
    printf("Key %s deleted.\n", argv[optind]);
    return KG_EXIT_OK;
}

static int keys_purge_expired(kg_cli_t *cli, int argc, char **argv)
{
    kg_diag_t diag = {{0}};
    size_t n = 0;
    kg_err_t rc;
    int ex;

    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: keygate keys purge-expired\n\nRevoke every key past "
               "its expiry and drop old secrets past their grace.\n");
        return KG_EXIT_OK;
    }
    if (argc != 1) {
        return kg_cli_usage_error("keys purge-expired",
                                  "unexpected argument '%.40s'", argv[1]);
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keys_purge_expired(&cli->keys, &n, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        return kg_cli_print_json(json_pack("{s:I}", "revoked", (json_int_t)n));
    }
    printf("Revoked %zu expired key%s.\n", n, n == 1 ? "" : "s");
    return KG_EXIT_OK;
}

static const kg_cli_command_t keys_commands[] = {
    {"create", keys_create, "create a key; prints its token once"},
    {"list", keys_list, "list keys (never secrets)"},
    {"show", keys_show, "show one key"},
    {"update", keys_update, "change name, expiry, limits, rules"},
    {"disable", keys_disable, "refuse a key until enabled"},
    {"enable", keys_enable, "accept a disabled key again"},
    {"rotate", keys_rotate, "issue a new secret, old one valid for a grace"},
    {"revoke", keys_revoke, "revoke for good, keep usage history"},
    {"delete", keys_delete, "erase a key and its history (--yes)"},
    {"purge-expired", keys_purge_expired, "revoke keys past their expiry"},
    {NULL, NULL, NULL},
};

int kg_cli_keys(kg_cli_t *cli, int argc, char **argv)
{
    return kg_cli_dispatch(cli, "keys", keys_commands, argc, argv);
}
