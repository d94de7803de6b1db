/* Small secret key files: created once with random bytes, mode 0600. */
#include "keygate/keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The largest key file keygate reads (it reads 32-byte keys). */
#define KEYFILE_MAX 256

/* Write or read exactly len bytes; false on error or short transfer. */
static bool keyfile_io(int fd, unsigned char *buf, size_t len, bool writing)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = writing ? write(fd, buf + done, len - done)
                            : read(fd, buf + done, len - done);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        done += (size_t)n;
    }
    return true;
}

kg_err_t kg_keyfile_create(const char *path, const char *what, size_t len,
                           kg_diag_t *diag)
{
    unsigned char key[KEYFILE_MAX];
    kg_err_t rc = KG_OK;
    int fd;

    if (len == 0 || len > sizeof(key)) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "bad key length");
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            return kg_diag_fail(diag, KG_ERR_EXISTS,
                                "%s file %s already exists", what, path);
        }
        return kg_diag_fail(diag, KG_ERR_IO, "cannot create %s: %s", path,
                            strerror(errno));
    }
    randombytes_buf(key, len);
    if (!keyfile_io(fd, key, len, true) || fsync(fd) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot write %s: %s", path,
                          strerror(errno));
    }
    sodium_memzero(key, sizeof(key));
    if (close(fd) != 0 && rc == KG_OK) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot write %s: %s", path,
                          strerror(errno));
    }
    if (rc != KG_OK) {
        unlink(path);
    }
    return rc;
}

kg_err_t kg_keyfile_read(const char *path, const char *what, unsigned char *out,
                         size_t len, kg_diag_t *diag)
{
    struct stat st;
    kg_err_t rc = KG_OK;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0) {
        return kg_diag_fail(diag, KG_ERR_IO, "cannot open %s file %s: %s%s",
                            what, path, strerror(errno),
                            errno == ENOENT ? " (run 'keygate init')" : "");
    }
    if (fstat(fd, &st) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot stat %s: %s", path,
                          strerror(errno));
    } else if ((st.st_mode & 077) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO,
                          "%s file %s is accessible by group or others "
                          "(mode %03o); run chmod 600 on it",
                          what, path, (unsigned)(st.st_mode & 0777));
    } else if (!S_ISREG(st.st_mode) || st.st_size != (off_t)len) {
        rc = kg_diag_fail(diag, KG_ERR_IO,
                          "%s file %s must be a regular file of %zu bytes",
                          what, path, len);
    } else if (!keyfile_io(fd, out, len, false)) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot read %s", path);
    }
    close(fd);
    if (rc != KG_OK) {
        sodium_memzero(out, len);
    }
    return rc;
}
