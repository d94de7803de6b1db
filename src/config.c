/* keygate's INI configuration, driven by one table of settings. */
#include "keygate/config.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/duration.h"
#include "keygate/token.h"

#define CFG(field) offsetof(kg_config_t, field)

static const kg_setting_t config_settings[] = {
    {"store", "path", KG_SETTING_PATH, CFG(store_path),
     "/var/lib/keygate/keygate.db", KG_SETTING_RESTART, 0, 0,
     "SQLite key store file (created by 'keygate init', mode 0600)"},
    {"store", "busy_timeout", KG_SETTING_DURATION_MS,
     CFG(store_busy_timeout_ms), "5s", KG_SETTING_RESTART, 0, 600,
     "how long a store write waits for a lock held by another process"},
    {"keys", "prefix", KG_SETTING_PREFIX, CFG(keys_prefix), "kg",
     KG_SETTING_RESTART, 0, 0,
     "token prefix of new keys: 1-16 of [a-z0-9], not 'kgadm'"},
    {"keys", "max_ttl", KG_SETTING_DURATION, CFG(keys_max_ttl), "90d",
     KG_SETTING_RELOADABLE, 0, KG_DURATION_MAX,
     "longest lifetime a key may be given; 0 = no maximum"},
    {"keys", "default_ttl", KG_SETTING_DURATION, CFG(keys_default_ttl), "90d",
     KG_SETTING_RELOADABLE, 0, KG_DURATION_MAX,
     "lifetime of a key created without an expiry; 0 = never expires"},
    {"security", "hash_key_file", KG_SETTING_PATH, CFG(hash_key_file),
     "/var/lib/keygate/hash.key", KG_SETTING_RESTART, 0, 0,
     "32-byte server key for hashing secrets (mode 0600, outside the store)"},
    {"log", "level", KG_SETTING_LOGLEVEL, CFG(log_level), "info",
     KG_SETTING_RELOADABLE, 0, 0, "error, warn, info or debug"},
};

#define CONFIG_NSETTINGS (sizeof(config_settings) / sizeof(*config_settings))

typedef struct config_parse {
    kg_config_t *cfg;
    const char *dir; /* directory of the file, for relative paths */
    bool seen[CONFIG_NSETTINGS];
    kg_diag_t first; /* the first error, without its line number */
    bool failed;
} config_parse_t;

const kg_setting_t *kg_config_settings(size_t *count)
{
    *count = CONFIG_NSETTINGS;
    return config_settings;
}

const char *kg_config_pick_path(const char *explicit_path, int *explicit_out)
{
    const char *env = getenv("KEYGATE_CONFIG");

    if (explicit_path != NULL) {
        *explicit_out = 1;
        return explicit_path;
    }
    if (env != NULL && *env != '\0') {
        *explicit_out = 1;
        return env;
    }
    *explicit_out = 0;
    return KG_CONFIG_DEFAULT_PATH;
}

static char **config_str_slot(kg_config_t *cfg, const kg_setting_t *s)
{
    return (char **)(void *)((char *)cfg + s->offset);
}

static int64_t *config_int_slot(kg_config_t *cfg, const kg_setting_t *s)
{
    return (int64_t *)(void *)((char *)cfg + s->offset);
}

/* Store a string setting, resolving a relative PATH against dir. */
static kg_err_t config_set_string(kg_config_t *cfg, const kg_setting_t *s,
                                  const char *value, const char *dir,
                                  kg_diag_t *diag)
{
    char **slot = config_str_slot(cfg, s);
    char *copy = NULL;
    size_t need;

    if (s->type == KG_SETTING_PATH && value[0] != '/' && dir != NULL) {
        need = strlen(dir) + 1 + strlen(value) + 1;
        if (need > PATH_MAX) {
            return kg_diag_fail(diag, KG_ERR_CONFIG, "path is too long");
        }
        copy = malloc(need);
        if (copy != NULL) {
            size_t dlen = strlen(dir);

            memcpy(copy, dir, dlen);
            copy[dlen] = '/';
            memcpy(copy + dlen + 1, value, strlen(value) + 1);
        }
    } else {
        if (strlen(value) >= PATH_MAX) {
            return kg_diag_fail(diag, KG_ERR_CONFIG, "value is too long");
        }
        copy = strdup(value);
    }
    if (copy == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    free(*slot);
    *slot = copy;
    return KG_OK;
}

static kg_err_t config_parse_int(const char *value, int64_t *out)
{
    char *end = NULL;
    long long v;

    errno = 0;
    v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0') {
        return KG_ERR_CONFIG;
    }
    *out = (int64_t)v;
    return KG_OK;
}

/* Check and store one value. Returns KG_OK or an error with diag set. */
static kg_err_t config_apply(kg_config_t *cfg, const kg_setting_t *s,
                             const char *value, const char *dir,
                             kg_diag_t *diag)
{
    int64_t v = 0;
    kg_log_level_t level;

    switch (s->type) {
    case KG_SETTING_STRING:
    case KG_SETTING_PATH:
        if (*value == '\0') {
            return kg_diag_fail(diag, KG_ERR_CONFIG, "must not be empty");
        }
        return config_set_string(cfg, s, value, dir, diag);
    case KG_SETTING_PREFIX:
        if (!kg_token_prefix_valid(value) ||
            strcmp(value, KG_TOKEN_ADMIN_PREFIX) == 0) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not a valid key prefix (1-16 of "
                                "a-z and 0-9, not '%s')",
                                value, KG_TOKEN_ADMIN_PREFIX);
        }
        return config_set_string(cfg, s, value, NULL, diag);
    case KG_SETTING_INT:
        if (config_parse_int(value, &v) != KG_OK || v < s->min || v > s->max) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not an integer from %" PRId64
                                " to %" PRId64,
                                value, s->min, s->max);
        }
        *config_int_slot(cfg, s) = v;
        return KG_OK;
    case KG_SETTING_DURATION:
    case KG_SETTING_DURATION_MS:
        if (kg_duration_parse(value, &v, diag) != KG_OK) {
            return KG_ERR_CONFIG;
        }
        if (v < s->min || v > s->max) {
            char lo[KG_DURATION_STRLEN];
            char hi[KG_DURATION_STRLEN];

            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is outside %s to %s", value,
                                kg_duration_format(s->min, lo, sizeof(lo)),
                                kg_duration_format(s->max, hi, sizeof(hi)));
        }
        if (s->type == KG_SETTING_DURATION_MS) {
            v *= 1000;
        }
        *config_int_slot(cfg, s) = v;
        return KG_OK;
    case KG_SETTING_LOGLEVEL:
        if (!kg_log_level_parse(value, &level)) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not one of error, warn, info, "
                                "debug",
                                value);
        }
        *(kg_log_level_t *)(void *)((char *)cfg + s->offset) = level;
        return KG_OK;
    }
    return kg_diag_fail(diag, KG_ERR_INTERNAL, "unknown setting type");
}

static int config_find(const char *section, const char *name)
{
    for (size_t i = 0; i < CONFIG_NSETTINGS; i++) {
        if (strcmp(config_settings[i].section, section) == 0 &&
            strcmp(config_settings[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static bool config_section_known(const char *section)
{
    for (size_t i = 0; i < CONFIG_NSETTINGS; i++) {
        if (strcmp(config_settings[i].section, section) == 0) {
            return true;
        }
    }
    return false;
}

/* libinih callback: returns 1 to go on, 0 to report an error on this line. */
static int config_ini_handler(void *user, const char *section, const char *name,
                              const char *value)
{
    config_parse_t *p = user;
    kg_diag_t diag = {{0}};
    int idx;

    if (p->failed) {
        return 0; /* the first error is what we report */
    }
    idx = config_find(section, name);
    if (idx < 0) {
        if (*section == '\0') {
            kg_diag_set(&p->first, "%.60s: setting outside of any section",
                        name);
        } else if (!config_section_known(section)) {
            kg_diag_set(&p->first, "[%.60s]: unknown section", section);
        } else {
            kg_diag_set(&p->first, "[%.60s] %.60s: unknown setting", section,
                        name);
        }
        p->failed = true;
        return 0;
    }
    if (p->seen[idx]) {
        kg_diag_set(&p->first, "[%s] %s: set more than once", section, name);
        p->failed = true;
        return 0;
    }
    p->seen[idx] = true;
    if (config_apply(p->cfg, &config_settings[idx], value, p->dir, &diag) !=
        KG_OK) {
        kg_diag_set(&p->first, "[%s] %s: %s", section, name, diag.msg);
        p->failed = true;
        return 0;
    }
    return 1;
}

static kg_err_t config_defaults(kg_config_t *cfg, kg_diag_t *diag)
{
    for (size_t i = 0; i < CONFIG_NSETTINGS; i++) {
        kg_diag_t d = {{0}};

        if (config_apply(cfg, &config_settings[i], config_settings[i].def, NULL,
                         &d) != KG_OK) {
            return kg_diag_fail(
                diag, KG_ERR_INTERNAL, "built-in default of [%s] %s: %s",
                config_settings[i].section, config_settings[i].name, d.msg);
        }
    }
    return KG_OK;
}

/* Report the first over-long line: libinih would silently split it. */
static kg_err_t config_check_lines(const char *path, kg_diag_t *diag)
{
    FILE *f = fopen(path, "r");
    int line = 1;
    int col = 0;
    int c;

    if (f == NULL) {
        return kg_diag_fail(diag, KG_ERR_CONFIG, "%s: cannot open: %s", path,
                            strerror(errno));
    }
    while ((c = getc(f)) != EOF) {
        if (c == '\n') {
            line++;
            col = 0;
        } else if (++col > KG_CONFIG_MAX_LINE) {
            fclose(f);
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "%s:%d: line longer than %d characters", path,
                                line, KG_CONFIG_MAX_LINE);
        }
    }
    fclose(f);
    return KG_OK;
}

/* Rules that tie settings together, checked after the whole file is read. */
static kg_err_t config_check_consistency(const kg_config_t *cfg,
                                         kg_diag_t *diag)
{
    char max[KG_DURATION_STRLEN];

    if (cfg->keys_max_ttl > 0 && (cfg->keys_default_ttl == 0 ||
                                  cfg->keys_default_ttl > cfg->keys_max_ttl)) {
        return kg_diag_fail(
            diag, KG_ERR_CONFIG,
            "%s: [keys] default_ttl must be from 1s to max_ttl (%s) while "
            "max_ttl is set",
            cfg->path ? cfg->path : "defaults",
            kg_duration_format(cfg->keys_max_ttl, max, sizeof(max)));
    }
    return KG_OK;
}

kg_err_t kg_config_load(const char *path, kg_config_t **out, kg_diag_t *diag)
{
    config_parse_t p;
    char *dircopy = NULL;
    kg_config_t *cfg = NULL;
    kg_err_t rc = KG_OK;
    int line;

    *out = NULL;
    memset(&p, 0, sizeof(p));
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    rc = config_defaults(cfg, diag);
    if (rc != KG_OK || path == NULL) {
        goto out;
    }
    rc = config_check_lines(path, diag);
    if (rc != KG_OK) {
        goto out;
    }
    cfg->path = strdup(path);
    dircopy = strdup(path);
    if (cfg->path == NULL || dircopy == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    p.cfg = cfg;
    p.dir = dirname(dircopy);
    line = ini_parse(path, config_ini_handler, &p);
    if (line < 0) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG, "%s: cannot read: %s", path,
                          line == -1 ? strerror(errno) : "out of memory");
    } else if (line > 0) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG, "%s:%d: %s", path, line,
                          p.failed ? p.first.msg
                                   : "syntax error (expected [section] or "
                                     "name = value)");
    }
    if (rc == KG_OK) {
        rc = config_check_consistency(cfg, diag);
    }
out:
    free(dircopy);
    if (rc != KG_OK) {
        kg_config_free(&cfg);
    }
    *out = cfg;
    return rc;
}

void kg_config_free(kg_config_t **cfg)
{
    if (cfg == NULL || *cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < CONFIG_NSETTINGS; i++) {
        const kg_setting_t *s = &config_settings[i];

        if (s->type == KG_SETTING_STRING || s->type == KG_SETTING_PATH ||
            s->type == KG_SETTING_PREFIX) {
            free(*config_str_slot(*cfg, s));
        }
    }
    free((*cfg)->path);
    free(*cfg);
    *cfg = NULL;
}

static json_t *config_value_json(const kg_config_t *cfg, const kg_setting_t *s)
{
    kg_config_t *c = (kg_config_t *)cfg;
    char buf[KG_DURATION_STRLEN];
    int64_t v;

    if (s->flags & KG_SETTING_SENSITIVE) {
        return json_string("(redacted)");
    }
    switch (s->type) {
    case KG_SETTING_STRING:
    case KG_SETTING_PATH:
    case KG_SETTING_PREFIX:
        return json_string(*config_str_slot(c, s));
    case KG_SETTING_INT:
        return json_integer(*config_int_slot(c, s));
    case KG_SETTING_DURATION:
    case KG_SETTING_DURATION_MS:
        v = *config_int_slot(c, s);
        if (s->type == KG_SETTING_DURATION_MS) {
            v /= 1000;
        }
        return json_string(kg_duration_format(v, buf, sizeof(buf)));
    case KG_SETTING_LOGLEVEL:
        return json_string(kg_log_level_name(cfg->log_level));
    }
    return json_null();
}

json_t *kg_config_to_json(const kg_config_t *cfg)
{
    json_t *root = json_object(); /* new */

    if (root == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < CONFIG_NSETTINGS; i++) {
        const kg_setting_t *s = &config_settings[i];
        json_t *sec = json_object_get(root, s->section); /* borrowed */

        if (sec == NULL) {
            sec = json_object();
            if (sec == NULL || json_object_set_new(root, s->section, sec)) {
                json_decref(root);
                return NULL;
            }
        }
        if (json_object_set_new(sec, s->name, config_value_json(cfg, s))) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}
