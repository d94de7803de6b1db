/* The upstream side: provider transfers with libcurl, driven by one event loop.
 */
#ifndef KEYGATE_PROXY_H
#define KEYGATE_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/metrics.h"
#include "keygate/exchange.h"
#include "keygate/usagedb.h"

typedef struct kg_proxy kg_proxy_t;

typedef struct kg_proxy_opts {
    int64_t connect_timeout_ms;    /* default for providers without one */
    int64_t first_byte_timeout_ms; /* headers must arrive by then: 504 */
    int64_t idle_timeout_ms;       /* no bytes for this long ends it */
    size_t max_response_bytes;     /* a longer answer is cut */
    long max_host_connections;
    /* Idle provider connections this loop keeps (its connection cache),
     * and how long one may stay idle before it is closed (0: no sweep). */
    long max_idle_connections;
    int64_t idle_connection_timeout_ms;
    bool request_log;    /* [server] request_log: one line per request */
    kg_usagedb_t *usage; /* borrowed: where usage events go */
    kg_policy_t *policy; /* borrowed: settles budgets and rate limits */
    kg_metrics_shard_t *metrics; /* borrowed: this loop's shard, or NULL */
} kg_proxy_opts_t;

/*
 * A new proxy whose sockets go into the epoll set epfd, owned by one event
 * loop (src/worker.c): the loop passes every epoll event whose data.ptr is
 * not its own to kg_proxy_on_event, waits at most kg_proxy_timeout_ms, and
 * calls kg_proxy_run after each round. *out is new (kg_proxy_free).
 */
kg_err_t kg_proxy_new(const kg_proxy_opts_t *opts, int epfd, kg_proxy_t **out,
                      kg_diag_t *diag) KG_MUST_CHECK;

/* Called once on the loop's thread before its first round. */
void kg_proxy_bind_thread(kg_proxy_t *p);

/* An epoll event for one of the proxy's descriptors (loop thread). */
void kg_proxy_on_event(kg_proxy_t *p, void *tag, uint32_t events);

/* Milliseconds until kg_proxy_run has work (0: now, -1: none). */
int kg_proxy_timeout_ms(kg_proxy_t *p);

/*
 * An exchange's wake_loop (ud: the proxy): a connection of this loop was
 * resumed, from any thread; the loop must run libmicrohttpd soon.
 */
void kg_proxy_wake_loop(void *ud);

/* True once after a resume on this loop (loop thread): run libmicrohttpd. */
bool kg_proxy_take_kick(kg_proxy_t *p);

/*
 * Run queued commands, curl's due timer, finished transfers and timeouts
 * (loop thread).
 */
void kg_proxy_run(kg_proxy_t *p);

/*
 * The functions below may be called from any thread; off the loop's thread
 * they wake it.
 *
 * Hand an exchange to the proxy, which takes over the reference the caller
 * passes in. The HTTP side must have suspended the connection first; the
 * proxy wakes it when the answer is ready.
 */
void kg_proxy_submit(kg_proxy_t *p, kg_exchange_t *ex);

/* The client went away: abort the transfer (charged for what was produced). */
void kg_proxy_cancel(kg_proxy_t *p, kg_exchange_t *ex);

/* The client drained the relay buffer: resume a paused transfer. */
void kg_proxy_unpause(kg_proxy_t *p, kg_exchange_t *ex);

/*
 * End every transfer in flight now (the drain deadline): each client gets
 * its answer cut (502, or a truncated stream) and the usage so far is
 * recorded with error "shutdown".
 */
void kg_proxy_cut_all(kg_proxy_t *p);

/* Transfers in flight. */
size_t kg_proxy_active(kg_proxy_t *p);

/*
 * Cut what is left (recorded as "shutdown"), free; sets *p to NULL. The
 * loop must have stopped; the epoll set must still be open.
 */
void kg_proxy_free(kg_proxy_t **p);

#endif /* KEYGATE_PROXY_H */
