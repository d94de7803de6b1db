/* One event loop: a libmicrohttpd daemon and a curl multi in one epoll set. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "keygate/worker.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keygate/clock.h"
#include "keygate/gateway.h"
#include "keygate/log.h"

#define WORKER_EVENTS 128
/* The longest wait with nothing timed: a safety net, not a tick. */
#define WORKER_MAX_WAIT_MS 1000

static void worker_wake(kg_worker_t *w)
{
    uint64_t one = 1;

    if (write(w->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already non-zero; it will wake. */
    }
}

kg_err_t kg_worker_new(struct kg_gateway *gw, unsigned index,
                       const kg_proxy_opts_t *popts, kg_worker_t **out,
                       kg_diag_t *diag)
{
    kg_worker_t *w = calloc(1, sizeof(*w));
    struct epoll_event ev;
    kg_err_t rc;

    *out = NULL;
    if (w == NULL) {
        return KG_ERR_NOMEM;
    }
    w->gw = gw;
    w->index = index;
    w->wake_fd = -1;
    w->header_us = gw->cfg->server_header_timeout_ms * 1000;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd >= 0) {
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &w->wake_tag;
    if (w->epfd < 0 || w->wake_fd < 0 ||
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &ev) != 0) {
        rc = kg_diag_fail(diag, KG_ERR_INTERNAL,
                          "cannot set up an event loop: %s", strerror(errno));
        kg_worker_free(&w);
        return rc;
    }
    w->metrics = kg_metrics_shard(gw->metrics, index);
    {
        kg_proxy_opts_t mine = *popts; /* with this loop's metrics shard */

        mine.metrics = w->metrics;
        rc = kg_proxy_new(&mine, w->epfd, &w->proxy, diag);
    }
    if (rc != KG_OK) {
        kg_worker_free(&w);
        return rc;
    }
    *out = w;
    return KG_OK;
}

kg_err_t kg_worker_attach(kg_worker_t *w, struct MHD_Daemon *daemon,
                          kg_diag_t *diag)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
    struct epoll_event ev;

    w->daemon = daemon;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &w->mhd_tag;
    if (info == NULL || info->epoll_fd < 0 ||
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, info->epoll_fd, &ev) != 0) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL,
                            "cannot watch the HTTP daemon: %s",
                            strerror(errno));
    }
    return KG_OK;
}

void kg_worker_wait_arm(kg_worker_t *w, kg_worker_wait_t *e, int fd,
                        int64_t now_us)
{
    kg_worker_wait_disarm(w, e);
    e->fd = fd;
    e->deadline_us = now_us + w->header_us;
    e->next = NULL;
    e->prev = w->wait_tail;
    if (w->wait_tail != NULL) {
        w->wait_tail->next = e;
    } else {
        w->wait_head = e;
    }
    w->wait_tail = e;
    e->armed = true;
}

void kg_worker_wait_disarm(kg_worker_t *w, kg_worker_wait_t *e)
{
    if (!e->armed) {
        return;
    }
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        w->wait_head = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        w->wait_tail = e->prev;
    }
    e->prev = NULL;
    e->next = NULL;
    e->armed = false;
}

/*
 * Cut every connection whose headers are not in by its deadline: shut its
 * socket down (libmicrohttpd owns the descriptor and closes it when it
 * reads the end) and take it off the list.
 */
static void worker_cut_late_headers(kg_worker_t *w, int64_t now_us)
{
    while (w->wait_head != NULL && w->wait_head->deadline_us <= now_us) {
        kg_worker_wait_t *e = w->wait_head;

        kg_worker_wait_disarm(w, e);
        if (e->fd >= 0) {
            shutdown(e->fd, SHUT_RDWR);
        }
        w->header_cuts++;
        KG_DEBUG("worker %u: closed a connection whose request headers were "
                 "not complete after header_timeout",
                 w->index);
    }
}

/* How long epoll_wait may sleep: the nearest of curl's and MHD's timers,
 * and of the header deadlines. */
static int worker_timeout_ms(kg_worker_t *w)
{
    int t = kg_proxy_timeout_ms(w->proxy);
    MHD_UNSIGNED_LONG_LONG mt = 0;

    if (MHD_get_timeout(w->daemon, &mt) == MHD_YES &&
        (t < 0 || mt < (MHD_UNSIGNED_LONG_LONG)t)) {
        t = (int)mt;
    }
    if (w->wait_head != NULL) {
        int64_t left = w->wait_head->deadline_us - kg_clock_mono_us();
        int due = left <= 0 ? 0 : (int)((left + 999) / 1000);

        if (t < 0 || due < t) {
            t = due;
        }
    }
    if (t < 0 || t > WORKER_MAX_WAIT_MS) {
        t = WORKER_MAX_WAIT_MS;
    }
    return t;
}

static void worker_handle_wake(kg_worker_t *w)
{
    uint64_t n;

    if (read(w->wake_fd, &n, sizeof(n)) < 0) {
        /* EAGAIN: read already. */
    }
    atomic_store(&w->ping_answered, atomic_load(&w->ping_asked));
    if (atomic_load(&w->quiesce_asked) && !w->quiesced) {
        MHD_socket fd = MHD_quiesce_daemon(w->daemon);

        if (fd != MHD_INVALID_SOCKET) {
            close(fd); /* this worker's duplicate of the listening socket */
        }
        w->quiesced = true;
    }
}

static void *worker_main(void *arg)
{
    kg_worker_t *w = arg;
    struct epoll_event evs[WORKER_EVENTS];
    int64_t mhd_due_us = 0;
    char name[16];

    snprintf(name, sizeof(name), "kg-loop-%u", w->index);
    pthread_setname_np(pthread_self(), name);
    kg_proxy_bind_thread(w->proxy);
    while (!atomic_load(&w->stopping)) {
        int timeout = worker_timeout_ms(w);
        int n = epoll_wait(w->epfd, evs, WORKER_EVENTS, timeout);
        bool run_mhd = false;
        int64_t now;

        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;

            if (tag == &w->mhd_tag) {
                run_mhd = true;
            } else if (tag == &w->wake_tag) {
                worker_handle_wake(w);
            } else {
                kg_proxy_on_event(w->proxy, tag, evs[i].events);
            }
        }
        kg_proxy_run(w->proxy);
        now = kg_clock_mono_us();
        worker_cut_late_headers(w, now);
        if (kg_proxy_take_kick(w->proxy) || run_mhd || now >= mhd_due_us) {
            MHD_UNSIGNED_LONG_LONG mt = 0;

            MHD_run(w->daemon);
            /* Requests read in this round start their transfers now. */
            kg_proxy_run(w->proxy);
            mhd_due_us = MHD_get_timeout(w->daemon, &mt) == MHD_YES
                             ? now + (int64_t)mt * 1000
                             : now + (int64_t)WORKER_MAX_WAIT_MS * 1000;
        }
    }
    /* libmicrohttpd must not stop with a connection suspended: end every
     * transfer still running, which resumes its connection. */
    kg_proxy_cut_all(w->proxy);
    kg_proxy_run(w->proxy);
    MHD_run(w->daemon);
    return NULL;
}

kg_err_t kg_worker_start(kg_worker_t *w, kg_diag_t *diag)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        return kg_diag_fail(diag, KG_ERR_INTERNAL,
                            "cannot start an event-loop thread");
    }
    w->started = true;
    return KG_OK;
}

void kg_worker_ping(kg_worker_t *w, uint64_t seq)
{
    atomic_store(&w->ping_asked, seq);
    worker_wake(w);
}

bool kg_worker_answered(kg_worker_t *w, uint64_t seq)
{
    return atomic_load(&w->ping_answered) >= seq;
}

void kg_worker_quiesce(kg_worker_t *w)
{
    atomic_store(&w->quiesce_asked, true);
    worker_wake(w);
}

void kg_worker_stop(kg_worker_t *w)
{
    if (w == NULL || !w->started) {
        return;
    }
    atomic_store(&w->stopping, true);
    worker_wake(w);
    pthread_join(w->thread, NULL);
    w->started = false;
}

void kg_worker_free(kg_worker_t **pw)
{
    kg_worker_t *w;

    if (pw == NULL || *pw == NULL) {
        return;
    }
    w = *pw;
    kg_worker_stop(w);
    if (w->daemon != NULL) {
        /* Its completion callbacks queue cancels on the proxy, which
         * kg_proxy_free runs. */
        MHD_stop_daemon(w->daemon);
        w->daemon = NULL;
    }
    kg_proxy_free(&w->proxy);
    if (w->wake_fd >= 0) {
        close(w->wake_fd);
    }
    if (w->epfd >= 0) {
        close(w->epfd);
    }
    free(w);
    *pw = NULL;
}
