/* Unit tests of credential extraction: every accepted form, every bad one. */
#include <check.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "keygate/auth.h"
#include "keygate/token.h"
#include "unit_util.h"

/* Room for one expanded header value or query (the 10 kB case fits). */
#define AT_VALUE_MAX 12288
/* Room for one fixture variable. */
#define AT_VAR_MAX 256
/* Headers per table row. */
#define AT_ROW_HEADERS 4
/* The oversized credential of the catalog: 10 kB. */
#define AT_BIG_LEN 10240

/* A named string the row templates refer to as {NAME}. */
typedef struct at_var {
    const char *name;
    char value[AT_VAR_MAX];
} at_var_t;

enum {
    V_T,          /* a valid client token */
    V_A,          /* its access key */
    V_S,          /* its secret key */
    V_B,          /* base64(A:S), 54 bytes so no padding */
    V_U,          /* another valid client token */
    V_ADM,        /* an admin token */
    V_ADM_A,      /* its access key */
    V_ADM_S,      /* its secret key */
    V_ADM_B,      /* base64 of the admin pair */
    V_BAD,        /* T with a wrong checksum */
    V_BAD_S,      /* S with a wrong checksum */
    V_B_BAD,      /* base64(A:BAD_S) */
    V_B_TOKEN,    /* base64(T): no ':' */
    V_B_SHORT,    /* base64(A:S minus its last character) */
    V_B_LONG,     /* base64(A:S + "x") */
    V_B_NOSEC,    /* base64(A:) */
    V_B_NOACC,    /* base64(:S) */
    V_B_NL,       /* base64(A:S + "\n") */
    V_B_DASH,     /* B with its first character replaced by '-' */
    V_P,          /* a token with prefix "kgp": its pair needs "==" */
    V_P_B,        /* base64 of P's pair, ending in "==" */
    V_P_B_NOPAD,  /* the same without padding */
    V_P_B_ONEPAD, /* the same with one '=' only */
    V_Q,          /* a token with prefix "kgpq": its pair needs "=" */
    V_Q_B,        /* base64 of Q's pair, ending in "=" */
    V_Q_B_NOPAD,  /* the same without padding */
    V_T_PCT,      /* T with '_' percent-encoded */
    V_BIG,        /* 10 kB of 'A' */
    V__COUNT
};

static at_var_t at_vars[V__COUNT] = {
    [V_T] = {"T", ""},
    [V_A] = {"A", ""},
    [V_S] = {"S", ""},
    [V_B] = {"B", ""},
    [V_U] = {"U", ""},
    [V_ADM] = {"ADM", ""},
    [V_ADM_A] = {"ADM_A", ""},
    [V_ADM_S] = {"ADM_S", ""},
    [V_ADM_B] = {"ADM_B", ""},
    [V_BAD] = {"BAD", ""},
    [V_BAD_S] = {"BAD_S", ""},
    [V_B_BAD] = {"B_BAD", ""},
    [V_B_TOKEN] = {"B_TOKEN", ""},
    [V_B_SHORT] = {"B_SHORT", ""},
    [V_B_LONG] = {"B_LONG", ""},
    [V_B_NOSEC] = {"B_NOSEC", ""},
    [V_B_NOACC] = {"B_NOACC", ""},
    [V_B_NL] = {"B_NL", ""},
    [V_B_DASH] = {"B_DASH", ""},
    [V_P] = {"P", ""},
    [V_P_B] = {"P_B", ""},
    [V_P_B_NOPAD] = {"P_B_NOPAD", ""},
    [V_P_B_ONEPAD] = {"P_B_ONEPAD", ""},
    [V_Q] = {"Q", ""},
    [V_Q_B] = {"Q_B", ""},
    [V_Q_B_NOPAD] = {"Q_B_NOPAD", ""},
    [V_T_PCT] = {"T_PCT", ""},
    [V_BIG] = {"BIG", ""},
};

static char at_big[AT_BIG_LEN + 1];

static void at_set(int var, const char *value)
{
    size_t len = strlen(value);

    ck_assert_uint_lt(len, AT_VAR_MAX);
    memcpy(at_vars[var].value, value, len + 1);
}

/* at_vars[var] = a + b + c (each may be ""). */
static void at_set3(int var, const char *a, const char *b, const char *c)
{
    int n = snprintf(at_vars[var].value, AT_VAR_MAX, "%s%s%s", a, b, c);

    ck_assert(n > 0 && n < AT_VAR_MAX);
}

/* at_vars[var] = base64 (standard alphabet, padded) of the string s. */
static void at_set_b64(int var, const char *s)
{
    size_t len = strlen(s);

    ck_assert_uint_le(
        sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL),
        AT_VAR_MAX);
    sodium_bin2base64(at_vars[var].value, AT_VAR_MAX, (const unsigned char *)s,
                      len, sodium_base64_VARIANT_ORIGINAL);
}

/*
 * A new token of prefix: the full token goes to var full, its access and
 * secret keys to access and secret (AT_VAR_MAX bytes each).
 */
static void at_make_token(const char *prefix, int full, char *access,
                          char *secret)
{
    char buf[KG_TOKEN_STRLEN];
    kg_token_t tok;
    size_t access_len = strlen(prefix) + 1 + KG_TOKEN_ID_LEN;

    ck_assert_int_eq(kg_token_generate(prefix, &tok), KG_OK);
    ck_assert_int_eq(kg_token_format(&tok, buf, sizeof(buf)), KG_OK);
    kg_token_wipe(&tok);
    at_set(full, buf);
    memcpy(secret, buf + access_len + 1, strlen(buf + access_len + 1) + 1);
    memcpy(access, buf, access_len);
    access[access_len] = '\0';
}

/* Change the last character of s (a checksum digit) to another one. */
static void at_break_last(char *s)
{
    size_t len = strlen(s);

    s[len - 1] = s[len - 1] == '0' ? '1' : '0';
}

static void at_strip_padding(char *s)
{
    size_t len = strlen(s);

    while (len > 0 && s[len - 1] == '=') {
        s[--len] = '\0';
    }
}

/* var = base64(access + ":" + secret); returns the pair's length. */
static size_t at_set_pair_b64(int var, const char *access, const char *secret)
{
    char pair[AT_VAR_MAX];
    int n = snprintf(pair, sizeof(pair), "%s:%s", access, secret);

    ck_assert(n > 0 && n < AT_VAR_MAX);
    at_set_b64(var, pair);
    sodium_memzero(pair, sizeof(pair));
    return (size_t)n;
}

/* Build every fixture variable (fresh random tokens per process). */
static void at_fixture(void)
{
    char access[AT_VAR_MAX];
    char secret[AT_VAR_MAX];
    char *p;
    size_t len;
    int n;

    at_make_token("kg", V_T, at_vars[V_A].value, at_vars[V_S].value);
    at_make_token("kg", V_U, access, secret);
    at_make_token("kgadm", V_ADM, at_vars[V_ADM_A].value,
                  at_vars[V_ADM_S].value);

    len = at_set_pair_b64(V_B, at_vars[V_A].value, at_vars[V_S].value);
    ck_assert_uint_eq(len, 54);
    ck_assert_ptr_null(strchr(at_vars[V_B].value, '='));
    at_set3(V_B_DASH, "-", at_vars[V_B].value + 1, "");
    at_set_pair_b64(V_ADM_B, at_vars[V_ADM_A].value, at_vars[V_ADM_S].value);

    at_set(V_BAD, at_vars[V_T].value);
    at_break_last(at_vars[V_BAD].value);
    at_set(V_BAD_S, at_vars[V_S].value);
    at_break_last(at_vars[V_BAD_S].value);
    at_set_pair_b64(V_B_BAD, at_vars[V_A].value, at_vars[V_BAD_S].value);
    at_set_b64(V_B_TOKEN, at_vars[V_T].value);

    memcpy(secret, at_vars[V_S].value,
           KG_TOKEN_SECRET_LEN + KG_TOKEN_CHECK_LEN - 1);
    secret[KG_TOKEN_SECRET_LEN + KG_TOKEN_CHECK_LEN - 1] = '\0';
    at_set_pair_b64(V_B_SHORT, at_vars[V_A].value, secret);
    at_set3(V_B_LONG, at_vars[V_S].value, "x", "");
    at_set_pair_b64(V_B_LONG, at_vars[V_A].value, at_vars[V_B_LONG].value);
    at_set_pair_b64(V_B_NOSEC, at_vars[V_A].value, "");
    at_set_pair_b64(V_B_NOACC, "", at_vars[V_S].value);
    at_set3(V_B_NL, at_vars[V_S].value, "\n", "");
    at_set_pair_b64(V_B_NL, at_vars[V_A].value, at_vars[V_B_NL].value);

    /* "kgp_<id>:<secret>" is 55 bytes: its base64 ends in "==". */
    at_make_token("kgp", V_P, access, secret);
    ck_assert_uint_eq(at_set_pair_b64(V_P_B, access, secret), 55);
    len = strlen(at_vars[V_P_B].value);
    ck_assert_str_eq(at_vars[V_P_B].value + len - 2, "==");
    at_set(V_P_B_NOPAD, at_vars[V_P_B].value);
    at_strip_padding(at_vars[V_P_B_NOPAD].value);
    at_set3(V_P_B_ONEPAD, at_vars[V_P_B_NOPAD].value, "=", "");

    /* "kgpq_<id>:<secret>" is 56 bytes: its base64 ends in one "=". */
    at_make_token("kgpq", V_Q, access, secret);
    ck_assert_uint_eq(at_set_pair_b64(V_Q_B, access, secret), 56);
    len = strlen(at_vars[V_Q_B].value);
    ck_assert_int_eq(at_vars[V_Q_B].value[len - 1], '=');
    ck_assert_int_ne(at_vars[V_Q_B].value[len - 2], '=');
    at_set(V_Q_B_NOPAD, at_vars[V_Q_B].value);
    at_strip_padding(at_vars[V_Q_B_NOPAD].value);

    p = strchr(at_vars[V_T].value, '_');
    *p = '\0';
    n = snprintf(at_vars[V_T_PCT].value, AT_VAR_MAX, "%s%%5F%s",
                 at_vars[V_T].value, p + 1);
    *p = '_';
    ck_assert(n > 0 && n < AT_VAR_MAX);

    memset(at_big, 'A', AT_BIG_LEN);
    at_big[AT_BIG_LEN] = '\0';
    sodium_memzero(secret, sizeof(secret));
}

/* The value of the variable called name (len bytes), or NULL. */
static const char *at_lookup(const char *name, size_t len)
{
    if (len == 3 && memcmp(name, "BIG", 3) == 0) {
        return at_big;
    }
    for (size_t i = 0; i < V__COUNT; i++) {
        if (strlen(at_vars[i].name) == len &&
            memcmp(at_vars[i].name, name, len) == 0) {
            return at_vars[i].value;
        }
    }
    return NULL;
}

/* Expand the {NAME} references of tpl into out (AT_VALUE_MAX bytes). */
static size_t at_expand(const char *tpl, char *out)
{
    size_t o = 0;

    for (const char *p = tpl; *p != '\0';) {
        const char *piece = p;
        size_t len = 1;
        const char *end;

        if (*p == '{') {
            end = strchr(p, '}');
            ck_assert_ptr_nonnull(end);
            piece = at_lookup(p + 1, (size_t)(end - p - 1));
            ck_assert_msg(piece != NULL, "unknown variable in %s", tpl);
            len = strlen(piece);
            p = end + 1;
        } else {
            p++;
        }
        ck_assert_uint_lt(o + len, AT_VALUE_MAX);
        memcpy(out + o, piece, len);
        o += len;
    }
    out[o] = '\0';
    return o;
}

typedef struct at_row {
    const char *label;
    const char *h[AT_ROW_HEADERS][2]; /* name, value template; NULL ends */
    const char *query;                /* template, or NULL */
    kg_err_t want;
    kg_auth_form_t form;
    int tok; /* the expected token on KG_OK; 0 means V_T */
} at_row_t;

#define AZ "Authorization"
#define XK "x-api-key"
/* A row accepted with the given form and token (0: V_T). */
#define ACCEPT(label, form, tok, query, ...)                         \
    {                                                                \
        label, {__VA_ARGS__}, query, KG_OK, KG_AUTH_FORM_##form, tok \
    }
/* A row refused with the one public "invalid key" 401. */
#define REFUSE(label, query, ...)                                             \
    {                                                                         \
        label, {__VA_ARGS__}, query, KG_ERR_INVALID_KEY, KG_AUTH_FORM_NONE, 0 \
    }
/* A row with no credential at all. */
#define NOKEY(label, query, ...)                                         \
    {                                                                    \
        label, {__VA_ARGS__}, query, KG_ERR_NO_KEY, KG_AUTH_FORM_NONE, 0 \
    }

static const at_row_t at_rows[] = {
    /* Every accepted form; scheme names in any case, 1+ SP after them. */
    ACCEPT("bearer", BEARER, 0, NULL, {AZ, "Bearer {T}"}),
    ACCEPT("bearer lower", BEARER, 0, NULL, {"authorization", "bearer {T}"}),
    ACCEPT("bearer upper", BEARER, 0, NULL, {"AUTHORIZATION", "BEARER {T}"}),
    ACCEPT("bearer mixed", BEARER, 0, NULL, {AZ, "bEaReR {T}"}),
    ACCEPT("bearer two spaces", BEARER, 0, NULL, {AZ, "Bearer  {T}"}),
    ACCEPT("bearer many spaces", BEARER, 0, NULL, {AZ, "Bearer        {T}"}),
    ACCEPT("bearer surrounding ows", BEARER, 0, NULL, {AZ, " \tBearer {T} \t"}),
    ACCEPT("x-api-key", X_API_KEY, 0, NULL, {XK, "{T}"}),
    ACCEPT("x-api-key mixed case", X_API_KEY, 0, NULL, {"X-Api-Key", "{T}"}),
    ACCEPT("x-api-key surrounding ows", X_API_KEY, 0, NULL, {XK, "  {T}\t"}),
    ACCEPT("basic", BASIC, 0, NULL, {AZ, "Basic {B}"}),
    ACCEPT("basic lower", BASIC, 0, NULL, {AZ, "basic {B}"}),
    ACCEPT("basic upper", BASIC, 0, NULL, {AZ, "BASIC {B}"}),
    ACCEPT("basic two spaces", BASIC, 0, NULL, {AZ, "Basic  {B}"}),
    ACCEPT("basic padding ==", BASIC, V_P, NULL, {AZ, "Basic {P_B}"}),
    ACCEPT("basic padding =", BASIC, V_Q, NULL, {AZ, "Basic {Q_B}"}),
    ACCEPT("bearer pair", BEARER_PAIR, 0, NULL, {AZ, "Bearer {A}:{S}"}),
    ACCEPT("bearer pair lower", BEARER_PAIR, 0, NULL, {AZ, "bearer {A}:{S}"}),
    ACCEPT("other prefix", BEARER, V_P, NULL, {AZ, "Bearer {P}"}),
    /* Both headers with the same key: accepted (SDKs send both). */
    ACCEPT("bearer + same x-api-key", BEARER, 0, NULL, {AZ, "Bearer {T}"},
           {XK, "{T}"}),
    ACCEPT("same x-api-key + bearer", BEARER, 0, NULL, {XK, "{T}"},
           {AZ, "Bearer {T}"}),
    ACCEPT("basic + same x-api-key", BASIC, 0, NULL, {AZ, "Basic {B}"},
           {XK, "{T}"}),
    ACCEPT("bearer pair + same x-api-key", BEARER_PAIR, 0, NULL,
           {AZ, "Bearer {A}:{S}"}, {XK, "{T}"}),
    /* Unrelated headers and query parameters do not matter. */
    ACCEPT("other headers", BEARER, 0, NULL, {"Host", "x"},
           {"Proxy-Authorization", "Basic zzz"}, {AZ, "Bearer {T}"},
           {"Cookie", "key={BAD}"}),
    ACCEPT("harmless query", BEARER, 0,
           "?model=gpt-4&stream=true&keys=1&tokens=2&max_tokens=5&monkey=1",
           {AZ, "Bearer {T}"}),
    ACCEPT("query separators only", BEARER, 0, "&&;;=&", {AZ, "Bearer {T}"}),
    ACCEPT("query value is a bad token", BEARER, 0, "x={BAD}",
           {AZ, "Bearer {T}"}),
    ACCEPT("empty query", X_API_KEY, 0, "", {XK, "{T}"}),
    ACCEPT("query bad escapes", X_API_KEY, 0, "k%zzey=1&%g1=2&a=%4",
           {XK, "{T}"}),
    ACCEPT("query plus is a space", X_API_KEY, 0, "api+key=1", {XK, "{T}"}),

    /* No credential at all. */
    NOKEY("no headers", NULL, {NULL, NULL}),
    NOKEY("unrelated headers", "a=b", {"Host", "x"}, {"Content-Type", "a/b"}),
    NOKEY("proxy-authorization only", NULL,
          {"Proxy-Authorization", "Bearer {T}"}),
    NOKEY("similar names", NULL, {"x-api-keys", "{T}"},
          {"authorizations", "Bearer {T}"}),

    /* Two credentials, repeated headers. */
    REFUSE("bearer + other x-api-key", NULL, {AZ, "Bearer {T}"}, {XK, "{U}"}),
    REFUSE("basic + other x-api-key", NULL, {AZ, "Basic {B}"}, {XK, "{U}"}),
    REFUSE("bearer + bad x-api-key", NULL, {AZ, "Bearer {T}"}, {XK, "{BAD}"}),
    REFUSE("bad bearer + x-api-key", NULL, {AZ, "Bearer {BAD}"}, {XK, "{T}"}),
    REFUSE("empty authorization + x-api-key", NULL, {AZ, ""}, {XK, "{T}"}),
    REFUSE("repeated authorization", NULL, {AZ, "Bearer {T}"},
           {AZ, "Bearer {T}"}),
    REFUSE("repeated authorization other case", NULL, {AZ, "Bearer {T}"},
           {"authorization", "Bearer {T}"}),
    REFUSE("repeated authorization, one empty", NULL, {AZ, "Bearer {T}"},
           {AZ, ""}),
    REFUSE("repeated x-api-key", NULL, {XK, "{T}"}, {"X-API-KEY", "{T}"}),

    /* Scheme and separator. */
    REFUSE("tab after bearer", NULL, {AZ, "Bearer\t{T}"}),
    REFUSE("tab after basic", NULL, {AZ, "Basic\t{B}"}),
    REFUSE("space then tab", NULL, {AZ, "Bearer \t{T}"}),
    REFUSE("no separator", NULL, {AZ, "Bearer{T}"}),
    REFUSE("colon after scheme", NULL, {AZ, "Bearer: {T}"}),
    REFUSE("token without scheme", NULL, {AZ, "{T}"}),
    REFUSE("unknown scheme", NULL, {AZ, "Token {T}"}),
    REFUSE("unknown scheme digest", NULL, {AZ, "Digest {T}"}),
    REFUSE("scheme prefix", NULL, {AZ, "Bear {T}"}),
    REFUSE("scheme longer", NULL, {AZ, "Bearerx {T}"}),
    REFUSE("extra word", NULL, {AZ, "Bearer {T} extra"}),
    REFUSE("token twice", NULL, {AZ, "Bearer {T} {T}"}),
    REFUSE("tab inside credentials", NULL, {AZ, "Bearer {T}\tx"}),

    /* Empty and oversized. */
    REFUSE("empty authorization", NULL, {AZ, ""}),
    REFUSE("blank authorization", NULL, {AZ, " \t "}),
    REFUSE("bearer alone", NULL, {AZ, "Bearer"}),
    REFUSE("bearer and space", NULL, {AZ, "Bearer "}),
    REFUSE("basic alone", NULL, {AZ, "Basic"}),
    REFUSE("basic and spaces", NULL, {AZ, "Basic   "}),
    REFUSE("empty x-api-key", NULL, {XK, ""}),
    REFUSE("blank x-api-key", NULL, {XK, "   "}),
    REFUSE("10 kB bearer", NULL, {AZ, "Bearer {BIG}"}),
    REFUSE("10 kB basic", NULL, {AZ, "Basic {BIG}"}),
    REFUSE("10 kB x-api-key", NULL, {XK, "{BIG}"}),
    REFUSE("10 kB after a token", NULL, {AZ, "Bearer {T}{BIG}"}),

    /* Shape and checksum. */
    REFUSE("bearer bad checksum", NULL, {AZ, "Bearer {BAD}"}),
    REFUSE("x-api-key bad checksum", NULL, {XK, "{BAD}"}),
    REFUSE("bearer pair bad checksum", NULL, {AZ, "Bearer {A}:{BAD_S}"}),
    REFUSE("basic bad checksum", NULL, {AZ, "Basic {B_BAD}"}),
    REFUSE("bearer truncated", NULL, {AZ, "Bearer {A}"}),
    REFUSE("bearer token + x", NULL, {AZ, "Bearer {T}x"}),
    REFUSE("bearer garbage", NULL, {AZ, "Bearer abc"}),
    REFUSE("bearer pair no secret", NULL, {AZ, "Bearer {A}:"}),
    REFUSE("bearer pair no access", NULL, {AZ, "Bearer :{S}"}),
    REFUSE("bearer pair long secret", NULL, {AZ, "Bearer {A}:{S}x"}),
    REFUSE("bearer pair two colons", NULL, {AZ, "Bearer {A}:{S}:{S}"}),
    REFUSE("bearer pair of full token", NULL, {AZ, "Bearer {T}:{S}"}),
    REFUSE("x-api-key with scheme", NULL, {XK, "Bearer {T}"}),
    REFUSE("x-api-key pair", NULL, {XK, "{A}:{S}"}),

    /* Basic: strict standard base64, padding required, a ':' inside. */
    REFUSE("basic without colon", NULL, {AZ, "Basic {B_TOKEN}"}),
    REFUSE("basic not base64", NULL, {AZ, "Basic !!!!"}),
    REFUSE("basic raw pair", NULL, {AZ, "Basic {A}:{S}"}),
    REFUSE("basic url-safe char", NULL, {AZ, "Basic {B_DASH}"}),
    REFUSE("basic trailing junk", NULL, {AZ, "Basic {B}!"}),
    REFUSE("basic extra padding", NULL, {AZ, "Basic {B}="}),
    REFUSE("basic == missing", NULL, {AZ, "Basic {P_B_NOPAD}"}),
    REFUSE("basic == short", NULL, {AZ, "Basic {P_B_ONEPAD}"}),
    REFUSE("basic == plus one", NULL, {AZ, "Basic {P_B}="}),
    REFUSE("basic = missing", NULL, {AZ, "Basic {Q_B_NOPAD}"}),
    REFUSE("basic = plus one", NULL, {AZ, "Basic {Q_B}="}),
    REFUSE("basic padding only", NULL, {AZ, "Basic ===="}),
    REFUSE("basic secret one short", NULL, {AZ, "Basic {B_SHORT}"}),
    REFUSE("basic secret one long", NULL, {AZ, "Basic {B_LONG}"}),
    REFUSE("basic secret with newline", NULL, {AZ, "Basic {B_NL}"}),
    REFUSE("basic empty secret", NULL, {AZ, "Basic {B_NOSEC}"}),
    REFUSE("basic empty access", NULL, {AZ, "Basic {B_NOACC}"}),
    REFUSE("basic split inside", NULL, {AZ, "Basic {B} {B}"}),

    /* Admin tokens are never client keys. */
    REFUSE("bearer admin", NULL, {AZ, "Bearer {ADM}"}),
    REFUSE("x-api-key admin", NULL, {XK, "{ADM}"}),
    REFUSE("basic admin", NULL, {AZ, "Basic {ADM_B}"}),
    REFUSE("bearer pair admin", NULL, {AZ, "Bearer {ADM_A}:{ADM_S}"}),
    REFUSE("admin in both headers", NULL, {AZ, "Bearer {ADM}"}, {XK, "{ADM}"}),

    /* Keys in the query string: refused even next to a good header. */
    REFUSE("query key", "key={T}", {AZ, "Bearer {T}"}),
    REFUSE("query key alone", "key={T}", {NULL, NULL}),
    REFUSE("query key leading ?", "?key=abc", {XK, "{T}"}),
    REFUSE("query api_key", "a=1&api_key=x", {XK, "{T}"}),
    REFUSE("query api-key", "api-key=x&a=1", {XK, "{T}"}),
    REFUSE("query apikey", "apikey=x", {XK, "{T}"}),
    REFUSE("query token", "token=x", {XK, "{T}"}),
    REFUSE("query access_token", "access_token=x", {XK, "{T}"}),
    REFUSE("query x-api-key", "x-api-key=x", {XK, "{T}"}),
    REFUSE("query upper case name", "API_KEY=x", {XK, "{T}"}),
    REFUSE("query empty value", "key=", {XK, "{T}"}),
    REFUSE("query name only", "a=1&key", {XK, "{T}"}),
    REFUSE("query semicolon", "a=1;token=2", {XK, "{T}"}),
    REFUSE("query percent-encoded name", "api%5Fkey=1", {XK, "{T}"}),
    REFUSE("query percent-encoded dashes", "x%2dapi%2Dkey=1", {XK, "{T}"}),
    REFUSE("query token under another name", "auth={T}", {XK, "{T}"}),
    REFUSE("query percent-encoded token", "x=1&auth={T_PCT}", {XK, "{T}"}),
    REFUSE("query bare token", "{T}", {XK, "{T}"}),
    REFUSE("query admin token", "q={ADM}", {XK, "{T}"}),
};

static char at_values[AT_ROW_HEADERS][AT_VALUE_MAX];
static char at_query[AT_VALUE_MAX];

/* True when none of the fixture's secrets occurs in s. */
static bool at_no_secret_in(const char *s)
{
    static const int secrets[] = {V_T, V_S, V_U, V_ADM, V_ADM_S, V_BAD, V_P};

    for (size_t i = 0; i < UT_NROWS(secrets); i++) {
        if (strstr(s, at_vars[secrets[i]].value) != NULL) {
            return false;
        }
    }
    /* Nor may any 12 consecutive characters of the secret key. */
    for (size_t off = 0; off + 12 <= strlen(at_vars[V_S].value); off++) {
        char piece[13];

        memcpy(piece, at_vars[V_S].value + off, 12);
        piece[12] = '\0';
        if (strstr(s, piece) != NULL) {
            return false;
        }
    }
    return true;
}

static bool at_all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0) {
            return false;
        }
    }
    return true;
}

START_TEST(test_auth_row)
{
    const at_row_t *row = &at_rows[_i];
    kg_header_t h[AT_ROW_HEADERS];
    char want_buf[KG_TOKEN_STRLEN];
    char got_buf[KG_TOKEN_STRLEN];
    kg_auth_form_t form = (kg_auth_form_t)99;
    kg_diag_t diag = {{0}};
    kg_token_t tok;
    size_t n = 0;
    kg_err_t rc;

    at_fixture();
    memset(&tok, 0xA5, sizeof(tok));
    while (n < AT_ROW_HEADERS && row->h[n][0] != NULL) {
        h[n].name = row->h[n][0];
        h[n].name_len = strlen(row->h[n][0]);
        h[n].value_len = at_expand(row->h[n][1], at_values[n]);
        h[n].value = at_values[n];
        n++;
    }
    if (row->query != NULL) {
        at_expand(row->query, at_query);
    }
    rc = kg_auth_extract(h, n, row->query != NULL ? at_query : NULL, &tok,
                         &form, &diag);
    ck_assert_msg(rc == row->want, "%s: got %s, want %s (%s)", row->label,
                  kg_err_name(rc), kg_err_name(row->want), diag.msg);
    ck_assert_msg(form == row->form, "%s: form %s, want %s", row->label,
                  kg_auth_form_name(form), kg_auth_form_name(row->form));
    ck_assert_msg(at_no_secret_in(diag.msg), "%s: diag leaks: %s", row->label,
                  diag.msg);
    if (rc != KG_OK) {
        ck_assert_msg(diag.msg[0] != '\0', "%s: no diag", row->label);
        ck_assert_msg(at_all_zero(&tok, sizeof(tok)), "%s: token not wiped",
                      row->label);
        return;
    }
    ck_assert_int_eq(kg_token_format(&tok, got_buf, sizeof(got_buf)), KG_OK);
    memcpy(want_buf, at_vars[row->tok != 0 ? row->tok : V_T].value,
           sizeof(want_buf));
    ck_assert_msg(strcmp(got_buf, want_buf) == 0, "%s: wrong token",
                  row->label);
    kg_token_wipe(&tok);
}
END_TEST

/* One header from a literal name and value of explicit length. */
static kg_header_t at_header(const char *name, const char *value, size_t len)
{
    kg_header_t h = {name, strlen(name), value, len};
    return h;
}

START_TEST(test_auth_null_outs)
{
    kg_header_t h[1];
    kg_token_t tok;
    char value[AT_VALUE_MAX];
    size_t len;

    at_fixture();
    len = at_expand("Bearer {T}", value);
    h[0] = at_header("Authorization", value, len);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, NULL, NULL), KG_OK);
    kg_token_wipe(&tok);
    len = at_expand("Bearer {BAD}", value);
    h[0] = at_header("Authorization", value, len);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, NULL, NULL),
                     KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_auth_extract(NULL, 0, NULL, &tok, NULL, NULL),
                     KG_ERR_NO_KEY);
    /* A NULL value of length 0 is an empty value. */
    h[0] = at_header("x-api-key", NULL, 0);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, NULL, NULL),
                     KG_ERR_INVALID_KEY);
}
END_TEST

/* Values of exactly KG_MAX_CREDENTIAL_BYTES pass, one more fails. */
START_TEST(test_auth_length_bound)
{
    char value[AT_VALUE_MAX];
    const char *t;
    kg_auth_form_t form;
    kg_diag_t diag = {{0}};
    kg_header_t h[1];
    kg_token_t tok;
    size_t pad;

    at_fixture();
    t = at_vars[V_T].value;
    pad = KG_MAX_CREDENTIAL_BYTES - strlen("Bearer") - strlen(t);
    memcpy(value, "Bearer", 6);
    memset(value + 6, ' ', pad);
    memcpy(value + 6 + pad, t, strlen(t));
    h[0] = at_header("Authorization", value, KG_MAX_CREDENTIAL_BYTES);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, &form, &diag), KG_OK);
    ck_assert_int_eq(form, KG_AUTH_FORM_BEARER);
    kg_token_wipe(&tok);

    memcpy(value, "Bearer", 6);
    memset(value + 6, ' ', pad + 1);
    memcpy(value + 6 + pad + 1, t, strlen(t));
    h[0] = at_header("Authorization", value, KG_MAX_CREDENTIAL_BYTES + 1);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, &form, &diag),
                     KG_ERR_INVALID_KEY);
    ck_assert_ptr_nonnull(strstr(diag.msg, "longer than"));

    /* x-api-key: trailing spaces up to the bound are trimmed. */
    memcpy(value, t, strlen(t));
    memset(value + strlen(t), ' ', KG_MAX_CREDENTIAL_BYTES - strlen(t));
    h[0] = at_header("x-api-key", value, KG_MAX_CREDENTIAL_BYTES);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, &form, &diag), KG_OK);
    kg_token_wipe(&tok);
    h[0] = at_header("x-api-key", value, KG_MAX_CREDENTIAL_BYTES + 1);
    value[KG_MAX_CREDENTIAL_BYTES] = ' ';
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, &form, &diag),
                     KG_ERR_INVALID_KEY);
}
END_TEST

/* Values are byte strings: a NUL inside or after a token is refused. */
START_TEST(test_auth_nul_in_value)
{
    char value[AT_VALUE_MAX];
    kg_header_t h[1];
    kg_token_t tok;
    size_t len;

    at_fixture();
    len = at_expand("Bearer {T}", value);
    value[len] = '\0';
    h[0] = at_header("Authorization", value, len + 1);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, NULL, NULL),
                     KG_ERR_INVALID_KEY);
    value[10] = '\0';
    h[0] = at_header("Authorization", value, len);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, NULL, NULL),
                     KG_ERR_INVALID_KEY);
    len = at_expand("{T}", value);
    h[0] = at_header("x-api-key", value, len + 1);
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, NULL, NULL),
                     KG_ERR_INVALID_KEY);
    /* A header name with a NUL is not "x-api-key". */
    h[0].name = "x-api-key\0";
    h[0].name_len = 10;
    h[0].value_len = len;
    ck_assert_int_eq(kg_auth_extract(h, 1, NULL, &tok, NULL, NULL),
                     KG_ERR_NO_KEY);
}
END_TEST

/* Long harmless queries are scanned without trouble. */
START_TEST(test_auth_long_query)
{
    static char query[100001];
    char value[AT_VALUE_MAX];
    kg_header_t h[1];
    kg_token_t tok;
    size_t len;

    at_fixture();
    len = at_expand("{T}", value);
    h[0] = at_header("x-api-key", value, len);
    memset(query, 'k', sizeof(query) - 1);
    query[0] = 'a';
    query[1] = '=';
    ck_assert_int_eq(kg_auth_extract(h, 1, query, &tok, NULL, NULL), KG_OK);
    kg_token_wipe(&tok);
    /* A name that starts like "key" but is longer. */
    query[0] = 'k';
    query[1] = 'e';
    query[2] = 'y';
    query[3] = '=';
    ck_assert_int_eq(kg_auth_extract(h, 1, query + 4, &tok, NULL, NULL), KG_OK);
    kg_token_wipe(&tok);
    ck_assert_int_eq(kg_auth_extract(h, 1, query, &tok, NULL, NULL),
                     KG_ERR_INVALID_KEY);
    /* Percent escapes cut short at the end stay literal. */
    ck_assert_int_eq(kg_auth_extract(h, 1, "a=%", &tok, NULL, NULL), KG_OK);
    kg_token_wipe(&tok);
    ck_assert_int_eq(kg_auth_extract(h, 1, "key%", &tok, NULL, NULL), KG_OK);
    kg_token_wipe(&tok);
    ck_assert_int_eq(kg_auth_extract(h, 1, "ke%79", &tok, NULL, NULL),
                     KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_auth_extract(h, 1, "ke%7", &tok, NULL, NULL), KG_OK);
    kg_token_wipe(&tok);
}
END_TEST

static const struct {
    const char *name;
    bool want;
} at_param_rows[] = {
    {"key", true},           {"api_key", true},
    {"api-key", true},       {"apikey", true},
    {"token", true},         {"access_token", true},
    {"x-api-key", true},     {"KEY", true},
    {"Access_Token", true},  {"", false},
    {"keys", false},         {"ke", false},
    {"api_keys", false},     {"max_tokens", false},
    {"tokens", false},       {"x_api_key", false},
    {"model", false},        {"key ", false},
    {"access-token", false},
};

START_TEST(test_auth_query_arg_name)
{
    const char *name = at_param_rows[_i].name;
    bool want = at_param_rows[_i].want;

    ck_assert_msg(kg_auth_query_arg_has_key(name, strlen(name), NULL, 0) ==
                      want,
                  "param %s", name);
    ck_assert_msg(kg_auth_query_arg_has_key(name, strlen(name), "v", 1) == want,
                  "param %s=v", name);
}
END_TEST

/* Decoded arguments: token-shaped names or values count, bad ones not. */
START_TEST(test_auth_query_arg_token)
{
    const char *t;
    const char *bad;

    at_fixture();
    t = at_vars[V_T].value;
    bad = at_vars[V_BAD].value;
    ck_assert(kg_auth_query_arg_has_key("q", 1, t, strlen(t)));
    ck_assert(kg_auth_query_arg_has_key(t, strlen(t), NULL, 0));
    ck_assert(kg_auth_query_arg_has_key(NULL, 0, t, strlen(t)));
    ck_assert(kg_auth_query_arg_has_key("q", 1, at_vars[V_ADM].value,
                                        strlen(at_vars[V_ADM].value)));
    ck_assert(!kg_auth_query_arg_has_key("q", 1, bad, strlen(bad)));
    ck_assert(!kg_auth_query_arg_has_key("q", 1, t, strlen(t) - 1));
    ck_assert(!kg_auth_query_arg_has_key(NULL, 0, NULL, 0));
    ck_assert(!kg_auth_query_arg_has_key("", 0, "", 0));
}
END_TEST

START_TEST(test_auth_form_names)
{
    ck_assert_str_eq(kg_auth_form_name(KG_AUTH_FORM_NONE), "none");
    ck_assert_str_eq(kg_auth_form_name(KG_AUTH_FORM_BEARER), "bearer");
    ck_assert_str_eq(kg_auth_form_name(KG_AUTH_FORM_X_API_KEY), "x-api-key");
    ck_assert_str_eq(kg_auth_form_name(KG_AUTH_FORM_BASIC), "basic");
    ck_assert_str_eq(kg_auth_form_name(KG_AUTH_FORM_BEARER_PAIR),
                     "bearer-pair");
    ck_assert_str_eq(kg_auth_form_name((kg_auth_form_t)99), "unknown");
    ck_assert_str_eq(kg_auth_form_name((kg_auth_form_t)-1), "unknown");
}
END_TEST

/* Each public outcome maps to the documented 401 bodies. */
START_TEST(test_auth_error_mapping)
{
    ck_assert_int_eq(kg_err_http_status(KG_ERR_NO_KEY), 401);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_INVALID_KEY), 401);
    ck_assert_str_eq(kg_err_code(KG_ERR_NO_KEY), "missing_api_key");
    ck_assert_str_eq(kg_err_code(KG_ERR_INVALID_KEY), "invalid_api_key");
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("extract");

    tcase_add_loop_test(tc, test_auth_row, 0, (int)UT_NROWS(at_rows));
    tcase_add_test(tc, test_auth_null_outs);
    tcase_add_test(tc, test_auth_length_bound);
    tcase_add_test(tc, test_auth_nul_in_value);
    tcase_add_test(tc, test_auth_long_query);
    suite_add_tcase(s, tc);

    tc = tcase_create("helpers");
    tcase_add_loop_test(tc, test_auth_query_arg_name, 0,
                        (int)UT_NROWS(at_param_rows));
    tcase_add_test(tc, test_auth_query_arg_token);
    tcase_add_test(tc, test_auth_form_names);
    tcase_add_test(tc, test_auth_error_mapping);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(auth_suite());
}
