/* The audit trail: one event per administrative change, never a secret. */
#include "keygate/audit.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keygate/clock.h"

static const char audit_sql_insert[] =
    "INSERT INTO audit_events (at, actor, action, object_type, object_id, "
    "detail) VALUES (?, ?, ?, ?, ?, ?)";

static const char audit_sql_list[] =
    "SELECT id, at, actor, action, object_type, object_id, detail "
    "FROM audit_events WHERE (?1 IS NULL OR object_id = ?1) "
    "ORDER BY id DESC LIMIT ?2";

kg_err_t kg_audit_record(kg_store_t *store, const char *actor,
                         const char *action, const char *object_type,
                         const char *object_id, const json_t *detail,
                         kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_store_stmt(store, audit_sql_insert, diag);
    char *text = NULL;
    kg_err_t rc;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    text = detail ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS)
                  : strdup("{}");
    if (text == NULL) {
        return KG_ERR_NOMEM;
    }
    sqlite3_bind_int64(st, 1, kg_clock_now());
    kg_store_bind_text(st, 2, actor);
    kg_store_bind_text(st, 3, action);
    kg_store_bind_text(st, 4, object_type);
    kg_store_bind_text(st, 5, object_id);
    kg_store_bind_text(st, 6, text);
    rc = kg_store_exec_stmt(store, st, "writing the audit event", diag);
    free(text);
    return rc;
}

static void audit_copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

kg_err_t kg_audit_list(kg_store_t *store, const char *object_id, size_t limit,
                       kg_audit_event_t **events, size_t *count,
                       kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_store_stmt(store, audit_sql_list, diag);
    kg_audit_event_t *arr = NULL;
    size_t n = 0;
    kg_err_t rc = KG_OK;
    int src;

    *events = NULL;
    *count = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    if (limit == 0 || limit > 100000) {
        limit = 100000;
    }
    arr = calloc(limit < 256 ? limit : 256, sizeof(*arr));
    if (arr == NULL) {
        kg_store_reset(st);
        return KG_ERR_NOMEM;
    }
    kg_store_bind_text(st, 1, object_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        kg_audit_event_t *e;

        if (n > 0 && n % 256 == 0) {
            kg_audit_event_t *grown = realloc(arr, (n + 256) * sizeof(*arr));
            if (grown == NULL) {
                rc = KG_ERR_NOMEM;
                break;
            }
            arr = grown;
        }
        e = &arr[n];
        memset(e, 0, sizeof(*e));
        e->id = sqlite3_column_int64(st, 0);
        e->at = sqlite3_column_int64(st, 1);
        audit_copy(e->actor, sizeof(e->actor), kg_store_col_text(st, 2));
        audit_copy(e->action, sizeof(e->action), kg_store_col_text(st, 3));
        audit_copy(e->object_type, sizeof(e->object_type),
                   kg_store_col_text(st, 4));
        audit_copy(e->object_id, sizeof(e->object_id),
                   kg_store_col_text(st, 5));
        e->detail = strdup(kg_store_col_text(st, 6));
        n++;
        if (e->detail == NULL) {
            rc = KG_ERR_NOMEM;
            break;
        }
    }
    if (rc == KG_OK && src != SQLITE_DONE) {
        rc = kg_store_error(store, src, "reading the audit log", diag);
    }
    kg_store_reset(st);
    if (rc != KG_OK) {
        kg_audit_list_free(&arr, n);
        return rc;
    }
    *events = arr;
    *count = n;
    return KG_OK;
}

void kg_audit_list_free(kg_audit_event_t **events, size_t count)
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
