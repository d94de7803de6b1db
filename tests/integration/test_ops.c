/* Operations: sd_notify and the watchdog, backup and restore, retention. */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gateway_fixture.h"
#include "keygate/usagedb.h"

#define NOTIFY_MSG_MAX 4096
#define NOTIFY_WAIT_MS 10000
#define LOAD_MAX       400 /* requests of the load thread at most */
#define BACKUPS        3
#define OLD_EVENTS     6000 /* more than one tick of the retention prune */
#define RECENT_EVENTS  3
#define DAY_MS         (INT64_C(86400) * 1000)
#define PRUNE_WAIT_MS  20000
#define STREAM_EVENTS  30 /* at 100 ms: 3 s */
#define CHAT_BODY                                                         \
    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":" \
    "\"ops\"}]}"

static void setup_root(void)
{
    gwf_root_new("kg-ops");
}

static void teardown_root(void)
{
    gwf_root_free();
}

/* ---- the service manager's socket ---------------------------------------- */

/* A datagram socket at path that learns each sender's pid. */
static int notify_open(const char *path)
{
    struct sockaddr_un sa;
    int one = 1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)),
                     0);
    return fd;
}

/* One message within timeout_ms into msg, its sender's pid into *pid;
 * false at the timeout. */
static bool notify_recv(int fd, int timeout_ms, char *msg, size_t len,
                        pid_t *pid)
{
    struct pollfd p = {fd, POLLIN, 0};
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {msg, len - 1};
    struct msghdr mh;
    struct cmsghdr *c;
    ssize_t n;

    if (poll(&p, 1, timeout_ms) != 1) {
        return false;
    }
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof(ctl.buf);
    n = recvmsg(fd, &mh, 0);
    ck_assert_int_gt(n, 0);
    msg[n] = '\0';
    *pid = 0;
    for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred uc;

            memcpy(&uc, CMSG_DATA(c), sizeof(uc));
            *pid = uc.pid;
        }
    }
    return true;
}

/* Whether one line of msg is exactly line. */
static bool has_line(const char *msg, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = msg; p != NULL && *p != '\0';) {
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0')) {
            return true;
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return false;
}

/* What arrived while waiting for a message. */
typedef struct notify_seen {
    int watchdogs; /* WATCHDOG=1 messages */
    int others;    /* messages from another pid */
} notify_seen_t;

/*
 * Read messages until one contains needle (a substring), within
 * timeout_ms; it goes into msg. Counts the WATCHDOG=1 messages and those
 * not from pid on the way. False at the timeout.
 */
static bool notify_wait(int fd, pid_t pid, const char *needle, int timeout_ms,
                        char *msg, size_t len, notify_seen_t *seen)
{
    int64_t end = gwf_now_ms() + timeout_ms;

    for (;;) {
        int64_t left = end - gwf_now_ms();
        pid_t from = 0;

        if (left <= 0 || !notify_recv(fd, (int)left, msg, len, &from)) {
            return false;
        }
        seen->others += from != pid;
        seen->watchdogs += has_line(msg, "WATCHDOG=1");
        if (strstr(msg, needle) != NULL) {
            return true;
        }
    }
}

/* A slow stream of the world's key, open on *fd (its first event read). */
static void open_slow_stream(gwf_t *f, const gwf_key_t *k, int *fd,
                             gwf_buf_t *b)
{
    char body[256];
    char req[2048];
    int n;

    snprintf(body, sizeof(body),
             "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":"
             "\"user\",\"content\":\"slowly\"}],\"mock\":{\"events\":%d,"
             "\"interval_ms\":100}}",
             STREAM_EVENTS);
    n = gwf_raw_post(req, sizeof(req), "/v1/chat/completions", k->token, body,
                     strlen(body));
    *fd = gwf_connect(f->gw_port);
    ck_assert_int_ge(*fd, 0);
    ck_assert(gwf_send_all(*fd, req, (size_t)n));
    ck_assert_int_eq(gwf_recv_until(*fd, b, "tok1 ", 10000), 1);
}

/*
 * Under a service manager (NOTIFY_SOCKET) with a watchdog: READY=1 from
 * the daemon's pid with MAINPID and where it listens, WATCHDOG=1 every
 * half interval, STATUS= with the requests in flight, STOPPING=1 on
 * SIGTERM, the drain's progress, pings during the drain, exit 0.
 */
START_TEST(test_notify_ready_watchdog_status_stopping)
{
    char sock[PATH_MAX];
    char env_sock[PATH_MAX + 32];
    char want[256];
    char *msg = malloc(NOTIFY_MSG_MAX);
    const char *env[] = {env_sock, "WATCHDOG_USEC=1000000", NULL};
    notify_seen_t seen = {0, 0};
    gwf_buf_t b = {0};
    gwf_key_t k;
    gwf_t f;
    int nfd;
    int fd;

    ck_assert_ptr_nonnull(msg);
    gwf_init(&f, false);
    gwf_config(&f, "drain_timeout = 20s\n", NULL, NULL);
    gwf_init_store(&f);
    gwf_key_create(&f, &k, "notify", NULL);
    ck_assert(kg_harness_path(sock, sizeof(sock), f.dir, "notify.sock"));
    nfd = notify_open(sock);
    snprintf(env_sock, sizeof(env_sock), "NOTIFY_SOCKET=%s", sock);
    gwf_start_env(&f, env);

    ck_assert_msg(notify_wait(nfd, f.gw_pid, "READY=1", NOTIFY_WAIT_MS, msg,
                              NOTIFY_MSG_MAX, &seen),
                  "no READY=1");
    snprintf(want, sizeof(want), "MAINPID=%ld", (long)f.gw_pid);
    ck_assert_msg(has_line(msg, want), "READY without %s: %s", want, msg);
    snprintf(want, sizeof(want),
             "STATUS=serving on 127.0.0.1:%d, admin on 127.0.0.1:%d; "
             "configuration 1; 0 requests in flight",
             f.gw_port, f.admin_port);
    ck_assert_msg(has_line(msg, want), "READY's status: %s", msg);

    /* The watchdog: every 500 ms for a 1 s WATCHDOG_USEC. Waiting 2.5 s
     * for a message that never comes counts them. */
    seen.watchdogs = 0;
    ck_assert(!notify_wait(nfd, f.gw_pid, "no such message", 2500, msg,
                           NOTIFY_MSG_MAX, &seen));
    ck_assert_msg(seen.watchdogs >= 3 && seen.watchdogs <= 7,
                  "%d watchdog pings in 2.5 s", seen.watchdogs);

    /* A request in flight shows in the status (updated every second). */
    open_slow_stream(&f, &k, &fd, &b);
    ck_assert_msg(notify_wait(nfd, f.gw_pid, "; 1 request in flight",
                              NOTIFY_WAIT_MS, msg, NOTIFY_MSG_MAX, &seen),
                  "no status with the request in flight");

    /* SIGTERM: STOPPING=1 with the drain, then its progress, pinging on. */
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGTERM), 0);
    ck_assert_msg(notify_wait(nfd, f.gw_pid, "STOPPING=1", NOTIFY_WAIT_MS, msg,
                              NOTIFY_MSG_MAX, &seen),
                  "no STOPPING=1");
    ck_assert_msg(has_line(msg, "STATUS=stopping: draining 1 request"),
                  "STOPPING's status: %s", msg);
    seen.watchdogs = 0;
    ck_assert_msg(notify_wait(nfd, f.gw_pid,
                              "STATUS=draining: 1 request in flight",
                              NOTIFY_WAIT_MS, msg, NOTIFY_MSG_MAX, &seen),
                  "no status of the drain");
    ck_assert_int_eq(gwf_recv_until(fd, &b, "data: [DONE]", 15000), 1);
    close(fd);
    ck_assert_int_eq(gwf_wait_exit(&f, 15000), 0);
    /* Whatever came last, until the socket is quiet. */
    while (notify_wait(nfd, f.gw_pid, "no such message", 300, msg,
                       NOTIFY_MSG_MAX, &seen)) {
    }
    ck_assert_msg(seen.watchdogs >= 1, "no watchdog ping while draining");
    ck_assert_int_eq(seen.others, 0);
    close(nfd);
    gwf_buf_free(&b);
    free(msg);
    gwf_free(&f);
}
END_TEST

/*
 * The watchdog is for the process it names: with WATCHDOG_PID of another
 * process (or no WATCHDOG_USEC) keygate never pings, but still tells
 * READY and STOPPING.
 */
START_TEST(test_notify_watchdog_only_for_its_pid)
{
    char sock[PATH_MAX];
    char env_sock[PATH_MAX + 32];
    char *msg = malloc(NOTIFY_MSG_MAX);
    const char *env[] = {env_sock, "WATCHDOG_USEC=1000000", "WATCHDOG_PID=1",
                         NULL};
    notify_seen_t seen = {0, 0};
    gwf_t f;
    int nfd;

    ck_assert_ptr_nonnull(msg);
    gwf_init(&f, false);
    gwf_config(&f, NULL, NULL, NULL);
    gwf_init_store(&f);
    ck_assert(kg_harness_path(sock, sizeof(sock), f.dir, "notify.sock"));
    nfd = notify_open(sock);
    snprintf(env_sock, sizeof(env_sock), "NOTIFY_SOCKET=%s", sock);
    gwf_start_env(&f, env);
    ck_assert(notify_wait(nfd, f.gw_pid, "READY=1", NOTIFY_WAIT_MS, msg,
                          NOTIFY_MSG_MAX, &seen));
    ck_assert(!notify_wait(nfd, f.gw_pid, "WATCHDOG=1", 1500, msg,
                           NOTIFY_MSG_MAX, &seen));
    ck_assert_int_eq(seen.watchdogs, 0);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGTERM), 0);
    ck_assert(notify_wait(nfd, f.gw_pid, "STOPPING=1", NOTIFY_WAIT_MS, msg,
                          NOTIFY_MSG_MAX, &seen));
    ck_assert_int_eq(gwf_wait_exit(&f, 15000), 0);
    ck_assert_int_eq(seen.watchdogs, 0);
    ck_assert_int_eq(seen.others, 0);
    close(nfd);
    free(msg);
    gwf_free(&f);
}
END_TEST

/*
 * SIGHUP under a service manager: RELOADING=1 (with MONOTONIC_USEC) and a
 * status naming the file, then READY=1 with the configuration now in use;
 * a broken file gets RELOADING=1, then READY=1 with the refusal, and the
 * status line goes on saying so.
 */
START_TEST(test_notify_reloading)
{
    char sock[PATH_MAX];
    char env_sock[PATH_MAX + 32];
    char want[PATH_MAX + 64];
    char *msg = malloc(NOTIFY_MSG_MAX);
    const char *env[] = {env_sock, NULL};
    static const char broken[] = "[server]\nthreads = many\n";
    notify_seen_t seen = {0, 0};
    gwf_t f;
    int nfd;

    ck_assert_ptr_nonnull(msg);
    gwf_init(&f, false);
    gwf_config(&f, NULL, NULL, NULL);
    gwf_init_store(&f);
    ck_assert(kg_harness_path(sock, sizeof(sock), f.dir, "notify.sock"));
    nfd = notify_open(sock);
    snprintf(env_sock, sizeof(env_sock), "NOTIFY_SOCKET=%s", sock);
    gwf_start_env(&f, env);
    ck_assert(notify_wait(nfd, f.gw_pid, "READY=1", NOTIFY_WAIT_MS, msg,
                          NOTIFY_MSG_MAX, &seen));

    /* A good file: reloading, then ready on configuration 2. */
    gwf_config(&f, NULL, NULL,
               "[model added]\nprovider = mock\ninput_price = 1\n"
               "output_price = 1\n");
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert_msg(notify_wait(nfd, f.gw_pid, "RELOADING=1", NOTIFY_WAIT_MS, msg,
                              NOTIFY_MSG_MAX, &seen),
                  "no RELOADING=1");
    ck_assert_msg(strstr(msg, "\nMONOTONIC_USEC=") != NULL, "%s", msg);
    snprintf(want, sizeof(want), "STATUS=reloading %s", f.cfg);
    ck_assert_msg(has_line(msg, want), "RELOADING's status: %s", msg);
    ck_assert_msg(notify_wait(nfd, f.gw_pid, "READY=1", NOTIFY_WAIT_MS, msg,
                              NOTIFY_MSG_MAX, &seen),
                  "no READY=1 after the reload");
    ck_assert_msg(strstr(msg, "; configuration 2; ") != NULL, "%s", msg);

    /* A broken file: reloading, then ready again, on configuration 2. */
    ck_assert_int_eq(
        kg_harness_write_file(f.cfg, broken, sizeof(broken) - 1, 0644), 0);
    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGHUP), 0);
    ck_assert(notify_wait(nfd, f.gw_pid, "RELOADING=1", NOTIFY_WAIT_MS, msg,
                          NOTIFY_MSG_MAX, &seen));
    ck_assert_msg(notify_wait(nfd, f.gw_pid, "READY=1", NOTIFY_WAIT_MS, msg,
                              NOTIFY_MSG_MAX, &seen),
                  "no READY=1 after a refused reload");
    ck_assert_msg(
        strstr(msg, "STATUS=reload refused, keeping configuration 2: ") != NULL,
        "%s", msg);
    ck_assert_msg(strstr(msg, "threads") != NULL, "the reason: %s", msg);
    ck_assert_msg(notify_wait(nfd, f.gw_pid,
                              "; configuration 2 (the last reload was "
                              "refused); 0 requests in flight",
                              NOTIFY_WAIT_MS, msg, NOTIFY_MSG_MAX, &seen),
                  "the status line does not say the reload was refused");

    ck_assert_int_eq(kg_harness_proc_signal(&f.gw, SIGTERM), 0);
    ck_assert(notify_wait(nfd, f.gw_pid, "STOPPING=1", NOTIFY_WAIT_MS, msg,
                          NOTIFY_MSG_MAX, &seen));
    ck_assert_int_eq(gwf_wait_exit(&f, 15000), 0);
    ck_assert_int_eq(seen.others, 0);
    close(nfd);
    free(msg);
    gwf_free(&f);
}
END_TEST

/* ---- backup and restore -------------------------------------------------- */

/* Requests from another thread while backups are taken. */
typedef struct load {
    const gwf_t *f;
    const gwf_key_t *k;
    atomic_bool stop;
    int ok;
    int sent;
} load_t;

static void *load_main(void *arg)
{
    load_t *l = arg;
    char cred[160];

    gwf_bearer(l->k, cred, sizeof(cred));
    while (!atomic_load(&l->stop) && l->sent < LOAD_MAX) {
        gwf_resp_t r;

        gwf_post(l->f, &r, "/v1/chat/completions", cred, CHAT_BODY);
        l->sent++;
        l->ok += r.status == 200;
        gwf_resp_free(&r);
    }
    return NULL;
}

/* One integer from the SQLite file at path (read-only). */
static int64_t file_sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK,
                  "%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* PRAGMA integrity_check of the file at path is "ok". */
static void assert_intact(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* keygate --json ARGS... (asserted exit 0), its output as JSON (new). */
#define KG_JSON(f, ...) kg_json((f), __VA_ARGS__, NULL)
__attribute__((sentinel)) static json_t *kg_json(gwf_t *f, const char *first,
                                                 ...)
{
    const char *argv[8] = {"--json", first};
    kg_harness_result_t r = {0};
    size_t n = 2;
    va_list ap;
    json_t *j;
    int rc;

    va_start(ap, first);
    for (const char *a = va_arg(ap, const char *); a != NULL;
         a = va_arg(ap, const char *)) {
        ck_assert_uint_lt(n, 7);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    rc = gwf_kg(f, &r, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5],
                argv[6], NULL);
    ck_assert_msg(rc == 0, "keygate %s %s: exit %d: %s", first, argv[2], rc,
                  r.err);
    j = json_loads(r.out, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", r.out);
    kg_harness_result_free(&r);
    return j;
}

/* totals.requests of 'keygate usage --key ID --from 365d'. */
static json_int_t usage_requests(gwf_t *f, const char *key_id)
{
    json_t *j = KG_JSON(f, "usage", "--key", key_id, "--from", "365d");
    json_int_t n = json_integer_value(
        json_object_get(json_object_get(j, "totals"), "requests"));

    json_decref(j);
    return n;
}

/* Copy src to dst with mode 0600. */
static void copy_file(const char *src, const char *dst)
{
    char *data = NULL;
    size_t len = 0;

    ck_assert_int_eq(kg_harness_read_file(src, &data, &len), 0);
    ck_assert_int_eq(kg_harness_write_file(dst, data, len, 0600), 0);
    free(data);
}

/*
 * keygate store backup while the daemon serves a steady load: each backup
 * is a complete, consistent store (integrity ok; the rollup sums every
 * event it holds: one snapshot, not a mix of before and after a batch),
 * mode 0600, recorded for store status. Then the procedure of
 * docs/operations.md: a fresh directory with the backup and the two key
 * files, a daemon on it, and the key verifies with its usage there.
 */
START_TEST(test_backup_while_serving_then_restore)
{
    char path[BACKUPS][PATH_MAX];
    char state[PATH_MAX];
    char src[PATH_MAX];
    char dst[PATH_MAX];
    char cred[160];
    int64_t events = 0;
    pthread_t th;
    load_t load;
    gwf_key_t k;
    json_t *j;
    gwf_t f;
    gwf_t g;

    gwf_init(&f, false);
    gwf_config(&f, NULL, NULL, NULL);
    gwf_init_store(&f);
    gwf_key_create(&f, &k, "backed-up", NULL);
    gwf_start(&f);
    gwf_bearer(&k, cred, sizeof(cred));
    for (int i = 0; i < 10; i++) {
        gwf_resp_t r;

        gwf_post(&f, &r, "/v1/chat/completions", cred, CHAT_BODY);
        ck_assert_int_eq(r.status, 200);
        gwf_resp_free(&r);
    }
    memset(&load, 0, sizeof(load));
    load.f = &f;
    load.k = &k;
    ck_assert_int_eq(pthread_create(&th, NULL, load_main, &load), 0);
    for (int i = 0; i < BACKUPS; i++) {
        char name[32];
        kg_harness_result_t r = {0};
        int rc;

        snprintf(name, sizeof(name), "backup-%d.db", i);
        ck_assert(kg_harness_path(path[i], sizeof(path[i]), f.dir, name));
        rc = gwf_kg(&f, &r, "store", "backup", path[i], NULL);
        ck_assert_msg(rc == 0, "store backup: exit %d: %s", rc, r.err);
        ck_assert_ptr_nonnull(strstr(r.out, "hash key:"));
        kg_harness_result_free(&r);
        gwf_sleep_ms(200);
    }
    atomic_store(&load.stop, true);
    pthread_join(th, NULL);
    ck_assert_int_gt(load.ok, 0);
    ck_assert_int_eq(load.ok, load.sent);
    for (int i = 0; i < BACKUPS; i++) {
        assert_intact(path[i]);
        ck_assert_int_eq(kg_harness_file_mode(path[i]), 0600);
        events = file_sql_int(path[i], "SELECT count(*) FROM usage_events");
        ck_assert_int_ge(events, 10);
        ck_assert_int_eq(
            file_sql_int(path[i], "SELECT sum(requests) FROM usage_rollup"),
            events);
        ck_assert_int_eq(file_sql_int(path[i], "PRAGMA user_version"),
                         gwf_sql_int(&f, "PRAGMA user_version", NULL));
    }
    j = KG_JSON(&f, "store", "status");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(j, "lastBackup"), "path")),
                     path[BACKUPS - 1]);
    ck_assert_int_eq(
        json_integer_value(
            json_object_get(json_object_get(j, "lastBackup"), "bytes")),
        (json_int_t)file_sql_int(path[BACKUPS - 1], "PRAGMA page_count") *
            file_sql_int(path[BACKUPS - 1], "PRAGMA page_size"));
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(j, "rows"), "store_backups")),
                     BACKUPS);
    json_decref(j);
    ck_assert_int_eq(gwf_stop(&f, 15000), 0);

    /* Restore the last backup into a fresh world: stop, copy, start. */
    gwf_init(&g, false);
    gwf_config(&g, NULL, NULL, NULL);
    ck_assert(kg_harness_path(state, sizeof(state), g.dir, "state"));
    ck_assert_int_eq(mkdir(state, 0700), 0);
    copy_file(path[BACKUPS - 1], g.db);
    for (int i = 0; i < 2; i++) {
        const char *key = i == 0 ? "state/hash.key" : "state/secret.key";

        ck_assert(kg_harness_path(src, sizeof(src), f.dir, key));
        ck_assert(kg_harness_path(dst, sizeof(dst), g.dir, key));
        copy_file(src, dst);
    }
    gwf_start(&g);
    ck_assert_int_eq(usage_requests(&g, k.id), (json_int_t)events);
    gwf_assert_serving(&g, &k);
    ck_assert_int_eq(gwf_usage_settled(&g), events + 1);
    ck_assert_int_eq(usage_requests(&g, k.id), (json_int_t)events + 1);
    ck_assert(gwf_stop_checked(&g));
    gwf_free(&g);
    gwf_free(&f);
}
END_TEST

/* Refused destinations change nothing and leave no temporary file. */
START_TEST(test_backup_refusals)
{
    char dest[PATH_MAX];
    char missing[PATH_MAX];
    kg_harness_result_t r = {0};
    gwf_t f;

    gwf_init(&f, false);
    gwf_config(&f, NULL, NULL, NULL);
    gwf_init_store(&f);
    ck_assert(kg_harness_path(dest, sizeof(dest), f.dir, "b.db"));
    ck_assert(kg_harness_path(missing, sizeof(missing), f.dir, "no/such.db"));
    ck_assert_int_eq(gwf_kg(&f, &r, "store", "backup", dest, NULL), 0);
    /* An existing file needs --force. */
    ck_assert_int_eq(gwf_kg(&f, &r, "store", "backup", dest, NULL), 1);
    ck_assert_ptr_nonnull(strstr(r.err, "--force"));
    ck_assert_int_eq(gwf_kg(&f, &r, "store", "backup", dest, "--force", NULL),
                     0);
    /* The store itself, its WAL, a directory, a missing directory. */
    ck_assert_int_eq(gwf_kg(&f, &r, "store", "backup", f.db, "--force", NULL),
                     2);
    ck_assert_ptr_nonnull(strstr(r.err, "is the store"));
    {
        char wal[PATH_MAX + 8];

        snprintf(wal, sizeof(wal), "%s-wal", f.db);
        ck_assert_int_eq(gwf_kg(&f, &r, "store", "backup", wal, NULL), 2);
    }
    ck_assert_int_eq(gwf_kg(&f, &r, "store", "backup", f.dir, NULL), 2);
    ck_assert_int_eq(gwf_kg(&f, &r, "store", "backup", missing, NULL), 2);
    ck_assert_int_eq(gwf_kg(&f, &r, "store", "backup", NULL), 2);
    ck_assert_int_eq(
        gwf_sql_int(&f, "SELECT count(*) FROM store_backups", NULL), 2);
    assert_intact(dest);
    {
        kg_harness_result_t ls = {0};
        const char *argv[] = {"ls", "-A", f.dir, NULL};
        kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 0};

        ck_assert_int_eq(kg_harness_run(&cmd, &ls), 0);
        ck_assert_msg(strstr(ls.out, ".tmp-") == NULL, "left behind: %s",
                      ls.out);
        kg_harness_result_free(&ls);
    }
    kg_harness_result_free(&r);
    gwf_free(&f);
}
END_TEST

/* ---- retention ----------------------------------------------------------- */

/*
 * n events of key at at_ms (request ids "<tag>-<i>"), and their rollup
 * row, as the usage writer would have stored them: 1000 + 2000 tokens and
 * 5 micro-USD each, 30 ms.
 */
static void insert_events(gwf_t *f, const gwf_key_t *k, const char *tag,
                          int64_t at_ms, int n)
{
    char sql[1024];
    int64_t hour = at_ms / 1000 / 3600 * 3600;

    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c "
             "WHERE i < %d) INSERT INTO usage_events (request_id, key_id, "
             "workspace_id, at_ms, operation, model, provider, mode, status, "
             "prompt_tokens, completion_tokens, cost, latency_ms) SELECT "
             "'%s-' || i, id, workspace_id, %lld, 'chat', 'gpt-4o', 'mock', "
             "'credits', 200, 1000, 2000, 5, 30 FROM c, api_keys WHERE id = ?1",
             n, tag, (long long)at_ms);
    ck_assert_int_eq(gwf_sql_exec(f, sql, k->id), n);
    snprintf(sql, sizeof(sql),
             "INSERT INTO usage_rollup (key_id, hour, model, provider, "
             "workspace_id, requests, prompt_tokens, completion_tokens, cost, "
             "latency_ms_sum, latency_ms_max, lat_50) SELECT id, %lld, "
             "'gpt-4o', 'mock', workspace_id, %d, %d, %d, %d, %d, 30, %d "
             "FROM api_keys WHERE id = ?1",
             (long long)hour, n, 1000 * n, 2000 * n, 5 * n, 30 * n, n);
    ck_assert_int_eq(gwf_sql_exec(f, sql, k->id), 1);
}

/* totals of /admin/v1/usage for the key over a year (new reference). */
static json_t *admin_totals(gwf_t *f, const char *token, const gwf_key_t *k)
{
    char auth[200];
    char path[128];
    const char *headers[] = {auth, NULL};
    gwf_resp_t r;
    json_t *j;
    json_t *t;

    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    snprintf(path, sizeof(path), "/admin/v1/usage?key=%s&from=365d", k->id);
    gwf_admin_http(f, &r, "GET", path, headers, NULL, 0);
    ck_assert_msg(r.status == 200, "%ld: %s", r.status, r.body);
    j = gwf_resp_json(&r);
    t = json_incref(json_object_get(j, "totals"));
    json_decref(j);
    gwf_resp_free(&r);
    return t;
}

/*
 * [usage] retention = 30d: the daemon deletes the events older than 30
 * days, more than one tick's worth, in the background; the newer events,
 * the rollup rows and so every usage total (CLI and admin API) stay.
 */
START_TEST(test_retention_prunes_events_keeps_totals)
{
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    char admin[256];
    json_t *cli_before;
    json_t *api_before;
    json_t *cli_after;
    json_t *api_after;
    json_t *st;
    json_t *j;
    gwf_key_t k;
    gwf_t f;
    int64_t t0;

    gwf_init(&f, false);
    gwf_config(&f, "purge_interval = 1s\n", NULL, "[usage]\nretention = 30d\n");
    gwf_init_store(&f);
    gwf_key_create(&f, &k, "old-usage", NULL);
    insert_events(&f, &k, "old", now_ms - 60 * DAY_MS, OLD_EVENTS);
    insert_events(&f, &k, "recent", now_ms - 10 * DAY_MS, RECENT_EVENTS);
    j = KG_JSON(&f, "admin-tokens", "create", "--name", "ops");
    snprintf(admin, sizeof(admin), "%s",
             json_string_value(json_object_get(j, "token")));
    json_decref(j);
    j = KG_JSON(&f, "usage", "--key", k.id, "--from", "365d");
    cli_before = json_incref(json_object_get(j, "totals"));
    json_decref(j);
    ck_assert_int_eq(
        json_integer_value(json_object_get(cli_before, "requests")),
        OLD_EVENTS + RECENT_EVENTS);

    gwf_start(&f);
    api_before = admin_totals(&f, admin, &k);
    ck_assert(json_equal(api_before, cli_before));
    t0 = gwf_now_ms();
    while (gwf_sql_int(&f,
                       "SELECT count(*) FROM usage_events WHERE "
                       "request_id LIKE 'old-%'",
                       NULL) != 0 &&
           gwf_now_ms() - t0 < PRUNE_WAIT_MS) {
        gwf_sleep_ms(100);
    }
    ck_assert_int_eq(gwf_sql_int(&f,
                                 "SELECT count(*) FROM usage_events WHERE "
                                 "request_id LIKE 'old-%'",
                                 NULL),
                     0);
    ck_assert_int_eq(gwf_sql_int(&f,
                                 "SELECT count(*) FROM usage_events WHERE "
                                 "request_id LIKE 'recent-%'",
                                 NULL),
                     RECENT_EVENTS);
    ck_assert_int_eq(
        gwf_sql_int(&f, "SELECT sum(requests) FROM usage_rollup", NULL),
        OLD_EVENTS + RECENT_EVENTS);
    /* One line for the whole round (written after its last batch). */
    t0 = gwf_now_ms();
    while (gwf_log_count(f.gw_err, "deleted 6000 usage events older than "
                                   "30d ([usage] retention") == 0 &&
           gwf_now_ms() - t0 < 5000) {
        gwf_sleep_ms(50);
    }
    ck_assert_int_eq(gwf_log_count(f.gw_err, "deleted 6000 usage events older "
                                             "than 30d ([usage] retention"),
                     1);
    j = KG_JSON(&f, "usage", "--key", k.id, "--from", "365d");
    cli_after = json_object_get(j, "totals");
    ck_assert_msg(json_equal(cli_after, cli_before), "CLI totals moved");
    api_after = admin_totals(&f, admin, &k);
    ck_assert_msg(json_equal(api_after, api_before), "API totals moved");
    json_decref(api_after);
    json_decref(j);
    /* The request history has the recent events only. */
    j = KG_JSON(&f, "usage", "events", "--key", k.id);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "events")),
                      RECENT_EVENTS);
    json_decref(j);
    st = KG_JSON(&f, "store", "status");
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(st, "rows"), "usage_events")),
                     RECENT_EVENTS);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(st, "usageEvents"), "retention")),
                     "30d");
    json_decref(st);
    /* New traffic is recorded and kept. */
    gwf_assert_serving(&f, &k);
    ck_assert_int_eq(gwf_usage_settled(&f), RECENT_EVENTS + 1);
    json_decref(cli_before);
    json_decref(api_before);
    ck_assert(gwf_stop_checked(&f));
    gwf_free(&f);
}
END_TEST

/* ---- store status: the journal's backlog --------------------------------- */

/*
 * Answers completed while another process held the store's write lock
 * are in the usage journal only; after a kill -9, store status counts
 * them as not yet in the store, and the next start stores them.
 */
START_TEST(test_status_journal_backlog)
{
    char cred[160];
    sqlite3 *lock = NULL;
    gwf_key_t k;
    json_t *st;
    json_t *jn;
    gwf_t f;

    gwf_init(&f, false);
    gwf_config(&f, NULL, NULL, "");
    gwf_init_store(&f);
    gwf_key_create(&f, &k, "backlog", NULL);
    gwf_start(&f);
    gwf_bearer(&k, cred, sizeof(cred));
    ck_assert_int_eq(sqlite3_open(f.db, &lock), SQLITE_OK);
    /* The daemon may be writing right now (its first maintenance tick):
     * wait for the lock rather than fail. */
    ck_assert_int_eq(sqlite3_busy_timeout(lock, 20000), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    for (int i = 0; i < 5; i++) {
        gwf_resp_t r;

        gwf_post(&f, &r, "/v1/chat/completions", cred, CHAT_BODY);
        ck_assert_int_eq(r.status, 200);
        gwf_resp_free(&r);
    }
    gwf_kill9(&f);
    sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(lock);
    st = KG_JSON(&f, "store", "status");
    jn = json_object_get(st, "journal");
    ck_assert_int_eq(json_integer_value(json_object_get(jn, "records")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(jn, "pending")), 5);
    ck_assert_int_gt(json_integer_value(json_object_get(jn, "bytes")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(st, "rows"), "usage_events")),
                     0);
    json_decref(st);
    gwf_start(&f); /* replays the journal */
    st = KG_JSON(&f, "store", "status");
    jn = json_object_get(st, "journal");
    ck_assert_int_eq(json_integer_value(json_object_get(jn, "pending")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(st, "rows"), "usage_events")),
                     5);
    json_decref(st);
    ck_assert(gwf_stop_checked(&f));
    gwf_free(&f);
}
END_TEST

/*
 * Back-pressure: with the usage writer stopped (another process holds the
 * store's write lock) and room for four events, four answers are
 * journaled and the fifth request is refused with 503 before anything is
 * spent; once the lock goes, each answered request has its row, the
 * refused one none, and requests are answered again.
 */
START_TEST(test_usage_queue_full_sheds)
{
    char cred[160];
    char admin[160];
    char auth[200];
    char retry[16];
    const char *hdr[] = {auth, NULL};
    sqlite3 *lock = NULL;
    gwf_resp_t r;
    gwf_key_t k;
    gwf_t f;

    gwf_init(&f, false);
    gwf_config(&f, NULL, NULL,
               "[store]\nusage_queue = 4\nbusy_timeout = 60s\n");
    gwf_init_store(&f);
    gwf_key_create(&f, &k, "shed", NULL);
    gwf_start(&f);
    gwf_bearer(&k, cred, sizeof(cred));
    gwf_admin_token(&f, "metrics", admin, sizeof(admin));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);
    ck_assert_int_eq(sqlite3_open(f.db, &lock), SQLITE_OK);
    ck_assert_int_eq(sqlite3_busy_timeout(lock, 20000), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    for (int i = 0; i < 4; i++) {
        gwf_post(&f, &r, "/v1/chat/completions", cred, CHAT_BODY);
        ck_assert_int_eq(r.status, 200);
        gwf_resp_free(&r);
    }
    gwf_post(&f, &r, "/v1/chat/completions", cred, CHAT_BODY);
    gwf_assert_error(&r, 503, "unavailable",
                     "Service unavailable: usage recording is behind; retry "
                     "later.");
    ck_assert_int_eq(gwf_resp_header(&r, "Retry-After", retry, sizeof(retry)),
                     1);
    ck_assert_str_eq(retry, "1");
    gwf_resp_free(&r);

    ck_assert_int_eq(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(lock);
    /* Bounded: 20 s for the writer's first batch to commit. */
    for (int i = 0; i < 200 && gwf_sql_int(&f,
                                           "SELECT count(*) FROM "
                                           "usage_events",
                                           NULL) < 4;
         i++) {
        gwf_sleep_ms(100);
    }
    ck_assert_int_eq(gwf_sql_int(&f, "SELECT count(*) FROM usage_events", NULL),
                     4);
    ck_assert_int_eq(gwf_sql_int(&f,
                                 "SELECT coalesce(sum(requests), 0) FROM "
                                 "usage_rollup WHERE key_id = ?",
                                 k.id),
                     4);
    /* (The admin API authenticates against the store: after the lock.) */
    gwf_admin_http(&f, &r, "GET", "/metrics", hdr, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(
        r.body, "keygate_usage_backpressure_total{action=\"shed\"} 1\n"));
    gwf_resp_free(&r);
    gwf_assert_serving(&f, &k);
    ck_assert(gwf_stop_checked(&f));
    ck_assert_int_eq(gwf_sql_int(&f, "SELECT count(*) FROM usage_events", NULL),
                     5);
    gwf_free(&f);
}
END_TEST

/*
 * Back-pressure through the daemon: with the usage writer stopped (the
 * store's write lock held elsewhere) and a batch of events waiting, the
 * next answer waits for its own commit: it does not arrive while the
 * lock is held, and the daemon answers again once it goes.
 */
START_TEST(test_backlog_answer_waits_for_commit)
{
    char cred[160];
    char admin[160];
    char auth[200];
    const char *hdr[] = {auth, NULL};
    const char *post[] = {"Content-Type: application/json", cred, NULL};
    sqlite3 *lock = NULL;
    gwf_resp_t r;
    gwf_key_t k;
    gwf_t f;

    gwf_init(&f, false);
    gwf_config(&f, NULL, NULL, "[store]\nbusy_timeout = 60s\n");
    gwf_init_store(&f);
    gwf_key_create(&f, &k, "backlog", NULL);
    gwf_start(&f);
    gwf_bearer(&k, cred, sizeof(cred));
    gwf_admin_token(&f, "metrics", admin, sizeof(admin));
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);
    ck_assert_int_eq(sqlite3_open(f.db, &lock), SQLITE_OK);
    ck_assert_int_eq(sqlite3_busy_timeout(lock, 20000), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_OK);
    /* Journaled, so answered at once, until a batch waits. */
    for (int i = 0; i < KG_USAGEDB_BACKLOG; i++) {
        gwf_post(&f, &r, "/v1/chat/completions", cred, CHAT_BODY);
        ck_assert_int_eq(r.status, 200);
        gwf_resp_free(&r);
    }
    gwf_http(&f, &r, "POST", "/v1/chat/completions", post, CHAT_BODY, 1500);
    ck_assert_int_eq(r.status, 0); /* nothing within 1.5 s */
    gwf_resp_free(&r);

    ck_assert_int_eq(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(lock);
    /* Bounded: 20 s for the writer to commit what waited. */
    for (int i = 0; i < 200 && gwf_sql_int(&f,
                                           "SELECT count(*) FROM "
                                           "usage_events",
                                           NULL) < KG_USAGEDB_BACKLOG + 1;
         i++) {
        gwf_sleep_ms(100);
    }
    ck_assert_int_eq(gwf_sql_int(&f, "SELECT count(*) FROM usage_events", NULL),
                     KG_USAGEDB_BACKLOG + 1);
    gwf_assert_serving(&f, &k);
    gwf_admin_http(&f, &r, "GET", "/metrics", hdr, NULL, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(
        r.body, "keygate_usage_backpressure_total{action=\"waited\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(
        r.body, "keygate_usage_backpressure_total{action=\"shed\"} 0\n"));
    gwf_resp_free(&r);
    ck_assert(gwf_stop_checked(&f));
    gwf_free(&f);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("ops");

    tcase_add_unchecked_fixture(tc, setup_root, teardown_root);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_notify_ready_watchdog_status_stopping);
    tcase_add_test(tc, test_notify_watchdog_only_for_its_pid);
    tcase_add_test(tc, test_notify_reloading);
    tcase_add_test(tc, test_backup_while_serving_then_restore);
    tcase_add_test(tc, test_backup_refusals);
    tcase_add_test(tc, test_retention_prunes_events_keeps_totals);
    tcase_add_test(tc, test_status_journal_backlog);
    tcase_add_test(tc, test_usage_queue_full_sheds);
    tcase_add_test(tc, test_backlog_answer_waits_for_commit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(ops_suite());
}
