/* Entry point of keygate-mock: options, listening socket, signals. */
#include "mock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MOCK_MAX_THREADS     64L
#define MOCK_DEFAULT_THREADS 2L
#define MOCK_BACKLOG         4096u
/* Descriptors kept for anything but client connections. */
#define MOCK_SPARE_FDS 64u
/* How long shutdown waits for parked connections to be resumed. */
#define MOCK_DRAIN_MS 2000L

typedef struct mock_options {
    const char *listen;
    long port;
    const char *port_file;
    const char *log;
    long threads;
    const char *key_env; /* --require-key-env: the variable's name */
} mock_options_t;

static void usage(FILE *out)
{
    fputs("usage: keygate-mock [--listen ADDR] [--port N] [--port-file FILE]"
          "\n                    [--log FILE] [--threads N]"
          " [--require-key-env VAR]\n"
          "Fake OpenAI/Anthropic provider for keygate's tests; prints\n"
          "'PORT <n>' once listening and exits 0 on SIGTERM or SIGINT.\n"
          "See tests/mock/README.md for the modes.\n",
          out);
}

/* Parse a whole decimal number in [min, max]. Returns false if not one. */
static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* Returns 0 when options are good, 1 on a bad one, 2 after --help. */
static int parse_options(int argc, char **argv, mock_options_t *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"port", required_argument, NULL, 'p'},
        {"port-file", required_argument, NULL, 'f'},
        {"log", required_argument, NULL, 'g'},
        {"threads", required_argument, NULL, 't'},
        {"require-key-env", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };

    *o = (mock_options_t){"127.0.0.1",          0,   NULL, NULL,
                          MOCK_DEFAULT_THREADS, NULL};
    for (;;) {
        int c = getopt_long(argc, argv, "", longopts, NULL);

        if (c == -1) {
            break;
        }
        switch (c) {
        case 'l':
            o->listen = optarg;
            break;
        case 'p':
            if (!parse_long(optarg, 0, 65535, &o->port)) {
                fprintf(stderr, "keygate-mock: bad --port '%s'\n", optarg);
                return 1;
            }
            break;
        case 'f':
            o->port_file = optarg;
            break;
        case 'g':
            o->log = optarg;
            break;
        case 't':
            if (!parse_long(optarg, 1, MOCK_MAX_THREADS, &o->threads)) {
                fprintf(stderr, "keygate-mock: bad --threads '%s'\n", optarg);
                return 1;
            }
            break;
        case 'k':
            o->key_env = optarg;
            break;
        case 'h':
            usage(stdout);
            return 2;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 1;
    }
    return 0;
}

/* Raise the descriptor limit to the hard one. Returns the soft limit. */
static rlim_t raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 1024;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;

        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            rl.rlim_cur = old;
        }
    }
    return rl.rlim_cur;
}

/* Write "<port>\n" to path atomically (temporary file, then rename). */
static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    FILE *f = NULL;
    int rc = 0;
    int n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return ENAMETOOLONG;
    }
    f = fopen(tmp, "w");
    if (f == NULL) {
        return errno;
    }
    if (fprintf(f, "%u\n", port) < 0 || fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
        rc = errno ? errno : EIO;
    }
    if (fclose(f) != 0 && rc == 0) {
        rc = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = errno;
    }
    if (rc != 0) {
        unlink(tmp);
    }
    return rc;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/*
 * MHD's messages, less those that clients leaving early and the mock's own
 * faults cause on purpose.
 */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    static const char *const expected[] = {
        "Application reported internal error",
        "Closing connection (application error",
        "Failed to send",
        "Socket has been disconnected",
        "Connection was closed by remote side",
    };
    char msg[1024];

    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    for (size_t i = 0; i < sizeof(expected) / sizeof(*expected); i++) {
        if (strncmp(msg, expected[i], strlen(expected[i])) == 0) {
            return;
        }
    }
    fprintf(stderr, "keygate-mock: mhd: %s", msg);
}

/* The listening address; false if addr is no IPv4 or IPv6 literal. */
static bool make_addr(const char *addr, long port, struct sockaddr_storage *ss,
                      bool *v6)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *v6 = false;
        return true;
    }
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *v6 = true;
        return true;
    }
    return false;
}

static struct MHD_Daemon *start_daemon(const mock_options_t *o)
{
    struct sockaddr_storage ss;
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    rlim_t fds = raise_fd_limit();
    unsigned int limit;
    enum MHD_OPTION pool_opt;
    unsigned int pool;
    struct MHD_Daemon *d;
    bool v6 = false;

    if (!make_addr(o->listen, o->port, &ss, &v6)) {
        fprintf(stderr, "keygate-mock: bad --listen '%s'\n", o->listen);
        return NULL;
    }
    if (v6) {
        flags |= MHD_USE_IPv6;
    }
    limit = fds > 100000 ? 100000u : (unsigned int)fds;
    limit = limit > 2 * MOCK_SPARE_FDS ? limit - MOCK_SPARE_FDS : limit / 2;
    /*
     * MHD warns about a pool size of 0 or 1, so one thread passes a second
     * (harmless) connection timeout of 0 in its place.
     */
    pool_opt = o->threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE
                              : MHD_OPTION_CONNECTION_TIMEOUT;
    pool = o->threads > 1 ? (unsigned int)o->threads : 0u;
    /* clang-format off */
    d = MHD_start_daemon(
        flags, 0, NULL, NULL, kg_mock_on_request, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, 0u,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, MOCK_BACKLOG,
        pool_opt, pool,
        MHD_OPTION_NOTIFY_COMPLETED, kg_mock_on_completed, NULL,
        MHD_OPTION_UNESCAPE_CALLBACK, kg_mock_no_unescape, NULL,
        MHD_OPTION_END);
    /* clang-format on */
    if (d == NULL) {
        fprintf(stderr, "keygate-mock: cannot listen on %s port %ld\n",
                o->listen, o->port);
    }
    return d;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Wake every parked connection so the daemon can be stopped. */
static void drain(void)
{
    long waited = 0;

    atomic_store(&kg_mock_stopping, true);
    kg_mock_timer_drain();
    /* Twice: a handler running while stopping was set may park late. */
    for (int round = 0; round < 2; round++) {
        while (kg_mock_timer_parked() > 0 && waited < MOCK_DRAIN_MS) {
            sleep_ms(5);
            waited += 5;
        }
        sleep_ms(50);
    }
}

/* Block the stop signals before any thread starts; one place waits. */
static void block_signals(sigset_t *set)
{
    /* A shell's background job starts with SIGINT ignored: undo that. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

int main(int argc, char **argv)
{
    mock_options_t o;
    struct MHD_Daemon *d = NULL;
    const union MHD_DaemonInfo *info;
    sigset_t set;
    int sig = 0;
    int rc;

    rc = parse_options(argc, argv, &o);
    if (rc != 0) {
        return rc == 2 ? 0 : 2;
    }
    if (o.key_env != NULL) {
        /* Read once, before any thread: the handlers only compare. */
        kg_mock_required_key = getenv(o.key_env);
        if (kg_mock_required_key == NULL || *kg_mock_required_key == '\0') {
            fprintf(stderr,
                    "keygate-mock: --require-key-env: %s is not set or "
                    "empty\n",
                    o.key_env);
            return 2;
        }
    }
    block_signals(&set);
    rc = kg_mock_log_open(o.log);
    if (rc != 0) {
        fprintf(stderr, "keygate-mock: cannot open log %s: %s\n", o.log,
                strerror(rc));
        return 1;
    }
    rc = 1;
    if (kg_mock_responses_init() != 0) {
        fputs("keygate-mock: out of memory\n", stderr);
        goto out;
    }
    if (kg_mock_timer_start() != 0) {
        fputs("keygate-mock: cannot start the timer thread\n", stderr);
        goto out;
    }
    d = start_daemon(&o);
    if (d == NULL) {
        goto out;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        fputs("keygate-mock: cannot read the bound port\n", stderr);
        goto out;
    }
    if (o.port_file != NULL) {
        int err = write_port_file(o.port_file, info->port);

        if (err != 0) {
            fprintf(stderr, "keygate-mock: cannot write %s: %s\n", o.port_file,
                    strerror(err));
            goto out;
        }
    }
    printf("PORT %u\n", (unsigned)info->port);
    fflush(stdout);
    while (sig != SIGTERM && sig != SIGINT) {
        if (sigwait(&set, &sig) != 0) {
            sig = 0;
        }
    }
    rc = 0;
out:
    if (d != NULL) {
        drain();
        MHD_stop_daemon(d);
    }
    kg_mock_timer_stop();
    kg_mock_responses_free();
    kg_mock_log_close();
    return rc;
}
