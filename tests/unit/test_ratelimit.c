/* Unit tests of rate limits: windows, tokens, concurrency, auth throttle. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "keygate/ratelimit.h"
#include "unit_util.h"

/* A time on a window boundary (a multiple of 60 s), in ms. */
#define T0 INT64_C(1700000040000)
#define W  KG_RATELIMIT_WINDOW_MS
/* Threads of the hammer tests. */
#define UT_THREADS 8
#define UT_ITERS   3000

static kg_ratelimit_t *ut_new(const kg_ratelimit_opts_t *opts)
{
    kg_ratelimit_t *rl = NULL;

    ck_assert_int_eq(kg_ratelimit_new(opts, &rl), KG_OK);
    ck_assert_ptr_nonnull(rl);
    return rl;
}

/* Acquire and release at once with no tokens; returns acquire's answer. */
static kg_err_t ut_hit(kg_ratelimit_t *rl, const char *id,
                       const kg_ratelimit_limits_t *lim, int64_t now,
                       kg_ratelimit_info_t *info)
{
    kg_ratelimit_ticket_t t = {0};
    kg_err_t rc = kg_ratelimit_acquire(rl, id, lim, 0, now, &t, info);

    kg_ratelimit_release(rl, &t, 0, now);
    return rc;
}

START_TEST(test_rpm_exact)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {5, KG_NONE, KG_NONE};
    kg_ratelimit_info_t info;
    char buf[KG_RATELIMIT_DESCRIBE_STRLEN];

    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + i, &info), KG_OK);
        ck_assert_int_eq(info.refused, KG_RATELIMIT_OK);
        ck_assert_int_eq(info.retry_after_s, 0);
        ck_assert_int_eq(info.limit_requests, 5);
        ck_assert_int_eq(info.remaining_requests, 4 - i);
        ck_assert_int_eq(info.limit_tokens, KG_NONE);
        ck_assert_int_eq(info.limit_concurrent, KG_NONE);
    }
    /* The sixth: refused, and refusals do not count. */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + 10, &info),
                         KG_ERR_RATE_LIMITED);
        ck_assert_int_eq(info.refused, KG_RATELIMIT_REQUESTS);
        ck_assert_int_eq(info.remaining_requests, 0);
        /* 5 in the last window fit again once they weigh 4: 12 s into
         * the next window. */
        ck_assert_int_eq(info.retry_after_s, 72);
        ck_assert_int_eq(info.reset_requests_ms, 2 * W - 10);
    }
    ck_assert_str_eq(kg_ratelimit_describe(&info, buf, sizeof(buf)),
                     "requests per minute (limit 5)");
    ck_assert_int_eq(kg_err_http_status(KG_ERR_RATE_LIMITED), 429);
    /* Another key has its own window. */
    ck_assert_int_eq(ut_hit(rl, "k2", &lim, T0 + 10, &info), KG_OK);
    /* The window slides: still full just before, room right at 72 s. */
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + W + 11999, &info),
                     KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.retry_after_s, 1);
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + W + 12000, &info), KG_OK);
    ck_assert_int_eq(info.remaining_requests, 0);
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + W + 12000, &info),
                     KG_ERR_RATE_LIMITED);
    /* Two windows later everything has gone. */
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + 3 * W, &info), KG_OK);
    ck_assert_int_eq(info.remaining_requests, 4);
    kg_ratelimit_free(&rl);
    ck_assert_ptr_null(rl);
}
END_TEST

START_TEST(test_rpm_slide)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {10, KG_NONE, KG_NONE};
    kg_ratelimit_info_t info;
    int64_t mid = T0 + W + W / 2;

    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + 1000, &info), KG_OK);
    }
    /* Half-way through the next window the last one weighs 5. */
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ut_hit(rl, "k1", &lim, mid, &info), KG_OK);
    }
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, mid, &info), KG_ERR_RATE_LIMITED);
    /* 10 * (W - t) / W + 5 + 1 <= 10 from t = 36 s on. */
    ck_assert_int_eq(info.retry_after_s, 6);
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + W + 35999, &info),
                     KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0 + W + 36000, &info), KG_OK);
    /* A clock that goes back counts in the current window. */
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0, &info), KG_ERR_RATE_LIMITED);
    kg_ratelimit_free(&rl);
}
END_TEST

START_TEST(test_rpm_zero)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {0, KG_NONE, KG_NONE};
    kg_ratelimit_info_t info;

    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0, &info), KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_REQUESTS);
    ck_assert_int_eq(info.retry_after_s, 60);
    lim.rpm = KG_NONE;
    lim.tpm = 0;
    ck_assert_int_eq(ut_hit(rl, "k1", &lim, T0, &info), KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_TOKENS);
    ck_assert_int_eq(info.retry_after_s, 60);
    kg_ratelimit_free(&rl);
}
END_TEST

START_TEST(test_tpm)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {KG_NONE, 1000, KG_NONE};
    kg_ratelimit_ticket_t t1 = {0};
    kg_ratelimit_ticket_t t2 = {0};
    kg_ratelimit_ticket_t t3 = {0};
    kg_ratelimit_ticket_t t4 = {0};
    kg_ratelimit_info_t info;
    char buf[KG_RATELIMIT_DESCRIBE_STRLEN];

    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k1", &lim, 600, T0, &t1, &info),
                     KG_OK);
    ck_assert_int_eq(info.remaining_tokens, 400);
    ck_assert_int_eq(info.limit_requests, KG_NONE);
    /* The estimate in flight counts. */
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k1", &lim, 500, T0, &t2, &info),
                     KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_TOKENS);
    ck_assert_ptr_null(t2.entry);
    /* 600 in this window weigh 500 once 10 s of the next have gone. */
    ck_assert_int_eq(info.retry_after_s, 70);
    ck_assert_str_eq(kg_ratelimit_describe(&info, buf, sizeof(buf)),
                     "tokens per minute (limit 1000)");
    /* The actual replaces the estimate. */
    kg_ratelimit_release(rl, &t1, 100, T0 + 1);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 500, T0 + 2, &t2, &info), KG_OK);
    ck_assert_int_eq(info.remaining_tokens, 400);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 400, T0 + 3, &t3, &info), KG_OK);
    ck_assert_int_eq(info.remaining_tokens, 0);
    /* Full: even an estimate of 0 is refused. */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 0, T0 + 4, &t4, &info),
        KG_ERR_RATE_LIMITED);
    kg_ratelimit_release(rl, &t2, 300, T0 + 5);
    kg_ratelimit_release(rl, &t3, 350, T0 + 5);
    /* 100 + 300 + 350 = 750 settled: 250 left. */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 251, T0 + 6, &t4, &info),
        KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.remaining_tokens, 250);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 250, T0 + 6, &t4, &info), KG_OK);
    kg_ratelimit_release(rl, &t4, 250, T0 + 7);
    /* Tokens are counted in the window of their release. */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 600, T0 + W - 1, &t1, &info),
        KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 600, T0 + W - 1, &t1, &info),
        KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 100, T0 + 2 * W, &t1, &info),
        KG_OK);
    ck_assert_int_eq(info.remaining_tokens, 900);
    kg_ratelimit_release(rl, &t1, 0, T0 + 2 * W);

    /* An estimate above the limit fits an empty window, and only that. */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "big", &lim, 5000, T0, &t1, &info), KG_OK);
    ck_assert_int_eq(info.remaining_tokens, 0);
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "big", &lim, 1, T0, &t2, &info),
                     KG_ERR_RATE_LIMITED);
    kg_ratelimit_release(rl, &t1, 4000, T0 + 1);
    ck_assert_int_eq(info.retry_after_s >= 1, 1);
    kg_ratelimit_free(&rl);
}
END_TEST

START_TEST(test_concurrency)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {KG_NONE, KG_NONE, 2};
    kg_ratelimit_ticket_t t[4] = {{0}};
    kg_ratelimit_info_t info;
    char buf[KG_RATELIMIT_DESCRIBE_STRLEN];

    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k1", &lim, 10, T0, &t[0], &info),
                     KG_OK);
    ck_assert_int_eq(info.concurrent, 1);
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k1", &lim, 10, T0, &t[1], &info),
                     KG_OK);
    ck_assert_int_eq(info.concurrent, 2);
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k1", &lim, 10, T0, &t[2], &info),
                     KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_CONCURRENT);
    ck_assert_int_eq(info.retry_after_s, 1);
    ck_assert_int_eq(info.limit_concurrent, 2);
    ck_assert_str_eq(kg_ratelimit_describe(&info, buf, sizeof(buf)),
                     "concurrent requests (limit 2)");
    /* Released twice: counted once. */
    kg_ratelimit_release(rl, &t[0], 5, T0 + 1);
    kg_ratelimit_release(rl, &t[0], 5, T0 + 1);
    kg_ratelimit_release(rl, &t[2], 5, T0 + 1); /* never granted */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 10, T0 + 2, &t[2], &info), KG_OK);
    ck_assert_int_eq(info.concurrent, 2);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 10, T0 + 2, &t[3], &info),
        KG_ERR_RATE_LIMITED);
    /* A lower limit applies at once to the requests in flight. */
    lim.max_concurrent = 1;
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 10, T0 + 3, &t[3], &info),
        KG_ERR_RATE_LIMITED);
    kg_ratelimit_release(rl, &t[1], 5, T0 + 4);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 10, T0 + 3, &t[3], &info),
        KG_ERR_RATE_LIMITED);
    kg_ratelimit_release(rl, &t[2], 5, T0 + 4);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 10, T0 + 3, &t[3], &info), KG_OK);
    kg_ratelimit_release(rl, &t[3], 5, T0 + 4);
    kg_ratelimit_free(&rl);
}
END_TEST

/* The header values on success, for every response. */
START_TEST(test_headers)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {60, 1000, 4};
    kg_ratelimit_ticket_t t = {0};
    kg_ratelimit_info_t info;
    char buf[KG_RATELIMIT_RESET_STRLEN];

    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 100, T0 + 15000, &t, &info),
        KG_OK);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_OK);
    ck_assert_int_eq(info.retry_after_s, 0);
    ck_assert_int_eq(info.limit_requests, 60);
    ck_assert_int_eq(info.remaining_requests, 59);
    ck_assert_int_eq(info.reset_requests_ms, 105000);
    ck_assert_int_eq(info.limit_tokens, 1000);
    ck_assert_int_eq(info.remaining_tokens, 900);
    ck_assert_int_eq(info.reset_tokens_ms, 105000);
    ck_assert_int_eq(info.limit_concurrent, 4);
    ck_assert_int_eq(info.concurrent, 1);
    ck_assert_str_eq(
        kg_ratelimit_format_reset(info.reset_requests_ms, buf, sizeof(buf)),
        "1m45s");
    kg_ratelimit_release(rl, &t, 0, T0 + 16000);
    /* Settled at 0 tokens in the current window: only requests remain. */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k1", &lim, 0, T0 + W + 30000, &t, &info),
        KG_OK);
    ck_assert_int_eq(info.remaining_requests, 58); /* ceil(0.5 + 1) = 2 */
    ck_assert_int_eq(info.reset_requests_ms, 90000);
    ck_assert_int_eq(info.remaining_tokens, 1000);
    ck_assert_int_eq(info.reset_tokens_ms, 0);
    kg_ratelimit_release(rl, &t, 0, T0 + W + 30000);
    kg_ratelimit_free(&rl);
}
END_TEST

typedef struct ut_reset_row {
    int64_t ms;
    const char *want;
} ut_reset_row_t;

static const ut_reset_row_t ut_reset_rows[] = {
    {-5, "0s"},       {0, "0s"},          {1, "1ms"},      {17, "17ms"},
    {999, "999ms"},   {1000, "1s"},       {1001, "2s"},    {12000, "12s"},
    {59000, "59s"},   {59001, "1m0s"},    {60000, "1m0s"}, {90000, "1m30s"},
    {119999, "2m0s"}, {3600000, "60m0s"},
};

START_TEST(test_format_reset)
{
    const ut_reset_row_t *r = &ut_reset_rows[_i];
    char buf[KG_RATELIMIT_RESET_STRLEN];
    char tiny[3];

    ck_assert_str_eq(kg_ratelimit_format_reset(r->ms, buf, sizeof(buf)),
                     r->want);
    /* Cut, never overrun. */
    kg_ratelimit_format_reset(r->ms, tiny, sizeof(tiny));
    ck_assert_uint_le(strlen(tiny), 2);
}
END_TEST

START_TEST(test_no_limits)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t none = {KG_NONE, -7, KG_NONE};
    kg_ratelimit_limits_t some = {10, KG_NONE, KG_NONE};
    kg_ratelimit_ticket_t t = {0};
    kg_ratelimit_info_t info;
    char long_id[KG_RATELIMIT_ID_MAX + 2];
    char buf[KG_RATELIMIT_DESCRIBE_STRLEN];

    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k1", NULL, 5, T0, &t, &info),
                     KG_OK);
    ck_assert_ptr_null(t.entry);
    ck_assert_int_eq(info.limit_requests, KG_NONE);
    ck_assert_int_eq(info.limit_tokens, KG_NONE);
    ck_assert_int_eq(info.limit_concurrent, KG_NONE);
    kg_ratelimit_release(rl, &t, 5, T0);
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k1", &none, 5, T0, &t, NULL),
                     KG_OK);
    ck_assert_uint_eq(kg_ratelimit_key_count(rl), 0);
    ck_assert_str_eq(kg_ratelimit_describe(&info, buf, sizeof(buf)), "");
    ck_assert_str_eq(kg_ratelimit_kind_name(KG_RATELIMIT_OK), "");
    memset(long_id, 'k', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    ck_assert_int_eq(kg_ratelimit_acquire(rl, long_id, &some, 5, T0, &t, &info),
                     KG_ERR_INVAL);
    ck_assert_int_eq(info.limit_requests, KG_NONE);
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "", &some, 5, T0, &t, &info),
                     KG_ERR_INVAL);
    kg_ratelimit_free(&rl);
    kg_ratelimit_free(&rl);
    kg_ratelimit_free(NULL);
}
END_TEST

START_TEST(test_bad_opts)
{
    kg_ratelimit_t *rl = NULL;
    kg_ratelimit_opts_t opts = {.auth_window_ms = -1};

    ck_assert_int_eq(kg_ratelimit_new(&opts, &rl), KG_ERR_INVAL);
    ck_assert_ptr_null(rl);
}
END_TEST

/* At most max_keys entries; idle ones make room. */
START_TEST(test_max_keys)
{
    kg_ratelimit_opts_t opts = {.max_keys = 2};
    kg_ratelimit_t *rl = ut_new(&opts);
    kg_ratelimit_limits_t lim = {100, 100000, 10};
    kg_ratelimit_ticket_t t1 = {0};
    kg_ratelimit_ticket_t t2 = {0};
    kg_ratelimit_ticket_t t3 = {0};
    kg_ratelimit_info_t info;

    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k1", &lim, 5, T0, &t1, &info),
                     KG_OK);
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k2", &lim, 5, T0, &t2, &info),
                     KG_OK);
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k3", &lim, 5, T0, &t3, &info),
                     KG_ERR_UNAVAILABLE);
    ck_assert_int_eq(info.limit_requests, KG_NONE);
    ck_assert_ptr_null(t3.entry);
    /* In flight two windows later: still busy. */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k3", &lim, 5, T0 + 3 * W, &t3, &info),
        KG_ERR_UNAVAILABLE);
    kg_ratelimit_release(rl, &t1, 5, T0 + 1);
    kg_ratelimit_release(rl, &t2, 5, T0 + 1);
    /* Released but their window still counts: not idle. */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k3", &lim, 5, T0 + W, &t3, &info),
        KG_ERR_UNAVAILABLE);
    ck_assert_uint_eq(kg_ratelimit_sweep(rl, T0 + 2 * W - 1), 0);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k3", &lim, 5, T0 + 2 * W, &t3, &info), KG_OK);
    ck_assert_uint_eq(kg_ratelimit_key_count(rl), 1);
    kg_ratelimit_release(rl, &t3, 5, T0 + 2 * W);
    ck_assert_uint_eq(kg_ratelimit_sweep(rl, T0 + 4 * W), 1);
    ck_assert_uint_eq(kg_ratelimit_key_count(rl), 0);
    kg_ratelimit_free(&rl);
}
END_TEST

START_TEST(test_auth_throttle)
{
    kg_ratelimit_opts_t opts = {.auth_max_failures = 5,
                                .auth_window_ms = 60000};
    kg_ratelimit_t *rl = ut_new(&opts);
    const char *ip = "203.0.113.7";
    int64_t retry = -1;

    ck_assert(kg_ratelimit_auth_allowed(rl, ip, T0, &retry));
    ck_assert_int_eq(retry, 0);
    for (int i = 0; i < 4; i++) {
        kg_ratelimit_auth_failed(rl, ip, T0 + i * 1000);
        ck_assert(kg_ratelimit_auth_allowed(rl, ip, T0 + i * 1000, &retry));
    }
    kg_ratelimit_auth_failed(rl, ip, T0 + 10000);
    ck_assert(!kg_ratelimit_auth_allowed(rl, ip, T0 + 10000, &retry));
    ck_assert_int_eq(retry, 50);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_AUTH_THROTTLED), 429);
    /* Other addresses are not affected. */
    ck_assert(kg_ratelimit_auth_allowed(rl, "203.0.113.8", T0 + 10000, &retry));
    ck_assert(kg_ratelimit_auth_allowed(rl, NULL, T0 + 10000, &retry));
    kg_ratelimit_auth_failed(rl, NULL, T0); /* ignored */
    ck_assert(!kg_ratelimit_auth_allowed(rl, ip, T0 + 59999, &retry));
    ck_assert_int_eq(retry, 1);
    ck_assert(!kg_ratelimit_auth_allowed(rl, ip, T0 + 59999, NULL));
    /* Blocked for the rest of the window, then a fresh window. */
    ck_assert(kg_ratelimit_auth_allowed(rl, ip, T0 + 60000, &retry));
    ck_assert_int_eq(retry, 0);
    kg_ratelimit_auth_failed(rl, ip, T0 + 60000);
    ck_assert(kg_ratelimit_auth_allowed(rl, ip, T0 + 60001, &retry));
    for (int i = 0; i < 4; i++) {
        kg_ratelimit_auth_failed(rl, ip, T0 + 61000);
    }
    ck_assert(!kg_ratelimit_auth_allowed(rl, ip, T0 + 61000, &retry));
    ck_assert_int_eq(retry, 59);
    /* Ended windows are swept. */
    ck_assert_uint_eq(kg_ratelimit_auth_count(rl), 1);
    ck_assert_uint_eq(kg_ratelimit_sweep(rl, T0 + 119999), 0);
    ck_assert_uint_eq(kg_ratelimit_sweep(rl, T0 + 120000), 1);
    ck_assert_uint_eq(kg_ratelimit_auth_count(rl), 0);
    kg_ratelimit_free(&rl);
}
END_TEST

/* Addresses longer than KG_RATELIMIT_IP_MAX count under their prefix. */
START_TEST(test_auth_long_ip)
{
    kg_ratelimit_opts_t opts = {.auth_max_failures = 2};
    kg_ratelimit_t *rl = ut_new(&opts);
    char a[200];
    char b[200];

    memset(a, 'a', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[150] = 'b';
    kg_ratelimit_auth_failed(rl, a, T0);
    kg_ratelimit_auth_failed(rl, b, T0);
    ck_assert(!kg_ratelimit_auth_allowed(rl, a, T0, NULL));
    ck_assert_uint_eq(kg_ratelimit_auth_count(rl), 1);
    kg_ratelimit_free(&rl);
}
END_TEST

/* A flood from many addresses costs at most auth_max_ips entries. */
START_TEST(test_auth_bound)
{
    kg_ratelimit_opts_t opts = {.auth_max_failures = 2, .auth_max_ips = 100};
    kg_ratelimit_t *rl = ut_new(&opts);
    char ip[64];

    for (int i = 0; i < 10000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", i / 65536, i / 256 % 256,
                 i % 256);
        kg_ratelimit_auth_failed(rl, ip, T0 + i);
        ck_assert_uint_le(kg_ratelimit_auth_count(rl), 100);
    }
    ck_assert_uint_eq(kg_ratelimit_auth_count(rl), 100);
    /* The newest is still tracked: one more failure blocks it. */
    kg_ratelimit_auth_failed(rl, ip, T0 + 10000);
    ck_assert(!kg_ratelimit_auth_allowed(rl, ip, T0 + 10000, NULL));
    /* The oldest was evicted: its count started over. */
    kg_ratelimit_auth_failed(rl, "10.0.0.0", T0 + 10001);
    ck_assert(kg_ratelimit_auth_allowed(rl, "10.0.0.0", T0 + 10001, NULL));
    ck_assert_uint_eq(kg_ratelimit_auth_count(rl), 100);
    /* A blocked IP that keeps failing stays newest and blocked. */
    ck_assert(!kg_ratelimit_auth_allowed(rl, ip, T0 + 10002, NULL));
    kg_ratelimit_free(&rl);
}
END_TEST

typedef struct ut_shared {
    kg_ratelimit_t *rl;
    pthread_barrier_t barrier;
    atomic_int in_flight;
    atomic_int max_seen;
    atomic_int admitted;
    atomic_llong clock;
} ut_shared_t;

static void *ut_until_refused(void *arg)
{
    ut_shared_t *s = arg;
    kg_ratelimit_limits_t lim = {1000, KG_NONE, 3};

    pthread_barrier_wait(&s->barrier);
    for (;;) {
        kg_ratelimit_ticket_t t = {0};
        kg_ratelimit_info_t info;
        kg_err_t rc =
            kg_ratelimit_acquire(s->rl, "hot", &lim, 10, T0 + 5, &t, &info);
        int now = 0;

        if (rc == KG_OK) {
            now = atomic_fetch_add(&s->in_flight, 1) + 1;
            if (now > atomic_load(&s->max_seen)) {
                atomic_store(&s->max_seen, now);
            }
            atomic_fetch_add(&s->admitted, 1);
            atomic_fetch_sub(&s->in_flight, 1);
            kg_ratelimit_release(s->rl, &t, 10, T0 + 5);
        } else if (info.refused == KG_RATELIMIT_REQUESTS) {
            break;
        } else {
            ck_assert_int_eq(info.refused, KG_RATELIMIT_CONCURRENT);
        }
    }
    return NULL;
}

/* 8 threads at one instant: exactly rpm admitted, never over 3 at once. */
START_TEST(test_hammer_exact)
{
    static ut_shared_t s;
    pthread_t th[UT_THREADS];

    memset(&s, 0, sizeof(s));
    s.rl = ut_new(NULL);
    pthread_barrier_init(&s.barrier, NULL, UT_THREADS);
    for (int i = 0; i < UT_THREADS; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, ut_until_refused, &s), 0);
    }
    for (int i = 0; i < UT_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&s.barrier);
    ck_assert_int_eq(atomic_load(&s.admitted), 1000);
    ck_assert_int_le(atomic_load(&s.max_seen), 3);
    kg_ratelimit_free(&s.rl);
}
END_TEST

static void *ut_mixed(void *arg)
{
    ut_shared_t *s = arg;
    kg_ratelimit_limits_t lim = {200, 50000, 4};
    kg_ratelimit_limits_t other = {50, 5000, 1};
    char key[32];
    char ip[32];
    unsigned seed = (unsigned)(uintptr_t)&key;

    pthread_barrier_wait(&s->barrier);
    for (int i = 0; i < UT_ITERS; i++) {
        int64_t now = atomic_fetch_add(&s->clock, 37);
        kg_ratelimit_ticket_t t = {0};
        kg_ratelimit_ticket_t o = {0};
        kg_ratelimit_info_t info;
        kg_err_t rc;

        seed = seed * 1103515245u + 12345u;
        rc = kg_ratelimit_acquire(s->rl, "hot", &lim, seed % 300, now, &t,
                                  &info);
        ck_assert(rc == KG_OK || rc == KG_ERR_RATE_LIMITED);
        ck_assert(rc == KG_OK || info.retry_after_s >= 1);
        ck_assert_int_le(info.concurrent, 4);
        /* Twenty more keys than the table holds: some are refused. */
        snprintf(key, sizeof(key), "r%u", seed / 7 % 20);
        rc = kg_ratelimit_acquire(s->rl, key, &other, 10, now, &o, &info);
        ck_assert(rc == KG_OK || rc == KG_ERR_RATE_LIMITED ||
                  rc == KG_ERR_UNAVAILABLE);
        snprintf(ip, sizeof(ip), "192.0.2.%u", seed / 3 % 200);
        if (kg_ratelimit_auth_allowed(s->rl, ip, now, NULL)) {
            kg_ratelimit_auth_failed(s->rl, ip, now);
        }
        if (i % 500 == 0) {
            kg_ratelimit_sweep(s->rl, now);
        }
        kg_ratelimit_release(s->rl, &o, 7, now + 1);
        kg_ratelimit_release(s->rl, &t, seed % 200, now + 1);
    }
    return NULL;
}

/* 8 threads with a moving clock, sweeps and auth traffic (for TSan). */
START_TEST(test_hammer_mixed)
{
    static ut_shared_t s;
    kg_ratelimit_opts_t opts = {.max_keys = 8, .auth_max_ips = 50};
    kg_ratelimit_limits_t lim = {KG_NONE, KG_NONE, 1};
    kg_ratelimit_ticket_t t = {0};
    pthread_t th[UT_THREADS];

    memset(&s, 0, sizeof(s));
    s.rl = ut_new(&opts);
    atomic_store(&s.clock, T0);
    /* "hot" first, so the other keys cannot crowd it out. */
    ck_assert_int_eq(kg_ratelimit_acquire(s.rl, "hot", &lim, 0, T0, &t, NULL),
                     KG_OK);
    kg_ratelimit_release(s.rl, &t, 0, T0);
    pthread_barrier_init(&s.barrier, NULL, UT_THREADS);
    for (int i = 0; i < UT_THREADS; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, ut_mixed, &s), 0);
    }
    for (int i = 0; i < UT_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_barrier_destroy(&s.barrier);
    ck_assert_uint_le(kg_ratelimit_key_count(s.rl), 8);
    ck_assert_uint_le(kg_ratelimit_auth_count(s.rl), 50);
    /* Everything was released: nothing is left in flight on "hot". */
    ck_assert_int_eq(kg_ratelimit_acquire(s.rl, "hot", &lim, 0,
                                          atomic_load(&s.clock), &t, NULL),
                     KG_OK);
    kg_ratelimit_release(s.rl, &t, 0, atomic_load(&s.clock));
    kg_ratelimit_free(&s.rl);
}
END_TEST

/* ---- sharing with other instances ------------------------------------ */

/* A share row of the others' counts. */
static kg_ratelimit_share_t ut_share(const char *id, int64_t window,
                                     int64_t req_prev, int64_t req_cur,
                                     int64_t tok_prev, int64_t tok_cur)
{
    kg_ratelimit_share_t sh;

    memset(&sh, 0, sizeof(sh));
    snprintf(sh.key_id, sizeof(sh.key_id), "%s", id);
    sh.window_start = window;
    sh.req_prev = req_prev;
    sh.req_cur = req_cur;
    sh.tok_prev = tok_prev;
    sh.tok_cur = tok_cur;
    return sh;
}

/* Import one row at now, this instance alone live. */
static void ut_import(kg_ratelimit_t *rl, kg_ratelimit_share_t sh, int64_t now)
{
    kg_ratelimit_import(rl, &sh, 1, 1, now);
}

/* How many requests of id (limits lim) are admitted in a row at now. */
static int ut_admit_all(kg_ratelimit_t *rl, const char *id,
                        const kg_ratelimit_limits_t *lim, int64_t now)
{
    int n = 0;

    while (n < 1000 && ut_hit(rl, id, lim, now, NULL) == KG_OK) {
        n++;
    }
    return n;
}

/* The others' counts of the same window count with the own ones; export
 * gives the own ones alone. */
START_TEST(test_share_aligned)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {10, KG_NONE, KG_NONE};
    kg_ratelimit_info_t info;
    kg_ratelimit_share_t out[4];
    size_t n = 0;

    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ut_hit(rl, "k", &lim, T0 + i, &info), KG_OK);
    }
    ck_assert_int_eq(info.remaining_requests, 7);
    ut_import(rl, ut_share("k", T0, 0, 6, 0, 0), T0 + 10);
    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0 + 20, &info), KG_OK);
    ck_assert_int_eq(info.remaining_requests, 0);
    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0 + 30, &info),
                     KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_REQUESTS);
    /* 10 in this window: the earliest fits again 6 s into the next. */
    ck_assert_int_eq(info.retry_after_s, 66);
    ck_assert_int_eq(info.reset_requests_ms, 2 * W - 30);
    memset(out, 0x5a, sizeof(out)); /* export writes every field */
    kg_ratelimit_export(rl, T0 + 40, out, 4, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(out[0].key_id, "k");
    ck_assert_int_eq(out[0].instances, 0);
    ck_assert_int_eq(out[0].window_start, T0);
    ck_assert_int_eq(out[0].req_prev, 0);
    ck_assert_int_eq(out[0].req_cur, 4);
    /* A later import replaces the earlier one, it does not add to it. */
    ut_import(rl, ut_share("k", T0, 0, 2, 0, 0), T0 + 50);
    ck_assert_int_eq(ut_admit_all(rl, "k", &lim, T0 + 60), 4);
    /* The others' previous window weighs by its overlap, as the own. */
    ut_import(rl, ut_share("k", T0 + W, 8, 0, 0, 0), T0 + W + W / 2);
    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0 + W + W / 2, &info), KG_OK);
    /* own 8 * 0.5 + others 8 * 0.5 + this one = 9 */
    ck_assert_int_eq(info.remaining_requests, 1);
    kg_ratelimit_free(&rl);
}
END_TEST

/* A row one window behind counts its current window as previous, and the
 * imported counts roll with the entry's windows. */
START_TEST(test_share_one_behind)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {10, KG_NONE, KG_NONE};

    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0 + W, NULL), KG_OK);
    /* 30 s into the window: 8 * 0.5 = 4 of theirs, 1 of ours. */
    ut_import(rl, ut_share("k", T0, 100, 8, 0, 0), T0 + W + W / 2);
    ck_assert_int_eq(ut_admit_all(rl, "k", &lim, T0 + W + W / 2), 5);
    /* Imported while the same window: rolls into previous with the own
     * counts. */
    ck_assert_int_eq(ut_hit(rl, "k2", &lim, T0, NULL), KG_OK);
    ut_import(rl, ut_share("k2", T0, 0, 7, 0, 0), T0 + 1);
    /* (1 + 7) * 0.5 = 4 at the middle of the next window. */
    ck_assert_int_eq(ut_admit_all(rl, "k2", &lim, T0 + W + W / 2), 6);
    kg_ratelimit_free(&rl);
}
END_TEST

/* Counts of windows that no longer overlap count nothing: a row two or
 * more windows behind, and imported counts two windows later. A row one
 * ahead (a clock a little fast) counts wholly as current. */
START_TEST(test_share_stale)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {10, KG_NONE, KG_NONE};

    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0, NULL), KG_OK);
    ut_import(rl, ut_share("k", T0 - 2 * W, 50, 50, 0, 0), T0 + 1);
    ck_assert_int_eq(ut_admit_all(rl, "k", &lim, T0 + 2), 9);
    ck_assert_int_eq(ut_hit(rl, "k2", &lim, T0, NULL), KG_OK);
    ut_import(rl, ut_share("k2", T0, 50, 50, 0, 0), T0 + 1);
    ck_assert_int_eq(ut_admit_all(rl, "k2", &lim, T0 + 2), 0);
    /* Two windows on, the own and the imported counts are gone. */
    ck_assert_int_eq(ut_admit_all(rl, "k2", &lim, T0 + 2 * W), 10);
    ck_assert_int_eq(ut_hit(rl, "k3", &lim, T0, NULL), KG_OK);
    ut_import(rl, ut_share("k3", T0 + W, 3, 2, 0, 0), T0 + 1);
    ck_assert_int_eq(ut_admit_all(rl, "k3", &lim, T0 + 2), 4);
    /* An import never makes an entry; a bad id is skipped. */
    ut_import(rl, ut_share("nobody", T0, 0, 1, 0, 0), T0 + 3);
    ck_assert_uint_eq(kg_ratelimit_key_count(rl), 3);
    kg_ratelimit_free(&rl);
}
END_TEST

/* Tokens: the others' settled and in-flight tokens count; export gives
 * the own settled tokens plus the estimates in flight. */
START_TEST(test_share_tokens)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {KG_NONE, 1000, KG_NONE};
    kg_ratelimit_ticket_t t1 = {0};
    kg_ratelimit_ticket_t t2 = {0};
    kg_ratelimit_info_t info;
    kg_ratelimit_share_t out[2];
    size_t n = 0;

    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k", &lim, 100, T0, &t1, &info),
                     KG_OK);
    kg_ratelimit_release(rl, &t1, 40, T0 + 1);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 100, T0 + 2, &t1, &info), KG_OK);
    kg_ratelimit_export(rl, T0 + 3, out, 2, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(out[0].tok_cur, 140);
    ck_assert_int_eq(out[0].tok_prev, 0);
    ut_import(rl, ut_share("k", T0, 0, 0, 0, 800), T0 + 4);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 61, T0 + 5, &t2, &info),
        KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_TOKENS);
    ck_assert_int_eq(info.remaining_tokens, 60);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 60, T0 + 6, &t2, &info), KG_OK);
    ck_assert_int_eq(info.remaining_tokens, 0);
    kg_ratelimit_release(rl, &t1, 0, T0 + 7);
    kg_ratelimit_release(rl, &t2, 0, T0 + 7);
    kg_ratelimit_free(&rl);
}
END_TEST

/* Concurrency stays per instance: the others' counts never add to it,
 * and a key limited only in concurrency is not shared. */
START_TEST(test_share_concurrency_untouched)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {100, KG_NONE, 2};
    kg_ratelimit_limits_t conc = {KG_NONE, KG_NONE, 1};
    kg_ratelimit_ticket_t t[3];
    kg_ratelimit_info_t info;
    kg_ratelimit_share_t out[4];
    size_t n = 0;

    memset(t, 0, sizeof(t));
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k", &lim, 0, T0, &t[0], &info),
                     KG_OK);
    ck_assert_int_eq(kg_ratelimit_acquire(rl, "c", &conc, 0, T0, &t[2], &info),
                     KG_OK);
    ut_import(rl, ut_share("k", T0, 0, 50, 0, 0), T0 + 1);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 0, T0 + 2, &t[1], &info), KG_OK);
    ck_assert_int_eq(info.concurrent, 2);
    ck_assert_int_eq(info.remaining_requests, 48);
    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0 + 3, &info), KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_CONCURRENT);
    kg_ratelimit_export(rl, T0 + 4, out, 4, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(out[0].key_id, "k");
    ck_assert_int_eq(out[0].req_cur, 2);
    for (int i = 0; i < 3; i++) {
        kg_ratelimit_release(rl, &t[i], 0, T0 + 5);
    }
    kg_ratelimit_free(&rl);
}
END_TEST

/* More keys than one export takes: successive exports take turns, each
 * key once in every round. */
START_TEST(test_share_export_turns)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {10, KG_NONE, KG_NONE};
    kg_ratelimit_share_t out[2];
    char id[8];
    int seen[5] = {0};
    size_t n = 0;

    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "k%d", i);
        ck_assert_int_eq(ut_hit(rl, id, &lim, T0, NULL), KG_OK);
    }
    for (int round = 0; round < 2; round++) {
        memset(seen, 0, sizeof(seen));
        for (int call = 0; call < 5; call++) {
            kg_ratelimit_export(rl, T0 + 1, out, 2, &n);
            ck_assert_uint_eq(n, 2);
            for (size_t i = 0; i < n; i++) {
                ck_assert_int_eq(out[i].key_id[0], 'k');
                seen[out[i].key_id[1] - '0']++;
            }
        }
        /* Five calls of two: every key twice, none left out. */
        for (int i = 0; i < 5; i++) {
            ck_assert_int_eq(seen[i], 2);
        }
    }
    kg_ratelimit_export(rl, T0 + 1, out, 0, &n);
    ck_assert_uint_eq(n, 0);
    kg_ratelimit_free(&rl);
}
END_TEST

/* A key first seen while others share the store: its room is split among
 * the live instances until its first import, which splits it among those
 * that count the key; the split lapses when imports stop. */
START_TEST(test_share_split_new_key)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {30, KG_NONE, KG_NONE};
    kg_ratelimit_share_t sh;
    kg_ratelimit_info_t info;

    kg_ratelimit_import(rl, NULL, 0, 3, T0);
    ck_assert_int_eq(ut_admit_all(rl, "k", &lim, T0 + 10), 10);
    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0 + 20, &info),
                     KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_REQUESTS);
    ck_assert_int_eq(info.retry_after_s, 1);
    ck_assert_int_eq(info.remaining_requests, 0);
    /* Nobody else counts it: the whole room is this instance's. */
    ut_import(rl, ut_share("k", T0, 0, 0, 0, 0), T0 + 1000);
    ck_assert_int_eq(ut_admit_all(rl, "k", &lim, T0 + 1010), 20);
    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0 + 1020, &info),
                     KG_ERR_RATE_LIMITED);
    ck_assert_int_gt(info.retry_after_s, 1); /* the window is full */
    /* Once the last import is older than the hold, new keys are not
     * split; nor with this instance alone. */
    ck_assert_int_eq(ut_admit_all(rl, "k2", &lim,
                                  T0 + 1000 + KG_RATELIMIT_SHARE_HOLD_MS + 1),
                     30);
    kg_ratelimit_import(rl, NULL, 0, 1, T0 + 2 * W);
    ck_assert_int_eq(ut_admit_all(rl, "k3", &lim, T0 + 2 * W + 1), 30);
    /* Split among the live instances even when no other counts the key
     * yet: 29 left, 9 of them. */
    sh = ut_share("k3", T0 + 2 * W, 0, 0, 0, 0);
    kg_ratelimit_import(rl, &sh, 1, 3, T0 + 4 * W);
    ck_assert_int_eq(ut_hit(rl, "k3", &lim, T0 + 4 * W, NULL), KG_OK);
    kg_ratelimit_import(rl, &sh, 1, 3, T0 + 4 * W + 1);
    ck_assert_int_eq(ut_admit_all(rl, "k3", &lim, T0 + 4 * W + 2), 9);
    kg_ratelimit_free(&rl);
}
END_TEST

/* Each import starts a round: this instance takes 1/k of the room it sees
 * (k = 1 + the instances counting the key) less what it took in the last
 * round, the first request of a round when neither took anything, and
 * the split lapses when the next import does not come. */
START_TEST(test_share_split_rounds)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {30, KG_NONE, KG_NONE};
    kg_ratelimit_limits_t three = {3, KG_NONE, KG_NONE};
    kg_ratelimit_share_t sh = ut_share("k", T0, 0, 6, 0, 0);

    ck_assert_int_eq(ut_hit(rl, "k", &lim, T0, NULL), KG_OK);
    ck_assert_int_eq(ut_hit(rl, "s", &three, T0, NULL), KG_OK);
    sh.instances = 2;
    kg_ratelimit_import(rl, &sh, 1, 3, T0 + 1);
    /* 30 - 1 - 6 = 23 left: 7 of them (and the first of the round). */
    ck_assert_int_eq(ut_admit_all(rl, "k", &lim, T0 + 2), 7);
    /* The 7 count against this round too (the others may not have seen
     * them when they split theirs): 7 of 23 are taken already. */
    kg_ratelimit_import(rl, &sh, 1, 3, T0 + 1000);
    ck_assert_int_eq(ut_admit_all(rl, "k", &lim, T0 + 1001), 0);
    kg_ratelimit_import(rl, &sh, 1, 3, T0 + 2000);
    /* 30 - 8 - 6 = 16 left: 5. */
    ck_assert_int_eq(ut_admit_all(rl, "k", &lim, T0 + 2001), 5);
    /* No import for longer than the hold: the window alone. */
    ck_assert_int_eq(
        ut_admit_all(rl, "k", &lim, T0 + 2000 + KG_RATELIMIT_SHARE_HOLD_MS + 1),
        11);
    /* A room smaller than the instances: the first of a round fits when
     * the last round took nothing, so every other round. */
    sh = ut_share("s", T0, 0, 0, 0, 0);
    sh.instances = 5;
    kg_ratelimit_import(rl, &sh, 1, 6, T0 + 10);
    ck_assert_int_eq(ut_admit_all(rl, "s", &three, T0 + 11), 1);
    kg_ratelimit_import(rl, &sh, 1, 6, T0 + 1010);
    ck_assert_int_eq(ut_admit_all(rl, "s", &three, T0 + 1011), 0);
    kg_ratelimit_import(rl, &sh, 1, 6, T0 + 2010);
    ck_assert_int_eq(ut_admit_all(rl, "s", &three, T0 + 2011), 1);
    kg_ratelimit_free(&rl);
}
END_TEST

/* Tokens are split as requests are; a request larger than the share fits
 * as the first of its round, and counts against the next one's too. */
START_TEST(test_share_split_tokens)
{
    kg_ratelimit_t *rl = ut_new(NULL);
    kg_ratelimit_limits_t lim = {KG_NONE, 3000, KG_NONE};
    kg_ratelimit_share_t sh = ut_share("k", T0, 0, 0, 0, 0);
    kg_ratelimit_ticket_t t1 = {0};
    kg_ratelimit_ticket_t t2 = {0};
    kg_ratelimit_info_t info;

    ck_assert_int_eq(kg_ratelimit_acquire(rl, "k", &lim, 0, T0, &t1, NULL),
                     KG_OK);
    kg_ratelimit_release(rl, &t1, 0, T0);
    sh.instances = 2;
    kg_ratelimit_import(rl, &sh, 1, 3, T0 + 1);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 1500, T0 + 2, &t1, &info), KG_OK);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 100, T0 + 3, &t2, &info),
        KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.refused, KG_RATELIMIT_TOKENS);
    ck_assert_int_eq(info.remaining_tokens, 0);
    ck_assert_int_eq(info.retry_after_s, 1);
    kg_ratelimit_import(rl, &sh, 1, 3, T0 + 1000);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 500, T0 + 1001, &t2, &info),
        KG_ERR_RATE_LIMITED);
    ck_assert_int_eq(info.remaining_tokens, 0);
    kg_ratelimit_import(rl, &sh, 1, 3, T0 + 2000);
    /* 1500 left: 500 of them. */
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 500, T0 + 2001, &t2, &info), KG_OK);
    kg_ratelimit_release(rl, &t2, 500, T0 + 2002);
    ck_assert_int_eq(
        kg_ratelimit_acquire(rl, "k", &lim, 1, T0 + 2003, &t2, &info),
        KG_ERR_RATE_LIMITED);
    kg_ratelimit_release(rl, &t1, 1500, T0 + 2004);
    kg_ratelimit_free(&rl);
}
END_TEST

typedef struct ut_share_hammer {
    kg_ratelimit_t *rl;
    pthread_barrier_t barrier;
    atomic_int admitted;
    atomic_bool done;
} ut_share_hammer_t;

static void *ut_share_admit(void *arg)
{
    ut_share_hammer_t *s = arg;
    kg_ratelimit_limits_t lim = {1000, 100000, 8};

    pthread_barrier_wait(&s->barrier);
    for (int i = 0; i < UT_ITERS; i++) {
        kg_ratelimit_ticket_t t = {0};
        kg_ratelimit_info_t info;

        if (kg_ratelimit_acquire(s->rl, "hot", &lim, 10, T0 + 5, &t, &info) ==
            KG_OK) {
            atomic_fetch_add(&s->admitted, 1);
            kg_ratelimit_release(s->rl, &t, 10, T0 + 5);
        }
    }
    return NULL;
}

static void *ut_share_sync(void *arg)
{
    ut_share_hammer_t *s = arg;
    kg_ratelimit_share_t rows[4];
    size_t n = 0;

    memset(rows, 0, sizeof(rows));
    pthread_barrier_wait(&s->barrier);
    while (!atomic_load(&s->done)) {
        kg_ratelimit_export(s->rl, T0 + 5, rows, 4, &n);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_le(rows[i].req_cur, 600);
            rows[i].window_start = T0;
            rows[i].req_prev = 0;
            rows[i].req_cur = 400;
            rows[i].tok_prev = 0;
            rows[i].tok_cur = 0;
            rows[i].instances = 0; /* no split: this instance alone */
        }
        kg_ratelimit_import(s->rl, rows, n, 1, T0 + 5);
    }
    return NULL;
}

/* Exports and imports while 8 threads admit: exactly what the others'
 * 400 leave of the 1000 is admitted, never more. */
START_TEST(test_share_hammer)
{
    static ut_share_hammer_t s;
    pthread_t th[UT_THREADS + 1];
    kg_ratelimit_ticket_t t = {0};
    kg_ratelimit_limits_t lim = {1000, 100000, 8};

    memset(&s, 0, sizeof(s));
    s.rl = ut_new(NULL);
    ck_assert_int_eq(kg_ratelimit_acquire(s.rl, "hot", &lim, 0, T0, &t, NULL),
                     KG_OK);
    kg_ratelimit_release(s.rl, &t, 0, T0);
    ut_import(s.rl, ut_share("hot", T0, 0, 400, 0, 0), T0);
    pthread_barrier_init(&s.barrier, NULL, UT_THREADS + 1);
    ck_assert_int_eq(pthread_create(&th[UT_THREADS], NULL, ut_share_sync, &s),
                     0);
    for (int i = 0; i < UT_THREADS; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, ut_share_admit, &s), 0);
    }
    for (int i = 0; i < UT_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    atomic_store(&s.done, true);
    pthread_join(th[UT_THREADS], NULL);
    pthread_barrier_destroy(&s.barrier);
    /* The first request above took one of the 600. */
    ck_assert_int_eq(atomic_load(&s.admitted), 599);
    kg_ratelimit_free(&s.rl);
}
END_TEST

static Suite *ratelimit_suite(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rpm_exact);
    tcase_add_test(tc, test_rpm_slide);
    tcase_add_test(tc, test_rpm_zero);
    tcase_add_test(tc, test_tpm);
    tcase_add_test(tc, test_concurrency);
    tcase_add_test(tc, test_headers);
    tcase_add_loop_test(tc, test_format_reset, 0, (int)UT_NROWS(ut_reset_rows));
    tcase_add_test(tc, test_no_limits);
    tcase_add_test(tc, test_bad_opts);
    tcase_add_test(tc, test_max_keys);
    tcase_add_test(tc, test_auth_throttle);
    tcase_add_test(tc, test_auth_long_ip);
    tcase_add_test(tc, test_auth_bound);
    tcase_add_test(tc, test_hammer_exact);
    tcase_add_test(tc, test_hammer_mixed);
    tcase_add_test(tc, test_share_aligned);
    tcase_add_test(tc, test_share_one_behind);
    tcase_add_test(tc, test_share_stale);
    tcase_add_test(tc, test_share_tokens);
    tcase_add_test(tc, test_share_concurrency_untouched);
    tcase_add_test(tc, test_share_export_turns);
    tcase_add_test(tc, test_share_split_new_key);
    tcase_add_test(tc, test_share_split_rounds);
    tcase_add_test(tc, test_share_split_tokens);
    tcase_add_test(tc, test_share_hammer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(ratelimit_suite());
}
