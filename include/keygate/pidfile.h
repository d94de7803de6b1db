/* The daemon's pid file: written at start, read by 'keygate reload'. */
#ifndef KEYGATE_PIDFILE_H
#define KEYGATE_PIDFILE_H

#include <sys/types.h>

#include "keygate/err.h"

/*
 * Write the calling process's id to path (tmp file + rename, mode 0644).
 * A file that names another running keygate is an error (KG_ERR_EXISTS:
 * two daemons on one pid file); one left by a process that is gone is
 * replaced. KG_OK, KG_ERR_EXISTS or KG_ERR_IO, with diag.
 */
kg_err_t kg_pidfile_write(const char *path, kg_diag_t *diag) KG_MUST_CHECK;

/*
 * The running keygate named by path: KG_OK with *pid, or KG_ERR_NOT_FOUND
 * with diag saying why (no file, no number in it, no such process, or a
 * process that is not keygate: a stale file whose number was reused).
 */
kg_err_t kg_pidfile_read(const char *path, pid_t *pid,
                         kg_diag_t *diag) KG_MUST_CHECK;

/* Remove path if it still names the calling process (at exit). */
void kg_pidfile_remove(const char *path);

#endif /* KEYGATE_PIDFILE_H */
