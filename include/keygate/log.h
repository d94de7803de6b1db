/* Leveled server logs to stderr; cheap when a level is off. */
#ifndef KEYGATE_LOG_H
#define KEYGATE_LOG_H

#include <stdbool.h>

#include "keygate/err.h"

typedef enum kg_log_level {
    KG_LOG_ERROR = 0,
    KG_LOG_WARN,
    KG_LOG_INFO,
    KG_LOG_DEBUG,
} kg_log_level_t;

extern kg_log_level_t kg_log_threshold;

/* Set the most verbose level that is printed. */
void kg_log_set_level(kg_log_level_t level);

/* Parse "error", "warn", "info" or "debug"; false when unknown. */
bool kg_log_level_parse(const char *s, kg_log_level_t *level);

/* The level's name ("info"). */
const char *kg_log_level_name(kg_log_level_t level);

/* Write one line. Use the KG_LOG macro, which skips formatting when off. */
void kg_log_write(kg_log_level_t level, const char *fmt, ...) KG_PRINTF(2, 3);

/* Never pass a secret (token, hash, provider key) as an argument. */
#define KG_LOG(level, ...)                      \
    do {                                        \
        if ((level) <= kg_log_threshold) {      \
            kg_log_write((level), __VA_ARGS__); \
        }                                       \
    } while (0)

#define KG_ERROR(...) KG_LOG(KG_LOG_ERROR, __VA_ARGS__)
#define KG_WARN(...)  KG_LOG(KG_LOG_WARN, __VA_ARGS__)
#define KG_INFO(...)  KG_LOG(KG_LOG_INFO, __VA_ARGS__)
#define KG_DEBUG(...) KG_LOG(KG_LOG_DEBUG, __VA_ARGS__)

#endif /* KEYGATE_LOG_H */
