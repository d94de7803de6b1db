/* Unit tests of request body inspection and rewriting. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "keygate/request.h"

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))

/* Part of every refused body: a diag must never echo it. */
#define MARK "ZQX"

/* ---- inspect: accepted bodies ---- */

typedef struct good_row {
    const char *name;
    const char *body;
    const char *model; /* NULL: has_model false */
    bool stream;
    bool include_usage;
    int64_t max_tokens;
    int64_t estimate; /* -1: not checked */
} good_row_t;

static const good_row_t good_rows[] = {
    /* "Hello, world" = 12 bytes -> 3, + 4 for one message. */
    {"openai chat",
     "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
     "\"Hello, world\"}]}",
     "gpt-4o", false, false, KG_NONE, 7},
    {"streaming with usage",
     "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{"
     "\"include_usage\":true},\"max_tokens\":100,\"messages\":[]}",
     "gpt-4o", true, true, 100, 0},
    {"include_usage false",
     "{\"model\":\"m\",\"stream\":true,\"stream_options\":{"
     "\"include_usage\":false}}",
     "m", true, false, KG_NONE, 0},
    {"stream_options without include_usage",
     "{\"model\":\"m\",\"stream\":true,\"stream_options\":{}}", "m", true,
     false, KG_NONE, 0},
    {"largest max wins",
     "{\"model\":\"m\",\"max_tokens\":100,\"max_completion_tokens\":300,"
     "\"max_output_tokens\":200}",
     "m", false, false, 300, 0},
    {"max zero", "{\"model\":\"m\",\"max_output_tokens\":0}", "m", false, false,
     0, 0},
    {"nulls are absent",
     "{\"model\":\"m\",\"stream\":null,\"max_tokens\":null,"
     "\"stream_options\":null}",
     "m", false, false, KG_NONE, 0},
    {"include_usage null",
     "{\"model\":\"m\",\"stream_options\":{\"include_usage\":null}}", "m",
     false, false, KG_NONE, 0},
    {"stream false", "{\"model\":\"m\",\"stream\":false}", "m", false, false,
     KG_NONE, 0},
    {"no model", "{\"messages\":[]}", NULL, false, false, KG_NONE, 0},
    {"empty object", "{}", NULL, false, false, KG_NONE, 0},
    {"utf-8 model", "{\"model\":\"mod\xC3\xA8le-\xE2\x98\x83\"}",
     "mod\xC3\xA8le-\xE2\x98\x83", false, false, KG_NONE, 0},
    {"escaped model", "{\"model\":\"gpt\\u002d4\"}", "gpt-4", false, false,
     KG_NONE, 0},
    {"provider/model", "{\"model\":\"openai/gpt-4o\"}", "openai/gpt-4o", false,
     false, KG_NONE, 0},
    /* Anthropic: system 8 + "Hi" 2 + "there" 5 = 15 -> 4, + 2 * 4. */
    {"anthropic",
     "{\"model\":\"claude\",\"max_tokens\":1024,\"system\":\"Be brief\","
     "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
     "\"text\":\"Hi\"},{\"type\":\"image\",\"source\":{\"type\":\"base64\","
     "\"data\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}}]},{\"role\":"
     "\"assistant\",\"content\":\"there\"}]}",
     "claude", false, false, 1024, 12},
    /* Responses: instructions 4 + input 8 = 12 -> 3, no messages. */
    {"responses string input",
     "{\"model\":\"m\",\"instructions\":\"abcd\",\"input\":\"abcdefgh\"}", "m",
     false, false, KG_NONE, 3},
    /* Responses items: "abcd" -> 1, + 4 for the item. */
    {"responses items",
     "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":"
     "\"input_text\",\"text\":\"abcd\"}]}]}",
     "m", false, false, KG_NONE, 5},
    /* Embeddings: "abc" + "defgh" = 8 -> 2. */
    {"embeddings", "{\"model\":\"e\",\"input\":[\"abc\",\"defgh\"]}", "e",
     false, false, KG_NONE, 2},
    /* Token ids: 3 * 4 bytes -> 3. */
    {"token prompt", "{\"model\":\"c\",\"prompt\":[1,2,3]}", "c", false, false,
     KG_NONE, 3},
    /* Tool calls: arguments 7 bytes -> 2, + 4. */
    {"tool call",
     "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
     "[{\"id\":\"abcdefghijklmnopqrstuvwxyz\",\"function\":{\"name\":"
     "\"lookup\",\"arguments\":\"{\\\"a\\\":1}\"}}]}]}",
     "m", false, false, KG_NONE, 6},
    {"brackets inside strings",
     "{\"model\":\"m\",\"x\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"{{{{\"}",
     "m", false, false, KG_NONE, 0},
    {"whitespace", " \r\n\t{ \"model\" : \"m\" } \n", "m", false, false,
     KG_NONE, 0},
    /* Duplicates below the top level are the provider's to judge. */
    {"duplicate nested", "{\"model\":\"m\",\"x\":{\"a\":1,\"a\":2}}", "m",
     false, false, KG_NONE, 0},
    {"surrogate pair model", "{\"model\":\"m\\ud83d\\ude00\"}",
     "m\xF0\x9F\x98\x80", false, false, KG_NONE, 0},
    /* Numbers keygate does not read are checked for grammar, not range. */
    {"numbers out of range elsewhere",
     "{\"model\":\"m\",\"seed\":123456789012345678901234567890,"
     "\"t\":1e400,\"u\":-0.5E-3,\"v\":[0,-0,1.0e+2]}",
     "m", false, false, KG_NONE, 0},
    /* "a\nb" is 3 bytes, "\u00e9" 2, a pair 4: 9 -> 3, + 4. */
    {"estimate unescapes",
     "{\"model\":\"m\",\"messages\":[{\"content\":\"a\\nb\\u00e9"
     "\\ud83d\\ude00\"}]}",
     "m", false, false, KG_NONE, 7},
    {"max_tokens at the int64 bound",
     "{\"model\":\"m\",\"max_tokens\":9223372036854775807}", "m", false, false,
     INT64_MAX, 0},
    {"escaped max_tokens name", "{\"model\":\"m\",\"max_\\u0074okens\":7}", "m",
     false, false, 7, 0},
    {"escaped stream_options",
     "{\"model\":\"m\",\"stream_\\u006fptions\":{\"include_usage\":true}}", "m",
     false, true, KG_NONE, 0},
};

START_TEST(test_inspect_good)
{
    const good_row_t *row = &good_rows[_i];
    kg_request_info_t info;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    rc = kg_request_inspect(row->body, strlen(row->body), &info, &diag);
    ck_assert_msg(rc == KG_OK, "%s: %s", row->name, diag.msg);
    ck_assert(info.has_model == (row->model != NULL));
    ck_assert_str_eq(info.model, row->model ? row->model : "");
    ck_assert_msg(info.stream == row->stream, "%s: stream", row->name);
    ck_assert_msg(info.client_include_usage == row->include_usage,
                  "%s: include_usage", row->name);
    ck_assert_msg(info.max_tokens == row->max_tokens, "%s: max %lld", row->name,
                  (long long)info.max_tokens);
    if (row->estimate >= 0) {
        ck_assert_msg(info.input_estimate_tokens == row->estimate,
                      "%s: estimate %lld", row->name,
                      (long long)info.input_estimate_tokens);
    }
}
END_TEST

/* ---- inspect: refused bodies ---- */

typedef struct bad_row {
    const char *name;
    const char *body;
    size_t len; /* 0: strlen(body) */
    const char *diag_has;
} bad_row_t;

static const bad_row_t bad_rows[] = {
    {"empty", "", 0, "empty"},
    {"not json", "hello " MARK, 0, "not valid JSON"},
    {"truncated", "{\"model\":\"" MARK, 0, "not valid JSON"},
    {"trailing garbage", "{\"model\":\"m\"} " MARK, 0, "not valid JSON"},
    {"single quotes", "{'model':'" MARK "'}", 0, "not valid JSON"},
    {"array root", "[\"" MARK "\"]", 0, "JSON object"},
    {"string root", "\"" MARK "\"", 0, "JSON object"},
    {"number root", "42", 0, "JSON object"},
    {"null root", "null", 0, "JSON object"},
    {"duplicate model", "{\"model\":\"a\",\"model\":\"" MARK "\"}", 0,
     "duplicate"},
    {"duplicate in stream_options",
     "{\"stream_options\":{\"include_usage\":false,\"include_usage\":"
     "true},\"x\":\"" MARK "\"}",
     0, "duplicate"},
    {"duplicate escaped in stream_options",
     "{\"stream_options\":{\"a\":1,\"\\u0061\":2},\"x\":\"" MARK "\"}", 0,
     "duplicate"},
    {"duplicate stream_options",
     "{\"stream_options\":{},\"stream_options\":"
     "null,\"x\":\"" MARK "\"}",
     0, "duplicate"},
    {"duplicate far apart", "{\"a\":1,\"b\":[{\"a\":2}],\"a\":\"" MARK "\"}", 0,
     "duplicate"},
    {"lone high surrogate", "{\"x\":\"\\ud83d" MARK "\"}", 0, "surrogate"},
    {"lone low surrogate", "{\"x\":\"\\ude00" MARK "\"}", 0, "surrogate"},
    {"high then not low", "{\"x\":\"\\ud83d\\u0041" MARK "\"}", 0, "surrogate"},
    {"bad escape", "{\"x\":\"\\q" MARK "\"}", 0, "not valid JSON"},
    {"short unicode escape", "{\"x\":\"\\u12" MARK "\"}", 0, "not valid JSON"},
    {"leading zero", "{\"x\":01,\"y\":\"" MARK "\"}", 0, "not valid JSON"},
    {"bare minus", "{\"x\":-,\"y\":\"" MARK "\"}", 0, "not valid JSON"},
    {"dot without digits", "{\"x\":1.,\"y\":\"" MARK "\"}", 0,
     "not valid JSON"},
    {"exponent without digits", "{\"x\":1e+,\"y\":\"" MARK "\"}", 0,
     "not valid JSON"},
    {"plus sign", "{\"x\":+1,\"y\":\"" MARK "\"}", 0, "not valid JSON"},
    {"short literal", "{\"x\":tru,\"y\":\"" MARK "\"}", 0, "not valid JSON"},
    {"capital literal", "{\"x\":True,\"y\":\"" MARK "\"}", 0, "not valid JSON"},
    {"missing comma", "{\"x\":[1 2],\"y\":\"" MARK "\"}", 0, "not valid JSON"},
    {"missing colon", "{\"x\" 1,\"y\":\"" MARK "\"}", 0, "not valid JSON"},
    {"comma for colon", "{\"x\",1,\"y\":\"" MARK "\"}", 0, "not valid JSON"},
    {"trailing comma in object", "{\"x\":\"" MARK "\",}", 0, "not valid JSON"},
    {"trailing comma in array", "{\"x\":[1,],\"y\":\"" MARK "\"}", 0,
     "not valid JSON"},
    {"leading comma", "{,\"x\":\"" MARK "\"}", 0, "not valid JSON"},
    {"number key", "{1:\"" MARK "\"}", 0, "not valid JSON"},
    {"unclosed array", "{\"x\":[\"" MARK "\"", 0, "not valid JSON"},
    {"mismatched close", "{\"x\":[\"" MARK "\"}}", 0, "not valid JSON"},
    {"two roots", "{} {\"" MARK "\":1}", 0, "not valid JSON"},
    {"backslash at the end", "{\"x\":\"" MARK "\\", 0, "not valid JSON"},
    {"invalid utf-8 after the root", "{\"x\":\"" MARK "\"}\xFF", 0, "UTF-8"},
    {"raw newline in a string", "{\"x\":\"a\nb" MARK "\"}", 0,
     "not valid JSON"},
    {"duplicate escaped", "{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", 0,
     "duplicate"},
    {"nul escape", "{\"model\":\"a\\u0000" MARK "\"}", 0, "NUL"},
    {"raw nul", "{\"model\":\"a\0b\"}", 15, "control character"},
    {"raw nul after a literal", "{\"a\":null\0}", 11, "control character"},
    {"raw control outside strings", "{\"a\":1,\x01\"b\":2}", 0,
     "control character"},
    {"raw tab in a string", "{\"model\":\"a\tb\"}", 0, "not valid JSON"},
    {"huge integer", "{\"max_tokens\":99999999999999999999999}", 0,
     "too large"},
    {"invalid utf-8 byte", "{\"model\":\"\xFF" MARK "\"}", 0, "UTF-8"},
    {"invalid utf-8 key", "{\"\xC3\":1}", 0, "UTF-8"},
    {"overlong utf-8", "{\"model\":\"\xC0\xAF\"}", 0, "UTF-8"},
    {"surrogate utf-8", "{\"model\":\"\xED\xA0\x80\"}", 0, "UTF-8"},
    {"above U+10FFFF", "{\"model\":\"\xF4\x90\x80\x80\"}", 0, "UTF-8"},
    {"truncated utf-8", "{\"model\":\"\xE2\x82", 0, "UTF-8"},
    {"utf-8 outside strings", "{\xC3\xA9}", 0, "not valid JSON"},
    {"model number", "{\"model\":123}", 0, "'model' must be a string"},
    {"model null", "{\"model\":null}", 0, "'model' must be a string"},
    {"model array", "{\"model\":[\"" MARK "\"]}", 0,
     "'model' must be a string"},
    {"model object", "{\"model\":{}}", 0, "'model' must be a string"},
    {"model bool", "{\"model\":true}", 0, "'model' must be a string"},
    {"model empty", "{\"model\":\"\"}", 0, "empty"},
    {"model newline", "{\"model\":\"a\\n" MARK "\"}", 0, "control"},
    {"model tab", "{\"model\":\"a\\t" MARK "\"}", 0, "control"},
    {"model escape", "{\"model\":\"a\\u001b" MARK "\"}", 0, "control"},
    {"model del", "{\"model\":\"a\x7F" MARK "\"}", 0, "control"},
    {"stream string", "{\"stream\":\"true\"}", 0, "'stream' must be a boolean"},
    {"stream number", "{\"stream\":1}", 0, "'stream' must be a boolean"},
    {"max_tokens negative", "{\"max_tokens\":-1}", 0,
     "'max_tokens' must be a non-negative integer"},
    {"max_tokens real", "{\"max_tokens\":1.5}", 0,
     "'max_tokens' must be a non-negative integer"},
    {"max_tokens whole real", "{\"max_tokens\":100.0}", 0,
     "'max_tokens' must be a non-negative integer"},
    {"max_tokens string", "{\"max_tokens\":\"100\"}", 0,
     "'max_tokens' must be a non-negative integer"},
    {"max_tokens bool", "{\"max_tokens\":true}", 0,
     "'max_tokens' must be a non-negative integer"},
    {"max_completion_tokens negative", "{\"max_completion_tokens\":-5}", 0,
     "'max_completion_tokens' must be"},
    {"max_output_tokens real", "{\"max_output_tokens\":2e3}", 0,
     "'max_output_tokens' must be"},
    {"stream_options string", "{\"stream_options\":\"" MARK "\"}", 0,
     "'stream_options' must be an object"},
    {"stream_options array", "{\"stream_options\":[]}", 0,
     "'stream_options' must be an object"},
    {"include_usage string",
     "{\"stream_options\":{\"include_usage\":\"true\"}}", 0,
     "'stream_options.include_usage' must be a boolean"},
    {"include_usage number", "{\"stream_options\":{\"include_usage\":1}}", 0,
     "'stream_options.include_usage' must be a boolean"},
};

START_TEST(test_inspect_bad)
{
    const bad_row_t *row = &bad_rows[_i];
    size_t len = row->len ? row->len : strlen(row->body);
    kg_request_info_t info;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    rc = kg_request_inspect(row->body, len, &info, &diag);
    ck_assert_msg(rc == KG_ERR_BAD_REQUEST, "%s: accepted", row->name);
    ck_assert_msg(strstr(diag.msg, row->diag_has) != NULL,
                  "%s: diag '%s' lacks '%s'", row->name, diag.msg,
                  row->diag_has);
    ck_assert_msg(strstr(diag.msg, MARK) == NULL, "%s: diag echoes: %s",
                  row->name, diag.msg);
    /* A NULL diag is allowed. */
    ck_assert_int_eq(kg_request_inspect(row->body, len, &info, NULL),
                     KG_ERR_BAD_REQUEST);
}
END_TEST

/* body of n nested arrays ("[[...]]") inside {"x": ...}. */
static char *nested(size_t n, char open, char close, size_t *len)
{
    char *s = malloc(n * 6 + 16);
    size_t k = 0;

    ck_assert_ptr_nonnull(s);
    memcpy(s, "{\"x\":", 5);
    k = 5;
    for (size_t i = 0; i < n; i++) {
        s[k++] = open;
        if (open == '{') {
            memcpy(s + k, "\"a\":", 4);
            k += 4;
        }
    }
    if (open == '{') {
        s[k++] = '1';
    }
    for (size_t i = 0; i < n; i++) {
        s[k++] = close;
    }
    s[k++] = '}';
    s[k] = '\0';
    *len = k;
    return s;
}

START_TEST(test_depth)
{
    /* The root object is level 1: 63 more arrays make 64. */
    static const struct {
        size_t n;
        char open, close;
        kg_err_t rc;
    } rows[] = {
        {63, '[', ']', KG_OK},
        {64, '[', ']', KG_ERR_BAD_REQUEST},
        {63, '{', '}', KG_OK},
        {64, '{', '}', KG_ERR_BAD_REQUEST},
        {3000, '[', ']', KG_ERR_BAD_REQUEST},
    };

    for (size_t i = 0; i < NROWS(rows); i++) {
        size_t len;
        char *s = nested(rows[i].n, rows[i].open, rows[i].close, &len);
        kg_request_info_t info;
        kg_diag_t diag = {{0}};
        char *out = NULL;
        size_t out_len = 0;

        ck_assert_int_eq(kg_request_inspect(s, len, &info, &diag), rows[i].rc);
        if (rows[i].rc != KG_OK) {
            ck_assert_ptr_nonnull(strstr(diag.msg, "deeper than 64"));
        }
        ck_assert_int_eq(kg_request_rewrite(s, len, "m", true, &out, &out_len),
                         rows[i].rc);
        free(out);
        free(s);
    }
}
END_TEST

START_TEST(test_large_bodies)
{
    /* 10 MB: an unclosed bracket run, refused by the pre-scan alone. */
    size_t big = 10 * 1024 * 1024;
    char *s = malloc(big + 64);
    kg_request_info_t info;
    kg_diag_t diag = {{0}};
    clock_t t0 = clock();
    size_t k;

    ck_assert_ptr_nonnull(s);
    memset(s, '[', big);
    ck_assert_int_eq(kg_request_inspect(s, big, &info, &diag),
                     KG_ERR_BAD_REQUEST);
    ck_assert_ptr_nonnull(strstr(diag.msg, "deeper"));

    /* 10 MB of text in one message: accepted, estimated, diag untouched. */
    k = 0;
    memcpy(s, "{\"model\":\"m\",\"messages\":[{\"content\":\"", 37);
    k = 37;
    memset(s + k, 'a', big);
    k += big;
    memcpy(s + k, "\"}]}", 4);
    k += 4;
    ck_assert_int_eq(kg_request_inspect(s, k, &info, &diag), KG_OK);
    ck_assert_int_eq(info.input_estimate_tokens, (int64_t)big / 4 + 4);

    /* 10 MB of invalid JSON: the message stays short. */
    s[k - 1] = 'x';
    ck_assert_int_eq(kg_request_inspect(s, k, &info, &diag),
                     KG_ERR_BAD_REQUEST);
    ck_assert_uint_lt(strlen(diag.msg), 128);
    ck_assert_ptr_null(strstr(diag.msg, "aaaa"));
    ck_assert_msg((double)(clock() - t0) / CLOCKS_PER_SEC < 10.0,
                  "10 MB bodies took too long");
    free(s);
}
END_TEST

START_TEST(test_member_bound)
{
    /* KG_REQUEST_MAX_MEMBERS top-level members pass, one more does not. */
    size_t cap = (KG_REQUEST_MAX_MEMBERS + 1) * 16 + 16;
    char *s = malloc(cap);
    kg_request_info_t info;
    kg_diag_t diag = {{0}};

    ck_assert_ptr_nonnull(s);
    for (int extra = 0; extra <= 1; extra++) {
        size_t k = 0;

        s[k++] = '{';
        for (int i = 0; i < KG_REQUEST_MAX_MEMBERS + extra; i++) {
            k += (size_t)snprintf(s + k, cap - k, "%s\"m%d\":%d", i ? "," : "",
                                  i, i);
        }
        s[k++] = '}';
        ck_assert_int_eq(kg_request_inspect(s, k, &info, &diag),
                         extra ? KG_ERR_BAD_REQUEST : KG_OK);
        if (extra) {
            ck_assert_ptr_nonnull(strstr(diag.msg, "more than"));
        }
    }
    /* Names equal but for escapes, far apart in a long list. */
    {
        size_t k = 0;

        s[k++] = '{';
        for (int i = 0; i < 500; i++) {
            k += (size_t)snprintf(s + k, cap - k, "\"n%d\":0,", i);
        }
        k += (size_t)snprintf(s + k, cap - k, "\"\\u006e7\":1}");
        ck_assert_int_eq(kg_request_inspect(s, k, &info, &diag),
                         KG_ERR_BAD_REQUEST);
        ck_assert_ptr_nonnull(strstr(diag.msg, "duplicate"));
    }
    free(s);
}
END_TEST

START_TEST(test_model_bounds)
{
    char body[KG_MODEL_NAME_MAX + 64];
    kg_request_info_t info;
    kg_diag_t diag = {{0}};
    size_t k;

    for (int extra = 0; extra <= 1; extra++) {
        k = 0;
        memcpy(body, "{\"model\":\"", 10);
        k = 10;
        memset(body + k, 'x', KG_MODEL_NAME_MAX + (size_t)extra);
        k += KG_MODEL_NAME_MAX + (size_t)extra;
        memcpy(body + k, "\"}", 2);
        k += 2;
        if (extra == 0) {
            ck_assert_int_eq(kg_request_inspect(body, k, &info, &diag), KG_OK);
            ck_assert_uint_eq(strlen(info.model), KG_MODEL_NAME_MAX);
        } else {
            ck_assert_int_eq(kg_request_inspect(body, k, &info, &diag),
                             KG_ERR_BAD_REQUEST);
            ck_assert_ptr_nonnull(strstr(diag.msg, "too long"));
            ck_assert_ptr_null(strstr(diag.msg, "xxxx"));
        }
    }
}
END_TEST

START_TEST(test_inspect_not_terminated)
{
    /* Only len bytes count. */
    const char *body = "{\"model\":\"a\"}{\"model\":\"b\"}";
    kg_request_info_t info;

    ck_assert_int_eq(kg_request_inspect(body, 13, &info, NULL), KG_OK);
    ck_assert_str_eq(info.model, "a");
    ck_assert_int_eq(kg_request_inspect(body, 14, &info, NULL),
                     KG_ERR_BAD_REQUEST);
    ck_assert_int_eq(kg_request_inspect(NULL, 0, &info, NULL),
                     KG_ERR_BAD_REQUEST);
}
END_TEST

/* ---- rewrite ---- */

typedef struct rewrite_row {
    const char *name;
    const char *body;
    const char *model; /* NULL: keep */
    bool add_usage;
    kg_err_t rc;
    const char *out; /* when KG_OK */
} rewrite_row_t;

static const rewrite_row_t rewrite_rows[] = {
    {"model and usage",
     "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
     "\"stream\":true,\"n\":1}",
     "gpt-4o-2024-08-06", true, KG_OK,
     "{\"model\":\"gpt-4o-2024-08-06\",\"messages\":[{\"role\":\"user\","
     "\"content\":\"hi\"}],\"stream\":true,\"n\":1,\"stream_options\":{"
     "\"include_usage\":true}}"},
    {"model in the middle keeps its place",
     "{\"a\":1,\"model\":\"x\",\"z\":[true,false,null]}", "y", false, KG_OK,
     "{\"a\":1,\"model\":\"y\",\"z\":[true,false,null]}"},
    {"nothing to do: bytes kept", "{\"model\":\"x\", \"b\" : 2 }", NULL, false,
     KG_OK, "{\"model\":\"x\", \"b\" : 2 }"},
    {"spacing and numbers kept",
     " {\n  \"model\" : \"x\" ,\n  \"temperature\": 0.7, \"top_p\": 1e0,\n"
     "  \"n\": 1\n}\n",
     "gpt-4o", true, KG_OK,
     " {\n  \"model\" : \"gpt-4o\" ,\n  \"temperature\": 0.7, \"top_p\": 1e0,\n"
     "  \"n\": 1,\"stream_options\":{\"include_usage\":true}\n}\n"},
    {"nested model untouched",
     "{\"messages\":[{\"model\":\"inner\",\"content\":\"\\\"model\\\":\"}],"
     "\"model\":\"outer\"}",
     "new", false, KG_OK,
     "{\"messages\":[{\"model\":\"inner\",\"content\":\"\\\"model\\\":\"}],"
     "\"model\":\"new\"}"},
    {"escaped member name", "{\"a\":[1,{\"b\":2}],\"mod\\u0065l\":\"x\"}", "y",
     false, KG_OK, "{\"a\":[1,{\"b\":2}],\"mod\\u0065l\":\"y\"}"},
    {"model of another type", "{\"model\":{\"a\":[1,2]},\"z\":0}", "m", false,
     KG_OK, "{\"model\":\"m\",\"z\":0}"},
    {"empty object", "{}", "m", true, KG_OK,
     "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}"},
    {"empty object with space", "{ }", NULL, true, KG_OK,
     "{\"stream_options\":{\"include_usage\":true} }"},
    {"empty stream_options with space", "{\"stream_options\":{ },\"m\":1}",
     NULL, true, KG_OK,
     "{\"stream_options\":{\"include_usage\":true },\"m\":1}"},
    {"include_usage null", "{\"stream_options\":{\"include_usage\":null}}",
     NULL, true, KG_OK, "{\"stream_options\":{\"include_usage\":true}}"},
    {"include_usage escaped name",
     "{\"stream_options\":{\"x\":\"}\",\"include\\u005fusage\":false}}", NULL,
     true, KG_OK,
     "{\"stream_options\":{\"x\":\"}\",\"include\\u005fusage\":true}}"},
    {"model last, then stream_options", "{\"n\":1,\"model\":\"a\"}", "b", true,
     KG_OK,
     "{\"n\":1,\"model\":\"b\",\"stream_options\":{\"include_usage\":true}}"},
    {"control characters escaped", "{}", "a\tb\x01", false, KG_OK,
     "{\"model\":\"a\\u0009b\\u0001\"}"},
    {"absent model appended", "{\"b\":2}", "m", false, KG_OK,
     "{\"b\":2,\"model\":\"m\"}"},
    {"stream_options kept",
     "{\"stream_options\":{\"x\":1,\"include_usage\":false,\"y\":2},"
     "\"model\":\"a\"}",
     NULL, true, KG_OK,
     "{\"stream_options\":{\"x\":1,\"include_usage\":true,\"y\":2},"
     "\"model\":\"a\"}"},
    {"stream_options null replaced in place",
     "{\"stream_options\":null,\"model\":\"a\"}", NULL, true, KG_OK,
     "{\"stream_options\":{\"include_usage\":true},\"model\":\"a\"}"},
    {"stream_options empty", "{\"stream_options\":{}}", NULL, true, KG_OK,
     "{\"stream_options\":{\"include_usage\":true}}"},
    {"utf-8 kept raw", "{\"content\":\"h\\u00e9 \xE2\x98\x83\"}",
     "mod\xC3\xA8le", false, KG_OK,
     "{\"content\":\"h\\u00e9 \xE2\x98\x83\",\"model\":\"mod\xC3\xA8le\"}"},
    {"quotes escaped", "{\"model\":\"a\"}", "we\"ird\\", false, KG_OK,
     "{\"model\":\"we\\\"ird\\\\\"}"},
    {"integers kept",
     "{\"seed\":-9223372036854775808,\"max_tokens\":9223372036854775807}", NULL,
     false, KG_OK,
     "{\"seed\":-9223372036854775808,\"max_tokens\":9223372036854775807}"},
    {"bad stream_options with usage", "{\"stream_options\":\"x\"}", "m", true,
     KG_ERR_BAD_REQUEST, NULL},
    {"bad stream_options without usage", "{\"stream_options\":\"x\"}", "m",
     false, KG_OK, "{\"stream_options\":\"x\",\"model\":\"m\"}"},
    {"duplicates", "{\"model\":\"a\",\"model\":\"b\"}", "m", false,
     KG_ERR_BAD_REQUEST, NULL},
    {"array root", "[1]", "m", false, KG_ERR_BAD_REQUEST, NULL},
    {"invalid json", "{\"model\":", "m", false, KG_ERR_BAD_REQUEST, NULL},
    {"invalid utf-8", "{\"model\":\"\xFF\"}", NULL, false, KG_ERR_BAD_REQUEST,
     NULL},
    {"empty", "", "m", false, KG_ERR_BAD_REQUEST, NULL},
    {"bad upstream model", "{\"model\":\"a\"}", "\xC3", false, KG_ERR_INVAL,
     NULL},
};

START_TEST(test_rewrite)
{
    const rewrite_row_t *row = &rewrite_rows[_i];
    char *out = (char *)"untouched";
    size_t out_len = 99;
    kg_err_t rc;

    rc = kg_request_rewrite(row->body, strlen(row->body), row->model,
                            row->add_usage, &out, &out_len);
    ck_assert_msg(rc == row->rc, "%s: %s", row->name, kg_err_name(rc));
    if (rc != KG_OK) {
        ck_assert_ptr_null(out);
        ck_assert_uint_eq(out_len, 0);
        return;
    }
    ck_assert_msg(strcmp(out, row->out) == 0, "%s: %s", row->name, out);
    ck_assert_uint_eq(out_len, strlen(out));
    free(out);
}
END_TEST

/*
 * The spliced body read in pieces of every size from 1 to 7 bytes, and at
 * every offset, is the rewritten body.
 */
START_TEST(test_edits_read)
{
    const rewrite_row_t *row = &rewrite_rows[_i];
    kg_request_info_t info;
    kg_request_edits_t edits;
    char got[512];
    size_t len = strlen(row->body);
    size_t n;

    if (row->rc != KG_OK || strstr(row->name, "another type") != NULL ||
        strstr(row->name, "bad stream_options") != NULL) {
        return; /* inspect refuses these; kg_request_rewrite takes them */
    }
    ck_assert_int_eq(kg_request_inspect(row->body, len, &info, NULL), KG_OK);
    ck_assert_int_eq(kg_request_edits_make(row->body, len, &info, row->model,
                                           row->add_usage, &edits),
                     KG_OK);
    ck_assert_uint_eq(edits.out_len, strlen(row->out));
    for (size_t step = 1; step <= 7; step++) {
        size_t k = 0;

        while ((n = kg_request_edits_read(row->body, len, &edits, k, got + k,
                                          step)) > 0) {
            ck_assert_uint_le(n, step);
            k += n;
            ck_assert_uint_lt(k, sizeof(got));
        }
        ck_assert_uint_eq(k, edits.out_len);
        ck_assert_msg(memcmp(got, row->out, k) == 0, "%s: step %zu", row->name,
                      step);
    }
    for (size_t off = 0; off <= edits.out_len; off++) {
        n = kg_request_edits_read(row->body, len, &edits, off, got,
                                  sizeof(got));
        ck_assert_uint_eq(n, edits.out_len - off);
        ck_assert(memcmp(got, row->out + off, n) == 0);
    }
    kg_request_edits_clear(&edits);
    ck_assert_uint_eq(edits.n, 0);
}
END_TEST

START_TEST(test_edits_from_inspect)
{
    const char *body = "{\"model\":\"pub\",\"stream\":true,\"stream_options\":"
                       "{\"x\":1}}";
    kg_request_info_t info;
    kg_request_edits_t edits;
    char out[256];
    size_t n;

    ck_assert_int_eq(kg_request_inspect(body, strlen(body), &info, NULL),
                     KG_OK);
    /* Nothing to change: no edit, the same length. */
    ck_assert_int_eq(
        kg_request_edits_make(body, strlen(body), &info, NULL, false, &edits),
        KG_OK);
    ck_assert_uint_eq(edits.n, 0);
    ck_assert_uint_eq(edits.out_len, strlen(body));
    kg_request_edits_clear(&edits);
    ck_assert_int_eq(
        kg_request_edits_make(body, strlen(body), &info, "up", true, &edits),
        KG_OK);
    ck_assert_uint_eq(edits.n, 2);
    n = kg_request_edits_read(body, strlen(body), &edits, 0, out, sizeof(out));
    out[n] = '\0';
    ck_assert_str_eq(out,
                     "{\"model\":\"up\",\"stream\":true,\"stream_options\":"
                     "{\"x\":1,\"include_usage\":true}}");
    kg_request_edits_clear(&edits);
    ck_assert_int_eq(
        kg_request_edits_make(body, strlen(body), &info, "\xC3", false, &edits),
        KG_ERR_INVAL);
    ck_assert_uint_eq(edits.n, 0);
}
END_TEST

START_TEST(test_rewrite_round_trip)
{
    /* The rewritten body inspects as the upstream request. */
    const char *body = "{\"model\":\"public\",\"stream\":true,\"temperature\":"
                       "0.7,\"max_tokens\":50,\"messages\":[{\"role\":"
                       "\"user\",\"content\":\"abcdefgh\"}]}";
    char *out = NULL;
    size_t out_len = 0;
    kg_request_info_t before;
    kg_request_info_t after;
    json_t *root; /* new */

    ck_assert_int_eq(kg_request_inspect(body, strlen(body), &before, NULL),
                     KG_OK);
    ck_assert_int_eq(kg_request_rewrite(body, strlen(body), "upstream-1", true,
                                        &out, &out_len),
                     KG_OK);
    ck_assert_int_eq(kg_request_inspect(out, out_len, &after, NULL), KG_OK);
    ck_assert_str_eq(after.model, "upstream-1");
    ck_assert(after.stream);
    ck_assert(after.client_include_usage);
    ck_assert(!before.client_include_usage);
    ck_assert_int_eq(after.max_tokens, 50);
    ck_assert_int_eq(after.input_estimate_tokens, before.input_estimate_tokens);
    /* Order kept: temperature still between stream and max_tokens. */
    ck_assert_ptr_nonnull(strstr(out, "\"stream\":true,\"temperature\":"));
    ck_assert_ptr_nonnull(strstr(out, ",\"max_tokens\":50,\"messages\":"));
    ck_assert_ptr_nonnull(strstr(out, "\"temperature\":0.7,"));
    /* And so the value is the same. */
    root = json_loadb(out, out_len, 0, NULL);
    ck_assert_ptr_nonnull(root);
    ck_assert(json_real_value(json_object_get(root, "temperature")) == 0.7);
    json_decref(root);
    free(out);
}
END_TEST

static Suite *request_suite(void)
{
    Suite *s = suite_create("request");
    TCase *tc = tcase_create("request");

    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_inspect_good, 0, (int)NROWS(good_rows));
    tcase_add_loop_test(tc, test_inspect_bad, 0, (int)NROWS(bad_rows));
    tcase_add_test(tc, test_depth);
    tcase_add_test(tc, test_large_bodies);
    tcase_add_test(tc, test_model_bounds);
    tcase_add_test(tc, test_member_bound);
    tcase_add_loop_test(tc, test_edits_read, 0, (int)NROWS(rewrite_rows));
    tcase_add_test(tc, test_edits_from_inspect);
    tcase_add_test(tc, test_inspect_not_terminated);
    tcase_add_loop_test(tc, test_rewrite, 0, (int)NROWS(rewrite_rows));
    tcase_add_test(tc, test_rewrite_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(request_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
