/* The server hash key and keyed BLAKE2b hashing of key secrets. */
#ifndef KEYGATE_KEYHASH_H
#define KEYGATE_KEYHASH_H

#include <stdbool.h>

#include "keygate/err.h"

#define KG_KEYHASH_KEY_LEN 32
#define KG_KEYHASH_LEN     32

typedef struct kg_keyhash kg_keyhash_t;

/*
 * Create the hash key file at path: 32 random bytes, mode 0600, refusing to
 * overwrite an existing file (that would invalidate every key). Returns
 * KG_OK, KG_ERR_EXISTS, or KG_ERR_IO with diag.
 */
kg_err_t kg_keyhash_create_file(const char *path,
                                kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Load the hash key file. Refuses a file readable or writable by group or
 * others, or not exactly 32 bytes. On KG_OK *out is new (free it with
 * kg_keyhash_free); on error *out is NULL and diag says why.
 */
kg_err_t kg_keyhash_load(const char *path, kg_keyhash_t **out,
                         kg_diag_t *diag) KG_MUST_CHECK;

/* A hash key from raw bytes (tests). *out is new. */
kg_err_t kg_keyhash_from_bytes(const unsigned char key[KG_KEYHASH_KEY_LEN],
                               kg_keyhash_t **out) KG_MUST_CHECK;

/* Wipe and free *hk; sets *hk to NULL. */
void kg_keyhash_free(kg_keyhash_t **hk);

/*
 * out = BLAKE2b-256 keyed with the server key over "<id>:<secret>", so a
 * stored hash is bound to its key id. secret is the 32-character secret.
 */
void kg_keyhash_compute(const kg_keyhash_t *hk, const char *id,
                        const char *secret, unsigned char out[KG_KEYHASH_LEN]);

/* Constant-time equality of two hashes. */
bool kg_keyhash_equal(const unsigned char a[KG_KEYHASH_LEN],
                      const unsigned char b[KG_KEYHASH_LEN]);

#endif /* KEYGATE_KEYHASH_H */
