/* Provider credentials, base URLs and the routing of model names. */
#include "keygate/providers.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "keygate/config.h"

/* A credential file may carry this much white space around the value. */
#define PROVIDERS_FILE_SLACK 64

struct kg_providers_index {
    const kg_provider_t **providers; /* by name */
    const kg_model_t **by_name;      /* by public name */
    const kg_model_t **by_upstream;  /* by provider, upstream, file order */
    size_t nproviders;
    size_t nmodels;
};

static const char *const provider_type_names[] = {
    [KG_PROVIDER_OPENAI] = "openai",
    [KG_PROVIDER_ANTHROPIC] = "anthropic",
};

#define PROVIDER_NTYPES \
    (sizeof(provider_type_names) / sizeof(*provider_type_names))

const char *kg_provider_type_name(kg_provider_type_t type)
{
    if ((size_t)type >= PROVIDER_NTYPES) {
        return "unknown";
    }
    return provider_type_names[type];
}

bool kg_provider_type_parse(const char *s, kg_provider_type_t *type)
{
    for (size_t i = 0; i < PROVIDER_NTYPES; i++) {
        if (strcmp(s, provider_type_names[i]) == 0) {
            *type = (kg_provider_type_t)i;
            return true;
        }
    }
    return false;
}

static const char *const http_version_names[] = {
    [KG_HTTP_VERSION_AUTO] = "auto",
    [KG_HTTP_VERSION_1_1] = "1.1",
    [KG_HTTP_VERSION_2] = "2",
    [KG_HTTP_VERSION_2_PRIOR_KNOWLEDGE] = "2-prior-knowledge",
};

#define PROVIDER_NHTTP_VERSIONS \
    (sizeof(http_version_names) / sizeof(*http_version_names))

const char *kg_http_version_name(kg_http_version_t v)
{
    if ((size_t)v >= PROVIDER_NHTTP_VERSIONS) {
        return "unknown";
    }
    return http_version_names[v];
}

bool kg_http_version_parse(const char *s, kg_http_version_t *v)
{
    for (size_t i = 0; i < PROVIDER_NHTTP_VERSIONS; i++) {
        if (strcmp(s, http_version_names[i]) == 0) {
            *v = (kg_http_version_t)i;
            return true;
        }
    }
    return false;
}

bool kg_providers_name_valid(const char *s)
{
    size_t n = strnlen(s, KG_PROVIDER_NAME_MAX + 1);

    if (n == 0 || n > KG_PROVIDER_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

bool kg_providers_model_name_valid(const char *s)
{
    size_t n = strnlen(s, KG_MODEL_NAME_MAX + 1);

    if (n == 0 || n > KG_MODEL_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c <= 0x20 || c >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* Whether c may appear in a URL path (RFC 3986 pchar but '@', '/', '%'). */
static bool providers_path_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~!$&'()*+,;=:/%", c) != NULL);
}

/* Check "host[:port]" (n bytes at a). KG_OK or KG_ERR_INVAL with diag. */
static kg_err_t providers_check_authority(const char *a, size_t n,
                                          const char *url, kg_diag_t *diag)
{
    char host[KG_BASE_URL_MAX];
    const char *port = NULL;
    unsigned char addr[16];
    size_t hlen = n;

    if (n > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', n);

        hlen = close == NULL ? 0 : (size_t)(close - a) - 1;
        if (close == NULL || hlen == 0 || hlen >= sizeof(host)) {
            goto bad_host;
        }
        memcpy(host, a + 1, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1) {
            goto bad_host;
        }
        if ((size_t)(close + 1 - a) < n) {
            if (close[1] != ':') {
                goto bad_host;
            }
            port = close + 2;
        }
    } else {
        const char *colon = memchr(a, ':', n);

        hlen = colon == NULL ? n : (size_t)(colon - a);
        if (hlen == 0) {
            goto bad_host;
        }
        for (size_t i = 0; i < hlen; i++) {
            char c = a[i];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '-')) {
                goto bad_host;
            }
        }
        port = colon == NULL ? NULL : colon + 1;
    }
    if (port != NULL) {
        size_t plen = n - (size_t)(port - a);
        long v = 0;

        if (plen == 0 || plen > 5) {
            goto bad_port;
        }
        for (size_t i = 0; i < plen; i++) {
            if (port[i] < '0' || port[i] > '9') {
                goto bad_port;
            }
            v = v * 10 + (port[i] - '0');
        }
        if (v < 1 || v > 65535) {
            goto bad_port;
        }
    }
    return KG_OK;
bad_host:
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "'%.80s' has no valid host (a name, an IPv4 address "
                        "or an [IPv6] address)",
                        url);
bad_port:
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "'%.80s' has a bad port (1 to 65535)", url);
}

kg_err_t kg_providers_base_url_parse(const char *s, char **out, kg_diag_t *diag)
{
    size_t n = strnlen(s, KG_BASE_URL_MAX + 1);
    size_t skip;
    const char *auth;
    const char *path;
    char *copy = NULL;

    *out = NULL;
    if (n > KG_BASE_URL_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "is longer than %d bytes",
                            KG_BASE_URL_MAX);
    }
    if (strchr(s, '@') != NULL) {
        /* Not echoed: what precedes '@' may be a password. */
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "must not hold a user name or password "
                            "(user:password@host) nor any '@'; use "
                            "api_key_env or api_key_file");
    }
    if (strncasecmp(s, "https://", 8) == 0) {
        skip = 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        skip = 7;
    } else {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "'%.80s' must start with http:// or https://", s);
    }
    if (strpbrk(s, "?#") != NULL) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "'%.80s' must not have a query (?) or a fragment "
                            "(#)",
                            s);
    }
    auth = s + skip;
    path = strchr(auth, '/');
    if (path == NULL) {
        path = s + n;
    }
    if (providers_check_authority(auth, (size_t)(path - auth), s, diag) !=
        KG_OK) {
        return KG_ERR_INVAL;
    }
    for (const char *c = path; *c != '\0'; c++) {
        if (!providers_path_char(*c)) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "'%.80s' has a character not allowed in a URL "
                                "path (0x%02x)",
                                s, (unsigned)(unsigned char)*c);
        }
    }
    while (n > (size_t)(path - s) && s[n - 1] == '/') {
        n--;
    }
    if (n == (size_t)(path - s)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "'%.80s' has no path: base_url includes the API "
                            "version (e.g. https://api.openai.com/v1) and "
                            "the request path after /v1 is appended to it",
                            s);
    }
    copy = malloc(n + 1);
    if (copy == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    for (size_t i = 0; i < skip; i++) {
        if (copy[i] >= 'A' && copy[i] <= 'Z') {
            copy[i] = (char)(copy[i] - 'A' + 'a');
        }
    }
    *out = copy;
    return KG_OK;
}

static bool providers_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Trim raw (n bytes), check it and copy it into new read-only sodium memory.
 * what names the source in messages ("environment variable X").
 */
static kg_err_t providers_credential_make(const char *raw, size_t n,
                                          const char *what, const char **cred,
                                          size_t *len, kg_diag_t *diag)
{
    char *mem = NULL;

    while (n > 0 && providers_space(raw[0])) {
        raw++;
        n--;
    }
    while (n > 0 && providers_space(raw[n - 1])) {
        n--;
    }
    if (n == 0) {
        return kg_diag_fail(diag, KG_ERR_CONFIG, "%s is empty", what);
    }
    if (n > KG_CREDENTIAL_MAX) {
        return kg_diag_fail(diag, KG_ERR_CONFIG, "%s is longer than %d bytes",
                            what, KG_CREDENTIAL_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];

        if (c == '\n' || c == '\r') {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "%s must hold the credential on one line",
                                what);
        }
        if (c <= 0x20 || c >= 0x7f) {
            return kg_diag_fail(diag, KG_ERR_CONFIG,
                                "%s must hold printable ASCII without spaces",
                                what);
        }
    }
    if (sodium_init() < 0) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "libsodium did not start");
    }
    mem = sodium_malloc(n + 1);
    if (mem == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    memcpy(mem, raw, n);
    mem[n] = '\0';
    (void)sodium_mprotect_readonly(mem);
    *cred = mem;
    *len = n;
    return KG_OK;
}

kg_err_t kg_providers_credential_from_env(const char *var, const char **cred,
                                          size_t *len, kg_diag_t *diag)
{
    char what[KG_ENV_NAME_MAX + 32];
    const char *value = getenv(var);

    *cred = NULL;
    *len = 0;
    snprintf(what, sizeof(what), "environment variable %.*s", KG_ENV_NAME_MAX,
             var);
    if (value == NULL) {
        return kg_diag_fail(diag, KG_ERR_CONFIG, "%s is not set", what);
    }
    return providers_credential_make(
        value, strnlen(value, KG_CREDENTIAL_MAX + PROVIDERS_FILE_SLACK + 1),
        what, cred, len, diag);
}

kg_err_t kg_providers_credential_from_file(const char *path, const char **cred,
                                           size_t *len, kg_diag_t *diag)
{
    const size_t cap = KG_CREDENTIAL_MAX + PROVIDERS_FILE_SLACK;
    char what[160];
    char *buf = NULL;
    struct stat st;
    kg_err_t rc = KG_OK;
    size_t n = 0;
    int fd;

    *cred = NULL;
    *len = 0;
    snprintf(what, sizeof(what), "credential file %.120s", path);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return kg_diag_fail(diag, KG_ERR_CONFIG, "cannot open %s: %s", what,
                            strerror(errno));
    }
    if (fstat(fd, &st) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG, "cannot stat %s: %s", what,
                          strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc =
            kg_diag_fail(diag, KG_ERR_CONFIG, "%s is not a regular file", what);
        goto out;
    }
    if ((st.st_mode & 007) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                          "%s is accessible by others (mode %03o); run chmod "
                          "600 (or 640) on it",
                          what, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if (sodium_init() < 0) {
        rc = kg_diag_fail(diag, KG_ERR_INTERNAL, "libsodium did not start");
        goto out;
    }
    buf = sodium_malloc(cap + 1);
    if (buf == NULL) {
        rc = kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
        goto out;
    }
    while (n <= cap) {
        ssize_t r = read(fd, buf + n, cap + 1 - n);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = kg_diag_fail(diag, KG_ERR_CONFIG, "cannot read %s: %s", what,
                              strerror(errno));
            goto out;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    if (n > cap) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG, "%s is longer than %d bytes",
                          what, KG_CREDENTIAL_MAX);
        goto out;
    }
    rc = providers_credential_make(buf, n, what, cred, len, diag);
out:
    if (buf != NULL) {
        sodium_free(buf); /* wipes */
    }
    close(fd);
    return rc;
}

void kg_providers_credential_free(const char **cred)
{
    if (cred == NULL || *cred == NULL) {
        return;
    }
    sodium_free((void *)(uintptr_t)*cred); /* wipes, read-only or not */
    *cred = NULL;
}

static int providers_cmp_provider(const void *a, const void *b)
{
    const kg_provider_t *const *pa = a;
    const kg_provider_t *const *pb = b;

    return strcmp((*pa)->name, (*pb)->name);
}

static int providers_cmp_model(const void *a, const void *b)
{
    const kg_model_t *const *ma = a;
    const kg_model_t *const *mb = b;

    return strcmp((*ma)->name, (*mb)->name);
}

/* Provider, then upstream name, then file order (the models array). */
static int providers_cmp_upstream(const void *a, const void *b)
{
    const kg_model_t *ma = *(const kg_model_t *const *)a;
    const kg_model_t *mb = *(const kg_model_t *const *)b;
    int c;

    if (ma->provider_index != mb->provider_index) {
        return ma->provider_index < mb->provider_index ? -1 : 1;
    }
    c = strcmp(ma->upstream, mb->upstream);
    if (c != 0) {
        return c;
    }
    return ma < mb ? -1 : (ma > mb ? 1 : 0);
}

kg_err_t kg_providers_index_build(kg_config_t *cfg)
{
    struct kg_providers_index *ix = NULL;
    kg_err_t rc = KG_OK;

    ix = calloc(1, sizeof(*ix));
    if (ix == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    ix->nproviders = cfg->nproviders;
    ix->nmodels = cfg->nmodels;
    ix->providers = calloc(cfg->nproviders + 1, sizeof(*ix->providers));
    ix->by_name = calloc(cfg->nmodels + 1, sizeof(*ix->by_name));
    ix->by_upstream = calloc(cfg->nmodels + 1, sizeof(*ix->by_upstream));
    if (ix->providers == NULL || ix->by_name == NULL ||
        ix->by_upstream == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < cfg->nproviders; i++) {
        ix->providers[i] = &cfg->providers[i];
    }
    for (size_t i = 0; i < cfg->nmodels; i++) {
        ix->by_name[i] = &cfg->models[i];
        ix->by_upstream[i] = &cfg->models[i];
    }
    qsort(ix->providers, ix->nproviders, sizeof(*ix->providers),
          providers_cmp_provider);
    qsort(ix->by_name, ix->nmodels, sizeof(*ix->by_name), providers_cmp_model);
    qsort(ix->by_upstream, ix->nmodels, sizeof(*ix->by_upstream),
          providers_cmp_upstream);
    cfg->index = ix;
    ix = NULL;
out:
    kg_providers_index_free(&ix);
    return rc;
}

void kg_providers_index_free(struct kg_providers_index **ix)
{
    if (ix == NULL || *ix == NULL) {
        return;
    }
    free((*ix)->providers);
    free((*ix)->by_name);
    free((*ix)->by_upstream);
    free(*ix);
    *ix = NULL;
}

const kg_provider_t *kg_providers_find(const kg_config_t *cfg, const char *name)
{
    const struct kg_providers_index *ix = cfg->index;
    size_t lo = 0;
    size_t hi;

    if (ix == NULL) { /* a config built by hand: scan */
        for (size_t i = 0; i < cfg->nproviders; i++) {
            if (strcmp(cfg->providers[i].name, name) == 0) {
                return &cfg->providers[i];
            }
        }
        return NULL;
    }
    hi = ix->nproviders;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ix->providers[mid]->name);

        if (c == 0) {
            return ix->providers[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

/* The model with this public name, or NULL. */
static const kg_model_t *providers_by_name(const kg_config_t *cfg,
                                           const char *name)
{
    const struct kg_providers_index *ix = cfg->index;
    size_t lo = 0;
    size_t hi;

    if (ix == NULL) {
        for (size_t i = 0; i < cfg->nmodels; i++) {
            if (strcmp(cfg->models[i].name, name) == 0) {
                return &cfg->models[i];
            }
        }
        return NULL;
    }
    hi = ix->nmodels;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ix->by_name[mid]->name);

        if (c == 0) {
            return ix->by_name[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

/* The first model (in file order) of provider pidx with this upstream. */
static const kg_model_t *providers_by_upstream(const kg_config_t *cfg,
                                               size_t pidx, const char *name)
{
    const struct kg_providers_index *ix = cfg->index;
    size_t lo = 0;
    size_t hi;

    if (ix == NULL) {
        for (size_t i = 0; i < cfg->nmodels; i++) {
            if (cfg->models[i].provider_index == pidx &&
                strcmp(cfg->models[i].upstream, name) == 0) {
                return &cfg->models[i];
            }
        }
        return NULL;
    }
    hi = ix->nmodels;
    while (lo < hi) { /* lower bound of (pidx, name) */
        size_t mid = lo + (hi - lo) / 2;
        const kg_model_t *m = ix->by_upstream[mid];

        if (m->provider_index < pidx ||
            (m->provider_index == pidx && strcmp(m->upstream, name) < 0)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < ix->nmodels && ix->by_upstream[lo]->provider_index == pidx &&
        strcmp(ix->by_upstream[lo]->upstream, name) == 0) {
        return ix->by_upstream[lo];
    }
    return NULL;
}

const kg_model_t *kg_providers_route(const kg_config_t *cfg,
                                     const char *requested, kg_diag_t *diag)
{
    char pname[KG_PROVIDER_NAME_MAX + 1];
    const kg_provider_t *p;
    const kg_model_t *m;
    const char *slash;
    size_t n = strnlen(requested, KG_ROUTE_NAME_MAX + 1);
    size_t plen;

    if (n == 0 || n > KG_ROUTE_NAME_MAX) {
        kg_diag_set(diag, "model name is empty or longer than %d bytes",
                    KG_ROUTE_NAME_MAX);
        return NULL;
    }
    m = providers_by_name(cfg, requested);
    if (m != NULL) {
        return m;
    }
    slash = strchr(requested, '/');
    plen = slash == NULL ? 0 : (size_t)(slash - requested);
    if (slash == NULL || plen == 0 || plen > KG_PROVIDER_NAME_MAX ||
        slash[1] == '\0') {
        kg_diag_set(diag, "no model '%.100s' is configured", requested);
        return NULL;
    }
    memcpy(pname, requested, plen);
    pname[plen] = '\0';
    p = kg_providers_find(cfg, pname);
    if (p == NULL) {
        kg_diag_set(diag,
                    "no model '%.100s' is configured and no provider "
                    "'%.64s' either",
                    requested, pname);
        return NULL;
    }
    m = providers_by_name(cfg, slash + 1);
    if (m != NULL && m->provider == p) {
        return m;
    }
    m = providers_by_upstream(cfg, (size_t)(p - cfg->providers), slash + 1);
    if (m != NULL) {
        return m;
    }
    kg_diag_set(diag, "provider '%.64s' has no model '%.100s'", pname,
                slash + 1);
    return NULL;
}

kg_err_t kg_providers_upstream_url(const kg_provider_t *provider,
                                   const char *path, char *buf, size_t len)
{
    int n;

    if (len == 0) {
        return KG_ERR_INVAL;
    }
    buf[0] = '\0';
    if (strncmp(path, "/v1", 3) != 0 || (path[3] != '\0' && path[3] != '/')) {
        return KG_ERR_INVAL;
    }
    n = snprintf(buf, len, "%s%s", provider->base_url, path + 3);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return KG_ERR_INVAL;
    }
    return KG_OK;
}
