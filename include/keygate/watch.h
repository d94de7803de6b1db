/* Waits on a thread for the store's change notifications and calls back. */
#ifndef KEYGATE_WATCH_H
#define KEYGATE_WATCH_H

#include "keygate/err.h"
#include "keygate/store.h"

/* How long one wait lasts: the longest a stop waits for the thread. */
#define KG_WATCH_WAIT_MS 200
/* The pause after a failed wait (the server down) before the next try. */
#define KG_WATCH_RETRY_MS 1000

typedef struct kg_watch kg_watch_t;

/* Called on the watch thread when another process changed keys, rules or
 * credentials (and after every reconnect); must be thread-safe. */
typedef void (*kg_watch_fn)(void *arg);

/*
 * On a store that notifies (kg_store_notifies), open a handle of its own
 * to location and start thread "kg-watch": it waits for notifications
 * and calls on_change(arg) for each burst of them; while the server is
 * unreachable it retries every KG_WATCH_RETRY_MS, and calls on_change
 * once it is back. On a store that does not notify, *out is NULL and
 * KG_OK: its readers poll as before. Returns KG_OK or a store error (the
 * store cannot be opened) with diag.
 */
kg_err_t kg_watch_start(const char *location, const kg_store_opts_t *opts,
                        kg_watch_fn on_change, void *arg, kg_watch_t **out,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* Notifications handled so far (bursts that called on_change). */
unsigned long long kg_watch_count(const kg_watch_t *w);

/* Stop the thread (within KG_WATCH_WAIT_MS), close, set *w to NULL. */
void kg_watch_stop(kg_watch_t **w);

#endif /* KEYGATE_WATCH_H */
