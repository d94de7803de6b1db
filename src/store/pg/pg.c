/* The PostgreSQL backend: connecting, schema migrations and prepared
 * statements. */
#include "store/pg/pg_store.h"

#include <assert.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statements one connection prepares (every literal of src/store/pg/). */
#define PG_MAX_STMTS 256
/* Seconds a connection attempt may take. */
#define PG_CONNECT_TIMEOUT "10"
/* Room for the location shown in messages (the URL without password). */
#define PG_LOCATION_MAX 512
/* The key of the advisory lock migrations hold: 'KGAT', as SQLite's id. */
#define PG_MIGRATION_LOCK 0x4B474154

typedef struct pg_stmt {
    const char *sql; /* cache key: the literal's address */
} pg_stmt_t;

/* A PostgreSQL handle: the base first, so a kg_store_t * is one of these. */
typedef struct pg_store {
    kg_store_t base;
    PGconn *conn;
    char *url; /* as configured: may hold a password, never shown */
    uint64_t reconnects;
    size_t nstmts; /* prepared on the current connection */
    pg_stmt_t stmts[PG_MAX_STMTS];
} pg_store_t;

/*
 * Schema migrations, in order: migration i brings the store from version i
 * to i + 1. Never edit a released migration; add a new one. Version 1 is
 * SQLite's version 8 in PostgreSQL's types: integers are BIGINT (unix
 * seconds, micro-USD), hashes and ciphertexts BYTEA, flags SMALLINT 0/1 as
 * on SQLite. The revision triggers bump key_revision once per statement
 * and notify KG_PG_CHANNEL with the new revision, delivered at commit.
 */
static const char *const pg_migrations[] = {
    /* 0 → 1 */
    "CREATE TABLE workspaces ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  mode TEXT NOT NULL DEFAULT 'api-keys'"
    "    CHECK (mode IN ('api-keys', 'credits', 'hybrid', 'pool')),"
    "  credits_balance BIGINT NOT NULL DEFAULT 0,"
    "  rules TEXT NOT NULL DEFAULT '{}',"
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL);"
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
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL,"
    "  last_used_at BIGINT,"
    "  expires_at BIGINT,"
    "  usage_limit BIGINT,"
    "  usage BIGINT NOT NULL DEFAULT 0,"
    "  period TEXT CHECK (period IN ('hour', 'day', 'week', 'month')),"
    "  period_limit BIGINT,"
    "  period_usage BIGINT NOT NULL DEFAULT 0,"
    "  period_started_at BIGINT,"
    "  rpm BIGINT,"
    "  tpm BIGINT,"
    "  max_concurrent BIGINT,"
    "  rules TEXT NOT NULL DEFAULT '{}',"
    "  reserved BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX api_keys_workspace ON api_keys(workspace_id);"
    "CREATE INDEX api_keys_expiry ON api_keys(expires_at)"
    "  WHERE status <> 'deleted' AND expires_at IS NOT NULL;"
    "CREATE TABLE key_secrets ("
    "  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,"
    "  hash BYTEA NOT NULL CHECK (length(hash) = 32),"
    "  created_at BIGINT NOT NULL,"
    "  expires_at BIGINT,"
    "  PRIMARY KEY (key_id, hash));"
    "CREATE TABLE audit_events ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  at BIGINT NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  object_type TEXT NOT NULL,"
    "  object_id TEXT NOT NULL,"
    "  detail TEXT NOT NULL DEFAULT '{}');"
    "CREATE INDEX audit_events_object_id ON audit_events(object_id);"
    "CREATE TABLE usage_events ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  request_id TEXT NOT NULL UNIQUE,"
    "  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,"
    "  workspace_id TEXT NOT NULL,"
    "  at_ms BIGINT NOT NULL,"
    "  operation TEXT NOT NULL,"
    "  model TEXT NOT NULL DEFAULT '',"
    "  provider TEXT NOT NULL DEFAULT '',"
    "  mode TEXT NOT NULL DEFAULT 'api-keys'"
    "    CHECK (mode IN ('api-keys', 'credits', 'pool')),"
    "  status BIGINT NOT NULL,"
    "  prompt_tokens BIGINT NOT NULL DEFAULT 0,"
    "  completion_tokens BIGINT NOT NULL DEFAULT 0,"
    "  cached_tokens BIGINT NOT NULL DEFAULT 0,"
    "  cost BIGINT NOT NULL DEFAULT 0,"
    "  latency_ms BIGINT NOT NULL DEFAULT 0,"
    "  ttft_ms BIGINT,"
    "  streamed SMALLINT NOT NULL DEFAULT 0,"
    "  client_ip TEXT NOT NULL DEFAULT '',"
    "  error_code TEXT);"
    "CREATE INDEX usage_events_key_time ON usage_events(key_id, at_ms);"
    "CREATE INDEX usage_events_time ON usage_events(at_ms);"
    "CREATE TABLE usage_rollup ("
    "  key_id TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,"
    "  hour BIGINT NOT NULL,"
    "  model TEXT NOT NULL DEFAULT '',"
    "  provider TEXT NOT NULL DEFAULT '',"
    "  workspace_id TEXT NOT NULL,"
    "  requests BIGINT NOT NULL DEFAULT 0,"
    "  errors BIGINT NOT NULL DEFAULT 0,"
    "  prompt_tokens BIGINT NOT NULL DEFAULT 0,"
    "  completion_tokens BIGINT NOT NULL DEFAULT 0,"
    "  cached_tokens BIGINT NOT NULL DEFAULT 0,"
    "  cost BIGINT NOT NULL DEFAULT 0,"
    "  streamed BIGINT NOT NULL DEFAULT 0,"
    "  latency_ms_sum BIGINT NOT NULL DEFAULT 0,"
    "  latency_ms_max BIGINT NOT NULL DEFAULT 0,"
    "  ttft_ms_sum BIGINT NOT NULL DEFAULT 0,"
    "  ttft_count BIGINT NOT NULL DEFAULT 0,"
    "  lat_5 BIGINT NOT NULL DEFAULT 0, lat_10 BIGINT NOT NULL DEFAULT 0,"
    "  lat_25 BIGINT NOT NULL DEFAULT 0, lat_50 BIGINT NOT NULL DEFAULT 0,"
    "  lat_100 BIGINT NOT NULL DEFAULT 0, lat_250 BIGINT NOT NULL DEFAULT 0,"
    "  lat_500 BIGINT NOT NULL DEFAULT 0, lat_1000 BIGINT NOT NULL DEFAULT 0,"
    "  lat_2500 BIGINT NOT NULL DEFAULT 0,"
    "  lat_5000 BIGINT NOT NULL DEFAULT 0,"
    "  lat_10000 BIGINT NOT NULL DEFAULT 0,"
    "  lat_30000 BIGINT NOT NULL DEFAULT 0,"
    "  lat_60000 BIGINT NOT NULL DEFAULT 0,"
    "  lat_120000 BIGINT NOT NULL DEFAULT 0,"
    "  lat_inf BIGINT NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (key_id, hour, model, provider));"
    "CREATE INDEX usage_rollup_hour ON usage_rollup(hour);"
    "CREATE INDEX usage_rollup_workspace ON usage_rollup(workspace_id, hour);"
    "CREATE TABLE workspace_credentials ("
    "  workspace_id TEXT NOT NULL"
    "    REFERENCES workspaces(id) ON DELETE CASCADE,"
    "  provider TEXT NOT NULL,"
    "  nonce BYTEA NOT NULL CHECK (length(nonce) = 24),"
    "  ciphertext BYTEA NOT NULL CHECK (length(ciphertext) > 16),"
    "  last4 TEXT NOT NULL DEFAULT '',"
    "  created_at BIGINT NOT NULL,"
    "  updated_at BIGINT NOT NULL,"
    "  PRIMARY KEY (workspace_id, provider));"
    "CREATE TABLE admin_tokens ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  last4 TEXT NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  read_only SMALLINT NOT NULL DEFAULT 0 CHECK (read_only IN (0, 1)),"
    "  hash BYTEA NOT NULL CHECK (length(hash) = 32),"
    "  created_at BIGINT NOT NULL,"
    "  expires_at BIGINT,"
    "  last_used_at BIGINT,"
    "  revoked_at BIGINT);"
    "CREATE TABLE key_revision ("
    "  id SMALLINT PRIMARY KEY CHECK (id = 1),"
    "  rev BIGINT NOT NULL);"
    "INSERT INTO key_revision (id, rev) VALUES (1, 0);"
    "CREATE FUNCTION keygate_bump_revision() RETURNS trigger"
    "  LANGUAGE plpgsql AS $$"
    "DECLARE r BIGINT;"
    "BEGIN"
    "  UPDATE key_revision SET rev = rev + 1 WHERE id = 1 RETURNING rev"
    "    INTO r;"
    "  PERFORM pg_notify('" KG_PG_CHANNEL "', r::text);"
    "  RETURN NULL;"
    "END $$;"
    "CREATE TRIGGER api_keys_rev AFTER INSERT OR DELETE OR UPDATE OF status,"
    "  expires_at, workspace_id, prefix, usage_limit, period, period_limit,"
    "  rpm, tpm, max_concurrent, rules ON api_keys"
    "  FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_revision();"
    "CREATE TRIGGER key_secrets_rev AFTER INSERT OR UPDATE OR DELETE"
    "  ON key_secrets"
    "  FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_revision();"
    "CREATE TRIGGER workspaces_rev AFTER UPDATE OF mode, rules ON workspaces"
    "  FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_revision();"
    "CREATE TRIGGER workspace_credentials_rev AFTER INSERT OR UPDATE OR"
    "  DELETE ON workspace_credentials"
    "  FOR EACH STATEMENT EXECUTE FUNCTION keygate_bump_revision();",
};

_Static_assert(sizeof(pg_migrations) / sizeof(*pg_migrations) ==
                   KG_PG_SCHEMA_VERSION,
               "one migration per schema version");

/* The PostgreSQL handle behind a store handle of this backend. */
static pg_store_t *pq(kg_store_t *store)
{
    assert(store->be == &kg_pg_backend);
    return (pg_store_t *)store;
}

/*
 * "postgresql://user@host:port/dbname" from the URL's parts, never its
 * password, into out; the URL itself when it cannot be parsed (libpq then
 * refuses it too).
 */
static void pg_location(const char *url, char *out, size_t len)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    const char *user = "", *host = "", *port = "", *db = "";

    if (opts == NULL) {
        snprintf(out, len, "postgresql://(unparsable URL)");
        return;
    }
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        const char *v = o->val ? o->val : "";

        if (strcmp(o->keyword, "user") == 0) {
            user = v;
        } else if (strcmp(o->keyword, "host") == 0) {
            host = v;
        } else if (strcmp(o->keyword, "port") == 0) {
            port = v;
        } else if (strcmp(o->keyword, "dbname") == 0) {
            db = v;
        }
    }
    snprintf(out, len, "postgresql://%s%s%s%s%s/%s", user, *user ? "@" : "",
             host, *port ? ":" : "", port, db);
    PQconninfoFree(opts);
}

/* The server's notices (e.g. "already exists, skipping") are not errors:
 * libpq would print them on stderr. */
static void pg_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Connect (or reconnect) the handle; prepared statements start afresh. */
static kg_err_t pg_connect(pg_store_t *s, kg_diag_t *diag)
{
    static const char *const keys[] = {"dbname", "application_name",
                                       "connect_timeout", NULL};
    const char *vals[] = {s->url, "keygate", PG_CONNECT_TIMEOUT, NULL};

    if (s->conn != NULL) {
        PQfinish(s->conn);
        s->reconnects++;
    }
    s->nstmts = 0;
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (s->conn == NULL) {
        return kg_diag_fail(diag, KG_ERR_NOMEM, "%s: out of memory",
                            s->base.location);
    }
    if (PQstatus(s->conn) != CONNECTION_OK) {
        /* libpq's message names the host and user, never the password. */
        char msg[256];

        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(s->conn));
        msg[strcspn(msg, "\n")] = '\0';
        return kg_diag_fail(diag, KG_ERR_STORE, "%s: cannot connect: %s",
                            s->base.location, msg);
    }
    PQsetNoticeProcessor(s->conn, pg_notice, NULL);
    return KG_OK;
}

/* Map a failed result to a keygate error: SQLSTATE class, no values. */
static kg_err_t pg_error(pg_store_t *s, const PGresult *res, const char *action,
                         kg_diag_t *diag)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *constraint =
        res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;

    if (state == NULL || PQstatus(s->conn) != CONNECTION_OK) {
        char msg[256];

        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(s->conn));
        msg[strcspn(msg, "\n")] = '\0';
        return kg_diag_fail(diag, KG_ERR_STORE, "%s: %s: %s", s->base.location,
                            action, msg[0] ? msg : "the server did not answer");
    }
    if (strcmp(state, "23505") == 0 || strcmp(state, "23503") == 0) {
        return kg_diag_fail(
            diag, KG_ERR_EXISTS, "%s: %s: constraint %s failed (SQLSTATE %s)",
            s->base.location, action, constraint ? constraint : "?", state);
    }
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
        strcmp(state, "55P03") == 0) {
        return kg_diag_fail(diag, KG_ERR_STORE_BUSY,
                            "%s: %s: the store is busy (SQLSTATE %s)",
                            s->base.location, action, state);
    }
    return kg_diag_fail(diag, KG_ERR_STORE, "%s: %s: SQLSTATE %s",
                        s->base.location, action, state);
}

/* The name of sql's prepared statement, preparing it if new. */
static kg_err_t pg_prepare(pg_store_t *s, const char *sql, int nparams,
                           char name[24], kg_diag_t *diag)
{
    PGresult *res;
    kg_err_t rc = KG_OK;

    for (size_t i = 0; i < s->nstmts; i++) {
        if (s->stmts[i].sql == sql) {
            snprintf(name, 24, "kg%zu", i);
            return KG_OK;
        }
    }
    if (s->nstmts == PG_MAX_STMTS) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "statement cache full");
    }
    snprintf(name, 24, "kg%zu", s->nstmts);
    res = PQprepare(s->conn, name, sql, nparams, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = pg_error(s, res, "preparing a statement", diag);
    } else {
        s->stmts[s->nstmts++].sql = sql;
    }
    PQclear(res);
    return rc;
}

kg_err_t kg_pg_query(kg_store_t *store, const char *sql,
                     const kg_pg_params_t *params, PGresult **res,
                     const char *action, kg_diag_t *diag)
{
    pg_store_t *s = pq(store);
    int n = params ? params->n : 0;
    char name[24];
    ExecStatusType st;
    kg_err_t rc;

    *res = NULL;
    /* A lost connection outside a transaction is reopened; inside one the
     * transaction is gone, and the caller's commit reports it. */
    if (PQstatus(s->conn) != CONNECTION_OK &&
        PQtransactionStatus(s->conn) != PQTRANS_INTRANS) {
        rc = pg_connect(s, diag);
        if (rc != KG_OK) {
            return rc;
        }
    }
    rc = pg_prepare(s, sql, n, name, diag);
    if (rc != KG_OK) {
        return rc;
    }
    *res = PQexecPrepared(s->conn, name, n, params ? params->values : NULL,
                          params ? params->lengths : NULL,
                          params ? params->formats : NULL, 0);
    st = PQresultStatus(*res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        rc = pg_error(s, *res, action, diag);
        PQclear(*res);
        *res = NULL;
    }
    return rc;
}

kg_err_t kg_pg_exec(kg_store_t *store, const char *sql,
                    const kg_pg_params_t *params, int64_t *changed,
                    const char *action, kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_err_t rc = kg_pg_query(store, sql, params, &res, action, diag);

    if (rc == KG_OK && changed != NULL) {
        *changed = strtoll(PQcmdTuples(res), NULL, 10);
    }
    PQclear(res);
    return rc;
}

static void pg_param(kg_pg_params_t *p, const char *v, int len, int format)
{
    assert(p->n < KG_PG_MAX_PARAMS);
    p->values[p->n] = v;
    p->lengths[p->n] = len;
    p->formats[p->n] = format;
    p->n++;
}

void kg_pg_param_text(kg_pg_params_t *p, const char *s)
{
    pg_param(p, s, 0, 0);
}

void kg_pg_param_int(kg_pg_params_t *p, int64_t v)
{
    assert(p->n < KG_PG_MAX_PARAMS);
    snprintf(p->ints[p->n], sizeof(p->ints[p->n]), "%" PRId64, v);
    pg_param(p, p->ints[p->n], 0, 0);
}

void kg_pg_param_opt_int(kg_pg_params_t *p, int64_t v)
{
    if (v < 0) {
        pg_param(p, NULL, 0, 0);
    } else {
        kg_pg_param_int(p, v);
    }
}

void kg_pg_param_bool(kg_pg_params_t *p, int v)
{
    kg_pg_param_int(p, v ? 1 : 0);
}

void kg_pg_param_bytes(kg_pg_params_t *p, const void *b, size_t len)
{
    pg_param(p, b, (int)len, 1);
}

const char *kg_pg_col_text(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col);
}

int64_t kg_pg_col_int(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        return -1;
    }
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

int kg_pg_col_bool(const PGresult *res, int row, int col)
{
    const char *v = kg_pg_col_text(res, row, col);

    return v[0] == 't' || (v[0] >= '1' && v[0] <= '9');
}

int kg_pg_col_bytes(const PGresult *res, int row, int col, void *out,
                    size_t len)
{
    const char *v = kg_pg_col_text(res, row, col);
    size_t got = 0;

    /* Text results show bytea as "\x" and two hex digits a byte. */
    if (strncmp(v, "\\x", 2) != 0 || strlen(v + 2) != 2 * len) {
        return 0;
    }
    return sodium_hex2bin(out, len, v + 2, 2 * len, NULL, &got, NULL) == 0 &&
           got == len;
}

PGconn *kg_pg_conn(kg_store_t *store)
{
    return pq(store)->conn;
}

uint64_t kg_pg_reconnects(const kg_store_t *store)
{
    return ((const pg_store_t *)store)->reconnects;
}

/* Run a fixed text (no parameters; migrations and transactions). */
static kg_err_t pg_simple(pg_store_t *s, const char *sql, const char *action,
                          kg_diag_t *diag)
{
    PGresult *res = PQexec(s->conn, sql);
    kg_err_t rc = KG_OK;

    if (PQresultStatus(res) != PGRES_COMMAND_OK &&
        PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = pg_error(s, res, action, diag);
    }
    PQclear(res);
    return rc;
}

static kg_err_t pg_begin(kg_store_t *store, kg_diag_t *diag)
{
    pg_store_t *s = pq(store);

    if (PQstatus(s->conn) != CONNECTION_OK) {
        kg_err_t rc = pg_connect(s, diag);

        if (rc != KG_OK) {
            return rc;
        }
    }
    return pg_simple(s, "BEGIN", "starting a transaction", diag);
}

static void pg_rollback(kg_store_t *store)
{
    pg_store_t *s = pq(store);

    if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PQclear(PQexec(s->conn, "ROLLBACK"));
    }
}

static kg_err_t pg_commit(kg_store_t *store, kg_diag_t *diag)
{
    kg_err_t rc = pg_simple(pq(store), "COMMIT", "committing", diag);

    if (rc != KG_OK) {
        pg_rollback(store);
    }
    return rc;
}

static const char pg_sql_ping[] = "SELECT rev FROM key_revision WHERE id = 1";

static kg_err_t pg_ping(kg_store_t *store, kg_diag_t *diag)
{
    PGresult *res = NULL;
    kg_err_t rc = kg_pg_query(store, pg_sql_ping, NULL, &res,
                              "reading the key revision", diag);

    PQclear(res);
    return rc;
}

/* Read the schema version (0 for an empty database) into *version. */
static kg_err_t pg_read_version(pg_store_t *s, int *version, kg_diag_t *diag)
{
    PGresult *res;
    kg_err_t rc = pg_simple(s,
                            "CREATE TABLE IF NOT EXISTS keygate_schema ("
                            "  id SMALLINT PRIMARY KEY CHECK (id = 1),"
                            "  version INTEGER NOT NULL)",
                            "reading the schema", diag);

    *version = 0;
    if (rc != KG_OK) {
        return rc;
    }
    res = PQexec(s->conn, "SELECT version FROM keygate_schema WHERE id = 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = pg_error(s, res, "reading the schema", diag);
    } else if (PQntuples(res) == 1) {
        *version = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return rc;
}

/*
 * Bring the schema to target in one transaction under an advisory lock,
 * so that instances starting together migrate once.
 */
static kg_err_t pg_migrate(pg_store_t *s, int target, kg_diag_t *diag)
{
    char sql[128];
    int version = 0;
    kg_err_t rc = pg_begin(&s->base, diag);

    if (rc != KG_OK) {
        return rc;
    }
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%d)",
             PG_MIGRATION_LOCK);
    rc = pg_simple(s, "SET LOCAL client_min_messages = warning",
                   "migrating the schema", diag);
    if (rc == KG_OK) {
        rc = pg_simple(s, sql, "migrating the schema", diag);
    }
    if (rc == KG_OK) {
        rc = pg_read_version(s, &version, diag);
    }
    if (rc == KG_OK && version > KG_PG_SCHEMA_VERSION) {
        rc = kg_diag_fail(diag, KG_ERR_STORE_VERSION,
                          "%s has schema version %d, newer than this keygate "
                          "(%d); upgrade keygate",
                          s->base.location, version, KG_PG_SCHEMA_VERSION);
    }
    for (int v = version; rc == KG_OK && v < target; v++) {
        rc = pg_simple(s, pg_migrations[v], "migrating the schema", diag);
    }
    if (rc == KG_OK && version < target) {
        snprintf(sql, sizeof(sql),
                 "INSERT INTO keygate_schema (id, version) VALUES (1, %d) "
                 "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
                 target);
        rc = pg_simple(s, sql, "migrating the schema", diag);
        version = target;
    }
    if (rc == KG_OK) {
        rc = pg_commit(&s->base, diag);
    } else {
        pg_rollback(&s->base);
    }
    s->base.schema_version = version;
    return rc;
}

kg_err_t kg_pg_open(const char *url, const kg_store_opts_t *opts,
                    kg_store_t **out, kg_diag_t *diag)
{
    char location[PG_LOCATION_MAX];
    pg_store_t *s = NULL;
    int target =
        opts->target_version ? opts->target_version : KG_PG_SCHEMA_VERSION;
    kg_err_t rc;

    *out = NULL;
    if (target < 1 || target > KG_PG_SCHEMA_VERSION) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL, "bad schema target %d",
                            target);
    }
    pg_location(url, location, sizeof(location));
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->url = strdup(url)) == NULL ||
        (s->base.location = strdup(location)) == NULL) {
        if (s != NULL) {
            free(s->url);
        }
        free(s);
        return KG_ERR_NOMEM;
    }
    s->base.be = &kg_pg_backend;
    rc = pg_connect(s, diag);
    if (rc == KG_OK) {
        rc = pg_migrate(s, target, diag);
    }
    if (rc != KG_OK) {
        kg_store_t *base = &s->base;

        kg_store_close(&base);
        return rc;
    }
    *out = &s->base;
    return KG_OK;
}

static void pg_close(kg_store_t *store)
{
    pg_store_t *s = pq(store);

    PQfinish(s->conn);
    if (s->url != NULL) {
        sodium_memzero(s->url, strlen(s->url));
    }
    free(s->url);
    free(s->base.location);
    free(s);
}

const kg_store_backend_t kg_pg_backend = {
    .name = "postgresql",
    .close = pg_close,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .ping = pg_ping,
    .admin_tokens = &kg_pg_admin_tokens_ops,
};
