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
#include "keygate/money.h"
#include "keygate/store_budget.h"
#include "pg_server.h"

#define N_GW 3
/* Requests a load thread sends at most (each loop is bounded). */
#define LOAD_MAX 3000
/* Completed requests remembered per load thread. */
#define LOAD_IDS LOAD_MAX

/* The budget race: requests, how many worst cases the budget holds, and
 * each request's output cap. */
#define RACE_N          50
#define RACE_KEEP       5
#define RACE_MAX_TOKENS 40
/* A model at 1 micro-USD per token either way: a request's worst case
 * (docs/policy.md) and its real cost are exact. */
#define FLAT_MODEL                                           \
    "[model pg-flat]\nprovider = mock\ninput_price = 1.00\n" \
    "output_price = 1.00\n"
#define MSG_USAGE_LIMIT "Unauthorized: keygate API key reached its usage limit."
#define MSG_NO_CREDITS  "Payment required: workspace has no credits left."

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
    char name[32], extra[PGS_PATH_MAX + 128];

    snprintf(name, sizeof(name), "kg_gw_%d_%d", (int)getpid(), n++);
    pgs_create_db(&PG, name, URL);
    snprintf(extra, sizeof(extra),
             "[store]\nurl = %s\nstale_after = 2s\n\n" FLAT_MODEL, URL);
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

/*
 * A pg-flat chat body (n: 0..99, one length for all) whose mock reports
 * the body's own length as prompt tokens and max_tokens as completion
 * tokens, dripping its answer for about a second: its cost is its worst
 * case, which it returns.
 */
static int64_t flat_body(char *buf, size_t len, int n)
{
    size_t prompt = 0;

    /* The length grows with the digits of prompt: a few rounds settle it. */
    for (int i = 0; i < 8; i++) {
        snprintf(buf, len,
                 "{\"model\":\"pg-flat\",\"user\":\"race-%02d\","
                 "\"max_tokens\":%d,\"messages\":[{\"role\":\"user\","
                 "\"content\":\"hi\"}],\"mock\":{\"mode\":\"slow_drip\","
                 "\"interval_ms\":25,\"prompt_tokens\":%zu,"
                 "\"completion_tokens\":%d}}",
                 n % 100, RACE_MAX_TOKENS, prompt, RACE_MAX_TOKENS);
        if (strlen(buf) == prompt) {
            return (int64_t)prompt + RACE_MAX_TOKENS;
        }
        prompt = strlen(buf);
    }
    ck_abort_msg("no fixed point for the body length: %s", buf);
    return -1;
}

/* One racing request: to one instance, its status and answer kept. */
typedef struct racer {
    const gwf_t *f;
    const gwf_key_t *k;
    char body[512];
    long status;
    char resp[256];
} racer_t;

static void *racer_main(void *arg)
{
    racer_t *r = arg;
    char bearer[GWF_TOKEN_MAX + 32];
    gwf_resp_t resp;

    gwf_post(r->f, &resp, "/v1/chat/completions",
             gwf_bearer(r->k, bearer, sizeof(bearer)), r->body);
    r->status = resp.curl_rc == 0 ? resp.status : -1;
    snprintf(r->resp, sizeof(r->resp), "%s", resp.body ? resp.body : "");
    gwf_resp_free(&resp);
    return NULL;
}

/* An integer the store holds (libpq on the test's own connection). */
static int64_t pg_int(const char *sql, const char *arg)
{
    const char *params[1] = {arg};
    PGconn *c = PQconnectdb(URL);
    PGresult *r;
    int64_t v;

    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1,
                  "%s", PQerrorMessage(c));
    v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

/* The settled spend of key k (its usage events' cost) once it stops
 * moving: the writers of all three instances have caught up. */
static int64_t settled_spend(const gwf_key_t *k)
{
    int64_t spend = -1, prev = -2;

    for (int i = 0; i < 50 && spend != prev; i++) {
        prev = spend;
        usleep(300 * 1000);
        spend = pg_int("SELECT coalesce(sum(cost), 0) FROM usage_events "
                       "WHERE key_id = $1",
                       k->id);
    }
    return spend;
}

/*
 * The 50-way budget race spread over the three instances (_i = 0: a key's
 * usage limit, 1: its workspace's credits) holding exactly RACE_KEEP worst
 * cases: the spend never passes the budget, and, once the racers' unused
 * leases went back, the whole budget can still be spent, not more.
 */
START_TEST(budget_race_over_three_instances_never_overspends)
{
    static racer_t r[RACE_N];
    pthread_t t[RACE_N];
    bool credits = _i == 1;
    long refusal = credits ? 402 : 401;
    const char *msg = credits ? MSG_NO_CREDITS : MSG_USAGE_LIMIT;
    kg_harness_result_t res = {0};
    int64_t worst = 0, spend;
    char limit[32], ws[32];
    gwf_key_t k;
    int ok = 0, later = 0;

    for (int i = 0; i < RACE_N; i++) {
        int64_t w = flat_body(r[i].body, sizeof(r[i].body), i);

        ck_assert(i == 0 || w == worst);
        worst = w;
    }
    snprintf(limit, sizeof(limit), "0.%06lld", (long long)(RACE_KEEP * worst));
    if (credits) {
        snprintf(ws, sizeof(ws), "race-ws");
        ck_assert_int_eq(gwf_kg(&W[0], &res, "workspaces", "create", ws,
                                "--mode", "credits", NULL),
                         0);
        kg_harness_result_free(&res);
        ck_assert_int_eq(gwf_kg(&W[0], &res, "workspaces", "credit", ws,
                                "--add", limit, NULL),
                         0);
        kg_harness_result_free(&res);
        gwf_key_create(&W[0], &k, "race", "--workspace", ws, NULL);
    } else {
        gwf_key_create(&W[0], &k, "race", "--usage-limit", limit, NULL);
    }
    for (int i = 0; i < RACE_N; i++) {
        r[i].f = &W[i % N_GW];
        r[i].k = &k;
        ck_assert_int_eq(pthread_create(&t[i], NULL, racer_main, &r[i]), 0);
    }
    for (int i = 0; i < RACE_N; i++) {
        pthread_join(t[i], NULL);
        if (r[i].status == 200) {
            ok++;
            continue;
        }
        ck_assert_msg(r[i].status == refusal && strstr(r[i].resp, msg),
                      "racer %d: %ld %s", i, r[i].status, r[i].resp);
    }
    ck_assert_msg(ok >= 1 && ok <= RACE_KEEP,
                  "%d racers succeeded, the budget holds %d", ok, RACE_KEEP);
    spend = settled_spend(&k);
    ck_assert_int_eq(spend, ok * worst);
    /* Idle leases go back within KG_LEASES_IDLE_MS and a tick: what is
     * left can be spent, one request at a time, through one instance. */
    usleep(3500 * 1000);
    for (int i = 0; i < RACE_KEEP + 2; i++) {
        r[i].f = &W[0];
        racer_main(&r[i]);
        if (r[i].status != 200) {
            break;
        }
        later++;
    }
    ck_assert_msg(r[later].status == refusal, "after the race: %ld %s",
                  r[later].status, r[later].resp);
    ck_assert_int_eq(ok + later, RACE_KEEP);
    ck_assert_int_eq(settled_spend(&k), RACE_KEEP * worst);
    if (credits) {
        ck_assert_int_eq(pg_int("SELECT credits_balance FROM workspaces "
                                "WHERE name = $1",
                                ws),
                         0);
    }
    fprintf(stderr,
            "budget race (%s): %d of %d admitted racing, %d after; spend "
            "%lld of %lld\n",
            credits ? "credits" : "usage limit", ok, RACE_N, later,
            (long long)settled_spend(&k), (long long)(RACE_KEEP * worst));
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
    double before, t0;
    long st = 0;

    gwf_key_create(&W[0], &cached, "cached", NULL);
    gwf_key_create(&W[0], &cold, "cold", NULL);
    ck_assert_int_eq(chat(&W[0], &cached, NULL, 0), 200);
    /* The gateway's last good read of the store falls between before
     * (less its 200 ms refresh) and t0: a fast shutdown can take seconds
     * on a loaded machine. */
    before = now_s();
    pgs_stop(&PG, false);
    t0 = now_s();
    if (t0 - before < 1.5) {
        ck_assert_int_eq(chat(&W[0], &cached, NULL, 0), 200);
    }
    ck_assert_int_eq(chat(&W[0], &cold, NULL, 0), 503);
    /* Bounded: 8 s of 100 ms steps; stale_after is 2 s. */
    for (int i = 0; i < 80 && st != 503; i++) {
        st = chat(&W[0], &cached, NULL, 0);
        if (st == 200) {
            usleep(100 * 1000);
        }
    }
    ck_assert_int_eq(st, 503);
    ck_assert_msg(now_s() - before >= 1.5 && now_s() - t0 < 4.0,
                  "cached key refused %.1f s after the store went away "
                  "(stopping it took %.1f s)",
                  now_s() - t0, t0 - before);
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

/* A chat request in the background whose answer the mock drips slowly
 * (about 35 pieces, one every interval_ms). */
typedef struct slow {
    const gwf_t *f;
    const gwf_key_t *k;
    int interval_ms;
    long status;
    pthread_t th;
} slow_t;

static void *slow_main(void *arg)
{
    slow_t *s = arg;
    char bearer[GWF_TOKEN_MAX + 32], body[256];
    const char *h[] = {"Content-Type: application/json", bearer, NULL};
    gwf_resp_t r;

    gwf_bearer(s->k, bearer, sizeof(bearer));
    snprintf(body, sizeof(body),
             "{\"model\":\"gpt-4o\",\"max_tokens\":16,\"messages\":"
             "[{\"role\":\"user\",\"content\":\"hi\"}],\"mock\":"
             "{\"mode\":\"slow_drip\",\"interval_ms\":%d}}",
             s->interval_ms);
    gwf_http(s->f, &r, "POST", "/v1/chat/completions", h, body, 60000);
    s->status = r.curl_rc == 0 ? r.status : -1;
    gwf_resp_free(&r);
    return NULL;
}

static void slow_start(slow_t *s, const gwf_t *f, const gwf_key_t *k,
                       int interval_ms)
{
    memset(s, 0, sizeof(*s));
    s->f = f;
    s->k = k;
    s->interval_ms = interval_ms;
    ck_assert_int_eq(pthread_create(&s->th, NULL, slow_main, s), 0);
}

static int64_t money(json_t *j, const char *field)
{
    const char *v = json_string_value(json_object_get(j, field));
    kg_diag_t diag = {{0}};
    int64_t micro = -1;

    ck_assert_msg(v != NULL, "no \"%s\"", field);
    ck_assert_msg(kg_money_parse(v, &micro, &diag) == KG_OK, "%s: %s", v,
                  diag.msg);
    return micro;
}

/* What instance f holds for k's requests in flight (GET /v1/key). */
static int64_t held_by(const gwf_t *f, const gwf_key_t *k)
{
    char bearer[GWF_TOKEN_MAX + 32];
    gwf_resp_t r;
    json_t *j;
    int64_t v;

    gwf_get(f, &r, "/v1/key", gwf_bearer(k, bearer, sizeof(bearer)));
    ck_assert_msg(r.status == 200, "/v1/key: %ld", r.status);
    j = gwf_resp_json(&r);
    v = money(j, "reserved");
    json_decref(j);
    gwf_resp_free(&r);
    return v;
}

/* Wait (up to 5 s) until instance f holds something for k. */
static int64_t wait_held_by(const gwf_t *f, const gwf_key_t *k)
{
    int64_t v = held_by(f, k);

    for (int i = 0; i < 250 && v <= 0; i++) {
        usleep(20 * 1000);
        v = held_by(f, k);
    }
    ck_assert_msg(v > 0, "nothing reserved on the instance in 5 s");
    return v;
}

/* k's reserved as keys show --json prints it through f's CLI. */
static int64_t shown(gwf_t *f, const gwf_key_t *k)
{
    kg_harness_result_t res = {0};
    json_t *j;
    int64_t v;

    ck_assert_int_eq(gwf_kg(f, &res, "--json", "keys", "show", k->id, NULL), 0);
    j = json_loads(res.out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    v = money(j, "reserved");
    json_decref(j);
    kg_harness_result_free(&res);
    return v;
}

/* Wait (up to max_ms) until keys show prints want; the value shown last. */
static int64_t wait_shown(gwf_t *f, const gwf_key_t *k, int64_t want,
                          int max_ms)
{
    double t0 = now_s();
    int64_t v = shown(f, k);

    while (v != want && (now_s() - t0) * 1000 < max_ms) {
        usleep(100 * 1000);
        v = shown(f, k);
    }
    return v;
}

/* The store's rows of key_reservations for key id. */
static int64_t reservation_rows(const char *id)
{
    const char *params[1] = {id};
    PGconn *c = PQconnectdb(URL);
    PGresult *r;
    int64_t n;

    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    r = PQexecParams(c,
                     "SELECT count(*) FROM key_reservations WHERE key_id = $1",
                     1, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s",
                  PQerrorMessage(c));
    n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return n;
}

/*
 * Reservations in flight on two instances: the third's CLI shows their
 * sum; an instance that stops cleanly takes its share with it at once; a
 * killed one's share counts until KG_STORE_RESERVATION_TTL_S has passed,
 * then goes from the store too.
 */
START_TEST(reservations_in_flight_add_up_across_instances)
{
    slow_t a, b;
    gwf_key_t k;
    int64_t ra, rb;
    double killed;

    gwf_key_create(&W[0], &k, "reserve", "--usage-limit", "100", NULL);
    /* About 5 s on the first instance, 12 s on the second. */
    slow_start(&a, &W[0], &k, 150);
    slow_start(&b, &W[1], &k, 350);
    ra = wait_held_by(&W[0], &k);
    rb = wait_held_by(&W[1], &k);
    /* Each instance holds its own request's reservation only. */
    ck_assert_int_eq(held_by(&W[2], &k), 0);
    ck_assert_int_eq(wait_shown(&W[2], &k, ra + rb, 3500), ra + rb);
    ck_assert_int_eq(reservation_rows(k.id), 2);

    /* A clean stop (its request drains first): its row goes with it. */
    ck_assert_int_eq(gwf_stop(&W[0], 20000), 0);
    ck_assert_int_eq(pthread_join(a.th, NULL), 0);
    ck_assert_int_eq(a.status, 200);
    ck_assert_int_eq(reservation_rows(k.id), 1);
    ck_assert_int_eq(shown(&W[2], &k), rb);

    /* kill -9 with the request in flight: the row stays, and counts until
     * it is older than the bound. */
    gwf_kill9(&W[1]);
    killed = now_s();
    ck_assert_int_eq(pthread_join(b.th, NULL), 0);
    ck_assert_int_ne(b.status, 200);
    ck_assert_int_eq(shown(&W[2], &k), rb);
    ck_assert_int_eq(
        wait_shown(&W[2], &k, 0, (KG_STORE_RESERVATION_TTL_S + 10) * 1000), 0);
    /* Its last snapshot was at most a second before the kill. */
    ck_assert_msg(now_s() - killed >= KG_STORE_RESERVATION_TTL_S - 2,
                  "a killed instance's reservation stopped counting %.1f s "
                  "after the kill",
                  now_s() - killed);
    /* The survivor's next snapshot deletes the row (bounded: 5 s). */
    for (int i = 0; i < 50 && reservation_rows(k.id) != 0; i++) {
        usleep(100 * 1000);
    }
    ck_assert_int_eq(reservation_rows(k.id), 0);
    gwf_start(&W[0]);
    gwf_start(&W[1]);
}
END_TEST

/*
 * Rate limits shared by the three (docs/scale-out.md, "Rate limits"): a
 * key with rpm = RATE_RPM made on one instance's CLI, RATE_SENT requests
 * round-robin to the three, one every RATE_GAP_MS. Unshared, each
 * instance would admit its third of them all (RATE_SENT, and up to three
 * times the limit with more); shared, the admitted stay within the limit
 * plus the documented excess: the requests the other instances admit in
 * RATE_BLIND_MS, and what the sliding window gives back meanwhile when
 * the run crosses a minute. The rest are 429 with Retry-After. The blind
 * span is about 0.5 s (two rounds of 200 ms and the store's round trip);
 * RATE_BLIND_MS is twice that, for a loaded machine whose maintenance
 * threads run late.
 */
#define RATE_RPM      30
#define RATE_SENT     (2 * RATE_RPM)
#define RATE_GAP_MS   200
#define RATE_BLIND_MS 1000
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
    tcase_add_loop_test(tc, budget_race_over_three_instances_never_overspends,
                        0, 2);
    tcase_add_test(tc, kill9_mid_load_loses_no_completed_request);
    tcase_add_test(tc, postgres_restart_mid_load_loses_nothing);
    tcase_add_test(tc, reservations_in_flight_add_up_across_instances);
    tcase_add_test(tc, store_down_cached_keys_bounded_uncached_503);
    tcase_add_test(tc, rpm_shared_by_three_instances);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return gwf_run_suite(pg_gateway_suite());
}
