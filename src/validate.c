/* Bounds and shape checks for operator-entered names, text and JSON. */
#include "keygate/validate.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "keygate/money.h"
#include "keygate/rules.h"

size_t kg_validate_utf8_len(const unsigned char *s, size_t left)
{
    size_t n;
    uint32_t cp;

    if (s[0] < 0x80) {
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        n = 2;
        cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3;
        cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n > left) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return n;
}

/* True when s is valid UTF-8 with no control characters but those allowed. */
static bool validate_clean(const char *s, size_t len, bool allow_newlines)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        size_t n = kg_validate_utf8_len(p + i, len - i);

        if (n == 0) {
            return false;
        }
        if (n == 1 && (p[i] < 0x20 || p[i] == 0x7F)) {
            if (!allow_newlines || (p[i] != '\n' && p[i] != '\t')) {
                return false;
            }
        }
        i += n;
    }
    return true;
}

kg_err_t kg_validate_name(const char *s, const char *what, kg_diag_t *diag)
{
    size_t len = s ? strlen(s) : 0;

    if (len == 0) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "%s must not be empty", what);
    }
    if (len > KG_NAME_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "%s is too long (%zu bytes; the maximum is %d)",
                            what, len, KG_NAME_MAX);
    }
    if (s[0] == ' ' || s[len - 1] == ' ' || !validate_clean(s, len, false)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "%s must be printable UTF-8 without control "
                            "characters or surrounding spaces",
                            what);
    }
    return KG_OK;
}

kg_err_t kg_validate_text(const char *s, size_t max, const char *what,
                          kg_diag_t *diag)
{
    size_t len = strlen(s);

    if (len > max) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "%s is too long (%zu bytes; the maximum is %zu)",
                            what, len, max);
    }
    if (!validate_clean(s, len, true)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "%s must be UTF-8 text without control "
                            "characters",
                            what);
    }
    return KG_OK;
}

/* Parse a bounded JSON object; *out is new on KG_OK. */
static kg_err_t validate_json_object(const char *json, size_t max,
                                     const char *what, json_t **out,
                                     kg_diag_t *diag)
{
    json_error_t jerr;
    json_t *root;

    *out = NULL;
    if (strlen(json) > max) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "%s is too long (the maximum is %zu bytes)", what,
                            max);
    }
    root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "%s is not valid JSON: %s",
                            what, jerr.text);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return kg_diag_fail(diag, KG_ERR_INVAL, "%s must be a JSON object",
                            what);
    }
    *out = root;
    return KG_OK;
}

kg_err_t kg_validate_metadata(const char *json, kg_diag_t *diag)
{
    json_t *root = NULL;
    kg_err_t rc;

    rc = validate_json_object(json, KG_METADATA_MAX, "metadata", &root, diag);
    json_decref(root);
    return rc;
}

static const char *const validate_rule_lists[] = {
    "allow_models",     "deny_models",     "allow_providers", "deny_providers",
    "allow_operations", "deny_operations", "allow_ip_cidrs",  "deny_ip_cidrs",
};

static const char *const validate_operations[] = {
    "chat",     "completions", "embeddings",  "responses",
    "messages", "models",      "moderations", "other",
};

static bool validate_in(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, set[i]) == 0) {
            return true;
        }
    }
    return false;
}

static kg_err_t validate_rule_list(const char *name, json_t *value,
                                   kg_diag_t *diag)
{
    size_t i;
    json_t *item; /* borrowed */
    bool operations = strstr(name, "_operations") != NULL;

    if (!json_is_array(value)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "rule %s must be an array of strings", name);
    }
    if (json_array_size(value) > KG_RULE_VALUES_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "rule %s has more than %d values", name,
                            KG_RULE_VALUES_MAX);
    }
    json_array_foreach(value, i, item)
    {
        const char *s = json_string_value(item);

        if (s == NULL || *s == '\0' || strlen(s) > KG_RULE_VALUE_MAX ||
            !validate_clean(s, strlen(s), false)) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "rule %s: values must be non-empty strings "
                                "of at most %d bytes",
                                name, KG_RULE_VALUE_MAX);
        }
        if (operations && !validate_in(s, validate_operations,
                                       sizeof(validate_operations) /
                                           sizeof(*validate_operations))) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "rule %s: unknown operation '%.40s' (chat, "
                                "completions, embeddings, responses, "
                                "messages, models, moderations, other)",
                                name, s);
        }
    }
    return KG_OK;
}

kg_err_t kg_validate_rules(const char *json, kg_diag_t *diag)
{
    json_t *root = NULL;
    json_t *value; /* borrowed */
    const char *name;
    kg_err_t rc;

    rc = validate_json_object(json, KG_RULES_MAX, "rules", &root, diag);
    if (rc != KG_OK) {
        return rc;
    }
    json_object_foreach(root, name, value)
    {
        if (validate_in(name, validate_rule_lists,
                        sizeof(validate_rule_lists) /
                            sizeof(*validate_rule_lists))) {
            rc = validate_rule_list(name, value, diag);
        } else if (strcmp(name, "max_input_price") == 0 ||
                   strcmp(name, "max_output_price") == 0) {
            int64_t micro;
            kg_diag_t d = {{0}};

            if (!json_is_string(value) ||
                kg_money_parse(json_string_value(value), &micro, &d) != KG_OK) {
                rc = kg_diag_fail(diag, KG_ERR_INVAL,
                                  "rule %s must be a decimal USD string per "
                                  "1M tokens, like \"5.00\"",
                                  name);
            }
        } else {
            rc = kg_diag_fail(diag, KG_ERR_INVAL,
                              "unknown rule '%.40s' (allow_/deny_ models, "
                              "providers, operations, ip_cidrs; "
                              "max_input_price, max_output_price)",
                              name);
        }
        if (rc != KG_OK) {
            break;
        }
    }
    if (rc == KG_OK) {
        /* The values' meaning: globs, CIDRs (diag names rule and value). */
        kg_rules_t *compiled = NULL;

        rc = kg_rules_compile(json, &compiled, diag);
        kg_rules_free(&compiled);
    }
    json_decref(root);
    return rc;
}
