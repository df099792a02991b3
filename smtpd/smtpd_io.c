/*
 * smtpd_io.c - socket work that smtpd does itself instead of through
 * libevent, to save system calls per message: reading a plain client
 * socket, and accepting connections.
 *
 * Reading: libevent's bufferevent reads with evbuffer_read(), which asks
 * the kernel how much is waiting (ioctl FIONREAD) before every read(), and
 * then reads at most 4096 octets. smtpd_io_plain() points the plain
 * bufferevent's read event at plain_read() below: one read() of up to
 * SMTPD_READ_MAX octets, and the same outcomes as libevent's callback
 * (data: the read callback; EOF, error, read timeout: the event callback
 * with BEV_EVENT_READING, reading disabled). Enabling, disabling, read
 * timeouts and the read high-water mark keep working, because they act on
 * the same struct event. Only for plain socket bufferevents: the TLS
 * bufferevents (smtpd_tls.c) read through OpenSSL.
 *
 * Accepting: one accept4() per readiness report (SOCK_NONBLOCK, so no
 * fcntl per connection). libevent's evconnlistener accepts until EAGAIN,
 * which costs a failed accept4() on every wake-up; the smtpd processes
 * share the listening sockets, so a wake-up with nothing left to accept is
 * common. A second pending connection keeps the level-triggered socket
 * readable and is taken on the next loop round.
 *
 * Must never: read more than the high-water mark allows, touch a
 * bufferevent after its callbacks ran (they may free it).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include "smtpd.h"
#include "util/log.h"

/* One read per readiness report: a command line, or a good part of a
 * message (the input's high-water mark is 64 KiB). */
#define SMTPD_READ_MAX 16384

/* EOF, an error or the read timeout: as libevent's own read callback. */
static void plain_read_end(struct bufferevent *bev, short what)
{
    int e = errno;                      /* for EVUTIL_SOCKET_ERROR() in the callback */
    bufferevent_disable(bev, EV_READ);
    errno = e;
    if (bev->errorcb)
        bev->errorcb(bev, (short)(BEV_EVENT_READING | what), bev->cbarg);
}

static void plain_read(evutil_socket_t fd, short what, void *arg)
{
    struct bufferevent *bev = arg;
    if (what == EV_TIMEOUT) {           /* EV_READ|EV_TIMEOUT: data came, no timeout */
        plain_read_end(bev, BEV_EVENT_TIMEOUT);
        return;
    }
    size_t have = evbuffer_get_length(bev->input);
    size_t want = SMTPD_READ_MAX;
    if (bev->wm_read.high > 0) {
        if (have >= bev->wm_read.high)
            return;                     /* libevent suspends reading there */
        if (bev->wm_read.high - have < want)
            want = bev->wm_read.high - have;
    }
    char buf[SMTPD_READ_MAX];
    ssize_t n = read(fd, buf, want);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        plain_read_end(bev, n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR);
        return;
    }
    /* a bufferevent keeps its input's end frozen outside its read callback */
    evbuffer_unfreeze(bev->input, 0);
    int r = evbuffer_add(bev->input, buf, (size_t)n);
    evbuffer_freeze(bev->input, 0);
    if (r < 0)
        log_fatal("out of memory reading from a client");
    explicit_bzero(buf, (size_t)n);     /* may hold an AUTH response */
    if (bev->readcb && evbuffer_get_length(bev->input) >= bev->wm_read.low)
        bev->readcb(bev, bev->cbarg);   /* may free bev */
}

void smtpd_io_plain(struct bufferevent *bev)
{
    /* the flags libevent's bufferevent_socket_new() gives its read event;
     * the event is not pending yet (reading is enabled after this) */
    event_assign(&bev->ev_read, bufferevent_get_base(bev), bufferevent_getfd(bev),
                 EV_READ | EV_PERSIST | EV_FINALIZE, plain_read, bev);
}

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
