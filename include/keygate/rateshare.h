/* Rate limits shared by the gateway instances on one store. */
#ifndef KEYGATE_RATESHARE_H
#define KEYGATE_RATESHARE_H

#include <stdint.h>

#include "keygate/err.h"
#include "keygate/ratelimit.h"
#include "keygate/store.h"

/* Keys one round shares at most; beyond that the keys take turns. */
#define KG_RATESHARE_MAX_KEYS 16384
/*
 * Seconds after its last publish that a row is deleted: a row counts for
 * two windows (120 s) after its window started, and this leaves a minute
 * for clocks that disagree.
 */
#define KG_RATESHARE_KEEP_S 180
/* An instance counts as live (one of those a new key's room is split
 * among) for this many seconds after it last published. */
#define KG_RATESHARE_LIVE_S 5
/* Old rows are deleted by the prunes in the first PRUNE_SLOT_MS of every
 * PRUNE_EVERY_MS of the wall clock (a prune comes every second or so, so
 * one or two of them). */
#define KG_RATESHARE_PRUNE_EVERY_MS INT64_C(60000)
#define KG_RATESHARE_PRUNE_SLOT_MS  INT64_C(2000)

/*
 * One round of sharing rl's request and token windows with the other
 * instances on store (kg_store_rates_shared; on a store that does not
 * share, nothing happens and KG_OK): export this instance's counts of the
 * keys it limits at now_ms (the wall clock), publish them (which also
 * marks the instance live), count the live instances, read the other
 * instances' counts of the same keys and import them into rl, which
 * counts them in its checks and splits the room left between the
 * instances until the next round (kg_ratelimit_import).
 * Call it often (what an instance sees of the others is about two rounds
 * old; the gateway's maintenance thread runs one every
 * KG_POLICY_REFRESH_MS, 200 ms) from a thread off the request path, with
 * store not used by another thread meanwhile. Returns KG_OK,
 * KG_ERR_NOMEM or the store's error (diag says which step): rl then keeps
 * the others' counts of the last round that worked, which roll out of its
 * windows within two minutes, and goes on enforcing its own (the split of
 * the room lapses after KG_RATELIMIT_SHARE_HOLD_MS).
 */
kg_err_t kg_rateshare_tick(kg_store_t *store, kg_ratelimit_t *rl,
                           int64_t now_ms, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * In the first KG_RATESHARE_PRUNE_SLOT_MS of each minute of now_ms (the
 * wall clock), delete every instance's rows nobody has published for
 * KG_RATESHARE_KEEP_S (a scan of the table); at other times, and on a
 * store that does not share, nothing. Call it about once a second (not
 * every round), under the same conditions as kg_rateshare_tick. Returns
 * KG_OK or the store's error; rows left stay harmless (they count
 * nothing) until the next minute's prune.
 */
kg_err_t kg_rateshare_prune(kg_store_t *store, int64_t now_ms,
                            kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_RATESHARE_H */
