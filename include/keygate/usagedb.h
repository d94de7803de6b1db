/* The usage writer: one thread that commits usage events in batches. */
#ifndef KEYGATE_USAGEDB_H
#define KEYGATE_USAGEDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/token.h"
#include "keygate/workspaces.h"

/* Events in one transaction at most. */
#define KG_USAGEDB_BATCH_MAX 512
/* The queue's size when kg_usagedb_start gets 0, and its maximum. */
#define KG_USAGEDB_DEFAULT_QUEUE 16384
#define KG_USAGEDB_QUEUE_MAX     262144
/*
 * When the store stays locked past the connection's busy timeout, a batch
 * is tried this many more times, waiting 10 ms, 20 ms, ... (at most 1 s)
 * between tries, before its callbacks get KG_ERR_STORE_BUSY.
 */
#define KG_USAGEDB_BUSY_RETRIES 6

/*
 * One forwarded request. Every string is NUL-terminated inside its array;
 * kg_usagedb_submit refuses one that is not.
 */
typedef struct kg_usage_event {
    char request_id[40]; /* unique; a repeat is not counted twice */
    char key_id[KG_TOKEN_ID_LEN + 1];
    char workspace_id[KG_WORKSPACE_ID_LEN + 1];
    int64_t at_ms; /* unix milliseconds; 0: the time of submit */
    char operation[16];
    char model[257];
    char provider[65];
    char mode[16]; /* "api-keys" | "credits" */
    int status;    /* HTTP status sent to the client, 0..999 */
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t cost; /* micro-USD */
    int64_t latency_ms;
    int64_t ttft_ms; /* -1: none */
    bool streamed;
    char client_ip[46];
    char error_code[48]; /* "": none */
    /* Start of the key's budget period the cost falls in; -1: no period. */
    int64_t period_start;
    bool charge_credits; /* credits mode: deduct cost from the workspace */
} kg_usage_event_t;

/*
 * Called on the writer thread once the transaction that held the event
 * has committed (rc KG_OK), or when the event could not be recorded:
 *   KG_ERR_NOT_FOUND   the key was deleted meanwhile; the event is dropped,
 *                      the rest of its batch commits
 *   KG_ERR_EXISTS      an event with this request_id is already stored
 *                      (nothing was added twice)
 *   KG_ERR_INVAL       the store refused the event's values
 *   KG_ERR_STORE*      the whole batch failed (busy past every retry,
 *                      disk full, I/O): nothing of it was stored
 * It must return quickly and must not call kg_usagedb_flush or
 * kg_usagedb_stop; it may call kg_usagedb_submit.
 */
typedef void (*kg_usage_done_fn)(void *ud, kg_err_t rc);

typedef struct kg_usagedb kg_usagedb_t;

/* Counters for /metrics. */
typedef struct kg_usagedb_stats {
    uint64_t submitted; /* accepted by kg_usagedb_submit */
    uint64_t rejected;  /* refused by it: queue full, stopping, invalid */
    uint64_t committed; /* events stored */
    uint64_t skipped;   /* events reported NOT_FOUND, EXISTS or INVAL */
    uint64_t failed;    /* events of failed batches */
    uint64_t batches;   /* transactions committed */
    uint64_t failures;  /* batches failed */
    uint64_t busy_retries;
    uint64_t queued; /* waiting now */
} kg_usagedb_stats_t;

/*
 * Open a connection to the store at store_path (migrated like any
 * kg_store_open) and start the writer thread with room for queue_max
 * waiting events (0: KG_USAGEDB_DEFAULT_QUEUE). Returns KG_OK with *out
 * new (kg_usagedb_stop), KG_ERR_INVAL for a queue_max over
 * KG_USAGEDB_QUEUE_MAX, a store error, KG_ERR_NOMEM or KG_ERR_INTERNAL,
 * with diag; *out is NULL on error.
 */
kg_err_t kg_usagedb_start(const char *store_path, int busy_timeout_ms,
                          size_t queue_max, kg_usagedb_t **out,
                          kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Copy *ev into the queue; done (may be NULL) is called with ud once the
 * event is committed or has failed. Never blocks on the store. Returns
 * KG_OK, KG_ERR_UNAVAILABLE when the queue is full or the writer stopping
 * (done is then not called: the caller logs and still answers), or
 * KG_ERR_INVAL for an event with an unterminated string, an empty
 * request_id or operation, a bad key id, mode, status or a negative count.
 * Thread-safe.
 */
kg_err_t kg_usagedb_submit(kg_usagedb_t *w, const kg_usage_event_t *ev,
                           kg_usage_done_fn done, void *ud) KG_MUST_CHECK;

/*
 * Wait until every event submitted before this call has been committed or
 * reported. Returns KG_OK when each batch finished while waiting
 * committed, else the error of a batch that failed. Not from a callback.
 */
kg_err_t kg_usagedb_flush(kg_usagedb_t *w) KG_MUST_CHECK;

/*
 * Refuse new events, commit everything queued (calling every callback),
 * stop and join the thread, close the connection, free *w and set it to
 * NULL. NULL or *w NULL: nothing happens. Not from a callback.
 */
void kg_usagedb_stop(kg_usagedb_t **w);

/* Copy the counters into *out. Thread-safe. */
void kg_usagedb_stats(kg_usagedb_t *w, kg_usagedb_stats_t *out);

#endif /* KEYGATE_USAGEDB_H */
