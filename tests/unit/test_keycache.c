/* Unit tests of the key cache: agreement with the store, refresh, threads. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keygate/clock.h"
#include "keygate/keycache.h"
#include "keygate/keyhash.h"
#include "keygate/keys.h"
#include "keygate/store.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/token.h"
#include "keygate/usagedb.h"
#include "keygate/workspaces.h"
#include "unit_util.h"

/* 2030-01-01T00:00:00Z, a fixed "now" for the fake clock. */
#define UT_T0 INT64_C(1893456000)

/* A store with the default workspace, a hash key and a keys context. */
typedef struct ut_fx {
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *store;
    kg_keyhash_t *hk;
    kg_keys_ctx_t ctx;
} ut_fx_t;

static void ut_fx_open(ut_fx_t *fx)
{
    kg_store_opts_t opts = {.flags = KG_STORE_CREATE, .busy_timeout_ms = 5000};
    unsigned char key[KG_KEYHASH_KEY_LEN];
    kg_diag_t diag = {{0}};

    memset(fx, 0, sizeof(*fx));
    memset(key, 0x5a, sizeof(key));
    ut_tmpdir(fx->dir);
    ut_join(fx->path, fx->dir, "keygate.db");
    ck_assert_msg(kg_store_open(fx->path, &opts, &fx->store, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_msg(kg_workspace_ensure_default(fx->store, "cli:test", &diag) ==
                      KG_OK,
                  "%s", diag.msg);
    ck_assert_int_eq(kg_keyhash_from_bytes(key, &fx->hk), KG_OK);
    fx->ctx.store = fx->store;
    fx->ctx.hashkey = fx->hk;
    fx->ctx.prefix = "kg";
    fx->ctx.actor = "cli:test";
}

static void ut_fx_close(ut_fx_t *fx)
{
    kg_store_close(&fx->store);
    kg_keyhash_free(&fx->hk);
    ut_tmpdir_remove(fx->dir);
}

/* A second connection to the same store, as the CLI would have. */
static kg_keys_ctx_t ut_cli_ctx(const ut_fx_t *fx, kg_store_t **store)
{
    kg_store_opts_t opts = {.flags = 0, .busy_timeout_ms = 5000};
    kg_keys_ctx_t ctx = fx->ctx;
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_store_open(fx->path, &opts, store, &diag) == KG_OK, "%s",
                  diag.msg);
    ctx.store = *store;
    return ctx;
}

/* Create a key named name (expiry at expires, KG_NONE for none) and parse
 * its token into tok. */
static void ut_key(const kg_keys_ctx_t *ctx, const char *name, int64_t expires,
                   kg_token_t *tok)
{
    kg_key_spec_t spec;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    memset(&spec, 0, sizeof(spec));
    spec.name = name;
    if (expires != KG_NONE) {
        spec.set_expires = true;
        spec.expires_at = expires;
    }
    ck_assert_msg(kg_keys_create(ctx, &spec, NULL, token, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_token_parse(token, strlen(token), tok), KG_OK);
}

static kg_keycache_t *ut_cache(const ut_fx_t *fx, size_t max_entries)
{
    kg_keycache_t *c = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_keycache_new(fx->path, 5000, fx->hk, max_entries, &c,
                                  &diag) == KG_OK,
                  "%s", diag.msg);
    return c;
}

static void ut_refresh(kg_keycache_t *c)
{
    ck_assert_int_eq(kg_keycache_refresh(c), KG_OK);
}

static int64_t ut_rev(kg_store_t *store)
{
    sqlite3_stmt *st = NULL;
    int64_t rev;

    ck_assert_int_eq(sqlite3_prepare_v2(kg_sqlite_db(store),
                                        "SELECT rev FROM key_revision", -1, &st,
                                        NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    rev = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rev;
}

static void ut_exec(kg_store_t *store, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(kg_sqlite_db(store), sql, NULL, NULL, &err);

    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_free(err);
}

/*
 * Verify tok through the store and through the cache twice (a miss or a
 * hit, then a hit): all three must answer want, and on KG_OK the view must
 * match the store's key.
 */
static void ut_agree(const ut_fx_t *fx, kg_keycache_t *c, const kg_token_t *tok,
                     kg_err_t want, const char *what)
{
    kg_key_t k;
    kg_key_view_t v;
    kg_err_t rs = kg_keys_verify(&fx->ctx, tok, &k, NULL);

    ck_assert_msg(rs == want, "%s: store says %s, want %s", what,
                  kg_err_name(rs), kg_err_name(want));
    for (int round = 0; round < 2; round++) {
        kg_err_t rcache = kg_keycache_verify(c, tok, &v);

        ck_assert_msg(rcache == want, "%s (round %d): cache says %s, want %s",
                      what, round, kg_err_name(rcache), kg_err_name(want));
        if (rcache == KG_OK) {
            ck_assert_str_eq(v.id, k.id);
            ck_assert_str_eq(v.workspace_id, k.workspace_id);
            ck_assert_str_eq(v.name, k.name);
            ck_assert_str_eq(v.prefix, k.prefix);
            ck_assert_str_eq(v.last4, k.last4);
            ck_assert_int_eq(v.status, k.status);
            ck_assert_int_eq(v.expires_at, k.expires_at);
            ck_assert_int_eq(v.usage_limit, k.usage_limit);
            ck_assert_int_eq(v.usage, k.usage);
            ck_assert_int_eq(v.period, k.period);
            ck_assert_int_eq(v.period_limit, k.period_limit);
            ck_assert_int_eq(v.period_usage, k.period_usage);
            ck_assert_int_eq(v.period_started_at, k.period_started_at);
            ck_assert_int_eq(v.rpm, k.rpm);
            ck_assert_int_eq(v.tpm, k.tpm);
            ck_assert_int_eq(v.max_concurrent, k.max_concurrent);
        } else {
            ck_assert_str_eq(v.id, ""); /* zeroed on error */
        }
    }
    kg_key_clear(&k);
}

static void ut_wrong_secret(const kg_token_t *tok, kg_token_t *out)
{
    *out = *tok;
    out->secret[5] = out->secret[5] == 'a' ? 'b' : 'a';
}

/* A v2 store (created by an older keygate) upgrades to v3 on open. */
START_TEST(test_migration_v2_to_v3)
{
    kg_store_opts_t v2 = {
        .flags = KG_STORE_CREATE, .busy_timeout_ms = 1000, .target_version = 2};
    kg_store_opts_t now = {.flags = 0, .busy_timeout_ms = 1000};
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *s = NULL;
    sqlite3_stmt *st = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(path, dir, "old.db");
    ck_assert_msg(kg_store_open(path, &v2, &s, &diag) == KG_OK, "%s", diag.msg);
    ck_assert_int_eq(kg_store_schema_version(s), 2);
    ck_assert_int_eq(kg_workspace_create(s, "cli:test", KG_WORKSPACE_DEFAULT,
                                         KG_MODE_API_KEYS, NULL, &diag),
                     KG_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(kg_sqlite_db(s),
                                        "SELECT rev FROM key_revision", -1, &st,
                                        NULL),
                     SQLITE_ERROR);
    kg_store_close(&s);

    ck_assert_msg(kg_store_open(path, &now, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(s), KG_STORE_SCHEMA_VERSION);
    ck_assert_int_eq(ut_rev(s), 0);
    /* The one row is enforced. */
    ck_assert_int_ne(sqlite3_exec(kg_sqlite_db(s),
                                  "INSERT INTO key_revision VALUES (2, 0)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    kg_store_close(&s);
    ck_assert_msg(kg_store_open(path, &now, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(s), KG_STORE_SCHEMA_VERSION);
    kg_store_close(&s);
    ut_tmpdir_remove(dir);
}
END_TEST

/* Which writes bump the key revision: a table of statements. */
static const struct {
    const char *sql;
    bool bumps;
} ut_rev_cases[] = {
    {"UPDATE api_keys SET status = status", true},
    {"UPDATE api_keys SET expires_at = expires_at", true},
    {"UPDATE api_keys SET workspace_id = workspace_id", true},
    {"UPDATE api_keys SET prefix = prefix", true},
    {"UPDATE api_keys SET usage_limit = usage_limit", true},
    {"UPDATE api_keys SET period = period", true},
    {"UPDATE api_keys SET period_limit = period_limit", true},
    {"UPDATE api_keys SET rpm = rpm", true},
    {"UPDATE api_keys SET tpm = tpm", true},
    {"UPDATE api_keys SET max_concurrent = max_concurrent", true},
    {"UPDATE api_keys SET rules = rules", true},
    {"UPDATE api_keys SET usage = usage + 5", false},
    {"UPDATE api_keys SET period_usage = period_usage + 5", false},
    {"UPDATE api_keys SET period_started_at = 7", false},
    {"UPDATE api_keys SET last_used_at = 9", false},
    {"UPDATE api_keys SET updated_at = 9", false},
    {"UPDATE api_keys SET name = 'renamed'", false},
    {"UPDATE api_keys SET description = 'd'", false},
    {"UPDATE api_keys SET metadata = '{\"a\":1}'", false},
    {"UPDATE api_keys SET last4 = 'zzzz'", false},
    {"UPDATE key_secrets SET created_at = created_at", true},
    {"INSERT INTO key_secrets SELECT key_id, zeroblob(32), 1, 2 "
     "FROM key_secrets LIMIT 1",
     true},
    {"DELETE FROM key_secrets WHERE expires_at = 2", true},
    {"UPDATE workspaces SET mode = mode", true},
    {"UPDATE workspaces SET rules = rules", true},
    {"UPDATE workspaces SET credits_balance = 100", false},
    {"UPDATE workspaces SET updated_at = 5", false},
    {"DELETE FROM api_keys", true},
};

START_TEST(test_revision_triggers)
{
    ut_fx_t fx;
    kg_token_t tok;
    int64_t before;
    int64_t rev;

    ut_fx_open(&fx);
    before = ut_rev(fx.store);
    ut_key(&fx.ctx, "one", KG_NONE, &tok);
    rev = ut_rev(fx.store);
    ck_assert_int_gt(rev, before); /* INSERT on api_keys and key_secrets */
    for (size_t i = 0; i < UT_NROWS(ut_rev_cases); i++) {
        ut_exec(fx.store, ut_rev_cases[i].sql);
        before = rev;
        rev = ut_rev(fx.store);
        ck_assert_msg((rev > before) == ut_rev_cases[i].bumps,
                      "%s: revision %lld -> %lld", ut_rev_cases[i].sql,
                      (long long)before, (long long)rev);
    }
    ut_fx_close(&fx);
}
END_TEST

/* The cache answers like kg_keys_verify on every case, miss and hit. */
START_TEST(test_agrees_with_store)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t good, expiring, disabled, revoked, rotated, rotated0;
    kg_token_t bad, unknown, other_prefix, old_grace, old_nograce;
    kg_keycache_stats_t stats;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    kg_clock_set_fake(UT_T0);
    ut_fx_open(&fx);
    ut_key(&fx.ctx, "good", KG_NONE, &good);
    ut_key(&fx.ctx, "expiring", UT_T0 + 100, &expiring);
    ut_key(&fx.ctx, "disabled", KG_NONE, &disabled);
    ut_key(&fx.ctx, "revoked", KG_NONE, &revoked);
    ut_key(&fx.ctx, "rotated", KG_NONE, &old_grace);
    ut_key(&fx.ctx, "rotated0", KG_NONE, &old_nograce);
    ck_assert_int_eq(kg_keys_disable(&fx.ctx, disabled.id, NULL, &diag), KG_OK);
    ck_assert_int_eq(kg_keys_revoke(&fx.ctx, revoked.id, NULL, NULL, &diag),
                     KG_OK);
    ck_assert_int_eq(
        kg_keys_rotate(&fx.ctx, old_grace.id, 60, NULL, token, &diag), KG_OK);
    ck_assert_int_eq(kg_token_parse(token, strlen(token), &rotated), KG_OK);
    ck_assert_int_eq(
        kg_keys_rotate(&fx.ctx, old_nograce.id, 0, NULL, token, &diag), KG_OK);
    ck_assert_int_eq(kg_token_parse(token, strlen(token), &rotated0), KG_OK);
    ut_wrong_secret(&good, &bad);
    ck_assert_int_eq(kg_token_generate("kg", &unknown), KG_OK);
    other_prefix = good;
    memcpy(other_prefix.prefix, "sk", 3);

    c = ut_cache(&fx, 0);
    ut_agree(&fx, c, &good, KG_OK, "right secret");
    ut_agree(&fx, c, &bad, KG_ERR_INVALID_KEY, "wrong secret");
    ut_agree(&fx, c, &other_prefix, KG_ERR_INVALID_KEY, "wrong prefix");
    ut_agree(&fx, c, &unknown, KG_ERR_INVALID_KEY, "unknown id");
    ut_agree(&fx, c, &disabled, KG_ERR_INVALID_KEY, "disabled");
    ut_agree(&fx, c, &revoked, KG_ERR_INVALID_KEY, "revoked");
    ut_agree(&fx, c, &expiring, KG_OK, "before expiry");
    ut_agree(&fx, c, &rotated, KG_OK, "rotated, new secret");
    ut_agree(&fx, c, &old_grace, KG_OK, "rotated, old secret in grace");
    ut_agree(&fx, c, &rotated0, KG_OK, "rotated without grace, new");
    ut_agree(&fx, c, &old_nograce, KG_ERR_INVALID_KEY,
             "rotated without grace, old");

    /* Time passes; nothing in the store changes, the cache keeps up. */
    kg_clock_set_fake(UT_T0 + 59);
    ut_agree(&fx, c, &old_grace, KG_OK, "old secret, last second of grace");
    kg_clock_set_fake(UT_T0 + 60);
    ut_agree(&fx, c, &old_grace, KG_ERR_INVALID_KEY, "old secret after grace");
    ut_agree(&fx, c, &rotated, KG_OK, "new secret after grace");
    kg_clock_set_fake(UT_T0 + 100);
    ut_agree(&fx, c, &expiring, KG_ERR_KEY_EXPIRED, "at expiry");
    ut_wrong_secret(&expiring, &bad);
    ut_agree(&fx, c, &bad, KG_ERR_INVALID_KEY, "expired, wrong secret");
    ut_agree(&fx, c, &good, KG_OK, "right secret, later");

    kg_keycache_stats(c, &stats);
    ck_assert_uint_gt(stats.hits, 0);
    ck_assert_uint_eq(stats.misses, 7); /* one per distinct id */
    ck_assert_uint_eq(stats.negative_hits, 1);
    ck_assert_uint_eq(stats.entries, 7);
    ck_assert_uint_eq(stats.negatives, 1);
    ck_assert_uint_eq(stats.store_errors, 0);
    kg_keycache_free(&c);
    ck_assert_ptr_null(c);
    kg_keycache_free(&c); /* NULL: nothing */
    ut_fx_close(&fx);
    kg_clock_set_fake(0);
}
END_TEST

/* Hit and negative-hit paths do not touch the store: counters tell. */
START_TEST(test_hit_miss_negative)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t good, unknown;
    kg_key_view_t v;
    kg_keycache_stats_t s;

    ut_fx_open(&fx);
    ut_key(&fx.ctx, "good", KG_NONE, &good);
    ck_assert_int_eq(kg_token_generate("kg", &unknown), KG_OK);
    c = ut_cache(&fx, 0);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(kg_keycache_verify(c, &good, &v), KG_OK);
        ck_assert_int_eq(kg_keycache_verify(c, &unknown, NULL),
                         KG_ERR_INVALID_KEY);
    }
    ck_assert_int_eq(kg_keycache_verify(c, &good, NULL), KG_OK);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.misses, 2);
    ck_assert_uint_eq(s.hits, 5);
    ck_assert_uint_eq(s.negative_hits, 4);
    ck_assert_uint_eq(s.entries, 2);
    ck_assert_uint_eq(s.negatives, 1);
    /* A refresh with no change keeps the entries. */
    ut_refresh(c);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.entries, 2);
    ck_assert_uint_eq(s.flushes, 0);
    kg_keycache_free(&c);
    ut_fx_close(&fx);
}
END_TEST

/*
 * With stale_after, cached entries answer only while a read of the store
 * succeeded within it; past it a verification goes to the store (a miss),
 * whose success confirms the cache again.
 */
START_TEST(test_stale_after)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t good;
    kg_keycache_stats_t s;

    ut_fx_open(&fx);
    kg_clock_set_fake(UT_T0);
    ut_key(&fx.ctx, "good", KG_NONE, &good);
    c = ut_cache(&fx, 0);
    kg_keycache_set_stale_after(c, 30);
    ck_assert_int_eq(kg_keycache_verify(c, &good, NULL), KG_OK);
    kg_clock_set_fake(UT_T0 + 30);
    ck_assert_int_eq(kg_keycache_verify(c, &good, NULL), KG_OK);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.misses, 1);
    ck_assert_uint_eq(s.hits, 1);
    /* 31 s without a read of the store: the next answer reads it. */
    kg_clock_set_fake(UT_T0 + 31);
    ck_assert_int_eq(kg_keycache_verify(c, &good, NULL), KG_OK);
    ck_assert_int_eq(kg_keycache_verify(c, &good, NULL), KG_OK);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.misses, 2);
    ck_assert_uint_eq(s.hits, 2);
    /* A refresh confirms the cache too. */
    kg_clock_set_fake(UT_T0 + 100);
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &good, NULL), KG_OK);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.misses, 2);
    ck_assert_uint_eq(s.hits, 3);
    kg_keycache_free(&c);
    kg_clock_set_fake(0);
    ut_fx_close(&fx);
}
END_TEST

/*
 * Successful verifications note their key once per second (hits and
 * misses); failures note nothing; the swap hands them over, and
 * kg_keys_touch writes them without moving the key revision or a
 * last_used_at back.
 */
START_TEST(test_seen_once_per_second)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t a, b, unknown;
    kg_key_seen_t *buf = calloc(KG_KEYCACHE_SEEN_MAX, sizeof(*buf));
    kg_key_t k;
    kg_diag_t diag = {{0}};
    int64_t rev;
    size_t n;

    ck_assert_ptr_nonnull(buf);
    kg_clock_set_fake(UT_T0);
    ut_fx_open(&fx);
    ut_key(&fx.ctx, "a", KG_NONE, &a);
    ut_key(&fx.ctx, "b", KG_NONE, &b);
    ck_assert_int_eq(kg_token_generate("kg", &unknown), KG_OK);
    c = ut_cache(&fx, 0);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(kg_keycache_verify(c, &a, NULL), KG_OK);
        ck_assert_int_eq(kg_keycache_verify(c, &unknown, NULL),
                         KG_ERR_INVALID_KEY);
    }
    n = kg_keycache_swap_seen(c, &buf);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(buf[0].id, a.id);
    ck_assert_int_eq(buf[0].at, UT_T0);
    ck_assert_uint_eq(kg_keycache_swap_seen(c, &buf), 0);
    /* The next second: a and b again, once each. */
    kg_clock_set_fake(UT_T0 + 1);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(kg_keycache_verify(c, &a, NULL), KG_OK);
        ck_assert_int_eq(kg_keycache_verify(c, &b, NULL), KG_OK);
    }
    n = kg_keycache_swap_seen(c, &buf);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(buf[0].at, UT_T0 + 1);
    ck_assert_int_eq(buf[1].at, UT_T0 + 1);

    rev = ut_rev(fx.store);
    ck_assert_int_eq(kg_keys_touch(&fx.ctx, buf, n, &diag), KG_OK);
    ck_assert_int_eq(ut_rev(fx.store), rev);
    ck_assert_int_eq(kg_keys_get(&fx.ctx, a.id, &k, &diag), KG_OK);
    ck_assert_int_eq(k.last_used_at, UT_T0 + 1);
    kg_key_clear(&k);
    /* An older sighting never moves it back; an unknown id is skipped. */
    memcpy(buf[0].id, unknown.id, sizeof(buf[0].id));
    buf[1].at = UT_T0 - 100;
    ck_assert_int_eq(kg_keys_touch(&fx.ctx, buf, 2, &diag), KG_OK);
    ck_assert_int_eq(kg_keys_get(&fx.ctx, b.id, &k, &diag), KG_OK);
    ck_assert_int_eq(k.last_used_at, UT_T0 + 1);
    kg_key_clear(&k);
    free(buf);
    kg_keycache_free(&c);
    ut_fx_close(&fx);
    kg_clock_set_fake(0);
}
END_TEST

/* Changes through another connection (the CLI) reach the cache on
 * refresh, and not before: the cache really caches. */
START_TEST(test_refresh_sees_cli_changes)
{
    ut_fx_t fx;
    kg_store_t *cli_store = NULL;
    kg_keys_ctx_t cli;
    kg_keycache_t *c;
    kg_token_t tok, fresh, later;
    kg_key_spec_t spec;
    kg_key_view_t v;
    kg_keycache_stats_t s;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    ut_fx_open(&fx);
    ut_key(&fx.ctx, "k", KG_NONE, &tok);
    c = ut_cache(&fx, 0);
    cli = ut_cli_ctx(&fx, &cli_store);

    ck_assert_int_eq(kg_keycache_verify(c, &tok, &v), KG_OK);
    ck_assert_int_eq(v.rpm, KG_NONE);

    ck_assert_int_eq(kg_keys_disable(&cli, tok.id, NULL, &diag), KG_OK);
    ck_assert_int_eq(kg_keycache_verify(c, &tok, NULL), KG_OK); /* cached */
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &tok, NULL), KG_ERR_INVALID_KEY);

    ck_assert_int_eq(kg_keys_enable(&cli, tok.id, NULL, &diag), KG_OK);
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &tok, NULL), KG_OK);

    memset(&spec, 0, sizeof(spec));
    spec.set_rpm = true;
    spec.rpm = 42;
    ck_assert_int_eq(kg_keys_update(&cli, tok.id, &spec, NULL, &diag), KG_OK);
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &tok, &v), KG_OK);
    ck_assert_int_eq(v.rpm, 42);

    /* Rotation without grace: the old secret stops, the new one works. */
    ck_assert_int_eq(kg_keys_rotate(&cli, tok.id, 0, NULL, token, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_token_parse(token, strlen(token), &fresh), KG_OK);
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &tok, NULL), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_keycache_verify(c, &fresh, NULL), KG_OK);

    ck_assert_int_eq(kg_keys_revoke(&cli, tok.id, NULL, NULL, &diag), KG_OK);
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &fresh, NULL), KG_ERR_INVALID_KEY);

    /* Hard delete, and a new key: an unknown id cached before is not
     * stuck once the store changes. */
    ck_assert_int_eq(kg_keys_delete(&cli, tok.id, &diag), KG_OK);
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &fresh, NULL), KG_ERR_INVALID_KEY);
    ut_key(&cli, "later", KG_NONE, &later);
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &later, NULL), KG_OK);

    kg_keycache_stats(c, &s);
    ck_assert_uint_ge(s.flushes, 6);
    ck_assert_int_eq(s.revision, ut_rev(fx.store));
    kg_store_close(&cli_store);
    kg_keycache_free(&c);
    ut_fx_close(&fx);
}
END_TEST

/* A miss that reads a newer revision than the cache's flushes the older
 * entries itself, without waiting for a refresh. */
START_TEST(test_miss_catches_up)
{
    ut_fx_t fx;
    kg_store_t *cli_store = NULL;
    kg_keys_ctx_t cli;
    kg_keycache_t *c;
    kg_token_t a, b;
    kg_diag_t diag = {{0}};

    ut_fx_open(&fx);
    ut_key(&fx.ctx, "a", KG_NONE, &a);
    c = ut_cache(&fx, 0);
    cli = ut_cli_ctx(&fx, &cli_store);
    ck_assert_int_eq(kg_keycache_verify(c, &a, NULL), KG_OK);
    ck_assert_int_eq(kg_keys_disable(&cli, a.id, NULL, &diag), KG_OK);
    ut_key(&cli, "b", KG_NONE, &b);
    ck_assert_int_eq(kg_keycache_verify(c, &b, NULL), KG_OK); /* miss */
    ck_assert_int_eq(kg_keycache_verify(c, &a, NULL), KG_ERR_INVALID_KEY);
    kg_store_close(&cli_store);
    kg_keycache_free(&c);
    ut_fx_close(&fx);
}
END_TEST

static double ut_secs(void)
{
    return (double)kg_clock_mono_us() / 1e6;
}

/* With the refresh thread at 100 ms, a CLI disable is seen within 1 s. */
START_TEST(test_refresh_thread_within_a_second)
{
    ut_fx_t fx;
    kg_store_t *cli_store = NULL;
    kg_keys_ctx_t cli;
    kg_keycache_t *c;
    kg_token_t tok;
    kg_diag_t diag = {{0}};
    double t0;
    double took;
    kg_err_t rc = KG_OK;

    ut_fx_open(&fx);
    ut_key(&fx.ctx, "k", KG_NONE, &tok);
    c = ut_cache(&fx, 0);
    ck_assert_int_eq(kg_keycache_start(c, 100), KG_OK);
    ck_assert_int_eq(kg_keycache_start(c, 100), KG_ERR_STATE);
    cli = ut_cli_ctx(&fx, &cli_store);
    ck_assert_int_eq(kg_keycache_verify(c, &tok, NULL), KG_OK);

    ck_assert_int_eq(kg_keys_disable(&cli, tok.id, NULL, &diag), KG_OK);
    t0 = ut_secs();
    while (ut_secs() - t0 < 2.0) {
        struct timespec ts = {0, 5 * 1000000L};

        rc = kg_keycache_verify(c, &tok, NULL);
        if (rc != KG_OK) {
            break;
        }
        nanosleep(&ts, NULL);
    }
    took = ut_secs() - t0;
    ck_assert_int_eq(rc, KG_ERR_INVALID_KEY);
    ck_assert_msg(took < 1.0, "the disable took %.3f s to be seen", took);
    kg_store_close(&cli_store);
    kg_keycache_free(&c); /* stops and joins the thread */
    ut_fx_close(&fx);
}
END_TEST

START_TEST(test_start_rejects_bad_interval)
{
    ut_fx_t fx;
    kg_keycache_t *c;

    ut_fx_open(&fx);
    c = ut_cache(&fx, 0);
    ck_assert_int_eq(kg_keycache_start(c, -1), KG_ERR_INVAL);
    ck_assert_int_eq(kg_keycache_start(c, 60001), KG_ERR_INVAL);
    ck_assert_int_eq(kg_keycache_start(c, 0), KG_OK); /* default 200 ms */
    kg_keycache_free(&c);
    ut_fx_close(&fx);
}
END_TEST

static void ut_usage_done(void *ud, kg_err_t rc)
{
    atomic_int *n = ud;

    if (rc == KG_OK) {
        atomic_fetch_add(n, 1);
    }
}

/* The usage writer's updates (usage, last_used_at) leave the revision. */
START_TEST(test_usage_writer_keeps_revision)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_usagedb_t *w = NULL;
    kg_token_t tok;
    kg_usage_event_t ev;
    kg_keycache_stats_t s;
    kg_diag_t diag = {{0}};
    atomic_int done = 0;
    int64_t rev;

    ut_fx_open(&fx);
    ut_key(&fx.ctx, "k", KG_NONE, &tok);
    c = ut_cache(&fx, 0);
    ck_assert_int_eq(kg_keycache_verify(c, &tok, NULL), KG_OK);
    rev = ut_rev(fx.store);
    ck_assert_msg(kg_usagedb_start(fx.path, 5000, 64, &w, &diag) == KG_OK, "%s",
                  diag.msg);
    for (int i = 0; i < 20; i++) {
        memset(&ev, 0, sizeof(ev));
        snprintf(ev.request_id, sizeof(ev.request_id), "req-%d", i);
        memcpy(ev.key_id, tok.id, sizeof(ev.key_id));
        ev.at_ms = (UT_T0 + i) * 1000;
        snprintf(ev.operation, sizeof(ev.operation), "chat");
        snprintf(ev.mode, sizeof(ev.mode), "api-keys");
        ev.status = 200;
        ev.cost = 10;
        ev.ttft_ms = -1;
        ck_assert_int_eq(kg_usagedb_submit(w, &ev, ut_usage_done, &done),
                         KG_OK);
    }
    ck_assert_int_eq(kg_usagedb_flush(w), KG_OK);
    kg_usagedb_stop(&w);
    ck_assert_int_eq(atomic_load(&done), 20);
    ck_assert_int_eq(ut_rev(fx.store), rev);
    ut_refresh(c);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.flushes, 0);
    ck_assert_uint_eq(s.entries, 1);
    kg_keycache_free(&c);
    ut_fx_close(&fx);
}
END_TEST

/* Full: unknown ids go first, keys in use stay. */
START_TEST(test_bounded_table)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t keys[3];
    kg_token_t unknown;
    kg_keycache_stats_t s;
    uint64_t misses;

    ut_fx_open(&fx);
    for (size_t i = 0; i < UT_NROWS(keys); i++) {
        ut_key(&fx.ctx, "k", KG_NONE, &keys[i]);
    }
    c = ut_cache(&fx, 4);
    for (size_t i = 0; i < UT_NROWS(keys); i++) {
        ck_assert_int_eq(kg_keycache_verify(c, &keys[i], NULL), KG_OK);
    }
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(kg_token_generate("kg", &unknown), KG_OK);
        ck_assert_int_eq(kg_keycache_verify(c, &unknown, NULL),
                         KG_ERR_INVALID_KEY);
    }
    kg_keycache_stats(c, &s);
    ck_assert_uint_le(s.entries, 4);
    ck_assert_uint_eq(s.negatives, 1);
    ck_assert_uint_eq(s.evictions, 99);
    misses = s.misses;
    for (size_t i = 0; i < UT_NROWS(keys); i++) {
        ck_assert_int_eq(kg_keycache_verify(c, &keys[i], NULL), KG_OK);
    }
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.misses, misses); /* all three still cached */

    /* Only keys: the oldest key goes, every key still verifies. */
    kg_keycache_free(&c);
    c = ut_cache(&fx, 2);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < UT_NROWS(keys); i++) {
            ck_assert_int_eq(kg_keycache_verify(c, &keys[i], NULL), KG_OK);
        }
    }
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.entries, 2);
    ck_assert_uint_gt(s.evictions, 0);
    kg_keycache_free(&c);
    ut_fx_close(&fx);
}
END_TEST

/*
 * The memo of a verified secret (a cheaper keyed hash the cache keeps once
 * a token has matched the stored BLAKE2b hash) never accepts more than the
 * hash would: after the right secret has been seen, wrong secrets for the
 * same id, another key's secret under this id, an expired grace secret and
 * a rotated-away secret all still fail; the right ones keep working.
 */
START_TEST(test_memo_accepts_nothing_more)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t a, b, swapped, bad, old, fresh;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    kg_clock_set_fake(UT_T0);
    ut_fx_open(&fx);
    ut_key(&fx.ctx, "a", KG_NONE, &a);
    ut_key(&fx.ctx, "b", KG_NONE, &b);
    c = ut_cache(&fx, 0);
    for (int i = 0; i < 3; i++) { /* a miss, then hits by the memo */
        ck_assert_int_eq(kg_keycache_verify(c, &a, NULL), KG_OK);
        ck_assert_int_eq(kg_keycache_verify(c, &b, NULL), KG_OK);
    }
    for (int i = 0; i < 500; i++) {
        bad = a;
        kg_token_random_base62(bad.secret, KG_TOKEN_SECRET_LEN);
        ck_assert_int_eq(kg_keycache_verify(c, &bad, NULL), KG_ERR_INVALID_KEY);
    }
    /* b's secret under a's id, and the other way round. */
    swapped = a;
    memcpy(swapped.secret, b.secret, sizeof(swapped.secret));
    ck_assert_int_eq(kg_keycache_verify(c, &swapped, NULL), KG_ERR_INVALID_KEY);
    swapped = b;
    memcpy(swapped.secret, a.secret, sizeof(swapped.secret));
    ck_assert_int_eq(kg_keycache_verify(c, &swapped, NULL), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_keycache_verify(c, &a, NULL), KG_OK);

    /* A grace secret seen (memo set) stops at the end of its grace. */
    old = a;
    ck_assert_int_eq(kg_keys_rotate(&fx.ctx, a.id, 10, NULL, token, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_token_parse(token, strlen(token), &fresh), KG_OK);
    ut_refresh(c);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(kg_keycache_verify(c, &old, NULL), KG_OK);
        ck_assert_int_eq(kg_keycache_verify(c, &fresh, NULL), KG_OK);
    }
    kg_clock_set_fake(UT_T0 + 10);
    ck_assert_int_eq(kg_keycache_verify(c, &old, NULL), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_keycache_verify(c, &fresh, NULL), KG_OK);

    /* Rotated away without grace: the memoized secret fails. */
    ck_assert_int_eq(kg_keys_rotate(&fx.ctx, b.id, 0, NULL, token, &diag),
                     KG_OK);
    ut_refresh(c);
    ck_assert_int_eq(kg_keycache_verify(c, &b, NULL), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_token_parse(token, strlen(token), &fresh), KG_OK);
    ck_assert_int_eq(kg_keycache_verify(c, &fresh, NULL), KG_OK);
    ck_assert_int_eq(kg_keycache_verify(c, &fresh, NULL), KG_OK);
    ck_assert_int_eq(kg_keycache_verify(c, &b, NULL), KG_ERR_INVALID_KEY);

    /* The memo is set on a hit too: the id cached by a wrong secret. */
    ut_key(&fx.ctx, "c", KG_NONE, &fresh);
    ut_refresh(c);
    bad = fresh;
    bad.secret[0] = bad.secret[0] == 'a' ? 'b' : 'a';
    ck_assert_int_eq(kg_keycache_verify(c, &bad, NULL), KG_ERR_INVALID_KEY);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(kg_keycache_verify(c, &fresh, NULL), KG_OK);
        ck_assert_int_eq(kg_keycache_verify(c, &bad, NULL), KG_ERR_INVALID_KEY);
    }
    kg_keycache_free(&c);
    ut_fx_close(&fx);
    kg_clock_set_fake(0);
}
END_TEST

/*
 * Many keys: the table grows past its first bucket arrays, every key stays
 * findable and verifies, a wrong secret for every id still fails (from the
 * cache, with the id cached), a flush empties it and it grows again; with
 * a bound below the key count, eviction in a grown table keeps answers
 * right.
 */
#define UT_MANY 2000

START_TEST(test_many_keys)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t *toks = calloc(UT_MANY, sizeof(*toks));
    kg_token_t bad;
    kg_token_t extra;
    kg_key_view_t v;
    kg_keycache_stats_t s;

    ck_assert_ptr_nonnull(toks);
    ut_fx_open(&fx);
    for (int i = 0; i < UT_MANY; i++) {
        ut_key(&fx.ctx, "many", KG_NONE, &toks[i]);
    }
    c = ut_cache(&fx, 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < UT_MANY; i++) {
            ck_assert_int_eq(kg_keycache_verify(c, &toks[i], &v), KG_OK);
            ck_assert_str_eq(v.id, toks[i].id);
            ut_wrong_secret(&toks[i], &bad);
            ck_assert_int_eq(kg_keycache_verify(c, &bad, &v),
                             KG_ERR_INVALID_KEY);
            ck_assert_str_eq(v.id, "");
        }
    }
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.misses, UT_MANY);
    ck_assert_uint_eq(s.hits, 3 * UT_MANY);
    ck_assert_uint_eq(s.entries, UT_MANY);
    ck_assert_uint_eq(s.negatives, 0);

    /* A new key flushes everything at the next refresh; all come back. */
    ut_key(&fx.ctx, "extra", KG_NONE, &extra);
    ut_refresh(c);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.entries, 0);
    ck_assert_uint_eq(s.flushes, 1);
    for (int i = 0; i < UT_MANY; i++) {
        ck_assert_int_eq(kg_keycache_verify(c, &toks[i], NULL), KG_OK);
    }
    ck_assert_int_eq(kg_keycache_verify(c, &extra, NULL), KG_OK);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.entries, UT_MANY + 1);
    kg_keycache_free(&c);

    /* Bounded below the key count: the oldest go, answers stay right. */
    c = ut_cache(&fx, 700);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < UT_MANY; i++) {
            ut_wrong_secret(&toks[i], &bad);
            ck_assert_int_eq(kg_keycache_verify(c, &toks[i], NULL), KG_OK);
            ck_assert_int_eq(kg_keycache_verify(c, &bad, NULL),
                             KG_ERR_INVALID_KEY);
        }
    }
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.entries, 700);
    ck_assert_uint_eq(s.evictions, 2 * UT_MANY - 700);
    kg_keycache_free(&c);
    free(toks);
    ut_fx_close(&fx);
}
END_TEST

/*
 * A key with more live secrets than the cache holds (many rotations inside
 * one grace period): the current secret and the newest grace secrets
 * verify from the cache, the oldest are ignored by it (documented).
 */
START_TEST(test_many_secrets_newest_kept)
{
    const int rotations = KG_KEYCACHE_MAX_SECRETS + 4;
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t toks[KG_KEYCACHE_MAX_SECRETS + 5];
    kg_key_t k;
    char token[KG_TOKEN_STRLEN];
    kg_diag_t diag = {{0}};

    kg_clock_set_fake(UT_T0);
    ut_fx_open(&fx);
    ut_key(&fx.ctx, "rotated", KG_NONE, &toks[0]);
    for (int i = 1; i <= rotations; i++) {
        /* One second apart, so every grace secret ends at its own time. */
        kg_clock_set_fake(UT_T0 + i);
        ck_assert_int_eq(
            kg_keys_rotate(&fx.ctx, toks[0].id, 3600, NULL, token, &diag),
            KG_OK);
        ck_assert_int_eq(kg_token_parse(token, strlen(token), &toks[i]), KG_OK);
    }
    c = ut_cache(&fx, 0);
    /* toks[rotations] is current; toks[i] ends at T0 + i + 1 + 3600. */
    for (int i = rotations; i >= 0; i--) {
        bool kept = i > rotations - KG_KEYCACHE_MAX_SECRETS;

        ck_assert_int_eq(kg_keys_verify(&fx.ctx, &toks[i], &k, NULL), KG_OK);
        kg_key_clear(&k);
        ck_assert_msg(kg_keycache_verify(c, &toks[i], NULL) ==
                          (kept ? KG_OK : KG_ERR_INVALID_KEY),
                      "secret %d of %d", i, rotations);
    }
    kg_keycache_free(&c);
    ut_fx_close(&fx);
    kg_clock_set_fake(0);
}
END_TEST

/* A store that cannot be read yields a store error, never a pass, and is
 * not cached. */
START_TEST(test_store_error_is_not_a_pass)
{
    ut_fx_t fx;
    kg_keycache_t *c;
    kg_token_t good, other;
    kg_key_view_t v;
    kg_keycache_stats_t s;
    kg_err_t rc;

    ut_fx_open(&fx);
    ut_key(&fx.ctx, "good", KG_NONE, &good);
    ut_key(&fx.ctx, "other", KG_NONE, &other);
    c = ut_cache(&fx, 0);
    ck_assert_int_eq(kg_keycache_verify(c, &good, NULL), KG_OK);
    /* Break the schema behind the cache's back. */
    ut_exec(fx.store, "DROP TABLE key_secrets");
    rc = kg_keycache_verify(c, &other, &v);
    ck_assert_msg(rc == KG_ERR_STORE, "got %s", kg_err_name(rc));
    ck_assert_int_eq(kg_err_http_status(rc), 503);
    ck_assert_str_eq(v.id, "");
    rc = kg_keycache_verify(c, &other, NULL);
    ck_assert_int_eq(rc, KG_ERR_STORE); /* not cached */
    ut_exec(fx.store, "DROP TABLE key_revision");
    ck_assert_int_eq(kg_keycache_refresh(c), KG_ERR_STORE);
    kg_keycache_stats(c, &s);
    ck_assert_uint_eq(s.store_errors, 2);
    ck_assert_uint_eq(s.refresh_errors, 1);
    ck_assert_uint_eq(s.entries, 1);
    kg_keycache_free(&c);
    ut_fx_close(&fx);
}
END_TEST

/* The cache cannot be made over a missing store. */
START_TEST(test_new_missing_store)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    unsigned char key[KG_KEYHASH_KEY_LEN] = {0};
    kg_keyhash_t *hk = NULL;
    kg_keycache_t *c = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(path, dir, "none.db");
    ck_assert_int_eq(kg_keyhash_from_bytes(key, &hk), KG_OK);
    ck_assert_int_eq(kg_keycache_new(path, 100, hk, 0, &c, &diag),
                     KG_ERR_STORE_MISSING);
    ck_assert_ptr_null(c);
    ck_assert_str_ne(diag.msg, "");
    kg_keyhash_free(&hk);
    ut_tmpdir_remove(dir);
}
END_TEST

/* Concurrency: 8 threads × 10,000 verifications while a refresh thread
 * runs every millisecond and a "CLI" changes an unrelated key every
 * 0.2 ms, so flushes happen under load. Every answer must stay right. */
#define UT_THREADS 8
#define UT_ITERS   10000
#define UT_UNKNOWN 16

typedef struct ut_shared {
    kg_keycache_t *c;
    kg_token_t good[4];
    kg_token_t bad[4];
    kg_token_t disabled;
    kg_token_t unknown[UT_UNKNOWN];
    atomic_int wrong;
    atomic_int running;
} ut_shared_t;

typedef struct ut_worker {
    ut_shared_t *sh;
    int n;
} ut_worker_t;

static void *ut_verify_loop(void *arg)
{
    ut_worker_t *wk = arg;
    ut_shared_t *sh = wk->sh;

    for (int i = 0; i < UT_ITERS; i++) {
        int j = (i + wk->n) % 4;
        kg_key_view_t v;
        kg_err_t rc;

        switch (i % 4) {
        case 0:
        case 1:
            rc = kg_keycache_verify(sh->c, &sh->good[j], &v);
            if (rc != KG_OK || strcmp(v.id, sh->good[j].id) != 0) {
                atomic_fetch_add(&sh->wrong, 1);
            }
            break;
        case 2:
            rc = kg_keycache_verify(sh->c, &sh->bad[j], NULL);
            if (rc != KG_ERR_INVALID_KEY) {
                atomic_fetch_add(&sh->wrong, 1);
            }
            break;
        default:
            rc = kg_keycache_verify(sh->c,
                                    (i / 4) % 2
                                        ? &sh->disabled
                                        : &sh->unknown[(i / 8) % UT_UNKNOWN],
                                    NULL);
            if (rc != KG_ERR_INVALID_KEY) {
                atomic_fetch_add(&sh->wrong, 1);
            }
            break;
        }
    }
    atomic_fetch_sub(&sh->running, 1);
    return NULL;
}

typedef struct ut_mutator {
    ut_shared_t *sh;
    kg_keys_ctx_t cli;
    char id[KG_TOKEN_ID_LEN + 1];
    int changes;
    kg_err_t failed;
} ut_mutator_t;

static void *ut_mutate_loop(void *arg)
{
    ut_mutator_t *m = arg;
    kg_key_spec_t spec;
    kg_diag_t diag;

    while (atomic_load(&m->sh->running) > 0) {
        struct timespec ts = {0, 200 * 1000L};
        kg_err_t rc;

        memset(&spec, 0, sizeof(spec));
        spec.set_rpm = true;
        spec.rpm = 1 + m->changes % 1000;
        rc = kg_keys_update(&m->cli, m->id, &spec, NULL, &diag);
        if (rc != KG_OK) {
            m->failed = rc;
            break;
        }
        m->changes++;
        nanosleep(&ts, NULL);
    }
    return NULL;
}

START_TEST(test_concurrent_verify_and_refresh)
{
    ut_fx_t fx;
    ut_shared_t *sh = calloc(1, sizeof(*sh));
    ut_worker_t wk[UT_THREADS];
    pthread_t th[UT_THREADS];
    pthread_t mt;
    ut_mutator_t m;
    kg_store_t *cli_store = NULL;
    kg_token_t victim;
    kg_keycache_stats_t s;
    kg_diag_t diag = {{0}};

    ck_assert_ptr_nonnull(sh);
    ut_fx_open(&fx);
    for (int i = 0; i < 4; i++) {
        ut_key(&fx.ctx, "good", KG_NONE, &sh->good[i]);
        ut_wrong_secret(&sh->good[i], &sh->bad[i]);
    }
    ut_key(&fx.ctx, "disabled", KG_NONE, &sh->disabled);
    ck_assert_int_eq(kg_keys_disable(&fx.ctx, sh->disabled.id, NULL, &diag),
                     KG_OK);
    ut_key(&fx.ctx, "victim", KG_NONE, &victim);
    for (int i = 0; i < UT_UNKNOWN; i++) {
        ck_assert_int_eq(kg_token_generate("kg", &sh->unknown[i]), KG_OK);
    }
    sh->c = ut_cache(&fx, 0);
    ck_assert_int_eq(kg_keycache_start(sh->c, 1), KG_OK);

    memset(&m, 0, sizeof(m));
    m.sh = sh;
    m.cli = ut_cli_ctx(&fx, &cli_store);
    memcpy(m.id, victim.id, sizeof(m.id));
    atomic_store(&sh->running, UT_THREADS);
    for (int i = 0; i < UT_THREADS; i++) {
        wk[i].sh = sh;
        wk[i].n = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, ut_verify_loop, &wk[i]),
                         0);
    }
    ck_assert_int_eq(pthread_create(&mt, NULL, ut_mutate_loop, &m), 0);
    for (int i = 0; i < UT_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    pthread_join(mt, NULL);

    ck_assert_int_eq(m.failed, KG_OK);
    ck_assert_int_eq(atomic_load(&sh->wrong), 0);
    kg_keycache_stats(sh->c, &s);
    ck_assert_uint_eq(s.hits + s.negative_hits + s.misses,
                      (uint64_t)UT_THREADS * UT_ITERS);
    ck_assert_uint_eq(s.store_errors, 0);
    ck_assert_uint_eq(s.refresh_errors, 0);
    ck_assert_int_gt(m.changes, 0);
    ck_assert_uint_gt(s.flushes, 0);
    kg_store_close(&cli_store);
    kg_keycache_free(&sh->c);
    free(sh);
    ut_fx_close(&fx);
}
END_TEST

static Suite *keycache_suite(void)
{
    Suite *s = suite_create("keycache");
    TCase *tc = tcase_create("core");
    TCase *tt = tcase_create("threads");

    tcase_add_test(tc, test_migration_v2_to_v3);
    tcase_add_test(tc, test_revision_triggers);
    tcase_add_test(tc, test_agrees_with_store);
    tcase_add_test(tc, test_hit_miss_negative);
    tcase_add_test(tc, test_stale_after);
    tcase_add_test(tc, test_seen_once_per_second);
    tcase_add_test(tc, test_refresh_sees_cli_changes);
    tcase_add_test(tc, test_miss_catches_up);
    tcase_add_test(tc, test_start_rejects_bad_interval);
    tcase_add_test(tc, test_usage_writer_keeps_revision);
    tcase_add_test(tc, test_bounded_table);
    tcase_add_test(tc, test_many_keys);
    tcase_add_test(tc, test_memo_accepts_nothing_more);
    tcase_add_test(tc, test_many_secrets_newest_kept);
    tcase_add_test(tc, test_store_error_is_not_a_pass);
    tcase_add_test(tc, test_new_missing_store);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tcase_add_test(tt, test_refresh_thread_within_a_second);
    tcase_add_test(tt, test_concurrent_verify_and_refresh);
    tcase_set_timeout(tt, 120);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    return ut_run(keycache_suite());
}
