/*
 * deliver_agent.c - the agent side of the DELIVER protocol (deliver_agent.h).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

#include "ipc/deliver_agent.h"
#include "ipc/ipc_report.h"
#include "mail/spool.h"
#include "util/log.h"

static volatile sig_atomic_t stop_flag;
static deliver_idle_fn idle_fn;
static struct server *agent_srv;   /* for the metrics report between requests */

void deliver_agent_set_idle(deliver_idle_fn fn)
{
    idle_fn = fn;
}

static void on_term(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* Wait until fd is readable or a stop was asked: 1 readable, 0 stop. */
static int wait_readable(int fd)
{
    while (!stop_flag) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int ms = idle_fn ? idle_fn() : 0;
        ipc_report_poll(agent_srv);
        int r = poll(&p, 1, ms > 0 && ms < 1000 ? ms : 1000);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            log_fatal("poll: %m");
    }
    return 0;
}

/* Serve one qmgr connection until EOF, an error or a stop; closes fd. */
static void serve_conn(struct server *s, int fd, deliver_req_fn req)
{
    struct ipc_conn c;
    ipc_conn_init(&c, fd, "qmgr");
    if (wait_readable(fd) && ipc_hello_server(&c, IPC_PROTO_DELIVER) == 0) {
        for (;;) {
            /* a frame may already be buffered; else wait (noticing SIGTERM) */
            size_t left = c.in.len - c.used;
            if (ipc_frame_len((const unsigned char *)c.in.data + c.used, left) <= 0 &&
                !wait_readable(fd))
                break;
            union ipc_msg m;
            int r = ipc_expect(&c, IPC_DELIVER_REQ, &m);
            if (r <= 0 || req(s, &c, &m) < 0)
                break;
        }
    }
    ipc_conn_close(&c);
}

int deliver_agent_status(struct ipc_conn *c, uint32_t index, uint32_t status,
                         const char *dsn, const char *reason)
{
    struct ipc_deliver_status st = { index, status, dsn, reason };
    if (ipc_queue(c, IPC_DELIVER_STATUS, &st) == 0)
        return 0;
    log_warn("status for recipient %u cannot be encoded: %m", index);
    st.reason = "(reason too long)";
    return ipc_queue(c, IPC_DELIVER_STATUS, &st);
}

int deliver_agent_done_held(struct ipc_conn *c, uint32_t n, const char *held,
                            uint32_t held_ms)
{
    struct ipc_deliver_done done = { n, held ? held : "", held ? held_ms : 0 };
    if (ipc_queue(c, IPC_DELIVER_DONE, &done) < 0)
        return -1;
    return ipc_flush(c);
}

int deliver_agent_done(struct ipc_conn *c, uint32_t n)
{
    return deliver_agent_done_held(c, n, "", 0);
}

void deliver_nexthop(const struct config *cfg, const char *addr, char *out, size_t size)
{
    if (cfg->relayhost && cfg->relayhost[0]) {
        str_copy(out, size, cfg->relayhost);
        return;
    }
    const char *at = strrchr(addr, '@');
    str_copy(out, size, at ? at + 1 : "");
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

void deliver_agent_run(struct server *s, const char *sockname, deliver_req_fn req)
{
    agent_srv = s;
    int lfd = server_fd_named(s, sockname);
    if (lfd < 0)
        log_fatal("no listening socket named \"%s\" (POSTERN_FDS)", sockname);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (fd_set_nonblock(lfd, 1) < 0)
        log_fatal("listening socket: %m");
    while (!stop_flag) {
        if (!wait_readable(lfd))
            break;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                log_error("accept: %m");
            continue;
        }
        serve_conn(s, fd, req);
    }
    log_debug("stopping");
}

int deliver_agent_read(struct ipc_conn *c, const union ipc_msg *m, struct deliver_req *r)
{
    const struct ipc_deliver_req *q = &m->deliver_req;
    memset(r, 0, sizeof(*r));
    if (q->nrcpt == 0 || q->nrcpt > QF_MAX_RCPTS) {
        log_warn("request with %u recipients: dropping connection", q->nrcpt);
        return -1;
    }
    /* copy the strings: they point into the frame buffer */
    r->queue_id = xstrdup(q->queue_id);
    r->path = xstrdup(q->path);
    r->transport = xstrdup(q->transport);
    r->rcpt = xcalloc(q->nrcpt, sizeof(*r->rcpt));
    for (uint32_t i = 0; i < q->nrcpt; i++) {
        union ipc_msg rm;
        if (ipc_expect(c, IPC_DELIVER_RCPT, &rm) != 1) {
            deliver_req_free(r);
            return -1;
        }
        r->rcpt[i].index = rm.deliver_rcpt.index;
        r->rcpt[i].nexthop = xstrdup(rm.deliver_rcpt.nexthop);
        r->n = i + 1;
    }
    return 0;
}

void deliver_req_free(struct deliver_req *r)
{
    for (uint32_t i = 0; r->rcpt && i < r->n; i++)
        free(r->rcpt[i].nexthop);
    free(r->rcpt);
    free(r->queue_id);
    free(r->path);
    free(r->transport);
    memset(r, 0, sizeof(*r));
}

int deliver_agent_open(const struct deliver_req *r, const char *transport,
                       deliver_parse_fn parse, void *arg, struct qf_env *env,
                       const char **dsn_r, char *err, size_t errlen)
{
    char want[QUEUE_ID_MAX + 16], e2[200] = "";
    qf_env_init(env);
    *dsn_r = "4.3.5";
    if (!queue_id_valid(r->queue_id) ||
        str_format(want, sizeof(want), SPOOL_ACTIVE "/%s", r->queue_id) < 0 ||
        strcmp(want, r->path) != 0) {
        snprintf(err, errlen, "bad queue file path \"%.100s\"", r->path);
        return -1;
    }
    if (strcmp(r->transport, transport) != 0) {
        snprintf(err, errlen, "transport \"%.40s\" not served by this agent", r->transport);
        return -1;
    }
    *dsn_r = "4.3.0";
    int fd = open(want, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, errlen, "open %s: %s", want, strerror(errno));
        return -1;
    }
    if ((parse ? parse(fd, env, arg, e2, sizeof(e2)) : qf_read(fd, env, e2, sizeof(e2))) < 0) {
        buf_t b;   /* (a buffer: snprintf of two bounded strings trips -Wformat-truncation) */
        buf_init(&b, 256);
        buf_printf(&b, "queue file %s: %s", want, e2);
        str_copy(err, errlen, b.data);
        buf_free(&b);
    } else if (strcmp(env->queue_id, r->queue_id) != 0) {
        snprintf(err, errlen, "queue file %s holds id %.40s", want, env->queue_id);
    } else {
        return fd;
    }
    close(fd);
    qf_env_free(env);
    qf_env_init(env);
    return -1;
}

void deliver_agent_end(int fd, struct qf_env *env, struct deliver_req *r)
{
    if (fd >= 0)
        close(fd);
    qf_env_free(env);
    deliver_req_free(r);
    log_set_qid(NULL);
}

int64_t deliver_agent_budget_ms(int64_t dflt_ms)
{
    static long long test_ms = -1;      /* the environment, read once: 0 = not set */
    if (test_ms < 0) {
        const char *e = getenv("POSTERN_TEST_REQUEST_BUDGET_MS");
        char *end;
        long long v = e ? strtoll(e, &end, 10) : 0;
        test_ms = e && *end == '\0' && v > 0 ? v : 0;
    }
    return test_ms > 0 && test_ms < dflt_ms ? (int64_t)test_ms : dflt_ms;
}
