/* The store's API keys contract, the same bodies on PostgreSQL and SQLite. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>

#include "keygate/store.h"
#include "keygate/store_keys.h"
#include "pg_server.h"
#include "store/pg/pg_store.h"
#include "store/sqlite/sqlite_store.h"
#include "unit_util.h"

/* Rounds of each writer in the races, and rows in the paging test. */
#define RACE_ROUNDS 25
#define LIST_KEYS   30
/* Rounds of the writer and most loads of the reader in the load race. */
#define VIEW_ROUNDS 200
#define VIEW_READS  2000
#define T0          INT64_C(1700000000)

static pgs_t PG;
/* Where the running body's store is (a URL or a file path): its racing
 * threads open handles of their own there. */
static char WHERE[PGS_PATH_MAX];

static void suite_setup(void)
{
    pgs_start(&PG);
}

static void suite_teardown(void)
{
    pgs_destroy(&PG);
}

/* One more handle on the body's store. */
static kg_store_t *open_again(void)
{
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    ck_assert_msg(kg_store_open(WHERE, &opts, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    return s;
}

static bool is_pg(kg_store_t *s)
{
    return strcmp(kg_store_backend_name(s), "postgresql") == 0;
}

/* Run SQL text common to both backends (test setup only). */
static void raw(kg_store_t *s, const char *sql)
{
    if (is_pg(s)) {
        PGresult *r = PQexec(kg_pg_conn(s), sql);

        ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql,
                      PQerrorMessage(kg_pg_conn(s)));
        PQclear(r);
    } else {
        ck_assert_int_eq(sqlite3_exec(kg_sqlite_db(s), sql, NULL, NULL, NULL),
                         SQLITE_OK);
    }
}

static void workspaces(kg_store_t *s)
{
    raw(s, "INSERT INTO workspaces (id, name, created_at, updated_at) "
           "VALUES ('ws1', 'one', 1, 1), ('ws2', 'two', 1, 1)");
}

static char EMPTY[] = "";
static char OBJ[] = "{}";

/* A key of workspace ws, made at created: no limits; its strings are
 * static (never kg_key_clear it). */
static kg_key_t key_new(const char *id, const char *ws, const char *name,
                        int64_t created)
{
    kg_key_t k;

    memset(&k, 0, sizeof(k));
    snprintf(k.id, sizeof(k.id), "%s", id);
    snprintf(k.workspace_id, sizeof(k.workspace_id), "%s", ws);
    snprintf(k.name, sizeof(k.name), "%s", name);
    snprintf(k.prefix, sizeof(k.prefix), "kg");
    snprintf(k.last4, sizeof(k.last4), "abcd");
    k.description = EMPTY;
    k.metadata = OBJ;
    k.rules = OBJ;
    k.status = KG_KEY_ACTIVE;
    k.created_at = created;
    k.updated_at = created;
    k.last_used_at = KG_NONE;
    k.expires_at = KG_NONE;
    k.usage_limit = KG_NONE;
    k.period = KG_PERIOD_NONE;
    k.period_limit = KG_NONE;
    k.period_started_at = KG_NONE;
    k.rpm = KG_NONE;
    k.tpm = KG_NONE;
    k.max_concurrent = KG_NONE;
    k.grace_until = KG_NONE;
    return k;
}

static void insert(kg_store_t *s, const kg_key_t *k)
{
    kg_diag_t diag = {{0}};

    ck_assert_msg(kg_store_key_insert(s, k, &diag) == KG_OK, "%s", diag.msg);
}

static kg_key_t get(kg_store_t *s, const char *id)
{
    kg_diag_t diag = {{0}};
    kg_key_t k;

    ck_assert_msg(kg_store_key_get(s, id, &k, &diag) == KG_OK, "%s", diag.msg);
    return k;
}

static int64_t revision(kg_store_t *s)
{
    kg_diag_t diag = {{0}};
    int64_t rev = -1;

    ck_assert_int_eq(kg_store_key_revision(s, &rev, &diag), KG_OK);
    return rev;
}

static void hash_of(unsigned char h[KG_KEYHASH_LEN], int n)
{
    for (size_t i = 0; i < KG_KEYHASH_LEN; i++) {
        h[i] = (unsigned char)(n * 31 + (int)i);
    }
}

/* Rows, NULLs, conflicts, and which columns each write changes. */
static void rows_contract(kg_store_t *s)
{
    kg_key_t k = key_new("Abc123def456", "ws1", "first", T0);
    kg_key_t got, other;
    kg_diag_t diag = {{0}};

    workspaces(s);
    k.expires_at = T0 + 1000;
    k.usage_limit = 5000000;
    k.period = KG_PERIOD_DAY;
    k.period_limit = 700;
    k.period_started_at = T0;
    k.rpm = 60;
    insert(s, &k);
    ck_assert_int_eq(kg_store_key_insert(s, &k, &diag), KG_ERR_EXISTS);
    other = key_new("zzzzzzzzzzzz", "nows", "orphan", T0);
    ck_assert_int_eq(kg_store_key_insert(s, &other, &diag), KG_ERR_EXISTS);
    ck_assert_int_eq(kg_store_key_get(s, "nope00000000", &got, &diag),
                     KG_ERR_NOT_FOUND);
    ck_assert_ptr_null(got.description);

    got = get(s, k.id);
    ck_assert_str_eq(got.workspace_name, "one");
    ck_assert_str_eq(got.name, "first");
    ck_assert_str_eq(got.metadata, "{}");
    ck_assert_int_eq(got.status, KG_KEY_ACTIVE);
    ck_assert_int_eq(got.expires_at, T0 + 1000);
    ck_assert_int_eq(got.usage_limit, 5000000);
    ck_assert_int_eq(got.period, KG_PERIOD_DAY);
    ck_assert_int_eq(got.period_started_at, T0);
    ck_assert_int_eq(got.rpm, 60);
    ck_assert_int_eq(got.tpm, KG_NONE);
    ck_assert_int_eq(got.max_concurrent, KG_NONE);
    ck_assert_int_eq(got.last_used_at, KG_NONE);
    ck_assert_int_eq(got.grace_until, KG_NONE);
    ck_assert_int_eq(got.usage, 0);
    ck_assert_int_eq(got.reserved, 0);
    kg_key_clear(&got);

    /* Another writer's spend meanwhile: an update from a row read before
     * it keeps the spend; a period restart zeroes the period's only. */
    raw(s, "UPDATE api_keys SET usage = 900, period_usage = 400, "
           "last_used_at = 1700000050 WHERE id = 'Abc123def456'");
    k.name[0] = 'F';
    k.tpm = 1000;
    k.rpm = KG_NONE;
    k.period_started_at = T0 + 86400;
    ck_assert_int_eq(kg_store_key_update(s, &k, false, T0 + 10, &diag), KG_OK);
    got = get(s, k.id);
    ck_assert_str_eq(got.name, "First");
    ck_assert_int_eq(got.tpm, 1000);
    ck_assert_int_eq(got.rpm, KG_NONE);
    ck_assert_int_eq(got.updated_at, T0 + 10);
    ck_assert_int_eq(got.usage, 900);
    ck_assert_int_eq(got.period_usage, 400);
    ck_assert_int_eq(got.period_started_at, T0);
    ck_assert_int_eq(got.last_used_at, 1700000050);
    kg_key_clear(&got);
    ck_assert_int_eq(kg_store_key_update(s, &k, true, T0 + 20, &diag), KG_OK);
    got = get(s, k.id);
    ck_assert_int_eq(got.usage, 900);
    ck_assert_int_eq(got.period_usage, 0);
    ck_assert_int_eq(got.period_started_at, T0 + 86400);
    kg_key_clear(&got);
    /* An unknown id changes nothing and is no error. */
    other = key_new("unknown00000", "ws1", "x", T0);
    ck_assert_int_eq(kg_store_key_update(s, &other, false, T0, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_key_set_status(s, "unknown00000", KG_KEY_INACTIVE, T0, &diag),
        KG_OK);

    ck_assert_int_eq(
        kg_store_key_set_status(s, k.id, KG_KEY_INACTIVE, T0 + 30, &diag),
        KG_OK);
    ck_assert_int_eq(kg_store_key_set_last4(s, k.id, "wxyz", T0 + 40, &diag),
                     KG_OK);
    got = get(s, k.id);
    ck_assert_int_eq(got.status, KG_KEY_INACTIVE);
    ck_assert_str_eq(got.last4, "wxyz");
    ck_assert_int_eq(got.updated_at, T0 + 40);
    kg_key_clear(&got);

    ck_assert_int_eq(kg_store_key_delete(s, k.id, &diag), KG_OK);
    ck_assert_int_eq(kg_store_key_get(s, k.id, &got, &diag), KG_ERR_NOT_FOUND);
    ck_assert_int_eq(kg_store_key_delete(s, k.id, &diag), KG_OK);
}

/* The keys of the paging test, as the store should hold them. */
typedef struct model {
    char id[KG_TOKEN_ID_LEN + 1];
    char ws[8];
    char name[32];
    int64_t created;
    kg_key_status_t status;
} model_t;

static model_t MODEL[LIST_KEYS];

/* Oldest first: by created_at, then id byte by byte. */
static int model_cmp(const void *a, const void *b)
{
    const model_t *x = a, *y = b;

    if (x->created != y->created) {
        return x->created < y->created ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

/* s with its ASCII letters lowered into out (size bytes). */
static void ascii_lower(const char *s, char *out, size_t size)
{
    size_t i = 0;

    for (; s[i] != '\0' && i + 1 < size; i++) {
        out[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
    }
    out[i] = '\0';
}

/* Whether m is among what f selects (its cursor and limit aside). */
static bool model_match(const model_t *m, const kg_key_filter_t *f)
{
    char name[64], want[64];

    if (f->workspace != NULL && strcmp(f->workspace, m->ws) != 0) {
        return false;
    }
    if (!f->include_deleted && !f->status_is_set &&
        m->status == KG_KEY_DELETED) {
        return false;
    }
    if (f->status_is_set && f->status != m->status) {
        return false;
    }
    if (f->name_contains != NULL) {
        ascii_lower(m->name, name, sizeof(name));
        ascii_lower(f->name_contains, want, sizeof(want));
        return strstr(name, want) != NULL;
    }
    return true;
}

/* Page through f, limit keys a page, and compare with the model. */
static void pages_equal(kg_store_t *s, kg_key_filter_t f, size_t limit)
{
    const char *want[LIST_KEYS];
    char cursor[KG_TOKEN_ID_LEN + 1];
    kg_diag_t diag = {{0}};
    size_t nwant = 0;
    size_t seen = 0;
    size_t pages = 0;

    for (size_t i = 0; i < LIST_KEYS; i++) {
        size_t j = f.newest_first ? LIST_KEYS - 1 - i : i;

        if (model_match(&MODEL[j], &f)) {
            want[nwant++] = MODEL[j].id;
        }
    }
    f.limit = limit;
    f.after_id = NULL;
    for (; pages <= LIST_KEYS; pages++) {
        kg_key_t *list = NULL;
        size_t n = 0;

        ck_assert_int_eq(kg_store_key_list(s, &f, &list, &n, &diag), KG_OK);
        ck_assert(limit == 0 || n <= limit);
        for (size_t i = 0; i < n; i++) {
            ck_assert_uint_lt(seen, nwant);
            ck_assert_str_eq(list[i].id, want[seen]);
            seen++;
        }
        if (n > 0) {
            snprintf(cursor, sizeof(cursor), "%s", list[n - 1].id);
            f.after_created = list[n - 1].created_at;
            f.after_id = cursor;
        }
        kg_keys_list_free(&list, n);
        if (limit == 0 || n < limit) {
            break;
        }
    }
    ck_assert_uint_eq(seen, nwant);
    /* Several pages whenever there were more keys than a page holds. */
    ck_assert(limit == 0 || pages >= nwant / limit);
}

/* Filters, both orders, cursors across pages, ties of created_at broken
 * by id byte by byte (mixed case), and the name search: a substring,
 * ASCII letters folded, no wildcards. */
static void list_contract(kg_store_t *s)
{
    static const char *const names[] = {"Prod-", "prod_", "staging ",
                                        "100% PROD "};
    kg_diag_t diag = {{0}};
    kg_key_filter_t f;

    workspaces(s);
    for (size_t i = 0; i < LIST_KEYS; i++) {
        model_t *m = &MODEL[i];
        kg_key_t k;

        snprintf(m->id, sizeof(m->id), "%c%c%010zu",
                 (char)((i % 2 ? 'a' : 'A') + (int)(i % 7)),
                 (char)('A' + (int)(i % 3)), i);
        snprintf(m->ws, sizeof(m->ws), "%s", i % 3 == 0 ? "ws2" : "ws1");
        snprintf(m->name, sizeof(m->name), "%s%zu", names[i % 4], i);
        m->created = T0 + (int64_t)(i / 3);
        m->status = i % 5 == 0   ? KG_KEY_DELETED
                    : i % 5 == 1 ? KG_KEY_INACTIVE
                                 : KG_KEY_ACTIVE;
        if (i == LIST_KEYS - 1) {
            snprintf(m->name, sizeof(m->name),
                     "\xc3\x89"
                     "clair");
        }
        k = key_new(m->id, m->ws, m->name, m->created);
        insert(s, &k);
        ck_assert_int_eq(
            kg_store_key_set_status(s, m->id, m->status, T0, &diag), KG_OK);
    }
    qsort(MODEL, LIST_KEYS, sizeof(*MODEL), model_cmp);

    memset(&f, 0, sizeof(f));
    pages_equal(s, f, 4);
    pages_equal(s, f, 0);
    f.newest_first = true;
    f.include_deleted = true;
    pages_equal(s, f, 7);
    pages_equal(s, f, 1);
    memset(&f, 0, sizeof(f));
    f.workspace = "ws1";
    f.name_contains = "PROD";
    pages_equal(s, f, 3);
    f.newest_first = true;
    pages_equal(s, f, 2);
    memset(&f, 0, sizeof(f));
    f.status_is_set = true;
    f.status = KG_KEY_DELETED;
    f.newest_first = true;
    pages_equal(s, f, 2);
    f.status = KG_KEY_INACTIVE;
    f.workspace = "ws2";
    pages_equal(s, f, 1);
    memset(&f, 0, sizeof(f));
    f.include_deleted = true;
    f.name_contains = "%";
    pages_equal(s, f, 5);
    f.name_contains = "_";
    pages_equal(s, f, 5);
    f.name_contains = "\xc3\xa9"; /* é: not folded from É, as SQLite */
    pages_equal(s, f, 5);
    f.name_contains = "\xc3\x89";
    pages_equal(s, f, 5);
    f.name_contains = "";
    pages_equal(s, f, 5);
    f.workspace = "nows";
    f.name_contains = NULL;
    pages_equal(s, f, 5);
}

/* The expired keys: not revoked, expiry at or before now, at most max a
 * batch; the caller revokes them and asks again. */
static void expired_contract(kg_store_t *s)
{
    char ids[KG_STORE_KEYS_EXPIRED_BATCH][KG_TOKEN_ID_LEN + 1];
    kg_diag_t diag = {{0}};
    size_t n = 0, total = 0;
    int rounds = 0;

    workspaces(s);
    for (int i = 0; i < 12; i++) {
        char id[KG_TOKEN_ID_LEN + 1];
        kg_key_t k;

        snprintf(id, sizeof(id), "exp%09d", i);
        k = key_new(id, "ws1", "e", T0);
        /* 0-6 expired (at or before T0 + 100), 7-9 later, 10-11 never. */
        k.expires_at = i < 7 ? T0 + 94 + i : i < 10 ? T0 + 200 : KG_NONE;
        insert(s, &k);
    }
    ck_assert_int_eq(
        kg_store_key_set_status(s, "exp000000000", KG_KEY_DELETED, T0, &diag),
        KG_OK);
    ck_assert_int_eq(
        kg_store_key_set_status(s, "exp000000001", KG_KEY_INACTIVE, T0, &diag),
        KG_OK);
    do {
        ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
        ck_assert_int_eq(kg_store_key_expired(s, T0 + 100, ids, 2, &n, &diag),
                         KG_OK);
        ck_assert_uint_le(n, 2);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(strncmp(ids[i], "exp", 3), 0);
            ck_assert_int_ge(strtol(ids[i] + 3, NULL, 10), 1);
            ck_assert_int_le(strtol(ids[i] + 3, NULL, 10), 6);
            ck_assert_int_eq(
                kg_store_key_set_status(s, ids[i], KG_KEY_DELETED, T0, &diag),
                KG_OK);
        }
        ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
        total += n;
    } while (n > 0 && ++rounds < 10);
    ck_assert_uint_eq(total, 6);
    ck_assert_int_eq(rounds, 3);
    ck_assert_int_eq(kg_store_key_expired(s, T0 + 200, ids,
                                          KG_STORE_KEYS_EXPIRED_BATCH, &n,
                                          &diag),
                     KG_OK);
    ck_assert_uint_eq(n, 3);
}

static int64_t last_used(kg_store_t *s, const char *id)
{
    kg_key_t k = get(s, id);
    int64_t at = k.last_used_at;

    kg_key_clear(&k);
    return at;
}

static void touch(kg_store_t *s, const kg_key_seen_t *seen, size_t n)
{
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_msg(kg_store_key_touch(s, seen, n, &diag) == KG_OK, "%s",
                  diag.msg);
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
}

/* last_used_at moves forward only, from any handle; the revision stays. */
static void touch_contract(kg_store_t *s)
{
    kg_key_seen_t seen[4];
    kg_store_t *other;
    kg_key_t a = key_new("touchAAAAAAA", "ws1", "a", T0);
    kg_key_t b = key_new("touchbbbbbbb", "ws1", "b", T0);
    int64_t rev;

    workspaces(s);
    insert(s, &a);
    insert(s, &b);
    rev = revision(s);
    memset(seen, 0, sizeof(seen));
    snprintf(seen[0].id, sizeof(seen[0].id), "%s", a.id);
    seen[0].at = T0 + 50;
    snprintf(seen[1].id, sizeof(seen[1].id), "%s", "unknown00000");
    seen[1].at = T0 + 60;
    snprintf(seen[2].id, sizeof(seen[2].id), "%s", b.id);
    seen[2].at = T0 + 70;
    seen[3] = seen[0]; /* the same key twice: the later time counts */
    seen[3].at = T0 + 80;
    touch(s, seen, 4);
    ck_assert_int_eq(last_used(s, a.id), T0 + 80);
    ck_assert_int_eq(last_used(s, b.id), T0 + 70);
    ck_assert_int_eq(revision(s), rev);
    touch(s, seen, 0);

    /* Two handles, times out of order: the later time wins. */
    other = open_again();
    seen[0].at = T0 + 200;
    touch(other, seen, 1);
    seen[0].at = T0 + 150;
    touch(s, seen, 1);
    ck_assert_int_eq(last_used(s, a.id), T0 + 200);
    ck_assert_int_eq(last_used(other, a.id), T0 + 200);
    kg_store_close(&other);
}

/* A large batch: every key of it moves (several statements on a
 * backend that cuts it). */
static void touch_many_contract(kg_store_t *s)
{
    enum { MANY = 2500 };
    kg_key_seen_t *seen = calloc(MANY, sizeof(*seen));
    kg_key_t k;

    ck_assert_ptr_nonnull(seen);
    workspaces(s);
    for (int i = 0; i < MANY; i++) {
        snprintf(seen[i].id, sizeof(seen[i].id), "m%c%010d", i % 2 ? 'a' : 'Z',
                 MANY - i);
        seen[i].at = T0 + i;
        if (i % 10 == 0) {
            k = key_new(seen[i].id, "ws1", "m", T0);
            insert(s, &k);
        }
    }
    touch(s, seen, MANY);
    for (int i = 0; i < MANY; i += 10) {
        ck_assert_int_eq(last_used(s, seen[i].id), T0 + i);
    }
    free(seen);
}

/* Collects what secret_each calls back with. */
typedef struct collected {
    int n;
    unsigned char first[KG_KEYHASH_LEN];
    bool has[8];
} collected_t;

static void collect(void *arg, const kg_store_key_secret_t *sec)
{
    collected_t *c = arg;
    unsigned char h[KG_KEYHASH_LEN];

    for (int i = 0; i < 8; i++) {
        hash_of(h, i);
        if (memcmp(h, sec->hash, KG_KEYHASH_LEN) == 0) {
            c->has[i] = true;
        }
    }
    c->n++;
}

static collected_t valid_at(kg_store_t *s, const char *id, int64_t now)
{
    collected_t c;
    kg_diag_t diag = {{0}};

    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(kg_store_key_secret_each(s, id, now, collect, &c, &diag),
                     KG_OK);
    return c;
}

static void add_secret(kg_store_t *s, const char *id, int n, int64_t at)
{
    unsigned char h[KG_KEYHASH_LEN];
    kg_diag_t diag = {{0}};

    hash_of(h, n);
    ck_assert_msg(kg_store_key_secret_add(s, id, h, at, &diag) == KG_OK, "%s",
                  diag.msg);
}

/* Rotation with a grace, then without: both old secrets refused. */
static void secrets_contract(kg_store_t *s)
{
    kg_key_t k = key_new("secretkey001", "ws1", "s", T0);
    unsigned char h[KG_KEYHASH_LEN];
    kg_diag_t diag = {{0}};
    collected_t c;
    kg_key_t got;
    int64_t rev;

    workspaces(s);
    insert(s, &k);
    add_secret(s, k.id, 0, T0);
    hash_of(h, 0);
    ck_assert_int_eq(kg_store_key_secret_add(s, k.id, h, T0, &diag),
                     KG_ERR_EXISTS);
    ck_assert_int_eq(kg_store_key_secret_add(s, "unknown00000", h, T0, &diag),
                     KG_ERR_EXISTS);
    c = valid_at(s, k.id, T0);
    ck_assert_int_eq(c.n, 1);
    ck_assert(c.has[0]);
    ck_assert_int_eq(valid_at(s, "unknown00000", T0).n, 0);

    /* Rotation with a grace: both work until it ends. */
    rev = revision(s);
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_int_eq(kg_store_key_secret_drop_stale(s, T0 + 10, &diag), KG_OK);
    ck_assert_int_eq(kg_store_key_secret_grace(s, k.id, T0 + 100, &diag),
                     KG_OK);
    add_secret(s, k.id, 1, T0 + 10);
    ck_assert_int_eq(kg_store_key_set_last4(s, k.id, "grac", T0 + 10, &diag),
                     KG_OK);
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
    ck_assert_int_gt(revision(s), rev);
    got = get(s, k.id);
    ck_assert_int_eq(got.grace_until, T0 + 100);
    kg_key_clear(&got);
    c = valid_at(s, k.id, T0 + 99);
    ck_assert_int_eq(c.n, 2);
    ck_assert(c.has[0] && c.has[1]);
    c = valid_at(s, k.id, T0 + 100); /* the grace ends at its second */
    ck_assert_int_eq(c.n, 1);
    ck_assert(c.has[1]);

    /* Rotation without a grace, inside the first one's: only the newest. */
    ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
    ck_assert_int_eq(kg_store_key_secret_drop_stale(s, T0 + 20, &diag), KG_OK);
    ck_assert_int_eq(kg_store_key_secret_drop(s, k.id, &diag), KG_OK);
    add_secret(s, k.id, 2, T0 + 20);
    ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
    c = valid_at(s, k.id, T0 + 20);
    ck_assert_int_eq(c.n, 1);
    ck_assert(c.has[2] && !c.has[0] && !c.has[1]);
    got = get(s, k.id);
    ck_assert_int_eq(got.grace_until, KG_NONE);
    kg_key_clear(&got);

    /* Stale secrets go at the end of their grace, of every key; a purge
     * with nothing to drop leaves the revision alone. */
    ck_assert_int_eq(kg_store_key_secret_grace(s, k.id, T0 + 300, &diag),
                     KG_OK);
    add_secret(s, k.id, 3, T0 + 30);
    rev = revision(s);
    ck_assert_int_eq(kg_store_key_secret_drop_stale(s, T0 + 299, &diag), KG_OK);
    ck_assert_int_eq(revision(s), rev);
    ck_assert_int_eq(valid_at(s, k.id, T0 + 30).n, 2);
    ck_assert_int_eq(kg_store_key_secret_drop_stale(s, T0 + 300, &diag), KG_OK);
    ck_assert_int_gt(revision(s), rev);
    c = valid_at(s, k.id, 0);
    ck_assert_int_eq(c.n, 1);
    ck_assert(c.has[3]);
    /* A key's delete takes its secrets. */
    ck_assert_int_eq(kg_store_key_delete(s, k.id, &diag), KG_OK);
    insert(s, &k);
    ck_assert_int_eq(valid_at(s, k.id, 0).n, 0);
}

/* The key cache's load: the view, the newest secrets (the current one
 * first, then by end of grace, latest first, at most max) and the
 * revision of the same read. */
static void load_view_contract(kg_store_t *s)
{
    kg_store_key_secret_t sec[KG_KEYCACHE_MAX_SECRETS + 1];
    kg_key_t k = key_new("viewkey00001", "ws2", "viewed", T0);
    kg_key_view_t v;
    kg_diag_t diag = {{0}};
    unsigned char h[KG_KEYHASH_LEN];
    bool found = true;
    int64_t rev = -1;
    size_t n = 99;

    workspaces(s);
    ck_assert_int_eq(kg_store_key_load_view(s, k.id, &rev, &v, &found, sec,
                                            KG_KEYCACHE_MAX_SECRETS, &n, &diag),
                     KG_OK);
    ck_assert(!found);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(rev, revision(s));

    k.tpm = 123;
    k.period = KG_PERIOD_WEEK;
    k.period_limit = 50;
    k.period_started_at = T0;
    insert(s, &k);
    raw(s, "UPDATE api_keys SET usage = 7, period_usage = 5 "
           "WHERE id = 'viewkey00001'");
    /* 20 secrets in grace (ends T0+1000+i, i = 3 and 4 the same), and a
     * current one added last. */
    for (int i = 0; i < 20; i++) {
        add_secret(s, k.id, 10 + i, T0);
        ck_assert_int_eq(kg_store_key_secret_grace(
                             s, k.id, T0 + 1000 + (i == 4 ? 3 : i), &diag),
                         KG_OK);
    }
    add_secret(s, k.id, 99, T0);
    ck_assert_int_eq(kg_store_key_load_view(s, k.id, &rev, &v, &found, sec,
                                            KG_KEYCACHE_MAX_SECRETS, &n, &diag),
                     KG_OK);
    ck_assert(found);
    ck_assert_int_eq(rev, revision(s));
    ck_assert_str_eq(v.id, k.id);
    ck_assert_str_eq(v.workspace_id, "ws2");
    ck_assert_str_eq(v.name, "viewed");
    ck_assert_str_eq(v.prefix, "kg");
    ck_assert_str_eq(v.last4, "abcd");
    ck_assert_int_eq(v.status, KG_KEY_ACTIVE);
    ck_assert_int_eq(v.expires_at, KG_NONE);
    ck_assert_int_eq(v.usage_limit, KG_NONE);
    ck_assert_int_eq(v.usage, 7);
    ck_assert_int_eq(v.period, KG_PERIOD_WEEK);
    ck_assert_int_eq(v.period_limit, 50);
    ck_assert_int_eq(v.period_usage, 5);
    ck_assert_int_eq(v.period_started_at, T0);
    ck_assert_int_eq(v.rpm, KG_NONE);
    ck_assert_int_eq(v.tpm, 123);
    ck_assert_int_eq(v.max_concurrent, KG_NONE);
    ck_assert_uint_eq(n, KG_KEYCACHE_MAX_SECRETS);
    hash_of(h, 99);
    ck_assert_mem_eq(sec[0].hash, h, KG_KEYHASH_LEN);
    ck_assert_int_eq(sec[0].expires_at, KG_NONE);
    /* Then ends of grace 1019, 1018, ..., 1005: the tie (i = 3, 4 at 1003)
     * is past the cut. */
    for (size_t i = 1; i < n; i++) {
        hash_of(h, 10 + 20 - (int)i);
        ck_assert_int_eq(sec[i].expires_at, T0 + 1000 + 20 - (int64_t)i);
        ck_assert_mem_eq(sec[i].hash, h, KG_KEYHASH_LEN);
    }
    /* A smaller max: the newest still. */
    ck_assert_int_eq(
        kg_store_key_load_view(s, k.id, &rev, &v, &found, sec, 2, &n, &diag),
        KG_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(sec[0].expires_at, KG_NONE);
    ck_assert_int_eq(sec[1].expires_at, T0 + 1019);
    ck_assert_int_eq(
        kg_store_key_load_view(s, k.id, &rev, &v, &found, sec, 0, &n, &diag),
        KG_OK);
    ck_assert(found);
    ck_assert_uint_eq(n, 0);
    /* Equal ends of grace: by hash, as the primary key orders them. */
    ck_assert_int_eq(kg_store_key_secret_drop(s, k.id, &diag), KG_OK);
    add_secret(s, k.id, 5, T0);
    add_secret(s, k.id, 4, T0);
    ck_assert_int_eq(kg_store_key_secret_grace(s, k.id, T0 + 9, &diag), KG_OK);
    ck_assert_int_eq(
        kg_store_key_load_view(s, k.id, &rev, &v, &found, sec, 1, &n, &diag),
        KG_OK);
    ck_assert_uint_eq(n, 1);
    hash_of(h, 4);
    ck_assert_mem_eq(sec[0].hash, h, KG_KEYHASH_LEN);
    sodium_memzero(sec, sizeof(sec));
}

/* The racing threads' shared state. */
typedef struct race {
    const char *id;
    int field; /* which setting this writer changes */
    atomic_int *done;
    int64_t revs[VIEW_READS];
    int64_t rpms[VIEW_READS];
    size_t nreads;
} race_t;

/* One writer of the update race: in a transaction, read the key, change
 * one setting (to round r), write the settings back. */
static void *update_racer(void *arg)
{
    race_t *r = arg;
    kg_store_t *s = open_again();
    kg_diag_t diag = {{0}};

    for (int round = 1; round <= RACE_ROUNDS; round++) {
        kg_key_t k;

        ck_assert_msg(kg_store_begin(s, &diag) == KG_OK, "%s", diag.msg);
        ck_assert_msg(kg_store_key_get(s, r->id, &k, &diag) == KG_OK, "%s",
                      diag.msg);
        switch (r->field) {
        case 0:
            k.rpm = round;
            break;
        case 1:
            k.tpm = round;
            break;
        case 2:
            k.max_concurrent = round;
            break;
        default:
            snprintf(k.name, sizeof(k.name), "name-%d", round);
            break;
        }
        ck_assert_int_eq(kg_store_key_update(s, &k, false, T0 + round, &diag),
                         KG_OK);
        ck_assert_msg(kg_store_commit(s, &diag) == KG_OK, "%s", diag.msg);
        kg_key_clear(&k);
    }
    kg_store_close(&s);
    return NULL;
}

/* Touches and spends the key meanwhile: neither is the update's to write. */
static void *touch_racer(void *arg)
{
    race_t *r = arg;
    kg_store_t *s = open_again();
    kg_key_seen_t seen;
    char sql[128];

    memset(&seen, 0, sizeof(seen));
    snprintf(seen.id, sizeof(seen.id), "%s", r->id);
    snprintf(sql, sizeof(sql),
             "UPDATE api_keys SET usage = usage + 1, "
             "period_usage = period_usage + 1 WHERE id = '%s'",
             r->id);
    for (int round = 1; round <= RACE_ROUNDS; round++) {
        /* Out of order: every other time is behind the last one. */
        seen.at = T0 + 2 * round + (round % 2 ? 10 : 0);
        touch(s, &seen, 1);
        raw(s, sql);
    }
    kg_store_close(&s);
    return NULL;
}

/* Writers of different settings of one key, each its own handle, and a
 * toucher: no setting, no use and no spend is lost. */
static void update_race_contract(kg_store_t *s)
{
    kg_key_t k = key_new("raceKEY00001", "ws1", "race", T0);
    race_t r[5];
    pthread_t t[5];
    char name[32];
    int64_t latest = 0;

    workspaces(s);
    k.period = KG_PERIOD_DAY;
    k.period_limit = 1000;
    k.period_started_at = T0;
    insert(s, &k);
    for (int i = 0; i < 5; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        r[i].id = k.id;
        r[i].field = i;
        ck_assert_int_eq(pthread_create(&t[i], NULL,
                                        i < 4 ? update_racer : touch_racer,
                                        &r[i]),
                         0);
    }
    for (int i = 0; i < 5; i++) {
        pthread_join(t[i], NULL);
    }
    k = get(s, k.id);
    ck_assert_int_eq(k.rpm, RACE_ROUNDS);
    ck_assert_int_eq(k.tpm, RACE_ROUNDS);
    ck_assert_int_eq(k.max_concurrent, RACE_ROUNDS);
    snprintf(name, sizeof(name), "name-%d", RACE_ROUNDS);
    ck_assert_str_eq(k.name, name);
    ck_assert_int_eq(k.usage, RACE_ROUNDS);
    ck_assert_int_eq(k.period_usage, RACE_ROUNDS);
    ck_assert_int_eq(k.period_limit, 1000);
    for (int round = 1; round <= RACE_ROUNDS; round++) {
        latest = T0 + 2 * round + (round % 2 ? 10 : 0) > latest
                     ? T0 + 2 * round + (round % 2 ? 10 : 0)
                     : latest;
    }
    ck_assert_int_eq(k.last_used_at, latest);
    kg_key_clear(&k);
}

/* One rotator: as the keys module rotates with a grace, key r->id (its
 * secrets numbered from r->field); a failure is the test's. */
static void *rotate_racer(void *arg)
{
    race_t *r = arg;
    kg_store_t *s = open_again();
    kg_diag_t diag = {{0}};

    for (int round = 0; round < RACE_ROUNDS; round++) {
        kg_key_t k;

        ck_assert_msg(kg_store_begin(s, &diag) == KG_OK, "%s", diag.msg);
        k = get(s, r->id);
        ck_assert_msg(kg_store_key_secret_drop_stale(s, T0 + 5, &diag) == KG_OK,
                      "%s", diag.msg);
        ck_assert_int_eq(kg_store_key_secret_grace(s, k.id, T0 + 100, &diag),
                         KG_OK);
        add_secret(s, k.id, r->field + round, T0);
        ck_assert_msg(kg_store_commit(s, &diag) == KG_OK, "%s", diag.msg);
        kg_key_clear(&k);
    }
    kg_store_close(&s);
    return NULL;
}

/* Rotations of one key on several handles at once, and of other keys
 * dropping the same stale secrets: one current secret in the end, no
 * deadlock. */
static void rotate_race_contract(kg_store_t *s)
{
    static const char *const ids[] = {"rotA00000001", "rotA00000001",
                                      "rotA00000001", "rotb00000002"};
    kg_store_key_secret_t sec[KG_KEYCACHE_MAX_SECRETS];
    kg_diag_t diag = {{0}};
    race_t r[UT_NROWS(ids)];
    pthread_t t[UT_NROWS(ids)];
    kg_key_view_t v;
    bool found = false;
    int64_t rev = 0;
    size_t n = 0;

    workspaces(s);
    for (size_t i = 0; i < UT_NROWS(ids); i++) {
        kg_key_t k = key_new(ids[i], "ws1", "rot", T0);

        if (i == 0 || i == UT_NROWS(ids) - 1) {
            insert(s, &k);
            /* Stale secrets for every rotation's purge to drop. */
            for (int j = 0; j < 3; j++) {
                add_secret(s, k.id, 200 + (int)i * 10 + j, T0);
                ck_assert_int_eq(
                    kg_store_key_secret_grace(s, k.id, T0 + 1, &diag), KG_OK);
            }
        }
        memset(&r[i], 0, sizeof(r[i]));
        r[i].id = ids[i];
        r[i].field = 1000 + (int)i * RACE_ROUNDS;
    }
    for (size_t i = 0; i < UT_NROWS(ids); i++) {
        ck_assert_int_eq(pthread_create(&t[i], NULL, rotate_racer, &r[i]), 0);
    }
    for (size_t i = 0; i < UT_NROWS(ids); i++) {
        pthread_join(t[i], NULL);
    }
    for (size_t i = 0; i < UT_NROWS(ids); i += UT_NROWS(ids) - 1) {
        ck_assert_int_eq(kg_store_key_load_view(s, ids[i], &rev, &v, &found,
                                                sec, UT_NROWS(sec), &n, &diag),
                         KG_OK);
        ck_assert(found);
        ck_assert_uint_ge(n, 2);
        ck_assert_int_eq(sec[0].expires_at, KG_NONE);
        ck_assert_int_eq(sec[1].expires_at, T0 + 100);
    }
    sodium_memzero(sec, sizeof(sec));
}

/* A writer changing the key (rpm = round, one more secret) while a reader
 * loads it: every load's revision agrees with its rows. */
static void *view_writer(void *arg)
{
    race_t *r = arg;
    kg_store_t *s = open_again();
    kg_diag_t diag = {{0}};

    for (int round = 1; round <= VIEW_ROUNDS; round++) {
        kg_key_t k;

        ck_assert_int_eq(kg_store_begin(s, &diag), KG_OK);
        k = get(s, r->id);
        k.rpm = round;
        ck_assert_int_eq(kg_store_key_update(s, &k, false, T0, &diag), KG_OK);
        kg_key_clear(&k);
        ck_assert_int_eq(kg_store_key_secret_grace(s, r->id, T0 + round, &diag),
                         KG_OK);
        add_secret(s, r->id, round, T0);
        ck_assert_int_eq(kg_store_commit(s, &diag), KG_OK);
    }
    atomic_store(r->done, 1);
    kg_store_close(&s);
    return NULL;
}

static void load_view_race_contract(kg_store_t *s)
{
    kg_key_t k = key_new("viewrace0001", "ws1", "vr", T0);
    kg_store_key_secret_t sec[2];
    kg_diag_t diag = {{0}};
    atomic_int done = 0;
    race_t *r = calloc(1, sizeof(*r));
    kg_store_t *reader;
    pthread_t t;

    ck_assert_ptr_nonnull(r);
    workspaces(s);
    k.rpm = 0;
    insert(s, &k);
    r->id = k.id;
    r->done = &done;
    reader = open_again();
    ck_assert_int_eq(pthread_create(&t, NULL, view_writer, r), 0);
    while (!atomic_load(&done) && r->nreads < UT_NROWS(r->revs)) {
        kg_key_view_t v;
        bool found = false;
        size_t n = 0;
        size_t i = r->nreads;

        ck_assert_int_eq(kg_store_key_load_view(reader, k.id, &r->revs[i], &v,
                                                &found, sec, 2, &n, &diag),
                         KG_OK);
        ck_assert(found);
        /* The current secret is the writer's latest: round rpm. */
        ck_assert_uint_eq(n, v.rpm > 0 ? (v.rpm > 1 ? 2 : 1) : 0);
        if (v.rpm > 0) {
            unsigned char h[KG_KEYHASH_LEN];

            hash_of(h, (int)v.rpm);
            ck_assert_mem_eq(sec[0].hash, h, KG_KEYHASH_LEN);
        }
        r->rpms[i] = v.rpm;
        r->nreads++;
    }
    pthread_join(t, NULL);
    kg_store_close(&reader);
    /* Same revision, same rows; a later revision, never older rows. */
    for (size_t i = 0; i < r->nreads; i++) {
        for (size_t j = 0; j < r->nreads; j++) {
            if (r->revs[i] == r->revs[j]) {
                ck_assert_int_eq(r->rpms[i], r->rpms[j]);
            } else if (r->revs[i] < r->revs[j]) {
                ck_assert_int_le(r->rpms[i], r->rpms[j]);
            }
        }
    }
    ck_assert_uint_gt(r->nreads, 1);
    free(r);
}

/* Each contract on a fresh store of each backend. */
static void on_postgresql(const char *db, void (*body)(kg_store_t *))
{
    kg_store_t *s;

    pgs_create_db(&PG, db, WHERE);
    s = open_again();
    ck_assert_str_eq(kg_store_backend_name(s), "postgresql");
    body(s);
    kg_store_close(&s);
}

static void on_sqlite(void (*body)(kg_store_t *))
{
    kg_store_opts_t opts = {KG_STORE_CREATE, 5000, 0, NULL};
    char dir[UT_PATH_MAX];
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    ut_tmpdir(dir);
    ut_join(WHERE, dir, "keygate.db");
    ck_assert_int_eq(kg_store_open(WHERE, &opts, &s, &diag), KG_OK);
    ck_assert_str_eq(kg_store_backend_name(s), "sqlite");
    body(s);
    kg_store_close(&s);
    ut_tmpdir_remove(dir);
}

#define BOTH(body)                        \
    START_TEST(body##_on_postgresql)      \
    {                                     \
        on_postgresql("kg_" #body, body); \
    }                                     \
    END_TEST                              \
    START_TEST(body##_on_sqlite)          \
    {                                     \
        on_sqlite(body);                  \
    }                                     \
    END_TEST

BOTH(rows_contract)
BOTH(list_contract)
BOTH(expired_contract)
BOTH(touch_contract)
BOTH(touch_many_contract)
BOTH(secrets_contract)
BOTH(load_view_contract)
BOTH(update_race_contract)
BOTH(rotate_race_contract)
BOTH(load_view_race_contract)

#define ADD_BOTH(tc, body)                        \
    do {                                          \
        tcase_add_test(tc, body##_on_postgresql); \
        tcase_add_test(tc, body##_on_sqlite);     \
    } while (0)

static Suite *pg_keys_suite(void)
{
    Suite *s = suite_create("pg_keys");
    TCase *tc = tcase_create("keys");

    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_set_timeout(tc, 120);
    ADD_BOTH(tc, rows_contract);
    ADD_BOTH(tc, list_contract);
    ADD_BOTH(tc, expired_contract);
    ADD_BOTH(tc, touch_contract);
    ADD_BOTH(tc, touch_many_contract);
    ADD_BOTH(tc, secrets_contract);
    ADD_BOTH(tc, load_view_contract);
    ADD_BOTH(tc, update_race_contract);
    ADD_BOTH(tc, rotate_race_contract);
    ADD_BOTH(tc, load_view_race_contract);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(pg_keys_suite());
}
