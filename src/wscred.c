/* Workspace provider credentials (bring your own key), encrypted at rest. */
#include "keygate/wscred.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/timefmt.h"
#include "store/sqlite/sqlite_store.h"

/*
 * What a ciphertext is bound to: this label, the workspace id and the
 * provider, NUL-separated (neither may hold a NUL). The label keeps other
 * users of the server secret key apart from this table.
 */
static const char wc_label[] = "workspace_credentials";
#define WC_CONTEXT_MAX \
    (sizeof(wc_label) + KG_WORKSPACE_ID_LEN + 1 + KG_PROVIDER_NAME_MAX + 1)

#define WC_COLUMNS "workspace_id, provider, last4, created_at, updated_at"

static const char wc_sql_upsert[] =
    "INSERT INTO workspace_credentials (workspace_id, provider, nonce, "
    "ciphertext, last4, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, "
    "?6, ?6) ON CONFLICT (workspace_id, provider) DO UPDATE SET "
    "nonce = excluded.nonce, ciphertext = excluded.ciphertext, "
    "last4 = excluded.last4, updated_at = excluded.updated_at";
static const char wc_sql_get[] =
    "SELECT " WC_COLUMNS " FROM workspace_credentials "
    "WHERE workspace_id = ? AND provider = ?";
static const char wc_sql_list[] =
    "SELECT " WC_COLUMNS " FROM workspace_credentials "
    "WHERE workspace_id = ? ORDER BY provider";
static const char wc_sql_delete[] =
    "DELETE FROM workspace_credentials WHERE workspace_id = ? AND provider = ?";
static const char wc_sql_count[] = "SELECT count(*) FROM workspace_credentials";
static const char wc_sql_load[] =
    "SELECT nonce, ciphertext FROM workspace_credentials "
    "WHERE workspace_id = ? AND provider = ?";

kg_err_t kg_wscred_check(const char *secret, size_t len, kg_diag_t *diag)
{
    if (len == 0) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "the credential is empty");
    }
    if (len > KG_WSCRED_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "the credential is longer than %d bytes",
                            KG_WSCRED_MAX);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)secret[i];

        if (c == '\n' || c == '\r') {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "the credential must be one line (it holds "
                                "a line break)");
        }
        if (c <= 0x20 || c >= 0x7f) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "the credential must be printable ASCII "
                                "without spaces or control characters");
        }
    }
    return KG_OK;
}

void kg_wscred_last4(const char *secret, size_t len,
                     char out[KG_WSCRED_LAST4_LEN + 1])
{
    out[0] = '\0';
    if (len >= KG_WSCRED_LAST4_MIN) {
        memcpy(out, secret + len - KG_WSCRED_LAST4_LEN, KG_WSCRED_LAST4_LEN);
        out[KG_WSCRED_LAST4_LEN] = '\0';
    }
}

/* The binding context of a row into buf (WC_CONTEXT_MAX); its length. */
static size_t wc_context(const char *workspace_id, const char *provider,
                         unsigned char buf[WC_CONTEXT_MAX])
{
    size_t idlen = strnlen(workspace_id, KG_WORKSPACE_ID_LEN);
    size_t plen = strnlen(provider, KG_PROVIDER_NAME_MAX);
    size_t n = 0;

    memcpy(buf, wc_label, sizeof(wc_label));
    n += sizeof(wc_label);
    memcpy(buf + n, workspace_id, idlen);
    n += idlen;
    buf[n++] = '\0';
    memcpy(buf + n, provider, plen);
    n += plen;
    return n;
}

static kg_err_t wc_check_provider(const char *provider, kg_diag_t *diag)
{
    if (!kg_providers_name_valid(provider)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "not a provider name (1-64 of a-z, 0-9, _ and -)");
    }
    return KG_OK;
}

static void wc_from_row(sqlite3_stmt *st, kg_wscred_info_t *info)
{
    memset(info, 0, sizeof(*info));
    snprintf(info->workspace_id, sizeof(info->workspace_id), "%s",
             kg_sqlite_col_text(st, 0));
    snprintf(info->provider, sizeof(info->provider), "%s",
             kg_sqlite_col_text(st, 1));
    snprintf(info->last4, sizeof(info->last4), "%s", kg_sqlite_col_text(st, 2));
    info->created_at = sqlite3_column_int64(st, 3);
    info->updated_at = sqlite3_column_int64(st, 4);
}

/* The row of (workspace id, provider); KG_ERR_NOT_FOUND without a diag. */
static kg_err_t wc_get_by_id(kg_store_t *s, const char *workspace_id,
                             const char *provider, kg_wscred_info_t *out,
                             kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(s, wc_sql_get, diag);
    kg_err_t rc = KG_OK;
    int src;

    memset(out, 0, sizeof(*out));
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, workspace_id);
    kg_sqlite_bind_text(st, 2, provider);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        wc_from_row(st, out);
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_NOT_FOUND;
    } else {
        rc = kg_sqlite_error(s, src, "reading a workspace credential", diag);
    }
    kg_sqlite_reset(st);
    return rc;
}

/* The audit event of a change: the provider and last4, nothing else. */
static kg_err_t wc_audit(kg_store_t *s, const char *actor, const char *action,
                         const char *workspace_id, const char *provider,
                         const char *last4, kg_diag_t *diag)
{
    json_t *detail = json_pack("{s:s, s:s?}", "provider", provider, "last4",
                               last4[0] != '\0' ? last4 : NULL); /* new */
    kg_err_t rc;

    if (detail == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    rc = kg_audit_record(s, actor, action, "workspace", workspace_id, detail,
                         diag);
    json_decref(detail);
    return rc;
}

/* Seal secret for the row and write it (inside the caller's transaction). */
static kg_err_t wc_write(kg_store_t *s, const kg_secretbox_t *sb,
                         const char *workspace_id, const char *provider,
                         const char *secret, size_t len, const char *last4,
                         kg_diag_t *diag)
{
    unsigned char context[WC_CONTEXT_MAX];
    unsigned char nonce[KG_SECRETBOX_NONCE_LEN];
    unsigned char *cipher = malloc(len + KG_SECRETBOX_MAC_LEN);
    size_t clen = wc_context(workspace_id, provider, context);
    sqlite3_stmt *st;
    kg_err_t rc;

    if (cipher == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    rc = kg_secretbox_seal(sb, context, clen, secret, len, nonce, cipher);
    if (rc != KG_OK) {
        kg_diag_set(diag, "cannot encrypt the credential");
        goto out;
    }
    st = kg_sqlite_stmt(s, wc_sql_upsert, diag);
    if (st == NULL) {
        rc = KG_ERR_STORE;
        goto out;
    }
    kg_sqlite_bind_text(st, 1, workspace_id);
    kg_sqlite_bind_text(st, 2, provider);
    sqlite3_bind_blob(st, 3, nonce, sizeof(nonce), SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, cipher, (int)(len + KG_SECRETBOX_MAC_LEN),
                      SQLITE_TRANSIENT);
    kg_sqlite_bind_text(st, 5, last4);
    sqlite3_bind_int64(st, 6, kg_clock_now());
    rc = kg_sqlite_exec(s, st, "storing a workspace credential", diag);
out:
    free(cipher);
    return rc;
}

kg_err_t kg_wscred_set(kg_store_t *s, const kg_secretbox_t *sb,
                       const char *actor, const char *workspace_ref,
                       const char *provider, const char *secret,
                       size_t secret_len, kg_diag_t *diag)
{
    char last4[KG_WSCRED_LAST4_LEN + 1];
    kg_workspace_t ws;
    kg_err_t rc;

    memset(&ws, 0, sizeof(ws));
    rc = wc_check_provider(provider, diag);
    if (rc == KG_OK) {
        rc = kg_wscred_check(secret, secret_len, diag);
    }
    if (rc != KG_OK) {
        return rc;
    }
    kg_wscred_last4(secret, secret_len, last4);
    rc = kg_store_begin(s, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_workspace_get(s, workspace_ref, &ws, diag);
    if (rc == KG_OK) {
        rc = wc_write(s, sb, ws.id, provider, secret, secret_len, last4, diag);
    }
    if (rc == KG_OK) {
        rc = wc_audit(s, actor, "credential-set", ws.id, provider, last4, diag);
    }
    if (rc == KG_OK) {
        rc = kg_store_commit(s, diag);
    } else {
        kg_store_rollback(s);
    }
    kg_workspace_clear(&ws);
    return rc;
}

kg_err_t kg_wscred_delete(kg_store_t *s, const char *actor,
                          const char *workspace_ref, const char *provider,
                          kg_wscred_info_t *deleted, kg_diag_t *diag)
{
    kg_wscred_info_t info;
    kg_workspace_t ws;
    sqlite3_stmt *st;
    kg_err_t rc;

    memset(&ws, 0, sizeof(ws));
    memset(&info, 0, sizeof(info));
    if (deleted != NULL) {
        memset(deleted, 0, sizeof(*deleted));
    }
    rc = wc_check_provider(provider, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_store_begin(s, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_workspace_get(s, workspace_ref, &ws, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = wc_get_by_id(s, ws.id, provider, &info, diag);
    if (rc == KG_ERR_NOT_FOUND) {
        rc = kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                          "workspace '%s' has no credential for provider "
                          "'%s'",
                          ws.name, provider);
    }
    if (rc != KG_OK) {
        goto out;
    }
    st = kg_sqlite_stmt(s, wc_sql_delete, diag);
    if (st == NULL) {
        rc = KG_ERR_STORE;
        goto out;
    }
    kg_sqlite_bind_text(st, 1, ws.id);
    kg_sqlite_bind_text(st, 2, provider);
    rc = kg_sqlite_exec(s, st, "deleting a workspace credential", diag);
    if (rc == KG_OK) {
        rc = wc_audit(s, actor, "credential-delete", ws.id, provider,
                      info.last4, diag);
    }
out:
    if (rc == KG_OK) {
        rc = kg_store_commit(s, diag);
    } else {
        kg_store_rollback(s);
    }
    if (rc == KG_OK && deleted != NULL) {
        *deleted = info;
    }
    kg_workspace_clear(&ws);
    return rc;
}

kg_err_t kg_wscred_get(kg_store_t *s, const char *workspace_ref,
                       const char *provider, kg_wscred_info_t *out,
                       kg_diag_t *diag)
{
    kg_workspace_t ws;
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    rc = wc_check_provider(provider, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_workspace_get(s, workspace_ref, &ws, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = wc_get_by_id(s, ws.id, provider, out, diag);
    if (rc == KG_ERR_NOT_FOUND) {
        kg_diag_set(diag, "workspace '%s' has no credential for provider '%s'",
                    ws.name, provider);
    }
    kg_workspace_clear(&ws);
    return rc;
}

kg_err_t kg_wscred_list(kg_store_t *s, const char *workspace_ref,
                        kg_wscred_info_t **list, size_t *n, kg_diag_t *diag)
{
    kg_wscred_info_t *arr = NULL;
    kg_workspace_t ws;
    sqlite3_stmt *st;
    size_t used = 0;
    size_t cap = 0;
    kg_err_t rc;
    int src;

    *list = NULL;
    *n = 0;
    rc = kg_workspace_get(s, workspace_ref, &ws, diag);
    if (rc != KG_OK) {
        return rc;
    }
    st = kg_sqlite_stmt(s, wc_sql_list, diag);
    if (st == NULL) {
        kg_workspace_clear(&ws);
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, ws.id);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            kg_wscred_info_t *grown = realloc(arr, ncap * sizeof(*arr));

            if (grown == NULL) {
                rc = kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
                break;
            }
            arr = grown;
            cap = ncap;
        }
        wc_from_row(st, &arr[used++]);
    }
    if (rc == KG_OK && src != SQLITE_DONE) {
        rc = kg_sqlite_error(s, src, "listing workspace credentials", diag);
    }
    kg_sqlite_reset(st);
    kg_workspace_clear(&ws);
    if (rc != KG_OK || used == 0) {
        free(arr);
        return rc;
    }
    *list = arr;
    *n = used;
    return KG_OK;
}

kg_err_t kg_wscred_count(kg_store_t *s, int64_t *n, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(s, wc_sql_count, diag);
    kg_err_t rc = KG_OK;
    int src;

    *n = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
    } else {
        rc = kg_sqlite_error(s, src, "counting workspace credentials", diag);
    }
    kg_sqlite_reset(st);
    return rc;
}

/* Decrypt the row under st (nonce, ciphertext) into new sodium memory. */
static kg_err_t wc_open_row(sqlite3_stmt *st, const kg_secretbox_t *sb,
                            const char *workspace_id, const char *provider,
                            char **secret, size_t *len, kg_diag_t *diag)
{
    unsigned char context[WC_CONTEXT_MAX];
    size_t clen = wc_context(workspace_id, provider, context);
    const void *nonce = sqlite3_column_blob(st, 0);
    const void *cipher = sqlite3_column_blob(st, 1);
    int nlen = sqlite3_column_bytes(st, 0);
    int cbytes = sqlite3_column_bytes(st, 1);
    size_t plen;
    char *plain = NULL;
    kg_err_t rc = KG_ERR_STORE_CORRUPT;

    if (nonce != NULL && nlen == KG_SECRETBOX_NONCE_LEN && cipher != NULL &&
        cbytes > KG_SECRETBOX_MAC_LEN &&
        cbytes <= KG_WSCRED_MAX + KG_SECRETBOX_MAC_LEN) {
        plen = (size_t)cbytes - KG_SECRETBOX_MAC_LEN;
        plain = sodium_malloc(plen + 1);
        if (plain == NULL) {
            return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
        }
        rc = kg_secretbox_open(sb, context, clen, nonce, cipher, (size_t)cbytes,
                               plain);
        if (rc == KG_OK && kg_wscred_check(plain, plen, NULL) != KG_OK) {
            rc = KG_ERR_STORE_CORRUPT;
        }
    }
    if (rc != KG_OK) {
        if (plain != NULL) {
            sodium_free(plain); /* wipes */
        }
        return kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                            "the credential of workspace %s for provider %s "
                            "does not decrypt: [security] secret_key_file "
                            "is not the key it was stored with, or the store "
                            "row was altered",
                            workspace_id, provider);
    }
    plain[plen] = '\0';
    *secret = plain;
    *len = plen;
    return KG_OK;
}

kg_err_t kg_wscred_load(kg_store_t *s, const kg_secretbox_t *sb,
                        const char *workspace_id, const char *provider,
                        char **secret, size_t *len, kg_diag_t *diag)
{
    sqlite3_stmt *st;
    kg_err_t rc;
    int src;

    *secret = NULL;
    *len = 0;
    rc = wc_check_provider(provider, diag);
    if (rc != KG_OK) {
        return rc;
    }
    st = kg_sqlite_stmt(s, wc_sql_load, diag);
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, workspace_id);
    kg_sqlite_bind_text(st, 2, provider);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        rc = wc_open_row(st, sb, workspace_id, provider, secret, len, diag);
    } else if (src == SQLITE_DONE) {
        rc = kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                          "workspace %.64s has no credential for provider %s",
                          workspace_id, provider);
    } else {
        rc = kg_sqlite_error(s, src, "reading a workspace credential", diag);
    }
    kg_sqlite_reset(st);
    return rc;
}

void kg_wscred_secret_free(char **secret, size_t len)
{
    if (secret == NULL || *secret == NULL) {
        return;
    }
    sodium_memzero(*secret, len);
    sodium_free(*secret); /* wipes the whole allocation too */
    *secret = NULL;
}

json_t *kg_wscred_to_json(const kg_wscred_info_t *info)
{
    char created[KG_TIME_STRLEN];
    char updated[KG_TIME_STRLEN];

    return json_pack(
        "{s:s, s:s?, s:s, s:s}", "provider", info->provider, "last4",
        info->last4[0] != '\0' ? info->last4 : NULL, "createdAt",
        kg_time_format(info->created_at, created, sizeof(created)), "updatedAt",
        kg_time_format(info->updated_at, updated, sizeof(updated)));
}

void kg_wscred_list_free(kg_wscred_info_t **list)
{
    if (list == NULL) {
        return;
    }
    free(*list);
    *list = NULL;
}
