/* A PostgreSQL server of the tests' own, on a free loopback port. */
#ifndef KEYGATE_TESTS_PG_SERVER_H
#define KEYGATE_TESTS_PG_SERVER_H

#include <stdbool.h>

/* Room for the paths and URLs of a test server. */
#define PGS_PATH_MAX 512

typedef struct pgs {
    char dir[64];      /* the temporary directory (postgres owns it) */
    char passfile[96]; /* libpq's password file for the test role */
    int port;
    bool running;
} pgs_t;

/*
 * Start a server: initdb (as the postgres user: the server refuses root)
 * on a fresh directory under /tmp with scram-sha-256 authentication and a
 * random password for the role keygate_test, then pg_ctl start listening on
 * 127.0.0.1 only, on a port the kernel chose free. Fails the test (Check)
 * with the server's log when anything goes wrong.
 */
void pgs_start(pgs_t *pg);

/* Stop the server (fast shutdown) and remove its directory. */
void pgs_destroy(pgs_t *pg);

/* Stop the server, keeping its data (immediate: like a crash when hard). */
void pgs_stop(pgs_t *pg, bool hard);

/* Start a stopped server again on the same port and data. */
void pgs_restart(pgs_t *pg);

/*
 * Create database name (dropping any of that name first) and write its URL
 * for keygate into url (PGS_PATH_MAX bytes): the password comes from the
 * passfile named in the URL, never from the URL itself.
 */
void pgs_create_db(pgs_t *pg, const char *name, char *url);

/*
 * The contract tests' stores: a fresh database name on the server opened
 * (and migrated) with kg_store_open, or a fresh SQLite file in dir (made by
 * the caller with ut_tmpdir). Fail the test when they cannot be opened.
 */
struct kg_store;
struct kg_store *pgs_open(pgs_t *pg, const char *name);
struct kg_store *pgs_open_sqlite(const char *dir);

#endif /* KEYGATE_TESTS_PG_SERVER_H */
