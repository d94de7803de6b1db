/* Usage queries: totals and time series from the rollup, event history. */
#include "keygate/usage_query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keygate/money.h"
#include "keygate/period.h"
#include "keygate/timefmt.h"
#include "keygate/token.h"
#include "keygate/workspaces.h"

/* The group table's slots: a power of two, at least twice the groups. */
#define UQ_GROUP_SLOTS 1024
_Static_assert(UQ_GROUP_SLOTS >= 2 * KG_USAGE_GROUPS_MAX,
               "the group table has room for every group");

static const char *const uq_bucket_names[] = {"hour", "day", "month"};
static const char *const uq_group_names[] = {"none", "key", "model", "provider",
                                             "workspace"};

static const char *const uq_series_params[] = {
    "from", "to", "by", "group", "key", "workspace", "model", "provider", NULL,
};
static const char *const uq_events_params[] = {
    "from",   "to",     "key",   "workspace", "model", "provider",
    "status", "errors", "limit", "cursor",    NULL,
};

const char *kg_usage_bucket_name(kg_usage_bucket_t b)
{
    return (unsigned)b < 3 ? uq_bucket_names[b] : "";
}

const char *kg_usage_group_name(kg_usage_group_t g)
{
    return (unsigned)g < 5 ? uq_group_names[g] : "";
}

static kg_period_t uq_period(kg_usage_bucket_t b)
{
    return b == KG_USAGE_BY_HOUR  ? KG_PERIOD_HOUR
           : b == KG_USAGE_BY_DAY ? KG_PERIOD_DAY
                                  : KG_PERIOD_MONTH;
}

/* ---- parsing ------------------------------------------------------------ */

/* key: a key id, or "<prefix>_<id>". */
static kg_err_t uq_parse_key(const char *v, char id[KG_TOKEN_ID_LEN + 1],
                             kg_diag_t *diag)
{
    const char *us = v ? strrchr(v, '_') : NULL;

    if (v == NULL) {
        id[0] = '\0';
        return KG_OK;
    }
    if (us != NULL && us != v) {
        size_t plen = (size_t)(us - v);
        char prefix[KG_TOKEN_PREFIX_MAX + 1];

        if (plen <= KG_TOKEN_PREFIX_MAX) {
            memcpy(prefix, v, plen);
            prefix[plen] = '\0';
            if (kg_token_prefix_valid(prefix)) {
                v = us + 1;
            }
        }
    }
    if (!kg_token_id_valid(v)) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "key: not a key id (12 characters) or an access "
                            "key (<prefix>_<id>)");
    }
    memcpy(id, v, KG_TOKEN_ID_LEN + 1);
    return KG_OK;
}

/* key, workspace, model, provider: shared by series and events. */
static kg_err_t uq_parse_filter(const kg_query_param_t *p, size_t n,
                                kg_usage_filter_t *f,
                                char workspace[KG_NAME_MAX + 1],
                                kg_diag_t *diag)
{
    kg_err_t rc = uq_parse_key(kg_query_get(p, n, "key"), f->key_id, diag);

    if (rc == KG_OK) {
        rc = kg_query_copy("workspace", kg_query_get(p, n, "workspace"),
                           workspace, KG_NAME_MAX + 1, diag);
    }
    if (rc == KG_OK) {
        rc = kg_query_copy("model", kg_query_get(p, n, "model"), f->model,
                           sizeof(f->model), diag);
    }
    if (rc == KG_OK) {
        rc = kg_query_copy("provider", kg_query_get(p, n, "provider"),
                           f->provider, sizeof(f->provider), diag);
    }
    return rc;
}

/* from and to (each optional, def_* when absent): from < to, in range. */
static kg_err_t uq_parse_range(const kg_query_param_t *p, size_t n, int64_t now,
                               int64_t def_to, int64_t def_span, int64_t *from,
                               int64_t *to, kg_diag_t *diag)
{
    const char *vfrom = kg_query_get(p, n, "from");
    const char *vto = kg_query_get(p, n, "to");
    kg_err_t rc = KG_OK;

    *to = def_to;
    if (vto != NULL) {
        rc = kg_query_time("to", vto, now, to, diag);
    }
    if (rc == KG_OK && (*to <= 0 || *to > KG_USAGE_TIME_MAX)) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL,
                          "to: must be after 1970 and before the year 10000");
    }
    if (rc != KG_OK) {
        return rc;
    }
    *from = def_span < 0 ? 0 : *to - def_span;
    *from = *from < 0 ? 0 : *from;
    if (vfrom != NULL) {
        rc = kg_query_time("from", vfrom, now, from, diag);
    }
    if (rc == KG_OK && *from < 0) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL, "from: must not be before 1970");
    }
    if (rc == KG_OK && *from >= *to) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL, "from: must be before to");
    }
    return rc;
}

/* *out = the index of v in names (count of them); v NULL: unchanged. */
static kg_err_t uq_parse_name(const char *param, const char *v,
                              const char *const *names, size_t count, int *out,
                              kg_diag_t *diag)
{
    char list[64] = "";
    size_t pos = 0;

    if (v == NULL) {
        return KG_OK;
    }
    for (size_t i = 0; i < count; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = (int)i;
            return KG_OK;
        }
        pos += (size_t)snprintf(list + pos, sizeof(list) - pos, "%s%s",
                                i ? ", " : "", names[i]);
    }
    return kg_diag_fail(diag, KG_ERR_INVAL, "%s: '%.32s' is not one of %s",
                        param, v, list);
}

/* Align [from, to) to whole buckets and count them (bounded). */
static kg_err_t uq_align(kg_usage_query_t *q, kg_diag_t *diag)
{
    kg_period_t p = uq_period(q->bucket);
    int64_t from = kg_period_start(p, q->filter.from);
    int64_t to = kg_period_start(p, q->filter.to);
    size_t n = 0;

    if (to != q->filter.to) {
        to = kg_period_next(p, q->filter.to);
    }
    if (p == KG_PERIOD_HOUR || p == KG_PERIOD_DAY) {
        int64_t step = p == KG_PERIOD_HOUR ? 3600 : 86400;

        n = (to - from) / step > KG_USAGE_BUCKETS_MAX
                ? KG_USAGE_BUCKETS_MAX + 1
                : (size_t)((to - from) / step);
    } else {
        for (int64_t t = from; t < to && n <= KG_USAGE_BUCKETS_MAX;
             t = kg_period_next(p, t)) {
            n++;
        }
    }
    if (n > KG_USAGE_BUCKETS_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "from: the range holds more than %d %ss; use a "
                            "shorter range or a coarser bucket (by)",
                            KG_USAGE_BUCKETS_MAX,
                            kg_usage_bucket_name(q->bucket));
    }
    q->filter.from = from;
    q->filter.to = to;
    q->nbuckets = n;
    return KG_OK;
}

kg_err_t kg_usage_query_parse(const kg_query_param_t *params, size_t n,
                              int64_t now, kg_usage_query_t *q, kg_diag_t *diag)
{
    static const int64_t span[] = {86400, 30 * 86400, 365 * 86400};
    int bucket = KG_USAGE_BY_DAY;
    int group = KG_USAGE_GROUP_NONE;
    kg_err_t rc;

    memset(q, 0, sizeof(*q));
    rc = kg_query_check(params, n, uq_series_params, diag);
    if (rc == KG_OK) {
        rc = uq_parse_name("by", kg_query_get(params, n, "by"), uq_bucket_names,
                           3, &bucket, diag);
    }
    if (rc == KG_OK) {
        rc = uq_parse_name("group", kg_query_get(params, n, "group"),
                           uq_group_names, 5, &group, diag);
    }
    if (rc == KG_OK) {
        rc = uq_parse_filter(params, n, &q->filter, q->workspace, diag);
    }
    if (rc == KG_OK) {
        rc = uq_parse_range(params, n, now, now, span[bucket], &q->filter.from,
                            &q->filter.to, diag);
    }
    q->bucket = (kg_usage_bucket_t)bucket;
    q->group = (kg_usage_group_t)group;
    if (rc == KG_OK) {
        rc = uq_align(q, diag);
    }
    return rc;
}

/* status: "Nxx" or one status 0-999; errors: true|false|1|0. */
static kg_err_t uq_parse_status(const char *status, const char *errors,
                                kg_usage_events_filter_t *f, kg_diag_t *diag)
{
    size_t len = status ? strlen(status) : 0;

    f->status_min = 0;
    f->status_max = 999;
    if (len == 3 && status[0] >= '1' && status[0] <= '9' &&
        strcmp(status + 1, "xx") == 0) {
        f->status_min = (status[0] - '0') * 100;
        f->status_max = f->status_min + 99;
    } else if (len >= 1 && len <= 3 && strspn(status, "0123456789") == len) {
        f->status_min = (int)strtol(status, NULL, 10);
        f->status_max = f->status_min;
    } else if (status != NULL) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "status: '%.16s' is not a status (0-999) or a "
                            "class like 4xx",
                            status);
    }
    if (errors == NULL || strcmp(errors, "false") == 0 ||
        strcmp(errors, "0") == 0) {
        return KG_OK;
    }
    if (strcmp(errors, "true") != 0 && strcmp(errors, "1") != 0) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "errors: '%.16s' is not true or false", errors);
    }
    f->status_min = f->status_min < 400 ? 400 : f->status_min;
    return KG_OK;
}

kg_err_t kg_usage_events_query_parse(const kg_query_param_t *params, size_t n,
                                     int64_t now, kg_usage_events_query_t *q,
                                     kg_diag_t *diag)
{
    const char *cursor = kg_query_get(params, n, "cursor");
    kg_err_t rc;

    memset(q, 0, sizeof(*q));
    rc = kg_query_check(params, n, uq_events_params, diag);
    if (rc == KG_OK) {
        rc = uq_parse_filter(params, n, &q->filter.base, q->workspace, diag);
    }
    if (rc == KG_OK) {
        rc = uq_parse_range(params, n, now, KG_USAGE_TIME_MAX, -1,
                            &q->filter.base.from, &q->filter.base.to, diag);
    }
    if (rc == KG_OK) {
        rc = uq_parse_status(kg_query_get(params, n, "status"),
                             kg_query_get(params, n, "errors"), &q->filter,
                             diag);
    }
    if (rc == KG_OK) {
        rc = kg_query_limit("limit", kg_query_get(params, n, "limit"),
                            KG_USAGE_EVENTS_LIMIT_DEFAULT,
                            KG_USAGE_EVENTS_LIMIT_MAX, &q->limit, diag);
    }
    if (rc == KG_OK && cursor != NULL &&
        strlen(cursor) != KG_QUERY_CURSOR_LEN) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL,
                          "cursor: not a cursor this listing handed out");
    }
    if (rc == KG_OK && cursor != NULL) {
        memcpy(q->cursor, cursor, KG_QUERY_CURSOR_STRLEN);
    }
    return rc;
}

/* ---- running a series query -------------------------------------------- */

/* The workspace's id for ref (name or id) into id; "" for "". */
static kg_err_t uq_resolve_workspace(kg_store_t *store, const char *ref,
                                     char id[KG_TOKEN_ID_LEN + 1],
                                     kg_diag_t *diag)
{
    kg_workspace_t ws;
    kg_err_t rc;

    if (ref[0] == '\0') {
        return KG_OK;
    }
    memset(&ws, 0, sizeof(ws));
    rc = kg_workspace_get(store, ref, &ws, diag);
    if (rc == KG_OK) {
        memcpy(id, ws.id, KG_TOKEN_ID_LEN + 1);
    }
    kg_workspace_clear(&ws);
    return rc;
}

typedef struct uq_fold {
    kg_usage_result_t *r;
    size_t cap;                    /* groups allocated */
    uint16_t slot[UQ_GROUP_SLOTS]; /* index + 1 into r->groups; 0: empty */
    kg_err_t rc;
    kg_diag_t *diag;
} uq_fold_t;

static const char *uq_group_of(const kg_usage_rollup_t *row, kg_usage_group_t g)
{
    switch (g) {
    case KG_USAGE_GROUP_KEY:
        return row->key_id;
    case KG_USAGE_GROUP_MODEL:
        return row->model;
    case KG_USAGE_GROUP_PROVIDER:
        return row->provider;
    case KG_USAGE_GROUP_WORKSPACE:
        return row->workspace_id;
    case KG_USAGE_GROUP_NONE:
        break;
    }
    return "";
}

/* Append a new, zero-filled series named name; NULL with fo->rc set. */
static kg_usage_series_t *uq_group_new(uq_fold_t *fo, const char *name)
{
    kg_usage_result_t *r = fo->r;
    kg_usage_series_t *s;

    if (r->ngroups == KG_USAGE_GROUPS_MAX ||
        (r->ngroups + 1) * r->nbuckets > KG_USAGE_POINTS_MAX) {
        fo->rc = kg_diag_fail(
            fo->diag, KG_ERR_INVAL,
            "group: more than %zu %ss have usage in this range (at most %d, "
            "and %d groups x buckets); add a filter, shorten the range or "
            "use a coarser bucket (by)",
            r->ngroups, kg_usage_group_name(r->query.group),
            KG_USAGE_GROUPS_MAX, KG_USAGE_POINTS_MAX);
        return NULL;
    }
    if (r->ngroups == fo->cap) {
        size_t ncap = fo->cap ? fo->cap * 2 : 8;
        kg_usage_series_t *grown = realloc(r->groups, ncap * sizeof(*grown));

        if (grown == NULL) {
            fo->rc = KG_ERR_NOMEM;
            return NULL;
        }
        r->groups = grown;
        fo->cap = ncap;
    }
    s = &r->groups[r->ngroups];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->buckets = calloc(r->nbuckets, sizeof(*s->buckets));
    if (s->buckets == NULL) {
        fo->rc = KG_ERR_NOMEM;
        return NULL;
    }
    r->ngroups++;
    return s;
}

/* The series of name, made when new; NULL with fo->rc set. */
static kg_usage_series_t *uq_group_get(uq_fold_t *fo, const char *name)
{
    uint32_t h = 2166136261u;
    size_t i;

    for (const char *c = name; *c; c++) {
        h = (h ^ (unsigned char)*c) * 16777619u; /* FNV-1a */
    }
    for (i = h & (UQ_GROUP_SLOTS - 1); fo->slot[i] != 0;
         i = (i + 1) & (UQ_GROUP_SLOTS - 1)) {
        kg_usage_series_t *s = &fo->r->groups[fo->slot[i] - 1];

        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    if (uq_group_new(fo, name) == NULL) {
        return NULL;
    }
    fo->slot[i] = (uint16_t)fo->r->ngroups;
    return &fo->r->groups[fo->r->ngroups - 1];
}

/* The bucket holding hour (inside the range). */
static size_t uq_bucket_of(const kg_usage_result_t *r, int64_t hour)
{
    size_t lo = 0;
    size_t hi = r->nbuckets - 1;

    if (r->query.bucket != KG_USAGE_BY_MONTH) {
        int64_t step = r->query.bucket == KG_USAGE_BY_HOUR ? 3600 : 86400;
        int64_t i = (hour - r->starts[0]) / step;

        return i < 0 ? 0 : (size_t)i > hi ? hi : (size_t)i;
    }
    while (lo < hi) { /* the last start <= hour */
        size_t mid = lo + (hi - lo + 1) / 2;

        if (r->starts[mid] <= hour) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

static bool uq_fold_row(void *ud, const kg_usage_rollup_t *row)
{
    uq_fold_t *fo = ud;
    kg_usage_result_t *r = fo->r;
    kg_usage_series_t *s = uq_group_get(fo, uq_group_of(row, r->query.group));

    if (s == NULL) {
        return false;
    }
    kg_usage_sums_merge(&s->buckets[uq_bucket_of(r, row->hour)], &row->sums);
    return true;
}

/* Each group's totals from its buckets, the result's from the groups'. */
static void uq_totals(kg_usage_result_t *r)
{
    for (size_t g = 0; g < r->ngroups; g++) {
        kg_usage_series_t *s = &r->groups[g];

        for (size_t b = 0; b < r->nbuckets; b++) {
            kg_usage_sums_merge(&s->totals, &s->buckets[b]);
        }
        kg_usage_sums_merge(&r->totals, &s->totals);
    }
}

static int uq_series_cmp(const void *pa, const void *pb)
{
    const kg_usage_series_t *a = pa;
    const kg_usage_series_t *b = pb;

    if (a->totals.cost != b->totals.cost) {
        return a->totals.cost > b->totals.cost ? -1 : 1;
    }
    if (a->totals.requests != b->totals.requests) {
        return a->totals.requests > b->totals.requests ? -1 : 1;
    }
    return strcmp(a->name, b->name);
}

/* r->starts for the query's buckets. */
static kg_err_t uq_starts(kg_usage_result_t *r)
{
    kg_period_t p = uq_period(r->query.bucket);
    int64_t t = r->query.filter.from;

    r->starts = calloc(r->nbuckets + 1, sizeof(*r->starts));
    if (r->starts == NULL) {
        return KG_ERR_NOMEM;
    }
    for (size_t i = 0; i < r->nbuckets; i++) {
        r->starts[i] = t;
        t = kg_period_next(p, t);
    }
    r->starts[r->nbuckets] = t;
    return KG_OK;
}

kg_err_t kg_usage_query_run(kg_store_t *store, const kg_usage_query_t *q,
                            kg_usage_result_t **out, kg_diag_t *diag)
{
    kg_usage_result_t *r = NULL;
    uq_fold_t *fo = NULL;
    kg_err_t rc;

    *out = NULL;
    r = calloc(1, sizeof(*r));
    fo = calloc(1, sizeof(*fo));
    if (r == NULL || fo == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    r->query = *q;
    r->nbuckets = q->nbuckets;
    if (r->nbuckets == 0 || r->nbuckets > KG_USAGE_BUCKETS_MAX) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL, "not a parsed usage query");
        goto out;
    }
    rc = uq_resolve_workspace(store, q->workspace, r->query.filter.workspace_id,
                              diag);
    if (rc == KG_OK) {
        rc = uq_starts(r);
    }
    if (rc != KG_OK) {
        goto out;
    }
    fo->r = r;
    fo->diag = diag;
    rc = kg_store_usage_rollup_scan(store, &r->query.filter, uq_fold_row, fo,
                                    diag);
    if (rc == KG_OK) {
        rc = fo->rc;
    }
    if (rc == KG_OK && r->ngroups == 0 && q->group == KG_USAGE_GROUP_NONE &&
        uq_group_get(fo, "") == NULL) {
        rc = fo->rc;
    }
    if (rc == KG_OK) {
        uq_totals(r);
    }
    if (rc == KG_OK && r->ngroups > 1) {
        qsort(r->groups, r->ngroups, sizeof(*r->groups), uq_series_cmp);
    }
out:
    free(fo);
    if (rc != KG_OK) {
        kg_usage_result_free(&r);
    }
    *out = r;
    return rc;
}

void kg_usage_result_free(kg_usage_result_t **r)
{
    if (r == NULL || *r == NULL) {
        return;
    }
    for (size_t i = 0; i < (*r)->ngroups; i++) {
        free((*r)->groups[i].buckets);
    }
    free((*r)->groups);
    free((*r)->starts);
    free(*r);
    *r = NULL;
}

/* ---- JSON and CSV of a series result ------------------------------------ */

/* What STATS derives from sums; -1 where JSON has null. */
typedef struct uq_derived {
    int64_t total_tokens;
    int64_t latency_avg;
    int64_t latency_p50;
    int64_t latency_p95;
    int64_t latency_max;
    int64_t ttft_avg;
} uq_derived_t;

/* v rounded half up to a whole number; -1 for a negative v (none). */
static int64_t uq_round(double v)
{
    return v < 0 ? -1 : (int64_t)(v + 0.5);
}

static void uq_derive(const kg_usage_sums_t *s, uq_derived_t *d)
{
    if (__builtin_add_overflow(s->prompt_tokens, s->completion_tokens,
                               &d->total_tokens)) {
        d->total_tokens = INT64_MAX;
    }
    d->latency_avg = d->latency_p50 = d->latency_p95 = -1;
    d->latency_max = d->ttft_avg = -1;
    if (s->requests > 0) {
        d->latency_avg =
            uq_round((double)s->latency_ms_sum / (double)s->requests);
        d->latency_p50 = uq_round(kg_usage_sums_quantile(s, 0.50));
        d->latency_p95 = uq_round(kg_usage_sums_quantile(s, 0.95));
        d->latency_max = s->latency_ms_max;
    }
    if (s->ttft_count > 0) {
        d->ttft_avg = uq_round((double)s->ttft_ms_sum / (double)s->ttft_count);
    }
}

static json_t *uq_json_opt(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

/* STATS of s into obj (borrowed); false when out of memory. */
static bool uq_stats_json(json_t *obj, const kg_usage_sums_t *s)
{
    char money[KG_MONEY_STRLEN];
    uq_derived_t d;
    int bad = 0;

    uq_derive(s, &d);
    bad |= json_object_set_new(obj, "requests", json_integer(s->requests));
    bad |= json_object_set_new(obj, "errors", json_integer(s->errors));
    bad |= json_object_set_new(obj, "promptTokens",
                               json_integer(s->prompt_tokens));
    bad |= json_object_set_new(obj, "completionTokens",
                               json_integer(s->completion_tokens));
    bad |= json_object_set_new(obj, "cachedTokens",
                               json_integer(s->cached_tokens));
    bad |=
        json_object_set_new(obj, "totalTokens", json_integer(d.total_tokens));
    bad |= json_object_set_new(
        obj, "cost",
        json_string(kg_money_format(s->cost, money, sizeof(money))));
    bad |= json_object_set_new(obj, "streamed", json_integer(s->streamed));
    bad |= json_object_set_new(obj, "latencyMsAvg", uq_json_opt(d.latency_avg));
    bad |= json_object_set_new(obj, "latencyMsP50", uq_json_opt(d.latency_p50));
    bad |= json_object_set_new(obj, "latencyMsP95", uq_json_opt(d.latency_p95));
    bad |= json_object_set_new(obj, "latencyMsMax", uq_json_opt(d.latency_max));
    bad |= json_object_set_new(obj, "ttftMsAvg", uq_json_opt(d.ttft_avg));
    return bad == 0;
}

static json_t *uq_json_str(const char *s)
{
    return s[0] == '\0' ? json_null() : json_string(s);
}

static json_t *uq_json_time(int64_t t)
{
    char buf[KG_TIME_STRLEN];

    return json_string(kg_time_format(t, buf, sizeof(buf)));
}

/* {"group", "totals", "series"} of one group (new), or NULL. */
static json_t *uq_series_json(const kg_usage_result_t *r,
                              const kg_usage_series_t *s)
{
    json_t *totals = json_object();
    json_t *series = json_array();
    json_t *g = NULL;
    bool ok =
        totals != NULL && series != NULL && uq_stats_json(totals, &s->totals);

    for (size_t b = 0; ok && b < r->nbuckets; b++) {
        json_t *pt = json_pack("{s:o}", "start", uq_json_time(r->starts[b]));

        ok = pt != NULL && uq_stats_json(pt, &s->buckets[b]) &&
             json_array_append_new(series, pt) == 0;
        if (pt != NULL && !ok) {
            json_decref(pt);
        }
    }
    if (ok) {
        g = json_pack("{s:o, s:o, s:o}", "group",
                      r->query.group == KG_USAGE_GROUP_NONE
                          ? json_null()
                          : json_string(s->name),
                      "totals", totals, "series", series);
        totals = series = NULL; /* stolen by json_pack, even on failure */
    }
    json_decref(totals);
    json_decref(series);
    return g;
}

json_t *kg_usage_result_to_json(const kg_usage_result_t *r)
{
    const kg_usage_filter_t *f = &r->query.filter;
    json_t *totals = json_object();
    json_t *groups = json_array();
    json_t *j = NULL;
    bool ok =
        totals != NULL && groups != NULL && uq_stats_json(totals, &r->totals);

    for (size_t i = 0; ok && i < r->ngroups; i++) {
        json_t *g = uq_series_json(r, &r->groups[i]);

        ok = g != NULL && json_array_append_new(groups, g) == 0;
    }
    if (ok) {
        j = json_pack(
            "{s:o, s:o, s:s, s:s, s:{s:o, s:o, s:o, s:o}, s:o, "
            "s:o}",
            "from", uq_json_time(f->from), "to", uq_json_time(f->to), "bucket",
            kg_usage_bucket_name(r->query.bucket), "groupBy",
            kg_usage_group_name(r->query.group), "filter", "keyId",
            uq_json_str(f->key_id), "workspaceId", uq_json_str(f->workspace_id),
            "model", uq_json_str(f->model), "provider",
            uq_json_str(f->provider), "totals", totals, "groups", groups);
        totals = groups = NULL;
    }
    json_decref(totals);
    json_decref(groups);
    return j;
}

static const char *const uq_stats_columns[] = {
    "requests",     "errors",       "promptTokens", "completionTokens",
    "cachedTokens", "totalTokens",  "cost",         "streamed",
    "latencyMsAvg", "latencyMsP50", "latencyMsP95", "latencyMsMax",
    "ttftMsAvg",
};

/* Write the names into buf as one CSV line; its length or 0. */
static size_t uq_csv_names(const char *const *names, size_t n, char *buf,
                           size_t len)
{
    size_t pos = 0;

    for (size_t i = 0; i < n; i++) {
        if (!kg_query_csv_field(buf, len, &pos, names[i], i == 0)) {
            return 0;
        }
    }
    return kg_query_csv_end(buf, len, &pos) ? pos : 0;
}

size_t kg_usage_result_csv_header(char *buf, size_t len)
{
    const char *names[2 + sizeof(uq_stats_columns) / sizeof(char *)];
    size_t n = 0;

    names[n++] = "group";
    names[n++] = "start";
    for (size_t i = 0; i < sizeof(uq_stats_columns) / sizeof(char *); i++) {
        names[n++] = uq_stats_columns[i];
    }
    return uq_csv_names(names, n, buf, len);
}

/* An optional integer: empty for -1. */
static bool uq_csv_opt(char *buf, size_t len, size_t *pos, int64_t v)
{
    return v < 0 ? kg_query_csv_field(buf, len, pos, "", false)
                 : kg_query_csv_int(buf, len, pos, v, false);
}

size_t kg_usage_result_csv_row(const kg_usage_result_t *r, size_t group,
                               size_t bucket, char *buf, size_t len)
{
    const kg_usage_sums_t *s;
    char t[KG_TIME_STRLEN];
    char money[KG_MONEY_STRLEN];
    uq_derived_t d;
    size_t pos = 0;
    bool ok;

    if (group >= r->ngroups || bucket >= r->nbuckets) {
        return 0;
    }
    s = &r->groups[group].buckets[bucket];
    uq_derive(s, &d);
    ok = kg_query_csv_field(buf, len, &pos, r->groups[group].name, true) &&
         kg_query_csv_field(buf, len, &pos,
                            kg_time_format(r->starts[bucket], t, sizeof(t)),
                            false) &&
         kg_query_csv_int(buf, len, &pos, s->requests, false) &&
         kg_query_csv_int(buf, len, &pos, s->errors, false) &&
         kg_query_csv_int(buf, len, &pos, s->prompt_tokens, false) &&
         kg_query_csv_int(buf, len, &pos, s->completion_tokens, false) &&
         kg_query_csv_int(buf, len, &pos, s->cached_tokens, false) &&
         kg_query_csv_int(buf, len, &pos, d.total_tokens, false) &&
         kg_query_csv_field(buf, len, &pos,
                            kg_money_format(s->cost, money, sizeof(money)),
                            false) &&
         kg_query_csv_int(buf, len, &pos, s->streamed, false) &&
         uq_csv_opt(buf, len, &pos, d.latency_avg) &&
         uq_csv_opt(buf, len, &pos, d.latency_p50) &&
         uq_csv_opt(buf, len, &pos, d.latency_p95) &&
         uq_csv_opt(buf, len, &pos, d.latency_max) &&
         uq_csv_opt(buf, len, &pos, d.ttft_avg) &&
         kg_query_csv_end(buf, len, &pos);
    return ok ? pos : 0;
}

/* ---- usage events -------------------------------------------------------- */

/* The scope of an events cursor: the filters but not the range. */
static uint32_t uq_events_scope(const kg_usage_events_filter_t *f)
{
    uint32_t h = KG_QUERY_SCOPE_INIT;

    h = kg_query_scope_str(h, f->base.key_id);
    h = kg_query_scope_str(h, f->base.workspace_id);
    h = kg_query_scope_str(h, f->base.model);
    h = kg_query_scope_str(h, f->base.provider);
    h = kg_query_scope_int(h, f->status_min);
    return kg_query_scope_int(h, f->status_max);
}

kg_err_t kg_usage_events_page(kg_store_t *store,
                              const kg_usage_events_query_t *q,
                              kg_usage_record_t **events, size_t *count,
                              char next_cursor[KG_QUERY_CURSOR_STRLEN],
                              kg_diag_t *diag)
{
    kg_usage_events_filter_t f = q->filter;
    kg_usage_record_t *arr = NULL;
    int64_t at = INT64_MAX;
    int64_t id = INT64_MAX;
    uint32_t scope;
    size_t n = 0;
    kg_err_t rc;

    *events = NULL;
    *count = 0;
    next_cursor[0] = '\0';
    if (q->limit < 1 || q->limit > KG_USAGE_EVENTS_LIMIT_MAX) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "limit: from 1 to %d",
                            KG_USAGE_EVENTS_LIMIT_MAX);
    }
    rc = uq_resolve_workspace(store, q->workspace, f.base.workspace_id, diag);
    scope = uq_events_scope(&f);
    if (rc == KG_OK && q->cursor[0] != '\0') {
        rc = kg_query_cursor_decode(q->cursor, KG_QUERY_CURSOR_EVENTS, scope,
                                    &at, &id, diag);
    }
    if (rc != KG_OK) {
        return rc;
    }
    /* One more than asked: whether another page follows. */
    arr = calloc(q->limit + 1, sizeof(*arr));
    if (arr == NULL) {
        return KG_ERR_NOMEM;
    }
    rc = kg_store_usage_events_page(store, &f, at, id, q->limit + 1, arr, &n,
                                    diag);
    if (rc == KG_OK && n > q->limit) {
        n = q->limit;
        kg_query_cursor_encode(KG_QUERY_CURSOR_EVENTS, arr[n - 1].at_ms,
                               arr[n - 1].id, scope, next_cursor);
    }
    if (rc != KG_OK || n == 0) {
        free(arr);
        return rc;
    }
    *events = arr;
    *count = n;
    return KG_OK;
}

json_t *kg_usage_event_to_json(const kg_usage_record_t *ev)
{
    char at[KG_TIME_STRLEN];
    char money[KG_MONEY_STRLEN];
    int64_t total;

    if (__builtin_add_overflow(ev->prompt_tokens, ev->completion_tokens,
                               &total)) {
        total = INT64_MAX;
    }
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:I, s:I, "
        "s:s, s:I, s:o, s:b, s:s, s:o}",
        "requestId", ev->request_id, "at",
        kg_time_format_ms(ev->at_ms, at, sizeof(at)), "keyId", ev->key_id,
        "workspaceId", ev->workspace_id, "operation", ev->operation, "model",
        ev->model, "provider", ev->provider, "mode", ev->mode, "status",
        ev->status, "promptTokens", (json_int_t)ev->prompt_tokens,
        "completionTokens", (json_int_t)ev->completion_tokens, "cachedTokens",
        (json_int_t)ev->cached_tokens, "totalTokens", (json_int_t)total, "cost",
        kg_money_format(ev->cost, money, sizeof(money)), "latencyMs",
        (json_int_t)ev->latency_ms, "ttftMs", uq_json_opt(ev->ttft_ms),
        "streamed", ev->streamed ? 1 : 0, "clientIp", ev->client_ip,
        "errorCode", uq_json_str(ev->error_code));
}

/* kg_query_page_json's item function. */
static json_t *uq_item_json(const void *item)
{
    return kg_usage_event_to_json(item);
}

json_t *kg_usage_events_to_json(const kg_usage_record_t *events, size_t n,
                                const char *next_cursor)
{
    return kg_query_page_json(events, n, sizeof(*events), uq_item_json,
                              next_cursor);
}

static const char *const uq_event_columns[] = {
    "requestId",
    "at",
    "keyId",
    "workspaceId",
    "operation",
    "model",
    "provider",
    "mode",
    "status",
    "promptTokens",
    "completionTokens",
    "cachedTokens",
    "totalTokens",
    "cost",
    "latencyMs",
    "ttftMs",
    "streamed",
    "clientIp",
    "errorCode",
};

size_t kg_usage_event_csv_header(char *buf, size_t len)
{
    return uq_csv_names(uq_event_columns,
                        sizeof(uq_event_columns) / sizeof(*uq_event_columns),
                        buf, len);
}

size_t kg_usage_event_csv_row(const kg_usage_record_t *ev, char *buf,
                              size_t len)
{
    char at[KG_TIME_STRLEN];
    char money[KG_MONEY_STRLEN];
    size_t pos = 0;
    int64_t total;
    bool ok;

    if (__builtin_add_overflow(ev->prompt_tokens, ev->completion_tokens,
                               &total)) {
        total = INT64_MAX;
    }
    ok = kg_query_csv_field(buf, len, &pos, ev->request_id, true) &&
         kg_query_csv_field(buf, len, &pos,
                            kg_time_format_ms(ev->at_ms, at, sizeof(at)),
                            false) &&
         kg_query_csv_field(buf, len, &pos, ev->key_id, false) &&
         kg_query_csv_field(buf, len, &pos, ev->workspace_id, false) &&
         kg_query_csv_field(buf, len, &pos, ev->operation, false) &&
         kg_query_csv_field(buf, len, &pos, ev->model, false) &&
         kg_query_csv_field(buf, len, &pos, ev->provider, false) &&
         kg_query_csv_field(buf, len, &pos, ev->mode, false) &&
         kg_query_csv_int(buf, len, &pos, ev->status, false) &&
         kg_query_csv_int(buf, len, &pos, ev->prompt_tokens, false) &&
         kg_query_csv_int(buf, len, &pos, ev->completion_tokens, false) &&
         kg_query_csv_int(buf, len, &pos, ev->cached_tokens, false) &&
         kg_query_csv_int(buf, len, &pos, total, false) &&
         kg_query_csv_field(buf, len, &pos,
                            kg_money_format(ev->cost, money, sizeof(money)),
                            false) &&
         kg_query_csv_int(buf, len, &pos, ev->latency_ms, false) &&
         uq_csv_opt(buf, len, &pos, ev->ttft_ms) &&
         kg_query_csv_field(buf, len, &pos, ev->streamed ? "true" : "false",
                            false) &&
         kg_query_csv_field(buf, len, &pos, ev->client_ip, false) &&
         kg_query_csv_field(buf, len, &pos, ev->error_code, false) &&
         kg_query_csv_end(buf, len, &pos);
    return ok ? pos : 0;
}
