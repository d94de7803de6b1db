/* Inspecting and rewriting client request bodies (OpenAI and Anthropic). */
#ifndef KEYGATE_REQUEST_H
#define KEYGATE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"

#ifndef KG_NONE
/* An absent optional number (the same definition as keygate/keys.h). */
#define KG_NONE INT64_C(-1)
#endif

#ifndef KG_MODEL_NAME_MAX
/* The longest model name a request may carry, in bytes (as providers.h). */
#define KG_MODEL_NAME_MAX 256
#endif
/* The deepest nesting of arrays and objects a request body may have. */
#define KG_REQUEST_MAX_DEPTH 64
/* Tokens added per message to the input estimate (role, framing). */
#define KG_REQUEST_MESSAGE_OVERHEAD 4

/* What keygate needs to know of a request before forwarding it. */
typedef struct kg_request_info {
    char model[KG_MODEL_NAME_MAX + 1]; /* "" when absent */
    bool has_model;
    bool stream;               /* "stream": true */
    bool client_include_usage; /* "stream_options": {"include_usage": true} */
    int64_t max_tokens;        /* KG_NONE when absent */
    int64_t input_estimate_tokens;
} kg_request_info_t;

/*
 * Check the len bytes of a request body (the caller bounds len; body need
 * not be NUL-terminated) and fill *info.
 *
 * Refused with KG_ERR_BAD_REQUEST and a diag message for the client (which
 * names what is wrong and never echoes the body): invalid UTF-8, a raw
 * control character other than whitespace, nesting deeper than
 * KG_REQUEST_MAX_DEPTH (these three checked before parsing), invalid JSON,
 * duplicate member names, a root that is not an object, "model" that is
 * not a string of 1..KG_MODEL_NAME_MAX bytes without control characters,
 * "stream" not a boolean, "max_tokens" / "max_completion_tokens" /
 * "max_output_tokens" not a non-negative integer, "stream_options" not an
 * object or its "include_usage" not a boolean. A null value counts as
 * absent for every member but "model" (OpenAI documents them nullable).
 * A missing model is not an error: has_model is false and the caller
 * decides. KG_ERR_NOMEM when memory runs out. *info is only meaningful
 * on KG_OK.
 *
 * max_tokens is the largest of the three max_* members present (the worst
 * case for a budget reservation), KG_NONE when none is.
 *
 * input_estimate_tokens = ceil(text bytes / 4) + KG_REQUEST_MESSAGE_OVERHEAD
 * per message, where the text is every string under "messages", "prompt",
 * "input", "system" and "instructions", descending through arrays and
 * through the members "content", "text", "output", "arguments", "thinking",
 * "tool_calls" and "function" of objects (so base64 images, URLs and other
 * metadata do not count), with an integer (a token id) counting 4 bytes;
 * a message is an element of "messages" or an object element of "input".
 * Tool definitions are not counted. It is a reservation estimate, settled
 * later against the provider's count.
 */
kg_err_t kg_request_inspect(const char *body, size_t len,
                            kg_request_info_t *info,
                            kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Make the upstream body: "model" set to upstream_model (NULL keeps the
 * body's; added as the last member when absent), and when
 * add_include_usage, stream_options.include_usage set to true (other
 * stream_options members kept; added as the last member, or replacing a
 * null stream_options, when there is none).
 *
 * The result is the client's bytes with only those values spliced in:
 * every other member keeps its place, spacing and spelling (numbers are
 * not re-printed), so nothing is lost and no serialisation is paid for.
 * The body is validated with jansson first, as kg_request_inspect() does.
 *
 * Returns KG_OK with *out a new NUL-terminated buffer of *out_len bytes
 * (free() it); KG_ERR_BAD_REQUEST when the body fails the structural
 * checks of kg_request_inspect() (UTF-8, control characters, depth, JSON,
 * object root, duplicates) or its stream_options is not an object or null while
 * one must be set; KG_ERR_INVAL when upstream_model is not valid UTF-8;
 * KG_ERR_NOMEM. *out is NULL and *out_len 0 on error.
 */
kg_err_t kg_request_rewrite(const char *body, size_t len,
                            const char *upstream_model, bool add_include_usage,
                            char **out, size_t *out_len) KG_MUST_CHECK;

#endif /* KEYGATE_REQUEST_H */
