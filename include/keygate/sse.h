/* An incremental Server-Sent Events parser keeping each event's raw bytes. */
#ifndef KEYGATE_SSE_H
#define KEYGATE_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "keygate/err.h"

/* The default bound on one event's raw size, line endings included. */
#define KG_SSE_MAX_EVENT ((size_t)1 << 20)

/*
 * One complete event, valid only during the callback that receives it.
 *
 * raw is every byte of the event exactly as received, from the first byte
 * after the previous event up to and including the line ending of the blank
 * line that ends it. Concatenating the raw bytes of every event, then the
 * bytes kg_sse_finish() reports, gives back the whole stream, so a relay
 * can forward an event byte for byte or drop it whole.
 *
 * A block without data lines (a comment such as ": keep-alive", a stray
 * blank line) is an event too, with has_data false, so that the relay sees
 * and forwards it; per the SSE standard a client dispatches nothing for it.
 *
 * event is the value of the last "event:" line (event_len 0 when there is
 * none); data is the values of the "data:" lines joined with "\n" (data_len
 * 0 without data lines). One space after the colon is stripped from both.
 * Neither pointer is ever NULL nor NUL-terminated; both point into raw or
 * into the parser. "id:", "retry:", comments and unknown fields are
 * ignored.
 */
typedef struct kg_sse_event {
    const char *raw;
    size_t raw_len;
    const char *event;
    size_t event_len;
    const char *data;
    size_t data_len;
    bool has_data;
} kg_sse_event_t;

/*
 * Called once per complete event. Return KG_OK to go on; any other value
 * stops kg_sse_feed() (or kg_sse_finish()), which returns it.
 */
typedef kg_err_t (*kg_sse_event_cb)(const kg_sse_event_t *ev, void *ud);

typedef struct kg_sse_parser kg_sse_parser_t;

/*
 * Make a parser that refuses events larger than max_event bytes (0 means
 * KG_SSE_MAX_EVENT). On KG_OK *out is new: free it with kg_sse_parser_free().
 * Returns KG_ERR_NOMEM (and *out NULL) when memory runs out.
 */
kg_err_t kg_sse_parser_new(size_t max_event,
                           kg_sse_parser_t **out) KG_MUST_CHECK;

/* Free *p and set it to NULL (no-op when *p or p is NULL). */
void kg_sse_parser_free(kg_sse_parser_t **p);

/*
 * Take the next len bytes of the stream, split anywhere (even inside a
 * "\r\n"), and call cb for each event they complete. Lines end with "\n",
 * "\r\n" or "\r"; a leading UTF-8 byte order mark is not a field name.
 * Only the bytes of an incomplete event are copied and kept.
 *
 * An event whose blank line ends with a lone "\r" as the last byte of buf
 * is held until the next byte shows whether a "\n" belongs to it (or until
 * kg_sse_finish()), so that its raw bytes never depend on how the stream
 * was split.
 *
 * Returns KG_OK; KG_ERR_BAD_GATEWAY when an event grows past the bound;
 * KG_ERR_NOMEM; or the first non-OK value cb returned. After any non-OK
 * return the parser is stopped: every later call returns the same error.
 */
kg_err_t kg_sse_feed(kg_sse_parser_t *p, const char *buf, size_t len,
                     kg_sse_event_cb cb, void *ud) KG_MUST_CHECK;

/* Bytes kept of an event not yet delivered (0 between events). */
size_t kg_sse_pending(const kg_sse_parser_t *p);

/*
 * End of stream. Delivers an event held back for its final "\r" through cb,
 * then reports what is left: the raw bytes of a trailing event that was
 * never ended by a blank line. *partial tells whether there is one; *rest
 * and *rest_len (either may be NULL) point at its bytes, which stay valid
 * until the next call on p. Such an event is never delivered to cb: an SSE
 * client discards it too, so the relay may forward it raw (keeping the
 * stream byte for byte; recommended) or drop it; its fields count for
 * nothing (no usage is read from it). The parser is then empty and ready
 * for a new stream. Returns KG_OK (also for an empty stream), the parser's
 * earlier error (then *partial is false), or cb's non-OK value.
 */
kg_err_t kg_sse_finish(kg_sse_parser_t *p, kg_sse_event_cb cb, void *ud,
                       bool *partial, const char **rest,
                       size_t *rest_len) KG_MUST_CHECK;

/* True when ev's event name is exactly name (a NUL-terminated string). */
bool kg_sse_event_is(const kg_sse_event_t *ev, const char *name);

#endif /* KEYGATE_SSE_H */
