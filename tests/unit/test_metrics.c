/* Unit tests of the metrics shards and their Prometheus text. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/metrics.h"
#include "unit_util.h"

#define UT_RENDER_MAX (4u << 20)

static char *render(kg_metrics_t *m, const kg_metrics_gauges_t *g)
{
    kg_metrics_gauges_t none;
    kg_buf_t b;

    memset(&none, 0, sizeof(none));
    kg_buf_init(&b, UT_RENDER_MAX);
    ck_assert_int_eq(kg_metrics_render(m, g ? g : &none, "9.9.9", &b), KG_OK);
    ck_assert_ptr_nonnull(b.data);
    return kg_buf_steal(&b, NULL);
}

static void request(kg_metrics_shard_t *s, const char *route, int status,
                    const char *model, const char *key, int64_t duration_us,
                    int64_t cost)
{
    kg_request_summary_t r;

    memset(&r, 0, sizeof(r));
    r.route = route;
    r.status = status;
    r.model = model;
    r.provider = model ? "mock" : NULL;
    r.key_id = key;
    r.duration_us = duration_us;
    r.upstream_us = model ? duration_us / 2 : -1;
    r.ttft_us = -1;
    r.prompt_tokens = 10;
    r.completion_tokens = 20;
    r.cost = cost;
    kg_metrics_record(s, &r);
}

/* Two shards' counts are summed into one series per label set. */
START_TEST(test_sums_over_shards)
{
    kg_metrics_t *m = NULL;
    char *text;

    ck_assert_int_eq(kg_metrics_new(2, false, &m), KG_OK);
    request(kg_metrics_shard(m, 0), "chat", 200, "gpt-4o", "k1", 3000, 1500000);
    request(kg_metrics_shard(m, 1), "chat", 200, "gpt-4o", "k2", 3000, 250);
    request(kg_metrics_shard(m, 1), "chat", 429, "gpt-4o", "k2", 500, 0);
    request(kg_metrics_shard(m, 0), "models", 200, NULL, "k1", 100, 0);
    text = render(m, NULL);
    ck_assert_ptr_nonnull(strstr(
        text, "keygate_requests_total{route=\"chat\",status_class=\"2xx\","
              "model=\"gpt-4o\",provider=\"mock\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(
        text, "keygate_requests_total{route=\"chat\",status_class=\"4xx\","
              "model=\"gpt-4o\",provider=\"mock\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_cost_usd_total{route=\"chat\",status_class="
                     "\"2xx\",model=\"gpt-4o\",provider=\"mock\"} 1.500250\n"));
    ck_assert_ptr_nonnull(strstr(
        text, "keygate_tokens_total{route=\"chat\",status_class=\"2xx\","
              "model=\"gpt-4o\",provider=\"mock\",kind=\"completion\"} 40\n"));
    /* Without [metrics] per_key, no key label anywhere. */
    ck_assert_ptr_null(strstr(text, "key=\""));
    /* Durations: 3 ms twice and 0.5 ms once for chat. */
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_request_duration_seconds_bucket{route=\"chat\","
                     "le=\"0.001\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_request_duration_seconds_bucket{route=\"chat\","
                     "le=\"0.005\"} 3\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_request_duration_seconds_bucket{route=\"chat\","
                     "le=\"+Inf\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(
        text,
        "keygate_request_duration_seconds_sum{route=\"chat\"} 0.006500\n"));
    ck_assert_ptr_nonnull(strstr(
        text, "keygate_request_duration_seconds_count{route=\"chat\"} 3\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_upstream_duration_seconds_count{provider="
                     "\"mock\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "keygate_build_info{version=\"9.9.9\"} "
                                       "1\n"));
    free(text);
    kg_metrics_free(&m);
    ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_per_key_and_escaping)
{
    kg_metrics_t *m = NULL;
    char *text;

    ck_assert_int_eq(kg_metrics_new(1, true, &m), KG_OK);
    request(kg_metrics_shard(m, 0), "chat", 200, "we\"ird\\model\n", "k1", 10,
            0);
    text = render(m, NULL);
    ck_assert_ptr_nonnull(strstr(text, "model=\"we\\\"ird\\\\model\\n\""));
    ck_assert_ptr_nonnull(strstr(text, ",key=\"k1\"} 1\n"));
    free(text);
    kg_metrics_free(&m);
}
END_TEST

/* Refusals, failures and gauges from outside the shards. */
START_TEST(test_events_and_gauges)
{
    kg_metrics_t *m = NULL;
    kg_metrics_gauges_t g;
    uint64_t buckets[KG_METRICS_BUCKETS + 1] = {0};
    char *text;

    ck_assert_int_eq(kg_metrics_new(2, false, &m), KG_OK);
    kg_metrics_auth_failure(kg_metrics_shard(m, 0), KG_METRICS_AUTH_INVALID);
    kg_metrics_auth_failure(kg_metrics_shard(m, 1), KG_METRICS_AUTH_INVALID);
    kg_metrics_auth_failure(kg_metrics_shard(m, 1), KG_METRICS_AUTH__COUNT);
    kg_metrics_refused(kg_metrics_shard(m, 0), KG_METRICS_REFUSED_RATE);
    kg_metrics_stream(kg_metrics_shard(m, 0), 1);
    kg_metrics_stream(kg_metrics_shard(m, 1), 1);
    kg_metrics_stream(kg_metrics_shard(m, 1), -1);
    memset(&g, 0, sizeof(g));
    g.open_connections = 7;
    g.keycache_hits = 100;
    g.usage_queue_depth = 3;
    buckets[kg_metrics_bucket(2000)] = 4;
    g.commit_buckets = buckets;
    g.commit_count = 4;
    g.commit_sum_us = 8000;
    text = render(m, &g);
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_auth_failures_total{reason=\"invalid\"} 2\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_auth_failures_total{reason=\"expired\"} 0\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_refusals_total{kind=\"rate_limit\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "keygate_open_streams 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "keygate_open_connections 7\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_keycache_lookups_total{result=\"hit\"} 100\n"));
    ck_assert_ptr_nonnull(strstr(text, "keygate_usage_queue_depth 3\n"));
    ck_assert_ptr_nonnull(strstr(
        text,
        "keygate_usage_commit_duration_seconds_bucket{le=\"0.005\"} 4\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "keygate_usage_commit_duration_seconds_sum 0.008000\n"));
    free(text);
    kg_metrics_free(&m);
}
END_TEST

/* Past KG_METRICS_SERIES_MAX label sets, new ones count as "other". */
START_TEST(test_series_bounded)
{
    kg_metrics_t *m = NULL;
    char model[32];
    char *text;

    ck_assert_int_eq(kg_metrics_new(1, false, &m), KG_OK);
    for (int i = 0; i < KG_METRICS_SERIES_MAX + 50; i++) {
        snprintf(model, sizeof(model), "model-%d", i);
        request(kg_metrics_shard(m, 0), "chat", 200, model, NULL, 10, 0);
    }
    text = render(m, NULL);
    ck_assert_ptr_nonnull(strstr(text, "model=\"other\""));
    free(text);
    kg_metrics_free(&m);
}
END_TEST

START_TEST(test_buckets)
{
    ck_assert_uint_eq(kg_metrics_bucket(0), 0);
    ck_assert_uint_eq(kg_metrics_bucket(1000), 0);
    ck_assert_uint_eq(kg_metrics_bucket(1001), 1);
    ck_assert_uint_eq(kg_metrics_bucket(INT64_C(120000000)), 14);
    ck_assert_uint_eq(kg_metrics_bucket(INT64_C(120000001)), 15);
}
END_TEST

typedef struct ut_rec {
    kg_metrics_shard_t *shard;
    int n;
} ut_rec_t;

static void *recorder(void *p)
{
    ut_rec_t *r = p;
    char model[16];

    for (int i = 0; i < r->n; i++) {
        snprintf(model, sizeof(model), "m%d", i % 40);
        request(r->shard, "chat", 200, model, NULL, i, 1);
    }
    return NULL;
}

/* Scrapes while two shards record: every count arrives, nothing tears. */
START_TEST(test_scrape_while_recording)
{
    kg_metrics_t *m = NULL;
    pthread_t th[2];
    ut_rec_t args[2];
    char *text;
    long total = 0;
    const char *p;

    ck_assert_int_eq(kg_metrics_new(2, false, &m), KG_OK);
    for (int i = 0; i < 2; i++) {
        args[i].shard = kg_metrics_shard(m, (unsigned)i);
        args[i].n = 20000;
        ck_assert_int_eq(pthread_create(&th[i], NULL, recorder, &args[i]), 0);
    }
    for (int i = 0; i < 20; i++) {
        free(render(m, NULL));
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    text = render(m, NULL);
    for (p = text; (p = strstr(p, "keygate_requests_total{")) != NULL;) {
        p = strchr(p, '}');
        total += strtol(p + 2, NULL, 10);
    }
    ck_assert_int_eq(total, 40000);
    free(text);
    kg_metrics_free(&m);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");

    tcase_add_test(tc, test_sums_over_shards);
    tcase_add_test(tc, test_per_key_and_escaping);
    tcase_add_test(tc, test_events_and_gauges);
    tcase_add_test(tc, test_series_bounded);
    tcase_add_test(tc, test_buckets);
    tcase_add_test(tc, test_scrape_while_recording);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(metrics_suite());
}
