/* Workspace provider credentials (bring your own key), encrypted at rest. */
#include "keygate/wscred.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/timefmt.h"

/*
 * What a ciphertext is bound to: this label, the workspace id and the
 * provider, NUL-separated (neither may hold a NUL). The label keeps other
 * users of the server secret key apart from this table.
 */
static const char wc_label[] = "workspace_credentials";
#define WC_CONTEXT_MAX \
    (sizeof(wc_label) + KG_WORKSPACE_ID_LEN + 1 + KG_PROVIDER_NAME_MAX + 1)

_Static_assert(sizeof(((kg_wscred_info_t *)0)->last4) ==
                   KG_WSCRED_LAST4_LEN + 1,
               "a stored last4 holds KG_WSCRED_LAST4_LEN characters");
_Static_assert(KG_STORE_SEALED_MAX == KG_WSCRED_MAX + KG_SECRETBOX_MAC_LEN,
               "a stored ciphertext holds the longest credential");

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
    size_t clen = wc_context(workspace_id, provider, context);
    kg_store_sealed_t *sealed = malloc(sizeof(*sealed));
    kg_store_credential_t row;
    kg_err_t rc;

    if (sealed == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    memset(&row, 0, sizeof(row));
    snprintf(row.workspace_id, sizeof(row.workspace_id), "%s", workspace_id);
    snprintf(row.provider, sizeof(row.provider), "%s", provider);
    snprintf(row.last4, sizeof(row.last4), "%s", last4);
    row.updated_at = kg_clock_now();
    sealed->nonce_len = sizeof(sealed->nonce);
    sealed->cipher_len = len + KG_SECRETBOX_MAC_LEN;
    rc = kg_secretbox_seal(sb, context, clen, secret, len, sealed->nonce,
                           sealed->cipher);
    if (rc != KG_OK) {
        kg_diag_set(diag, "cannot encrypt the credential");
    } else {
        rc = kg_store_credential_put(s, &row, sealed, diag);
    }
    free(sealed);
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

/* KG_ERR_NOT_FOUND: the workspace has no credential for provider. */
static kg_err_t wc_no_credential(const kg_workspace_t *ws, const char *provider,
                                 kg_diag_t *diag)
{
    return kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                        "workspace '%s' has no credential for provider '%s'",
                        ws->name, provider);
}

kg_err_t kg_wscred_delete(kg_store_t *s, const char *actor,
                          const char *workspace_ref, const char *provider,
                          kg_wscred_info_t *deleted, kg_diag_t *diag)
{
    kg_wscred_info_t info;
    kg_workspace_t ws;
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
    rc = kg_store_credential_get(s, ws.id, provider, &info, diag);
    if (rc == KG_ERR_NOT_FOUND) {
        rc = wc_no_credential(&ws, provider, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    rc = kg_store_credential_delete(s, ws.id, provider, diag);
    if (rc == KG_ERR_NOT_FOUND) {
        /* Another instance deleted it since the read above (a PostgreSQL
         * transaction does not lock what it read). */
        rc = wc_no_credential(&ws, provider, diag);
    }
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
    rc = kg_store_credential_get(s, ws.id, provider, out, diag);
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
    kg_workspace_t ws;
    kg_err_t rc;

    *list = NULL;
    *n = 0;
    rc = kg_workspace_get(s, workspace_ref, &ws, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_store_credential_list(s, ws.id, list, n, diag);
    kg_workspace_clear(&ws);
    return rc;
}

kg_err_t kg_wscred_count(kg_store_t *s, int64_t *n, kg_diag_t *diag)
{
    return kg_store_credential_count(s, n, diag);
}

/* Decrypt a sealed row into new sodium memory. */
static kg_err_t wc_open_row(const kg_store_sealed_t *row,
                            const kg_secretbox_t *sb, const char *workspace_id,
                            const char *provider, char **secret, size_t *len,
                            kg_diag_t *diag)
{
    unsigned char context[WC_CONTEXT_MAX];
    size_t clen = wc_context(workspace_id, provider, context);
    size_t plen;
    char *plain = NULL;
    kg_err_t rc = KG_ERR_STORE_CORRUPT;

    if (row->nonce_len == KG_SECRETBOX_NONCE_LEN &&
        row->cipher_len > KG_SECRETBOX_MAC_LEN &&
        row->cipher_len <= KG_WSCRED_MAX + KG_SECRETBOX_MAC_LEN) {
        plen = row->cipher_len - KG_SECRETBOX_MAC_LEN;
        plain = sodium_malloc(plen + 1);
        if (plain == NULL) {
            return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
        }
        rc = kg_secretbox_open(sb, context, clen, row->nonce, row->cipher,
                               row->cipher_len, plain);
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
    kg_store_sealed_t *row = NULL;
    kg_err_t rc;

    *secret = NULL;
    *len = 0;
    rc = wc_check_provider(provider, diag);
    if (rc != KG_OK) {
        return rc;
    }
    row = malloc(sizeof(*row));
    if (row == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    rc = kg_store_credential_sealed(s, workspace_id, provider, row, diag);
    if (rc == KG_OK) {
        rc = wc_open_row(row, sb, workspace_id, provider, secret, len, diag);
    } else if (rc == KG_ERR_NOT_FOUND) {
        rc = kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                          "workspace %.64s has no credential for provider %s",
                          workspace_id, provider);
    }
    free(row);
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
