/* The store's audit trail: appending events, pages of them newest first. */
#ifndef KEYGATE_STORE_AUDIT_H
#define KEYGATE_STORE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"

/*
 * Backend-neutral: what the audit module asks of the store when it writes
 * and reads the trail. The SQLite implementation is
 * src/store/sqlite/audit.c; its index choices are in docs/store.md.
 */

#define KG_AUDIT_ACTOR_MAX       64
#define KG_AUDIT_ACTION_MAX      32
#define KG_AUDIT_OBJECT_TYPE_MAX 16
#define KG_AUDIT_OBJECT_ID_MAX   64
/* The largest time a query takes: 10000-01-01T00:00:00Z. */
#define KG_AUDIT_TIME_MAX INT64_C(253402300800)

typedef struct kg_audit_event {
    int64_t id; /* increasing: newer events have larger ids */
    int64_t at; /* unix seconds */
    char actor[KG_AUDIT_ACTOR_MAX + 1];
    char action[KG_AUDIT_ACTION_MAX + 1];
    char object_type[KG_AUDIT_OBJECT_TYPE_MAX + 1];
    char object_id[KG_AUDIT_OBJECT_ID_MAX + 1];
    char *detail; /* JSON text, owned */
} kg_audit_event_t;

/*
 * What an audit query selects: at in [from, to) (unix seconds), and exact
 * matches on each string that is not "" ("" = any).
 */
typedef struct kg_audit_filter {
    int64_t from;
    int64_t to;
    char actor[KG_AUDIT_ACTOR_MAX + 1];
    char action[KG_AUDIT_ACTION_MAX + 1];
    char object_type[KG_AUDIT_OBJECT_TYPE_MAX + 1];
    char object_id[KG_AUDIT_OBJECT_ID_MAX + 1];
} kg_audit_filter_t;

/*
 * Append one audit event at `at` (unix seconds), inside the caller's
 * transaction when one is open. detail is JSON text ("{}" for none); the
 * strings are stored as given. Returns KG_OK or a store error (diag).
 */
kg_err_t kg_store_audit_insert(kg_store_t *store, int64_t at, const char *actor,
                               const char *action, const char *object_type,
                               const char *object_id, const char *detail,
                               kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Up to limit (>= 1) events the filter selects with an id below before_id
 * (INT64_MAX: from the newest), newest first. *events is new (NULL when
 * none; free with kg_audit_events_free of keygate/audit.h), *count their
 * number. Returns KG_OK, KG_ERR_NOMEM or a store error (diag); *events is
 * NULL on error.
 */
kg_err_t kg_store_audit_page(kg_store_t *store, const kg_audit_filter_t *filter,
                             int64_t before_id, size_t limit,
                             kg_audit_event_t **events, size_t *count,
                             kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_AUDIT_H */
