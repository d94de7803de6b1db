/* The PostgreSQL implementation of the audit trail: append, pages. */
#include "keygate/store_audit.h"
#include "store/pg/pg_store.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ids come from the identity column: they grow with every insert (a
 * sequence never goes back), as the contract's "newest first" needs. */
static const char audit_sql_insert[] =
    "INSERT INTO audit_events (at, actor, action, object_type, object_id, "
    "detail) VALUES ($1, $2, $3, $4, $5, $6)";

/*
 * Audit pages: $1 object id, $2 the cursor's id (rows below it), $3 and $4
 * the time range, $5 actor, $6 action, $7 object type (NULL = any), $8
 * the limit. Newest first is descending id. For an object,
 * audit_events_object_id finds its rows; otherwise the primary key is
 * walked backwards.
 */
#define AUDIT_SELECT                                                \
    "SELECT id, at, actor, action, object_type, object_id, detail " \
    "FROM audit_events WHERE "
#define AUDIT_REST                                              \
    "id < $2::bigint AND at >= $3::bigint AND at < $4::bigint " \
    "AND ($1::text IS NULL OR object_id = $1) "                 \
    "AND ($5::text IS NULL OR actor = $5) "                     \
    "AND ($6::text IS NULL OR action = $6) "                    \
    "AND ($7::text IS NULL OR object_type = $7) "               \
    "ORDER BY id DESC LIMIT $8"
static const char audit_sql_page_object[] =
    AUDIT_SELECT "object_id = $1 AND " AUDIT_REST;
static const char audit_sql_page_all[] = AUDIT_SELECT AUDIT_REST;

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
    kg_pg_params_t p = {0};

    kg_pg_param_int(&p, at);
    kg_pg_param_text(&p, actor);
    kg_pg_param_text(&p, action);
    kg_pg_param_text(&p, object_type);
    kg_pg_param_text(&p, object_id);
    kg_pg_param_text(&p, detail);
    return kg_pg_exec(store, audit_sql_insert, &p, NULL,
                      "writing the audit event", diag);
}

/* Read row into e; false when out of memory. */
static bool audit_read(const PGresult *res, int row, kg_audit_event_t *e)
{
    memset(e, 0, sizeof(*e));
    e->id = kg_pg_col_int(res, row, 0);
    e->at = kg_pg_col_int(res, row, 1);
    audit_copy(e->actor, sizeof(e->actor), kg_pg_col_text(res, row, 2));
    audit_copy(e->action, sizeof(e->action), kg_pg_col_text(res, row, 3));
    audit_copy(e->object_type, sizeof(e->object_type),
               kg_pg_col_text(res, row, 4));
    audit_copy(e->object_id, sizeof(e->object_id), kg_pg_col_text(res, row, 5));
    e->detail = strdup(kg_pg_col_text(res, row, 6));
    return e->detail != NULL;
}

static kg_err_t audit_page(kg_store_t *store, const kg_audit_filter_t *filter,
                           int64_t before_id, size_t limit,
                           kg_audit_event_t **events, size_t *count,
                           kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_audit_event_t *arr = NULL;
    size_t n = 0, rows;
    kg_err_t rc;

    *events = NULL;
    *count = 0;
    if (limit == 0) {
        return KG_OK;
    }
    kg_pg_param_text(&p, audit_opt(filter->object_id));
    kg_pg_param_int(&p, before_id);
    kg_pg_param_int(&p, filter->from);
    kg_pg_param_int(&p, filter->to);
    kg_pg_param_text(&p, audit_opt(filter->actor));
    kg_pg_param_text(&p, audit_opt(filter->action));
    kg_pg_param_text(&p, audit_opt(filter->object_type));
    kg_pg_param_int(&p, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    rc = kg_pg_query(store,
                     filter->object_id[0] ? audit_sql_page_object
                                          : audit_sql_page_all,
                     &p, &res, "reading the audit log", diag);
    if (rc != KG_OK) {
        return rc;
    }
    rows = (size_t)PQntuples(res);
    if (rows > limit) {
        rows = limit;
    }
    if (rows > 0 && (arr = calloc(rows, sizeof(*arr))) == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    for (; n < rows; n++) {
        if (!audit_read(res, (int)n, &arr[n])) {
            rc = KG_ERR_NOMEM;
            goto out;
        }
    }
out:
    PQclear(res);
    if (rc != KG_OK) {
        audit_free(arr, n);
        return rc;
    }
    *events = arr;
    *count = n;
    return KG_OK;
}

const kg_store_audit_ops_t kg_pg_audit_ops = {
    .insert = audit_insert,
    .page = audit_page,
};
