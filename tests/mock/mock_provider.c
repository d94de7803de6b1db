/* Request intake of keygate-mock: body, mode selection, request log. */
#include "mock.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Phases of a request (kg_mock_req_t.phase). */
enum {
    MOCK_PHASE_BODY,    /* reading the body */
    MOCK_PHASE_HANG,    /* parked forever by hang_before_headers */
    MOCK_PHASE_ANSWERED /* a response is queued */
};

/* Longest header name kept in the echo and the log. */
#define MOCK_MAX_HEADER_NAME 256

atomic_bool kg_mock_stopping;

static atomic_ullong next_request_id = 1;
static FILE *log_file;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const mode_names[] = {
#define KG_MOCK_MODE_NAME(name, str) str,
    KG_MOCK_MODE_MAP(KG_MOCK_MODE_NAME)
#undef KG_MOCK_MODE_NAME
};

/* Routes chosen by path when nothing else names a mode. */
typedef struct mock_route {
    const char *method;
    const char *path;
    kg_mock_mode_t mode;        /* without "stream": true */
    kg_mock_mode_t stream_mode; /* with "stream": true */
} mock_route_t;

static const mock_route_t routes[] = {
    {"POST", "/v1/chat/completions", KG_MOCK_MODE_OK, KG_MOCK_MODE_STREAM},
    {"POST", "/v1/completions", KG_MOCK_MODE_OK, KG_MOCK_MODE_STREAM},
    {"POST", "/v1/responses", KG_MOCK_MODE_OK, KG_MOCK_MODE_STREAM},
    {"POST", "/v1/messages", KG_MOCK_MODE_ANTHROPIC,
     KG_MOCK_MODE_ANTHROPIC_STREAM},
    {"POST", "/v1/messages/count_tokens", KG_MOCK_MODE_COUNT_TOKENS,
     KG_MOCK_MODE_COUNT_TOKENS},
    {"POST", "/v1/embeddings", KG_MOCK_MODE_EMBEDDINGS,
     KG_MOCK_MODE_EMBEDDINGS},
    {"POST", "/v1/moderations", KG_MOCK_MODE_MODERATIONS,
     KG_MOCK_MODE_MODERATIONS},
    {"GET", "/v1/models", KG_MOCK_MODE_MODELS, KG_MOCK_MODE_MODELS},
};

/* A numeric member of the "mock" object and its bounds. */
typedef struct mock_knob {
    const char *name;
    size_t offset;
    long min;
    long max;
} mock_knob_t;

static const mock_knob_t knobs[] = {
    {"events", offsetof(kg_mock_params_t, events), 0, KG_MOCK_MAX_EVENTS},
    {"interval_ms", offsetof(kg_mock_params_t, interval_ms), 0,
     KG_MOCK_MAX_INTERVAL_MS},
    {"status", offsetof(kg_mock_params_t, status), 200, 599},
    {"retry_after", offsetof(kg_mock_params_t, retry_after), 0,
     KG_MOCK_MAX_RETRY_AFTER},
    {"prompt_tokens", offsetof(kg_mock_params_t, prompt_tokens), 0,
     KG_MOCK_MAX_TOKENS},
    {"completion_tokens", offsetof(kg_mock_params_t, completion_tokens), 0,
     KG_MOCK_MAX_TOKENS},
    {"pad", offsetof(kg_mock_params_t, pad), 0, KG_MOCK_MAX_PAD},
};

const char *kg_mock_mode_name(kg_mock_mode_t mode)
{
    if ((size_t)mode >= sizeof(mode_names) / sizeof(*mode_names)) {
        return "unknown";
    }
    return mode_names[mode];
}

int kg_mock_log_open(const char *path)
{
    if (path == NULL) {
        return 0;
    }
    log_file = fopen(path, "a");
    if (log_file == NULL) {
        return errno;
    }
    return 0;
}

void kg_mock_log_close(void)
{
    if (log_file != NULL) {
        fclose(log_file);
        log_file = NULL;
    }
}

/* Write obj (borrowed) as one flushed line of the request log. */
static void log_line(const json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT); /* new */

    if (text == NULL) {
        return;
    }
    pthread_mutex_lock(&log_lock);
    fputs(text, log_file);
    fputc('\n', log_file);
    fflush(log_file);
    pthread_mutex_unlock(&log_lock);
    free(text);
}

/*
 * A JSON string of n bytes of s. Returns a new reference; bytes that are not
 * valid UTF-8 become '?' so any body or header can be logged.
 */
static json_t *json_bytes(const char *s, size_t n)
{
    json_t *str = json_stringn(s, n);
    char *copy;

    if (str != NULL || n == 0) {
        return str;
    }
    copy = malloc(n);
    if (copy == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    }
    str = json_stringn(copy, n);
    free(copy);
    return str;
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind,
                                  const char *key, const char *value)
{
    json_t *headers = cls; /* borrowed */
    char name[MOCK_MAX_HEADER_NAME];
    size_t len = strlen(key);
    const json_t *old;
    json_t *val;

    (void)kind;
    if (len >= sizeof(name)) {
        len = sizeof(name) - 1;
    }
    for (size_t i = 0; i < len; i++) {
        name[i] = (char)tolower((unsigned char)key[i]);
    }
    name[len] = '\0';
    if (value == NULL) {
        value = "";
    }
    old = json_object_get(headers, name); /* borrowed */
    if (old != NULL) {
        /* Repeated header: join the values as HTTP does. */
        char *joined = NULL;
        size_t jlen = json_string_length(old) + 2 + strlen(value);

        joined = malloc(jlen + 1);
        if (joined == NULL) {
            return MHD_YES;
        }
        snprintf(joined, jlen + 1, "%s, %s", json_string_value(old), value);
        val = json_bytes(joined, jlen);
        free(joined);
    } else {
        val = json_bytes(value, strlen(value));
    }
    if (val != NULL) {
        json_object_set_new(headers, name, val);
    }
    return MHD_YES;
}

/* Append "k=v" or "k" to the query string being rebuilt in cls. */
static enum MHD_Result add_argument(void *cls, enum MHD_ValueKind kind,
                                    const char *key, const char *value)
{
    json_t **query = cls; /* borrowed slot of a new reference */
    const char *old = json_string_value(*query);
    size_t len =
        strlen(old) + strlen(key) + 2 + (value != NULL ? strlen(value) : 0);
    char *text = malloc(len + 1);

    (void)kind;
    if (text == NULL) {
        return MHD_NO;
    }
    snprintf(text, len + 1, "%s%s%s%s%s", old, *old != '\0' ? "&" : "", key,
             value != NULL ? "=" : "", value != NULL ? value : "");
    json_decref(*query);
    *query = json_bytes(text, strlen(text));
    free(text);
    return *query != NULL ? MHD_YES : MHD_NO;
}

json_t *kg_mock_request_json(const kg_mock_req_t *req)
{
    json_t *obj = json_object();     /* new */
    json_t *headers = json_object(); /* new */
    json_t *query = json_string(""); /* new */

    if (obj == NULL || headers == NULL || query == NULL) {
        json_decref(headers);
        json_decref(query);
        json_decref(obj);
        return NULL;
    }
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, add_header, headers);
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_argument,
                              &query);
    json_object_set_new(obj, "method",
                        json_bytes(req->method, strlen(req->method)));
    json_object_set_new(obj, "path", json_bytes(req->path, strlen(req->path)));
    json_object_set_new(obj, "query", query != NULL ? query : json_null());
    json_object_set_new(obj, "headers", headers);
    json_object_set_new(
        obj, "body", json_bytes(req->body.p ? req->body.p : "", req->body.len));
    return obj;
}

static void log_request(const kg_mock_req_t *req)
{
    json_t *obj;

    if (log_file == NULL) {
        return;
    }
    obj = kg_mock_request_json(req); /* new */
    if (obj == NULL) {
        return;
    }
    json_object_set_new(obj, "request", json_integer((json_int_t)req->id));
    json_object_set_new(obj, "mode", json_string(kg_mock_mode_name(req->mode)));
    if (req->mode == KG_MOCK_MODE_STATUS) {
        json_object_set_new(obj, "status", json_integer(req->p.status));
    }
    log_line(obj);
    json_decref(obj);
}

/* Why a stream ended, from the mock's own note or MHD's code. */
static const char *end_reason(const kg_mock_req_t *req,
                              enum MHD_RequestTerminationCode toe)
{
    if (req->client_gone) {
        return "client_gone";
    }
    if (req->end_reason != NULL) {
        return req->end_reason;
    }
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        return "complete";
    }
    if (atomic_load(&kg_mock_stopping) ||
        toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN) {
        return "shutdown";
    }
    if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) {
        return "timeout";
    }
    return "client_gone";
}

static void log_stream_end(const kg_mock_req_t *req,
                           enum MHD_RequestTerminationCode toe)
{
    json_t *obj;

    if (log_file == NULL) {
        return;
    }
    obj = json_pack("{s:s, s:I, s:I, s:s}", "event", "stream_end", "request",
                    (json_int_t)req->id, "sent_events",
                    (json_int_t)req->sent_events, "reason",
                    end_reason(req, toe)); /* new */
    if (obj != NULL) {
        log_line(obj);
        json_decref(obj);
    }
}

void kg_mock_req_unref(kg_mock_req_t *req)
{
    if (req == NULL || atomic_fetch_sub(&req->refs, 1) != 1) {
        return;
    }
    kg_mock_buf_free(&req->body);
    kg_mock_buf_free(&req->out);
    free(req->model_json);
    free(req);
}

void kg_mock_on_completed(void *cls, struct MHD_Connection *conn,
                          void **con_cls, enum MHD_RequestTerminationCode toe)
{
    kg_mock_req_t *req = *con_cls;

    (void)cls;
    (void)conn;
    if (req == NULL) {
        return;
    }
    if (req->streaming) {
        log_stream_end(req, toe);
    }
    *con_cls = NULL;
    kg_mock_req_unref(req);
}

/* Compare mode names treating '-' and '_' alike; n bytes of s. */
static bool name_is(const char *s, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n && name[i] != '\0'; i++) {
        char a = s[i] == '-' ? '_' : (char)tolower((unsigned char)s[i]);

        if (a != name[i]) {
            return false;
        }
    }
    return i == n && name[i] == '\0';
}

/*
 * Parse a mode name: one of the selectable names, or "status" optionally
 * followed by one of " -_:=" and a number ("status 429", "status-503").
 * Returns false if s is no mode; *status is set for "status <n>".
 */
static bool parse_mode(const char *s, kg_mock_mode_t *mode, long *status)
{
    size_t n = strlen(s);

    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        n--;
    }
    if (n >= 6 && name_is(s, 6, "status")) {
        const char *num = s + 6;
        char *end;
        long v;

        if (n == 6) {
            *mode = KG_MOCK_MODE_STATUS;
            return true;
        }
        if (strchr(" -_:=", *num) != NULL) {
            num++;
        }
        errno = 0;
        v = strtol(num, &end, 10);
        if (errno != 0 || end != s + n || end == num || v < 200 || v > 599) {
            return false;
        }
        *mode = KG_MOCK_MODE_STATUS;
        *status = v;
        return true;
    }
    for (int m = 0; m <= KG_MOCK_MODE_REDIRECT; m++) {
        if (name_is(s, n, mode_names[m])) {
            *mode = (kg_mock_mode_t)m;
            return true;
        }
    }
    return false;
}

/* Read the numeric members of the "mock" object. Returns an error or NULL. */
static const char *read_knobs(const json_t *mock, kg_mock_params_t *p)
{
    for (size_t i = 0; i < sizeof(knobs) / sizeof(*knobs); i++) {
        const json_t *v = json_object_get(mock, knobs[i].name); /* borrowed */
        json_int_t n;

        if (v == NULL) {
            continue;
        }
        if (!json_is_integer(v)) {
            return "mock members must be integers";
        }
        n = json_integer_value(v);
        if (n < knobs[i].min || n > knobs[i].max) {
            return "mock member out of range";
        }
        *(long *)(void *)((char *)p + knobs[i].offset) = (long)n;
    }
    return NULL;
}

/* The model as a JSON string into req->model_json. Returns false on OOM. */
static bool set_model(kg_mock_req_t *req, const json_t *body)
{
    const json_t *model = json_object_get(body, "model"); /* borrowed */
    const char *name = "mock-model";
    json_t *str;

    if (json_is_string(model)) {
        name = json_string_value(model);
        if (json_string_length(model) > KG_MOCK_MAX_MODEL) {
            name = "mock-model-name-too-long";
        }
    }
    str = json_string(name); /* new */
    if (str == NULL) {
        return false;
    }
    req->model_json = json_dumps(str, JSON_ENCODE_ANY);
    json_decref(str);
    return req->model_json != NULL;
}

static void read_body_flags(kg_mock_req_t *req, const json_t *body)
{
    const json_t *opts = json_object_get(body, "stream_options");
    const json_t *input = json_object_get(body, "input");

    req->p.stream = json_is_true(json_object_get(body, "stream"));
    req->p.include_usage = json_is_true(json_object_get(opts, "include_usage"));
    if (json_is_array(input)) {
        req->p.inputs = (long)json_array_size(input);
    }
}

/* Set req->mode from the mock object or the model; false if neither. */
static bool mode_from_body(kg_mock_req_t *req, const json_t *body)
{
    const json_t *mock = json_object_get(body, "mock");   /* borrowed */
    const json_t *model = json_object_get(body, "model"); /* borrowed */
    const json_t *mode = json_object_get(mock, "mode");   /* borrowed */

    if (json_is_string(mode)) {
        if (!parse_mode(json_string_value(mode), &req->mode, &req->p.status)) {
            req->mode = KG_MOCK_MODE_BAD_REQUEST;
            req->bad_request = "unknown mock mode";
        }
        return true;
    }
    if (json_is_object(mock) && json_object_get(mock, "status") != NULL) {
        req->mode = KG_MOCK_MODE_STATUS;
        return true;
    }
    if (json_is_string(model) &&
        strncmp(json_string_value(model), "mock-", 5) == 0) {
        return parse_mode(json_string_value(model) + 5, &req->mode,
                          &req->p.status);
    }
    return false;
}

static kg_mock_mode_t mode_from_route(const kg_mock_req_t *req)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(*routes); i++) {
        if (strcmp(req->method, routes[i].method) == 0 &&
            strcmp(req->path, routes[i].path) == 0) {
            return req->p.stream ? routes[i].stream_mode : routes[i].mode;
        }
    }
    return KG_MOCK_MODE_NOT_FOUND;
}

const char *kg_mock_required_key;

/* Equal strings, in time that depends on their lengths only. */
static bool same_secret(const char *a, const char *b)
{
    size_t na = strlen(a);
    size_t nb = strlen(b);
    unsigned char diff = na != nb;

    for (size_t i = 0; i < na && i < nb; i++) {
        diff |= (unsigned char)(a[i] ^ b[i]);
    }
    return diff == 0;
}

/* Whether req carries the required provider key (or none is required). */
static bool key_accepted(const kg_mock_req_t *req)
{
    const char *auth;
    const char *xkey;

    if (kg_mock_required_key == NULL) {
        return true;
    }
    auth = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                       MHD_HTTP_HEADER_AUTHORIZATION);
    xkey = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "x-api-key");
    if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0 &&
        same_secret(auth + 7, kg_mock_required_key)) {
        return true;
    }
    return xkey != NULL && same_secret(xkey, kg_mock_required_key);
}

/* Choose req->mode and req->p (first match wins). Returns false on OOM. */
static bool choose_mode(kg_mock_req_t *req)
{
    const char *hdr;
    json_t *body = NULL; /* new */
    const char *err = NULL;
    bool named = false;

    req->p = (kg_mock_params_t){-1, -1, -1, -1, -1, -1, 1, -1, false, false};
    if (req->body.len > 0) {
        body = json_loadb(req->body.p, req->body.len, 0, NULL);
    }
    if (!set_model(req, body)) {
        json_decref(body);
        return false;
    }
    read_body_flags(req, body);
    err = read_knobs(json_object_get(body, "mock"), &req->p);
    hdr =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "x-mock-mode");
    if (hdr != NULL) {
        named = true;
        if (!parse_mode(hdr, &req->mode, &req->p.status)) {
            err = "unknown x-mock-mode";
        }
    }
    if (!named) {
        named = mode_from_body(req, body);
    }
    if (!named) {
        req->mode = mode_from_route(req);
    }
    if (err != NULL) {
        req->mode = KG_MOCK_MODE_BAD_REQUEST;
        req->bad_request = err;
    }
    if (!key_accepted(req)) {
        req->mode = KG_MOCK_MODE_UNAUTHORIZED; /* as a provider would */
    }
    req->flavor = strncmp(req->path, "/v1/messages", 12) == 0
                      ? KG_MOCK_FLAVOR_ANTHROPIC
                      : KG_MOCK_FLAVOR_OPENAI;
    if (req->mode == KG_MOCK_MODE_ANTHROPIC_STREAM) {
        req->flavor = KG_MOCK_FLAVOR_ANTHROPIC;
    } else if (req->mode == KG_MOCK_MODE_STREAM) {
        req->flavor = KG_MOCK_FLAVOR_OPENAI;
    }
    json_decref(body);
    return true;
}

/* Content-Length above the bound? A missing or odd one is not. */
static bool declared_too_large(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n;
    char *end;

    if (cl == NULL) {
        return false;
    }
    errno = 0;
    n = strtoull(cl, &end, 10);
    if (errno != 0 || end == cl) {
        return errno == ERANGE;
    }
    return n > KG_MOCK_MAX_BODY;
}

static enum MHD_Result start_request(struct MHD_Connection *conn,
                                     const char *url, const char *method,
                                     void **con_cls)
{
    const union MHD_ConnectionInfo *info;
    kg_mock_req_t *req;

    if (atomic_load(&kg_mock_stopping)) {
        return MHD_NO;
    }
    req = calloc(1, sizeof(*req)); /* new; owned by the connection */
    if (req == NULL) {
        return MHD_NO;
    }
    atomic_init(&req->refs, 1);
    req->id = atomic_fetch_add(&next_request_id, 1);
    req->conn = conn;
    req->method = method;
    req->path = url;
    req->phase = MOCK_PHASE_BODY;
    info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    req->fd = info != NULL ? info->connect_fd : -1;
    *con_cls = req;
    if (declared_too_large(conn)) {
        req->too_large = true;
        req->mode = KG_MOCK_MODE_TOO_LARGE;
        log_request(req);
        req->phase = MOCK_PHASE_ANSWERED;
        return kg_mock_respond_too_large(req);
    }
    return MHD_YES;
}

/* Keep upload bytes, up to KG_MOCK_MAX_BODY; past that remember only. */
static bool add_body(kg_mock_req_t *req, const char *data, size_t n)
{
    int rc;

    if (req->too_large) {
        return true;
    }
    rc = kg_mock_buf_add(&req->body, data, n, KG_MOCK_MAX_BODY);
    if (rc == EFBIG) {
        req->too_large = true;
        kg_mock_buf_free(&req->body);
        return true;
    }
    return rc == 0;
}

/* The whole request is in: choose, log and answer. */
static enum MHD_Result answer(kg_mock_req_t *req)
{
    if (req->too_large) {
        req->mode = KG_MOCK_MODE_TOO_LARGE;
        log_request(req);
        req->phase = MOCK_PHASE_ANSWERED;
        return kg_mock_respond_too_large(req);
    }
    if (!choose_mode(req)) {
        return MHD_NO;
    }
    log_request(req);
    if (req->mode == KG_MOCK_MODE_HANG_BEFORE_HEADERS) {
        req->phase = MOCK_PHASE_HANG;
        kg_mock_timer_park(req, -1);
        return MHD_YES;
    }
    req->phase = MOCK_PHASE_ANSWERED;
    return kg_mock_respond(req);
}

enum MHD_Result kg_mock_on_request(void *cls, struct MHD_Connection *conn,
                                   const char *url, const char *method,
                                   const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls)
{
    kg_mock_req_t *req = *con_cls;

    (void)cls;
    (void)version;
    if (req == NULL) {
        return start_request(conn, url, method, con_cls);
    }
    if (*upload_size != 0) {
        bool ok = req->phase != MOCK_PHASE_BODY ||
                  add_body(req, upload, *upload_size);

        *upload_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    switch (req->phase) {
    case MOCK_PHASE_BODY:
        return answer(req);
    case MOCK_PHASE_HANG:
        /* Resumed: only the client leaving or shutdown ends a hang. */
        if (req->client_gone || atomic_load(&kg_mock_stopping)) {
            return MHD_NO;
        }
        kg_mock_timer_park(req, -1);
        return MHD_YES;
    default:
        return MHD_YES;
    }
}

size_t kg_mock_no_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}
