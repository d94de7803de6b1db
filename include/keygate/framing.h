/* Request header framing checks: size bounds, smuggling-prone fields, Host. */
#ifndef KEYGATE_FRAMING_H
#define KEYGATE_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

#include "keygate/err.h"

/* At most this many request header fields (more → 431). */
#define KG_MAX_HEADERS 100
/*
 * At most this many header bytes, counted as on the wire: for each field
 * name, ": ", value and CRLF (more → 431).
 */
#define KG_MAX_HEADER_BYTES (16 * 1024)
/* A Content-Length value has 1..18 decimal digits, so it fits int64_t. */
#define KG_MAX_CONTENT_LENGTH_DIGITS 18

/*
 * One request header field as collected by the HTTP layer. Both strings
 * are borrowed and need not be NUL-terminated: the lengths rule. Names
 * compare case-insensitively; values may hold any byte. Pass the values
 * exactly as libmicrohttpd stored them (MHD_get_connection_values_n):
 * leading SP/HTAB already stripped, trailing whitespace kept. Note that
 * libmicrohttpd cuts a value at a NUL byte, so the NUL check below only
 * matters for other callers.
 */
typedef struct kg_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} kg_header_t;

/*
 * True when h's name equals name, ASCII case-insensitively. name is a
 * NUL-terminated string (normally lower case, e.g. "content-length").
 */
bool kg_framing_name_is(const kg_header_t *h, const char *name);

/*
 * Check the size bounds of the n headers at h: n <= KG_MAX_HEADERS and the
 * wire size <= KG_MAX_HEADER_BYTES. Returns KG_OK or
 * KG_ERR_HEADERS_TOO_LARGE (431) with a short reason in diag (may be
 * NULL). Borrows h.
 */
kg_err_t kg_framing_check_size(const kg_header_t *h, size_t n,
                               kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Check the framing of a request's n headers at h; http11 is true for an
 * HTTP/1.1 request, false for HTTP/1.0. Runs kg_framing_check_size()
 * first. Returns:
 *   KG_OK
 *   KG_ERR_HEADERS_TOO_LARGE  too many headers or header bytes (431)
 *   KG_ERR_BAD_REQUEST        (400; the caller closes the connection) for:
 *     - a field name that is empty or not all RFC 9110 token characters
 *     - a field value containing CR, LF or NUL
 *     - Content-Length together with Transfer-Encoding
 *     - more than one Content-Length (even with equal values), or one whose
 *       value is not 1..18 plain digits (no sign, no whitespace, no list)
 *     - more than one Transfer-Encoding, or one whose value is not exactly
 *       "chunked" (case-insensitive, no whitespace around it: what
 *       libmicrohttpd frames as chunked; it keeps trailing whitespace and
 *       would read a "chunked " body until the connection closes)
 *     - Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)
 *     - HTTP/1.1 without Host, or more than one Host
 * On error diag (may be NULL) gets a short reason that never echoes a
 * header value, so it may serve as the "%s" detail of the public 400
 * message. Borrows h.
 */
kg_err_t kg_framing_check(const kg_header_t *h, size_t n, bool http11,
                          kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_FRAMING_H */
