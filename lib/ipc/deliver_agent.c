/*
 * deliver_agent.c - the agent side of the DELIVER protocol (deliver_agent.h).
 */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

#include "ipc/deliver_agent.h"
#include "ipc/ipc_report.h"
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
