/* Gateway tests: credentials, routes, forwarding, usage and isolation. */
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway_fixture.h"

#define EXPIRING_TTL_S 3

/* One daemon for the whole case (tests only add requests and keys). */
static gwf_t W;
static gwf_key_t K_MAIN;     /* usage limit 25.00 */
static gwf_key_t K_OTHER;    /* a second valid key */
static gwf_key_t K_DISABLED; /* disabled before the daemon starts */
static gwf_key_t K_REVOKED;  /* revoked before the daemon starts */
static gwf_key_t K_EXPIRING; /* --ttl 3s */
static time_t g_expiring_made;

static void setup_api(void)
{
    kg_harness_result_t r = {0};

    gwf_root_new("kg-gw-test");
    gwf_init(&W, false);
    gwf_config(&W, "max_body_bytes = 4k\npurge_interval = 1h\n", NULL, NULL);
    gwf_init_store(&W);
    gwf_key_create(&W, &K_MAIN, "main", "--usage-limit", "25", "--description",
                   "integration", NULL);
    gwf_key_create(&W, &K_OTHER, "other", NULL);
    gwf_key_create(&W, &K_DISABLED, "disabled", NULL);
    gwf_key_create(&W, &K_REVOKED, "revoked", NULL);
    ck_assert_int_eq(gwf_kg(&W, &r, "keys", "disable", K_DISABLED.id, NULL), 0);
    ck_assert_int_eq(gwf_kg(&W, &r, "keys", "revoke", K_REVOKED.id, NULL), 0);
    kg_harness_result_free(&r);
    g_expiring_made = time(NULL);
    gwf_key_create(&W, &K_EXPIRING, "expiring", "--ttl", "3s", NULL);
    gwf_start(&W);
}

static void teardown_api(void)
{
    bool clean = gwf_stop_checked(&W);

    gwf_free(&W);
    gwf_root_free();
    ck_assert_msg(clean, "the shared daemon did not stop cleanly");
}

/* The exact compact body keygate sends for a 401 with message msg. */
static void body_401(char *buf, size_t len, const char *msg, const char *code)
{
    int n = snprintf(buf, len,
                     "{\"error\":{\"message\":\"%s\",\"type\":"
                     "\"authentication_error\",\"code\":\"%s\"},\"status\":"
                     "401,\"message\":\"%s\"}",
                     msg, code, msg);

    ck_assert(n > 0 && (size_t)n < len);
}

static void assert_body_is(const gwf_resp_t *r, const char *want)
{
    ck_assert_msg(r->body_len == strlen(want) && strcmp(r->body, want) == 0,
                  "body differs:\n got  %s\n want %s", r->body, want);
}

/* The chat body with a marker and a "mock" object (may be NULL). */
static void chat_body(char *buf, size_t len, const char *model,
                      const char *marker, const char *mock, bool stream,
                      const char *more)
{
    int n = snprintf(buf, len,
                     "{\"model\":\"%s\",\"user\":\"%s\",\"messages\":[{"
                     "\"role\":\"user\",\"content\":\"Say hello to the "
                     "integration tests.\"}]%s%s%s%s%s}",
                     model, marker, stream ? ",\"stream\":true" : "",
                     mock ? ",\"mock\":" : "", mock ? mock : "",
                     more ? "," : "", more ? more : "");

    ck_assert(n > 0 && (size_t)n < len);
}

/* The key's recorded spend once earlier requests' usage has landed. */
static int64_t key_usage(const gwf_key_t *k)
{
    (void)gwf_usage_settled(&W);
    return gwf_sql_int(&W, "SELECT usage FROM api_keys WHERE id = ?1", k->id);
}

static int64_t usage_rows(void)
{
    return gwf_usage_settled(&W);
}

/* cost = tokens x price per 1M, rounded either way at the micro-USD. */
static void assert_cost(int64_t cost, int64_t p, int64_t in, int64_t c,
                        int64_t out)
{
    int64_t exact = p * in + c * out; /* micro-USD x 1e6 */
    int64_t lo = exact / 1000000;
    int64_t hi = (exact + 999999) / 1000000;

    ck_assert_msg(cost >= lo && cost <= hi,
                  "cost %lld, expected %lld..%lld for %lld+%lld tokens",
                  (long long)cost, (long long)lo, (long long)hi, (long long)p,
                  (long long)c);
}

/* ---- credentials --------------------------------------------------------- */

START_TEST(test_expiring_key_works_before_expiry)
{
    char cred[160];
    gwf_resp_t r;

    /* Also puts the key in the daemon's cache before it expires. */
    gwf_get(&W, &r, "/v1/key", gwf_bearer(&K_EXPIRING, cred, sizeof(cred)));
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    gwf_resp_free(&r);
}
END_TEST

/* Every accepted credential form, on /v1/models. */
enum {
    FORM_BEARER,
    FORM_XAPIKEY,
    FORM_BASIC,
    FORM_PAIR,
    FORM_LOWER_BEARER,
    FORM_UPPER_BASIC,
    FORM_BOTH_SAME,
    N_FORMS
};

START_TEST(test_credential_forms)
{
    static const char *const names[] = {
        "Bearer",
        "x-api-key",
        "Basic",
        "Bearer pair",
        "bearer (lower case)",
        "BASIC (upper case)",
        "Authorization and x-api-key with one key"};
    char access[GWF_TOKEN_MAX];
    char secret[GWF_TOKEN_MAX];
    char basic[256];
    char h1[512];
    char h2[512];
    const char *hs[3] = {h1, NULL, NULL};
    gwf_resp_t r;

    gwf_split(K_MAIN.token, access, sizeof(access), secret, sizeof(secret));
    gwf_basic(K_MAIN.token, basic, sizeof(basic));
    switch (_i) {
    case FORM_BEARER:
        snprintf(h1, sizeof(h1), "Authorization: Bearer %s", K_MAIN.token);
        break;
    case FORM_XAPIKEY:
        snprintf(h1, sizeof(h1), "x-api-key: %s", K_MAIN.token);
        break;
    case FORM_BASIC:
        snprintf(h1, sizeof(h1), "Authorization: %s", basic);
        break;
    case FORM_PAIR:
        snprintf(h1, sizeof(h1), "Authorization: Bearer %s:%s", access, secret);
        break;
    case FORM_LOWER_BEARER:
        snprintf(h1, sizeof(h1), "authorization: bearer %s", K_MAIN.token);
        break;
    case FORM_UPPER_BASIC:
        snprintf(h1, sizeof(h1), "Authorization: BASIC %s", basic + 6);
        break;
    default:
        snprintf(h1, sizeof(h1), "Authorization: Bearer %s", K_MAIN.token);
        snprintf(h2, sizeof(h2), "x-api-key: %s", K_MAIN.token);
        hs[1] = h2;
        break;
    }
    gwf_http(&W, &r, "GET", "/v1/models", hs, NULL, 0);
    ck_assert_msg(r.curl_rc == CURLE_OK && r.status == 200,
                  "%s: curl %d status %ld: %s", names[_i], r.curl_rc, r.status,
                  r.body);
    ck_assert_msg(r.request_id[0] != '\0', "%s: no x-request-id", names[_i]);
    gwf_resp_free(&r);
}
END_TEST

/* Credentials that must all get the one identical "invalid" 401 body. */
enum {
    BAD_MALFORMED,
    BAD_CHECKSUM,
    BAD_UNKNOWN_ID,
    BAD_WRONG_SECRET,
    BAD_DISABLED,
    BAD_REVOKED,
    BAD_ADMIN_PREFIX,
    BAD_TWO_KEYS,
    BAD_REPEATED_AUTH,
    BAD_REPEATED_XAPIKEY,
    BAD_QUERY_KEY,
    BAD_QUERY_VALUE,
    BAD_TAB,
    BAD_SCHEME,
    BAD_EMPTY_BEARER,
    BAD_EMPTY_XAPIKEY,
    BAD_10KB,
    BAD_BASIC_GARBAGE,
    N_BAD
};

START_TEST(test_invalid_credentials_identical)
{
    static const char *const names[] = {"malformed",
                                        "bad checksum",
                                        "unknown id",
                                        "wrong secret",
                                        "disabled key",
                                        "revoked key",
                                        "admin prefix",
                                        "two different keys",
                                        "repeated Authorization",
                                        "repeated x-api-key",
                                        "key in the query",
                                        "token as a query value",
                                        "tab after the scheme",
                                        "unknown scheme",
                                        "empty Bearer",
                                        "empty x-api-key",
                                        "10 kB value",
                                        "Basic garbage"};
    static char big[10300];
    char tok[GWF_TOKEN_MAX];
    char h1[512];
    char h2[512];
    char path[256] = "/v1/models";
    char want[1024];
    const char *hs[3] = {h1, NULL, NULL};
    const char *bad = NULL;
    char src[32];
    gwf_resp_t r;

    switch (_i) {
    case BAD_MALFORMED:
        bad = "kg_notatoken";
        break;
    case BAD_CHECKSUM:
        snprintf(tok, sizeof(tok), "%s", K_MAIN.token);
        tok[strlen(tok) - 1] = tok[strlen(tok) - 1] == 'A' ? 'B' : 'A';
        bad = tok;
        break;
    case BAD_UNKNOWN_ID:
        gwf_fake_token(NULL, tok, sizeof(tok));
        bad = tok;
        break;
    case BAD_WRONG_SECRET:
        gwf_fake_token(K_MAIN.id, tok, sizeof(tok));
        bad = tok;
        break;
    case BAD_DISABLED:
        bad = K_DISABLED.token;
        break;
    case BAD_REVOKED:
        bad = K_REVOKED.token;
        break;
    case BAD_ADMIN_PREFIX:
        snprintf(tok, sizeof(tok), "kgadm%.60s", K_MAIN.token + 2);
        bad = tok;
        break;
    case BAD_TWO_KEYS:
        snprintf(h1, sizeof(h1), "Authorization: Bearer %s", K_MAIN.token);
        snprintf(h2, sizeof(h2), "x-api-key: %s", K_OTHER.token);
        hs[1] = h2;
        break;
    case BAD_REPEATED_AUTH:
        snprintf(h1, sizeof(h1), "Authorization: Bearer %s", K_MAIN.token);
        snprintf(h2, sizeof(h2), "Authorization: Bearer %s", K_MAIN.token);
        hs[1] = h2;
        break;
    case BAD_REPEATED_XAPIKEY:
        snprintf(h1, sizeof(h1), "x-api-key: %s", K_MAIN.token);
        snprintf(h2, sizeof(h2), "x-api-key: %s", K_MAIN.token);
        hs[1] = h2;
        break;
    case BAD_QUERY_KEY:
        snprintf(h1, sizeof(h1), "Authorization: Bearer %s", K_MAIN.token);
        snprintf(path, sizeof(path), "/v1/models?api_key=%s", K_MAIN.token);
        break;
    case BAD_QUERY_VALUE:
        snprintf(h1, sizeof(h1), "Authorization: Bearer %s", K_MAIN.token);
        snprintf(path, sizeof(path), "/v1/models?foo=%s", K_MAIN.token);
        break;
    case BAD_TAB:
        snprintf(h1, sizeof(h1), "Authorization: Bearer\t%s", K_MAIN.token);
        break;
    case BAD_SCHEME:
        snprintf(h1, sizeof(h1), "Authorization: Token %s", K_MAIN.token);
        break;
    case BAD_EMPTY_BEARER:
        snprintf(h1, sizeof(h1), "Authorization: Bearer");
        break;
    case BAD_EMPTY_XAPIKEY:
        snprintf(h1, sizeof(h1), "x-api-key;"); /* curl: an empty value */
        break;
    case BAD_10KB:
        memcpy(big, "Authorization: Bearer ", 22);
        memset(big + 22, 'a', 10240);
        big[22 + 10240] = '\0';
        hs[0] = big;
        break;
    default:
        snprintf(h1, sizeof(h1), "Authorization: Basic !!!not-base64!!!");
        break;
    }
    if (bad != NULL) {
        snprintf(h1, sizeof(h1), "Authorization: Bearer %s", bad);
    }
    /* One failed authentication per client address (see gwf_source_ip). */
    snprintf(src, sizeof(src), "127.0.1.%d", _i + 1);
    gwf_source_ip = src;
    gwf_http(&W, &r, "GET", path, hs, NULL, 0);
    gwf_source_ip = NULL;
    ck_assert_msg(r.status == 401, "%s: status %ld: %s", names[_i], r.status,
                  r.body);
    gwf_assert_error(&r, 401, "invalid_api_key", GWF_MSG_INVALID);
    body_401(want, sizeof(want), GWF_MSG_INVALID, "invalid_api_key");
    assert_body_is(&r, want);
    /* No error echoes the submitted key. */
    ck_assert_ptr_null(strstr(r.body, K_MAIN.token + 16));
    ck_assert_ptr_null(strstr(r.headers, K_MAIN.token + 16));
    gwf_resp_free(&r);
}
END_TEST

START_TEST(test_missing_credential)
{
    char want[1024];
    gwf_resp_t r;

    gwf_get(&W, &r, "/v1/models", NULL);
    gwf_assert_error(&r, 401, "missing_api_key", GWF_MSG_NO_KEY);
    body_401(want, sizeof(want), GWF_MSG_NO_KEY, "missing_api_key");
    assert_body_is(&r, want);
    gwf_resp_free(&r);
    /* The same on a proxied route, before any body is looked at. */
    gwf_post(&W, &r, "/v1/chat/completions", NULL, "{\"model\":\"gpt-4o\"}");
    gwf_assert_error(&r, 401, "missing_api_key", GWF_MSG_NO_KEY);
    assert_body_is(&r, want);
    gwf_resp_free(&r);
}
END_TEST

/* Headers past [server] max_header_bytes (16k) → 431, documented. */
START_TEST(test_oversized_headers)
{
    static char big[20600];
    char cred[160];
    const char *hs[] = {gwf_bearer(&K_MAIN, cred, sizeof(cred)), big, NULL};
    gwf_resp_t r;

    memcpy(big, "X-Filler: ", 10);
    memset(big + 10, 'f', 20480);
    big[10 + 20480] = '\0';
    gwf_http(&W, &r, "GET", "/v1/models", hs, NULL, 0);
    gwf_assert_error(&r, 431, "request_header_fields_too_large", NULL);
    gwf_resp_free(&r);
}
END_TEST

/*
 * docs/api.md: every request line and header block past max_header_bytes
 * (16 KiB here), up to the hard cap of max_header_bytes + 8 KiB in up to
 * 100 header lines, gets keygate's JSON 431 with x-request-id; past the
 * cap libmicrohttpd answers 431 itself and closes. Sizes are exact bytes
 * on the wire, sent over a raw socket.
 */
#define HDR_MAX (16 * 1024)
#define HDR_CAP (HDR_MAX + 8 * 1024)

typedef struct hdr_case {
    size_t total; /* bytes of the request line and headers */
    int lines;    /* header lines, Host and Authorization included */
    bool json;    /* keygate's answer expected (else only a 431) */
} hdr_case_t;

static const hdr_case_t hdr_cases[] = {
    {HDR_MAX + 1, 3, true}, {HDR_MAX + 1, 100, true},  {HDR_CAP, 3, true},
    {HDR_CAP, 50, true},    {HDR_CAP, 100, true},      {4 * 1024, 101, true},
    {4 * 1024, 150, true},  {HDR_MAX + 1024, 3, true}, {4 * HDR_MAX, 3, false},
};
#define N_HDR_CASES ((int)(sizeof(hdr_cases) / sizeof(*hdr_cases)))

/* A GET /v1/models of exactly c->total bytes in c->lines header lines. */
static char *hdr_request(const hdr_case_t *c)
{
    char *req = malloc(c->total + 1);
    size_t len;
    int pads = c->lines - 2;

    ck_assert_ptr_nonnull(req);
    len = (size_t)snprintf(req, c->total + 1,
                           "GET /v1/models HTTP/1.1\r\nHost: x\r\n"
                           "Authorization: Bearer %s\r\n",
                           K_MAIN.token);
    for (int i = 0; i < pads; i++) {
        /* The last line takes what is left before the final CRLF. */
        size_t room = c->total - 2 - len;
        size_t want = i == pads - 1 ? room : room / (size_t)(pads - i);
        int n = snprintf(req + len, c->total + 1 - len, "X-P%d: ", i);

        ck_assert(n > 0 && want >= (size_t)n + 3);
        memset(req + len + n, 'p', want - (size_t)n - 2);
        memcpy(req + len + want - 2, "\r\n", 2);
        len += want;
    }
    memcpy(req + len, "\r\n", 2);
    len += 2;
    ck_assert_uint_eq(len, c->total);
    req[len] = '\0';
    return req;
}

START_TEST(test_oversized_headers_json_up_to_cap)
{
    const hdr_case_t *c = &hdr_cases[_i];
    char *req = hdr_request(c);
    char v[128];
    gwf_buf_t b = {0};
    const char *body;
    json_t *j;
    int fd = gwf_connect(W.gw_port);

    ck_assert_int_ge(fd, 0);
    /* A refusal may close before all is sent: what was read counts. */
    (void)gwf_send_all(fd, req, c->total);
    ck_assert_msg(gwf_wait_closed(fd, &b, 8000),
                  "%zu bytes in %d lines: the "
                  "connection stayed open",
                  c->total, c->lines);
    close(fd);
    free(req);
    ck_assert_ptr_nonnull(b.data);
    ck_assert_msg(strncmp(b.data, "HTTP/1.1 431 ", 13) == 0,
                  "%zu bytes in %d lines: %.80s", c->total, c->lines, b.data);
    if (c->json) {
        ck_assert_msg(gwf_raw_header(b.data, "Content-Type", v, sizeof(v)) &&
                          strcmp(v, "application/json") == 0,
                      "%zu bytes in %d lines: not JSON: %s", c->total, c->lines,
                      b.data);
        ck_assert_msg(gwf_raw_header(b.data, "x-request-id", v, sizeof(v)),
                      "no x-request-id: %s", b.data);
        body = strstr(b.data, "\r\n\r\n");
        ck_assert_ptr_nonnull(body);
        j = json_loads(body + 4, 0, NULL);
        ck_assert_msg(j != NULL, "body: %s", body + 4);
        ck_assert_str_eq(json_string_value(json_object_get(
                             json_object_get(j, "error"), "code")),
                         "request_header_fields_too_large");
        json_decref(j);
    }
    gwf_buf_free(&b);
    gwf_assert_serving(&W, &K_MAIN);
}
END_TEST

START_TEST(test_request_ids_unique)
{
    char cred[160];
    char body[1024];
    char marker[GWF_MARKER_MAX];
    char ids[12][GWF_REQID_MAX];
    long want[12];
    gwf_resp_t r;
    gwf_usage_t u;
    size_t n = 0;
    const char *bearer = gwf_bearer(&K_MAIN, cred, sizeof(cred));

    gwf_marker(marker, sizeof(marker));
    chat_body(body, sizeof(body), "gpt-4o", marker, NULL, false, NULL);
    for (int round = 0; round < 12; round++) {
        switch (round % 6) {
        case 0:
            gwf_get(&W, &r, "/v1/models", bearer);
            want[n] = 200;
            break;
        case 1:
            gwf_get(&W, &r, "/v1/models", NULL);
            want[n] = 401;
            break;
        case 2:
            gwf_get(&W, &r, "/nope", bearer);
            want[n] = 404;
            break;
        case 3:
            gwf_http(&W, &r, "DELETE", "/v1/models",
                     (const char *[]){bearer, NULL}, NULL, 0);
            want[n] = 405;
            break;
        case 4:
            gwf_post(&W, &r, "/v1/chat/completions", bearer, "{bad json");
            want[n] = 400;
            break;
        default:
            gwf_post(&W, &r, "/v1/chat/completions", bearer, body);
            want[n] = 200;
            break;
        }
        ck_assert_int_eq(r.status, want[n]);
        ck_assert_msg(strncmp(r.request_id, "req_", 4) == 0 &&
                          strlen(r.request_id) > 8,
                      "bad x-request-id '%s' on a %ld", r.request_id, r.status);
        ck_assert_int_eq(gwf_resp_header(&r, "x-request-id", NULL, 0), 1);
        for (size_t i = 0; i < n; i++) {
            ck_assert_str_ne(ids[i], r.request_id);
        }
        snprintf(ids[n], sizeof(ids[n]), "%s", r.request_id);
        if (round % 6 == 5) {
            /* The same id names the usage event. */
            ck_assert(gwf_usage(&W, r.request_id, &u));
            ck_assert_str_eq(u.key_id, K_MAIN.id);
        }
        n++;
        gwf_resp_free(&r);
    }
}
END_TEST

/* ---- keygate's own routes ------------------------------------------------ */

START_TEST(test_models)
{
    static const char *const models[][2] = {
        {"gpt-4o", "mock"},     {"claude-3-5-sonnet", "mockant"},
        {"renamed", "mock"},    {"text-embedding-3-small", "mock"},
        {"dead-model", "dead"}, {"aux-model", "aux"}};
    char cred[160];
    char cc[128];
    gwf_resp_t r;
    json_t *j;
    json_t *data;

    gwf_get(&W, &r, "/v1/models", gwf_bearer(&K_MAIN, cred, sizeof(cred)));
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(gwf_resp_header(&r, "Cache-Control", cc, sizeof(cc)), 1);
    ck_assert_str_eq(cc, "private, no-store");
    j = gwf_resp_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "object")), "list");
    data = json_object_get(j, "data");
    ck_assert_int_eq(json_array_size(data), GWF_N_MODELS);
    for (size_t m = 0; m < GWF_N_MODELS; m++) {
        bool found = false;

        for (size_t i = 0; i < json_array_size(data); i++) {
            json_t *e = json_array_get(data, i);

            if (strcmp(json_string_value(json_object_get(e, "id")),
                       models[m][0]) == 0) {
                ck_assert_str_eq(
                    json_string_value(json_object_get(e, "object")), "model");
                ck_assert_str_eq(
                    json_string_value(json_object_get(e, "owned_by")),
                    models[m][1]);
                found = true;
            }
        }
        ck_assert_msg(found, "model %s not listed: %s", models[m][0], r.body);
    }
    json_decref(j);
    gwf_resp_free(&r);
}
END_TEST

START_TEST(test_key_info)
{
    char cred[160];
    char access[GWF_TOKEN_MAX];
    char secret[GWF_TOKEN_MAX];
    gwf_resp_t r;
    json_t *j;

    gwf_split(K_MAIN.token, access, sizeof(access), secret, sizeof(secret));
    gwf_get(&W, &r, "/v1/key", gwf_bearer(&K_MAIN, cred, sizeof(cred)));
    ck_assert_int_eq(r.status, 200);
    j = gwf_resp_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "object")), "key");
    ck_assert_str_eq(json_string_value(json_object_get(j, "id")), K_MAIN.id);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "main");
    ck_assert_str_eq(json_string_value(json_object_get(j, "display")),
                     K_MAIN.display);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "active");
    ck_assert_str_eq(json_string_value(json_object_get(j, "usageLimit")),
                     "25.00");
    ck_assert(json_is_string(json_object_get(j, "usage")));
    ck_assert(json_is_string(json_object_get(j, "remaining")));
    ck_assert(json_is_string(json_object_get(j, "expiresAt")));
    ck_assert(json_object_get(j, "periodLimit") != NULL);
    /* Never the secret, in any form. */
    ck_assert_ptr_null(strstr(r.body, secret));
    ck_assert_ptr_null(strstr(r.body, K_MAIN.token));
    ck_assert_ptr_null(strstr(r.body, "hash"));
    json_decref(j);
    gwf_resp_free(&r);
    /* Another key sees itself, not the first one. */
    gwf_get(&W, &r, "/v1/key", gwf_bearer(&K_OTHER, cred, sizeof(cred)));
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, K_OTHER.id));
    ck_assert_ptr_null(strstr(r.body, K_MAIN.id));
    gwf_resp_free(&r);
}
END_TEST

/* The store's last_used_at of key id (unix seconds); -1 while NULL. */
static int64_t last_used(const char *id)
{
    return gwf_sql_int(&W,
                       "SELECT coalesce(last_used_at, -1) FROM api_keys "
                       "WHERE id = ?1",
                       id);
}

/* Wait (at most 5 s) until last_used_at of id is above after. */
static int64_t wait_last_used(const char *id, int64_t after)
{
    int64_t deadline = gwf_now_ms() + 5000;
    int64_t t;

    while ((t = last_used(id)) <= after) {
        ck_assert_msg(gwf_now_ms() < deadline,
                      "last_used_at of %s stays %lld (expected > %lld)", id,
                      (long long)t, (long long)after);
        gwf_sleep_ms(25);
    }
    return t;
}

/*
 * last_used_at moves with every authenticated request, also those keygate
 * answers itself (/v1/models, /v1/key, an unknown model), not only the
 * forwarded ones; the CLI shows it.
 */
START_TEST(test_last_used_on_every_request)
{
    const char *paths[] = {"/v1/models", "/v1/key", "/v1/models/no-such"};
    const long want[] = {200, 200, 404};
    kg_harness_result_t res = {0};
    char cred[160];
    char line[64];
    struct tm tm;
    gwf_key_t k;
    int64_t t = 0;

    gwf_key_create(&W, &k, "last-used", NULL);
    ck_assert_int_eq(last_used(k.id), -1);
    for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++) {
        gwf_resp_t r;
        time_t before = time(NULL);

        if (i > 0) {
            /* The next second, so that the time can move. */
            while (time(NULL) <= (time_t)t) {
                gwf_sleep_ms(50);
            }
            before = time(NULL);
        }
        gwf_get(&W, &r, paths[i], gwf_bearer(&k, cred, sizeof(cred)));
        ck_assert_int_eq(r.status, want[i]);
        gwf_resp_free(&r);
        t = wait_last_used(k.id, t);
        ck_assert_msg(t >= before && t <= time(NULL),
                      "%s: last_used_at %lld, sent at %lld", paths[i],
                      (long long)t, (long long)before);
    }
    /* keys show prints it (UTC, to the minute). */
    ck_assert_int_eq(gwf_kg(&W, &res, "keys", "show", k.id, NULL), 0);
    gmtime_r(&(time_t){(time_t)t}, &tm);
    strftime(line, sizeof(line), "Last used:     %Y-%m-%d %H:%M", &tm);
    ck_assert_msg(strstr(res.out, line) != NULL, "no '%s' in: %s", line,
                  res.out);
    kg_harness_result_free(&res);
}
END_TEST

START_TEST(test_unknown_route_and_method)
{
    char cred[160];
    const char *bearer = gwf_bearer(&K_MAIN, cred, sizeof(cred));
    gwf_resp_t r;

    gwf_get(&W, &r, "/v2/models", bearer);
    gwf_assert_error(&r, 404, "unknown_route", NULL);
    gwf_resp_free(&r);
    gwf_http(&W, &r, "DELETE", "/v1/models", (const char *[]){bearer, NULL},
             NULL, 0);
    gwf_assert_error(&r, 405, "method_not_allowed", NULL);
    gwf_resp_free(&r);
    gwf_get(&W, &r, "/v1/chat/completions", bearer);
    gwf_assert_error(&r, 405, "method_not_allowed", NULL);
    gwf_resp_free(&r);
}
END_TEST

/* ---- forwarding and usage ------------------------------------------------ */

START_TEST(test_chat_json)
{
    char cred[160];
    char body[1024];
    char marker[GWF_MARKER_MAX];
    int64_t before = key_usage(&K_MAIN);
    gwf_resp_t r;
    gwf_usage_t u;
    json_t *j;

    gwf_marker(marker, sizeof(marker));
    chat_body(body, sizeof(body), "gpt-4o", marker,
              "{\"prompt_tokens\":1001,\"completion_tokens\":333}", false,
              NULL);
    gwf_post(&W, &r, "/v1/chat/completions",
             gwf_bearer(&K_MAIN, cred, sizeof(cred)), body);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    j = gwf_resp_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "object")),
                     "chat.completion");
    ck_assert_ptr_nonnull(strstr(r.body, "Hello from keygate-mock."));
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(j, "usage"), "completion_tokens")),
                     333);
    json_decref(j);
    /* The usage event is committed before the answer is sent. */
    ck_assert_msg(gwf_usage(&W, r.request_id, &u), "no usage row for %s",
                  r.request_id);
    ck_assert_str_eq(u.key_id, K_MAIN.id);
    ck_assert_str_eq(u.operation, "chat");
    ck_assert_str_eq(u.model, "gpt-4o");
    ck_assert_int_eq(u.status, 200);
    ck_assert_int_eq(u.prompt_tokens, 1001);
    ck_assert_int_eq(u.completion_tokens, 333);
    ck_assert_int_eq(u.streamed, 0);
    ck_assert_msg(!u.has_error, "error_code %s", u.error_code);
    assert_cost(u.cost, 1001, GWF_GPT_IN, 333, GWF_GPT_OUT);
    ck_assert_int_eq(key_usage(&K_MAIN), before + u.cost);
    ck_assert_int_gt(gwf_sql_int(&W,
                                 "SELECT coalesce(last_used_at, 0) FROM "
                                 "api_keys WHERE id = ?1",
                                 K_MAIN.id),
                     0);
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 1);
    gwf_resp_free(&r);
}
END_TEST

/* The data: payloads of an SSE text, in order, into out (max n). */
static size_t sse_data(const char *text, const char **out, size_t n)
{
    size_t k = 0;

    for (const char *p = strstr(text, "data: "); p != NULL && k < n;
         p = strstr(p + 6, "data: ")) {
        if (p == text || p[-1] == '\n') {
            out[k++] = p + 6;
        }
    }
    return k;
}

static void stream_chat(bool client_usage)
{
    char cred[160];
    char body[1024];
    char marker[GWF_MARKER_MAX];
    const char *ev[32];
    size_t n;
    gwf_resp_t r;
    gwf_usage_t u;
    json_t *seen;
    const char *sent;

    gwf_marker(marker, sizeof(marker));
    chat_body(
        body, sizeof(body), "gpt-4o", marker,
        "{\"events\":4,\"prompt_tokens\":77,\"completion_tokens\":33}", true,
        client_usage ? "\"stream_options\":{\"include_usage\":true}" : NULL);
    gwf_post(&W, &r, "/v1/chat/completions",
             gwf_bearer(&K_MAIN, cred, sizeof(cred)), body);
    ck_assert_msg(r.curl_rc == CURLE_OK && r.status == 200,
                  "curl %d status %ld: %s", r.curl_rc, r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.headers, "text/event-stream"));
    n = sse_data(r.body, ev, 32);
    ck_assert_uint_eq(n, client_usage ? 6 : 5);
    for (size_t i = 0; i < 4; i++) {
        char tok[16];
        const char *hit;

        snprintf(tok, sizeof(tok), "\"tok%zu ", i);
        hit = strstr(ev[i], tok);
        ck_assert_msg(strncmp(ev[i], "{\"id\"", 5) == 0 && hit != NULL &&
                          hit < ev[i + 1],
                      "event %zu missing or out of order: %.120s", i, ev[i]);
    }
    ck_assert_msg(strncmp(ev[n - 1], "[DONE]\n\n", 8) == 0,
                  "last event is not [DONE]: %s", ev[n - 1]);
    if (client_usage) {
        ck_assert_ptr_nonnull(strstr(ev[4], "\"choices\":[]"));
        ck_assert_ptr_nonnull(strstr(ev[4], "\"prompt_tokens\":77"));
    } else {
        /* The chunk keygate asked for is not relayed. */
        ck_assert_ptr_null(strstr(r.body, "\"usage\":{"));
        ck_assert_ptr_null(strstr(r.body, "\"choices\":[]"));
    }
    /* keygate asked the provider for usage either way. */
    seen = gwf_log_request(W.mock_log, marker);
    ck_assert_ptr_nonnull(seen);
    sent = json_string_value(json_object_get(seen, "body"));
    ck_assert_ptr_nonnull(sent);
    ck_assert_ptr_nonnull(strstr(sent, "\"include_usage\":true"));
    json_decref(seen);
    ck_assert(gwf_usage(&W, r.request_id, &u));
    ck_assert_int_eq(u.status, 200);
    ck_assert_int_eq(u.prompt_tokens, 77);
    ck_assert_int_eq(u.completion_tokens, 33);
    ck_assert_int_eq(u.streamed, 1);
    ck_assert_msg(!u.has_error, "error_code %s", u.error_code);
    assert_cost(u.cost, 77, GWF_GPT_IN, 33, GWF_GPT_OUT);
    gwf_resp_free(&r);
}

START_TEST(test_chat_stream_without_include_usage)
{
    stream_chat(false);
}
END_TEST

START_TEST(test_chat_stream_with_include_usage)
{
    stream_chat(true);
}
END_TEST

/* Anthropic, JSON and stream, with x-api-key (_i even) or Bearer (_i odd). */
START_TEST(test_anthropic)
{
    static const char *const order[] = {
        "message_start",       "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta",       "message_stop"};
    bool stream = _i >= 2;
    char cred[160];
    char body[1024];
    char marker[GWF_MARKER_MAX];
    gwf_resp_t r;
    gwf_usage_t u;
    json_t *seen;

    if (_i % 2 == 0) {
        snprintf(cred, sizeof(cred), "x-api-key: %s", K_MAIN.token);
    } else {
        gwf_bearer(&K_MAIN, cred, sizeof(cred));
    }
    gwf_marker(marker, sizeof(marker));
    snprintf(body, sizeof(body),
             "{\"model\":\"claude-3-5-sonnet\",\"max_tokens\":64,"
             "\"metadata\":{\"user_id\":\"%s\"},\"messages\":[{\"role\":"
             "\"user\",\"content\":\"hi\"}],%s\"mock\":{\"events\":3,"
             "\"prompt_tokens\":41,\"completion_tokens\":59}}",
             marker, stream ? "\"stream\":true," : "");
    gwf_post(&W, &r, "/v1/messages", cred, body);
    ck_assert_msg(r.curl_rc == CURLE_OK && r.status == 200,
                  "curl %d status %ld: %s", r.curl_rc, r.status, r.body);
    if (stream) {
        const char *p = r.body;

        for (size_t i = 0; i < sizeof(order) / sizeof(*order); i++) {
            char ev[64];

            snprintf(ev, sizeof(ev), "event: %s\n", order[i]);
            p = strstr(p, ev);
            ck_assert_msg(p != NULL, "event %s missing or out of order: %s",
                          order[i], r.body);
            p += strlen(ev);
        }
        ck_assert_uint_eq(gwf_count(r.body, r.body_len, "event: "), 8);
    } else {
        json_t *j = gwf_resp_json(&r);

        ck_assert_str_eq(json_string_value(json_object_get(j, "type")),
                         "message");
        json_decref(j);
    }
    seen = gwf_log_request(W.mock_log, marker);
    ck_assert_ptr_nonnull(seen);
    ck_assert_str_eq(json_string_value(json_object_get(seen, "path")),
                     "/v1/messages");
    json_decref(seen);
    ck_assert(gwf_usage(&W, r.request_id, &u));
    ck_assert_str_eq(u.operation, "messages");
    ck_assert_str_eq(u.model, "claude-3-5-sonnet");
    ck_assert_int_eq(u.status, 200);
    ck_assert_int_eq(u.prompt_tokens, 41);
    ck_assert_int_eq(u.completion_tokens, 59);
    ck_assert_int_eq(u.streamed, stream ? 1 : 0);
    ck_assert_msg(!u.has_error, "error_code %s", u.error_code);
    assert_cost(u.cost, 41, GWF_CLAUDE_IN, 59, GWF_CLAUDE_OUT);
    gwf_resp_free(&r);
}
END_TEST

START_TEST(test_embeddings)
{
    char cred[160];
    char body[512];
    char marker[GWF_MARKER_MAX];
    gwf_resp_t r;
    gwf_usage_t u;
    json_t *j;

    gwf_marker(marker, sizeof(marker));
    snprintf(body, sizeof(body),
             "{\"model\":\"text-embedding-3-small\",\"user\":\"%s\","
             "\"input\":[\"a\",\"b\",\"c\"],\"mock\":{\"prompt_tokens\":"
             "5000}}",
             marker);
    gwf_post(&W, &r, "/v1/embeddings", gwf_bearer(&K_MAIN, cred, sizeof(cred)),
             body);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    j = gwf_resp_json(&r);
    ck_assert_int_eq(json_array_size(json_object_get(j, "data")), 3);
    json_decref(j);
    ck_assert(gwf_usage(&W, r.request_id, &u));
    ck_assert_str_eq(u.operation, "embeddings");
    ck_assert_int_eq(u.prompt_tokens, 5000);
    ck_assert_int_eq(u.completion_tokens, 0);
    assert_cost(u.cost, 5000, GWF_EMBED_IN, 0, 0);
    ck_assert_int_eq(u.cost, 100);
    gwf_resp_free(&r);
}
END_TEST

/* The model the provider saw, from the echo answer and the mock's log. */
static void assert_upstream_model(const char *model, const char *want)
{
    char cred[160];
    char body[512];
    char marker[GWF_MARKER_MAX];
    gwf_resp_t r;
    json_t *j;
    json_t *sent;
    json_t *seen;

    gwf_marker(marker, sizeof(marker));
    chat_body(body, sizeof(body), model, marker, "{\"mode\":\"echo\"}", false,
              NULL);
    gwf_post(&W, &r, "/v1/chat/completions",
             gwf_bearer(&K_MAIN, cred, sizeof(cred)), body);
    ck_assert_msg(r.status == 200, "%s: status %ld: %s", model, r.status,
                  r.body);
    j = gwf_resp_json(&r);
    sent = json_loads(json_string_value(json_object_get(j, "body")), 0, NULL);
    ck_assert_ptr_nonnull(sent);
    ck_assert_str_eq(json_string_value(json_object_get(sent, "model")), want);
    ck_assert_str_eq(json_string_value(json_object_get(sent, "user")), marker);
    json_decref(sent);
    json_decref(j);
    seen = gwf_log_request(W.mock_log, marker);
    ck_assert_ptr_nonnull(seen);
    sent =
        json_loads(json_string_value(json_object_get(seen, "body")), 0, NULL);
    ck_assert_ptr_nonnull(sent);
    ck_assert_str_eq(json_string_value(json_object_get(sent, "model")), want);
    json_decref(sent);
    json_decref(seen);
    gwf_resp_free(&r);
}

START_TEST(test_model_rewrite)
{
    char cred[160];
    char body[512];
    char marker[GWF_MARKER_MAX];
    gwf_resp_t r;
    gwf_usage_t u;

    assert_upstream_model("renamed", "other-name");
    assert_upstream_model("gpt-4o", "gpt-4o");
    /* The usage event names the public model. */
    gwf_marker(marker, sizeof(marker));
    chat_body(body, sizeof(body), "renamed", marker, NULL, false, NULL);
    gwf_post(&W, &r, "/v1/chat/completions",
             gwf_bearer(&K_MAIN, cred, sizeof(cred)), body);
    ck_assert_int_eq(r.status, 200);
    ck_assert(gwf_usage(&W, r.request_id, &u));
    ck_assert_str_eq(u.model, "renamed");
    gwf_resp_free(&r);
}
END_TEST

START_TEST(test_provider_model_routing)
{
    char cred[160];
    char body[512];
    char marker[GWF_MARKER_MAX];
    gwf_resp_t r;

    assert_upstream_model("mock/other-name", "other-name");
    assert_upstream_model("mock/renamed", "other-name");
    assert_upstream_model("mock/gpt-4o", "gpt-4o");
    /* A provider that does not serve the model, or of the other API. */
    gwf_marker(marker, sizeof(marker));
    chat_body(body, sizeof(body), "mockant/gpt-4o", marker, NULL, false, NULL);
    gwf_post(&W, &r, "/v1/chat/completions",
             gwf_bearer(&K_MAIN, cred, sizeof(cred)), body);
    gwf_assert_error(&r, 404, "model_not_found",
                     "The model 'mockant/gpt-4o' does not exist or you do not "
                     "have access to it.");
    gwf_resp_free(&r);
    snprintf(body, sizeof(body),
             "{\"model\":\"mockant/claude-3-5-sonnet\",\"max_tokens\":8,"
             "\"metadata\":{\"user_id\":\"%s\"}}",
             marker);
    gwf_post(&W, &r, "/v1/messages", gwf_bearer(&K_MAIN, cred, sizeof(cred)),
             body);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    gwf_resp_free(&r);
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 1);
}
END_TEST

START_TEST(test_unknown_and_missing_model)
{
    char cred[160];
    char body[512];
    char marker[GWF_MARKER_MAX];
    const char *bearer = gwf_bearer(&K_MAIN, cred, sizeof(cred));
    int64_t rows = usage_rows();
    gwf_resp_t r;

    gwf_marker(marker, sizeof(marker));
    chat_body(body, sizeof(body), "gpt-5-nope", marker, NULL, false, NULL);
    gwf_post(&W, &r, "/v1/chat/completions", bearer, body);
    gwf_assert_error(&r, 404, "model_not_found",
                     "The model 'gpt-5-nope' does not exist or you do not "
                     "have access to it.");
    gwf_resp_free(&r);
    /* An Anthropic model on the OpenAI route is unknown there. */
    chat_body(body, sizeof(body), "claude-3-5-sonnet", marker, NULL, false,
              NULL);
    gwf_post(&W, &r, "/v1/chat/completions", bearer, body);
    gwf_assert_error(&r, 404, "model_not_found",
                     "The model 'claude-3-5-sonnet' does not exist or you do "
                     "not have access to it.");
    gwf_resp_free(&r);
    snprintf(body, sizeof(body), "{\"user\":\"%s\",\"messages\":[]}", marker);
    gwf_post(&W, &r, "/v1/chat/completions", bearer, body);
    gwf_assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "model"));
    gwf_resp_free(&r);
    gwf_post(&W, &r, "/v1/messages", bearer, body);
    gwf_assert_error(&r, 400, "invalid_request", NULL);
    gwf_resp_free(&r);
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 0);
    ck_assert_int_eq(usage_rows(), rows);
}
END_TEST

/* Bodies refused with 400 before anything is forwarded. */
START_TEST(test_bad_bodies)
{
    char body[2048];
    char marker[GWF_MARKER_MAX];
    char cred[160];
    char nest[300];
    gwf_resp_t r;
    int n = 0;

    gwf_marker(marker, sizeof(marker));
    memset(nest, 0, sizeof(nest));
    for (int i = 0; i < 100; i++) {
        nest[i] = '[';
        nest[100 + i] = ']';
    }
    switch (_i) {
    case 0: /* not JSON */
        n = snprintf(body, sizeof(body),
                     "{\"model\":\"gpt-4o\",\"user\":\"%s\"", marker);
        break;
    case 1: /* a duplicate member */
        n = snprintf(body, sizeof(body),
                     "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"model\":"
                     "\"renamed\"}",
                     marker);
        break;
    case 2: /* 100 levels deep */
        n = snprintf(body, sizeof(body),
                     "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"x\":%s}", marker,
                     nest);
        break;
    case 3: /* invalid UTF-8 */
        n = snprintf(
            body, sizeof(body),
            "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"x\":\"\xff\xfe\"}",
            marker);
        break;
    case 4:
        n = snprintf(body, sizeof(body), "{\"model\":42,\"user\":\"%s\"}",
                     marker);
        break;
    case 5:
        n = snprintf(
            body, sizeof(body),
            "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"stream\":\"yes\"}",
            marker);
        break;
    case 6:
        n = snprintf(body, sizeof(body),
                     "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"max_tokens\":"
                     "\"10\"}",
                     marker);
        break;
    default: /* not an object */
        n = snprintf(body, sizeof(body), "[\"gpt-4o\",\"%s\"]", marker);
        break;
    }
    ck_assert(n > 0 && (size_t)n < sizeof(body));
    gwf_post(&W, &r, "/v1/chat/completions",
             gwf_bearer(&K_MAIN, cred, sizeof(cred)), body);
    gwf_assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "Invalid request: "));
    gwf_resp_free(&r);
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 0);
}
END_TEST

START_TEST(test_body_too_large)
{
    static char body[6000];
    char marker[GWF_MARKER_MAX];
    char cred[160];
    const char *bearer = gwf_bearer(&K_MAIN, cred, sizeof(cred));
    gwf_resp_t r;
    int n;

    gwf_marker(marker, sizeof(marker));
    /* 5000 bytes: over max_body_bytes = 4k. */
    n = snprintf(body, sizeof(body),
                 "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"pad\":\"", marker);
    memset(body + n, 'p', 5000 - (size_t)n - 2);
    memcpy(body + 4998, "\"}", 3);
    gwf_post(&W, &r, "/v1/chat/completions", bearer, body);
    gwf_assert_error(&r, 413, "request_too_large", NULL);
    gwf_resp_free(&r);
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 0);
    /* Just under the limit is fine. */
    memcpy(body + 3998, "\"}", 3);
    gwf_post(&W, &r, "/v1/chat/completions", bearer, body);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    gwf_resp_free(&r);
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 1);
}
END_TEST

/*
 * A body declared larger than max_body_bytes is refused with 413 at once,
 * without reading it (docs/configuration.md), and the connection closes.
 */
START_TEST(test_declared_oversized_body_refused_early)
{
    char req[1024];
    gwf_buf_t b = {0};
    int fd;
    int n;

    n = gwf_raw_post(req, sizeof(req), "/v1/chat/completions", K_MAIN.token,
                     "{\"model\":", 100000000);
    fd = gwf_connect(W.gw_port);
    ck_assert_int_ge(fd, 0);
    ck_assert(gwf_send_all(fd, req, (size_t)n));
    ck_assert_msg(gwf_recv_until(fd, &b, "\r\n\r\n", 3000) == 1,
                  "no answer to a 100 MB Content-Length with max_body_bytes "
                  "4k");
    ck_assert_msg(strncmp(b.data, "HTTP/1.1 413 ", 13) == 0, "%s", b.data);
    close(fd);
    gwf_buf_free(&b);
}
END_TEST

/* ---- credential isolation ------------------------------------------------ */

/* Header names that may reach the provider. */
static bool allowed_upstream(const char *name)
{
    static const char *const ok[] = {"host",           "content-type",
                                     "content-length", "user-agent",
                                     "accept",         "authorization",
                                     "x-api-key",      "anthropic-version",
                                     "anthropic-beta", "openai-beta"};

    for (size_t i = 0; i < sizeof(ok) / sizeof(*ok); i++) {
        if (strcmp(name, ok[i]) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Send body to path with the client canary (K_MAIN) in every header form;
 * check what the provider got (echo answer and mock log) and what the
 * client got back. The credential header sent upstream is cred_name.
 */
static void isolation(const char *path, const char *model_json,
                      const char *const *cred_headers, const char *cred_name,
                      const char *cred_value)
{
    char access[GWF_TOKEN_MAX];
    char secret[GWF_TOKEN_MAX];
    char cookie[256];
    char proxy[256];
    char xsecret[256];
    char org[256];
    char proj[256];
    char body[1024];
    char marker[GWF_MARKER_MAX];
    const char *hs[16];
    size_t nh = 0;
    gwf_resp_t r;
    json_t *j;
    json_t *seen;
    json_t *hdrs;
    const char *name;
    json_t *v;

    gwf_split(K_MAIN.token, access, sizeof(access), secret, sizeof(secret));
    snprintf(cookie, sizeof(cookie), "Cookie: session=%s; kg=%s", K_MAIN.token,
             secret);
    snprintf(proxy, sizeof(proxy), "Proxy-Authorization: Bearer %s",
             K_MAIN.token);
    snprintf(xsecret, sizeof(xsecret), "X-Secret: %s", K_MAIN.token);
    snprintf(org, sizeof(org), "OpenAI-Organization: org-%s", secret);
    snprintf(proj, sizeof(proj), "OpenAI-Project: proj-%s", secret);
    for (size_t i = 0; cred_headers[i] != NULL; i++) {
        hs[nh++] = cred_headers[i];
    }
    hs[nh++] = "Content-Type: application/json";
    hs[nh++] = cookie;
    hs[nh++] = proxy;
    hs[nh++] = "Connection: X-Secret";
    hs[nh++] = xsecret;
    hs[nh++] = org;
    hs[nh++] = proj;
    hs[nh++] = "OpenAI-Beta: assistants=v2";
    hs[nh++] = "X-Forwarded-Host: evil.example";
    hs[nh] = NULL;
    gwf_marker(marker, sizeof(marker));
    snprintf(body, sizeof(body),
             "{%s,\"max_tokens\":16,\"user\":\"%s\",\"metadata\":{\"user_id\":"
             "\"%s\"},\"mock\":{\"mode\":\"echo\"}}",
             model_json, marker, marker);
    gwf_http(&W, &r, "POST", path, hs, body, 0);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);

    /* What the client got: the provider credential masked everywhere. */
    ck_assert_ptr_null(strstr(r.body, GWF_PROVIDER_CANARY));
    ck_assert_ptr_null(strstr(r.headers, GWF_PROVIDER_CANARY));
    j = gwf_resp_json(&r);
    hdrs = json_object_get(j, "headers");
    ck_assert(json_is_object(hdrs));
    ck_assert_ptr_nonnull(json_object_get(hdrs, cred_name));
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(hdrs, cred_name)), "****"));
    json_decref(j);

    /* What the provider got: its own credential and allowlisted headers. */
    seen = gwf_log_request(W.mock_log, marker);
    ck_assert_ptr_nonnull(seen);
    hdrs = json_object_get(seen, "headers");
    json_object_foreach(hdrs, name, v)
    {
        const char *val = json_string_value(v);

        ck_assert_msg(allowed_upstream(name), "header %s reached the provider",
                      name);
        ck_assert_msg(val && strstr(val, secret) == NULL,
                      "client secret reached the provider in %s", name);
    }
    ck_assert_str_eq(json_string_value(json_object_get(hdrs, cred_name)),
                     cred_value);
    ck_assert_ptr_null(json_object_get(
        hdrs, strcmp(cred_name, "x-api-key") ? "x-api-key" : "authorization"));
    ck_assert_str_eq(json_string_value(json_object_get(hdrs, "openai-beta")),
                     "assistants=v2");
    json_decref(seen);
    gwf_assert_absent(W.mock_log, secret, "the client secret");
    gwf_assert_absent(W.mock_log, access, "the client access key");
    gwf_resp_free(&r);
}

START_TEST(test_isolation_openai)
{
    char bearer[160];
    char xkey[160];
    const char *creds[] = {gwf_bearer(&K_MAIN, bearer, sizeof(bearer)), xkey,
                           NULL};

    snprintf(xkey, sizeof(xkey), "x-api-key: %s", K_MAIN.token);
    isolation("/v1/chat/completions", "\"model\":\"gpt-4o\"", creds,
              "authorization", "Bearer " GWF_PROVIDER_CANARY);
}
END_TEST

START_TEST(test_isolation_anthropic)
{
    char bearer[160];
    char xkey[160];
    const char *creds[] = {xkey, gwf_bearer(&K_MAIN, bearer, sizeof(bearer)),
                           "anthropic-version: 2023-06-01",
                           "anthropic-beta: tools-2024-04-04", NULL};
    json_t *seen;

    snprintf(xkey, sizeof(xkey), "x-api-key: %s", K_MAIN.token);
    isolation("/v1/messages", "\"model\":\"claude-3-5-sonnet\"", creds,
              "x-api-key", GWF_PROVIDER_CANARY);
    /* The vendor headers passed through. */
    seen = gwf_log_request(W.mock_log, "tools-2024-04-04");
    ck_assert_ptr_nonnull(seen);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(seen, "headers"),
                                          "anthropic-version")),
        "2023-06-01");
    json_decref(seen);
}
END_TEST

START_TEST(test_isolation_basic_and_pair)
{
    char access[GWF_TOKEN_MAX];
    char secret[GWF_TOKEN_MAX];
    char basic[256];
    char h[300];
    const char *creds[] = {h, NULL};

    gwf_split(K_MAIN.token, access, sizeof(access), secret, sizeof(secret));
    snprintf(h, sizeof(h), "Authorization: %s",
             gwf_basic(K_MAIN.token, basic, sizeof(basic)));
    isolation("/v1/chat/completions", "\"model\":\"gpt-4o\"", creds,
              "authorization", "Bearer " GWF_PROVIDER_CANARY);
    gwf_assert_absent(W.mock_log, basic + 6, "the client's Basic credential");
    snprintf(h, sizeof(h), "Authorization: Bearer %s:%s", access, secret);
    isolation("/v1/chat/completions", "\"model\":\"gpt-4o\"", creds,
              "authorization", "Bearer " GWF_PROVIDER_CANARY);
}
END_TEST

/* The provider echoes its own credential back: the client never sees it. */
START_TEST(test_provider_credential_masked)
{
    char cred[160];
    char body[512];
    char marker[GWF_MARKER_MAX];
    gwf_resp_t r;

    gwf_marker(marker, sizeof(marker));
    chat_body(body, sizeof(body), "gpt-4o", marker, "{\"mode\":\"echo\"}",
              false, NULL);
    gwf_post(&W, &r, "/v1/chat/completions",
             gwf_bearer(&K_MAIN, cred, sizeof(cred)), body);
    ck_assert_int_eq(r.status, 200);
    /* The mock did send it back ... */
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 1);
    ck_assert_int_ge(gwf_log_count(W.mock_log, GWF_PROVIDER_CANARY), 1);
    /* ... and keygate masked it. */
    ck_assert_ptr_null(strstr(r.body, GWF_PROVIDER_CANARY));
    ck_assert_ptr_null(strstr(r.body, GWF_PROVIDER_CANARY + 10));
    ck_assert_ptr_nonnull(strstr(r.body, "Bearer *****"));
    ck_assert_ptr_null(strstr(r.headers, GWF_PROVIDER_CANARY));
    gwf_resp_free(&r);
}
END_TEST

/* ---- expiry and the leak sweep (last: they wait or read everything) ------ */

START_TEST(test_expired_key)
{
    char cred[160];
    char want[1024];
    int64_t deadline;
    gwf_resp_t r;

    /* expires_at has second resolution: wait past it with a margin. */
    while (time(NULL) < g_expiring_made + EXPIRING_TTL_S + 2) {
        gwf_sleep_ms(100);
    }
    deadline = gwf_now_ms() + 3000;
    gwf_source_ip = "127.0.2.1";
    for (;;) {
        gwf_get(&W, &r, "/v1/key", gwf_bearer(&K_EXPIRING, cred, sizeof(cred)));
        if (r.status != 200 || gwf_now_ms() > deadline) {
            break;
        }
        gwf_resp_free(&r);
        gwf_sleep_ms(100);
    }
    gwf_source_ip = NULL;
    /* purge_interval is 1h here, so the key is expired, not yet revoked. */
    gwf_assert_error(&r, 401, "expired_api_key", GWF_MSG_EXPIRED);
    body_401(want, sizeof(want), GWF_MSG_EXPIRED, "expired_api_key");
    assert_body_is(&r, want);
    gwf_resp_free(&r);
    gwf_source_ip = "127.0.2.2";
    gwf_post(&W, &r, "/v1/chat/completions",
             gwf_bearer(&K_EXPIRING, cred, sizeof(cred)),
             "{\"model\":\"gpt-4o\"}");
    gwf_source_ip = NULL;
    gwf_assert_error(&r, 401, "expired_api_key", GWF_MSG_EXPIRED);
    gwf_resp_free(&r);
}
END_TEST

START_TEST(test_leak_sweep)
{
    const gwf_key_t *keys[] = {&K_MAIN, &K_OTHER, &K_DISABLED, &K_REVOKED,
                               &K_EXPIRING};
    char wal[PATH_MAX + 8];
    char shm[PATH_MAX + 8];
    char journal_a[PATH_MAX + 16];
    char journal_b[PATH_MAX + 16];
    char basic[256];

    snprintf(wal, sizeof(wal), "%s-wal", W.db);
    snprintf(shm, sizeof(shm), "%s-shm", W.db);
    snprintf(journal_a, sizeof(journal_a), "%s-usage-a", W.db);
    snprintf(journal_b, sizeof(journal_b), "%s-usage-b", W.db);
    ck_assert_msg(gwf_pid_alive(W.gw_pid), "the daemon died during the suite");
    for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
        char access[GWF_TOKEN_MAX];
        char secret[GWF_TOKEN_MAX];

        gwf_split(keys[i]->token, access, sizeof(access), secret,
                  sizeof(secret));
        gwf_assert_absent(W.gw_err, secret, "a client secret");
        gwf_assert_absent(W.gw_out, secret, "a client secret");
        gwf_assert_absent(W.mock_log, secret, "a client secret");
        gwf_assert_absent(W.db, secret, "a client secret");
        gwf_assert_absent(wal, secret, "a client secret");
        gwf_assert_absent(shm, secret, "a client secret");
        gwf_assert_absent(journal_a, secret, "a client secret");
        gwf_assert_absent(journal_b, secret, "a client secret");
    }
    gwf_basic(K_MAIN.token, basic, sizeof(basic));
    gwf_assert_absent(W.gw_err, basic + 6, "a Basic credential");
    gwf_assert_absent(W.mock_log, basic + 6, "a Basic credential");
    gwf_assert_absent(W.gw_err, GWF_PROVIDER_CANARY, "the provider key");
    gwf_assert_absent(W.gw_out, GWF_PROVIDER_CANARY, "the provider key");
    gwf_assert_absent(W.db, GWF_PROVIDER_CANARY, "the provider key");
    gwf_assert_absent(wal, GWF_PROVIDER_CANARY, "the provider key");
    gwf_assert_absent(journal_a, GWF_PROVIDER_CANARY, "the provider key");
    gwf_assert_absent(journal_b, GWF_PROVIDER_CANARY, "the provider key");
    /* The daemon's usage journal is private to its user. */
    ck_assert_int_eq(kg_harness_file_mode(journal_a), 0600);
    ck_assert_int_eq(kg_harness_file_mode(journal_b), 0600);
    /* The sweep looked at real logs: the access lines are there. */
    ck_assert_int_gt(gwf_log_count(W.gw_err, " info access request_id=req_"),
                     20);
}
END_TEST

static Suite *gateway_suite(void)
{
    Suite *s = suite_create("gateway");
    TCase *tc = tcase_create("api");

    tcase_add_unchecked_fixture(tc, setup_api, teardown_api);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_expiring_key_works_before_expiry);
    tcase_add_loop_test(tc, test_credential_forms, 0, N_FORMS);
    tcase_add_loop_test(tc, test_invalid_credentials_identical, 0, N_BAD);
    tcase_add_test(tc, test_missing_credential);
    tcase_add_test(tc, test_oversized_headers);
    tcase_add_loop_test(tc, test_oversized_headers_json_up_to_cap, 0,
                        N_HDR_CASES);
    tcase_add_test(tc, test_request_ids_unique);
    tcase_add_test(tc, test_models);
    tcase_add_test(tc, test_key_info);
    tcase_add_test(tc, test_last_used_on_every_request);
    tcase_add_test(tc, test_unknown_route_and_method);
    tcase_add_test(tc, test_chat_json);
    tcase_add_test(tc, test_chat_stream_without_include_usage);
    tcase_add_test(tc, test_chat_stream_with_include_usage);
    tcase_add_loop_test(tc, test_anthropic, 0, 4);
    tcase_add_test(tc, test_embeddings);
    tcase_add_test(tc, test_model_rewrite);
    tcase_add_test(tc, test_provider_model_routing);
    tcase_add_test(tc, test_unknown_and_missing_model);
    tcase_add_loop_test(tc, test_bad_bodies, 0, 8);
    tcase_add_test(tc, test_body_too_large);
    tcase_add_test(tc, test_declared_oversized_body_refused_early);
    tcase_add_test(tc, test_isolation_openai);
    tcase_add_test(tc, test_isolation_anthropic);
    tcase_add_test(tc, test_isolation_basic_and_pair);
    tcase_add_test(tc, test_provider_credential_masked);
    tcase_add_test(tc, test_expired_key);
    tcase_add_test(tc, test_leak_sweep);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(gateway_suite());
}
