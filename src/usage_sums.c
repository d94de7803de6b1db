/* Usage sums with a latency histogram: counting, merging, quantiles. */
#include "keygate/usage_sums.h"

#define SUMS_BOUND(ms) INT64_C(ms),
const int64_t kg_usage_latency_bounds[KG_USAGE_LATENCY_BUCKETS - 1] = {
    KG_USAGE_LATENCY_BOUNDS(SUMS_BOUND)};
#undef SUMS_BOUND

#define SUMS_COUNT(ms) +1
_Static_assert(0 KG_USAGE_LATENCY_BOUNDS(SUMS_COUNT) + 1 ==
                   KG_USAGE_LATENCY_BUCKETS,
               "one bucket per bound and one for +Inf");
#undef SUMS_COUNT

/* *acc += v, saturating. */
static void sums_add(int64_t *acc, int64_t v)
{
    if (__builtin_add_overflow(*acc, v, acc)) {
        *acc = v < 0 ? INT64_MIN : INT64_MAX;
    }
}

size_t kg_usage_latency_bucket(int64_t latency_ms)
{
    size_t lo = 0;
    size_t hi = KG_USAGE_LATENCY_BUCKETS - 1;

    /* The first bound >= latency_ms; hi (the +Inf bucket) when none. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (kg_usage_latency_bounds[mid] >= latency_ms) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

void kg_usage_sums_add(kg_usage_sums_t *s, const kg_usage_sample_t *x)
{
    int64_t latency = x->latency_ms < 0 ? 0 : x->latency_ms;

    sums_add(&s->requests, 1);
    sums_add(&s->errors, x->status >= 400 ? 1 : 0);
    sums_add(&s->prompt_tokens, x->prompt_tokens);
    sums_add(&s->completion_tokens, x->completion_tokens);
    sums_add(&s->cached_tokens, x->cached_tokens);
    sums_add(&s->cost, x->cost);
    sums_add(&s->streamed, x->streamed ? 1 : 0);
    sums_add(&s->latency_ms_sum, latency);
    if (latency > s->latency_ms_max) {
        s->latency_ms_max = latency;
    }
    if (x->ttft_ms >= 0) {
        sums_add(&s->ttft_ms_sum, x->ttft_ms);
        sums_add(&s->ttft_count, 1);
    }
    sums_add(&s->latency_hist[kg_usage_latency_bucket(latency)], 1);
}

void kg_usage_sums_merge(kg_usage_sums_t *dst, const kg_usage_sums_t *src)
{
    sums_add(&dst->requests, src->requests);
    sums_add(&dst->errors, src->errors);
    sums_add(&dst->prompt_tokens, src->prompt_tokens);
    sums_add(&dst->completion_tokens, src->completion_tokens);
    sums_add(&dst->cached_tokens, src->cached_tokens);
    sums_add(&dst->cost, src->cost);
    sums_add(&dst->streamed, src->streamed);
    sums_add(&dst->latency_ms_sum, src->latency_ms_sum);
    if (src->latency_ms_max > dst->latency_ms_max) {
        dst->latency_ms_max = src->latency_ms_max;
    }
    sums_add(&dst->ttft_ms_sum, src->ttft_ms_sum);
    sums_add(&dst->ttft_count, src->ttft_count);
    for (size_t i = 0; i < KG_USAGE_LATENCY_BUCKETS; i++) {
        sums_add(&dst->latency_hist[i], src->latency_hist[i]);
    }
}

double kg_usage_sums_quantile(const kg_usage_sums_t *s, double q)
{
    double n = 0;
    double rank;
    double cum = 0;
    size_t top = 0;

    for (size_t i = 0; i < KG_USAGE_LATENCY_BUCKETS; i++) {
        n += (double)s->latency_hist[i];
        if (s->latency_hist[i] > 0) {
            top = i;
        }
    }
    if (n <= 0) {
        return -1;
    }
    q = q < 0 ? 0 : q > 1 ? 1 : q;
    rank = q * n;
    for (size_t i = 0; i <= top; i++) {
        double c = (double)s->latency_hist[i];
        double lo = i == 0 ? 0 : (double)kg_usage_latency_bounds[i - 1];
        double hi;

        if (c <= 0 || (cum + c < rank && i < top)) {
            cum += c;
            continue;
        }
        hi = i + 1 < KG_USAGE_LATENCY_BUCKETS
                 ? (double)kg_usage_latency_bounds[i]
                 : (double)s->latency_ms_max;
        if (i == top && (double)s->latency_ms_max < hi &&
            (double)s->latency_ms_max >= lo) {
            hi = (double)s->latency_ms_max;
        }
        if (hi < lo) {
            hi = lo; /* a +Inf bucket without a plausible maximum */
        }
        rank = rank < cum ? cum : rank > cum + c ? cum + c : rank;
        return lo + (hi - lo) * (rank - cum) / c;
    }
    return -1; /* not reached: top holds a count */
}
