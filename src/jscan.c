/* Fast scans of JSON text by byte offsets, for bodies no tree is built of. */
#include "keygate/jscan.h"

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#define JSCAN_SSE2 1
#endif

/* Brackets nested deeper than this end the shape check (not an answer). */
#define JSCAN_MAX_DEPTH 1024

static bool jscan_is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

size_t kg_jscan_plain(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;

#ifdef JSCAN_SSE2
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i slash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);

    /* 64 bytes a round while nothing needs a look (the common case). */
    while (i + 64 <= n) {
        __m128i any = _mm_setzero_si128();

        for (int k = 0; k < 64; k += 16) {
            __m128i v =
                _mm_loadu_si128((const __m128i *)(const void *)(u + i + k));

            any = _mm_or_si128(
                any, _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                               _mm_cmpeq_epi8(v, slash)),
                                  _mm_cmplt_epi8(v, space)));
        }
        if (_mm_movemask_epi8(any) != 0) {
            break;
        }
        i += 64;
    }
    while (i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(u + i));
        /* Signed: bytes >= 0x80 are negative, so below 0x20 as well. */
        __m128i hit = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
            _mm_cmplt_epi8(v, space));
        int mask = _mm_movemask_epi8(hit);

        if (mask != 0) {
            return i + (size_t)__builtin_ctz((unsigned)mask);
        }
        i += 16;
    }
#endif
    while (i < n && u[i] >= 0x20 && u[i] < 0x80 && u[i] != '"' &&
           u[i] != '\\') {
        i++;
    }
    return i;
}

/* Index of the first '"' or '\\' at or after i, or len. */
static size_t jscan_quote_or_slash(const unsigned char *u, size_t len, size_t i)
{
#ifdef JSCAN_SSE2
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i slash = _mm_set1_epi8('\\');

    while (i + 64 <= len) {
        __m128i any = _mm_setzero_si128();

        for (int k = 0; k < 64; k += 16) {
            __m128i v =
                _mm_loadu_si128((const __m128i *)(const void *)(u + i + k));

            any = _mm_or_si128(any, _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                                 _mm_cmpeq_epi8(v, slash)));
        }
        if (_mm_movemask_epi8(any) != 0) {
            break;
        }
        i += 64;
    }
    while (i + 16 <= len) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(u + i));
        int mask = _mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)));

        if (mask != 0) {
            return i + (size_t)__builtin_ctz((unsigned)mask);
        }
        i += 16;
    }
#endif
    while (i < len && u[i] != '"' && u[i] != '\\') {
        i++;
    }
    return i;
}

size_t kg_jscan_string_end(const char *b, size_t len, size_t i)
{
    const unsigned char *u = (const unsigned char *)b;

    while (i < len) {
        i = jscan_quote_or_slash(u, len, i);
        if (i >= len || u[i] == '"') {
            return i < len ? i : len;
        }
        i += 2; /* a backslash and the byte it escapes */
    }
    return len;
}

/* Index of the first '"', '[', ']', '{' or '}' at or after i, or len. */
static size_t jscan_structural(const unsigned char *u, size_t len, size_t i)
{
#ifdef JSCAN_SSE2
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i lower = _mm_set1_epi8(0x20);
    const __m128i open = _mm_set1_epi8('{');
    const __m128i close = _mm_set1_epi8('}');

    while (i + 64 <= len) {
        __m128i any = _mm_setzero_si128();

        for (int k = 0; k < 64; k += 16) {
            __m128i v =
                _mm_loadu_si128((const __m128i *)(const void *)(u + i + k));
            __m128i f = _mm_or_si128(v, lower);

            any = _mm_or_si128(
                any, _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                  _mm_or_si128(_mm_cmpeq_epi8(f, open),
                                               _mm_cmpeq_epi8(f, close))));
        }
        if (_mm_movemask_epi8(any) != 0) {
            break;
        }
        i += 64;
    }
    while (i + 16 <= len) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(u + i));
        /* '[' | 0x20 is '{' and ']' | 0x20 is '}'. */
        __m128i f = _mm_or_si128(v, lower);
        __m128i hit = _mm_or_si128(
            _mm_cmpeq_epi8(v, quote),
            _mm_or_si128(_mm_cmpeq_epi8(f, open), _mm_cmpeq_epi8(f, close)));
        int mask = _mm_movemask_epi8(hit);

        if (mask != 0) {
            return i + (size_t)__builtin_ctz((unsigned)mask);
        }
        i += 16;
    }
#endif
    while (i < len && u[i] != '"' && u[i] != '[' && u[i] != ']' &&
           u[i] != '{' && u[i] != '}') {
        i++;
    }
    return i;
}

/* Index of the first byte at or after i that is not white space, or len. */
static size_t jscan_skip_ws(const unsigned char *u, size_t len, size_t i)
{
    while (i < len && jscan_is_ws(u[i])) {
        i++;
    }
    return i;
}

/* The state of one kg_jscan_shape() pass. */
typedef struct jscan_shape {
    const unsigned char *u;
    size_t len;
    const char *name;
    size_t name_len;
    kg_jscan_member_t *member;
    bool object_root;
    size_t pending; /* the value start of a matching member; SIZE_MAX: none */
} jscan_shape_t;

/*
 * A string at depth starts at s->u[i] ('"'): returns the index just past
 * it, or SIZE_MAX when it is not closed. A top-level member name is matched
 * against s->name on the way.
 */
static size_t jscan_shape_string(jscan_shape_t *s, size_t i, int depth)
{
    size_t end = kg_jscan_string_end((const char *)s->u, s->len, i + 1);
    size_t v;

    if (end >= s->len) {
        return SIZE_MAX;
    }
    if (depth == 1 && s->object_root && s->name != NULL &&
        end - (i + 1) == s->name_len &&
        memcmp(s->u + i + 1, s->name, s->name_len) == 0) {
        v = jscan_skip_ws(s->u, s->len, end + 1);
        if (v < s->len && s->u[v] == ':') {
            v = jscan_skip_ws(s->u, s->len, v + 1);
            if (v < s->len && (s->u[v] == '{' || s->u[v] == '[')) {
                s->pending = v;
            }
        }
    }
    return end + 1;
}

bool kg_jscan_shape(const char *b, size_t len, const char *name,
                    kg_jscan_member_t *member)
{
    jscan_shape_t s;
    unsigned char stack[JSCAN_MAX_DEPTH];
    int depth = 0;
    size_t i;
    bool ok = false;

    memset(&s, 0, sizeof(s));
    s.u = (const unsigned char *)b;
    s.len = b != NULL ? len : 0;
    s.name = name;
    s.name_len = name != NULL ? strlen(name) : 0;
    s.pending = SIZE_MAX;
    if (member != NULL) {
        memset(member, 0, sizeof(*member));
    }
    i = jscan_skip_ws(s.u, s.len, 0);
    if (i >= s.len || (s.u[i] != '{' && s.u[i] != '[')) {
        return false;
    }
    s.object_root = s.u[i] == '{';
    while (i < s.len) {
        unsigned char c;

        i = jscan_structural(s.u, s.len, i);
        if (i >= s.len) {
            break;
        }
        c = s.u[i];
        if (c == '"') {
            i = jscan_shape_string(&s, i, depth);
            if (i == SIZE_MAX) {
                break;
            }
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth == JSCAN_MAX_DEPTH) {
                break;
            }
            stack[depth++] = c == '{' ? '}' : ']';
            i++;
            continue;
        }
        if (depth == 0 || stack[depth - 1] != c) {
            break; /* a close that does not match */
        }
        depth--;
        i++;
        if (depth == 1 && s.pending != SIZE_MAX && member != NULL) {
            member->found = true;
            member->start = s.pending;
            member->end = i;
            s.pending = SIZE_MAX;
        }
        if (depth == 0) {
            ok = jscan_skip_ws(s.u, s.len, i) == s.len;
            break;
        }
    }
    if (!ok && member != NULL) {
        memset(member, 0, sizeof(*member));
    }
    return ok;
}
