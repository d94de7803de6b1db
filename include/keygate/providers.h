/* Providers and models of the configuration, and routing model names. */
#ifndef KEYGATE_PROVIDERS_H
#define KEYGATE_PROVIDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/money.h"

/* A provider name: 1..64 of [a-z0-9_-]. */
#define KG_PROVIDER_NAME_MAX 64
/* A model name (public or upstream): 1..256 printable ASCII, no spaces. */
#define KG_MODEL_NAME_MAX 256
/* The longest name a request may ask for: "provider/model". */
#define KG_ROUTE_NAME_MAX (KG_PROVIDER_NAME_MAX + 1 + KG_MODEL_NAME_MAX)
/* A provider credential read from an env var or a file, in bytes. */
#define KG_CREDENTIAL_MAX 4096
/* An environment variable name: [A-Za-z_][A-Za-z0-9_]*, at most this. */
#define KG_ENV_NAME_MAX 128
/* A provider's base_url, in bytes. */
#define KG_BASE_URL_MAX 512
/* How many [provider] and [model] sections one file may define. */
#define KG_PROVIDERS_MAX 256
#define KG_MODELS_MAX    4096
/* The highest price accepted: 10,000 USD per 1M tokens, in micro-USD. */
#define KG_PRICE_MAX (INT64_C(10000) * KG_MICRO_PER_USD)

typedef enum kg_provider_type {
    KG_PROVIDER_OPENAI,
    KG_PROVIDER_ANTHROPIC,
} kg_provider_type_t;

/*
 * The HTTP version keygate asks for on a provider's connections
 * ([provider NAME] http_version). With HTTP/2 one connection carries many
 * requests at once, so open streams cost no provider descriptor each.
 */
typedef enum kg_http_version {
    KG_HTTP_VERSION_AUTO, /* libcurl's choice: HTTP/2 if TLS ALPN offers it */
    KG_HTTP_VERSION_1_1,  /* HTTP/1.1 only */
    KG_HTTP_VERSION_2,    /* HTTP/2 over TLS, HTTP/1.1 over plain TCP */
    KG_HTTP_VERSION_2_PRIOR_KNOWLEDGE, /* HTTP/2 also over plain TCP (h2c,
                                          no Upgrade) */
} kg_http_version_t;

/*
 * A [provider NAME] section. Owned by the kg_config_t that holds it; every
 * pointer lives as long as that config.
 */
typedef struct kg_provider {
    char *name; /* [a-z0-9_-]{1,64} */
    kg_provider_type_t type;
    /*
     * "http(s)://host[:port]/path" without a trailing slash. It includes the
     * API version segment (https://api.openai.com/v1,
     * https://api.anthropic.com/v1): a client path "/v1/<rest>" goes to
     * base_url + "/<rest>" (kg_providers_upstream_url).
     */
    char *base_url;
    char *api_key_env;  /* the variable the credential came from, or NULL */
    char *api_key_file; /* the file the credential came from, or NULL */
    /*
     * The pool credential: NUL-terminated, credential_len bytes, in
     * sodium_malloc'd read-only memory, wiped when the config is freed.
     * NULL when neither api_key_env nor api_key_file is set (e.g. a local
     * mock). Never log, print or compare it with anything but
     * sodium_memcmp.
     */
    const char *credential;
    size_t credential_len;
    /* Effective timeouts in ms: the section's own, else [upstream]'s. */
    int64_t connect_timeout_ms;
    int64_t first_byte_timeout_ms;
    int64_t idle_timeout_ms;
    kg_http_version_t http_version;
} kg_provider_t;

/* A [model NAME] section. Owned by its kg_config_t, like kg_provider_t. */
typedef struct kg_model {
    char *name;          /* the public name clients ask for */
    char *provider_name; /* as written in the file */
    /* The provider, resolved after parsing: cfg->providers[provider_index]. */
    const kg_provider_t *provider;
    size_t provider_index;
    char *upstream; /* the name sent to the provider (default: name) */
    /* Prices in micro-USD per 1M tokens. */
    int64_t input_price;
    int64_t output_price;
    int64_t cached_input_price; /* -1 when unset */
    int64_t max_output_tokens;  /* output cap for budget reservations */
} kg_model_t;

struct kg_config;
struct kg_providers_index;

/* "openai" or "anthropic"; "unknown" for an out-of-range value. */
const char *kg_provider_type_name(kg_provider_type_t type);

/* Parse "openai" or "anthropic" (exact, lower case); false when unknown. */
bool kg_provider_type_parse(const char *s, kg_provider_type_t *type);

/*
 * "auto", "1.1", "2" or "2-prior-knowledge"; "unknown" for an out-of-range
 * value.
 */
const char *kg_http_version_name(kg_http_version_t v);

/* Parse one of the names of kg_http_version_name (exact); false if not. */
bool kg_http_version_parse(const char *s, kg_http_version_t *v);

/* Whether s is a valid provider name (1..64 of [a-z0-9_-]). */
bool kg_providers_name_valid(const char *s);

/* Whether s is a valid model name (1..256 printable ASCII, no spaces). */
bool kg_providers_model_name_valid(const char *s);

/*
 * Check a base URL: http:// or https://, a host (name, IPv4 or [IPv6]) and
 * optional port, no userinfo (no '@' anywhere), a non-empty path (the version
 * segment, e.g. /v1), no query or fragment, at most KG_BASE_URL_MAX bytes. On
 * KG_OK *out is a new string (free) with the scheme in lower case and trailing
 * slashes trimmed; on KG_ERR_INVAL or KG_ERR_NOMEM *out is NULL and diag
 * says why (quoting s, except when it holds '@': never a password).
 */
kg_err_t kg_providers_base_url_parse(const char *s, char **out,
                                     kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Read a credential from the environment variable var (which must be set
 * and, once leading and trailing white space is trimmed, non-empty, at
 * most KG_CREDENTIAL_MAX bytes, without control characters). On KG_OK
 * *cred is new read-only sodium memory (kg_providers_credential_free) of
 * *len bytes plus a NUL. On error (KG_ERR_CONFIG, KG_ERR_NOMEM) *cred is
 * NULL and diag names the variable, never its value.
 */
kg_err_t kg_providers_credential_from_env(const char *var, const char **cred,
                                          size_t *len,
                                          kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Read a credential from path: a regular file (symbolic links are
 * followed) with no permission for others (mode & 007 == 0), holding one
 * line, trimmed of surrounding white space, non-empty, at most
 * KG_CREDENTIAL_MAX bytes, without control characters. Same results as
 * kg_providers_credential_from_env; diag names the file, never its content.
 */
kg_err_t kg_providers_credential_from_file(const char *path, const char **cred,
                                           size_t *len,
                                           kg_diag_t *diag) KG_MUST_CHECK;

/* Wipe and free a credential and set *cred to NULL (no-op on NULL). */
void kg_providers_credential_free(const char **cred);

/*
 * Build the routing index of cfg's providers and models (called by
 * kg_config_load once every model's provider is resolved) and store it in
 * cfg->index, replacing none: cfg->index must be NULL. KG_ERR_NOMEM on no
 * memory (cfg->index stays NULL).
 */
kg_err_t kg_providers_index_build(struct kg_config *cfg) KG_MUST_CHECK;

/* Free an index and set *ix to NULL (no-op on NULL). */
void kg_providers_index_free(struct kg_providers_index **ix);

/* The provider called name, or NULL. Borrowed from cfg. */
const kg_provider_t *kg_providers_find(const struct kg_config *cfg,
                                       const char *name);

/*
 * The model a request names (called per request; O(log n)): first the
 * exact public model name; else "provider/model" where provider is a
 * configured provider and model the public or upstream name of one of its
 * models (a public name wins; among upstream names the first in file
 * order). Returns a model borrowed from cfg, or NULL with diag saying why
 * — the caller answers 404 "The model '<name>' does not exist or you do
 * not have access to it." (KG_ERR_UNKNOWN_MODEL).
 */
const kg_model_t *kg_providers_route(const struct kg_config *cfg,
                                     const char *requested, kg_diag_t *diag);

/*
 * The upstream URL of a client request path: path must be "/v1" or start
 * with "/v1/"; the result is the provider's base_url followed by
 * path without its leading "/v1" ("/v1/chat/completions" on
 * https://api.openai.com/v1 → https://api.openai.com/v1/chat/completions).
 * Returns KG_OK, or KG_ERR_INVAL (other path; buf too small) with buf
 * holding "".
 */
kg_err_t kg_providers_upstream_url(const kg_provider_t *provider,
                                   const char *path, char *buf,
                                   size_t len) KG_MUST_CHECK;

#endif /* KEYGATE_PROVIDERS_H */
