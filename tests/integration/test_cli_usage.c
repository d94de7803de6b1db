/* keygate usage, usage events and audit against what the daemon recorded. */
#include <check.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_fixture.h"
#include "keygate/money.h"

/* What the test sends: per request, the key, model and token counts. */
typedef struct req_spec {
    int key; /* 0: alpha, 1: beta */
    bool claude;
    bool stream;
    int status; /* the mock's answer: 200 or an error */
    int prompt;
    int completion;
} req_spec_t;

static const req_spec_t reqs[] = {
    {0, false, false, 200, 100, 50}, {0, false, false, 200, 200, 10},
    {0, false, true, 200, 10, 30},   {0, true, false, 200, 100, 50},
    {0, true, false, 200, 7, 3},     {1, false, false, 200, 40, 40},
    {1, false, false, 200, 1000, 1}, {1, true, false, 200, 100, 200},
    {1, false, false, 500, 0, 0},
};
#define N_REQS (sizeof(reqs) / sizeof(*reqs))

static gwf_t W;
static gwf_key_t K[2];
static char rid[N_REQS][GWF_REQID_MAX];

/* The cost keygate charges in micro-USD for tokens at prices (exact here:
 * the counts are chosen so). */
static int64_t cost_of(const req_spec_t *q)
{
    int64_t in = q->claude ? GWF_CLAUDE_IN : GWF_GPT_IN;
    int64_t out = q->claude ? GWF_CLAUDE_OUT : GWF_GPT_OUT;

    if (q->status != 200) {
        return 0;
    }
    return (q->prompt * in + q->completion * out) / 1000000;
}

static void send_all(void)
{
    for (size_t i = 0; i < N_REQS; i++) {
        const req_spec_t *q = &reqs[i];
        char cred[160];
        char body[512];
        gwf_resp_t r;
        gwf_usage_t u;

        snprintf(body, sizeof(body),
                 "{\"model\":\"%s\",\"max_tokens\":300,\"messages\":[{"
                 "\"role\":\"user\",\"content\":\"usage %zu\"}]%s,\"mock\":{"
                 "\"events\":2,\"prompt_tokens\":%d,\"completion_tokens\":%d"
                 "%s}}",
                 q->claude ? "claude-3-5-sonnet" : "gpt-4o", i,
                 q->stream ? ",\"stream\":true" : "", q->prompt, q->completion,
                 q->status != 200 ? ",\"status\":500" : "");
        gwf_post(&W, &r, q->claude ? "/v1/messages" : "/v1/chat/completions",
                 gwf_bearer(&K[q->key], cred, sizeof(cred)), body);
        ck_assert_msg(r.curl_rc == CURLE_OK && r.status == q->status,
                      "request %zu: curl %d status %ld: %s", i, r.curl_rc,
                      r.status, r.body);
        snprintf(rid[i], sizeof(rid[i]), "%s", r.request_id);
        gwf_resp_free(&r);
        ck_assert_msg(gwf_usage(&W, rid[i], &u), "no usage row for %zu", i);
        ck_assert_int_eq(u.cost, cost_of(q));
        if (q->status == 200) {
            ck_assert_int_eq(u.prompt_tokens, q->prompt);
            ck_assert_int_eq(u.completion_tokens, q->completion);
        }
    }
}

/* One world for every test (they only read): made in the parent. */
static void setup(void)
{
    gwf_root_new("kg-cli-usage");
    gwf_init(&W, false);
    gwf_config(&W, NULL, NULL, NULL);
    gwf_init_store(&W);
    gwf_key_create(&W, &K[0], "alpha", NULL);
    gwf_key_create(&W, &K[1], "beta", NULL);
    gwf_start(&W);
    send_all();
}

static void teardown(void)
{
    bool ok = gwf_stop_checked(&W);

    gwf_free(&W);
    gwf_root_free();
    ck_assert_msg(ok, "the daemon did not stop cleanly");
}

/* keygate ARGS... as JSON (asserted: exit 0, parses). */
#define KG_JSON(...) kg_json(__VA_ARGS__, NULL)
__attribute__((sentinel)) static json_t *kg_json(const char *first, ...)
{
    const char *argv[24] = {"--json", first};
    kg_harness_result_t res = {0};
    size_t n = 2;
    json_t *j;
    va_list ap;
    int rc;

    va_start(ap, first);
    for (const char *a = va_arg(ap, const char *); a != NULL;
         a = va_arg(ap, const char *)) {
        ck_assert_uint_lt(n, 23);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    ck_assert_msg(n <= 14, "too many arguments for kg_json");
    /* Unused entries are NULL: gwf_kg stops at the first. */
    rc = gwf_kg(&W, &res, argv[0], argv[1], argv[2], argv[3], argv[4], argv[5],
                argv[6], argv[7], argv[8], argv[9], argv[10], argv[11],
                argv[12], argv[13], NULL);
    ck_assert_msg(rc == 0, "keygate %s: exit %d: %s", first, rc, res.err);
    j = json_loads(res.out, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", res.out);
    kg_harness_result_free(&res);
    return j;
}

static json_int_t jint(json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);

    ck_assert_msg(json_is_integer(v), "%s is not an integer", field);
    return json_integer_value(v);
}

static const char *jstr(json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);

    ck_assert_msg(json_is_string(v), "%s is not a string", field);
    return json_string_value(v);
}

/* The group of the series result named name, or NULL. */
static json_t *group_named(json_t *j, const char *name)
{
    json_t *g;
    size_t i;

    json_array_foreach(json_object_get(j, "groups"), i, g)
    {
        if (strcmp(json_string_value(json_object_get(g, "group")), name) == 0) {
            return g;
        }
    }
    return NULL;
}

/* Per key: requests, errors, tokens, cost against what was sent. */
START_TEST(test_usage_json)
{
    json_t *j =
        KG_JSON("usage", "--by", "hour", "--from", "2h", "--group", "key");
    int64_t total_cost = 0;
    char money[KG_MONEY_STRLEN];

    ck_assert_str_eq(jstr(j, "bucket"), "hour");
    ck_assert_str_eq(jstr(j, "groupBy"), "key");
    ck_assert_uint_eq(json_array_size(json_object_get(j, "groups")), 2);
    for (int k = 0; k < 2; k++) {
        json_t *g = group_named(j, K[k].id);
        json_t *t;
        int64_t n = 0, errors = 0, in = 0, out = 0, cost = 0, streamed = 0;
        int64_t series = 0;
        json_t *pt;
        size_t i;

        ck_assert_msg(g != NULL, "no group for key %s", K[k].id);
        t = json_object_get(g, "totals");
        for (size_t r = 0; r < N_REQS; r++) {
            if (reqs[r].key != k) {
                continue;
            }
            n++;
            errors += reqs[r].status >= 400;
            in += reqs[r].status == 200 ? reqs[r].prompt : 0;
            out += reqs[r].status == 200 ? reqs[r].completion : 0;
            cost += cost_of(&reqs[r]);
            streamed += reqs[r].stream;
        }
        total_cost += cost;
        ck_assert_int_eq(jint(t, "requests"), n);
        ck_assert_int_eq(jint(t, "errors"), errors);
        ck_assert_int_eq(jint(t, "promptTokens"), in);
        ck_assert_int_eq(jint(t, "completionTokens"), out);
        ck_assert_int_eq(jint(t, "totalTokens"), in + out);
        ck_assert_int_eq(jint(t, "streamed"), streamed);
        ck_assert_str_eq(jstr(t, "cost"),
                         kg_money_format(cost, money, sizeof(money)));
        ck_assert(jint(t, "latencyMsP50") <= jint(t, "latencyMsP95"));
        ck_assert(jint(t, "latencyMsP95") <= jint(t, "latencyMsMax"));
        /* Zero-filled hourly series that add up to the totals. */
        ck_assert_uint_ge(json_array_size(json_object_get(g, "series")), 3);
        json_array_foreach(json_object_get(g, "series"), i, pt)
        {
            series += jint(pt, "requests");
        }
        ck_assert_int_eq(series, n);
    }
    ck_assert_int_eq(jint(json_object_get(j, "totals"), "requests"), N_REQS);
    ck_assert_str_eq(jstr(json_object_get(j, "totals"), "cost"),
                     kg_money_format(total_cost, money, sizeof(money)));
    json_decref(j);

    /* Per model, one key. */
    j = KG_JSON("usage", "--key", K[0].id, "--group", "model");
    ck_assert_int_eq(
        jint(json_object_get(group_named(j, "gpt-4o"), "totals"), "requests"),
        3);
    ck_assert_int_eq(
        jint(json_object_get(group_named(j, "claude-3-5-sonnet"), "totals"),
             "requests"),
        2);
    ck_assert_str_eq(jstr(json_object_get(j, "filter"), "keyId"), K[0].id);
    json_decref(j);
    /* Per provider, by workspace name. */
    j = KG_JSON("usage", "--workspace", "default", "--group", "provider",
                "--by", "month");
    ck_assert_int_eq(
        jint(json_object_get(group_named(j, "mockant"), "totals"), "requests"),
        3);
    ck_assert_int_eq(
        jint(json_object_get(group_named(j, "mock"), "totals"), "requests"), 6);
    json_decref(j);
}
END_TEST

/* Split one CSV line (RFC 4180, no line breaks inside fields) into at most
 * max fields written to out (each up to 256 bytes). Returns the count. */
static size_t csv_split(const char *line, char out[][256], size_t max)
{
    size_t n = 0;
    const char *p = line;

    while (n < max) {
        size_t len = 0;

        if (*p == '"') {
            for (p++; *p && !(*p == '"' && p[1] != '"'); p++) {
                p += *p == '"'; /* a doubled quote */
                ck_assert_uint_lt(len, 255);
                out[n][len++] = *p;
            }
            ck_assert_msg(*p == '"', "unterminated quote: %s", line);
            p++;
        } else {
            for (; *p && *p != ',' && *p != '\r' && *p != '\n'; p++) {
                ck_assert_uint_lt(len, 255);
                out[n][len++] = *p;
            }
        }
        out[n++][len] = '\0';
        if (*p != ',') {
            break;
        }
        p++;
    }
    ck_assert_msg(strncmp(p, "\r\n", 2) == 0, "a line ends with CRLF: %s",
                  line);
    return n;
}

/* The JSON text of a value as CSV prints it: "" for null. */
static void csv_value(json_t *v, char *buf, size_t len)
{
    if (json_is_null(v)) {
        buf[0] = '\0';
    } else if (json_is_string(v)) {
        snprintf(buf, len, "%s", json_string_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
    } else {
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    }
}

/* The series CSV has the JSON's values: one row per group and bucket. */
START_TEST(test_usage_csv)
{
    json_t *j =
        KG_JSON("usage", "--by", "hour", "--from", "2h", "--group", "model");
    kg_harness_result_t res = {0};
    char *csv;
    char cols[20][256];
    char fields[20][256];
    char want[256];
    size_t ncols;
    size_t rows = 0;
    size_t buckets = 0;
    char *save = NULL;
    char *line;

    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "--by", "hour", "--from", "2h",
                            "--group", "model", "--csv", NULL),
                     0);
    csv = strdup(res.out);
    kg_harness_result_free(&res);
    line = strtok_r(csv, "\n", &save);
    ck_assert_ptr_nonnull(line);
    {
        char l[4096];

        snprintf(l, sizeof(l), "%s\n", line);
        ncols = csv_split(l, cols, 20);
    }
    ck_assert_uint_eq(ncols, 15);
    ck_assert_str_eq(cols[0], "group");
    ck_assert_str_eq(cols[1], "start");
    for (line = strtok_r(NULL, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char l[4096];
        json_t *g;
        json_t *pt = NULL;
        json_t *cand;
        size_t i;

        snprintf(l, sizeof(l), "%s\n", line);
        ck_assert_uint_eq(csv_split(l, fields, 20), ncols);
        g = group_named(j, fields[0]);
        ck_assert_msg(g != NULL, "CSV group %s not in the JSON", fields[0]);
        json_array_foreach(json_object_get(g, "series"), i, cand)
        {
            if (strcmp(jstr(cand, "start"), fields[1]) == 0) {
                pt = cand;
            }
        }
        ck_assert_msg(pt != NULL, "CSV bucket %s not in the JSON", fields[1]);
        for (size_t c = 2; c < ncols; c++) {
            csv_value(json_object_get(pt, cols[c]), want, sizeof(want));
            ck_assert_msg(strcmp(fields[c], want) == 0, "%s %s %s: %s vs %s",
                          fields[0], fields[1], cols[c], fields[c], want);
        }
        rows++;
    }
    {
        json_t *g;
        size_t i;

        json_array_foreach(json_object_get(j, "groups"), i, g)
        {
            buckets += json_array_size(json_object_get(g, "series"));
        }
    }
    ck_assert_uint_eq(rows, buckets);
    ck_assert_uint_ge(rows, 2 * 3);
    free(csv);
    json_decref(j);
}
END_TEST

/* Pages of 2 hold every request once, newest first; the CSV of a page is
 * its JSON. */
START_TEST(test_events_pages)
{
    char cursor[64] = "";
    bool seen[N_REQS] = {false};
    size_t got = 0;
    char last[40] = "9999";
    int pages = 0;

    do {
        json_t *j = cursor[0] ? KG_JSON("usage", "events", "--limit", "2",
                                        "--cursor", cursor)
                              : KG_JSON("usage", "events", "--limit", "2");
        json_t *ev;
        json_t *next = json_object_get(j, "nextCursor");
        size_t i;

        ck_assert_uint_le(json_array_size(json_object_get(j, "events")), 2);
        json_array_foreach(json_object_get(j, "events"), i, ev)
        {
            const char *id = jstr(ev, "requestId");
            size_t r;

            for (r = 0; r < N_REQS && strcmp(rid[r], id) != 0; r++) {
            }
            ck_assert_msg(r < N_REQS, "unknown request %s", id);
            ck_assert_msg(!seen[r], "request %s twice", id);
            seen[r] = true;
            got++;
            ck_assert_msg(strcmp(jstr(ev, "at"), last) <= 0,
                          "not newest first: %s after %s", jstr(ev, "at"),
                          last);
            snprintf(last, sizeof(last), "%s", jstr(ev, "at"));
            ck_assert_str_eq(jstr(ev, "keyId"), K[reqs[r].key].id);
            ck_assert_int_eq(jint(ev, "status"), reqs[r].status);
            ck_assert_str_eq(jstr(ev, "model"),
                             reqs[r].claude ? "claude-3-5-sonnet" : "gpt-4o");
        }
        cursor[0] = '\0';
        if (json_is_string(next)) {
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        }
        json_decref(j);
        pages++;
    } while (cursor[0] != '\0' && pages <= (int)N_REQS);
    ck_assert_uint_eq(got, N_REQS);
    ck_assert_int_eq(pages, (int)(N_REQS + 1) / 2);
}
END_TEST

START_TEST(test_events_csv_matches_json)
{
    json_t *j = KG_JSON("usage", "events", "--key", K[1].id, "--limit", "50");
    kg_harness_result_t res = {0};
    char cols[24][256];
    char fields[24][256];
    char want[256];
    char *save = NULL;
    char *line;
    size_t ncols;
    size_t row = 0;

    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "events", "--key", K[1].id,
                            "--limit", "50", "--csv", NULL),
                     0);
    ck_assert_str_eq(res.err, ""); /* one page: no "more" note */
    line = strtok_r(res.out, "\n", &save);
    {
        char l[4096];

        snprintf(l, sizeof(l), "%s\n", line);
        ncols = csv_split(l, cols, 24);
    }
    ck_assert_uint_eq(ncols, 19);
    for (line = strtok_r(NULL, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save), row++) {
        char l[4096];
        json_t *ev = json_array_get(json_object_get(j, "events"), row);

        ck_assert_ptr_nonnull(ev);
        snprintf(l, sizeof(l), "%s\n", line);
        ck_assert_uint_eq(csv_split(l, fields, 24), ncols);
        for (size_t c = 0; c < ncols; c++) {
            csv_value(json_object_get(ev, cols[c]), want, sizeof(want));
            ck_assert_msg(strcmp(fields[c], want) == 0, "row %zu %s: %s vs %s",
                          row, cols[c], fields[c], want);
        }
    }
    ck_assert_uint_eq(row, 4);
    ck_assert_uint_eq(row, json_array_size(json_object_get(j, "events")));
    kg_harness_result_free(&res);
    json_decref(j);
    /* Filters: the error only. */
    j = KG_JSON("usage", "events", "--errors");
    ck_assert_uint_eq(json_array_size(json_object_get(j, "events")), 1);
    ck_assert_str_eq(
        jstr(json_array_get(json_object_get(j, "events"), 0), "requestId"),
        rid[N_REQS - 1]);
    json_decref(j);
    j = KG_JSON("usage", "events", "--model", "claude-3-5-sonnet", "--status",
                "2xx");
    ck_assert_uint_eq(json_array_size(json_object_get(j, "events")), 3);
    json_decref(j);
}
END_TEST

/* The audit trail has the CLI's changes: the keys made, the workspace
 * updated and credited. */
START_TEST(test_audit)
{
    char actor[80];
    json_t *j = KG_JSON("audit", "--object", K[0].id);
    json_t *ev = json_array_get(json_object_get(j, "events"), 0);
    char cursor[64];
    int pages = 0;
    size_t total = 0;

    ck_assert_uint_eq(json_array_size(json_object_get(j, "events")), 1);
    ck_assert_str_eq(jstr(ev, "action"), "create");
    ck_assert_str_eq(jstr(ev, "objectType"), "key");
    ck_assert_str_eq(jstr(ev, "objectId"), K[0].id);
    ck_assert_str_eq(jstr(json_object_get(ev, "detail"), "name"), "alpha");
    ck_assert(json_is_null(json_object_get(j, "nextCursor")));
    snprintf(actor, sizeof(actor), "%s", jstr(ev, "actor"));
    ck_assert_int_eq(strncmp(actor, "cli:", 4), 0);
    json_decref(j);
    /* Everything, a page of 2 at a time: workspace create, update, credit
     * and two key creations. */
    cursor[0] = '\0';
    do {
        json_t *next;

        j = cursor[0] ? KG_JSON("audit", "--actor", actor, "--limit", "2",
                                "--cursor", cursor)
                      : KG_JSON("audit", "--actor", actor, "--limit", "2");
        total += json_array_size(json_object_get(j, "events"));
        next = json_object_get(j, "nextCursor");
        cursor[0] = '\0';
        if (json_is_string(next)) {
            snprintf(cursor, sizeof(cursor), "%s", json_string_value(next));
        }
        json_decref(j);
        pages++;
    } while (cursor[0] != '\0' && pages < 10);
    ck_assert_uint_eq(total, 5);
    ck_assert_int_eq(pages, 3);
    j = KG_JSON("audit", "--action", "credit", "--object-type", "workspace");
    ck_assert_uint_eq(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
}
END_TEST

/* Bad input: exit 2 and a message naming what is wrong. */
START_TEST(test_refused)
{
    kg_harness_result_t res = {0};

    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "--by", "week", NULL), 2);
    ck_assert_ptr_nonnull(strstr(res.err, "by: 'week'"));
    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "events", "--cursor",
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL),
                     2);
    ck_assert_ptr_nonnull(strstr(res.err, "cursor: "));
    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "--workspace", "nope", NULL), 1);
    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "--key", "x", NULL), 2);
    ck_assert_ptr_nonnull(strstr(res.err, "key: "));
    ck_assert_int_eq(gwf_kg(&W, &res, "audit", "--limit", "0", NULL), 2);
    ck_assert_int_eq(gwf_kg(&W, &res, "--json", "usage", "--csv", NULL), 2);
    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "extra", NULL), 2);
    /* The human forms run too. */
    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "--group", "key", NULL), 0);
    ck_assert_ptr_nonnull(strstr(res.out, K[1].id));
    ck_assert_int_eq(gwf_kg(&W, &res, "usage", "events", "--limit", "1", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(res.out, "More: add --cursor "));
    ck_assert_ptr_nonnull(strstr(res.out, rid[N_REQS - 1]));
    ck_assert_int_eq(gwf_kg(&W, &res, "audit", NULL), 0);
    ck_assert_ptr_nonnull(strstr(res.out, "create"));
    kg_harness_result_free(&res);
}
END_TEST

static Suite *cli_usage_suite(void)
{
    Suite *s = suite_create("cli_usage");
    TCase *tc = tcase_create("cli_usage");

    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_usage_json);
    tcase_add_test(tc, test_usage_csv);
    tcase_add_test(tc, test_events_pages);
    tcase_add_test(tc, test_events_csv_matches_json);
    tcase_add_test(tc, test_audit);
    tcase_add_test(tc, test_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(cli_usage_suite());
}
