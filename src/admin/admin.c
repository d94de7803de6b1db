/* The admin listener: its own libmicrohttpd threads, routes, auth, answers. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "admin_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keygate/access.h"
#include "keygate/buf.h"
#include "keygate/clock.h"
#include "keygate/log.h"
#include "keygate/ratelimit.h"
#include "keygate/timefmt.h"
#include "keygate/tls.h"
#include "keygate/token.h"

/* Request headers and line at most (libmicrohttpd answers 431 past it). */
#define ADMIN_POOL_BYTES (32 * 1024)
/* The longest wait of an admin thread with nothing timed. */
#define ADMIN_MAX_WAIT_MS 1000
/* Connections from one address at most. */
#define ADMIN_PER_IP_MAX 32
/* Failed admin authentications per address and minute before a block. */
#define ADMIN_AUTH_FAILURES 10
#define ADMIN_AUTH_WINDOW   INT64_C(60000)
/* Nesting of a JSON request body at most. */
#define ADMIN_JSON_DEPTH_MAX 16
/* The longest Authorization or Cookie value read. */
#define ADMIN_CREDENTIAL_MAX 512

/* The store connections admin requests borrow: one per admin thread. */
typedef struct admin_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kg_store_t **stores;
    bool *busy;
    size_t n;
} admin_pool_t;

/*
 * One admin thread: its own libmicrohttpd daemon in external-epoll mode,
 * accepting from a duplicate of the listening socket (like the gateway's
 * workers), driven by a loop it owns so the thread carries a name.
 */
typedef struct admin_loop {
    struct kg_admin *admin;
    unsigned index;
    struct MHD_Daemon *daemon;
    int epfd;
    int wake_fd; /* eventfd: stop */
    pthread_t thread;
    bool started;
    atomic_bool stopping;
} admin_loop_t;

struct kg_admin {
    kg_gateway_t *gw; /* borrowed */
    admin_loop_t *loops;
    size_t nloops;
    admin_pool_t pool;
    admin_sessions_t *sessions;
    kg_ratelimit_t *throttle; /* failed authentications per address */
    atomic_ulong seq;
    char id_prefix[9];
    bool tls;
};

/* Per-request state of the listener (libmicrohttpd's con_cls). */
typedef struct admin_req {
    admin_ctx_t c;
    kg_buf_t body;
    bool body_too_large;
    bool answered; /* an answer was queued */
} admin_req_t;

/* ---- the store pool ---------------------------------------------------- */

static kg_err_t admin_pool_init(admin_pool_t *p, const kg_config_t *cfg,
                                size_t n, kg_diag_t *diag)
{
    kg_store_opts_t opts = {0, (int)cfg->store_busy_timeout_ms, 0, NULL};
    kg_err_t rc = KG_OK;

    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->stores = calloc(n, sizeof(*p->stores));
    p->busy = calloc(n, sizeof(*p->busy));
    if (p->stores == NULL || p->busy == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    for (; p->n < n && rc == KG_OK; p->n++) {
        rc = kg_store_open(kg_config_store_location(cfg), &opts,
                           &p->stores[p->n], diag);
        if (rc != KG_OK) {
            break;
        }
    }
    return rc;
}

static void admin_pool_clear(admin_pool_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        kg_store_close(&p->stores[i]);
    }
    free(p->stores);
    free(p->busy);
    p->stores = NULL;
    p->busy = NULL;
    p->n = 0;
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

/* A free connection; waits while all are in use (never for long: each
 * request holds one only while its handler or one stream page runs). */
static kg_store_t *admin_pool_take(admin_pool_t *p)
{
    kg_store_t *s = NULL;

    pthread_mutex_lock(&p->mu);
    while (s == NULL) {
        for (size_t i = 0; i < p->n; i++) {
            if (!p->busy[i]) {
                p->busy[i] = true;
                s = p->stores[i];
                break;
            }
        }
        if (s == NULL) {
            pthread_cond_wait(&p->cv, &p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void admin_pool_give(admin_pool_t *p, kg_store_t *s)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++) {
        if (p->stores[i] == s) {
            p->busy[i] = false;
        }
    }
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

kg_store_t *admin_store_take(kg_admin_t *a)
{
    return admin_pool_take(&a->pool);
}

void admin_store_give(kg_admin_t *a, kg_store_t *s)
{
    admin_pool_give(&a->pool, s);
}

/* ---- routes ------------------------------------------------------------ */

static const char *const admin_args_keys[] = {"workspace", "status", "q",
                                              "limit",     "cursor", NULL};
static const char *const admin_args_none[] = {NULL};
static const char *const admin_args_usage[] = {
    "from",      "to",    "by",       "group",  "key",
    "workspace", "model", "provider", "format", NULL};
static const char *const admin_args_events[] = {
    "from",   "to",     "key",   "workspace", "model",  "provider",
    "status", "errors", "limit", "cursor",    "format", NULL};
static const char *const admin_args_audit[] = {
    "from",        "to",    "actor",  "action", "object",
    "object-type", "limit", "cursor", NULL};

static const admin_route_t admin_routes[] = {
    /* The dashboard: its page and built-in files load without a token
     * (the page signs in with one); see admin_dashboard.c. */
    {"GET", "/", ADMIN_PUBLIC, admin_h_dashboard, admin_args_none},
    {"GET", "/ui/{}", ADMIN_PUBLIC, admin_h_dashboard, admin_args_none},
    {"GET", "/healthz", ADMIN_PUBLIC, admin_h_healthz, admin_args_none},
    {"GET", "/readyz", ADMIN_PUBLIC, admin_h_readyz, admin_args_none},
    {"GET", "/metrics", ADMIN_READ, admin_h_metrics, admin_args_none},
    {"POST", "/admin/v1/session", ADMIN_PUBLIC, admin_h_session_create,
     admin_args_none},
    {"GET", "/admin/v1/session", ADMIN_READ, admin_h_session_get,
     admin_args_none},
    {"DELETE", "/admin/v1/session", ADMIN_READ, admin_h_session_delete,
     admin_args_none},
    {"GET", "/admin/v1/openapi.json", ADMIN_READ, admin_h_openapi,
     admin_args_none},
    {"GET", "/admin/v1/config", ADMIN_READ, admin_h_config, admin_args_none},
    {"GET", "/admin/v1/workspaces", ADMIN_READ, admin_h_workspaces_list,
     admin_args_none},
    {"POST", "/admin/v1/workspaces", ADMIN_WRITE, admin_h_workspaces_create,
     admin_args_none},
    {"GET", "/admin/v1/workspaces/{}", ADMIN_READ, admin_h_workspace_get,
     admin_args_none},
    {"PATCH", "/admin/v1/workspaces/{}", ADMIN_WRITE, admin_h_workspace_update,
     admin_args_none},
    {"POST", "/admin/v1/workspaces/{}/credits", ADMIN_WRITE,
     admin_h_workspace_credits, admin_args_none},
    {"GET", "/admin/v1/workspaces/{}/credentials", ADMIN_READ,
     admin_h_credentials_list, admin_args_none},
    {"PUT", "/admin/v1/workspaces/{}/credentials/{}", ADMIN_WRITE,
     admin_h_credential_put, admin_args_none},
    {"DELETE", "/admin/v1/workspaces/{}/credentials/{}", ADMIN_WRITE,
     admin_h_credential_delete, admin_args_none},
    {"GET", "/admin/v1/keys", ADMIN_READ, admin_h_keys_list, admin_args_keys},
    {"POST", "/admin/v1/keys", ADMIN_WRITE, admin_h_keys_create,
     admin_args_none},
    {"GET", "/admin/v1/keys/{}", ADMIN_READ, admin_h_key_get, admin_args_none},
    {"PATCH", "/admin/v1/keys/{}", ADMIN_WRITE, admin_h_key_update,
     admin_args_none},
    {"DELETE", "/admin/v1/keys/{}", ADMIN_WRITE, admin_h_key_delete,
     admin_args_none},
    {"GET", "/admin/v1/usage", ADMIN_READ, admin_h_usage, admin_args_usage},
    {"GET", "/admin/v1/usage/events", ADMIN_READ, admin_h_usage_events,
     admin_args_events},
    {"GET", "/admin/v1/audit", ADMIN_READ, admin_h_audit, admin_args_audit},
    {"POST", "/admin/v1/keys/{}/disable", ADMIN_WRITE, admin_h_key_disable,
     admin_args_none},
    {"POST", "/admin/v1/keys/{}/enable", ADMIN_WRITE, admin_h_key_enable,
     admin_args_none},
    {"POST", "/admin/v1/keys/{}/rotate", ADMIN_WRITE, admin_h_key_rotate,
     admin_args_none},
    {"POST", "/admin/v1/keys/{}/revoke", ADMIN_WRITE, admin_h_key_revoke,
     admin_args_none},
};

/*
 * Match path against pattern segment by segment; "{}" takes one non-empty
 * segment of at most ADMIN_PARAM_MAX bytes into c->params.
 */
static bool admin_match(const char *pattern, const char *path, admin_ctx_t *c)
{
    size_t np = 0;

    while (*pattern != '\0' && *path != '\0') {
        if (strncmp(pattern, "{}", 2) == 0) {
            size_t n = strcspn(path, "/");

            if (n == 0 || n > ADMIN_PARAM_MAX || np == ADMIN_MAX_PARAMS) {
                return false;
            }
            memcpy(c->params[np], path, n);
            c->params[np][n] = '\0';
            np++;
            pattern += 2;
            path += n;
            continue;
        }
        if (*pattern != *path) {
            return false;
        }
        pattern++;
        path++;
    }
    if (*pattern != '\0' || *path != '\0') {
        return false;
    }
    c->nparams = np;
    return true;
}

/* The route for method and path; NULL with *bad_method when only the
 * method is wrong. */
static const admin_route_t *admin_route_find(admin_ctx_t *c, const char *method,
                                             const char *path, bool *bad_method)
{
    *bad_method = false;
    for (size_t i = 0; i < sizeof(admin_routes) / sizeof(*admin_routes); i++) {
        const admin_route_t *r = &admin_routes[i];

        if (!admin_match(r->pattern, path, c)) {
            continue;
        }
        if (strcmp(r->method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
            return r;
        }
        *bad_method = true;
    }
    return NULL;
}

/* ---- answers ----------------------------------------------------------- */

void admin_add_common_headers(admin_ctx_t *c, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "x-request-id", c->request_id);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    if (MHD_get_response_header(resp, "Content-Security-Policy") == NULL) {
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'none'; frame-ancestors 'none'");
    }
}

void admin_reply_response(admin_ctx_t *c, unsigned status,
                          struct MHD_Response *resp)
{
    if (c->resp != NULL) {
        MHD_destroy_response(c->resp);
    }
    c->resp = resp;
    c->status = status;
    if (resp != NULL) {
        admin_add_common_headers(c, resp);
    }
}

static struct MHD_Response *admin_json_response(json_t *j)
{
    char *body = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    struct MHD_Response *resp;

    json_decref(j);
    if (body == NULL) {
        return NULL;
    }
    resp = MHD_create_response_from_buffer(strlen(body), body,
                                           MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    return resp;
}

void admin_reply_json(admin_ctx_t *c, unsigned status, json_t *j)
{
    admin_reply_response(c, status, admin_json_response(j));
}

void admin_reply_empty(admin_ctx_t *c)
{
    admin_reply_response(
        c, MHD_HTTP_NO_CONTENT,
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT));
}

/* keygate's error body; message (may be NULL) replaces err's public text,
 * which otherwise gets detail in its "%s". */
static json_t *admin_error_json(kg_err_t err, const char *detail,
                                const char *message, const char *param)
{
    char msg[KG_DIAG_MAX + 128];
    int status = kg_err_http_status(err);
    json_t *e;

    if (message != NULL) {
        snprintf(msg, sizeof(msg), "%s", message);
    } else {
        kg_err_format(err, detail, msg, sizeof(msg));
    }
    e = json_pack("{s:s, s:s, s:s}", "message", msg, "type", kg_err_type(err),
                  "code", kg_err_code(err));
    if (e != NULL && param != NULL) {
        json_object_set_new(e, "param", json_string(param));
    }
    return json_pack("{s:o, s:i, s:s}", "error", e ? e : json_object(),
                     "status", status, "message", msg);
}

static void admin_reply_error_msg(admin_ctx_t *c, kg_err_t err,
                                  const char *detail, const char *message,
                                  const char *param)
{
    struct MHD_Response *resp =
        admin_json_response(admin_error_json(err, detail, message, param));

    c->error = kg_err_code(err);
    if (resp != NULL && kg_err_http_status(err) == 401) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"keygate-admin\"");
    }
    admin_reply_response(c, (unsigned)kg_err_http_status(err), resp);
}

void admin_reply_error(admin_ctx_t *c, kg_err_t err, const char *detail,
                       const char *param)
{
    admin_reply_error_msg(c, err, detail, NULL, param);
}

void admin_reply_fail(admin_ctx_t *c, kg_err_t rc, const kg_diag_t *diag,
                      const char *param)
{
    const char *why = diag && diag->msg[0] ? diag->msg : NULL;
    char msg[KG_DIAG_MAX + 16];

    switch (rc) {
    case KG_ERR_INVAL:
    case KG_ERR_TTL_BOUND:
        admin_reply_error(c, KG_ERR_INVAL, why ? why : "bad value", param);
        return;
    case KG_ERR_NOT_FOUND:
        admin_reply_error_msg(c, KG_ERR_NOT_FOUND, NULL, why ? why : NULL,
                              param);
        return;
    case KG_ERR_EXISTS:
    case KG_ERR_STATE:
        /* A library's conflict text names objects, never secrets. */
        if (why != NULL) {
            snprintf(msg, sizeof(msg), "Conflict: %s", why);
        }
        admin_reply_error_msg(c, rc, NULL, why ? msg : NULL, param);
        return;
    default:
        break;
    }
    KG_ERROR("admin request %s: %s: %s", c->request_id, kg_err_name(rc),
             why ? why : "-");
    if (kg_err_http_status(rc) == 503) {
        admin_reply_error(c, KG_ERR_UNAVAILABLE,
                          "the key store is unavailable.", NULL);
    } else {
        admin_reply_error(c, KG_ERR_INTERNAL, NULL, NULL);
    }
}

/* ---- input ------------------------------------------------------------- */

const char *admin_arg(admin_ctx_t *c, const char *name)
{
    const char *v =
        MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);

    return v != NULL && strlen(v) <= ADMIN_ARG_MAX ? v : NULL;
}

/* Refuse query arguments the route does not take (a typo must not turn
 * into an unfiltered answer). */
typedef struct admin_argcheck {
    const char *const *allowed;
    char bad[65];
    bool too_long;
} admin_argcheck_t;

static enum MHD_Result admin_check_arg(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *value)
{
    admin_argcheck_t *ac = cls;

    (void)kind;
    if (value != NULL && strlen(value) > ADMIN_ARG_MAX) {
        snprintf(ac->bad, sizeof(ac->bad), "%s", key);
        ac->too_long = true;
        return MHD_NO;
    }
    for (const char *const *a = ac->allowed; a && *a; a++) {
        if (strcmp(*a, key) == 0) {
            return MHD_YES;
        }
    }
    snprintf(ac->bad, sizeof(ac->bad), "%s", key);
    return MHD_NO;
}

bool admin_need_body(admin_ctx_t *c)
{
    if (c->body == NULL) {
        admin_reply_error(c, KG_ERR_INVAL,
                          "the request needs a JSON object body "
                          "(Content-Type: application/json)",
                          NULL);
        return false;
    }
    return true;
}

void admin_keys_ctx(admin_ctx_t *c, kg_keys_ctx_t *ctx)
{
    const kg_config_t *cfg = c->cfg;

    memset(ctx, 0, sizeof(*ctx));
    ctx->store = c->store;
    ctx->hashkey = c->gw->hashkey;
    ctx->prefix = cfg->keys_prefix;
    ctx->max_ttl = cfg->keys_max_ttl;
    ctx->default_ttl = cfg->keys_default_ttl;
    ctx->actor = c->actor;
}

void admin_changed(admin_ctx_t *c)
{
    kg_err_t rc = kg_keycache_refresh(c->gw->keycache);

    if (rc != KG_OK) {
        KG_WARN("admin request %s: key cache refresh failed (%s); the "
                "change reaches the gateway within its next refresh",
                c->request_id, kg_err_name(rc));
    }
    kg_policy_refresh(c->gw->policy);
}

/* Parse the body: a JSON object with no duplicate keys, bounded depth. */
static kg_err_t admin_parse_body(admin_req_t *r, kg_diag_t *diag)
{
    const char *ctype = MHD_lookup_connection_value(
        r->c.conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    json_error_t jerr;
    json_t *j;

    if (r->body.len == 0) {
        return KG_OK;
    }
    if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0 ||
        (ctype[16] != '\0' && ctype[16] != ';' && ctype[16] != ' ')) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "the body must be JSON (Content-Type: "
                            "application/json)");
    }
    j = json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "the body is not valid JSON: %s", jerr.text);
    }
    if (!json_is_object(j)) {
        json_decref(j);
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "the body must be a JSON object");
    }
    r->c.body = j;
    return KG_OK;
}

/* ---- authentication ---------------------------------------------------- */

static void admin_set_actor(admin_ctx_t *c)
{
    snprintf(c->actor, sizeof(c->actor), "admin:%s (%.40s)", c->who.id,
             c->who.name);
}

/* The value of one cookie of the request, or NULL. */
static const char *admin_cookie(admin_ctx_t *c, const char *name)
{
    const char *v = MHD_lookup_connection_value(c->conn, MHD_COOKIE_KIND, name);

    return v != NULL && strlen(v) <= ADMIN_CREDENTIAL_MAX ? v : NULL;
}

/* Requests that change state and come from a browser must come from the
 * dashboard's own origin. */
static bool admin_same_origin(admin_ctx_t *c)
{
    const char *origin =
        MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Origin");
    const char *host =
        MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Host");
    const char *site =
        MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    const char *rest;

    if (site != NULL && strcmp(site, "same-origin") != 0 &&
        strcmp(site, "none") != 0) {
        return false;
    }
    if (origin == NULL) {
        return true;
    }
    rest = strncmp(origin, "https://", 8) == 0  ? origin + 8
           : strncmp(origin, "http://", 7) == 0 ? origin + 7
                                                : NULL;
    return rest != NULL && host != NULL && strcasecmp(rest, host) == 0;
}

/*
 * Authenticate by "Authorization: Bearer kgadm_..." or by the session
 * cookie (then a change needs the session's CSRF token in X-CSRF-Token).
 * Returns KG_OK, or the error to answer (diag for the log).
 */
static kg_err_t admin_authenticate(admin_ctx_t *c, kg_diag_t *diag)
{
    kg_admin_t *a = c->admin;
    const char *auth = MHD_lookup_connection_value(
        c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *sid = admin_cookie(c, ADMIN_SESSION_COOKIE);
    int64_t now = kg_clock_now();
    kg_err_t rc;

    if (MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "x-api-key") !=
        NULL) {
        return kg_diag_fail(diag, KG_ERR_ADMIN_AUTH,
                            "x-api-key is a client credential");
    }
    if (auth != NULL) {
        size_t len = strlen(auth);

        if (len > ADMIN_CREDENTIAL_MAX || len < 7 ||
            strncasecmp(auth, "Bearer ", 7) != 0) {
            return kg_diag_fail(diag, KG_ERR_ADMIN_AUTH,
                                "Authorization is not 'Bearer <admin token>'");
        }
        auth += 7;
        while (*auth == ' ') {
            auth++;
        }
        rc = kg_admin_tokens_verify(c->store, c->gw->hashkey, auth,
                                    strlen(auth), now, &c->who, diag);
        if (rc == KG_OK) {
            c->authed = true;
        }
        return rc;
    }
    if (sid != NULL) {
        char token_id[KG_TOKEN_ID_LEN + 1];
        char csrf[ADMIN_CSRF_LEN + 1];
        const char *sent;
        int64_t expires;
        if (!admin_sessions_find(a->sessions, sid, now, token_id, csrf,
                                 &expires)) {
            return kg_diag_fail(diag, KG_ERR_ADMIN_AUTH,
                                "unknown or expired session");
        }
        rc = kg_admin_tokens_get(c->store, token_id, now, &c->who, diag);
        if (rc != KG_OK) {
            if (rc == KG_ERR_ADMIN_AUTH) {
                admin_sessions_close_token(a->sessions, token_id);
            }
            return rc;
        }
        c->via_session = true;
        c->authed = true;
        if (strcmp(c->method, "GET") != 0 && strcmp(c->method, "HEAD") != 0) {
            sent = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND,
                                               "X-CSRF-Token");
            if (sent == NULL || strlen(sent) != ADMIN_CSRF_LEN ||
                sodium_memcmp(sent, csrf, ADMIN_CSRF_LEN) != 0 ||
                !admin_same_origin(c)) {
                c->authed = false;
                return kg_diag_fail(diag, KG_ERR_FORBIDDEN,
                                    "a missing or wrong CSRF token");
            }
        }
        return KG_OK;
    }
    return kg_diag_fail(diag, KG_ERR_ADMIN_AUTH, "no admin credential");
}

/* ---- health and sessions ----------------------------------------------- */

void admin_h_healthz(admin_ctx_t *c)
{
    admin_reply_json(c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
}

void admin_h_readyz(admin_ctx_t *c)
{
    kg_diag_t diag = {{0}};
    bool draining = atomic_load(&c->gw->draining);
    bool workers = c->gw->nworkers > 0;
    bool store = kg_store_ping(c->store, &diag) == KG_OK;
    bool ready = !draining && workers && store;

    if (!store) {
        KG_WARN("readyz: the store cannot be read: %s", diag.msg);
    }
    admin_reply_json(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                     json_pack("{s:s, s:{s:b, s:b, s:b}, s:o}", "status",
                               ready ? "ready" : "not ready", "checks", "store",
                               store, "workers", workers, "draining", draining,
                               "config", kg_generation_json(c->gen)));
}

static void admin_set_cookie(admin_ctx_t *c, const char *sid, int64_t max_age)
{
    char v[160];

    snprintf(v, sizeof(v),
             "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
             ADMIN_SESSION_COOKIE, sid, (long long)max_age,
             c->tls ? "; Secure" : "");
    if (c->resp != NULL) {
        MHD_add_response_header(c->resp, MHD_HTTP_HEADER_SET_COOKIE, v);
    }
}

static json_t *admin_session_json(const admin_ctx_t *c, int64_t expires)
{
    char t[KG_TIME_STRLEN];
    json_t *j = json_pack("{s:s, s:s, s:b, s:s}", "tokenId", c->who.id, "name",
                          c->who.name, "readOnly", c->who.read_only, "via",
                          c->via_session ? "session" : "token");

    if (j != NULL && c->via_session) {
        json_object_set_new(j, "csrfToken", json_string(c->csrf));
        json_object_set_new(j, "expiresAt",
                            json_string(kg_time_format(expires, t, sizeof(t))));
    }
    return j;
}

void admin_h_session_create(admin_ctx_t *c)
{
    kg_admin_t *a = c->admin;
    kg_diag_t diag = {{0}};
    json_t *tok;
    char sid[ADMIN_CSRF_LEN + 1];
    int64_t now = kg_clock_now();
    int64_t expires = 0;
    int64_t retry = 0;
    kg_err_t rc;

    if (!admin_same_origin(c)) {
        admin_reply_error(c, KG_ERR_FORBIDDEN, "cross-origin sign-in", NULL);
        return;
    }
    if (!kg_ratelimit_auth_allowed(a->throttle, c->client_ip, kg_clock_now_ms(),
                                   &retry)) {
        admin_reply_error(c, KG_ERR_AUTH_THROTTLED, NULL, NULL);
        return;
    }
    if (!admin_need_body(c)) {
        return;
    }
    tok = json_object_get(c->body, "token"); /* borrowed */
    if (!json_is_string(tok)) {
        admin_reply_error(c, KG_ERR_INVAL, "token: an admin token is needed",
                          "token");
        return;
    }
    rc =
        kg_admin_tokens_verify(c->store, c->gw->hashkey, json_string_value(tok),
                               json_string_length(tok), now, &c->who, &diag);
    if (rc != KG_OK) {
        if (rc == KG_ERR_ADMIN_AUTH) {
            KG_INFO("admin request %s: sign-in refused from %s: %s",
                    c->request_id, c->client_ip, diag.msg);
            kg_ratelimit_auth_failed(a->throttle, c->client_ip,
                                     kg_clock_now_ms());
            kg_metrics_auth_failure(c->shard, KG_METRICS_AUTH_ADMIN);
            admin_reply_error(c, KG_ERR_ADMIN_AUTH, NULL, NULL);
        } else {
            admin_reply_fail(c, rc, &diag, NULL);
        }
        return;
    }
    rc = admin_sessions_open(a->sessions, &c->who, now, sid, c->csrf, &expires);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, NULL, NULL);
        return;
    }
    c->via_session = true;
    c->authed = true;
    admin_reply_json(c, MHD_HTTP_CREATED, admin_session_json(c, expires));
    admin_set_cookie(c, sid, expires - now);
    sodium_memzero(sid, sizeof(sid));
    KG_INFO("admin request %s: signed in with admin token %s from %s",
            c->request_id, c->who.id, c->client_ip);
}

void admin_h_session_get(admin_ctx_t *c)
{
    char token_id[KG_TOKEN_ID_LEN + 1];
    int64_t expires = 0;
    const char *sid = admin_cookie(c, ADMIN_SESSION_COOKIE);

    if (c->via_session && sid != NULL) {
        admin_sessions_find(c->admin->sessions, sid, kg_clock_now(), token_id,
                            c->csrf, &expires);
    }
    admin_reply_json(c, MHD_HTTP_OK, admin_session_json(c, expires));
}

void admin_h_session_delete(admin_ctx_t *c)
{
    const char *sid = admin_cookie(c, ADMIN_SESSION_COOKIE);

    if (c->via_session && sid != NULL) {
        admin_sessions_close(c->admin->sessions, sid);
    }
    admin_reply_empty(c);
    admin_set_cookie(c, "", 0);
}

/* ---- the request pipeline ---------------------------------------------- */

static void admin_client_ip(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(buf, len, "unknown");
    if (sa != NULL && sa->sa_family == AF_INET) {
        inet_ntop(AF_INET,
                  &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                  buf, (socklen_t)len);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6,
                  &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  buf, (socklen_t)len);
    }
}

/* The request's access line (type "admin"), in the log's format. */
static void admin_log_request(const admin_ctx_t *c)
{
    kg_request_summary_t m;

    memset(&m, 0, sizeof(m));
    m.request_id = c->request_id;
    m.method = c->method;
    m.route = "admin";
    m.endpoint = c->route ? c->route->pattern : NULL;
    m.status = (int)c->status;
    m.key_id = c->authed ? c->who.id : NULL;
    m.client_ip = c->client_ip;
    m.error = c->error;
    m.duration_us = kg_clock_mono_us() - c->start_us;
    m.upstream_us = -1;
    m.ttft_us = -1;
    kg_access_log_admin(&m);
}

/* Queue what c holds (a 500 when the handler queued nothing). */
static enum MHD_Result admin_send(admin_req_t *r)
{
    admin_ctx_t *c = &r->c;
    enum MHD_Result ret;

    if (c->resp == NULL) {
        admin_reply_error(c, KG_ERR_INTERNAL, NULL, NULL);
    }
    if (c->resp == NULL) {
        return MHD_NO;
    }
    ret = MHD_queue_response(c->conn, c->status, c->resp);
    MHD_destroy_response(c->resp);
    c->resp = NULL;
    r->answered = true;
    admin_log_request(c);
    return ret;
}

/* A declared Content-Length above max. */
static bool admin_declared_too_large(struct MHD_Connection *conn, size_t max)
{
    const char *cl = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end = NULL;
    unsigned long long v;

    if (cl == NULL) {
        return false;
    }
    errno = 0;
    v = strtoull(cl, &end, 10);
    return errno != 0 || end == cl || v > max;
}

/* Authenticate and authorize a non-public route; false when refused (the
 * answer is queued in c). */
static bool admin_admit(admin_ctx_t *c)
{
    kg_admin_t *a = c->admin;
    kg_diag_t diag = {{0}};
    int64_t retry = 0;
    kg_err_t rc;

    if (!kg_ratelimit_auth_allowed(a->throttle, c->client_ip, kg_clock_now_ms(),
                                   &retry)) {
        char v[24];

        admin_reply_error(c, KG_ERR_AUTH_THROTTLED, NULL, NULL);
        snprintf(v, sizeof(v), "%lld", (long long)retry);
        if (c->resp != NULL) {
            MHD_add_response_header(c->resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
        }
        return false;
    }
    c->store = admin_store_take(a);
    rc = admin_authenticate(c, &diag);
    admin_store_give(a, c->store);
    c->store = NULL;
    if (rc == KG_ERR_ADMIN_AUTH) {
        KG_INFO("admin request %s: refused from %s: %s", c->request_id,
                c->client_ip, diag.msg);
        kg_ratelimit_auth_failed(a->throttle, c->client_ip, kg_clock_now_ms());
        kg_metrics_auth_failure(c->shard, KG_METRICS_AUTH_ADMIN);
        admin_reply_error(c, rc, NULL, NULL);
        return false;
    }
    if (rc == KG_ERR_FORBIDDEN) {
        KG_INFO("admin request %s: refused: %s", c->request_id, diag.msg);
        admin_reply_error(c, rc, "a missing or wrong X-CSRF-Token", NULL);
        return false;
    }
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, NULL);
        return false;
    }
    admin_set_actor(c);
    if (c->route->access == ADMIN_WRITE && c->who.read_only) {
        admin_reply_error(c, KG_ERR_FORBIDDEN, "this admin token is read-only.",
                          NULL);
        return false;
    }
    return true;
}

/* First call: route, arguments, size, credentials. True when answered. */
static bool admin_first_call(admin_req_t *r, const char *url)
{
    admin_ctx_t *c = &r->c;
    admin_argcheck_t ac;
    bool bad_method = false;

    if (admin_declared_too_large(c->conn,
                                 (size_t)c->cfg->admin_max_body_bytes)) {
        admin_reply_error(c, KG_ERR_BODY_TOO_LARGE, NULL, NULL);
        return true;
    }
    c->route = admin_route_find(c, c->method, url, &bad_method);
    if (c->route == NULL) {
        if (bad_method) {
            admin_reply_error(c, KG_ERR_METHOD, NULL, NULL);
        } else {
            admin_reply_error(c, KG_ERR_NO_ROUTE, "see /admin/v1/openapi.json",
                              NULL);
        }
        return true;
    }
    memset(&ac, 0, sizeof(ac));
    ac.allowed = c->route->args;
    MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, admin_check_arg,
                              &ac);
    if (ac.bad[0] != '\0') {
        char why[128];

        snprintf(why, sizeof(why), "%s: %s", ac.bad,
                 ac.too_long ? "the value is too long"
                             : "this route takes no such argument");
        admin_reply_error(c, KG_ERR_INVAL, why, ac.bad);
        return true;
    }
    if (c->route->access != ADMIN_PUBLIC && !admin_admit(c)) {
        return true;
    }
    return false;
}

/* Last call: the body is in; run the handler. */
static enum MHD_Result admin_run(admin_req_t *r)
{
    admin_ctx_t *c = &r->c;
    kg_diag_t diag = {{0}};

    if (r->body_too_large) {
        admin_reply_error(c, KG_ERR_BODY_TOO_LARGE, NULL, NULL);
        return admin_send(r);
    }
    if (admin_parse_body(r, &diag) != KG_OK) {
        admin_reply_error(c, KG_ERR_INVAL, diag.msg, NULL);
        return admin_send(r);
    }
    c->store = admin_store_take(c->admin);
    c->route->fn(c);
    kg_store_rollback(c->store); /* never leave a transaction open */
    admin_store_give(c->admin, c->store);
    c->store = NULL;
    return admin_send(r);
}

static enum MHD_Result admin_handler(void *cls, struct MHD_Connection *conn,
                                     const char *url, const char *method,
                                     const char *version,
                                     const char *upload_data,
                                     size_t *upload_data_size, void **con_cls)
{
    admin_loop_t *l = cls;
    kg_admin_t *a = l->admin;
    admin_req_t *r = *con_cls;

    (void)version;
    if (r == NULL) {
        unsigned long seq = atomic_fetch_add(&a->seq, 1);

        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            return MHD_NO;
        }
        *con_cls = r;
        r->c.admin = a;
        r->c.gw = a->gw;
        r->c.gen = kg_gateway_generation(a->gw);
        r->c.cfg = r->c.gen->cfg;
        r->c.start_us = kg_clock_mono_us();
        r->c.shard = kg_metrics_shard(a->gw->metrics,
                                      a->gw->nworkers_planned + l->index);
        r->c.conn = conn;
        r->c.method = method;
        r->c.tls = a->tls;
        snprintf(r->c.request_id, sizeof(r->c.request_id), "adm_%s%012lx",
                 a->id_prefix, seq);
        admin_client_ip(conn, r->c.client_ip, sizeof(r->c.client_ip));
        kg_buf_init(&r->body, (size_t)r->c.cfg->admin_max_body_bytes);
        if (admin_first_call(r, url)) {
            return admin_send(r);
        }
        return MHD_YES;
    }
    if (r->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!r->body_too_large &&
            kg_buf_append(&r->body, upload_data, *upload_data_size) != KG_OK) {
            r->body_too_large = true;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    return admin_run(r);
}

static void admin_completed(void *cls, struct MHD_Connection *conn,
                            void **con_cls, enum MHD_RequestTerminationCode toe)
{
    admin_req_t *r = *con_cls;

    (void)cls;
    (void)conn;
    if (r == NULL) {
        return;
    }
    if (!r->answered) {
        /* It ended before an answer (the client left mid-body, or was too
         * slow): its access line all the same. */
        bool timeout = toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED;

        r->c.status = timeout ? MHD_HTTP_REQUEST_TIMEOUT : 499;
        r->c.error = timeout ? "timeout" : "client_gone";
        admin_log_request(&r->c);
    }
    if (r->c.resp != NULL) {
        MHD_destroy_response(r->c.resp);
    }
    json_decref(r->c.body);
    /* A body may have held a provider credential (PUT .../credentials). */
    if (r->body.data != NULL) {
        sodium_memzero(r->body.data, r->body.cap);
    }
    kg_buf_free(&r->body);
    sodium_memzero(r->c.csrf, sizeof(r->c.csrf));
    kg_generation_unref(&r->c.gen);
    free(r);
    *con_cls = NULL;
}

static void admin_log_mhd(void *cls, const char *fmt, va_list ap)
{
    char line[512];

    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\r\n")] = '\0';
    KG_DEBUG("admin libmicrohttpd: %s", line);
}

/* ---- lifecycle --------------------------------------------------------- */

/* The listening socket every admin loop accepts from; -1 on error. */
static int admin_listen_socket(const char *listen_at, uint16_t *port,
                               bool *ipv6, kg_diag_t *diag)
{
    char host[KG_LISTEN_HOST_MAX];
    struct sockaddr_storage ss;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    socklen_t len;
    int portn = 0;
    int one = 1;
    int fd;

    memset(&ss, 0, sizeof(ss));
    if (kg_config_listen_parse(listen_at, host, sizeof(host), &portn, diag) !=
        KG_OK) {
        return -1;
    }
    *ipv6 = strchr(host, ':') != NULL;
    if (*ipv6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)&ss;

        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)portn);
        inet_pton(AF_INET6, host, &a6->sin6_addr);
        len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)&ss;

        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)portn);
        inet_pton(AF_INET, host, &a4->sin_addr);
        len = sizeof(*a4);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        kg_diag_fail(diag, KG_ERR_CONFIG, "[admin] cannot create a socket: %s",
                     strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (*ipv6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (const struct sockaddr *)&ss, len) != 0 ||
        listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        kg_diag_fail(diag, KG_ERR_CONFIG, "[admin] cannot listen on %s: %s",
                     listen_at, strerror(errno));
        close(fd);
        return -1;
    }
    *port = ntohs(bound.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)(void *)&bound)->sin6_port
                      : ((struct sockaddr_in *)(void *)&bound)->sin_port);
    return fd;
}

static void *admin_loop_main(void *arg)
{
    admin_loop_t *l = arg;
    struct epoll_event evs[8];
    char name[16];

    snprintf(name, sizeof(name), "kg-admin-%u", l->index);
    pthread_setname_np(pthread_self(), name);
    while (!atomic_load(&l->stopping)) {
        MHD_UNSIGNED_LONG_LONG mt = 0;
        int timeout = ADMIN_MAX_WAIT_MS;

        if (MHD_get_timeout(l->daemon, &mt) == MHD_YES &&
            mt < (MHD_UNSIGNED_LONG_LONG)timeout) {
            timeout = (int)mt;
        }
        if (epoll_wait(l->epfd, evs, 8, timeout) < 0 && errno != EINTR) {
            break;
        }
        MHD_run(l->daemon);
    }
    return NULL;
}

/*
 * A connection to a TLS admin listener opens or closes: it uses the
 * certificate of the configuration of its start to its end.
 */
static void admin_notify_connection(void *cls, struct MHD_Connection *conn,
                                    void **socket_context,
                                    enum MHD_ConnectionNotificationCode code)
{
    kg_admin_t *a = cls;
    kg_tls_conn_t *tc = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        kg_generation_t *g = kg_gateway_generation(a->gw);

        tc = calloc(1, sizeof(*tc));
        *socket_context = tc; /* NULL without memory: the handshake fails */
        if (tc != NULL) {
            kg_tls_conn_open(tc, conn, g->admin_tls);
        }
        kg_generation_unref(&g);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && tc != NULL) {
        kg_tls_conn_close(tc);
        free(tc);
        *socket_context = NULL;
    }
}

/* One loop's daemon on its duplicate of the listening socket. */
static kg_err_t admin_loop_start(kg_admin_t *a, const kg_config_t *cfg,
                                 admin_loop_t *l, int lfd, bool ipv6,
                                 unsigned nloops, kg_diag_t *diag)
{
    /* With TLS, the certificate comes from the connection's configuration
     * (kg_tls_cert_callback), so a reload changes it without a restart. */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)kg_tls_cert_callback},
        {MHD_OPTION_HTTPS_PRIORITIES, 0,
         (void *)kg_tls_priorities(cfg->admin_tls_min_version)},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)admin_notify_connection, a},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem no_opts[] = {{MHD_OPTION_END, 0, NULL}};
    const union MHD_DaemonInfo *info;
    struct epoll_event ev;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     (ipv6 ? MHD_USE_IPv6 : 0) | (a->tls ? MHD_USE_TLS : 0);
    unsigned conns =
        (unsigned)((cfg->admin_max_connections + nloops - 1) / nloops);
    int dfd = fcntl(lfd, F_DUPFD_CLOEXEC, 0);

    l->admin = a;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (dfd < 0 || l->epfd < 0 || l->wake_fd < 0) {
        if (dfd >= 0) {
            close(dfd);
        }
        return kg_diag_fail(diag, KG_ERR_INTERNAL,
                            "[admin] cannot set up a thread: %s",
                            strerror(errno));
    }
    l->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, admin_handler, l, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)dfd, MHD_OPTION_CONNECTION_LIMIT, conns,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)ADMIN_PER_IP_MAX,
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)((cfg->admin_timeout_ms + 999) / 1000),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_POOL_BYTES,
        MHD_OPTION_NOTIFY_COMPLETED, admin_completed, a,
        MHD_OPTION_EXTERNAL_LOGGER, admin_log_mhd, NULL, MHD_OPTION_ARRAY,
        a->tls ? tls_opts : no_opts, MHD_OPTION_END);
    if (l->daemon == NULL) {
        close(dfd);
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "[admin] cannot start the HTTP daemon on %s",
                            cfg->admin_listen);
    }
    info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    if (info == NULL ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, info->epoll_fd, &ev) != 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wake_fd, &ev) != 0) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL,
                            "[admin] cannot watch the HTTP daemon");
    }
    if (pthread_create(&l->thread, NULL, admin_loop_main, l) != 0) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL,
                            "[admin] cannot start a thread");
    }
    l->started = true;
    return KG_OK;
}

static void admin_loop_stop(admin_loop_t *l)
{
    uint64_t one = 1;

    if (l->started) {
        atomic_store(&l->stopping, true);
        if (write(l->wake_fd, &one, sizeof(one)) < 0) {
            /* EAGAIN: already signalled. */
        }
        pthread_join(l->thread, NULL);
        l->started = false;
    }
    if (l->daemon != NULL) {
        MHD_stop_daemon(l->daemon);
        l->daemon = NULL;
    }
    if (l->wake_fd >= 0) {
        close(l->wake_fd);
    }
    if (l->epfd >= 0) {
        close(l->epfd);
    }
    l->wake_fd = -1;
    l->epfd = -1;
}

kg_err_t kg_admin_start(kg_gateway_t *gw, kg_admin_t **out, uint16_t *port,
                        kg_diag_t *diag)
{
    const kg_config_t *cfg = gw->gen->cfg; /* the one the daemon starts with */
    kg_ratelimit_opts_t ropts;
    kg_admin_t *a = NULL;
    size_t n = (size_t)cfg->admin_threads;
    bool ipv6 = false;
    int lfd = -1;
    kg_err_t rc;

    *out = NULL;
    *port = 0;
    if (cfg->admin_listen == NULL || cfg->admin_listen[0] == '\0') {
        return KG_OK;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    a->gw = gw;
    a->tls = gw->gen->admin_tls != NULL;
    kg_token_random_base62(a->id_prefix, sizeof(a->id_prefix) - 1);
    memset(&ropts, 0, sizeof(ropts));
    ropts.max_keys = 1;
    ropts.auth_max_failures = ADMIN_AUTH_FAILURES;
    ropts.auth_window_ms = ADMIN_AUTH_WINDOW;
    ropts.auth_max_ips = 4096;
    rc = admin_pool_init(&a->pool, cfg, n, diag);
    if (rc == KG_OK &&
        (admin_sessions_new(cfg->admin_session_ttl, &a->sessions) != KG_OK ||
         kg_ratelimit_new(&ropts, &a->throttle) != KG_OK ||
         (a->loops = calloc(n, sizeof(*a->loops))) == NULL)) {
        rc = kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    if (rc == KG_OK) {
        lfd = admin_listen_socket(cfg->admin_listen, port, &ipv6, diag);
        rc = lfd < 0 ? KG_ERR_CONFIG : KG_OK;
    }
    for (size_t i = 0; rc == KG_OK && i < n; i++) {
        a->loops[i].index = (unsigned)i;
        a->loops[i].epfd = -1;
        a->loops[i].wake_fd = -1;
        a->nloops++;
        rc = admin_loop_start(a, cfg, &a->loops[i], lfd, ipv6, (unsigned)n,
                              diag);
    }
    if (lfd >= 0) {
        close(lfd); /* every daemon has its own duplicate */
    }
    if (rc != KG_OK) {
        kg_admin_stop(&a);
        *port = 0;
        return rc;
    }
    *out = a;
    return KG_OK;
}

void kg_admin_stop(kg_admin_t **pa)
{
    kg_admin_t *a;

    if (pa == NULL || *pa == NULL) {
        return;
    }
    a = *pa;
    for (size_t i = 0; i < a->nloops; i++) {
        admin_loop_stop(&a->loops[i]);
    }
    free(a->loops);
    admin_pool_clear(&a->pool);
    admin_sessions_free(&a->sessions);
    kg_ratelimit_free(&a->throttle);
    free(a);
    *pa = NULL;
}
