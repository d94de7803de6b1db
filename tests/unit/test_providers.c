/* Unit tests of [server], [upstream], [provider] and [model] settings. */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keygate/config.h"
#include "keygate/providers.h"

/* Where docs/ and config/ are: set by the build, else the current dir. */
#ifndef KEYGATE_SOURCE_DIR
#define KEYGATE_SOURCE_DIR "."
#endif

#define PT_PATH_MAX 512
#define PT_NROWS(a) (sizeof(a) / sizeof((a)[0]))

/* A canary credential: must never show up in JSON or messages. */
#define PT_CANARY "sk-CANARY-7f3a9c1e5b2d4086"

/* The per-run parent of the tests' directories, removed by main(). */
static char pt_base[PT_PATH_MAX];

static const char *pt_source_dir(void)
{
    const char *env = getenv("KEYGATE_SOURCE_DIR");

    return env != NULL && *env != '\0' ? env : KEYGATE_SOURCE_DIR;
}

static void pt_tmpdir(char *dir)
{
    int n = snprintf(dir, PT_PATH_MAX, "%s/t-XXXXXX",
                     pt_base[0] != '\0' ? pt_base : "/tmp");

    ck_assert(n > 0 && n < PT_PATH_MAX);
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
}

static const char *pt_join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PT_PATH_MAX, "%s/%s", dir, name);

    ck_assert(n > 0 && n < PT_PATH_MAX);
    return out;
}

static void pt_write(const char *path, const char *text, mode_t mode)
{
    size_t len = strlen(text);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    ck_assert(len == 0 || write(fd, text, len) == (ssize_t)len);
    ck_assert(fchmod(fd, mode) == 0);
    ck_assert(close(fd) == 0);
}

static char *pt_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL) {
        return NULL;
    }
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    n = ftell(f);
    ck_assert(n >= 0 && fseek(f, 0, SEEK_SET) == 0);
    buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int pt_rm_entry(const char *path, const struct stat *st, int flag,
                       struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void pt_rmdir(const char *dir)
{
    if (dir[0] != '\0') {
        nftw(dir, pt_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* Write text to dir/keygate.ini (path gets its name) and load it. */
static kg_err_t pt_load(const char *dir, const char *text, char *path,
                        kg_config_t **cfg, kg_diag_t *diag)
{
    pt_join(path, dir, "keygate.ini");
    pt_write(path, text, 0600);
    return kg_config_load(path, cfg, diag);
}

/* Load text that must be good; returns the config. */
static kg_config_t *pt_good(const char *dir, const char *text)
{
    char path[PT_PATH_MAX];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_msg(pt_load(dir, text, path, &cfg, &diag) == KG_OK, "%s\n%s",
                  diag.msg, text);
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* Load text that must be refused: "<path>:<line>: " + has1 + has2. */
static void pt_bad(const char *dir, const char *text, int line,
                   const char *has1, const char *has2)
{
    char path[PT_PATH_MAX];
    char where[PT_PATH_MAX + 16];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};
    kg_err_t rc = pt_load(dir, text, path, &cfg, &diag);

    ck_assert_msg(rc == KG_ERR_CONFIG, "accepted (rc %d):\n%s", (int)rc, text);
    ck_assert_ptr_null(cfg);
    snprintf(where, sizeof(where), "%s:%d: ", path, line);
    ck_assert_msg(strncmp(diag.msg, where, strlen(where)) == 0,
                  "'%s' does not start with '%s'", diag.msg, where);
    ck_assert_msg(strstr(diag.msg, has1) != NULL, "'%s' lacks '%s'", diag.msg,
                  has1);
    ck_assert_msg(has2 == NULL || strstr(diag.msg, has2) != NULL,
                  "'%s' lacks '%s'", diag.msg, has2);
    ck_assert_msg(strstr(diag.msg, "CANARY") == NULL, "'%s' leaks", diag.msg);
}

static const kg_setting_t *pt_row(const char *section, const char *name)
{
    size_t n = 0;
    const kg_setting_t *t = kg_config_settings(&n);

    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].section, section) == 0 &&
            strcmp(t[i].name, name) == 0) {
            return &t[i];
        }
    }
    ck_abort_msg("no setting [%s] %s", section, name);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* [server] and [upstream] */

START_TEST(test_fixed_defaults)
{
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};
    char host[KG_LISTEN_HOST_MAX];
    int port = -1;

    ck_assert_int_eq(kg_config_load(NULL, &cfg, &diag), KG_OK);
    ck_assert_str_eq(cfg->server_listen, "127.0.0.1:8080");
    ck_assert_int_eq(kg_config_listen_parse(cfg->server_listen, host,
                                            sizeof(host), &port, &diag),
                     KG_OK);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 8080);
    ck_assert_int_eq(cfg->server_threads, 0);
    ck_assert_int_eq(cfg->server_max_connections, 16384);
    ck_assert_int_eq(cfg->server_max_connections_per_ip, 1024);
    ck_assert_int_eq(cfg->server_idle_timeout_ms, 60000);
    ck_assert_int_eq(cfg->server_header_timeout_ms, 10000);
    ck_assert_int_eq(cfg->server_max_header_bytes, 16384);
    ck_assert_int_eq(cfg->server_max_body_bytes, 8 * 1024 * 1024);
    ck_assert_int_eq(cfg->server_drain_timeout_ms, 30000);
    ck_assert_int_eq(cfg->server_purge_interval_ms, 60000);
    ck_assert(cfg->server_request_log);
    ck_assert_int_eq(cfg->upstream_connect_timeout_ms, 10000);
    ck_assert_int_eq(cfg->upstream_first_byte_timeout_ms, 300000);
    ck_assert_int_eq(cfg->upstream_idle_timeout_ms, 120000);
    ck_assert_int_eq(cfg->upstream_max_response_bytes, 64 * 1024 * 1024);
    ck_assert_int_eq(cfg->upstream_max_connections_per_host, 256);
    ck_assert_uint_eq(cfg->nproviders, 0);
    ck_assert_uint_eq(cfg->nmodels, 0);
    ck_assert_ptr_null(kg_providers_route(cfg, "gpt-4o", &diag));
    kg_config_free(&cfg);
}
END_TEST

START_TEST(test_fixed_every_setting)
{
    char dir[PT_PATH_MAX];
    kg_config_t *cfg;

    pt_tmpdir(dir);
    cfg = pt_good(dir, "[server]\n"
                       "listen = [::1]:0\n"
                       "threads = 4\n"
                       "max_connections = 100\n"
                       "max_connections_per_ip = 0\n"
                       "idle_timeout = 2m\n"
                       "header_timeout = 5s\n"
                       "max_header_bytes = 1m\n"
                       "max_body_bytes = 1k\n"
                       "drain_timeout = 0\n"
                       "purge_interval = 1h\n"
                       "request_log = off\n"
                       "[upstream]\n"
                       "connect_timeout = 3s\n"
                       "first_byte_timeout = 1h\n"
                       "idle_timeout = 30s\n"
                       "max_response_bytes = 1g\n"
                       "max_connections_per_host = 0\n");
    ck_assert_str_eq(cfg->server_listen, "[::1]:0");
    ck_assert_int_eq(cfg->server_threads, 4);
    ck_assert_int_eq(cfg->server_max_connections, 100);
    ck_assert_int_eq(cfg->server_max_connections_per_ip, 0);
    ck_assert_int_eq(cfg->server_idle_timeout_ms, 120000);
    ck_assert_int_eq(cfg->server_header_timeout_ms, 5000);
    ck_assert_int_eq(cfg->server_max_header_bytes, 1024 * 1024);
    ck_assert_int_eq(cfg->server_max_body_bytes, 1024);
    ck_assert_int_eq(cfg->server_drain_timeout_ms, 0);
    ck_assert_int_eq(cfg->server_purge_interval_ms, 3600000);
    ck_assert(!cfg->server_request_log);
    ck_assert_int_eq(cfg->upstream_connect_timeout_ms, 3000);
    ck_assert_int_eq(cfg->upstream_first_byte_timeout_ms, 3600000);
    ck_assert_int_eq(cfg->upstream_idle_timeout_ms, 30000);
    ck_assert_int_eq(cfg->upstream_max_response_bytes,
                     INT64_C(1024) * 1024 * 1024);
    ck_assert_int_eq(cfg->upstream_max_connections_per_host, 0);
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

/* One good value: the int64 (or bool as 0/1) it stores, or a string. */
typedef struct pt_value_row {
    const char *section;
    const char *name;
    const char *value;
    int64_t want;
    const char *want_str; /* for string settings */
} pt_value_row_t;

#define PT_KIB INT64_C(1024)
#define PT_MIB (PT_KIB * 1024)

static const pt_value_row_t pt_good_values[] = {
    {"server", "max_header_bytes", "16k", 16 * PT_KIB, NULL},
    {"server", "max_header_bytes", "16K", 16 * PT_KIB, NULL},
    {"server", "max_header_bytes", "1m", PT_MIB, NULL},
    {"server", "max_header_bytes", "1M", PT_MIB, NULL},
    {"server", "max_header_bytes", "4k", 4 * PT_KIB, NULL},
    {"server", "max_header_bytes", "4096", 4096, NULL},
    {"server", "max_header_bytes", "1048576", PT_MIB, NULL},
    {"server", "max_header_bytes", "0016k", 16 * PT_KIB, NULL},
    {"server", "max_body_bytes", "1k", PT_KIB, NULL},
    {"server", "max_body_bytes", "256m", 256 * PT_MIB, NULL},
    {"server", "max_body_bytes", "1000000", 1000000, NULL},
    {"upstream", "max_response_bytes", "1g", 1024 * PT_MIB, NULL},
    {"upstream", "max_response_bytes", "1G", 1024 * PT_MIB, NULL},
    {"server", "request_log", "on", 1, NULL},
    {"server", "request_log", "off", 0, NULL},
    {"server", "request_log", "true", 1, NULL},
    {"server", "request_log", "false", 0, NULL},
    {"server", "request_log", "yes", 1, NULL},
    {"server", "request_log", "no", 0, NULL},
    {"server", "request_log", "ON", 1, NULL},
    {"server", "request_log", "False", 0, NULL},
    {"server", "threads", "0", 0, NULL},
    {"server", "threads", "256", 256, NULL},
    {"server", "max_connections", "1", 1, NULL},
    {"server", "max_connections", "1000000", 1000000, NULL},
    {"server", "max_connections_per_ip", "0", 0, NULL},
    {"server", "idle_timeout", "1s", 1000, NULL},
    {"server", "idle_timeout", "1d", 86400000, NULL},
    {"server", "header_timeout", "600s", 600000, NULL},
    {"server", "drain_timeout", "0", 0, NULL},
    {"server", "drain_timeout", "1h", 3600000, NULL},
    {"server", "purge_interval", "1s", 1000, NULL},
    {"upstream", "connect_timeout", "10m", 600000, NULL},
    {"upstream", "first_byte_timeout", "300s", 300000, NULL},
    {"upstream", "idle_timeout", "1h", 3600000, NULL},
    {"upstream", "max_connections_per_host", "65536", 65536, NULL},
    {"server", "listen", "0.0.0.0:0", 0, "0.0.0.0:0"},
    {"server", "listen", "127.0.0.1:65535", 0, "127.0.0.1:65535"},
    {"server", "listen", "[::1]:8080", 0, "[::1]:8080"},
    {"server", "listen", "[::]:443", 0, "[::]:443"},
    {"server", "listen", "[::ffff:10.0.0.1]:80", 0, "[::ffff:10.0.0.1]:80"},
};

START_TEST(test_fixed_good_values)
{
    const pt_value_row_t *row = &pt_good_values[_i];
    const kg_setting_t *s = pt_row(row->section, row->name);
    char dir[PT_PATH_MAX];
    char text[256];
    kg_config_t *cfg;
    const char *base;

    pt_tmpdir(dir);
    snprintf(text, sizeof(text), "[%s]\n%s = %s\n", row->section, row->name,
             row->value);
    cfg = pt_good(dir, text);
    base = (const char *)cfg + s->offset;
    if (row->want_str != NULL) {
        ck_assert_str_eq(*(char *const *)(const void *)base, row->want_str);
    } else if (s->type == KG_SETTING_BOOL) {
        ck_assert_int_eq(*(const bool *)(const void *)base, row->want != 0);
    } else {
        ck_assert_msg(*(const int64_t *)(const void *)base == row->want,
                      "[%s] %s = %s: got %" PRId64, row->section, row->name,
                      row->value, *(const int64_t *)(const void *)base);
    }
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

typedef struct pt_bad_value_row {
    const char *section;
    const char *name;
    const char *value;
    const char *has; /* besides "[section] name" and the value */
} pt_bad_value_row_t;

static const pt_bad_value_row_t pt_bad_values[] = {
    {"server", "max_header_bytes", "abc", "4k to 1m"},
    {"server", "max_header_bytes", "3k", "4k to 1m"},
    {"server", "max_header_bytes", "4095", "4k to 1m"},
    {"server", "max_header_bytes", "2m", "4k to 1m"},
    {"server", "max_header_bytes", "16kb", "not a size"},
    {"server", "max_header_bytes", "1.5k", "not a size"},
    {"server", "max_header_bytes", "-16k", "not a size"},
    {"server", "max_header_bytes", "k", "not a size"},
    {"server", "max_header_bytes", "16 k", "not a size"},
    {"server", "max_header_bytes", "99999999999999999999", "not a size"},
    {"server", "max_header_bytes", "9999999999999999g", "not a size"},
    {"server", "max_body_bytes", "257m", "1k to 256m"},
    {"server", "max_body_bytes", "512", "1k to 256m"},
    {"upstream", "max_response_bytes", "2g", "1k to 1g"},
    {"server", "request_log", "maybe", "on/off"},
    {"server", "request_log", "1", "on/off"},
    {"server", "request_log", "enabled", "on/off"},
    {"server", "threads", "257", "0 to 256"},
    {"server", "threads", "-1", "0 to 256"},
    {"server", "threads", "four", "0 to 256"},
    {"server", "max_connections", "0", "1 to 1000000"},
    {"server", "max_connections_per_ip", "-1", "0 to 1000000"},
    {"server", "idle_timeout", "0", "outside"},
    {"server", "idle_timeout", "2d", "outside"},
    {"server", "header_timeout", "11m", "outside"},
    {"server", "header_timeout", "10", "bad duration"},
    {"server", "drain_timeout", "2h", "outside"},
    {"server", "purge_interval", "0", "outside"},
    {"upstream", "connect_timeout", "11m", "outside"},
    {"upstream", "connect_timeout", "0", "outside"},
    {"upstream", "first_byte_timeout", "2h", "outside"},
    {"upstream", "idle_timeout", "1h1s", "outside"},
    {"upstream", "max_connections_per_host", "65537", "0 to 65536"},
    {"server", "listen", "localhost:8080", "IP address"},
    {"server", "listen", "127.0.0.1", "no port"},
    {"server", "listen", "127.0.0.1:65536", "0 to 65535"},
    {"server", "listen", "127.0.0.1:", "0 to 65535"},
    {"server", "listen", "127.0.0.1:80a", "0 to 65535"},
    {"server", "listen", ":8080", "IP address"},
    {"server", "listen", "::1:8080", "brackets"},
    {"server", "listen", "[::1]", "IP address"},
    {"server", "listen", "[::1]8080", "IP address"},
    {"server", "listen", "[zz]:80", "IP address"},
    {"server", "listen", "1.2.3:80", "IP address"},
    {"server", "listen", "256.0.0.1:80", "IP address"},
};

START_TEST(test_fixed_bad_values)
{
    const pt_bad_value_row_t *row = &pt_bad_values[_i];
    char dir[PT_PATH_MAX];
    char text[256];
    char what[128];

    pt_tmpdir(dir);
    snprintf(text, sizeof(text), "; bad\n[%s]\n%s = %s\n", row->section,
             row->name, row->value);
    snprintf(what, sizeof(what), "[%s] %s: ", row->section, row->name);
    pt_bad(dir, text, 3, what, row->has);
    pt_bad(dir, text, 3, row->value, NULL);
    pt_rmdir(dir);
}
END_TEST

START_TEST(test_listen_parse)
{
    char host[KG_LISTEN_HOST_MAX];
    char small[4];
    kg_diag_t diag = {{0}};
    int port = -1;

    ck_assert_int_eq(
        kg_config_listen_parse("[::1]:8080", host, sizeof(host), &port, &diag),
        KG_OK);
    ck_assert_str_eq(host, "::1");
    ck_assert_int_eq(port, 8080);
    ck_assert_int_eq(
        kg_config_listen_parse("0.0.0.0:0", host, sizeof(host), &port, &diag),
        KG_OK);
    ck_assert_str_eq(host, "0.0.0.0");
    ck_assert_int_eq(port, 0);
    ck_assert_int_eq(kg_config_listen_parse("10.0.0.1:80", small, sizeof(small),
                                            &port, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(
        kg_config_listen_parse("", host, sizeof(host), &port, &diag),
        KG_ERR_INVAL);
}
END_TEST

/* The JSON view prints sizes and booleans the way an operator writes them. */
START_TEST(test_fixed_json)
{
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};
    json_t *root;
    json_t *sec; /* borrowed */

    ck_assert_int_eq(kg_config_load(NULL, &cfg, &diag), KG_OK);
    root = kg_config_to_json(cfg);
    ck_assert_ptr_nonnull(root);
    sec = json_object_get(root, "server");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "listen")),
                     "127.0.0.1:8080");
    ck_assert_str_eq(
        json_string_value(json_object_get(sec, "max_header_bytes")), "16k");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "max_body_bytes")),
                     "8m");
    ck_assert(json_is_true(json_object_get(sec, "request_log")));
    ck_assert_int_eq(json_integer_value(json_object_get(sec, "threads")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(sec, "idle_timeout")),
                     "1m");
    sec = json_object_get(root, "upstream");
    ck_assert_str_eq(
        json_string_value(json_object_get(sec, "first_byte_timeout")), "5m");
    ck_assert_str_eq(
        json_string_value(json_object_get(sec, "max_response_bytes")), "64m");
    json_decref(root);
    kg_config_free(&cfg);
}
END_TEST

/* Every fixed default parses within its bounds; setting all of them to
 * their defaults gives the built-in configuration. */
START_TEST(test_fixed_defaults_round_trip)
{
    char dir[PT_PATH_MAX];
    char text[8192];
    size_t n = 0;
    size_t used = 0;
    const kg_setting_t *t = kg_config_settings(&n);
    const char *section = "";
    kg_config_t *cfg;
    kg_config_t *def = NULL;
    kg_diag_t diag = {{0}};
    json_t *a;
    json_t *b;

    for (size_t i = 0; i < n; i++) {
        int w;

        ck_assert_ptr_nonnull(t[i].def);
        ck_assert_ptr_nonnull(t[i].help);
        ck_assert_msg(!(t[i].flags & KG_SETTING_RESTART) !=
                          !(t[i].flags & KG_SETTING_RELOADABLE),
                      "[%s] %s: exactly one of RESTART, RELOADABLE",
                      t[i].section, t[i].name);
        if (strcmp(section, t[i].section) != 0) {
            section = t[i].section;
            w = snprintf(text + used, sizeof(text) - used, "[%s]\n", section);
            ck_assert(w > 0 && (size_t)w < sizeof(text) - used);
            used += (size_t)w;
        }
        w = snprintf(text + used, sizeof(text) - used, "%s = %s\n", t[i].name,
                     t[i].def);
        ck_assert(w > 0 && (size_t)w < sizeof(text) - used);
        used += (size_t)w;
    }
    pt_tmpdir(dir);
    cfg = pt_good(dir, text);
    ck_assert_int_eq(kg_config_load(NULL, &def, &diag), KG_OK);
    a = kg_config_to_json(cfg);
    b = kg_config_to_json(def);
    ck_assert(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    kg_config_free(&cfg);
    kg_config_free(&def);
    pt_rmdir(dir);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* [provider NAME] and [model NAME] */

/* Models before providers, providers of both types, every setting. */
static const char pt_good_file[] = "[model gpt-4o]\n"
                                   "provider = openai\n"
                                   "input_price = 2.50\n"
                                   "output_price = 10\n"
                                   "cached_input_price = 1.25\n"
                                   "\n"
                                   "[model fast]\n"
                                   "provider = openai\n"
                                   "upstream = gpt-4o-mini\n"
                                   "input_price = 0.15\n"
                                   "output_price = 0.60\n"
                                   "max_output_tokens = 16384\n"
                                   "\n"
                                   "[provider openai]\n"
                                   "type = openai\n"
                                   "base_url = HTTPS://api.openai.com/v1/\n"
                                   "api_key_env = PT_OPENAI_KEY\n"
                                   "\n"
                                   "[model claude-3-5-haiku]\n"
                                   "provider = anthropic\n"
                                   "upstream = claude-3-5-haiku-20241022\n"
                                   "input_price = 0.80\n"
                                   "output_price = 4.00\n"
                                   "\n"
                                   "[provider anthropic]\n"
                                   "type = anthropic\n"
                                   "base_url = https://api.anthropic.com/v1\n"
                                   "api_key_file = anthropic.key\n"
                                   "connect_timeout = 5s\n"
                                   "first_byte_timeout = 10m\n"
                                   "idle_timeout = 1m\n"
                                   "http_version = 1.1\n"
                                   "\n"
                                   "[provider local]\n"
                                   "type = openai\n"
                                   "base_url = http://127.0.0.1:9090/v1\n"
                                   "http_version = 2-prior-knowledge\n"
                                   "\n"
                                   "[model meta-llama/llama-3.1-8b:free]\n"
                                   "provider = local\n"
                                   "upstream = llama3.1:8b\n"
                                   "input_price = 0\n"
                                   "output_price = 0.000001\n"
                                   "\n"
                                   "[model gpt-4o-mini]\n"
                                   "provider = local\n"
                                   "input_price = 0.1\n"
                                   "output_price = 0.2\n";

/* Load pt_good_file with its credentials in place. */
static kg_config_t *pt_load_good(char *dir)
{
    char key[PT_PATH_MAX];

    pt_tmpdir(dir);
    ck_assert(setenv("PT_OPENAI_KEY", "  sk-openai-" PT_CANARY "\n", 1) == 0);
    pt_write(pt_join(key, dir, "anthropic.key"), "sk-ant-" PT_CANARY "\r\n",
             0640);
    return pt_good(dir, pt_good_file);
}

START_TEST(test_providers_good_file)
{
    char dir[PT_PATH_MAX];
    char key[PT_PATH_MAX];
    kg_config_t *cfg = pt_load_good(dir);
    const kg_provider_t *openai;
    const kg_provider_t *anthropic;
    const kg_provider_t *local;
    const kg_model_t *m;

    ck_assert_uint_eq(cfg->nproviders, 3);
    ck_assert_uint_eq(cfg->nmodels, 5);
    /* File order is kept. */
    ck_assert_str_eq(cfg->providers[0].name, "openai");
    ck_assert_str_eq(cfg->providers[1].name, "anthropic");
    ck_assert_str_eq(cfg->providers[2].name, "local");
    ck_assert_str_eq(cfg->models[0].name, "gpt-4o");
    ck_assert_str_eq(cfg->models[4].name, "gpt-4o-mini");

    openai = kg_providers_find(cfg, "openai");
    ck_assert_ptr_eq(openai, &cfg->providers[0]);
    ck_assert_int_eq(openai->type, KG_PROVIDER_OPENAI);
    ck_assert_str_eq(openai->base_url, "https://api.openai.com/v1");
    ck_assert_str_eq(openai->api_key_env, "PT_OPENAI_KEY");
    ck_assert_ptr_null(openai->api_key_file);
    ck_assert_uint_eq(openai->credential_len, strlen("sk-openai-" PT_CANARY));
    ck_assert_str_eq(openai->credential, "sk-openai-" PT_CANARY);
    ck_assert_int_eq(openai->connect_timeout_ms, 10000);
    ck_assert_int_eq(openai->first_byte_timeout_ms, 300000);
    ck_assert_int_eq(openai->idle_timeout_ms, 120000);
    ck_assert_int_eq(openai->http_version, KG_HTTP_VERSION_AUTO); /* default */

    anthropic = kg_providers_find(cfg, "anthropic");
    ck_assert_ptr_nonnull(anthropic);
    ck_assert_int_eq(anthropic->type, KG_PROVIDER_ANTHROPIC);
    ck_assert_str_eq(anthropic->base_url, "https://api.anthropic.com/v1");
    ck_assert_str_eq(anthropic->api_key_file,
                     pt_join(key, dir, "anthropic.key"));
    ck_assert_str_eq(anthropic->credential, "sk-ant-" PT_CANARY);
    ck_assert_int_eq(anthropic->connect_timeout_ms, 5000);
    ck_assert_int_eq(anthropic->first_byte_timeout_ms, 600000);
    ck_assert_int_eq(anthropic->idle_timeout_ms, 60000);
    ck_assert_int_eq(anthropic->http_version, KG_HTTP_VERSION_1_1);

    local = kg_providers_find(cfg, "local");
    ck_assert_ptr_nonnull(local);
    ck_assert_ptr_null(local->credential);
    ck_assert_uint_eq(local->credential_len, 0);
    ck_assert_int_eq(local->http_version, KG_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    ck_assert_ptr_null(kg_providers_find(cfg, "nope"));
    ck_assert_ptr_null(kg_providers_find(cfg, ""));

    m = &cfg->models[0];
    ck_assert_ptr_eq(m->provider, openai);
    ck_assert_uint_eq(m->provider_index, 0);
    ck_assert_str_eq(m->provider_name, "openai");
    ck_assert_str_eq(m->upstream, "gpt-4o"); /* default: the name */
    ck_assert_int_eq(m->input_price, 2500000);
    ck_assert_int_eq(m->output_price, 10000000);
    ck_assert_int_eq(m->cached_input_price, 1250000);
    ck_assert_int_eq(m->max_output_tokens, 4096);
    m = &cfg->models[1];
    ck_assert_str_eq(m->upstream, "gpt-4o-mini");
    ck_assert_int_eq(m->cached_input_price, -1);
    ck_assert_int_eq(m->max_output_tokens, 16384);
    m = &cfg->models[2];
    ck_assert_ptr_eq(m->provider, anthropic);
    ck_assert_uint_eq(m->provider_index, 1);
    m = &cfg->models[3];
    ck_assert_str_eq(m->name, "meta-llama/llama-3.1-8b:free");
    ck_assert_str_eq(m->upstream, "llama3.1:8b");
    ck_assert_int_eq(m->input_price, 0);
    ck_assert_int_eq(m->output_price, 1);
    ck_assert_ptr_eq(m->provider, local);
    kg_config_free(&cfg);
    ck_assert_ptr_null(cfg);
    pt_rmdir(dir);
}
END_TEST

/* The JSON view: sections per provider and model, never the credential. */
START_TEST(test_providers_json_redacted)
{
    char dir[PT_PATH_MAX];
    kg_config_t *cfg = pt_load_good(dir);
    json_t *root = kg_config_to_json(cfg);
    json_t *sec; /* borrowed */
    char *dump;

    ck_assert_ptr_nonnull(root);
    dump = json_dumps(root, JSON_COMPACT);
    ck_assert_ptr_nonnull(dump);
    ck_assert_msg(strstr(dump, "CANARY") == NULL, "credential in %s", dump);
    free(dump);
    sec = json_object_get(root, "provider openai");
    ck_assert(json_is_object(sec));
    ck_assert_str_eq(json_string_value(json_object_get(sec, "credential")),
                     "(redacted)");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "type")), "openai");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "api_key_env")),
                     "PT_OPENAI_KEY");
    ck_assert(json_is_null(json_object_get(sec, "api_key_file")));
    ck_assert_str_eq(
        json_string_value(json_object_get(sec, "first_byte_timeout")), "5m");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "http_version")),
                     "auto");
    sec = json_object_get(root, "provider anthropic");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "credential")),
                     "(redacted)");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "http_version")),
                     "1.1");
    sec = json_object_get(root, "provider local");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "credential")),
                     "(none)");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "http_version")),
                     "2-prior-knowledge");
    sec = json_object_get(root, "model gpt-4o");
    ck_assert(json_is_object(sec));
    ck_assert_str_eq(json_string_value(json_object_get(sec, "input_price")),
                     "2.50");
    ck_assert_str_eq(
        json_string_value(json_object_get(sec, "cached_input_price")), "1.25");
    ck_assert_str_eq(json_string_value(json_object_get(sec, "provider")),
                     "openai");
    sec = json_object_get(root, "model fast");
    ck_assert(json_is_null(json_object_get(sec, "cached_input_price")));
    ck_assert_str_eq(json_string_value(json_object_get(sec, "upstream")),
                     "gpt-4o-mini");
    ck_assert(json_is_object(
        json_object_get(root, "model meta-llama/llama-3.1-8b:free")));
    json_decref(root);
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

typedef struct pt_route_row {
    const char *requested;
    const char *model; /* the public name routed to, or NULL */
} pt_route_row_t;

static const pt_route_row_t pt_routes[] = {
    {"gpt-4o", "gpt-4o"},
    {"fast", "fast"},
    {"claude-3-5-haiku", "claude-3-5-haiku"},
    {"meta-llama/llama-3.1-8b:free", "meta-llama/llama-3.1-8b:free"},
    /* provider/public name */
    {"openai/gpt-4o", "gpt-4o"},
    {"openai/fast", "fast"},
    {"anthropic/claude-3-5-haiku", "claude-3-5-haiku"},
    {"local/meta-llama/llama-3.1-8b:free", "meta-llama/llama-3.1-8b:free"},
    /* provider/upstream name */
    {"anthropic/claude-3-5-haiku-20241022", "claude-3-5-haiku"},
    {"local/llama3.1:8b", "meta-llama/llama-3.1-8b:free"},
    /* "gpt-4o-mini" is local's public name and openai's upstream name */
    {"gpt-4o-mini", "gpt-4o-mini"},
    {"openai/gpt-4o-mini", "fast"},
    {"local/gpt-4o-mini", "gpt-4o-mini"},
    /* unknown */
    {"gpt-5", NULL},
    {"claude-3-5-haiku-20241022", NULL}, /* upstream needs provider/ */
    {"openai/claude-3-5-haiku", NULL},   /* another provider's model */
    {"anthropic/gpt-4o", NULL},
    {"openai/unknown", NULL},
    {"nope/gpt-4o", NULL},
    {"openai/", NULL},
    {"/gpt-4o", NULL},
    {"openai", NULL},
    {"", NULL},
    {"GPT-4O", NULL},
    {"gpt-4o ", NULL},
};

START_TEST(test_route)
{
    const pt_route_row_t *row = &pt_routes[_i];
    char dir[PT_PATH_MAX];
    kg_config_t *cfg = pt_load_good(dir);
    kg_diag_t diag = {{0}};
    const kg_model_t *m = kg_providers_route(cfg, row->requested, &diag);

    if (row->model == NULL) {
        ck_assert_msg(m == NULL, "'%s' routed to %s", row->requested,
                      m != NULL ? m->name : "");
        ck_assert(diag.msg[0] != '\0');
    } else {
        ck_assert_msg(m != NULL, "'%s': %s", row->requested, diag.msg);
        ck_assert_str_eq(m->name, row->model);
        ck_assert_ptr_eq(m->provider, &cfg->providers[m->provider_index]);
    }
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

START_TEST(test_route_bounds)
{
    char dir[PT_PATH_MAX];
    kg_config_t *cfg = pt_load_good(dir);
    kg_diag_t diag = {{0}};
    char *longname = malloc(KG_ROUTE_NAME_MAX + 2);

    ck_assert_ptr_nonnull(longname);
    memset(longname, 'a', KG_ROUTE_NAME_MAX + 1);
    longname[KG_ROUTE_NAME_MAX + 1] = '\0';
    ck_assert_ptr_null(kg_providers_route(cfg, longname, &diag));
    memcpy(longname, "openai/", 7);
    longname[KG_ROUTE_NAME_MAX] = '\0';
    ck_assert_ptr_null(kg_providers_route(cfg, longname, &diag));
    free(longname);
    /* Without a diag, too. */
    ck_assert_ptr_null(kg_providers_route(cfg, "gpt-5", NULL));
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

/* Hundreds of models: every one is found, both ways, via the index. */
START_TEST(test_route_many)
{
    enum { PT_NMODELS = 600 };
    char dir[PT_PATH_MAX];
    size_t cap = 128 * PT_NMODELS + 512;
    char *text = malloc(cap);
    size_t used = 0;
    kg_config_t *cfg;
    kg_diag_t diag = {{0}};
    char name[64];

    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < PT_NMODELS; i++) {
        /* Descending names, providers p0..p4 declared after the models. */
        int w = snprintf(text + used, cap - used,
                         "[model m%04d]\nprovider = p%d\nupstream = u%04d\n"
                         "input_price = 1\noutput_price = 2\n",
                         PT_NMODELS - i, i % 5, i);

        ck_assert(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
    for (int i = 4; i >= 0; i--) {
        int w = snprintf(text + used, cap - used,
                         "[provider p%d]\ntype = openai\n"
                         "base_url = http://127.0.0.1:1/v1\n",
                         i);

        ck_assert(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
    pt_tmpdir(dir);
    cfg = pt_good(dir, text);
    free(text);
    ck_assert_uint_eq(cfg->nmodels, PT_NMODELS);
    for (int i = 0; i < PT_NMODELS; i++) {
        const kg_model_t *m;

        snprintf(name, sizeof(name), "m%04d", PT_NMODELS - i);
        m = kg_providers_route(cfg, name, &diag);
        ck_assert_ptr_eq(m, &cfg->models[i]);
        snprintf(name, sizeof(name), "p%d/u%04d", i % 5, i);
        ck_assert_ptr_eq(kg_providers_route(cfg, name, &diag), &cfg->models[i]);
        snprintf(name, sizeof(name), "p%d/m%04d", i % 5, PT_NMODELS - i);
        ck_assert_ptr_eq(kg_providers_route(cfg, name, &diag), &cfg->models[i]);
        snprintf(name, sizeof(name), "p%d/u%04d", (i + 1) % 5, i);
        ck_assert_ptr_null(kg_providers_route(cfg, name, &diag));
    }
    ck_assert_ptr_null(kg_providers_route(cfg, "m0000", &diag));
    ck_assert_ptr_null(kg_providers_route(cfg, "m9999", &diag));
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

/* Model names longer than libinih's section buffer keep their settings. */
START_TEST(test_long_model_names)
{
    char dir[PT_PATH_MAX];
    char text[2048];
    char a[160];
    char b[160];
    kg_config_t *cfg;
    kg_diag_t diag = {{0}};

    memset(a, 'x', 150);
    a[150] = '\0';
    memcpy(b, a, sizeof(a));
    a[149] = 'a';
    b[149] = 'b';
    snprintf(text, sizeof(text),
             "[provider p]\ntype = openai\nbase_url = http://h/v1\n"
             "[model %s]\nprovider = p\ninput_price = 1\noutput_price = 1\n"
             "[model %s]\nprovider = p\ninput_price = 2\noutput_price = 2\n",
             a, b);
    pt_tmpdir(dir);
    cfg = pt_good(dir, text);
    ck_assert_uint_eq(cfg->nmodels, 2);
    ck_assert_str_eq(cfg->models[0].name, a);
    ck_assert_int_eq(cfg->models[0].input_price, 1000000);
    ck_assert_str_eq(cfg->models[1].name, b);
    ck_assert_int_eq(cfg->models[1].input_price, 2000000);
    ck_assert_ptr_eq(kg_providers_route(cfg, b, &diag), &cfg->models[1]);
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

/* Files that look odd but are fine. */
static const char *const pt_good_texts[] = {
    /* CRLF and a BOM before a provider header */
    "\xef\xbb\xbf[provider a]\r\ntype = openai\r\nbase_url = http://h/v1\r\n",
    /* header with a comment after it, spaces around */
    "  [provider a]   ; comment\n  type = anthropic\nbase_url = "
    "http://[::1]:9000/v1\n",
    /* a provider without models, a model of it, and an empty fixed section */
    "[provider a-b_c]\ntype=openai\nbase_url=https://x.example/api/v1\n"
    "[log]\n[model a]\nprovider=a-b_c\ninput_price=0\noutput_price=0\n",
    /* provider name of 64 characters */
    "[provider "
    "0123456789012345678901234567890123456789012345678901234567890123"
    "]\ntype = openai\nbase_url = http://h/v1\n",
    /* highest price and token cap */
    "[provider p]\ntype = openai\nbase_url = http://h/v1\n[model m]\n"
    "provider = p\ninput_price = 10000\noutput_price = 10000.000000\n"
    "max_output_tokens = 10000000\n",
};

START_TEST(test_providers_good_texts)
{
    char dir[PT_PATH_MAX];
    kg_config_t *cfg;

    pt_tmpdir(dir);
    cfg = pt_good(dir, pt_good_texts[_i]);
    ck_assert_uint_ge(cfg->nproviders, 1);
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

typedef struct pt_bad_row {
    const char *what;
    const char *text;
    int line;
    const char *has1;
    const char *has2;
} pt_bad_row_t;

#define PT_P  "[provider p]\ntype = openai\nbase_url = http://h/v1\n"
#define PT_M  "[model m]\nprovider = p\ninput_price = 1\noutput_price = 2\n"
#define PT_P2 "[provider p]\ntype = openai\nbase_url = "

static const pt_bad_row_t pt_bad_rows[] = {
    /* provider settings */
    {"unknown type", "[provider p]\ntype = azure\n", 2, "[provider p] type",
     "'azure' is not openai or anthropic"},
    {"type in capitals", "[provider p]\ntype = OpenAI\n", 2,
     "[provider p] type", "not openai or anthropic"},
    {"ftp base_url", PT_P2 "ftp://h/v1\n", 3, "[provider p] base_url",
     "http:// or https://"},
    {"base_url with userinfo", PT_P2 "https://user:CANARY@h/v1\n", 3,
     "[provider p] base_url", "user name or password"},
    {"base_url with @ in the path", PT_P2 "https://h/v1@x\n", 3,
     "[provider p] base_url", "user name or password"},
    {"base_url with a query", PT_P2 "https://h/v1?x=1\n", 3,
     "[provider p] base_url", "query"},
    {"base_url with a fragment", PT_P2 "https://h/v1#x\n", 3,
     "[provider p] base_url", "fragment"},
    {"base_url without a path", PT_P2 "https://api.anthropic.com\n", 3,
     "[provider p] base_url", "no path"},
    {"base_url of only a slash", PT_P2 "https://api.anthropic.com/\n", 3,
     "[provider p] base_url", "no path"},
    {"base_url without a host", PT_P2 "https:///v1\n", 3,
     "[provider p] base_url", "no valid host"},
    {"base_url with a bad host", PT_P2 "https://h_x/v1\n", 3,
     "[provider p] base_url", "no valid host"},
    {"base_url with a bad IPv6", PT_P2 "http://[zz]:80/v1\n", 3,
     "[provider p] base_url", "no valid host"},
    {"base_url with port 0", PT_P2 "http://h:0/v1\n", 3,
     "[provider p] base_url", "bad port"},
    {"base_url with port 65536", PT_P2 "http://h:65536/v1\n", 3,
     "[provider p] base_url", "bad port"},
    {"base_url with an empty port", PT_P2 "http://h:/v1\n", 3,
     "[provider p] base_url", "bad port"},
    {"base_url with a space", PT_P2 "http://h/v 1\n", 3,
     "[provider p] base_url", "not allowed"},
    {"base_url empty", PT_P2 "\n", 3, "[provider p] base_url", NULL},
    {"both env and file", PT_P "api_key_file = k\napi_key_env = X\n", 5,
     "[provider p] api_key_env", "exclude each other"},
    {"both file and env", PT_P "api_key_env = PT_SET\napi_key_file = k\n", 5,
     "[provider p] api_key_file", "exclude each other"},
    {"env var unset", PT_P "api_key_env = PT_UNSET_VAR\n", 4,
     "[provider p] api_key_env", "PT_UNSET_VAR is not set"},
    {"env var empty", PT_P "api_key_env = PT_EMPTY\n", 4,
     "[provider p] api_key_env", "PT_EMPTY is empty"},
    {"env var blank", PT_P "api_key_env = PT_BLANK\n", 4,
     "[provider p] api_key_env", "PT_BLANK is empty"},
    {"env var with a space inside", PT_P "api_key_env = PT_SPACED\n", 4,
     "[provider p] api_key_env", "printable ASCII"},
    {"env var of two lines", PT_P "api_key_env = PT_TWO_LINES\n", 4,
     "[provider p] api_key_env", "one line"},
    {"bad env name", PT_P "api_key_env = 1ABC\n", 4, "[provider p] api_key_env",
     "not an environment variable name"},
    {"env name with a dash", PT_P "api_key_env = A-B\n", 4,
     "[provider p] api_key_env", "not an environment variable name"},
    {"credential file missing", PT_P "api_key_file = absent.key\n", 4,
     "[provider p] api_key_file", "cannot open"},
    {"inline api_key", PT_P "api_key = sk-CANARY\n", 4, "[provider p] api_key",
     "never written in this file"},
    {"unknown provider setting", PT_P "region = eu\n", 4, "[provider p] region",
     "unknown setting"},
    {"provider setting twice", PT_P "type = anthropic\n", 4,
     "[provider p] type", "more than once"},
    {"timeout out of range", PT_P "connect_timeout = 0\n", 4,
     "[provider p] connect_timeout", "outside"},
    {"first byte timeout out of range", PT_P "first_byte_timeout = 2h\n", 4,
     "[provider p] first_byte_timeout", "outside"},
    {"idle timeout bad", PT_P "idle_timeout = soon\n", 4,
     "[provider p] idle_timeout", "'soon'"},
    {"http_version 3", PT_P "http_version = 3\n", 4,
     "[provider p] http_version",
     "'3' is not auto, 1.1, 2 or 2-prior-knowledge"},
    {"http_version 2.0", PT_P "http_version = 2.0\n", 4,
     "[provider p] http_version", "not auto, 1.1, 2 or 2-prior-knowledge"},
    {"http_version HTTP/2", PT_P "http_version = HTTP/2\n", 4,
     "[provider p] http_version", "'HTTP/2' is not auto"},
    {"http_version in capitals", PT_P "http_version = AUTO\n", 4,
     "[provider p] http_version", "not auto, 1.1"},
    {"http_version h2c", PT_P "http_version = h2c\n", 4,
     "[provider p] http_version", "2-prior-knowledge"},
    {"http_version empty", PT_P "http_version =\n", 4,
     "[provider p] http_version", "'' is not auto"},
    {"http_version twice", PT_P "http_version = 2\nhttp_version = 1.1\n", 5,
     "[provider p] http_version", "more than once"},
    {"provider without type", "[provider p]\nbase_url = http://h/v1\n", 1,
     "[provider p] type", "is required"},
    {"provider without base_url", "; x\n[provider p]\ntype = openai\n", 2,
     "[provider p] base_url", "is required"},
    {"empty provider section at the end", PT_M "[provider p]\n", 5,
     "[provider p] type", "is required"},
    {"duplicate provider", PT_P "\n" PT_P, 5, "[provider p]",
     "more than once (first on line 1)"},
    /* provider names */
    {"provider without a name", "[provider]\ntype = openai\n", 1, "[provider]",
     "[provider NAME]"},
    {"provider name in capitals", "[provider OpenAI]\n", 1, "[provider OpenAI]",
     "a-z"},
    {"provider name with a slash", "[provider a/b]\n", 1, "[provider a/b]",
     "a-z"},
    {"provider name with a dot", "[provider a.b]\n", 1, "[provider a.b]",
     "a-z"},
    {"provider name with two spaces", "[provider  a]\n", 1, "[provider  a]",
     "a-z"},
    {"provider name of 65 characters",
     "[provider 01234567890123456789012345678901234567890123456789012345678901"
     "234]\n",
     1, "[provider 0123", "1-64"},
    {"providerx section", "[providerx]\ntype = openai\n", 2, "[providerx]",
     "unknown section"},
    /* model settings */
    {"model of a missing provider",
     PT_P "[model m]\ninput_price = 1\n"
          "provider = q\noutput_price = 2\n",
     6, "[model m] provider", "no [provider q]"},
    {"model without a provider",
     PT_P "[model m]\ninput_price = 1\n"
          "output_price = 2\n",
     4, "[model m] provider", "is required"},
    {"model without input_price",
     PT_P "[model m]\nprovider = p\n"
          "output_price = 2\n",
     4, "[model m] input_price", "is required"},
    {"model without output_price",
     PT_P "[model m]\nprovider = p\n"
          "input_price = 2\n",
     4, "[model m] output_price", "is required"},
    {"model without prices", PT_P "[model m]\nprovider = p\n", 4,
     "[model m] input_price", "is required"},
    {"empty model section", PT_P "[model m]\n", 4, "[model m] provider",
     "is required"},
    {"duplicate model", PT_P PT_M "; again\n" PT_M, 9, "[model m]",
     "more than once (first on line 4)"},
    {"bad price", PT_P "[model m]\ninput_price = abc\n", 5,
     "[model m] input_price", "'abc'"},
    {"negative price", PT_P "[model m]\noutput_price = -1\n", 5,
     "[model m] output_price", "negative"},
    {"price with 7 decimals", PT_P "[model m]\ninput_price = 0.0000001\n", 5,
     "[model m] input_price", "6 decimals"},
    {"price too high", PT_P "[model m]\ninput_price = 10000.000001\n", 5,
     "[model m] input_price", "maximum of 10000.00"},
    {"bad cached price", PT_P "[model m]\ncached_input_price = 1,5\n", 5,
     "[model m] cached_input_price", "'1,5'"},
    {"zero max_output_tokens", PT_P "[model m]\nmax_output_tokens = 0\n", 5,
     "[model m] max_output_tokens", "1 to 10000000"},
    {"bad upstream", PT_P "[model m]\nupstream = a b\n", 5,
     "[model m] upstream", "not a model name"},
    {"bad provider reference", PT_P "[model m]\nprovider = P!\n", 5,
     "[model m] provider", "not a provider name"},
    {"unknown model setting", PT_P "[model m]\nprice = 1\n", 5,
     "[model m] price", "unknown setting"},
    {"model setting twice", PT_P PT_M "provider = p\n", 8, "[model m] provider",
     "more than once"},
    /* model names */
    {"model without a name", "[model]\n", 1, "[model]", "[model NAME]"},
    {"model name with a space", "[model a b]\n", 1, "[model a b]",
     "without spaces"},
    {"model name empty", "[model ]\n", 1, "[model ]", "[model NAME]"},
    {"model name with a tab", "[model a\tb]\n", 1, "[model a",
     "without spaces"},
    /* sections */
    {"empty unknown section", "[log]\nlevel = info\n[bogus]\n[keys]\n", 3,
     "[bogus]", "unknown section"},
    {"empty unknown section at the end", "[log]\n[bogus]\n; end\n", 2,
     "[bogus]", "unknown section"},
    {"indented header after a setting", PT_P "  [provider q]\ntype = openai\n",
     4, "[provider", NULL},
};

START_TEST(test_providers_bad)
{
    const pt_bad_row_t *row = &pt_bad_rows[_i];
    char dir[PT_PATH_MAX];
    char key[PT_PATH_MAX];

    ck_assert(unsetenv("PT_UNSET_VAR") == 0);
    ck_assert(setenv("PT_EMPTY", "", 1) == 0);
    ck_assert(setenv("PT_BLANK", " \t\n", 1) == 0);
    ck_assert(setenv("PT_SPACED", "sk-CANARY and more", 1) == 0);
    ck_assert(setenv("PT_TWO_LINES", "sk-CANARY\nline2", 1) == 0);
    ck_assert(setenv("PT_SET", "sk-CANARY", 1) == 0);
    pt_tmpdir(dir);
    pt_write(pt_join(key, dir, "k"), "sk-CANARY\n", 0600);
    pt_bad(dir, row->text, row->line, row->has1, row->has2);
    pt_rmdir(dir);
}
END_TEST

typedef struct pt_file_row {
    const char *what;
    const char *content;
    mode_t mode;
    const char *has; /* NULL: the file is good */
} pt_file_row_t;

static const pt_file_row_t pt_file_rows[] = {
    {"mode 0600", "sk-CANARY\n", 0600, NULL},
    {"mode 0640", "sk-CANARY", 0640, NULL},
    {"mode 0400, CRLF", "sk-CANARY\r\n", 0400, NULL},
    {"mode 0644", "sk-CANARY\n", 0644, "accessible by others (mode 644)"},
    {"mode 0604", "sk-CANARY\n", 0604, "accessible by others"},
    {"mode 0602", "sk-CANARY\n", 0602, "accessible by others"},
    {"mode 0601", "sk-CANARY\n", 0601, "accessible by others"},
    {"two lines", "sk-CANARY\nsecond\n", 0600, "one line"},
    {"empty", "", 0600, "is empty"},
    {"blank", "\n\n  \n", 0600, "is empty"},
    {"a space inside", "sk-CANARY x\n", 0600, "printable ASCII"},
    {"a control character", "sk-CANARY\x01x\n", 0600, "printable ASCII"},
    {"non-ASCII", "sk-CANARY\xc3\xa9\n", 0600, "printable ASCII"},
};

START_TEST(test_credential_file)
{
    const pt_file_row_t *row = &pt_file_rows[_i];
    char dir[PT_PATH_MAX];
    char key[PT_PATH_MAX];
    kg_config_t *cfg;

    pt_tmpdir(dir);
    pt_write(pt_join(key, dir, "p.key"), row->content, row->mode);
    if (row->has == NULL) {
        cfg = pt_good(dir, PT_P "api_key_file = p.key\n");
        ck_assert_str_eq(cfg->providers[0].credential, "sk-CANARY");
        ck_assert_uint_eq(cfg->providers[0].credential_len, 9);
        kg_config_free(&cfg);
    } else {
        pt_bad(dir, PT_P "api_key_file = p.key\n", 4,
               "[provider p] api_key_file: ", row->has);
    }
    pt_rmdir(dir);
}
END_TEST

START_TEST(test_credential_file_bounds)
{
    char dir[PT_PATH_MAX];
    char key[PT_PATH_MAX];
    char *big = malloc(KG_CREDENTIAL_MAX + 2);
    kg_config_t *cfg;

    ck_assert_ptr_nonnull(big);
    pt_tmpdir(dir);
    /* Exactly KG_CREDENTIAL_MAX bytes, plus a newline: good. */
    memset(big, 'k', KG_CREDENTIAL_MAX);
    big[KG_CREDENTIAL_MAX] = '\n';
    big[KG_CREDENTIAL_MAX + 1] = '\0';
    pt_write(pt_join(key, dir, "p.key"), big, 0600);
    cfg = pt_good(dir, PT_P "api_key_file = p.key\n");
    ck_assert_uint_eq(cfg->providers[0].credential_len, KG_CREDENTIAL_MAX);
    kg_config_free(&cfg);
    /* One byte more: refused. */
    big[KG_CREDENTIAL_MAX] = 'k';
    pt_write(key, big, 0600);
    pt_bad(dir, PT_P "api_key_file = p.key\n", 4, "[provider p] api_key_file",
           "longer than 4096 bytes");
    /* A directory, a symbolic link to a good file, an absolute path. */
    pt_bad(dir, PT_P "api_key_file = .\n", 4, "[provider p] api_key_file",
           "not a regular file");
    pt_write(key, "sk-linked\n", 0600);
    ck_assert(symlink("p.key", pt_join(key, dir, "link.key")) == 0);
    cfg = pt_good(dir, PT_P "api_key_file = link.key\n");
    ck_assert_str_eq(cfg->providers[0].credential, "sk-linked");
    kg_config_free(&cfg);
    /* The environment: the same bound. */
    big[KG_CREDENTIAL_MAX] = '\0';
    ck_assert(setenv("PT_BIG", big, 1) == 0);
    cfg = pt_good(dir, PT_P "api_key_env = PT_BIG\n");
    ck_assert_uint_eq(cfg->providers[0].credential_len, KG_CREDENTIAL_MAX);
    kg_config_free(&cfg);
    big[KG_CREDENTIAL_MAX] = 'k';
    big[KG_CREDENTIAL_MAX + 1] = '\0';
    ck_assert(setenv("PT_BIG", big, 1) == 0);
    pt_bad(dir, PT_P "api_key_env = PT_BIG\n", 4, "[provider p] api_key_env",
           "longer than 4096 bytes");
    free(big);
    pt_rmdir(dir);
}
END_TEST

/* Messages about a credential name its source, never its value. */
START_TEST(test_credential_never_in_messages)
{
    kg_diag_t diag = {{0}};
    const char *cred = NULL;
    size_t len = 99;

    ck_assert(setenv("PT_CANARY_VAR", "sk-CANARY with space", 1) == 0);
    ck_assert_int_eq(
        kg_providers_credential_from_env("PT_CANARY_VAR", &cred, &len, &diag),
        KG_ERR_CONFIG);
    ck_assert_ptr_null(cred);
    ck_assert_uint_eq(len, 0);
    ck_assert_ptr_nonnull(strstr(diag.msg, "PT_CANARY_VAR"));
    ck_assert_ptr_null(strstr(diag.msg, "sk-"));
    ck_assert(setenv("PT_CANARY_VAR", "sk-" PT_CANARY, 1) == 0);
    ck_assert_int_eq(
        kg_providers_credential_from_env("PT_CANARY_VAR", &cred, &len, &diag),
        KG_OK);
    ck_assert_uint_eq(len, strlen("sk-" PT_CANARY));
    ck_assert_int_eq(sodium_memcmp(cred, "sk-" PT_CANARY, len), 0);
    kg_providers_credential_free(&cred);
    ck_assert_ptr_null(cred);
    kg_providers_credential_free(&cred); /* twice is harmless */
    kg_providers_credential_free(NULL);
}
END_TEST

typedef struct pt_url_row {
    const char *in;
    const char *out; /* NULL: refused */
} pt_url_row_t;

static const pt_url_row_t pt_url_rows[] = {
    {"https://api.openai.com/v1", "https://api.openai.com/v1"},
    {"https://api.openai.com/v1/", "https://api.openai.com/v1"},
    {"HTTP://h:8080/v1//", "http://h:8080/v1"},
    {"Https://H/V1", "https://H/V1"},
    {"http://[::1]:9/v1", "http://[::1]:9/v1"},
    {"http://10.0.0.1/v1", "http://10.0.0.1/v1"},
    {"https://generativelanguage.googleapis.com/v1beta/openai",
     "https://generativelanguage.googleapis.com/v1beta/openai"},
    {"https://h/a%20b/v1", "https://h/a%20b/v1"},
    {"https://h", NULL},
    {"https://h/", NULL},
    {"https://h:443", NULL},
    {"http:/h/v1", NULL},
    {"h/v1", NULL},
    {"", NULL},
    {"https://u@h/v1", NULL},
    {"https://h/v1?", NULL},
    {"https://h/v1#", NULL},
    {"https://[::1/v1", NULL},
    {"https://[::1]x/v1", NULL},
    {"https://h:123456/v1", NULL},
    {"https://h/v1\\x", NULL},
    {"https://h/v1\"", NULL},
};

START_TEST(test_base_url_parse)
{
    const pt_url_row_t *row = &pt_url_rows[_i];
    kg_diag_t diag = {{0}};
    char *out = (char *)"sentinel";
    kg_err_t rc = kg_providers_base_url_parse(row->in, &out, &diag);

    if (row->out == NULL) {
        ck_assert_msg(rc == KG_ERR_INVAL, "'%s' accepted", row->in);
        ck_assert_ptr_null(out);
        ck_assert(diag.msg[0] != '\0');
    } else {
        ck_assert_msg(rc == KG_OK, "'%s': %s", row->in, diag.msg);
        ck_assert_str_eq(out, row->out);
        free(out);
    }
}
END_TEST

START_TEST(test_base_url_too_long)
{
    char url[KG_BASE_URL_MAX + 16];
    kg_diag_t diag = {{0}};
    char *out = NULL;

    memset(url, 'a', sizeof(url) - 1);
    url[sizeof(url) - 1] = '\0';
    memcpy(url, "https://h/", 10);
    ck_assert_int_eq(kg_providers_base_url_parse(url, &out, &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_null(out);
    url[KG_BASE_URL_MAX] = '\0';
    ck_assert_int_eq(kg_providers_base_url_parse(url, &out, &diag), KG_OK);
    ck_assert_uint_eq(strlen(out), KG_BASE_URL_MAX);
    free(out);
}
END_TEST

START_TEST(test_upstream_url)
{
    kg_provider_t p;
    char buf[128];
    char small[20];

    memset(&p, 0, sizeof(p));
    p.base_url = (char *)"https://api.openai.com/v1";
    ck_assert_int_eq(
        kg_providers_upstream_url(&p, "/v1/chat/completions", buf, sizeof(buf)),
        KG_OK);
    ck_assert_str_eq(buf, "https://api.openai.com/v1/chat/completions");
    ck_assert_int_eq(kg_providers_upstream_url(&p, "/v1", buf, sizeof(buf)),
                     KG_OK);
    ck_assert_str_eq(buf, "https://api.openai.com/v1");
    p.base_url = (char *)"https://api.anthropic.com/v1";
    ck_assert_int_eq(
        kg_providers_upstream_url(&p, "/v1/messages", buf, sizeof(buf)), KG_OK);
    ck_assert_str_eq(buf, "https://api.anthropic.com/v1/messages");
    p.base_url = (char *)"https://g.example/v1beta/openai";
    ck_assert_int_eq(
        kg_providers_upstream_url(&p, "/v1/models", buf, sizeof(buf)), KG_OK);
    ck_assert_str_eq(buf, "https://g.example/v1beta/openai/models");
    ck_assert_int_eq(
        kg_providers_upstream_url(&p, "/v2/models", buf, sizeof(buf)),
        KG_ERR_INVAL);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(
        kg_providers_upstream_url(&p, "/v1models", buf, sizeof(buf)),
        KG_ERR_INVAL);
    ck_assert_int_eq(kg_providers_upstream_url(&p, "", buf, sizeof(buf)),
                     KG_ERR_INVAL);
    ck_assert_int_eq(
        kg_providers_upstream_url(&p, "/v1/models", small, sizeof(small)),
        KG_ERR_INVAL);
    ck_assert_str_eq(small, "");
    ck_assert_int_eq(kg_providers_upstream_url(&p, "/v1", buf, 0),
                     KG_ERR_INVAL);
}
END_TEST

START_TEST(test_names_and_types)
{
    kg_provider_type_t t = KG_PROVIDER_ANTHROPIC;
    char name[KG_MODEL_NAME_MAX + 2];

    ck_assert_str_eq(kg_provider_type_name(KG_PROVIDER_OPENAI), "openai");
    ck_assert_str_eq(kg_provider_type_name(KG_PROVIDER_ANTHROPIC), "anthropic");
    ck_assert_str_eq(kg_provider_type_name((kg_provider_type_t)42), "unknown");
    ck_assert(kg_provider_type_parse("openai", &t));
    ck_assert_int_eq(t, KG_PROVIDER_OPENAI);
    ck_assert(kg_provider_type_parse("anthropic", &t));
    ck_assert_int_eq(t, KG_PROVIDER_ANTHROPIC);
    ck_assert(!kg_provider_type_parse("Anthropic", &t));
    ck_assert(!kg_provider_type_parse("", &t));

    ck_assert_str_eq(kg_http_version_name(KG_HTTP_VERSION_AUTO), "auto");
    ck_assert_str_eq(kg_http_version_name(KG_HTTP_VERSION_1_1), "1.1");
    ck_assert_str_eq(kg_http_version_name(KG_HTTP_VERSION_2), "2");
    ck_assert_str_eq(kg_http_version_name(KG_HTTP_VERSION_2_PRIOR_KNOWLEDGE),
                     "2-prior-knowledge");
    ck_assert_str_eq(kg_http_version_name((kg_http_version_t)42), "unknown");
    for (int v = KG_HTTP_VERSION_AUTO; v <= KG_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
         v++) {
        kg_http_version_t got = (kg_http_version_t)(v == 0 ? 1 : 0);

        ck_assert(kg_http_version_parse(
            kg_http_version_name((kg_http_version_t)v), &got));
        ck_assert_int_eq(got, v);
    }
    {
        kg_http_version_t hv = KG_HTTP_VERSION_1_1;

        ck_assert(!kg_http_version_parse("", &hv));
        ck_assert(!kg_http_version_parse("2.0", &hv));
        ck_assert(!kg_http_version_parse("1.1 ", &hv));
        ck_assert(!kg_http_version_parse("2-prior", &hv));
        ck_assert(!kg_http_version_parse("unknown", &hv));
        ck_assert_int_eq(hv, KG_HTTP_VERSION_1_1); /* untouched */
    }

    ck_assert(kg_providers_name_valid("a"));
    ck_assert(kg_providers_name_valid("my_openai-2"));
    ck_assert(!kg_providers_name_valid(""));
    ck_assert(!kg_providers_name_valid("A"));
    ck_assert(!kg_providers_name_valid("a b"));
    ck_assert(!kg_providers_name_valid("a/b"));

    ck_assert(kg_providers_model_name_valid("gpt-4o"));
    ck_assert(kg_providers_model_name_valid("org/model:tag.v1_x"));
    ck_assert(!kg_providers_model_name_valid(""));
    ck_assert(!kg_providers_model_name_valid("a b"));
    ck_assert(!kg_providers_model_name_valid("a\x7f"));
    ck_assert(!kg_providers_model_name_valid("caf\xc3\xa9"));
    memset(name, 'm', sizeof(name) - 1);
    name[KG_MODEL_NAME_MAX] = '\0';
    ck_assert(kg_providers_model_name_valid(name));
    name[KG_MODEL_NAME_MAX] = 'm';
    name[KG_MODEL_NAME_MAX + 1] = '\0';
    ck_assert(!kg_providers_model_name_valid(name));
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The docs check: every setting of the three tables is documented. */

/*
 * The text from the line after the first line that starts with header and
 * then ']' or ' ' (with one leading ';' allowed when commented is true) up
 * to the next line that starts with stop. New string, or NULL.
 */
static char *pt_block(const char *text, const char *header, const char *stop,
                      bool commented)
{
    size_t hlen = strlen(header);
    const char *p = text;
    const char *start = NULL;
    const char *end;
    char *out;

    while (p != NULL && *p != '\0') {
        const char *q = commented && *p == ';' ? p + 1 : p;

        if (strncmp(q, header, hlen) == 0 &&
            (q[hlen] == ']' || q[hlen] == ' ')) {
            start = strchr(p, '\n');
            start = start != NULL ? start + 1 : p + strlen(p);
            break;
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    if (start == NULL) {
        return NULL;
    }
    end = start;
    while (*end != '\0' && strncmp(end, stop, strlen(stop)) != 0) {
        end = strchr(end, '\n');
        end = end != NULL ? end + 1 : start + strlen(start);
    }
    out = malloc((size_t)(end - start) + 1);
    ck_assert_ptr_nonnull(out);
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
    return out;
}

/* Whether some line of block is "name = ..." (or ";name =", "; name ="). */
static bool pt_ini_has(const char *block, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = block; p != NULL && *p != '\0';) {
        const char *q = *p == ';' ? p + 1 : p;

        while (*q == ' ') {
            q++;
        }
        if (strncmp(q, name, n) == 0) {
            q += n;
            while (*q == ' ') {
                q++;
            }
            if (*q == '=') {
                return true;
            }
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : NULL;
    }
    return false;
}

static void pt_docs_check(const kg_setting_t *table, size_t count,
                          const char *md, const char *ini, bool dynamic)
{
    ck_assert_uint_gt(count, 0);
    for (size_t i = 0; i < count; i++) {
        char header[64];
        char quoted[80];
        char *block;

        snprintf(header, sizeof(header), "## [%s", table[i].section);
        snprintf(quoted, sizeof(quoted), "| `%s` |", table[i].name);
        block = pt_block(md, header, "## ", false);
        ck_assert_msg(block != NULL, "docs/configuration.md has no '%s'",
                      header);
        ck_assert_msg(strstr(block, quoted) != NULL,
                      "docs/configuration.md: %s] has no row %s", header,
                      quoted);
        free(block);

        /* Provider and model sections are commented out in the example,
         * which must load as the built-in defaults. */
        snprintf(header, sizeof(header), "[%s", table[i].section);
        block = pt_block(ini, header, "[", dynamic);
        ck_assert_msg(block != NULL, "config/keygate.ini.example has no '%s%s'",
                      dynamic ? ";" : "", header);
        ck_assert_msg(pt_ini_has(block, table[i].name),
                      "config/keygate.ini.example: %s] has no '%s = ...'",
                      header, table[i].name);
        free(block);
    }
}

START_TEST(test_docs_list_every_setting)
{
    char md_path[PT_PATH_MAX];
    char ini_path[PT_PATH_MAX];
    char *md;
    char *ini;
    const kg_setting_t *t;
    size_t n = 0;

    snprintf(md_path, sizeof(md_path), "%s/docs/configuration.md",
             pt_source_dir());
    snprintf(ini_path, sizeof(ini_path), "%s/config/keygate.ini.example",
             pt_source_dir());
    md = pt_read(md_path);
    ini = pt_read(ini_path);
    ck_assert_msg(md != NULL, "missing %s", md_path);
    ck_assert_msg(ini != NULL, "missing %s", ini_path);
    t = kg_config_settings(&n);
    pt_docs_check(t, n, md, ini, false);
    t = kg_config_provider_settings(&n);
    pt_docs_check(t, n, md, ini, true);
    t = kg_config_model_settings(&n);
    pt_docs_check(t, n, md, ini, true);
    free(md);
    free(ini);
}
END_TEST

/* The section tables are sane: flags, bounds, defaults within bounds. */
START_TEST(test_section_tables_sane)
{
    const kg_setting_t *tables[2];
    size_t counts[2];

    tables[0] = kg_config_provider_settings(&counts[0]);
    tables[1] = kg_config_model_settings(&counts[1]);
    for (size_t t = 0; t < 2; t++) {
        for (size_t i = 0; i < counts[t]; i++) {
            const kg_setting_t *s = &tables[t][i];

            ck_assert_str_eq(s->section, t == 0 ? "provider" : "model");
            ck_assert_ptr_nonnull(s->help);
            ck_assert_msg(!(s->flags & KG_SETTING_RESTART) !=
                              !(s->flags & KG_SETTING_RELOADABLE),
                          "[%s] %s: one of RESTART, RELOADABLE", s->section,
                          s->name);
            ck_assert_msg(!((s->flags & KG_SETTING_REQUIRED) && s->def),
                          "[%s] %s: required with a default", s->section,
                          s->name);
            ck_assert(s->min <= s->max);
            for (size_t j = 0; j < i; j++) {
                ck_assert_str_ne(s->name, tables[t][j].name);
            }
        }
    }
}
END_TEST

/* The example's commented provider and model sections, uncommented, load. */
START_TEST(test_example_sections_load)
{
    char ini_path[PT_PATH_MAX];
    char dir[PT_PATH_MAX];
    char *ini;
    char *out;
    size_t o = 0;
    kg_config_t *cfg;
    kg_diag_t diag = {{0}};
    const kg_provider_t *p;
    const kg_model_t *m;

    snprintf(ini_path, sizeof(ini_path), "%s/config/keygate.ini.example",
             pt_source_dir());
    ini = pt_read(ini_path);
    ck_assert_msg(ini != NULL, "missing %s", ini_path);
    /* As it is: no provider, no model. */
    ck_assert_msg(kg_config_load(ini_path, &cfg, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_uint_eq(cfg->nproviders, 0);
    ck_assert_uint_eq(cfg->nmodels, 0);
    kg_config_free(&cfg);
    /* Remove the ';' of lines that start with ';' and no space. */
    out = malloc(strlen(ini) + 1);
    ck_assert_ptr_nonnull(out);
    for (const char *c = ini; *c != '\0'; c++) {
        bool bol = c == ini || c[-1] == '\n';

        if (bol && c[0] == ';' && c[1] != ' ' && c[1] != ';' && c[1] != '\n' &&
            c[1] != '\0') {
            continue;
        }
        out[o++] = *c;
    }
    out[o] = '\0';
    free(ini);
    ck_assert(setenv("OPENAI_API_KEY", "sk-openai-test", 1) == 0);
    ck_assert(setenv("ANTHROPIC_API_KEY", "sk-ant-test", 1) == 0);
    pt_tmpdir(dir);
    cfg = pt_good(dir, out);
    free(out);
    ck_assert_uint_ge(cfg->nproviders, 2);
    ck_assert_uint_ge(cfg->nmodels, 3);
    m = kg_providers_route(cfg, "openai/gpt-4o", &diag);
    ck_assert_msg(m != NULL, "%s", diag.msg);
    ck_assert_str_eq(m->name, "gpt-4o");
    ck_assert_str_eq(m->provider->credential, "sk-openai-test");
    p = kg_providers_find(cfg, "anthropic");
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p->base_url, "https://api.anthropic.com/v1");
    ck_assert_str_eq(p->credential, "sk-ant-test");
    m = kg_providers_route(cfg, "anthropic/claude-3-5-haiku", &diag);
    ck_assert_msg(m != NULL, "%s", diag.msg);
    ck_assert_str_ne(m->upstream, m->name);
    kg_config_free(&cfg);
    pt_rmdir(dir);
}
END_TEST

static Suite *providers_suite(void)
{
    Suite *s = suite_create("providers");
    TCase *tc = tcase_create("providers");

    tcase_add_test(tc, test_fixed_defaults);
    tcase_add_test(tc, test_fixed_every_setting);
    tcase_add_loop_test(tc, test_fixed_good_values, 0,
                        (int)PT_NROWS(pt_good_values));
    tcase_add_loop_test(tc, test_fixed_bad_values, 0,
                        (int)PT_NROWS(pt_bad_values));
    tcase_add_test(tc, test_listen_parse);
    tcase_add_test(tc, test_fixed_json);
    tcase_add_test(tc, test_fixed_defaults_round_trip);
    tcase_add_test(tc, test_providers_good_file);
    tcase_add_test(tc, test_providers_json_redacted);
    tcase_add_loop_test(tc, test_route, 0, (int)PT_NROWS(pt_routes));
    tcase_add_test(tc, test_route_bounds);
    tcase_add_test(tc, test_route_many);
    tcase_add_test(tc, test_long_model_names);
    tcase_add_loop_test(tc, test_providers_good_texts, 0,
                        (int)PT_NROWS(pt_good_texts));
    tcase_add_loop_test(tc, test_providers_bad, 0, (int)PT_NROWS(pt_bad_rows));
    tcase_add_loop_test(tc, test_credential_file, 0,
                        (int)PT_NROWS(pt_file_rows));
    tcase_add_test(tc, test_credential_file_bounds);
    tcase_add_test(tc, test_credential_never_in_messages);
    tcase_add_loop_test(tc, test_base_url_parse, 0, (int)PT_NROWS(pt_url_rows));
    tcase_add_test(tc, test_base_url_too_long);
    tcase_add_test(tc, test_upstream_url);
    tcase_add_test(tc, test_names_and_types);
    tcase_add_test(tc, test_docs_list_every_setting);
    tcase_add_test(tc, test_section_tables_sane);
    tcase_add_test(tc, test_example_sections_load);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (sodium_init() < 0) {
        return 1;
    }
    snprintf(pt_base, sizeof(pt_base), "/tmp/kg-providers-XXXXXX");
    if (mkdtemp(pt_base) == NULL) {
        return 1;
    }
    sr = srunner_create(providers_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    pt_rmdir(pt_base);
    return failed == 0 ? 0 : 1;
}
