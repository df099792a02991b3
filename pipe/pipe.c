/*
 * pipe.c - the pipe delivery agent: accept a connection from qmgr on
 * "pipe" (private/pipe), serve DELIVER_REQ + DELIVER_RCPT x n ->
 * DELIVER_STATUS x n + DELIVER_DONE (the protocol of delivery/ and smtp/).
 *
 * Each recipient's DELIVER_RCPT.nexthop names its pipe transport
 * (qmgr/qmgr_route.c); the command runs once per recipient, with the
 * arguments and input of pipe_argv.c, through the transport's runner
 * (pipe_runner.c; why runners: pipe.h). Must never trust the request: the
 * path must be active/<valid queue id>, recipients are taken from the
 * queue file by index, the transport must be a pipe transport of the
 * config. A runner lost on the way ends this process after the request,
 * so master starts a fresh one with fresh runners.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipe.h"
#include "ipc/deliver_agent.h"
#include "ipc/ipc.h"
#include "daemon/server.h"
#include "mail/spool.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/log_event.h"

struct prcpt {
    uint32_t index;
    char transport[128];
    enum dstatus status;
    char dsn[16];
    char reason[QF_REASON_MAX + 1];
};

static void set_result(struct prcpt *r, enum dstatus st, const char *dsn, const char *why)
{
    r->status = st;
    str_copy(r->dsn, sizeof(r->dsn), dsn);
    str_copy(r->reason, sizeof(r->reason), why);
}

static void log_result(const struct qf_env *env, const struct prcpt *r)
{
    const char *word = r->status == DS_DELIVERED ? "sent" :
                       r->status == DS_BOUNCED ? "bounced" : "deferred";
    struct log_ev e;
    log_ev_init(&e, LE_ATTEMPT);
    log_ev_str(&e, LF_TRANSPORT, "pipe");
    log_ev_str(&e, LF_SENDER, env->sender);
    log_ev_str(&e, LF_RECIPIENT, r->index < (uint32_t)env->nrcpts ? env->rcpts[r->index].addr : "?");
    log_ev_str(&e, LF_RELAY, r->transport);
    log_ev_str(&e, LF_DSN, r->dsn);
    log_ev_str(&e, LF_STATUS, word);
    log_ev_str(&e, LF_REASON, r->reason);
    log_ev_emit(&e);
}

/* Run the transport's command for one recipient. */
static void deliver_one(const struct config *cfg, int qfd, const struct qf_env *env,
                        struct prcpt *pr)
{
    const struct transport_conf *t = config_transport(cfg, pr->transport);
    const struct qf_rcpt *r = &env->rcpts[pr->index];
    char why[400];
    if (t == NULL || t->type != TR_PIPE) {
        snprintf(why, sizeof(why), "no pipe transport \"%s\" in the configuration", pr->transport);
        set_result(pr, DS_DEFERRED, "4.3.5", why);
        return;
    }
    struct pipe_vars pv;
    pipe_vars_init(&pv, env, r, t);
    int argc = 0;
    char **argv = pipe_argv(t, &pv, &argc, why, sizeof(why));
    pipe_vars_free(&pv);
    if (argv == NULL) {
        set_result(pr, DS_BOUNCED, "5.1.3", why);
        return;
    }
    int in = pipe_input(qfd, env, r);
    struct pipe_result res;
    if (in < 0) {
        snprintf(why, sizeof(why), "cannot prepare the command's input: %s", strerror(errno));
        set_result(pr, DS_DEFERRED, "4.3.0", why);
    } else if (pipe_run(t, argv, argc, in, &res, why, sizeof(why)) < 0) {
        set_result(pr, DS_DEFERRED, "4.3.0", why);
    } else {
        pipe_outcome(t, &res, &pr->status, pr->dsn, sizeof(pr->dsn), pr->reason,
                     sizeof(pr->reason));
    }
    if (in >= 0)
        close(in);
    pipe_argv_free(argv);
}

/* Serve one DELIVER_REQ (already received in msg). -1 = drop the connection. */
static int serve_request(struct server *s, struct ipc_conn *c, union ipc_msg *msg)
{
    struct deliver_req req;
    if (deliver_agent_read(c, msg, &req) < 0)
        return -1;
    uint32_t n = req.n;
    int64_t start = clock_now_ms();
    struct prcpt *rr = xcalloc(n, sizeof(*rr));
    log_set_qid(req.queue_id);
    struct qf_env env;
    char err[QF_REASON_MAX + 1];
    const char *edsn;
    int fd = deliver_agent_open(&req, "pipe", NULL, NULL, &env, &edsn, err, sizeof(err));
    if (fd < 0)
        log_warn("%s", err);
    for (uint32_t i = 0; i < n; i++) {
        rr[i].index = req.rcpt[i].index;
        str_copy(rr[i].transport, sizeof(rr[i].transport), req.rcpt[i].nexthop);
        if (fd < 0)
            set_result(&rr[i], DS_DEFERRED, edsn, err);
        else if (rr[i].index >= (uint32_t)env.nrcpts)
            set_result(&rr[i], DS_DEFERRED, "4.3.5", "no such recipient");
        else if (clock_now_ms() - start > PIPE_REQUEST_BUDGET * 1000LL)
            set_result(&rr[i], DS_DEFERRED, "4.3.0", "not attempted: the commands for the "
                       "recipients before this one took too long (retried later)");
        else {
            deliver_one(s->cfg, fd, &env, &rr[i]);
            log_result(&env, &rr[i]);
        }
    }
    deliver_agent_end(fd, &env, &req);
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = deliver_agent_status(c, rr[i].index, (uint32_t)rr[i].status, rr[i].dsn,
                                  rr[i].reason);
    if (rc == 0)
        rc = deliver_agent_done(c, n);
    free(rr);
    if (pipe_runners_lost())
        raise(SIGTERM);   /* finish here; master starts us again with new runners */
    return rc;
}

/* server_init_ex hook, still root: the runners take their users now */
static void pre_drop(struct server *srv, void *arg)
{
    (void)arg;
    pipe_runners_start(srv->cfg);
}

int main(int argc, char **argv)
{
    struct server *s = server_init_ex("pipe", argc, argv, SERVER_F_NO_EVENT, pre_drop, NULL);
    log_debug("pipe delivery agent ready");
    deliver_agent_run(s, "pipe", serve_request);
    config_free(s->cfg);
    free(s->fds);
    free(s);
    return 0;
}
