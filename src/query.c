/* Shared pieces of the read queries: parameters, times, cursors, CSV. */
#include "keygate/query.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "keygate/duration.h"
#include "keygate/timefmt.h"

/* The cursor's bytes before base64url. */
#define QUERY_CURSOR_VERSION 1
#define QUERY_CURSOR_BYTES   26
#define QUERY_CURSOR_CRC_AT  22
_Static_assert((QUERY_CURSOR_BYTES * 4 + 2) / 3 == KG_QUERY_CURSOR_LEN,
               "the cursor's text length");

static bool query_known(const char *name, const char *const *known)
{
    for (const char *const *k = known; *k != NULL; k++) {
        if (strcmp(name, *k) == 0) {
            return true;
        }
    }
    return false;
}

/* Printable: no control characters (bytes >= 0x80 are UTF-8, allowed). */
static bool query_printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

kg_err_t kg_query_check(const kg_query_param_t *params, size_t n,
                        const char *const *known, kg_diag_t *diag)
{
    if (n > KG_QUERY_PARAMS_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "too many parameters (at most %d)",
                            KG_QUERY_PARAMS_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = params[i].name ? params[i].name : "";
        const char *value = params[i].value ? params[i].value : "";
        size_t len = strnlen(value, KG_QUERY_VALUE_MAX + 1);

        if (!query_known(name, known)) {
            return kg_diag_fail(diag, KG_ERR_INVAL, "unknown parameter '%.40s'",
                                name);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(params[j].name, name) == 0) {
                return kg_diag_fail(diag, KG_ERR_INVAL,
                                    "%s: given more than once", name);
            }
        }
        if (len == 0) {
            return kg_diag_fail(diag, KG_ERR_INVAL, "%s: empty value", name);
        }
        if (len > KG_QUERY_VALUE_MAX || !query_printable(value)) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "%s: the value must be 1-%d printable bytes",
                                name, KG_QUERY_VALUE_MAX);
        }
    }
    return KG_OK;
}

const char *kg_query_get(const kg_query_param_t *params, size_t n,
                         const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (params[i].name != NULL && strcmp(params[i].name, name) == 0) {
            return params[i].value;
        }
    }
    return NULL;
}

kg_err_t kg_query_time(const char *name, const char *value, int64_t now,
                       int64_t *out, kg_diag_t *diag)
{
    int64_t d = 0;

    if (strcmp(value, "now") == 0) {
        *out = now;
        return KG_OK;
    }
    if (strlen(value) >= 10 && value[4] == '-') {
        if (kg_time_parse(value, out, NULL) == KG_OK) {
            return KG_OK;
        }
    } else if (kg_duration_parse(value, &d, NULL) == KG_OK && d <= now) {
        *out = now - d;
        return KG_OK;
    }
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "%s: '%.40s' is not a time: use RFC 3339 "
                        "(2026-12-31T23:59:59Z), a date (2026-12-31), 'now' "
                        "or a duration back from now (24h, 30d)",
                        name, value);
}

kg_err_t kg_query_limit(const char *name, const char *value, size_t def,
                        size_t max, size_t *out, kg_diag_t *diag)
{
    char *end = NULL;
    unsigned long long v;

    if (value == NULL) {
        *out = def;
        return KG_OK;
    }
    if (value[0] < '0' || value[0] > '9' || strlen(value) > 9) {
        goto bad;
    }
    v = strtoull(value, &end, 10);
    if (*end != '\0' || v < 1 || v > max) {
        goto bad;
    }
    *out = (size_t)v;
    return KG_OK;
bad:
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "%s: '%.20s' is not a whole number from 1 to %zu", name,
                        value, max);
}

kg_err_t kg_query_copy(const char *name, const char *value, char *dst,
                       size_t len, kg_diag_t *diag)
{
    size_t n = value ? strlen(value) : 0;

    if (n >= len) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "%s: longer than %zu bytes",
                            name, len - 1);
    }
    memcpy(dst, value ? value : "", n);
    dst[n] = '\0';
    return KG_OK;
}

uint32_t kg_query_scope_str(uint32_t scope, const char *s)
{
    /* With its NUL, so that ("ab", "") and ("a", "b") differ. */
    return (uint32_t)crc32(scope, (const Bytef *)s, (uInt)strlen(s) + 1);
}

uint32_t kg_query_scope_int(uint32_t scope, int64_t v)
{
    unsigned char b[8];

    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
    }
    return (uint32_t)crc32(scope, b, sizeof(b));
}

static void query_put(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    }
}

static uint64_t query_take(const unsigned char *p, int bytes)
{
    uint64_t v = 0;

    for (int i = 0; i < bytes; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

void kg_query_cursor_encode(char kind, int64_t at, int64_t id, uint32_t scope,
                            char out[KG_QUERY_CURSOR_STRLEN])
{
    unsigned char b[QUERY_CURSOR_BYTES];

    b[0] = QUERY_CURSOR_VERSION;
    b[1] = (unsigned char)kind;
    query_put(b + 2, (uint64_t)at, 8);
    query_put(b + 10, (uint64_t)id, 8);
    query_put(b + 18, scope, 4);
    query_put(b + QUERY_CURSOR_CRC_AT,
              (uint32_t)crc32(0, b, QUERY_CURSOR_CRC_AT), 4);
    sodium_bin2base64(out, KG_QUERY_CURSOR_STRLEN, b, sizeof(b),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

kg_err_t kg_query_cursor_decode(const char *s, char kind, uint32_t scope,
                                int64_t *at, int64_t *id, kg_diag_t *diag)
{
    unsigned char b[QUERY_CURSOR_BYTES];
    char again[KG_QUERY_CURSOR_STRLEN];
    size_t blen = 0;
    const char *end = NULL;
    int64_t a;
    int64_t i;

    if (strnlen(s, KG_QUERY_CURSOR_LEN + 1) != KG_QUERY_CURSOR_LEN ||
        sodium_base642bin(b, sizeof(b), s, KG_QUERY_CURSOR_LEN, NULL, &blen,
                          &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        blen != sizeof(b) || end != s + KG_QUERY_CURSOR_LEN) {
        goto bad;
    }
    if (b[0] != QUERY_CURSOR_VERSION ||
        query_take(b + QUERY_CURSOR_CRC_AT, 4) !=
            (uint32_t)crc32(0, b, QUERY_CURSOR_CRC_AT)) {
        goto bad;
    }
    a = (int64_t)query_take(b + 2, 8);
    i = (int64_t)query_take(b + 10, 8);
    kg_query_cursor_encode((char)b[1], a, i, (uint32_t)query_take(b + 18, 4),
                           again);
    if (strcmp(again, s) != 0 || a < 0 || i < 1) {
        goto bad; /* not the canonical text, or an impossible position */
    }
    if (b[1] != (unsigned char)kind) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "cursor: it belongs to another listing");
    }
    if (query_take(b + 18, 4) != scope) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "cursor: it belongs to other filters; give the "
                            "same filters as for the first page");
    }
    *at = a;
    *id = i;
    return KG_OK;
bad:
    return kg_diag_fail(diag, KG_ERR_INVAL,
                        "cursor: not a cursor this listing handed out");
}

json_t *kg_query_page_json(const void *items, size_t n, size_t size,
                           json_t *(*fn)(const void *item),
                           const char *next_cursor)
{
    json_t *arr = json_array();

    for (size_t i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr, fn((const char *)items + i * size)) !=
            0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (arr == NULL) {
        return NULL;
    }
    return json_pack("{s:o, s:o}", "events", arr, "nextCursor",
                     next_cursor && next_cursor[0] ? json_string(next_cursor)
                                                   : json_null());
}

bool kg_query_csv_field(char *buf, size_t len, size_t *pos, const char *s,
                        bool first)
{
    bool quote = strpbrk(s, ",\"\r\n") != NULL;
    size_t need = (first ? 0 : 1) + (quote ? 2 : 0);
    size_t p = *pos;

    for (const char *c = s; *c; c++) {
        need += *c == '"' ? 2 : 1;
    }
    if (p >= len || len - p <= need) {
        return false;
    }
    if (!first) {
        buf[p++] = ',';
    }
    if (quote) {
        buf[p++] = '"';
    }
    for (const char *c = s; *c; c++) {
        if (*c == '"') {
            buf[p++] = '"';
        }
        buf[p++] = *c;
    }
    if (quote) {
        buf[p++] = '"';
    }
    buf[p] = '\0';
    *pos = p;
    return true;
}

bool kg_query_csv_int(char *buf, size_t len, size_t *pos, int64_t v, bool first)
{
    char num[24];

    snprintf(num, sizeof(num), "%lld", (long long)v);
    return kg_query_csv_field(buf, len, pos, num, first);
}

bool kg_query_csv_end(char *buf, size_t len, size_t *pos)
{
    if (*pos >= len || len - *pos <= 2) {
        return false;
    }
    buf[(*pos)++] = '\r';
    buf[(*pos)++] = '\n';
    buf[*pos] = '\0';
    return true;
}
