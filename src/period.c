/* Calendar-aligned UTC budget periods: hour, day, week, month. */
#include "keygate/period.h"

#include <string.h>
#include <time.h>

static const char *const period_names[] = {"", "hour", "day", "week", "month"};

const char *kg_period_name(kg_period_t p)
{
    if ((int)p < 0 || p > KG_PERIOD_MONTH) {
        return "";
    }
    return period_names[p];
}

bool kg_period_parse(const char *s, kg_period_t *p)
{
    for (int i = KG_PERIOD_HOUR; i <= KG_PERIOD_MONTH; i++) {
        if (strcmp(s, period_names[i]) == 0) {
            *p = (kg_period_t)i;
            return true;
        }
    }
    return false;
}

int64_t kg_period_start(kg_period_t p, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    int64_t day = t - (t % 86400 + 86400) % 86400;

    switch (p) {
    case KG_PERIOD_HOUR:
        return t - (t % 3600 + 3600) % 3600;
    case KG_PERIOD_DAY:
        return day;
    case KG_PERIOD_WEEK:
        gmtime_r(&tt, &tm);
        /* tm_wday: 0 = Sunday; Monday starts the week. */
        return day - (int64_t)((tm.tm_wday + 6) % 7) * 86400;
    case KG_PERIOD_MONTH:
        gmtime_r(&tt, &tm);
        tm.tm_mday = 1;
        tm.tm_hour = 0;
        tm.tm_min = 0;
        tm.tm_sec = 0;
        return (int64_t)timegm(&tm);
    case KG_PERIOD_NONE:
        break;
    }
    return 0;
}

int64_t kg_period_next(kg_period_t p, int64_t t)
{
    int64_t start = kg_period_start(p, t);
    time_t tt = (time_t)start;
    struct tm tm;

    switch (p) {
    case KG_PERIOD_HOUR:
        return start + 3600;
    case KG_PERIOD_DAY:
        return start + 86400;
    case KG_PERIOD_WEEK:
        return start + 7 * 86400;
    case KG_PERIOD_MONTH:
        gmtime_r(&tt, &tm);
        tm.tm_mon += 1; /* timegm normalises December + 1 */
        return (int64_t)timegm(&tm);
    case KG_PERIOD_NONE:
        break;
    }
    return 0;
}
