/*
 * libFuzzer target: request inspection and rewriting, checked against
 * jansson (the differential oracle) and against themselves (splicing, the
 * chunked reader of the edits).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz_check.h"
#include "keygate/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The diag is a short, terminated message whenever a body is refused. */
static void fuzz_check_diag(const kg_diag_t *diag)
{
    FUZZ_CHECK(memchr(diag->msg, '\0', sizeof(diag->msg)) != NULL);
    FUZZ_CHECK(diag->msg[0] != '\0');
}

/* True when objects a and b hold the same member names in the same order. */
static bool fuzz_same_order(json_t *a, json_t *b)
{
    void *ia = json_object_iter(a);
    void *ib = json_object_iter(b);

    while (ia != NULL && ib != NULL) {
        if (strcmp(json_object_iter_key(ia), json_object_iter_key(ib)) != 0) {
            return false;
        }
        ia = json_object_iter_next(a, ia);
        ib = json_object_iter_next(b, ib);
    }
    return ia == NULL && ib == NULL;
}

/*
 * The oracle: the rewritten bytes parse to what jansson makes of the body
 * with the same edits, member order included.
 */
static void fuzz_check_splice(const char *body, size_t len, const char *out,
                              size_t out_len, const char *upstream,
                              bool add_usage)
{
    /* Duplicates below the top level are allowed: jansson keeps the last. */
    const size_t flags = JSON_DECODE_ANY;
    json_error_t err;
    json_t *want = json_loadb(body, len, flags, &err);   /* new */
    json_t *got = json_loadb(out, out_len, flags, NULL); /* new */
    json_t *so;                                          /* borrowed */

    if (want == NULL && json_error_code(&err) == json_error_numeric_overflow) {
        /* A number out of jansson's range, which keygate does not read. */
        json_decref(got);
        return;
    }
    FUZZ_CHECK(json_is_object(want));
    FUZZ_CHECK(json_is_object(got));
    if (upstream != NULL) {
        json_object_set_new(want, "model", json_string(upstream));
    }
    if (add_usage) {
        so = json_object_get(want, "stream_options");
        if (json_is_object(so)) {
            json_object_set_new(so, "include_usage", json_true());
        } else {
            so = json_object();
            json_object_set_new(so, "include_usage", json_true());
            json_object_set_new(want, "stream_options", so);
        }
        FUZZ_CHECK(fuzz_same_order(json_object_get(want, "stream_options"),
                                   json_object_get(got, "stream_options")));
    }
    FUZZ_CHECK(json_equal(want, got));
    FUZZ_CHECK(fuzz_same_order(want, got));
    json_decref(want);
    json_decref(got);
}

/* Rewrite body and check the result against what inspect said of it. */
static void fuzz_rewrite(const char *body, size_t len, bool ok,
                         const kg_request_info_t *info, const char *upstream,
                         bool add_usage)
{
    char *out = NULL;
    size_t out_len = 0;
    kg_request_info_t again;
    kg_diag_t diag = {{0}};
    kg_err_t rc;

    rc = kg_request_rewrite(body, len, upstream, add_usage, &out, &out_len);
    if (rc == KG_ERR_NOMEM) {
        return;
    }
    if (rc != KG_OK) {
        FUZZ_CHECK(out == NULL && out_len == 0);
        /* A body inspect accepted is always rewritable. */
        FUZZ_CHECK(!ok);
        FUZZ_CHECK(rc == KG_ERR_BAD_REQUEST);
        return;
    }
    FUZZ_CHECK(out != NULL && strlen(out) == out_len);
    fuzz_check_splice(body, len, out, out_len, upstream, add_usage);
    rc = kg_request_inspect(out, out_len, &again, &diag);
    if (ok && (upstream == NULL || strcmp(upstream, "upstream-model") == 0)) {
        /* The rewritten body says the same, with the new model. */
        FUZZ_CHECK(rc == KG_OK);
        FUZZ_CHECK(again.stream == info->stream);
        FUZZ_CHECK(again.max_tokens == info->max_tokens);
        FUZZ_CHECK(again.input_estimate_tokens == info->input_estimate_tokens);
        FUZZ_CHECK(again.client_include_usage ==
                   (add_usage || info->client_include_usage));
        if (upstream != NULL) {
            FUZZ_CHECK(again.has_model && strcmp(again.model, upstream) == 0);
        } else {
            FUZZ_CHECK(again.has_model == info->has_model);
            FUZZ_CHECK(strcmp(again.model, info->model) == 0);
        }
    }
    free(out);
}

/* Nesting depth of arrays and objects, brackets outside strings. */
static int fuzz_depth(const char *b, size_t len)
{
    int depth = 0;
    int most = 0;
    bool in_string = false;
    bool escape = false;

    for (size_t i = 0; i < len; i++) {
        char c = b[i];

        if (in_string) {
            if (escape) {
                escape = false;
            } else if (c == '\\') {
                escape = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            most = ++depth > most ? depth : most;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return most;
}

/*
 * The differential oracle: keygate's scanner accepts exactly what jansson
 * accepts as an object root, but for what is documented to differ:
 * numbers out of jansson's range (keygate checks grammar only), duplicate
 * names below the top level (keygate does not read them), nesting past
 * KG_REQUEST_MAX_DEPTH and past KG_REQUEST_MAX_MEMBERS members (keygate's
 * bounds), and a raw NUL right after a literal (jansson lets it pass).
 */
static void fuzz_differential(const char *body, size_t len)
{
    json_error_t err;
    json_t *strict = json_loadb(
        body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL); /* new */
    json_t *loose = json_loadb(body, len, JSON_DECODE_ANY, &err);   /* new */
    char *out = NULL;
    size_t out_len = 0;
    kg_err_t rc = kg_request_rewrite(body, len, NULL, false, &out, &out_len);

    if (rc == KG_ERR_NOMEM) {
        goto out;
    }
    if (rc == KG_OK) {
        /* Accepted: jansson parses it too, to an object. */
        FUZZ_CHECK(json_is_object(loose) ||
                   (loose == NULL &&
                    json_error_code(&err) == json_error_numeric_overflow));
        FUZZ_CHECK(out_len == len && memcmp(out, body, len) == 0);
    } else if (json_is_object(strict) && memchr(body, '\0', len) == NULL &&
               fuzz_depth(body, len) <= KG_REQUEST_MAX_DEPTH &&
               json_object_size(strict) <= KG_REQUEST_MAX_MEMBERS) {
        /* jansson takes it without any duplicate: so does keygate. */
        FUZZ_CHECK(rc == KG_OK);
    }
out:
    free(out);
    json_decref(strict);
    json_decref(loose);
}

/* The edits read back in small pieces give the rewritten body. */
static void fuzz_edits_read(const char *body, size_t len,
                            const kg_request_info_t *info)
{
    kg_request_edits_t edits;
    char *whole = NULL;
    size_t whole_len = 0;
    char piece[7];
    size_t off = 0;
    size_t n;

    if (kg_request_edits_make(body, len, info, "up\"stream", true, &edits) !=
        KG_OK) {
        return;
    }
    if (kg_request_rewrite(body, len, "up\"stream", true, &whole, &whole_len) ==
        KG_OK) {
        FUZZ_CHECK(whole_len == edits.out_len);
        while ((n = kg_request_edits_read(body, len, &edits, off, piece,
                                          1 + off % sizeof(piece))) > 0) {
            FUZZ_CHECK(off + n <= whole_len);
            FUZZ_CHECK(memcmp(piece, whole + off, n) == 0);
            off += n;
        }
        FUZZ_CHECK(off == whole_len);
    }
    free(whole);
    kg_request_edits_clear(&edits);
}

/* Input: a request body, inspected, then rewritten two ways. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    kg_request_info_t info;
    kg_diag_t diag = {{0}};
    kg_err_t rc;
    bool ok;

    rc = kg_request_inspect(body, size, &info, &diag);
    if (rc == KG_ERR_NOMEM) {
        return 0;
    }
    ok = rc == KG_OK;
    if (ok) {
        FUZZ_CHECK(info.has_model == (info.model[0] != '\0'));
        FUZZ_CHECK(strlen(info.model) <= KG_MODEL_NAME_MAX);
        FUZZ_CHECK(info.max_tokens >= KG_NONE);
        FUZZ_CHECK(info.input_estimate_tokens >= 0);
        FUZZ_CHECK((uint64_t)info.input_estimate_tokens <=
                   (uint64_t)size / 4 + 1 +
                       (uint64_t)size * KG_REQUEST_MESSAGE_OVERHEAD);
    } else {
        FUZZ_CHECK(rc == KG_ERR_BAD_REQUEST);
        fuzz_check_diag(&diag);
    }
    fuzz_differential(body, size);
    if (ok) {
        fuzz_edits_read(body, size, &info);
    }
    fuzz_rewrite(body, size, ok, &info, NULL, false);
    fuzz_rewrite(body, size, ok, &info, "upstream-model", true);
    fuzz_rewrite(body, size, ok, &info, NULL, true);
    fuzz_rewrite(body, size, ok, &info, "a\"b\\c\x01\xC3\xA9", false);
    return 0;
}
