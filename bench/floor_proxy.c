/* The floor of keygate's stack: a minimal libmicrohttpd + libcurl reverse
 * proxy with keygate's worker shape and none of keygate's logic. */
/*
 *   keygate-floor-proxy --upstream http://127.0.0.1:PORT
 *                       [--listen 127.0.0.1:0] [--port-file F] [--json]
 *                       [--max-seconds S] [--pool-bytes N] [--turbo]
 *
 * One thread runs one epoll set holding libmicrohttpd's epoll fd (external
 * epoll: MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC, a 32 KiB
 * connection pool as keygate's default max_header_bytes + 16 KiB) and the
 * sockets of a curl multi handle (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION,
 * curl_multi_socket_action), as src/worker.c and src/proxy.c do. Per
 * request: collect the body, suspend the connection, send the same method,
 * path and body upstream on a reused easy handle (curl_easy_reset, the
 * options keygate sets) with a fixed Authorization header, buffer the
 * answer, resume, queue it with its status and Content-Type.
 *
 * No key check, no JSON, no policy, no usage recording, no request id, no
 * cross-thread queue: what is left is what libmicrohttpd and libcurl cost
 * as a reverse proxy. --json adds only jansson's parse of the request body
 * and of the answer, as keygate calls it (floor_json.h).
 *
 * Two knobs of libmicrohttpd, for A/B runs by hand (bench/run uses keygate's
 * settings): --pool-bytes N sets MHD_OPTION_CONNECTION_MEMORY_LIMIT
 * (libmicrohttpd clears the pool for every request), --turbo adds
 * MHD_USE_TURBO (opportunistic reads, writes and accepts).
 *
 * Loopback only: it listens on a loopback address (port 0 by default; the
 * port goes to --port-file) and forwards only to an http:// loopback URL.
 * It stops on SIGTERM or SIGINT, or after --max-seconds (default 3600),
 * and prints one "FLOOR ..." line of counters to stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "floor_json.h"

#define FLOOR_EVENTS        128
#define FLOOR_MAX_WAIT_MS   1000
#define FLOOR_POOL_BYTES    (32 * 1024) /* keygate: 16k headers + 16 KiB */
#define FLOOR_MAX_BODY      (4 * 1024 * 1024)
#define FLOOR_MAX_ANSWER    (16 * 1024 * 1024)
#define FLOOR_SPARE_EASY    64 /* as src/proxy.c keeps */
#define FLOOR_CONNECT_MS    10000L
#define FLOOR_CONN_LIMIT    16384
#define FLOOR_CONN_TIMEOUT  60 /* seconds; keygate's idle_timeout */
#define FLOOR_UPSTREAM_AUTH "Authorization: Bearer floor-upstream-credential"

/* A growable byte buffer with a ceiling. */
typedef struct fbuf {
    char *data;
    size_t len;
    size_t cap;
} fbuf_t;

static bool fbuf_append(fbuf_t *b, const void *p, size_t n, size_t max)
{
    if (n > max - b->len) {
        return false;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        char *d;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        d = realloc(b->data, cap);
        if (d == NULL) {
            return false;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

struct floor_proxy;

/* One client request and its upstream transfer (libmicrohttpd's con_cls). */
typedef struct freq {
    struct floor_proxy *f;
    struct MHD_Connection *conn;
    CURL *easy;        /* while the transfer runs */
    struct freq *prev; /* the running transfers */
    struct freq *next;
    fbuf_t body;
    fbuf_t answer;
    char *url;
    bool too_large;
    bool started;
    bool done;
    CURLcode result;
    long status;
    char content_type[128];
    char curl_error[CURL_ERROR_SIZE];
} freq_t;

/* A socket curl asked the loop to watch (epoll's data.ptr). */
typedef struct fsock {
    int fd;
    bool dead;
    struct fsock *next_dead;
} fsock_t;

typedef struct floor_proxy {
    int epfd;
    char mhd_tag;
    struct MHD_Daemon *daemon;
    CURLM *multi;
    struct curl_slist *headers; /* fixed, built once */
    const char *upstream;       /* base URL, no trailing slash */
    bool json;
    bool mhd_kick;        /* a connection was resumed: run MHD this round */
    int64_t timer_due_us; /* curl's timeout; -1: none */
    freq_t *active;
    fsock_t *dead_socks;
    CURL *spare[FLOOR_SPARE_EASY];
    size_t nspare;
    /* counters, printed at exit */
    unsigned long long requests;
    unsigned long long upstream_failures;
    unsigned long long bad_json;
    unsigned long long answers_without_usage;
    long long prompt_tokens;
    long long completion_tokens;
} floor_t;

static volatile sig_atomic_t floor_stop;

static void floor_on_signal(int sig)
{
    (void)sig;
    floor_stop = 1;
}

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void usage_exit(void)
{
    fprintf(stderr,
            "usage: keygate-floor-proxy --upstream http://127.0.0.1:PORT\n"
            "         [--listen 127.0.0.1:0] [--port-file F] [--json]\n"
            "         [--max-seconds S] [--pool-bytes N] [--turbo]\n");
    exit(2);
}

/* ---- curl side ---------------------------------------------------------- */

static size_t floor_header_cb(char *line, size_t size, size_t n, void *ud)
{
    freq_t *r = ud;
    size_t len = size * n;

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
        snprintf(r->content_type, sizeof(r->content_type), "%.*s", (int)vlen,
                 v);
    } else if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    }
    return len;
}

static size_t floor_write_cb(char *data, size_t size, size_t n, void *ud)
{
    freq_t *r = ud;
    size_t len = size * n;

    return fbuf_append(&r->answer, data, len, FLOOR_MAX_ANSWER) ? len : 0;
}

/* Take the request's transfer out of the multi handle; keep the handle. */
static void floor_detach(floor_t *f, freq_t *r)
{
    if (r->easy == NULL) {
        return;
    }
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else if (f->active == r) {
        f->active = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    r->prev = r->next = NULL;
    curl_multi_remove_handle(f->multi, r->easy);
    if (f->nspare < FLOOR_SPARE_EASY) {
        curl_easy_reset(r->easy);
        f->spare[f->nspare++] = r->easy;
    } else {
        curl_easy_cleanup(r->easy);
    }
    r->easy = NULL;
}

/* Start the upstream transfer of a complete request. */
static bool floor_start(floor_t *f, freq_t *r, const char *method,
                        const char *url)
{
    size_t ulen = strlen(f->upstream) + strlen(url) + 1;
    CURL *e;

    r->url = malloc(ulen);
    if (r->url == NULL) {
        return false;
    }
    snprintf(r->url, ulen, "%s%s", f->upstream, url);
    e = f->nspare > 0 ? f->spare[--f->nspare] : curl_easy_init();
    if (e == NULL) {
        return false;
    }
    r->easy = e;
    /* The options src/proxy.c sets for an HTTP provider. */
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, FLOOR_CONNECT_MS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_error);
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_NONE);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, floor_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, floor_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (strcmp(method, "POST") == 0 || r->body.len > 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS,
                         r->body.data ? r->body.data : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)r->body.len);
    }
    if (strcmp(method, "POST") != 0 && strcmp(method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        r->easy = NULL;
        return false;
    }
    r->next = f->active;
    if (f->active != NULL) {
        f->active->prev = r;
    }
    f->active = r;
    r->started = true;
    return true;
}

/* Every finished transfer: resume its connection to send the answer. */
static void floor_read_messages(floor_t *f)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        freq_t *r = NULL;

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        r->result = msg->data.result;
        floor_detach(f, r);
        r->done = true;
        MHD_resume_connection(r->conn);
        f->mhd_kick = true;
    }
}

static int floor_socket_cb(CURL *easy, curl_socket_t fd, int what, void *ud,
                           void *sockp)
{
    floor_t *f = ud;
    fsock_t *s = sockp;
    struct epoll_event ev;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            epoll_ctl(f->epfd, EPOLL_CTL_DEL, fd, NULL);
            curl_multi_assign(f->multi, fd, NULL);
            /* An event for it may still wait in the current batch. */
            s->dead = true;
            s->next_dead = f->dead_socks;
            f->dead_socks = s;
        }
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) |
                (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            return -1;
        }
        s->fd = fd;
        ev.data.ptr = s;
        if (epoll_ctl(f->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            free(s);
            return -1;
        }
        curl_multi_assign(f->multi, fd, s);
        return 0;
    }
    ev.data.ptr = s;
    return epoll_ctl(f->epfd, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -1;
}

static int floor_timer_cb(CURLM *multi, long timeout_ms, void *ud)
{
    floor_t *f = ud;

    (void)multi;
    f->timer_due_us = timeout_ms < 0 ? -1 : mono_us() + timeout_ms * 1000;
    return 0;
}

/* curl's due timer, finished transfers, sockets freed after a batch. */
static void floor_run_curl(floor_t *f)
{
    int running = 0;

    if (f->timer_due_us >= 0 && f->timer_due_us <= mono_us()) {
        f->timer_due_us = -1;
        curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    floor_read_messages(f);
}

static void floor_free_dead(floor_t *f)
{
    while (f->dead_socks != NULL) {
        fsock_t *s = f->dead_socks;

        f->dead_socks = s->next_dead;
        free(s);
    }
}

/* ---- libmicrohttpd side ---------------------------------------------------
 */

/* Queue body (len bytes; freed by MHD when must_free, else copied). */
static enum MHD_Result floor_queue(struct MHD_Connection *conn, unsigned status,
                                   const char *ctype, char *body, size_t len,
                                   bool must_free)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (resp == NULL) {
        if (must_free) {
            free(body);
        }
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result floor_error(struct MHD_Connection *conn, unsigned status,
                                   const char *code)
{
    char b[96];
    int n = snprintf(b, sizeof(b), "{\"error\":{\"code\":\"%s\"}}", code);

    return floor_queue(conn, status, "application/json", b, (size_t)n, false);
}

/* The buffered answer of a finished transfer. */
static enum MHD_Result floor_respond(floor_t *f, freq_t *r)
{
    char *body;
    size_t len;

    if (r->result != CURLE_OK || r->status < 100) {
        f->upstream_failures++;
        return floor_error(r->conn, 502, "upstream_failed");
    }
    if (f->json) {
        long long p = 0;
        long long c = 0;

        if (floor_json_answer(r->answer.data ? r->answer.data : "",
                              r->answer.len, &p, &c)) {
            f->prompt_tokens += p;
            f->completion_tokens += c;
        } else {
            f->answers_without_usage++;
        }
    }
    body = r->answer.data ? r->answer.data : strdup("");
    len = r->answer.len;
    r->answer.data = NULL;
    r->answer.len = r->answer.cap = 0;
    return floor_queue(r->conn, (unsigned)r->status,
                       r->content_type[0] ? r->content_type
                                          : "application/octet-stream",
                       body, len, true);
}

static enum MHD_Result floor_handler(void *cls, struct MHD_Connection *conn,
                                     const char *url, const char *method,
                                     const char *version,
                                     const char *upload_data,
                                     size_t *upload_data_size, void **con_cls)
{
    floor_t *f = cls;
    freq_t *r = *con_cls;

    (void)version;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            return MHD_NO;
        }
        r->f = f;
        r->conn = conn;
        *con_cls = r;
        f->requests++;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!r->too_large && !fbuf_append(&r->body, upload_data,
                                          *upload_data_size, FLOOR_MAX_BODY)) {
            r->too_large = true;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->done) {
        return floor_respond(f, r);
    }
    if (r->started) {
        return MHD_YES; /* not expected: a suspended connection is not run */
    }
    if (r->too_large) {
        return floor_error(conn, 413, "body_too_large");
    }
    if (f->json && r->body.len > 0 &&
        !floor_json_request(r->body.data, r->body.len)) {
        f->bad_json++;
        return floor_error(conn, 400, "bad_json");
    }
    if (!floor_start(f, r, method, url)) {
        return floor_error(conn, 500, "cannot_start");
    }
    MHD_suspend_connection(conn);
    return MHD_YES;
}

static void floor_completed(void *cls, struct MHD_Connection *conn,
                            void **con_cls, enum MHD_RequestTerminationCode toe)
{
    floor_t *f = cls;
    freq_t *r = *con_cls;

    (void)conn;
    (void)toe;
    if (r == NULL) {
        return;
    }
    floor_detach(f, r); /* a transfer still running: the client is gone */
    free(r->body.data);
    free(r->answer.data);
    free(r->url);
    free(r);
    *con_cls = NULL;
}

/* ---- setup and the loop ------------------------------------------------- */

static bool is_loopback_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* "HOST:PORT" or "[V6]:PORT" on loopback -> a listening socket. */
static int floor_listen(const char *spec, bool *ipv6, uint16_t *port)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    struct sockaddr_storage ss;
    struct sockaddr_storage bound;
    socklen_t len;
    socklen_t blen = sizeof(bound);
    int one = 1;
    long p;
    int fd;

    if (colon == NULL || (size_t)(colon - spec) >= sizeof(host)) {
        return -1;
    }
    if (spec[0] == '[' && colon > spec + 1 && colon[-1] == ']') {
        snprintf(host, sizeof(host), "%.*s", (int)(colon - spec - 2), spec + 1);
    } else {
        snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
    }
    p = strtol(colon + 1, NULL, 10);
    if (p < 0 || p > 65535 || !is_loopback_host(host)) {
        fprintf(stderr, "keygate-floor-proxy: --listen must be a loopback "
                        "address and a port\n");
        return -1;
    }
    memset(&ss, 0, sizeof(ss));
    *ipv6 = strchr(host, ':') != NULL;
    if (*ipv6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)(void *)&ss;

        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        inet_pton(AF_INET6, host, &a6->sin6_addr);
        len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)(void *)&ss;

        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p);
        inet_pton(AF_INET, host, &a4->sin_addr);
        len = sizeof(*a4);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &blen) != 0) {
        perror("keygate-floor-proxy: listen");
        close(fd);
        return -1;
    }
    *port = ntohs(*ipv6 ? ((struct sockaddr_in6 *)(void *)&bound)->sin6_port
                        : ((struct sockaddr_in *)(void *)&bound)->sin_port);
    return fd;
}

/* An http:// URL naming a loopback host, without a trailing slash. */
static char *floor_upstream(const char *url)
{
    char host[64];
    const char *h = url + 7;
    size_t n;
    char *copy;

    if (strncmp(url, "http://", 7) != 0) {
        return NULL;
    }
    if (*h == '[') {
        n = strcspn(h + 1, "]");
        snprintf(host, sizeof(host), "%.*s", (int)n, h + 1);
    } else {
        n = strcspn(h, ":/");
        snprintf(host, sizeof(host), "%.*s", (int)n, h);
    }
    if (n == 0 || n >= sizeof(host) || !is_loopback_host(host)) {
        return NULL;
    }
    copy = strdup(url);
    n = copy ? strlen(copy) : 0;
    while (n > 7 && copy[n - 1] == '/') {
        copy[--n] = '\0';
    }
    return copy;
}

static bool write_port_file(const char *path, uint16_t port)
{
    char tmp[4096];
    FILE *fp;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
        return false;
    }
    fp = fopen(tmp, "w");
    if (fp == NULL) {
        return false;
    }
    fprintf(fp, "%u\n", (unsigned)port);
    if (fclose(fp) != 0) {
        return false;
    }
    return rename(tmp, path) == 0;
}

/* The nearest of curl's and libmicrohttpd's timers, capped. */
static int floor_timeout_ms(floor_t *f)
{
    MHD_UNSIGNED_LONG_LONG mt = 0;
    int t = -1;

    if (f->mhd_kick) {
        return 0;
    }
    if (f->timer_due_us >= 0) {
        int64_t d = f->timer_due_us - mono_us();

        t = d <= 0 ? 0 : (int)((d + 999) / 1000);
    }
    if (MHD_get_timeout(f->daemon, &mt) == MHD_YES &&
        (t < 0 || mt < (MHD_UNSIGNED_LONG_LONG)t)) {
        t = (int)mt;
    }
    if (t < 0 || t > FLOOR_MAX_WAIT_MS) {
        t = FLOOR_MAX_WAIT_MS;
    }
    return t;
}

/* The loop of src/worker.c, minus keygate's command queue and checks. */
static void floor_loop(floor_t *f, int64_t deadline_us)
{
    struct epoll_event evs[FLOOR_EVENTS];
    int64_t mhd_due_us = 0;

    while (!floor_stop && mono_us() < deadline_us) {
        int n = epoll_wait(f->epfd, evs, FLOOR_EVENTS, floor_timeout_ms(f));
        bool run_mhd = false;
        int64_t now;

        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            fsock_t *s = tag;
            int flags = 0;
            int running = 0;

            if (tag == &f->mhd_tag) {
                run_mhd = true;
                continue;
            }
            if (s->dead) {
                continue;
            }
            flags |= evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0;
            flags |= evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0;
            flags |=
                evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0;
            curl_multi_socket_action(f->multi, s->fd, flags, &running);
        }
        floor_run_curl(f);
        floor_free_dead(f);
        now = mono_us();
        if (f->mhd_kick || run_mhd || now >= mhd_due_us) {
            MHD_UNSIGNED_LONG_LONG mt = 0;

            f->mhd_kick = false;
            MHD_run(f->daemon);
            /* Requests read in this round start their transfers now. */
            floor_run_curl(f);
            floor_free_dead(f);
            mhd_due_us = MHD_get_timeout(f->daemon, &mt) == MHD_YES
                             ? now + (int64_t)mt * 1000
                             : now + (int64_t)FLOOR_MAX_WAIT_MS * 1000;
        }
    }
}

int main(int argc, char **argv)
{
    const char *listen_spec = "127.0.0.1:0";
    const char *port_file = NULL;
    const char *upstream = NULL;
    long max_seconds = 3600;
    long pool_bytes = FLOOR_POOL_BYTES;
    unsigned turbo = 0;
    floor_t f;
    struct sigaction sa;
    struct epoll_event ev;
    const union MHD_DaemonInfo *info;
    struct curl_slist *h = NULL;
    uint16_t port = 0;
    bool ipv6 = false;
    int lfd;

    memset(&f, 0, sizeof(f));
    f.timer_due_us = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            f.json = true;
        } else if (strcmp(argv[i], "--turbo") == 0) {
            turbo = MHD_USE_TURBO;
        } else if (i + 1 < argc && strcmp(argv[i], "--pool-bytes") == 0) {
            pool_bytes = strtol(argv[++i], NULL, 10);
        } else if (i + 1 < argc && strcmp(argv[i], "--listen") == 0) {
            listen_spec = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--port-file") == 0) {
            port_file = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--upstream") == 0) {
            upstream = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--max-seconds") == 0) {
            max_seconds = strtol(argv[++i], NULL, 10);
        } else {
            usage_exit();
        }
    }
    if (upstream == NULL || max_seconds < 1 || max_seconds > 86400 ||
        pool_bytes < 4096 || pool_bytes > 16 * 1024 * 1024) {
        usage_exit();
    }
    f.upstream = floor_upstream(upstream);
    if (f.upstream == NULL) {
        fprintf(stderr, "keygate-floor-proxy: --upstream must be an http:// "
                        "URL on a loopback address\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = floor_on_signal; /* no SA_RESTART: epoll_wait returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return 1;
    }
    /* keygate's upstream headers for a JSON request, fixed here. */
    h = curl_slist_append(h, "Content-Type: application/json");
    h = h ? curl_slist_append(h, "Expect:") : NULL;
    h = h ? curl_slist_append(h, "User-Agent: keygate-floor-proxy") : NULL;
    h = h ? curl_slist_append(h, FLOOR_UPSTREAM_AUTH) : NULL;
    f.headers = h;
    f.multi = curl_multi_init();
    f.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (f.headers == NULL || f.multi == NULL || f.epfd < 0) {
        fprintf(stderr, "keygate-floor-proxy: cannot set up\n");
        return 1;
    }
    curl_multi_setopt(f.multi, CURLMOPT_SOCKETFUNCTION, floor_socket_cb);
    curl_multi_setopt(f.multi, CURLMOPT_SOCKETDATA, &f);
    curl_multi_setopt(f.multi, CURLMOPT_TIMERFUNCTION, floor_timer_cb);
    curl_multi_setopt(f.multi, CURLMOPT_TIMERDATA, &f);

    lfd = floor_listen(listen_spec, &ipv6, &port);
    if (lfd < 0) {
        return 2;
    }
    f.daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
            MHD_USE_ERROR_LOG | turbo | (ipv6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, floor_handler, &f, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)lfd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)FLOOR_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)FLOOR_CONN_TIMEOUT, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)pool_bytes, MHD_OPTION_NOTIFY_COMPLETED, floor_completed, &f,
        MHD_OPTION_END);
    info = f.daemon ? MHD_get_daemon_info(f.daemon, MHD_DAEMON_INFO_EPOLL_FD)
                    : NULL;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &f.mhd_tag;
    if (info == NULL || info->epoll_fd < 0 ||
        epoll_ctl(f.epfd, EPOLL_CTL_ADD, info->epoll_fd, &ev) != 0) {
        fprintf(stderr, "keygate-floor-proxy: cannot start the daemon\n");
        return 1;
    }
    if (port_file != NULL && !write_port_file(port_file, port)) {
        perror("keygate-floor-proxy: port file");
        return 1;
    }
    fprintf(stderr, "keygate-floor-proxy: 127.0.0.1:%u -> %s%s, pool %ld B%s\n",
            (unsigned)port, f.upstream, f.json ? " (--json)" : "", pool_bytes,
            turbo ? ", turbo" : "");

    floor_loop(&f, mono_us() + (int64_t)max_seconds * 1000000);

    /* libmicrohttpd must not stop with a connection suspended: end every
     * transfer still running, which resumes its connection. */
    for (int guard = 0; f.active != NULL && guard < FLOOR_CONN_LIMIT; guard++) {
        freq_t *r = f.active;

        floor_detach(&f, r);
        r->result = CURLE_ABORTED_BY_CALLBACK;
        r->done = true;
        MHD_resume_connection(r->conn);
    }
    MHD_run(f.daemon);
    MHD_stop_daemon(f.daemon);
    fprintf(stderr,
            "FLOOR requests=%llu upstream_failures=%llu bad_json=%llu "
            "answers_without_usage=%llu prompt_tokens=%lld "
            "completion_tokens=%lld\n",
            f.requests, f.upstream_failures, f.bad_json,
            f.answers_without_usage, f.prompt_tokens, f.completion_tokens);
    while (f.nspare > 0) {
        curl_easy_cleanup(f.spare[--f.nspare]);
    }
    curl_multi_cleanup(f.multi);
    floor_free_dead(&f);
    curl_slist_free_all(f.headers);
    close(f.epfd);
    free((char *)f.upstream);
    curl_global_cleanup();
    return 0;
}
