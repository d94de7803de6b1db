/* Policy on the request path: access rules, workspace modes, budgets, rates. */
#define _GNU_SOURCE /* pthread_rwlock writer preference */
#include "keygate/policy.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "keygate/clock.h"
#include "keygate/keys.h"
#include "keygate/leases.h"
#include "keygate/log.h"
#include "keygate/money.h"
#include "keygate/rateshare.h"
#include "keygate/store.h"
#include "keygate/store_budget.h"
#include "keygate/workspaces.h"
#include "keygate/wscred.h"

/* How often the key revision is looked at (the key cache does the same). */
#define POLICY_MAX_ENTRIES (1u << 20)

/*
 * A workspace's credential for one provider, decrypted into sodium memory
 * once, when the workspace is loaded. Admitted requests share it by
 * reference (kg_policy_ticket_t.credential_ref): a request costs an atomic
 * increment and decrement, never an allocation or a system call, and a
 * flush of the cache frees it only after the last request using it ends.
 */
struct kg_policy_cred {
    atomic_int refs;
    char *secret; /* owned, sodium memory */
    size_t len;
};

/*
 * A workspace's own credential for the provider of that name. Keyed by
 * name, not by the provider's position in a configuration: a request that
 * started before a reload, with a provider of the old configuration, finds
 * the right credential in an entry loaded after it.
 */
typedef struct pol_cred {
    char provider[KG_PROVIDER_NAME_MAX + 1];
    kg_policy_cred_t *cred; /* one reference */
} pol_cred_t;

typedef struct pol_ws {
    char id[KG_WORKSPACE_ID_LEN + 1];
    kg_ws_mode_t mode;
    kg_rules_t *rules;
    bool rules_bad;    /* stored rules did not compile: deny (fail closed) */
    pol_cred_t *creds; /* the workspace's own credentials */
    size_t ncreds;
    UT_hash_handle hh;
} pol_ws_t;

typedef struct pol_key {
    char id[KG_TOKEN_ID_LEN + 1];
    kg_rules_t *rules;
    bool rules_bad;
    pol_ws_t *ws; /* lives as long as this entry (flushed together) */
    UT_hash_handle hh;
} pol_key_t;

struct kg_policy {
    const kg_config_t *cfg; /* providers whose credentials load (store_mu) */
    uint64_t cfg_changes;   /* kg_policy_set_config calls (store_mu) */
    const kg_secretbox_t *sb;
    kg_store_t *store; /* guarded by store_mu */
    pthread_mutex_t store_mu;
    pthread_rwlock_t lock; /* guards keys and wss */
    pol_key_t *keys;
    pol_ws_t *wss;
    size_t nentries;
    int64_t revision;
    kg_budget_t *budget;
    kg_leases_t leases; /* a shared store's budget leases (store_mu) */
    kg_ratelimit_t *rate;
};

static void pol_ws_free(pol_ws_t *ws)
{
    if (ws == NULL) {
        return;
    }
    kg_rules_free(&ws->rules);
    for (size_t i = 0; i < ws->ncreds; i++) {
        kg_policy_cred_unref(&ws->creds[i].cred);
    }
    free(ws->creds);
    free(ws);
}

/* Drop every entry; call with the write lock held. */
static void pol_flush_locked(kg_policy_t *p)
{
    pol_key_t *k;
    pol_key_t *ktmp;
    pol_ws_t *w;
    pol_ws_t *wtmp;

    HASH_ITER(hh, p->keys, k, ktmp)
    {
        HASH_DEL(p->keys, k);
        kg_rules_free(&k->rules);
        free(k);
    }
    HASH_ITER(hh, p->wss, w, wtmp)
    {
        HASH_DEL(p->wss, w);
        pol_ws_free(w);
    }
    p->nentries = 0;
}

void kg_policy_refresh(kg_policy_t *p)
{
    int64_t rev = -1;

    pthread_mutex_lock(&p->store_mu);
    if (kg_store_budget_revision(p->store, &rev, NULL) != KG_OK) {
        rev = -1;
    }
    pthread_mutex_unlock(&p->store_mu);
    if (rev < 0) {
        return;
    }
    pthread_rwlock_wrlock(&p->lock);
    if (rev != p->revision) {
        pol_flush_locked(p);
        p->revision = rev;
    }
    pthread_rwlock_unlock(&p->lock);
}

/* Compile stored rules; a failure is kept as "deny everything". */
static kg_rules_t *pol_compile(const char *json, bool *bad, const char *what,
                               const char *id)
{
    kg_rules_t *r = NULL;
    kg_diag_t diag = {{0}};

    *bad = kg_rules_compile(json, &r, &diag) != KG_OK;
    if (*bad) {
        KG_ERROR("policy: the stored rules of %s %s do not compile (%s); "
                 "its requests are denied",
                 what, id, diag.msg);
    }
    return r;
}

/* Load a workspace (store_mu held). New on KG_OK. */
static kg_err_t pol_load_ws(kg_policy_t *p, const char *ws_id, pol_ws_t **out)
{
    const kg_config_t *cfg = p->cfg;
    kg_store_budget_workspace_t row;
    pol_ws_t *ws = NULL;
    kg_err_t rc = KG_OK;

    *out = NULL;
    ws = calloc(1, sizeof(*ws));
    if (ws == NULL ||
        (cfg->nproviders > 0 &&
         (ws->creds = calloc(cfg->nproviders, sizeof(*ws->creds))) == NULL)) {
        pol_ws_free(ws);
        return KG_ERR_NOMEM;
    }
    snprintf(ws->id, sizeof(ws->id), "%s", ws_id);
    rc = kg_store_budget_workspace_get(p->store, ws_id, &row, NULL);
    if (rc == KG_OK) {
        if (!kg_ws_mode_parse(row.mode, &ws->mode)) {
            ws->mode = KG_MODE_API_KEYS;
        }
        ws->rules = pol_compile(row.rules, &ws->rules_bad, "workspace", ws_id);
    }
    for (size_t i = 0; rc == KG_OK && i < cfg->nproviders; i++) {
        kg_diag_t diag = {{0}};
        pol_cred_t *pc = &ws->creds[ws->ncreds];
        char *secret = NULL;
        size_t len = 0;
        kg_err_t lr =
            kg_wscred_load(p->store, p->sb, ws_id, cfg->providers[i].name,
                           &secret, &len, &diag);

        if (lr == KG_ERR_NOT_FOUND) {
            continue;
        }
        if (lr == KG_OK) {
            pc->cred = calloc(1, sizeof(*pc->cred));
            lr = pc->cred != NULL ? KG_OK : KG_ERR_NOMEM;
        }
        if (lr != KG_OK) {
            kg_wscred_secret_free(&secret, len);
            KG_ERROR("policy: %s", diag.msg[0] ? diag.msg : kg_err_name(lr));
            rc = lr;
            continue;
        }
        snprintf(pc->provider, sizeof(pc->provider), "%s",
                 cfg->providers[i].name);
        atomic_init(&pc->cred->refs, 1);
        pc->cred->secret = secret;
        pc->cred->len = len;
        ws->ncreds++;
    }
    if (rc == KG_OK) {
        rc = kg_budget_sync_credits(p->budget, ws_id, row.credits_balance);
    }
    kg_store_budget_workspace_clear(&row);
    if (rc != KG_OK) {
        pol_ws_free(ws);
        return rc;
    }
    *out = ws;
    return KG_OK;
}

/* Make sure key_id has an entry; returns it with the read lock held. */
static kg_err_t pol_entry(kg_policy_t *p, const char *key_id, pol_key_t **out)
{
    pol_key_t *k = NULL;
    pol_ws_t *ws = NULL;
    kg_store_budget_key_t row;
    uint64_t changes = 0;
    kg_err_t rc = KG_OK;

    pthread_rwlock_rdlock(&p->lock);
    HASH_FIND_STR(p->keys, key_id, k);
    if (k != NULL) {
        *out = k;
        return KG_OK;
    }
    pthread_rwlock_unlock(&p->lock);

    pthread_mutex_lock(&p->store_mu);
    rc = kg_store_budget_key_get(p->store, key_id, &row, NULL);
    if (rc == KG_ERR_NOT_FOUND) {
        rc = KG_ERR_INVALID_KEY;
    }
    if (rc == KG_OK) {
        pthread_rwlock_rdlock(&p->lock);
        HASH_FIND_STR(p->wss, row.workspace_id, ws);
        pthread_rwlock_unlock(&p->lock);
        if (ws == NULL) {
            changes = p->cfg_changes;
            rc = pol_load_ws(p, row.workspace_id, &ws);
        } else {
            ws = NULL; /* someone else's; looked up again below */
        }
    }
    pthread_mutex_unlock(&p->store_mu);
    if (rc == KG_OK) {
        k = calloc(1, sizeof(*k));
        rc = k ? KG_OK : KG_ERR_NOMEM;
    }
    if (rc != KG_OK) {
        kg_store_budget_key_clear(&row);
        pol_ws_free(ws);
        return rc;
    }
    snprintf(k->id, sizeof(k->id), "%s", key_id);
    k->rules = pol_compile(row.rules, &k->rules_bad, "key", key_id);
    kg_store_budget_key_clear(&row);

    pthread_rwlock_wrlock(&p->lock);
    if (p->nentries >= POLICY_MAX_ENTRIES) {
        pol_flush_locked(p);
    }
    if (ws != NULL) {
        pol_ws_t *have = NULL;

        HASH_FIND_STR(p->wss, ws->id, have);
        if (changes != p->cfg_changes) {
            /* Loaded for the providers of a configuration since replaced:
             * dropped, and loaded again below. */
            pol_ws_free(ws);
        } else if (have == NULL) {
            HASH_ADD_STR(p->wss, id, ws);
            p->nentries++;
        } else {
            pol_ws_free(ws);
        }
    }
    HASH_FIND_STR(p->wss, row.workspace_id, k->ws);
    if (k->ws == NULL) {
        /* Flushed meanwhile: let the caller retry from the start. */
        pthread_rwlock_unlock(&p->lock);
        kg_rules_free(&k->rules);
        free(k);
        return pol_entry(p, key_id, out);
    }
    {
        pol_key_t *have = NULL;

        HASH_FIND_STR(p->keys, key_id, have);
        if (have == NULL) {
            HASH_ADD_STR(p->keys, id, k);
            p->nentries++;
        } else {
            kg_rules_free(&k->rules);
            free(k);
        }
    }
    pthread_rwlock_unlock(&p->lock);
    return pol_entry(p, key_id, out);
}

kg_err_t kg_policy_new(const kg_config_t *cfg, const char *store_path,
                       int busy_timeout_ms, const kg_secretbox_t *sb,
                       kg_policy_t **out, kg_diag_t *diag)
{
    kg_policy_t *p = calloc(1, sizeof(*p));
    kg_store_opts_t sopts = {0, busy_timeout_ms, 0, NULL};
    kg_ratelimit_opts_t ropts;
    kg_err_t rc;

    *out = NULL;
    if (p == NULL) {
        return KG_ERR_NOMEM;
    }
    p->cfg = cfg;
    p->sb = sb;
    p->revision = -1;
    pthread_mutex_init(&p->store_mu, NULL);
    pthread_rwlock_init(&p->lock, NULL);
    memset(&ropts, 0, sizeof(ropts));
    rc = kg_store_open(store_path, &sopts, &p->store, diag);
    if (rc == KG_OK) {
        rc = kg_budget_new(POLICY_MAX_ENTRIES, &p->budget);
    }
    if (rc == KG_OK) {
        rc = kg_ratelimit_new(&ropts, &p->rate);
    }
    if (rc == KG_OK) {
        /* Reservations of a run that did not stop cleanly: reclaimed. */
        rc = kg_store_budget_reservations_clear(p->store, diag);
    }
    if (rc == KG_OK) {
        kg_leases_init(&p->leases, p->budget, p->store);
    }
    if (rc != KG_OK) {
        kg_policy_free(&p);
        return rc;
    }
    *out = p;
    return KG_OK;
}

/* Whether a and b have the same provider names, in any order. */
static bool pol_same_providers(const kg_config_t *a, const kg_config_t *b)
{
    if (a->nproviders != b->nproviders) {
        return false;
    }
    for (size_t i = 0; i < a->nproviders; i++) {
        if (kg_providers_find(b, a->providers[i].name) == NULL) {
            return false;
        }
    }
    return true;
}

void kg_policy_set_config(kg_policy_t *p, const kg_config_t *cfg)
{
    pthread_mutex_lock(&p->store_mu);
    pthread_rwlock_wrlock(&p->lock);
    if (!pol_same_providers(p->cfg, cfg)) {
        /* Workspaces load their own credentials for these providers. */
        pol_flush_locked(p);
        p->cfg_changes++;
    }
    p->cfg = cfg;
    pthread_rwlock_unlock(&p->lock);
    pthread_mutex_unlock(&p->store_mu);
}

void kg_policy_free(kg_policy_t **pp)
{
    kg_policy_t *p;

    if (pp == NULL || *pp == NULL) {
        return;
    }
    p = *pp;
    pthread_rwlock_wrlock(&p->lock);
    pol_flush_locked(p);
    pthread_rwlock_unlock(&p->lock);
    kg_budget_free(&p->budget);
    kg_ratelimit_free(&p->rate);
    kg_store_close(&p->store);
    pthread_rwlock_destroy(&p->lock);
    pthread_mutex_destroy(&p->store_mu);
    free(p);
    *pp = NULL;
}

/*
 * Which credential serves provider for ws (read lock held): the
 * workspace's own (*ws_cred), the provider's pool (charged to the credits
 * with *credits), or none at all for a provider that needs none; *pool
 * says the pool serves without credits (pool mode). false: the mode
 * leaves the provider unavailable to the workspace.
 */
static bool pol_pick_credential(const kg_policy_t *p, const pol_ws_t *ws,
                                const kg_provider_t *prov,
                                const pol_cred_t **ws_cred, bool *credits,
                                bool *pool)
{
    const pol_cred_t *own = NULL;

    (void)p;
    for (size_t i = 0; i < ws->ncreds; i++) {
        if (strcmp(ws->creds[i].provider, prov->name) == 0) {
            own = &ws->creds[i];
            break;
        }
    }

    *ws_cred = NULL;
    *credits = false;
    *pool = false;
    switch (ws->mode) {
    case KG_MODE_API_KEYS:
        /* Only the workspace's own keys; a keyless provider is open. */
        *ws_cred = own;
        return own != NULL || prov->credential == NULL;
    case KG_MODE_CREDITS:
        *credits = true;
        return true;
    case KG_MODE_HYBRID:
        *ws_cred = own;
        *credits = own == NULL;
        return true;
    case KG_MODE_POOL:
        /* The server's own credentials, limited by key budgets only. */
        *pool = true;
        return true;
    }
    return false;
}

static void pol_rules_request(const kg_policy_request_t *req,
                              kg_rules_request_t *rr)
{
    memset(rr, 0, sizeof(*rr));
    rr->model = req->model ? req->model->name : NULL;
    rr->provider = req->provider ? req->provider->name : NULL;
    rr->operation = req->operation;
    rr->client_ip = req->client_ip;
    rr->input_price = req->model ? req->model->input_price : -1;
    rr->output_price = req->model ? req->model->output_price : -1;
}

static kg_err_t pol_deny(kg_policy_denial_t *d, kg_err_t err,
                         const char *detail)
{
    d->err = err;
    snprintf(d->detail, sizeof(d->detail), "%s", detail ? detail : "");
    return err;
}

/* Rules and mode, under the entry's read lock. */
static kg_err_t pol_check_entry(kg_policy_t *p, const pol_key_t *k,
                                const kg_policy_request_t *req,
                                kg_policy_ticket_t *t, kg_policy_denial_t *d)
{
    const pol_cred_t *own = NULL;
    kg_rules_request_t rr;
    char reason[KG_RULES_REASON_MAX];

    if (k->rules_bad || k->ws->rules_bad) {
        return pol_deny(d, KG_ERR_ACCESS_DENIED,
                        "the stored access rules could not be read.");
    }
    pol_rules_request(req, &rr);
    if (kg_rules_check(k->ws->rules, k->rules, &rr, reason, sizeof(reason)) !=
        KG_OK) {
        return pol_deny(d, KG_ERR_ACCESS_DENIED, reason);
    }
    if (req->provider != NULL &&
        !pol_pick_credential(p, k->ws, req->provider, &own, &t->credits,
                             &t->pool)) {
        return pol_deny(d, KG_ERR_UNKNOWN_MODEL,
                        req->model ? req->model->name : req->operation);
    }
    if (own != NULL) {
        /* A reference, not a copy: no allocation on the request path. */
        atomic_fetch_add_explicit(&own->cred->refs, 1, memory_order_relaxed);
        t->credential_ref = own->cred;
        t->credential = own->cred->secret;
        t->credential_len = own->cred->len;
    }
    snprintf(t->workspace_id, sizeof(t->workspace_id), "%s", k->ws->id);
    return KG_OK;
}

void kg_policy_cred_ref(kg_policy_cred_t *c)
{
    if (c != NULL) {
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    }
}

void kg_policy_cred_unref(kg_policy_cred_t **c)
{
    if (c == NULL || *c == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&(*c)->refs, 1, memory_order_acq_rel) == 1) {
        kg_wscred_secret_free(&(*c)->secret, (*c)->len); /* wipes */
        free(*c);
    }
    *c = NULL;
}

static void pol_ticket_drop_credential(kg_policy_ticket_t *t)
{
    kg_policy_cred_unref(&t->credential_ref);
    t->credential = NULL;
    t->credential_len = 0;
}

/* Claims a reservation may make before it gives up (other requests of
 * this process racing for the same room). */
#define POLICY_CLAIM_TRIES 3

/*
 * Reserve amount on a key's budgets (credits false) or a workspace's
 * credits at now_ms. On a shared store, a lease that falls short is
 * topped up from the store (one round trip, under the store lock) and the
 * reservation tried again. Returns KG_OK, the budget's refusal
 * (KG_ERR_USAGE_LIMIT, KG_ERR_PERIOD_LIMIT, KG_ERR_NO_CREDITS),
 * KG_ERR_NOT_FOUND (no account), or KG_ERR_UNAVAILABLE when the store
 * could not grant room.
 */
static kg_err_t pol_reserve(kg_policy_t *p, bool credits, const char *id,
                            int64_t amount, int64_t now_ms,
                            kg_budget_hold_t *hold)
{
    kg_err_t rc = KG_ERR_STATE;

    for (int i = 0; i < POLICY_CLAIM_TRIES && rc == KG_ERR_STATE; i++) {
        kg_diag_t diag = {{0}};

        rc = credits ? kg_budget_reserve_credits(p->budget, id, amount, hold)
                     : kg_budget_reserve_key(p->budget, id, amount,
                                             now_ms / 1000, hold);
        if (rc != KG_ERR_STATE) {
            break;
        }
        pthread_mutex_lock(&p->store_mu);
        rc = kg_leases_claim(&p->leases, p->budget, p->store, credits, id,
                             amount, now_ms / 1000, &diag);
        pthread_mutex_unlock(&p->store_mu);
        if (rc == KG_OK) {
            rc = KG_ERR_STATE; /* reserve again */
        } else if (rc != KG_ERR_USAGE_LIMIT && rc != KG_ERR_PERIOD_LIMIT &&
                   rc != KG_ERR_NO_CREDITS) {
            KG_WARN("budget: no lease for %s %s: %s",
                    credits ? "workspace" : "key", id, diag.msg);
            rc = KG_ERR_UNAVAILABLE;
        }
    }
    return rc == KG_ERR_STATE ? KG_ERR_UNAVAILABLE : rc;
}

kg_err_t kg_policy_admit(kg_policy_t *p, const kg_policy_request_t *req,
                         int64_t now_ms, kg_policy_ticket_t *t,
                         kg_policy_denial_t *d)
{
    const kg_key_view_t *key = req->key;
    kg_budget_key_state_t bs;
    kg_ratelimit_limits_t lim;
    pol_key_t *k = NULL;
    int64_t max_out;
    int64_t worst = 0;
    kg_err_t rc;

    memset(t, 0, sizeof(*t));
    memset(d, 0, sizeof(*d));
    rc = pol_entry(p, key->id, &k);
    if (rc != KG_OK) {
        return pol_deny(d,
                        rc == KG_ERR_INVALID_KEY ? KG_ERR_INVALID_KEY
                                                 : KG_ERR_UNAVAILABLE,
                        "the key store is unavailable.");
    }
    rc = pol_check_entry(p, k, req, t, d);
    pthread_rwlock_unlock(&p->lock);
    if (rc != KG_OK) {
        return rc;
    }

    memset(&bs, 0, sizeof(bs));
    bs.id = key->id;
    bs.usage_limit = key->usage_limit;
    bs.usage = key->usage;
    bs.period = key->period;
    bs.period_limit = key->period_limit;
    bs.period_usage = key->period_usage;
    bs.period_started_at = key->period_started_at;
    rc = kg_budget_sync_key(p->budget, &bs);
    if (rc != KG_OK) {
        pol_ticket_drop_credential(t);
        return pol_deny(d, KG_ERR_UNAVAILABLE, "the gateway is overloaded.");
    }
    max_out = req->max_tokens >= 0 ? req->max_tokens
              : req->model         ? req->model->max_output_tokens
                                   : 0;
    if (req->model != NULL) {
        worst = kg_budget_worst_case(
            req->input_bound > req->input_estimate ? req->input_bound
                                                   : req->input_estimate,
            max_out, req->model->input_price, req->model->output_price);
    }
    lim.rpm = key->rpm;
    lim.tpm = key->tpm;
    lim.max_concurrent = key->max_concurrent;
    rc = kg_ratelimit_acquire(p->rate, key->id, &lim,
                              req->input_estimate + max_out, now_ms, &t->rate,
                              &t->rate_info);
    if (rc != KG_OK) {
        static const char *const what[] = {"", "requests per minute",
                                           "tokens per minute",
                                           "concurrent requests"};
        int kind = (int)t->rate_info.refused;

        pol_ticket_drop_credential(t);
        d->rate_info = t->rate_info;
        d->retry_after = t->rate_info.retry_after_s;
        snprintf(d->detail, sizeof(d->detail),
                 "this key's limit of %s was reached.",
                 kind > 0 && kind < 4 ? what[kind] : "requests");
        d->err = KG_ERR_RATE_LIMITED;
        return d->err;
    }
    rc = req->no_charge
             ? KG_OK
             : pol_reserve(p, false, key->id, worst, now_ms, &t->key_hold);
    if (rc == KG_OK && t->credits) {
        rc = pol_reserve(p, true, t->workspace_id, worst, now_ms,
                         &t->credit_hold);
    }
    if (rc != KG_OK) {
        kg_budget_settle(p->budget, &t->key_hold, 0, now_ms / 1000);
        kg_ratelimit_release(p->rate, &t->rate, 0, now_ms);
        pol_ticket_drop_credential(t);
        return pol_deny(d, rc == KG_ERR_NOT_FOUND ? KG_ERR_UNAVAILABLE : rc,
                        rc == KG_ERR_UNAVAILABLE
                            ? "the key store is unavailable."
                            : "the gateway lost track of the budget.");
    }
    t->live = true;
    return KG_OK;
}

int64_t kg_policy_settle(kg_policy_t *p, kg_policy_ticket_t *t, int64_t cost,
                         int64_t tokens, int64_t now_ms)
{
    int64_t period = KG_NONE;

    if (t == NULL) {
        return KG_NONE;
    }
    if (t->live) {
        t->live = false;
        kg_budget_settle(p->budget, &t->key_hold, cost, now_ms / 1000);
        kg_budget_settle(p->budget, &t->credit_hold, cost, now_ms / 1000);
        kg_ratelimit_release(p->rate, &t->rate, tokens, now_ms);
    }
    period = t->key_hold.charged_period_start;
    pol_ticket_drop_credential(t);
    return period;
}

const char *kg_policy_ticket_mode(const kg_policy_ticket_t *t)
{
    return t->credits ? "credits" : t->pool ? "pool" : "api-keys";
}

void kg_policy_credits_committed(kg_policy_t *p, const char *ws_id,
                                 int64_t cost)
{
    kg_budget_credits_persisted(p->budget, ws_id, cost);
}

bool kg_policy_model_visible(kg_policy_t *p, const kg_key_view_t *key,
                             const kg_model_t *model, const char *client_ip)
{
    kg_policy_request_t req;
    kg_rules_request_t rr;
    const pol_cred_t *own = NULL;
    bool credits = false;
    bool pool = false;
    pol_key_t *k = NULL;
    bool ok;

    if (pol_entry(p, key->id, &k) != KG_OK) {
        return false;
    }
    memset(&req, 0, sizeof(req));
    req.key = key;
    req.model = model;
    req.provider = model->provider;
    req.operation = "models";
    req.client_ip = client_ip;
    pol_rules_request(&req, &rr);
    ok = !k->rules_bad && !k->ws->rules_bad &&
         kg_rules_model_visible(k->ws->rules, k->rules, &rr) &&
         pol_pick_credential(p, k->ws, model->provider, &own, &credits, &pool);
    pthread_rwlock_unlock(&p->lock);
    return ok;
}

kg_err_t kg_policy_key_budget(kg_policy_t *p, const kg_key_view_t *key,
                              int64_t now, kg_budget_key_view_t *out)
{
    kg_budget_key_state_t bs;

    memset(&bs, 0, sizeof(bs));
    bs.id = key->id;
    bs.usage_limit = key->usage_limit;
    bs.usage = key->usage;
    bs.period = key->period;
    bs.period_limit = key->period_limit;
    bs.period_usage = key->period_usage;
    bs.period_started_at = key->period_started_at;
    if (kg_budget_sync_key(p->budget, &bs) != KG_OK) {
        return KG_ERR_UNAVAILABLE;
    }
    return kg_budget_key_snapshot(p->budget, key->id, now, out);
}

bool kg_policy_auth_allowed(kg_policy_t *p, const char *ip, int64_t now_ms,
                            int64_t *retry_after_s)
{
    return kg_ratelimit_auth_allowed(p->rate, ip, now_ms, retry_after_s);
}

void kg_policy_auth_failed(kg_policy_t *p, const char *ip, int64_t now_ms)
{
    kg_ratelimit_auth_failed(p->rate, ip, now_ms);
}

typedef struct pol_persist {
    kg_policy_t *p;
    kg_err_t rc;
    kg_diag_t *diag;
} pol_persist_t;

static void pol_persist_one(void *ud, const kg_budget_entry_t *e)
{
    pol_persist_t *pp = ud;

    if (e->credits || pp->rc != KG_OK || e->reserved <= 0) {
        return;
    }
    pp->rc = kg_store_budget_reservation_set(pp->p->store, e->id, e->reserved,
                                             pp->diag);
}

void kg_policy_share_rates(kg_policy_t *p, int64_t now_ms)
{
    kg_diag_t diag = {{0}};

    pthread_mutex_lock(&p->store_mu);
    /* On a failure each instance goes on with what it knows. */
    if (kg_rateshare_tick(p->store, p->rate, now_ms, &diag) != KG_OK) {
        KG_DEBUG("maintenance: rate limits not shared: %s", diag.msg);
    }
    pthread_mutex_unlock(&p->store_mu);
}

kg_err_t kg_policy_persist(kg_policy_t *p, int64_t now_ms, kg_diag_t *diag)
{
    pol_persist_t pp = {p, KG_OK, diag};
    kg_diag_t rdiag = {{0}};

    kg_ratelimit_sweep(p->rate, now_ms);
    pthread_mutex_lock(&p->store_mu);
    /* A shared store's leases: idle room back, renewals. */
    kg_leases_tick(&p->leases, p->budget, p->store);
    /* Shared rate windows nobody publishes any more (none on SQLite). */
    if (kg_rateshare_prune(p->store, now_ms, &rdiag) != KG_OK) {
        KG_DEBUG("maintenance: old rate windows not pruned: %s", rdiag.msg);
    }
    pp.rc = kg_store_begin(p->store, diag);
    if (pp.rc == KG_OK) {
        pp.rc = kg_store_budget_reservations_clear(p->store, diag);
    }
    if (pp.rc == KG_OK) {
        kg_budget_foreach_reserved(p->budget, pol_persist_one, &pp);
    }
    if (pp.rc == KG_OK) {
        pp.rc = kg_store_commit(p->store, diag);
    } else {
        kg_store_rollback(p->store);
    }
    pthread_mutex_unlock(&p->store_mu);
    return pp.rc;
}

void kg_policy_stop(kg_policy_t *p)
{
    pthread_mutex_lock(&p->store_mu);
    kg_leases_stop(&p->leases, p->budget, p->store);
    pthread_mutex_unlock(&p->store_mu);
}
