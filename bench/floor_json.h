/* The jansson work keygate does per JSON request, shared by
 * keygate-floor-proxy --json and keygate-json-parse so both measure the same
 * calls. */
#ifndef KEYGATE_BENCH_FLOOR_JSON_H
#define KEYGATE_BENCH_FLOOR_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * The request body, parsed as src/request.c parses it (json_loadb with
 * JSON_REJECT_DUPLICATES | JSON_DECODE_ANY), reading "model" from it, then
 * freed. True when it is a JSON object.
 */
static inline bool floor_json_request(const char *body, size_t len)
{
    json_error_t jerr;
    json_t *root =
        json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    bool ok =
        json_is_object(root) && json_is_string(json_object_get(root, "model"));

    json_decref(root);
    return ok;
}

/*
 * The provider's answer, parsed as src/usage.c parses it (json_loadb with
 * no flags and no error report), reading usage.prompt_tokens and
 * usage.completion_tokens, then freed. True when both are integers.
 */
static inline bool floor_json_answer(const char *body, size_t len,
                                     long long *prompt, long long *completion)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *usage = json_object_get(root, "usage"); /* borrowed */
    json_t *p = json_object_get(usage, "prompt_tokens");
    json_t *c = json_object_get(usage, "completion_tokens");
    bool ok = json_is_integer(p) && json_is_integer(c);

    *prompt = ok ? (long long)json_integer_value(p) : 0;
    *completion = ok ? (long long)json_integer_value(c) : 0;
    json_decref(root);
    return ok;
}

#endif
