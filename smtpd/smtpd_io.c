/*
 * smtpd_io.c - accepting connections: the listening sockets, watched
 * without libevent's evconnlistener (client sockets are read through
 * lib/util/bev_read.h, set up in smtpd_session.c).
 *
 * The smtpd processes share the listening sockets. Watched plainly by
 * every process's loop, a connection wakes them all and all but one go
 * back to sleep: a context switch each. EPOLLEXCLUSIVE makes the kernel
 * wake just one process (the first attached that is waiting), but only
 * for an epoll instance that a thread waits on itself (fs/eventpoll.c
 * ep_poll_callback counts a wake-up as exclusive only when the instance
 * has waiters). Attached to an epoll instance of our own that the loop's
 * instance watches, the socket woke every process again, and each then
 * found our instance readable and failed an accept4(): 1.3 failed
 * accept4() per connection at 10 sessions, worse than plain events.
 *
 * So the socket goes into the loop's own epoll instance (s->epfd, found by
 * lib/daemon/server.c, which also checks that the backend fits what
 * follows), attached with EPOLLEXCLUSIVE by us and not by
 * libevent. Its event data names a stand-in: an eventfd nobody writes (so
 * never readable by itself) that libevent watches with an ordinary
 * event. libevent 2.1's epoll backend reports readiness by the descriptor
 * in the event data, so a waiting connection runs the stand-in's callback,
 * which accepts on the socket. libevent never sees the socket, so never
 * changes that attachment; we remove it before closing our descriptor
 * (master still holds the socket: closing ours alone would leave it
 * attached, reporting for a stand-in that is gone). Where this is not
 * possible (another libevent, another backend) the socket gets a plain
 * event: every process woken, still correct.
 *
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
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <event2/event.h>
#include "smtpd.h"
#include "util/log.h"

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

/* Attach sock with EPOLLEXCLUSIVE, its readiness reported for a new
 * stand-in (above): the stand-in, or -1 when not possible here (the socket
 * is then watched plainly). The loop reads no report before its next
 * epoll_wait, by when the stand-in is watched. */
static int excl_standin(int sock)
{
    if (smtpd_server->epfd < 0)
        return -1;
    int standin = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (standin < 0)
        return -1;
    struct epoll_event e = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = standin };
    if (epoll_ctl(smtpd_server->epfd, EPOLL_CTL_ADD, sock, &e) < 0) {
        close(standin);
        return -1;
    }
    return standin;
}

int smtpd_io_listen(struct smtpd_listener *l, int fd)
{
    l->fd = fd;
    l->standin = excl_standin(fd);
    l->ev = event_new(smtpd_server->base, l->standin >= 0 ? l->standin : fd,
                      EV_READ | EV_PERSIST, on_listen, l);
    if (l->ev == NULL || event_add(l->ev, NULL) < 0)
        return -1;              /* the caller exits */
    return 0;
}

void smtpd_io_unlisten(struct smtpd_listener *l)
{
    if (l->ev == NULL)
        return;
    if (l->standin >= 0)        /* first: no report may name the stand-in after */
        epoll_ctl(smtpd_server->epfd, EPOLL_CTL_DEL, l->fd, NULL);
    event_free(l->ev);
    l->ev = NULL;
    if (l->standin >= 0)
        close(l->standin);
    l->standin = -1;
    close(l->fd);
    l->fd = -1;
}
