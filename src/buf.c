/* A growable byte buffer with a hard maximum size. */
#include "keygate/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void kg_buf_init(kg_buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

/* Move the live bytes to the front of the allocation. */
static void buf_compact(kg_buf_t *b)
{
    if (b->data != b->base) {
        memmove(b->base, b->data, b->len);
        b->data = b->base;
        b->base[b->len] = '\0';
    }
}

/* Room for need bytes at base (the live bytes at the front). */
static kg_err_t buf_grow(kg_buf_t *b, size_t need)
{
    size_t ncap = b->cap ? b->cap : 256;
    char *grown;

    if (need <= b->cap) {
        return KG_OK;
    }
    while (ncap < need) {
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    }
    grown = realloc(b->base, ncap);
    if (grown == NULL) {
        return KG_ERR_NOMEM;
    }
    b->base = grown;
    b->data = grown;
    b->cap = ncap;
    return KG_OK;
}

kg_err_t kg_buf_reserve(kg_buf_t *b, size_t n)
{
    char *grown;

    if (n > b->max) {
        n = b->max;
    }
    if (n + 1 <= b->cap) {
        return KG_OK;
    }
    buf_compact(b);
    grown = realloc(b->base, n + 1);
    if (grown == NULL) {
        return KG_ERR_NOMEM;
    }
    b->base = grown;
    b->data = grown;
    b->cap = n + 1;
    b->data[b->len] = '\0';
    return KG_OK;
}

kg_err_t kg_buf_append(kg_buf_t *b, const void *p, size_t len)
{
    size_t need;
    kg_err_t rc;

    if (len > b->max || b->len > b->max - len) {
        return KG_ERR_BODY_TOO_LARGE;
    }
    need = b->len + len + 1;
    if ((size_t)(b->data - b->base) + need > b->cap) {
        /* Reuse the consumed front before growing. */
        buf_compact(b);
        rc = buf_grow(b, need);
        if (rc != KG_OK) {
            return rc;
        }
    }
    if (len > 0) {
        memcpy(b->data + b->len, p, len);
    }
    b->len += len;
    b->data[b->len] = '\0';
    return KG_OK;
}

void kg_buf_consume(kg_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->data = b->base;
        b->len = 0;
    } else {
        b->data += n;
        b->len -= n;
    }
    if (b->data != NULL && b->len == 0) {
        b->data[0] = '\0';
    }
}

kg_err_t kg_buf_move(kg_buf_t *dst, kg_buf_t *src)
{
    kg_err_t rc = KG_OK;

    if (dst->len == 0 && src->len <= dst->max) {
        size_t max = dst->max;

        free(dst->base);
        *dst = *src;
        dst->max = max;
        kg_buf_init(src, src->max);
        return KG_OK;
    }
    if (src->len > 0) {
        rc = kg_buf_append(dst, src->data, src->len);
    }
    kg_buf_free(src);
    return rc;
}

char *kg_buf_steal(kg_buf_t *b, size_t *len)
{
    char *data;

    buf_compact(b);
    data = b->base;
    if (len != NULL) {
        *len = b->len;
    }
    b->data = NULL;
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
    return data;
}

void kg_buf_free(kg_buf_t *b)
{
    free(b->base);
    b->data = NULL;
    b->base = NULL;
    b->len = 0;
    b->cap = 0;
}
