/* Integration tests of the real keygate binary on a temporary store. */
#include <arpa/inet.h>
#include <check.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define TOKEN_RE       "^kg_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$"
#define TOKEN_LEN      55 /* kg_ + 12 + _ + 32 + 6 */
#define SECRET_OFFSET  16 /* the secret follows "kg_<id>_" */
#define SECRET_LEN     32
#define ID_LEN         12
#define ERROR_LINE_MAX 300 /* "one clear line" is also a short one */
#define NOBODY         65534

/* Made by the parent once per test case; each test works in a subdirectory
 * so that a failed test's files are still removed. */
static char *g_root;

/* This test's files. */
static const char *g_bin;
static char g_dir[PATH_MAX];
static char g_cfg[PATH_MAX];
static char g_state[PATH_MAX];
static char g_db[PATH_MAX];
static char g_hashkey[PATH_MAX];

/* The last command's result, and the key of the "keys" case's store. */
static kg_harness_result_t R;
static char g_id[ID_LEN + 1];
static char g_token[TOKEN_LEN + 1];

/* ---- fixtures -------------------------------------------------------- */

static void setup_root(void)
{
    g_root = kg_harness_tmpdir_new("kg-cli-test");
    ck_assert_ptr_nonnull(g_root);
}

static void teardown_root(void)
{
    ck_assert_int_eq(kg_harness_rmtree(g_root), 0);
    free(g_root);
    g_root = NULL;
}

/* Write a config for the store under dir/state, plus extra lines. */
static void write_config(const char *path, const char *dir, const char *extra)
{
    char text[4 * PATH_MAX];
    int n = snprintf(text, sizeof(text),
                     "# keygate integration test\n[store]\npath = "
                     "%s/state/keygate.db\n\n[security]\nhash_key_file = "
                     "%s/state/hash.key\n%s",
                     dir, dir, extra ? extra : "");

    ck_assert(n > 0 && (size_t)n < sizeof(text));
    ck_assert_int_eq(kg_harness_write_file(path, text, (size_t)n, 0644), 0);
}

static void setup_dir(void)
{
    char tmpl[PATH_MAX];
    int n;

    g_bin = kg_harness_bin("KEYGATE_BIN");
    n = snprintf(tmpl, sizeof(tmpl), "%s/t.XXXXXX", g_root);
    ck_assert(n > 0 && (size_t)n < sizeof(tmpl));
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    memcpy(g_dir, tmpl, (size_t)n + 1);
    ck_assert(kg_harness_path(g_cfg, sizeof(g_cfg), g_dir, "keygate.ini"));
    ck_assert(kg_harness_path(g_state, sizeof(g_state), g_dir, "state"));
    ck_assert(kg_harness_path(g_db, sizeof(g_db), g_state, "keygate.db"));
    ck_assert(
        kg_harness_path(g_hashkey, sizeof(g_hashkey), g_state, "hash.key"));
    write_config(g_cfg, g_dir, NULL);
}

static void teardown(void)
{
    kg_harness_result_free(&R);
}

/* ---- running keygate ------------------------------------------------- */

/* Run argv (NULL-terminated) with extra env; the result goes to R. */
static int run_argv(const char *const *argv, const char *const *env)
{
    kg_harness_cmd_t cmd = {argv, env, NULL, 0, 0};

    kg_harness_result_free(&R);
    ck_assert_msg(kg_harness_run(&cmd, &R) == 0, "cannot run %s: %s", argv[0],
                  R.err);
    ck_assert_msg(!R.timed_out, "%s %s timed out", argv[0],
                  argv[1] ? argv[1] : "");
    ck_assert_msg(!R.signaled, "%s died of signal %d; stderr: %s", argv[0],
                  R.status - 128, R.err);
    return R.status;
}

/* Append the NULL-terminated va_list to argv at *n. */
static void add_args(const char **argv, size_t *n, va_list ap)
{
    for (const char *a = va_arg(ap, const char *); a != NULL;
         a = va_arg(ap, const char *)) {
        ck_assert_uint_lt(*n, KG_HARNESS_MAX_ARGS - 1);
        argv[(*n)++] = a;
    }
    argv[*n] = NULL;
}

/* keygate -c <this test's config> ARGS... NULL; returns the exit code. */
__attribute__((sentinel)) static int kg(const char *first, ...)
{
    const char *argv[KG_HARNESS_MAX_ARGS] = {g_bin, "-c", g_cfg, first};
    size_t n = 4;
    va_list ap;

    va_start(ap, first);
    add_args(argv, &n, ap);
    va_end(ap);
    return run_argv(argv, NULL);
}

/* keygate ARGS... NULL without a -c option (and without KEYGATE_CONFIG). */
__attribute__((sentinel)) static int kg_bare(const char *first, ...)
{
    static const char *const env[] = {"KEYGATE_CONFIG", NULL};
    const char *argv[KG_HARNESS_MAX_ARGS] = {g_bin, first};
    size_t n = 2;
    va_list ap;

    va_start(ap, first);
    add_args(argv, &n, ap);
    va_end(ap);
    return run_argv(argv, env);
}

/* keygate -c CONFIG ARGS... as the user nobody (setpriv). */
__attribute__((sentinel)) static int kg_nobody(const char *first, ...)
{
    const char *argv[KG_HARNESS_MAX_ARGS] = {"setpriv",       "--reuid=65534",
                                             "--regid=65534", "--clear-groups",
                                             g_bin,           "-c",
                                             g_cfg,           first};
    size_t n = 8;
    va_list ap;

    va_start(ap, first);
    add_args(argv, &n, ap);
    va_end(ap);
    return run_argv(argv, NULL);
}

/* ---- assertions ------------------------------------------------------ */

/* Run call (a kg() or run_argv()) and assert its exit code, showing the
 * command's stderr when it differs. */
#define KG_EXPECT(call, code)                            \
    do {                                                 \
        int kg_status_ = (call);                         \
        ck_assert_msg(kg_status_ == (code),              \
                      "exit %d, expected %d: %s; "       \
                      "stderr: %s",                      \
                      kg_status_, (code), #call, R.err); \
    } while (0)

static void assert_ok(void)
{
    ck_assert_msg(R.status == 0, "exit %d, stderr: %s", R.status, R.err);
    ck_assert_msg(R.err_len == 0, "stderr not empty: %s", R.err);
}

/*
 * The last command failed with code: nothing on stdout, and one short line
 * "keygate: ..." on stderr that contains needle (if not NULL).
 */
static void assert_fail(int code, const char *needle)
{
    const char *nl = memchr(R.err, '\n', R.err_len);

    ck_assert_msg(R.status == code, "exit %d, expected %d; stderr: %s",
                  R.status, code, R.err);
    ck_assert_msg(R.out_len == 0, "stdout not empty: %s", R.out);
    ck_assert_msg(strncmp(R.err, "keygate: ", 9) == 0,
                  "stderr does not start with 'keygate: ': %s", R.err);
    ck_assert_msg(nl != NULL && nl == R.err + R.err_len - 1,
                  "stderr is not exactly one line: %s", R.err);
    ck_assert_msg(R.err_len <= ERROR_LINE_MAX, "error line too long: %s",
                  R.err);
    if (needle != NULL) {
        ck_assert_msg(strstr(R.err, needle) != NULL, "error lacks '%s': %s",
                      needle, R.err);
    }
}

static void assert_out_has(const char *needle)
{
    ck_assert_msg(strstr(R.out, needle) != NULL, "stdout lacks '%s': %s",
                  needle, R.out);
}

/* Neither output of the last command contains the bytes s. */
static void assert_no_leak(const char *s, const char *what)
{
    size_t len = strlen(s);

    ck_assert_msg(memmem(R.out, R.out_len, s, len) == NULL,
                  "%s appears on stdout: %s", what, R.out);
    ck_assert_msg(memmem(R.err, R.err_len, s, len) == NULL,
                  "%s appears on stderr: %s", what, R.err);
}

static size_t count_in_out(const char *s)
{
    size_t n = 0;
    size_t len = strlen(s);

    for (const char *p = memmem(R.out, R.out_len, s, len); p != NULL;
         p = memmem(p + len, R.out_len - (size_t)(p + len - R.out), s, len)) {
        n++;
    }
    return n;
}

/* ---- JSON and time --------------------------------------------------- */

/* The last command's stdout as JSON (new reference). */
static json_t *out_json(void)
{
    json_error_t e;
    json_t *j = json_loads(R.out, 0, &e);

    ck_assert_msg(j != NULL, "stdout is not JSON (%s): %s", e.text, R.out);
    return j;
}

static const char *jstr(const json_t *o, const char *name)
{
    const char *s = json_string_value(json_object_get(o, name));

    ck_assert_msg(s != NULL, "no string member '%s'", name);
    return s;
}

static bool jnull(const json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);

    ck_assert_msg(v != NULL, "no member '%s'", name);
    return json_is_null(v);
}

/* "2026-01-02T03:04:05Z" → unix seconds. */
static time_t parse_time(const char *s)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    ck_assert_msg(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon,
                         &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) == 6,
                  "not a time: %s", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return timegm(&tm);
}

static void format_time(time_t t, char *buf, size_t len)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    ck_assert_uint_gt(strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm), 0);
}

/* lo <= the time s <= hi. */
static void assert_time_between(const char *s, time_t lo, time_t hi)
{
    time_t t = parse_time(s);

    ck_assert_msg(t >= lo && t <= hi, "%s not in [%lld, %lld]", s,
                  (long long)lo, (long long)hi);
}

/* ---- keys and the store ---------------------------------------------- */

static bool token_shape_ok(const char *s)
{
    regex_t re;
    bool ok;

    ck_assert_int_eq(regcomp(&re, TOKEN_RE, REG_EXTENDED | REG_NOSUB), 0);
    ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

/*
 * The one token line of a human "keys create/rotate" output (indented by
 * two spaces) into token; fails unless exactly one line has the shape.
 */
static void token_from_text(char token[TOKEN_LEN + 1])
{
    size_t found = 0;

    for (const char *line = R.out; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len;
        char buf[128];

        line += strspn(line, " ");
        len = nl ? (size_t)(nl - line) : strlen(line);
        if (len < sizeof(buf)) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            if (token_shape_ok(buf)) {
                found++;
                memcpy(token, buf, TOKEN_LEN + 1);
            }
        }
        line += len;
        line += *line == '\n';
    }
    ck_assert_msg(found == 1, "%zu token lines in: %s", found, R.out);
}

/* The 32-character secret of token, NUL-terminated. */
static void secret_of(const char *token, char secret[SECRET_LEN + 1])
{
    memcpy(secret, token + SECRET_OFFSET, SECRET_LEN);
    secret[SECRET_LEN] = '\0';
}

/*
 * keys create --json --name NAME [OPTIONS...] NULL: checks the output and
 * copies the key's id and token.
 */
__attribute__((sentinel)) static void key_create(char id[ID_LEN + 1],
                                                 char token[TOKEN_LEN + 1],
                                                 const char *name, ...)
{
    const char *argv[KG_HARNESS_MAX_ARGS] = {
        g_bin, "-c", g_cfg, "--json", "keys", "create", "--name", name};
    size_t n = 8;
    json_t *j;
    json_t *key;
    va_list ap;

    va_start(ap, name);
    add_args(argv, &n, ap);
    va_end(ap);
    run_argv(argv, NULL);
    assert_ok();
    j = out_json();
    key = json_object_get(j, "key");
    ck_assert_msg(json_is_object(key), "no key object: %s", R.out);
    ck_assert_str_eq(jstr(key, "name"), name);
    ck_assert(token_shape_ok(jstr(j, "token")));
    ck_assert_uint_eq(strlen(jstr(key, "id")), ID_LEN);
    memcpy(id, jstr(key, "id"), ID_LEN + 1);
    memcpy(token, jstr(j, "token"), TOKEN_LEN + 1);
    ck_assert_mem_eq(token + 3, id, ID_LEN);
    json_decref(j);
}

/* keys show --json ID (new reference). */
static json_t *key_show(const char *id)
{
    KG_EXPECT(kg("--json", "keys", "show", id, NULL), 0);
    assert_ok();
    return out_json();
}

/* What 'nothing changed' compares: a dump of every table (audit included)
 * and what the CLI lists. New string. */
static char *snapshot(void)
{
    char *dump = NULL;
    char *text;
    size_t len;

    ck_assert_msg(kg_harness_store_dump(g_db, &dump) == 0,
                  "cannot dump the store: %s", dump ? dump : "?");
    kg("--json", "keys", "list", "--all", NULL);
    assert_ok();
    len = strlen(dump) + R.out_len + 32;
    text = malloc(len);
    ck_assert_ptr_nonnull(text);
    snprintf(text, len, "%s\n# keys list\n%s", dump, R.out);
    free(dump);
    return text;
}

static void assert_snapshot_same(const char *before, const char *what)
{
    char *after = snapshot();

    ck_assert_msg(strcmp(before, after) == 0,
                  "%s changed the store:\nbefore:\n%s\nafter:\n%s", what,
                  before, after);
    free(after);
}

/*
 * The store the tests of a case start from, made once by the parent (init,
 * and for the "keys" case the key g_id), then copied for each test: much
 * cheaper than running init and keys create again every time.
 */
static char g_template[PATH_MAX];

static void make_template(bool with_key)
{
    char wal[PATH_MAX];

    setup_root();
    setup_dir();
    KG_EXPECT(kg("init", NULL), 0);
    assert_ok();
    if (with_key) {
        key_create(g_id, g_token, "fixture-key", NULL);
    }
    kg_harness_result_free(&R);
    memcpy(g_template, g_state, sizeof(g_template));
    ck_assert(kg_harness_path(wal, sizeof(wal), g_state, "keygate.db-wal"));
    ck_assert(!kg_harness_exists(wal)); /* keygate.db holds everything */
}

static void setup_root_store(void)
{
    make_template(false);
}

static void setup_root_key(void)
{
    make_template(true);
}

static void copy_file(const char *dir_from, const char *dir_to,
                      const char *name)
{
    char from[PATH_MAX];
    char to[PATH_MAX];
    char *data = NULL;
    size_t len = 0;

    ck_assert(kg_harness_path(from, sizeof(from), dir_from, name));
    ck_assert(kg_harness_path(to, sizeof(to), dir_to, name));
    ck_assert_int_eq(kg_harness_read_file(from, &data, &len), 0);
    ck_assert_int_eq(kg_harness_write_file(to, data, len, 0600), 0);
    free(data);
}

/* A fresh directory with a copy of the template store. */
static void setup_copy(void)
{
    setup_dir();
    ck_assert_int_eq(mkdir(g_state, 0700), 0);
    copy_file(g_template, g_state, "keygate.db");
    copy_file(g_template, g_state, "hash.key");
    copy_file(g_template, g_state, "secret.key");
}

/* ---- init, version, config, serve ------------------------------------ */

START_TEST(test_init_creates_the_state)
{
    json_t *j;

    ck_assert(!kg_harness_exists(g_state));
    KG_EXPECT(kg("init", NULL), 0);
    assert_ok();
    assert_out_has("(created)");
    ck_assert_int_eq(kg_harness_file_mode(g_state), 0700);
    ck_assert_int_eq(kg_harness_file_mode(g_hashkey), 0600);
    ck_assert_int_eq(kg_harness_file_mode(g_db), 0600);
    {
        struct stat st;

        ck_assert_int_eq(stat(g_hashkey, &st), 0);
        ck_assert_int_eq(st.st_size, 32);
    }
    KG_EXPECT(kg("--json", "workspaces", "list", NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert_uint_eq(json_array_size(json_object_get(j, "workspaces")), 1);
    ck_assert_str_eq(
        jstr(json_array_get(json_object_get(j, "workspaces"), 0), "name"),
        "default");
    json_decref(j);
}
END_TEST

START_TEST(test_init_twice_keeps_the_hash_key)
{
    char *key1 = NULL;
    char *key2 = NULL;
    size_t len1 = 0;
    size_t len2 = 0;
    char id[ID_LEN + 1];
    char token[TOKEN_LEN + 1];
    char *before;
    json_t *j;

    KG_EXPECT(kg("init", NULL), 0);
    assert_ok();
    ck_assert_int_eq(kg_harness_read_file(g_hashkey, &key1, &len1), 0);
    key_create(id, token, "survivor", NULL);
    before = snapshot();

    KG_EXPECT(kg("--json", "init", NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert(json_is_false(json_object_get(j, "hashKeyCreated")));
    json_decref(j);
    KG_EXPECT(kg("init", NULL), 0);
    assert_ok();
    assert_out_has("kept");

    ck_assert_int_eq(kg_harness_read_file(g_hashkey, &key2, &len2), 0);
    ck_assert_uint_eq(len1, 32);
    ck_assert_uint_eq(len2, len1);
    ck_assert_mem_eq(key1, key2, len1);
    ck_assert_int_eq(kg_harness_file_mode(g_hashkey), 0600);
    assert_snapshot_same(before, "a second init");
    free(before);
    free(key1);
    free(key2);
}
END_TEST

START_TEST(test_version)
{
    json_t *j;
    json_t *libs;
    /* The libpq this test runs with is the binary's (one Debian libpq5):
     * "major.minor" since version 10. */
    int pqv = PQlibVersion();
    char libpq[32];
    char line[48];

    ck_assert_int_ge(pqv, 100000);
    snprintf(libpq, sizeof(libpq), "%d.%d", pqv / 10000, pqv % 10000);
    snprintf(line, sizeof(line), ", libpq %s, ", libpq);
    KG_EXPECT(kg_bare("version", NULL), 0);
    assert_ok();
    ck_assert_msg(strncmp(R.out, "keygate ", 8) == 0 && R.out[8] >= '0' &&
                      R.out[8] <= '9',
                  "%s", R.out);
    assert_out_has("sqlite ");
    assert_out_has(line);
    KG_EXPECT(kg_bare("--json", "version", NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert(strlen(jstr(j, "version")) > 0);
    libs = json_object_get(j, "libraries");
    ck_assert(json_is_object(libs));
    ck_assert(strlen(jstr(libs, "sqlite")) > 0);
    ck_assert(strlen(jstr(libs, "libsodium")) > 0);
    ck_assert_str_eq(jstr(libs, "libpq"), libpq);
    json_decref(j);
    /* --json works after the subcommand too. */
    KG_EXPECT(kg_bare("version", "--json", NULL), 0);
    assert_ok();
    json_decref(out_json());
}
END_TEST

START_TEST(test_config_check)
{
    char bad[PATH_MAX];
    char missing[PATH_MAX];
    char env[PATH_MAX + 32];
    const char *envv[] = {env, NULL};
    json_t *j;

    KG_EXPECT(kg("config", "check", NULL), 0);
    assert_ok();
    assert_out_has(": ok");
    KG_EXPECT(kg("--json", "config", "check", NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert(json_is_true(json_object_get(j, "ok")));
    ck_assert_str_eq(
        jstr(json_object_get(json_object_get(j, "settings"), "store"), "path"),
        g_db);
    json_decref(j);

    /* A bad value: exit 1, the file, the line and the setting named. */
    ck_assert(kg_harness_path(bad, sizeof(bad), g_dir, "bad.ini"));
    write_config(bad, g_dir, "\n[keys]\nmax_ttl = banana\n");
    KG_EXPECT(kg_bare("-c", bad, "config", "check", NULL), 1);
    assert_fail(1, "bad.ini:9:");
    assert_fail(1, "[keys] max_ttl");
    assert_fail(1, "banana");
    /* An unknown setting, with --config=FILE. */
    write_config(bad, g_dir, "[store]\nbogus = 1\n");
    {
        char opt[PATH_MAX + 16];
        int n = snprintf(opt, sizeof(opt), "--config=%s", bad);

        ck_assert(n > 0 && (size_t)n < sizeof(opt));
        KG_EXPECT(kg_bare(opt, "config", "check", NULL), 1);
    }
    assert_fail(1, "bad.ini:8:");
    assert_fail(1, "[store] bogus");
    /* A store command with a bad config fails the same way. */
    KG_EXPECT(kg_bare("-c", bad, "keys", "list", NULL), 1);
    assert_fail(1, "[store] bogus");
    ck_assert(!kg_harness_exists(g_state));

    /* An explicit file that does not exist: exit 1, by -c or by env. */
    ck_assert(kg_harness_path(missing, sizeof(missing), g_dir, "nope.ini"));
    KG_EXPECT(kg_bare("-c", missing, "config", "check", NULL), 1);
    assert_fail(1, "nope.ini");
    snprintf(env, sizeof(env), "KEYGATE_CONFIG=%s", missing);
    {
        const char *argv[] = {g_bin, "config", "check", NULL};

        KG_EXPECT(run_argv(argv, envv), 1);
    }
    assert_fail(1, "nope.ini");
}
END_TEST

/* serve: a smoke test only (the gateway's own tests drive it). It starts
 * on an ephemeral loopback port and stops with exit 0 on SIGTERM. */
START_TEST(test_serve_starts_and_stops)
{
    const char *argv[] = {g_bin,         "-c", g_cfg, "serve",
                          "--port-file", NULL, NULL};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 0};
    struct sockaddr_in sa;
    kg_harness_proc_t p;
    char port_file[PATH_MAX];
    char out[PATH_MAX];
    char err[PATH_MAX];
    int port;
    int fd;

    write_config(g_cfg, g_dir,
                 "\n[server]\nlisten = 127.0.0.1:0\n[admin]\nlisten =\n");
    ck_assert(kg_harness_path(port_file, sizeof(port_file), g_dir, "port"));
    ck_assert(kg_harness_path(out, sizeof(out), g_dir, "serve.out"));
    ck_assert(kg_harness_path(err, sizeof(err), g_dir, "serve.err"));
    argv[5] = port_file;
    ck_assert_int_eq(kg_harness_proc_start(&cmd, out, err, &p), 0);
    port = kg_harness_proc_wait_port_file(&p, port_file, 10000);
    ck_assert_msg(port > 0, "serve did not start (status %d)", p.status);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);

    ck_assert_int_eq(kg_harness_proc_stop(&p, 10000), 0);
    ck_assert(!p.killed);
    kg_harness_proc_free(&p);
}
END_TEST

/* Without a store serve refuses to start, and says what to do. */
START_TEST(test_serve_without_store)
{
    const char *last;

    write_config(g_cfg, g_dir,
                 "\n[server]\nlisten = 127.0.0.1:0\n[admin]\nlisten =\n");
    KG_EXPECT(kg("serve", NULL), 1);
    ck_assert_uint_eq(R.out_len, 0);
    ck_assert(R.err_len > 0 && R.err[R.err_len - 1] == '\n');
    /* Log lines may come first; the last line is the error. */
    for (last = R.err + R.err_len - 1; last > R.err && last[-1] != '\n';
         last--) {
    }
    ck_assert_msg(strncmp(last, "keygate: ", 9) == 0 &&
                      strstr(last, "run 'keygate init'") != NULL,
                  "no clear error line: %s", R.err);
    ck_assert(!kg_harness_exists(g_state));
}
END_TEST

/* ---- keys ------------------------------------------------------------ */

START_TEST(test_keys_create_prints_the_token_once)
{
    char token[TOKEN_LEN + 1];
    char secret[SECRET_LEN + 1];

    KG_EXPECT(kg("keys", "create", "--name", "production-backend", NULL), 0);
    assert_ok();
    assert_out_has("production-backend");
    token_from_text(token);
    ck_assert_uint_eq(count_in_out(token), 1);
    secret_of(token, secret);
    ck_assert_uint_eq(count_in_out(secret), 1);
}
END_TEST

START_TEST(test_keys_create_json)
{
    char secret[SECRET_LEN + 1];
    char display[64];
    json_t *j;
    json_t *key;

    KG_EXPECT(kg("--json", "keys", "create", "--name", "json-key",
                 "--description", "made by a test", NULL),
              0);
    assert_ok();
    j = out_json();
    ck_assert_uint_eq(json_object_size(j), 2);
    key = json_object_get(j, "key");
    ck_assert(json_is_object(key));
    ck_assert(token_shape_ok(jstr(j, "token")));
    ck_assert_str_eq(jstr(key, "name"), "json-key");
    ck_assert_str_eq(jstr(key, "status"), "active");
    ck_assert_str_eq(jstr(key, "workspace"), "default");
    ck_assert_str_eq(jstr(key, "description"), "made by a test");
    ck_assert_mem_eq(jstr(j, "token") + 3, jstr(key, "id"), ID_LEN);
    /* display = kg_<id>_...<last 4 of the secret>, by the product spec. */
    secret_of(jstr(j, "token"), secret);
    snprintf(display, sizeof(display), "kg_%s_...%s", jstr(key, "id"),
             secret + SECRET_LEN - 4);
    ck_assert_str_eq(jstr(key, "display"), display);
    ck_assert(json_object_get(key, "secret") == NULL);
    ck_assert(json_object_get(key, "hash") == NULL);
    ck_assert_uint_eq(count_in_out(secret), 1);
    json_decref(j);
}
END_TEST

START_TEST(test_keys_list_columns)
{
    static const char *const columns[] = {
        "ID",      "NAME",      "DISPLAY", "STATUS",
        "CREATED", "LAST USED", "EXPIRES", "USAGE / LIMIT (USD)",
    };
    char secret[SECRET_LEN + 1];
    const char *p;
    const char *row;
    json_t *j;

    KG_EXPECT(kg("keys", "list", NULL), 0);
    assert_ok();
    p = R.out;
    for (size_t i = 0; i < sizeof(columns) / sizeof(*columns); i++) {
        const char *at = strstr(p, columns[i]);

        ck_assert_msg(at != NULL && at < strchr(R.out, '\n'),
                      "header lacks %s (in order): %s", columns[i], R.out);
        p = at + strlen(columns[i]);
    }
    row = strstr(R.out, g_id);
    ck_assert_msg(row != NULL, "no row for %s: %s", g_id, R.out);
    ck_assert(strstr(row, "fixture-key") != NULL);
    ck_assert(strstr(row, "active") != NULL);
    ck_assert(strstr(row, "never") != NULL);           /* last used */
    ck_assert(strstr(row, "0.00 / no limit") != NULL); /* usage / limit */
    secret_of(g_token, secret);
    {
        char display[64];

        snprintf(display, sizeof(display), "kg_%s_...%s", g_id,
                 secret + SECRET_LEN - 4);
        ck_assert(strstr(row, display) != NULL);
    }
    assert_no_leak(secret, "the secret");
    assert_no_leak(g_token, "the token");

    KG_EXPECT(kg("--json", "keys", "list", NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert_uint_eq(json_array_size(json_object_get(j, "keys")), 1);
    ck_assert_str_eq(jstr(json_array_get(json_object_get(j, "keys"), 0), "id"),
                     g_id);
    json_decref(j);
    assert_no_leak(secret, "the secret");
}
END_TEST

START_TEST(test_keys_show_and_update)
{
    char expires[32];
    time_t t0 = time(NULL);
    time_t t1;
    json_t *j;
    json_t *v;

    KG_EXPECT(kg("keys", "show", g_id, NULL), 0);
    assert_ok();
    assert_out_has(g_id);
    assert_out_has("fixture-key");
    assert_out_has("Status:        active");

    KG_EXPECT(kg("keys", "update", g_id, "--name", "renamed", "--description",
                 "for the billing job", "--metadata", "{\"team\":\"billing\"}",
                 "--ttl", "10d", "--usage-limit", "25.00", "--period-limit",
                 "5.00/day", "--rpm", "60", "--tpm", "1000", "--max-concurrent",
                 "3", "--rules", "{\"allow_models\":[\"gpt-4o\"]}", NULL),
              0);
    assert_ok();
    t1 = time(NULL);
    assert_out_has("updated");
    j = key_show(g_id);
    ck_assert_str_eq(jstr(j, "name"), "renamed");
    ck_assert_str_eq(jstr(j, "description"), "for the billing job");
    ck_assert_str_eq(jstr(json_object_get(j, "metadata"), "team"), "billing");
    assert_time_between(jstr(j, "expiresAt"), t0 + 10 * 86400, t1 + 10 * 86400);
    ck_assert_str_eq(jstr(j, "usageLimit"), "25.00");
    ck_assert_str_eq(jstr(j, "period"), "day");
    ck_assert_str_eq(jstr(j, "periodLimit"), "5.00");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "rpm")), 60);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "tpm")), 1000);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "maxConcurrent")),
                     3);
    v = json_object_get(json_object_get(j, "rules"), "allow_models");
    ck_assert_str_eq(json_string_value(json_array_get(v, 0)), "gpt-4o");
    json_decref(j);

    /* Options not given stay; --expires-at sets an exact time. */
    format_time(time(NULL) + 5 * 86400, expires, sizeof(expires));
    KG_EXPECT(
        kg("--json", "keys", "update", g_id, "--expires-at", expires, NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert_str_eq(jstr(j, "expiresAt"), expires);
    ck_assert_str_eq(jstr(j, "name"), "renamed");
    ck_assert_str_eq(jstr(j, "usageLimit"), "25.00");
    json_decref(j);

    /* 'none' clears each limit. */
    KG_EXPECT(kg("keys", "update", g_id, "--usage-limit", "none",
                 "--period-limit", "none", "--rpm", "none", "--tpm", "none",
                 "--max-concurrent", "none", NULL),
              0);
    assert_ok();
    j = key_show(g_id);
    ck_assert(jnull(j, "usageLimit"));
    ck_assert(jnull(j, "period"));
    ck_assert(jnull(j, "periodLimit"));
    ck_assert(jnull(j, "rpm"));
    ck_assert(jnull(j, "tpm"));
    ck_assert(jnull(j, "maxConcurrent"));
    ck_assert_str_eq(jstr(j, "expiresAt"), expires);
    json_decref(j);

    /* The human view shows what changed. */
    KG_EXPECT(kg("keys", "show", g_id, NULL), 0);
    assert_ok();
    assert_out_has("Name:          renamed");
    assert_out_has("Usage limit:   no limit");
    assert_out_has("Rules:         {\"allow_models\":[\"gpt-4o\"]}");
}
END_TEST

START_TEST(test_keys_no_expiry)
{
    char *before = snapshot();
    char cfg0[PATH_MAX];
    json_t *j;

    /* Refused while [keys] max_ttl is set (the default 90d). */
    KG_EXPECT(kg("keys", "update", g_id, "--no-expiry", NULL), 2);
    assert_fail(2, "90d");
    KG_EXPECT(kg("keys", "create", "--name", "forever", "--no-expiry", NULL),
              2);
    assert_fail(2, "90d");
    assert_snapshot_same(before, "a refused --no-expiry");
    free(before);

    /* Allowed with max_ttl = 0, same store. */
    ck_assert(kg_harness_path(cfg0, sizeof(cfg0), g_dir, "nomax.ini"));
    write_config(cfg0, g_dir, "\n[keys]\nmax_ttl = 0\n");
    KG_EXPECT(kg_bare("-c", cfg0, "--json", "keys", "update", g_id,
                      "--no-expiry", NULL),
              0);
    assert_ok();
    j = out_json();
    ck_assert(jnull(j, "expiresAt"));
    json_decref(j);
}
END_TEST

START_TEST(test_keys_disable_enable)
{
    json_t *j;

    KG_EXPECT(kg("keys", "disable", g_id, NULL), 0);
    assert_ok();
    assert_out_has("disabled");
    j = key_show(g_id);
    ck_assert_str_eq(jstr(j, "status"), "inactive");
    json_decref(j);
    KG_EXPECT(kg("keys", "list", NULL), 0);
    assert_out_has("inactive");
    KG_EXPECT(kg("--json", "keys", "enable", g_id, NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert_str_eq(jstr(j, "status"), "active");
    json_decref(j);
}
END_TEST

START_TEST(test_keys_rotate)
{
    char token2[TOKEN_LEN + 1];
    char secret1[SECRET_LEN + 1];
    time_t t0;
    time_t t1;
    json_t *j;
    json_t *k;

    secret_of(g_token, secret1);
    KG_EXPECT(kg("keys", "rotate", g_id, NULL), 0);
    assert_ok();
    assert_out_has("Earlier secrets: all stopped working now");
    token_from_text(token2);
    ck_assert_str_ne(token2, g_token);
    ck_assert_mem_eq(token2 + 3, g_id, ID_LEN); /* same key id */
    assert_no_leak(secret1, "the old secret");
    j = key_show(g_id);
    ck_assert_str_eq(jstr(j, "id"), g_id);
    ck_assert(jnull(j, "graceUntil"));
    json_decref(j);

    t0 = time(NULL);
    KG_EXPECT(kg("--json", "keys", "rotate", g_id, "--grace", "1h", NULL), 0);
    assert_ok();
    t1 = time(NULL);
    j = out_json();
    ck_assert(token_shape_ok(jstr(j, "token")));
    ck_assert_str_ne(jstr(j, "token"), token2);
    k = json_object_get(j, "key");
    ck_assert_str_eq(jstr(k, "id"), g_id);
    json_decref(j);
    j = key_show(g_id);
    assert_time_between(jstr(j, "graceUntil"), t0 + 3600, t1 + 3600);
    json_decref(j);
    KG_EXPECT(kg("keys", "show", g_id, NULL), 0);
    assert_out_has("Old secret:    valid until");
    KG_EXPECT(kg("keys", "rotate", g_id, "--grace", "30m", NULL), 0);
    assert_out_has("Previous secret: valid until");
    assert_out_has("(grace 30m)");
}
END_TEST

START_TEST(test_keys_revoke)
{
    json_t *j;

    KG_EXPECT(kg("keys", "revoke", g_id, NULL), 0);
    assert_ok();
    assert_out_has("revoked");
    j = key_show(g_id);
    ck_assert_str_eq(jstr(j, "status"), "deleted");
    json_decref(j);
    KG_EXPECT(kg("keys", "list", NULL), 0);
    assert_ok();
    ck_assert_msg(strstr(R.out, g_id) == NULL, "listed: %s", R.out);
    KG_EXPECT(kg("keys", "list", "--all", NULL), 0);
    assert_ok();
    assert_out_has(g_id);
    assert_out_has("deleted");
    /* A revoked key cannot come back or change. */
    KG_EXPECT(kg("keys", "enable", g_id, NULL), 1);
    assert_fail(1, "revoked");
    KG_EXPECT(kg("keys", "rotate", g_id, NULL), 1);
    assert_fail(1, "revoked");
}
END_TEST

START_TEST(test_keys_delete)
{
    char *before = snapshot();

    KG_EXPECT(kg("keys", "delete", g_id, NULL), 2);
    assert_fail(2, "--yes");
    assert_snapshot_same(before, "delete without --yes");
    free(before);
    KG_EXPECT(kg("keys", "delete", g_id, "--yes", NULL), 0);
    assert_ok();
    assert_out_has("deleted");
    KG_EXPECT(kg("keys", "show", g_id, NULL), 1);
    assert_fail(1, g_id);
    KG_EXPECT(kg("keys", "list", "--all", NULL), 0);
    ck_assert_msg(strstr(R.out, g_id) == NULL, "still listed: %s", R.out);
}
END_TEST

START_TEST(test_keys_purge_expired)
{
    char id[ID_LEN + 1];
    char token[TOKEN_LEN + 1];
    time_t t1;
    json_t *j;

    key_create(id, token, "short-lived", "--ttl", "1s", NULL);
    t1 = time(NULL);
    /* The expiry is at most t1 + 1 (whole seconds): wait for it, bounded. */
    for (int i = 0; i < 300 && time(NULL) < t1 + 1; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
    ck_assert_int_ge(time(NULL), t1 + 1);
    KG_EXPECT(kg("--json", "keys", "purge-expired", NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert_int_eq(json_integer_value(json_object_get(j, "revoked")), 1);
    json_decref(j);
    j = key_show(id);
    ck_assert_str_eq(jstr(j, "status"), "deleted");
    json_decref(j);
    j = key_show(g_id); /* the fixture key, 90 days to go, stays */
    ck_assert_str_eq(jstr(j, "status"), "active");
    json_decref(j);
    KG_EXPECT(kg("keys", "purge-expired", NULL), 0);
    assert_ok();
    assert_out_has("Revoked 0 expired keys.");
}
END_TEST

/* ---- workspaces ------------------------------------------------------ */

START_TEST(test_workspaces)
{
    char ws_id[ID_LEN + 1];
    char id[ID_LEN + 1];
    char token[TOKEN_LEN + 1];
    char *before;
    json_t *j;

    KG_EXPECT(kg("--json", "workspaces", "create", "team-a", NULL), 0);
    assert_ok();
    j = out_json();
    ck_assert_str_eq(jstr(j, "name"), "team-a");
    ck_assert_str_eq(jstr(j, "mode"), "api-keys");
    ck_assert_str_eq(jstr(j, "creditsBalance"), "0.00");
    ck_assert_uint_eq(strlen(jstr(j, "id")), ID_LEN);
    memcpy(ws_id, jstr(j, "id"), ID_LEN + 1);
    json_decref(j);

    KG_EXPECT(kg("workspaces", "list", NULL), 0);
    assert_ok();
    assert_out_has("ID");
    assert_out_has("MODE");
    assert_out_has("CREDITS (USD)");
    assert_out_has("default");
    assert_out_has("team-a");
    KG_EXPECT(kg("workspaces", "show", "team-a", NULL), 0);
    assert_ok();
    assert_out_has(ws_id);
    KG_EXPECT(kg("workspaces", "show", ws_id, NULL), 0); /* by id */
    assert_ok();
    assert_out_has("Name:      team-a");

    KG_EXPECT(kg("workspaces", "update", "team-a", "--mode", "credits",
                 "--name", "team-b", NULL),
              0);
    assert_ok();
    KG_EXPECT(kg("--json", "workspaces", "show", "team-b", NULL), 0);
    j = out_json();
    ck_assert_str_eq(jstr(j, "id"), ws_id);
    ck_assert_str_eq(jstr(j, "mode"), "credits");
    json_decref(j);
    KG_EXPECT(kg("workspaces", "show", "team-a", NULL), 1);
    assert_fail(1, "team-a");

    KG_EXPECT(kg("workspaces", "credit", "team-b", "--add", "10.00", NULL), 0);
    assert_ok();
    assert_out_has("10.00");
    KG_EXPECT(kg("--json", "workspaces", "credit", "team-b", "--deduct", "2.50",
                 "--note", "refund", NULL),
              0);
    j = out_json();
    ck_assert_str_eq(jstr(j, "creditsBalance"), "7.50");
    json_decref(j);

    /* Below zero: refused, balance and store unchanged. */
    before = snapshot();
    KG_EXPECT(kg("workspaces", "credit", "team-b", "--deduct", "100.00", NULL),
              2);
    assert_fail(2, "7.50");
    assert_snapshot_same(before, "a deduct below zero");
    free(before);
    KG_EXPECT(kg("--json", "workspaces", "show", "team-b", NULL), 0);
    j = out_json();
    ck_assert_str_eq(jstr(j, "creditsBalance"), "7.50");
    json_decref(j);

    /* A key in the workspace, by name. */
    key_create(id, token, "team-key", "--workspace", "team-b", NULL);
    j = key_show(id);
    ck_assert_str_eq(jstr(j, "workspace"), "team-b");
    ck_assert_str_eq(jstr(j, "workspaceId"), ws_id);
    json_decref(j);
    KG_EXPECT(kg("--json", "workspaces", "show", "team-b", NULL), 0);
    j = out_json();
    ck_assert_int_eq(json_integer_value(json_object_get(j, "keyCount")), 1);
    json_decref(j);
    KG_EXPECT(kg("--json", "keys", "list", "--workspace", "team-b", NULL), 0);
    j = out_json();
    ck_assert_uint_eq(json_array_size(json_object_get(j, "keys")), 1);
    json_decref(j);
}
END_TEST

/* ---- bad input: exit code, one line, nothing changed ------------------ */

/* "@ID" becomes the fixture key's id, "@LONG" a 65-byte name, "@FAR" a
 * time 120 days ahead. */
typedef struct bad_case {
    int code;
    const char *needle;
    const char *args[12];
} bad_case_t;

static const bad_case_t bad_cases[] = {
    /* unknown key id */
    {1, "no key", {"keys", "show", "AAAAAAAAAAAA"}},
    {1, "no key", {"keys", "show", "not-an-id"}},
    {1, "no key", {"keys", "update", "AAAAAAAAAAAA", "--name", "x"}},
    {1, "no key", {"keys", "disable", "AAAAAAAAAAAA"}},
    {1, "no key", {"keys", "enable", "AAAAAAAAAAAA"}},
    {1, "no key", {"keys", "rotate", "AAAAAAAAAAAA"}},
    {1, "no key", {"keys", "revoke", "AAAAAAAAAAAA"}},
    {1, "no key", {"keys", "delete", "AAAAAAAAAAAA", "--yes"}},
    {1, "no workspace", {"workspaces", "show", "nope"}},
    {1,
     "no workspace",
     {"keys", "create", "--name", "x", "--workspace", "nope"}},
    {1, "already exists", {"workspaces", "create", "default"}},
    /* bad durations */
    {2, "bad duration", {"keys", "create", "--name", "x", "--ttl", "3x"}},
    {2, "bad duration", {"keys", "update", "@ID", "--ttl", "3x"}},
    {2, "--ttl", {"keys", "create", "--name", "x", "--ttl", "0s"}},
    {2, "bad duration", {"keys", "rotate", "@ID", "--grace", "3x"}},
    {2, "grace", {"keys", "rotate", "@ID", "--grace", "120d"}},
    {2, "--expires-at", {"keys", "update", "@ID", "--expires-at", "soon"}},
    {2,
     "not in the future",
     {"keys", "update", "@ID", "--expires-at", "2020-01-01T00:00:00Z"}},
    /* beyond the maximum TTL: the message names the 90d bound */
    {2, "90d", {"keys", "create", "--name", "x", "--ttl", "120d"}},
    {2, "90d", {"keys", "update", "@ID", "--ttl", "120d"}},
    {2, "90d", {"keys", "update", "@ID", "--expires-at", "@FAR"}},
    /* money */
    {2, "negative", {"keys", "create", "--name", "x", "--usage-limit", "-1"}},
    {2, "1.2.3", {"keys", "create", "--name", "x", "--usage-limit", "1.2.3"}},
    {2, "negative", {"keys", "update", "@ID", "--usage-limit", "-1"}},
    {2, "1.2.3", {"keys", "update", "@ID", "--period-limit", "1.2.3/day"}},
    {2,
     "--period-limit",
     {"keys", "update", "@ID", "--period-limit", "5.00/fortnight"}},
    {2, "--period-limit", {"keys", "update", "@ID", "--period-limit", "5"}},
    {2, "negative", {"workspaces", "credit", "default", "--add", "-1"}},
    {2, "1.2.3", {"workspaces", "credit", "default", "--deduct", "1.2.3"}},
    {2, "--add", {"workspaces", "credit", "default"}},
    /* names, text, JSON, counts */
    {2, "65 bytes", {"keys", "create", "--name", "@LONG"}},
    {2, "65 bytes", {"keys", "update", "@ID", "--name", "@LONG"}},
    {2, "65 bytes", {"workspaces", "create", "@LONG"}},
    {2, "65 bytes", {"workspaces", "update", "default", "--name", "@LONG"}},
    {2, "name", {"keys", "create", "--name", ""}},
    {2, "--name is required", {"keys", "create"}},
    {2, "metadata", {"keys", "update", "@ID", "--metadata", "[1,2]"}},
    {2, "rules", {"keys", "update", "@ID", "--rules", "not json"}},
    {2, "bogus", {"keys", "update", "@ID", "--rules", "{\"bogus\":[]}"}},
    {2, "--rpm", {"keys", "update", "@ID", "--rpm", "0"}},
    {2, "--tpm", {"keys", "update", "@ID", "--tpm", "12x"}},
    {2,
     "--max-concurrent",
     {"keys", "update", "@ID", "--max-concurrent", "-3"}},
    {2, "--mode", {"workspaces", "create", "w", "--mode", "free"}},
    {2, "--mode", {"workspaces", "update", "default", "--mode", "free"}},
    {2,
     "another workspace",
     {"keys", "update", "@ID", "--workspace", "default"}},
    /* unknown options, subcommands and arguments */
    {2, "--bogus", {"keys", "create", "--name", "x", "--bogus"}},
    {2, "--bogus", {"keys", "update", "@ID", "--bogus"}},
    {2, "--bogus", {"keys", "list", "--bogus"}},
    {2, "--bogus", {"keys", "rotate", "@ID", "--bogus"}},
    {2, "--bogus", {"keys", "delete", "@ID", "--bogus"}},
    {2, "--bogus", {"workspaces", "create", "w", "--bogus"}},
    {2, "--bogus", {"workspaces", "credit", "default", "--bogus", "1"}},
    {2, "unknown command", {"frobnicate"}},
    {2, "unknown command", {"--bogus"}},
    {2, "unknown command", {"keys", "frobnicate"}},
    {2, "unknown command", {"workspaces", "frobnicate"}},
    {2, "unknown command", {"config", "frobnicate"}},
    {2, "expected exactly one key id", {"keys", "show"}},
    {2, "expected exactly one key id", {"keys", "show", "@ID", "extra"}},
    {2, "unexpected argument", {"keys", "list", "extra"}},
    {2, "unexpected argument", {"keys", "purge-expired", "extra"}},
    {2, "unexpected argument", {"init", "extra"}},
    {2, "unexpected argument", {"version", "extra"}},
    {2, "unexpected argument", {"config", "check", "extra"}},
    {2, "unexpected argument", {"serve", "--bogus"}},
    {2, "needs a file name", {"keys", "list", "-c"}},
};

#define N_BAD_CASES ((int)(sizeof(bad_cases) / sizeof(*bad_cases)))

START_TEST(test_bad_input)
{
    const bad_case_t *c = &bad_cases[_i];
    const char *argv[KG_HARNESS_MAX_ARGS] = {g_bin, "-c", g_cfg};
    char long_name[66];
    char far[32];
    char what[256];
    size_t n = 3;
    size_t w = 0;
    char *before;

    memset(long_name, 'a', 65);
    long_name[65] = '\0';
    format_time(time(NULL) + 120 * 86400, far, sizeof(far));
    for (size_t i = 0; i < 12 && c->args[i] != NULL; i++) {
        const char *a = c->args[i];

        if (strcmp(a, "@ID") == 0) {
            a = g_id;
        } else if (strcmp(a, "@LONG") == 0) {
            a = long_name;
        } else if (strcmp(a, "@FAR") == 0) {
            a = far;
        }
        argv[n++] = a;
        w += (size_t)snprintf(what + w, sizeof(what) - w, " %s", c->args[i]);
        if (w >= sizeof(what)) {
            w = sizeof(what) - 1;
        }
    }
    argv[n] = NULL;
    before = snapshot();
    run_argv(argv, NULL);
    ck_assert_msg(R.status == c->code, "keygate%s: exit %d, expected %d: %s",
                  what, R.status, c->code, R.err);
    assert_fail(c->code, c->needle);
    assert_snapshot_same(before, what);
    free(before);
}
END_TEST

START_TEST(test_missing_subcommand)
{
    KG_EXPECT(kg("keys", NULL), 2);
    ck_assert_uint_eq(R.out_len, 0);
    ck_assert_msg(strstr(R.err, "Usage:") != NULL, "%s", R.err);
    {
        const char *argv[] = {g_bin, NULL};

        KG_EXPECT(run_argv(argv, NULL), 2);
    }
    ck_assert_msg(strstr(R.err, "Usage:") != NULL, "%s", R.err);
}
END_TEST

/* ---- store faults ---------------------------------------------------- */

START_TEST(test_store_missing)
{
    static const char *const cmds[][6] = {
        {"keys", "list"},
        {"keys", "create", "--name", "x"},
        {"keys", "show", "AAAAAAAAAAAA"},
        {"keys", "purge-expired"},
        {"workspaces", "list"},
        {"workspaces", "credit", "default", "--add", "1.00"},
    };

    for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++) {
        const char *argv[KG_HARNESS_MAX_ARGS] = {g_bin, "-c", g_cfg};
        size_t n = 3;

        for (size_t k = 0; k < 6 && cmds[i][k] != NULL; k++) {
            argv[n++] = cmds[i][k];
        }
        argv[n] = NULL;
        KG_EXPECT(run_argv(argv, NULL), 1);
        assert_fail(1, "run 'keygate init'");
        assert_fail(1, g_db);
        ck_assert_msg(!kg_harness_exists(g_state), "%s %s created the state",
                      cmds[i][0], cmds[i][1]);
    }
}
END_TEST

/* 64 KiB of fixed pseudo-random bytes (xorshift64), not an SQLite file. */
static void write_garbage(const char *path)
{
    static unsigned char buf[65536];
    uint64_t x = UINT64_C(0x6b65796761746521);

    for (size_t i = 0; i < sizeof(buf); i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (unsigned char)(x >> 32);
    }
    ck_assert(memcmp(buf, "SQLite format 3", 15) != 0);
    ck_assert_int_eq(kg_harness_write_file(path, buf, sizeof(buf), 0600), 0);
}

START_TEST(test_store_corrupt)
{
    static const char *const cmds[][5] = {
        {"keys", "list"},
        {"keys", "create", "--name", "x"},
        {"keys", "show", "@ID"},
        {"workspaces", "list"},
        {"init"},
    };
    char wal[PATH_MAX];
    char shm[PATH_MAX];
    char *garbage = NULL;
    char *after = NULL;
    char *hk1 = NULL;
    char *hk2 = NULL;
    size_t glen = 0;
    size_t alen = 0;

    ck_assert(kg_harness_path(wal, sizeof(wal), g_state, "keygate.db-wal"));
    ck_assert(kg_harness_path(shm, sizeof(shm), g_state, "keygate.db-shm"));
    ck_assert(!kg_harness_exists(wal) && !kg_harness_exists(shm));
    write_garbage(g_db);
    ck_assert_int_eq(kg_harness_read_file(g_db, &garbage, &glen), 0);
    ck_assert_int_eq(kg_harness_read_file(g_hashkey, &hk1, NULL), 0);

    for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++) {
        const char *argv[KG_HARNESS_MAX_ARGS] = {g_bin, "-c", g_cfg};
        size_t n = 3;

        for (size_t k = 0; k < 5 && cmds[i][k] != NULL; k++) {
            argv[n++] = strcmp(cmds[i][k], "@ID") == 0 ? g_id : cmds[i][k];
        }
        argv[n] = NULL;
        KG_EXPECT(run_argv(argv, NULL), 1);
        assert_fail(1, "corrupt");
        assert_fail(1, g_db);
        ck_assert_int_eq(kg_harness_read_file(g_db, &after, &alen), 0);
        ck_assert_msg(alen == glen && memcmp(after, garbage, glen) == 0,
                      "%s %s changed the corrupt store", cmds[i][0],
                      cmds[i][1] ? cmds[i][1] : "");
        free(after);
        ck_assert_int_eq(kg_harness_file_mode(g_db), 0600);
    }
    ck_assert_int_eq(kg_harness_read_file(g_hashkey, &hk2, NULL), 0);
    ck_assert_mem_eq(hk1, hk2, 32);
    free(hk1);
    free(hk2);
    free(garbage);
}
END_TEST

/*
 * The store's file and directory are not writable by the user running
 * keygate. Root ignores file modes, so as root the commands run as the
 * user nobody through setpriv(1), on a store nobody can read but not
 * write (the hash key is given to nobody so that only the store is the
 * problem); otherwise plain modes do.
 */
START_TEST(test_store_unwritable)
{
    static const char *const cmds[][5] = {
        {"keys", "create", "--name", "x"},
        {"keys", "update", "@ID", "--name", "y"},
        {"keys", "revoke", "@ID"},
        {"workspaces", "create", "w"},
        {"keys", "list"},
    };
    bool as_root = geteuid() == 0;
    char *before = snapshot();
    char *bytes = NULL;
    char *after = NULL;
    size_t blen = 0;
    size_t alen = 0;

    ck_assert_int_eq(kg_harness_read_file(g_db, &bytes, &blen), 0);
    if (as_root) {
        ck_assert_int_eq(chmod(g_root, 0711), 0);
        ck_assert_int_eq(chmod(g_dir, 0755), 0);
        ck_assert_int_eq(chmod(g_state, 0755), 0);
        ck_assert_int_eq(chmod(g_db, 0644), 0);
        ck_assert_int_eq(chown(g_hashkey, NOBODY, NOBODY), 0);
        /* setpriv works and nobody can read the config and the key. */
        ck_assert_msg(kg_nobody("config", "check", NULL) == 0,
                      "setpriv as nobody failed: %s", R.err);
    } else {
        ck_assert_int_eq(chmod(g_state, 0555), 0);
        ck_assert_int_eq(chmod(g_db, 0444), 0);
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++) {
        const char *argv[KG_HARNESS_MAX_ARGS] = {"setpriv",
                                                 "--reuid=65534",
                                                 "--regid=65534",
                                                 "--clear-groups",
                                                 g_bin,
                                                 "-c",
                                                 g_cfg};
        size_t n = 7;
        size_t first = as_root ? 0 : 4;

        for (size_t k = 0; k < 5 && cmds[i][k] != NULL; k++) {
            argv[n++] = strcmp(cmds[i][k], "@ID") == 0 ? g_id : cmds[i][k];
        }
        argv[n] = NULL;
        KG_EXPECT(run_argv(argv + first, NULL), 1);
        assert_fail(1, "not writable");
        assert_fail(1, g_db);
    }
    ck_assert_int_eq(kg_harness_read_file(g_db, &after, &alen), 0);
    ck_assert(alen == blen && memcmp(after, bytes, blen) == 0);
    free(after);
    free(bytes);
    if (as_root) {
        ck_assert_int_eq(chown(g_hashkey, 0, 0), 0);
    }
    ck_assert_int_eq(chmod(g_state, 0700), 0);
    ck_assert_int_eq(chmod(g_db, 0600), 0);
    assert_snapshot_same(before, "commands on an unwritable store");
    free(before);
}
END_TEST

/* ---- --help everywhere ----------------------------------------------- */

static const char *const help_cases[][4] = {
    {"--help"},
    {"-h"},
    {"help"},
    {"init", "--help"},
    {"serve", "--help"},
    {"version", "--help"},
    {"config", "--help"},
    {"config", "check", "--help"},
    {"keys", "--help"},
    {"keys", "create", "--help"},
    {"keys", "list", "--help"},
    {"keys", "show", "--help"},
    {"keys", "update", "--help"},
    {"keys", "disable", "--help"},
    {"keys", "enable", "--help"},
    {"keys", "rotate", "--help"},
    {"keys", "revoke", "--help"},
    {"keys", "delete", "--help"},
    {"keys", "purge-expired", "--help"},
    {"workspaces", "--help"},
    {"workspaces", "create", "--help"},
    {"workspaces", "list", "--help"},
    {"workspaces", "show", "--help"},
    {"workspaces", "update", "--help"},
    {"workspaces", "credit", "--help"},
};

#define N_HELP_CASES ((int)(sizeof(help_cases) / sizeof(*help_cases)))

/* Help needs no configuration: -c names a file that does not exist. */
START_TEST(test_help)
{
    const char *argv[KG_HARNESS_MAX_ARGS] = {g_bin, "-c",
                                             "/nonexistent/keygate.ini"};
    size_t n = 3;

    for (size_t k = 0; k < 4 && help_cases[_i][k] != NULL; k++) {
        argv[n++] = help_cases[_i][k];
    }
    argv[n] = NULL;
    ck_assert_msg(run_argv(argv, NULL) == 0, "keygate %s %s: exit %d: %s",
                  help_cases[_i][0], help_cases[_i][1] ? help_cases[_i][1] : "",
                  R.status, R.err);
    assert_ok();
    ck_assert_msg(strncmp(R.out, "Usage: keygate", 14) == 0,
                  "no Usage line: %s", R.out);
}
END_TEST

START_TEST(test_help_lists_the_subcommands)
{
    static const char *const keys[] = {
        "create", "list",   "show",   "update", "disable",
        "enable", "rotate", "revoke", "delete", "purge-expired",
    };
    static const char *const top[] = {"init",       "serve",  "keys",
                                      "workspaces", "config", "version"};
    static const char *const ws[] = {"create", "list", "show", "update",
                                     "credit"};

    KG_EXPECT(kg_bare("--help", NULL), 0);
    for (size_t i = 0; i < sizeof(top) / sizeof(*top); i++) {
        assert_out_has(top[i]);
    }
    assert_out_has("Exit codes: 0 ok, 1 runtime error, 2 usage error");
    KG_EXPECT(kg_bare("keys", "--help", NULL), 0);
    for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++) {
        assert_out_has(keys[i]);
    }
    KG_EXPECT(kg_bare("workspaces", "--help", NULL), 0);
    for (size_t i = 0; i < sizeof(ws) / sizeof(*ws); i++) {
        assert_out_has(ws[i]);
    }
}
END_TEST

/* ---- the secret sweep ------------------------------------------------ */

/* No file of the state directory (store, WAL, SHM, hash key) and no row of
 * the store contains s; the store files are mode 0600. */
static void assert_store_clean(const char *s, const char *what)
{
    static const char *const files[] = {"keygate.db", "keygate.db-wal",
                                        "keygate.db-shm", "hash.key"};
    char *dump = NULL;

    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        char path[PATH_MAX];

        ck_assert(kg_harness_path(path, sizeof(path), g_state, files[i]));
        ck_assert_msg(kg_harness_file_contains(path, s, strlen(s)) == 0,
                      "%s found in %s", what, files[i]);
        if (kg_harness_exists(path)) {
            ck_assert_msg(kg_harness_file_mode(path) == 0600, "%s has mode %o",
                          files[i], (unsigned)kg_harness_file_mode(path));
        }
    }
    ck_assert_int_eq(kg_harness_store_dump(g_db, &dump), 0);
    ck_assert_msg(strstr(dump, s) == NULL, "%s found in the store dump", what);
    free(dump);
}

/* Run each of a list of commands and check that no secret leaks. */
static void sweep_commands(const char *const *secrets, size_t nsecrets)
{
    const char *const cmds[][7] = {
        {"keys", "list"},
        {"keys", "list", "--all"},
        {"--json", "keys", "list", "--all"},
        {"keys", "show", g_id},
        {"--json", "keys", "show", g_id},
        {"keys", "update", g_id, "--description", "swept"},
        {"--json", "keys", "update", g_id, "--rpm", "5"},
        {"keys", "disable", g_id},
        {"--json", "keys", "enable", g_id},
        {"keys", "purge-expired"},
        {"workspaces", "list"},
        {"--json", "workspaces", "show", "default"},
        {"--json", "config", "check"},
        {"keys", "show", "AAAAAAAAAAAA"}, /* an error message too */
    };

    for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++) {
        const char *argv[KG_HARNESS_MAX_ARGS] = {g_bin, "-c", g_cfg};
        size_t n = 3;

        for (size_t k = 0; k < 7 && cmds[i][k] != NULL; k++) {
            argv[n++] = cmds[i][k];
        }
        argv[n] = NULL;
        run_argv(argv, NULL);
        for (size_t s = 0; s < nsecrets; s++) {
            assert_no_leak(secrets[s], "a secret");
        }
    }
}

START_TEST(test_secret_sweep)
{
    char token1[TOKEN_LEN + 1];
    char token2[TOKEN_LEN + 1];
    char secret1[SECRET_LEN + 1];
    char secret2[SECRET_LEN + 1];
    char secret3[SECRET_LEN + 1];
    char token3[TOKEN_LEN + 1];
    const char *all[6];
    json_t *j;

    KG_EXPECT(kg("init", NULL), 0); /* the modes keygate makes */
    assert_ok();
    KG_EXPECT(kg("keys", "create", "--name", "production-backend", NULL), 0);
    assert_ok();
    token_from_text(token1);
    memcpy(g_id, token1 + 3, ID_LEN);
    g_id[ID_LEN] = '\0';
    secret_of(token1, secret1);
    assert_store_clean(token1, "the token");
    assert_store_clean(secret1, "the secret");
    all[0] = token1;
    all[1] = secret1;
    sweep_commands(all, 2);

    /* rotate prints only the new token. */
    KG_EXPECT(kg("keys", "rotate", g_id, "--grace", "1h", NULL), 0);
    assert_ok();
    token_from_text(token2);
    secret_of(token2, secret2);
    ck_assert_uint_eq(count_in_out(token2), 1);
    assert_no_leak(secret1, "the old secret");
    KG_EXPECT(kg("--json", "keys", "rotate", g_id, NULL), 0);
    assert_ok();
    j = out_json();
    memcpy(token3, jstr(j, "token"), TOKEN_LEN + 1);
    json_decref(j);
    secret_of(token3, secret3);
    ck_assert_uint_eq(count_in_out(token3), 1);
    assert_no_leak(secret1, "the first secret");
    assert_no_leak(secret2, "the second secret");

    all[2] = token2;
    all[3] = secret2;
    all[4] = token3;
    all[5] = secret3;
    for (size_t i = 0; i < 6; i++) {
        assert_store_clean(all[i], "a token or secret");
    }
    sweep_commands(all, 6);
    KG_EXPECT(kg("keys", "revoke", g_id, NULL), 0);
    for (size_t i = 0; i < 6; i++) {
        assert_no_leak(all[i], "a secret");
        assert_store_clean(all[i], "a token or secret");
    }
    ck_assert_int_eq(kg_harness_file_mode(g_state), 0700);
}
END_TEST

/* ---- the suite ------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name, void (*root)(void),
                    void (*setup)(void))
{
    TCase *tc = tcase_create(name);

    tcase_add_unchecked_fixture(tc, root, teardown_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc;

    tc = tcase(s, "init", setup_root, setup_dir);
    tcase_add_test(tc, test_init_creates_the_state);
    tcase_add_test(tc, test_init_twice_keeps_the_hash_key);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_config_check);
    tcase_add_test(tc, test_store_missing);
    tcase_add_test(tc, test_serve_without_store);
    tcase_add_loop_test(tc, test_help, 0, N_HELP_CASES);
    tcase_add_test(tc, test_help_lists_the_subcommands);
    tcase_add_test(tc, test_missing_subcommand);
    tcase_add_test(tc, test_secret_sweep);

    tc = tcase(s, "store", setup_root_store, setup_copy);
    tcase_add_test(tc, test_serve_starts_and_stops);
    tcase_add_test(tc, test_keys_create_prints_the_token_once);
    tcase_add_test(tc, test_keys_create_json);
    tcase_add_test(tc, test_workspaces);

    tc = tcase(s, "keys", setup_root_key, setup_copy);
    tcase_add_test(tc, test_keys_list_columns);
    tcase_add_test(tc, test_keys_show_and_update);
    tcase_add_test(tc, test_keys_no_expiry);
    tcase_add_test(tc, test_keys_disable_enable);
    tcase_add_test(tc, test_keys_rotate);
    tcase_add_test(tc, test_keys_revoke);
    tcase_add_test(tc, test_keys_delete);
    tcase_add_test(tc, test_keys_purge_expired);
    tcase_add_test(tc, test_store_corrupt);
    tcase_add_test(tc, test_store_unwritable);
    tcase_add_loop_test(tc, test_bad_input, 0, N_BAD_CASES);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cli_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
