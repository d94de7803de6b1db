/* The gateway tests' shared fixture: mocks, daemon, HTTP, sockets, store. */
#include "gateway_fixture.h"

#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "keygate/token.h"

#define GWF_START_MS   20000 /* a daemon or mock writes its port file */
#define GWF_CLI_MS     20000 /* one keygate CLI command */
#define GWF_CONFIG_MAX 16384

static char *g_root;
const char *gwf_source_ip;
static char g_pidlog[PATH_MAX];
static unsigned g_marker_seq;

/* ---- small helpers ----------------------------------------------------- */

int64_t gwf_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gwf_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void buf_add(gwf_buf_t *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->data, cap);
        ck_assert_ptr_nonnull(p);
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void gwf_buf_free(gwf_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

size_t gwf_count(const char *hay, size_t len, const char *needle)
{
    size_t n = 0;
    size_t nl = strlen(needle);
    const char *p;
    const char *end;

    if (hay == NULL || nl == 0) {
        return 0;
    }
    p = hay;
    end = hay + len;
    while ((size_t)(end - p) >= nl) {
        const char *hit = memmem(p, (size_t)(end - p), needle, nl);

        if (hit == NULL) {
            break;
        }
        n++;
        p = hit + nl;
    }
    return n;
}

static void path_in(char *buf, const char *dir, const char *name)
{
    ck_assert(kg_harness_path(buf, PATH_MAX, dir, name));
}

/* ---- process-wide ------------------------------------------------------ */

void gwf_global_init(void)
{
    /* Outside any test: no ck_assert here. */
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "cannot initialise libsodium or libcurl\n");
        exit(EXIT_FAILURE);
    }
    signal(SIGPIPE, SIG_IGN);
}

void gwf_global_cleanup(void)
{
    curl_global_cleanup();
}

void gwf_root_new(const char *tag)
{
    g_root = kg_harness_tmpdir_new(tag);
    ck_assert_ptr_nonnull(g_root);
    path_in(g_pidlog, g_root, "pids");
}

/* Note a started process so that the root's teardown can end it. */
static void note_pid(pid_t pid)
{
    FILE *fp = fopen(g_pidlog, "a");

    if (fp != NULL) {
        fprintf(fp, "%ld\n", (long)pid);
        fclose(fp);
    }
}

/* Whether pid still runs one of our binaries (not a reused pid). */
static bool pid_is_ours(pid_t pid)
{
    const char *bins[] = {getenv("KEYGATE_BIN"), getenv("KEYGATE_MOCK_BIN")};
    char link[64];
    char exe[PATH_MAX];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/%ld/exe", (long)pid);
    n = readlink(link, exe, sizeof(exe) - 1);
    if (n <= 0) {
        return false;
    }
    exe[n] = '\0';
    for (size_t i = 0; i < 2; i++) {
        char real[PATH_MAX];

        if (bins[i] != NULL && realpath(bins[i], real) != NULL &&
            strcmp(real, exe) == 0) {
            return true;
        }
    }
    return false;
}

void gwf_root_free(void)
{
    char *text = NULL;

    if (g_root == NULL) {
        return;
    }
    /* End what a failed forked test left behind: each process we started
     * leads its own process group. */
    if (kg_harness_read_file(g_pidlog, &text, NULL) == 0) {
        for (char *line = text; line != NULL && *line != '\0';) {
            char *eol = strchr(line, '\n');
            long pid;

            if (eol != NULL) {
                *eol = '\0';
            }
            pid = strtol(line, NULL, 10);
            if (pid > 1 && gwf_pid_alive((pid_t)pid) &&
                pid_is_ours((pid_t)pid)) {
                kill(-(pid_t)pid, SIGKILL);
            }
            line = eol ? eol + 1 : NULL;
        }
        free(text);
    }
    kg_harness_rmtree(g_root);
    free(g_root);
    g_root = NULL;
}

/* ---- one world --------------------------------------------------------- */

static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port;

    ck_assert_int_ge(fd, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Start a mock; key_env (may be NULL): "NAME=key" it requires. */
static void start_mock(gwf_t *f, kg_harness_proc_t *p, const char *name,
                       char *log, int *port, const char *key_env)
{
    char portfile[PATH_MAX];
    char out[PATH_MAX];
    char err[PATH_MAX];
    char fname[64];
    char var[GWF_ENV_MAX];
    const char *bin = kg_harness_bin("KEYGATE_MOCK_BIN");
    /* The mock must never see the provider credential in its environment
     * (only a key it is asked to require). */
    const char *const env[] = {GWF_PROVIDER_ENV, key_env, NULL};
    const char *argv[] = {bin,      "--port",
                          "0",      "--port-file",
                          portfile, "--log",
                          log,      "--threads",
                          "4",      key_env ? "--require-key-env" : NULL,
                          var,      NULL};
    kg_harness_cmd_t cmd = {argv, env, NULL, 0, 0};

    if (key_env != NULL) {
        size_t n = strcspn(key_env, "=");

        ck_assert(key_env[n] == '=' && n < sizeof(var));
        memcpy(var, key_env, n);
        var[n] = '\0';
    }

    snprintf(fname, sizeof(fname), "%s.port", name);
    path_in(portfile, f->dir, fname);
    snprintf(fname, sizeof(fname), "%s.log", name);
    path_in(log, f->dir, fname);
    snprintf(fname, sizeof(fname), "%s.out", name);
    path_in(out, f->dir, fname);
    snprintf(fname, sizeof(fname), "%s.err", name);
    path_in(err, f->dir, fname);
    ck_assert_int_eq(kg_harness_proc_start(&cmd, out, err, p), 0);
    note_pid(p->pid);
    *port = kg_harness_proc_wait_port_file(p, portfile, GWF_START_MS);
    ck_assert_msg(*port > 0, "%s did not start (status %d)", name, p->status);
}

void gwf_init(gwf_t *f, bool aux)
{
    char tmpl[PATH_MAX];
    int n;

    ck_assert_ptr_nonnull(g_root);
    memset(f, 0, sizeof(*f));
    n = snprintf(tmpl, sizeof(tmpl), "%s/w.XXXXXX", g_root);
    ck_assert(n > 0 && (size_t)n < sizeof(tmpl));
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    f->dir = strdup(tmpl);
    ck_assert_ptr_nonnull(f->dir);
    path_in(f->cfg, f->dir, "keygate.ini");
    path_in(f->db, f->dir, "state/keygate.db");
    path_in(f->gw_port_file, f->dir, "gw.port");
    path_in(f->admin_port_file, f->dir, "admin.port");
    start_mock(f, &f->mock, "mock", f->mock_log, &f->mock_port, NULL);
    if (aux) {
        start_mock(f, &f->aux, "aux", f->aux_log, &f->aux_port, NULL);
    }
    f->dead_port = closed_port();
}

void gwf_init_keyed(gwf_t *f, const char *env_name, const char *key)
{
    int n;

    gwf_init(f, false);
    n = snprintf(f->extra_env, sizeof(f->extra_env), "%s=%s", env_name, key);
    ck_assert(n > 0 && (size_t)n < sizeof(f->extra_env));
    start_mock(f, &f->aux, "aux", f->aux_log, &f->aux_port, f->extra_env);
}

/* The environment of keygate's processes: the pool credential, and the
 * world's extra entry when it has one. */
static void kg_env(const gwf_t *f, const char **env)
{
    env[0] = GWF_PROVIDER_ENV "=" GWF_PROVIDER_CANARY;
    env[1] = f->extra_env[0] ? f->extra_env : NULL;
    env[2] = NULL;
}

/* Append a formatted line to the config text. */
__attribute__((format(printf, 3, 4))) static void
cfg_add(char *text, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(text + *len, GWF_CONFIG_MAX - *len, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < GWF_CONFIG_MAX - *len);
    *len += (size_t)n;
}

void gwf_config(gwf_t *f, const char *server, const char *upstream,
                const char *extra)
{
    char *text = malloc(GWF_CONFIG_MAX);
    size_t len = 0;

    ck_assert_ptr_nonnull(text);
    cfg_add(text, &len,
            "# keygate gateway integration test\n[log]\nlevel = debug\n%s\n"
            "[server]\nlisten = 127.0.0.1:0\nthreads = 2\n%s\n",
            f->log_extra ? f->log_extra : "", server ? server : "");
    cfg_add(text, &len, "[upstream]\nconnect_timeout = 5s\n%s\n",
            upstream ? upstream : "");
    /* The admin listener on an ephemeral port too, never 8081. */
    cfg_add(text, &len, "[admin]\nlisten = 127.0.0.1:0\n%s\n",
            f->admin_extra ? f->admin_extra : "");
    cfg_add(text, &len,
            "[store]\npath = state/keygate.db\n\n[security]\n"
            "hash_key_file = state/hash.key\n\n");
    cfg_add(text, &len,
            "[provider mock]\ntype = openai\n"
            "base_url = http://127.0.0.1:%d/v1\napi_key_env = %s\n\n",
            f->mock_port, GWF_PROVIDER_ENV);
    cfg_add(text, &len,
            "[provider mockant]\ntype = anthropic\n"
            "base_url = http://127.0.0.1:%d/v1\napi_key_env = %s\n\n",
            f->mock_port, GWF_PROVIDER_ENV);
    cfg_add(text, &len,
            "[provider dead]\ntype = openai\n"
            "base_url = http://127.0.0.1:%d/v1\n\n",
            f->dead_port);
    cfg_add(text, &len,
            "[provider aux]\ntype = openai\n"
            "base_url = http://127.0.0.1:%d/v1\n\n",
            f->aux_port > 0 ? f->aux_port : f->dead_port);
    cfg_add(text, &len,
            "[model gpt-4o]\nprovider = mock\ninput_price = 2.50\n"
            "output_price = 10.00\n\n"
            "[model claude-3-5-sonnet]\nprovider = mockant\n"
            "input_price = 3.00\noutput_price = 15.00\n\n"
            "[model renamed]\nprovider = mock\nupstream = other-name\n"
            "input_price = 1.00\noutput_price = 2.00\n\n"
            "[model text-embedding-3-small]\nprovider = mock\n"
            "input_price = 0.02\noutput_price = 0\n\n"
            "[model dead-model]\nprovider = dead\ninput_price = 1\n"
            "output_price = 1\n\n"
            "[model aux-model]\nprovider = aux\ninput_price = 1\n"
            "output_price = 1\n\n%s",
            extra ? extra : "");
    ck_assert_int_eq(kg_harness_write_file(f->cfg, text, len, 0644), 0);
    free(text);
}

void gwf_args_append(const char **argv, size_t n, va_list ap)
{
    for (const char *a = va_arg(ap, const char *); a != NULL;
         a = va_arg(ap, const char *)) {
        ck_assert_uint_lt(n, KG_HARNESS_MAX_ARGS - 1);
        argv[n++] = a;
    }
    argv[n] = NULL;
}

int gwf_kg(gwf_t *f, kg_harness_result_t *res, const char *first, ...)
{
    const char *argv[KG_HARNESS_MAX_ARGS] = {kg_harness_bin("KEYGATE_BIN"),
                                             "-c", f->cfg, first};
    const char *env[3];
    kg_harness_cmd_t cmd = {argv, env, NULL, 0, GWF_CLI_MS};
    size_t n = 4;
    va_list ap;

    kg_env(f, env);
    va_start(ap, first);
    gwf_args_append(argv, n, ap);
    va_end(ap);
    kg_harness_result_free(res);
    ck_assert_msg(kg_harness_run(&cmd, res) == 0, "cannot run keygate: %s",
                  res->err);
    ck_assert_msg(!res->timed_out, "keygate %s timed out", first);
    return res->status;
}

void gwf_init_store(gwf_t *f)
{
    kg_harness_result_t r = {0};
    int rc = gwf_kg(f, &r, "init", NULL);

    ck_assert_msg(rc == 0, "keygate init: exit %d: %s", rc, r.err);
    /* The pool credentials of the configuration serve the credits mode
     * (product spec 5.3); give the workspace plenty. */
    rc = gwf_kg(f, &r, "workspaces", "update", "default", "--mode", "credits",
                NULL);
    ck_assert_msg(rc == 0, "workspaces update: exit %d: %s", rc, r.err);
    rc =
        gwf_kg(f, &r, "workspaces", "credit", "default", "--add", "1000", NULL);
    ck_assert_msg(rc == 0, "workspaces credit: exit %d: %s", rc, r.err);
    kg_harness_result_free(&r);
}

static void copy_str(char *dst, size_t len, const char *src)
{
    ck_assert_ptr_nonnull(src);
    ck_assert_uint_lt(strlen(src), len);
    memcpy(dst, src, strlen(src) + 1);
}

void gwf_key_create(gwf_t *f, gwf_key_t *k, const char *name, ...)
{
    const char *argv[KG_HARNESS_MAX_ARGS] = {kg_harness_bin("KEYGATE_BIN"),
                                             "-c",
                                             f->cfg,
                                             "--json",
                                             "keys",
                                             "create",
                                             "--name",
                                             name};
    const char *env[3];
    kg_harness_cmd_t cmd = {argv, env, NULL, 0, GWF_CLI_MS};
    kg_harness_result_t r = {0};
    size_t n = 8;
    json_t *j;
    va_list ap;

    kg_env(f, env);
    va_start(ap, name);
    gwf_args_append(argv, n, ap);
    va_end(ap);
    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert_msg(r.status == 0, "keys create: exit %d: %s", r.status, r.err);
    j = json_loads(r.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    copy_str(k->token, sizeof(k->token),
             json_string_value(json_object_get(j, "token")));
    copy_str(
        k->id, sizeof(k->id),
        json_string_value(json_object_get(json_object_get(j, "key"), "id")));
    copy_str(k->display, sizeof(k->display),
             json_string_value(
                 json_object_get(json_object_get(j, "key"), "display")));
    json_decref(j);
    kg_harness_result_free(&r);
}

void gwf_start(gwf_t *f)
{
    gwf_start_env(f, NULL);
}

void gwf_start_env(gwf_t *f, const char *const *extra)
{
    const char *argv[] = {kg_harness_bin("KEYGATE_BIN"),
                          "-c",
                          f->cfg,
                          "serve",
                          "--port-file",
                          f->gw_port_file,
                          "--admin-port-file",
                          f->admin_port_file,
                          NULL};
    const char *env[3 + GWF_START_ENV_MAX];
    kg_harness_cmd_t cmd = {argv, env, NULL, 0, 0};
    char name[32];
    size_t n;

    kg_env(f, env);
    n = env[1] != NULL ? 2 : 1;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        ck_assert_uint_lt(i, GWF_START_ENV_MAX);
        env[n++] = extra[i];
    }
    env[n] = NULL;
    f->starts++;
    snprintf(name, sizeof(name), "gw%d.out", f->starts);
    path_in(f->gw_out, f->dir, name);
    snprintf(name, sizeof(name), "gw%d.err", f->starts);
    path_in(f->gw_err, f->dir, name);
    unlink(f->gw_port_file);
    unlink(f->admin_port_file);
    kg_harness_proc_free(&f->gw);
    ck_assert_int_eq(kg_harness_proc_start(&cmd, f->gw_out, f->gw_err, &f->gw),
                     0);
    note_pid(f->gw.pid);
    f->gw_pid = f->gw.pid;
    f->gw_port =
        kg_harness_proc_wait_port_file(&f->gw, f->gw_port_file, GWF_START_MS);
    if (f->gw_port <= 0) {
        char *err = NULL;

        kg_harness_read_file(f->gw_err, &err, NULL);
        ck_abort_msg("keygate serve did not start (status %d): %s",
                     f->gw.status, err ? err : "");
    }
    /* Written right after the public port file. */
    f->admin_port = kg_harness_proc_wait_port_file(&f->gw, f->admin_port_file,
                                                   GWF_START_MS);
    ck_assert_int_gt(f->admin_port, 0);
}

int gwf_stop(gwf_t *f, int term_ms)
{
    return kg_harness_proc_stop(&f->gw, term_ms);
}

bool gwf_stop_checked(gwf_t *f)
{
    int status = kg_harness_proc_stop(&f->gw, 15000);
    char *err = NULL;
    size_t len = 0;

    if (status == 0 && !f->gw.killed) {
        return true;
    }
    kg_harness_read_file(f->gw_err, &err, &len);
    fprintf(stderr,
            "keygate serve exited with status %d%s; the end of its "
            "stderr:\n%s\n",
            status, f->gw.killed ? " (killed at the timeout)" : "",
            err ? err + (len > 4000 ? len - 4000 : 0) : "");
    free(err);
    return false;
}

void gwf_kill9(gwf_t *f)
{
    ck_assert_int_eq(kg_harness_proc_signal(&f->gw, SIGKILL), 0);
    ck_assert_int_eq(kg_harness_proc_stop(&f->gw, 5000), 128 + SIGKILL);
}

int gwf_wait_exit(gwf_t *f, int timeout_ms)
{
    int64_t deadline = gwf_now_ms() + timeout_ms;

    while (kg_harness_proc_alive(&f->gw)) {
        if (gwf_now_ms() >= deadline) {
            return -1;
        }
        gwf_sleep_ms(20);
    }
    return f->gw.status;
}

void gwf_free(gwf_t *f)
{
    if (f->dir == NULL) {
        return;
    }
    kg_harness_proc_stop(&f->gw, 10000);
    kg_harness_proc_free(&f->gw);
    kg_harness_proc_stop(&f->mock, 5000);
    kg_harness_proc_free(&f->mock);
    kg_harness_proc_stop(&f->aux, 5000);
    kg_harness_proc_free(&f->aux);
    kg_harness_rmtree(f->dir);
    free(f->dir);
    memset(f, 0, sizeof(*f));
}

/* ---- HTTP with libcurl ------------------------------------------------- */

typedef struct resp_sink {
    gwf_buf_t headers;
    gwf_buf_t body;
} resp_sink_t;

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    resp_sink_t *s = ud;
    size_t len = size * n;

    /* Keep only the final response's headers. */
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        s->headers.len = 0;
    }
    buf_add(&s->headers, data, len);
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    resp_sink_t *s = ud;

    buf_add(&s->body, data, size * n);
    return size * n;
}

static int gwf_http_port(int port, gwf_resp_t *r, const char *method,
                         const char *path, const char *const *headers,
                         const char *body, int timeout_ms);

int gwf_http(const gwf_t *f, gwf_resp_t *r, const char *method,
             const char *path, const char *const *headers, const char *body,
             int timeout_ms)
{
    return gwf_http_port(f->gw_port, r, method, path, headers, body,
                         timeout_ms);
}

int gwf_admin_http(const gwf_t *f, gwf_resp_t *r, const char *method,
                   const char *path, const char *const *headers,
                   const char *body, int timeout_ms)
{
    return gwf_http_port(f->admin_port, r, method, path, headers, body,
                         timeout_ms);
}

static int gwf_http_port(int port, gwf_resp_t *r, const char *method,
                         const char *path, const char *const *headers,
                         const char *body, int timeout_ms)
{
    CURL *c = curl_easy_init();
    struct curl_slist *list = NULL;
    resp_sink_t sink;
    char url[512];
    CURLcode rc;

    memset(r, 0, sizeof(*r));
    memset(&sink, 0, sizeof(sink));
    ck_assert_ptr_nonnull(c);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *next = curl_slist_append(list, headers[i]);

        ck_assert_ptr_nonnull(next);
        list = next;
    }
    list = curl_slist_append(list, "Expect:");
    ck_assert_ptr_nonnull(list);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    if (gwf_source_ip != NULL) {
        curl_easy_setopt(c, CURLOPT_INTERFACE, gwf_source_ip);
    }
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     (long)(timeout_ms > 0 ? timeout_ms : GWF_HTTP_TIMEOUT));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    if (body == NULL && strcmp(method, "POST") == 0) {
        body = ""; /* a POST without a body is still a POST */
    }
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)strlen(body));
    }
    if (strcmp(method, "GET") == 0 && body == NULL) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "POST") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->seconds);
    curl_easy_cleanup(c);
    curl_slist_free_all(list);
    r->curl_rc = (int)rc;
    r->headers = sink.headers.data;
    r->headers_len = sink.headers.len;
    r->body = sink.body.data;
    r->body_len = sink.body.len;
    if (r->headers == NULL) {
        r->headers = calloc(1, 1);
    }
    if (r->body == NULL) {
        r->body = calloc(1, 1);
    }
    ck_assert(r->headers != NULL && r->body != NULL);
    gwf_resp_header(r, "x-request-id", r->request_id, sizeof(r->request_id));
    return (int)rc;
}

int gwf_post(const gwf_t *f, gwf_resp_t *r, const char *path, const char *cred,
             const char *body)
{
    const char *h[] = {"Content-Type: application/json", cred, NULL};

    return gwf_http(f, r, "POST", path, h, body, 0);
}

int gwf_get(const gwf_t *f, gwf_resp_t *r, const char *path, const char *cred)
{
    const char *h[] = {cred, NULL};

    return gwf_http(f, r, "GET", path, h, NULL, 0);
}

void gwf_resp_free(gwf_resp_t *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

int gwf_resp_header(const gwf_resp_t *r, const char *name, char *buf,
                    size_t len)
{
    size_t nl = strlen(name);
    const char *p = r->headers;
    int found = 0;

    if (buf != NULL && len > 0) {
        buf[0] = '\0';
    }
    while (p != NULL && *p != '\0') {
        const char *eol = strstr(p, "\r\n");
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);

        if (ll > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            size_t vl = ll - nl - 1;

            while (vl > 0 && (*v == ' ' || *v == '\t')) {
                v++;
                vl--;
            }
            if (found == 0 && buf != NULL && len > 0) {
                snprintf(buf, len, "%.*s", (int)vl, v);
            }
            found++;
        }
        p = eol ? eol + 2 : NULL;
    }
    return found;
}

json_t *gwf_resp_json(const gwf_resp_t *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, 0, &e);

    ck_assert_msg(j != NULL, "body is not JSON (%s): %.300s", e.text, r->body);
    return j;
}

void gwf_assert_error(const gwf_resp_t *r, long status, const char *code,
                      const char *msg)
{
    json_t *j;
    json_t *e;
    const char *m;
    char www[128];

    ck_assert_msg(r->curl_rc == CURLE_OK, "curl error %d", r->curl_rc);
    ck_assert_msg(r->status == status, "status %ld, expected %ld: %.300s",
                  r->status, status, r->body);
    ck_assert_msg(r->request_id[0] != '\0', "no x-request-id on a %ld", status);
    j = gwf_resp_json(r);
    ck_assert_msg(json_is_object(j) && json_object_size(j) == 3,
                  "top level is not {error,status,message}: %s", r->body);
    e = json_object_get(j, "error");
    ck_assert_msg(json_is_object(e) && json_object_size(e) == 3,
                  "error is not {message,type,code}: %s", r->body);
    m = json_string_value(json_object_get(e, "message"));
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(e, "type")));
    ck_assert_str_eq(json_string_value(json_object_get(e, "code")), code);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), status);
    ck_assert_str_eq(json_string_value(json_object_get(j, "message")), m);
    if (msg != NULL) {
        ck_assert_str_eq(m, msg);
    }
    if (status == 401) {
        ck_assert_int_eq(
            gwf_resp_header(r, "WWW-Authenticate", www, sizeof(www)), 1);
        ck_assert_str_eq(www, "Bearer realm=\"keygate\"");
    }
    if (status == 401) {
        ck_assert_str_eq(json_string_value(json_object_get(e, "type")),
                         "authentication_error");
    }
    json_decref(j);
}

const char *gwf_bearer(const gwf_key_t *k, char *buf, size_t len)
{
    int n = snprintf(buf, len, "Authorization: Bearer %s", k->token);

    ck_assert(n > 0 && (size_t)n < len);
    return buf;
}

void gwf_assert_serving(const gwf_t *f, const gwf_key_t *k)
{
    char cred[160];
    gwf_resp_t r;

    gwf_post(f, &r, "/v1/chat/completions", gwf_bearer(k, cred, sizeof(cred)),
             "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"still there?\"}]}");
    ck_assert_msg(r.curl_rc == CURLE_OK && r.status == 200,
                  "the daemon no longer serves: curl %d, status %ld: %.200s",
                  r.curl_rc, r.status, r.body);
    ck_assert_ptr_nonnull(strstr(r.body, "Hello from keygate-mock."));
    gwf_resp_free(&r);
}

/* ---- raw sockets ------------------------------------------------------- */

int gwf_connect(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool gwf_send_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

int gwf_recv_until(int fd, gwf_buf_t *b, const char *needle, int timeout_ms)
{
    int64_t deadline = gwf_now_ms() + timeout_ms;
    char chunk[16384];

    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t left = deadline - gwf_now_ms();
        ssize_t n;

        if (needle != NULL && b->data != NULL && strstr(b->data, needle)) {
            return 1;
        }
        if (left <= 0) {
            return -1;
        }
        if (poll(&pfd, 1, (int)left) <= 0) {
            continue;
        }
        n = recv(fd, chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -2;
        }
        if (n == 0) {
            if (needle != NULL && b->data != NULL && strstr(b->data, needle)) {
                return 1;
            }
            return needle == NULL ? 1 : 0;
        }
        buf_add(b, chunk, (size_t)n);
    }
}

bool gwf_wait_closed(int fd, gwf_buf_t *b, int timeout_ms)
{
    gwf_buf_t local = {0};
    int rc = gwf_recv_until(fd, b ? b : &local, NULL, timeout_ms);

    gwf_buf_free(&local);
    return rc == 1 || rc == -2;
}

int gwf_raw_post(char *buf, size_t len, const char *path, const char *token,
                 const char *body, size_t content_length)
{
    int n = snprintf(buf, len,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     path, token, content_length, body);

    ck_assert(n > 0 && (size_t)n < len);
    return n;
}

bool gwf_raw_header(const char *resp, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);

    for (const char *p = resp; p != NULL && *p != '\0';) {
        const char *eol = strstr(p, "\r\n");

        if (eol == NULL || eol == p) {
            break; /* the end of the headers */
        }
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;

            while (*v == ' ') {
                v++;
            }
            snprintf(out, len, "%.*s", (int)(eol - v), v);
            return true;
        }
        p = eol + 2;
    }
    return false;
}

/* ---- the store --------------------------------------------------------- */

static sqlite3_stmt *sql_prepare(const gwf_t *f, sqlite3 **db, const char *sql,
                                 const char *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(f->db, db, SQLITE_OPEN_READWRITE, NULL);

    ck_assert_msg(rc == SQLITE_OK, "cannot open %s: %s", f->db,
                  sqlite3_errstr(rc));
    sqlite3_busy_timeout(*db, 5000);
    rc = sqlite3_prepare_v2(*db, sql, -1, &st, NULL);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(*db));
    if (arg != NULL) {
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    }
    return st;
}

int64_t gwf_sql_int(const gwf_t *f, const char *sql, const char *arg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = sql_prepare(f, &db, sql, arg);
    int64_t v = -1;
    int rc = sqlite3_step(st);

    ck_assert_msg(rc == SQLITE_ROW || rc == SQLITE_DONE, "%s: %s", sql,
                  sqlite3_errmsg(db));
    if (rc == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

bool gwf_sql_text(const gwf_t *f, const char *sql, const char *arg, char *out,
                  size_t len)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = sql_prepare(f, &db, sql, arg);
    int rc = sqlite3_step(st);
    bool found = rc == SQLITE_ROW;

    ck_assert_msg(rc == SQLITE_ROW || rc == SQLITE_DONE, "%s: %s", sql,
                  sqlite3_errmsg(db));
    if (found) {
        const unsigned char *t = sqlite3_column_text(st, 0);

        snprintf(out, len, "%s", t ? (const char *)t : "");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return found;
}

bool gwf_usage_now(const gwf_t *f, const char *request_id, gwf_usage_t *u)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = sql_prepare(
        f, &db,
        "SELECT key_id, operation, model, status, prompt_tokens, "
        "completion_tokens, cost, streamed, error_code FROM usage_events "
        "WHERE request_id = ?1",
        request_id);
    int rc = sqlite3_step(st);
    bool found = rc == SQLITE_ROW;

    memset(u, 0, sizeof(*u));
    ck_assert_msg(rc == SQLITE_ROW || rc == SQLITE_DONE, "usage: %s",
                  sqlite3_errmsg(db));
    if (found) {
        snprintf(u->key_id, sizeof(u->key_id), "%s",
                 (const char *)sqlite3_column_text(st, 0));
        snprintf(u->operation, sizeof(u->operation), "%s",
                 (const char *)sqlite3_column_text(st, 1));
        snprintf(u->model, sizeof(u->model), "%s",
                 (const char *)sqlite3_column_text(st, 2));
        u->status = sqlite3_column_int(st, 3);
        u->prompt_tokens = sqlite3_column_int64(st, 4);
        u->completion_tokens = sqlite3_column_int64(st, 5);
        u->cost = sqlite3_column_int64(st, 6);
        u->streamed = sqlite3_column_int(st, 7);
        u->has_error = sqlite3_column_type(st, 8) != SQLITE_NULL;
        if (u->has_error) {
            snprintf(u->error_code, sizeof(u->error_code), "%s",
                     (const char *)sqlite3_column_text(st, 8));
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return found;
}

bool gwf_usage_wait(const gwf_t *f, const char *request_id, gwf_usage_t *u,
                    int timeout_ms)
{
    int64_t deadline = gwf_now_ms() + timeout_ms;

    for (;;) {
        if (gwf_usage_now(f, request_id, u)) {
            return true;
        }
        if (gwf_now_ms() >= deadline) {
            return false;
        }
        gwf_sleep_ms(10);
    }
}

bool gwf_usage(const gwf_t *f, const char *request_id, gwf_usage_t *u)
{
    return gwf_usage_wait(f, request_id, u, GWF_USAGE_WAIT_MS);
}

int64_t gwf_usage_settled(const gwf_t *f)
{
    int64_t deadline = gwf_now_ms() + 10000;
    int64_t last = gwf_sql_int(f, "SELECT count(*) FROM usage_events", NULL);
    int same = 0;

    while (same < GWF_SETTLE_READS && gwf_now_ms() < deadline) {
        int64_t now;

        gwf_sleep_ms(GWF_SETTLE_GAP_MS);
        now = gwf_sql_int(f, "SELECT count(*) FROM usage_events", NULL);
        same = now == last ? same + 1 : 0;
        last = now;
    }
    return last;
}

/* ---- logs -------------------------------------------------------------- */

void gwf_marker(char *buf, size_t len)
{
    char rnd[9];

    kg_token_random_base62(rnd, 8);
    rnd[8] = '\0';
    snprintf(buf, len, "mk-%ld-%u-%s", (long)getpid(), ++g_marker_seq, rnd);
}

int gwf_log_count(const char *path, const char *needle)
{
    char *text = NULL;
    size_t len = 0;
    int n = 0;

    if (kg_harness_read_file(path, &text, &len) != 0) {
        return 0;
    }
    for (char *line = text; line != NULL && *line != '\0';) {
        char *eol = strchr(line, '\n');

        if (eol != NULL) {
            *eol = '\0';
        }
        if (strstr(line, needle) != NULL) {
            n++;
        }
        line = eol ? eol + 1 : NULL;
    }
    free(text);
    return n;
}

json_t *gwf_log_request(const char *path, const char *needle)
{
    char *text = NULL;
    size_t len = 0;
    json_t *found = NULL;

    if (kg_harness_read_file(path, &text, &len) != 0) {
        return NULL;
    }
    for (char *line = text; line != NULL && *line != '\0' && !found;) {
        char *eol = strchr(line, '\n');

        if (eol != NULL) {
            *eol = '\0';
        }
        if (strstr(line, needle) != NULL) {
            json_t *j = json_loads(line, 0, NULL);

            if (json_is_object(j) && json_object_get(j, "method") != NULL) {
                found = j;
            } else {
                json_decref(j);
            }
        }
        line = eol ? eol + 1 : NULL;
    }
    free(text);
    return found;
}

bool gwf_log_stream_end(const char *path, json_int_t n, char *reason,
                        size_t len, int timeout_ms)
{
    int64_t deadline = gwf_now_ms() + timeout_ms;

    for (;;) {
        char *text = NULL;
        bool found = false;

        if (kg_harness_read_file(path, &text, NULL) == 0) {
            for (char *line = text; line != NULL && *line != '\0' && !found;) {
                char *eol = strchr(line, '\n');
                json_t *j;

                if (eol != NULL) {
                    *eol = '\0';
                }
                j = strstr(line, "stream_end") ? json_loads(line, 0, NULL)
                                               : NULL;
                if (j != NULL &&
                    json_integer_value(json_object_get(j, "request")) == n) {
                    const char *why =
                        json_string_value(json_object_get(j, "reason"));

                    snprintf(reason, len, "%s", why ? why : "?");
                    found = true;
                }
                json_decref(j);
                line = eol ? eol + 1 : NULL;
            }
            free(text);
        }
        if (found) {
            return true;
        }
        if (gwf_now_ms() >= deadline) {
            return false;
        }
        gwf_sleep_ms(10);
    }
}

void gwf_assert_absent(const char *path, const char *needle, const char *what)
{
    int rc = kg_harness_file_contains(path, needle, strlen(needle));

    ck_assert_msg(rc == 0, "%s found in %s (%s)", what, path,
                  rc < 0 ? "unreadable" : "leak");
}

/* ---- processes --------------------------------------------------------- */

bool gwf_pid_alive(pid_t pid)
{
    char path[64];
    char *text = NULL;
    const char *p;
    bool alive;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if (kg_harness_read_file(path, &text, NULL) != 0) {
        return false;
    }
    p = strrchr(text, ')');
    alive = p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
    free(text);
    return alive;
}

long gwf_rss_kb(pid_t pid)
{
    char path[64];
    char *text = NULL;
    const char *p;
    long kb = -1;

    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    if (kg_harness_read_file(path, &text, NULL) != 0) {
        return -1;
    }
    p = strstr(text, "\nVmRSS:");
    if (p != NULL) {
        kb = strtol(p + 7, NULL, 10);
    }
    free(text);
    return kb;
}

int gwf_fd_count(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n;
}

int gwf_tcp_established(int port)
{
    char *text = NULL;
    int n = 0;

    if (kg_harness_read_file("/proc/net/tcp", &text, NULL) != 0) {
        return -1;
    }
    for (char *line = strchr(text, '\n'); line != NULL && line[1] != '\0';) {
        unsigned lport = 0;
        unsigned rport = 0;
        unsigned state = 0;
        char *eol;

        line++;
        eol = strchr(line, '\n');
        if (eol != NULL) {
            *eol = '\0';
        }
        /* "  sl  local_address rem_address   st ..." */
        if (sscanf(line, " %*d: %*8x:%4x %*8x:%4x %2x", &lport, &rport,
                   &state) == 3 &&
            state == 1 &&
            (lport == (unsigned)port || rport == (unsigned)port)) {
            n++;
        }
        line = eol;
    }
    free(text);
    return n;
}

/* ---- tokens ------------------------------------------------------------ */

void gwf_split(const char *token, char *access, size_t alen, char *secret,
               size_t slen)
{
    const char *u1 = strchr(token, '_');
    const char *u2 = u1 ? strchr(u1 + 1, '_') : NULL;

    ck_assert_ptr_nonnull(u2);
    ck_assert((size_t)(u2 - token) < alen && strlen(u2 + 1) < slen);
    snprintf(access, alen, "%.*s", (int)(u2 - token), token);
    snprintf(secret, slen, "%s", u2 + 1);
}

const char *gwf_basic(const char *token, char *buf, size_t len)
{
    char access[GWF_TOKEN_MAX];
    char secret[GWF_TOKEN_MAX];
    char pair[2 * GWF_TOKEN_MAX];
    char b64[4 * GWF_TOKEN_MAX];
    int n;

    gwf_split(token, access, sizeof(access), secret, sizeof(secret));
    n = snprintf(pair, sizeof(pair), "%s:%s", access, secret);
    ck_assert(n > 0 && (size_t)n < sizeof(pair));
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)pair, (size_t)n,
                      sodium_base64_VARIANT_ORIGINAL);
    n = snprintf(buf, len, "Basic %s", b64);
    ck_assert(n > 0 && (size_t)n < len);
    sodium_memzero(pair, sizeof(pair));
    return buf;
}

void gwf_fake_token(const char *id, char *buf, size_t len)
{
    kg_token_t t;

    if (id != NULL) {
        ck_assert_int_eq(kg_token_regenerate("kg", id, &t), KG_OK);
    } else {
        ck_assert_int_eq(kg_token_generate("kg", &t), KG_OK);
    }
    ck_assert_int_eq(kg_token_format(&t, buf, len), KG_OK);
    kg_token_wipe(&t);
}

/* ---- appended helpers -------------------------------------------------- */

int gwf_sql_exec(const gwf_t *f, const char *sql, const char *arg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = sql_prepare(f, &db, sql, arg);
    int rc = sqlite3_step(st);
    int changed = sqlite3_changes(db);

    ck_assert_msg(rc == SQLITE_DONE, "%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return changed;
}

void gwf_admin_token(gwf_t *f, const char *name, char *buf, size_t len)
{
    kg_harness_result_t r = {0};
    json_t *j;
    int rc;

    rc =
        gwf_kg(f, &r, "--json", "admin-tokens", "create", "--name", name, NULL);
    ck_assert_msg(rc == 0, "admin-tokens create: %s", r.err);
    j = json_loads(r.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "token")));
    snprintf(buf, len, "%s", json_string_value(json_object_get(j, "token")));
    ck_assert_uint_gt(strlen(buf), 20);
    json_decref(j);
    kg_harness_result_free(&r);
}

json_int_t gwf_generation(const gwf_t *f)
{
    json_int_t n = -1;
    gwf_resp_t r;

    if (gwf_admin_http(f, &r, "GET", "/readyz", NULL, NULL, 0) == CURLE_OK &&
        r.status == 200) {
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        json_t *g = json_object_get(json_object_get(j, "config"), "generation");

        n = json_is_integer(g) ? json_integer_value(g) : -1;
        json_decref(j);
    }
    gwf_resp_free(&r);
    return n;
}

bool gwf_wait_generation(const gwf_t *f, json_int_t n, int timeout_ms)
{
    int64_t end = gwf_now_ms() + timeout_ms;

    while (gwf_generation(f) != n) {
        if (gwf_now_ms() >= end) {
            return false;
        }
        gwf_sleep_ms(20);
    }
    return true;
}

void gwf_config_replace(const gwf_t *f, const char *from, const char *to)
{
    char *text = NULL;
    char *out;
    char *at;
    size_t len = 0;
    size_t head;

    ck_assert_int_eq(kg_harness_read_file(f->cfg, &text, &len), 0);
    at = strstr(text, from);
    ck_assert_msg(at != NULL, "no '%s' in the configuration", from);
    head = (size_t)(at - text);
    out = malloc(len + strlen(to) + 1);
    ck_assert_ptr_nonnull(out);
    memcpy(out, text, head);
    memcpy(out + head, to, strlen(to));
    memcpy(out + head + strlen(to), at + strlen(from),
           len - head - strlen(from) + 1);
    ck_assert_int_eq(kg_harness_write_file(f->cfg, out, strlen(out), 0644), 0);
    free(out);
    free(text);
}

bool gwf_log_wait(const char *path, const char *needle, int timeout_ms)
{
    int64_t end = gwf_now_ms() + timeout_ms;

    while (gwf_log_count(path, needle) == 0) {
        if (gwf_now_ms() >= end) {
            return false;
        }
        gwf_sleep_ms(20);
    }
    return true;
}

int gwf_run_suite(Suite *s)
{
    SRunner *sr;
    int failed;

    gwf_global_init();
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    gwf_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
