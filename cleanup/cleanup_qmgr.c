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

#include <event2/event.h>

#include "cleanup.h"
#include "util/clock.h"
#include "ipc/ipc_bev.h"
#include "util/log.h"

#define QMGR_OUT_MAX (1024 * 1024)   /* unsent bytes before we give up on qmgr */

void clq_close(struct cl_ctx *ctx)
{
    ipc_peer_free(ctx->qpeer);
    ctx->qpeer = NULL;
}

static void q_drop(struct cl_ctx *ctx, const char *why)
{
    log_debug("qmgr connection: %s", why);
    clq_close(ctx);
    ctx->q_last_fail = clock_now_ms();
}

/* qmgr only ever sends its HELLO (checked by the peer): refuse anything else. */
static int q_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m, void *arg)
{
    return -1;
}

static void q_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    q_drop(arg, why == IPC_PEER_EOF ? "closed by qmgr" :
                why == IPC_PEER_IO || why == IPC_PEER_TIMEOUT ? "error" : "protocol error");
}

static const struct ipc_peer_ops q_ops = {
    .proto = IPC_PROTO_QMGR, .on_frame = q_frame, .on_error = q_error,
};

static int q_connect(struct cl_ctx *ctx)
{
    if (ctx->q_last_fail && clock_now_ms() - ctx->q_last_fail < 1000)
        return -1;
    ctx->qpeer = ipc_peer_connect(ctx->srv->base, SOCK_QMGR, "qmgr", &q_ops, ctx);
    if (ctx->qpeer == NULL) {
        log_debug("connect %s: %s (qmgr will find the message when it scans)", SOCK_QMGR,
                  strerror(errno));
        ctx->q_last_fail = clock_now_ms();
        return -1;
    }
    ctx->q_last_fail = 0;
    return 0;
}

/* Wakeups written in one loop round go out in one write at its end, in
 * place (lib/util/bev_flush.h), not through an EPOLLOUT round. */
static struct event *qflush_ev;
static int qflush_armed;

static void q_flush(evutil_socket_t fd, short what, void *arg)
{
    struct cl_ctx *ctx = arg;
    qflush_armed = 0;
    ipc_peer_flush(ctx->qpeer);
}

void clq_wakeup(struct cl_ctx *ctx, const char *qid)
{
    if (ctx->qpeer == NULL && q_connect(ctx) < 0)
        return;
    if (ipc_peer_backlog(ctx->qpeer) > QMGR_OUT_MAX) {
        q_drop(ctx, "qmgr is not reading");
        return;
    }
    struct ipc_qmgr_wakeup w = { qid, 0 };
    if (ipc_peer_send(ctx->qpeer, IPC_QMGR_WAKEUP, &w) < 0) {
        /* the message is queued: qmgr's next scan of incoming/ finds it */
        log_warn("cannot send the wakeup for %s to qmgr: %m", qid);
        return;
    }
    if (qflush_ev == NULL)
        qflush_ev = event_new(ctx->srv->base, -1, 0, q_flush, ctx);
    if (qflush_ev && !qflush_armed) {
        qflush_armed = 1;
        event_active(qflush_ev, EV_TIMEOUT, 0);
    }
}
