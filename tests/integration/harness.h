/* A small harness for keygate's integration tests: files, children, ports. */
#ifndef KEYGATE_TEST_HARNESS_H
#define KEYGATE_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Limits: every wait and every buffer of the harness is bounded. */
#define KG_HARNESS_TIMEOUT_MS 10000       /* default for kg_harness_run */
#define KG_HARNESS_OUTPUT_MAX (16u << 20) /* bytes kept per stream */
#define KG_HARNESS_FILE_MAX   (64u << 20) /* largest file read whole */
#define KG_HARNESS_REAP_MS    5000        /* wait for a SIGKILLed child to go */
#define KG_HARNESS_MAX_ARGS   64          /* longest argv the helpers build */

/*
 * What to run. argv[0] is looked up in PATH when it has no '/'. env holds
 * extra "NAME=value" entries that override the inherited environment; an
 * entry "NAME" without '=' removes NAME. stdin_data (may be NULL: stdin is
 * /dev/null) is written to the child's stdin, which is then closed.
 */
typedef struct kg_harness_cmd {
    const char *const *argv; /* NULL-terminated, borrowed */
    const char *const *env;  /* NULL-terminated or NULL, borrowed */
    const char *stdin_data;  /* borrowed, or NULL */
    size_t stdin_len;
    int timeout_ms; /* <= 0: KG_HARNESS_TIMEOUT_MS */
} kg_harness_cmd_t;

/* The outcome of kg_harness_run; free with kg_harness_result_free. */
typedef struct kg_harness_result {
    int status;     /* exit code, 128 + N when killed by signal N */
    bool signaled;  /* the child died of a signal */
    bool timed_out; /* the harness killed it at the timeout */
    bool truncated; /* an output went past KG_HARNESS_OUTPUT_MAX */
    char *out;      /* stdout, NUL-terminated, owned */
    size_t out_len;
    char *err; /* stderr, NUL-terminated, owned */
    size_t err_len;
} kg_harness_result_t;

/* A background child (a daemon, the mock provider). */
typedef struct kg_harness_proc {
    pid_t pid;      /* 0 once reaped */
    int port;       /* from its "PORT <n>" line; 0 until read */
    int status;     /* like kg_harness_result_t.status, once reaped */
    bool killed;    /* the harness had to SIGKILL it */
    char *out_path; /* its stdout, owned */
    char *err_path; /* its stderr, owned */
} kg_harness_proc_t;

/*
 * The path of a binary from the environment variable name (set by CTest,
 * e.g. KEYGATE_BIN). Aborts the current Check test when it is unset or not
 * executable. Returns a borrowed string.
 */
const char *kg_harness_bin(const char *name);

/*
 * Make a new directory "$TMPDIR/<tag>.XXXXXX" (mode 0700; /tmp without
 * TMPDIR). Returns a new string (free it), or NULL on error.
 */
char *kg_harness_tmpdir_new(const char *tag);

/*
 * Remove path and everything below it without following symbolic links,
 * making directories writable on the way. Returns 0, or -1 when something
 * stayed. A missing path is not an error.
 */
int kg_harness_rmtree(const char *path);

/* buf = dir + "/" + name. false when it does not fit in len bytes. */
bool kg_harness_path(char *buf, size_t len, const char *dir, const char *name);

/* Create or truncate path with mode (umask ignored), write len bytes.
 * Returns 0 or -1 (errno set). */
int kg_harness_write_file(const char *path, const void *data, size_t len,
                          mode_t mode);

/*
 * Read the whole file (at most KG_HARNESS_FILE_MAX bytes) into *data, a new
 * NUL-terminated buffer (free it); *len (may be NULL) gets its size.
 * Returns 0, or -1 (errno set, *data NULL).
 */
int kg_harness_read_file(const char *path, char **data, size_t *len);

/*
 * Whether the len bytes of needle occur in the file (byte search, for the
 * secret sweeps). Returns 1 found, 0 not found or no such file, -1 when the
 * file cannot be read or len is 0.
 */
int kg_harness_file_contains(const char *path, const void *needle, size_t len);

/* The permission bits (mode & 07777) of path, not following a final
 * symbolic link, or -1 (errno set). */
int kg_harness_file_mode(const char *path);

/* Whether path exists (a dangling symbolic link counts). */
bool kg_harness_exists(const char *path);

/*
 * Run cmd to completion, capturing stdout and stderr fully (up to
 * KG_HARNESS_OUTPUT_MAX each), with a hard timeout: at the deadline the
 * child's process group gets SIGKILL. Every wait is bounded. SIGPIPE is
 * ignored in the calling process from then on. Returns 0 when the child
 * ran (whatever its status; a program that cannot be executed exits 127),
 * or -1 when no child could be started or reaped (res->err says why). res
 * always needs kg_harness_result_free.
 */
int kg_harness_run(const kg_harness_cmd_t *cmd, kg_harness_result_t *res);

/* Free the outputs and zero res. */
void kg_harness_result_free(kg_harness_result_t *res);

/*
 * Start cmd in the background, in its own process group, stdin from
 * /dev/null, stdout and stderr to the files out_path and err_path (created
 * or truncated, mode 0600) so that nothing blocks on a full pipe and the
 * logs stay for leak sweeps. cmd's stdin_data and timeout are not used.
 * Returns 0 with *p filled, or -1 (errno set).
 */
int kg_harness_proc_start(const kg_harness_cmd_t *cmd, const char *out_path,
                          const char *err_path, kg_harness_proc_t *p);

/*
 * Wait up to timeout_ms for a complete "PORT <n>" line on p's stdout.
 * Returns the port (also in p->port), or -1 at the timeout or when the
 * process exited first (then p->status holds its status).
 */
int kg_harness_proc_wait_port(kg_harness_proc_t *p, int timeout_ms);

/*
 * Like kg_harness_proc_wait_port, for a program that writes its port to a
 * file (keygate serve --port-file, keygate-mock --port-file): waits for
 * path to hold "<n>\n" (or "PORT <n>\n").
 */
int kg_harness_proc_wait_port_file(kg_harness_proc_t *p, const char *path,
                                   int timeout_ms);

/* Whether p is still running (reaps it, and sets p->status, if not). */
bool kg_harness_proc_alive(kg_harness_proc_t *p);

/* Send sig to p (not to its group). Returns 0 or -1 (not running). */
int kg_harness_proc_signal(kg_harness_proc_t *p, int sig);

/*
 * Stop p: SIGTERM, up to term_ms for it to exit, then SIGKILL to its
 * process group and up to KG_HARNESS_REAP_MS more. Returns its status
 * (p->killed says whether SIGKILL was needed), or -1 when it could not be
 * reaped. Safe to call again.
 */
int kg_harness_proc_stop(kg_harness_proc_t *p, int term_ms);

/* Stop p if still running (term_ms 1000) and free its paths. */
void kg_harness_proc_free(kg_harness_proc_t *p);

/*
 * A text dump of the SQLite file at path: every table in name order, every
 * row as its values joined by '|' (NULL as "NULL", blobs as hex), plus
 * user_version and application_id. For "nothing changed" checks and leak
 * sweeps. Opens the file read-write (never creates it) and closes it, so a
 * WAL checkpoint may happen; call it while no other process writes. *out is
 * new (free it). Returns 0 or -1 (*out then holds a message, or NULL).
 */
int kg_harness_store_dump(const char *path, char **out);

#endif /* KEYGATE_TEST_HARNESS_H */
