/* The server secret key and authenticated encryption of values at rest. */
#include "keygate/secretbox.h"

#include "keygate/keyfile.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

_Static_assert(KG_SECRETBOX_KEY_LEN == crypto_secretbox_KEYBYTES,
               "secretbox key length");
_Static_assert(KG_SECRETBOX_NONCE_LEN == crypto_secretbox_NONCEBYTES,
               "secretbox nonce length");
_Static_assert(KG_SECRETBOX_MAC_LEN == crypto_secretbox_MACBYTES,
               "secretbox MAC length");

/*
 * crypto_secretbox has no associated data. To bind a sealed value to its
 * context (say, a workspace id and a provider name), each value is sealed
 * under its own key: keyed BLAKE2b-256 of this label (with its NUL) and the
 * context, keyed with the server key. A value opened under any other
 * context, like a row copied onto another row, fails authentication
 * exactly as a forged one does. The label separates this use of the server
 * key from any later one.
 */
static const char secretbox_label[] = "keygate secretbox v1";

struct kg_secretbox {
    unsigned char key[KG_SECRETBOX_KEY_LEN];
};

kg_err_t kg_secretbox_create_file(const char *path, kg_diag_t *diag)
{
    return kg_keyfile_create(path, "secret key", KG_SECRETBOX_KEY_LEN, diag);
}

kg_err_t kg_secretbox_load(const char *path, kg_secretbox_t **out,
                           kg_diag_t *diag)
{
    kg_secretbox_t *sb = sodium_malloc(sizeof(*sb));
    kg_err_t rc;

    *out = NULL;
    if (sb == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
    }
    rc = kg_keyfile_read(path, "secret key", sb->key, sizeof(sb->key), diag);
    if (rc != KG_OK) {
        kg_secretbox_free(&sb);
        return rc;
    }
    (void)sodium_mprotect_readonly(sb);
    *out = sb;
    return KG_OK;
}

kg_err_t kg_secretbox_from_bytes(const unsigned char key[KG_SECRETBOX_KEY_LEN],
                                 kg_secretbox_t **out)
{
    kg_secretbox_t *sb = sodium_malloc(sizeof(*sb));

    *out = NULL;
    if (sb == NULL) {
        return KG_ERR_NOMEM;
    }
    memcpy(sb->key, key, KG_SECRETBOX_KEY_LEN);
    (void)sodium_mprotect_readonly(sb);
    *out = sb;
    return KG_OK;
}

void kg_secretbox_free(kg_secretbox_t **sb)
{
    if (sb == NULL || *sb == NULL) {
        return;
    }
    /* sodium_free makes the memory writable and wipes it before release. */
    sodium_free(*sb);
    *sb = NULL;
}

/* The key of one context: see secretbox_label. */
static void secretbox_subkey(const kg_secretbox_t *sb, const void *context,
                             size_t context_len,
                             unsigned char out[KG_SECRETBOX_KEY_LEN])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, sb->key, sizeof(sb->key),
                            KG_SECRETBOX_KEY_LEN);
    crypto_generichash_update(&st, (const unsigned char *)secretbox_label,
                              sizeof(secretbox_label));
    crypto_generichash_update(&st, context, context_len);
    crypto_generichash_final(&st, out, KG_SECRETBOX_KEY_LEN);
    sodium_memzero(&st, sizeof(st));
}

kg_err_t kg_secretbox_seal(const kg_secretbox_t *sb, const void *context,
                           size_t context_len, const void *plain,
                           size_t plain_len,
                           unsigned char nonce[KG_SECRETBOX_NONCE_LEN],
                           unsigned char *cipher)
{
    unsigned char key[KG_SECRETBOX_KEY_LEN];
    int rc;

    if (plain_len == 0 || plain_len > KG_SECRETBOX_PLAIN_MAX ||
        context_len > KG_SECRETBOX_CONTEXT_MAX) {
        return KG_ERR_INVAL;
    }
    randombytes_buf(nonce, KG_SECRETBOX_NONCE_LEN);
    secretbox_subkey(sb, context, context_len, key);
    rc = crypto_secretbox_easy(cipher, plain, plain_len, nonce, key);
    sodium_memzero(key, sizeof(key));
    return rc == 0 ? KG_OK : KG_ERR_INTERNAL;
}

kg_err_t kg_secretbox_open(const kg_secretbox_t *sb, const void *context,
                           size_t context_len,
                           const unsigned char nonce[KG_SECRETBOX_NONCE_LEN],
                           const unsigned char *cipher, size_t cipher_len,
                           void *plain)
{
    unsigned char key[KG_SECRETBOX_KEY_LEN];
    int rc;

    if (cipher_len <= KG_SECRETBOX_MAC_LEN ||
        cipher_len > KG_SECRETBOX_PLAIN_MAX + KG_SECRETBOX_MAC_LEN ||
        context_len > KG_SECRETBOX_CONTEXT_MAX) {
        return KG_ERR_STORE_CORRUPT;
    }
    secretbox_subkey(sb, context, context_len, key);
    /* Verifies the MAC before it writes anything to plain. */
    rc = crypto_secretbox_open_easy(plain, cipher, cipher_len, nonce, key);
    sodium_memzero(key, sizeof(key));
    return rc == 0 ? KG_OK : KG_ERR_STORE_CORRUPT;
}
