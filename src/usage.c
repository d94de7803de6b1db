/* Token usage from provider answers and streams, and its cost in micro-USD. */
#include "keygate/usage.h"

#include <jansson.h>
#include <string.h>

#include "keygate/jscan.h"

#define USAGE_MICRO INT64_C(1000000)

/* A valid token count in *out (true), or false for anything else. */
static bool usage_count(const json_t *obj, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(obj, key); /* borrowed */
    json_int_t n;

    if (!json_is_integer(v)) {
        return false;
    }
    n = json_integer_value(v);
    if (n < 0 || n > KG_USAGE_TOKENS_MAX) {
        return false;
    }
    *out = (int64_t)n;
    return true;
}

/* Read an OpenAI usage object (chat, completions, embeddings, Responses). */
static bool usage_read_openai(const json_t *usage, kg_usage_t *u)
{
    int64_t prompt = 0;
    int64_t completion = 0;
    int64_t cached = 0;
    int64_t total = 0;
    bool has_prompt;
    bool has_completion;
    const json_t *details; /* borrowed */

    /* The Responses API first, then chat, completions and embeddings. */
    has_prompt = usage_count(usage, "input_tokens", &prompt);
    has_completion = usage_count(usage, "output_tokens", &completion);
    details = json_object_get(usage, "input_tokens_details");
    if (!has_prompt && !has_completion) {
        has_prompt = usage_count(usage, "prompt_tokens", &prompt);
        has_completion = usage_count(usage, "completion_tokens", &completion);
        if (!has_completion && has_prompt &&
            usage_count(usage, "total_tokens", &total) && total >= prompt) {
            /* Embeddings report prompt_tokens and total_tokens only. */
            completion = total - prompt;
            has_completion = true;
        }
        details = json_object_get(usage, "prompt_tokens_details");
    }
    if (!has_prompt && !has_completion) {
        return false;
    }
    if (json_is_object(details) &&
        usage_count(details, "cached_tokens", &cached)) {
        cached = cached > prompt ? prompt : cached;
    } else {
        cached = 0;
    }
    u->prompt_tokens = prompt;
    u->completion_tokens = completion;
    u->cached_tokens = cached;
    u->seen = true;
    return true;
}

/* Anthropic's counts as reported; absent or invalid ones stay 0. */
typedef struct usage_anthropic {
    int64_t input;
    int64_t cache_write;
    int64_t cache_read;
    int64_t output;
    bool any;
    bool has_output;
} usage_anthropic_t;

/* Read an Anthropic usage object (message, message_start, message_delta). */
static void usage_read_anthropic(const json_t *usage, usage_anthropic_t *a)
{
    memset(a, 0, sizeof(*a));
    if (!json_is_object(usage)) {
        return;
    }
    a->any |= usage_count(usage, "input_tokens", &a->input);
    a->any |=
        usage_count(usage, "cache_creation_input_tokens", &a->cache_write);
    a->any |= usage_count(usage, "cache_read_input_tokens", &a->cache_read);
    a->has_output = usage_count(usage, "output_tokens", &a->output);
    a->any |= a->has_output;
}

/* Anthropic's counts in keygate's convention (see kg_usage_t). */
static void usage_from_anthropic(int64_t input, int64_t cache_write,
                                 int64_t cache_read, int64_t output,
                                 kg_usage_t *u)
{
    u->prompt_tokens = input + cache_write + cache_read;
    u->completion_tokens = output;
    u->cached_tokens = cache_read;
    u->seen = true;
}

bool kg_usage_from_answer(kg_api_t api, const char *body, size_t len,
                          kg_usage_t *u, bool *json_shape)
{
    json_t *usage = NULL; /* new */
    kg_jscan_member_t m;
    usage_anthropic_t a;
    bool shape;
    bool found = false;

    memset(u, 0, sizeof(*u));
    /* One pass for the shape and the top-level "usage"; jansson reads only
     * that object, not a tree of the whole answer. */
    shape = kg_jscan_shape(body, len, "usage", &m);
    if (json_shape != NULL) {
        *json_shape = shape;
    }
    if (!shape || !m.found) {
        goto out;
    }
    usage = json_loadb(body + m.start, m.end - m.start, 0, NULL);
    if (!json_is_object(usage)) {
        goto out;
    }
    if (api == KG_API_ANTHROPIC) {
        usage_read_anthropic(usage, &a);
        if (a.any) {
            usage_from_anthropic(a.input, a.cache_write, a.cache_read, a.output,
                                 u);
            found = true;
        }
    } else {
        found = usage_read_openai(usage, u);
    }
out:
    json_decref(usage);
    return found;
}

bool kg_usage_from_json(kg_api_t api, const char *body, size_t len,
                        kg_usage_t *u)
{
    return kg_usage_from_answer(api, body, len, u, NULL);
}

void kg_usage_stream_init(kg_usage_stream_t *s, kg_api_t api,
                          bool client_wants_usage)
{
    memset(s, 0, sizeof(*s));
    s->api = api;
    s->client_wants_usage = client_wants_usage;
}

/* Count one event's generated text toward the interruption estimate. */
static void usage_add_content(kg_usage_stream_t *s, size_t bytes)
{
    if (bytes == 0) {
        return;
    }
    if (s->content_events < INT64_MAX) {
        s->content_events++;
    }
    if ((uint64_t)bytes > (uint64_t)(INT64_MAX - s->content_bytes)) {
        s->content_bytes = INT64_MAX;
    } else {
        s->content_bytes += (int64_t)bytes;
    }
}

/* The member names whose string values a scan measures. */
typedef enum usage_key {
    USAGE_K_CONTENT,
    USAGE_K_REFUSAL,
    USAGE_K_REASONING,
    USAGE_K_ARGUMENTS,
    USAGE_K_TEXT,
    USAGE_K_DELTA,
    USAGE_K_PARTIAL_JSON,
    USAGE_K_THINKING,
    USAGE_K__COUNT
} usage_key_t;

static const char *const usage_key_names[USAGE_K__COUNT] = {
    [USAGE_K_CONTENT] = "content",
    [USAGE_K_REFUSAL] = "refusal",
    [USAGE_K_REASONING] = "reasoning_content",
    [USAGE_K_ARGUMENTS] = "arguments",
    [USAGE_K_TEXT] = "text",
    [USAGE_K_DELTA] = "delta",
    [USAGE_K_PARTIAL_JSON] = "partial_json",
    [USAGE_K_THINKING] = "thinking",
};

/* What one pass over an event's data found, without parsing it. */
typedef struct usage_scan {
    size_t bytes[USAGE_K__COUNT]; /* string values of each member name */
    const char *type;             /* the first "type" string value */
    size_t type_len;
    bool usage_object; /* a "usage" member with an object value */
} usage_scan_t;

static bool usage_is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Index of the quote that ends the string whose body starts at i, or len. */
static size_t usage_string_end(const char *d, size_t len, size_t i)
{
    size_t from = i;

    while (i < len) {
        const char *q = memchr(d + i, '"', len - i);
        size_t at;
        size_t slashes = 0;

        if (q == NULL) {
            return len;
        }
        at = (size_t)(q - d);
        while (at - slashes > from && d[at - slashes - 1] == '\\') {
            slashes++;
        }
        if (slashes % 2 == 0) {
            return at;
        }
        i = at + 1;
    }
    return len;
}

/* The usage_key_t of the member name d[0, n), or USAGE_K__COUNT. */
static usage_key_t usage_key_of(const char *d, size_t n)
{
    for (int k = 0; k < USAGE_K__COUNT; k++) {
        const char *name = usage_key_names[k];

        if (strlen(name) == n && memcmp(d, name, n) == 0) {
            return (usage_key_t)k;
        }
    }
    return USAGE_K__COUNT;
}

/*
 * One pass over JSON text, string by string: a string followed by a colon
 * is a member name; the string value after a wanted name is measured as
 * written (escapes not decoded). Garbage gives garbage counts, never a
 * read past len.
 */
static void usage_scan(const char *d, size_t len, usage_scan_t *sc)
{
    size_t i = 0;

    memset(sc, 0, sizeof(*sc));
    while (i < len) {
        const char *q = memchr(d + i, '"', len - i);
        size_t name;
        size_t end;
        size_t j;
        usage_key_t key;

        if (q == NULL) {
            break;
        }
        name = (size_t)(q - d) + 1;
        end = usage_string_end(d, len, name);
        for (j = end + 1; j < len && usage_is_ws(d[j]); j++) {
        }
        if (j >= len || d[j] != ':') {
            i = end + 1;
            continue;
        }
        for (j++; j < len && usage_is_ws(d[j]); j++) {
        }
        if (j < len && d[j] == '{' && end - name == 5 &&
            memcmp(d + name, "usage", 5) == 0) {
            sc->usage_object = true;
        }
        i = j;
        if (j >= len || d[j] != '"') {
            continue;
        }
        /* A string value: measure it when its name is wanted. */
        i = usage_string_end(d, len, j + 1);
        if (i >= len) {
            break;
        }
        key = usage_key_of(d + name, end - name);
        if (key != USAGE_K__COUNT) {
            sc->bytes[key] += i - (j + 1);
        } else if (sc->type == NULL && end - name == 4 &&
                   memcmp(d + name, "type", 4) == 0) {
            sc->type = d + j + 1;
            sc->type_len = i - (j + 1);
        }
        i++;
    }
}

/* True when the n bytes at s are exactly the NUL-terminated lit. */
static bool usage_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* Read response.usage of a Responses API terminal event. */
static void usage_responses_final(kg_usage_stream_t *s,
                                  const kg_sse_event_t *ev)
{
    json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL); /* new */
    const json_t *usage;                                        /* borrowed */
    kg_usage_t u;

    usage = json_object_get(json_object_get(root, "response"), "usage");
    if (json_is_object(usage) && usage_read_openai(usage, &u)) {
        s->usage = u;
        s->final = true;
    }
    json_decref(root);
}

/* Read the usage of a chat chunk that carries a "usage" object. */
static void usage_chat_usage(kg_usage_stream_t *s, const kg_sse_event_t *ev,
                             bool *forward)
{
    json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL); /* new */
    const json_t *usage = json_object_get(root, "usage");       /* borrowed */
    const json_t *choices = json_object_get(root, "choices");   /* borrowed */
    kg_usage_t u;

    if (!json_is_object(usage)) {
        goto out;
    }
    if (usage_read_openai(usage, &u)) {
        s->usage = u;
        s->final = true;
    }
    /* The include_usage chunk, even with garbage counts. */
    if (json_is_array(choices) && json_array_size(choices) == 0 &&
        !s->client_wants_usage) {
        *forward = false;
    }
out:
    json_decref(root);
}

/*
 * One event of an OpenAI stream (chat, completions or Responses API).
 * Content is measured by a scan; jansson parses only the events that
 * carry usage, so the common chunk costs no allocation.
 */
static void usage_openai_event(kg_usage_stream_t *s, const kg_sse_event_t *ev,
                               bool *forward)
{
    usage_scan_t sc;
    const char *type = ev->event;
    size_t tlen = ev->event_len;

    if (usage_is(ev->data, ev->data_len, "[DONE]")) {
        s->terminal = true;
        return;
    }
    usage_scan(ev->data, ev->data_len, &sc);
    if (tlen == 0 && sc.type != NULL) {
        type = sc.type;
        tlen = sc.type_len;
    }
    if (tlen < 9 || memcmp(type, "response.", 9) != 0) {
        /* Chat or completions. */
        usage_add_content(
            s, sc.bytes[USAGE_K_CONTENT] + sc.bytes[USAGE_K_REFUSAL] +
                   sc.bytes[USAGE_K_REASONING] + sc.bytes[USAGE_K_ARGUMENTS] +
                   sc.bytes[USAGE_K_TEXT]);
        if (sc.usage_object) {
            usage_chat_usage(s, ev, forward);
        }
        return;
    }
    /* A Responses API stream: typed events, no [DONE]. */
    if (tlen > 15 && memcmp(type + tlen - 6, ".delta", 6) == 0) {
        usage_add_content(s, sc.bytes[USAGE_K_DELTA]);
    } else if (usage_is(type, tlen, "response.completed") ||
               usage_is(type, tlen, "response.incomplete") ||
               usage_is(type, tlen, "response.failed")) {
        usage_responses_final(s, ev);
        s->terminal = true;
    }
}

/* Keep the largest of each Anthropic count and renormalise s->usage. */
static void usage_anthropic_merge(kg_usage_stream_t *s,
                                  const usage_anthropic_t *a)
{
    if (!a->any) {
        return;
    }
    if (a->input > s->anthropic_input) {
        s->anthropic_input = a->input;
    }
    if (a->cache_write > s->anthropic_cache_write) {
        s->anthropic_cache_write = a->cache_write;
    }
    if (a->cache_read > s->anthropic_cache_read) {
        s->anthropic_cache_read = a->cache_read;
    }
    if (a->output > s->anthropic_output) {
        s->anthropic_output = a->output;
    }
    usage_from_anthropic(s->anthropic_input, s->anthropic_cache_write,
                         s->anthropic_cache_read, s->anthropic_output,
                         &s->usage);
}

/* message_start or message_delta: the counts they carry. */
static void usage_anthropic_counts(kg_usage_stream_t *s, const json_t *root,
                                   bool delta)
{
    usage_anthropic_t a;
    const json_t *usage =
        delta ? json_object_get(root, "usage")
              : json_object_get(json_object_get(root, "message"),
                                "usage"); /* borrowed */

    usage_read_anthropic(usage, &a);
    usage_anthropic_merge(s, &a);
    if (delta && a.has_output) {
        s->final = true;
    }
}

/* content_block_delta: its text, input JSON or thinking delta. */
static void usage_anthropic_content(kg_usage_stream_t *s,
                                    const kg_sse_event_t *ev)
{
    usage_scan_t sc;

    usage_scan(ev->data, ev->data_len, &sc);
    usage_add_content(s, sc.bytes[USAGE_K_TEXT] +
                             sc.bytes[USAGE_K_PARTIAL_JSON] +
                             sc.bytes[USAGE_K_THINKING]);
}

/* One event of an Anthropic Messages stream. */
static void usage_anthropic_event(kg_usage_stream_t *s,
                                  const kg_sse_event_t *ev)
{
    json_t *root = NULL; /* new */
    const char *type;    /* borrowed */

    if (kg_sse_event_is(ev, "content_block_delta")) {
        usage_anthropic_content(s, ev);
        return;
    }
    if (kg_sse_event_is(ev, "message_stop")) {
        s->terminal = true;
        return;
    }
    if (ev->event_len > 0 && !kg_sse_event_is(ev, "message_start") &&
        !kg_sse_event_is(ev, "message_delta")) {
        /* ping, content_block_start/stop, error: nothing to count. */
        return;
    }
    /* message_start, message_delta, or an event without a name. */
    root = json_loadb(ev->data, ev->data_len, 0, NULL);
    type = json_string_value(json_object_get(root, "type"));
    if (type == NULL) {
        goto out;
    }
    if (strcmp(type, "message_start") == 0) {
        usage_anthropic_counts(s, root, false);
    } else if (strcmp(type, "message_delta") == 0) {
        usage_anthropic_counts(s, root, true);
    } else if (strcmp(type, "content_block_delta") == 0) {
        usage_anthropic_content(s, ev);
    } else if (strcmp(type, "message_stop") == 0) {
        s->terminal = true;
    }
out:
    json_decref(root);
}

void kg_usage_stream_event(kg_usage_stream_t *s, const kg_sse_event_t *ev,
                           bool *forward)
{
    *forward = true;
    s->terminal = false;
    if (s->done || !ev->has_data) {
        return;
    }
    if (s->api == KG_API_ANTHROPIC) {
        usage_anthropic_event(s, ev);
    } else {
        usage_openai_event(s, ev, forward);
    }
    if (s->terminal) {
        s->done = true;
    }
}

bool kg_usage_stream_estimate(const kg_usage_stream_t *s, kg_usage_t *out)
{
    int64_t produced;

    *out = s->usage;
    if (s->final) {
        return true;
    }
    if (!s->usage.seen || s->usage.prompt_tokens == 0) {
        out->prompt_tokens = s->prompt_estimate > 0 ? s->prompt_estimate : 0;
        if (out->prompt_tokens > KG_USAGE_TOKENS_MAX) {
            out->prompt_tokens = KG_USAGE_TOKENS_MAX;
        }
        if (out->cached_tokens > out->prompt_tokens) {
            out->cached_tokens = out->prompt_tokens;
        }
    }
    produced = s->content_bytes / 4 + (s->content_bytes % 4 != 0);
    if (s->content_events > produced) {
        produced = s->content_events;
    }
    if (produced > KG_USAGE_TOKENS_MAX) {
        produced = KG_USAGE_TOKENS_MAX;
    }
    if (produced > out->completion_tokens) {
        out->completion_tokens = produced;
    }
    return false;
}

/* Clamp v to [0, max]. */
static int64_t usage_clamp(int64_t v, int64_t max)
{
    return v < 0 ? 0 : (v > max ? max : v);
}

int64_t kg_usage_cost(const kg_usage_t *u, const kg_price_t *price)
{
    int64_t prompt = usage_clamp(u->prompt_tokens, KG_USAGE_TOKENS_MAX);
    int64_t cached = usage_clamp(u->cached_tokens, prompt);
    int64_t tokens[3];
    int64_t prices[3];
    int64_t whole = 0;
    int64_t rest = 0;

    tokens[0] = prompt - cached;
    tokens[1] = cached;
    tokens[2] = usage_clamp(u->completion_tokens, KG_USAGE_TOKENS_MAX);
    prices[0] = usage_clamp(price->input_per_mtok, KG_USAGE_PRICE_MAX);
    prices[1] =
        price->cached_input_per_mtok < 0
            ? prices[0]
            : usage_clamp(price->cached_input_per_mtok, KG_USAGE_PRICE_MAX);
    prices[2] = usage_clamp(price->output_per_mtok, KG_USAGE_PRICE_MAX);
    /*
     * tokens = q * 1e6 + r with q <= 1e6 and r < 1e6: q * price and
     * r * price are each <= 1e18, and the three sums stay below 3.1e18.
     */
    for (int i = 0; i < 3; i++) {
        whole += tokens[i] / USAGE_MICRO * prices[i];
        rest += tokens[i] % USAGE_MICRO * prices[i];
    }
    return whole + rest / USAGE_MICRO + (rest % USAGE_MICRO != 0);
}
