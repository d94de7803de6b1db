/* Durations written by operators ("90d", "1h30m") as whole seconds. */
#include "keygate/duration.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct duration_unit {
    char suffix;
    int64_t seconds;
} duration_unit_t;

static const duration_unit_t duration_units[] = {
    {'w', 7 * 86400}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1},
};

static int64_t duration_unit_seconds(char c)
{
    for (size_t i = 0; i < sizeof(duration_units) / sizeof(*duration_units);
         i++) {
        if (duration_units[i].suffix == c) {
            return duration_units[i].seconds;
        }
    }
    return 0;
}

kg_err_t kg_duration_parse(const char *s, int64_t *seconds, kg_diag_t *diag)
{
    int64_t total = 0;
    const char *p = s;

    if (s == NULL || *s == '\0') {
        return kg_diag_fail(diag, KG_ERR_INVAL, "a duration is required");
    }
    if (strcmp(s, "0") == 0) {
        *seconds = 0;
        return KG_OK;
    }
    while (*p != '\0') {
        int64_t n = 0;
        int64_t unit;
        const char *start = p;

        for (; *p >= '0' && *p <= '9'; p++) {
            n = n * 10 + (*p - '0');
            if (n > KG_DURATION_MAX) {
                goto too_long;
            }
        }
        unit = duration_unit_seconds(*p);
        if (p == start || unit == 0) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "bad duration '%.32s': use a number and a "
                                "unit s, m, h, d or w, like 30d or 1h30m",
                                s);
        }
        p++;
        if (n > (KG_DURATION_MAX - total) / unit) {
            goto too_long;
        }
        total += n * unit;
    }
    *seconds = total;
    return KG_OK;

too_long:
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "duration '%.32s' is longer than 100 years", s);
}

const char *kg_duration_format(int64_t seconds, char *buf, size_t len)
{
    size_t used = 0;

    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    if (seconds <= 0) {
        snprintf(buf, len, "0s");
        return buf;
    }
    /* Weeks are accepted on input but printed as days: "90d", not "12w6d". */
    for (size_t i = 1; i < sizeof(duration_units) / sizeof(*duration_units);
         i++) {
        int64_t n = seconds / duration_units[i].seconds;
        int w;

        if (n == 0) {
            continue;
        }
        seconds -= n * duration_units[i].seconds;
        w = snprintf(buf + used, len - used, "%" PRId64 "%c", n,
                     duration_units[i].suffix);
        if (w < 0 || (size_t)w >= len - used) {
            break;
        }
        used += (size_t)w;
    }
    return buf;
}
