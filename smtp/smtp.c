/*
 * smtp.c - the SMTP client delivery agent: accept a connection from qmgr
 * on the shared listening socket "smtp" (private/smtp), then serve
 * DELIVER_REQ + DELIVER_RCPT x n -> DELIVER_STATUS x n + DELIVER_DONE
 * until EOF (the same protocol as the local agent, delivery/).
 *
 * The recipients of one request are grouped by next hop (smtp_resolve):
 * one SMTP session per group. qmgr sends one destination per request
 * (deliver_nexthop); after it the session may stay open (smtp_cache.c) for
 * the next request to the same destination, which DELIVER_DONE.held tells
 * qmgr, so that it sends that agent the next message for it. Must never trust the request: the path must
 * be active/<valid queue id>, recipients are taken from the queue file by
 * index. SIGTERM: the current request is finished, then the process exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <openssl/ssl.h>

#include "smtp.h"
#include "ipc/deliver_agent.h"
#include "ipc/ipc.h"
#include "tls/tls_client.h"
#include "util/clock.h"
#include "util/log.h"
#include "daemon/server.h"
#include "mail/spool.h"

static SSL_CTX *tls_ctx;
static struct smtp_cache cache;   /* the one session kept open between requests */

/* deliver_agent's idle hook: drop the kept session after its idle time. */
static int cache_idle(void)
{
    return smtp_cache_idle(&cache);
}

static const char *rcpt_domain(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

/* Deliver every recipient, one session per next hop. */
static void deliver_all(const struct smtp_msg *m, struct smtp_rcpt *rr, uint32_t n)
{
    struct smtp_rcpt **group = xcalloc(n, sizeof(*group));
    for (uint32_t i = 0; i < n; i++) {
        if (rr[i].done)
            continue;
        if (sio_request_over()) {   /* the rest waits for the next attempt */
            smtp_rcpt_set(m, &rr[i], "none", DS_DEFERRED, "4.4.7",
                          "delivery attempt took longer than %d s: tried again later",
                          SMTP_REQUEST_BUDGET);
            continue;
        }
        if (rr[i].nexthop[0]) {   /* forward(), lmtp(), a transport: smtp_lmtp.c */
            smtp_lmtp_deliver(m, rr, n, i);
            continue;
        }
        const char *dom = rcpt_domain(rr[i].q->addr);
        int k = 0;
        /* with a relayhost every domain goes the same way: one session */
        int one_hop = m->cfg->relayhost && m->cfg->relayhost[0];
        for (uint32_t j = i; j < n; j++)
            if (!rr[j].done && !rr[j].nexthop[0] &&
                (one_hop || strcasecmp(rcpt_domain(rr[j].q->addr), dom) == 0))
                group[k++] = &rr[j];
        char key[300];
        deliver_nexthop(m->cfg, rr[i].q->addr, key, sizeof(key));
        smtp_times_start();   /* delays= of this group's lines (DNS counts as connection) */
        if (smtp_session_reuse(m, group, k, &cache, key))
            continue;
        struct smtp_hop hop;
        char dsn[16], why[QF_REASON_MAX + 1];
        int rc = smtp_resolve(m->cfg, dom, &hop, dsn, sizeof(dsn), why, sizeof(why));
        for (int g = 0; g < k; g++)
            group[g]->sts_mode = hop.sts_mode;     /* MTA-STS, for the log lines */
        if (rc < 0) {
            for (int g = 0; g < k; g++)
                smtp_rcpt_set(m, group[g], "none", dsn[0] == '5' ? DS_BOUNCED : DS_DEFERRED,
                              dsn, "%s", why);
            continue;
        }
        smtp_session_deliver(m, &hop, group, k, &cache, key);
    }
    free(group);
}

static int send_statuses(struct ipc_conn *c, const struct smtp_rcpt *rr, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (deliver_agent_status(c, rr[i].index, (uint32_t)rr[i].status | rr[i].sflags, rr[i].dsn,
                                 rr[i].reason) < 0)
            return -1;
    int left = smtp_cache_idle(&cache);
    return deliver_agent_done_held(c, n, left > 0 ? cache.key : "", (uint32_t)left);
}

/* Serve one DELIVER_REQ (already received in msg). -1 = drop the connection. */
static int serve_request(struct server *s, struct ipc_conn *c, union ipc_msg *msg)
{
    struct deliver_req req;
    if (deliver_agent_read(c, msg, &req) < 0)
        return -1;
    uint32_t n = req.n;
    struct smtp_rcpt *rr = xcalloc(n, sizeof(*rr));
    log_set_qid(req.queue_id);
    smtp_times_start();   /* lines logged before any next hop (no queue file...) */
    struct qf_env env;
    char err[QF_REASON_MAX + 1];
    const char *edsn;
    int fd = deliver_agent_open(&req, "smtp", NULL, NULL, &env, &edsn, err, sizeof(err));
    struct smtp_msg sm = { s->cfg, tls_ctx, fd, &env };
    for (uint32_t i = 0; i < n; i++) {
        rr[i].index = req.rcpt[i].index;
        str_copy(rr[i].nexthop, sizeof(rr[i].nexthop), req.rcpt[i].nexthop);
        if (fd < 0 || rr[i].index >= (uint32_t)env.nrcpts) {
            rr[i].done = 1;
            rr[i].status = DS_DEFERRED;
            str_copy(rr[i].dsn, sizeof(rr[i].dsn), fd < 0 ? edsn : "4.3.5");
            snprintf(rr[i].reason, sizeof(rr[i].reason), "%s",
                     fd < 0 ? err : "no such recipient");
        } else {
            rr[i].q = &env.rcpts[rr[i].index];
        }
    }
    sio_request_deadline(clock_now_ms() + deliver_agent_budget_ms((int64_t)SMTP_REQUEST_BUDGET * 1000));
    if (fd < 0)
        log_warn("%s", err);
    else
        deliver_all(&sm, rr, n);
    sio_request_deadline(0);
    deliver_agent_end(fd, &env, &req);
    int rc = send_statuses(c, rr, n);
    free(rr);
    return rc;
}

/* server_init_ex hook, still root: libunbound reads its files now */
static void pre_drop(struct server *srv, void *arg)
{
    (void)arg;
    smtp_resolve_init(srv->cfg);
}

int main(int argc, char **argv)
{
    struct server *s = server_init_ex("smtp", argc, argv, SERVER_F_NO_EVENT, pre_drop, NULL);
    buf_t err;
    buf_init(&err, 128);
    if ((tls_ctx = tls_client_ctx_new(s->cfg, &err)) == NULL)
        log_warn("no client TLS (STARTTLS will defer): %s", err.data);
    buf_free(&err);
    log_debug("smtp delivery agent ready");
    smtp_cache_init(&cache);
    deliver_agent_set_idle(cache_idle);
    deliver_agent_run(s, "smtp", serve_request);
    smtp_cache_close(&cache);
    SSL_CTX_free(tls_ctx);
    config_free(s->cfg);
    free(s->fds);
    free(s);
    return 0;
}
