/* Admin API: usage over time, the request history (CSV too), the audit log. */
#include "admin_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "keygate/audit.h"
#include "keygate/clock.h"
#include "keygate/query.h"
#include "keygate/usage_query.h"

/* Bytes handed to libmicrohttpd per call of a CSV stream's reader. */
#define ADMIN_CSV_BLOCK (64 * 1024)

/* The query arguments as name/value pairs, "format" left out. */
typedef struct admin_params {
    kg_query_param_t p[KG_QUERY_PARAMS_MAX];
    size_t n;
    bool too_many;
} admin_params_t;

static enum MHD_Result admin_collect(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value)
{
    admin_params_t *ap = cls;

    (void)kind;
    if (strcmp(key, "format") == 0) {
        return MHD_YES;
    }
    if (ap->n == KG_QUERY_PARAMS_MAX) {
        ap->too_many = true;
        return MHD_NO;
    }
    ap->p[ap->n].name = key;
    ap->p[ap->n].value = value ? value : "";
    ap->n++;
    return MHD_YES;
}

/* Collect the arguments; false when there are too many (answered). */
static bool admin_params(admin_ctx_t *c, admin_params_t *ap)
{
    memset(ap, 0, sizeof(*ap));
    MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, admin_collect,
                              ap);
    if (ap->too_many) {
        admin_reply_error(c, KG_ERR_INVAL, "too many query arguments", NULL);
        return false;
    }
    return true;
}

/* The parameter a query library's diag is about ("key: ..."), or NULL. */
static const char *admin_param_of(const kg_diag_t *diag, char *buf, size_t len)
{
    size_t n = strcspn(diag->msg, ": ");

    if (n == 0 || n >= len || diag->msg[n] != ':') {
        return NULL;
    }
    memcpy(buf, diag->msg, n);
    buf[n] = '\0';
    return buf;
}

static void admin_query_fail(admin_ctx_t *c, kg_err_t rc, const kg_diag_t *diag,
                             const char *fallback)
{
    char param[32];
    const char *p = admin_param_of(diag, param, sizeof(param));

    admin_reply_fail(c, rc, diag, p ? p : fallback);
}

/* CSV asked for: ?format=csv, or Accept: text/csv. false when format is
 * something else (answered). */
static bool admin_wants_csv(admin_ctx_t *c, bool *csv)
{
    const char *format = admin_arg(c, "format");
    const char *accept =
        MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Accept");

    *csv = false;
    if (format != NULL) {
        if (strcmp(format, "csv") == 0) {
            *csv = true;
        } else if (strcmp(format, "json") != 0) {
            admin_reply_error(c, KG_ERR_INVAL, "format: json or csv", "format");
            return false;
        }
        return true;
    }
    *csv = accept != NULL && strncasecmp(accept, "text/csv", 8) == 0;
    return true;
}

static struct MHD_Response *admin_csv_response(struct MHD_Response *resp,
                                               const char *filename)
{
    char disp[96];

    if (resp != NULL) {
        snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", filename);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/csv; charset=utf-8");
        MHD_add_response_header(resp, "Content-Disposition", disp);
    }
    return resp;
}

/* ---- usage over time --------------------------------------------------- */

/* The whole series as CSV: bounded by the query's own limits. */
static void admin_usage_csv(admin_ctx_t *c, const kg_usage_result_t *res)
{
    kg_buf_t b;
    char row[KG_USAGE_CSV_ROW_MAX];
    size_t n = kg_usage_result_csv_header(row, sizeof(row));
    bool ok;
    char *text;
    size_t len = 0;

    kg_buf_init(&b, (size_t)KG_USAGE_POINTS_MAX * KG_USAGE_CSV_ROW_MAX);
    ok = n > 0 && kg_buf_append(&b, row, n) == KG_OK;
    for (size_t g = 0; ok && g < res->ngroups; g++) {
        for (size_t i = 0; ok && i < res->nbuckets; i++) {
            n = kg_usage_result_csv_row(res, g, i, row, sizeof(row));
            ok = n > 0 && kg_buf_append(&b, row, n) == KG_OK;
        }
    }
    if (!ok) {
        kg_buf_free(&b);
        admin_reply_error(c, KG_ERR_INTERNAL, NULL, NULL);
        return;
    }
    text = kg_buf_steal(&b, &len);
    admin_reply_response(c, MHD_HTTP_OK,
                         admin_csv_response(MHD_create_response_from_buffer(
                                                len, text ? text : (char *)"",
                                                text ? MHD_RESPMEM_MUST_FREE
                                                     : MHD_RESPMEM_PERSISTENT),
                                            "keygate-usage.csv"));
}

void admin_h_usage(admin_ctx_t *c)
{
    admin_params_t ap;
    kg_usage_query_t q;
    kg_usage_result_t *res = NULL;
    kg_diag_t diag = {{0}};
    bool csv = false;
    kg_err_t rc;

    if (!admin_params(c, &ap) || !admin_wants_csv(c, &csv)) {
        return;
    }
    rc = kg_usage_query_parse(ap.p, ap.n, kg_clock_now(), &q, &diag);
    if (rc == KG_OK) {
        rc = kg_usage_query_run(c->store, &q, &res, &diag);
    }
    if (rc != KG_OK) {
        admin_query_fail(c, rc, &diag,
                         rc == KG_ERR_NOT_FOUND ? "workspace" : NULL);
        return;
    }
    if (csv) {
        admin_usage_csv(c, res);
    } else {
        admin_reply_json(c, MHD_HTTP_OK, kg_usage_result_to_json(res));
    }
    kg_usage_result_free(&res);
}

/* ---- the request history ----------------------------------------------- */

/*
 * A CSV export being streamed: page after page of the same query, each
 * read with a store connection taken for that page only, so the export
 * holds one page in memory whatever its size.
 */
typedef struct admin_csv_stream {
    kg_admin_t *admin;
    kg_usage_events_query_t q;
    char *buf; /* one page of rows */
    size_t len;
    size_t off;
    bool header_done;
    bool last_page;
    bool failed;
    char request_id[ADMIN_REQUEST_ID_LEN];
} admin_csv_stream_t;

/* Refill s->buf: the header first, then the next page's rows. */
static void admin_csv_fill(admin_csv_stream_t *s)
{
    kg_usage_record_t *events = NULL;
    char next[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};
    size_t count = 0;
    kg_store_t *store;
    kg_err_t rc;

    s->len = 0;
    s->off = 0;
    if (!s->header_done) {
        s->len = kg_usage_event_csv_header(s->buf, KG_USAGE_CSV_ROW_MAX);
        s->header_done = true;
    }
    if (s->last_page) {
        return;
    }
    store = admin_store_take(s->admin);
    rc = kg_usage_events_page(store, &s->q, &events, &count, next, &diag);
    admin_store_give(s->admin, store);
    if (rc != KG_OK) {
        KG_ERROR("admin request %s: CSV export cut: %s", s->request_id,
                 diag.msg);
        s->failed = true;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        s->len += kg_usage_event_csv_row(&events[i], s->buf + s->len,
                                         KG_USAGE_CSV_ROW_MAX);
    }
    free(events);
    memcpy(s->q.cursor, next, sizeof(s->q.cursor));
    s->last_page = next[0] == '\0';
}

static ssize_t admin_csv_read(void *cls, uint64_t pos, char *out, size_t max)
{
    admin_csv_stream_t *s = cls;
    size_t n;

    (void)pos;
    while (s->off == s->len) {
        if (s->failed) {
            /* The stream ends without its last chunk: the client sees an
             * incomplete transfer, never a short export that looks whole. */
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (s->header_done && s->last_page) {
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        admin_csv_fill(s);
    }
    n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void admin_csv_free(void *cls)
{
    admin_csv_stream_t *s = cls;

    free(s->buf);
    free(s);
}

static void admin_events_csv(admin_ctx_t *c, const kg_usage_events_query_t *q)
{
    admin_csv_stream_t *s = calloc(1, sizeof(*s));
    struct MHD_Response *resp;

    if (s != NULL) {
        s->buf = malloc((KG_USAGE_EVENTS_LIMIT_MAX + 1) * KG_USAGE_CSV_ROW_MAX);
    }
    if (s == NULL || s->buf == NULL) {
        if (s != NULL) {
            free(s);
        }
        admin_reply_error(c, KG_ERR_NOMEM, NULL, NULL);
        return;
    }
    s->admin = c->admin;
    s->q = *q;
    s->q.limit = KG_USAGE_EVENTS_LIMIT_MAX; /* page size of the export */
    memcpy(s->request_id, c->request_id, sizeof(s->request_id));
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, ADMIN_CSV_BLOCK,
                                             admin_csv_read, s, admin_csv_free);
    if (resp == NULL) {
        admin_csv_free(s);
    }
    admin_reply_response(c, MHD_HTTP_OK,
                         admin_csv_response(resp, "keygate-requests.csv"));
}

void admin_h_usage_events(admin_ctx_t *c)
{
    admin_params_t ap;
    kg_usage_events_query_t q;
    kg_usage_record_t *events = NULL;
    char next[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};
    json_t *data;
    size_t count = 0;
    bool csv = false;
    kg_err_t rc;

    if (!admin_params(c, &ap) || !admin_wants_csv(c, &csv)) {
        return;
    }
    rc = kg_usage_events_query_parse(ap.p, ap.n, kg_clock_now(), &q, &diag);
    if (rc == KG_OK && csv) {
        /* Check the filters (an unknown workspace is a 404, not an empty
         * file) by reading the first row before the answer starts. */
        kg_usage_events_query_t probe = q;

        probe.limit = 1;
        rc = kg_usage_events_page(c->store, &probe, &events, &count, next,
                                  &diag);
        free(events);
        events = NULL;
        if (rc == KG_OK) {
            admin_events_csv(c, &q);
            return;
        }
    }
    if (rc == KG_OK) {
        rc = kg_usage_events_page(c->store, &q, &events, &count, next, &diag);
    }
    if (rc != KG_OK) {
        admin_query_fail(c, rc, &diag,
                         rc == KG_ERR_NOT_FOUND ? "workspace" : NULL);
        return;
    }
    data = json_array();
    for (size_t i = 0; i < count; i++) {
        json_array_append_new(data, kg_usage_event_to_json(&events[i]));
    }
    free(events);
    admin_reply_json(c, MHD_HTTP_OK,
                     json_pack("{s:s, s:o, s:o}", "object", "list", "data",
                               data, "nextCursor",
                               next[0] ? json_string(next) : json_null()));
}

/* ---- the audit trail --------------------------------------------------- */

void admin_h_audit(admin_ctx_t *c)
{
    admin_params_t ap;
    kg_audit_query_t q;
    kg_audit_event_t *events = NULL;
    char next[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};
    json_t *data;
    size_t count = 0;
    kg_err_t rc;

    if (!admin_params(c, &ap)) {
        return;
    }
    rc = kg_audit_query_parse(ap.p, ap.n, kg_clock_now(), &q, &diag);
    if (rc == KG_OK) {
        rc = kg_audit_page(c->store, &q, &events, &count, next, &diag);
    }
    if (rc != KG_OK) {
        admin_query_fail(c, rc, &diag, NULL);
        return;
    }
    data = json_array();
    for (size_t i = 0; i < count; i++) {
        json_array_append_new(data, kg_audit_event_to_json(&events[i]));
    }
    kg_audit_events_free(&events, count);
    admin_reply_json(c, MHD_HTTP_OK,
                     json_pack("{s:s, s:o, s:o}", "object", "list", "data",
                               data, "nextCursor",
                               next[0] ? json_string(next) : json_null()));
}
