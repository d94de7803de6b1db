/* Shared pieces of the read queries: parameters, times, cursors, CSV. */
#ifndef KEYGATE_QUERY_H
#define KEYGATE_QUERY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"

/*
 * The usage and audit queries take their arguments as name/value pairs,
 * so that an HTTP query string and the CLI's options go through the same
 * validation: the CLI passes each long option's name without "--".
 */
typedef struct kg_query_param {
    const char *name;  /* borrowed */
    const char *value; /* borrowed */
} kg_query_param_t;

/* At most this many parameters, each value at most this many bytes. */
#define KG_QUERY_PARAMS_MAX 32
#define KG_QUERY_VALUE_MAX  256

/*
 * Check params against known (NULL-terminated names): every name known and
 * given once, every value 1..KG_QUERY_VALUE_MAX bytes without control
 * characters, at most KG_QUERY_PARAMS_MAX of them. Returns KG_OK or
 * KG_ERR_INVAL with diag naming the parameter.
 */
kg_err_t kg_query_check(const kg_query_param_t *params, size_t n,
                        const char *const *known,
                        kg_diag_t *diag) KG_MUST_CHECK;

/* The value of name (borrowed), or NULL when it is not among params. */
const char *kg_query_get(const kg_query_param_t *params, size_t n,
                         const char *name);

/*
 * A time for parameter name: "now", an RFC 3339 time or a date (UTC
 * midnight) as kg_time_parse takes them, or a duration back from now
 * ("24h", "30d", "1h30m"). Returns KG_OK with *out in unix seconds, or
 * KG_ERR_INVAL with diag naming the parameter.
 */
kg_err_t kg_query_time(const char *name, const char *value, int64_t now,
                       int64_t *out, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * A page size for parameter name: value NULL gives def, else a whole
 * number from 1 to max. Returns KG_OK or KG_ERR_INVAL (diag).
 */
kg_err_t kg_query_limit(const char *name, const char *value, size_t def,
                        size_t max, size_t *out, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Copy value (NULL: "") into dst of len bytes for parameter name. Returns
 * KG_OK or KG_ERR_INVAL (diag) when it does not fit.
 */
kg_err_t kg_query_copy(const char *name, const char *value, char *dst,
                       size_t len, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Cursors: an opaque position in a newest-first listing, (at, id) of the
 * last row handed out, bound to the kind of listing and to its filters
 * (a scope hash; not the time range or the page size, so that a range
 * relative to now still pages). Base64url (no padding) of 26 bytes:
 * version 1, kind, at and id (big-endian int64), scope (u32), CRC-32 of
 * the preceding 22 bytes. A cursor is not a secret and not a capability:
 * the filters are given again with every page. It is strictly checked:
 * length, alphabet, canonical encoding, version, kind, checksum, scope,
 * at >= 0, id >= 1.
 */
#define KG_QUERY_CURSOR_LEN    35
#define KG_QUERY_CURSOR_STRLEN (KG_QUERY_CURSOR_LEN + 1)
#define KG_QUERY_CURSOR_EVENTS 'e' /* usage events */
#define KG_QUERY_CURSOR_AUDIT  'a' /* audit events */

/* The scope hash: start with KG_QUERY_SCOPE_INIT, add each filter field. */
#define KG_QUERY_SCOPE_INIT 0u
uint32_t kg_query_scope_str(uint32_t scope, const char *s);
uint32_t kg_query_scope_int(uint32_t scope, int64_t v);

/* Write the cursor of (kind, at, id, scope) to out. */
void kg_query_cursor_encode(char kind, int64_t at, int64_t id, uint32_t scope,
                            char out[KG_QUERY_CURSOR_STRLEN]);

/*
 * Read cursor s of kind for a listing with this scope. Returns KG_OK with
 * *at and *id, or KG_ERR_INVAL with diag ("cursor: ...") for anything
 * else: malformed, tampered with, of another kind or of other filters.
 */
kg_err_t kg_query_cursor_decode(const char *s, char kind, uint32_t scope,
                                int64_t *at, int64_t *id,
                                kg_diag_t *diag) KG_MUST_CHECK;

/*
 * {"events": [fn(item 0), ...], "nextCursor": next_cursor, or null when
 * it is NULL or ""}: a page of n items of size bytes each (new reference;
 * NULL when out of memory or when fn returns NULL).
 */
json_t *kg_query_page_json(const void *items, size_t n, size_t size,
                           json_t *(*fn)(const void *item),
                           const char *next_cursor);

/*
 * Append one CSV field (RFC 4180) to buf at *pos, preceded by a comma
 * unless it is the row's first: quoted when it holds a comma, a quote, CR
 * or LF, with quotes doubled. buf stays NUL-terminated. Returns false
 * (buf unchanged past *pos) when it does not fit in len bytes.
 */
bool kg_query_csv_field(char *buf, size_t len, size_t *pos, const char *s,
                        bool first);

/* kg_query_csv_field of a decimal integer. */
bool kg_query_csv_int(char *buf, size_t len, size_t *pos, int64_t v,
                      bool first);

/* End the row with CRLF. Returns false when it does not fit. */
bool kg_query_csv_end(char *buf, size_t len, size_t *pos);

#endif /* KEYGATE_QUERY_H */
