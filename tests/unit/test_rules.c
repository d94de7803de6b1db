/* Unit tests of access rules: compiling, checking, visibility, client IP. */
#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/rules.h"
#include "keygate/validate.h"
#include "unit_util.h"

/* Room for one table's rules JSON after quote conversion. */
#define RT_JSON_MAX 1024

/* The default request: gpt-4o on openai, chat, 2.50 / 10.00 USD per 1M. */
#define RT_MODEL    "gpt-4o"
#define RT_PROVIDER "openai"
#define RT_OP       "chat"
#define RT_IP       "10.1.2.3"
#define RT_IN       INT64_C(2500000)
#define RT_OUT      INT64_C(10000000)

typedef struct rt_req {
    const char *model;
    const char *provider;
    const char *operation;
    const char *ip;
    int64_t in;
    int64_t out;
} rt_req_t;

#define RQ_DEF                                             \
    {                                                      \
        RT_MODEL, RT_PROVIDER, RT_OP, RT_IP, RT_IN, RT_OUT \
    }
#define RQ_MODEL(m)                                 \
    {                                               \
        m, RT_PROVIDER, RT_OP, RT_IP, RT_IN, RT_OUT \
    }
#define RQ_PROV(p)                               \
    {                                            \
        RT_MODEL, p, RT_OP, RT_IP, RT_IN, RT_OUT \
    }
#define RQ_OP(o)                                       \
    {                                                  \
        RT_MODEL, RT_PROVIDER, o, RT_IP, RT_IN, RT_OUT \
    }
#define RQ_IP(ip)                                       \
    {                                                   \
        RT_MODEL, RT_PROVIDER, RT_OP, ip, RT_IN, RT_OUT \
    }
#define RQ_PRICES(i, o)                           \
    {                                             \
        RT_MODEL, RT_PROVIDER, RT_OP, RT_IP, i, o \
    }
#define RQ_NONE                        \
    {                                  \
        NULL, NULL, NULL, NULL, -1, -1 \
    }

/*
 * One check: workspace and key rules (JSON with ' for ", NULL for none),
 * the request, and the expected outcome and reason (NULL: not compared).
 */
typedef struct rt_row {
    const char *what;
    const char *ws;
    const char *key;
    rt_req_t req;
    bool ok;
    const char *reason;
} rt_row_t;

/* in with every ' turned into " (for readable tables), into out. */
static const char *rt_json(const char *in, char *out)
{
    size_t i;

    if (in == NULL) {
        return NULL;
    }
    ck_assert_uint_lt(strlen(in), RT_JSON_MAX);
    for (i = 0; in[i] != '\0'; i++) {
        out[i] = in[i] == '\'' ? '"' : in[i];
    }
    out[i] = '\0';
    return out;
}

/* Compile quoted-JSON rules that must compile (NULL: none). */
static kg_rules_t *rt_compile(const char *quoted)
{
    char json[RT_JSON_MAX];
    kg_rules_t *r = NULL;
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_rules_compile(rt_json(quoted, json), &r, &diag);

    ck_assert_msg(rc == KG_OK, "rules %s refused: %s", quoted, diag.msg);
    ck_assert_ptr_nonnull(r);
    return r;
}

static kg_rules_request_t rt_request(const rt_req_t *q)
{
    kg_rules_request_t req = {q->model, q->provider, q->operation,
                              q->ip,    q->in,       q->out};

    return req;
}

static const rt_row_t rt_check_rows[] = {
    /* No rules. */
    {"no rules at all", NULL, NULL, RQ_DEF, true, NULL},
    {"empty objects", "{}", "{}", RQ_DEF, true, NULL},
    {"empty string", "", "", RQ_DEF, true, NULL},
    {"no rules, nothing known", "{}", NULL, RQ_NONE, true, NULL},
    {"empty arrays are no rules",
     "{'allow_models': [], 'allow_providers': [], 'allow_operations': [], "
     "'allow_ip_cidrs': []}",
     NULL, RQ_NONE, true, NULL},

    /* allow_models / deny_models. */
    {"allow_models exact hit", NULL, "{'allow_models': ['gpt-4o']}", RQ_DEF,
     true, NULL},
    {"allow_models glob hit", NULL, "{'allow_models': ['gpt-4*']}", RQ_DEF,
     true, NULL},
    {"allow_models miss", NULL, "{'allow_models': ['claude-*']}", RQ_DEF, false,
     "model gpt-4o is not in the key's allow_models."},
    {"allow_models is anchored", NULL, "{'allow_models': ['gpt-4']}", RQ_DEF,
     false, NULL},
    {"allow_models is case sensitive", NULL, "{'allow_models': ['GPT-4O']}",
     RQ_DEF, false, NULL},
    {"allow_models ?", NULL, "{'allow_models': ['gpt-?o']}", RQ_DEF, true,
     NULL},
    {"allow_models [range]", NULL, "{'allow_models': ['gpt-[0-9]o']}", RQ_DEF,
     true, NULL},
    {"allow_models [!set] miss", NULL, "{'allow_models': ['gpt-[!4]o']}",
     RQ_DEF, false, NULL},
    {"allow_models [:class:]", NULL, "{'allow_models': ['gpt-[[:digit:]]*']}",
     RQ_DEF, true, NULL},
    {"allow_models escaped *", NULL, "{'allow_models': ['gpt\\\\*']}",
     RQ_MODEL("gpt*"), true, NULL},
    {"allow_models escaped * is literal", NULL,
     "{'allow_models': ['gpt\\\\*']}", RQ_DEF, false, NULL},
    {"'/' is ordinary", NULL, "{'allow_models': ['openai/*']}",
     RQ_MODEL("openai/gpt-4o"), true, NULL},
    {"'/' is ordinary, miss", NULL, "{'allow_models': ['openai/*']}", RQ_DEF,
     false, NULL},
    {"* crosses '/'", NULL, "{'allow_models': ['*4o']}",
     RQ_MODEL("openai/gpt-4o"), true, NULL},
    {"deny_models hit", NULL, "{'deny_models': ['gpt-4*']}", RQ_DEF, false,
     "model gpt-4o is denied by the key's deny_models rule 'gpt-4*'."},
    {"deny_models miss", NULL, "{'deny_models': ['claude-*']}", RQ_DEF, true,
     NULL},
    {"no model: model rules skip", NULL,
     "{'allow_models': ['claude-*'], 'deny_models': ['*']}", RQ_MODEL(NULL),
     true, NULL},

    /* allow_providers / deny_providers. */
    {"allow_providers hit", NULL, "{'allow_providers': ['openai']}", RQ_DEF,
     true, NULL},
    {"allow_providers miss", NULL, "{'allow_providers': ['anthropic']}", RQ_DEF,
     false, "provider openai is not allowed for this key."},
    {"providers are exact, not globs", NULL, "{'allow_providers': ['open*']}",
     RQ_DEF, false, NULL},
    {"deny_providers hit", NULL, "{'deny_providers': ['openai']}", RQ_DEF,
     false, "provider openai is denied by the key's deny_providers."},
    {"deny_providers miss", NULL, "{'deny_providers': ['anthropic']}", RQ_DEF,
     true, NULL},
    {"no provider: provider rules skip", NULL,
     "{'allow_providers': ['anthropic']}", RQ_PROV(NULL), true, NULL},

    /* allow_operations / deny_operations. */
    {"allow_operations hit", NULL, "{'allow_operations': ['chat']}", RQ_DEF,
     true, NULL},
    {"allow_operations miss", NULL, "{'allow_operations': ['chat']}",
     RQ_OP("embeddings"), false,
     "operation embeddings is not allowed for this key."},
    {"deny_operations hit", NULL, "{'deny_operations': ['embeddings']}",
     RQ_OP("embeddings"), false,
     "operation embeddings is denied by the key's deny_operations."},
    {"deny_operations miss", NULL, "{'deny_operations': ['embeddings']}",
     RQ_DEF, true, NULL},
    {"unknown operation with deny rule fails closed", NULL,
     "{'deny_operations': ['embeddings']}", RQ_OP("teleport"), false,
     "the operation is unknown, and the key has operation rules."},
    {"NULL operation with allow rule fails closed", NULL,
     "{'allow_operations': ['chat']}", RQ_OP(NULL), false, NULL},
    {"unknown operation without operation rules", NULL,
     "{'allow_models': ['*']}", RQ_OP("teleport"), true, NULL},

    /* allow_ip_cidrs / deny_ip_cidrs. */
    {"allow IPv4 hit", NULL, "{'allow_ip_cidrs': ['10.0.0.0/8']}", RQ_DEF, true,
     NULL},
    {"allow IPv4 miss", NULL, "{'allow_ip_cidrs': ['192.168.0.0/16']}", RQ_DEF,
     false, "client IP 10.1.2.3 is not in the key's allow_ip_cidrs."},
    {"deny IPv4 hit", NULL, "{'deny_ip_cidrs': ['10.1.2.0/24']}", RQ_DEF, false,
     "client IP 10.1.2.3 is denied by the key's deny_ip_cidrs rule "
     "'10.1.2.0/24'."},
    {"deny IPv4 miss", NULL, "{'deny_ip_cidrs': ['10.1.3.0/24']}", RQ_DEF, true,
     NULL},
    {"/32 hit", NULL, "{'allow_ip_cidrs': ['10.1.2.3/32']}", RQ_DEF, true,
     NULL},
    {"/32 miss", NULL, "{'allow_ip_cidrs': ['10.1.2.4/32']}", RQ_DEF, false,
     NULL},
    {"bare IPv4 is /32", NULL, "{'allow_ip_cidrs': ['10.1.2.3']}", RQ_DEF, true,
     NULL},
    {"bare IPv4 is /32, miss", NULL, "{'allow_ip_cidrs': ['10.1.2.4']}", RQ_DEF,
     false, NULL},
    {"/31 edge", NULL, "{'allow_ip_cidrs': ['10.1.2.2/31']}", RQ_DEF, true,
     NULL},
    {"/9 edge miss", NULL, "{'allow_ip_cidrs': ['10.128.0.0/9']}", RQ_DEF,
     false, NULL},
    {"host bits are ignored", NULL, "{'allow_ip_cidrs': ['10.200.0.1/8']}",
     RQ_DEF, true, NULL},
    {"0.0.0.0/0 holds every IPv4", NULL, "{'allow_ip_cidrs': ['0.0.0.0/0']}",
     RQ_IP("203.0.113.7"), true, NULL},
    {"0.0.0.0/0 holds no IPv6", NULL, "{'allow_ip_cidrs': ['0.0.0.0/0']}",
     RQ_IP("2001:db8::1"), false, NULL},
    {"deny 0.0.0.0/0", NULL, "{'deny_ip_cidrs': ['0.0.0.0/0']}", RQ_DEF, false,
     NULL},
    {"allow IPv6 hit", NULL, "{'allow_ip_cidrs': ['2001:db8::/32']}",
     RQ_IP("2001:db8:1::5"), true, NULL},
    {"allow IPv6 miss", NULL, "{'allow_ip_cidrs': ['2001:db8::/32']}",
     RQ_IP("2001:db9::5"), false,
     "client IP 2001:db9::5 is not in the key's allow_ip_cidrs."},
    {"IPv6 /128 hit", NULL, "{'allow_ip_cidrs': ['::1/128']}", RQ_IP("::1"),
     true, NULL},
    {"IPv6 /128 miss", NULL, "{'allow_ip_cidrs': ['::1/128']}", RQ_IP("::2"),
     false, NULL},
    {"bare IPv6 is /128", NULL, "{'allow_ip_cidrs': ['2001:db8::1']}",
     RQ_IP("2001:DB8:0:0::1"), true, NULL},
    {"IPv6 /127 edge", NULL, "{'allow_ip_cidrs': ['2001:db8::/127']}",
     RQ_IP("2001:db8::1"), true, NULL},
    {"IPv6 /65 edge miss", NULL, "{'allow_ip_cidrs': ['2001:db8::/65']}",
     RQ_IP("2001:db8::8000:0:0:0"), false, NULL},
    {"::/0 holds every IPv6", NULL, "{'allow_ip_cidrs': ['::/0']}",
     RQ_IP("2001:db8::1"), true, NULL},
    {"::/0 holds no IPv4", NULL, "{'allow_ip_cidrs': ['::/0']}", RQ_DEF, false,
     NULL},
    {"deny IPv6 hit", NULL, "{'deny_ip_cidrs': ['fd00::/8']}",
     RQ_IP("fd12:3456::1"), false, NULL},
    {"mapped client matches IPv4 allow", NULL,
     "{'allow_ip_cidrs': ['10.0.0.0/8']}", RQ_IP("::ffff:10.1.2.3"), true,
     NULL},
    {"mapped client matches IPv4 deny", NULL,
     "{'deny_ip_cidrs': ['10.0.0.0/8']}", RQ_IP("::ffff:10.1.2.3"), false,
     NULL},
    {"mapped client is not IPv6 for ::/0", NULL, "{'allow_ip_cidrs': ['::/0']}",
     RQ_IP("::ffff:10.1.2.3"), false, NULL},
    {"mapped rule matches IPv4 client", NULL,
     "{'allow_ip_cidrs': ['::ffff:10.0.0.0/104']}", RQ_DEF, true, NULL},
    {"mapped rule /128 matches IPv4 client", NULL,
     "{'deny_ip_cidrs': ['::ffff:10.1.2.3']}", RQ_DEF, false, NULL},
    {"no client IP with IP rules fails closed", NULL,
     "{'deny_ip_cidrs': ['192.168.0.0/16']}", RQ_IP(NULL), false,
     "the client IP is unknown, and the key has IP rules."},
    {"garbage client IP fails closed", NULL,
     "{'allow_ip_cidrs': ['0.0.0.0/0']}", RQ_IP("not-an-ip"), false, NULL},
    {"client IP with zone fails closed", NULL, "{'allow_ip_cidrs': ['::/0']}",
     RQ_IP("fe80::1%eth0"), false, NULL},
    {"client IP with port fails closed", NULL,
     "{'allow_ip_cidrs': ['0.0.0.0/0']}", RQ_IP("10.1.2.3:80"), false, NULL},
    {"no client IP without IP rules", NULL, "{'allow_models': ['*']}",
     RQ_IP(NULL), true, NULL},

    /* max_input_price / max_output_price. */
    {"input price equal to cap", NULL, "{'max_input_price': '2.50'}", RQ_DEF,
     true, NULL},
    {"input price above cap", NULL, "{'max_input_price': '1.00'}", RQ_DEF,
     false,
     "model gpt-4o costs 2.50 USD per 1M input tokens, above the key's "
     "max_input_price of 1.00."},
    {"input price one micro-USD above", NULL, "{'max_input_price': '2.499999'}",
     RQ_DEF, false, NULL},
    {"output price equal to cap", NULL, "{'max_output_price': '10'}", RQ_DEF,
     true, NULL},
    {"output price above cap", NULL, "{'max_output_price': '9.99'}", RQ_DEF,
     false,
     "model gpt-4o costs 10.00 USD per 1M output tokens, above the key's "
     "max_output_price of 9.99."},
    {"unknown input price under a cap", NULL, "{'max_input_price': '100'}",
     RQ_PRICES(-1, RT_OUT), false,
     "model gpt-4o has no known input price, and the key's max_input_price "
     "is 100.00."},
    {"unknown output price under a cap", NULL, "{'max_output_price': '100'}",
     RQ_PRICES(RT_IN, -1), false, NULL},
    {"unknown price without a cap", NULL, "{'max_input_price': '100'}",
     RQ_PRICES(RT_IN, -1), true, NULL},
    {"free model under a zero cap", NULL,
     "{'max_input_price': '0', 'max_output_price': '0'}", RQ_PRICES(0, 0), true,
     NULL},
    {"no model: price rules skip", NULL, "{'max_input_price': '0'}",
     RQ_MODEL(NULL), true, NULL},

    /* Allow rules of one type are a union. */
    {"union of allow_models", NULL,
     "{'allow_models': ['claude-*', 'gpt-4o', 'o1']}", RQ_DEF, true, NULL},
    {"union of allow_providers", NULL,
     "{'allow_providers': ['anthropic', 'openai']}", RQ_DEF, true, NULL},
    {"union of allow_operations", NULL,
     "{'allow_operations': ['embeddings', 'chat']}", RQ_DEF, true, NULL},
    {"union of allow_ip_cidrs", NULL,
     "{'allow_ip_cidrs': ['192.168.0.0/16', '2001:db8::/32', '10.0.0.0/8']}",
     RQ_DEF, true, NULL},
    {"union of allow_ip_cidrs, v6 member", NULL,
     "{'allow_ip_cidrs': ['192.168.0.0/16', '2001:db8::/32', '10.0.0.0/8']}",
     RQ_IP("2001:db8::9"), true, NULL},

    /* Rules of different types all apply. */
    {"AND: every type passes", NULL,
     "{'allow_models': ['gpt-*'], 'allow_providers': ['openai'], "
     "'allow_operations': ['chat'], 'allow_ip_cidrs': ['10.0.0.0/8'], "
     "'max_input_price': '5', 'max_output_price': '20'}",
     RQ_DEF, true, NULL},
    {"AND: model ok, provider not", NULL,
     "{'allow_models': ['gpt-4o'], 'allow_providers': ['anthropic']}", RQ_DEF,
     false, "provider openai is not allowed for this key."},
    {"AND: model ok, operation not", NULL,
     "{'allow_models': ['gpt-4o'], 'allow_operations': ['embeddings']}", RQ_DEF,
     false, "operation chat is not allowed for this key."},
    {"AND: model ok, IP not", NULL,
     "{'allow_models': ['gpt-4o'], 'allow_ip_cidrs': ['192.168.0.0/16']}",
     RQ_DEF, false, NULL},
    {"AND: model ok, price not", NULL,
     "{'allow_models': ['gpt-4o'], 'max_output_price': '5'}", RQ_DEF, false,
     NULL},

    /* A deny always wins. */
    {"deny wins over allow: models", NULL,
     "{'allow_models': ['gpt-*'], 'deny_models': ['gpt-4o']}", RQ_DEF, false,
     "model gpt-4o is denied by the key's deny_models rule 'gpt-4o'."},
    {"deny wins over allow: same value", NULL,
     "{'allow_providers': ['openai'], 'deny_providers': ['openai']}", RQ_DEF,
     false, NULL},
    {"deny wins over allow: operations", NULL,
     "{'allow_operations': ['chat'], 'deny_operations': ['chat']}", RQ_DEF,
     false, NULL},
    {"deny wins over allow: IPs", NULL,
     "{'allow_ip_cidrs': ['10.0.0.0/8'], 'deny_ip_cidrs': ['10.1.2.3']}",
     RQ_DEF, false, NULL},
    {"workspace deny beats key allow", "{'deny_models': ['gpt-4o']}",
     "{'allow_models': ['gpt-4o']}", RQ_DEF, false,
     "model gpt-4o is denied by the workspace's deny_models rule 'gpt-4o'."},
    {"key deny beats workspace allow", "{'allow_models': ['gpt-4o']}",
     "{'deny_models': ['gpt-4o']}", RQ_DEF, false,
     "model gpt-4o is denied by the key's deny_models rule 'gpt-4o'."},

    /* Key rules can only narrow the workspace's. */
    {"key narrows workspace: inside", "{'allow_models': ['gpt-*']}",
     "{'allow_models': ['gpt-4o']}", RQ_DEF, true, NULL},
    {"key narrows workspace: outside key", "{'allow_models': ['gpt-*']}",
     "{'allow_models': ['gpt-4o']}", RQ_MODEL("gpt-4o-mini"), false,
     "model gpt-4o-mini is not in the key's allow_models."},
    {"key allow outside workspace allow", "{'allow_models': ['gpt-4o-mini']}",
     "{'allow_models': ['gpt-4o']}", RQ_DEF, false,
     "model gpt-4o is not in the workspace's allow_models."},
    {"key allow * cannot widen", "{'allow_models': ['claude-*']}",
     "{'allow_models': ['*']}", RQ_DEF, false, NULL},
    {"workspace providers, key none", "{'allow_providers': ['anthropic']}",
     NULL, RQ_DEF, false, "provider openai is not allowed for this workspace."},
    {"workspace operations, key other operations",
     "{'allow_operations': ['chat']}", "{'allow_operations': ['embeddings']}",
     RQ_OP("embeddings"), false,
     "operation embeddings is not allowed for this workspace."},
    {"workspace price cap below key's", "{'max_input_price': '1.00'}",
     "{'max_input_price': '5.00'}", RQ_DEF, false,
     "model gpt-4o costs 2.50 USD per 1M input tokens, above the "
     "workspace's max_input_price of 1.00."},
    {"key price cap below workspace's", "{'max_input_price': '5.00'}",
     "{'max_input_price': '1.00'}", RQ_DEF, false,
     "model gpt-4o costs 2.50 USD per 1M input tokens, above the key's "
     "max_input_price of 1.00."},
    {"workspace IPs, key other IPs: key denies",
     "{'allow_ip_cidrs': ['10.0.0.0/8']}",
     "{'allow_ip_cidrs': ['192.168.0.0/16']}", RQ_DEF, false,
     "client IP 10.1.2.3 is not in the key's allow_ip_cidrs."},
    {"workspace IPs, key other IPs: workspace denies",
     "{'allow_ip_cidrs': ['10.0.0.0/8']}",
     "{'allow_ip_cidrs': ['192.168.0.0/16']}", RQ_IP("192.168.1.1"), false,
     "client IP 192.168.1.1 is not in the workspace's allow_ip_cidrs."},
    {"workspace rules only, pass", "{'allow_models': ['gpt-*']}", "{}", RQ_DEF,
     true, NULL},
};

START_TEST(test_rules_check_row)
{
    const rt_row_t *row = &rt_check_rows[_i];
    kg_rules_t *ws = row->ws != NULL ? rt_compile(row->ws) : NULL;
    kg_rules_t *key = row->key != NULL ? rt_compile(row->key) : NULL;
    kg_rules_request_t req = rt_request(&row->req);
    char reason[KG_RULES_REASON_MAX];
    kg_err_t rc;

    memset(reason, 'x', sizeof(reason));
    rc = kg_rules_check(ws, key, &req, reason, sizeof(reason));
    if (row->ok) {
        ck_assert_msg(rc == KG_OK, "%s: denied: %s", row->what, reason);
        ck_assert_str_eq(reason, "");
    } else {
        ck_assert_msg(rc == KG_ERR_ACCESS_DENIED, "%s: allowed", row->what);
        ck_assert_msg(reason[0] != '\0', "%s: no reason", row->what);
        if (row->reason != NULL) {
            ck_assert_str_eq(reason, row->reason);
        }
    }
    /* The same answer without a reason buffer. */
    ck_assert_int_eq(kg_rules_check(ws, key, &req, NULL, 0), rc);
    ck_assert_int_eq(kg_rules_check(ws, key, &req, reason, 0), rc);
    kg_rules_free(&ws);
    kg_rules_free(&key);
    ck_assert_ptr_null(ws);
    ck_assert_ptr_null(key);
}
END_TEST

/* Every reason is a sentence that names the level. */
START_TEST(test_rules_reason_shape)
{
    for (size_t i = 0; i < UT_NROWS(rt_check_rows); i++) {
        const rt_row_t *row = &rt_check_rows[i];
        kg_rules_t *ws = row->ws != NULL ? rt_compile(row->ws) : NULL;
        kg_rules_t *key = row->key != NULL ? rt_compile(row->key) : NULL;
        kg_rules_request_t req = rt_request(&row->req);
        char reason[KG_RULES_REASON_MAX];
        size_t len;

        if (kg_rules_check(ws, key, &req, reason, sizeof(reason)) != KG_OK) {
            len = strlen(reason);
            ck_assert_msg(len > 0 && reason[len - 1] == '.', "%s: '%s'",
                          row->what, reason);
            ck_assert_msg(strstr(reason, "key") != NULL ||
                              strstr(reason, "workspace") != NULL,
                          "%s: no level in '%s'", row->what, reason);
        }
        kg_rules_free(&ws);
        kg_rules_free(&key);
    }
}
END_TEST

START_TEST(test_rules_reason_truncated)
{
    kg_rules_t *key = rt_compile("{'deny_models': ['gpt-4*']}");
    kg_rules_request_t req = {RT_MODEL, RT_PROVIDER, RT_OP,
                              RT_IP,    RT_IN,       RT_OUT};
    char small[9];

    memset(small, 'x', sizeof(small));
    ck_assert_int_eq(kg_rules_check(NULL, key, &req, small, sizeof(small)),
                     KG_ERR_ACCESS_DENIED);
    ck_assert_str_eq(small, "model gp");
    memset(small, 'x', sizeof(small));
    ck_assert_int_eq(kg_rules_check(NULL, key, &req, small, 1),
                     KG_ERR_ACCESS_DENIED);
    ck_assert_int_eq(small[0], '\0');
    ck_assert_int_eq(small[1], 'x');
    kg_rules_free(&key);
}
END_TEST

START_TEST(test_rules_null_request)
{
    kg_rules_t *key = rt_compile("{}");
    char reason[KG_RULES_REASON_MAX];

    ck_assert_int_eq(kg_rules_check(NULL, NULL, NULL, reason, sizeof(reason)),
                     KG_ERR_ACCESS_DENIED);
    ck_assert_str_ne(reason, "");
    ck_assert_int_eq(kg_rules_check(NULL, key, NULL, NULL, 0),
                     KG_ERR_ACCESS_DENIED);
    ck_assert(!kg_rules_model_visible(NULL, NULL, NULL));
    kg_rules_free(&key);
}
END_TEST

START_TEST(test_rules_empty)
{
    kg_rules_t *r = NULL;
    kg_diag_t diag = {{0}};
    const char *empties[] = {NULL, "", "{}", " { } ", "{\"deny_models\": []}"};

    ck_assert(kg_rules_is_empty(NULL));
    for (size_t i = 0; i < UT_NROWS(empties); i++) {
        ck_assert_int_eq(kg_rules_compile(empties[i], &r, &diag), KG_OK);
        ck_assert_ptr_nonnull(r);
        ck_assert(kg_rules_is_empty(r));
        kg_rules_free(&r);
        ck_assert_ptr_null(r);
    }
    ck_assert_int_eq(
        kg_rules_compile("{\"max_input_price\": \"0\"}", &r, &diag), KG_OK);
    ck_assert(!kg_rules_is_empty(r));
    kg_rules_free(&r);
    kg_rules_free(&r);
    kg_rules_free(NULL);
}
END_TEST

/* A rules value that must be refused, and what the diag must say. */
typedef struct rt_bad {
    const char *json; /* ' for " */
    const char *diag; /* a substring of the diag */
} rt_bad_t;

static const rt_bad_t rt_bad_rows[] = {
    /* CIDRs. */
    {"{'allow_ip_cidrs': ['10.0.0.0/33']}",
     "rule allow_ip_cidrs: '10.0.0.0/33' is not an IPv4 or IPv6 CIDR"},
    {"{'deny_ip_cidrs': ['::/129']}",
     "rule deny_ip_cidrs: '::/129' is not an IPv4 or IPv6 CIDR"},
    {"{'allow_ip_cidrs': ['::1/1280']}", "'::1/1280'"},
    {"{'allow_ip_cidrs': ['10.0.0/8']}", "'10.0.0/8'"},
    {"{'allow_ip_cidrs': ['10.0.0.0/']}", "'10.0.0.0/'"},
    {"{'allow_ip_cidrs': ['10.0.0.0/08']}", "'10.0.0.0/08'"},
    {"{'allow_ip_cidrs': ['10.0.0.0/-1']}", "'10.0.0.0/-1'"},
    {"{'allow_ip_cidrs': ['10.0.0.0/+8']}", "'10.0.0.0/+8'"},
    {"{'allow_ip_cidrs': ['10.0.0.0/8/8']}", "'10.0.0.0/8/8'"},
    {"{'allow_ip_cidrs': ['10.0.0.0/ 8']}", "'10.0.0.0/ 8'"},
    {"{'allow_ip_cidrs': [' 10.0.0.0/8']}", "' 10.0.0.0/8'"},
    {"{'allow_ip_cidrs': ['/8']}", "'/8'"},
    {"{'allow_ip_cidrs': ['256.0.0.0/8']}", "'256.0.0.0/8'"},
    {"{'allow_ip_cidrs': ['010.0.0.0/8']}", "'010.0.0.0/8'"},
    {"{'allow_ip_cidrs': ['1.2.3.4:80']}", "'1.2.3.4:80'"},
    {"{'allow_ip_cidrs': ['[::1]/128']}", "'[::1]/128'"},
    {"{'allow_ip_cidrs': ['fe80::1%eth0/64']}", "'fe80::1%eth0/64'"},
    {"{'allow_ip_cidrs': ['2001:db8:::/32']}", "'2001:db8:::/32'"},
    {"{'allow_ip_cidrs': ['example.com']}", "'example.com'"},
    {"{'allow_ip_cidrs': ['10.0.0.0/8', 'nope']}", "'nope'"},
    /* Globs. */
    {"{'allow_models': ['gpt-[4']}",
     "rule allow_models: 'gpt-[4' is not a valid glob pattern"},
    {"{'deny_models': ['gpt\\\\']}", "lone backslash"},
    {"{'allow_models': ['[[:bogus:]]']}", "unknown character class"},
    {"{'allow_models': ['[[:alpha:]']}", "not closed"},
    {"{'allow_models': ['[[:alpha:x]']}", "[: class"},
    {"{'allow_models': ['[z-a]']}", "reversed"},
    {"{'allow_models': ['[a-[:alpha:]]']}", "character class"},
    {"{'allow_models': ['[[.a.]]']}", "collating"},
    {"{'allow_models': ['[[=a=]]']}", "equivalence"},
    {"{'allow_models': ['[]']}", "not closed"},
    {"{'allow_models': ['[!]']}", "not closed"},
    {"{'allow_models': ['[\\\\']}", "not closed"},
    {"{'allow_models': ['ok', 'x[']}", "'x['"},
    /* Shape (kg_validate_rules refuses these first, with its own words). */
    {"{'allow_modelz': []}", "allow_modelz"},
    {"{'deny_operations': ['teleport']}", "teleport"},
    {"{'max_output_price': 'x'}", "max_output_price"},
    {"{'max_input_price': 5}", "max_input_price"},
    {"{'allow_models': 'gpt-4o'}", "allow_models"},
    {"{'allow_models': [1]}", "allow_models"},
    {"{'allow_models': ['']}", "allow_models"},
    {"{'allow_models': ['a\\nb']}", "allow_models"},
    {"{'allow_models': ['a'], 'allow_models': ['b']}", "JSON"},
    {"[]", "object"},
    {"{", "JSON"},
};

START_TEST(test_rules_compile_bad)
{
    const rt_bad_t *row = &rt_bad_rows[_i];
    char json[RT_JSON_MAX];
    kg_rules_t *r = (kg_rules_t *)&r; /* must be reset to NULL */
    kg_diag_t diag = {{0}};

    rt_json(row->json, json);
    ck_assert_msg(kg_rules_compile(json, &r, &diag) == KG_ERR_INVAL,
                  "%s accepted", row->json);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(diag.msg, row->diag) != NULL, "%s: diag '%s'",
                  row->json, diag.msg);
    /* kg_validate_rules refuses it too. */
    memset(&diag, 0, sizeof(diag));
    ck_assert_msg(kg_validate_rules(json, &diag) == KG_ERR_INVAL,
                  "validate accepted %s", row->json);
    ck_assert_str_ne(diag.msg, "");
    ck_assert_int_eq(kg_rules_compile(json, &r, NULL), KG_ERR_INVAL);
}
END_TEST

/* kg_validate_rules names the rule and the value of a bad CIDR or glob. */
START_TEST(test_rules_validate_diag)
{
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(
        kg_validate_rules("{\"allow_ip_cidrs\": [\"10.0.0.0/33\"]}", &diag),
        KG_ERR_INVAL);
    ck_assert_str_eq(diag.msg, "rule allow_ip_cidrs: '10.0.0.0/33' is not an "
                               "IPv4 or IPv6 CIDR");
    ck_assert_int_eq(
        kg_validate_rules("{\"deny_models\": [\"gpt-[4\"]}", &diag),
        KG_ERR_INVAL);
    ck_assert_str_eq(diag.msg, "rule deny_models: 'gpt-[4' is not a valid "
                               "glob pattern (a [ is not closed)");
}
END_TEST

static const char *const rt_good_values[] = {
    "{'allow_models': ['*', '?', 'gpt-4*', 'claude-3-[5-7]*', 'a\\\\*']}",
    "{'allow_models': ['[[:alpha:]]*', '[]a]', '[!]a]', '[a-]', '[\\\\]]']}",
    "{'allow_models': ['[^a]', '[--0]', '[a-\\\\z]', 'openai/*']}",
    "{'deny_models': ['[[:alnum:][:punct:]]', '[[:xdigit:]]x']}",
    "{'allow_ip_cidrs': ['0.0.0.0/0', '::/0', '10.0.0.0/8', '10.1.2.3']}",
    "{'allow_ip_cidrs': ['255.255.255.255/32', '::ffff:10.0.0.0/104']}",
    "{'deny_ip_cidrs': ['2001:db8::/32', '::1', '::1/128', 'FE80::/10']}",
    "{'deny_ip_cidrs': ['::ffff:0:0/96', '::ffff:1.2.3.4/80', '1.2.3.4/0']}",
    "{'allow_providers': ['anything goes'], 'deny_operations': ['other']}",
};

START_TEST(test_rules_compile_good)
{
    char json[RT_JSON_MAX];
    kg_diag_t diag = {{0}};
    kg_rules_t *r = NULL;

    rt_json(rt_good_values[_i], json);
    ck_assert_msg(kg_rules_compile(json, &r, &diag) == KG_OK, "%s: %s", json,
                  diag.msg);
    ck_assert(!kg_rules_is_empty(r));
    kg_rules_free(&r);
    ck_assert_msg(kg_validate_rules(json, &diag) == KG_OK, "validate %s: %s",
                  json, diag.msg);
}
END_TEST

/* {"allow_ip_cidrs": ["10.0.0.0/8", ...]} with n values. */
START_TEST(test_rules_bounds)
{
    char json[KG_RULE_VALUES_MAX * 20 + 64];
    size_t used;
    kg_rules_t *r = NULL;
    kg_diag_t diag = {{0}};
    kg_rules_request_t req = {RT_MODEL, RT_PROVIDER, RT_OP,
                              RT_IP,    RT_IN,       RT_OUT};

    for (int n = KG_RULE_VALUES_MAX; n <= KG_RULE_VALUES_MAX + 1; n++) {
        used = (size_t)snprintf(json, sizeof(json), "{\"deny_ip_cidrs\": [");
        for (int i = 0; i < n; i++) {
            used += (size_t)snprintf(json + used, sizeof(json) - used,
                                     "%s\"10.%d.0.0/16\"", i ? ", " : "", i);
        }
        snprintf(json + used, sizeof(json) - used, "]}");
        if (n == KG_RULE_VALUES_MAX) {
            ck_assert_int_eq(kg_rules_compile(json, &r, &diag), KG_OK);
            /* 10.1.2.3 is the second value. */
            ck_assert_int_eq(kg_rules_check(NULL, r, &req, NULL, 0),
                             KG_ERR_ACCESS_DENIED);
            kg_rules_free(&r);
        } else {
            ck_assert_int_eq(kg_rules_compile(json, &r, &diag), KG_ERR_INVAL);
            ck_assert_ptr_nonnull(strstr(diag.msg, "more than"));
        }
    }
}
END_TEST

START_TEST(test_rules_too_long)
{
    size_t len = KG_RULES_MAX + 16;
    char *json = malloc(len + 1);
    kg_rules_t *r = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_ptr_nonnull(json);
    memset(json, ' ', len);
    json[0] = '{';
    json[len - 1] = '}';
    json[len] = '\0';
    ck_assert_int_eq(kg_rules_compile(json, &r, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "too long"));
    ck_assert_ptr_null(r);
    free(json);
}
END_TEST

/* One model listing: visible or not. */
typedef struct rt_vis_row {
    const char *what;
    const char *ws;
    const char *key;
    rt_req_t req;
    bool visible;
} rt_vis_row_t;

static const rt_vis_row_t rt_vis_rows[] = {
    {"no rules", NULL, NULL, RQ_DEF, true},
    {"allowed model", NULL, "{'allow_models': ['gpt-*']}", RQ_DEF, true},
    {"not in allow_models", NULL, "{'allow_models': ['claude-*']}", RQ_DEF,
     false},
    {"denied model", "{'deny_models': ['gpt-4o']}", NULL, RQ_DEF, false},
    {"denied provider", NULL, "{'deny_providers': ['openai']}", RQ_DEF, false},
    {"provider not allowed", "{'allow_providers': ['anthropic']}", NULL, RQ_DEF,
     false},
    {"too expensive", NULL, "{'max_output_price': '5'}", RQ_DEF, false},
    {"price unknown under a cap", NULL, "{'max_input_price': '5'}",
     RQ_PRICES(-1, RT_OUT), false},
    {"cheap enough", NULL, "{'max_input_price': '5', 'max_output_price': '10'}",
     RQ_DEF, true},
    {"client IP not allowed", NULL, "{'allow_ip_cidrs': ['192.168.0.0/16']}",
     RQ_DEF, false},
    {"client IP allowed", NULL, "{'allow_ip_cidrs': ['10.0.0.0/8']}", RQ_DEF,
     true},
    {"operation rules are ignored", "{'allow_operations': ['chat']}",
     "{'deny_operations': ['models']}", RQ_OP("models"), true},
    {"key narrows workspace", "{'allow_models': ['gpt-*']}",
     "{'allow_models': ['gpt-4o-mini']}", RQ_DEF, false},
};

START_TEST(test_rules_visible_row)
{
    const rt_vis_row_t *row = &rt_vis_rows[_i];
    kg_rules_t *ws = row->ws != NULL ? rt_compile(row->ws) : NULL;
    kg_rules_t *key = row->key != NULL ? rt_compile(row->key) : NULL;
    kg_rules_request_t req = rt_request(&row->req);

    ck_assert_msg(kg_rules_model_visible(ws, key, &req) == row->visible, "%s",
                  row->what);
    /* Without operation rules, visible == the check passes. */
    if (row->visible && strstr(row->what, "operation") == NULL) {
        ck_assert_int_eq(kg_rules_check(ws, key, &req, NULL, 0), KG_OK);
    }
    if (!row->visible) {
        ck_assert_int_eq(kg_rules_check(ws, key, &req, NULL, 0),
                         KG_ERR_ACCESS_DENIED);
    }
    kg_rules_free(&ws);
    kg_rules_free(&key);
}
END_TEST

START_TEST(test_cidr_list)
{
    kg_cidr_list_t *l = NULL;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(
        kg_cidr_list_parse(" 10.0.0.0/8,\t::1 ,192.168.1.1,2001:db8::/32 ", &l,
                           &diag),
        KG_OK);
    ck_assert(kg_cidr_list_contains(l, "10.255.0.1"));
    ck_assert(kg_cidr_list_contains(l, "::ffff:10.0.0.1"));
    ck_assert(kg_cidr_list_contains(l, "::1"));
    ck_assert(kg_cidr_list_contains(l, "192.168.1.1"));
    ck_assert(kg_cidr_list_contains(l, "2001:db8:ffff::1"));
    ck_assert(!kg_cidr_list_contains(l, "192.168.1.2"));
    ck_assert(!kg_cidr_list_contains(l, "11.0.0.1"));
    ck_assert(!kg_cidr_list_contains(l, "::2"));
    ck_assert(!kg_cidr_list_contains(l, "nope"));
    ck_assert(!kg_cidr_list_contains(l, NULL));
    ck_assert(!kg_cidr_list_contains(l, ""));
    ck_assert(!kg_cidr_list_contains(NULL, "10.0.0.1"));
    kg_cidr_list_free(&l);
    ck_assert_ptr_null(l);
    kg_cidr_list_free(&l);
    kg_cidr_list_free(NULL);

    ck_assert_int_eq(kg_cidr_list_parse(NULL, &l, &diag), KG_OK);
    ck_assert(!kg_cidr_list_contains(l, "10.0.0.1"));
    kg_cidr_list_free(&l);
    ck_assert_int_eq(kg_cidr_list_parse(" \t ", &l, &diag), KG_OK);
    ck_assert(!kg_cidr_list_contains(l, "10.0.0.1"));
    kg_cidr_list_free(&l);
    ck_assert_int_eq(kg_cidr_list_parse("0.0.0.0/0,::/0", &l, &diag), KG_OK);
    ck_assert(kg_cidr_list_contains(l, "203.0.113.1"));
    ck_assert(kg_cidr_list_contains(l, "2001:db8::1"));
    kg_cidr_list_free(&l);
}
END_TEST

typedef struct rt_cidr_bad {
    const char *csv;
    const char *diag;
} rt_cidr_bad_t;

static const rt_cidr_bad_t rt_cidr_bad_rows[] = {
    {"10.0.0.0/8,,::1", "empty entry"},
    {"10.0.0.0/8,", "empty entry"},
    {",10.0.0.0/8", "empty entry"},
    {"10.0.0.0/8, nope", "'nope' is not an IPv4 or IPv6 CIDR"},
    {"10.0.0.0/33", "'10.0.0.0/33'"},
    {"10.0.0.0/8 192.168.0.0/16", "is not an IPv4 or IPv6 CIDR"},
};

START_TEST(test_cidr_list_bad)
{
    const rt_cidr_bad_t *row = &rt_cidr_bad_rows[_i];
    kg_cidr_list_t *l = (kg_cidr_list_t *)&l;
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_cidr_list_parse(row->csv, &l, &diag), KG_ERR_INVAL);
    ck_assert_ptr_null(l);
    ck_assert_msg(strstr(diag.msg, row->diag) != NULL, "%s: '%s'", row->csv,
                  diag.msg);
}
END_TEST

START_TEST(test_cidr_list_bounds)
{
    char csv[KG_CIDR_LIST_TEXT_MAX + 64];
    size_t used = 0;
    kg_cidr_list_t *l = NULL;
    kg_diag_t diag = {{0}};

    for (int i = 0; i < KG_CIDR_LIST_MAX; i++) {
        used += (size_t)snprintf(csv + used, sizeof(csv) - used, "%s10.%d.0.1",
                                 i ? "," : "", i);
    }
    ck_assert_int_eq(kg_cidr_list_parse(csv, &l, &diag), KG_OK);
    ck_assert(kg_cidr_list_contains(l, "10.63.0.1"));
    ck_assert(!kg_cidr_list_contains(l, "10.63.0.2"));
    kg_cidr_list_free(&l);
    snprintf(csv + used, sizeof(csv) - used, ",10.99.0.1");
    ck_assert_int_eq(kg_cidr_list_parse(csv, &l, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "more than"));
    memset(csv, ' ', KG_CIDR_LIST_TEXT_MAX + 1);
    csv[KG_CIDR_LIST_TEXT_MAX + 1] = '\0';
    ck_assert_int_eq(kg_cidr_list_parse(csv, &l, &diag), KG_ERR_INVAL);
    ck_assert_ptr_nonnull(strstr(diag.msg, "too long"));
}
END_TEST

/* One client-IP derivation; want NULL: the function returns false. */
typedef struct rt_xff_row {
    const char *what;
    const char *peer;
    const char *xff;
    const char *trusted; /* CIDR list; NULL: no list */
    const char *want;
} rt_xff_row_t;

#define RT_TRUSTED "10.0.0.0/8, ::1"

static const rt_xff_row_t rt_xff_rows[] = {
    {"untrusted peer ignores XFF", "203.0.113.9", "1.2.3.4", RT_TRUSTED,
     "203.0.113.9"},
    {"no trusted list ignores XFF", "10.0.0.1", "1.2.3.4", NULL, "10.0.0.1"},
    {"empty trusted list ignores XFF", "10.0.0.1", "1.2.3.4", "", "10.0.0.1"},
    {"trusted peer uses XFF", "10.0.0.1", "1.2.3.4", RT_TRUSTED, "1.2.3.4"},
    {"spoofed left entries ignored", "10.0.0.1", "6.6.6.6, 7.7.7.7, 1.2.3.4",
     RT_TRUSTED, "1.2.3.4"},
    {"trusted hops skipped", "10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.2,10.0.0.3",
     RT_TRUSTED, "1.2.3.4"},
    {"spoofed trusted-looking entry left of client", "10.0.0.1",
     "10.9.9.9, 1.2.3.4", RT_TRUSTED, "1.2.3.4"},
    {"garbage left of client ignored", "10.0.0.1", "garbage<>, 1.2.3.4",
     RT_TRUSTED, "1.2.3.4"},
    {"every entry trusted: the leftmost", "10.0.0.1", "10.0.0.5, 10.0.0.2",
     RT_TRUSTED, "10.0.0.5"},
    {"no XFF: the peer", "10.0.0.1", NULL, RT_TRUSTED, "10.0.0.1"},
    {"empty XFF: the peer", "10.0.0.1", "", RT_TRUSTED, "10.0.0.1"},
    {"blank XFF: the peer", "10.0.0.1", "  ", RT_TRUSTED, "10.0.0.1"},
    {"malformed rightmost: the peer", "10.0.0.1", "1.2.3.4, garbage",
     RT_TRUSTED, "10.0.0.1"},
    {"empty rightmost: the peer", "10.0.0.1", "1.2.3.4,", RT_TRUSTED,
     "10.0.0.1"},
    {"empty entry in the walk: the peer", "10.0.0.1", "1.2.3.4,,10.0.0.2",
     RT_TRUSTED, "10.0.0.1"},
    {"port: the peer", "10.0.0.1", "1.2.3.4:8080", RT_TRUSTED, "10.0.0.1"},
    {"brackets: the peer", "10.0.0.1", "[2001:db8::1]", RT_TRUSTED, "10.0.0.1"},
    {"entry too long: the peer", "10.0.0.1",
     "1.2.3.4, "
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     RT_TRUSTED, "10.0.0.1"},
    {"white space around entries", "10.0.0.1", "6.6.6.6 ,\t1.2.3.4\t ",
     RT_TRUSTED, "1.2.3.4"},
    {"IPv6 trusted peer and client", "::1", "2001:DB8:0:0::1", RT_TRUSTED,
     "2001:db8::1"},
    {"mapped trusted peer", "::ffff:10.0.0.1", "1.2.3.4", RT_TRUSTED,
     "1.2.3.4"},
    {"mapped untrusted peer as IPv4", "::ffff:203.0.113.9", "1.2.3.4",
     RT_TRUSTED, "203.0.113.9"},
    {"mapped XFF entry as IPv4", "10.0.0.1", "::ffff:1.2.3.4", RT_TRUSTED,
     "1.2.3.4"},
    {"mapped trusted XFF hop skipped", "10.0.0.1", "1.2.3.4, ::ffff:10.0.0.2",
     RT_TRUSTED, "1.2.3.4"},
    {"peer not an address", "nope", "1.2.3.4", RT_TRUSTED, NULL},
    {"peer NULL", NULL, "1.2.3.4", RT_TRUSTED, NULL},
    {"peer with zone", "fe80::1%eth0", NULL, NULL, NULL},
};

START_TEST(test_rules_client_ip_row)
{
    const rt_xff_row_t *row = &rt_xff_rows[_i];
    kg_cidr_list_t *trusted = NULL;
    kg_diag_t diag = {{0}};
    char out[KG_RULES_IP_STRLEN];
    bool ok;

    if (row->trusted != NULL) {
        ck_assert_int_eq(kg_cidr_list_parse(row->trusted, &trusted, &diag),
                         KG_OK);
    }
    memset(out, 'x', sizeof(out));
    ok = kg_rules_client_ip(row->peer, row->xff, trusted, out, sizeof(out));
    if (row->want == NULL) {
        ck_assert_msg(!ok, "%s: got %s", row->what, out);
        ck_assert_str_eq(out, "");
    } else {
        ck_assert_msg(ok, "%s: failed", row->what);
        ck_assert_msg(strcmp(out, row->want) == 0, "%s: got %s, want %s",
                      row->what, out, row->want);
    }
    kg_cidr_list_free(&trusted);
}
END_TEST

/* n trusted hops to the right of the client 1.2.3.4 (and a spoof left). */
static void rt_xff_chain(char *buf, size_t len, int hops)
{
    size_t used = (size_t)snprintf(buf, len, "6.6.6.6, 1.2.3.4");

    for (int i = 0; i < hops; i++) {
        used += (size_t)snprintf(buf + used, len - used, ", 10.0.%d.1", i);
    }
}

START_TEST(test_rules_client_ip_bounds)
{
    kg_cidr_list_t *trusted = NULL;
    kg_diag_t diag = {{0}};
    char xff[2048];
    char out[KG_RULES_IP_STRLEN];
    char tiny[8];

    ck_assert_int_eq(kg_cidr_list_parse(RT_TRUSTED, &trusted, &diag), KG_OK);
    /* The client is the 32nd entry from the right: found. */
    rt_xff_chain(xff, sizeof(xff), KG_XFF_ENTRIES_MAX - 1);
    ck_assert(kg_rules_client_ip("10.0.0.1", xff, trusted, out, sizeof(out)));
    ck_assert_str_eq(out, "1.2.3.4");
    /* The 33rd: past the walk's bound, the peer. */
    rt_xff_chain(xff, sizeof(xff), KG_XFF_ENTRIES_MAX);
    ck_assert(kg_rules_client_ip("10.0.0.1", xff, trusted, out, sizeof(out)));
    ck_assert_str_eq(out, "10.0.0.1");
    /* An output buffer too small. */
    memset(tiny, 'x', sizeof(tiny));
    ck_assert(
        !kg_rules_client_ip("2001:db8::1", NULL, trusted, tiny, sizeof(tiny)));
    ck_assert_str_eq(tiny, "");
    ck_assert(!kg_rules_client_ip("10.0.0.1", NULL, NULL, out, 0));
    ck_assert(!kg_rules_client_ip("10.0.0.1", NULL, NULL, NULL, 0));
    ck_assert(kg_rules_client_ip("255.255.255.255", NULL, NULL, tiny + 0,
                                 sizeof(tiny)) == false);
    ck_assert(kg_rules_client_ip("1.2.3.4", NULL, NULL, tiny, sizeof(tiny)));
    ck_assert_str_eq(tiny, "1.2.3.4");
    kg_cidr_list_free(&trusted);
}
END_TEST

/* The client IP feeds the IP rules: a spoofed XFF cannot escape a deny. */
START_TEST(test_rules_client_ip_and_rules)
{
    kg_cidr_list_t *trusted = NULL;
    kg_rules_t *key = rt_compile("{'deny_ip_cidrs': ['1.2.3.0/24']}");
    kg_diag_t diag = {{0}};
    char ip[KG_RULES_IP_STRLEN];
    kg_rules_request_t req = {RT_MODEL, RT_PROVIDER, RT_OP, ip, RT_IN, RT_OUT};

    ck_assert_int_eq(kg_cidr_list_parse("10.0.0.0/8", &trusted, &diag), KG_OK);
    ck_assert(kg_rules_client_ip("10.0.0.1", "9.9.9.9, 1.2.3.4", trusted, ip,
                                 sizeof(ip)));
    ck_assert_int_eq(kg_rules_check(NULL, key, &req, NULL, 0),
                     KG_ERR_ACCESS_DENIED);
    ck_assert(
        kg_rules_client_ip("1.2.3.4", "9.9.9.9", trusted, ip, sizeof(ip)));
    ck_assert_int_eq(kg_rules_check(NULL, key, &req, NULL, 0),
                     KG_ERR_ACCESS_DENIED);
    kg_rules_free(&key);
    kg_cidr_list_free(&trusted);
}
END_TEST

static Suite *rules_suite(void)
{
    Suite *s = suite_create("rules");
    TCase *tc = tcase_create("check");

    tcase_add_loop_test(tc, test_rules_check_row, 0,
                        (int)UT_NROWS(rt_check_rows));
    tcase_add_test(tc, test_rules_reason_shape);
    tcase_add_test(tc, test_rules_reason_truncated);
    tcase_add_test(tc, test_rules_null_request);
    tcase_add_loop_test(tc, test_rules_visible_row, 0,
                        (int)UT_NROWS(rt_vis_rows));
    suite_add_tcase(s, tc);

    tc = tcase_create("compile");
    tcase_add_test(tc, test_rules_empty);
    tcase_add_loop_test(tc, test_rules_compile_bad, 0,
                        (int)UT_NROWS(rt_bad_rows));
    tcase_add_loop_test(tc, test_rules_compile_good, 0,
                        (int)UT_NROWS(rt_good_values));
    tcase_add_test(tc, test_rules_validate_diag);
    tcase_add_test(tc, test_rules_bounds);
    tcase_add_test(tc, test_rules_too_long);
    suite_add_tcase(s, tc);

    tc = tcase_create("client_ip");
    tcase_add_test(tc, test_cidr_list);
    tcase_add_loop_test(tc, test_cidr_list_bad, 0,
                        (int)UT_NROWS(rt_cidr_bad_rows));
    tcase_add_test(tc, test_cidr_list_bounds);
    tcase_add_loop_test(tc, test_rules_client_ip_row, 0,
                        (int)UT_NROWS(rt_xff_rows));
    tcase_add_test(tc, test_rules_client_ip_bounds);
    tcase_add_test(tc, test_rules_client_ip_and_rules);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(rules_suite());
}
