/* Configuration generations: what a reload swaps, and how loops hold one. */
#include "keygate/generation.h"

#include <stdlib.h>
#include <time.h>

#include "keygate/clock.h"
#include "keygate/log.h"
#include "keygate/timefmt.h"

kg_err_t kg_generation_new(kg_config_t **cfg, uint64_t number,
                           kg_generation_t **out, kg_diag_t *diag)
{
    kg_generation_t *g = calloc(1, sizeof(*g));
    const kg_config_t *c = *cfg;
    kg_err_t rc = KG_OK;

    *out = NULL;
    if (g == NULL) {
        kg_config_free(cfg);
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    atomic_init(&g->refs, 1);
    g->number = number;
    g->loaded_at = kg_clock_now();
    g->cfg = *cfg;
    *cfg = NULL;
    if (c->server_tls_cert_file[0] != '\0') {
        rc = kg_tls_creds_load(c->server_tls_cert_file, c->server_tls_key_file,
                               c->server_tls_min_version, "[server]", &g->tls,
                               diag);
    }
    if (rc == KG_OK && c->admin_tls_cert_file[0] != '\0') {
        rc = kg_tls_creds_load(c->admin_tls_cert_file, c->admin_tls_key_file,
                               c->admin_tls_min_version, "[admin]",
                               &g->admin_tls, diag);
    }
    if (rc != KG_OK) {
        kg_generation_unref(&g);
        return rc;
    }
    *out = g;
    return KG_OK;
}

json_t *kg_generation_json(const kg_generation_t *g)
{
    char at[KG_TIME_STRLEN];

    return json_pack("{s:I, s:s}", "generation", (json_int_t)g->number,
                     "loadedAt", kg_time_format(g->loaded_at, at, sizeof(at)));
}

kg_generation_t *kg_generation_ref(kg_generation_t *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

void kg_generation_unref(kg_generation_t **pg)
{
    kg_generation_t *g;

    if (pg == NULL || *pg == NULL) {
        return;
    }
    g = *pg;
    *pg = NULL;
    if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    kg_tls_creds_unref(&g->tls);
    kg_tls_creds_unref(&g->admin_tls);
    kg_config_free(&g->cfg);
    free(g);
}

static kg_gen_slot_t *gen_slot_new(kg_gen_loop_t *l, kg_generation_t *g)
{
    kg_gen_slot_t *s = calloc(1, sizeof(*s));

    if (s != NULL) {
        s->gen = g;
        s->cfg = g->cfg;
        s->loop = l;
    }
    return s;
}

static void gen_slot_free(kg_gen_slot_t *s)
{
    kg_generation_unref(&s->gen);
    free(s);
}

kg_err_t kg_gen_loop_init(kg_gen_loop_t *l, kg_generation_t *g)
{
    l->retired = NULL;
    l->nretired = 0;
    l->current = gen_slot_new(l, g);
    if (l->current == NULL) {
        return KG_ERR_NOMEM;
    }
    kg_generation_ref(g);
    return KG_OK;
}

kg_err_t kg_gen_loop_switch(kg_gen_loop_t *l, kg_generation_t *g)
{
    kg_gen_slot_t *s = gen_slot_new(l, g);
    kg_gen_slot_t *old = l->current;

    if (s == NULL) {
        kg_generation_unref(&g);
        return KG_ERR_NOMEM;
    }
    l->current = s;
    if (old->users == 0) {
        gen_slot_free(old);
        return KG_OK;
    }
    /* Its requests finish on it; the last one frees it. */
    old->retired = true;
    old->prev = NULL;
    old->next = l->retired;
    if (l->retired != NULL) {
        l->retired->prev = old;
    }
    l->retired = old;
    l->nretired++;
    return KG_OK;
}

kg_gen_slot_t *kg_gen_loop_hold(kg_gen_loop_t *l)
{
    l->current->users++;
    return l->current;
}

void kg_gen_slot_hold(kg_gen_slot_t *s)
{
    s->users++;
}

void kg_gen_slot_drop(kg_gen_slot_t **ps)
{
    kg_gen_slot_t *s;
    kg_gen_loop_t *l;

    if (ps == NULL || *ps == NULL) {
        return;
    }
    s = *ps;
    *ps = NULL;
    if (--s->users > 0 || !s->retired) {
        return;
    }
    l = s->loop;
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        l->retired = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    l->nretired--;
    gen_slot_free(s);
}

void kg_gen_loop_clear(kg_gen_loop_t *l)
{
    while (l->retired != NULL) {
        kg_gen_slot_t *s = l->retired;

        l->retired = s->next;
        KG_WARN("configuration %llu freed with %zu user%s left",
                (unsigned long long)s->gen->number, s->users,
                s->users == 1 ? "" : "s");
        gen_slot_free(s);
    }
    l->nretired = 0;
    if (l->current != NULL) {
        gen_slot_free(l->current);
        l->current = NULL;
    }
}
