/* libFuzzer target: the SSE parser, split feeding and stream usage. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "keygate/sse.h"
#include "keygate/usage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What one pass over the stream saw, for comparing two passes. */
typedef struct fuzz_run {
    const char *stream; /* the whole input stream */
    size_t len;
    size_t max;    /* the parser's bound */
    size_t offset; /* raw bytes delivered so far */
    size_t events; /* events delivered */
    uint64_t hash; /* over every event's raw, name and data */
    kg_usage_stream_t usage;
    size_t dropped;   /* events the usage layer did not forward */
    size_t terminals; /* events flagged terminal */
} fuzz_run_t;

static uint64_t fuzz_hash(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * UINT64_C(1099511628211);
    }
    return (h ^ n) * UINT64_C(1099511628211);
}

static kg_err_t fuzz_cb(const kg_sse_event_t *ev, void *ud)
{
    fuzz_run_t *r = ud;
    bool forward = true;

    /* Lossless: the raw bytes are the next bytes of the stream. */
    FUZZ_CHECK(ev->raw_len > 0 && ev->raw_len <= r->max);
    FUZZ_CHECK(r->offset + ev->raw_len <= r->len);
    FUZZ_CHECK(memcmp(ev->raw, r->stream + r->offset, ev->raw_len) == 0);
    r->offset += ev->raw_len;
    FUZZ_CHECK(ev->event != NULL && ev->event_len < ev->raw_len);
    FUZZ_CHECK(ev->has_data || ev->data_len == 0);
    FUZZ_CHECK(ev->data_len < ev->raw_len);
    r->events++;
    r->hash = fuzz_hash(r->hash, ev->raw, ev->raw_len);
    r->hash = fuzz_hash(r->hash, ev->event, ev->event_len);
    if (ev->has_data) {
        r->hash = fuzz_hash(r->hash, ev->data, ev->data_len);
    }
    kg_usage_stream_event(&r->usage, ev, &forward);
    r->dropped += !forward;
    r->terminals += r->usage.terminal;
    FUZZ_CHECK(!r->usage.terminal || r->usage.done);
    /* Only the OpenAI usage-only chunk is dropped, and only if not asked. */
    FUZZ_CHECK(forward || (r->usage.api == KG_API_OPENAI &&
                           !r->usage.client_wants_usage && ev->has_data));
    return KG_OK;
}

/* Feed the stream in chunks whose sizes come from seed; then finish. */
static kg_err_t fuzz_pass(fuzz_run_t *r, uint32_t seed, kg_api_t api,
                          bool wants)
{
    kg_sse_parser_t *p = NULL;
    kg_err_t rc;
    size_t off = 0;
    bool partial = false;
    const char *rest = NULL;
    size_t rest_len = 0;

    kg_usage_stream_init(&r->usage, api, wants);
    r->usage.prompt_estimate = 17;
    rc = kg_sse_parser_new(r->max, &p);
    if (rc != KG_OK) {
        return rc;
    }
    while (off < r->len) {
        size_t n = r->len - off;

        if (seed != 0) {
            seed = seed * 1103515245u + 12345u;
            n = 1 + (seed >> 16) % 64;
            n = n > r->len - off ? r->len - off : n;
        }
        rc = kg_sse_feed(p, r->stream + off, n, fuzz_cb, r);
        if (rc != KG_OK) {
            FUZZ_CHECK(rc == KG_ERR_BAD_GATEWAY);
            goto out;
        }
        FUZZ_CHECK(kg_sse_pending(p) <= r->max);
        off += n;
    }
    rc = kg_sse_finish(p, fuzz_cb, r, &partial, &rest, &rest_len);
    FUZZ_CHECK(rc == KG_OK);
    FUZZ_CHECK(partial == (rest_len > 0));
    FUZZ_CHECK(r->offset + rest_len == r->len);
    FUZZ_CHECK(rest_len == 0 ||
               memcmp(rest, r->stream + r->offset, rest_len) == 0);
out:
    kg_sse_parser_free(&p);
    return rc;
}

static void fuzz_check_usage(const kg_usage_stream_t *s)
{
    kg_usage_t u;
    kg_price_t price = {2500000, 10000000, -1};
    bool exact = kg_usage_stream_estimate(s, &u);

    FUZZ_CHECK(exact == s->final);
    FUZZ_CHECK(u.prompt_tokens >= 0 && u.completion_tokens >= 0);
    FUZZ_CHECK(u.cached_tokens >= 0);
    FUZZ_CHECK(u.prompt_tokens <= 3 * KG_USAGE_TOKENS_MAX);
    if (!exact && s->content_events > 0) {
        FUZZ_CHECK(u.completion_tokens > 0);
    }
    FUZZ_CHECK(s->terminal ? s->done : true);
    FUZZ_CHECK(kg_usage_cost(&u, &price) >= 0);
}

/*
 * Input: one option byte (API, client_wants_usage, bound), one seed byte
 * for the chunk sizes, then the stream. The stream is parsed whole and
 * split; both passes must agree.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t bounds[4] = {0, 16, 256, 4096};
    fuzz_run_t whole;
    fuzz_run_t split;
    kg_api_t api;
    bool wants;
    size_t max;
    uint32_t seed;
    kg_err_t rc_whole;
    kg_err_t rc_split;

    if (size < 2) {
        return 0;
    }
    api = (data[0] & 1) ? KG_API_ANTHROPIC : KG_API_OPENAI;
    wants = (data[0] & 2) != 0;
    max = bounds[(data[0] >> 2) & 3];
    seed = (uint32_t)data[1] + 1;
    memset(&whole, 0, sizeof(whole));
    whole.stream = (const char *)data + 2;
    whole.len = size - 2;
    whole.max = max ? max : KG_SSE_MAX_EVENT;
    split = whole;
    rc_whole = fuzz_pass(&whole, 0, api, wants);
    rc_split = fuzz_pass(&split, seed, api, wants);
    if (rc_whole == KG_ERR_NOMEM || rc_split == KG_ERR_NOMEM) {
        return 0;
    }
    FUZZ_CHECK(rc_whole == rc_split);
    FUZZ_CHECK(whole.events == split.events);
    FUZZ_CHECK(whole.hash == split.hash);
    FUZZ_CHECK(whole.dropped == split.dropped);
    FUZZ_CHECK(whole.terminals == split.terminals && whole.terminals <= 1);
    FUZZ_CHECK(whole.usage.content_events == split.usage.content_events);
    FUZZ_CHECK(whole.usage.content_bytes == split.usage.content_bytes);
    FUZZ_CHECK(whole.usage.usage.seen == split.usage.usage.seen);
    FUZZ_CHECK(whole.usage.usage.prompt_tokens ==
               split.usage.usage.prompt_tokens);
    FUZZ_CHECK(whole.usage.usage.completion_tokens ==
               split.usage.usage.completion_tokens);
    FUZZ_CHECK(whole.usage.usage.cached_tokens ==
               split.usage.usage.cached_tokens);
    FUZZ_CHECK(whole.usage.final == split.usage.final);
    FUZZ_CHECK(whole.usage.done == split.usage.done);
    fuzz_check_usage(&whole.usage);
    return 0;
}
