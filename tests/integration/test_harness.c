/* Self-test of the integration harness: children, timeouts, files, ports. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char *g_dir; /* per test case, made and removed by the parent */

static void setup_dir(void)
{
    g_dir = kg_harness_tmpdir_new("kg-harness");
    ck_assert_ptr_nonnull(g_dir);
}

static void teardown_dir(void)
{
    ck_assert_int_eq(kg_harness_rmtree(g_dir), 0);
    ck_assert(!kg_harness_exists(g_dir));
    free(g_dir);
    g_dir = NULL;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(test_run_captures_outputs_and_status)
{
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 0};
    kg_harness_result_t r;

    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert_int_eq(r.status, 3);
    ck_assert(!r.signaled && !r.timed_out && !r.truncated);
    ck_assert_str_eq(r.out, "out\n");
    ck_assert_str_eq(r.err, "err\n");
    kg_harness_result_free(&r);
}
END_TEST

START_TEST(test_run_stdin_env_and_large_output)
{
    const char *cat[] = {"cat", NULL};
    const char *env_argv[] = {
        "sh", "-c", "printf '%s|%s' \"$KG_A\" \"${HOME-unset}\"", NULL};
    const char *env[] = {"KG_A=hello", "HOME", NULL};
    const char *big[] = {"head", "-c", "3000000", "/dev/zero", NULL};
    kg_harness_cmd_t cmd = {cat, NULL, "piped\0bytes", 11, 0};
    kg_harness_result_t r;

    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.out_len, 11);
    ck_assert_mem_eq(r.out, "piped\0bytes", 11);
    kg_harness_result_free(&r);

    cmd = (kg_harness_cmd_t){env_argv, env, NULL, 0, 0};
    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert_str_eq(r.out, "hello|unset");
    kg_harness_result_free(&r);

    cmd = (kg_harness_cmd_t){big, NULL, NULL, 0, 0};
    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.out_len, 3000000);
    kg_harness_result_free(&r);
}
END_TEST

START_TEST(test_run_timeout_kills_the_group)
{
    /* The grandchild holds the pipes too: only a group kill ends it. */
    const char *argv[] = {"sh", "-c", "sleep 30 & sleep 30", NULL};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 300};
    kg_harness_result_t r;
    double t0 = now_s();

    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert(r.timed_out);
    ck_assert(r.signaled);
    ck_assert_int_eq(r.status, 128 + SIGKILL);
    ck_assert_msg(now_s() - t0 < 5.0, "took %.1f s", now_s() - t0);
    kg_harness_result_free(&r);
}
END_TEST

START_TEST(test_run_missing_program)
{
    const char *argv[] = {"/nonexistent/kg-no-such-program", NULL};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 0};
    kg_harness_result_t r;

    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert_int_eq(r.status, 127);
    ck_assert_ptr_nonnull(strstr(r.err, "cannot execute"));
    kg_harness_result_free(&r);
}
END_TEST

START_TEST(test_files)
{
    char path[PATH_MAX];
    char sub[PATH_MAX];
    char *data = NULL;
    size_t len = 0;

    ck_assert(kg_harness_path(path, sizeof(path), g_dir, "f.bin"));
    ck_assert(!kg_harness_path(path, 4, g_dir, "f.bin"));
    ck_assert(kg_harness_path(path, sizeof(path), g_dir, "f.bin"));
    ck_assert_int_eq(kg_harness_write_file(path, "ab\0secret-x", 11, 0640), 0);
    ck_assert_int_eq(kg_harness_file_mode(path), 0640);
    ck_assert_int_eq(kg_harness_read_file(path, &data, &len), 0);
    ck_assert_uint_eq(len, 11);
    ck_assert_mem_eq(data, "ab\0secret-x", 11);
    free(data);
    ck_assert_int_eq(kg_harness_file_contains(path, "secret", 6), 1);
    ck_assert_int_eq(kg_harness_file_contains(path, "b\0s", 3), 1);
    ck_assert_int_eq(kg_harness_file_contains(path, "secrets", 7), 0);
    ck_assert_int_eq(kg_harness_file_contains(path, "", 0), -1);
    ck_assert(kg_harness_path(sub, sizeof(sub), g_dir, "missing"));
    ck_assert_int_eq(kg_harness_file_contains(sub, "x", 1), 0);
    ck_assert_int_eq(kg_harness_file_mode(sub), -1);
    ck_assert_int_eq(kg_harness_read_file(sub, &data, NULL), -1);
    ck_assert_ptr_null(data);

    /* A nested read-only tree and a symbolic link are removed, the link's
     * target is not followed. */
    ck_assert(kg_harness_path(sub, sizeof(sub), g_dir, "a"));
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    ck_assert(kg_harness_path(path, sizeof(path), sub, "b"));
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert(kg_harness_path(path, sizeof(path), sub, "b/c"));
    ck_assert_int_eq(kg_harness_write_file(path, "x", 1, 0400), 0);
    ck_assert(kg_harness_path(path, sizeof(path), sub, "link"));
    ck_assert_int_eq(symlink("/etc", path), 0);
    ck_assert(kg_harness_path(path, sizeof(path), sub, "b"));
    ck_assert_int_eq(chmod(path, 0500), 0);
    ck_assert_int_eq(chmod(sub, 0500), 0);
    ck_assert_int_eq(kg_harness_rmtree(sub), 0);
    ck_assert(!kg_harness_exists(sub));
    ck_assert(kg_harness_exists("/etc/hostname") ||
              kg_harness_exists("/etc/passwd"));
    ck_assert_int_eq(kg_harness_rmtree(sub), 0); /* missing: fine */
}
END_TEST

START_TEST(test_store_dump)
{
    const char *bin = kg_harness_bin("KEYGATE_BIN");
    char cfg[PATH_MAX];
    char db[PATH_MAX];
    char text[2 * PATH_MAX + 64];
    const char *argv[] = {bin, "-c", cfg, "init", NULL};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 0};
    kg_harness_result_t r;
    char *dump = NULL;
    int n;

    ck_assert(kg_harness_path(cfg, sizeof(cfg), g_dir, "kg.ini"));
    ck_assert(kg_harness_path(db, sizeof(db), g_dir, "kg.db"));
    n = snprintf(text, sizeof(text),
                 "[store]\npath = %s\n[security]\nhash_key_file = "
                 "%s/hash.key\n",
                 db, g_dir);
    ck_assert(n > 0 && (size_t)n < sizeof(text));
    ck_assert_int_eq(kg_harness_write_file(cfg, text, (size_t)n, 0600), 0);
    ck_assert_int_eq(kg_harness_run(&cmd, &r), 0);
    ck_assert_msg(r.status == 0, "init: %s", r.err);
    kg_harness_result_free(&r);
    ck_assert_int_eq(kg_harness_store_dump(db, &dump), 0);
    ck_assert_ptr_nonnull(strstr(dump, "# table workspaces\n"));
    ck_assert_ptr_nonnull(strstr(dump, "|default|pool|"));
    free(dump);
    ck_assert(kg_harness_path(db, sizeof(db), g_dir, "absent.db"));
    ck_assert_int_eq(kg_harness_store_dump(db, &dump), -1);
    ck_assert(!kg_harness_exists(db));
    free(dump);
}
END_TEST

START_TEST(test_proc_mock_port_and_stop)
{
    char port_file[PATH_MAX];
    const char *argv[] = {kg_harness_bin("KEYGATE_MOCK_BIN"),
                          "--listen",
                          "127.0.0.1",
                          "--port",
                          "0",
                          "--port-file",
                          port_file,
                          NULL};
    kg_harness_cmd_t cmd = {argv, NULL, NULL, 0, 0};
    struct sockaddr_in sa;
    kg_harness_proc_t p;
    char out[PATH_MAX];
    char err[PATH_MAX];
    int port;
    int fd;

    ck_assert(kg_harness_path(port_file, sizeof(port_file), g_dir, "port"));
    ck_assert(kg_harness_path(out, sizeof(out), g_dir, "mock.out"));
    ck_assert(kg_harness_path(err, sizeof(err), g_dir, "mock.err"));
    ck_assert_int_eq(kg_harness_proc_start(&cmd, out, err, &p), 0);
    port = kg_harness_proc_wait_port(&p, 10000);
    ck_assert_msg(port > 0, "no PORT line; status %d", p.status);
    ck_assert_int_eq(p.port, port);
    ck_assert(kg_harness_proc_alive(&p));
    ck_assert_int_eq(kg_harness_proc_wait_port_file(&p, port_file, 10000),
                     port);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);

    ck_assert_int_eq(kg_harness_proc_stop(&p, 5000), 0);
    ck_assert(!p.killed);
    ck_assert(!kg_harness_proc_alive(&p));
    ck_assert_int_eq(kg_harness_proc_stop(&p, 5000), 0); /* again: same */
    kg_harness_proc_free(&p);
}
END_TEST

START_TEST(test_proc_stubborn_and_early_exit)
{
    const char *stubborn[] = {"sh", "-c",
                              "trap '' TERM; echo PORT 4242; sleep 30", NULL};
    const char *early[] = {"sh", "-c", "echo starting; exit 7", NULL};
    kg_harness_cmd_t cmd = {stubborn, NULL, NULL, 0, 0};
    kg_harness_proc_t p;
    char out[PATH_MAX];
    char err[PATH_MAX];
    double t0;

    ck_assert(kg_harness_path(out, sizeof(out), g_dir, "p.out"));
    ck_assert(kg_harness_path(err, sizeof(err), g_dir, "p.err"));
    ck_assert_int_eq(kg_harness_proc_start(&cmd, out, err, &p), 0);
    ck_assert_int_eq(kg_harness_proc_wait_port(&p, 10000), 4242);
    t0 = now_s();
    ck_assert_int_eq(kg_harness_proc_stop(&p, 200), 128 + SIGKILL);
    ck_assert(p.killed);
    ck_assert_msg(now_s() - t0 < 5.0, "took %.1f s", now_s() - t0);
    kg_harness_proc_free(&p);

    cmd.argv = early;
    ck_assert_int_eq(kg_harness_proc_start(&cmd, out, err, &p), 0);
    t0 = now_s();
    ck_assert_int_eq(kg_harness_proc_wait_port(&p, 10000), -1);
    ck_assert_msg(now_s() - t0 < 5.0, "took %.1f s", now_s() - t0);
    ck_assert_int_eq(p.status, 7);
    ck_assert_int_eq(kg_harness_proc_signal(&p, SIGTERM), -1);
    kg_harness_proc_free(&p);
}
END_TEST

static Suite *harness_suite(void)
{
    Suite *s = suite_create("harness");
    TCase *tc = tcase_create("harness");

    tcase_add_unchecked_fixture(tc, setup_dir, teardown_dir);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_run_captures_outputs_and_status);
    tcase_add_test(tc, test_run_stdin_env_and_large_output);
    tcase_add_test(tc, test_run_timeout_kills_the_group);
    tcase_add_test(tc, test_run_missing_program);
    tcase_add_test(tc, test_files);
    tcase_add_test(tc, test_store_dump);
    tcase_add_test(tc, test_proc_mock_port_and_stop);
    tcase_add_test(tc, test_proc_stubborn_and_early_exit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(harness_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
