/* Unit tests of the API key lifecycle against a temporary store. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/keyhash.h"
#include "keygate/keys.h"
#include "keygate/money.h"
#include "keygate/store.h"
#include "keygate/store_keys.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/timefmt.h"
#include "keygate/workspaces.h"
#include "unit_util.h"

#define UT_ACTOR       "test:unit"
#define UT_DAY         INT64_C(86400)
#define UT_MAX_TTL     (90 * UT_DAY)
#define UT_DEFAULT_TTL (30 * UT_DAY)

/* Per-test state, set up in the forked child by ut_setup(). */
static char ut_dir[UT_PATH_MAX];
static kg_store_t *ut_store;
static kg_keyhash_t *ut_hk;
static kg_keys_ctx_t ut_ctx;
static int64_t ut_t0;

static void ut_setup(void)
{
    char path[UT_PATH_MAX];
    unsigned char key[KG_KEYHASH_KEY_LEN];
    kg_store_opts_t opts = {KG_STORE_CREATE, 1000, 0, NULL};
    kg_diag_t diag = {{0}};

    ut_t0 = ut_utc(2026, 6, 1, 0, 0, 0);
    kg_clock_set_fake(ut_t0);
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (unsigned char)(0xA5 ^ i);
    }
    ck_assert_int_eq(kg_keyhash_from_bytes(key, &ut_hk), KG_OK);
    ut_tmpdir(ut_dir);
    ut_join(path, ut_dir, "keygate.db");
    ck_assert_msg(kg_store_open(path, &opts, &ut_store, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_workspace_ensure_default(ut_store, UT_ACTOR, &diag),
                     KG_OK);
    memset(&ut_ctx, 0, sizeof(ut_ctx));
    ut_ctx.store = ut_store;
    ut_ctx.hashkey = ut_hk;
    ut_ctx.prefix = "kg";
    ut_ctx.max_ttl = UT_MAX_TTL;
    ut_ctx.default_ttl = UT_DEFAULT_TTL;
    ut_ctx.actor = UT_ACTOR;
}

static void ut_teardown(void)
{
    kg_store_close(&ut_store);
    kg_keyhash_free(&ut_hk);
    kg_clock_set_fake(0);
    ut_tmpdir_remove(ut_dir);
}

static kg_key_spec_t ut_spec(const char *name)
{
    kg_key_spec_t spec;

    memset(&spec, 0, sizeof(spec));
    spec.name = name;
    return spec;
}

/* Create a key named name (default spec); token gets the full token. */
static void ut_make(const char *name, kg_key_t *key, char *token)
{
    kg_key_spec_t spec = ut_spec(name);
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_keys_create(&ut_ctx, &spec, key, token, &diag) == KG_OK,
                  "%s", diag.msg);
}

/* Create a key that expires at the given time. */
static void ut_make_expiring(const char *name, int64_t expires_at,
                             kg_key_t *key, char *token)
{
    kg_key_spec_t spec = ut_spec(name);
    kg_diag_t diag = {{0}};

    spec.set_expires = true;
    spec.expires_at = expires_at;
    ck_assert_msg(kg_keys_create(&ut_ctx, &spec, key, token, &diag) == KG_OK,
                  "%s", diag.msg);
}

/* Parse a full token and verify it against the store. */
static kg_err_t ut_verify(const char *token)
{
    kg_token_t tok;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    ck_assert_int_eq(kg_token_parse(token, strlen(token), &tok), KG_OK);
    rc = kg_keys_verify(&ut_ctx, &tok, NULL, &diag);
    kg_token_wipe(&tok);
    return rc;
}

/* A single integer from sql with one optional text parameter. */
static int64_t ut_int(const char *sql, const char *param)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    ck_assert_int_eq(
        sqlite3_prepare_v2(kg_sqlite_db(ut_store), sql, -1, &st, NULL),
        SQLITE_OK);
    if (param != NULL) {
        sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
    }
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int64_t ut_count_keys(void)
{
    return ut_int("SELECT count(*) FROM api_keys", NULL);
}

/* Insert a usage event (and an hourly aggregate) for a key by SQL. */
static void ut_add_usage(const kg_key_t *key, const char *request_id)
{
    sqlite3_stmt *st = NULL;
    sqlite3 *db = kg_sqlite_db(ut_store);

    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "INSERT INTO usage_events "
                                        "(request_id, key_id, workspace_id, "
                                        "at_ms, operation, status, cost) "
                                        "VALUES (?, ?, ?, ?, 'chat', 200, 5)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, request_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key->workspace_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, ut_t0 * 1000);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "INSERT OR IGNORE INTO usage_rollup "
                                        "(key_id, hour, workspace_id, "
                                        "requests) VALUES (?, ?, ?, 1)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, key->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, ut_t0 - ut_t0 % 3600);
    sqlite3_bind_text(st, 3, key->workspace_id, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* Number of audit events of this action on object id. */
static size_t ut_audit_count(const char *id, const char *action)
{
    kg_audit_event_t *events = NULL;
    size_t n = 0;
    size_t hits = 0;

    ut_audit_of(ut_store, id, &events, &n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(events[i].action, action) == 0) {
            ck_assert_str_eq(events[i].actor, UT_ACTOR);
            ck_assert_str_eq(events[i].object_type, "key");
            hits++;
        }
    }
    kg_audit_events_free(&events, n);
    return hits;
}

/* The detail of the newest audit event of action on id (new reference). */
static json_t *ut_audit_detail(const char *id, const char *action)
{
    kg_audit_event_t *events = NULL;
    size_t n = 0;
    json_t *detail = NULL;

    ut_audit_of(ut_store, id, &events, &n);
    for (size_t i = 0; i < n && detail == NULL; i++) {
        if (strcmp(events[i].action, action) == 0) {
            detail = json_loads(events[i].detail, 0, NULL);
        }
    }
    kg_audit_events_free(&events, n);
    ck_assert_msg(detail != NULL, "no '%s' audit event for %s", action, id);
    return detail;
}

/* The secret part (32 characters) of a full token, into out. */
static void ut_secret_of(const char *token, char out[KG_TOKEN_SECRET_LEN + 1])
{
    kg_token_t tok;

    ck_assert_int_eq(kg_token_parse(token, strlen(token), &tok), KG_OK);
    memcpy(out, tok.secret, KG_TOKEN_SECRET_LEN + 1);
    kg_token_wipe(&tok);
}

START_TEST(test_create)
{
    kg_key_t key;
    kg_token_t tok;
    char token[KG_TOKEN_STRLEN];
    char display[KG_TOKEN_DISPLAY_STRLEN];
    unsigned char want[KG_KEYHASH_LEN];
    sqlite3_stmt *st = NULL;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    json_t *detail;

    ut_make("production-backend", &key, token);
    ck_assert_int_eq(kg_token_parse(token, strlen(token), &tok), KG_OK);
    ck_assert_str_eq(tok.prefix, "kg");
    ck_assert_str_eq(tok.id, key.id);
    ck_assert_str_eq(key.prefix, "kg");
    ck_assert_str_eq(key.name, "production-backend");
    ck_assert_int_eq(key.status, KG_KEY_ACTIVE);
    ck_assert_int_eq(key.created_at, ut_t0);
    ck_assert_int_eq(key.updated_at, ut_t0);
    ck_assert_int_eq(key.last_used_at, KG_NONE);
    ck_assert_int_eq(key.expires_at, ut_t0 + UT_DEFAULT_TTL);
    ck_assert_int_eq(key.usage_limit, KG_NONE);
    ck_assert_int_eq(key.usage, 0);
    ck_assert_int_eq(key.period, KG_PERIOD_NONE);
    ck_assert_int_eq(key.rpm, KG_NONE);
    ck_assert_int_eq(key.grace_until, KG_NONE);
    ck_assert_str_eq(key.description, "");
    ck_assert_str_eq(key.metadata, "{}");
    ck_assert_str_eq(key.rules, "{}");
    /* The default workspace owns it. */
    ck_assert_int_eq(kg_workspace_get(ut_store, "default", &ws, &diag), KG_OK);
    ck_assert_str_eq(key.workspace_id, ws.id);
    ck_assert_str_eq(key.workspace_name, "default");
    kg_workspace_clear(&ws);
    /* last4 and display come from the end of the secret. */
    ck_assert_int_eq(memcmp(key.last4, tok.secret + KG_TOKEN_SECRET_LEN - 4, 4),
                     0);
    ck_assert_uint_eq(strlen(key.last4), 4);
    snprintf(display, sizeof(display), "kg_%s_...%s", key.id, key.last4);
    detail = kg_key_to_json(&key);
    ck_assert_str_eq(json_string_value(json_object_get(detail, "display")),
                     display);
    json_decref(detail);
    /* The store holds exactly one hash: the keyed hash of the secret. */
    kg_keyhash_compute(ut_hk, tok.id, tok.secret, want);
    ck_assert_int_eq(ut_int("SELECT count(*) FROM key_secrets WHERE key_id "
                            "= ?",
                            key.id),
                     1);
    ck_assert_int_eq(sqlite3_prepare_v2(kg_sqlite_db(ut_store),
                                        "SELECT hash, expires_at FROM "
                                        "key_secrets WHERE key_id = ?",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, key.id, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_bytes(st, 0), KG_KEYHASH_LEN);
    ck_assert(kg_keyhash_equal(want, sqlite3_column_blob(st, 0)));
    ck_assert_int_eq(sqlite3_column_type(st, 1), SQLITE_NULL);
    sqlite3_finalize(st);
    /* Audited, and the token verifies. */
    ck_assert_uint_eq(ut_audit_count(key.id, "create"), 1);
    ck_assert_int_eq(ut_verify(token), KG_OK);
    kg_token_wipe(&tok);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_create_fields_and_workspace)
{
    kg_key_spec_t spec = ut_spec("worker");
    kg_workspace_t ws;
    kg_key_t key;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    kg_clock_set_fake(ut_t0 + 3 * 3600 + 5);
    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-a",
                                         KG_MODE_CREDITS, &ws, &diag),
                     KG_OK);
    spec.workspace = ws.id;
    spec.description = "runs\tnightly\njobs";
    spec.metadata = "{\"team\": \"a\"}";
    spec.rules = "{\"deny_operations\": [\"embeddings\"]}";
    spec.set_usage_limit = true;
    spec.usage_limit = 100 * INT64_C(1000000);
    spec.set_period_limit = true;
    spec.period = KG_PERIOD_DAY;
    spec.period_limit = 5 * INT64_C(1000000);
    spec.set_rpm = true;
    spec.rpm = 60;
    spec.set_tpm = true;
    spec.tpm = 100000;
    spec.set_max_concurrent = true;
    spec.max_concurrent = 4;
    ck_assert_msg(kg_keys_create(&ut_ctx, &spec, &key, token, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_str_eq(key.workspace_id, ws.id);
    ck_assert_str_eq(key.workspace_name, "team-a");
    ck_assert_str_eq(key.description, "runs\tnightly\njobs");
    ck_assert_str_eq(key.metadata, "{\"team\": \"a\"}");
    ck_assert_str_eq(key.rules, "{\"deny_operations\": [\"embeddings\"]}");
    ck_assert_int_eq(key.usage_limit, 100 * INT64_C(1000000));
    ck_assert_int_eq(key.period, KG_PERIOD_DAY);
    ck_assert_int_eq(key.period_limit, 5 * INT64_C(1000000));
    ck_assert_int_eq(key.period_usage, 0);
    ck_assert_int_eq(key.period_started_at, ut_t0);
    ck_assert_int_eq(key.rpm, 60);
    ck_assert_int_eq(key.tpm, 100000);
    ck_assert_int_eq(key.max_concurrent, 4);
    kg_key_clear(&key);
    /* By workspace name too. */
    spec = ut_spec("by-name");
    spec.workspace = "team-a";
    ck_assert_int_eq(kg_keys_create(&ut_ctx, &spec, &key, token, &diag), KG_OK);
    ck_assert_str_eq(key.workspace_id, ws.id);
    kg_key_clear(&key);
    kg_workspace_clear(&ws);
}
END_TEST

typedef struct ut_refuse_row {
    const char *what;
    kg_err_t want;
    const char *diag_has;
} ut_refuse_row_t;

static const ut_refuse_row_t ut_refuse_rows[] = {
    {"no name", KG_ERR_INVAL, "name"},
    {"bad name", KG_ERR_INVAL, "key name"},
    {"bad metadata", KG_ERR_INVAL, "metadata"},
    {"bad rules", KG_ERR_INVAL, "rule"},
    {"bad description", KG_ERR_INVAL, "description"},
    {"rpm 0", KG_ERR_INVAL, "rpm"},
    {"tpm too high", KG_ERR_INVAL, "tpm"},
    {"negative usage limit", KG_ERR_INVAL, "usage limit"},
    {"period limit over the maximum", KG_ERR_INVAL, "period limit"},
    {"unknown workspace", KG_ERR_NOT_FOUND, "nowhere"},
    {"expiry beyond max_ttl", KG_ERR_TTL_BOUND, "90d"},
    {"no expiry with max_ttl", KG_ERR_TTL_BOUND, "90d"},
    {"expiry in the past", KG_ERR_INVAL, "not in the future"},
    {"expiry now", KG_ERR_INVAL, "not in the future"},
    {"default_ttl above max_ttl", KG_ERR_TTL_BOUND, "max_ttl"},
};

START_TEST(test_create_refused)
{
    const ut_refuse_row_t *row = &ut_refuse_rows[_i];
    kg_key_spec_t spec = ut_spec("ok-name");
    kg_key_t key;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};
    int64_t before = ut_count_keys();

    switch (_i) {
    case 0:
        spec.name = NULL;
        break;
    case 1:
        spec.name = " padded";
        break;
    case 2:
        spec.metadata = "[1]";
        break;
    case 3:
        spec.rules = "{\"allow_models\": \"x\"}";
        break;
    case 4:
        spec.description = "bell\a";
        break;
    case 5:
        spec.set_rpm = true;
        spec.rpm = 0;
        break;
    case 6:
        spec.set_tpm = true;
        spec.tpm = KG_RATE_MAX + 1;
        break;
    case 7:
        spec.set_usage_limit = true;
        spec.usage_limit = -5;
        break;
    case 8:
        spec.set_period_limit = true;
        spec.period = KG_PERIOD_MONTH;
        spec.period_limit = KG_MONEY_MAX + 1;
        break;
    case 9:
        spec.workspace = "nowhere";
        break;
    case 10:
        spec.set_expires = true;
        spec.expires_at = ut_t0 + UT_MAX_TTL + 1;
        break;
    case 11:
        spec.set_expires = true;
        spec.expires_at = KG_NONE;
        break;
    case 12:
        spec.set_expires = true;
        spec.expires_at = ut_t0 - 1;
        break;
    case 13:
        spec.set_expires = true;
        spec.expires_at = ut_t0;
        break;
    case 14:
        ut_ctx.default_ttl = UT_MAX_TTL + 1;
        break;
    }
    memset(token, 'x', sizeof(token));
    ck_assert_msg(kg_keys_create(&ut_ctx, &spec, &key, token, &diag) ==
                      row->want,
                  "%s: %s", row->what, diag.msg);
    ck_assert_msg(strstr(diag.msg, row->diag_has) != NULL,
                  "%s: diag '%s' lacks '%s'", row->what, diag.msg,
                  row->diag_has);
    /* Nothing stored, no token handed out. */
    ck_assert_int_eq(ut_count_keys(), before);
    for (size_t i = 0; i < sizeof(token); i++) {
        ck_assert_int_eq(token[i], 0);
    }
}
END_TEST

START_TEST(test_ttl_bounds)
{
    kg_key_spec_t spec = ut_spec("bounded");
    kg_key_t key;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    /* Exactly max_ttl is allowed. */
    spec.set_expires = true;
    spec.expires_at = ut_t0 + UT_MAX_TTL;
    ck_assert_int_eq(kg_keys_create(&ut_ctx, &spec, &key, token, &diag), KG_OK);
    ck_assert_int_eq(key.expires_at, ut_t0 + UT_MAX_TTL);
    kg_key_clear(&key);
    /* One second more names the bound. */
    spec.expires_at = ut_t0 + UT_MAX_TTL + 1;
    ck_assert_int_eq(kg_keys_create(&ut_ctx, &spec, &key, token, &diag),
                     KG_ERR_TTL_BOUND);
    ck_assert_ptr_nonnull(strstr(diag.msg, "90d"));
    ck_assert_ptr_nonnull(strstr(diag.msg, "max_ttl"));
    /* With no maximum, a key may never expire; default_ttl 0 = never. */
    ut_ctx.max_ttl = 0;
    spec.expires_at = KG_NONE;
    ck_assert_int_eq(kg_keys_create(&ut_ctx, &spec, &key, token, &diag), KG_OK);
    ck_assert_int_eq(key.expires_at, KG_NONE);
    kg_key_clear(&key);
    ut_ctx.default_ttl = 0;
    ut_make("forever", &key, token);
    ck_assert_int_eq(key.expires_at, KG_NONE);
    kg_key_clear(&key);
    spec.expires_at = ut_t0 + 50 * 365 * UT_DAY;
    ck_assert_int_eq(kg_keys_create(&ut_ctx, &spec, &key, token, &diag), KG_OK);
    kg_key_clear(&key);
    /* Updating the expiry obeys the same bound. */
    ut_ctx.max_ttl = UT_MAX_TTL;
    ut_ctx.default_ttl = UT_DEFAULT_TTL;
    ut_make("later", &key, token);
    spec = ut_spec(NULL);
    spec.set_expires = true;
    spec.expires_at = KG_NONE;
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, NULL, &diag),
                     KG_ERR_TTL_BOUND);
    kg_clock_set_fake(ut_t0 + 10 * UT_DAY);
    spec.expires_at = ut_t0 + 10 * UT_DAY + UT_MAX_TTL;
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, NULL, &diag),
                     KG_OK);
    spec.expires_at++;
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, NULL, &diag),
                     KG_ERR_TTL_BOUND);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_get_and_list)
{
    kg_key_t a;
    kg_key_t b;
    kg_key_t c;
    kg_key_t got;
    kg_key_t *list = NULL;
    kg_key_filter_t filter = {.workspace = NULL};
    kg_key_spec_t spec = ut_spec("c");
    kg_workspace_t ws;
    char token[KG_TOKEN_STRLEN];
    char ref[64];
    size_t n = 0;
    kg_diag_t diag = {{0}};
    json_t *js;
    char *text;

    ut_make("a", &a, token);
    kg_clock_set_fake(ut_t0 + 1);
    ut_make("b", &b, token);
    kg_clock_set_fake(ut_t0 + 2);
    ck_assert_int_eq(kg_workspace_create(ut_store, UT_ACTOR, "team-b",
                                         KG_MODE_API_KEYS, &ws, &diag),
                     KG_OK);
    spec.workspace = "team-b";
    ck_assert_int_eq(kg_keys_create(&ut_ctx, &spec, &c, token, &diag), KG_OK);

    /* get by id and by access key "kg_<id>". */
    ck_assert_int_eq(kg_keys_get(&ut_ctx, b.id, &got, &diag), KG_OK);
    ck_assert_str_eq(got.name, "b");
    kg_key_clear(&got);
    snprintf(ref, sizeof(ref), "kg_%s", b.id);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, ref, &got, &diag), KG_OK);
    ck_assert_str_eq(got.id, b.id);
    kg_key_clear(&got);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, "AAAAAAAAAAAA", &got, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, "kg_AAAAAAAAAAAA", &got, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, "not a key", &got, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, "", &got, &diag), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(
        kg_keys_get(&ut_ctx, "x'; DROP TABLE api_keys; --", &got, &diag),
        KG_ERR_NOT_FOUND);

    /* list: creation order; by workspace; deleted only on request. */
    ck_assert_int_eq(kg_keys_list(&ut_ctx, &filter, &list, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(list[0].id, a.id);
    ck_assert_str_eq(list[1].id, b.id);
    ck_assert_str_eq(list[2].id, c.id);
    kg_keys_list_free(&list, n);
    ck_assert_ptr_null(list);
    filter.workspace = "team-b";
    ck_assert_int_eq(kg_keys_list(&ut_ctx, &filter, &list, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(list[0].id, c.id);
    kg_keys_list_free(&list, n);
    filter.workspace = "no-such-workspace";
    ck_assert_int_eq(kg_keys_list(&ut_ctx, &filter, &list, &n, &diag),
                     KG_ERR_NOT_FOUND);
    filter.workspace = NULL;
    ck_assert_int_eq(kg_keys_revoke(&ut_ctx, a.id, NULL, NULL, &diag), KG_OK);
    ck_assert_int_eq(kg_keys_list(&ut_ctx, &filter, &list, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 2);
    kg_keys_list_free(&list, n);
    filter.include_deleted = true;
    ck_assert_int_eq(kg_keys_list(&ut_ctx, &filter, &list, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(list[0].status, KG_KEY_DELETED);
    kg_keys_list_free(&list, n);

    /* "show": the public JSON has the display and never the secret. */
    js = kg_key_to_json(&c);
    ck_assert_ptr_nonnull(js);
    text = json_dumps(js, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_null(strstr(text, token + 3 + KG_TOKEN_ID_LEN + 1));
    {
        char secret[KG_TOKEN_SECRET_LEN + 1];

        ut_secret_of(token, secret);
        ck_assert_ptr_null(strstr(text, secret));
    }
    ck_assert_str_eq(json_string_value(json_object_get(js, "workspace")),
                     "team-b");
    ck_assert_str_eq(json_string_value(json_object_get(js, "status")),
                     "active");
    ck_assert(json_is_null(json_object_get(js, "usageLimit")));
    free(text);
    json_decref(js);
    kg_key_clear(&a);
    kg_key_clear(&b);
    kg_key_clear(&c);
    kg_workspace_clear(&ws);
}
END_TEST

START_TEST(test_update_every_field)
{
    kg_key_t key;
    kg_key_t out;
    kg_key_spec_t spec = ut_spec("renamed");
    char token[KG_TOKEN_STRLEN];
    char when[KG_TIME_STRLEN];
    kg_diag_t diag = {{0}};
    json_t *detail;
    json_t *changed; /* borrowed */
    json_t *field;   /* borrowed */
    static const char *const fields[] = {
        "name",   "description", "metadata",
        "rules",  "expiresAt",   "usageLimit",
        "period", "periodLimit", "periodStartedAt",
        "rpm",    "tpm",         "maxConcurrent",
    };

    ut_make("original", &key, token);
    kg_clock_set_fake(ut_t0 + 7200);
    spec.description = "new description";
    spec.metadata = "{\"owner\": \"ops\"}";
    spec.rules = "{\"allow_models\": [\"gpt-4o\"]}";
    spec.set_expires = true;
    spec.expires_at = ut_t0 + 10 * UT_DAY;
    spec.set_usage_limit = true;
    spec.usage_limit = 100 * INT64_C(1000000);
    spec.set_period_limit = true;
    spec.period = KG_PERIOD_MONTH;
    spec.period_limit = 20 * INT64_C(1000000);
    spec.set_rpm = true;
    spec.rpm = 60;
    spec.set_tpm = true;
    spec.tpm = 50000;
    spec.set_max_concurrent = true;
    spec.max_concurrent = 2;
    ck_assert_msg(kg_keys_update(&ut_ctx, key.id, &spec, &out, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_str_eq(out.name, "renamed");
    ck_assert_str_eq(out.description, "new description");
    ck_assert_str_eq(out.metadata, "{\"owner\": \"ops\"}");
    ck_assert_str_eq(out.rules, "{\"allow_models\": [\"gpt-4o\"]}");
    ck_assert_int_eq(out.expires_at, ut_t0 + 10 * UT_DAY);
    ck_assert_int_eq(out.usage_limit, 100 * INT64_C(1000000));
    ck_assert_int_eq(out.period, KG_PERIOD_MONTH);
    ck_assert_int_eq(out.period_limit, 20 * INT64_C(1000000));
    ck_assert_int_eq(out.period_started_at, ut_utc(2026, 6, 1, 0, 0, 0));
    ck_assert_int_eq(out.rpm, 60);
    ck_assert_int_eq(out.tpm, 50000);
    ck_assert_int_eq(out.max_concurrent, 2);
    ck_assert_int_eq(out.updated_at, ut_t0 + 7200);
    ck_assert_int_eq(out.created_at, ut_t0);
    /* The secret is untouched. */
    ck_assert_int_eq(ut_verify(token), KG_OK);

    /* The audit event holds from/to of every changed field, nothing else. */
    detail = ut_audit_detail(key.id, "update");
    changed = json_object_get(detail, "changed");
    ck_assert(json_is_object(changed));
    ck_assert_uint_eq(json_object_size(changed), UT_NROWS(fields));
    for (size_t i = 0; i < UT_NROWS(fields); i++) {
        field = json_object_get(changed, fields[i]);
        ck_assert_msg(json_is_object(field), "no change of %s", fields[i]);
        ck_assert_msg(json_object_get(field, "from") != NULL &&
                          json_object_get(field, "to") != NULL,
                      "%s lacks from/to", fields[i]);
    }
    field = json_object_get(changed, "name");
    ck_assert_str_eq(json_string_value(json_object_get(field, "from")),
                     "original");
    ck_assert_str_eq(json_string_value(json_object_get(field, "to")),
                     "renamed");
    field = json_object_get(changed, "rpm");
    ck_assert(json_is_null(json_object_get(field, "from")));
    ck_assert_int_eq(json_integer_value(json_object_get(field, "to")), 60);
    field = json_object_get(changed, "usageLimit");
    ck_assert(json_is_null(json_object_get(field, "from")));
    ck_assert_str_eq(json_string_value(json_object_get(field, "to")), "100.00");
    field = json_object_get(changed, "expiresAt");
    ck_assert_str_eq(
        json_string_value(json_object_get(field, "from")),
        kg_time_format(ut_t0 + UT_DEFAULT_TTL, when, sizeof(when)));
    ck_assert_str_eq(json_string_value(json_object_get(field, "to")),
                     kg_time_format(ut_t0 + 10 * UT_DAY, when, sizeof(when)));
    json_decref(detail);
    kg_key_clear(&out);

    /* Removing the period limit clears its fields. */
    spec = ut_spec(NULL);
    spec.set_period_limit = true;
    spec.period = KG_PERIOD_NONE;
    spec.set_rpm = true;
    spec.rpm = KG_NONE;
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, &out, &diag),
                     KG_OK);
    ck_assert_int_eq(out.period, KG_PERIOD_NONE);
    ck_assert_int_eq(out.period_limit, KG_NONE);
    ck_assert_int_eq(out.period_started_at, KG_NONE);
    ck_assert_int_eq(out.rpm, KG_NONE);
    ck_assert_str_eq(out.name, "renamed");
    kg_key_clear(&out);
    kg_key_clear(&key);
}
END_TEST

/*
 * The usage writer adds to a key's period spend while the key is edited:
 * an update writes that spend only when it restarts the period, never
 * the value it read back.
 */
START_TEST(test_update_keeps_period_spend)
{
    kg_key_t key;
    kg_key_t out;
    kg_key_t stale;
    kg_key_spec_t spec = ut_spec("budgeted");
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    spec.set_period_limit = true;
    spec.period = KG_PERIOD_DAY;
    spec.period_limit = 5 * INT64_C(1000000);
    ck_assert_msg(kg_keys_create(&ut_ctx, &spec, &key, token, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_int_eq(key.period_usage, 0);
    ck_assert_int_eq(sqlite3_exec(kg_sqlite_db(ut_store),
                                  "UPDATE api_keys SET period_usage = 700",
                                  NULL, NULL, NULL),
                     SQLITE_OK);

    /* Another limit in the same period keeps the spend. */
    spec = ut_spec(NULL);
    spec.set_period_limit = true;
    spec.period = KG_PERIOD_DAY;
    spec.period_limit = 9 * INT64_C(1000000);
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, &out, &diag),
                     KG_OK);
    ck_assert_int_eq(out.period_limit, 9 * INT64_C(1000000));
    ck_assert_int_eq(out.period_usage, 700);
    ck_assert_int_eq(out.period_started_at, ut_t0);
    kg_key_clear(&out);

    /* The store's update, given a row read before the spend moved, leaves
     * the spend alone unless told to restart the period. */
    stale = key; /* period_usage 0, as read at creation */
    stale.period_limit = 8 * INT64_C(1000000);
    ck_assert_int_eq(kg_store_key_update(ut_store, &stale, false, ut_t0, &diag),
                     KG_OK);
    ck_assert_int_eq(
        ut_int("SELECT period_usage FROM api_keys WHERE id = ?", key.id), 700);
    ck_assert_int_eq(
        ut_int("SELECT period_limit FROM api_keys WHERE id = ?", key.id),
        8 * INT64_C(1000000));

    /* Another period restarts it. */
    spec.period = KG_PERIOD_MONTH;
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, &out, &diag),
                     KG_OK);
    ck_assert_int_eq(out.period, KG_PERIOD_MONTH);
    ck_assert_int_eq(out.period_usage, 0);
    ck_assert_int_eq(out.period_started_at, ut_utc(2026, 6, 1, 0, 0, 0));
    kg_key_clear(&out);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_update_refused_changes_nothing)
{
    kg_key_t key;
    kg_key_t got;
    kg_key_spec_t spec = ut_spec("new-name");
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    ut_make("original", &key, token);
    /* A bad field anywhere in the spec refuses the whole update. */
    spec.set_rpm = true;
    spec.rpm = 60;
    spec.rules = "{\"allow_operations\": [\"teleport\"]}";
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, NULL, &diag),
                     KG_ERR_INVAL);
    spec.rules = NULL;
    spec.workspace = "default";
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, NULL, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, key.id, &got, &diag), KG_OK);
    ck_assert_str_eq(got.name, "original");
    ck_assert_int_eq(got.rpm, KG_NONE);
    ck_assert_str_eq(got.rules, "{}");
    ck_assert_uint_eq(ut_audit_count(key.id, "update"), 0);
    kg_key_clear(&got);
    spec.workspace = NULL;
    ck_assert_int_eq(
        kg_keys_update(&ut_ctx, "AAAAAAAAAAAA", &spec, NULL, &diag),
        KG_ERR_NOT_FOUND);
    /* A revoked key cannot be changed. */
    ck_assert_int_eq(kg_keys_revoke(&ut_ctx, key.id, NULL, NULL, &diag), KG_OK);
    ck_assert_int_eq(kg_keys_update(&ut_ctx, key.id, &spec, NULL, &diag),
                     KG_ERR_STATE);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_disable_enable)
{
    kg_key_t key;
    kg_key_t out;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};
    json_t *detail;

    ut_make("toggle", &key, token);
    ck_assert_int_eq(kg_keys_disable(&ut_ctx, key.id, &out, &diag), KG_OK);
    ck_assert_int_eq(out.status, KG_KEY_INACTIVE);
    kg_key_clear(&out);
    ck_assert_int_eq(ut_verify(token), KG_ERR_INVALID_KEY);
    /* Idempotent: a second disable changes and audits nothing. */
    ck_assert_int_eq(kg_keys_disable(&ut_ctx, key.id, NULL, &diag), KG_OK);
    ck_assert_uint_eq(ut_audit_count(key.id, "disable"), 1);
    detail = ut_audit_detail(key.id, "disable");
    ck_assert_str_eq(json_string_value(json_object_get(detail, "from")),
                     "active");
    ck_assert_str_eq(json_string_value(json_object_get(detail, "to")),
                     "inactive");
    json_decref(detail);
    ck_assert_int_eq(kg_keys_enable(&ut_ctx, key.id, &out, &diag), KG_OK);
    ck_assert_int_eq(out.status, KG_KEY_ACTIVE);
    kg_key_clear(&out);
    ck_assert_int_eq(ut_verify(token), KG_OK);
    ck_assert_uint_eq(ut_audit_count(key.id, "enable"), 1);
    ck_assert_int_eq(kg_keys_disable(&ut_ctx, "AAAAAAAAAAAA", NULL, &diag),
                     KG_ERR_NOT_FOUND);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_enable_expired_refused)
{
    kg_key_t key;
    kg_key_t got;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    ut_make_expiring("short-lived", ut_t0 + 100, &key, token);
    ck_assert_int_eq(kg_keys_disable(&ut_ctx, key.id, NULL, &diag), KG_OK);
    kg_clock_set_fake(ut_t0 + 200);
    ck_assert_int_eq(kg_keys_enable(&ut_ctx, key.id, NULL, &diag),
                     KG_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(diag.msg, "expired"));
    ck_assert_int_eq(kg_keys_get(&ut_ctx, key.id, &got, &diag), KG_OK);
    ck_assert_int_eq(got.status, KG_KEY_INACTIVE);
    ck_assert_uint_eq(ut_audit_count(key.id, "enable"), 0);
    kg_key_clear(&got);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_rotate_with_grace)
{
    kg_key_t key;
    kg_key_t out;
    char old_token[KG_TOKEN_STRLEN];
    char new_token[KG_TOKEN_STRLEN];
    char secret[KG_TOKEN_SECRET_LEN + 1];
    kg_diag_t diag = {{0}};
    json_t *detail;

    ut_make("rotating", &key, old_token);
    ck_assert_int_eq(
        kg_keys_rotate(&ut_ctx, key.id, 3600, &out, new_token, &diag), KG_OK);
    ck_assert_str_ne(old_token, new_token);
    ck_assert_str_eq(out.id, key.id);
    ck_assert_str_eq(out.name, "rotating");
    ck_assert_int_eq(out.grace_until, ut_t0 + 3600);
    ut_secret_of(new_token, secret);
    ck_assert_int_eq(memcmp(out.last4, secret + KG_TOKEN_SECRET_LEN - 4, 4), 0);
    kg_key_clear(&out);
    ck_assert_int_eq(ut_verify(new_token), KG_OK);
    ck_assert_int_eq(ut_verify(old_token), KG_OK);
    kg_clock_set_fake(ut_t0 + 3599);
    ck_assert_int_eq(ut_verify(old_token), KG_OK);
    kg_clock_set_fake(ut_t0 + 3600);
    ck_assert_int_eq(ut_verify(old_token), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(ut_verify(new_token), KG_OK);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, key.id, &out, &diag), KG_OK);
    ck_assert_int_eq(out.grace_until, KG_NONE);
    kg_key_clear(&out);
    detail = ut_audit_detail(key.id, "rotate");
    ck_assert_str_eq(json_string_value(json_object_get(detail, "grace")), "1h");
    json_decref(detail);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_rotate_without_grace)
{
    kg_key_t key;
    char old_token[KG_TOKEN_STRLEN];
    char new_token[KG_TOKEN_STRLEN];
    char newer_token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    ut_make("rotating", &key, old_token);
    ck_assert_int_eq(kg_keys_rotate(&ut_ctx, key.id, 0, NULL, new_token, &diag),
                     KG_OK);
    ck_assert_int_eq(ut_verify(old_token), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(ut_verify(new_token), KG_OK);
    ck_assert_int_eq(ut_int("SELECT count(*) FROM key_secrets WHERE key_id "
                            "= ?",
                            key.id),
                     1);
    /* Bad grace periods and revoked keys are refused; token stays zero. */
    ck_assert_int_eq(
        kg_keys_rotate(&ut_ctx, key.id, -1, NULL, newer_token, &diag),
        KG_ERR_INVAL);
    ck_assert_int_eq(kg_keys_rotate(&ut_ctx, key.id, UT_MAX_TTL + 1, NULL,
                                    newer_token, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(kg_keys_revoke(&ut_ctx, key.id, NULL, NULL, &diag), KG_OK);
    memset(newer_token, 'x', sizeof(newer_token));
    ck_assert_int_eq(
        kg_keys_rotate(&ut_ctx, key.id, 0, NULL, newer_token, &diag),
        KG_ERR_STATE);
    for (size_t i = 0; i < sizeof(newer_token); i++) {
        ck_assert_int_eq(newer_token[i], 0);
    }
    ck_assert_int_eq(ut_verify(new_token), KG_ERR_INVALID_KEY);
    kg_key_clear(&key);
}
END_TEST

/* A rotation without grace after one with grace: every earlier secret
 * stops at once, the one still inside its grace too. */
START_TEST(test_rotate_without_grace_ends_earlier_grace)
{
    kg_key_t key;
    kg_key_t out;
    char first[KG_TOKEN_STRLEN];
    char second[KG_TOKEN_STRLEN];
    char third[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    ut_make("leaked", &key, first);
    ck_assert_int_eq(kg_keys_rotate(&ut_ctx, key.id, 3600, NULL, second, &diag),
                     KG_OK);
    ck_assert_int_eq(ut_verify(first), KG_OK);
    ck_assert_int_eq(ut_verify(second), KG_OK);
    kg_clock_set_fake(ut_t0 + 60);
    ck_assert_int_eq(kg_keys_rotate(&ut_ctx, key.id, 0, &out, third, &diag),
                     KG_OK);
    ck_assert_int_eq(out.grace_until, KG_NONE);
    kg_key_clear(&out);
    ck_assert_int_eq(ut_verify(first), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(ut_verify(second), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(ut_verify(third), KG_OK);
    ck_assert_int_eq(ut_int("SELECT count(*) FROM key_secrets WHERE key_id "
                            "= ?",
                            key.id),
                     1);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_revoke)
{
    kg_key_t key;
    kg_key_t out;
    kg_key_t *list = NULL;
    kg_key_filter_t filter = {.include_deleted = true};
    char token[KG_TOKEN_STRLEN];
    size_t n = 0;
    bool already = true;
    kg_diag_t diag = {{0}};

    ut_make("doomed", &key, token);
    ut_add_usage(&key, "req-1");
    ck_assert_int_eq(kg_keys_revoke(&ut_ctx, key.id, &out, &already, &diag),
                     KG_OK);
    ck_assert(!already);
    ck_assert_int_eq(out.status, KG_KEY_DELETED);
    kg_key_clear(&out);
    ck_assert_int_eq(ut_verify(token), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_keys_list(&ut_ctx, &filter, &list, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(list[0].id, key.id);
    ck_assert_int_eq(list[0].status, KG_KEY_DELETED);
    kg_keys_list_free(&list, n);
    /* Usage history stays; secrets are gone. */
    ck_assert_int_eq(ut_int("SELECT count(*) FROM usage_events WHERE key_id "
                            "= ?",
                            key.id),
                     1);
    ck_assert_int_eq(ut_int("SELECT count(*) FROM usage_rollup WHERE key_id "
                            "= ?",
                            key.id),
                     1);
    ck_assert_int_eq(ut_int("SELECT count(*) FROM key_secrets WHERE key_id "
                            "= ?",
                            key.id),
                     0);
    ck_assert_uint_eq(ut_audit_count(key.id, "revoke"), 1);
    /* Revoking again is a no-op that says so; enable and disable are
     * refused. */
    ck_assert_int_eq(kg_keys_revoke(&ut_ctx, key.id, NULL, &already, &diag),
                     KG_OK);
    ck_assert(already);
    ck_assert_uint_eq(ut_audit_count(key.id, "revoke"), 1);
    ck_assert_int_eq(kg_keys_enable(&ut_ctx, key.id, NULL, &diag),
                     KG_ERR_STATE);
    ck_assert_int_eq(kg_keys_disable(&ut_ctx, key.id, NULL, &diag),
                     KG_ERR_STATE);
    ck_assert_int_eq(kg_keys_revoke(&ut_ctx, "AAAAAAAAAAAA", NULL, NULL, &diag),
                     KG_ERR_NOT_FOUND);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_delete)
{
    kg_key_t key;
    kg_key_t other;
    kg_key_t got;
    char token[KG_TOKEN_STRLEN];
    char other_token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};
    json_t *detail;

    ut_make("gone", &key, token);
    ut_make("stays", &other, other_token);
    ut_add_usage(&key, "req-1");
    ut_add_usage(&key, "req-2");
    ut_add_usage(&other, "req-3");
    ck_assert_int_eq(kg_keys_delete(&ut_ctx, key.id, &diag), KG_OK);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, key.id, &got, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(ut_verify(token), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(ut_int("SELECT count(*) FROM usage_events WHERE key_id "
                            "= ?",
                            key.id),
                     0);
    ck_assert_int_eq(ut_int("SELECT count(*) FROM usage_rollup WHERE key_id "
                            "= ?",
                            key.id),
                     0);
    ck_assert_int_eq(ut_int("SELECT count(*) FROM key_secrets WHERE key_id "
                            "= ?",
                            key.id),
                     0);
    /* Other keys keep theirs; the audit trail keeps the deletion. */
    ck_assert_int_eq(ut_int("SELECT count(*) FROM usage_events WHERE key_id "
                            "= ?",
                            other.id),
                     1);
    ck_assert_int_eq(ut_verify(other_token), KG_OK);
    detail = ut_audit_detail(key.id, "delete");
    ck_assert_str_eq(json_string_value(json_object_get(detail, "name")),
                     "gone");
    json_decref(detail);
    ck_assert_uint_eq(ut_audit_count(key.id, "create"), 1);
    ck_assert_int_eq(kg_keys_delete(&ut_ctx, key.id, &diag), KG_ERR_NOT_FOUND);
    /* A revoked key can still be deleted for good. */
    ck_assert_int_eq(kg_keys_revoke(&ut_ctx, other.id, NULL, NULL, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_keys_delete(&ut_ctx, other.id, &diag), KG_OK);
    ck_assert_int_eq(ut_count_keys(), 0);
    kg_key_clear(&key);
    kg_key_clear(&other);
}
END_TEST

START_TEST(test_purge_expired)
{
    kg_key_t a;
    kg_key_t b;
    kg_key_t c;
    kg_key_t d;
    kg_key_t got;
    char ta[KG_TOKEN_STRLEN];
    char tb[KG_TOKEN_STRLEN];
    char tc[KG_TOKEN_STRLEN];
    char td[KG_TOKEN_STRLEN];
    char td2[KG_TOKEN_STRLEN];
    size_t flipped = 99;
    kg_diag_t diag = {{0}};

    ut_make_expiring("a", ut_t0 + 100, &a, ta);
    ut_make_expiring("b", ut_t0 + 200, &b, tb);
    ut_make_expiring("c", ut_t0 + 1000, &c, tc);
    ut_make_expiring("d", ut_t0 + 5000, &d, td);
    /* b is disabled: expired disabled keys are revoked too. */
    ck_assert_int_eq(kg_keys_disable(&ut_ctx, b.id, NULL, &diag), KG_OK);
    /* d rotates with a grace that ends before the next purge. */
    ck_assert_int_eq(kg_keys_rotate(&ut_ctx, d.id, 60, NULL, td2, &diag),
                     KG_OK);

    kg_clock_set_fake(ut_t0 + 150);
    ck_assert_int_eq(kg_keys_purge_expired(&ut_ctx, &flipped, &diag), KG_OK);
    ck_assert_uint_eq(flipped, 1);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, a.id, &got, &diag), KG_OK);
    ck_assert_int_eq(got.status, KG_KEY_DELETED);
    kg_key_clear(&got);
    ck_assert_uint_eq(ut_audit_count(a.id, "expire"), 1);
    ck_assert_uint_eq(ut_audit_count(b.id, "expire"), 0);
    ck_assert_uint_eq(ut_audit_count(c.id, "expire"), 0);
    /* d's old secret, past its grace, is dropped; the new one stays. */
    ck_assert_int_eq(ut_int("SELECT count(*) FROM key_secrets WHERE key_id "
                            "= ?",
                            d.id),
                     1);
    ck_assert_int_eq(ut_verify(td2), KG_OK);
    /* Running again finds nothing. */
    ck_assert_int_eq(kg_keys_purge_expired(&ut_ctx, &flipped, &diag), KG_OK);
    ck_assert_uint_eq(flipped, 0);
    ck_assert_uint_eq(ut_audit_count(a.id, "expire"), 1);

    /* At c's expiry exactly: b and c go, d stays. */
    kg_clock_set_fake(ut_t0 + 1000);
    ck_assert_int_eq(kg_keys_purge_expired(&ut_ctx, &flipped, &diag), KG_OK);
    ck_assert_uint_eq(flipped, 2);
    ck_assert_uint_eq(ut_audit_count(b.id, "expire"), 1);
    ck_assert_uint_eq(ut_audit_count(c.id, "expire"), 1);
    ck_assert_uint_eq(ut_audit_count(d.id, "expire"), 0);
    ck_assert_int_eq(kg_keys_get(&ut_ctx, d.id, &got, &diag), KG_OK);
    ck_assert_int_eq(got.status, KG_KEY_ACTIVE);
    kg_key_clear(&got);
    ck_assert_int_eq(kg_keys_purge_expired(&ut_ctx, NULL, &diag), KG_OK);
    kg_key_clear(&a);
    kg_key_clear(&b);
    kg_key_clear(&c);
    kg_key_clear(&d);
}
END_TEST

START_TEST(test_verify)
{
    kg_key_t key;
    kg_key_t out;
    kg_token_t tok;
    kg_token_t bad;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    ut_make_expiring("verified", ut_t0 + 100, &key, token);
    ck_assert_int_eq(kg_token_parse(token, strlen(token), &tok), KG_OK);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &tok, &out, &diag), KG_OK);
    ck_assert_str_eq(out.id, key.id);
    ck_assert_str_eq(out.name, "verified");
    kg_key_clear(&out);

    /* Wrong secret, same id. */
    ck_assert_int_eq(kg_token_regenerate("kg", key.id, &bad), KG_OK);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &bad, &out, &diag),
                     KG_ERR_INVALID_KEY);
    /* Unknown id. */
    ck_assert_int_eq(kg_token_generate("kg", &bad), KG_OK);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &bad, NULL, &diag),
                     KG_ERR_INVALID_KEY);
    /* Right id and secret under another prefix (e.g. an admin token). */
    bad = tok;
    memcpy(bad.prefix, "kgadm", 6);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &bad, NULL, &diag),
                     KG_ERR_INVALID_KEY);
    memcpy(bad.prefix, "kx", 3);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &bad, NULL, &diag),
                     KG_ERR_INVALID_KEY);

    /* Expired: only with the right secret does the caller learn it. */
    kg_clock_set_fake(ut_t0 + 99);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &tok, NULL, &diag), KG_OK);
    kg_clock_set_fake(ut_t0 + 100);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &tok, NULL, &diag),
                     KG_ERR_KEY_EXPIRED);
    ck_assert_int_eq(kg_token_regenerate("kg", key.id, &bad), KG_OK);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &bad, NULL, &diag),
                     KG_ERR_INVALID_KEY);
    /* Disabled and expired: the key is invalid, not expired. */
    ck_assert_int_eq(kg_keys_disable(&ut_ctx, key.id, NULL, &diag), KG_OK);
    ck_assert_int_eq(kg_keys_verify(&ut_ctx, &tok, NULL, &diag),
                     KG_ERR_INVALID_KEY);
    kg_token_wipe(&tok);
    kg_token_wipe(&bad);
    kg_key_clear(&key);
}
END_TEST

START_TEST(test_prefix_kept_by_existing_keys)
{
    kg_key_t key;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    ut_ctx.prefix = "acme";
    ut_make("acme-key", &key, token);
    ck_assert_int_eq(strncmp(token, "acme_", 5), 0);
    ck_assert_str_eq(key.prefix, "acme");
    /* The configured prefix changes; the old key still verifies. */
    ut_ctx.prefix = "kg";
    ck_assert_int_eq(ut_verify(token), KG_OK);
    kg_key_clear(&key);
    /* A bad configured prefix stores nothing. */
    ut_ctx.prefix = "Bad";
    ck_assert_int_eq(kg_keys_create(&ut_ctx, &(kg_key_spec_t){.name = "x"},
                                    NULL, token, &diag),
                     KG_ERR_CONFIG);
    ck_assert_int_eq(ut_count_keys(), 1);
}
END_TEST

/* True when needle (n bytes) occurs in hay (len bytes). */
static bool ut_contains(const void *hay, size_t len, const char *needle,
                        size_t n)
{
    const unsigned char *h = hay;

    for (size_t i = 0; n <= len && i + n <= len; i++) {
        if (memcmp(h + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

/* Scan every value of every table for each of the secrets. */
static size_t ut_scan_store(char secrets[][KG_TOKEN_STRLEN], size_t nsecrets)
{
    sqlite3 *db = kg_sqlite_db(ut_store);
    sqlite3_stmt *tables = NULL;
    size_t values = 0;

    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_schema "
                                        "WHERE type = 'table'",
                                        -1, &tables, NULL),
                     SQLITE_OK);
    while (sqlite3_step(tables) == SQLITE_ROW) {
        char sql[128];
        sqlite3_stmt *rows = NULL;
        const char *table = (const char *)sqlite3_column_text(tables, 0);

        snprintf(sql, sizeof(sql), "SELECT * FROM \"%s\"", table);
        ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &rows, NULL),
                         SQLITE_OK);
        while (sqlite3_step(rows) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(rows); c++) {
                int type = sqlite3_column_type(rows, c);
                const void *v;
                size_t len;

                if (type != SQLITE_TEXT && type != SQLITE_BLOB) {
                    continue;
                }
                v = type == SQLITE_TEXT
                        ? (const void *)sqlite3_column_text(rows, c)
                        : sqlite3_column_blob(rows, c);
                len = (size_t)sqlite3_column_bytes(rows, c);
                values++;
                for (size_t s = 0; s < nsecrets; s++) {
                    ck_assert_msg(
                        !ut_contains(v, len, secrets[s], KG_TOKEN_SECRET_LEN),
                        "a secret is stored in %s column %s", table,
                        sqlite3_column_name(rows, c));
                }
            }
        }
        sqlite3_finalize(rows);
    }
    sqlite3_finalize(tables);
    return values;
}

START_TEST(test_no_plaintext_secret_stored)
{
    char tokens[4][KG_TOKEN_STRLEN];
    char secrets[4][KG_TOKEN_STRLEN];
    kg_key_t keys[3];
    kg_key_spec_t spec = ut_spec("renamed");
    kg_diag_t diag = {{0}};
    char path[UT_PATH_MAX + 8];
    char *bytes;
    size_t len = 0;

    ut_make("one", &keys[0], tokens[0]);
    ut_make("two", &keys[1], tokens[1]);
    ut_make("three", &keys[2], tokens[2]);
    ck_assert_int_eq(
        kg_keys_rotate(&ut_ctx, keys[0].id, 3600, NULL, tokens[3], &diag),
        KG_OK);
    spec.description = "after rotation";
    ck_assert_int_eq(kg_keys_update(&ut_ctx, keys[0].id, &spec, NULL, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_keys_disable(&ut_ctx, keys[1].id, NULL, &diag), KG_OK);
    ck_assert_int_eq(kg_keys_revoke(&ut_ctx, keys[2].id, NULL, NULL, &diag),
                     KG_OK);
    for (size_t i = 0; i < 4; i++) {
        ut_secret_of(tokens[i], secrets[i]);
    }
    ck_assert_uint_gt(ut_scan_store(secrets, 4), 20);
    /* Nor anywhere in the files' bytes (free pages, WAL frames). */
    for (int f = 0; f < 2; f++) {
        snprintf(path, sizeof(path), "%s%s", kg_store_path(ut_store),
                 f == 0 ? "" : "-wal");
        bytes = ut_read_file(path, &len);
        ck_assert_ptr_nonnull(bytes);
        for (size_t s = 0; s < 4; s++) {
            ck_assert_msg(
                !ut_contains(bytes, len, secrets[s], KG_TOKEN_SECRET_LEN),
                "a secret is in the bytes of %s", path);
        }
        free(bytes);
    }
    for (size_t i = 0; i < 3; i++) {
        kg_key_clear(&keys[i]);
    }
}
END_TEST

static Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");

    tcase_set_timeout(tc, 30);
    tcase_add_checked_fixture(tc, ut_setup, ut_teardown);
    tcase_add_test(tc, test_create);
    tcase_add_test(tc, test_create_fields_and_workspace);
    tcase_add_loop_test(tc, test_create_refused, 0,
                        (int)UT_NROWS(ut_refuse_rows));
    tcase_add_test(tc, test_ttl_bounds);
    tcase_add_test(tc, test_get_and_list);
    tcase_add_test(tc, test_update_every_field);
    tcase_add_test(tc, test_update_keeps_period_spend);
    tcase_add_test(tc, test_update_refused_changes_nothing);
    tcase_add_test(tc, test_disable_enable);
    tcase_add_test(tc, test_enable_expired_refused);
    tcase_add_test(tc, test_rotate_with_grace);
    tcase_add_test(tc, test_rotate_without_grace);
    tcase_add_test(tc, test_rotate_without_grace_ends_earlier_grace);
    tcase_add_test(tc, test_revoke);
    tcase_add_test(tc, test_delete);
    tcase_add_test(tc, test_purge_expired);
    tcase_add_test(tc, test_verify);
    tcase_add_test(tc, test_prefix_kept_by_existing_keys);
    tcase_add_test(tc, test_no_plaintext_secret_stored);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(keys_suite());
}
