/* The access log: one line per request on every route, text or JSON. */
#include "keygate/access.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "keygate/log.h"
#include "keygate/money.h"

/* A line being built: text "name=value" pairs or JSON members. */
typedef struct access_line {
    char *buf;
    size_t cap; /* room for the fields; the end ("}\n") always fits */
    size_t used;
    bool json;
} access_line_t;

static void al_put(access_line_t *l, const char *s, size_t n)
{
    if (l->used + n > l->cap) {
        n = l->cap - l->used;
    }
    memcpy(l->buf + l->used, s, n);
    l->used += n;
}

/* The start of a field: ` name=` or `,"name":`. */
static void al_name(access_line_t *l, const char *name)
{
    al_put(l, l->json ? ",\"" : " ", l->json ? 2 : 1);
    al_put(l, name, strlen(name));
    al_put(l, l->json ? "\":" : "=", l->json ? 2 : 1);
}

/*
 * A string field: JSON-escaped, or in text one word with every byte that
 * is not printable ASCII (a space included) shown as '?'; none: null / -.
 */
static void al_str(access_line_t *l, const char *name, const char *v)
{
    al_name(l, name);
    if (v == NULL || v[0] == '\0') {
        al_put(l, l->json ? "null" : "-", l->json ? 4 : 1);
        return;
    }
    if (l->json) {
        al_put(l, "\"", 1);
        kg_log_json_escape(l->buf, l->cap, &l->used, v);
        al_put(l, "\"", 1);
        return;
    }
    for (const char *p = v; *p != '\0' && l->used < l->cap; p++) {
        l->buf[l->used++] = *p > ' ' && *p < 0x7f ? *p : '?';
    }
}

static void al_int(access_line_t *l, const char *name, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%" PRId64, v);

    al_name(l, name);
    al_put(l, num, n < 0 ? 0 : (size_t)n);
}

/* Microseconds as milliseconds with three decimals; < 0: none. */
static void al_ms(access_line_t *l, const char *name, int64_t us)
{
    char num[32];
    int n;

    al_name(l, name);
    if (us < 0) {
        al_put(l, l->json ? "null" : "-", l->json ? 4 : 1);
        return;
    }
    n = snprintf(num, sizeof(num), "%" PRId64 ".%03" PRId64, us / 1000,
                 us % 1000);
    al_put(l, num, n < 0 ? 0 : (size_t)n);
}

/* An amount in USD, as a JSON string (exact, like the admin API's). */
static void al_money(access_line_t *l, const char *name, int64_t micro)
{
    char m[KG_MONEY_STRLEN];

    kg_money_format(micro, m, sizeof(m));
    al_name(l, name);
    if (l->json) {
        al_put(l, "\"", 1);
    }
    al_put(l, m, strlen(m));
    if (l->json) {
        al_put(l, "\"", 1);
    }
}

size_t kg_access_format(const kg_request_summary_t *s, int admin, char *buf,
                        size_t len)
{
    access_line_t l = {buf, len > 2 ? len - 2 : 0, 0,
                       kg_log_get_format() == KG_LOG_JSON};
    const char *type = admin ? "admin" : "access";
    char stamp[KG_LOG_STAMP_LEN];
    int n;

    if (len < 64) {
        return 0;
    }
    kg_log_stamp(stamp, sizeof(stamp));
    n = l.json ? snprintf(buf, l.cap,
                          "{\"time\":\"%s\",\"level\":\"info\",\"type\":\"%s\"",
                          stamp, type)
               : snprintf(buf, l.cap, "%s info %s", stamp, type);
    l.used = n < 0 ? 0 : (size_t)n > l.cap ? l.cap : (size_t)n;
    al_str(&l, "request_id", s->request_id);
    al_str(&l, "method", s->method);
    al_str(&l, "route", s->endpoint);
    if (!admin) {
        al_str(&l, "operation", s->route);
    }
    al_int(&l, "status", s->status);
    al_str(&l, admin ? "token_id" : "key_id", s->key_id);
    if (!admin) {
        al_str(&l, "workspace_id", s->workspace_id);
        al_str(&l, "model", s->model);
        al_str(&l, "provider", s->provider);
        al_int(&l, "prompt_tokens", s->prompt_tokens);
        al_int(&l, "completion_tokens", s->completion_tokens);
        al_int(&l, "cached_tokens", s->cached_tokens);
        al_money(&l, "cost", s->cost);
    }
    al_ms(&l, "latency_ms", s->duration_us);
    if (!admin) {
        al_ms(&l, "ttft_ms", s->ttft_us);
    }
    al_str(&l, "client_ip", s->client_ip);
    al_str(&l, "error", s->error);
    if (l.json) {
        buf[l.used++] = '}';
    }
    buf[l.used++] = '\n';
    return l.used;
}

void kg_access_log(const kg_request_summary_t *s)
{
    char line[KG_LOG_LINE_MAX];
    size_t n;

    if (!KG_LOG_ON(KG_LOG_INFO)) {
        return;
    }
    n = kg_access_format(s, 0, line, sizeof(line));
    kg_log_emit(line, n);
}

void kg_access_log_admin(const kg_request_summary_t *s)
{
    char line[KG_LOG_LINE_MAX];
    size_t n;

    if (!KG_LOG_ON(KG_LOG_INFO)) {
        return;
    }
    n = kg_access_format(s, 1, line, sizeof(line));
    kg_log_emit(line, n);
}
