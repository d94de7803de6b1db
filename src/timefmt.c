/* UTC timestamps as RFC 3339 text, for APIs, tables and operator input. */
#include "keygate/timefmt.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

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

const char *kg_time_format_ms(int64_t unix_ms, char *buf, size_t len)
{
    int64_t ms = unix_ms % 1000;
    time_t t = (time_t)(unix_ms / 1000);
    struct tm tm;
    char sec[KG_TIME_STRLEN];

    if (ms < 0) {
        ms += 1000;
        t -= 1;
    }
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, len, "invalid");
    } else {
        snprintf(buf, len, "%s.%03dZ", sec, (int)ms);
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

/* Read n digits at p as a number; -1 when any is not a digit. */
static int time_num(const char *p, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/*
 * Accept exactly "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SSZ" or
 * "YYYY-MM-DDTHH:MM:SS+HH:MM"; fields are checked by converting back, so
 * 2026-02-30 or 23:59:60 are refused rather than rolled over.
 */
kg_err_t kg_time_parse(const char *s, int64_t *unix_seconds, kg_diag_t *diag)
{
    struct tm tm;
    struct tm back;
    size_t len = s ? strlen(s) : 0;
    long offset = 0;
    time_t t;

    memset(&tm, 0, sizeof(tm));
    if ((len != 10 && len != 20 && len != 25) || s[4] != '-' || s[7] != '-') {
        goto bad;
    }
    tm.tm_year = time_num(s, 4) - 1900;
    tm.tm_mon = time_num(s + 5, 2) - 1;
    tm.tm_mday = time_num(s + 8, 2);
    if (len > 10) {
        if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
            s[16] != ':') {
            goto bad;
        }
        tm.tm_hour = time_num(s + 11, 2);
        tm.tm_min = time_num(s + 14, 2);
        tm.tm_sec = time_num(s + 17, 2);
        if (len == 20 && s[19] != 'Z' && s[19] != 'z') {
            goto bad;
        }
        if (len == 25) {
            int hh = time_num(s + 20, 2);
            int mm = time_num(s + 23, 2);

            if ((s[19] != '+' && s[19] != '-') || s[22] != ':' || hh < 0 ||
                hh > 23 || mm < 0 || mm > 59) {
                goto bad;
            }
            offset = (hh * 3600L + mm * 60L) * (s[19] == '+' ? 1 : -1);
        }
    }
    if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mday < 0 || tm.tm_hour < 0 ||
        tm.tm_min < 0 || tm.tm_sec < 0) {
        goto bad;
    }
    back = tm;
    t = timegm(&back);
    if (gmtime_r(&t, &back) == NULL || back.tm_year != tm.tm_year ||
        back.tm_mon != tm.tm_mon || back.tm_mday != tm.tm_mday ||
        back.tm_hour != tm.tm_hour || back.tm_min != tm.tm_min ||
        back.tm_sec != tm.tm_sec) {
        goto bad;
    }
    *unix_seconds = (int64_t)t - offset;
    return KG_OK;

bad:
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "bad time '%.40s': use RFC 3339 like "
                        "2026-12-31T23:59:59Z or a date like 2026-12-31",
                        s ? s : "");
}
