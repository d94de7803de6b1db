/* The gateway daemon: wires config, key cache, usage writer, proxy and HTTP. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "keygate/gateway.h"

#include <curl/curl.h>
#include <gnutls/gnutls.h>
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
#include "keygate/pidfile.h"
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
    kg_generation_t *gen; /* the configuration of this tick (a reference) */
    kg_store_t *store;    /* its own connection, or NULL */
    kg_keys_ctx_t ctx;
    kg_key_seen_t *seen;
    int64_t last_purge;
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

/*
 * What the service manager shows (systemctl status): where keygate
 * listens, the configuration in use (and whether the last reload was
 * refused) and what is in flight, or how the drain goes. g: the current
 * generation as the caller holds it.
 */
static void gateway_status_text(kg_gateway_t *gw, const kg_generation_t *g,
                                char *buf, size_t len)
{
    const kg_config_t *cfg = g->cfg;
    long n = atomic_load(&gw->inflight);
    char addr[KG_LISTEN_HOST_MAX + 16];
    char admin[KG_LISTEN_HOST_MAX + 32] = "";

    if (atomic_load(&gw->draining)) {
        snprintf(buf, len, "draining: %ld request%s in flight", n,
                 n == 1 ? "" : "s");
        return;
    }
    gateway_addr(cfg->server_listen, gw->port, addr, sizeof(addr));
    if (gw->admin != NULL) {
        char a[KG_LISTEN_HOST_MAX + 16];

        gateway_addr(cfg->admin_listen, gw->admin_port, a, sizeof(a));
        snprintf(admin, sizeof(admin), ", admin on %s", a);
    }
    snprintf(buf, len,
             "serving on %s%s; configuration %llu%s; %ld request%s "
             "in flight",
             addr, admin, (unsigned long long)g->number,
             atomic_load(&gw->reload_refused) ? " (the last reload was refused)"
                                              : "",
             n, n == 1 ? "" : "s");
}

/* Send STATUS= when the text has changed since the last one. */
static void gateway_update_status(kg_gateway_t *gw, gateway_maint_t *m)
{
    char text[KG_NOTIFY_STATUS_MAX + 1];

    gateway_status_text(gw, m->gen, text, sizeof(text));
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
    int64_t retention = m->gen->cfg->usage_retention;
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

/*
 * The expiry purge every purge_interval, then the retention round. The
 * interval counts from the last purge, so a reload that shortens it takes
 * effect at once.
 */
static void gateway_purge(kg_gateway_t *gw, gateway_maint_t *m, int64_t now)
{
    const kg_config_t *cfg = m->gen->cfg;
    kg_diag_t diag = {{0}};
    size_t n = 0;

    if (now >= m->last_purge + cfg->server_purge_interval_ms * 1000) {
        m->last_purge = now;
        if (kg_keys_purge_expired(&m->ctx, &n, &diag) != KG_OK) {
            KG_WARN("maintenance: purge of expired keys failed: %s", diag.msg);
        } else if (n > 0) {
            KG_INFO("maintenance: revoked %zu expired key%s", n,
                    n == 1 ? "" : "s");
        }
        gateway_watchdog(gw, m);
    }
    if (cfg->usage_retention > 0 && now >= m->next_prune) {
        m->next_prune = gateway_prune_usage(gw, m)
                            ? now
                            : now + cfg->server_purge_interval_ms * 1000;
    }
}

/* The keys settings of cfg (which must outlive ctx's use of them). */
static void gateway_keys_ctx(kg_keys_ctx_t *ctx, const kg_config_t *cfg)
{
    ctx->prefix = cfg->keys_prefix;
    ctx->max_ttl = cfg->keys_max_ttl;
    ctx->default_ttl = cfg->keys_default_ttl;
}

/* What /readyz on the client listener reports: can the store be read? */
static void gateway_check_store(kg_gateway_t *gw, gateway_maint_t *m)
{
    kg_diag_t diag = {{0}};
    bool ok = m->store != NULL && kg_store_ping(m->store, &diag) == KG_OK;

    if (!ok && atomic_load(&gw->store_ok)) {
        KG_ERROR("maintenance: the store cannot be read: %s", diag.msg);
    }
    atomic_store(&gw->store_ok, ok);
}

/* One round of the maintenance thread (see gateway_maintenance). */
static void gateway_maint_tick(kg_gateway_t *gw, gateway_maint_t *m)
{
    int64_t now = kg_clock_mono_us();
    kg_diag_t diag = {{0}};

    /* Each tick works with the configuration of now (a reload). */
    kg_generation_unref(&m->gen);
    m->gen = kg_gateway_generation(gw);
    gateway_keys_ctx(&m->ctx, m->gen->cfg);
    gateway_watchdog(gw, m);
    if (m->store != NULL) {
        gateway_purge(gw, m, now);
    }
    /* CLI changes to keys and workspaces reach the policy caches. */
    kg_policy_refresh(gw->policy);
    /* Rate windows shared with the other instances on the store. */
    kg_policy_share_rates(gw->policy, kg_clock_now_ms());
    gateway_check_store(gw, m);
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
    if (usec < 4 * m->gen->cfg->store_busy_timeout_ms * 1000) {
        KG_WARN("watchdog: WatchdogSec= (%lld ms) is less than 4 x [store] "
                "busy_timeout (%lld ms): a store locked by another process "
                "may delay the maintenance thread past it",
                (long long)usec / 1000,
                (long long)m->gen->cfg->store_busy_timeout_ms);
    }
}

/*
 * Periodic work off the request path, every KG_POLICY_REFRESH_MS: the
 * watchdog, the policy caches' revision check, a round of the shared rate
 * windows; every second the keys' last use, the reservations snapshot,
 * the heap trim and the status line; the expiry purge and the [usage]
 * retention every purge_interval.
 */
static void *gateway_maintenance(void *arg)
{
    kg_gateway_t *gw = arg;
    kg_store_opts_t sopts = {0, 0, 0, NULL};
    kg_diag_t diag = {{0}};
    gateway_maint_t m;

    pthread_setname_np(pthread_self(), "kg-maint");
    memset(&m, 0, sizeof(m));
    m.gen = kg_gateway_generation(gw);
    m.last_purge = INT64_MIN / 2;
    sopts.busy_timeout_ms = (int)m.gen->cfg->store_busy_timeout_ms;
    m.seen = calloc(KG_KEYCACHE_SEEN_MAX, sizeof(*m.seen));
    if (m.seen == NULL) {
        KG_ERROR("maintenance: out of memory; the keys' last use will not be "
                 "saved");
    }
    if (kg_store_open(kg_config_store_location(m.gen->cfg), &sopts, &m.store,
                      &diag) != KG_OK) {
        /* The policy keeps its own connection: refresh and persist go on. */
        KG_ERROR("maintenance: %s; expired keys and old usage events will "
                 "not be purged",
                 diag.msg);
        m.store = NULL;
    }
    m.ctx.store = m.store;
    m.ctx.hashkey = gw->hashkey;
    gateway_keys_ctx(&m.ctx, m.gen->cfg);
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
    kg_generation_unref(&m.gen);
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

kg_generation_t *kg_gateway_generation(kg_gateway_t *gw)
{
    kg_generation_t *g;

    pthread_mutex_lock(&gw->gen_mu);
    g = kg_generation_ref(gw->gen);
    pthread_mutex_unlock(&gw->gen_mu);
    return g;
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
    const kg_config_t *cfg = gw->gen->cfg; /* before any reload */
    kg_proxy_opts_t *popts = &gw->proxy_opts;
    kg_err_t rc = KG_OK;

    gw->nworkers_planned = gateway_workers(cfg);
    if (kg_metrics_new(gw->nworkers_planned + (unsigned)cfg->admin_threads,
                       cfg->metrics_per_key, &gw->metrics) != KG_OK) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    if (gw->gen->tls != NULL || gw->gen->admin_tls != NULL) {
        rc = kg_tls_check_support(diag);
    }
    if (rc == KG_OK) {
        rc = kg_config_check_admin_exposure(cfg, diag);
    }
    if (rc == KG_OK) {
        rc = kg_keyhash_load(cfg->hash_key_file, &gw->hashkey, diag);
    }
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
        kg_store_opts_t wopts = {0, (int)cfg->store_busy_timeout_ms, 0, NULL};

        /* Changes made by other instances reach the caches at once (a
         * store that notifies: PostgreSQL); on SQLite they poll. */
        rc = kg_watch_start(kg_config_store_location(cfg), &wopts,
                            gateway_on_change, gw, &gw->watch, diag);
    }
    if (rc == KG_OK) {
        /* The journal is a local file: next to [store] path even when
         * the store is a PostgreSQL server. */
        rc = kg_usagedb_start_at(kg_config_store_location(cfg), cfg->store_path,
                                 (int)cfg->store_busy_timeout_ms,
                                 (size_t)cfg->store_usage_queue, &gw->usage,
                                 diag);
    }
    if (rc != KG_OK) {
        return rc;
    }
    memset(popts, 0, sizeof(*popts));
    popts->max_host_connections = (long)cfg->upstream_max_connections_per_host;
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
    if (rc == KG_OK && cfg->server_pid_file[0] != '\0') {
        rc = kg_pidfile_write(cfg->server_pid_file, diag);
        gw->pid_file_written = rc == KG_OK;
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

        /* Everything has settled: the others count this instance's final
         * rate windows, and no reservation is left in the store. */
        kg_policy_share_rates(gw->policy, kg_clock_now_ms());
        if (kg_policy_persist(gw->policy, kg_clock_now_ms(), &diag) != KG_OK) {
            KG_WARN("reservations not cleared: %s", diag.msg);
        }
        kg_policy_stop(gw->policy);
    }
    if (gw->pid_file_written) {
        kg_pidfile_remove(gw->gen->cfg->server_pid_file);
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

    gateway_status_text(gw, gw->gen, text, sizeof(text));
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

/* Wait up to deadline (kg_clock_mono_us) for the requests in flight; a
 * second SIGTERM or SIGINT exits at once. */
static void gateway_wait_inflight(kg_gateway_t *gw, const sigset_t *set,
                                  int64_t deadline)
{
    struct timespec tick = {0, 50 * 1000 * 1000};

    while (atomic_load(&gw->inflight) > 0 && kg_clock_mono_us() < deadline) {
        int sig = sigtimedwait(set, NULL, &tick);

        if (sig == SIGTERM || sig == SIGINT) {
            KG_WARN("second signal: exiting now");
            _exit(1);
        }
    }
}

/* Drain: stop accepting, let in-flight requests finish until the deadline. */
static void gateway_drain(kg_gateway_t *gw, const sigset_t *set)
{
    int64_t drain_ms = gw->gen->cfg->server_drain_timeout_ms;

    atomic_store(&gw->draining, true);
    kg_http_quiesce(gw);
    KG_INFO(
        "draining %ld request%s (deadline %llds)", atomic_load(&gw->inflight),
        atomic_load(&gw->inflight) == 1 ? "" : "s", (long long)drain_ms / 1000);
    gateway_wait_inflight(gw, set, kg_clock_mono_us() + drain_ms * 1000);
    if (atomic_load(&gw->inflight) > 0) {
        KG_WARN("drain deadline reached with %ld request%s in flight; "
                "cutting them",
                atomic_load(&gw->inflight),
                atomic_load(&gw->inflight) == 1 ? "" : "s");
        /* Cut every transfer so each suspended connection is resumed with
         * its end (libmicrohttpd must not be stopped while one is still
         * suspended), then give the clients a moment to get it. */
        kg_http_cut_all(gw);
        gateway_wait_inflight(gw, set,
                              kg_clock_mono_us() + GATEWAY_CUT_GRACE_US);
    }
}

/* Warnings about a configuration that loads but will not work well. */
static void gateway_warn_config(const kg_config_t *cfg)
{
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
}

/* Log a listener's certificate, warning when it expires within 14 days. */
static void gateway_note_tls(const char *what, const kg_tls_creds_t *c)
{
    char text[KG_TLS_DESCRIBE_MAX];
    int64_t expires = -1;

    if (c == NULL) {
        return;
    }
    kg_tls_creds_describe(c, text, sizeof(text), &expires);
    if (expires >= 0 && expires < kg_clock_now() + 14 * 86400) {
        KG_WARN("%s TLS certificate %s", what, text);
    } else {
        KG_INFO("%s TLS certificate %s", what, text);
    }
}

/* The [log] settings of cfg: level and format now, the file if it moved. */
static kg_err_t gateway_apply_log(const kg_config_t *cfg,
                                  const kg_config_t *running, kg_diag_t *diag)
{
    kg_err_t rc = KG_OK;

    if (running == NULL || strcmp(cfg->log_file, running->log_file) != 0) {
        rc = kg_log_open(cfg->log_file, diag);
    }
    if (rc == KG_OK) {
        kg_log_set_level(cfg->log_level);
        kg_log_set_format(cfg->log_format);
    }
    return rc;
}

/* A RESTART setting changed in the file: say so; it is not applied. */
static void gateway_restart_changed(void *ud, const kg_setting_t *s,
                                    const char *running, const char *next)
{
    (void)ud;
    KG_WARN("reload: [%s] %s changed from %s to %s; it takes effect only "
            "after a restart, keeping %s",
            s->section, s->name, running, next, running);
}

/* Load the running file again as the next generation (*out new), its
 * RESTART settings put back; KG_OK, or the error with diag. */
static kg_err_t gateway_load_next(kg_gateway_t *gw, kg_generation_t **out,
                                  kg_diag_t *diag)
{
    const kg_config_t *running = gw->gen->cfg;
    kg_config_t *cfg = NULL;
    kg_err_t rc;

    *out = NULL;
    if (running->path == NULL) {
        return kg_diag_fail(diag, KG_ERR_CONFIG,
                            "the daemon started without a configuration file");
    }
    rc = kg_config_load(running->path, &cfg, diag);
    if (rc == KG_OK) {
        rc = kg_config_keep_restart(cfg, running, gateway_restart_changed, gw);
        if (rc != KG_OK) {
            rc = kg_diag_fail(diag, rc, "out of memory");
        }
    }
    if (rc == KG_OK) {
        rc = kg_generation_new(&cfg, gw->gen->number + 1, out, diag);
    }
    if (rc == KG_OK) {
        rc = gateway_apply_log((*out)->cfg, running, diag);
    }
    if (rc != KG_OK) {
        kg_config_free(&cfg);
        kg_generation_unref(out);
    }
    return rc;
}

/*
 * SIGHUP: read the file again, off the request path (this is the main
 * thread, which only waits for signals). A file that does not load, or a
 * certificate that does not, is refused and the running configuration
 * kept; otherwise its reloadable settings become the new generation,
 * which every worker hands to the requests that start from now, while
 * requests in flight finish on the one they started with. The service
 * manager hears RELOADING=1, then READY=1 either way, each with a STATUS=
 * line saying how it went.
 */
static void gateway_reload(kg_gateway_t *gw)
{
    char text[KG_NOTIFY_STATUS_MAX + 1];
    kg_generation_t *next = NULL;
    kg_generation_t *old;
    kg_diag_t diag = {{0}};

    snprintf(text, sizeof(text), "reloading %s",
             gw->gen->cfg->path ? gw->gen->cfg->path : "(no file)");
    kg_notify_reloading(text);
    KG_INFO("SIGHUP: %s", text);
    if (gateway_load_next(gw, &next, &diag) != KG_OK) {
        atomic_fetch_add(&gw->reloads_failed, 1);
        atomic_store(&gw->reload_refused, true);
        KG_ERROR("reload refused: %s; keeping configuration %llu", diag.msg,
                 (unsigned long long)gw->gen->number);
        /* Cut to fit: the log has the whole message. */
        snprintf(text, sizeof(text),
                 "reload refused, keeping configuration %llu: %.140s",
                 (unsigned long long)gw->gen->number, diag.msg);
        kg_notify_ready(text);
        return;
    }
    gateway_warn_config(next->cfg);
    kg_policy_set_config(gw->policy, next->cfg);
    /* The event loops first: once the admin listener and the maintenance
     * thread see the new generation, so does every new client request. */
    if (!kg_http_publish(gw, next)) {
        KG_WARN("reload: an event loop has not switched to configuration "
                "%llu within %d ms; it will at its next wake-up",
                (unsigned long long)next->number, KG_HTTP_PUBLISH_WAIT_MS);
    }
    pthread_mutex_lock(&gw->gen_mu);
    old = gw->gen;
    gw->gen = next;
    pthread_mutex_unlock(&gw->gen_mu);
    atomic_fetch_add(&gw->reloads_ok, 1);
    atomic_store(&gw->reload_refused, false);
    KG_INFO("reload: configuration %llu in use for new requests (%zu "
            "provider%s, %zu model%s)",
            (unsigned long long)next->number, next->cfg->nproviders,
            next->cfg->nproviders == 1 ? "" : "s", next->cfg->nmodels,
            next->cfg->nmodels == 1 ? "" : "s");
    gateway_note_tls("[server]", next->tls);
    gateway_note_tls("[admin]", next->admin_tls);
    /* The workers and requests still on it hold their own references. */
    kg_generation_unref(&old);
    gateway_status_text(gw, gw->gen, text, sizeof(text));
    kg_notify_ready(text);
}

/* SIGUSR1: logrotate moved the log file away; open it again. */
static void gateway_reopen_log(void)
{
    kg_diag_t diag = {{0}};

    if (kg_log_reopen(&diag) != KG_OK) {
        KG_ERROR("SIGUSR1: %s", diag.msg);
    } else {
        KG_INFO("SIGUSR1: log file reopened");
    }
}

/* The signals the main thread takes; blocked in every thread. */
static void gateway_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGPIPE);
}

/* Wait for signals until SIGTERM or SIGINT, which it returns. */
static int gateway_wait(kg_gateway_t *gw, const sigset_t *set)
{
    int sig = 0;

    for (;;) {
        if (sigwait(set, &sig) != 0) {
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            return sig;
        }
        if (sig == SIGHUP) {
            gateway_reload(gw);
        } else if (sig == SIGUSR1) {
            gateway_reopen_log();
        }
    }
}

kg_err_t kg_gateway_run(kg_config_t **cfgp, const kg_gateway_opts_t *opts,
                        kg_diag_t *diag)
{
    kg_gateway_t gw;
    const kg_config_t *cfg;
    char libpq[KG_STORE_LIBPQ_VERSION_LEN];
    sigset_t set;
    kg_err_t rc;
    int sig = 0;

    memset(&gw, 0, sizeof(gw));
    pthread_mutex_init(&gw.stop_mu, NULL);
    pthread_cond_init(&gw.stop_cv, NULL);
    pthread_mutex_init(&gw.gen_mu, NULL);
    kg_token_random_base62(gw.id_prefix, sizeof(gw.id_prefix) - 1);
    /* Signals are handled in this thread only: block them before any other
     * thread starts so every thread inherits the mask. */
    gateway_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    rc = gateway_apply_log(*cfgp, NULL, diag);
    if (rc == KG_OK) {
        rc = kg_generation_new(cfgp, 1, &gw.gen, diag);
    }
    if (rc != KG_OK) {
        kg_config_free(cfgp);
        goto out;
    }
    cfg = gw.gen->cfg;
    KG_INFO("keygate %s starting (libmicrohttpd %s, libcurl %s, sqlite %s, "
            "libpq %s, libsodium %s, jansson %s, gnutls %s)",
            KEYGATE_VERSION, MHD_get_version(),
            curl_version_info(CURLVERSION_NOW)->version, sqlite3_libversion(),
            kg_store_libpq_version(libpq, sizeof(libpq)),
            sodium_version_string(), JANSSON_VERSION,
            gnutls_check_version(NULL));
    gateway_warn_config(cfg);
    rc = gateway_start(&gw, opts, diag);
    if (rc != KG_OK) {
        gateway_stop(&gw);
        goto out;
    }
    KG_INFO("listening on %s (port %u%s), %zu provider%s, %zu model%s",
            cfg->server_listen, (unsigned)gw.port, gw.gen->tls ? ", TLS" : "",
            cfg->nproviders, cfg->nproviders == 1 ? "" : "s", cfg->nmodels,
            cfg->nmodels == 1 ? "" : "s");
    gateway_note_tls("[server]", gw.gen->tls);
    if (gw.admin != NULL) {
        KG_INFO("admin API and dashboard on %s (port %u%s)", cfg->admin_listen,
                (unsigned)gw.admin_port, gw.gen->admin_tls ? ", TLS" : "");
        gateway_note_tls("[admin]", gw.gen->admin_tls);
    }
    gateway_ready(&gw);
    sig = gateway_wait(&gw, &set);
    KG_INFO("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    gateway_stopping(&gw);
    gateway_drain(&gw, &set);
    gateway_stop(&gw);
    KG_INFO("stopped");
out:
    kg_generation_unref(&gw.gen);
    pthread_mutex_destroy(&gw.gen_mu);
    pthread_cond_destroy(&gw.stop_cv);
    pthread_mutex_destroy(&gw.stop_mu);
    return rc;
}
