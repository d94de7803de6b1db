/* Unit tests of the access lines and of the log they go to. */
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keygate/access.h"
#include "keygate/log.h"
#include "unit_util.h"

/* A forwarded, streamed request as the proxy sums it up. */
static void summary(kg_request_summary_t *s)
{
    memset(s, 0, sizeof(*s));
    s->request_id = "req_abc123";
    s->method = "POST";
    s->route = "chat";
    s->endpoint = "/v1/chat/completions";
    s->status = 200;
    s->key_id = "AbCdEfGhIjKl";
    s->workspace_id = "ws_default";
    s->model = "gpt-4o";
    s->provider = "openai";
    s->client_ip = "203.0.113.7";
    s->duration_us = 1234567;
    s->upstream_us = 1000;
    s->ttft_us = 250;
    s->prompt_tokens = 12;
    s->completion_tokens = 34;
    s->cached_tokens = 5;
    s->cost = 1250;
}

/* kg_access_format into a buffer, parsed (asserted: one JSON line). */
static json_t *format_json(const kg_request_summary_t *s, int admin)
{
    char line[KG_LOG_LINE_MAX];
    size_t n;
    json_error_t err;
    json_t *j;

    kg_log_set_format(KG_LOG_JSON);
    n = kg_access_format(s, admin, line, sizeof(line));
    kg_log_set_format(KG_LOG_TEXT);
    ck_assert_uint_gt(n, 0);
    ck_assert_int_eq(line[n - 1], '\n');
    ck_assert_ptr_null(memchr(line, '\n', n - 1));
    j = json_loadb(line, n, 0, &err);
    ck_assert_msg(j != NULL, "%s: %.*s", err.text, (int)n, line);
    return j;
}

START_TEST(test_json_fields)
{
    kg_request_summary_t s;
    json_t *j;

    summary(&s);
    j = format_json(&s, 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "access");
    ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "info");
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "time"))),
                      strlen("2025-01-31T23:59:59.123Z"));
    ck_assert_str_eq(json_string_value(json_object_get(j, "request_id")),
                     "req_abc123");
    ck_assert_str_eq(json_string_value(json_object_get(j, "route")),
                     "/v1/chat/completions");
    ck_assert_str_eq(json_string_value(json_object_get(j, "operation")),
                     "chat");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "key_id")),
                     "AbCdEfGhIjKl");
    ck_assert_str_eq(json_string_value(json_object_get(j, "workspace_id")),
                     "ws_default");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "cached_tokens")),
                     5);
    ck_assert_str_eq(json_string_value(json_object_get(j, "cost")), "0.00125");
    ck_assert(json_real_value(json_object_get(j, "latency_ms")) == 1234.567);
    ck_assert(json_real_value(json_object_get(j, "ttft_ms")) == 0.25);
    ck_assert(json_is_null(json_object_get(j, "error")));
    json_decref(j);

    /* The admin listener's: a token, no usage. */
    s.key_id = "TokenId12345";
    s.endpoint = "/admin/v1/keys/{}";
    s.error = "not_found";
    s.status = 404;
    j = format_json(&s, 1);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "admin");
    ck_assert_str_eq(json_string_value(json_object_get(j, "token_id")),
                     "TokenId12345");
    ck_assert_str_eq(json_string_value(json_object_get(j, "error")),
                     "not_found");
    ck_assert_ptr_null(json_object_get(j, "key_id"));
    ck_assert_ptr_null(json_object_get(j, "cost"));
    ck_assert_ptr_null(json_object_get(j, "ttft_ms"));
    json_decref(j);
}
END_TEST

/* None is null in JSON and "-" in text; a field never spans words. */
START_TEST(test_text_and_none)
{
    kg_request_summary_t s;
    char line[KG_LOG_LINE_MAX];
    size_t n;
    json_t *j;

    memset(&s, 0, sizeof(s));
    s.method = "GET";
    s.route = "other";
    s.status = 404;
    s.ttft_us = -1;
    s.client_ip = "two words\n";
    j = format_json(&s, 0);
    ck_assert(json_is_null(json_object_get(j, "request_id")));
    ck_assert(json_is_null(json_object_get(j, "model")));
    ck_assert(json_is_null(json_object_get(j, "ttft_ms")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "client_ip")),
                     "two words\n");
    json_decref(j);

    n = kg_access_format(&s, 0, line, sizeof(line));
    line[n] = '\0';
    ck_assert_ptr_nonnull(strstr(line,
                                 " info access request_id=- method=GET route=- "
                                 "operation=other status=404 key_id=- "));
    ck_assert_ptr_nonnull(strstr(line, " ttft_ms=- client_ip=two?words? "));
    ck_assert(strchr(line, '\n') == line + n - 1); /* one line */
}
END_TEST

/* Quotes, control characters and bytes that are not UTF-8 stay one valid
 * JSON line; a value too long for the line is cut, the line still ends. */
START_TEST(test_json_escaping_and_bounds)
{
    kg_request_summary_t s;
    char *big = malloc(3 * KG_LOG_LINE_MAX);
    json_t *j;

    ck_assert_ptr_nonnull(big);
    summary(&s);
    s.model = "a\"b\\c\td\x01\xff\xc3\xa9";
    j = format_json(&s, 0);
    ck_assert_str_eq(json_string_value(json_object_get(j, "model")),
                     "a\"b\\c\td\x01\xef\xbf\xbd\xc3\xa9");
    json_decref(j);

    memset(big, 'x', 3 * KG_LOG_LINE_MAX - 1);
    big[3 * KG_LOG_LINE_MAX - 1] = '\0';
    s.model = big;
    j = format_json(&s, 0);
    ck_assert_uint_lt(strlen(json_string_value(json_object_get(j, "model"))),
                      KG_LOG_LINE_MAX);
    json_decref(j);
    free(big);
}
END_TEST

/* kg_log_json_escape never cuts an escape in half. */
START_TEST(test_escape_cut)
{
    char buf[16];
    size_t used = 0;

    ck_assert(!kg_log_json_escape(buf, 8, &used, "ab\x01\x02"));
    ck_assert_uint_eq(used, 2); /* "ab", not half of \u0001 */
    used = 0;
    ck_assert(kg_log_json_escape(buf, sizeof(buf), &used, "ab\x01"));
    ck_assert_uint_eq(used, 8);
    ck_assert_int_eq(memcmp(buf, "ab\\u0001", 8), 0);
}
END_TEST

/* Lines go to the file named, survive a rename until reopened, then go to
 * the new file; server lines follow the format too. */
START_TEST(test_log_file_and_reopen)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    char moved[UT_PATH_MAX];
    kg_diag_t diag = {{0}};
    char *text;

    ut_tmpdir(dir);
    ut_join(path, dir, "k.log");
    ut_join(moved, dir, "k.log.1");
    ck_assert_int_eq(kg_log_open(path, &diag), KG_OK);
    ck_assert_int_eq(ut_file_mode(path) & ~0640, 0);
    kg_log_set_format(KG_LOG_JSON);
    kg_log_write(KG_LOG_WARN, "first \"%s\"", "quoted");
    ck_assert_int_eq(rename(path, moved), 0);
    kg_log_write(KG_LOG_WARN, "second");
    ck_assert_int_eq(kg_log_reopen(&diag), KG_OK);
    kg_log_set_format(KG_LOG_TEXT);
    kg_log_write(KG_LOG_WARN, "third\nline");
    ck_assert_int_eq(kg_log_open(NULL, &diag), KG_OK); /* stderr again */
    kg_log_write(KG_LOG_WARN, "on stderr");

    text = ut_read_file(moved, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "\"level\":\"warn\",\"type\":\"log\","
                                       "\"msg\":\"first \\\"quoted\\\"\"}\n"));
    ck_assert_ptr_nonnull(strstr(text, "\"msg\":\"second\"}\n"));
    ck_assert_ptr_null(strstr(text, "third"));
    free(text);
    text = ut_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, " warn third line\n"));
    ck_assert_ptr_null(strstr(text, "second"));
    free(text);

    /* A file that cannot be opened keeps the log where it was. */
    ut_join(path, dir, "no/such/dir.log");
    ck_assert_int_eq(kg_log_open(path, &diag), KG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(diag.msg, "no/such/dir.log"));
    ut_tmpdir_remove(dir);
}
END_TEST

static Suite *access_suite(void)
{
    Suite *s = suite_create("access");
    TCase *tc = tcase_create("access");

    tcase_add_test(tc, test_json_fields);
    tcase_add_test(tc, test_text_and_none);
    tcase_add_test(tc, test_json_escaping_and_bounds);
    tcase_add_test(tc, test_escape_cut);
    tcase_add_test(tc, test_log_file_and_reopen);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(access_suite());
}
