/*
 * bev_read.c - read a plain socket bufferevent with one read() per
 * readiness report (see bev_read.h).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

#include "util/bev_read.h"
#include "util/log.h"

/* One read per readiness report: a command line, or a good part of a
 * message or of a large IPC frame. */
#define BEV_READ_MAX 16384

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
    size_t want = BEV_READ_MAX;
    if (bev->wm_read.high > 0) {
        if (have >= bev->wm_read.high)
            return;                     /* libevent suspends reading there */
        if (bev->wm_read.high - have < want)
            want = bev->wm_read.high - have;
    }
    char buf[BEV_READ_MAX];
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
        log_fatal("out of memory reading a socket");
    explicit_bzero(buf, (size_t)n);     /* may hold a password (AUTH) */
    if (bev->readcb && evbuffer_get_length(bev->input) >= bev->wm_read.low)
        bev->readcb(bev, bev->cbarg);   /* may free bev */
}

void bev_read_direct(struct bufferevent *bev)
{
    /* the flags libevent's bufferevent_socket_new() gives its read event;
     * the event is not pending yet (reading is enabled after this) */
    event_assign(&bev->ev_read, bufferevent_get_base(bev), bufferevent_getfd(bev),
                 EV_READ | EV_PERSIST | EV_FINALIZE, plain_read, bev);
}
