/* Unit tests of operator durations ("30d", "1h30m") in whole seconds. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "keygate/duration.h"
#include "unit_util.h"

#define UT_DAY INT64_C(86400)

typedef struct ut_parse_row {
    const char *in;
    bool ok;
    int64_t seconds;      /* when ok */
    const char *diag_has; /* when not ok */
} ut_parse_row_t;

static const ut_parse_row_t ut_parse_rows[] = {
    {"30d", true, 30 * UT_DAY, NULL},
    {"90d", true, 90 * UT_DAY, NULL},
    {"1h30m", true, 5400, NULL},
    {"0", true, 0, NULL},
    {"0s", true, 0, NULL},
    {"0d", true, 0, NULL},
    {"45s", true, 45, NULL},
    {"5m", true, 300, NULL},
    {"12h", true, 12 * 3600, NULL},
    {"2w", true, 14 * UT_DAY, NULL},
    {"1w1d", true, 8 * UT_DAY, NULL},
    {"1d1h1m1s", true, UT_DAY + 3661, NULL},
    {"30m1h", true, 5400, NULL},
    {"36500d", true, KG_DURATION_MAX, NULL},
    {"3153600000s", true, KG_DURATION_MAX, NULL},
    {"3x", false, 0, "bad duration '3x'"},
    {"-1d", false, 0, "bad duration '-1d'"},
    {"", false, 0, "required"},
    {"d", false, 0, "bad duration 'd'"},
    {"30", false, 0, "bad duration"},
    {"1h30", false, 0, "bad duration"},
    {" 30d", false, 0, "bad duration"},
    {"30d ", false, 0, "bad duration"},
    {"1.5h", false, 0, "bad duration"},
    {"1D", false, 0, "bad duration"},
    {"+1d", false, 0, "bad duration"},
    {"1d-1h", false, 0, "bad duration"},
    {"00", false, 0, "bad duration"},
    {"36501d", false, 0, "100 years"},
    {"3153600001s", false, 0, "100 years"},
    {"5215w", false, 0, "100 years"},
    {"36500d1s", false, 0, "100 years"},
    {"99999999999999999999s", false, 0, "100 years"},
    {"9223372036854775808s", false, 0, "100 years"},
};

START_TEST(test_parse)
{
    const ut_parse_row_t *row = &ut_parse_rows[_i];
    int64_t seconds = -42;
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_duration_parse(row->in, &seconds, &diag);

    if (row->ok) {
        ck_assert_msg(rc == KG_OK, "'%s' refused: %s", row->in, diag.msg);
        ck_assert_msg(seconds == row->seconds, "'%s' gave %lld", row->in,
                      (long long)seconds);
    } else {
        ck_assert_msg(rc == KG_ERR_INVAL, "'%s' accepted as %lld", row->in,
                      (long long)seconds);
        ck_assert_msg(seconds == -42, "'%s' wrote the output", row->in);
        ck_assert_msg(strstr(diag.msg, row->diag_has) != NULL,
                      "'%s': diag '%s' lacks '%s'", row->in, diag.msg,
                      row->diag_has);
    }
}
END_TEST

START_TEST(test_parse_null)
{
    int64_t seconds = -42;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_duration_parse(NULL, &seconds, &diag), KG_ERR_INVAL);
    ck_assert_int_eq(seconds, -42);
    ck_assert_int_eq(kg_duration_parse("x", &seconds, NULL), KG_ERR_INVAL);
}
END_TEST

typedef struct ut_format_row {
    int64_t seconds;
    const char *out;
} ut_format_row_t;

static const ut_format_row_t ut_format_rows[] = {
    {90 * UT_DAY, "90d"},
    {5400, "1h30m"},
    {0, "0s"},
    {-5, "0s"},
    {1, "1s"},
    {60, "1m"},
    {3661, "1h1m1s"},
    {UT_DAY + 1, "1d1s"},
    {14 * UT_DAY, "14d"},
    {KG_DURATION_MAX, "36500d"},
};

START_TEST(test_format)
{
    const ut_format_row_t *row = &ut_format_rows[_i];
    char buf[KG_DURATION_STRLEN];

    ck_assert_str_eq(kg_duration_format(row->seconds, buf, sizeof(buf)),
                     row->out);
}
END_TEST

START_TEST(test_round_trip)
{
    static const int64_t values[] = {
        1,
        59,
        60,
        61,
        3599,
        3600,
        3601,
        86399,
        86400,
        90061,
        7 * UT_DAY,
        90 * UT_DAY + 3723,
        KG_DURATION_MAX,
    };

    for (size_t i = 0; i < UT_NROWS(values); i++) {
        char buf[KG_DURATION_STRLEN];
        int64_t back = -1;
        kg_diag_t diag = {{0}};

        kg_duration_format(values[i], buf, sizeof(buf));
        ck_assert_msg(kg_duration_parse(buf, &back, &diag) == KG_OK, "%s: %s",
                      buf, diag.msg);
        ck_assert_int_eq(back, values[i]);
    }
}
END_TEST

START_TEST(test_format_small_buffer)
{
    char buf[4];
    char one[1];

    /* Truncated, but always a string and a prefix of the full text. */
    kg_duration_format(UT_DAY + 3661, buf, sizeof(buf));
    ck_assert_uint_lt(strlen(buf), sizeof(buf));
    ck_assert_int_eq(strncmp(buf, "1d1h1m1s", strlen(buf)), 0);
    one[0] = 'x';
    kg_duration_format(5, one, sizeof(one));
    ck_assert_int_eq(one[0], '\0');
    /* len 0 writes nothing. */
    kg_duration_format(5, one, 0);
}
END_TEST

static Suite *duration_suite(void)
{
    Suite *s = suite_create("duration");
    TCase *tc = tcase_create("duration");

    tcase_add_loop_test(tc, test_parse, 0, (int)UT_NROWS(ut_parse_rows));
    tcase_add_test(tc, test_parse_null);
    tcase_add_loop_test(tc, test_format, 0, (int)UT_NROWS(ut_format_rows));
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_format_small_buffer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(duration_suite());
}
