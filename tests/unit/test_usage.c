/* Unit tests of usage extraction (JSON answers, SSE streams) and cost. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/sse.h"
#include "keygate/usage.h"

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- whole JSON answers ---- */

typedef struct json_row {
    const char *name;
    kg_api_t api;
    const char *body;
    bool found;
    int64_t prompt;
    int64_t completion;
    int64_t cached;
} json_row_t;

static const json_row_t json_rows[] = {
    {"openai chat", KG_API_OPENAI,
     "{\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,"
     "\"completion_tokens\":5,\"total_tokens\":15,\"prompt_tokens_details\":"
     "{\"cached_tokens\":3,\"audio_tokens\":0}}}",
     true, 10, 5, 3},
    {"openai completions", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9,"
     "\"total_tokens\":16}}",
     true, 7, 9, 0},
    {"openai embeddings", KG_API_OPENAI,
     "{\"object\":\"list\",\"data\":[],\"usage\":{\"prompt_tokens\":8,"
     "\"total_tokens\":8}}",
     true, 8, 0, 0},
    {"openai responses", KG_API_OPENAI,
     "{\"object\":\"response\",\"usage\":{\"input_tokens\":20,"
     "\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":7,"
     "\"output_tokens_details\":{\"reasoning_tokens\":2},"
     "\"total_tokens\":27}}",
     true, 20, 7, 5},
    {"openai responses nulls fall back", KG_API_OPENAI,
     "{\"usage\":{\"input_tokens\":null,\"prompt_tokens\":4,"
     "\"completion_tokens\":1}}",
     true, 4, 1, 0},
    {"openai usage last", KG_API_OPENAI,
     "{\"choices\":[{\"message\":{\"content\":\"usage\"}}],\"usage\":"
     "{\"prompt_tokens\":1,\"completion_tokens\":2}}",
     true, 1, 2, 0},
    {"anthropic full", KG_API_ANTHROPIC,
     "{\"type\":\"message\",\"usage\":{\"input_tokens\":25,"
     "\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":10,"
     "\"output_tokens\":15}}",
     true, 40, 15, 10},
    {"anthropic plain", KG_API_ANTHROPIC,
     "{\"usage\":{\"input_tokens\":25,\"output_tokens\":15}}", true, 25, 15, 0},
    {"anthropic null cache", KG_API_ANTHROPIC,
     "{\"usage\":{\"input_tokens\":3,\"cache_read_input_tokens\":null,"
     "\"output_tokens\":2}}",
     true, 3, 2, 0},
    {"anthropic body, openai api", KG_API_OPENAI,
     "{\"usage\":{\"input_tokens\":25,\"output_tokens\":15}}", true, 25, 15, 0},
    {"openai body, anthropic api", KG_API_ANTHROPIC,
     "{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5}}", false, 0, 0,
     0},
    {"no usage", KG_API_OPENAI, "{\"choices\":[]}", false, 0, 0, 0},
    {"usage null", KG_API_OPENAI, "{\"usage\":null}", false, 0, 0, 0},
    {"usage string", KG_API_OPENAI, "{\"usage\":\"10\"}", false, 0, 0, 0},
    {"usage array", KG_API_ANTHROPIC, "{\"usage\":[1,2]}", false, 0, 0, 0},
    {"usage empty", KG_API_ANTHROPIC, "{\"usage\":{}}", false, 0, 0, 0},
    {"negative ignored", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":5}}", true, 0, 5,
     0},
    {"all garbage", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":\"10\",\"completion_tokens\":1.5}}", false,
     0, 0, 0},
    {"real ignored", KG_API_ANTHROPIC,
     "{\"usage\":{\"input_tokens\":10.0,\"output_tokens\":true}}", false, 0, 0,
     0},
    {"too large ignored", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":1000000000001,\"completion_tokens\":2}}",
     true, 0, 2, 0},
    {"largest accepted", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":1000000000000,\"completion_tokens\":2}}",
     true, INT64_C(1000000000000), 2, 0},
    {"cached above prompt clamped", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,"
     "\"prompt_tokens_details\":{\"cached_tokens\":9}}}",
     true, 3, 1, 3},
    {"cached garbage", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,"
     "\"prompt_tokens_details\":{\"cached_tokens\":-2}}}",
     true, 3, 1, 0},
    {"details not object", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,"
     "\"prompt_tokens_details\":5}}",
     true, 3, 1, 0},
    {"total below prompt", KG_API_OPENAI,
     "{\"usage\":{\"prompt_tokens\":8,\"total_tokens\":2}}", true, 8, 0, 0},
    {"invalid json", KG_API_OPENAI, "{\"usage\":{\"prompt_tokens\":1", false, 0,
     0, 0},
    {"root array", KG_API_OPENAI, "[{\"usage\":{\"prompt_tokens\":1}}]", false,
     0, 0, 0},
    {"empty", KG_API_ANTHROPIC, "", false, 0, 0, 0},
};

START_TEST(test_from_json)
{
    const json_row_t *row = &json_rows[_i];
    kg_usage_t u;
    bool found;

    memset(&u, 0x5A, sizeof(u));
    found = kg_usage_from_json(row->api, row->body, strlen(row->body), &u);
    ck_assert_msg(found == row->found, "%s: found %d", row->name, found);
    ck_assert(u.seen == found);
    ck_assert_msg(u.prompt_tokens == row->prompt, "%s: prompt %lld", row->name,
                  (long long)u.prompt_tokens);
    ck_assert_msg(u.completion_tokens == row->completion, "%s: completion %lld",
                  row->name, (long long)u.completion_tokens);
    ck_assert_msg(u.cached_tokens == row->cached, "%s: cached %lld", row->name,
                  (long long)u.cached_tokens);
}
END_TEST

START_TEST(test_from_json_not_terminated)
{
    /* body is bounded by len: the bytes after it do not count. */
    const char *body = "{\"usage\":{\"prompt_tokens\":1}}garbage";
    kg_usage_t u;

    ck_assert(kg_usage_from_json(KG_API_OPENAI, body, 29, &u));
    ck_assert_int_eq(u.prompt_tokens, 1);
    ck_assert(!kg_usage_from_json(KG_API_OPENAI, body, 28, &u));
    ck_assert(!kg_usage_from_json(KG_API_OPENAI, NULL, 0, &u));
}
END_TEST

/* ---- streams ---- */

/* One event of a stream, as the SSE parser would deliver it. */
typedef struct ev_row {
    const char *event; /* NULL = no event line */
    const char *data;  /* NULL = no data line */
} ev_row_t;

/* What the stream state says after one event. */
typedef struct seen {
    bool forward;
    bool terminal;
    bool done;
} seen_t;

static void stream_event(kg_usage_stream_t *s, const ev_row_t *row, seen_t *out)
{
    kg_sse_event_t ev = {0};
    bool forward = false;

    ev.raw = "x";
    ev.raw_len = 1;
    ev.event = row->event ? row->event : "";
    ev.event_len = strlen(ev.event);
    ev.has_data = row->data != NULL;
    ev.data = row->data ? row->data : "";
    ev.data_len = strlen(ev.data);
    kg_usage_stream_event(s, &ev, &forward);
    out->forward = forward;
    out->terminal = s->terminal;
    out->done = s->done;
}

#define OPENAI_CHUNK(content)                                            \
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{" \
    "\"index\":0,\"delta\":{\"content\":\"" content "\"}}],\"usage\":null}"

static const ev_row_t openai_stream[] = {
    {NULL, "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
           "\"assistant\",\"content\":\"\"}}],\"usage\":null}"},
    {NULL, OPENAI_CHUNK("Hello")},
    {NULL, NULL}, /* a comment */
    {NULL, OPENAI_CHUNK(" world")},
    {NULL, "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},"
           "\"finish_reason\":\"stop\"}],\"usage\":null}"},
    {NULL, "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,"
           "\"completion_tokens\":2,\"total_tokens\":14,"
           "\"prompt_tokens_details\":{\"cached_tokens\":4}}}"},
    {NULL, "[DONE]"},
};
#define OPENAI_USAGE_EVENT 5
#define OPENAI_DONE_EVENT  6

/*
 * Large answers: a 1 MB embeddings answer and a 64 KB chat answer, usage
 * last, read without a tree; a nested "usage" is not the answer's.
 */
START_TEST(test_from_answer_large)
{
    size_t big = 1024 * 1024;
    char *b = malloc(big + 256);
    size_t k = 0;
    kg_usage_t u;
    bool shape = false;

    ck_assert_ptr_nonnull(b);
    k += (size_t)snprintf(b, 256,
                          "{\"object\":\"list\",\"data\":[{\"object\":"
                          "\"embedding\",\"usage\":{\"prompt_tokens\":999},"
                          "\"embedding\":[");
    while (k < big) {
        memcpy(b + k, "0.0023064255,", 13);
        k += 13;
    }
    k--;
    k += (size_t)snprintf(b + k, 256,
                          "]}],\"model\":\"e\",\"usage\":{\"prompt_tokens\":"
                          "8,\"total_tokens\":8}}");
    ck_assert(kg_usage_from_answer(KG_API_OPENAI, b, k, &u, &shape));
    ck_assert(shape);
    ck_assert_int_eq(u.prompt_tokens, 8);
    ck_assert_int_eq(u.completion_tokens, 0);
    /* Cut short: not the shape of JSON, no usage. */
    ck_assert(!kg_usage_from_answer(KG_API_OPENAI, b, k - 1, &u, &shape));
    ck_assert(!shape);
    ck_assert(!u.seen);
    /* A 64 KB chat answer. */
    k = (size_t)snprintf(b, 256, "{\"choices\":[{\"message\":{\"content\":\"");
    while (k < 64 * 1024) {
        static const char text[] = "Lorem ipsum \\\"dolor\\\" {sit} [amet]. ";

        memcpy(b + k, text, sizeof(text) - 1);
        k += sizeof(text) - 1;
    }
    k += (size_t)snprintf(b + k, 256,
                          "\"}}],\"usage\":{\"prompt_tokens\":10,"
                          "\"completion_tokens\":16000}}");
    ck_assert(kg_usage_from_answer(KG_API_OPENAI, b, k, &u, &shape));
    ck_assert(shape);
    ck_assert_int_eq(u.completion_tokens, 16000);
    /* Not JSON at all; JSON without usage. */
    ck_assert(!kg_usage_from_answer(KG_API_OPENAI, "oops", 4, &u, &shape));
    ck_assert(!shape);
    ck_assert(!kg_usage_from_answer(KG_API_OPENAI, "{\"a\":1}", 7, &u, &shape));
    ck_assert(shape);
    /* A usage object that does not parse: no usage, shape kept. */
    ck_assert(!kg_usage_from_answer(
        KG_API_OPENAI, "{\"usage\":{\"prompt_tokens\":}}", 28, &u, &shape));
    ck_assert(shape);
    free(b);
}
END_TEST

START_TEST(test_stream_openai)
{
    /* _i == 0: the client did not ask for usage; 1: it did. */
    bool wants = _i == 1;
    kg_usage_stream_t s;
    kg_usage_t u;
    seen_t seen;

    kg_usage_stream_init(&s, KG_API_OPENAI, wants);
    s.prompt_estimate = 999;
    for (size_t i = 0; i < NROWS(openai_stream); i++) {
        stream_event(&s, &openai_stream[i], &seen);
        ck_assert_msg(seen.forward == (wants || i != OPENAI_USAGE_EVENT),
                      "event %zu forward %d", i, seen.forward);
        ck_assert_msg(seen.terminal == (i == OPENAI_DONE_EVENT),
                      "event %zu terminal", i);
        ck_assert_msg(seen.done == (i >= OPENAI_DONE_EVENT), "event %zu done",
                      i);
        ck_assert(s.final == (i >= OPENAI_USAGE_EVENT));
    }
    ck_assert(kg_usage_stream_estimate(&s, &u));
    ck_assert(u.seen);
    ck_assert_int_eq(u.prompt_tokens, 12);
    ck_assert_int_eq(u.completion_tokens, 2);
    ck_assert_int_eq(u.cached_tokens, 4);
    ck_assert_int_eq(s.content_events, 2);
    ck_assert_int_eq(s.content_bytes, 11);

    /* After the terminal event: forwarded, nothing changes. */
    stream_event(&s, &openai_stream[OPENAI_USAGE_EVENT], &seen);
    ck_assert(seen.forward);
    ck_assert(!seen.terminal);
    ck_assert(seen.done);
}
END_TEST

START_TEST(test_stream_openai_usage_with_choices)
{
    /* Some servers put usage on the last content chunk: never dropped. */
    static const ev_row_t row = {
        NULL, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],"
              "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}"};
    static const ev_row_t no_choices = {
        NULL, "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}"};
    static const ev_row_t garbage = {
        NULL, "{\"choices\":[],\"usage\":{\"prompt_tokens\":\"x\"}}"};
    static const ev_row_t spaced = {
        NULL, "{ \"choices\" : [ ] , \"usage\" :\n{ \"prompt_tokens\" : 3 ,"
              " \"completion_tokens\" : 1 } }"};
    static const ev_row_t quoted = {
        NULL, "{\"choices\":[],\"say \\\"usage\":{\"a\":1},\"content\":"
              "\"a\",\"usage\":null}"};
    kg_usage_stream_t s;
    seen_t seen;

    kg_usage_stream_init(&s, KG_API_OPENAI, false);
    stream_event(&s, &row, &seen);
    ck_assert(seen.forward);
    ck_assert(s.final);
    ck_assert_int_eq(s.usage.prompt_tokens, 3);
    /* The include_usage chunk is dropped even when its counts are bad. */
    kg_usage_stream_init(&s, KG_API_OPENAI, false);
    stream_event(&s, &garbage, &seen);
    ck_assert(!seen.forward);
    ck_assert(!s.final);
    /* Whitespace around the members is allowed. */
    kg_usage_stream_init(&s, KG_API_OPENAI, false);
    stream_event(&s, &spaced, &seen);
    ck_assert(!seen.forward);
    ck_assert(s.final);
    ck_assert_int_eq(s.usage.completion_tokens, 1);
    /* A key ending in "usage" fools the scan, not jansson. */
    kg_usage_stream_init(&s, KG_API_OPENAI, false);
    stream_event(&s, &quoted, &seen);
    ck_assert(seen.forward);
    ck_assert(!s.final);
    ck_assert(!s.usage.seen);
    ck_assert_int_eq(s.content_events, 1);
    /* Without a choices array it is not the include_usage chunk either. */
    kg_usage_stream_init(&s, KG_API_OPENAI, false);
    stream_event(&s, &no_choices, &seen);
    ck_assert(seen.forward);
    ck_assert(s.final);
}
END_TEST

START_TEST(test_stream_openai_content_kinds)
{
    static const ev_row_t rows[] = {
        /* completions */
        {NULL, "{\"choices\":[{\"text\":\"abcd\",\"index\":0}]}"},
        /* tool call arguments */
        {NULL, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,"
               "\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}"},
        /* refusal, reasoning */
        {NULL, "{\"choices\":[{\"delta\":{\"refusal\":\"no\"}}]}"},
        {NULL, "{\"choices\":[{\"delta\":{\"reasoning_content\":\"hmm\"}}]}"},
        /* The scan does not check the shape around a member. */
        {NULL, "{\"choices\":{\"delta\":{\"content\":\"x\"}}}"},
        /* not content: role only, garbage, wrong types */
        {NULL, "{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}"},
        {NULL, "not json"},
        {NULL, "{\"choices\":[{\"delta\":{\"content\":\"unterminated}}]}"},
        {NULL, "{\"choices\":[{\"delta\":{\"role\":\"content\"}}]}"},
        {NULL, "{\"choices\":[{\"delta\":{\"content\":5}}]}"},
        {NULL, "[1,2,3]"},
        {NULL, ""},
    };
    kg_usage_stream_t s;
    seen_t seen;

    kg_usage_stream_init(&s, KG_API_OPENAI, false);
    for (size_t i = 0; i < NROWS(rows); i++) {
        stream_event(&s, &rows[i], &seen);
        ck_assert(seen.forward);
        ck_assert(!seen.terminal);
    }
    /* Escapes count as written: {\"a\":1} is 9 bytes. */
    ck_assert_int_eq(s.content_events, 5);
    ck_assert_int_eq(s.content_bytes, 4 + 9 + 2 + 3 + 1);
    ck_assert(!s.usage.seen);
    ck_assert(!s.done);
}
END_TEST

static const ev_row_t responses_stream[] = {
    {"response.created",
     "{\"type\":\"response.created\",\"response\":{\"usage\":null}}"},
    {"response.output_text.delta",
     "{\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}"},
    {"response.output_text.delta",
     "{\"type\":\"response.output_text.delta\",\"delta\":\" there\"}"},
    {"response.output_text.done",
     "{\"type\":\"response.output_text.done\",\"text\":\"Hi there\"}"},
    {"response.completed",
     "{\"type\":\"response.completed\",\"response\":{\"usage\":{"
     "\"input_tokens\":30,\"input_tokens_details\":{\"cached_tokens\":8},"
     "\"output_tokens\":3,\"total_tokens\":33}}}"},
};

START_TEST(test_stream_responses)
{
    kg_usage_stream_t s;
    kg_usage_t u;
    seen_t seen;
    size_t last = NROWS(responses_stream) - 1;

    kg_usage_stream_init(&s, KG_API_OPENAI, false);
    for (size_t i = 0; i <= last; i++) {
        stream_event(&s, &responses_stream[i], &seen);
        ck_assert(seen.forward);
        ck_assert(seen.terminal == (i == last));
        ck_assert(seen.done == (i == last));
    }
    ck_assert_int_eq(s.content_events, 2);
    ck_assert(kg_usage_stream_estimate(&s, &u));
    ck_assert_int_eq(u.prompt_tokens, 30);
    ck_assert_int_eq(u.completion_tokens, 3);
    ck_assert_int_eq(u.cached_tokens, 8);
}
END_TEST

static const ev_row_t anthropic_stream[] = {
    {"message_start",
     "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":"
     "[],\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":5,"
     "\"cache_read_input_tokens\":10,\"output_tokens\":1}}}"},
    {"content_block_start",
     "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{"
     "\"type\":\"text\",\"text\":\"\"}}"},
    {"ping", "{\"type\": \"ping\"}"},
    {"content_block_delta",
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
     "\"text_delta\",\"text\":\"Hello\"}}"},
    {"content_block_delta",
     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
     "\"text_delta\",\"text\":\" world!\"}}"},
    {"content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}"},
    {"message_delta",
     "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
     "\"usage\":{\"output_tokens\":15}}"},
    {"message_stop", "{\"type\":\"message_stop\"}"},
};
#define ANTHROPIC_DELTA_EVENT 6
#define ANTHROPIC_STOP_EVENT  7

START_TEST(test_stream_anthropic)
{
    kg_usage_stream_t s;
    kg_usage_t u;
    seen_t seen;

    kg_usage_stream_init(&s, KG_API_ANTHROPIC, false);
    for (size_t i = 0; i < NROWS(anthropic_stream); i++) {
        stream_event(&s, &anthropic_stream[i], &seen);
        ck_assert(seen.forward);
        ck_assert(seen.terminal == (i == ANTHROPIC_STOP_EVENT));
        ck_assert(seen.done == (i >= ANTHROPIC_STOP_EVENT));
        ck_assert(s.final == (i >= ANTHROPIC_DELTA_EVENT));
        ck_assert(s.usage.seen);
    }
    ck_assert(kg_usage_stream_estimate(&s, &u));
    ck_assert_int_eq(u.prompt_tokens, 40);
    ck_assert_int_eq(u.completion_tokens, 15);
    ck_assert_int_eq(u.cached_tokens, 10);
    ck_assert_int_eq(s.content_events, 2);
    ck_assert_int_eq(s.content_bytes, 12);
}
END_TEST

START_TEST(test_stream_anthropic_cumulative)
{
    /* message_delta counts are cumulative: the largest wins. */
    static const ev_row_t rows[] = {
        {"message_start", "{\"type\":\"message_start\",\"message\":{"
                          "\"usage\":{\"input_tokens\":9,\"output_tokens\":"
                          "1}}}"},
        {"message_delta", "{\"type\":\"message_delta\",\"usage\":{"
                          "\"output_tokens\":30}}"},
        {"message_delta", "{\"type\":\"message_delta\",\"usage\":{"
                          "\"output_tokens\":20,\"input_tokens\":11}}"},
        {"message_delta", "{\"type\":\"message_delta\",\"usage\":{"
                          "\"output_tokens\":\"99\"}}"},
        /* No event line: the data's type decides. */
        {NULL, "{\"type\":\"content_block_delta\",\"delta\":{\"type\":"
               "\"input_json_delta\",\"partial_json\":\"{\\\"k\\\"\"}}"},
        {NULL, "{\"type\":\"content_block_delta\",\"delta\":{\"type\":"
               "\"thinking_delta\",\"thinking\":\"abc\"}}"},
        {"error", "{\"type\":\"error\",\"error\":{\"type\":"
                  "\"overloaded_error\"}}"},
        {NULL, "{\"type\":\"message_stop\"}"},
    };
    kg_usage_stream_t s;
    kg_usage_t u;
    seen_t seen;

    kg_usage_stream_init(&s, KG_API_ANTHROPIC, false);
    for (size_t i = 0; i < NROWS(rows); i++) {
        stream_event(&s, &rows[i], &seen);
        ck_assert(seen.forward);
        ck_assert(seen.terminal == (i == NROWS(rows) - 1));
    }
    ck_assert(kg_usage_stream_estimate(&s, &u));
    ck_assert_int_eq(u.prompt_tokens, 11);
    ck_assert_int_eq(u.completion_tokens, 30);
    ck_assert_int_eq(s.content_events, 2);
    ck_assert_int_eq(s.content_bytes, 6 + 3);
}
END_TEST

/* An interrupted stream: the first n events only. */
typedef struct cut_row {
    const char *name;
    kg_api_t api;
    const ev_row_t *events;
    size_t n;
    int64_t prompt_estimate;
    bool exact;
    int64_t prompt;
    int64_t completion;
    int64_t cached;
} cut_row_t;

static const ev_row_t one_char[] = {
    {NULL, OPENAI_CHUNK("a")},
};

static const cut_row_t cut_rows[] = {
    /* "Hello" + " world": 2 events, 11 bytes -> max(2, 3) = 3. */
    {"openai after content", KG_API_OPENAI, openai_stream, 5, 50, false, 50, 3,
     0},
    {"openai before content", KG_API_OPENAI, openai_stream, 1, 50, false, 50, 0,
     0},
    {"openai nothing", KG_API_OPENAI, openai_stream, 0, 50, false, 50, 0, 0},
    {"openai no estimate", KG_API_OPENAI, openai_stream, 4, 0, false, 0, 3, 0},
    {"openai negative estimate", KG_API_OPENAI, openai_stream, 4, -5, false, 0,
     3, 0},
    {"openai one char", KG_API_OPENAI, one_char, 1, 10, false, 10, 1, 0},
    {"openai after usage", KG_API_OPENAI, openai_stream, 6, 50, true, 12, 2, 4},
    /* message_start reported 40 in (10 cached) and 1 out; the deltas
     * "Hello" + " world!" are 12 bytes -> 3. */
    {"anthropic after deltas", KG_API_ANTHROPIC, anthropic_stream, 5, 7, false,
     40, 3, 10},
    {"anthropic after start", KG_API_ANTHROPIC, anthropic_stream, 1, 7, false,
     40, 1, 10},
    {"anthropic nothing", KG_API_ANTHROPIC, anthropic_stream, 0, 7, false, 7, 0,
     0},
    {"anthropic after message_delta", KG_API_ANTHROPIC, anthropic_stream, 7, 7,
     true, 40, 15, 10},
    {"responses after deltas", KG_API_OPENAI, responses_stream, 3, 20, false,
     20, 2, 0},
};

START_TEST(test_stream_interrupted)
{
    const cut_row_t *row = &cut_rows[_i];
    kg_usage_stream_t s;
    kg_usage_t u;
    seen_t seen;
    bool exact;

    kg_usage_stream_init(&s, row->api, false);
    s.prompt_estimate = row->prompt_estimate;
    for (size_t i = 0; i < row->n; i++) {
        stream_event(&s, &row->events[i], &seen);
    }
    exact = kg_usage_stream_estimate(&s, &u);
    ck_assert_msg(exact == row->exact, "%s: exact %d", row->name, exact);
    ck_assert_msg(u.prompt_tokens == row->prompt, "%s: prompt %lld", row->name,
                  (long long)u.prompt_tokens);
    ck_assert_msg(u.completion_tokens == row->completion, "%s: completion %lld",
                  row->name, (long long)u.completion_tokens);
    ck_assert_msg(u.cached_tokens == row->cached, "%s: cached %lld", row->name,
                  (long long)u.cached_tokens);
    if (s.content_events > 0) {
        ck_assert_int_gt(u.completion_tokens, 0);
    }
}
END_TEST

START_TEST(test_stream_init_resets)
{
    kg_usage_stream_t s;
    seen_t seen;

    memset(&s, 0x7F, sizeof(s));
    kg_usage_stream_init(&s, KG_API_ANTHROPIC, true);
    ck_assert(s.api == KG_API_ANTHROPIC);
    ck_assert(s.client_wants_usage);
    ck_assert(!s.done && !s.terminal && !s.final && !s.usage.seen);
    ck_assert_int_eq(s.content_events, 0);
    ck_assert_int_eq(s.prompt_estimate, 0);
    /* An OpenAI [DONE] means nothing to an Anthropic stream. */
    stream_event(&s, &openai_stream[OPENAI_DONE_EVENT], &seen);
    ck_assert(seen.forward && !seen.done);
}
END_TEST

/* ---- cost ---- */

#define T12 INT64_C(1000000000000)

typedef struct cost_row {
    const char *name;
    int64_t prompt, completion, cached;
    int64_t in, out, cached_price;
    int64_t cost;
} cost_row_t;

static const cost_row_t cost_rows[] = {
    {"zero", 0, 0, 0, 2500000, 10000000, -1, 0},
    {"1M input at 2.50", 1000000, 0, 0, 2500000, 10000000, -1, 2500000},
    {"1M output at 10", 0, 1000000, 0, 2500000, 10000000, -1, 10000000},
    {"one token rounds up", 1, 0, 0, 1, 0, -1, 1},
    {"one token at 2.50 rounds up", 1, 0, 0, 2500000, 0, -1, 3},
    {"rounded once over the sum", 1, 1, 0, 500000, 500000, -1, 1},
    {"mixed", 1000, 200, 400, 3000000, 15000000, 1500000, 5400},
    {"no cached price: input price", 1000, 0, 400, 3000000, 0, -1, 3000},
    {"free cached", 1000, 0, 400, 3000000, 0, 0, 1800},
    {"cached above prompt clamped", 10, 0, 50, 1000000, 0, 0, 0},
    {"negative tokens", -5, -7, -1, 1000000, 1000000, -1, 0},
    {"negative prices", 100, 100, 0, -1, -1, -1, 0},
    {"bounds", T12, T12, 0, T12, T12, -1, INT64_C(2000000000000000000)},
    {"bounds cached", T12, T12, T12 / 2, T12, T12, T12,
     INT64_C(2000000000000000000)},
    {"above bounds clamped", INT64_MAX, INT64_MAX, 0, INT64_MAX, INT64_MAX,
     INT64_MAX, INT64_C(2000000000000000000)},
    {"bounds minus one", T12 - 1, T12 - 1, 0, T12, T12, -1,
     INT64_C(2000000000000000000) - 2000000},
    {"odd", 999999, 1, 1, 1000001, 3, 7, 1000000},
};

START_TEST(test_cost)
{
    const cost_row_t *row = &cost_rows[_i];
    kg_usage_t u = {row->prompt, row->completion, row->cached, true};
    kg_price_t p = {row->in, row->out, row->cached_price};
    int64_t cost = kg_usage_cost(&u, &p);

    ck_assert_msg(cost == row->cost, "%s: %lld, not %lld", row->name,
                  (long long)cost, (long long)row->cost);
}
END_TEST

/* A 64-bit LCG: reproducible pseudo-random numbers for the property test. */
static uint64_t lcg_next(uint64_t *state)
{
    *state =
        *state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
    return *state >> 11;
}

START_TEST(test_cost_matches_wide_math)
{
    uint64_t st = 42;

    for (int i = 0; i < 200000; i++) {
        /* Spread sizes over many magnitudes up to the bounds. */
        int64_t v[6];
        unsigned __int128 sum;
        int64_t want;
        kg_usage_t u;
        kg_price_t p;

        for (int k = 0; k < 6; k++) {
            uint64_t mag = lcg_next(&st) % 41;
            uint64_t r = lcg_next(&st);

            v[k] = (int64_t)(mag >= 40 ? (uint64_t)T12
                                       : r % ((uint64_t)1 << mag) + 0) %
                   (T12 + 1);
        }
        u.prompt_tokens = v[0];
        u.completion_tokens = v[1];
        u.cached_tokens = v[2] % (v[0] + 1);
        u.seen = true;
        p.input_per_mtok = v[3];
        p.output_per_mtok = v[4];
        p.cached_input_per_mtok = i % 3 == 0 ? -1 : v[5];
        sum = (unsigned __int128)(u.prompt_tokens - u.cached_tokens) *
                  (uint64_t)p.input_per_mtok +
              (unsigned __int128)u.cached_tokens *
                  (uint64_t)(p.cached_input_per_mtok < 0
                                 ? p.input_per_mtok
                                 : p.cached_input_per_mtok) +
              (unsigned __int128)u.completion_tokens *
                  (uint64_t)p.output_per_mtok;
        want = (int64_t)((sum + 999999) / 1000000);
        ck_assert_msg(kg_usage_cost(&u, &p) == want, "row %d", i);
    }
}
END_TEST

static Suite *usage_suite(void)
{
    Suite *s = suite_create("usage");
    TCase *tc = tcase_create("usage");

    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_from_json, 0, (int)NROWS(json_rows));
    tcase_add_test(tc, test_from_json_not_terminated);
    tcase_add_test(tc, test_from_answer_large);
    tcase_add_loop_test(tc, test_stream_openai, 0, 2);
    tcase_add_test(tc, test_stream_openai_usage_with_choices);
    tcase_add_test(tc, test_stream_openai_content_kinds);
    tcase_add_test(tc, test_stream_responses);
    tcase_add_test(tc, test_stream_anthropic);
    tcase_add_test(tc, test_stream_anthropic_cumulative);
    tcase_add_loop_test(tc, test_stream_interrupted, 0, (int)NROWS(cut_rows));
    tcase_add_test(tc, test_stream_init_resets);
    tcase_add_loop_test(tc, test_cost, 0, (int)NROWS(cost_rows));
    tcase_add_test(tc, test_cost_matches_wide_math);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(usage_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
