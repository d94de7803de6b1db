/* Three gateways on one PostgreSQL store: coherence, a killed instance, a
 * server restart. */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway_fixture.h"
#include "pg_server.h"

#define N_GW 3
/* Requests a load thread sends at most (each loop is bounded). */
#define LOAD_MAX 3000
/* Completed requests remembered per load thread. */
#define LOAD_IDS LOAD_MAX

static pgs_t PG;
static gwf_t W[N_GW];
static char URL[PGS_PATH_MAX];

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_file(const char *from, const char *to)
{
    char *data = NULL;
    size_t len = 0;

    ck_assert_int_eq(kg_harness_read_file(from, &data, &len), 0);
    ck_assert_int_eq(kg_harness_write_file(to, data, len, 0600), 0);
    free(data);
}

/* The server and the root directory: in the parent, so that a test that
 * times out still has its gateways (noted in the root) and the server
 * stopped. */
static void setup_server(void)
{
    gwf_root_new("kg-pg-gw");
    pgs_start(&PG);
}

static void teardown_server(void)
{
    pgs_destroy(&PG);
    gwf_root_free();
}

/* Three worlds, each with its own mock and daemon, one store (a database
 * of its own per test): the first runs keygate init on it, the others get
 * its key files. */
static void setup_worlds(void)
{
    static int n;
    char name[32], extra[PGS_PATH_MAX + 32];

    snprintf(name, sizeof(name), "kg_gw_%d_%d", (int)getpid(), n++);
    pgs_create_db(&PG, name, URL);
    snprintf(extra, sizeof(extra), "[store]\nurl = %s\nstale_after = 2s\n",
             URL);
    for (int i = 0; i < N_GW; i++) {
        gwf_init(&W[i], false);
        gwf_config(&W[i], NULL, NULL, extra);
    }
    gwf_init_store(&W[0]);
    for (int i = 1; i < N_GW; i++) {
        char from[PATH_MAX + 32], to[PATH_MAX + 32];

        snprintf(to, sizeof(to), "%s/state", W[i].dir);
        ck_assert_int_eq(mkdir(to, 0700), 0);
        for (int k = 0; k < 2; k++) {
            const char *file = k ? "secret.key" : "hash.key";

            snprintf(from, sizeof(from), "%s/state/%s", W[0].dir, file);
            snprintf(to, sizeof(to), "%s/state/%s", W[i].dir, file);
            copy_file(from, to);
        }
    }
    for (int i = 0; i < N_GW; i++) {
        gwf_start(&W[i]);
    }
}

static void teardown_worlds(void)
{
    bool clean = true;

    /* A test that stopped the server leaves it running again. */
    pgs_restart(&PG);
    for (int i = 0; i < N_GW; i++) {
        clean = gwf_stop_checked(&W[i]) && clean;
        gwf_free(&W[i]);
    }
    ck_assert_msg(clean, "a gateway did not stop cleanly");
}

static long chat(const gwf_t *f, const gwf_key_t *k, char *reqid,
                 size_t reqid_len)
{
    char bearer[GWF_TOKEN_MAX + 32];
    gwf_resp_t r;
    long status;

    gwf_post(f, &r, "/v1/chat/completions",
             gwf_bearer(k, bearer, sizeof(bearer)),
             "{\"model\":\"gpt-4o\",\"max_tokens\":16,\"messages\":"
             "[{\"role\":\"user\",\"content\":\"hi\"}]}");
    status = r.curl_rc == 0 ? r.status : -1;
    if (reqid != NULL) {
        snprintf(reqid, reqid_len, "%s", r.request_id);
    }
    gwf_resp_free(&r);
    return status;
}

/* A key revoked through one instance's CLI is refused by all three within
 * one second: the change is pushed, not waited for. */
START_TEST(revoke_on_one_is_refused_by_all_within_a_second)
{
    kg_harness_result_t res = {0};
    gwf_key_t k;
    double t0;

    gwf_key_create(&W[0], &k, "shared", NULL);
    for (int i = 0; i < N_GW; i++) {
        ck_assert_int_eq(chat(&W[i], &k, NULL, 0), 200);
    }
    t0 = now_s();
    ck_assert_int_eq(gwf_kg(&W[1], &res, "keys", "revoke", k.id, NULL), 0);
    kg_harness_result_free(&res);
    for (int i = 0; i < N_GW; i++) {
        long status = 200;

        /* Bounded: 3 s of 20 ms steps at most. */
        for (int step = 0; step < 150 && status != 401; step++) {
            status = chat(&W[i], &k, NULL, 0);
            if (status != 401) {
                usleep(20 * 1000);
            }
        }
        ck_assert_msg(status == 401, "instance %d still serves the key", i);
        ck_assert_msg(now_s() - t0 < 1.0,
                      "instance %d refused the key %.2f s after the revoke", i,
                      now_s() - t0);
    }
}
END_TEST

/* A load thread: requests to one instance, the ids of those answered 200. */
typedef struct load {
    const gwf_t *f;
    const gwf_key_t *k;
    atomic_bool stop;
    int sent, ok, other;
    char (*ids)[GWF_REQID_MAX];
} load_t;

static void *load_main(void *arg)
{
    load_t *l = arg;

    for (int i = 0; i < LOAD_MAX && !atomic_load(&l->stop); i++) {
        char id[GWF_REQID_MAX];
        long st = chat(l->f, l->k, id, sizeof(id));

        l->sent++;
        if (st == 200) {
            snprintf(l->ids[l->ok++], GWF_REQID_MAX, "%s", id);
        } else {
            l->other++;
        }
    }
    return NULL;
}

static void load_start(load_t *l, pthread_t *t, const gwf_t *f,
                       const gwf_key_t *k)
{
    memset(l, 0, sizeof(*l));
    l->f = f;
    l->k = k;
    atomic_init(&l->stop, false);
    l->ids = calloc(LOAD_IDS, GWF_REQID_MAX);
    ck_assert_ptr_nonnull(l->ids);
    ck_assert_int_eq(pthread_create(t, NULL, load_main, l), 0);
}

static void load_stop(load_t *l, pthread_t t)
{
    atomic_store(&l->stop, true);
    pthread_join(t, NULL);
}

/* How many of the load's completed requests have their usage row: one
 * query with the ids as an array (a connection per id would take longer
 * than the writers). */
static int recorded(const load_t *l)
{
    size_t cap = (size_t)l->ok * (GWF_REQID_MAX + 1) + 3;
    char *arr = malloc(cap);
    size_t used = 0;
    const char *params[1] = {arr};
    PGconn *c = PQconnectdb(URL);
    PGresult *r;
    int n = -1;

    ck_assert_ptr_nonnull(arr);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    arr[used++] = '{';
    for (int i = 0; i < l->ok; i++) {
        used += (size_t)snprintf(arr + used, cap - used, "%s%s", i ? "," : "",
                                 l->ids[i]);
    }
    snprintf(arr + used, cap - used, "}");
    r = PQexecParams(c,
                     "SELECT count(*) FROM usage_events WHERE request_id = "
                     "ANY($1::text[])",
                     1, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s",
                  PQerrorMessage(c));
    n = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    free(arr);
    return n;
}

/* Every request answered 200 has its usage row in the store (waits up to
 * max_ms for the writers to catch up). */
static void assert_all_recorded(const load_t *l, int max_ms)
{
    int got = recorded(l);

    for (int waited = 0; waited < max_ms && got < l->ok; waited += 200) {
        usleep(200 * 1000);
        got = recorded(l);
    }
    ck_assert_msg(got == l->ok, "%d of %d completed requests have no usage row",
                  l->ok - got, l->ok);
}

/* kill -9 of one instance under load: every request it answered has its
 * usage row once it restarts (its journal), and the others never stop. */
START_TEST(kill9_mid_load_loses_no_completed_request)
{
    load_t l[N_GW];
    pthread_t t[N_GW];
    gwf_key_t k;

    gwf_key_create(&W[0], &k, "load", NULL);
    for (int i = 0; i < N_GW; i++) {
        load_start(&l[i], &t[i], &W[i], &k);
    }
    /* Bounded: 10 s for the victim to answer 50 requests. */
    for (int i = 0; i < 1000 && l[2].ok < 50; i++) {
        usleep(10 * 1000);
    }
    ck_assert_int_ge(l[2].ok, 50);
    gwf_kill9(&W[2]);
    usleep(500 * 1000);
    for (int i = 0; i < N_GW; i++) {
        load_stop(&l[i], t[i]);
    }
    ck_assert_int_gt(l[0].ok, 0);
    ck_assert_int_gt(l[1].ok, 0);
    /* The survivors answered everything. */
    ck_assert_int_eq(l[0].other, 0);
    ck_assert_int_eq(l[1].other, 0);
    gwf_start(&W[2]);
    for (int i = 0; i < N_GW; i++) {
        assert_all_recorded(&l[i], 15000);
        free(l[i].ids);
    }
    ck_assert_int_eq(chat(&W[2], &k, NULL, 0), 200);
}
END_TEST

/* PostgreSQL restarts under load: answers keep their usage (journal) and
 * every gateway serves again once it is back. */
START_TEST(postgres_restart_mid_load_loses_nothing)
{
    load_t l[2];
    pthread_t t[2];
    gwf_key_t k;

    gwf_key_create(&W[0], &k, "restart", NULL);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(chat(&W[i], &k, NULL, 0), 200);
        load_start(&l[i], &t[i], &W[i], &k);
    }
    usleep(500 * 1000);
    pgs_stop(&PG, false);
    usleep(1500 * 1000);
    pgs_restart(&PG);
    usleep(1500 * 1000);
    for (int i = 0; i < 2; i++) {
        load_stop(&l[i], t[i]);
        ck_assert_int_gt(l[i].ok, 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_all_recorded(&l[i], 20000);
        free(l[i].ids);
    }
    for (int i = 0; i < N_GW; i++) {
        ck_assert_int_eq(chat(&W[i], &k, NULL, 0), 200);
    }
}
END_TEST

/* PostgreSQL down: a key in the cache keeps working for [store]
 * stale_after (2 s here), a key not in it gets 503 at once, and neither
 * ever gets through unchecked; both work again once the server is back. */
START_TEST(store_down_cached_keys_bounded_uncached_503)
{
    gwf_key_t cached, cold;
    double t0;
    long st = 0;

    gwf_key_create(&W[0], &cached, "cached", NULL);
    gwf_key_create(&W[0], &cold, "cold", NULL);
    ck_assert_int_eq(chat(&W[0], &cached, NULL, 0), 200);
    pgs_stop(&PG, false);
    t0 = now_s();
    ck_assert_int_eq(chat(&W[0], &cached, NULL, 0), 200);
    ck_assert_int_eq(chat(&W[0], &cold, NULL, 0), 503);
    /* Bounded: 8 s of 100 ms steps; stale_after is 2 s. */
    for (int i = 0; i < 80 && st != 503; i++) {
        st = chat(&W[0], &cached, NULL, 0);
        if (st == 200) {
            usleep(100 * 1000);
        }
    }
    ck_assert_int_eq(st, 503);
    ck_assert_msg(now_s() - t0 >= 1.5 && now_s() - t0 < 4.0,
                  "cached key refused %.1f s after the store went away",
                  now_s() - t0);
    pgs_restart(&PG);
    st = 0;
    for (int i = 0; i < 100 && st != 200; i++) {
        st = chat(&W[0], &cold, NULL, 0);
        if (st != 200) {
            usleep(100 * 1000);
        }
    }
    ck_assert_int_eq(st, 200);
    ck_assert_int_eq(chat(&W[0], &cached, NULL, 0), 200);
}
END_TEST

/*
 * Rate limits shared by the three (docs/scale-out.md, "Rate limits"): a
 * key with rpm = RATE_RPM made on one instance's CLI, RATE_SENT requests
 * round-robin to the three, one every RATE_GAP_MS. Unshared, each
 * instance would admit its third of them all (RATE_SENT, and up to three
 * times the limit with more); shared, the admitted stay within the limit
 * plus the documented excess: the requests the other instances admit in
 * RATE_BLIND_MS (two publish intervals and the store's round trip), and
 * what the sliding window gives back meanwhile when the run crosses a
 * minute. The rest are 429 with Retry-After.
 */
#define RATE_RPM      30
#define RATE_SENT     (2 * RATE_RPM)
#define RATE_GAP_MS   200
#define RATE_BLIND_MS 2500
START_TEST(rpm_shared_by_three_instances)
{
    const char *body = "{\"model\":\"gpt-4o\",\"max_tokens\":16,\"messages\":"
                       "[{\"role\":\"user\",\"content\":\"hi\"}]}";
    /* The others get two of every three requests. */
    double others_per_s = 1000.0 / RATE_GAP_MS * (N_GW - 1) / N_GW;
    int run_ms = RATE_SENT * RATE_GAP_MS;
    int bound = RATE_RPM + (int)(others_per_s * RATE_BLIND_MS / 1000 + 0.999) +
                (RATE_RPM * run_ms + 59999) / 60000;
    char bearer[GWF_TOKEN_MAX + 32];
    char rpm[16];
    int ok[N_GW] = {0};
    int admitted = 0;
    int limited = 0;
    gwf_key_t k;

    snprintf(rpm, sizeof(rpm), "%d", RATE_RPM);
    gwf_key_create(&W[0], &k, "rates", "--rpm", rpm, NULL);
    gwf_bearer(&k, bearer, sizeof(bearer));
    for (int i = 0; i < RATE_SENT; i++) {
        char retry[32] = "";
        gwf_resp_t r;

        gwf_post(&W[i % N_GW], &r, "/v1/chat/completions", bearer, body);
        if (r.curl_rc == 0 && r.status == 200) {
            ok[i % N_GW]++;
            admitted++;
        } else {
            gwf_assert_error(&r, 429, "rate_limit_exceeded", NULL);
            ck_assert_int_eq(
                gwf_resp_header(&r, "Retry-After", retry, sizeof(retry)), 1);
            ck_assert_int_ge(strtol(retry, NULL, 10), 1);
            limited++;
        }
        gwf_resp_free(&r);
        usleep(RATE_GAP_MS * 1000);
    }
    fprintf(stderr,
            "rpm %d shared by %d instances: %d of %d admitted (%d, %d, %d), "
            "%d limited; the bound is %d\n",
            RATE_RPM, N_GW, admitted, RATE_SENT, ok[0], ok[1], ok[2], limited,
            bound);
    ck_assert_int_ge(admitted, RATE_RPM);
    ck_assert_int_le(admitted, bound);
    ck_assert_int_lt(bound, RATE_SENT);
}
END_TEST

static Suite *pg_gateway_suite(void)
{
    Suite *s = suite_create("pg_gateway");
    TCase *tc = tcase_create("three");

    tcase_add_unchecked_fixture(tc, setup_server, teardown_server);
    tcase_add_checked_fixture(tc, setup_worlds, teardown_worlds);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, revoke_on_one_is_refused_by_all_within_a_second);
    tcase_add_test(tc, kill9_mid_load_loses_no_completed_request);
    tcase_add_test(tc, postgres_restart_mid_load_loses_nothing);
    tcase_add_test(tc, store_down_cached_keys_bounded_uncached_503);
    tcase_add_test(tc, rpm_shared_by_three_instances);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(pg_gateway_suite());
}
