/*
 * smtpd_io.c - accepting connections with fewer system calls than
 * libevent's evconnlistener (client sockets are read through
 * lib/util/bev_read.h, set up in smtpd_session.c).
 *
 * The smtpd processes share the listening sockets. Watched by every
 * process's loop, a connection wakes them all and all but one find nothing
 * to accept: a context switch and a failed accept4() each. So the
 * listening sockets sit in an epoll instance of our own with EPOLLEXCLUSIVE
 * (the kernel wakes one of the instances so attached), and the loop
 * watches that instance. Without EPOLLEXCLUSIVE (old kernels) each socket
 * gets a plain event, as before.
 * One accept4() per readiness report (SOCK_NONBLOCK, so no fcntl per
 * connection): libevent's evconnlistener accepts until EAGAIN, a failed
 * accept4() on every wake-up. A second pending connection keeps the
 * level-triggered socket readable and is taken on the next loop round.
 *
 * TCP_NODELAY comes from the listening socket (smtpd.c).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <event2/event.h>
#include "smtpd.h"
#include "util/log.h"

/* Listening sockets attached to excl_fd (EPOLLEXCLUSIVE), the event that
 * watches it, how many, and the one when there is one. */
static int excl_fd = -1;
static struct event *excl_ev;
static int excl_n;
static struct smtpd_listener *excl_one;

/* One accept4() on l. */
static void accept_one(struct smtpd_listener *l)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int c = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
        smtpd_accepted(l, c, (struct sockaddr *)&ss);
        return;
    }
    /* taken by another smtpd, or gone before we got to it */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
        return;
    /* EMFILE/ENFILE/ENOBUFS: keep serving the sessions we have */
    log_warn("accept on %s: %s", l->name, strerror(errno));
}

static void on_listen(evutil_socket_t fd, short what, void *arg)
{
    accept_one(arg);
}

/* excl_fd is readable: a connection waits on one of our listeners. */
static void on_excl(evutil_socket_t fd, short what, void *arg)
{
    if (excl_n == 1 && excl_one != NULL) {
        accept_one(excl_one);
        return;
    }
    struct epoll_event evs[8];
    int n = epoll_wait(excl_fd, evs, 8, 0);
    for (int i = 0; i < n; i++) {
        struct smtpd_listener *l = evs[i].data.ptr;
        if (l->excl)                    /* not closed by an earlier accept */
            accept_one(l);
    }
}

/* Attach l to excl_fd; -1: not possible here (the caller falls back). */
static int excl_attach(struct smtpd_listener *l)
{
    if (excl_fd < 0) {
        excl_fd = epoll_create1(EPOLL_CLOEXEC);
        if (excl_fd < 0)
            return -1;
        excl_ev = event_new(smtpd_server->base, excl_fd, EV_READ | EV_PERSIST, on_excl, NULL);
        if (excl_ev == NULL || event_add(excl_ev, NULL) < 0)
            log_fatal("cannot watch the listeners' epoll descriptor");
    }
    struct epoll_event e = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = l };
    if (epoll_ctl(excl_fd, EPOLL_CTL_ADD, l->fd, &e) < 0)
        return -1;
    l->excl = 1;
    excl_one = excl_n++ == 0 ? l : NULL;
    return 0;
}

static void excl_detach(struct smtpd_listener *l)
{
    /* explicitly: master still holds the socket, so closing ours would
     * leave it attached, and an attached epoll nobody polls would swallow
     * the wake-ups the other smtpd processes need */
    epoll_ctl(excl_fd, EPOLL_CTL_DEL, l->fd, NULL);
    l->excl = 0;
    if (excl_one == l)
        excl_one = NULL;
    if (--excl_n > 0)
        return;
    event_free(excl_ev);
    excl_ev = NULL;
    close(excl_fd);
    excl_fd = -1;
}

int smtpd_io_listen(struct smtpd_listener *l, int fd)
{
    l->fd = fd;
    if (excl_attach(l) == 0)
        return 0;
    l->ev = event_new(smtpd_server->base, fd, EV_READ | EV_PERSIST, on_listen, l);
    if (l->ev == NULL || event_add(l->ev, NULL) < 0)
        return -1;
    return 0;
}

void smtpd_io_unlisten(struct smtpd_listener *l)
{
    if (l->excl)
        excl_detach(l);
    else if (l->ev)
        event_free(l->ev);
    else
        return;
    l->ev = NULL;
    close(l->fd);
    l->fd = -1;
}
