/* Admin listener: the dashboard's page and files, built into the binary. */
#include "admin_internal.h"

#include <stdio.h>
#include <string.h>

#include "admin_assets.h"

/* The dashboard's files are served under this prefix; its page at "/". */
#define ADMIN_DASHBOARD_PREFIX "/ui/"
/* Room for "/ui/" + one path segment. */
#define ADMIN_DASHBOARD_PATH_MAX \
    (sizeof(ADMIN_DASHBOARD_PREFIX) + ADMIN_PARAM_MAX)
/* Room for a content type with its charset. */
#define ADMIN_DASHBOARD_TYPE_MAX 96

/*
 * What the dashboard's page may load and do: its own scripts, styles and
 * calls only (no inline script or style, no third party), never framed,
 * never a base or form target elsewhere; strings never become script.
 */
static const char admin_dashboard_csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'";

/* The built-in file for the route's path, or NULL (openapi.json and any
 * other file outside the dashboard's are never served here). */
static const admin_asset_t *admin_dashboard_find(const admin_ctx_t *c)
{
    char path[ADMIN_DASHBOARD_PATH_MAX];

    if (c->nparams == 0) {
        return admin_asset_find("/");
    }
    snprintf(path, sizeof(path), "%s%s", ADMIN_DASHBOARD_PREFIX, c->params[0]);
    return admin_asset_find(path);
}

void admin_h_dashboard(admin_ctx_t *c)
{
    const admin_asset_t *a = admin_dashboard_find(c);
    struct MHD_Response *resp;
    char type[ADMIN_DASHBOARD_TYPE_MAX];

    if (a == NULL) {
        admin_reply_error(c, KG_ERR_NO_ROUTE, "no such dashboard file", NULL);
        return;
    }
    /* Text files are UTF-8 (the asset table cannot hold a ';'). */
    snprintf(type, sizeof(type), "%s%s", a->type,
             strncmp(a->type, "text/", 5) == 0 ? "; charset=utf-8" : "");
    resp = MHD_create_response_from_buffer(a->len, (void *)a->data,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(resp, "Content-Security-Policy",
                                admin_dashboard_csp);
        MHD_add_response_header(resp, "Cross-Origin-Opener-Policy",
                                "same-origin");
        MHD_add_response_header(resp, "Cross-Origin-Resource-Policy",
                                "same-origin");
    }
    admin_reply_response(c, MHD_HTTP_OK, resp);
}
