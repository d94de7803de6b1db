/* Inspecting and rewriting client request bodies (OpenAI and Anthropic). */
#include "keygate/request.h"

#include "keygate/validate.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The members whose text makes up a request's input. */
static const char *const request_input_members[] = {
    "messages", "prompt", "input", "system", "instructions",
};

/* The object members the input estimate descends into. */
static const char *const request_text_members[] = {
    "content",  "text",       "output",   "arguments",
    "thinking", "tool_calls", "function",
};

/* The members that bound the output, any of which a request may use. */
static const char *const request_max_members[] = {
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
};

#define REQUEST_NROWS(a) (sizeof(a) / sizeof((a)[0]))

/*
 * One pass over the raw body before jansson sees it: valid UTF-8 throughout,
 * no raw control character but whitespace, and arrays/objects nested at
 * most KG_REQUEST_MAX_DEPTH deep, counting brackets outside strings only.
 */
static kg_err_t request_prescan(const char *body, size_t len, kg_diag_t *diag)
{
    const unsigned char *p = (const unsigned char *)body;
    size_t i = 0;
    int depth = 0;
    bool in_string = false;
    bool escape = false;

    while (i < len) {
        unsigned char c = p[i];

        if (c >= 0x80) {
            size_t n = kg_validate_utf8_len(p + i, len - i);

            if (n == 0) {
                return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                    "the request body is not valid UTF-8 "
                                    "(at byte %zu)",
                                    i);
            }
            escape = false;
            i += n;
            continue;
        }
        if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            /* jansson lets a raw NUL after a literal pass: refuse it here. */
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "the request body contains a control "
                                "character (at byte %zu)",
                                i);
        }
        i++;
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
            if (++depth > KG_REQUEST_MAX_DEPTH) {
                return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                    "the request body nests arrays and "
                                    "objects deeper than %d levels",
                                    KG_REQUEST_MAX_DEPTH);
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return KG_OK;
}

/* Parse a request body into *root (new on KG_OK), refusing bad shapes. */
static kg_err_t request_parse(const char *body, size_t len, json_t **root,
                              kg_diag_t *diag)
{
    json_error_t jerr;
    kg_err_t rc;

    *root = NULL;
    if (body == NULL || len == 0) {
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "the request body is empty; a JSON object is "
                            "expected");
    }
    rc = request_prescan(body, len, diag);
    if (rc != KG_OK) {
        return rc;
    }
    *root =
        json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (*root == NULL) {
        switch (json_error_code(&jerr)) {
        case json_error_out_of_memory:
            return KG_ERR_NOMEM;
        case json_error_duplicate_key:
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "the request body has a duplicate member "
                                "name (line %d, column %d)",
                                jerr.line, jerr.column);
        case json_error_invalid_utf8:
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "the request body is not valid UTF-8");
        case json_error_null_character:
        case json_error_null_byte_in_key:
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "the request body contains a NUL character "
                                "(line %d, column %d)",
                                jerr.line, jerr.column);
        case json_error_numeric_overflow:
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "the request body has a number too large "
                                "(line %d, column %d)",
                                jerr.line, jerr.column);
        case json_error_stack_overflow:
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "the request body nests arrays and objects "
                                "deeper than %d levels",
                                KG_REQUEST_MAX_DEPTH);
        default:
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "the request body is not valid JSON (line "
                                "%d, column %d)",
                                jerr.line, jerr.column);
        }
    }
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "the request body must be a JSON object");
    }
    return KG_OK;
}

/* Check "model" and copy it into info. */
static kg_err_t request_model(const json_t *root, kg_request_info_t *info,
                              kg_diag_t *diag)
{
    const json_t *v = json_object_get(root, "model"); /* borrowed */
    const char *s;
    size_t n;

    if (v == NULL) {
        return KG_OK;
    }
    if (!json_is_string(v)) {
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "'model' must be a string");
    }
    s = json_string_value(v);
    n = json_string_length(v);
    if (n == 0) {
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "'model' must not be empty");
    }
    if (n > KG_MODEL_NAME_MAX) {
        return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                            "'model' is too long (the maximum is %d bytes)",
                            KG_MODEL_NAME_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7F) {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'model' must not contain control "
                                "characters");
        }
    }
    memcpy(info->model, s, n);
    info->model[n] = '\0';
    info->has_model = true;
    return KG_OK;
}

/* Check "stream", the max_* members and "stream_options". */
static kg_err_t request_options(const json_t *root, kg_request_info_t *info,
                                kg_diag_t *diag)
{
    const json_t *v; /* borrowed */

    v = json_object_get(root, "stream");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v)) {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'stream' must be a boolean");
        }
        info->stream = json_is_true(v);
    }
    for (size_t i = 0; i < REQUEST_NROWS(request_max_members); i++) {
        const char *name = request_max_members[i];

        v = json_object_get(root, name);
        if (v == NULL || json_is_null(v)) {
            continue;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'%s' must be a non-negative integer", name);
        }
        if (json_integer_value(v) > info->max_tokens) {
            info->max_tokens = json_integer_value(v);
        }
    }
    v = json_object_get(root, "stream_options");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'stream_options' must be an object");
        }
        v = json_object_get(v, "include_usage");
        if (v != NULL && !json_is_null(v) && !json_is_boolean(v)) {
            return kg_diag_fail(diag, KG_ERR_BAD_REQUEST,
                                "'stream_options.include_usage' must be a "
                                "boolean");
        }
        info->client_include_usage = json_is_true(v);
    }
    return KG_OK;
}

/* True when key is one of request_text_members. */
static bool request_is_text_member(const char *key)
{
    for (size_t i = 0; i < REQUEST_NROWS(request_text_members); i++) {
        if (strcmp(key, request_text_members[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Bytes of input text under v (see kg_request_inspect()). */
static uint64_t request_text_bytes(json_t *v, int depth)
{
    uint64_t bytes = 0;
    size_t i;
    const char *key;
    json_t *item; /* borrowed */

    if (depth > KG_REQUEST_MAX_DEPTH) {
        return 0;
    }
    if (json_is_string(v)) {
        bytes = json_string_length(v);
    } else if (json_is_integer(v)) {
        bytes = 4;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            bytes += request_text_bytes(item, depth + 1);
        }
    } else if (json_is_object(v)) {
        json_object_foreach(v, key, item)
        {
            if (request_is_text_member(key)) {
                bytes += request_text_bytes(item, depth + 1);
            }
        }
    }
    return bytes;
}

/* The input estimate of kg_request_inspect(). */
static int64_t request_estimate(const json_t *root)
{
    uint64_t bytes = 0;
    uint64_t messages = 0;
    json_t *v; /* borrowed */
    size_t i;
    json_t *item; /* borrowed */

    for (size_t m = 0; m < REQUEST_NROWS(request_input_members); m++) {
        bytes += request_text_bytes(
            json_object_get(root, request_input_members[m]), 0);
    }
    messages += json_array_size(json_object_get(root, "messages"));
    v = json_object_get(root, "input");
    json_array_foreach(v, i, item)
    {
        messages += json_is_object(item);
    }
    /* bytes <= 4 * the body's length: no overflow. */
    return (int64_t)((bytes + 3) / 4 + messages * KG_REQUEST_MESSAGE_OVERHEAD);
}

kg_err_t kg_request_inspect(const char *body, size_t len,
                            kg_request_info_t *info, kg_diag_t *diag)
{
    json_t *root = NULL; /* new */
    kg_err_t rc;

    memset(info, 0, sizeof(*info));
    info->max_tokens = KG_NONE;
    rc = request_parse(body, len, &root, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = request_model(root, info, diag);
    if (rc != KG_OK) {
        goto out;
    }
    rc = request_options(root, info, diag);
    if (rc != KG_OK) {
        goto out;
    }
    info->input_estimate_tokens = request_estimate(root);
out:
    json_decref(root);
    return rc;
}

/*
 * Rewriting splices the client's bytes instead of re-printing the parsed
 * tree: every byte outside the edited values is forwarded as sent (numbers
 * keep their spelling), and no serialisation is paid for. The body has
 * passed request_parse() first, so the scanner below walks valid JSON.
 */

/* One change to the body: replace [pos, pos + del) with text. */
typedef struct request_edit {
    size_t pos;
    size_t del;
    char *text; /* owned */
    size_t text_len;
} request_edit_t;

#define REQUEST_EDITS_MAX 3

typedef struct request_edits {
    request_edit_t e[REQUEST_EDITS_MAX];
    size_t n;
} request_edits_t;

/* Index of the first byte at or after i that is not JSON whitespace. */
static size_t request_skip_ws(const char *b, size_t len, size_t i)
{
    while (i < len &&
           (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) {
        i++;
    }
    return i;
}

/* Index just past the string whose opening quote is at i. */
static size_t request_string_end(const char *b, size_t len, size_t i)
{
    for (i++; i < len && b[i] != '"'; i++) {
        if (b[i] == '\\') {
            i++;
        }
    }
    return i < len ? i + 1 : len;
}

/* Index just past the (valid) JSON value that starts at i. */
static size_t request_value_end(const char *b, size_t len, size_t i)
{
    int depth = 0;

    if (i >= len) {
        return len;
    }
    if (b[i] == '"') {
        return request_string_end(b, len, i);
    }
    if (b[i] != '{' && b[i] != '[') {
        while (i < len && b[i] != ',' && b[i] != '}' && b[i] != ']' &&
               b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r') {
            i++;
        }
        return i;
    }
    while (i < len) {
        char c = b[i];

        if (c == '"') {
            i = request_string_end(b, len, i);
            continue;
        }
        i++;
        if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            break;
        }
    }
    return i;
}

/*
 * In the object whose '{' is at obj: the value span [*vs, *ve) of its
 * member number index (in document order), or, when index is past the
 * last member, *vs = *ve = where a new member goes (after the last value,
 * or after the '{' of an empty object) and *empty tells which.
 */
static void request_member_span(const char *b, size_t len, size_t obj,
                                size_t index, size_t *vs, size_t *ve,
                                bool *empty)
{
    size_t i = request_skip_ws(b, len, obj + 1);
    size_t last = obj + 1;

    *empty = true;
    for (size_t k = 0; i < len && b[i] == '"'; k++) {
        i = request_skip_ws(b, len, request_string_end(b, len, i));
        i = request_skip_ws(b, len, i + 1); /* past the colon */
        *vs = i;
        *ve = request_value_end(b, len, i);
        if (k == index) {
            *empty = false;
            return;
        }
        last = *ve;
        *empty = false;
        i = request_skip_ws(b, len, *ve);
        if (i < len && b[i] == ',') {
            i = request_skip_ws(b, len, i + 1);
        }
    }
    *vs = last;
    *ve = last;
}

/*
 * The position of key among obj's members, or SIZE_MAX. jansson keeps
 * members in insertion order, which for a parsed body without duplicates
 * is document order: the index finds the member in the bytes even when its
 * name is written with escapes ("mod\u0065l").
 */
static size_t request_member_index(json_t *obj, const char *key)
{
    size_t k = 0;
    const char *name;
    json_t *value; /* borrowed */

    json_object_foreach(obj, name, value)
    {
        if (strcmp(name, key) == 0) {
            return k;
        }
        k++;
    }
    return SIZE_MAX;
}

/* s as a quoted JSON string, new and NUL-terminated (s is valid UTF-8). */
static char *request_quote(const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *q = malloc(n * 6 + 3);
    size_t k = 0;

    if (q == NULL) {
        return NULL;
    }
    q[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            q[k++] = '\\';
            q[k++] = (char)c;
        } else if (c < 0x20) {
            memcpy(q + k, "\\u00", 4);
            q[k + 4] = hex[c >> 4];
            q[k + 5] = hex[c & 15];
            k += 6;
        } else {
            q[k++] = (char)c;
        }
    }
    q[k++] = '"';
    q[k] = '\0';
    return q;
}

/* Queue an edit that replaces [pos, pos + del) with the n bytes at parts. */
static kg_err_t request_edit(request_edits_t *edits, size_t pos, size_t del,
                             const char *const *parts, size_t nparts)
{
    request_edit_t *e = &edits->e[edits->n];
    size_t n = 0;

    for (size_t i = 0; i < nparts; i++) {
        n += strlen(parts[i]);
    }
    e->text = malloc(n + 1);
    if (e->text == NULL) {
        return KG_ERR_NOMEM;
    }
    e->text_len = 0;
    for (size_t i = 0; i < nparts; i++) {
        size_t pl = strlen(parts[i]);

        memcpy(e->text + e->text_len, parts[i], pl);
        e->text_len += pl;
    }
    e->text[n] = '\0';
    e->pos = pos;
    e->del = del;
    edits->n++;
    return KG_OK;
}

/* The edit that sets "model" to the quoted name q. */
static kg_err_t request_edit_model(const char *b, size_t len, size_t obj,
                                   json_t *root, const char *q,
                                   request_edits_t *edits)
{
    size_t index = request_member_index(root, "model");
    size_t vs;
    size_t ve;
    bool empty;
    const char *insert[] = {",", "\"model\":", q};

    request_member_span(b, len, obj, index, &vs, &ve, &empty);
    if (index != SIZE_MAX) {
        return request_edit(edits, vs, ve - vs, &q, 1);
    }
    if (empty) {
        insert[0] = "";
    }
    return request_edit(edits, vs, 0, insert, 3);
}

/*
 * The edit that sets stream_options.include_usage to true; grown: an edit
 * before this one already adds a member to the root object.
 */
static kg_err_t request_edit_usage(const char *b, size_t len, size_t obj,
                                   json_t *root, bool grown,
                                   request_edits_t *edits)
{
    json_t *so = json_object_get(root, "stream_options"); /* borrowed */
    size_t vs;
    size_t ve;
    bool empty;
    const char *whole = "{\"include_usage\":true}";
    const char *yes = "true";
    const char *member[] = {",", "\"include_usage\":true"};
    const char *appended[] = {",", "\"stream_options\":", whole};

    request_member_span(b, len, obj,
                        request_member_index(root, "stream_options"), &vs, &ve,
                        &empty);
    if (so == NULL) {
        if (empty && !grown) {
            appended[0] = "";
        }
        return request_edit(edits, vs, 0, appended, 3);
    }
    if (json_is_null(so)) {
        return request_edit(edits, vs, ve - vs, &whole, 1);
    }
    if (!json_is_object(so)) {
        return KG_ERR_BAD_REQUEST;
    }
    /* Inside stream_options, whose '{' is at vs. */
    request_member_span(b, len, vs, request_member_index(so, "include_usage"),
                        &vs, &ve, &empty);
    if (json_object_get(so, "include_usage") != NULL) {
        return request_edit(edits, vs, ve - vs, &yes, 1);
    }
    if (empty) {
        member[0] = "";
    }
    return request_edit(edits, vs, 0, member, 2);
}

/* Apply the edits (sorted here by position) to b into a new buffer. */
static kg_err_t request_apply(const char *b, size_t len, request_edits_t *edits,
                              char **out, size_t *out_len)
{
    size_t n = len;
    size_t from = 0;
    size_t k = 0;
    char *buf;

    /* Insertion sort, stable: edits at one position keep their order. */
    for (size_t i = 1; i < edits->n; i++) {
        for (size_t j = i; j > 0 && edits->e[j - 1].pos > edits->e[j].pos;
             j--) {
            request_edit_t t = edits->e[j];

            edits->e[j] = edits->e[j - 1];
            edits->e[j - 1] = t;
        }
    }
    for (size_t i = 0; i < edits->n; i++) {
        n += edits->e[i].text_len - edits->e[i].del;
    }
    buf = malloc(n + 1);
    if (buf == NULL) {
        return KG_ERR_NOMEM;
    }
    for (size_t i = 0; i < edits->n; i++) {
        const request_edit_t *e = &edits->e[i];

        memcpy(buf + k, b + from, e->pos - from);
        k += e->pos - from;
        memcpy(buf + k, e->text, e->text_len);
        k += e->text_len;
        from = e->pos + e->del;
    }
    memcpy(buf + k, b + from, len - from);
    k += len - from;
    buf[k] = '\0';
    *out = buf;
    *out_len = k;
    return KG_OK;
}

kg_err_t kg_request_rewrite(const char *body, size_t len,
                            const char *upstream_model, bool add_include_usage,
                            char **out, size_t *out_len)
{
    json_t *root = NULL; /* new */
    char *quoted = NULL;
    request_edits_t edits = {0};
    size_t obj;
    bool grown;
    kg_err_t rc;

    *out = NULL;
    *out_len = 0;
    rc = request_parse(body, len, &root, NULL);
    if (rc != KG_OK) {
        goto out;
    }
    obj = request_skip_ws(body, len, 0); /* the root's '{' */
    if (upstream_model != NULL) {
        size_t n = strlen(upstream_model);

        for (size_t i = 0; i < n;) {
            size_t step = kg_validate_utf8_len(
                (const unsigned char *)upstream_model + i, n - i);

            if (step == 0) {
                rc = KG_ERR_INVAL;
                goto out;
            }
            i += step;
        }
        quoted = request_quote(upstream_model, n);
        if (quoted == NULL) {
            rc = KG_ERR_NOMEM;
            goto out;
        }
        rc = request_edit_model(body, len, obj, root, quoted, &edits);
        if (rc != KG_OK) {
            goto out;
        }
    }
    if (add_include_usage) {
        grown =
            upstream_model != NULL && json_object_get(root, "model") == NULL;
        rc = request_edit_usage(body, len, obj, root, grown, &edits);
        if (rc != KG_OK) {
            goto out;
        }
    }
    rc = request_apply(body, len, &edits, out, out_len);
out:
    for (size_t i = 0; i < edits.n; i++) {
        free(edits.e[i].text);
    }
    free(quoted);
    json_decref(root);
    return rc;
}
