/*
 * qmgr_deliver.c - the pool of connections to local delivery agents
 * (private/local) and the dispatch queue.
 *
 * At most processes.delivery connections; each carries one request at a
 * time: HELLO once, then DELIVER_REQ + DELIVER_RCPT x n, answered by
 * DELIVER_STATUS x n + DELIVER_DONE. Idle connections are reused. When a
 * connection breaks mid-request (agent killed), the unanswered recipients
 * are deferred with "4.3.0 delivery agent died" and retried after a short
 * backoff. Must never trust the agent: every status must name a recipient
 * of the request, once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "ipc.h"
#include "log.h"
#include "qmgr.h"

struct agent {
    struct bufferevent *bev;
    int hello_ok;
    struct qmsg *msg;           /* request in flight, NULL = idle */
    int nstatus;
    struct agent *next;
};

static struct agent *agents;
static int nagents, nbusy;
static struct qmsg *runq_head, *runq_tail;
static struct event *retry_ev;  /* reconnect after a failed connect */
static int stopped;

static void kick(void);

int qmgr_deliver_busy(void)
{
    return nbusy;
}

static void agent_free(struct agent *a)
{
    struct agent **pp = &agents;
    while (*pp && *pp != a)
        pp = &(*pp)->next;
    if (*pp)
        *pp = a->next;
    bufferevent_free(a->bev);
    nagents--;
    free(a);
}

/* The request on a finished (or broken) connection is done: record it. */
static void request_end(struct agent *a)
{
    struct qmsg *m = a->msg;
    a->msg = NULL;
    nbusy--;
    bufferevent_set_timeouts(a->bev, NULL, NULL);
    qmgr_active_finish(m);
}

/* The connection broke or misbehaved: defer what was not answered. */
static void agent_fail(struct agent *a, const char *why)
{
    struct qmsg *m = a->msg;
    if (m) {
        log_warn("delivery agent connection lost (%s) during %s", why, m->id);
        for (int i = 0; i < m->nidx; i++)
            if (!m->got[i])
                qmgr_active_outcome(m, m->idx[i], DS_DEFERRED, "4.3.0",
                                    "delivery agent died", qmgr_active_relay(m, m->idx[i]), 0);
        m->retry_at = qmgr_now() + QMGR_AGENT_BACKOFF;
        request_end(a);
    }
    agent_free(a);
    if (stopped && nbusy == 0)
        qmgr_drained();
    else
        kick();
}

/* One frame from the agent; -1 = protocol error. */
static int agent_frame(struct agent *a, enum ipc_type t, union ipc_msg *u)
{
    if (!a->hello_ok) {
        if (t != IPC_HELLO || ipc_hello_ok(&u->hello, IPC_PROTO_DELIVER) < 0)
            return -1;
        a->hello_ok = 1;
        return 0;
    }
    struct qmsg *m = a->msg;
    if (m == NULL)
        return -1;
    if (t == IPC_DELIVER_STATUS) {
        int i = qmgr_active_idx(m, u->deliver_status.index);
        if (i < 0 || m->got[i])
            return -1;
        m->got[i] = 1;
        a->nstatus++;
        uint32_t index = u->deliver_status.index;
        const char *reason = u->deliver_status.reason;
        char why[128];
        if (m->routes && m->routes[index].kind == QR_DISCARD &&
            u->deliver_status.status == DS_DISCARDED) {
            str_format(why, sizeof(why), "discarded by rule \"%s\"", m->routes[index].rule);
            reason = why;
        }
        qmgr_active_outcome(m, index, u->deliver_status.status, u->deliver_status.dsn, reason,
                            qmgr_active_relay(m, index), 1);
        return 0;
    }
    if (t == IPC_DELIVER_DONE) {
        if (a->nstatus != m->nidx || u->deliver_done.count != (uint32_t)m->nidx)
            return -1;
        request_end(a);
        return 1;
    }
    return -1;
}

static void on_agent_read(struct bufferevent *bev, void *arg)
{
    struct agent *a = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 4)
            return;
        const unsigned char *p = evbuffer_pullup(in, 4);
        long flen = ipc_frame_len(p, avail);
        if (flen == 0)
            return;
        if (flen > 0)
            p = evbuffer_pullup(in, flen);
        enum ipc_type t;
        union ipc_msg u;
        size_t used;
        int r;
        if (flen < 0 || ipc_next(p, (size_t)flen, &t, &u, &used, "local") <= 0 ||
            (r = agent_frame(a, t, &u)) < 0) {
            agent_fail(a, "protocol error");
            return;
        }
        evbuffer_drain(in, used);
        if (r > 0) {   /* request finished */
            if (stopped) {
                if (nbusy == 0)
                    qmgr_drained();
                return;
            }
            kick();
        }
    }
}

static void on_agent_event(struct bufferevent *bev, short what, void *arg)
{
    struct agent *a = arg;
    if (what & BEV_EVENT_TIMEOUT)
        agent_fail(a, "timeout");
    else if (what & BEV_EVENT_EOF)
        agent_fail(a, "closed");
    else
        agent_fail(a, strerror(EVUTIL_SOCKET_ERROR()));
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    kick();
}

static struct agent *agent_new(void)
{
    if (retry_ev && evtimer_pending(retry_ev, NULL))
        return NULL;   /* the last connect failed: wait for the retry timer */
    int fd = ipc_connect_unix(SOCK_LOCAL);
    if (fd < 0) {
        log_warn("connect %s: %m (retrying)", SOCK_LOCAL);
        struct timeval tv = { QMGR_AGENT_BACKOFF, 0 };
        if (retry_ev == NULL)
            retry_ev = evtimer_new(qmgr_g->base, on_retry, NULL);
        evtimer_add(retry_ev, &tv);
        return NULL;
    }
    evutil_make_socket_nonblocking(fd);
    struct agent *a = xcalloc(1, sizeof(*a));
    a->bev = bufferevent_socket_new(qmgr_g->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (a->bev == NULL)
        log_fatal("bufferevent_socket_new failed");
    bufferevent_setcb(a->bev, on_agent_read, NULL, on_agent_event, a);
    bufferevent_enable(a->bev, EV_READ | EV_WRITE);
    buf_t out;
    buf_init(&out, 64);
    struct ipc_hello h = { IPC_PROTO_DELIVER, IPC_VERSION };
    ipc_put_hello(&out, &h);
    bufferevent_write(a->bev, out.data, out.len);
    buf_free(&out);
    a->next = agents;
    agents = a;
    nagents++;
    return a;
}

/* Hand message m to agent a (HELLO may still be in flight: requests are
 * pipelined behind it). */
static void agent_send(struct agent *a, struct qmsg *m)
{
    buf_t out;
    buf_init(&out, 512);
    struct ipc_deliver_req req = { m->id, NULL, "local", m->env.sender, (uint32_t)m->nidx };
    char path[QUEUE_ID_MAX + 16];
    str_format(path, sizeof(path), SPOOL_ACTIVE "/%s", m->id);
    req.path = path;
    ipc_put_deliver_req(&out, &req);
    for (int i = 0; i < m->nidx; i++) {
        const struct qf_rcpt *r = &m->env.rcpts[m->idx[i]];
        const char *nexthop = "";
        if (m->routes) {
            switch (m->routes[m->idx[i]].kind) {
            case QR_MAILDIR: nexthop = "maildir"; break;
            case QR_MBOX:    nexthop = "mbox"; break;
            case QR_DISCARD: nexthop = "discard"; break;
            default: break;
            }
        }
        struct ipc_deliver_rcpt dr = { m->idx[i], r->addr, r->orig ? r->orig : "", nexthop };
        ipc_put_deliver_rcpt(&out, &dr);
    }
    bufferevent_write(a->bev, out.data, out.len);
    buf_free(&out);
    a->msg = m;
    a->nstatus = 0;
    nbusy++;
    struct timeval tv = { QMGR_AGENT_TIMEOUT, 0 };
    bufferevent_set_timeouts(a->bev, &tv, NULL);
}

static struct agent *agent_idle(void)
{
    for (struct agent *a = agents; a; a = a->next)
        if (a->msg == NULL)
            return a;
    return NULL;
}

/* Dispatch queued messages to idle (or new) connections. */
static void kick(void)
{
    while (runq_head && !stopped) {
        struct agent *a = agent_idle();
        if (a == NULL) {
            if (nagents >= qmgr_g->cfg->delivery_processes)
                return;
            if ((a = agent_new()) == NULL)
                return;
        }
        struct qmsg *m = runq_head;
        runq_head = m->qnext;
        if (runq_head == NULL)
            runq_tail = NULL;
        m->qnext = NULL;
        agent_send(a, m);
    }
}

void qmgr_deliver_submit(struct qmsg *m)
{
    m->qnext = NULL;
    if (runq_tail)
        runq_tail->qnext = m;
    else
        runq_head = m;
    runq_tail = m;
    kick();
}

void qmgr_deliver_stop(void)
{
    stopped = 1;
    if (retry_ev)
        evtimer_del(retry_ev);
    struct agent *a = agents, *next;
    for (; a; a = next) {
        next = a->next;
        if (a->msg == NULL)
            agent_free(a);
    }
}
