/* The API key token format: generation, parsing, checksum and display. */
#ifndef KEYGATE_TOKEN_H
#define KEYGATE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

#include "keygate/err.h"

/*
 * Token: <prefix>_<id>_<secret><check>
 *   prefix  1..16 of [a-z0-9], default "kg" ("kgadm" for admin tokens)
 *   id      12 base62 characters (public)
 *   secret  32 base62 characters (~190 bits)
 *   check   6 base62 characters: CRC32 of everything before it
 * Access key = <prefix>_<id>; secret key = <secret><check>.
 */
#define KG_TOKEN_PREFIX_MAX 16
#define KG_TOKEN_ID_LEN     12
#define KG_TOKEN_SECRET_LEN 32
#define KG_TOKEN_CHECK_LEN  6
#define KG_TOKEN_MAX_LEN                                                   \
    (KG_TOKEN_PREFIX_MAX + 1 + KG_TOKEN_ID_LEN + 1 + KG_TOKEN_SECRET_LEN + \
     KG_TOKEN_CHECK_LEN)
/* Room for a token and its NUL. */
#define KG_TOKEN_STRLEN (KG_TOKEN_MAX_LEN + 1)
/* Display: <prefix>_<id>_...<last4>. */
#define KG_TOKEN_DISPLAY_STRLEN (KG_TOKEN_PREFIX_MAX + KG_TOKEN_ID_LEN + 12)
#define KG_TOKEN_DEFAULT_PREFIX "kg"
#define KG_TOKEN_ADMIN_PREFIX   "kgadm"

typedef struct kg_token {
    char prefix[KG_TOKEN_PREFIX_MAX + 1];
    char id[KG_TOKEN_ID_LEN + 1];
    char secret[KG_TOKEN_SECRET_LEN + 1]; /* sensitive: wipe after use */
} kg_token_t;

/* True when prefix is 1..16 characters of [a-z0-9]. */
bool kg_token_prefix_valid(const char *prefix);

/* True when s is exactly KG_TOKEN_ID_LEN base62 characters. */
bool kg_token_id_valid(const char *s);

/* Fill buf with n random base62 characters (no NUL) from the CSPRNG. */
void kg_token_random_base62(char *buf, size_t n);

/*
 * Make a new token with a fresh random id and secret. Returns KG_OK, or
 * KG_ERR_INVAL for a bad prefix. The caller wipes *out with
 * kg_token_wipe() when done.
 */
kg_err_t kg_token_generate(const char *prefix, kg_token_t *out) KG_MUST_CHECK;

/* Like kg_token_generate() but keep the given id (for rotation). */
kg_err_t kg_token_regenerate(const char *prefix, const char *id,
                             kg_token_t *out) KG_MUST_CHECK;

/*
 * Parse a full token of len bytes (not NUL-terminated necessarily).
 * Checks shape and checksum only; touches no store. Returns KG_OK or
 * KG_ERR_INVALID_KEY; *out is wiped on failure.
 */
kg_err_t kg_token_parse(const char *s, size_t len,
                        kg_token_t *out) KG_MUST_CHECK;

/*
 * Parse the two halves used by HTTP Basic: access key "<prefix>_<id>" and
 * secret key "<secret><check>". Same result as kg_token_parse() on the
 * joined token.
 */
kg_err_t kg_token_parse_pair(const char *access, size_t access_len,
                             const char *secret, size_t secret_len,
                             kg_token_t *out) KG_MUST_CHECK;

/*
 * Write the full token (with its checksum) into buf of len bytes. Returns
 * KG_OK or KG_ERR_INVAL when buf is too small.
 */
kg_err_t kg_token_format(const kg_token_t *tok, char *buf,
                         size_t len) KG_MUST_CHECK;

/* Write "<prefix>_<id>_...<last4>" for humans. Returns buf. */
const char *kg_token_display(const char *prefix, const char *id,
                             const char *last4, char *buf, size_t len);

/* Zero the token's memory. */
void kg_token_wipe(kg_token_t *tok);

#endif /* KEYGATE_TOKEN_H */
