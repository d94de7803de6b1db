/* Admin API: workspaces, their credits and their own provider credentials. */
#include "admin_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/money.h"
#include "keygate/providers.h"
#include "keygate/workspaces.h"
#include "keygate/wscred.h"

static bool admin_ws_bad(admin_ctx_t *c, const char *field, const char *why)
{
    char msg[KG_DIAG_MAX + 80];

    snprintf(msg, sizeof(msg), "%.64s: %s", field, why);
    admin_reply_error(c, KG_ERR_INVAL, msg, field);
    return false;
}

void admin_h_workspaces_list(admin_ctx_t *c)
{
    kg_workspace_t *list = NULL;
    size_t n = 0;
    kg_diag_t diag = {{0}};
    json_t *data;
    kg_err_t rc = kg_workspace_list(c->store, &list, &n, &diag);

    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, NULL);
        return;
    }
    data = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(data, kg_workspace_to_json(&list[i]));
    }
    kg_workspace_list_free(&list, n);
    admin_reply_json(c, MHD_HTTP_OK,
                     json_pack("{s:s, s:o, s:n}", "object", "list", "data",
                               data, "nextCursor"));
}

/* The mode field: one of the modes' names. */
static bool admin_ws_mode(admin_ctx_t *c, json_t *v, kg_ws_mode_t *mode)
{
    if (!json_is_string(v) || !kg_ws_mode_parse(json_string_value(v), mode)) {
        return admin_ws_bad(c, "mode",
                            "one of api-keys, credits, hybrid, pool");
    }
    return true;
}

void admin_h_workspaces_create(admin_ctx_t *c)
{
    kg_workspace_t ws;
    kg_ws_mode_t mode = KG_MODE_API_KEYS;
    kg_diag_t diag = {{0}};
    const char *name = NULL;
    const char *field;
    json_t *v; /* borrowed */
    kg_err_t rc;

    if (!admin_need_body(c)) {
        return;
    }
    json_object_foreach(c->body, field, v)
    {
        if (strcmp(field, "name") == 0) {
            if (!json_is_string(v)) {
                admin_ws_bad(c, "name", "a string");
                return;
            }
            name = json_string_value(v);
        } else if (strcmp(field, "mode") == 0) {
            if (!admin_ws_mode(c, v, &mode)) {
                return;
            }
        } else {
            admin_ws_bad(c, field, "not a field of a new workspace");
            return;
        }
    }
    if (name == NULL) {
        admin_ws_bad(c, "name", "a workspace needs a name");
        return;
    }
    rc = kg_workspace_create(c->store, c->actor, name, mode, &ws, &diag);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, "name");
        return;
    }
    admin_reply_json(c, MHD_HTTP_CREATED, kg_workspace_to_json(&ws));
    kg_workspace_clear(&ws);
}

void admin_h_workspace_get(admin_ctx_t *c)
{
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_workspace_get(c->store, c->params[0], &ws, &diag);

    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, NULL);
        return;
    }
    admin_reply_json(c, MHD_HTTP_OK, kg_workspace_to_json(&ws));
    kg_workspace_clear(&ws);
}

void admin_h_workspace_update(admin_ctx_t *c)
{
    kg_workspace_changes_t ch;
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    char *rules = NULL;
    const char *field;
    json_t *v; /* borrowed */
    kg_err_t rc;

    memset(&ch, 0, sizeof(ch));
    if (!admin_need_body(c)) {
        return;
    }
    json_object_foreach(c->body, field, v)
    {
        if (strcmp(field, "name") == 0 && json_is_string(v)) {
            ch.name = json_string_value(v);
        } else if (strcmp(field, "mode") == 0) {
            if (!admin_ws_mode(c, v, &ch.mode)) {
                free(rules);
                return;
            }
            ch.set_mode = true;
        } else if (strcmp(field, "rules") == 0 && json_is_object(v)) {
            free(rules);
            rules = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
            ch.rules = rules;
        } else {
            admin_ws_bad(c, field,
                         strcmp(field, "name") == 0    ? "a string"
                         : strcmp(field, "rules") == 0 ? "a JSON object"
                                                       : "not a field that "
                                                         "can be changed");
            free(rules);
            return;
        }
    }
    rc = kg_workspace_update(c->store, c->actor, c->params[0], &ch, &ws, &diag);
    free(rules);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag,
                         strncmp(diag.msg, "rule", 4) == 0 ? "rules" : NULL);
        return;
    }
    admin_changed(c);
    admin_reply_json(c, MHD_HTTP_OK, kg_workspace_to_json(&ws));
    kg_workspace_clear(&ws);
}

/* "12.50" adds, "-12.50" deducts. */
static bool admin_ws_amount(admin_ctx_t *c, json_t *v, int64_t *delta)
{
    kg_diag_t diag = {{0}};
    const char *s;
    bool neg;

    if (!json_is_string(v)) {
        return admin_ws_bad(c, "amount",
                            "a decimal USD amount as a string: \"25.00\" adds, "
                            "\"-25.00\" deducts");
    }
    s = json_string_value(v);
    neg = s[0] == '-';
    if (kg_money_parse(neg ? s + 1 : s, delta, &diag) != KG_OK) {
        return admin_ws_bad(c, "amount", diag.msg);
    }
    if (*delta == 0) {
        return admin_ws_bad(c, "amount", "must not be zero");
    }
    *delta = neg ? -*delta : *delta;
    return true;
}

void admin_h_workspace_credits(admin_ctx_t *c)
{
    kg_workspace_t ws;
    kg_diag_t diag = {{0}};
    int64_t delta = 0;
    const char *note = NULL;
    bool have_amount = false;
    const char *field;
    json_t *v; /* borrowed */
    kg_err_t rc;

    if (!admin_need_body(c)) {
        return;
    }
    json_object_foreach(c->body, field, v)
    {
        if (strcmp(field, "amount") == 0) {
            if (!admin_ws_amount(c, v, &delta)) {
                return;
            }
            have_amount = true;
        } else if (strcmp(field, "note") == 0 && json_is_string(v)) {
            note = json_string_value(v);
        } else {
            admin_ws_bad(c, field,
                         strcmp(field, "note") == 0 ? "a string"
                                                    : "not a field of a "
                                                      "credit change");
            return;
        }
    }
    if (!have_amount) {
        admin_ws_bad(c, "amount", "required");
        return;
    }
    rc = kg_workspace_credit(c->store, c->actor, c->params[0], delta, note, &ws,
                             &diag);
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, rc == KG_ERR_INVAL ? "amount" : NULL);
        return;
    }
    admin_changed(c);
    admin_reply_json(c, MHD_HTTP_OK, kg_workspace_to_json(&ws));
    kg_workspace_clear(&ws);
}

void admin_h_credentials_list(admin_ctx_t *c)
{
    kg_wscred_info_t *list = NULL;
    size_t n = 0;
    kg_diag_t diag = {{0}};
    json_t *data;
    kg_err_t rc = kg_wscred_list(c->store, c->params[0], &list, &n, &diag);

    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, NULL);
        return;
    }
    data = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(data, kg_wscred_to_json(&list[i]));
    }
    kg_wscred_list_free(&list);
    admin_reply_json(c, MHD_HTTP_OK,
                     json_pack("{s:s, s:o, s:n}", "object", "list", "data",
                               data, "nextCursor"));
}

void admin_h_credential_put(admin_ctx_t *c)
{
    const char *provider = c->params[1];
    kg_wscred_info_t info;
    kg_diag_t diag = {{0}};
    json_t *cred; /* borrowed */
    const char *field;
    json_t *v; /* borrowed */
    kg_err_t rc;

    if (!admin_need_body(c)) {
        return;
    }
    json_object_foreach(c->body, field, v)
    {
        if (strcmp(field, "credential") != 0) {
            admin_ws_bad(c, field, "a credential change takes only credential");
            return;
        }
    }
    cred = json_object_get(c->body, "credential");
    if (!json_is_string(cred) || json_string_length(cred) == 0) {
        admin_ws_bad(c, "credential", "the provider's API key, as a string");
        return;
    }
    if (kg_providers_find(c->gw->cfg, provider) == NULL) {
        admin_reply_error(c, KG_ERR_NOT_FOUND, NULL, "provider");
        return;
    }
    rc = kg_wscred_set(c->store, c->gw->secretbox, c->actor, c->params[0],
                       provider, json_string_value(cred),
                       json_string_length(cred), &diag);
    /* The body held the credential: wipe it now, not at the request's end. */
    sodium_memzero((void *)json_string_value(cred), json_string_length(cred));
    if (rc == KG_OK) {
        rc = kg_wscred_get(c->store, c->params[0], provider, &info, &diag);
    }
    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag,
                         rc == KG_ERR_INVAL ? "credential" : NULL);
        return;
    }
    admin_changed(c);
    admin_reply_json(c, MHD_HTTP_OK, kg_wscred_to_json(&info));
}

void admin_h_credential_delete(admin_ctx_t *c)
{
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_wscred_delete(c->store, c->actor, c->params[0],
                                   c->params[1], NULL, &diag);

    if (rc != KG_OK) {
        admin_reply_fail(c, rc, &diag, NULL);
        return;
    }
    admin_changed(c);
    admin_reply_empty(c);
}
