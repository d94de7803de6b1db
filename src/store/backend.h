/* What a store backend provides: the handle's base and its table of operations.
 */
#ifndef KEYGATE_STORE_BACKEND_H
#define KEYGATE_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/store.h"
#include "keygate/store_admin_tokens.h"

/*
 * The store is one interface with one backend per database (docs/
 * architecture.md, "The store"): the modules above it call the
 * kg_store_<entity>_<op>() functions of include/keygate/store*.h, which
 * src/store/<entity>.c forwards to the handle's backend through the tables
 * below; each backend's SQL lives in src/store/<backend>/ alone. A backend
 * that lacks an entity's table (NULL) answers its operations with
 * KG_ERR_STORE, "not supported by the <name> store".
 */

typedef struct kg_store_backend kg_store_backend_t;

/*
 * The base of every handle: a backend's handle embeds it first, so that a
 * kg_store_t * is the backend's handle. Owned by the backend.
 */
struct kg_store {
    const kg_store_backend_t *be;
    char *location; /* a path, or a URL without its password */
    int schema_version;
};

/* Admin tokens (include/keygate/store_admin_tokens.h). */
typedef struct kg_store_admin_tokens_ops {
    kg_err_t (*insert)(kg_store_t *s, const kg_store_admin_token_t *t,
                       kg_diag_t *diag);
    kg_err_t (*get)(kg_store_t *s, const char *id, kg_store_admin_token_t *out,
                    kg_diag_t *diag);
    kg_err_t (*list)(kg_store_t *s, bool include_revoked,
                     kg_store_admin_token_t **out, size_t *count,
                     kg_diag_t *diag);
    kg_err_t (*revoke)(kg_store_t *s, const char *id, int64_t at,
                       kg_diag_t *diag);
    kg_err_t (*touch)(kg_store_t *s, const char *id, int64_t at,
                      int64_t min_gap, kg_diag_t *diag);
} kg_store_admin_tokens_ops_t;

/* One backend: its handle's life, transactions, and one table per entity. */
struct kg_store_backend {
    const char *name; /* "sqlite", "postgresql": for messages */
    void (*close)(kg_store_t *s);
    kg_err_t (*begin)(kg_store_t *s, kg_diag_t *diag);
    kg_err_t (*commit)(kg_store_t *s, kg_diag_t *diag);
    void (*rollback)(kg_store_t *s);
    kg_err_t (*ping)(kg_store_t *s, kg_diag_t *diag);
    /* NULL when the backend cannot push changes (SQLite). */
    kg_err_t (*wait_change)(kg_store_t *s, int timeout_ms, bool *changed,
                            kg_diag_t *diag);

    const kg_store_admin_tokens_ops_t *admin_tokens;
};

/*
 * The error of an operation the handle's backend lacks: KG_ERR_STORE, with
 * diag naming the entity and the backend.
 */
kg_err_t kg_store_unsupported(const kg_store_t *s, const char *what,
                              kg_diag_t *diag);

/* The backends' openers (src/store/sqlite/sqlite.c, src/store/pg/pg.c). */
kg_err_t kg_sqlite_open(const char *path, const kg_store_opts_t *opts,
                        kg_store_t **out, kg_diag_t *diag);
kg_err_t kg_pg_open(const char *url, const kg_store_opts_t *opts,
                    kg_store_t **out, kg_diag_t *diag);

#endif /* KEYGATE_STORE_BACKEND_H */
