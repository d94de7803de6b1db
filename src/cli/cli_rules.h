/* Access-rule options shared by 'keys create|update' and 'workspaces update'.
 */
#ifndef KEYGATE_CLI_RULES_H
#define KEYGATE_CLI_RULES_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>

/* First getopt value of the rule options; callers' own values stay below. */
#define KG_CLI_RULE_OPT_BASE 1000

/* The rule options, for appending to a getopt_long table. */
extern const struct option kg_cli_rule_options[];
extern const size_t kg_cli_rule_noptions;

/*
 * Copy base (terminated by a zero entry) followed by the rule options and
 * a terminator into out (cap entries). Returns out, or NULL when it does
 * not fit.
 */
struct option *kg_cli_rules_options_join(const struct option *base,
                                         struct option *out, size_t cap);

/* Help lines for the rule options. */
extern const char kg_cli_rules_help[];

/* Rule options collected from the command line. */
typedef struct kg_cli_rules {
    json_t *set; /* new: {rule: [values] or "price"}; null = remove rule */
    bool any;
} kg_cli_rules_t;

void kg_cli_rules_init(kg_cli_rules_t *r);
void kg_cli_rules_free(kg_cli_rules_t *r);

/* True when opt is one of the rule options. */
bool kg_cli_rules_is_option(int opt);

/*
 * Take one rule option: repeated list options add values ("--allow-model
 * a --allow-model b"); the value "none" removes the rule. Returns false
 * after printing an error.
 */
bool kg_cli_rules_take(kg_cli_rules_t *r, int opt, const char *arg);

/*
 * Merge the collected options into the current rules JSON text (NULL =
 * "{}"): each rule named on the command line replaces that rule, the
 * others stay. Returns a new string (free) or NULL after printing an error.
 */
char *kg_cli_rules_merge(const kg_cli_rules_t *r, const char *current);

#endif /* KEYGATE_CLI_RULES_H */
