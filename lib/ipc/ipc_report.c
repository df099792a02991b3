/*
 * ipc_report.c - see ipc_report.h. Used by every child of master: smtpd,
 * cleanup, qmgr and filter through ipc_report_start, the blocking delivery
 * agents through deliver_agent.c's wait (ipc_report_poll).
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <event2/event.h>

#include "ipc/ipc.h"
#include "ipc/ipc_report.h"
#include "metrics/metrics.h"
#include "util/clock.h"
#include "util/log.h"

static buf_t pending;          /* an encoded report not yet fully written */
static int64_t last_ms;
static struct event *tick;
static int closed;              /* master closed the pipe: no more reports */
static pid_t report_pid;         /* the exit report is this process's, not a forked helper's */

static void report(void)
{
    int report_fd = server_master_pipe();
    if (report_fd < 0 || closed)
        return;
    if (pending.data == NULL)
        buf_init(&pending, 1024);
    if (pending.len == 0) {
        buf_t body;
        buf_init(&body, 1024);
        if (metrics_take(&body)) {
            struct ipc_metrics m = { { (const unsigned char *)body.data, body.len } };
            if (ipc_put_metrics(&pending, &m) < 0)
                log_warn("metrics report too large: dropped");
        }
        buf_free(&body);
    }
    while (pending.len > 0) {
        ssize_t n = write(report_fd, pending.data, pending.len);
        if (n > 0) {
            buf_consume(&pending, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;   /* master is busy: the rest goes with the next tick */
        log_debug("metrics: master pipe closed: no more reports");
        closed = 1;   /* the descriptor stays the server's (ready_fd) */
        buf_reset(&pending);
        return;
    }
}

int ipc_report_retire(const char *reason)
{
    static int asked;
    if (server_master_pipe() < 0 || closed)
        return -1;
    if (asked)
        return 0;
    asked = 1;
    if (pending.data == NULL)
        buf_init(&pending, 1024);
    struct ipc_retire r = { reason };
    if (ipc_put_retire(&pending, &r) < 0)
        return -1;
    report();   /* written now, or with the next tick (behind a metrics report) */
    return 0;
}

/* The counts of a child's last second reach master when it exits normally
 * (a retired smtpd after its last session, a stop). */
static void report_at_exit(void)
{
    if (getpid() == report_pid)
        for (int i = 0; i < 2; i++)   /* what is pending, then what is new */
            report();
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    report();
}

void ipc_report_start(struct server *s)
{
    if (s->base == NULL || tick != NULL)
        return;
    report_pid = getpid();
    atexit(report_at_exit);
    tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
    struct timeval tv = { 1, 0 };
    if (tick == NULL || event_add(tick, &tv) < 0)
        log_warn("metrics: cannot start the report timer");
}

void ipc_report_poll(struct server *s)
{
    if (report_pid == 0) {
        report_pid = getpid();
        atexit(report_at_exit);
    }
    int64_t now = clock_now_ms();
    if (now - last_ms < 1000)
        return;
    last_ms = now;
    report();
}
