/* Operating the store: online backups to a file and the status report. */
#include "keygate/storeops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keygate/clock.h"
#include "keygate/duration.h"
#include "keygate/store_usage.h"
#include "keygate/timefmt.h"

/* Files that belong to a store: the store itself and its companions. */
static const char *const storeops_companions[] = {
    "", "-wal", "-shm", "-journal", KG_USAGEDB_JOURNAL_A, KG_USAGEDB_JOURNAL_B,
};

/* Where a backup goes: the real directory, the file name, both joined. */
typedef struct storeops_dest {
    char dir[PATH_MAX];
    char abs[PATH_MAX];
    char tmp[PATH_MAX];
} storeops_dest_t;

/* Whether path names the store at store_path or one of its companions. */
static bool storeops_is_store_file(const char *path, const char *store_path)
{
    char real[PATH_MAX];
    size_t n;

    if (realpath(store_path, real) == NULL) {
        return false;
    }
    n = strlen(real);
    if (strncmp(path, real, n) != 0) {
        return false;
    }
    for (size_t i = 0;
         i < sizeof(storeops_companions) / sizeof(*storeops_companions); i++) {
        if (strcmp(path + n, storeops_companions[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Resolve dest into d: its directory must exist; see kg_storeops_backup. */
static kg_err_t storeops_resolve(kg_store_t *store, const char *dest,
                                 unsigned flags, storeops_dest_t *d,
                                 kg_diag_t *diag)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(dest, '/');
    const char *base = slash != NULL ? slash + 1 : dest;
    struct stat st;
    int n;

    if (strlen(dest) >= sizeof(dir) || *base == '\0' ||
        strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "'%.80s' is not a file name to back up to", dest);
    }
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == dest) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - dest), dest);
    }
    if (realpath(dir, d->dir) == NULL) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "%.200s: %s", dir,
                            strerror(errno));
    }
    n = snprintf(d->abs, sizeof(d->abs), "%s/%s",
                 strcmp(d->dir, "/") == 0 ? "" : d->dir, base);
    if (n > 0 && (size_t)n < sizeof(d->abs)) {
        n = snprintf(d->tmp, sizeof(d->tmp), "%s/.%s.tmp-XXXXXX",
                     strcmp(d->dir, "/") == 0 ? "" : d->dir, base);
    }
    if (n < 0 || (size_t)n >= sizeof(d->tmp)) {
        return kg_diag_fail(diag, KG_ERR_INVAL, "path too long: %.80s", dest);
    }
    if (storeops_is_store_file(d->abs, kg_store_path(store))) {
        return kg_diag_fail(diag, KG_ERR_INVAL,
                            "%s is the store or one of its files; back up to "
                            "another file",
                            d->abs);
    }
    if (lstat(d->abs, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            return kg_diag_fail(diag, KG_ERR_INVAL, "%s is not a regular file",
                                d->abs);
        }
        if (!(flags & KG_STOREOPS_REPLACE)) {
            return kg_diag_fail(diag, KG_ERR_EXISTS,
                                "%s exists; add --force to replace it", d->abs);
        }
    }
    return KG_OK;
}

/* fsync path (a file, or a directory); its size into *bytes (may be NULL). */
static kg_err_t storeops_sync(const char *path, bool is_dir, int64_t *bytes,
                              kg_diag_t *diag)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | (is_dir ? O_DIRECTORY : 0));
    struct stat st;
    kg_err_t rc = KG_OK;

    if (fd < 0 || fsync(fd) != 0 || fstat(fd, &st) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "%s: cannot flush to disk: %s", path,
                          strerror(errno));
    } else if (bytes != NULL) {
        *bytes = (int64_t)st.st_size;
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

/* Remove the temporary copy and the rollback journal SQLite may leave. */
static void storeops_remove_tmp(const char *tmp)
{
    char journal[PATH_MAX + 16];

    unlink(tmp);
    snprintf(journal, sizeof(journal), "%s-journal", tmp);
    unlink(journal);
}

kg_err_t kg_storeops_backup(kg_store_t *store, const char *dest, unsigned flags,
                            const char *actor, kg_storeops_backup_t *out,
                            kg_diag_t *diag)
{
    storeops_dest_t *d = calloc(1, sizeof(*d));
    kg_store_backup_info_t info;
    int64_t t0 = kg_clock_mono_us();
    bool made = false;
    kg_err_t rc;
    int fd;

    memset(out, 0, sizeof(*out));
    if (d == NULL) {
        return KG_ERR_NOMEM;
    }
    rc = storeops_resolve(store, dest, flags, d, diag);
    if (rc != KG_OK) {
        goto out;
    }
    fd = mkstemp(d->tmp); /* mode 0600, whatever the umask */
    if (fd < 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot create a file in %s: %s",
                          d->dir, strerror(errno));
        goto out;
    }
    made = true;
    close(fd);
    rc = kg_store_backup_copy(store, d->tmp, &out->pages, diag);
    if (rc == KG_OK) {
        rc = storeops_sync(d->tmp, false, &out->bytes, diag);
    }
    if (rc == KG_OK && rename(d->tmp, d->abs) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_IO, "cannot rename the copy to %s: %s",
                          d->abs, strerror(errno));
    }
    if (rc != KG_OK) {
        goto out;
    }
    made = false;
    rc = storeops_sync(d->dir, true, NULL, diag);
    if (rc != KG_OK) {
        goto out;
    }
    snprintf(out->path, sizeof(out->path), "%s", d->abs);
    out->duration_ms = (kg_clock_mono_us() - t0) / 1000;
    memset(&info, 0, sizeof(info));
    info.at = kg_clock_now();
    snprintf(info.path, sizeof(info.path), "%s", d->abs);
    info.bytes = out->bytes;
    info.pages = out->pages;
    info.duration_ms = out->duration_ms;
    snprintf(info.actor, sizeof(info.actor), "%s", actor);
    out->recorded =
        kg_store_backup_record(store, &info, &out->record_diag) == KG_OK;
out:
    if (made) {
        storeops_remove_tmp(d->tmp);
    }
    free(d);
    return rc;
}

/* ---- status ------------------------------------------------------------- */

/* Fill f for path (size and mode when it exists). */
static void storeops_file(kg_storeops_file_t *f, const char *name,
                          const char *path, const char *suffix)
{
    struct stat st;

    memset(f, 0, sizeof(*f));
    f->name = name;
    snprintf(f->path, sizeof(f->path), "%s%s", path, suffix);
    if (stat(f->path, &st) == 0) {
        f->present = true;
        f->bytes = (int64_t)st.st_size;
        f->mode = (int)(st.st_mode & 07777);
    }
}

/* The journal scan's state: which records the store does not hold. */
typedef struct storeops_pending {
    kg_store_t *store;
    uint64_t pending;
    kg_err_t rc;
    kg_diag_t diag;
} storeops_pending_t;

static void storeops_pending_fn(void *ud, const kg_usage_event_t *ev)
{
    storeops_pending_t *p = ud;
    bool stored = false;

    if (p->rc != KG_OK) {
        return;
    }
    p->rc = kg_store_usage_stored(p->store, ev->request_id, &stored, &p->diag);
    if (p->rc == KG_OK && !stored) {
        p->pending++;
    }
}

kg_err_t kg_storeops_status(kg_store_t *store, const kg_config_t *cfg,
                            kg_storeops_status_t *out, kg_diag_t *diag)
{
    const char *path = kg_store_path(store);
    /* The local files: the store's own only when it is a file (SQLite);
     * the usage journal always lives beside [store] path. */
    bool local = strcmp(kg_store_backend_name(store), "sqlite") == 0;
    const char *base = local ? path : cfg->store_path;
    storeops_pending_t pend;
    kg_err_t rc;

    memset(out, 0, sizeof(*out));
    snprintf(out->path, sizeof(out->path), "%s", path);
    out->schema_version = kg_store_schema_version(store);
    out->retention = cfg->usage_retention;
    if (local) {
        storeops_file(&out->files[KG_STOREOPS_FILE_DB], "store", path, "");
        storeops_file(&out->files[KG_STOREOPS_FILE_WAL], "wal", path, "-wal");
        storeops_file(&out->files[KG_STOREOPS_FILE_SHM], "shm", path, "-shm");
    }
    storeops_file(&out->files[KG_STOREOPS_FILE_JOURNAL_A], "usage-a", base,
                  KG_USAGEDB_JOURNAL_A);
    storeops_file(&out->files[KG_STOREOPS_FILE_JOURNAL_B], "usage-b", base,
                  KG_USAGEDB_JOURNAL_B);
    storeops_file(&out->files[KG_STOREOPS_FILE_HASH_KEY], "hash.key",
                  cfg->hash_key_file, "");
    storeops_file(&out->files[KG_STOREOPS_FILE_SECRET_KEY], "secret.key",
                  cfg->secret_key_file, "");
    rc = kg_store_space(store, &out->space, diag);
    if (rc == KG_OK) {
        rc = kg_store_counts(store, out->counts, diag);
    }
    if (rc == KG_OK) {
        rc = kg_store_usage_span(store, &out->oldest_event_ms,
                                 &out->newest_event_ms, diag);
    }
    if (rc == KG_OK) {
        rc = kg_store_backup_last(store, &out->backup, &out->has_backup, diag);
    }
    if (rc != KG_OK) {
        return rc;
    }
    memset(&pend, 0, sizeof(pend));
    pend.store = store;
    rc = kg_usagedb_journal_scan(base, storeops_pending_fn, &pend,
                                 &out->journal, diag);
    if (rc == KG_OK && pend.rc != KG_OK) {
        rc = pend.rc;
        kg_diag_set(diag, "%s", pend.diag.msg);
    }
    out->journal_pending = pend.pending;
    return rc;
}

/* An RFC 3339 time in ms (new string), or null for -1. */
static json_t *storeops_json_ms(int64_t ms)
{
    char buf[KG_TIME_STRLEN];

    return ms < 0 ? json_null()
                  : json_string(kg_time_format_ms(ms, buf, sizeof(buf)));
}

static json_t *storeops_files_json(const kg_storeops_status_t *st)
{
    json_t *files = json_array(); /* new */

    for (int i = 0; files != NULL && i < KG_STOREOPS_NFILES; i++) {
        const kg_storeops_file_t *f = &st->files[i];
        char mode[8];

        if (f->name == NULL) {
            continue; /* not a file of this store (PostgreSQL) */
        }
        snprintf(mode, sizeof(mode), "%04o", (unsigned)f->mode);
        if (json_array_append_new(
                files,
                json_pack("{s:s, s:s, s:b, s:o, s:o}", "name", f->name, "path",
                          f->path, "present", f->present, "bytes",
                          f->present ? json_integer(f->bytes) : json_null(),
                          "mode",
                          f->present ? json_string(mode) : json_null())) != 0) {
            json_decref(files);
            files = NULL;
        }
    }
    return files;
}

static json_t *storeops_backup_json(const kg_storeops_status_t *st, int64_t now)
{
    const kg_store_backup_info_t *b = &st->backup;
    char at[KG_TIME_STRLEN];

    if (!st->has_backup) {
        return json_null();
    }
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:s, s:I}", "at",
                     kg_time_format(b->at, at, sizeof(at)), "path", b->path,
                     "bytes", (json_int_t)b->bytes, "pages",
                     (json_int_t)b->pages, "durationMs",
                     (json_int_t)b->duration_ms, "actor", b->actor,
                     "ageSeconds", (json_int_t)(now - b->at));
}

json_t *kg_storeops_status_to_json(const kg_storeops_status_t *st, int64_t now)
{
    const kg_usagedb_journal_info_t *j = &st->journal;
    char retention[KG_DURATION_STRLEN];
    json_t *rows = json_object(); /* new */
    json_t *out;

    for (size_t i = 0; rows != NULL && i < KG_STORE_NTABLES; i++) {
        if (json_object_set_new(rows, st->counts[i].table,
                                json_integer(st->counts[i].rows)) != 0) {
            json_decref(rows);
            rows = NULL;
        }
    }
    out = json_pack(
        "{s:{s:s, s:i, s:I, s:I, s:I}, s:o, s:o, "
        "s:{s:o, s:o, s:o}, s:{s:I, s:I, s:I, s:I, s:I}, s:o}",
        "store", "path", st->path, "schemaVersion", st->schema_version,
        "pageSize", (json_int_t)st->space.page_size, "pages",
        (json_int_t)st->space.pages, "freePages",
        (json_int_t)st->space.free_pages, "files", storeops_files_json(st),
        "rows", rows, "usageEvents", "oldest",
        storeops_json_ms(st->oldest_event_ms), "newest",
        storeops_json_ms(st->newest_event_ms), "retention",
        st->retention > 0 ? json_string(kg_duration_format(
                                st->retention, retention, sizeof(retention)))
                          : json_null(),
        "journal", "bytes", (json_int_t)(j->bytes[0] + j->bytes[1]), "records",
        (json_int_t)j->records, "pending", (json_int_t)st->journal_pending,
        "invalid", (json_int_t)j->invalid, "tornBytes",
        (json_int_t)j->torn_bytes, "lastBackup", storeops_backup_json(st, now));
    return out;
}
