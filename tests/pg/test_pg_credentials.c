/* The workspace credential rows' contract on both backends. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/store_budget.h"
#include "keygate/store_credentials.h"
#include "keygate/store_workspaces.h"
#include "pg_contract.h"
#include "pg_server.h"
#include "unit_util.h"

static pgs_t PG;

static void suite_setup(void)
{
    pgs_start(&PG);
}

static void suite_teardown(void)
{
    pgs_destroy(&PG);
}

static void add_workspace(kg_store_t *s, const char *id)
{
    kg_store_workspace_t w;
    kg_diag_t diag = {{0}};

    memset(&w, 0, sizeof(w));
    snprintf(w.id, sizeof(w.id), "%s", id);
    snprintf(w.name, sizeof(w.name), "name-%s", id);
    snprintf(w.mode, sizeof(w.mode), "api-keys");
    ck_assert_int_eq(kg_store_workspace_insert(s, &w, &diag), KG_OK);
}

/* Store (ws, provider) sealed as cipher_len bytes of fill, at time at. */
static kg_err_t put(kg_store_t *s, const char *ws, const char *provider,
                    const char *last4, size_t cipher_len, int fill, int64_t at)
{
    kg_store_credential_t row;
    kg_store_sealed_t *sealed = calloc(1, sizeof(*sealed));
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    ck_assert_ptr_nonnull(sealed);
    memset(&row, 0, sizeof(row));
    snprintf(row.workspace_id, sizeof(row.workspace_id), "%s", ws);
    snprintf(row.provider, sizeof(row.provider), "%s", provider);
    snprintf(row.last4, sizeof(row.last4), "%s", last4);
    row.updated_at = at;
    memset(sealed->nonce, fill + 1, sizeof(sealed->nonce));
    sealed->nonce_len = sizeof(sealed->nonce);
    memset(sealed->cipher, fill, cipher_len);
    sealed->cipher_len = cipher_len;
    rc = kg_store_credential_put(s, &row, sealed, &diag);
    free(sealed);
    return rc;
}

static int64_t revision(kg_store_t *s)
{
    kg_diag_t diag = {{0}};
    int64_t rev = -1;

    ck_assert_int_eq(kg_store_budget_revision(s, &rev, &diag), KG_OK);
    return rev;
}

/* Whether sealed is nonce fill + 1 and cipher_len bytes of fill. */
static bool sealed_is(const kg_store_sealed_t *sealed, size_t cipher_len,
                      int fill)
{
    bool ok = sealed->nonce_len == KG_SECRETBOX_NONCE_LEN &&
              sealed->cipher_len == cipher_len;

    for (size_t i = 0; ok && i < sealed->nonce_len; i++) {
        ok = sealed->nonce[i] == (unsigned char)(fill + 1);
    }
    for (size_t i = 0; ok && i < cipher_len; i++) {
        ok = sealed->cipher[i] == (unsigned char)fill;
    }
    return ok;
}

/* Put, replace, get, sealed, count, delete. */
static void put_get_contract(kg_store_t *s)
{
    kg_store_sealed_t *sealed = calloc(1, sizeof(*sealed));
    kg_store_credential_t got;
    kg_diag_t diag = {{0}};
    int64_t n = -1;
    int64_t rev;

    ck_assert_ptr_nonnull(sealed);
    add_workspace(s, "wsAAAAAAAAA1");
    rev = revision(s);
    ck_assert_int_eq(put(s, "wsAAAAAAAAA1", "openai", "wxyz", 40, 7, 100),
                     KG_OK);
    ck_assert_int_gt(revision(s), rev);
    ck_assert_int_eq(
        kg_store_credential_get(s, "wsAAAAAAAAA1", "openai", &got, &diag),
        KG_OK);
    ck_assert_str_eq(got.workspace_id, "wsAAAAAAAAA1");
    ck_assert_str_eq(got.provider, "openai");
    ck_assert_str_eq(got.last4, "wxyz");
    ck_assert_int_eq(got.created_at, 100);
    ck_assert_int_eq(got.updated_at, 100);
    ck_assert_int_eq(
        kg_store_credential_sealed(s, "wsAAAAAAAAA1", "openai", sealed, &diag),
        KG_OK);
    ck_assert(sealed_is(sealed, 40, 7));

    /* Replaced whole, created_at kept; the revision moves. */
    rev = revision(s);
    ck_assert_int_eq(
        put(s, "wsAAAAAAAAA1", "openai", "", KG_STORE_SEALED_MAX, 9, 200),
        KG_OK);
    ck_assert_int_gt(revision(s), rev);
    ck_assert_int_eq(
        kg_store_credential_get(s, "wsAAAAAAAAA1", "openai", &got, &diag),
        KG_OK);
    ck_assert_str_eq(got.last4, "");
    ck_assert_int_eq(got.created_at, 100);
    ck_assert_int_eq(got.updated_at, 200);
    ck_assert_int_eq(
        kg_store_credential_sealed(s, "wsAAAAAAAAA1", "openai", sealed, &diag),
        KG_OK);
    ck_assert(sealed_is(sealed, KG_STORE_SEALED_MAX, 9));

    /* Not found: no such provider, no such workspace; names are exact. */
    ck_assert_int_eq(
        kg_store_credential_get(s, "wsAAAAAAAAA1", "OpenAI", &got, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(
        kg_store_credential_get(s, "wsNOPE", "openai", &got, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(
        kg_store_credential_sealed(s, "wsAAAAAAAAA1", "azure", sealed, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_uint_eq(sealed->nonce_len, 0);
    ck_assert_uint_eq(sealed->cipher_len, 0);
    /* A workspace that does not exist: refused, nothing stored. */
    ck_assert_int_ne(put(s, "wsNOPE", "openai", "abcd", 40, 1, 300), KG_OK);

    ck_assert_int_eq(kg_store_credential_count(s, &n, &diag), KG_OK);
    ck_assert_int_eq(n, 1);
    rev = revision(s);
    ck_assert_int_eq(
        kg_store_credential_delete(s, "wsAAAAAAAAA1", "openai", &diag), KG_OK);
    ck_assert_int_gt(revision(s), rev);
    ck_assert_int_eq(
        kg_store_credential_delete(s, "wsAAAAAAAAA1", "openai", &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(
        kg_store_credential_get(s, "wsAAAAAAAAA1", "openai", &got, &diag),
        KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_store_credential_count(s, &n, &diag), KG_OK);
    ck_assert_int_eq(n, 0);
    free(sealed);
}

/* A workspace's rows by provider in byte order; none elsewhere. */
static void list_contract(kg_store_t *s)
{
    kg_store_credential_t *list = NULL;
    kg_diag_t diag = {{0}};
    size_t n = 99;
    int64_t count = -1;

    add_workspace(s, "wsBBBBBBBBB1");
    add_workspace(s, "wsBBBBBBBBB2");
    ck_assert_int_eq(put(s, "wsBBBBBBBBB1", "openai", "aaaa", 20, 1, 10),
                     KG_OK);
    ck_assert_int_eq(put(s, "wsBBBBBBBBB1", "Anthropic", "bbbb", 20, 2, 20),
                     KG_OK);
    ck_assert_int_eq(put(s, "wsBBBBBBBBB1", "azure", "cccc", 20, 3, 30), KG_OK);
    ck_assert_int_eq(put(s, "wsBBBBBBBBB2", "openai", "dddd", 20, 4, 40),
                     KG_OK);
    ck_assert_int_eq(
        kg_store_credential_list(s, "wsBBBBBBBBB1", &list, &n, &diag), KG_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(list[0].provider, "Anthropic");
    ck_assert_str_eq(list[0].last4, "bbbb");
    ck_assert_int_eq(list[0].created_at, 20);
    ck_assert_str_eq(list[1].provider, "azure");
    ck_assert_str_eq(list[2].provider, "openai");
    ck_assert_str_eq(list[2].workspace_id, "wsBBBBBBBBB1");
    ck_assert_str_eq(list[2].last4, "aaaa");
    free(list);
    ck_assert_int_eq(kg_store_credential_list(s, "wsNOPE", &list, &n, &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(list);
    ck_assert_int_eq(kg_store_credential_count(s, &count, &diag), KG_OK);
    ck_assert_int_eq(count, 4);
}

/* A damaged row is handed out with its stored lengths, not copied. */
static void damaged_contract(kg_store_t *s)
{
    kg_store_sealed_t *sealed = calloc(1, sizeof(*sealed));
    kg_diag_t diag = {{0}};
    char len[24];
    const char *args[] = {len};

    ck_assert_ptr_nonnull(sealed);
    add_workspace(s, "wsCCCCCCCCC1");
    ck_assert_int_eq(put(s, "wsCCCCCCCCC1", "openai", "aaaa", 20, 1, 10),
                     KG_OK);
    snprintf(len, sizeof(len), "%d", (int)KG_STORE_SEALED_MAX + 1);
    memset(sealed->cipher, 0x5a, sizeof(sealed->cipher));
    pgs_sql(s,
            pgs_is_pg(s) ? "UPDATE workspace_credentials SET ciphertext = "
                           "decode(repeat('ab', $1::integer), 'hex')"
                         : "UPDATE workspace_credentials SET ciphertext = "
                           "zeroblob($1)",
            1, args);
    ck_assert_int_eq(
        kg_store_credential_sealed(s, "wsCCCCCCCCC1", "openai", sealed, &diag),
        KG_OK);
    ck_assert_uint_eq(sealed->nonce_len, KG_SECRETBOX_NONCE_LEN);
    ck_assert_uint_eq(sealed->cipher_len, KG_STORE_SEALED_MAX + 1);
    ck_assert_int_eq(sealed->cipher[0], 0x5a); /* not copied */
    free(sealed);
}

static void credential_contract(kg_store_t *s)
{
    put_get_contract(s);
    list_contract(s);
    damaged_contract(s);
}

/* Providers in a collation that is not byte order, as a server's default
 * may be (the test server's is C): the list keeps SQLite's order. */
static void credential_contract_icu(kg_store_t *s)
{
    pgs_sql(s,
            "ALTER TABLE workspace_credentials ALTER COLUMN provider TYPE TEXT "
            "COLLATE \"en-x-icu\"",
            0, NULL);
    list_contract(s);
}

START_TEST(credentials_on_postgresql)
{
    pgs_run_pg(&PG, "kg_credentials", credential_contract);
    pgs_run_pg(&PG, "kg_credentials_icu", credential_contract_icu);
}
END_TEST

START_TEST(credentials_on_sqlite)
{
    pgs_run_sqlite(credential_contract);
}
END_TEST

static Suite *pg_credentials_suite(void)
{
    Suite *s = suite_create("pg_credentials");
    TCase *tc = tcase_create("pg");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, credentials_on_postgresql);
    tcase_add_test(tc, credentials_on_sqlite);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_credentials_suite());
}
