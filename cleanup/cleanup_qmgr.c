/*
 * cleanup_qmgr.c - telling qmgr about a newly queued message.
 *
 * A persistent connection to private/qmgr carries QMGR_WAKEUP{queue_id}.
 * This is only a hint: the message is already durable in incoming/ and
 * qmgr scans that directory when it starts, so when qmgr is down or slow we
 * log at debug level and carry on (reconnecting at most once a second). We
 * never let unsent wakeups pile up without bound.
 */
#include <errno.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent.h>

#include "bev_flush.h"
#include "cleanup.h"
#include "log.h"

#define QMGR_OUT_MAX (1024 * 1024)   /* unsent bytes before we give up on qmgr */

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void clq_close(struct cl_ctx *ctx)
{
    if (ctx->qbev) {
        bufferevent_free(ctx->qbev);
        ctx->qbev = NULL;
    }
}

static void q_drop(struct cl_ctx *ctx, const char *why)
{
    log_debug("qmgr connection: %s", why);
    clq_close(ctx);
    ctx->q_last_fail = now_ms();
}

/* qmgr only ever sends its HELLO; read and check it, refuse anything else. */
static void q_read(struct bufferevent *bev, void *arg)
{
    struct cl_ctx *ctx = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        unsigned char h[4];
        if (avail < 4)
            return;
        evbuffer_copyout(in, h, 4);
        if (ipc_frame_len(h, 4) < 0) {
            q_drop(ctx, "bad frame");
            return;
        }
        size_t flen = 4 + (((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3]);
        if (avail < flen)
            return;
        const unsigned char *p = evbuffer_pullup(in, (ssize_t)flen);
        enum ipc_type type;
        union ipc_msg m;
        size_t used;
        if (p == NULL || ipc_next(p, flen, &type, &m, &used, "qmgr") != 1 ||
            type != IPC_HELLO || ipc_hello_ok(&m.hello, IPC_PROTO_QMGR) < 0) {
            q_drop(ctx, "protocol error");
            return;
        }
        evbuffer_drain(in, used);
    }
}

static void q_event(struct bufferevent *bev, short what, void *arg)
{
    q_drop(arg, (what & BEV_EVENT_EOF) ? "closed by qmgr" : "error");
}

static int q_connect(struct cl_ctx *ctx)
{
    if (ctx->q_last_fail && now_ms() - ctx->q_last_fail < 1000)
        return -1;
    int fd = ipc_connect_unix(SOCK_QMGR);
    if (fd < 0) {
        log_debug("connect %s: %s (qmgr will find the message when it scans)", SOCK_QMGR,
                  strerror(errno));
        ctx->q_last_fail = now_ms();
        return -1;
    }
    fd_set_nonblock(fd, 1);
    ctx->qbev = bufferevent_socket_new(ctx->srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (ctx->qbev == NULL) {
        close(fd);
        return -1;
    }
    bufferevent_setcb(ctx->qbev, q_read, NULL, q_event, ctx);
    bufferevent_enable(ctx->qbev, EV_READ | EV_WRITE);
    struct ipc_hello h = { IPC_PROTO_QMGR, IPC_VERSION };
    buf_t out;
    buf_init(&out, 64);
    ipc_put_hello(&out, &h);
    bufferevent_write(ctx->qbev, out.data, out.len);
    buf_free(&out);
    ctx->q_last_fail = 0;
    return 0;
}

/* Wakeups written in one loop round go out in one write at its end, in
 * place (lib/bev_flush.h), not through an EPOLLOUT round. */
static struct event *qflush_ev;
static int qflush_armed;

static void q_flush(evutil_socket_t fd, short what, void *arg)
{
    struct cl_ctx *ctx = arg;
    qflush_armed = 0;
    if (ctx->qbev)
        bev_flush_now(ctx->qbev);
}

void clq_wakeup(struct cl_ctx *ctx, const char *qid)
{
    if (ctx->qbev == NULL && q_connect(ctx) < 0)
        return;
    if (evbuffer_get_length(bufferevent_get_output(ctx->qbev)) > QMGR_OUT_MAX) {
        q_drop(ctx, "qmgr is not reading");
        return;
    }
    struct ipc_qmgr_wakeup w = { qid, 0 };
    buf_t out;
    buf_init(&out, 64);
    ipc_put_qmgr_wakeup(&out, &w);
    bufferevent_write(ctx->qbev, out.data, out.len);
    buf_free(&out);
    if (qflush_ev == NULL)
        qflush_ev = event_new(ctx->srv->base, -1, 0, q_flush, ctx);
    if (qflush_ev && !qflush_armed) {
        qflush_armed = 1;
        event_active(qflush_ev, EV_TIMEOUT, 0);
    }
}
