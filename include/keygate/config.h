/* keygate's INI configuration, driven by one table of settings. */
#ifndef KEYGATE_CONFIG_H
#define KEYGATE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/log.h"
#include "keygate/providers.h"

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
    KG_SETTING_SIZE,        /* "16k", "8m", "1g" (binary units) or bytes,
                               within [min, max] bytes */
    KG_SETTING_BOOL,        /* on/off, true/false, yes/no → bool */
    KG_SETTING_LISTEN,      /* "127.0.0.1:8080", "[::1]:8080" (string) */
    KG_SETTING_LISTEN_OPT,  /* like LISTEN, or "" (off) */
    KG_SETTING_STORE_URL,   /* "" or a postgresql:// URL (string) */
    KG_SETTING_URL,         /* a provider base URL (string) */
    KG_SETTING_PROVIDER_TYPE, /* openai | anthropic → kg_provider_type_t */
    KG_SETTING_PROVIDER_NAME, /* a provider name (string), resolved later */
    KG_SETTING_MODEL_NAME,    /* a model name (string) */
    KG_SETTING_PRICE,        /* USD per 1M tokens → micro-USD in [min, max] */
    KG_SETTING_SECRET_ENV,   /* names an env var holding the credential */
    KG_SETTING_SECRET_FILE,  /* names a file holding the credential (path) */
    KG_SETTING_CIDRS,        /* comma-separated IPv4/IPv6 CIDRs; "" = none */
    KG_SETTING_HTTP_VERSION, /* auto | 1.1 | 2 | 2-prior-knowledge →
                                kg_http_version_t */
    KG_SETTING_PATH_OPT,     /* like PATH, or "" (unset) */
    KG_SETTING_LOG_FORMAT,   /* text | json → kg_log_format_t */
    KG_SETTING_TLS_VERSION,  /* "1.2" | "1.3" (string) */
} kg_setting_type_t;

/* Flags of a setting. */
#define KG_SETTING_RESTART    0x1u /* takes effect only after a restart */
#define KG_SETTING_RELOADABLE 0x2u /* SIGHUP applies it */
#define KG_SETTING_SENSITIVE  0x4u /* never printed; redacted views hide it */
#define KG_SETTING_REQUIRED   0x8u /* a section without it is an error */
/* RELOADABLE, but going from empty to set or back needs a restart (a
 * listener's TLS: a new certificate reloads, turning TLS on does not). */
#define KG_SETTING_ONOFF_RESTART 0x10u

/* Room for the address part of a listen setting ("::ffff:1.2.3.4"). */
#define KG_LISTEN_HOST_MAX 64

typedef struct kg_config {
    char *path; /* the file read, or NULL for built-in defaults */
    /* [store] */
    char *store_path;
    char *store_url;           /* "" unless a PostgreSQL store is configured */
    int64_t store_stale_after; /* seconds; 0: cached keys never go stale */
    int64_t store_busy_timeout_ms;
    int64_t store_usage_queue; /* the usage writer's queue (places) */
    /* [keys] */
    char *keys_prefix;
    int64_t keys_max_ttl;     /* seconds; 0 = no maximum */
    int64_t keys_default_ttl; /* seconds; 0 = no expiry unless asked */
    /* [security] */
    char *hash_key_file;
    char *secret_key_file; /* default: "secret.key" next to hash_key_file */
    /* [log] */
    kg_log_level_t log_level;
    kg_log_format_t log_format;
    char *log_file; /* "" = stderr */
    /* [server] */
    char *server_listen;    /* see kg_config_listen_parse */
    int64_t server_threads; /* 0 = one per core */
    int64_t server_max_connections;
    int64_t server_max_connections_per_ip; /* 0 = unlimited */
    int64_t server_idle_timeout_ms;
    int64_t server_header_timeout_ms;
    int64_t server_max_header_bytes;
    int64_t server_max_body_bytes;
    int64_t server_drain_timeout_ms;  /* SIGTERM drain deadline */
    int64_t server_purge_interval_ms; /* periodic expiry purge */
    bool server_request_log;
    char *server_trusted_proxies; /* CIDRs whose X-Forwarded-For is used */
    bool server_health_routes;    /* /healthz, /readyz on the public side */
    char *server_pid_file;        /* "" = none */
    char *server_tls_cert_file;   /* "" = plain HTTP */
    char *server_tls_key_file;
    char *server_tls_min_version; /* "1.2" or "1.3" */
    /* [upstream]: defaults of every provider's timeouts, and limits */
    int64_t upstream_connect_timeout_ms;
    int64_t upstream_first_byte_timeout_ms; /* no headers by then → 504 */
    int64_t upstream_idle_timeout_ms;       /* no bytes mid-answer → end it */
    int64_t upstream_max_response_bytes;    /* larger answers are cut */
    int64_t upstream_max_connections_per_host;   /* 0 = unlimited */
    int64_t upstream_max_idle_connections;       /* kept per provider */
    int64_t upstream_idle_connection_timeout_ms; /* then closed */
    /* [admin]: the admin API, /metrics and the dashboard */
    char *admin_listen; /* "" = no admin listener */
    int64_t admin_threads;
    int64_t admin_max_connections;
    int64_t admin_max_body_bytes;
    int64_t admin_timeout_ms;
    int64_t admin_session_ttl; /* seconds */
    char *admin_tls_cert_file; /* "" = plain HTTP */
    char *admin_tls_key_file;
    char *admin_tls_min_version;
    bool admin_allow_insecure; /* plain HTTP on a non-loopback address */
    /* [metrics] */
    bool metrics_per_key;
    /* [usage] */
    int64_t usage_retention; /* seconds; 0 = keep usage events forever */
    /* [provider NAME] and [model NAME] sections, in file order */
    kg_provider_t *providers;
    size_t nproviders;
    kg_model_t *models;
    size_t nmodels;
    struct kg_providers_index *index; /* for kg_providers_route */
} kg_config_t;

typedef struct kg_setting {
    const char *section;
    const char *name;
    kg_setting_type_t type;
    size_t offset;   /* into kg_config_t, kg_provider_t or kg_model_t */
    const char *def; /* NULL: no default (see the section's rules) */
    unsigned flags;
    int64_t min; /* INT, DURATION, SIZE and PRICE bounds */
    int64_t max;
    const char *help; /* one line; docs/configuration.md says more */
} kg_setting_t;

/* The settings table (for the docs check and redacted views). */
const kg_setting_t *kg_config_settings(size_t *count);

/*
 * The settings of a [provider NAME] section (offsets into kg_provider_t)
 * and of a [model NAME] section (offsets into kg_model_t); their section
 * field is "provider" or "model".
 */
const kg_setting_t *kg_config_provider_settings(size_t *count);
const kg_setting_t *kg_config_model_settings(size_t *count);

/*
 * Split a [server] listen value "ADDRESS:PORT" where ADDRESS is an IPv4
 * literal or a bracketed IPv6 literal ("[::1]:8080") and PORT is 0..65535
 * (0 = ephemeral). On KG_OK host (hostlen bytes, KG_LISTEN_HOST_MAX is
 * enough) holds the address without brackets and *port the port; else
 * KG_ERR_INVAL with diag saying why.
 */
kg_err_t kg_config_listen_parse(const char *s, char *host, size_t hostlen,
                                int *port, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The path to use: explicit (from --config) if not NULL, else $KEYGATE_CONFIG
 * if set, else KG_CONFIG_DEFAULT_PATH. *explicit_out says whether the file
 * must exist (it need not for the built-in default path).
 */
const char *kg_config_pick_path(const char *explicit_path, int *explicit_out);

/*
 * Load built-in defaults, then path if not NULL. Errors name the file, the
 * line and the setting ("keygate.ini:12: [keys] max_ttl: ...",
 * "keygate.ini:30: [provider openai] base_url: ..."). Provider credentials
 * are read from their env vars and files now. On KG_OK *out is new
 * (kg_config_free); on error (KG_ERR_CONFIG, KG_ERR_NOMEM, KG_ERR_INTERNAL)
 * *out is NULL.
 */
kg_err_t kg_config_load(const char *path, kg_config_t **out,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* Flags of kg_config_load_ex. */
#define KG_CONFIG_NO_CREDENTIALS 0x1u /* do not read provider secrets */

/*
 * kg_config_load with flags. KG_CONFIG_NO_CREDENTIALS checks that
 * api_key_env / api_key_file are well formed but does not read them, so
 * store-only commands (keys, workspaces) work in a shell that does not
 * have the service's provider secrets; every provider's credential is
 * then NULL.
 */
kg_err_t kg_config_load_ex(const char *path, unsigned flags, kg_config_t **out,
                           kg_diag_t *diag) KG_MUST_CHECK;

/*
 * For a reload: compare every RESTART setting of next (a new file) with
 * running (the daemon's), and every KG_SETTING_ONOFF_RESTART one that goes
 * from empty to set or back. For each that differs, call changed (may be
 * NULL) with the setting and both values as text ("(redacted)" for a
 * SENSITIVE one), and put running's value back into next: next then
 * differs from running in reloadable settings only. KG_OK, or
 * KG_ERR_NOMEM (next is then half updated: free it).
 */
typedef void (*kg_config_changed_fn)(void *ud, const kg_setting_t *s,
                                     const char *running, const char *next);
kg_err_t kg_config_keep_restart(kg_config_t *next, const kg_config_t *running,
                                kg_config_changed_fn changed,
                                void *ud) KG_MUST_CHECK;

/*
 * The admin listener takes admin tokens and session cookies: refuse (
 * KG_ERR_CONFIG, diag says why and what to set) an [admin] listen that is
 * not a loopback address when the listener has no TLS, unless [admin]
 * allow_insecure is on. KG_OK otherwise (also with the listener off).
 */
kg_err_t kg_config_check_admin_exposure(const kg_config_t *cfg,
                                        kg_diag_t *diag) KG_MUST_CHECK;

/* Free *cfg (wiping provider credentials) and set it to NULL. */
void kg_config_free(kg_config_t **cfg);

/*
 * The effective configuration as a new JSON object {"section": {"name":
 * value}}, SENSITIVE values replaced by "(redacted)". Provider and model
 * sections appear as "provider NAME" and "model NAME"; each provider has a
 * "credential" member, "(redacted)" or "(none)", never the value. Unset
 * optional values are null. NULL on no memory.
 */
json_t *kg_config_to_json(const kg_config_t *cfg);

/*
 * Where the store is: [store] url when set (PostgreSQL), else [store]
 * path (SQLite). Borrowed from cfg. With a url, path still names where
 * the local files (the usage journal) live.
 */
const char *kg_config_store_location(const kg_config_t *cfg);

#endif /* KEYGATE_CONFIG_H */
