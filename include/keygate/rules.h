/* Access rules (IAM): compiling rules JSON and checking requests against it. */
#ifndef KEYGATE_RULES_H
#define KEYGATE_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"
#include "keygate/validate.h"

/* Room for a reason (the text after "Access denied: "), NUL included. */
#define KG_RULES_REASON_MAX 1024
/* Room for an IP address as text (INET6_ADDRSTRLEN), NUL included. */
#define KG_RULES_IP_STRLEN 46
/* How many X-Forwarded-For entries kg_rules_client_ip walks at most. */
#define KG_XFF_ENTRIES_MAX 32
/* The longest X-Forwarded-For entry looked at (an address, trimmed). */
#define KG_XFF_ENTRY_MAX 64
/* How many CIDRs a kg_cidr_list_t holds at most, and its text's bound. */
#define KG_CIDR_LIST_MAX      KG_RULE_VALUES_MAX
#define KG_CIDR_LIST_TEXT_MAX 4096

/*
 * One level's compiled rules (a workspace's or a key's); immutable once
 * compiled, so one object may be shared by threads that only read it.
 */
typedef struct kg_rules kg_rules_t;

/* A compiled list of CIDRs (the [server] trusted_proxies setting). */
typedef struct kg_cidr_list kg_cidr_list_t;

/*
 * What a request is, as far as the rules are concerned. Every pointer is
 * borrowed for the duration of the call.
 */
typedef struct kg_rules_request {
    /*
     * The public name of the model the request uses (the configured
     * model it was routed to, not the string the client sent), or NULL
     * when the request names no model: then model and price rules do not
     * apply to it.
     */
    const char *model;
    /* The provider's name, or NULL when none: provider rules then skip. */
    const char *provider;
    /*
     * One of chat, completions, embeddings, responses, messages, models,
     * moderations, other. NULL or another string counts as unknown: any
     * operation rule then denies (fail closed).
     */
    const char *operation;
    /*
     * The client IP as text (kg_rules_client_ip), IPv4 or IPv6; an
     * IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address.
     * NULL or not an address: any IP rule then denies (fail closed).
     */
    const char *client_ip;
    /* The model's prices, micro-USD per 1M tokens; -1 when unknown. */
    int64_t input_price;
    int64_t output_price;
} kg_rules_request_t;

/*
 * Compile access rules (product.md 5.2) from their JSON text: an object
 * with allow_/deny_ models (fnmatch(3) globs, flags 0: '/' is ordinary),
 * providers (exact names), operations (the names above), ip_cidrs
 * ("a.b.c.d/n", "x::/n"; a bare address is /32 or /128; host bits past
 * the prefix are ignored; a mapped "::ffff:a.b.c.d/n" with n >= 96 is the
 * IPv4 CIDR), each an array of at most KG_RULE_VALUES_MAX strings, and
 * max_input_price, max_output_price (decimal USD strings per 1M tokens).
 * An empty array is the same as an absent member: no rule of that type.
 * NULL, "" and "{}" compile to rules that restrict nothing.
 *
 * On KG_OK *out is new (kg_rules_free). On KG_ERR_INVAL (bad JSON, an
 * unknown member, a wrong type, a bad glob, CIDR, operation or price, a
 * bound exceeded) or KG_ERR_NOMEM, *out is NULL and diag names the rule
 * and the value. Stored rules that no longer compile must deny every
 * request (fail closed): that is the caller's job.
 */
kg_err_t kg_rules_compile(const char *json, kg_rules_t **out,
                          kg_diag_t *diag) KG_MUST_CHECK;

/* Free rules and set *r to NULL (no-op on NULL or *r NULL). */
void kg_rules_free(kg_rules_t **r);

/* Whether r restricts nothing (true for NULL). */
bool kg_rules_is_empty(const kg_rules_t *r);

/*
 * Check a request against the workspace's rules and the key's (either may
 * be NULL: no rules). The request must pass both levels; at each level
 * rules of one type are a union of allows, types are ANDed, and a deny
 * wins. Returns KG_OK, or KG_ERR_ACCESS_DENIED with reason (when non-NULL
 * and reason_len > 0) set to what denied the request at which level, the
 * text that follows "Access denied: " in the 403 body, truncated to fit
 * (KG_RULES_REASON_MAX always fits). On KG_OK reason is "". Prices: equal
 * to a cap is allowed, above is denied, unknown (-1) under a cap is
 * denied. A NULL req is denied. Allocates nothing; with no rules at
 * either level it returns at once.
 */
kg_err_t kg_rules_check(const kg_rules_t *workspace, const kg_rules_t *key,
                        const kg_rules_request_t *req, char *reason,
                        size_t reason_len) KG_MUST_CHECK;

/*
 * Whether GET /v1/models lists the model of req: the model, provider,
 * price and IP rules of both levels pass (req->operation is ignored; the
 * caller checks operation "models" itself with kg_rules_check). False for
 * a NULL req.
 */
bool kg_rules_model_visible(const kg_rules_t *workspace, const kg_rules_t *key,
                            const kg_rules_request_t *req);

/*
 * Parse a comma-separated list of CIDRs or bare addresses (white space
 * around entries is ignored) of at most KG_CIDR_LIST_MAX entries and
 * KG_CIDR_LIST_TEXT_MAX bytes. NULL or only white space is an empty list.
 * On KG_OK *out is new (kg_cidr_list_free); on KG_ERR_INVAL (an empty or
 * bad entry, a bound exceeded) or KG_ERR_NOMEM *out is NULL and diag
 * quotes the bad entry.
 */
kg_err_t kg_cidr_list_parse(const char *csv, kg_cidr_list_t **out,
                            kg_diag_t *diag) KG_MUST_CHECK;

/* Free a list and set *l to NULL (no-op on NULL or *l NULL). */
void kg_cidr_list_free(kg_cidr_list_t **l);

/*
 * Whether the address ip (text) is in one of l's CIDRs; false when l is
 * NULL or empty or ip is not an address. An IPv4-mapped IPv6 address is
 * its IPv4 address. Allocates nothing.
 */
bool kg_cidr_list_contains(const kg_cidr_list_t *l, const char *ip);

/*
 * The client IP of a request: the socket peer peer_ip, unless the peer is
 * in trusted (NULL: trust nobody); then X-Forwarded-For (x_forwarded_for,
 * NULL when absent; several headers joined with ",") is walked from the
 * right, skipping trusted entries, and the first untrusted one is the
 * client (when every entry is trusted, the leftmost one is). Entries left
 * of it are the client's own claims and are never parsed. A walked entry
 * that is empty, longer than KG_XFF_ENTRY_MAX or not an IP literal (no
 * port, no brackets), or KG_XFF_ENTRIES_MAX trusted entries in a row make
 * it fall back to the peer, as does a trusted peer without the header.
 *
 * Returns true with out holding the address in canonical form
 * (inet_ntop; an IPv4-mapped address as plain IPv4); false with out ""
 * (when out_len > 0) when peer_ip is not an address or out_len is below
 * what the address needs (KG_RULES_IP_STRLEN always fits).
 */
bool kg_rules_client_ip(const char *peer_ip, const char *x_forwarded_for,
                        const kg_cidr_list_t *trusted, char *out,
                        size_t out_len);

#endif /* KEYGATE_RULES_H */
