/* The server hash key and keyed BLAKE2b hashing of key secrets. */
#include "keygate/keyhash.h"

#include <sodium.h>
#include <string.h>

#include "keygate/keyfile.h"
#include "keygate/token.h"

struct kg_keyhash {
    unsigned char key[KG_KEYHASH_KEY_LEN];
};

kg_err_t kg_keyhash_create_file(const char *path, kg_diag_t *diag)
{
    return kg_keyfile_create(path, "hash key", KG_KEYHASH_KEY_LEN, diag);
}

kg_err_t kg_keyhash_load(const char *path, kg_keyhash_t **out, kg_diag_t *diag)
{
    kg_keyhash_t *hk = sodium_malloc(sizeof(*hk));
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
    *out = hk;
    return KG_OK;
}

kg_err_t kg_keyhash_from_bytes(const unsigned char key[KG_KEYHASH_KEY_LEN],
                               kg_keyhash_t **out)
{
    kg_keyhash_t *hk = sodium_malloc(sizeof(*hk));

    *out = NULL;
    if (hk == NULL) {
        return KG_ERR_NOMEM;
    }
    memcpy(hk->key, key, KG_KEYHASH_KEY_LEN);
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
    crypto_generichash_state st;

    crypto_generichash_init(&st, hk->key, sizeof(hk->key), KG_KEYHASH_LEN);
    crypto_generichash_update(&st, (const unsigned char *)id, strlen(id));
    crypto_generichash_update(&st, (const unsigned char *)":", 1);
    crypto_generichash_update(&st, (const unsigned char *)secret,
                              KG_TOKEN_SECRET_LEN);
    crypto_generichash_final(&st, out, KG_KEYHASH_LEN);
    sodium_memzero(&st, sizeof(st));
}

bool kg_keyhash_equal(const unsigned char a[KG_KEYHASH_LEN],
                      const unsigned char b[KG_KEYHASH_LEN])
{
    return sodium_memcmp(a, b, KG_KEYHASH_LEN) == 0;
}
