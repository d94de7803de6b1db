/* The server secret key and authenticated encryption of values at rest. */
#ifndef KEYGATE_SECRETBOX_H
#define KEYGATE_SECRETBOX_H

#include <stddef.h>

#include "keygate/err.h"

#define KG_SECRETBOX_KEY_LEN   32 /* crypto_secretbox_KEYBYTES */
#define KG_SECRETBOX_NONCE_LEN 24 /* crypto_secretbox_NONCEBYTES */
#define KG_SECRETBOX_MAC_LEN   16 /* crypto_secretbox_MACBYTES */
/* The longest value sealed (and the longest context bound to it). */
#define KG_SECRETBOX_PLAIN_MAX   65536
#define KG_SECRETBOX_CONTEXT_MAX 1024

typedef struct kg_secretbox kg_secretbox_t;

/*
 * Create the secret key file at path: 32 random bytes, mode 0600, refusing
 * to overwrite an existing file (that would make every value sealed under
 * it unreadable). Returns KG_OK, KG_ERR_EXISTS, or KG_ERR_IO with diag.
 */
kg_err_t kg_secretbox_create_file(const char *path,
                                  kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Load the secret key file (not following a final symbolic link). Refuses a
 * file readable or writable by group or others, or not a regular file of
 * exactly 32 bytes. On KG_OK *out is new, the key in locked read-only
 * memory (kg_secretbox_free); on KG_ERR_IO or KG_ERR_NOMEM *out is NULL and
 * diag says why.
 */
kg_err_t kg_secretbox_load(const char *path, kg_secretbox_t **out,
                           kg_diag_t *diag) KG_MUST_CHECK;

/* A secret key from raw bytes (tests). *out is new. KG_OK or NOMEM. */
kg_err_t kg_secretbox_from_bytes(const unsigned char key[KG_SECRETBOX_KEY_LEN],
                                 kg_secretbox_t **out) KG_MUST_CHECK;

/* Wipe and free *sb; sets *sb to NULL (no-op on NULL). */
void kg_secretbox_free(kg_secretbox_t **sb);

/*
 * Seal plain (plain_len bytes, 1..KG_SECRETBOX_PLAIN_MAX) bound to context
 * (context_len bytes, 0..KG_SECRETBOX_CONTEXT_MAX; e.g. the identity of the
 * row that stores the result). crypto_secretbox (XSalsa20-Poly1305) under
 * a key derived from the server key and context, with a fresh random
 * nonce written to nonce. cipher receives plain_len + KG_SECRETBOX_MAC_LEN
 * bytes. Returns KG_OK, or KG_ERR_INVAL for a length out of bounds.
 */
kg_err_t kg_secretbox_seal(const kg_secretbox_t *sb, const void *context,
                           size_t context_len, const void *plain,
                           size_t plain_len,
                           unsigned char nonce[KG_SECRETBOX_NONCE_LEN],
                           unsigned char *cipher) KG_MUST_CHECK;

/*
 * Open what kg_secretbox_seal made: plain receives cipher_len -
 * KG_SECRETBOX_MAC_LEN bytes. Fails, writing nothing to plain, unless the
 * server key, the context and the nonce are those of the seal and the
 * ciphertext is unaltered: a value moved to another context does not
 * open. Returns KG_OK, or KG_ERR_STORE_CORRUPT (forged, altered, moved or
 * sealed under another key; lengths out of bounds) without a diag: the
 * caller names the value in its own message.
 */
kg_err_t kg_secretbox_open(const kg_secretbox_t *sb, const void *context,
                           size_t context_len,
                           const unsigned char nonce[KG_SECRETBOX_NONCE_LEN],
                           const unsigned char *cipher, size_t cipher_len,
                           void *plain) KG_MUST_CHECK;

#endif /* KEYGATE_SECRETBOX_H */
