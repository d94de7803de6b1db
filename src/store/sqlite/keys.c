/* The SQLite implementation of the store's API keys, secrets and revision. */
#include "keygate/store_keys.h"
#include "store/sqlite/sqlite_store.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define KEY_COLUMNS                                                          \
    "k.id, k.workspace_id, w.name, k.name, k.prefix, k.last4, "              \
    "k.description, k.metadata, k.rules, k.status, k.created_at, "           \
    "k.updated_at, k.last_used_at, k.expires_at, k.usage_limit, k.usage, "   \
    "k.period, k.period_limit, k.period_usage, k.period_started_at, k.rpm, " \
    "k.tpm, k.max_concurrent, (SELECT max(s.expires_at) FROM key_secrets s " \
    "WHERE s.key_id = k.id AND s.expires_at IS NOT NULL), k.reserved "       \
    "FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id "

static const char key_sql_get[] = "SELECT " KEY_COLUMNS "WHERE k.id = ?";
#define KEY_LIST_WHERE                                                     \
    "WHERE (?1 IS NULL OR k.workspace_id = ?1) "                           \
    "AND (?2 OR k.status != 'deleted') AND (?3 IS NULL OR k.status = ?3) " \
    "AND (?4 IS NULL OR instr(lower(k.name), lower(?4)) > 0) "
static const char key_sql_list[] =
    "SELECT " KEY_COLUMNS KEY_LIST_WHERE
    "AND (?5 IS NULL OR (k.created_at, k.id) > (?5, ?6)) "
    "ORDER BY k.created_at, k.id LIMIT ?7";
static const char key_sql_list_newest[] =
    "SELECT " KEY_COLUMNS KEY_LIST_WHERE
    "AND (?5 IS NULL OR (k.created_at, k.id) < (?5, ?6)) "
    "ORDER BY k.created_at DESC, k.id DESC LIMIT ?7";
static const char key_sql_insert[] =
    "INSERT INTO api_keys (id, workspace_id, name, description, metadata, "
    "rules, prefix, last4, status, created_at, updated_at, expires_at, "
    "usage_limit, period, period_limit, period_started_at, rpm, tpm, "
    "max_concurrent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, "
    "?, ?, ?, ?, ?, ?)";
/* The period's spend is written only when it restarts (?9): the usage
 * writer adds to it meanwhile. */
static const char key_sql_update[] =
    "UPDATE api_keys SET name = ?1, description = ?2, metadata = ?3, "
    "rules = ?4, expires_at = ?5, usage_limit = ?6, period = ?7, "
    "period_limit = ?8, "
    "period_usage = CASE WHEN ?9 THEN 0 ELSE period_usage END, "
    "period_started_at = CASE WHEN ?9 THEN ?10 ELSE period_started_at END, "
    "rpm = ?11, tpm = ?12, max_concurrent = ?13, updated_at = ?14 "
    "WHERE id = ?15";
static const char key_sql_status[] =
    "UPDATE api_keys SET status = ?, updated_at = ? WHERE id = ?";
static const char key_sql_last4[] =
    "UPDATE api_keys SET last4 = ?, updated_at = ? WHERE id = ?";
static const char key_sql_delete[] = "DELETE FROM api_keys WHERE id = ?";
static const char key_sql_expired[] =
    "SELECT id FROM api_keys WHERE status != 'deleted' "
    "AND expires_at IS NOT NULL AND expires_at <= ? LIMIT ?";
static const char key_sql_touch[] =
    "UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), ?) "
    "WHERE id = ?";
static const char secret_sql_insert[] =
    "INSERT INTO key_secrets (key_id, hash, created_at) VALUES (?, ?, ?)";
static const char secret_sql_grace[] =
    "UPDATE key_secrets SET expires_at = ? WHERE key_id = ? "
    "AND expires_at IS NULL";
static const char secret_sql_drop_all[] =
    "DELETE FROM key_secrets WHERE key_id = ?";
static const char secret_sql_drop_stale[] =
    "DELETE FROM key_secrets WHERE expires_at IS NOT NULL "
    "AND expires_at <= ?";
static const char secret_sql_valid[] =
    "SELECT hash, expires_at FROM key_secrets WHERE key_id = ? "
    "AND (expires_at IS NULL OR expires_at > ?)";

/* The key cache's load: a deferred BEGIN is a read snapshot only. */
static const char view_sql_begin[] = "BEGIN";
static const char view_sql_commit[] = "COMMIT";
static const char view_sql_rev[] = "SELECT rev FROM key_revision WHERE id = 1";
static const char view_sql_key[] =
    "SELECT id, workspace_id, name, prefix, last4, status, expires_at, "
    "usage_limit, usage, period, period_limit, period_usage, "
    "period_started_at, rpm, tpm, max_concurrent FROM api_keys WHERE id = ?";
/* All of a key's secrets, in primary-key order: view_read_secrets keeps
 * the newest. (An ORDER BY ... LIMIT here made SQLite build a temporary
 * B-tree per load, about half of a load's instructions.) */
static const char view_sql_secrets[] =
    "SELECT hash, expires_at FROM key_secrets WHERE key_id = ?";

/* Copy text column col into dst of size bytes, cut to fit, NUL-ended. */
static void key_col_copy(sqlite3_stmt *st, int col, char *dst, size_t size)
{
    const char *t = kg_sqlite_col_text(st, col);
    size_t n = strnlen(t, size - 1);

    memcpy(dst, t, n);
    dst[n] = '\0';
}

/* A new copy of text column col in *slot. */
static kg_err_t key_col_dup(sqlite3_stmt *st, int col, char **slot)
{
    *slot = strdup(kg_sqlite_col_text(st, col));
    return *slot != NULL ? KG_OK : KG_ERR_NOMEM;
}

/* A status column: an unknown text never grants access. */
static kg_key_status_t key_col_status(sqlite3_stmt *st, int col)
{
    kg_key_status_t status;

    if (!kg_key_status_parse(kg_sqlite_col_text(st, col), &status)) {
        status = KG_KEY_DELETED;
    }
    return status;
}

static kg_period_t key_col_period(sqlite3_stmt *st, int col)
{
    kg_period_t period;

    if (!kg_period_parse(kg_sqlite_col_text(st, col), &period)) {
        period = KG_PERIOD_NONE;
    }
    return period;
}

/* The stored text of a period: NULL without one. */
static const char *key_period_text(kg_period_t period)
{
    return period != KG_PERIOD_NONE ? kg_period_name(period) : NULL;
}

/* A row of KEY_COLUMNS into *k; its strings are new (kg_key_clear). */
static kg_err_t key_from_row(sqlite3_stmt *st, kg_key_t *k)
{
    kg_err_t rc = KG_OK;

    memset(k, 0, sizeof(*k));
    key_col_copy(st, 0, k->id, sizeof(k->id));
    key_col_copy(st, 1, k->workspace_id, sizeof(k->workspace_id));
    key_col_copy(st, 2, k->workspace_name, sizeof(k->workspace_name));
    key_col_copy(st, 3, k->name, sizeof(k->name));
    key_col_copy(st, 4, k->prefix, sizeof(k->prefix));
    key_col_copy(st, 5, k->last4, sizeof(k->last4));
    if (key_col_dup(st, 6, &k->description) != KG_OK ||
        key_col_dup(st, 7, &k->metadata) != KG_OK ||
        key_col_dup(st, 8, &k->rules) != KG_OK) {
        rc = KG_ERR_NOMEM;
    }
    k->status = key_col_status(st, 9);
    k->created_at = sqlite3_column_int64(st, 10);
    k->updated_at = sqlite3_column_int64(st, 11);
    k->last_used_at = kg_sqlite_col_opt_int(st, 12);
    k->expires_at = kg_sqlite_col_opt_int(st, 13);
    k->usage_limit = kg_sqlite_col_opt_int(st, 14);
    k->usage = sqlite3_column_int64(st, 15);
    k->period = key_col_period(st, 16);
    k->period_limit = kg_sqlite_col_opt_int(st, 17);
    k->period_usage = sqlite3_column_int64(st, 18);
    k->period_started_at = kg_sqlite_col_opt_int(st, 19);
    k->rpm = kg_sqlite_col_opt_int(st, 20);
    k->tpm = kg_sqlite_col_opt_int(st, 21);
    k->max_concurrent = kg_sqlite_col_opt_int(st, 22);
    k->grace_until = kg_sqlite_col_opt_int(st, 23);
    k->reserved = sqlite3_column_int64(st, 24);
    return rc;
}

static kg_err_t key_get(kg_store_t *store, const char *id, kg_key_t *out,
                        kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, key_sql_get, diag);
    kg_err_t rc;
    int src;

    memset(out, 0, sizeof(*out));
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        rc = key_from_row(st, out);
    } else if (src == SQLITE_DONE) {
        rc = KG_ERR_NOT_FOUND;
    } else {
        rc = kg_sqlite_error(store, src, "reading a key", diag);
    }
    kg_sqlite_reset(st);
    if (rc != KG_OK) {
        kg_key_clear(out);
    }
    return rc;
}

/* Bind the filter of key_sql_list(_newest). */
static void key_bind_filter(sqlite3_stmt *st, const kg_key_filter_t *filter)
{
    kg_sqlite_bind_text(st, 1, filter->workspace);
    sqlite3_bind_int(st, 2,
                     filter->include_deleted || filter->status_is_set ? 1 : 0);
    kg_sqlite_bind_text(
        st, 3,
        filter->status_is_set ? kg_key_status_name(filter->status) : NULL);
    kg_sqlite_bind_text(st, 4,
                        filter->name_contains && filter->name_contains[0]
                            ? filter->name_contains
                            : NULL);
    if (filter->after_id != NULL) {
        sqlite3_bind_int64(st, 5, filter->after_created);
        kg_sqlite_bind_text(st, 6, filter->after_id);
    }
    sqlite3_bind_int64(st, 7, filter->limit > 0 ? (int64_t)filter->limit : -1);
}

static kg_err_t key_list(kg_store_t *store, const kg_key_filter_t *filter,
                         kg_key_t **out, size_t *count, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(
        store, filter->newest_first ? key_sql_list_newest : key_sql_list, diag);
    kg_key_t *arr = NULL;
    size_t n = 0;
    size_t cap = 0;
    kg_err_t rc = KG_OK;
    int src;

    *out = NULL;
    *count = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    key_bind_filter(st, filter);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            kg_key_t *grown = realloc(arr, ncap * sizeof(*arr));

            if (grown == NULL) {
                rc = KG_ERR_NOMEM;
                break;
            }
            arr = grown;
            cap = ncap;
        }
        rc = key_from_row(st, &arr[n++]);
        if (rc != KG_OK) {
            break;
        }
    }
    if (rc == KG_OK && src != SQLITE_DONE) {
        rc = kg_sqlite_error(store, src, "listing keys", diag);
    }
    kg_sqlite_reset(st);
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
    sqlite3_stmt *st = kg_sqlite_stmt(store, key_sql_insert, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, k->id);
    kg_sqlite_bind_text(st, 2, k->workspace_id);
    kg_sqlite_bind_text(st, 3, k->name);
    kg_sqlite_bind_text(st, 4, k->description);
    kg_sqlite_bind_text(st, 5, k->metadata);
    kg_sqlite_bind_text(st, 6, k->rules);
    kg_sqlite_bind_text(st, 7, k->prefix);
    kg_sqlite_bind_text(st, 8, k->last4);
    sqlite3_bind_int64(st, 9, k->created_at);
    sqlite3_bind_int64(st, 10, k->updated_at);
    kg_sqlite_bind_opt_int(st, 11, k->expires_at);
    kg_sqlite_bind_opt_int(st, 12, k->usage_limit);
    kg_sqlite_bind_text(st, 13, key_period_text(k->period));
    kg_sqlite_bind_opt_int(st, 14, k->period_limit);
    kg_sqlite_bind_opt_int(st, 15, k->period_started_at);
    kg_sqlite_bind_opt_int(st, 16, k->rpm);
    kg_sqlite_bind_opt_int(st, 17, k->tpm);
    kg_sqlite_bind_opt_int(st, 18, k->max_concurrent);
    return kg_sqlite_exec(store, st, "creating a key", diag);
}

static kg_err_t key_update(kg_store_t *store, const kg_key_t *k,
                           bool reset_period, int64_t now, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, key_sql_update, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, k->name);
    kg_sqlite_bind_text(st, 2, k->description);
    kg_sqlite_bind_text(st, 3, k->metadata);
    kg_sqlite_bind_text(st, 4, k->rules);
    kg_sqlite_bind_opt_int(st, 5, k->expires_at);
    kg_sqlite_bind_opt_int(st, 6, k->usage_limit);
    kg_sqlite_bind_text(st, 7, key_period_text(k->period));
    kg_sqlite_bind_opt_int(st, 8, k->period_limit);
    sqlite3_bind_int(st, 9, reset_period ? 1 : 0);
    kg_sqlite_bind_opt_int(st, 10, k->period_started_at);
    kg_sqlite_bind_opt_int(st, 11, k->rpm);
    kg_sqlite_bind_opt_int(st, 12, k->tpm);
    kg_sqlite_bind_opt_int(st, 13, k->max_concurrent);
    sqlite3_bind_int64(st, 14, now);
    kg_sqlite_bind_text(st, 15, k->id);
    return kg_sqlite_exec(store, st, "updating a key", diag);
}

/* Run sql, bound to (text, now, id): a status or last4 change. */
static kg_err_t key_set_text(kg_store_t *store, const char *sql,
                             const char *text, int64_t now, const char *id,
                             const char *action, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, sql, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, text);
    sqlite3_bind_int64(st, 2, now);
    kg_sqlite_bind_text(st, 3, id);
    return kg_sqlite_exec(store, st, action, diag);
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
    sqlite3_stmt *st = kg_sqlite_stmt(store, sql, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, id);
    return kg_sqlite_exec(store, st, action, diag);
}

static kg_err_t key_delete(kg_store_t *store, const char *id, kg_diag_t *diag)
{
    return key_by_id(store, key_sql_delete, id, "deleting a key", diag);
}

static kg_err_t key_expired(kg_store_t *store, int64_t now,
                            char (*ids)[KG_TOKEN_ID_LEN + 1], size_t max,
                            size_t *n, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, key_sql_expired, diag);
    kg_err_t rc = KG_OK;
    int src = SQLITE_DONE;

    *n = 0;
    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, (int64_t)max);
    while (*n < max && (src = sqlite3_step(st)) == SQLITE_ROW) {
        key_col_copy(st, 0, ids[(*n)++], KG_TOKEN_ID_LEN + 1);
    }
    kg_sqlite_reset(st);
    if (src != SQLITE_DONE && src != SQLITE_ROW) {
        rc = kg_sqlite_error(store, src, "finding expired keys", diag);
        *n = 0;
    }
    return rc;
}

static kg_err_t key_touch(kg_store_t *store, const kg_key_seen_t *seen,
                          size_t n, kg_diag_t *diag)
{
    kg_err_t rc = KG_OK;

    for (size_t i = 0; i < n && rc == KG_OK; i++) {
        sqlite3_stmt *st = kg_sqlite_stmt(store, key_sql_touch, diag);

        if (st == NULL) {
            return KG_ERR_STORE;
        }
        sqlite3_bind_int64(st, 1, seen[i].at);
        kg_sqlite_bind_text(st, 2, seen[i].id);
        rc = kg_sqlite_exec(store, st, "noting keys used", diag);
    }
    return rc;
}

static kg_err_t secret_add(kg_store_t *store, const char *id,
                           const unsigned char *hash, int64_t created_at,
                           kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, secret_sql_insert, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, id);
    sqlite3_bind_blob(st, 2, hash, KG_KEYHASH_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, created_at);
    return kg_sqlite_exec(store, st, "storing a key secret", diag);
}

static kg_err_t secret_grace(kg_store_t *store, const char *id, int64_t until,
                             kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, secret_sql_grace, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, until);
    kg_sqlite_bind_text(st, 2, id);
    return kg_sqlite_exec(store, st, "setting a grace period", diag);
}

static kg_err_t secret_drop(kg_store_t *store, const char *id, kg_diag_t *diag)
{
    return key_by_id(store, secret_sql_drop_all, id, "dropping key secrets",
                     diag);
}

static kg_err_t secret_drop_stale(kg_store_t *store, int64_t now,
                                  kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, secret_sql_drop_stale, diag);

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    sqlite3_bind_int64(st, 1, now);
    return kg_sqlite_exec(store, st, "dropping old secrets", diag);
}

/* A secret row (hash, expires_at) into *s; false for a malformed hash. */
static bool secret_from_row(sqlite3_stmt *st, kg_store_key_secret_t *s)
{
    const void *h = sqlite3_column_blob(st, 0);

    if (h == NULL || sqlite3_column_bytes(st, 0) != KG_KEYHASH_LEN) {
        return false;
    }
    memcpy(s->hash, h, KG_KEYHASH_LEN);
    s->expires_at = kg_sqlite_col_opt_int(st, 1);
    return true;
}

static kg_err_t secret_each(kg_store_t *store, const char *id, int64_t now,
                            kg_store_key_secret_fn fn, void *arg,
                            kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, secret_sql_valid, diag);
    kg_store_key_secret_t s;
    int src;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    kg_sqlite_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (secret_from_row(st, &s)) {
            fn(arg, &s);
        }
    }
    sodium_memzero(&s, sizeof(s));
    kg_sqlite_reset(st);
    return kg_sqlite_error(store, src, "verifying a key", diag);
}

/* Run a cached statement that returns no rows; an SQLite result code. */
static int view_step_once(kg_store_t *store, const char *sql)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, sql, NULL);
    int src;

    if (st == NULL) {
        return SQLITE_ERROR;
    }
    src = sqlite3_step(st);
    kg_sqlite_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

/* Read the key revision; an SQLite result code. */
static int view_read_rev(kg_store_t *store, int64_t *rev)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, view_sql_rev, NULL);
    int src;

    if (st == NULL) {
        return SQLITE_ERROR;
    }
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        *rev = sqlite3_column_int64(st, 0);
        src = SQLITE_OK;
    } else if (src == SQLITE_DONE) {
        src = SQLITE_CORRUPT; /* the migration inserts the only row */
    }
    kg_sqlite_reset(st);
    return src;
}

static kg_err_t key_revision(kg_store_t *store, int64_t *rev, kg_diag_t *diag)
{
    return kg_sqlite_error(store, view_read_rev(store, rev),
                           "reading the key revision", diag);
}

static void view_from_row(sqlite3_stmt *st, kg_key_view_t *v)
{
    memset(v, 0, sizeof(*v));
    key_col_copy(st, 0, v->id, sizeof(v->id));
    key_col_copy(st, 1, v->workspace_id, sizeof(v->workspace_id));
    key_col_copy(st, 2, v->name, sizeof(v->name));
    key_col_copy(st, 3, v->prefix, sizeof(v->prefix));
    key_col_copy(st, 4, v->last4, sizeof(v->last4));
    v->status = key_col_status(st, 5);
    v->expires_at = kg_sqlite_col_opt_int(st, 6);
    v->usage_limit = kg_sqlite_col_opt_int(st, 7);
    v->usage = sqlite3_column_int64(st, 8);
    v->period = key_col_period(st, 9);
    v->period_limit = kg_sqlite_col_opt_int(st, 10);
    v->period_usage = sqlite3_column_int64(st, 11);
    v->period_started_at = kg_sqlite_col_opt_int(st, 12);
    v->rpm = kg_sqlite_col_opt_int(st, 13);
    v->tpm = kg_sqlite_col_opt_int(st, 14);
    v->max_concurrent = kg_sqlite_col_opt_int(st, 15);
}

/* Whether secret a comes before b: the current one (no expiry) first,
 * then grace secrets by expiry, latest first. */
static bool view_newer(const kg_store_key_secret_t *a,
                       const kg_store_key_secret_t *b)
{
    if (a->expires_at == KG_NONE || b->expires_at == KG_NONE) {
        return a->expires_at == KG_NONE && b->expires_at != KG_NONE;
    }
    return a->expires_at > b->expires_at;
}

/*
 * Read the key's secrets into secrets (in the snapshot): the max newest,
 * newest first (an insertion into a sorted array of at most max).
 */
static int view_read_secrets(kg_store_t *store, const char *id,
                             kg_store_key_secret_t *secrets, size_t max,
                             size_t *n)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, view_sql_secrets, NULL);
    kg_store_key_secret_t s;
    int src;

    *n = 0;
    if (st == NULL) {
        return SQLITE_ERROR;
    }
    kg_sqlite_bind_text(st, 1, id);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        size_t i;

        if (!secret_from_row(st, &s)) {
            continue;
        }
        i = *n < max ? (*n)++ : max;
        while (i > 0 && view_newer(&s, &secrets[i - 1])) {
            if (i < max) {
                secrets[i] = secrets[i - 1];
            }
            i--;
        }
        if (i < max) {
            secrets[i] = s;
        }
    }
    sodium_memzero(&s, sizeof(s));
    kg_sqlite_reset(st);
    return src == SQLITE_DONE ? SQLITE_OK : src;
}

static kg_err_t key_load_view(kg_store_t *store, const char *id, int64_t *rev,
                              kg_key_view_t *view, bool *found,
                              kg_store_key_secret_t *secrets, size_t max,
                              size_t *n, kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    int src;

    *found = false;
    *n = 0;
    src = view_step_once(store, view_sql_begin);
    if (src == SQLITE_OK) {
        src = view_read_rev(store, rev);
    }
    if (src != SQLITE_OK) {
        goto out;
    }
    st = kg_sqlite_stmt(store, view_sql_key, NULL);
    if (st == NULL) {
        src = SQLITE_ERROR;
        goto out;
    }
    kg_sqlite_bind_text(st, 1, id);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        view_from_row(st, view);
        *found = true;
        src = SQLITE_OK;
    } else if (src == SQLITE_DONE) {
        src = SQLITE_OK;
    }
    kg_sqlite_reset(st);
    if (src == SQLITE_OK && *found) {
        src = view_read_secrets(store, id, secrets, max, n);
    }
    if (src == SQLITE_OK) {
        src = view_step_once(store, view_sql_commit);
    }
out:
    kg_store_rollback(store); /* ends the read snapshot if still open */
    return kg_sqlite_error(store, src, "loading a key", diag);
}

const kg_store_keys_ops_t kg_sqlite_keys_ops = {
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
