/* The PostgreSQL implementation of the store's API keys, secrets and revision.
 */
#include "keygate/store_keys.h"
#include "store/pg/pg_store.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Keys one touch statement moves: bounds its two array parameters. */
#define PG_TOUCH_CHUNK 1000

/*
 * Ids are compared byte by byte (COLLATE "C"), as SQLite compares text:
 * the database's own collation would order mixed-case ids otherwise.
 * reserved is the sum of the live instances' snapshots (src/store/pg/
 * budget.c), saturated at INT64_MAX: for each key returned, one range of
 * key_reservations' primary key. api_keys.reserved is SQLite's: PostgreSQL
 * neither writes nor reads it.
 */
#define KEY_COLUMNS                                                          \
    "k.id, k.workspace_id, w.name, k.name, k.prefix, k.last4, "              \
    "k.description, k.metadata, k.rules, k.status, k.created_at, "           \
    "k.updated_at, k.last_used_at, k.expires_at, k.usage_limit, k.usage, "   \
    "k.period, k.period_limit, k.period_usage, k.period_started_at, k.rpm, " \
    "k.tpm, k.max_concurrent, (SELECT max(s.expires_at) FROM key_secrets s " \
    "WHERE s.key_id = k.id AND s.expires_at IS NOT NULL), "                  \
    "(SELECT least(coalesce(sum(r.amount), 0), 9223372036854775807)"         \
    "::bigint FROM key_reservations r WHERE r.key_id = k.id "                \
    "AND r.updated_at > " KG_PG_RESERVATION_CUTOFF ") "                      \
    "FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id "

static const char key_sql_get[] = "SELECT " KEY_COLUMNS "WHERE k.id = $1";
/* Inside a transaction a read decides the writes that follow (an update
 * writes every setting it read back, a rotation graces the secret it saw):
 * the row stays locked until the caller's commit, as SQLite's exclusive
 * transaction keeps every other writer out. */
static const char key_sql_get_locked[] =
    "SELECT " KEY_COLUMNS "WHERE k.id = $1 FOR UPDATE OF k";
/* SQLite's instr(lower(name), lower(?)): a plain substring, no wildcards,
 * ASCII letters folded only (lower() under the "C" collation). */
#define KEY_LIST_WHERE                                              \
    "WHERE ($1::text IS NULL OR k.workspace_id = $1) "              \
    "AND ($2::boolean OR k.status <> 'deleted') "                   \
    "AND ($3::text IS NULL OR k.status = $3) "                      \
    "AND ($4::text IS NULL OR strpos(lower(k.name COLLATE \"C\"), " \
    "lower($4 COLLATE \"C\")) > 0) "
static const char key_sql_list[] =
    "SELECT " KEY_COLUMNS KEY_LIST_WHERE
    "AND ($5::bigint IS NULL OR (k.created_at, k.id COLLATE \"C\") > "
    "($5, $6::text)) "
    "ORDER BY k.created_at, k.id COLLATE \"C\" LIMIT $7::bigint";
static const char key_sql_list_newest[] =
    "SELECT " KEY_COLUMNS KEY_LIST_WHERE
    "AND ($5::bigint IS NULL OR (k.created_at, k.id COLLATE \"C\") < "
    "($5, $6::text)) "
    "ORDER BY k.created_at DESC, k.id COLLATE \"C\" DESC LIMIT $7::bigint";
static const char key_sql_insert[] =
    "INSERT INTO api_keys (id, workspace_id, name, description, metadata, "
    "rules, prefix, last4, status, created_at, updated_at, expires_at, "
    "usage_limit, period, period_limit, period_started_at, rpm, tpm, "
    "max_concurrent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, "
    "$10, $11, $12, $13, $14, $15, $16, $17, $18)";
/* The period's spend is written only when it restarts ($9): the usage
 * writer adds to it meanwhile, and the ELSE branch reads the row as it is
 * when updated, never as the caller read it. */
static const char key_sql_update[] =
    "UPDATE api_keys SET name = $1, description = $2, metadata = $3, "
    "rules = $4, expires_at = $5, usage_limit = $6, period = $7, "
    "period_limit = $8, "
    "period_usage = CASE WHEN $9::boolean THEN 0 ELSE period_usage END, "
    "period_started_at = CASE WHEN $9::boolean THEN $10::bigint "
    "ELSE period_started_at END, "
    "rpm = $11, tpm = $12, max_concurrent = $13, updated_at = $14 "
    "WHERE id = $15";
static const char key_sql_status[] =
    "UPDATE api_keys SET status = $1, updated_at = $2 WHERE id = $3";
static const char key_sql_last4[] =
    "UPDATE api_keys SET last4 = $1, updated_at = $2 WHERE id = $3";
static const char key_sql_delete[] = "DELETE FROM api_keys WHERE id = $1";
/* The caller revokes the keys found: they stay locked until its commit,
 * and a key whose expiry another instance moved meanwhile is re-checked
 * and left out. Locked in id order, so two instances purging at once wait
 * for each other instead of deadlocking. */
static const char key_sql_expired[] =
    "SELECT id FROM api_keys WHERE status <> 'deleted' "
    "AND expires_at IS NOT NULL AND expires_at <= $1 "
    "ORDER BY id COLLATE \"C\" LIMIT $2 FOR UPDATE";
/*
 * last_used_at moves forward only (GREATEST, over the latest row when
 * another instance touched it first). One statement a chunk of keys, the
 * latest time of each; rows locked in id order (the chunks too: the caller
 * sorts them), so instances touching the same keys never deadlock. Rows
 * already at or past their time are not written.
 */
static const char key_sql_touch[] =
    "WITH s AS (SELECT u.id, max(u.at) AS at "
    "FROM unnest($1::text[], $2::bigint[]) AS u(id, at) GROUP BY u.id), "
    "l AS (SELECT k.id, s.at FROM api_keys k JOIN s ON s.id = k.id "
    "WHERE k.last_used_at IS NULL OR k.last_used_at < s.at "
    "ORDER BY k.id COLLATE \"C\" FOR UPDATE OF k) "
    "UPDATE api_keys k SET last_used_at = GREATEST(coalesce(k.last_used_at, "
    "0), l.at) FROM l WHERE k.id = l.id";
static const char secret_sql_insert[] =
    "INSERT INTO key_secrets (key_id, hash, created_at) VALUES ($1, $2, $3)";
static const char secret_sql_grace[] =
    "UPDATE key_secrets SET expires_at = $1 WHERE key_id = $2 "
    "AND expires_at IS NULL";
static const char secret_sql_drop_all[] =
    "DELETE FROM key_secrets WHERE key_id = $1";
/* The revision triggers are per statement and fire on no rows too: the
 * periodic purge looks first, so that it moves the revision (and empties
 * every instance's key cache) only when a secret goes. */
static const char secret_sql_any_stale[] =
    "SELECT 1 FROM key_secrets WHERE expires_at IS NOT NULL "
    "AND expires_at <= $1 LIMIT 1";
/* Locked in (key, hash) order: rotations on two instances each drop the
 * same stale rows, and would deadlock taking them in different orders. */
static const char secret_sql_drop_stale[] =
    "WITH l AS (SELECT key_id, hash FROM key_secrets "
    "WHERE expires_at IS NOT NULL AND expires_at <= $1 "
    "ORDER BY key_id COLLATE \"C\", hash FOR UPDATE) "
    "DELETE FROM key_secrets s USING l "
    "WHERE s.key_id = l.key_id AND s.hash = l.hash";
static const char secret_sql_valid[] =
    "SELECT hash, expires_at FROM key_secrets WHERE key_id = $1 "
    "AND (expires_at IS NULL OR expires_at > $2)";
static const char rev_sql_get[] = "SELECT rev FROM key_revision WHERE id = 1";
/*
 * The key cache's load in one statement, so one snapshot: the revision,
 * the key's view (NULLs for an unknown id) and its $2 newest secrets, one
 * row each (one row without). Newest: the current one first, then by end
 * of grace, latest first; ties by hash, as SQLite's primary-key order.
 */
#define VIEW_SECRET_ORDER "expires_at IS NOT NULL, expires_at DESC, hash"
static const char view_sql_load[] =
    "SELECT r.rev, k.id, k.workspace_id, k.name, k.prefix, k.last4, "
    "k.status, k.expires_at, k.usage_limit, k.usage, k.period, "
    "k.period_limit, k.period_usage, k.period_started_at, k.rpm, k.tpm, "
    "k.max_concurrent, s.hash, s.expires_at "
    "FROM key_revision r LEFT JOIN api_keys k ON k.id = $1 "
    "LEFT JOIN LATERAL (SELECT hash, expires_at FROM key_secrets "
    "WHERE key_id = k.id ORDER BY " VIEW_SECRET_ORDER
    " LIMIT $2) s ON true WHERE r.id = 1 "
    "ORDER BY s.expires_at IS NOT NULL, s.expires_at DESC, s.hash";

/* Copy text column col of row into dst of size bytes, cut to fit. */
static void key_col_copy(const PGresult *res, int row, int col, char *dst,
                         size_t size)
{
    const char *t = kg_pg_col_text(res, row, col);
    size_t n = strnlen(t, size - 1);

    memcpy(dst, t, n);
    dst[n] = '\0';
}

/* A new copy of text column col in *slot. */
static kg_err_t key_col_dup(const PGresult *res, int row, int col, char **slot)
{
    *slot = strdup(kg_pg_col_text(res, row, col));
    return *slot != NULL ? KG_OK : KG_ERR_NOMEM;
}

/* A status column: an unknown text never grants access. */
static kg_key_status_t key_col_status(const PGresult *res, int row, int col)
{
    kg_key_status_t status;

    if (!kg_key_status_parse(kg_pg_col_text(res, row, col), &status)) {
        status = KG_KEY_DELETED;
    }
    return status;
}

static kg_period_t key_col_period(const PGresult *res, int row, int col)
{
    kg_period_t period;

    if (!kg_period_parse(kg_pg_col_text(res, row, col), &period)) {
        period = KG_PERIOD_NONE;
    }
    return period;
}

/* The stored text of a period: NULL without one. */
static const char *key_period_text(kg_period_t period)
{
    return period != KG_PERIOD_NONE ? kg_period_name(period) : NULL;
}

/* Row row of KEY_COLUMNS into *k; its strings are new (kg_key_clear). */
static kg_err_t key_from_row(const PGresult *res, int row, kg_key_t *k)
{
    kg_err_t rc = KG_OK;

    memset(k, 0, sizeof(*k));
    key_col_copy(res, row, 0, k->id, sizeof(k->id));
    key_col_copy(res, row, 1, k->workspace_id, sizeof(k->workspace_id));
    key_col_copy(res, row, 2, k->workspace_name, sizeof(k->workspace_name));
    key_col_copy(res, row, 3, k->name, sizeof(k->name));
    key_col_copy(res, row, 4, k->prefix, sizeof(k->prefix));
    key_col_copy(res, row, 5, k->last4, sizeof(k->last4));
    if (key_col_dup(res, row, 6, &k->description) != KG_OK ||
        key_col_dup(res, row, 7, &k->metadata) != KG_OK ||
        key_col_dup(res, row, 8, &k->rules) != KG_OK) {
        rc = KG_ERR_NOMEM;
    }
    k->status = key_col_status(res, row, 9);
    k->created_at = kg_pg_col_int(res, row, 10);
    k->updated_at = kg_pg_col_int(res, row, 11);
    k->last_used_at = kg_pg_col_int(res, row, 12);
    k->expires_at = kg_pg_col_int(res, row, 13);
    k->usage_limit = kg_pg_col_int(res, row, 14);
    k->usage = kg_pg_col_int(res, row, 15);
    k->period = key_col_period(res, row, 16);
    k->period_limit = kg_pg_col_int(res, row, 17);
    k->period_usage = kg_pg_col_int(res, row, 18);
    k->period_started_at = kg_pg_col_int(res, row, 19);
    k->rpm = kg_pg_col_int(res, row, 20);
    k->tpm = kg_pg_col_int(res, row, 21);
    k->max_concurrent = kg_pg_col_int(res, row, 22);
    k->grace_until = kg_pg_col_int(res, row, 23);
    k->reserved = kg_pg_col_int(res, row, 24);
    return rc;
}

static kg_err_t key_get(kg_store_t *store, const char *id, kg_key_t *out,
                        kg_diag_t *diag)
{
    bool in_tx = PQtransactionStatus(kg_pg_conn(store)) != PQTRANS_IDLE;
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    kg_pg_param_text(&p, id);
    rc = kg_pg_query(store, in_tx ? key_sql_get_locked : key_sql_get, &p, &res,
                     "reading a key", diag);
    if (rc == KG_OK) {
        rc = PQntuples(res) == 1 ? key_from_row(res, 0, out) : KG_ERR_NOT_FOUND;
    }
    PQclear(res);
    if (rc != KG_OK) {
        kg_key_clear(out);
    }
    return rc;
}

/* Append the filter of key_sql_list(_newest) to p. */
static void key_param_filter(kg_pg_params_t *p, const kg_key_filter_t *filter)
{
    kg_pg_param_text(p, filter->workspace);
    kg_pg_param_bool(p, filter->include_deleted || filter->status_is_set);
    kg_pg_param_text(
        p, filter->status_is_set ? kg_key_status_name(filter->status) : NULL);
    kg_pg_param_text(p, filter->name_contains && filter->name_contains[0]
                            ? filter->name_contains
                            : NULL);
    if (filter->after_id != NULL) {
        kg_pg_param_int(p, filter->after_created);
    } else {
        kg_pg_param_text(p, NULL);
    }
    kg_pg_param_text(p, filter->after_id);
    kg_pg_param_opt_int(p, filter->limit > 0 ? (int64_t)filter->limit : -1);
}

static kg_err_t key_list(kg_store_t *store, const kg_key_filter_t *filter,
                         kg_key_t **out, size_t *count, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_key_t *arr = NULL;
    size_t n = 0;
    kg_err_t rc;

    *out = NULL;
    *count = 0;
    key_param_filter(&p, filter);
    rc = kg_pg_query(store,
                     filter->newest_first ? key_sql_list_newest : key_sql_list,
                     &p, &res, "listing keys", diag);
    if (rc != KG_OK) {
        return rc;
    }
    if (PQntuples(res) > 0 &&
        (arr = calloc((size_t)PQntuples(res), sizeof(*arr))) == NULL) {
        rc = KG_ERR_NOMEM;
    }
    while (rc == KG_OK && n < (size_t)PQntuples(res)) {
        rc = key_from_row(res, (int)n, &arr[n]);
        n++;
    }
    PQclear(res);
    if (rc != KG_OK) {
        kg_keys_list_free(&arr, n);
        return rc;
    }
    *out = arr;
    *count = n;
    return KG_OK;
}

static kg_err_t key_insert(kg_store_t *store, const kg_key_t *k,
                           kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, k->id);
    kg_pg_param_text(&p, k->workspace_id);
    kg_pg_param_text(&p, k->name);
    kg_pg_param_text(&p, k->description);
    kg_pg_param_text(&p, k->metadata);
    kg_pg_param_text(&p, k->rules);
    kg_pg_param_text(&p, k->prefix);
    kg_pg_param_text(&p, k->last4);
    kg_pg_param_int(&p, k->created_at);
    kg_pg_param_int(&p, k->updated_at);
    kg_pg_param_opt_int(&p, k->expires_at);
    kg_pg_param_opt_int(&p, k->usage_limit);
    kg_pg_param_text(&p, key_period_text(k->period));
    kg_pg_param_opt_int(&p, k->period_limit);
    kg_pg_param_opt_int(&p, k->period_started_at);
    kg_pg_param_opt_int(&p, k->rpm);
    kg_pg_param_opt_int(&p, k->tpm);
    kg_pg_param_opt_int(&p, k->max_concurrent);
    return kg_pg_exec(store, key_sql_insert, &p, NULL, "creating a key", diag);
}

static kg_err_t key_update(kg_store_t *store, const kg_key_t *k,
                           bool reset_period, int64_t now, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, k->name);
    kg_pg_param_text(&p, k->description);
    kg_pg_param_text(&p, k->metadata);
    kg_pg_param_text(&p, k->rules);
    kg_pg_param_opt_int(&p, k->expires_at);
    kg_pg_param_opt_int(&p, k->usage_limit);
    kg_pg_param_text(&p, key_period_text(k->period));
    kg_pg_param_opt_int(&p, k->period_limit);
    kg_pg_param_bool(&p, reset_period);
    kg_pg_param_opt_int(&p, k->period_started_at);
    kg_pg_param_opt_int(&p, k->rpm);
    kg_pg_param_opt_int(&p, k->tpm);
    kg_pg_param_opt_int(&p, k->max_concurrent);
    kg_pg_param_int(&p, now);
    kg_pg_param_text(&p, k->id);
    return kg_pg_exec(store, key_sql_update, &p, NULL, "updating a key", diag);
}

/* Run sql, bound to (text, now, id): a status or last4 change. */
static kg_err_t key_set_text(kg_store_t *store, const char *sql,
                             const char *text, int64_t now, const char *id,
                             const char *action, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, text);
    kg_pg_param_int(&p, now);
    kg_pg_param_text(&p, id);
    return kg_pg_exec(store, sql, &p, NULL, action, diag);
}

static kg_err_t key_set_status(kg_store_t *store, const char *id,
                               kg_key_status_t status, int64_t now,
                               kg_diag_t *diag)
{
    return key_set_text(store, key_sql_status, kg_key_status_name(status), now,
                        id, "changing a key's status", diag);
}

static kg_err_t key_set_last4(kg_store_t *store, const char *id,
                              const char *last4, int64_t now, kg_diag_t *diag)
{
    return key_set_text(store, key_sql_last4, last4, now, id, "rotating a key",
                        diag);
}

/* Run sql, bound to the key id alone. */
static kg_err_t key_by_id(kg_store_t *store, const char *sql, const char *id,
                          const char *action, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, id);
    return kg_pg_exec(store, sql, &p, NULL, action, diag);
}

static kg_err_t key_delete(kg_store_t *store, const char *id, kg_diag_t *diag)
{
    return key_by_id(store, key_sql_delete, id, "deleting a key", diag);
}

static kg_err_t key_expired(kg_store_t *store, int64_t now,
                            char (*ids)[KG_TOKEN_ID_LEN + 1], size_t max,
                            size_t *n, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    *n = 0;
    kg_pg_param_int(&p, now);
    kg_pg_param_int(&p, (int64_t)max);
    rc = kg_pg_query(store, key_sql_expired, &p, &res, "finding expired keys",
                     diag);
    for (int i = 0; rc == KG_OK && i < PQntuples(res) && *n < max; i++) {
        key_col_copy(res, i, 0, ids[(*n)++], KG_TOKEN_ID_LEN + 1);
    }
    PQclear(res);
    return rc;
}

/* Order of seen keys by id, byte by byte as COLLATE "C". */
static int touch_cmp(const void *a, const void *b)
{
    return strcmp(((const kg_key_seen_t *)a)->id,
                  ((const kg_key_seen_t *)b)->id);
}

/* Touch the n seen keys in one statement (key_sql_touch); ids and ats
 * hold the texts of its two array parameters. */
static kg_err_t touch_chunk(kg_store_t *store, const kg_key_seen_t *seen,
                            size_t n, kg_pg_array_t *ids, kg_pg_array_t *ats,
                            kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    const char *ids_text = NULL;
    const char *ats_text = NULL;

    kg_pg_array_start(ids);
    kg_pg_array_start(ats);
    for (size_t k = 0; k < n; k++) {
        kg_pg_array_text(ids, seen[k].id);
        kg_pg_array_int(ats, seen[k].at);
    }
    if (kg_pg_array_finish(ids, &ids_text) != KG_OK ||
        kg_pg_array_finish(ats, &ats_text) != KG_OK) {
        return KG_ERR_NOMEM;
    }
    kg_pg_param_text(&p, ids_text);
    kg_pg_param_text(&p, ats_text);
    return kg_pg_exec(store, key_sql_touch, &p, NULL, "noting keys used", diag);
}

static kg_err_t key_touch(kg_store_t *store, const kg_key_seen_t *seen,
                          size_t n, kg_diag_t *diag)
{
    size_t chunk = n < PG_TOUCH_CHUNK ? n : PG_TOUCH_CHUNK;
    kg_key_seen_t *sorted = NULL;
    kg_pg_array_t ids;
    kg_pg_array_t ats;
    kg_err_t rc = KG_OK;

    if (n == 0) {
        return KG_OK;
    }
    kg_pg_array_init(&ids);
    kg_pg_array_init(&ats);
    sorted = malloc(n * sizeof(*sorted));
    if (sorted == NULL) {
        rc = KG_ERR_NOMEM;
        goto out;
    }
    memcpy(sorted, seen, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), touch_cmp);
    for (size_t from = 0; rc == KG_OK && from < n; from += chunk) {
        rc = touch_chunk(store, sorted + from,
                         n - from < chunk ? n - from : chunk, &ids, &ats, diag);
    }
out:
    free(sorted);
    kg_pg_array_free(&ids);
    kg_pg_array_free(&ats);
    return rc;
}

static kg_err_t secret_add(kg_store_t *store, const char *id,
                           const unsigned char *hash, int64_t created_at,
                           kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_text(&p, id);
    kg_pg_param_bytes(&p, hash, KG_KEYHASH_LEN);
    kg_pg_param_int(&p, created_at);
    return kg_pg_exec(store, secret_sql_insert, &p, NULL,
                      "storing a key secret", diag);
}

static kg_err_t secret_grace(kg_store_t *store, const char *id, int64_t until,
                             kg_diag_t *diag)
{
    kg_pg_params_t p = {0};

    kg_pg_param_int(&p, until);
    kg_pg_param_text(&p, id);
    return kg_pg_exec(store, secret_sql_grace, &p, NULL,
                      "setting a grace period", diag);
}

static kg_err_t secret_drop(kg_store_t *store, const char *id, kg_diag_t *diag)
{
    return key_by_id(store, secret_sql_drop_all, id, "dropping key secrets",
                     diag);
}

static kg_err_t secret_drop_stale(kg_store_t *store, int64_t now,
                                  kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    kg_pg_param_int(&p, now);
    rc = kg_pg_query(store, secret_sql_any_stale, &p, &res,
                     "dropping old secrets", diag);
    if (rc == KG_OK && PQntuples(res) > 0) {
        rc = kg_pg_exec(store, secret_sql_drop_stale, &p, NULL,
                        "dropping old secrets", diag);
    }
    PQclear(res);
    return rc;
}

/* Row row's secret (hash at col, expires_at after it) into *s; false for a
 * malformed or absent hash. */
static bool secret_from_row(const PGresult *res, int row, int col,
                            kg_store_key_secret_t *s)
{
    if (!kg_pg_col_bytes(res, row, col, s->hash, KG_KEYHASH_LEN)) {
        return false;
    }
    s->expires_at = kg_pg_col_int(res, row, col + 1);
    return true;
}

static kg_err_t secret_each(kg_store_t *store, const char *id, int64_t now,
                            kg_store_key_secret_fn fn, void *arg,
                            kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_store_key_secret_t s;
    kg_err_t rc;

    kg_pg_param_text(&p, id);
    kg_pg_param_int(&p, now);
    rc =
        kg_pg_query(store, secret_sql_valid, &p, &res, "verifying a key", diag);
    for (int i = 0; rc == KG_OK && i < PQntuples(res); i++) {
        if (secret_from_row(res, i, 0, &s)) {
            fn(arg, &s);
        }
    }
    sodium_memzero(&s, sizeof(s));
    PQclear(res);
    return rc;
}

/* The revision in row 0, column 0 of res into *rev; KG_ERR_STORE_CORRUPT
 * when there is none (the migration inserts the only row). */
static kg_err_t rev_from_result(kg_store_t *store, const PGresult *res,
                                int64_t *rev, kg_diag_t *diag)
{
    if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0)) {
        return kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                            "%s: the key revision is missing", store->location);
    }
    *rev = kg_pg_col_int(res, 0, 0);
    return KG_OK;
}

static kg_err_t key_revision(kg_store_t *store, int64_t *rev, kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_err_t rc = kg_pg_query(store, rev_sql_get, NULL, &res,
                              "reading the key revision", diag);

    if (rc == KG_OK) {
        rc = rev_from_result(store, res, rev, diag);
    }
    PQclear(res);
    return rc;
}

/* Columns 1 to 16 of view_sql_load's row 0 into *v. */
static void view_from_row(const PGresult *res, kg_key_view_t *v)
{
    memset(v, 0, sizeof(*v));
    key_col_copy(res, 0, 1, v->id, sizeof(v->id));
    key_col_copy(res, 0, 2, v->workspace_id, sizeof(v->workspace_id));
    key_col_copy(res, 0, 3, v->name, sizeof(v->name));
    key_col_copy(res, 0, 4, v->prefix, sizeof(v->prefix));
    key_col_copy(res, 0, 5, v->last4, sizeof(v->last4));
    v->status = key_col_status(res, 0, 6);
    v->expires_at = kg_pg_col_int(res, 0, 7);
    v->usage_limit = kg_pg_col_int(res, 0, 8);
    v->usage = kg_pg_col_int(res, 0, 9);
    v->period = key_col_period(res, 0, 10);
    v->period_limit = kg_pg_col_int(res, 0, 11);
    v->period_usage = kg_pg_col_int(res, 0, 12);
    v->period_started_at = kg_pg_col_int(res, 0, 13);
    v->rpm = kg_pg_col_int(res, 0, 14);
    v->tpm = kg_pg_col_int(res, 0, 15);
    v->max_concurrent = kg_pg_col_int(res, 0, 16);
}

static kg_err_t key_load_view(kg_store_t *store, const char *id, int64_t *rev,
                              kg_key_view_t *view, bool *found,
                              kg_store_key_secret_t *secrets, size_t max,
                              size_t *n, kg_diag_t *diag)
{
    kg_pg_params_t p = {0};
    PGresult *res = NULL;
    kg_err_t rc;

    *found = false;
    *n = 0;
    kg_pg_param_text(&p, id);
    kg_pg_param_int(&p, (int64_t)max);
    rc = kg_pg_query(store, view_sql_load, &p, &res, "loading a key", diag);
    if (rc == KG_OK) {
        rc = rev_from_result(store, res, rev, diag);
    }
    if (rc == KG_OK && !PQgetisnull(res, 0, 1)) {
        view_from_row(res, view);
        *found = true;
        for (int i = 0; i < PQntuples(res) && *n < max; i++) {
            if (secret_from_row(res, i, 17, &secrets[*n])) {
                (*n)++;
            }
        }
    }
    PQclear(res);
    return rc;
}

const kg_store_keys_ops_t kg_pg_keys_ops = {
    .get = key_get,
    .list = key_list,
    .insert = key_insert,
    .update = key_update,
    .set_status = key_set_status,
    .set_last4 = key_set_last4,
    .delete = key_delete,
    .expired = key_expired,
    .touch = key_touch,
    .secret_add = secret_add,
    .secret_grace = secret_grace,
    .secret_drop = secret_drop,
    .secret_drop_stale = secret_drop_stale,
    .secret_each = secret_each,
    .revision = key_revision,
    .load_view = key_load_view,
};
