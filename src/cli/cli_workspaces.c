/* The 'keygate workspaces' subcommands: workspaces, modes, credits and the
 * workspaces' own provider credentials. */
#include "cli.h"
#include "cli_rules.h"

#include <errno.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "keygate/money.h"
#include "keygate/providers.h"
#include "keygate/secretbox.h"
#include "keygate/timefmt.h"
#include "keygate/workspaces.h"
#include "keygate/wscred.h"

enum {
    OPT_MODE = 256,
    OPT_NAME,
    OPT_RULES,
    OPT_ADD,
    OPT_DEDUCT,
    OPT_NOTE,
    OPT_HELP,
    OPT_PROVIDER,
    OPT_FROM_ENV,
    OPT_FROM_FILE,
    OPT_STDIN,
};

/* White space a credential read from a file or stdin may carry around it. */
#define CRED_INPUT_SLACK 64
/* Room for the list of configured providers in an error line. */
#define CRED_PROVIDERS_TEXT 160

static bool ws_parse_mode(const char *s, kg_ws_mode_t *mode)
{
    if (!kg_ws_mode_parse(s, mode)) {
        kg_cli_errorf("--mode: '%.40s' is not one of api-keys, credits, "
                      "hybrid, pool",
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
        printf("Workspace '%s' (%s) %s; mode %s, credits %s " KG_MONEY_UNIT
               ".\n",
               ws->name, ws->id, what, kg_ws_mode_name(ws->mode),
               kg_money_format(ws->credits_balance, money, sizeof(money)));
    } else {
        char t[KG_TIME_STRLEN];

        printf("ID:        %s\n", ws->id);
        printf("Name:      %s\n", ws->name);
        printf("Mode:      %s\n", kg_ws_mode_name(ws->mode));
        printf("Credits:   %s " KG_MONEY_UNIT "\n",
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
                "Create a workspace. MODE (docs/policy.md):\n"
                "  api-keys  only the workspace's own provider credentials "
                "(the default)\n"
                "  credits   the configuration's credentials, charged to "
                "its credits\n"
                "  hybrid    its own credential where it has one, else "
                "credits\n"
                "  pool      the configuration's credentials, no credits "
                "(one tenant)\n")) {
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
    static const char *const headers[] = {
        "ID", "NAME", "MODE", "CREDITS (" KG_MONEY_UNIT ")", "KEYS", "CREATED"};
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
    struct option all[32];
    kg_workspace_changes_t changes;
    kg_cli_rules_t rules;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    char *merged = NULL;
    kg_err_t rc;
    int opt;
    int ex = -1;

    if (ws_help(
            argc, argv,
            "Usage: keygate workspaces update WORKSPACE [--name NAME] "
            "[--mode MODE] [--rules JSON] [RULE OPTIONS]\n\nChange a "
            "workspace. Its rules apply to every key in it; a key's own "
            "rules\ncan only narrow them. MODE: api-keys, credits, "
            "hybrid, pool\n(see 'keygate workspaces create --help').\n\n")) {
        printf("%s", kg_cli_rules_help);
        return KG_EXIT_OK;
    }
    memset(&changes, 0, sizeof(changes));
    kg_cli_rules_init(&rules);
    kg_cli_rules_options_join(opts, all, sizeof(all) / sizeof(*all));
    optind = 0;
    opterr = 0;
    while (ex == -1 && (opt = getopt_long(argc, argv, "", all, NULL)) != -1) {
        if (opt == OPT_NAME) {
            changes.name = optarg;
        } else if (opt == OPT_RULES) {
            changes.rules = optarg;
        } else if (opt == OPT_MODE) {
            if (!ws_parse_mode(optarg, &changes.mode)) {
                ex = KG_EXIT_USAGE;
            }
            changes.set_mode = true;
        } else if (kg_cli_rules_is_option(opt)) {
            if (!kg_cli_rules_take(&rules, opt, optarg)) {
                ex = KG_EXIT_USAGE;
            }
        } else {
            ex = kg_cli_usage_error("workspaces update",
                                    "unknown or incomplete option '%s'",
                                    argv[optind - 1]);
        }
    }
    if (ex == -1 && argc - optind != 1) {
        ex = kg_cli_usage_error("workspaces update",
                                "expected exactly one workspace");
    } else if (ex == -1 && rules.any && changes.rules != NULL) {
        ex = kg_cli_usage_error("workspaces update",
                                "--rules replaces all rules; do not combine "
                                "it with rule options");
    }
    if (ex == -1) {
        ex = kg_cli_open(cli);
        ex = ex == KG_EXIT_OK ? -1 : ex;
    }
    if (ex == -1 && rules.any) {
        /* Rule options replace their rule, the workspace's others stay. */
        rc = kg_workspace_get(cli->store, argv[optind], &ws, &diag);
        if (rc != KG_OK) {
            ex = kg_cli_fail(rc, &diag);
        } else {
            merged = kg_cli_rules_merge(&rules, ws.rules);
            changes.rules = merged;
            ex = merged ? -1 : KG_EXIT_RUNTIME;
            kg_workspace_clear(&ws);
        }
    }
    kg_cli_rules_free(&rules);
    if (ex == -1) {
        rc = kg_workspace_update(cli->store, cli->actor, argv[optind], &changes,
                                 &ws, &diag);
        ex = rc == KG_OK ? ws_report(cli, &ws, "updated")
                         : kg_cli_fail(rc, &diag);
    }
    free(merged);
    return ex;
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

/* ---- workspaces credential ------------------------------------------ */

/*
 * The credential is never taken from the command line (it would land in
 * shell history and in ps). Messages of this group never repeat an argument
 * that may be a credential typed in the wrong place: unknown options are
 * named up to their '=', extra arguments not at all, and an unset variable
 * or missing file is not named either.
 */

/* "a, b, c" (cut with ", ..." when long), or "none" into buf. */
static void cred_providers_text(const kg_config_t *cfg, char *buf, size_t len)
{
    size_t used = 0;

    snprintf(buf, len, "none");
    for (size_t i = 0; i < cfg->nproviders; i++) {
        const char *name = cfg->providers[i].name;
        size_t need = strlen(name) + (i ? 2 : 0);

        if (used + need + 6 >= len) {
            snprintf(buf + used, len - used, ", ...");
            return;
        }
        snprintf(buf + used, len - used, "%s%s", i ? ", " : "", name);
        used += need;
    }
}

/*
 * Whether provider is configured. If not and complain is set, print why
 * (naming the configured ones).
 */
static bool cred_provider_configured(const kg_cli_t *cli, const char *provider,
                                     bool complain)
{
    char names[CRED_PROVIDERS_TEXT];

    if (kg_providers_name_valid(provider) &&
        kg_providers_find(cli->cfg, provider) != NULL) {
        return true;
    }
    if (complain) {
        cred_providers_text(cli->cfg, names, sizeof(names));
        if (!kg_providers_name_valid(provider)) {
            kg_cli_errorf("--provider: not a provider name (1-64 of a-z, "
                          "0-9, _ and -); configured providers: %s",
                          names);
        } else {
            kg_cli_errorf("unknown provider '%s'; configured providers: %s",
                          provider, names);
        }
    }
    return false;
}

/* An unknown or incomplete option, named up to its '=' only. */
static int cred_bad_option(const char *command, const char *arg)
{
    size_t n = strcspn(arg, "=");

    return kg_cli_usage_error(command, "unknown or incomplete option '%.*s'",
                              (int)(n < 40 ? n : 40), arg);
}

static bool cred_env_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > KG_ENV_NAME_MAX || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

/* A failed read of the credential: bad input (2) unless out of resources. */
static int cred_input_fail(kg_err_t rc, const kg_diag_t *diag)
{
    kg_cli_fail(rc, diag);
    return (rc == KG_ERR_NOMEM || rc == KG_ERR_INTERNAL) ? KG_EXIT_RUNTIME
                                                         : KG_EXIT_USAGE;
}

static int cred_from_env(const char *var, const char **secret, size_t *len)
{
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    if (!cred_env_name_ok(var)) {
        kg_cli_errorf("--from-env: expects the name of an environment "
                      "variable (letters, digits and _), not a value");
        return KG_EXIT_USAGE;
    }
    if (getenv(var) == NULL) {
        kg_cli_errorf("--from-env: that environment variable is not set");
        return KG_EXIT_USAGE;
    }
    rc = kg_providers_credential_from_env(var, secret, len, &diag);
    return rc == KG_OK ? KG_EXIT_OK : cred_input_fail(rc, &diag);
}

static int cred_from_file(const char *path, const char **secret, size_t *len)
{
    kg_diag_t diag = {{0}};
    struct stat st;
    kg_err_t rc;

    if (stat(path, &st) != 0 && errno == ENOENT) {
        kg_cli_errorf("--from-file: no such file");
        return KG_EXIT_USAGE;
    }
    rc = kg_providers_credential_from_file(path, secret, len, &diag);
    return rc == KG_OK ? KG_EXIT_OK : cred_input_fail(rc, &diag);
}

/*
 * Read stdin into buf (cap + 1 bytes): to its end, or from a terminal one
 * line with echo off after a prompt on stderr. *n is what was read; more
 * than cap means too long. false on a read error.
 */
static bool cred_read_stdin(char *buf, size_t cap, size_t *n,
                            const char *provider)
{
    struct termios saved;
    struct termios quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    bool ok = true;

    *n = 0;
    if (tty) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        fprintf(stderr, "Credential for provider '%s' (not shown): ", provider);
        fflush(stderr);
    }
    while (*n <= cap) {
        ssize_t r = read(STDIN_FILENO, buf + *n, cap + 1 - *n);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            ok = r == 0;
            break;
        }
        *n += (size_t)r;
        if (tty && memchr(buf, '\n', *n) != NULL) {
            break;
        }
    }
    if (tty) {
        (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fputc('\n', stderr);
    }
    return ok;
}

static bool cred_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The credential from stdin, trimmed like one from a file or variable. */
static int cred_from_stdin(const char *provider, const char **secret,
                           size_t *len)
{
    const size_t cap = KG_WSCRED_MAX + CRED_INPUT_SLACK;
    kg_diag_t diag = {{0}};
    char *buf = sodium_malloc(cap + 1);
    char *copy = NULL;
    const char *p;
    size_t n = 0;
    int ex = KG_EXIT_USAGE;

    if (buf == NULL) {
        kg_cli_errorf("out of memory");
        return KG_EXIT_RUNTIME;
    }
    if (!cred_read_stdin(buf, cap, &n, provider)) {
        kg_cli_errorf("--stdin: cannot read: %s", strerror(errno));
        ex = KG_EXIT_RUNTIME;
        goto out;
    }
    if (n > cap) {
        kg_cli_errorf("--stdin: the credential is longer than %d bytes",
                      KG_WSCRED_MAX);
        goto out;
    }
    p = buf;
    while (n > 0 && cred_space(p[0])) {
        p++;
        n--;
    }
    while (n > 0 && cred_space(p[n - 1])) {
        n--;
    }
    if (kg_wscred_check(p, n, &diag) != KG_OK) {
        kg_cli_errorf("--stdin: %s", diag.msg);
        goto out;
    }
    copy = sodium_malloc(n + 1);
    if (copy == NULL) {
        kg_cli_errorf("out of memory");
        ex = KG_EXIT_RUNTIME;
        goto out;
    }
    memcpy(copy, p, n);
    copy[n] = '\0';
    (void)sodium_mprotect_readonly(copy);
    *secret = copy;
    *len = n;
    ex = KG_EXIT_OK;
out:
    sodium_free(buf); /* wipes */
    return ex;
}

/* {"id", "name"} of a workspace (new). */
static json_t *cred_ws_json(const kg_workspace_t *ws)
{
    return json_pack("{s:s, s:s}", "id", ws->id, "name", ws->name);
}

/* "...wxyz", or "-" when the credential is too short to show any. */
static const char *cred_last4_text(const kg_wscred_info_t *info, char *buf,
                                   size_t len)
{
    if (info->last4[0] == '\0') {
        return "-";
    }
    snprintf(buf, len, "...%s", info->last4);
    return buf;
}

/* Set the credential read into secret; print what was done. */
static int cred_store(kg_cli_t *cli, const kg_workspace_t *ws,
                      const char *provider, const char *secret, size_t len)
{
    kg_secretbox_t *sb = NULL;
    kg_wscred_info_t info;
    kg_diag_t diag = {{0}};
    char shown[KG_WSCRED_LAST4_LEN + 4];
    bool replaced;
    kg_err_t rc;

    rc = kg_secretbox_load(cli->cfg->secret_key_file, &sb, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    replaced =
        kg_wscred_get(cli->store, ws->id, provider, &info, NULL) == KG_OK;
    rc = kg_wscred_set(cli->store, sb, cli->actor, ws->id, provider, secret,
                       len, &diag);
    kg_secretbox_free(&sb);
    if (rc == KG_OK) {
        rc = kg_wscred_get(cli->store, ws->id, provider, &info, &diag);
    }
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        return kg_cli_print_json(json_pack(
            "{s:o, s:o, s:b}", "workspace", cred_ws_json(ws), "credential",
            kg_wscred_to_json(&info), "replaced", replaced));
    }
    printf("Credential for provider '%s' %s on workspace '%s' (%s).\n",
           provider, replaced ? "replaced" : "set", ws->name,
           cred_last4_text(&info, shown, sizeof(shown)));
    if (ws->mode == KG_MODE_CREDITS || ws->mode == KG_MODE_POOL) {
        printf("Note: the workspace is in %s mode, which uses the "
               "configuration's credentials;\nits own are used in api-keys "
               "or hybrid mode (docs/policy.md).\n",
               kg_ws_mode_name(ws->mode));
    }
    return KG_EXIT_OK;
}

static int cred_set(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"provider", required_argument, NULL, OPT_PROVIDER},
        {"from-env", required_argument, NULL, OPT_FROM_ENV},
        {"from-file", required_argument, NULL, OPT_FROM_FILE},
        {"stdin", no_argument, NULL, OPT_STDIN},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "workspaces credential set";
    const char *provider = NULL;
    const char *from = NULL;
    const char *secret = NULL;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    size_t len = 0;
    int source = 0;
    int nsources = 0;
    kg_err_t rc;
    int opt;
    int ex;

    if (ws_help(argc, argv,
                "Usage: keygate workspaces credential set WORKSPACE "
                "--provider NAME\n"
                "       (--from-env VAR | --from-file PATH | --stdin)\n\n"
                "Store the workspace's own credential for a configured "
                "provider, encrypted\nwith the server secret key; it "
                "replaces the one the workspace has. The\ncredential is "
                "never taken from the command line: name an environment\n"
                "variable, a file (not accessible by others), or pipe it "
                "to stdin (from a\nterminal it is read without echo). "
                "White space around it is ignored; it\nmust be 1-4096 "
                "printable ASCII characters without spaces. Only its last\n"
                "4 characters are ever shown.\n")) {
        return KG_EXIT_OK;
    }
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == OPT_PROVIDER) {
            provider = optarg;
        } else if (opt == OPT_FROM_ENV || opt == OPT_FROM_FILE ||
                   opt == OPT_STDIN) {
            source = opt;
            from = optarg;
            nsources++;
        } else {
            return cred_bad_option(cmd, argv[optind - 1]);
        }
    }
    if (argc - optind != 1) {
        return kg_cli_usage_error(cmd, "expected exactly one workspace; the "
                                       "credential is never taken from the "
                                       "command line");
    }
    if (provider == NULL || nsources != 1) {
        return kg_cli_usage_error(cmd, "expected --provider and exactly one "
                                       "of --from-env, --from-file, --stdin");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    if (!cred_provider_configured(cli, provider, true)) {
        return KG_EXIT_USAGE;
    }
    rc = kg_workspace_get(cli->store, argv[optind], &ws, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (source == OPT_FROM_ENV) {
        ex = cred_from_env(from, &secret, &len);
    } else if (source == OPT_FROM_FILE) {
        ex = cred_from_file(from, &secret, &len);
    } else {
        ex = cred_from_stdin(provider, &secret, &len);
    }
    if (ex == KG_EXIT_OK) {
        ex = cred_store(cli, &ws, provider, secret, len);
    }
    kg_providers_credential_free(&secret); /* wipes */
    kg_workspace_clear(&ws);
    return ex;
}

static int cred_list(kg_cli_t *cli, int argc, char **argv)
{
    static const char *const headers[] = {"PROVIDER", "LAST4", "CREATED",
                                          "UPDATED"};
    kg_wscred_info_t *list = NULL;
    kg_cli_table_t table;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    size_t n = 0;
    kg_err_t rc;
    int ex;

    if (ws_help(argc, argv,
                "Usage: keygate workspaces credential list WORKSPACE "
                "[--json]\n\nList the workspace's own provider credentials: "
                "provider, last 4\ncharacters, created, updated. Never a "
                "secret.\n")) {
        return KG_EXIT_OK;
    }
    if (argc != 2 || argv[1][0] == '-') {
        return kg_cli_usage_error("workspaces credential list",
                                  "expected exactly one workspace");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_workspace_get(cli->store, argv[1], &ws, &diag);
    if (rc == KG_OK) {
        rc = kg_wscred_list(cli->store, ws.id, &list, &n, &diag);
    }
    if (rc != KG_OK) {
        kg_workspace_clear(&ws);
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        json_t *arr = json_array();

        for (size_t i = 0; i < n; i++) {
            json_array_append_new(arr, kg_wscred_to_json(&list[i]));
        }
        ex = kg_cli_print_json(json_pack(
            "{s:o, s:o}", "workspace", cred_ws_json(&ws), "credentials", arr));
    } else {
        kg_cli_table_init(&table, 4, headers);
        for (size_t i = 0; i < n && ex == KG_EXIT_OK; i++) {
            char shown[KG_WSCRED_LAST4_LEN + 4];
            char created[KG_TIME_STRLEN];
            char updated[KG_TIME_STRLEN];
            const char *row[4] = {
                list[i].provider,
                cred_last4_text(&list[i], shown, sizeof(shown)),
                kg_time_format_short(list[i].created_at, created,
                                     sizeof(created)),
                kg_time_format_short(list[i].updated_at, updated,
                                     sizeof(updated)),
            };

            if (!kg_cli_table_add(&table, row)) {
                ex = KG_EXIT_RUNTIME;
            }
        }
        if (ex == KG_EXIT_OK) {
            kg_cli_table_print(&table);
        }
        kg_cli_table_free(&table);
    }
    kg_wscred_list_free(&list);
    kg_workspace_clear(&ws);
    return ex;
}

static int cred_delete(kg_cli_t *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"provider", required_argument, NULL, OPT_PROVIDER},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "workspaces credential delete";
    const char *provider = NULL;
    kg_wscred_info_t info;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    char shown[KG_WSCRED_LAST4_LEN + 4];
    kg_err_t rc;
    int opt;
    int ex;

    if (ws_help(argc, argv,
                "Usage: keygate workspaces credential delete WORKSPACE "
                "--provider NAME\n\nDelete the workspace's own credential "
                "for the provider. In api-keys mode\nthe provider is then "
                "unavailable to the workspace; in hybrid mode it uses\nthe "
                "pool and credits.\n")) {
        return KG_EXIT_OK;
    }
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt != OPT_PROVIDER) {
            return cred_bad_option(cmd, argv[optind - 1]);
        }
        provider = optarg;
    }
    if (argc - optind != 1 || provider == NULL) {
        return kg_cli_usage_error(cmd, "expected one workspace and "
                                       "--provider NAME");
    }
    ex = kg_cli_open(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_workspace_get(cli->store, argv[optind], &ws, &diag);
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    /* A provider removed from the configuration keeps its stored
     * credential deletable; otherwise an unknown name is refused. */
    if (!cred_provider_configured(cli, provider, false) &&
        (!kg_providers_name_valid(provider) ||
         kg_wscred_get(cli->store, ws.id, provider, &info, NULL) != KG_OK)) {
        kg_workspace_clear(&ws);
        (void)cred_provider_configured(cli, provider, true);
        return KG_EXIT_USAGE;
    }
    rc =
        kg_wscred_delete(cli->store, cli->actor, ws.id, provider, &info, &diag);
    if (rc != KG_OK) {
        kg_workspace_clear(&ws);
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        ex = kg_cli_print_json(json_pack("{s:o, s:o}", "workspace",
                                         cred_ws_json(&ws), "deleted",
                                         kg_wscred_to_json(&info)));
    } else {
        printf("Credential for provider '%s' deleted from workspace '%s' "
               "(%s).\n",
               provider, ws.name, cred_last4_text(&info, shown, sizeof(shown)));
    }
    kg_workspace_clear(&ws);
    return ex;
}

static const kg_cli_command_t cred_commands[] = {
    {"set", cred_set, "store the workspace's credential for a provider"},
    {"list", cred_list, "list the workspace's credentials (never a secret)"},
    {"delete", cred_delete, "delete the workspace's credential for a provider"},
    {NULL, NULL, NULL},
};

static int ws_credential(kg_cli_t *cli, int argc, char **argv)
{
    return kg_cli_dispatch(cli, "workspaces credential", cred_commands, argc,
                           argv);
}

static const kg_cli_command_t ws_commands[] = {
    {"create", ws_create, "create a workspace"},
    {"list", ws_list, "list workspaces"},
    {"show", ws_show, "show one workspace"},
    {"update", ws_update, "rename, change mode or rules"},
    {"credit", ws_credit, "add or deduct credits"},
    {"credential", ws_credential,
     "set, list, delete the workspace's own provider credentials"},
    {NULL, NULL, NULL},
};

int kg_cli_workspaces(kg_cli_t *cli, int argc, char **argv)
{
    return kg_cli_dispatch(cli, "workspaces", ws_commands, argc, argv);
}
