/* The upstream side: one thread drives every provider transfer with libcurl. */
#ifndef KEYGATE_PROXY_H
#define KEYGATE_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/exchange.h"
#include "keygate/usagedb.h"

typedef struct kg_proxy kg_proxy_t;

typedef struct kg_proxy_opts {
    int64_t connect_timeout_ms;    /* default for providers without one */
    int64_t first_byte_timeout_ms; /* headers must arrive by then: 504 */
    int64_t idle_timeout_ms;       /* no bytes for this long ends it */
    size_t max_response_bytes;     /* a longer answer is cut */
    long max_host_connections;
    kg_usagedb_t *usage; /* borrowed: where usage events go */
    kg_policy_t *policy; /* borrowed: settles budgets and rate limits */
} kg_proxy_opts_t;

/* Start the proxy thread. *out is new (kg_proxy_stop). */
kg_err_t kg_proxy_start(const kg_proxy_opts_t *opts, kg_proxy_t **out,
                        kg_diag_t *diag) KG_MUST_CHECK;

/*
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

/* Abort what is left, join the thread, free; sets *p to NULL. */
void kg_proxy_stop(kg_proxy_t **p);

#endif /* KEYGATE_PROXY_H */
