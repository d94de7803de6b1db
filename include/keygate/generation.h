/* Configuration generations: what a reload swaps, and how loops hold one. */
#ifndef KEYGATE_GENERATION_H
#define KEYGATE_GENERATION_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/config.h"
#include "keygate/err.h"
#include "keygate/tls.h"

/*
 * One configuration of the running daemon and what is derived from it
 * (the listeners' certificates), read-only once made: the one it started
 * with is number 1, every reload that succeeds makes the next. Reference
 * counted: the gateway holds the current one, each event loop the one it
 * hands to new requests, and a loop keeps an older one for as long as a
 * request or transfer that started on it is in flight. The last
 * reference frees it.
 */
typedef struct kg_generation {
    atomic_int refs;
    uint64_t number;
    int64_t loaded_at;         /* unix seconds */
    kg_config_t *cfg;          /* owned */
    kg_tls_creds_t *tls;       /* [server] listener's certificate, or NULL */
    kg_tls_creds_t *admin_tls; /* [admin] listener's, or NULL */
} kg_generation_t;

/*
 * A generation numbered number from *cfg (taken over: *cfg is set to NULL
 * even on error), with the listeners' certificates read now. On KG_OK
 * *out is new with one reference; on error (KG_ERR_CONFIG: a certificate
 * file; KG_ERR_NOMEM) *out is NULL and diag says why.
 */
kg_err_t kg_generation_new(kg_config_t **cfg, uint64_t number,
                           kg_generation_t **out,
                           kg_diag_t *diag) KG_MUST_CHECK;

/*
 * {"generation": number, "loadedAt": RFC 3339} for /readyz (new
 * reference; NULL on no memory).
 */
json_t *kg_generation_json(const kg_generation_t *g);

/* One more reference (any thread); returns g. */
kg_generation_t *kg_generation_ref(kg_generation_t *g);

/* Drop a reference (*g set to NULL; NULL is fine); the last frees. */
void kg_generation_unref(kg_generation_t **g);

struct kg_gen_loop;

/*
 * One event loop's use of one generation. Requests and transfers that
 * start on the loop count themselves in users (a plain counter: only the
 * loop's thread touches it, so a request costs no atomic operation on a
 * shared cache line). A slot the loop has moved on from is retired, and
 * freed with its reference when its last user is gone.
 */
typedef struct kg_gen_slot {
    kg_generation_t *gen;   /* one reference */
    const kg_config_t *cfg; /* gen->cfg */
    size_t users;
    bool retired;
    struct kg_gen_loop *loop;
    struct kg_gen_slot *prev; /* on the loop's retired list */
    struct kg_gen_slot *next;
} kg_gen_slot_t;

/* The slots of one event loop (its thread only, after init). */
typedef struct kg_gen_loop {
    kg_gen_slot_t *current; /* what new requests get */
    kg_gen_slot_t *retired; /* older slots still in use */
    size_t nretired;
} kg_gen_loop_t;

/* Start with g (a new reference is taken). KG_OK or KG_ERR_NOMEM. */
kg_err_t kg_gen_loop_init(kg_gen_loop_t *l, kg_generation_t *g) KG_MUST_CHECK;

/*
 * Make g (a reference is taken over) the generation of new requests. The
 * old slot is retired, or freed at once when nobody uses it. Loop thread.
 * KG_OK, or KG_ERR_NOMEM (g's reference is dropped; the loop keeps the
 * generation it has).
 */
kg_err_t kg_gen_loop_switch(kg_gen_loop_t *l, kg_generation_t *g) KG_MUST_CHECK;

/* The current slot, with one more user (a request starts). Loop thread. */
kg_gen_slot_t *kg_gen_loop_hold(kg_gen_loop_t *l);

/* One more user of s (a transfer of a request on s). Loop thread. */
void kg_gen_slot_hold(kg_gen_slot_t *s);

/*
 * One user fewer (*s set to NULL; NULL is fine); a retired slot goes with
 * its last user. The loop's thread, or any thread once the loop stopped.
 */
void kg_gen_slot_drop(kg_gen_slot_t **s);

/*
 * Free every slot (the loop stopped and its requests are gone; a slot
 * still counting users is freed all the same, with a warning).
 */
void kg_gen_loop_clear(kg_gen_loop_t *l);

#endif /* KEYGATE_GENERATION_H */
