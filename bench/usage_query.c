/* keygate-usage-bench: the usage queries' time on a store of 1M events. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keygate/clock.h"
#include "keygate/store.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/usage_query.h"
#include "keygate/usagedb.h"
#include "keygate/workspaces.h"

/*
 * Fills a store through the real usage writer (so usage_events and their
 * usage_rollup rows are what the gateway writes), then times the library
 * calls the CLI and the admin API make: parse, run and JSON of a series
 * query, and pages of events. See bench/README.md ("Usage queries").
 */

#define MAX_KEYS 64

static unsigned long opt_events = 1000000;
static int opt_days = 35;
static int opt_keys = 8;
static int opt_reps = 30;
static const char *opt_store = NULL;
static bool opt_reuse = false;

static char key_ids[MAX_KEYS][KG_TOKEN_ID_LEN + 1];
static char ws_ids[2][KG_TOKEN_ID_LEN + 1];

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This thread's CPU time: less disturbed than the wall clock by the other
 * tenants of a shared machine. */
static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, kg_err_t rc, const kg_diag_t *diag)
{
    fprintf(stderr, "keygate-usage-bench: %s: %s%s%s\n", what, kg_err_name(rc),
            diag && diag->msg[0] ? ": " : "", diag ? diag->msg : "");
    exit(1);
}

static uint64_t rng = 0x9E3779B97F4A7C15u;

static double rnd(void) /* [0, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* Keys 0..n-2 in the default workspace, the last one in "small". */
static void make_keys(kg_store_t *s)
{
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    sqlite3_stmt *st = NULL;

    if (kg_workspace_ensure_default(s, "bench", &diag) != KG_OK ||
        kg_workspace_get(s, "default", &ws, &diag) != KG_OK) {
        die("default workspace", KG_ERR_STORE, &diag);
    }
    memcpy(ws_ids[0], ws.id, sizeof(ws_ids[0]));
    kg_workspace_clear(&ws);
    if (kg_workspace_create(s, "bench", "small", KG_MODE_API_KEYS, &ws,
                            &diag) != KG_OK) {
        die("workspace small", KG_ERR_STORE, &diag);
    }
    memcpy(ws_ids[1], ws.id, sizeof(ws_ids[1]));
    kg_workspace_clear(&ws);
    if (sqlite3_prepare_v2(kg_sqlite_db(s),
                           "INSERT INTO api_keys (id, workspace_id, name, "
                           "prefix, last4, created_at, updated_at) VALUES "
                           "(?, ?, ?, 'kg', 'abcd', 1, 1)",
                           -1, &st, NULL) != SQLITE_OK) {
        die("prepare", KG_ERR_STORE, NULL);
    }
    for (int k = 0; k < opt_keys; k++) {
        snprintf(key_ids[k], sizeof(key_ids[k]), "BenchKey%04d", k % 10000);
        sqlite3_bind_text(st, 1, key_ids[k], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, ws_ids[k == opt_keys - 1], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, key_ids[k], -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            die("key", KG_ERR_STORE, NULL);
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
}

static void load_keys(kg_store_t *s)
{
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};

    for (int k = 0; k < opt_keys; k++) {
        snprintf(key_ids[k], sizeof(key_ids[k]), "BenchKey%04d", k % 10000);
    }
    if (kg_workspace_get(s, "default", &ws, &diag) != KG_OK) {
        die("default workspace", KG_ERR_STORE, &diag);
    }
    memcpy(ws_ids[0], ws.id, sizeof(ws_ids[0]));
    kg_workspace_clear(&ws);
    if (kg_workspace_get(s, "small", &ws, &diag) != KG_OK) {
        die("workspace small", KG_ERR_STORE, &diag);
    }
    memcpy(ws_ids[1], ws.id, sizeof(ws_ids[1]));
    kg_workspace_clear(&ws);
}

/* Event i of opt_events, spread evenly over opt_days up to now. */
static void make_event(kg_usage_event_t *ev, unsigned long i, int64_t t0_ms,
                       int64_t span_ms)
{
    static const char *const models[] = {
        "gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "o1", "rare-model"};
    static const char *const providers[] = {"openai", "openai", "anthropic",
                                            "openai", "azure"};
    int k = (int)(((i * 2654435761u) >> 16) % (unsigned long)opt_keys);
    int m = i % 1000 == 7 ? 4 : (int)((i / 3) % 4); /* 0.1% rare */
    double u = rnd();

    memset(ev, 0, sizeof(*ev));
    snprintf(ev->request_id, sizeof(ev->request_id), "bench-%lu", i);
    snprintf(ev->key_id, sizeof(ev->key_id), "%s", key_ids[k]);
    snprintf(ev->workspace_id, sizeof(ev->workspace_id), "%s",
             ws_ids[k == opt_keys - 1]);
    ev->at_ms =
        t0_ms + (int64_t)((double)span_ms * (double)i / (double)opt_events);
    snprintf(ev->operation, sizeof(ev->operation), "chat");
    snprintf(ev->model, sizeof(ev->model), "%s", models[m]);
    snprintf(ev->provider, sizeof(ev->provider), "%s", providers[m]);
    snprintf(ev->mode, sizeof(ev->mode), "api-keys");
    ev->status = u < 0.02 ? 429 : u < 0.03 ? 500 : 200;
    ev->prompt_tokens = 50 + (int64_t)(rnd() * 2000);
    ev->completion_tokens = (int64_t)(rnd() * 800);
    ev->cached_tokens = u < 0.3 ? ev->prompt_tokens / 2 : 0;
    ev->cost = ev->prompt_tokens * 3 + ev->completion_tokens * 12;
    /* Log-uniform latency from 20 ms to 60 s. */
    ev->latency_ms = (int64_t)(20.0 * __builtin_exp(rnd() * 8.0));
    ev->streamed = u > 0.5;
    ev->ttft_ms = ev->streamed ? ev->latency_ms / 5 : -1;
    snprintf(ev->client_ip, sizeof(ev->client_ip), "10.0.%d.%d", k,
             (int)(i % 250));
    ev->period_start = -1;
}

static void fill(const char *path)
{
    kg_store_opts_t opts = {KG_STORE_CREATE, 5000, 0};
    kg_store_t *s = NULL;
    kg_usagedb_t *w = NULL;
    kg_diag_t diag = {{0}};
    kg_usage_event_t ev;
    int64_t span_ms = (int64_t)opt_days * 86400000;
    int64_t t0_ms = kg_clock_now_ms() - span_ms;
    unsigned long full = 0;
    double t0;
    double dt;
    kg_err_t rc;

    rc = kg_store_open(path, &opts, &s, &diag);
    if (rc != KG_OK) {
        die("store", rc, &diag);
    }
    make_keys(s);
    kg_store_close(&s);
    rc = kg_usagedb_start(path, 5000, KG_USAGEDB_QUEUE_MAX, &w, &diag);
    if (rc != KG_OK) {
        die("usagedb_start", rc, &diag);
    }
    t0 = now_s();
    for (unsigned long i = 0; i < opt_events;) {
        make_event(&ev, i, t0_ms, span_ms);
        rc = kg_usagedb_submit(w, &ev, NULL, NULL);
        if (rc == KG_OK) {
            i++;
        } else if (rc == KG_ERR_UNAVAILABLE) {
            full++;
            usleep(200);
        } else {
            die("usagedb_submit", rc, NULL);
        }
    }
    rc = kg_usagedb_flush(w);
    dt = now_s() - t0;
    if (rc != KG_OK) {
        die("usagedb_flush", rc, NULL);
    }
    kg_usagedb_stop(&w);
    printf("fill: %lu events over %d days, %d keys, through the usage "
           "writer in %.1f s (%.0f events/s)\n",
           opt_events, opt_days, opt_keys, dt, (double)opt_events / dt);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Wall and CPU milliseconds of n runs: the first, the median, p95. */
static void report(const char *name, double *ms, double *cpu, int n,
                   const char *what)
{
    double first = ms[0];
    int p95 = (n * 95) / 100 < n ? (n * 95) / 100 : n - 1;

    qsort(ms, (size_t)n, sizeof(*ms), cmp_double);
    qsort(cpu, (size_t)n, sizeof(*cpu), cmp_double);
    printf("%-40s %7.2f %7.2f %7.2f %7.2f  %s\n", name, first, ms[n / 2],
           ms[p95], cpu[n / 2], what);
}

/* Parse, run, JSON and its text: what the admin API does per request. */
static void time_series(kg_store_t *s, const char *name,
                        const kg_query_param_t *p, size_t n)
{
    double *ms = calloc((size_t)opt_reps, sizeof(*ms));
    double *cpu = calloc((size_t)opt_reps, sizeof(*cpu));
    char what[160] = "";

    for (int r = 0; r < opt_reps; r++) {
        kg_usage_query_t q;
        kg_usage_result_t *res = NULL;
        kg_diag_t diag = {{0}};
        double t = now_s();
        double c = cpu_s();
        json_t *j;
        char *text;
        kg_err_t rc = kg_usage_query_parse(p, n, kg_clock_now(), &q, &diag);

        if (rc == KG_OK) {
            rc = kg_usage_query_run(s, &q, &res, &diag);
        }
        if (rc != KG_OK) {
            die(name, rc, &diag);
        }
        j = kg_usage_result_to_json(res);
        text = json_dumps(j, JSON_COMPACT);
        ms[r] = (now_s() - t) * 1000;
        cpu[r] = (cpu_s() - c) * 1000;
        snprintf(what, sizeof(what),
                 "%zu buckets x %zu groups, %lld requests, %zu bytes of JSON",
                 res->nbuckets, res->ngroups, (long long)res->totals.requests,
                 strlen(text));
        free(text);
        json_decref(j);
        kg_usage_result_free(&res);
    }
    report(name, ms, cpu, opt_reps, what);
    free(ms);
    free(cpu);
}

/* Events pages: the first, or the one after `skip` pages. */
static void time_events(kg_store_t *s, const char *name,
                        const kg_query_param_t *p, size_t n, int skip)
{
    double *ms = calloc((size_t)opt_reps, sizeof(*ms));
    double *cpu = calloc((size_t)opt_reps, sizeof(*cpu));
    char cursor[KG_QUERY_CURSOR_STRLEN] = "";
    kg_query_param_t all[KG_QUERY_PARAMS_MAX];
    char what[160] = "";

    memcpy(all, p, n * sizeof(*p));
    for (int r = -skip; r < opt_reps; r++) {
        kg_usage_events_query_t q;
        kg_usage_record_t *ev = NULL;
        char next[KG_QUERY_CURSOR_STRLEN];
        kg_diag_t diag = {{0}};
        size_t count = 0;
        size_t np = n;
        double t = now_s();
        double c = cpu_s();
        json_t *j;
        char *text;
        kg_err_t rc;

        if (cursor[0] != '\0') {
            all[np++] = (kg_query_param_t){"cursor", cursor};
        }
        rc = kg_usage_events_query_parse(all, np, kg_clock_now(), &q, &diag);
        if (rc == KG_OK) {
            rc = kg_usage_events_page(s, &q, &ev, &count, next, &diag);
        }
        if (rc != KG_OK) {
            die(name, rc, &diag);
        }
        j = kg_usage_events_to_json(ev, count, next);
        text = json_dumps(j, JSON_COMPACT);
        if (r >= 0) {
            ms[r] = (now_s() - t) * 1000;
            cpu[r] = (cpu_s() - c) * 1000;
            snprintf(what, sizeof(what), "%zu events, %zu bytes of JSON", count,
                     strlen(text));
        } else {
            /* Walk to the page to time, then time it again and again. */
            snprintf(cursor, sizeof(cursor), "%s", next);
        }
        free(text);
        json_decref(j);
        free(ev);
    }
    report(name, ms, cpu, opt_reps, what);
    free(ms);
    free(cpu);
}

static void run_queries(const char *path)
{
    kg_store_opts_t opts = {0, 5000, 0};
    kg_store_t *s = NULL;
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_store_open(path, &opts, &s, &diag);
    const char *k0 = key_ids[0];

    if (rc != KG_OK) {
        die("store", rc, &diag);
    }
    load_keys(s);
    printf("\n%d runs of each, in ms: the first run (the store's pages not "
           "yet in\nSQLite's cache), the median and p95 of the wall clock, "
           "the median CPU time.\n\n%-40s %7s %7s %7s %7s\n",
           opt_reps, "query", "first", "median", "p95", "cpu");
    {
        const kg_query_param_t p[] = {
            {"key", k0}, {"from", "30d"}, {"by", "hour"}};
        time_series(s, "usage: one key, 30 days by hour", p, 3);
    }
    {
        const kg_query_param_t p[] = {
            {"key", k0}, {"from", "30d"}, {"by", "day"}};
        time_series(s, "usage: one key, 30 days by day", p, 3);
    }
    {
        const kg_query_param_t p[] = {
            {"key", k0}, {"from", "30d"}, {"by", "day"}, {"group", "model"}};
        time_series(s, "usage: one key, 30 days by day, per model", p, 4);
    }
    {
        const kg_query_param_t p[] = {
            {"from", "30d"}, {"by", "day"}, {"group", "key"}};
        time_series(s, "usage: all keys, 30 days by day, per key", p, 3);
    }
    {
        const kg_query_param_t p[] = {{"from", "30d"}, {"by", "hour"}};
        time_series(s, "usage: all keys, 30 days by hour", p, 2);
    }
    {
        const kg_query_param_t p[] = {
            {"workspace", "small"}, {"from", "30d"}, {"by", "hour"}};
        time_series(s, "usage: one workspace, 30 days by hour", p, 3);
    }
    {
        const kg_query_param_t p[] = {{"key", k0}, {"limit", "100"}};
        time_events(s, "events: one key, first page of 100", p, 2, 0);
        time_events(s, "events: one key, page 50 of 100", p, 2, 49);
    }
    {
        const kg_query_param_t p[] = {
            {"key", k0}, {"from", "30d"}, {"limit", "100"}};
        time_events(s, "events: one key, 30 days, first page", p, 3, 0);
    }
    {
        const kg_query_param_t p[] = {{"limit", "100"}};
        time_events(s, "events: all, first page of 100", p, 1, 0);
    }
    {
        const kg_query_param_t p[] = {{"workspace", "small"}, {"limit", "100"}};
        time_events(s, "events: small workspace, first page", p, 2, 0);
    }
    {
        const kg_query_param_t p[] = {
            {"key", k0}, {"errors", "true"}, {"limit", "100"}};
        time_events(s, "events: one key, errors, first page", p, 3, 0);
    }
    {
        const kg_query_param_t p[] = {{"model", "rare-model"},
                                      {"limit", "100"}};
        time_events(s, "events: rare model (0.1%), first page", p, 2, 0);
    }
    kg_store_close(&s);
}

static void usage_exit(void)
{
    fprintf(stderr,
            "usage: keygate-usage-bench [--events N] [--days D] [--keys K]\n"
            "                           [--reps R] [--store PATH] [--reuse]\n"
            "  --store PATH  the store to fill (default: a new one under "
            "$TMPDIR)\n"
            "  --reuse       time the queries on PATH as it is (filled "
            "before)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    char tmp[256];
    char path[300];
    struct stat st;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--reuse") == 0) {
            opt_reuse = true;
            continue;
        }
        if (v == NULL) {
            usage_exit();
        }
        if (strcmp(a, "--events") == 0) {
            opt_events = strtoul(v, NULL, 10);
        } else if (strcmp(a, "--days") == 0) {
            opt_days = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--keys") == 0) {
            opt_keys = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--reps") == 0) {
            opt_reps = (int)strtol(v, NULL, 10);
        } else if (strcmp(a, "--store") == 0) {
            opt_store = v;
        } else {
            usage_exit();
        }
        i++;
    }
    if (opt_events < 1 || opt_days < 31 || opt_keys < 2 ||
        opt_keys > MAX_KEYS || opt_reps < 1 || (opt_reuse && !opt_store)) {
        usage_exit();
    }
    if (opt_store == NULL) {
        snprintf(tmp, sizeof(tmp), "%s/kg-usage-bench.XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (mkdtemp(tmp) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(path, sizeof(path), "%s/keygate.db", tmp);
        opt_store = path;
    }
    if (!opt_reuse) {
        if (stat(opt_store, &st) == 0) {
            fprintf(stderr,
                    "keygate-usage-bench: %s exists; --reuse it or "
                    "remove it\n",
                    opt_store);
            return 1;
        }
        fill(opt_store);
    }
    printf("store: %s\n", opt_store);
    run_queries(opt_store);
    return 0;
}
