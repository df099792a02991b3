/*
 * bev_read.h - read a plain socket bufferevent without libevent's extra
 * system call.
 *
 * libevent's socket bufferevent reads with evbuffer_read(), which asks the
 * kernel how much is waiting (ioctl FIONREAD) before every read(), and then
 * reads at most 4096 octets. bev_read_direct() points the bufferevent's
 * read event at a callback of its own: one read() of up to 16 KiB, and the
 * same outcomes as libevent's (data: the read callback; EOF, an error, the
 * read timeout: the event callback with BEV_EVENT_READING, reading
 * disabled). Enabling, disabling, read timeouts and the read high-water
 * mark keep working: they act on the same struct event.
 * Call it right after bufferevent_socket_new(), before reading is enabled.
 * Not for TLS or filtering bufferevents nor with BEV_OPT_DEFER_CALLBACKS
 * (the read callback runs at once), and never after bufferevent_setfd()
 * (which gives libevent's callback back).
 */
#ifndef POSTERN_BEV_READ_H
#define POSTERN_BEV_READ_H

struct bufferevent;

void bev_read_direct(struct bufferevent *bev);

#endif
