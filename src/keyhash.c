/* The server hash key and keyed BLAKE2b hashing of key secrets. */
#include "keygate/keyhash.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keygate/token.h"

struct kg_keyhash {
    unsigned char key[KG_KEYHASH_KEY_LEN];
};

kg_err_t kg_keyhash_create_file(const char *path, kg_diag_t *diag)
{
    unsigned char key[KG_KEYHASH_KEY_LEN];
    kg_err_t rc = KG_OK;
    ssize_t w;
    int fd;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            return kg_diag_fail(diag, KG_ERR_EXISTS,
                                "hash key file %s already exists", path);
        }
        return kg_diag_fail(diag, KG_ERR_IO, "cannot create %s: %s", path,
                            strerror(errno));
    }
    randombytes_buf(key, sizeof(key));
    w = write(fd, key, sizeof(key));
    sodium_memzero(key, sizeof(key));
    if (w != (ssize_t)sizeof(key) || fsync(fd) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot write %s: %s", path,
                          strerror(errno));
    }
    if (close(fd) != 0 && rc == KG_OK) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot write %s: %s", path,
                          strerror(errno));
    }
    if (rc != KG_OK) {
        unlink(path);
    }
    return rc;
}

kg_err_t kg_keyhash_load(const char *path, kg_keyhash_t **out, kg_diag_t *diag)
{
    kg_keyhash_t *hk = NULL;
    struct stat st;
    kg_err_t rc = KG_OK;
    ssize_t r;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return kg_diag_fail(
            diag, KG_ERR_IO, "cannot open hash key file %s: %s%s", path,
            strerror(errno), errno == ENOENT ? " (run 'keygate init')" : "");
    }
    if (fstat(fd, &st) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot stat %s: %s", path,
                          strerror(errno));
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO,
                          "hash key file %s is accessible by group or others "
                          "(mode %03o); run chmod 600 on it",
                          path, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size != KG_KEYHASH_KEY_LEN) {
        rc = kg_diag_fail(diag, KG_ERR_IO,
                          "hash key file %s must be a regular file of %d "
                          "bytes",
                          path, KG_KEYHASH_KEY_LEN);
        goto out;
    }
    hk = sodium_malloc(sizeof(*hk));
    if (hk == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    r = read(fd, hk->key, sizeof(hk->key));
    if (r != (ssize_t)sizeof(hk->key)) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot read %s", path);
        goto out;
    }
    *out = hk;
    hk = NULL;
out:
    kg_keyhash_free(&hk);
    close(fd);
    return rc;
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
