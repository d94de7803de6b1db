/* The timer thread that resumes parked (suspended) mock connections. */
#include "mock.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

/* How often a connection parked for long is checked for a gone client. */
#define MOCK_PROBE_NS (UINT64_C(200) * 1000000)
/* Most entries handled per lock round. */
#define MOCK_BATCH      256
#define MOCK_NS_FOREVER UINT64_MAX

/* A binary min-heap of parked requests ordered by due_ns. */
static kg_mock_req_t **heap;
static size_t heap_len;
static size_t heap_cap;
static pthread_mutex_t heap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t heap_cond;
static pthread_t timer_thread;
static bool timer_running;
static bool timer_quit;
static bool timer_draining;
static atomic_size_t parked;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void heap_swap(size_t a, size_t b)
{
    kg_mock_req_t *t = heap[a];

    heap[a] = heap[b];
    heap[b] = t;
}

/* Caller holds heap_lock. Returns false when out of memory. */
static bool heap_push(kg_mock_req_t *req)
{
    size_t i;

    if (heap_len == heap_cap) {
        size_t cap = heap_cap ? heap_cap * 2 : 1024;
        kg_mock_req_t **p = realloc(heap, cap * sizeof(*p));

        if (p == NULL) {
            return false;
        }
        heap = p;
        heap_cap = cap;
    }
    i = heap_len++;
    heap[i] = req;
    while (i > 0 && heap[(i - 1) / 2]->due_ns > heap[i]->due_ns) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return true;
}

/* Caller holds heap_lock and heap_len > 0. */
static kg_mock_req_t *heap_pop(void)
{
    kg_mock_req_t *top = heap[0];
    size_t i = 0;

    heap[0] = heap[--heap_len];
    for (;;) {
        size_t l = 2 * i + 1;
        size_t r = l + 1;
        size_t m = i;

        if (l < heap_len && heap[l]->due_ns < heap[m]->due_ns) {
            m = l;
        }
        if (r < heap_len && heap[r]->due_ns < heap[m]->due_ns) {
            m = r;
        }
        if (m == i) {
            break;
        }
        heap_swap(i, m);
        i = m;
    }
    return top;
}

/* Whether the peer of fd has closed or reset; pending data means alive. */
static bool client_gone(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

    if (n > 0) {
        return false;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return false;
    }
    return true;
}

static uint64_t next_due(uint64_t now, uint64_t deadline)
{
    if (deadline > now && deadline - now > MOCK_PROBE_NS) {
        return now + MOCK_PROBE_NS;
    }
    return deadline;
}

void kg_mock_timer_park(kg_mock_req_t *req, long delay_ms)
{
    uint64_t now = now_ns();
    bool ok;

    if (delay_ms < 0) {
        req->deadline_ns = MOCK_NS_FOREVER;
    } else {
        req->deadline_ns = now + (uint64_t)delay_ms * 1000000u;
    }
    req->due_ns = next_due(now, req->deadline_ns);
    MHD_suspend_connection(req->conn);
    atomic_fetch_add(&parked, 1);
    pthread_mutex_lock(&heap_lock);
    if (timer_draining) {
        req->due_ns = 0;
    }
    ok = heap_push(req);
    if (ok && heap[0] == req) {
        pthread_cond_signal(&heap_cond);
    }
    pthread_mutex_unlock(&heap_lock);
    if (!ok) {
        /* Out of memory: better a busy connection than a lost one. */
        MHD_resume_connection(req->conn);
        atomic_fetch_sub(&parked, 1);
    }
}

/*
 * Decide for a due entry: resume it, or (still waiting, client present)
 * push it back. Called without the lock; req is still parked.
 */
static void handle_due(kg_mock_req_t *req, uint64_t now, bool draining)
{
    bool resume = draining || now >= req->deadline_ns;

    if (!resume && client_gone(req->fd)) {
        req->client_gone = true;
        resume = true;
    }
    if (!resume) {
        req->due_ns = next_due(now, req->deadline_ns);
        pthread_mutex_lock(&heap_lock);
        if (timer_draining) {
            req->due_ns = 0;
        }
        resume = !heap_push(req);
        pthread_mutex_unlock(&heap_lock);
    }
    if (resume) {
        /* req may be freed by MHD's thread from here on. */
        MHD_resume_connection(req->conn);
        atomic_fetch_sub(&parked, 1);
    }
}

static void wait_for_work(void)
{
    while (!timer_quit && !timer_draining) {
        uint64_t now;
        uint64_t due;
        struct timespec ts;

        if (heap_len == 0) {
            pthread_cond_wait(&heap_cond, &heap_lock);
            continue;
        }
        now = now_ns();
        due = heap[0]->due_ns;
        if (due <= now) {
            return;
        }
        ts.tv_sec = (time_t)(due / 1000000000u);
        ts.tv_nsec = (long)(due % 1000000000u);
        pthread_cond_timedwait(&heap_cond, &heap_lock, &ts);
    }
}

static void *timer_main(void *arg)
{
    kg_mock_req_t *batch[MOCK_BATCH];

    (void)arg;
    pthread_mutex_lock(&heap_lock);
    for (;;) {
        size_t n = 0;
        uint64_t now;
        bool draining;

        wait_for_work();
        if (timer_quit) {
            break;
        }
        now = now_ns();
        draining = timer_draining;
        while (heap_len > 0 && n < MOCK_BATCH &&
               (draining || heap[0]->due_ns <= now)) {
            batch[n++] = heap_pop();
        }
        if (n == 0 && draining) {
            pthread_cond_wait(&heap_cond, &heap_lock);
            continue;
        }
        pthread_mutex_unlock(&heap_lock);
        for (size_t i = 0; i < n; i++) {
            handle_due(batch[i], now, draining);
        }
        pthread_mutex_lock(&heap_lock);
    }
    pthread_mutex_unlock(&heap_lock);
    return NULL;
}

int kg_mock_timer_start(void)
{
    pthread_condattr_t attr;
    int rc;

    rc = pthread_condattr_init(&attr);
    if (rc != 0) {
        return rc;
    }
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(&heap_cond, &attr);
    }
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        return rc;
    }
    rc = pthread_create(&timer_thread, NULL, timer_main, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&heap_cond);
        return rc;
    }
    timer_running = true;
    return 0;
}

void kg_mock_timer_drain(void)
{
    pthread_mutex_lock(&heap_lock);
    timer_draining = true;
    for (size_t i = 0; i < heap_len; i++) {
        heap[i]->due_ns = 0;
    }
    pthread_cond_signal(&heap_cond);
    pthread_mutex_unlock(&heap_lock);
}

size_t kg_mock_timer_parked(void)
{
    return atomic_load(&parked);
}

void kg_mock_timer_stop(void)
{
    if (!timer_running) {
        return;
    }
    pthread_mutex_lock(&heap_lock);
    timer_quit = true;
    pthread_cond_signal(&heap_cond);
    pthread_mutex_unlock(&heap_lock);
    pthread_join(timer_thread, NULL);
    pthread_cond_destroy(&heap_cond);
    timer_running = false;
    free(heap);
    heap = NULL;
    heap_len = 0;
    heap_cap = 0;
}
