/* Leveled server logs to stderr; cheap when a level is off. */
#include "keygate/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

kg_log_level_t kg_log_threshold = KG_LOG_INFO;

static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void kg_log_set_level(kg_log_level_t level)
{
    kg_log_threshold = level;
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

void kg_log_write(kg_log_level_t level, const char *fmt, ...)
{
    char line[2048];
    char stamp[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "%s.%03ldZ %s ", stamp,
                 ts.tv_nsec / 1000000, kg_log_level_name(level));
    if (n < 0 || (size_t)n >= sizeof(line)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so concurrent threads do not interleave. */
    fprintf(stderr, "%s\n", line);
}
