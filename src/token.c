/* The API key token format: generation, parsing, checksum and display. */
#include "keygate/token.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

static const char token_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Character classes for parsing: a table lookup per byte instead of
 * range comparisons. */
#define TOKEN_C_BASE62 0x1 /* [0-9A-Za-z]: id, secret, check */
#define TOKEN_C_PREFIX 0x2 /* [a-z0-9]: prefix */

/* 1: TOKEN_C_BASE62 ('A'-'Z'); 3: both ('0'-'9', 'a'-'z'); 16 a row. */
/* clang-format off */
static const unsigned char token_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0,  /* 0x30 */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,  /* 0x50 */
    0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0x60 */
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0,  /* 0x70 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};
/* clang-format on */

/* True when all n bytes of s have every bit of cls. */
static bool token_all_class(const char *s, size_t n, unsigned char cls)
{
    unsigned char all = cls;

    for (size_t i = 0; i < n; i++) {
        all &= token_class[(unsigned char)s[i]];
    }
    return all == cls;
}

static bool token_all_base62(const char *s, size_t n)
{
    return token_all_class(s, n, TOKEN_C_BASE62);
}

bool kg_token_prefix_valid(const char *prefix)
{
    size_t n = strlen(prefix);

    return n > 0 && n <= KG_TOKEN_PREFIX_MAX &&
           token_all_class(prefix, n, TOKEN_C_PREFIX);
}

bool kg_token_id_valid(const char *s)
{
    return strlen(s) == KG_TOKEN_ID_LEN && token_all_base62(s, KG_TOKEN_ID_LEN);
}

void kg_token_random_base62(char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf[i] = token_base62[randombytes_uniform(62)];
    }
}

/* A CRC32 as the 6 check characters: big-endian base62 digits. */
static void token_check_chars(uLong crc, char out[KG_TOKEN_CHECK_LEN])
{
    uint64_t v = (uint64_t)crc;

    for (int i = KG_TOKEN_CHECK_LEN - 1; i >= 0; i--) {
        out[i] = token_base62[v % 62];
        v /= 62;
    }
}

/* The check of "<prefix>_<id>_<secret>", NUL-terminated. */
static void token_checksum(const kg_token_t *tok,
                           char out[KG_TOKEN_CHECK_LEN + 1])
{
    uLong crc = crc32(0L, Z_NULL, 0);

    crc = crc32(crc, (const Bytef *)tok->prefix, (uInt)strlen(tok->prefix));
    crc = crc32(crc, (const Bytef *)"_", 1);
    crc = crc32(crc, (const Bytef *)tok->id, KG_TOKEN_ID_LEN);
    crc = crc32(crc, (const Bytef *)"_", 1);
    crc = crc32(crc, (const Bytef *)tok->secret, KG_TOKEN_SECRET_LEN);
    token_check_chars(crc, out);
    out[KG_TOKEN_CHECK_LEN] = '\0';
}

kg_err_t kg_token_regenerate(const char *prefix, const char *id,
                             kg_token_t *out)
{
    if (!kg_token_prefix_valid(prefix) || !kg_token_id_valid(id)) {
        return KG_ERR_INVAL;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out->prefix, prefix, strlen(prefix) + 1);
    memcpy(out->id, id, KG_TOKEN_ID_LEN);
    kg_token_random_base62(out->secret, KG_TOKEN_SECRET_LEN);
    return KG_OK;
}

kg_err_t kg_token_generate(const char *prefix, kg_token_t *out)
{
    char id[KG_TOKEN_ID_LEN + 1];

    kg_token_random_base62(id, KG_TOKEN_ID_LEN);
    id[KG_TOKEN_ID_LEN] = '\0';
    return kg_token_regenerate(prefix, id, out);
}

/*
 * Shared part of both parsers, on pieces already split and bounded: check
 * their characters and copy them into *out (zeroed by the caller). The
 * check characters after the secret are left to the caller.
 */
static bool token_take_parts(const char *prefix, size_t prefix_len,
                             const char *id, const char *tail, kg_token_t *out)
{
    if (prefix_len == 0 || prefix_len > KG_TOKEN_PREFIX_MAX ||
        !token_all_class(prefix, prefix_len, TOKEN_C_PREFIX) ||
        !token_all_base62(id, KG_TOKEN_ID_LEN) ||
        !token_all_base62(tail, KG_TOKEN_SECRET_LEN + KG_TOKEN_CHECK_LEN)) {
        return false;
    }
    memcpy(out->prefix, prefix, prefix_len);
    memcpy(out->id, id, KG_TOKEN_ID_LEN);
    memcpy(out->secret, tail, KG_TOKEN_SECRET_LEN);
    return true;
}

/* Whether check (6 characters) is the check of a text whose CRC32 is crc;
 * compared in constant time. */
static bool token_check_matches(uLong crc, const char *check)
{
    char want[KG_TOKEN_CHECK_LEN];

    token_check_chars(crc, want);
    return sodium_memcmp(want, check, KG_TOKEN_CHECK_LEN) == 0;
}

kg_err_t kg_token_parse(const char *s, size_t len, kg_token_t *out)
{
    const size_t tail_len = KG_TOKEN_SECRET_LEN + KG_TOKEN_CHECK_LEN;
    const size_t fixed = 1 + KG_TOKEN_ID_LEN + 1 + tail_len;
    size_t prefix_len;
    const char *tail;

    memset(out, 0, sizeof(*out));
    if (s == NULL || len <= fixed || len > KG_TOKEN_MAX_LEN) {
        return KG_ERR_INVALID_KEY;
    }
    prefix_len = len - fixed;
    tail = s + prefix_len + 2 + KG_TOKEN_ID_LEN;
    if (s[prefix_len] != '_' || s[prefix_len + 1 + KG_TOKEN_ID_LEN] != '_' ||
        !token_take_parts(s, prefix_len, s + prefix_len + 1, tail, out) ||
        /* The check covers the text before it, one piece here. */
        !token_check_matches(crc32(crc32(0L, Z_NULL, 0), (const Bytef *)s,
                                   (uInt)(len - KG_TOKEN_CHECK_LEN)),
                             tail + KG_TOKEN_SECRET_LEN)) {
        kg_token_wipe(out);
        return KG_ERR_INVALID_KEY;
    }
    return KG_OK;
}

kg_err_t kg_token_parse_pair(const char *access, size_t access_len,
                             const char *secret, size_t secret_len,
                             kg_token_t *out)
{
    size_t prefix_len;
    uLong crc;

    memset(out, 0, sizeof(*out));
    if (access == NULL || secret == NULL || access_len <= 1 + KG_TOKEN_ID_LEN ||
        access_len > KG_TOKEN_PREFIX_MAX + 1 + KG_TOKEN_ID_LEN ||
        secret_len != KG_TOKEN_SECRET_LEN + KG_TOKEN_CHECK_LEN) {
        return KG_ERR_INVALID_KEY;
    }
    prefix_len = access_len - 1 - KG_TOKEN_ID_LEN;
    if (access[prefix_len] != '_' ||
        !token_take_parts(access, prefix_len, access + prefix_len + 1, secret,
                          out)) {
        kg_token_wipe(out);
        return KG_ERR_INVALID_KEY;
    }
    crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)access, (uInt)access_len);
    crc = crc32(crc, (const Bytef *)"_", 1);
    crc = crc32(crc, (const Bytef *)secret, KG_TOKEN_SECRET_LEN);
    if (!token_check_matches(crc, secret + KG_TOKEN_SECRET_LEN)) {
        kg_token_wipe(out);
        return KG_ERR_INVALID_KEY;
    }
    return KG_OK;
}

kg_err_t kg_token_format(const kg_token_t *tok, char *buf, size_t len)
{
    char check[KG_TOKEN_CHECK_LEN + 1];
    int n;

    token_checksum(tok, check);
    n = snprintf(buf, len, "%s_%s_%s%s", tok->prefix, tok->id, tok->secret,
                 check);
    if (n < 0 || (size_t)n >= len) {
        if (len > 0) {
            sodium_memzero(buf, len);
        }
        return KG_ERR_INVAL;
    }
    return KG_OK;
}

const char *kg_token_display(const char *prefix, const char *id,
                             const char *last4, char *buf, size_t len)
{
    snprintf(buf, len, "%s_%s_...%s", prefix, id, last4);
    return buf;
}

void kg_token_wipe(kg_token_t *tok)
{
    sodium_memzero(tok, sizeof(*tok));
}
