/* The API key lifecycle: create, read, update, disable, rotate, revoke. */
#include "keygate/keys.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/duration.h"
#include "keygate/money.h"
#include "keygate/store_keys.h"
#include "keygate/timefmt.h"

static const char *const key_status_names[] = {"active", "inactive", "deleted"};

const char *kg_key_status_name(kg_key_status_t status)
{
    if ((int)status < 0 || status > KG_KEY_DELETED) {
        return "unknown";
    }
    return key_status_names[status];
}

bool kg_key_status_parse(const char *s, kg_key_status_t *status)
{
    for (int i = 0; i <= KG_KEY_DELETED; i++) {
        if (strcmp(s, key_status_names[i]) == 0) {
            *status = (kg_key_status_t)i;
            return true;
        }
    }
    return false;
}

/* Replace an owned string with a copy of s. */
static kg_err_t key_set_str(char **slot, const char *s)
{
    char *copy = strdup(s);

    if (copy == NULL) {
        return KG_ERR_NOMEM;
    }
    free(*slot);
    *slot = copy;
    return KG_OK;
}

/* A grace that has ended is no grace: purge drops its secret later. */
static void key_settle(kg_key_t *k)
{
    if (k->grace_until != KG_NONE && k->grace_until <= kg_clock_now()) {
        k->grace_until = KG_NONE;
    }
}

/* Accept "<id>" or "<prefix>_<id>"; writes the id or returns false. */
static bool key_ref_id(const char *ref, char id[KG_TOKEN_ID_LEN + 1])
{
    size_t len = strlen(ref);
    const char *p = ref;

    if (len > KG_TOKEN_ID_LEN + 1 &&
        len <= KG_TOKEN_PREFIX_MAX + 1 + KG_TOKEN_ID_LEN &&
        ref[len - KG_TOKEN_ID_LEN - 1] == '_') {
        p = ref + len - KG_TOKEN_ID_LEN;
    }
    if (!kg_token_id_valid(p)) {
        return false;
    }
    memcpy(id, p, KG_TOKEN_ID_LEN + 1);
    return true;
}

kg_err_t kg_keys_get(const kg_keys_ctx_t *ctx, const char *ref, kg_key_t *out,
                     kg_diag_t *diag)
{
    char id[KG_TOKEN_ID_LEN + 1];
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    if (!key_ref_id(ref, id)) {
        return kg_diag_fail(diag, KG_ERR_NOT_FOUND,
                            "no key '%.64s' (a key id is 12 letters and "
                            "digits, like the part after 'kg_')",
                            ref);
    }
    rc = kg_store_key_get(ctx->store, id, out, diag);
    if (rc == KG_ERR_NOT_FOUND) {
        rc = kg_diag_fail(diag, KG_ERR_NOT_FOUND, "no key '%s'", id);
    }
    if (rc == KG_OK) {
        key_settle(out);
    }
    return rc;
}

kg_err_t kg_keys_list(const kg_keys_ctx_t *ctx, const kg_key_filter_t *filter,
                      kg_key_t **list, size_t *count, kg_diag_t *diag)
{
    kg_workspace_t ws;
    kg_key_filter_t by_id = *filter;
    kg_err_t rc = KG_OK;

    *list = NULL;
    *count = 0;
    memset(&ws, 0, sizeof(ws));
    if (filter->workspace != NULL) {
        rc = kg_workspace_get(ctx->store, filter->workspace, &ws, diag);
        if (rc != KG_OK) {
            return rc;
        }
        by_id.workspace = ws.id;
    }
    rc = kg_store_key_list(ctx->store, &by_id, list, count, diag);
    for (size_t i = 0; rc == KG_OK && i < *count; i++) {
        key_settle(&(*list)[i]);
    }
    kg_workspace_clear(&ws);
    return rc;
}

/* An expiry must lie in the future and within the maximum TTL. */
static kg_err_t key_check_expiry(const kg_keys_ctx_t *ctx, int64_t expires_at,
                                 int64_t now, kg_diag_t *diag)
{
    char bound[KG_DURATION_STRLEN];
    char when[KG_TIME_STRLEN];

    kg_duration_format(ctx->max_ttl, bound, sizeof(bound));
    if (expires_at == KG_NONE) {
        if (ctx->max_ttl > 0) {
            return kg_diag_fail(diag, KG_ERR_TTL_BOUND,
                                "a key cannot be made to never expire: the "
                                "maximum key lifetime is %s ([keys] max_ttl)",
                                bound);
        }
        return KG_OK;
    }
    if (expires_at <= now) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "expiry %s is not in the future",
                            kg_time_format(expires_at, when, sizeof(when)));
    }
    if (ctx->max_ttl > 0 && expires_at - now > ctx->max_ttl) {
        return kg_diag_fail(diag, KG_ERR_TTL_BOUND,
                            "expiry %s is beyond the maximum key lifetime of "
                            "%s ([keys] max_ttl)",
                            kg_time_format(expires_at, when, sizeof(when)),
                            bound);
    }
    return KG_OK;
}

static kg_err_t key_check_rate(const char *what, int64_t v, kg_diag_t *diag)
{
    if (v != KG_NONE && (v <= 0 || v > KG_RATE_MAX)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "%s must be a whole number from 1 to %lld", what,
                            (long long)KG_RATE_MAX);
    }
    return KG_OK;
}

static kg_err_t key_check_money(const char *what, int64_t v, kg_diag_t *diag)
{
    if (v != KG_NONE && (v < 0 || v > KG_MONEY_MAX)) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "%s is out of range", what);
    }
    return KG_OK;
}

/* Validate spec and apply it to k (which holds the current state). */
static kg_err_t key_apply_spec(const kg_keys_ctx_t *ctx,
                               const kg_key_spec_t *spec, kg_key_t *k,
                               int64_t now, kg_diag_t *diag)
{
    kg_err_t rc = KG_OK;

    if (spec->name != NULL) {
        rc = kg_validate_name(spec->name, "key name", diag);
        if (rc != KG_OK) {
            return rc;
        }
        snprintf(k->name, sizeof(k->name), "%s", spec->name);
    }
    if (spec->description != NULL) {
        rc = kg_validate_text(spec->description, KG_DESCRIPTION_MAX,
                              "description", diag);
        if (rc == KG_OK) {
            rc = key_set_str(&k->description, spec->description);
        }
    }
    if (rc == KG_OK && spec->metadata != NULL) {
        rc = kg_validate_metadata(spec->metadata, diag);
        if (rc == KG_OK) {
            rc = key_set_str(&k->metadata, spec->metadata);
        }
    }
    if (rc == KG_OK && spec->rules != NULL) {
        rc = kg_validate_rules(spec->rules, diag);
        if (rc == KG_OK) {
            rc = key_set_str(&k->rules, spec->rules);
        }
    }
    if (rc != KG_OK) {
        return rc;
    }
    if (spec->set_expires) {
        rc = key_check_expiry(ctx, spec->expires_at, now, diag);
        if (rc != KG_OK) {
            return rc;
        }
        k->expires_at = spec->expires_at;
    }
    if (spec->set_usage_limit) {
        rc = key_check_money("usage limit", spec->usage_limit, diag);
        if (rc != KG_OK) {
            return rc;
        }
        k->usage_limit = spec->usage_limit;
    }
    if (spec->set_period_limit) {
        if (spec->period == KG_PERIOD_NONE) {
            k->period_limit = KG_NONE;
            k->period_started_at = KG_NONE;
            k->period_usage = 0;
        } else {
            rc = key_check_money("period limit", spec->period_limit, diag);
            if (rc != KG_OK) {
                return rc;
            }
            if (spec->period != k->period) {
                k->period_usage = 0;
                k->period_started_at = kg_period_start(spec->period, now);
            }
            k->period_limit = spec->period_limit;
        }
        k->period = spec->period;
    }
    if ((spec->set_rpm &&
         (rc = key_check_rate("rpm", spec->rpm, diag)) != KG_OK) ||
        (spec->set_tpm &&
         (rc = key_check_rate("tpm", spec->tpm, diag)) != KG_OK) ||
        (spec->set_max_concurrent &&
         (rc = key_check_rate("max concurrent", spec->max_concurrent, diag)) !=
             KG_OK)) {
        return rc;
    }
    k->rpm = spec->set_rpm ? spec->rpm : k->rpm;
    k->tpm = spec->set_tpm ? spec->tpm : k->tpm;
    k->max_concurrent =
        spec->set_max_concurrent ? spec->max_concurrent : k->max_concurrent;
    return KG_OK;
}

/* Insert the hash of tok's secret as the key's current secret. */
static kg_err_t key_store_secret(const kg_keys_ctx_t *ctx,
                                 const kg_token_t *tok, int64_t now,
                                 kg_diag_t *diag)
{
    unsigned char hash[KG_KEYHASH_LEN];
    kg_err_t rc;

    kg_keyhash_compute(ctx->hashkey, tok->id, tok->secret, hash);
    rc = kg_store_key_secret_add(ctx->store, tok->id, hash, now, diag);
    sodium_memzero(hash, sizeof(hash));
    return rc;
}

static void key_defaults(const kg_keys_ctx_t *ctx, kg_key_t *k, int64_t now)
{
    memset(k, 0, sizeof(*k));
    k->status = KG_KEY_ACTIVE;
    k->created_at = now;
    k->updated_at = now;
    k->last_used_at = KG_NONE;
    k->expires_at = ctx->default_ttl > 0 ? now + ctx->default_ttl : KG_NONE;
    k->usage_limit = KG_NONE;
    k->period = KG_PERIOD_NONE;
    k->period_limit = KG_NONE;
    k->period_started_at = KG_NONE;
    k->rpm = KG_NONE;
    k->tpm = KG_NONE;
    k->max_concurrent = KG_NONE;
    k->grace_until = KG_NONE;
}

/* Audit an action on a key with detail (borrowed) and close the change. */
static kg_err_t key_audit(const kg_keys_ctx_t *ctx, const char *action,
                          const char *id, json_t *detail, kg_diag_t *diag)
{
    return kg_audit_record(ctx->store, ctx->actor, action, "key", id, detail,
                           diag);
}

/* Finish a transaction: commit on success, else roll back. */
static kg_err_t key_finish(const kg_keys_ctx_t *ctx, kg_err_t rc,
                           kg_diag_t *diag)
{
    if (rc != KG_OK) {
        kg_store_rollback(ctx->store);
        return rc;
    }
    return kg_store_commit(ctx->store, diag);
}

kg_err_t kg_keys_create(const kg_keys_ctx_t *ctx, const kg_key_spec_t *spec,
                        kg_key_t *out, char *token, kg_diag_t *diag)
{
    kg_workspace_t ws;
    kg_token_t tok;
    kg_key_t k;
    json_t *detail = NULL;
    int64_t now = kg_clock_now();
    kg_err_t rc;

    memset(&ws, 0, sizeof(ws));
    memset(&tok, 0, sizeof(tok));
    memset(token, 0, KG_TOKEN_STRLEN);
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    key_defaults(ctx, &k, now);
    if (spec->name == NULL) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "a key needs a name");
    }
    rc = key_set_str(&k.description, "");
    if (rc == KG_OK) {
        rc = key_set_str(&k.metadata, "{}");
    }
    if (rc == KG_OK) {
        rc = key_set_str(&k.rules, "{}");
    }
    if (rc == KG_OK) {
        rc = key_apply_spec(ctx, spec, &k, now, diag);
    }
    if (rc == KG_OK && !spec->set_expires) {
        rc = key_check_expiry(ctx, k.expires_at, now, diag);
    }
    if (rc != KG_OK) {
        kg_key_clear(&k);
        return rc;
    }
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        kg_key_clear(&k);
        return rc;
    }
    rc = kg_workspace_get(
        ctx->store, spec->workspace ? spec->workspace : KG_WORKSPACE_DEFAULT,
        &ws, diag);
    if (rc != KG_OK) {
        goto out;
    }
    snprintf(k.workspace_id, sizeof(k.workspace_id), "%s", ws.id);
    rc = kg_token_generate(ctx->prefix, &tok);
    if (rc != KG_OK) {
        rc = kg_diag_fail(diag, KG_ERR_CONFIG, "bad key prefix '%s'",
                          ctx->prefix);
        goto out;
    }
    snprintf(k.id, sizeof(k.id), "%s", tok.id);
    snprintf(k.prefix, sizeof(k.prefix), "%s", tok.prefix);
    memcpy(k.last4, tok.secret + KG_TOKEN_SECRET_LEN - 4, 4);
    rc = kg_store_key_insert(ctx->store, &k, diag);
    if (rc == KG_OK) {
        rc = key_store_secret(ctx, &tok, now, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    detail = kg_key_to_json(&k);
    json_object_set_new(detail, "workspace", json_string(ws.name));
    rc = key_audit(ctx, "create", k.id, detail, diag);
    if (rc == KG_OK) {
        rc = kg_token_format(&tok, token, KG_TOKEN_STRLEN);
    }
out:
    json_decref(detail);
    kg_token_wipe(&tok);
    kg_workspace_clear(&ws);
    rc = key_finish(ctx, rc, diag);
    if (rc == KG_OK && out != NULL) {
        rc = kg_keys_get(ctx, k.id, out, diag);
    }
    if (rc != KG_OK) {
        sodium_memzero(token, KG_TOKEN_STRLEN);
    }
    kg_key_clear(&k);
    return rc;
}

/*
 * {"field": {"from": old, "to": new}} for every public field that changed;
 * not periodUsage, a counter that reads null without a period.
 */
static json_t *key_diff(const kg_key_t *before, const kg_key_t *after)
{
    json_t *a = kg_key_to_json(before);
    json_t *b = kg_key_to_json(after);
    json_t *changed = json_object();
    json_t *va; /* borrowed */
    const char *field;

    if (a == NULL || b == NULL || changed == NULL) {
        json_decref(a);
        json_decref(b);
        json_decref(changed);
        return NULL;
    }
    json_object_foreach(a, field, va)
    {
        json_t *vb = json_object_get(b, field); /* borrowed */

        if (strcmp(field, "updatedAt") == 0 ||
            strcmp(field, "periodUsage") == 0 || json_equal(va, vb)) {
            continue;
        }
        json_object_set_new(
            changed, field,
            json_pack("{s:O, s:O}", "from", va, "to", vb ? vb : json_null()));
    }
    json_decref(a);
    json_decref(b);
    return changed;
}

/* Load a key inside the current transaction, refusing deleted keys. */
static kg_err_t key_load_live(const kg_keys_ctx_t *ctx, const char *ref,
                              kg_key_t *k, kg_diag_t *diag)
{
    kg_err_t rc = kg_keys_get(ctx, ref, k, diag);

    if (rc == KG_OK && k->status == KG_KEY_DELETED) {
        rc = kg_diag_fail(diag, KG_ERR_STATE,
                          "key %s is revoked; a revoked key cannot be "
                          "changed",
                          k->id);
    }
    return rc;
}

kg_err_t kg_keys_update(const kg_keys_ctx_t *ctx, const char *ref,
                        const kg_key_spec_t *spec, kg_key_t *out,
                        kg_diag_t *diag)
{
    kg_key_t before;
    kg_key_t k;
    bool reset_period;
    json_t *changed = NULL;
    json_t *detail = NULL;
    int64_t now = kg_clock_now();
    kg_err_t rc;

    memset(&before, 0, sizeof(before));
    memset(&k, 0, sizeof(k));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (spec->workspace != NULL) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "a key cannot move to another workspace");
    }
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = key_load_live(ctx, ref, &before, diag);
    if (rc == KG_OK) {
        rc = kg_keys_get(ctx, before.id, &k, diag);
    }
    if (rc == KG_OK) {
        rc = key_apply_spec(ctx, spec, &k, now, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    /* The period's spend is written only when the spec restarted it. */
    reset_period = k.period_usage != before.period_usage ||
                   k.period_started_at != before.period_started_at;
    rc = kg_store_key_update(ctx->store, &k, reset_period, now, diag);
    if (rc != KG_OK) {
        goto out;
    }
    changed = key_diff(&before, &k);
    detail = json_pack("{s:o}", "changed", changed ? changed : json_object());
    changed = NULL;
    rc = key_audit(ctx, "update", k.id, detail, diag);
out:
    json_decref(detail);
    rc = key_finish(ctx, rc, diag);
    if (rc == KG_OK && out != NULL) {
        rc = kg_keys_get(ctx, k.id, out, diag);
    }
    kg_key_clear(&before);
    kg_key_clear(&k);
    return rc;
}

static kg_err_t key_write_status(const kg_keys_ctx_t *ctx, const char *id,
                                 kg_key_status_t status, kg_diag_t *diag)
{
    return kg_store_key_set_status(ctx->store, id, status, kg_clock_now(),
                                   diag);
}

/* Move a key to status with action audited; shared by disable/enable. */
static kg_err_t key_transition(const kg_keys_ctx_t *ctx, const char *ref,
                               kg_key_status_t to, const char *action,
                               kg_key_t *out, kg_diag_t *diag)
{
    kg_key_t k;
    json_t *detail = NULL;
    char when[KG_TIME_STRLEN];
    kg_err_t rc;

    memset(&k, 0, sizeof(k));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = key_load_live(ctx, ref, &k, diag);
    if (rc != KG_OK) {
        goto out;
    }
    if (to == KG_KEY_ACTIVE && k.expires_at != KG_NONE &&
        k.expires_at <= kg_clock_now()) {
        rc = kg_diag_fail(
            diag, KG_ERR_STATE,
            "key %s expired at %s; give it a new expiry with "
            "'keygate keys update %s --ttl ...' first",
            k.id, kg_time_format(k.expires_at, when, sizeof(when)), k.id);
        goto out;
    }
    if (k.status == to) {
        goto out; /* already there: nothing to change or audit */
    }
    rc = key_write_status(ctx, k.id, to, diag);
    if (rc != KG_OK) {
        goto out;
    }
    detail = json_pack("{s:s, s:s}", "from", kg_key_status_name(k.status), "to",
                       kg_key_status_name(to));
    rc = key_audit(ctx, action, k.id, detail, diag);
out:
    json_decref(detail);
    rc = key_finish(ctx, rc, diag);
    if (rc == KG_OK && out != NULL) {
        rc = kg_keys_get(ctx, k.id, out, diag);
    }
    kg_key_clear(&k);
    return rc;
}

kg_err_t kg_keys_disable(const kg_keys_ctx_t *ctx, const char *ref,
                         kg_key_t *out, kg_diag_t *diag)
{
    return key_transition(ctx, ref, KG_KEY_INACTIVE, "disable", out, diag);
}

kg_err_t kg_keys_enable(const kg_keys_ctx_t *ctx, const char *ref,
                        kg_key_t *out, kg_diag_t *diag)
{
    return key_transition(ctx, ref, KG_KEY_ACTIVE, "enable", out, diag);
}

kg_err_t kg_keys_rotate(const kg_keys_ctx_t *ctx, const char *ref,
                        int64_t grace, kg_key_t *out, char *token,
                        kg_diag_t *diag)
{
    kg_key_t k;
    kg_token_t tok;
    json_t *detail = NULL;
    char graces[KG_DURATION_STRLEN];
    int64_t now = kg_clock_now();
    int64_t max_grace = ctx->max_ttl > 0 ? ctx->max_ttl : KG_DURATION_MAX;
    kg_err_t rc;

    memset(&k, 0, sizeof(k));
    memset(&tok, 0, sizeof(tok));
    memset(token, 0, KG_TOKEN_STRLEN);
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (grace < 0 || grace > max_grace) {
        kg_duration_format(max_grace, graces, sizeof(graces));
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "grace period must be between 0 and the maximum "
                            "key lifetime of %s ([keys] max_ttl)",
                            graces);
    }
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = key_load_live(ctx, ref, &k, diag);
    if (rc != KG_OK) {
        goto out;
    }
    /* Old secrets past their grace go. With a grace the current secret
     * gets it; without one every earlier secret goes at once, including
     * those still inside an earlier rotation's grace (a rotation after a
     * leak must leave no old secret working). */
    rc = kg_store_key_secret_drop_stale(ctx->store, now, diag);
    if (rc == KG_OK && grace == 0) {
        rc = kg_store_key_secret_drop(ctx->store, k.id, diag);
    } else if (rc == KG_OK) {
        rc = kg_store_key_secret_grace(ctx->store, k.id, now + grace, diag);
    }
    if (rc == KG_OK) {
        rc = kg_token_regenerate(ctx->prefix, k.id, &tok);
    }
    if (rc == KG_OK) {
        rc = key_store_secret(ctx, &tok, now, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    memcpy(k.last4, tok.secret + KG_TOKEN_SECRET_LEN - 4, 4);
    rc = kg_store_key_set_last4(ctx->store, k.id, k.last4, now, diag);
    if (rc != KG_OK) {
        goto out;
    }
    detail = json_pack("{s:s}", "grace",
                       kg_duration_format(grace, graces, sizeof(graces)));
    rc = key_audit(ctx, "rotate", k.id, detail, diag);
    if (rc == KG_OK) {
        rc = kg_token_format(&tok, token, KG_TOKEN_STRLEN);
    }
out:
    json_decref(detail);
    kg_token_wipe(&tok);
    rc = key_finish(ctx, rc, diag);
    if (rc == KG_OK && out != NULL) {
        rc = kg_keys_get(ctx, k.id, out, diag);
    }
    if (rc != KG_OK) {
        sodium_memzero(token, KG_TOKEN_STRLEN);
    }
    kg_key_clear(&k);
    return rc;
}

/* Revoke inside an open transaction; audited as action. */
static kg_err_t key_revoke_locked(const kg_keys_ctx_t *ctx, const kg_key_t *k,
                                  const char *action, kg_diag_t *diag)
{
    json_t *detail = NULL;
    kg_err_t rc;

    rc = key_write_status(ctx, k->id, KG_KEY_DELETED, diag);
    if (rc == KG_OK) {
        rc = kg_store_key_secret_drop(ctx->store, k->id, diag);
    }
    if (rc == KG_OK) {
        detail = json_pack("{s:s, s:s}", "from", kg_key_status_name(k->status),
                           "to", "deleted");
        rc = key_audit(ctx, action, k->id, detail, diag);
        json_decref(detail);
    }
    return rc;
}

kg_err_t kg_keys_revoke(const kg_keys_ctx_t *ctx, const char *ref,
                        kg_key_t *out, bool *already, kg_diag_t *diag)
{
    kg_key_t k;
    kg_err_t rc;

    memset(&k, 0, sizeof(k));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (already != NULL) {
        *already = false;
    }
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_keys_get(ctx, ref, &k, diag);
    if (rc == KG_OK && k.status != KG_KEY_DELETED) {
        rc = key_revoke_locked(ctx, &k, "revoke", diag);
    } else if (rc == KG_OK && already != NULL) {
        *already = true;
    }
    rc = key_finish(ctx, rc, diag);
    if (rc == KG_OK && out != NULL) {
        rc = kg_keys_get(ctx, k.id, out, diag);
    }
    kg_key_clear(&k);
    return rc;
}

kg_err_t kg_keys_delete(const kg_keys_ctx_t *ctx, const char *ref,
                        kg_diag_t *diag)
{
    kg_key_t k;
    json_t *detail = NULL;
    kg_err_t rc;

    memset(&k, 0, sizeof(k));
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_keys_get(ctx, ref, &k, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = kg_store_key_delete(ctx->store, k.id, diag);
    if (rc != KG_OK) {
        goto out;
    }
    detail =
        json_pack("{s:s, s:s, s:s}", "name", k.name, "workspace",
                  k.workspace_name, "status", kg_key_status_name(k.status));
    rc = key_audit(ctx, "delete", k.id, detail, diag);
out:
    json_decref(detail);
    rc = key_finish(ctx, rc, diag);
    kg_key_clear(&k);
    return rc;
}

kg_err_t kg_keys_purge_expired(const kg_keys_ctx_t *ctx, size_t *flipped,
                               kg_diag_t *diag)
{
    int64_t now = kg_clock_now();
    size_t total = 0;
    kg_err_t rc = KG_OK;

    if (flipped != NULL) {
        *flipped = 0;
    }
    /* Batches of at most KG_STORE_KEYS_EXPIRED_BATCH keys keep each write
     * transaction short. */
    for (;;) {
        char ids[KG_STORE_KEYS_EXPIRED_BATCH][KG_TOKEN_ID_LEN + 1];
        size_t n = 0;

        rc = kg_store_begin(ctx->store, diag);
        if (rc != KG_OK) {
            return rc;
        }
        rc = kg_store_key_expired(ctx->store, now, ids,
                                  KG_STORE_KEYS_EXPIRED_BATCH, &n, diag);
        for (size_t i = 0; rc == KG_OK && i < n; i++) {
            kg_key_t k;

            rc = kg_keys_get(ctx, ids[i], &k, diag);
            if (rc == KG_OK) {
                rc = key_revoke_locked(ctx, &k, "expire", diag);
            }
            kg_key_clear(&k);
        }
        if (rc == KG_OK && n == 0) {
            rc = kg_store_key_secret_drop_stale(ctx->store, now, diag);
        }
        rc = key_finish(ctx, rc, diag);
        if (rc != KG_OK) {
            return rc;
        }
        total += n;
        if (flipped != NULL) {
            *flipped = total;
        }
        if (n == 0) {
            return KG_OK;
        }
    }
}

/* What kg_keys_verify looks for among a key's live secrets. */
typedef struct key_match {
    const unsigned char *want; /* the token's keyed hash */
    bool match;
} key_match_t;

/* Compare one secret with the token's hash, in constant time: every
 * secret is compared, a match or not. */
static void key_match_secret(void *arg, const kg_store_key_secret_t *s)
{
    key_match_t *m = arg;

    if (kg_keyhash_equal(m->want, s->hash)) {
        m->match = true;
    }
}

kg_err_t kg_keys_verify(const kg_keys_ctx_t *ctx, const kg_token_t *tok,
                        kg_key_t *out, kg_diag_t *diag)
{
    unsigned char want[KG_KEYHASH_LEN];
    key_match_t m = {.want = want, .match = false};
    kg_key_t k;
    int64_t now = kg_clock_now();
    kg_err_t rc;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    rc = kg_keys_get(ctx, tok->id, &k, NULL);
    if (rc == KG_ERR_NOT_FOUND) {
        return KG_ERR_INVALID_KEY;
    }
    if (rc != KG_OK) {
        return kg_diag_fail(diag, rc, "store error while verifying a key");
    }
    kg_keyhash_compute(ctx->hashkey, tok->id, tok->secret, want);
    rc = kg_store_key_secret_each(ctx->store, k.id, now, key_match_secret, &m,
                                  diag);
    sodium_memzero(want, sizeof(want));
    if (rc == KG_OK && (!m.match || k.status != KG_KEY_ACTIVE ||
                        strcmp(k.prefix, tok->prefix) != 0)) {
        rc = KG_ERR_INVALID_KEY;
    } else if (rc == KG_OK && k.expires_at != KG_NONE && k.expires_at <= now) {
        rc = KG_ERR_KEY_EXPIRED;
    }
    if (rc == KG_OK && out != NULL) {
        *out = k;
    } else {
        kg_key_clear(&k);
    }
    return rc;
}

/* json_t for an optional time: string or null. */
static json_t *key_json_time(int64_t t)
{
    char buf[KG_TIME_STRLEN];

    return t == KG_NONE ? json_null()
                        : json_string(kg_time_format(t, buf, sizeof(buf)));
}

static json_t *key_json_count(int64_t v)
{
    return v == KG_NONE ? json_null() : json_integer(v);
}

json_t *kg_key_to_json(const kg_key_t *k)
{
    char display[KG_TOKEN_DISPLAY_STRLEN];
    json_t *metadata = json_loads(k->metadata ? k->metadata : "{}", 0, NULL);
    json_t *rules = json_loads(k->rules ? k->rules : "{}", 0, NULL);

    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:o, "
        "s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s}",
        "id", k->id, "name", k->name, "display",
        kg_token_display(k->prefix, k->id, k->last4, display, sizeof(display)),
        "status", kg_key_status_name(k->status), "workspaceId", k->workspace_id,
        "description", k->description ? k->description : "", "metadata",
        metadata ? metadata : json_object(), "workspace", k->workspace_name,
        "createdAt", key_json_time(k->created_at), "updatedAt",
        key_json_time(k->updated_at), "lastUsedAt",
        key_json_time(k->last_used_at), "expiresAt",
        key_json_time(k->expires_at), "usageLimit",
        kg_money_json(k->usage_limit), "usage", kg_money_json(k->usage),
        "period",
        k->period ? json_string(kg_period_name(k->period)) : json_null(),
        "periodLimit", kg_money_json(k->period_limit), "periodUsage",
        kg_money_json(k->period == KG_PERIOD_NONE ? KG_NONE : k->period_usage),
        "periodStartedAt", key_json_time(k->period_started_at), "rpm",
        key_json_count(k->rpm), "tpm", key_json_count(k->tpm), "maxConcurrent",
        key_json_count(k->max_concurrent), "rules",
        rules ? rules : json_object(), "graceUntil",
        key_json_time(k->grace_until), "currency", KG_MONEY_UNIT);
}

/* kg_key_to_json plus what the budget looks like now. */
json_t *kg_key_to_json_budget(const kg_key_t *k, int64_t now)
{
    json_t *j = kg_key_to_json(k);
    int64_t period_usage = k->period_usage;
    int64_t remaining = KG_NONE;

    if (j == NULL) {
        return NULL;
    }
    if (k->period == KG_PERIOD_NONE) {
        period_usage = KG_NONE;
    } else if (k->period_started_at < kg_period_start(k->period, now)) {
        period_usage = 0; /* a new period began since the last charge */
    }
    if (k->usage_limit != KG_NONE) {
        remaining = k->usage_limit - k->usage - k->reserved;
        remaining = remaining < 0 ? 0 : remaining;
    }
    json_object_set_new(j, "periodUsage", kg_money_json(period_usage));
    json_object_set_new(j, "reserved", kg_money_json(k->reserved));
    json_object_set_new(j, "remaining", kg_money_json(remaining));
    json_object_set_new(j, "periodResetsAt",
                        k->period == KG_PERIOD_NONE
                            ? json_null()
                            : key_json_time(kg_period_next(k->period, now)));
    return j;
}

void kg_key_clear(kg_key_t *key)
{
    if (key == NULL) {
        return;
    }
    free(key->description);
    free(key->metadata);
    free(key->rules);
    key->description = NULL;
    key->metadata = NULL;
    key->rules = NULL;
}

void kg_keys_list_free(kg_key_t **list, size_t count)
{
    if (list == NULL || *list == NULL) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        kg_key_clear(&(*list)[i]);
    }
    free(*list);
    *list = NULL;
}

kg_err_t kg_keys_touch(const kg_keys_ctx_t *ctx, const kg_key_seen_t *seen,
                       size_t n, kg_diag_t *diag)
{
    kg_err_t rc;

    if (n == 0) {
        return KG_OK;
    }
    rc = kg_store_begin(ctx->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_store_key_touch(ctx->store, seen, n, diag);
    return key_finish(ctx, rc, diag);
}
