/* jansson's cost per parse of the bench's exact request body and mock answer,
 * as keygate and keygate-floor-proxy --json call it. */
/*
 *   keygate-json-parse REQUEST_FILE ANSWER_FILE [--seconds S] [--count N]
 *                      [--also-request FILE]... [--also-answer FILE]...
 *
 * Prints one "JSON name=value ..." line per figure:
 *
 *   request_parse  json_loadb(JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) of
 *                  the request body + reading "model" + json_decref
 *                  (floor_json_request, what --json adds per request)
 *   answer_parse   json_loadb(0) of the answer + reading usage.prompt_tokens
 *                  and usage.completion_tokens + json_decref
 *                  (floor_json_answer)
 *   request_inspect keygate's kg_request_inspect of the same body (its
 *                  prescan, the same parse, the walk that estimates tokens)
 *   answer_usage   keygate's kg_usage_from_json of the same answer
 *
 * --also-request / --also-answer add the same pairs for more bodies (the
 * size sweep's), named request_parse:FILE and so on, with the bytes.
 *
 * Each loop runs until N operations or S seconds, whichever comes first,
 * after a warm-up of 1,000. Pin the process with taskset to read "per
 * core". ns_per_op is wall-clock; cpu_ns_per_op is the thread's own CPU
 * time per operation (the steadier figure on a shared machine).
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "floor_json.h"
#include "keygate/request.h"
#include "keygate/usage.h"

#define WARMUP      1000
#define CHECK_EVERY 256 /* operations between clock reads */

typedef enum what {
    W_REQUEST_PARSE,
    W_ANSWER_PARSE,
    W_REQUEST_INSPECT,
    W_ANSWER_USAGE,
    W_ANSWER_TREE, /* json_loadb(0) of any answer, e.g. without completion */
} what_t;

static double clock_s(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
        n > 16 * 1024 * 1024 || fseek(fp, 0, SEEK_SET) != 0 ||
        (buf = malloc((size_t)n + 1)) == NULL ||
        fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        fprintf(stderr, "keygate-json-parse: cannot read %s\n", path);
        exit(2);
    }
    fclose(fp);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

/* One operation; false when the input does not parse as expected. */
static bool one(what_t w, const char *buf, size_t len, long long *sink)
{
    long long p = 0;
    long long c = 0;

    switch (w) {
    case W_REQUEST_PARSE:
        return floor_json_request(buf, len);
    case W_ANSWER_PARSE:
        if (!floor_json_answer(buf, len, &p, &c)) {
            return false;
        }
        *sink += p + c;
        return true;
    case W_REQUEST_INSPECT: {
        kg_request_info_t info;
        kg_diag_t diag = {{0}};

        if (kg_request_inspect(buf, len, &info, &diag) != KG_OK) {
            return false;
        }
        *sink += info.input_estimate_tokens;
        return true;
    }
    case W_ANSWER_TREE: {
        json_t *root = json_loadb(buf, len, 0, NULL); /* new */
        bool ok = json_is_object(json_object_get(root, "usage"));

        json_decref(root);
        return ok;
    }
    case W_ANSWER_USAGE: {
        kg_usage_t u;

        if (!kg_usage_from_json(KG_API_OPENAI, buf, len, &u)) {
            return false;
        }
        *sink += u.prompt_tokens + u.completion_tokens;
        return true;
    }
    }
    return false;
}

static void bench(const char *name, what_t w, const char *buf, size_t len,
                  double seconds, unsigned long long count)
{
    long long sink = 0;
    unsigned long long ops = 0;
    double t0;
    double c0;
    double wall;
    double cpu;

    /* A large body warms up in fewer rounds (a 1 MB parse is ms). */
    for (size_t i = 0; i < (len > 65536 ? WARMUP / 100 : WARMUP); i++) {
        if (!one(w, buf, len, &sink)) {
            fprintf(stderr,
                    "keygate-json-parse: %s: the input does not "
                    "parse as expected\n",
                    name);
            exit(1);
        }
    }
    t0 = clock_s(CLOCK_MONOTONIC);
    c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    while (ops < count) {
        one(w, buf, len, &sink);
        ops++;
        if ((ops % CHECK_EVERY == 0 || len > 65536) &&
            clock_s(CLOCK_MONOTONIC) - t0 >= seconds) {
            break;
        }
    }
    wall = clock_s(CLOCK_MONOTONIC) - t0;
    cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    printf("JSON name=%s bytes=%zu ops=%llu seconds=%.3f per_sec=%.0f "
           "ns_per_op=%.1f cpu_ns_per_op=%.1f sink=%lld\n",
           name, len, ops, wall, (double)ops / wall, wall * 1e9 / (double)ops,
           cpu * 1e9 / (double)ops, sink % 1000);
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    unsigned long long count = 10000000ULL;
    size_t rlen;
    size_t alen;
    char *req;
    char *ans;

    if (argc < 3 || (argc - 3) % 2 != 0) {
        fprintf(stderr, "usage: keygate-json-parse REQUEST_FILE ANSWER_FILE "
                        "[--seconds S] [--count N]\n");
        return 2;
    }
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0) {
            seconds = strtod(argv[i + 1], NULL);
        } else if (strcmp(argv[i], "--count") == 0) {
            count = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--also-request") == 0 ||
                   strcmp(argv[i], "--also-answer") == 0) {
            continue; /* after the main four */
        } else {
            fprintf(stderr, "keygate-json-parse: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (seconds <= 0 || seconds > 60 || count < 1 || count > 1000000000ULL) {
        fprintf(stderr, "keygate-json-parse: --seconds 0..60, --count "
                        "1..1e9\n");
        return 2;
    }
    req = read_file(argv[1], &rlen);
    ans = read_file(argv[2], &alen);
    bench("request_parse", W_REQUEST_PARSE, req, rlen, seconds, count);
    bench("answer_parse", W_ANSWER_PARSE, ans, alen, seconds, count);
    bench("request_inspect", W_REQUEST_INSPECT, req, rlen, seconds, count);
    bench("answer_usage", W_ANSWER_USAGE, ans, alen, seconds, count);
    free(req);
    free(ans);
    for (int i = 3; i + 1 < argc; i += 2) {
        bool is_req = strcmp(argv[i], "--also-request") == 0;
        const char *base = strrchr(argv[i + 1], '/');
        char name[256];
        size_t len;
        char *buf;

        if (!is_req && strcmp(argv[i], "--also-answer") != 0) {
            continue;
        }
        base = base != NULL ? base + 1 : argv[i + 1];
        buf = read_file(argv[i + 1], &len);
        snprintf(name, sizeof(name), "%s:%s",
                 is_req ? "request_parse" : "answer_parse", base);
        bench(name, is_req ? W_REQUEST_PARSE : W_ANSWER_TREE, buf, len, seconds,
              count);
        snprintf(name, sizeof(name), "%s:%s",
                 is_req ? "request_inspect" : "answer_usage", base);
        bench(name, is_req ? W_REQUEST_INSPECT : W_ANSWER_USAGE, buf, len,
              seconds, count);
        free(buf);
    }
    return 0;
}
