/* The service manager's notifications (sd_notify): ready, reload, stop. */
#ifndef KEYGATE_NOTIFY_H
#define KEYGATE_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "keygate/err.h"

/*
 * Every function here talks to the service manager through libsystemd's
 * sd_notify: a datagram to $NOTIFY_SOCKET, which systemd sets for a unit
 * of Type=notify. Without NOTIFY_SOCKET each call does nothing (and costs
 * a getenv). A failed send is logged at debug level and otherwise
 * ignored: the gateway never stops serving because the manager did not
 * listen. Thread-safe (each call is one sendmsg).
 */

/* The longest STATUS= text sent; longer texts are cut. */
#define KG_NOTIFY_STATUS_MAX 200

/*
 * READY=1 with MAINPID (this process) and STATUS=status (may be NULL):
 * start-up is complete, or a reload is (after kg_notify_reloading).
 */
void kg_notify_ready(const char *status);

/*
 * RELOADING=1 with MONOTONIC_USEC (the manager's clock for the reload)
 * and STATUS=status (may be NULL). Follow with kg_notify_ready, whether
 * the reload succeeded or kept the old configuration.
 */
void kg_notify_reloading(const char *status);

/* STOPPING=1 and STATUS=status (may be NULL): the drain has begun. */
void kg_notify_stopping(const char *status);

/* STATUS=status alone: what `systemctl status` shows. */
void kg_notify_status(const char *status);

/* WATCHDOG=1: this process is alive (see kg_notify_watchdog_tick). */
void kg_notify_watchdog(void);

/*
 * The watchdog the manager asks for ($WATCHDOG_USEC, for this process's
 * $WATCHDOG_PID when set): its interval in microseconds, or 0 when there
 * is none.
 */
uint64_t kg_notify_watchdog_usec(void);

/*
 * The watchdog's pacing, kept by the one thread that pings. Every
 * interval_us / 2 the pinging thread asks the parts it vouches for (the
 * event loops) for an answer; it pings the manager only when every part
 * answered the previous question. A part that stops answering thus stops
 * the pings, and the manager ends the process WatchdogSec= later.
 */
typedef struct kg_notify_wd {
    int64_t interval_us; /* WATCHDOG_USEC; 0: off */
    int64_t next_us;     /* when the next ping is due (monotonic) */
    int64_t asked_us;    /* when the open question was asked; 0: none */
    bool withheld;       /* the last due ping was withheld */
} kg_notify_wd_t;

/* Start pacing for a watchdog of interval_us (0: off) at now_us. */
void kg_notify_wd_init(kg_notify_wd_t *wd, int64_t interval_us, int64_t now_us);

/* What kg_notify_wd_tick asks of its caller. */
typedef enum kg_notify_wd_step {
    KG_NOTIFY_WD_WAIT,     /* nothing due yet */
    KG_NOTIFY_WD_PING,     /* ping (kg_notify_watchdog), then ask again */
    KG_NOTIFY_WD_WITHHOLD, /* due, but a part has not answered: no ping */
} kg_notify_wd_step_t;

/*
 * At now_us, with answered telling whether every part answered the open
 * question: PING when a ping is due and they did (or no question was
 * open); the caller then sends WATCHDOG=1 and asks again. WITHHOLD when
 * one is due and they did not (once per missed interval). WAIT otherwise,
 * and always when the watchdog is off.
 */
kg_notify_wd_step_t kg_notify_wd_tick(kg_notify_wd_t *wd, int64_t now_us,
                                      bool answered);

#endif /* KEYGATE_NOTIFY_H */
