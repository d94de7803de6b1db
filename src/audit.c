/* The audit trail: one event per administrative change, never a secret. */
#include "keygate/audit.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keygate/clock.h"
#include "keygate/timefmt.h"
#include "keygate/store_audit.h"

kg_err_t kg_audit_record(kg_store_t *store, const char *actor,
                         const char *action, const char *object_type,
                         const char *object_id, const json_t *detail,
                         kg_diag_t *diag)
{
    char *text = detail ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS)
                        : strdup("{}");
    kg_err_t rc;

    if (text == NULL) {
        return KG_ERR_NOMEM;
    }
    rc = kg_store_audit_insert(store, kg_clock_now(), actor, action,
                               object_type, object_id, text, diag);
    free(text);
    return rc;
}

static const char *const audit_params[] = {
    "from",        "to",    "actor",  "action", "object",
    "object-type", "limit", "cursor", NULL,
};

kg_err_t kg_audit_query_parse(const kg_query_param_t *params, size_t n,
                              int64_t now, kg_audit_query_t *q, kg_diag_t *diag)
{
    kg_audit_filter_t *f = &q->filter;
    const char *from = kg_query_get(params, n, "from");
    const char *to = kg_query_get(params, n, "to");
    const char *cursor = kg_query_get(params, n, "cursor");
    kg_err_t rc;

    memset(q, 0, sizeof(*q));
    f->to = KG_AUDIT_TIME_MAX;
    rc = kg_query_check(params, n, audit_params, diag);
    if (rc == KG_OK && from != NULL) {
        rc = kg_query_time("from", from, now, &f->from, diag);
    }
    if (rc == KG_OK && to != NULL) {
        rc = kg_query_time("to", to, now, &f->to, diag);
    }
    if (rc == KG_OK &&
        (f->from < 0 || f->from >= f->to || f->to > KG_AUDIT_TIME_MAX)) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL,
                          "from: must be before to, both from 1970 to the "
                          "year 10000");
    }
    if (rc == KG_OK) {
        rc = kg_query_copy("actor", kg_query_get(params, n, "actor"), f->actor,
                           sizeof(f->actor), diag);
    }
    if (rc == KG_OK) {
        rc = kg_query_copy("action", kg_query_get(params, n, "action"),
                           f->action, sizeof(f->action), diag);
    }
    if (rc == KG_OK) {
        rc = kg_query_copy("object", kg_query_get(params, n, "object"),
                           f->object_id, sizeof(f->object_id), diag);
    }
    if (rc == KG_OK) {
        rc =
            kg_query_copy("object-type", kg_query_get(params, n, "object-type"),
                          f->object_type, sizeof(f->object_type), diag);
    }
    if (rc == KG_OK) {
        rc = kg_query_limit("limit", kg_query_get(params, n, "limit"),
                            KG_AUDIT_LIMIT_DEFAULT, KG_AUDIT_LIMIT_MAX,
                            &q->limit, diag);
    }
    if (rc == KG_OK && cursor != NULL) {
        rc =
            kg_query_copy("cursor", cursor, q->cursor, sizeof(q->cursor), diag);
    }
    return rc;
}

/* The scope of an audit cursor: the filters but not the range. */
static uint32_t audit_scope(const kg_audit_filter_t *f)
{
    uint32_t h = KG_QUERY_SCOPE_INIT;

    h = kg_query_scope_str(h, f->actor);
    h = kg_query_scope_str(h, f->action);
    h = kg_query_scope_str(h, f->object_type);
    return kg_query_scope_str(h, f->object_id);
}

kg_err_t kg_audit_page(kg_store_t *store, const kg_audit_query_t *q,
                       kg_audit_event_t **events, size_t *count,
                       char next_cursor[KG_QUERY_CURSOR_STRLEN],
                       kg_diag_t *diag)
{
    uint32_t scope = audit_scope(&q->filter);
    kg_audit_event_t *arr = NULL;
    int64_t at = INT64_MAX;
    int64_t id = INT64_MAX;
    size_t n = 0;
    kg_err_t rc = KG_OK;

    *events = NULL;
    *count = 0;
    next_cursor[0] = '\0';
    if (q->limit < 1 || q->limit > KG_AUDIT_LIMIT_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "limit: from 1 to %d",
                            KG_AUDIT_LIMIT_MAX);
    }
    if (q->cursor[0] != '\0') {
        rc = kg_query_cursor_decode(q->cursor, KG_QUERY_CURSOR_AUDIT, scope,
                                    &at, &id, diag);
    }
    if (rc == KG_OK) {
        /* One more than asked: whether another page follows. */
        rc = kg_store_audit_page(store, &q->filter, id, q->limit + 1, &arr, &n,
                                 diag);
    }
    if (rc != KG_OK) {
        return rc;
    }
    if (n > q->limit) {
        free(arr[q->limit].detail);
        n = q->limit;
        kg_query_cursor_encode(KG_QUERY_CURSOR_AUDIT, arr[n - 1].at,
                               arr[n - 1].id, scope, next_cursor);
    }
    *events = arr;
    *count = n;
    return KG_OK;
}

void kg_audit_events_free(kg_audit_event_t **events, size_t count)
{
    if (events == NULL || *events == NULL) {
        return;
    }
    for (size_t i = 0; i < count; i++) {
        free((*events)[i].detail);
    }
    free(*events);
    *events = NULL;
}

json_t *kg_audit_event_to_json(const kg_audit_event_t *ev)
{
    char at[KG_TIME_STRLEN];
    json_t *detail = json_loads(ev->detail ? ev->detail : "{}", 0, NULL);

    if (!json_is_object(detail)) {
        json_decref(detail);
        detail = json_object();
    }
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:o}", "id",
                     (json_int_t)ev->id, "at",
                     kg_time_format(ev->at, at, sizeof(at)), "actor", ev->actor,
                     "action", ev->action, "objectType", ev->object_type,
                     "objectId", ev->object_id, "detail", detail);
}

/* kg_query_page_json's item function. */
static json_t *audit_item_json(const void *item)
{
    return kg_audit_event_to_json(item);
}

json_t *kg_audit_events_to_json(const kg_audit_event_t *events, size_t n,
                                const char *next_cursor)
{
    return kg_query_page_json(events, n, sizeof(*events), audit_item_json,
                              next_cursor);
}

void kg_audit_cli_actor(char *buf, size_t len)
{
    struct passwd pw;
    struct passwd *res = NULL;
    char tmp[1024];

    if (getpwuid_r(geteuid(), &pw, tmp, sizeof(tmp), &res) == 0 &&
        res != NULL) {
        snprintf(buf, len, "cli:%.40s", res->pw_name);
    } else {
        snprintf(buf, len, "cli:uid%u", (unsigned)geteuid());
    }
}
