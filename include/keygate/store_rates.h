/* Rate-window counts that gateway instances sharing a store exchange. */
#ifndef KEYGATE_STORE_RATES_H
#define KEYGATE_STORE_RATES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/ratelimit.h"
#include "keygate/store.h"

/*
 * Backend-neutral: what src/rateshare.c asks of a store that several
 * gateway instances share (docs/scale-out.md, "Rate limits"). Each
 * instance keeps one row per key it limits, marked with the handle's
 * instance (kg_store_instance): its own request and token counts of two
 * fixed windows (kg_ratelimit_share_t), replaced every time it publishes,
 * with the time of the store's clock. A row counts for the windows it
 * describes, whether its instance still runs or not: the requests it
 * admitted were admitted. Publishing also marks the instance live, so
 * that the others know how many they are. The PostgreSQL implementation
 * is src/store/pg/rates.c; SQLite serves one gateway and has none.
 */

/*
 * Whether the store shares rate windows between instances (the backend
 * has these operations). The others answer KG_ERR_STORE, "not supported",
 * when it does not.
 */
bool kg_store_rates_shared(const kg_store_t *store);

/*
 * Replace this instance's rows of the n keys of own (non-empty key ids;
 * n may be 0) with their counts (own[i].instances is not stored), and
 * mark the instance live now. All of them or none: one statement, or
 * when they are many a transaction of its own (the caller has none
 * open). KG_OK or a store error.
 */
kg_err_t kg_store_rates_publish(kg_store_t *store,
                                const kg_ratelimit_share_t *own, size_t n,
                                kg_diag_t *diag) KG_MUST_CHECK;

/*
 * For each of rows[0..n) (by its key_id), the sums of the other
 * instances' rows of that key aligned to the windows of window_start (a
 * multiple of KG_RATELIMIT_WINDOW_MS): a row of the same window counts as
 * it is, a row one window behind counts its cur as prev, a row one ahead
 * counts all it has as cur, any other row counts nothing. Sets every
 * row's window_start to window_start, its counts (0 for a key no other
 * instance has) and its instances: how many other instances have a row of
 * the key in those windows (they track it, with counts or not). KG_OK, or
 * a store error with the counts 0.
 */
kg_err_t kg_store_rates_others(kg_store_t *store, int64_t window_start,
                               kg_ratelimit_share_t *rows, size_t n,
                               kg_diag_t *diag) KG_MUST_CHECK;

/*
 * How many instances (this one included once it published) published in
 * the last within_s seconds of the store's clock, into *n (0 on error).
 * KG_OK or a store error.
 */
kg_err_t kg_store_rates_live(kg_store_t *store, int64_t within_s, int64_t *n,
                             kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Delete every instance's rows not published for older_than_s seconds of
 * the store's clock (rows that count nothing any more), skipping rows
 * another instance is writing. *deleted (may be NULL) gets how many.
 * KG_OK or a store error.
 */
kg_err_t kg_store_rates_prune(kg_store_t *store, int64_t older_than_s,
                              int64_t *deleted, kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_STORE_RATES_H */
