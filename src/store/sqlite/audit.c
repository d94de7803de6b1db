/* SQLite statements that write and read the audit trail. */
#include "keygate/store_audit.h"
#include "store/sqlite/sqlite_store.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char audit_sql_insert[] =
    "INSERT INTO audit_events (at, actor, action, object_type, object_id, "
    "detail) VALUES (?, ?, ?, ?, ?, ?)";

/*
 * Audit pages: ?1 object id, ?2 the cursor's id (rows below it), ?3 and ?4
 * the time range, ?5 actor, ?6 action, ?7 object type (NULL = any), ?8
 * the limit. Newest first is descending id (ids grow with every event).
 * For an object, audit_events_object_id (object_id, rowid) yields its
 * events in that order; otherwise the table is walked backwards by rowid.
 */
#define AUDIT_SELECT                                                \
    "SELECT id, at, actor, action, object_type, object_id, detail " \
    "FROM audit_events WHERE "
#define AUDIT_REST                                                         \
    "id < ?2 AND at >= ?3 AND at < ?4 AND (?1 IS NULL OR object_id = ?1) " \
    "AND (?5 IS NULL OR actor = ?5) AND (?6 IS NULL OR action = ?6) "      \
    "AND (?7 IS NULL OR object_type = ?7) ORDER BY id DESC LIMIT ?8"
static const char audit_sql_page_object[] =
    AUDIT_SELECT "object_id = ?1 AND " AUDIT_REST;
static const char audit_sql_page_all[] = AUDIT_SELECT AUDIT_REST;

/* At most this many events are allocated ahead; more grow the array. */
#define AUDIT_GROW 256

static const char *audit_opt(const char *s)
{
    return s[0] == '\0' ? NULL : s;
}

static void audit_copy(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
}

static void audit_free(kg_audit_event_t *arr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(arr[i].detail);
    }
    free(arr);
}

static kg_err_t audit_insert(kg_store_t *store, int64_t at, const char *actor,
                             const char *action, const char *object_type,
                             const char *object_id, const char *detail,
                             kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, audit_sql_insert, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, at);
    kg_sqlite_bind_text(st, 2, actor);
    kg_sqlite_bind_text(st, 3, action);
    kg_sqlite_bind_text(st, 4, object_type);
    kg_sqlite_bind_text(st, 5, object_id);
    kg_sqlite_bind_text(st, 6, detail);
    return kg_sqlite_exec(store, st, "writing the audit event", diag);
}

/* Read the current row into e; false when out of memory. */
static bool audit_read(sqlite3_stmt *st, kg_audit_event_t *e)
{
    memset(e, 0, sizeof(*e));
    e->id = sqlite3_column_int64(st, 0);
    e->at = sqlite3_column_int64(st, 1);
    audit_copy(e->actor, sizeof(e->actor), kg_sqlite_col_text(st, 2));
    audit_copy(e->action, sizeof(e->action), kg_sqlite_col_text(st, 3));
    audit_copy(e->object_type, sizeof(e->object_type),
               kg_sqlite_col_text(st, 4));
    audit_copy(e->object_id, sizeof(e->object_id), kg_sqlite_col_text(st, 5));
    e->detail = strdup(kg_sqlite_col_text(st, 6));
    return e->detail != NULL;
}

static kg_err_t audit_page(kg_store_t *store, const kg_audit_filter_t *filter,
                           int64_t before_id, size_t limit,
                           kg_audit_event_t **events, size_t *count,
                           kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    kg_audit_event_t *arr = NULL;
    size_t cap = 0;
    size_t n = 0;
    kg_err_t rc = KG_OK;
    int src = SQLITE_DONE;

    *events = NULL;
    *count = 0;
    if (limit == 0) {
        return KG_OK;
    }
    st = kg_sqlite_stmt(store,
                        filter->object_id[0] ? audit_sql_page_object
                                             : audit_sql_page_all,
                        diag);
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, audit_opt(filter->object_id));
    sqlite3_bind_int64(st, 2, before_id);
    sqlite3_bind_int64(st, 3, filter->from);
    sqlite3_bind_int64(st, 4, filter->to);
    kg_sqlite_bind_text(st, 5, audit_opt(filter->actor));
    kg_sqlite_bind_text(st, 6, audit_opt(filter->action));
    kg_sqlite_bind_text(st, 7, audit_opt(filter->object_type));
    sqlite3_bind_int64(st, 8, (sqlite3_int64)limit);
    while (n < limit && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap =
                cap + (limit - cap < AUDIT_GROW ? limit - cap : AUDIT_GROW);
            kg_audit_event_t *grown = realloc(arr, ncap * sizeof(*arr));

            if (grown == NULL) {
                rc = KG_ERR_NOMEM;
                goto out;
            }
            arr = grown;
            cap = ncap;
        }
        if (!audit_read(st, &arr[n])) {
            rc = KG_ERR_NOMEM;
            goto out;
        }
        n++;
    }
    if (src != SQLITE_ROW) {
        rc = kg_sqlite_error(store, src, "reading the audit log", diag);
    }
out:
    kg_sqlite_reset(st);
    if (rc != KG_OK) {
        audit_free(arr, n);
        return rc;
    }
    *events = arr;
    *count = n;
    return KG_OK;
}

const kg_store_audit_ops_t kg_sqlite_audit_ops = {
    .insert = audit_insert,
    .page = audit_page,
};
