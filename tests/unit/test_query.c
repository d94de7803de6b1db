/* Unit tests of the read queries' shared pieces: parameters, cursors, CSV. */
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "keygate/query.h"
#include "unit_util.h"

/* 2026-03-15T12:34:56Z */
#define UT_NOW INT64_C(1773578096)

static const char *const ut_known[] = {"from", "to", "key", NULL};

typedef struct ut_check_row {
    kg_query_param_t p[3];
    size_t n;
    bool ok;
    const char *diag; /* a part of the message when refused */
} ut_check_row_t;

static const ut_check_row_t ut_check_rows[] = {
    {{{"from", "24h"}, {"key", "abc"}}, 2, true, NULL},
    {{{0}}, 0, true, NULL},
    {{{"form", "24h"}}, 1, false, "unknown parameter 'form'"},
    {{{"from", "24h"}, {"from", "1h"}}, 2, false, "from: given more than once"},
    {{{"key", ""}}, 1, false, "key: empty value"},
    {{{"key", "a\nb"}}, 1, false, "key: the value must be"},
    {{{"key", "a\tb"}}, 1, false, "key: the value must be"},
    {{{"key", "a\x7f"}}, 1, false, "key: the value must be"},
    {{{"key", "caf\xc3\xa9"}}, 1, true, NULL},
    {{{NULL, "x"}}, 1, false, "unknown parameter ''"},
};

START_TEST(test_check)
{
    const ut_check_row_t *row = &ut_check_rows[_i];
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_query_check(row->p, row->n, ut_known, &diag);

    if (row->ok) {
        ck_assert_msg(rc == KG_OK, "row %d: %s", _i, diag.msg);
    } else {
        ck_assert_int_eq(rc, KG_ERR_INVAL);
        ck_assert_msg(strstr(diag.msg, row->diag) != NULL, "row %d: '%s'", _i,
                      diag.msg);
    }
}
END_TEST

START_TEST(test_check_bounds)
{
    char big[KG_QUERY_VALUE_MAX + 2];
    kg_query_param_t p[KG_QUERY_PARAMS_MAX + 1];
    kg_diag_t diag = {{0}};

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    p[0].name = "key";
    p[0].value = big;
    ck_assert_int_eq(kg_query_check(p, 1, ut_known, &diag), KG_ERR_INVAL);
    big[KG_QUERY_VALUE_MAX] = '\0'; /* exactly the maximum */
    ck_assert_int_eq(kg_query_check(p, 1, ut_known, &diag), KG_OK);
    for (size_t i = 0; i < UT_NROWS(p); i++) {
        p[i].name = "key";
        p[i].value = "x";
    }
    ck_assert_int_eq(kg_query_check(p, UT_NROWS(p), ut_known, &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "too many parameters"));
    ck_assert_str_eq(kg_query_get(p, 1, "key"), "x");
    ck_assert_ptr_null(kg_query_get(p, 1, "from"));
}
END_TEST

typedef struct ut_time_row {
    const char *in;
    bool ok;
    int64_t want;
} ut_time_row_t;

static const ut_time_row_t ut_time_rows[] = {
    {"now", true, UT_NOW},
    {"24h", true, UT_NOW - 86400},
    {"30d", true, UT_NOW - 30 * 86400},
    {"1h30m", true, UT_NOW - 5400},
    {"0", true, UT_NOW},
    {"2026-03-01", true, INT64_C(1772323200)},
    {"2026-03-01T10:00:00Z", true, INT64_C(1772359200)},
    {"2026-03-01T10:00:00+02:00", true, INT64_C(1772352000)},
    {"1970-01-01", true, 0},
    {"", false, 0},
    {"yesterday", false, 0},
    {"-1d", false, 0},
    {"24", false, 0},
    {"2026-02-30", false, 0},
    {"2026-03-01T10:00Z", false, 0},
    {"100000d", false, 0}, /* before 1970 */
    {"NOW", false, 0},
};

START_TEST(test_time)
{
    const ut_time_row_t *row = &ut_time_rows[_i];
    kg_diag_t diag = {{0}};
    int64_t t = -7;
    kg_err_t rc = kg_query_time("from", row->in, UT_NOW, &t, &diag);

    if (row->ok) {
        ck_assert_msg(rc == KG_OK, "'%s': %s", row->in, diag.msg);
        ck_assert_int_eq(t, row->want);
    } else {
        ck_assert_msg(rc == KG_ERR_INVAL, "'%s' accepted", row->in);
        ck_assert_msg(strncmp(diag.msg, "from: ", 6) == 0, "%s", diag.msg);
        ck_assert_int_eq(t, -7);
    }
}
END_TEST

typedef struct ut_limit_row {
    const char *in;
    bool ok;
    size_t want;
} ut_limit_row_t;

static const ut_limit_row_t ut_limit_rows[] = {
    {NULL, true, 100},         {"1", true, 1},
    {"1000", true, 1000},      {"0", false, 0},
    {"1001", false, 0},        {"-1", false, 0},
    {"+5", false, 0},          {"5x", false, 0},
    {" 5", false, 0},          {"", false, 0},
    {"99999999999", false, 0}, {"0010", true, 10},
};

START_TEST(test_limit)
{
    const ut_limit_row_t *row = &ut_limit_rows[_i];
    kg_diag_t diag = {{0}};
    size_t v = 0;
    kg_err_t rc = kg_query_limit("limit", row->in, 100, 1000, &v, &diag);

    if (row->ok) {
        ck_assert_int_eq(rc, KG_OK);
        ck_assert_uint_eq(v, row->want);
    } else {
        ck_assert_int_eq(rc, KG_ERR_INVAL);
        ck_assert_ptr_nonnull(strstr(diag.msg, "limit: "));
    }
}
END_TEST

START_TEST(test_copy)
{
    char dst[4];
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_query_copy("model", "abc", dst, sizeof(dst), &diag),
                     KG_OK);
    ck_assert_str_eq(dst, "abc");
    ck_assert_int_eq(kg_query_copy("model", NULL, dst, sizeof(dst), &diag),
                     KG_OK);
    ck_assert_str_eq(dst, "");
    ck_assert_int_eq(kg_query_copy("model", "abcd", dst, sizeof(dst), &diag),
                     KG_ERR_INVAL);
    ck_assert_str_eq(diag.msg, "model: longer than 3 bytes");
}
END_TEST

/* ---- cursors ------------------------------------------------------------- */

typedef struct ut_pos {
    int64_t at;
    int64_t id;
} ut_pos_t;

static const ut_pos_t ut_positions[] = {
    {0, 1},
    {1, 1},
    {INT64_C(1773578096123), 42},
    {INT64_MAX, INT64_MAX},
    {INT64_C(1) << 40, (INT64_C(1) << 40) + 7},
};

START_TEST(test_cursor_round_trip)
{
    const ut_pos_t *p = &ut_positions[_i];
    uint32_t scope = kg_query_scope_str(KG_QUERY_SCOPE_INIT, "key-a");
    char c[KG_QUERY_CURSOR_STRLEN];
    int64_t at = -1;
    int64_t id = -1;
    kg_diag_t diag = {{0}};

    kg_query_cursor_encode(KG_QUERY_CURSOR_EVENTS, p->at, p->id, scope, c);
    ck_assert_uint_eq(strlen(c), KG_QUERY_CURSOR_LEN);
    ck_assert_uint_eq(strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                                "tuvwxyz0123456789-_"),
                      KG_QUERY_CURSOR_LEN);
    ck_assert_int_eq(kg_query_cursor_decode(c, KG_QUERY_CURSOR_EVENTS, scope,
                                            &at, &id, &diag),
                     KG_OK);
    ck_assert_int_eq(at, p->at);
    ck_assert_int_eq(id, p->id);
    /* Another listing, other filters. */
    ck_assert_int_eq(kg_query_cursor_decode(c, KG_QUERY_CURSOR_AUDIT, scope,
                                            &at, &id, &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "another listing"));
    ck_assert_int_eq(kg_query_cursor_decode(c, KG_QUERY_CURSOR_EVENTS,
                                            scope + 1, &at, &id, &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "other filters"));
}
END_TEST

/* Every single-character change of a cursor is refused. */
START_TEST(test_cursor_tampered)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.";
    char c[KG_QUERY_CURSOR_STRLEN];
    char t[KG_QUERY_CURSOR_STRLEN + 1];
    int64_t at = -1;
    int64_t id = -1;
    kg_diag_t diag = {{0}};
    size_t refused = 0;

    kg_query_cursor_encode(KG_QUERY_CURSOR_EVENTS, INT64_C(1773578096123), 99,
                           7, c);
    for (size_t i = 0; i < KG_QUERY_CURSOR_LEN; i++) {
        for (const char *a = alphabet; *a; a++) {
            if (*a == c[i]) {
                continue;
            }
            memcpy(t, c, sizeof(c));
            t[i] = *a;
            ck_assert_msg(kg_query_cursor_decode(t, KG_QUERY_CURSOR_EVENTS, 7,
                                                 &at, &id,
                                                 &diag) == KG_ERR_INVAL,
                          "'%s' (position %zu) accepted", t, i);
            ck_assert_ptr_nonnull(strstr(diag.msg, "cursor: "));
            refused++;
        }
    }
    ck_assert_uint_eq(refused, KG_QUERY_CURSOR_LEN * (sizeof(alphabet) - 2));
    ck_assert_int_eq(at, -1);
}
END_TEST

/* Shapes: lengths, padding, other encodings, impossible positions. */
START_TEST(test_cursor_malformed)
{
    char c[KG_QUERY_CURSOR_STRLEN];
    char t[KG_QUERY_CURSOR_STRLEN + 8];
    unsigned char raw[26];
    int64_t at;
    int64_t id;
    kg_diag_t diag = {{0}};
    static const char *const bad[] = {
        "",
        "x",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };

    for (size_t i = 0; i < UT_NROWS(bad); i++) {
        ck_assert_int_eq(kg_query_cursor_decode(bad[i], KG_QUERY_CURSOR_EVENTS,
                                                0, &at, &id, &diag),
                         KG_ERR_INVAL);
    }
    kg_query_cursor_encode(KG_QUERY_CURSOR_EVENTS, 5, 6, 0, c);
    snprintf(t, sizeof(t), "%s=", c); /* padded */
    ck_assert_int_eq(
        kg_query_cursor_decode(t, KG_QUERY_CURSOR_EVENTS, 0, &at, &id, &diag),
        KG_ERR_INVAL);
    snprintf(t, sizeof(t), "%.34s", c); /* cut */
    ck_assert_int_eq(
        kg_query_cursor_decode(t, KG_QUERY_CURSOR_EVENTS, 0, &at, &id, &diag),
        KG_ERR_INVAL);
    /* Impossible positions, even with a valid checksum. */
    kg_query_cursor_encode(KG_QUERY_CURSOR_EVENTS, -1, 6, 0, c);
    ck_assert_int_eq(
        kg_query_cursor_decode(c, KG_QUERY_CURSOR_EVENTS, 0, &at, &id, &diag),
        KG_ERR_INVAL);
    kg_query_cursor_encode(KG_QUERY_CURSOR_EVENTS, 5, 0, 0, c);
    ck_assert_int_eq(
        kg_query_cursor_decode(c, KG_QUERY_CURSOR_EVENTS, 0, &at, &id, &diag),
        KG_ERR_INVAL);
    /* Standard base64 ('+', '/') of a cursor with such bytes is refused. */
    memset(raw, 0xfb, sizeof(raw));
    ck_assert_ptr_nonnull(sodium_bin2base64(t, sizeof(t), raw, sizeof(raw),
                                            sodium_base64_VARIANT_ORIGINAL));
    t[KG_QUERY_CURSOR_LEN] = '\0';
    ck_assert_int_eq(
        kg_query_cursor_decode(t, KG_QUERY_CURSOR_EVENTS, 0, &at, &id, &diag),
        KG_ERR_INVAL);
}
END_TEST

START_TEST(test_scope)
{
    uint32_t a = kg_query_scope_str(kg_query_scope_str(0, "ab"), "");
    uint32_t b = kg_query_scope_str(kg_query_scope_str(0, "a"), "b");

    ck_assert_uint_ne(a, b);
    ck_assert_uint_eq(kg_query_scope_int(0, 400), kg_query_scope_int(0, 400));
    ck_assert_uint_ne(kg_query_scope_int(0, 400), kg_query_scope_int(0, 499));
}
END_TEST

/* ---- CSV ----------------------------------------------------------------- */

typedef struct ut_csv_row {
    const char *in;
    const char *out;
} ut_csv_row_t;

static const ut_csv_row_t ut_csv_rows[] = {
    {"", ""},
    {"plain", "plain"},
    {"a,b", "\"a,b\""},
    {"say \"hi\"", "\"say \"\"hi\"\"\""},
    {"\"", "\"\"\"\""},
    {"line\nbreak", "\"line\nbreak\""},
    {"cr\rhere", "\"cr\rhere\""},
    {" spaced ", " spaced "},
    {"gpt-4o/2024", "gpt-4o/2024"},
    {"caf\xc3\xa9", "caf\xc3\xa9"},
};

START_TEST(test_csv_field)
{
    const ut_csv_row_t *row = &ut_csv_rows[_i];
    char buf[64];
    char want[80];
    size_t pos = 0;

    ck_assert(kg_query_csv_field(buf, sizeof(buf), &pos, "x", true));
    ck_assert(kg_query_csv_field(buf, sizeof(buf), &pos, row->in, false));
    ck_assert(kg_query_csv_end(buf, sizeof(buf), &pos));
    snprintf(want, sizeof(want), "x,%s\r\n", row->out);
    ck_assert_str_eq(buf, want);
    ck_assert_uint_eq(pos, strlen(want));
}
END_TEST

/* A field that does not fit leaves the buffer as it was. */
START_TEST(test_csv_bounded)
{
    char buf[8];
    size_t pos = 0;

    ck_assert(kg_query_csv_field(buf, sizeof(buf), &pos, "abc", true));
    ck_assert(!kg_query_csv_field(buf, sizeof(buf), &pos, "defg", false));
    ck_assert_uint_eq(pos, 3);
    ck_assert_str_eq(buf, "abc");
    ck_assert(kg_query_csv_int(buf, sizeof(buf), &pos, 42, false));
    ck_assert_str_eq(buf, "abc,42");
    ck_assert(!kg_query_csv_end(buf, sizeof(buf), &pos));
    ck_assert(!kg_query_csv_field(buf, sizeof(buf), &pos, "\"", false));
    ck_assert_str_eq(buf, "abc,42");
    pos = 0;
    ck_assert(!kg_query_csv_field(buf, sizeof(buf), &pos, "a,b,c,d", true));
    ck_assert(kg_query_csv_field(buf, sizeof(buf), &pos, "a,b,c", true));
    ck_assert_str_eq(buf, "\"a,b,c\"");
}
END_TEST

static json_t *ut_int_json(const void *item)
{
    return json_integer(*(const int *)item);
}

START_TEST(test_page_json)
{
    const int items[] = {3, 1, 2};
    json_t *j =
        kg_query_page_json(items, 3, sizeof(*items), ut_int_json, "CURSOR");
    char *text = json_dumps(j, JSON_COMPACT);

    ck_assert_str_eq(text, "{\"events\":[3,1,2],\"nextCursor\":\"CURSOR\"}");
    free(text);
    json_decref(j);
    j = kg_query_page_json(items, 0, sizeof(*items), ut_int_json, "");
    text = json_dumps(j, JSON_COMPACT);
    ck_assert_str_eq(text, "{\"events\":[],\"nextCursor\":null}");
    free(text);
    json_decref(j);
}
END_TEST

static Suite *query_suite(void)
{
    Suite *s = suite_create("query");
    TCase *tc = tcase_create("query");

    tcase_add_loop_test(tc, test_check, 0, (int)UT_NROWS(ut_check_rows));
    tcase_add_test(tc, test_check_bounds);
    tcase_add_loop_test(tc, test_time, 0, (int)UT_NROWS(ut_time_rows));
    tcase_add_loop_test(tc, test_limit, 0, (int)UT_NROWS(ut_limit_rows));
    tcase_add_test(tc, test_copy);
    tcase_add_loop_test(tc, test_cursor_round_trip, 0,
                        (int)UT_NROWS(ut_positions));
    tcase_add_test(tc, test_cursor_tampered);
    tcase_add_test(tc, test_cursor_malformed);
    tcase_add_test(tc, test_scope);
    tcase_add_loop_test(tc, test_csv_field, 0, (int)UT_NROWS(ut_csv_rows));
    tcase_add_test(tc, test_csv_bounded);
    tcase_add_test(tc, test_page_json);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(query_suite());
}
