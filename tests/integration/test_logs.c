/* Logs: JSON access lines on every route, no secret, reopen on SIGUSR1. */
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway_fixture.h"

#define LOG_WAIT_MS 10000
#define JSON_LOG    "format = json\nfile = keygate.log\n"
#define CHAT_BODY                                                         \
    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":" \
    "\"log me\"}]}"
#define STREAM_BODY                                                  \
    "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":" \
    "\"user\",\"content\":\"log me\"}],\"mock\":{\"events\":3}}"
#define UNKNOWN_MODEL "not-a-model-Zq81"

static void setup_root(void)
{
    gwf_root_new("kg-logs");
}

static void teardown_root(void)
{
    gwf_root_free();
}

/* Every line of the file at path, each parsed as a JSON object (asserted):
 * a new array. */
static json_t *json_lines(const char *path)
{
    json_t *all = json_array();
    char *text = NULL;
    size_t len = 0;

    ck_assert_int_eq(kg_harness_read_file(path, &text, &len), 0);
    for (char *line = text; line != NULL && *line != '\0';) {
        char *eol = strchr(line, '\n');
        json_error_t err;
        json_t *j;

        ck_assert_msg(eol != NULL, "a line without its end: %s", line);
        *eol = '\0';
        j = json_loads(line, 0, &err);
        ck_assert_msg(json_is_object(j), "not a JSON object (%s): %s", err.text,
                      line);
        ck_assert_msg(json_is_string(json_object_get(j, "time")) &&
                          json_is_string(json_object_get(j, "level")) &&
                          json_is_string(json_object_get(j, "type")),
                      "no time, level or type: %s", line);
        json_array_append_new(all, j);
        line = eol + 1;
    }
    free(text);
    return all;
}

/* The access line (type) of request id rid in lines (borrowed), or NULL. */
static json_t *find_line(json_t *lines, const char *type, const char *rid)
{
    size_t i;
    json_t *j;

    json_array_foreach(lines, i, j)
    {
        const char *id = json_string_value(json_object_get(j, "request_id"));

        if (strcmp(json_string_value(json_object_get(j, "type")), type) == 0 &&
            id != NULL && strcmp(id, rid) == 0) {
            return j;
        }
    }
    return NULL;
}

/* Wait until the log at path holds request rid's line; then every line. */
static json_t *lines_with(const char *path, const char *rid)
{
    char needle[GWF_REQID_MAX + 32];

    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", rid);
    ck_assert_msg(gwf_log_wait(path, needle, LOG_WAIT_MS), "no line for %s",
                  rid);
    return json_lines(path);
}

/* Wait for request rid's JSON line in the file at path (whatever the
 * other lines are); it parses, and has the request id. */
static void assert_json_line(const char *path, const char *rid)
{
    char needle[GWF_REQID_MAX + 32];
    char *text = NULL;
    char *line;
    char *eol;
    json_t *j;

    snprintf(needle, sizeof(needle), "\"request_id\":\"%s\"", rid);
    ck_assert_msg(gwf_log_wait(path, needle, LOG_WAIT_MS), "no line for %s",
                  rid);
    ck_assert_int_eq(kg_harness_read_file(path, &text, NULL), 0);
    line = strstr(text, needle);
    while (line > text && line[-1] != '\n') {
        line--;
    }
    eol = strchr(line, '\n');
    ck_assert_ptr_nonnull(eol);
    *eol = '\0';
    j = json_loads(line, 0, NULL);
    ck_assert_msg(json_is_object(j), "not JSON: %s", line);
    ck_assert_str_eq(json_string_value(json_object_get(j, "request_id")), rid);
    json_decref(j);
    free(text);
}

/* Member name of o is the string want (NULL: JSON null). */
static void assert_str(const json_t *o, const char *name, const char *want)
{
    const json_t *v = json_object_get(o, name);
    char *dump = json_dumps(o, JSON_COMPACT);

    if (want == NULL) {
        ck_assert_msg(json_is_null(v), "%s not null in %s", name, dump);
    } else {
        ck_assert_msg(json_is_string(v) &&
                          strcmp(json_string_value(v), want) == 0,
                      "%s is not \"%s\" in %s", name, want, dump);
    }
    free(dump);
}

static void assert_int(const json_t *o, const char *name, json_int_t want)
{
    const json_t *v = json_object_get(o, name);

    ck_assert_msg(json_is_integer(v) && json_integer_value(v) == want,
                  "%s is not %lld", name, (long long)want);
}

/* The fields every access line has, with the values of this request. */
static void assert_access(const json_t *l, const char *method,
                          const char *route, const char *operation, int status,
                          const char *key_id, const char *error)
{
    const json_t *lat = json_object_get(l, "latency_ms");

    assert_str(l, "level", "info");
    assert_str(l, "method", method);
    assert_str(l, "route", route);
    assert_str(l, "operation", operation);
    assert_int(l, "status", status);
    assert_str(l, "key_id", key_id);
    assert_str(l, "client_ip", "127.0.0.1");
    assert_str(l, "error", error);
    ck_assert(json_is_number(lat) && json_number_value(lat) >= 0);
    ck_assert(json_object_get(l, "ttft_ms") != NULL);
    ck_assert(json_object_get(l, "workspace_id") != NULL);
    ck_assert(json_object_get(l, "model") != NULL);
    ck_assert(json_object_get(l, "provider") != NULL);
    ck_assert(json_is_integer(json_object_get(l, "prompt_tokens")));
    ck_assert(json_is_integer(json_object_get(l, "completion_tokens")));
    ck_assert(json_is_integer(json_object_get(l, "cached_tokens")));
    ck_assert(json_is_string(json_object_get(l, "cost")));
}

/* GET path with header line cred (may be NULL); the request id. */
static long get(const gwf_t *f, const char *path, const char *cred, char *rid)
{
    gwf_resp_t r;
    long status;

    gwf_get(f, &r, path, cred);
    status = r.status;
    ck_assert_uint_gt(strlen(r.request_id), 0);
    snprintf(rid, GWF_REQID_MAX, "%s", r.request_id);
    gwf_resp_free(&r);
    return status;
}

static long post(const gwf_t *f, const char *cred, const char *body, char *rid)
{
    gwf_resp_t r;
    long status;

    gwf_post(f, &r, "/v1/chat/completions", cred, body);
    status = r.status;
    ck_assert_uint_gt(strlen(r.request_id), 0);
    snprintf(rid, GWF_REQID_MAX, "%s", r.request_id);
    gwf_resp_free(&r);
    return status;
}

/* Nothing secret anywhere in the file at path. */
static void assert_no_secret(const char *path, const gwf_key_t *keys, size_t n,
                             const char *admin)
{
    char access[GWF_TOKEN_MAX];
    char secret[GWF_TOKEN_MAX];

    for (size_t i = 0; i < n; i++) {
        gwf_assert_absent(path, keys[i].token, "a client token");
        gwf_split(keys[i].token, access, sizeof(access), secret,
                  sizeof(secret));
        gwf_assert_absent(path, secret, "a client secret");
    }
    gwf_assert_absent(path, admin, "an admin token");
    /* The admin token's secret: what follows "kgadm_<id>_". */
    gwf_assert_absent(path, strrchr(admin, '_') + 1, "an admin secret");
    gwf_assert_absent(path, GWF_PROVIDER_CANARY, "the provider credential");
}

/*
 * [log] format = json to a file: one access line for each kind of request
 * (forwarded, streamed, /v1/models, /v1/key, 401, 429, 404 for a model and
 * for a route, the health routes, a client gone mid-body, the admin
 * listener with and without a token), each with its fields; every line is
 * a JSON object; no secret in the file or on stderr.
 */
START_TEST(test_json_access_lines_every_route)
{
    char log_path[PATH_MAX];
    char cred[160];
    char cred_rpm[160];
    char admin[GWF_ADMIN_TOKEN_MAX];
    char admin_id[GWF_ID_MAX];
    char auth[GWF_ADMIN_TOKEN_MAX + 32];
    char ws[64];
    char rid[14][GWF_REQID_MAX];
    char qs[256];
    const char *hdr[] = {auth, NULL};
    gwf_key_t keys[2];
    json_t *lines;
    json_t *l;
    gwf_resp_t r;
    gwf_t f;
    int fd;

    gwf_init(&f, false);
    f.log_extra = JSON_LOG;
    gwf_config(&f, "health_routes = on\n", NULL, NULL);
    gwf_init_store(&f);
    gwf_key_create(&f, &keys[0], "logged", NULL);
    gwf_key_create(&f, &keys[1], "limited", "--rpm", "1", NULL);
    gwf_admin_token(&f, "logs", admin, sizeof(admin));
    snprintf(admin_id, sizeof(admin_id), "%.12s", admin + strlen("kgadm_"));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);
    ck_assert(gwf_sql_text(&f, "SELECT workspace_id FROM api_keys WHERE id = ?",
                           keys[0].id, ws, sizeof(ws)));
    ck_assert(
        kg_harness_path(log_path, sizeof(log_path), f.dir, "keygate.log"));
    gwf_start(&f);
    gwf_bearer(&keys[0], cred, sizeof(cred));
    gwf_bearer(&keys[1], cred_rpm, sizeof(cred_rpm));

    ck_assert_int_eq(post(&f, cred, CHAT_BODY, rid[0]), 200);
    ck_assert_int_eq(post(&f, cred, STREAM_BODY, rid[1]), 200);
    ck_assert_int_eq(get(&f, "/v1/models", cred, rid[2]), 200);
    ck_assert_int_eq(get(&f, "/v1/key", cred, rid[3]), 200);
    ck_assert_int_eq(get(&f, "/v1/models", NULL, rid[4]), 401);
    ck_assert_int_eq(post(&f, cred_rpm, CHAT_BODY, rid[5]), 200);
    ck_assert_int_eq(post(&f, cred_rpm, CHAT_BODY, rid[5]), 429);
    ck_assert_int_eq(post(&f, cred,
                          "{\"model\":\"" UNKNOWN_MODEL "\",\"messages\":[]}",
                          rid[6]),
                     404);
    ck_assert_int_eq(get(&f, "/nope", cred, rid[7]), 404);
    ck_assert_int_eq(get(&f, "/healthz", NULL, rid[8]), 200);
    ck_assert_int_eq(get(&f, "/readyz", NULL, rid[9]), 200);
    snprintf(qs, sizeof(qs), "/v1/models?api_key=%s", keys[0].token);
    ck_assert_int_eq(get(&f, qs, NULL, rid[10]), 401);
    gwf_admin_http(&f, &r, "GET", "/admin/v1/keys", hdr, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    snprintf(rid[11], GWF_REQID_MAX, "%s", r.request_id);
    gwf_resp_free(&r);
    gwf_admin_http(&f, &r, "GET", "/admin/v1/keys", NULL, NULL, 0);
    ck_assert_int_eq(r.status, 401);
    snprintf(rid[12], GWF_REQID_MAX, "%s", r.request_id);
    gwf_resp_free(&r);
    {
        /* A client that leaves halfway through its body. */
        char req[1024];
        int n = gwf_raw_post(req, sizeof(req), "/v1/chat/completions",
                             keys[0].token, CHAT_BODY, 4096);

        fd = gwf_connect(f.gw_port);
        ck_assert_int_ge(fd, 0);
        ck_assert(gwf_send_all(fd, req, (size_t)n));
        gwf_sleep_ms(100);
        close(fd);
    }
    ck_assert(gwf_log_wait(log_path, "\"status\":499", LOG_WAIT_MS));

    lines = lines_with(log_path, rid[1]);
    /* Forwarded, JSON answer. */
    l = find_line(lines, "access", rid[0]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "POST", "/v1/chat/completions", "chat", 200, keys[0].id,
                  NULL);
    assert_str(l, "workspace_id", ws);
    assert_str(l, "model", "gpt-4o");
    assert_str(l, "provider", "mock");
    assert_int(l, "prompt_tokens", 10);
    assert_int(l, "completion_tokens", 20);
    assert_str(l, "cost", "0.000225"); /* 10 × 2.50 + 20 × 10.00 per 1M */
    ck_assert(json_is_null(json_object_get(l, "ttft_ms")));
    /* Forwarded, streamed: a time to first token. */
    l = find_line(lines, "access", rid[1]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "POST", "/v1/chat/completions", "chat", 200, keys[0].id,
                  NULL);
    ck_assert(json_is_number(json_object_get(l, "ttft_ms")));
    ck_assert_int_gt(
        json_integer_value(json_object_get(l, "completion_tokens")), 0);
    /* Answered by keygate. */
    l = find_line(lines, "access", rid[2]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "GET", "/v1/models", "models", 200, keys[0].id, NULL);
    assert_str(l, "workspace_id", ws);
    assert_str(l, "model", NULL);
    assert_str(l, "cost", "0.00");
    l = find_line(lines, "access", rid[3]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "GET", "/v1/key", "other", 200, keys[0].id, NULL);
    /* Refused. */
    l = find_line(lines, "access", rid[4]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "GET", "/v1/models", "models", 401, NULL,
                  "missing_api_key");
    assert_str(l, "workspace_id", NULL);
    l = find_line(lines, "access", rid[5]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "POST", "/v1/chat/completions", "chat", 429, keys[1].id,
                  "rate_limit_exceeded");
    l = find_line(lines, "access", rid[6]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "POST", "/v1/chat/completions", "chat", 404, keys[0].id,
                  "model_not_found");
    assert_str(l, "model", NULL); /* a name the configuration does not know */
    l = find_line(lines, "access", rid[7]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "GET", NULL, "other", 404, NULL, "unknown_route");
    l = find_line(lines, "access", rid[8]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "GET", "/healthz", "other", 200, NULL, NULL);
    l = find_line(lines, "access", rid[9]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "GET", "/readyz", "other", 200, NULL, NULL);
    l = find_line(lines, "access", rid[10]);
    ck_assert_ptr_nonnull(l);
    assert_access(l, "GET", "/v1/models", "models", 401, NULL,
                  "invalid_api_key");
    /* The admin listener. */
    l = find_line(lines, "admin", rid[11]);
    ck_assert_ptr_nonnull(l);
    assert_str(l, "route", "/admin/v1/keys");
    assert_int(l, "status", 200);
    assert_str(l, "token_id", admin_id);
    assert_str(l, "client_ip", "127.0.0.1");
    l = find_line(lines, "admin", rid[12]);
    ck_assert_ptr_nonnull(l);
    assert_int(l, "status", 401);
    assert_str(l, "token_id", NULL);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(l, "error")));
    /* The client that left. */
    {
        size_t i;
        int gone = 0;

        json_array_foreach(lines, i, l)
        {
            if (json_integer_value(json_object_get(l, "status")) == 499) {
                assert_access(l, "POST", "/v1/chat/completions", "chat", 499,
                              keys[0].id, "client_gone");
                gone++;
            }
        }
        ck_assert_int_eq(gone, 1);
    }
    /* Server lines are JSON too, with their message. */
    ck_assert_int_gt(gwf_log_count(log_path, "\"type\":\"log\",\"msg\":\""), 0);
    json_decref(lines);

    ck_assert_int_eq(gwf_log_count(log_path, UNKNOWN_MODEL), 0);
    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    assert_no_secret(log_path, keys, 2, admin);
    assert_no_secret(f.gw_err, keys, 2, admin);
    /* Everything went to the file. */
    ck_assert_int_eq(gwf_log_count(f.gw_err, "\"type\":\"access\""), 0);
    ck_assert_int_eq(gwf_log_count(f.gw_err, " access request_id="), 0);
    gwf_free(&f);
}
END_TEST

/* A world logging as log_extra says ([log] file = keygate.log), with one
 * key, running; the log file's path and its rotated name (PATH_MAX). */
static void start_logged(gwf_t *f, gwf_key_t *k, const char *log_extra,
                         char *log_path, char *rotated)
{
    gwf_init(f, false);
    f->log_extra = log_extra;
    gwf_config(f, NULL, NULL, NULL);
    gwf_init_store(f);
    gwf_key_create(f, k, "rotated", NULL);
    ck_assert(kg_harness_path(log_path, PATH_MAX, f->dir, "keygate.log"));
    ck_assert(kg_harness_path(rotated, PATH_MAX, f->dir, "keygate.log.1"));
    gwf_start(f);
}

/* config/keygate.logrotate into conf, for the world's log file and
 * daemon: its path, and "kill -USR1 <pid>" for the systemctl line. */
static void write_logrotate(const gwf_t *f, const char *log_path,
                            const char *conf)
{
    static const char example[] =
        KEYGATE_SOURCE_DIR "/config/keygate.logrotate";
    static const char file[] = "/var/log/keygate/keygate.log {";
    static const char sysd[] =
        "systemctl kill --signal=USR1 --kill-whom=main keygate.service";
    char kill_cmd[64];
    char *text = NULL;
    char *out;
    char *at;
    char *post;
    size_t len = 0;

    ck_assert_int_eq(kg_harness_read_file(example, &text, &len), 0);
    out = malloc(len + PATH_MAX + sizeof(kill_cmd));
    ck_assert_ptr_nonnull(out);
    at = strstr(text, file);
    ck_assert_ptr_nonnull(at);
    *at = '\0';
    at += strlen(file) - 2; /* from " {" on */
    post = strstr(at, sysd);
    ck_assert_ptr_nonnull(post);
    *post = '\0';
    snprintf(kill_cmd, sizeof(kill_cmd), "kill -USR1 %ld", (long)f->gw_pid);
    snprintf(out, len + PATH_MAX + sizeof(kill_cmd), "%s%s%s%s%s", text,
             log_path, at, kill_cmd, post + strlen(sysd));
    ck_assert_int_eq(kg_harness_write_file(conf, out, strlen(out), 0644), 0);
    free(out);
    free(text);
}

/*
 * logrotate's way: the file is renamed, lines go on to it until SIGUSR1,
 * then to a new file under the name. A reload switches the format.
 */
START_TEST(test_log_reopen_on_sigusr1)
{
    char log_path[PATH_MAX];
    char rotated[PATH_MAX];
    char cred[160];
    char rid[4][GWF_REQID_MAX];
    char needle[512];
    gwf_key_t k;
    gwf_t f;

    start_logged(&f, &k, "file = keygate.log\n", log_path, rotated);
    gwf_bearer(&k, cred, sizeof(cred));
    /* 0640 at most (the daemon's umask may take more away). */
    ck_assert_int_eq(kg_harness_file_mode(log_path) & ~0640, 0);

    /* Text first. */
    ck_assert_int_eq(get(&f, "/v1/models", cred, rid[0]), 200);
    snprintf(needle, sizeof(needle),
             " info access request_id=%s method=GET route=/v1/models "
             "operation=models status=200 key_id=%s ",
             rid[0], k.id);
    ck_assert_msg(gwf_log_wait(log_path, needle, LOG_WAIT_MS), "no %s", needle);

    /* A reload to JSON. */
    f.log_extra = JSON_LOG;
    gwf_config(&f, NULL, NULL, NULL);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(gwf_wait_generation(&f, 2, LOG_WAIT_MS));
    ck_assert_int_eq(get(&f, "/v1/models", cred, rid[1]), 200);
    assert_json_line(log_path, rid[1]);

    /* Renamed: lines still go to the renamed file. */
    ck_assert_int_eq(rename(log_path, rotated), 0);
    ck_assert_int_eq(get(&f, "/v1/models", cred, rid[2]), 200);
    assert_json_line(rotated, rid[2]);
    ck_assert(!kg_harness_exists(log_path));

    /* SIGUSR1: a new file under the name. */
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGUSR1), 0);
    ck_assert(
        gwf_log_wait(log_path, "SIGUSR1: log file reopened", LOG_WAIT_MS));
    ck_assert_int_eq(get(&f, "/v1/models", cred, rid[3]), 200);
    assert_json_line(log_path, rid[3]);
    ck_assert_int_eq(kg_harness_file_mode(log_path) & ~0640, 0);
    for (int i = 0; i < 4; i++) {
        snprintf(needle, sizeof(needle), "request_id%s%s",
                 i == 0 ? "=" : "\":\"", rid[i]);
        ck_assert_int_eq(gwf_log_count(rotated, needle) > 0, i < 3);
        ck_assert_int_eq(gwf_log_count(log_path, needle) > 0, i == 3);
    }
    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    gwf_free(&f);
}
END_TEST

/*
 * config/keygate.logrotate, pointed at the world's log file and signalling
 * its daemon (instead of through systemctl): logrotate rotates the file
 * without an error, keygate opens a new one on the signal, and a request
 * after it is logged there.
 */
START_TEST(test_logrotate_example)
{
    char log_path[PATH_MAX];
    char rotated[PATH_MAX];
    char conf[PATH_MAX];
    char state[PATH_MAX];
    char cred[160];
    char rid[2][GWF_REQID_MAX];
    const char *argv[] = {"/usr/sbin/logrotate",
                          "--verbose",
                          "--force",
                          "--state",
                          state,
                          conf,
                          NULL};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 20000};
    kg_harness_result_t res = {0};
    gwf_key_t k;
    gwf_t f;

    start_logged(&f, &k, JSON_LOG, log_path, rotated);
    ck_assert(kg_harness_path(conf, sizeof(conf), f.dir, "logrotate.conf"));
    ck_assert(kg_harness_path(state, sizeof(state), f.dir, "logrotate.state"));
    gwf_bearer(&k, cred, sizeof(cred));
    ck_assert_int_eq(get(&f, "/v1/models", cred, rid[0]), 200);
    assert_json_line(log_path, rid[0]);

    write_logrotate(&f, log_path, conf);
    ck_assert_int_eq(kg_harness_run(&cmd, &res), 0);
    ck_assert_msg(res.status == 0, "logrotate: exit %d: %s", res.status,
                  res.err);
    ck_assert_msg(strstr(res.err, "error") == NULL, "logrotate: %s", res.err);
    ck_assert_ptr_nonnull(strstr(res.err, "running postrotate script"));
    ck_assert(kg_harness_exists(rotated));
    ck_assert(
        gwf_log_wait(log_path, "SIGUSR1: log file reopened", LOG_WAIT_MS));
    ck_assert_int_eq(get(&f, "/v1/models", cred, rid[1]), 200);
    assert_json_line(log_path, rid[1]);
    ck_assert_int_eq(gwf_log_count(rotated, rid[0]), 1);
    ck_assert_int_eq(gwf_log_count(rotated, rid[1]), 0);
    kg_harness_result_free(&res);
    ck_assert_int_eq(gwf_stop(&f, 15000), 0);
    gwf_free(&f);
}
END_TEST

static Suite *logs_suite(void)
{
    Suite *s = suite_create("logs");
    TCase *tc = tcase_create("logs");

    tcase_add_unchecked_fixture(tc, setup_root, teardown_root);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_json_access_lines_every_route);
    tcase_add_test(tc, test_log_reopen_on_sigusr1);
    tcase_add_test(tc, test_logrotate_example);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(logs_suite());
}
