/* Unit tests of workspaces: creation, lookup, changes, credits, audit. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/money.h"
#include "keygate/store.h"
#include "keygate/store_budget.h"
#include "keygate/store_workspaces.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/workspaces.h"
#include "unit_util.h"

#define UT_ACTOR "test:unit"
#define UT_USD   INT64_C(1000000)

static char ut_dir[UT_PATH_MAX];
static kg_store_t *ut_store;
static int64_t ut_t0;

static void ut_setup(void)
{
    char path[UT_PATH_MAX];
    kg_store_opts_t opts = {KG_STORE_CREATE, 1000, 0, NULL};
    kg_diag_t diag = {{0}};

    ut_t0 = ut_utc(2026, 6, 1, 0, 0, 0);
    kg_clock_set_fake(ut_t0);
    ut_tmpdir(ut_dir);
    ut_join(path, ut_dir, "keygate.db");
    ck_assert_msg(kg_store_open(path, &opts, &ut_store, &diag) == KG_OK, "%s",
                  diag.msg);
}

static void ut_teardown(void)
{
    kg_store_close(&ut_store);
    kg_clock_set_fake(0);
    ut_tmpdir_remove(ut_dir);
}

static int64_t ut_count(const char *sql)
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

/* Audit events of action on object id; *detail (may be NULL) gets the
 * newest one's detail as a new reference. */
static size_t ut_audit(const char *id, const char *action, json_t **detail)
{
    kg_audit_event_t *events = NULL;
    size_t n = 0;
    size_t hits = 0;

    if (detail != NULL) {
        *detail = NULL;
    }
    ut_audit_of(ut_store, id, &events, &n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(events[i].action, action) != 0) {
            continue;
        }
        ck_assert_str_eq(events[i].object_type, "workspace");
        ck_assert_str_eq(events[i].actor, UT_ACTOR);
        if (hits == 0 && detail != NULL) {
            *detail = json_loads(events[i].detail, 0, NULL);
            ck_assert_ptr_nonnull(*detail);
        }
        hits++;
    }
    kg_audit_events_free(&events, n);
    return hits;
}

START_TEST(test_ensure_default)
{
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_workspace_get(ut_store, "default", &ws, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_workspace_ensure_default(ut_store, UT_ACTOR, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_ensure_default(ut_store, UT_ACTOR, &diag),
                     KG_OK);
    ck_assert_int_eq(ut_count("SELECT count(*) FROM workspaces"), 1);
    ck_assert_int_eq(
        kg_workspace_get(ut_store, KG_WORKSPACE_DEFAULT, &ws, &diag), KG_OK);
    ck_assert_str_eq(ws.name, "default");
    ck_assert_int_eq(ws.mode, KG_MODE_POOL);
    ck_assert_int_eq(ws.credits_balance, 0);
    ck_assert_str_eq(ws.rules, "{}");
    ck_assert_int_eq(ws.created_at, ut_t0);
    ck_assert(kg_token_id_valid(ws.id));
    ck_assert_uint_eq(ut_audit(ws.id, "create", NULL), 1);
    kg_workspace_clear(&ws);
}
END_TEST

START_TEST(test_create_and_get)
{
    kg_workspace_t made;
    kg_workspace_t got;
    kg_workspace_t *list = NULL;
    size_t n = 0;
    kg_diag_t diag = {{0}};
    json_t *detail;

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-a",
                                         KG_MODE_CREDITS, &made, &diag),
                     KG_OK);
    ck_assert_str_eq(made.name, "team-a");
    ck_assert_int_eq(made.mode, KG_MODE_CREDITS);
    ck_assert_int_eq(made.key_count, 0);
    ck_assert_uint_eq(ut_audit(made.id, "create", &detail), 1);
    ck_assert_str_eq(json_string_value(json_object_get(detail, "name")),
                     "team-a");
    ck_assert_str_eq(json_string_value(json_object_get(detail, "mode")),
                     "credits");
    json_decref(detail);
    /* By id and by name. */
    ck_assert_int_eq(kg_workspace_get(ut_store, made.id, &got, &diag), KG_OK);
    ck_assert_str_eq(got.name, "team-a");
    kg_workspace_clear(&got);
    ck_assert_int_eq(kg_workspace_get(ut_store, "team-a", &got, &diag), KG_OK);
    ck_assert_str_eq(got.id, made.id);
    kg_workspace_clear(&got);
    ck_assert_int_eq(kg_workspace_get(ut_store, "team-b", &got, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(diag.msg, "team-b"));
    /* The name is taken now. */
    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-a",
                                         KG_MODE_API_KEYS, NULL, &diag),
                     KG_ERR_EXISTS);
    ck_assert_ptr_nonnull(strstr(diag.msg, "team-a"));
    ck_assert_int_eq(ut_count("SELECT count(*) FROM workspaces"), 1);
    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "hybrid-one",
                                         KG_MODE_HYBRID, NULL, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_list(ut_store, &list, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(list[0].name, "hybrid-one");
    ck_assert_int_eq(list[0].mode, KG_MODE_HYBRID);
    ck_assert_str_eq(list[1].name, "team-a");
    kg_workspace_list_free(&list, n);
    ck_assert_ptr_null(list);
    kg_workspace_clear(&made);
}
END_TEST

static const char *const ut_bad_names[] = {
    "",
    " lead",
    "trail ",
    "tab\there",
    "AbCdEf012345",
    "0123456789012345678901234567890123456789012345678901234567890123x",
};

START_TEST(test_create_bad_name)
{
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, ut_bad_names[_i],
                                         KG_MODE_API_KEYS, NULL, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(ut_count("SELECT count(*) FROM workspaces"), 0);
    ck_assert_int_eq(ut_count("SELECT count(*) FROM audit_events"), 0);
}
END_TEST

START_TEST(test_update)
{
    kg_workspace_t ws;
    kg_workspace_t out;
    kg_workspace_changes_t ch;
    kg_diag_t diag = {{0}};
    json_t *detail;
    json_t *changed; /* borrowed */

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-a",
                                         KG_MODE_API_KEYS, &ws, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-b",
                                         KG_MODE_API_KEYS, NULL, &diag),
                     KG_OK);
    kg_clock_set_fake(ut_t0 + 60);

    /* Rename and new rules, by name. */
    memset(&ch, 0, sizeof(ch));
    ch.name = "team-a2";
    ch.rules = "{\"allow_models\": [\"gpt-4o\"]}";
    ck_assert_msg(kg_workspace_update(ut_store, UT_ACTOR, "team-a", &ch, &out,
                                      &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_str_eq(out.id, ws.id);
    ck_assert_str_eq(out.name, "team-a2");
    ck_assert_str_eq(out.rules, "{\"allow_models\": [\"gpt-4o\"]}");
    ck_assert_int_eq(out.mode, KG_MODE_API_KEYS);
    ck_assert_int_eq(out.updated_at, ut_t0 + 60);
    kg_workspace_clear(&out);
    ck_assert_uint_eq(ut_audit(ws.id, "update", &detail), 1);
    changed = json_object_get(detail, "changed");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(changed, "name"), "from")),
                     "team-a");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(changed, "name"), "to")),
                     "team-a2");
    ck_assert_ptr_nonnull(json_object_get(changed, "rules"));
    ck_assert_ptr_null(json_object_get(changed, "mode"));
    json_decref(detail);

    /* Mode, by id: audited as a mode change. */
    memset(&ch, 0, sizeof(ch));
    ch.set_mode = true;
    ch.mode = KG_MODE_HYBRID;
    ck_assert_int_eq(
        kg_workspace_update(ut_store, UT_ACTOR, ws.id, &ch, &out, &diag),
        KG_OK);
    ck_assert_int_eq(out.mode, KG_MODE_HYBRID);
    ck_assert_str_eq(out.name, "team-a2");
    kg_workspace_clear(&out);
    ck_assert_uint_eq(ut_audit(ws.id, "mode", &detail), 1);
    changed = json_object_get(detail, "changed");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(changed, "mode"), "from")),
                     "api-keys");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(changed, "mode"), "to")),
                     "hybrid");
    json_decref(detail);

    /* Keeping its own name is fine. */
    memset(&ch, 0, sizeof(ch));
    ch.name = "team-a2";
    ck_assert_int_eq(
        kg_workspace_update(ut_store, UT_ACTOR, ws.id, &ch, NULL, &diag),
        KG_OK);
    kg_workspace_clear(&ws);
}
END_TEST

START_TEST(test_update_refused_changes_nothing)
{
    kg_workspace_t ws;
    kg_workspace_t got;
    kg_workspace_changes_t ch;
    kg_diag_t diag = {{0}};
    int64_t events;

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-a",
                                         KG_MODE_API_KEYS, &ws, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-b",
                                         KG_MODE_API_KEYS, NULL, &diag),
                     KG_OK);
    events = ut_count("SELECT count(*) FROM audit_events");

    /* Bad rules: refused, and the name given with them is not applied. */
    memset(&ch, 0, sizeof(ch));
    ch.name = "team-c";
    ch.set_mode = true;
    ch.mode = KG_MODE_CREDITS;
    ch.rules = "{\"allow_models\": \"gpt-4o\"}";
    ck_assert_int_eq(
        kg_workspace_update(ut_store, UT_ACTOR, "team-a", &ch, NULL, &diag),
        KG_ERR_INVAL);
    ch.rules = "{\"bogus\": []}";
    ck_assert_int_eq(
        kg_workspace_update(ut_store, UT_ACTOR, "team-a", &ch, NULL, &diag),
        KG_ERR_INVAL);
    /* Another workspace's name. */
    ch.rules = NULL;
    ch.name = "team-b";
    ck_assert_int_eq(
        kg_workspace_update(ut_store, UT_ACTOR, "team-a", &ch, NULL, &diag),
        KG_ERR_EXISTS);
    /* A bad name. */
    ch.name = " team";
    ck_assert_int_eq(
        kg_workspace_update(ut_store, UT_ACTOR, "team-a", &ch, NULL, &diag),
        KG_ERR_INVAL);
    ch.name = NULL;
    ck_assert_int_eq(
        kg_workspace_update(ut_store, UT_ACTOR, "nope", &ch, NULL, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_workspace_get(ut_store, ws.id, &got, &diag), KG_OK);
    ck_assert_str_eq(got.name, "team-a");
    ck_assert_int_eq(got.mode, KG_MODE_API_KEYS);
    ck_assert_str_eq(got.rules, "{}");
    ck_assert_int_eq(got.updated_at, ut_t0);
    kg_workspace_clear(&got);
    ck_assert_int_eq(ut_count("SELECT count(*) FROM audit_events"), events);
    kg_workspace_clear(&ws);
}
END_TEST

START_TEST(test_credits)
{
    kg_workspace_t ws;
    kg_workspace_t out;
    kg_diag_t diag = {{0}};
    json_t *detail;

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "paying",
                                         KG_MODE_CREDITS, &ws, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, "paying",
                                         25 * UT_USD, "invoice 7", &out, &diag),
                     KG_OK);
    ck_assert_int_eq(out.credits_balance, 25 * UT_USD);
    kg_workspace_clear(&out);
    ck_assert_uint_eq(ut_audit(ws.id, "credit", &detail), 1);
    ck_assert_str_eq(json_string_value(json_object_get(detail, "delta")),
                     "25.00");
    ck_assert_str_eq(json_string_value(json_object_get(detail, "from")),
                     "0.00");
    ck_assert_str_eq(json_string_value(json_object_get(detail, "to")), "25.00");
    ck_assert_str_eq(json_string_value(json_object_get(detail, "note")),
                     "invoice 7");
    json_decref(detail);

    /* Deduct by id, without a note. */
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id,
                                         -(10 * UT_USD + 500000), NULL, &out,
                                         &diag),
                     KG_OK);
    ck_assert_int_eq(out.credits_balance, 14 * UT_USD + 500000);
    kg_workspace_clear(&out);
    ck_assert_uint_eq(ut_audit(ws.id, "credit", &detail), 2);
    ck_assert_str_eq(json_string_value(json_object_get(detail, "delta")),
                     "-10.50");
    ck_assert(json_object_get(detail, "note") == NULL ||
              json_is_null(json_object_get(detail, "note")));
    json_decref(detail);

    /* Below zero: refused, balance and audit unchanged. */
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id,
                                         -(15 * UT_USD), NULL, &out, &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "14.50"));
    ck_assert_int_eq(kg_workspace_get(ut_store, ws.id, &out, &diag), KG_OK);
    ck_assert_int_eq(out.credits_balance, 14 * UT_USD + 500000);
    kg_workspace_clear(&out);
    ck_assert_uint_eq(ut_audit(ws.id, "credit", NULL), 2);

    /* Down to exactly zero is fine; above the maximum is not. */
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id,
                                         -(14 * UT_USD + 500000), NULL, &out,
                                         &diag),
                     KG_OK);
    ck_assert_int_eq(out.credits_balance, 0);
    kg_workspace_clear(&out);
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id,
                                         KG_MONEY_MAX, NULL, NULL, &diag),
                     KG_OK);
    ck_assert_int_eq(
        kg_workspace_credit(ut_store, UT_ACTOR, ws.id, 1, NULL, NULL, &diag),
        KG_ERR_INVAL);
    /* A bad note or an unknown workspace changes nothing. */
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id, -1,
                                         "bell\a", NULL, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(
        kg_workspace_credit(ut_store, UT_ACTOR, "nope", 1, NULL, NULL, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_workspace_get(ut_store, ws.id, &out, &diag), KG_OK);
    ck_assert_int_eq(out.credits_balance, KG_MONEY_MAX);
    kg_workspace_clear(&out);
    kg_workspace_clear(&ws);
}
END_TEST

/* Extreme deltas are refused before any arithmetic (UBSan would trap). */
START_TEST(test_credit_extreme_delta)
{
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "edge",
                                         KG_MODE_CREDITS, &ws, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id, INT64_MIN,
                                         NULL, NULL, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(
        kg_workspace_credit(ut_store, UT_ACTOR, ws.id, 1, NULL, NULL, &diag),
        KG_OK);
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id, INT64_MAX,
                                         NULL, NULL, &diag),
                     KG_ERR_INVAL);
    kg_workspace_clear(&ws);
}
END_TEST

/* The store's credit write is conditional: it never leaves [0, max]. */
START_TEST(test_store_credit_conditional)
{
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    int64_t before = -1;
    int64_t rev;

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "cond",
                                         KG_MODE_CREDITS, &ws, &diag),
                     KG_OK);
    rev = ut_count("SELECT rev FROM key_revision");
    ck_assert_int_eq(kg_store_workspace_credit(ut_store, ws.id, 5 * UT_USD,
                                               10 * UT_USD, ut_t0 + 1, &before,
                                               &diag),
                     KG_OK);
    ck_assert_int_eq(before, 0);
    ck_assert_int_eq(ut_count("SELECT rev FROM key_revision"), rev + 1);
    /* Below zero, and above max: refused with the balance seen. */
    ck_assert_int_eq(kg_store_workspace_credit(ut_store, ws.id, -6 * UT_USD,
                                               10 * UT_USD, ut_t0 + 2, &before,
                                               &diag),
                     KG_ERR_STATE);
    ck_assert_int_eq(before, 5 * UT_USD);
    ck_assert_int_eq(kg_store_workspace_credit(ut_store, ws.id, 6 * UT_USD,
                                               10 * UT_USD, ut_t0 + 2, &before,
                                               &diag),
                     KG_ERR_STATE);
    ck_assert_int_eq(before, 5 * UT_USD);
    ck_assert_int_eq(ut_count("SELECT rev FROM key_revision"), rev + 1);
    ck_assert_int_eq(ut_count("SELECT credits_balance + updated_at FROM "
                              "workspaces WHERE name = 'cond'"),
                     5 * UT_USD + ut_t0 + 1);
    /* Exactly down to zero. */
    ck_assert_int_eq(kg_store_workspace_credit(ut_store, ws.id, -5 * UT_USD,
                                               10 * UT_USD, ut_t0 + 3, &before,
                                               &diag),
                     KG_OK);
    ck_assert_int_eq(before, 5 * UT_USD);
    ck_assert_int_eq(ut_count("SELECT credits_balance FROM workspaces WHERE "
                              "name = 'cond'"),
                     0);
    ck_assert_int_eq(kg_store_workspace_credit(ut_store, "nope", 1, 10, ut_t0,
                                               &before, &diag),
                     KG_ERR_NOT_FOUND);
    kg_workspace_clear(&ws);
}
END_TEST

/* An update writes only the fields it is given. */
START_TEST(test_store_update_targeted)
{
    kg_store_workspace_t row;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "target",
                                         KG_MODE_HYBRID, &ws, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_workspace_update(ut_store, ws.id, NULL, NULL,
                                               "{\"allowModels\":[\"m\"]}",
                                               ut_t0 + 9, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_workspace_get(ut_store, "target", &row, &diag),
                     KG_OK);
    ck_assert_str_eq(row.name, "target");
    ck_assert_str_eq(row.mode, "hybrid");
    ck_assert_str_eq(row.rules, "{\"allowModels\":[\"m\"]}");
    ck_assert_int_eq(row.updated_at, ut_t0 + 9);
    kg_store_workspace_clear(&row);
    ck_assert_int_eq(kg_store_workspace_update(ut_store, ws.id, "renamed",
                                               "pool", NULL, ut_t0 + 10, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_workspace_get(ut_store, ws.id, &row, &diag),
                     KG_OK);
    ck_assert_str_eq(row.name, "renamed");
    ck_assert_str_eq(row.mode, "pool");
    ck_assert_str_eq(row.rules, "{\"allowModels\":[\"m\"]}");
    kg_store_workspace_clear(&row);
    ck_assert_int_eq(kg_store_workspace_update(ut_store, "nope", "x", NULL,
                                               NULL, ut_t0, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_store_workspace_get(ut_store, "target", &row, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_ptr_null(row.rules);
    kg_workspace_clear(&ws);
}
END_TEST

/* What the policy reads and writes: revision, rules, reservations. */
START_TEST(test_store_budget)
{
    kg_store_budget_workspace_t bw;
    kg_store_budget_key_t bk;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    int64_t rev = -1;
    int64_t rev2 = -1;
    char *sql;

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "pol",
                                         KG_MODE_CREDITS, &ws, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id, 3 * UT_USD,
                                         NULL, NULL, &diag),
                     KG_OK);
    sql = sqlite3_mprintf(
        "INSERT INTO api_keys (id, workspace_id, name, prefix, last4, "
        "created_at, updated_at, rules) VALUES ('KKKKKKKKKKKK', %Q, 'k', "
        "'kg', 'abcd', 1, 1, '{\"denyModels\":[\"x\"]}')",
        ws.id);
    ck_assert_ptr_nonnull(sql);
    ck_assert_int_eq(
        sqlite3_exec(kg_sqlite_db(ut_store), sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_free(sql);

    ck_assert_int_eq(kg_store_budget_revision(ut_store, &rev, &diag), KG_OK);
    ck_assert_int_eq(rev, ut_count("SELECT rev FROM key_revision"));
    ck_assert_int_eq(
        kg_store_budget_key_get(ut_store, "KKKKKKKKKKKK", &bk, &diag), KG_OK);
    ck_assert_str_eq(bk.workspace_id, ws.id);
    ck_assert_str_eq(bk.rules, "{\"denyModels\":[\"x\"]}");
    kg_store_budget_key_clear(&bk);
    ck_assert_ptr_null(bk.rules);
    ck_assert_int_eq(
        kg_store_budget_key_get(ut_store, "ZZZZZZZZZZZZ", &bk, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_store_budget_workspace_get(ut_store, ws.id, &bw, &diag),
                     KG_OK);
    ck_assert_str_eq(bw.mode, "credits");
    ck_assert_str_eq(bw.rules, "{}");
    ck_assert_int_eq(bw.credits_balance, 3 * UT_USD);
    kg_store_budget_workspace_clear(&bw);
    ck_assert_int_eq(kg_store_budget_workspace_get(ut_store, "pol", &bw, &diag),
                     KG_ERR_NOT_FOUND); /* an id, not a name */

    /* The reservations snapshot never moves the revision. */
    ck_assert_int_eq(
        kg_store_budget_reservation_set(ut_store, "KKKKKKKKKKKK", 700, &diag),
        KG_OK);
    ck_assert_int_eq(ut_count("SELECT reserved FROM api_keys"), 700);
    ck_assert_int_eq(kg_store_budget_reservations_clear(ut_store, &diag),
                     KG_OK);
    ck_assert_int_eq(ut_count("SELECT reserved FROM api_keys"), 0);
    ck_assert_int_eq(kg_store_budget_revision(ut_store, &rev2, &diag), KG_OK);
    ck_assert_int_eq(rev2, rev);
    kg_workspace_clear(&ws);
}
END_TEST

START_TEST(test_modes_and_json)
{
    kg_workspace_t ws;
    kg_ws_mode_t mode = KG_MODE_API_KEYS;
    kg_diag_t diag = {{0}};
    json_t *js;

    ck_assert_str_eq(kg_ws_mode_name(KG_MODE_API_KEYS), "api-keys");
    ck_assert_str_eq(kg_ws_mode_name(KG_MODE_CREDITS), "credits");
    ck_assert_str_eq(kg_ws_mode_name(KG_MODE_HYBRID), "hybrid");
    ck_assert(kg_ws_mode_parse("hybrid", &mode));
    ck_assert_int_eq(mode, KG_MODE_HYBRID);
    ck_assert(!kg_ws_mode_parse("Hybrid", &mode));
    ck_assert(!kg_ws_mode_parse("", &mode));
    ck_assert(!kg_ws_mode_parse("api_keys", &mode));
    ck_assert_int_eq(mode, KG_MODE_HYBRID);

    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "json",
                                         KG_MODE_CREDITS, &ws, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_credit(ut_store, UT_ACTOR, ws.id,
                                         250 * UT_USD + 500000, NULL, NULL,
                                         &diag),
                     KG_OK);
    kg_workspace_clear(&ws);
    ck_assert_int_eq(kg_workspace_get(ut_store, "json", &ws, &diag), KG_OK);
    js = kg_workspace_to_json(&ws);
    ck_assert_ptr_nonnull(js);
    ck_assert_str_eq(json_string_value(json_object_get(js, "name")), "json");
    ck_assert_str_eq(json_string_value(json_object_get(js, "mode")), "credits");
    ck_assert_str_eq(json_string_value(json_object_get(js, "creditsBalance")),
                     "250.50");
    ck_assert(json_is_object(json_object_get(js, "rules")));
    ck_assert_int_eq(json_integer_value(json_object_get(js, "keyCount")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(js, "createdAt")),
                     "2026-06-01T00:00:00Z");
    json_decref(js);
    kg_workspace_clear(&ws);
}
END_TEST

static Suite *workspaces_suite(void)
{
    Suite *s = suite_create("workspaces");
    TCase *tc = tcase_create("workspaces");

    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, test_ensure_default);
    tcase_add_test(tc, test_create_and_get);
    tcase_add_loop_test(tc, test_create_bad_name, 0,
                        (int)UT_NROWS(ut_bad_names));
    tcase_add_test(tc, test_update);
    tcase_add_test(tc, test_update_refused_changes_nothing);
    tcase_add_test(tc, test_credits);
    tcase_add_test(tc, test_modes_and_json);
    tcase_add_test(tc, test_credit_extreme_delta);
    tcase_add_test(tc, test_store_credit_conditional);
    tcase_add_test(tc, test_store_update_targeted);
    tcase_add_test(tc, test_store_budget);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(workspaces_suite());
}
