/* The answers of keygate-mock: canned JSON, SSE streams and wire faults. */
#include "mock.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Distinct (mode, model, usage) answers kept ready to send. */
#define MOCK_CACHE_SLOTS 64
/* Bytes sent per tick by slow_drip. */
#define MOCK_DRIP_BYTES 8
/* Pause before the RST of reset_mid_stream, so the events leave first. */
#define MOCK_RESET_DELAY_MS 20L
/* Most embedding vectors answered. */
#define MOCK_MAX_INPUTS 2048L
#define MOCK_CREATED    "1700000000"
#define MOCK_TEXT       "Hello from keygate-mock."
/* The filler of "pad" in text: plain ASCII, nothing to escape. */
#define MOCK_PAD_TEXT    "Lorem ipsum dolor sit amet, consectetur adipiscing. "
#define MOCK_REDIRECT_TO "http://127.0.0.1:1/elsewhere"
#define MOCK_JSON        "application/json"

/* What the next stream step sends. */
typedef enum mock_step {
    MOCK_STEP_CONTENT,
    MOCK_STEP_USAGE,
    MOCK_STEP_DONE,
    MOCK_STEP_MSG_START,
    MOCK_STEP_BLOCK_START,
    MOCK_STEP_BLOCK_STOP,
    MOCK_STEP_MSG_DELTA,
    MOCK_STEP_MSG_STOP,
    MOCK_STEP_FAULT,
    MOCK_STEP_END
} mock_step_t;

/* What filling the next event gave. */
typedef enum mock_fill {
    MOCK_FILL_DATA,
    MOCK_FILL_PARKED,
    MOCK_FILL_END,
    MOCK_FILL_ERROR
} mock_fill_t;

typedef struct mock_canned {
    char *key;                 /* new */
    struct MHD_Response *resp; /* owned by the cache until exit */
} mock_canned_t;

static mock_canned_t cache[MOCK_CACHE_SLOTS];
static size_t cache_len;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

/* Answers that never change, built once. */
static struct MHD_Response *resp_models;
static struct MHD_Response *resp_not_found;
static struct MHD_Response *resp_too_large;
static struct MHD_Response *resp_redirect;
static struct MHD_Response *resp_unauthorized;

static const char models_json[] =
    "{\"object\":\"list\",\"data\":["
    "{\"id\":\"mock-ok\",\"object\":\"model\",\"created\":" MOCK_CREATED
    ",\"owned_by\":\"keygate-mock\"},"
    "{\"id\":\"mock-stream\",\"object\":\"model\",\"created\":" MOCK_CREATED
    ",\"owned_by\":\"keygate-mock\"},"
    "{\"id\":\"mock-echo\",\"object\":\"model\",\"created\":" MOCK_CREATED
    ",\"owned_by\":\"keygate-mock\"}]}";

static const char not_found_json[] =
    "{\"error\":{\"message\":\"keygate-mock: unknown route\","
    "\"type\":\"invalid_request_error\",\"param\":null,"
    "\"code\":\"not_found\"}}";

static const char unauthorized_json[] =
    "{\"error\":{\"message\":\"Incorrect API key provided.\","
    "\"type\":\"invalid_request_error\",\"param\":null,"
    "\"code\":\"invalid_api_key\"}}";

static const char too_large_json[] =
    "{\"error\":{\"message\":\"keygate-mock: request body too large\","
    "\"type\":\"invalid_request_error\",\"param\":null,"
    "\"code\":\"payload_too_large\"}}";

static const char redirect_json[] = "{\"redirect\":\"" MOCK_REDIRECT_TO "\"}";

static const char garbage[] = "NOT HTTP\r\n\x01\x02\x03\xff\xfe\x00garbage"
                              "\r\n\r\n";

int kg_mock_buf_add(kg_mock_buf_t *buf, const void *data, size_t n, size_t max)
{
    size_t need;

    if (n > max || buf->len > max - n) {
        return EFBIG;
    }
    need = buf->len + n + 1;
    if (need > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 256;
        char *p;

        while (cap < need) {
            cap *= 2;
        }
        p = realloc(buf->p, cap);
        if (p == NULL) {
            return ENOMEM;
        }
        buf->p = p;
        buf->cap = cap;
    }
    memcpy(buf->p + buf->len, data, n);
    buf->len += n;
    buf->p[buf->len] = '\0';
    return 0;
}

int kg_mock_buf_printf(kg_mock_buf_t *buf, const char *fmt, ...)
{
    va_list ap;
    int n;
    size_t need;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return ENOMEM;
    }
    need = buf->len + (size_t)n + 1;
    if (need > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 256;
        char *p;

        while (cap < need) {
            cap *= 2;
        }
        p = realloc(buf->p, cap);
        if (p == NULL) {
            return ENOMEM;
        }
        buf->p = p;
        buf->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(buf->p + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
    return 0;
}

void kg_mock_buf_free(kg_mock_buf_t *buf)
{
    free(buf->p);
    buf->p = NULL;
    buf->len = 0;
    buf->cap = 0;
}

static long param(long v, long def)
{
    return v < 0 ? def : v;
}

/* Filler bytes asked for with "pad" (0 by default). */
static long pad_bytes(const kg_mock_req_t *req)
{
    return param(req->p.pad, 0);
}

/*
 * Append n bytes of filler made of unit (repeated, cut at n): text for a
 * string's content, numbers for a vector (unit then starts with a comma).
 */
static int add_pad(kg_mock_buf_t *b, long n, const char *unit)
{
    size_t ulen = strlen(unit);
    int rc = 0;

    while (rc == 0 && n > 0) {
        size_t take = (size_t)n < ulen ? (size_t)n : ulen;

        rc = kg_mock_buf_add(b, unit, take, SIZE_MAX);
        n -= (long)take;
    }
    return rc;
}

static long prompt_tokens(const kg_mock_req_t *req)
{
    return param(req->p.prompt_tokens, KG_MOCK_DEFAULT_PROMPT_TOKENS);
}

static long completion_tokens(const kg_mock_req_t *req)
{
    return param(req->p.completion_tokens, KG_MOCK_DEFAULT_COMPLETION_TOKENS);
}

/*
 * A response owning buf's bytes (buf is emptied), with Content-Type ctype.
 * Returns a new response, or NULL (buf freed) when out of memory.
 */
static struct MHD_Response *response_from_buf(kg_mock_buf_t *buf,
                                              const char *ctype)
{
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(buf->len, buf->p,
                                           MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        kg_mock_buf_free(buf);
        return NULL;
    }
    *buf = (kg_mock_buf_t){NULL, 0, 0};
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    return resp;
}

static struct MHD_Response *response_static(const char *text, size_t len)
{
    struct MHD_Response *resp;

    resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)text,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, MOCK_JSON);
    }
    return resp;
}

/* Queue resp (borrowed) with status, then drop the caller's reference. */
static enum MHD_Result queue_and_release(kg_mock_req_t *req, unsigned status,
                                         struct MHD_Response *resp)
{
    enum MHD_Result rc;

    if (resp == NULL) {
        return MHD_NO;
    }
    rc = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static int build_ok(const kg_mock_req_t *req, kg_mock_buf_t *b)
{
    long p = prompt_tokens(req);
    long c = completion_tokens(req);

    int rc = kg_mock_buf_printf(
        b,
        "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\","
        "\"created\":" MOCK_CREATED ",\"model\":%s,\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"" MOCK_TEXT,
        req->model_json);

    if (rc == 0) {
        rc = add_pad(b, pad_bytes(req), MOCK_PAD_TEXT);
    }
    if (rc == 0) {
        rc = kg_mock_buf_printf(
            b,
            "\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":"
            "%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}}",
            p, c, p + c);
    }
    return rc;
}

static int build_anthropic(const kg_mock_req_t *req, kg_mock_buf_t *b)
{
    return kg_mock_buf_printf(
        b,
        "{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\","
        "\"model\":%s,\"content\":[{\"type\":\"text\",\"text\":\"" MOCK_TEXT
        "\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
        "\"usage\":{\"input_tokens\":%ld,\"output_tokens\":%ld}}",
        req->model_json, prompt_tokens(req), completion_tokens(req));
}

static int build_count_tokens(const kg_mock_req_t *req, kg_mock_buf_t *b)
{
    return kg_mock_buf_printf(b, "{\"input_tokens\":%ld}", prompt_tokens(req));
}

static int build_moderations(const kg_mock_req_t *req, kg_mock_buf_t *b)
{
    return kg_mock_buf_printf(
        b,
        "{\"id\":\"modr-mock\",\"model\":%s,\"results\":[{\"flagged\":false,"
        "\"categories\":{\"harassment\":false,\"hate\":false,"
        "\"self-harm\":false,\"sexual\":false,\"violence\":false},"
        "\"category_scores\":{\"harassment\":0.0001,\"hate\":0.0001,"
        "\"self-harm\":0.0001,\"sexual\":0.0001,\"violence\":0.0001}}]}",
        req->model_json);
}

static long embedding_inputs(const kg_mock_req_t *req)
{
    if (req->p.inputs > MOCK_MAX_INPUTS) {
        return MOCK_MAX_INPUTS;
    }
    return req->p.inputs < 1 ? 1 : req->p.inputs;
}

static int build_embeddings(const kg_mock_req_t *req, kg_mock_buf_t *b)
{
    long n = embedding_inputs(req);
    long p = prompt_tokens(req);
    int rc = kg_mock_buf_printf(b, "{\"object\":\"list\",\"data\":[");

    for (long i = 0; rc == 0 && i < n; i++) {
        rc = kg_mock_buf_printf(b,
                                "%s{\"object\":\"embedding\",\"index\":%ld,"
                                "\"embedding\":[0.0023,-0.0091,0.0154,"
                                "0.0047",
                                i > 0 ? "," : "", i);
        if (rc == 0 && i == 0) {
            /* Whole numbers only: the answer stays valid JSON. */
            rc = add_pad(b, pad_bytes(req) / 11 * 11, ",-0.0123456");
        }
        if (rc == 0) {
            rc = kg_mock_buf_printf(b, "]}");
        }
    }
    if (rc == 0) {
        rc = kg_mock_buf_printf(b,
                                "],\"model\":%s,\"usage\":{\"prompt_tokens\":"
                                "%ld,\"total_tokens\":%ld}}",
                                req->model_json, p, p);
    }
    return rc;
}

typedef int (*mock_builder_t)(const kg_mock_req_t *req, kg_mock_buf_t *b);

/* The builder of a cacheable mode, or NULL. */
static mock_builder_t cacheable(kg_mock_mode_t mode)
{
    switch (mode) {
    case KG_MOCK_MODE_OK:
        return build_ok;
    case KG_MOCK_MODE_ANTHROPIC:
        return build_anthropic;
    case KG_MOCK_MODE_COUNT_TOKENS:
        return build_count_tokens;
    case KG_MOCK_MODE_MODERATIONS:
        return build_moderations;
    case KG_MOCK_MODE_EMBEDDINGS:
        return build_embeddings;
    default:
        return NULL;
    }
}

/* Look key up. Returns the cached response (owned by the cache) or NULL. */
static struct MHD_Response *cache_get(const char *key)
{
    struct MHD_Response *resp = NULL;

    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < cache_len; i++) {
        if (strcmp(cache[i].key, key) == 0) {
            resp = cache[i].resp;
            break;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return resp;
}

/*
 * Keep resp under key if there is room and the key is new. Returns true if
 * the cache took both (key emptied, resp owned by the cache until exit).
 */
static bool cache_put(kg_mock_buf_t *key, struct MHD_Response *resp)
{
    bool taken = false;

    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < cache_len; i++) {
        if (strcmp(cache[i].key, key->p) == 0) {
            goto out; /* another thread was first */
        }
    }
    if (cache_len < MOCK_CACHE_SLOTS) {
        cache[cache_len].resp = resp;
        cache[cache_len].key = key->p;
        *key = (kg_mock_buf_t){NULL, 0, 0};
        cache_len++;
        taken = true;
    }
out:
    pthread_mutex_unlock(&cache_lock);
    return taken;
}

/* ok, anthropic, count_tokens, moderations, embeddings: built once. */
static enum MHD_Result respond_canned(kg_mock_req_t *req)
{
    mock_builder_t build = cacheable(req->mode);
    kg_mock_buf_t key = {NULL, 0, 0};
    kg_mock_buf_t body = {NULL, 0, 0};
    struct MHD_Response *resp = NULL;
    enum MHD_Result rc = MHD_NO;

    if (kg_mock_buf_printf(&key, "%d|%ld|%ld|%ld|%ld|%s", (int)req->mode,
                           prompt_tokens(req), completion_tokens(req),
                           embedding_inputs(req), pad_bytes(req),
                           req->model_json) != 0) {
        goto out;
    }
    resp = cache_get(key.p);
    if (resp != NULL) {
        rc = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
        goto out;
    }
    if (build(req, &body) != 0) {
        goto out;
    }
    resp = response_from_buf(&body, MOCK_JSON);
    if (resp == NULL) {
        goto out;
    }
    if (cache_put(&key, resp)) {
        rc = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
    } else {
        rc = queue_and_release(req, MHD_HTTP_OK, resp);
    }
out:
    kg_mock_buf_free(&key);
    kg_mock_buf_free(&body);
    return rc;
}

/* Queue a response shared by every request (never destroyed here). */
static enum MHD_Result queue_shared(kg_mock_req_t *req, unsigned status,
                                    struct MHD_Response *resp)
{
    return MHD_queue_response(req->conn, status, resp);
}

static enum MHD_Result respond_models(kg_mock_req_t *req)
{
    return queue_shared(req, MHD_HTTP_OK, resp_models);
}

static enum MHD_Result respond_not_found(kg_mock_req_t *req)
{
    return queue_shared(req, MHD_HTTP_NOT_FOUND, resp_not_found);
}

static enum MHD_Result respond_redirect(kg_mock_req_t *req)
{
    return queue_shared(req, MHD_HTTP_FOUND, resp_redirect);
}

enum MHD_Result kg_mock_respond_too_large(kg_mock_req_t *req)
{
    return queue_shared(req, MHD_HTTP_CONTENT_TOO_LARGE, resp_too_large);
}

static enum MHD_Result respond_too_large(kg_mock_req_t *req)
{
    return kg_mock_respond_too_large(req);
}

static enum MHD_Result respond_unauthorized(kg_mock_req_t *req)
{
    return queue_shared(req, MHD_HTTP_UNAUTHORIZED, resp_unauthorized);
}

static enum MHD_Result respond_bad_request(kg_mock_req_t *req)
{
    kg_mock_buf_t b = {NULL, 0, 0};

    if (kg_mock_buf_printf(&b,
                           "{\"error\":{\"message\":\"keygate-mock: %s\","
                           "\"type\":\"invalid_request_error\","
                           "\"param\":null,\"code\":\"bad_mock\"}}",
                           req->bad_request ? req->bad_request : "bad") != 0) {
        return MHD_NO;
    }
    return queue_and_release(req, MHD_HTTP_BAD_REQUEST,
                             response_from_buf(&b, MOCK_JSON));
}

static enum MHD_Result respond_echo(kg_mock_req_t *req)
{
    json_t *obj = kg_mock_request_json(req); /* new */
    kg_mock_buf_t b = {NULL, 0, 0};

    if (obj == NULL) {
        return MHD_NO;
    }
    b.p = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (b.p == NULL) {
        return MHD_NO;
    }
    b.len = strlen(b.p);
    b.cap = b.len + 1;
    return queue_and_release(req, MHD_HTTP_OK,
                             response_from_buf(&b, MOCK_JSON));
}

static enum MHD_Result respond_status(kg_mock_req_t *req)
{
    long status = param(req->p.status, 500);
    const char *type = "server_error";
    const char *code = "null";
    kg_mock_buf_t b = {NULL, 0, 0};
    struct MHD_Response *resp;
    char retry[32];

    if (status == 429) {
        type = "requests";
        code = "\"rate_limit_exceeded\"";
    } else if (status < 500) {
        type = "invalid_request_error";
    }
    if (kg_mock_buf_printf(&b,
                           "{\"error\":{\"message\":\"keygate-mock: "
                           "simulated status %ld\",\"type\":\"%s\","
                           "\"param\":null,\"code\":%s}}",
                           status, type, code) != 0) {
        return MHD_NO;
    }
    resp = response_from_buf(&b, MOCK_JSON);
    if (resp == NULL) {
        return MHD_NO;
    }
    snprintf(retry, sizeof(retry), "%ld",
             param(req->p.retry_after, KG_MOCK_DEFAULT_RETRY_AFTER));
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    return queue_and_release(req, (unsigned)status, resp);
}

/* Abort the TCP connection with a RST; MHD closes the descriptor later. */
static void reset_connection(int fd)
{
    struct linger lg = {1, 0};
    struct sockaddr sa;

    if (fd < 0) {
        return;
    }
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    /* connect(AF_UNSPEC) disconnects a TCP socket at once, with a RST. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNSPEC;
    (void)connect(fd, &sa, sizeof(sa));
}

static enum MHD_Result respond_reset(kg_mock_req_t *req)
{
    reset_connection(req->fd);
    return MHD_NO;
}

static enum MHD_Result respond_garbage(kg_mock_req_t *req)
{
    if (req->fd >= 0) {
        (void)send(req->fd, garbage, sizeof(garbage) - 1,
                   MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    return MHD_NO;
}

static bool is_fault(kg_mock_mode_t mode)
{
    return mode == KG_MOCK_MODE_HANG_MID_STREAM ||
           mode == KG_MOCK_MODE_RESET_MID_STREAM ||
           mode == KG_MOCK_MODE_CLOSE_MID_STREAM;
}

static unsigned long content_events(const kg_mock_req_t *req)
{
    if (is_fault(req->mode)) {
        return KG_MOCK_FAULT_AFTER_EVENTS;
    }
    return (unsigned long)param(req->p.events, KG_MOCK_DEFAULT_EVENTS);
}

/* The kind of req->step; *index is the content event number. */
static mock_step_t step_kind(const kg_mock_req_t *req, unsigned long *index)
{
    unsigned long n = content_events(req);
    unsigned long s = req->step;
    bool anthropic = req->flavor == KG_MOCK_FLAVOR_ANTHROPIC;

    if (anthropic) {
        if (s < 2) {
            return s == 0 ? MOCK_STEP_MSG_START : MOCK_STEP_BLOCK_START;
        }
        s -= 2;
    }
    if (s < n) {
        *index = s;
        return MOCK_STEP_CONTENT;
    }
    if (is_fault(req->mode)) {
        return MOCK_STEP_FAULT;
    }
    s -= n;
    if (anthropic) {
        static const mock_step_t tail[] = {
            MOCK_STEP_BLOCK_STOP, MOCK_STEP_MSG_DELTA, MOCK_STEP_MSG_STOP};

        return s < 3 ? tail[s] : MOCK_STEP_END;
    }
    if (req->p.include_usage) {
        if (s == 0) {
            return MOCK_STEP_USAGE;
        }
        s--;
    }
    return s == 0 ? MOCK_STEP_DONE : MOCK_STEP_END;
}

static int format_openai(kg_mock_req_t *req, mock_step_t kind, unsigned long i)
{
    int rc;
    long p = prompt_tokens(req);
    long c = completion_tokens(req);
    bool last = i + 1 == content_events(req) && !is_fault(req->mode);

    if (kind == MOCK_STEP_DONE) {
        return kg_mock_buf_printf(&req->out, "data: [DONE]\n\n");
    }
    if (kind == MOCK_STEP_USAGE) {
        return kg_mock_buf_printf(
            &req->out,
            "data: {\"id\":\"chatcmpl-mock\",\"object\":"
            "\"chat.completion.chunk\",\"created\":" MOCK_CREATED
            ",\"model\":%s,\"choices\":[],\"usage\":{\"prompt_tokens\":%ld,"
            "\"completion_tokens\":%ld,\"total_tokens\":%ld}}\n\n",
            req->model_json, p, c, p + c);
    }
    rc = kg_mock_buf_printf(
        &req->out,
        "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
        "\"created\":" MOCK_CREATED ",\"model\":%s,\"choices\":[{\"index\":0,"
        "\"delta\":{%s\"content\":\"tok%lu ",
        req->model_json, i == 0 ? "\"role\":\"assistant\"," : "", i);
    if (rc == 0) {
        rc = add_pad(&req->out, pad_bytes(req), MOCK_PAD_TEXT);
    }
    if (rc == 0) {
        rc = kg_mock_buf_printf(&req->out, "\"},\"finish_reason\":%s}]%s}\n\n",
                                last ? "\"stop\"" : "null",
                                req->p.include_usage ? ",\"usage\":null" : "");
    }
    return rc;
}

static int format_anthropic(kg_mock_req_t *req, mock_step_t kind,
                            unsigned long i)
{
    switch (kind) {
    case MOCK_STEP_MSG_START:
        return kg_mock_buf_printf(
            &req->out,
            "event: message_start\ndata: {\"type\":\"message_start\","
            "\"message\":{\"id\":\"msg_mock\",\"type\":\"message\","
            "\"role\":\"assistant\",\"model\":%s,\"content\":[],"
            "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":"
            "{\"input_tokens\":%ld,\"output_tokens\":1}}}\n\n",
            req->model_json, prompt_tokens(req));
    case MOCK_STEP_BLOCK_START:
        return kg_mock_buf_printf(
            &req->out, "event: content_block_start\ndata: {\"type\":"
                       "\"content_block_start\",\"index\":0,\"content_block\":"
                       "{\"type\":\"text\",\"text\":\"\"}}\n\n");
    case MOCK_STEP_CONTENT:
        return kg_mock_buf_printf(
            &req->out,
            "event: content_block_delta\ndata: {\"type\":"
            "\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
            "\"text_delta\",\"text\":\"tok%lu \"}}\n\n",
            i);
    case MOCK_STEP_BLOCK_STOP:
        return kg_mock_buf_printf(&req->out,
                                  "event: content_block_stop\ndata: {\"type\":"
                                  "\"content_block_stop\",\"index\":0}\n\n");
    case MOCK_STEP_MSG_DELTA:
        return kg_mock_buf_printf(
            &req->out,
            "event: message_delta\ndata: {\"type\":\"message_delta\","
            "\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
            "\"usage\":{\"output_tokens\":%ld}}\n\n",
            completion_tokens(req));
    default:
        return kg_mock_buf_printf(
            &req->out,
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }
}

static long stream_interval(const kg_mock_req_t *req)
{
    return param(req->p.interval_ms, 0);
}

/* The fault of a *_mid_stream mode, once its events are out. */
static mock_fill_t stream_fault(kg_mock_req_t *req)
{
    long delay = stream_interval(req);

    switch (req->mode) {
    case KG_MOCK_MODE_HANG_MID_STREAM:
        kg_mock_timer_park(req, -1);
        return MOCK_FILL_PARKED;
    case KG_MOCK_MODE_RESET_MID_STREAM:
        if (!req->waited) {
            req->waited = true;
            kg_mock_timer_park(
                req, delay > MOCK_RESET_DELAY_MS ? delay : MOCK_RESET_DELAY_MS);
            return MOCK_FILL_PARKED;
        }
        reset_connection(req->fd);
        req->end_reason = "reset";
        return MOCK_FILL_ERROR;
    default:
        req->end_reason = "closed";
        return MOCK_FILL_ERROR;
    }
}

/* Put the next event of the stream in req->out, or wait, or end. */
static mock_fill_t stream_fill(kg_mock_req_t *req)
{
    unsigned long index = 0;
    mock_step_t kind = step_kind(req, &index);
    long interval = stream_interval(req);
    int rc;

    if (kind == MOCK_STEP_CONTENT && index > 0 && interval > 0 &&
        !req->waited) {
        req->waited = true;
        kg_mock_timer_park(req, interval);
        return MOCK_FILL_PARKED;
    }
    if (kind == MOCK_STEP_FAULT) {
        return stream_fault(req);
    }
    if (kind == MOCK_STEP_END) {
        return MOCK_FILL_END;
    }
    req->out.len = 0;
    req->out_off = 0;
    if (req->flavor == KG_MOCK_FLAVOR_ANTHROPIC) {
        rc = format_anthropic(req, kind, index);
    } else {
        rc = format_openai(req, kind, index);
    }
    if (rc != 0) {
        return MOCK_FILL_ERROR;
    }
    req->step++;
    req->waited = false;
    req->sent_events++;
    return MOCK_FILL_DATA;
}

/* Copy what is left of req->out into buf. Returns the bytes copied. */
static ssize_t copy_out(kg_mock_req_t *req, char *buf, size_t max)
{
    size_t n = req->out.len - req->out_off;

    if (n > max) {
        n = max;
    }
    memcpy(buf, req->out.p + req->out_off, n);
    req->out_off += n;
    return (ssize_t)n;
}

/* Whether a callback response must end now (client gone or shutdown). */
static bool must_end(const kg_mock_req_t *req)
{
    return req->client_gone || atomic_load(&kg_mock_stopping);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    kg_mock_req_t *req = cls;

    (void)pos;
    if (must_end(req)) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (req->out_off == req->out.len) {
        switch (stream_fill(req)) {
        case MOCK_FILL_DATA:
            break;
        case MOCK_FILL_PARKED:
            return 0; /* suspended: MHD calls again after the resume */
        case MOCK_FILL_END:
            return MHD_CONTENT_READER_END_OF_STREAM;
        default:
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    return copy_out(req, buf, max);
}

static ssize_t huge_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    kg_mock_req_t *req = cls;

    (void)pos;
    if (must_end(req)) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    req->sent_events++;
    if (req->out_off < req->out.len) {
        return copy_out(req, buf, max);
    }
    memset(buf, 'x', max);
    return (ssize_t)max;
}

static ssize_t drip_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    kg_mock_req_t *req = cls;
    long interval = param(req->p.interval_ms, KG_MOCK_DEFAULT_DRIP_INTERVAL_MS);

    (void)pos;
    if (must_end(req)) {
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (req->out_off >= req->out.len) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (req->out_off > 0 && interval > 0 && !req->waited) {
        req->waited = true;
        kg_mock_timer_park(req, interval);
        return 0;
    }
    req->waited = false;
    req->sent_events++;
    return copy_out(req, buf, max < MOCK_DRIP_BYTES ? max : MOCK_DRIP_BYTES);
}

/* Free callback of callback responses: the response's reference. */
static void release_req(void *cls)
{
    kg_mock_req_unref(cls);
}

/* Queue a callback response of size (or MHD_SIZE_UNKNOWN) reading req. */
static enum MHD_Result queue_callback(kg_mock_req_t *req, uint64_t size,
                                      MHD_ContentReaderCallback reader,
                                      const char *ctype)
{
    struct MHD_Response *resp;

    atomic_fetch_add(&req->refs, 1);
    resp =
        MHD_create_response_from_callback(size, 4096, reader, req, release_req);
    if (resp == NULL) {
        kg_mock_req_unref(req);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (size == MHD_SIZE_UNKNOWN) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
                                "no-cache");
    }
    req->streaming = true;
    return queue_and_release(req, MHD_HTTP_OK, resp);
}

static enum MHD_Result respond_stream(kg_mock_req_t *req)
{
    return queue_callback(req, MHD_SIZE_UNKNOWN, stream_reader,
                          "text/event-stream");
}

static enum MHD_Result respond_huge(kg_mock_req_t *req)
{
    if (kg_mock_buf_printf(&req->out,
                           "{\"id\":\"chatcmpl-huge\",\"object\":"
                           "\"chat.completion\",\"model\":%s,\"choices\":"
                           "[{\"index\":0,\"message\":{\"role\":"
                           "\"assistant\",\"content\":\"",
                           req->model_json) != 0) {
        return MHD_NO;
    }
    return queue_callback(req, MHD_SIZE_UNKNOWN, huge_reader, MOCK_JSON);
}

static enum MHD_Result respond_slow_drip(kg_mock_req_t *req)
{
    int rc;

    if (req->flavor == KG_MOCK_FLAVOR_ANTHROPIC) {
        rc = build_anthropic(req, &req->out);
    } else {
        rc = build_ok(req, &req->out);
    }
    if (rc != 0) {
        return MHD_NO;
    }
    return queue_callback(req, req->out.len, drip_reader, MOCK_JSON);
}

typedef enum MHD_Result (*mock_handler_t)(kg_mock_req_t *req);

/* What answers each mode (hang_before_headers is handled on intake). */
static const mock_handler_t handlers[KG_MOCK_MODE_COUNT] = {
    [KG_MOCK_MODE_OK] = respond_canned,
    [KG_MOCK_MODE_STREAM] = respond_stream,
    [KG_MOCK_MODE_ANTHROPIC] = respond_canned,
    [KG_MOCK_MODE_ANTHROPIC_STREAM] = respond_stream,
    [KG_MOCK_MODE_ECHO] = respond_echo,
    [KG_MOCK_MODE_STATUS] = respond_status,
    [KG_MOCK_MODE_HANG_MID_STREAM] = respond_stream,
    [KG_MOCK_MODE_RESET_BEFORE_HEADERS] = respond_reset,
    [KG_MOCK_MODE_RESET_MID_STREAM] = respond_stream,
    [KG_MOCK_MODE_CLOSE_MID_STREAM] = respond_stream,
    [KG_MOCK_MODE_GARBAGE] = respond_garbage,
    [KG_MOCK_MODE_HUGE] = respond_huge,
    [KG_MOCK_MODE_SLOW_DRIP] = respond_slow_drip,
    [KG_MOCK_MODE_REDIRECT] = respond_redirect,
    [KG_MOCK_MODE_COUNT_TOKENS] = respond_canned,
    [KG_MOCK_MODE_EMBEDDINGS] = respond_canned,
    [KG_MOCK_MODE_MODERATIONS] = respond_canned,
    [KG_MOCK_MODE_MODELS] = respond_models,
    [KG_MOCK_MODE_NOT_FOUND] = respond_not_found,
    [KG_MOCK_MODE_TOO_LARGE] = respond_too_large,
    [KG_MOCK_MODE_BAD_REQUEST] = respond_bad_request,
    [KG_MOCK_MODE_UNAUTHORIZED] = respond_unauthorized,
};

enum MHD_Result kg_mock_respond(kg_mock_req_t *req)
{
    if ((size_t)req->mode >= KG_MOCK_MODE_COUNT ||
        handlers[req->mode] == NULL) {
        return respond_not_found(req);
    }
    return handlers[req->mode](req);
}

int kg_mock_responses_init(void)
{
    resp_models = response_static(models_json, sizeof(models_json) - 1);
    resp_not_found =
        response_static(not_found_json, sizeof(not_found_json) - 1);
    resp_too_large =
        response_static(too_large_json, sizeof(too_large_json) - 1);
    resp_redirect = response_static(redirect_json, sizeof(redirect_json) - 1);
    resp_unauthorized =
        response_static(unauthorized_json, sizeof(unauthorized_json) - 1);
    if (resp_models == NULL || resp_not_found == NULL ||
        resp_too_large == NULL || resp_redirect == NULL ||
        resp_unauthorized == NULL) {
        kg_mock_responses_free();
        return -1;
    }
    MHD_add_response_header(resp_redirect, MHD_HTTP_HEADER_LOCATION,
                            MOCK_REDIRECT_TO);
    return 0;
}

static void destroy(struct MHD_Response **resp)
{
    if (*resp != NULL) {
        MHD_destroy_response(*resp);
        *resp = NULL;
    }
}

void kg_mock_responses_free(void)
{
    destroy(&resp_models);
    destroy(&resp_not_found);
    destroy(&resp_too_large);
    destroy(&resp_redirect);
    destroy(&resp_unauthorized);
    for (size_t i = 0; i < cache_len; i++) {
        destroy(&cache[i].resp);
        free(cache[i].key);
        cache[i].key = NULL;
    }
    cache_len = 0;
}
