/* Unit tests of the audit trail's reads: filters, pages, cursors, JSON. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/store.h"
#include "store/sqlite/sqlite_store.h"
#include "unit_util.h"

#define UT_N 53
/* 2026-06-01T00:00:00Z */
#define UT_T0 INT64_C(1780272000)

static char ut_dir[UT_PATH_MAX];
static kg_store_t *ut_store;

static const char *const ut_actors[] = {"cli:alice", "cli:bob", "admin:tok1"};
static const char *const ut_actions[] = {"create", "update", "revoke",
                                         "credit"};

/* Event i: a minute apart, every third second event at the same second. */
static void ut_record(int i)
{
    char object[16];
    json_t *detail = json_pack("{s:i}", "n", i);
    kg_diag_t diag = {{0}};

    snprintf(object, sizeof(object), "obj%d", i % 5);
    kg_clock_set_fake(UT_T0 + (i - i % 2) * 60);
    ck_assert_int_eq(kg_audit_record(ut_store, ut_actors[i % 3],
                                     ut_actions[i % 4],
                                     i % 5 == 4 ? "workspace" : "key", object,
                                     detail, &diag),
                     KG_OK);
    json_decref(detail);
}

static void ut_setup(void)
{
    char path[UT_PATH_MAX];
    kg_store_opts_t opts = {KG_STORE_CREATE, 1000, 0, NULL};
    kg_diag_t diag = {{0}};

    ut_tmpdir(ut_dir);
    ut_join(path, ut_dir, "keygate.db");
    ck_assert_msg(kg_store_open(path, &opts, &ut_store, &diag) == KG_OK, "%s",
                  diag.msg);
    for (int i = 0; i < UT_N; i++) {
        ut_record(i);
    }
    kg_clock_set_fake(0);
}

static void ut_teardown(void)
{
    kg_store_close(&ut_store);
    ut_tmpdir_remove(ut_dir);
}

typedef struct ut_row {
    kg_query_param_t p[4];
    size_t n;
    const char *where; /* the same selection in SQL */
} ut_row_t;

static const ut_row_t ut_rows[] = {
    {{{0}}, 0, "1"},
    {{{"actor", "cli:bob"}}, 1, "actor = 'cli:bob'"},
    {{{"action", "revoke"}, {"object-type", "key"}},
     2,
     "action = 'revoke' AND object_type = 'key'"},
    {{{"object", "obj3"}}, 1, "object_id = 'obj3'"},
    {{{"object", "obj4"}, {"object-type", "key"}}, 2, "0"},
    {{{"object", "obj4"}, {"actor", "admin:tok1"}},
     2,
     "object_id = 'obj4' AND actor = 'admin:tok1'"},
    {{{"from", "2026-06-01T00:10:00Z"}, {"to", "2026-06-01T00:30:00Z"}},
     2,
     "at >= 1780272600 AND at < 1780273800"},
    {{{"from", "2026-06-01T00:10:00Z"},
      {"to", "2026-06-01T00:30:00Z"},
      {"object", "obj1"},
      {"action", "update"}},
     4,
     "at >= 1780272600 AND at < 1780273800 AND object_id = 'obj1' AND "
     "action = 'update'"},
    {{{"actor", "nobody"}}, 1, "0"},
};

static int64_t *ut_reference(const char *where, size_t *n)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT id FROM audit_events WHERE %s ORDER BY id DESC", where);
    return ut_sql_ids(kg_sqlite_db(ut_store), sql, UT_N, n);
}

/* Pages of 4 hold every selected event once, newest first. */
START_TEST(test_pages)
{
    const ut_row_t *row = &ut_rows[_i];
    char cursor[KG_QUERY_CURSOR_STRLEN] = "";
    size_t want_n = 0;
    int64_t *want = ut_reference(row->where, &want_n);
    size_t got = 0;
    int pages = 0;
    kg_diag_t diag = {{0}};

    do {
        kg_query_param_t p[6];
        size_t np = row->n;
        kg_audit_query_t q;
        kg_audit_event_t *ev = NULL;
        size_t n = 0;

        memcpy(p, row->p, row->n * sizeof(*p));
        p[np++] = (kg_query_param_t){"limit", "4"};
        if (cursor[0] != '\0') {
            p[np++] = (kg_query_param_t){"cursor", cursor};
        }
        ck_assert_msg(kg_audit_query_parse(p, np, UT_T0, &q, &diag) == KG_OK,
                      "%s", diag.msg);
        ck_assert_msg(kg_audit_page(ut_store, &q, &ev, &n, cursor, &diag) ==
                          KG_OK,
                      "%s", diag.msg);
        for (size_t i = 0; i < n; i++) {
            ck_assert_uint_lt(got, want_n);
            ck_assert_int_eq(ev[i].id, want[got]);
            got++;
        }
        ck_assert(cursor[0] == '\0' || n == 4);
        kg_audit_events_free(&ev, n);
        pages++;
    } while (cursor[0] != '\0' && pages <= UT_N);
    ck_assert_uint_eq(got, want_n);
    ck_assert_int_eq(pages, want_n == 0 ? 1 : (int)((want_n + 3) / 4));
    free(want);
}
END_TEST

START_TEST(test_fields_json)
{
    const kg_query_param_t p[] = {{"limit", "1"}};
    kg_audit_query_t q;
    kg_audit_event_t *ev = NULL;
    char cursor[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};
    size_t n = 0;
    json_t *j;
    char *text;

    ck_assert_int_eq(kg_audit_query_parse(p, 1, UT_T0, &q, &diag), KG_OK);
    ck_assert_int_eq(kg_audit_page(ut_store, &q, &ev, &n, cursor, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(strlen(cursor), KG_QUERY_CURSOR_LEN);
    /* Event 52: alice? 52 % 3 = 1: bob; 52 % 4 = 0: create; obj2, key. */
    j = kg_audit_event_to_json(&ev[0]);
    text = json_dumps(j, JSON_COMPACT);
    ck_assert_str_eq(text, "{\"id\":53,\"at\":\"2026-06-01T00:52:00Z\","
                           "\"actor\":\"cli:bob\",\"action\":\"create\","
                           "\"objectType\":\"key\",\"objectId\":\"obj2\","
                           "\"detail\":{\"n\":52}}");
    free(text);
    json_decref(j);
    j = kg_audit_events_to_json(ev, n, cursor);
    ck_assert_str_eq(json_string_value(json_object_get(j, "nextCursor")),
                     cursor);
    json_decref(j);
    free(ev[0].detail);
    ev[0].detail = strdup("not json");
    j = kg_audit_event_to_json(&ev[0]);
    ck_assert(json_is_object(json_object_get(j, "detail")));
    json_decref(j);
    kg_audit_events_free(&ev, n);
    ck_assert_ptr_null(ev);
}
END_TEST

typedef struct ut_bad_row {
    kg_query_param_t p[2];
    size_t n;
    const char *diag;
} ut_bad_row_t;

static const ut_bad_row_t ut_bad_rows[] = {
    {{{"limit", "0"}}, 1, "limit: "},
    {{{"limit", "1001"}}, 1, "limit: "},
    {{{"object", "x"}, {"object", "y"}}, 2, "object: given more than once"},
    {{{"key", "x"}}, 1, "unknown parameter 'key'"},
    {{{"from", "tomorrow"}}, 1, "from: "},
    {{{"from", "2026-06-02"}, {"to", "2026-06-01"}}, 2, "from: must be"},
    {{{"actor", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "aaaaaaaa"}},
     1,
     "actor: longer than 64 bytes"},
    {{{"cursor", "short"}}, 1, "cursor: "},
};

START_TEST(test_refused)
{
    const ut_bad_row_t *row = &ut_bad_rows[_i];
    kg_audit_query_t q;
    kg_audit_event_t *ev = NULL;
    char cursor[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};
    size_t n = 0;
    kg_err_t rc = kg_audit_query_parse(row->p, row->n, UT_T0, &q, &diag);

    if (rc == KG_OK) { /* some are only refused when the page is read */
        rc = kg_audit_page(ut_store, &q, &ev, &n, cursor, &diag);
    }
    ck_assert_int_eq(rc, KG_ERR_INVAL);
    ck_assert_ptr_null(ev);
    ck_assert_msg(strncmp(diag.msg, row->diag, strlen(row->diag)) == 0, "%s",
                  diag.msg);
}
END_TEST

/* A cursor belongs to its filters and to the audit listing. */
START_TEST(test_cursor_scope)
{
    const kg_query_param_t bob[] = {{"actor", "cli:bob"}, {"limit", "2"}};
    kg_query_param_t p[3] = {{"actor", "cli:alice"}, {"limit", "2"}};
    kg_audit_query_t q;
    kg_audit_event_t *ev = NULL;
    char cursor[KG_QUERY_CURSOR_STRLEN];
    char next[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};
    size_t n = 0;

    ck_assert_int_eq(kg_audit_query_parse(bob, 2, UT_T0, &q, &diag), KG_OK);
    ck_assert_int_eq(kg_audit_page(ut_store, &q, &ev, &n, cursor, &diag),
                     KG_OK);
    kg_audit_events_free(&ev, n);
    p[2] = (kg_query_param_t){"cursor", cursor};
    ck_assert_int_eq(kg_audit_query_parse(p, 3, UT_T0, &q, &diag), KG_OK);
    ck_assert_int_eq(kg_audit_page(ut_store, &q, &ev, &n, next, &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "other filters"));
    kg_query_cursor_encode(KG_QUERY_CURSOR_EVENTS, 1, 5, 0, cursor);
    p[0] = (kg_query_param_t){"limit", "3"};
    p[1] = (kg_query_param_t){"cursor", cursor};
    ck_assert_int_eq(kg_audit_query_parse(p, 2, UT_T0, &q, &diag), KG_OK);
    ck_assert_int_eq(kg_audit_page(ut_store, &q, &ev, &n, next, &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "another listing"));
}
END_TEST

static Suite *audit_suite(void)
{
    Suite *s = suite_create("audit");
    TCase *tc = tcase_create("audit");

    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_loop_test(tc, test_pages, 0, (int)UT_NROWS(ut_rows));
    tcase_add_test(tc, test_fields_json);
    tcase_add_loop_test(tc, test_refused, 0, (int)UT_NROWS(ut_bad_rows));
    tcase_add_test(tc, test_cursor_scope);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(audit_suite());
}
