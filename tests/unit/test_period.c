/* Unit tests of calendar-aligned UTC budget periods and their boundaries. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "keygate/period.h"
#include "unit_util.h"

typedef struct ut_civil {
    int y, mo, d, h, mi, s;
} ut_civil_t;

static int64_t ut_at(ut_civil_t c)
{
    return ut_utc(c.y, c.mo, c.d, c.h, c.mi, c.s);
}

typedef struct ut_period_row {
    const char *what;
    kg_period_t period;
    ut_civil_t t;
    ut_civil_t start;
    ut_civil_t next;
} ut_period_row_t;

/* 2026-03-18 is a Wednesday; 2026-03-16 a Monday; 2026-12-31 a Thursday. */
static const ut_period_row_t ut_period_rows[] = {
    {"hour mid",
     KG_PERIOD_HOUR,
     {2026, 3, 18, 13, 45, 12},
     {2026, 3, 18, 13, 0, 0},
     {2026, 3, 18, 14, 0, 0}},
    {"hour exact start",
     KG_PERIOD_HOUR,
     {2026, 3, 18, 13, 0, 0},
     {2026, 3, 18, 13, 0, 0},
     {2026, 3, 18, 14, 0, 0}},
    {"hour last second",
     KG_PERIOD_HOUR,
     {2026, 3, 18, 13, 59, 59},
     {2026, 3, 18, 13, 0, 0},
     {2026, 3, 18, 14, 0, 0}},
    {"hour across midnight",
     KG_PERIOD_HOUR,
     {2026, 12, 31, 23, 30, 0},
     {2026, 12, 31, 23, 0, 0},
     {2027, 1, 1, 0, 0, 0}},
    {"day mid",
     KG_PERIOD_DAY,
     {2026, 3, 18, 13, 45, 12},
     {2026, 3, 18, 0, 0, 0},
     {2026, 3, 19, 0, 0, 0}},
    {"day exact start",
     KG_PERIOD_DAY,
     {2026, 3, 18, 0, 0, 0},
     {2026, 3, 18, 0, 0, 0},
     {2026, 3, 19, 0, 0, 0}},
    {"day last second",
     KG_PERIOD_DAY,
     {2026, 3, 17, 23, 59, 59},
     {2026, 3, 17, 0, 0, 0},
     {2026, 3, 18, 0, 0, 0}},
    {"day leap Feb 29",
     KG_PERIOD_DAY,
     {2024, 2, 29, 12, 0, 0},
     {2024, 2, 29, 0, 0, 0},
     {2024, 3, 1, 0, 0, 0}},
    {"day non-leap Feb 28",
     KG_PERIOD_DAY,
     {2023, 2, 28, 23, 59, 59},
     {2023, 2, 28, 0, 0, 0},
     {2023, 3, 1, 0, 0, 0}},
    {"day Dec 31",
     KG_PERIOD_DAY,
     {2026, 12, 31, 23, 59, 59},
     {2026, 12, 31, 0, 0, 0},
     {2027, 1, 1, 0, 0, 0}},
    {"week Wednesday",
     KG_PERIOD_WEEK,
     {2026, 3, 18, 13, 45, 12},
     {2026, 3, 16, 0, 0, 0},
     {2026, 3, 23, 0, 0, 0}},
    {"week Monday 00:00:00",
     KG_PERIOD_WEEK,
     {2026, 3, 16, 0, 0, 0},
     {2026, 3, 16, 0, 0, 0},
     {2026, 3, 23, 0, 0, 0}},
    {"week Sunday 23:59:59",
     KG_PERIOD_WEEK,
     {2026, 3, 15, 23, 59, 59},
     {2026, 3, 9, 0, 0, 0},
     {2026, 3, 16, 0, 0, 0}},
    {"week across the year",
     KG_PERIOD_WEEK,
     {2026, 12, 31, 12, 0, 0},
     {2026, 12, 28, 0, 0, 0},
     {2027, 1, 4, 0, 0, 0}},
    {"week across a month",
     KG_PERIOD_WEEK,
     {2026, 3, 1, 8, 0, 0},
     {2026, 2, 23, 0, 0, 0},
     {2026, 3, 2, 0, 0, 0}},
    {"week of the epoch",
     KG_PERIOD_WEEK,
     {1970, 1, 1, 0, 0, 0},
     {1969, 12, 29, 0, 0, 0},
     {1970, 1, 5, 0, 0, 0}},
    {"month mid",
     KG_PERIOD_MONTH,
     {2026, 3, 18, 13, 45, 12},
     {2026, 3, 1, 0, 0, 0},
     {2026, 4, 1, 0, 0, 0}},
    {"month end Jan 31 last second",
     KG_PERIOD_MONTH,
     {2026, 1, 31, 23, 59, 59},
     {2026, 1, 1, 0, 0, 0},
     {2026, 2, 1, 0, 0, 0}},
    {"month start Feb 1 first second",
     KG_PERIOD_MONTH,
     {2026, 2, 1, 0, 0, 0},
     {2026, 2, 1, 0, 0, 0},
     {2026, 3, 1, 0, 0, 0}},
    {"month of 30 days",
     KG_PERIOD_MONTH,
     {2026, 4, 30, 23, 59, 59},
     {2026, 4, 1, 0, 0, 0},
     {2026, 5, 1, 0, 0, 0}},
    {"month leap Feb 29",
     KG_PERIOD_MONTH,
     {2024, 2, 29, 23, 59, 59},
     {2024, 2, 1, 0, 0, 0},
     {2024, 3, 1, 0, 0, 0}},
    {"month non-leap Feb",
     KG_PERIOD_MONTH,
     {2026, 2, 28, 12, 0, 0},
     {2026, 2, 1, 0, 0, 0},
     {2026, 3, 1, 0, 0, 0}},
    {"month Dec to Jan",
     KG_PERIOD_MONTH,
     {2026, 12, 31, 23, 59, 59},
     {2026, 12, 1, 0, 0, 0},
     {2027, 1, 1, 0, 0, 0}},
    {"month Jan 1 first second",
     KG_PERIOD_MONTH,
     {2027, 1, 1, 0, 0, 0},
     {2027, 1, 1, 0, 0, 0},
     {2027, 2, 1, 0, 0, 0}},
};

START_TEST(test_start_next)
{
    const ut_period_row_t *row = &ut_period_rows[_i];
    int64_t t = ut_at(row->t);
    int64_t start = kg_period_start(row->period, t);
    int64_t next = kg_period_next(row->period, t);

    ck_assert_msg(start == ut_at(row->start), "%s: start %lld, want %lld",
                  row->what, (long long)start, (long long)ut_at(row->start));
    ck_assert_msg(next == ut_at(row->next), "%s: next %lld, want %lld",
                  row->what, (long long)next, (long long)ut_at(row->next));
    /* The period contains t, and its end is the start of the next one. */
    ck_assert(start <= t && t < next);
    ck_assert_int_eq(kg_period_start(row->period, next), next);
    ck_assert_int_eq(kg_period_start(row->period, next - 1), start);
}
END_TEST

/* Walk a leap year second by boundary: starts chain without gaps. */
START_TEST(test_periods_chain)
{
    static const kg_period_t periods[] = {KG_PERIOD_HOUR, KG_PERIOD_DAY,
                                          KG_PERIOD_WEEK, KG_PERIOD_MONTH};

    for (size_t p = 0; p < UT_NROWS(periods); p++) {
        int64_t t = ut_utc(2023, 12, 20, 0, 0, 0);
        int64_t end = ut_utc(2025, 1, 10, 0, 0, 0);
        int count = 0;

        t = kg_period_start(periods[p], t);
        while (t < end) {
            int64_t next = kg_period_next(periods[p], t);

            ck_assert(next > t);
            ck_assert_int_eq(kg_period_start(periods[p], next - 1), t);
            ck_assert_int_eq(kg_period_start(periods[p], next), next);
            t = next;
            count++;
        }
        if (periods[p] == KG_PERIOD_MONTH) {
            ck_assert_int_eq(count, 14); /* Dec 2023 .. Jan 2025 */
        }
    }
}
END_TEST

START_TEST(test_names)
{
    static const kg_period_t all[] = {KG_PERIOD_HOUR, KG_PERIOD_DAY,
                                      KG_PERIOD_WEEK, KG_PERIOD_MONTH};
    static const char *const bad[] = {"",      "year", "Day",   "days",
                                      "hour ", "none", "minute"};
    kg_period_t p = KG_PERIOD_NONE;

    for (size_t i = 0; i < UT_NROWS(all); i++) {
        ck_assert(kg_period_parse(kg_period_name(all[i]), &p));
        ck_assert_int_eq(p, all[i]);
    }
    ck_assert_str_eq(kg_period_name(KG_PERIOD_HOUR), "hour");
    ck_assert_str_eq(kg_period_name(KG_PERIOD_DAY), "day");
    ck_assert_str_eq(kg_period_name(KG_PERIOD_WEEK), "week");
    ck_assert_str_eq(kg_period_name(KG_PERIOD_MONTH), "month");
    ck_assert_str_eq(kg_period_name(KG_PERIOD_NONE), "");
    ck_assert_str_eq(kg_period_name((kg_period_t)99), "");
    for (size_t i = 0; i < UT_NROWS(bad); i++) {
        p = KG_PERIOD_DAY;
        ck_assert_msg(!kg_period_parse(bad[i], &p), "'%s' accepted", bad[i]);
        ck_assert_int_eq(p, KG_PERIOD_DAY);
    }
}
END_TEST

START_TEST(test_none)
{
    ck_assert_int_eq(kg_period_start(KG_PERIOD_NONE, 1234567), 0);
    ck_assert_int_eq(kg_period_next(KG_PERIOD_NONE, 1234567), 0);
}
END_TEST

static Suite *period_suite(void)
{
    Suite *s = suite_create("period");
    TCase *tc = tcase_create("period");

    tcase_add_loop_test(tc, test_start_next, 0, (int)UT_NROWS(ut_period_rows));
    tcase_add_test(tc, test_periods_chain);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_none);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(period_suite());
}
