/* UTC timestamps as RFC 3339 text, for APIs, tables and operator input. */
#define _GNU_SOURCE
#include "keygate/timefmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int time_digits2(const char *p)
{
    return p[0] >= '0' && p[0] <= '9' && p[1] >= '0' && p[1] <= '9';
}

const char *kg_time_format(int64_t unix_seconds, char *buf, size_t len)
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL ||
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(buf, len, "invalid");
    }
    return buf;
}

const char *kg_time_format_short(int64_t unix_seconds, char *buf, size_t len)
{
    time_t t = (time_t)unix_seconds;
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL ||
        strftime(buf, len, "%Y-%m-%d %H:%M", &tm) == 0) {
        snprintf(buf, len, "invalid");
    }
    return buf;
}

kg_err_t kg_time_parse(const char *s, int64_t *unix_seconds, kg_diag_t *diag)
{
    struct tm tm;
    const char *end;
    long offset = 0;

    memset(&tm, 0, sizeof(tm));
    if (s == NULL || strlen(s) > 40) {
        goto bad;
    }
    end = strptime(s, "%Y-%m-%d", &tm);
    if (end == NULL) {
        goto bad;
    }
    if (*end == 'T' || *end == 't' || *end == ' ') {
        end = strptime(end + 1, "%H:%M:%S", &tm);
        if (end == NULL) {
            goto bad;
        }
        if (*end == 'Z' || *end == 'z') {
            end++;
        } else if ((*end == '+' || *end == '-') && strlen(end) == 6 &&
                   end[3] == ':' && time_digits2(end + 1) &&
                   time_digits2(end + 4)) {
            int hh = (end[1] - '0') * 10 + (end[2] - '0');
            int mm = (end[4] - '0') * 10 + (end[5] - '0');

            if (hh > 23 || mm > 59) {
                goto bad;
            }
            offset = (hh * 3600L + mm * 60L) * (*end == '+' ? 1 : -1);
            end += 6;
        } else {
            goto bad;
        }
    }
    if (*end != '\0') {
        goto bad;
    }
    *unix_seconds = (int64_t)timegm(&tm) - offset;
    return KG_OK;

bad:
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "bad time '%.40s': use RFC 3339 like "
                        "2026-12-31T23:59:59Z or a date like 2026-12-31",
                        s ? s : "");
}
