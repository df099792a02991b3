/*
 * qmgr_deliver.c - the pools of connections to delivery agents and the
 * dispatch queues: the local agent (private/local) for recipients in a
 * local domain (local_domains / domain blocks) or with a mailbox choice
 * from the rules, the smtp agent (private/smtp) for every other domain.
 * A message with both kinds sends two requests ("jobs"); it is finished
 * (outcomes written, qmgr_active_finish) when its last job ends.
 *
 * Per pool at most processes.delivery connections; each carries one job
 * at a time: HELLO once, then DELIVER_REQ + DELIVER_RCPT x n, answered by
 * DELIVER_STATUS x n + DELIVER_DONE. Idle connections are reused. When a
 * connection breaks mid-request (agent killed), the unanswered recipients
 * are deferred with "4.3.0 delivery agent died" and retried after a short
 * backoff. Must never trust the agent: every status must name a recipient
 * of its job, once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "ipc/ipc_bev.h"
#include "util/log.h"
#include "qmgr.h"

enum { POOL_LOCAL = QPOOL_LOCAL, POOL_SMTP = QPOOL_SMTP, POOL_PIPE = QPOOL_PIPE,
       NPOOLS = QPOOL__COUNT };

/* One request: the recipients of m (positions in m->idx) for one agent. */
struct job {
    struct qmsg *m;
    int pool;
    int *pos; int n;
    struct job *next;           /* dispatch queue */
};

struct agent {
    struct ipc_peer *ipc;
    struct job *job;            /* request in flight, NULL = idle */
    int nstatus;
    int pool;
    struct agent *next;
};

static struct pool {
    const char *sock, *name, *transport;
    struct agent *agents;
    int nagents;
    struct job *head, *tail;
    struct event *retry_ev;     /* reconnect after a failed connect */
} pools[NPOOLS] = {
    { SOCK_LOCAL, "local", "local", NULL, 0, NULL, NULL, NULL },
    { SOCK_SMTP, "smtp", "smtp", NULL, 0, NULL, NULL, NULL },
    { SOCK_PIPE, "pipe", "pipe", NULL, 0, NULL, NULL, NULL },
};
static int nbusy;
static int stopped;
static struct job **inflight;   /* jobs sent, to tell when a message's last one ends */
static int ninflight, cinflight;

static void kick(int pool);

int qmgr_deliver_busy(void)
{
    return nbusy;
}

static void agent_free(struct agent *a)
{
    struct pool *pl = &pools[a->pool];
    struct agent **pp = &pl->agents;
    while (*pp && *pp != a)
        pp = &(*pp)->next;
    if (*pp)
        *pp = a->next;
    ipc_peer_free(a->ipc);
    pl->nagents--;
    free(a);
}

static void job_free(struct job *j)
{
    free(j->pos);
    free(j);
}

/* Does message m still have a job queued or in flight? Queued ones are
 * dropped when qmgr stops (their recipients stay pending). */
static int message_busy(const struct qmsg *m)
{
    for (int i = 0; i < ninflight; i++)
        if (inflight[i]->m == m)
            return 1;
    for (int p = 0; p < NPOOLS; p++) {
        struct job **jp = &pools[p].head, *prev = NULL;
        while (*jp) {
            struct job *j = *jp;
            if (j->m != m) {
                prev = j;
                jp = &j->next;
                continue;
            }
            if (!stopped)
                return 1;
            *jp = j->next;
            if (pools[p].tail == j)
                pools[p].tail = prev;
            job_free(j);
        }
    }
    return 0;
}

/* The job on a finished (or broken) connection is done: record it. */
static void request_end(struct agent *a)
{
    struct job *j = a->job;
    struct qmsg *m = j->m;
    a->job = NULL;
    nbusy--;
    ipc_peer_set_timeout(a->ipc, 0);
    for (int i = 0; i < ninflight; i++)
        if (inflight[i] == j) {
            inflight[i] = inflight[--ninflight];
            break;
        }
    job_free(j);
    if (!message_busy(m))
        qmgr_active_finish(m);
}

static const char *relay_of(const struct job *j, uint32_t index)
{
    return j->pool != POOL_LOCAL ? pools[j->pool].name : qmgr_active_relay(j->m, index);
}

/* Defer what the agent did not answer (reason: the DSN text), then drop
 * the connection: a request broken halfway cannot be resumed on it. */
static void agent_abort(struct agent *a, const char *reason)
{
    struct job *j = a->job;
    if (j) {
        struct qmsg *m = j->m;
        for (int k = 0; k < j->n; k++) {
            int i = j->pos[k];
            if (!m->got[i])
                qmgr_active_outcome(m, m->idx[i], DS_DEFERRED, "4.3.0", reason,
                                    relay_of(j, m->idx[i]), 0);
        }
        m->retry_at = qmgr_now() + QMGR_AGENT_BACKOFF;
        request_end(a);
    }
    agent_free(a);
}

static void after_end(int pool)
{
    if (stopped) {
        if (nbusy == 0)
            qmgr_drained();
    } else {
        for (int p = 0; p < NPOOLS; p++)
            kick(p);
    }
    (void)pool;
}

/* The connection broke or misbehaved: defer what was not answered. */
static void agent_fail(struct agent *a, const char *why)
{
    int pool = a->pool;
    if (a->job)
        log_warn("%s delivery agent connection lost (%s) during %s", pools[pool].name, why,
                 a->job->m->id);
    agent_abort(a, "delivery agent died");
    after_end(pool);
}

static int job_has(const struct job *j, int i)
{
    for (int k = 0; k < j->n; k++)
        if (j->pos[k] == i)
            return 1;
    return 0;
}

/* One frame from the agent (after its HELLO); -1 = protocol error. */
static int agent_frame(struct agent *a, enum ipc_type t, union ipc_msg *u)
{
    struct job *j = a->job;
    if (j == NULL)
        return -1;
    struct qmsg *m = j->m;
    if (t == IPC_DELIVER_STATUS) {
        int i = qmgr_active_idx(m, u->deliver_status.index);
        if (i < 0 || m->got[i] || !job_has(j, i))
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
                            relay_of(j, index), 1);
        return 0;
    }
    if (t == IPC_DELIVER_DONE) {
        if (a->nstatus != j->n || u->deliver_done.count != (uint32_t)j->n)
            return -1;
        request_end(a);
        return 1;
    }
    return -1;
}

static int on_agent_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *u, void *arg)
{
    struct agent *a = arg;
    int pool = a->pool;
    int r = agent_frame(a, t, u);
    if (r > 0)   /* request finished */
        after_end(pool);
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
    kick((int)(intptr_t)arg);
}

static struct agent *agent_new(int pool)
{
    struct pool *pl = &pools[pool];
    if (pl->retry_ev && evtimer_pending(pl->retry_ev, NULL))
        return NULL;   /* the last connect failed: wait for the retry timer */
    struct agent *a = xcalloc(1, sizeof(*a));
    a->pool = pool;
    a->ipc = ipc_peer_connect(qmgr_g->base, pl->sock, pl->name, &agent_ops, a);
    if (a->ipc == NULL) {
        log_warn("connect %s: %m (retrying)", pl->sock);
        free(a);
        struct timeval tv = { QMGR_AGENT_BACKOFF, 0 };
        if (pl->retry_ev == NULL)
            pl->retry_ev = evtimer_new(qmgr_g->base, on_retry, (void *)(intptr_t)pool);
        evtimer_add(pl->retry_ev, &tv);
        return NULL;
    }
    a->next = pl->agents;
    pl->agents = a;
    pl->nagents++;
    return a;
}

/* Hand job j to agent a (HELLO may still be in flight: requests are
 * pipelined behind it). -1: a frame could not be encoded or queued
 * (EMSGSIZE): the caller defers the job and drops the connection. */
static int agent_send(struct agent *a, struct job *j)
{
    struct qmsg *m = j->m;
    a->job = j;
    a->nstatus = 0;
    nbusy++;
    if (ninflight == cinflight) {
        cinflight = cinflight ? cinflight * 2 : 16;
        inflight = xrealloc(inflight, (size_t)cinflight * sizeof(*inflight));
    }
    inflight[ninflight++] = j;
    struct ipc_deliver_req req = { m->id, NULL, pools[j->pool].transport, m->env.sender,
                                   (uint32_t)j->n };
    char path[QUEUE_ID_MAX + 16];
    str_format(path, sizeof(path), SPOOL_ACTIVE "/%s", m->id);
    req.path = path;
    if (ipc_peer_send(a->ipc, IPC_DELIVER_REQ, &req) < 0)
        return -1;
    for (int k = 0; k < j->n; k++) {
        uint32_t index = m->idx[j->pos[k]];
        const struct qf_rcpt *r = &m->env.rcpts[index];
        char nh[QMGR_NEXTHOP_MAX];
        const char *nexthop = qmgr_route_nexthop(m, index, nh, sizeof(nh));
        struct ipc_deliver_rcpt dr = { index, r->addr, r->orig ? r->orig : "", nexthop };
        if (ipc_peer_send(a->ipc, IPC_DELIVER_RCPT, &dr) < 0)
            return -1;
    }
    ipc_peer_set_timeout(a->ipc, QMGR_AGENT_TIMEOUT);
    return 0;
}

static struct agent *agent_idle(int pool)
{
    for (struct agent *a = pools[pool].agents; a; a = a->next)
        if (a->job == NULL)
            return a;
    return NULL;
}

/* Dispatch queued jobs of one pool to idle (or new) connections. */
static void kick(int pool)
{
    struct pool *pl = &pools[pool];
    while (pl->head && !stopped) {
        struct agent *a = agent_idle(pool);
        if (a == NULL) {
            if (pl->nagents >= qmgr_g->cfg->delivery_processes)
                return;
            if ((a = agent_new(pool)) == NULL)
                return;
        }
        struct job *j = pl->head;
        pl->head = j->next;
        if (pl->head == NULL)
            pl->tail = NULL;
        j->next = NULL;
        if (agent_send(a, j) < 0) {
            log_warn("delivery request for %s cannot be sent: %m", j->m->id);
            agent_abort(a, "delivery request could not be sent");
        }
    }
}

/* Which agent serves recipient index of m: qmgr_route.c decides (the
 * deliver stage's choice; else local domains -> local, others -> smtp). */
static int pool_of(const struct qmsg *m, uint32_t index)
{
    return qmgr_route_pool(m, index);   /* qmgr_route.c */
}

void qmgr_deliver_submit(struct qmsg *m)
{
    struct job *jobs[NPOOLS] = { NULL };
    for (int i = 0; i < m->nidx; i++) {
        int p = pool_of(m, m->idx[i]);
        if (jobs[p] == NULL) {
            jobs[p] = xcalloc(1, sizeof(struct job));
            jobs[p]->m = m;
            jobs[p]->pool = p;
            jobs[p]->pos = xcalloc((size_t)m->nidx, sizeof(int));
        }
        jobs[p]->pos[jobs[p]->n++] = i;
    }
    /* queue both before kicking: a job that ends at once must see the other */
    for (int p = 0; p < NPOOLS; p++) {
        if (jobs[p] == NULL)
            continue;
        struct pool *pl = &pools[p];
        if (pl->tail)
            pl->tail->next = jobs[p];
        else
            pl->head = jobs[p];
        pl->tail = jobs[p];
    }
    for (int p = 0; p < NPOOLS; p++)
        if (jobs[p])
            kick(p);
}

void qmgr_deliver_stop(void)
{
    stopped = 1;
    for (int p = 0; p < NPOOLS; p++) {
        if (pools[p].retry_ev)
            evtimer_del(pools[p].retry_ev);
        struct agent *a = pools[p].agents, *next;
        for (; a; a = next) {
            next = a->next;
            if (a->job == NULL)
                agent_free(a);
        }
    }
}
