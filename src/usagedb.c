/* The usage writer: a journal, then one thread that commits in batches. */
#define _GNU_SOURCE /* pthread_setname_np, gettid */
#include "keygate/usagedb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "keygate/clock.h"
#include "keygate/log.h"
#include "keygate/metrics.h"
#include "keygate/store.h"
#include "keygate/store_usage.h"
#include "keygate/usage_sums.h"

/* A queued event and, once its batch ran, its outcome. */
typedef struct ud_item {
    kg_usage_event_t ev;
    kg_usage_done_fn done;
    void *ud;
    kg_err_t rc;
    int8_t jseg; /* the journal segment holding it; -1: not journaled */
    bool urgent; /* its submitter may wait for done: commit it at once */
} ud_item_t;

/*
 * With fewer than this many events queued, all of them journaled and none
 * urgent, the writer lingers up to KG_USAGEDB_LINGER_MS for more to join
 * the batch.
 */
#define UD_LINGER_BATCH 64

/*
 * The writer shares a core with an event loop. A batch at normal priority
 * runs its whole time slice (a 30-event batch is ~0.6 ms) while a loop
 * woken by the next request waits for it. So the writer runs at nice
 * UD_NICE, which makes it lose the CPU to a loop soon after it has used
 * its share (and still leaves it a quarter of a core against one busy
 * loop, more than it needs), and yields after every UD_YIELD_US of a
 * batch. The store calls ud_progress now and then while a statement runs
 * (kg_store_usage_set_progress).
 */
#define UD_NICE     5
#define UD_YIELD_US 50

/* A journal segment's state; see "the journal" below. */
typedef enum ud_seg_state {
    UD_SEG_FREE,     /* empty; submitters may switch to it */
    UD_SEG_ACTIVE,   /* submitters append to it */
    UD_SEG_SEALED,   /* no more appends; emptied once its events settled */
    UD_SEG_EMPTYING, /* the writer applies or truncates it, without mu */
} ud_seg_state_t;

typedef struct ud_seg {
    int fd;            /* O_APPEND, flock'ed; -1: none */
    char *path;        /* "<store path>-usage-a" or "-b" */
    uint64_t bytes;    /* its size: appended since it was emptied */
    uint64_t seal_seq; /* SEALED: it holds only events before this one */
    ud_seg_state_t state;
    bool pinned; /* holds an event whose batch failed: apply before emptying */
} ud_seg_t;

/*
 * A batch's totals, folded before they are written: one rollup add per
 * (key, hour, model, provider) (kg_store_usage_rollup_add), one key charge
 * per (key, budget period) (kg_store_usage_charge_key) and one credits
 * charge per workspace, instead of one of each per event. Folding is
 * exact: each operation adds its values (last_used_at and the rollup's
 * latency maximum take the maximum), and two charges for the same
 * period_start applied one after the other give the same row as their sum
 * applied once (store_usage.h); charges for different periods stay
 * separate operations.
 * Only events whose usage_events row was inserted are folded, so an event
 * already stored (the same request_id) is never counted twice.
 */
typedef enum ud_fold_kind {
    UD_FOLD_HOURLY,  /* (key_id, hour, model, provider) */
    UD_FOLD_KEY,     /* (key_id, period_start) */
    UD_FOLD_CREDITS, /* (workspace_id) */
    UD_FOLD__COUNT
} ud_fold_kind_t;

/* A power of two, at least twice KG_USAGEDB_BATCH_MAX: few collisions. */
#define UD_FOLD_SLOTS 1024
_Static_assert(UD_FOLD_SLOTS >= 2 * KG_USAGEDB_BATCH_MAX,
               "the fold's hash table has room for a batch");
_Static_assert(KG_USAGEDB_BATCH_MAX <= KG_STORE_USAGE_BATCH_MAX,
               "the store takes a whole batch in one insert");

typedef struct ud_acc {
    const kg_usage_event_t *ev; /* the group's first event: its strings */
    int64_t num;                /* hourly: the hour; key: period_start */
    kg_usage_sums_t sums;       /* hourly */
    int64_t cost;               /* key, credits */
    int64_t last_s;             /* key: the latest event time, unix seconds */
} ud_acc_t;

typedef struct ud_fold {
    ud_acc_t acc[KG_USAGEDB_BATCH_MAX]; /* in order of first appearance */
    uint16_t slot[UD_FOLD_SLOTS];       /* index + 1 into acc; 0: empty */
    size_t n;
} ud_fold_t;

struct kg_usagedb {
    kg_store_t *store; /* the writer thread's alone once it runs */
    pthread_t thread;

    /* Everything below is guarded by mu. The ring holds count items from
     * head; the writer works on the first of them without the lock and
     * frees their slots only when their callbacks have run. */
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* the writer waits for events or stop */
    pthread_cond_t done_cv; /* flushers wait for done_seq */
    ud_item_t *ring;
    size_t cap;
    size_t head;
    size_t count;
    bool stopping;
    uint64_t submit_seq; /* events accepted so far */
    uint64_t done_seq;   /* events committed or reported so far */
    size_t urgent;       /* queued events someone may be waiting for */
    size_t held;         /* places kept for events to come (kg_usagedb_hold) */
    bool store_failing;  /* the last batch failed, nothing stored since */
    unsigned flushers;   /* threads in kg_usagedb_flush */
    kg_err_t last_failure;
    kg_usagedb_stats_t stats;
    /* The journal (also guarded by mu). */
    ud_seg_t seg[2];
    int jcur;          /* the ACTIVE segment */
    bool jon;          /* the segments are open and locked by this writer */
    bool jbroken;      /* a partial record could not be removed: no appends */
    bool jfailing;     /* the last append failed (logged once) */
    int64_t jretry_us; /* a failed emptying is not tried again before this */

    /* The writer thread's alone (and start's, before it runs). */
    bool yielding;                  /* in a batch: ud_maybe_yield */
    bool failing;                   /* the last batch failed (logged) */
    int64_t yield_at;               /* monotonic µs of its last yield */
    ud_fold_t fold[UD_FOLD__COUNT]; /* the batch's folded totals */
    kg_usage_record_t recs[KG_USAGEDB_BATCH_MAX]; /* the batch's rows */
    kg_err_t verdicts[KG_USAGEDB_BATCH_MAX];      /* and their outcomes */
    kg_store_progress_t progress;                 /* ud_progress, on w */
    ud_item_t *scratch;  /* KG_USAGEDB_BATCH_MAX replayed events */
    unsigned char *rbuf; /* reading the journal */
};

/* In a batch, give the CPU to whoever waits for it once every UD_YIELD_US
 * (cheap when nobody does). */
static void ud_maybe_yield(kg_usagedb_t *w)
{
    int64_t now;

    if (!w->yielding) {
        return;
    }
    now = kg_clock_mono_us();
    if (now - w->yield_at >= UD_YIELD_US) {
        sched_yield();
        w->yield_at = kg_clock_mono_us();
    }
}

/* The progress hook on the writer's store handle. */
static void ud_progress(void *arg)
{
    ud_maybe_yield(arg);
}

/* True when s has a NUL within its size bytes. */
static bool ud_terminated(const char *s, size_t size)
{
    return memchr(s, '\0', size) != NULL;
}

#define UD_TERMINATED(ev, field) ud_terminated((ev)->field, sizeof((ev)->field))

static bool ud_event_valid(const kg_usage_event_t *ev)
{
    if (!UD_TERMINATED(ev, request_id) || !UD_TERMINATED(ev, key_id) ||
        !UD_TERMINATED(ev, workspace_id) || !UD_TERMINATED(ev, operation) ||
        !UD_TERMINATED(ev, model) || !UD_TERMINATED(ev, provider) ||
        !UD_TERMINATED(ev, mode) || !UD_TERMINATED(ev, client_ip) ||
        !UD_TERMINATED(ev, error_code)) {
        return false;
    }
    if (ev->request_id[0] == '\0' || ev->operation[0] == '\0' ||
        !kg_token_id_valid(ev->key_id)) {
        return false;
    }
    if (strcmp(ev->mode, "api-keys") != 0 && strcmp(ev->mode, "credits") != 0 &&
        strcmp(ev->mode, "pool") != 0) {
        return false;
    }
    return ev->status >= 0 && ev->status <= 999 && ev->at_ms >= 0 &&
           ev->prompt_tokens >= 0 && ev->completion_tokens >= 0 &&
           ev->cached_tokens >= 0 && ev->cost >= 0 && ev->latency_ms >= 0 &&
           ev->ttft_ms >= -1;
}

/* The usage_events row of a valid event (its strings fit: same sizes). */
#define UD_COPY(r, ev, f)                                                    \
    do {                                                                     \
        _Static_assert(sizeof((r)->f) == sizeof((ev)->f), "same size: " #f); \
        memcpy((r)->f, (ev)->f, sizeof((r)->f));                             \
    } while (0)

static void ud_record(kg_usage_record_t *r, const kg_usage_event_t *ev)
{
    r->id = 0;
    UD_COPY(r, ev, request_id);
    UD_COPY(r, ev, key_id);
    UD_COPY(r, ev, workspace_id);
    r->at_ms = ev->at_ms;
    UD_COPY(r, ev, operation);
    UD_COPY(r, ev, model);
    UD_COPY(r, ev, provider);
    UD_COPY(r, ev, mode);
    r->status = ev->status;
    r->prompt_tokens = ev->prompt_tokens;
    r->completion_tokens = ev->completion_tokens;
    r->cached_tokens = ev->cached_tokens;
    r->cost = ev->cost;
    r->latency_ms = ev->latency_ms;
    r->ttft_ms = ev->ttft_ms;
    r->streamed = ev->streamed;
    UD_COPY(r, ev, client_ip);
    UD_COPY(r, ev, error_code);
}

static uint32_t ud_hash_str(uint32_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u; /* FNV-1a */
    }
    return (h ^ 0xffu) * 16777619u;
}

static uint32_t ud_hash_int(uint32_t h, int64_t v)
{
    uint64_t u = (uint64_t)v;

    for (int i = 0; i < 8; i++, u >>= 8) {
        h = (h ^ (uint32_t)(u & 0xff)) * 16777619u;
    }
    return h;
}

/* The group of ev under kind (num: its hour or period), made if new. */
static ud_acc_t *ud_fold_get(ud_fold_t *f, ud_fold_kind_t kind,
                             const kg_usage_event_t *ev, int64_t num)
{
    uint32_t h = 2166136261u;
    size_t i;

    if (kind == UD_FOLD_CREDITS) {
        h = ud_hash_str(h, ev->workspace_id);
    } else {
        h = ud_hash_int(ud_hash_str(h, ev->key_id), num);
        if (kind == UD_FOLD_HOURLY) {
            h = ud_hash_str(ud_hash_str(h, ev->model), ev->provider);
        }
    }
    /* Linear probing; the table is never more than half full. */
    for (i = h & (UD_FOLD_SLOTS - 1); f->slot[i] != 0;
         i = (i + 1) & (UD_FOLD_SLOTS - 1)) {
        ud_acc_t *a = &f->acc[f->slot[i] - 1];
        bool same;

        if (kind == UD_FOLD_CREDITS) {
            same = strcmp(a->ev->workspace_id, ev->workspace_id) == 0;
        } else {
            same = a->num == num && strcmp(a->ev->key_id, ev->key_id) == 0 &&
                   (kind != UD_FOLD_HOURLY ||
                    (strcmp(a->ev->model, ev->model) == 0 &&
                     strcmp(a->ev->provider, ev->provider) == 0));
        }
        if (same) {
            return a;
        }
    }
    f->slot[i] = (uint16_t)(f->n + 1);
    memset(&f->acc[f->n], 0, sizeof(f->acc[f->n]));
    f->acc[f->n].ev = ev;
    f->acc[f->n].num = num;
    return &f->acc[f->n++];
}

static void ud_fold_reset(ud_fold_t *f)
{
    if (f->n > 0) {
        memset(f->slot, 0, sizeof(f->slot));
        f->n = 0;
    }
}

/* *acc += v, saturating: the sums of a batch never overflow. */
static void ud_add(int64_t *acc, int64_t v)
{
    if (__builtin_add_overflow(*acc, v, acc)) {
        *acc = v < 0 ? INT64_MIN : INT64_MAX;
    }
}

/* Add an inserted event to the batch's totals. */
static void ud_fold_event(kg_usagedb_t *w, const kg_usage_event_t *ev)
{
    int64_t at = ev->at_ms / 1000;
    ud_acc_t *a = ud_fold_get(&w->fold[UD_FOLD_HOURLY], UD_FOLD_HOURLY, ev,
                              at - at % 3600);
    const kg_usage_sample_t x = {
        .status = ev->status,
        .prompt_tokens = ev->prompt_tokens,
        .completion_tokens = ev->completion_tokens,
        .cached_tokens = ev->cached_tokens,
        .cost = ev->cost,
        .latency_ms = ev->latency_ms,
        .ttft_ms = ev->ttft_ms,
        .streamed = ev->streamed,
    };

    kg_usage_sums_add(&a->sums, &x);

    a = ud_fold_get(&w->fold[UD_FOLD_KEY], UD_FOLD_KEY, ev, ev->period_start);
    ud_add(&a->cost, ev->cost);
    a->last_s = at > a->last_s ? at : a->last_s;

    if (ev->charge_credits && ev->cost != 0) {
        a = ud_fold_get(&w->fold[UD_FOLD_CREDITS], UD_FOLD_CREDITS, ev, 0);
        ud_add(&a->cost, ev->cost);
    }
}

/* Write the batch's folded totals: hourly rows, keys, workspace credits. */
static kg_err_t ud_fold_write(kg_usagedb_t *w, kg_diag_t *diag)
{
    const ud_fold_t *f = &w->fold[UD_FOLD_HOURLY];
    kg_err_t rc = KG_OK;

    for (size_t i = 0; rc == KG_OK && i < f->n; i++) {
        const ud_acc_t *a = &f->acc[i];
        const kg_usage_rollup_t row = {
            .hour = a->num,
            .key_id = a->ev->key_id,
            .workspace_id = a->ev->workspace_id,
            .model = a->ev->model,
            .provider = a->ev->provider,
            .sums = a->sums,
        };

        rc = kg_store_usage_rollup_add(w->store, &row, diag);
    }
    f = &w->fold[UD_FOLD_KEY];
    for (size_t i = 0; rc == KG_OK && i < f->n; i++) {
        const ud_acc_t *a = &f->acc[i];

        rc = kg_store_usage_charge_key(w->store, a->ev->key_id, a->cost,
                                       a->last_s, a->num, diag);
    }
    f = &w->fold[UD_FOLD_CREDITS];
    for (size_t i = 0; rc == KG_OK && i < f->n; i++) {
        const ud_acc_t *a = &f->acc[i];

        rc = kg_store_usage_charge_credits(w->store, a->ev->workspace_id,
                                           a->cost, diag);
    }
    return rc;
}

/*
 * Record n items (items[(head + i) % cap]) inside the open transaction:
 * each item's usage_events row and its verdict, then the folded totals.
 * Returns KG_OK, or the error that fails the whole batch (the caller rolls
 * back).
 */
static kg_err_t ud_apply(kg_usagedb_t *w, ud_item_t *items, size_t cap,
                         size_t head, size_t n, kg_diag_t *diag)
{
    kg_err_t rc;

    for (int k = 0; k < UD_FOLD__COUNT; k++) {
        ud_fold_reset(&w->fold[k]);
    }
    for (size_t i = 0; i < n; i++) {
        ud_record(&w->recs[i], &items[(head + i) % cap].ev);
    }
    rc = kg_store_usage_events_insert(w->store, w->recs, n, w->verdicts, diag);
    if (rc != KG_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        ud_item_t *it = &items[(head + i) % cap];

        it->rc = w->verdicts[i];
        if (it->rc == KG_OK) {
            ud_fold_event(w, &it->ev);
        }
    }
    return ud_fold_write(w, diag);
}

/* The size of the next batch: what is queued now, up to the maximum. */
static size_t ud_batch_size(kg_usagedb_t *w)
{
    size_t n;

    pthread_mutex_lock(&w->mu);
    n = w->count < KG_USAGEDB_BATCH_MAX ? w->count : KG_USAGEDB_BATCH_MAX;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/*
 * One try at a batch from the ring's head, in one transaction. The batch
 * is sized once the write lock is held, so events that arrived while the
 * writer waited for it join in. Sets *n and each item's verdict; returns
 * KG_OK when committed, or the error that failed the whole batch (rolled
 * back).
 */
static kg_err_t ud_try_batch(kg_usagedb_t *w, void *arg, kg_diag_t *diag)
{
    size_t *n = arg;
    kg_err_t rc;

    rc = kg_store_begin(w->store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    *n = ud_batch_size(w);
    rc = ud_apply(w, w->ring, w->cap, w->head, *n, diag);
    if (rc != KG_OK) {
        kg_store_rollback(w->store);
        return rc;
    }
    return kg_store_commit(w->store, diag);
}

static void ud_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* One try at a transaction; KG_ERR_STORE_BUSY asks for another. */
typedef kg_err_t (*ud_try_fn)(kg_usagedb_t *w, void *arg, kg_diag_t *diag);

/*
 * Run fn, and again after 10 ms, 20 ms, ... (at most 1 s) while the store
 * stays busy, at most retries more times; *nretries (may be NULL) counts
 * the waits.
 */
static kg_err_t ud_retry(kg_usagedb_t *w, int retries, ud_try_fn fn, void *arg,
                         uint64_t *nretries, kg_diag_t *diag)
{
    int backoff = 10;
    kg_err_t rc;

    for (int attempt = 0;; attempt++) {
        rc = fn(w, arg, diag);
        if (rc != KG_ERR_STORE_BUSY || attempt >= retries) {
            return rc;
        }
        if (nretries != NULL) {
            (*nretries)++;
        }
        ud_sleep_ms(backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
}

/*
 * Commit a batch, retrying a busy store; *n gets its size and every item of
 * it its verdict.
 */
static kg_err_t ud_commit_batch(kg_usagedb_t *w, size_t *n, uint64_t *retries)
{
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    *retries = 0;
    rc = ud_retry(w, KG_USAGEDB_BUSY_RETRIES, ud_try_batch, n, retries, &diag);
    /* Logged when batches start and stop failing, not for each one. */
    if (rc == KG_OK && w->failing) {
        KG_INFO("usage writer: batches commit again");
        w->failing = false;
    } else if (rc != KG_OK && !w->failing) {
        KG_WARN("usage writer: a batch failed (%s); its journaled events "
                "are applied once the store takes them",
                diag.msg);
        w->failing = true;
    }
    if (rc != KG_OK) {
        *n = ud_batch_size(w);
        for (size_t i = 0; i < *n; i++) {
            w->ring[(w->head + i) % w->cap].rc = rc;
        }
    }
    return rc;
}

/* ---- journal records ---------------------------------------------------
 *
 * A record: a 12-byte header, then the payload. Integers little-endian.
 *   u32 magic UD_REC_MAGIC ("KGUJ" on disk)
 *   u32 payload length, UD_REC_MIN..UD_REC_MAX
 *   u32 CRC-32 (zlib's crc32) of the first 8 header bytes and the payload
 * Payload, version 1:
 *   u8 version, u8 flags (bit 0 streamed, bit 1 charge_credits), u16 status,
 *   i64 at_ms, prompt_tokens, completion_tokens, cached_tokens, cost,
 *       latency_ms, ttft_ms, period_start,
 *   then request_id, key_id, workspace_id, operation, model, provider,
 *   mode, client_ip, error_code: each a u16 length and its bytes (no NUL).
 * Only the event's fields: never a token, a hash or a credential.
 */
#define UD_REC_MAGIC   UINT32_C(0x4A55474B)
#define UD_REC_VERSION 1
#define UD_REC_HEAD    12
#define UD_REC_NINTS   8
#define UD_REC_NSTRS   9
#define UD_REC_MIN     (4 + 8 * UD_REC_NINTS + 2 * UD_REC_NSTRS)
#define UD_REC_MAX     1024

#define UD_FIELD(f)                                                       \
    {                                                                     \
        offsetof(kg_usage_event_t, f), sizeof(((kg_usage_event_t *)0)->f) \
    }

typedef struct ud_field {
    size_t off;
    size_t size;
} ud_field_t;

static const ud_field_t ud_rec_ints[UD_REC_NINTS] = {
    UD_FIELD(at_ms),
    UD_FIELD(prompt_tokens),
    UD_FIELD(completion_tokens),
    UD_FIELD(cached_tokens),
    UD_FIELD(cost),
    UD_FIELD(latency_ms),
    UD_FIELD(ttft_ms),
    UD_FIELD(period_start),
};

static const ud_field_t ud_rec_strs[UD_REC_NSTRS] = {
    UD_FIELD(request_id), UD_FIELD(key_id),    UD_FIELD(workspace_id),
    UD_FIELD(operation),  UD_FIELD(model),     UD_FIELD(provider),
    UD_FIELD(mode),       UD_FIELD(client_ip), UD_FIELD(error_code),
};

/* The integers are copied as 64-bit values. */
#define UD_I64(f) (sizeof(((kg_usage_event_t *)0)->f) == 8)
_Static_assert(UD_I64(at_ms) && UD_I64(prompt_tokens) &&
                   UD_I64(completion_tokens) && UD_I64(cached_tokens) &&
                   UD_I64(cost) && UD_I64(latency_ms) && UD_I64(ttft_ms) &&
                   UD_I64(period_start),
               "the journal's integer fields are 64-bit");

/* Every string at its longest still fits. */
_Static_assert(UD_REC_MIN + sizeof(((kg_usage_event_t *)0)->request_id) +
                       KG_TOKEN_ID_LEN + KG_WORKSPACE_ID_LEN +
                       sizeof(((kg_usage_event_t *)0)->operation) +
                       sizeof(((kg_usage_event_t *)0)->model) +
                       sizeof(((kg_usage_event_t *)0)->provider) +
                       sizeof(((kg_usage_event_t *)0)->mode) +
                       sizeof(((kg_usage_event_t *)0)->client_ip) +
                       sizeof(((kg_usage_event_t *)0)->error_code) <=
                   UD_REC_MAX,
               "a usage journal record has room for every field");

static void ud_put16(unsigned char **p, uint32_t v)
{
    (*p)[0] = (unsigned char)v;
    (*p)[1] = (unsigned char)(v >> 8);
    *p += 2;
}

static void ud_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void ud_put64(unsigned char **p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        (*p)[i] = (unsigned char)(v >> (8 * i));
    }
    *p += 8;
}

static uint32_t ud_get16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t ud_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t ud_get64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static uint32_t ud_rec_crc(const unsigned char *rec, size_t payload_len)
{
    uLong crc = crc32(0L, Z_NULL, 0);

    crc = crc32(crc, rec, 8);
    crc = crc32(crc, rec + UD_REC_HEAD, (uInt)payload_len);
    return (uint32_t)crc;
}

/* Encode a valid event into rec (UD_REC_HEAD + UD_REC_MAX bytes); returns
 * the record's length. */
static size_t ud_rec_encode(const kg_usage_event_t *ev, unsigned char *rec)
{
    unsigned char *p = rec + UD_REC_HEAD;
    size_t len;

    *p++ = UD_REC_VERSION;
    *p++ =
        (unsigned char)((ev->streamed ? 1 : 0) | (ev->charge_credits ? 2 : 0));
    ud_put16(&p, (uint32_t)ev->status);
    for (size_t i = 0; i < UD_REC_NINTS; i++) {
        int64_t v;

        memcpy(&v, (const char *)ev + ud_rec_ints[i].off, sizeof(v));
        ud_put64(&p, (uint64_t)v);
    }
    for (size_t i = 0; i < UD_REC_NSTRS; i++) {
        const char *s = (const char *)ev + ud_rec_strs[i].off;
        size_t n = strlen(s); /* valid: NUL-terminated inside its field */

        ud_put16(&p, (uint32_t)n);
        memcpy(p, s, n);
        p += n;
    }
    len = (size_t)(p - (rec + UD_REC_HEAD));
    ud_put32(rec, UD_REC_MAGIC);
    ud_put32(rec + 4, (uint32_t)len);
    ud_put32(rec + 8, ud_rec_crc(rec, len));
    return UD_REC_HEAD + len;
}

/* Decode a payload whose checksum matched; false when it is not a valid
 * event. */
static bool ud_rec_decode(const unsigned char *p, size_t len,
                          kg_usage_event_t *ev)
{
    const unsigned char *end = p + len;

    memset(ev, 0, sizeof(*ev));
    if (len < UD_REC_MIN || p[0] != UD_REC_VERSION || (p[1] & ~3u) != 0) {
        return false;
    }
    ev->streamed = (p[1] & 1) != 0;
    ev->charge_credits = (p[1] & 2) != 0;
    ev->status = (int)ud_get16(p + 2);
    p += 4;
    for (size_t i = 0; i < UD_REC_NINTS; i++) {
        int64_t v = (int64_t)ud_get64(p);

        memcpy((char *)ev + ud_rec_ints[i].off, &v, sizeof(v));
        p += 8;
    }
    for (size_t i = 0; i < UD_REC_NSTRS; i++) {
        char *s = (char *)ev + ud_rec_strs[i].off;
        size_t n;

        if (end - p < 2) {
            return false;
        }
        n = ud_get16(p);
        p += 2;
        if (n >= ud_rec_strs[i].size || (size_t)(end - p) < n ||
            memchr(p, '\0', n) != NULL) {
            return false;
        }
        memcpy(s, p, n);
        s[n] = '\0';
        p += n;
    }
    return p == end && ud_event_valid(ev);
}

/* Reads a segment's records from its start, through a buffer. */
#define UD_READ_BUF (64 * 1024)
_Static_assert(UD_READ_BUF >= UD_REC_HEAD + UD_REC_MAX,
               "a whole record fits in the read buffer");

typedef struct ud_reader {
    int fd;
    unsigned char *buf; /* UD_READ_BUF bytes */
    uint64_t off;       /* file offset of buf[0] */
    size_t pos;         /* the next record starts at buf[pos] */
    size_t len;         /* bytes in buf */
    int err;            /* errno of a failed read */
} ud_reader_t;

typedef enum ud_read {
    UD_READ_OK,   /* a valid record: the event */
    UD_READ_BAD,  /* a complete record whose contents are not an event */
    UD_READ_END,  /* the end of the file, on a record boundary */
    UD_READ_TORN, /* what is left is not a complete, intact record */
    UD_READ_ERR   /* the file could not be read (r->err) */
} ud_read_t;

/* Have at least need bytes from buf[pos] on; false at the end or error. */
static bool ud_reader_need(ud_reader_t *r, size_t need)
{
    if (r->len - r->pos >= need) {
        return true;
    }
    memmove(r->buf, r->buf + r->pos, r->len - r->pos);
    r->off += r->pos;
    r->len -= r->pos;
    r->pos = 0;
    /* Every round reads at least one byte into the bounded buffer, or
     * ends; EINTR is retried a bounded number of times. */
    for (int eintr = 0; r->len < need;) {
        ssize_t n = pread(r->fd, r->buf + r->len, UD_READ_BUF - r->len,
                          (off_t)(r->off + r->len));

        if (n > 0) {
            r->len += (size_t)n;
        } else if (n < 0 && errno == EINTR && eintr++ < 16) {
            continue;
        } else {
            r->err = n < 0 ? errno : 0;
            break;
        }
    }
    return r->len - r->pos >= need;
}

static ud_read_t ud_reader_next(ud_reader_t *r, kg_usage_event_t *ev)
{
    const unsigned char *h;
    uint32_t len;

    if (!ud_reader_need(r, UD_REC_HEAD)) {
        return r->err             ? UD_READ_ERR
               : r->len == r->pos ? UD_READ_END
                                  : UD_READ_TORN;
    }
    h = r->buf + r->pos;
    len = ud_get32(h + 4);
    if (ud_get32(h) != UD_REC_MAGIC || len > UD_REC_MAX) {
        return UD_READ_TORN;
    }
    if (!ud_reader_need(r, UD_REC_HEAD + len)) {
        return r->err ? UD_READ_ERR : UD_READ_TORN;
    }
    h = r->buf + r->pos;
    if (ud_rec_crc(h, len) != ud_get32(h + 8)) {
        return UD_READ_TORN;
    }
    r->pos += UD_REC_HEAD + len;
    return ud_rec_decode(h + UD_REC_HEAD, len, ev) ? UD_READ_OK : UD_READ_BAD;
}

/* ---- the journal -------------------------------------------------------
 *
 * Invariant: a record leaves the journal (its segment is truncated) only
 * once its event is settled — committed, refused for good (NOT_FOUND,
 * EXISTS, INVAL), or re-applied from the journal after its batch failed.
 *
 * - Submitters append under mu, in queue order, to the ACTIVE segment only,
 *   and remember in item->jseg where the event went. submit_seq is the
 *   position of the next event in the queue.
 * - A submit switches (under mu) to the other segment when the active one
 *   is past KG_USAGEDB_JOURNAL_SWITCH bytes or pinned, and only when the
 *   other one is FREE. The active one becomes SEALED, with seal_seq = the
 *   position of the first event that goes to the new one. So a sealed
 *   segment holds only events at positions < seal_seq, and nothing is
 *   appended to it any more.
 * - done_seq counts settled events, in queue order. Once done_seq >=
 *   seal_seq every event of the sealed segment is settled, except those of
 *   a failed batch, which marked it pinned (under mu, with the same update
 *   of done_seq): the writer first applies a pinned segment again, in one
 *   transaction (events already stored are skipped by their request_id).
 *   Then it truncates the segment. It marks it EMPTYING meanwhile (under
 *   mu) and works without mu: nobody switches to it nor appends to it
 *   until it is FREE again.
 * - Only submitters move FREE -> ACTIVE -> SEALED; only the writer thread
 *   (and start and stop, alone) moves SEALED -> EMPTYING -> FREE.
 */

/* Seal the active segment and make the free one active (mu held; the
 * other segment must be FREE). */
static void ud_seg_switch_locked(kg_usagedb_t *w)
{
    ud_seg_t *s = &w->seg[w->jcur];

    s->state = UD_SEG_SEALED;
    s->seal_seq = w->submit_seq;
    w->seg[1 - w->jcur].state = UD_SEG_ACTIVE;
    w->jcur = 1 - w->jcur;
}

/* Append rec to the active segment, switching first if it is due (mu
 * held). True when the whole record is in the file. */
static bool ud_journal_append(kg_usagedb_t *w, const unsigned char *rec,
                              size_t len)
{
    ud_seg_t *s;
    ud_seg_t *o;
    size_t done = 0;
    int err = 0;

    if (!w->jon || w->jbroken) {
        return false;
    }
    s = &w->seg[w->jcur];
    o = &w->seg[1 - w->jcur];
    /* A pinned segment is sealed at once: what failed in it gets applied
     * as soon as the events before the switch have settled. */
    if ((s->bytes >= KG_USAGEDB_JOURNAL_SWITCH || s->pinned) &&
        o->state == UD_SEG_FREE) {
        ud_seg_switch_locked(w);
        s = o;
    }
    if (s->bytes + len > KG_USAGEDB_JOURNAL_MAX) {
        err = EFBIG;
    }
    /* Each round writes some bytes or ends; EINTR is retried a bounded
     * number of times. */
    for (int eintr = 0; err == 0 && done < len;) {
        ssize_t n = write(s->fd, rec + done, len - done);

        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno == EINTR && eintr++ < 16) {
            continue;
        } else {
            err = n < 0 ? errno : ENOSPC;
        }
    }
    if (err == 0) {
        s->bytes += len;
        if (w->jfailing) {
            KG_INFO("usage journal %s: writing again", s->path);
            w->jfailing = false;
        }
        return true;
    }
    /* A partial record goes, or the next records would follow garbage. */
    if (done > 0 && ftruncate(s->fd, (off_t)s->bytes) != 0) {
        KG_ERROR("usage journal %s: cannot remove a partial record (%s): "
                 "the journal is off until the next start",
                 s->path, strerror(errno));
        w->jbroken = true;
    }
    if (!w->jfailing) {
        KG_WARN("usage journal %s: %s; until it can be written again, "
                "answers wait for their usage to commit",
                s->path,
                err == EFBIG ? "full (the store is not keeping up)"
                             : strerror(err));
        w->jfailing = true;
    }
    return false;
}

/* The writer's buffers for reading the journal, made on first use. */
static kg_err_t ud_replay_buffers(kg_usagedb_t *w)
{
    if (w->scratch == NULL) {
        w->scratch = calloc(KG_USAGEDB_BATCH_MAX, sizeof(*w->scratch));
    }
    if (w->rbuf == NULL) {
        w->rbuf = malloc(UD_READ_BUF);
    }
    return w->scratch != NULL && w->rbuf != NULL ? KG_OK : KG_ERR_NOMEM;
}

/* What applying segments found. */
typedef struct ud_replay {
    int segs[2];
    int nsegs;
    uint64_t records;     /* valid records */
    uint64_t applied;     /* stored now */
    uint64_t present;     /* already stored */
    uint64_t dropped;     /* refused: key deleted, values refused */
    uint64_t invalid;     /* intact records that are not valid events */
    bool torn[2];         /* per segment: a torn or invalid tail ... */
    uint64_t torn_off[2]; /* ... from this offset */
} ud_replay_t;

/* One try at applying the segments' records in one transaction. */
static kg_err_t ud_replay_try(kg_usagedb_t *w, void *arg, kg_diag_t *diag)
{
    ud_replay_t *rp = arg;
    kg_err_t rc;

    memset(&rp->records, 0, sizeof(*rp) - offsetof(ud_replay_t, records));
    rc = kg_store_begin(w->store, diag);
    for (int k = 0; rc == KG_OK && k < rp->nsegs; k++) {
        int si = rp->segs[k];
        ud_reader_t r = {.fd = w->seg[si].fd, .buf = w->rbuf};
        bool more = true;

        /* Every round consumes at least one record's header, or ends. */
        while (more && rc == KG_OK) {
            size_t n = 0;

            while (more && n < KG_USAGEDB_BATCH_MAX) {
                ud_item_t *it = &w->scratch[n];

                switch (ud_reader_next(&r, &it->ev)) {
                case UD_READ_OK:
                    it->done = NULL;
                    it->ud = NULL;
                    it->jseg = -1;
                    n++;
                    break;
                case UD_READ_BAD:
                    rp->invalid++;
                    break;
                case UD_READ_END:
                    more = false;
                    break;
                case UD_READ_TORN:
                    rp->torn[si] = true;
                    rp->torn_off[si] = r.off + r.pos;
                    more = false;
                    break;
                case UD_READ_ERR:
                    rc = kg_diag_fail(diag, KG_ERR_STORE,
                                      "usage journal %s: cannot read: %s",
                                      w->seg[si].path, strerror(r.err));
                    more = false;
                    break;
                }
            }
            if (rc != KG_OK || n == 0) {
                continue;
            }
            rc = ud_apply(w, w->scratch, KG_USAGEDB_BATCH_MAX, 0, n, diag);
            for (size_t i = 0; rc == KG_OK && i < n; i++) {
                kg_err_t v = w->scratch[i].rc;

                rp->records++;
                rp->applied += v == KG_OK;
                rp->present += v == KG_ERR_EXISTS;
                rp->dropped += v != KG_OK && v != KG_ERR_EXISTS;
            }
        }
    }
    if (rc != KG_OK) {
        kg_store_rollback(w->store);
        return rc;
    }
    return kg_store_commit(w->store, diag);
}

/* Log what a replay found: counts, never an event's contents. */
static void ud_replay_log(kg_usagedb_t *w, const ud_replay_t *rp)
{
    for (int k = 0; k < rp->nsegs; k++) {
        int si = rp->segs[k];
        struct stat st;

        if (rp->torn[si] && fstat(w->seg[si].fd, &st) == 0) {
            KG_WARN(
                "usage journal %s: ignored %llu bytes from offset %llu: "
                "a torn or damaged record (a write cut by a crash)",
                w->seg[si].path,
                (unsigned long long)((uint64_t)st.st_size - rp->torn_off[si]),
                (unsigned long long)rp->torn_off[si]);
        }
    }
    if (rp->invalid > 0) {
        KG_WARN("usage journal: skipped %llu intact records that are not "
                "valid usage events",
                (unsigned long long)rp->invalid);
    }
    if (rp->records > 0) {
        KG_INFO(
            "usage journal: events replayed: %llu (%llu stored now, %llu "
            "already stored, %llu dropped: key deleted or values "
            "refused)",
            (unsigned long long)rp->records, (unsigned long long)rp->applied,
            (unsigned long long)rp->present, (unsigned long long)rp->dropped);
    }
}

/*
 * Empty segment si, first applying its records when apply (retrying a busy
 * store retries times); *applied gets how many events that stored. Not
 * under mu: the segment is not ACTIVE, nobody else touches it.
 */
static kg_err_t ud_seg_empty(kg_usagedb_t *w, int si, bool apply, int retries,
                             uint64_t *applied, kg_diag_t *diag)
{
    ud_seg_t *s = &w->seg[si];
    kg_err_t rc;

    *applied = 0;
    if (apply) {
        ud_replay_t rp = {.segs = {si}, .nsegs = 1};

        rc = ud_replay_buffers(w);
        if (rc == KG_OK) {
            rc = ud_retry(w, retries, ud_replay_try, &rp, NULL, diag);
        }
        if (rc != KG_OK) {
            return rc;
        }
        ud_replay_log(w, &rp);
        *applied = rp.applied;
    }
    if (ftruncate(s->fd, 0) != 0) {
        return kg_diag_fail(diag, KG_ERR_STORE,
                            "usage journal %s: cannot truncate: %s", s->path,
                            strerror(errno));
    }
    return KG_OK;
}

/*
 * Empty the sealed segment once every event in it is settled (mu held; it
 * is dropped while the segment is worked on). When that fails (a pinned
 * segment's events cannot be applied yet, the file cannot be truncated),
 * it is tried again after the first batch a second later.
 */
static void ud_reclaim_locked(kg_usagedb_t *w)
{
    int si;
    ud_seg_t *s;
    bool pinned;
    uint64_t applied = 0;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    if (!w->jon) {
        return;
    }
    si = 1 - w->jcur;
    s = &w->seg[si];
    if (s->state != UD_SEG_SEALED || w->done_seq < s->seal_seq ||
        (w->jretry_us != 0 && kg_clock_mono_us() < w->jretry_us)) {
        return;
    }
    s->state = UD_SEG_EMPTYING;
    pinned = s->pinned;
    pthread_mutex_unlock(&w->mu);
    rc = ud_seg_empty(w, si, pinned, 0, &applied, &diag);
    pthread_mutex_lock(&w->mu);
    w->stats.replayed += applied;
    if (rc == KG_OK) {
        w->store_failing = w->store_failing && !pinned;
        s->state = UD_SEG_FREE;
        s->bytes = 0;
        s->pinned = false;
    } else {
        s->state = UD_SEG_SEALED;
        w->jretry_us = kg_clock_mono_us() + 1000000;
        KG_WARN("usage journal %s: not emptied yet (%s); tried again later",
                s->path, diag.msg);
    }
}

/*
 * Whether the writer may wait for more events before its next batch (mu
 * held): nobody waits for what is queued (each event is in the journal and
 * its submitter was told so), no flush or stop, and the batch is small.
 */
static bool ud_may_linger(const kg_usagedb_t *w)
{
    return !w->stopping && w->flushers == 0 && w->urgent == 0 &&
           w->count < UD_LINGER_BATCH;
}

/* Give a small batch of durable events up to KG_USAGEDB_LINGER_MS to grow
 * (mu held): fewer, larger transactions for the same events. */
static void ud_linger(kg_usagedb_t *w)
{
    struct timespec dl;

    if (!ud_may_linger(w)) {
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_nsec += KG_USAGEDB_LINGER_MS * 1000000L;
    dl.tv_sec += dl.tv_nsec / 1000000000L;
    dl.tv_nsec %= 1000000000L;
    /* Bounded by the deadline (ETIMEDOUT, or any error, ends it); submit,
     * flush and stop signal. */
    while (ud_may_linger(w) &&
           pthread_cond_timedwait(&w->work_cv, &w->mu, &dl) == 0) {
    }
}

/* Whether the journal holds events of failed batches (mu held). */
static bool ud_journal_owes_locked(const kg_usagedb_t *w)
{
    return w->jon && (w->seg[0].pinned || w->seg[1].pinned ||
                      w->seg[0].state == UD_SEG_SEALED ||
                      w->seg[1].state == UD_SEG_SEALED);
}

/*
 * With nothing queued but events of failed batches in the journal (the
 * store was away), wait at most a second for work, then seal the active
 * segment if it holds such events and apply what is sealed: usage comes
 * back as soon as the store does, not at the next append or at stop
 * (mu held; all submitted events are settled, so a seal is at once
 * ready to empty).
 */
static void ud_idle_reclaim_locked(kg_usagedb_t *w)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1;
    pthread_cond_timedwait(&w->work_cv, &w->mu, &until);
    if (w->count != 0 || w->stopping) {
        return;
    }
    if (w->seg[w->jcur].pinned && w->seg[1 - w->jcur].state == UD_SEG_FREE) {
        ud_seg_switch_locked(w);
    }
    ud_reclaim_locked(w);
}

/*
 * With nothing queued after a failed batch and nothing of it to apply
 * from the journal, wait at most a second for work, then ask whether the
 * store answers again (mu held; dropped for the ping): requests refused
 * meanwhile (kg_usagedb_hold) come back as soon as it does.
 */
static void ud_idle_probe_locked(kg_usagedb_t *w)
{
    struct timespec until;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += 1;
    pthread_cond_timedwait(&w->work_cv, &w->mu, &until);
    if (w->count != 0 || w->stopping) {
        return;
    }
    pthread_mutex_unlock(&w->mu);
    rc = kg_store_ping(w->store, &diag);
    pthread_mutex_lock(&w->mu);
    if (rc == KG_OK) {
        w->store_failing = false;
    }
}

static void *ud_main(void *arg)
{
    kg_usagedb_t *w = arg;

    pthread_setname_np(pthread_self(), "kg-usage");
    /* Lowering its own priority needs no privilege. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), UD_NICE) != 0) {
        KG_INFO("usage writer: runs at the default priority: %s",
                strerror(errno));
    }
    pthread_mutex_lock(&w->mu);
    for (;;) {
        size_t n = 0;
        uint64_t retries;
        uint64_t ok = 0;
        uint64_t skipped = 0;
        unsigned pins = 0;
        size_t urgent = 0;
        int64_t batch_start;
        int64_t batch_us;
        kg_err_t rc;

        while (w->count == 0 && !w->stopping) {
            if (ud_journal_owes_locked(w)) {
                ud_idle_reclaim_locked(w);
            } else if (w->store_failing) {
                ud_idle_probe_locked(w);
            } else {
                pthread_cond_wait(&w->work_cv, &w->mu);
            }
        }
        if (w->count == 0) {
            break; /* stopping and drained */
        }
        ud_linger(w);
        pthread_mutex_unlock(&w->mu);

        w->yielding = true;
        w->yield_at = kg_clock_mono_us();
        batch_start = w->yield_at;
        rc = ud_commit_batch(w, &n, &retries);
        batch_us = kg_clock_mono_us() - batch_start;
        for (size_t i = 0; i < n; i++) {
            ud_item_t *it = &w->ring[(w->head + i) % w->cap];

            ud_maybe_yield(w);
            ok += it->rc == KG_OK;
            skipped += rc == KG_OK && it->rc != KG_OK;
            urgent += it->urgent;
            if (rc != KG_OK && it->jseg >= 0) {
                pins |= 1u << it->jseg; /* the journal keeps it */
            }
            if (it->done != NULL) {
                it->done(it->ud, it->rc);
            }
        }

        w->yielding = false;
        pthread_mutex_lock(&w->mu);
        w->head = (w->head + n) % w->cap;
        w->count -= n;
        w->done_seq += n;
        w->urgent -= urgent;
        w->stats.busy_retries += retries;
        w->store_failing = rc != KG_OK;
        if (rc == KG_OK) {
            w->stats.batches++;
            w->stats.commit_buckets[kg_metrics_bucket(batch_us)]++;
            w->stats.commit_us += (uint64_t)batch_us;
            w->stats.committed += ok;
            w->stats.skipped += skipped;
        } else {
            w->stats.failures++;
            w->stats.failed += n;
            w->last_failure = rc;
        }
        for (int k = 0; k < 2; k++) {
            w->seg[k].pinned = w->seg[k].pinned || (pins & (1u << k)) != 0;
        }
        ud_reclaim_locked(w);
        pthread_cond_broadcast(&w->done_cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/*
 * Whether the journal can take another event (mu held): it is open and
 * its active segment has room for the largest record.
 */
static bool ud_journal_room_locked(const kg_usagedb_t *w)
{
    return w->jon && !w->jbroken &&
           w->seg[w->jcur].bytes + UD_REC_HEAD + UD_REC_MAX <=
               KG_USAGEDB_JOURNAL_MAX;
}

kg_err_t kg_usagedb_hold(kg_usagedb_t *w)
{
    kg_err_t rc = KG_OK;

    pthread_mutex_lock(&w->mu);
    /* With the store failing, an event only the journal can keep: none
     * is admitted when it cannot. */
    if (w->stopping || w->count + w->held >= w->cap ||
        (w->store_failing && !ud_journal_room_locked(w))) {
        w->stats.shed++;
        rc = KG_ERR_UNAVAILABLE;
    } else {
        w->held++;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void kg_usagedb_unhold(kg_usagedb_t *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->held > 0) {
        w->held--;
    }
    pthread_mutex_unlock(&w->mu);
}

/* How an event is submitted, and what became of it. */
typedef struct ud_submission {
    bool held;       /* it takes a place kg_usagedb_hold kept */
    bool reads;      /* the caller reads the outcome: it may not wait */
    bool journaled;  /* out: written to the journal */
    bool backlogged; /* out: the writer is behind (held only) */
} ud_submission_t;

/* Queue *ev (see kg_usagedb_submit_ex and kg_usagedb_submit_held). */
static kg_err_t ud_submit(kg_usagedb_t *w, const kg_usage_event_t *ev,
                          kg_usage_done_fn done, void *ud, ud_submission_t *sub)
{
    kg_usage_event_t e;
    unsigned char rec[UD_REC_HEAD + UD_REC_MAX];
    size_t len = 0;
    ud_item_t *it;
    kg_err_t rc = ud_event_valid(ev) ? KG_OK : KG_ERR_INVAL;

    sub->journaled = false;
    sub->backlogged = false;
    if (rc == KG_OK) {
        /* The record is built outside the lock; only its write is in it. */
        e = *ev;
        if (e.at_ms == 0) {
            e.at_ms = kg_clock_now_ms();
        }
        len = ud_rec_encode(&e, rec);
    }
    pthread_mutex_lock(&w->mu);
    if (sub->held && w->held > 0) {
        w->held--; /* the place becomes the queued event's, or is freed */
    } else if (rc == KG_OK && w->count + w->held >= w->cap) {
        rc = KG_ERR_UNAVAILABLE;
    }
    if (rc == KG_OK && w->stopping) {
        rc = KG_ERR_UNAVAILABLE;
    }
    if (rc != KG_OK) {
        w->stats.rejected++;
        goto out;
    }
    sub->journaled = ud_journal_append(w, rec, len);
    sub->backlogged = sub->held && w->count >= KG_USAGEDB_BACKLOG;
    it = &w->ring[(w->head + w->count) % w->cap];
    it->ev = e;
    it->done = done;
    it->ud = ud;
    it->rc = KG_OK;
    it->jseg = sub->journaled ? (int8_t)w->jcur : -1;
    /* Its submitter waits for done unless it was told it need not. */
    it->urgent = !sub->reads || !sub->journaled || sub->backlogged;
    w->count++;
    w->urgent += it->urgent;
    w->submit_seq++;
    w->stats.submitted++;
    if (sub->journaled) {
        w->stats.journaled++;
    } else {
        w->stats.unjournaled++;
    }
    w->stats.backlogged += sub->backlogged;
    /* Wake the writer when it is idle or its lingering should end; while
     * it works on a batch it looks at the queue again anyway. */
    if (w->count == 1 || it->urgent || w->count >= UD_LINGER_BATCH) {
        pthread_cond_signal(&w->work_cv);
    }
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

kg_err_t kg_usagedb_submit_ex(kg_usagedb_t *w, const kg_usage_event_t *ev,
                              kg_usage_done_fn done, void *ud, bool *durable)
{
    ud_submission_t sub = {.reads = durable != NULL};
    kg_err_t rc = ud_submit(w, ev, done, ud, &sub);

    if (durable != NULL) {
        *durable = rc == KG_OK && sub.journaled;
    }
    return rc;
}

kg_err_t kg_usagedb_submit_held(kg_usagedb_t *w, const kg_usage_event_t *ev,
                                kg_usage_done_fn done, void *ud,
                                kg_usagedb_receipt_t *receipt)
{
    ud_submission_t sub = {.held = true, .reads = true};
    kg_err_t rc = ud_submit(w, ev, done, ud, &sub);

    receipt->journaled = rc == KG_OK && sub.journaled;
    receipt->release = receipt->journaled && !sub.backlogged;
    return rc;
}

kg_err_t kg_usagedb_submit(kg_usagedb_t *w, const kg_usage_event_t *ev,
                           kg_usage_done_fn done, void *ud)
{
    return kg_usagedb_submit_ex(w, ev, done, ud, NULL);
}

kg_err_t kg_usagedb_flush(kg_usagedb_t *w)
{
    uint64_t target;
    uint64_t failures;
    kg_err_t rc = KG_OK;

    pthread_mutex_lock(&w->mu);
    target = w->submit_seq;
    failures = w->stats.failures;
    w->flushers++;
    pthread_cond_signal(&w->work_cv); /* no lingering */
    /* Also until a segment being emptied is done: the journal space the
     * flushed events held is back when flush returns. */
    while (w->done_seq < target || w->seg[0].state == UD_SEG_EMPTYING ||
           w->seg[1].state == UD_SEG_EMPTYING) {
        pthread_cond_wait(&w->done_cv, &w->mu);
    }
    w->flushers--;
    if (w->stats.failures != failures) {
        rc = w->last_failure;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void kg_usagedb_stats(kg_usagedb_t *w, kg_usagedb_stats_t *out)
{
    pthread_mutex_lock(&w->mu);
    *out = w->stats;
    out->queued = w->count;
    out->held = w->held;
    out->journal_bytes = w->seg[0].bytes + w->seg[1].bytes;
    pthread_mutex_unlock(&w->mu);
}

/*
 * Open (creating, mode 0600) and lock both segments. Another writer
 * holding them is not an error: this one then runs without a journal.
 */
static kg_err_t ud_journal_open(kg_usagedb_t *w, const char *store_path,
                                kg_diag_t *diag)
{
    static const char *const suffix[2] = {KG_USAGEDB_JOURNAL_A,
                                          KG_USAGEDB_JOURNAL_B};

    for (int k = 0; k < 2; k++) {
        ud_seg_t *s = &w->seg[k];
        size_t size = strlen(store_path) + strlen(suffix[k]) + 1;
        struct stat st;

        s->path = malloc(size);
        if (s->path == NULL) {
            return KG_ERR_NOMEM;
        }
        snprintf(s->path, size, "%s%s", store_path, suffix[k]);
        s->fd =
            open(s->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                 0600);
        if (s->fd < 0) {
            return kg_diag_fail(diag, KG_ERR_STORE,
                                "cannot open the usage journal %s: %s", s->path,
                                strerror(errno));
        }
        if (fstat(s->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            return kg_diag_fail(diag, KG_ERR_STORE,
                                "usage journal %s is not a file", s->path);
        }
        if ((st.st_mode & 07777) != 0600 && fchmod(s->fd, 0600) != 0) {
            return kg_diag_fail(diag, KG_ERR_STORE,
                                "cannot chmod the usage journal %s: %s",
                                s->path, strerror(errno));
        }
        if (flock(s->fd, LOCK_EX | LOCK_NB) != 0) {
            KG_WARN("usage journal %s: %s (another usage writer uses it); "
                    "this one runs without a journal: answers wait for "
                    "their usage to commit",
                    s->path, errno == EWOULDBLOCK ? "locked" : strerror(errno));
            for (int j = 0; j <= k; j++) {
                close(w->seg[j].fd);
                w->seg[j].fd = -1;
                w->seg[j].bytes = 0;
            }
            return KG_OK;
        }
        s->bytes = (uint64_t)st.st_size;
    }
    w->jon = true;
    return KG_OK;
}

/* Apply what the journal holds (a crash, or a failed batch), then empty
 * it; the first segment becomes the active one. */
static kg_err_t ud_journal_replay(kg_usagedb_t *w, kg_diag_t *diag)
{
    ud_replay_t rp = {.segs = {0, 1}, .nsegs = 2};
    kg_err_t rc = KG_OK;

    if (!w->jon) {
        return KG_OK;
    }
    if (w->seg[0].bytes > 0 || w->seg[1].bytes > 0) {
        rc = ud_replay_buffers(w);
        if (rc == KG_OK) {
            rc = ud_retry(w, KG_USAGEDB_BUSY_RETRIES, ud_replay_try, &rp, NULL,
                          diag);
        }
        if (rc != KG_OK) {
            return rc;
        }
        ud_replay_log(w, &rp);
        w->stats.replayed = rp.applied;
        for (int k = 0; k < 2; k++) {
            if (ftruncate(w->seg[k].fd, 0) != 0) {
                return kg_diag_fail(diag, KG_ERR_STORE,
                                    "usage journal %s: cannot truncate: %s",
                                    w->seg[k].path, strerror(errno));
            }
        }
    }
    w->seg[0].bytes = 0;
    w->seg[1].bytes = 0;
    w->seg[0].state = UD_SEG_ACTIVE;
    w->seg[1].state = UD_SEG_FREE;
    w->jcur = 0;
    return KG_OK;
}

/*
 * At stop, every event is settled: empty the journal, older segment first,
 * applying a pinned one before. What cannot be applied stays on disk for
 * the next start.
 */
static void ud_journal_finish(kg_usagedb_t *w)
{
    if (!w->jon) {
        return;
    }
    for (int k = 0; k < 2; k++) {
        int si = k == 0 ? 1 - w->jcur : w->jcur;
        ud_seg_t *s = &w->seg[si];
        uint64_t applied = 0;
        kg_diag_t diag = {{0}};

        if (s->state == UD_SEG_FREE || (s->bytes == 0 && !s->pinned)) {
            continue;
        }
        if (ud_seg_empty(w, si, s->pinned, KG_USAGEDB_BUSY_RETRIES, &applied,
                         &diag) != KG_OK) {
            KG_WARN("usage journal %s: kept for the next start: %s", s->path,
                    diag.msg);
            continue;
        }
        s->bytes = 0;
        s->pinned = false;
        s->state = si == w->jcur ? UD_SEG_ACTIVE : UD_SEG_FREE;
    }
}

/* Destroy what start set up; the thread is not running. */
static void ud_free(kg_usagedb_t **wp)
{
    kg_usagedb_t *w = *wp;

    for (int k = 0; k < 2; k++) {
        if (w->seg[k].fd >= 0) {
            close(w->seg[k].fd); /* drops the lock */
        }
        free(w->seg[k].path);
    }
    kg_store_close(&w->store);
    pthread_cond_destroy(&w->done_cv);
    pthread_cond_destroy(&w->work_cv);
    pthread_mutex_destroy(&w->mu);
    free(w->scratch);
    free(w->rbuf);
    free(w->ring);
    free(w);
    *wp = NULL;
}

kg_err_t kg_usagedb_start(const char *store_path, int busy_timeout_ms,
                          size_t queue_max, kg_usagedb_t **out, kg_diag_t *diag)
{
    return kg_usagedb_start_at(store_path, store_path, busy_timeout_ms,
                               queue_max, out, diag);
}

kg_err_t kg_usagedb_start_at(const char *location, const char *journal_base,
                             int busy_timeout_ms, size_t queue_max,
                             kg_usagedb_t **out, kg_diag_t *diag)
{
    kg_store_opts_t opts = {.flags = 0, .busy_timeout_ms = busy_timeout_ms};
    pthread_condattr_t cattr;
    kg_usagedb_t *w = NULL;
    kg_err_t rc = KG_OK;

    *out = NULL;
    if (queue_max > KG_USAGEDB_QUEUE_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "usage queue of %zu events is over the maximum "
                            "of %u",
                            queue_max, (unsigned)KG_USAGEDB_QUEUE_MAX);
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return KG_ERR_NOMEM;
    }
    w->seg[0].fd = -1;
    w->seg[1].fd = -1;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "usage writer: no mutex");
    }
    /* The writer's lingering deadline is on the monotonic clock. */
    if (pthread_condattr_init(&cattr) != 0 ||
        pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&w->work_cv, &cattr) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "usage writer: no condvar");
    }
    pthread_condattr_destroy(&cattr);
    if (pthread_cond_init(&w->done_cv, NULL) != 0) {
        pthread_cond_destroy(&w->work_cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "usage writer: no condvar");
    }
    w->cap = queue_max ? queue_max : KG_USAGEDB_DEFAULT_QUEUE;
    w->ring = calloc(w->cap, sizeof(*w->ring));
    if (w->ring == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    rc = kg_store_open(location, &opts, &w->store, diag);
    if (rc == KG_OK) {
        w->progress.fn = ud_progress;
        w->progress.ud = w;
        kg_store_usage_set_progress(w->store, &w->progress);
        rc = ud_journal_open(w, journal_base, diag);
    }
    if (rc == KG_OK) {
        rc = ud_journal_replay(w, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    if (pthread_create(&w->thread, NULL, ud_main, w) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_INTERNAL,
                          "usage writer: cannot start its thread");
    }
out:
    if (rc != KG_OK) {
        ud_free(&w);
    }
    *out = w;
    return rc;
}

void kg_usagedb_stop(kg_usagedb_t **wp)
{
    kg_usagedb_t *w;

    if (wp == NULL || *wp == NULL) {
        return;
    }
    w = *wp;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_broadcast(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    ud_journal_finish(w);
    ud_free(wp);
}

/* Scan one segment file (see kg_usagedb_journal_scan). */
static kg_err_t ud_scan_segment(const char *path, unsigned char *buf,
                                kg_usagedb_journal_fn fn, void *ud, int k,
                                kg_usagedb_journal_info_t *info,
                                kg_diag_t *diag)
{
    ud_reader_t r = {.fd = -1, .buf = buf};
    kg_usage_event_t ev;
    kg_err_t rc = KG_OK;
    struct stat st;
    bool more = true;

    r.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (r.fd < 0) {
        return errno == ENOENT
                   ? KG_OK
                   : kg_diag_fail(diag, KG_ERR_IO, "usage journal %s: %s", path,
                                  strerror(errno));
    }
    if (fstat(r.fd, &st) == 0) {
        info->present[k] = true;
        info->bytes[k] = (uint64_t)st.st_size;
    }
    /* Every round consumes a record or ends. */
    while (more) {
        switch (ud_reader_next(&r, &ev)) {
        case UD_READ_OK:
            info->records++;
            if (fn != NULL) {
                fn(ud, &ev);
            }
            break;
        case UD_READ_BAD:
            info->invalid++;
            break;
        case UD_READ_END:
            more = false;
            break;
        case UD_READ_TORN:
            /* What follows the last whole record, from where it starts. */
            if (st.st_size > 0 && (uint64_t)st.st_size > r.off + r.pos) {
                info->torn_bytes += (uint64_t)st.st_size - (r.off + r.pos);
            }
            more = false;
            break;
        case UD_READ_ERR:
            rc = kg_diag_fail(diag, KG_ERR_IO, "usage journal %s: %s", path,
                              strerror(r.err));
            more = false;
            break;
        }
    }
    close(r.fd);
    return rc;
}

kg_err_t kg_usagedb_journal_scan(const char *store_path,
                                 kg_usagedb_journal_fn fn, void *ud,
                                 kg_usagedb_journal_info_t *info,
                                 kg_diag_t *diag)
{
    static const char *const suffix[2] = {KG_USAGEDB_JOURNAL_A,
                                          KG_USAGEDB_JOURNAL_B};
    unsigned char *buf = malloc(UD_READ_BUF);
    kg_err_t rc = KG_OK;

    memset(info, 0, sizeof(*info));
    if (buf == NULL) {
        return KG_ERR_NOMEM;
    }
    for (int k = 0; k < 2 && rc == KG_OK; k++) {
        char path[PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s%s", store_path, suffix[k]);

        if (n < 0 || (size_t)n >= sizeof(path)) {
            rc = kg_diag_fail(diag, KG_ERR_IO, "store path too long");
            break;
        }
        rc = ud_scan_segment(path, buf, fn, ud, k, info, diag);
    }
    free(buf);
    return rc;
}
