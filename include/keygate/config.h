/* keygate's INI configuration, driven by one table of settings. */
#ifndef KEYGATE_CONFIG_H
#define KEYGATE_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/log.h"

#define KG_CONFIG_DEFAULT_PATH "/etc/keygate/keygate.ini"
/* libinih reads lines of at most this many characters. */
#define KG_CONFIG_MAX_LINE 199

typedef enum kg_setting_type {
    KG_SETTING_STRING,
    KG_SETTING_PATH,        /* relative paths resolve against the file's dir */
    KG_SETTING_INT,         /* decimal integer within [min, max] */
    KG_SETTING_DURATION,    /* "90d", "5s" → seconds within [min, max] */
    KG_SETTING_DURATION_MS, /* like DURATION, stored in milliseconds */
    KG_SETTING_LOGLEVEL,    /* error | warn | info | debug */
    KG_SETTING_PREFIX,      /* a token prefix: 1..16 of [a-z0-9] */
} kg_setting_type_t;

/* Flags of a setting. */
#define KG_SETTING_RESTART    0x1u /* takes effect only after a restart */
#define KG_SETTING_RELOADABLE 0x2u /* SIGHUP applies it */
#define KG_SETTING_SENSITIVE  0x4u /* never printed; redacted views hide it */

typedef struct kg_config {
    char *path; /* the file read, or NULL for built-in defaults */
    /* [store] */
    char *store_path;
    int64_t store_busy_timeout_ms;
    /* [keys] */
    char *keys_prefix;
    int64_t keys_max_ttl;     /* seconds; 0 = no maximum */
    int64_t keys_default_ttl; /* seconds; 0 = no expiry unless asked */
    /* [security] */
    char *hash_key_file;
    /* [log] */
    kg_log_level_t log_level;
} kg_config_t;

typedef struct kg_setting {
    const char *section;
    const char *name;
    kg_setting_type_t type;
    size_t offset; /* into kg_config_t */
    const char *def;
    unsigned flags;
    int64_t min; /* INT and DURATION bounds */
    int64_t max;
    const char *help; /* one line; docs/configuration.md says more */
} kg_setting_t;

/* The settings table (for the docs check and redacted views). */
const kg_setting_t *kg_config_settings(size_t *count);

/*
 * The path to use: explicit (from --config) if not NULL, else $KEYGATE_CONFIG
 * if set, else KG_CONFIG_DEFAULT_PATH. *explicit_out says whether the file
 * must exist (it need not for the built-in default path).
 */
const char *kg_config_pick_path(const char *explicit_path, int *explicit_out);

/*
 * Load built-in defaults, then path if not NULL. Errors name the file, the
 * line and the setting ("keygate.ini:12: [keys] max_ttl: ..."). On KG_OK
 * *out is new (kg_config_free); on KG_ERR_CONFIG *out is NULL.
 */
kg_err_t kg_config_load(const char *path, kg_config_t **out,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* Free *cfg and set it to NULL. */
void kg_config_free(kg_config_t **cfg);

/*
 * The effective configuration as a new JSON object {"section": {"name":
 * value}}, SENSITIVE values replaced by "(redacted)". NULL on no memory.
 */
json_t *kg_config_to_json(const kg_config_t *cfg);

#endif /* KEYGATE_CONFIG_H */
