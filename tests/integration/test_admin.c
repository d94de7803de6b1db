/* Admin listener tests: tokens, authorization, resources, sessions, load. */
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway_fixture.h"

#define ADMIN_TOKEN_MAX 96
#define CHANGE_BOUND_MS 1000 /* an API change reaches the gateway "at once" */
#define LOAD_THREADS    2
#define LOAD_REQUESTS   120 /* per thread */
#define LOAD_WRITES     30

static gwf_t W;
static char T_ADMIN[ADMIN_TOKEN_MAX];   /* read-write */
static char T_RO[ADMIN_TOKEN_MAX];      /* read-only */
static char T_EXPIRED[ADMIN_TOKEN_MAX]; /* --ttl 1s, expired by the tests */
static char T_REVOKED[ADMIN_TOKEN_MAX]; /* revoked with the CLI */
static char T_REVOKED_ID[GWF_ID_MAX];
static gwf_key_t K_CLIENT;

/* keygate --json admin-tokens create --name NAME [extra] → token (and id). */
static void admin_token(gwf_t *f, char *token, char *id, const char *name,
                        const char *extra, const char *extra2)
{
    kg_harness_result_t r = {0};
    json_t *j;
    int rc;

    if (extra2 != NULL) {
        rc = gwf_kg(f, &r, "--json", "admin-tokens", "create", "--name", name,
                    extra, extra2, NULL);
    } else {
        rc = gwf_kg(f, &r, "--json", "admin-tokens", "create", "--name", name,
                    extra, NULL);
    }
    ck_assert_msg(rc == 0, "admin-tokens create: %s", r.err);
    j = json_loads(r.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    snprintf(token, ADMIN_TOKEN_MAX, "%s",
             json_string_value(json_object_get(j, "token")));
    if (id != NULL) {
        snprintf(id, GWF_ID_MAX, "%s",
                 json_string_value(
                     json_object_get(json_object_get(j, "adminToken"), "id")));
    }
    ck_assert_uint_gt(strlen(token), 20);
    json_decref(j);
    kg_harness_result_free(&r);
}

static void setup_admin(void)
{
    kg_harness_result_t r = {0};

    gwf_root_new("kg-admin");
    gwf_init(&W, false);
    gwf_config(&W, NULL, NULL, NULL);
    gwf_init_store(&W);
    gwf_key_create(&W, &K_CLIENT, "client-key", NULL);
    admin_token(&W, T_ADMIN, NULL, "ops", NULL, NULL);
    admin_token(&W, T_RO, NULL, "viewer", "--read-only", NULL);
    admin_token(&W, T_EXPIRED, NULL, "short", "--ttl", "1s");
    admin_token(&W, T_REVOKED, T_REVOKED_ID, "gone", NULL, NULL);
    ck_assert_int_eq(
        gwf_kg(&W, &r, "admin-tokens", "revoke", T_REVOKED_ID, NULL), 0);
    kg_harness_result_free(&r);
    gwf_start(&W);
    sleep(1); /* T_EXPIRED is past its second */
}

static void teardown_admin(void)
{
    bool clean = gwf_stop_checked(&W);

    gwf_free(&W);
    gwf_root_free();
    ck_assert_msg(clean, "the shared daemon did not stop cleanly");
}

/* One admin request with a Bearer token (NULL: none) and a JSON body. */
static long adm(gwf_resp_t *r, const char *method, const char *path,
                const char *token, const char *body)
{
    char auth[160];
    const char *headers[3] = {NULL, NULL, NULL};
    size_t n = 0;

    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        headers[n++] = auth;
    }
    if (body != NULL) {
        headers[n++] = "Content-Type: application/json";
    }
    gwf_admin_http(&W, r, method, path, headers, body, 0);
    ck_assert_msg(r->curl_rc == CURLE_OK, "curl %d on %s %s", r->curl_rc,
                  method, path);
    return r->status;
}

/* adm() and the body as JSON (new); the status must be want. */
static json_t *adm_json(const char *method, const char *path, const char *token,
                        const char *body, long want)
{
    gwf_resp_t r;
    json_t *j;

    adm(&r, method, path, token, body);
    ck_assert_msg(r.status == want, "%s %s: status %ld, want %ld: %.300s",
                  method, path, r.status, want, r.body);
    j = r.body_len ? gwf_resp_json(&r) : json_object();
    gwf_resp_free(&r);
    return j;
}

/* The error body of keygate with the expected status and param. */
static void assert_admin_error(const gwf_resp_t *r, long status,
                               const char *param)
{
    json_t *j = gwf_resp_json(r);
    json_t *e = json_object_get(j, "error");

    ck_assert_msg(r->status == status, "status %ld, want %ld: %.300s",
                  r->status, status, r->body);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(e, "message")));
    ck_assert_ptr_nonnull(json_string_value(json_object_get(e, "code")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), status);
    if (param != NULL) {
        ck_assert_msg(json_is_string(json_object_get(e, "param")),
                      "no param in %.300s", r->body);
        ck_assert_str_eq(json_string_value(json_object_get(e, "param")), param);
    }
    json_decref(j);
}

/* The gateway's answer to /v1/models with a client token. */
static long gateway_status(const char *token, const char *source_ip)
{
    char cred[160];
    gwf_resp_t r;
    long status;

    snprintf(cred, sizeof(cred), "Authorization: Bearer %s", token);
    gwf_source_ip = source_ip;
    gwf_get(&W, &r, "/v1/models", cred);
    gwf_source_ip = NULL;
    status = r.status;
    gwf_resp_free(&r);
    return status;
}

/* Poll until the gateway answers want for token, at most bound_ms. */
static bool gateway_reaches(const char *token, long want, int bound_ms,
                            const char *source_ip)
{
    int64_t deadline = gwf_now_ms() + bound_ms;

    do {
        if (gateway_status(token, source_ip) == want) {
            return true;
        }
        gwf_sleep_ms(20);
    } while (gwf_now_ms() < deadline);
    return false;
}

/* ---- authorization ----------------------------------------------------- */

typedef struct auth_row {
    const char *what;
    const char *header; /* a whole header line, or NULL */
    long read_status;   /* GET /admin/v1/keys */
    long write_status;  /* POST /admin/v1/workspaces */
} auth_row_t;

static char H_ADMIN[160];
static char H_RO[160];
static char H_CLIENT_BEARER[160];
static char H_CLIENT_XKEY[160];
static char H_EXPIRED[160];
static char H_REVOKED[160];

static const auth_row_t auth_rows[] = {
    {"no credential", NULL, 401, 401},
    {"admin token", H_ADMIN, 200, 201},
    {"read-only token", H_RO, 200, 403},
    {"client key as Bearer", H_CLIENT_BEARER, 401, 401},
    {"client key as x-api-key", H_CLIENT_XKEY, 401, 401},
    {"expired admin token", H_EXPIRED, 401, 401},
    {"revoked admin token", H_REVOKED, 401, 401},
    {"malformed", "Authorization: Bearer kgadm_nope", 401, 401},
    {"Basic", "Authorization: Basic a2dhZG06eA==", 401, 401},
};

START_TEST(test_authorization_matrix)
{
    const auth_row_t *row = &auth_rows[_i];
    const char *headers[3] = {row->header, NULL, NULL};
    char body[128];
    gwf_resp_t r;

    snprintf(H_ADMIN, sizeof(H_ADMIN), "Authorization: Bearer %s", T_ADMIN);
    snprintf(H_RO, sizeof(H_RO), "Authorization: Bearer %s", T_RO);
    snprintf(H_CLIENT_BEARER, sizeof(H_CLIENT_BEARER),
             "Authorization: Bearer %s", K_CLIENT.token);
    snprintf(H_CLIENT_XKEY, sizeof(H_CLIENT_XKEY), "x-api-key: %s",
             K_CLIENT.token);
    snprintf(H_EXPIRED, sizeof(H_EXPIRED), "Authorization: Bearer %s",
             T_EXPIRED);
    snprintf(H_REVOKED, sizeof(H_REVOKED), "Authorization: Bearer %s",
             T_REVOKED);
    /* Each row from its own address: refusals count toward the throttle. */
    char ip[32];
    snprintf(ip, sizeof(ip), "127.0.7.%d", 10 + _i);
    gwf_source_ip = ip;
    gwf_admin_http(&W, &r, "GET", "/admin/v1/keys", headers, NULL, 0);
    ck_assert_msg(r.status == row->read_status, "%s: read %ld, want %ld",
                  row->what, r.status, row->read_status);
    if (r.status == 401) {
        char www[128];

        assert_admin_error(&r, 401, NULL);
        ck_assert_int_eq(
            gwf_resp_header(&r, "WWW-Authenticate", www, sizeof(www)), 1);
    }
    gwf_resp_free(&r);
    headers[row->header ? 1 : 0] = "Content-Type: application/json";
    snprintf(body, sizeof(body), "{\"name\":\"matrix-%d\"}", _i);
    gwf_admin_http(&W, &r, "POST", "/admin/v1/workspaces", headers, body, 0);
    gwf_source_ip = NULL;
    ck_assert_msg(r.status == row->write_status, "%s: write %ld, want %ld: %s",
                  row->what, r.status, row->write_status, r.body);
    if (r.status >= 400) {
        assert_admin_error(&r, r.status, NULL);
    }
    gwf_resp_free(&r);
}
END_TEST

/* An admin token is never a client key on the public listener. */
START_TEST(test_admin_token_refused_by_gateway)
{
    char cred[160];
    gwf_resp_t r;

    snprintf(cred, sizeof(cred), "Authorization: Bearer %s", T_ADMIN);
    gwf_source_ip = "127.0.7.90";
    gwf_get(&W, &r, "/v1/models", cred);
    gwf_assert_error(&r, 401, "invalid_api_key", GWF_MSG_INVALID);
    gwf_resp_free(&r);
    snprintf(cred, sizeof(cred), "x-api-key: %s", T_ADMIN);
    gwf_get(&W, &r, "/v1/models", cred);
    gwf_source_ip = NULL;
    gwf_assert_error(&r, 401, "invalid_api_key", GWF_MSG_INVALID);
    gwf_resp_free(&r);
}
END_TEST

/* Ten failed admin authentications from one address block it a while,
 * even for a good token; other addresses are not affected. */
START_TEST(test_failed_auth_throttled)
{
    const char *bad[] = {"Authorization: Bearer kgadm_x", NULL};
    const char *good[] = {H_ADMIN, NULL};
    char retry[16];
    gwf_resp_t r;

    snprintf(H_ADMIN, sizeof(H_ADMIN), "Authorization: Bearer %s", T_ADMIN);
    gwf_source_ip = "127.0.7.200";
    for (int i = 0; i < 10; i++) {
        gwf_admin_http(&W, &r, "GET", "/admin/v1/keys", bad, NULL, 0);
        ck_assert_int_eq(r.status, 401);
        gwf_resp_free(&r);
    }
    gwf_admin_http(&W, &r, "GET", "/admin/v1/keys", good, NULL, 0);
    ck_assert_int_eq(r.status, 429);
    ck_assert_int_eq(gwf_resp_header(&r, "Retry-After", retry, sizeof(retry)),
                     1);
    {
        char *end = NULL;
        long secs = strtol(retry, &end, 10);

        ck_assert_msg(end != retry && *end == '\0', "Retry-After: %s", retry);
        ck_assert_int_gt(secs, 0);
        ck_assert_int_le(secs, 3600);
    }
    gwf_resp_free(&r);
    gwf_source_ip = "127.0.7.201";
    gwf_admin_http(&W, &r, "GET", "/admin/v1/keys", good, NULL, 0);
    gwf_source_ip = NULL;
    ck_assert_int_eq(r.status, 200);
    gwf_resp_free(&r);
}
END_TEST

/* ---- keys -------------------------------------------------------------- */

START_TEST(test_key_lifecycle_reaches_gateway)
{
    json_t *j;
    json_t *k; /* borrowed */
    char token[ADMIN_TOKEN_MAX];
    char token2[ADMIN_TOKEN_MAX];
    char id[GWF_ID_MAX];
    char path[128];
    gwf_resp_t r;

    j = adm_json("POST", "/admin/v1/keys", T_ADMIN,
                 "{\"name\":\"api-key\",\"description\":\"made over HTTP\","
                 "\"usageLimit\":\"25.00\",\"period\":\"day\","
                 "\"periodLimit\":\"5.00\",\"rpm\":600,\"metadata\":"
                 "{\"team\":\"a\"},\"ttl\":\"30d\"}",
                 201);
    snprintf(token, sizeof(token), "%s",
             json_string_value(json_object_get(j, "token")));
    k = json_object_get(j, "key");
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(k, "id")));
    ck_assert_str_eq(json_string_value(json_object_get(k, "usageLimit")),
                     "25.00");
    ck_assert_str_eq(json_string_value(json_object_get(k, "periodLimit")),
                     "5.00");
    ck_assert_int_eq(json_integer_value(json_object_get(k, "rpm")), 600);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(k, "metadata"), "team")),
                     "a");
    json_decref(j);
    ck_assert_int_eq(gateway_status(token, NULL), 200);

    /* The token is shown once: never again in a read. */
    snprintf(path, sizeof(path), "/admin/v1/keys/%s", id);
    adm(&r, "GET", path, T_ADMIN, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(strstr(r.body, token + 16));
    gwf_resp_free(&r);

    j = adm_json("PATCH", path, T_ADMIN, "{\"rpm\":null,\"name\":\"renamed\"}",
                 200);
    ck_assert(json_is_null(json_object_get(j, "rpm")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "renamed");
    json_decref(j);

    snprintf(path, sizeof(path), "/admin/v1/keys/%s/disable", id);
    json_decref(adm_json("POST", path, T_ADMIN, NULL, 200));
    ck_assert_msg(gateway_reaches(token, 401, CHANGE_BOUND_MS, "127.0.7.101"),
                  "disabled key still works");
    snprintf(path, sizeof(path), "/admin/v1/keys/%s/enable", id);
    json_decref(adm_json("POST", path, T_ADMIN, NULL, 200));
    ck_assert(gateway_reaches(token, 200, CHANGE_BOUND_MS, NULL));

    snprintf(path, sizeof(path), "/admin/v1/keys/%s/rotate", id);
    j = adm_json("POST", path, T_ADMIN, "{\"grace\":\"0s\"}", 200);
    snprintf(token2, sizeof(token2), "%s",
             json_string_value(json_object_get(j, "token")));
    json_decref(j);
    ck_assert_str_ne(token, token2);
    ck_assert(gateway_reaches(token, 401, CHANGE_BOUND_MS, "127.0.7.102"));
    ck_assert_int_eq(gateway_status(token2, NULL), 200);

    /* Revoke: refused by the gateway at once (no 200 ms refresh wait). */
    snprintf(path, sizeof(path), "/admin/v1/keys/%s/revoke", id);
    json_decref(adm_json("POST", path, T_ADMIN, NULL, 200));
    ck_assert_int_eq(gateway_status(token2, "127.0.7.103"), 401);
    /* Revoking twice says so. */
    adm(&r, "POST", path, T_ADMIN, NULL);
    assert_admin_error(&r, 409, NULL);
    ck_assert_ptr_nonnull(strstr(r.body, "already revoked"));
    gwf_resp_free(&r);

    /* Every change names the admin token that made it. */
    ck_assert_int_ge(gwf_sql_int(&W,
                                 "SELECT count(*) FROM audit_events WHERE "
                                 "object_id = ?1 AND actor LIKE 'admin:%ops)'",
                                 id),
                     6);

    snprintf(path, sizeof(path), "/admin/v1/keys/%s", id);
    adm(&r, "DELETE", path, T_ADMIN, NULL);
    ck_assert_int_eq(r.status, 204);
    gwf_resp_free(&r);
    adm(&r, "GET", path, T_ADMIN, NULL);
    assert_admin_error(&r, 404, NULL);
    gwf_resp_free(&r);
}
END_TEST

/* Seven keys in pages of three: every key once, and the last page says so. */
START_TEST(test_key_paging)
{
    char seen[8][GWF_ID_MAX];
    char path[256];
    char cursor[128] = "";
    int total = 0;
    int pages = 0;

    for (int i = 0; i < 7; i++) {
        char body[64];

        snprintf(body, sizeof(body), "{\"name\":\"Page-Key-%d\"}", i);
        json_decref(adm_json("POST", "/admin/v1/keys", T_ADMIN, body, 201));
    }
    do {
        json_t *j;
        json_t *data; /* borrowed */
        json_t *next; /* borrowed */

        snprintf(path, sizeof(path), "/admin/v1/keys?q=page-key&limit=3%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        j = adm_json("GET", path, T_RO, NULL, 200);
        data = json_object_get(j, "data");
        ck_assert_int_le(json_array_size(data), 3);
        for (size_t i = 0; i < json_array_size(data); i++) {
            const char *id = json_string_value(
                json_object_get(json_array_get(data, i), "id"));

            for (int s = 0; s < total; s++) {
                ck_assert_str_ne(seen[s], id);
            }
            ck_assert_int_lt(total, 8);
            snprintf(seen[total++], GWF_ID_MAX, "%s", id);
        }
        next = json_object_get(j, "nextCursor");
        cursor[0] = '\0';
        if (json_is_string(next)) {
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        }
        json_decref(j);
        pages++;
    } while (cursor[0] != '\0' && pages < 10);
    ck_assert_int_eq(total, 7);
    ck_assert_int_eq(pages, 3);
}
END_TEST

/* ---- bad input --------------------------------------------------------- */

typedef struct bad_row {
    const char *method;
    const char *path;
    const char *body;
    long status;
    const char *param; /* NULL: no param expected */
} bad_row_t;

static const bad_row_t bad_rows[] = {
    {"POST", "/admin/v1/keys", "{\"name\":5}", 400, "name"},
    {"POST", "/admin/v1/keys", "{}", 400, "name"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"usageLimit\":5}", 400,
     "usageLimit"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"usageLimit\":\"-1\"}", 400,
     "usageLimit"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"rpm\":-1}", 400, "rpm"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"tpm\":\"a\"}", 400, "tpm"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"maxConcurrent\":1.5}", 400,
     "maxConcurrent"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"period\":\"day\"}", 400,
     "periodLimit"},
    {"POST", "/admin/v1/keys",
     "{\"name\":\"x\",\"period\":\"year\",\"periodLimit\":\"1\"}", 400,
     "period"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"expiresAt\":\"soon\"}", 400,
     "expiresAt"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"ttl\":\"400d\"}", 400,
     "expiresAt"},
    {"POST", "/admin/v1/keys",
     "{\"name\":\"x\",\"ttl\":\"1d\",\"expiresAt\":null}", 400, "expiresAt"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"rules\":{\"bogus\":[]}}", 400,
     "rules"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"rules\":[]}", 400, "rules"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"metadata\":\"m\"}", 400,
     "metadata"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"workspace\":\"nope\"}", 404,
     "workspace"},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"secret\":\"s\"}", 400,
     "secret"},
    {"POST", "/admin/v1/keys", "[1]", 400, NULL},
    {"POST", "/admin/v1/keys", "{\"name\":\"x\",\"name\":\"y\"}", 400, NULL},
    {"POST", "/admin/v1/keys", "{\"name\":", 400, NULL},
    {"POST", "/admin/v1/workspaces", "{\"name\":\"w\",\"mode\":\"free\"}", 400,
     "mode"},
    {"POST", "/admin/v1/workspaces", "{\"name\":\"\"}", 400, "name"},
    {"POST", "/admin/v1/workspaces", "{\"name\":\"default\"}", 409, NULL},
    {"PATCH", "/admin/v1/workspaces/default", "{\"credits\":\"1\"}", 400,
     "credits"},
    {"POST", "/admin/v1/workspaces/default/credits", "{\"amount\":\"x\"}", 400,
     "amount"},
    {"POST", "/admin/v1/workspaces/default/credits", "{\"amount\":10}", 400,
     "amount"},
    {"POST", "/admin/v1/workspaces/default/credits", "{\"amount\":\"-999999\"}",
     400, "amount"},
    {"POST", "/admin/v1/workspaces/nope/credits", "{\"amount\":\"1\"}", 404,
     NULL},
    {"PUT", "/admin/v1/workspaces/default/credentials/nope",
     "{\"credential\":\"sk-abcdefghijklmnop\"}", 404, "provider"},
    {"PUT", "/admin/v1/workspaces/default/credentials/mock",
     "{\"credential\":5}", 400, "credential"},
    {"PUT", "/admin/v1/workspaces/default/credentials/mock",
     "{\"key\":\"sk-x\"}", 400, "key"},
    {"DELETE", "/admin/v1/workspaces/default/credentials/mockant", NULL, 404,
     NULL},
    {"GET", "/admin/v1/keys?status=lost", NULL, 400, "status"},
    {"GET", "/admin/v1/keys?limit=0", NULL, 400, "limit"},
    {"GET", "/admin/v1/keys?limit=501", NULL, 400, "limit"},
    {"GET", "/admin/v1/keys?cursor=AAAA", NULL, 400, "cursor"},
    {"GET", "/admin/v1/keys?workspace=nope", NULL, 404, "workspace"},
    {"GET", "/admin/v1/keys?wrkspace=default", NULL, 400, "wrkspace"},
    {"GET", "/admin/v1/keys/AAAAAAAAAAAA", NULL, 404, NULL},
    {"POST", "/admin/v1/keys/AAAAAAAAAAAA/rotate", "{\"grace\":\"x\"}", 400,
     "grace"},
    {"POST", "/admin/v1/keys/AAAAAAAAAAAA/disable", "{\"why\":\"x\"}", 400,
     "why"},
    {"GET", "/admin/v1/nothing", NULL, 404, NULL},
    {"PUT", "/admin/v1/keys", "{}", 405, NULL},
};

START_TEST(test_bad_input)
{
    const bad_row_t *row = &bad_rows[_i];
    gwf_resp_t r;

    adm(&r, row->method, row->path, T_ADMIN, row->body);
    assert_admin_error(&r, row->status, row->param);
    gwf_resp_free(&r);
}
END_TEST

/* A body past [admin] max_body_bytes → 413; a non-JSON type → 400. */
START_TEST(test_body_bounds)
{
    const char *form[] = {
        NULL, "Content-Type: application/x-www-form-urlencoded", NULL};
    char auth[160];
    size_t big = (1u << 20) + 16;
    char *body = malloc(big + 1);
    gwf_resp_t r;

    ck_assert_ptr_nonnull(body);
    memset(body, 'a', big);
    body[big] = '\0';
    adm(&r, "POST", "/admin/v1/keys", T_ADMIN, body);
    ck_assert_int_eq(r.status, 413);
    gwf_resp_free(&r);
    free(body);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", T_ADMIN);
    form[0] = auth;
    gwf_admin_http(&W, &r, "POST", "/admin/v1/keys", form, "name=x", 0);
    assert_admin_error(&r, 400, NULL);
    gwf_resp_free(&r);
}
END_TEST

/* ---- workspaces -------------------------------------------------------- */

#define WS_CREDENTIAL "sk-wscred-CANARY-1d9a7e03b5c24f68"

START_TEST(test_workspace_resources)
{
    json_t *j;
    gwf_resp_t r;

    j = adm_json("POST", "/admin/v1/workspaces", T_ADMIN,
                 "{\"name\":\"team-b\",\"mode\":\"hybrid\"}", 201);
    ck_assert_str_eq(json_string_value(json_object_get(j, "mode")), "hybrid");
    json_decref(j);
    j = adm_json("GET", "/admin/v1/workspaces/team-b", T_RO, NULL, 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "creditsBalance")),
                     "0.00");
    json_decref(j);
    j = adm_json("PATCH", "/admin/v1/workspaces/team-b", T_ADMIN,
                 "{\"mode\":\"credits\",\"rules\":{\"deny_models\":[\"x*\"]}}",
                 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "mode")), "credits");
    json_decref(j);
    j = adm_json("POST", "/admin/v1/workspaces/team-b/credits", T_ADMIN,
                 "{\"amount\":\"12.50\",\"note\":\"top-up\"}", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "creditsBalance")),
                     "12.50");
    json_decref(j);
    j = adm_json("POST", "/admin/v1/workspaces/team-b/credits", T_ADMIN,
                 "{\"amount\":\"-2.50\"}", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "creditsBalance")),
                     "10.00");
    json_decref(j);

    /* A credential goes in and never comes out. */
    adm(&r, "PUT", "/admin/v1/workspaces/team-b/credentials/mock", T_ADMIN,
        "{\"credential\":\"" WS_CREDENTIAL "\"}");
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(strstr(r.body, "CANARY"));
    ck_assert_ptr_nonnull(strstr(r.body, "4f68"));
    gwf_resp_free(&r);
    adm(&r, "GET", "/admin/v1/workspaces/team-b/credentials", T_RO, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(strstr(r.body, "CANARY"));
    ck_assert_ptr_nonnull(strstr(r.body, "\"mock\""));
    gwf_resp_free(&r);
    adm(&r, "DELETE", "/admin/v1/workspaces/team-b/credentials/mock", T_ADMIN,
        NULL);
    ck_assert_int_eq(r.status, 204);
    gwf_resp_free(&r);
    adm(&r, "DELETE", "/admin/v1/workspaces/team-b/credentials/mock", T_ADMIN,
        NULL);
    ck_assert_int_eq(r.status, 404);
    gwf_resp_free(&r);
    j = adm_json("GET", "/admin/v1/workspaces", T_RO, NULL, 200);
    ck_assert_int_ge(json_array_size(json_object_get(j, "data")), 2);
    json_decref(j);
    gwf_assert_absent(W.gw_err, "CANARY", "the daemon's log");
}
END_TEST

/* ---- other routes ------------------------------------------------------ */

START_TEST(test_config_is_redacted)
{
    gwf_resp_t r;
    json_t *j;

    adm(&r, "GET", "/admin/v1/config", T_RO, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(strstr(r.body, GWF_PROVIDER_CANARY));
    j = gwf_resp_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "provider mock"), "credential")),
                     "(redacted)");
    ck_assert_ptr_nonnull(json_object_get(j, "admin"));
    json_decref(j);
    gwf_resp_free(&r);
}
END_TEST

START_TEST(test_health_and_openapi)
{
    gwf_resp_t r;
    json_t *j;
    char csp[128];

    /* Load balancers probe without a credential. */
    j = adm_json("GET", "/healthz", NULL, NULL, 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    j = adm_json("GET", "/readyz", NULL, NULL, 200);
    ck_assert(
        json_is_true(json_object_get(json_object_get(j, "checks"), "store")));
    json_decref(j);
    adm(&r, "GET", "/admin/v1/openapi.json", T_RO, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(
        gwf_resp_header(&r, "Content-Security-Policy", csp, sizeof(csp)), 1);
    ck_assert_ptr_nonnull(strstr(csp, "frame-ancestors 'none'"));
    j = gwf_resp_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "openapi")), "3.1.0");
    json_decref(j);
    gwf_resp_free(&r);
}
END_TEST

/* ---- the dashboard ------------------------------------------------------ */

/* The value of header name of r (must be there). */
static void dash_header(const gwf_resp_t *r, const char *name, char *buf,
                        size_t len)
{
    ck_assert_msg(gwf_resp_header(r, name, buf, len) == 1, "no %s header",
                  name);
}

/* Every <script> of the page loads a file of the dashboard: no inline
 * code, no style attribute, nothing from elsewhere. */
static void assert_page_has_no_inline_code(const char *html)
{
    for (const char *p = strstr(html, "<script"); p != NULL;
         p = strstr(p + 1, "<script")) {
        const char *end = strchr(p, '>');
        const char *src = strstr(p, " src=\"/ui/");

        ck_assert_ptr_nonnull(end);
        ck_assert_msg(src != NULL && src < end, "an inline script: %.80s", p);
        ck_assert_msg(strncmp(end + 1, "</script>", 9) == 0,
                      "a script with a body: %.80s", p);
    }
    ck_assert_ptr_null(strstr(html, "<style"));
    ck_assert_ptr_null(strstr(html, " style="));
    ck_assert_ptr_null(strstr(html, "://"));
}

START_TEST(test_dashboard_files)
{
    static const struct {
        const char *path;
        const char *type;
        const char *starts;
    } files[] = {
        {"/", "text/html; charset=utf-8", "<!doctype html>"},
        {"/ui/app.js", "text/javascript; charset=utf-8", "// "},
        {"/ui/api.js", "text/javascript; charset=utf-8", "// "},
        {"/ui/app.css", "text/css; charset=utf-8", "/* "},
        {"/ui/chart.min.js", "text/javascript; charset=utf-8",
         "/*!\n * Chart.js"},
        {"/ui/favicon.svg", "image/svg+xml", "<svg "},
    };
    static const struct {
        const char *method;
        const char *path;
        long status;
    } refused[] = {
        {"GET", "/ui/nope.js", 404},
        {"GET", "/ui/", 404},
        {"GET", "/ui/openapi.json", 404},
        {"GET", "/ui/..%2Fadmin%2Fv1%2Fopenapi.json", 404},
        {"GET", "/index.html", 404},
        {"GET", "/?token=x", 400},
        {"POST", "/", 405},
    };
    gwf_resp_t r;
    char v[512];

    /* Without a credential: the page must load to sign in. */
    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        adm(&r, "GET", files[i].path, NULL, NULL);
        ck_assert_msg(r.status == 200, "GET %s: %ld", files[i].path, r.status);
        dash_header(&r, "Content-Type", v, sizeof(v));
        ck_assert_str_eq(v, files[i].type);
        ck_assert_msg(
            strncmp(r.body, files[i].starts, strlen(files[i].starts)) == 0,
            "GET %s: %.40s", files[i].path, r.body);
        dash_header(&r, "Content-Security-Policy", v, sizeof(v));
        ck_assert_ptr_nonnull(strstr(v, "default-src 'none'"));
        ck_assert_ptr_nonnull(strstr(v, "script-src 'self';"));
        ck_assert_ptr_nonnull(strstr(v, "style-src 'self';"));
        ck_assert_ptr_nonnull(strstr(v, "frame-ancestors 'none'"));
        ck_assert_ptr_null(strstr(v, "unsafe"));
        dash_header(&r, "Referrer-Policy", v, sizeof(v));
        ck_assert_str_eq(v, "no-referrer");
        dash_header(&r, "X-Content-Type-Options", v, sizeof(v));
        ck_assert_str_eq(v, "nosniff");
        if (i == 0) {
            assert_page_has_no_inline_code(r.body);
            ck_assert_ptr_nonnull(
                strstr(r.body, "<script type=\"module\" src=\"/ui/app.js\">"));
        }
        gwf_resp_free(&r);
    }
    for (size_t i = 0; i < sizeof(refused) / sizeof(*refused); i++) {
        adm(&r, refused[i].method, refused[i].path, NULL, NULL);
        assert_admin_error(&r, refused[i].status, NULL);
        gwf_resp_free(&r);
    }
    /* The API stays behind its token: the page's route is no way round. */
    adm(&r, "GET", "/admin/v1/openapi.json", NULL, NULL);
    assert_admin_error(&r, 401, NULL);
    gwf_resp_free(&r);
}
END_TEST

/* ---- usage, history, audit ------------------------------------------------
 */

/* Split a CSV text (no quoted commas in these values) into rows; returns
 * the number of data rows and checks the header's first column. */
static int csv_rows(const char *text, char rows[][512], int max)
{
    const char *p = strchr(text, '\n');
    int n = 0;

    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(strncmp(text, "requestId,at,keyId,", 19), 0);
    for (p++; *p != '\0' && n < max; n++) {
        const char *end = strchr(p, '\n');
        size_t len;

        ck_assert_ptr_nonnull(end);
        len = (size_t)(end - p);
        if (len > 0 && p[len - 1] == '\r') {
            len--;
        }
        ck_assert_uint_lt(len, 512);
        memcpy(rows[n], p, len);
        rows[n][len] = '\0';
        p = end + 1;
    }
    return n;
}

START_TEST(test_usage_history_and_audit)
{
    gwf_key_t k;
    char cred[160];
    char path[512];
    char rid[5][GWF_REQID_MAX];
    char rows[8][512];
    char cursor[128] = "";
    int seen = 0;
    int pages = 0;
    gwf_resp_t r;
    json_t *j;
    json_t *groups; /* borrowed */
    gwf_usage_t u;

    gwf_key_create(&W, &k, "usage-key", NULL);
    gwf_bearer(&k, cred, sizeof(cred));
    for (int i = 0; i < 5; i++) {
        const char *chat = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":"
                           "\"user\",\"content\":\"u\"}]}";
        const char *msg = "{\"model\":\"claude-3-5-sonnet\",\"max_tokens\":"
                          "50,\"messages\":[{\"role\":\"user\",\"content\":"
                          "\"u\"}]}";

        gwf_post(&W, &r, i < 3 ? "/v1/chat/completions" : "/v1/messages", cred,
                 i < 3 ? chat : msg);
        ck_assert_int_eq(r.status, 200);
        snprintf(rid[i], sizeof(rid[i]), "%s", r.request_id);
        gwf_resp_free(&r);
    }
    for (int i = 0; i < 5; i++) {
        ck_assert(gwf_usage(&W, rid[i], &u));
    }

    /* Totals and one series per model for this key. */
    snprintf(path, sizeof(path),
             "/admin/v1/usage?key=%s&group=model&by=hour&from=2h", k.id);
    j = adm_json("GET", path, T_RO, NULL, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(j, "totals"), "requests")),
                     5);
    groups = json_object_get(j, "groups");
    ck_assert_int_eq(json_array_size(groups), 2);
    ck_assert_int_eq(
        json_array_size(json_object_get(json_array_get(groups, 0), "series")),
        3);
    json_decref(j);

    /* The history in pages of two, newest first, every request once. */
    do {
        json_t *data; /* borrowed */
        json_t *next; /* borrowed */

        snprintf(path, sizeof(path),
                 "/admin/v1/usage/events?key=%s&limit=2%s%s", k.id,
                 cursor[0] ? "&cursor=" : "", cursor);
        j = adm_json("GET", path, T_RO, NULL, 200);
        data = json_object_get(j, "data");
        for (size_t i = 0; i < json_array_size(data); i++) {
            const char *id = json_string_value(
                json_object_get(json_array_get(data, i), "requestId"));

            ck_assert_int_lt(seen, 5);
            ck_assert_str_eq(id, rid[4 - seen]);
            seen++;
        }
        next = json_object_get(j, "nextCursor");
        cursor[0] = '\0';
        if (json_is_string(next)) {
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        }
        json_decref(j);
        pages++;
    } while (cursor[0] != '\0' && pages < 10);
    ck_assert_int_eq(seen, 5);
    ck_assert_int_eq(pages, 3);

    /* The CSV export holds the same requests, with the same costs. */
    snprintf(path, sizeof(path), "/admin/v1/usage/events?key=%s&limit=100",
             k.id);
    j = adm_json("GET", path, T_RO, NULL, 200);
    snprintf(path, sizeof(path), "/admin/v1/usage/events?key=%s&format=csv",
             k.id);
    adm(&r, "GET", path, T_RO, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(csv_rows(r.body, rows, 8), 5);
    for (int i = 0; i < 5; i++) {
        json_t *e = json_array_get(json_object_get(j, "data"), (size_t)i);
        char want[256];

        snprintf(want, sizeof(want), "%s,",
                 json_string_value(json_object_get(e, "requestId")));
        ck_assert_int_eq(strncmp(rows[i], want, strlen(want)), 0);
        snprintf(want, sizeof(want), ",%s,",
                 json_string_value(json_object_get(e, "cost")));
        ck_assert_ptr_nonnull(strstr(rows[i], want));
    }
    json_decref(j);
    gwf_resp_free(&r);

    /* The audit trail of the key, and of what an admin token did. */
    snprintf(path, sizeof(path), "/admin/v1/audit?object=%s", k.id);
    j = adm_json("GET", path, T_RO, NULL, 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "data")), 1);
    ck_assert_str_eq(
        json_string_value(json_object_get(
            json_array_get(json_object_get(j, "data"), 0), "action")),
        "create");
    json_decref(j);

    adm(&r, "GET", "/admin/v1/usage?by=week", T_RO, NULL);
    assert_admin_error(&r, 400, "by");
    gwf_resp_free(&r);
    adm(&r, "GET", "/admin/v1/usage/events?cursor=bogus", T_RO, NULL);
    assert_admin_error(&r, 400, "cursor");
    gwf_resp_free(&r);
    adm(&r, "GET", "/admin/v1/usage/events?workspace=nope&format=csv", T_RO,
        NULL);
    assert_admin_error(&r, 404, "workspace");
    gwf_resp_free(&r);
    adm(&r, "GET", "/admin/v1/audit?limit=0", T_RO, NULL);
    assert_admin_error(&r, 400, "limit");
    gwf_resp_free(&r);
}
END_TEST

/* ---- metrics ----------------------------------------------------------- */

/* promtool (Debian's prometheus package) reads the scrape: exit 0. */
static void promtool_check(const char *text, size_t len)
{
    const char *argv[] = {"promtool", "check", "metrics", NULL};
    kg_harness_cmd_t cmd = {argv, NULL, text, len, 20000};
    kg_harness_result_t res = {0};

    ck_assert_int_eq(kg_harness_run(&cmd, &res), 0);
    ck_assert_msg(res.status == 0, "promtool check metrics: exit %d: %s%s",
                  res.status, res.out, res.err);
    kg_harness_result_free(&res);
}

/* The value of the sample that starts with series (name{labels}), or -1. */
static double metric_value(const char *text, const char *series)
{
    const char *p = text;
    size_t n = strlen(series);

    while ((p = strstr(p, series)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            return strtod(p + n + 1, NULL);
        }
        p += n;
    }
    return -1;
}

static char *scrape(void)
{
    gwf_resp_t r;
    char *text;

    adm(&r, "GET", "/metrics", T_RO, NULL);
    ck_assert_int_eq(r.status, 200);
    promtool_check(r.body, r.body_len);
    text = strdup(r.body);
    gwf_resp_free(&r);
    return text;
}

#define CHAT_OK                                                         \
    "keygate_requests_total{route=\"chat\",status_class=\"2xx\",model=" \
    "\"gpt-4o\",provider=\"mock\"}"

/* Requests, tokens, durations and refusals are counted as they happen. */
START_TEST(test_metrics_count_requests)
{
    const char *body = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":"
                       "\"user\",\"content\":\"m\"}]}";
    char *before = scrape();
    char *after;
    char cred[160];
    gwf_resp_t r;

    gwf_bearer(&K_CLIENT, cred, sizeof(cred));
    for (int i = 0; i < 2; i++) {
        gwf_post(&W, &r, "/v1/chat/completions", cred, body);
        ck_assert_int_eq(r.status, 200);
        gwf_resp_free(&r);
    }
    gwf_source_ip = "127.0.7.240";
    gwf_get(&W, &r, "/v1/models", "Authorization: Bearer kg_nope");
    gwf_source_ip = NULL;
    ck_assert_int_eq(r.status, 401);
    gwf_resp_free(&r);
    gwf_get(&W, &r, "/v1/models", cred);
    ck_assert_int_eq(r.status, 200);
    gwf_resp_free(&r);
    after = scrape();
    ck_assert_int_eq((int)(metric_value(after, CHAT_OK) -
                           (metric_value(before, CHAT_OK) < 0
                                ? 0
                                : metric_value(before, CHAT_OK))),
                     2);
    ck_assert_double_gt(
        metric_value(after, "keygate_tokens_total{route=\"chat\",status_class="
                            "\"2xx\",model=\"gpt-4o\",provider=\"mock\",kind="
                            "\"completion\"}"),
        metric_value(before, "keygate_tokens_total{route=\"chat\",status_class="
                             "\"2xx\",model=\"gpt-4o\",provider=\"mock\",kind="
                             "\"completion\"}"));
    ck_assert_double_gt(
        metric_value(after, "keygate_auth_failures_total{reason=\"invalid\"}"),
        metric_value(before,
                     "keygate_auth_failures_total{reason=\"invalid\"}"));
    ck_assert_double_ge(
        metric_value(after, "keygate_requests_total{route=\"models\","
                            "status_class=\"2xx\",model=\"\",provider=\"\"}"),
        1);
    ck_assert_double_ge(metric_value(after,
                                     "keygate_upstream_duration_seconds_count{"
                                     "provider=\"mock\"}"),
                        2);
    ck_assert_double_ge(
        metric_value(after, "keygate_request_duration_seconds_count{route="
                            "\"chat\"}"),
        2);
    ck_assert_double_gt(
        metric_value(after, "keygate_usage_commit_duration_seconds_count"), 0);
    ck_assert_double_gt(
        metric_value(after, "keygate_keycache_lookups_total{result=\"hit\"}"),
        0);
    ck_assert_double_eq(metric_value(after, "keygate_open_streams"), 0);
    free(before);
    free(after);
}
END_TEST

START_TEST(test_metrics_scrape)
{
    char type[128];
    gwf_resp_t r;

    adm(&r, "GET", "/metrics", NULL, NULL);
    ck_assert_int_eq(r.status,
                     401); /* a token is needed, read-only is enough */
    gwf_resp_free(&r);
    ck_assert_int_eq(gateway_status(K_CLIENT.token, NULL), 200);
    adm(&r, "GET", "/metrics", T_RO, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(gwf_resp_header(&r, "Content-Type", type, sizeof(type)),
                     1);
    ck_assert_ptr_nonnull(strstr(type, "text/plain; version=0.0.4"));
    ck_assert_ptr_nonnull(strstr(r.body, "keygate_build_info{version=\""));
    ck_assert_ptr_nonnull(strstr(r.body, "keygate_open_connections "));
    ck_assert_ptr_nonnull(
        strstr(r.body, "keygate_auth_failures_total{reason=\"admin\"} "));
    ck_assert_ptr_null(strstr(r.body, K_CLIENT.id)); /* no per-key labels */
    promtool_check(r.body, r.body_len);
    gwf_resp_free(&r);
}
END_TEST

/* ---- sessions (the dashboard's sign-in) -----------------------------------
 */

/* The value of Set-Cookie's kg_session=..., "" when absent. */
static void session_cookie(const gwf_resp_t *r, char *out, size_t len)
{
    char v[256];
    char *end;

    out[0] = '\0';
    if (gwf_resp_header(r, "Set-Cookie", v, sizeof(v)) != 1 ||
        strncmp(v, "kg_session=", 11) != 0) {
        return;
    }
    end = strchr(v, ';');
    if (end != NULL) {
        *end = '\0';
    }
    ck_assert_uint_lt(strlen(v + 11), len);
    memcpy(out, v + 11, strlen(v + 11) + 1);
}

START_TEST(test_sessions_and_csrf)
{
    char body[160];
    char cookie[128];
    char cookie_h[300];
    char csrf_h[128];
    char setc[256];
    const char *json_ct = "Content-Type: application/json";
    gwf_resp_t r;
    json_t *j;

    /* A wrong token: no session, no cookie. */
    gwf_source_ip = "127.0.7.150";
    {
        const char *h[] = {json_ct, NULL};

        gwf_admin_http(&W, &r, "POST", "/admin/v1/session", h,
                       "{\"token\":\"kgadm_wrong\"}", 0);
    }
    gwf_source_ip = NULL;
    assert_admin_error(&r, 401, NULL);
    session_cookie(&r, cookie, sizeof(cookie));
    ck_assert_str_eq(cookie, "");
    gwf_resp_free(&r);

    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", T_ADMIN);
    {
        const char *h[] = {json_ct, NULL};

        gwf_admin_http(&W, &r, "POST", "/admin/v1/session", h, body, 0);
    }
    ck_assert_int_eq(r.status, 201);
    ck_assert_int_eq(gwf_resp_header(&r, "Set-Cookie", setc, sizeof(setc)), 1);
    ck_assert_ptr_nonnull(strstr(setc, "HttpOnly"));
    ck_assert_ptr_nonnull(strstr(setc, "SameSite=Strict"));
    ck_assert_ptr_nonnull(strstr(setc, "Path=/"));
    ck_assert_ptr_nonnull(strstr(setc, "Max-Age=43200"));
    /* Plain HTTP on loopback: not Secure (test_tls sees it with TLS). */
    ck_assert_ptr_null(strstr(setc, "Secure"));
    ck_assert_ptr_null(strstr(setc, T_ADMIN)); /* never the token */
    session_cookie(&r, cookie, sizeof(cookie));
    ck_assert_uint_gt(strlen(cookie), 20);
    j = gwf_resp_json(&r);
    snprintf(csrf_h, sizeof(csrf_h), "X-CSRF-Token: %s",
             json_string_value(json_object_get(j, "csrfToken")));
    ck_assert(json_is_false(json_object_get(j, "readOnly")));
    json_decref(j);
    gwf_resp_free(&r);
    snprintf(cookie_h, sizeof(cookie_h), "Cookie: kg_session=%s", cookie);

    {
        const char *h[] = {cookie_h, NULL};

        gwf_admin_http(&W, &r, "GET", "/admin/v1/keys", h, NULL, 0);
        ck_assert_int_eq(r.status, 200);
        gwf_resp_free(&r);
    }
    {
        /* A change without the CSRF token is refused... */
        const char *h[] = {cookie_h, json_ct, NULL};

        gwf_admin_http(&W, &r, "POST", "/admin/v1/workspaces", h,
                       "{\"name\":\"csrf-1\"}", 0);
        assert_admin_error(&r, 403, NULL);
        gwf_resp_free(&r);
    }
    {
        /* ... and from another origin even with it ... */
        const char *h[] = {cookie_h, json_ct, csrf_h,
                           "Origin: http://evil.example", NULL};

        gwf_admin_http(&W, &r, "POST", "/admin/v1/workspaces", h,
                       "{\"name\":\"csrf-2\"}", 0);
        assert_admin_error(&r, 403, NULL);
        gwf_resp_free(&r);
    }
    {
        /* ... and accepted with it, from the dashboard's origin. */
        char origin[64];
        const char *h[] = {cookie_h, json_ct, csrf_h, origin, NULL};

        snprintf(origin, sizeof(origin), "Origin: http://127.0.0.1:%d",
                 W.admin_port);
        gwf_admin_http(&W, &r, "POST", "/admin/v1/workspaces", h,
                       "{\"name\":\"csrf-3\"}", 0);
        ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
        gwf_resp_free(&r);
    }
    {
        const char *h[] = {cookie_h, csrf_h, NULL};

        gwf_admin_http(&W, &r, "DELETE", "/admin/v1/session", h, NULL, 0);
        ck_assert_int_eq(r.status, 204);
        ck_assert_int_eq(gwf_resp_header(&r, "Set-Cookie", setc, sizeof(setc)),
                         1);
        ck_assert_ptr_nonnull(strstr(setc, "Max-Age=0"));
        gwf_resp_free(&r);
        gwf_source_ip = "127.0.7.151";
        gwf_admin_http(&W, &r, "GET", "/admin/v1/keys", h, NULL, 0);
        gwf_source_ip = NULL;
        assert_admin_error(&r, 401, NULL);
        gwf_resp_free(&r);
    }

    /* A read-only session reads and changes nothing. */
    snprintf(body, sizeof(body), "{\"token\":\"%s\"}", T_RO);
    {
        const char *h[] = {json_ct, NULL};

        gwf_admin_http(&W, &r, "POST", "/admin/v1/session", h, body, 0);
    }
    ck_assert_int_eq(r.status, 201);
    session_cookie(&r, cookie, sizeof(cookie));
    j = gwf_resp_json(&r);
    ck_assert(json_is_true(json_object_get(j, "readOnly")));
    snprintf(csrf_h, sizeof(csrf_h), "X-CSRF-Token: %s",
             json_string_value(json_object_get(j, "csrfToken")));
    json_decref(j);
    gwf_resp_free(&r);
    snprintf(cookie_h, sizeof(cookie_h), "Cookie: kg_session=%s", cookie);
    {
        const char *h[] = {cookie_h, json_ct, csrf_h, NULL};

        gwf_admin_http(&W, &r, "POST", "/admin/v1/workspaces", h,
                       "{\"name\":\"ro-session\"}", 0);
        assert_admin_error(&r, 403, NULL);
        gwf_resp_free(&r);
    }
}
END_TEST

/* ---- under load ---------------------------------------------------------- */

typedef struct load_arg {
    int ok;
    int failed;
} load_arg_t;

static void *load_thread(void *p)
{
    load_arg_t *a = p;
    char cred[160];

    gwf_bearer(&K_CLIENT, cred, sizeof(cred));
    for (int i = 0; i < LOAD_REQUESTS; i++) {
        gwf_resp_t r;

        gwf_post(&W, &r, "/v1/chat/completions", cred,
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"load\"}]}");
        if (r.status == 200) {
            a->ok++;
        } else {
            a->failed++;
        }
        gwf_resp_free(&r);
    }
    return NULL;
}

/* Admin writes while the gateway serves: neither fails. */
START_TEST(test_admin_writes_under_load)
{
    pthread_t th[LOAD_THREADS];
    load_arg_t args[LOAD_THREADS];
    int writes_ok = 0;

    memset(args, 0, sizeof(args));
    for (int i = 0; i < LOAD_THREADS; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, load_thread, &args[i]),
                         0);
    }
    for (int i = 0; i < LOAD_WRITES; i++) {
        char body[96];
        gwf_resp_t r;

        snprintf(body, sizeof(body), "{\"name\":\"load-%d\",\"rpm\":%d}", i,
                 100 + i);
        adm(&r, "POST", "/admin/v1/keys", T_ADMIN, body);
        writes_ok += r.status == 201;
        gwf_resp_free(&r);
    }
    for (int i = 0; i < LOAD_THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].failed, 0);
        ck_assert_int_eq(args[i].ok, LOAD_REQUESTS);
    }
    ck_assert_int_eq(writes_ok, LOAD_WRITES);
}
END_TEST

/* [server] health_routes: the client listener answers /healthz and
 * /readyz too, without a credential; off (the shared world), it does not. */
START_TEST(test_public_health_routes)
{
    gwf_t f;
    gwf_resp_t r;
    json_t *j;

    gwf_get(&W, &r, "/healthz", NULL);
    ck_assert_int_eq(r.status, 404);
    gwf_resp_free(&r);

    gwf_init(&f, false);
    gwf_config(&f, "health_routes = on", NULL, NULL);
    gwf_init_store(&f);
    gwf_start(&f);
    gwf_get(&f, &r, "/healthz", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"ok\""));
    gwf_resp_free(&r);
    gwf_get(&f, &r, "/readyz", NULL);
    ck_assert_int_eq(r.status, 200);
    j = gwf_resp_json(&r);
    ck_assert(
        json_is_true(json_object_get(json_object_get(j, "checks"), "store")));
    json_decref(j);
    gwf_resp_free(&r);
    ck_assert(gwf_stop_checked(&f));
    gwf_free(&f);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("admin");

    tcase_add_unchecked_fixture(tc, setup_admin, teardown_admin);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_authorization_matrix, 0,
                        (int)(sizeof(auth_rows) / sizeof(*auth_rows)));
    tcase_add_test(tc, test_admin_token_refused_by_gateway);
    tcase_add_test(tc, test_failed_auth_throttled);
    tcase_add_test(tc, test_key_lifecycle_reaches_gateway);
    tcase_add_test(tc, test_key_paging);
    tcase_add_loop_test(tc, test_bad_input, 0,
                        (int)(sizeof(bad_rows) / sizeof(*bad_rows)));
    tcase_add_test(tc, test_body_bounds);
    tcase_add_test(tc, test_workspace_resources);
    tcase_add_test(tc, test_usage_history_and_audit);
    tcase_add_test(tc, test_config_is_redacted);
    tcase_add_test(tc, test_health_and_openapi);
    tcase_add_test(tc, test_dashboard_files);
    tcase_add_test(tc, test_metrics_scrape);
    tcase_add_test(tc, test_metrics_count_requests);
    tcase_add_test(tc, test_sessions_and_csrf);
    tcase_add_test(tc, test_admin_writes_under_load);
    tcase_add_test(tc, test_public_health_routes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(admin_suite());
}
