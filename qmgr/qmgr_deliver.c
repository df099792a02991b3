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

#include <event2/event.h>

#include "ipc/ipc_bev.h"
#include "util/log.h"
#include "qmgr.h"

struct agent {
    struct ipc_peer *ipc;
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
    ipc_peer_free(a->ipc);
    nagents--;
    free(a);
}

/* The request on a finished (or broken) connection is done: record it. */
static void request_end(struct agent *a)
{
    struct qmsg *m = a->msg;
    a->msg = NULL;
    nbusy--;
    ipc_peer_set_timeout(a->ipc, 0);
    qmgr_active_finish(m);
}

/* Defer what the agent did not answer (reason: the DSN text), then drop
 * the connection: a request broken halfway cannot be resumed on it. */
static void agent_abort(struct agent *a, const char *reason)
{
    struct qmsg *m = a->msg;
    if (m) {
        for (int i = 0; i < m->nidx; i++)
            if (!m->got[i])
                qmgr_active_outcome(m, m->idx[i], DS_DEFERRED, "4.3.0", reason,
                                    qmgr_active_relay(m, m->idx[i]), 0);
        m->retry_at = qmgr_now() + QMGR_AGENT_BACKOFF;
        request_end(a);
    }
    agent_free(a);
}

/* The connection broke or misbehaved: defer what was not answered. */
static void agent_fail(struct agent *a, const char *why)
{
    if (a->msg)
        log_warn("delivery agent connection lost (%s) during %s", why, a->msg->id);
    agent_abort(a, "delivery agent died");
    if (stopped && nbusy == 0)
        qmgr_drained();
    else
        kick();
}

/* One frame from the agent (after its HELLO); -1 = protocol error. */
static int agent_frame(struct agent *a, enum ipc_type t, union ipc_msg *u)
{
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

static int on_agent_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *u, void *arg)
{
    int r = agent_frame(arg, t, u);
    if (r > 0) {   /* request finished */
        if (stopped) {
            if (nbusy == 0)
                qmgr_drained();
        } else {
            kick();
        }
    }
    return r < 0 ? -1 : 0;
}

static void on_agent_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    struct agent *a = arg;
    if (why == IPC_PEER_TIMEOUT)
        agent_fail(a, "timeout");
    else if (why == IPC_PEER_EOF)
        agent_fail(a, "closed");
    else if (why == IPC_PEER_IO)
        agent_fail(a, strerror(EVUTIL_SOCKET_ERROR()));
    else
        agent_fail(a, "protocol error");
}

static const struct ipc_peer_ops agent_ops = {
    .proto = IPC_PROTO_DELIVER, .on_frame = on_agent_frame, .on_error = on_agent_error,
};

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    kick();
}

static struct agent *agent_new(void)
{
    if (retry_ev && evtimer_pending(retry_ev, NULL))
        return NULL;   /* the last connect failed: wait for the retry timer */
    struct agent *a = xcalloc(1, sizeof(*a));
    a->ipc = ipc_peer_connect(qmgr_g->base, SOCK_LOCAL, "local", &agent_ops, a);
    if (a->ipc == NULL) {
        log_warn("connect %s: %m (retrying)", SOCK_LOCAL);
        free(a);
        struct timeval tv = { QMGR_AGENT_BACKOFF, 0 };
        if (retry_ev == NULL)
            retry_ev = evtimer_new(qmgr_g->base, on_retry, NULL);
        evtimer_add(retry_ev, &tv);
        return NULL;
    }
    a->next = agents;
    agents = a;
    nagents++;
    return a;
}

/* Hand message m to agent a (HELLO may still be in flight: requests are
 * pipelined behind it). -1: a frame could not be encoded or queued
 * (EMSGSIZE): the caller defers the message and drops the connection. */
static int agent_send(struct agent *a, struct qmsg *m)
{
    a->msg = m;
    a->nstatus = 0;
    nbusy++;
    struct ipc_deliver_req req = { m->id, NULL, "local", m->env.sender, (uint32_t)m->nidx };
    char path[QUEUE_ID_MAX + 16];
    str_format(path, sizeof(path), SPOOL_ACTIVE "/%s", m->id);
    req.path = path;
    if (ipc_peer_send(a->ipc, IPC_DELIVER_REQ, &req) < 0)
        return -1;
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
        if (ipc_peer_send(a->ipc, IPC_DELIVER_RCPT, &dr) < 0)
            return -1;
    }
    ipc_peer_set_timeout(a->ipc, QMGR_AGENT_TIMEOUT);
    return 0;
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
        if (agent_send(a, m) < 0) {
            log_warn("delivery request for %s cannot be sent: %m", m->id);
            agent_abort(a, "delivery request could not be sent");
        }
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
