/* Bounds and shape checks for operator-entered names, text and JSON. */
#ifndef KEYGATE_VALIDATE_H
#define KEYGATE_VALIDATE_H

#include <stddef.h>

#include "keygate/err.h"

#define KG_NAME_MAX        64
#define KG_DESCRIPTION_MAX 1024
#define KG_METADATA_MAX    4096
#define KG_RULES_MAX       16384
#define KG_RULE_VALUES_MAX 64
#define KG_RULE_VALUE_MAX  256
#define KG_ACTOR_MAX       64

/*
 * Length of the well-formed UTF-8 sequence at s (left ≥ 1 bytes available):
 * 1 to 4, or 0 when it is malformed, overlong, a surrogate or above
 * U+10FFFF.
 */
size_t kg_validate_utf8_len(const unsigned char *s, size_t left);

/*
 * A name: 1..KG_NAME_MAX bytes of printable ASCII or UTF-8, no control
 * characters, no leading or trailing space. what names the field in the
 * message ("key name"). Returns KG_OK or KG_ERR_INVAL with diag.
 */
kg_err_t kg_validate_name(const char *s, const char *what,
                          kg_diag_t *diag) KG_MUST_CHECK;

/* Free text up to max bytes of valid UTF-8 without control characters
 * other than newline and tab. */
kg_err_t kg_validate_text(const char *s, size_t max, const char *what,
                          kg_diag_t *diag) KG_MUST_CHECK;

/* A JSON object of at most KG_METADATA_MAX bytes. */
kg_err_t kg_validate_metadata(const char *json, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Access rules (product.md 5.2) as a JSON object: allow_/deny_ models,
 * providers, operations, ip_cidrs (arrays of strings) and max_input_price,
 * max_output_price (decimal USD strings per 1M tokens). Unknown members,
 * wrong types, unknown operations, empty or over-long values are refused.
 */
kg_err_t kg_validate_rules(const char *json, kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_VALIDATE_H */
