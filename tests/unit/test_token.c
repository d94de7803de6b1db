/* Unit tests of the token format: shapes, checksums, halves and display. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "keygate/token.h"
#include "unit_util.h"

static const char ut_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* The spec's checksum, written independently: CRC32 of text[0..n) as six
 * big-endian base62 digits. */
static void ut_check(const char *text, size_t n, char out[7])
{
    uint64_t v = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)text, (uInt)n);

    for (int i = 5; i >= 0; i--) {
        out[i] = ut_base62[v % 62];
        v /= 62;
    }
    out[6] = '\0';
}

/* Build "<prefix>_<id>_<secret>" plus its correct check into buf (len
 * returned). prefix may hold any bytes, including NUL (plen gives size). */
static size_t ut_build(char *buf, const char *prefix, size_t plen,
                       const char *id, const char *secret)
{
    size_t n = 0;

    memcpy(buf, prefix, plen);
    n += plen;
    buf[n++] = '_';
    memcpy(buf + n, id, strlen(id));
    n += strlen(id);
    buf[n++] = '_';
    memcpy(buf + n, secret, strlen(secret));
    n += strlen(secret);
    ut_check(buf, n, buf + n);
    n += 6;
    buf[n] = '\0';
    return n;
}

/* A fresh valid token with prefix "kg" as a string. */
static void ut_fresh(char *buf, size_t len, kg_token_t *tok)
{
    ck_assert_int_eq(kg_token_generate("kg", tok), KG_OK);
    ck_assert_int_eq(kg_token_format(tok, buf, len), KG_OK);
}

#define UT_ID     "AbCdEf012345"
#define UT_SECRET "0123456789abcdefghijABCDEFGHIJxy"

START_TEST(test_format_matches_spec_checksum)
{
    kg_token_t tok;
    char buf[KG_TOKEN_STRLEN];
    char want[KG_TOKEN_STRLEN + 8];

    memset(&tok, 0, sizeof(tok));
    memcpy(tok.prefix, "kg", 3);
    memcpy(tok.id, UT_ID, KG_TOKEN_ID_LEN + 1);
    memcpy(tok.secret, UT_SECRET, KG_TOKEN_SECRET_LEN + 1);
    ck_assert_int_eq(kg_token_format(&tok, buf, sizeof(buf)), KG_OK);
    ut_build(want, "kg", 2, UT_ID, UT_SECRET);
    ck_assert_str_eq(buf, want);
    ck_assert_uint_eq(strlen(buf), 2 + 1 + 12 + 1 + 32 + 6);
}
END_TEST

/* Valid shapes: every prefix form the spec allows, with a right check. */
static const char *const ut_good_prefixes[] = {
    "kg", "kgadm", "a", "0", "abcdefghij012345", "z9",
};

START_TEST(test_parse_good_shapes)
{
    const char *prefix = ut_good_prefixes[_i];
    char buf[128];
    kg_token_t out;
    size_t n = ut_build(buf, prefix, strlen(prefix), UT_ID, UT_SECRET);

    ck_assert_int_eq(kg_token_parse(buf, n, &out), KG_OK);
    ck_assert_str_eq(out.prefix, prefix);
    ck_assert_str_eq(out.id, UT_ID);
    ck_assert_str_eq(out.secret, UT_SECRET);
}
END_TEST

START_TEST(test_generated_tokens_parse)
{
    for (int i = 0; i < 200; i++) {
        const char *prefix = ut_good_prefixes[i % UT_NROWS(ut_good_prefixes)];
        kg_token_t tok;
        kg_token_t out;
        char buf[KG_TOKEN_STRLEN];

        ck_assert_int_eq(kg_token_generate(prefix, &tok), KG_OK);
        ck_assert(kg_token_id_valid(tok.id));
        ck_assert_uint_eq(strlen(tok.secret), KG_TOKEN_SECRET_LEN);
        ck_assert_int_eq(kg_token_format(&tok, buf, sizeof(buf)), KG_OK);
        ck_assert_int_eq(kg_token_parse(buf, strlen(buf), &out), KG_OK);
        ck_assert_str_eq(out.prefix, tok.prefix);
        ck_assert_str_eq(out.id, tok.id);
        ck_assert_str_eq(out.secret, tok.secret);
        ck_assert_int_eq(memcmp(&out, &tok, sizeof(tok)), 0);
    }
}
END_TEST

START_TEST(test_generate_is_random)
{
    kg_token_t a;
    kg_token_t b;

    ck_assert_int_eq(kg_token_generate("kg", &a), KG_OK);
    ck_assert_int_eq(kg_token_generate("kg", &b), KG_OK);
    ck_assert_str_ne(a.id, b.id);
    ck_assert_str_ne(a.secret, b.secret);
}
END_TEST

START_TEST(test_regenerate_keeps_id)
{
    kg_token_t a;
    kg_token_t b;

    ck_assert_int_eq(kg_token_generate("kg", &a), KG_OK);
    ck_assert_int_eq(kg_token_regenerate("kg", a.id, &b), KG_OK);
    ck_assert_str_eq(a.id, b.id);
    ck_assert_str_ne(a.secret, b.secret);
    ck_assert_int_eq(kg_token_regenerate("kg", "short", &b), KG_ERR_INVAL);
    ck_assert_int_eq(kg_token_regenerate("KG", a.id, &b), KG_ERR_INVAL);
}
END_TEST

static const char *const ut_bad_prefixes[] = {
    "",          "KG", "Kg", "k_g", "k-g", "k g", "k.g", "abcdefghij0123456",
    "k\xc3\xb6",
};

START_TEST(test_generate_bad_prefix)
{
    kg_token_t tok;

    ck_assert_int_eq(kg_token_generate(ut_bad_prefixes[_i], &tok),
                     KG_ERR_INVAL);
}
END_TEST

/* Ways to damage a valid token (built in the test from a fresh one). */
typedef enum ut_mutation {
    UT_FLIP_SECRET,
    UT_FLIP_ID,
    UT_FLIP_CHECK,
    UT_SHORT_BY_ONE,
    UT_LONG_BY_ONE,
    UT_BAD_PREFIX_DASH,  /* "k-g", right checksum */
    UT_BAD_PREFIX_DOT,   /* "k.g", right checksum */
    UT_UPPER_PREFIX,     /* "KG", right checksum */
    UT_LONG_PREFIX,      /* 17 characters, right checksum */
    UT_EMPTY_PREFIX,     /* "_<id>_...", right checksum */
    UT_EMPTY,            /* "" */
    UT_NO_FIRST_UNDER,   /* first '_' replaced */
    UT_NO_SECOND_UNDER,  /* second '_' replaced */
    UT_NO_UNDERSCORES,   /* both removed, same characters otherwise */
    UT_HUGE,             /* 10 kB */
    UT_NUL_IN_SECRET,    /* a NUL byte replaces a secret character */
    UT_NUL_IN_ID,        /* a NUL byte replaces an id character */
    UT_NUL_AFTER_PREFIX, /* "kg\0_<id>...": NUL before the separator */
    UT_LEADING_SPACE,    /* " kg_..." */
    UT_TRAILING_NEWLINE, /* "kg_...\n" */
    UT_NON_ASCII_SECRET, /* UTF-8 'é' in the secret, length kept */
    UT_SWAPPED_CHECK,    /* the check's first two characters swapped */
    UT_ID_UNDERSCORE,    /* '_' inside the id, right checksum */
    UT_NULL,             /* s == NULL */
} ut_mutation_t;

typedef struct ut_bad_row {
    const char *what;
    ut_mutation_t mutation;
} ut_bad_row_t;

static const ut_bad_row_t ut_bad_rows[] = {
    {"flip a secret character", UT_FLIP_SECRET},
    {"flip an id character", UT_FLIP_ID},
    {"flip a check character", UT_FLIP_CHECK},
    {"short by one", UT_SHORT_BY_ONE},
    {"long by one", UT_LONG_BY_ONE},
    {"prefix with '-'", UT_BAD_PREFIX_DASH},
    {"prefix with '.'", UT_BAD_PREFIX_DOT},
    {"uppercase prefix", UT_UPPER_PREFIX},
    {"17-character prefix", UT_LONG_PREFIX},
    {"empty prefix", UT_EMPTY_PREFIX},
    {"empty string", UT_EMPTY},
    {"missing first underscore", UT_NO_FIRST_UNDER},
    {"missing second underscore", UT_NO_SECOND_UNDER},
    {"missing both underscores", UT_NO_UNDERSCORES},
    {"10 kB string", UT_HUGE},
    {"NUL inside the secret", UT_NUL_IN_SECRET},
    {"NUL inside the id", UT_NUL_IN_ID},
    {"leading space", UT_LEADING_SPACE},
    {"trailing newline", UT_TRAILING_NEWLINE},
    {"non-ASCII secret", UT_NON_ASCII_SECRET},
    {"check characters swapped", UT_SWAPPED_CHECK},
    {"underscore in the id", UT_ID_UNDERSCORE},
    {"NULL pointer", UT_NULL},
    /* A NUL inside the prefix must not shorten it. */
    {"NUL inside the prefix", UT_NUL_AFTER_PREFIX},
};

static char ut_flip(char c)
{
    return c == 'A' ? 'B' : 'A';
}

/* Apply the mutation to a fresh token; returns the bytes and length. */
static const char *ut_mutate(ut_mutation_t m, char *buf, size_t *len,
                             char *huge)
{
    kg_token_t tok;
    char good[KG_TOKEN_STRLEN];
    size_t n;

    ut_fresh(good, sizeof(good), &tok);
    n = strlen(good); /* "kg_" + 12 + "_" + 32 + 6 = 54 */
    memcpy(buf, good, n + 1);
    switch (m) {
    case UT_FLIP_SECRET:
        buf[16 + 5] = ut_flip(buf[16 + 5]);
        break;
    case UT_FLIP_ID:
        buf[3 + 4] = ut_flip(buf[3 + 4]);
        break;
    case UT_FLIP_CHECK:
        buf[n - 1] = ut_flip(buf[n - 1]);
        break;
    case UT_SHORT_BY_ONE:
        n--;
        buf[n] = '\0';
        break;
    case UT_LONG_BY_ONE:
        buf[n++] = 'A';
        buf[n] = '\0';
        break;
    case UT_BAD_PREFIX_DASH:
        n = ut_build(buf, "k-g", 3, tok.id, tok.secret);
        break;
    case UT_BAD_PREFIX_DOT:
        n = ut_build(buf, "k.g", 3, tok.id, tok.secret);
        break;
    case UT_UPPER_PREFIX:
        n = ut_build(buf, "KG", 2, tok.id, tok.secret);
        break;
    case UT_LONG_PREFIX:
        n = ut_build(buf, "abcdefghij0123456", 17, tok.id, tok.secret);
        break;
    case UT_EMPTY_PREFIX:
        n = ut_build(buf, "", 0, tok.id, tok.secret);
        break;
    case UT_EMPTY:
        buf[0] = '\0';
        n = 0;
        break;
    case UT_NO_FIRST_UNDER:
        buf[2] = 'x';
        break;
    case UT_NO_SECOND_UNDER:
        buf[15] = 'x';
        break;
    case UT_NO_UNDERSCORES:
        memmove(buf + 15, buf + 16, n - 16 + 1);
        memmove(buf + 2, buf + 3, n - 3 + 1);
        n -= 2;
        break;
    case UT_HUGE:
        memset(huge, 'a', 10240);
        memcpy(huge, good, n);
        huge[10240] = '\0';
        *len = 10240;
        return huge;
    case UT_NUL_IN_SECRET:
        buf[20] = '\0';
        break;
    case UT_NUL_IN_ID:
        buf[5] = '\0';
        break;
    case UT_NUL_AFTER_PREFIX:
        /* Prefix bytes "kg\0" before the '_': the check is right for "kg". */
        buf[2] = '\0';
        memcpy(buf + 3, good + 2, n - 2 + 1);
        n++;
        break;
    case UT_LEADING_SPACE:
        memmove(buf + 1, buf, n + 1);
        buf[0] = ' ';
        n++;
        break;
    case UT_TRAILING_NEWLINE:
        buf[n++] = '\n';
        buf[n] = '\0';
        break;
    case UT_NON_ASCII_SECRET:
        buf[20] = (char)0xc3;
        buf[21] = (char)0xa9;
        break;
    case UT_SWAPPED_CHECK: {
        char c = buf[n - 6];

        if (c == buf[n - 5]) {
            buf[n - 5] = ut_flip(c);
        } else {
            buf[n - 6] = buf[n - 5];
            buf[n - 5] = c;
        }
        break;
    }
    case UT_ID_UNDERSCORE: {
        char id[KG_TOKEN_ID_LEN + 1];

        memcpy(id, tok.id, sizeof(id));
        id[6] = '_';
        n = ut_build(buf, "kg", 2, id, tok.secret);
        break;
    }
    case UT_NULL:
        *len = n;
        return NULL;
    }
    *len = n;
    return buf;
}

START_TEST(test_parse_bad_shapes)
{
    const ut_bad_row_t *row = &ut_bad_rows[_i];
    char buf[256];
    char *huge = malloc(10241);
    const char *s;
    size_t len = 0;
    kg_token_t out;
    kg_token_t zero;

    ck_assert_ptr_nonnull(huge);
    s = ut_mutate(row->mutation, buf, &len, huge);
    memset(&out, 'x', sizeof(out));
    memset(&zero, 0, sizeof(zero));
    ck_assert_msg(kg_token_parse(s, len, &out) == KG_ERR_INVALID_KEY,
                  "%s: accepted", row->what);
    /* On failure nothing of the input is left in *out. */
    ck_assert_msg(memcmp(&out, &zero, sizeof(out)) == 0, "%s: not wiped",
                  row->what);
    free(huge);
}
END_TEST

START_TEST(test_parse_len_bounds_not_nul)
{
    kg_token_t tok;
    kg_token_t out;
    char buf[KG_TOKEN_STRLEN + 8];
    size_t n;

    ut_fresh(buf, sizeof(buf), &tok);
    n = strlen(buf);
    /* Trailing bytes past len are ignored: the length is authoritative. */
    buf[n] = 'Z';
    buf[n + 1] = '\0';
    ck_assert_int_eq(kg_token_parse(buf, n, &out), KG_OK);
    ck_assert_int_eq(kg_token_parse(buf, n + 1, &out), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_token_parse(buf, n - 1, &out), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_token_parse(buf, 0, &out), KG_ERR_INVALID_KEY);
    ck_assert_int_eq(kg_token_parse(buf, SIZE_MAX, &out), KG_ERR_INVALID_KEY);
}
END_TEST

START_TEST(test_format_small_buffer)
{
    kg_token_t tok;
    char buf[KG_TOKEN_STRLEN];
    char small[20];
    size_t n;

    ut_fresh(buf, sizeof(buf), &tok);
    n = strlen(buf);
    memset(small, 'x', sizeof(small));
    ck_assert_int_eq(kg_token_format(&tok, small, sizeof(small)), KG_ERR_INVAL);
    for (size_t i = 0; i < sizeof(small); i++) {
        ck_assert_int_eq(small[i], 0);
    }
    ck_assert_int_eq(kg_token_format(&tok, buf, n), KG_ERR_INVAL);
    ck_assert_int_eq(kg_token_format(&tok, buf, n + 1), KG_OK);
}
END_TEST

START_TEST(test_wipe)
{
    kg_token_t tok;
    kg_token_t zero;

    ck_assert_int_eq(kg_token_generate("kg", &tok), KG_OK);
    kg_token_wipe(&tok);
    memset(&zero, 0, sizeof(zero));
    ck_assert_int_eq(memcmp(&tok, &zero, sizeof(tok)), 0);
}
END_TEST

/* Append tail to the string in s (the caller sized s). */
static void ut_append(char *s, const char *tail)
{
    memcpy(s + strlen(s), tail, strlen(tail) + 1);
}

/* Split a valid token into its two halves. */
static void ut_halves(const char *token, char *access, char *secret)
{
    const char *second = strchr(token + 3, '_');

    ck_assert_ptr_nonnull(second);
    memcpy(access, token, (size_t)(second - token));
    access[second - token] = '\0';
    memcpy(secret, second + 1, strlen(second + 1) + 1);
}

START_TEST(test_parse_pair_equivalent)
{
    for (int i = 0; i < 50; i++) {
        const char *prefix = ut_good_prefixes[i % UT_NROWS(ut_good_prefixes)];
        kg_token_t tok;
        kg_token_t a;
        kg_token_t b;
        char buf[KG_TOKEN_STRLEN];
        char access[64];
        char secret[64];
        const char *second;

        ck_assert_int_eq(kg_token_generate(prefix, &tok), KG_OK);
        ck_assert_int_eq(kg_token_format(&tok, buf, sizeof(buf)), KG_OK);
        second = buf + strlen(prefix) + 1 + KG_TOKEN_ID_LEN;
        ck_assert_int_eq(*second, '_');
        memcpy(access, buf, (size_t)(second - buf));
        access[second - buf] = '\0';
        memcpy(secret, second + 1, strlen(second + 1) + 1);
        ck_assert_int_eq(kg_token_parse(buf, strlen(buf), &a), KG_OK);
        ck_assert_int_eq(kg_token_parse_pair(access, strlen(access), secret,
                                             strlen(secret), &b),
                         KG_OK);
        ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);
    }
}
END_TEST

typedef struct ut_pair_row {
    const char *what;
    int access_edit; /* see test_parse_pair_bad */
    int secret_edit;
} ut_pair_row_t;

static const ut_pair_row_t ut_pair_rows[] = {
    {"access without prefix", 1, 0},
    {"access with trailing underscore", 2, 0},
    {"access with '-' separator", 3, 0},
    {"access id flipped", 4, 0},
    {"access uppercase prefix", 5, 0},
    {"access over-long prefix", 6, 0},
    {"access empty", 7, 0},
    {"secret short by one", 0, 1},
    {"secret long by one", 0, 2},
    {"secret flipped", 0, 3},
    {"check flipped", 0, 4},
    {"secret empty", 0, 5},
    {"secret with '_' inside", 0, 6},
    {"halves swapped", 8, 0},
    {"access NULL", 9, 0},
    {"secret NULL", 0, 7},
};

START_TEST(test_parse_pair_bad)
{
    const ut_pair_row_t *row = &ut_pair_rows[_i];
    kg_token_t tok;
    kg_token_t out;
    char buf[KG_TOKEN_STRLEN];
    char access[128];
    char secret[128];
    const char *ap = access;
    const char *sp = secret;
    size_t alen;
    size_t slen;

    ut_fresh(buf, sizeof(buf), &tok);
    ut_halves(buf, access, secret);
    switch (row->access_edit) {
    case 1:
        memmove(access, access + 3, strlen(access + 3) + 1);
        break;
    case 2:
        ut_append(access, "_");
        break;
    case 3:
        access[2] = '-';
        break;
    case 4:
        access[5] = ut_flip(access[5]);
        break;
    case 5: {
        /* A right checksum for "KG": only the shape can refuse it. */
        char whole[128];

        ut_build(whole, "KG", 2, tok.id, tok.secret);
        ut_halves(whole, access, secret);
        break;
    }
    case 6:
        memmove(access + 15, access, strlen(access) + 1);
        memcpy(access, "abcdefghij01234", 15);
        break;
    case 7:
        access[0] = '\0';
        break;
    case 8:
        ap = secret;
        sp = access;
        break;
    case 9:
        ap = NULL;
        break;
    }
    switch (row->secret_edit) {
    case 1:
        secret[strlen(secret) - 1] = '\0';
        break;
    case 2:
        ut_append(secret, "A");
        break;
    case 3:
        secret[3] = ut_flip(secret[3]);
        break;
    case 4:
        secret[KG_TOKEN_SECRET_LEN + 2] =
            ut_flip(secret[KG_TOKEN_SECRET_LEN + 2]);
        break;
    case 5:
        secret[0] = '\0';
        break;
    case 6:
        secret[10] = '_';
        break;
    case 7:
        sp = NULL;
        break;
    }
    alen = ap ? strlen(ap) : 15;
    slen = sp ? strlen(sp) : 38;
    ck_assert_msg(kg_token_parse_pair(ap, alen, sp, slen, &out) ==
                      KG_ERR_INVALID_KEY,
                  "%s: accepted", row->what);
}
END_TEST

START_TEST(test_display)
{
    char buf[KG_TOKEN_DISPLAY_STRLEN];
    char small[8];

    ck_assert_str_eq(kg_token_display("kg", UT_ID, "wxyz", buf, sizeof(buf)),
                     "kg_" UT_ID "_...wxyz");
    /* The longest prefix still fits the documented buffer. */
    ck_assert_str_eq(
        kg_token_display("abcdefghij012345", UT_ID, "wxyz", buf, sizeof(buf)),
        "abcdefghij012345_" UT_ID "_...wxyz");
    /* A small buffer truncates but stays a string. */
    kg_token_display("kg", UT_ID, "wxyz", small, sizeof(small));
    ck_assert_str_eq(small, "kg_AbCd");
}
END_TEST

typedef struct ut_valid_row {
    const char *s;
    bool ok;
} ut_valid_row_t;

static const ut_valid_row_t ut_prefix_rows[] = {
    {"kg", true},
    {"kgadm", true},
    {"a", true},
    {"0", true},
    {"abcdefghij012345", true},
    {"", false},
    {"abcdefghij0123456", false},
    {"KG", false},
    {"kG", false},
    {"k_g", false},
    {"k-g", false},
    {"k g", false},
    {" kg", false},
    {"kg\n", false},
    {"k\xc3\xb6", false},
};

START_TEST(test_prefix_valid)
{
    const ut_valid_row_t *row = &ut_prefix_rows[_i];

    ck_assert_msg(kg_token_prefix_valid(row->s) == row->ok, "prefix '%s'",
                  row->s);
}
END_TEST

static const ut_valid_row_t ut_id_rows[] = {
    {"AbCdEf012345", true},
    {"000000000000", true},
    {"zzzzzzzzzzzz", true},
    {"ZZZZZZZZZZZZ", true},
    {"AbCdEf01234", false},
    {"AbCdEf0123456", false},
    {"", false},
    {"AbCdEf_12345", false},
    {"AbCdEf-12345", false},
    {"AbCdEf 12345", false},
    {"kg_AbCdEf012", false},
    {"AbCdEf01234\xc3", false},
};

START_TEST(test_id_valid)
{
    const ut_valid_row_t *row = &ut_id_rows[_i];

    ck_assert_msg(kg_token_id_valid(row->s) == row->ok, "id '%s'", row->s);
}
END_TEST

START_TEST(test_random_base62_alphabet)
{
    char buf[6200];
    bool seen[256];

    memset(seen, 0, sizeof(seen));
    kg_token_random_base62(buf, sizeof(buf));
    for (size_t i = 0; i < sizeof(buf); i++) {
        ck_assert_ptr_nonnull(strchr(ut_base62, buf[i]));
        ck_assert_int_ne(buf[i], '\0');
        seen[(unsigned char)buf[i]] = true;
    }
    /* 6200 draws miss one of 62 symbols with probability ~62 * e^-100. */
    for (size_t i = 0; i < 62; i++) {
        ck_assert_msg(seen[(unsigned char)ut_base62[i]], "never drew '%c'",
                      ut_base62[i]);
    }
}
END_TEST

/* Every byte value, placed with a right checksum in each part, is taken
 * exactly when the part's alphabet has it: [a-z0-9] in the prefix,
 * [0-9A-Za-z] in the id and the secret. */
START_TEST(test_every_byte_in_every_part)
{
    for (int b = 1; b < 256; b++) {
        bool alnum = (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z') ||
                     (b >= 'a' && b <= 'z');
        bool lower = (b >= '0' && b <= '9') || (b >= 'a' && b <= 'z');
        char prefix[3] = {'k', (char)b, '\0'};
        char id[KG_TOKEN_ID_LEN + 1];
        char secret[KG_TOKEN_SECRET_LEN + 1];
        char idn[KG_TOKEN_ID_LEN + 1];
        char buf[128];
        kg_token_t out;
        size_t n;

        memcpy(id, UT_ID, sizeof(id));
        memcpy(secret, UT_SECRET, sizeof(secret));
        id[7] = (char)b;
        secret[20] = (char)b;
        memset(idn, b, KG_TOKEN_ID_LEN);
        idn[KG_TOKEN_ID_LEN] = '\0';
        ck_assert_msg(kg_token_id_valid(idn) == alnum, "id of byte %d", b);
        ck_assert_msg(kg_token_prefix_valid(prefix) == lower,
                      "prefix with byte %d", b);

        n = ut_build(buf, prefix, 2, UT_ID, UT_SECRET);
        ck_assert_msg((kg_token_parse(buf, n, &out) == KG_OK) == lower,
                      "byte %d in the prefix", b);
        n = ut_build(buf, "kg", 2, id, UT_SECRET);
        ck_assert_msg((kg_token_parse(buf, n, &out) == KG_OK) == alnum,
                      "byte %d in the id", b);
        n = ut_build(buf, "kg", 2, UT_ID, secret);
        ck_assert_msg((kg_token_parse(buf, n, &out) == KG_OK) == alnum,
                      "byte %d in the secret", b);
        if (alnum) {
            ck_assert_int_eq(out.secret[20], b);
        }
    }
}
END_TEST

/* Any one byte changed anywhere in a valid token (whole, or as the two
 * halves of HTTP Basic) makes it invalid: a wrong byte either leaves the
 * alphabet or changes the CRC32, which catches every single-byte error. */
START_TEST(test_parse_any_byte_changed)
{
    for (int round = 0; round < 4000; round++) {
        kg_token_t tok;
        kg_token_t out;
        char buf[KG_TOKEN_STRLEN];
        char access[64];
        char secret[64];
        size_t n;
        size_t pos;
        size_t alen;
        unsigned char old;
        unsigned char b;

        ut_fresh(buf, sizeof(buf), &tok);
        n = strlen(buf);
        pos = (size_t)rand() % n;
        old = (unsigned char)buf[pos];
        do {
            b = (unsigned char)(rand() % 256);
        } while (b == old);
        buf[pos] = (char)b;
        ck_assert_msg(kg_token_parse(buf, n, &out) == KG_ERR_INVALID_KEY,
                      "byte %zu changed to %u accepted", pos, b);
        alen = 2 + 1 + KG_TOKEN_ID_LEN;
        memcpy(access, buf, alen);
        memcpy(secret, buf + alen + 1, n - alen - 1);
        if (pos != alen) { /* the separator is not in either half */
            ck_assert_msg(kg_token_parse_pair(access, alen, secret,
                                              n - alen - 1,
                                              &out) == KG_ERR_INVALID_KEY,
                          "pair: byte %zu changed to %u accepted", pos, b);
        }
    }
}
END_TEST

static Suite *token_suite(void)
{
    Suite *s = suite_create("token");
    TCase *tc = tcase_create("token");

    tcase_add_test(tc, test_format_matches_spec_checksum);
    tcase_add_loop_test(tc, test_parse_good_shapes, 0,
                        (int)UT_NROWS(ut_good_prefixes));
    tcase_add_test(tc, test_generated_tokens_parse);
    tcase_add_test(tc, test_generate_is_random);
    tcase_add_test(tc, test_regenerate_keeps_id);
    tcase_add_loop_test(tc, test_generate_bad_prefix, 0,
                        (int)UT_NROWS(ut_bad_prefixes));
    tcase_add_loop_test(tc, test_parse_bad_shapes, 0,
                        (int)UT_NROWS(ut_bad_rows));
    tcase_add_test(tc, test_parse_len_bounds_not_nul);
    tcase_add_test(tc, test_format_small_buffer);
    tcase_add_test(tc, test_wipe);
    tcase_add_test(tc, test_parse_pair_equivalent);
    tcase_add_loop_test(tc, test_parse_pair_bad, 0,
                        (int)UT_NROWS(ut_pair_rows));
    tcase_add_test(tc, test_display);
    tcase_add_loop_test(tc, test_prefix_valid, 0,
                        (int)UT_NROWS(ut_prefix_rows));
    tcase_add_loop_test(tc, test_id_valid, 0, (int)UT_NROWS(ut_id_rows));
    tcase_add_test(tc, test_random_base62_alphabet);
    tcase_add_test(tc, test_every_byte_in_every_part);
    tcase_add_test(tc, test_parse_any_byte_changed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(token_suite());
}
