/* 'keygate init': the state directory, server keys, store, default workspace.
 */
#include "cli.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "keygate/secretbox.h"
#include "keygate/workspaces.h"
#include "keygate/wscred.h"

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

/*
 * Create the secret key file unless it exists. A store that holds workspace
 * credentials while the file is missing is refused rather than given a new
 * key: that key could not open them. *created says whether it was made.
 */
static kg_err_t init_secret_key(kg_cli_t *cli, bool *created, kg_diag_t *diag)
{
    const char *path = cli->cfg->secret_key_file;
    kg_secretbox_t *sb = NULL;
    struct stat st;
    int64_t sealed = 0;
    kg_err_t rc;

    *created = false;
    if (lstat(path, &st) != 0 && errno == ENOENT) {
        rc = kg_wscred_count(cli->store, &sealed, diag);
        if (rc != KG_OK) {
            return rc;
        }
        if (sealed > 0) {
            return kg_diag_fail(diag, KG_ERR_IO,
                                "secret key file %s is missing but the store "
                                "holds %lld workspace credential(s) sealed "
                                "with it; restore it from a backup, or delete "
                                "those credentials first",
                                path, (long long)sealed);
        }
        rc = kg_secretbox_create_file(path, diag);
        if (rc != KG_OK && rc != KG_ERR_EXISTS) {
            return rc;
        }
        *created = rc == KG_OK;
    }
    /* Refuse an unreadable or loose key now rather than at first use. */
    rc = kg_secretbox_load(path, &sb, diag);
    kg_secretbox_free(&sb);
    return rc;
}

int kg_cli_init(kg_cli_t *cli, int argc, char **argv)
{
    kg_diag_t diag = {{0}};
    kg_workspace_t ws;
    const char *mode;
    bool new_key = true;
    bool new_secret = false;
    kg_err_t rc;
    int ex;

    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: keygate [--config FILE] init\n\n"
               "Create what the configuration names, when missing: the "
               "hash key file and\nthe secret key file (32 random bytes "
               "each, mode 0600), the store (mode\n0600, schema migrated) "
               "and the 'default' workspace, in pool mode: its keys use\n"
               "the configuration's provider credentials (docs/policy.md). "
               "Safe to run\nagain: it never replaces an existing hash key "
               "or secret key, nor changes\nan existing workspace.\n");
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
        ex = init_parent_dir(cli->cfg->secret_key_file);
    }
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
                                (int)cli->cfg->store_busy_timeout_ms, 0, NULL};

        rc = kg_store_open(kg_config_store_location(cli->cfg), &opts,
                           &cli->store, &diag);
    }
    if (rc == KG_OK) {
        /* Refuse an unreadable or loose key now rather than at first use. */
        rc = kg_keyhash_load(cli->cfg->hash_key_file, &cli->hashkey, &diag);
    }
    if (rc == KG_OK) {
        rc = init_secret_key(cli, &new_secret, &diag);
    }
    if (rc == KG_OK) {
        rc = kg_workspace_ensure_default(cli->store, cli->actor, &diag);
    }
    if (rc == KG_OK) {
        rc = kg_workspace_get(cli->store, KG_WORKSPACE_DEFAULT, &ws, &diag);
    }
    if (rc != KG_OK) {
        return kg_cli_fail(rc, &diag);
    }
    mode = kg_ws_mode_name(ws.mode);
    kg_workspace_clear(&ws);
    if (cli->json) {
        return kg_cli_print_json(json_pack(
            "{s:s, s:s, s:b, s:s, s:b, s:i, s:{s:s, s:s}}", "store",
            kg_store_path(cli->store), "hashKey", cli->cfg->hash_key_file,
            "hashKeyCreated", new_key, "secretKey", cli->cfg->secret_key_file,
            "secretKeyCreated", new_secret, "schemaVersion",
            kg_store_schema_version(cli->store), "workspace", "name",
            KG_WORKSPACE_DEFAULT, "mode", mode));
    }
    printf("Store:      %s (schema %d)\n", kg_store_path(cli->store),
           kg_store_schema_version(cli->store));
    printf("Hash key:   %s (%s)\n", cli->cfg->hash_key_file,
           new_key ? "created" : "kept");
    printf("Secret key: %s (%s)\n", cli->cfg->secret_key_file,
           new_secret ? "created" : "kept");
    printf("Workspace:  %s (mode %s%s)\n", KG_WORKSPACE_DEFAULT, mode,
           strcmp(mode, "pool") == 0
               ? ": keys use the configuration's provider credentials"
               : "");
    return KG_EXIT_OK;
}
