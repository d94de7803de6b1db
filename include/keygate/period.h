/* Calendar-aligned UTC budget periods: hour, day, week, month. */
#ifndef KEYGATE_PERIOD_H
#define KEYGATE_PERIOD_H

#include <stdbool.h>
#include <stdint.h>

typedef enum kg_period {
    KG_PERIOD_NONE = 0,
    KG_PERIOD_HOUR,
    KG_PERIOD_DAY,
    KG_PERIOD_WEEK, /* starts Monday 00:00 UTC */
    KG_PERIOD_MONTH,
} kg_period_t;

/* "hour", "day", "week", "month"; "" for none. */
const char *kg_period_name(kg_period_t p);

/* Parse a period name; false when unknown. */
bool kg_period_parse(const char *s, kg_period_t *p);

/* Start (unix seconds, UTC) of the period that contains t. */
int64_t kg_period_start(kg_period_t p, int64_t t);

/* Start of the next period after the one that contains t. */
int64_t kg_period_next(kg_period_t p, int64_t t);

#endif /* KEYGATE_PERIOD_H */
