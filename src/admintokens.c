/* Admin tokens: create, list, revoke and verify the admin listener's keys. */
#include "keygate/admintokens.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/store_admin_tokens.h"
#include "keygate/timefmt.h"

static void adm_public(const kg_store_admin_token_t *row, kg_admin_token_t *t)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->id, row->id, sizeof(t->id));
    memcpy(t->name, row->name, sizeof(t->name));
    memcpy(t->last4, row->last4, sizeof(t->last4));
    memcpy(t->created_by, row->created_by, sizeof(t->created_by));
    t->read_only = row->read_only;
    t->created_at = row->created_at;
    t->expires_at = row->expires_at;
    t->last_used_at = row->last_used_at;
    t->revoked_at = row->revoked_at;
}

/* The id of "<id>" or "kgadm_<id>"; false when ref is neither. */
static bool adm_ref_id(const char *ref, char id[KG_TOKEN_ID_LEN + 1])
{
    static const char prefix[] = KG_TOKEN_ADMIN_PREFIX "_";

    if (strncmp(ref, prefix, sizeof(prefix) - 1) == 0) {
        ref += sizeof(prefix) - 1;
    }
    if (!kg_token_id_valid(ref)) {
        return false;
    }
    memcpy(id, ref, KG_TOKEN_ID_LEN + 1);
    return true;
}

static kg_err_t adm_finish(kg_store_t *store, kg_err_t rc, kg_diag_t *diag)
{
    if (rc != KG_OK) {
        kg_store_rollback(store);
        return rc;
    }
    return kg_store_commit(store, diag);
}

kg_err_t kg_admin_tokens_create(const kg_admin_tokens_ctx_t *ctx,
                                const char *name, bool read_only, int64_t ttl,
                                kg_admin_token_t *out, char *token,
                                kg_diag_t *diag)
{
    kg_store_admin_token_t row;
    kg_token_t tok;
    json_t *detail = NULL;
    int64_t now = kg_clock_now();
    kg_err_t rc;

    memset(&row, 0, sizeof(row));
    memset(&tok, 0, sizeof(tok));
    memset(token, 0, KG_TOKEN_STRLEN);
    rc = kg_validate_name(name, "name", diag);
    if (rc != KG_OK) {
        return rc;
    }
    if (ttl < 0 || ttl > KG_ADMIN_TOKEN_MAX_TTL) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "ttl: an admin token lives at most 3650d");
    }
    rc = kg_token_generate(KG_TOKEN_ADMIN_PREFIX, &tok);
    if (rc != KG_OK) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "cannot make a token");
    }
    memcpy(row.id, tok.id, sizeof(row.id));
    snprintf(row.name, sizeof(row.name), "%s", name);
    memcpy(row.last4, tok.secret + KG_TOKEN_SECRET_LEN - 4, 4);
    snprintf(row.created_by, sizeof(row.created_by), "%s",
             ctx->actor ? ctx->actor : "");
    row.read_only = read_only;
    kg_keyhash_compute(ctx->hashkey, tok.id, tok.secret, row.hash);
    row.created_at = now;
    row.expires_at = ttl > 0 ? now + ttl : -1;
    row.last_used_at = -1;
    row.revoked_at = -1;
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = kg_store_admin_token_insert(ctx->store, &row, diag);
    if (rc == KG_OK) {
        detail = json_pack(
            "{s:s, s:b, s:o}", "name", row.name, "readOnly", read_only,
            "expiresAt", ttl > 0 ? json_integer(row.expires_at) : json_null());
        rc = kg_audit_record(ctx->store, ctx->actor, "create", "admin_token",
                             row.id, detail, diag);
    }
    rc = adm_finish(ctx->store, rc, diag);
    if (rc == KG_OK) {
        rc = kg_token_format(&tok, token, KG_TOKEN_STRLEN);
    }
    if (rc == KG_OK && out != NULL) {
        adm_public(&row, out);
    }
out:
    json_decref(detail);
    kg_token_wipe(&tok);
    sodium_memzero(&row, sizeof(row));
    if (rc != KG_OK) {
        sodium_memzero(token, KG_TOKEN_STRLEN);
    }
    return rc;
}

kg_err_t kg_admin_tokens_list(const kg_admin_tokens_ctx_t *ctx,
                              bool include_revoked, kg_admin_token_t **out,
                              size_t *count, kg_diag_t *diag)
{
    kg_store_admin_token_t *rows = NULL;
    kg_admin_token_t *arr = NULL;
    size_t n = 0;
    kg_err_t rc;

    *out = NULL;
    *count = 0;
    rc =
        kg_store_admin_token_list(ctx->store, include_revoked, &rows, &n, diag);
    if (rc != KG_OK) {
        return rc;
    }
    arr = calloc(n ? n : 1, sizeof(*arr));
    if (arr == NULL) {
        rc = KG_ERR_NOMEM;
    } else {
        for (size_t i = 0; i < n; i++) {
            adm_public(&rows[i], &arr[i]);
        }
        *out = arr;
        *count = n;
    }
    sodium_memzero(rows, n * sizeof(*rows));
    free(rows);
    return rc;
}

kg_err_t kg_admin_tokens_revoke(const kg_admin_tokens_ctx_t *ctx,
                                const char *ref, kg_admin_token_t *out,
                                kg_diag_t *diag)
{
    kg_store_admin_token_t row;
    char id[KG_TOKEN_ID_LEN + 1];
    json_t *detail = NULL;
    int64_t now = kg_clock_now();
    kg_err_t rc;

    memset(&row, 0, sizeof(row));
    if (!adm_ref_id(ref, id)) {
        return kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                            "no admin token '%.40s' (give its id or "
                            "kgadm_<id>)",
                            ref);
    }
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_store_admin_token_get(ctx->store, id, &row, diag);
    if (rc == KG_ERR_NOT_FOUND) {
        kg_diag_set(diag, "no admin token '%s'", id);
    } else if (rc == KG_OK && row.revoked_at >= 0) {
        rc = kg_diag_fail(diag, KG_ERR_STATE,
                          "admin token %s was already revoked", id);
    }
    if (rc == KG_OK) {
        rc = kg_store_admin_token_revoke(ctx->store, id, now, diag);
    }
    if (rc == KG_OK) {
        detail = json_pack("{s:s}", "name", row.name);
        rc = kg_audit_record(ctx->store, ctx->actor, "revoke", "admin_token",
                             id, detail, diag);
    }
    json_decref(detail);
    rc = adm_finish(ctx->store, rc, diag);
    if (rc == KG_OK && out != NULL) {
        row.revoked_at = now;
        adm_public(&row, out);
    }
    sodium_memzero(&row, sizeof(row));
    return rc;
}

kg_err_t kg_admin_tokens_verify(kg_store_t *store, const kg_keyhash_t *hk,
                                const char *token, size_t len, int64_t now,
                                kg_admin_token_t *out, kg_diag_t *diag)
{
    kg_store_admin_token_t row;
    unsigned char want[KG_KEYHASH_LEN];
    kg_token_t tok;
    kg_diag_t ignored = {{0}};
    bool match;
    kg_err_t rc;

    memset(&row, 0, sizeof(row));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (kg_token_parse(token, len, &tok) != KG_OK) {
        return kg_diag_fail(diag, KG_ERR_ADMIN_AUTH,
                            "not a well-formed admin token");
    }
    if (strcmp(tok.prefix, KG_TOKEN_ADMIN_PREFIX) != 0) {
        kg_token_wipe(&tok);
        return kg_diag_fail(diag, KG_ERR_ADMIN_AUTH,
                            "not an admin token (prefix '%s')",
                            tok.prefix[0] ? "other" : "none");
    }
    rc = kg_store_admin_token_get(store, tok.id, &row, diag);
    if (rc == KG_ERR_NOT_FOUND) {
        rc = kg_diag_fail(diag, KG_ERR_ADMIN_AUTH, "unknown admin token %s",
                          tok.id);
    }
    if (rc != KG_OK) {
        kg_token_wipe(&tok);
        return rc;
    }
    kg_keyhash_compute(hk, tok.id, tok.secret, want);
    kg_token_wipe(&tok);
    match = kg_keyhash_equal(want, row.hash);
    sodium_memzero(want, sizeof(want));
    /* A revoked row's hash is zeroed: it can never match. */
    if (row.revoked_at >= 0) {
        rc = kg_diag_fail(diag, KG_ERR_ADMIN_AUTH, "admin token %s is revoked",
                          row.id);
    } else if (!match) {
        rc = kg_diag_fail(diag, KG_ERR_ADMIN_AUTH,
                          "wrong secret for admin token %s", row.id);
    } else if (row.expires_at >= 0 && row.expires_at <= now) {
        rc = kg_diag_fail(diag, KG_ERR_ADMIN_AUTH, "admin token %s has expired",
                          row.id);
    }
    if (rc == KG_OK) {
        if (kg_store_admin_token_touch(store, row.id, now,
                                       KG_ADMIN_TOKEN_TOUCH_GAP,
                                       &ignored) == KG_OK &&
            (row.last_used_at < 0 ||
             row.last_used_at < now - KG_ADMIN_TOKEN_TOUCH_GAP)) {
            row.last_used_at = now;
        }
        if (out != NULL) {
            adm_public(&row, out);
        }
    }
    sodium_memzero(&row, sizeof(row));
    return rc;
}

kg_err_t kg_admin_tokens_get(kg_store_t *store, const char *id, int64_t now,
                             kg_admin_token_t *out, kg_diag_t *diag)
{
    kg_store_admin_token_t row;
    kg_err_t rc = kg_store_admin_token_get(store, id, &row, diag);

    if (rc == KG_ERR_NOT_FOUND) {
        rc =
            kg_diag_fail(diag, KG_ERR_ADMIN_AUTH, "unknown admin token %s", id);
    } else if (rc == KG_OK && row.revoked_at >= 0) {
        rc = kg_diag_fail(diag, KG_ERR_ADMIN_AUTH, "admin token %s is revoked",
                          id);
    } else if (rc == KG_OK && row.expires_at >= 0 && row.expires_at <= now) {
        rc = kg_diag_fail(diag, KG_ERR_ADMIN_AUTH, "admin token %s has expired",
                          id);
    }
    if (rc == KG_OK && out != NULL) {
        adm_public(&row, out);
    }
    sodium_memzero(&row, sizeof(row));
    return rc;
}

const char *kg_admin_token_state(const kg_admin_token_t *t, int64_t now)
{
    if (t->revoked_at >= 0) {
        return "revoked";
    }
    if (t->expires_at >= 0 && t->expires_at <= now) {
        return "expired";
    }
    return "active";
}

static json_t *adm_json_time(int64_t t)
{
    char buf[KG_TIME_STRLEN];

    return t < 0 ? json_null()
                 : json_string(kg_time_format(t, buf, sizeof(buf)));
}

json_t *kg_admin_token_to_json(const kg_admin_token_t *t, int64_t now)
{
    char display[KG_TOKEN_DISPLAY_STRLEN];

    return json_pack("{s:s, s:s, s:s, s:b, s:s, s:o, s:s, s:o, s:o, s:o}", "id",
                     t->id, "name", t->name, "display",
                     kg_token_display(KG_TOKEN_ADMIN_PREFIX, t->id, t->last4,
                                      display, sizeof(display)),
                     "readOnly", t->read_only, "state",
                     kg_admin_token_state(t, now), "createdAt",
                     adm_json_time(t->created_at), "createdBy", t->created_by,
                     "expiresAt", adm_json_time(t->expires_at), "lastUsedAt",
                     adm_json_time(t->last_used_at), "revokedAt",
                     adm_json_time(t->revoked_at));
}
