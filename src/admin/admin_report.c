/* Admin API: the effective configuration and the API's own description. */
#include "admin_internal.h"

#include <string.h>

#include "admin_assets.h"

const admin_asset_t *admin_asset_find(const char *path)
{
    for (size_t i = 0; i < admin_assets_count; i++) {
        if (strcmp(admin_assets[i].path, path) == 0) {
            return &admin_assets[i];
        }
    }
    return NULL;
}

/* Answer a built-in file with its type. */
static void admin_reply_asset(admin_ctx_t *c, const admin_asset_t *a)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);

    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    }
    admin_reply_response(c, MHD_HTTP_OK, resp);
}

void admin_h_config(admin_ctx_t *c)
{
    admin_reply_json(c, MHD_HTTP_OK, kg_config_to_json(c->gw->cfg));
}

void admin_h_openapi(admin_ctx_t *c)
{
    const admin_asset_t *a = admin_asset_find("/admin/v1/openapi.json");

    if (a == NULL) {
        admin_reply_error(c, KG_ERR_INTERNAL, NULL, NULL);
        return;
    }
    admin_reply_asset(c, a);
}
