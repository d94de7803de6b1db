/* Shared types and entry points of keygate-mock, the fake LLM provider. */
#ifndef KEYGATE_MOCK_H
#define KEYGATE_MOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <microhttpd.h>

/* Largest request body read; a larger one is answered 413. */
#define KG_MOCK_MAX_BODY ((size_t)16 * 1024 * 1024)
/* Longest model name echoed; a longer one is replaced by a marker. */
#define KG_MOCK_MAX_MODEL 1024
/* Bounds of the numeric members of the "mock" request object. */
#define KG_MOCK_MAX_EVENTS      1000000L
#define KG_MOCK_MAX_INTERVAL_MS 3600000L
#define KG_MOCK_MAX_TOKENS      1000000000L
#define KG_MOCK_MAX_RETRY_AFTER 86400000L
/* Filler bytes an answer or an event may be asked to carry ("pad"). */
#define KG_MOCK_MAX_PAD 16777216L
/* Defaults of the same members. */
#define KG_MOCK_DEFAULT_EVENTS            5L
#define KG_MOCK_DEFAULT_RETRY_AFTER       7L
#define KG_MOCK_DEFAULT_PROMPT_TOKENS     10L
#define KG_MOCK_DEFAULT_COMPLETION_TOKENS 20L
#define KG_MOCK_DEFAULT_DRIP_INTERVAL_MS  100L
/* Events sent by the *_mid_stream faults before the fault. */
#define KG_MOCK_FAULT_AFTER_EVENTS 2UL

/*
 * The modes: (NAME, "name"). The X-macro expands into the enum, the names
 * used in headers, "mock" objects, "mock-<name>" models and the log, and
 * the handler table of mock_provider.c. The modes after KG_MOCK_MODE_REDIRECT
 * are chosen by path only and are not selectable by name.
 */
#define KG_MOCK_MODE_MAP(X)                         \
    X(OK, "ok")                                     \
    X(STREAM, "stream")                             \
    X(ANTHROPIC, "anthropic")                       \
    X(ANTHROPIC_STREAM, "anthropic_stream")         \
    X(ECHO, "echo")                                 \
    X(STATUS, "status")                             \
    X(HANG_BEFORE_HEADERS, "hang_before_headers")   \
    X(HANG_MID_STREAM, "hang_mid_stream")           \
    X(RESET_BEFORE_HEADERS, "reset_before_headers") \
    X(RESET_MID_STREAM, "reset_mid_stream")         \
    X(CLOSE_MID_STREAM, "close_mid_stream")         \
    X(GARBAGE, "garbage")                           \
    X(HUGE, "huge")                                 \
    X(SLOW_DRIP, "slow_drip")                       \
    X(REDIRECT, "redirect")                         \
    X(COUNT_TOKENS, "count_tokens")                 \
    X(EMBEDDINGS, "embeddings")                     \
    X(MODERATIONS, "moderations")                   \
    X(MODELS, "models")                             \
    X(NOT_FOUND, "not_found")                       \
    X(TOO_LARGE, "payload_too_large")               \
    X(BAD_REQUEST, "bad_request")                   \
    X(UNAUTHORIZED, "unauthorized")

typedef enum kg_mock_mode {
#define KG_MOCK_MODE_ENUM(name, str) KG_MOCK_MODE_##name,
    KG_MOCK_MODE_MAP(KG_MOCK_MODE_ENUM)
#undef KG_MOCK_MODE_ENUM
        KG_MOCK_MODE_COUNT
} kg_mock_mode_t;

/* A growable byte buffer; p is new (malloc) or NULL, NUL-terminated. */
typedef struct kg_mock_buf {
    char *p;
    size_t len;
    size_t cap;
} kg_mock_buf_t;

/* Per-request knobs, from the "mock" object or defaults; -1 is "unset". */
typedef struct kg_mock_params {
    long events;
    long interval_ms;
    long status;
    long retry_after;
    long prompt_tokens;
    long completion_tokens;
    long inputs;        /* number of embedding inputs */
    long pad;           /* filler bytes in the answer's content */
    bool stream;        /* the body has "stream": true */
    bool include_usage; /* "stream_options": {"include_usage": true} */
} kg_mock_params_t;

/* How a streamed answer is shaped. */
typedef enum kg_mock_flavor {
    KG_MOCK_FLAVOR_OPENAI,
    KG_MOCK_FLAVOR_ANTHROPIC
} kg_mock_flavor_t;

/*
 * One request. Owned jointly by the connection (released in the request
 * completed callback) and, for callback responses, by the response
 * (released by its free callback): refs counts the owners. While the
 * connection is parked (suspended) only the timer thread touches it.
 */
typedef struct kg_mock_req {
    atomic_int refs;
    unsigned long long id;
    struct MHD_Connection *conn; /* borrowed */
    int fd;                      /* borrowed from MHD */
    const char *method;          /* borrowed from MHD until completion */
    const char *path;            /* borrowed from MHD until completion */

    kg_mock_buf_t body;
    bool too_large;

    kg_mock_mode_t mode;
    kg_mock_params_t p;
    kg_mock_flavor_t flavor;
    char *model_json;        /* new; the model as a JSON string with quotes */
    const char *bad_request; /* static message for KG_MOCK_MODE_BAD_REQUEST */
    int phase;

    /* Callback responses (streams, huge, slow_drip). */
    bool streaming;
    unsigned long step;        /* next step of the stream program */
    unsigned long sent_events; /* events (or pieces) handed to MHD */
    bool waited;               /* the wait before the next step is over */
    kg_mock_buf_t out;         /* text of the current event */
    size_t out_off;            /* bytes of out already handed to MHD */
    const char *end_reason;    /* static; set when the mock ends a stream */

    /* Timer bookkeeping, see mock_timer.c. */
    uint64_t due_ns;
    uint64_t deadline_ns;
    bool client_gone;
} kg_mock_req_t;

/* Set once on SIGTERM/SIGINT; handlers then end what they are doing. */
extern atomic_bool kg_mock_stopping;

/*
 * The provider key every request must carry (--require-key-env), as
 * "Authorization: Bearer <key>" or "x-api-key: <key>", or NULL: none is
 * checked. Set before the daemon starts; owned by main.
 */
extern const char *kg_mock_required_key;

/*
 * Append n bytes to buf, keeping it NUL-terminated. Returns 0, ENOMEM, or
 * EFBIG (buf unchanged) when buf would hold more than max bytes.
 */
int kg_mock_buf_add(kg_mock_buf_t *buf, const void *data, size_t n, size_t max);

/* Append printf-style text to buf. Returns 0 or ENOMEM. */
int kg_mock_buf_printf(kg_mock_buf_t *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Free buf's bytes and empty it. */
void kg_mock_buf_free(kg_mock_buf_t *buf);

/* mock_timer.c */

/* Start the timer thread. Returns 0, or an errno value. */
int kg_mock_timer_start(void);

/*
 * Suspend req's connection and resume it after delay_ms, or, if delay_ms is
 * negative, only when the client has gone (or on drain). Must be called from
 * the access handler or a content reader of that connection. While parked
 * the client is probed; if it has gone, req->client_gone is set before the
 * resume.
 */
void kg_mock_timer_park(kg_mock_req_t *req, long delay_ms);

/* Resume every parked connection now, and every later one at once. */
void kg_mock_timer_drain(void);

/* Number of connections parked and not yet resumed. */
size_t kg_mock_timer_parked(void);

/* Stop and join the timer thread; nothing may be parked any more. */
void kg_mock_timer_stop(void);

/* mock_provider.c */

/*
 * Open the request log (append) if path is not NULL. Returns 0, or an errno
 * value.
 */
int kg_mock_log_open(const char *path);

/* Close the request log. */
void kg_mock_log_close(void);

/* The MHD access handler of the mock. */
enum MHD_Result kg_mock_on_request(void *cls, struct MHD_Connection *conn,
                                   const char *url, const char *method,
                                   const char *version, const char *upload,
                                   size_t *upload_size, void **con_cls);

/* The MHD request-completed callback: logs stream ends, frees requests. */
void kg_mock_on_completed(void *cls, struct MHD_Connection *conn,
                          void **con_cls, enum MHD_RequestTerminationCode toe);

/* Drop one reference to req, freeing it on the last one. */
void kg_mock_req_unref(kg_mock_req_t *req);

/*
 * The received request as {"method", "path", "query", "headers", "body"}:
 * header names lower-cased, repeated headers joined with ", ", bytes that
 * are not UTF-8 shown as '?'. Returns a new reference, or NULL on OOM.
 */
json_t *kg_mock_request_json(const kg_mock_req_t *req);

/* MHD unescape callback that keeps the path and query exactly as sent. */
size_t kg_mock_no_unescape(void *cls, struct MHD_Connection *conn, char *s);

/* Name of a mode ("ok", "status", ...). */
const char *kg_mock_mode_name(kg_mock_mode_t mode);

/* mock_responses.c */

/* Build the canned responses. Returns 0, or -1 when out of memory. */
int kg_mock_responses_init(void);

/* Free the canned responses; the daemon must be stopped. */
void kg_mock_responses_free(void);

/*
 * Queue the answer for req's mode (JSON, stream, fault...). Returns what the
 * access handler must return: MHD_NO closes the connection.
 */
enum MHD_Result kg_mock_respond(kg_mock_req_t *req);

/* Queue the answer to an over-long body. Returns as kg_mock_respond. */
enum MHD_Result kg_mock_respond_too_large(kg_mock_req_t *req);

#endif /* KEYGATE_MOCK_H */
