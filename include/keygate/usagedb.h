/* The usage writer: a journal, then one thread that commits in batches. */
#ifndef KEYGATE_USAGEDB_H
#define KEYGATE_USAGEDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/metrics.h"
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
 * When every queued event is in the journal and its submitter read
 * durable (kg_usagedb_submit_ex), nobody waits for the commit: the writer
 * then lets a small batch grow for up to this long (a flush, a stop or an
 * event somebody waits for ends it), for fewer, larger transactions.
 */
#define KG_USAGEDB_LINGER_MS 5
/*
 * Back-pressure on the request path (kg_usagedb_submit_held): while this
 * many events or more wait for the writer, an answer waits for its own
 * event's commit even when the journal took it. A writer that falls
 * behind (it shares the CPU with the event loops) slows the answers down
 * to its pace instead of letting its queue grow until it is full. One
 * batch: an answer waits for at most the batch in progress and its own.
 */
#define KG_USAGEDB_BACKLOG KG_USAGEDB_BATCH_MAX

/*
 * The usage journal: two append-only segment files next to the store,
 * "<store path>" KG_USAGEDB_JOURNAL_A and ..._B, mode 0600 (docs/store.md).
 * Submitters append to the active segment; once it holds
 * KG_USAGEDB_JOURNAL_SWITCH bytes they switch to the other one, which the
 * writer empties when everything in it has committed. A segment never grows
 * past KG_USAGEDB_JOURNAL_MAX bytes: past it events are not journaled.
 */
#define KG_USAGEDB_JOURNAL_A      "-usage-a"
#define KG_USAGEDB_JOURNAL_B      "-usage-b"
#define KG_USAGEDB_JOURNAL_SWITCH (1u << 20)
#define KG_USAGEDB_JOURNAL_MAX    (64u << 20)

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
    char mode[16]; /* "api-keys" | "credits" | "pool" */
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
 *                      disk full, I/O): nothing of it was stored now. A
 *                      journaled event stays in the journal and is applied
 *                      later: when its segment is emptied, at
 *                      kg_usagedb_stop, or at the next kg_usagedb_start
 * It must return quickly and must not call kg_usagedb_flush or
 * kg_usagedb_stop; it may call kg_usagedb_submit.
 */
typedef void (*kg_usage_done_fn)(void *ud, kg_err_t rc);

typedef struct kg_usagedb kg_usagedb_t;

/* Counters for /metrics. */
typedef struct kg_usagedb_stats {
    uint64_t submitted;  /* accepted by kg_usagedb_submit */
    uint64_t rejected;   /* refused by it: queue full, stopping, invalid */
    uint64_t shed;       /* places refused by kg_usagedb_hold: queue full */
    uint64_t backlogged; /* held events whose answer waited for the commit
                            (KG_USAGEDB_BACKLOG) */
    uint64_t committed;  /* events stored */
    uint64_t skipped;    /* events reported NOT_FOUND, EXISTS or INVAL */
    uint64_t failed;     /* events of failed batches */
    uint64_t batches;    /* transactions committed */
    uint64_t failures;   /* batches failed */
    uint64_t busy_retries;
    uint64_t queued;        /* waiting now */
    uint64_t held;          /* places kept for events to come, now */
    uint64_t journaled;     /* accepted and written to the journal */
    uint64_t unjournaled;   /* accepted without it (durable false) */
    uint64_t replayed;      /* stored from the journal, not from the queue */
    uint64_t journal_bytes; /* in the journal's two segments now */
    /* Time of each committed batch (its transaction, with retries), in the
     * buckets of kg_metrics_bucket, and their sum in microseconds. */
    uint64_t commit_buckets[KG_METRICS_BUCKETS + 1];
    uint64_t commit_us;
} kg_usagedb_stats_t;

/*
 * Open a connection to the store at store_path (migrated like any
 * kg_store_open), open the journal (creating its files, mode 0600), replay
 * it (every complete, valid record is recorded like a queued event: one
 * already stored is not counted again; a torn or invalid record is logged
 * and skipped), empty it, and start the writer thread with room for
 * queue_max waiting events (0: KG_USAGEDB_DEFAULT_QUEUE). When another
 * writer holds the journal (its lock), this one runs without a journal.
 * Returns KG_OK with *out new (kg_usagedb_stop), KG_ERR_INVAL for a
 * queue_max over KG_USAGEDB_QUEUE_MAX, a store error (also when the
 * journal cannot be opened or replayed), KG_ERR_NOMEM or KG_ERR_INTERNAL,
 * with diag; *out is NULL on error.
 */
kg_err_t kg_usagedb_start(const char *store_path, int busy_timeout_ms,
                          size_t queue_max, kg_usagedb_t **out,
                          kg_diag_t *diag) KG_MUST_CHECK;

/*
 * kg_usagedb_start with the store at location (a path or a postgresql://
 * URL) and the journal's files at journal_base + "-usage-a"/"-usage-b"
 * (a local path: the journal keeps events while the store is away).
 */
kg_err_t kg_usagedb_start_at(const char *location, const char *journal_base,
                             int busy_timeout_ms, size_t queue_max,
                             kg_usagedb_t **out, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Copy *ev into the queue; done (may be NULL) is called with ud once the
 * event is committed or has failed. Never blocks on the store. Returns
 * KG_OK, KG_ERR_UNAVAILABLE when the queue is full (the events queued
 * and the places kg_usagedb_hold kept fill it) or the writer stopping
 * (done is then not called: the caller logs and still answers), or
 * KG_ERR_INVAL for an event with an unterminated string, an empty
 * request_id or operation, a bad key id, mode, status or a negative count.
 * Thread-safe.
 */
kg_err_t kg_usagedb_submit(kg_usagedb_t *w, const kg_usage_event_t *ev,
                           kg_usage_done_fn done, void *ud) KG_MUST_CHECK;

/*
 * kg_usagedb_submit, and on KG_OK *durable (may be NULL) tells whether the
 * event was written to the journal before this call returned: true, and it
 * survives a kill -9 of the process even before its commit (the write is
 * in the page cache; no fsync: an OS crash may lose it); false when the
 * journal could not take it (write error, disk full, journal off or at its
 * maximum), and then only the commit makes it durable: a caller that must
 * not lose it waits for done(KG_OK) as with kg_usagedb_submit. done keeps
 * its meaning either way; a durable event may be committed up to
 * KG_USAGEDB_LINGER_MS later than it would be otherwise. durable NULL is
 * kg_usagedb_submit: the caller is taken to wait for done, so the event is
 * committed without lingering. *durable is false on error. Thread-safe:
 * one write(2) of one record under the queue's lock, so journal order is
 * queue order.
 */
kg_err_t kg_usagedb_submit_ex(kg_usagedb_t *w, const kg_usage_event_t *ev,
                              kg_usage_done_fn done, void *ud,
                              bool *durable) KG_MUST_CHECK;

/*
 * Keep a place in the queue for the event of a request about to be
 * admitted, so that no answered request ever finds the queue full: the
 * place is the event's when it comes (kg_usagedb_submit_held) or is given
 * back (kg_usagedb_unhold). Other submits leave the places kept alone.
 * Returns KG_OK, or KG_ERR_UNAVAILABLE when the queued events and the
 * places kept fill the queue, the writer is stopping, or the store is
 * failing (the last batch failed; once idle the writer asks it every
 * second) and the journal cannot keep the event (full, or none): the
 * request is refused before anything is spent. Thread-safe.
 */
kg_err_t kg_usagedb_hold(kg_usagedb_t *w) KG_MUST_CHECK;

/* Give back a place kept by kg_usagedb_hold and not used. Thread-safe. */
void kg_usagedb_unhold(kg_usagedb_t *w);

/* What became of an event of kg_usagedb_submit_held. */
typedef struct kg_usagedb_receipt {
    bool journaled; /* in the journal: it survives a kill -9 from now on */
    bool release;   /* journaled and the writer not behind: the caller may
                       answer now; else it waits for done */
} kg_usagedb_receipt_t;

/*
 * kg_usagedb_submit_ex for the event of a request whose place
 * kg_usagedb_hold kept: never refused for room (the place is used, or
 * freed when the event is refused). *receipt tells whether the caller may
 * let its answer go before done is called: only when the journal took the
 * event and fewer than KG_USAGEDB_BACKLOG events wait (back-pressure);
 * otherwise the event is committed without lingering and the caller waits
 * for done. Returns KG_OK, KG_ERR_UNAVAILABLE when the writer is stopping,
 * or KG_ERR_INVAL (as kg_usagedb_submit; done is then not called).
 * Thread-safe.
 */
kg_err_t kg_usagedb_submit_held(kg_usagedb_t *w, const kg_usage_event_t *ev,
                                kg_usage_done_fn done, void *ud,
                                kg_usagedb_receipt_t *receipt) KG_MUST_CHECK;

/*
 * Wait until every event submitted before this call has been committed or
 * reported, and the journal space they held has been reclaimed when it
 * was due. Returns KG_OK when each batch finished while waiting committed,
 * else the error of a batch that failed. Not from a callback.
 */
kg_err_t kg_usagedb_flush(kg_usagedb_t *w) KG_MUST_CHECK;

/*
 * Refuse new events, commit everything queued (calling every callback),
 * stop and join the thread, empty the journal (applying first what a
 * failed batch left in it; what cannot be applied stays for the next
 * start), close the connection and the journal, free *w and set it to
 * NULL. NULL or *w NULL: nothing happens. Not from a callback.
 */
void kg_usagedb_stop(kg_usagedb_t **w);

/* Copy the counters into *out. Thread-safe. */
void kg_usagedb_stats(kg_usagedb_t *w, kg_usagedb_stats_t *out);

/* What kg_usagedb_journal_scan found in the journal's two segments. */
typedef struct kg_usagedb_journal_info {
    bool present[2];     /* the segment file exists (A, B) */
    uint64_t bytes[2];   /* its size */
    uint64_t records;    /* complete, valid records */
    uint64_t invalid;    /* complete records that are not valid events */
    uint64_t torn_bytes; /* after the last complete record (a write in
                            progress, or cut by a crash) */
} kg_usagedb_journal_info_t;

/* Called for each valid record of a scan, in journal order. */
typedef void (*kg_usagedb_journal_fn)(void *ud, const kg_usage_event_t *ev);

/*
 * Read the usage journal of the store at store_path without changing or
 * locking it (a running writer may append meanwhile): count its records
 * into *info and hand each valid event to fn (may be NULL). A missing
 * segment is no error. Returns KG_OK, KG_ERR_NOMEM, or KG_ERR_IO when a
 * segment cannot be read (diag). Any thread.
 */
kg_err_t kg_usagedb_journal_scan(const char *store_path,
                                 kg_usagedb_journal_fn fn, void *ud,
                                 kg_usagedb_journal_info_t *info,
                                 kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_USAGEDB_H */
