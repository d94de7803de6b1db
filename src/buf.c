/* A growable byte buffer with a hard maximum size. */
#include "keygate/buf.h"

#include <stdlib.h>
#include <string.h>

void kg_buf_init(kg_buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

kg_err_t kg_buf_append(kg_buf_t *b, const void *p, size_t len)
{
    size_t need;

    if (len > b->max || b->len > b->max - len) {
        return KG_ERR_BODY_TOO_LARGE;
    }
    need = b->len + len + 1;
    if (need > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        char *grown;

        while (ncap < need) {
            ncap *= 2;
        }
        grown = realloc(b->data, ncap);
        if (grown == NULL) {
            return KG_ERR_NOMEM;
        }
        b->data = grown;
        b->cap = ncap;
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
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data != NULL) {
        b->data[b->len] = '\0';
    }
}

char *kg_buf_steal(kg_buf_t *b, size_t *len)
{
    char *data = b->data;

    if (len != NULL) {
        *len = b->len;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return data;
}

void kg_buf_free(kg_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
