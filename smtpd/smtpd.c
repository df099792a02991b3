/*
 * smtpd.c - the SMTP server process: start-up, listeners, connection
 * limits and the drain on stop.
 *
 * master hands us bound, listening TCP sockets (named after their listen
 * block). One process serves many sessions from one event loop; nothing
 * forks per connection. Limits: limits.sessions per process and
 * limits.sessions_per_ip (per process, the only state we can see without
 * shared memory) answer "421 4.7.0 Too many connections" and close.
 * On SIGTERM: stop accepting, let transactions in progress finish, exit
 * when no session is left or after SMTPD_DRAIN_SECS.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <event2/event.h>
#include "smtpd.h"
#include "util/log.h"
#include "ipc/ipc_report.h"

struct server *smtpd_server;
struct config *smtpd_cfg;

static struct smtpd_listener *listeners;
static int nlisteners;
static struct event *drain_timer;

/* ---- per-IP session counts: small chained hash ---------------------------- */
#define IPH_BUCKETS 1024
struct ipcount { struct ipcount *next; int n; char ip[INET6_ADDRSTRLEN]; };
static struct ipcount *iph[IPH_BUCKETS];

static unsigned ip_hash(const char *ip)
{
    return str_hash(ip) % IPH_BUCKETS;
}

static struct ipcount *ip_find(const char *ip, int create)
{
    unsigned h = ip_hash(ip);
    for (struct ipcount *c = iph[h]; c; c = c->next)
        if (strcmp(c->ip, ip) == 0)
            return c;
    if (!create)
        return NULL;
    struct ipcount *c = xcalloc(1, sizeof(*c));
    str_copy(c->ip, sizeof(c->ip), ip);
    c->next = iph[h];
    iph[h] = c;
    return c;
}

static void ip_release(const char *ip)
{
    unsigned h = ip_hash(ip);
    for (struct ipcount **pp = &iph[h]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->ip, ip) == 0) {
            if (--(*pp)->n <= 0) {
                struct ipcount *c = *pp;
                *pp = c->next;
                free(c);
            }
            return;
        }
    }
}

static void sa_to_ip(const struct sockaddr *sa, char *ip, size_t size, unsigned *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)size);
        *port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, (socklen_t)size);
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)size);
        *port = ntohs(in6->sin6_port);
    } else {
        str_copy(ip, size, "unknown");
        *port = 0;
    }
}

/* Refuse a connection without a session: one best-effort line, close. */
static void refuse(int fd, const char *ip, unsigned port, const char *why)
{
    buf_t msg;
    buf_init(&msg, 64);
    local_reply_format(&msg, LR_CONNECTIONS);
    buf_append_str(&msg, "\r\n");
    log_warn("refused connection from [%s]:%u: %s", ip, port, why);
    ssize_t w = write(fd, msg.data, msg.len);
    (void)w;
    buf_free(&msg);
    close(fd);
}

void smtpd_accepted(struct smtpd_listener *l, int fd, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    sa_to_ip(sa, ip, sizeof(ip), &port);
    if (smtpd_server->stopping) {
        close(fd);
        return;
    }
    if (smtpd_cfg->sessions > 0 && smtpd_nsessions >= smtpd_cfg->sessions) {
        refuse(fd, ip, port, "session limit reached");
        return;
    }
    struct ipcount *c = ip_find(ip, 0);
    if (smtpd_cfg->sessions_per_ip > 0 && c && c->n >= smtpd_cfg->sessions_per_ip) {
        refuse(fd, ip, port, "per-client session limit reached");
        return;
    }
    ip_find(ip, 1)->n++;
    smtpd_session_start(l, fd, ip, port);   /* TCP_NODELAY: from the listener */
}

/* Called when a session is freed. */
void smtpd_session_gone(struct smtpd_session *s)
{
    ip_release(s->ip);
    if ((smtpd_server->stopping || smtpd_server->retiring) && smtpd_nsessions == 0) {
        log_info("drained: exiting");
        server_stop_loop(smtpd_server);
    }
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    log_warn("stop: %d sessions still open after %d s: exiting", smtpd_nsessions,
             SMTPD_DRAIN_SECS);
    server_stop_loop(smtpd_server);
}

static void close_listeners(void)
{
    for (int i = 0; i < nlisteners; i++)
        smtpd_io_unlisten(&listeners[i]);
}

/* Reload (SIGUSR1): the replacement smtpd already accepts on the same
 * sockets; this one stops accepting and lets every open session run to its
 * natural end (QUIT or a timeout) - no 421 - then exits. */
static void on_retire(struct server *s)
{
    log_info("retiring: no new connections, %d sessions left to finish", smtpd_nsessions);
    close_listeners();
    if (smtpd_nsessions == 0)
        server_stop_loop(s);
}

static void on_stop(struct server *s)
{
    log_info("stopping: no new connections, draining %d sessions", smtpd_nsessions);
    smtpd_cleanup_shutdown();
    close_listeners();
    if (smtpd_nsessions == 0) {
        server_stop_loop(s);
        return;
    }
    struct smtpd_session *next;
    for (struct smtpd_session *ss = smtpd_sessions; ss; ss = next) {
        next = ss->next;     /* drain may free ss */
        smtpd_session_drain(ss);
    }
    drain_timer = evtimer_new(s->base, on_drain_timeout, NULL);
    struct timeval tv = { SMTPD_DRAIN_SECS, 0 };
    evtimer_add(drain_timer, &tv);
}

static const struct listener *find_listener(const char *name)
{
    for (int i = 0; i < smtpd_cfg->nlisteners; i++)
        if (strcmp(smtpd_cfg->listeners[i].name, name) == 0)
            return &smtpd_cfg->listeners[i];
    return NULL;
}

/* server_init_ex hook, still root and outside the jail */
static void pre_drop(struct server *srv, void *arg)
{
    smtpd_local_pre_drop(srv);      /* first: the helper holds no key */
    smtpd_tls_pre_drop(srv, arg);
    smtpd_dns_pre_drop(srv->cfg);
}

int main(int argc, char **argv)
{
    /* TLS keys and auth.users are read while still root (smtpd_tls.c), then
     * smtpd is chrooted into <run_dir>/smtpd: it reaches cleanup and filter
     * through the sockets master binds there, and no spool file */
    struct server *s = server_init_ex("smtpd", argc, argv, SERVER_F_JAIL, pre_drop,
                                       NULL);
    smtpd_server = s;
    smtpd_cfg = s->cfg;
    s->on_stop = on_stop;
    s->on_retire = on_retire;
    listeners = xcalloc((size_t)(s->nfds ? s->nfds : 1), sizeof(*listeners));
    for (int i = 0; i < s->nfds; i++) {
        const struct listener *conf = find_listener(s->fds[i].name);
        if (conf == NULL)
            log_fatal("inherited fd %d named \"%s\": no such listen block",
                      s->fds[i].fd, s->fds[i].name);
        struct smtpd_listener *l = &listeners[nlisteners++];
        l->conf = conf;
        l->name = conf->name;
        fd_set_nonblock(s->fds[i].fd, 1);
        fcntl(s->fds[i].fd, F_SETFD, FD_CLOEXEC);
        /* replies are already batched per pipelined group, so Nagle only
         * delays them - most visibly TLS 1.3 session tickets behind a
         * delayed ACK. Set on the listening socket, Linux hands it to every
         * accepted one: no setsockopt per connection. */
        int one = 1;
        setsockopt(s->fds[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (smtpd_io_listen(l, s->fds[i].fd) < 0)
            log_fatal("cannot listen on fd %d (%s)", s->fds[i].fd, l->name);
    }
    if (nlisteners == 0)
        log_warn("no listening sockets inherited (POSTERN_FDS): serving nothing");
    smtpd_filter_init(s->base);
    smtpd_local_init(s->base);
    smtpd_auth_init(s->base);
    smtpd_dns_init(s->base);
    log_info("started: %d listener%s", nlisteners, nlisteners == 1 ? "" : "s");
    ipc_report_start(s);   /* metrics to master, once a second */
    server_run(s);
    smtpd_cleanup_shutdown();
    smtpd_local_shutdown();         /* before filter's: its callbacks queue there */
    smtpd_filter_shutdown();
    smtpd_auth_shutdown();
    smtpd_dns_shutdown();
    return 0;
}
