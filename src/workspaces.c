/* Workspaces: the owners of keys, credits, rules and provider credentials. */
#include "keygate/workspaces.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/money.h"
#include "keygate/timefmt.h"
#include "store/sqlite/sqlite_store.h"

static const char *const ws_mode_names[] = {"api-keys", "credits", "hybrid",
                                            "pool"};

#define WS_COLUMNS                                                           \
    "w.id, w.name, w.mode, w.credits_balance, w.rules, w.created_at, "       \
    "w.updated_at, (SELECT count(*) FROM api_keys k WHERE k.workspace_id = " \
    "w.id AND k.status != 'deleted')"

static const char ws_sql_get[] = "SELECT " WS_COLUMNS " FROM workspaces w "
                                 "WHERE w.id = ?1 OR w.name = ?1 "
                                 "ORDER BY w.id = ?1 DESC LIMIT 1";
static const char ws_sql_list[] =
    "SELECT " WS_COLUMNS " FROM workspaces w ORDER BY w.name";
static const char ws_sql_insert[] =
    "INSERT INTO workspaces (id, name, mode, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?)";
static const char ws_sql_update[] =
    "UPDATE workspaces SET name = ?, mode = ?, rules = ?, updated_at = ? "
    "WHERE id = ?";
static const char ws_sql_credit[] =
    "UPDATE workspaces SET credits_balance = credits_balance + ?, "
    "updated_at = ? WHERE id = ?";
/*
 * An operator's credit change must reach a running gateway, but the usage
 * writer's own charges must not flush its caches: so the revision is
 * bumped here, not by a trigger on credits_balance.
 */
static const char ws_sql_bump_revision[] =
    "UPDATE key_revision SET rev = rev + 1 WHERE id = 1";

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

static kg_err_t ws_from_row(sqlite3_stmt *st, kg_workspace_t *ws)
{
    memset(ws, 0, sizeof(*ws));
    snprintf(ws->id, sizeof(ws->id), "%s", kg_sqlite_col_text(st, 0));
    snprintf(ws->name, sizeof(ws->name), "%s", kg_sqlite_col_text(st, 1));
    if (!kg_ws_mode_parse(kg_sqlite_col_text(st, 2), &ws->mode)) {
        ws->mode = KG_MODE_API_KEYS;
    }
    ws->credits_balance = sqlite3_column_int64(st, 3);
    ws->rules = strdup(kg_sqlite_col_text(st, 4));
    ws->created_at = sqlite3_column_int64(st, 5);
    ws->updated_at = sqlite3_column_int64(st, 6);
    ws->key_count = sqlite3_column_int64(st, 7);
    return ws->rules ? KG_OK : KG_ERR_NOMEM;
}

kg_err_t kg_workspace_get(kg_store_t *store, const char *ref,
                          kg_workspace_t *out, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ws_sql_get, diag);
    kg_err_t rc;
    int src;

    memset(out, 0, sizeof(*out));
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, ref);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        rc = ws_from_row(st, out);
    } else if (src == SQLITE_DONE) {
        rc = kg_diag_fail(diag, KG_ERR_NOT_FOUND, "no workspace '%.64s'", ref);
    } else {
        rc = kg_sqlite_error(store, src, "reading a workspace", diag);
    }
    kg_sqlite_reset(st);
    return rc;
}

kg_err_t kg_workspace_list(kg_store_t *store, kg_workspace_t **list,
                           size_t *count, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, ws_sql_list, diag);
    kg_workspace_t *arr = NULL;
    size_t n = 0;
    size_t cap = 0;
    kg_err_t rc = KG_OK;
    int src;

    *list = NULL;
    *count = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            kg_workspace_t *grown = realloc(arr, ncap * sizeof(*arr));

            if (grown == NULL) {
                rc = KG_ERR_NOMEM;
                break;
            }
            arr = grown;
            cap = ncap;
        }
        rc = ws_from_row(st, &arr[n++]);
        if (rc != KG_OK) {
            break;
        }
    }
    if (rc == KG_OK && src != SQLITE_DONE) {
        rc = kg_sqlite_error(store, src, "listing workspaces", diag);
    }
    kg_sqlite_reset(st);
    if (rc != KG_OK) {
        kg_workspace_list_free(&arr, n);
        return rc;
    }
    *list = arr;
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
    sqlite3_stmt *st;
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
    st = kg_sqlite_stmt(store, ws_sql_insert, diag);
    if (st == NULL) {
        rc = KG_ERR_STORE;
        goto out;
    }
    kg_sqlite_bind_text(st, 1, id);
    kg_sqlite_bind_text(st, 2, name);
    kg_sqlite_bind_text(st, 3, kg_ws_mode_name(mode));
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now);
    rc = kg_sqlite_exec(store, st, "creating a workspace", diag);
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
    sqlite3_stmt *st;
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
    st = kg_sqlite_stmt(store, ws_sql_update, diag);
    if (st == NULL) {
        rc = KG_ERR_STORE;
        goto out;
    }
    kg_sqlite_bind_text(st, 1, name);
    kg_sqlite_bind_text(st, 2, kg_ws_mode_name(mode));
    kg_sqlite_bind_text(st, 3, rules);
    sqlite3_bind_int64(st, 4, kg_clock_now());
    kg_sqlite_bind_text(st, 5, ws.id);
    rc = kg_sqlite_exec(store, st, "updating a workspace", diag);
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

kg_err_t kg_workspace_credit(kg_store_t *store, const char *actor,
                             const char *ref, int64_t delta, const char *note,
                             kg_workspace_t *out, kg_diag_t *diag)
{
    kg_workspace_t ws;
    sqlite3_stmt *st;
    json_t *detail = NULL;
    char from[KG_MONEY_STRLEN];
    char to[KG_MONEY_STRLEN];
    char amount[KG_MONEY_STRLEN];
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
    if (ws.credits_balance + delta < 0) {
        rc = kg_diag_fail(
            diag, KG_ERR_INVAL,
            "cannot deduct %s USD: workspace '%s' has %s USD",
            kg_money_format(-delta, amount, sizeof(amount)), ws.name,
            kg_money_format(ws.credits_balance, from, sizeof(from)));
        goto out;
    }
    if (ws.credits_balance + delta > KG_MONEY_MAX) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL,
                          "the balance would exceed the maximum amount");
        goto out;
    }
    st = kg_sqlite_stmt(store, ws_sql_credit, diag);
    if (st == NULL) {
        rc = KG_ERR_STORE;
        goto out;
    }
    sqlite3_bind_int64(st, 1, delta);
    sqlite3_bind_int64(st, 2, kg_clock_now());
    kg_sqlite_bind_text(st, 3, ws.id);
    rc = kg_sqlite_exec(store, st, "crediting a workspace", diag);
    if (rc != KG_OK) {
        goto out;
    }
    st = kg_sqlite_stmt(store, ws_sql_bump_revision, diag);
    rc = st ? kg_sqlite_exec(store, st, "crediting a workspace", diag)
            : KG_ERR_STORE;
    if (rc != KG_OK) {
        goto out;
    }
    detail =
        json_pack("{s:s, s:s, s:s, s:s?}", "delta",
                  kg_money_format(delta, amount, sizeof(amount)), "from",
                  kg_money_format(ws.credits_balance, from, sizeof(from)), "to",
                  kg_money_format(ws.credits_balance + delta, to, sizeof(to)),
                  "note", note);
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
