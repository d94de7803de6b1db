/* Unit tests of the secret key file, sealing, and workspace credentials. */
#include <check.h>
#include <jansson.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/config.h"
#include "keygate/secretbox.h"
#include "keygate/store.h"
#include "keygate/store_credentials.h"
#include "store/sqlite/sqlite_store.h"
#include "keygate/workspaces.h"
#include "keygate/wscred.h"
#include "unit_util.h"

#define UT_ACTOR "test:unit"
/* Distinctive credentials: nothing else in a store looks like them. */
#define UT_SECRET  "sk-UnitTestSecret-0123456789-abcdefghijklmnop-WXYZ"
#define UT_SECRET2 "sk-ant-OtherUnitSecret-9876543210-qrstuvwxyz-9fQ2"
#define UT_T0      INT64_C(1790000000)

/* A store with the default workspace and "team-a", and a secret key. */
typedef struct ut_fx {
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_store_t *store;
    kg_secretbox_t *sb;
    char ws_default[KG_WORKSPACE_ID_LEN + 1];
    char ws_team[KG_WORKSPACE_ID_LEN + 1];
} ut_fx_t;

static const kg_store_opts_t ut_create = {KG_STORE_CREATE, 1000, 0, NULL};

static void ut_key_bytes(unsigned char key[KG_SECRETBOX_KEY_LEN], int seed)
{
    for (int i = 0; i < KG_SECRETBOX_KEY_LEN; i++) {
        key[i] = (unsigned char)(seed * 29 + i * 11);
    }
}

static void ut_fx_open(ut_fx_t *fx)
{
    unsigned char key[KG_SECRETBOX_KEY_LEN];
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};

    memset(fx, 0, sizeof(*fx));
    ut_tmpdir(fx->dir);
    ut_join(fx->path, fx->dir, "keygate.db");
    ck_assert_msg(kg_store_open(fx->path, &ut_create, &fx->store, &diag) ==
                      KG_OK,
                  "%s", diag.msg);
    ck_assert_int_eq(kg_workspace_ensure_default(fx->store, UT_ACTOR, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_get(fx->store, "default", &ws, &diag), KG_OK);
    memcpy(fx->ws_default, ws.id, sizeof(fx->ws_default));
    kg_workspace_clear(&ws);
    ck_assert_int_eq(kg_workspace_create(fx->store, UT_ACTOR, "team-a",
                                         KG_MODE_HYBRID, &ws, &diag),
                     KG_OK);
    memcpy(fx->ws_team, ws.id, sizeof(fx->ws_team));
    kg_workspace_clear(&ws);
    ut_key_bytes(key, 1);
    ck_assert_int_eq(kg_secretbox_from_bytes(key, &fx->sb), KG_OK);
}

static void ut_fx_close(ut_fx_t *fx)
{
    kg_secretbox_free(&fx->sb);
    ck_assert_ptr_null(fx->sb);
    kg_store_close(&fx->store);
    ut_tmpdir_remove(fx->dir);
}

/* The single integer a query answers. */
static int64_t ut_int(kg_store_t *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    ck_assert_msg(sqlite3_prepare_v2(kg_sqlite_db(s), sql, -1, &st, NULL) ==
                      SQLITE_OK,
                  "%s: %s", sql, sqlite3_errmsg(kg_sqlite_db(s)));
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int ut_exec(kg_store_t *s, const char *sql)
{
    return sqlite3_exec(kg_sqlite_db(s), sql, NULL, NULL, NULL);
}

static int64_t ut_rev(kg_store_t *s)
{
    return ut_int(s, "SELECT rev FROM key_revision");
}

static void ut_set(ut_fx_t *fx, const char *ws, const char *provider,
                   const char *secret)
{
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_wscred_set(fx->store, fx->sb, UT_ACTOR, ws, provider,
                                secret, strlen(secret), &diag) == KG_OK,
                  "%s", diag.msg);
}

/* Load and compare with want; the result is NUL-terminated. */
static void ut_expect_load(ut_fx_t *fx, const char *ws_id, const char *provider,
                           const char *want)
{
    kg_diag_t diag = {{0}};
    char *secret = NULL;
    size_t len = 0;

    ck_assert_msg(kg_wscred_load(fx->store, fx->sb, ws_id, provider, &secret,
                                 &len, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(secret, want, len);
    ck_assert_int_eq(secret[len], '\0');
    kg_wscred_secret_free(&secret, len);
    ck_assert_ptr_null(secret);
}

/* The load fails as corrupt, naming the row but no secret bytes. */
static void ut_expect_corrupt(kg_store_t *s, const kg_secretbox_t *sb,
                              const char *ws_id, const char *provider)
{
    static char untouched[] = "untouched";
    kg_diag_t diag = {{0}};
    char *secret = untouched;
    size_t len = 99;

    ck_assert_int_eq(
        kg_wscred_load(s, sb, ws_id, provider, &secret, &len, &diag),
        KG_ERR_STORE_CORRUPT);
    ck_assert_ptr_null(secret);
    ck_assert_uint_eq(len, 0);
    ck_assert_msg(strstr(diag.msg, ws_id) != NULL, "%s", diag.msg);
    ck_assert_msg(strstr(diag.msg, provider) != NULL, "%s", diag.msg);
    ck_assert_ptr_nonnull(strstr(diag.msg, "secret_key_file"));
    ck_assert_ptr_null(strstr(diag.msg, "sk-"));
}

/* Whether the n bytes of needle occur in the len bytes of hay. */
static bool ut_contains(const void *hay, size_t len, const void *needle,
                        size_t n)
{
    for (size_t i = 0; n <= len && i <= len - n; i++) {
        if (memcmp((const char *)hay + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- the secret key file --------------------------------------------- */

START_TEST(test_key_file_create)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_secretbox_t *sb = NULL;
    kg_diag_t diag = {{0}};
    char *before;
    char *after;
    size_t n1 = 0;
    size_t n2 = 0;

    ut_tmpdir(dir);
    ut_join(path, dir, "secret.key");
    umask(0); /* the mode can only come from keygate */
    ck_assert_int_eq(kg_secretbox_create_file(path, &diag), KG_OK);
    ck_assert_int_eq(ut_file_mode(path), 0600);
    before = ut_read_file(path, &n1);
    ck_assert_uint_eq(n1, KG_SECRETBOX_KEY_LEN);
    /* Never overwritten. */
    ck_assert_int_eq(kg_secretbox_create_file(path, &diag), KG_ERR_EXISTS);
    ck_assert_ptr_nonnull(strstr(diag.msg, "secret.key"));
    after = ut_read_file(path, &n2);
    ck_assert_uint_eq(n2, n1);
    ck_assert_mem_eq(before, after, n1);
    ck_assert_int_eq(kg_secretbox_load(path, &sb, &diag), KG_OK);
    ck_assert_ptr_nonnull(sb);
    kg_secretbox_free(&sb);
    ck_assert_ptr_null(sb);
    kg_secretbox_free(&sb); /* no-op */
    free(before);
    free(after);
    ut_tmpdir_remove(dir);
}
END_TEST

/* Loose modes, wrong sizes, symbolic links, a directory: all refused. */
START_TEST(test_key_file_refused)
{
    static const struct {
        mode_t mode;
        size_t size;
        const char *needle;
    } rows[] = {
        {0644, KG_SECRETBOX_KEY_LEN, "chmod 600"},
        {0640, KG_SECRETBOX_KEY_LEN, "mode 640"},
        {0604, KG_SECRETBOX_KEY_LEN, "group or others"},
        {0600, KG_SECRETBOX_KEY_LEN - 1, "32 bytes"},
        {0600, KG_SECRETBOX_KEY_LEN + 1, "32 bytes"},
        {0600, 0, "32 bytes"},
    };
    unsigned char bytes[KG_SECRETBOX_KEY_LEN + 1];
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    char link[UT_PATH_MAX];
    kg_secretbox_t *sb = NULL;
    kg_diag_t diag = {{0}};

    memset(bytes, 7, sizeof(bytes));
    ut_tmpdir(dir);
    ut_join(path, dir, "secret.key");
    for (size_t i = 0; i < UT_NROWS(rows); i++) {
        unlink(path);
        ut_write_file(path, bytes, rows[i].size, rows[i].mode);
        memset(&diag, 0, sizeof(diag));
        ck_assert_int_eq(kg_secretbox_load(path, &sb, &diag), KG_ERR_IO);
        ck_assert_ptr_null(sb);
        ck_assert_msg(strstr(diag.msg, rows[i].needle) != NULL, "row %zu: %s",
                      i, diag.msg);
    }
    /* A symbolic link to a good file is not followed. */
    unlink(path);
    ut_write_file(path, bytes, KG_SECRETBOX_KEY_LEN, 0600);
    ut_join(link, dir, "link.key");
    ck_assert_int_eq(symlink(path, link), 0);
    ck_assert_int_eq(kg_secretbox_load(link, &sb, &diag), KG_ERR_IO);
    ck_assert_ptr_null(sb);
    /* A missing file says what to run. */
    ut_join(path, dir, "missing.key");
    ck_assert_int_eq(kg_secretbox_load(path, &sb, &diag), KG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(diag.msg, "keygate init"));
    /* A directory. */
    ck_assert_int_eq(chmod(dir, 0700), 0);
    ck_assert_int_eq(kg_secretbox_load(dir, &sb, &diag), KG_ERR_IO);
    ck_assert_ptr_null(sb);
    ut_tmpdir_remove(dir);
}
END_TEST

/* ---- sealing ----------------------------------------------------------- */

START_TEST(test_seal_open)
{
    static const char plain[] = "the value";
    unsigned char key[KG_SECRETBOX_KEY_LEN];
    unsigned char nonce[KG_SECRETBOX_NONCE_LEN];
    unsigned char nonce2[KG_SECRETBOX_NONCE_LEN];
    unsigned char cipher[sizeof(plain) - 1 + KG_SECRETBOX_MAC_LEN];
    unsigned char cipher2[sizeof(cipher)];
    unsigned char out[sizeof(plain)];
    const size_t n = sizeof(plain) - 1;
    kg_secretbox_t *sb = NULL;
    kg_secretbox_t *other = NULL;

    ut_key_bytes(key, 1);
    ck_assert_int_eq(kg_secretbox_from_bytes(key, &sb), KG_OK);
    ut_key_bytes(key, 2);
    ck_assert_int_eq(kg_secretbox_from_bytes(key, &other), KG_OK);
    ck_assert_int_eq(kg_secretbox_seal(sb, "ctx-a", 5, plain, n, nonce, cipher),
                     KG_OK);
    ck_assert(!ut_contains(cipher, sizeof(cipher), plain, n));
    memset(out, 0, sizeof(out));
    ck_assert_int_eq(
        kg_secretbox_open(sb, "ctx-a", 5, nonce, cipher, sizeof(cipher), out),
        KG_OK);
    ck_assert_mem_eq(out, plain, n);

    /* A fresh nonce each time: the same value never seals the same. */
    ck_assert_int_eq(
        kg_secretbox_seal(sb, "ctx-a", 5, plain, n, nonce2, cipher2), KG_OK);
    ck_assert(memcmp(nonce, nonce2, sizeof(nonce)) != 0);
    ck_assert(memcmp(cipher, cipher2, sizeof(cipher)) != 0);

    /* Another context, another key, an altered byte: nothing opens, and
     * nothing is written to out. */
    memset(out, 0xAA, sizeof(out));
    ck_assert_int_eq(
        kg_secretbox_open(sb, "ctx-b", 5, nonce, cipher, sizeof(cipher), out),
        KG_ERR_STORE_CORRUPT);
    ck_assert_int_eq(
        kg_secretbox_open(sb, "ctx-a", 4, nonce, cipher, sizeof(cipher), out),
        KG_ERR_STORE_CORRUPT);
    ck_assert_int_eq(kg_secretbox_open(other, "ctx-a", 5, nonce, cipher,
                                       sizeof(cipher), out),
                     KG_ERR_STORE_CORRUPT);
    ck_assert_int_eq(
        kg_secretbox_open(sb, "ctx-a", 5, nonce2, cipher, sizeof(cipher), out),
        KG_ERR_STORE_CORRUPT);
    cipher[3] ^= 1;
    ck_assert_int_eq(
        kg_secretbox_open(sb, "ctx-a", 5, nonce, cipher, sizeof(cipher), out),
        KG_ERR_STORE_CORRUPT);
    cipher[3] ^= 1;
    ck_assert_int_eq(kg_secretbox_open(sb, "ctx-a", 5, nonce, cipher,
                                       KG_SECRETBOX_MAC_LEN, out),
                     KG_ERR_STORE_CORRUPT);
    for (size_t i = 0; i < sizeof(out); i++) {
        ck_assert_uint_eq(out[i], 0xAA);
    }
    /* Bounds. */
    ck_assert_int_eq(kg_secretbox_seal(sb, "x", 1, plain, 0, nonce, cipher),
                     KG_ERR_INVAL);
    ck_assert_int_eq(kg_secretbox_seal(sb, "x", KG_SECRETBOX_CONTEXT_MAX + 1,
                                       plain, n, nonce, cipher),
                     KG_ERR_INVAL);
    kg_secretbox_free(&sb);
    kg_secretbox_free(&other);
}
END_TEST

/* ---- credential values ------------------------------------------------- */

static const struct {
    const char *value;
    size_t len; /* 0: strlen(value) */
    kg_err_t want;
    const char *needle;
} ut_check_rows[] = {
    {"x", 0, KG_OK, NULL},
    {"sk-proj-abc_DEF.123~!@#$%^&*()[]{}<>?/|\\'\"`;:,=+", 0, KG_OK, NULL},
    {"", 0, KG_ERR_INVAL, "empty"},
    {"sk abc", 0, KG_ERR_INVAL, "without spaces"},
    {" sk-abc", 0, KG_ERR_INVAL, "without spaces"},
    {"sk-abc\n", 0, KG_ERR_INVAL, "one line"},
    {"sk-abc\r\nX-Evil: 1", 0, KG_ERR_INVAL, "one line"},
    {"sk\tabc", 0, KG_ERR_INVAL, "control"},
    {"sk-\x7f", 0, KG_ERR_INVAL, "printable ASCII"},
    {"sk-\xc3\xa9", 0, KG_ERR_INVAL, "printable ASCII"},
    {"sk-\0abc", 7, KG_ERR_INVAL, "printable ASCII"},
};

START_TEST(test_check)
{
    const char *v = ut_check_rows[_i].value;
    size_t len = ut_check_rows[_i].len ? ut_check_rows[_i].len : strlen(v);
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_wscred_check(v, len, &diag), ut_check_rows[_i].want);
    if (ut_check_rows[_i].needle != NULL) {
        ck_assert_msg(strstr(diag.msg, ut_check_rows[_i].needle) != NULL,
                      "row %d: %s", _i, diag.msg);
    }
}
END_TEST

START_TEST(test_check_length)
{
    char *big = malloc(KG_WSCRED_MAX + 2);
    kg_diag_t diag = {{0}};

    ck_assert_ptr_nonnull(big);
    memset(big, 'k', KG_WSCRED_MAX + 1);
    big[KG_WSCRED_MAX + 1] = '\0';
    ck_assert_int_eq(kg_wscred_check(big, KG_WSCRED_MAX, &diag), KG_OK);
    ck_assert_int_eq(kg_wscred_check(big, KG_WSCRED_MAX + 1, &diag),
                     KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "4096"));
    free(big);
}
END_TEST

START_TEST(test_last4)
{
    char out[KG_WSCRED_LAST4_LEN + 1];

    kg_wscred_last4("abcdefghijkl", 12, out);
    ck_assert_str_eq(out, "ijkl");
    kg_wscred_last4("abcdefghijk", 11, out); /* too short to show any */
    ck_assert_str_eq(out, "");
    kg_wscred_last4("x", 1, out);
    ck_assert_str_eq(out, "");
}
END_TEST

/* ---- the library --------------------------------------------------------- */

START_TEST(test_round_trip)
{
    kg_wscred_info_t *list = NULL;
    kg_wscred_info_t info;
    kg_diag_t diag = {{0}};
    int64_t count = 0;
    size_t n = 9;
    json_t *j;
    ut_fx_t fx;

    kg_clock_set_fake(UT_T0);
    ut_fx_open(&fx);
    ck_assert_int_eq(kg_wscred_list(fx.store, "team-a", &list, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(list);

    ut_set(&fx, "team-a", "openai", UT_SECRET); /* by name */
    ut_expect_load(&fx, fx.ws_team, "openai", UT_SECRET);
    ck_assert_int_eq(
        kg_wscred_get(fx.store, fx.ws_team, "openai", &info, &diag), KG_OK);
    ck_assert_str_eq(info.workspace_id, fx.ws_team);
    ck_assert_str_eq(info.provider, "openai");
    ck_assert_str_eq(info.last4, "WXYZ");
    ck_assert_int_eq(info.created_at, UT_T0);
    ck_assert_int_eq(info.updated_at, UT_T0);

    /* Replacing keeps created_at and moves updated_at. */
    kg_clock_set_fake(UT_T0 + 60);
    ut_set(&fx, fx.ws_team, "openai", UT_SECRET2); /* by id */
    ut_expect_load(&fx, fx.ws_team, "openai", UT_SECRET2);
    ut_set(&fx, "team-a", "anthropic", UT_SECRET);
    ut_set(&fx, "default", "openai", UT_SECRET);
    ck_assert_int_eq(kg_wscred_list(fx.store, "team-a", &list, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(list[0].provider, "anthropic"); /* by provider name */
    ck_assert_str_eq(list[1].provider, "openai");
    ck_assert_str_eq(list[1].last4, "9fQ2");
    ck_assert_int_eq(list[1].created_at, UT_T0);
    ck_assert_int_eq(list[1].updated_at, UT_T0 + 60);
    j = kg_wscred_to_json(&list[1]);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "provider")),
                     "openai");
    ck_assert_str_eq(json_string_value(json_object_get(j, "last4")), "9fQ2");
    ck_assert_ptr_nonnull(json_object_get(j, "createdAt"));
    ck_assert_ptr_nonnull(json_object_get(j, "updatedAt"));
    ck_assert_uint_eq(json_object_size(j), 4);
    json_decref(j);
    kg_wscred_list_free(&list);
    ck_assert_ptr_null(list);
    ck_assert_int_eq(kg_wscred_count(fx.store, &count, &diag), KG_OK);
    ck_assert_int_eq(count, 3);
    /* Each workspace has its own. */
    ut_expect_load(&fx, fx.ws_default, "openai", UT_SECRET);
    ut_expect_load(&fx, fx.ws_team, "anthropic", UT_SECRET);
    kg_clock_set_fake(0);
    ut_fx_close(&fx);
}
END_TEST

START_TEST(test_not_found_and_bad_input)
{
    static const char *const bad_providers[] = {"", "OpenAI", "open ai", "a/b",
                                                "x\n"};
    kg_wscred_info_t info;
    kg_wscred_info_t *list = NULL;
    kg_diag_t diag = {{0}};
    char *secret = NULL;
    size_t len = 0;
    size_t n = 0;
    int64_t rev;
    int64_t audits;
    ut_fx_t fx;

    ut_fx_open(&fx);
    ut_set(&fx, "default", "openai", UT_SECRET);
    rev = ut_rev(fx.store);
    audits = ut_int(fx.store, "SELECT count(*) FROM audit_events");

    ck_assert_int_eq(kg_wscred_load(fx.store, fx.sb, fx.ws_team, "openai",
                                    &secret, &len, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_ptr_null(secret);
    ck_assert_ptr_nonnull(strstr(diag.msg, "openai"));
    ck_assert_int_eq(kg_wscred_set(fx.store, fx.sb, UT_ACTOR, "nope", "openai",
                                   UT_SECRET, strlen(UT_SECRET), &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(diag.msg, "no workspace"));
    ck_assert_int_eq(kg_wscred_list(fx.store, "nope", &list, &n, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_wscred_get(fx.store, "team-a", "openai", &info, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(
        kg_wscred_delete(fx.store, UT_ACTOR, "team-a", "openai", NULL, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(diag.msg, "has no credential"));
    ck_assert_int_eq(
        kg_wscred_delete(fx.store, UT_ACTOR, "nope", "openai", NULL, &diag),
        KG_ERR_NOT_FOUND);
    for (size_t i = 0; i < UT_NROWS(bad_providers); i++) {
        ck_assert_int_eq(kg_wscred_set(fx.store, fx.sb, UT_ACTOR, "default",
                                       bad_providers[i], UT_SECRET,
                                       strlen(UT_SECRET), &diag),
                         KG_ERR_INVAL);
        ck_assert_ptr_nonnull(strstr(diag.msg, "provider name"));
    }
    ck_assert_int_eq(kg_wscred_set(fx.store, fx.sb, UT_ACTOR, "default",
                                   "openai", "", 0, &diag),
                     KG_ERR_INVAL);
    ck_assert_int_eq(kg_wscred_set(fx.store, fx.sb, UT_ACTOR, "default",
                                   "openai", "sk-a\nb", 6, &diag),
                     KG_ERR_INVAL);
    /* Nothing changed: the old value, no audit, no revision. */
    ut_expect_load(&fx, fx.ws_default, "openai", UT_SECRET);
    ck_assert_int_eq(ut_rev(fx.store), rev);
    ck_assert_int_eq(ut_int(fx.store, "SELECT count(*) FROM audit_events"),
                     audits);
    ck_assert_int_eq(
        ut_int(fx.store, "SELECT count(*) FROM workspace_credentials"), 1);
    ut_fx_close(&fx);
}
END_TEST

START_TEST(test_delete)
{
    kg_wscred_info_t gone;
    kg_diag_t diag = {{0}};
    char *secret = NULL;
    size_t len = 0;
    ut_fx_t fx;

    ut_fx_open(&fx);
    ut_set(&fx, "team-a", "openai", UT_SECRET);
    ut_set(&fx, "team-a", "anthropic", UT_SECRET2);
    ck_assert_int_eq(
        kg_wscred_delete(fx.store, UT_ACTOR, "team-a", "openai", &gone, &diag),
        KG_OK);
    ck_assert_str_eq(gone.provider, "openai");
    ck_assert_str_eq(gone.last4, "WXYZ");
    ck_assert_int_eq(kg_wscred_load(fx.store, fx.sb, fx.ws_team, "openai",
                                    &secret, &len, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_int_eq(
        kg_wscred_delete(fx.store, UT_ACTOR, fx.ws_team, "openai", NULL, &diag),
        KG_ERR_NOT_FOUND);
    ut_expect_load(&fx, fx.ws_team, "anthropic", UT_SECRET2);
    ut_fx_close(&fx);
}
END_TEST

/* Insert a copy of the sealed value of (from_ws, from_p) as (to_ws, to_p),
 * or overwrite that row with it. */
static void ut_copy_row(kg_store_t *s, const char *from_ws, const char *from_p,
                        const char *to_ws, const char *to_p)
{
    char *sql = sqlite3_mprintf(
        "INSERT INTO workspace_credentials SELECT %Q, %Q, nonce, ciphertext, "
        "last4, created_at, updated_at FROM workspace_credentials WHERE "
        "workspace_id = %Q AND provider = %Q ON CONFLICT DO UPDATE SET "
        "nonce = excluded.nonce, ciphertext = excluded.ciphertext",
        to_ws, to_p, from_ws, from_p);

    ck_assert_ptr_nonnull(sql);
    ck_assert_msg(ut_exec(s, sql) == SQLITE_OK, "%s",
                  sqlite3_errmsg(kg_sqlite_db(s)));
    sqlite3_free(sql);
}

/* A sealed value moved to another workspace or provider does not open. */
START_TEST(test_binding)
{
    ut_fx_t fx;

    ut_fx_open(&fx);
    ut_set(&fx, "default", "openai", UT_SECRET);
    ut_set(&fx, "team-a", "anthropic", UT_SECRET2);
    /* Same provider, other workspace (a new row). */
    ut_copy_row(fx.store, fx.ws_default, "openai", fx.ws_team, "openai");
    ut_expect_corrupt(fx.store, fx.sb, fx.ws_team, "openai");
    /* Same workspace, other provider (a new row). */
    ut_copy_row(fx.store, fx.ws_default, "openai", fx.ws_default, "azure");
    ut_expect_corrupt(fx.store, fx.sb, fx.ws_default, "azure");
    /* Over an existing row of another workspace and provider. */
    ut_copy_row(fx.store, fx.ws_default, "openai", fx.ws_team, "anthropic");
    ut_expect_corrupt(fx.store, fx.sb, fx.ws_team, "anthropic");
    /* The original still opens; an altered one does not. */
    ut_expect_load(&fx, fx.ws_default, "openai", UT_SECRET);
    ck_assert_int_eq(ut_exec(fx.store, "UPDATE workspace_credentials SET "
                                       "nonce = zeroblob(24) WHERE provider = "
                                       "'openai' AND workspace_id = "
                                       "(SELECT id FROM workspaces WHERE "
                                       "name = 'default')"),
                     SQLITE_OK);
    ut_expect_corrupt(fx.store, fx.sb, fx.ws_default, "openai");
    ut_fx_close(&fx);
}
END_TEST

/* The store keeps and hands back sealed bytes as they are. */
START_TEST(test_store_sealed_rows)
{
    kg_store_credential_t row;
    kg_store_credential_t *list = NULL;
    kg_store_sealed_t *sealed = calloc(1, sizeof(*sealed));
    kg_store_sealed_t *got = calloc(1, sizeof(*got));
    kg_diag_t diag = {{0}};
    size_t n = 0;
    int64_t count = -1;
    int64_t rev;
    ut_fx_t fx;

    ck_assert_ptr_nonnull(sealed);
    ck_assert_ptr_nonnull(got);
    ut_fx_open(&fx);
    memset(&row, 0, sizeof(row));
    memcpy(row.workspace_id, fx.ws_team, sizeof(row.workspace_id));
    snprintf(row.provider, sizeof(row.provider), "%s", "openai");
    snprintf(row.last4, sizeof(row.last4), "%s", "WXYZ");
    row.updated_at = UT_T0;
    sealed->nonce_len = KG_SECRETBOX_NONCE_LEN;
    memset(sealed->nonce, 0x5a, sizeof(sealed->nonce));
    sealed->cipher_len = 40;
    memset(sealed->cipher, 0xa5, sealed->cipher_len);
    rev = ut_rev(fx.store);
    ck_assert_int_eq(kg_store_credential_put(fx.store, &row, sealed, &diag),
                     KG_OK);
    ck_assert_int_gt(ut_rev(fx.store), rev);
    /* A replacement keeps created_at. */
    row.updated_at = UT_T0 + 5;
    sealed->cipher_len = 41;
    ck_assert_int_eq(kg_store_credential_put(fx.store, &row, sealed, &diag),
                     KG_OK);
    ck_assert_int_eq(
        kg_store_credential_sealed(fx.store, fx.ws_team, "openai", got, &diag),
        KG_OK);
    ck_assert_uint_eq(got->nonce_len, KG_SECRETBOX_NONCE_LEN);
    ck_assert_mem_eq(got->nonce, sealed->nonce, KG_SECRETBOX_NONCE_LEN);
    ck_assert_uint_eq(got->cipher_len, 41);
    ck_assert_mem_eq(got->cipher, sealed->cipher, 41);
    memset(&row, 0, sizeof(row));
    ck_assert_int_eq(
        kg_store_credential_get(fx.store, fx.ws_team, "openai", &row, &diag),
        KG_OK);
    ck_assert_str_eq(row.last4, "WXYZ");
    ck_assert_int_eq(row.created_at, UT_T0);
    ck_assert_int_eq(row.updated_at, UT_T0 + 5);
    ck_assert_int_eq(
        kg_store_credential_list(fx.store, fx.ws_team, &list, &n, &diag),
        KG_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(list[0].provider, "openai");
    free(list);
    ck_assert_int_eq(
        kg_store_credential_list(fx.store, fx.ws_default, &list, &n, &diag),
        KG_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(list);
    ck_assert_int_eq(kg_store_credential_count(fx.store, &count, &diag), KG_OK);
    ck_assert_int_eq(count, 1);

    /* A ciphertext longer than any credential is reported, not copied. */
    ck_assert_int_eq(ut_exec(fx.store, "UPDATE workspace_credentials SET "
                                       "ciphertext = zeroblob(5000)"),
                     SQLITE_OK);
    ck_assert_int_eq(
        kg_store_credential_sealed(fx.store, fx.ws_team, "openai", got, &diag),
        KG_OK);
    ck_assert_uint_eq(got->cipher_len, 5000);
    ut_expect_corrupt(fx.store, fx.sb, fx.ws_team, "openai");

    ck_assert_int_eq(
        kg_store_credential_delete(fx.store, fx.ws_team, "openai", &diag),
        KG_OK);
    ck_assert_int_eq(
        kg_store_credential_delete(fx.store, fx.ws_team, "openai", &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(
        kg_store_credential_sealed(fx.store, fx.ws_team, "openai", got, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(
        kg_store_credential_get(fx.store, fx.ws_team, "openai", &row, &diag),
        KG_ERR_NOT_FOUND);
    free(sealed);
    free(got);
    ut_fx_close(&fx);
}
END_TEST

/* Another secret key file cannot open what the first one sealed. */
START_TEST(test_wrong_key_file)
{
    char k1[UT_PATH_MAX];
    char k2[UT_PATH_MAX];
    kg_secretbox_t *sb1 = NULL;
    kg_secretbox_t *sb2 = NULL;
    kg_diag_t diag = {{0}};
    ut_fx_t fx;

    ut_fx_open(&fx);
    ut_join(k1, fx.dir, "secret.key");
    ut_join(k2, fx.dir, "other.key");
    ck_assert_int_eq(kg_secretbox_create_file(k1, &diag), KG_OK);
    ck_assert_int_eq(kg_secretbox_create_file(k2, &diag), KG_OK);
    ck_assert_int_eq(kg_secretbox_load(k1, &sb1, &diag), KG_OK);
    ck_assert_int_eq(kg_secretbox_load(k2, &sb2, &diag), KG_OK);
    ck_assert_int_eq(kg_wscred_set(fx.store, sb1, UT_ACTOR, "default", "openai",
                                   UT_SECRET, strlen(UT_SECRET), &diag),
                     KG_OK);
    ut_expect_corrupt(fx.store, sb2, fx.ws_default, "openai");
    ut_expect_corrupt(fx.store, fx.sb, fx.ws_default, "openai");
    {
        char *secret = NULL;
        size_t len = 0;

        ck_assert_int_eq(kg_wscred_load(fx.store, sb1, fx.ws_default, "openai",
                                        &secret, &len, &diag),
                         KG_OK);
        ck_assert_str_eq(secret, UT_SECRET);
        kg_wscred_secret_free(&secret, len);
    }
    kg_secretbox_free(&sb1);
    kg_secretbox_free(&sb2);
    ut_fx_close(&fx);
}
END_TEST

/* Whether the file holds the bytes s (a missing file holds nothing). */
static bool ut_file_has(const char *path, const char *s)
{
    size_t len = 0;
    char *data = ut_read_file(path, &len);
    bool found = data != NULL && ut_contains(data, len, s, strlen(s));

    free(data);
    return found;
}

static void ut_assert_files_clean(const ut_fx_t *fx, const char *s)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};

    for (size_t i = 0; i < UT_NROWS(suffixes); i++) {
        char path[UT_PATH_MAX];

        snprintf(path, sizeof(path), "%s%s", fx->path, suffixes[i]);
        ck_assert_msg(!ut_file_has(path, s), "found in %s", path);
    }
}

/* No store file (database, WAL, SHM) holds a credential, even in part. */
START_TEST(test_no_plaintext_in_store_files)
{
    /* Long enough to be unique, short enough to fit any one page. */
    static const char *const parts[] = {UT_SECRET, "UnitTestSecret-0123",
                                        UT_SECRET2, "OtherUnitSecret-98"};
    kg_diag_t diag = {{0}};
    ut_fx_t fx;

    ut_fx_open(&fx);
    ut_set(&fx, "default", "openai", UT_SECRET);
    ut_set(&fx, "default", "openai", UT_SECRET2); /* replaced */
    ut_set(&fx, "team-a", "openai", UT_SECRET);
    ck_assert_int_eq(
        kg_wscred_delete(fx.store, UT_ACTOR, "team-a", "openai", NULL, &diag),
        KG_OK);
    ut_set(&fx, "team-a", "anthropic", UT_SECRET);
    for (size_t i = 0; i < UT_NROWS(parts); i++) {
        ut_assert_files_clean(&fx, parts[i]); /* the WAL is live */
    }
    kg_store_close(&fx.store); /* checkpoints into the database file */
    for (size_t i = 0; i < UT_NROWS(parts); i++) {
        ut_assert_files_clean(&fx, parts[i]);
    }
    ck_assert_msg(kg_store_open(fx.path, &ut_create, &fx.store, &diag) == KG_OK,
                  "%s", diag.msg);
    ut_expect_load(&fx, fx.ws_team, "anthropic", UT_SECRET);
    ut_fx_close(&fx);
}
END_TEST

/* The audit trail has each change with the provider and last4, no more. */
START_TEST(test_audit)
{
    kg_audit_event_t *events = NULL;
    kg_diag_t diag = {{0}};
    size_t n = 0;
    ut_fx_t fx;

    ut_fx_open(&fx);
    ut_set(&fx, "team-a", "openai", UT_SECRET);
    ut_set(&fx, "team-a", "openai", "short-cred"); /* no last4 */
    ck_assert_int_eq(kg_wscred_delete(fx.store, "cli:alice", "team-a", "openai",
                                      NULL, &diag),
                     KG_OK);
    {
        const kg_query_param_t params[] = {{"object", fx.ws_team},
                                           {"limit", "10"}};
        kg_audit_query_t q;
        char next[KG_QUERY_CURSOR_STRLEN];

        ck_assert_int_eq(kg_audit_query_parse(params, 2, 0, &q, &diag), KG_OK);
        ck_assert_int_eq(kg_audit_page(fx.store, &q, &events, &n, next, &diag),
                         KG_OK);
    }
    ck_assert_uint_ge(n, 4); /* and the workspace's creation */
    /* Newest first. */
    ck_assert_str_eq(events[0].action, "credential-delete");
    ck_assert_str_eq(events[0].actor, "cli:alice");
    ck_assert_str_eq(events[0].object_type, "workspace");
    ck_assert_str_eq(events[0].object_id, fx.ws_team);
    ck_assert_str_eq(events[0].detail, "{\"last4\":null,\"provider\":"
                                       "\"openai\"}");
    ck_assert_str_eq(events[1].action, "credential-set");
    ck_assert_str_eq(events[1].detail, "{\"last4\":null,\"provider\":"
                                       "\"openai\"}");
    ck_assert_str_eq(events[2].action, "credential-set");
    ck_assert_str_eq(events[2].actor, UT_ACTOR);
    ck_assert_str_eq(events[2].detail, "{\"last4\":\"WXYZ\",\"provider\":"
                                       "\"openai\"}");
    kg_audit_events_free(&events, n);
    ck_assert_int_eq(ut_int(fx.store, "SELECT count(*) FROM audit_events "
                                      "WHERE instr(detail, 'sk-') > 0 OR "
                                      "instr(detail, 'short-cred') > 0"),
                     0);
    ut_fx_close(&fx);
}
END_TEST

/* A workspace that goes takes its credentials with it. */
START_TEST(test_cascade)
{
    ut_fx_t fx;

    ut_fx_open(&fx);
    ut_set(&fx, "team-a", "openai", UT_SECRET);
    ut_set(&fx, "default", "openai", UT_SECRET);
    ck_assert_int_eq(ut_exec(fx.store, "DELETE FROM workspaces WHERE name = "
                                       "'team-a'"),
                     SQLITE_OK);
    ck_assert_int_eq(
        ut_int(fx.store, "SELECT count(*) FROM workspace_credentials"), 1);
    /* The table refuses rows of no workspace and malformed seals. */
    ck_assert_int_ne(ut_exec(fx.store,
                             "INSERT INTO workspace_credentials VALUES "
                             "('nowhere', 'openai', zeroblob(24), "
                             "zeroblob(40), '', 1, 1)"),
                     SQLITE_OK);
    ck_assert_int_ne(ut_exec(fx.store,
                             "UPDATE workspace_credentials SET nonce = "
                             "zeroblob(12)"),
                     SQLITE_OK);
    ck_assert_int_ne(ut_exec(fx.store,
                             "UPDATE workspace_credentials SET ciphertext = "
                             "zeroblob(16)"),
                     SQLITE_OK);
    ut_expect_load(&fx, fx.ws_default, "openai", UT_SECRET);
    ut_fx_close(&fx);
}
END_TEST

/* ---- the schema: version 3 → 4 ------------------------------------------ */

START_TEST(test_migration_v3_to_v4)
{
    kg_store_opts_t v3 = {KG_STORE_CREATE, 1000, 3, NULL};
    /* Exactly migration 3 → 4, whatever newer ones exist. */
    kg_store_opts_t now = {0, 1000, 4, NULL};
    kg_diag_t diag = {{0}};
    int64_t rev;
    ut_fx_t fx;
    kg_workspace_t ws;
    kg_store_t *s = NULL;

    memset(&fx, 0, sizeof(fx));
    ut_tmpdir(fx.dir);
    ut_join(fx.path, fx.dir, "old.db");
    ck_assert_int_ge(KG_STORE_SCHEMA_VERSION, 4);
    ck_assert_msg(kg_store_open(fx.path, &v3, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(s), 3);
    ck_assert_int_eq(kg_workspace_create(s, UT_ACTOR, KG_WORKSPACE_DEFAULT,
                                         KG_MODE_API_KEYS, NULL, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_workspace_get(s, "default", &ws, &diag), KG_OK);
    memcpy(fx.ws_default, ws.id, sizeof(fx.ws_default));
    kg_workspace_clear(&ws);
    {
        char *sql = sqlite3_mprintf(
            "INSERT INTO api_keys (id, workspace_id, name, prefix, last4, "
            "created_at, updated_at, usage, usage_limit) VALUES "
            "('AAAAAAAAAAAA', %Q, 'old-key', 'kg', 'abcd', 1, 1, 250, 1000)",
            fx.ws_default);

        ck_assert_int_eq(ut_exec(s, sql), SQLITE_OK);
        sqlite3_free(sql);
    }
    ck_assert_int_ne(ut_exec(s, "SELECT reserved FROM api_keys"), SQLITE_OK);
    ck_assert_int_ne(ut_exec(s, "SELECT 1 FROM workspace_credentials"),
                     SQLITE_OK);
    kg_store_close(&s);

    ck_assert_msg(kg_store_open(fx.path, &now, &fx.store, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(fx.store), 4);
    ck_assert_int_eq(ut_int(fx.store, "PRAGMA user_version"), 4);
    /* The data stayed, and reserved is there with 0. */
    ck_assert_int_eq(ut_int(fx.store, "SELECT count(*) FROM api_keys WHERE "
                                      "id = 'AAAAAAAAAAAA' AND name = "
                                      "'old-key' AND usage = 250 AND "
                                      "usage_limit = 1000 AND status = "
                                      "'active'"),
                     1);
    ck_assert_int_eq(ut_int(fx.store, "SELECT reserved FROM api_keys"), 0);
    ck_assert_int_eq(ut_int(fx.store, "SELECT count(*) FROM workspaces"), 1);
    ck_assert_int_eq(ut_int(fx.store, "SELECT count(*) FROM audit_events"), 1);

    /* The daemon's snapshots of reserved do not flush key caches ... */
    rev = ut_rev(fx.store);
    ck_assert_int_eq(ut_exec(fx.store, "UPDATE api_keys SET reserved = 700"),
                     SQLITE_OK);
    ck_assert_int_eq(ut_exec(fx.store, "UPDATE api_keys SET reserved = 0, "
                                       "usage = usage + 5, updated_at = 9"),
                     SQLITE_OK);
    ck_assert_int_eq(ut_rev(fx.store), rev);
    ck_assert_int_eq(ut_int(fx.store, "SELECT usage FROM api_keys"), 255);
    /* ... while policy changes still do ... */
    ck_assert_int_eq(ut_exec(fx.store, "UPDATE api_keys SET reserved = 1, "
                                       "status = 'inactive'"),
                     SQLITE_OK);
    ck_assert_int_gt(ut_rev(fx.store), rev);
    /* ... and so does every credential change: insert, update, delete. */
    {
        unsigned char key[KG_SECRETBOX_KEY_LEN];
        int64_t before;

        ut_key_bytes(key, 3);
        ck_assert_int_eq(kg_secretbox_from_bytes(key, &fx.sb), KG_OK);
        before = ut_rev(fx.store);
        ut_set(&fx, "default", "openai", UT_SECRET);
        ck_assert_int_gt(ut_rev(fx.store), before);
        before = ut_rev(fx.store);
        ut_set(&fx, "default", "openai", UT_SECRET2);
        ck_assert_int_gt(ut_rev(fx.store), before);
        before = ut_rev(fx.store);
        ck_assert_int_eq(kg_wscred_delete(fx.store, UT_ACTOR, "default",
                                          "openai", NULL, &diag),
                         KG_OK);
        ck_assert_int_gt(ut_rev(fx.store), before);
    }
    kg_store_close(&fx.store);
    /* Opening again changes nothing. */
    ck_assert_msg(kg_store_open(fx.path, &now, &fx.store, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_schema_version(fx.store), 4);
    ut_fx_close(&fx);
}
END_TEST

/* ---- [security] secret_key_file ------------------------------------------ */

static kg_err_t ut_config(const char *dir, const char *text, kg_config_t **cfg,
                          kg_diag_t *diag)
{
    char path[UT_PATH_MAX];

    ut_join(path, dir, "keygate.ini");
    ut_write_text(path, text);
    return kg_config_load(path, cfg, diag);
}

START_TEST(test_config_secret_key_file)
{
    char dir[UT_PATH_MAX];
    kg_config_t *cfg = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_config_load(NULL, &cfg, &diag), KG_OK);
    ck_assert_str_eq(cfg->secret_key_file, "/var/lib/keygate/secret.key");
    kg_config_free(&cfg);

    ut_tmpdir(dir);
    /* Unset: next to the hash key. */
    ck_assert_msg(ut_config(dir, "[security]\nhash_key_file = /srv/kg/h.key\n",
                            &cfg, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_str_eq(cfg->secret_key_file, "/srv/kg/secret.key");
    kg_config_free(&cfg);
    ck_assert_int_eq(
        ut_config(dir, "[security]\nhash_key_file = /h.key\n", &cfg, &diag),
        KG_OK);
    ck_assert_str_eq(cfg->secret_key_file, "/secret.key");
    kg_config_free(&cfg);
    /* Given: as given, relative to the file's directory. */
    ck_assert_int_eq(ut_config(dir,
                               "[security]\nhash_key_file = /srv/kg/h.key\n"
                               "secret_key_file = /etc/kg/s.key\n",
                               &cfg, &diag),
                     KG_OK);
    ck_assert_str_eq(cfg->secret_key_file, "/etc/kg/s.key");
    kg_config_free(&cfg);
    ck_assert_int_eq(
        ut_config(dir, "[security]\nsecret_key_file = s.key\n", &cfg, &diag),
        KG_OK);
    ck_assert_str_eq(cfg->hash_key_file, "/var/lib/keygate/hash.key");
    ck_assert_ptr_nonnull(strstr(cfg->secret_key_file, dir));
    kg_config_free(&cfg);
    /* Never the hash key file, nor empty. */
    ck_assert_int_eq(ut_config(dir,
                               "[security]\nhash_key_file = /k/x.key\n"
                               "secret_key_file = /k/x.key\n",
                               &cfg, &diag),
                     KG_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(strstr(diag.msg, "secret_key_file"));
    ck_assert_int_eq(
        ut_config(dir, "[security]\nsecret_key_file =\n", &cfg, &diag),
        KG_ERR_CONFIG);
    ut_tmpdir_remove(dir);
}
END_TEST

static Suite *wscred_suite(void)
{
    Suite *s = suite_create("wscred");
    TCase *tc = tcase_create("secretbox");

    tcase_add_test(tc, test_key_file_create);
    tcase_add_test(tc, test_key_file_refused);
    tcase_add_test(tc, test_seal_open);
    suite_add_tcase(s, tc);

    tc = tcase_create("values");
    tcase_add_loop_test(tc, test_check, 0, (int)UT_NROWS(ut_check_rows));
    tcase_add_test(tc, test_check_length);
    tcase_add_test(tc, test_last4);
    suite_add_tcase(s, tc);

    tc = tcase_create("store");
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_not_found_and_bad_input);
    tcase_add_test(tc, test_delete);
    tcase_add_test(tc, test_binding);
    tcase_add_test(tc, test_store_sealed_rows);
    tcase_add_test(tc, test_wrong_key_file);
    tcase_add_test(tc, test_no_plaintext_in_store_files);
    tcase_add_test(tc, test_audit);
    tcase_add_test(tc, test_cascade);
    tcase_add_test(tc, test_migration_v3_to_v4);
    tcase_add_test(tc, test_config_secret_key_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(wscred_suite());
}
