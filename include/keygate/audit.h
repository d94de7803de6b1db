/* The audit trail: one event per administrative change, never a secret. */
#ifndef KEYGATE_AUDIT_H
#define KEYGATE_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"

typedef struct kg_audit_event {
    int64_t id;
    int64_t at;
    char actor[65];
    char action[33];
    char object_type[17];
    char object_id[65];
    char *detail; /* JSON text, owned */
} kg_audit_event_t;

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

/*
 * The newest events first, at most limit, optionally only those of one
 * object (object_id NULL = all). *events is new; free with
 * kg_audit_list_free.
 */
kg_err_t kg_audit_list(kg_store_t *store, const char *object_id, size_t limit,
                       kg_audit_event_t **events, size_t *count,
                       kg_diag_t *diag) KG_MUST_CHECK;

void kg_audit_list_free(kg_audit_event_t **events, size_t count);

/* The actor name for the local CLI: "cli:<user name>". */
void kg_audit_cli_actor(char *buf, size_t len);

#endif /* KEYGATE_AUDIT_H */
