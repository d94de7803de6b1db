/* 'keygate init': the state directory, hash key, store and default workspace.
 */
#include "cli.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "keygate/workspaces.h"

/* mkdir -p for the directory that holds path, new directories 0700. */
static int init_parent_dir(const char *path)
{
    char buf[PATH_MAX];
    char *dir;

    if (strlen(path) >= sizeof(buf)) {
        kg_cli_errorf("path too long: %.60s...", path);
        return KG_EXIT_RUNTIME;
    }
    memcpy(buf, path, strlen(path) + 1);
    dir = dirname(buf);
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            kg_cli_errorf("cannot create directory %s: %s", dir,
                          strerror(errno));
            return KG_EXIT_RUNTIME;
        }
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        kg_cli_errorf("cannot create directory %s: %s", dir, strerror(errno));
        return KG_EXIT_RUNTIME;
    }
    return KG_EXIT_OK;
}

int kg_cli_init(kg_cli_t *cli, int argc, char **argv)
{
    kg_diag_t diag = {{0}};
    bool new_key = true;
    kg_err_t rc;
    int ex;

    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: keygate [--config FILE] init\n\n"
               "Create what the configuration names, when missing: the "
               "hash key file\n(32 random bytes, mode 0600), the store "
               "(mode 0600, schema migrated)\nand the 'default' workspace. "
               "Safe to run again: it never replaces\nan existing hash "
               "key.\n");
        return KG_EXIT_OK;
    }
    if (argc != 1) {
        return kg_cli_usage_error("init", "unexpected argument '%.40s'",
                                  argv[1]);
    }
    ex = kg_cli_load_config(cli);
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    ex = init_parent_dir(cli->cfg->hash_key_file);
    if (ex == KG_EXIT_OK) {
        ex = init_parent_dir(cli->cfg->store_path);
    }
    if (ex != KG_EXIT_OK) {
        return ex;
    }
    rc = kg_keyhash_create_file(cli->cfg->hash_key_file, &diag);
    if (rc == KG_ERR_EXISTS) {
        new_key = false;
    } else if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    {
        kg_store_opts_t opts = {KG_STORE_CREATE,
                                (int)cli->cfg->store_busy_timeout_ms, 0};

        rc = kg_store_open(cli->cfg->store_path, &opts, &cli->store, &diag);
    }
    if (rc == KG_OK) {
        /* Refuse an unreadable or loose key now rather than at first use. */
        rc = kg_keyhash_load(cli->cfg->hash_key_file, &cli->hashkey, &diag);
    }
    if (rc == KG_OK) {
        rc = kg_workspace_ensure_default(cli->store, cli->actor, &diag);
    }
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    if (cli->json) {
        return kg_cli_print_json(json_pack(
            "{s:s, s:s, s:b, s:i}", "store", cli->cfg->store_path, "hashKey",
            cli->cfg->hash_key_file, "hashKeyCreated", new_key, "schemaVersion",
            kg_store_schema_version(cli->store)));
    }
    printf("Store:     %s (schema %d)\n", cli->cfg->store_path,
           kg_store_schema_version(cli->store));
    printf("Hash key:  %s (%s)\n", cli->cfg->hash_key_file,
           new_key ? "created" : "kept");
    printf("Workspace: %s\n", KG_WORKSPACE_DEFAULT);
    return KG_EXIT_OK;
}
