/*
 * bev_flush.c - write a plain socket bufferevent's output in place (see
 * bev_flush.h).
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>

#include "util/bev_flush.h"

int bev_flush_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0)
        return 1;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd < 0)
        return 0;
    /* a bufferevent keeps its output's start frozen outside its own
     * write callback: thaw it for this write */
    evbuffer_unfreeze(out, 1);
    int ok = 1;
    while (ok && evbuffer_get_length(out) > 0)
        ok = evbuffer_write(out, fd) > 0;   /* EAGAIN or error: libevent takes over */
    evbuffer_freeze(out, 1);
    if (!ok)
        return 0;
    event_del(&bev->ev_write);      /* nothing left to write: no EPOLLOUT round */
    return 1;
}
