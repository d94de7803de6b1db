/* Fast scans of JSON text by byte offsets, for bodies no tree is built of. */
#ifndef KEYGATE_JSCAN_H
#define KEYGATE_JSCAN_H

#include <stdbool.h>
#include <stddef.h>

/*
 * How many of the n bytes at p a string's body can pass over without a
 * look: printable ASCII other than '"' and '\\'. Stops at the first quote,
 * backslash, control character or byte >= 0x80 (16 bytes a step where the
 * CPU has SSE2). Returns n when there is none.
 */
size_t kg_jscan_plain(const char *p, size_t n);

/*
 * Index of the '"' that ends the string whose body starts at b[i] (just
 * after its opening quote), or len when the string is not closed. Escaped
 * quotes are passed over; nothing else is checked.
 */
size_t kg_jscan_string_end(const char *b, size_t len, size_t i);

/* The value of a top-level member, as kg_jscan_shape() found it. */
typedef struct kg_jscan_member {
    bool found;
    size_t start; /* its first byte ('{' or '[') */
    size_t end;   /* just past its closing bracket */
} kg_jscan_member_t;

/*
 * One pass over an answer of len bytes that checks its shape, not its
 * grammar: true when the first byte that is not white space opens an
 * object or an array, every string is closed, brackets balance outside
 * strings and only white space follows the root's end. Numbers, literals,
 * commas, colons and escapes are not checked.
 *
 * When the root is an object, *member (may be NULL) gets the last of its
 * top-level members whose name is written exactly as name (escapes not
 * decoded) and whose value is an object or an array; member->found is
 * false when there is none, or when the shape is wrong.
 *
 * The cost is one pass at memchr-like speed over long strings and over
 * runs without brackets (numbers, literals); no allocation.
 */
bool kg_jscan_shape(const char *b, size_t len, const char *name,
                    kg_jscan_member_t *member);

#endif /* KEYGATE_JSCAN_H */
