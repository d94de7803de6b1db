/* Unit tests of the error vocabulary: names, HTTP mapping, public texts. */
#include <stdbool.h>
#include <string.h>

#include "keygate/err.h"
#include "unit_util.h"

START_TEST(test_every_error_complete)
{
    for (int i = 0; i < KG_ERR__COUNT; i++) {
        kg_err_t e = (kg_err_t)i;
        const char *name = kg_err_name(e);
        const char *msg = kg_err_message(e);
        int status = kg_err_http_status(e);

        ck_assert_ptr_nonnull(name);
        ck_assert_msg(name[0] != '\0' && strcmp(name, "UNKNOWN") != 0,
                      "error %d has no name", i);
        ck_assert_msg(status >= 200 && status <= 599, "%s: status %d", name,
                      status);
        ck_assert_ptr_nonnull(msg);
        ck_assert_msg(msg[0] != '\0', "%s: no message", name);
        ck_assert_ptr_nonnull(kg_err_type(e));
        ck_assert_ptr_nonnull(kg_err_code(e));
        if (e == KG_OK) {
            ck_assert_int_eq(status, 200);
            continue;
        }
        ck_assert_msg(status >= 400, "%s: status %d", name, status);
        ck_assert_msg(kg_err_type(e)[0] != '\0', "%s: no type", name);
        ck_assert_msg(kg_err_code(e)[0] != '\0', "%s: no code", name);
        /* Names are unique. */
        for (int j = 0; j < i; j++) {
            ck_assert_str_ne(name, kg_err_name((kg_err_t)j));
        }
    }
}
END_TEST

/* A message template has at most one "%s" and no other conversion. */
START_TEST(test_message_templates)
{
    for (int i = 0; i < KG_ERR__COUNT; i++) {
        const char *msg = kg_err_message((kg_err_t)i);
        int conversions = 0;

        for (const char *p = strchr(msg, '%'); p != NULL;
             p = strchr(p + 1, '%')) {
            ck_assert_msg(p[1] == 's', "%s: bad conversion in '%s'",
                          kg_err_name((kg_err_t)i), msg);
            conversions++;
        }
        ck_assert_msg(conversions <= 1, "%s: %d conversions",
                      kg_err_name((kg_err_t)i), conversions);
    }
}
END_TEST

START_TEST(test_out_of_range)
{
    kg_err_t bad[] = {KG_ERR__COUNT, (kg_err_t)(KG_ERR__COUNT + 100),
                      (kg_err_t)-1};

    for (size_t i = 0; i < UT_NROWS(bad); i++) {
        ck_assert_str_eq(kg_err_name(bad[i]), "UNKNOWN");
        ck_assert_int_eq(kg_err_http_status(bad[i]), 500);
        ck_assert_str_eq(kg_err_type(bad[i]), "server_error");
        ck_assert_str_eq(kg_err_code(bad[i]), "internal_error");
        ck_assert_str_eq(kg_err_message(bad[i]), "Internal server error.");
    }
}
END_TEST

typedef struct ut_public_row {
    kg_err_t err;
    int status;
    const char *message; /* product.md section 4, verbatim */
} ut_public_row_t;

/* The exact texts of product.md section 4 (401, 402 and templated rows). */
static const ut_public_row_t ut_public_rows[] = {
    {KG_ERR_NO_KEY, 401,
     "Unauthorized: No API key provided. Expected 'Authorization: Bearer "
     "your-api-token' header or 'x-api-key: your-api-token' header"},
    {KG_ERR_INVALID_KEY, 401,
     "Unauthorized: Invalid keygate API token. Please make sure the token is "
     "not deleted or disabled."},
    {KG_ERR_KEY_EXPIRED, 401, "Unauthorized: keygate API key has expired."},
    {KG_ERR_USAGE_LIMIT, 401,
     "Unauthorized: keygate API key reached its usage limit."},
    {KG_ERR_PERIOD_LIMIT, 401,
     "Unauthorized: keygate API key reached its current period usage limit."},
    {KG_ERR_NO_CREDITS, 402,
     "Payment required: workspace has no credits left."},
    {KG_ERR_ACCESS_DENIED, 403, "Access denied: %s"},
    {KG_ERR_UNKNOWN_MODEL, 404,
     "The model '%s' does not exist or you do not have access to it."},
};

START_TEST(test_public_messages)
{
    const ut_public_row_t *row = &ut_public_rows[_i];

    ck_assert_str_eq(kg_err_message(row->err), row->message);
    ck_assert_int_eq(kg_err_http_status(row->err), row->status);
    if (row->status == 401) {
        ck_assert_str_eq(kg_err_type(row->err), "authentication_error");
    }
}
END_TEST

/* Every 401 of the table above and the admin listener's, and nothing else,
 * maps to 401. */
START_TEST(test_401_set)
{
    int n401 = 0;

    for (int i = 0; i < KG_ERR__COUNT; i++) {
        if (kg_err_http_status((kg_err_t)i) == 401) {
            n401++;
        }
    }
    ck_assert_int_eq(n401, 6); /* and ADMIN_AUTH, the admin listener's */
}
END_TEST

/* The other statuses the product spec names. */
START_TEST(test_statuses)
{
    ck_assert_int_eq(kg_err_http_status(KG_OK), 200);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_RATE_LIMITED), 429);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_AUTH_THROTTLED), 429);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_BAD_REQUEST), 400);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_BODY_TOO_LARGE), 413);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_BAD_GATEWAY), 502);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_GATEWAY_TIMEOUT), 504);
    /* Store trouble is never a free pass: always 503. */
    ck_assert_int_eq(kg_err_http_status(KG_ERR_STORE), 503);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_STORE_BUSY), 503);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_STORE_MISSING), 503);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_STORE_CORRUPT), 503);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_STORE_VERSION), 503);
    ck_assert_int_eq(kg_err_http_status(KG_ERR_UNAVAILABLE), 503);
    /* The store's own errors, and only those, are store errors. */
    for (int e = 0; e < KG_ERR__COUNT; e++) {
        ck_assert_int_eq(kg_err_is_store((kg_err_t)e),
                         strncmp(kg_err_name((kg_err_t)e), "STORE", 5) == 0);
    }
    ck_assert_str_eq(kg_err_name(KG_ERR_INVALID_KEY), "INVALID_KEY");
    ck_assert_str_eq(kg_err_code(KG_ERR_INVALID_KEY), "invalid_api_key");
    ck_assert_str_eq(kg_err_code(KG_ERR_KEY_EXPIRED), "expired_api_key");
}
END_TEST

START_TEST(test_diag)
{
    kg_diag_t diag = {{0}};
    char big[KG_DIAG_MAX * 2];

    kg_diag_set(&diag, "key %s: %d", "abc", 42);
    ck_assert_str_eq(diag.msg, "key abc: 42");
    ck_assert_int_eq(kg_diag_fail(&diag, KG_ERR_INVAL, "bad %s", "name"),
                     KG_ERR_INVAL);
    ck_assert_str_eq(diag.msg, "bad name");
    /* NULL diag is allowed and still returns the error. */
    kg_diag_set(NULL, "x");
    ck_assert_int_eq(kg_diag_fail(NULL, KG_ERR_STORE, "x"), KG_ERR_STORE);
    /* Long messages are cut, never overflow. */
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    kg_diag_set(&diag, "%s", big);
    ck_assert_uint_eq(strlen(diag.msg), KG_DIAG_MAX - 1);
}
END_TEST

static Suite *err_suite(void)
{
    Suite *s = suite_create("err");
    TCase *tc = tcase_create("err");

    tcase_add_test(tc, test_every_error_complete);
    tcase_add_test(tc, test_message_templates);
    tcase_add_test(tc, test_out_of_range);
    tcase_add_loop_test(tc, test_public_messages, 0,
                        (int)UT_NROWS(ut_public_rows));
    tcase_add_test(tc, test_401_set);
    tcase_add_test(tc, test_statuses);
    tcase_add_test(tc, test_diag);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(err_suite());
}
