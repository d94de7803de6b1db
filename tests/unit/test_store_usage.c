/* Unit tests of the store's usage rows: writes, event pages, plans, the
 * backfill. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/store.h"
#include "keygate/store_ops.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/store_usage.h"
#include "keygate/usage_query.h"
#include "keygate/usagedb.h"
#include "keygate/workspaces.h"
#include "unit_util.h"

#define UT_ACTOR "test:unit"
#define UT_KEY_A "KeyAAAAAAAAA"
#define UT_KEY_B "KeyBBBBBBBBB"
#define UT_WS_X  "WsXXXXXXXXXX" /* the events' workspaces, as recorded */
#define UT_WS_Y  "WsYYYYYYYYYY"
#define UT_N     257 /* events in the paging tests */
/* 2026-03-15T00:00:00Z in milliseconds. */
#define UT_T0_MS INT64_C(1773532800000)

static char ut_dir[UT_PATH_MAX];
static char ut_path[UT_PATH_MAX];
static kg_store_t *ut_store;

static void ut_exec(sqlite3 *db, const char *sql)
{
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK, "%s",
                  sqlite3_errmsg(db));
}

/* The default workspace, ws-x and ws-y, and keys A and B (in default:
 * events record their own workspace) on an open store. */
static void ut_keys(kg_store_t *s)
{
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_workspace_ensure_default(s, UT_ACTOR, &diag), KG_OK);
    ut_exec(kg_sqlite_db(s),
            "INSERT INTO workspaces (id, name, created_at, updated_at) VALUES "
            "('" UT_WS_X "', 'ws-x', 1, 1), ('" UT_WS_Y "', 'ws-y', 1, 1)");
    ut_exec(kg_sqlite_db(s),
            "INSERT INTO api_keys (id, workspace_id, name, prefix, last4, "
            "created_at, updated_at) SELECT k.column1, w.id, 'k', 'kg', "
            "'abcd', 1, 1 FROM (VALUES ('" UT_KEY_A "'), ('" UT_KEY_B "')) k, "
            "workspaces w WHERE w.name = 'default'");
}

static void ut_open(int version)
{
    kg_store_opts_t opts = {KG_STORE_CREATE, 1000, version, NULL};
    kg_diag_t diag = {{0}};

    ut_join(ut_path, ut_dir, "keygate.db");
    ck_assert_msg(kg_store_open(ut_path, &opts, &ut_store, &diag) == KG_OK,
                  "%s", diag.msg);
}

static void ut_setup(void)
{
    ut_tmpdir(ut_dir);
    ut_open(0);
    ut_keys(ut_store);
}

static void ut_teardown(void)
{
    kg_store_close(&ut_store);
    ut_tmpdir_remove(ut_dir);
}

/* Event i of a deterministic set: two keys, two workspaces, three models,
 * statuses from every class, latencies over every bucket, ties of at_ms. */
static void ut_event(kg_usage_event_t *ev, int i)
{
    static const int statuses[] = {200, 200, 201, 429, 500, 200, 404, 499};
    static const int64_t latencies[] = {
        3,    7,     20,    40,     90,     200, 450, 900,    2000,   4000,
        9000, 20000, 50000, 100000, 200000, 10,  5,   120000, 120001, 0};

    memset(ev, 0, sizeof(*ev));
    snprintf(ev->request_id, sizeof(ev->request_id), "req-%04d", i);
    snprintf(ev->key_id, sizeof(ev->key_id), "%s", i % 3 ? UT_KEY_A : UT_KEY_B);
    snprintf(ev->workspace_id, sizeof(ev->workspace_id), "%s",
             i % 3 ? UT_WS_X : UT_WS_Y);
    /* Three events share each millisecond; over about five hours. */
    ev->at_ms = UT_T0_MS + (int64_t)(i / 3) * 200003;
    snprintf(ev->operation, sizeof(ev->operation), "chat");
    snprintf(ev->model, sizeof(ev->model), "%s",
             i % 4 == 0   ? "gpt-4o"
             : i % 4 == 1 ? "claude"
                          : "gpt-4o-mini");
    snprintf(ev->provider, sizeof(ev->provider), "%s",
             i % 5 == 0   ? "azure"
             : i % 4 == 1 ? "anthropic"
                          : "openai");
    snprintf(ev->mode, sizeof(ev->mode), "%s", i % 2 ? "credits" : "api-keys");
    ev->status = statuses[i % UT_NROWS(statuses)];
    ev->prompt_tokens = 10 + i % 13;
    ev->completion_tokens = i % 17;
    ev->cached_tokens = i % 5;
    ev->cost = 100 + i % 29;
    ev->latency_ms = latencies[i % UT_NROWS(latencies)];
    ev->ttft_ms = i % 3 == 0 ? -1 : ev->latency_ms / 3;
    ev->streamed = i % 3 != 0;
    snprintf(ev->client_ip, sizeof(ev->client_ip), "127.0.0.%d", 1 + i % 7);
    snprintf(ev->error_code, sizeof(ev->error_code), "%s",
             ev->status >= 400 ? "upstream_error" : "");
    ev->period_start = -1;
}

/* Insert events [0, n) with SQL, as an older keygate would have. */
static void ut_insert_events(sqlite3 *db, int n)
{
    sqlite3_stmt *st = NULL;

    ut_exec(db, "BEGIN");
    ck_assert_int_eq(
        sqlite3_prepare_v2(
            db,
            "INSERT INTO usage_events (request_id, key_id, workspace_id, "
            "at_ms, operation, model, provider, mode, status, prompt_tokens, "
            "completion_tokens, cached_tokens, cost, latency_ms, ttft_ms, "
            "streamed, client_ip, error_code) VALUES (?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, nullif(?, ''))",
            -1, &st, NULL),
        SQLITE_OK);
    for (int i = 0; i < n; i++) {
        kg_usage_event_t ev;

        ut_event(&ev, i);
        sqlite3_bind_text(st, 1, ev.request_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, ev.key_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, ev.workspace_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, ev.at_ms);
        sqlite3_bind_text(st, 5, ev.operation, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 6, ev.model, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 7, ev.provider, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 8, ev.mode, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 9, ev.status);
        sqlite3_bind_int64(st, 10, ev.prompt_tokens);
        sqlite3_bind_int64(st, 11, ev.completion_tokens);
        sqlite3_bind_int64(st, 12, ev.cached_tokens);
        sqlite3_bind_int64(st, 13, ev.cost);
        sqlite3_bind_int64(st, 14, ev.latency_ms);
        if (ev.ttft_ms < 0) {
            sqlite3_bind_null(st, 15);
        } else {
            sqlite3_bind_int64(st, 15, ev.ttft_ms);
        }
        sqlite3_bind_int(st, 16, ev.streamed);
        sqlite3_bind_text(st, 17, ev.client_ip, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 18, ev.error_code, -1, SQLITE_TRANSIENT);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    ut_exec(db, "COMMIT");
}

/* ---- pages --------------------------------------------------------------- */

typedef struct ut_page_row {
    kg_query_param_t p[4];
    size_t n;
    const char *where; /* the same selection in SQL, for the reference */
} ut_page_row_t;

static const ut_page_row_t ut_page_rows[] = {
    {{{0}}, 0, "1"},
    {{{"key", UT_KEY_A}}, 1, "key_id = '" UT_KEY_A "'"},
    {{{"key", UT_KEY_B}, {"model", "gpt-4o"}},
     2,
     "key_id = '" UT_KEY_B "' AND model = 'gpt-4o'"},
    {{{"workspace", UT_WS_Y}}, 1, "workspace_id = '" UT_WS_Y "'"},
    {{{"workspace", "ws-x"}, {"model", "claude"}},
     2,
     "workspace_id = '" UT_WS_X "' AND model = 'claude'"},
    {{{"provider", "azure"}, {"status", "2xx"}},
     2,
     "provider = 'azure' AND status BETWEEN 200 AND 299"},
    {{{"status", "429"}}, 1, "status = 429"},
    {{{"errors", "true"}, {"key", UT_KEY_A}},
     2,
     "status >= 400 AND key_id = '" UT_KEY_A "'"},
    {{{"status", "4xx"}, {"errors", "true"}}, 2, "status BETWEEN 400 AND 499"},
    {{{"status", "2xx"}, {"errors", "1"}}, 2, "0"},
    {{{"from", "2026-03-15T01:00:00Z"}, {"to", "2026-03-15T03:00:00Z"}},
     2,
     "at_ms >= 1773536400000 AND at_ms < 1773543600000"},
    {{{"from", "2026-03-15T01:00:00Z"},
      {"to", "2026-03-15T03:00:00Z"},
      {"key", UT_KEY_B},
      {"errors", "false"}},
     4,
     "at_ms >= 1773536400000 AND at_ms < 1773543600000 AND key_id = "
     "'" UT_KEY_B "'"},
};

/* The ids the reference query selects, newest first; *n their number. */
static int64_t *ut_reference(const char *where, size_t *n)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "SELECT id FROM usage_events WHERE %s ORDER BY at_ms DESC, id "
             "DESC",
             where);
    return ut_sql_ids(kg_sqlite_db(ut_store), sql, UT_N, n);
}

/* Page through with limit 7: every selected event once, in order. */
START_TEST(test_pages)
{
    const ut_page_row_t *row = &ut_page_rows[_i];
    kg_query_param_t p[6];
    char limit[] = "7";
    char cursor[KG_QUERY_CURSOR_STRLEN] = "";
    size_t want_n = 0;
    int64_t *want;
    size_t got = 0;
    int pages = 0;
    kg_diag_t diag = {{0}};

    ut_insert_events(kg_sqlite_db(ut_store), UT_N);
    want = ut_reference(row->where, &want_n);
    do {
        kg_usage_events_query_t q;
        kg_usage_record_t *ev = NULL;
        size_t n = 0;
        size_t np = row->n;

        memcpy(p, row->p, row->n * sizeof(*p));
        p[np++] = (kg_query_param_t){"limit", limit};
        if (cursor[0] != '\0') {
            p[np++] = (kg_query_param_t){"cursor", cursor};
        }
        ck_assert_msg(
            kg_usage_events_query_parse(p, np, 1773600000, &q, &diag) == KG_OK,
            "%s", diag.msg);
        ck_assert_msg(
            kg_usage_events_page(ut_store, &q, &ev, &n, cursor, &diag) == KG_OK,
            "%s", diag.msg);
        ck_assert_uint_le(n, 7);
        for (size_t i = 0; i < n; i++) {
            ck_assert_uint_lt(got, want_n);
            ck_assert_int_eq(ev[i].id, want[got]);
            got++;
        }
        /* A next cursor means a full page; none means the end. */
        ck_assert(cursor[0] == '\0' || n == 7);
        ck_assert(n > 0 || ev == NULL);
        free(ev);
        pages++;
    } while (cursor[0] != '\0' && pages < UT_N);
    ck_assert_uint_eq(got, want_n);
    ck_assert_int_eq(pages, want_n == 0 ? 1 : (int)((want_n + 6) / 7));
    free(want);
}
END_TEST

/* The fields of a stored event, as the store layer reads them. */
START_TEST(test_page_fields)
{
    kg_usage_events_filter_t f;
    kg_usage_record_t out[2];
    kg_usage_event_t ev;
    kg_diag_t diag = {{0}};
    size_t n = 0;

    ut_insert_events(kg_sqlite_db(ut_store), 4);
    memset(&f, 0, sizeof(f));
    f.base.to = KG_USAGE_TIME_MAX;
    f.status_max = 999;
    ck_assert_int_eq(kg_store_usage_events_page(ut_store, &f, INT64_MAX,
                                                INT64_MAX, 2, out, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 2);
    ut_event(&ev, 3); /* the newest */
    ck_assert_str_eq(out[0].request_id, ev.request_id);
    ck_assert_str_eq(out[0].key_id, ev.key_id);
    ck_assert_str_eq(out[0].workspace_id, ev.workspace_id);
    ck_assert_int_eq(out[0].at_ms, ev.at_ms);
    ck_assert_str_eq(out[0].model, ev.model);
    ck_assert_str_eq(out[0].provider, ev.provider);
    ck_assert_str_eq(out[0].mode, ev.mode);
    ck_assert_int_eq(out[0].status, ev.status);
    ck_assert_int_eq(out[0].prompt_tokens, ev.prompt_tokens);
    ck_assert_int_eq(out[0].completion_tokens, ev.completion_tokens);
    ck_assert_int_eq(out[0].cached_tokens, ev.cached_tokens);
    ck_assert_int_eq(out[0].cost, ev.cost);
    ck_assert_int_eq(out[0].latency_ms, ev.latency_ms);
    ck_assert_int_eq(out[0].ttft_ms, -1);
    ck_assert(!out[0].streamed);
    ck_assert_str_eq(out[0].client_ip, ev.client_ip);
    ck_assert_str_eq(out[0].error_code, "upstream_error");
    ut_event(&ev, 2);
    ck_assert_str_eq(out[1].request_id, ev.request_id);
    ck_assert_int_eq(out[1].ttft_ms, ev.ttft_ms);
    ck_assert(out[1].streamed);
    ck_assert_str_eq(out[1].error_code, "");
    /* From inside the range: strictly below the position. */
    ck_assert_int_eq(kg_store_usage_events_page(ut_store, &f, out[1].at_ms,
                                                out[1].id, 2, out, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 2);
    ut_event(&ev, 1);
    ck_assert_str_eq(out[0].request_id, ev.request_id);
}
END_TEST

typedef struct ut_bad_row {
    kg_query_param_t p[2];
    size_t n;
    const char *diag;
} ut_bad_row_t;

static const ut_bad_row_t ut_bad_rows[] = {
    {{{"status", "4XX"}}, 1, "status: "},
    {{{"status", "1000"}}, 1, "status: "},
    {{{"status", "xx"}}, 1, "status: "},
    {{{"status", "-1"}}, 1, "status: "},
    {{{"errors", "maybe"}}, 1, "errors: "},
    {{{"limit", "0"}}, 1, "limit: "},
    {{{"limit", "1001"}}, 1, "limit: "},
    {{{"cursor", "abc"}}, 1, "cursor: "},
    {{{"by", "day"}}, 1, "unknown parameter 'by'"},
    {{{"from", "2026-03-02"}, {"to", "2026-03-01"}}, 2, "from: must be"},
};

START_TEST(test_parse_refused)
{
    const ut_bad_row_t *row = &ut_bad_rows[_i];
    kg_usage_events_query_t q;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(
        kg_usage_events_query_parse(row->p, row->n, 1773600000, &q, &diag),
        KG_ERR_INVAL);
    ck_assert_msg(strncmp(diag.msg, row->diag, strlen(row->diag)) == 0, "%s",
                  diag.msg);
}
END_TEST

START_TEST(test_parse_defaults)
{
    kg_usage_events_query_t q;
    kg_diag_t diag = {{0}};
    const kg_query_param_t p[] = {{"status", "404"}, {"errors", "true"}};

    ck_assert_int_eq(
        kg_usage_events_query_parse(NULL, 0, 1773600000, &q, &diag), KG_OK);
    ck_assert_int_eq(q.filter.base.from, 0);
    ck_assert_int_eq(q.filter.base.to, KG_USAGE_TIME_MAX);
    ck_assert_int_eq(q.filter.status_min, 0);
    ck_assert_int_eq(q.filter.status_max, 999);
    ck_assert_uint_eq(q.limit, KG_USAGE_EVENTS_LIMIT_DEFAULT);
    ck_assert_str_eq(q.cursor, "");
    ck_assert_int_eq(kg_usage_events_query_parse(p, 2, 1773600000, &q, &diag),
                     KG_OK);
    ck_assert_int_eq(q.filter.status_min, 404);
    ck_assert_int_eq(q.filter.status_max, 404);
}
END_TEST

/* First page's cursor with the given filter params; asserted. */
static void ut_first_cursor(const kg_query_param_t *p, size_t n,
                            char cursor[KG_QUERY_CURSOR_STRLEN])
{
    kg_usage_events_query_t q;
    kg_usage_record_t *ev = NULL;
    size_t count = 0;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_usage_events_query_parse(p, n, 1773600000, &q, &diag),
                     KG_OK);
    q.limit = 5;
    ck_assert_int_eq(
        kg_usage_events_page(ut_store, &q, &ev, &count, cursor, &diag), KG_OK);
    ck_assert_uint_eq(count, 5);
    ck_assert_uint_eq(strlen(cursor), KG_QUERY_CURSOR_LEN);
    free(ev);
}

/* The page of params with cursor: its result code and diag. */
static kg_err_t ut_page_with(const kg_query_param_t *p, size_t n,
                             const char *cursor, kg_diag_t *diag)
{
    kg_query_param_t all[8];
    kg_usage_events_query_t q;
    kg_usage_record_t *ev = NULL;
    char next[KG_QUERY_CURSOR_STRLEN];
    size_t count = 0;
    kg_err_t rc;

    for (size_t i = 0; i < n; i++) {
        all[i] = p[i];
    }
    all[n] = (kg_query_param_t){"cursor", cursor};
    rc = kg_usage_events_query_parse(all, n + 1, 1773600000, &q, diag);
    if (rc == KG_OK) {
        rc = kg_usage_events_page(ut_store, &q, &ev, &count, next, diag);
    }
    free(ev);
    return rc;
}

START_TEST(test_cursor_checks)
{
    const kg_query_param_t key_a[] = {{"key", UT_KEY_A}};
    const kg_query_param_t key_b[] = {{"key", UT_KEY_B}};
    const kg_query_param_t key_a_later[] = {{"key", UT_KEY_A},
                                            {"from", "2026-03-15T02:00:00Z"}};
    char cursor[KG_QUERY_CURSOR_STRLEN];
    char audit[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};

    ut_insert_events(kg_sqlite_db(ut_store), 40);
    ut_first_cursor(key_a, 1, cursor);
    ck_assert_int_eq(ut_page_with(key_a, 1, cursor, &diag), KG_OK);
    /* The range may move (a relative from); the filters may not. */
    ck_assert_int_eq(ut_page_with(key_a_later, 2, cursor, &diag), KG_OK);
    ck_assert_int_eq(ut_page_with(key_b, 1, cursor, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "cursor: it belongs to other"));
    cursor[10] = cursor[10] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(ut_page_with(key_a, 1, cursor, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "cursor: not a cursor"));
    kg_query_cursor_encode(KG_QUERY_CURSOR_AUDIT, 1, 1, 0, audit);
    ck_assert_int_eq(ut_page_with(NULL, 0, audit, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "another listing"));
}
END_TEST

/* ---- JSON and CSV of events --------------------------------------------- */

static void ut_record(kg_usage_record_t *r)
{
    memset(r, 0, sizeof(*r));
    r->id = 9;
    snprintf(r->request_id, sizeof(r->request_id), "req-1");
    snprintf(r->key_id, sizeof(r->key_id), UT_KEY_A);
    snprintf(r->workspace_id, sizeof(r->workspace_id), UT_WS_X);
    r->at_ms = UT_T0_MS + 1234;
    snprintf(r->operation, sizeof(r->operation), "chat");
    snprintf(r->model, sizeof(r->model), "odd,\"model\"");
    snprintf(r->provider, sizeof(r->provider), "openai");
    snprintf(r->mode, sizeof(r->mode), "credits");
    r->status = 429;
    r->prompt_tokens = 12;
    r->completion_tokens = 30;
    r->cached_tokens = 4;
    r->cost = 1250;
    r->latency_ms = 321;
    r->ttft_ms = -1;
    r->streamed = true;
    snprintf(r->client_ip, sizeof(r->client_ip), "::1");
    snprintf(r->error_code, sizeof(r->error_code), "rate_limited");
}

START_TEST(test_event_json_csv)
{
    kg_usage_record_t r;
    char buf[KG_USAGE_CSV_ROW_MAX];
    json_t *j;
    char *text;

    ut_record(&r);
    j = kg_usage_event_to_json(&r);
    text = json_dumps(j, JSON_COMPACT);
    ck_assert_str_eq(text,
                     "{\"requestId\":\"req-1\",\"at\":\"2026-03-15T00:00:01."
                     "234Z\",\"keyId\":\"KeyAAAAAAAAA\",\"workspaceId\":"
                     "\"WsXXXXXXXXXX\",\"operation\":\"chat\",\"model\":"
                     "\"odd,\\\"model\\\"\",\"provider\":\"openai\",\"mode\":"
                     "\"credits\",\"status\":429,\"promptTokens\":12,"
                     "\"completionTokens\":30,\"cachedTokens\":4,"
                     "\"totalTokens\":42,\"cost\":\"0.00125\",\"latencyMs\":"
                     "321,\"ttftMs\":null,\"streamed\":true,\"clientIp\":"
                     "\"::1\",\"errorCode\":\"rate_limited\"}");
    free(text);
    json_decref(j);
    ck_assert_uint_gt(kg_usage_event_csv_header(buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "requestId,at,keyId,workspaceId,operation,model,"
                          "provider,mode,status,promptTokens,"
                          "completionTokens,cachedTokens,totalTokens,cost,"
                          "latencyMs,ttftMs,streamed,clientIp,errorCode\r\n");
    ck_assert_uint_eq(kg_usage_event_csv_row(&r, buf, sizeof(buf)),
                      strlen(buf));
    ck_assert_str_eq(buf, "req-1,2026-03-15T00:00:01.234Z,KeyAAAAAAAAA,"
                          "WsXXXXXXXXXX,chat,\"odd,\"\"model\"\"\",openai,"
                          "credits,429,12,30,4,42,0.00125,321,,true,::1,"
                          "rate_limited\r\n");
    ck_assert_uint_eq(kg_usage_event_csv_row(&r, buf, 40), 0);
    r.ttft_ms = 15;
    r.error_code[0] = '\0';
    r.streamed = false;
    j = kg_usage_event_to_json(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "ttftMs")), 15);
    ck_assert(json_is_null(json_object_get(j, "errorCode")));
    ck_assert(json_is_false(json_object_get(j, "streamed")));
    json_decref(j);
    j = kg_usage_events_to_json(&r, 1, "");
    ck_assert(json_is_null(json_object_get(j, "nextCursor")));
    ck_assert_uint_eq(json_array_size(json_object_get(j, "events")), 1);
    json_decref(j);
}
END_TEST

/* The longest event fits KG_USAGE_CSV_ROW_MAX. */
START_TEST(test_csv_row_max)
{
    kg_usage_record_t r;
    char buf[KG_USAGE_CSV_ROW_MAX];

    ut_record(&r);
    memset(r.request_id, '"', sizeof(r.request_id) - 1);
    memset(r.model, '"', sizeof(r.model) - 1);
    memset(r.provider, '"', sizeof(r.provider) - 1);
    memset(r.operation, '"', sizeof(r.operation) - 1);
    memset(r.mode, '"', sizeof(r.mode) - 1);
    memset(r.client_ip, '"', sizeof(r.client_ip) - 1);
    memset(r.error_code, '"', sizeof(r.error_code) - 1);
    r.prompt_tokens = r.completion_tokens = r.cached_tokens = INT64_MAX;
    r.cost = r.latency_ms = r.ttft_ms = INT64_MAX;
    ck_assert_uint_gt(kg_usage_event_csv_row(&r, buf, sizeof(buf)), 0);
}
END_TEST

/* ---- query plans --------------------------------------------------------- */

/* The plan of a statement prepared on the store's connection. */
static void ut_plan(sqlite3_stmt *st, char *out, size_t len)
{
    char sql[4096];
    sqlite3_stmt *eq = NULL;
    size_t pos = 0;

    snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", sqlite3_sql(st));
    ck_assert_int_eq(
        sqlite3_prepare_v2(kg_sqlite_db(ut_store), sql, -1, &eq, NULL),
        SQLITE_OK);
    out[0] = '\0';
    while (sqlite3_step(eq) == SQLITE_ROW) {
        pos += (size_t)snprintf(out + pos, len - pos, "%s;",
                                (const char *)sqlite3_column_text(eq, 3));
    }
    sqlite3_finalize(eq);
}

typedef struct ut_plan_row {
    const char *lead; /* the statement's WHERE starts so */
    const char *plan; /* a part of its plan */
} ut_plan_row_t;

static const ut_plan_row_t ut_plan_rows[] = {
    {"FROM usage_rollup WHERE key_id = ?1",
     "SEARCH usage_rollup USING PRIMARY KEY (key_id=? AND hour>? AND hour<?)"},
    {"FROM usage_rollup WHERE workspace_id = ?4",
     "SEARCH usage_rollup USING INDEX usage_rollup_workspace (workspace_id=? "
     "AND hour>? AND hour<?)"},
    {"FROM usage_rollup WHERE hour >= ?2",
     "SEARCH usage_rollup USING INDEX usage_rollup_hour (hour>? AND hour<?)"},
    {"FROM usage_events WHERE key_id = ?1",
     "SEARCH usage_events USING INDEX usage_events_key_time (key_id=? AND "
     "at_ms>? AND at_ms<?)"},
    {"FROM usage_events WHERE at_ms >= ?2",
     "SEARCH usage_events USING INDEX usage_events_time (at_ms>? AND "
     "at_ms<?)"},
    {"FROM audit_events WHERE object_id = ?1",
     "SEARCH audit_events USING INDEX audit_events_object_id (object_id=? "
     "AND rowid<?)"},
    {"FROM audit_events WHERE id < ?2",
     "SEARCH audit_events USING INTEGER PRIMARY KEY (rowid<?)"},
};

static bool ut_noop_row(void *ud, const kg_usage_rollup_t *row)
{
    (void)row;
    ++*(int *)ud;
    return true;
}

/* Every read statement uses the index docs/store.md names, never a sort. */
START_TEST(test_plans)
{
    kg_usage_events_filter_t f;
    kg_usage_record_t out[1];
    kg_audit_filter_t af;
    kg_audit_event_t *aev = NULL;
    sqlite3_stmt *st = NULL;
    kg_diag_t diag = {{0}};
    size_t n;
    int rows = 0;
    int seen = 0;
    char plan[1024];

    memset(&f, 0, sizeof(f));
    f.base.from = 0;
    f.base.to = 3600 * 500000;
    f.status_max = 999;
    ck_assert_int_eq(kg_store_usage_rollup_scan(ut_store, &f.base, ut_noop_row,
                                                &rows, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_usage_events_page(ut_store, &f, INT64_MAX,
                                                INT64_MAX, 1, out, &n, &diag),
                     KG_OK);
    snprintf(f.base.workspace_id, sizeof(f.base.workspace_id), UT_WS_X);
    ck_assert_int_eq(kg_store_usage_rollup_scan(ut_store, &f.base, ut_noop_row,
                                                &rows, &diag),
                     KG_OK);
    snprintf(f.base.key_id, sizeof(f.base.key_id), UT_KEY_A);
    ck_assert_int_eq(kg_store_usage_rollup_scan(ut_store, &f.base, ut_noop_row,
                                                &rows, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_usage_events_page(ut_store, &f, INT64_MAX,
                                                INT64_MAX, 1, out, &n, &diag),
                     KG_OK);
    memset(&af, 0, sizeof(af));
    af.to = KG_AUDIT_TIME_MAX;
    ck_assert_int_eq(
        kg_store_audit_page(ut_store, &af, INT64_MAX, 5, &aev, &n, &diag),
        KG_OK);
    kg_audit_events_free(&aev, n);
    snprintf(af.object_id, sizeof(af.object_id), "x");
    ck_assert_int_eq(
        kg_store_audit_page(ut_store, &af, INT64_MAX, 5, &aev, &n, &diag),
        KG_OK);
    kg_audit_events_free(&aev, n);
    while ((st = sqlite3_next_stmt(kg_sqlite_db(ut_store), st)) != NULL) {
        const char *sql = sqlite3_sql(st);

        for (size_t i = 0; i < UT_NROWS(ut_plan_rows); i++) {
            if (strncmp(sql, "SELECT", 6) != 0 ||
                strstr(sql, ut_plan_rows[i].lead) == NULL) {
                continue;
            }
            ut_plan(st, plan, sizeof(plan));
            ck_assert_msg(strstr(plan, ut_plan_rows[i].plan) != NULL, "%s: %s",
                          ut_plan_rows[i].lead, plan);
            ck_assert_msg(strstr(plan, "TEMP B-TREE") == NULL, "%s: %s",
                          ut_plan_rows[i].lead, plan);
            seen |= 1 << i;
        }
    }
    ck_assert_int_eq(seen, (1 << UT_NROWS(ut_plan_rows)) - 1);
}
END_TEST

/* ---- the migration: backfill == the writer ------------------------------ */

#define UT_BACKFILL_N 600

/* Every rollup row of the store at path as text, in key order (new). */
static char *ut_rollup_dump(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    size_t cap = 1 << 20;
    size_t len = 0;
    char *out = malloc(cap);

    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(
        sqlite3_prepare_v2(db,
                           "SELECT * FROM usage_rollup ORDER BY key_id, hour, "
                           "model, provider",
                           -1, &st, NULL),
        SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *v = (const char *)sqlite3_column_text(st, c);

            len += (size_t)snprintf(
                out + len, cap - len, "%s=%s%s", sqlite3_column_name(st, c),
                v ? v : "NULL", c + 1 < sqlite3_column_count(st) ? "|" : "\n");
            ck_assert_uint_lt(len, cap - 1);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* Assert a == b, naming the first line that differs (messages are
 * bounded). */
static void ut_same_lines(const char *a, const char *b)
{
    size_t line = 1;
    size_t i = 0;

    while (a[i] != '\0' && a[i] == b[i]) {
        line += a[i] == '\n';
        i++;
    }
    if (a[i] != b[i]) {
        const char *la = a + i;
        const char *lb = b + i;

        while (la > a && la[-1] != '\n') {
            la--;
            lb--;
        }
        ck_abort_msg("line %zu differs:\n  %.300s\n  %.300s", line, la, lb);
    }
}

START_TEST(test_backfill_matches_writer)
{
    char other[UT_PATH_MAX];
    kg_store_opts_t fresh = {KG_STORE_CREATE, 1000, 0, NULL};
    kg_store_t *b = NULL;
    kg_usagedb_t *w = NULL;
    kg_diag_t diag = {{0}};
    char *migrated;
    char *written;
    sqlite3 *db;

    /* A store one version before the rollup, with events and the old
     * hourly table. */
    ut_open(KG_STORE_VERSION_USAGE_ROLLUP - 1);
    ut_keys(ut_store);
    db = kg_sqlite_db(ut_store);
    ut_insert_events(db, UT_BACKFILL_N);
    ut_exec(db, "INSERT INTO usage_hourly (key_id, hour, model, requests) "
                "SELECT key_id, at_ms / 3600000 * 3600, model, count(*) FROM "
                "usage_events GROUP BY 1, 2, 3");
    kg_store_close(&ut_store);
    ut_open(0);
    db = kg_sqlite_db(ut_store);
    ck_assert_int_eq(kg_store_schema_version(ut_store),
                     KG_STORE_SCHEMA_VERSION);
    ck_assert_int_ne(
        sqlite3_exec(db, "SELECT 1 FROM usage_hourly", NULL, NULL, NULL),
        SQLITE_OK);
    kg_store_close(&ut_store);
    migrated = ut_rollup_dump(ut_path);

    /* The same events through today's writer into a fresh store. */
    ut_join(other, ut_dir, "fresh.db");
    ck_assert_int_eq(kg_store_open(other, &fresh, &b, &diag), KG_OK);
    ut_keys(b);
    kg_store_close(&b);
    ck_assert_msg(kg_usagedb_start(other, 5000, 0, &w, &diag) == KG_OK, "%s",
                  diag.msg);
    for (int i = 0; i < UT_BACKFILL_N; i++) {
        kg_usage_event_t ev;

        ut_event(&ev, i);
        ck_assert_int_eq(kg_usagedb_submit(w, &ev, NULL, NULL), KG_OK);
    }
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    kg_usagedb_stop(&w);
    written = ut_rollup_dump(other);
    ck_assert_uint_gt(strlen(migrated), 1000);
    ut_same_lines(migrated, written);
    free(migrated);
    free(written);
}
END_TEST

START_TEST(test_backfill_sums)
{
    sqlite3_stmt *st = NULL;
    sqlite3 *db;

    ut_open(KG_STORE_VERSION_USAGE_ROLLUP - 1);
    ut_keys(ut_store);
    ut_insert_events(kg_sqlite_db(ut_store), UT_BACKFILL_N);
    kg_store_close(&ut_store);
    ut_open(0);
    db = kg_sqlite_db(ut_store);
    ck_assert_int_eq(
        sqlite3_prepare_v2(
            db,
            "SELECT (SELECT count(*) FROM usage_events), sum(requests), "
            "sum(lat_5 + lat_10 + lat_25 + lat_50 + lat_100 + lat_250 + "
            "lat_500 + lat_1000 + lat_2500 + lat_5000 + lat_10000 + "
            "lat_30000 + lat_60000 + lat_120000 + lat_inf), sum(ttft_count), "
            "(SELECT count(ttft_ms) FROM usage_events), sum(cost), "
            "(SELECT sum(cost) FROM usage_events), max(latency_ms_max) "
            "FROM usage_rollup",
            -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int64(st, 0), UT_BACKFILL_N);
    ck_assert_int_eq(sqlite3_column_int64(st, 1), UT_BACKFILL_N);
    ck_assert_int_eq(sqlite3_column_int64(st, 2), UT_BACKFILL_N);
    ck_assert_int_eq(sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4));
    ck_assert_int_eq(sqlite3_column_int64(st, 5), sqlite3_column_int64(st, 6));
    ck_assert_int_eq(sqlite3_column_int64(st, 7), 200000);
    sqlite3_finalize(st);
}
END_TEST

/* ---- writes -------------------------------------------------------------- */

/* One integer a query on the store's file returns. */
static int64_t ut_int(const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    ck_assert_int_eq(
        sqlite3_prepare_v2(kg_sqlite_db(ut_store), sql, -1, &st, NULL),
        SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Event i of ut_event as a stored row. */
static void ut_row(kg_usage_record_t *r, int i)
{
    kg_usage_event_t ev;

    ut_event(&ev, i);
    memset(r, 0, sizeof(*r));
    r->id = 12345; /* ignored on insert */
    snprintf(r->request_id, sizeof(r->request_id), "%s", ev.request_id);
    snprintf(r->key_id, sizeof(r->key_id), "%s", ev.key_id);
    snprintf(r->workspace_id, sizeof(r->workspace_id), "%s", ev.workspace_id);
    r->at_ms = ev.at_ms;
    snprintf(r->operation, sizeof(r->operation), "%s", ev.operation);
    snprintf(r->model, sizeof(r->model), "%s", ev.model);
    snprintf(r->provider, sizeof(r->provider), "%s", ev.provider);
    snprintf(r->mode, sizeof(r->mode), "%s", ev.mode);
    r->status = ev.status;
    r->prompt_tokens = ev.prompt_tokens;
    r->completion_tokens = ev.completion_tokens;
    r->cached_tokens = ev.cached_tokens;
    r->cost = ev.cost;
    r->latency_ms = ev.latency_ms;
    r->ttft_ms = ev.ttft_ms;
    r->streamed = ev.streamed;
    snprintf(r->client_ip, sizeof(r->client_ip), "%s", ev.client_ip);
    snprintf(r->error_code, sizeof(r->error_code), "%s", ev.error_code);
}

/* A batch: each event gets its own verdict, the refused ones undo only
 * themselves, and what is stored reads back field for field. */
START_TEST(test_events_insert)
{
    kg_usage_record_t in[5];
    kg_usage_record_t out[6];
    kg_err_t verdicts[5];
    kg_usage_events_filter_t f;
    kg_diag_t diag = {{0}};
    size_t n = 0;

    for (int i = 0; i < 5; i++) {
        ut_row(&in[i], i);
    }
    snprintf(in[1].key_id, sizeof(in[1].key_id), "NoSuchKey000");
    snprintf(in[2].request_id, sizeof(in[2].request_id), "%s",
             in[0].request_id);
    snprintf(in[3].mode, sizeof(in[3].mode), "bogus");
    ck_assert_int_eq(kg_store_begin(ut_store, &diag), KG_OK);
    ck_assert_msg(
        kg_store_usage_events_insert(ut_store, in, 5, verdicts, &diag) == KG_OK,
        "%s", diag.msg);
    ck_assert_int_eq(kg_store_commit(ut_store, &diag), KG_OK);
    ck_assert_int_eq(verdicts[0], KG_OK);
    ck_assert_int_eq(verdicts[1], KG_ERR_NOT_FOUND);
    ck_assert_int_eq(verdicts[2], KG_ERR_EXISTS);
    ck_assert_int_eq(verdicts[3], KG_ERR_INVAL);
    ck_assert_int_eq(verdicts[4], KG_OK);

    memset(&f, 0, sizeof(f));
    f.base.to = KG_USAGE_TIME_MAX;
    f.status_max = 999;
    ck_assert_int_eq(kg_store_usage_events_page(ut_store, &f, INT64_MAX,
                                                INT64_MAX, 6, out, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 2);
    for (size_t i = 0; i < n; i++) {
        const kg_usage_record_t *want = &in[i == 0 ? 4 : 0]; /* newest first */

        ck_assert_int_ne(out[i].id, 12345);
        out[i].id = want->id;
        ck_assert_msg(memcmp(&out[i], want, sizeof(*want)) == 0,
                      "row %zu differs", i);
    }

    /* Over the bound: refused whole. */
    ck_assert_int_eq(kg_store_usage_events_insert(ut_store, in,
                                                  KG_STORE_USAGE_BATCH_MAX + 1,
                                                  verdicts, &diag),
                     KG_ERR_INVAL);
}
END_TEST

/* Key charges: lifetime usage always, period usage by period, last use the
 * latest. */
START_TEST(test_charge_key)
{
    kg_diag_t diag = {{0}};

    ut_exec(kg_sqlite_db(ut_store),
            "UPDATE api_keys SET period = 'day', period_usage = 0, "
            "period_started_at = 86400 WHERE id = '" UT_KEY_A "'");
    ck_assert_int_eq(kg_store_begin(ut_store, &diag), KG_OK);
    /* The current period, twice: adds up. */
    ck_assert_int_eq(
        kg_store_usage_charge_key(ut_store, UT_KEY_A, 5, 90000, 86400, &diag),
        KG_OK);
    ck_assert_int_eq(
        kg_store_usage_charge_key(ut_store, UT_KEY_A, 7, 80000, 86400, &diag),
        KG_OK);
    ck_assert_int_eq(kg_store_commit(ut_store, &diag), KG_OK);
    ck_assert_int_eq(ut_int("SELECT usage * 1000000 + period_usage * 1000 + "
                            "(period_started_at = 86400) FROM api_keys "
                            "WHERE id = '" UT_KEY_A "'"),
                     12012001);
    ck_assert_int_eq(ut_int("SELECT last_used_at FROM api_keys WHERE id = "
                            "'" UT_KEY_A "'"),
                     90000);

    /* An older period counts toward the lifetime only; a newer one starts
     * anew; a key without a period keeps its period usage. */
    ck_assert_int_eq(
        kg_store_usage_charge_key(ut_store, UT_KEY_A, 3, 100, 0, &diag), KG_OK);
    ck_assert_int_eq(ut_int("SELECT usage * 1000000 + period_usage * 1000 + "
                            "(period_started_at = 86400) FROM api_keys "
                            "WHERE id = '" UT_KEY_A "'"),
                     15012001);
    ck_assert_int_eq(
        kg_store_usage_charge_key(ut_store, UT_KEY_A, 4, 180000, 172800, &diag),
        KG_OK);
    ck_assert_int_eq(ut_int("SELECT usage * 1000000 + period_usage * 1000 + "
                            "(period_started_at = 172800) FROM api_keys "
                            "WHERE id = '" UT_KEY_A "'"),
                     19004001);
    ck_assert_int_eq(
        kg_store_usage_charge_key(ut_store, UT_KEY_B, 9, 50, 172800, &diag),
        KG_OK);
    ck_assert_int_eq(ut_int("SELECT usage * 1000 + period_usage + "
                            "(period_started_at IS NULL) FROM api_keys "
                            "WHERE id = '" UT_KEY_B "'"),
                     9001);
    /* No such key: nothing to charge, no error. */
    ck_assert_int_eq(
        kg_store_usage_charge_key(ut_store, "NoSuchKey000", 1, 1, -1, &diag),
        KG_OK);
}
END_TEST

START_TEST(test_charge_credits)
{
    kg_diag_t diag = {{0}};

    ut_exec(kg_sqlite_db(ut_store),
            "UPDATE workspaces SET credits_balance = 1000 WHERE id = "
            "'" UT_WS_X "'");
    ck_assert_int_eq(
        kg_store_usage_charge_credits(ut_store, UT_WS_X, 250, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_usage_charge_credits(ut_store, UT_WS_X, 1000, &diag), KG_OK);
    ck_assert_int_eq(ut_int("SELECT credits_balance FROM workspaces WHERE "
                            "id = '" UT_WS_X "'"),
                     -250);
    ck_assert_int_eq(ut_int("SELECT credits_balance FROM workspaces WHERE "
                            "id = '" UT_WS_Y "'"),
                     0);
}
END_TEST

static void ut_count_calls(void *ud)
{
    (*(int *)ud)++;
}

/* The progress hook runs during long statements, until it is cleared. */
START_TEST(test_progress_hook)
{
    int calls = 0;
    const kg_store_progress_t hook = {ut_count_calls, &calls};

    ut_insert_events(kg_sqlite_db(ut_store), UT_N);
    kg_store_usage_set_progress(ut_store, &hook);
    ck_assert_int_eq(ut_int("SELECT sum(length(model) + cost) FROM "
                            "usage_events"),
                     ut_int("SELECT sum(length(model)) + sum(cost) FROM "
                            "usage_events"));
    ck_assert_int_gt(calls, 0);
    kg_store_usage_set_progress(ut_store, NULL);
    calls = 0;
    (void)ut_int("SELECT sum(cost) FROM usage_events");
    ck_assert_int_eq(calls, 0);
}
END_TEST

/* A backend without the tables answers "not supported", outputs cleared. */
START_TEST(test_backend_without_tables)
{
    const kg_store_backend_t bare = {.name = "bare"};
    struct kg_store s = {.be = &bare, .location = (char *)"bare://"};
    kg_store_maint_ops_t no_backup = kg_sqlite_maint_ops;
    const kg_store_backend_t partial = {.name = "partial", .maint = &no_backup};
    kg_store_progress_t hook = {ut_count_calls, NULL};
    kg_diag_t diag = {{0}};
    int64_t a = 7;
    int64_t b = 7;
    size_t n = 7;
    bool stored = true;
    kg_audit_event_t *events = (kg_audit_event_t *)&diag;
    kg_audit_filter_t af = {.to = KG_AUDIT_TIME_MAX};

    ck_assert_int_eq(kg_store_usage_span(&s, &a, &b, &diag), KG_ERR_STORE);
    ck_assert_ptr_nonnull(strstr(diag.msg, "not supported by the bare store"));
    ck_assert_int_eq(a, -1);
    ck_assert_int_eq(b, -1);
    ck_assert_int_eq(kg_store_usage_prune(&s, 1, 1, &n, &diag), KG_ERR_STORE);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(kg_store_usage_stored(&s, "r", &stored, &diag),
                     KG_ERR_STORE);
    ck_assert(!stored);
    kg_store_usage_set_progress(&s, &hook); /* nothing to do */
    ck_assert_int_eq(
        kg_store_audit_insert(&s, 1, "a", "b", "c", "d", "{}", &diag),
        KG_ERR_STORE);
    ck_assert_int_eq(
        kg_store_audit_page(&s, &af, INT64_MAX, 1, &events, &n, &diag),
        KG_ERR_STORE);
    ck_assert_ptr_null(events);
    ck_assert_int_eq(kg_store_backup_copy(&s, "/nonexistent", &a, &diag),
                     KG_ERR_STORE);
    ck_assert_int_eq(a, 0);

    /* A maintenance table without online backup: the copy is refused. */
    no_backup.backup_copy = NULL;
    s.be = &partial;
    ck_assert_int_eq(kg_store_backup_copy(&s, "/nonexistent", &a, &diag),
                     KG_ERR_STORE);
    ck_assert_ptr_nonnull(
        strstr(diag.msg, "online backup: not supported by the partial store"));
}
END_TEST

static void ut_tmpdir_fixture(void)
{
    ut_tmpdir(ut_dir);
}

static void ut_tmpdir_teardown(void)
{
    kg_store_close(&ut_store);
    ut_tmpdir_remove(ut_dir);
}

static Suite *store_usage_suite(void)
{
    Suite *s = suite_create("store_usage");
    TCase *tc = tcase_create("pages");
    TCase *wr = tcase_create("writes");
    TCase *mig = tcase_create("migration");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_loop_test(tc, test_pages, 0, (int)UT_NROWS(ut_page_rows));
    tcase_add_test(tc, test_page_fields);
    tcase_add_loop_test(tc, test_parse_refused, 0, (int)UT_NROWS(ut_bad_rows));
    tcase_add_test(tc, test_parse_defaults);
    tcase_add_test(tc, test_cursor_checks);
    tcase_add_test(tc, test_event_json_csv);
    tcase_add_test(tc, test_csv_row_max);
    tcase_add_test(tc, test_plans);
    suite_add_tcase(s, tc);
    tcase_add_checked_fixture(wr, ut_setup, ut_teardown);
    tcase_add_test(wr, test_events_insert);
    tcase_add_test(wr, test_charge_key);
    tcase_add_test(wr, test_charge_credits);
    tcase_add_test(wr, test_progress_hook);
    tcase_add_test(wr, test_backend_without_tables);
    suite_add_tcase(s, wr);
    tcase_add_checked_fixture(mig, ut_tmpdir_fixture, ut_tmpdir_teardown);
    tcase_add_test(mig, test_backfill_matches_writer);
    tcase_add_test(mig, test_backfill_sums);
    suite_add_tcase(s, mig);
    return s;
}

int main(void)
{
    return ut_run(store_usage_suite());
}
