/*
 * filter_clnt.c - the event-loop filter client (see filter_clnt.h): one
 * connection, a FIFO of requests keyed by FILTER_REQ.id, one timer for the
 * nearest deadline (the handshake's, else the oldest request's), and a
 * reconnect timer with exponential backoff.
 * Never calls the owner back from inside filter_clnt_ask, and takes every
 * request off the queue before calling back about it (a callback may ask
 * again).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "filter/filter_clnt.h"
#include "ipc/ipc_bev.h"
#include "util/log.h"
#include "mail/spool.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000

struct fc_req {
    struct fc_req *next, *prev;
    uint64_t id;
    int64_t deadline;           /* monotonic ms */
    void *arg;
    int cancelled;              /* the reply, when it comes, is dropped */
};

struct filter_clnt {
    struct event_base *base;
    struct filter_clnt_conf conf;
    const struct filter_clnt_ops *ops;
    void *arg;
    struct ipc_peer *peer;
    struct event *tmo, *retry;
    int64_t hello_deadline;
    int hello, ready;           /* on this connection: HELLO, a FILTER_STAGES */
    int failing;                /* failed, no HELLO since */
    int backoff_ms, no_redial;
    uint32_t mask, generation;
    int have_mask;
    uint64_t next_id;
    struct fc_req *head, *tail;
    int npending;
    struct filter_rx rx;
    const char *bad_why;        /* why on_frame refused a message */
};

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void dial(struct filter_clnt *c);

/* Arm the timer for the nearest deadline (none: idle and ready). */
static void arm(struct filter_clnt *c)
{
    int64_t when = 0;
    if (c->peer && !c->ready)
        when = c->hello_deadline;
    else if (c->peer && c->head)
        when = c->head->deadline;
    if (when == 0) {
        evtimer_del(c->tmo);
        return;
    }
    int64_t d = when - now_ms();
    if (d < 0)
        d = 0;
    struct timeval tv = { (time_t)(d / 1000), (suseconds_t)(d % 1000) * 1000 };
    evtimer_add(c->tmo, &tv);
}

static void unlink_req(struct filter_clnt *c, struct fc_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        c->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        c->tail = r->prev;
    c->npending--;
}

static void schedule_retry(struct filter_clnt *c)
{
    if (c->no_redial)
        return;
    int lo = c->conf.backoff_min_ms > 0 ? c->conf.backoff_min_ms : BACKOFF_MIN_MS;
    int hi = c->conf.backoff_max_ms > 0 ? c->conf.backoff_max_ms : BACKOFF_MAX_MS;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : lo;
    if (c->backoff_ms > hi)
        c->backoff_ms = hi;
    struct timeval tv = { c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000 };
    evtimer_add(c->retry, &tv);
}

/* The connection is gone: the owner hears why, then every waiting request
 * gets "no verdict"; a reconnect is scheduled. */
static void fail(struct filter_clnt *c, const char *why)
{
    ipc_peer_free(c->peer);
    c->peer = NULL;
    c->hello = c->ready = 0;
    c->failing = 1;
    filter_rx_reset(&c->rx);        /* the stage mask stays known */
    evtimer_del(c->tmo);
    if (c->ops->on_down)
        c->ops->on_down(why, c->arg);
    /* one at a time: a callback may cancel a request still queued */
    while (c->head) {
        struct fc_req *r = c->head;
        unlink_req(c, r);
        if (!r->cancelled)
            c->ops->on_verdict(r->id, r->arg, NULL, c->arg);
        free(r);
    }
    schedule_retry(c);
}

static void on_tmo(evutil_socket_t fd, short what, void *arg)
{
    struct filter_clnt *c = arg;
    int64_t now = now_ms();
    if (c->peer && !c->ready && now >= c->hello_deadline)
        fail(c, c->hello ? "no FILTER_STAGES from filter" : "no HELLO from filter");
    else if (c->peer && c->ready && c->head && now >= c->head->deadline)
        fail(c, "no answer");
    else
        arm(c);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    dial(arg);
}

/* The verdict in rx is complete: hand it to its request. -1 = not ours. */
static int reply_done(struct filter_clnt *c)
{
    struct fc_req *r = c->head;
    while (r && r->id != c->rx.id)
        r = r->next;
    if (r == NULL) {
        log_warn("filter answered request %llu: not one we asked",
                 (unsigned long long)c->rx.id);
        c->bad_why = "reply to an unknown request";
        return -1;
    }
    unlink_req(c, r);
    arm(c);
    struct filter_verdict v;
    filter_rx_take(&c->rx, &v);
    if (!r->cancelled)
        c->ops->on_verdict(r->id, r->arg, &v, c->arg);
    free(r);
    filter_verdict_free(&v);
    return 0;
}

static void take_stages(struct filter_clnt *c, const struct ipc_filter_stages *st)
{
    int first = !c->ready;
    c->mask = st->mask;
    c->generation = st->generation;
    c->have_mask = 1;
    c->ready = 1;
    if (first)
        arm(c);
    if (c->ops->on_stages)
        c->ops->on_stages(st->mask, st->generation, first, c->arg);
}

/* FILTER_REPLY + its FILTER_MUTs, FILTER_STAGES; -1 = protocol error. */
static int on_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m, void *arg)
{
    struct filter_clnt *c = arg;
    int in_reply = c->rx.active;
    switch (filter_rx_feed(&c->rx, t, m)) {
    case FILTER_RX_MORE:
        return 0;
    case FILTER_RX_DONE:
        return reply_done(c);
    case FILTER_RX_STAGES:
        take_stages(c, &m->filter_stages);
        return 0;
    default:
        c->bad_why = in_reply ? "bad FILTER_MUT" :
                     t == IPC_FILTER_REPLY ? "bad FILTER_REPLY" : "unexpected message";
        log_warn("filter sent %s (%s): dropping the connection", ipc_type_name(t), c->bad_why);
        return -1;
    }
}

static void on_hello(struct ipc_peer *p, void *arg)
{
    struct filter_clnt *c = arg;
    int back = c->failing;
    c->hello = 1;
    c->failing = 0;
    c->backoff_ms = 0;
    if (c->ops->on_up)
        c->ops->on_up(back, c->arg);
}

static void on_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    struct filter_clnt *c = arg;
    fail(c, why == IPC_PEER_EOF ? "closed by filter" :
            why == IPC_PEER_TIMEOUT ? "no answer" :
            why == IPC_PEER_IO ? "I/O error" :
            why == IPC_PEER_HELLO ? "bad HELLO" :
            why == IPC_PEER_PROTO ? "protocol error" :
            c->bad_why ? c->bad_why : "protocol error");
}

static const struct ipc_peer_ops fc_ops = {
    .proto = IPC_PROTO_FILTER, .connect_nonblock = 1, .on_hello = on_hello,
    .on_frame = on_frame, .on_error = on_error,
};

static void dial(struct filter_clnt *c)
{
    const char *path = c->conf.path ? c->conf.path : SOCK_FILTER;
    c->peer = ipc_peer_connect(c->base, path, "filter", &fc_ops, c);
    if (c->peer == NULL) {
        char why[160];
        snprintf(why, sizeof(why), "connect %s: %s", path, strerror(errno));
        fail(c, why);
        return;
    }
    c->hello_deadline = now_ms() + c->conf.hello_ms;
    arm(c);
}

struct filter_clnt *filter_clnt_new(struct event_base *base, const struct filter_clnt_conf *conf,
                                    const struct filter_clnt_ops *ops, void *arg)
{
    struct filter_clnt *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->conf = *conf;
    c->ops = ops;
    c->arg = arg;
    c->tmo = evtimer_new(base, on_tmo, c);
    c->retry = evtimer_new(base, on_retry, c);
    dial(c);
    return c;
}

void filter_clnt_free(struct filter_clnt *c)
{
    if (c == NULL)
        return;
    ipc_peer_free(c->peer);
    filter_rx_reset(&c->rx);
    for (struct fc_req *r = c->head, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    event_free(c->tmo);
    event_free(c->retry);
    free(c);
}

void filter_clnt_stop_redial(struct filter_clnt *c)
{
    c->no_redial = 1;
    evtimer_del(c->retry);
}

int filter_clnt_ask(struct filter_clnt *c, struct ipc_filter_req *req, void *req_arg)
{
    if (c->peer == NULL || c->failing)
        return -1;
    req->id = ++c->next_id;
    if (ipc_peer_send(c->peer, IPC_FILTER_REQ, req) < 0)
        return -1;
    struct fc_req *r = xcalloc(1, sizeof(*r));
    r->id = req->id;
    r->arg = req_arg;
    r->deadline = now_ms() + c->conf.reply_ms;
    r->prev = c->tail;
    if (c->tail)
        c->tail->next = r;
    else
        c->head = r;
    c->tail = r;
    c->npending++;
    if (r == c->head)
        arm(c);
    return 0;
}

void filter_clnt_cancel(struct filter_clnt *c, uint64_t id)
{
    for (struct fc_req *r = c->head; r; r = r->next)
        if (r->id == id)
            r->cancelled = 1;
}

int filter_clnt_send(struct filter_clnt *c, enum ipc_type t, const void *msg)
{
    if (c->peer == NULL || !c->hello)
        return -1;
    return ipc_peer_send(c->peer, t, msg);
}

int filter_clnt_stage_rules(const struct filter_clnt *c, enum stage s)
{
    return !c->have_mask || ((unsigned)s < 32 && (c->mask & (1u << s)) != 0);
}

int filter_clnt_have_stages(const struct filter_clnt *c) { return c->have_mask; }
uint32_t filter_clnt_generation(const struct filter_clnt *c) { return c->generation; }
int filter_clnt_ready(const struct filter_clnt *c) { return c->peer != NULL && c->ready; }
int filter_clnt_connecting(const struct filter_clnt *c) { return c->peer != NULL && !c->ready; }
int filter_clnt_failing(const struct filter_clnt *c) { return c->failing; }
int filter_clnt_pending(const struct filter_clnt *c) { return c->npending; }

void filter_req_init(struct ipc_filter_req *req, enum stage stage)
{
    memset(req, 0, sizeof(*req));
    req->stage = stage;
    req->listener = req->client_ip = req->client_ptr = req->helo = req->auth_user = "";
    req->tls_version = req->tls_cipher = req->mail_from = req->rcpt = "";
    req->queue_id = req->path = "";
    req->spf_result = req->spf_domain = req->dmarc_result = req->dmarc_policy = "";
}
