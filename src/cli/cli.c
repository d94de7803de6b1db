/* The keygate command: global options, subcommand dispatch and set-up. */
#include "cli.h"

#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <sodium.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/gateway.h"
#include "keygate/log.h"
#include "keygate/pidfile.h"
#include "keygate/store.h"

static int cli_version(kg_cli_t *cli, int argc, char **argv);
static int cli_serve(kg_cli_t *cli, int argc, char **argv);
static int cli_reload(kg_cli_t *cli, int argc, char **argv);

static const kg_cli_command_t cli_commands[] = {
    {"init", kg_cli_init,
     "create the store, the hash key and the default "
     "workspace"},
    {"serve", cli_serve, "run the gateway"},
    {"reload", cli_reload,
     "make the running gateway read its configuration file again"},
    {"keys", kg_cli_keys,
     "create, list, show, update, disable, enable, "
     "rotate, revoke, delete keys"},
    {"workspaces", kg_cli_workspaces,
     "create, list, show, update, credit "
     "workspaces"},
    {"admin-tokens", kg_cli_admin_tokens,
     "create, list, revoke tokens of the admin API"},
    {"usage", kg_cli_usage,
     "requests, tokens, cost and latency over time; 'usage events': the "
     "request history"},
    {"audit", kg_cli_audit, "the audit trail of administrative changes"},
    {"store", kg_cli_store,
     "back the store up online; its files, rows, journal and last backup"},
    {"config", kg_cli_config, "check the configuration file"},
    {"version", cli_version, "print the version and library versions"},
    {NULL, NULL, NULL},
};

static void cli_print_help(const char *group, const kg_cli_command_t *table,
                           FILE *out)
{
    fprintf(out,
            "Usage: keygate [--config FILE] [--json] %s%sCOMMAND [ARGS]\n\n"
            "Commands:\n",
            group ? group : "", group ? " " : "");
    for (const kg_cli_command_t *c = table; c->name != NULL; c++) {
        fprintf(out, "  %-16s %s\n", c->name, c->summary);
    }
    fprintf(out,
            "\nGlobal options:\n"
            "  -c, --config FILE  configuration file (default $KEYGATE_CONFIG "
            "or %s)\n"
            "      --json         machine-readable output\n"
            "  -h, --help         this help; 'keygate %s%sCOMMAND --help' for "
            "a command\n"
            "\nExit codes: 0 ok, 1 runtime error, 2 usage error.\n",
            KG_CONFIG_DEFAULT_PATH, group ? group : "", group ? " " : "");
}

int kg_cli_dispatch(kg_cli_t *cli, const char *group,
                    const kg_cli_command_t *table, int argc, char **argv)
{
    if (argc < 2) {
        cli_print_help(group, table, stderr);
        return KG_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        cli_print_help(group, table, stdout);
        return KG_EXIT_OK;
    }
    for (const kg_cli_command_t *c = table; c->name != NULL; c++) {
        if (strcmp(argv[1], c->name) == 0) {
            return c->fn(cli, argc - 1, argv + 1);
        }
    }
    kg_cli_errorf("unknown command '%s%s%.40s'; see 'keygate %s%s--help'",
                  group ? group : "", group ? " " : "", argv[1],
                  group ? group : "", group ? " " : "");
    return KG_EXIT_USAGE;
}

/*
 * Take the global options (--config FILE, --config=FILE, -c FILE, --json)
 * out of argv wherever they stand before "--", so that they work before
 * and after the subcommand. Returns the new argc, or -1 on a usage error.
 */
static int cli_take_globals(kg_cli_t *cli, int argc, char **argv)
{
    int out = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--") == 0) {
            while (i < argc) {
                argv[out++] = argv[i++];
            }
            break;
        }
        if (strcmp(a, "--json") == 0) {
            cli->json = true;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (i + 1 >= argc) {
                kg_cli_errorf("%s needs a file name", a);
                return -1;
            }
            cli->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            cli->config_path = a + 9;
        } else {
            argv[out++] = argv[i];
        }
    }
    argv[out] = NULL;
    return out;
}

int kg_cli_main(int argc, char **argv)
{
    kg_cli_t cli;
    int rc;

    memset(&cli, 0, sizeof(cli));
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        kg_cli_errorf("cannot initialise libsodium or libcurl");
        return KG_EXIT_RUNTIME;
    }
    kg_audit_cli_actor(cli.actor, sizeof(cli.actor));
    argc = cli_take_globals(&cli, argc, argv);
    if (argc < 0) {
        return KG_EXIT_USAGE;
    }
    rc = kg_cli_dispatch(&cli, NULL, cli_commands, argc, argv);
    kg_cli_close(&cli);
    curl_global_cleanup();
    return rc;
}

int kg_cli_load_config(kg_cli_t *cli)
{
    kg_diag_t diag = {{0}};
    int must_exist = 0;
    const char *path = kg_config_pick_path(cli->config_path, &must_exist);
    FILE *probe;
    kg_err_t rc;

    if (cli->cfg != NULL) {
        return KG_EXIT_OK;
    }
    if (!must_exist) {
        /* The built-in default path is optional: defaults apply. */
        probe = fopen(path, "r");
        if (probe == NULL) {
            path = NULL;
        } else {
            fclose(probe);
        }
    }
    rc = kg_config_load_ex(path,
                           cli->need_credentials ? 0 : KG_CONFIG_NO_CREDENTIALS,
                           &cli->cfg, &diag);
    if (rc != KG_OK) {
        kg_cli_fail(rc, &diag);
        return KG_EXIT_RUNTIME; /* a bad file is not a bad command line */
    }
    kg_log_set_level(cli->cfg->log_level);
    return KG_EXIT_OK;
}

int kg_cli_open_store(kg_cli_t *cli)
{
    kg_store_opts_t opts;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int ex;

    ex = kg_cli_load_config(cli);
    if (ex != KG_EXIT_OK || cli->store != NULL) {
        return ex;
    }
    memset(&opts, 0, sizeof(opts));
    opts.busy_timeout_ms = (int)cli->cfg->store_busy_timeout_ms;
    rc = kg_store_open(kg_config_store_location(cli->cfg), &opts, &cli->store,
                       &diag);
    if (rc != KG_OK) {
        kg_cli_fail(rc, &diag);
        return KG_EXIT_RUNTIME;
    }
    return KG_EXIT_OK;
}

int kg_cli_open(kg_cli_t *cli)
{
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int ex;

    ex = kg_cli_open_store(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keyhash_load(cli->cfg->hash_key_file, &cli->hashkey, &diag);
    if (rc != KG_OK) {
        kg_cli_fail(rc, &diag);
        return KG_EXIT_RUNTIME;
    }
    cli->keys.store = cli->store;
    cli->keys.hashkey = cli->hashkey;
    cli->keys.prefix = cli->cfg->keys_prefix;
    cli->keys.max_ttl = cli->cfg->keys_max_ttl;
    cli->keys.default_ttl = cli->cfg->keys_default_ttl;
    cli->keys.actor = cli->actor;
    return KG_EXIT_OK;
}

void kg_cli_close(kg_cli_t *cli)
{
    kg_keyhash_free(&cli->hashkey);
    kg_store_close(&cli->store);
    kg_config_free(&cli->cfg);
    memset(&cli->keys, 0, sizeof(cli->keys));
}

static int cli_version(kg_cli_t *cli, int argc, char **argv)
{
    curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
    char libpq[KG_STORE_LIBPQ_VERSION_LEN];

    kg_store_libpq_version(libpq, sizeof(libpq));
    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            printf("Usage: keygate version [--json]\n\n"
                   "Print keygate's version and its libraries' versions.\n");
            return KG_EXIT_OK;
        }
        return kg_cli_usage_error("version", "unexpected argument '%.40s'",
                                  argv[1]);
    }
    if (cli->json) {
        return kg_cli_print_json(
            json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}}", "version",
                      KEYGATE_VERSION, "libraries", "libmicrohttpd",
                      MHD_get_version(), "libcurl", curl->version, "sqlite",
                      sqlite3_libversion(), "libpq", libpq, "libsodium",
                      sodium_version_string(), "jansson", JANSSON_VERSION));
    }
    printf("keygate %s\n", KEYGATE_VERSION);
    printf("libmicrohttpd %s, libcurl %s, sqlite %s, libpq %s, libsodium %s, "
           "jansson %s\n",
           MHD_get_version(), curl->version, sqlite3_libversion(), libpq,
           sodium_version_string(), JANSSON_VERSION);
    return KG_EXIT_OK;
}

static int cli_serve(kg_cli_t *cli, int argc, char **argv)
{
    kg_gateway_opts_t opts;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    int ex;

    memset(&opts, 0, sizeof(opts));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: keygate [--config FILE] serve [--port-file "
                   "FILE] [--admin-port-file FILE]\n\n"
                   "Run the gateway in the foreground until SIGTERM or "
                   "SIGINT (drain,\nflush usage, exit 0; a second signal "
                   "exits at once).\n\n"
                   "  --port-file FILE        write the bound port to FILE "
                   "(for [server] listen\n"
                   "                          with port 0)\n"
                   "  --admin-port-file FILE  the same for the admin "
                   "listener ([admin] listen)\n");
            return KG_EXIT_OK;
        }
        if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc) {
            opts.port_file = argv[++i];
        } else if (strcmp(argv[i], "--admin-port-file") == 0 && i + 1 < argc) {
            opts.admin_port_file = argv[++i];
        } else {
            return kg_cli_usage_error("serve", "unexpected argument '%.40s'",
                                      argv[i]);
        }
    }
    cli->need_credentials = true;
    ex = kg_cli_load_config(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_gateway_run(&cli->cfg, &opts, &diag); /* takes the config */
    if (rc != KG_OK) {
        kg_cli_fail(rc, &diag);
        return KG_EXIT_RUNTIME;
    }
    return KG_EXIT_OK;
}

static int cli_reload(kg_cli_t *cli, int argc, char **argv)
{
    const char *pid_file = NULL;
    kg_diag_t diag = {{0}};
    pid_t pid = 0;
    int ex;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: keygate [--config FILE] reload [--pid-file FILE]\n\n"
                   "Send SIGHUP to the running gateway, which reads its "
                   "configuration file\nagain (a file that does not load is "
                   "refused; its log says how it went).\nThe daemon is the "
                   "one named by [server] pid_file of the configuration,\n"
                   "or by --pid-file. Under systemd: systemctl reload "
                   "keygate.\n\n"
                   "  --pid-file FILE  the daemon's pid file\n");
            return KG_EXIT_OK;
        }
        if (strcmp(argv[i], "--pid-file") == 0 && i + 1 < argc) {
            pid_file = argv[++i];
        } else {
            return kg_cli_usage_error("reload", "unexpected argument '%.40s'",
                                      argv[i]);
        }
    }
    if (pid_file == NULL) {
        ex = kg_cli_load_config(cli);
        if (ex != KG_EXIT_OK) {
            return ex;
        }
        pid_file = cli->cfg->server_pid_file;
        if (pid_file[0] == '\0') {
            kg_cli_errorf("no pid file: set [server] pid_file in %s or pass "
                          "--pid-file (under systemd: systemctl reload "
                          "keygate)",
                          cli->cfg->path ? cli->cfg->path
                                         : "the configuration");
            return KG_EXIT_RUNTIME;
        }
    }
    if (kg_pidfile_read(pid_file, &pid, &diag) != KG_OK) {
        kg_cli_errorf("%s", diag.msg);
        return KG_EXIT_RUNTIME;
    }
    if (kill(pid, SIGHUP) != 0) {
        kg_cli_errorf("cannot signal keygate process %ld: %m", (long)pid);
        return KG_EXIT_RUNTIME;
    }
    if (cli->json) {
        return kg_cli_print_json(
            json_pack("{s:I, s:s}", "pid", (json_int_t)pid, "signal", "HUP"));
    }
    printf("sent SIGHUP to keygate process %ld; its log says whether the "
           "new configuration was applied\n",
           (long)pid);
    return KG_EXIT_OK;
}
