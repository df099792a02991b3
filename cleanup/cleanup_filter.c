/*
 * cleanup_filter.c - asking filter for the data-stage verdict without
 * blocking the event loop.
 *
 * ONE persistent connection to private/filter, multiplexed: every request
 * carries a fresh id and waits in the pending list until the reply with that
 * id arrives. If the connection fails (connect error, EOF, protocol error,
 * no answer within CL_FILTER_TIMEOUT) every pending transaction gets a
 * temporary failure; the next request reconnects. A reply for an unknown id
 * (its transaction went away) is ignored. filter sends FILTER_STAGES after
 * its HELLO and after each reload: without data rules the stage is not
 * asked (clf_data_wanted). A FILTER_REPLY is followed at once by its nmut
 * FILTER_MUTs; they are collected into the transaction's dmuts and the
 * verdict is delivered with the last one.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/bufferevent.h>

#include "cleanup.h"
#include "log.h"
#include "rules.h"

#define MAX_REPLY_MUTS 10000

/* The reply whose FILTER_MUTs are arriving (one connection: one at a time). */
static struct {
    int active;
    struct cl_txn *t;           /* NULL: its transaction went away */
    uint64_t id;
    uint32_t status, code, want, got;
    char enhanced[16], rule[64], text[CL_TEXT_MAX];
} cur;

int clf_data_wanted(struct cl_ctx *ctx)
{
    return !ctx->f_have_mask || (ctx->f_mask & (1u << STAGE_DATA)) != 0;
}

static void cur_deliver(struct cl_ctx *ctx)
{
    struct cl_txn *t = cur.t;
    struct ipc_filter_reply r = { cur.id, cur.status, cur.code, cur.enhanced, cur.text,
                                  cur.rule, cur.want };
    memset(&cur, 0, sizeof(cur));
    if (t)
        cl_txn_filter_done(ctx, t, &r);
}

static void fail_all(struct cl_ctx *ctx)
{
    if (ctx->fbev) {
        bufferevent_free(ctx->fbev);
        ctx->fbev = NULL;
    }
    ctx->f_hello = 0;
    ctx->f_have_mask = 0;
    memset(&cur, 0, sizeof(cur));
    struct cl_txn *t = ctx->f_pending;
    ctx->f_pending = NULL;
    while (t) {
        struct cl_txn *next = t->fnext;
        t->fnext = NULL;
        cl_txn_filter_done(ctx, t, NULL);
        t = next;
    }
}

static struct cl_txn *take_pending(struct cl_ctx *ctx, uint64_t id)
{
    for (struct cl_txn **pp = &ctx->f_pending; *pp; pp = &(*pp)->fnext) {
        if ((*pp)->freq_id == id) {
            struct cl_txn *t = *pp;
            *pp = t->fnext;
            t->fnext = NULL;
            return t;
        }
    }
    return NULL;
}

static void set_timeout(struct cl_ctx *ctx)
{
    /* master holds the socket, so a connect succeeds while filter is down:
     * its HELLO must come quickly */
    struct timeval tv = { ctx->f_hello ? CL_FILTER_TIMEOUT : 5, 0 };
    bufferevent_set_timeouts(ctx->fbev, ctx->f_pending ? &tv : NULL, NULL);
}

static void f_read(struct bufferevent *bev, void *arg)
{
    struct cl_ctx *ctx = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        unsigned char h[4];
        if (avail < 4)
            break;
        evbuffer_copyout(in, h, 4);
        if (ipc_frame_len(h, 4) < 0) {
            log_warn("ipc: bad frame header from filter");
            fail_all(ctx);
            return;
        }
        size_t flen = 4 + (((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3]);
        if (avail < flen)
            break;
        const unsigned char *p = evbuffer_pullup(in, (ssize_t)flen);
        enum ipc_type type;
        union ipc_msg m;
        size_t used;
        if (p == NULL || ipc_next(p, flen, &type, &m, &used, "filter") != 1) {
            fail_all(ctx);
            return;
        }
        if (!ctx->f_hello) {
            if (type != IPC_HELLO || ipc_hello_ok(&m.hello, IPC_PROTO_FILTER) < 0) {
                fail_all(ctx);
                return;
            }
            ctx->f_hello = 1;
        } else if (cur.active) {
            if (type != IPC_FILTER_MUT || m.filter_mut.kind >= RL_M__COUNT) {
                log_warn("filter sent %s instead of FILTER_MUT: dropping the connection",
                         ipc_type_name(type));
                fail_all(ctx);
                return;
            }
            const struct ipc_filter_mut *fm = &m.filter_mut;
            if (cur.t)
                cl_muts_add(&cur.t->dmuts, fm->kind, fm->rcpt, fm->arg, fm->arg2, fm->rule);
            evbuffer_drain(in, used);
            if (++cur.got == cur.want)
                cur_deliver(ctx);
            continue;
        } else if (type == IPC_FILTER_REPLY) {
            const struct ipc_filter_reply *fr = &m.filter_reply;
            if (fr->nmut > MAX_REPLY_MUTS) {
                log_warn("filter sent %u mutations: dropping the connection", fr->nmut);
                fail_all(ctx);
                return;
            }
            struct cl_txn *t = take_pending(ctx, fr->id);
            if (t == NULL)
                log_debug("filter reply for unknown request %llu", (unsigned long long)fr->id);
            memset(&cur, 0, sizeof(cur));
            cur.active = 1;
            cur.t = t;
            cur.id = fr->id;
            cur.status = fr->status;
            cur.code = fr->code;
            cur.want = fr->nmut;
            str_copy(cur.enhanced, sizeof(cur.enhanced), fr->enhanced);
            str_copy(cur.rule, sizeof(cur.rule), fr->rule);
            str_copy(cur.text, sizeof(cur.text), fr->text);
            evbuffer_drain(in, used);
            if (cur.want == 0)
                cur_deliver(ctx);
            continue;
        } else if (type == IPC_FILTER_STAGES) {
            ctx->f_mask = m.filter_stages.mask;
            ctx->f_have_mask = 1;
        } else {
            log_warn("filter sent %s: dropping the connection", ipc_type_name(type));
            fail_all(ctx);
            return;
        }
        evbuffer_drain(in, used);
    }
    set_timeout(ctx);
}

static void f_event(struct bufferevent *bev, short what, void *arg)
{
    struct cl_ctx *ctx = arg;
    if (what & BEV_EVENT_TIMEOUT)
        log_warn("filter did not answer within %d seconds: reconnecting",
                 ctx->f_hello ? CL_FILTER_TIMEOUT : 5);
    else if (what & BEV_EVENT_ERROR)
        log_warn("connection to filter: %s", strerror(EVUTIL_SOCKET_ERROR()));
    else if (ctx->f_pending)
        log_warn("filter closed the connection");
    else
        log_debug("filter closed the connection");
    fail_all(ctx);
}

static int f_connect(struct cl_ctx *ctx)
{
    int fd = ipc_connect_unix(SOCK_FILTER);
    if (fd < 0) {
        log_warn("connect %s: %m", SOCK_FILTER);
        return -1;
    }
    fd_set_nonblock(fd, 1);
    ctx->fbev = bufferevent_socket_new(ctx->srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (ctx->fbev == NULL) {
        close(fd);
        return -1;
    }
    bufferevent_setcb(ctx->fbev, f_read, NULL, f_event, ctx);
    bufferevent_enable(ctx->fbev, EV_READ | EV_WRITE);
    struct ipc_hello h = { IPC_PROTO_FILTER, IPC_VERSION };
    buf_t out;
    buf_init(&out, 64);
    ipc_put_hello(&out, &h);
    bufferevent_write(ctx->fbev, out.data, out.len);
    buf_free(&out);
    ctx->f_hello = 0;
    return 0;
}

int clf_ask(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (ctx->fbev == NULL && f_connect(ctx) < 0)
        return -1;
    const struct qf_env *e = &t->env;
    /* tls is "VERSION CIPHER" */
    char tlsv[64] = "";
    const char *cipher = "";
    str_copy(tlsv, sizeof(tlsv), e->tls);
    char *sp = strchr(tlsv, ' ');
    if (sp) {
        *sp = '\0';
        cipher = strchr(e->tls, ' ') + 1;
    }
    struct ipc_filter_req r = {
        .id = ++ctx->f_next_id,
        .stage = STAGE_DATA,
        .session = t->session,
        .listener = e->listener,
        .client_ip = e->client_ip,
        .client_port = e->client_port,
        .client_ptr = e->client_ptr,
        .helo = e->helo,
        .auth_user = e->auth_user,
        .tls_version = tlsv,
        .tls_cipher = cipher,
        .mail_from = e->sender,
        .rcpt = e->nrcpts == 1 ? e->rcpts[0].addr : "",
        .nrcpt = (uint32_t)e->nrcpts,
        .queue_id = t->qid,
        .size = t->size,
        .path = t->path,
    };
    buf_t out;
    buf_init(&out, 512);
    ipc_put_filter_req(&out, &r);
    int rc = bufferevent_write(ctx->fbev, out.data, out.len);
    buf_free(&out);
    if (rc < 0)
        return -1;
    t->freq_id = r.id;
    t->fnext = ctx->f_pending;
    ctx->f_pending = t;
    set_timeout(ctx);
    return 0;
}

void clf_cancel(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (cur.t == t)
        cur.t = NULL;
    take_pending(ctx, t->freq_id);
    if (ctx->fbev)
        set_timeout(ctx);
}

void clf_close(struct cl_ctx *ctx)
{
    fail_all(ctx);
}
