/* Shared helpers of keygate's Check unit suites: temp dirs, files, main. */
#ifndef KEYGATE_UNIT_UTIL_H
#define KEYGATE_UNIT_UTIL_H

#include <check.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "keygate/audit.h"
#include "keygate/store.h"

/* Room for every path a unit test builds. */
#define UT_PATH_MAX 512

/* Number of rows of a table. */
#define UT_NROWS(a) (sizeof(a) / sizeof((a)[0]))

/*
 * Make a fresh, private directory with mkdtemp() and write its path to dir
 * (UT_PATH_MAX bytes). The test removes it with ut_tmpdir_remove(); if the
 * test fails first, ut_run() removes it after the suite.
 */
void ut_tmpdir(char *dir);

/* Remove dir and everything below it (no-op when missing). */
void ut_tmpdir_remove(const char *dir);

/* Write "<dir>/<name>" into out (UT_PATH_MAX bytes); returns out. */
const char *ut_join(char *out, const char *dir, const char *name);

/* Create or truncate path with exactly these bytes and this mode. */
void ut_write_file(const char *path, const void *data, size_t len, mode_t mode);

/* Write a NUL-terminated string to path with mode 0600. */
void ut_write_text(const char *path, const char *text);

/*
 * The whole file as a new NUL-terminated buffer (free it), its size in
 * *len (may be NULL); NULL when the file cannot be read.
 */
char *ut_read_file(const char *path, size_t *len);

/* The permission bits of path, or -1 when it does not exist. */
int ut_file_mode(const char *path);

/* Unix seconds of a UTC civil time, computed without libc's calendar. */
int64_t ut_utc(int year, int month, int day, int hour, int min, int sec);

/*
 * The first column of every row of sql on db as integers (ids), at most
 * max of them (asserted): a new array (free it), *n their number.
 */
int64_t *ut_sql_ids(sqlite3 *db, const char *sql, size_t max, size_t *n);

/* Every audit event of object id, newest first (asserted; one page of at
 * most 1000). Free with kg_audit_events_free. */
void ut_audit_of(kg_store_t *store, const char *id, kg_audit_event_t **events,
                 size_t *n);

/*
 * Initialise libsodium, run the suite (CK_FORK unless the environment says
 * otherwise), clean up leftover temp dirs. Returns the exit status for
 * main(): 0 when every test passed.
 */
int ut_run(Suite *suite);

#endif /* KEYGATE_UNIT_UTIL_H */
