/* Waits on a thread for the store's change notifications and calls back. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "keygate/watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "keygate/log.h"

struct kg_watch {
    kg_store_t *store;
    kg_watch_fn on_change;
    void *arg;
    pthread_t thread;
    atomic_bool stopping;
    atomic_ullong count;
};

static void watch_pause(const kg_watch_t *w, int ms)
{
    /* In short steps, so that a stop is not kept waiting. */
    for (int left = ms; left > 0 && !atomic_load(&w->stopping); left -= 50) {
        struct timespec ts = {0, 50L * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
}

static void *watch_main(void *arg)
{
    kg_watch_t *w = arg;
    bool down = false;

    pthread_setname_np(pthread_self(), "kg-watch");
    while (!atomic_load(&w->stopping)) {
        kg_diag_t diag = {{0}};
        bool changed = false;
        kg_err_t rc =
            kg_store_wait_change(w->store, KG_WATCH_WAIT_MS, &changed, &diag);

        if (rc != KG_OK) {
            if (!down) {
                KG_WARN("watch: change notifications stopped: %s; retrying",
                        diag.msg);
            }
            down = true;
            watch_pause(w, KG_WATCH_RETRY_MS);
            continue;
        }
        if (down) {
            KG_INFO("watch: change notifications resumed");
            down = false;
        }
        if (changed) {
            atomic_fetch_add(&w->count, 1);
            w->on_change(w->arg);
        }
    }
    return NULL;
}

kg_err_t kg_watch_start(const char *location, const kg_store_opts_t *opts,
                        kg_watch_fn on_change, void *arg, kg_watch_t **out,
                        kg_diag_t *diag)
{
    kg_watch_t *w;
    kg_err_t rc;

    *out = NULL;
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return KG_ERR_NOMEM;
    }
    rc = kg_store_open(location, opts, &w->store, diag);
    if (rc != KG_OK || !kg_store_notifies(w->store)) {
        kg_store_close(&w->store);
        free(w);
        return rc;
    }
    w->on_change = on_change;
    w->arg = arg;
    atomic_init(&w->stopping, false);
    atomic_init(&w->count, 0);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        kg_store_close(&w->store);
        free(w);
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "watch: no thread");
    }
    *out = w;
    return KG_OK;
}

unsigned long long kg_watch_count(const kg_watch_t *w)
{
    return atomic_load(&((kg_watch_t *)w)->count);
}

void kg_watch_stop(kg_watch_t **w)
{
    if (w == NULL || *w == NULL) {
        return;
    }
    atomic_store(&(*w)->stopping, true);
    pthread_join((*w)->thread, NULL);
    kg_store_close(&(*w)->store);
    free(*w);
    *w = NULL;
}
