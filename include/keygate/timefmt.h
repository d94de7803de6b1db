/* UTC timestamps as RFC 3339 text, for APIs, tables and operator input. */
#ifndef KEYGATE_TIMEFMT_H
#define KEYGATE_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

#include "keygate/err.h"

/* "2026-11-22T05:30:00Z" and the NUL. */
#define KG_TIME_STRLEN 32

/* Print unix seconds as "YYYY-MM-DDTHH:MM:SSZ". Returns buf. */
const char *kg_time_format(int64_t unix_seconds, char *buf, size_t len);

/* Print unix milliseconds as "YYYY-MM-DDTHH:MM:SS.mmmZ". Returns buf. */
const char *kg_time_format_ms(int64_t unix_ms, char *buf, size_t len);

/* Print unix seconds as "YYYY-MM-DD HH:MM" (UTC) for tables. Returns buf. */
const char *kg_time_format_short(int64_t unix_seconds, char *buf, size_t len);

/*
 * Parse "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SSZ" or with "+HH:MM"/"-HH:MM"
 * offset. Returns KG_OK, or KG_ERR_INVAL with diag.
 */
kg_err_t kg_time_parse(const char *s, int64_t *unix_seconds,
                       kg_diag_t *diag) KG_MUST_CHECK;

#endif /* KEYGATE_TIMEFMT_H */
