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

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "filter.h"
#include "filter_policy.h"
#include "log.h"
#include "spool.h"

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
    bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->njobs == 0)
        free(c);
}

void fconn_release(struct fconn *c)
{
    if (--c->njobs == 0 && c->closed)
        free(c);
}

static void put(struct fconn *c, enum ipc_type t, const void *m)
{
    buf_t out;
    buf_init(&out, 256);
    ipc_encode(&out, t, m);
    bufferevent_write(c->bev, out.data, out.len);
    buf_free(&out);
}

void filter_send_reply(struct fconn *c, uint64_t id, enum verdict st, int code, const char *enh,
                       const char *text, const char *rule, const struct rl_result *res,
                       const char *qname)
{
    int has_q = 0;
    for (int i = 0; i < res->nmuts; i++)
        has_q |= res->muts[i].kind == RL_M_QUARANTINE;
    /* a quarantine verdict names its quarantine in a QUARANTINE mutation */
    int extra = qname != NULL && !has_q;
    struct ipc_filter_reply r = {
        .id = id, .status = (uint32_t)st, .code = (uint32_t)(code > 0 ? code : 0),
        .enhanced = enh, .text = text, .rule = rule,
        .nmut = (uint32_t)(res->nmuts + extra),
    };
    buf_t out;
    buf_init(&out, 256);
    ipc_put_filter_reply(&out, &r);
    for (int i = 0; i < res->nmuts; i++) {
        const struct rl_mutation *m = &res->muts[i];
        struct ipc_filter_mut fm = { (uint32_t)m->kind, m->rcpt, m->arg, m->arg2, m->rule };
        ipc_put_filter_mut(&out, &fm);
    }
    if (extra) {
        struct ipc_filter_mut fm = { RL_M_QUARANTINE, "", qname, "", rule };
        ipc_put_filter_mut(&out, &fm);
    }
    bufferevent_write(c->bev, out.data, out.len);
    buf_free(&out);
}

static void send_stages(struct fconn *c)
{
    struct ipc_filter_stages st = { c->ctx->mask, c->ctx->generation };
    put(c, IPC_FILTER_STAGES, &st);
}

/* One frame; -1 drops the connection. */
static int fconn_frame(struct fconn *c, enum ipc_type type, const union ipc_msg *m)
{
    if (!c->hello) {
        if (type != IPC_HELLO || ipc_hello_ok(&m->hello, IPC_PROTO_FILTER) < 0)
            return -1;
        struct ipc_hello h = { IPC_PROTO_FILTER, IPC_VERSION };
        put(c, IPC_HELLO, &h);
        send_stages(c);
        c->hello = 1;
        return 0;
    }
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

/* SIGTERM: stop accepting and leave; evaluations still running finish in
 * fe_shutdown (their connections are gone by then). */
static void on_stop(struct server *s)
{
    struct fctx *ctx = s->ctx;
    if (ctx->lis) {
        evconnlistener_free(ctx->lis);
        ctx->lis = NULL;
    }
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
        for (int i = 0; i < errs.n; i++) {
            buf_t b;
            buf_init(&b, 128);
            config_error_format(&b, &errs.v[i]);
            log_error("reload: rules not reloaded: %s", b.data);
            buf_free(&b);
        }
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
    config_free(old);
    log_set_level(nc->log_level);
    fprog_unref(ctx->prog);
    ctx->prog = np;
    ctx->mask = fprog_mask(np);
    ctx->generation++;
    for (struct fconn *c = ctx->conns; c; c = c->next)
        if (c->hello)
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
    if (compile_rules(s->cfg, "", &ctx->prog) < 0) {
        log_error("rules %s do not compile: exiting", s->cfg->rules);
        exit(1);
    }
    ctx->mask = fprog_mask(ctx->prog);
    int lfd = server_fd_named(s, "filter");
    if (lfd < 0)
        log_fatal("no socket named \"filter\" in POSTERN_FDS");
    fd_set_nonblock(lfd, 1);
    fe_init(ctx);
    ctx->lis = evconnlistener_new(s->base, on_accept, ctx,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, lfd);
    if (ctx->lis == NULL)
        log_fatal("cannot listen on %s", SOCK_FILTER);
    evconnlistener_set_error_cb(ctx->lis, on_accept_error);
    if (ctx->prog->p)
        log_info("ready: rules %s (%d rules and actions), %d workers", s->cfg->rules,
                 count_rules(ctx->prog), FILTER_WORKERS);
    else
        log_info("ready: default policy (no rules)");
    server_run(s);
    while (ctx->conns)
        fconn_free(ctx->conns);
    if (ctx->lis)
        evconnlistener_free(ctx->lis);
    fe_shutdown(ctx);
    fprog_unref(ctx->prog);
    return 0;
}
