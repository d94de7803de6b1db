/* The access log: one line per request on every route, text or JSON. */
#ifndef KEYGATE_ACCESS_H
#define KEYGATE_ACCESS_H

#include <stddef.h>
#include <stdint.h>

/*
 * One finished request as the gateway saw it: what its access line says
 * and what the metrics count, filled once where the request ends (the
 * proxy for a forwarded request, the HTTP side for an answer keygate made
 * itself) and handed to both, so the two never disagree. Strings are
 * borrowed; NULL or "" means none. Nothing here is a secret: keys appear
 * by id, and neither the path (a query string may hold a credential) nor
 * a model name the configuration does not know is ever recorded.
 */
typedef struct kg_request_summary {
    const char *request_id;
    const char *method;       /* the HTTP method */
    const char *route;        /* the operation: chat, models, ... ("other") */
    const char *endpoint;     /* the route's pattern: "/v1/chat/completions",
                                 "/admin/v1/keys/{}"; never a request's own
                                 path (it may hold a credential) */
    int status;               /* the status sent to the client */
    const char *key_id;       /* the client key, or the admin token */
    const char *workspace_id; /* the key's workspace */
    const char *model;        /* a configured model's public name */
    const char *provider;     /* the provider it went to */
    const char *client_ip;
    const char *error;   /* keygate's error code, or NULL */
    int64_t duration_us; /* first byte in to last byte out */
    int64_t upstream_us; /* to the provider's headers; < 0: not forwarded */
    int64_t ttft_us;     /* to the first streamed event; < 0: none */
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t cost; /* micro-USD */
} kg_request_summary_t;

/*
 * Write the access line of a client request, at level info, in the log's
 * format ([log] format): fields request_id, method, route (the endpoint),
 * operation, status, key_id, workspace_id, model, provider,
 * prompt_tokens, completion_tokens, cached_tokens, cost, latency_ms,
 * ttft_ms, client_ip, error (docs/operations.md). Formats only when info
 * is on; one write(2).
 */
void kg_access_log(const kg_request_summary_t *s);

/*
 * The same for a request to the admin listener (type "admin"): fields
 * request_id, method, route (the endpoint), status, token_id (key_id),
 * latency_ms, client_ip, error.
 */
void kg_access_log_admin(const kg_request_summary_t *s);

/*
 * The line kg_access_log would write (admin: kg_access_log_admin) into buf
 * of len bytes, newline included; returns its length. For tests.
 */
size_t kg_access_format(const kg_request_summary_t *s, int admin, char *buf,
                        size_t len);

#endif /* KEYGATE_ACCESS_H */
