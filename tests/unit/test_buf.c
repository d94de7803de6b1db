/* Unit tests of the bounded byte buffer: appends, O(1) consumes, moves. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/buf.h"

START_TEST(test_append_consume)
{
    /* A relay: append 1000 bytes, take 7 at a time, interleaved. */
    kg_buf_t b;
    char want[4096];
    size_t wlen = 0;
    size_t taken = 0;
    char chunk[1000];

    kg_buf_init(&b, 1 << 20);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < sizeof(chunk); i++) {
            chunk[i] = (char)('a' + (round * 7 + i) % 26);
        }
        ck_assert_int_eq(kg_buf_append(&b, chunk, sizeof(chunk)), KG_OK);
        memcpy(want + wlen, chunk, sizeof(chunk));
        wlen += sizeof(chunk);
        while (b.len > 300) {
            ck_assert(memcmp(b.data, want + taken, 7) == 0);
            kg_buf_consume(&b, 7);
            taken += 7;
            ck_assert_int_eq(b.data[b.len], '\0');
        }
    }
    ck_assert_uint_eq(b.len, wlen - taken);
    ck_assert(memcmp(b.data, want + taken, b.len) == 0);
    /* Consumed room is reused before growing. */
    ck_assert_uint_le(b.cap, 4096);
    kg_buf_consume(&b, b.len);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_ptr_eq(b.data, b.base);
    kg_buf_free(&b);
}
END_TEST

START_TEST(test_bounds_reserve_steal)
{
    kg_buf_t b;
    char *s;
    size_t n = 0;

    kg_buf_init(&b, 10);
    ck_assert_int_eq(kg_buf_reserve(&b, 1000), KG_OK);
    ck_assert_uint_eq(b.cap, 11); /* capped at max + NUL */
    ck_assert_int_eq(kg_buf_append(&b, "0123456789", 10), KG_OK);
    ck_assert_int_eq(kg_buf_append(&b, "x", 1), KG_ERR_BODY_TOO_LARGE);
    kg_buf_consume(&b, 4);
    /* The steal moves the live bytes to the front of what it returns. */
    s = kg_buf_steal(&b, &n);
    ck_assert_uint_eq(n, 6);
    ck_assert_str_eq(s, "456789");
    ck_assert_ptr_null(b.data);
    free(s);
    kg_buf_free(&b);
}
END_TEST

START_TEST(test_move)
{
    kg_buf_t a;
    kg_buf_t b;
    char *storage;

    kg_buf_init(&a, 100);
    kg_buf_init(&b, 1000);
    ck_assert_int_eq(kg_buf_append(&a, "hello", 5), KG_OK);
    storage = a.base;
    /* Into an empty buffer: no copy, the storage changes hands. */
    ck_assert_int_eq(kg_buf_move(&b, &a), KG_OK);
    ck_assert_ptr_eq(b.base, storage);
    ck_assert_uint_eq(b.max, 1000);
    ck_assert_uint_eq(a.len, 0);
    ck_assert_ptr_null(a.base);
    /* Into a non-empty one: appended. */
    ck_assert_int_eq(kg_buf_append(&a, " world", 6), KG_OK);
    ck_assert_int_eq(kg_buf_move(&b, &a), KG_OK);
    ck_assert_str_eq(b.data, "hello world");
    ck_assert_ptr_null(a.base);
    /* Past dst's max: refused, src emptied, dst unchanged. */
    kg_buf_init(&a, 5000);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(kg_buf_append(&a, "0123456789", 10), KG_OK);
    }
    ck_assert_int_eq(kg_buf_move(&b, &a), KG_ERR_BODY_TOO_LARGE);
    ck_assert_str_eq(b.data, "hello world");
    ck_assert_uint_eq(a.len, 0);
    kg_buf_free(&b);
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("buf");

    tcase_add_test(tc, test_append_consume);
    tcase_add_test(tc, test_bounds_reserve_steal);
    tcase_add_test(tc, test_move);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(buf_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
