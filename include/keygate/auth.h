/* Client credential extraction: which key a request presents, if any. */
#ifndef KEYGATE_AUTH_H
#define KEYGATE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "keygate/err.h"
#include "keygate/framing.h"
#include "keygate/token.h"

/*
 * At most this many bytes in an Authorization or x-api-key value (more →
 * KG_ERR_INVALID_KEY). Far above every valid form: the longest, Basic, is
 * 6 + 4 * ceil(68 / 3) = 98 bytes.
 */
#define KG_MAX_CREDENTIAL_BYTES 512
/* Room for a decoded Basic credential of KG_MAX_CREDENTIAL_BYTES base64. */
#define KG_MAX_BASIC_DECODED_BYTES (KG_MAX_CREDENTIAL_BYTES / 4 * 3)
/*
 * A query parameter name or value longer than this after percent-decoding
 * is neither a key parameter name nor a token, so it is not decoded.
 */
#define KG_MAX_QUERY_PART_BYTES KG_TOKEN_MAX_LEN

/* The credential form a request used, for logs. */
typedef enum kg_auth_form {
    KG_AUTH_FORM_NONE = 0,    /* no credential / error */
    KG_AUTH_FORM_BEARER,      /* Authorization: Bearer <token> */
    KG_AUTH_FORM_X_API_KEY,   /* x-api-key: <token> */
    KG_AUTH_FORM_BASIC,       /* Authorization: Basic b64(<access>:<secret>) */
    KG_AUTH_FORM_BEARER_PAIR, /* Authorization: Bearer <access>:<secret> */
} kg_auth_form_t;

/*
 * Find and parse the client credential of a request: its n headers at h
 * and its raw query string (the part after '?', a leading '?' is skipped;
 * NULL or "" when there is none). Checks shape, checksum and prefix only;
 * touches no store.
 *
 * Accepted (scheme names case-insensitive, scheme and credentials
 * separated by one or more SP, SP/HTAB around the whole value ignored):
 *   Authorization: Bearer <token>
 *   x-api-key: <token>
 *   Authorization: Basic base64(<access key>:<secret key>)
 *     (standard alphabet, padding required, split at the first ':')
 *   Authorization: Bearer <access key>:<secret key>
 * Authorization and x-api-key together are accepted only when both carry
 * the same token (some SDKs send both); *form then names the
 * Authorization form.
 *
 * Returns:
 *   KG_OK               *tok holds the parsed token; the caller wipes it
 *                       with kg_token_wipe() when done
 *   KG_ERR_NO_KEY       no Authorization, no x-api-key, no key in query
 *   KG_ERR_INVALID_KEY  any other case: a query parameter for which
 *                       kg_auth_query_arg_has_key() is true (even next to
 *                       a good header; '&' and ';' separate parameters),
 * repeated Authorization or x-api-key, two different credentials, an unknown
 *                       scheme, a TAB or nothing after the scheme, an
 *                       empty value or one over KG_MAX_CREDENTIAL_BYTES,
 *                       bad base64, no ':' in Basic, bad shape or
 *                       checksum, an admin ("kgadm") token
 * On error *tok is wiped. form (may be NULL) gets the form used, or
 * KG_AUTH_FORM_NONE on error. diag (may be NULL) gets an operator-facing
 * reason for the log that never contains the credential; clients get the
 * one public body of the error code. Borrows h and query; every copy of
 * secret material made here is wiped before return.
 */
kg_err_t kg_auth_extract(const kg_header_t *h, size_t n, const char *query,
                         kg_token_t *tok, kg_auth_form_t *form,
                         kg_diag_t *diag) KG_MUST_CHECK;

/*
 * True when one decoded query argument carries a key: its name is key,
 * api_key, api-key, apikey, token, access_token or x-api-key (ASCII
 * case-insensitive), or its name or value is a well-formed token of any
 * prefix. name and value are already percent-decoded, lengths rule, either
 * may be NULL (absent). kg_auth_extract() applies this to every parameter
 * of the raw query; an HTTP layer that only sees decoded arguments (e.g.
 * libmicrohttpd's MHD_GET_ARGUMENT_KIND) calls it per argument and answers
 * KG_ERR_INVALID_KEY on true.
 */
bool kg_auth_query_arg_has_key(const char *name, size_t name_len,
                               const char *value, size_t value_len);

/*
 * The log name of a form: "none", "bearer", "x-api-key", "basic",
 * "bearer-pair"; "unknown" for an out-of-range value. Static string.
 */
const char *kg_auth_form_name(kg_auth_form_t form);

#endif /* KEYGATE_AUTH_H */
