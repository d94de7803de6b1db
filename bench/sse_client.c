/*
 * keygate-sse-client: streaming figures for bench/run (loopback only).
 *
 *   keygate-sse-client ttft --url URL [--url URL2] [--header H]...
 *       [--n N] [--events E] [--interval-ms I] [--timeout-s S]
 *     N streamed chat completions one after another (one in flight), taking
 *     turns between the URLs (interleaved arms), each on its own kept-alive
 *     connection. Prints per URL: time to first event (request sent ->
 *     first complete SSE event) and the gaps between consecutive events.
 *
 *   keygate-sse-client open --url URL [--header H]... --n N [--events E]
 *       [--interval-ms I] [--window W] [--sample-pid PID] [--timeout-s S]
 *     Opens N streams at once (at most W waiting for their first event at
 *     any moment), notes when all N are open together, samples the
 *     process PID (threads, RSS, open fds) idle and at the peak, then waits
 *     for every stream to end and checks that each got its [DONE].
 *
 * Output: lines starting with "TTFT " or "OPEN " of name=value pairs.
 * Every run is bounded by --timeout-s (default 120 s).
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_URLS    2
#define MAX_HEADERS 8

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *v, size_t n, double p)
{
    size_t i;

    if (n == 0) {
        return 0.0;
    }
    i = (size_t)(p / 100.0 * (double)n);
    if (i >= n) {
        i = n - 1;
    }
    return (double)v[i] / 1e3;
}

/* A growable array of durations in ns. */
typedef struct vec {
    uint64_t *v;
    size_t n;
    size_t cap;
} vec_t;

static void vec_push(vec_t *a, uint64_t x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        uint64_t *v = realloc(a->v, cap * sizeof(*v));

        if (v == NULL) {
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

/* One stream. */
typedef struct stream {
    CURL *easy;
    int arm;
    uint64_t t_start;
    uint64_t t_first;
    uint64_t t_last;
    unsigned events;
    bool prev_nl;   /* the last byte seen (CR ignored) was LF */
    bool done_seen; /* "[DONE]" arrived */
    char tail[8];   /* the last bytes, to find "[DONE]" across chunks */
    size_t tail_len;
    bool finished;
    vec_t *gaps; /* where to record gaps, or NULL */
} stream_t;

/* Open-mode counters, updated from the write callback. */
static size_t g_first;    /* streams that got their first event */
static size_t g_finished; /* streams ended (any way) */

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    stream_t *s = ud;
    size_t len = size * nmemb;
    uint64_t t = now_ns();
    char buf[2 * sizeof(((stream_t *)0)->tail)];

    for (size_t i = 0; i < len; i++) {
        char ch = p[i];

        if (ch == '\r') {
            continue;
        }
        if (ch == '\n' && s->prev_nl) { /* end of one SSE event */
            if (s->events == 0) {
                s->t_first = t;
                g_first++;
            } else if (s->gaps != NULL) {
                vec_push(s->gaps, t - s->t_last);
            }
            s->t_last = t;
            s->events++;
            s->prev_nl = false;
            continue;
        }
        s->prev_nl = ch == '\n';
    }
    /* [DONE] detection, also across two chunks (tail + head). */
    if (!s->done_seen) {
        size_t head = len < sizeof(s->tail) ? len : sizeof(s->tail);
        size_t n = s->tail_len;

        memcpy(buf, s->tail, n);
        memcpy(buf + n, p, head);
        n += head;
        if (memmem(p, len, "[DONE]", 6) != NULL ||
            memmem(buf, n, "[DONE]", 6) != NULL) {
            s->done_seen = true;
        }
        if (len >= sizeof(s->tail)) {
            memcpy(s->tail, p + len - sizeof(s->tail), sizeof(s->tail));
            s->tail_len = sizeof(s->tail);
        } else {
            size_t keep = n < sizeof(s->tail) ? n : sizeof(s->tail);

            memmove(s->tail, buf + n - keep, keep);
            s->tail_len = keep;
        }
    }
    return len;
}

typedef struct opts {
    const char *mode;
    const char *urls[MAX_URLS];
    int nurls;
    const char *headers[MAX_HEADERS];
    int nheaders;
    long n;
    long events;
    long interval_ms;
    long window;
    long timeout_s;
    long sample_pid;
    const char *model;
} opts_t;

static char g_body[512];

static void make_body(const opts_t *o)
{
    snprintf(g_body, sizeof(g_body),
             "{\"model\":\"%s\",\"stream\":true,\"max_tokens\":16,"
             "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}],"
             "\"mock\":{\"events\":%ld,\"interval_ms\":%ld}}",
             o->model, o->events, o->interval_ms);
}

static struct curl_slist *make_headers(const opts_t *o)
{
    struct curl_slist *h = NULL;

    h = curl_slist_append(h, "Content-Type: application/json");
    for (int i = 0; i < o->nheaders; i++) {
        h = curl_slist_append(h, o->headers[i]);
    }
    return h;
}

static void setup_easy(CURL *e, const char *url, struct curl_slist *hdrs,
                       stream_t *s, long timeout_s)
{
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, g_body);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
}

/* ---- ttft ------------------------------------------------------------- */

static int run_ttft(const opts_t *o)
{
    struct curl_slist *hdrs = make_headers(o);
    CURL *easy[MAX_URLS];
    vec_t ttft[MAX_URLS] = {{0}};
    vec_t gaps[MAX_URLS] = {{0}};
    long errors[MAX_URLS] = {0};
    long ok[MAX_URLS] = {0};
    uint64_t deadline = now_ns() + (uint64_t)o->timeout_s * 1000000000u;

    for (int a = 0; a < o->nurls; a++) {
        easy[a] = curl_easy_init();
        if (easy[a] == NULL) {
            return 1;
        }
    }
    for (long i = 0; i < o->n && now_ns() < deadline; i++) {
        int a = (int)(i % o->nurls);
        stream_t s;
        long code = 0;
        CURLcode cc;

        memset(&s, 0, sizeof(s));
        s.arm = a;
        s.gaps = &gaps[a];
        setup_easy(easy[a], o->urls[a], hdrs, &s, o->timeout_s);
        s.t_start = now_ns();
        cc = curl_easy_perform(easy[a]);
        curl_easy_getinfo(easy[a], CURLINFO_RESPONSE_CODE, &code);
        if (cc != CURLE_OK || code != 200 || !s.done_seen || s.events == 0) {
            errors[a]++;
            if (errors[a] <= 3) {
                fprintf(stderr, "ttft: url %d: %s, status %ld, events %u%s\n",
                        a, curl_easy_strerror(cc), code, s.events,
                        s.done_seen ? "" : ", no [DONE]");
            }
            continue;
        }
        ok[a]++;
        vec_push(&ttft[a], s.t_first - s.t_start);
    }
    for (int a = 0; a < o->nurls; a++) {
        qsort(ttft[a].v, ttft[a].n, sizeof(uint64_t), cmp_u64);
        qsort(gaps[a].v, gaps[a].n, sizeof(uint64_t), cmp_u64);
        printf("TTFT url=%d streams=%ld errors=%ld ttft_p50_us=%.1f "
               "ttft_p99_us=%.1f gaps=%zu gap_p50_us=%.1f gap_p99_us=%.1f "
               "gap_max_us=%.1f\n",
               a, ok[a], errors[a], pct_us(ttft[a].v, ttft[a].n, 50),
               pct_us(ttft[a].v, ttft[a].n, 99), gaps[a].n,
               pct_us(gaps[a].v, gaps[a].n, 50),
               pct_us(gaps[a].v, gaps[a].n, 99),
               pct_us(gaps[a].v, gaps[a].n, 100));
        free(ttft[a].v);
        free(gaps[a].v);
        curl_easy_cleanup(easy[a]);
    }
    curl_slist_free_all(hdrs);
    return 0;
}

/* ---- open streams ----------------------------------------------------- */

static int g_ep = -1;
static long g_timer_ms = -1;
static CURLM *g_multi;

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp,
                   void *sockp)
{
    struct epoll_event ev;

    (void)e;
    (void)userp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(g_ep, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    memset(&ev, 0, sizeof(ev));
    ev.data.fd = fd;
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    if (sockp == NULL) {
        if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST) {
            epoll_ctl(g_ep, EPOLL_CTL_MOD, fd, &ev);
        }
        curl_multi_assign(g_multi, fd, (void *)1);
    } else if (epoll_ctl(g_ep, EPOLL_CTL_MOD, fd, &ev) != 0 &&
               errno == ENOENT) {
        epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
    }
    return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    (void)m;
    (void)userp;
    g_timer_ms = timeout_ms;
    return 0;
}

typedef struct sample {
    long threads;
    long rss_kb;
    long fds;
} sample_t;

static void sample_pid(long pid, sample_t *out)
{
    char path[64];
    char line[256];
    FILE *f;
    DIR *d;
    struct dirent *de;

    memset(out, 0, sizeof(*out));
    if (pid <= 0) {
        return;
    }
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    f = fopen(path, "r");
    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "Threads:", 8) == 0) {
                out->threads = strtol(line + 8, NULL, 10);
            } else if (strncmp(line, "VmRSS:", 6) == 0) {
                out->rss_kb = strtol(line + 6, NULL, 10);
            }
        }
        fclose(f);
    }
    snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
    d = opendir(path);
    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] != '.') {
                out->fds++;
            }
        }
        closedir(d);
    }
}

static int run_open(const opts_t *o)
{
    struct curl_slist *hdrs = make_headers(o);
    stream_t *ss = calloc((size_t)o->n, sizeof(*ss));
    struct epoll_event evs[512];
    uint64_t t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)o->timeout_s * 1000000000u;
    uint64_t t_all_open = 0;
    uint64_t last_sample = 0;
    size_t added = 0;
    size_t peak = 0;
    size_t ok = 0;
    size_t failed = 0;
    int running = 0;
    sample_t idle;
    sample_t atpeak;
    sample_t after;
    CURLcode first_err = CURLE_OK;
    long first_code = 0;

    if (ss == NULL) {
        return 1;
    }
    sample_pid(o->sample_pid, &idle);
    memset(&atpeak, 0, sizeof(atpeak));
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    g_multi = curl_multi_init();
    curl_multi_setopt(g_multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(g_multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(g_multi, CURLMOPT_MAXCONNECTS, (long)o->n + 16);

    while (now_ns() < deadline) {
        size_t active;
        int nev;
        int wait;
        CURLMsg *msg;
        int left;

        /* Ramp: keep at most `window` streams waiting for their first
         * event, so the listen backlog never overflows. */
        while (added < (size_t)o->n &&
               added - (g_first < added ? g_first : added) <
                   (size_t)o->window) {
            stream_t *s = &ss[added];

            s->easy = curl_easy_init();
            if (s->easy == NULL) {
                break;
            }
            setup_easy(s->easy, o->urls[0], hdrs, s, o->timeout_s);
            s->t_start = now_ns();
            curl_multi_add_handle(g_multi, s->easy);
            added++;
        }

        wait =
            g_timer_ms < 0 ? 100 : (g_timer_ms > 100 ? 100 : (int)g_timer_ms);
        nev = epoll_wait(g_ep, evs, 512, wait);
        if (nev <= 0) {
            curl_multi_socket_action(g_multi, CURL_SOCKET_TIMEOUT, 0, &running);
        } else {
            for (int i = 0; i < nev; i++) {
                int flags = 0;

                if (evs[i].events & EPOLLIN) {
                    flags |= CURL_CSELECT_IN;
                }
                if (evs[i].events & EPOLLOUT) {
                    flags |= CURL_CSELECT_OUT;
                }
                if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                    flags |= CURL_CSELECT_ERR;
                }
                curl_multi_socket_action(g_multi, evs[i].data.fd, flags,
                                         &running);
            }
            if (g_timer_ms == 0) {
                curl_multi_socket_action(g_multi, CURL_SOCKET_TIMEOUT, 0,
                                         &running);
            }
        }
        while ((msg = curl_multi_info_read(g_multi, &left)) != NULL) {
            stream_t *s = NULL;
            long code = 0;

            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            if (s->events == 0) {
                g_first++; /* never waits for its first event again */
            }
            s->finished = true;
            g_finished++;
            if (msg->data.result == CURLE_OK && code == 200 && s->done_seen) {
                ok++;
            } else {
                if (failed == 0) {
                    first_err = msg->data.result;
                    first_code = code;
                }
                failed++;
            }
            curl_multi_remove_handle(g_multi, s->easy);
            curl_easy_cleanup(s->easy);
            s->easy = NULL;
        }

        active = g_first > g_finished ? g_first - g_finished : 0;
        if (active > peak) {
            uint64_t t = now_ns();

            peak = active;
            if (active == (size_t)o->n && t_all_open == 0) {
                t_all_open = t;
                sample_pid(o->sample_pid, &atpeak);
                last_sample = t;
            } else if (t_all_open == 0 && t - last_sample > 250000000u) {
                sample_pid(o->sample_pid, &atpeak);
                last_sample = t;
            }
        }
        if (g_finished == (size_t)o->n) {
            break;
        }
    }
    sample_pid(o->sample_pid, &after);
    printf("OPEN n=%ld added=%zu peak_open=%zu all_open=%s ramp_s=%.2f "
           "ok=%zu failed=%zu unfinished=%zu total_s=%.2f "
           "threads_idle=%ld rss_idle_kb=%ld fds_idle=%ld "
           "threads_peak=%ld rss_peak_kb=%ld fds_peak=%ld "
           "threads_after=%ld rss_after_kb=%ld\n",
           o->n, added, peak, t_all_open ? "yes" : "no",
           t_all_open ? (double)(t_all_open - t0) / 1e9 : 0.0, ok, failed,
           (size_t)o->n - g_finished, (double)(now_ns() - t0) / 1e9,
           idle.threads, idle.rss_kb, idle.fds, atpeak.threads, atpeak.rss_kb,
           atpeak.fds, after.threads, after.rss_kb);
    if (failed > 0) {
        fprintf(stderr, "open: first failure: %s, status %ld\n",
                curl_easy_strerror(first_err), first_code);
    }
    for (long i = 0; i < o->n; i++) {
        if (ss[i].easy != NULL) {
            curl_multi_remove_handle(g_multi, ss[i].easy);
            curl_easy_cleanup(ss[i].easy);
        }
    }
    curl_multi_cleanup(g_multi);
    close(g_ep);
    curl_slist_free_all(hdrs);
    free(ss);
    return failed == 0 && g_finished == (size_t)o->n ? 0 : 3;
}

static void usage_exit(void)
{
    fprintf(stderr,
            "usage: keygate-sse-client ttft|open --url URL [--url URL2] "
            "[--header H]... [--n N]\n"
            "         [--events E] [--interval-ms I] [--window W] "
            "[--sample-pid PID] [--model M] [--timeout-s S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    opts_t o = {.n = 100,
                .events = 20,
                .interval_ms = 10,
                .window = 256,
                .timeout_s = 120,
                .model = "gpt-4o-mini"};
    int rc;

    if (argc < 2) {
        usage_exit();
    }
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL) {
            usage_exit();
        }
        if (strcmp(a, "--url") == 0 && o.nurls < MAX_URLS) {
            o.urls[o.nurls++] = v;
        } else if (strcmp(a, "--header") == 0 && o.nheaders < MAX_HEADERS) {
            o.headers[o.nheaders++] = v;
        } else if (strcmp(a, "--n") == 0) {
            o.n = strtol(v, NULL, 10);
        } else if (strcmp(a, "--events") == 0) {
            o.events = strtol(v, NULL, 10);
        } else if (strcmp(a, "--interval-ms") == 0) {
            o.interval_ms = strtol(v, NULL, 10);
        } else if (strcmp(a, "--window") == 0) {
            o.window = strtol(v, NULL, 10);
        } else if (strcmp(a, "--sample-pid") == 0) {
            o.sample_pid = strtol(v, NULL, 10);
        } else if (strcmp(a, "--model") == 0) {
            o.model = v;
        } else if (strcmp(a, "--timeout-s") == 0) {
            o.timeout_s = strtol(v, NULL, 10);
        } else {
            usage_exit();
        }
        i++;
    }
    if (o.nurls == 0 || o.n < 1 || o.n > 100000 || o.events < 1 ||
        o.interval_ms < 0 || o.window < 1 || o.timeout_s < 1 ||
        o.timeout_s > 3600) {
        usage_exit();
    }
    if (strncmp(o.urls[0], "http://127.", 11) != 0 ||
        (o.nurls > 1 && strncmp(o.urls[1], "http://127.", 11) != 0)) {
        fprintf(stderr, "keygate-sse-client: loopback URLs only\n");
        return 2;
    }
    make_body(&o);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (strcmp(o.mode, "ttft") == 0) {
        rc = run_ttft(&o);
    } else if (strcmp(o.mode, "open") == 0) {
        rc = run_open(&o);
    } else {
        usage_exit();
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
