/* keygate's INI configuration, driven by one table of settings. */
#include "keygate/config.h"
#include "keygate/usagedb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keygate/duration.h"
#include "keygate/money.h"
#include "keygate/rules.h"
#include "keygate/token.h"

#define CFG(field) offsetof(kg_config_t, field)
#define PRV(field) offsetof(kg_provider_t, field)
#define MDL(field) offsetof(kg_model_t, field)

#define CONFIG_KIB INT64_C(1024)
#define CONFIG_MIB (CONFIG_KIB * 1024)
#define CONFIG_GIB (CONFIG_MIB * 1024)

/* Bounds in seconds of the upstream timeouts, shared by [provider NAME]. */
#define CONFIG_CONNECT_MAX    600
#define CONFIG_FIRST_BYTE_MAX 3600
#define CONFIG_IDLE_MAX       3600

static const kg_setting_t config_settings[] = {
    {"store", "path", KG_SETTING_PATH, CFG(store_path),
     "/var/lib/keygate/keygate.db", KG_SETTING_RESTART, 0, 0,
     "SQLite key store file (created by 'keygate init', mode 0600)"},
    {"store", "url", KG_SETTING_STORE_URL, CFG(store_url), "",
     KG_SETTING_RESTART | KG_SETTING_SENSITIVE, 0, 0,
     "postgresql:// URL of a shared store; empty: the SQLite file at path"},
    {"store", "stale_after", KG_SETTING_DURATION, CFG(store_stale_after), "60s",
     KG_SETTING_RESTART, 0, 86400,
     "how long cached keys answer while the store cannot be read; 0 = "
     "for ever"},
    {"store", "busy_timeout", KG_SETTING_DURATION_MS,
     CFG(store_busy_timeout_ms), "5s", KG_SETTING_RESTART, 0, 600,
     "how long a store write waits for a lock held by another process"},
    {"store", "usage_queue", KG_SETTING_INT, CFG(store_usage_queue), "65536",
     KG_SETTING_RESTART, 1, KG_USAGEDB_QUEUE_MAX,
     "usage events waiting for the writer, and requests in flight, at most; "
     "past it requests get 503"},
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
    {"security", "secret_key_file", KG_SETTING_PATH, CFG(secret_key_file),
     "/var/lib/keygate/secret.key", KG_SETTING_RESTART, 0, 0,
     "32-byte server key sealing workspace credentials (mode 0600); default: "
     "next to hash_key_file"},
    {"log", "level", KG_SETTING_LOGLEVEL, CFG(log_level), "info",
     KG_SETTING_RELOADABLE, 0, 0, "error, warn, info or debug"},
    {"log", "format", KG_SETTING_LOG_FORMAT, CFG(log_format), "text",
     KG_SETTING_RELOADABLE, 0, 0, "text, or json: one JSON object per line"},
    {"log", "file", KG_SETTING_PATH_OPT, CFG(log_file), "",
     KG_SETTING_RELOADABLE, 0, 0,
     "append to this file (reopened on SIGUSR1); empty = stderr"},
    {"server", "listen", KG_SETTING_LISTEN, CFG(server_listen),
     "127.0.0.1:8080", KG_SETTING_RESTART, 0, 0,
     "address:port of the client listener; port 0 = ephemeral"},
    {"server", "threads", KG_SETTING_INT, CFG(server_threads), "0",
     KG_SETTING_RESTART, 0, 256, "event-loop threads; 0 = one per core"},
    {"server", "max_connections", KG_SETTING_INT, CFG(server_max_connections),
     "16384", KG_SETTING_RESTART, 1, 1000000,
     "open client connections at most"},
    {"server", "max_connections_per_ip", KG_SETTING_INT,
     CFG(server_max_connections_per_ip), "1024", KG_SETTING_RESTART, 0, 1000000,
     "open connections from one client IP; 0 = unlimited"},
    {"server", "idle_timeout", KG_SETTING_DURATION_MS,
     CFG(server_idle_timeout_ms), "60s", KG_SETTING_RESTART, 1, 86400,
     "close a client connection idle this long"},
    {"server", "header_timeout", KG_SETTING_DURATION_MS,
     CFG(server_header_timeout_ms), "10s", KG_SETTING_RESTART, 1, 600,
     "a client must send the request headers within this"},
    {"server", "max_header_bytes", KG_SETTING_SIZE,
     CFG(server_max_header_bytes), "16k", KG_SETTING_RESTART, 4 * CONFIG_KIB,
     CONFIG_MIB, "request line and headers at most (431)"},
    {"server", "max_body_bytes", KG_SETTING_SIZE, CFG(server_max_body_bytes),
     "8m", KG_SETTING_RELOADABLE, CONFIG_KIB, 256 * CONFIG_MIB,
     "request body at most (413)"},
    {"server", "drain_timeout", KG_SETTING_DURATION_MS,
     CFG(server_drain_timeout_ms), "30s", KG_SETTING_RELOADABLE, 0, 3600,
     "on SIGTERM, how long in-flight requests may finish"},
    {"server", "purge_interval", KG_SETTING_DURATION_MS,
     CFG(server_purge_interval_ms), "60s", KG_SETTING_RELOADABLE, 1, 86400,
     "period of the purge of expired keys and cache entries"},
    {"server", "request_log", KG_SETTING_BOOL, CFG(server_request_log), "on",
     KG_SETTING_RELOADABLE, 0, 0, "one structured log line per request"},
    {"server", "health_routes", KG_SETTING_BOOL, CFG(server_health_routes),
     "off", KG_SETTING_RESTART, 0, 0,
     "also answer /healthz and /readyz on the client listener"},
    {"server", "trusted_proxies", KG_SETTING_CIDRS, CFG(server_trusted_proxies),
     "", KG_SETTING_RESTART, 0, 0,
     "proxies whose X-Forwarded-For names the client (CIDR list)"},
    {"server", "pid_file", KG_SETTING_PATH_OPT, CFG(server_pid_file), "",
     KG_SETTING_RESTART, 0, 0,
     "the daemon's process id, for 'keygate reload'; empty = none"},
    {"server", "tls_cert_file", KG_SETTING_PATH_OPT, CFG(server_tls_cert_file),
     "", KG_SETTING_RELOADABLE | KG_SETTING_ONOFF_RESTART, 0, 0,
     "PEM certificate chain of the client listener; empty = plain HTTP"},
    {"server", "tls_key_file", KG_SETTING_PATH_OPT, CFG(server_tls_key_file),
     "",
     KG_SETTING_RELOADABLE | KG_SETTING_ONOFF_RESTART | KG_SETTING_SENSITIVE, 0,
     0, "PEM private key of tls_cert_file (mode 0600 or 0640)"},
    {"server", "tls_min_version", KG_SETTING_TLS_VERSION,
     CFG(server_tls_min_version), "1.2", KG_SETTING_RELOADABLE, 0, 0,
     "oldest TLS version accepted: 1.2 or 1.3"},
    {"upstream", "connect_timeout", KG_SETTING_DURATION_MS,
     CFG(upstream_connect_timeout_ms), "10s", KG_SETTING_RELOADABLE, 1,
     CONFIG_CONNECT_MAX, "TCP and TLS connect to a provider (502)"},
    {"upstream", "first_byte_timeout", KG_SETTING_DURATION_MS,
     CFG(upstream_first_byte_timeout_ms), "300s", KG_SETTING_RELOADABLE, 1,
     CONFIG_FIRST_BYTE_MAX, "provider must send its headers by then (504)"},
    {"upstream", "idle_timeout", KG_SETTING_DURATION_MS,
     CFG(upstream_idle_timeout_ms), "120s", KG_SETTING_RELOADABLE, 1,
     CONFIG_IDLE_MAX, "no bytes this long mid-answer ends it"},
    {"upstream", "max_response_bytes", KG_SETTING_SIZE,
     CFG(upstream_max_response_bytes), "64m", KG_SETTING_RELOADABLE, CONFIG_KIB,
     CONFIG_GIB, "a longer answer is cut"},
    {"upstream", "max_connections_per_host", KG_SETTING_INT,
     CFG(upstream_max_connections_per_host), "256", KG_SETTING_RESTART, 0,
     65536, "open connections to one provider host; 0 = unlimited"},
    {"upstream", "max_idle_connections", KG_SETTING_INT,
     CFG(upstream_max_idle_connections), "64", KG_SETTING_RESTART, 1, 65536,
     "idle provider connections kept for reuse, per provider"},
    {"upstream", "idle_connection_timeout", KG_SETTING_DURATION_MS,
     CFG(upstream_idle_connection_timeout_ms), "30s", KG_SETTING_RESTART, 1,
     3600, "an idle provider connection is closed after this"},
    {"admin", "listen", KG_SETTING_LISTEN_OPT, CFG(admin_listen),
     "127.0.0.1:8081", KG_SETTING_RESTART, 0, 0,
     "address:port of the admin API and dashboard; empty = off"},
    {"admin", "threads", KG_SETTING_INT, CFG(admin_threads), "2",
     KG_SETTING_RESTART, 1, 64, "threads of the admin listener"},
    {"admin", "max_connections", KG_SETTING_INT, CFG(admin_max_connections),
     "64", KG_SETTING_RESTART, 1, 10000, "open admin connections at most"},
    {"admin", "max_body_bytes", KG_SETTING_SIZE, CFG(admin_max_body_bytes),
     "1m", KG_SETTING_RESTART, CONFIG_KIB, 64 * CONFIG_MIB,
     "admin request body at most (413)"},
    {"admin", "timeout", KG_SETTING_DURATION_MS, CFG(admin_timeout_ms), "30s",
     KG_SETTING_RESTART, 1, 3600,
     "close an admin connection idle (or slow to send) this long"},
    {"admin", "session_ttl", KG_SETTING_DURATION, CFG(admin_session_ttl), "12h",
     KG_SETTING_RESTART, 60, 30 * 86400, "lifetime of a dashboard sign-in"},
    {"admin", "tls_cert_file", KG_SETTING_PATH_OPT, CFG(admin_tls_cert_file),
     "", KG_SETTING_RELOADABLE | KG_SETTING_ONOFF_RESTART, 0, 0,
     "PEM certificate chain of the admin listener; empty = plain HTTP"},
    {"admin", "tls_key_file", KG_SETTING_PATH_OPT, CFG(admin_tls_key_file), "",
     KG_SETTING_RELOADABLE | KG_SETTING_ONOFF_RESTART | KG_SETTING_SENSITIVE, 0,
     0, "PEM private key of tls_cert_file (mode 0600 or 0640)"},
    {"admin", "tls_min_version", KG_SETTING_TLS_VERSION,
     CFG(admin_tls_min_version), "1.2", KG_SETTING_RELOADABLE, 0, 0,
     "oldest TLS version accepted: 1.2 or 1.3"},
    {"admin", "allow_insecure", KG_SETTING_BOOL, CFG(admin_allow_insecure),
     "off", KG_SETTING_RESTART, 0, 0,
     "allow plain HTTP on an address other than loopback"},
    {"metrics", "per_key", KG_SETTING_BOOL, CFG(metrics_per_key), "off",
     KG_SETTING_RESTART, 0, 0,
     "label request, token and cost metrics with the key id"},
    {"usage", "retention", KG_SETTING_DURATION, CFG(usage_retention), "0",
     KG_SETTING_RELOADABLE, 0, KG_DURATION_MAX,
     "delete usage events older than this (hourly totals stay); 0 = never"},
};

/* [provider NAME]: rows without a default are unset until given. */
static const kg_setting_t provider_settings[] = {
    {"provider", "type", KG_SETTING_PROVIDER_TYPE, PRV(type), NULL,
     KG_SETTING_RELOADABLE | KG_SETTING_REQUIRED, 0, 0, "openai or anthropic"},
    {"provider", "base_url", KG_SETTING_URL, PRV(base_url), NULL,
     KG_SETTING_RELOADABLE | KG_SETTING_REQUIRED, 0, 0,
     "http(s) URL up to the version: https://api.openai.com/v1"},
    {"provider", "api_key_env", KG_SETTING_SECRET_ENV, PRV(api_key_env), NULL,
     KG_SETTING_RELOADABLE, 0, 0,
     "environment variable holding the pool credential"},
    {"provider", "api_key_file", KG_SETTING_SECRET_FILE, PRV(api_key_file),
     NULL, KG_SETTING_RELOADABLE, 0, 0,
     "file holding the pool credential (one line, mode 0600 or 0640)"},
    {"provider", "connect_timeout", KG_SETTING_DURATION_MS,
     PRV(connect_timeout_ms), NULL, KG_SETTING_RELOADABLE, 1,
     CONFIG_CONNECT_MAX, "default: [upstream] connect_timeout"},
    {"provider", "first_byte_timeout", KG_SETTING_DURATION_MS,
     PRV(first_byte_timeout_ms), NULL, KG_SETTING_RELOADABLE, 1,
     CONFIG_FIRST_BYTE_MAX, "default: [upstream] first_byte_timeout"},
    {"provider", "idle_timeout", KG_SETTING_DURATION_MS, PRV(idle_timeout_ms),
     NULL, KG_SETTING_RELOADABLE, 1, CONFIG_IDLE_MAX,
     "default: [upstream] idle_timeout"},
    {"provider", "http_version", KG_SETTING_HTTP_VERSION, PRV(http_version),
     "auto", KG_SETTING_RELOADABLE, 0, 0,
     "auto, 1.1, 2 or 2-prior-knowledge (cleartext HTTP/2)"},
};

/* [model NAME] */
static const kg_setting_t model_settings[] = {
    {"model", "provider", KG_SETTING_PROVIDER_NAME, MDL(provider_name), NULL,
     KG_SETTING_RELOADABLE | KG_SETTING_REQUIRED, 0, 0,
     "the [provider NAME] that serves it"},
    {"model", "upstream", KG_SETTING_MODEL_NAME, MDL(upstream), NULL,
     KG_SETTING_RELOADABLE, 0, 0,
     "model name sent to the provider; default: the section's NAME"},
    {"model", "input_price", KG_SETTING_PRICE, MDL(input_price), NULL,
     KG_SETTING_RELOADABLE | KG_SETTING_REQUIRED, 0, KG_PRICE_MAX,
     "USD per 1M input tokens"},
    {"model", "output_price", KG_SETTING_PRICE, MDL(output_price), NULL,
     KG_SETTING_RELOADABLE | KG_SETTING_REQUIRED, 0, KG_PRICE_MAX,
     "USD per 1M output tokens"},
    {"model", "cached_input_price", KG_SETTING_PRICE, MDL(cached_input_price),
     NULL, KG_SETTING_RELOADABLE, 0, KG_PRICE_MAX,
     "USD per 1M cached input tokens; default: input_price"},
    {"model", "max_output_tokens", KG_SETTING_INT, MDL(max_output_tokens),
     "4096", KG_SETTING_RELOADABLE, 1, 10000000,
     "output cap of budget reservations when a request sets none"},
};

#define CONFIG_NSETTINGS (sizeof(config_settings) / sizeof(*config_settings))
#define PROVIDER_NSETTINGS \
    (sizeof(provider_settings) / sizeof(*provider_settings))
#define MODEL_NSETTINGS (sizeof(model_settings) / sizeof(*model_settings))

/* Room for the settings of one [provider] or [model] section. */
#define CONFIG_SECTION_ROWS 16
_Static_assert(PROVIDER_NSETTINGS <= CONFIG_SECTION_ROWS, "provider rows");
_Static_assert(MODEL_NSETTINGS <= CONFIG_SECTION_ROWS, "model rows");

/* A line buffer: lines are at most KG_CONFIG_MAX_LINE characters. */
#define CONFIG_LINE_BUF 256

typedef enum config_kind {
    CONFIG_IN_NONE,     /* before the first section */
    CONFIG_IN_FIXED,    /* a section of config_settings */
    CONFIG_IN_PROVIDER, /* [provider NAME] */
    CONFIG_IN_MODEL,    /* [model NAME] */
    CONFIG_IN_UNKNOWN,
} config_kind_t;

/* What the parser remembers of one [provider] or [model] section. */
typedef struct config_meta {
    int line;          /* of the [section] header */
    int provider_line; /* of a model's provider setting */
    bool seen[CONFIG_SECTION_ROWS];
} config_meta_t;

typedef struct config_parse {
    kg_config_t *cfg;
    bool skip_credentials; /* KG_CONFIG_NO_CREDENTIALS */
    const char *dir;       /* directory of the file, for relative paths */
    FILE *f;
    int line; /* lines read so far: the line libinih is working on */
    bool seen[CONFIG_NSETTINGS];
    /*
     * The section of the current line as written in the file: libinih
     * truncates long section names, so the reader tracks headers itself.
     */
    char section[CONFIG_LINE_BUF];
    config_kind_t kind;
    size_t entry;         /* index into cfg->providers or cfg->models */
    int unknown_line;     /* header line of an unknown section, or 0 */
    config_meta_t *pmeta; /* parallel to cfg->providers */
    config_meta_t *mmeta; /* parallel to cfg->models */
    size_t pcap;          /* room in cfg->providers */
    size_t pmcap;         /* room in pmeta */
    size_t mcap;          /* room in cfg->models */
    size_t mmcap;         /* room in mmeta */
    kg_diag_t first;      /* the first error, without its line number */
    int fail_line;
    kg_err_t fail_rc;
    bool failed;
} config_parse_t;

const kg_setting_t *kg_config_settings(size_t *count)
{
    *count = CONFIG_NSETTINGS;
    return config_settings;
}

const kg_setting_t *kg_config_provider_settings(size_t *count)
{
    *count = PROVIDER_NSETTINGS;
    return provider_settings;
}

const kg_setting_t *kg_config_model_settings(size_t *count)
{
    *count = MODEL_NSETTINGS;
    return model_settings;
}

const char *kg_config_store_location(const kg_config_t *cfg)
{
    return cfg->store_url[0] != '\0' ? cfg->store_url : cfg->store_path;
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

static char **config_str_slot(void *base, const kg_setting_t *s)
{
    return (char **)(void *)((char *)base + s->offset);
}

static int64_t *config_int_slot(void *base, const kg_setting_t *s)
{
    return (int64_t *)(void *)((char *)base + s->offset);
}

/* Whether a setting of this type is stored as a malloc'd string. */
static bool config_type_is_string(kg_setting_type_t type)
{
    switch (type) {
    case KG_SETTING_STRING:
    case KG_SETTING_PATH:
    case KG_SETTING_PREFIX:
    case KG_SETTING_LISTEN:
    case KG_SETTING_LISTEN_OPT:
    case KG_SETTING_URL:
    case KG_SETTING_STORE_URL:
    case KG_SETTING_PROVIDER_NAME:
    case KG_SETTING_MODEL_NAME:
    case KG_SETTING_SECRET_ENV:
    case KG_SETTING_SECRET_FILE:
    case KG_SETTING_CIDRS:
    case KG_SETTING_PATH_OPT:
    case KG_SETTING_TLS_VERSION:
        return true;
    default:
        return false;
    }
}

/* Store a string setting, resolving a relative path against dir. */
static kg_err_t config_set_string(void *base, const kg_setting_t *s,
                                  const char *value, const char *dir,
                                  kg_diag_t *diag)
{
    char **slot = config_str_slot(base, s);
    char *copy = NULL;
    size_t need;

    if ((s->type == KG_SETTING_PATH || s->type == KG_SETTING_SECRET_FILE ||
         s->type == KG_SETTING_PATH_OPT) &&
        value[0] != '/' && value[0] != '\0' && dir != NULL) {
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

/* "16k", "8m", "1g" (binary units) or plain bytes. */
static bool config_parse_size(const char *s, int64_t *out)
{
    int64_t v = 0;
    int64_t mult = 1;
    const char *p = s;

    if (*p < '0' || *p > '9') {
        return false;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10) {
            return false;
        }
        v = v * 10 + (*p - '0');
    }
    if (*p == 'k' || *p == 'K') {
        mult = CONFIG_KIB;
        p++;
    } else if (*p == 'm' || *p == 'M') {
        mult = CONFIG_MIB;
        p++;
    } else if (*p == 'g' || *p == 'G') {
        mult = CONFIG_GIB;
        p++;
    }
    if (*p != '\0' || v > INT64_MAX / mult) {
        return false;
    }
    *out = v * mult;
    return true;
}

/* Print bytes in the largest exact unit ("16k", "8m", "1000"). */
static const char *config_format_size(int64_t v, char *buf, size_t len)
{
    if (v != 0 && v % CONFIG_GIB == 0) {
        snprintf(buf, len, "%" PRId64 "g", v / CONFIG_GIB);
    } else if (v != 0 && v % CONFIG_MIB == 0) {
        snprintf(buf, len, "%" PRId64 "m", v / CONFIG_MIB);
    } else if (v != 0 && v % CONFIG_KIB == 0) {
        snprintf(buf, len, "%" PRId64 "k", v / CONFIG_KIB);
    } else {
        snprintf(buf, len, "%" PRId64, v);
    }
    return buf;
}

static bool config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "true", "yes"};
    static const char *const no[] = {"off", "false", "no"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool config_env_name_valid(const char *s)
{
    size_t n = strnlen(s, KG_ENV_NAME_MAX + 1);

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

kg_err_t kg_config_listen_parse(const char *s, char *host, size_t hostlen,
                                int *port, kg_diag_t *diag)
{
    char h[KG_LISTEN_HOST_MAX];
    unsigned char addr[16];
    const char *portstr;
    size_t n;
    long v = 0;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        n = close == NULL ? 0 : (size_t)(close - s) - 1;
        if (close == NULL || close[1] != ':' || n == 0 || n >= sizeof(h)) {
            goto bad;
        }
        memcpy(h, s + 1, n);
        h[n] = '\0';
        if (inet_pton(AF_INET6, h, addr) != 1) {
            goto bad;
        }
        portstr = close + 2;
    } else {
        const char *colon = strrchr(s, ':');

        if (colon == NULL) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "'%.60s' has no port (ADDRESS:PORT, e.g. "
                                "127.0.0.1:8080)",
                                s);
        }
        n = (size_t)(colon - s);
        if (memchr(s, ':', n) != NULL) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "'%.60s': write an IPv6 address in brackets, "
                                "e.g. [::1]:8080",
                                s);
        }
        if (n == 0 || n >= sizeof(h)) {
            goto bad;
        }
        memcpy(h, s, n);
        h[n] = '\0';
        if (inet_pton(AF_INET, h, addr) != 1) {
            goto bad;
        }
        portstr = colon + 1;
    }
    n = strlen(portstr);
    if (n == 0 || n > 5) {
        goto bad;
    }
    for (size_t i = 0; i < n; i++) {
        if (portstr[i] < '0' || portstr[i] > '9') {
            goto bad;
        }
        v = v * 10 + (portstr[i] - '0');
    }
    if (v > 65535) {
        goto bad;
    }
    if (strlen(h) >= hostlen) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "address buffer too small");
    }
    memcpy(host, h, strlen(h) + 1);
    *port = (int)v;
    return KG_OK;
bad:
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "'%.60s' is not ADDRESS:PORT with an IP address and "
                        "a port from 0 to 65535 (e.g. 127.0.0.1:8080, "
                        "0.0.0.0:8080, [::1]:8080)",
                        s);
}

static kg_err_t config_apply_int(void *base, const kg_setting_t *s,
                                 const char *value, kg_diag_t *diag)
{
    int64_t v = 0;

    if (config_parse_int(value, &v) != KG_OK || v < s->min || v > s->max) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "'%.40s' is not an integer from %" PRId64
                            " to %" PRId64,
                            value, s->min, s->max);
    }
    *config_int_slot(base, s) = v;
    return KG_OK;
}

static kg_err_t config_apply_duration(void *base, const kg_setting_t *s,
                                      const char *value, kg_diag_t *diag)
{
    int64_t v = 0;

    if (kg_duration_parse(value, &v, diag) != KG_OK) {
        return KG_ERR_CONFIG;
    }
    if (v < s->min || v > s->max) {
        char lo[KG_DURATION_STRLEN];
        char hi[KG_DURATION_STRLEN];

        return kg_diag_fail(diag, KG_ERR_CONFIG, "'%.40s' is outside %s to %s",
                            value, kg_duration_format(s->min, lo, sizeof(lo)),
                            kg_duration_format(s->max, hi, sizeof(hi)));
    }
    if (s->type == KG_SETTING_DURATION_MS) {
        v *= 1000;
    }
    *config_int_slot(base, s) = v;
    return KG_OK;
}

static kg_err_t config_apply_size(void *base, const kg_setting_t *s,
                                  const char *value, kg_diag_t *diag)
{
    char lo[32];
    char hi[32];
    int64_t v = 0;

    if (!config_parse_size(value, &v) || v < s->min || v > s->max) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "'%.40s' is not a size from %s to %s (bytes, or "
                            "a number with k, m or g)",
                            value, config_format_size(s->min, lo, sizeof(lo)),
                            config_format_size(s->max, hi, sizeof(hi)));
    }
    *config_int_slot(base, s) = v;
    return KG_OK;
}

static kg_err_t config_apply_price(void *base, const kg_setting_t *s,
                                   const char *value, kg_diag_t *diag)
{
    kg_diag_t d = {{0}};
    char max[KG_MONEY_STRLEN];
    int64_t v = 0;

    if (kg_money_parse(value, &v, &d) != KG_OK) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "%s (USD per 1M tokens, e.g. 2.50)", d.msg);
    }
    if (v < s->min || v > s->max) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "'%.40s' is above the maximum of %s USD per 1M "
                            "tokens",
                            value, kg_money_format(s->max, max, sizeof(max)));
    }
    *config_int_slot(base, s) = v;
    return KG_OK;
}

/* Check a name-like value, then store it as a string. */
static kg_err_t config_apply_name(void *base, const kg_setting_t *s,
                                  const char *value, kg_diag_t *diag)
{
    if (s->type == KG_SETTING_PROVIDER_NAME &&
        !kg_providers_name_valid(value)) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "'%.80s' is not a provider name (1-64 of a-z, "
                            "0-9, _ and -)",
                            value);
    }
    if (s->type == KG_SETTING_MODEL_NAME &&
        !kg_providers_model_name_valid(value)) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "'%.80s' is not a model name (1-256 printable "
                            "characters, no spaces)",
                            value);
    }
    if (s->type == KG_SETTING_SECRET_ENV && !config_env_name_valid(value)) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "'%.80s' is not an environment variable name "
                            "(letters, digits and _, not starting with a "
                            "digit)",
                            value);
    }
    return config_set_string(base, s, value, NULL, diag);
}

/*
 * Check and store one value into base (the struct s->offset points into).
 * Returns KG_OK or an error with diag set.
 */
static kg_err_t config_apply(void *base, const kg_setting_t *s,
                             const char *value, const char *dir,
                             kg_diag_t *diag)
{
    kg_log_level_t level;
    kg_log_format_t format;
    kg_provider_type_t ptype;
    kg_http_version_t hver;
    char host[KG_LISTEN_HOST_MAX];
    char *url = NULL;
    bool b = false;
    int port = 0;
    kg_err_t rc;

    switch (s->type) {
    case KG_SETTING_STRING:
    case KG_SETTING_PATH:
    case KG_SETTING_SECRET_FILE:
        if (*value == '\0') {
            return kg_diag_fail(diag, KG_ERR_CONFIG, "must not be empty");
        }
        return config_set_string(base, s, value, dir, diag);
    case KG_SETTING_CIDRS: {
        kg_cidr_list_t *list = NULL;

        rc = kg_cidr_list_parse(value, &list, diag);
        kg_cidr_list_free(&list);
        if (rc != KG_OK) {
            return KG_ERR_CONFIG;
        }
        return config_set_string(base, s, value, NULL, diag);
    }
    case KG_SETTING_PREFIX:
        if (!kg_token_prefix_valid(value) ||
            strcmp(value, KG_TOKEN_ADMIN_PREFIX) == 0) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not a valid key prefix (1-16 of "
                                "a-z and 0-9, not '%s')",
                                value, KG_TOKEN_ADMIN_PREFIX);
        }
        return config_set_string(base, s, value, NULL, diag);
    case KG_SETTING_INT:
        return config_apply_int(base, s, value, diag);
    case KG_SETTING_DURATION:
    case KG_SETTING_DURATION_MS:
        return config_apply_duration(base, s, value, diag);
    case KG_SETTING_LOGLEVEL:
        if (!kg_log_level_parse(value, &level)) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not one of error, warn, info, "
                                "debug",
                                value);
        }
        *(kg_log_level_t *)(void *)((char *)base + s->offset) = level;
        return KG_OK;
    case KG_SETTING_LOG_FORMAT:
        if (!kg_log_format_parse(value, &format)) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not one of text, json", value);
        }
        *(kg_log_format_t *)(void *)((char *)base + s->offset) = format;
        return KG_OK;
    case KG_SETTING_PATH_OPT:
        return config_set_string(base, s, value, dir, diag);
    case KG_SETTING_TLS_VERSION:
        if (strcmp(value, "1.2") != 0 && strcmp(value, "1.3") != 0) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not 1.2 or 1.3", value);
        }
        return config_set_string(base, s, value, NULL, diag);
    case KG_SETTING_SIZE:
        return config_apply_size(base, s, value, diag);
    case KG_SETTING_BOOL:
        if (!config_parse_bool(value, &b)) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not on/off, true/false or yes/no",
                                value);
        }
        *(bool *)(void *)((char *)base + s->offset) = b;
        return KG_OK;
    case KG_SETTING_STORE_URL:
        if (value[0] != '\0' && strncmp(value, "postgresql://", 13) != 0 &&
            strncmp(value, "postgres://", 11) != 0) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "must be a postgresql:// URL, or empty (the "
                                "SQLite file at [store] path)");
        }
        return config_set_string(base, s, value, NULL, diag);
    case KG_SETTING_LISTEN_OPT:
        if (value[0] == '\0') {
            return config_set_string(base, s, value, NULL, diag);
        }
        /* fall through */
    case KG_SETTING_LISTEN:
        if (kg_config_listen_parse(value, host, sizeof(host), &port, diag) !=
            KG_OK) {
            return KG_ERR_CONFIG;
        }
        return config_set_string(base, s, value, NULL, diag);
    case KG_SETTING_URL:
        rc = kg_providers_base_url_parse(value, &url, diag);
        if (rc != KG_OK) {
            return rc == KG_ERR_NOMEM ? KG_ERR_NOMEM : KG_ERR_CONFIG;
        }
        free(*config_str_slot(base, s));
        *config_str_slot(base, s) = url;
        return KG_OK;
    case KG_SETTING_PROVIDER_TYPE:
        if (!kg_provider_type_parse(value, &ptype)) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not openai or anthropic", value);
        }
        *(kg_provider_type_t *)(void *)((char *)base + s->offset) = ptype;
        return KG_OK;
    case KG_SETTING_HTTP_VERSION:
        if (!kg_http_version_parse(value, &hver)) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "'%.40s' is not auto, 1.1, 2 or "
                                "2-prior-knowledge",
                                value);
        }
        *(kg_http_version_t *)(void *)((char *)base + s->offset) = hver;
        return KG_OK;
    case KG_SETTING_PROVIDER_NAME:
    case KG_SETTING_MODEL_NAME:
    case KG_SETTING_SECRET_ENV:
        return config_apply_name(base, s, value, diag);
    case KG_SETTING_PRICE:
        return config_apply_price(base, s, value, diag);
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

static int config_find_row(const kg_setting_t *table, size_t n,
                           const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].name, name) == 0) {
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

/* Record the first error, found on line (its number goes in front later). */
static void config_fail_at(config_parse_t *p, int line, kg_err_t rc,
                           const char *fmt, ...) KG_PRINTF(4, 5);

static void config_fail_at(config_parse_t *p, int line, kg_err_t rc,
                           const char *fmt, ...)
{
    va_list ap;

    if (p->failed) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(p->first.msg, sizeof(p->first.msg), fmt, ap);
    va_end(ap);
    p->fail_line = line;
    p->fail_rc = rc == KG_ERR_NOMEM ? KG_ERR_NOMEM : KG_ERR_CONFIG;
    p->failed = true;
}

/* Apply the defaults of a section table to a new entry. */
static kg_err_t config_entry_defaults(void *base, const kg_setting_t *table,
                                      size_t n, kg_diag_t *diag)
{
    for (size_t i = 0; i < n; i++) {
        kg_diag_t d = {{0}};

        if (table[i].def == NULL) {
            continue;
        }
        if (config_apply(base, &table[i], table[i].def, NULL, &d) != KG_OK) {
            return kg_diag_fail(diag, KG_ERR_INTERNAL,
                                "built-in default of [%s] %s: %s",
                                table[i].section, table[i].name, d.msg);
        }
    }
    return KG_OK;
}

/* Grow an array of elements of size sz to hold one more; false: no memory. */
static bool config_grow(void **arr, size_t *cap, size_t used, size_t sz)
{
    size_t ncap = *cap == 0 ? 8 : *cap * 2;
    void *n;

    if (used < *cap) {
        return true;
    }
    n = realloc(*arr, ncap * sz);
    if (n == NULL) {
        return false;
    }
    *arr = n;
    *cap = ncap;
    return true;
}

/* Open "[provider NAME]" (name after the space, or NULL). */
static void config_open_provider(config_parse_t *p, const char *name)
{
    kg_config_t *cfg = p->cfg;
    kg_provider_t *pr;
    kg_diag_t d = {{0}};

    if (name == NULL || !kg_providers_name_valid(name)) {
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "[%.100s]: a provider section is [provider NAME] with "
                       "NAME 1-64 of a-z, 0-9, _ and -",
                       p->section);
        return;
    }
    for (size_t i = 0; i < cfg->nproviders; i++) {
        if (strcmp(cfg->providers[i].name, name) == 0) {
            config_fail_at(p, p->line, KG_ERR_CONFIG,
                           "[%.100s]: defined more than once (first on line "
                           "%d)",
                           p->section, p->pmeta[i].line);
            return;
        }
    }
    if (cfg->nproviders >= KG_PROVIDERS_MAX) {
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "[%.100s]: too many providers (at most %d)", p->section,
                       KG_PROVIDERS_MAX);
        return;
    }
    if (!config_grow((void **)&cfg->providers, &p->pcap, cfg->nproviders,
                     sizeof(*cfg->providers)) ||
        !config_grow((void **)&p->pmeta, &p->pmcap, cfg->nproviders,
                     sizeof(*p->pmeta))) {
        config_fail_at(p, p->line, KG_ERR_NOMEM, "out of memory");
        return;
    }
    pr = &cfg->providers[cfg->nproviders];
    memset(pr, 0, sizeof(*pr));
    memset(&p->pmeta[cfg->nproviders], 0, sizeof(*p->pmeta));
    p->pmeta[cfg->nproviders].line = p->line;
    pr->connect_timeout_ms = -1;
    pr->first_byte_timeout_ms = -1;
    pr->idle_timeout_ms = -1;
    pr->name = strdup(name);
    cfg->nproviders++; /* counted now, so kg_config_free frees it */
    if (pr->name == NULL) {
        config_fail_at(p, p->line, KG_ERR_NOMEM, "out of memory");
        return;
    }
    if (config_entry_defaults(pr, provider_settings, PROVIDER_NSETTINGS, &d) !=
        KG_OK) {
        config_fail_at(p, p->line, KG_ERR_CONFIG, "%s", d.msg);
        return;
    }
    p->kind = CONFIG_IN_PROVIDER;
    p->entry = cfg->nproviders - 1;
}

/* Open "[model NAME]" (name after the space, or NULL). */
static void config_open_model(config_parse_t *p, const char *name)
{
    kg_config_t *cfg = p->cfg;
    kg_model_t *m;
    kg_diag_t d = {{0}};

    if (name == NULL || !kg_providers_model_name_valid(name)) {
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "[%.100s]: a model section is [model NAME] with NAME "
                       "1-256 printable characters without spaces",
                       p->section);
        return;
    }
    for (size_t i = 0; i < cfg->nmodels; i++) {
        if (strcmp(cfg->models[i].name, name) == 0) {
            config_fail_at(p, p->line, KG_ERR_CONFIG,
                           "[%.100s]: defined more than once (first on line "
                           "%d)",
                           p->section, p->mmeta[i].line);
            return;
        }
    }
    if (cfg->nmodels >= KG_MODELS_MAX) {
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "[%.100s]: too many models (at most %d)", p->section,
                       KG_MODELS_MAX);
        return;
    }
    if (!config_grow((void **)&cfg->models, &p->mcap, cfg->nmodels,
                     sizeof(*cfg->models)) ||
        !config_grow((void **)&p->mmeta, &p->mmcap, cfg->nmodels,
                     sizeof(*p->mmeta))) {
        config_fail_at(p, p->line, KG_ERR_NOMEM, "out of memory");
        return;
    }
    m = &cfg->models[cfg->nmodels];
    memset(m, 0, sizeof(*m));
    memset(&p->mmeta[cfg->nmodels], 0, sizeof(*p->mmeta));
    p->mmeta[cfg->nmodels].line = p->line;
    m->cached_input_price = -1;
    m->name = strdup(name);
    cfg->nmodels++;
    if (m->name == NULL) {
        config_fail_at(p, p->line, KG_ERR_NOMEM, "out of memory");
        return;
    }
    if (config_entry_defaults(m, model_settings, MODEL_NSETTINGS, &d) !=
        KG_OK) {
        config_fail_at(p, p->line, KG_ERR_CONFIG, "%s", d.msg);
        return;
    }
    p->kind = CONFIG_IN_MODEL;
    p->entry = cfg->nmodels - 1;
}

/* The current section ends: an unknown one without settings is an error. */
static void config_section_end(config_parse_t *p)
{
    if (p->kind == CONFIG_IN_UNKNOWN && p->unknown_line > 0) {
        config_fail_at(p, p->unknown_line, KG_ERR_CONFIG,
                       "[%.100s]: unknown section", p->section);
    }
    p->unknown_line = 0;
}

/* A "[text]" header was read on the current line. */
static void config_section_open(config_parse_t *p, const char *text, size_t n)
{
    config_section_end(p);
    if (p->failed) {
        return;
    }
    memcpy(p->section, text, n);
    p->section[n] = '\0';
    p->kind = CONFIG_IN_UNKNOWN;
    if (strcmp(p->section, "provider") == 0) {
        config_open_provider(p, NULL);
    } else if (strncmp(p->section, "provider ", 9) == 0) {
        config_open_provider(p, p->section + 9);
    } else if (strcmp(p->section, "model") == 0) {
        config_open_model(p, NULL);
    } else if (strncmp(p->section, "model ", 6) == 0) {
        config_open_model(p, p->section + 6);
    } else if (config_section_known(p->section)) {
        p->kind = CONFIG_IN_FIXED;
    } else {
        p->unknown_line = p->line;
    }
}

/*
 * Spot a "[section]" header the way libinih reads one: first non-blank
 * character '[', up to the first ']' unless a " ;" comment comes first (then
 * libinih reports a syntax error and keeps the old section).
 */
static void config_scan_header(config_parse_t *p, const char *line)
{
    const char *s = line;
    const char *close;

    if (p->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
    }
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\f' || *s == '\v') {
        s++;
    }
    if (*s != '[') {
        return;
    }
    close = strchr(s + 1, ']');
    if (close == NULL) {
        return;
    }
    for (const char *c = s + 1; c < close; c++) {
        if (*c == ';' && (c[-1] == ' ' || c[-1] == '\t')) {
            return;
        }
    }
    config_section_open(p, s + 1, (size_t)(close - s - 1));
}

/*
 * libinih's reader: one physical line per call (however long, so line
 * numbers match the file), its header noted before libinih parses it.
 * Returns NULL at the end of the file or after the first error.
 */
static char *config_reader(char *str, int num, void *stream)
{
    config_parse_t *p = stream;
    char line[CONFIG_LINE_BUF];
    size_t n = 0;
    size_t keep;
    int c;

    if (p->failed || num < 2) {
        return NULL;
    }
    while ((c = getc(p->f)) != EOF && c != '\n') {
        if (n < sizeof(line) - 1) {
            line[n++] = (char)c;
        }
    }
    if (c == EOF && n == 0) {
        config_section_end(p);
        return NULL;
    }
    line[n] = '\0';
    p->line++;
    config_scan_header(p, line);
    if (p->failed) {
        return NULL;
    }
    keep = n < (size_t)num - 1 ? n : (size_t)num - 1;
    memcpy(str, line, keep);
    str[keep] = '\0';
    return str;
}

/* A setting of a [provider NAME] or [model NAME] section. */
static void config_entry_setting(config_parse_t *p, const char *name,
                                 const char *value)
{
    bool provider = p->kind == CONFIG_IN_PROVIDER;
    const kg_setting_t *table = provider ? provider_settings : model_settings;
    size_t n = provider ? PROVIDER_NSETTINGS : MODEL_NSETTINGS;
    config_meta_t *meta = provider ? &p->pmeta[p->entry] : &p->mmeta[p->entry];
    kg_provider_t *pr = provider ? &p->cfg->providers[p->entry] : NULL;
    void *base = provider ? (void *)pr : (void *)&p->cfg->models[p->entry];
    kg_diag_t d = {{0}};
    const kg_setting_t *s;
    int idx = config_find_row(table, n, name);
    kg_err_t rc;

    if (idx < 0) {
        bool inline_key = provider && (strcmp(name, "api_key") == 0 ||
                                       strcmp(name, "credential") == 0);

        config_fail_at(p, p->line, KG_ERR_CONFIG, "[%.100s] %.60s: %s",
                       p->section, name,
                       inline_key ? "credentials are never written in this "
                                    "file: use api_key_env or api_key_file"
                                  : "unknown setting");
        return;
    }
    s = &table[idx];
    if (meta->seen[idx]) {
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "[%.100s] %s: set more than once", p->section, name);
        return;
    }
    meta->seen[idx] = true;
    if ((s->type == KG_SETTING_SECRET_ENV && pr->api_key_file != NULL) ||
        (s->type == KG_SETTING_SECRET_FILE && pr->api_key_env != NULL)) {
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "[%.100s] %s: api_key_env and api_key_file exclude "
                       "each other; set one",
                       p->section, name);
        return;
    }
    rc = config_apply(base, s, value, p->dir, &d);
    if (rc == KG_OK && p->skip_credentials) {
        /* Names are checked; the secrets themselves are not read. */
    } else if (rc == KG_OK && s->type == KG_SETTING_SECRET_ENV) {
        rc = kg_providers_credential_from_env(pr->api_key_env, &pr->credential,
                                              &pr->credential_len, &d);
    } else if (rc == KG_OK && s->type == KG_SETTING_SECRET_FILE) {
        rc = kg_providers_credential_from_file(
            pr->api_key_file, &pr->credential, &pr->credential_len, &d);
    }
    if (rc != KG_OK) {
        config_fail_at(p, p->line, rc, "[%.100s] %s: %s", p->section, name,
                       d.msg);
        return;
    }
    if (s->type == KG_SETTING_PROVIDER_NAME) {
        meta->provider_line = p->line;
    }
}

/* A setting of a fixed section. */
static void config_fixed_setting(config_parse_t *p, const char *name,
                                 const char *value)
{
    kg_diag_t diag = {{0}};
    int idx = config_find(p->section, name);
    kg_err_t rc;

    if (idx < 0) {
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "[%.60s] %.60s: unknown setting", p->section, name);
        return;
    }
    if (p->seen[idx]) {
        config_fail_at(p, p->line, KG_ERR_CONFIG, "[%s] %s: set more than once",
                       p->section, name);
        return;
    }
    p->seen[idx] = true;
    rc = config_apply(p->cfg, &config_settings[idx], value, p->dir, &diag);
    if (rc != KG_OK) {
        config_fail_at(p, p->line, rc, "[%s] %s: %s", p->section, name,
                       diag.msg);
    }
}

/* libinih callback: returns 1 to go on, 0 to report an error on this line. */
static int config_ini_handler(void *user, const char *section, const char *name,
                              const char *value)
{
    config_parse_t *p = user;

    if (p->failed) {
        return 0; /* the first error is what we report */
    }
    /* libinih's section is ours, perhaps truncated; else we lost track. */
    if (strncmp(section, p->section, strlen(section)) != 0) {
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "[%.60s]: a section header must start its own line "
                       "and not follow an indented line",
                       section);
        return 0;
    }
    switch (p->kind) {
    case CONFIG_IN_NONE:
        config_fail_at(p, p->line, KG_ERR_CONFIG,
                       "%.60s: setting outside of any section", name);
        break;
    case CONFIG_IN_UNKNOWN:
        config_fail_at(p, p->line, KG_ERR_CONFIG, "[%.60s]: unknown section",
                       p->section);
        break;
    case CONFIG_IN_FIXED:
        config_fixed_setting(p, name, value);
        break;
    case CONFIG_IN_PROVIDER:
    case CONFIG_IN_MODEL:
        config_entry_setting(p, name, value);
        break;
    }
    return p->failed ? 0 : 1;
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

/* Report the first REQUIRED row of table that meta has not seen. */
static void config_check_required(config_parse_t *p, const char *kind,
                                  const char *name, const kg_setting_t *table,
                                  size_t n, const config_meta_t *meta)
{
    for (size_t i = 0; i < n; i++) {
        if ((table[i].flags & KG_SETTING_REQUIRED) && !meta->seen[i]) {
            config_fail_at(p, meta->line, KG_ERR_CONFIG,
                           "[%s %.100s] %s: is required (%s)", kind, name,
                           table[i].name, table[i].help);
            return;
        }
    }
}

/*
 * After the whole file: required settings, model → provider references
 * (the order of sections does not matter), inherited timeouts, defaults
 * that depend on the section's name.
 */
static void config_check_entries(config_parse_t *p)
{
    kg_config_t *cfg = p->cfg;

    for (size_t i = 0; i < cfg->nproviders && !p->failed; i++) {
        kg_provider_t *pr = &cfg->providers[i];

        config_check_required(p, "provider", pr->name, provider_settings,
                              PROVIDER_NSETTINGS, &p->pmeta[i]);
        if (pr->connect_timeout_ms < 0) {
            pr->connect_timeout_ms = cfg->upstream_connect_timeout_ms;
        }
        if (pr->first_byte_timeout_ms < 0) {
            pr->first_byte_timeout_ms = cfg->upstream_first_byte_timeout_ms;
        }
        if (pr->idle_timeout_ms < 0) {
            pr->idle_timeout_ms = cfg->upstream_idle_timeout_ms;
        }
    }
    for (size_t i = 0; i < cfg->nmodels && !p->failed; i++) {
        kg_model_t *m = &cfg->models[i];
        const kg_provider_t *pr;

        config_check_required(p, "model", m->name, model_settings,
                              MODEL_NSETTINGS, &p->mmeta[i]);
        if (p->failed) {
            break;
        }
        pr = kg_providers_find(cfg, m->provider_name);
        if (pr == NULL) {
            config_fail_at(p, p->mmeta[i].provider_line, KG_ERR_CONFIG,
                           "[model %.100s] provider: no [provider %.64s] "
                           "section is defined",
                           m->name, m->provider_name);
            break;
        }
        m->provider = pr;
        m->provider_index = (size_t)(pr - cfg->providers);
        if (m->upstream == NULL) {
            m->upstream = strdup(m->name);
            if (m->upstream == NULL) {
                config_fail_at(p, p->mmeta[i].line, KG_ERR_NOMEM,
                               "out of memory");
            }
        }
    }
}

/*
 * [security] secret_key_file, when the file does not set it, is
 * "secret.key" in the directory of hash_key_file: a file that moves the
 * hash key moves both server keys (with the defaults, both are in
 * /var/lib/keygate).
 */
static void config_derive_secret_key(config_parse_t *p)
{
    int hash = config_find("security", "hash_key_file");
    int secret = config_find("security", "secret_key_file");
    kg_diag_t d = {{0}};
    const char *dir;
    char *copy;
    kg_err_t rc;

    if (p->failed || hash < 0 || secret < 0 || p->seen[secret] ||
        !p->seen[hash]) {
        return;
    }
    copy = strdup(p->cfg->hash_key_file);
    if (copy == NULL) {
        config_fail_at(p, p->line, KG_ERR_NOMEM, "out of memory");
        return;
    }
    dir = dirname(copy);
    if (strcmp(dir, "/") == 0) {
        rc = config_set_string(p->cfg, &config_settings[secret], "/secret.key",
                               NULL, &d);
    } else {
        rc = config_set_string(p->cfg, &config_settings[secret], "secret.key",
                               dir, &d);
    }
    free(copy);
    if (rc != KG_OK) {
        config_fail_at(p, p->line, rc, "[security] secret_key_file: %s", d.msg);
    }
}

/* Rules that tie settings together, checked after the whole file is read. */
static kg_err_t config_check_consistency(const kg_config_t *cfg,
                                         kg_diag_t *diag)
{
    char max[KG_DURATION_STRLEN];

    if (strcmp(cfg->hash_key_file, cfg->secret_key_file) == 0) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "%s: [security] secret_key_file must be another "
                            "file than hash_key_file",
                            cfg->path ? cfg->path : "defaults");
    }
    if (cfg->keys_max_ttl > 0 && (cfg->keys_default_ttl == 0 ||
                                  cfg->keys_default_ttl > cfg->keys_max_ttl)) {
        return kg_diag_fail(
            diag, KG_ERR_CONFIG,
            "%s: [keys] default_ttl must be from 1s to max_ttl (%s) while "
            "max_ttl is set",
            cfg->path ? cfg->path : "defaults",
            kg_duration_format(cfg->keys_max_ttl, max, sizeof(max)));
    }
    if ((cfg->server_tls_cert_file[0] == '\0') !=
        (cfg->server_tls_key_file[0] == '\0')) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "%s: [server] tls_cert_file and tls_key_file are "
                            "set together or not at all",
                            cfg->path ? cfg->path : "defaults");
    }
    if ((cfg->admin_tls_cert_file[0] == '\0') !=
        (cfg->admin_tls_key_file[0] == '\0')) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "%s: [admin] tls_cert_file and tls_key_file are "
                            "set together or not at all",
                            cfg->path ? cfg->path : "defaults");
    }
    return KG_OK;
}

/* Read path into cfg (defaults already applied). */
static kg_err_t config_read_file(kg_config_t *cfg, const char *path,
                                 unsigned flags, kg_diag_t *diag)
{
    config_parse_t p;
    char *dircopy = NULL;
    kg_err_t rc = KG_OK;
    int line;

    memset(&p, 0, sizeof(p));
    p.skip_credentials = (flags & KG_CONFIG_NO_CREDENTIALS) != 0;
    cfg->path = strdup(path);
    dircopy = strdup(path);
    if (cfg->path == NULL || dircopy == NULL) {
        rc = kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
        goto out;
    }
    p.f = fopen(path, "r");
    if (p.f == NULL) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG, "%s: cannot read: %s", path,
                          strerror(errno));
        goto out;
    }
    p.cfg = cfg;
    p.dir = dirname(dircopy);
    line = ini_parse_stream(config_reader, &p, config_ini_handler, &p);
    if (line == 0 && !p.failed && ferror(p.f)) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG, "%s: cannot read", path);
        goto out;
    }
    if (line > 0 && (!p.failed || line < p.fail_line)) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                          "%s:%d: syntax error (expected [section] or name "
                          "= value)",
                          path, line);
        goto out;
    }
    if (line < 0) {
        rc = kg_diag_fail(diag, KG_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    if (!p.failed) {
        config_check_entries(&p);
    }
    config_derive_secret_key(&p);
    if (p.failed) {
        rc = kg_diag_fail(diag, p.fail_rc, "%s:%d: %s", path, p.fail_line,
                          p.first.msg);
    }
out:
    if (p.f != NULL) {
        fclose(p.f);
    }
    free(p.pmeta);
    free(p.mmeta);
    free(dircopy);
    return rc;
}

kg_err_t kg_config_load(const char *path, kg_config_t **out, kg_diag_t *diag)
{
    return kg_config_load_ex(path, 0, out, diag);
}

kg_err_t kg_config_load_ex(const char *path, unsigned flags, kg_config_t **out,
                           kg_diag_t *diag)
{
    kg_config_t *cfg = NULL;
    kg_err_t rc = KG_OK;

    *out = NULL;
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    rc = config_defaults(cfg, diag);
    if (rc != KG_OK) {
        goto out;
    }
    if (path != NULL) {
        rc = config_check_lines(path, diag);
        if (rc == KG_OK) {
            rc = config_read_file(cfg, path, flags, diag);
        }
        if (rc == KG_OK) {
            rc = config_check_consistency(cfg, diag);
        }
        if (rc != KG_OK) {
            goto out;
        }
    }
    rc = kg_providers_index_build(cfg);
    if (rc != KG_OK) {
        kg_diag_set(diag, "out of memory");
    }
out:
    if (rc != KG_OK) {
        kg_config_free(&cfg);
    }
    *out = cfg;
    return rc;
}

/* Free the string settings of table found in base. */
static void config_free_strings(void *base, const kg_setting_t *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (config_type_is_string(table[i].type)) {
            free(*config_str_slot(base, &table[i]));
            *config_str_slot(base, &table[i]) = NULL;
        }
    }
}

void kg_config_free(kg_config_t **cfg)
{
    kg_config_t *c;

    if (cfg == NULL || *cfg == NULL) {
        return;
    }
    c = *cfg;
    config_free_strings(c, config_settings, CONFIG_NSETTINGS);
    for (size_t i = 0; i < c->nproviders; i++) {
        kg_provider_t *pr = &c->providers[i];

        config_free_strings(pr, provider_settings, PROVIDER_NSETTINGS);
        kg_providers_credential_free(&pr->credential);
        free(pr->name);
    }
    for (size_t i = 0; i < c->nmodels; i++) {
        config_free_strings(&c->models[i], model_settings, MODEL_NSETTINGS);
        free(c->models[i].name);
    }
    kg_providers_index_free(&c->index);
    free(c->providers);
    free(c->models);
    free(c->path);
    free(c);
    *cfg = NULL;
}

/* A setting's value as a new JSON value (null when unset). */
static json_t *config_value_json(const void *cbase, const kg_setting_t *s)
{
    void *base = (void *)(uintptr_t)cbase;
    char buf[KG_MONEY_STRLEN + KG_DURATION_STRLEN];
    const char *str;
    int64_t v;

    if (s->flags & KG_SETTING_SENSITIVE) {
        return json_string("(redacted)");
    }
    if (config_type_is_string(s->type)) {
        str = *config_str_slot(base, s);
        return str == NULL ? json_null() : json_string(str);
    }
    switch (s->type) {
    case KG_SETTING_INT:
        return json_integer(*config_int_slot(base, s));
    case KG_SETTING_DURATION:
    case KG_SETTING_DURATION_MS:
        v = *config_int_slot(base, s);
        if (v < 0) {
            return json_null();
        }
        if (s->type == KG_SETTING_DURATION_MS) {
            v /= 1000;
        }
        return json_string(kg_duration_format(v, buf, sizeof(buf)));
    case KG_SETTING_LOGLEVEL:
        return json_string(kg_log_level_name(
            *(kg_log_level_t *)(void *)((char *)base + s->offset)));
    case KG_SETTING_LOG_FORMAT:
        return json_string(kg_log_format_name(
            *(kg_log_format_t *)(void *)((char *)base + s->offset)));
    case KG_SETTING_SIZE:
        return json_string(
            config_format_size(*config_int_slot(base, s), buf, sizeof(buf)));
    case KG_SETTING_BOOL:
        return json_boolean(*(bool *)(void *)((char *)base + s->offset));
    case KG_SETTING_PROVIDER_TYPE:
        return json_string(kg_provider_type_name(
            *(kg_provider_type_t *)(void *)((char *)base + s->offset)));
    case KG_SETTING_HTTP_VERSION:
        return json_string(kg_http_version_name(
            *(kg_http_version_t *)(void *)((char *)base + s->offset)));
    case KG_SETTING_PRICE:
        v = *config_int_slot(base, s);
        return v < 0 ? json_null()
                     : json_string(kg_money_format(v, buf, sizeof(buf)));
    default:
        return json_null();
    }
}

/* Add base's rows of table to the object obj; -1 on no memory. */
static int config_rows_json(json_t *obj, const void *base,
                            const kg_setting_t *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (json_object_set_new(obj, table[i].name,
                                config_value_json(base, &table[i]))) {
            return -1;
        }
    }
    return 0;
}

/* Add {"<kind> <name>": {rows}} to root; -1 on no memory. */
static int config_entry_json(json_t *root, const char *kind, const char *name,
                             const void *base, const kg_setting_t *table,
                             size_t n, const kg_provider_t *pr)
{
    char key[CONFIG_LINE_BUF + 16];
    json_t *obj = json_object(); /* new */

    snprintf(key, sizeof(key), "%s %s", kind, name);
    if (obj == NULL || json_object_set_new(root, key, obj)) {
        return -1;
    }
    if (config_rows_json(obj, base, table, n)) {
        return -1;
    }
    if (pr != NULL &&
        json_object_set_new(
            obj, "credential",
            json_string(pr->credential != NULL ? "(redacted)" : "(none)"))) {
        return -1;
    }
    return 0;
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
                goto fail;
            }
        }
        if (json_object_set_new(sec, s->name, config_value_json(cfg, s))) {
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg->nproviders; i++) {
        const kg_provider_t *pr = &cfg->providers[i];

        if (config_entry_json(root, "provider", pr->name, pr, provider_settings,
                              PROVIDER_NSETTINGS, pr)) {
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const kg_model_t *m = &cfg->models[i];

        if (config_entry_json(root, "model", m->name, m, model_settings,
                              MODEL_NSETTINGS, NULL)) {
            goto fail;
        }
    }
    return root;
fail:
    json_decref(root);
    return NULL;
}

/* Whether the values of s in a and b are the same. */
static bool config_value_equal(const void *a, const void *b,
                               const kg_setting_t *s)
{
    const char *pa = (const char *)a + s->offset;
    const char *pb = (const char *)b + s->offset;

    if (config_type_is_string(s->type)) {
        const char *sa = *(char *const *)(const void *)pa;
        const char *sb = *(char *const *)(const void *)pb;

        return (sa == NULL && sb == NULL) ||
               (sa != NULL && sb != NULL && strcmp(sa, sb) == 0);
    }
    switch (s->type) {
    case KG_SETTING_BOOL:
        return *(const bool *)(const void *)pa ==
               *(const bool *)(const void *)pb;
    case KG_SETTING_LOGLEVEL:
    case KG_SETTING_LOG_FORMAT:
    case KG_SETTING_PROVIDER_TYPE:
    case KG_SETTING_HTTP_VERSION:
        /* Enums: int-sized in keygate's structs. */
        return *(const int *)(const void *)pa == *(const int *)(const void *)pb;
    default:
        return *(const int64_t *)(const void *)pa ==
               *(const int64_t *)(const void *)pb;
    }
}

/* Copy the value of s from src into dst (a string is duplicated). */
static kg_err_t config_value_copy(void *dst, const void *src,
                                  const kg_setting_t *s)
{
    char *pd = (char *)dst + s->offset;
    const char *ps = (const char *)src + s->offset;

    if (config_type_is_string(s->type)) {
        const char *from = *(char *const *)(const void *)ps;
        char *copy = from != NULL ? strdup(from) : NULL;

        if (from != NULL && copy == NULL) {
            return KG_ERR_NOMEM;
        }
        free(*(char **)(void *)pd);
        *(char **)(void *)pd = copy;
        return KG_OK;
    }
    switch (s->type) {
    case KG_SETTING_BOOL:
        *(bool *)(void *)pd = *(const bool *)(const void *)ps;
        break;
    case KG_SETTING_LOGLEVEL:
    case KG_SETTING_LOG_FORMAT:
    case KG_SETTING_PROVIDER_TYPE:
    case KG_SETTING_HTTP_VERSION:
        *(int *)(void *)pd = *(const int *)(const void *)ps;
        break;
    default:
        *(int64_t *)(void *)pd = *(const int64_t *)(const void *)ps;
        break;
    }
    return KG_OK;
}

/* Whether a setting's value is empty ("" or unset). */
static bool config_value_empty(const void *base, const kg_setting_t *s)
{
    const char *v =
        *(char *const *)(const void *)((const char *)base + s->offset);

    return v == NULL || v[0] == '\0';
}

/* The value of s in base as text for a message (new string, or NULL). */
static char *config_value_text(const void *base, const kg_setting_t *s)
{
    json_t *j = config_value_json(base, s); /* new */
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;

    json_decref(j);
    return text;
}

kg_err_t kg_config_keep_restart(kg_config_t *next, const kg_config_t *running,
                                kg_config_changed_fn changed, void *ud)
{
    _Static_assert(sizeof(kg_log_level_t) == sizeof(int) &&
                       sizeof(kg_log_format_t) == sizeof(int) &&
                       sizeof(kg_provider_type_t) == sizeof(int) &&
                       sizeof(kg_http_version_t) == sizeof(int),
                   "enum settings are int-sized");

    for (size_t i = 0; i < CONFIG_NSETTINGS; i++) {
        const kg_setting_t *s = &config_settings[i];
        bool restart = (s->flags & KG_SETTING_RESTART) != 0 &&
                       !config_value_equal(next, running, s);
        bool onoff =
            (s->flags & KG_SETTING_ONOFF_RESTART) != 0 &&
            config_value_empty(next, s) != config_value_empty(running, s);
        char *was;
        char *now;

        if (!restart && !onoff) {
            continue;
        }
        was = config_value_text(running, s);
        now = config_value_text(next, s);
        if (changed != NULL) {
            changed(ud, s, was ? was : "?", now ? now : "?");
        }
        free(was);
        free(now);
        if (config_value_copy(next, running, s) != KG_OK) {
            return KG_ERR_NOMEM;
        }
    }
    return KG_OK;
}

/* Whether host (an IP literal) is a loopback address. */
static bool config_is_loopback(const char *host)
{
    unsigned char a[16];

    if (inet_pton(AF_INET, host, a) == 1) {
        return a[0] == 127;
    }
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = {[15] = 1};
        static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};

        return memcmp(a, one, 16) == 0 ||
               (memcmp(a, mapped, 12) == 0 && a[12] == 127);
    }
    return false;
}

kg_err_t kg_config_check_admin_exposure(const kg_config_t *cfg, kg_diag_t *diag)
{
    char host[KG_LISTEN_HOST_MAX];
    int port = 0;

    if (cfg->admin_listen == NULL || cfg->admin_listen[0] == '\0' ||
        cfg->admin_tls_cert_file[0] != '\0' || cfg->admin_allow_insecure) {
        return KG_OK;
    }
    if (kg_config_listen_parse(cfg->admin_listen, host, sizeof(host), &port,
                               diag) != KG_OK) {
        return KG_ERR_CONFIG;
    }
    if (config_is_loopback(host)) {
        return KG_OK;
    }
    return kg_diag_fail(diag, KG_ERR_CONFIG,
                        "[admin] listen = %s is not a loopback address and the "
                        "admin listener has no TLS: admin tokens and session "
                        "cookies would cross the network in clear text. Set "
                        "[admin] tls_cert_file and tls_key_file, or "
                        "allow_insecure = on (behind a TLS proxy on the same "
                        "host, or a private network you trust)",
                        cfg->admin_listen);
}
