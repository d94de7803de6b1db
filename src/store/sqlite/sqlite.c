/* The SQLite backend: opening, schema migrations and cached statements. */
#include "store/sqlite/sqlite_store.h"

#include <assert.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_MAX_STMTS 192

typedef struct store_stmt {
    const char *sql; /* cache key: the literal's address */
    sqlite3_stmt *stmt;
} store_stmt_t;

/* An SQLite handle: the base first, so a kg_store_t * is one of these. */
typedef struct sqlite_store {
    kg_store_t base;
    sqlite3 *db;
    size_t nstmts;
    store_stmt_t stmts[STORE_MAX_STMTS];
} sqlite_store_t;

/* The SQLite handle behind a store handle of this backend. */
static sqlite_store_t *sq(kg_store_t *store)
{
    assert(store->be == &kg_sqlite_backend);
    return (sqlite_store_t *)store;
}

/*
 * Schema migrations, in order: migration i brings the store from version i
 * to i + 1. Never edit a released migration; add a new one.
 */
static const char *const store_migrations[] = {
    /* 0 → 1: workspaces, keys and their secrets, audit. */
    "CREATE TABLE workspaces ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  mode TEXT NOT NULL DEFAULT 'api-keys'"
    "    CHECK (mode IN ('api-keys', 'credits', 'hybrid')),"
    "  credits_balance INTEGER NOT NULL DEFAULT 0,"
    "  rules TEXT NOT NULL DEFAULT '{}',"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE api_keys ("
    "  id TEXT PRIMARY KEY,"
    "  workspace_id TEXT NOT NULL REFERENCES workspaces(id),"
    "  name TEXT NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  metadata TEXT NOT NULL DEFAULT '{}',"
    "  prefix TEXT NOT NULL,"
    "  last4 TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'active'"
    "    CHECK (status IN ('active', 'inactive', 'deleted')),"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  last_used_at INTEGER,"
    "  expires_at INTEGER,"
    "  usage_limit INTEGER,"
    "  usage INTEGER NOT NULL DEFAULT 0,"
    "  period TEXT CHECK (period IN ('hour', 'day', 'week', 'month')),"
    "  period_limit INTEGER,"
    "  period_usage INTEGER NOT NULL DEFAULT 0,"
    "  period_started_at INTEGER,"
    "  rpm INTEGER,"
    "  tpm INTEGER,"
    "  max_concurrent INTEGER,"
    "  rules TEXT NOT NULL DEFAULT '{}'"
    ") STRICT;"
    "CREATE INDEX api_keys_workspace ON api_keys(workspace_id);"
    "CREATE INDEX api_keys_expiry ON api_keys(expires_at)"
    "  WHERE status != 'deleted' AND expires_at IS NOT NULL;"
    /* A key has one current secret (expires_at NULL) and, after a rotation
     * with a grace period, older ones valid until their expires_at. */
    "CREATE TABLE key_secrets ("
    "  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,"
    "  hash BLOB NOT NULL CHECK (length(hash) = 32),"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER,"
    "  PRIMARY KEY (key_id, hash)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE audit_events ("
    "  id INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  object_type TEXT NOT NULL,"
    "  object_id TEXT NOT NULL,"
    "  detail TEXT NOT NULL DEFAULT '{}'"
    ") STRICT;"
    "CREATE INDEX audit_events_object ON audit_events(object_type, object_id);",

    /* 1 → 2: usage events and their hourly per-key aggregates. */
    "CREATE TABLE usage_events ("
    "  id INTEGER PRIMARY KEY,"
    "  request_id TEXT NOT NULL UNIQUE,"
    "  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,"
    "  workspace_id TEXT NOT NULL,"
    "  at_ms INTEGER NOT NULL,"
    "  operation TEXT NOT NULL,"
    "  model TEXT NOT NULL DEFAULT '',"
    "  provider TEXT NOT NULL DEFAULT '',"
    "  mode TEXT NOT NULL DEFAULT 'api-keys'"
    "    CHECK (mode IN ('api-keys', 'credits')),"
    "  status INTEGER NOT NULL,"
    "  prompt_tokens INTEGER NOT NULL DEFAULT 0,"
    "  completion_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cached_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cost INTEGER NOT NULL DEFAULT 0,"
    "  latency_ms INTEGER NOT NULL DEFAULT 0,"
    "  ttft_ms INTEGER,"
    "  streamed INTEGER NOT NULL DEFAULT 0,"
    "  client_ip TEXT NOT NULL DEFAULT '',"
    "  error_code TEXT"
    ") STRICT;"
    "CREATE INDEX usage_events_key_time ON usage_events(key_id, at_ms);"
    "CREATE INDEX usage_events_time ON usage_events(at_ms);"
    "CREATE TABLE usage_hourly ("
    "  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,"
    "  hour INTEGER NOT NULL,"
    "  model TEXT NOT NULL DEFAULT '',"
    "  requests INTEGER NOT NULL DEFAULT 0,"
    "  errors INTEGER NOT NULL DEFAULT 0,"
    "  prompt_tokens INTEGER NOT NULL DEFAULT 0,"
    "  completion_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cached_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cost INTEGER NOT NULL DEFAULT 0,"
    "  latency_ms_sum INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (key_id, hour, model)"
    ") STRICT, WITHOUT ROWID;",

    /* 2 → 3: a revision counter that every change relevant to verifying a
     * key or applying its policy bumps, so a running gateway's key cache
     * notices CLI changes with one cheap read. Spend and bookkeeping
     * columns (usage, period_usage, period_started_at, last_used_at,
     * updated_at) and display columns (name, description, metadata, last4)
     * are left out: the usage writer's updates must not flush the cache. */
    "CREATE TABLE key_revision ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  rev INTEGER NOT NULL"
    ") STRICT;"
    "INSERT INTO key_revision VALUES (1, 0);"
    "CREATE TRIGGER api_keys_rev_insert AFTER INSERT ON api_keys BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;"
    "CREATE TRIGGER api_keys_rev_delete AFTER DELETE ON api_keys BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;"
    "CREATE TRIGGER api_keys_rev_update AFTER UPDATE OF status, expires_at,"
    "  workspace_id, prefix, usage_limit, period, period_limit, rpm, tpm,"
    "  max_concurrent, rules ON api_keys BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;"
    "CREATE TRIGGER key_secrets_rev_insert AFTER INSERT ON key_secrets BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;"
    "CREATE TRIGGER key_secrets_rev_update AFTER UPDATE ON key_secrets BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;"
    "CREATE TRIGGER key_secrets_rev_delete AFTER DELETE ON key_secrets BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;"
    "CREATE TRIGGER workspaces_rev_update AFTER UPDATE OF mode, rules"
    "  ON workspaces BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;",

    /* 3 → 4: workspace provider credentials (bring your own key), sealed
     * with crypto_secretbox under the server secret key kept outside the
     * store (src/wscred.c, src/secretbox.c); every change bumps the key
     * revision so that a running gateway reloads them. And api_keys.reserved,
     * the gateway's periodic snapshot of a key's in-flight budget
     * reservations: bookkeeping, so api_keys_rev_update (an UPDATE OF list
     * without it) does not fire on it. */
    "ALTER TABLE api_keys ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE workspace_credentials ("
    "  workspace_id TEXT NOT NULL"
    "    REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  provider TEXT NOT NULL,"
    "  nonce BLOB NOT NULL CHECK (length(nonce) = 24),"
    "  ciphertext BLOB NOT NULL CHECK (length(ciphertext) > 16),"
    "  last4 TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (workspace_id, provider)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TRIGGER workspace_credentials_rev_insert AFTER INSERT"
    "  ON workspace_credentials BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;"
    "CREATE TRIGGER workspace_credentials_rev_update AFTER UPDATE"
    "  ON workspace_credentials BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;"
    "CREATE TRIGGER workspace_credentials_rev_delete AFTER DELETE"
    "  ON workspace_credentials BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1;"
    "END;",

    /* 4 → 5: the workspace mode 'pool', also a usage event's mode: not
     * SQL alone, see store_allow_pool_mode. */
    NULL,

    /* 5 → 6 (KG_STORE_VERSION_USAGE_ROLLUP): usage_rollup, the hourly
     * aggregates every usage query reads, replacing usage_hourly: per (key,
     * hour, model, provider) the sums of include/keygate/usage_sums.h and a
     * latency histogram whose buckets (lat_N: latency_ms in (previous bound,
     * N]) are those of KG_USAGE_LATENCY_BOUNDS. Backfilled from
     * usage_events, which holds everything usage_hourly summed. And an index
     * on audit_events(object_id), replacing (object_type, object_id): the
     * audit log is read by object id with or without its type, newest
     * first. Nothing here depends on the version it runs at. */
    "CREATE TABLE usage_rollup ("
    "  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,"
    "  hour INTEGER NOT NULL,"
    "  model TEXT NOT NULL DEFAULT '',"
    "  provider TEXT NOT NULL DEFAULT '',"
    "  workspace_id TEXT NOT NULL,"
    "  requests INTEGER NOT NULL DEFAULT 0,"
    "  errors INTEGER NOT NULL DEFAULT 0,"
    "  prompt_tokens INTEGER NOT NULL DEFAULT 0,"
    "  completion_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cached_tokens INTEGER NOT NULL DEFAULT 0,"
    "  cost INTEGER NOT NULL DEFAULT 0,"
    "  streamed INTEGER NOT NULL DEFAULT 0,"
    "  latency_ms_sum INTEGER NOT NULL DEFAULT 0,"
    "  latency_ms_max INTEGER NOT NULL DEFAULT 0,"
    "  ttft_ms_sum INTEGER NOT NULL DEFAULT 0,"
    "  ttft_count INTEGER NOT NULL DEFAULT 0,"
    "  lat_5 INTEGER NOT NULL DEFAULT 0,"
    "  lat_10 INTEGER NOT NULL DEFAULT 0,"
    "  lat_25 INTEGER NOT NULL DEFAULT 0,"
    "  lat_50 INTEGER NOT NULL DEFAULT 0,"
    "  lat_100 INTEGER NOT NULL DEFAULT 0,"
    "  lat_250 INTEGER NOT NULL DEFAULT 0,"
    "  lat_500 INTEGER NOT NULL DEFAULT 0,"
    "  lat_1000 INTEGER NOT NULL DEFAULT 0,"
    "  lat_2500 INTEGER NOT NULL DEFAULT 0,"
    "  lat_5000 INTEGER NOT NULL DEFAULT 0,"
    "  lat_10000 INTEGER NOT NULL DEFAULT 0,"
    "  lat_30000 INTEGER NOT NULL DEFAULT 0,"
    "  lat_60000 INTEGER NOT NULL DEFAULT 0,"
    "  lat_120000 INTEGER NOT NULL DEFAULT 0,"
    "  lat_inf INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (key_id, hour, model, provider)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX usage_rollup_hour ON usage_rollup(hour);"
    "CREATE INDEX usage_rollup_workspace ON usage_rollup(workspace_id, hour);"
    "INSERT INTO usage_rollup SELECT key_id, at_ms / 3600000 * 3600, model,"
    "  provider, max(workspace_id), count(*), sum(status >= 400),"
    "  sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens),"
    "  sum(cost), sum(streamed != 0), sum(max(latency_ms, 0)),"
    "  max(max(latency_ms, 0)), coalesce(sum(ttft_ms), 0), count(ttft_ms),"
    "  sum(latency_ms <= 5),"
    "  sum(latency_ms > 5 AND latency_ms <= 10),"
    "  sum(latency_ms > 10 AND latency_ms <= 25),"
    "  sum(latency_ms > 25 AND latency_ms <= 50),"
    "  sum(latency_ms > 50 AND latency_ms <= 100),"
    "  sum(latency_ms > 100 AND latency_ms <= 250),"
    "  sum(latency_ms > 250 AND latency_ms <= 500),"
    "  sum(latency_ms > 500 AND latency_ms <= 1000),"
    "  sum(latency_ms > 1000 AND latency_ms <= 2500),"
    "  sum(latency_ms > 2500 AND latency_ms <= 5000),"
    "  sum(latency_ms > 5000 AND latency_ms <= 10000),"
    "  sum(latency_ms > 10000 AND latency_ms <= 30000),"
    "  sum(latency_ms > 30000 AND latency_ms <= 60000),"
    "  sum(latency_ms > 60000 AND latency_ms <= 120000),"
    "  sum(latency_ms > 120000)"
    "  FROM usage_events GROUP BY key_id, at_ms / 3600000, model, provider;"
    "DROP TABLE usage_hourly;"
    "DROP INDEX audit_events_object;"
    "CREATE INDEX audit_events_object_id ON audit_events(object_id);",

    /* 6 → 7: admin tokens (prefix kgadm) for the admin listener: hashed
     * like client keys (keyed BLAKE2b of "<id>:<secret>"), never shown
     * again. A revoked token keeps its row for the audit trail, its hash
     * zeroed. */
    "CREATE TABLE admin_tokens ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  last4 TEXT NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  read_only INTEGER NOT NULL DEFAULT 0 CHECK (read_only IN (0, 1)),"
    "  hash BLOB NOT NULL CHECK (length(hash) = 32),"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER,"
    "  last_used_at INTEGER,"
    "  revoked_at INTEGER"
    ") STRICT;",

    /* 7 → 8: the online backups taken with 'keygate store backup' (when,
     * where, how large), for 'keygate store status'. A row is written to
     * the store that was copied, once the copy is complete. */
    "CREATE TABLE store_backups ("
    "  id INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  path TEXT NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  pages INTEGER NOT NULL,"
    "  duration_ms INTEGER NOT NULL,"
    "  actor TEXT NOT NULL"
    ") STRICT;",
};

_Static_assert(sizeof(store_migrations) / sizeof(*store_migrations) ==
                   KG_STORE_SCHEMA_VERSION,
               "one migration per schema version");

static kg_err_t store_allow_pool_mode(kg_store_t *store, kg_diag_t *diag);

/* Migrations that SQL alone cannot do, by the version they start from. */
typedef kg_err_t (*store_step_fn)(kg_store_t *store, kg_diag_t *diag);
static const store_step_fn store_steps[KG_STORE_SCHEMA_VERSION] = {
    [4] = store_allow_pool_mode,
};

kg_err_t kg_sqlite_error(kg_store_t *store, int sqlite_rc, const char *action,
                         kg_diag_t *diag)
{
    const char *path = store ? store->location : "store";
    const char *why = sqlite3_errstr(sqlite_rc);

    switch (sqlite_rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return KG_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return kg_diag_fail(diag, KG_ERR_STORE_BUSY,
                            "%s: %s: the store is locked by another process",
                            path, action);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                            "%s: %s: not a keygate store, or corrupt (%s)",
                            path, action, why);
    case SQLITE_CONSTRAINT:
        return kg_diag_fail(diag, KG_ERR_EXISTS, "%s: %s: %s", path, action,
                            why);
    case SQLITE_NOMEM:
        return kg_diag_fail(diag, KG_ERR_NOMEM, "%s: %s: out of memory", path,
                            action);
    default:
        return kg_diag_fail(diag, KG_ERR_STORE, "%s: %s: %s", path, action,
                            why);
    }
}

static kg_err_t store_exec(kg_store_t *store, const char *sql,
                           const char *action, kg_diag_t *diag)
{
    int rc = sqlite3_exec(sq(store)->db, sql, NULL, NULL, NULL);

    return kg_sqlite_error(store, rc, action, diag);
}

/* Read a single-integer PRAGMA. */
static kg_err_t store_pragma_int(kg_store_t *store, const char *sql,
                                 int64_t *out, kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_prepare_v2(sq(store)->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return kg_sqlite_error(store, rc, "reading the schema", diag);
}

/*
 * The CHECK constraints on workspaces.mode and usage_events.mode, and the
 * 'pool' they let in since version 5: each "from" occurs once in its
 * table's CREATE statement of migration 0 → 1.
 */
static const struct store_check_edit {
    const char *table;
    const char *from;
    const char *to;
} store_pool_edits[] = {
    {"workspaces", "('api-keys', 'credits', 'hybrid'))",
     "('api-keys', 'credits', 'hybrid', 'pool'))"},
    {"usage_events", "('api-keys', 'credits'))",
     "('api-keys', 'credits', 'pool'))"},
};

/*
 * 4 → 5, inside the migration's transaction. SQLite cannot alter a CHECK
 * constraint, and rebuilding the tables would copy every row (usage_events
 * may hold millions; workspaces is referenced by keys and credentials).
 * Allowing one more value only loosens the constraints, which every stored
 * row already meets, and changes nothing on disk but the schema text: for
 * such changes SQLite's documentation ("Making Other Kinds Of Table Schema
 * Changes", lang_altertable.html) gives this procedure: edit the text in
 * sqlite_schema under writable_schema, then raise schema_version so that
 * every connection reads the schema again. Each edit must change exactly
 * one table, or nothing is changed.
 */
static kg_err_t store_allow_pool_mode(kg_store_t *store, kg_diag_t *diag)
{
    static const char edit_sql[] =
        "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) "
        "WHERE type = 'table' AND name = ?3 AND instr(sql, ?1) > 0";
    sqlite3_stmt *st = NULL;
    int64_t version = 0;
    char sql[64];
    kg_err_t rc;
    int src;

    rc = store_pragma_int(store, "PRAGMA schema_version", &version, diag);
    if (rc == KG_OK) {
        rc = store_exec(store, "PRAGMA writable_schema = ON",
                        "migrating the schema", diag);
    }
    if (rc != KG_OK) {
        return rc;
    }
    src = sqlite3_prepare_v2(sq(store)->db, edit_sql, -1, &st, NULL);
    for (size_t i = 0; src == SQLITE_OK &&
                       i < sizeof(store_pool_edits) / sizeof(*store_pool_edits);
         i++) {
        const struct store_check_edit *e = &store_pool_edits[i];

        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, e->from, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, e->to, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, e->table, -1, SQLITE_STATIC);
        src = sqlite3_step(st);
        if (src == SQLITE_DONE && sqlite3_changes(sq(store)->db) != 1) {
            rc = kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                              "%s: migrating the schema: table %s is not "
                              "as keygate made it",
                              store->location, e->table);
            break;
        }
        src = src == SQLITE_DONE ? SQLITE_OK : src;
    }
    sqlite3_finalize(st);
    if (rc == KG_OK) {
        rc = kg_sqlite_error(store, src, "migrating the schema", diag);
    }
    if (rc == KG_OK) {
        snprintf(sql, sizeof(sql), "PRAGMA schema_version = %lld",
                 (long long)version + 1);
        rc = store_exec(store, sql, "migrating the schema", diag);
    }
    /* Off in any case; on error the caller rolls the edit back. */
    if (store_exec(store, "PRAGMA writable_schema = OFF",
                   "migrating the schema",
                   rc == KG_OK ? diag : NULL) != KG_OK &&
        rc == KG_OK) {
        rc = KG_ERR_STORE;
    }
    return rc;
}

static kg_err_t store_migrate(kg_store_t *store, int target, kg_diag_t *diag)
{
    int64_t version = 0;
    int64_t app_id = 0;
    int64_t tables = 0;
    char sql[64];
    kg_err_t rc;

    rc = kg_store_begin(store, diag);
    if (rc != KG_OK) {
        return rc;
    }
    rc = store_pragma_int(store, "PRAGMA application_id", &app_id, diag);
    if (rc == KG_OK) {
        rc = store_pragma_int(store, "PRAGMA user_version", &version, diag);
    }
    if (rc == KG_OK) {
        rc = store_pragma_int(store, "SELECT count(*) FROM sqlite_schema",
                              &tables, diag);
    }
    if (rc != KG_OK) {
        goto out;
    }
    if (app_id != KG_STORE_APPLICATION_ID && (app_id != 0 || tables != 0)) {
        rc = kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                          "%s is an SQLite database but not a keygate store",
                          store->location);
        goto out;
    }
    if (version > KG_STORE_SCHEMA_VERSION) {
        rc = kg_diag_fail(diag, KG_ERR_STORE_VERSION,
                          "%s has schema version %d, newer than this keygate "
                          "(%d); upgrade keygate",
                          store->location, (int)version,
                          KG_STORE_SCHEMA_VERSION);
        goto out;
    }
    for (int v = (int)version; v < target; v++) {
        rc = store_steps[v] != NULL ? store_steps[v](store, diag)
                                    : store_exec(store, store_migrations[v],
                                                 "migrating the schema", diag);
        if (rc != KG_OK) {
            goto out;
        }
    }
    if (version < target) {
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", target);
        rc = store_exec(store, sql, "migrating the schema", diag);
        if (rc == KG_OK) {
            snprintf(sql, sizeof(sql), "PRAGMA application_id = %d",
                     KG_STORE_APPLICATION_ID);
            rc = store_exec(store, sql, "migrating the schema", diag);
        }
        version = target;
    }
out:
    if (rc == KG_OK) {
        rc = kg_store_commit(store, diag);
    } else {
        kg_store_rollback(store);
    }
    store->schema_version = (int)version;
    return rc;
}

/* Create the file with mode 0600 so SQLite's WAL and SHM files follow. */
static kg_err_t store_create_file(const char *path, kg_diag_t *diag)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd < 0) {
        return kg_diag_fail(diag, KG_ERR_STORE, "cannot create store %s: %s",
                            path, strerror(errno));
    }
    if (fchmod(fd, 0600) != 0) {
        close(fd);
        return kg_diag_fail(diag, KG_ERR_STORE, "cannot chmod store %s: %s",
                            path, strerror(errno));
    }
    close(fd);
    return KG_OK;
}

/* Busy timeout, foreign keys, and refusal of a read-only file. */
static kg_err_t store_prepare_handle(kg_store_t *store, int busy_timeout_ms,
                                     kg_diag_t *diag)
{
    sqlite3_busy_timeout(sq(store)->db, busy_timeout_ms);
    sqlite3_extended_result_codes(sq(store)->db, 1);
    if (sqlite3_db_readonly(sq(store)->db, "main") == 1) {
        return kg_diag_fail(diag, KG_ERR_STORE,
                            "store %s is not writable by this user",
                            store->location);
    }
    return store_exec(store, "PRAGMA foreign_keys = ON", "opening", diag);
}

/*
 * Refuse a file that is not a keygate store before changing anything in it
 * (such as its journal mode): an empty database, or one marked with our
 * application id, is ours.
 */
static kg_err_t store_identify(kg_store_t *store, kg_diag_t *diag)
{
    int64_t app_id = 0;
    int64_t tables = 0;
    kg_err_t rc;

    rc = store_pragma_int(store, "PRAGMA application_id", &app_id, diag);
    if (rc == KG_OK) {
        rc = store_pragma_int(store, "SELECT count(*) FROM sqlite_schema",
                              &tables, diag);
    }
    if (rc == KG_OK && app_id != KG_STORE_APPLICATION_ID &&
        (app_id != 0 || tables != 0)) {
        rc = kg_diag_fail(diag, KG_ERR_STORE_CORRUPT,
                          "%s is an SQLite database but not a keygate store",
                          store->location);
    }
    return rc;
}

/* WAL journal and the matching durability level. */
static kg_err_t store_set_journal(kg_store_t *store, kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    kg_err_t rc;
    int src;

    /* journal_mode answers with the mode in force; it must be WAL. */
    src = sqlite3_prepare_v2(sq(store)->db, "PRAGMA journal_mode = WAL", -1,
                             &st, NULL);
    if (src == SQLITE_OK) {
        src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            const char *mode = (const char *)sqlite3_column_text(st, 0);
            src = (mode && strcmp(mode, "wal") == 0) ? SQLITE_OK
                                                     : SQLITE_CANTOPEN;
        }
    }
    sqlite3_finalize(st);
    rc = kg_sqlite_error(store, src, "enabling WAL", diag);
    if (rc != KG_OK) {
        return rc;
    }
    /* In WAL mode NORMAL survives a process crash (kill -9); an OS crash may
     * lose the last commits but never corrupts the store. */
    return store_exec(store, "PRAGMA synchronous = NORMAL", "opening", diag);
}

/*
 * Reads through a memory map instead of a pread per page: a key-cache miss
 * on a store of a million keys touches ~4 pages outside SQLite's page
 * cache, each a system call and a 4 KiB copy without the map. The map
 * covers the first 1 GiB of the file (SQLite reads the rest as before) and
 * costs address space, not memory: its pages are the kernel's page cache,
 * though they count in the process's RSS once touched. An I/O error under
 * the map is a SIGBUS (the process stops; it never lets a request
 * through) rather than an error code. Every connection is opened here,
 * so the gateway's and the CLI's get the same setting.
 */
static kg_err_t store_set_io(kg_store_t *store, kg_diag_t *diag)
{
    return store_exec(store, "PRAGMA mmap_size = 1073741824", "opening", diag);
}

kg_err_t kg_sqlite_open(const char *path, const kg_store_opts_t *opts,
                        kg_store_t **out, kg_diag_t *diag)
{
    sqlite_store_t *handle = NULL;
    kg_store_t *store = NULL;
    struct stat st;
    kg_err_t rc = KG_OK;
    int target =
        opts->target_version ? opts->target_version : KG_STORE_SCHEMA_VERSION;
    int src;

    *out = NULL;
    if (target < 1 || target > KG_STORE_SCHEMA_VERSION) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "bad schema target %d",
                            target);
    }
    if (stat(path, &st) != 0) {
        if (errno != ENOENT || !(opts->flags & KG_STORE_CREATE)) {
            return kg_diag_fail(diag, KG_ERR_STORE_MISSING, "store %s: %s%s",
                                path, strerror(errno),
                                errno == ENOENT ? " (run 'keygate init')" : "");
        }
        rc = store_create_file(path, diag);
        if (rc != KG_OK) {
            return rc;
        }
    } else if (!S_ISREG(st.st_mode)) {
        return kg_diag_fail(diag, KG_ERR_STORE, "store %s is not a file", path);
    }
    handle = calloc(1, sizeof(*handle));
    if (handle == NULL || (handle->base.location = strdup(path)) == NULL) {
        free(handle);
        return KG_ERR_NOMEM;
    }
    handle->base.be = &kg_sqlite_backend;
    store = &handle->base;
    src = sqlite3_open_v2(path, &sq(store)->db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                              SQLITE_OPEN_NOFOLLOW,
                          NULL);
    if (src != SQLITE_OK) {
        rc = kg_sqlite_error(store, src, "opening", diag);
        goto out;
    }
    rc = store_prepare_handle(store, opts->busy_timeout_ms, diag);
    if (rc == KG_OK) {
        rc = store_identify(store, diag);
    }
    if (rc == KG_OK) {
        rc = store_set_journal(store, diag);
    }
    if (rc == KG_OK) {
        rc = store_set_io(store, diag);
    }
    if (rc == KG_OK) {
        rc = store_migrate(store, target, diag);
    }
out:
    if (rc != KG_OK) {
        kg_store_close(&store);
    }
    *out = store;
    return rc;
}

/* Finalize the statements, close the connection, free the handle. */
static void sqlite_close(kg_store_t *store)
{
    sqlite_store_t *s = sq(store);

    for (size_t i = 0; i < s->nstmts; i++) {
        sqlite3_finalize(s->stmts[i].stmt);
    }
    sqlite3_close(s->db);
    free(s->base.location);
    free(s);
}

sqlite3 *kg_sqlite_db(kg_store_t *store)
{
    return sq(store)->db;
}

sqlite3_stmt *kg_sqlite_stmt(kg_store_t *store, const char *sql,
                             kg_diag_t *diag)
{
    sqlite3_stmt *st = NULL;
    int rc;

    for (size_t i = 0; i < sq(store)->nstmts; i++) {
        if (sq(store)->stmts[i].sql == sql) {
            return sq(store)->stmts[i].stmt;
        }
    }
    rc = sqlite3_prepare_v3(sq(store)->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                            &st, NULL);
    if (rc != SQLITE_OK) {
        (void)kg_sqlite_error(store, rc, "preparing a statement", diag);
        return NULL;
    }
    if (sq(store)->nstmts == STORE_MAX_STMTS) {
        /* Never expected: the statement set is fixed. Still work. */
        sqlite3_finalize(st);
        kg_diag_set(diag, "statement cache full");
        return NULL;
    }
    sq(store)->stmts[sq(store)->nstmts].sql = sql;
    sq(store)->stmts[sq(store)->nstmts].stmt = st;
    sq(store)->nstmts++;
    return st;
}

void kg_sqlite_reset(sqlite3_stmt *stmt)
{
    if (stmt != NULL) {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
    }
}

static const char store_sql_ping[] =
    "SELECT rev FROM key_revision WHERE id = 1";

static kg_err_t sqlite_ping(kg_store_t *store, kg_diag_t *diag)
{
    sqlite3_stmt *st = kg_sqlite_stmt(store, store_sql_ping, diag);
    int rc;

    if (st == NULL) {
        return KG_ERR_STORE;
    }
    rc = sqlite3_step(st);
    kg_sqlite_reset(st);
    return kg_sqlite_error(store, rc, "reading the key revision", diag);
}

static kg_err_t sqlite_begin(kg_store_t *store, kg_diag_t *diag)
{
    return store_exec(store, "BEGIN IMMEDIATE", "starting a transaction", diag);
}

static void sqlite_rollback(kg_store_t *store);

static kg_err_t sqlite_commit(kg_store_t *store, kg_diag_t *diag)
{
    kg_err_t rc = store_exec(store, "COMMIT", "committing", diag);

    if (rc != KG_OK) {
        sqlite_rollback(store);
    }
    return rc;
}

static void sqlite_rollback(kg_store_t *store)
{
    if (!sqlite3_get_autocommit(sq(store)->db)) {
        sqlite3_exec(sq(store)->db, "ROLLBACK", NULL, NULL, NULL);
    }
}

kg_err_t kg_sqlite_exec(kg_store_t *store, sqlite3_stmt *stmt,
                        const char *action, kg_diag_t *diag)
{
    int rc = sqlite3_step(stmt);
    kg_err_t err = kg_sqlite_error(store, rc, action, diag);

    kg_sqlite_reset(stmt);
    return err;
}

int kg_sqlite_bind_text(sqlite3_stmt *stmt, int idx, const char *s)
{
    if (s == NULL) {
        return sqlite3_bind_null(stmt, idx);
    }
    return sqlite3_bind_text(stmt, idx, s, -1, SQLITE_TRANSIENT);
}

int kg_sqlite_bind_opt_int(sqlite3_stmt *stmt, int idx, int64_t v)
{
    if (v < 0) {
        return sqlite3_bind_null(stmt, idx);
    }
    return sqlite3_bind_int64(stmt, idx, v);
}

const char *kg_sqlite_col_text(sqlite3_stmt *stmt, int col)
{
    const unsigned char *t = sqlite3_column_text(stmt, col);

    return t ? (const char *)t : "";
}

int64_t kg_sqlite_col_opt_int(sqlite3_stmt *stmt, int col)
{
    if (sqlite3_column_type(stmt, col) == SQLITE_NULL) {
        return -1;
    }
    return sqlite3_column_int64(stmt, col);
}

const kg_store_backend_t kg_sqlite_backend = {
    .name = "sqlite",
    .close = sqlite_close,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .ping = sqlite_ping,

    .admin_tokens = &kg_sqlite_admin_tokens_ops,
    .keys = &kg_sqlite_keys_ops,
    .workspaces = &kg_sqlite_workspaces_ops,
    .credentials = &kg_sqlite_credentials_ops,
    .budget = &kg_sqlite_budget_ops,
    .usage = &kg_sqlite_usage_ops,
    .audit = &kg_sqlite_audit_ops,
    .maint = &kg_sqlite_maint_ops,
};
