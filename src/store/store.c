/* The store's handle: chooses the backend by location and forwards to it. */
#include "store/backend.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

static char store_instance[KG_STORE_INSTANCE_LEN + 1];
static pthread_once_t store_instance_once = PTHREAD_ONCE_INIT;

static void store_instance_make(void)
{
    unsigned char raw[KG_STORE_INSTANCE_LEN / 2];

    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(store_instance, sizeof(store_instance), raw, sizeof(raw));
}

const char *kg_store_instance_id(void)
{
    pthread_once(&store_instance_once, store_instance_make);
    return store_instance;
}

/* Locations that name a PostgreSQL server rather than a file. */
static bool store_is_url(const char *location)
{
    return strncmp(location, "postgresql://", 13) == 0 ||
           strncmp(location, "postgres://", 11) == 0;
}

kg_err_t kg_store_open(const char *location, const kg_store_opts_t *opts,
                       kg_store_t **out, kg_diag_t *diag)
{
    const char *instance =
        opts->instance ? opts->instance : kg_store_instance_id();
    size_t len = strnlen(instance, KG_STORE_INSTANCE_LEN + 1);
    kg_err_t rc;

    *out = NULL;
    if (len == 0 || len > KG_STORE_INSTANCE_LEN) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "an instance id has 1 to %d characters",
                            KG_STORE_INSTANCE_LEN);
    }
    rc = store_is_url(location) ? kg_pg_open(location, opts, out, diag)
                                : kg_sqlite_open(location, opts, out, diag);
    if (rc == KG_OK) {
        memcpy((*out)->instance, instance, len);
        (*out)->instance[len] = '\0';
    }
    return rc;
}

const char *kg_store_instance(const kg_store_t *store)
{
    return store->instance;
}

void kg_store_close(kg_store_t **store)
{
    if (store != NULL && *store != NULL) {
        (*store)->be->close(*store);
        *store = NULL;
    }
}

int kg_store_schema_version(const kg_store_t *store)
{
    return store->schema_version;
}

const char *kg_store_path(const kg_store_t *store)
{
    return store->location;
}

const char *kg_store_backend_name(const kg_store_t *store)
{
    return store->be->name;
}

kg_err_t kg_store_begin(kg_store_t *store, kg_diag_t *diag)
{
    return store->be->begin(store, diag);
}

kg_err_t kg_store_commit(kg_store_t *store, kg_diag_t *diag)
{
    return store->be->commit(store, diag);
}

void kg_store_rollback(kg_store_t *store)
{
    store->be->rollback(store);
}

kg_err_t kg_store_ping(kg_store_t *store, kg_diag_t *diag)
{
    return store->be->ping(store, diag);
}

bool kg_store_notifies(const kg_store_t *store)
{
    return store->be->wait_change != NULL;
}

kg_err_t kg_store_wait_change(kg_store_t *store, int timeout_ms, bool *changed,
                              kg_diag_t *diag)
{
    *changed = false;
    if (store->be->wait_change == NULL) {
        return kg_store_unsupported(store, "change notifications", diag);
    }
    return store->be->wait_change(store, timeout_ms, changed, diag);
}

kg_err_t kg_store_unsupported(const kg_store_t *s, const char *what,
                              kg_diag_t *diag)
{
    return kg_diag_fail(diag, KG_ERR_STORE,
                        "%s: %s: not supported by the %s store", s->location,
                        what, s->be->name);
}
