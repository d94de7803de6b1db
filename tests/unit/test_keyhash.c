/* Unit tests of the server hash key file and keyed hashing of secrets. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keygate/keyhash.h"
#include "keygate/token.h"
#include "unit_util.h"

#define UT_ID      "AbCdEf012345"
#define UT_ID2     "AbCdEf012346"
#define UT_SECRET  "0123456789abcdefghijABCDEFGHIJxy"
#define UT_SECRET2 "0123456789abcdefghijABCDEFGHIJxz"

static void ut_key_bytes(unsigned char key[KG_KEYHASH_KEY_LEN], int seed)
{
    for (int i = 0; i < KG_KEYHASH_KEY_LEN; i++) {
        key[i] = (unsigned char)(seed * 31 + i * 7);
    }
}

START_TEST(test_create_file)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_diag_t diag = {{0}};
    size_t len = 0;
    char *data;

    ut_tmpdir(dir);
    ut_join(path, dir, "hash.key");
    /* With umask 0 the mode can only come from keygate itself. */
    umask(0);
    ck_assert_int_eq(kg_keyhash_create_file(path, &diag), KG_OK);
    ck_assert_int_eq(ut_file_mode(path), 0600);
    data = ut_read_file(path, &len);
    ck_assert_ptr_nonnull(data);
    ck_assert_uint_eq(len, KG_KEYHASH_KEY_LEN);
    free(data);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_create_refuses_overwrite)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_diag_t diag = {{0}};
    char *before;
    char *after;
    size_t n1 = 0;
    size_t n2 = 0;

    ut_tmpdir(dir);
    ut_join(path, dir, "hash.key");
    ck_assert_int_eq(kg_keyhash_create_file(path, &diag), KG_OK);
    before = ut_read_file(path, &n1);
    ck_assert_int_eq(kg_keyhash_create_file(path, &diag), KG_ERR_EXISTS);
    ck_assert_ptr_nonnull(strstr(diag.msg, "hash.key"));
    after = ut_read_file(path, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_int_eq(memcmp(before, after, n1), 0);
    free(before);
    free(after);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_create_in_missing_dir)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(path, dir, "nope/hash.key");
    ck_assert_int_eq(kg_keyhash_create_file(path, &diag), KG_ERR_IO);
    ck_assert_ptr_nonnull(strstr(diag.msg, "nope/hash.key"));
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_load_created)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    kg_diag_t diag = {{0}};
    kg_keyhash_t *hk = NULL;

    ut_tmpdir(dir);
    ut_join(path, dir, "hash.key");
    ck_assert_int_eq(kg_keyhash_create_file(path, &diag), KG_OK);
    ck_assert_int_eq(kg_keyhash_load(path, &hk, &diag), KG_OK);
    ck_assert_ptr_nonnull(hk);
    kg_keyhash_free(&hk);
    ck_assert_ptr_null(hk);
    kg_keyhash_free(&hk); /* twice is harmless */
    ut_tmpdir_remove(dir);
}
END_TEST

/* Files load refuses: mode, size, kind. */
typedef struct ut_load_row {
    const char *what;
    size_t size;
    mode_t mode;
    const char *diag_has;
} ut_load_row_t;

static const ut_load_row_t ut_load_rows[] = {
    {"mode 0644", 32, 0644, "chmod 600"},
    {"mode 0640", 32, 0640, "group or others"},
    {"mode 0604", 32, 0604, "group or others"},
    {"mode 0660", 32, 0660, "group or others"},
    {"31 bytes", 31, 0600, "32"},
    {"33 bytes", 33, 0600, "32"},
    {"empty", 0, 0600, "32"},
};

START_TEST(test_load_refuses)
{
    const ut_load_row_t *row = &ut_load_rows[_i];
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    unsigned char bytes[64];
    kg_diag_t diag = {{0}};
    kg_keyhash_t *hk = (kg_keyhash_t *)&diag; /* must be reset to NULL */

    memset(bytes, 7, sizeof(bytes));
    ut_tmpdir(dir);
    ut_join(path, dir, "hash.key");
    ut_write_file(path, bytes, row->size, row->mode);
    ck_assert_msg(kg_keyhash_load(path, &hk, &diag) == KG_ERR_IO, "%s",
                  row->what);
    ck_assert_ptr_null(hk);
    ck_assert_msg(strstr(diag.msg, row->diag_has) != NULL, "%s: '%s'",
                  row->what, diag.msg);
    ck_assert_ptr_nonnull(strstr(diag.msg, path));
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_load_missing_and_symlink)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    char lnk[UT_PATH_MAX];
    kg_diag_t diag = {{0}};
    kg_keyhash_t *hk = NULL;

    ut_tmpdir(dir);
    ut_join(path, dir, "hash.key");
    ck_assert_int_eq(kg_keyhash_load(path, &hk, &diag), KG_ERR_IO);
    ck_assert_ptr_null(hk);
    ck_assert_ptr_nonnull(strstr(diag.msg, "keygate init"));
    ck_assert_int_eq(kg_keyhash_create_file(path, &diag), KG_OK);
    ut_join(lnk, dir, "link.key");
    ck_assert_int_eq(symlink(path, lnk), 0);
    ck_assert_int_eq(kg_keyhash_load(lnk, &hk, &diag), KG_ERR_IO);
    ck_assert_ptr_null(hk);
    /* A directory is not a key file either. */
    ck_assert_int_eq(chmod(dir, 0700), 0);
    ck_assert_int_eq(kg_keyhash_load(dir, &hk, &diag), KG_ERR_IO);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_load_equals_from_bytes)
{
    char dir[UT_PATH_MAX];
    char path[UT_PATH_MAX];
    unsigned char key[KG_KEYHASH_KEY_LEN];
    unsigned char h1[KG_KEYHASH_LEN];
    unsigned char h2[KG_KEYHASH_LEN];
    kg_diag_t diag = {{0}};
    kg_keyhash_t *loaded = NULL;
    kg_keyhash_t *raw = NULL;

    ut_key_bytes(key, 1);
    ut_tmpdir(dir);
    ut_join(path, dir, "hash.key");
    ut_write_file(path, key, sizeof(key), 0600);
    ck_assert_int_eq(kg_keyhash_load(path, &loaded, &diag), KG_OK);
    ck_assert_int_eq(kg_keyhash_from_bytes(key, &raw), KG_OK);
    kg_keyhash_compute(loaded, UT_ID, UT_SECRET, h1);
    kg_keyhash_compute(raw, UT_ID, UT_SECRET, h2);
    ck_assert(kg_keyhash_equal(h1, h2));
    kg_keyhash_free(&loaded);
    kg_keyhash_free(&raw);
    ut_tmpdir_remove(dir);
}
END_TEST

START_TEST(test_compute)
{
    unsigned char k1[KG_KEYHASH_KEY_LEN];
    unsigned char k2[KG_KEYHASH_KEY_LEN];
    unsigned char base[KG_KEYHASH_LEN];
    unsigned char again[KG_KEYHASH_LEN];
    unsigned char other[KG_KEYHASH_LEN];
    kg_keyhash_t *a = NULL;
    kg_keyhash_t *b = NULL;
    char longer[64];

    ut_key_bytes(k1, 1);
    ut_key_bytes(k2, 2);
    ck_assert_int_eq(kg_keyhash_from_bytes(k1, &a), KG_OK);
    ck_assert_int_eq(kg_keyhash_from_bytes(k2, &b), KG_OK);
    kg_keyhash_compute(a, UT_ID, UT_SECRET, base);
    kg_keyhash_compute(a, UT_ID, UT_SECRET, again);
    ck_assert(kg_keyhash_equal(base, again));
    ck_assert_int_eq(memcmp(base, again, KG_KEYHASH_LEN), 0);

    kg_keyhash_compute(a, UT_ID2, UT_SECRET, other);
    ck_assert(!kg_keyhash_equal(base, other));
    kg_keyhash_compute(a, UT_ID, UT_SECRET2, other);
    ck_assert(!kg_keyhash_equal(base, other));
    kg_keyhash_compute(b, UT_ID, UT_SECRET, other);
    ck_assert(!kg_keyhash_equal(base, other));

    /* Only the 32 secret characters count: a check after them does not. */
    memcpy(longer, UT_SECRET "ABCDEF", sizeof(UT_SECRET "ABCDEF"));
    kg_keyhash_compute(a, UT_ID, longer, other);
    ck_assert(kg_keyhash_equal(base, other));
    kg_keyhash_free(&a);
    kg_keyhash_free(&b);
}
END_TEST

/* The stored hashes' format: BLAKE2b-256 keyed with the server key over
 * "<id>:<secret>", pinned by a value computed with Python's hashlib. */
START_TEST(test_compute_known_answer)
{
    static const char want[] =
        "09c19fb34232f1607562c103e3130b87e67038d32736a526c15a065f6e9efd9a";
    unsigned char key[KG_KEYHASH_KEY_LEN];
    unsigned char h[KG_KEYHASH_LEN];
    char hex[2 * KG_KEYHASH_LEN + 1];
    kg_keyhash_t *hk = NULL;

    ut_key_bytes(key, 1);
    ck_assert_int_eq(kg_keyhash_from_bytes(key, &hk), KG_OK);
    kg_keyhash_compute(hk, UT_ID, UT_SECRET, h);
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    ck_assert_str_eq(hex, want);
    kg_keyhash_free(&hk);
}
END_TEST

static void ut_random_text(char *out, size_t n)
{
    static const char alphabet[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    for (size_t i = 0; i < n; i++) {
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    }
    out[n] = '\0';
}

/*
 * The prepared (pre-keyed, copied) state gives exactly the one-shot keyed
 * BLAKE2b, for random keys, ids and secrets; ids of other lengths too (a
 * long one takes the piecewise path), and a state used many times does not
 * drift.
 */
START_TEST(test_compute_matches_one_shot)
{
    static const size_t id_lens[] = {12, 1, 63, 64, 65, 200};

    for (int i = 0; i < 300; i++) {
        unsigned char key[KG_KEYHASH_KEY_LEN];
        unsigned char got[KG_KEYHASH_LEN];
        unsigned char want[KG_KEYHASH_LEN];
        unsigned char msg[256];
        char id[201];
        char secret[KG_TOKEN_SECRET_LEN + 1];
        size_t idlen = id_lens[(size_t)i % UT_NROWS(id_lens)];
        kg_keyhash_t *hk = NULL;

        randombytes_buf(key, sizeof(key));
        ut_random_text(id, idlen);
        ut_random_text(secret, KG_TOKEN_SECRET_LEN);
        ck_assert_int_eq(kg_keyhash_from_bytes(key, &hk), KG_OK);
        memcpy(msg, id, idlen);
        msg[idlen] = ':';
        memcpy(msg + idlen + 1, secret, KG_TOKEN_SECRET_LEN);
        crypto_generichash(want, sizeof(want), msg,
                           idlen + 1 + KG_TOKEN_SECRET_LEN, key, sizeof(key));
        for (int rep = 0; rep < 3; rep++) {
            kg_keyhash_compute(hk, id, secret, got);
            ck_assert_msg(memcmp(got, want, sizeof(want)) == 0,
                          "round %d, id length %zu, repeat %d", i, idlen, rep);
        }
        kg_keyhash_free(&hk);
    }
}
END_TEST

START_TEST(test_equal)
{
    unsigned char x[KG_KEYHASH_LEN];
    unsigned char y[KG_KEYHASH_LEN];

    memset(x, 0xab, sizeof(x));
    memcpy(y, x, sizeof(y));
    ck_assert(kg_keyhash_equal(x, y));
    for (int i = 0; i < KG_KEYHASH_LEN; i += 31) {
        y[i] ^= 0x01;
        ck_assert(!kg_keyhash_equal(x, y));
        y[i] ^= 0x01;
    }
    y[KG_KEYHASH_LEN - 1] ^= 0x80;
    ck_assert(!kg_keyhash_equal(x, y));
}
END_TEST

static Suite *keyhash_suite(void)
{
    Suite *s = suite_create("keyhash");
    TCase *tc = tcase_create("keyhash");

    tcase_add_test(tc, test_create_file);
    tcase_add_test(tc, test_create_refuses_overwrite);
    tcase_add_test(tc, test_create_in_missing_dir);
    tcase_add_test(tc, test_load_created);
    tcase_add_loop_test(tc, test_load_refuses, 0, (int)UT_NROWS(ut_load_rows));
    tcase_add_test(tc, test_load_missing_and_symlink);
    tcase_add_test(tc, test_load_equals_from_bytes);
    tcase_add_test(tc, test_compute);
    tcase_add_test(tc, test_compute_known_answer);
    tcase_add_test(tc, test_compute_matches_one_shot);
    tcase_add_test(tc, test_equal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(keyhash_suite());
}
