/* libFuzzer target for compiling access rules and checking requests. */
/*
 * Input: the rules JSON text (up to the first NUL). It is compiled and, when
 * it compiles, checked against fixed requests at the workspace level, the
 * key level and both, asserting the invariants of rules.h. kg_validate_rules
 * must agree with kg_rules_compile. The same bytes are also parsed as a
 * trusted-proxy CIDR list and walked as an X-Forwarded-For header.
 *
 * Build:  clang -fsanitize=fuzzer,address,undefined -D_DEFAULT_SOURCE \
 *           -Iinclude tests/fuzz/fuzz_rules.c src/rules.c src/validate.c \
 *           src/money.c src/err.c -ljansson
 * Replay: add tests/fuzz/replay_main.c (same sources) then run the binary with
 *         seed files (tests/fuzz/corpus/rules/) as arguments; it exits
 *         non-zero on a failed read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/rules.h"
#include "keygate/validate.h"

/* Replay refuses larger files. */
#define FUZZ_MAX_INPUT (1024 * 1024)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Crash loudly so the fuzzer records the input. */
#define FUZZ_ASSERT(cond)                                                   \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "fuzz_rules: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

static const kg_rules_request_t fuzz_requests[] = {
    {"gpt-4o", "openai", "chat", "10.1.2.3", 2500000, 10000000},
    {"claude-3-5-sonnet", "anthropic", "messages", "2001:db8::1", 3000000,
     15000000},
    {"openai/gpt-4o-mini", "openai", "embeddings", "::ffff:192.168.1.1", 0, -1},
    {"o1", "azure", "other", "not an ip", -1, 0},
    {NULL, NULL, NULL, NULL, -1, -1},
};

#define FUZZ_NREQUESTS (sizeof(fuzz_requests) / sizeof(*fuzz_requests))

/* A NUL-terminated buf of len bytes whose last byte is the NUL. */
static void fuzz_assert_terminated(const char *buf, size_t len)
{
    FUZZ_ASSERT(memchr(buf, '\0', len) != NULL);
}

/* Check req against ws and key and assert what holds for any answer. */
static kg_err_t fuzz_check(const kg_rules_t *ws, const kg_rules_t *key,
                           const kg_rules_request_t *req, const char *level)
{
    char reason[KG_RULES_REASON_MAX];
    char small[12];
    kg_err_t rc;

    memset(reason, 'x', sizeof(reason));
    rc = kg_rules_check(ws, key, req, reason, sizeof(reason));
    FUZZ_ASSERT(rc == KG_OK || rc == KG_ERR_ACCESS_DENIED);
    fuzz_assert_terminated(reason, sizeof(reason));
    if (rc == KG_OK) {
        FUZZ_ASSERT(reason[0] == '\0');
    } else {
        FUZZ_ASSERT(reason[0] != '\0');
        FUZZ_ASSERT(reason[strlen(reason) - 1] == '.');
        FUZZ_ASSERT(level == NULL || strstr(reason, level) != NULL);
    }
    memset(small, 'x', sizeof(small));
    FUZZ_ASSERT(kg_rules_check(ws, key, req, small, sizeof(small)) == rc);
    fuzz_assert_terminated(small, sizeof(small));
    FUZZ_ASSERT(strncmp(small, reason, sizeof(small) - 1) == 0);
    FUZZ_ASSERT(kg_rules_check(ws, key, req, NULL, 0) == rc);
    return rc;
}

static void fuzz_rules_checks(const kg_rules_t *r)
{
    kg_rules_t *empty = NULL;

    FUZZ_ASSERT(kg_rules_compile("{}", &empty, NULL) == KG_OK);
    for (size_t i = 0; i < FUZZ_NREQUESTS; i++) {
        const kg_rules_request_t *req = &fuzz_requests[i];
        kg_err_t as_ws = fuzz_check(r, NULL, req, "workspace");
        kg_err_t as_key = fuzz_check(NULL, r, req, "key");
        bool visible = kg_rules_model_visible(NULL, r, req);

        /* The level changes the words, never the answer. */
        FUZZ_ASSERT(as_ws == as_key);
        FUZZ_ASSERT(fuzz_check(r, r, req, NULL) == as_key);
        FUZZ_ASSERT(fuzz_check(empty, r, req, NULL) == as_key);
        FUZZ_ASSERT(fuzz_check(r, empty, req, NULL) == as_key);
        FUZZ_ASSERT(kg_rules_model_visible(r, NULL, req) == visible);
        FUZZ_ASSERT(kg_rules_model_visible(r, r, req) == visible);
        /* Visibility checks a subset of what a request is checked for. */
        if (as_key == KG_OK) {
            FUZZ_ASSERT(visible);
        }
        if (kg_rules_is_empty(r)) {
            FUZZ_ASSERT(as_key == KG_OK && visible);
        }
    }
    kg_rules_free(&empty);
}

static void fuzz_rules(const char *json)
{
    kg_rules_t *r = NULL;
    kg_diag_t diag = {{0}};
    kg_diag_t vdiag = {{0}};
    kg_err_t rc = kg_rules_compile(json, &r, &diag);
    kg_err_t vrc;

    FUZZ_ASSERT(rc == KG_OK || rc == KG_ERR_INVAL || rc == KG_ERR_NOMEM);
    if (json[0] != '\0' && rc != KG_ERR_NOMEM) {
        vrc = kg_validate_rules(json, &vdiag);
        FUZZ_ASSERT(vrc == rc || vrc == KG_ERR_NOMEM);
    }
    if (rc != KG_OK) {
        FUZZ_ASSERT(r == NULL);
        FUZZ_ASSERT(diag.msg[0] != '\0');
        return;
    }
    FUZZ_ASSERT(r != NULL);
    fuzz_rules_checks(r);
    kg_rules_free(&r);
    FUZZ_ASSERT(r == NULL);
}

/* The input as a trusted-proxy list and as X-Forwarded-For. */
static void fuzz_client_ip(const char *text)
{
    kg_cidr_list_t *any = NULL;
    kg_cidr_list_t *l = NULL;
    kg_diag_t diag = {{0}};
    char out[KG_RULES_IP_STRLEN];
    kg_err_t rc;

    FUZZ_ASSERT(kg_cidr_list_parse("0.0.0.0/0, ::/0", &any, NULL) == KG_OK);
    rc = kg_cidr_list_parse(text, &l, &diag);
    FUZZ_ASSERT(rc == KG_OK || rc == KG_ERR_INVAL || rc == KG_ERR_NOMEM);
    FUZZ_ASSERT(rc == KG_OK || (l == NULL && diag.msg[0] != '\0'));
    if (rc == KG_OK) {
        (void)kg_cidr_list_contains(l, "10.1.2.3");
        (void)kg_cidr_list_contains(l, "2001:db8::1");
        (void)kg_cidr_list_contains(l, "::ffff:10.1.2.3");
        FUZZ_ASSERT(
            kg_rules_client_ip("10.0.0.1", "1.2.3.4", l, out, sizeof(out)));
    }
    kg_cidr_list_free(&l);

    /* Trusting every address walks the whole header. */
    FUZZ_ASSERT(kg_rules_client_ip("10.0.0.1", text, any, out, sizeof(out)));
    FUZZ_ASSERT(kg_cidr_list_contains(any, out));
    /* Trusting nobody never reads it. */
    FUZZ_ASSERT(kg_rules_client_ip("10.0.0.1", text, NULL, out, sizeof(out)));
    FUZZ_ASSERT(strcmp(out, "10.0.0.1") == 0);
    kg_cidr_list_free(&any);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);

    if (text == NULL) {
        abort();
    }
    if (size > 0) {
        memcpy(text, data, size);
    }
    text[size] = '\0';
    fuzz_rules(text);
    fuzz_client_ip(text);
    free(text);
    return 0;
}
