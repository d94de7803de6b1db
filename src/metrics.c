/* Metrics: counters kept per event loop, summed into Prometheus text. */
#include "keygate/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

/* Histogram upper bounds in microseconds; the last bucket is +Inf. */
static const int64_t metrics_bounds_us[KG_METRICS_BUCKETS] = {
    1000,    5000,    10000,   25000,    50000,    100000,   250000,    500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000, 120000000,
};

/* Buckets of the owner's hash index of a shard's series. */
#define METRICS_INDEX 1024
/* Labels of one series at most. */
#define METRICS_LABELS 5

typedef _Atomic uint64_t metrics_ctr_t;

/* The families a series belongs to. */
typedef enum metrics_family {
    FAM_REQUESTS, /* route, status class, model, provider [, key] */
    FAM_DURATION, /* route */
    FAM_UPSTREAM, /* provider */
    FAM_TTFT,     /* provider */
} metrics_family_t;

typedef struct metrics_hist {
    metrics_ctr_t bucket[KG_METRICS_BUCKETS + 1];
    metrics_ctr_t count;
    metrics_ctr_t sum_us;
} metrics_hist_t;

/* Counters of the requests family. */
enum { V_REQUESTS, V_PROMPT, V_COMPLETION, V_CACHED, V_COST, V__COUNT };

/*
 * One label set in one shard. The shard's thread creates it and links it
 * at the head of the shard's list with a release store; it is never
 * removed while the metrics live, so a scraper walking the list (acquire)
 * sees complete series.
 */
typedef struct metrics_series {
    struct metrics_series *next;  /* the published list */
    struct metrics_series *hnext; /* the owner's index chain */
    uint64_t hash;
    metrics_family_t fam;
    char labels[METRICS_LABELS][KG_METRICS_LABEL_MAX + 1];
    metrics_ctr_t v[V__COUNT];
    metrics_hist_t h;
} metrics_series_t;

struct kg_metrics_shard {
    _Alignas(64) _Atomic(metrics_series_t *) head;
    metrics_series_t *index[METRICS_INDEX]; /* owner only */
    size_t nseries;                         /* owner only */
    metrics_ctr_t auth[KG_METRICS_AUTH__COUNT];
    metrics_ctr_t refused[KG_METRICS_REFUSED__COUNT];
    _Atomic int64_t streams;
    bool per_key; /* keep the key id label (read-only after creation) */
};

struct kg_metrics {
    kg_metrics_shard_t *shards;
    unsigned nshards;
    bool per_key;
};

/* The shard's thread is the only writer: a plain add, published relaxed. */
static void ctr_add(metrics_ctr_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static uint64_t ctr_get(metrics_ctr_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

kg_err_t kg_metrics_new(unsigned nshards, bool per_key, kg_metrics_t **out)
{
    kg_metrics_t *m = calloc(1, sizeof(*m));

    *out = NULL;
    if (m == NULL) {
        return KG_ERR_NOMEM;
    }
    m->shards = aligned_alloc(64, sizeof(*m->shards) * (nshards ? nshards : 1));
    if (m->shards == NULL) {
        free(m);
        return KG_ERR_NOMEM;
    }
    memset(m->shards, 0, sizeof(*m->shards) * (nshards ? nshards : 1));
    m->nshards = nshards;
    m->per_key = per_key;
    for (unsigned i = 0; i < nshards; i++) {
        m->shards[i].per_key = per_key;
    }
    *out = m;
    return KG_OK;
}

void kg_metrics_free(kg_metrics_t **pm)
{
    kg_metrics_t *m;

    if (pm == NULL || *pm == NULL) {
        return;
    }
    m = *pm;
    for (unsigned i = 0; i < m->nshards; i++) {
        metrics_series_t *s = atomic_load(&m->shards[i].head);

        while (s != NULL) {
            metrics_series_t *next = s->next;

            free(s);
            s = next;
        }
    }
    free(m->shards);
    free(m);
    *pm = NULL;
}

kg_metrics_shard_t *kg_metrics_shard(kg_metrics_t *m, unsigned i)
{
    return m != NULL && i < m->nshards ? &m->shards[i] : NULL;
}

size_t kg_metrics_bucket(int64_t us)
{
    size_t i = 0;

    while (i < KG_METRICS_BUCKETS && us > metrics_bounds_us[i]) {
        i++;
    }
    return i;
}

static void hist_add(metrics_hist_t *h, int64_t us)
{
    if (us < 0) {
        return;
    }
    ctr_add(&h->bucket[kg_metrics_bucket(us)], 1);
    ctr_add(&h->count, 1);
    ctr_add(&h->sum_us, (uint64_t)us);
}

/* FNV-1a over the family and the label values. */
static uint64_t series_hash(metrics_family_t fam,
                            const char *const labels[METRICS_LABELS])
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)fam;

    for (size_t i = 0; i < METRICS_LABELS; i++) {
        for (const char *p = labels[i]; p && *p; p++) {
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        }
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h;
}

static bool series_is(const metrics_series_t *s, metrics_family_t fam,
                      const char *const labels[METRICS_LABELS])
{
    if (s->fam != fam) {
        return false;
    }
    for (size_t i = 0; i < METRICS_LABELS; i++) {
        if (strncmp(s->labels[i], labels[i] ? labels[i] : "",
                    KG_METRICS_LABEL_MAX) != 0) {
            return false;
        }
    }
    return true;
}

/*
 * The shard's series for fam and labels, made on first use (owner only).
 * Past KG_METRICS_SERIES_MAX new label sets fold into one whose labels
 * are "other"; NULL only when memory is out.
 */
static metrics_series_t *series_get(kg_metrics_shard_t *sh,
                                    metrics_family_t fam,
                                    const char *const labels[METRICS_LABELS])
{
    static const char *const other[METRICS_LABELS] = {"other", "other", "other",
                                                      "other", ""};
    uint64_t h = series_hash(fam, labels);
    metrics_series_t *s;

    for (s = sh->index[h % METRICS_INDEX]; s != NULL; s = s->hnext) {
        if (s->hash == h && series_is(s, fam, labels)) {
            return s;
        }
    }
    if (sh->nseries >= KG_METRICS_SERIES_MAX && labels != other) {
        return series_get(sh, fam, other);
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->hash = h;
    s->fam = fam;
    for (size_t i = 0; i < METRICS_LABELS; i++) {
        snprintf(s->labels[i], sizeof(s->labels[i]), "%s",
                 labels[i] ? labels[i] : "");
    }
    s->hnext = sh->index[h % METRICS_INDEX];
    sh->index[h % METRICS_INDEX] = s;
    s->next = atomic_load_explicit(&sh->head, memory_order_relaxed);
    atomic_store_explicit(&sh->head, s, memory_order_release);
    sh->nseries++;
    return s;
}

void kg_metrics_record(kg_metrics_shard_t *sh, const kg_request_summary_t *r)
{
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    const char *cls = r->status >= 100 && r->status < 600
                          ? classes[r->status / 100 - 1]
                          : "5xx";
    const char *route = r->route && *r->route ? r->route : "other";
    const char *model = r->model ? r->model : "";
    const char *provider = r->provider ? r->provider : "";
    const char *labels[METRICS_LABELS] = {route, cls, model, provider, ""};
    metrics_series_t *s;

    if (sh == NULL) {
        return;
    }
    if (sh->per_key && r->key_id != NULL) {
        labels[4] = r->key_id;
    }
    s = series_get(sh, FAM_REQUESTS, labels);
    if (s != NULL) {
        ctr_add(&s->v[V_REQUESTS], 1);
        ctr_add(&s->v[V_PROMPT],
                (uint64_t)(r->prompt_tokens > 0 ? r->prompt_tokens : 0));
        ctr_add(
            &s->v[V_COMPLETION],
            (uint64_t)(r->completion_tokens > 0 ? r->completion_tokens : 0));
        ctr_add(&s->v[V_CACHED],
                (uint64_t)(r->cached_tokens > 0 ? r->cached_tokens : 0));
        ctr_add(&s->v[V_COST], (uint64_t)(r->cost > 0 ? r->cost : 0));
    }
    labels[1] = labels[2] = labels[3] = labels[4] = "";
    s = series_get(sh, FAM_DURATION, labels);
    if (s != NULL) {
        hist_add(&s->h, r->duration_us);
    }
    if (provider[0] == '\0') {
        return;
    }
    labels[0] = provider;
    if (r->upstream_us >= 0) {
        s = series_get(sh, FAM_UPSTREAM, labels);
        if (s != NULL) {
            hist_add(&s->h, r->upstream_us);
        }
    }
    if (r->ttft_us >= 0) {
        s = series_get(sh, FAM_TTFT, labels);
        if (s != NULL) {
            hist_add(&s->h, r->ttft_us);
        }
    }
}

void kg_metrics_auth_failure(kg_metrics_shard_t *sh, kg_metrics_auth_t why)
{
    if (sh != NULL && (int)why >= 0 && why < KG_METRICS_AUTH__COUNT) {
        ctr_add(&sh->auth[why], 1);
    }
}

void kg_metrics_refused(kg_metrics_shard_t *sh, kg_metrics_refusal_t why)
{
    if (sh != NULL && (int)why >= 0 && why < KG_METRICS_REFUSED__COUNT) {
        ctr_add(&sh->refused[why], 1);
    }
}

void kg_metrics_stream(kg_metrics_shard_t *sh, int delta)
{
    if (sh != NULL) {
        atomic_store_explicit(
            &sh->streams,
            atomic_load_explicit(&sh->streams, memory_order_relaxed) + delta,
            memory_order_relaxed);
    }
}

/* ---- rendering --------------------------------------------------------- */

/* A series summed over the shards, keyed by family and labels. */
typedef struct metrics_sum {
    char key[1 + METRICS_LABELS * (KG_METRICS_LABEL_MAX + 1)];
    metrics_family_t fam;
    const char *labels[METRICS_LABELS]; /* into the first shard's series */
    uint64_t v[V__COUNT];
    uint64_t bucket[KG_METRICS_BUCKETS + 1];
    uint64_t count;
    uint64_t sum_us;
    UT_hash_handle hh;
} metrics_sum_t;

typedef struct metrics_out {
    kg_buf_t *buf;
    kg_err_t rc;
} metrics_out_t;

__attribute__((format(printf, 2, 3))) static void
out_printf(metrics_out_t *o, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    if (o->rc != KG_OK) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        o->rc = KG_ERR_INTERNAL;
        return;
    }
    if (kg_buf_append(o->buf, line, (size_t)n) != KG_OK) {
        o->rc = KG_ERR_NOMEM;
    }
}

/* A label value with \, " and newline escaped (exposition format). */
static const char *escape(const char *s, char *buf, size_t len)
{
    size_t j = 0;

    for (; *s != '\0' && j + 3 < len; s++) {
        if (*s == '\\' || *s == '"') {
            buf[j++] = '\\';
            buf[j++] = *s;
        } else if (*s == '\n') {
            buf[j++] = '\\';
            buf[j++] = 'n';
        } else {
            buf[j++] = *s;
        }
    }
    buf[j] = '\0';
    return buf;
}

static int sum_cmp(metrics_sum_t *a, metrics_sum_t *b)
{
    return strcmp(a->key, b->key);
}

/* Sum every shard's series into a table (new; free with sums_free). */
static kg_err_t sums_collect(kg_metrics_t *m, metrics_sum_t **table)
{
    for (unsigned i = 0; i < m->nshards; i++) {
        metrics_series_t *s =
            atomic_load_explicit(&m->shards[i].head, memory_order_acquire);

        for (; s != NULL; s = s->next) {
            metrics_sum_t *e = NULL;
            char key[sizeof(e->key)];
            size_t used = 0;

            key[used++] = (char)('0' + s->fam);
            for (size_t l = 0; l < METRICS_LABELS; l++) {
                size_t n = strlen(s->labels[l]);

                memcpy(key + used, s->labels[l], n);
                used += n;
                key[used++] = '\x1f';
            }
            key[used] = '\0';
            HASH_FIND_STR(*table, key, e);
            if (e == NULL) {
                e = calloc(1, sizeof(*e));
                if (e == NULL) {
                    return KG_ERR_NOMEM;
                }
                memcpy(e->key, key, used + 1);
                e->fam = s->fam;
                for (size_t l = 0; l < METRICS_LABELS; l++) {
                    e->labels[l] = s->labels[l];
                }
                HASH_ADD_STR(*table, key, e);
            }
            for (size_t v = 0; v < V__COUNT; v++) {
                e->v[v] += ctr_get(&s->v[v]);
            }
            for (size_t b = 0; b <= KG_METRICS_BUCKETS; b++) {
                e->bucket[b] += ctr_get(&s->h.bucket[b]);
            }
            e->count += ctr_get(&s->h.count);
            e->sum_us += ctr_get(&s->h.sum_us);
        }
    }
    HASH_SORT(*table, sum_cmp);
    return KG_OK;
}

static void sums_free(metrics_sum_t **table)
{
    metrics_sum_t *e;
    metrics_sum_t *tmp;

    HASH_ITER(hh, *table, e, tmp)
    {
        HASH_DEL(*table, e);
        free(e);
    }
}

/* The "{route=...,...}" of a requests series, with the key when kept. */
static const char *req_labels(const kg_metrics_t *m, const metrics_sum_t *e,
                              const char *extra, char *buf, size_t len)
{
    char v[4][2 * KG_METRICS_LABEL_MAX + 1];
    char k[2 * KG_METRICS_LABEL_MAX + 1];
    int n;

    n = snprintf(buf, len,
                 "route=\"%s\",status_class=\"%s\",model=\"%s\","
                 "provider=\"%s\"",
                 escape(e->labels[0], v[0], sizeof(v[0])),
                 escape(e->labels[1], v[1], sizeof(v[1])),
                 escape(e->labels[2], v[2], sizeof(v[2])),
                 escape(e->labels[3], v[3], sizeof(v[3])));
    if (m->per_key && n > 0 && (size_t)n < len) {
        n += snprintf(buf + n, len - (size_t)n, ",key=\"%s\"",
                      escape(e->labels[4], k, sizeof(k)));
    }
    if (extra != NULL && n > 0 && (size_t)n < len) {
        snprintf(buf + n, len - (size_t)n, ",%s", extra);
    }
    return buf;
}

static void render_requests(kg_metrics_t *m, metrics_sum_t *table,
                            metrics_out_t *o)
{
    static const struct {
        const char *kind;
        int v;
    } tokens[] = {{"prompt", V_PROMPT},
                  {"completion", V_COMPLETION},
                  {"cached", V_CACHED}};
    char l[768];
    metrics_sum_t *e;

    out_printf(o, "# HELP keygate_requests_total Requests answered, by route, "
                  "status class, model and provider.\n"
                  "# TYPE keygate_requests_total counter\n");
    for (e = table; e != NULL; e = e->hh.next) {
        if (e->fam == FAM_REQUESTS) {
            out_printf(o, "keygate_requests_total{%s} %" PRIu64 "\n",
                       req_labels(m, e, NULL, l, sizeof(l)), e->v[V_REQUESTS]);
        }
    }
    out_printf(o, "# HELP keygate_tokens_total Tokens the providers reported, "
                  "by kind.\n# TYPE keygate_tokens_total counter\n");
    for (e = table; e != NULL; e = e->hh.next) {
        for (size_t t = 0; e->fam == FAM_REQUESTS && t < 3; t++) {
            char kind[32];

            snprintf(kind, sizeof(kind), "kind=\"%s\"", tokens[t].kind);
            out_printf(o, "keygate_tokens_total{%s} %" PRIu64 "\n",
                       req_labels(m, e, kind, l, sizeof(l)), e->v[tokens[t].v]);
        }
    }
    out_printf(o, "# HELP keygate_cost_usd_total Cost charged, in USD.\n"
                  "# TYPE keygate_cost_usd_total counter\n");
    for (e = table; e != NULL; e = e->hh.next) {
        if (e->fam == FAM_REQUESTS) {
            out_printf(o,
                       "keygate_cost_usd_total{%s} %" PRIu64 ".%06" PRIu64 "\n",
                       req_labels(m, e, NULL, l, sizeof(l)),
                       e->v[V_COST] / 1000000, e->v[V_COST] % 1000000);
        }
    }
}

/* One histogram's lines: buckets (cumulative), sum and count. */
static void render_hist(metrics_out_t *o, const char *name, const char *label,
                        const char *value, const uint64_t *bucket,
                        uint64_t count, uint64_t sum_us)
{
    char v[2 * KG_METRICS_LABEL_MAX + 1];
    char lbl[2 * KG_METRICS_LABEL_MAX + 40];
    uint64_t cum = 0;

    lbl[0] = '\0';
    if (label != NULL) {
        snprintf(lbl, sizeof(lbl), "%s=\"%s\",", label,
                 escape(value, v, sizeof(v)));
    }
    for (size_t b = 0; b <= KG_METRICS_BUCKETS; b++) {
        char le[32];

        cum += bucket[b];
        if (b == KG_METRICS_BUCKETS) {
            snprintf(le, sizeof(le), "+Inf");
        } else {
            snprintf(le, sizeof(le), "%g", (double)metrics_bounds_us[b] / 1e6);
        }
        out_printf(o, "%s_bucket{%sle=\"%s\"} %" PRIu64 "\n", name, lbl, le,
                   cum);
    }
    lbl[strlen(lbl) ? strlen(lbl) - 1 : 0] = '\0';
    out_printf(o, "%s_sum%s%s%s %" PRIu64 ".%06" PRIu64 "\n", name,
               lbl[0] ? "{" : "", lbl, lbl[0] ? "}" : "", sum_us / 1000000,
               sum_us % 1000000);
    out_printf(o, "%s_count%s%s%s %" PRIu64 "\n", name, lbl[0] ? "{" : "", lbl,
               lbl[0] ? "}" : "", count);
}

static void render_hists(metrics_sum_t *table, metrics_out_t *o)
{
    static const struct {
        metrics_family_t fam;
        const char *name;
        const char *label;
        const char *help;
    } fams[] = {
        {FAM_DURATION, "keygate_request_duration_seconds", "route",
         "Time from a request's arrival to its answer's end."},
        {FAM_UPSTREAM, "keygate_upstream_duration_seconds", "provider",
         "Time from forwarding to the provider's response headers."},
        {FAM_TTFT, "keygate_time_to_first_token_seconds", "provider",
         "Time from a request's arrival to its first streamed event."},
    };

    for (size_t f = 0; f < sizeof(fams) / sizeof(*fams); f++) {
        out_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", fams[f].name,
                   fams[f].help, fams[f].name);
        for (metrics_sum_t *e = table; e != NULL; e = e->hh.next) {
            if (e->fam == fams[f].fam) {
                render_hist(o, fams[f].name, fams[f].label, e->labels[0],
                            e->bucket, e->count, e->sum_us);
            }
        }
    }
}

static void render_events(kg_metrics_t *m, metrics_out_t *o)
{
    static const char *const auth[] = {"missing", "invalid", "expired",
                                       "throttled", "admin"};
    static const char *const refused[] = {"budget", "credits", "rate_limit",
                                          "access"};
    int64_t streams = 0;

    _Static_assert(sizeof(auth) / sizeof(*auth) == KG_METRICS_AUTH__COUNT,
                   "auth reasons");
    _Static_assert(sizeof(refused) / sizeof(*refused) ==
                       KG_METRICS_REFUSED__COUNT,
                   "refusal kinds");
    out_printf(o, "# HELP keygate_auth_failures_total Refused credentials, "
                  "by reason.\n# TYPE keygate_auth_failures_total counter\n");
    for (size_t a = 0; a < KG_METRICS_AUTH__COUNT; a++) {
        uint64_t n = 0;

        for (unsigned i = 0; i < m->nshards; i++) {
            n += ctr_get(&m->shards[i].auth[a]);
        }
        out_printf(o,
                   "keygate_auth_failures_total{reason=\"%s\"} %" PRIu64 "\n",
                   auth[a], n);
    }
    out_printf(o, "# HELP keygate_refusals_total Authenticated requests "
                  "refused by policy, by kind.\n"
                  "# TYPE keygate_refusals_total counter\n");
    for (size_t r = 0; r < KG_METRICS_REFUSED__COUNT; r++) {
        uint64_t n = 0;

        for (unsigned i = 0; i < m->nshards; i++) {
            n += ctr_get(&m->shards[i].refused[r]);
        }
        out_printf(o, "keygate_refusals_total{kind=\"%s\"} %" PRIu64 "\n",
                   refused[r], n);
    }
    for (unsigned i = 0; i < m->nshards; i++) {
        streams +=
            atomic_load_explicit(&m->shards[i].streams, memory_order_relaxed);
    }
    out_printf(o,
               "# HELP keygate_open_streams Streaming answers in "
               "progress.\n# TYPE keygate_open_streams gauge\n"
               "keygate_open_streams %" PRId64 "\n",
               streams);
}

static void render_gauges(const kg_metrics_gauges_t *g, const char *version,
                          metrics_out_t *o)
{
    static const uint64_t none[KG_METRICS_BUCKETS + 1] = {0};

    out_printf(o,
               "# HELP keygate_open_connections Open client "
               "connections.\n# TYPE keygate_open_connections gauge\n"
               "keygate_open_connections %" PRId64 "\n",
               g->open_connections);
    out_printf(o,
               "# HELP keygate_keycache_lookups_total Key verifications, by "
               "where the answer came from.\n"
               "# TYPE keygate_keycache_lookups_total counter\n"
               "keygate_keycache_lookups_total{result=\"hit\"} %" PRId64 "\n"
               "keygate_keycache_lookups_total{result=\"negative_hit\"} "
               "%" PRId64 "\n"
               "keygate_keycache_lookups_total{result=\"miss\"} %" PRId64 "\n",
               g->keycache_hits, g->keycache_negative_hits, g->keycache_misses);
    out_printf(o,
               "# HELP keygate_keycache_entries Keys and unknown ids in "
               "the key cache.\n# TYPE keygate_keycache_entries gauge\n"
               "keygate_keycache_entries %" PRId64 "\n",
               g->keycache_entries);
    out_printf(o,
               "# HELP keygate_usage_queue_depth Usage events waiting for "
               "the writer.\n# TYPE keygate_usage_queue_depth gauge\n"
               "keygate_usage_queue_depth %" PRId64 "\n",
               g->usage_queue_depth);
    out_printf(o,
               "# HELP keygate_usage_journal_bytes Bytes in the usage "
               "journal not yet emptied.\n"
               "# TYPE keygate_usage_journal_bytes gauge\n"
               "keygate_usage_journal_bytes %" PRId64 "\n",
               g->usage_journal_bytes);
    out_printf(o,
               "# HELP keygate_usage_events_total Usage events, by outcome.\n"
               "# TYPE keygate_usage_events_total counter\n"
               "keygate_usage_events_total{result=\"committed\"} %" PRId64 "\n"
               "keygate_usage_events_total{result=\"failed\"} %" PRId64 "\n"
               "keygate_usage_events_total{result=\"rejected\"} %" PRId64 "\n",
               g->usage_committed, g->usage_failed, g->usage_rejected);
    out_printf(o,
               "# HELP keygate_usage_backpressure_total Requests the usage "
               "writer held back: shed (503, no place for their event) or "
               "answered only once their event committed (the writer was "
               "behind).\n"
               "# TYPE keygate_usage_backpressure_total counter\n"
               "keygate_usage_backpressure_total{action=\"shed\"} %" PRId64 "\n"
               "keygate_usage_backpressure_total{action=\"waited\"} %" PRId64
               "\n",
               g->usage_shed, g->usage_backlogged);
    out_printf(o, "# HELP keygate_usage_commit_duration_seconds Time of the "
                  "usage writer's transactions.\n"
                  "# TYPE keygate_usage_commit_duration_seconds histogram\n");
    render_hist(o, "keygate_usage_commit_duration_seconds", NULL, NULL,
                g->commit_buckets ? g->commit_buckets : none, g->commit_count,
                (uint64_t)(g->commit_sum_us > 0 ? g->commit_sum_us : 0));
    out_printf(o,
               "# HELP keygate_draining 1 while the daemon drains before "
               "it stops.\n# TYPE keygate_draining gauge\n"
               "keygate_draining %d\n",
               g->draining ? 1 : 0);
    out_printf(o,
               "# HELP keygate_config_reloads_total Configuration reloads "
               "(SIGHUP), by result.\n"
               "# TYPE keygate_config_reloads_total counter\n"
               "keygate_config_reloads_total{result=\"ok\"} %" PRIu64 "\n"
               "keygate_config_reloads_total{result=\"failed\"} %" PRIu64 "\n",
               g->config_reloads_ok, g->config_reloads_failed);
    out_printf(o,
               "# HELP keygate_config_generation The number of the "
               "configuration in use (1: the one the daemon started "
               "with).\n# TYPE keygate_config_generation gauge\n"
               "keygate_config_generation %" PRIu64 "\n"
               "# HELP keygate_config_loaded_timestamp_seconds When the "
               "configuration in use was loaded.\n"
               "# TYPE keygate_config_loaded_timestamp_seconds gauge\n"
               "keygate_config_loaded_timestamp_seconds %" PRId64 "\n",
               g->config_generation, g->config_loaded_at);
    out_printf(o,
               "# HELP keygate_build_info The running version.\n"
               "# TYPE keygate_build_info gauge\n"
               "keygate_build_info{version=\"%s\"} 1\n",
               version);
}

kg_err_t kg_metrics_render(kg_metrics_t *m, const kg_metrics_gauges_t *g,
                           const char *version, kg_buf_t *out)
{
    metrics_sum_t *table = NULL;
    metrics_out_t o = {out, KG_OK};
    kg_err_t rc = sums_collect(m, &table);

    if (rc == KG_OK) {
        render_requests(m, table, &o);
        render_hists(table, &o);
        render_events(m, &o);
        render_gauges(g, version, &o);
        rc = o.rc;
    }
    sums_free(&table);
    return rc;
}
