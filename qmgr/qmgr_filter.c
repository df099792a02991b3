/*
 * qmgr_filter.c - qmgr's one connection to private/filter, driven by the
 * event loop: HELLO, then FILTER_STAGES {mask, generation} (again after
 * every rules reload), then FILTER_REQ {stage postq|deliver, path active/ID}
 * answered by FILTER_REPLY + FILTER_REPLY.nmut FILTER_MUT, matched by id.
 *
 * The connection is opened when the first message needs to know whether a
 * stage has rules; messages wait (bounded by QMGR_FILTER_CONNECT) until the
 * stage mask is known. A stage without rules costs no round trip. A slow
 * rule never stalls the loop; a filter that does not answer within
 * QMGR_FILTER_TIMEOUT, closes the connection or breaks the protocol fails
 * every request on it (the messages are deferred and retried soon) and the
 * next message reconnects. With no rules file configured, no stage is
 * asked and filter is never needed. While filter cannot be reached, the
 * last FILTER_STAGES it sent still says which stages have rules: a message
 * goes on through the stages without (default policy: next), and only a
 * stage with rules waits or is deferred. Must never trust the reply: ids must match a
 * request, statuses and kinds are range-checked, strings are copied
 * bounded and without control characters.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "filter_clnt.h"
#include "filter_mut.h"
#include "ipc_bev.h"
#include "log.h"
#include "qmgr.h"

enum fstate { F_DOWN = 0, F_HELLO, F_STAGES, F_READY };

struct freq {
    uint64_t id;
    struct qmsg *m;
    enum stage stage;
    int64_t sent;
    struct freq *next;
};

struct fwait {
    struct qmsg *m;
    struct fwait *next;
};

static struct ipc_peer *fpeer;
static struct event *check_ev;          /* every few seconds while anything waits */
static int64_t connected_at;
static enum fstate fst;
static uint32_t fmask, fgen;            /* the last FILTER_STAGES (kept while down) */
static int have_mask;
static uint64_t next_id;
static struct freq *pending;            /* requests sent, oldest first */
static struct fwait *waiting, **waiting_tail = &waiting;
static int stopped;
static struct filter_rx rx;             /* the reply being assembled */

/* The connection is gone: fail every request and every waiting message. */
static void fail_all(const char *why)
{
    ipc_peer_free(fpeer);
    fpeer = NULL;
    fst = F_DOWN;
    struct freq *p = pending;
    struct fwait *w = waiting;
    pending = NULL;
    waiting = NULL;
    waiting_tail = &waiting;
    filter_rx_reset(&rx);   /* a half received reply: its request is still in p */
    if (stopped) {
        for (struct freq *n; p; p = n) { n = p->next; free(p); }
        for (struct fwait *n; w; w = n) { n = w->next; free(w); }
        return;
    }
    if (p || w)
        log_warn("filter connection: %s: %s", why,
                 "messages waiting for a verdict are deferred and retried soon");
    for (struct freq *n; p; p = n) {
        n = p->next;
        struct qmsg *m = p->m;
        enum stage s = p->stage;
        free(p);
        qmgr_rules_verdict(m, s, NULL);
    }
    for (struct fwait *n; w; w = n) {
        n = w->next;
        struct qmsg *m = w->m;
        free(w);
        qmgr_active_defer_all(m, "4.3.0", "rule filter not available", m->phase == QP_DELIVER,
                              qmgr_now() + QMGR_FILTER_BACKOFF);
    }
}

/* Stages are known now: let every waiting message go on. */
static void release_waiting(void)
{
    struct fwait *w = waiting;
    waiting = NULL;
    waiting_tail = &waiting;
    for (struct fwait *n; w; w = n) {
        n = w->next;
        struct qmsg *m = w->m;
        free(w);
        qmgr_active_advance(m);
    }
}

/* A complete verdict: hand it to the message that asked. -1 = not ours. */
static int reply_done(void)
{
    struct freq **pp = &pending;
    while (*pp && (*pp)->id != rx.id)
        pp = &(*pp)->next;
    if (*pp == NULL) {
        log_warn("filter answered request %llu with %u mutations: not one we asked",
                 (unsigned long long)rx.id, (unsigned)rx.want);
        return -1;
    }
    struct freq *r = *pp;
    *pp = r->next;
    struct filter_verdict v;
    filter_rx_take(&rx, &v);
    qmgr_rules_verdict(r->m, r->stage, &v);
    free(r);
    filter_verdict_free(&v);
    return 0;
}

/* filter's HELLO: FILTER_STAGES follows. */
static void filter_hello(struct ipc_peer *p, void *arg)
{
    fst = F_STAGES;
}

/* One frame from filter (after its HELLO); -1 = protocol error. */
static int filter_frame(enum ipc_type t, union ipc_msg *u)
{
    if (fst != F_READY && t != IPC_FILTER_STAGES)
        return -1;
    switch (filter_rx_feed(&rx, t, u)) {
    case FILTER_RX_MORE:
        return 0;
    case FILTER_RX_DONE:
        return reply_done();
    case FILTER_RX_STAGES:
        break;
    default:
        return -1;
    }
    if (fst != F_READY || u->filter_stages.mask != fmask)
        log_info("filter rules generation %u: postq %s, deliver %s",
                 (unsigned)u->filter_stages.generation,
                 (u->filter_stages.mask >> STAGE_POSTQ) & 1 ? "on" : "off",
                 (u->filter_stages.mask >> STAGE_DELIVER) & 1 ? "on" : "off");
    fmask = u->filter_stages.mask;
    fgen = u->filter_stages.generation;
    have_mask = 1;
    if (fst != F_READY) {
        fst = F_READY;
        release_waiting();
    }
    return 0;
}

static int on_filter_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *u, void *arg)
{
    if (filter_frame(t, u) == 0)
        return 0;
    log_warn("filter: unexpected %s: dropping connection", ipc_type_name(t));
    return -1;
}

static void on_filter_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    if (why == IPC_PEER_EOF)
        fail_all("closed by filter");
    else if (why == IPC_PEER_IO)
        fail_all(evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    else
        fail_all("protocol error");
}

static const struct ipc_peer_ops filter_ops = {
    .proto = IPC_PROTO_FILTER, .on_hello = filter_hello, .on_frame = on_filter_frame,
    .on_error = on_filter_error,
};

/* Timeouts: no greeting + stages within QMGR_FILTER_CONNECT, or a request
 * older than QMGR_FILTER_TIMEOUT. */
static void on_check(evutil_socket_t fd, short what, void *arg)
{
    int64_t now = qmgr_now();
    if (fpeer == NULL)
        return;
    if (fst != F_READY && now - connected_at >= QMGR_FILTER_CONNECT)
        fail_all("no greeting in time");
    else if (pending && now - pending->sent >= QMGR_FILTER_TIMEOUT)
        fail_all("no answer in time");
}

/* Open the connection; -1 when filter cannot be reached. */
static int filter_connect(void)
{
    fpeer = ipc_peer_connect(qmgr_g->base, SOCK_FILTER, "filter", &filter_ops, NULL);
    if (fpeer == NULL) {
        log_warn("connect %s: %m", SOCK_FILTER);
        return -1;
    }
    fst = F_HELLO;
    connected_at = qmgr_now();
    if (check_ev == NULL) {
        check_ev = event_new(qmgr_g->base, -1, EV_PERSIST, on_check, NULL);
        struct timeval tv = { 1, 0 };
        evtimer_add(check_ev, &tv);
    }
    return 0;
}

int qmgr_filter_need(enum stage s)
{
    const char *rules = qmgr_g->cfg->rules;
    if (rules == NULL || rules[0] == '\0')
        return 0;                   /* no rules file: nothing to ask */
    if (fst == F_READY)
        return (int)((fmask >> s) & 1u);
    if (stopped)
        return -2;
    if (fst == F_DOWN && filter_connect() < 0)
        return have_mask && !((fmask >> s) & 1u) ? 0 : -2;
    if (have_mask && !((fmask >> s) & 1u))
        return 0;                   /* no rules there when last heard of */
    return -1;
}

void qmgr_filter_wait(struct qmsg *m)
{
    struct fwait *w = xcalloc(1, sizeof(*w));
    w->m = m;
    *waiting_tail = w;
    waiting_tail = &w->next;
}

void qmgr_filter_ask(struct qmsg *m, enum stage s)
{
    if (fst != F_READY) {
        qmgr_rules_verdict(m, s, NULL);
        return;
    }
    char path[QUEUE_ID_MAX + 16];
    str_format(path, sizeof(path), SPOOL_ACTIVE "/%s", m->id);
    struct ipc_filter_req req;
    filter_req_init(&req, s);
    req.id = ++next_id;
    req.queue_id = m->id;
    req.path = path;
    if (ipc_peer_send(fpeer, IPC_FILTER_REQ, &req) < 0) {
        qmgr_rules_verdict(m, s, NULL);     /* logged: this message is deferred */
        return;
    }
    struct freq *r = xcalloc(1, sizeof(*r));
    r->id = req.id;
    r->m = m;
    r->stage = s;
    r->sent = qmgr_now();
    struct freq **pp = &pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = r;
}

void qmgr_filter_stop(void)
{
    stopped = 1;
    fail_all("stopping");
    if (check_ev) {
        event_free(check_ev);
        check_ev = NULL;
    }
}
