/* What the admin listener's files share: the request context and helpers. */
#ifndef KEYGATE_ADMIN_INTERNAL_H
#define KEYGATE_ADMIN_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/admin.h"
#include "keygate/admintokens.h"
#include "keygate/gateway.h"
#include "keygate/keys.h"
#include "keygate/store.h"

/* Path parameters ("{}" segments) of one route, and their length. */
#define ADMIN_MAX_PARAMS 2
#define ADMIN_PARAM_MAX  64
/* Longest query-string value read. */
#define ADMIN_ARG_MAX 1024
/* Room for a request id "adm_" + 8 + 12 hex. */
#define ADMIN_REQUEST_ID_LEN 32
/* Room for a client address. */
#define ADMIN_IP_MAX 64
/* A CSRF token: 32 random bytes, base64url without padding. */
#define ADMIN_CSRF_LEN 43

typedef struct admin_ctx admin_ctx_t;
typedef void (*admin_handler_fn)(admin_ctx_t *c);

/* Who may call a route. */
typedef enum admin_access {
    ADMIN_PUBLIC, /* no credential: health, the sign-in, the dashboard */
    ADMIN_READ,   /* any admin token or session */
    ADMIN_WRITE,  /* a token or session that is not read-only */
} admin_access_t;

/* One route: method, path pattern ("{}" = one segment), access, handler,
 * the query arguments it takes (NULL-terminated; NULL: none). */
typedef struct admin_route {
    const char *method;
    const char *pattern;
    admin_access_t access;
    admin_handler_fn fn;
    const char *const *args;
} admin_route_t;

/* One admin request while its handler runs. */
struct admin_ctx {
    kg_admin_t *admin;
    kg_gateway_t *gw;
    /* The configuration of the request (one reference, to its end). */
    kg_generation_t *gen;
    const kg_config_t *cfg;
    int64_t start_us; /* kg_clock_mono_us() at its first call */
    struct MHD_Connection *conn;
    const admin_route_t *route;
    const char *method;
    char request_id[ADMIN_REQUEST_ID_LEN];
    char client_ip[ADMIN_IP_MAX];
    char params[ADMIN_MAX_PARAMS][ADMIN_PARAM_MAX + 1];
    size_t nparams;
    bool authed;
    bool via_session;
    kg_admin_token_t who;          /* the admin token that acts, when authed */
    char csrf[ADMIN_CSRF_LEN + 1]; /* the session's, when via_session */
    char actor[KG_ACTOR_MAX + 1];
    kg_store_t *store; /* from the listener's pool while the handler runs */
    kg_metrics_shard_t *shard; /* the admin thread's metrics shard */
    json_t *body;              /* the request's JSON object (new), or NULL */
    bool tls; /* the listener speaks TLS (cookies get Secure) */
    /* The answer the handler queued. */
    struct MHD_Response *resp;
    unsigned status;
    const char *error; /* the code of an error answer, or NULL */
};

/* ---- answers (admin.c) ------------------------------------------------ */

/* Answer status with j (stolen; NULL answers 500). */
void admin_reply_json(admin_ctx_t *c, unsigned status, json_t *j);

/* Answer 204 No Content. */
void admin_reply_empty(admin_ctx_t *c);

/*
 * Answer keygate's error body for err ("%s" filled with detail); param
 * (may be NULL) names the request field at fault ("error.param").
 */
void admin_reply_error(admin_ctx_t *c, kg_err_t err, const char *detail,
                       const char *param);

/*
 * Answer a failed library call: KG_ERR_INVAL/TTL_BOUND → 400 with the
 * diag's text (param names the field when known), NOT_FOUND → 404,
 * EXISTS/STATE → 409 with the diag's text, store errors → 503, anything
 * else → 500; internals go to the log, never to the client.
 */
void admin_reply_fail(admin_ctx_t *c, kg_err_t rc, const kg_diag_t *diag,
                      const char *param);

/* Queue an answer made elsewhere (a stream); takes over resp. */
void admin_reply_response(admin_ctx_t *c, unsigned status,
                          struct MHD_Response *resp);

/* Add the headers every admin answer carries (security, x-request-id). */
void admin_add_common_headers(admin_ctx_t *c, struct MHD_Response *resp);

/* ---- the store pool (admin.c) ----------------------------------------- */

/* A store connection of the listener's pool (waits for a free one). */
kg_store_t *admin_store_take(kg_admin_t *a);
void admin_store_give(kg_admin_t *a, kg_store_t *s);

/* ---- input (admin.c) -------------------------------------------------- */

/* The query argument name, or NULL (borrowed from libmicrohttpd). */
const char *admin_arg(admin_ctx_t *c, const char *name);

/*
 * The request body as a JSON object: true when there is one; otherwise
 * answers 400 (no body, not JSON, not an object) and returns false.
 */
bool admin_need_body(admin_ctx_t *c);

/* A keys context acting as the caller, over c->store. */
void admin_keys_ctx(admin_ctx_t *c, kg_keys_ctx_t *ctx);

/* After a change: the gateway's key cache and policy see it now. */
void admin_changed(admin_ctx_t *c);

/* ---- sessions (admin_session.c) --------------------------------------- */

typedef struct admin_sessions admin_sessions_t;

/* Sessions held at once at most; the oldest goes first past it. */
#define ADMIN_SESSIONS_MAX 1024
/* The session cookie's name. */
#define ADMIN_SESSION_COOKIE "kg_session"

kg_err_t admin_sessions_new(int64_t ttl, admin_sessions_t **out) KG_MUST_CHECK;
void admin_sessions_free(admin_sessions_t **s);

/*
 * Open a session for token (copied): its id (cookie value, base64url,
 * ADMIN_CSRF_LEN characters) into sid and its CSRF token into csrf (each
 * ADMIN_CSRF_LEN + 1 bytes); *expires the end. KG_ERR_NOMEM.
 */
kg_err_t admin_sessions_open(admin_sessions_t *s, const kg_admin_token_t *t,
                             int64_t now, char *sid, char *csrf,
                             int64_t *expires) KG_MUST_CHECK;

/*
 * Find the live session of the cookie value sid: true with the token id
 * (KG_TOKEN_ID_LEN + 1 bytes), its CSRF token (ADMIN_CSRF_LEN + 1 bytes)
 * and its end; false when unknown or expired.
 */
bool admin_sessions_find(admin_sessions_t *s, const char *sid, int64_t now,
                         char *token_id, char *csrf, int64_t *expires);

/* End the session of sid (sign-out); nothing when unknown. */
void admin_sessions_close(admin_sessions_t *s, const char *sid);

/* End every session of an admin token (revoked). */
void admin_sessions_close_token(admin_sessions_t *s, const char *token_id);

/* ---- handlers ------------------------------------------------------------ */

/* admin.c */
void admin_h_healthz(admin_ctx_t *c);
void admin_h_readyz(admin_ctx_t *c);
void admin_h_session_create(admin_ctx_t *c);
void admin_h_session_get(admin_ctx_t *c);
void admin_h_session_delete(admin_ctx_t *c);

/* admin_keys.c */
void admin_h_keys_list(admin_ctx_t *c);
void admin_h_keys_create(admin_ctx_t *c);
void admin_h_key_get(admin_ctx_t *c);
void admin_h_key_update(admin_ctx_t *c);
void admin_h_key_delete(admin_ctx_t *c);
void admin_h_key_disable(admin_ctx_t *c);
void admin_h_key_enable(admin_ctx_t *c);
void admin_h_key_rotate(admin_ctx_t *c);
void admin_h_key_revoke(admin_ctx_t *c);

/* admin_workspaces.c */
void admin_h_workspaces_list(admin_ctx_t *c);
void admin_h_workspaces_create(admin_ctx_t *c);
void admin_h_workspace_get(admin_ctx_t *c);
void admin_h_workspace_update(admin_ctx_t *c);
void admin_h_workspace_credits(admin_ctx_t *c);
void admin_h_credentials_list(admin_ctx_t *c);
void admin_h_credential_put(admin_ctx_t *c);
void admin_h_credential_delete(admin_ctx_t *c);

/* admin_usage.c */
void admin_h_usage(admin_ctx_t *c);
void admin_h_usage_events(admin_ctx_t *c);
void admin_h_audit(admin_ctx_t *c);

/* admin_dashboard.c: "/" and "/ui/{}" answer the built-in files. */
void admin_h_dashboard(admin_ctx_t *c);

/* admin_report.c */
void admin_h_config(admin_ctx_t *c);
void admin_h_openapi(admin_ctx_t *c);
void admin_h_metrics(admin_ctx_t *c);

#endif /* KEYGATE_ADMIN_INTERNAL_H */
