/* Workspaces: the owners of keys, credits, rules and provider credentials. */
#include "keygate/workspaces.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/money.h"
#include "keygate/timefmt.h"
#include "keygate/store_workspaces.h"

static const char *const ws_mode_names[] = {"api-keys", "credits", "hybrid",
                                            "pool"};

const char *kg_ws_mode_name(kg_ws_mode_t mode)
{
    if ((int)mode < 0 || mode > KG_MODE_POOL) {
        return "api-keys";
    }
    return ws_mode_names[mode];
}

bool kg_ws_mode_parse(const char *s, kg_ws_mode_t *mode)
{
    for (int i = 0; i <= KG_MODE_POOL; i++) {
        if (strcmp(s, ws_mode_names[i]) == 0) {
            *mode = (kg_ws_mode_t)i;
            return true;
        }
    }
    return false;
}

/* A stored row as the module's type; takes over the row's rules. */
static void ws_from_row(kg_store_workspace_t *row, kg_workspace_t *ws)
{
    memset(ws, 0, sizeof(*ws));
    snprintf(ws->id, sizeof(ws->id), "%s", row->id);
    snprintf(ws->name, sizeof(ws->name), "%s", row->name);
    if (!kg_ws_mode_parse(row->mode, &ws->mode)) {
        ws->mode = KG_MODE_API_KEYS;
    }
    ws->credits_balance = row->credits_balance;
    ws->rules = row->rules;
    row->rules = NULL;
    ws->created_at = row->created_at;
    ws->updated_at = row->updated_at;
    ws->key_count = row->key_count;
}

kg_err_t kg_workspace_get(kg_store_t *store, const char *ref,
                          kg_workspace_t *out, kg_diag_t *diag)
{
    kg_store_workspace_t row;
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    rc = kg_store_workspace_get(store, ref, &row, diag);
    if (rc == KG_OK) {
        ws_from_row(&row, out);
    } else if (rc == KG_ERR_NOT_FOUND) {
        rc = kg_diag_fail(diag, KG_ERR_NOT_FOUND, "no workspace '%.64s'", ref);
    }
    return rc;
}

kg_err_t kg_workspace_list(kg_store_t *store, kg_workspace_t **list,
                           size_t *count, kg_diag_t *diag)
{
    kg_store_workspace_t *rows = NULL;
    size_t n = 0;
    kg_err_t rc;

    *list = NULL;
    *count = 0;
    rc = kg_store_workspace_list(store, &rows, &n, diag);
    if (rc != KG_OK || n == 0) {
        kg_store_workspace_list_free(&rows, n);
        return rc;
    }
    *list = calloc(n, sizeof(**list));
    if (*list == NULL) {
        kg_store_workspace_list_free(&rows, n);
        return KG_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ws_from_row(&rows[i], &(*list)[i]);
    }
    kg_store_workspace_list_free(&rows, n);
    *count = n;
    return KG_OK;
}

/* Name free (and valid)? KG_ERR_EXISTS when another workspace has it. */
static kg_err_t ws_check_name(kg_store_t *store, const char *name,
                              const char *self_id, kg_diag_t *diag)
{
    kg_workspace_t other;
    kg_err_t rc;

    rc = kg_validate_name(name, "workspace name", diag);
    if (rc != KG_OK) {
        return rc;
    }
    if (kg_token_id_valid(name) &&
        (self_id == NULL || strcmp(name, self_id) != 0)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "workspace name '%s' looks like a workspace id; "
                            "choose another",
                            name);
    }
    rc = kg_workspace_get(store, name, &other, NULL);
    if (rc == KG_OK) {
        bool same = self_id != NULL && strcmp(other.id, self_id) == 0;

        kg_workspace_clear(&other);
        if (!same) {
            return kg_diag_fail(diag, KG_ERR_EXISTS,
                                "a workspace named '%s' already exists", name);
        }
        return KG_OK;
    }
    return rc == KG_ERR_NOT_FOUND ? KG_OK : rc;
}

kg_err_t kg_workspace_create(kg_store_t *store, const char *actor,
                             const char *name, kg_ws_mode_t mode,
                             kg_workspace_t *out, kg_diag_t *diag)
{
    char id[KG_WORKSPACE_ID_LEN + 1];
    kg_store_workspace_t row;
    json_t *detail = NULL;
    int64_t now = kg_clock_now();
    kg_err_t rc;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    rc = kg_store_begin(store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = ws_check_name(store, name, NULL, diag);
    if (rc != KG_OK) {
        goto out;
    }
    kg_token_random_base62(id, KG_WORKSPACE_ID_LEN);
    id[KG_WORKSPACE_ID_LEN] = '\0';
    memset(&row, 0, sizeof(row));
    snprintf(row.id, sizeof(row.id), "%s", id);
    snprintf(row.name, sizeof(row.name), "%s", name);
    snprintf(row.mode, sizeof(row.mode), "%s", kg_ws_mode_name(mode));
    row.created_at = now;
    row.updated_at = now;
    rc = kg_store_workspace_insert(store, &row, diag);
    if (rc != KG_OK) {
        goto out;
    }
    detail =
        json_pack("{s:s, s:s}", "name", name, "mode", kg_ws_mode_name(mode));
    rc = kg_audit_record(store, actor, "create", "workspace", id, detail, diag);
out:
    json_decref(detail);
    if (rc != KG_OK) {
        kg_store_rollback(store);
        return rc;
    }
    rc = kg_store_commit(store, diag);
    if (rc == KG_OK && out != NULL) {
        rc = kg_workspace_get(store, id, out, diag);
    }
    return rc;
}

kg_err_t kg_workspace_ensure_default(kg_store_t *store, const char *actor,
                                     kg_diag_t *diag)
{
    kg_workspace_t ws;
    kg_err_t rc = kg_workspace_get(store, KG_WORKSPACE_DEFAULT, &ws, diag);

    if (rc == KG_OK) {
        kg_workspace_clear(&ws);
        return KG_OK;
    }
    if (rc != KG_ERR_NOT_FOUND) {
        return rc;
    }
    return kg_workspace_create(store, actor, KG_WORKSPACE_DEFAULT,
                               KG_WORKSPACE_DEFAULT_MODE, NULL, diag);
}

/* Add {"field": {"from": a, "to": b}} to changed when a != b. */
static void ws_diff_str(json_t *changed, const char *field, const char *a,
                        const char *b)
{
    if (strcmp(a, b) != 0) {
        json_object_set_new(changed, field,
                            json_pack("{s:s, s:s}", "from", a, "to", b));
    }
}

kg_err_t kg_workspace_update(kg_store_t *store, const char *actor,
                             const char *ref,
                             const kg_workspace_changes_t *changes,
                             kg_workspace_t *out, kg_diag_t *diag)
{
    kg_workspace_t ws;
    json_t *changed = NULL;
    json_t *detail = NULL;
    const char *name;
    const char *rules;
    kg_ws_mode_t mode;
    kg_err_t rc;

    memset(&ws, 0, sizeof(ws));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (changes->rules != NULL) {
        rc = kg_validate_rules(changes->rules, diag);
        if (rc != KG_OK) {
            return rc;
        }
    }
    rc = kg_store_begin(store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_workspace_get(store, ref, &ws, diag);
    if (rc != KG_OK) {
        goto out;
    }
    name = changes->name ? changes->name : ws.name;
    mode = changes->set_mode ? changes->mode : ws.mode;
    rules = changes->rules ? changes->rules : ws.rules;
    if (changes->name != NULL) {
        rc = ws_check_name(store, name, ws.id, diag);
        if (rc != KG_OK) {
            goto out;
        }
    }
    rc = kg_store_workspace_update(
        store, ws.id, changes->name,
        changes->set_mode ? kg_ws_mode_name(changes->mode) : NULL,
        changes->rules, kg_clock_now(), diag);
    if (rc != KG_OK) {
        goto out;
    }
    changed = json_object();
    ws_diff_str(changed, "name", ws.name, name);
    ws_diff_str(changed, "mode", kg_ws_mode_name(ws.mode),
                kg_ws_mode_name(mode));
    ws_diff_str(changed, "rules", ws.rules, rules);
    detail = json_pack("{s:O}", "changed", changed);
    rc = kg_audit_record(
        store, actor, changes->set_mode && mode != ws.mode ? "mode" : "update",
        "workspace", ws.id, detail, diag);
out:
    json_decref(changed);
    json_decref(detail);
    if (rc != KG_OK) {
        kg_store_rollback(store);
    } else {
        rc = kg_store_commit(store, diag);
    }
    if (rc == KG_OK && out != NULL) {
        rc = kg_workspace_get(store, ws.id, out, diag);
    }
    kg_workspace_clear(&ws);
    return rc;
}

/* Why a credit change of delta to a balance of before was refused. */
static kg_err_t ws_credit_refused(const kg_workspace_t *ws, int64_t before,
                                  int64_t delta, kg_diag_t *diag)
{
    char from[KG_MONEY_STRLEN];
    char amount[KG_MONEY_STRLEN];

    if (before + delta < 0) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "cannot deduct %s USD: workspace '%s' has %s USD",
                            kg_money_format(-delta, amount, sizeof(amount)),
                            ws->name,
                            kg_money_format(before, from, sizeof(from)));
    }
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "the balance would exceed the maximum amount");
}

kg_err_t kg_workspace_credit(kg_store_t *store, const char *actor,
                             const char *ref, int64_t delta, const char *note,
                             kg_workspace_t *out, kg_diag_t *diag)
{
    kg_workspace_t ws;
    json_t *detail = NULL;
    char from[KG_MONEY_STRLEN];
    char to[KG_MONEY_STRLEN];
    char amount[KG_MONEY_STRLEN];
    int64_t before = 0;
    kg_err_t rc;

    memset(&ws, 0, sizeof(ws));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (delta < -KG_MONEY_MAX || delta > KG_MONEY_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "the amount is above the maximum of %lld USD",
                            (long long)KG_MONEY_MAX_USD);
    }
    if (note != NULL) {
        rc = kg_validate_text(note, KG_DESCRIPTION_MAX, "note", diag);
        if (rc != KG_OK) {
            return rc;
        }
    }
    rc = kg_store_begin(store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = kg_workspace_get(store, ref, &ws, diag);
    if (rc != KG_OK) {
        goto out;
    }
    /* One conditional write: the balance never leaves [0, the maximum]. */
    rc = kg_store_workspace_credit(store, ws.id, delta, KG_MONEY_MAX,
                                   kg_clock_now(), &before, diag);
    if (rc == KG_ERR_STATE) {
        rc = ws_credit_refused(&ws, before, delta, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    detail = json_pack("{s:s, s:s, s:s, s:s?}", "delta",
                       kg_money_format(delta, amount, sizeof(amount)), "from",
                       kg_money_format(before, from, sizeof(from)), "to",
                       kg_money_format(before + delta, to, sizeof(to)), "note",
                       note);
    rc = kg_audit_record(store, actor, "credit", "workspace", ws.id, detail,
                         diag);
out:
    json_decref(detail);
    if (rc != KG_OK) {
        kg_store_rollback(store);
    } else {
        rc = kg_store_commit(store, diag);
    }
    if (rc == KG_OK && out != NULL) {
        rc = kg_workspace_get(store, ws.id, out, diag);
    }
    kg_workspace_clear(&ws);
    return rc;
}

json_t *kg_workspace_to_json(const kg_workspace_t *ws)
{
    char money[KG_MONEY_STRLEN];
    char created[KG_TIME_STRLEN];
    char updated[KG_TIME_STRLEN];
    json_t *rules = json_loads(ws->rules ? ws->rules : "{}", 0, NULL);

    return json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:I, s:s, s:s, s:s}", "id", ws->id, "name",
        ws->name, "mode", kg_ws_mode_name(ws->mode), "creditsBalance",
        kg_money_format(ws->credits_balance, money, sizeof(money)), "rules",
        rules ? rules : json_object(), "keyCount", (json_int_t)ws->key_count,
        "createdAt", kg_time_format(ws->created_at, created, sizeof(created)),
        "updatedAt", kg_time_format(ws->updated_at, updated, sizeof(updated)),
        "currency", KG_MONEY_UNIT);
}

void kg_workspace_clear(kg_workspace_t *ws)
{
    if (ws != NULL) {
        free(ws->rules);
        ws->rules = NULL;
    }
}

void kg_workspace_list_free(kg_workspace_t **list, size_t count)
{
    if (list == NULL || *list == NULL) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        kg_workspace_clear(&(*list)[i]);
    }
    free(*list);
    *list = NULL;
}
