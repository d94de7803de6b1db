/* The upstream side: provider transfers with libcurl, driven by one event loop.
 */
#define _GNU_SOURCE /* memmem */
#include "keygate/proxy.h"

#include <curl/curl.h>
#include <jansson.h>
#include <errno.h>
#include <malloc.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "keygate/access.h"
#include "keygate/clock.h"
#include "keygate/log.h"
#include "keygate/money.h"
#include "keygate/sse.h"
#include "keygate/usage.h"

#define PROXY_MAX_SSE_EVENT (1024 * 1024)
#define PROXY_HEARTBEAT_US  (500 * 1000)
/* Timeouts are checked this often (first byte, idle). */
#define PROXY_CHECK_US (50 * 1000)
/* Streams keygate opens on one HTTP/2 provider connection at most. */
#define PROXY_H2_STREAMS 1000
/*
 * Large buffers (request bodies, JSON answers) come from the heap up to
 * this size instead of a fresh mmap each (glibc's largest fixed threshold).
 */
#define PROXY_MMAP_THRESHOLD (32 * 1024 * 1024)
/* Freed heap is not returned at every free past this; the maintenance
 * thread's malloc_trim returns it after a busy spell. */
#define PROXY_TRIM_THRESHOLD (256 * 1024 * 1024)
/* Easy handles kept for reuse (curl_easy_reset) instead of freed. */
#define PROXY_SPARE_EASY 64

typedef enum proxy_cmd_type {
    PROXY_CMD_START,
    PROXY_CMD_CANCEL,
    PROXY_CMD_UNPAUSE,
    PROXY_CMD_CUT_ALL,
} proxy_cmd_type_t;

typedef struct proxy_cmd {
    proxy_cmd_type_t type;
    kg_exchange_t *ex; /* holds a reference */
    struct proxy_cmd *next;
} proxy_cmd_t;

/* Proxy-private state of one exchange; lives while the transfer runs. */
typedef struct upstream {
    kg_exchange_t *ex; /* the proxy's reference */
    kg_proxy_t *proxy;
    CURL *easy;
    struct upstream *prev;
    struct upstream *next;
    bool headers_done;
    int status;
    int64_t first_byte_us;
    int64_t sent_us;      /* when the transfer started, for metrics */
    bool stream_counted;  /* counted in the open-streams gauge */
    int64_t last_data_us; /* for the idle timeout; paused time not counted */
    size_t received;
    bool cut; /* over max_response_bytes */
    kg_buf_t body;
    kg_sse_parser_t *sse;
    kg_usage_stream_t us;
    bool usage_sent;
    size_t upload_off; /* bytes of a spliced body handed to curl */
    /* The credential sent, for redaction: the workspace's (a reference,
     * kept until the transfer is released) or the provider's. */
    kg_policy_cred_t *cred_ref;
    const char *cred;
    size_t cred_len;
    char curl_error[CURL_ERROR_SIZE]; /* libcurl's words for a failure */
} upstream_t;

/* A provider socket curl asked the loop to watch (epoll's data.ptr). */
typedef struct proxy_sock {
    int fd;
    bool dead; /* removed; freed after the current batch of events */
    struct proxy_sock *prev; /* every live socket, for the final free */
    struct proxy_sock *next;
    struct proxy_sock *next_dead;
} proxy_sock_t;

struct kg_proxy {
    kg_proxy_opts_t opts;
    CURLM *multi;
    int epfd;    /* the owning loop's epoll set (borrowed) */
    int wake_fd; /* eventfd: commands from other threads */
    char wake_tag;
    pthread_t owner; /* the loop thread, once kg_proxy_bind_thread ran */
    atomic_bool bound;
    bool mhd_kick;      /* a connection was resumed on the loop thread */
    pthread_mutex_t mu; /* guards the command queue */
    proxy_cmd_t *head;
    proxy_cmd_t *tail;
    upstream_t *active;   /* doubly linked, loop thread only */
    int64_t timer_due_us; /* curl's timeout; -1: none */
    int64_t next_check_us;
    int64_t last_heartbeat_us;
    proxy_sock_t *socks; /* live */
    proxy_sock_t *dead_socks;
    int64_t idle_since_us; /* when the last transfer ended */
    bool conns_maybe;      /* connections may be cached since the last sweep */
    CURL *spare[PROXY_SPARE_EASY]; /* reset handles ready for reuse */
    size_t nspare;
    atomic_size_t nactive;
};

static void proxy_sweep_idle(kg_proxy_t *p);

static bool proxy_on_thread(kg_proxy_t *p)
{
    return atomic_load_explicit(&p->bound, memory_order_acquire) &&
           pthread_equal(p->owner, pthread_self());
}

static void proxy_wake(kg_proxy_t *p)
{
    uint64_t one = 1;

    if (write(p->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already non-zero, the loop will wake. */
    }
}

static void proxy_enqueue(kg_proxy_t *p, proxy_cmd_type_t type,
                          kg_exchange_t *ex)
{
    proxy_cmd_t *cmd = malloc(sizeof(*cmd));

    if (cmd == NULL) {
        KG_ERROR("proxy: out of memory queueing a command");
        if (type == PROXY_CMD_START) {
            kg_gen_slot_drop(&ex->gen); /* submitted on the loop thread */
        }
        kg_exchange_unref(ex);
        return;
    }
    cmd->type = type;
    cmd->ex = ex;
    cmd->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail != NULL) {
        p->tail->next = cmd;
    } else {
        p->head = cmd;
    }
    p->tail = cmd;
    pthread_mutex_unlock(&p->mu);
    /* The loop runs its queue after every round of libmicrohttpd work, so
     * a command from its own thread needs no wake-up. */
    if (!proxy_on_thread(p)) {
        proxy_wake(p);
    }
}

void kg_proxy_wake_loop(void *ud)
{
    kg_proxy_t *p = ud;

    if (proxy_on_thread(p)) {
        p->mhd_kick = true; /* the loop runs libmicrohttpd after this round */
    } else {
        proxy_wake(p);
    }
}

bool kg_proxy_take_kick(kg_proxy_t *p)
{
    bool k = p->mhd_kick;

    p->mhd_kick = false;
    return k;
}

void kg_proxy_submit(kg_proxy_t *p, kg_exchange_t *ex)
{
    proxy_enqueue(p, PROXY_CMD_START, ex);
}

void kg_proxy_cancel(kg_proxy_t *p, kg_exchange_t *ex)
{
    kg_exchange_ref(ex);
    proxy_enqueue(p, PROXY_CMD_CANCEL, ex);
}

void kg_proxy_cut_all(kg_proxy_t *p)
{
    proxy_enqueue(p, PROXY_CMD_CUT_ALL, NULL);
}

void kg_proxy_unpause(kg_proxy_t *p, kg_exchange_t *ex)
{
    kg_exchange_ref(ex);
    proxy_enqueue(p, PROXY_CMD_UNPAUSE, ex);
}

size_t kg_proxy_active(kg_proxy_t *p)
{
    return atomic_load(&p->nactive);
}

/* Credentials shorter than this are not searched for (too many hits). */
#define PROXY_REDACT_MIN 8

/*
 * Overwrite every occurrence of the credential sent with this transfer in
 * buf. A 1 MB answer is searched at memchr-like speed: 16 positions a step
 * are filtered by the credential's first and last bytes (SSE2), and only
 * those candidates are compared whole.
 */
static void proxy_redact(const upstream_t *up, char *buf, size_t len)
{
    const char *cred = up->cred;
    size_t clen = up->cred_len;
    size_t i = 0;

    if (cred == NULL || clen < PROXY_REDACT_MIN || len < clen) {
        return;
    }
#if defined(__SSE2__)
    {
        const __m128i first = _mm_set1_epi8(cred[0]);
        const __m128i last = _mm_set1_epi8(cred[clen - 1]);

        while (i + clen - 1 + 16 <= len) {
            __m128i a =
                _mm_loadu_si128((const __m128i *)(const void *)(buf + i));
            __m128i b = _mm_loadu_si128(
                (const __m128i *)(const void *)(buf + i + clen - 1));
            unsigned mask = (unsigned)_mm_movemask_epi8(_mm_and_si128(
                _mm_cmpeq_epi8(a, first), _mm_cmpeq_epi8(b, last)));
            size_t next = i + 16;

            while (mask != 0) {
                size_t at = i + (size_t)__builtin_ctz(mask);

                mask &= mask - 1;
                if (memcmp(buf + at, cred, clen) == 0) {
                    memset(buf + at, '*', clen);
                    next = at + clen > next ? at + clen : next;
                    mask = 0; /* the rest of this block after the hit */
                }
            }
            i = next;
        }
    }
#endif
    while (i + clen <= len) {
        const char *hit = memchr(buf + i, cred[0], len - clen + 1 - i);

        if (hit == NULL) {
            break;
        }
        i = (size_t)(hit - buf);
        if (memcmp(buf + i, cred, clen) == 0) {
            memset(buf + i, '*', clen);
            i += clen;
        } else {
            i++;
        }
    }
}

static kg_api_t proxy_api(const kg_exchange_t *ex)
{
    return ex->provider->type == KG_PROVIDER_ANTHROPIC ? KG_API_ANTHROPIC
                                                       : KG_API_OPENAI;
}

/*
 * The exchange's usage is safe (journaled or committed): let the answer's
 * last bytes go. Idempotent: the commit callback calls it again.
 */
static void proxy_usage_release(kg_exchange_t *ex)
{
    pthread_mutex_lock(&ex->mu);
    if (ex->holding) {
        if (ex->held != NULL &&
            kg_buf_append(&ex->out, ex->held, ex->held_len) != KG_OK) {
            ex->upstream_failed = true;
        }
        free(ex->held);
        ex->held = NULL;
        ex->holding = false;
    }
    if (ex->phase == KG_PHASE_WAITING && ex->upstream_done) {
        ex->phase = KG_PHASE_READY;
    }
    kg_exchange_wake_locked(ex);
    pthread_mutex_unlock(&ex->mu);
}

/* Called on the usage writer thread once the event has committed. */
static void proxy_usage_committed(void *ud, kg_err_t rc)
{
    kg_exchange_t *ex = ud;

    if (rc != KG_OK && !(ex->usage_journaled && kg_err_is_store(rc))) {
        /* (A journaled event of a failed batch is applied later: the
         * writer logs the batch.) */
        KG_ERROR("request %s: usage event not stored (%s)", ex->request_id,
                 kg_err_name(rc));
    } else if (rc == KG_OK && ex->charged_credits > 0 && ex->policy != NULL) {
        kg_policy_credits_committed(ex->policy, ex->ticket.workspace_id,
                                    ex->charged_credits);
    }
    proxy_usage_release(ex);
    kg_exchange_unref(ex);
}

/*
 * A forwarded request ends: its summary, filled once from its usage event,
 * goes to this loop's metrics shard and (with [server] request_log) to the
 * access log.
 */
static void proxy_count(const upstream_t *up, const kg_usage_event_t *ev)
{
    const kg_exchange_t *ex = up->ex;
    kg_request_summary_t m;

    memset(&m, 0, sizeof(m));
    m.request_id = ev->request_id;
    m.method = ex->method;
    m.route = ev->operation;
    m.endpoint = ex->endpoint;
    m.status = ev->status;
    m.key_id = ev->key_id;
    m.workspace_id = ev->workspace_id;
    m.model = ev->model;
    m.provider = ev->provider;
    m.client_ip = ev->client_ip;
    m.error = ev->error_code[0] != '\0' ? ev->error_code : NULL;
    m.duration_us = kg_clock_mono_us() - ex->start_us;
    m.upstream_us =
        up->first_byte_us && up->sent_us ? up->first_byte_us - up->sent_us : -1;
    m.ttft_us =
        ex->is_sse && up->first_byte_us ? up->first_byte_us - ex->start_us : -1;
    m.prompt_tokens = ev->prompt_tokens;
    m.completion_tokens = ev->completion_tokens;
    m.cached_tokens = ev->cached_tokens;
    m.cost = ev->cost;
    if (up->proxy->opts.metrics != NULL) {
        kg_metrics_record(up->proxy->opts.metrics, &m);
    }
    if (ex->log_request) {
        kg_access_log(&m);
    }
}

/*
 * Record the exchange's usage. The answer's last bytes wait until the
 * event is safe: at once when the usage journal took it (it survives
 * kill -9 from there), else until its commit.
 */
static void proxy_send_usage(upstream_t *up, const kg_usage_t *u, int status,
                             const char *error_code)
{
    kg_exchange_t *ex = up->ex;
    kg_usage_event_t ev;
    kg_price_t price;
    int64_t now_us = kg_clock_mono_us();
    kg_usagedb_receipt_t receipt = {false, false};
    kg_err_t rc;

    if (up->usage_sent) {
        return;
    }
    up->usage_sent = true;
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.request_id, sizeof(ev.request_id), "%s", ex->request_id);
    snprintf(ev.key_id, sizeof(ev.key_id), "%s", ex->key.id);
    snprintf(ev.workspace_id, sizeof(ev.workspace_id), "%s",
             ex->key.workspace_id);
    ev.at_ms = kg_clock_now_ms();
    snprintf(ev.operation, sizeof(ev.operation), "%s", ex->operation);
    snprintf(ev.model, sizeof(ev.model), "%s",
             ex->model ? ex->model->name : "");
    snprintf(ev.provider, sizeof(ev.provider), "%s", ex->provider->name);
    snprintf(ev.mode, sizeof(ev.mode), "%s",
             kg_policy_ticket_mode(&ex->ticket));
    ev.status = status;
    ev.prompt_tokens = u->prompt_tokens;
    ev.completion_tokens = u->completion_tokens;
    ev.cached_tokens = u->cached_tokens;
    memset(&price, 0, sizeof(price));
    if (ex->model != NULL) {
        price.input_per_mtok = ex->model->input_price;
        price.output_per_mtok = ex->model->output_price;
        price.cached_input_per_mtok = ex->model->cached_input_price;
    }
    ev.cost = kg_usage_cost(u, &price);
    ev.latency_ms = (now_us - ex->start_us) / 1000;
    ev.ttft_ms =
        up->first_byte_us ? (up->first_byte_us - ex->start_us) / 1000 : -1;
    ev.streamed = ex->is_sse;
    snprintf(ev.client_ip, sizeof(ev.client_ip), "%s", ex->client_ip);
    snprintf(ev.error_code, sizeof(ev.error_code), "%s",
             error_code ? error_code : "");
    /* Release the reservations and charge what the answer really cost. */
    ev.period_start =
        ex->policy == NULL
            ? -1
            : kg_policy_settle(ex->policy, &ex->ticket, ev.cost,
                               ev.prompt_tokens + ev.completion_tokens,
                               ev.at_ms);
    if (ev.period_start < 0) {
        ev.period_start = -1;
    }
    ev.charge_credits = ex->ticket.credits;
    ex->charged_credits = ex->ticket.credits ? ev.cost : 0;
    proxy_count(up, &ev);
    ex->counted = true;
    kg_exchange_ref(ex);
    if (ex->usage_place != NULL) {
        /* The place kept at admission: never refused for room. */
        ex->usage_place = NULL;
        rc = kg_usagedb_submit_held(up->proxy->opts.usage, &ev,
                                    proxy_usage_committed, ex, &receipt);
    } else {
        rc =
            kg_usagedb_submit_ex(up->proxy->opts.usage, &ev,
                                 proxy_usage_committed, ex, &receipt.journaled);
        receipt.release = receipt.journaled;
    }
    ex->usage_journaled = receipt.journaled;
    if (rc != KG_OK) {
        proxy_usage_committed(ex, rc);
    } else if (receipt.release) {
        proxy_usage_release(ex);
    }
}

/* Make the exchange answer with keygate's own error (before headers). */
static void proxy_fail(upstream_t *up, kg_err_t err, const char *code)
{
    kg_exchange_t *ex = up->ex;
    kg_usage_t u;

    memset(&u, 0, sizeof(u));
    pthread_mutex_lock(&ex->mu);
    ex->error = err;
    ex->status = kg_err_http_status(err);
    ex->is_sse = false;
    ex->upstream_done = true;
    pthread_mutex_unlock(&ex->mu);
    /* 499 (client closed request) when nobody is left to answer. */
    proxy_send_usage(
        up, &u,
        strcmp(code, "client_gone") == 0 ? 499 : kg_err_http_status(err), code);
}

/*
 * A buffered answer of known length gets one allocation of that size (up
 * to max_response_bytes): no copies by a growing buffer.
 */
static void proxy_reserve_answer(upstream_t *up)
{
    curl_off_t cl = -1;

    if (up->ex->is_sse ||
        curl_easy_getinfo(up->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) !=
            CURLE_OK ||
        cl <= 0 || (uint64_t)cl > (uint64_t)up->ex->max_response_bytes) {
        return;
    }
    if (kg_buf_reserve(&up->body, (size_t)cl) != KG_OK) {
        /* No memory now: the appends will say so. */
    }
}

/* CURLOPT_READFUNCTION of a spliced body: the client's bytes, edited. */
static size_t proxy_read_cb(char *buf, size_t size, size_t n, void *ud)
{
    upstream_t *up = ud;
    kg_exchange_t *ex = up->ex;
    size_t got = kg_request_edits_read(ex->body, ex->body_len, &ex->edits,
                                       up->upload_off, buf, size * n);

    up->upload_off += got;
    return got;
}

/* CURLOPT_SEEKFUNCTION: curl rewinds to resend on a fresh connection. */
static int proxy_seek_cb(void *ud, curl_off_t offset, int origin)
{
    upstream_t *up = ud;

    if (origin != SEEK_SET || offset < 0 ||
        (uint64_t)offset > (uint64_t)up->ex->edits.out_len) {
        return CURL_SEEKFUNC_CANTSEEK;
    }
    up->upload_off = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t proxy_header_cb(char *line, size_t size, size_t n, void *ud)
{
    upstream_t *up = ud;
    kg_exchange_t *ex = up->ex;
    size_t len = size * n;
    long code = 0;

    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        up->headers_done = false;
        return len;
    }
    if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        curl_easy_getinfo(up->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 100 && code < 200) {
            return len; /* an interim answer: the real one follows */
        }
        up->headers_done = true;
        up->status = (int)code;
        up->first_byte_us = kg_clock_mono_us();
        pthread_mutex_lock(&ex->mu);
        ex->status = (int)code;
        ex->is_sse = code >= 200 && code < 300 &&
                     strncmp(ex->content_type, "text/event-stream", 17) == 0;
        if (ex->is_sse) {
            ex->phase = KG_PHASE_READY;
            kg_exchange_wake_locked(ex);
        }
        pthread_mutex_unlock(&ex->mu);
        if (ex->is_sse && !up->stream_counted) {
            up->stream_counted = true;
            kg_metrics_stream(up->proxy->opts.metrics, 1);
        }
        proxy_reserve_answer(up);
        return len;
    }
    if (len > 13 && strncasecmp(line, "content-type:", 13) == 0) {
        const char *v = line + 13;
        size_t vlen = len - 13;

        while (vlen > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
                            v[vlen - 1] == ' ')) {
            vlen--;
        }
        pthread_mutex_lock(&ex->mu);
        snprintf(ex->content_type, sizeof(ex->content_type), "%.*s", (int)vlen,
                 v);
        pthread_mutex_unlock(&ex->mu);
    } else if (len > 12 && strncasecmp(line, "retry-after:", 12) == 0) {
        const char *v = line + 12;
        size_t vlen = len - 12;

        while (vlen > 0 && *v == ' ') {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
                            v[vlen - 1] == ' ')) {
            vlen--;
        }
        /* Only digits or an HTTP date reach the client. */
        if (vlen > 0 && vlen < sizeof(ex->retry_after) &&
            strspn(v, "0123456789 ,:ADFGJMNOSTWacdeghilnoprstuvy") >= vlen) {
            pthread_mutex_lock(&ex->mu);
            snprintf(ex->retry_after, sizeof(ex->retry_after), "%.*s",
                     (int)vlen, v);
            pthread_mutex_unlock(&ex->mu);
        }
    }
    return len;
}

/* One complete SSE event from the provider: inspect, then relay or hold. */
static kg_err_t proxy_sse_event(const kg_sse_event_t *sev, void *ud)
{
    upstream_t *up = ud;
    kg_exchange_t *ex = up->ex;
    bool forward = true;
    char *copy;
    kg_err_t rc = KG_OK;

    kg_usage_stream_event(&up->us, sev, &forward);
    if (!forward) {
        return KG_OK;
    }
    if (up->us.terminal) {
        /* Hold the stream's last event until its usage event commits, so a
         * client that saw the whole answer always has it recorded. */
        kg_usage_t u;

        copy = malloc(sev->raw_len ? sev->raw_len : 1);
        if (copy == NULL) {
            return KG_ERR_NOMEM;
        }
        memcpy(copy, sev->raw, sev->raw_len);
        proxy_redact(up, copy, sev->raw_len);
        pthread_mutex_lock(&ex->mu);
        free(ex->held);
        ex->held = copy;
        ex->held_len = sev->raw_len;
        ex->holding = true;
        pthread_mutex_unlock(&ex->mu);
        kg_usage_stream_estimate(&up->us, &u);
        proxy_send_usage(up, &u, up->status, NULL);
        return KG_OK;
    }
    /* Straight into the relay buffer, redacted there: one copy. */
    pthread_mutex_lock(&ex->mu);
    rc = kg_buf_append(&ex->out, sev->raw, sev->raw_len);
    if (rc == KG_OK) {
        proxy_redact(up, ex->out.data + ex->out.len - sev->raw_len,
                     sev->raw_len);
    }
    kg_exchange_wake_locked(ex);
    pthread_mutex_unlock(&ex->mu);
    return rc;
}

static size_t proxy_write_cb(char *data, size_t size, size_t n, void *ud)
{
    upstream_t *up = ud;
    kg_exchange_t *ex = up->ex;
    size_t len = size * n;
    bool sse;

    pthread_mutex_lock(&ex->mu);
    sse = ex->is_sse;
    if (sse && ex->out.len >= KG_RELAY_HIGH_WATER) {
        /* Backpressure: the client is slower than the provider. */
        ex->paused = true;
        pthread_mutex_unlock(&ex->mu);
        return CURL_WRITEFUNC_PAUSE;
    }
    pthread_mutex_unlock(&ex->mu);
    if (up->received + len > up->ex->max_response_bytes) {
        up->cut = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    up->received += len;
    up->last_data_us = kg_clock_mono_us();
    if (!sse) {
        return kg_buf_append(&up->body, data, len) == KG_OK ? len : 0;
    }
    if (kg_sse_feed(up->sse, data, len, proxy_sse_event, up) != KG_OK) {
        up->cut = true;
        return 0;
    }
    return len;
}

/* The JSON body keygate answers when the provider's error is not JSON. */
static char *proxy_wrap_error(int status, size_t *len)
{
    char msg[96];
    json_t *j;
    char *out;

    snprintf(msg, sizeof(msg), "Upstream provider error (status %d).", status);
    j = json_pack("{s:{s:s, s:s, s:s}, s:i, s:s}", "error", "message", msg,
                  "type", "api_error", "code", "upstream_error", "status",
                  status, "message", msg);
    out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    *len = out ? strlen(out) : 0;
    return out;
}

/* A buffered (non-SSE) answer is complete: check it, price it, publish. */
static void proxy_finish_buffered(upstream_t *up)
{
    kg_exchange_t *ex = up->ex;
    kg_usage_t u;
    size_t len = up->body.len;
    char *body;
    bool json_ok;

    memset(&u, 0, sizeof(u));
    if (up->status >= 300 && up->status < 400) {
        proxy_fail(up, KG_ERR_BAD_GATEWAY, "upstream_redirect");
        return;
    }
    /* One pass, no tree: the shape of the answer and its usage object. */
    if (!kg_usage_from_answer(proxy_api(ex), up->body.data, len, &u,
                              &json_ok) ||
        up->status >= 300) {
        memset(&u, 0, sizeof(u));
    }
    if (up->status < 300 && !json_ok) {
        proxy_fail(up, KG_ERR_BAD_GATEWAY, "upstream_garbage");
        return;
    }
    if (json_ok) {
        /* Relayed as it came, redacted in place and moved, not copied. */
        proxy_redact(up, up->body.data, len);
        body = NULL;
    } else {
        body = proxy_wrap_error(up->status, &len);
        snprintf(ex->content_type, sizeof(ex->content_type),
                 "application/json");
    }
    pthread_mutex_lock(&ex->mu);
    if (json_ok
            ? kg_buf_move(&ex->out, &up->body) != KG_OK
            : (body == NULL || kg_buf_append(&ex->out, body, len) != KG_OK)) {
        ex->error = KG_ERR_NOMEM;
        ex->status = 500;
    }
    ex->upstream_done = true;
    pthread_mutex_unlock(&ex->mu);
    free(body);
    proxy_send_usage(up, &u, up->status,
                     up->status >= 400 ? "upstream_error" : NULL);
}

static const char *proxy_curl_error_code(CURLcode rc, bool cut)
{
    if (cut) {
        return "upstream_too_large";
    }
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return "upstream_timeout";
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return "upstream_unreachable";
    default:
        return "upstream_failed";
    }
}

/*
 * A clean end of stream: deliver an event the parser held for its final
 * CR, and forward a trailing event that was never ended by a blank line
 * as it came (a client discards it too).
 */
static void proxy_flush_partial(upstream_t *up)
{
    kg_exchange_t *ex = up->ex;
    const char *rest = NULL;
    size_t rest_len = 0;
    bool partial = false;
    char *copy;

    if (kg_sse_finish(up->sse, proxy_sse_event, up, &partial, &rest,
                      &rest_len) != KG_OK ||
        !partial || rest_len == 0) {
        return;
    }
    copy = malloc(rest_len);
    if (copy == NULL) {
        return;
    }
    memcpy(copy, rest, rest_len);
    proxy_redact(up, copy, rest_len);
    pthread_mutex_lock(&ex->mu);
    if (kg_buf_append(&ex->out, copy, rest_len) != KG_OK) {
        ex->upstream_failed = true;
    }
    pthread_mutex_unlock(&ex->mu);
    free(copy);
}

/* The transfer ended (rc) — or was cut short by keygate (rc_override). */
static void proxy_finish(upstream_t *up, CURLcode rc, const char *why)
{
    kg_exchange_t *ex = up->ex;
    kg_usage_t u;
    bool sse;

    pthread_mutex_lock(&ex->mu);
    sse = ex->is_sse && up->headers_done;
    pthread_mutex_unlock(&ex->mu);
    if (rc != CURLE_OK) {
        /* The provider's credential never appears in libcurl's message
         * (it is in a header), but redact it as everything relayed is. */
        up->curl_error[sizeof(up->curl_error) - 1] = '\0';
        proxy_redact(up, up->curl_error, strlen(up->curl_error));
        KG_WARN("request %s: provider %s: %s (%s)", ex->request_id,
                ex->provider->name, curl_easy_strerror(rc),
                up->curl_error[0] ? up->curl_error : "no detail");
    }
    if (!up->headers_done || (!sse && rc != CURLE_OK)) {
        bool timeout = rc == CURLE_OPERATION_TIMEDOUT ||
                       (why && strcmp(why, "upstream_timeout") == 0);

        proxy_fail(up, timeout ? KG_ERR_GATEWAY_TIMEOUT : KG_ERR_BAD_GATEWAY,
                   why ? why : proxy_curl_error_code(rc, up->cut));
        return;
    }
    if (!sse) {
        proxy_finish_buffered(up);
        return;
    }
    if (rc == CURLE_OK && why == NULL) {
        proxy_flush_partial(up);
    }
    kg_usage_stream_estimate(&up->us, &u);
    pthread_mutex_lock(&ex->mu);
    ex->upstream_done = true;
    ex->upstream_failed = rc != CURLE_OK || why != NULL || !up->us.done;
    if (!up->usage_sent) {
        /* The end of the stream waits for its usage event to commit, like
         * a complete stream's terminal event does. */
        ex->holding = true;
    }
    kg_exchange_wake_locked(ex);
    pthread_mutex_unlock(&ex->mu);
    proxy_send_usage(up, &u, up->status,
                     why ? why
                         : (rc != CURLE_OK ? proxy_curl_error_code(rc, up->cut)
                                           : (up->us.done ? NULL
                                                          : "upstream_"
                                                            "incomplete")));
}

/* Free the upstream header list, wiping its credential line first. */
static void proxy_free_headers(kg_exchange_t *ex)
{
    for (struct curl_slist *l = ex->curl_headers; l != NULL; l = l->next) {
        if (strncasecmp(l->data, "authorization:", 14) == 0 ||
            strncasecmp(l->data, "x-api-key:", 10) == 0) {
            explicit_bzero(l->data, strlen(l->data));
        }
    }
    curl_slist_free_all(ex->curl_headers);
    ex->curl_headers = NULL;
}

static void proxy_release(kg_proxy_t *p, upstream_t *up)
{
    if (up->prev != NULL) {
        up->prev->next = up->next;
    } else if (p->active == up) {
        p->active = up->next;
    }
    if (up->next != NULL) {
        up->next->prev = up->prev;
    }
    if (atomic_fetch_sub(&p->nactive, 1) == 1) {
        p->idle_since_us = kg_clock_mono_us();
    }
    curl_multi_remove_handle(p->multi, up->easy);
    if (p->nspare < PROXY_SPARE_EASY) {
        curl_easy_reset(up->easy);
        p->spare[p->nspare++] = up->easy;
    } else {
        curl_easy_cleanup(up->easy);
    }
    proxy_free_headers(up->ex);
    kg_policy_cred_unref(&up->cred_ref);
    if (up->stream_counted) {
        kg_metrics_stream(p->opts.metrics, -1);
    }
    /* The request body is not needed past the transfer: a 1 MB body must
     * not wait for the usage commit that the exchange waits for. */
    free(up->ex->body);
    up->ex->body = NULL;
    up->ex->body_len = 0;
    kg_request_edits_clear(&up->ex->edits);
    up->ex->upstream = NULL;
    kg_buf_free(&up->body);
    kg_sse_parser_free(&up->sse);
    kg_gen_slot_drop(&up->ex->gen); /* done with its model and provider */
    kg_exchange_unref(up->ex);
    free(up);
}

static void proxy_start_one(kg_proxy_t *p, kg_exchange_t *ex)
{
    upstream_t *up = calloc(1, sizeof(*up));
    const kg_provider_t *prov = ex->provider;
    int64_t connect_ms = prov->connect_timeout_ms;
    CURL *e;

    if (up == NULL) {
        goto fail;
    }
    up->ex = ex;
    up->proxy = p;
    up->last_data_us = kg_clock_mono_us();
    up->sent_us = up->last_data_us;
    if (ex->ticket.credential_ref != NULL) {
        up->cred_ref = ex->ticket.credential_ref;
        kg_policy_cred_ref(up->cred_ref);
        up->cred = ex->ticket.credential;
        up->cred_len = ex->ticket.credential_len;
    } else {
        up->cred = prov->credential;
        up->cred_len = prov->credential_len;
    }
    kg_buf_init(&up->body, ex->max_response_bytes);
    kg_usage_stream_init(&up->us, proxy_api(ex), ex->client_wants_usage);
    up->us.prompt_estimate = ex->input_estimate;
    if (kg_sse_parser_new(PROXY_MAX_SSE_EVENT, &up->sse) != KG_OK) {
        goto fail;
    }
    e = p->nspare > 0 ? p->spare[--p->nspare] : curl_easy_init();
    if (e == NULL) {
        goto fail;
    }
    up->easy = e;
    ex->upstream = up;
    curl_easy_setopt(e, CURLOPT_URL, ex->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, up);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, up->curl_error);
    /* Debian's libcurl is built with both a CA file and a CA path, which
     * turns its CA cache off: every new TLS connection would parse the
     * whole bundle again on the event loop (tens of ms). The file alone
     * lets libcurl keep the parsed store. */
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    if (prov->http_version != KG_HTTP_VERSION_1_1) {
        /* A request that arrives while a connection is being set up waits
         * to multiplex on it (HTTP/2) instead of opening its own. */
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    }
    curl_easy_setopt(
        e, CURLOPT_HTTP_VERSION,
        (long)(prov->http_version == KG_HTTP_VERSION_1_1 ? CURL_HTTP_VERSION_1_1
               : prov->http_version == KG_HTTP_VERSION_2
                   ? CURL_HTTP_VERSION_2TLS
               : prov->http_version == KG_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                   ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                   : CURL_HTTP_VERSION_NONE));
    curl_easy_setopt(e, CURLOPT_HTTPHEADER,
                     (struct curl_slist *)ex->curl_headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, proxy_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, up);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, proxy_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, up);
    if (p->opts.idle_connection_timeout_ms > 0) {
        /* An idle connection this old is not reused but closed. */
        curl_easy_setopt(
            e, CURLOPT_MAXAGE_CONN,
            (long)((p->opts.idle_connection_timeout_ms + 999) / 1000));
    }
    if (ex->edits.n > 0) {
        /* A large body with edits: spliced on the way, never copied. */
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, proxy_read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, up);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, proxy_seek_cb);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, up);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)ex->edits.out_len);
    } else if (ex->body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, ex->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)ex->body_len);
    }
    up->next = p->active;
    if (p->active != NULL) {
        p->active->prev = up;
    }
    p->active = up;
    atomic_fetch_add(&p->nactive, 1);
    p->conns_maybe = true;
    if (curl_multi_add_handle(p->multi, e) != CURLM_OK) {
        proxy_fail(up, KG_ERR_BAD_GATEWAY, "upstream_failed");
        proxy_release(p, up);
    }
    return;
fail:
    KG_ERROR("request %s: cannot start the upstream transfer", ex->request_id);
    if (up != NULL) {
        kg_sse_parser_free(&up->sse);
        kg_buf_free(&up->body);
        kg_policy_cred_unref(&up->cred_ref);
        free(up);
    }
    pthread_mutex_lock(&ex->mu);
    ex->error = KG_ERR_INTERNAL;
    ex->status = 500;
    ex->upstream_done = true;
    ex->phase = KG_PHASE_READY;
    kg_exchange_wake_locked(ex);
    pthread_mutex_unlock(&ex->mu);
    kg_gen_slot_drop(&ex->gen);
    kg_exchange_unref(ex);
}

static void proxy_run_command(kg_proxy_t *p, proxy_cmd_t *cmd)
{
    kg_exchange_t *ex = cmd->ex;
    upstream_t *up = ex ? ex->upstream : NULL;

    switch (cmd->type) {
    case PROXY_CMD_CUT_ALL:
        /* Drain deadline: every transfer ends now, recorded as cut. */
        while (p->active != NULL) {
            upstream_t *cut = p->active;

            proxy_finish(cut, CURLE_OK, "shutdown");
            proxy_release(p, cut);
        }
        return;
    case PROXY_CMD_START:
        proxy_start_one(p, ex); /* takes the command's reference */
        return;
    case PROXY_CMD_CANCEL:
        if (up != NULL) {
            proxy_finish(up, CURLE_OK, "client_gone");
            proxy_release(p, up);
        }
        break;
    case PROXY_CMD_UNPAUSE:
        if (up != NULL) {
            pthread_mutex_lock(&ex->mu);
            ex->paused = false;
            ex->unpause_asked = false;
            pthread_mutex_unlock(&ex->mu);
            up->last_data_us = kg_clock_mono_us();
            curl_easy_pause(up->easy, CURLPAUSE_CONT);
        }
        break;
    }
    kg_exchange_unref(ex);
}

static void proxy_drain_commands(kg_proxy_t *p)
{
    proxy_cmd_t *cmd;

    pthread_mutex_lock(&p->mu);
    cmd = p->head;
    p->head = NULL;
    p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    while (cmd != NULL) {
        proxy_cmd_t *next = cmd->next;

        proxy_run_command(p, cmd);
        free(cmd);
        cmd = next;
    }
}

/*
 * True when the client of a suspended exchange has closed its side.
 * libmicrohttpd does not watch a suspended connection's socket, so a client
 * that goes away while the provider is silent is noticed here: a peek that
 * consumes nothing, on a socket MHD leaves alone while suspended.
 */
static bool proxy_client_closed(kg_exchange_t *ex)
{
    struct pollfd pfd;
    bool closed = false;

    pthread_mutex_lock(&ex->mu);
    if (ex->suspended && !ex->client_gone && ex->client_fd >= 0) {
        pfd.fd = ex->client_fd;
        pfd.events = POLLIN | POLLRDHUP;
        pfd.revents = 0;
        if (poll(&pfd, 1, 0) == 1 &&
            (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
            closed = true;
        }
    }
    pthread_mutex_unlock(&ex->mu);
    return closed;
}

/*
 * Transfers whose provider has not answered in time get a 504; every
 * PROXY_HEARTBEAT_US, transfers whose client has gone are cut (and charged
 * for what was produced).
 */
static void proxy_check_deadlines(kg_proxy_t *p)
{
    int64_t now = kg_clock_mono_us();
    upstream_t *up = p->active;
    bool beat = now - p->last_heartbeat_us >= PROXY_HEARTBEAT_US;

    while (up != NULL) {
        upstream_t *next = up->next;
        const kg_provider_t *prov = up->ex->provider;
        /* The provider's own, or [upstream]'s (resolved at load). */
        int64_t fbt = prov->first_byte_timeout_ms;
        int64_t idle = prov->idle_timeout_ms;
        bool paused;

        pthread_mutex_lock(&up->ex->mu);
        paused = up->ex->paused;
        pthread_mutex_unlock(&up->ex->mu);
        if (paused) {
            up->last_data_us = now; /* a slow client is not an idle provider */
        }
        if (!up->headers_done && now - up->ex->start_us > fbt * 1000) {
            proxy_finish(up, CURLE_OPERATION_TIMEDOUT, "upstream_timeout");
            proxy_release(p, up);
        } else if (up->headers_done && now - up->last_data_us > idle * 1000) {
            proxy_finish(up, CURLE_OPERATION_TIMEDOUT, "upstream_timeout");
            proxy_release(p, up);
        } else if (beat && proxy_client_closed(up->ex)) {
            proxy_finish(up, CURLE_OK, "client_gone");
            proxy_release(p, up);
        }
        up = next;
    }
    if (beat) {
        p->last_heartbeat_us = now;
    }
}

/* Finish every transfer curl reports done. */
static void proxy_read_messages(kg_proxy_t *p)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
        upstream_t *up = NULL;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&up);
        proxy_finish(up, msg->data.result, NULL);
        proxy_release(p, up);
    }
}

/* CURLMOPT_SOCKETFUNCTION: keep the loop's epoll set in step with curl. */
static int proxy_socket_cb(CURL *easy, curl_socket_t fd, int what, void *ud,
                           void *sockp)
{
    kg_proxy_t *p = ud;
    proxy_sock_t *ps = sockp;
    struct epoll_event ev;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (ps != NULL) {
            epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL);
            curl_multi_assign(p->multi, fd, NULL);
            if (ps->prev != NULL) {
                ps->prev->next = ps->next;
            } else {
                p->socks = ps->next;
            }
            if (ps->next != NULL) {
                ps->next->prev = ps->prev;
            }
            /* An event for it may still wait in the current batch. */
            ps->dead = true;
            ps->next_dead = p->dead_socks;
            p->dead_socks = ps;
        }
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) |
                (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (ps == NULL) {
        ps = calloc(1, sizeof(*ps));
        if (ps == NULL) {
            return -1;
        }
        ps->fd = fd;
        ev.data.ptr = ps;
        if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(ps);
            return -1;
        }
        curl_multi_assign(p->multi, fd, ps);
        ps->next = p->socks;
        if (p->socks != NULL) {
            p->socks->prev = ps;
        }
        p->socks = ps;
        return 0;
    }
    ev.data.ptr = ps;
    return epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -1;
}

/* CURLMOPT_TIMERFUNCTION: remember when curl wants to be called. */
static int proxy_timer_cb(CURLM *multi, long timeout_ms, void *ud)
{
    kg_proxy_t *p = ud;

    (void)multi;
    p->timer_due_us =
        timeout_ms < 0 ? -1 : kg_clock_mono_us() + (int64_t)timeout_ms * 1000;
    return 0;
}

void kg_proxy_bind_thread(kg_proxy_t *p)
{
    p->owner = pthread_self();
    atomic_store_explicit(&p->bound, true, memory_order_release);
}

void kg_proxy_on_event(kg_proxy_t *p, void *tag, uint32_t events)
{
    proxy_sock_t *ps = tag;
    int flags = 0;
    int running = 0;

    if (tag == &p->wake_tag) {
        uint64_t n;

        if (read(p->wake_fd, &n, sizeof(n)) < 0) {
            /* EAGAIN: another round already read it. */
        }
        p->mhd_kick = true; /* maybe a resume from another thread */
        return;
    }
    if (ps->dead) {
        return;
    }
    if (events & EPOLLIN) {
        flags |= CURL_CSELECT_IN;
    }
    if (events & EPOLLOUT) {
        flags |= CURL_CSELECT_OUT;
    }
    if (events & (EPOLLERR | EPOLLHUP)) {
        flags |= CURL_CSELECT_ERR;
    }
    curl_multi_socket_action(p->multi, ps->fd, flags, &running);
}

int kg_proxy_timeout_ms(kg_proxy_t *p)
{
    int64_t now = kg_clock_mono_us();
    int64_t due = p->next_check_us;

    if (p->head != NULL || p->mhd_kick) {
        return 0; /* a racy peek is fine: a command also wakes the loop */
    }
    if (p->timer_due_us >= 0 && p->timer_due_us < due) {
        due = p->timer_due_us;
    }
    if (p->active == NULL && p->timer_due_us < 0) {
        if (p->conns_maybe && p->opts.idle_connection_timeout_ms > 0) {
            /* The sweep of idle provider connections is due then. */
            due = p->idle_since_us + p->opts.idle_connection_timeout_ms * 1000;
            return due <= now ? 0 : (int)((due - now + 999) / 1000);
        }
        return -1; /* nothing to time; commands wake the loop */
    }
    return due <= now ? 0 : (int)((due - now + 999) / 1000);
}

void kg_proxy_run(kg_proxy_t *p)
{
    int64_t now;
    int running = 0;

    proxy_drain_commands(p);
    now = kg_clock_mono_us();
    if (p->timer_due_us >= 0 && p->timer_due_us <= now) {
        p->timer_due_us = -1;
        curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    proxy_read_messages(p);
    if (now >= p->next_check_us) {
        p->next_check_us = now + PROXY_CHECK_US;
        proxy_check_deadlines(p);
    }
    if (p->active == NULL && p->conns_maybe &&
        p->opts.idle_connection_timeout_ms > 0 &&
        now - p->idle_since_us >= p->opts.idle_connection_timeout_ms * 1000) {
        proxy_sweep_idle(p);
    }
    while (p->dead_socks != NULL) {
        proxy_sock_t *ps = p->dead_socks;

        p->dead_socks = ps->next_dead;
        free(ps);
    }
}

/* The options of a new multi handle. */
static void proxy_multi_setup(kg_proxy_t *p)
{
    const kg_proxy_opts_t *opts = &p->opts;

    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, proxy_socket_cb);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, proxy_timer_cb);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      opts->max_host_connections);
    /* The connection cache: past this many, the oldest idle connection is
     * closed when a transfer ends. */
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS,
                      opts->max_idle_connections);
    /* libcurl's default is 100 streams per HTTP/2 connection; the server's
     * own SETTINGS limit still applies. */
    curl_multi_setopt(p->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
                      (long)PROXY_H2_STREAMS);
}

/*
 * No transfer for idle_connection_timeout: close every cached provider
 * connection. libcurl closes an idle connection past CURLOPT_MAXAGE_CONN
 * only when a later transfer looks for one, so an idle loop would keep
 * them (descriptors, buffers) forever; a fresh multi handle closes them
 * all now. Nothing is in flight, so nothing else is lost.
 */
static void proxy_sweep_idle(kg_proxy_t *p)
{
    CURLM *fresh = curl_multi_init();

    p->conns_maybe = false;
    if (fresh == NULL) {
        return;
    }
    curl_multi_cleanup(p->multi); /* REMOVE callbacks fill dead_socks */
    p->multi = fresh;
    p->timer_due_us = -1;
    proxy_multi_setup(p);
}

/*
 * Once per process: a 1 MB body or answer allocated and freed per request
 * was a fresh mmap each time (glibc's threshold only adapts upward after a
 * free), so every request faulted its pages in again and unmapped them
 * after: about a third of the CPU of a 1 MB answer in this VM. From the
 * heap, the pages stay mapped and are reused.
 */
static void proxy_malloc_once(void)
{
    if (mallopt(M_MMAP_THRESHOLD, PROXY_MMAP_THRESHOLD) != 1 ||
        mallopt(M_TRIM_THRESHOLD, PROXY_TRIM_THRESHOLD) != 1) {
        KG_DEBUG("proxy: the allocator keeps its defaults (a sanitizer?)");
    }
}

kg_err_t kg_proxy_new(const kg_proxy_opts_t *opts, int epfd, kg_proxy_t **out,
                      kg_diag_t *diag)
{
    static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;
    kg_proxy_t *p = calloc(1, sizeof(*p));
    struct epoll_event ev;

    *out = NULL;
    pthread_once(&malloc_once, proxy_malloc_once);
    if (p == NULL) {
        return KG_ERR_NOMEM;
    }
    p->opts = *opts;
    p->epfd = epfd;
    p->timer_due_us = -1;
    pthread_mutex_init(&p->mu, NULL);
    p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->multi = curl_multi_init();
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &p->wake_tag;
    if (p->multi == NULL || p->wake_fd < 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, p->wake_fd, &ev) != 0) {
        kg_proxy_free(&p);
        return kg_diag_fail(diag, KG_ERR_INTERNAL,
                            "cannot set up the upstream side: %s",
                            strerror(errno));
    }
    proxy_multi_setup(p);
    *out = p;
    return KG_OK;
}

void kg_proxy_free(kg_proxy_t **pp)
{
    kg_proxy_t *p;

    if (pp == NULL || *pp == NULL) {
        return;
    }
    p = *pp;
    /* Whatever is still in flight is cut and recorded. */
    proxy_drain_commands(p);
    while (p->active != NULL) {
        upstream_t *up = p->active;

        proxy_finish(up, CURLE_OK, "shutdown");
        proxy_release(p, up);
    }
    proxy_drain_commands(p);
    while (p->nspare > 0) {
        curl_easy_cleanup(p->spare[--p->nspare]);
    }
    if (p->multi != NULL) {
        curl_multi_cleanup(p->multi); /* REMOVE callbacks fill dead_socks */
    }
    while (p->dead_socks != NULL) {
        proxy_sock_t *ps = p->dead_socks;

        p->dead_socks = ps->next_dead;
        free(ps);
    }
    while (p->socks != NULL) {
        proxy_sock_t *ps = p->socks;

        p->socks = ps->next;
        free(ps);
    }
    if (p->wake_fd >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->wake_fd, NULL);
        close(p->wake_fd);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
    *pp = NULL;
}
