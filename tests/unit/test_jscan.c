/* Unit tests of the JSON byte scans (shape, top-level member, strings). */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/jscan.h"

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))

typedef struct shape_row {
    const char *name;
    const char *body;
    bool shape;
    const char *usage; /* the usage member's bytes, NULL: none found */
} shape_row_t;

static const shape_row_t shape_rows[] = {
    {"chat answer",
     "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
     "\"usage\":{\"prompt_tokens\":1}}",
     true, "{\"prompt_tokens\":1}"},
    {"usage first", "{\"usage\":{\"a\":[1,{\"b\":2}]},\"z\":1}", true,
     "{\"a\":[1,{\"b\":2}]}"},
    {"last one wins", "{\"usage\":{\"a\":1},\"usage\":{\"a\":2}}", true,
     "{\"a\":2}"},
    {"nested usage is not top level",
     "{\"choices\":[{\"usage\":{\"a\":1}}],\"x\":{\"usage\":{\"b\":2}}}", true,
     NULL},
    {"usage as a string value", "{\"a\":\"usage\",\"b\":\"usage\"}", true,
     NULL},
    {"usage not an object", "{\"usage\":null}", true, NULL},
    {"usage array", "{\"usage\":[1]}", true, "[1]"},
    {"quotes and brackets in strings",
     "{\"x\":\"}]\\\"{[\",\"usage\" : {\"s\":\"}\"} }", true, "{\"s\":\"}\"}"},
    {"white space around", " \n{\"usage\":{}}\r\n ", true, "{}"},
    {"array root", "[{\"usage\":{\"a\":1}}]", true, NULL},
    {"numbers are not checked", "{\"a\":[1.2.3,--4]}", true, NULL},
    {"empty", "", false, NULL},
    {"plain text", "upstream error", false, NULL},
    {"a string root", "\"x\"", false, NULL},
    {"unclosed", "{\"usage\":{\"a\":1}", false, NULL},
    {"unclosed string", "{\"a\":\"b}", false, NULL},
    {"mismatched", "{\"a\":[1}]", false, NULL},
    {"extra close", "{}}", false, NULL},
    {"trailing bytes", "{\"usage\":{}} x", false, NULL},
    {"two roots", "{}{}", false, NULL},
    {"html", "<html><body>502</body></html>", false, NULL},
};

START_TEST(test_shape)
{
    const shape_row_t *row = &shape_rows[_i];
    kg_jscan_member_t m;
    bool shape;

    shape = kg_jscan_shape(row->body, strlen(row->body), "usage", &m);
    ck_assert_msg(shape == row->shape, "%s: shape %d", row->name, shape);
    ck_assert_msg(m.found == (row->usage != NULL), "%s: found %d", row->name,
                  m.found);
    if (row->usage != NULL) {
        ck_assert_uint_eq(m.end - m.start, strlen(row->usage));
        ck_assert_msg(
            memcmp(row->body + m.start, row->usage, strlen(row->usage)) == 0,
            "%s: span", row->name);
    }
    /* Without a member: the same shape. */
    ck_assert(kg_jscan_shape(row->body, strlen(row->body), NULL, NULL) ==
              row->shape);
}
END_TEST

START_TEST(test_shape_large)
{
    /* 1 MB of numbers in an array, then usage: found, at the end. */
    size_t n = 1024 * 1024;
    char *b = malloc(n + 64);
    size_t k = 0;
    kg_jscan_member_t m;

    ck_assert_ptr_nonnull(b);
    k += (size_t)snprintf(b, 64, "{\"data\":[");
    while (k < n) {
        memcpy(b + k, "-0.0123456,", 11);
        k += 11;
    }
    k--; /* the last comma */
    memcpy(b + k, "],\"usage\":{\"t\":1}}", 18);
    k += 18;
    ck_assert(kg_jscan_shape(b, k, "usage", &m));
    ck_assert(m.found);
    ck_assert_uint_eq(m.end, k - 1);
    /* Cut anywhere inside: no shape, no member. */
    ck_assert(!kg_jscan_shape(b, k - 1, "usage", &m));
    ck_assert(!m.found);
    ck_assert(!kg_jscan_shape(b, n / 2, "usage", &m));
    free(b);
}
END_TEST

START_TEST(test_deep)
{
    /* Deeper than the scan's bound: refused, never a stack overflow. */
    size_t n = 100000;
    char *b = malloc(2 * n);
    ck_assert_ptr_nonnull(b);
    memset(b, '[', n);
    memset(b + n, ']', n);
    ck_assert(!kg_jscan_shape(b, 2 * n, "usage", NULL));
    ck_assert(kg_jscan_shape(b + n - 100, 200, "usage", NULL));
    free(b);
}
END_TEST

START_TEST(test_plain_and_string_end)
{
    static const struct {
        const char *s;
        size_t plain;
        size_t end; /* kg_jscan_string_end from 0 */
    } rows[] = {
        {"", 0, 0},
        {"abc\"", 3, 3},
        {"0123456789abcdefghij\"x", 20, 20},
        {"0123456789abcdefghij\\\"x\"", 20, 23},
        {"0123456789abcdef\x01", 16, 17},
        {"0123456789abcdefg\xC3\xA9\"", 17, 19},
        {"\\\\\"", 0, 2},
        {"no end at all, longer than sixteen", 34, 34},
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        size_t n = strlen(rows[i].s);

        ck_assert_msg(kg_jscan_plain(rows[i].s, n) == rows[i].plain,
                      "row %zu plain", i);
        ck_assert_msg(kg_jscan_string_end(rows[i].s, n, 0) == rows[i].end,
                      "row %zu end", i);
    }
}
END_TEST

static Suite *jscan_suite(void)
{
    Suite *s = suite_create("jscan");
    TCase *tc = tcase_create("jscan");

    tcase_add_loop_test(tc, test_shape, 0, (int)NROWS(shape_rows));
    tcase_add_test(tc, test_shape_large);
    tcase_add_test(tc, test_deep);
    tcase_add_test(tc, test_plain_and_string_end);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(jscan_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
