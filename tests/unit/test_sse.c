/* Unit tests of the incremental Server-Sent Events parser. */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/sse.h"

#define NROWS(a) (sizeof(a) / sizeof((a)[0]))

/* Room for every event a test stream holds. */
#define REC_MAX    64
#define REC_TEXT   4096
#define STREAM_MAX 8192

/* One delivered event, copied out of the callback. */
typedef struct rec_event {
    char raw[REC_TEXT];
    size_t raw_len;
    char event[REC_TEXT];
    size_t event_len;
    char data[REC_TEXT];
    size_t data_len;
    bool has_data;
} rec_event_t;

/* What a stream produced: its events, and what finish left. */
typedef struct rec {
    rec_event_t ev[REC_MAX];
    size_t n;
    char rest[REC_TEXT];
    size_t rest_len;
    bool partial;
    int stop_at; /* fail the callback on this event (-1: never) */
} rec_t;

static void rec_copy(char *dst, size_t *dst_len, const char *src, size_t len)
{
    ck_assert_uint_lt(len, REC_TEXT);
    if (len > 0) {
        memcpy(dst, src, len);
    }
    dst[len] = '\0';
    *dst_len = len;
}

static kg_err_t rec_cb(const kg_sse_event_t *ev, void *ud)
{
    rec_t *r = ud;
    rec_event_t *e;

    if (r->stop_at >= 0 && (size_t)r->stop_at == r->n) {
        return KG_ERR_INTERNAL;
    }
    ck_assert_uint_lt(r->n, REC_MAX);
    e = &r->ev[r->n++];
    ck_assert_ptr_nonnull(ev->event);
    rec_copy(e->raw, &e->raw_len, ev->raw, ev->raw_len);
    rec_copy(e->event, &e->event_len, ev->event, ev->event_len);
    if (ev->has_data) {
        rec_copy(e->data, &e->data_len, ev->data, ev->data_len);
    } else {
        ck_assert_uint_eq(ev->data_len, 0);
        e->data[0] = '\0';
        e->data_len = 0;
    }
    e->has_data = ev->has_data;
    return KG_OK;
}

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof(*r));
    r->stop_at = -1;
}

static void rec_finish(kg_sse_parser_t *p, rec_t *r)
{
    const char *rest = NULL;
    size_t rest_len = 0;

    ck_assert_int_eq(kg_sse_finish(p, rec_cb, r, &r->partial, &rest, &rest_len),
                     KG_OK);
    ck_assert(r->partial == (rest_len > 0));
    rec_copy(r->rest, &r->rest_len, rest ? rest : "", rest_len);
    ck_assert_uint_eq(kg_sse_pending(p), 0);
}

/* Feed s in chunks cut at the given positions (ascending), then finish. */
static void rec_run(const char *s, size_t len, const size_t *cuts, size_t ncuts,
                    rec_t *r)
{
    kg_sse_parser_t *p = NULL;
    size_t from = 0;

    rec_init(r);
    ck_assert_int_eq(kg_sse_parser_new(0, &p), KG_OK);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;

        ck_assert_int_eq(kg_sse_feed(p, s + from, to - from, rec_cb, r), KG_OK);
        from = to;
    }
    rec_finish(p, r);
    kg_sse_parser_free(&p);
    ck_assert_ptr_null(p);
}

static void rec_assert_same(const rec_t *a, const rec_t *b, size_t cut)
{
    ck_assert_msg(a->n == b->n, "cut %zu: %zu events, not %zu", cut, b->n,
                  a->n);
    for (size_t i = 0; i < a->n; i++) {
        const rec_event_t *x = &a->ev[i];
        const rec_event_t *y = &b->ev[i];

        ck_assert_msg(x->raw_len == y->raw_len &&
                          memcmp(x->raw, y->raw, x->raw_len) == 0,
                      "cut %zu: event %zu raw differs", cut, i);
        ck_assert_msg(x->event_len == y->event_len &&
                          memcmp(x->event, y->event, x->event_len) == 0,
                      "cut %zu: event %zu name differs", cut, i);
        ck_assert_msg(x->has_data == y->has_data &&
                          x->data_len == y->data_len &&
                          memcmp(x->data, y->data, x->data_len) == 0,
                      "cut %zu: event %zu data differs", cut, i);
    }
    ck_assert(a->partial == b->partial);
    ck_assert(a->rest_len == b->rest_len &&
              memcmp(a->rest, b->rest, a->rest_len) == 0);
}

/* The raw bytes of every event, then the rest, give back the stream. */
static void rec_assert_lossless(const rec_t *r, const char *s, size_t len)
{
    size_t off = 0;

    for (size_t i = 0; i < r->n; i++) {
        ck_assert_uint_le(off + r->ev[i].raw_len, len);
        ck_assert(memcmp(s + off, r->ev[i].raw, r->ev[i].raw_len) == 0);
        off += r->ev[i].raw_len;
    }
    ck_assert_uint_eq(off + r->rest_len, len);
    ck_assert(memcmp(s + off, r->rest, r->rest_len) == 0);
}

static const char sse_openai[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":"
    "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],"
    "\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"Hello\"}}],\"usage\":null}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\" world\"}}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,"
    "\"completion_tokens\":2,\"total_tokens\":14,\"prompt_tokens_details\":"
    "{\"cached_tokens\":4}}}\n\n"
    "data: [DONE]\n\n";

static const char sse_anthropic[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
    "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"
    "\"model\":\"claude\",\"usage\":{\"input_tokens\":25,"
    "\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":10,"
    "\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\" world!\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}"
    "\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

/* A sample stream with its line endings turned into eol. */
typedef struct sample_row {
    const char *name;
    const char *text;
    const char *eol;
    size_t events;
    const char *first_event; /* name of the first event */
    const char *last_data;   /* data of the last event */
} sample_row_t;

static const sample_row_t sample_rows[] = {
    {"openai LF", sse_openai, "\n", 7, "", "[DONE]"},
    {"openai CRLF", sse_openai, "\r\n", 7, "", "[DONE]"},
    {"openai CR", sse_openai, "\r", 7, "", "[DONE]"},
    {"anthropic LF", sse_anthropic, "\n", 8, "message_start",
     "{\"type\":\"message_stop\"}"},
    {"anthropic CRLF", sse_anthropic, "\r\n", 8, "message_start",
     "{\"type\":\"message_stop\"}"},
    {"anthropic CR", sse_anthropic, "\r", 8, "message_start",
     "{\"type\":\"message_stop\"}"},
};

/* text with every "\n" replaced by eol, into out (STREAM_MAX bytes). */
static size_t sample_build(const char *text, const char *eol, char *out)
{
    size_t n = 0;
    size_t el = strlen(eol);

    for (const char *c = text; *c; c++) {
        ck_assert_uint_lt(n + el, STREAM_MAX);
        if (*c == '\n') {
            memcpy(out + n, eol, el);
            n += el;
        } else {
            out[n++] = *c;
        }
    }
    return n;
}

START_TEST(test_split_everywhere)
{
    const sample_row_t *row = &sample_rows[_i];
    static char s[STREAM_MAX];
    static rec_t whole;
    static rec_t other;
    size_t len = sample_build(row->text, row->eol, s);
    size_t cuts[STREAM_MAX];

    rec_run(s, len, NULL, 0, &whole);
    ck_assert_msg(whole.n == row->events, "%s: %zu events", row->name, whole.n);
    ck_assert(!whole.partial);
    ck_assert_str_eq(whole.ev[0].event, row->first_event);
    ck_assert_str_eq(whole.ev[whole.n - 1].data, row->last_data);
    rec_assert_lossless(&whole, s, len);

    /* Two chunks, cut at every position. */
    for (size_t cut = 0; cut <= len; cut++) {
        rec_run(s, len, &cut, 1, &other);
        rec_assert_same(&whole, &other, cut);
    }
    /* One byte at a time. */
    for (size_t i = 0; i < len; i++) {
        cuts[i] = i + 1;
    }
    rec_run(s, len, cuts, len - 1, &other);
    rec_assert_same(&whole, &other, 1);
    /* Three chunks at a spread of positions. */
    for (size_t a = 0; a <= len; a += 7) {
        for (size_t b = a; b <= len; b += 13) {
            size_t two[2] = {a, b};

            rec_run(s, len, two, 2, &other);
            rec_assert_same(&whole, &other, a * 100000 + b);
        }
    }
}
END_TEST

/* Fields of one stream fed whole. */
typedef struct field_row {
    const char *in;
    size_t events;
    const char *event;   /* of event #pick */
    const char *data;    /* of event #pick; NULL = no data lines */
    size_t pick;         /* which event to look at */
    const char *partial; /* what finish leaves, "" = nothing */
} field_row_t;

static const field_row_t field_rows[] = {
    {"data: hello\n\n", 1, "", "hello", 0, ""},
    {"data:hello\n\n", 1, "", "hello", 0, ""},
    {"data:  two spaces\n\n", 1, "", " two spaces", 0, ""},
    {"data: a\ndata: b\ndata\n\n", 1, "", "a\nb\n", 0, ""},
    {"data: a\r\ndata: b\r\n\r\n", 1, "", "a\nb", 0, ""},
    {"data: a\rdata: b\r\r", 1, "", "a\nb", 0, ""},
    {"data: a\r\n\ndata: b\n\r\n", 2, "", "b", 1, ""},
    {"event: one\nevent: two\ndata: x\n\n", 1, "two", "x", 0, ""},
    {"event:\ndata: x\n\n", 1, "", "x", 0, ""},
    {": comment\nid: 7\nretry: 100\nfoo: bar\ndata: x\n\n", 1, "", "x", 0, ""},
    {": keep-alive\n\n", 1, "", NULL, 0, ""},
    {"event: ping\n\n", 1, "ping", NULL, 0, ""},
    {"\n\ndata: x\n\n", 3, "", "x", 2, ""},
    {"data\n\n", 1, "", "", 0, ""},
    {"data:\n\n", 1, "", "", 0, ""},
    {"data: a:b:c\n\n", 1, "", "a:b:c", 0, ""},
    {"\xEF\xBB\xBF"
     "data: bom\n\n",
     1, "", "bom", 0, ""},
    {"data: x\n\ndata: tail\n", 1, "", "x", 0, "data: tail\n"},
    {"data: x\n\ndata: tail", 1, "", "x", 0, "data: tail"},
    {"data: held\r\r", 1, "", "held", 0, ""},
    {"data: x\x00y\n\n", 1, "", "x\x00y", 0, ""},
};

START_TEST(test_fields)
{
    const field_row_t *row = &field_rows[_i];
    static rec_t r;
    /* Embedded NULs: the last row's input is 12 bytes. */
    size_t len = strlen(row->in);
    const rec_event_t *e;

    if (_i == (int)NROWS(field_rows) - 1) {
        len = 11;
    }
    rec_run(row->in, len, NULL, 0, &r);
    ck_assert_msg(r.n == row->events, "row %d: %zu events", _i, r.n);
    e = &r.ev[row->pick];
    ck_assert_str_eq(e->event, row->event);
    if (row->data == NULL) {
        ck_assert(!e->has_data);
    } else {
        size_t dl = _i == (int)NROWS(field_rows) - 1 ? 3 : strlen(row->data);

        ck_assert(e->has_data);
        ck_assert_uint_eq(e->data_len, dl);
        ck_assert(memcmp(e->data, row->data, dl) == 0);
    }
    ck_assert_str_eq(r.rest, row->partial);
    rec_assert_lossless(&r, row->in, len);
}
END_TEST

START_TEST(test_held_cr)
{
    kg_sse_parser_t *p = NULL;
    static rec_t r;

    /* A final CR is held until the next byte: LF joins the event. */
    rec_init(&r);
    ck_assert_int_eq(kg_sse_parser_new(0, &p), KG_OK);
    ck_assert_int_eq(kg_sse_feed(p, "data: x\r\r", 9, rec_cb, &r), KG_OK);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_uint_eq(kg_sse_pending(p), 9);
    ck_assert_int_eq(kg_sse_feed(p, "\ndata: y\n\n", 10, rec_cb, &r), KG_OK);
    ck_assert_uint_eq(r.n, 2);
    ck_assert_str_eq(r.ev[0].raw, "data: x\r\r\n");
    ck_assert_str_eq(r.ev[1].raw, "data: y\n\n");

    /* Another byte: the event is delivered without it. */
    ck_assert_int_eq(kg_sse_feed(p, "data: z\r\r", 9, rec_cb, &r), KG_OK);
    ck_assert_int_eq(kg_sse_feed(p, "d", 1, rec_cb, &r), KG_OK);
    ck_assert_uint_eq(r.n, 3);
    ck_assert_str_eq(r.ev[2].raw, "data: z\r\r");
    ck_assert_uint_eq(kg_sse_pending(p), 1);
    rec_finish(p, &r);
    ck_assert(r.partial);
    ck_assert_str_eq(r.rest, "d");

    /* After finish the parser takes a new stream. */
    ck_assert_int_eq(kg_sse_feed(p, "data: n\n\n", 9, rec_cb, &r), KG_OK);
    ck_assert_uint_eq(r.n, 4);
    ck_assert_str_eq(r.ev[3].data, "n");
    kg_sse_parser_free(&p);
    kg_sse_parser_free(&p);
    kg_sse_parser_free(NULL);
}
END_TEST

START_TEST(test_pending)
{
    kg_sse_parser_t *p = NULL;
    static rec_t r;

    rec_init(&r);
    ck_assert_int_eq(kg_sse_parser_new(0, &p), KG_OK);
    ck_assert_uint_eq(kg_sse_pending(p), 0);
    ck_assert_int_eq(kg_sse_feed(p, NULL, 0, rec_cb, &r), KG_OK);
    ck_assert_int_eq(kg_sse_feed(p, "data: a\n\ndata: ", 15, rec_cb, &r),
                     KG_OK);
    ck_assert_uint_eq(r.n, 1);
    ck_assert_uint_eq(kg_sse_pending(p), 6);
    ck_assert_int_eq(kg_sse_feed(p, "bc\n", 3, rec_cb, &r), KG_OK);
    ck_assert_uint_eq(kg_sse_pending(p), 9);
    ck_assert_int_eq(kg_sse_feed(p, "\n", 1, rec_cb, &r), KG_OK);
    ck_assert_uint_eq(kg_sse_pending(p), 0);
    ck_assert_uint_eq(r.n, 2);
    ck_assert_str_eq(r.ev[1].data, "bc");
    ck_assert_str_eq(r.ev[1].raw, "data: bc\n\n");
    rec_finish(p, &r);
    ck_assert(!r.partial);
    /* An empty stream. */
    rec_finish(p, &r);
    ck_assert(!r.partial);
    kg_sse_parser_free(&p);
}
END_TEST

/* Events past the bound, in one chunk or across chunks. */
typedef struct bound_row {
    size_t max;
    size_t data_len; /* bytes of "x" after "data: " */
    bool split;      /* feed one byte at a time */
    bool terminated; /* end with "\n\n" */
    kg_err_t rc;
} bound_row_t;

static const bound_row_t bound_rows[] = {
    {64, 56, false, true, KG_OK}, /* 6 + 56 + 2 = 64 */
    {64, 56, true, true, KG_OK},  /* the same, split */
    {64, 57, false, true, KG_ERR_BAD_GATEWAY},
    {64, 57, true, true, KG_ERR_BAD_GATEWAY},
    {64, 100, false, false, KG_ERR_BAD_GATEWAY},
    {64, 100, true, false, KG_ERR_BAD_GATEWAY},
    {64, 58, false, false, KG_OK}, /* 64 kept bytes: still fits */
    {64, 59, false, false, KG_ERR_BAD_GATEWAY},
};

START_TEST(test_bound)
{
    const bound_row_t *row = &bound_rows[_i];
    kg_sse_parser_t *p = NULL;
    static rec_t r;
    char s[256];
    size_t len = 0;
    kg_err_t rc = KG_OK;

    rec_init(&r);
    memcpy(s, "data: ", 6);
    len = 6;
    memset(s + len, 'x', row->data_len);
    len += row->data_len;
    if (row->terminated) {
        memcpy(s + len, "\n\n", 2);
        len += 2;
    }
    ck_assert_int_eq(kg_sse_parser_new(row->max, &p), KG_OK);
    if (row->split) {
        for (size_t i = 0; i < len && rc == KG_OK; i++) {
            rc = kg_sse_feed(p, s + i, 1, rec_cb, &r);
        }
    } else {
        rc = kg_sse_feed(p, s, len, rec_cb, &r);
    }
    ck_assert_int_eq(rc, row->rc);
    ck_assert_uint_le(kg_sse_pending(p), row->max);
    if (rc != KG_OK) {
        bool partial = true;

        ck_assert_uint_eq(r.n, 0);
        /* Sticky: the stream is broken. */
        ck_assert_int_eq(kg_sse_feed(p, "\n\n", 2, rec_cb, &r), rc);
        ck_assert_int_eq(kg_sse_finish(p, rec_cb, &r, &partial, NULL, NULL),
                         rc);
        ck_assert(!partial);
    } else if (row->terminated) {
        ck_assert_uint_eq(r.n, 1);
        ck_assert_uint_eq(r.ev[0].data_len, row->data_len);
    }
    kg_sse_parser_free(&p);
}
END_TEST

START_TEST(test_default_bound)
{
    kg_sse_parser_t *p = NULL;
    static rec_t r;
    size_t len = KG_SSE_MAX_EVENT + 16;
    char *s = malloc(len);
    size_t off;

    ck_assert_ptr_nonnull(s);
    rec_init(&r);
    memset(s, 'y', len);
    memcpy(s, "data: ", 6);
    ck_assert_int_eq(kg_sse_parser_new(0, &p), KG_OK);
    /* Accepted in 4 KiB chunks until the bound is crossed. */
    for (off = 0; off < len; off += 4096) {
        size_t n = len - off < 4096 ? len - off : 4096;
        kg_err_t rc = kg_sse_feed(p, s + off, n, rec_cb, &r);

        if (rc != KG_OK) {
            ck_assert_int_eq(rc, KG_ERR_BAD_GATEWAY);
            break;
        }
    }
    ck_assert_uint_lt(off, len);
    ck_assert_uint_le(kg_sse_pending(p), KG_SSE_MAX_EVENT);
    kg_sse_parser_free(&p);
    free(s);
}
END_TEST

START_TEST(test_callback_stops)
{
    kg_sse_parser_t *p = NULL;
    static rec_t r;
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    bool partial = true;

    rec_init(&r);
    r.stop_at = 1;
    ck_assert_int_eq(kg_sse_parser_new(0, &p), KG_OK);
    ck_assert_int_eq(kg_sse_feed(p, s, strlen(s), rec_cb, &r), KG_ERR_INTERNAL);
    ck_assert_uint_eq(r.n, 1);
    ck_assert_int_eq(kg_sse_feed(p, s, strlen(s), rec_cb, &r), KG_ERR_INTERNAL);
    ck_assert_uint_eq(r.n, 1);
    ck_assert_int_eq(kg_sse_finish(p, rec_cb, &r, &partial, NULL, NULL),
                     KG_ERR_INTERNAL);
    ck_assert(!partial);
    kg_sse_parser_free(&p);

    /* A callback failing on an event held for its CR, at finish. */
    rec_init(&r);
    r.stop_at = 0;
    ck_assert_int_eq(kg_sse_parser_new(0, &p), KG_OK);
    ck_assert_int_eq(kg_sse_feed(p, "data: x\r\r", 9, rec_cb, &r), KG_OK);
    ck_assert_int_eq(kg_sse_finish(p, rec_cb, &r, &partial, NULL, NULL),
                     KG_ERR_INTERNAL);
    kg_sse_parser_free(&p);
}
END_TEST

START_TEST(test_many_data_lines)
{
    /* Enough long data lines that the joined data buffer has to grow. */
    static char s[STREAM_MAX];
    static char want[STREAM_MAX];
    static rec_t r;
    size_t len = 0;
    size_t wl = 0;

    for (int line = 0; line < 6; line++) {
        memcpy(s + len, "data: ", 6);
        len += 6;
        if (line > 0) {
            want[wl++] = '\n';
        }
        for (int i = 0; i < 600; i++) {
            s[len++] = (char)('a' + (line + i) % 26);
            want[wl++] = (char)('a' + (line + i) % 26);
        }
        s[len++] = '\n';
    }
    s[len++] = '\n';
    for (int round = 0; round < 2; round++) {
        size_t cut = 1000;

        /* Whole, then split (the event is then kept in the parser). */
        rec_run(s, len, &cut, (size_t)round, &r);
        ck_assert_uint_eq(r.n, 1);
        ck_assert_uint_eq(r.ev[0].data_len, wl);
        ck_assert(memcmp(r.ev[0].data, want, wl) == 0);
    }
}
END_TEST

START_TEST(test_event_is)
{
    kg_sse_event_t ev = {0};

    ev.event = "message_stop";
    ev.event_len = 12;
    ck_assert(kg_sse_event_is(&ev, "message_stop"));
    ck_assert(!kg_sse_event_is(&ev, "message_sto"));
    ck_assert(!kg_sse_event_is(&ev, "message_stop2"));
    ev.event = "";
    ev.event_len = 0;
    ck_assert(kg_sse_event_is(&ev, ""));
    ck_assert(!kg_sse_event_is(&ev, "ping"));
}
END_TEST

static Suite *sse_suite(void)
{
    Suite *s = suite_create("sse");
    TCase *tc = tcase_create("sse");

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_split_everywhere, 0, (int)NROWS(sample_rows));
    tcase_add_loop_test(tc, test_fields, 0, (int)NROWS(field_rows));
    tcase_add_test(tc, test_held_cr);
    tcase_add_test(tc, test_pending);
    tcase_add_loop_test(tc, test_bound, 0, (int)NROWS(bound_rows));
    tcase_add_test(tc, test_default_bound);
    tcase_add_test(tc, test_callback_stops);
    tcase_add_test(tc, test_many_data_lines);
    tcase_add_test(tc, test_event_is);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sse_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
