/* An incremental Server-Sent Events parser keeping each event's raw bytes. */
#include "keygate/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* The first allocation of a parser's buffers; they double up to the bound. */
#define SSE_INITIAL_CAP ((size_t)1024)

struct kg_sse_parser {
    size_t max;       /* bound on one event's raw bytes */
    char *raw;        /* owned: bytes of the event not yet delivered */
    size_t raw_len;   /* used bytes of raw */
    size_t raw_cap;   /* allocated bytes of raw */
    char *data;       /* owned: joined data lines of an event with several */
    size_t data_cap;  /* allocated bytes of data */
    bool data_copied; /* the current event's data lives in data */
    bool line_empty;  /* no byte yet on the current line */
    bool after_cr;    /* the last byte was a CR that ended a non-blank line */
    bool held;        /* raw is a whole event but for a possible final LF */
    bool first_event; /* no event delivered yet: a BOM may lead the stream */
    kg_err_t err;     /* sticky: once set, every call returns it */
};

kg_err_t kg_sse_parser_new(size_t max_event, kg_sse_parser_t **out)
{
    kg_sse_parser_t *p;

    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return KG_ERR_NOMEM;
    }
    p->max = max_event ? max_event : KG_SSE_MAX_EVENT;
    p->line_empty = true;
    p->first_event = true;
    p->err = KG_OK;
    *out = p;
    return KG_OK;
}

void kg_sse_parser_free(kg_sse_parser_t **p)
{
    if (p == NULL || *p == NULL) {
        return;
    }
    free((*p)->raw);
    free((*p)->data);
    free(*p);
    *p = NULL;
}

size_t kg_sse_pending(const kg_sse_parser_t *p)
{
    return p->raw_len;
}

bool kg_sse_event_is(const kg_sse_event_t *ev, const char *name)
{
    size_t n = strlen(name);

    return ev->event_len == n && memcmp(ev->event, name, n) == 0;
}

/* Make *buf hold at least need bytes (need <= max); KG_ERR_NOMEM if not. */
/*
 * Index of the first CR or LF at or after i, or len: 16 bytes a step where
 * the CPU has SSE2, so a long line (a large event) costs about what
 * memchr does.
 */
static size_t sse_line_end(const char *buf, size_t len, size_t i)
{
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');

    while (i + 16 <= len) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(buf + i));
        int mask = _mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));

        if (mask != 0) {
            return i + (size_t)__builtin_ctz((unsigned)mask);
        }
        i += 16;
    }
#endif
    while (i < len && buf[i] != '\n' && buf[i] != '\r') {
        i++;
    }
    return i;
}

static kg_err_t sse_reserve(char **buf, size_t *cap, size_t need, size_t max)
{
    size_t ncap = *cap ? *cap : SSE_INITIAL_CAP;
    char *nbuf;

    if (need <= *cap) {
        return KG_OK;
    }
    while (ncap < need) {
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    }
    if (ncap > max) {
        ncap = max > need ? max : need;
    }
    nbuf = realloc(*buf, ncap);
    if (nbuf == NULL) {
        return KG_ERR_NOMEM;
    }
    *buf = nbuf;
    *cap = ncap;
    return KG_OK;
}

/* Keep n more bytes of the current event; KG_ERR_BAD_GATEWAY past the bound. */
static kg_err_t sse_keep(kg_sse_parser_t *p, const char *bytes, size_t n)
{
    kg_err_t rc;

    if (n == 0) {
        return KG_OK;
    }
    if (n > p->max - p->raw_len) {
        return KG_ERR_BAD_GATEWAY;
    }
    rc = sse_reserve(&p->raw, &p->raw_cap, p->raw_len + n, p->max);
    if (rc != KG_OK) {
        return rc;
    }
    memcpy(p->raw + p->raw_len, bytes, n);
    p->raw_len += n;
    return KG_OK;
}

/* Add one data line's value to ev, copying once there are two lines. */
static kg_err_t sse_add_data(kg_sse_parser_t *p, kg_sse_event_t *ev,
                             const char *value, size_t vlen)
{
    kg_err_t rc;

    if (!ev->has_data) {
        ev->has_data = true;
        ev->data = value;
        ev->data_len = vlen;
        return KG_OK;
    }
    /* data_len + 1 + vlen never exceeds the event's raw size. */
    rc = sse_reserve(&p->data, &p->data_cap, ev->data_len + 1 + vlen, p->max);
    if (rc != KG_OK) {
        return rc;
    }
    if (!p->data_copied) {
        /* The first line, still in the raw bytes: copy it over once. */
        memcpy(p->data, ev->data, ev->data_len);
        p->data_copied = true;
    }
    ev->data = p->data;
    p->data[ev->data_len] = '\n';
    if (vlen > 0) {
        memcpy(p->data + ev->data_len + 1, value, vlen);
    }
    ev->data_len += 1 + vlen;
    return KG_OK;
}

/* Read the fields of one complete event's raw bytes into ev. */
static kg_err_t sse_parse_fields(kg_sse_parser_t *p, kg_sse_event_t *ev)
{
    const char *raw = ev->raw;
    size_t n = ev->raw_len;
    size_t pos = 0;
    kg_err_t rc = KG_OK;

    p->data_copied = false;
    if (p->first_event && n >= 3 && memcmp(raw, "\xEF\xBB\xBF", 3) == 0) {
        pos = 3;
    }
    while (pos < n) {
        const char *line = raw + pos;
        size_t end = pos;
        size_t ll;
        size_t name_len;
        const char *value;
        size_t vlen;
        const char *colon;

        end = sse_line_end(raw, n, end);
        ll = end - pos;
        pos = end;
        if (pos < n) {
            pos += (raw[pos] == '\r' && pos + 1 < n && raw[pos + 1] == '\n')
                       ? 2
                       : 1;
        }
        if (ll == 0 || line[0] == ':') {
            continue;
        }
        colon = memchr(line, ':', ll);
        name_len = colon ? (size_t)(colon - line) : ll;
        value = colon ? colon + 1 : line + ll;
        vlen = ll - (size_t)(value - line);
        if (vlen > 0 && value[0] == ' ') {
            value++;
            vlen--;
        }
        if (name_len == 5 && memcmp(line, "event", 5) == 0) {
            ev->event = value;
            ev->event_len = vlen;
        } else if (name_len == 4 && memcmp(line, "data", 4) == 0) {
            rc = sse_add_data(p, ev, value, vlen);
            if (rc != KG_OK) {
                break;
            }
        }
    }
    return rc;
}

/*
 * Deliver the event made of the kept bytes and buf[start, end): parse its
 * fields and call cb. The parser keeps nothing afterwards.
 */
static kg_err_t sse_deliver(kg_sse_parser_t *p, const char *buf, size_t start,
                            size_t end, kg_sse_event_cb cb, void *ud)
{
    kg_sse_event_t ev = {0};
    kg_err_t rc = KG_OK;
    size_t n = end - start;

    if (n > p->max - p->raw_len) {
        rc = KG_ERR_BAD_GATEWAY;
        goto out;
    }
    if (p->raw_len > 0) {
        if (n > 0) {
            rc = sse_keep(p, buf + start, n);
            if (rc != KG_OK) {
                goto out;
            }
        }
        ev.raw = p->raw;
        ev.raw_len = p->raw_len;
    } else {
        ev.raw = buf + start;
        ev.raw_len = n;
    }
    ev.event = "";
    ev.data = "";
    rc = sse_parse_fields(p, &ev);
    if (rc != KG_OK) {
        goto out;
    }
    p->first_event = false;
    p->raw_len = 0;
    rc = cb(&ev, ud);
out:
    return rc;
}

kg_err_t kg_sse_feed(kg_sse_parser_t *p, const char *buf, size_t len,
                     kg_sse_event_cb cb, void *ud)
{
    size_t i = 0;
    size_t start = 0;
    kg_err_t rc = p->err;

    if (rc != KG_OK || len == 0) {
        goto out;
    }
    if (p->held) {
        /* A blank line ended with CR as the last byte of the last chunk. */
        i = buf[0] == '\n' ? 1 : 0;
        p->held = false;
        rc = sse_deliver(p, buf, 0, i, cb, ud);
        if (rc != KG_OK) {
            goto out;
        }
        start = i;
    }
    while (i < len) {
        char c = buf[i];

        if (p->after_cr) {
            p->after_cr = false;
            if (c == '\n') {
                i++;
                continue;
            }
        }
        if (c != '\n' && c != '\r') {
            p->line_empty = false;
            i = sse_line_end(buf, len, i);
            continue;
        }
        i++;
        if (!p->line_empty) {
            p->line_empty = true;
            p->after_cr = c == '\r';
            continue;
        }
        /* A blank line: the event ends after its line ending. */
        if (c == '\r') {
            if (i == len) {
                p->held = true;
                break;
            }
            if (buf[i] == '\n') {
                i++;
            }
        }
        rc = sse_deliver(p, buf, start, i, cb, ud);
        if (rc != KG_OK) {
            goto out;
        }
        start = i;
    }
    if (start < len) {
        rc = sse_keep(p, buf + start, len - start);
    }
out:
    p->err = rc;
    return rc;
}

kg_err_t kg_sse_finish(kg_sse_parser_t *p, kg_sse_event_cb cb, void *ud,
                       bool *partial, const char **rest, size_t *rest_len)
{
    kg_err_t rc = p->err;
    size_t left = 0;

    if (rc != KG_OK) {
        goto out;
    }
    if (p->held) {
        p->held = false;
        rc = sse_deliver(p, NULL, 0, 0, cb, ud);
        if (rc != KG_OK) {
            p->err = rc;
            goto out;
        }
    }
    left = p->raw_len;
out:
    if (partial != NULL) {
        *partial = left > 0;
    }
    if (rest != NULL) {
        *rest = left > 0 ? p->raw : NULL;
    }
    if (rest_len != NULL) {
        *rest_len = left;
    }
    if (rc == KG_OK) {
        /* Ready for a new stream; p->raw stays valid for the caller. */
        p->raw_len = 0;
        p->line_empty = true;
        p->after_cr = false;
        p->first_event = true;
    }
    return rc;
}
