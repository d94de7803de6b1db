/* Configuration reload: SIGHUP and 'keygate reload' on a serving daemon. */
#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway_fixture.h"

#define RELOAD_WAIT_MS 10000
#define LOAD_THREADS   2
#define LOAD_MAX       300 /* requests of one load thread at most */
#define LOAD_AFTER     20  /* requests each thread sends after the reload */
/* The mock's usage: 10 prompt and 20 completion tokens. At 1.00/1.00 USD
 * per 1M tokens that is 30 micro-USD; at 2.00/4.00, 100. */
#define COST_BEFORE 30
#define COST_AFTER  100
#define MODEL_BEFORE                    \
    "[model priced]\nprovider = mock\n" \
    "input_price = 1.00\noutput_price = 1.00\n\n"
#define MODEL_AFTER                     \
    "[model priced]\nprovider = mock\n" \
    "input_price = 2.00\noutput_price = 4.00\n\n"
#define MODEL_ADDED                                            \
    "[model added]\nprovider = mock\nupstream = gpt-4o-mini\n" \
    "input_price = 1.50\noutput_price = 3.00\n\n"
#define CHAT(model)                                              \
    "{\"model\":\"" model "\",\"messages\":[{\"role\":\"user\"," \
    "\"content\":\"reload\"}]}"
#define STREAM(model)                                                   \
    "{\"model\":\"" model "\",\"stream\":true,\"messages\":[{\"role\":" \
    "\"user\",\"content\":\"reload\"}],\"mock\":{\"events\":4,"         \
    "\"interval_ms\":25}}"

static void setup_root(void)
{
    gwf_root_new("kg-reload");
}

static void teardown_root(void)
{
    gwf_root_free();
}

/* A world with the model "priced" at its first prices, one key, running. */
static void start_world(gwf_t *f, gwf_key_t *k, const char *server)
{
    gwf_init(f, false);
    gwf_config(f, server, NULL, MODEL_BEFORE);
    gwf_init_store(f);
    gwf_key_create(f, k, "reload", NULL);
    gwf_start(f);
    ck_assert_int_eq(gwf_generation(f), 1);
}

/* POST body with k's key; returns the status, the request id into rid. */
static long chat(const gwf_t *f, const gwf_key_t *k, const char *body,
                 char *rid)
{
    char cred[160];
    gwf_resp_t r;
    long status;

    gwf_post(f, &r, "/v1/chat/completions", gwf_bearer(k, cred, sizeof(cred)),
             body);
    status = r.status;
    if (rid != NULL) {
        snprintf(rid, GWF_REQID_MAX, "%s", r.request_id);
    }
    gwf_resp_free(&r);
    return status;
}

/* The cost of request rid as recorded (asserted to be recorded). */
static int64_t cost_of(const gwf_t *f, const char *rid)
{
    gwf_usage_t u;

    ck_assert_msg(gwf_usage(f, rid, &u), "no usage row for %s", rid);
    ck_assert_int_eq(u.status, 200);
    return u.cost;
}

/* ---- under load -------------------------------------------------------- */

/* One load thread: plain and streamed requests to "priced", one after the
 * other, until stopped and LOAD_AFTER more were sent after the reload. */
typedef struct load {
    const gwf_t *f;
    const gwf_key_t *k;
    atomic_bool *reloaded;
    int sent;
    int ok;
    int after; /* sent once *reloaded was set */
    long bad_status;
    int bad_curl;
} load_t;

static void *load_main(void *arg)
{
    load_t *l = arg;
    char cred[160];

    gwf_bearer(l->k, cred, sizeof(cred));
    while (l->sent < LOAD_MAX && l->after < LOAD_AFTER) {
        bool after = atomic_load(l->reloaded);
        gwf_resp_t r;
        int rc = gwf_post(l->f, &r, "/v1/chat/completions", cred,
                          l->sent % 2 ? STREAM("priced") : CHAT("priced"));

        l->sent++;
        l->after += after;
        if (rc == CURLE_OK && r.status == 200) {
            l->ok++;
        } else if (l->bad_status == 0 && l->bad_curl == 0) {
            l->bad_status = r.status;
            l->bad_curl = rc;
        }
        gwf_resp_free(&r);
    }
    return NULL;
}

/* A slow stream to "priced", open on *fd with its first event read. */
static void open_slow_stream(const gwf_t *f, const gwf_key_t *k, int *fd,
                             gwf_buf_t *b, char *rid)
{
    static const char body[] =
        "{\"model\":\"priced\",\"stream\":true,\"messages\":[{\"role\":"
        "\"user\",\"content\":\"slowly\"}],\"mock\":{\"events\":20,"
        "\"interval_ms\":100}}";
    char req[2048];
    int n = gwf_raw_post(req, sizeof(req), "/v1/chat/completions", k->token,
                         body, strlen(body));

    *fd = gwf_connect(f->gw_port);
    ck_assert_int_ge(*fd, 0);
    ck_assert(gwf_send_all(*fd, req, (size_t)n));
    ck_assert_int_eq(gwf_recv_until(*fd, b, "tok1 ", 10000), 1);
    ck_assert(gwf_raw_header(b->data, "x-request-id", rid, GWF_REQID_MAX));
}

/*
 * A reload under load changes a model's price and adds a model: no
 * request fails, requests from before cost the old price and those after
 * the new one, a stream that started before finishes on the old
 * configuration (and its price), and the new model is served.
 */
START_TEST(test_reload_price_and_new_model_under_load)
{
    char rid[GWF_REQID_MAX];
    char stream_rid[GWF_REQID_MAX];
    atomic_bool reloaded = false;
    pthread_t th[LOAD_THREADS];
    load_t load[LOAD_THREADS];
    gwf_buf_t b = {0};
    gwf_key_t k;
    gwf_t f;
    int fd;

    start_world(&f, &k, NULL);
    ck_assert_int_eq(chat(&f, &k, CHAT("priced"), rid), 200);
    ck_assert_int_eq(cost_of(&f, rid), COST_BEFORE);
    ck_assert_int_eq(chat(&f, &k, CHAT("added"), NULL), 404);
    open_slow_stream(&f, &k, &fd, &b, stream_rid);
    for (int i = 0; i < LOAD_THREADS; i++) {
        memset(&load[i], 0, sizeof(load[i]));
        load[i].f = &f;
        load[i].k = &k;
        load[i].reloaded = &reloaded;
        ck_assert_int_eq(pthread_create(&th[i], NULL, load_main, &load[i]), 0);
    }
    gwf_sleep_ms(300); /* the load runs on the first configuration */

    gwf_config(&f, NULL, NULL, MODEL_AFTER MODEL_ADDED);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert_msg(gwf_wait_generation(&f, 2, RELOAD_WAIT_MS),
                  "configuration 2 not in use");
    atomic_store(&reloaded, true);
    for (int i = 0; i < LOAD_THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(load[i].ok == load[i].sent,
                      "load %d: %d of %d requests failed (first: status %ld, "
                      "curl %d)",
                      i, load[i].sent - load[i].ok, load[i].sent,
                      load[i].bad_status, load[i].bad_curl);
        ck_assert_int_ge(load[i].after, LOAD_AFTER);
        ck_assert_int_gt(load[i].sent, LOAD_AFTER);
    }
    ck_assert(gwf_log_wait(f.gw_err, "reload: configuration 2 in use", 1000));
    fprintf(stderr, "reload under load: %d and %d requests, none failed\n",
            load[0].sent, load[1].sent);

    /* New requests: the new price, and the new model. */
    ck_assert_int_eq(chat(&f, &k, CHAT("priced"), rid), 200);
    ck_assert_int_eq(cost_of(&f, rid), COST_AFTER);
    ck_assert_int_eq(chat(&f, &k, CHAT("added"), rid), 200);
    ck_assert_int_eq(cost_of(&f, rid), 10 * 1.5 + 20 * 3);
    /* Every request was charged one price or the other, both were used. */
    gwf_usage_settled(&f);
    ck_assert_int_eq(gwf_sql_int(&f,
                                 "SELECT count(*) FROM usage_events WHERE "
                                 "model = 'priced' AND cost NOT IN (30, 100)",
                                 NULL),
                     0);
    ck_assert_int_gt(gwf_sql_int(&f,
                                 "SELECT count(*) FROM usage_events WHERE "
                                 "model = 'priced' AND cost = 100",
                                 NULL),
                     LOAD_THREADS * LOAD_AFTER);
    ck_assert_int_gt(gwf_sql_int(&f,
                                 "SELECT count(*) FROM usage_events WHERE "
                                 "model = 'priced' AND cost = 30",
                                 NULL),
                     1);

    /* The stream from before the reload ends whole, at the old price. */
    ck_assert_msg(gwf_recv_until(fd, &b, "data: [DONE]", 15000) == 1,
                  "the stream did not finish: %s", b.data);
    close(fd);
    ck_assert_int_eq(cost_of(&f, stream_rid), COST_BEFORE);
    gwf_buf_free(&b);
    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    gwf_free(&f);
}
END_TEST

/* ---- credential files -------------------------------------------------- */

/* A provider with its pool credential in a file, and its model. */
#define FILED                                                              \
    "[provider filed]\ntype = openai\nbase_url = http://127.0.0.1:%d/v1\n" \
    "api_key_file = filed.key\n\n"                                         \
    "[model filed-model]\nprovider = filed\ninput_price = 1\n"             \
    "output_price = 1\n\n"

/* The Authorization header the mock got for a request to filed-model. */
static void seen_credential(const gwf_t *f, const gwf_key_t *k, char *out,
                            size_t len)
{
    char marker[GWF_MARKER_MAX];
    char body[256];
    json_t *seen;

    gwf_marker(marker, sizeof(marker));
    snprintf(body, sizeof(body),
             "{\"model\":\"filed-model\",\"user\":\"%s\",\"messages\":[]}",
             marker);
    ck_assert_int_eq(chat(f, k, body, NULL), 200);
    seen = gwf_log_request(f->mock_log, marker);
    ck_assert_ptr_nonnull(seen);
    snprintf(out, len, "%s",
             json_string_value(json_object_get(json_object_get(seen, "headers"),
                                               "authorization")));
    json_decref(seen);
}

/*
 * A provider's credential file is read again on reload: new requests carry
 * the new credential upstream.
 */
START_TEST(test_reload_credential_file)
{
    static const char first[] = "sk-kgtest-first-credential\n";
    static const char second[] = "sk-kgtest-second-credential\n";
    char extra[512];
    char key_path[PATH_MAX];
    char seen[128];
    gwf_key_t k;
    gwf_t f;

    gwf_init(&f, false);
    ck_assert(kg_harness_path(key_path, sizeof(key_path), f.dir, "filed.key"));
    ck_assert_int_eq(
        kg_harness_write_file(key_path, first, sizeof(first) - 1, 0600), 0);
    snprintf(extra, sizeof(extra), FILED, f.mock_port);
    gwf_config(&f, NULL, NULL, extra);
    gwf_init_store(&f);
    gwf_key_create(&f, &k, "filed", NULL);
    gwf_start(&f);
    seen_credential(&f, &k, seen, sizeof(seen));
    ck_assert_str_eq(seen, "Bearer sk-kgtest-first-credential");

    /* Rotated at the provider: the new key in the file, then a reload. */
    ck_assert_int_eq(
        kg_harness_write_file(key_path, second, sizeof(second) - 1, 0600), 0);
    seen_credential(&f, &k, seen, sizeof(seen));
    ck_assert_str_eq(seen, "Bearer sk-kgtest-first-credential");
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(gwf_wait_generation(&f, 2, RELOAD_WAIT_MS));
    seen_credential(&f, &k, seen, sizeof(seen));
    ck_assert_str_eq(seen, "Bearer sk-kgtest-second-credential");
    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    gwf_assert_absent(f.gw_err, "sk-kgtest-", "the daemon's log");
    gwf_free(&f);
}
END_TEST

/* ---- refused files ----------------------------------------------------- */

/*
 * A file that does not load (a bad value; a credential file that cannot
 * be read) is refused: the error is logged, the running configuration
 * stays (its generation, its prices), and the metrics count the failure.
 */
START_TEST(test_reload_broken_file_keeps_config)
{
    char rid[GWF_REQID_MAX];
    char admin[GWF_ADMIN_TOKEN_MAX];
    char auth[GWF_ADMIN_TOKEN_MAX + 32];
    const char *hdr[] = {auth, NULL};
    char line[PATH_MAX + 64];
    gwf_resp_t r;
    gwf_key_t k;
    gwf_t f;

    start_world(&f, &k, NULL);
    gwf_admin_token(&f, "metrics", admin, sizeof(admin));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);

    /* A price that is not a number, with a new model beside it. */
    gwf_config(&f, NULL, NULL,
               "[model priced]\nprovider = mock\ninput_price = cheap\n"
               "output_price = 4.00\n\n" MODEL_ADDED);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert_msg(gwf_log_wait(f.gw_err, "reload refused: ", RELOAD_WAIT_MS),
                  "no refusal logged");
    snprintf(line, sizeof(line), "reload refused: %s:", f.cfg);
    ck_assert_int_eq(gwf_log_count(f.gw_err, line), 1);
    ck_assert_int_eq(gwf_log_count(f.gw_err, "input_price"), 1);
    ck_assert_int_eq(gwf_log_count(f.gw_err, "keeping configuration 1"), 1);
    ck_assert_int_eq(gwf_generation(&f), 1);
    ck_assert_int_eq(chat(&f, &k, CHAT("priced"), rid), 200);
    ck_assert_int_eq(cost_of(&f, rid), COST_BEFORE);
    ck_assert_int_eq(chat(&f, &k, CHAT("added"), NULL), 404);

    /* A provider whose credential file cannot be read. */
    gwf_config(&f, NULL, NULL,
               MODEL_AFTER "[provider filecred]\ntype = openai\n"
                           "base_url = http://127.0.0.1:1/v1\n"
                           "api_key_file = no-such.key\n\n");
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(gwf_log_wait(f.gw_err, "no-such.key", RELOAD_WAIT_MS));
    ck_assert_int_eq(gwf_log_count(f.gw_err, "reload refused: "), 2);
    ck_assert_int_eq(gwf_generation(&f), 1);
    ck_assert_int_eq(chat(&f, &k, CHAT("priced"), rid), 200);
    ck_assert_int_eq(cost_of(&f, rid), COST_BEFORE);

    gwf_admin_http(&f, &r, "GET", "/metrics", hdr, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(
        strstr(r.body, "keygate_config_reloads_total{result=\"failed\"} 2\n"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "keygate_config_reloads_total{result=\"ok\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "keygate_config_generation 1\n"));
    gwf_resp_free(&r);

    /* Fixed, the same file applies. */
    gwf_config(&f, NULL, NULL, MODEL_AFTER);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(gwf_wait_generation(&f, 2, RELOAD_WAIT_MS));
    ck_assert_int_eq(chat(&f, &k, CHAT("priced"), rid), 200);
    ck_assert_int_eq(cost_of(&f, rid), COST_AFTER);
    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    gwf_free(&f);
}
END_TEST

/* ---- restart settings -------------------------------------------------- */

/* The daemon's event-loop threads (named kg-loop-N). */
static int loop_threads(pid_t pid)
{
    char dir[64];
    struct dirent *de;
    int n = 0;
    DIR *d;

    snprintf(dir, sizeof(dir), "/proc/%ld/task", (long)pid);
    d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        char path[384];
        char comm[32] = "";
        FILE *fp;

        snprintf(path, sizeof(path), "%s/%s/comm", dir, de->d_name);
        fp = fopen(path, "r");
        if (fp == NULL) {
            continue;
        }
        if (fgets(comm, sizeof(comm), fp) != NULL &&
            strncmp(comm, "kg-loop-", 8) == 0) {
            n++;
        }
        fclose(fp);
    }
    closedir(d);
    return n;
}

/*
 * A changed RESTART setting (threads; turning TLS on) is named in a
 * warning and not applied, while the reloadable settings of the same file
 * are (max_body_bytes: a body over the new limit gets 413).
 */
START_TEST(test_reload_restart_setting_warned_not_applied)
{
    char admin[GWF_ADMIN_TOKEN_MAX];
    char auth[GWF_ADMIN_TOKEN_MAX + 32];
    const char *hdr[] = {auth, NULL};
    char body[3000];
    json_t *j;
    gwf_resp_t r;
    gwf_key_t k;
    gwf_t f;

    start_world(&f, &k, NULL);
    gwf_admin_token(&f, "config", admin, sizeof(admin));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);
    ck_assert_int_eq(loop_threads(f.gw_pid), 2);
    snprintf(body, sizeof(body),
             "{\"model\":\"priced\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"%01500d\"}]}",
             0);
    ck_assert_int_eq(chat(&f, &k, body, NULL), 200);

    gwf_config(&f,
               "max_body_bytes = 1k\n"
               "tls_cert_file = cert.pem\ntls_key_file = key.pem\n",
               NULL, MODEL_BEFORE);
    gwf_config_replace(&f, "threads = 2\n", "threads = 3\n");
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(gwf_wait_generation(&f, 2, RELOAD_WAIT_MS));
    ck_assert_int_eq(
        gwf_log_count(f.gw_err,
                      "reload: [server] threads changed from 2 to 3; it "
                      "takes effect only after a restart, keeping 2"),
        1);
    ck_assert_int_eq(gwf_log_count(f.gw_err, "reload: [server] tls_cert_file "
                                             "changed from \"\" to "),
                     1);
    /* A key file's path is not printed. */
    ck_assert_int_eq(gwf_log_count(f.gw_err,
                                   "reload: [server] tls_key_file changed "
                                   "from \"(redacted)\" to \"(redacted)\""),
                     1);
    ck_assert_int_eq(gwf_log_count(f.gw_err, "key.pem"), 0);
    ck_assert_int_eq(gwf_log_count(f.gw_err, "reload: [server] max_body"), 0);

    /* Not applied: two loops, plain HTTP; the effective configuration says
     * the running values. */
    ck_assert_int_eq(loop_threads(f.gw_pid), 2);
    gwf_admin_http(&f, &r, "GET", "/admin/v1/config", hdr, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    j = gwf_resp_json(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(j, "server"), "threads")),
                     2);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "server"), "tls_cert_file")),
                     "");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "server"), "max_body_bytes")),
                     "1k");
    json_decref(j);
    gwf_resp_free(&r);
    /* Applied: the body limit. */
    ck_assert_int_eq(chat(&f, &k, body, NULL), 413);
    ck_assert_int_eq(chat(&f, &k, CHAT("priced"), NULL), 200);
    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    gwf_free(&f);
}
END_TEST

/* ---- keygate reload ---------------------------------------------------- */

/*
 * 'keygate reload' signals the daemon named by [server] pid_file (or
 * --pid-file); the pid file goes when the daemon stops, and a stale one
 * (or one naming a process that is not keygate) is refused.
 */
START_TEST(test_keygate_reload_command)
{
    kg_harness_result_t res = {0};
    char pid_file[PATH_MAX];
    char stale[PATH_MAX];
    char text[32];
    char *data = NULL;
    json_t *j;
    gwf_key_t k;
    gwf_t f;

    start_world(&f, &k, "pid_file = keygate.pid\n");
    ck_assert(
        kg_harness_path(pid_file, sizeof(pid_file), f.dir, "keygate.pid"));
    ck_assert_int_eq(kg_harness_read_file(pid_file, &data, NULL), 0);
    snprintf(text, sizeof(text), "%ld\n", (long)f.gw_pid);
    ck_assert_str_eq(data, text);
    free(data);
    ck_assert_int_eq(kg_harness_file_mode(pid_file), 0644);

    ck_assert_int_eq(gwf_kg(&f, &res, "reload", NULL), 0);
    snprintf(text, sizeof(text), "process %ld", (long)f.gw_pid);
    ck_assert_ptr_nonnull(strstr(res.out, text));
    ck_assert(gwf_wait_generation(&f, 2, RELOAD_WAIT_MS));
    ck_assert_int_eq(gwf_kg(&f, &res, "--json", "reload", NULL), 0);
    j = json_loads(res.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "pid")), f.gw_pid);
    json_decref(j);
    ck_assert(gwf_wait_generation(&f, 3, RELOAD_WAIT_MS));

    /* --pid-file naming a process that is not keygate (the mock). */
    ck_assert(kg_harness_path(stale, sizeof(stale), f.dir, "other.pid"));
    snprintf(text, sizeof(text), "%ld\n", (long)f.mock.pid);
    ck_assert_int_eq(kg_harness_write_file(stale, text, strlen(text), 0644), 0);
    ck_assert_int_eq(gwf_kg(&f, &res, "reload", "--pid-file", stale, NULL), 1);
    ck_assert_ptr_nonnull(strstr(res.err, "is not keygate"));
    ck_assert(kg_harness_proc_signal(&f.mock, 0) == 0); /* left alone */
    ck_assert_int_eq(gwf_generation(&f), 3);

    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    ck_assert(!kg_harness_exists(pid_file));
    ck_assert_int_eq(gwf_kg(&f, &res, "reload", NULL), 1);
    ck_assert_ptr_nonnull(strstr(res.err, "no keygate daemon runs"));
    kg_harness_result_free(&res);
    gwf_free(&f);
}
END_TEST

static Suite *reload_suite(void)
{
    Suite *s = suite_create("reload");
    TCase *tc = tcase_create("reload");

    tcase_add_unchecked_fixture(tc, setup_root, teardown_root);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_reload_price_and_new_model_under_load);
    tcase_add_test(tc, test_reload_credential_file);
    tcase_add_test(tc, test_reload_broken_file_keeps_config);
    tcase_add_test(tc, test_reload_restart_setting_warned_not_applied);
    tcase_add_test(tc, test_keygate_reload_command);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(reload_suite());
}
