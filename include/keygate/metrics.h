/* Metrics: counters kept per event loop, summed into Prometheus text. */
#ifndef KEYGATE_METRICS_H
#define KEYGATE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/access.h"
#include "keygate/buf.h"
#include "keygate/err.h"

/*
 * Histogram buckets of every duration, in microseconds (Prometheus "le"
 * in seconds): 1 ms to 2 min, then +Inf.
 */
#define KG_METRICS_BUCKETS 15

/* Label sets one shard tracks at most; past it they go to "other". */
#define KG_METRICS_SERIES_MAX 4096
/* A label value's length at most (longer ones are cut). */
#define KG_METRICS_LABEL_MAX 64

typedef struct kg_metrics kg_metrics_t;
typedef struct kg_metrics_shard kg_metrics_shard_t;

/* Why an authentication failed (label reason). */
typedef enum kg_metrics_auth {
    KG_METRICS_AUTH_MISSING = 0, /* no credential */
    KG_METRICS_AUTH_INVALID,     /* malformed, unknown, wrong, disabled */
    KG_METRICS_AUTH_EXPIRED,
    KG_METRICS_AUTH_THROTTLED, /* too many failures from the address */
    KG_METRICS_AUTH_ADMIN,     /* the admin listener refused a credential */
    KG_METRICS_AUTH__COUNT,
} kg_metrics_auth_t;

/* Why an authenticated request was refused (label kind). */
typedef enum kg_metrics_refusal {
    KG_METRICS_REFUSED_BUDGET = 0, /* usage or period limit */
    KG_METRICS_REFUSED_CREDITS,    /* workspace out of credits */
    KG_METRICS_REFUSED_RATE,       /* rpm, tpm or concurrency */
    KG_METRICS_REFUSED_ACCESS,     /* an access rule */
    KG_METRICS_REFUSED__COUNT,
} kg_metrics_refusal_t;

/* Values read at scrape time from the rest of the daemon. */
typedef struct kg_metrics_gauges {
    int64_t open_connections;
    int64_t keycache_hits;
    int64_t keycache_negative_hits;
    int64_t keycache_misses;
    int64_t keycache_entries;
    int64_t usage_queue_depth;
    int64_t usage_journal_bytes;
    int64_t usage_committed;
    int64_t usage_failed;
    int64_t usage_rejected;
    int64_t usage_shed;       /* requests refused: no place for their usage */
    int64_t usage_backlogged; /* answers that waited for their usage commit */
    const uint64_t *commit_buckets; /* KG_METRICS_BUCKETS + 1, or NULL */
    uint64_t commit_count;
    int64_t commit_sum_us;
    bool draining;
    uint64_t config_reloads_ok; /* SIGHUP reloads applied */
    uint64_t config_reloads_failed;
    uint64_t config_generation; /* the configuration in use */
    int64_t config_loaded_at;   /* unix seconds */
} kg_metrics_gauges_t;

/*
 * Metrics for nshards recorders (one per event loop, plus any other
 * thread that records, each owning its shard). per_key adds the key id
 * label to requests, tokens and cost. *out is new (kg_metrics_free).
 */
kg_err_t kg_metrics_new(unsigned nshards, bool per_key,
                        kg_metrics_t **out) KG_MUST_CHECK;
void kg_metrics_free(kg_metrics_t **m);

/* Shard i (< nshards); recorded into by one thread only. */
kg_metrics_shard_t *kg_metrics_shard(kg_metrics_t *m, unsigned i);

/*
 * Record a finished request in the caller's shard (its route, status,
 * model, provider, key id with per_key, durations, tokens and cost). Only the
 * shard's own thread calls this: no lock, no shared cache line; the scraper
 * reads the counters with relaxed atomic loads.
 */
void kg_metrics_record(kg_metrics_shard_t *s, const kg_request_summary_t *r);
void kg_metrics_auth_failure(kg_metrics_shard_t *s, kg_metrics_auth_t why);
void kg_metrics_refused(kg_metrics_shard_t *s, kg_metrics_refusal_t why);

/* A stream started (+1) or ended (-1) on the shard's thread. */
void kg_metrics_stream(kg_metrics_shard_t *s, int delta);

/*
 * The histogram bucket index of a duration, for other recorders (the
 * usage writer's commit times): 0..KG_METRICS_BUCKETS (the last: +Inf).
 */
size_t kg_metrics_bucket(int64_t us);

/*
 * Append the Prometheus text exposition (version 0.0.4) of every shard,
 * summed, and of g to out. Any thread; runs beside the recorders.
 * KG_OK or KG_ERR_NOMEM (out past its maximum).
 */
kg_err_t kg_metrics_render(kg_metrics_t *m, const kg_metrics_gauges_t *g,
                           const char *version, kg_buf_t *out) KG_MUST_CHECK;

#endif /* KEYGATE_METRICS_H */
