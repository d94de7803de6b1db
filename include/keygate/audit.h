/* The audit trail: one event per administrative change, never a secret. */
#ifndef KEYGATE_AUDIT_H
#define KEYGATE_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/query.h"
#include "keygate/store.h"
#include "keygate/store_audit.h"

/* Page sizes of kg_audit_page. */
#define KG_AUDIT_LIMIT_MAX     1000
#define KG_AUDIT_LIMIT_DEFAULT 100

/*
 * Record that actor did action ("create", "update", "rotate", ...) to the
 * object. detail (borrowed, may be NULL) is a JSON object of what changed;
 * callers put names, limits and before/after values in it, never a token or
 * hash. Call inside the transaction of the change.
 */
kg_err_t kg_audit_record(kg_store_t *store, const char *actor,
                         const char *action, const char *object_type,
                         const char *object_id, const json_t *detail,
                         kg_diag_t *diag) KG_MUST_CHECK;

/* A parsed audit query. */
typedef struct kg_audit_query {
    kg_audit_filter_t filter;
    size_t limit;
    char cursor[KG_QUERY_CURSOR_STRLEN]; /* "" = the first page */
} kg_audit_query_t;

/*
 * Parse and validate an audit query from n name/value pairs (see
 * keygate/query.h), each optional and at most once:
 *   from, to      time range [from, to) as for the usage queries
 *                 (default: the whole trail)
 *   actor, action, object (an object id), object-type   exact matches
 *   limit         1..KG_AUDIT_LIMIT_MAX (default KG_AUDIT_LIMIT_DEFAULT)
 *   cursor        the nextCursor of the previous page
 * now (unix seconds) is for relative times. Returns KG_OK, or
 * KG_ERR_INVAL with diag naming the parameter.
 */
kg_err_t kg_audit_query_parse(const kg_query_param_t *params, size_t n,
                              int64_t now, kg_audit_query_t *q,
                              kg_diag_t *diag) KG_MUST_CHECK;

/*
 * One page of audit events, newest first: check the cursor against the
 * filters (KG_ERR_INVAL, diag "cursor: ..."), read up to q->limit events.
 * *events is new (kg_audit_events_free), NULL when none; next_cursor gets
 * the cursor of the following page, or "" when this page is the last.
 * Returns KG_OK, KG_ERR_INVAL, KG_ERR_NOMEM or a store error; *events is
 * NULL on error.
 */
kg_err_t kg_audit_page(kg_store_t *store, const kg_audit_query_t *q,
                       kg_audit_event_t **events, size_t *count,
                       char next_cursor[KG_QUERY_CURSOR_STRLEN],
                       kg_diag_t *diag) KG_MUST_CHECK;

/* Free an array of count events and set *events to NULL. */
void kg_audit_events_free(kg_audit_event_t **events, size_t count);

/*
 * One event as JSON (new reference, NULL when out of memory):
 *   {"id": N, "at": TIME, "actor", "action", "objectType", "objectId",
 *    "detail": {...}}
 * detail is the stored JSON object ({} if it does not parse).
 */
json_t *kg_audit_event_to_json(const kg_audit_event_t *ev);

/* {"events": [...], "nextCursor": S|null} (new reference, or NULL). */
json_t *kg_audit_events_to_json(const kg_audit_event_t *events, size_t n,
                                const char *next_cursor);

/* The actor name for the local CLI: "cli:<user name>". */
void kg_audit_cli_actor(char *buf, size_t len);

#endif /* KEYGATE_AUDIT_H */
