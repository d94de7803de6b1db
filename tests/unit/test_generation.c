/* Unit tests of configuration generations and an event loop's slots. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/generation.h"
#include "unit_util.h"

/* A generation of the built-in defaults, numbered n (one reference). */
static kg_generation_t *gen_new(uint64_t n)
{
    kg_config_t *cfg = NULL;
    kg_generation_t *g = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_config_load(NULL, &cfg, &diag), KG_OK);
    ck_assert_int_eq(kg_generation_new(&cfg, n, &g, &diag), KG_OK);
    ck_assert_ptr_null(cfg); /* taken over */
    ck_assert_ptr_null(g->tls);
    ck_assert_int_eq(atomic_load(&g->refs), 1);
    return g;
}

/*
 * A request holds the slot it started on across a switch; the old slot is
 * retired, not freed, until its last user drops it, and its generation
 * goes with it.
 */
START_TEST(test_requests_keep_their_generation)
{
    kg_generation_t *g1 = gen_new(1);
    kg_generation_t *g2 = gen_new(2);
    kg_gen_loop_t loop;
    kg_gen_slot_t *req;
    kg_gen_slot_t *transfer;
    kg_gen_slot_t *later;

    ck_assert_int_eq(kg_gen_loop_init(&loop, g1), KG_OK);
    ck_assert_int_eq(atomic_load(&g1->refs), 2);
    req = kg_gen_loop_hold(&loop);
    transfer = req;
    kg_gen_slot_hold(transfer); /* its proxied transfer */
    ck_assert_ptr_eq(req->cfg, g1->cfg);

    ck_assert_int_eq(kg_gen_loop_switch(&loop, kg_generation_ref(g2)), KG_OK);
    ck_assert_uint_eq(loop.nretired, 1);
    ck_assert(req->retired);
    later = kg_gen_loop_hold(&loop);
    ck_assert_ptr_eq(later->gen, g2);
    ck_assert_ptr_eq(req->gen, g1);

    /* The gateway lets go of generation 1: the request still has it. */
    kg_generation_unref(&g1);
    ck_assert_ptr_null(g1);
    ck_assert_int_eq(atomic_load(&req->gen->refs), 1);
    kg_gen_slot_drop(&req);
    ck_assert_ptr_null(req);
    ck_assert_uint_eq(loop.nretired, 1); /* the transfer is still on it */
    kg_gen_slot_drop(&transfer);
    ck_assert_uint_eq(loop.nretired, 0);
    ck_assert_ptr_null(loop.retired);

    /* A current slot is never freed by its users. */
    kg_gen_slot_drop(&later);
    ck_assert_ptr_eq(loop.current->gen, g2);
    ck_assert_uint_eq(loop.current->users, 0);
    kg_gen_loop_clear(&loop);
    ck_assert_ptr_null(loop.current);
    ck_assert_int_eq(atomic_load(&g2->refs), 1);
    kg_generation_unref(&g2);
}
END_TEST

/* A slot nobody uses goes at once; retired slots drop out of the middle of
 * the list in any order. */
START_TEST(test_switches_free_unused_slots)
{
    kg_generation_t *g[4];
    kg_gen_slot_t *held[3];
    kg_gen_loop_t loop;

    for (int i = 0; i < 4; i++) {
        g[i] = gen_new((uint64_t)i + 1);
    }
    ck_assert_int_eq(kg_gen_loop_init(&loop, g[0]), KG_OK);
    /* Nobody on generation 1: freed by the switch. */
    ck_assert_int_eq(kg_gen_loop_switch(&loop, kg_generation_ref(g[1])), KG_OK);
    ck_assert_uint_eq(loop.nretired, 0);
    ck_assert_int_eq(atomic_load(&g[0]->refs), 1);
    for (int i = 0; i < 3; i++) {
        held[i] = kg_gen_loop_hold(&loop);
        ck_assert_ptr_eq(held[i]->gen, g[i + 1]);
        if (i < 2) {
            ck_assert_int_eq(
                kg_gen_loop_switch(&loop, kg_generation_ref(g[i + 2])), KG_OK);
        }
    }
    ck_assert_uint_eq(loop.nretired, 2);
    kg_gen_slot_drop(&held[0]); /* the older one first */
    ck_assert_uint_eq(loop.nretired, 1);
    ck_assert_ptr_eq(loop.retired->gen, g[2]);
    kg_gen_slot_drop(&held[1]);
    ck_assert_uint_eq(loop.nretired, 0);
    kg_gen_slot_drop(&held[2]);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(atomic_load(&g[i]->refs), 1);
    }
    ck_assert_int_eq(atomic_load(&g[3]->refs), 2);
    kg_gen_loop_clear(&loop);
    for (int i = 0; i < 4; i++) {
        kg_generation_unref(&g[i]);
    }
}
END_TEST

/* /readyz's view of a generation. */
START_TEST(test_generation_json)
{
    kg_generation_t *g = gen_new(7);
    json_t *j = kg_generation_json(g);

    ck_assert_int_eq(json_integer_value(json_object_get(j, "generation")), 7);
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(j, "loadedAt"))),
                      strlen("2025-01-31T23:59:59Z"));
    json_decref(j);
    kg_generation_unref(&g);
}
END_TEST

/* A certificate that cannot be read fails the generation, which then owns
 * nothing (the configuration it took over is freed). */
START_TEST(test_generation_refuses_missing_certificate)
{
    char dir[UT_PATH_MAX];
    char ini[UT_PATH_MAX];
    kg_config_t *cfg = NULL;
    kg_generation_t *g = NULL;
    kg_diag_t diag = {{0}};

    ut_tmpdir(dir);
    ut_join(ini, dir, "k.ini");
    ut_write_text(ini, "[server]\ntls_cert_file = cert.pem\n"
                       "tls_key_file = key.pem\n");
    ck_assert_int_eq(kg_config_load(ini, &cfg, &diag), KG_OK);
    ck_assert_int_eq(kg_generation_new(&cfg, 2, &g, &diag), KG_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(diag.msg, "[server] tls_cert_file"));
    ck_assert_ptr_nonnull(strstr(diag.msg, "cert.pem"));
    ut_tmpdir_remove(dir);
}
END_TEST

static Suite *generation_suite(void)
{
    Suite *s = suite_create("generation");
    TCase *tc = tcase_create("generation");

    tcase_add_test(tc, test_requests_keep_their_generation);
    tcase_add_test(tc, test_switches_free_unused_slots);
    tcase_add_test(tc, test_generation_json);
    tcase_add_test(tc, test_generation_refuses_missing_certificate);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(generation_suite());
}
