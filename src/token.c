/* The API key token format: generation, parsing, checksum and display. */
#include "keygate/token.h"

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

static const char token_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static bool token_is_base62(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
           (c >= 'a' && c <= 'z');
}

static bool token_all_base62(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!token_is_base62(s[i])) {
            return false;
        }
    }
    return true;
}

bool kg_token_prefix_valid(const char *prefix)
{
    size_t n = strlen(prefix);

    if (n == 0 || n > KG_TOKEN_PREFIX_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = prefix[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return false;
        }
    }
    return true;
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

/* CRC32 over "<prefix>_<id>_<secret>" as 6 big-endian base62 digits. */
static void token_checksum(const kg_token_t *tok,
                           char out[KG_TOKEN_CHECK_LEN + 1])
{
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t v;

    crc = crc32(crc, (const Bytef *)tok->prefix, (uInt)strlen(tok->prefix));
    crc = crc32(crc, (const Bytef *)"_", 1);
    crc = crc32(crc, (const Bytef *)tok->id, KG_TOKEN_ID_LEN);
    crc = crc32(crc, (const Bytef *)"_", 1);
    crc = crc32(crc, (const Bytef *)tok->secret, KG_TOKEN_SECRET_LEN);
    v = (uint64_t)crc;
    for (int i = KG_TOKEN_CHECK_LEN - 1; i >= 0; i--) {
        out[i] = token_base62[v % 62];
        v /= 62;
    }
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

/* Shared tail of both parsers: halves already split and bounded. */
static kg_err_t token_parse_parts(const char *prefix, size_t prefix_len,
                                  const char *id, const char *tail,
                                  kg_token_t *out)
{
    char check[KG_TOKEN_CHECK_LEN + 1];
    kg_err_t rc = KG_ERR_INVALID_KEY;

    memset(out, 0, sizeof(*out));
    if (prefix_len == 0 || prefix_len > KG_TOKEN_PREFIX_MAX ||
        memchr(prefix, '\0', prefix_len) != NULL) {
        goto out;
    }
    memcpy(out->prefix, prefix, prefix_len);
    if (!kg_token_prefix_valid(out->prefix) ||
        !token_all_base62(id, KG_TOKEN_ID_LEN) ||
        !token_all_base62(tail, KG_TOKEN_SECRET_LEN + KG_TOKEN_CHECK_LEN)) {
        goto out;
    }
    memcpy(out->id, id, KG_TOKEN_ID_LEN);
    memcpy(out->secret, tail, KG_TOKEN_SECRET_LEN);
    token_checksum(out, check);
    if (sodium_memcmp(check, tail + KG_TOKEN_SECRET_LEN, KG_TOKEN_CHECK_LEN) !=
        0) {
        goto out;
    }
    rc = KG_OK;
out:
    if (rc != KG_OK) {
        kg_token_wipe(out);
    }
    return rc;
}

kg_err_t kg_token_parse(const char *s, size_t len, kg_token_t *out)
{
    const size_t tail_len = KG_TOKEN_SECRET_LEN + KG_TOKEN_CHECK_LEN;
    const size_t fixed = 1 + KG_TOKEN_ID_LEN + 1 + tail_len;
    size_t prefix_len;

    memset(out, 0, sizeof(*out));
    if (s == NULL || len <= fixed || len > KG_TOKEN_MAX_LEN) {
        return KG_ERR_INVALID_KEY;
    }
    prefix_len = len - fixed;
    if (s[prefix_len] != '_' || s[prefix_len + 1 + KG_TOKEN_ID_LEN] != '_') {
        return KG_ERR_INVALID_KEY;
    }
    return token_parse_parts(s, prefix_len, s + prefix_len + 1,
                             s + prefix_len + 2 + KG_TOKEN_ID_LEN, out);
}

kg_err_t kg_token_parse_pair(const char *access, size_t access_len,
                             const char *secret, size_t secret_len,
                             kg_token_t *out)
{
    size_t prefix_len;

    memset(out, 0, sizeof(*out));
    if (access == NULL || secret == NULL || access_len <= 1 + KG_TOKEN_ID_LEN ||
        access_len > KG_TOKEN_PREFIX_MAX + 1 + KG_TOKEN_ID_LEN ||
        secret_len != KG_TOKEN_SECRET_LEN + KG_TOKEN_CHECK_LEN) {
        return KG_ERR_INVALID_KEY;
    }
    prefix_len = access_len - 1 - KG_TOKEN_ID_LEN;
    if (access[prefix_len] != '_') {
        return KG_ERR_INVALID_KEY;
    }
    return token_parse_parts(access, prefix_len, access + prefix_len + 1,
                             secret, out);
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
