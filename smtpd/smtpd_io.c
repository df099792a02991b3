/*
 * smtpd_io.c - accepting connections with fewer system calls than
 * libevent's evconnlistener (client sockets are read through
 * lib/util/bev_read.h, set up in smtpd_session.c).
 *
 * One accept4() per readiness report (SOCK_NONBLOCK, so no
 * fcntl per connection). libevent's evconnlistener accepts until EAGAIN,
 * which costs a failed accept4() on every wake-up; the smtpd processes
 * share the listening sockets, so a wake-up with nothing left to accept is
 * common. A second pending connection keeps the level-triggered socket
 * readable and is taken on the next loop round.
 *
 * TCP_NODELAY comes from the listening socket (smtpd.c).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <event2/event.h>
#include "smtpd.h"
#include "util/log.h"

static void on_listen(evutil_socket_t fd, short what, void *arg)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) {
        smtpd_accepted(arg, c, (struct sockaddr *)&ss);
        return;
    }
    /* taken by the other smtpd, or gone before we got to it */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
        return;
    /* EMFILE/ENFILE/ENOBUFS: keep serving the sessions we have */
    log_warn("accept on %s: %s", ((struct smtpd_listener *)arg)->name, strerror(errno));
}

int smtpd_io_listen(struct smtpd_listener *l, int fd)
{
    l->fd = fd;
    l->ev = event_new(smtpd_server->base, fd, EV_READ | EV_PERSIST, on_listen, l);
    if (l->ev == NULL || event_add(l->ev, NULL) < 0)
        return -1;
    return 0;
}

void smtpd_io_unlisten(struct smtpd_listener *l)
{
    if (l->ev == NULL)
        return;
    event_free(l->ev);
    l->ev = NULL;
    close(l->fd);
    l->fd = -1;
}
