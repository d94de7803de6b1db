/* The 'keygate config' subcommands: validate and show the configuration. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "keygate/tls.h"

/* Whether a listener's certificate and key load (nothing to do without). */
static kg_err_t config_check_tls(const char *cert, const char *key,
                                 const char *min_version, const char *what,
                                 kg_diag_t *diag)
{
    kg_tls_creds_t *creds = NULL;
    kg_err_t rc;

    if (cert[0] == '\0') {
        return KG_OK;
    }
    rc = kg_tls_check_support(diag);
    if (rc == KG_OK) {
        rc = kg_tls_creds_load(cert, key, min_version, what, &creds, diag);
    }
    kg_tls_creds_unref(&creds);
    return rc;
}

/* What 'keygate serve' would refuse beyond the file itself: an exposed
 * admin listener without TLS, certificates that do not load. */
static int config_check_serve(const kg_config_t *cfg)
{
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    rc = kg_config_check_admin_exposure(cfg, &diag);
    if (rc == KG_OK) {
        rc = config_check_tls(cfg->server_tls_cert_file,
                              cfg->server_tls_key_file,
                              cfg->server_tls_min_version, "[server]", &diag);
    }
    if (rc == KG_OK) {
        rc = config_check_tls(cfg->admin_tls_cert_file, cfg->admin_tls_key_file,
                              cfg->admin_tls_min_version, "[admin]", &diag);
    }
    if (rc != KG_OK) {
        kg_cli_fail(rc, &diag);
        return KG_EXIT_RUNTIME;
    }
    return KG_EXIT_OK;
}

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
    if (ex == KG_EXIT_OK) {
        ex = config_check_serve(cli->cfg);
    }
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
