/*
 * filter.c - the policy daemon: answers FILTER_REQ with FILTER_REPLY and the
 * reply's FILTER_MUT messages.
 *
 * One process, one libevent loop, many connections on private/filter
 * (every smtpd process, cleanup, qmgr, the CLI). Each opens with
 * HELLO(filter); we answer HELLO then FILTER_STAGES (which stages have
 * rules) and send FILTER_STAGES again after every reload. Then any number
 * of requests, possibly pipelined; each reply carries the request's id and
 * is followed at once by exactly nmut FILTER_MUT. smtpd also sends
 * FILTER_END when a session closes. Verdicts come from the rules
 * (filter_eval.c, off the loop in worker threads) and, at rcpt when no rule
 * decided, from the default policy (filter_policy.c).
 * Rules are compiled at start (errors: logged as file:line:col, exit 1,
 * master restarts us with backoff) and on SIGHUP, in place: the
 * configuration is re-read and the rules recompiled; on any error the
 * running configuration and program stay.
 * Peers are not trusted: a malformed frame drops that connection only, and
 * a peer that does not read its replies is not read from until it does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "filter.h"
#include "filter/filter_policy.h"
#include "ipc/ipc_bev.h"
#include "util/log.h"
#include "mail/spool.h"
#include "ipc/ipc_report.h"

#define OUT_HIGH (4 * 1024 * 1024)   /* stop reading a peer with this much unsent */
#define OUT_LOW  (256 * 1024)        /* ... until it drained below this */

static void fconn_free(struct fconn *c)
{
    struct fctx *ctx = c->ctx;
    if (c->closed)
        return;
    c->closed = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    fe_conn_closed(c);
    ipc_peer_free(c->ipc);
    c->ipc = NULL;
    if (c->njobs == 0)
        free(c);
}

void fconn_release(struct fconn *c)
{
    if (--c->njobs == 0 && c->closed)
        free(c);
}

void filter_send_reply(struct fconn *c, uint64_t id, enum verdict st, int code, const char *enh,
                       const char *text, const char *rule, const struct rl_result *res,
                       const char *qname)
{
    int has_q = 0;
    for (int i = 0; i < res->nmuts; i++)
        has_q |= res->muts[i].kind == FILTER_M_QUARANTINE;
    /* a quarantine verdict names its quarantine in a QUARANTINE mutation */
    int extra = qname != NULL && !has_q;
    struct ipc_filter_reply r = {
        .id = id, .status = (uint32_t)st, .code = (uint32_t)(code > 0 ? code : 0),
        .enhanced = enh, .text = text, .rule = rule,
        .nmut = (uint32_t)(res->nmuts + extra),
    };
    /* Everything must encode before anything is sent (the reply announces
     * nmut mutations). Values come from mail and rules: what cannot be sent
     * fails this request alone, with a temporary error. */
    int ok = ipc_check(IPC_FILTER_REPLY, &r) == 0;
    for (int i = 0; ok && i < res->nmuts; i++) {
        const struct rl_mutation *m = &res->muts[i];
        struct ipc_filter_mut fm = { (uint32_t)m->kind, m->rcpt, m->arg, m->arg2, m->rule };
        ok = ipc_check(IPC_FILTER_MUT, &fm) == 0;
    }
    if (!ok) {
        log_warn("request %llu from %s: the verdict (rule \"%.64s\") does not fit the "
                 "protocol: answering a temporary failure", (unsigned long long)id, c->peer,
                 rule ? rule : "");
        struct ipc_filter_reply tf = { .id = id, .status = V_TEMPFAIL, .enhanced = "",
                                       .text = "", .rule = "", .nmut = 0 };
        ipc_peer_send(c->ipc, IPC_FILTER_REPLY, &tf);
        return;
    }
    ipc_peer_send(c->ipc, IPC_FILTER_REPLY, &r);
    for (int i = 0; i < res->nmuts; i++) {
        const struct rl_mutation *m = &res->muts[i];
        struct ipc_filter_mut fm = { (uint32_t)m->kind, m->rcpt, m->arg, m->arg2, m->rule };
        ipc_peer_send(c->ipc, IPC_FILTER_MUT, &fm);
    }
    if (extra) {
        struct ipc_filter_mut fm = { FILTER_M_QUARANTINE, "", qname, "", rule };
        ipc_peer_send(c->ipc, IPC_FILTER_MUT, &fm);
    }
}

static void send_stages(struct fconn *c)
{
    struct ipc_filter_stages st = { c->ctx->mask, c->ctx->generation };
    ipc_peer_send(c->ipc, IPC_FILTER_STAGES, &st);
}

/* The client's HELLO was accepted (ours is queued): tell it the stages. */
static void fconn_hello(struct ipc_peer *p, void *arg)
{
    send_stages(arg);
}

/* One frame; -1 drops the connection. */
static int fconn_frame(struct ipc_peer *p, enum ipc_type type, union ipc_msg *m, void *arg)
{
    struct fconn *c = arg;
    if (type == IPC_FILTER_END) {
        fe_session_end(c, m->filter_end.session);
        return 0;
    }
    if (type != IPC_FILTER_REQ) {
        log_warn("protocol error from %s: unexpected %s", c->peer, ipc_type_name(type));
        return -1;
    }
    const struct ipc_filter_req *q = &m->filter_req;
    if (q->stage >= STAGE__COUNT) {
        struct rl_result r;
        rl_result_init(&r);
        filter_send_reply(c, q->id, V_TEMPFAIL, 0, "", "", "", &r, NULL);
        return 0;
    }
    fe_request(c, q);
    return 0;
}

/* The connection failed or broke the protocol (already logged): drop it. */
static void fconn_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    struct fconn *c = arg;
    if (why == IPC_PEER_IO)
        log_debug("connection from %s: %s", c->peer, strerror(EVUTIL_SOCKET_ERROR()));
    fconn_free(c);
}

/* A client that does not read its replies is not read from until it does. */
static const struct ipc_peer_ops fconn_ops = {
    .proto = IPC_PROTO_FILTER, .server = 1, .out_low = OUT_LOW, .out_high = OUT_HIGH,
    .on_hello = fconn_hello, .on_frame = fconn_frame, .on_error = fconn_error,
};

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct fctx *ctx = arg;
    struct fconn *c = xcalloc(1, sizeof(*c));
    c->ctx = ctx;
    snprintf(c->peer, sizeof(c->peer), "client#%llu", (unsigned long long)++ctx->serial);
    c->ipc = ipc_peer_accept(ctx->srv->base, fd, c->peer, &fconn_ops, c);
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;
}

/* SIGTERM: stop accepting and leave; evaluations still running finish in
 * fe_shutdown (their connections are gone by then). */
static void on_stop(struct server *s)
{
    server_unlisten(s);
    server_stop_loop(s);
}

/* Compile cfg's rules. *p_r = program (NULL when no rules file is set);
 * 0 ok, -1 with every diagnostic logged after prefix. */
static int compile_rules(const struct config *cfg, const char *prefix, struct fprog **p_r)
{
    *p_r = NULL;
    struct rl_program *p = NULL;
    if (cfg->rules && *cfg->rules) {
        struct rl_diag d = { 0 };
        p = rl_compile_file(cfg->rules, &d);
        if (p == NULL) {
            for (int i = 0; i < d.n; i++) {
                buf_t b;
                buf_init(&b, 128);
                rl_diag_format(&b, &d.v[i]);
                log_error("%s%s", prefix, b.data);
                buf_free(&b);
            }
            if (d.n == 0)
                log_error("%s%s: cannot compile", prefix, cfg->rules);
            rl_diag_free(&d);
            return -1;
        }
        rl_diag_free(&d);
    }
    struct fprog *fp = xcalloc(1, sizeof(*fp));
    fp->p = p;
    fp->refs = 1;
    *p_r = fp;
    return 0;
}

static int count_rules(const struct fprog *p)
{
    int n = 0;
    if (p->p)
        for (int st = 0; st < STAGE__COUNT; st++)
            n += rl_program_stage_rules(p->p, (enum stage)st);
    return n;
}

/* SIGHUP (master's reload): new configuration and program, or neither. */
static void on_reload(struct server *s)
{
    struct fctx *ctx = s->ctx;
    struct config_errors errs = { 0 };
    struct config *nc = config_load(s->config_path, &errs);
    if (nc == NULL) {
        config_errors_log(&errs, "reload: rules not reloaded: ");
        config_errors_free(&errs);
        log_error("reload: configuration has errors: keeping the running rules");
        return;
    }
    config_errors_free(&errs);
    struct fprog *np;
    if (compile_rules(nc, "reload: rules not reloaded: ", &np) < 0) {
        log_error("reload: keeping the running rules");
        config_free(nc);
        return;
    }
    struct config *old = ctx->cfg;
    ctx->cfg = nc;
    s->cfg = nc;
    policy_init(nc);
    filter_local_init(nc);
    config_free(old);
    log_set_level(nc->log_level);
    fprog_unref(ctx->prog);
    ctx->prog = np;
    ctx->mask = fprog_mask(np);
    ctx->generation++;
    for (struct fconn *c = ctx->conns; c; c = c->next)
        if (ipc_peer_ready(c->ipc))
            send_stages(c);
    if (np->p)
        log_info("reload: rules reloaded from %s (%d rules and actions, generation %u)",
                 nc->rules, count_rules(np), ctx->generation);
    else
        log_info("reload: no rules file: default policy only (generation %u)", ctx->generation);
}

int main(int argc, char **argv)
{
    struct server *s = server_init("filter", argc, argv, 0);
    struct fctx *ctx = xcalloc(1, sizeof(*ctx));
    ctx->srv = s;
    ctx->cfg = s->cfg;
    s->ctx = ctx;
    s->on_stop = on_stop;
    s->on_reload = on_reload;
    policy_init(s->cfg);
    filter_local_init(s->cfg);
    if (compile_rules(s->cfg, "", &ctx->prog) < 0) {
        log_error("rules %s do not compile: exiting", s->cfg->rules);
        exit(1);
    }
    ctx->mask = fprog_mask(ctx->prog);
    fe_init(ctx);
    server_listen(s, "filter", SOCK_FILTER, on_accept, ctx);
    if (ctx->prog->p)
        log_info("ready: rules %s (%d rules and actions), %d workers", s->cfg->rules,
                 count_rules(ctx->prog), FILTER_WORKERS);
    else
        log_info("ready: default policy (no rules)");
    ipc_report_start(s);   /* metrics to master, once a second */
    server_run(s);
    while (ctx->conns)
        fconn_free(ctx->conns);
    server_unlisten(s);
    fe_shutdown(ctx);
    fprog_unref(ctx->prog);
    return 0;
}
