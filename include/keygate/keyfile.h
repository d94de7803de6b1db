/* Small secret key files: created once with random bytes, mode 0600. */
#ifndef KEYGATE_KEYFILE_H
#define KEYGATE_KEYFILE_H

#include <stddef.h>

#include "keygate/err.h"

/*
 * Create path with len random bytes (randombytes_buf), mode 0600,
 * refusing to replace an existing file (KG_ERR_EXISTS) — replacing a key
 * would invalidate everything made with it. what names the file in
 * messages ("hash key"). KG_OK, KG_ERR_EXISTS or KG_ERR_IO with diag.
 */
kg_err_t kg_keyfile_create(const char *path, const char *what, size_t len,
                           kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Read exactly len bytes of key material from path into out (which the
 * caller should hold in sodium memory). Refuses a symlink, a file that is
 * not regular, of another size, or readable or writable by group or
 * others. KG_OK or KG_ERR_IO with diag; out is wiped on error.
 */
kg_err_t kg_keyfile_read(const char *path, const char *what, unsigned char *out,
                         size_t len, kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_KEYFILE_H */
