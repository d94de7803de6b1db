/* A PostgreSQL server of the tests' own, on a free loopback port. */
#include "pg_server.h"

#include "keygate/store.h"

#include <arpa/inet.h>
#include <check.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Debian 12's server binaries (package postgresql-15). */
#define PGS_BIN  "/usr/lib/postgresql/15/bin"
#define PGS_ROLE "keygate_test"

/* The server's notices ("does not exist, skipping") are not news. */
static void pgs_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Run a shell command; fail the test with the server log when it fails. */
static void pgs_sh(const pgs_t *pg, const char *cmd)
{
    int rc = system(cmd);

    if (rc != 0) {
        char log[PGS_PATH_MAX + 32];

        snprintf(log, sizeof(log), "tail -n 30 %s/log >&2", pg->dir);
        (void)system(log);
        ck_abort_msg("PostgreSQL test server: '%s' failed (%d)", cmd, rc);
    }
}

/* A port on 127.0.0.1 that the kernel reports free now. */
static int pgs_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port;

    ck_assert_int_ge(fd, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void pgs_ctl_start(pgs_t *pg)
{
    char cmd[4 * PGS_PATH_MAX];

    /* No fsync: a server crash (immediate stop) still finds its WAL in
     * the kernel's page cache; only a crash of the machine would lose it. */
    snprintf(cmd, sizeof(cmd),
             "runuser -u postgres -- " PGS_BIN "/pg_ctl -D %s/data -l %s/log "
             "-w -t 60 -o \"-c listen_addresses=127.0.0.1 -p %d "
             "-c unix_socket_directories=%s -c max_connections=200 "
             "-c fsync=off\" start "
             ">/dev/null",
             pg->dir, pg->dir, pg->port, pg->dir);
    pgs_sh(pg, cmd);
    pg->running = true;
}

void pgs_start(pgs_t *pg)
{
    char cmd[4 * PGS_PATH_MAX];
    char path[PGS_PATH_MAX + 16];
    char password[33];
    unsigned char raw[16];
    FILE *f;

    memset(pg, 0, sizeof(*pg));
    ck_assert_msg(access(PGS_BIN "/initdb", X_OK) == 0,
                  "no " PGS_BIN "/initdb: run scripts/setup-debian");
    snprintf(pg->dir, sizeof(pg->dir), "/tmp/kg-pg-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(pg->dir));
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(password, sizeof(password), raw, sizeof(raw));
    snprintf(path, sizeof(path), "%s/pw", pg->dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", password);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "chown -R postgres:postgres %s && chmod 700 %s && "
             "runuser -u postgres -- " PGS_BIN "/initdb -D %s/data -U " PGS_ROLE
             " --auth=scram-sha-256 --pwfile=%s/pw -E UTF8 "
             "--no-instructions --no-sync >%s/initdb.log 2>&1",
             pg->dir, pg->dir, pg->dir, pg->dir, pg->dir);
    pgs_sh(pg, cmd);
    unlink(path);
    pg->port = pgs_free_port();
    /* libpq's password file: host:port:database:user:password, 0600. */
    snprintf(pg->passfile, sizeof(pg->passfile), "%s/pgpass", pg->dir);
    f = fopen(pg->passfile, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "127.0.0.1:%d:*:" PGS_ROLE ":%s\n", pg->port, password);
    fclose(f);
    ck_assert_int_eq(chmod(pg->passfile, 0600), 0);
    sodium_memzero(password, sizeof(password));
    pgs_ctl_start(pg);
}

void pgs_stop(pgs_t *pg, bool hard)
{
    char cmd[3 * PGS_PATH_MAX];

    if (!pg->running) {
        return;
    }
    snprintf(cmd, sizeof(cmd),
             "runuser -u postgres -- " PGS_BIN "/pg_ctl -D %s/data -m %s -w "
             "-t 60 stop >/dev/null",
             pg->dir, hard ? "immediate" : "fast");
    pgs_sh(pg, cmd);
    pg->running = false;
}

void pgs_restart(pgs_t *pg)
{
    if (!pg->running) {
        pgs_ctl_start(pg);
    }
}

void pgs_destroy(pgs_t *pg)
{
    char cmd[3 * PGS_PATH_MAX];

    if (pg->dir[0] == '\0') {
        return;
    }
    /* Whatever a test left it in (a child process may have stopped or
     * restarted it): stop it if it runs, never abort here. */
    snprintf(cmd, sizeof(cmd),
             "runuser -u postgres -- " PGS_BIN "/pg_ctl -D %s/data -m fast -w "
             "-t 60 stop >/dev/null 2>&1",
             pg->dir);
    (void)system(cmd);
    pg->running = false;
    snprintf(cmd, sizeof(cmd), "rm -rf -- %s", pg->dir);
    (void)system(cmd);
    pg->dir[0] = '\0';
}

void pgs_create_db(pgs_t *pg, const char *name, char *url)
{
    char admin[PGS_PATH_MAX];
    char sql[256];
    PGconn *c;
    PGresult *r;

    snprintf(admin, sizeof(admin),
             "postgresql://" PGS_ROLE "@127.0.0.1:%d/postgres?passfile=%s",
             pg->port, pg->passfile);
    c = PQconnectdb(admin);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s",
                  PQerrorMessage(c));
    PQsetNoticeProcessor(c, pgs_quiet, NULL);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQerrorMessage(c));
    PQclear(r);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql,
                  PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    snprintf(url, PGS_PATH_MAX,
             "postgresql://" PGS_ROLE "@127.0.0.1:%d/%s?passfile=%s", pg->port,
             name, pg->passfile);
}

struct kg_store *pgs_open(pgs_t *pg, const char *name)
{
    char url[PGS_PATH_MAX];
    kg_store_opts_t opts = {0, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    pgs_create_db(pg, name, url);
    ck_assert_msg(kg_store_open(url, &opts, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    return s;
}

struct kg_store *pgs_open_sqlite(const char *dir)
{
    char path[PGS_PATH_MAX];
    kg_store_opts_t opts = {KG_STORE_CREATE, 5000, 0, NULL};
    kg_diag_t diag = {{0}};
    kg_store_t *s = NULL;

    snprintf(path, sizeof(path), "%s/keygate.db", dir);
    ck_assert_msg(kg_store_open(path, &opts, &s, &diag) == KG_OK, "%s",
                  diag.msg);
    return s;
}
