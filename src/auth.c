/* Client credential extraction: which key a request presents, if any. */
#include "keygate/auth.h"

#include <sodium.h>
#include <string.h>

/* Query parameter names that carry a key (compared case-insensitively). */
static const char *const auth_key_params[] = {
    "key", "api_key", "api-key", "apikey", "token", "access_token", "x-api-key",
};

static const char *const auth_form_names[] = {
    [KG_AUTH_FORM_NONE] = "none",
    [KG_AUTH_FORM_BEARER] = "bearer",
    [KG_AUTH_FORM_X_API_KEY] = "x-api-key",
    [KG_AUTH_FORM_BASIC] = "basic",
    [KG_AUTH_FORM_BEARER_PAIR] = "bearer-pair",
};

static char auth_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* a (len bytes) equals the lower-case NUL-terminated b, ignoring case. */
static bool auth_ieq(const char *a, size_t len, const char *b)
{
    if (strlen(b) != len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (auth_lower(a[i]) != b[i]) {
            return false;
        }
    }
    return true;
}

static bool auth_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int auth_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/*
 * Percent-decode src (len bytes, '+' is a space, a '%' not followed by two
 * hex digits stays literal) into dst of cap bytes. Returns false when the
 * result does not fit; *out_len is the decoded length otherwise.
 */
static bool auth_pct_decode(const char *src, size_t len, char *dst, size_t cap,
                            size_t *out_len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        if (o == cap) {
            return false;
        }
        if (c == '%' && i + 2 < len && auth_hex(src[i + 1]) >= 0 &&
            auth_hex(src[i + 2]) >= 0) {
            c = (char)(auth_hex(src[i + 1]) * 16 + auth_hex(src[i + 2]));
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        dst[o++] = c;
    }
    *out_len = o;
    return true;
}

/* True for a query parameter name that carries a key. */
static bool auth_is_key_param(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(auth_key_params) / sizeof(*auth_key_params);
         i++) {
        if (auth_ieq(name, len, auth_key_params[i])) {
            return true;
        }
    }
    return false;
}

/* True when s (len bytes) is a well-formed token of any prefix. */
static bool auth_is_token(const char *s, size_t len)
{
    kg_token_t t;
    bool found;

    if (s == NULL) {
        return false;
    }
    found = kg_token_parse(s, len, &t) == KG_OK;
    kg_token_wipe(&t);
    return found;
}

bool kg_auth_query_arg_has_key(const char *name, size_t name_len,
                               const char *value, size_t value_len)
{
    return (name != NULL && auth_is_key_param(name, name_len)) ||
           auth_is_token(name, name_len) || auth_is_token(value, value_len);
}

/*
 * True when one raw query parameter "name[=value]" (len bytes) carries a
 * key. Parts too long to be a key parameter or a token are not decoded.
 */
static bool auth_query_param_has_key(const char *p, size_t len)
{
    char name[KG_MAX_QUERY_PART_BYTES];
    char value[KG_MAX_QUERY_PART_BYTES];
    const char *eq = memchr(p, '=', len);
    size_t raw_name_len = eq != NULL ? (size_t)(eq - p) : len;
    size_t name_len = 0;
    size_t value_len = 0;
    bool name_ok;
    bool value_ok = false;
    bool found;

    name_ok = auth_pct_decode(p, raw_name_len, name, sizeof(name), &name_len);
    if (eq != NULL) {
        value_ok = auth_pct_decode(eq + 1, len - raw_name_len - 1, value,
                                   sizeof(value), &value_len);
    }
    found = kg_auth_query_arg_has_key(name_ok ? name : NULL, name_len,
                                      value_ok ? value : NULL, value_len);
    sodium_memzero(name, sizeof(name));
    sodium_memzero(value, sizeof(value));
    return found;
}

/* True when the raw query string (NULL allowed) carries a key anywhere. */
static bool auth_query_has_key(const char *query)
{
    const char *p = query;

    if (p == NULL) {
        return false;
    }
    if (*p == '?') {
        p++;
    }
    while (*p != '\0') {
        size_t len = strcspn(p, "&;");
        if (len > 0 && auth_query_param_has_key(p, len)) {
            return true;
        }
        p += len;
        if (*p != '\0') {
            p++;
        }
    }
    return false;
}

/* Bearer credentials: a token, or "<access key>:<secret key>". */
static kg_err_t auth_parse_bearer(const char *cred, size_t len, kg_token_t *tok,
                                  kg_auth_form_t *form, kg_diag_t *diag)
{
    const char *colon = memchr(cred, ':', len);
    size_t access_len;

    if (colon == NULL) {
        *form = KG_AUTH_FORM_BEARER;
        if (kg_token_parse(cred, len, tok) != KG_OK) {
            return kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                                "Bearer token has a bad shape or checksum");
        }
        return KG_OK;
    }
    *form = KG_AUTH_FORM_BEARER_PAIR;
    access_len = (size_t)(colon - cred);
    if (kg_token_parse_pair(cred, access_len, colon + 1, len - access_len - 1,
                            tok) != KG_OK) {
        return kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                            "Bearer key pair has a bad shape or checksum");
    }
    return KG_OK;
}

/* Basic credentials: base64("<access key>:<secret key>"), strict. */
static kg_err_t auth_parse_basic(const char *cred, size_t len, kg_token_t *tok,
                                 kg_auth_form_t *form, kg_diag_t *diag)
{
    unsigned char bin[KG_MAX_BASIC_DECODED_BYTES];
    const unsigned char *colon;
    size_t bin_len = 0;
    size_t access_len;
    kg_err_t rc = KG_ERR_INVALID_KEY;

    *form = KG_AUTH_FORM_BASIC;
    /* No ignore set and a NULL end pointer: every byte must be consumed. */
    if (sodium_base642bin(bin, sizeof(bin), cred, len, NULL, &bin_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0) {
        kg_diag_set(diag, "Basic credentials are not valid base64");
        goto out;
    }
    colon = memchr(bin, ':', bin_len);
    if (colon == NULL) {
        kg_diag_set(diag, "Basic credentials without ':'");
        goto out;
    }
    access_len = (size_t)(colon - bin);
    if (kg_token_parse_pair((const char *)bin, access_len,
                            (const char *)colon + 1, bin_len - access_len - 1,
                            tok) != KG_OK) {
        kg_diag_set(diag, "Basic key pair has a bad shape or checksum");
        goto out;
    }
    rc = KG_OK;
out:
    sodium_memzero(bin, sizeof(bin));
    return rc;
}

/* An Authorization value (trimmed, non-empty): "<scheme> 1*SP <creds>". */
static kg_err_t auth_parse_authorization(const char *v, size_t len,
                                         kg_token_t *tok, kg_auth_form_t *form,
                                         kg_diag_t *diag)
{
    size_t scheme_len = 0;
    size_t i;

    while (scheme_len < len && !auth_is_ows(v[scheme_len])) {
        scheme_len++;
    }
    if (scheme_len == len) {
        return kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                            "Authorization without a scheme or credentials");
    }
    if (v[scheme_len] != ' ') {
        return kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                            "Authorization scheme followed by a TAB");
    }
    i = scheme_len;
    while (i < len && v[i] == ' ') {
        i++;
    }
    /* The value is trimmed, so i < len here. */
    for (size_t j = i; j < len; j++) {
        if (auth_is_ows(v[j])) {
            return kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                                "whitespace inside Authorization credentials");
        }
    }
    if (auth_ieq(v, scheme_len, "bearer")) {
        return auth_parse_bearer(v + i, len - i, tok, form, diag);
    }
    if (auth_ieq(v, scheme_len, "basic")) {
        return auth_parse_basic(v + i, len - i, tok, form, diag);
    }
    return kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                        "unknown Authorization scheme");
}

/*
 * Parse one credential header (Authorization when authz, else x-api-key)
 * into tok. Returns KG_OK or KG_ERR_INVALID_KEY with diag.
 */
static kg_err_t auth_parse_header(const kg_header_t *h, bool authz,
                                  kg_token_t *tok, kg_auth_form_t *form,
                                  kg_diag_t *diag)
{
    const char *label = authz ? "Authorization" : "x-api-key";
    const char *v = h->value;
    size_t len = h->value_len;

    if (len > KG_MAX_CREDENTIAL_BYTES) {
        return kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                            "%s value longer than %d bytes", label,
                            KG_MAX_CREDENTIAL_BYTES);
    }
    while (len > 0 && auth_is_ows(v[0])) {
        v++;
        len--;
    }
    while (len > 0 && auth_is_ows(v[len - 1])) {
        len--;
    }
    if (len == 0) {
        return kg_diag_fail(diag, KG_ERR_INVALID_KEY, "empty %s value", label);
    }
    if (authz) {
        return auth_parse_authorization(v, len, tok, form, diag);
    }
    *form = KG_AUTH_FORM_X_API_KEY;
    if (kg_token_parse(v, len, tok) != KG_OK) {
        return kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                            "x-api-key has a bad shape or checksum");
    }
    return KG_OK;
}

kg_err_t kg_auth_extract(const kg_header_t *h, size_t n, const char *query,
                         kg_token_t *tok, kg_auth_form_t *form, kg_diag_t *diag)
{
    const kg_header_t *authz = NULL;
    const kg_header_t *xkey = NULL;
    size_t n_authz = 0;
    size_t n_xkey = 0;
    kg_auth_form_t f = KG_AUTH_FORM_NONE;
    kg_auth_form_t xkey_form = KG_AUTH_FORM_NONE;
    kg_token_t other;
    kg_err_t rc = KG_ERR_INVALID_KEY;

    memset(tok, 0, sizeof(*tok));
    memset(&other, 0, sizeof(other));
    if (auth_query_has_key(query)) {
        kg_diag_set(diag, "credential in the query string");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (kg_framing_name_is(&h[i], "authorization")) {
            authz = &h[i];
            n_authz++;
        } else if (kg_framing_name_is(&h[i], "x-api-key")) {
            xkey = &h[i];
            n_xkey++;
        }
    }
    if (n_authz > 1) {
        kg_diag_set(diag, "repeated Authorization header");
        goto out;
    }
    if (n_xkey > 1) {
        kg_diag_set(diag, "repeated x-api-key header");
        goto out;
    }
    if (authz == NULL && xkey == NULL) {
        rc = kg_diag_fail(diag, KG_ERR_NO_KEY, "no credential");
        goto out;
    }
    if (authz != NULL) {
        rc = auth_parse_header(authz, true, tok, &f, diag);
        if (rc != KG_OK) {
            goto out;
        }
    }
    if (xkey != NULL) {
        rc = auth_parse_header(xkey, false, authz != NULL ? &other : tok,
                               authz != NULL ? &xkey_form : &f, diag);
        if (rc != KG_OK) {
            goto out;
        }
        /* Both parsers zero the whole struct first, so padding is equal. */
        if (authz != NULL && sodium_memcmp(tok, &other, sizeof(other)) != 0) {
            rc = kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                              "Authorization and x-api-key carry different "
                              "keys");
            goto out;
        }
    }
    if (strcmp(tok->prefix, KG_TOKEN_ADMIN_PREFIX) == 0) {
        rc = kg_diag_fail(diag, KG_ERR_INVALID_KEY,
                          "admin token presented as a client key");
        goto out;
    }
    rc = KG_OK;
out:
    kg_token_wipe(&other);
    if (rc != KG_OK) {
        kg_token_wipe(tok);
        f = KG_AUTH_FORM_NONE;
    }
    if (form != NULL) {
        *form = f;
    }
    return rc;
}

const char *kg_auth_form_name(kg_auth_form_t form)
{
    if ((int)form < 0 ||
        (size_t)form >= sizeof(auth_form_names) / sizeof(*auth_form_names)) {
        return "unknown";
    }
    return auth_form_names[form];
}
