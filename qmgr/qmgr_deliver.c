/*
 * qmgr_deliver.c - the pools of connections to delivery agents and the
 * dispatch queues: the local agent (private/local) for recipients in a
 * local domain (local_domains / domain blocks) or with a mailbox choice
 * from the rules, the smtp agent (private/smtp) for every other domain.
 * A message with both kinds sends two requests ("jobs"); it is finished
 * (outcomes written, qmgr_active_finish) when its last job ends.
 *
 * A message's recipients become one job per pool and destination (the next
 * hop: deliver_nexthop; every local recipient is one destination), queued
 * in their destination (qmgr_dest.c: delivery.concurrency, delivery.rate,
 * round robin between destinations).
 *
 * Per pool at most processes.delivery connections; each carries one job
 * at a time: HELLO once, then DELIVER_REQ + DELIVER_RCPT x n, answered by
 * DELIVER_STATUS x n + DELIVER_DONE. Idle connections are reused. An smtp
 * agent that keeps its SMTP session open names the destination in
 * DELIVER_DONE.held: a job for that destination goes to that agent first
 * (connection reuse), and a job for another one prefers an agent that
 * holds nothing, or a new one. When a
 * connection breaks mid-request (agent killed), the unanswered recipients
 * are deferred with "4.3.0 delivery agent died" and retried after a short
 * backoff. Must never trust the agent: every status must name a recipient
 * of its job, once.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "ipc/deliver_agent.h"
#include "ipc/ipc_bev.h"
#include "util/clock.h"
#include "util/log.h"
#include "qmgr.h"
#include "metrics/metrics.h"

enum { POOL_LOCAL = QPOOL_LOCAL, POOL_SMTP = QPOOL_SMTP, POOL_PIPE = QPOOL_PIPE,
       NPOOLS = QPOOL__COUNT };
_Static_assert(NPOOLS <= QMGR_POOLS, "QMGR_POOLS");

#define HELD_MAX_MS 60000   /* believe an agent's held_ms up to this */

struct agent {
    struct ipc_peer *ipc;
    struct qjob *job;           /* request in flight, NULL = idle */
    int nstatus;
    int pool;
    char held[300];             /* destination whose session it keeps open, "" = none */
    int64_t held_until;         /* clock_now_ms() until which to believe that */
    int64_t sent_us;            /* the request went out (attempt latency metric) */
    struct agent *next;
};

static struct pool {
    const char *sock, *name, *transport;
    struct agent *agents;
    int nagents;
    struct event *retry_ev;     /* reconnect after a failed connect */
    struct event *rate_ev;      /* a destination's rate gap ends */
} pools[NPOOLS] = {
    { SOCK_LOCAL, "local", "local", NULL, 0, NULL, NULL },
    { SOCK_SMTP, "smtp", "smtp", NULL, 0, NULL, NULL },
    { SOCK_PIPE, "pipe", "pipe", NULL, 0, NULL, NULL },
};
static int nbusy;
static int stopped;

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

static void job_free(struct qjob *j)
{
    struct qmsg *m = j->m;
    m->njobs--;
    free(j->pos);
    free(j);
}

/* The job on a finished (or broken) connection is done: record it. */
static void request_end(struct agent *a)
{
    struct qjob *j = a->job;
    struct qmsg *m = j->m;
    a->job = NULL;
    nbusy--;
    ipc_peer_set_timeout(a->ipc, 0);
    qmgr_dest_done(j->d);
    job_free(j);
    if (m->njobs == 0)
        qmgr_active_finish(m);
}

static const char *relay_of(const struct qjob *j, uint32_t index)
{
    return j->pool != POOL_LOCAL ? pools[j->pool].name : qmgr_active_relay(j->m, index);
}

/* Defer what the agent did not answer (reason: the DSN text), then drop
 * the connection: a request broken halfway cannot be resumed on it. */
static void agent_abort(struct agent *a, const char *reason)
{
    struct qjob *j = a->job;
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

static void after_end(void)
{
    if (stopped) {
        if (nbusy == 0)
            qmgr_drained();
    } else {
        for (int p = 0; p < NPOOLS; p++)
            kick(p);
    }
}

/* The connection broke or misbehaved: defer what was not answered. */
static void agent_fail(struct agent *a, const char *why)
{
    if (a->job)
        log_warn("%s delivery agent connection lost (%s) during %s", pools[a->pool].name, why,
                 a->job->m->id);
    agent_abort(a, "delivery agent died");
    after_end();
}

static int job_has(const struct qjob *j, int i)
{
    for (int k = 0; k < j->n; k++)
        if (j->pos[k] == i)
            return 1;
    return 0;
}

static void status_frame(struct agent *a, const struct ipc_deliver_status *st)
{
    struct qjob *j = a->job;
    struct qmsg *m = j->m;
    uint32_t index = st->index;
    const char *reason = st->reason;
    char why[128];
    if (m->routes && m->routes[index].kind == QR_DISCARD && st->status == DS_DISCARDED) {
        str_format(why, sizeof(why), "discarded by rule \"%s\"", m->routes[index].rule);
        reason = why;
    }
    qmgr_active_outcome(m, index, st->status, st->dsn, reason, relay_of(j, index), 1);
}

/* One frame from the agent (after its HELLO); -1 = protocol error. */
static int agent_frame(struct agent *a, enum ipc_type t, union ipc_msg *u)
{
    struct qjob *j = a->job;
    if (j == NULL)
        return -1;
    struct qmsg *m = j->m;
    if (t == IPC_DELIVER_STATUS) {
        int i = qmgr_active_idx(m, u->deliver_status.index);
        if (i < 0 || m->got[i] || !job_has(j, i))
            return -1;
        m->got[i] = 1;
        a->nstatus++;
        status_frame(a, &u->deliver_status);
        return 0;
    }
    if (t == IPC_DELIVER_DONE) {
        if (a->nstatus != j->n || u->deliver_done.count != (uint32_t)j->n)
            return -1;
        /* a hint only: a wrong one costs a new connection, nothing else */
        uint32_t ms = u->deliver_done.held_ms;
        str_copy(a->held, sizeof(a->held), u->deliver_done.held);
        a->held_until = clock_now_ms() + (ms < HELD_MAX_MS ? ms : HELD_MAX_MS);
        metric_observe(MET_DELIVERY_DURATION, clock_now_us() - a->sent_us,
                       pools[j->pool].transport, NULL);
        request_end(a);
        return 1;
    }
    return -1;
}

static int on_agent_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *u, void *arg)
{
    int r = agent_frame(arg, t, u);
    if (r > 0)   /* request finished */
        after_end();
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
    .read_direct = 1,
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
static int agent_send(struct agent *a, struct qjob *j)
{
    struct qmsg *m = j->m;
    a->job = j;
    a->nstatus = 0;
    a->held[0] = '\0';   /* the agent closes a session to another destination */
    a->sent_us = clock_now_us();
    nbusy++;
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
        const char *nexthop = qmgr_hop_nexthop(&m->hops[j->pos[k]]);
        struct ipc_deliver_rcpt dr = { index, r->addr, r->orig ? r->orig : "", nexthop };
        if (ipc_peer_send(a->ipc, IPC_DELIVER_RCPT, &dr) < 0)
            return -1;
    }
    ipc_peer_set_timeout(a->ipc, QMGR_AGENT_TIMEOUT);
    return 0;
}

static int holds(const struct agent *a, int64_t now)
{
    return a->held[0] && a->held_until > now;
}

/* The agent for a job to dest: one holding a session to it, else an idle
 * one holding nothing, else a new connection, else any idle one (its
 * session to another destination is closed). NULL = none free now. */
static struct agent *agent_pick(int pool, const char *dest, int64_t now)
{
    struct agent *any = NULL, *free_one = NULL;
    for (struct agent *a = pools[pool].agents; a; a = a->next) {
        if (a->job)
            continue;
        if (holds(a, now) && strcmp(a->held, dest) == 0)
            return a;
        if (!holds(a, now) && free_one == NULL)
            free_one = a;
        any = a;
    }
    if (free_one)
        return free_one;
    if (pools[pool].nagents < qmgr_g->cfg->delivery_processes) {
        struct agent *a = agent_new(pool);
        if (a)
            return a;
    }
    return any;
}

/* Start d's next job on agent a. */
static void dispatch(struct agent *a, struct qdest *d, int64_t now)
{
    struct qjob *j = qmgr_dest_pop(d, now);
    if (agent_send(a, j) < 0) {
        log_warn("delivery request for %s cannot be sent: %m", j->m->id);
        agent_abort(a, "delivery request could not be sent");
        return;
    }
    /* written now, not after an EPOLLOUT round: saves an epoll_ctl pair
     * and a loop pass per request (what the socket refuses, libevent
     * writes later as before) */
    ipc_peer_flush(a->ipc);
}

/* Idle agents that hold a session first get a job for its destination. */
static void kick_held(int pool, int64_t now)
{
    struct agent *a, *next;
    for (a = pools[pool].agents; a && !stopped; a = next) {
        next = a->next;   /* dispatch may free a (request not sendable) */
        if (a->job || !holds(a, now))
            continue;
        struct qdest *d = qmgr_dest_find(pool, a->held);
        if (d && d->head && qmgr_dest_open(d, now))
            dispatch(a, d, now);
    }
}

static void on_rate(evutil_socket_t fd, short what, void *arg)
{
    kick((int)(intptr_t)arg);
}

/* Kick the pool again when the first rate gap that held a job back ends. */
static void rate_wait(int pool, int64_t until, int64_t now)
{
    struct pool *pl = &pools[pool];
    if (pl->rate_ev == NULL)
        pl->rate_ev = evtimer_new(qmgr_g->base, on_rate, (void *)(intptr_t)pool);
    int64_t ms = until > now ? until - now : 1;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
    evtimer_add(pl->rate_ev, &tv);
}

/* Dispatch queued jobs of one pool, round robin over its destinations,
 * each within its concurrency and rate, to free (or new) agents. */
static void kick(int pool)
{
    if (stopped)
        return;
    int64_t now = clock_now_ms(), rate_until = 0;
    kick_held(pool, now);
    int skipped = 0;
    while (!stopped && skipped < qmgr_dest_nwaiting(pool)) {
        struct qdest *d = qmgr_dest_waiting(pool);
        if (!qmgr_dest_open(d, now)) {
            if (d->busy < d->limit && (rate_until == 0 || d->next_ms < rate_until))
                rate_until = d->next_ms;   /* held back by the rate only */
            qmgr_dest_rotate(d);
            skipped++;
            continue;
        }
        struct agent *a = agent_pick(pool, d->name, now);
        if (a == NULL)
            return;   /* every agent busy: the next DONE kicks again */
        dispatch(a, d, now);
        skipped = 0;
    }
    if (rate_until)
        rate_wait(pool, rate_until, now);
}

/* The destination of routed recipient i (position in m->idx) in its pool:
 * for smtp the next hop the rules chose (forward(), lmtp(), a transport)
 * or else deliver_nexthop, with delivery.concurrency and delivery.rate; a
 * pipe transport is one destination; all local mail is one. */
static struct qdest *dest_of(const struct qmsg *m, int i)
{
    const struct qhop *h = &m->hops[i];
    if (h->pool == POOL_LOCAL)
        return qmgr_dest_get(h->pool, "", INT_MAX, 0);
    if (h->pool != POOL_SMTP)
        return qmgr_dest_get(h->pool, qmgr_hop_nexthop(h), INT_MAX, 0);
    const struct config *cfg = qmgr_g->cfg;
    char buf[QMGR_NEXTHOP_MAX];
    const char *name = h->nexthop;
    if (name == NULL) {
        deliver_nexthop(cfg, m->env.rcpts[m->idx[i]].addr, buf, sizeof(buf));
        name = buf;
    }
    return qmgr_dest_get(h->pool, name, cfg->concurrency, cfg->rate ? 60000 / cfg->rate : 0);
}

void qmgr_deliver_submit(struct qmsg *m)
{
    /* one job per (pool, destination); all queued before any kick: a job
     * that ends at once must see the others (m->njobs) */
    struct qjob **jobs = xcalloc((size_t)m->nidx, sizeof(*jobs));
    int njobs = 0;
    unsigned kicks = 0;
    for (int i = 0; i < m->nidx; i++) {
        int p = m->hops[i].pool;   /* resolved by route() (qmgr_route.c) */
        struct qdest *d = dest_of(m, i);
        struct qjob *j = NULL;
        for (int k = 0; k < njobs && j == NULL; k++)
            if (jobs[k]->d == d)
                j = jobs[k];
        if (j == NULL) {
            j = jobs[njobs++] = xcalloc(1, sizeof(*j));
            j->m = m;
            j->pool = p;
            j->d = d;
            j->pos = xcalloc((size_t)m->nidx, sizeof(int));
        }
        j->pos[j->n++] = i;
    }
    m->njobs += njobs;
    for (int k = 0; k < njobs; k++) {
        qmgr_dest_push(jobs[k]->d, jobs[k]);
        kicks |= 1u << jobs[k]->pool;
    }
    free(jobs);
    for (int p = 0; p < NPOOLS; p++)
        if (kicks & (1u << p))
            kick(p);
}

void qmgr_deliver_stop(void)
{
    stopped = 1;
    for (int p = 0; p < NPOOLS; p++) {
        if (pools[p].retry_ev)
            evtimer_del(pools[p].retry_ev);
        if (pools[p].rate_ev)
            evtimer_del(pools[p].rate_ev);
        /* queued jobs are dropped: their recipients stay pending in active/
         * (recovered at the next start); a message with a job in flight is
         * finished when that one ends */
        struct qdest *d;
        while ((d = qmgr_dest_waiting(p)) != NULL)
            job_free(qmgr_dest_drop(d));
        struct agent *a = pools[p].agents, *next;
        for (; a; a = next) {
            next = a->next;
            if (a->job == NULL)
                agent_free(a);
        }
    }
}
