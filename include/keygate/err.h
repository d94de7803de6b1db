/* keygate's one error vocabulary: codes, HTTP mapping and public messages. */
#ifndef KEYGATE_ERR_H
#define KEYGATE_ERR_H

#include <stdbool.h>
#include <stddef.h>

/* Mark a function whose result must be looked at. */
#define KG_MUST_CHECK        __attribute__((warn_unused_result))
#define KG_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/*
 * X(NAME, http_status, type, code, message)
 *
 * The message is the public text of product.md section 4. Where it contains
 * "%s", the HTTP layer fills in a detail (a reason, a model name). Internal
 * errors carry a generic public message: details go to the log or to a
 * kg_diag_t, never to a client.
 */
#define KG_ERR_MAP(X)                                                          \
    X(OK, 200, "", "", "OK")                                                   \
    X(NOMEM, 500, "server_error", "internal_error", "Internal server error.")  \
    X(INTERNAL, 500, "server_error", "internal_error",                         \
      "Internal server error.")                                                \
    X(INVAL, 400, "invalid_request_error", "invalid_request",                  \
      "Invalid request: %s")                                                   \
    X(NOT_FOUND, 404, "invalid_request_error", "not_found", "Not found.")      \
    X(EXISTS, 409, "invalid_request_error", "conflict",                        \
      "Conflict: the object already exists.")                                  \
    X(STATE, 409, "invalid_request_error", "conflict",                         \
      "Conflict: the object's state does not allow this.")                     \
    X(TTL_BOUND, 400, "invalid_request_error", "invalid_request",              \
      "Invalid request: %s")                                                   \
    X(IO, 500, "server_error", "internal_error", "Internal server error.")     \
    X(CONFIG, 500, "server_error", "internal_error", "Internal server error.") \
    X(STORE, 503, "server_error", "store_unavailable",                         \
      "Service unavailable: the key store is unavailable.")                    \
    X(STORE_BUSY, 503, "server_error", "store_unavailable",                    \
      "Service unavailable: the key store is unavailable.")                    \
    X(STORE_MISSING, 503, "server_error", "store_unavailable",                 \
      "Service unavailable: the key store is unavailable.")                    \
    X(STORE_CORRUPT, 503, "server_error", "store_unavailable",                 \
      "Service unavailable: the key store is unavailable.")                    \
    X(STORE_VERSION, 503, "server_error", "store_unavailable",                 \
      "Service unavailable: the key store is unavailable.")                    \
    X(NO_KEY, 401, "authentication_error", "missing_api_key",                  \
      "Unauthorized: No API key provided. Expected 'Authorization: Bearer "    \
      "your-api-token' header or 'x-api-key: your-api-token' header")          \
    X(INVALID_KEY, 401, "authentication_error", "invalid_api_key",             \
      "Unauthorized: Invalid keygate API token. Please make sure the token "   \
      "is not deleted or disabled.")                                           \
    X(KEY_EXPIRED, 401, "authentication_error", "expired_api_key",             \
      "Unauthorized: keygate API key has expired.")                            \
    X(USAGE_LIMIT, 401, "authentication_error", "usage_limit_reached",         \
      "Unauthorized: keygate API key reached its usage limit.")                \
    X(PERIOD_LIMIT, 401, "authentication_error", "period_limit_reached",       \
      "Unauthorized: keygate API key reached its current period usage "        \
      "limit.")                                                                \
    X(NO_CREDITS, 402, "insufficient_quota", "insufficient_credits",           \
      "Payment required: workspace has no credits left.")                      \
    X(ACCESS_DENIED, 403, "permission_error", "access_denied",                 \
      "Access denied: %s")                                                     \
    X(UNKNOWN_MODEL, 404, "invalid_request_error", "model_not_found",          \
      "The model '%s' does not exist or you do not have access to it.")        \
    X(RATE_LIMITED, 429, "rate_limit_error", "rate_limit_exceeded",            \
      "Rate limit exceeded: %s")                                               \
    X(AUTH_THROTTLED, 429, "rate_limit_error", "too_many_failed_auth",         \
      "Too many failed authentication attempts from this client. Retry "       \
      "later.")                                                                \
    X(BAD_REQUEST, 400, "invalid_request_error", "invalid_request",            \
      "Invalid request: %s")                                                   \
    X(BODY_TOO_LARGE, 413, "invalid_request_error", "request_too_large",       \
      "Request body too large.")                                               \
    X(HEADERS_TOO_LARGE, 431, "invalid_request_error",                         \
      "request_header_fields_too_large", "Request header fields too large.")   \
    X(NO_ROUTE, 404, "invalid_request_error", "unknown_route",                 \
      "Unknown route: %s")                                                     \
    X(METHOD, 405, "invalid_request_error", "method_not_allowed",              \
      "Method not allowed.")                                                   \
    X(BAD_GATEWAY, 502, "api_error", "bad_gateway",                            \
      "Bad gateway: the provider could not be reached or answered "            \
      "garbage.")                                                              \
    X(GATEWAY_TIMEOUT, 504, "api_error", "gateway_timeout",                    \
      "Gateway timeout: the provider did not answer in time.")                 \
    X(UNAVAILABLE, 503, "server_error", "unavailable",                         \
      "Service unavailable: %s")                                               \
    X(ADMIN_AUTH, 401, "authentication_error", "invalid_admin_token",          \
      "Unauthorized: a valid admin token is required.")                        \
    X(FORBIDDEN, 403, "permission_error", "forbidden", "Forbidden: %s")

typedef enum kg_err {
#define KG_ERR_ENUM(name, status, type, code, msg) KG_ERR_##name,
    KG_ERR_MAP(KG_ERR_ENUM)
#undef KG_ERR_ENUM
        KG_ERR__COUNT
} kg_err_t;

#define KG_OK KG_ERR_OK

/* The symbolic name ("INVALID_KEY"); "UNKNOWN" for an out-of-range value. */
const char *kg_err_name(kg_err_t err);

/* Whether err is one of the store's errors (KG_ERR_STORE*): the store
 * could not do it, not a verdict on the request. */
bool kg_err_is_store(kg_err_t err);

/* The HTTP status the error maps to (500 for an out-of-range value). */
int kg_err_http_status(kg_err_t err);

/* The OpenAI-style error "type" and "code" strings. */
const char *kg_err_type(kg_err_t err);
const char *kg_err_code(kg_err_t err);

/* The public message template; may contain one "%s" for a detail. */
const char *kg_err_message(kg_err_t err);

/*
 * The public message of err with its "%s" (if any) replaced by detail
 * (NULL = ""), written to buf. Returns buf.
 */
const char *kg_err_format(kg_err_t err, const char *detail, char *buf,
                          size_t len);

/*
 * A human explanation of a failure, for operators (CLI, logs). Never holds a
 * secret: callers put names and ids in it, not tokens.
 */
#define KG_DIAG_MAX 512
typedef struct kg_diag {
    char msg[KG_DIAG_MAX];
} kg_diag_t;

/* Set diag's message (no-op when diag is NULL). */
void kg_diag_set(kg_diag_t *diag, const char *fmt, ...) KG_PRINTF(2, 3);

/* Set diag's message and return err, for `return kg_diag_fail(...)`. */
kg_err_t kg_diag_fail(kg_diag_t *diag, kg_err_t err, const char *fmt, ...)
    KG_PRINTF(3, 4);

#endif /* KEYGATE_ERR_H */
