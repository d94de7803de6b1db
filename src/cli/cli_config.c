/* The 'keygate config' subcommands: validate and show the configuration. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static int config_check(kg_cli_t *cli, int argc, char **argv)
{
    int ex;

    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: keygate [--config FILE] config check [--json]\n\n"
               "Validate the configuration file; with --json print the "
               "effective\nsettings (sensitive values redacted).\n");
        return KG_EXIT_OK;
    }
    if (argc != 1) {
        return kg_cli_usage_error("config check", "unexpected argument '%.40s'",
                                  argv[1]);
    }
    cli->need_credentials = true; /* check that they can be read */
    ex = kg_cli_load_config(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    if (cli->json) {
        return kg_cli_print_json(json_pack("{s:s?, s:b, s:o}", "file",
                                           cli->cfg->path, "ok", 1, "settings",
                                           kg_config_to_json(cli->cfg)));
    }
    printf("%s: ok\n", cli->cfg->path ? cli->cfg->path : "(built-in defaults)");
    return KG_EXIT_OK;
}

static const kg_cli_command_t config_commands[] = {
    {"check", config_check, "validate the configuration file"},
    {NULL, NULL, NULL},
};

int kg_cli_config(kg_cli_t *cli, int argc, char **argv)
{
    return kg_cli_dispatch(cli, "config", config_commands, argc, argv);
}
