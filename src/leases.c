/* Budget leases between the in-memory accounts and a shared store. */
#include "keygate/leases.h"

#include "keygate/clock.h"
#include "keygate/log.h"
#include "keygate/store_leases.h"

static int64_t leases_mono_ms(void)
{
    return kg_clock_mono_us() / 1000;
}

void kg_leases_init(kg_leases_t *l, kg_budget_t *b, const kg_store_t *store)
{
    l->on = kg_store_leases_shared(store);
    l->next_renew_ms = 0;
    if (l->on) {
        kg_budget_leases_enable(b);
    }
}

kg_err_t kg_leases_claim(kg_leases_t *l, kg_budget_t *b, kg_store_t *store,
                         bool credits, const char *id, int64_t amount,
                         int64_t now, kg_diag_t *diag)
{
    kg_store_lease_claim_t c = {0};
    int64_t granted = 0, sent;
    kg_err_t rc;

    amount = amount < 0                      ? 0
             : amount > KG_BUDGET_AMOUNT_MAX ? KG_BUDGET_AMOUNT_MAX
                                             : amount;
    c.fresh = kg_budget_leases_lapsed(b);
    if (c.fresh) {
        /* The store may have given their room to others meanwhile. */
        kg_budget_leases_reset(b);
    }
    c.need = kg_budget_lease_shortfall(b, credits, id, amount);
    if (c.need == 0 && !c.fresh) {
        return KG_OK; /* another request's claim covers it */
    }
    c.scope = credits ? KG_STORE_LEASE_CREDITS : KG_STORE_LEASE_KEY;
    c.id = id;
    /* Half the room per live instance: a busy key claims a few times as
     * its room shrinks, not once per so many requests. */
    c.want = KG_BUDGET_AMOUNT_MAX;
    c.ttl_ms = KG_LEASES_TTL_MS;
    c.now = now;
    sent = leases_mono_ms();
    rc = kg_store_leases_claim(store, &c, &granted, diag);
    if (rc != KG_OK) {
        return rc;
    }
    /* The store renewed every lease of this instance from a time after
     * sent: valid at least until sent + TTL. */
    kg_budget_leases_valid(b, sent + KG_LEASES_TTL_MS);
    l->next_renew_ms = sent + KG_LEASES_RENEW_MS;
    return kg_budget_lease_add(b, credits, id, granted);
}

/* Accounts given back per round (a stop takes as many rounds as needed,
 * a tick one). */
#define LEASES_BACK_MAX 128

/*
 * Give back the unused room of accounts idle for idle_ms (<= 0: all), one
 * round or (all) until none is left. Outside the accounts' locks: the
 * store's round trips never stall a reservation.
 */
static void leases_give_back(kg_budget_t *b, kg_store_t *store, int64_t idle_ms)
{
    kg_budget_lease_back_t back[LEASES_BACK_MAX];
    kg_diag_t diag = {{0}};
    kg_err_t failed = KG_OK;
    size_t n;

    do {
        n = kg_budget_leases_take_idle(b, idle_ms, back, LEASES_BACK_MAX);
        for (size_t i = 0; i < n; i++) {
            kg_err_t rc = kg_store_leases_return(
                store,
                back[i].credits ? KG_STORE_LEASE_CREDITS : KG_STORE_LEASE_KEY,
                back[i].id, back[i].unused, &diag);

            failed = failed == KG_OK ? rc : failed;
        }
    } while (idle_ms <= 0 && n == LEASES_BACK_MAX);
    if (failed != KG_OK) {
        KG_DEBUG("leases: unused room not given back (it expires): %s",
                 diag.msg);
    }
}

void kg_leases_tick(kg_leases_t *l, kg_budget_t *b, kg_store_t *store)
{
    kg_diag_t diag = {{0}};
    int64_t sent;

    if (!l->on) {
        return;
    }
    leases_give_back(b, store, KG_LEASES_IDLE_MS);
    sent = leases_mono_ms();
    if (kg_budget_leases_lapsed(b) || sent < l->next_renew_ms) {
        return; /* nothing held, or not due */
    }
    if (kg_store_leases_renew(store, KG_LEASES_TTL_MS, &diag) != KG_OK) {
        KG_DEBUG("leases: not renewed: %s", diag.msg);
        return;
    }
    kg_budget_leases_valid(b, sent + KG_LEASES_TTL_MS);
    l->next_renew_ms = sent + KG_LEASES_RENEW_MS;
}

void kg_leases_stop(kg_leases_t *l, kg_budget_t *b, kg_store_t *store)
{
    kg_diag_t diag = {{0}};

    if (!l->on) {
        return;
    }
    leases_give_back(b, store, 0);
    /* Drops the emptied leases; what costs not yet written keep expires. */
    if (kg_store_leases_renew(store, KG_LEASES_TTL_MS, &diag) != KG_OK) {
        KG_DEBUG("leases: not dropped at stop (they expire): %s", diag.msg);
    }
}
