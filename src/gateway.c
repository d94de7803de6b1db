/* The gateway daemon: wires config, key cache, usage writer, proxy and HTTP. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "keygate/gateway.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <microhttpd.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keygate/clock.h"
#include "keygate/duration.h"
#include "keygate/keys.h"
#include "keygate/log.h"
#include "keygate/notify.h"
#include "keygate/store_usage.h"
#include "keygate/token.h"
#include "keygate/worker.h"

/* After cutting the transfers at the drain deadline, how long the clients
 * get to receive their ends before libmicrohttpd stops. */
#define GATEWAY_CUT_GRACE_US (3 * INT64_C(1000000))

/* Write the bound port to path atomically (tmp file + rename). */
static kg_err_t gateway_write_port(const char *path, uint16_t port,
                                   kg_diag_t *diag)
{
    char tmp[4096];
    char text[16];
    int fd;
    int n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return kg_diag_fail(diag, KG_ERR_IO, "port file path too long");
    }
    n = snprintf(text, sizeof(text), "%u\n", (unsigned)port);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)n) != n || close(fd) != 0 ||
        rename(tmp, path) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return kg_diag_fail(diag, KG_ERR_IO, "cannot write %s: %s", path,
                            strerror(errno));
    }
    return KG_OK;
}

/* In-flight requests past which a return to idle gives memory back. */
#define GATEWAY_TRIM_AFTER 256

/*
 * Give freed heap back to the system once a busy spell is over: thousands
 * of streams leave glibc's arenas large after they end (hundreds of MiB
 * that the next spell would reuse, but that count as the daemon's RSS).
 * Called every maintenance tick; trims on the first idle tick after more
 * than GATEWAY_TRIM_AFTER requests were in flight at once. Idle: no
 * request in flight and no usage event queued (an exchange lives until
 * the usage writer called back for its event, which may come later).
 */
static void gateway_trim_when_idle(kg_gateway_t *gw, long *peak)
{
    long now = atomic_load(&gw->inflight);
    kg_usagedb_stats_t st;

    if (now > *peak) {
        *peak = now;
    }
    if (now != 0 || *peak <= GATEWAY_TRIM_AFTER) {
        return;
    }
    kg_usagedb_stats(gw->usage, &st);
    if (st.queued == 0) {
        malloc_trim(0);
        *peak = 0;
    }
}

/*
 * Write the keys the key cache saw verified since the last call to
 * api_keys.last_used_at: one transaction a second at most, whatever the
 * request rate (each key is noted once per second it is used).
 */
static void gateway_note_used(kg_gateway_t *gw, const kg_keys_ctx_t *ctx,
                              kg_key_seen_t **seen)
{
    kg_diag_t diag = {{0}};
    size_t n;

    if (*seen == NULL) {
        return;
    }
    n = kg_keycache_swap_seen(gw->keycache, seen);
    if (ctx->store != NULL && n > 0 &&
        kg_keys_touch(ctx, *seen, n, &diag) != KG_OK) {
        KG_DEBUG("maintenance: last use of %zu key%s not saved: %s", n,
                 n == 1 ? "" : "s", diag.msg);
    }
}

/* [usage] retention: events deleted per transaction, transactions per
 * tick (so at most 25,000 a second, in short transactions that the usage
 * writer waits for only briefly). */
#define GATEWAY_PRUNE_ROWS    1000
#define GATEWAY_PRUNE_BATCHES 5

/* The maintenance thread's state between its ticks. */
typedef struct gateway_maint {
    kg_store_t *store; /* its own connection, or NULL */
    kg_keys_ctx_t ctx;
    kg_key_seen_t *seen;
    int64_t next_purge;
    int64_t next_prune;
    int64_t next_persist;
    uint64_t pruned; /* usage events deleted in the current round */
    long peak;
    kg_notify_wd_t wd;
    uint64_t wd_seq; /* the open question to the event loops */
    char status[KG_NOTIFY_STATUS_MAX + 1]; /* the last STATUS= sent */
} gateway_maint_t;

/* "127.0.0.1:8080" or "[::1]:8080" of a listen setting with its bound
 * port. */
static void gateway_addr(const char *listen, unsigned port, char *buf,
                         size_t len)
{
    char host[KG_LISTEN_HOST_MAX];
    int ignored = 0;

    if (kg_config_listen_parse(listen, host, sizeof(host), &ignored, NULL) !=
        KG_OK) {
        snprintf(buf, len, "%s", listen);
    } else if (strchr(host, ':') != NULL) {
        snprintf(buf, len, "[%s]:%u", host, port);
    } else {
        snprintf(buf, len, "%s:%u", host, port);
    }
}

/* What the service manager shows (systemctl status): where keygate
 * listens and what is in flight, or how the drain goes. */
static void gateway_status_text(kg_gateway_t *gw, char *buf, size_t len)
{
    long n = atomic_load(&gw->inflight);
    char addr[KG_LISTEN_HOST_MAX + 16];
    char admin[KG_LISTEN_HOST_MAX + 32] = "";

    if (atomic_load(&gw->draining)) {
        snprintf(buf, len, "draining: %ld request%s in flight", n,
                 n == 1 ? "" : "s");
        return;
    }
    gateway_addr(gw->cfg->server_listen, gw->port, addr, sizeof(addr));
    if (gw->admin != NULL) {
        char a[KG_LISTEN_HOST_MAX + 16];

        gateway_addr(gw->cfg->admin_listen, gw->admin_port, a, sizeof(a));
        snprintf(admin, sizeof(admin), ", admin on %s", a);
    }
    snprintf(buf, len, "serving on %s%s; %ld request%s in flight", addr, admin,
             n, n == 1 ? "" : "s");
}

/* Send STATUS= when the text has changed since the last one. */
static void gateway_update_status(kg_gateway_t *gw, gateway_maint_t *m)
{
    char text[KG_NOTIFY_STATUS_MAX + 1];

    gateway_status_text(gw, text, sizeof(text));
    if (strcmp(text, m->status) != 0) {
        memcpy(m->status, text, sizeof(text));
        kg_notify_status(text);
    }
}

/* Whether every event loop answered question seq; *late gets the index
 * of one that did not. */
static bool gateway_loops_answered(kg_gateway_t *gw, uint64_t seq,
                                   unsigned *late)
{
    for (unsigned i = 0; i < gw->nworkers; i++) {
        if (!kg_worker_answered(gw->workers[i], seq)) {
            *late = i;
            return false;
        }
    }
    return true;
}

/*
 * The watchdog (WatchdogSec= of the unit): ping the service manager every
 * half interval, but only when every event loop has answered the question
 * asked at the previous ping. A loop stuck in a call (or a maintenance
 * thread stuck in the store) stops the pings, and the manager ends and
 * restarts the daemon; a drain keeps pinging while its loops answer.
 */
static void gateway_watchdog(kg_gateway_t *gw, gateway_maint_t *m)
{
    unsigned late = 0;
    int64_t now = kg_clock_mono_us();
    bool answered = gateway_loops_answered(gw, m->wd_seq, &late);

    switch (kg_notify_wd_tick(&m->wd, now, answered)) {
    case KG_NOTIFY_WD_PING:
        kg_notify_watchdog();
        m->wd_seq++;
        for (unsigned i = 0; i < gw->nworkers; i++) {
            kg_worker_ping(gw->workers[i], m->wd_seq);
        }
        break;
    case KG_NOTIFY_WD_WITHHOLD:
        KG_WARN("watchdog: event loop %u has not answered for %lld ms; the "
                "service manager is not told that keygate is alive",
                late, (long long)(now - m->wd.asked_us) / 1000);
        break;
    case KG_NOTIFY_WD_WAIT:
        break;
    }
}

/*
 * [usage] retention: delete usage events older than it, oldest first, at
 * most GATEWAY_PRUNE_BATCHES transactions of GATEWAY_PRUNE_ROWS now; the
 * rollup rows stay. Returns true when more may remain (the next tick goes
 * on), false when the round is over (or failed).
 */
static bool gateway_prune_usage(kg_gateway_t *gw, gateway_maint_t *m)
{
    int64_t retention = gw->cfg->usage_retention;
    int64_t before_ms = kg_clock_now_ms() - retention * 1000;
    kg_diag_t diag = {{0}};
    char d[KG_DURATION_STRLEN];
    bool more = true;

    for (int i = 0; i < GATEWAY_PRUNE_BATCHES && more; i++) {
        size_t n = 0;

        if (kg_store_usage_prune(m->store, before_ms, GATEWAY_PRUNE_ROWS, &n,
                                 &diag) != KG_OK) {
            KG_WARN("maintenance: old usage events not deleted: %s", diag.msg);
            return false;
        }
        m->pruned += n;
        more = n == GATEWAY_PRUNE_ROWS;
        gateway_watchdog(gw, m);
    }
    if (!more && m->pruned > 0) {
        KG_INFO("maintenance: deleted %llu usage event%s older than %s "
                "([usage] retention; the hourly totals stay)",
                (unsigned long long)m->pruned, m->pruned == 1 ? "" : "s",
                kg_duration_format(retention, d, sizeof(d)));
        m->pruned = 0;
    }
    return more;
}

/* The expiry purge every purge_interval, then the retention round. */
static void gateway_purge(kg_gateway_t *gw, gateway_maint_t *m, int64_t now)
{
    kg_diag_t diag = {{0}};
    size_t n = 0;

    if (now >= m->next_purge) {
        m->next_purge = now + gw->cfg->server_purge_interval_ms * 1000;
        if (kg_keys_purge_expired(&m->ctx, &n, &diag) != KG_OK) {
            KG_WARN("maintenance: purge of expired keys failed: %s", diag.msg);
        } else if (n > 0) {
            KG_INFO("maintenance: revoked %zu expired key%s", n,
                    n == 1 ? "" : "s");
        }
        gateway_watchdog(gw, m);
    }
    if (gw->cfg->usage_retention > 0 && now >= m->next_prune) {
        m->next_prune = gateway_prune_usage(gw, m)
                            ? now
                            : now + gw->cfg->server_purge_interval_ms * 1000;
    }
}

/* One round of the maintenance thread (see gateway_maintenance). */
/* What /readyz on the client listener reports: can the store be read? */
static void gateway_check_store(kg_gateway_t *gw, kg_store_t *store)
{
    kg_diag_t pd = {{0}};
    bool ok = store != NULL && kg_store_ping(store, &pd) == KG_OK;

    if (!ok && atomic_load(&gw->store_ok)) {
        KG_ERROR("maintenance: the store cannot be read: %s", pd.msg);
    }
    atomic_store(&gw->store_ok, ok);
}

static void gateway_maint_tick(kg_gateway_t *gw, gateway_maint_t *m)
{
    int64_t now = kg_clock_mono_us();
    kg_diag_t diag = {{0}};

    gateway_watchdog(gw, m);
    if (m->store != NULL) {
        gateway_purge(gw, m, now);
    }
    /* CLI changes to keys and workspaces reach the policy caches. */
    kg_policy_refresh(gw->policy);
    gateway_check_store(gw, m->store);
    if (now >= m->next_persist) {
        m->next_persist = now + 1000 * 1000;
        gateway_note_used(gw, &m->ctx, &m->seen);
        /* Reservations in flight, for 'keygate keys show'. */
        if (kg_policy_persist(gw->policy, kg_clock_now_ms(), &diag) != KG_OK) {
            KG_DEBUG("maintenance: reservations not saved: %s", diag.msg);
        }
        gateway_trim_when_idle(gw, &m->peak);
        gateway_update_status(gw, m);
    }
    gateway_watchdog(gw, m);
}

/* Tell at start what the watchdog will do, and warn when a store lock
 * held for the busy timeout could starve it. */
static void gateway_watchdog_init(kg_gateway_t *gw, gateway_maint_t *m)
{
    int64_t usec = (int64_t)kg_notify_watchdog_usec();

    kg_notify_wd_init(&m->wd, usec, kg_clock_mono_us());
    if (usec == 0) {
        return;
    }
    KG_INFO("watchdog: every %lld ms (pinged every %lld ms while the event "
            "loops answer)",
            (long long)usec / 1000, (long long)usec / 2000);
    if (usec < 4 * gw->cfg->store_busy_timeout_ms * 1000) {
        KG_WARN("watchdog: WatchdogSec= (%lld ms) is less than 4 x [store] "
                "busy_timeout (%lld ms): a store locked by another process "
                "may delay the maintenance thread past it",
                (long long)usec / 1000,
                (long long)gw->cfg->store_busy_timeout_ms);
    }
}

/*
 * Periodic work off the request path, every KG_POLICY_REFRESH_MS: the
 * watchdog, the policy caches' revision check; every second the keys'
 * last use, the reservations snapshot, the heap trim and the status line;
 * the expiry purge and the [usage] retention every purge_interval.
 */
static void *gateway_maintenance(void *arg)
{
    kg_gateway_t *gw = arg;
    kg_store_opts_t sopts = {0, (int)gw->cfg->store_busy_timeout_ms, 0};
    kg_diag_t diag = {{0}};
    gateway_maint_t m;

    pthread_setname_np(pthread_self(), "kg-maint");
    memset(&m, 0, sizeof(m));
    m.seen = calloc(KG_KEYCACHE_SEEN_MAX, sizeof(*m.seen));
    if (m.seen == NULL) {
        KG_ERROR("maintenance: out of memory; the keys' last use will not be "
                 "saved");
    }
    if (kg_store_open(kg_config_store_location(gw->cfg), &sopts, &m.store,
                      &diag) != KG_OK) {
        /* The policy keeps its own connection: refresh and persist go on. */
        KG_ERROR("maintenance: %s; expired keys and old usage events will "
                 "not be purged",
                 diag.msg);
        m.store = NULL;
    }
    m.ctx.store = m.store;
    m.ctx.hashkey = gw->hashkey;
    m.ctx.prefix = gw->cfg->keys_prefix;
    m.ctx.max_ttl = gw->cfg->keys_max_ttl;
    m.ctx.default_ttl = gw->cfg->keys_default_ttl;
    m.ctx.actor = "daemon";
    gateway_watchdog_init(gw, &m);
    pthread_mutex_lock(&gw->stop_mu);
    while (!gw->stopping) {
        struct timespec until;

        pthread_mutex_unlock(&gw->stop_mu);
        gateway_maint_tick(gw, &m);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += KG_POLICY_REFRESH_MS * 1000 * 1000;
        if (until.tv_nsec >= 1000 * 1000 * 1000) {
            until.tv_sec++;
            until.tv_nsec -= 1000 * 1000 * 1000;
        }
        pthread_mutex_lock(&gw->stop_mu);
        if (!gw->stopping) {
            pthread_cond_timedwait(&gw->stop_cv, &gw->stop_mu, &until);
        }
    }
    pthread_mutex_unlock(&gw->stop_mu);
    gateway_note_used(gw, &m.ctx, &m.seen);
    free(m.seen);
    kg_store_close(&m.store);
    return NULL;
}

/* [server] threads, or one per core. */
static unsigned gateway_workers(const kg_config_t *cfg)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    if (cfg->server_threads > 0) {
        return (unsigned)cfg->server_threads;
    }
    return cores > 0 ? (unsigned)cores : 1;
}

/* Another process changed keys, rules or credentials: drop what the
 * caches hold of them now rather than at their next poll. */
static void gateway_on_change(void *arg)
{
    kg_gateway_t *gw = arg;

    if (kg_keycache_refresh(gw->keycache) != KG_OK) {
        KG_DEBUG("watch: the key cache could not read the store");
    }
    kg_policy_refresh(gw->policy);
}

static kg_err_t gateway_start(kg_gateway_t *gw, const kg_gateway_opts_t *opts,
                              kg_diag_t *diag)
{
    const kg_config_t *cfg = gw->cfg;
    kg_proxy_opts_t *popts = &gw->proxy_opts;
    kg_err_t rc;

    gw->nworkers_planned = gateway_workers(cfg);
    if (kg_metrics_new(gw->nworkers_planned + (unsigned)cfg->admin_threads,
                       cfg->metrics_per_key, &gw->metrics) != KG_OK) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    rc = kg_keyhash_load(cfg->hash_key_file, &gw->hashkey, diag);
    if (rc == KG_OK && cfg->server_trusted_proxies[0] != '\0') {
        rc = kg_cidr_list_parse(cfg->server_trusted_proxies,
                                &gw->trusted_proxies, diag);
    }
    if (rc == KG_OK) {
        rc = kg_secretbox_load(cfg->secret_key_file, &gw->secretbox, diag);
    }
    if (rc == KG_OK) {
        rc = kg_policy_new(cfg, kg_config_store_location(cfg),
                           (int)cfg->store_busy_timeout_ms, gw->secretbox,
                           &gw->policy, diag);
    }
    if (rc == KG_OK) {
        rc = kg_keycache_new(kg_config_store_location(cfg),
                             (int)cfg->store_busy_timeout_ms, gw->hashkey,
                             1000000, &gw->keycache, diag);
    }
    if (rc == KG_OK) {
        kg_keycache_set_stale_after(gw->keycache, cfg->store_stale_after);
        rc = kg_keycache_start(gw->keycache, KG_KEYCACHE_DEFAULT_INTERVAL_MS);
    }
    if (rc == KG_OK) {
        kg_store_opts_t wopts = {0, (int)cfg->store_busy_timeout_ms, 0};

        /* Changes made by other instances reach the caches at once (a
         * store that notifies: PostgreSQL); on SQLite they poll. */
        rc = kg_watch_start(kg_config_store_location(cfg), &wopts,
                            gateway_on_change, gw, &gw->watch, diag);
    }
    if (rc == KG_OK) {
        /* The journal is a local file: next to [store] path even when
         * the store is a PostgreSQL server. */
        rc = kg_usagedb_start_at(kg_config_store_location(cfg), cfg->store_path,
                                 (int)cfg->store_busy_timeout_ms, 65536,
                                 &gw->usage, diag);
    }
    if (rc != KG_OK) {
        return rc;
    }
    memset(popts, 0, sizeof(*popts));
    popts->connect_timeout_ms = cfg->upstream_connect_timeout_ms;
    popts->first_byte_timeout_ms = cfg->upstream_first_byte_timeout_ms;
    popts->idle_timeout_ms = cfg->upstream_idle_timeout_ms;
    popts->max_response_bytes = (size_t)cfg->upstream_max_response_bytes;
    popts->max_host_connections = (long)cfg->upstream_max_connections_per_host;
    popts->request_log = cfg->server_request_log;
    popts->usage = gw->usage;
    popts->policy = gw->policy;
    atomic_store(&gw->store_ok, true); /* opened just now by the parts */
    rc = kg_http_start(gw, diag);
    if (rc == KG_OK) {
        rc = kg_admin_start(gw, &gw->admin, &gw->admin_port, diag);
    }
    if (rc == KG_OK && opts->port_file != NULL) {
        rc = gateway_write_port(opts->port_file, gw->port, diag);
    }
    if (rc == KG_OK && opts->admin_port_file != NULL) {
        if (gw->admin == NULL) {
            rc = kg_diag_fail(diag, KG_ERR_CONFIG,
                              "--admin-port-file: [admin] listen is off");
        } else {
            rc =
                gateway_write_port(opts->admin_port_file, gw->admin_port, diag);
        }
    }
    if (rc == KG_OK) {
        if (pthread_create(&gw->maintenance, NULL, gateway_maintenance, gw) ==
            0) {
            gw->maintenance_started = true;
        } else {
            rc = kg_diag_fail(diag, KG_ERR_INTERNAL,
                              "cannot start the maintenance thread");
        }
    }
    return rc;
}

/* Stop in reverse order; every part tolerates not having started. */
static void gateway_stop(kg_gateway_t *gw)
{
    pthread_mutex_lock(&gw->stop_mu);
    gw->stopping = true;
    pthread_cond_broadcast(&gw->stop_cv);
    pthread_mutex_unlock(&gw->stop_mu);
    if (gw->maintenance_started) {
        pthread_join(gw->maintenance, NULL);
    }
    kg_admin_stop(&gw->admin);
    kg_http_stop(gw); /* the workers: their daemons and proxies */
    kg_usagedb_stop(&gw->usage);
    kg_watch_stop(&gw->watch);
    if (gw->policy != NULL) {
        kg_diag_t diag = {{0}};

        /* Everything has settled: leave no reservation in the store. */
        if (kg_policy_persist(gw->policy, kg_clock_now_ms(), &diag) != KG_OK) {
            KG_WARN("reservations not cleared: %s", diag.msg);
        }
    }
    kg_keycache_free(&gw->keycache);
    kg_policy_free(&gw->policy);
    kg_cidr_list_free(&gw->trusted_proxies);
    kg_secretbox_free(&gw->secretbox);
    kg_keyhash_free(&gw->hashkey);
    kg_metrics_free(&gw->metrics);
}

/* READY=1 once every listener is up (a no-op outside systemd). */
static void gateway_ready(kg_gateway_t *gw)
{
    char text[KG_NOTIFY_STATUS_MAX + 1];

    gateway_status_text(gw, text, sizeof(text));
    kg_notify_ready(text);
}

/* STOPPING=1 as the drain begins. */
static void gateway_stopping(kg_gateway_t *gw)
{
    char text[KG_NOTIFY_STATUS_MAX + 1];
    long n = atomic_load(&gw->inflight);

    snprintf(text, sizeof(text), "stopping: draining %ld request%s", n,
             n == 1 ? "" : "s");
    kg_notify_stopping(text);
}

/* Drain: stop accepting, let in-flight requests finish until the deadline. */
static void gateway_drain(kg_gateway_t *gw, const sigset_t *set)
{
    int64_t deadline =
        kg_clock_mono_us() + gw->cfg->server_drain_timeout_ms * 1000;
    struct timespec tick = {0, 50 * 1000 * 1000};

    atomic_store(&gw->draining, true);
    kg_http_quiesce(gw);
    KG_INFO("draining %ld request%s (deadline %llds)",
            atomic_load(&gw->inflight),
            atomic_load(&gw->inflight) == 1 ? "" : "s",
            (long long)gw->cfg->server_drain_timeout_ms / 1000);
    while (atomic_load(&gw->inflight) > 0 && kg_clock_mono_us() < deadline) {
        int sig = sigtimedwait(set, NULL, &tick);

        if (sig == SIGTERM || sig == SIGINT) {
            KG_WARN("second signal: exiting now");
            _exit(1);
        }
    }
    if (atomic_load(&gw->inflight) > 0) {
        KG_WARN("drain deadline reached with %ld request%s in flight; "
                "cutting them",
                atomic_load(&gw->inflight),
                atomic_load(&gw->inflight) == 1 ? "" : "s");
        /* Cut every transfer so each suspended connection is resumed with
         * its end (libmicrohttpd must not be stopped while one is still
         * suspended), then give the clients a moment to get it. */
        kg_http_cut_all(gw);
        deadline = kg_clock_mono_us() + GATEWAY_CUT_GRACE_US;
        while (atomic_load(&gw->inflight) > 0 &&
               kg_clock_mono_us() < deadline) {
            int sig = sigtimedwait(set, NULL, &tick);

            if (sig == SIGTERM || sig == SIGINT) {
                KG_WARN("second signal: exiting now");
                _exit(1);
            }
        }
    }
}

kg_err_t kg_gateway_run(const kg_config_t *cfg, const kg_gateway_opts_t *opts,
                        kg_diag_t *diag)
{
    kg_gateway_t gw;
    sigset_t set;
    kg_err_t rc;
    int sig = 0;

    memset(&gw, 0, sizeof(gw));
    gw.cfg = cfg;
    pthread_mutex_init(&gw.stop_mu, NULL);
    pthread_cond_init(&gw.stop_cv, NULL);
    kg_token_random_base62(gw.id_prefix, sizeof(gw.id_prefix) - 1);
    /* Signals are handled in this thread only: block them before any other
     * thread starts so every thread inherits the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    KG_INFO("keygate %s starting (libmicrohttpd %s, libcurl %s, sqlite %s, "
            "libsodium %s, jansson %s)",
            KEYGATE_VERSION, MHD_get_version(),
            curl_version_info(CURLVERSION_NOW)->version, sqlite3_libversion(),
            sodium_version_string(), JANSSON_VERSION);
    for (size_t i = 0; i < cfg->nproviders; i++) {
        if (cfg->providers[i].http_version ==
                KG_HTTP_VERSION_2_PRIOR_KNOWLEDGE &&
            curl_version_info(CURLVERSION_NOW)->version_num < 0x080000) {
            KG_WARN("[provider %s] http_version = 2-prior-knowledge: libcurl "
                    "%s fails every request after the first on such a "
                    "connection (fixed in 8.0.0); use https and 2",
                    cfg->providers[i].name,
                    curl_version_info(CURLVERSION_NOW)->version);
        }
    }
    rc = gateway_start(&gw, opts, diag);
    if (rc != KG_OK) {
        gateway_stop(&gw);
        goto out;
    }
    KG_INFO("listening on %s (port %u), %zu provider%s, %zu model%s",
            cfg->server_listen, (unsigned)gw.port, cfg->nproviders,
            cfg->nproviders == 1 ? "" : "s", cfg->nmodels,
            cfg->nmodels == 1 ? "" : "s");
    if (gw.admin != NULL) {
        KG_INFO("admin API and dashboard on %s (port %u)", cfg->admin_listen,
                (unsigned)gw.admin_port);
    }
    gateway_ready(&gw);
    for (;;) {
        if (sigwait(&set, &sig) != 0) {
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            break;
        }
        if (sig == SIGHUP) {
            KG_WARN("SIGHUP: configuration reload is not supported yet; "
                    "keeping the running configuration");
        }
    }
    KG_INFO("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    gateway_stopping(&gw);
    gateway_drain(&gw, &set);
    gateway_stop(&gw);
    KG_INFO("stopped");
out:
    pthread_cond_destroy(&gw.stop_cv);
    pthread_mutex_destroy(&gw.stop_mu);
    return rc;
}
