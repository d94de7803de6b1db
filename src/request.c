/* Inspecting and rewriting client request bodies (OpenAI and Anthropic). */
#include "keygate/request.h"

#include "keygate/jscan.h"
#include "keygate/validate.h"

#include <stdlib.h>
#include <string.h>

/*
 * A body is checked in one pass over its bytes (request_scan): a recursive
 * descent over RFC 8259 whose strings are skipped 16 bytes at a time
 * (kg_jscan_plain) and whose top-level members, and those of
 * stream_options, are recorded by name and value span. No tree is built:
 * keygate needs a handful of top-level values, and a tree of a 1 MB body
 * cost more than everything else on the request path together.
 */

/* The members whose text makes up a request's input. */
static const char *const request_input_members[] = {
    "messages", "prompt", "input", "system", "instructions",
};

/* The object members the input estimate descends into. */
static const char *const request_text_members[] = {
    "content",  "text",       "output",   "arguments",
    "thinking", "tool_calls", "function",
};

/* The members that bound the output, any of which a request may use. */
static const char *const request_max_members[] = {
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
};

#define REQUEST_NROWS(a) (sizeof(a) / sizeof((a)[0]))
/* Member names longer than this are never one of keygate's. */
#define REQUEST_NAME_MAX 32

/* One member of an object keygate reads: its name and its value. */
typedef struct request_member {
    size_t name;     /* the name's first byte after its quote */
    size_t name_len; /* raw length, escapes as written */
    bool escaped;    /* the raw name holds a backslash */
    uint64_t hash;   /* FNV-1a of the unescaped name */
    size_t at;       /* the value: [at, end) */
    size_t end;
    char type; /* 'o' object, 'a' array, 's' string, 'n' number, 't' true,
                  'f' false, 'z' null */
} request_member_t;

/* Up to this many members, a duplicate is looked for by a linear scan. */
#define REQUEST_LINEAR_MEMBERS 32
/* Slots of the hash index past that: a power of two, twice the bound. */
#define REQUEST_INDEX_SLOTS (2 * KG_REQUEST_MAX_MEMBERS)
_Static_assert((REQUEST_INDEX_SLOTS & (REQUEST_INDEX_SLOTS - 1)) == 0 &&
                   KG_REQUEST_MAX_MEMBERS < UINT16_MAX,
               "the index is a power of two of 16-bit member numbers");

/* The members of one object, growing up to KG_REQUEST_MAX_MEMBERS. */
typedef struct request_members {
    request_member_t *m;
    size_t n;
    size_t cap;
    uint16_t *index; /* owned, past REQUEST_LINEAR_MEMBERS: member + 1 */
    request_member_t inline_m[16];
} request_members_t;

/* The state of one pass. */
typedef struct request_scan {
    const unsigned char *b;
    size_t len;
    size_t i;
    int depth;
    kg_diag_t *diag;
    kg_err_t rc;
    uint64_t text_bytes; /* input estimate: text under the input members */
    uint64_t messages;
    request_members_t root;
    request_members_t so; /* stream_options, when it is an object */
    bool so_seen;
    size_t root_close; /* the root's '}' */
    size_t so_close;   /* stream_options' '}' */
} request_scan_t;

static void request_members_init(request_members_t *ms)
{
    ms->m = ms->inline_m;
    ms->n = 0;
    ms->cap = REQUEST_NROWS(ms->inline_m);
    ms->index = NULL;
}

static void request_members_free(request_members_t *ms)
{
    if (ms->m != ms->inline_m) {
        free(ms->m);
    }
    free(ms->index);
    request_members_init(ms);
}

static bool request_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void request_skip_ws(request_scan_t *s)
{
    while (s->i < s->len && request_is_ws(s->b[s->i])) {
        s->i++;
    }
}

/* Fail the pass with a message (the first failure wins). Returns false. */
#define REQUEST_FAIL(s, ...)                                                   \
    ((s)->rc == KG_OK ? ((s)->rc = kg_diag_fail((s)->diag, KG_ERR_BAD_REQUEST, \
                                                __VA_ARGS__),                  \
                         false)                                                \
                      : false)

/* The byte at s->i is not what the grammar allows there: say why. */
static bool request_unexpected(request_scan_t *s)
{
    unsigned char c;

    if (s->i >= s->len) {
        return REQUEST_FAIL(s, "the request body is not valid JSON (it ends "
                               "early)");
    }
    c = s->b[s->i];
    if (c < 0x20 && !request_is_ws(c)) {
        return REQUEST_FAIL(s,
                            "the request body contains a control character "
                            "(at byte %zu)",
                            s->i);
    }
    if (c >= 0x80 && kg_validate_utf8_len(s->b + s->i, s->len - s->i) == 0) {
        return REQUEST_FAIL(s,
                            "the request body is not valid UTF-8 (at byte "
                            "%zu)",
                            s->i);
    }
    return REQUEST_FAIL(s, "the request body is not valid JSON (at byte %zu)",
                        s->i);
}

static int request_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The \uXXXX code unit at p (4 bytes after the 'u'), or -1. */
static long request_u16(const unsigned char *p, size_t left)
{
    long v = 0;

    if (left < 4) {
        return -1;
    }
    for (int k = 0; k < 4; k++) {
        int h = request_hex(p[k]);

        if (h < 0) {
            return -1;
        }
        v = v * 16 + h;
    }
    return v;
}

/*
 * An escape at s->b[s->i] ('\\'): check it, step over it and add its
 * unescaped length to *out. False on a bad escape.
 */
static bool request_escape(request_scan_t *s, uint64_t *out)
{
    const unsigned char *p = s->b + s->i;
    size_t left = s->len - s->i;
    long hi;
    long lo;

    if (left < 2) {
        s->i = s->len;
        return request_unexpected(s);
    }
    if (p[1] != 'u') {
        if (strchr("\"\\/bfnrt", p[1]) == NULL || p[1] == '\0') {
            s->i++;
            return REQUEST_FAIL(s,
                                "the request body is not valid JSON (a bad "
                                "escape at byte %zu)",
                                s->i);
        }
        s->i += 2;
        *out += 1;
        return true;
    }
    hi = request_u16(p + 2, left - 2);
    if (hi < 0) {
        return REQUEST_FAIL(s,
                            "the request body is not valid JSON (a bad "
                            "escape at byte %zu)",
                            s->i);
    }
    if (hi == 0) {
        return REQUEST_FAIL(s,
                            "the request body contains a NUL character (at "
                            "byte %zu)",
                            s->i);
    }
    if (hi >= 0xDC00 && hi <= 0xDFFF) {
        return REQUEST_FAIL(s,
                            "the request body has an unpaired surrogate "
                            "escape (at byte %zu)",
                            s->i);
    }
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        lo = left >= 12 && p[6] == '\\' && p[7] == 'u'
                 ? request_u16(p + 8, left - 8)
                 : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) {
            return REQUEST_FAIL(s,
                                "the request body has an unpaired "
                                "surrogate escape (at byte %zu)",
                                s->i);
        }
        s->i += 12;
        *out += 4;
        return true;
    }
    s->i += 6;
    *out += hi < 0x80 ? 1 : hi < 0x800 ? 2 : 3;
    return true;
}

/*
 * A string at s->b[s->i] ('"'). On true s->i is past its closing quote,
 * *ulen (may be NULL) is its unescaped length in bytes and *escaped tells
 * whether it holds an escape.
 */
static bool request_string(request_scan_t *s, uint64_t *ulen, bool *escaped)
{
    uint64_t n = 0;
    size_t from;

    if (escaped != NULL) {
        *escaped = false;
    }
    s->i++;
    for (;;) {
        unsigned char c;

        from = s->i;
        s->i += kg_jscan_plain((const char *)s->b + s->i, s->len - s->i);
        n += s->i - from;
        if (s->i >= s->len) {
            return request_unexpected(s);
        }
        c = s->b[s->i];
        if (c == '"') {
            s->i++;
            break;
        }
        if (c == '\\') {
            if (escaped != NULL) {
                *escaped = true;
            }
            if (!request_escape(s, &n)) {
                return false;
            }
        } else if (c >= 0x80) {
            /* A run of non-ASCII characters (CJK text: most of it) is
             * checked here, not one character per round of the fast path. */
            do {
                size_t step = kg_validate_utf8_len(s->b + s->i, s->len - s->i);

                if (step == 0) {
                    return request_unexpected(s);
                }
                s->i += step;
                n += step;
            } while (s->i < s->len && s->b[s->i] >= 0x80);
        } else if (request_is_ws(c)) {
            return REQUEST_FAIL(s,
                                "the request body is not valid JSON (a raw "
                                "tab, CR or LF in a string at byte %zu)",
                                s->i);
        } else {
            return request_unexpected(s); /* a control character */
        }
    }
    if (ulen != NULL) {
        *ulen = n;
    }
    return true;
}

static bool request_digits(request_scan_t *s)
{
    size_t from = s->i;

    while (s->i < s->len && s->b[s->i] >= '0' && s->b[s->i] <= '9') {
        s->i++;
    }
    return s->i > from;
}

/* A number at s->b[s->i]; *integer: no fraction and no exponent. */
static bool request_number(request_scan_t *s, bool *integer)
{
    *integer = true;
    if (s->b[s->i] == '-') {
        s->i++;
    }
    if (s->i < s->len && s->b[s->i] == '0') {
        s->i++;
    } else if (!request_digits(s)) {
        return request_unexpected(s);
    }
    if (s->i < s->len && s->b[s->i] == '.') {
        s->i++;
        *integer = false;
        if (!request_digits(s)) {
            return request_unexpected(s);
        }
    }
    if (s->i < s->len && (s->b[s->i] == 'e' || s->b[s->i] == 'E')) {
        s->i++;
        *integer = false;
        if (s->i < s->len && (s->b[s->i] == '+' || s->b[s->i] == '-')) {
            s->i++;
        }
        if (!request_digits(s)) {
            return request_unexpected(s);
        }
    }
    return true;
}

static bool request_literal(request_scan_t *s, const char *lit)
{
    size_t n = strlen(lit);

    if (s->len - s->i < n || memcmp(s->b + s->i, lit, n) != 0) {
        return request_unexpected(s);
    }
    s->i += n;
    return true;
}

/* Element counts of an array, for the messages of the estimate. */
typedef struct request_counts {
    uint64_t elements;
    uint64_t objects;
} request_counts_t;

static bool request_value(request_scan_t *s, bool count, char *type,
                          request_counts_t *counts);

/* Bump the depth for an array or object at s->i. */
static bool request_enter(request_scan_t *s)
{
    if (++s->depth > KG_REQUEST_MAX_DEPTH) {
        return REQUEST_FAIL(s,
                            "the request body nests arrays and objects "
                            "deeper than %d levels",
                            KG_REQUEST_MAX_DEPTH);
    }
    s->i++;
    request_skip_ws(s);
    return true;
}

/* After a value in a container: ',' (true, *more) or close (true, !*more). */
static bool request_next(request_scan_t *s, unsigned char close, bool *more)
{
    request_skip_ws(s);
    if (s->i < s->len && s->b[s->i] == ',') {
        s->i++;
        request_skip_ws(s);
        *more = true;
        return true;
    }
    if (s->i < s->len && s->b[s->i] == close) {
        s->i++;
        s->depth--;
        *more = false;
        return true;
    }
    return request_unexpected(s);
}

static bool request_array(request_scan_t *s, bool count,
                          request_counts_t *counts)
{
    bool more = true;

    if (!request_enter(s)) {
        return false;
    }
    if (s->i < s->len && s->b[s->i] == ']') {
        s->i++;
        s->depth--;
        return true;
    }
    while (more) {
        char type = 0;

        if (!request_value(s, count, &type, NULL)) {
            return false;
        }
        if (counts != NULL) {
            counts->elements++;
            counts->objects += type == 'o';
        }
        if (!request_next(s, ']', &more)) {
            return false;
        }
    }
    return true;
}

/* Unescape the next byte of a checked string body; -1 at its end. */
typedef struct request_chars {
    const unsigned char *p;
    size_t n;
    size_t i;
    unsigned char pend[4];
    int npend;
    int ipend;
} request_chars_t;

static int request_chars_next(request_chars_t *c)
{
    long cp;

    if (c->ipend < c->npend) {
        return c->pend[c->ipend++];
    }
    if (c->i >= c->n) {
        return -1;
    }
    if (c->p[c->i] != '\\') {
        return c->p[c->i++];
    }
    switch (c->p[c->i + 1]) {
    case 'b':
        c->i += 2;
        return '\b';
    case 'f':
        c->i += 2;
        return '\f';
    case 'n':
        c->i += 2;
        return '\n';
    case 'r':
        c->i += 2;
        return '\r';
    case 't':
        c->i += 2;
        return '\t';
    case 'u':
        break;
    default:
        c->i += 2;
        return c->p[c->i - 1];
    }
    cp = request_u16(c->p + c->i + 2, c->n - c->i - 2);
    c->i += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) +
             (request_u16(c->p + c->i + 2, c->n - c->i - 2) - 0xDC00);
        c->i += 6;
    }
    c->npend = 0;
    c->ipend = 0;
    if (cp < 0x80) {
        return (int)cp;
    }
    if (cp < 0x800) {
        c->pend[c->npend++] = (unsigned char)(0xC0 | (cp >> 6));
    } else if (cp < 0x10000) {
        c->pend[c->npend++] = (unsigned char)(0xE0 | (cp >> 12));
        c->pend[c->npend++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    } else {
        c->pend[c->npend++] = (unsigned char)(0xF0 | (cp >> 18));
        c->pend[c->npend++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        c->pend[c->npend++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    }
    c->pend[c->npend++] = (unsigned char)(0x80 | (cp & 0x3F));
    return c->pend[c->ipend++];
}

static void request_chars_init(request_chars_t *c, const unsigned char *p,
                               size_t n)
{
    memset(c, 0, sizeof(*c));
    c->p = p;
    c->n = n;
}

/*
 * Unescape the checked string body at p (n raw bytes) into out (at most
 * max bytes, not terminated). Returns the unescaped length, or max + 1
 * when it does not fit.
 */
static size_t request_unescape(const unsigned char *p, size_t n, char *out,
                               size_t max)
{
    request_chars_t c;
    size_t k = 0;
    int ch;

    request_chars_init(&c, p, n);
    while ((ch = request_chars_next(&c)) >= 0) {
        if (k == max) {
            return max + 1;
        }
        out[k++] = (char)ch;
    }
    return k;
}

/* True when member m of the body is named exactly name. */
static bool request_name_is(const request_scan_t *s, const request_member_t *m,
                            const char *name)
{
    size_t n = strlen(name);
    char buf[REQUEST_NAME_MAX];

    if (!m->escaped) {
        return m->name_len == n && memcmp(s->b + m->name, name, n) == 0;
    }
    return n <= sizeof(buf) &&
           request_unescape(s->b + m->name, m->name_len, buf, sizeof(buf)) ==
               n &&
           memcmp(buf, name, n) == 0;
}

/* True when members a and b of the body have the same unescaped name. */
static bool request_same_name(const request_scan_t *s,
                              const request_member_t *a,
                              const request_member_t *b)
{
    request_chars_t ca;
    request_chars_t cb;
    int x;
    int y;

    if (a->hash != b->hash) {
        return false;
    }
    if (!a->escaped && !b->escaped) {
        return a->name_len == b->name_len &&
               memcmp(s->b + a->name, s->b + b->name, a->name_len) == 0;
    }
    request_chars_init(&ca, s->b + a->name, a->name_len);
    request_chars_init(&cb, s->b + b->name, b->name_len);
    do {
        x = request_chars_next(&ca);
        y = request_chars_next(&cb);
    } while (x == y && x >= 0);
    return x == y;
}

/* Put member k of ms into the index (there is a free slot). */
static void request_index_put(request_members_t *ms, size_t k)
{
    size_t mask = REQUEST_INDEX_SLOTS - 1;
    size_t slot = (size_t)ms->m[k].hash & mask;

    while (ms->index[slot] != 0) {
        slot = (slot + 1) & mask;
    }
    ms->index[slot] = (uint16_t)(k + 1);
}

/*
 * True when a member before m (the next of ms, not yet counted) has its
 * name: a scan of a few, a hash index of many (so 1,024 members cost
 * 1,024 probes, not half a million comparisons). On no memory for the
 * index s->rc is KG_ERR_NOMEM and the answer is false.
 */
static bool request_find_same(request_scan_t *s, request_members_t *ms,
                              const request_member_t *m)
{
    size_t mask = REQUEST_INDEX_SLOTS - 1;
    size_t slot;

    if (ms->n < REQUEST_LINEAR_MEMBERS) {
        for (size_t k = 0; k < ms->n; k++) {
            if (request_same_name(s, &ms->m[k], m)) {
                return true;
            }
        }
        return false;
    }
    if (ms->index == NULL) {
        ms->index = calloc(REQUEST_INDEX_SLOTS, sizeof(*ms->index));
        if (ms->index == NULL) {
            s->rc = KG_ERR_NOMEM;
            return false;
        }
        for (size_t k = 0; k < ms->n; k++) {
            request_index_put(ms, k);
        }
    }
    for (slot = (size_t)m->hash & mask; ms->index[slot] != 0;
         slot = (slot + 1) & mask) {
        if (request_same_name(s, &ms->m[ms->index[slot] - 1], m)) {
            return true;
        }
    }
    ms->index[slot] = (uint16_t)(ms->n + 1);
    return false;
}

/* Record the name of a member at s->i ('"') in ms; fails on a duplicate. */
static bool request_record_name(request_scan_t *s, request_members_t *ms)
{
    request_member_t *m;
    request_chars_t c;
    uint64_t h = UINT64_C(14695981039346656037);
    int ch;

    if (ms->n == KG_REQUEST_MAX_MEMBERS) {
        return REQUEST_FAIL(s,
                            "the request body has more than %d members in "
                            "one object keygate reads",
                            KG_REQUEST_MAX_MEMBERS);
    }
    if (ms->n == ms->cap) {
        size_t ncap = ms->cap * 4;
        request_member_t *g = ms->m == ms->inline_m
                                  ? malloc(ncap * sizeof(*g))
                                  : realloc(ms->m, ncap * sizeof(*g));

        if (g == NULL) {
            s->rc = KG_ERR_NOMEM;
            return false;
        }
        if (ms->m == ms->inline_m) {
            memcpy(g, ms->inline_m, sizeof(ms->inline_m));
        }
        ms->m = g;
        ms->cap = ncap;
    }
    m = &ms->m[ms->n];
    memset(m, 0, sizeof(*m));
    m->name = s->i + 1;
    if (!request_string(s, NULL, &m->escaped)) {
        return false;
    }
    m->name_len = s->i - 1 - m->name;
    request_chars_init(&c, s->b + m->name, m->name_len);
    while ((ch = request_chars_next(&c)) >= 0) {
        h = (h ^ (uint64_t)ch) * UINT64_C(1099511628211);
    }
    m->hash = h;
    if (request_find_same(s, ms, m)) {
        return REQUEST_FAIL(s,
                            "the request body has a duplicate member name "
                            "(at byte %zu)",
                            m->name - 1);
    }
    if (s->rc != KG_OK) {
        return false; /* no memory for the index */
    }
    ms->n++;
    return true;
}

/* True when the member name just read (raw, at name) is in the list. */
static bool request_name_in(const request_scan_t *s, size_t name,
                            size_t name_len, bool escaped,
                            const char *const *list, size_t nlist)
{
    request_member_t m;

    memset(&m, 0, sizeof(m));
    m.name = name;
    m.name_len = name_len;
    m.escaped = escaped;
    for (size_t k = 0; k < nlist; k++) {
        if (request_name_is(s, &m, list[k])) {
            return true;
        }
    }
    return false;
}

/* The ':' after a member name. */
static bool request_colon(request_scan_t *s)
{
    request_skip_ws(s);
    if (s->i >= s->len || s->b[s->i] != ':') {
        return request_unexpected(s);
    }
    s->i++;
    request_skip_ws(s);
    return true;
}

/*
 * An object at s->i. count: values of its text members count toward the
 * estimate. rec: record its members (keygate reads them) and refuse
 * duplicates; *close gets the index of its '}'.
 */
static bool request_object(request_scan_t *s, bool count,
                           request_members_t *rec, size_t *close)
{
    bool more = true;

    if (!request_enter(s)) {
        return false;
    }
    if (s->i < s->len && s->b[s->i] == '}') {
        if (close != NULL) {
            *close = s->i;
        }
        s->i++;
        s->depth--;
        return true;
    }
    while (more) {
        size_t name = s->i + 1;
        bool escaped = false;
        bool counted;
        request_member_t *m = NULL;
        char type = 0;

        if (s->i >= s->len || s->b[s->i] != '"') {
            return request_unexpected(s);
        }
        if (rec != NULL) {
            if (!request_record_name(s, rec)) {
                return false;
            }
            m = &rec->m[rec->n - 1];
            escaped = m->escaped;
        } else if (!request_string(s, NULL, &escaped)) {
            return false;
        }
        counted = count && request_name_in(s, name, s->i - 1 - name, escaped,
                                           request_text_members,
                                           REQUEST_NROWS(request_text_members));
        if (!request_colon(s)) {
            return false;
        }
        if (m != NULL) {
            m->at = s->i;
        }
        if (!request_value(s, counted, &type, NULL)) {
            return false;
        }
        if (m != NULL) {
            m = &rec->m[rec->n - 1];
            m->end = s->i;
            m->type = type;
        }
        if (close != NULL) {
            request_skip_ws(s);
            *close = s->i;
        }
        if (!request_next(s, '}', &more)) {
            return false;
        }
    }
    return true;
}

static bool request_value(request_scan_t *s, bool count, char *type,
                          request_counts_t *counts)
{
    uint64_t n = 0;
    bool integer = false;
    unsigned char c;

    if (s->i >= s->len) {
        return request_unexpected(s);
    }
    c = s->b[s->i];
    switch (c) {
    case '{':
        *type = 'o';
        return request_object(s, count, NULL, NULL);
    case '[':
        *type = 'a';
        return request_array(s, count, counts);
    case '"':
        *type = 's';
        if (!request_string(s, &n, NULL)) {
            return false;
        }
        s->text_bytes += count ? n : 0;
        return true;
    case 't':
        *type = 't';
        return request_literal(s, "true");
    case 'f':
        *type = 'f';
        return request_literal(s, "false");
    case 'n':
        *type = 'z';
        return request_literal(s, "null");
    default:
        break;
    }
    if (c != '-' && (c < '0' || c > '9')) {
        return request_unexpected(s);
    }
    *type = 'n';
    if (!request_number(s, &integer)) {
        return false;
    }
    s->text_bytes += count && integer ? 4 : 0;
    return true;
}

/* The root object: its members recorded, the input members counted. */
static bool request_root(request_scan_t *s)
{
    bool more = true;

    if (!request_enter(s)) {
        return false;
    }
    s->root_close = s->i;
    if (s->i < s->len && s->b[s->i] == '}') {
        s->i++;
        s->depth--;
        return true;
    }
    while (more) {
        request_member_t *m;
        request_counts_t counts = {0, 0};
        bool counted;
        bool messages;
        bool input;
        char type = 0;

        if (s->i >= s->len || s->b[s->i] != '"') {
            return request_unexpected(s);
        }
        if (!request_record_name(s, &s->root) || !request_colon(s)) {
            return false;
        }
        m = &s->root.m[s->root.n - 1];
        m->at = s->i;
        counted = request_name_in(s, m->name, m->name_len, m->escaped,
                                  request_input_members,
                                  REQUEST_NROWS(request_input_members));
        messages = counted && request_name_is(s, m, "messages");
        input = counted && request_name_is(s, m, "input");
        if (s->i < s->len && s->b[s->i] == '{' &&
            request_name_is(s, m, "stream_options")) {
            s->so_seen = true;
            type = 'o';
            if (!request_object(s, false, &s->so, &s->so_close)) {
                return false;
            }
        } else if (!request_value(s, counted, &type, &counts)) {
            return false;
        }
        m = &s->root.m[s->root.n - 1];
        m->end = s->i;
        m->type = type;
        s->messages +=
            messages ? counts.elements : (input ? counts.objects : 0);
        request_skip_ws(s);
        s->root_close = s->i;
        if (!request_next(s, '}', &more)) {
            return false;
        }
    }
    return true;
}

/* The whole pass; on KG_OK the body is valid JSON with an object root. */
static kg_err_t request_scan(request_scan_t *s, const char *body, size_t len,
                             kg_diag_t *diag)
{
    char type = 0;

    memset(s, 0, sizeof(*s));
    request_members_init(&s->root);
    request_members_init(&s->so);
    s->b = (const unsigned char *)body;
    s->len = len;
    s->diag = diag;
    if (body == NULL || len == 0) {
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "the request body is empty; a JSON object is "
                            "expected");
    }
    request_skip_ws(s);
    if (s->i < s->len && s->b[s->i] == '{') {
        request_root(s);
        type = 'o';
    } else {
        request_value(s, false, &type, NULL);
    }
    if (s->rc == KG_OK) {
        request_skip_ws(s);
        if (s->i < s->len) {
            request_unexpected(s);
        } else if (type != 'o') {
            REQUEST_FAIL(s, "the request body must be a JSON object");
        }
    }
    return s->rc;
}

static void request_scan_free(request_scan_t *s)
{
    request_members_free(&s->root);
    request_members_free(&s->so);
}

/* The member of ms named name, or NULL. */
static const request_member_t *request_find(const request_scan_t *s,
                                            const request_members_t *ms,
                                            const char *name)
{
    for (size_t k = 0; k < ms->n; k++) {
        if (request_name_is(s, &ms->m[k], name)) {
            return &ms->m[k];
        }
    }
    return NULL;
}

/* Fill info->layout from the pass. */
static void request_layout(const request_scan_t *s, kg_request_info_t *info)
{
    kg_request_layout_t *l = &info->layout;
    const request_member_t *m;
    size_t root = 0;

    while (root < s->len && request_is_ws(s->b[root])) {
        root++;
    }
    memset(l, 0, sizeof(*l));
    l->root = root;
    l->root_empty = s->root.n == 0;
    l->append_at = s->root.n == 0 ? root + 1 : s->root.m[s->root.n - 1].end;
    m = request_find(s, &s->root, "model");
    if (m != NULL) {
        l->has_model = true;
        l->model_at = m->at;
        l->model_end = m->end;
    }
    m = request_find(s, &s->root, "stream_options");
    if (m != NULL) {
        l->so_type = m->type == 'o' ? 'o' : m->type == 'z' ? 'z' : 'x';
        l->so_at = m->at;
        l->so_end = m->end;
    }
    if (l->so_type == 'o') {
        l->so_empty = s->so.n == 0;
        l->so_append_at = s->so.n == 0 ? m->at + 1 : s->so.m[s->so.n - 1].end;
        m = request_find(s, &s->so, "include_usage");
        if (m != NULL) {
            l->has_include_usage = true;
            l->iu_at = m->at;
            l->iu_end = m->end;
        }
    }
}

/* Check "model" and copy it into info. */
static kg_err_t request_model(const request_scan_t *s, kg_request_info_t *info,
                              kg_diag_t *diag)
{
    const request_member_t *m = request_find(s, &s->root, "model");
    size_t n;

    if (m == NULL) {
        return KG_OK;
    }
    if (m->type != 's') {
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "'model' must be a string");
    }
    n = request_unescape(s->b + m->at + 1, m->end - m->at - 2, info->model,
                         KG_MODEL_NAME_MAX);
    if (n == 0) {
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "'model' must not be empty");
    }
    if (n > KG_MODEL_NAME_MAX) {
        info->model[0] = '\0';
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "'model' is too long (the maximum is %d bytes)",
                            KG_MODEL_NAME_MAX);
    }
    info->model[n] = '\0';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)info->model[i];

        if (c < 0x20 || c == 0x7F) {
            info->model[0] = '\0';
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'model' must not contain control "
                                "characters");
        }
    }
    info->has_model = true;
    return KG_OK;
}

/* A max_* member: a non-negative integer that fits int64_t. */
static kg_err_t request_max(const request_scan_t *s, const request_member_t *m,
                            const char *name, kg_request_info_t *info,
                            kg_diag_t *diag)
{
    uint64_t v = 0;

    if (m->type == 'z') {
        return KG_OK;
    }
    if (m->type != 'n' || s->b[m->at] == '-') {
        goto bad;
    }
    for (size_t i = m->at; i < m->end; i++) {
        unsigned char c = s->b[i];

        if (c < '0' || c > '9') {
            goto bad; /* a fraction or an exponent */
        }
        if (v > (uint64_t)(INT64_MAX - (c - '0')) / 10) {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST, "'%s' is too large",
                                name);
        }
        v = v * 10 + (uint64_t)(c - '0');
    }
    if ((int64_t)v > info->max_tokens) {
        info->max_tokens = (int64_t)v;
    }
    return KG_OK;
bad:
    return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                        "'%s' must be a non-negative integer", name);
}

/* Check "stream", the max_* members and "stream_options". */
static kg_err_t request_options(const request_scan_t *s,
                                kg_request_info_t *info, kg_diag_t *diag)
{
    const request_member_t *m = request_find(s, &s->root, "stream");
    kg_err_t rc;

    if (m != NULL && m->type != 'z') {
        if (m->type != 't' && m->type != 'f') {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'stream' must be a boolean");
        }
        info->stream = m->type == 't';
    }
    for (size_t i = 0; i < REQUEST_NROWS(request_max_members); i++) {
        m = request_find(s, &s->root, request_max_members[i]);
        if (m != NULL) {
            rc = request_max(s, m, request_max_members[i], info, diag);
            if (rc != KG_OK) {
                return rc;
            }
        }
    }
    m = request_find(s, &s->root, "stream_options");
    if (m != NULL && m->type != 'z') {
        if (m->type != 'o') {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'stream_options' must be an object");
        }
        m = request_find(s, &s->so, "include_usage");
        if (m != NULL && m->type != 'z' && m->type != 't' && m->type != 'f') {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'stream_options.include_usage' must be a "
                                "boolean");
        }
        info->client_include_usage = m != NULL && m->type == 't';
    }
    return KG_OK;
}

kg_err_t kg_request_inspect(const char *body, size_t len,
                            kg_request_info_t *info, kg_diag_t *diag)
{
    request_scan_t s;
    kg_err_t rc;

    memset(info, 0, sizeof(*info));
    info->max_tokens = KG_NONE;
    rc = request_scan(&s, body, len, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = request_model(&s, info, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = request_options(&s, info, diag);
    if (rc != KG_OK) {
        goto out;
    }
    request_layout(&s, info);
    /* text_bytes <= the body's length: no overflow. */
    info->input_estimate_tokens =
        (int64_t)((s.text_bytes + 3) / 4 +
                  s.messages * KG_REQUEST_MESSAGE_OVERHEAD);
out:
    request_scan_free(&s);
    return rc;
}

/*
 * Rewriting splices the client's bytes instead of re-printing them: every
 * byte outside the edited values is forwarded as sent (numbers keep their
 * spelling), and the body is never copied whole to be edited.
 */

/* s as a quoted JSON string, new and NUL-terminated (s is valid UTF-8). */
static char *request_quote(const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *q = malloc(n * 6 + 3);
    size_t k = 0;

    if (q == NULL) {
        return NULL;
    }
    q[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            q[k++] = '\\';
            q[k++] = (char)c;
        } else if (c < 0x20) {
            memcpy(q + k, "\\u00", 4);
            q[k + 4] = hex[c >> 4];
            q[k + 5] = hex[c & 15];
            k += 6;
        } else {
            q[k++] = (char)c;
        }
    }
    q[k++] = '"';
    q[k] = '\0';
    return q;
}

/* Queue an edit that replaces [pos, pos + del) with the parts joined. */
static kg_err_t request_edit(kg_request_edits_t *edits, size_t pos, size_t del,
                             const char *const *parts, size_t nparts)
{
    kg_request_edit_t *e = &edits->e[edits->n];
    size_t n = 0;

    for (size_t i = 0; i < nparts; i++) {
        n += strlen(parts[i]);
    }
    e->text = malloc(n + 1);
    if (e->text == NULL) {
        return KG_ERR_NOMEM;
    }
    e->text_len = 0;
    for (size_t i = 0; i < nparts; i++) {
        size_t pl = strlen(parts[i]);

        memcpy(e->text + e->text_len, parts[i], pl);
        e->text_len += pl;
    }
    e->text[n] = '\0';
    e->pos = pos;
    e->del = del;
    edits->n++;
    return KG_OK;
}

/* The edit that sets "model" to the quoted name q. */
static kg_err_t request_edit_model(const kg_request_layout_t *l, const char *q,
                                   kg_request_edits_t *edits)
{
    const char *insert[] = {",", "\"model\":", q};

    if (l->has_model) {
        return request_edit(edits, l->model_at, l->model_end - l->model_at, &q,
                            1);
    }
    if (l->root_empty) {
        insert[0] = "";
    }
    return request_edit(edits, l->append_at, 0, insert, 3);
}

/*
 * The edit that sets stream_options.include_usage to true; grown: an edit
 * before this one already adds a member to the root object.
 */
static kg_err_t request_edit_usage(const kg_request_layout_t *l, bool grown,
                                   kg_request_edits_t *edits)
{
    const char *whole = "{\"include_usage\":true}";
    const char *yes = "true";
    const char *member[] = {",", "\"include_usage\":true"};
    const char *appended[] = {",", "\"stream_options\":", whole};

    switch (l->so_type) {
    case 0:
        if (l->root_empty && !grown) {
            appended[0] = "";
        }
        return request_edit(edits, l->append_at, 0, appended, 3);
    case 'z':
        return request_edit(edits, l->so_at, l->so_end - l->so_at, &whole, 1);
    case 'o':
        break;
    default:
        return KG_ERR_BAD_REQUEST;
    }
    if (l->has_include_usage) {
        return request_edit(edits, l->iu_at, l->iu_end - l->iu_at, &yes, 1);
    }
    if (l->so_empty) {
        member[0] = "";
    }
    return request_edit(edits, l->so_append_at, 0, member, 2);
}

void kg_request_edits_clear(kg_request_edits_t *edits)
{
    for (size_t i = 0; i < edits->n; i++) {
        free(edits->e[i].text);
    }
    memset(edits, 0, sizeof(*edits));
}

kg_err_t kg_request_edits_make(const char *body, size_t len,
                               const kg_request_info_t *info,
                               const char *upstream_model,
                               bool add_include_usage,
                               kg_request_edits_t *edits)
{
    const kg_request_layout_t *l = &info->layout;
    char *quoted = NULL;
    kg_err_t rc = KG_OK;

    (void)body;
    memset(edits, 0, sizeof(*edits));
    if (upstream_model != NULL) {
        size_t n = strlen(upstream_model);

        for (size_t i = 0; i < n;) {
            size_t step = kg_validate_utf8_len(
                (const unsigned char *)upstream_model + i, n - i);

            if (step == 0) {
                rc = KG_ERR_INVAL;
                goto out;
            }
            i += step;
        }
        quoted = request_quote(upstream_model, n);
        if (quoted == NULL) {
            rc = KG_ERR_NOMEM;
            goto out;
        }
        rc = request_edit_model(l, quoted, edits);
        if (rc != KG_OK) {
            goto out;
        }
    }
    if (add_include_usage) {
        rc = request_edit_usage(l, upstream_model != NULL && !l->has_model,
                                edits);
        if (rc != KG_OK) {
            goto out;
        }
    }
    /* Insertion sort, stable: edits at one position keep their order. */
    for (size_t i = 1; i < edits->n; i++) {
        for (size_t j = i; j > 0 && edits->e[j - 1].pos > edits->e[j].pos;
             j--) {
            kg_request_edit_t t = edits->e[j];

            edits->e[j] = edits->e[j - 1];
            edits->e[j - 1] = t;
        }
    }
    edits->out_len = len;
    for (size_t i = 0; i < edits->n; i++) {
        edits->out_len += edits->e[i].text_len - edits->e[i].del;
    }
out:
    free(quoted);
    if (rc != KG_OK) {
        kg_request_edits_clear(edits);
    }
    return rc;
}

size_t kg_request_edits_read(const char *body, size_t len,
                             const kg_request_edits_t *edits, size_t offset,
                             char *dst, size_t max)
{
    size_t done = 0;
    size_t from = 0; /* body offset of the current piece */
    size_t out = 0;  /* output offset of the current piece */

    /* Pieces: body[from, e.pos), e.text, ..., body[from, len). */
    for (size_t i = 0; i <= edits->n && done < max; i++) {
        const kg_request_edit_t *e = i < edits->n ? &edits->e[i] : NULL;
        size_t plain = (e != NULL ? e->pos : len) - from;
        const char *pieces[2] = {body + from, e != NULL ? e->text : NULL};
        size_t sizes[2] = {plain, e != NULL ? e->text_len : 0};

        for (int k = 0; k < 2 && done < max; k++) {
            size_t pos = offset + done;

            if (pos < out + sizes[k]) {
                size_t n = out + sizes[k] - pos;

                n = n < max - done ? n : max - done;
                memcpy(dst + done, pieces[k] + (pos - out), n);
                done += n;
            }
            out += sizes[k];
        }
        if (e != NULL) {
            from = e->pos + e->del;
        }
    }
    return done;
}

kg_err_t kg_request_rewrite(const char *body, size_t len,
                            const char *upstream_model, bool add_include_usage,
                            char **out, size_t *out_len)
{
    request_scan_t s;
    kg_request_info_t info;
    kg_request_edits_t edits;
    char *buf = NULL;
    kg_err_t rc;

    *out = NULL;
    *out_len = 0;
    memset(&edits, 0, sizeof(edits));
    memset(&info, 0, sizeof(info));
    rc = request_scan(&s, body, len, NULL);
    if (rc != KG_OK) {
        goto out;
    }
    request_layout(&s, &info);
    rc = kg_request_edits_make(body, len, &info, upstream_model,
                               add_include_usage, &edits);
    if (rc != KG_OK) {
        goto out;
    }
    buf = malloc(edits.out_len + 1);
    if (buf == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    *out_len = kg_request_edits_read(body, len, &edits, 0, buf, edits.out_len);
    buf[*out_len] = '\0';
    *out = buf;
out:
    kg_request_edits_clear(&edits);
    request_scan_free(&s);
    return rc;
}
