/* The service manager's notifications (sd_notify): ready, reload, stop. */
#include "keygate/notify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "keygate/log.h"

/* One message: a few fixed fields and the status text. */
#define NOTIFY_MSG_MAX (KG_NOTIFY_STATUS_MAX + 128)

/* Send msg; a manager that is not there (no NOTIFY_SOCKET) is no error. */
static void notify_send(const char *msg)
{
    int rc;

    if (getenv("NOTIFY_SOCKET") == NULL) {
        return;
    }
    rc = sd_notify(0, msg);
    if (rc < 0) {
        KG_DEBUG("notify: the service manager was not told (%s)",
                 strerror(-rc));
    }
}

/*
 * head (fields, each ending in '\n') then "STATUS=<status>" when status is
 * not NULL. The status is cut at KG_NOTIFY_STATUS_MAX bytes and at its
 * first line break: one notification field is one line.
 */
static void notify_with_status(const char *head, const char *status)
{
    char msg[NOTIFY_MSG_MAX];
    size_t n = 0;

    if (status != NULL) {
        n = strcspn(status, "\n");
        if (n > KG_NOTIFY_STATUS_MAX) {
            n = KG_NOTIFY_STATUS_MAX;
        }
    }
    if (status == NULL) {
        snprintf(msg, sizeof(msg), "%s", head);
    } else {
        snprintf(msg, sizeof(msg), "%sSTATUS=%.*s", head, (int)n, status);
    }
    notify_send(msg);
}

void kg_notify_ready(const char *status)
{
    char head[64];

    snprintf(head, sizeof(head), "READY=1\nMAINPID=%ld\n", (long)getpid());
    notify_with_status(head, status);
}

void kg_notify_reloading(const char *status)
{
    struct timespec ts;
    char head[80];

    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(head, sizeof(head), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\n",
             (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    notify_with_status(head, status);
}

void kg_notify_stopping(const char *status)
{
    notify_with_status("STOPPING=1\n", status);
}

void kg_notify_status(const char *status)
{
    notify_with_status("", status != NULL ? status : "");
}

void kg_notify_watchdog(void)
{
    notify_send("WATCHDOG=1");
}

uint64_t kg_notify_watchdog_usec(void)
{
    uint64_t usec = 0;

    /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us. */
    if (sd_watchdog_enabled(0, &usec) <= 0) {
        return 0;
    }
    return usec;
}

void kg_notify_wd_init(kg_notify_wd_t *wd, int64_t interval_us, int64_t now_us)
{
    memset(wd, 0, sizeof(*wd));
    wd->interval_us = interval_us > 0 ? interval_us : 0;
    wd->next_us = now_us;
}

kg_notify_wd_step_t kg_notify_wd_tick(kg_notify_wd_t *wd, int64_t now_us,
                                      bool answered)
{
    if (wd->interval_us == 0 || now_us < wd->next_us) {
        return KG_NOTIFY_WD_WAIT;
    }
    if (wd->asked_us == 0 || answered) {
        wd->next_us = now_us + wd->interval_us / 2;
        wd->asked_us = now_us;
        wd->withheld = false;
        return KG_NOTIFY_WD_PING;
    }
    /* Due and unanswered: check again at every tick, report it once. */
    if (wd->withheld) {
        return KG_NOTIFY_WD_WAIT;
    }
    wd->withheld = true;
    return KG_NOTIFY_WD_WITHHOLD;
}
