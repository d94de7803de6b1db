/* A shared fixture for the gateway tests: mock, daemon, HTTP, store. */
#ifndef KEYGATE_GATEWAY_FIXTURE_H
#define KEYGATE_GATEWAY_FIXTURE_H

#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

/* The provider's pool credential: given to keygate only, never the mock. */
#define GWF_PROVIDER_ENV    "KG_TEST_PROVIDER_KEY"
#define GWF_PROVIDER_CANARY "sk-kgtest-PROVIDER-CANARY-7f3a9c1e5b2d40864e1a"

/* Prices of the configured models in micro-USD per 1M tokens. */
#define GWF_GPT_IN       2500000  /* gpt-4o: 2.50 */
#define GWF_GPT_OUT      10000000 /* gpt-4o: 10.00 */
#define GWF_CLAUDE_IN    3000000  /* claude-3-5-sonnet: 3.00 */
#define GWF_CLAUDE_OUT   15000000 /* claude-3-5-sonnet: 15.00 */
#define GWF_EMBED_IN     20000    /* text-embedding-3-small: 0.02 */
#define GWF_N_MODELS     6        /* models in every configuration */
#define GWF_TOKEN_MAX    96
#define GWF_ID_MAX       16
#define GWF_MARKER_MAX   48
#define GWF_REQID_MAX    64
#define GWF_HTTP_TIMEOUT 15000 /* ms, default for one request */
#define GWF_ENV_MAX      256   /* one "NAME=value" environment entry */

/* The exact bodies of the spec's 401 answers (docs/api.md). */
#define GWF_MSG_NO_KEY                                                    \
    "Unauthorized: No API key provided. Expected 'Authorization: Bearer " \
    "your-api-token' header or 'x-api-key: your-api-token' header"
#define GWF_MSG_INVALID                                                    \
    "Unauthorized: Invalid keygate API token. Please make sure the token " \
    "is not deleted or disabled."
#define GWF_MSG_EXPIRED "Unauthorized: keygate API key has expired."

/* A key made with the CLI. */
typedef struct gwf_key {
    char token[GWF_TOKEN_MAX];
    char id[GWF_ID_MAX];
    char display[GWF_TOKEN_MAX];
} gwf_key_t;

/* One test world: its directory, mocks, daemon and store. */
typedef struct gwf {
    char *dir; /* owned */
    char cfg[PATH_MAX];
    char db[PATH_MAX];
    char mock_log[PATH_MAX];
    char aux_log[PATH_MAX];
    char gw_out[PATH_MAX];
    char gw_err[PATH_MAX];
    char gw_port_file[PATH_MAX];
    char admin_port_file[PATH_MAX];
    const char *admin_extra; /* more [admin] lines for gwf_config, or NULL */
    const char *log_extra;   /* more [log] lines for gwf_config, or NULL */
    kg_harness_proc_t mock;
    kg_harness_proc_t aux; /* a second mock, only when asked for */
    kg_harness_proc_t gw;
    int mock_port;
    int aux_port;
    int dead_port; /* a loopback port nobody listens on */
    int gw_port;
    int admin_port; /* the admin listener's (gwf_start) */
    pid_t gw_pid;   /* kept for forked test processes */
    int starts;     /* daemon starts so far */
    /* "NAME=value" given to keygate's processes too (gwf_init_keyed). */
    char extra_env[GWF_ENV_MAX];
} gwf_t;

/* A response read with libcurl. */
typedef struct gwf_resp {
    long status;
    int curl_rc; /* CURLcode */
    char *headers;
    size_t headers_len;
    char *body;
    size_t body_len;
    char request_id[GWF_REQID_MAX];
    double seconds;
} gwf_resp_t;

/* One usage_events row. */
typedef struct gwf_usage {
    char key_id[GWF_ID_MAX];
    char operation[32];
    char model[64];
    int status;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cost;
    int streamed;
    bool has_error;
    char error_code[64];
} gwf_usage_t;

/* A growable byte buffer for raw sockets. */
typedef struct gwf_buf {
    char *data;
    size_t len;
    size_t cap;
} gwf_buf_t;

/* ---- process-wide ------------------------------------------------------ */

/* Once per test program, before any fork: curl, libsodium. */
void gwf_global_init(void);
void gwf_global_cleanup(void);

/*
 * The main() of a gateway test program: global set-up, run suite s (taken
 * over), clean-up. Returns the process exit status.
 */
int gwf_run_suite(Suite *s);

/*
 * The root directory of a test case (made in an unchecked fixture, in the
 * parent process). Every process the fixture starts is noted under it, so
 * gwf_root_free() can end what a failed (forked) test left running.
 */
void gwf_root_new(const char *tag);
void gwf_root_free(void);

/* ---- one world --------------------------------------------------------- */

/* A directory under the root, the mock (and an aux mock) running. */
void gwf_init(gwf_t *f, bool aux);

/*
 * gwf_init without an aux mock; instead the aux mock checks a provider key
 * as a real provider does (keygate-mock --require-key-env env_name, 401
 * without it), and env_name=key is in the environment of every keygate
 * process of the world from then on (CLI and daemon), as an operator's
 * exported OPENAI_API_KEY would be.
 */
void gwf_init_keyed(gwf_t *f, const char *env_name, const char *key);

/*
 * Write the configuration: the fixed providers and models plus extra lines
 * for [server] and [upstream] (each may be NULL) and extra sections.
 */
void gwf_config(gwf_t *f, const char *server, const char *upstream,
                const char *extra);

/*
 * Append the NULL-terminated arguments of ap to argv after its first n
 * entries and end it with NULL (asserted to fit KG_HARNESS_MAX_ARGS).
 */
void gwf_args_append(const char **argv, size_t n, va_list ap);

/* keygate -c CFG ARGS... NULL, with the provider credential in the
 * environment; returns the exit code (res holds the outputs). */
__attribute__((sentinel)) int gwf_kg(gwf_t *f, kg_harness_result_t *res,
                                     const char *first, ...);

/* keygate init, asserted; the default workspace in credits mode with
 * 1000 USD, so that the pool credentials of the configuration are used. */
void gwf_init_store(gwf_t *f);

/* keygate --json keys create --name NAME ARGS... NULL, asserted. */
__attribute__((sentinel)) void gwf_key_create(gwf_t *f, gwf_key_t *k,
                                              const char *name, ...);

/* Start keygate serve and wait for its port (asserted). */
void gwf_start(gwf_t *f);

/* SIGTERM, wait up to term_ms; returns the exit status (-1: not reaped). */
int gwf_stop(gwf_t *f, int term_ms);

/*
 * For a teardown: SIGTERM the daemon and report (stderr) unless it exits 0
 * on its own within 15 s. Returns whether it did; the caller frees the
 * world and then asserts, so that nothing is left behind.
 */
bool gwf_stop_checked(gwf_t *f);

/* SIGKILL the daemon and reap it. */
void gwf_kill9(gwf_t *f);

/* Wait up to timeout_ms for the daemon (our child) to exit on its own;
 * returns its status, or -1 when it is still running. */
int gwf_wait_exit(gwf_t *f, int timeout_ms);

/* Stop everything and remove the directory. */
void gwf_free(gwf_t *f);

/* ---- HTTP with libcurl ------------------------------------------------- */

/*
 * The loopback address requests come from (NULL: the system's choice,
 * 127.0.0.1). Tests that fail authentication on purpose use their own
 * 127.0.x.y so that the per-IP throttle of failed authentications never
 * touches the other tests.
 */
extern const char *gwf_source_ip;

/*
 * method path to the daemon with extra header lines (NULL-terminated, may
 * be NULL) and a body (NULL: none). Always bounded by timeout_ms (<= 0:
 * GWF_HTTP_TIMEOUT). Returns the CURLcode; r holds what arrived.
 */
int gwf_http(const gwf_t *f, gwf_resp_t *r, const char *method,
             const char *path, const char *const *headers, const char *body,
             int timeout_ms);

/* gwf_http to the admin listener (port admin_port). */
int gwf_admin_http(const gwf_t *f, gwf_resp_t *r, const char *method,
                   const char *path, const char *const *headers,
                   const char *body, int timeout_ms);

/* POST a JSON body with one credential header line (may be NULL). */
int gwf_post(const gwf_t *f, gwf_resp_t *r, const char *path, const char *cred,
             const char *body);

/* GET with one credential header line (may be NULL). */
int gwf_get(const gwf_t *f, gwf_resp_t *r, const char *path, const char *cred);

void gwf_resp_free(gwf_resp_t *r);

/* The value of header name (case-insensitive) into buf; how many times the
 * header occurs. */
int gwf_resp_header(const gwf_resp_t *r, const char *name, char *buf,
                    size_t len);

/* The body as JSON (new reference), asserted to parse. */
json_t *gwf_resp_json(const gwf_resp_t *r);

/*
 * Assert r is keygate's error: status, the exact body shape
 * {"error":{"message","type","code"},"status","message"}, the code and,
 * if msg is not NULL, the exact message; an x-request-id; for 401 the
 * WWW-Authenticate header.
 */
void gwf_assert_error(const gwf_resp_t *r, long status, const char *code,
                      const char *msg);

/* A normal chat completion succeeds (the daemon still serves). */
void gwf_assert_serving(const gwf_t *f, const gwf_key_t *k);

/* "Authorization: Bearer <token>" into buf. */
const char *gwf_bearer(const gwf_key_t *k, char *buf, size_t len);

/* ---- raw sockets ------------------------------------------------------- */

/* A blocking TCP connection to 127.0.0.1:port, or -1. */
int gwf_connect(int port);

bool gwf_send_all(int fd, const void *data, size_t len);

/*
 * Read into b until needle occurs in it (needle NULL: until EOF), EOF or
 * timeout_ms. Returns 1 when the needle was found (or EOF with needle NULL),
 * 0 on EOF without it, -1 on timeout, -2 on a read error (a reset).
 */
int gwf_recv_until(int fd, gwf_buf_t *b, const char *needle, int timeout_ms);

/* Whether the peer closed (EOF or reset) within timeout_ms; bytes read on
 * the way are appended to b (may be NULL). */
bool gwf_wait_closed(int fd, gwf_buf_t *b, int timeout_ms);

void gwf_buf_free(gwf_buf_t *b);

/* A raw HTTP/1.1 POST of body to path with token as Bearer credential and
 * the given Content-Length; returns its length. */
int gwf_raw_post(char *buf, size_t len, const char *path, const char *token,
                 const char *body, size_t content_length);

/* The value of header name in a raw response; false when absent. */
bool gwf_raw_header(const char *resp, const char *name, char *out, size_t len);

/* Occurrences of needle in the first len bytes of hay. */
size_t gwf_count(const char *hay, size_t len, const char *needle);

/* ---- the store, logs, processes ---------------------------------------- */

/* An integer query with an optional text parameter ?1; -1 when no row. */
int64_t gwf_sql_int(const gwf_t *f, const char *sql, const char *arg);

/* A text query's first column into out; false when no row. */
bool gwf_sql_text(const gwf_t *f, const char *sql, const char *arg, char *out,
                  size_t len);

/*
 * An answer no longer waits for its usage row to be committed: once the
 * usage journal holds the event, the writer commits it within its linger
 * (5 ms) and a transaction. These helpers wait for it, bounded.
 */
#define GWF_USAGE_WAIT_MS 10000
#define GWF_SETTLE_READS  4
#define GWF_SETTLE_GAP_MS 50

/* The usage row of request_id as the store has it now; false: none yet. */
bool gwf_usage_now(const gwf_t *f, const char *request_id, gwf_usage_t *u);

/* Poll for the usage row up to timeout_ms. */
bool gwf_usage_wait(const gwf_t *f, const char *request_id, gwf_usage_t *u,
                    int timeout_ms);

/* The usage row of request_id, waiting up to GWF_USAGE_WAIT_MS for it. */
bool gwf_usage(const gwf_t *f, const char *request_id, gwf_usage_t *u);

/*
 * The number of usage rows once it has stopped moving (the same in
 * GWF_SETTLE_READS reads GWF_SETTLE_GAP_MS apart; at most 10 s): for
 * checks that nothing was recorded. Prefer waiting for a known row.
 */
int64_t gwf_usage_settled(const gwf_t *f);

/* A new unique marker to put in a request body. */
void gwf_marker(char *buf, size_t len);

/* Lines of the log file that contain needle. */
int gwf_log_count(const char *path, const char *needle);

/* The mock's request line that contains needle (new reference) or NULL. */
json_t *gwf_log_request(const char *path, const char *needle);

/* The reason of the mock's stream_end line for request number n, polled up
 * to timeout_ms; false when none. */
bool gwf_log_stream_end(const char *path, json_int_t n, char *reason,
                        size_t len, int timeout_ms);

/* Whether the process runs (not a zombie). */
bool gwf_pid_alive(pid_t pid);

/* VmRSS in kB, or -1. */
long gwf_rss_kb(pid_t pid);

/* Open file descriptors of pid, or -1. */
int gwf_fd_count(pid_t pid);

/* Established TCP connections with port at either end (IPv4 loopback). */
int gwf_tcp_established(int port);

/* Assert that the file does not contain needle. */
void gwf_assert_absent(const char *path, const char *needle, const char *what);

int64_t gwf_now_ms(void);
void gwf_sleep_ms(int ms);

/* The access key ("kg_<id>") and secret key of a token. */
void gwf_split(const char *token, char *access, size_t alen, char *secret,
               size_t slen);

/* "Basic base64(access:secret)" of a token into buf. */
const char *gwf_basic(const char *token, char *buf, size_t len);

/* A well-formed token (valid checksum) with a fresh id, or with the given
 * id and a fresh secret when id is not NULL. */
void gwf_fake_token(const char *id, char *buf, size_t len);

/* ---- appended helpers -------------------------------------------------- */

/* Run one statement with an optional text parameter ?1 (asserted);
 * returns the number of rows it changed. */
int gwf_sql_exec(const gwf_t *f, const char *sql, const char *arg);

/* At most this many extra environment entries for gwf_start_env. */
#define GWF_START_ENV_MAX 4

/* gwf_start with extra "NAME=value" entries (NULL-terminated, at most
 * GWF_START_ENV_MAX; NULL: none) in the daemon's environment. */
void gwf_start_env(gwf_t *f, const char *const *extra);

/* ---- reloads and logs ------------------------------------------------- */

/* Room for an admin token ("kgadm_..."). */
#define GWF_ADMIN_TOKEN_MAX 96

/* keygate --json admin-tokens create --name NAME (read-write), asserted;
 * the token into buf (GWF_ADMIN_TOKEN_MAX). */
void gwf_admin_token(gwf_t *f, const char *name, char *buf, size_t len);

/* The configuration generation the admin listener's /readyz reports, or
 * -1 when it cannot be read. */
json_int_t gwf_generation(const gwf_t *f);

/* Poll gwf_generation up to timeout_ms until it is n. */
bool gwf_wait_generation(const gwf_t *f, json_int_t n, int timeout_ms);

/* Replace the first occurrence of from in the world's configuration file
 * with to (asserted to occur): for settings gwf_config writes itself. */
void gwf_config_replace(const gwf_t *f, const char *from, const char *to);

/* Poll up to timeout_ms until a line of the file at path contains needle. */
bool gwf_log_wait(const char *path, const char *needle, int timeout_ms);

#endif /* KEYGATE_GATEWAY_FIXTURE_H */
