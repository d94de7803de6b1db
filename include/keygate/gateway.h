/* The gateway daemon: wires config, key cache, usage writer, proxy and HTTP. */
#ifndef KEYGATE_GATEWAY_H
#define KEYGATE_GATEWAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keygate/admin.h"
#include "keygate/config.h"
#include "keygate/connlimit.h"
#include "keygate/err.h"
#include "keygate/generation.h"
#include "keygate/keycache.h"
#include "keygate/keyhash.h"
#include "keygate/metrics.h"
#include "keygate/policy.h"
#include "keygate/proxy.h"
#include "keygate/secretbox.h"
#include "keygate/usagedb.h"
#include "keygate/watch.h"

struct kg_worker;

/*
 * The running gateway. Everything is owned by it. The configuration is a
 * generation (read-only once made): the main thread makes a new one on
 * SIGHUP and publishes it; each event loop switches to it for the
 * requests that start after, and a request keeps the one it started with
 * to its end (see generation.h). RESTART settings are the same in every
 * generation.
 */
typedef struct kg_gateway {
    pthread_mutex_t gen_mu; /* guards gen (the main thread replaces it) */
    kg_generation_t *gen;   /* the current generation (one reference) */
    atomic_ulong reloads_ok;
    atomic_ulong reloads_failed;
    atomic_bool reload_refused; /* the last reload kept the old one */
    kg_keyhash_t *hashkey;
    kg_secretbox_t *secretbox;
    kg_keycache_t *keycache;
    kg_policy_t *policy;
    kg_cidr_list_t *trusted_proxies; /* NULL: the socket peer is the client */
    kg_usagedb_t *usage;
    kg_watch_t *watch;          /* NULL on a store that does not notify */
    kg_proxy_opts_t proxy_opts; /* each worker's proxy starts from these */
    struct kg_worker **workers; /* event loops ([server] threads) */
    unsigned nworkers;
    kg_connlimit_t *connlimit; /* client connections, all workers */
    uint16_t port;             /* the bound port (useful with port 0) */
    kg_admin_t *admin;         /* the admin listener, or NULL when off */
    /* Shards: one per worker (index = worker index), then one per admin
     * thread (index = nworkers_planned + admin thread index). */
    kg_metrics_t *metrics;
    unsigned nworkers_planned;
    uint16_t admin_port;
    atomic_bool draining;
    atomic_bool store_ok; /* the maintenance thread's last store read */
    atomic_long inflight; /* requests between first call and completion */
    atomic_ulong request_seq;
    char id_prefix[9]; /* random per process, starts every request id */
    pthread_t maintenance;
    bool maintenance_started;
    bool pid_file_written;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stopping;
} kg_gateway_t;

typedef struct kg_gateway_opts {
    const char *port_file;       /* write the bound port here, or NULL */
    const char *admin_port_file; /* the admin listener's, or NULL */
} kg_gateway_opts_t;

/*
 * Run the gateway in the foreground until SIGTERM or SIGINT: block the
 * signals, start every part, listen, then drain and stop. A second signal
 * exits at once; SIGHUP reloads the configuration file (a broken one is
 * refused and the running configuration kept); SIGUSR1 reopens the log
 * file. *cfg is taken over (set to NULL). Returns KG_OK after a clean
 * stop, or the error that kept it from starting (diag says why).
 */
kg_err_t kg_gateway_run(kg_config_t **cfg, const kg_gateway_opts_t *opts,
                        kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The current configuration: a new reference (kg_generation_unref). Any
 * thread off the event loops (they hold their own); takes a mutex.
 */
kg_generation_t *kg_gateway_generation(kg_gateway_t *gw);

/* The HTTP front end (src/http.c). */
kg_err_t kg_http_start(kg_gateway_t *gw, kg_diag_t *diag) KG_MUST_CHECK;
/* Stop accepting new connections; in-flight requests go on. */
void kg_http_quiesce(kg_gateway_t *gw);

/* How long kg_http_publish waits for the workers to switch, at most. */
#define KG_HTTP_PUBLISH_WAIT_MS 2000

/*
 * Hand g to every worker for its new requests (see
 * kg_worker_set_generation) and wait until each has switched, at most
 * KG_HTTP_PUBLISH_WAIT_MS: true when all did (every request that starts
 * from now gets g), false when one did not in time (it will later).
 */
bool kg_http_publish(kg_gateway_t *gw, kg_generation_t *g);

/* Cut every transfer in flight (the drain deadline); see kg_proxy_cut_all. */
void kg_http_cut_all(kg_gateway_t *gw);
void kg_http_stop(kg_gateway_t *gw);

#endif /* KEYGATE_GATEWAY_H */
