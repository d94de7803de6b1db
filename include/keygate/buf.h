/* A growable byte buffer with a hard maximum size. */
#ifndef KEYGATE_BUF_H
#define KEYGATE_BUF_H

#include <stddef.h>

#include "keygate/err.h"

/*
 * data and len are the live bytes, for readers. Bytes consumed from the
 * front are not moved at once: data moves forward inside the allocation
 * (base), and an append moves the live bytes back down only when it needs
 * the room, so a relay that takes small pieces from a large buffer costs
 * no copy per piece.
 */
typedef struct kg_buf {
    char *data; /* the live bytes; NUL-terminated after every append */
    size_t len;
    char *base; /* owned: the allocation, data - base bytes consumed */
    size_t cap; /* allocated bytes at base */
    size_t max; /* appends past this fail with KG_ERR_BODY_TOO_LARGE */
} kg_buf_t;

/* An empty buffer that may grow to max bytes. */
void kg_buf_init(kg_buf_t *b, size_t max);

/*
 * Make room for n live bytes in all (capped at max) with one allocation,
 * e.g. for a body whose Content-Length is known. KG_ERR_NOMEM; the buffer
 * is unchanged then.
 */
kg_err_t kg_buf_reserve(kg_buf_t *b, size_t n) KG_MUST_CHECK;

/* Append len bytes. KG_ERR_BODY_TOO_LARGE past max, KG_ERR_NOMEM. */
kg_err_t kg_buf_append(kg_buf_t *b, const void *p, size_t len) KG_MUST_CHECK;

/* Drop the first n bytes (n ≤ len); O(1). */
void kg_buf_consume(kg_buf_t *b, size_t n);

/*
 * Move src's bytes to the end of dst: when dst is empty, its storage is
 * taken over without a copy (dst keeps its max, src's max is not checked
 * again). src is empty after, also on error. KG_ERR_BODY_TOO_LARGE,
 * KG_ERR_NOMEM (dst unchanged then).
 */
kg_err_t kg_buf_move(kg_buf_t *dst, kg_buf_t *src) KG_MUST_CHECK;

/* Take the data out (the caller frees it); the buffer is empty after. */
char *kg_buf_steal(kg_buf_t *b, size_t *len);

/* Free the data; the buffer is empty and still usable. */
void kg_buf_free(kg_buf_t *b);

#endif /* KEYGATE_BUF_H */
