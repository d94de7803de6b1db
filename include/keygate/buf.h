/* A growable byte buffer with a hard maximum size. */
#ifndef KEYGATE_BUF_H
#define KEYGATE_BUF_H

#include <stddef.h>

#include "keygate/err.h"

typedef struct kg_buf {
    char *data; /* owned; NUL-terminated after every append */
    size_t len;
    size_t cap;
    size_t max; /* appends past this fail with KG_ERR_BODY_TOO_LARGE */
} kg_buf_t;

/* An empty buffer that may grow to max bytes. */
void kg_buf_init(kg_buf_t *b, size_t max);

/* Append len bytes. KG_ERR_BODY_TOO_LARGE past max, KG_ERR_NOMEM. */
kg_err_t kg_buf_append(kg_buf_t *b, const void *p, size_t len) KG_MUST_CHECK;

/* Drop the first n bytes (n ≤ len). */
void kg_buf_consume(kg_buf_t *b, size_t n);

/* Take the data out (the caller frees it); the buffer is empty after. */
char *kg_buf_steal(kg_buf_t *b, size_t *len);

/* Free the data; the buffer is empty and still usable. */
void kg_buf_free(kg_buf_t *b);

#endif /* KEYGATE_BUF_H */
