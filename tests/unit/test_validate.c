/* Unit tests of the bounds and shape checks for names, text and JSON. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/validate.h"
#include "unit_util.h"

typedef struct ut_row {
    const char *what;
    const char *in;
    bool ok;
} ut_row_t;

/* A new string of n copies of unit (free it). */
static char *ut_repeat(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * n + 1);

    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++) {
        memcpy(s + i * u, unit, u);
    }
    s[u * n] = '\0';
    return s;
}

static const ut_row_t ut_name_rows[] = {
    {"plain", "production-backend", true},
    {"one byte", "a", true},
    {"inner spaces", "my key 2", true},
    {"UTF-8 two-byte", "caf\xc3\xa9", true},
    {"UTF-8 three-byte", "\xe2\x98\x95 coffee", true},
    {"UTF-8 four-byte", "rocket \xf0\x9f\x9a\x80", true},
    {"punctuation", "team/a:b_c.d@e", true},
    {"empty", "", false},
    {"leading space", " key", false},
    {"trailing space", "key ", false},
    {"only a space", " ", false},
    {"tab", "a\tb", false},
    {"newline", "a\nb", false},
    {"carriage return", "a\rb", false},
    {"escape", "a\x1b[31m", false},
    {"DEL", "a\x7f", false},
    {"lone continuation byte", "a\x80", false},
    {"truncated sequence", "a\xe2\x82", false},
    {"bad continuation", "\xc3\x28", false},
    {"overlong slash", "\xc0\xaf", false},
    {"overlong three-byte", "\xe0\x80\xaf", false},
    {"surrogate", "\xed\xa0\x80", false},
    {"beyond U+10FFFF", "\xf4\x90\x80\x80", false},
    {"0xF8 lead byte", "\xf8\x88\x80\x80\x80", false},
    {"0xFF byte", "a\xff", false},
};

START_TEST(test_name)
{
    const ut_row_t *row = &ut_name_rows[_i];
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_validate_name(row->in, "key name", &diag);

    if (row->ok) {
        ck_assert_msg(rc == KG_OK, "%s refused: %s", row->what, diag.msg);
    } else {
        ck_assert_msg(rc == KG_ERR_INVAL, "%s accepted", row->what);
        ck_assert_msg(strstr(diag.msg, "key name") != NULL,
                      "%s: diag '%s' does not name the field", row->what,
                      diag.msg);
    }
}
END_TEST

START_TEST(test_name_length)
{
    kg_diag_t diag = {{0}};
    char *s64 = ut_repeat("a", 64);
    char *s65 = ut_repeat("a", 65);
    char *u64 = ut_repeat("\xc3\xa9", 32); /* 32 characters, 64 bytes */
    char *u66 = ut_repeat("\xc3\xa9", 33); /* 33 characters, 66 bytes */

    ck_assert_int_eq(kg_validate_name(s64, "key name", &diag), KG_OK);
    ck_assert_int_eq(kg_validate_name(s65, "key name", &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "too long"));
    ck_assert_ptr_nonnull(strstr(diag.msg, "64"));
    ck_assert_int_eq(kg_validate_name(u64, "key name", &diag), KG_OK);
    ck_assert_int_eq(kg_validate_name(u66, "key name", &diag), KG_ERR_INVAL);
    ck_assert_int_eq(kg_validate_name(NULL, "key name", &diag), KG_ERR_INVAL);
    free(s64);
    free(s65);
    free(u64);
    free(u66);
}
END_TEST

START_TEST(test_text)
{
    kg_diag_t diag = {{0}};
    char *max = ut_repeat("x", KG_DESCRIPTION_MAX);
    char *over = ut_repeat("x", KG_DESCRIPTION_MAX + 1);

    ck_assert_int_eq(kg_validate_text("", 10, "description", &diag), KG_OK);
    ck_assert_int_eq(
        kg_validate_text("line one\nline two\twith tab", 100, "d", &diag),
        KG_OK);
    ck_assert_int_eq(kg_validate_text(" caf\xc3\xa9 ", 100, "d", &diag), KG_OK);
    ck_assert_int_eq(kg_validate_text("a\rb", 100, "d", &diag), KG_ERR_INVAL);
    ck_assert_int_eq(kg_validate_text("a\x01", 100, "d", &diag), KG_ERR_INVAL);
    ck_assert_int_eq(kg_validate_text("a\xc3", 100, "d", &diag), KG_ERR_INVAL);
    ck_assert_int_eq(
        kg_validate_text(max, KG_DESCRIPTION_MAX, "description", &diag), KG_OK);
    ck_assert_int_eq(
        kg_validate_text(over, KG_DESCRIPTION_MAX, "description", &diag),
        KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "description"));
    free(max);
    free(over);
}
END_TEST

static const ut_row_t ut_metadata_rows[] = {
    {"empty object", "{}", true},
    {"object", "{\"team\": \"a\", \"n\": 1, \"nested\": {\"x\": [1, 2]}}",
     true},
    {"array", "[]", false},
    {"array of objects", "[{\"a\": 1}]", false},
    {"string", "\"text\"", false},
    {"number", "42", false},
    {"null", "null", false},
    {"duplicate keys", "{\"a\": 1, \"a\": 2}", false},
    {"nested duplicate keys", "{\"a\": {\"b\": 1, \"b\": 1}}", false},
    {"not JSON", "{", false},
    {"trailing garbage", "{} x", false},
    {"empty", "", false},
};

START_TEST(test_metadata)
{
    const ut_row_t *row = &ut_metadata_rows[_i];
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_validate_metadata(row->in, &diag);

    if (row->ok) {
        ck_assert_msg(rc == KG_OK, "%s refused: %s", row->what, diag.msg);
    } else {
        ck_assert_msg(rc == KG_ERR_INVAL, "%s accepted", row->what);
        ck_assert_ptr_nonnull(strstr(diag.msg, "metadata"));
    }
}
END_TEST

/* {"k":"xxx...x"} of exactly total bytes. */
static char *ut_object_of(size_t total)
{
    char *fill = ut_repeat("x", total - 9);
    char *s = malloc(total + 1);

    ck_assert_ptr_nonnull(s);
    snprintf(s, total + 1, "{\"k\": \"%s\"}", fill);
    ck_assert_uint_eq(strlen(s), total);
    free(fill);
    return s;
}

START_TEST(test_metadata_length)
{
    kg_diag_t diag = {{0}};
    char *max = ut_object_of(KG_METADATA_MAX);
    char *over = ut_object_of(KG_METADATA_MAX + 1);

    ck_assert_int_eq(kg_validate_metadata(max, &diag), KG_OK);
    ck_assert_int_eq(kg_validate_metadata(over, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "too long"));
    free(max);
    free(over);
}
END_TEST

static const ut_row_t ut_rules_rows[] = {
    {"empty", "{}", true},
    {"allow models", "{\"allow_models\": [\"gpt-4o\", \"claude-*\"]}", true},
    {"every list",
     "{\"allow_models\": [\"a\"], \"deny_models\": [\"b\"], "
     "\"allow_providers\": [\"openai\"], \"deny_providers\": [\"x\"], "
     "\"allow_operations\": [\"chat\", \"messages\"], "
     "\"deny_operations\": [\"embeddings\"], "
     "\"allow_ip_cidrs\": [\"10.0.0.0/8\", \"::1/128\"], "
     "\"deny_ip_cidrs\": [\"192.168.0.0/16\"]}",
     true},
    {"every operation",
     "{\"allow_operations\": [\"chat\", \"completions\", \"embeddings\", "
     "\"responses\", \"messages\", \"models\", \"moderations\", \"other\"]}",
     true},
    {"empty list", "{\"deny_models\": []}", true},
    {"prices", "{\"max_input_price\": \"5.00\", \"max_output_price\": \"15\"}",
     true},
    {"tiny price", "{\"max_input_price\": \"0.000001\"}", true},
    {"unknown member", "{\"allow_model\": [\"x\"]}", false},
    {"unknown member among good", "{\"allow_models\": [\"x\"], \"y\": 1}",
     false},
    {"list as string", "{\"allow_models\": \"gpt-4o\"}", false},
    {"list as object", "{\"allow_models\": {}}", false},
    {"list as null", "{\"allow_models\": null}", false},
    {"number value", "{\"allow_models\": [1]}", false},
    {"null value", "{\"allow_models\": [null]}", false},
    {"nested array value", "{\"allow_models\": [[\"a\"]]}", false},
    {"unknown operation", "{\"allow_operations\": [\"chat\", \"fly\"]}", false},
    {"operation wrong case", "{\"deny_operations\": [\"Chat\"]}", false},
    {"empty string value", "{\"deny_models\": [\"\"]}", false},
    {"control char in value", "{\"allow_models\": [\"a\\u0001b\"]}", false},
    {"newline in value", "{\"allow_models\": [\"a\\nb\"]}", false},
    {"price as bad string", "{\"max_input_price\": \"abc\"}", false},
    {"price negative", "{\"max_output_price\": \"-1\"}", false},
    {"price as number", "{\"max_input_price\": 5}", false},
    {"price with 7 decimals", "{\"max_input_price\": \"0.0000001\"}", false},
    {"price empty", "{\"max_input_price\": \"\"}", false},
    {"rules as array", "[]", false},
    {"rules as string", "\"x\"", false},
    {"duplicate member",
     "{\"allow_models\": [\"a\"], \"allow_models\": [\"b\"]}", false},
    {"not JSON", "{\"allow_models\": [", false},
};

START_TEST(test_rules)
{
    const ut_row_t *row = &ut_rules_rows[_i];
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_validate_rules(row->in, &diag);

    if (row->ok) {
        ck_assert_msg(rc == KG_OK, "%s refused: %s", row->what, diag.msg);
    } else {
        ck_assert_msg(rc == KG_ERR_INVAL, "%s accepted", row->what);
        ck_assert_msg(diag.msg[0] != '\0', "%s: no diag", row->what);
    }
}
END_TEST

/* {"allow_models": ["m", "m", ...]} with n values of len bytes each. */
static char *ut_rules_list(size_t n, size_t len)
{
    char *value = ut_repeat("m", len);
    size_t cap = 64 + n * (len + 4);
    char *s = malloc(cap);
    size_t used;

    ck_assert_ptr_nonnull(s);
    used = (size_t)snprintf(s, cap, "{\"allow_models\": [");
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(s + used, cap - used, "%s\"%s\"",
                                 i ? ", " : "", value);
    }
    snprintf(s + used, cap - used, "]}");
    free(value);
    return s;
}

START_TEST(test_rules_bounds)
{
    kg_diag_t diag = {{0}};
    char *max_values = ut_rules_list(KG_RULE_VALUES_MAX, 4);
    char *too_many = ut_rules_list(KG_RULE_VALUES_MAX + 1, 4);
    char *max_len = ut_rules_list(1, KG_RULE_VALUE_MAX);
    char *too_long = ut_rules_list(1, KG_RULE_VALUE_MAX + 1);
    char *huge = ut_rules_list(60, 300); /* over KG_RULES_MAX bytes */

    ck_assert_int_eq(kg_validate_rules(max_values, &diag), KG_OK);
    ck_assert_int_eq(kg_validate_rules(too_many, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "allow_models"));
    ck_assert_int_eq(kg_validate_rules(max_len, &diag), KG_OK);
    ck_assert_int_eq(kg_validate_rules(too_long, &diag), KG_ERR_INVAL);
    ck_assert_uint_gt(strlen(huge), KG_RULES_MAX);
    ck_assert_int_eq(kg_validate_rules(huge, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "too long"));
    free(max_values);
    free(too_many);
    free(max_len);
    free(too_long);
    free(huge);
}
END_TEST

START_TEST(test_rules_diag_names_member)
{
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_validate_rules("{\"allow_modelz\": []}", &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "allow_modelz"));
    ck_assert_int_eq(
        kg_validate_rules("{\"deny_operations\": [\"teleport\"]}", &diag),
        KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "teleport"));
    ck_assert_int_eq(kg_validate_rules("{\"max_output_price\": \"x\"}", &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "max_output_price"));
}
END_TEST

static Suite *validate_suite(void)
{
    Suite *s = suite_create("validate");
    TCase *tc = tcase_create("validate");

    tcase_add_loop_test(tc, test_name, 0, (int)UT_NROWS(ut_name_rows));
    tcase_add_test(tc, test_name_length);
    tcase_add_test(tc, test_text);
    tcase_add_loop_test(tc, test_metadata, 0, (int)UT_NROWS(ut_metadata_rows));
    tcase_add_test(tc, test_metadata_length);
    tcase_add_loop_test(tc, test_rules, 0, (int)UT_NROWS(ut_rules_rows));
    tcase_add_test(tc, test_rules_bounds);
    tcase_add_test(tc, test_rules_diag_names_member);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(validate_suite());
}
