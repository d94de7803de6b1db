/* A small harness for keygate's integration tests: files, children, ports. */
#include "harness.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define HARNESS_TICK_MS     5     /* polling step of the bounded waits */
#define HARNESS_MAX_DEPTH   32    /* deepest tree kg_harness_rmtree removes */
#define HARNESS_CHUNK       65536 /* read size for pipes */
#define HARNESS_RM_ATTEMPTS 3     /* directory passes before giving up */

typedef struct harness_buf {
    char *p;
    size_t len;
    size_t cap;
    bool truncated;
} harness_buf_t;

static int64_t harness_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void harness_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Append n bytes, keeping at most max; the buffer stays NUL-terminated. */
static int harness_buf_add(harness_buf_t *b, const char *data, size_t n,
                           size_t max)
{
    size_t room = max - b->len;

    if (n > room) {
        b->truncated = true;
        n = room;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        char *grown;

        while (ncap < b->len + n + 1) {
            ncap *= 2;
        }
        grown = realloc(b->p, ncap);
        if (grown == NULL) {
            return -1;
        }
        b->p = grown;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

const char *kg_harness_bin(const char *name)
{
    const char *path = getenv(name);

    if (path == NULL || *path == '\0') {
        ck_abort_msg("%s is not set; run the test through ctest", name);
    }
    if (access(path, X_OK) != 0) {
        ck_abort_msg("%s=%s is not executable: %s", name, path,
                     strerror(errno));
    }
    return path;
}

char *kg_harness_tmpdir_new(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path;
    size_t len;

    if (base == NULL || *base == '\0') {
        base = "/tmp";
    }
    len = strlen(base) + strlen(tag) + sizeof("/.XXXXXX");
    path = malloc(len);
    if (path == NULL) {
        return NULL;
    }
    snprintf(path, len, "%s/%s.XXXXXX", base, tag);
    if (mkdtemp(path) == NULL) {
        free(path);
        return NULL;
    }
    return path;
}

/* Remove name (relative to the directory parent) and what is below it. */
static int harness_rm_at(int parent, const char *name, int depth)
{
    struct stat st;
    int rc = 0;

    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return errno == ENOENT ? 0 : -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        return (unlinkat(parent, name, 0) == 0 || errno == ENOENT) ? 0 : -1;
    }
    if (depth > HARNESS_MAX_DEPTH) {
        return -1;
    }
    /* Tests make directories read-only; without root that blocks unlink. */
    (void)fchmodat(parent, name, 0700, 0);
    for (int attempt = 0; attempt < HARNESS_RM_ATTEMPTS; attempt++) {
        int fd = openat(parent, name,
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *e;
        DIR *d;

        if (fd < 0) {
            return -1;
        }
        d = fdopendir(fd);
        if (d == NULL) {
            close(fd);
            return -1;
        }
        rc = 0;
        for (e = readdir(d); e != NULL; e = readdir(d)) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
                continue;
            }
            if (harness_rm_at(dirfd(d), e->d_name, depth + 1) != 0) {
                rc = -1;
            }
        }
        closedir(d);
        if (unlinkat(parent, name, AT_REMOVEDIR) == 0 || errno == ENOENT) {
            return 0;
        }
        if (errno != ENOTEMPTY && errno != EEXIST) {
            return -1;
        }
    }
    return rc == 0 ? -1 : rc;
}

int kg_harness_rmtree(const char *path)
{
    if (path == NULL || *path == '\0') {
        return 0;
    }
    return harness_rm_at(AT_FDCWD, path, 0);
}

bool kg_harness_path(char *buf, size_t len, const char *dir, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);

    return n >= 0 && (size_t)n < len;
}

int kg_harness_write_file(const char *path, const void *data, size_t len,
                          mode_t mode)
{
    const char *p = data;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    int saved;

    if (fd < 0) {
        return -1;
    }
    if (fchmod(fd, mode) != 0) {
        goto fail;
    }
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            goto fail;
        }
        p += w;
        len -= (size_t)w;
    }
    return close(fd);
fail:
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int kg_harness_read_file(const char *path, char **data, size_t *len)
{
    harness_buf_t b = {NULL, 0, 0, false};
    char chunk[HARNESS_CHUNK];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int saved;

    *data = NULL;
    if (fd < 0) {
        return -1;
    }
    if (harness_buf_add(&b, "", 0, KG_HARNESS_FILE_MAX) != 0) {
        errno = ENOMEM;
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            goto fail;
        }
        if (r == 0) {
            break;
        }
        if (harness_buf_add(&b, chunk, (size_t)r, KG_HARNESS_FILE_MAX) != 0) {
            errno = ENOMEM;
            goto fail;
        }
        if (b.truncated) {
            errno = EFBIG;
            goto fail;
        }
    }
    close(fd);
    *data = b.p;
    if (len != NULL) {
        *len = b.len;
    }
    return 0;
fail:
    saved = errno;
    close(fd);
    free(b.p);
    errno = saved;
    return -1;
}

int kg_harness_file_contains(const char *path, const void *needle, size_t len)
{
    char *data = NULL;
    size_t n = 0;
    int found;

    if (len == 0) {
        return -1;
    }
    if (kg_harness_read_file(path, &data, &n) != 0) {
        return errno == ENOENT ? 0 : -1;
    }
    found = memmem(data, n, needle, len) != NULL;
    free(data);
    return found;
}

int kg_harness_file_mode(const char *path)
{
    struct stat st;

    if (lstat(path, &st) != 0) {
        return -1;
    }
    return (int)(st.st_mode & 07777);
}

bool kg_harness_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Whether environment entries a and b ("NAME=..." or "NAME") name the same
 * variable. */
static bool harness_same_name(const char *a, const char *b)
{
    size_t na = strcspn(a, "=");
    size_t nb = strcspn(b, "=");

    return na == nb && memcmp(a, b, na) == 0;
}

/* The child's environment: environ with extra applied. New array of
 * borrowed strings, or NULL on no memory. */
static char **harness_envp(const char *const *extra)
{
    size_t n = 0;
    size_t m = 0;
    size_t k = 0;
    char **envp;

    while (environ[n] != NULL) {
        n++;
    }
    while (extra != NULL && extra[m] != NULL) {
        m++;
    }
    envp = calloc(n + m + 1, sizeof(*envp));
    if (envp == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        bool replaced = false;

        for (size_t j = 0; j < m && !replaced; j++) {
            replaced = harness_same_name(environ[i], extra[j]);
        }
        if (!replaced) {
            envp[k++] = environ[i];
        }
    }
    for (size_t j = 0; j < m; j++) {
        if (strchr(extra[j], '=') != NULL) {
            envp[k++] = (char *)extra[j];
        }
    }
    envp[k] = NULL;
    return envp;
}

/* In the child: put fd on target (0, 1 or 2), inheritable. */
static int harness_child_fd(int fd, int target)
{
    return dup2(fd, target) == target ? 0 : -1;
}

/*
 * fork + exec in a new process group with the given standard fds, default
 * signal dispositions, an empty signal mask and no other inherited fds.
 * Returns the pid or -1. The child makes only async-signal-safe calls
 * (the test process is single-threaded).
 */
static pid_t harness_spawn(const kg_harness_cmd_t *cmd, int in_fd, int out_fd,
                           int err_fd)
{
    static const char msg[] = "harness: cannot execute the program\n";
    static const int dfl[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    char **envp = harness_envp(cmd->env);
    sigset_t none;
    pid_t pid;

    if (envp == NULL) {
        errno = ENOMEM;
        return -1;
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        /* Above 2 first, so that no target clobbers a source. */
        int in = fcntl(in_fd, F_DUPFD_CLOEXEC, 3);
        int out = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
        int err = fcntl(err_fd, F_DUPFD_CLOEXEC, 3);

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (size_t i = 0; i < sizeof(dfl) / sizeof(*dfl); i++) {
            signal(dfl[i], SIG_DFL);
        }
        setpgid(0, 0);
        if (in < 0 || out < 0 || err < 0 || harness_child_fd(in, 0) != 0 ||
            harness_child_fd(out, 1) != 0 || harness_child_fd(err, 2) != 0) {
            _exit(127);
        }
        if (close_range(3, ~0u, 0) != 0) {
            for (int fd = 3; fd < 1024; fd++) {
                close(fd);
            }
        }
        execvpe(cmd->argv[0], (char *const *)cmd->argv, envp);
        (void)!write(2, msg, sizeof(msg) - 1);
        _exit(127);
    }
    if (pid > 0) {
        setpgid(pid, pid); /* also here: no race with a kill of the group */
    }
    free(envp);
    return pid;
}

static int harness_decode_status(int wstatus, bool *signaled)
{
    if (WIFSIGNALED(wstatus)) {
        *signaled = true;
        return 128 + WTERMSIG(wstatus);
    }
    return WEXITSTATUS(wstatus);
}

/*
 * Wait for pid until deadline (monotonic ms); then SIGKILL its group and
 * wait up to KG_HARNESS_REAP_MS. Returns 0 with *wstatus, or -1.
 */
static int harness_reap(pid_t pid, int64_t deadline, int *wstatus, bool *killed)
{
    bool sent = false;

    for (;;) {
        pid_t r = waitpid(pid, wstatus, WNOHANG);

        if (r == pid) {
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            return -1;
        }
        if (harness_now_ms() >= deadline) {
            if (sent) {
                return -1;
            }
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            *killed = true;
            sent = true;
            deadline = harness_now_ms() + KG_HARNESS_REAP_MS;
        }
        harness_sleep_ms(1);
    }
}

static void harness_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Read what is there on *fd into b; close it at EOF or on error. */
static void harness_drain(int *fd, harness_buf_t *b)
{
    char chunk[HARNESS_CHUNK];
    ssize_t r = read(*fd, chunk, sizeof(chunk));

    if (r > 0) {
        if (harness_buf_add(b, chunk, (size_t)r, KG_HARNESS_OUTPUT_MAX) != 0) {
            harness_close(fd);
        }
        return;
    }
    if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        harness_close(fd);
    }
}

/* Write the rest of stdin_data; close the pipe when done or refused. */
static void harness_feed(int *fd, const char *data, size_t len, size_t *off)
{
    ssize_t w;

    if (*off < len) {
        w = write(*fd, data + *off, len - *off);
        if (w > 0) {
            *off += (size_t)w;
        } else if (w < 0 && errno != EINTR && errno != EAGAIN) {
            harness_close(fd);
            return;
        }
    }
    if (*off >= len) {
        harness_close(fd);
    }
}

/* The poll loop of kg_harness_run: until both outputs end or deadline. */
static bool harness_pump(const kg_harness_cmd_t *cmd, int *in, int *out,
                         int *err, harness_buf_t *bo, harness_buf_t *be,
                         int64_t deadline)
{
    size_t off = 0;

    while (*out >= 0 || *err >= 0) {
        struct pollfd fds[3];
        int64_t left = deadline - harness_now_ms();
        int n = 0;
        int r;

        if (left <= 0) {
            return false;
        }
        fds[n++] = (struct pollfd){*out, POLLIN, 0};
        fds[n++] = (struct pollfd){*err, POLLIN, 0};
        fds[n++] = (struct pollfd){*in, POLLOUT, 0};
        r = poll(fds, (nfds_t)n, left > 100 ? 100 : (int)left);
        if (r < 0 && errno != EINTR) {
            return false;
        }
        if (r <= 0) {
            continue;
        }
        if (*out >= 0 && fds[0].revents != 0) {
            harness_drain(out, bo);
        }
        if (*err >= 0 && fds[1].revents != 0) {
            harness_drain(err, be);
        }
        if (*in >= 0 && fds[2].revents != 0) {
            harness_feed(in, cmd->stdin_data, cmd->stdin_len, &off);
        }
    }
    return true;
}

static void harness_result_set(kg_harness_result_t *res, harness_buf_t *bo,
                               harness_buf_t *be)
{
    /* Both outputs exist, empty at worst, so tests can print them. */
    if (bo->p == NULL) {
        (void)harness_buf_add(bo, "", 0, KG_HARNESS_OUTPUT_MAX);
    }
    if (be->p == NULL) {
        (void)harness_buf_add(be, "", 0, KG_HARNESS_OUTPUT_MAX);
    }
    res->out = bo->p;
    res->out_len = bo->len;
    res->err = be->p;
    res->err_len = be->len;
    res->truncated = bo->truncated || be->truncated;
}

int kg_harness_run(const kg_harness_cmd_t *cmd, kg_harness_result_t *res)
{
    harness_buf_t bo = {NULL, 0, 0, false};
    harness_buf_t be = {NULL, 0, 0, false};
    int inp[2] = {-1, -1};
    int outp[2] = {-1, -1};
    int errp[2] = {-1, -1};
    int timeout = cmd->timeout_ms > 0 ? cmd->timeout_ms : KG_HARNESS_TIMEOUT_MS;
    int64_t deadline = harness_now_ms() + timeout;
    bool killed = false;
    int wstatus = 0;
    int rc = -1;
    pid_t pid;

    memset(res, 0, sizeof(*res));
    res->status = -1;
    signal(SIGPIPE, SIG_IGN);
    if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        goto out;
    }
    if (cmd->stdin_data != NULL) {
        if (pipe2(inp, O_CLOEXEC) != 0) {
            goto out;
        }
    } else {
        inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (inp[0] < 0) {
            goto out;
        }
    }
    pid = harness_spawn(cmd, inp[0], outp[1], errp[1]);
    if (pid < 0) {
        goto out;
    }
    harness_close(&inp[0]);
    harness_close(&outp[1]);
    harness_close(&errp[1]);
    if (inp[1] >= 0) {
        fcntl(inp[1], F_SETFL, O_NONBLOCK);
    }
    if (!harness_pump(cmd, &inp[1], &outp[0], &errp[0], &bo, &be, deadline)) {
        deadline = harness_now_ms(); /* kill now */
    }
    if (harness_reap(pid, deadline, &wstatus, &killed) != 0) {
        (void)harness_buf_add(&be, "\nharness: the child could not be reaped",
                              39, KG_HARNESS_OUTPUT_MAX);
        goto out;
    }
    res->timed_out = killed;
    res->status = harness_decode_status(wstatus, &res->signaled);
    rc = 0;
out:
    if (rc != 0 && be.len == 0) {
        char msg[160];
        int n = snprintf(msg, sizeof(msg), "harness: cannot run %s: %s",
                         cmd->argv[0], strerror(errno));

        (void)harness_buf_add(&be, msg, n > 0 ? (size_t)n : 0,
                              KG_HARNESS_OUTPUT_MAX);
    }
    for (int i = 0; i < 2; i++) {
        harness_close(&inp[i]);
        harness_close(&outp[i]);
        harness_close(&errp[i]);
    }
    harness_result_set(res, &bo, &be);
    return rc;
}

void kg_harness_result_free(kg_harness_result_t *res)
{
    if (res == NULL) {
        return;
    }
    free(res->out);
    free(res->err);
    memset(res, 0, sizeof(*res));
}

int kg_harness_proc_start(const kg_harness_cmd_t *cmd, const char *out_path,
                          const char *err_path, kg_harness_proc_t *p)
{
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = open(out_path, flags, 0600);
    int err = open(err_path, flags, 0600);
    int rc = -1;
    int saved;

    memset(p, 0, sizeof(*p));
    p->status = -1;
    if (in < 0 || out < 0 || err < 0) {
        goto done;
    }
    p->out_path = strdup(out_path);
    p->err_path = strdup(err_path);
    if (p->out_path == NULL || p->err_path == NULL) {
        errno = ENOMEM;
        goto done;
    }
    p->pid = harness_spawn(cmd, in, out, err);
    if (p->pid < 0) {
        p->pid = 0;
        goto done;
    }
    rc = 0;
done:
    saved = errno;
    harness_close(&in);
    harness_close(&out);
    harness_close(&err);
    if (rc != 0) {
        free(p->out_path);
        free(p->err_path);
        p->out_path = NULL;
        p->err_path = NULL;
    }
    errno = saved;
    return rc;
}

bool kg_harness_proc_alive(kg_harness_proc_t *p)
{
    int wstatus = 0;
    bool signaled = false;
    pid_t r;

    if (p->pid <= 0) {
        return false;
    }
    r = waitpid(p->pid, &wstatus, WNOHANG);
    if (r == p->pid) {
        p->status = harness_decode_status(wstatus, &signaled);
        p->pid = 0;
        return false;
    }
    return r == 0 || errno == EINTR;
}

/* The port of the first complete "PORT <n>" line in text, or 0. */
static int harness_find_port(const char *text)
{
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        long port = 0;
        const char *d;

        if (nl == NULL) {
            return 0; /* an incomplete last line: wait for the rest */
        }
        if (strncmp(line, "PORT ", 5) == 0) {
            for (d = line + 5;
                 d < nl && *d >= '0' && *d <= '9' && port <= 65535; d++) {
                port = port * 10 + (*d - '0');
            }
            if (d == nl && d > line + 5 && port > 0 && port <= 65535) {
                return (int)port;
            }
        }
        line = nl + 1;
    }
    return 0;
}

/* The port of a port file: "<n>\n" (or "PORT <n>\n"), or 0. */
static int harness_port_file(const char *text)
{
    if (strncmp(text, "PORT ", 5) != 0) {
        char line[32];
        int n = snprintf(line, sizeof(line), "PORT %.20s", text);

        return n > 0 ? harness_find_port(line) : 0;
    }
    return harness_find_port(text);
}

/* Poll path until parse finds a port in it, p exits, or the deadline. */
static int harness_wait_port(kg_harness_proc_t *p, const char *path,
                             int (*parse)(const char *), int timeout_ms)
{
    int64_t deadline = harness_now_ms() + timeout_ms;

    for (;;) {
        char *text = NULL;
        int port = 0;

        if (kg_harness_read_file(path, &text, NULL) == 0) {
            port = parse(text);
            free(text);
        }
        if (port > 0) {
            p->port = port;
            return port;
        }
        if (!kg_harness_proc_alive(p) || harness_now_ms() >= deadline) {
            return -1;
        }
        harness_sleep_ms(HARNESS_TICK_MS);
    }
}

int kg_harness_proc_wait_port(kg_harness_proc_t *p, int timeout_ms)
{
    return harness_wait_port(p, p->out_path, harness_find_port, timeout_ms);
}

int kg_harness_proc_wait_port_file(kg_harness_proc_t *p, const char *path,
                                   int timeout_ms)
{
    return harness_wait_port(p, path, harness_port_file, timeout_ms);
}

int kg_harness_proc_signal(kg_harness_proc_t *p, int sig)
{
    if (p->pid <= 0) {
        return -1;
    }
    return kill(p->pid, sig);
}

int kg_harness_proc_stop(kg_harness_proc_t *p, int term_ms)
{
    bool signaled = false;
    int wstatus = 0;

    if (p->pid <= 0) {
        return p->status;
    }
    kill(p->pid, SIGTERM);
    if (harness_reap(p->pid, harness_now_ms() + term_ms, &wstatus,
                     &p->killed) != 0) {
        return -1;
    }
    p->status = harness_decode_status(wstatus, &signaled);
    p->pid = 0;
    return p->status;
}

void kg_harness_proc_free(kg_harness_proc_t *p)
{
    if (p == NULL) {
        return;
    }
    (void)kg_harness_proc_stop(p, 1000);
    free(p->out_path);
    free(p->err_path);
    p->out_path = NULL;
    p->err_path = NULL;
}

/* Append one row of st to b: values joined by '|', then '\n'. */
static int harness_dump_row(sqlite3_stmt *st, harness_buf_t *b)
{
    static const char hex[] = "0123456789abcdef";
    int ncol = sqlite3_column_count(st);
    int rc = 0;

    for (int i = 0; i < ncol && rc == 0; i++) {
        int type = sqlite3_column_type(st, i);

        if (i > 0) {
            rc = harness_buf_add(b, "|", 1, KG_HARNESS_FILE_MAX);
        }
        if (type == SQLITE_NULL) {
            rc |= harness_buf_add(b, "NULL", 4, KG_HARNESS_FILE_MAX);
        } else if (type == SQLITE_BLOB) {
            const unsigned char *v = sqlite3_column_blob(st, i);
            int n = sqlite3_column_bytes(st, i);

            for (int j = 0; j < n && rc == 0; j++) {
                char two[2] = {hex[v[j] >> 4], hex[v[j] & 0xf]};

                rc = harness_buf_add(b, two, 2, KG_HARNESS_FILE_MAX);
            }
        } else {
            const char *v = (const char *)sqlite3_column_text(st, i);

            rc |= harness_buf_add(b, v ? v : "", v ? strlen(v) : 0,
                                  KG_HARNESS_FILE_MAX);
        }
    }
    return rc | harness_buf_add(b, "\n", 1, KG_HARNESS_FILE_MAX);
}

/* Append the rows of one query to b, after a header line. */
static int harness_dump_query(sqlite3 *db, const char *header, const char *sql,
                              harness_buf_t *b)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (harness_buf_add(b, header, strlen(header), KG_HARNESS_FILE_MAX) != 0) {
        return SQLITE_NOMEM;
    }
    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && harness_dump_row(st, b) != 0) {
            rc = SQLITE_NOMEM;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int kg_harness_store_dump(const char *path, char **out)
{
    harness_buf_t b = {NULL, 0, 0, false};
    sqlite3_stmt *names = NULL;
    sqlite3 *db = NULL;
    int rc;

    *out = NULL;
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        rc = harness_dump_query(db, "# pragmas\n",
                                "SELECT * FROM pragma_user_version, "
                                "pragma_application_id",
                                &b);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(db,
                                "SELECT name FROM sqlite_schema WHERE type = "
                                "'table' ORDER BY name",
                                -1, &names, NULL);
    }
    while (rc == SQLITE_OK) {
        const char *name;
        char *header;
        char *sql;

        rc = sqlite3_step(names);
        if (rc != SQLITE_ROW) {
            rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
            break;
        }
        name = (const char *)sqlite3_column_text(names, 0);
        header = sqlite3_mprintf("# table %s\n", name);
        sql = sqlite3_mprintf("SELECT * FROM \"%w\"", name);
        rc = (header && sql) ? harness_dump_query(db, header, sql, &b)
                             : SQLITE_NOMEM;
        sqlite3_free(header);
        sqlite3_free(sql);
    }
    sqlite3_finalize(names);
    if (rc != SQLITE_OK) {
        free(b.p);
        b.p = NULL;
        b.len = b.cap = 0;
        (void)harness_buf_add(&b, sqlite3_errstr(rc),
                              strlen(sqlite3_errstr(rc)), KG_HARNESS_FILE_MAX);
    }
    sqlite3_close(db);
    *out = b.p;
    return rc == SQLITE_OK ? 0 : -1;
}
