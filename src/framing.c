/* Request header framing checks: size bounds, smuggling-prone fields, Host. */
#include "keygate/framing.h"

#include <string.h>

/* Bytes a field adds on the wire besides name and value: ": " and CRLF. */
#define FRAMING_FIELD_OVERHEAD 4

static char framing_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* RFC 9110 tchar. */
static bool framing_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
        (c >= 'a' && c <= 'z')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool framing_name_valid(const kg_header_t *h)
{
    if (h->name == NULL || h->name_len == 0) {
        return false;
    }
    for (size_t i = 0; i < h->name_len; i++) {
        if (!framing_is_tchar((unsigned char)h->name[i])) {
            return false;
        }
    }
    return true;
}

static bool framing_value_valid(const kg_header_t *h)
{
    if (h->value == NULL) {
        return h->value_len == 0;
    }
    for (size_t i = 0; i < h->value_len; i++) {
        char c = h->value[i];
        if (c == '\r' || c == '\n' || c == '\0') {
            return false;
        }
    }
    return true;
}

/* 1..KG_MAX_CONTENT_LENGTH_DIGITS decimal digits and nothing else. */
static bool framing_content_length_valid(const kg_header_t *h)
{
    if (h->value_len == 0 || h->value_len > KG_MAX_CONTENT_LENGTH_DIGITS) {
        return false;
    }
    for (size_t i = 0; i < h->value_len; i++) {
        if (h->value[i] < '0' || h->value[i] > '9') {
            return false;
        }
    }
    return true;
}

/*
 * Exactly "chunked" in any case, nothing around it: the test
 * libmicrohttpd 0.9.75 itself uses to decide on chunked decoding. It strips
 * leading whitespace but keeps trailing whitespace, and frames a body with
 * "chunked " as read-until-close, so any slack here would let the two
 * disagree on where the body ends.
 */
static bool framing_transfer_encoding_valid(const kg_header_t *h)
{
    static const char chunked[] = "chunked";
    const size_t chunked_len = sizeof(chunked) - 1;

    if (h->value_len != chunked_len) {
        return false;
    }
    for (size_t i = 0; i < chunked_len; i++) {
        if (framing_lower(h->value[i]) != chunked[i]) {
            return false;
        }
    }
    return true;
}

bool kg_framing_name_is(const kg_header_t *h, const char *name)
{
    size_t len = strlen(name);

    if (h->name == NULL || h->name_len != len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (framing_lower(h->name[i]) != framing_lower(name[i])) {
            return false;
        }
    }
    return true;
}

kg_err_t kg_framing_check_size(const kg_header_t *h, size_t n, kg_diag_t *diag)
{
    size_t total = 0;

    if (n > KG_MAX_HEADERS) {
        return kg_diag_fail(diag, KG_ERR_HEADERS_TOO_LARGE,
                            "more than %d header fields", KG_MAX_HEADERS);
    }
    for (size_t i = 0; i < n; i++) {
        /* Each term is bounded first, so the sum cannot wrap. */
        if (h[i].name_len > KG_MAX_HEADER_BYTES ||
            h[i].value_len > KG_MAX_HEADER_BYTES) {
            total = (size_t)KG_MAX_HEADER_BYTES + 1;
            break;
        }
        total += h[i].name_len + h[i].value_len + FRAMING_FIELD_OVERHEAD;
        if (total > KG_MAX_HEADER_BYTES) {
            break;
        }
    }
    if (total > KG_MAX_HEADER_BYTES) {
        return kg_diag_fail(diag, KG_ERR_HEADERS_TOO_LARGE,
                            "header fields exceed %d bytes",
                            KG_MAX_HEADER_BYTES);
    }
    return KG_OK;
}

/* Counts of the fields whose number matters, filled by one pass. */
typedef struct framing_counts {
    size_t content_length;
    size_t transfer_encoding;
    size_t host;
} framing_counts_t;

/* Per-field checks and counting; returns KG_OK or KG_ERR_BAD_REQUEST. */
static kg_err_t framing_scan(const kg_header_t *h, size_t n,
                             framing_counts_t *counts, kg_diag_t *diag)
{
    memset(counts, 0, sizeof(*counts));
    for (size_t i = 0; i < n; i++) {
        if (!framing_name_valid(&h[i])) {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "invalid header field name");
        }
        if (!framing_value_valid(&h[i])) {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "header field value contains CR, LF or NUL");
        }
        if (kg_framing_name_is(&h[i], "content-length")) {
            counts->content_length++;
            if (!framing_content_length_valid(&h[i])) {
                return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                    "Content-Length is not a plain decimal "
                                    "number of at most %d digits",
                                    KG_MAX_CONTENT_LENGTH_DIGITS);
            }
        } else if (kg_framing_name_is(&h[i], "transfer-encoding")) {
            counts->transfer_encoding++;
            if (!framing_transfer_encoding_valid(&h[i])) {
                return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                    "Transfer-Encoding other than chunked");
            }
        } else if (kg_framing_name_is(&h[i], "host")) {
            counts->host++;
        }
    }
    return KG_OK;
}

kg_err_t kg_framing_check(const kg_header_t *h, size_t n, bool http11,
                          kg_diag_t *diag)
{
    framing_counts_t counts;
    kg_err_t rc;

    rc = kg_framing_check_size(h, n, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = framing_scan(h, n, &counts, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = KG_ERR_BAD_REQUEST;
    if (counts.content_length > 0 && counts.transfer_encoding > 0) {
        kg_diag_set(diag, "Content-Length together with Transfer-Encoding");
        goto out;
    }
    if (counts.content_length > 1) {
        kg_diag_set(diag, "repeated Content-Length");
        goto out;
    }
    if (counts.transfer_encoding > 1) {
        kg_diag_set(diag, "repeated Transfer-Encoding");
        goto out;
    }
    if (counts.transfer_encoding > 0 && !http11) {
        kg_diag_set(diag, "Transfer-Encoding in an HTTP/1.0 request");
        goto out;
    }
    if (counts.host > 1) {
        kg_diag_set(diag, "repeated Host");
        goto out;
    }
    if (http11 && counts.host == 0) {
        kg_diag_set(diag, "HTTP/1.1 request without Host");
        goto out;
    }
    rc = KG_OK;
out:
    return rc;
}
