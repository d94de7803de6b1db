/* Usage sums with a latency histogram: what one hourly rollup row holds. */
#ifndef KEYGATE_USAGE_SUMS_H
#define KEYGATE_USAGE_SUMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The latency histogram's buckets: upper bounds in milliseconds, in order;
 * bucket i counts the requests whose latency_ms is in (bound i-1, bound i]
 * (bucket 0 from 0), and the last one everything above 120 s. They are
 * columns of the store's rollup (lat_5 .. lat_120000, lat_inf): changing
 * them is a schema migration.
 */
/* clang-format off */
#define KG_USAGE_LATENCY_BOUNDS(X)                                             \
    X(5) X(10) X(25) X(50) X(100) X(250) X(500) X(1000) X(2500) X(5000)       \
    X(10000) X(30000) X(60000) X(120000)
/* clang-format on */
#define KG_USAGE_LATENCY_BUCKETS 15 /* the bounds above and +Inf */

/* The finite bounds, KG_USAGE_LATENCY_BUCKETS - 1 of them. */
extern const int64_t kg_usage_latency_bounds[KG_USAGE_LATENCY_BUCKETS - 1];

/*
 * Sums over a set of usage events. Every field only grows by addition
 * (latency_ms_max by maximum), so two sums of disjoint sets merge exactly;
 * additions saturate at INT64_MAX instead of overflowing.
 */
typedef struct kg_usage_sums {
    int64_t requests;
    int64_t errors; /* events with status >= 400 */
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t cost; /* micro-USD */
    int64_t streamed;
    int64_t latency_ms_sum;
    int64_t latency_ms_max;
    int64_t ttft_ms_sum; /* over the events that had a first token */
    int64_t ttft_count;
    int64_t latency_hist[KG_USAGE_LATENCY_BUCKETS];
} kg_usage_sums_t;

/* The fields of one usage event that the sums count. */
typedef struct kg_usage_sample {
    int status;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t cost;
    int64_t latency_ms;
    int64_t ttft_ms; /* < 0: none */
    bool streamed;
} kg_usage_sample_t;

/* The histogram bucket of a latency (negative counts as 0). */
size_t kg_usage_latency_bucket(int64_t latency_ms);

/* Count one event into *s. */
void kg_usage_sums_add(kg_usage_sums_t *s, const kg_usage_sample_t *x);

/* *dst += *src, field by field (maximum for latency_ms_max). */
void kg_usage_sums_merge(kg_usage_sums_t *dst, const kg_usage_sums_t *src);

/*
 * An estimate of the q-quantile (0 < q < 1) of latency_ms from the
 * histogram: the bucket that holds rank q × n, then linear interpolation
 * inside it between its lower and upper bound (the upper bound of the
 * highest non-empty bucket is latency_ms_max when that is lower, which also
 * closes the +Inf bucket). The true quantile lies in the same bucket, so
 * the error is below that bucket's width (e.g. < 250 ms for a p95 between
 * 250 and 500 ms); a uniform spread inside a bucket gives it exactly.
 * Returns -1 when the sums count no request.
 */
double kg_usage_sums_quantile(const kg_usage_sums_t *s, double q);

#endif /* KEYGATE_USAGE_SUMS_H */
