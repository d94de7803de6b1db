/* Per-key request, token and concurrency limits; per-IP auth throttling. */
#ifndef KEYGATE_RATELIMIT_H
#define KEYGATE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"

#ifndef KG_NONE
/* "No limit" / "not set"; the same definition as in keygate/keys.h. */
#define KG_NONE INT64_C(-1)
#endif

/* The length of a rate window: rpm and tpm are per this many ms. */
#define KG_RATELIMIT_WINDOW_MS INT64_C(60000)
/* Longest key id tracked (key ids are 12 characters). */
#define KG_RATELIMIT_ID_MAX 64
/* Longest client IP string kept; longer ones are cut to this. */
#define KG_RATELIMIT_IP_MAX 63
/* Limits, estimates and token counts are clamped to this. */
#define KG_RATELIMIT_VALUE_MAX INT64_C(1000000000000)
/* Defaults of kg_ratelimit_opts_t's zero fields. */
#define KG_RATELIMIT_DEFAULT_MAX_KEYS       ((size_t)1 << 20)
#define KG_RATELIMIT_DEFAULT_AUTH_FAILURES  20
#define KG_RATELIMIT_DEFAULT_AUTH_WINDOW_MS INT64_C(60000)
#define KG_RATELIMIT_DEFAULT_AUTH_MAX_IPS   ((size_t)65536)
/* Room for kg_ratelimit_format_reset's text ("99999999m59s"). */
#define KG_RATELIMIT_RESET_STRLEN 32
/* Room for kg_ratelimit_describe's text. */
#define KG_RATELIMIT_DESCRIBE_STRLEN 96
/* How long an import's split of the room holds (ms): imports come every
 * 200 ms or so; past this the store is taken as away, and each instance
 * goes on with the others' counts it has and its own. */
#define KG_RATELIMIT_SHARE_HOLD_MS INT64_C(5000)
/* Instances a key's room is split among at most. */
#define KG_RATELIMIT_SHARE_MAX_N INT64_C(1000)

typedef struct kg_ratelimit kg_ratelimit_t;
/* One key's windows; private to ratelimit.c. */
typedef struct kg_ratelimit_entry kg_ratelimit_entry_t;

/* Sizes and thresholds; a zero field takes its default. */
typedef struct kg_ratelimit_opts {
    size_t max_keys; /* keys with windows tracked at once */
    /* Failed authentications one IP may make per window; the next
     * attempt is refused until the window (which starts at the IP's first
     * failure) ends. */
    int64_t auth_max_failures;
    int64_t auth_window_ms;
    size_t auth_max_ips; /* IPs tracked at once; the oldest goes first */
} kg_ratelimit_opts_t;

/* A key's limits; KG_NONE (any negative value): no such limit. */
typedef struct kg_ratelimit_limits {
    int64_t rpm;
    int64_t tpm;
    int64_t max_concurrent;
} kg_ratelimit_limits_t;

/* Which limit refused a request. */
typedef enum kg_ratelimit_kind {
    KG_RATELIMIT_OK = 0,
    KG_RATELIMIT_REQUESTS,
    KG_RATELIMIT_TOKENS,
    KG_RATELIMIT_CONCURRENT,
} kg_ratelimit_kind_t;

/*
 * What a response tells the client, on success and on refusal, following
 * OpenAI's headers:
 *   x-ratelimit-limit-requests      limit_requests
 *   x-ratelimit-remaining-requests  remaining_requests
 *   x-ratelimit-reset-requests      reset_requests_ms, as
 *                                   kg_ratelimit_format_reset prints it
 *   and the same three with -tokens.
 * A limit of KG_NONE means the key has none: leave its headers out. The
 * counts include the request being answered. A reset is the time until
 * the window holds nothing again (remaining back at the limit) if no
 * other request comes; Retry-After is the time until this request would
 * fit.
 */
typedef struct kg_ratelimit_info {
    kg_ratelimit_kind_t refused; /* KG_RATELIMIT_OK when admitted */
    int64_t retry_after_s;       /* >= 1 when refused, else 0 */
    int64_t limit_requests;
    int64_t remaining_requests;
    int64_t reset_requests_ms;
    int64_t limit_tokens;
    int64_t remaining_tokens;
    int64_t reset_tokens_ms;
    int64_t limit_concurrent;
    int64_t concurrent; /* requests in flight, this one included */
} kg_ratelimit_info_t;

/*
 * An admitted request's share of its key's windows. Belongs to one
 * request; zero it before use so that releasing one never granted does
 * nothing. The fields are private.
 */
typedef struct kg_ratelimit_ticket {
    kg_ratelimit_entry_t *entry; /* NULL: nothing to release */
    int64_t est_tokens;
} kg_ratelimit_ticket_t;

/*
 * Make a rate limiter with opts (NULL: all defaults). Returns KG_OK with
 * *out new (free it with kg_ratelimit_free), KG_ERR_INVAL for a negative
 * option, or KG_ERR_NOMEM; *out is NULL on error.
 */
kg_err_t kg_ratelimit_new(const kg_ratelimit_opts_t *opts,
                          kg_ratelimit_t **out) KG_MUST_CHECK;

/*
 * Free everything and set *rl to NULL. No other call may be running and
 * no ticket may be released afterwards. NULL or *rl NULL: nothing.
 */
void kg_ratelimit_free(kg_ratelimit_t **rl);

/*
 * Admit one request of key_id under lim (borrowed; NULL: no limits) at
 * now_ms, with est_tokens the tokens it may use (input estimate plus its
 * output cap).
 *
 * Windows: rpm and tpm use a sliding window of KG_RATELIMIT_WINDOW_MS
 * approximated by two fixed windows aligned on multiples of it: the count
 * is previous * (time left of the current window / window) + current.
 * Requests count when admitted (refused ones do not). Tokens count when
 * released, at their actual number, in the window of the release; while
 * in flight a request counts its estimate. For its own check, an
 * estimate above tpm counts as tpm (such a request fits an empty window
 * rather than never) and one below 1 as 1. With instances sharing a store
 * the counts are this instance's plus the others' as last imported
 * (kg_ratelimit_import).
 *
 * Checks, in this order; a request is refused when
 *   requests:   the count + 1 > rpm, or (instances sharing a store) this
 *               instance's requests since the import before the last + 1
 *               > its share: (room + those requests) / k, room = rpm -
 *               the count, k the instances splitting the key's room
 *               (kg_ratelimit_import); when there are none, the request
 *               is not refused for its share
 *   tokens:     the count + estimate > tpm, or its share, as requests
 *   concurrent: requests in flight >= max_concurrent
 * Returns
 *   KG_OK               *t holds the request's share: release it with
 *                       kg_ratelimit_release on every path
 *   KG_ERR_RATE_LIMITED info says which limit and when to retry: the
 *                       time until the request would fit if no other
 *                       came (in-flight estimates taken as settled as
 *                       estimated); 60 s for a limit of 0, 1 s for the
 *                       concurrency limit and for a share used up (its
 *                       remaining is then 0)
 *   KG_ERR_UNAVAILABLE  max_keys keys are busy (none idle to drop)
 *   KG_ERR_NOMEM        a new key's entry could not be made
 *   KG_ERR_INVAL        key_id empty or longer than KG_RATELIMIT_ID_MAX
 * info (may be NULL) is filled in every case (limits KG_NONE on the last
 * three errors). A key without any limit is admitted without being
 * tracked. t is zeroed on error. Thread-safe; allocates only for a key
 * seen for the first time (or again after kg_ratelimit_sweep dropped it).
 */
kg_err_t kg_ratelimit_acquire(kg_ratelimit_t *rl, const char *key_id,
                              const kg_ratelimit_limits_t *lim,
                              int64_t est_tokens, int64_t now_ms,
                              kg_ratelimit_ticket_t *t,
                              kg_ratelimit_info_t *info) KG_MUST_CHECK;

/*
 * Give back t's share at now_ms: one fewer request in flight, and its
 * estimate replaced by actual_tokens (clamped to [0,
 * KG_RATELIMIT_VALUE_MAX]) in the current token window. Idempotent: a
 * ticket never granted or already released is left alone. Calls for one
 * ticket must not run at the same time on two threads. Thread-safe
 * otherwise; never allocates.
 */
void kg_ratelimit_release(kg_ratelimit_t *rl, kg_ratelimit_ticket_t *t,
                          int64_t actual_tokens, int64_t now_ms);

/*
 * Drop the entries of keys that have nothing in flight and nothing left
 * in their windows at now_ms (dropping them changes no answer). acquire
 * does this by itself when max_keys is reached; a housekeeping thread may
 * call it to give memory back. Returns how many were dropped.
 */
size_t kg_ratelimit_sweep(kg_ratelimit_t *rl, int64_t now_ms);

/* Keys tracked now. Thread-safe. */
size_t kg_ratelimit_key_count(kg_ratelimit_t *rl);

/*
 * One key's request and token counts as gateway instances sharing a store
 * exchange them: the fixed windows [window_start - KG_RATELIMIT_WINDOW_MS,
 * window_start) (prev) and [window_start, window_start +
 * KG_RATELIMIT_WINDOW_MS) (cur), window_start in ms a multiple of the
 * window. Tokens include the estimates of requests in flight.
 */
typedef struct kg_ratelimit_share {
    char key_id[KG_RATELIMIT_ID_MAX + 1];
    int64_t window_start;
    int64_t req_prev;
    int64_t req_cur;
    int64_t tok_prev;
    int64_t tok_cur;
    /* Import: how many other instances track the key in these windows
     * (their sums are above, 0 or not). Export: 0. */
    int64_t instances;
} kg_ratelimit_share_t;

/*
 * This instance's own counts (never the others' it imported) of the keys
 * whose last request had an rpm or a tpm limit, rolled to the windows of
 * now_ms, into out: at most max keys, *n set to how many. When more keys
 * share than max, each call goes on where the previous one stopped, so
 * that all take turns. Thread-safe; never allocates.
 */
void kg_ratelimit_export(kg_ratelimit_t *rl, int64_t now_ms,
                         kg_ratelimit_share_t *out, size_t max, size_t *n);

/*
 * Take others[0..n) as the other instances' counts of those keys (their
 * sums), each replacing what the key's entry held of them; keys not
 * tracked are skipped (an import never makes an entry). Each row's windows
 * are aligned to the entry's at now_ms: the same window counts as it is;
 * a row one window behind counts its cur as previous; one ahead (a clock
 * a little ahead) counts all it has as current; any other counts nothing.
 * The others' counts then roll with the entry's windows and count in the
 * requests and tokens checks, their Retry-After and the remaining and
 * reset headers until the next import. Concurrency stays this instance's
 * own.
 *
 * An import also starts a round of the key's split of the room: until the
 * next import this instance does not see what the others admit, so it
 * takes at most 1/k of the room it sees. The others split theirs before
 * they see what it admitted in the last round, so those requests and
 * tokens count against this round's share too (so that a request larger
 * than a share still moves, one fits when neither round took anything;
 * see kg_ratelimit_acquire). k is live, how many
 * instances share the store (this one included), or 1 + the row's
 * instances when that is more (rows of an instance that stopped); a key
 * seen for the first time splits its room among the live until its first
 * import. The split lapses KG_RATELIMIT_SHARE_HOLD_MS after its import.
 * n may be 0 (live alone). Thread-safe; never allocates.
 */
void kg_ratelimit_import(kg_ratelimit_t *rl, const kg_ratelimit_share_t *others,
                         size_t n, int64_t live, int64_t now_ms);

/*
 * Whether ip (a client address string) may try to authenticate at now_ms:
 * false while it is blocked, with *retry_after_s (may be NULL) the
 * seconds until the block ends (>= 1); true otherwise (*retry_after_s 0).
 * Thread-safe, read-locked only; never allocates.
 */
bool kg_ratelimit_auth_allowed(kg_ratelimit_t *rl, const char *ip,
                               int64_t now_ms, int64_t *retry_after_s);

/*
 * Count one failed authentication from ip at now_ms. The IP's window
 * starts at its first failure and lasts auth_window_ms; the
 * auth_max_failures-th failure in it blocks the IP until the window ends.
 * At most auth_max_ips IPs are tracked: a new one beyond that evicts the
 * one whose last failure is oldest (so a flood from many addresses costs
 * bounded memory, and may push out a blocked IP). When memory is short
 * the failure is not counted. Thread-safe.
 */
void kg_ratelimit_auth_failed(kg_ratelimit_t *rl, const char *ip,
                              int64_t now_ms);

/* IPs tracked now. Thread-safe. */
size_t kg_ratelimit_auth_count(kg_ratelimit_t *rl);

/*
 * The limit's name for the 429 message: "requests per minute", "tokens
 * per minute", "concurrent requests"; "" for KG_RATELIMIT_OK.
 */
const char *kg_ratelimit_kind_name(kg_ratelimit_kind_t kind);

/*
 * The detail of a refusal for KG_ERR_RATE_LIMITED's "%s", e.g. "requests
 * per minute (limit 60)", into buf (KG_RATELIMIT_DESCRIBE_STRLEN bytes
 * suffice). Returns buf; "" when info refused nothing.
 */
const char *kg_ratelimit_describe(const kg_ratelimit_info_t *info, char *buf,
                                  size_t len);

/*
 * A reset time as OpenAI prints it: "250ms" below one second, else whole
 * seconds rounded up, "12s", "1m30s" from one minute on; "0s" for 0 or
 * less. Returns buf (KG_RATELIMIT_RESET_STRLEN bytes suffice).
 */
const char *kg_ratelimit_format_reset(int64_t ms, char *buf, size_t len);

#endif /* KEYGATE_RATELIMIT_H */
