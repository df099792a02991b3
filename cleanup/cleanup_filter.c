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
 * FILTER_MUTs (assembled by a filter_rx, lib/filter_mut.h); with the last
 * one they join the transaction's dmuts and the verdict is delivered. The
 * connection is a struct ipc_peer (lib/ipc_bev.h).
 * Without filter: with no rules file configured, data is never asked. When
 * filter cannot be reached (connect error, no HELLO, the link broke) and
 * the last FILTER_STAGES said data has no rules, the transaction goes on
 * (V_NEXT, the default policy of the data stage); only a data stage with
 * rules (or one never heard of) gets the temporary failure.
 */
#include <errno.h>
#include <string.h>

#include <event2/event.h>

#include "cleanup.h"
#include "ipc_bev.h"
#include "log.h"

static struct filter_rx rx;     /* the reply whose FILTER_MUTs are arriving */
static uint32_t last_mask;      /* the last FILTER_STAGES, kept while filter is away */
static int have_last;

int clf_data_wanted(struct cl_ctx *ctx)
{
    if (ctx->cfg->rules == NULL || ctx->cfg->rules[0] == '\0')
        return 0;                   /* no rules file: nothing to ask */
    return !ctx->f_have_mask || (ctx->f_mask & (1u << STAGE_DATA)) != 0;
}

/* filter is unavailable: does the data stage need it (as far as we know)? */
static int data_needs_filter(void)
{
    return !have_last || (last_mask & (1u << STAGE_DATA)) != 0;
}

/* t gets no verdict from filter: the default policy, or a temporary failure. */
static void unavailable(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (data_needs_filter()) {
        cl_txn_filter_done(ctx, t, NULL);
        return;
    }
    log_set_qid(t->qid);
    log_info("filter unavailable: no data rules: default policy");
    log_set_qid(NULL);
    struct ipc_filter_reply next = { .status = V_NEXT, .enhanced = "", .text = "", .rule = "" };
    cl_txn_filter_done(ctx, t, &next);
}

static void fail_all(struct cl_ctx *ctx)
{
    ipc_peer_free(ctx->fpeer);
    ctx->fpeer = NULL;
    ctx->f_have_mask = 0;
    filter_rx_reset(&rx);
    struct cl_txn *t = ctx->f_pending;
    ctx->f_pending = NULL;
    while (t) {
        struct cl_txn *next = t->fnext;
        t->fnext = NULL;
        unavailable(ctx, t);
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
    int ready = ipc_peer_ready(ctx->fpeer);
    ipc_peer_set_timeout(ctx->fpeer, ctx->f_pending ? (ready ? CL_FILTER_TIMEOUT : 5) : 0);
}

/* The verdict in rx is complete: its mutations join the transaction's
 * dmuts and the verdict is delivered (a transaction gone meanwhile: dropped). */
static void reply_done(struct cl_ctx *ctx)
{
    uint64_t id = rx.id;
    struct filter_verdict v;
    filter_rx_take(&rx, &v);
    struct cl_txn *t = take_pending(ctx, id);
    if (t == NULL) {
        log_debug("filter reply for unknown request %llu", (unsigned long long)id);
        filter_verdict_free(&v);
        return;
    }
    for (int i = 0; i < v.nmuts; i++) {
        const struct filter_mut *m = &v.muts[i];
        if (filter_muts_add(&t->dmuts, CL_MAX_MUTS, m->kind, m->rcpt, m->arg, m->arg2,
                            m->rule) < 0)
            log_warn("%s: rule \"%s\": %s over the mutation cap (%d, %d octets) ignored",
                     t->qid, m->rule, filter_mut_name((enum filter_mut_kind)m->kind), CL_MAX_MUTS,
                     FILTER_MUTS_MAX_BYTES);
    }
    char rule[64];
    str_copy(rule, sizeof(rule), v.rule);
    struct ipc_filter_reply r = { id, v.status, (uint32_t)v.code, v.enhanced, v.text, rule,
                                  (uint32_t)v.nmuts };
    cl_txn_filter_done(ctx, t, &r);
    filter_verdict_free(&v);
}

/* One message from filter after its HELLO; -1 drops the connection. */
static int f_frame(struct ipc_peer *p, enum ipc_type type, union ipc_msg *m, void *arg)
{
    struct cl_ctx *ctx = arg;
    int in_reply = rx.active;
    switch (filter_rx_feed(&rx, type, m)) {
    case FILTER_RX_MORE:
        break;
    case FILTER_RX_DONE:
        reply_done(ctx);
        break;
    case FILTER_RX_STAGES:
        ctx->f_mask = last_mask = m->filter_stages.mask;
        ctx->f_have_mask = have_last = 1;
        break;
    default:
        if (in_reply)
            log_warn("filter sent %s instead of FILTER_MUT: dropping the connection",
                     ipc_type_name(type));
        else if (type == IPC_FILTER_REPLY)
            log_warn("filter sent %u mutations: dropping the connection",
                     m->filter_reply.nmut);
        else
            log_warn("filter sent %s: dropping the connection", ipc_type_name(type));
        return -1;
    }
    if (ctx->fpeer == p)
        set_timeout(ctx);
    return 0;
}

static void f_hello(struct ipc_peer *p, void *arg)
{
    set_timeout(arg);
}

static void f_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    struct cl_ctx *ctx = arg;
    if (why == IPC_PEER_TIMEOUT)
        log_warn("filter did not answer within %d seconds: reconnecting",
                 ipc_peer_ready(p) ? CL_FILTER_TIMEOUT : 5);
    else if (why == IPC_PEER_IO)
        log_warn("connection to filter: %s", strerror(EVUTIL_SOCKET_ERROR()));
    else if (why == IPC_PEER_EOF && ctx->f_pending)
        log_warn("filter closed the connection");
    else if (why == IPC_PEER_EOF)
        log_debug("filter closed the connection");
    fail_all(ctx);
}

static const struct ipc_peer_ops f_ops = {
    .proto = IPC_PROTO_FILTER, .on_hello = f_hello, .on_frame = f_frame, .on_error = f_error,
};

static int f_connect(struct cl_ctx *ctx)
{
    ctx->fpeer = ipc_peer_connect(ctx->srv->base, SOCK_FILTER, "filter", &f_ops, ctx);
    if (ctx->fpeer == NULL) {
        log_warn("connect %s: %m", SOCK_FILTER);
        return -1;
    }
    return 0;
}

int clf_ask(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (ctx->fpeer == NULL && f_connect(ctx) < 0) {
        if (data_needs_filter())
            return -1;
        unavailable(ctx, t);
        return 0;
    }
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
    if (ipc_peer_send(ctx->fpeer, IPC_FILTER_REQ, &r) < 0)
        return -1;
    t->freq_id = r.id;
    t->fnext = ctx->f_pending;
    ctx->f_pending = t;
    set_timeout(ctx);
    return 0;
}

void clf_cancel(struct cl_ctx *ctx, struct cl_txn *t)
{
    take_pending(ctx, t->freq_id);
    if (ctx->fpeer)
        set_timeout(ctx);
}

void clf_close(struct cl_ctx *ctx)
{
    fail_all(ctx);
}
