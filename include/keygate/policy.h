/* Policy on the request path: access rules, workspace modes, budgets, rates. */
#ifndef KEYGATE_POLICY_H
#define KEYGATE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/budget.h"
#include "keygate/config.h"
#include "keygate/err.h"
#include "keygate/keycache.h"
#include "keygate/ratelimit.h"
#include "keygate/rules.h"
#include "keygate/secretbox.h"

typedef struct kg_policy kg_policy_t;

/*
 * A workspace's provider credential as the policy holds it: decrypted into
 * sodium memory once, when the workspace is loaded, and shared by
 * reference with the requests that use it.
 */
typedef struct kg_policy_cred kg_policy_cred_t;

/* What the policy needs to know of a request; all borrowed. */
typedef struct kg_policy_request {
    const kg_key_view_t *key;
    const kg_model_t *model;       /* NULL for a path that names none */
    const kg_provider_t *provider; /* where the request would go */
    const char *operation;
    const char *client_ip;
    int64_t max_tokens;     /* KG_NONE when the request sets none */
    int64_t input_estimate; /* tokens, for rate limits */
    /*
     * An upper bound of the input tokens for budget reservations: the body's
     * size in bytes (a byte-level tokenizer never makes more tokens than
     * bytes), so spend cannot pass a limit when max_tokens is set. 0: use
     * input_estimate.
     */
    int64_t input_bound;
    bool no_charge; /* costs nothing (GET /v1/models): skip the budgets */
} kg_policy_request_t;

/*
 * What an admitted request holds until it settles: budget and credit
 * holds, a rate-limit ticket and, when the workspace's own credential is
 * used, a reference to it (credential points into credential_ref's sodium
 * memory; kg_policy_settle drops the reference, and the last one wipes
 * and frees the secret).
 */
typedef struct kg_policy_ticket {
    kg_budget_hold_t key_hold;
    kg_budget_hold_t credit_hold;
    kg_ratelimit_ticket_t rate;
    kg_ratelimit_info_t rate_info; /* for the x-ratelimit-* headers */
    bool credits;           /* credits mode: the pool is used and charged */
    bool pool;              /* pool mode: the pool is used, no credits */
    const char *credential; /* the workspace's own, or NULL: the provider's */
    size_t credential_len;
    kg_policy_cred_t *credential_ref; /* the reference credential lives in */
    char workspace_id[KG_WORKSPACE_ID_LEN + 1];
    bool live;
} kg_policy_ticket_t;

/* Why a request was refused: the error and its "%s" detail. */
typedef struct kg_policy_denial {
    kg_err_t err;
    char detail[KG_RULES_REASON_MAX];
    kg_ratelimit_info_t rate_info; /* set for KG_ERR_RATE_LIMITED */
    int64_t retry_after;           /* seconds; 0 = none */
} kg_policy_denial_t;

/*
 * A policy with its own store connection (path). cfg and sb are borrowed
 * and outlive it (cfg: until kg_policy_set_config replaces it). On start every
 * stale budget reservation left in the store by an earlier run is reclaimed
 * (reserved = 0). *out is new.
 */
kg_err_t kg_policy_new(const kg_config_t *cfg, const char *store_path,
                       int busy_timeout_ms, const kg_secretbox_t *sb,
                       kg_policy_t **out, kg_diag_t *diag) KG_MUST_CHECK;

void kg_policy_free(kg_policy_t **p);

/*
 * A reload: cfg (borrowed; it must outlive the policy or the next call)
 * replaces the configuration whose providers' names workspace credentials
 * are loaded for. When the set of provider names changed, every cached
 * key and workspace is dropped and loaded again on its next request. Any
 * thread; requests that started on the old configuration go on safely
 * (credentials are found by provider name).
 */
void kg_policy_set_config(kg_policy_t *p, const kg_config_t *cfg);

/*
 * Admit a request or say why not: KG_ERR_ACCESS_DENIED (403, detail is the
 * reason), KG_ERR_UNKNOWN_MODEL (the workspace's mode has no credential
 * for the provider), KG_ERR_RATE_LIMITED (429), KG_ERR_USAGE_LIMIT and
 * KG_ERR_PERIOD_LIMIT (401), KG_ERR_NO_CREDITS (402), or a store error
 * (503). On KG_OK *t holds reservations: kg_policy_settle must follow on
 * every path. now_ms is the wall clock (kg_clock_now_ms) in production.
 */
kg_err_t kg_policy_admit(kg_policy_t *p, const kg_policy_request_t *req,
                         int64_t now_ms, kg_policy_ticket_t *t,
                         kg_policy_denial_t *d) KG_MUST_CHECK;

/*
 * Settle an admitted request with its real cost and tokens: release the
 * holds, charge the cost, wipe the credential copy. Idempotent. Returns
 * the start of the budget period the cost was charged to (KG_NONE when
 * the key has no period), for the usage event.
 */
int64_t kg_policy_settle(kg_policy_t *p, kg_policy_ticket_t *t, int64_t cost,
                         int64_t tokens, int64_t now_ms);

/*
 * The mode an admitted request used, for its usage event: "credits" (the
 * pool, charged to credits), "pool" (the pool, pool mode) or "api-keys"
 * (the workspace's own credential, or a provider that needs none).
 */
const char *kg_policy_ticket_mode(const kg_policy_ticket_t *t);

/*
 * Take (ref) or drop (unref, *c set to NULL; no-op on NULL) a reference to
 * a credential, e.g. to keep a ticket's credential past kg_policy_settle.
 * Any thread; no allocation, no system call. The last unref wipes it.
 */
void kg_policy_cred_ref(kg_policy_cred_t *c);
void kg_policy_cred_unref(kg_policy_cred_t **c);

/* The usage writer committed a credits charge of ws_id. */
void kg_policy_credits_committed(kg_policy_t *p, const char *ws_id,
                                 int64_t cost);

/* Whether the key may see model in /v1/models (rules and mode). */
bool kg_policy_model_visible(kg_policy_t *p, const kg_key_view_t *key,
                             const kg_model_t *model, const char *client_ip);

/* The key's budget as the daemon sees it (spend, reserved, remaining). */
kg_err_t kg_policy_key_budget(kg_policy_t *p, const kg_key_view_t *key,
                              int64_t now,
                              kg_budget_key_view_t *out) KG_MUST_CHECK;

/* Failed authentications per client IP (429 past the threshold). */
bool kg_policy_auth_allowed(kg_policy_t *p, const char *ip, int64_t now_ms,
                            int64_t *retry_after_s);
void kg_policy_auth_failed(kg_policy_t *p, const char *ip, int64_t now_ms);

/* How often kg_policy_refresh should run, in milliseconds. */
#define KG_POLICY_REFRESH_MS 200

/*
 * Drop every cached key and workspace when the store's key revision has
 * moved (a CLI change), so the next request loads them again. It reads
 * the store: call it every KG_POLICY_REFRESH_MS from a thread off the
 * request path (the gateway's maintenance thread), never from an event
 * loop.
 */
void kg_policy_refresh(kg_policy_t *p);

/*
 * On a store that instances share, one round of exchanging the rate
 * windows with the others at now_ms (the wall clock; kg_rateshare_tick);
 * nothing on one that does not. It reads and writes the store: call it
 * every KG_POLICY_REFRESH_MS from a thread off the request path (the
 * gateway's maintenance thread). A failure is logged at debug, and the
 * instance goes on with what it knows of the others.
 */
void kg_policy_share_rates(kg_policy_t *p, int64_t now_ms);

/*
 * Write this instance's reservations in flight to the store
 * (kg_store_budget_reservation_set: the CLI, the admin API and the
 * dashboard show them), drop idle rate-limit windows and, on a store that
 * instances share, give back idle budget leases and renew the others
 * (keygate/leases.h) and prune the shared rate windows nobody publishes
 * any more (kg_rateshare_prune); the maintenance thread calls this every
 * second or so, and the gateway once more at stop, when nothing is in
 * flight, which leaves none of the reservations.
 */
kg_err_t kg_policy_persist(kg_policy_t *p, int64_t now_ms,
                           kg_diag_t *diag) KG_MUST_CHECK;

/*
 * At a stop, after the usage writer has stopped: give back the unused
 * room of every budget lease (a shared store; nothing otherwise).
 */
void kg_policy_stop(kg_policy_t *p);

#endif /* KEYGATE_POLICY_H */
