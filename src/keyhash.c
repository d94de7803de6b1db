/* The server hash key and keyed BLAKE2b hashing of key secrets. */
#include "keygate/keyhash.h"

#include <sodium.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "keygate/keyfile.h"
#include "keygate/token.h"

/*
 * The key and BLAKE2b already keyed with it: hashing copies that state
 * instead of keying a fresh one each time (same digest, a few hundred
 * instructions fewer per verification). The state holds the key, so it
 * lives in the same sodium_malloc memory and every copy is wiped.
 *
 * sodium_malloc puts an allocation at the end of a page, so it is 64-byte
 * aligned (as crypto_generichash_state must be) only when its size is a
 * multiple of 64: the 64-byte aligned first member makes it so.
 */
struct kg_keyhash {
    alignas(64) crypto_generichash_state keyed;
    unsigned char key[KG_KEYHASH_KEY_LEN];
};

_Static_assert(sizeof(struct kg_keyhash) % 64 == 0,
               "sodium_malloc returns an aligned kg_keyhash");
_Static_assert(KG_KEYHASH_LEN == crypto_verify_32_BYTES,
               "kg_keyhash_equal compares with crypto_verify_32");

/* The id hashed with the secret: a token's id is KG_TOKEN_ID_LEN. */
#define KH_ID_MAX 64

static kg_keyhash_t *kh_new(void)
{
    kg_keyhash_t *hk = sodium_malloc(sizeof(*hk));

    if (hk != NULL && ((uintptr_t)hk % 64) != 0) {
        sodium_free(hk); /* never expected, see above */
        hk = NULL;
    }
    return hk;
}

/* Key the prepared state once the key is in place. */
static void kh_prepare(kg_keyhash_t *hk)
{
    crypto_generichash_init(&hk->keyed, hk->key, sizeof(hk->key),
                            KG_KEYHASH_LEN);
}

kg_err_t kg_keyhash_create_file(const char *path, kg_diag_t *diag)
{
    return kg_keyfile_create(path, "hash key", KG_KEYHASH_KEY_LEN, diag);
}

kg_err_t kg_keyhash_load(const char *path, kg_keyhash_t **out, kg_diag_t *diag)
{
    kg_keyhash_t *hk = kh_new();
    kg_err_t rc;

    *out = NULL;
    if (hk == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    rc = kg_keyfile_read(path, "hash key", hk->key, sizeof(hk->key), diag);
    if (rc != KG_OK) {
        kg_keyhash_free(&hk);
        return rc;
    }
    kh_prepare(hk);
    *out = hk;
    return KG_OK;
}

kg_err_t kg_keyhash_from_bytes(const unsigned char key[KG_KEYHASH_KEY_LEN],
                               kg_keyhash_t **out)
{
    kg_keyhash_t *hk = kh_new();

    *out = NULL;
    if (hk == NULL) {
        return KG_ERR_NOMEM;
    }
    memcpy(hk->key, key, KG_KEYHASH_KEY_LEN);
    kh_prepare(hk);
    *out = hk;
    return KG_OK;
}

void kg_keyhash_free(kg_keyhash_t **hk)
{
    if (hk == NULL || *hk == NULL) {
        return;
    }
    /* sodium_free wipes the memory before releasing it. */
    sodium_free(*hk);
    *hk = NULL;
}

void kg_keyhash_compute(const kg_keyhash_t *hk, const char *id,
                        const char *secret, unsigned char out[KG_KEYHASH_LEN])
{
    alignas(64) crypto_generichash_state st = hk->keyed;
    unsigned char msg[KH_ID_MAX + 1 + KG_TOKEN_SECRET_LEN];
    size_t idlen = strlen(id);

    /* "<id>:<secret>" in one update; an id longer than any real one (never
     * seen: ids are validated before they get here) goes piecewise. */
    if (idlen <= KH_ID_MAX) {
        memcpy(msg, id, idlen);
        msg[idlen] = ':';
        memcpy(msg + idlen + 1, secret, KG_TOKEN_SECRET_LEN);
        crypto_generichash_update(&st, msg, idlen + 1 + KG_TOKEN_SECRET_LEN);
        sodium_memzero(msg, idlen + 1 + KG_TOKEN_SECRET_LEN);
    } else {
        crypto_generichash_update(&st, (const unsigned char *)id, idlen);
        crypto_generichash_update(&st, (const unsigned char *)":", 1);
        crypto_generichash_update(&st, (const unsigned char *)secret,
                                  KG_TOKEN_SECRET_LEN);
    }
    crypto_generichash_final(&st, out, KG_KEYHASH_LEN);
    sodium_memzero(&st, sizeof(st));
}

bool kg_keyhash_equal(const unsigned char a[KG_KEYHASH_LEN],
                      const unsigned char b[KG_KEYHASH_LEN])
{
    return crypto_verify_32(a, b) == 0;
}
