/* The daemon's pid file: written at start, read by 'keygate reload'. */
#include "keygate/pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The name the kernel shows for keygate's main thread (/proc/PID/comm). */
#define PIDFILE_COMM "keygate"
/* The file holds one decimal number and a newline. */
#define PIDFILE_MAX 32

/* The number in path, or -1 (no file, not a number). */
static pid_t pidfile_number(const char *path)
{
    char text[PIDFILE_MAX];
    char *end = NULL;
    ssize_t n;
    long v;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        return -1;
    }
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    text[n] = '\0';
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || end == text || (*end != '\n' && *end != '\0') || v <= 0 ||
        v > INT_MAX) {
        return -1;
    }
    return (pid_t)v;
}

/* Whether pid runs and is a keygate (its main thread's name). */
static bool pidfile_is_keygate(pid_t pid)
{
    char path[64];
    char comm[32];
    ssize_t n;
    int fd;

    if (kill(pid, 0) != 0 && errno != EPERM) {
        return false;
    }
    snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    n = read(fd, comm, sizeof(comm) - 1);
    close(fd);
    if (n <= 0) {
        return false;
    }
    comm[n] = '\0';
    comm[strcspn(comm, "\n")] = '\0';
    return strcmp(comm, PIDFILE_COMM) == 0;
}

kg_err_t kg_pidfile_write(const char *path, kg_diag_t *diag)
{
    pid_t other = pidfile_number(path);
    char tmp[PATH_MAX];
    char text[PIDFILE_MAX];
    bool ok;
    int fd;
    int n;

    if (other > 0 && other != getpid() && pidfile_is_keygate(other)) {
        return kg_diag_fail(diag, KG_ERR_EXISTS,
                            "[server] pid_file %s names keygate process %ld, "
                            "which is running: two daemons cannot share one "
                            "pid file",
                            path, (long)other);
    }
    n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        return kg_diag_fail(diag, KG_ERR_IO, "pid file path too long");
    }
    n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
    ok = fd >= 0 && write(fd, text, (size_t)n) == n;
    if (fd >= 0) {
        /* Closed once, whatever happened (a second close could close a
         * descriptor another thread has just opened). */
        ok = close(fd) == 0 && ok;
    }
    if (!ok || rename(tmp, path) != 0) {
        kg_err_t rc = kg_diag_fail(diag, KG_ERR_IO, "cannot write %s: %s", path,
                                   strerror(errno));

        unlink(tmp);
        return rc;
    }
    return KG_OK;
}

kg_err_t kg_pidfile_read(const char *path, pid_t *pid, kg_diag_t *diag)
{
    pid_t p;

    *pid = 0;
    if (access(path, F_OK) != 0) {
        return kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                            "no keygate daemon runs: there is no pid file %s "
                            "(%s)",
                            path, strerror(errno));
    }
    p = pidfile_number(path);
    if (p <= 0) {
        return kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                            "%s does not hold a process id", path);
    }
    if (!pidfile_is_keygate(p)) {
        return kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                            "no keygate daemon runs: %s names process %ld, "
                            "which is gone or is not keygate (a stale pid "
                            "file)",
                            path, (long)p);
    }
    *pid = p;
    return KG_OK;
}

void kg_pidfile_remove(const char *path)
{
    if (pidfile_number(path) == getpid()) {
        unlink(path);
    }
}
