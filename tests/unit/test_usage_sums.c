/* Unit tests of usage sums: histogram buckets, merging, quantile estimates. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/usage_sums.h"
#include "unit_util.h"

typedef struct ut_bucket_row {
    int64_t ms;
    size_t bucket;
} ut_bucket_row_t;

static const ut_bucket_row_t ut_bucket_rows[] = {
    {-5, 0},   {0, 0},       {5, 0},       {6, 1},          {10, 1},  {11, 2},
    {25, 2},   {26, 3},      {100, 4},     {101, 5},        {999, 7}, {1000, 7},
    {1001, 8}, {120000, 13}, {120001, 14}, {INT64_MAX, 14},
};

START_TEST(test_bucket)
{
    const ut_bucket_row_t *row = &ut_bucket_rows[_i];

    ck_assert_uint_eq(kg_usage_latency_bucket(row->ms), row->bucket);
}
END_TEST

/* Every bound is the top of its own bucket and one more is the next. */
START_TEST(test_bucket_bounds)
{
    for (size_t i = 0; i + 1 < KG_USAGE_LATENCY_BUCKETS; i++) {
        ck_assert_uint_eq(kg_usage_latency_bucket(kg_usage_latency_bounds[i]),
                          i);
        ck_assert_uint_eq(
            kg_usage_latency_bucket(kg_usage_latency_bounds[i] + 1), i + 1);
        if (i > 0) {
            ck_assert_int_gt(kg_usage_latency_bounds[i],
                             kg_usage_latency_bounds[i - 1]);
        }
    }
}
END_TEST

static kg_usage_sample_t ut_sample(int status, int64_t latency, int64_t ttft)
{
    kg_usage_sample_t x;

    memset(&x, 0, sizeof(x));
    x.status = status;
    x.prompt_tokens = 10;
    x.completion_tokens = 20;
    x.cached_tokens = 3;
    x.cost = 125;
    x.latency_ms = latency;
    x.ttft_ms = ttft;
    x.streamed = ttft >= 0;
    return x;
}

START_TEST(test_add_merge)
{
    kg_usage_sums_t a;
    kg_usage_sums_t b;
    kg_usage_sample_t x;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    x = ut_sample(200, 40, 7);
    kg_usage_sums_add(&a, &x);
    x = ut_sample(429, 3000, -1);
    kg_usage_sums_add(&a, &x);
    x = ut_sample(500, 90, 11);
    kg_usage_sums_add(&b, &x);
    ck_assert_int_eq(a.requests, 2);
    ck_assert_int_eq(a.errors, 1);
    ck_assert_int_eq(a.streamed, 1);
    ck_assert_int_eq(a.ttft_count, 1);
    ck_assert_int_eq(a.ttft_ms_sum, 7);
    ck_assert_int_eq(a.latency_ms_sum, 3040);
    ck_assert_int_eq(a.latency_ms_max, 3000);
    ck_assert_int_eq(a.latency_hist[3], 1); /* (25, 50] */
    ck_assert_int_eq(a.latency_hist[9], 1); /* (2500, 5000] */
    kg_usage_sums_merge(&a, &b);
    ck_assert_int_eq(a.requests, 3);
    ck_assert_int_eq(a.errors, 2);
    ck_assert_int_eq(a.prompt_tokens, 30);
    ck_assert_int_eq(a.completion_tokens, 60);
    ck_assert_int_eq(a.cached_tokens, 9);
    ck_assert_int_eq(a.cost, 375);
    ck_assert_int_eq(a.ttft_count, 2);
    ck_assert_int_eq(a.ttft_ms_sum, 18);
    ck_assert_int_eq(a.latency_ms_max, 3000);
    ck_assert_int_eq(a.latency_hist[4], 1); /* (50, 100] */
    /* Saturation instead of overflow. */
    b.cost = INT64_MAX;
    kg_usage_sums_merge(&a, &b);
    ck_assert_int_eq(a.cost, INT64_MAX);
}
END_TEST

START_TEST(test_quantile_empty)
{
    kg_usage_sums_t s;

    memset(&s, 0, sizeof(s));
    ck_assert(kg_usage_sums_quantile(&s, 0.5) < 0);
}
END_TEST

/* The exact q-quantile of sorted values (nearest rank). */
static double ut_exact(const int64_t *v, size_t n, double q)
{
    size_t k = (size_t)ceil(q * (double)n);

    return (double)v[k == 0 ? 0 : k - 1];
}

static int ut_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a;
    int64_t y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* A deterministic generator: distribution d, n values. */
static void ut_fill(int d, int64_t *v, size_t n)
{
    uint64_t s = 0x9E3779B97F4A7C15u;

    for (size_t i = 0; i < n; i++) {
        double u;

        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        u = (double)(s >> 11) / 9007199254740992.0; /* [0, 1) */
        switch (d) {
        case 0: /* uniform 1..1000 */
            v[i] = (int64_t)(i % 1000) + 1;
            break;
        case 1: /* exponential, mean 300 ms */
            v[i] = (int64_t)(-300.0 * log(1.0 - u));
            break;
        case 2: /* two modes: fast cache hits, slow generations */
            v[i] = u < 0.7 ? 3 + (int64_t)(u * 10) : 4000 + (int64_t)(u * 8000);
            break;
        case 3: /* everything above the last bound */
            v[i] = 130000 + (int64_t)(u * 50000);
            break;
        default: /* one constant */
            v[i] = 777;
            break;
        }
    }
}

/* The bucket that holds ms: (lo, hi]. */
static void ut_bucket_range(int64_t ms, double *lo, double *hi)
{
    size_t b = kg_usage_latency_bucket(ms);

    *lo = b == 0 ? 0 : (double)kg_usage_latency_bounds[b - 1];
    *hi = b + 1 < KG_USAGE_LATENCY_BUCKETS ? (double)kg_usage_latency_bounds[b]
                                           : 1e18;
}

/* Estimates against known distributions: within the true quantile's
 * bucket, never above the maximum; uniform gives it exactly. */
START_TEST(test_quantile_distributions)
{
    enum { N = 20000 };
    static const double qs[] = {0.5, 0.95, 0.99};
    int64_t *v = malloc(N * sizeof(*v));
    kg_usage_sums_t s;

    ck_assert_ptr_nonnull(v);
    memset(&s, 0, sizeof(s));
    ut_fill(_i, v, N);
    for (size_t i = 0; i < N; i++) {
        kg_usage_sample_t x = ut_sample(200, v[i], -1);

        kg_usage_sums_add(&s, &x);
    }
    qsort(v, N, sizeof(*v), ut_cmp);
    for (size_t k = 0; k < UT_NROWS(qs); k++) {
        double want = ut_exact(v, N, qs[k]);
        double got = kg_usage_sums_quantile(&s, qs[k]);
        double lo;
        double hi;

        ut_bucket_range((int64_t)want, &lo, &hi);
        ck_assert_msg(got >= lo && got <= hi,
                      "distribution %d q %.2f: %.1f outside (%.0f, %.0f] of "
                      "%.0f",
                      _i, qs[k], got, lo, hi, want);
        ck_assert_msg(got <= (double)v[N - 1] + 1e-9, "above the maximum");
        if (_i == 0) {
            ck_assert_msg(fabs(got - want) <= 1.0, "uniform: %.2f vs %.0f", got,
                          want);
        }
        if (_i == 4) {
            /* One value: between its bucket's lower bound and itself. */
            ck_assert(got > 500 && got <= 777);
        }
    }
    free(v);
}
END_TEST

/* Quantiles of a small hand-made histogram, exactly. */
START_TEST(test_quantile_exact)
{
    kg_usage_sums_t s;

    memset(&s, 0, sizeof(s));
    s.latency_hist[4] = 50; /* (50, 100] */
    s.latency_hist[5] = 50; /* (100, 250] */
    s.latency_ms_max = 200;
    s.requests = 100;
    /* p50: rank 50, the top of the first bucket. */
    ck_assert_double_eq_tol(kg_usage_sums_quantile(&s, 0.5), 100.0, 1e-9);
    /* p95: rank 95 → 45/50 of (100, 200], the maximum closing the top. */
    ck_assert_double_eq_tol(kg_usage_sums_quantile(&s, 0.95), 190.0, 1e-9);
    ck_assert_double_eq_tol(kg_usage_sums_quantile(&s, 1.0), 200.0, 1e-9);
    ck_assert_double_eq_tol(kg_usage_sums_quantile(&s, 0.0), 50.0, 1e-9);
    /* The +Inf bucket is closed by the maximum. */
    memset(&s, 0, sizeof(s));
    s.latency_hist[KG_USAGE_LATENCY_BUCKETS - 1] = 4;
    s.latency_ms_max = 200000;
    ck_assert_double_eq_tol(kg_usage_sums_quantile(&s, 0.5), 160000.0, 1e-6);
}
END_TEST

static Suite *usage_sums_suite(void)
{
    Suite *s = suite_create("usage_sums");
    TCase *tc = tcase_create("usage_sums");

    tcase_add_loop_test(tc, test_bucket, 0, (int)UT_NROWS(ut_bucket_rows));
    tcase_add_test(tc, test_bucket_bounds);
    tcase_add_test(tc, test_add_merge);
    tcase_add_test(tc, test_quantile_empty);
    tcase_add_loop_test(tc, test_quantile_distributions, 0, 5);
    tcase_add_test(tc, test_quantile_exact);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(usage_sums_suite());
}
