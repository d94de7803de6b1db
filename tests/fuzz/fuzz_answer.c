/*
 * libFuzzer target: answers without a tree (kg_jscan_shape and
 * kg_usage_from_answer), checked against jansson.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz_check.h"
#include "keygate/jscan.h"
#include "keygate/usage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Brackets nested deeper than jansson's limit: jansson refuses, not us. */
static bool fuzz_deep(const char *b, size_t len)
{
    int depth = 0;
    bool in_string = false;

    for (size_t i = 0; i < len; i++) {
        if (in_string) {
            if (b[i] == '\\') {
                i++;
            } else if (b[i] == '"') {
                in_string = false;
            }
        } else if (b[i] == '"') {
            in_string = true;
        } else if (b[i] == '[' || b[i] == '{') {
            if (++depth > 1000) {
                return true;
            }
        } else if (b[i] == ']' || b[i] == '}') {
            depth--;
        }
    }
    return false;
}

/*
 * The oracle: whatever jansson parses to an object or array has the shape
 * (the converse need not hold: the shape check reads no grammar); the
 * member found is the last top-level "usage" whose value is an object or
 * array, and it parses to what jansson has there.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    json_t *root = json_loadb(body, size, JSON_DECODE_ANY, NULL); /* new */
    const json_t *want;                                           /* borrowed */
    kg_jscan_member_t m;
    kg_usage_t u;
    bool shape = kg_jscan_shape(body, size, "usage", &m);
    bool shape2 = false;
    bool found = kg_usage_from_answer(KG_API_OPENAI, body, size, &u, &shape2);

    FUZZ_CHECK(shape == shape2);
    FUZZ_CHECK(!m.found || (shape && m.start < m.end && m.end <= size));
    FUZZ_CHECK(!found || (m.found && u.seen));
    FUZZ_CHECK(u.prompt_tokens >= 0 && u.completion_tokens >= 0);
    FUZZ_CHECK(u.cached_tokens >= 0 && u.cached_tokens <= u.prompt_tokens);
    if ((json_is_object(root) || json_is_array(root)) &&
        !fuzz_deep(body, size)) {
        FUZZ_CHECK(shape);
        want = json_is_object(root) ? json_object_get(root, "usage") : NULL;
        if (json_is_object(want) || json_is_array(want)) {
            json_t *got = NULL; /* new */

            /* jansson keeps the last of duplicate names, as the scan does,
             * unless the escapes spell the name another way. */
            if (m.found) {
                got = json_loadb(body + m.start, m.end - m.start, 0, NULL);
                FUZZ_CHECK(got != NULL);
            }
            if (got != NULL && memchr(body, '\\', size) == NULL) {
                FUZZ_CHECK(json_equal(got, want));
            }
            json_decref(got);
        }
        (void)kg_usage_from_answer(KG_API_ANTHROPIC, body, size, &u, NULL);
    }
    json_decref(root);
    return 0;
}
