/* One event loop: a libmicrohttpd daemon and a curl multi in one epoll set. */
#ifndef KEYGATE_WORKER_H
#define KEYGATE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "keygate/err.h"
#include "keygate/proxy.h"

struct MHD_Daemon;
struct kg_gateway;

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
    struct MHD_Daemon *daemon; /* owned once attached */
    kg_proxy_t *proxy;         /* owned */
    pthread_t thread;
    bool started;
    atomic_bool stopping;
    atomic_bool quiesce_asked;
    bool quiesced;
} kg_worker_t;

/* A new worker with its epoll set and proxy (not yet running). */
kg_err_t kg_worker_new(struct kg_gateway *gw, unsigned index,
                       const kg_proxy_opts_t *popts, kg_worker_t **out,
                       kg_diag_t *diag) KG_MUST_CHECK;

/* Give the worker its daemon (started with MHD_USE_EPOLL, no thread). */
kg_err_t kg_worker_attach(kg_worker_t *w, struct MHD_Daemon *daemon,
                          kg_diag_t *diag) KG_MUST_CHECK;

/* Start the worker's thread. */
kg_err_t kg_worker_start(kg_worker_t *w, kg_diag_t *diag) KG_MUST_CHECK;

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
