/* Money as integer micro-USD: parsing operator input and printing decimals. */
#include "keygate/money.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

kg_err_t kg_money_parse(const char *s, int64_t *micro, kg_diag_t *diag)
{
    int64_t whole = 0;
    int64_t frac = 0;
    int frac_digits = 0;
    bool seen_digit = false;
    const char *p = s;

    if (s == NULL || *s == '\0') {
        return kg_diag_fail(diag, KG_ERR_INVAL, "an amount is required");
    }
    if (*p == '-') {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "amount '%.32s' is negative; amounts are "
                            "non-negative USD like 25.00",
                            s);
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        seen_digit = true;
        whole = whole * 10 + (*p - '0');
        if (whole > KG_MONEY_MAX_USD) {
            return kg_diag_fail(diag, KG_ERR_INVAL,
                                "amount '%.32s' is above the maximum of "
                                "%" PRId64 " USD",
                                s, KG_MONEY_MAX_USD);
        }
    }
    if (*p == '.') {
        p++;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (++frac_digits > 6) {
                return kg_diag_fail(diag, KG_ERR_INVAL,
                                    "amount '%.32s' has more than 6 "
                                    "decimals",
                                    s);
            }
            frac = frac * 10 + (*p - '0');
        }
        if (frac_digits == 0) {
            seen_digit = false;
        }
    }
    if (*p != '\0' || !seen_digit) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "amount '%.32s' is not a decimal USD amount "
                            "like 25.00",
                            s);
    }
    for (int i = frac_digits; i < 6; i++) {
        frac *= 10;
    }
    if (whole * KG_MICRO_PER_USD + frac > KG_MONEY_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "amount '%.32s' is above the maximum of "
                            "%" PRId64 " USD",
                            s, KG_MONEY_MAX_USD);
    }
    *micro = whole * KG_MICRO_PER_USD + frac;
    return KG_OK;
}

const char *kg_money_format(int64_t micro, char *buf, size_t len)
{
    bool neg = micro < 0;
    uint64_t abs = neg ? (uint64_t)(-(micro + 1)) + 1 : (uint64_t)micro;
    uint64_t whole = abs / 1000000;
    uint64_t frac = abs % 1000000;
    char digits[8];
    size_t n;

    snprintf(digits, sizeof(digits), "%06" PRIu64, frac);
    n = 6;
    while (n > 2 && digits[n - 1] == '0') {
        n--;
    }
    digits[n] = '\0';
    snprintf(buf, len, "%s%" PRIu64 ".%s", neg ? "-" : "", whole, digits);
    return buf;
}

const char *kg_money_format_limit(int64_t micro, char *buf, size_t len)
{
    if (micro < 0) {
        snprintf(buf, len, "%s", KG_MONEY_NO_LIMIT);
        return buf;
    }
    return kg_money_format(micro, buf, len);
}

json_t *kg_money_json(int64_t micro)
{
    char buf[KG_MONEY_STRLEN];

    return micro < 0 ? json_null()
                     : json_string(kg_money_format(micro, buf, sizeof(buf)));
}
