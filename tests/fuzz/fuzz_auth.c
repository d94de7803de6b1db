/* libFuzzer target for header framing checks and credential extraction. */
/*
 * Input: byte 0 holds flags (bit 0: HTTP/1.1, bit 1: pass "" instead of
 * NULL for an empty query). The rest is split at '\n' into lines: the
 * first line is the raw query string, every further line one header,
 * "name:value" split at the first ':'. Like libmicrohttpd, leading SP/HTAB
 * of a value is dropped and trailing whitespace kept; a line without ':'
 * is a name with an empty value. Each name, value and the query get their own
 * exact-size heap copy so that ASan sees any read past a field.
 *
 * Build:  clang -fsanitize=fuzzer,address,undefined -Iinclude \
 *           tests/fuzz/fuzz_auth.c src/auth.c src/framing.c src/token.c \
 *           src/err.c -lsodium -lz
 * Replay: add tests/fuzz/replay_main.c (same sources) then run the binary with
 *         seed files as arguments; it exits non-zero on a failed read.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/auth.h"
#include "keygate/framing.h"
#include "keygate/token.h"

/* More than KG_MAX_HEADERS, so the 431 path is reachable. */
#define FUZZ_MAX_HEADERS (KG_MAX_HEADERS + 8)
/* Replay refuses larger files. */
#define FUZZ_MAX_INPUT (1024 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Crash loudly so the fuzzer records the input. */
#define FUZZ_ASSERT(cond)                                                  \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "fuzz_auth: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                      \
            abort();                                                       \
        }                                                                  \
    } while (0)

typedef struct fuzz_input {
    kg_header_t h[FUZZ_MAX_HEADERS];
    size_t n;
    char *query;
    bool http11;
} fuzz_input_t;

/*
 * A new exact-size copy of len bytes, plus a NUL when nul. An empty field
 * without NUL still gets a 1-byte block, so its pointer is not NULL.
 */
static char *fuzz_dup(const uint8_t *p, size_t len, bool nul)
{
    size_t alloc = nul ? len + 1 : (len > 0 ? len : 1);
    char *c = malloc(alloc);

    if (c == NULL) {
        abort();
    }
    if (len > 0) {
        memcpy(c, p, len);
    }
    if (nul) {
        c[len] = '\0';
    }
    return c;
}

static void fuzz_free(fuzz_input_t *in)
{
    for (size_t i = 0; i < in->n; i++) {
        free((void *)in->h[i].name);
        free((void *)in->h[i].value);
    }
    free(in->query);
}

static void fuzz_split(const uint8_t *data, size_t size, fuzz_input_t *in)
{
    size_t pos = 1;
    bool first = true;

    memset(in, 0, sizeof(*in));
    in->http11 = (data[0] & 1) != 0;
    /* A final '\n' does not start another (empty) header. */
    while (first || pos < size) {
        const uint8_t *line = data + pos;
        const uint8_t *nl = memchr(line, '\n', size - pos);
        size_t len = nl != NULL ? (size_t)(nl - line) : size - pos;
        const uint8_t *colon;
        const uint8_t *value;

        if (first) {
            first = false;
            if (len > 0 || (data[0] & 2) != 0) {
                in->query = fuzz_dup(line, len, true);
            }
        } else if (in->n < FUZZ_MAX_HEADERS) {
            kg_header_t *h = &in->h[in->n++];
            colon = memchr(line, ':', len);
            h->name_len = colon != NULL ? (size_t)(colon - line) : len;
            h->name = fuzz_dup(line, h->name_len, false);
            h->value_len = colon != NULL ? len - h->name_len - 1 : 0;
            value = colon != NULL ? colon + 1 : line;
            while (h->value_len > 0 && (*value == ' ' || *value == '\t')) {
                value++;
                h->value_len--;
            }
            h->value = fuzz_dup(value, h->value_len, false);
        }
        pos += len + 1;
    }
}

static bool fuzz_all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0) {
            return false;
        }
    }
    return true;
}

static void fuzz_framing(const fuzz_input_t *in)
{
    kg_diag_t diag = {{0}};
    kg_err_t rc = kg_framing_check(in->h, in->n, in->http11, &diag);

    FUZZ_ASSERT(rc == KG_OK || rc == KG_ERR_BAD_REQUEST ||
                rc == KG_ERR_HEADERS_TOO_LARGE);
    FUZZ_ASSERT(rc == KG_OK || diag.msg[0] != '\0');
    FUZZ_ASSERT(kg_framing_check(in->h, in->n, in->http11, NULL) == rc);
    if (rc == KG_OK) {
        FUZZ_ASSERT(kg_framing_check_size(in->h, in->n, NULL) == KG_OK);
    }
}

/* On success the token round-trips and the diag never holds its secret. */
static void fuzz_auth_ok(const kg_token_t *tok, kg_auth_form_t form,
                         const kg_diag_t *diag)
{
    char buf[KG_TOKEN_STRLEN];
    kg_token_t again;

    FUZZ_ASSERT(form != KG_AUTH_FORM_NONE);
    FUZZ_ASSERT(strcmp(kg_auth_form_name(form), "unknown") != 0);
    FUZZ_ASSERT(strcmp(tok->prefix, KG_TOKEN_ADMIN_PREFIX) != 0);
    FUZZ_ASSERT(kg_token_format(tok, buf, sizeof(buf)) == KG_OK);
    FUZZ_ASSERT(kg_token_parse(buf, strlen(buf), &again) == KG_OK);
    FUZZ_ASSERT(memcmp(&again, tok, sizeof(again)) == 0);
    FUZZ_ASSERT(strstr(diag->msg, tok->secret) == NULL);
    kg_token_wipe(&again);
    sodium_memzero(buf, sizeof(buf));
}

static void fuzz_auth(const fuzz_input_t *in)
{
    kg_diag_t diag = {{0}};
    kg_auth_form_t form = KG_AUTH_FORM_NONE;
    kg_token_t tok;
    kg_token_t tok2;
    bool has_cred = false;
    kg_err_t rc;

    rc = kg_auth_extract(in->h, in->n, in->query, &tok, &form, &diag);
    FUZZ_ASSERT(rc == KG_OK || rc == KG_ERR_NO_KEY || rc == KG_ERR_INVALID_KEY);
    /* Same answer without the optional outputs. */
    FUZZ_ASSERT(kg_auth_extract(in->h, in->n, in->query, &tok2, NULL, NULL) ==
                rc);
    FUZZ_ASSERT(memcmp(&tok, &tok2, sizeof(tok)) == 0);
    for (size_t i = 0; i < in->n; i++) {
        has_cred = has_cred || kg_framing_name_is(&in->h[i], "authorization") ||
                   kg_framing_name_is(&in->h[i], "x-api-key");
    }
    if (rc == KG_OK) {
        FUZZ_ASSERT(has_cred);
        fuzz_auth_ok(&tok, form, &diag);
    } else {
        FUZZ_ASSERT(diag.msg[0] != '\0');
        FUZZ_ASSERT(form == KG_AUTH_FORM_NONE);
        FUZZ_ASSERT(fuzz_all_zero(&tok, sizeof(tok)));
    }
    if (rc == KG_ERR_NO_KEY) {
        FUZZ_ASSERT(!has_cred);
    }
    kg_token_wipe(&tok);
    kg_token_wipe(&tok2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0) {
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input_t in;

    if (size == 0) {
        return 0;
    }
    fuzz_split(data, size, &in);
    fuzz_framing(&in);
    fuzz_auth(&in);
    fuzz_free(&in);
    return 0;
}
