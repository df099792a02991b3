/*
 * qmgr.c - the queue manager: main, the private/qmgr listener (cleanup
 * and the CLI send HELLO + QMGR_WAKEUP one-way messages), the scan timers
 * and the drain on SIGTERM.
 *
 * Wakeups are hints: a lost one is caught by the periodic rescan, so a
 * wakeup is never required for a message to be delivered. Must never
 * deliver mail itself (that is the agents' job) and never run as root.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "ipc/ipc_bev.h"
#include "util/log.h"
#include "util/log_event.h"
#include "qmgr.h"
#include "daemon/server.h"
#include "ipc/ipc_report.h"

#define QMGR_WAKE_FLUSH 1

static struct qmgr qmgr_state;
struct qmgr *qmgr_g = &qmgr_state;

static struct event *tick_ev, *wake_ev, *drain_ev;
static struct evconnlistener *listener;
static int64_t wake_pending;    /* time wake_ev is set for, 0 = none */

int64_t qmgr_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec;
}

/* Scan incoming/ always, deferred/ when something there is due. */
static void scan(int flush)
{
    if (qmgr_g->stopping)
        return;
    int64_t now = qmgr_now();
    qmgr_scan_incoming();
    if (flush || (qmgr_g->deferred_due && qmgr_g->deferred_due <= now) ||
        now - qmgr_g->last_fullscan >= QMGR_FULLSCAN_SECS)
        qmgr_scan_deferred(flush);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    scan(0);
    qmgr_dest_sweep();   /* destinations kept for a rate gap that has passed */
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    wake_pending = 0;
    scan(0);
}

void qmgr_wake_at(int64_t when)
{
    if (qmgr_g->stopping)
        return;
    if (qmgr_g->deferred_due == 0 || when < qmgr_g->deferred_due)
        qmgr_g->deferred_due = when;
    if (wake_pending && wake_pending <= when)
        return;
    int64_t now = qmgr_now();
    struct timeval tv = { when > now ? (time_t)(when - now) : 0, 0 };
    evtimer_add(wake_ev, &tv);
    wake_pending = when;
}

/* ---- wakeup connections ------------------------------------------------ */

/* One frame from a client after its HELLO; -1 = drop it. */
static int client_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *u, void *arg)
{
    if (t == IPC_QMGR_AUDIT) {
        /* only root and the mail user reach private/qmgr; escaped by log */
        const struct ipc_qmgr_audit *a = &u->qmgr_audit;
        log_admin(a->kind, a->action, a->count == UINT32_MAX ? -1 : (long long)a->count, a->ids,
                  a->user, a->uid);
        return 0;
    }
    if (t != IPC_QMGR_WAKEUP)
        return -1;
    const char *id = u->qmgr_wakeup.queue_id;
    if (id[0] != '\0' && !queue_id_valid(id))
        return -1;
    if (qmgr_g->stopping)
        return 0;
    if (u->qmgr_wakeup.flags & QMGR_WAKE_FLUSH) {
        log_info("flush requested: every deferred message is due now");
        scan(1);
    } else if (id[0] == '\0') {
        scan(0);
    } else {
        qmgr_active_start(SPOOL_INCOMING, id);
    }
    return 0;
}

static void client_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    if (why == IPC_PEER_HELLO || why == IPC_PEER_REFUSED)
        log_warn("qmgr client: unexpected message: dropping connection");
    ipc_peer_free(p);
}

static const struct ipc_peer_ops client_ops = {
    .proto = IPC_PROTO_QMGR, .server = 1, .on_frame = client_frame, .on_error = client_error,
    .read_direct = 1,
};

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    ipc_peer_accept(qmgr_g->base, fd, "qmgr client", &client_ops, NULL);
}

/* ---- stop ------------------------------------------------------------------ */

void qmgr_drained(void)
{
    log_info("stopped");
    server_stop_loop(qmgr_g->srv);
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    log_warn("%d deliver%s still in flight after %d s: exiting (recovered at next start)",
             qmgr_deliver_busy(), qmgr_deliver_busy() == 1 ? "y" : "ies", QMGR_DRAIN_SECS);
    server_stop_loop(qmgr_g->srv);
}

static void on_stop(struct server *s)
{
    qmgr_g->stopping = 1;
    evtimer_del(tick_ev);
    evtimer_del(wake_ev);
    if (listener)
        evconnlistener_disable(listener);
    qmgr_deliver_stop();
    qmgr_filter_stop();     /* messages waiting for a verdict stay in active/ */
    if (qmgr_deliver_busy() == 0) {
        qmgr_drained();
        return;
    }
    log_info("stopping: waiting for %d delivery request%s", qmgr_deliver_busy(),
             qmgr_deliver_busy() == 1 ? "" : "s");
    struct timeval tv = { QMGR_DRAIN_SECS, 0 };
    drain_ev = evtimer_new(s->base, on_drain_timeout, NULL);
    evtimer_add(drain_ev, &tv);
}

int main(int argc, char **argv)
{
    struct server *s = server_init("qmgr", argc, argv, 0);
    qmgr_g->srv = s;
    qmgr_g->cfg = s->cfg;
    qmgr_g->base = s->base;
    s->on_stop = on_stop;
    listener = server_listen(s, "qmgr", SOCK_QMGR, on_accept, NULL);
    tick_ev = event_new(s->base, -1, EV_PERSIST, on_tick, NULL);
    wake_ev = evtimer_new(s->base, on_wake, NULL);
    struct timeval tv = { QMGR_SCAN_SECS, 0 };
    evtimer_add(tick_ev, &tv);
    qmgr_scan_recover();
    qmgr_scan_incoming();
    qmgr_scan_deferred(0);
    ipc_report_start(s);   /* metrics to master, once a second */
    server_run(s);
    /* what is still in active/ is recovered at the next start */
    evconnlistener_free(listener);
    config_free(s->cfg);
    free(s->fds);
    free(s);
    return 0;
}
