/* Shared helpers of keygate's Check unit suites: temp dirs, files, main. */
#define _XOPEN_SOURCE 700
#include "unit_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The per-run parent of every test's directory. Each test makes its own
 * mkdtemp() directory inside it; the runner removes the parent at the end,
 * which also cleans up after tests that failed (Check's child calls _exit).
 */
static char ut_base[UT_PATH_MAX];

static int ut_rm_entry(const char *path, const struct stat *st, int flag,
                       struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void ut_tmpdir_remove(const char *dir)
{
    if (dir != NULL && dir[0] != '\0') {
        nftw(dir, ut_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

void ut_tmpdir(char *dir)
{
    int n;

    if (ut_base[0] != '\0') {
        n = snprintf(dir, UT_PATH_MAX, "%s/t-XXXXXX", ut_base);
    } else {
        n = snprintf(dir, UT_PATH_MAX, "/tmp/kg-unit-XXXXXX");
    }
    ck_assert(n > 0 && n < UT_PATH_MAX);
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
}

const char *ut_join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, UT_PATH_MAX, "%s/%s", dir, name);

    ck_assert(n > 0 && n < UT_PATH_MAX);
    return out;
}

void ut_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
    ck_assert(len == 0 || write(fd, data, len) == (ssize_t)len);
    ck_assert(fchmod(fd, mode) == 0);
    ck_assert(close(fd) == 0);
}

void ut_write_text(const char *path, const char *text)
{
    ut_write_file(path, text, strlen(text), 0600);
}

char *ut_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    size_t r;

    if (f == NULL) {
        return NULL;
    }
    do {
        if (n + 4096 + 1 > cap) {
            char *grown;

            cap = cap ? cap * 2 : 8192;
            grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        r = fread(buf + n, 1, 4096, f);
        n += r;
    } while (r > 0);
    fclose(f);
    buf[n] = '\0';
    if (len != NULL) {
        *len = n;
    }
    return buf;
}

int ut_file_mode(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        return -1;
    }
    return (int)(st.st_mode & 07777);
}

int64_t ut_utc(int year, int month, int day, int hour, int min, int sec)
{
    /* Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant). */
    int64_t y = year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = (month + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;

    return days * 86400 + hour * 3600 + min * 60 + sec;
}

int ut_run(Suite *suite)
{
    SRunner *sr;
    int failed;

    if (sodium_init() < 0) {
        fprintf(stderr, "sodium_init failed\n");
        return 1;
    }
    snprintf(ut_base, sizeof(ut_base), "/tmp/kg-unit-XXXXXX");
    if (mkdtemp(ut_base) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    sr = srunner_create(suite);
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    ut_tmpdir_remove(ut_base);
    return failed == 0 ? 0 : 1;
}

int64_t *ut_sql_ids(sqlite3 *db, const char *sql, size_t max, size_t *n)
{
    sqlite3_stmt *st = NULL;
    int64_t *ids = calloc(max + 1, sizeof(*ids));

    ck_assert_ptr_nonnull(ids);
    ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK,
                  "%s: %s", sql, sqlite3_errmsg(db));
    *n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        ck_assert_uint_lt(*n, max);
        ids[(*n)++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return ids;
}

void ut_audit_of(kg_store_t *store, const char *id, kg_audit_event_t **events,
                 size_t *n)
{
    const kg_query_param_t params[] = {{"object", id}, {"limit", "1000"}};
    kg_audit_query_t q;
    char next[KG_QUERY_CURSOR_STRLEN];
    kg_diag_t diag = {{0}};

    ck_assert_int_eq(kg_audit_query_parse(params, 2, 0, &q, &diag), KG_OK);
    ck_assert_msg(kg_audit_page(store, &q, events, n, next, &diag) == KG_OK,
                  "%s", diag.msg);
    ck_assert_str_eq(next, "");
}
