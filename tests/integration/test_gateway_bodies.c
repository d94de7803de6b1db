/* Gateway tests: real-size bodies, answers and streams; idle connections. */
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway_fixture.h"

#define KIB 1024
#define MIB (1024 * 1024)
/* The idle-connection settings of this world. */
#define IDLE_MAX        2 /* per provider: 1 per loop with 2 threads */
#define IDLE_TIMEOUT_MS 2000
#define IDLE_PROVIDERS  4 /* providers in the fixture's configuration */
#define IDLE_STREAMS    24
/* The mock answers with what it received (keygate forwards no x-mock-*). */
#define ECHO "\"mock\":{\"mode\":\"echo\"},"

/* One daemon for the whole case (tests only add requests). */
static gwf_t W;
static gwf_key_t K;

static void setup_bodies(void)
{
    gwf_root_new("kg-gw-bodies");
    gwf_init(&W, false);
    gwf_config(&W, "max_body_bytes = 4m\npurge_interval = 1h\n",
               "max_idle_connections = 2\nidle_connection_timeout = 2s\n",
               NULL);
    gwf_init_store(&W);
    gwf_key_create(&W, &K, "bodies", NULL);
    gwf_start(&W);
}

static void teardown_bodies(void)
{
    bool clean = gwf_stop_checked(&W);

    gwf_free(&W);
    gwf_root_free();
    ck_assert_msg(clean, "the shared daemon did not stop cleanly");
}

/*
 * A chat body of about size bytes: first (members, each with its comma),
 * the marker, a message whose text fills it up, then tail (",..." members,
 * may be NULL). New; *len its length.
 */
static char *big_chat(size_t size, const char *first, const char *marker,
                      const char *tail, size_t *len)
{
    static const char text[] = "All work and no play makes a long prompt. ";
    size_t cap = size + strlen(first) + (tail ? strlen(tail) : 0) + 256;
    char *b = malloc(cap);
    size_t k;
    int n;

    ck_assert_ptr_nonnull(b);
    n = snprintf(b, cap,
                 "{%s\"user\":\"%s\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"",
                 first, marker);
    ck_assert(n > 0 && (size_t)n < cap);
    k = (size_t)n;
    while (k + sizeof(text) < size) {
        memcpy(b + k, text, sizeof(text) - 1);
        k += sizeof(text) - 1;
    }
    n = snprintf(b + k, cap - k, "\"}]%s}", tail ? tail : "");
    ck_assert(n > 0 && (size_t)n < cap - k);
    *len = k + (size_t)n;
    return b;
}

/* The body the mock received, from its echo answer (new). */
static char *echoed_body(const gwf_resp_t *r, size_t *len)
{
    json_t *j = gwf_resp_json(r); /* new */
    const json_t *body = json_object_get(j, "body");
    char *copy;

    ck_assert_msg(json_is_string(body), "no echoed body: %.200s", r->body);
    *len = json_string_length(body);
    copy = malloc(*len + 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, json_string_value(body), *len + 1);
    json_decref(j);
    return copy;
}

/* ---- requests ------------------------------------------------------------ */

/*
 * A body of 16 KB (rewritten into a new buffer), 128 KB and 1 MB (spliced
 * on the way up) reaches the provider byte for byte, with the upstream
 * model and include_usage the only changes: _i picks the size, and whether
 * the model comes first or last.
 */
START_TEST(test_large_body_rewritten)
{
    static const size_t sizes[] = {16 * KIB, 128 * KIB, MIB};
    size_t size = sizes[_i % 3];
    bool model_last = _i >= 3;
    char marker[GWF_MARKER_MAX];
    char cred[160];
    const char *hdrs[2] = {NULL, NULL};
    char *body;
    char *want;
    char *got;
    size_t len;
    size_t wlen;
    size_t glen;
    gwf_resp_t r;
    gwf_usage_t u;

    gwf_marker(marker, sizeof(marker));
    if (model_last) {
        /* "model" after the big message: its span is near the end. */
        body = big_chat(size, "\"stream\":true," ECHO, marker,
                        ",\"model\":\"renamed\"", &len);
        want = big_chat(size, "\"stream\":true," ECHO, marker,
                        ",\"model\":\"other-name\",\"stream_options\":{"
                        "\"include_usage\":true}",
                        &wlen);
    } else {
        body = big_chat(size, "\"model\":\"renamed\",\"stream\":true," ECHO,
                        marker, NULL, &len);
        want = big_chat(size, "\"model\":\"other-name\",\"stream\":true," ECHO,
                        marker, ",\"stream_options\":{\"include_usage\":true}",
                        &wlen);
    }
    hdrs[0] = gwf_bearer(&K, cred, sizeof(cred));
    gwf_http(&W, &r, "POST", "/v1/chat/completions", hdrs, body, 30000);
    ck_assert_msg(r.status == 200, "size %zu: status %ld: %.300s", size,
                  r.status, r.body);
    got = echoed_body(&r, &glen);
    ck_assert_uint_eq(glen, wlen);
    ck_assert_msg(memcmp(got, want, wlen) == 0,
                  "size %zu: the provider got other bytes", size);
    /* Charged against the public model, the estimate from 1 MB of text. */
    ck_assert(gwf_usage(&W, r.request_id, &u));
    ck_assert_str_eq(u.model, "renamed");
    free(got);
    free(want);
    free(body);
    gwf_resp_free(&r);
}
END_TEST

/* Nothing to change: a 1 MB body goes up exactly as sent. */
START_TEST(test_large_body_untouched)
{
    char marker[GWF_MARKER_MAX];
    char cred[160];
    const char *hdrs[2] = {NULL, NULL};
    char *body;
    char *got;
    size_t len;
    size_t glen;
    gwf_resp_t r;

    gwf_marker(marker, sizeof(marker));
    body = big_chat(MIB, "\"model\":\"gpt-4o\"," ECHO, marker, NULL, &len);
    hdrs[0] = gwf_bearer(&K, cred, sizeof(cred));
    gwf_http(&W, &r, "POST", "/v1/chat/completions", hdrs, body, 30000);
    ck_assert_msg(r.status == 200, "status %ld: %.300s", r.status, r.body);
    got = echoed_body(&r, &glen);
    ck_assert_uint_eq(glen, len);
    ck_assert(memcmp(got, body, len) == 0);
    free(got);
    free(body);
    gwf_resp_free(&r);
}
END_TEST

/*
 * 1 MB bodies that must be refused, the fault at the far end: a duplicate
 * top-level model, a duplicate include_usage, invalid UTF-8, truncated
 * JSON, a wrong type. Nothing reaches the provider.
 */
START_TEST(test_large_body_refused)
{
    static const char *const tails[] = {
        ",\"model\":\"renamed\"",
        ",\"stream_options\":{\"include_usage\":false,\"include_usage\":true}",
        ",\"x\":\"\xC3\x28\"",
        ",\"x\":[1,2",
        ",\"max_tokens\":\"100\"",
        ",\"mod\\u0065l\":\"renamed\"",
    };
    static const char *const says[] = {
        "duplicate",      "duplicate",  "UTF-8",
        "not valid JSON", "max_tokens", "duplicate",
    };
    char marker[GWF_MARKER_MAX];
    char cred[160];
    char *body;
    size_t len;
    gwf_resp_t r;

    gwf_marker(marker, sizeof(marker));
    body = big_chat(MIB, "\"model\":\"gpt-4o\",", marker, tails[_i], &len);
    gwf_post(&W, &r, "/v1/chat/completions", gwf_bearer(&K, cred, sizeof(cred)),
             body);
    gwf_assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_msg(strstr(r.body, says[_i]) != NULL, "%d: %s", _i, r.body);
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 0);
    free(body);
    gwf_resp_free(&r);
}
END_TEST

/* Duplicates below the top level are the provider's to judge. */
START_TEST(test_nested_duplicate_forwarded)
{
    char marker[GWF_MARKER_MAX];
    char cred[160];
    char *body;
    size_t len;
    gwf_resp_t r;

    gwf_marker(marker, sizeof(marker));
    body = big_chat(64 * KIB, "\"model\":\"gpt-4o\",", marker,
                    ",\"metadata\":{\"a\":\"1\",\"a\":\"2\"}", &len);
    gwf_post(&W, &r, "/v1/chat/completions", gwf_bearer(&K, cred, sizeof(cred)),
             body);
    ck_assert_msg(r.status == 200, "status %ld: %s", r.status, r.body);
    ck_assert_int_eq(gwf_log_count(W.mock_log, marker), 1);
    free(body);
    gwf_resp_free(&r);
}
END_TEST

/* ---- answers --------------------------------------------------------------
 */

/*
 * A 64 KB chat answer and a 1 MB embeddings answer: relayed whole, usage
 * found after the bulk and charged, the pool credential (echoed in a 1 MB
 * answer) masked.
 */
START_TEST(test_large_json_answers)
{
    char marker[GWF_MARKER_MAX];
    char cred[160];
    char body[512];
    const char *hdrs[2] = {NULL, NULL};
    char *big;
    size_t len;
    gwf_resp_t r;
    gwf_usage_t u;
    int n;

    gwf_marker(marker, sizeof(marker));
    n = snprintf(body, sizeof(body),
                 "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"mock\":{\"pad\":"
                 "65536,\"prompt_tokens\":123,\"completion_tokens\":4567},"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                 marker);
    ck_assert(n > 0 && (size_t)n < sizeof(body));
    gwf_post(&W, &r, "/v1/chat/completions", gwf_bearer(&K, cred, sizeof(cred)),
             body);
    ck_assert_msg(r.status == 200, "status %ld", r.status);
    ck_assert_uint_gt(r.body_len, 65536);
    ck_assert_ptr_nonnull(strstr(r.body, "\"completion_tokens\":4567"));
    ck_assert(gwf_usage(&W, r.request_id, &u));
    ck_assert_int_eq(u.prompt_tokens, 123);
    ck_assert_int_eq(u.completion_tokens, 4567);
    gwf_resp_free(&r);

    n = snprintf(body, sizeof(body),
                 "{\"model\":\"text-embedding-3-small\",\"user\":\"%s\","
                 "\"input\":[\"a\",\"b\"],\"mock\":{\"pad\":1048576,"
                 "\"prompt_tokens\":88}}",
                 marker);
    ck_assert(n > 0 && (size_t)n < sizeof(body));
    gwf_post(&W, &r, "/v1/embeddings", gwf_bearer(&K, cred, sizeof(cred)),
             body);
    ck_assert_msg(r.status == 200, "status %ld", r.status);
    ck_assert_uint_gt(r.body_len, MIB);
    ck_assert(gwf_usage(&W, r.request_id, &u));
    ck_assert_int_eq(u.prompt_tokens, 88);
    ck_assert_str_eq(u.operation, "embeddings");
    gwf_resp_free(&r);

    /* The echo of a 1 MB body: the pool credential in it is masked. */
    big = big_chat(MIB, "\"model\":\"gpt-4o\"," ECHO, marker, NULL, &len);
    hdrs[0] = gwf_bearer(&K, cred, sizeof(cred));
    gwf_http(&W, &r, "POST", "/v1/chat/completions", hdrs, big, 30000);
    ck_assert_msg(r.status == 200, "status %ld", r.status);
    ck_assert_uint_gt(r.body_len, MIB);
    ck_assert_ptr_null(memmem(r.body, r.body_len, GWF_PROVIDER_CANARY,
                              strlen(GWF_PROVIDER_CANARY)));
    ck_assert_ptr_nonnull(strstr(r.body, "Bearer *****"));
    free(big);
    gwf_resp_free(&r);
}
END_TEST

/*
 * A 1 MB stream (16 events of 64 KB): every event relayed in order, the
 * include_usage chunk keygate asked for read and removed, usage charged.
 */
START_TEST(test_large_stream)
{
    char marker[GWF_MARKER_MAX];
    char cred[160];
    char body[512];
    gwf_resp_t r;
    gwf_usage_t u;
    int n;

    gwf_marker(marker, sizeof(marker));
    n = snprintf(body, sizeof(body),
                 "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"stream\":true,"
                 "\"mock\":{\"events\":16,\"pad\":65536,\"prompt_tokens\":"
                 "31,\"completion_tokens\":16384},\"messages\":[{\"role\":"
                 "\"user\",\"content\":\"hi\"}]}",
                 marker);
    ck_assert(n > 0 && (size_t)n < sizeof(body));
    gwf_post(&W, &r, "/v1/chat/completions", gwf_bearer(&K, cred, sizeof(cred)),
             body);
    ck_assert_msg(r.curl_rc == CURLE_OK && r.status == 200,
                  "curl %d status %ld", r.curl_rc, r.status);
    ck_assert_uint_gt(r.body_len, 16 * 65536);
    ck_assert_uint_eq(gwf_count(r.body, r.body_len, "data: "), 17);
    ck_assert_uint_eq(gwf_count(r.body, r.body_len, "\"tok15 "), 1);
    ck_assert_uint_eq(gwf_count(r.body, r.body_len, "\"choices\":[]"), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "data: [DONE]\n\n"));
    ck_assert(gwf_usage(&W, r.request_id, &u));
    ck_assert_int_eq(u.prompt_tokens, 31);
    ck_assert_int_eq(u.completion_tokens, 16384);
    ck_assert_int_eq(u.streamed, 1);
    gwf_resp_free(&r);
}
END_TEST

/* ---- idle provider connections ------------------------------------------ */

/*
 * IDLE_STREAMS streams at once open as many provider connections (HTTP/1.1);
 * once they end, keygate keeps at most its cache (IDLE_MAX per provider,
 * per loop a share times the providers), and after idle_connection_timeout
 * none. gwf_tcp_established counts both ends of each connection.
 */
START_TEST(test_idle_connections_bounded)
{
    int fds[IDLE_STREAMS];
    char req[2048];
    char body[512];
    int peak = 0;
    int now = 0;
    int n;
    int64_t deadline;

    n = snprintf(body, sizeof(body),
                 "{\"model\":\"gpt-4o\",\"stream\":true,\"mock\":{\"events\":"
                 "3,\"interval_ms\":400},\"messages\":[]}");
    ck_assert(n > 0 && (size_t)n < sizeof(body));
    n = gwf_raw_post(req, sizeof(req), "/v1/chat/completions", K.token, body,
                     strlen(body));
    for (int i = 0; i < IDLE_STREAMS; i++) {
        fds[i] = gwf_connect(W.gw_port);
        ck_assert_int_ge(fds[i], 0);
        ck_assert(gwf_send_all(fds[i], req, (size_t)n));
    }
    /* All open at once: one provider connection each. */
    deadline = gwf_now_ms() + 1000;
    while (gwf_now_ms() < deadline && peak < 2 * IDLE_STREAMS) {
        now = gwf_tcp_established(W.mock_port);
        peak = now > peak ? now : peak;
        gwf_sleep_ms(20);
    }
    ck_assert_int_ge(peak, 2 * IDLE_STREAMS);
    for (int i = 0; i < IDLE_STREAMS; i++) {
        gwf_buf_t b = {0};

        ck_assert_int_eq(gwf_recv_until(fds[i], &b, "data: [DONE]", 10000), 1);
        gwf_buf_free(&b);
        close(fds[i]);
    }
    /* Past the cache, the oldest idle ones close as the transfers end. */
    deadline = gwf_now_ms() + 1000;
    do {
        gwf_sleep_ms(50);
        now = gwf_tcp_established(W.mock_port);
    } while (now > 2 * IDLE_MAX * IDLE_PROVIDERS && gwf_now_ms() < deadline);
    ck_assert_msg(now <= 2 * IDLE_MAX * IDLE_PROVIDERS,
                  "%d connection ends to the provider after the burst", now);
    /* After idle_connection_timeout of no traffic: none. */
    deadline = gwf_now_ms() + IDLE_TIMEOUT_MS + 3000;
    do {
        gwf_sleep_ms(100);
        now = gwf_tcp_established(W.mock_port);
    } while (now > 0 && gwf_now_ms() < deadline);
    ck_assert_msg(now == 0, "%d connection ends left after the idle timeout",
                  now);
    /* And the next request opens a fresh one and works. */
    {
        char cred[160];
        gwf_resp_t r;

        gwf_post(&W, &r, "/v1/chat/completions",
                 gwf_bearer(&K, cred, sizeof(cred)),
                 "{\"model\":\"gpt-4o\",\"messages\":[]}");
        ck_assert_int_eq(r.status, 200);
        gwf_resp_free(&r);
    }
}
END_TEST

static Suite *bodies_suite(void)
{
    Suite *s = suite_create("gateway_bodies");
    TCase *tc = tcase_create("bodies");

    tcase_add_unchecked_fixture(tc, setup_bodies, teardown_bodies);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_large_body_rewritten, 0, 6);
    tcase_add_test(tc, test_large_body_untouched);
    tcase_add_loop_test(tc, test_large_body_refused, 0, 6);
    tcase_add_test(tc, test_nested_duplicate_forwarded);
    tcase_add_test(tc, test_large_json_answers);
    tcase_add_test(tc, test_large_stream);
    tcase_add_test(tc, test_idle_connections_bounded);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(bodies_suite());
}
