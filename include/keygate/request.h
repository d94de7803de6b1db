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

/* Top-level members a body may have; more is refused (400). */
#define KG_REQUEST_MAX_MEMBERS 1024
/*
 * Bodies up to this size are rewritten into a new buffer; larger ones are
 * sent as the client's bytes with the edits spliced in on the way
 * (kg_request_edits_read), so a large body is never copied whole.
 */
#define KG_REQUEST_SPLICE_MIN (64 * 1024)

/*
 * Where the members keygate may rewrite sit in a body, as byte offsets:
 * filled by kg_request_inspect() for kg_request_edits_make().
 */
typedef struct kg_request_layout {
    size_t root;      /* the root object's '{' */
    size_t append_at; /* where a new member goes: after the last value */
    bool root_empty;  /* the root has no member (append_at is after '{') */
    bool has_model;   /* a "model" member, of any type */
    size_t model_at;  /* its value: [model_at, model_end) */
    size_t model_end;
    char so_type; /* "stream_options": 0 absent, 'o' object, 'z' null,
                     'x' anything else */
    size_t so_at; /* its value */
    size_t so_end;
    size_t so_append_at; /* inside an object value: where a member goes */
    bool so_empty;
    bool has_include_usage; /* stream_options.include_usage, any type */
    size_t iu_at;           /* its value */
    size_t iu_end;
} kg_request_layout_t;

/* What keygate needs to know of a request before forwarding it. */
typedef struct kg_request_info {
    char model[KG_MODEL_NAME_MAX + 1]; /* "" when absent */
    bool has_model;
    bool stream;               /* "stream": true */
    bool client_include_usage; /* "stream_options": {"include_usage": true} */
    int64_t max_tokens;        /* KG_NONE when absent */
    int64_t input_estimate_tokens;
    kg_request_layout_t layout;
} kg_request_info_t;

/*
 * Check the len bytes of a request body (the caller bounds len; body need
 * not be NUL-terminated) and fill *info, in one pass over the bytes that
 * builds no tree and allocates nothing but a table of the top-level
 * member names.
 *
 * Refused with KG_ERR_BAD_REQUEST and a diag message for the client (which
 * names what is wrong and where, and never echoes the body): invalid UTF-8
 * anywhere, a raw control character other than white space outside
 * strings or any inside them, nesting deeper than KG_REQUEST_MAX_DEPTH,
 * invalid JSON (RFC 8259 grammar, with "\u0000" and unpaired surrogate
 * escapes refused as jansson refuses them), a root that is not an object,
 * more than KG_REQUEST_MAX_MEMBERS top-level members, a duplicate member
 * name at the top level or in "stream_options" (the objects keygate reads:
 * names compared after unescaping, so "mod\u0065l" is "model"), "model"
 * that is not a string of 1..KG_MODEL_NAME_MAX bytes without control
 * characters, "stream" not a boolean, "max_tokens" /
 * "max_completion_tokens" / "max_output_tokens" not a non-negative integer
 * (or one past INT64_MAX: "too large"), "stream_options" not an object or
 * its "include_usage" not a boolean. Duplicates deeper down are the
 * provider's to judge: keygate reads none of their values. Numbers other
 * than the max_* members are checked for their grammar, not their range.
 * A null value counts as absent for every member but "model" (OpenAI
 * documents them nullable). A missing model is not an error: has_model is
 * false and the caller decides. KG_ERR_NOMEM when memory runs out. *info
 * is only meaningful on KG_OK.
 *
 * max_tokens is the largest of the three max_* members present (the worst
 * case for a budget reservation), KG_NONE when none is.
 *
 * input_estimate_tokens = ceil(text bytes / 4) + KG_REQUEST_MESSAGE_OVERHEAD
 * per message, where the text is every string (its unescaped length) under
 * "messages", "prompt", "input", "system" and "instructions", descending
 * through arrays and through the members "content", "text", "output",
 * "arguments", "thinking", "tool_calls" and "function" of objects (so
 * base64 images, URLs and other metadata do not count), with an integer
 * (a token id) counting 4 bytes; a message is an element of "messages" or
 * an object element of "input". Tool definitions are not counted. It is a
 * reservation estimate, settled later against the provider's count.
 */
kg_err_t kg_request_inspect(const char *body, size_t len,
                            kg_request_info_t *info,
                            kg_diag_t *diag) KG_MUST_CHECK;

/* One change to a body: replace [pos, pos + del) with text. */
typedef struct kg_request_edit {
    size_t pos;
    size_t del;
    char *text; /* owned */
    size_t text_len;
} kg_request_edit_t;

#define KG_REQUEST_EDITS_MAX 3

/* The changes that make the upstream body, sorted by position. */
typedef struct kg_request_edits {
    kg_request_edit_t e[KG_REQUEST_EDITS_MAX];
    size_t n;
    size_t out_len; /* the length of the edited body */
} kg_request_edits_t;

/*
 * Plan the upstream body of a body that kg_request_inspect() accepted
 * (info->layout): "model" set to upstream_model (NULL keeps the body's;
 * added as the last member when absent), and when add_include_usage,
 * stream_options.include_usage set to true (other stream_options members
 * kept; added as the last member, or replacing a null stream_options,
 * when there is none). Every other byte stays as the client sent it.
 *
 * Returns KG_OK with *edits filled (edits->n may be 0: nothing to change;
 * kg_request_edits_clear frees it); KG_ERR_BAD_REQUEST when stream_options
 * is neither an object nor null while one must be set; KG_ERR_INVAL when
 * upstream_model is not valid UTF-8; KG_ERR_NOMEM. *edits is empty on
 * error.
 */
kg_err_t kg_request_edits_make(const char *body, size_t len,
                               const kg_request_info_t *info,
                               const char *upstream_model,
                               bool add_include_usage,
                               kg_request_edits_t *edits) KG_MUST_CHECK;

/*
 * Copy up to max bytes of the edited body, from its byte offset on, into
 * dst: the client's bytes with the edits spliced in. Returns the bytes
 * copied (0 at the end).
 */
size_t kg_request_edits_read(const char *body, size_t len,
                             const kg_request_edits_t *edits, size_t offset,
                             char *dst, size_t max);

/* Free what *edits owns; it is empty after. */
void kg_request_edits_clear(kg_request_edits_t *edits);

/*
 * kg_request_edits_make() on any body that is a JSON object, with the
 * structural checks of kg_request_inspect() (UTF-8, control characters,
 * depth, JSON, object root, duplicates) but not its checks of the members'
 * types, and the result in a new buffer.
 *
 * Returns KG_OK with *out a new NUL-terminated buffer of *out_len bytes
 * (free() it); KG_ERR_BAD_REQUEST when the body fails those checks or its
 * stream_options is not an object or null while one must be set;
 * KG_ERR_INVAL when upstream_model is not valid UTF-8; KG_ERR_NOMEM. *out
 * is NULL and *out_len 0 on error.
 */
kg_err_t kg_request_rewrite(const char *body, size_t len,
                            const char *upstream_model, bool add_include_usage,
                            char **out, size_t *out_len) KG_MUST_CHECK;

#endif /* KEYGATE_REQUEST_H */
