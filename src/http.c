/* The HTTP front end: libmicrohttpd, routes, credentials and error bodies. */
#include "keygate/gateway.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keygate/access.h"
#include "keygate/auth.h"
#include "keygate/clock.h"
#include "keygate/connlimit.h"
#include "keygate/exchange.h"
#include "keygate/framing.h"
#include "keygate/log.h"
#include "keygate/money.h"
#include "keygate/request.h"
#include "keygate/timefmt.h"
#include "keygate/tls.h"
#include "keygate/worker.h"

#define HTTP_MAX_HEADERS 100
#define HTTP_READ_BLOCK  (16 * 1024)
/*
 * libmicrohttpd answers 431 itself, with a short HTML body and without
 * x-request-id, when a request's line and headers do not fit in the
 * connection's memory pool (their text, plus 64 bytes of bookkeeping per
 * header line and query argument). keygate sizes the pool so that every
 * header block past max_header_bytes, up to max_header_bytes +
 * HTTP_HEADER_CAP_EXTRA bytes in up to HTTP_MAX_HEADERS lines (the hard
 * cap of docs/api.md), still reaches it and gets its JSON 431: the pool is
 * max_header_bytes + HTTP_POOL_EXTRA. Larger pools cost every request
 * (libmicrohttpd clears the whole pool for each) and every open connection.
 */
#define HTTP_HEADER_CAP_EXTRA (8 * 1024)
#define HTTP_POOL_EXTRA       (16 * 1024)
_Static_assert(HTTP_POOL_EXTRA >=
                   HTTP_HEADER_CAP_EXTRA + HTTP_MAX_HEADERS * 64 + 1024,
               "the pool holds the cap, the lines' bookkeeping and slack");

typedef enum http_kind {
    HTTP_ROUTE_MODELS,
    HTTP_ROUTE_MODEL,
    HTTP_ROUTE_KEY,
    HTTP_ROUTE_PROXY,
} http_kind_t;

/* One route: method ("*" = any), path, operation name, API, handler kind,
 * and its path as the access line shows it. */
typedef struct http_route {
    const char *method;
    const char *path;
    bool prefix;
    const char *operation;
    kg_provider_type_t api;
    http_kind_t kind;
    bool needs_model;
    const char *pattern;
} http_route_t;

static const http_route_t http_routes[] = {
    {"GET", "/v1/models", false, "models", KG_PROVIDER_OPENAI,
     HTTP_ROUTE_MODELS, false, "/v1/models"},
    {"GET", "/v1/key", false, "other", KG_PROVIDER_OPENAI, HTTP_ROUTE_KEY,
     false, "/v1/key"},
    {"POST", "/v1/chat/completions", false, "chat", KG_PROVIDER_OPENAI,
     HTTP_ROUTE_PROXY, true, "/v1/chat/completions"},
    {"POST", "/v1/completions", false, "completions", KG_PROVIDER_OPENAI,
     HTTP_ROUTE_PROXY, true, "/v1/completions"},
    {"POST", "/v1/embeddings", false, "embeddings", KG_PROVIDER_OPENAI,
     HTTP_ROUTE_PROXY, true, "/v1/embeddings"},
    {"POST", "/v1/responses", false, "responses", KG_PROVIDER_OPENAI,
     HTTP_ROUTE_PROXY, true, "/v1/responses"},
    {"POST", "/v1/moderations", false, "moderations", KG_PROVIDER_OPENAI,
     HTTP_ROUTE_PROXY, false, "/v1/moderations"},
    {"POST", "/v1/messages", false, "messages", KG_PROVIDER_ANTHROPIC,
     HTTP_ROUTE_PROXY, true, "/v1/messages"},
    {"POST", "/v1/messages/count_tokens", false, "messages",
     KG_PROVIDER_ANTHROPIC, HTTP_ROUTE_PROXY, true,
     "/v1/messages/count_tokens"},
    {"GET", "/v1/models/", true, "models", KG_PROVIDER_OPENAI, HTTP_ROUTE_MODEL,
     false, "/v1/models/{model}"},
    /* Every other /v1/ path goes to an OpenAI-type provider. */
    {"*", "/v1/", true, "other", KG_PROVIDER_OPENAI, HTTP_ROUTE_PROXY, false,
     "/v1/*"},
};

/* Per-request state of the HTTP side (libmicrohttpd's con_cls). */
typedef struct http_req {
    kg_gateway_t *gw;
    kg_proxy_t *proxy; /* the connection's worker's */
    /* The configuration the request started with, to its end (one use of
     * the worker's slot), and the model and provider it routed to. */
    kg_gen_slot_t *gen;
    const kg_config_t *cfg;
    const kg_model_t *model;
    const kg_provider_t *prov;
    const char *error;    /* the code of keygate's error answer, or NULL */
    const char *endpoint; /* the route's pattern (static), or NULL */
    char method[KG_METHOD_MAX + 1];
    const http_route_t *route;
    char request_id[KG_REQUEST_ID_LEN + 1];
    char client_ip[KG_CLIENT_IP_MAX];
    kg_key_view_t key;
    kg_buf_t body;
    bool body_too_large;
    bool answered;     /* a response is queued */
    kg_exchange_t *ex; /* the HTTP side's reference */
    int64_t start_us;
    int64_t retry_after; /* seconds, for a 429; 0 = none */
    kg_err_t deferred;   /* refusal queued once the body is in */
    char deferred_detail[256];
    const kg_ratelimit_info_t *rate; /* x-ratelimit-* headers, or NULL */
    kg_metrics_shard_t *metrics;     /* the worker's shard */
} http_req_t;

/*
 * Per connection (libmicrohttpd's socket context): the certificate it
 * uses on a TLS listener (first: kg_tls_cert_callback finds it there), its
 * place in the shared connection limits and on its worker's header
 * deadline list.
 */
typedef struct http_conn {
    kg_tls_conn_t tls;
    kg_connlimit_slot_t *slot; /* NULL: over a limit, refuse */
    kg_worker_wait_t wait;
} http_conn_t;

/* Header collection for the pure framing and credential checks. */
typedef struct http_headers {
    kg_header_t h[HTTP_MAX_HEADERS];
    size_t n;
    size_t bytes;
    bool overflow;
} http_headers_t;

static enum MHD_Result http_collect_header(void *cls, enum MHD_ValueKind kind,
                                           const char *key, size_t key_size,
                                           const char *value, size_t value_size)
{
    http_headers_t *hs = cls;

    (void)kind;
    hs->bytes += key_size + value_size + 4;
    if (hs->n == HTTP_MAX_HEADERS) {
        hs->overflow = true;
        return MHD_NO;
    }
    hs->h[hs->n].name = key;
    hs->h[hs->n].name_len = key_size;
    hs->h[hs->n].value = value ? value : "";
    hs->h[hs->n].value_len = value ? value_size : 0;
    hs->n++;
    return MHD_YES;
}

/*
 * The query arguments: their size counts toward max_header_bytes (the
 * request line), and a key among them is refused even next to a good
 * header.
 */
typedef struct http_args {
    size_t bytes;
    bool key_found;
} http_args_t;

static enum MHD_Result http_check_arg(void *cls, enum MHD_ValueKind kind,
                                      const char *key, size_t key_size,
                                      const char *value, size_t value_size)
{
    http_args_t *args = cls;

    (void)kind;
    args->bytes += key_size + (value ? value_size : 0) + 2;
    if (!args->key_found && kg_auth_query_arg_has_key(key, key_size, value,
                                                      value ? value_size : 0)) {
        args->key_found = true;
    }
    return MHD_YES;
}

/* x-ratelimit-* headers, for the limits the key has (OpenAI's names). */
static void http_add_rate_headers(struct MHD_Response *resp,
                                  const kg_ratelimit_info_t *ri)
{
    char v[32];

    if (ri->limit_requests >= 0) {
        snprintf(v, sizeof(v), "%lld", (long long)ri->limit_requests);
        MHD_add_response_header(resp, "x-ratelimit-limit-requests", v);
        snprintf(v, sizeof(v), "%lld", (long long)ri->remaining_requests);
        MHD_add_response_header(resp, "x-ratelimit-remaining-requests", v);
        kg_ratelimit_format_reset(ri->reset_requests_ms, v, sizeof(v));
        MHD_add_response_header(resp, "x-ratelimit-reset-requests", v);
    }
    if (ri->limit_tokens >= 0) {
        snprintf(v, sizeof(v), "%lld", (long long)ri->limit_tokens);
        MHD_add_response_header(resp, "x-ratelimit-limit-tokens", v);
        snprintf(v, sizeof(v), "%lld", (long long)ri->remaining_tokens);
        MHD_add_response_header(resp, "x-ratelimit-remaining-tokens", v);
        kg_ratelimit_format_reset(ri->reset_tokens_ms, v, sizeof(v));
        MHD_add_response_header(resp, "x-ratelimit-reset-tokens", v);
    }
}

static void http_add_common(struct MHD_Response *resp, const http_req_t *req)
{
    MHD_add_response_header(resp, "x-request-id", req->request_id);
    if (req->retry_after > 0) {
        char v[24];

        snprintf(v, sizeof(v), "%lld", (long long)req->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    if (req->rate != NULL) {
        http_add_rate_headers(resp, req->rate);
    }
}

/*
 * A request keygate answered itself ends (a forwarded one is summed up by
 * the proxy with its usage): its summary goes to the worker's metrics
 * shard and, with [server] request_log, to the access log.
 */
static void http_count(const http_req_t *req, unsigned status)
{
    kg_request_summary_t m;

    if (req->ex != NULL && req->ex->counted) {
        return;
    }
    memset(&m, 0, sizeof(m));
    m.request_id = req->request_id;
    m.method = req->method;
    m.route = req->route ? req->route->operation : "other";
    m.endpoint = req->endpoint;
    m.status = (int)status;
    m.key_id = req->key.id;
    m.workspace_id = req->key.id[0] ? req->key.workspace_id : NULL;
    m.model = req->model ? req->model->name : NULL;
    m.provider = req->prov ? req->prov->name : NULL;
    m.client_ip = req->client_ip;
    m.error = req->error;
    m.duration_us = kg_clock_mono_us() - req->start_us;
    m.upstream_us = -1;
    m.ttft_us = -1;
    if (req->metrics != NULL) {
        kg_metrics_record(req->metrics, &m);
    }
    if (req->cfg->server_request_log) {
        kg_access_log(&m);
    }
}

/* Count a refused credential or a policy refusal by its error. */
static void http_count_refusal(const http_req_t *req, kg_err_t err)
{
    switch (err) {
    case KG_ERR_NO_KEY:
        kg_metrics_auth_failure(req->metrics, KG_METRICS_AUTH_MISSING);
        break;
    case KG_ERR_INVALID_KEY:
        kg_metrics_auth_failure(req->metrics, KG_METRICS_AUTH_INVALID);
        break;
    case KG_ERR_KEY_EXPIRED:
        kg_metrics_auth_failure(req->metrics, KG_METRICS_AUTH_EXPIRED);
        break;
    case KG_ERR_AUTH_THROTTLED:
        kg_metrics_auth_failure(req->metrics, KG_METRICS_AUTH_THROTTLED);
        break;
    case KG_ERR_USAGE_LIMIT:
    case KG_ERR_PERIOD_LIMIT:
        kg_metrics_refused(req->metrics, KG_METRICS_REFUSED_BUDGET);
        break;
    case KG_ERR_NO_CREDITS:
        kg_metrics_refused(req->metrics, KG_METRICS_REFUSED_CREDITS);
        break;
    case KG_ERR_RATE_LIMITED:
        kg_metrics_refused(req->metrics, KG_METRICS_REFUSED_RATE);
        break;
    case KG_ERR_ACCESS_DENIED:
        kg_metrics_refused(req->metrics, KG_METRICS_REFUSED_ACCESS);
        break;
    default:
        break;
    }
}

/* Queue a JSON body with status; copies body. */
static enum MHD_Result http_queue_json(struct MHD_Connection *conn,
                                       http_req_t *req, unsigned status,
                                       const char *body, size_t len, bool close)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(len, (void *)body,
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    http_add_common(resp, req);
    if (close) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    if (status == 401) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"keygate\"");
    }
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    http_count(req, status);
    req->answered = true;
    return ret;
}

/* Answer with keygate's error body for err (detail fills "%s"). */
static enum MHD_Result http_error(struct MHD_Connection *conn, http_req_t *req,
                                  kg_err_t err, const char *detail, bool close)
{
    char msg[512];
    int status = kg_err_http_status(err);
    json_t *j;
    char *body;
    enum MHD_Result ret;

    kg_err_format(err, detail, msg, sizeof(msg));
    j = json_pack("{s:{s:s, s:s, s:s}, s:i, s:s}", "error", "message", msg,
                  "type", kg_err_type(err), "code", kg_err_code(err), "status",
                  status, "message", msg);
    body = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (body == NULL) {
        return MHD_NO;
    }
    http_count_refusal(req, err);
    req->error = kg_err_code(err);
    ret =
        http_queue_json(conn, req, (unsigned)status, body, strlen(body), close);
    free(body);
    return ret;
}

static const http_route_t *http_route_find(const char *method, const char *url,
                                           bool *bad_method)
{
    *bad_method = false;
    if (strncmp(url, "/v1/v1/", 7) == 0) {
        return NULL; /* a base URL with /v1 twice: say so, do not guess */
    }
    for (size_t i = 0; i < sizeof(http_routes) / sizeof(*http_routes); i++) {
        const http_route_t *r = &http_routes[i];
        bool path_ok = r->prefix ? strncmp(url, r->path, strlen(r->path)) == 0
                                 : strcmp(url, r->path) == 0;

        if (!path_ok) {
            continue;
        }
        if (strcmp(r->method, "*") == 0 || strcmp(r->method, method) == 0) {
            return r;
        }
        *bad_method = true;
        return NULL;
    }
    return NULL;
}

static void http_client_ip(struct MHD_Connection *conn, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(buf, len, "unknown");
    if (sa == NULL) {
        return;
    }
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET,
                  &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                  buf, (socklen_t)len);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6,
                  &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  buf, (socklen_t)len);
    }
}

static json_t *http_model_json(const kg_model_t *m)
{
    return json_pack("{s:s, s:s, s:i, s:s}", "id", m->name, "object", "model",
                     "created", 0, "owned_by", m->provider->name);
}

/* Queue body (new, freed by MHD) as a private JSON answer. */
static enum MHD_Result http_queue_private(struct MHD_Connection *conn,
                                          http_req_t *req, unsigned status,
                                          json_t *j)
{
    char *body = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    json_decref(j);
    if (body == NULL) {
        return MHD_NO;
    }
    resp = MHD_create_response_from_buffer(strlen(body), body,
                                           MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                            "private, no-store");
    http_add_common(resp, req);
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    http_count(req, status);
    req->answered = true;
    return ret;
}

/*
 * The "models" operation itself is subject to the key's rules and rate
 * limits; it costs nothing. Returns true when the request was answered
 * (refused).
 */
static bool http_admit_models(struct MHD_Connection *conn, http_req_t *req,
                              enum MHD_Result *ret)
{
    kg_policy_request_t preq;
    kg_policy_ticket_t t;
    kg_policy_denial_t d;
    int64_t now = kg_clock_now_ms();

    memset(&preq, 0, sizeof(preq));
    preq.key = &req->key;
    preq.operation = "models";
    preq.client_ip = req->client_ip;
    preq.max_tokens = 0;
    preq.no_charge = true;
    if (kg_policy_admit(req->gw->policy, &preq, now, &t, &d) != KG_OK) {
        req->retry_after = d.retry_after;
        req->rate = d.err == KG_ERR_RATE_LIMITED ? &d.rate_info : NULL;
        *ret = http_error(conn, req, d.err, d.detail, false);
        req->rate = NULL;
        return true;
    }
    kg_policy_settle(req->gw->policy, &t, 0, 0, now);
    return false;
}

/* GET /v1/models: the models the key may use, OpenAI list format. */
static enum MHD_Result http_models(struct MHD_Connection *conn, http_req_t *req)
{
    const kg_config_t *cfg = req->cfg;
    enum MHD_Result ret;
    json_t *data;

    if (http_admit_models(conn, req, &ret)) {
        return ret;
    }
    data = json_array();
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const kg_model_t *m = &cfg->models[i];

        if (kg_policy_model_visible(req->gw->policy, &req->key, m,
                                    req->client_ip)) {
            json_array_append_new(data, http_model_json(m));
        }
    }
    return http_queue_private(
        conn, req, MHD_HTTP_OK,
        json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* GET /v1/models/{model}: one model, if the key may use it. */
static enum MHD_Result http_model(struct MHD_Connection *conn, http_req_t *req,
                                  const char *url)
{
    const char *name = url + strlen("/v1/models/");
    const kg_model_t *m;
    enum MHD_Result ret;

    if (http_admit_models(conn, req, &ret)) {
        return ret;
    }
    m = kg_providers_route(req->cfg, name, NULL);
    if (m == NULL || !kg_policy_model_visible(req->gw->policy, &req->key, m,
                                              req->client_ip)) {
        return http_error(conn, req, KG_ERR_UNKNOWN_MODEL, name, false);
    }
    req->model = m;
    return http_queue_private(conn, req, MHD_HTTP_OK, http_model_json(m));
}

/* GET /v1/key: the calling key, never its secret. */
static enum MHD_Result http_key_info(struct MHD_Connection *conn,
                                     http_req_t *req)
{
    const kg_key_view_t *k = &req->key;
    char display[KG_TOKEN_DISPLAY_STRLEN];
    char expires[KG_TIME_STRLEN];
    char reset[KG_TIME_STRLEN];
    kg_budget_key_view_t b;
    int64_t remaining = -1;
    json_t *j;
    char *body;
    enum MHD_Result ret;

    if (kg_policy_key_budget(req->gw->policy, k, kg_clock_now(), &b) != KG_OK) {
        return http_error(conn, req, KG_ERR_UNAVAILABLE,
                          "the key store is unavailable.", false);
    }
    if (b.usage_limit >= 0) {
        remaining = b.remaining;
    }
    j = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
        "object", "key", "id", k->id, "name", k->name, "display",
        kg_token_display(k->prefix, k->id, k->last4, display, sizeof(display)),
        "status", kg_key_status_name(k->status), "expiresAt",
        k->expires_at < 0 ? json_null()
                          : json_string(kg_time_format(k->expires_at, expires,
                                                       sizeof(expires))),
        "usage", kg_money_json(b.usage), "usageLimit",
        kg_money_json(b.usage_limit), "remaining", kg_money_json(remaining),
        "period",
        k->period ? json_string(kg_period_name(k->period)) : json_null(),
        "periodLimit", kg_money_json(b.period_limit), "periodUsage",
        kg_money_json(k->period ? b.period_usage : -1));
    if (j != NULL) {
        json_t *rl = json_object();

        json_object_set_new(j, "reserved", kg_money_json(b.reserved));
        json_object_set_new(j, "periodResetsAt",
                            k->period
                                ? json_string(kg_time_format(
                                      b.period_reset, reset, sizeof(reset)))
                                : json_null());
        json_object_set_new(rl, "rpm",
                            k->rpm < 0 ? json_null() : json_integer(k->rpm));
        json_object_set_new(rl, "tpm",
                            k->tpm < 0 ? json_null() : json_integer(k->tpm));
        json_object_set_new(rl, "maxConcurrent",
                            k->max_concurrent < 0
                                ? json_null()
                                : json_integer(k->max_concurrent));
        json_object_set_new(j, "rateLimits", rl);
        json_object_set_new(j, "currency", json_string(KG_MONEY_UNIT));
    }
    body = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (body == NULL) {
        return MHD_NO;
    }
    ret = http_queue_json(conn, req, MHD_HTTP_OK, body, strlen(body), false);
    free(body);
    return ret;
}

/*
 * Behind a trusted proxy the client is named by X-Forwarded-For (every
 * such header, joined in order); otherwise it is the socket peer.
 */
static void http_forwarded_client(http_req_t *req, const http_headers_t *hs)
{
    char xff[KG_XFF_ENTRIES_MAX * (KG_XFF_ENTRY_MAX + 1) + 1];
    char peer[KG_CLIENT_IP_MAX];
    size_t used = 0;
    bool any = false;

    for (size_t i = 0; i < hs->n; i++) {
        const kg_header_t *h = &hs->h[i];

        if (!kg_framing_name_is(h, "X-Forwarded-For")) {
            continue;
        }
        if (used + h->value_len + 2 > sizeof(xff)) {
            return; /* too long to trust: keep the peer */
        }
        if (any) {
            xff[used++] = ',';
        }
        memcpy(xff + used, h->value, h->value_len);
        used += h->value_len;
        any = true;
    }
    if (!any) {
        return;
    }
    xff[used] = '\0';
    memcpy(peer, req->client_ip, sizeof(peer));
    kg_rules_client_ip(peer, xff, req->gw->trusted_proxies, req->client_ip,
                       sizeof(req->client_ip));
}

/*
 * Remember a refusal to answer once the request is fully read: answering
 * before the body would make libmicrohttpd close the connection, so
 * refusals keep keep-alive this way. Returns false ("not answered yet").
 */
static bool http_defer(http_req_t *req, kg_err_t err, const char *detail)
{
    req->deferred = err;
    snprintf(req->deferred_detail, sizeof(req->deferred_detail), "%s",
             detail ? detail : "");
    return false;
}

/* A Content-Length above the limit: refuse without reading the body. */
static bool http_declared_too_large(const http_headers_t *hs, size_t max)
{
    for (size_t i = 0; i < hs->n; i++) {
        if (kg_framing_name_is(&hs->h[i], "Content-Length")) {
            char digits[24];
            size_t n = hs->h[i].value_len;

            if (n == 0 || n >= sizeof(digits)) {
                return n >= sizeof(digits);
            }
            memcpy(digits, hs->h[i].value, n);
            digits[n] = '\0';
            return strtoull(digits, NULL, 10) > max;
        }
    }
    return false;
}

/*
 * GET /healthz and /readyz on the client listener ([server] health_routes),
 * for load balancers. No store read here: readiness is the maintenance
 * thread's last look at the store (every KG_POLICY_REFRESH_MS), the
 * workers and the drain.
 */
static enum MHD_Result http_health(struct MHD_Connection *conn, http_req_t *req,
                                   bool ready_check)
{
    kg_gateway_t *gw = req->gw;
    bool draining = atomic_load(&gw->draining);
    bool store = atomic_load(&gw->store_ok);
    bool ready = !draining && store && gw->nworkers > 0;

    if (!ready_check) {
        return http_queue_private(conn, req, MHD_HTTP_OK,
                                  json_pack("{s:s}", "status", "ok"));
    }
    return http_queue_private(
        conn, req, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
        json_pack("{s:s, s:{s:b, s:b, s:b}, s:o}", "status",
                  ready ? "ready" : "not ready", "checks", "store", store,
                  "workers", gw->nworkers > 0, "draining", draining, "config",
                  kg_generation_json(req->gen->gen)));
}

/* First call: framing, route, credentials. Returns true when answered. */
static bool http_first_call(struct MHD_Connection *conn, http_req_t *req,
                            const char *method, const char *url,
                            const char *version, enum MHD_Result *ret)
{
    kg_gateway_t *gw = req->gw;
    http_headers_t hs;
    http_args_t args = {0, false};
    kg_token_t tok;
    kg_diag_t diag = {{0}};
    bool bad_method = false;
    kg_err_t rc;

    memset(&hs, 0, sizeof(hs));
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, http_collect_header,
                                &hs);
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, http_check_arg,
                                &args);
    /* The request line ("GET /path?query HTTP/1.1\r\n") and the blank
     * line after the headers count too: the block as sent. */
    hs.bytes += strlen(method) + strlen(url) + strlen(version) + 6 + args.bytes;
    if (hs.overflow || hs.bytes > (size_t)req->cfg->server_max_header_bytes) {
        *ret = http_error(conn, req, KG_ERR_HEADERS_TOO_LARGE, NULL, true);
        return true;
    }
    rc = kg_framing_check(hs.h, hs.n, strcmp(version, "HTTP/1.1") == 0, &diag);
    if (rc != KG_OK) {
        *ret = http_error(conn, req, rc, diag.msg, true);
        return true;
    }
    if (gw->trusted_proxies != NULL) {
        http_forwarded_client(req, &hs);
    }
    if (http_declared_too_large(&hs, (size_t)req->cfg->server_max_body_bytes)) {
        /* Refused before reading it; the connection closes. */
        *ret = http_error(conn, req, KG_ERR_BODY_TOO_LARGE, NULL, true);
        return true;
    }
    if (req->cfg->server_health_routes && strcmp(method, "GET") == 0 &&
        (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0)) {
        req->endpoint = strcmp(url, "/readyz") == 0 ? "/readyz" : "/healthz";
        *ret = http_health(conn, req, strcmp(url, "/readyz") == 0);
        return true;
    }
    if (atomic_load(&gw->draining)) {
        *ret =
            http_error(conn, req, KG_ERR_UNAVAILABLE, "shutting down.", true);
        return true;
    }
    req->route = http_route_find(method, url, &bad_method);
    req->endpoint = req->route ? req->route->pattern : NULL;
    if (req->route == NULL) {
        return bad_method ? http_defer(req, KG_ERR_METHOD, NULL)
               : strncmp(url, "/v1/v1/", 7) == 0
                   ? http_defer(req, KG_ERR_NO_ROUTE,
                                "the path has /v1 twice; check the client's "
                                "base URL.")
                   : http_defer(req, KG_ERR_NO_ROUTE,
                                "only /v1/ paths are served.");
    }
    {
        int64_t retry = 0;

        if (!kg_policy_auth_allowed(gw->policy, req->client_ip,
                                    kg_clock_now_ms(), &retry)) {
            req->retry_after = retry;
            return http_defer(req, KG_ERR_AUTH_THROTTLED, NULL);
        }
    }
    rc = kg_auth_extract(hs.h, hs.n, NULL, &tok, NULL, &diag);
    if (args.key_found) {
        kg_token_wipe(&tok);
        rc = kg_diag_fail(&diag, KG_ERR_INVALID_KEY, "a key in the query");
    }
    if (rc == KG_OK) {
        rc = kg_keycache_verify(gw->keycache, &tok, &req->key);
        kg_token_wipe(&tok);
    }
    if (rc != KG_OK) {
        if (kg_err_is_store(rc) || rc == KG_ERR_NOMEM ||
            rc == KG_ERR_INTERNAL) {
            KG_ERROR("request %s: key verification failed: %s", req->request_id,
                     kg_err_name(rc));
            return http_defer(req, KG_ERR_UNAVAILABLE,
                              "the key store is unavailable.");
        }
        if (diag.msg[0] != '\0') {
            KG_DEBUG("request %s: credential refused: %s", req->request_id,
                     diag.msg);
        }
        if (rc != KG_ERR_NO_KEY) {
            kg_policy_auth_failed(gw->policy, req->client_ip,
                                  kg_clock_now_ms());
        }
        return http_defer(req, rc, NULL);
    }
    return false;
}

/* The first OpenAI-type provider, for paths that name no model. */
static const kg_provider_t *http_default_provider(const kg_config_t *cfg,
                                                  kg_provider_type_t api)
{
    for (size_t i = 0; i < cfg->nproviders; i++) {
        if (cfg->providers[i].type == api) {
            return &cfg->providers[i];
        }
    }
    return NULL;
}

/* Headers sent upstream: an allowlist plus the provider credential. */
static struct curl_slist *http_upstream_headers(struct MHD_Connection *conn,
                                                const kg_provider_t *prov,
                                                const char *credential)
{
    static const char *const pass[] = {"anthropic-version", "anthropic-beta",
                                       "openai-beta"};
    struct curl_slist *list = NULL;
    struct curl_slist *next;
    char line[8192];
    const char *accept =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
    bool have_version = false;

#define HTTP_ADD(s)                          \
    do {                                     \
        next = curl_slist_append(list, (s)); \
        if (next == NULL) {                  \
            goto fail;                       \
        }                                    \
        list = next;                         \
    } while (0)

    HTTP_ADD("Content-Type: application/json");
    HTTP_ADD("Expect:");
    HTTP_ADD("User-Agent: keygate/" KEYGATE_VERSION);
    if (accept != NULL && strlen(accept) < 256) {
        snprintf(line, sizeof(line), "Accept: %s", accept);
        HTTP_ADD(line);
    }
    for (size_t i = 0; i < sizeof(pass) / sizeof(*pass); i++) {
        const char *v =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, pass[i]);

        if (v != NULL && strlen(v) < 1024) {
            snprintf(line, sizeof(line), "%s: %s", pass[i], v);
            HTTP_ADD(line);
            have_version |= strcmp(pass[i], "anthropic-version") == 0;
        }
    }
    if (prov->type == KG_PROVIDER_ANTHROPIC && !have_version) {
        HTTP_ADD("anthropic-version: 2023-06-01");
    }
    if (credential != NULL) {
        snprintf(line, sizeof(line),
                 prov->type == KG_PROVIDER_ANTHROPIC ? "x-api-key: %s"
                                                     : "Authorization: "
                                                       "Bearer %s",
                 credential);
        HTTP_ADD(line);
        explicit_bzero(line, sizeof(line));
    }
#undef HTTP_ADD
    return list;
fail:
    explicit_bzero(line, sizeof(line));
    curl_slist_free_all(list);
    return NULL;
}

/*
 * Inspect the body and pick the model and provider. Returns true when the
 * request was answered (refused) instead.
 */
static bool http_route_request(struct MHD_Connection *conn, http_req_t *req,
                               kg_request_info_t *info,
                               const kg_model_t **model,
                               const kg_provider_t **prov, enum MHD_Result *ret)
{
    const kg_config_t *cfg = req->cfg;
    const http_route_t *route = req->route;
    kg_diag_t diag = {{0}};

    memset(info, 0, sizeof(*info));
    info->max_tokens = KG_NONE;
    *model = NULL;
    *prov = NULL;
    if (req->body.len > 0 && kg_request_inspect(req->body.data, req->body.len,
                                                info, &diag) != KG_OK) {
        *ret = http_error(conn, req, KG_ERR_BAD_REQUEST, diag.msg, false);
        return true;
    }
    if (route->needs_model && !info->has_model) {
        *ret = http_error(conn, req, KG_ERR_BAD_REQUEST,
                          "the request body needs a \"model\".", false);
        return true;
    }
    if (info->has_model) {
        *model = kg_providers_route(cfg, info->model, NULL);
        if (*model == NULL || (*model)->provider->type != route->api) {
            *model = NULL;
            *ret =
                http_error(conn, req, KG_ERR_UNKNOWN_MODEL, info->model, false);
            return true;
        }
        *prov = (*model)->provider;
        req->model = *model;
        req->prov = *prov;
        return false;
    }
    *prov = http_default_provider(cfg, route->api);
    if (*prov == NULL) {
        *ret = http_error(conn, req, KG_ERR_NO_ROUTE,
                          "no provider serves this path.", false);
        return true;
    }
    req->prov = *prov;
    return false;
}

/*
 * The body to send upstream, into ex: the client's bytes, moved (never
 * copied), with the upstream model and include_usage spliced in when
 * needed; a small body is rewritten into a new buffer, a large one keeps
 * the edits for the proxy to splice on the way (kg_request_edits_read).
 */
static kg_err_t http_upstream_body(http_req_t *req,
                                   const kg_request_info_t *info,
                                   const kg_model_t *model, kg_exchange_t *ex)
{
    const http_route_t *route = req->route;
    bool add_usage = info->stream && !info->client_include_usage &&
                     route->api == KG_PROVIDER_OPENAI &&
                     (strcmp(route->operation, "chat") == 0 ||
                      strcmp(route->operation, "completions") == 0);
    kg_request_edits_t *edits = &ex->edits;
    kg_err_t rc;

    if (req->body.len == 0) {
        return KG_OK;
    }
    if (model != NULL &&
        (add_usage || strcmp(model->upstream, info->model) != 0)) {
        rc = kg_request_edits_make(req->body.data, req->body.len, info,
                                   model->upstream, add_usage, edits);
        if (rc != KG_OK) {
            return rc;
        }
    }
    if (edits->n > 0 && edits->out_len <= KG_REQUEST_SPLICE_MIN) {
        ex->body = malloc(edits->out_len + 1);
        if (ex->body == NULL) {
            return KG_ERR_NOMEM;
        }
        ex->body_len = kg_request_edits_read(
            req->body.data, req->body.len, edits, 0, ex->body, edits->out_len);
        ex->body[ex->body_len] = '\0';
        kg_request_edits_clear(edits);
        kg_buf_free(&req->body);
        return KG_OK;
    }
    ex->body = kg_buf_steal(&req->body, &ex->body_len);
    return KG_OK;
}

/* Body complete: route, admit, build the exchange and hand it over. */
static enum MHD_Result http_forward(struct MHD_Connection *conn,
                                    http_req_t *req, const char *url)
{
    kg_gateway_t *gw = req->gw;
    kg_request_info_t info;
    kg_policy_request_t preq;
    kg_policy_ticket_t ticket;
    kg_policy_denial_t denial;
    const kg_model_t *model = NULL;
    const kg_provider_t *prov = NULL;
    kg_exchange_t *ex = NULL;
    enum MHD_Result ret = MHD_YES;
    size_t url_len;

    if (http_route_request(conn, req, &info, &model, &prov, &ret)) {
        return ret;
    }
    memset(&preq, 0, sizeof(preq));
    preq.key = &req->key;
    preq.model = model;
    preq.provider = prov;
    preq.operation = req->route->operation;
    preq.client_ip = req->client_ip;
    preq.max_tokens = info.max_tokens;
    preq.input_estimate = info.input_estimate_tokens;
    preq.input_bound = (int64_t)req->body.len;
    /* A place for its usage event first: a request is answered only when
     * its usage can be recorded (shed before anything is spent). */
    if (kg_usagedb_hold(gw->usage) != KG_OK) {
        req->retry_after = 1;
        return http_error(conn, req, KG_ERR_UNAVAILABLE,
                          "usage recording is behind; retry later.", false);
    }
    if (kg_policy_admit(gw->policy, &preq, kg_clock_now_ms(), &ticket,
                        &denial) != KG_OK) {
        kg_usagedb_unhold(gw->usage);
        req->retry_after = denial.retry_after;
        req->rate =
            denial.err == KG_ERR_RATE_LIMITED ? &denial.rate_info : NULL;
        ret = http_error(conn, req, denial.err, denial.detail, false);
        req->rate = NULL;
        return ret;
    }
    /* From here on the ticket belongs to the exchange, which settles it. */
    ex = kg_exchange_new(SIZE_MAX / 2);
    if (ex == NULL) {
        kg_usagedb_unhold(gw->usage);
        kg_policy_settle(gw->policy, &ticket, 0, 0, kg_clock_now_ms());
        return http_error(conn, req, KG_ERR_NOMEM, NULL, false);
    }
    ex->policy = gw->policy;
    ex->ticket = ticket;
    ex->usage_place = gw->usage;
    if (http_upstream_body(req, &info, model, ex) != KG_OK) {
        kg_exchange_unref(ex);
        return http_error(conn, req, KG_ERR_BAD_REQUEST,
                          "the request body could not be rewritten.", false);
    }
    url_len = strlen(prov->base_url) + strlen(url) + 1;
    ex->url = malloc(url_len);
    ex->curl_headers = http_upstream_headers(
        conn, prov,
        ex->ticket.credential ? ex->ticket.credential : prov->credential);
    if (ex->url == NULL || ex->curl_headers == NULL ||
        kg_providers_upstream_url(prov, url, ex->url, url_len) != KG_OK) {
        curl_slist_free_all(ex->curl_headers);
        ex->curl_headers = NULL;
        kg_exchange_unref(ex);
        return http_error(conn, req, KG_ERR_NOMEM, NULL, false);
    }
    memcpy(ex->request_id, req->request_id, sizeof(ex->request_id));
    ex->key = req->key;
    ex->model = model;
    ex->provider = prov;
    ex->operation = req->route->operation;
    ex->endpoint = req->route->pattern;
    memcpy(ex->client_ip, req->client_ip, sizeof(ex->client_ip));
    ex->stream_requested = info.stream;
    ex->client_wants_usage = info.client_include_usage;
    ex->input_estimate = info.input_estimate_tokens;
    ex->start_us = req->start_us;
    memcpy(ex->method, req->method, sizeof(ex->method));
    ex->max_response_bytes = (size_t)req->cfg->upstream_max_response_bytes;
    ex->log_request = req->cfg->server_request_log;
    ex->conn = conn;
    {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

        ex->client_fd = ci ? ci->connect_fd : -1;
    }
    ex->wake_loop = kg_proxy_wake_loop;
    ex->wake_loop_ud = req->proxy;
    ex->suspended = true;
    kg_exchange_ref(ex); /* the proxy's reference */
    ex->gen = req->gen;  /* and its use of the configuration */
    kg_gen_slot_hold(ex->gen);
    req->ex = ex;
    MHD_suspend_connection(conn);
    kg_proxy_submit(req->proxy, ex);
    return MHD_YES;
}

/* Content reader of a relayed SSE stream. */
static ssize_t http_stream_reader(void *cls, uint64_t pos, char *buf,
                                  size_t max)
{
    http_req_t *req = cls;
    kg_exchange_t *ex = req->ex;
    bool unpause = false;
    ssize_t n;

    (void)pos;
    pthread_mutex_lock(&ex->mu);
    if (ex->out.len > 0) {
        size_t take = ex->out.len < max ? ex->out.len : max;

        memcpy(buf, ex->out.data, take);
        kg_buf_consume(&ex->out, take);
        if (ex->paused && !ex->unpause_asked &&
            ex->out.len < KG_RELAY_LOW_WATER) {
            ex->unpause_asked = true;
            unpause = true;
        }
        n = (ssize_t)take;
    } else if (ex->upstream_done && !ex->holding) {
        /* A stream cut short ends without the chunked terminator, so the
         * client sees the truncation; no fake [DONE] is ever added. */
        n = ex->upstream_failed ? MHD_CONTENT_READER_END_WITH_ERROR
                                : MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        ex->suspended = true;
        MHD_suspend_connection(ex->conn);
        n = 0;
    }
    pthread_mutex_unlock(&ex->mu);
    if (unpause) {
        kg_proxy_unpause(req->proxy, ex);
    }
    return n;
}

/* The exchange is ready: queue the provider's answer or keygate's error. */
static enum MHD_Result http_respond(struct MHD_Connection *conn,
                                    http_req_t *req)
{
    kg_exchange_t *ex = req->ex;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    char *body;
    size_t len;
    int status;

    pthread_mutex_lock(&ex->mu);
    if (ex->phase != KG_PHASE_READY) {
        /* Woken early (a heartbeat): wait again. */
        ex->suspended = true;
        MHD_suspend_connection(conn);
        pthread_mutex_unlock(&ex->mu);
        return MHD_YES;
    }
    ex->phase = KG_PHASE_QUEUED;
    if (ex->error != KG_OK) {
        kg_err_t err = ex->error;

        pthread_mutex_unlock(&ex->mu);
        return http_error(conn, req, err, NULL, false);
    }
    status = ex->status;
    if (ex->is_sse) {
        pthread_mutex_unlock(&ex->mu);
        resp = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, HTTP_READ_BLOCK, http_stream_reader, req, NULL);
        if (resp == NULL) {
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                                "no-cache");
    } else {
        body = kg_buf_steal(&ex->out, &len);
        pthread_mutex_unlock(&ex->mu);
        resp = MHD_create_response_from_buffer(len, body ? body : (char *)"",
                                               body ? MHD_RESPMEM_MUST_FREE
                                                    : MHD_RESPMEM_PERSISTENT);
        if (resp == NULL) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                ex->content_type[0] ? ex->content_type
                                                    : "application/json");
    }
    if (ex->retry_after[0] != '\0') {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER,
                                ex->retry_after);
    }
    req->rate = &ex->ticket.rate_info;
    http_add_common(resp, req);
    req->rate = NULL;
    ret = MHD_queue_response(conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    req->answered = true;
    return ret;
}

static void http_new_request_id(kg_gateway_t *gw, char *out)
{
    unsigned long seq = atomic_fetch_add(&gw->request_seq, 1);

    snprintf(out, KG_REQUEST_ID_LEN + 1, "req_%s%012lx", gw->id_prefix, seq);
}

/*
 * The body's first bytes: one allocation of its declared size (already
 * bounded by max_body_bytes), so a large body is never copied by a
 * growing buffer and takes no more memory than its length. A chunked
 * body grows as it comes.
 */
static void http_body_reserve(struct MHD_Connection *conn, http_req_t *req)
{
    const char *cl = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end = NULL;
    unsigned long long n;

    if (cl == NULL) {
        return;
    }
    n = strtoull(cl, &end, 10);
    if (end != cl && *end == '\0' && n > 0 && n <= req->body.max &&
        kg_buf_reserve(&req->body, (size_t)n) != KG_OK) {
        /* No memory now: the appends will say so. */
    }
}

static enum MHD_Result http_handler(void *cls, struct MHD_Connection *conn,
                                    const char *url, const char *method,
                                    const char *version,
                                    const char *upload_data,
                                    size_t *upload_data_size, void **con_cls)
{
    kg_worker_t *w = cls;
    kg_gateway_t *gw = w->gw;
    http_req_t *req = *con_cls;
    enum MHD_Result ret = MHD_YES;

    if (req == NULL) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        http_conn_t *hc = ci ? ci->socket_context : NULL;

        if (hc == NULL || hc->slot == NULL) {
            return MHD_NO; /* over a connection limit: close */
        }
        /* The headers are in: no more header deadline. */
        kg_worker_wait_disarm(w, &hc->wait);
        req = calloc(1, sizeof(*req));
        if (req == NULL) {
            return MHD_NO;
        }
        req->gw = gw;
        req->proxy = w->proxy;
        req->metrics = w->metrics;
        req->start_us = kg_clock_mono_us();
        /* The request runs on the worker's configuration of now to its
         * end, whatever a reload does meanwhile. */
        req->gen = kg_gen_loop_hold(&w->gens);
        req->cfg = req->gen->cfg;
        snprintf(req->method, sizeof(req->method), "%s", method);
        kg_buf_init(&req->body, (size_t)req->cfg->server_max_body_bytes);
        http_new_request_id(gw, req->request_id);
        http_client_ip(conn, req->client_ip, sizeof(req->client_ip));
        *con_cls = req;
        atomic_fetch_add(&gw->inflight, 1);
        MHD_set_connection_option(
            conn, MHD_CONNECTION_OPTION_TIMEOUT,
            (unsigned)((req->cfg->server_idle_timeout_ms + 999) / 1000));
        if (http_first_call(conn, req, method, url, version, &ret)) {
            return ret;
        }
        return MHD_YES;
    }
    if (req->answered ||
        (*upload_data_size > 0 &&
         (req->deferred != KG_OK || req->route->kind != HTTP_ROUTE_PROXY))) {
        *upload_data_size = 0; /* discard a body nobody will read */
        return MHD_YES;
    }
    if (req->deferred != KG_OK) {
        return http_error(conn, req, req->deferred,
                          req->deferred_detail[0] ? req->deferred_detail : NULL,
                          false);
    }
    switch (req->route->kind) {
    case HTTP_ROUTE_MODELS:
        return http_models(conn, req);
    case HTTP_ROUTE_MODEL:
        return http_model(conn, req, url);
    case HTTP_ROUTE_KEY:
        return http_key_info(conn, req);
    case HTTP_ROUTE_PROXY:
        break;
    }
    if (*upload_data_size > 0) {
        if (req->body.cap == 0) {
            http_body_reserve(conn, req);
        }
        if (!req->body_too_large && kg_buf_append(&req->body, upload_data,
                                                  *upload_data_size) != KG_OK) {
            req->body_too_large = true;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->body_too_large) {
        return http_error(conn, req, KG_ERR_BODY_TOO_LARGE, NULL, true);
    }
    if (req->ex == NULL) {
        return http_forward(conn, req, url);
    }
    return http_respond(conn, req);
}

static void http_completed(void *cls, struct MHD_Connection *conn,
                           void **con_cls, enum MHD_RequestTerminationCode toe)
{
    kg_worker_t *w = cls;
    kg_gateway_t *gw = w->gw;
    http_req_t *req = *con_cls;
    kg_exchange_t *ex;

    if (req == NULL) {
        return;
    }
    if (!req->answered && req->ex == NULL) {
        /* It ended before keygate answered (a client that left mid-body, a
         * body too slow): its access line all the same. */
        bool timeout = toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED;

        req->error = timeout ? "timeout" : "client_gone";
        http_count(req, timeout ? MHD_HTTP_REQUEST_TIMEOUT : 499);
    }
    /* A kept-alive connection waits for its next request's headers: at
     * most header_timeout of silence, and all of them within it. */
    MHD_set_connection_option(
        conn, MHD_CONNECTION_OPTION_TIMEOUT,
        (unsigned)((req->cfg->server_header_timeout_ms + 999) / 1000));
    {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        http_conn_t *hc = ci ? ci->socket_context : NULL;

        if (hc != NULL) {
            kg_worker_wait_arm(w, &hc->wait, hc->wait.fd, kg_clock_mono_us());
        }
    }
    ex = req->ex;
    if (ex != NULL) {
        bool done;

        pthread_mutex_lock(&ex->mu);
        ex->client_gone = true;
        ex->conn = NULL;
        ex->suspended = false;
        done = ex->upstream_done && !ex->holding;
        pthread_mutex_unlock(&ex->mu);
        if (!done) {
            kg_proxy_cancel(req->proxy, ex);
        }
        kg_exchange_unref(ex);
    }
    kg_buf_free(&req->body);
    kg_gen_slot_drop(&req->gen); /* last: the request is done with it */
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&gw->inflight, 1);
}

static void http_log_mhd(void *cls, const char *fmt, va_list ap)
{
    char line[512];

    (void)cls;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\r\n")] = '\0';
    KG_DEBUG("libmicrohttpd: %s", line);
}

/* [server] listen → a socket address. */
static kg_err_t http_parse_listen(const char *s, struct sockaddr_storage *ss,
                                  kg_diag_t *diag)
{
    char host[KG_LISTEN_HOST_MAX];
    int port = 0;
    kg_err_t rc;

    memset(ss, 0, sizeof(*ss));
    rc = kg_config_listen_parse(s, host, sizeof(host), &port, diag);
    if (rc != KG_OK) {
        return rc;
    }
    if (strchr(host, ':') != NULL) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)ss;

        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
            return KG_OK;
        }
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)ss;

        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
            return KG_OK;
        }
    }
    return kg_diag_fail(diag, KG_ERR_CONFIG,
                        "[server] listen: '%s' is not an address", s);
}

/* Accept policy: refuse at once past a connection limit (any worker). */
static enum MHD_Result http_accept_policy(void *cls, const struct sockaddr *sa,
                                          socklen_t len)
{
    kg_worker_t *w = cls;
    const kg_config_t *cfg = w->gens.current->cfg;
    size_t from_sa = 0;
    size_t total = kg_connlimit_count(w->gw->connlimit, sa, len, &from_sa);

    if (total >= (size_t)cfg->server_max_connections ||
        (cfg->server_max_connections_per_ip > 0 &&
         from_sa >= (size_t)cfg->server_max_connections_per_ip)) {
        return MHD_NO;
    }
    return MHD_YES;
}

/*
 * Count every connection in the limits shared by the workers (each worker's
 * daemon only knows its own), and give it until header_timeout to send its
 * request headers, counted from when it opened (libmicrohttpd's own
 * timeout only measures silence). A connection that loses a race for the
 * last slot gets no slot and is closed by its first request.
 */
static void http_notify_connection(void *cls, struct MHD_Connection *conn,
                                   void **socket_context,
                                   enum MHD_ConnectionNotificationCode code)
{
    kg_worker_t *w = cls;
    http_conn_t *hc = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        const struct sockaddr *sa = ci ? ci->client_addr : NULL;
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

        hc = calloc(1, sizeof(*hc));
        *socket_context = hc; /* NULL without memory: refused */
        if (hc == NULL) {
            return;
        }
        hc->slot = kg_connlimit_acquire(w->gw->connlimit, sa,
                                        sa && sa->sa_family == AF_INET6
                                            ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in));
        kg_worker_wait_arm(w, &hc->wait, fi ? fi->connect_fd : -1,
                           kg_clock_mono_us());
        if (w->tls) {
            /* The certificate of the worker's configuration of now, to
             * the connection's end. */
            kg_tls_conn_open(&hc->tls, conn, w->gens.current->gen->tls);
        }
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && hc != NULL) {
        kg_worker_wait_disarm(w, &hc->wait);
        kg_connlimit_release(w->gw->connlimit, hc->slot);
        kg_tls_conn_close(&hc->tls);
        free(hc);
        *socket_context = NULL;
    }
}

/* The listening socket every worker's daemon accepts from. */
static int http_listen_socket(const kg_config_t *cfg,
                              const struct sockaddr_storage *ss, uint16_t *port,
                              kg_diag_t *diag)
{
    socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    int one = 1;
    int fd =
        socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        kg_diag_fail(diag, KG_ERR_CONFIG, "cannot create a socket: %s",
                     strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss->ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, (const struct sockaddr *)ss, len) != 0 ||
        listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        kg_diag_fail(diag, KG_ERR_CONFIG, "cannot listen on %s: %s",
                     cfg->server_listen, strerror(errno));
        close(fd);
        return -1;
    }
    *port = ntohs(bound.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)(void *)&bound)->sin6_port
                      : ((struct sockaddr_in *)(void *)&bound)->sin_port);
    return fd;
}

/* One worker's daemon: external epoll, driven by the worker's loop. */
static struct MHD_Daemon *http_daemon_new(kg_worker_t *w, int listen_fd,
                                          bool ipv6)
{
    const kg_config_t *cfg = w->gens.current->cfg;
    /* With TLS, the certificate comes from the connection's configuration
     * (kg_tls_cert_callback), so a reload changes it without a restart. */
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)kg_tls_cert_callback},
        {MHD_OPTION_HTTPS_PRIORITIES, 0,
         (void *)kg_tls_priorities(cfg->server_tls_min_version)},
        {MHD_OPTION_END, 0, NULL},
    };
    struct MHD_OptionItem no_opts[] = {{MHD_OPTION_END, 0, NULL}};
    /* ITC: MHD_resume_connection from another thread (the usage writer)
     * wakes the loop through the daemon's epoll set. */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0) |
                     (w->tls ? MHD_USE_TLS : 0);

    return MHD_start_daemon(
        flags, 0, http_accept_policy, w, http_handler, w,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd,
        /* The shared limits are kept by kg_connlimit; this is a backstop. */
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->server_max_connections,
        MHD_OPTION_NOTIFY_CONNECTION, http_notify_connection, w,
        /* Until a request's headers are in, a connection may be silent for
         * header_timeout; the first call of the handler raises it to
         * idle_timeout (see http_handler). */
        MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)((cfg->server_header_timeout_ms + 999) / 1000),
        /* The per-connection pool holds the request line, headers and
         * read/write buffers, and libmicrohttpd clears it for every
         * request: keep it just above what the JSON 431 cap needs (see
         * HTTP_POOL_EXTRA; the profile showed a 96 KiB pool costing ~28%
         * of all instructions). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)cfg->server_max_header_bytes + HTTP_POOL_EXTRA,
        MHD_OPTION_NOTIFY_COMPLETED, http_completed, w,
        MHD_OPTION_EXTERNAL_LOGGER, http_log_mhd, NULL, MHD_OPTION_ARRAY,
        w->tls ? tls_opts : no_opts, MHD_OPTION_END);
}

kg_err_t kg_http_start(kg_gateway_t *gw, kg_diag_t *diag)
{
    const kg_config_t *cfg = gw->gen->cfg; /* the one the daemon starts with */
    struct sockaddr_storage ss;
    unsigned n = (unsigned)cfg->server_threads;
    kg_proxy_opts_t popts = gw->proxy_opts;
    int lfd;
    kg_err_t rc;

    rc = http_parse_listen(cfg->server_listen, &ss, diag);
    if (rc != KG_OK) {
        return rc;
    }
    if (n == 0) {
        n = gw->nworkers_planned; /* one per core */
    }
    /* max_connections_per_host is for the whole gateway: share it out. */
    if (popts.max_host_connections > 0) {
        popts.max_host_connections =
            (popts.max_host_connections + (long)n - 1) / (long)n;
    }
    /* So is max_idle_connections (per provider): each loop's cache. */
    popts.max_idle_connections =
        (long)((cfg->upstream_max_idle_connections + n - 1) / n) *
        (long)(cfg->nproviders > 0 ? cfg->nproviders : 1);
    popts.idle_connection_timeout_ms = cfg->upstream_idle_connection_timeout_ms;
    rc = kg_connlimit_new((size_t)cfg->server_max_connections,
                          (size_t)cfg->server_max_connections_per_ip,
                          &gw->connlimit);
    if (rc != KG_OK) {
        return kg_diag_fail(diag, rc, "out of memory");
    }
    gw->workers = calloc(n, sizeof(*gw->workers));
    if (gw->workers == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    lfd = http_listen_socket(cfg, &ss, &gw->port, diag);
    if (lfd < 0) {
        return KG_ERR_CONFIG;
    }
    /* Every worker's daemon accepts from its own duplicate of one socket:
     * the kernel wakes whichever loop is free, and no other process can
     * bind the port alongside (as SO_REUSEPORT would let it). */
    for (unsigned i = 0; i < n && rc == KG_OK; i++) {
        kg_worker_t *w = NULL;
        int dfd;

        rc = kg_worker_new(gw, i, &popts, &w, diag);
        if (rc != KG_OK) {
            break;
        }
        gw->workers[gw->nworkers++] = w;
        dfd = fcntl(lfd, F_DUPFD_CLOEXEC, 0);
        w->daemon =
            dfd < 0 ? NULL : http_daemon_new(w, dfd, ss.ss_family == AF_INET6);
        if (w->daemon == NULL) {
            if (dfd >= 0) {
                close(dfd);
            }
            rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                              "cannot start the HTTP daemon on %s",
                              cfg->server_listen);
            break;
        }
        rc = kg_worker_attach(w, w->daemon, diag);
    }
    close(lfd);
    for (unsigned i = 0; i < gw->nworkers && rc == KG_OK; i++) {
        rc = kg_worker_start(gw->workers[i], diag);
    }
    return rc;
}

void kg_http_quiesce(kg_gateway_t *gw)
{
    for (unsigned i = 0; i < gw->nworkers; i++) {
        kg_worker_quiesce(gw->workers[i]);
    }
}

void kg_http_cut_all(kg_gateway_t *gw)
{
    for (unsigned i = 0; i < gw->nworkers; i++) {
        kg_proxy_cut_all(gw->workers[i]->proxy);
    }
}

void kg_http_stop(kg_gateway_t *gw)
{
    for (unsigned i = 0; i < gw->nworkers; i++) {
        kg_worker_stop(gw->workers[i]);
    }
    for (unsigned i = 0; i < gw->nworkers; i++) {
        kg_worker_free(&gw->workers[i]);
    }
    free(gw->workers);
    gw->workers = NULL;
    gw->nworkers = 0;
    kg_connlimit_free(&gw->connlimit);
}

bool kg_http_publish(kg_gateway_t *gw, kg_generation_t *g)
{
    int64_t deadline = kg_clock_mono_us() + KG_HTTP_PUBLISH_WAIT_MS * 1000;
    struct timespec tick = {0, 1000 * 1000};
    unsigned done = 0;

    for (unsigned i = 0; i < gw->nworkers; i++) {
        kg_worker_set_generation(gw->workers[i], g);
    }
    /* Each loop switches when it wakes up: at once unless it is stuck. */
    while (done < gw->nworkers && kg_clock_mono_us() < deadline) {
        done = 0;
        for (unsigned i = 0; i < gw->nworkers; i++) {
            done += kg_worker_generation(gw->workers[i]) >= g->number;
        }
        if (done < gw->nworkers) {
            nanosleep(&tick, NULL);
        }
    }
    return done == gw->nworkers;
}
