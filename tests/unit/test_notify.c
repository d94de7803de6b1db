/* Unit tests of the notify module: messages on a socket, watchdog pacing. */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "keygate/notify.h"
#include "unit_util.h"

#define UT_MSG_MAX 1024

static char dir[UT_PATH_MAX];
static int sock = -1;

/* A datagram socket in a fresh directory, named by NOTIFY_SOCKET. */
static void setup(void)
{
    char path[UT_PATH_MAX];
    struct sockaddr_un sa;

    ut_tmpdir(dir);
    ut_join(path, dir, "notify.sock");
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(sock, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    ck_assert_int_eq(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(setenv("NOTIFY_SOCKET", path, 1), 0);
}

static void teardown(void)
{
    unsetenv("NOTIFY_SOCKET");
    close(sock);
    sock = -1;
    ut_tmpdir_remove(dir);
}

/* The next message (asserted to arrive within a second). */
static void next_msg(char *buf)
{
    struct pollfd p = {sock, POLLIN, 0};
    ssize_t n;

    ck_assert_int_eq(poll(&p, 1, 1000), 1);
    n = recv(sock, buf, UT_MSG_MAX - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
}

static bool nothing_waiting(void)
{
    struct pollfd p = {sock, POLLIN, 0};

    return poll(&p, 1, 0) == 0;
}

START_TEST(test_messages)
{
    char msg[UT_MSG_MAX];
    char want[128];
    unsigned long long usec = 0;
    const char *m;

    kg_notify_ready("serving on 127.0.0.1:8080");
    next_msg(msg);
    snprintf(want, sizeof(want),
             "READY=1\nMAINPID=%ld\nSTATUS=serving on 127.0.0.1:8080",
             (long)getpid());
    ck_assert_str_eq(msg, want);

    kg_notify_reloading("reloading the configuration");
    next_msg(msg);
    ck_assert_int_eq(strncmp(msg, "RELOADING=1\nMONOTONIC_USEC=", 27), 0);
    ck_assert_int_eq(sscanf(msg + 27, "%llu", &usec), 1);
    ck_assert_uint_gt(usec, 0);
    m = strchr(msg + 27, '\n');
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m + 1, "STATUS=reloading the configuration");

    kg_notify_stopping(NULL);
    next_msg(msg);
    ck_assert_str_eq(msg, "STOPPING=1\n");

    kg_notify_watchdog();
    next_msg(msg);
    ck_assert_str_eq(msg, "WATCHDOG=1");

    /* One line: a status is cut at its first line break ... */
    kg_notify_status("first line\nREADY=1");
    next_msg(msg);
    ck_assert_str_eq(msg, "STATUS=first line");
    ck_assert(nothing_waiting());
}
END_TEST

/* ... and at KG_NOTIFY_STATUS_MAX bytes. */
START_TEST(test_status_bounded)
{
    char msg[UT_MSG_MAX];
    char *big = malloc(3 * KG_NOTIFY_STATUS_MAX);

    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 3 * KG_NOTIFY_STATUS_MAX - 1);
    big[3 * KG_NOTIFY_STATUS_MAX - 1] = '\0';
    kg_notify_status(big);
    next_msg(msg);
    ck_assert_uint_eq(strlen(msg), strlen("STATUS=") + KG_NOTIFY_STATUS_MAX);
    free(big);
}
END_TEST

/* Without NOTIFY_SOCKET nothing is sent (and nothing fails). */
START_TEST(test_no_manager)
{
    unsetenv("NOTIFY_SOCKET");
    kg_notify_ready("x");
    kg_notify_reloading("x");
    kg_notify_stopping("x");
    kg_notify_status("x");
    kg_notify_watchdog();
    ck_assert(nothing_waiting());
}
END_TEST

/* The watchdog interval comes from WATCHDOG_USEC, for our pid only. */
START_TEST(test_watchdog_usec)
{
    char pid[32];

    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    ck_assert_uint_eq(kg_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    ck_assert_uint_eq(kg_notify_watchdog_usec(), 30000000);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert_uint_eq(kg_notify_watchdog_usec(), 30000000);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert_uint_eq(kg_notify_watchdog_usec(), 0);
    setenv("WATCHDOG_PID", "1", 1);
    ck_assert_uint_eq(kg_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "nonsense", 1);
    ck_assert_uint_eq(kg_notify_watchdog_usec(), 0);
    unsetenv("WATCHDOG_USEC");
}
END_TEST

/* One step of a pacing scenario: at t (ms), with the parts' answer. */
typedef struct wd_step {
    int64_t t_ms;
    bool answered;
    kg_notify_wd_step_t want;
} wd_step_t;

/*
 * A 1 s watchdog: a ping at once, then every 500 ms while the parts
 * answer; a part that does not answer withholds the ping (reported once)
 * until it answers, which pings at once.
 */
START_TEST(test_wd_pacing)
{
    static const wd_step_t steps[] = {
        {0, false, KG_NOTIFY_WD_PING}, /* nothing asked yet */
        {200, true, KG_NOTIFY_WD_WAIT},
        {499, true, KG_NOTIFY_WD_WAIT},
        {500, true, KG_NOTIFY_WD_PING},
        {700, false, KG_NOTIFY_WD_WAIT},
        {1000, false, KG_NOTIFY_WD_WITHHOLD}, /* due, unanswered */
        {1200, false, KG_NOTIFY_WD_WAIT},     /* reported once */
        {1400, false, KG_NOTIFY_WD_WAIT},
        {1600, true, KG_NOTIFY_WD_PING}, /* answered late: ping now */
        {1800, true, KG_NOTIFY_WD_WAIT},
        {2100, true, KG_NOTIFY_WD_PING},
        {2600, false, KG_NOTIFY_WD_WITHHOLD},
        {5000, false, KG_NOTIFY_WD_WAIT}, /* hung: no ping, ever */
    };
    kg_notify_wd_t wd;

    kg_notify_wd_init(&wd, 1000 * 1000, 0);
    for (size_t i = 0; i < UT_NROWS(steps); i++) {
        kg_notify_wd_step_t got =
            kg_notify_wd_tick(&wd, steps[i].t_ms * 1000, steps[i].answered);

        ck_assert_msg(got == steps[i].want, "at %lld ms: %d, want %d",
                      (long long)steps[i].t_ms, (int)got, (int)steps[i].want);
    }
}
END_TEST

/* Off (no WATCHDOG_USEC): never a ping. */
START_TEST(test_wd_off)
{
    kg_notify_wd_t wd;

    kg_notify_wd_init(&wd, 0, 0);
    for (int64_t t = 0; t < 10 * 1000 * 1000; t += 100 * 1000) {
        ck_assert_int_eq(kg_notify_wd_tick(&wd, t, true), KG_NOTIFY_WD_WAIT);
    }
}
END_TEST

static Suite *notify_suite(void)
{
    Suite *s = suite_create("notify");
    TCase *tc = tcase_create("notify");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_messages);
    tcase_add_test(tc, test_status_bounded);
    tcase_add_test(tc, test_no_manager);
    tcase_add_test(tc, test_watchdog_usec);
    tcase_add_test(tc, test_wd_pacing);
    tcase_add_test(tc, test_wd_off);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ut_run(notify_suite());
}
