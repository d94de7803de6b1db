/* Money as integer micro-USD: parsing operator input and printing decimals. */
#ifndef KEYGATE_MONEY_H
#define KEYGATE_MONEY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"

#define KG_MICRO_PER_USD INT64_C(1000000)
/* The largest amount keygate accepts from an operator: one billion USD. */
#define KG_MONEY_MAX_USD INT64_C(1000000000)
#define KG_MONEY_MAX     (KG_MONEY_MAX_USD * KG_MICRO_PER_USD)
/* Room for "-1000000000.000000" and the NUL. */
#define KG_MONEY_STRLEN 24
/* The one unit of every amount keygate shows, and how a missing limit
 * reads to people (JSON says null). */
#define KG_MONEY_UNIT     "USD"
#define KG_MONEY_NO_LIMIT "no limit"

/*
 * Parse a non-negative decimal USD amount ("25", "25.00", "0.000001") into
 * micro-USD. At most 6 decimals, no sign, no exponent, no spaces, at most
 * KG_MONEY_MAX. Returns KG_OK, or KG_ERR_INVAL with diag saying why.
 */
kg_err_t kg_money_parse(const char *s, int64_t *micro,
                        kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Print micro-USD as a decimal string with at least two decimals and no
 * trailing zeros past them ("250.50", "0.000123"). Returns buf.
 */
const char *kg_money_format(int64_t micro, char *buf, size_t len);

/*
 * A limit for people: kg_money_format, or KG_MONEY_NO_LIMIT for a negative
 * value (KG_NONE: no limit). Returns buf.
 */
const char *kg_money_format_limit(int64_t micro, char *buf, size_t len);

/*
 * An amount in JSON (new reference): the kg_money_format string, or null
 * for a negative value (KG_NONE: no limit, or not applicable). NULL when
 * out of memory.
 */
json_t *kg_money_json(int64_t micro);

#endif /* KEYGATE_MONEY_H */
