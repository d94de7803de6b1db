/* Token usage from provider answers and streams, and its cost in micro-USD. */
#ifndef KEYGATE_USAGE_H
#define KEYGATE_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/sse.h"

/* Token counts above this are garbage and ignored; prices are capped too. */
#define KG_USAGE_TOKENS_MAX INT64_C(1000000000000)
#define KG_USAGE_PRICE_MAX  INT64_C(1000000000000)

/* Which provider API shaped an answer. */
typedef enum kg_api {
    KG_API_OPENAI,
    KG_API_ANTHROPIC,
} kg_api_t;

/*
 * Token usage of one request, in one convention for every provider:
 * prompt_tokens counts every input token, cached ones included, and
 * cached_tokens is the part of prompt_tokens read from a prompt cache.
 *
 * - OpenAI already counts this way: prompt_tokens (input_tokens in the
 *   Responses API) includes prompt_tokens_details.cached_tokens.
 * - Anthropic's input_tokens excludes cache reads and cache writes, so
 *   prompt_tokens = input_tokens + cache_creation_input_tokens +
 *   cache_read_input_tokens and cached_tokens = cache_read_input_tokens.
 *   Cache writes are charged at the input price.
 *
 * seen: the provider reported at least one valid count.
 */
typedef struct kg_usage {
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    bool seen;
} kg_usage_t;

/*
 * Prices in micro-USD per 1M tokens. cached_input_per_mtok < 0 means "no
 * cached price": cached tokens then cost the input price.
 */
typedef struct kg_price {
    int64_t input_per_mtok;
    int64_t output_per_mtok;
    int64_t cached_input_per_mtok;
} kg_price_t;

/*
 * Read usage from a whole JSON answer of len bytes (body need not be
 * NUL-terminated) without a tree of it: one pass finds the last top-level
 * "usage" member whose value is an object (kg_jscan_shape), and only that
 * object is parsed. OpenAI: usage.prompt_tokens, completion_tokens (or,
 * for embeddings, total_tokens - prompt_tokens) and
 * prompt_tokens_details.cached_tokens; Responses API: usage.input_tokens,
 * output_tokens and input_tokens_details.cached_tokens. Anthropic:
 * usage.input_tokens, output_tokens, cache_read_input_tokens and
 * cache_creation_input_tokens, normalised as kg_usage_t says.
 *
 * A count that is not an integer in [0, KG_USAGE_TOKENS_MAX] is ignored
 * (as if absent). Returns true when usage was found (u->seen), false for
 * an answer without the shape of JSON, a usage object that does not parse,
 * or no valid count; u is always written (zeros when false). The rest of
 * the answer is checked for its shape only (kg_jscan_shape): it is relayed
 * as the provider wrote it.
 */
bool kg_usage_from_json(kg_api_t api, const char *body, size_t len,
                        kg_usage_t *u);

/*
 * kg_usage_from_json(), and in *json_shape (may be NULL) whether the
 * answer has the shape of a JSON object or array (kg_jscan_shape), from
 * the same pass.
 */
bool kg_usage_from_answer(kg_api_t api, const char *body, size_t len,
                          kg_usage_t *u, bool *json_shape);

/*
 * What a relay learns from a stream, one event at a time. Initialise with
 * kg_usage_stream_init(); then the caller may set prompt_estimate (e.g. to
 * kg_request_info_t.input_estimate_tokens). Every other member is read-only
 * for the caller.
 */
typedef struct kg_usage_stream {
    kg_api_t api;
    bool client_wants_usage; /* the client asked for the usage chunk */
    int64_t prompt_estimate; /* caller's input estimate, for interruptions */
    kg_usage_t usage;        /* the provider's counts read so far */
    bool final;              /* usage holds the provider's final counts */
    bool done;               /* the terminal event has been seen */
    bool terminal;           /* the event just passed is the terminal one */
    int64_t content_events;  /* events that carried generated content */
    int64_t content_bytes;   /* bytes of generated text in them */
    /* Anthropic's own counts, the largest seen of each (they accumulate). */
    int64_t anthropic_input;
    int64_t anthropic_cache_write;
    int64_t anthropic_cache_read;
    int64_t anthropic_output;
} kg_usage_stream_t;

/* Reset s for a new stream of api. */
void kg_usage_stream_init(kg_usage_stream_t *s, kg_api_t api,
                          bool client_wants_usage);

/*
 * Account for one event of the stream and tell the relay whether to
 * forward it (*forward). Always sets s->terminal (true only for the
 * terminal event) and *forward.
 *
 * OpenAI: a chunk with a valid "usage" object gives the final usage; the
 * include_usage chunk ("choices": [] and a "usage" object) is the only
 * event ever not forwarded, and only when the client did not ask for
 * usage. "data: [DONE]" is terminal. Responses API streams (event type
 * "response.*"): response.completed, response.incomplete and
 * response.failed carry response.usage and are terminal.
 *
 * Anthropic: message_start gives message.usage (input, cache and first
 * output counts), message_delta gives usage.output_tokens, cumulative (the
 * largest count seen wins, for every count); message_stop is terminal.
 *
 * Content, for the estimate, is measured without parsing: the bytes, as
 * written in the JSON (escapes not decoded), of the string members
 * "content", "refusal", "reasoning_content", "arguments" and "text" of
 * chat and completions chunks, "delta" of response.*.delta events, and
 * "text", "partial_json" and "thinking" of content_block_delta events.
 * jansson parses only the few events that carry usage, so the common
 * chunk costs no allocation.
 *
 * Data that is not JSON, or of an unexpected shape, is forwarded and
 * otherwise ignored. Events after the terminal one only get forwarded.
 */
void kg_usage_stream_event(kg_usage_stream_t *s, const kg_sse_event_t *ev,
                           bool *forward);

/*
 * The usage to charge for the stream so far, in *out. Returns true when it
 * is the provider's final count (s->final). Otherwise (an interrupted
 * stream) it is an estimate that is never below what the provider already
 * reported: prompt_tokens is the reported input count if any, else
 * s->prompt_estimate; completion_tokens is the larger of the reported
 * output count and max(content events, ceil(content bytes / 4)), so it is
 * never zero once content was produced. (One delta event is about one
 * token for OpenAI; Anthropic batches several tokens per delta, which the
 * bytes / 4 rule covers.) out->seen tells whether any real count was seen.
 */
bool kg_usage_stream_estimate(const kg_usage_stream_t *s, kg_usage_t *out);

/*
 * Cost of u at price in micro-USD, rounded up once over the whole sum:
 * (prompt - cached) * input + cached * cached_price + completion * output,
 * divided by 1e6. Counts are clamped to [0, KG_USAGE_TOKENS_MAX], prices to
 * [0, KG_USAGE_PRICE_MAX] (a negative cached price means the input price), and
 * cached to [0, prompt], so the result is in [0, 3.1e18] without overflow.
 */
int64_t kg_usage_cost(const kg_usage_t *u, const kg_price_t *price);

#endif /* KEYGATE_USAGE_H */
