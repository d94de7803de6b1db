/* Unit tests of the usage queries: parsing, folding, series, JSON, CSV. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/store.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/store_usage.h"
#include "keygate/usage_query.h"
#include "keygate/workspaces.h"
#include "unit_util.h"

#define UT_ACTOR "test:unit"
#define UT_KEY_A "KeyAAAAAAAAA" /* workspace default */
#define UT_KEY_B "KeyBBBBBBBBB" /* workspace team-b */

static char ut_dir[UT_PATH_MAX];
static kg_store_t *ut_store;
static char ut_ws_default[KG_WORKSPACE_ID_LEN + 1];
static char ut_ws_b[KG_WORKSPACE_ID_LEN + 1];

static void ut_key_row(const char *id, const char *ws)
{
    sqlite3_stmt *st = NULL;

    ck_assert_int_eq(sqlite3_prepare_v2(kg_sqlite_db(ut_store),
                                        "INSERT INTO api_keys (id, "
                                        "workspace_id, name, prefix, last4, "
                                        "created_at, updated_at) VALUES (?, "
                                        "?, 'k', 'kg', 'abcd', 1, 1)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ws, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

static void ut_setup(void)
{
    char path[UT_PATH_MAX];
    kg_store_opts_t opts = {KG_STORE_CREATE, 1000, 0, NULL};
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};

    ut_tmpdir(ut_dir);
    ut_join(path, ut_dir, "keygate.db");
    ck_assert_msg(kg_store_open(path, &opts, &ut_store, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_workspace_ensure_default(ut_store, UT_ACTOR, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_get(ut_store, "default", &ws, &diag), KG_OK);
    memcpy(ut_ws_default, ws.id, sizeof(ut_ws_default));
    kg_workspace_clear(&ws);
    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-b",
                                         KG_MODE_API_KEYS, &ws, &diag),
                     KG_OK);
    memcpy(ut_ws_b, ws.id, sizeof(ut_ws_b));
    kg_workspace_clear(&ws);
    ut_key_row(UT_KEY_A, ut_ws_default);
    ut_key_row(UT_KEY_B, ut_ws_b);
}

static void ut_teardown(void)
{
    kg_store_close(&ut_store);
    ut_tmpdir_remove(ut_dir);
}

/* Add n requests of cost each and latency ms to a rollup row. */
static void ut_rollup(const char *key, int64_t hour, const char *model,
                      const char *provider, int64_t n, int64_t cost,
                      int64_t latency)
{
    kg_usage_rollup_t row;
    kg_diag_t diag = {{0}};

    memset(&row, 0, sizeof(row));
    row.hour = hour;
    row.key_id = key;
    row.workspace_id = strcmp(key, UT_KEY_A) == 0 ? ut_ws_default : ut_ws_b;
    row.model = model;
    row.provider = provider;
    for (int64_t i = 0; i < n; i++) {
        kg_usage_sample_t x = {200, 10, 5, 1, cost, latency, latency / 2, true};

        kg_usage_sums_add(&row.sums, &x);
    }
    ck_assert_msg(kg_store_usage_rollup_add(ut_store, &row, &diag) == KG_OK,
                  "%s", diag.msg);
}

/* ---- parsing ------------------------------------------------------------- */

/* 2026-03-15T12:34:56Z */
#define UT_NOW INT64_C(1773578096)

typedef struct ut_parse_row {
    kg_query_param_t p[5];
    size_t n;
    bool ok;
    int64_t from; /* when ok: the aligned range and its buckets */
    int64_t to;
    size_t nbuckets;
    const char *diag; /* when refused: the start of the message */
} ut_parse_row_t;

#define UT_T(y, mo, d, h) (ut_utc_const(y, mo, d, h))

/* Unix seconds of a UTC date and hour (days from civil, no libc). */
static int64_t ut_utc_const(int y, int m, int d, int h)
{
    return ut_utc(y, m, d, h, 0, 0);
}

static ut_parse_row_t ut_parse_rows[32];
static size_t ut_nparse;

static void ut_parse_add(ut_parse_row_t row)
{
    /* Built in main(), outside any test: no ck_assert here. */
    if (ut_nparse == UT_NROWS(ut_parse_rows)) {
        abort();
    }
    ut_parse_rows[ut_nparse++] = row;
}

/* The table, built once (ut_utc is a function). */
static void ut_parse_table(void)
{
    if (ut_nparse > 0) {
        return;
    }
    /* Defaults: by day, the last 30 days, whole buckets. */
    ut_parse_add((ut_parse_row_t){
        {{0}}, 0, true, UT_T(2026, 2, 13, 0), UT_T(2026, 3, 16, 0), 31, NULL});
    ut_parse_add((ut_parse_row_t){{{"by", "hour"}},
                                  1,
                                  true,
                                  UT_T(2026, 3, 14, 12),
                                  UT_T(2026, 3, 15, 13),
                                  25,
                                  NULL});
    ut_parse_add((ut_parse_row_t){{{"by", "month"}},
                                  1,
                                  true,
                                  UT_T(2025, 3, 1, 0),
                                  UT_T(2026, 4, 1, 0),
                                  13,
                                  NULL});
    /* Across a day and a month boundary by hour. */
    ut_parse_add((ut_parse_row_t){{{"from", "2026-01-31T23:30:00Z"},
                                   {"to", "2026-02-01T00:30:00Z"},
                                   {"by", "hour"}},
                                  3,
                                  true,
                                  UT_T(2026, 1, 31, 23),
                                  UT_T(2026, 2, 1, 1),
                                  2,
                                  NULL});
    /* Calendar months: January, February (leap), March. */
    ut_parse_add((ut_parse_row_t){
        {{"from", "2024-01-15"}, {"to", "2024-03-15"}, {"by", "month"}},
        3,
        true,
        UT_T(2024, 1, 1, 0),
        UT_T(2024, 4, 1, 0),
        3,
        NULL});
    ut_parse_add((ut_parse_row_t){
        {{"from", "2024-02-28"}, {"to", "2024-03-01"}, {"by", "day"}},
        3,
        true,
        UT_T(2024, 2, 28, 0),
        UT_T(2024, 3, 1, 0),
        2,
        NULL});
    ut_parse_add((ut_parse_row_t){
        {{"from", "2023-12-31T12:00:00Z"}, {"to", "2024-01-01T12:00:00Z"}},
        2,
        true,
        UT_T(2023, 12, 31, 0),
        UT_T(2024, 1, 2, 0),
        2,
        NULL});
    /* An offset is converted to UTC before aligning. */
    ut_parse_add(
        (ut_parse_row_t){{{"from", "2026-03-01T01:00:00+02:00"}, {"to", "now"}},
                         2,
                         true,
                         UT_T(2026, 2, 28, 0),
                         UT_T(2026, 3, 16, 0),
                         16,
                         NULL});
    ut_parse_add((ut_parse_row_t){{{"from", "7d"},
                                   {"key", "kg_KeyAAAAAAAAA"},
                                   {"workspace", "team-b"},
                                   {"model", "gpt-4o"},
                                   {"provider", "openai"}},
                                  5,
                                  true,
                                  UT_T(2026, 3, 8, 0),
                                  UT_T(2026, 3, 16, 0),
                                  8,
                                  NULL});
    /* The bounds: 100 days by hour is the most. */
    ut_parse_add((ut_parse_row_t){
        {{"from", "2026-01-01"}, {"to", "2026-04-11"}, {"by", "hour"}},
        3,
        true,
        UT_T(2026, 1, 1, 0),
        UT_T(2026, 4, 11, 0),
        2400,
        NULL});
    ut_parse_add((ut_parse_row_t){{{"from", "2026-01-01"},
                                   {"to", "2026-04-11T00:00:01Z"},
                                   {"by", "hour"}},
                                  3,
                                  false,
                                  0,
                                  0,
                                  0,
                                  "from: the range holds"});
    ut_parse_add((ut_parse_row_t){{{"from", "1900-01-01"}, {"by", "month"}},
                                  2,
                                  false,
                                  0,
                                  0,
                                  0,
                                  "from: "});
    ut_parse_add((ut_parse_row_t){{{"from", "1970-01-01"}, {"by", "month"}},
                                  2,
                                  true,
                                  0,
                                  UT_T(2026, 4, 1, 0),
                                  675,
                                  NULL});
    ut_parse_add((ut_parse_row_t){{{"from", "1970-01-01"}, {"by", "day"}},
                                  2,
                                  false,
                                  0,
                                  0,
                                  0,
                                  "from: the range holds"});
    /* Refusals name the parameter. */
    ut_parse_add((ut_parse_row_t){{{"by", "week"}},
                                  1,
                                  false,
                                  0,
                                  0,
                                  0,
                                  "by: 'week' is not one of hour, day, month"});
    ut_parse_add((ut_parse_row_t){{{"group", "team"}},
                                  1,
                                  false,
                                  0,
                                  0,
                                  0,
                                  "group: 'team' is not one of none, key"});
    ut_parse_add(
        (ut_parse_row_t){{{"from", "2026-03-01"}, {"to", "2026-03-01"}},
                         2,
                         false,
                         0,
                         0,
                         0,
                         "from: must be before to"});
    ut_parse_add(
        (ut_parse_row_t){{{"from", "2026-03-02"}, {"to", "2026-03-01"}},
                         2,
                         false,
                         0,
                         0,
                         0,
                         "from: must be before to"});
    ut_parse_add(
        (ut_parse_row_t){{{"to", "10000-01-02"}}, 1, false, 0, 0, 0, "to: "});
    ut_parse_add((ut_parse_row_t){{{"from", "last week"}},
                                  1,
                                  false,
                                  0,
                                  0,
                                  0,
                                  "from: 'last week' is not a time"});
    ut_parse_add((ut_parse_row_t){
        {{"key", "short"}}, 1, false, 0, 0, 0, "key: not a key id"});
    ut_parse_add((ut_parse_row_t){
        {{"key", "KG_KeyAAAAAAAAA"}}, 1, false, 0, 0, 0, "key: not a key id"});
    ut_parse_add((ut_parse_row_t){
        {{"status", "4xx"}}, 1, false, 0, 0, 0, "unknown parameter 'status'"});
    ut_parse_add((ut_parse_row_t){
        {{"model", ""}}, 1, false, 0, 0, 0, "model: empty value"});
}

START_TEST(test_parse)
{
    const ut_parse_row_t *row;
    kg_usage_query_t q;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    ut_parse_table();
    ck_assert_uint_lt((size_t)_i, ut_nparse);
    row = &ut_parse_rows[_i];
    rc = kg_usage_query_parse(row->p, row->n, UT_NOW, &q, &diag);
    if (!row->ok) {
        ck_assert_msg(rc == KG_ERR_INVAL, "row %d accepted", _i);
        ck_assert_msg(strncmp(diag.msg, row->diag, strlen(row->diag)) == 0,
                      "row %d: '%s'", _i, diag.msg);
        return;
    }
    ck_assert_msg(rc == KG_OK, "row %d: %s", _i, diag.msg);
    ck_assert_int_eq(q.filter.from, row->from);
    ck_assert_int_eq(q.filter.to, row->to);
    ck_assert_uint_eq(q.nbuckets, row->nbuckets);
}
END_TEST

START_TEST(test_parse_fields)
{
    const kg_query_param_t p[] = {
        {"key", "kg_KeyAAAAAAAAA"}, {"workspace", "team-b"},
        {"model", "gpt-4o"},        {"provider", "openai"},
        {"group", "workspace"},     {"by", "hour"},
    };
    kg_usage_query_t q;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_usage_query_parse(p, UT_NROWS(p), UT_NOW, &q, &diag),
                     KG_OK);
    ck_assert_str_eq(q.filter.key_id, UT_KEY_A);
    ck_assert_str_eq(q.workspace, "team-b");
    ck_assert_str_eq(q.filter.workspace_id, ""); /* resolved by run */
    ck_assert_str_eq(q.filter.model, "gpt-4o");
    ck_assert_str_eq(q.filter.provider, "openai");
    ck_assert_int_eq(q.group, KG_USAGE_GROUP_WORKSPACE);
    ck_assert_int_eq(q.bucket, KG_USAGE_BY_HOUR);
    ck_assert_str_eq(kg_usage_group_name(q.group), "workspace");
    ck_assert_str_eq(kg_usage_bucket_name(q.bucket), "hour");
}
END_TEST

/* ---- running: folding, zero-fill, groups, filters --------------------------
 */

static kg_usage_result_t *ut_run_q(const kg_query_param_t *p, size_t n)
{
    kg_usage_query_t q;
    kg_usage_result_t *r = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_usage_query_parse(p, n, UT_NOW, &q, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_msg(kg_usage_query_run(ut_store, &q, &r, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* Rows around the end of January 2026 and in March. */
static void ut_month_rows(void)
{
    ut_rollup(UT_KEY_A, UT_T(2026, 1, 31, 22), "gpt-4o", "openai", 2, 100, 40);
    ut_rollup(UT_KEY_A, UT_T(2026, 1, 31, 23), "gpt-4o", "openai", 3, 100, 40);
    ut_rollup(UT_KEY_A, UT_T(2026, 2, 1, 0), "gpt-4o", "openai", 5, 100, 400);
    ut_rollup(UT_KEY_B, UT_T(2026, 2, 1, 0), "claude", "anthropic", 7, 300,
              400);
    ut_rollup(UT_KEY_B, UT_T(2026, 2, 28, 23), "claude", "anthropic", 11, 300,
              4000);
    ut_rollup(UT_KEY_A, UT_T(2026, 3, 1, 0), "gpt-4o", "azure", 13, 100, 40);
    /* Outside every range below. */
    ut_rollup(UT_KEY_A, UT_T(2025, 12, 31, 23), "gpt-4o", "openai", 17, 1, 1);
    ut_rollup(UT_KEY_A, UT_T(2026, 4, 1, 0), "gpt-4o", "openai", 19, 1, 1);
}

START_TEST(test_fold_months)
{
    const kg_query_param_t p[] = {{"from", "2026-01-01"},
                                  {"to", "2026-03-31T23:59:59Z"},
                                  {"by", "month"}};
    kg_usage_result_t *r;

    ut_month_rows();
    r = ut_run_q(p, UT_NROWS(p));
    ck_assert_uint_eq(r->nbuckets, 3);
    ck_assert_int_eq(r->starts[0], UT_T(2026, 1, 1, 0));
    ck_assert_int_eq(r->starts[1], UT_T(2026, 2, 1, 0));
    ck_assert_int_eq(r->starts[2], UT_T(2026, 3, 1, 0));
    ck_assert_int_eq(r->starts[3], UT_T(2026, 4, 1, 0));
    ck_assert_uint_eq(r->ngroups, 1);
    ck_assert_str_eq(r->groups[0].name, "");
    ck_assert_int_eq(r->groups[0].buckets[0].requests, 5);
    ck_assert_int_eq(r->groups[0].buckets[1].requests, 5 + 7 + 11);
    ck_assert_int_eq(r->groups[0].buckets[2].requests, 13);
    ck_assert_int_eq(r->groups[0].buckets[1].cost, 500 + 2100 + 3300);
    ck_assert_int_eq(r->totals.requests, 41);
    ck_assert_int_eq(r->totals.cost, 500 + 500 + 2100 + 3300 + 1300);
    ck_assert_int_eq(r->groups[0].totals.requests, 41);
    kg_usage_result_free(&r);
    ck_assert_ptr_null(r);
}
END_TEST

START_TEST(test_fold_days_zero_fill)
{
    const kg_query_param_t p[] = {{"from", "2026-01-30"},
                                  {"to", "2026-03-02"},
                                  {"by", "day"},
                                  {"group", "provider"}};
    kg_usage_result_t *r;
    int64_t sum = 0;

    ut_month_rows();
    r = ut_run_q(p, UT_NROWS(p));
    ck_assert_uint_eq(r->nbuckets, 2 + 28 + 1);
    for (size_t b = 0; b < r->nbuckets; b++) {
        ck_assert_int_eq(r->starts[b + 1] - r->starts[b], 86400);
    }
    /* By cost: anthropic 5400, openai 1000, azure 1300 → anthropic, azure,
     * openai. */
    ck_assert_uint_eq(r->ngroups, 3);
    ck_assert_str_eq(r->groups[0].name, "anthropic");
    ck_assert_str_eq(r->groups[1].name, "azure");
    ck_assert_str_eq(r->groups[2].name, "openai");
    /* openai: Jan 31 (5) and Feb 1 (5); every other day is zero. */
    for (size_t b = 0; b < r->nbuckets; b++) {
        const kg_usage_sums_t *s = &r->groups[2].buckets[b];
        int64_t want = b == 1 ? 5 : b == 2 ? 5 : 0;

        ck_assert_int_eq(s->requests, want);
        if (want == 0) {
            ck_assert_int_eq(s->cost, 0);
            ck_assert_int_eq(s->latency_ms_max, 0);
        }
        sum += s->requests;
    }
    ck_assert_int_eq(sum, r->groups[2].totals.requests);
    /* anthropic: Feb 1 and Feb 28; azure: Mar 1, the last bucket. */
    ck_assert_int_eq(r->groups[0].buckets[2].requests, 7);
    ck_assert_int_eq(r->groups[0].buckets[29].requests, 11);
    ck_assert_int_eq(r->groups[0].totals.requests, 18);
    ck_assert_int_eq(r->groups[1].buckets[30].requests, 13);
    ck_assert_int_eq(r->groups[1].buckets[29].requests, 0);
    kg_usage_result_free(&r);
}
END_TEST

/* Nothing in the range: one zero-filled series without a group, none with
 * one. */
START_TEST(test_fold_empty)
{
    const kg_query_param_t none[] = {{"from", "2020-01-01"},
                                     {"to", "2020-01-03"}};
    const kg_query_param_t by_key[] = {
        {"from", "2020-01-01"}, {"to", "2020-01-03"}, {"group", "key"}};
    kg_usage_result_t *r;

    ut_month_rows();
    r = ut_run_q(none, UT_NROWS(none));
    ck_assert_uint_eq(r->ngroups, 1);
    ck_assert_uint_eq(r->nbuckets, 2);
    ck_assert_int_eq(r->groups[0].buckets[1].requests, 0);
    ck_assert_int_eq(r->totals.requests, 0);
    kg_usage_result_free(&r);
    r = ut_run_q(by_key, UT_NROWS(by_key));
    ck_assert_uint_eq(r->ngroups, 0);
    kg_usage_result_free(&r);
}
END_TEST

typedef struct ut_filter_row {
    kg_query_param_t p[2];
    size_t n;
    int64_t requests;
    size_t ngroups;
} ut_filter_row_t;

static const ut_filter_row_t ut_filter_rows[] = {
    {{{"group", "key"}}, 1, 41, 2},
    {{{"group", "model"}}, 1, 41, 2},
    {{{"group", "workspace"}}, 1, 41, 2},
    {{{"key", UT_KEY_A}, {"group", "provider"}}, 2, 23, 2},
    {{{"key", "kg_" UT_KEY_B}}, 1, 18, 1},
    {{{"workspace", "team-b"}, {"group", "key"}}, 2, 18, 1},
    {{{"workspace", "default"}}, 1, 23, 1},
    {{{"model", "gpt-4o"}, {"group", "provider"}}, 2, 23, 2},
    {{{"provider", "azure"}}, 1, 13, 1},
    {{{"provider", "nobody"}}, 1, 0, 1},
    {{{"model", "claude"}, {"key", UT_KEY_A}}, 2, 0, 1},
};

START_TEST(test_filters)
{
    const ut_filter_row_t *row = &ut_filter_rows[_i];
    kg_query_param_t p[4] = {{"from", "2026-01-01"}, {"to", "2026-03-31"}};
    kg_usage_result_t *r;

    ut_month_rows();
    memcpy(p + 2, row->p, row->n * sizeof(*p));
    r = ut_run_q(p, 2 + row->n);
    ck_assert_int_eq(r->totals.requests, row->requests);
    ck_assert_uint_eq(r->ngroups, row->ngroups);
    if (r->ngroups == 2) {
        ck_assert_int_eq(r->groups[0].totals.requests +
                             r->groups[1].totals.requests,
                         row->requests);
        ck_assert_int_ge(r->groups[0].totals.cost, r->groups[1].totals.cost);
    }
    kg_usage_result_free(&r);
}
END_TEST

START_TEST(test_workspace_unknown)
{
    const kg_query_param_t p[] = {{"workspace", "nope"}};
    kg_usage_query_t q;
    kg_usage_result_t *r = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_usage_query_parse(p, 1, UT_NOW, &q, &diag), KG_OK);
    ck_assert_int_eq(kg_usage_query_run(ut_store, &q, &r, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_ptr_null(r);
}
END_TEST

/* More groups than KG_USAGE_GROUPS_MAX, or groups × buckets over
 * KG_USAGE_POINTS_MAX: a clear refusal. */
START_TEST(test_group_bounds)
{
    const kg_query_param_t many[] = {
        {"from", "2026-03-01"}, {"to", "2026-03-02"}, {"group", "model"}};
    const kg_query_param_t points[] = {{"from", "2026-01-01"},
                                       {"to", "2026-04-11"},
                                       {"by", "hour"},
                                       {"group", "model"}};
    kg_usage_query_t q;
    kg_usage_result_t *r = NULL;
    kg_diag_t diag = {{0}};
    char model[32];

    ck_assert_int_eq(kg_store_begin(ut_store, &diag), KG_OK);
    for (int i = 0; i <= KG_USAGE_GROUPS_MAX; i++) {
        snprintf(model, sizeof(model), "model-%04d", i);
        ut_rollup(UT_KEY_A, UT_T(2026, 3, 1, 5), model, "p", 1, 1, 1);
    }
    ck_assert_int_eq(kg_store_commit(ut_store, &diag), KG_OK);
    ck_assert_int_eq(kg_usage_query_parse(many, 3, UT_NOW, &q, &diag), KG_OK);
    ck_assert_int_eq(kg_usage_query_run(ut_store, &q, &r, &diag), KG_ERR_INVAL);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(diag.msg, "group: more than 500 models") != NULL, "%s",
                  diag.msg);
    /* 2400 hourly buckets: 20 groups fit, the 21st does not. */
    ck_assert_int_eq(kg_usage_query_parse(points, 4, UT_NOW, &q, &diag), KG_OK);
    ck_assert_int_eq(kg_usage_query_run(ut_store, &q, &r, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "50000 groups x buckets"));
    /* With a filter the same range passes. */
    {
        const kg_query_param_t one[] = {{"from", "2026-01-01"},
                                        {"to", "2026-04-11"},
                                        {"by", "hour"},
                                        {"group", "model"},
                                        {"model", "model-0007"}};

        r = ut_run_q(one, UT_NROWS(one));
        ck_assert_uint_eq(r->ngroups, 1);
        ck_assert_uint_eq(r->nbuckets, 2400);
        ck_assert_int_eq(r->totals.requests, 1);
        kg_usage_result_free(&r);
    }
}
END_TEST

/* ---- JSON and CSV ------------------------------------------------------- */

static json_t *ut_get(json_t *o, const char *path)
{
    char buf[128];
    char *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *part = strtok_r(buf, ".", &save); part && o;
         part = strtok_r(NULL, ".", &save)) {
        o = json_is_array(o) ? json_array_get(o, strtoul(part, NULL, 10))
                             : json_object_get(o, part);
    }
    ck_assert_msg(o != NULL, "no %s", path);
    return o;
}

START_TEST(test_json)
{
    const kg_query_param_t p[] = {{"from", "2026-01-31"},
                                  {"to", "2026-02-02"},
                                  {"group", "model"},
                                  {"key", UT_KEY_A}};
    kg_usage_result_t *r;
    json_t *j;

    ut_month_rows();
    r = ut_run_q(p, UT_NROWS(p));
    j = kg_usage_result_to_json(r);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(ut_get(j, "from")),
                     "2026-01-31T00:00:00Z");
    ck_assert_str_eq(json_string_value(ut_get(j, "to")),
                     "2026-02-02T00:00:00Z");
    ck_assert_str_eq(json_string_value(ut_get(j, "bucket")), "day");
    ck_assert_str_eq(json_string_value(ut_get(j, "groupBy")), "model");
    ck_assert_str_eq(json_string_value(ut_get(j, "filter.keyId")), UT_KEY_A);
    ck_assert(json_is_null(ut_get(j, "filter.workspaceId")));
    ck_assert(json_is_null(ut_get(j, "filter.model")));
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.requests")), 10);
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.promptTokens")), 100);
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.totalTokens")), 150);
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.cachedTokens")), 10);
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.streamed")), 10);
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.errors")), 0);
    ck_assert_str_eq(json_string_value(ut_get(j, "totals.cost")), "0.001");
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.latencyMsAvg")), 220);
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.latencyMsMax")), 400);
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.ttftMsAvg")), 110);
    /* 5 at 40 ms, 5 at 400 ms: p50 at the top of (25, 50], p95 within
     * (250, 400]. */
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.latencyMsP50")), 50);
    ck_assert_int_eq(json_integer_value(ut_get(j, "totals.latencyMsP95")), 385);
    ck_assert_uint_eq(json_array_size(ut_get(j, "groups")), 1);
    ck_assert_str_eq(json_string_value(ut_get(j, "groups.0.group")), "gpt-4o");
    ck_assert_uint_eq(json_array_size(ut_get(j, "groups.0.series")), 2);
    ck_assert_str_eq(json_string_value(ut_get(j, "groups.0.series.1.start")),
                     "2026-02-01T00:00:00Z");
    ck_assert_int_eq(
        json_integer_value(ut_get(j, "groups.0.series.0.requests")), 5);
    ck_assert_str_eq(json_string_value(ut_get(j, "groups.0.series.0.cost")),
                     "0.0005");
    json_decref(j);
    kg_usage_result_free(&r);
}
END_TEST

START_TEST(test_json_nulls)
{
    const kg_query_param_t p[] = {{"from", "2020-01-01"}, {"to", "2020-01-02"}};
    kg_usage_result_t *r = ut_run_q(p, UT_NROWS(p));
    json_t *j = kg_usage_result_to_json(r);

    ck_assert_str_eq(json_string_value(ut_get(j, "groupBy")), "none");
    ck_assert(json_is_null(ut_get(j, "groups.0.group")));
    ck_assert(json_is_null(ut_get(j, "totals.latencyMsP50")));
    ck_assert(json_is_null(ut_get(j, "totals.latencyMsAvg")));
    ck_assert(json_is_null(ut_get(j, "totals.ttftMsAvg")));
    ck_assert_str_eq(json_string_value(ut_get(j, "totals.cost")), "0.00");
    ck_assert_int_eq(
        json_integer_value(ut_get(j, "groups.0.series.0.requests")), 0);
    json_decref(j);
    kg_usage_result_free(&r);
}
END_TEST

/* The CSV has one row per group and bucket, with the JSON's values. */
START_TEST(test_csv)
{
    const kg_query_param_t p[] = {
        {"from", "2026-01-31"}, {"to", "2026-02-02"}, {"group", "model"}};
    char buf[KG_USAGE_CSV_ROW_MAX];
    kg_usage_result_t *r;
    json_t *j;
    size_t len;

    ut_month_rows();
    r = ut_run_q(p, UT_NROWS(p));
    j = kg_usage_result_to_json(r);
    len = kg_usage_result_csv_header(buf, sizeof(buf));
    ck_assert_str_eq(buf, "group,start,requests,errors,promptTokens,"
                          "completionTokens,cachedTokens,totalTokens,cost,"
                          "streamed,latencyMsAvg,latencyMsP50,latencyMsP95,"
                          "latencyMsMax,ttftMsAvg\r\n");
    ck_assert_uint_eq(len, strlen(buf));
    ck_assert_uint_eq(r->ngroups, 2);
    for (size_t g = 0; g < r->ngroups; g++) {
        for (size_t b = 0; b < r->nbuckets; b++) {
            json_t *pt = json_array_get(
                json_object_get(json_array_get(json_object_get(j, "groups"), g),
                                "series"),
                b);
            char want[512];
            json_t *p50 = json_object_get(pt, "latencyMsP50");

            len = kg_usage_result_csv_row(r, g, b, buf, sizeof(buf));
            ck_assert_uint_gt(len, 0);
            snprintf(
                want, sizeof(want), "%s,%s,%lld,0,%lld,%lld,%lld,%lld,%s,",
                r->groups[g].name,
                json_string_value(json_object_get(pt, "start")),
                (long long)json_integer_value(json_object_get(pt, "requests")),
                (long long)json_integer_value(
                    json_object_get(pt, "promptTokens")),
                (long long)json_integer_value(
                    json_object_get(pt, "completionTokens")),
                (long long)json_integer_value(
                    json_object_get(pt, "cachedTokens")),
                (long long)json_integer_value(
                    json_object_get(pt, "totalTokens")),
                json_string_value(json_object_get(pt, "cost")));
            ck_assert_msg(strncmp(buf, want, strlen(want)) == 0, "%s vs %s",
                          buf, want);
            if (json_is_null(p50)) {
                ck_assert_ptr_nonnull(strstr(buf, ",,,,\r\n"));
            }
        }
    }
    ck_assert_uint_eq(kg_usage_result_csv_row(r, 2, 0, buf, sizeof(buf)), 0);
    ck_assert_uint_eq(kg_usage_result_csv_row(r, 0, 0, buf, 10), 0);
    json_decref(j);
    kg_usage_result_free(&r);
}
END_TEST

static Suite *usage_query_suite(void)
{
    Suite *s = suite_create("usage_query");
    TCase *parse = tcase_create("parse");
    TCase *run = tcase_create("run");

    ut_parse_table();
    tcase_add_loop_test(parse, test_parse, 0, (int)ut_nparse);
    tcase_add_test(parse, test_parse_fields);
    suite_add_tcase(s, parse);
    tcase_add_checked_fixture(run, ut_setup, ut_teardown);
    tcase_add_test(run, test_fold_months);
    tcase_add_test(run, test_fold_days_zero_fill);
    tcase_add_test(run, test_fold_empty);
    tcase_add_loop_test(run, test_filters, 0, (int)UT_NROWS(ut_filter_rows));
    tcase_add_test(run, test_workspace_unknown);
    tcase_add_test(run, test_group_bounds);
    tcase_add_test(run, test_json);
    tcase_add_test(run, test_json_nulls);
    tcase_add_test(run, test_csv);
    suite_add_tcase(s, run);
    return s;
}

int main(void)
{
    return ut_run(usage_query_suite());
}
