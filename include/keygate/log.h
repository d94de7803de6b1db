/* Leveled server logs, text or JSON, to stderr or a file; cheap when off. */
#ifndef KEYGATE_LOG_H
#define KEYGATE_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "keygate/err.h"

typedef enum kg_log_level {
    KG_LOG_ERROR = 0,
    KG_LOG_WARN,
    KG_LOG_INFO,
    KG_LOG_DEBUG,
} kg_log_level_t;

/* How a line is written ([log] format). */
typedef enum kg_log_format {
    KG_LOG_TEXT = 0, /* "<time> <level> <message>" */
    KG_LOG_JSON,     /* one JSON object per line */
} kg_log_format_t;

/* The longest line written, newline included (longer ones are cut). */
#define KG_LOG_LINE_MAX 4096
/* Room for a time stamp "2025-01-31T23:59:59.123Z". */
#define KG_LOG_STAMP_LEN 32

/* The most verbose level printed; read by KG_LOG, set on any thread. */
extern atomic_int kg_log_threshold;

/* Set the most verbose level that is printed (any thread). */
void kg_log_set_level(kg_log_level_t level);

/* Parse "error", "warn", "info" or "debug"; false when unknown. */
bool kg_log_level_parse(const char *s, kg_log_level_t *level);

/* The level's name ("info"). */
const char *kg_log_level_name(kg_log_level_t level);

/* Set or read the format of the lines written from now on (any thread). */
void kg_log_set_format(kg_log_format_t format);
kg_log_format_t kg_log_get_format(void);

/* Parse "text" or "json"; false when unknown. Its name ("json"). */
bool kg_log_format_parse(const char *s, kg_log_format_t *format);
const char *kg_log_format_name(kg_log_format_t format);

/*
 * Write lines to path from now on (appended, created with mode 0640), or
 * to stderr again when path is NULL or "". Threads writing at the same
 * moment are not disturbed: the log's descriptor number stays the same and
 * only the file behind it changes (dup3), so a line goes to the old file
 * or the new one, whole. KG_OK, or KG_ERR_IO with diag (the old
 * destination is kept).
 */
kg_err_t kg_log_open(const char *path, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * Open the file of kg_log_open again under its name (after logrotate
 * moved it away: SIGUSR1). Nothing to do when logging to stderr. KG_OK, or
 * KG_ERR_IO with diag (lines keep going to the old file).
 */
kg_err_t kg_log_reopen(kg_diag_t *diag) KG_MUST_CHECK;

/* Write one complete line (it ends with '\n') with one write(2). */
void kg_log_emit(const char *line, size_t len);

/* The wall-clock time now as "2025-01-31T23:59:59.123Z" (buf: at least
 * KG_LOG_STAMP_LEN bytes); returns its length. */
size_t kg_log_stamp(char *buf, size_t len);

/*
 * Append s as the body of a JSON string (without the quotes) to buf, which
 * holds *used bytes of len: '"', '\\' and control characters escaped,
 * bytes that are not UTF-8 replaced by U+FFFD. Cut short (never mid
 * escape) when it does not fit; false then.
 */
bool kg_log_json_escape(char *buf, size_t len, size_t *used, const char *s);

/* Write one line. Use the KG_LOG macro, which skips formatting when off. */
void kg_log_write(kg_log_level_t level, const char *fmt, ...) KG_PRINTF(2, 3);

/* Whether lines of level are written now. */
#define KG_LOG_ON(level) \
    ((int)(level) <=     \
     atomic_load_explicit(&kg_log_threshold, memory_order_relaxed))

/* Never pass a secret (token, hash, provider key) as an argument. */
#define KG_LOG(level, ...)                      \
    do {                                        \
        if (KG_LOG_ON(level)) {                 \
            kg_log_write((level), __VA_ARGS__); \
        }                                       \
    } while (0)

#define KG_ERROR(...) KG_LOG(KG_LOG_ERROR, __VA_ARGS__)
#define KG_WARN(...)  KG_LOG(KG_LOG_WARN, __VA_ARGS__)
#define KG_INFO(...)  KG_LOG(KG_LOG_INFO, __VA_ARGS__)
#define KG_DEBUG(...) KG_LOG(KG_LOG_DEBUG, __VA_ARGS__)

#endif /* KEYGATE_LOG_H */
