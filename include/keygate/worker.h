/* One event loop: a libmicrohttpd daemon and a curl multi in one epoll set. */
#ifndef KEYGATE_WORKER_H
#define KEYGATE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/metrics.h"
#include "keygate/proxy.h"

struct MHD_Daemon;
struct kg_gateway;

/*
 * A client connection whose request headers are not complete yet, on its
 * worker's deadline list: at deadline_us its socket is shut down, which
 * libmicrohttpd then sees as a close. libmicrohttpd only measures
 * inactivity, so a client that trickles a byte now and then would
 * otherwise keep the connection for ever. Owned by the HTTP side (one per
 * connection); only the worker's thread touches it.
 */
typedef struct kg_worker_wait {
    struct kg_worker_wait *prev;
    struct kg_worker_wait *next;
    int64_t deadline_us; /* kg_clock_mono_us() */
    int fd;              /* the connection's socket, borrowed */
    bool armed;          /* on the list */
} kg_worker_wait_t;

/*
 * A worker. Everything a connection does happens on its worker's thread:
 * libmicrohttpd's callbacks, the curl transfer, suspend and resume, pause
 * and unpause. Other threads reach it only through the proxy's command
 * queue, kg_worker_quiesce and kg_worker_stop.
 */
typedef struct kg_worker {
    struct kg_gateway *gw; /* borrowed */
    unsigned index;
    int epfd;
    int wake_fd; /* eventfd: quiesce and stop */
    char wake_tag;
    char mhd_tag;
    struct MHD_Daemon *daemon;   /* owned once attached */
    kg_proxy_t *proxy;           /* owned */
    kg_metrics_shard_t *metrics; /* this loop's shard (borrowed) */
    pthread_t thread;
    bool started;
    atomic_bool stopping;
    atomic_bool quiesce_asked;
    bool quiesced;
    /* Connections waiting for their headers, oldest deadline first (every
     * deadline is now + header_us, so appending keeps the order). */
    kg_worker_wait_t *wait_head;
    kg_worker_wait_t *wait_tail;
    int64_t header_us; /* [server] header_timeout */
    uint64_t header_cuts;
    /* Liveness for the watchdog: kg_worker_ping stores a question and
     * wakes the loop, which copies it here when it handles the wake. */
    atomic_uint_fast64_t ping_asked;
    atomic_uint_fast64_t ping_answered;
} kg_worker_t;

/* A new worker with its epoll set and proxy (not yet running). */
kg_err_t kg_worker_new(struct kg_gateway *gw, unsigned index,
                       const kg_proxy_opts_t *popts, kg_worker_t **out,
                       kg_diag_t *diag) KG_MUST_CHECK;

/* Give the worker its daemon (started with MHD_USE_EPOLL, no thread). */
kg_err_t kg_worker_attach(kg_worker_t *w, struct MHD_Daemon *daemon,
                          kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Put e (fd: the connection's socket) on w's deadline list, due
 * header_timeout after now_us; when already on it, move it to the end with
 * the new deadline. Worker thread only; no system call.
 */
void kg_worker_wait_arm(kg_worker_t *w, kg_worker_wait_t *e, int fd,
                        int64_t now_us);

/* Take e off the list (its headers are in, or it closed). Idempotent. */
void kg_worker_wait_disarm(kg_worker_t *w, kg_worker_wait_t *e);

/* Start the worker's thread. */
kg_err_t kg_worker_start(kg_worker_t *w, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Ask the loop question seq (any thread; one eventfd write). The loop
 * answers when it next handles its wake-ups, so an answer proves that it
 * still turns; see kg_worker_answered.
 */
void kg_worker_ping(kg_worker_t *w, uint64_t seq);

/* Whether the loop has answered question seq (or a later one). */
bool kg_worker_answered(kg_worker_t *w, uint64_t seq);

/* Stop accepting new connections (any thread); in-flight ones go on. */
void kg_worker_quiesce(kg_worker_t *w);

/* Stop the thread and wait for it (any thread but the worker's). */
void kg_worker_stop(kg_worker_t *w);

/*
 * Stop the daemon (closing its connections), cut what is still in flight,
 * free everything; sets *w to NULL. After kg_worker_stop.
 */
void kg_worker_free(kg_worker_t **w);

#endif /* KEYGATE_WORKER_H */
