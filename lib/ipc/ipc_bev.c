/*
 * ipc_bev.c - an IPC conversation over a libevent bufferevent (see
 * ipc_bev.h): HELLO, strict frame extraction, typed sends, timeouts and
 * output back-pressure, written once for every event-loop daemon.
 *
 * Used by smtpd, cleanup, filter and qmgr. Must never hand the owner a
 * frame that ipc_next did not decode, nor read from or free a handle
 * while one of its own callbacks is still on the stack (depth counts them;
 * ipc_peer_free then only marks it and the outermost callback frees it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

#include "util/bev_flush.h"
#include "util/bev_read.h"
#include "ipc/ipc_bev.h"
#include "util/log.h"
#include "daemon/server.h"

struct ipc_peer {
    struct bufferevent *bev;       /* NULL once freed */
    const struct ipc_peer_ops *ops;
    void *arg;
    buf_t out;                     /* encoding scratch */
    int hello;                     /* the peer's HELLO arrived */
    int throttled;                 /* reading stopped: too much unsent */
    int depth;                     /* our callbacks on the stack */
    int dead;                      /* freed inside a callback */
    char name[32];
};

static void peer_read(struct bufferevent *bev, void *arg);

static void peer_release(struct ipc_peer *p)
{
    buf_free(&p->out);
    free(p);
}

void ipc_peer_free(struct ipc_peer *p)
{
    if (p == NULL || p->dead)
        return;
    p->dead = 1;
    if (p->bev)
        bufferevent_free(p->bev);
    p->bev = NULL;
    if (p->depth == 0)
        peer_release(p);
}

/* Leave a callback: free a peer its owner freed meanwhile. 1 = gone. */
static int peer_leave(struct ipc_peer *p)
{
    if (--p->depth == 0 && p->dead) {
        peer_release(p);
        return 1;
    }
    return p->dead;
}

static void peer_fail(struct ipc_peer *p, enum ipc_peer_why why)
{
    p->ops->on_error(p, why, p->arg);
}

/* HELLO first (checked, answered on the server side), then the owner's. */
static int peer_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m)
{
    if (p->hello)
        return p->ops->on_frame(p, t, m, p->arg) < 0 ? -1 : 0;
    if (t != IPC_HELLO) {
        log_warn("ipc: %s sent %s before HELLO: dropping connection", p->name,
                 ipc_type_name(t));
        return -2;
    }
    if (ipc_hello_ok(&m->hello, p->ops->proto) < 0)
        return -2;
    p->hello = 1;
    if (p->ops->server) {
        struct ipc_hello h = { p->ops->proto, IPC_VERSION };
        ipc_peer_send(p, IPC_HELLO, &h);
    }
    if (p->ops->on_hello)
        p->ops->on_hello(p, p->arg);
    return 0;
}

static void peer_read(struct bufferevent *bev, void *arg)
{
    struct ipc_peer *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    p->depth++;
    while (!p->dead && !p->throttled) {
        size_t avail = evbuffer_get_length(in);
        if (avail < 4)
            break;
        const unsigned char *f = evbuffer_pullup(in, 4);
        long flen = ipc_frame_len(f, avail);
        if (flen == 0)
            break;
        if (flen > 0)
            f = evbuffer_pullup(in, flen);
        enum ipc_type t;
        union ipc_msg m;
        size_t used = 0;
        /* a bad header (flen < 0) is reported and logged by ipc_next too */
        if (f == NULL || ipc_next(f, flen > 0 ? (size_t)flen : 4, &t, &m, &used, p->name) != 1) {
            peer_fail(p, IPC_PEER_PROTO);
            break;
        }
        int r = peer_frame(p, t, &m);
        if (p->dead)
            break;
        if (r < 0) {
            peer_fail(p, r == -2 ? IPC_PEER_HELLO : IPC_PEER_REFUSED);
            break;
        }
        evbuffer_drain(in, used);
        if (p->ops->out_high && ipc_peer_backlog(p) > p->ops->out_high) {
            p->throttled = 1;
            bufferevent_disable(bev, EV_READ);
        }
    }
    peer_leave(p);
}

/* Output fell to out_low: read again what back-pressure held, tell the owner. */
static void peer_write(struct bufferevent *bev, void *arg)
{
    struct ipc_peer *p = arg;
    p->depth++;
    if (p->throttled) {
        p->throttled = 0;
        bufferevent_enable(bev, EV_READ);
        peer_read(bev, p);
    }
    if (!p->dead && p->ops->on_drained)
        p->ops->on_drained(p, p->arg);
    peer_leave(p);
}

static void peer_event(struct bufferevent *bev, short what, void *arg)
{
    struct ipc_peer *p = arg;
    p->depth++;
    peer_fail(p, (what & BEV_EVENT_TIMEOUT) ? IPC_PEER_TIMEOUT :
                 (what & BEV_EVENT_EOF) ? IPC_PEER_EOF : IPC_PEER_IO);
    peer_leave(p);
}

static struct ipc_peer *peer_new(struct event_base *base, int fd, const char *name,
                                 const struct ipc_peer_ops *ops, void *arg)
{
    struct ipc_peer *p = xcalloc(1, sizeof(*p));
    p->ops = ops;
    p->arg = arg;
    buf_init(&p->out, 256);
    str_copy(p->name, sizeof(p->name), name);
    p->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (p->bev == NULL)
        log_fatal("bufferevent_socket_new failed");
    if (ops->read_direct)
        bev_read_direct(p->bev);
    int wcb = ops->out_high || ops->on_drained;
    bufferevent_setcb(p->bev, peer_read, wcb ? peer_write : NULL, peer_event, p);
    if (wcb)
        bufferevent_setwatermark(p->bev, EV_WRITE, ops->out_low, 0);
    bufferevent_enable(p->bev, EV_READ | EV_WRITE);
    return p;
}

struct ipc_peer *ipc_peer_connect(struct event_base *base, const char *path, const char *name,
                                  const struct ipc_peer_ops *ops, void *arg)
{
    int fd = ops->connect_nonblock ? ipc_connect_unix_nonblock(path) : ipc_connect_unix(path);
    if (fd < 0)
        return NULL;
    fd_set_nonblock(fd, 1);
    struct ipc_peer *p = peer_new(base, fd, name, ops, arg);
    struct ipc_hello h = { ops->proto, IPC_VERSION };
    ipc_peer_send(p, IPC_HELLO, &h);
    return p;
}

struct ipc_peer *ipc_peer_accept(struct event_base *base, int fd, const char *name,
                                 const struct ipc_peer_ops *ops, void *arg)
{
    fd_set_nonblock(fd, 1);
    return peer_new(base, fd, name, ops, arg);
}

int ipc_peer_send(struct ipc_peer *p, enum ipc_type t, const void *msg)
{
    if (p == NULL || p->bev == NULL)
        return -1;
    buf_reset(&p->out);
    if (ipc_encode(&p->out, t, msg) < 0)
        return -1;                  /* logged; nothing sent, the link stays in step */
    if (log_trace_on(TRACE_IPC)) {
        buf_t tb;
        buf_init(&tb, 128);
        /* ipc_format reads only type t's fields, at their offsets in msg */
        ipc_format(&tb, t, (const union ipc_msg *)msg);
        log_trace(TRACE_IPC, "ipc >%s: %s", p->name, tb.data);
        buf_free(&tb);
    }
    int r = bufferevent_write(p->bev, p->out.data, p->out.len);
    if (p->out.cap > 256 * 1024) {      /* a big DATA frame: don't keep the room */
        buf_free(&p->out);
        buf_init(&p->out, 256);
    }
    return r;
}

void ipc_peer_flush(struct ipc_peer *p)
{
    if (p && p->bev)
        bev_flush_now(p->bev);      /* plain sockets only: ours are */
}

void ipc_peer_hold(struct ipc_peer *p)
{
    /* the bufferevent adds its write event again when more is queued */
    if (p && p->bev)
        event_del(&p->bev->ev_write);
}

size_t ipc_peer_backlog(const struct ipc_peer *p)
{
    return p && p->bev ? evbuffer_get_length(bufferevent_get_output(p->bev)) : 0;
}

void ipc_peer_set_timeout(struct ipc_peer *p, int secs)
{
    if (p == NULL || p->bev == NULL)
        return;
    struct timeval tv = { secs, 0 };
    bufferevent_set_timeouts(p->bev, secs > 0 ? &tv : NULL, NULL);
}

void ipc_peer_read_again(struct ipc_peer *p)
{
    if (p && p->bev && !p->throttled)
        bufferevent_enable(p->bev, EV_READ);
}

int ipc_peer_ready(const struct ipc_peer *p)
{
    return p != NULL && p->hello;
}

const char *ipc_peer_name(const struct ipc_peer *p)
{
    return p->name;
}
