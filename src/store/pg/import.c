/* Copies a SQLite store into PostgreSQL with COPY, verified before commit. */
#include "keygate/store_import.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg/pg_store.h"
#include "store/sqlite/sqlite_store.h"

/* Longest COPY line kept before it is sent (a row is sent whole anyway). */
#define IMPORT_LINE_START 4096

static const char *const import_tables[KG_STORE_IMPORT_NTABLES] = {
    "workspaces",   "api_keys",     "key_secrets",  "workspace_credentials",
    "admin_tokens", "audit_events", "usage_events", "usage_rollup",
};

/* A growable line of COPY's text format. */
typedef struct import_line {
    char *p;
    size_t len, cap;
} import_line_t;

static int line_put(import_line_t *l, const char *s, size_t n)
{
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : IMPORT_LINE_START;
        char *grown;

        while (cap < l->len + n + 1) {
            cap *= 2;
        }
        grown = realloc(l->p, cap);
        if (grown == NULL) {
            return -1;
        }
        l->p = grown;
        l->cap = cap;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
    return 0;
}

/* One value in COPY's text format: \N, an integer, escaped text, or a
 * bytea as "\\x" and hex digits. */
static int line_value(import_line_t *l, sqlite3_stmt *st, int col)
{
    char num[32];
    int rc = 0;

    switch (sqlite3_column_type(st, col)) {
    case SQLITE_NULL:
        return line_put(l, "\\N", 2);
    case SQLITE_INTEGER:
        snprintf(num, sizeof(num), "%lld",
                 (long long)sqlite3_column_int64(st, col));
        return line_put(l, num, strlen(num));
    case SQLITE_BLOB: {
        const unsigned char *b = sqlite3_column_blob(st, col);
        int n = sqlite3_column_bytes(st, col);
        static const char hex[] = "0123456789abcdef";

        rc = line_put(l, "\\\\x", 3);
        for (int i = 0; rc == 0 && i < n; i++) {
            char pair[2] = {hex[b[i] >> 4], hex[b[i] & 15]};

            rc = line_put(l, pair, 2);
        }
        return rc;
    }
    default: {
        const unsigned char *t = sqlite3_column_text(st, col);
        int n = sqlite3_column_bytes(st, col);

        for (int i = 0; rc == 0 && i < n; i++) {
            switch (t[i]) {
            case '\\':
                rc = line_put(l, "\\\\", 2);
                break;
            case '\n':
                rc = line_put(l, "\\n", 2);
                break;
            case '\r':
                rc = line_put(l, "\\r", 2);
                break;
            case '\t':
                rc = line_put(l, "\\t", 2);
                break;
            default:
                rc = line_put(l, (const char *)&t[i], 1);
            }
        }
        return rc;
    }
    }
}

/* "COPY table (columns) FROM STDIN" for the columns of st. */
static int import_copy_sql(const char *table, sqlite3_stmt *st, char *out,
                           size_t len)
{
    size_t used = (size_t)snprintf(out, len, "COPY %s (", table);

    for (int c = 0; c < sqlite3_column_count(st) && used < len; c++) {
        used += (size_t)snprintf(out + used, len - used, "%s%s", c ? ", " : "",
                                 sqlite3_column_name(st, c));
    }
    if (used < len) {
        used += (size_t)snprintf(out + used, len - used, ") FROM STDIN");
    }
    return used < len ? 0 : -1;
}

/* Stream one table's rows from SQLite into COPY on the target. */
static kg_err_t import_table(kg_store_t *src, kg_store_t *dst,
                             const char *table, int64_t *rows, kg_diag_t *diag)
{
    PGconn *conn = kg_pg_conn(dst);
    import_line_t line = {0};
    sqlite3_stmt *st = NULL;
    PGresult *res = NULL;
    char sql[1024];
    kg_err_t rc = KG_OK;
    int s;

    *rows = 0;
    snprintf(sql, sizeof(sql), "SELECT * FROM %s", table);
    s = sqlite3_prepare_v2(kg_sqlite_db(src), sql, -1, &st, NULL);
    if (s != SQLITE_OK) {
        return kg_sqlite_error(src, s, "reading the source", diag);
    }
    if (import_copy_sql(table, st, sql, sizeof(sql)) != 0) {
        sqlite3_finalize(st);
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "%s: too many columns",
                            table);
    }
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        rc = kg_diag_fail(diag, KG_ERR_STORE, "%s: copying %s: %s",
                          kg_store_path(dst), table, PQerrorMessage(conn));
        PQclear(res);
        sqlite3_finalize(st);
        return rc;
    }
    PQclear(res);
    while (rc == KG_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        int ok = 0;

        line.len = 0;
        for (int c = 0; ok == 0 && c < sqlite3_column_count(st); c++) {
            ok = (c ? line_put(&line, "\t", 1) : 0) || line_value(&line, st, c);
        }
        if (ok == 0) {
            ok = line_put(&line, "\n", 1);
        }
        if (ok != 0) {
            rc = KG_ERR_NOMEM;
        } else if (PQputCopyData(conn, line.p, (int)line.len) != 1) {
            rc = kg_diag_fail(diag, KG_ERR_STORE, "%s: copying %s: %s",
                              kg_store_path(dst), table, PQerrorMessage(conn));
        } else {
            (*rows)++;
        }
    }
    if (rc == KG_OK && s != SQLITE_DONE) {
        rc = kg_sqlite_error(src, s, "reading the source", diag);
    }
    /* End the COPY in any case, failing it when the copy failed. */
    PQputCopyEnd(conn, rc == KG_OK ? NULL : "keygate: source read failed");
    while ((res = PQgetResult(conn)) != NULL) {
        if (rc == KG_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
            const char *why = PQresultErrorField(res, PG_DIAG_SQLSTATE);

            rc = kg_diag_fail(diag, KG_ERR_STORE, "%s: copying %s: SQLSTATE %s",
                              kg_store_path(dst), table, why ? why : "?");
        }
        PQclear(res);
    }
    sqlite3_finalize(st);
    free(line.p);
    return rc;
}

/* A single integer from a fixed query on the target. */
static kg_err_t import_pg_int(kg_store_t *dst, const char *sql, int64_t *out,
                              kg_diag_t *diag)
{
    PGresult *res = PQexec(kg_pg_conn(dst), sql);
    kg_err_t rc = KG_OK;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = kg_diag_fail(diag, KG_ERR_STORE, "%s: verifying the copy: %s",
                          kg_store_path(dst), PQerrorMessage(kg_pg_conn(dst)));
    } else {
        *out = kg_pg_col_int(res, 0, 0);
    }
    PQclear(res);
    return rc;
}

/* The rows of table on the source. */
static kg_err_t import_sqlite_count(kg_store_t *src, const char *table,
                                    int64_t *out, kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    char sql[128];
    int s;

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    s = sqlite3_prepare_v2(kg_sqlite_db(src), sql, -1, &st, NULL);
    if (s == SQLITE_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        s = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return kg_sqlite_error(src, s, "counting the source", diag);
}

static const char import_sql_secret[] =
    "SELECT count(*) FROM key_secrets WHERE key_id = $1 AND hash = $2";
static const char import_sql_cred[] =
    "SELECT count(*) FROM workspace_credentials WHERE workspace_id = $1 AND "
    "provider = $2 AND nonce = $3 AND ciphertext = $4";

/* Random secrets and credentials of the source, each found in the target
 * byte for byte. */
static kg_err_t import_sample(kg_store_t *src, kg_store_t *dst, int cred,
                              int64_t *sampled, kg_diag_t *diag)
{
    const char *pick =
        cred ? "SELECT workspace_id, provider, nonce, ciphertext FROM "
               "workspace_credentials ORDER BY random() LIMIT ?"
             : "SELECT key_id, hash FROM key_secrets ORDER BY random() "
               "LIMIT ?";
    sqlite3_stmt *st = NULL;
    kg_err_t rc = KG_OK;
    int s = sqlite3_prepare_v2(kg_sqlite_db(src), pick, -1, &st, NULL);

    if (s == SQLITE_OK) {
        sqlite3_bind_int(st, 1, KG_STORE_IMPORT_SAMPLE);
    }
    while (rc == KG_OK && s == SQLITE_OK &&
           (s = sqlite3_step(st)) == SQLITE_ROW) {
        kg_pg_params_t p = {0};
        PGresult *res = NULL;

        s = SQLITE_OK;
        kg_pg_param_text(&p, (const char *)sqlite3_column_text(st, 0));
        if (cred) {
            kg_pg_param_text(&p, (const char *)sqlite3_column_text(st, 1));
        }
        for (int c = cred ? 2 : 1; c < sqlite3_column_count(st); c++) {
            kg_pg_param_bytes(&p, sqlite3_column_blob(st, c),
                              (size_t)sqlite3_column_bytes(st, c));
        }
        rc = kg_pg_query(dst, cred ? import_sql_cred : import_sql_secret, &p,
                         &res, "verifying the copy", diag);
        if (rc == KG_OK && kg_pg_col_int(res, 0, 0) != 1) {
            rc = kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                              "%s: verifying the copy: a %s differs",
                              kg_store_path(dst),
                              cred ? "workspace credential" : "key secret");
        }
        PQclear(res);
        (*sampled)++;
    }
    if (rc == KG_OK && s != SQLITE_DONE && s != SQLITE_OK) {
        rc = kg_sqlite_error(src, s, "reading the source", diag);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Identity sequences continue after the ids copied. */
static const char import_sql_sequences[] =
    "SELECT setval(pg_get_serial_sequence('audit_events', 'id'), "
    "  COALESCE((SELECT max(id) FROM audit_events), 0) + 1, false), "
    "setval(pg_get_serial_sequence('usage_events', 'id'), "
    "  COALESCE((SELECT max(id) FROM usage_events), 0) + 1, false)";

/* Copy and verify inside the target's open transaction. */
static kg_err_t import_all(kg_store_t *src, kg_store_t *dst,
                           kg_store_import_report_t *r, kg_diag_t *diag)
{
    int64_t n = 0;
    kg_err_t rc =
        import_pg_int(dst, "SELECT count(*) FROM workspaces", &n, diag);

    if (rc == KG_OK && n > 0) {
        return kg_diag_fail(diag, KG_ERR_EXISTS,
                            "%s already holds a store (%" PRId64
                            " workspaces): nothing copied",
                            kg_store_path(dst), n);
    }
    for (size_t i = 0; rc == KG_OK && i < KG_STORE_IMPORT_NTABLES; i++) {
        char sql[96];

        r->tables[i].table = import_tables[i];
        rc = import_table(src, dst, import_tables[i], &n, diag);
        if (rc == KG_OK) {
            rc = import_sqlite_count(src, import_tables[i],
                                     &r->tables[i].source_rows, diag);
        }
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", import_tables[i]);
        if (rc == KG_OK) {
            rc = import_pg_int(dst, sql, &r->tables[i].target_rows, diag);
        }
        if (rc == KG_OK &&
            (r->tables[i].target_rows != n || r->tables[i].source_rows != n)) {
            rc = kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                              "%s: verifying the copy: %s has %" PRId64
                              " rows in the source, %" PRId64 " copied",
                              kg_store_path(dst), import_tables[i],
                              r->tables[i].source_rows,
                              r->tables[i].target_rows);
        }
    }
    if (rc == KG_OK) {
        rc = import_pg_int(dst, import_sql_sequences, &n, diag);
    }
    if (rc == KG_OK) {
        rc = import_sample(src, dst, 0, &r->sampled, diag);
    }
    if (rc == KG_OK) {
        rc = import_sample(src, dst, 1, &r->sampled, diag);
    }
    if (rc == KG_OK) {
        rc = import_pg_int(dst,
                           "UPDATE key_revision SET rev = rev + 1 WHERE id = 1 "
                           "RETURNING rev",
                           &r->revision, diag);
    }
    return rc;
}

kg_err_t kg_store_import_sqlite(const char *sqlite_path, const char *pg_url,
                                kg_store_import_report_t *report,
                                kg_diag_t *diag)
{
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_store_t *src = NULL, *dst = NULL;
    kg_err_t rc;

    memset(report, 0, sizeof(*report));
    if (strncmp(pg_url, "postgres", 8) != 0) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "--to must be a postgresql:// URL");
    }
    rc = kg_store_open(sqlite_path, &opts, &src, diag);
    if (rc == KG_OK && strcmp(kg_store_backend_name(src), "sqlite") != 0) {
        rc = kg_diag_fail(diag, KG_ERR_INVAL,
                          "--from must be a SQLite store file");
    }
    if (rc == KG_OK) {
        rc = kg_store_open(pg_url, &opts, &dst, diag);
    }
    /* A read transaction on the source: one consistent snapshot. */
    if (rc == KG_OK) {
        int s = sqlite3_exec(kg_sqlite_db(src), "BEGIN", NULL, NULL, NULL);

        rc = kg_sqlite_error(src, s, "reading the source", diag);
    }
    if (rc == KG_OK) {
        rc = kg_store_begin(dst, diag);
        if (rc == KG_OK) {
            rc = import_all(src, dst, report, diag);
            if (rc == KG_OK) {
                rc = kg_store_commit(dst, diag);
            } else {
                kg_store_rollback(dst);
            }
        }
        sqlite3_exec(kg_sqlite_db(src), "ROLLBACK", NULL, NULL, NULL);
    }
    kg_store_close(&src);
    kg_store_close(&dst);
    return rc;
}
