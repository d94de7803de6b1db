/* Unit tests of money parsing and printing (integer micro-USD). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "keygate/money.h"
#include "unit_util.h"

typedef struct ut_parse_row {
    const char *in;
    bool ok;
    int64_t micro;        /* when ok */
    const char *diag_has; /* when not ok: part of the message */
} ut_parse_row_t;

static const ut_parse_row_t ut_parse_rows[] = {
    {"25", true, INT64_C(25000000), NULL},
    {"25.00", true, INT64_C(25000000), NULL},
    {"25.5", true, INT64_C(25500000), NULL},
    {"0.000001", true, 1, NULL},
    {"0.000123", true, 123, NULL},
    {"0", true, 0, NULL},
    {"0.0", true, 0, NULL},
    {"000250.50", true, INT64_C(250500000), NULL},
    {"1000000000", true, KG_MONEY_MAX, NULL},
    {"1000000000.000000", true, KG_MONEY_MAX, NULL},
    {"999999999.999999", true, KG_MONEY_MAX - 1, NULL},
    {"-1", false, 0, "negative"},
    {"-0.5", false, 0, "negative"},
    {"1.2.3", false, 0, "not a decimal"},
    {"", false, 0, "required"},
    {"1e3", false, 0, "not a decimal"},
    {" 1", false, 0, "not a decimal"},
    {"1 ", false, 0, "not a decimal"},
    {"1.", false, 0, "not a decimal"},
    {".5", false, 0, "not a decimal"},
    {".", false, 0, "not a decimal"},
    {"+1", false, 0, "not a decimal"},
    {"1,5", false, 0, "not a decimal"},
    {"0x10", false, 0, "not a decimal"},
    {"abc", false, 0, "not a decimal"},
    {"$5", false, 0, "not a decimal"},
    {"1.0000001", false, 0, "6 decimals"},
    {"0.0000000", false, 0, "6 decimals"},
    {"1000000000.000001", false, 0, "maximum"},
    {"1000000001", false, 0, "maximum"},
    {"99999999999999999999999999", false, 0, "maximum"},
};

START_TEST(test_parse)
{
    const ut_parse_row_t *row = &ut_parse_rows[_i];
    int64_t micro = -42;
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_money_parse(row->in, &micro, &diag);

    if (row->ok) {
        ck_assert_msg(rc == KG_OK, "'%s' refused: %s", row->in, diag.msg);
        ck_assert_msg(micro == row->micro, "'%s' gave %lld", row->in,
                      (long long)micro);
    } else {
        ck_assert_msg(rc == KG_ERR_INVAL, "'%s' accepted as %lld", row->in,
                      (long long)micro);
        ck_assert_msg(micro == -42, "'%s' wrote the output", row->in);
        ck_assert_msg(strstr(diag.msg, row->diag_has) != NULL,
                      "'%s': diag '%s' lacks '%s'", row->in, diag.msg,
                      row->diag_has);
    }
}
END_TEST

START_TEST(test_parse_null)
{
    int64_t micro = -42;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_money_parse(NULL, &micro, &diag), KG_ERR_INVAL);
    ck_assert_int_eq(micro, -42);
    /* A NULL diag is allowed. */
    ck_assert_int_eq(kg_money_parse("x", &micro, NULL), KG_ERR_INVAL);
}
END_TEST

START_TEST(test_parse_diag_bounded)
{
    char in[300];
    int64_t micro;
    kg_diag_t diag = {{0}};

    memset(in, '9', sizeof(in) - 1);
    in[sizeof(in) - 1] = '\0';
    in[0] = 'x';
    ck_assert_int_eq(kg_money_parse(in, &micro, &diag), KG_ERR_INVAL);
    /* The message quotes at most 32 characters of the input. */
    ck_assert(strlen(diag.msg) < 150);
}
END_TEST

typedef struct ut_format_row {
    int64_t micro;
    const char *out;
} ut_format_row_t;

static const ut_format_row_t ut_format_rows[] = {
    {INT64_C(250500000), "250.50"},
    {0, "0.00"},
    {123, "0.000123"},
    {INT64_C(1000000000), "1000.00"},
    {1, "0.000001"},
    {10, "0.00001"},
    {INT64_C(1500000), "1.50"},
    {INT64_C(1230000), "1.23"},
    {INT64_C(1234500), "1.2345"},
    {INT64_C(25000000), "25.00"},
    {KG_MONEY_MAX, "1000000000.00"},
    {-1, "-0.000001"},
    {INT64_C(-250500000), "-250.50"},
    {INT64_MAX, "9223372036854.775807"},
    {INT64_MIN, "-9223372036854.775808"},
};

START_TEST(test_format)
{
    const ut_format_row_t *row = &ut_format_rows[_i];
    char buf[KG_MONEY_STRLEN];

    ck_assert_str_eq(kg_money_format(row->micro, buf, sizeof(buf)), row->out);
}
END_TEST

START_TEST(test_round_trip)
{
    static const int64_t values[] = {
        0,
        1,
        9,
        10,
        99,
        100,
        123456,
        999999,
        1000000,
        1000001,
        INT64_C(250500000),
        INT64_C(987654321012345),
        KG_MONEY_MAX,
    };

    for (size_t i = 0; i < UT_NROWS(values); i++) {
        char buf[KG_MONEY_STRLEN];
        int64_t back = -1;
        kg_diag_t diag = {{0}};

        kg_money_format(values[i], buf, sizeof(buf));
        ck_assert_msg(kg_money_parse(buf, &back, &diag) == KG_OK, "%s: %s", buf,
                      diag.msg);
        ck_assert_int_eq(back, values[i]);
    }
}
END_TEST

START_TEST(test_format_small_buffer)
{
    char buf[4];

    /* Truncated, but always a string. */
    kg_money_format(INT64_C(250500000), buf, sizeof(buf));
    ck_assert_str_eq(buf, "250");
}
END_TEST

static Suite *money_suite(void)
{
    Suite *s = suite_create("money");
    TCase *tc = tcase_create("money");

    tcase_add_loop_test(tc, test_parse, 0, (int)UT_NROWS(ut_parse_rows));
    tcase_add_test(tc, test_parse_null);
    tcase_add_test(tc, test_parse_diag_bounded);
    tcase_add_loop_test(tc, test_format, 0, (int)UT_NROWS(ut_format_rows));
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_format_small_buffer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(money_suite());
}
