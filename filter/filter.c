/*
 * filter.c - the policy daemon: answers FILTER_REQ with FILTER_REPLY.
 *
 * One process, one libevent loop, many connections on private/filter
 * (every smtpd process, cleanup, qmgr, the CLI). Each opens with
 * HELLO(filter), then sends any number of requests, possibly pipelined; each
 * reply carries the request's id. The verdict comes from policy_decide()
 * (filter_policy.c): today the default policy, later the rules VM.
 * Peers are not trusted: a malformed frame drops that connection only, and
 * a peer that does not read its replies is not read from until it does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "filter_policy.h"
#include "log.h"
#include "server.h"
#include "spool.h"

#define OUT_HIGH (4 * 1024 * 1024)   /* stop reading a peer with this much unsent */
#define OUT_LOW  (256 * 1024)        /* ... until it drained below this */

struct fconn {
    struct fctx *ctx;
    struct bufferevent *bev;
    int hello;
    int throttled;
    char peer[32];
    struct fconn *next, *prev;
};

struct fctx {
    struct server *srv;
    struct evconnlistener *lis;
    struct fconn *conns;
    uint64_t serial;
};

static void fconn_free(struct fconn *c)
{
    struct fctx *ctx = c->ctx;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bufferevent_free(c->bev);
    free(c);
}

static void log_verdict(const struct ipc_filter_req *q, const struct verdict_out *v,
                        const struct verdict_reply *d)
{
    if (v->status != V_REJECT && v->status != V_DENY && v->status != V_DEFER)
        return;
    int code = v->code ? v->code : d->code;
    const char *enh = v->enhanced[0] ? v->enhanced : d->enhanced;
    const char *text = v->text[0] ? v->text : d->text;
    if (q->queue_id[0])
        log_set_qid(q->queue_id);
    if (q->stage == STAGE_RCPT)
        log_info("%s%sreject: RCPT from %s[%s]: %d %s <%s>: %s; from=<%s> to=<%s> helo=<%s>",
                 q->queue_id, q->queue_id[0] ? ": " : "", q->client_ptr, q->client_ip, code,
                 enh, q->rcpt, text, q->mail_from, q->rcpt, q->helo);
    else
        log_info("%s%s%s: %s from %s[%s]: %d %s %s; from=<%s> helo=<%s>", q->queue_id,
                 q->queue_id[0] ? ": " : "", v->status == V_DEFER ? "defer" : "reject",
                 stage_name((enum stage)q->stage), q->client_ptr, q->client_ip, code, enh,
                 text, q->mail_from, q->helo);
    log_set_qid(NULL);
}

static void answer(struct fconn *c, const struct ipc_filter_req *q)
{
    struct verdict_out v;
    if (q->stage >= STAGE__COUNT) {
        memset(&v, 0, sizeof(v));
        v.status = V_TEMPFAIL;
    } else {
        policy_decide(q, &v);
    }
    const struct verdict_reply *d = verdict_default(v.status, (enum stage)q->stage);
    log_verdict(q, &v, d);
    struct ipc_filter_reply r = { q->id, (uint32_t)v.status, (uint32_t)v.code, v.enhanced,
                                  v.text, v.rule };
    buf_t out;
    buf_init(&out, 256);
    ipc_put_filter_reply(&out, &r);
    bufferevent_write(c->bev, out.data, out.len);
    buf_free(&out);
}

/* One frame; -1 drops the connection. */
static int fconn_frame(struct fconn *c, enum ipc_type type, const union ipc_msg *m)
{
    if (!c->hello) {
        if (type != IPC_HELLO || ipc_hello_ok(&m->hello, IPC_PROTO_FILTER) < 0)
            return -1;
        struct ipc_hello h = { IPC_PROTO_FILTER, IPC_VERSION };
        buf_t out;
        buf_init(&out, 64);
        ipc_put_hello(&out, &h);
        bufferevent_write(c->bev, out.data, out.len);
        buf_free(&out);
        c->hello = 1;
        return 0;
    }
    if (type != IPC_FILTER_REQ) {
        log_warn("protocol error from %s: unexpected %s", c->peer, ipc_type_name(type));
        return -1;
    }
    answer(c, &m->filter_req);
    return 0;
}

static void fconn_read(struct bufferevent *bev, void *arg)
{
    struct fconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (!c->throttled) {
        size_t avail = evbuffer_get_length(in);
        unsigned char h[4];
        if (avail < 4)
            return;
        evbuffer_copyout(in, h, 4);
        if (ipc_frame_len(h, 4) < 0) {
            log_warn("ipc: bad frame header from %s: dropping connection", c->peer);
            fconn_free(c);
            return;
        }
        size_t flen = 4 + (((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3]);
        if (avail < flen)
            return;
        const unsigned char *p = evbuffer_pullup(in, (ssize_t)flen);
        enum ipc_type type;
        union ipc_msg m;
        size_t used = 0;
        if (p == NULL || ipc_next(p, flen, &type, &m, &used, c->peer) != 1 ||
            fconn_frame(c, type, &m) < 0) {
            fconn_free(c);
            return;
        }
        evbuffer_drain(in, used);
        if (evbuffer_get_length(bufferevent_get_output(bev)) > OUT_HIGH) {
            c->throttled = 1;
            bufferevent_disable(bev, EV_READ);
        }
    }
}

/* Output drained below OUT_LOW: read again (and handle what is buffered). */
static void fconn_write(struct bufferevent *bev, void *arg)
{
    struct fconn *c = arg;
    if (!c->throttled)
        return;
    c->throttled = 0;
    bufferevent_enable(bev, EV_READ);
    fconn_read(bev, c);
}

static void fconn_event(struct bufferevent *bev, short what, void *arg)
{
    struct fconn *c = arg;
    if (what & BEV_EVENT_ERROR)
        log_debug("connection from %s: %s", c->peer, strerror(EVUTIL_SOCKET_ERROR()));
    fconn_free(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct fctx *ctx = arg;
    struct fconn *c = xcalloc(1, sizeof(*c));
    c->ctx = ctx;
    snprintf(c->peer, sizeof(c->peer), "client#%llu", (unsigned long long)++ctx->serial);
    fd_set_nonblock(fd, 1);
    c->bev = bufferevent_socket_new(ctx->srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        close(fd);
        free(c);
        return;
    }
    bufferevent_setcb(c->bev, fconn_read, fconn_write, fconn_event, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_warn("accept on %s: %s", SOCK_FILTER, strerror(e));
}

/* SIGTERM: requests are answered immediately, so there is nothing to drain
 * beyond what the loop already holds: stop accepting and leave. */
static void on_stop(struct server *s)
{
    struct fctx *ctx = s->ctx;
    if (ctx->lis) {
        evconnlistener_free(ctx->lis);
        ctx->lis = NULL;
    }
    server_stop_loop(s);
}

int main(int argc, char **argv)
{
    struct server *s = server_init("filter", argc, argv, 0);
    struct fctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->srv = s;
    s->ctx = ctx;
    s->on_stop = on_stop;
    policy_init(s->cfg);
    int lfd = server_fd_named(s, "filter");
    if (lfd < 0)
        log_fatal("no socket named \"filter\" in POSTERN_FDS");
    fd_set_nonblock(lfd, 1);
    ctx->lis = evconnlistener_new(s->base, on_accept, ctx,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, lfd);
    if (ctx->lis == NULL)
        log_fatal("cannot listen on %s", SOCK_FILTER);
    evconnlistener_set_error_cb(ctx->lis, on_accept_error);
    log_info("ready: default policy (no rules)");
    server_run(s);
    while (ctx->conns)
        fconn_free(ctx->conns);
    if (ctx->lis)
        evconnlistener_free(ctx->lis);
    return 0;
}
