/* Files built into the binary and served by the admin listener. */
#ifndef KEYGATE_ADMIN_ASSETS_H
#define KEYGATE_ADMIN_ASSETS_H

#include <stddef.h>

/* One file: the URL path it is served at, its type, its bytes. */
typedef struct admin_asset {
    const char *path;
    const char *type;
    const unsigned char *data; /* len bytes, then a NUL */
    size_t len;
} admin_asset_t;

/* Generated at build time from the files listed in CMakeLists.txt. */
extern const admin_asset_t admin_assets[];
extern const size_t admin_assets_count;

/* The asset served at path, or NULL. */
const admin_asset_t *admin_asset_find(const char *path);

#endif /* KEYGATE_ADMIN_ASSETS_H */
