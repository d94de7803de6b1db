/* Gateway tests: CLI changes while running, kill -9 and SIGTERM drain. */
#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway_fixture.h"

#define REVOKE_BOUND_MS 1200 /* "within one second", with scheduling slack */
#define REVOKE_POLL_MS  2000

/* The revocation case shares one daemon; the others make their own. */
static gwf_t W;
static gwf_key_t K_REVOKE;
static gwf_key_t K_DISABLE;
static gwf_key_t K_ROTATE;
static gwf_key_t K_THREADS;
static gwf_key_t K_LEAK;

static void setup_root(void)
{
    gwf_root_new("kg-gw-life");
}

static void teardown_root(void)
{
    gwf_root_free();
}

static void setup_revocation(void)
{
    gwf_root_new("kg-gw-revoke");
    gwf_init(&W, false);
    gwf_config(&W, NULL, NULL, NULL);
    gwf_init_store(&W);
    gwf_key_create(&W, &K_REVOKE, "to-revoke", NULL);
    gwf_key_create(&W, &K_DISABLE, "to-disable", NULL);
    gwf_key_create(&W, &K_ROTATE, "to-rotate", NULL);
    gwf_key_create(&W, &K_THREADS, "threads", NULL);
    gwf_key_create(&W, &K_LEAK, "leaked", NULL);
    gwf_start(&W);
}

static void teardown_revocation(void)
{
    bool clean = gwf_stop_checked(&W);

    gwf_free(&W);
    gwf_root_free();
    ck_assert_msg(clean, "the shared daemon did not stop cleanly");
}

/* ---- threads ----------------------------------------------------------- */

/* The daemon's threads by name, their count, and the nice value of the
 * one named kg-usage. */
typedef struct thread_census {
    int total;
    int loops;
    int main_thread;
    int usage;
    int keycache;
    int maint;
    int admin;
    int other;
    int usage_nice;
} thread_census_t;

static void census(pid_t pid, thread_census_t *c)
{
    char dir[64];
    DIR *d;
    struct dirent *de;

    memset(c, 0, sizeof(*c));
    c->usage_nice = -100;
    snprintf(dir, sizeof(dir), "/proc/%ld/task", (long)pid);
    d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        char path[384];
        char comm[32] = "";
        char *end = NULL;
        long tid = strtol(de->d_name, &end, 10);
        FILE *fp;

        if (end == de->d_name || *end != '\0' || tid <= 0) {
            continue; /* ".", ".." */
        }
        snprintf(path, sizeof(path), "%s/%s/comm", dir, de->d_name);
        fp = fopen(path, "r");
        if (fp == NULL) {
            continue;
        }
        if (fgets(comm, sizeof(comm), fp) != NULL) {
            comm[strcspn(comm, "\n")] = '\0';
        }
        fclose(fp);
        c->total++;
        if (strncmp(comm, "kg-loop-", 8) == 0) {
            c->loops++;
        } else if (strcmp(comm, "kg-usage") == 0) {
            c->usage++;
            errno = 0;
            c->usage_nice = getpriority(PRIO_PROCESS, (id_t)tid);
            ck_assert_int_eq(errno, 0);
        } else if (strcmp(comm, "kg-keycache") == 0) {
            c->keycache++;
        } else if (strcmp(comm, "kg-maint") == 0) {
            c->maint++;
        } else if (strncmp(comm, "kg-admin-", 9) == 0) {
            c->admin++;
        } else if (tid == (long)pid) {
            c->main_thread++;
        } else {
            c->other++;
        }
    }
    closedir(d);
}

/*
 * The running daemon has exactly its named threads: one event loop per
 * [server] threads (2 here), the usage writer at nice 5, the key-cache
 * refresh, the maintenance thread and the admin listener's [admin] threads
 * (2 by default); forwarded requests add none.
 */
START_TEST(test_threads_named_and_bounded)
{
    const char *body = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
                       "\"content\":\"threads\"}]}";
    char cred[160];
    thread_census_t before;
    thread_census_t after;

    census(W.gw_pid, &before);
    ck_assert_int_eq(before.loops, 2);
    ck_assert_int_eq(before.main_thread, 1);
    ck_assert_int_eq(before.usage, 1);
    ck_assert_int_eq(before.keycache, 1);
    ck_assert_int_eq(before.maint, 1);
    ck_assert_int_eq(before.admin, 2);
    ck_assert_int_eq(before.other, 0);
    ck_assert_int_eq(before.usage_nice, 5);

    gwf_bearer(&K_THREADS, cred, sizeof(cred));
    for (int i = 0; i < 20; i++) {
        gwf_resp_t r;

        gwf_post(&W, &r, "/v1/chat/completions", cred, body);
        ck_assert_int_eq(r.status, 200);
        gwf_resp_free(&r);
    }
    census(W.gw_pid, &after);
    ck_assert_int_eq(after.total, before.total);
    ck_assert_int_eq(after.usage_nice, 5);
}
END_TEST

/* ---- CLI changes take effect in the running daemon ----------------------- */

static long models_status(const gwf_t *f, const char *token)
{
    char cred[160];
    gwf_resp_t r;
    long status;

    snprintf(cred, sizeof(cred), "Authorization: Bearer %s", token);
    /* Each key from its own address: the refusals polled for are failed
     * authentications, throttled per client address. */
    gwf_source_ip = token == K_REVOKE.token    ? "127.0.3.1"
                    : token == K_DISABLE.token ? "127.0.3.2"
                                               : "127.0.3.3";
    gwf_get(f, &r, "/v1/models", cred);
    gwf_source_ip = NULL;
    status = r.status;
    if (status == 401) {
        gwf_assert_error(&r, 401, "invalid_api_key", GWF_MSG_INVALID);
    }
    gwf_resp_free(&r);
    return status;
}

/* Poll until the token gets want; the time it took, or -1 after the poll
 * bound. */
static int64_t time_until(const char *token, long want)
{
    int64_t t0 = gwf_now_ms();

    for (;;) {
        int64_t now;

        if (models_status(&W, token) == want) {
            return gwf_now_ms() - t0;
        }
        now = gwf_now_ms();
        if (now - t0 > REVOKE_POLL_MS) {
            return -1;
        }
        gwf_sleep_ms(25);
    }
}

static void assert_quick(int64_t took, const char *what)
{
    ck_assert_msg(took >= 0, "%s: not in effect after %d ms", what,
                  REVOKE_POLL_MS);
    ck_assert_msg(took <= REVOKE_BOUND_MS, "%s took %lld ms", what,
                  (long long)took);
    fprintf(stderr, "%s: in effect after %lld ms\n", what, (long long)took);
}

START_TEST(test_revoke_while_running)
{
    kg_harness_result_t r = {0};

    /* Works, and is now in the daemon's key cache. */
    ck_assert_int_eq(models_status(&W, K_REVOKE.token), 200);
    ck_assert_int_eq(models_status(&W, K_REVOKE.token), 200);
    ck_assert_int_eq(gwf_kg(&W, &r, "keys", "revoke", K_REVOKE.id, NULL), 0);
    assert_quick(time_until(K_REVOKE.token, 401), "revoke");
    /* And stays refused. */
    gwf_sleep_ms(300);
    ck_assert_int_eq(models_status(&W, K_REVOKE.token), 401);
    kg_harness_result_free(&r);
}
END_TEST

START_TEST(test_disable_enable_while_running)
{
    kg_harness_result_t r = {0};

    ck_assert_int_eq(models_status(&W, K_DISABLE.token), 200);
    ck_assert_int_eq(gwf_kg(&W, &r, "keys", "disable", K_DISABLE.id, NULL), 0);
    assert_quick(time_until(K_DISABLE.token, 401), "disable");
    ck_assert_int_eq(gwf_kg(&W, &r, "keys", "enable", K_DISABLE.id, NULL), 0);
    assert_quick(time_until(K_DISABLE.token, 200), "enable");
    kg_harness_result_free(&r);
}
END_TEST

START_TEST(test_rotate_while_running)
{
    kg_harness_result_t r = {0};
    char fresh[GWF_TOKEN_MAX];
    json_t *j;

    ck_assert_int_eq(models_status(&W, K_ROTATE.token), 200);
    ck_assert_int_eq(
        gwf_kg(&W, &r, "--json", "keys", "rotate", K_ROTATE.id, NULL), 0);
    j = json_loads(r.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "token")));
    snprintf(fresh, sizeof(fresh), "%s",
             json_string_value(json_object_get(j, "token")));
    json_decref(j);
    ck_assert_str_ne(fresh, K_ROTATE.token);
    /* No grace: the old secret stops working, the new one works. */
    assert_quick(time_until(K_ROTATE.token, 401), "rotate (old secret)");
    ck_assert_int_eq(models_status(&W, fresh), 200);
    gwf_sleep_ms(300);
    ck_assert_int_eq(models_status(&W, K_ROTATE.token), 401);
    ck_assert_int_eq(models_status(&W, fresh), 200);
    kg_harness_result_free(&r);
}
END_TEST

/* GET /v1/models with token from the loopback address ip. */
static long models_status_from(const char *ip, const char *token)
{
    char cred[160];
    gwf_resp_t r;
    long status;

    snprintf(cred, sizeof(cred), "Authorization: Bearer %s", token);
    gwf_source_ip = ip;
    gwf_get(&W, &r, "/v1/models", cred);
    gwf_source_ip = NULL;
    status = r.status;
    gwf_resp_free(&r);
    return status;
}

/* Rotate key id (with "--grace", grace unless NULL); the new token. */
static void rotate_key(const char *id, const char *grace, char *token,
                       size_t len)
{
    kg_harness_result_t r = {0};
    json_t *j;

    if (grace != NULL) {
        ck_assert_int_eq(gwf_kg(&W, &r, "--json", "keys", "rotate", id,
                                "--grace", grace, NULL),
                         0);
    } else {
        ck_assert_int_eq(gwf_kg(&W, &r, "--json", "keys", "rotate", id, NULL),
                         0);
    }
    j = json_loads(r.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "token")));
    snprintf(token, len, "%s", json_string_value(json_object_get(j, "token")));
    json_decref(j);
    kg_harness_result_free(&r);
}

/*
 * A rotation after a leak: rotate with a grace period, then again without.
 * The running daemon refuses both older tokens within one second (the one
 * still inside its grace too) and accepts the newest.
 */
START_TEST(test_rotate_without_grace_ends_every_old_secret)
{
    char second[GWF_TOKEN_MAX];
    char third[GWF_TOKEN_MAX];
    int64_t t0;
    int64_t took = -1;

    ck_assert_int_eq(models_status_from("127.0.3.10", K_LEAK.token), 200);
    rotate_key(K_LEAK.id, "1h", second, sizeof(second));
    /* The new secret is known once the key cache has seen the change. */
    t0 = gwf_now_ms();
    while (models_status_from("127.0.3.11", second) != 200 &&
           gwf_now_ms() - t0 <= REVOKE_POLL_MS) {
        gwf_sleep_ms(25);
    }
    ck_assert_int_eq(models_status_from("127.0.3.11", second), 200);
    /* Inside its grace the first secret still works. */
    gwf_sleep_ms(400);
    ck_assert_int_eq(models_status_from("127.0.3.10", K_LEAK.token), 200);

    rotate_key(K_LEAK.id, NULL, third, sizeof(third));
    t0 = gwf_now_ms();
    while (gwf_now_ms() - t0 <= REVOKE_POLL_MS) {
        if (models_status_from("127.0.3.10", K_LEAK.token) == 401 &&
            models_status_from("127.0.3.11", second) == 401) {
            took = gwf_now_ms() - t0;
            break;
        }
        gwf_sleep_ms(25);
    }
    assert_quick(took, "rotate without grace (both older secrets)");
    ck_assert_int_eq(models_status_from("127.0.3.12", third), 200);
    gwf_sleep_ms(300);
    ck_assert_int_eq(models_status_from("127.0.3.10", K_LEAK.token), 401);
    ck_assert_int_eq(models_status_from("127.0.3.11", second), 401);
    ck_assert_int_eq(models_status_from("127.0.3.12", third), 200);
}
END_TEST

/* ---- kill -9: every completed answer has its usage row ------------------- */

START_TEST(test_kill9_keeps_completed_usage)
{
    enum { N_JSON = 20, N_STREAM = 3 };
    char ids[N_JSON + N_STREAM][GWF_REQID_MAX];
    char cred[160];
    char body[512];
    char ok[32];
    gwf_key_t k;
    gwf_resp_t r;
    gwf_t f;

    gwf_init(&f, false);
    gwf_config(&f, NULL, NULL, NULL);
    gwf_init_store(&f);
    gwf_key_create(&f, &k, "crash", NULL);
    gwf_start(&f);
    gwf_bearer(&k, cred, sizeof(cred));
    for (int i = 0; i < N_JSON + N_STREAM; i++) {
        bool stream = i >= N_JSON;

        snprintf(body, sizeof(body),
                 "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"request %d\"}]%s,\"mock\":{\"events\":3,"
                 "\"completion_tokens\":%d}}",
                 i, stream ? ",\"stream\":true" : "", 10 + i);
        gwf_post(&f, &r, "/v1/chat/completions", cred, body);
        /* Fully received by the client. */
        ck_assert_msg(r.curl_rc == CURLE_OK && r.status == 200,
                      "request %d: curl %d status %ld", i, r.curl_rc, r.status);
        ck_assert_ptr_nonnull(
            strstr(r.body, stream ? "data: [DONE]" : "\"usage\":{"));
        snprintf(ids[i], sizeof(ids[i]), "%s", r.request_id);
        gwf_resp_free(&r);
    }
    /* At once, with nothing flushed on the way out: some events may be in
     * the usage journal only, not yet committed. */
    gwf_kill9(&f);
    ck_assert(gwf_sql_text(&f, "PRAGMA integrity_check", NULL, ok, sizeof(ok)));
    ck_assert_str_eq(ok, "ok");
    /* On restart the journal is applied before the daemon serves. */
    gwf_start(&f);
    for (int i = 0; i < N_JSON + N_STREAM; i++) {
        gwf_usage_t u;

        ck_assert_msg(gwf_usage_now(&f, ids[i], &u),
                      "completed request %d (%s) has no usage row", i, ids[i]);
        ck_assert_int_eq(u.completion_tokens, 10 + i);
        ck_assert_int_eq(u.streamed, i >= N_JSON);
    }
    ck_assert_int_eq(gwf_sql_int(&f, "SELECT count(*) FROM usage_events", NULL),
                     N_JSON + N_STREAM);
    /* The key's spend matches its events: nothing counted twice. */
    ck_assert_int_eq(
        gwf_sql_int(&f, "SELECT usage FROM api_keys WHERE id = ?1", k.id),
        gwf_sql_int(&f, "SELECT sum(cost) FROM usage_events WHERE key_id = ?1",
                    k.id));
    /* The restarted daemon serves again and records again. */
    gwf_assert_serving(&f, &k);
    ck_assert_int_eq(gwf_usage_settled(&f), N_JSON + N_STREAM + 1);
    ck_assert_int_eq(gwf_stop(&f, 10000), 0);
    gwf_free(&f);
}
END_TEST

/* ---- SIGTERM ------------------------------------------------------------- */

/* A world with drain_timeout, one key and an open slow stream on *fd. */
static void open_stream(gwf_t *f, gwf_key_t *k, const char *drain, int events,
                        int *fd, gwf_buf_t *b, char *rid, json_int_t *mock_req)
{
    char server[64];
    char marker[GWF_MARKER_MAX];
    char body[512];
    char req[2048];
    json_t *seen;
    int n;

    gwf_init(f, false);
    snprintf(server, sizeof(server), "drain_timeout = %s\n", drain);
    gwf_config(f, server, NULL, NULL);
    gwf_init_store(f);
    gwf_key_create(f, k, "drain", NULL);
    gwf_start(f);
    gwf_marker(marker, sizeof(marker));
    snprintf(body, sizeof(body),
             "{\"model\":\"gpt-4o\",\"user\":\"%s\",\"stream\":true,"
             "\"messages\":[{\"role\":\"user\",\"content\":\"Go slowly.\"}],"
             "\"mock\":{\"events\":%d,\"interval_ms\":100}}",
             marker, events);
    n = gwf_raw_post(req, sizeof(req), "/v1/chat/completions", k->token, body,
                     strlen(body));
    *fd = gwf_connect(f->gw_port);
    ck_assert_int_ge(*fd, 0);
    ck_assert(gwf_send_all(*fd, req, (size_t)n));
    ck_assert_int_eq(gwf_recv_until(*fd, b, "tok1 ", 10000), 1);
    ck_assert(gwf_raw_header(b->data, "x-request-id", rid, GWF_REQID_MAX));
    seen = gwf_log_request(f->mock_log, marker);
    ck_assert_ptr_nonnull(seen);
    *mock_req = json_integer_value(json_object_get(seen, "request"));
    json_decref(seen);
}

/* After SIGTERM: poll until new connections are refused. */
static bool refused_soon(const gwf_t *f)
{
    int64_t t0 = gwf_now_ms();

    while (gwf_now_ms() - t0 < 3000) {
        int fd = gwf_connect(f->gw_port);

        if (fd < 0) {
            return true;
        }
        close(fd);
        gwf_sleep_ms(20);
    }
    return false;
}

START_TEST(test_sigterm_lets_the_stream_finish)
{
    char rid[GWF_REQID_MAX];
    char reason[32];
    gwf_buf_t b = {0};
    json_int_t mock_req;
    gwf_usage_t u;
    gwf_key_t k;
    gwf_t f;
    int fd;

    open_stream(&f, &k, "10s", 15, &fd, &b, rid, &mock_req);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGTERM), 0);
    ck_assert_msg(refused_soon(&f), "new connections still accepted");
    {
        /* Load balancers see it: not ready while draining. */
        gwf_resp_t r;
        json_t *j;

        gwf_admin_http(&f, &r, "GET", "/readyz", NULL, NULL, 0);
        ck_assert_int_eq(r.status, 503);
        j = gwf_resp_json(&r);
        ck_assert(json_is_true(
            json_object_get(json_object_get(j, "checks"), "draining")));
        json_decref(j);
        gwf_resp_free(&r);
    }
    /* ... while the stream is still running. */
    ck_assert(
        !gwf_log_stream_end(f.mock_log, mock_req, reason, sizeof(reason), 0));
    ck_assert_msg(
        gwf_recv_until(fd, &b, "data: [DONE]\n\n\r\n0\r\n\r\n", 15000) == 1,
        "the stream did not finish: %s", b.data);
    close(fd);
    ck_assert_int_eq(gwf_wait_exit(&f, 15000), 0);
    ck_assert(
        gwf_log_stream_end(f.mock_log, mock_req, reason, sizeof(reason), 1000));
    ck_assert_str_eq(reason, "complete");
    ck_assert_msg(gwf_usage(&f, rid, &u), "no usage row for %s", rid);
    ck_assert_int_eq(u.status, 200);
    ck_assert_msg(!u.has_error, "error_code %s", u.error_code);
    ck_assert_int_eq(u.completion_tokens, 20);
    gwf_buf_free(&b);
    gwf_free(&f);
}
END_TEST

/*
 * At the drain deadline a stream still running is cut (its connection is
 * resumed first: libmicrohttpd 0.9.75 aborts when stopped with a suspended
 * connection), its usage is recorded, and the daemon exits 0.
 */
START_TEST(test_sigterm_deadline_cuts_suspended_stream)
{
    char rid[GWF_REQID_MAX];
    gwf_buf_t b = {0};
    json_int_t mock_req;
    gwf_usage_t u;
    gwf_key_t k;
    gwf_t f;
    int64_t t0;
    int64_t took;
    int fd;

    /* 100 events at 100 ms: 10 s, against a 1 s drain. */
    open_stream(&f, &k, "1s", 100, &fd, &b, rid, &mock_req);
    t0 = gwf_now_ms();
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGTERM), 0);
    ck_assert_msg(gwf_wait_closed(fd, &b, 10000), "the stream was not cut");
    took = gwf_now_ms() - t0;
    close(fd);
    ck_assert_ptr_null(strstr(b.data, "[DONE]"));
    ck_assert_msg(took >= 700 && took < 8000,
                  "cut %lld ms after SIGTERM, drain_timeout 1s",
                  (long long)took);
    ck_assert_int_eq(gwf_wait_exit(&f, 15000), 0);
    ck_assert_msg(gwf_usage(&f, rid, &u), "no usage row for a cut stream");
    ck_assert(u.has_error);
    ck_assert_int_gt(u.completion_tokens, 0);
    fprintf(stderr, "stream cut %lld ms after SIGTERM, error_code %s\n",
            (long long)took, u.error_code);
    gwf_buf_free(&b);
    gwf_free(&f);
}
END_TEST

START_TEST(test_second_sigterm_exits_at_once)
{
    char rid[GWF_REQID_MAX];
    gwf_buf_t b = {0};
    json_int_t mock_req;
    gwf_key_t k;
    gwf_t f;
    int64_t t0;
    int status;
    int fd;

    open_stream(&f, &k, "30s", 100, &fd, &b, rid, &mock_req);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGTERM), 0);
    ck_assert(refused_soon(&f)); /* draining */
    t0 = gwf_now_ms();
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGTERM), 0);
    status = gwf_wait_exit(&f, 5000);
    ck_assert_msg(status > 0, "exit status %d after a second SIGTERM", status);
    ck_assert_msg(!f.gw.killed, "the harness had to kill it");
    ck_assert_int_lt(gwf_now_ms() - t0, 3000);
    close(fd);
    gwf_buf_free(&b);
    gwf_free(&f);
}
END_TEST

static Suite *lifecycle_suite(void)
{
    Suite *s = suite_create("gateway_lifecycle");
    TCase *tc = tcase_create("revocation");

    tcase_add_unchecked_fixture(tc, setup_revocation, teardown_revocation);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_threads_named_and_bounded);
    tcase_add_test(tc, test_revoke_while_running);
    tcase_add_test(tc, test_disable_enable_while_running);
    tcase_add_test(tc, test_rotate_while_running);
    tcase_add_test(tc, test_rotate_without_grace_ends_every_old_secret);
    suite_add_tcase(s, tc);

    tc = tcase_create("crash");
    tcase_add_unchecked_fixture(tc, setup_root, teardown_root);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_kill9_keeps_completed_usage);
    suite_add_tcase(s, tc);

    tc = tcase_create("sigterm");
    tcase_add_unchecked_fixture(tc, setup_root, teardown_root);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sigterm_lets_the_stream_finish);
    tcase_add_test(tc, test_sigterm_deadline_cuts_suspended_stream);
    tcase_add_test(tc, test_second_sigterm_exits_at_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(lifecycle_suite());
}
