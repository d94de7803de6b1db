/* Access rules (IAM): compiling rules JSON and checking requests against it. */
#include "keygate/rules.h"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/money.h"

/* The types of list rules; each has an allow and a deny list. */
typedef enum rules_kind {
    RULES_MODELS,
    RULES_PROVIDERS,
    RULES_OPERATIONS,
    RULES_IPS,
    RULES__KINDS
} rules_kind_t;

enum { RULES_ALLOW = 0, RULES_DENY = 1 };
enum { RULES_INPUT = 0, RULES_OUTPUT = 1 };

/* An address; IPv4 (family 4) uses b[0..3], the rest is zero. */
typedef struct rules_addr {
    uint8_t b[16];
    uint8_t family; /* 4 or 6 */
} rules_addr_t;

/* A CIDR as a binary mask: an address a matches when a & mask == net. */
typedef struct rules_cidr {
    uint8_t net[16];
    uint8_t mask[16];
    uint8_t family; /* 4 or 6 */
} rules_cidr_t;

/* One allow_X or deny_X list. An empty list is no rule. */
typedef struct rules_list {
    size_t n;
    char **text;        /* n values as written, owned */
    rules_cidr_t *cidr; /* n compiled CIDRs for ip lists, owned */
    uint32_t ops;       /* operation bits for operation lists */
} rules_list_t;

struct kg_rules {
    bool empty; /* no list has a value and no price cap is set */
    rules_list_t list[RULES__KINDS][2];
    int64_t max_price[2]; /* micro-USD per 1M tokens; -1: no cap */
};

struct kg_cidr_list {
    size_t n;
    rules_cidr_t cidr[]; /* n entries */
};

/* A JSON member of the rules object and the list it fills. */
typedef struct rules_member {
    const char *name;
    rules_kind_t kind;
    int side; /* RULES_ALLOW or RULES_DENY */
} rules_member_t;

static const rules_member_t rules_members[] = {
    {"allow_models", RULES_MODELS, RULES_ALLOW},
    {"deny_models", RULES_MODELS, RULES_DENY},
    {"allow_providers", RULES_PROVIDERS, RULES_ALLOW},
    {"deny_providers", RULES_PROVIDERS, RULES_DENY},
    {"allow_operations", RULES_OPERATIONS, RULES_ALLOW},
    {"deny_operations", RULES_OPERATIONS, RULES_DENY},
    {"allow_ip_cidrs", RULES_IPS, RULES_ALLOW},
    {"deny_ip_cidrs", RULES_IPS, RULES_DENY},
};

#define RULES_NMEMBERS (sizeof(rules_members) / sizeof(*rules_members))

static const char *const rules_operations[] = {
    "chat",     "completions", "embeddings",  "responses",
    "messages", "models",      "moderations", "other",
};

#define RULES_NOPERATIONS (sizeof(rules_operations) / sizeof(*rules_operations))

static const char *const rules_glob_classes[] = {
    "alnum", "alpha", "blank", "cntrl", "digit", "graph",
    "lower", "print", "punct", "space", "upper", "xdigit",
};

#define RULES_NCLASSES \
    (sizeof(rules_glob_classes) / sizeof(*rules_glob_classes))

/* Longest address text inet_pton is given (an IPv6 literal is <= 45). */
#define RULES_ADDR_TEXT_MAX KG_XFF_ENTRY_MAX

/* The index of operation name s in rules_operations, or -1. */
static int rules_operation_index(const char *s)
{
    if (s == NULL) {
        return -1;
    }
    for (size_t i = 0; i < RULES_NOPERATIONS; i++) {
        if (strcmp(s, rules_operations[i]) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* ---- Addresses and CIDRs ---------------------------------------------- */

/*
 * Parse len bytes of s as an IPv4 or IPv6 literal into a (without mapping
 * ::ffff:a.b.c.d to IPv4). False when it is not one.
 */
static bool rules_addr_parse_raw(const char *s, size_t len, rules_addr_t *a)
{
    char buf[RULES_ADDR_TEXT_MAX + 1];

    memset(a, 0, sizeof(*a));
    if (s == NULL || len == 0 || len > RULES_ADDR_TEXT_MAX ||
        memchr(s, '\0', len) != NULL) {
        return false;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, a->b) == 1) {
        a->family = 4;
        return true;
    }
    if (inet_pton(AF_INET6, buf, a->b) == 1) {
        a->family = 6;
        return true;
    }
    memset(a, 0, sizeof(*a));
    return false;
}

/* Whether a is an IPv4-mapped IPv6 address (::ffff:0:0/96). */
static bool rules_addr_is_mapped(const rules_addr_t *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xFF, 0xFF};

    return a->family == 6 && memcmp(a->b, prefix, sizeof(prefix)) == 0;
}

/* Turn an IPv4-mapped IPv6 address into its IPv4 address. */
static void rules_addr_unmap(rules_addr_t *a)
{
    if (rules_addr_is_mapped(a)) {
        memmove(a->b, a->b + 12, 4);
        memset(a->b + 4, 0, 12);
        a->family = 4;
    }
}

/* Parse a client address (text, NUL-terminated), mapped IPv6 as IPv4. */
static bool rules_addr_parse(const char *s, rules_addr_t *a)
{
    if (s == NULL ||
        !rules_addr_parse_raw(s, strnlen(s, RULES_ADDR_TEXT_MAX + 1), a)) {
        return false;
    }
    rules_addr_unmap(a);
    return true;
}

/* A prefix length: 1 to 3 digits, no leading zero, at most max. */
static bool rules_prefix_parse(const char *s, size_t len, unsigned max,
                               unsigned *out)
{
    unsigned v = 0;

    if (len == 0 || len > 3 || (len > 1 && s[0] == '0')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max) {
        return false;
    }
    *out = v;
    return true;
}

/*
 * Parse len bytes of s, "address" or "address/prefix", into c. A mapped
 * IPv6 CIDR with a prefix of 96 or more becomes the IPv4 CIDR; host bits
 * are cleared. False when s is not a CIDR.
 */
static bool rules_cidr_parse(const char *s, size_t len, rules_cidr_t *c)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash != NULL ? (size_t)(slash - s) : len;
    rules_addr_t a;
    unsigned max;
    unsigned prefix;
    size_t nbytes;

    memset(c, 0, sizeof(*c));
    if (!rules_addr_parse_raw(s, alen, &a)) {
        return false;
    }
    max = a.family == 4 ? 32 : 128;
    prefix = max;
    if (slash != NULL &&
        !rules_prefix_parse(slash + 1, len - alen - 1, max, &prefix)) {
        return false;
    }
    if (rules_addr_is_mapped(&a) && prefix >= 96) {
        rules_addr_unmap(&a);
        prefix -= 96;
    }
    nbytes = a.family == 4 ? 4 : 16;
    c->family = a.family;
    for (size_t i = 0; i < nbytes; i++) {
        unsigned bits = prefix >= 8 ? 8 : prefix;

        c->mask[i] = (uint8_t)(0xFF00u >> bits);
        c->net[i] = a.b[i] & c->mask[i];
        prefix -= bits;
    }
    return true;
}

/* Whether address a is in CIDR c. */
static bool rules_cidr_match(const rules_cidr_t *c, const rules_addr_t *a)
{
    uint8_t diff = 0;

    if (c->family != a->family) {
        return false;
    }
    for (size_t i = 0; i < sizeof(c->net); i++) {
        diff |= (uint8_t)((a->b[i] & c->mask[i]) ^ c->net[i]);
    }
    return diff == 0;
}

/* The index of the first of n CIDRs that holds a, or -1. */
static long rules_cidrs_find(const rules_cidr_t *cidr, size_t n,
                             const rules_addr_t *a)
{
    for (size_t i = 0; i < n; i++) {
        if (rules_cidr_match(&cidr[i], a)) {
            return (long)i;
        }
    }
    return -1;
}

/* ---- Globs -------------------------------------------------------------- */

/* Whether the len bytes at s name a POSIX character class. */
static bool rules_glob_class_known(const char *s, size_t len)
{
    for (size_t i = 0; i < RULES_NCLASSES; i++) {
        if (strlen(rules_glob_classes[i]) == len &&
            memcmp(rules_glob_classes[i], s, len) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Read one bracket member at *pp (a character, maybe escaped) into *c.
 * Returns NULL, or why the expression is bad.
 */
static const char *rules_glob_member(const char **pp, unsigned char *c)
{
    const char *p = *pp;

    if (p[0] == '[' && (p[1] == '.' || p[1] == '=')) {
        return "collating symbols and equivalence classes are not supported";
    }
    if (p[0] == '\\') {
        p++;
    }
    if (p[0] == '\0') {
        return "a [ is not closed";
    }
    *c = (unsigned char)p[0];
    *pp = p + 1;
    return NULL;
}

/*
 * Check the bracket expression starting at *pp ('['). Returns NULL with *pp
 * past its ']', or why the expression is bad.
 */
static const char *rules_glob_bracket(const char **pp)
{
    const char *p = *pp + 1;
    const char *why;
    bool first = true;

    if (*p == '!' || *p == '^') {
        p++;
    }
    for (;;) {
        unsigned char lo;
        unsigned char hi;

        if (*p == '\0') {
            return "a [ is not closed";
        }
        if (*p == ']' && !first) {
            *pp = p + 1;
            return NULL;
        }
        first = false;
        if (p[0] == '[' && p[1] == ':') {
            size_t n = strspn(p + 2, "abcdefghijklmnopqrstuvwxyz");

            if (p[2 + n] != ':' || p[3 + n] != ']') {
                return "a [: class is not closed with :]";
            }
            if (!rules_glob_class_known(p + 2, n)) {
                return "unknown character class";
            }
            p += 4 + n;
            continue;
        }
        why = rules_glob_member(&p, &lo);
        if (why != NULL) {
            return why;
        }
        if (p[0] == '-' && p[1] != ']' && p[1] != '\0') {
            p++;
            if (p[0] == '[' && p[1] == ':') {
                return "a range may not end with a character class";
            }
            why = rules_glob_member(&p, &hi);
            if (why != NULL) {
                return why;
            }
            if (hi < lo) {
                return "a range is reversed";
            }
        }
    }
}

/*
 * NULL when pattern is a glob that fnmatch(3) (flags 0) reads as meant,
 * else why not: a lone trailing backslash, an unclosed [, an unknown
 * [:class:], a reversed range, collating symbols.
 */
static const char *rules_glob_error(const char *pattern)
{
    const char *p = pattern;
    const char *why;

    while (*p != '\0') {
        if (*p == '\\') {
            if (p[1] == '\0') {
                return "it ends with a lone backslash";
            }
            p += 2;
        } else if (*p == '[') {
            why = rules_glob_bracket(&p);
            if (why != NULL) {
                return why;
            }
        } else {
            p++;
        }
    }
    return NULL;
}

/* ---- Compiling ---------------------------------------------------------- */

static void rules_list_clear(rules_list_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->text[i]);
    }
    free(l->text);
    free(l->cidr);
    memset(l, 0, sizeof(*l));
}

void kg_rules_free(kg_rules_t **r)
{
    if (r == NULL || *r == NULL) {
        return;
    }
    for (size_t k = 0; k < RULES__KINDS; k++) {
        rules_list_clear(&(*r)->list[k][RULES_ALLOW]);
        rules_list_clear(&(*r)->list[k][RULES_DENY]);
    }
    free(*r);
    *r = NULL;
}

/* Whether the len bytes at s hold an ASCII control character. */
static bool rules_has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7F) {
            return true;
        }
    }
    return false;
}

/* Check one value s of member m and fold it into l (l->n not yet bumped). */
static kg_err_t rules_compile_value(rules_list_t *l, const rules_member_t *m,
                                    const char *s, kg_diag_t *diag)
{
    const char *why;
    int op;

    switch (m->kind) {
    case RULES_MODELS:
        why = rules_glob_error(s);
        if (why != NULL) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "rule %s: '%s' is not a valid glob pattern "
                                "(%s)",
                                m->name, s, why);
        }
        break;
    case RULES_OPERATIONS:
        op = rules_operation_index(s);
        if (op < 0) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "rule %s: unknown operation '%.40s' (chat, "
                                "completions, embeddings, responses, "
                                "messages, models, moderations, other)",
                                m->name, s);
        }
        l->ops |= UINT32_C(1) << op;
        break;
    case RULES_IPS:
        if (!rules_cidr_parse(s, strlen(s), &l->cidr[l->n])) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "rule %s: '%s' is not an IPv4 or IPv6 CIDR",
                                m->name, s);
        }
        break;
    case RULES_PROVIDERS:
    case RULES__KINDS:
        break;
    }
    return KG_OK;
}

/* Compile the array value of member m into l. */
static kg_err_t rules_compile_list(rules_list_t *l, const rules_member_t *m,
                                   json_t *value, kg_diag_t *diag)
{
    size_t i;
    size_t n;
    json_t *item; /* borrowed */
    kg_err_t rc = KG_OK;

    if (!json_is_array(value)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "rule %s must be an array of strings", m->name);
    }
    n = json_array_size(value);
    if (n > KG_RULE_VALUES_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "rule %s has more than %d values", m->name,
                            KG_RULE_VALUES_MAX);
    }
    if (n == 0) {
        return KG_OK;
    }
    l->text = calloc(n, sizeof(*l->text));
    if (l->text == NULL) {
        return KG_ERR_NOMEM;
    }
    if (m->kind == RULES_IPS) {
        l->cidr = calloc(n, sizeof(*l->cidr));
        if (l->cidr == NULL) {
            return KG_ERR_NOMEM;
        }
    }
    json_array_foreach(value, i, item)
    {
        const char *s = json_string_value(item);
        size_t len = s != NULL ? strlen(s) : 0;

        if (len == 0 || len > KG_RULE_VALUE_MAX || rules_has_control(s, len)) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "rule %s: values must be non-empty strings "
                                "of at most %d bytes",
                                m->name, KG_RULE_VALUE_MAX);
        }
        rc = rules_compile_value(l, m, s, diag);
        if (rc != KG_OK) {
            return rc;
        }
        l->text[l->n] = strdup(s);
        if (l->text[l->n] == NULL) {
            return KG_ERR_NOMEM;
        }
        l->n++;
    }
    return KG_OK;
}

/* Compile one member of the rules object into r. */
static kg_err_t rules_compile_member(kg_rules_t *r, const char *name,
                                     json_t *value, kg_diag_t *diag)
{
    int which;
    kg_diag_t d = {{0}};

    for (size_t i = 0; i < RULES_NMEMBERS; i++) {
        const rules_member_t *m = &rules_members[i];

        if (strcmp(name, m->name) == 0) {
            return rules_compile_list(&r->list[m->kind][m->side], m, value,
                                      diag);
        }
    }
    if (strcmp(name, "max_input_price") == 0) {
        which = RULES_INPUT;
    } else if (strcmp(name, "max_output_price") == 0) {
        which = RULES_OUTPUT;
    } else {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "unknown rule '%.40s' (allow_/deny_ models, "
                            "providers, operations, ip_cidrs; "
                            "max_input_price, max_output_price)",
                            name);
    }
    if (!json_is_string(value) ||
        kg_money_parse(json_string_value(value), &r->max_price[which], &d) !=
            KG_OK) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "rule %s must be a decimal USD string per 1M "
                            "tokens, like \"5.00\"",
                            name);
    }
    return KG_OK;
}

/* Whether r holds no rule at all. */
static bool rules_compute_empty(const kg_rules_t *r)
{
    for (size_t k = 0; k < RULES__KINDS; k++) {
        if (r->list[k][RULES_ALLOW].n > 0 || r->list[k][RULES_DENY].n > 0) {
            return false;
        }
    }
    return r->max_price[RULES_INPUT] < 0 && r->max_price[RULES_OUTPUT] < 0;
}

kg_err_t kg_rules_compile(const char *json, kg_rules_t **out, kg_diag_t *diag)
{
    kg_rules_t *r = NULL;
    json_t *root = NULL; /* new */
    json_t *value;       /* borrowed */
    const char *name;
    json_error_t jerr;
    kg_err_t rc = KG_OK;

    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    r->max_price[RULES_INPUT] = -1;
    r->max_price[RULES_OUTPUT] = -1;
    if (json != NULL && *json != '\0') {
        if (strnlen(json, KG_RULES_MAX + 1) > KG_RULES_MAX) {
            rc = kg_diag_fail(diag, KG_ERR_INVAL,
                              "rules are too long (the maximum is %d bytes)",
                              KG_RULES_MAX);
            goto out;
        }
        root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
        if (root == NULL) {
            rc = kg_diag_fail(diag, KG_ERR_INVAL,
                              "rules are not valid JSON: %s", jerr.text);
            goto out;
        }
        if (!json_is_object(root)) {
            rc =
                kg_diag_fail(diag, KG_ERR_INVAL, "rules must be a JSON object");
            goto out;
        }
        json_object_foreach(root, name, value)
        {
            rc = rules_compile_member(r, name, value, diag);
            if (rc != KG_OK) {
                goto out;
            }
        }
    }
    r->empty = rules_compute_empty(r);
    *out = r;
    r = NULL;
out:
    if (rc == KG_ERR_NOMEM) {
        kg_diag_set(diag, "out of memory compiling rules");
    }
    json_decref(root);
    kg_rules_free(&r);
    return rc;
}

bool kg_rules_is_empty(const kg_rules_t *r)
{
    return r == NULL || r->empty;
}

/* ---- Checking ----------------------------------------------------------- */

/* One check's state: the request and what was derived from it. */
typedef struct rules_eval {
    const kg_rules_request_t *req;
    bool skip_operations; /* model visibility ignores operation rules */
    int ip_state;         /* 0: not parsed yet, 1: ip holds it, -1: bad */
    rules_addr_t ip;
    char *reason; /* may be NULL */
    size_t reason_len;
} rules_eval_t;

/* Write the reason of a denial (when asked for) and return false. */
static bool rules_deny(rules_eval_t *ev, const char *fmt, ...) KG_PRINTF(2, 3);

static bool rules_deny(rules_eval_t *ev, const char *fmt, ...)
{
    va_list ap;

    if (ev->reason != NULL && ev->reason_len > 0) {
        va_start(ap, fmt);
        vsnprintf(ev->reason, ev->reason_len, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool rules_ip_pass(const kg_rules_t *r, const char *level,
                          rules_eval_t *ev)
{
    const rules_list_t *allow = &r->list[RULES_IPS][RULES_ALLOW];
    const rules_list_t *deny = &r->list[RULES_IPS][RULES_DENY];
    long hit;

    if (allow->n == 0 && deny->n == 0) {
        return true;
    }
    if (ev->ip_state == 0) {
        ev->ip_state = rules_addr_parse(ev->req->client_ip, &ev->ip) ? 1 : -1;
    }
    if (ev->ip_state < 0) {
        return rules_deny(ev,
                          "the client IP is unknown, and the %s has IP "
                          "rules.",
                          level);
    }
    hit = rules_cidrs_find(deny->cidr, deny->n, &ev->ip);
    if (hit >= 0) {
        return rules_deny(ev,
                          "client IP %s is denied by the %s's deny_ip_cidrs "
                          "rule '%s'.",
                          ev->req->client_ip, level, deny->text[hit]);
    }
    if (allow->n > 0 && rules_cidrs_find(allow->cidr, allow->n, &ev->ip) < 0) {
        return rules_deny(ev, "client IP %s is not in the %s's allow_ip_cidrs.",
                          ev->req->client_ip, level);
    }
    return true;
}

static bool rules_operation_pass(const kg_rules_t *r, const char *level,
                                 rules_eval_t *ev)
{
    const rules_list_t *allow = &r->list[RULES_OPERATIONS][RULES_ALLOW];
    const rules_list_t *deny = &r->list[RULES_OPERATIONS][RULES_DENY];
    const char *op = ev->req->operation;
    int idx;
    uint32_t bit;

    if (ev->skip_operations || (allow->n == 0 && deny->n == 0)) {
        return true;
    }
    idx = rules_operation_index(op);
    if (idx < 0) {
        return rules_deny(ev,
                          "the operation is unknown, and the %s has "
                          "operation rules.",
                          level);
    }
    bit = UINT32_C(1) << idx;
    if ((deny->ops & bit) != 0) {
        return rules_deny(ev,
                          "operation %s is denied by the %s's "
                          "deny_operations.",
                          op, level);
    }
    if (allow->n > 0 && (allow->ops & bit) == 0) {
        return rules_deny(ev, "operation %s is not allowed for this %s.", op,
                          level);
    }
    return true;
}

/* Whether s equals one of l's values. */
static bool rules_exact_in(const rules_list_t *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->text[i], s) == 0) {
            return true;
        }
    }
    return false;
}

static bool rules_provider_pass(const kg_rules_t *r, const char *level,
                                rules_eval_t *ev)
{
    const rules_list_t *allow = &r->list[RULES_PROVIDERS][RULES_ALLOW];
    const rules_list_t *deny = &r->list[RULES_PROVIDERS][RULES_DENY];
    const char *provider = ev->req->provider;

    if (provider == NULL) {
        return true;
    }
    if (rules_exact_in(deny, provider)) {
        return rules_deny(ev,
                          "provider %s is denied by the %s's "
                          "deny_providers.",
                          provider, level);
    }
    if (allow->n > 0 && !rules_exact_in(allow, provider)) {
        return rules_deny(ev, "provider %s is not allowed for this %s.",
                          provider, level);
    }
    return true;
}

static bool rules_model_pass(const kg_rules_t *r, const char *level,
                             rules_eval_t *ev)
{
    const rules_list_t *allow = &r->list[RULES_MODELS][RULES_ALLOW];
    const rules_list_t *deny = &r->list[RULES_MODELS][RULES_DENY];
    const char *model = ev->req->model;

    if (model == NULL) {
        return true;
    }
    /* A pattern fnmatch cannot read denies (compile refuses those). */
    for (size_t i = 0; i < deny->n; i++) {
        if (fnmatch(deny->text[i], model, 0) != FNM_NOMATCH) {
            return rules_deny(ev,
                              "model %s is denied by the %s's deny_models "
                              "rule '%s'.",
                              model, level, deny->text[i]);
        }
    }
    if (allow->n == 0) {
        return true;
    }
    for (size_t i = 0; i < allow->n; i++) {
        if (fnmatch(allow->text[i], model, 0) == 0) {
            return true;
        }
    }
    return rules_deny(ev, "model %s is not in the %s's allow_models.", model,
                      level);
}

static bool rules_price_pass(const kg_rules_t *r, const char *level,
                             rules_eval_t *ev, int which)
{
    int64_t cap = r->max_price[which];
    int64_t price =
        which == RULES_INPUT ? ev->req->input_price : ev->req->output_price;
    const char *kind = which == RULES_INPUT ? "input" : "output";
    char cap_s[KG_MONEY_STRLEN];
    char price_s[KG_MONEY_STRLEN];

    if (cap < 0 || ev->req->model == NULL || (price >= 0 && price <= cap)) {
        return true;
    }
    kg_money_format(cap, cap_s, sizeof(cap_s));
    if (price < 0) {
        return rules_deny(ev,
                          "model %s has no known %s price, and the %s's "
                          "max_%s_price is %s.",
                          ev->req->model, kind, level, kind, cap_s);
    }
    kg_money_format(price, price_s, sizeof(price_s));
    return rules_deny(ev,
                      "model %s costs %s USD per 1M %s tokens, above the "
                      "%s's max_%s_price of %s.",
                      ev->req->model, price_s, kind, level, kind, cap_s);
}

/* Whether the request passes one level's rules (r NULL: no rules). */
static bool rules_level_pass(const kg_rules_t *r, const char *level,
                             rules_eval_t *ev)
{
    if (r == NULL || r->empty) {
        return true;
    }
    return rules_ip_pass(r, level, ev) && rules_operation_pass(r, level, ev) &&
           rules_provider_pass(r, level, ev) &&
           rules_model_pass(r, level, ev) &&
           rules_price_pass(r, level, ev, RULES_INPUT) &&
           rules_price_pass(r, level, ev, RULES_OUTPUT);
}

kg_err_t kg_rules_check(const kg_rules_t *workspace, const kg_rules_t *key,
                        const kg_rules_request_t *req, char *reason,
                        size_t reason_len)
{
    rules_eval_t ev;

    if (reason != NULL && reason_len > 0) {
        reason[0] = '\0';
    }
    if (req != NULL && kg_rules_is_empty(workspace) && kg_rules_is_empty(key)) {
        return KG_OK;
    }
    memset(&ev, 0, sizeof(ev));
    ev.req = req;
    ev.reason = reason;
    ev.reason_len = reason_len;
    if (req == NULL) {
        rules_deny(&ev, "the request could not be checked.");
        return KG_ERR_ACCESS_DENIED;
    }
    if (rules_level_pass(workspace, "workspace", &ev) &&
        rules_level_pass(key, "key", &ev)) {
        return KG_OK;
    }
    return KG_ERR_ACCESS_DENIED;
}

bool kg_rules_model_visible(const kg_rules_t *workspace, const kg_rules_t *key,
                            const kg_rules_request_t *req)
{
    rules_eval_t ev;

    if (req == NULL) {
        return false;
    }
    if (kg_rules_is_empty(workspace) && kg_rules_is_empty(key)) {
        return true;
    }
    memset(&ev, 0, sizeof(ev));
    ev.req = req;
    ev.skip_operations = true;
    return rules_level_pass(workspace, "workspace", &ev) &&
           rules_level_pass(key, "key", &ev);
}

/* ---- CIDR lists and the client IP -------------------------------------- */

/* Whether c is optional white space in a list or header. */
static bool rules_is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Trim white space off both ends of [*s, *s + *len). */
static void rules_trim(const char **s, size_t *len)
{
    while (*len > 0 && rules_is_space((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && rules_is_space((*s)[*len - 1])) {
        (*len)--;
    }
}

kg_err_t kg_cidr_list_parse(const char *csv, kg_cidr_list_t **out,
                            kg_diag_t *diag)
{
    kg_cidr_list_t *l = NULL;
    const char *p;
    size_t len;
    size_t entries = 1;
    kg_err_t rc = KG_OK;

    *out = NULL;
    p = csv != NULL ? csv : "";
    len = strnlen(p, KG_CIDR_LIST_TEXT_MAX + 1);
    if (len > KG_CIDR_LIST_TEXT_MAX) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL,
                          "the CIDR list is too long (the maximum is %d "
                          "bytes)",
                          KG_CIDR_LIST_TEXT_MAX);
        goto out;
    }
    rules_trim(&p, &len);
    for (size_t i = 0; i < len; i++) {
        entries += p[i] == ',';
    }
    if (len == 0) {
        entries = 0;
    }
    if (entries > KG_CIDR_LIST_MAX) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL,
                          "the CIDR list has more than %d entries",
                          KG_CIDR_LIST_MAX);
        goto out;
    }
    l = calloc(1, sizeof(*l) + entries * sizeof(l->cidr[0]));
    if (l == NULL) {
        rc = kg_diag_fail(diag, KG_ERR_NOMEM, "out of memory");
        goto out;
    }
    while (l->n < entries) {
        const char *comma = memchr(p, ',', len);
        size_t n = comma != NULL ? (size_t)(comma - p) : len;
        const char *e = p;
        size_t elen = n;

        rules_trim(&e, &elen);
        if (elen == 0) {
            rc = kg_diag_fail(diag, KG_ERR_INVAL,
                              "the CIDR list has an empty entry");
            goto out;
        }
        if (!rules_cidr_parse(e, elen, &l->cidr[l->n])) {
            rc = kg_diag_fail(diag, KG_ERR_INVAL,
                              "'%.*s' is not an IPv4 or IPv6 CIDR",
                              (int)(elen > 64 ? 64 : elen), e);
            goto out;
        }
        l->n++;
        p += n + (comma != NULL ? 1 : 0);
        len -= n + (comma != NULL ? 1 : 0);
    }
    *out = l;
    l = NULL;
out:
    free(l);
    return rc;
}

void kg_cidr_list_free(kg_cidr_list_t **l)
{
    if (l == NULL || *l == NULL) {
        return;
    }
    free(*l);
    *l = NULL;
}

/* Whether l holds address a. */
static bool rules_list_holds(const kg_cidr_list_t *l, const rules_addr_t *a)
{
    return l != NULL && rules_cidrs_find(l->cidr, l->n, a) >= 0;
}

bool kg_cidr_list_contains(const kg_cidr_list_t *l, const char *ip)
{
    rules_addr_t a;

    if (l == NULL || l->n == 0 || !rules_addr_parse(ip, &a)) {
        return false;
    }
    return rules_list_holds(l, &a);
}

/*
 * Walk X-Forwarded-For from the right. Returns true with *client set to the
 * first untrusted entry (or the leftmost when every entry is trusted);
 * false when an entry walked is malformed or the walk hits its bound.
 */
static bool rules_xff_walk(const char *xff, const kg_cidr_list_t *trusted,
                           rules_addr_t *client)
{
    size_t end = strlen(xff);

    for (int walked = 0; walked < KG_XFF_ENTRIES_MAX; walked++) {
        size_t start = end;
        const char *e;
        size_t elen;

        while (start > 0 && xff[start - 1] != ',') {
            start--;
            if (end - start > KG_XFF_ENTRY_MAX + 64) {
                return false; /* far too long for an address */
            }
        }
        e = xff + start;
        elen = end - start;
        rules_trim(&e, &elen);
        if (!rules_addr_parse_raw(e, elen, client)) {
            return false;
        }
        rules_addr_unmap(client);
        if (!rules_list_holds(trusted, client) || start == 0) {
            return true;
        }
        end = start - 1; /* the comma */
    }
    return false;
}

/* Write a's canonical text to out; false (out "") when it does not fit. */
static bool rules_addr_format(const rules_addr_t *a, char *out, size_t len)
{
    if (out == NULL || len == 0) {
        return false;
    }
    if (inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->b, out,
                  (socklen_t)(len > 256 ? 256 : len)) == NULL) {
        out[0] = '\0';
        return false;
    }
    return true;
}

bool kg_rules_client_ip(const char *peer_ip, const char *x_forwarded_for,
                        const kg_cidr_list_t *trusted, char *out,
                        size_t out_len)
{
    rules_addr_t peer;
    rules_addr_t client;

    if (out != NULL && out_len > 0) {
        out[0] = '\0';
    }
    if (!rules_addr_parse(peer_ip, &peer)) {
        return false;
    }
    client = peer;
    if (x_forwarded_for != NULL && rules_list_holds(trusted, &peer) &&
        !rules_xff_walk(x_forwarded_for, trusted, &client)) {
        client = peer;
    }
    return rules_addr_format(&client, out, out_len);
}
