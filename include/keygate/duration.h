/* Durations written by operators ("90d", "1h30m") as whole seconds. */
#ifndef KEYGATE_DURATION_H
#define KEYGATE_DURATION_H

#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"

/* The longest duration accepted: 100 years of 365 days. */
#define KG_DURATION_MAX    (INT64_C(100) * 365 * 86400)
#define KG_DURATION_STRLEN 32

/*
 * Parse "<n><unit>..." with units s, m, h, d, w (e.g. "30d", "1h30m"), or a
 * bare "0". Returns KG_OK with *seconds set, or KG_ERR_INVAL with diag
 * naming the bad text ("3x", "-1d", "", overflow beyond KG_DURATION_MAX).
 */
kg_err_t kg_duration_parse(const char *s, int64_t *seconds,
                           kg_diag_t *diag) KG_MUST_CHECK;

/* Print seconds in the largest exact units ("90d", "1h30m", "0s"). */
const char *kg_duration_format(int64_t seconds, char *buf, size_t len);

#endif /* KEYGATE_DURATION_H */
