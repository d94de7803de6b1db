/* Unit tests of RFC 3339 UTC timestamps: printing and operator input. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "keygate/timefmt.h"
#include "unit_util.h"

typedef struct ut_civil {
    int y, mo, d, h, mi, s;
} ut_civil_t;

static int64_t ut_at(ut_civil_t c)
{
    return ut_utc(c.y, c.mo, c.d, c.h, c.mi, c.s);
}

typedef struct ut_parse_row {
    const char *in;
    bool ok;
    ut_civil_t utc; /* when ok: the UTC wall time */
    int64_t offset; /* seconds to add to utc (offset inputs) */
} ut_parse_row_t;

static const ut_parse_row_t ut_parse_rows[] = {
    {"2026-12-31", true, {2026, 12, 31, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59Z", true, {2026, 12, 31, 23, 59, 59}, 0},
    {"2026-12-31t23:59:59z", true, {2026, 12, 31, 23, 59, 59}, 0},
    {"2026-12-31 23:59:59Z", true, {2026, 12, 31, 23, 59, 59}, 0},
    {"2026-12-31T23:59:59+00:00", true, {2026, 12, 31, 23, 59, 59}, 0},
    {"2026-12-31T23:59:59+05:30", true, {2026, 12, 31, 23, 59, 59}, -19800},
    {"2026-12-31T23:59:59-08:00", true, {2026, 12, 31, 23, 59, 59}, 28800},
    {"2027-01-01T01:00:00+01:00", true, {2027, 1, 1, 1, 0, 0}, -3600},
    {"2026-12-31T20:00:00-23:59", true, {2026, 12, 31, 20, 0, 0}, 86340},
    {"1970-01-01T00:00:00Z", true, {1970, 1, 1, 0, 0, 0}, 0},
    {"2024-02-29", true, {2024, 2, 29, 0, 0, 0}, 0},
    {"2100-03-01T12:00:00Z", true, {2100, 3, 1, 12, 0, 0}, 0},
    {"", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-13-01", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-00-10", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-32", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-00", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T24:00:00Z", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:60:00Z", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59Z", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59.5Z", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59+0530", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59+05", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59+24:00", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59+05:60", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59+05:30x", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59ZZ", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59 Z", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31Z", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31x", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31 ", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31\n", false, {0, 0, 0, 0, 0, 0}, 0},
    {"31/12/2026", false, {0, 0, 0, 0, 0, 0}, 0},
    {"20261231", false, {0, 0, 0, 0, 0, 0}, 0},
    {"+2026-12-31", false, {0, 0, 0, 0, 0, 0}, 0},
    {"tomorrow", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:59Z2026-12-31T23:59:59Z", false, {0, 0, 0, 0, 0, 0}, 0},
    /* Impossible dates and loose shapes are refused, not rolled over. */
    {"2026-02-30", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-04-31", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T23:59:60Z", false, {0, 0, 0, 0, 0, 0}, 0},
    {" 2026-12-31", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-1-5", false, {0, 0, 0, 0, 0, 0}, 0},
    {"2026-12-31T 23:59:59Z", false, {0, 0, 0, 0, 0, 0}, 0},
};

START_TEST(test_parse)
{
    const ut_parse_row_t *row = &ut_parse_rows[_i];
    int64_t t = -42;
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_time_parse(row->in, &t, &diag);

    if (row->ok) {
        int64_t want = ut_at(row->utc) + row->offset;

        ck_assert_msg(rc == KG_OK, "'%s' refused: %s", row->in, diag.msg);
        ck_assert_msg(t == want, "'%s' gave %lld, want %lld", row->in,
                      (long long)t, (long long)want);
    } else {
        ck_assert_msg(rc == KG_ERR_INVAL, "'%s' accepted as %lld", row->in,
                      (long long)t);
        ck_assert_msg(t == -42, "'%s' wrote the output", row->in);
        ck_assert_ptr_nonnull(strstr(diag.msg, "bad time"));
    }
}
END_TEST

START_TEST(test_parse_null_and_long)
{
    char long_in[200];
    int64_t t = -42;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_time_parse(NULL, &t, &diag), KG_ERR_INVAL);
    memset(long_in, '1', sizeof(long_in) - 1);
    long_in[sizeof(long_in) - 1] = '\0';
    memcpy(long_in, "2026-12-31", 10);
    ck_assert_int_eq(kg_time_parse(long_in, &t, &diag), KG_ERR_INVAL);
    /* The message quotes at most 40 characters of the input. */
    ck_assert(strlen(diag.msg) < 160);
    ck_assert_int_eq(t, -42);
}
END_TEST

typedef struct ut_format_row {
    ut_civil_t at;
    const char *full;
    const char *brief;
} ut_format_row_t;

static const ut_format_row_t ut_format_rows[] = {
    {{1970, 1, 1, 0, 0, 0}, "1970-01-01T00:00:00Z", "1970-01-01 00:00"},
    {{2026, 12, 31, 23, 59, 59}, "2026-12-31T23:59:59Z", "2026-12-31 23:59"},
    {{2026, 11, 22, 5, 30, 0}, "2026-11-22T05:30:00Z", "2026-11-22 05:30"},
    {{2024, 2, 29, 12, 0, 7}, "2024-02-29T12:00:07Z", "2024-02-29 12:00"},
    {{2038, 1, 19, 3, 14, 8}, "2038-01-19T03:14:08Z", "2038-01-19 03:14"},
    {{1969, 12, 31, 23, 59, 59}, "1969-12-31T23:59:59Z", "1969-12-31 23:59"},
};

START_TEST(test_format)
{
    const ut_format_row_t *row = &ut_format_rows[_i];
    char buf[KG_TIME_STRLEN];
    int64_t back = -1;
    kg_diag_t diag = {{0}};

    ck_assert_str_eq(kg_time_format(ut_at(row->at), buf, sizeof(buf)),
                     row->full);
    ck_assert_str_eq(kg_time_format_short(ut_at(row->at), buf, sizeof(buf)),
                     row->brief);
    /* What we print, we read back. */
    ck_assert_int_eq(kg_time_parse(row->full, &back, &diag), KG_OK);
    ck_assert_int_eq(back, ut_at(row->at));
}
END_TEST

/* Milliseconds: three digits, and the right second before 1970 too. */
START_TEST(test_format_ms)
{
    char buf[KG_TIME_STRLEN];
    int64_t t = ut_at((ut_civil_t){2026, 3, 15, 12, 34, 56});

    ck_assert_str_eq(kg_time_format_ms(t * 1000 + 7, buf, sizeof(buf)),
                     "2026-03-15T12:34:56.007Z");
    ck_assert_str_eq(kg_time_format_ms(t * 1000 + 999, buf, sizeof(buf)),
                     "2026-03-15T12:34:56.999Z");
    ck_assert_str_eq(kg_time_format_ms(0, buf, sizeof(buf)),
                     "1970-01-01T00:00:00.000Z");
    ck_assert_str_eq(kg_time_format_ms(-1, buf, sizeof(buf)),
                     "1969-12-31T23:59:59.999Z");
}
END_TEST

START_TEST(test_format_small_buffer)
{
    char buf[8];

    kg_time_format(0, buf, sizeof(buf));
    ck_assert_uint_lt(strlen(buf), sizeof(buf));
    kg_time_format_short(0, buf, sizeof(buf));
    ck_assert_uint_lt(strlen(buf), sizeof(buf));
}
END_TEST

static Suite *timefmt_suite(void)
{
    Suite *s = suite_create("timefmt");
    TCase *tc = tcase_create("timefmt");

    tcase_add_loop_test(tc, test_parse, 0, (int)UT_NROWS(ut_parse_rows));
    tcase_add_test(tc, test_parse_null_and_long);
    tcase_add_loop_test(tc, test_format, 0, (int)UT_NROWS(ut_format_rows));
    tcase_add_test(tc, test_format_small_buffer);
    tcase_add_test(tc, test_format_ms);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(timefmt_suite());
}
