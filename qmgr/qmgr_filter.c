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
 * next message reconnects. Must never trust the reply: ids must match a
 * request, statuses and kinds are range-checked, strings are copied
 * bounded and without control characters.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "ipc.h"
#include "log.h"
#include "qmgr.h"
#include "rules.h"

#define MAX_MUTS 10000          /* mutations accepted in one reply */

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

static struct bufferevent *fbev;
static struct event *check_ev;          /* every few seconds while anything waits */
static int64_t connected_at;
static enum fstate fst;
static uint32_t fmask, fgen;
static uint64_t next_id;
static struct freq *pending;            /* requests sent, oldest first */
static struct fwait *waiting, **waiting_tail = &waiting;
static int stopped;
/* the reply being assembled (its FILTER_MUTs are still arriving) */
static struct freq *cur_req;
static struct qverdict cur;
static uint32_t cur_want;

void qverdict_free(struct qverdict *v)
{
    for (int i = 0; i < v->nmuts; i++) {
        free(v->muts[i].rcpt);
        free(v->muts[i].arg);
        free(v->muts[i].arg2);
        free(v->muts[i].rule);
    }
    free(v->muts);
    memset(v, 0, sizeof(*v));
}

static void copy_text(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 32 || ch == 127) ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

static char *dup_text(const char *src)
{
    size_t n = strnlen(src, 4096);
    char *d = xcalloc(1, n + 1);
    copy_text(d, n + 1, src);
    return d;
}

/* The connection is gone: fail every request and every waiting message. */
static void fail_all(const char *why)
{
    if (fbev)
        bufferevent_free(fbev);
    fbev = NULL;
    fst = F_DOWN;
    struct freq *p = pending;
    struct fwait *w = waiting;
    pending = NULL;
    waiting = NULL;
    waiting_tail = &waiting;
    if (cur_req) {       /* a reply was half received: fail it too */
        cur_req->next = p;
        p = cur_req;
        cur_req = NULL;
    }
    qverdict_free(&cur);
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

static void reply_done(void)
{
    struct freq *r = cur_req;
    struct qverdict v = cur;
    cur_req = NULL;
    memset(&cur, 0, sizeof(cur));
    qmgr_rules_verdict(r->m, r->stage, &v);
    free(r);
    qverdict_free(&v);
}

/* One frame from filter; -1 = protocol error. */
static int filter_frame(enum ipc_type t, union ipc_msg *u)
{
    if (fst == F_HELLO) {
        if (t != IPC_HELLO || ipc_hello_ok(&u->hello, IPC_PROTO_FILTER) < 0)
            return -1;
        fst = F_STAGES;
        return 0;
    }
    if (cur_req) {   /* inside a reply: only its mutations may come */
        if (t != IPC_FILTER_MUT)
            return -1;
        struct qmut *mu = &cur.muts[cur.nmuts++];
        mu->kind = u->filter_mut.kind;
        mu->rcpt = dup_text(u->filter_mut.rcpt);
        mu->arg = dup_text(u->filter_mut.arg);
        mu->arg2 = dup_text(u->filter_mut.arg2);
        mu->rule = dup_text(u->filter_mut.rule);
        if ((uint32_t)cur.nmuts == cur_want)
            reply_done();
        return 0;
    }
    if (t == IPC_FILTER_STAGES) {
        if (fst != F_READY || u->filter_stages.mask != fmask)
            log_info("filter rules generation %u: postq %s, deliver %s",
                     (unsigned)u->filter_stages.generation,
                     (u->filter_stages.mask >> STAGE_POSTQ) & 1 ? "on" : "off",
                     (u->filter_stages.mask >> STAGE_DELIVER) & 1 ? "on" : "off");
        fmask = u->filter_stages.mask;
        fgen = u->filter_stages.generation;
        if (fst != F_READY) {
            fst = F_READY;
            release_waiting();
        }
        return 0;
    }
    if (fst != F_READY || t != IPC_FILTER_REPLY)
        return -1;
    const struct ipc_filter_reply *rp = &u->filter_reply;
    struct freq **pp = &pending;
    while (*pp && (*pp)->id != rp->id)
        pp = &(*pp)->next;
    if (*pp == NULL || rp->nmut > MAX_MUTS) {
        log_warn("filter answered request %llu with %u mutations: not one we asked",
                 (unsigned long long)rp->id, (unsigned)rp->nmut);
        return -1;
    }
    cur_req = *pp;
    *pp = cur_req->next;
    cur_req->next = NULL;
    memset(&cur, 0, sizeof(cur));
    cur.status = rp->status < V__COUNT ? (enum verdict)rp->status : V_TEMPFAIL;
    cur.code = rp->code >= 200 && rp->code <= 599 ? (int)rp->code : 0;
    copy_text(cur.enhanced, sizeof(cur.enhanced), rp->enhanced);
    copy_text(cur.text, sizeof(cur.text), rp->text);
    copy_text(cur.rule, sizeof(cur.rule), rp->rule);
    cur_want = rp->nmut;
    if (cur_want) {
        cur.muts = xcalloc(cur_want, sizeof(*cur.muts));
        return 0;
    }
    reply_done();
    return 0;
}

static void on_filter_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    while (fbev == bev) {
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
        if (flen < 0 || ipc_next(p, (size_t)flen, &t, &u, &used, "filter") <= 0) {
            fail_all("protocol error");
            return;
        }
        int r = filter_frame(t, &u);
        if (fbev != bev)
            return;   /* a callback failed the connection (and freed bev) */
        if (r < 0) {
            log_warn("filter: unexpected %s: dropping connection", ipc_type_name(t));
            fail_all("protocol error");
            return;
        }
        evbuffer_drain(in, used);
    }
}

static void on_filter_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & BEV_EVENT_EOF)
        fail_all("closed by filter");
    else
        fail_all(evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* Timeouts: no greeting + stages within QMGR_FILTER_CONNECT, or a request
 * older than QMGR_FILTER_TIMEOUT. */
static void on_check(evutil_socket_t fd, short what, void *arg)
{
    int64_t now = qmgr_now();
    if (fbev == NULL)
        return;
    if (fst != F_READY && now - connected_at >= QMGR_FILTER_CONNECT)
        fail_all("no greeting in time");
    else if (cur_req && now - cur_req->sent >= QMGR_FILTER_TIMEOUT)
        fail_all("no answer in time");
    else if (pending && now - pending->sent >= QMGR_FILTER_TIMEOUT)
        fail_all("no answer in time");
}

/* Open the connection; -1 when filter cannot be reached. */
static int filter_connect(void)
{
    int fd = ipc_connect_unix(SOCK_FILTER);
    if (fd < 0) {
        log_warn("connect %s: %m", SOCK_FILTER);
        return -1;
    }
    evutil_make_socket_nonblocking(fd);
    fbev = bufferevent_socket_new(qmgr_g->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (fbev == NULL)
        log_fatal("bufferevent_socket_new failed");
    bufferevent_setcb(fbev, on_filter_read, NULL, on_filter_event, NULL);
    bufferevent_enable(fbev, EV_READ | EV_WRITE);
    buf_t out;
    buf_init(&out, 64);
    struct ipc_hello h = { IPC_PROTO_FILTER, IPC_VERSION };
    ipc_put_hello(&out, &h);
    bufferevent_write(fbev, out.data, out.len);
    buf_free(&out);
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
    if (fst == F_READY)
        return (int)((fmask >> s) & 1u);
    if (stopped)
        return -2;
    if (fst == F_DOWN && filter_connect() < 0)
        return -2;
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
    memset(&req, 0, sizeof(req));
    req.id = ++next_id;
    req.stage = (uint32_t)s;
    req.session = 0;
    req.listener = req.client_ip = req.client_ptr = req.helo = req.auth_user = "";
    req.tls_version = req.tls_cipher = req.mail_from = req.rcpt = "";
    req.queue_id = m->id;
    req.path = path;
    struct freq *r = xcalloc(1, sizeof(*r));
    r->id = req.id;
    r->m = m;
    r->stage = s;
    r->sent = qmgr_now();
    struct freq **pp = &pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = r;
    buf_t out;
    buf_init(&out, 256);
    ipc_put_filter_req(&out, &req);
    if (log_trace_on(TRACE_IPC)) {
        buf_t tb;
        buf_init(&tb, 128);
        union ipc_msg um;
        um.filter_req = req;
        ipc_format(&tb, IPC_FILTER_REQ, &um);
        log_trace(TRACE_IPC, "ipc >filter: %s", tb.data);
        buf_free(&tb);
    }
    bufferevent_write(fbev, out.data, out.len);
    buf_free(&out);
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
