/* Access-rule options shared by 'keys create|update' and 'workspaces update'.
 */
#include "cli_rules.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct rule_opt {
    const char *option; /* without the leading "--" */
    const char *rule;   /* the JSON member */
    bool price;         /* a single decimal string, not a list */
} rule_opt_t;

static const rule_opt_t rule_opts[] = {
    {"allow-model", "allow_models", false},
    {"deny-model", "deny_models", false},
    {"allow-provider", "allow_providers", false},
    {"deny-provider", "deny_providers", false},
    {"allow-operation", "allow_operations", false},
    {"deny-operation", "deny_operations", false},
    {"allow-ip", "allow_ip_cidrs", false},
    {"deny-ip", "deny_ip_cidrs", false},
    {"max-input-price", "max_input_price", true},
    {"max-output-price", "max_output_price", true},
};

#define RULE_NOPTS (sizeof(rule_opts) / sizeof(*rule_opts))

const struct option kg_cli_rule_options[] = {
    {"allow-model", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 0},
    {"deny-model", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 1},
    {"allow-provider", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 2},
    {"deny-provider", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 3},
    {"allow-operation", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 4},
    {"deny-operation", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 5},
    {"allow-ip", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 6},
    {"deny-ip", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 7},
    {"max-input-price", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 8},
    {"max-output-price", required_argument, NULL, KG_CLI_RULE_OPT_BASE + 9},
};

const size_t kg_cli_rule_noptions =
    sizeof(kg_cli_rule_options) / sizeof(*kg_cli_rule_options);

const char kg_cli_rules_help[] =
    "  --allow-model GLOB     allow only matching models (repeatable)\n"
    "  --deny-model GLOB      deny matching models (repeatable)\n"
    "  --allow-provider NAME  allow only these providers (repeatable)\n"
    "  --deny-provider NAME   deny these providers (repeatable)\n"
    "  --allow-operation OP   chat, completions, embeddings, responses,\n"
    "  --deny-operation OP    messages, models, moderations, other\n"
    "  --allow-ip CIDR        allow only these client addresses (repeatable)\n"
    "  --deny-ip CIDR         deny these client addresses (repeatable)\n"
    "  --max-input-price USD  refuse models above this price per 1M input\n"
    "  --max-output-price USD refuse models above this price per 1M output\n"
    "                         (each rule option replaces that rule; the\n"
    "                         value 'none' removes it)\n";

_Static_assert(sizeof(kg_cli_rule_options) / sizeof(*kg_cli_rule_options) ==
                   sizeof(rule_opts) / sizeof(*rule_opts),
               "one option per rule");

struct option *kg_cli_rules_options_join(const struct option *base,
                                         struct option *out, size_t cap)
{
    size_t n = 0;

    while (base[n].name != NULL) {
        n++;
    }
    if (n + kg_cli_rule_noptions + 1 > cap) {
        return NULL;
    }
    memcpy(out, base, n * sizeof(*out));
    memcpy(out + n, kg_cli_rule_options, kg_cli_rule_noptions * sizeof(*out));
    memset(&out[n + kg_cli_rule_noptions], 0, sizeof(*out));
    return out;
}

void kg_cli_rules_init(kg_cli_rules_t *r)
{
    r->set = NULL;
    r->any = false;
}

void kg_cli_rules_free(kg_cli_rules_t *r)
{
    json_decref(r->set);
    r->set = NULL;
}

bool kg_cli_rules_is_option(int opt)
{
    return opt >= KG_CLI_RULE_OPT_BASE &&
           opt < KG_CLI_RULE_OPT_BASE + (int)RULE_NOPTS;
}

bool kg_cli_rules_take(kg_cli_rules_t *r, int opt, const char *arg)
{
    const rule_opt_t *ro = &rule_opts[opt - KG_CLI_RULE_OPT_BASE];
    json_t *cur;

    if (r->set == NULL) {
        r->set = json_object();
        if (r->set == NULL) {
            kg_cli_errorf("out of memory");
            return false;
        }
    }
    r->any = true;
    if (strcmp(arg, "none") == 0) {
        return json_object_set_new(r->set, ro->rule, json_null()) == 0;
    }
    if (ro->price) {
        return json_object_set_new(r->set, ro->rule, json_string(arg)) == 0;
    }
    cur = json_object_get(r->set, ro->rule); /* borrowed */
    if (!json_is_array(cur)) {
        cur = json_array();
        if (cur == NULL || json_object_set_new(r->set, ro->rule, cur) != 0) {
            kg_cli_errorf("out of memory");
            return false;
        }
    }
    if (json_array_append_new(cur, json_string(arg)) != 0) {
        kg_cli_errorf("--%s: the value must be UTF-8 text", ro->option);
        return false;
    }
    return true;
}

char *kg_cli_rules_merge(const kg_cli_rules_t *r, const char *current)
{
    json_t *rules = json_loads(current ? current : "{}", 0, NULL); /* new */
    json_t *value; /* borrowed */
    const char *name;
    char *out;

    if (!json_is_object(rules)) {
        json_decref(rules);
        rules = json_object();
    }
    if (r->set != NULL) {
        json_object_foreach(r->set, name, value)
        {
            if (json_is_null(value)) {
                json_object_del(rules, name);
            } else {
                json_object_set(rules, name, value);
            }
        }
    }
    out = json_dumps(rules, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rules);
    if (out == NULL) {
        kg_cli_errorf("out of memory");
    }
    return out;
}
