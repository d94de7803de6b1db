/* Leveled server logs, text or JSON, to stderr or a file; cheap when off. */
#define _GNU_SOURCE /* dup3 */
#include "keygate/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

atomic_int kg_log_threshold = KG_LOG_INFO;

static atomic_int log_format = KG_LOG_TEXT;
/*
 * Where lines go: stderr until kg_log_open names a file; then a descriptor
 * of our own whose number never changes again (a switch replaces the file
 * behind it with dup3), so a writer never writes to a closed or reused
 * descriptor. log_mu guards log_path and the switches, never a write.
 */
static atomic_int log_fd = STDERR_FILENO;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char *log_path; /* the file kg_log_open named, or NULL: stderr */

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};
static const char *const log_format_names[] = {"text", "json"};

void kg_log_set_level(kg_log_level_t level)
{
    atomic_store_explicit(&kg_log_threshold, (int)level, memory_order_relaxed);
}

bool kg_log_level_parse(const char *s, kg_log_level_t *level)
{
    for (size_t i = 0; i < sizeof(log_level_names) / sizeof(*log_level_names);
         i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *level = (kg_log_level_t)i;
            return true;
        }
    }
    return false;
}

const char *kg_log_level_name(kg_log_level_t level)
{
    if ((int)level < 0 || level > KG_LOG_DEBUG) {
        return "unknown";
    }
    return log_level_names[level];
}

void kg_log_set_format(kg_log_format_t format)
{
    atomic_store_explicit(&log_format, (int)format, memory_order_relaxed);
}

kg_log_format_t kg_log_get_format(void)
{
    return (kg_log_format_t)atomic_load_explicit(&log_format,
                                                 memory_order_relaxed);
}

bool kg_log_format_parse(const char *s, kg_log_format_t *format)
{
    for (size_t i = 0; i < sizeof(log_format_names) / sizeof(*log_format_names);
         i++) {
        if (strcmp(s, log_format_names[i]) == 0) {
            *format = (kg_log_format_t)i;
            return true;
        }
    }
    return false;
}

const char *kg_log_format_name(kg_log_format_t format)
{
    if ((int)format < 0 || format > KG_LOG_JSON) {
        return "unknown";
    }
    return log_format_names[format];
}

/* Put the file src (a descriptor) behind the log's own descriptor. */
static kg_err_t log_install(int src, kg_diag_t *diag)
{
    int fd = atomic_load(&log_fd);

    if (fd == STDERR_FILENO) {
        /* The first file: it gets a number of its own, kept from now on. */
        fd = fcntl(src, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
            return kg_diag_fail(diag, KG_ERR_IO, "cannot open the log: %s",
                                strerror(errno));
        }
        atomic_store(&log_fd, fd);
        return KG_OK;
    }
    if (dup3(src, fd, O_CLOEXEC) < 0) {
        return kg_diag_fail(diag, KG_ERR_IO, "cannot switch the log: %s",
                            strerror(errno));
    }
    return KG_OK;
}

static int log_open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY,
                0640);
}

kg_err_t kg_log_open(const char *path, kg_diag_t *diag)
{
    kg_err_t rc = KG_OK;
    char *copy = NULL;
    int fd;

    pthread_mutex_lock(&log_mu);
    if (path == NULL || path[0] == '\0') {
        if (log_path != NULL) {
            rc = log_install(STDERR_FILENO, diag);
        }
        if (rc == KG_OK) {
            free(log_path);
            log_path = NULL;
        }
        goto out;
    }
    copy = strdup(path);
    fd = copy == NULL ? -1 : log_open_file(path);
    if (fd < 0) {
        rc = copy == NULL ? kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory")
                          : kg_diag_fail(diag, KG_ERR_IO,
                                         "cannot open the log file %s: %s",
                                         path, strerror(errno));
        free(copy);
        goto out;
    }
    rc = log_install(fd, diag);
    close(fd);
    if (rc == KG_OK) {
        free(log_path);
        log_path = copy;
    } else {
        free(copy);
    }
out:
    pthread_mutex_unlock(&log_mu);
    return rc;
}

kg_err_t kg_log_reopen(kg_diag_t *diag)
{
    kg_err_t rc = KG_OK;
    int fd;

    pthread_mutex_lock(&log_mu);
    if (log_path != NULL) {
        fd = log_open_file(log_path);
        if (fd < 0) {
            rc = kg_diag_fail(diag, KG_ERR_IO,
                              "cannot open the log file %s again: %s", log_path,
                              strerror(errno));
        } else {
            rc = log_install(fd, diag);
            close(fd);
        }
    }
    pthread_mutex_unlock(&log_mu);
    return rc;
}

void kg_log_emit(const char *line, size_t len)
{
    /* One write(2) per line: O_APPEND keeps concurrent lines whole. */
    if (write(atomic_load_explicit(&log_fd, memory_order_relaxed), line, len) <
        0) {
        /* Nowhere to report a failed log write. */
    }
}

size_t kg_log_stamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    size_t n;
    int m;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    m = snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return m < 0 || (size_t)m >= len - n ? n : n + (size_t)m;
}

/* The length of the UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t log_utf8_len(const unsigned char *s)
{
    size_t n;

    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        n = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        n = 3;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        n = 4;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    /* Overlong forms and UTF-16 surrogates are not UTF-8. */
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F)) {
        return 0;
    }
    return n;
}

bool kg_log_json_escape(char *buf, size_t len, size_t *used, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t u = *used;

    while (*p != '\0') {
        char esc[8];
        const char *piece = esc;
        size_t n = log_utf8_len(p);
        size_t take = n;

        if (n == 0) {
            piece = "\\ufffd";
            n = 6;
            take = 1;
        } else if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            n = 2;
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            n = 6;
        } else {
            piece = (const char *)p;
        }
        if (u + n >= len) {
            *used = u;
            return false;
        }
        memcpy(buf + u, piece, n);
        u += n;
        p += take;
    }
    *used = u;
    return true;
}

void kg_log_write(kg_log_level_t level, const char *fmt, ...)
{
    char line[KG_LOG_LINE_MAX];
    char msg[KG_LOG_LINE_MAX - 128];
    char stamp[KG_LOG_STAMP_LEN];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kg_log_stamp(stamp, sizeof(stamp));
    if (kg_log_get_format() == KG_LOG_JSON) {
        int m = snprintf(line, sizeof(line),
                         "{\"time\":\"%s\",\"level\":\"%s\",\"type\":\"log\","
                         "\"msg\":\"",
                         stamp, kg_log_level_name(level));

        n = m < 0 ? 0 : (size_t)m;
        /* Room is kept for the closing "}\n". */
        kg_log_json_escape(line, sizeof(line) - 3, &n, msg);
        memcpy(line + n, "\"}\n", 3);
        n += 3;
    } else {
        int m = snprintf(line, sizeof(line), "%s %s %s", stamp,
                         kg_log_level_name(level), msg);

        n = m < 0 ? 0 : (size_t)m;
        if (n > sizeof(line) - 2) {
            n = sizeof(line) - 2;
        }
        /* One entry, one line: a message's own line breaks become spaces. */
        for (size_t i = 0; i < n; i++) {
            if (line[i] == '\n' || line[i] == '\r') {
                line[i] = ' ';
            }
        }
        line[n++] = '\n';
    }
    kg_log_emit(line, n);
}
