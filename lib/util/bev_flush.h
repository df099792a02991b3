/*
 * bev_flush.h - write a plain socket bufferevent's output in place.
 *
 * bufferevent_write() only schedules the write: libevent adds the write
 * event (epoll_ctl), the next epoll_wait reports the socket writable, the
 * bytes go out, and the event is removed again (epoll_ctl). For a small
 * reply to a socket that is almost always writable that is two extra
 * syscalls and a loop round. bev_flush_now() writes the output at once and,
 * when it all went, drops the pending write event before the loop applies
 * it (server.c turns on libevent's epoll changelist, which cancels the
 * add/del pair: no syscall at all).
 * What cannot be written stays queued and libevent goes on as usual.
 * Not for filtering bufferevents (TLS): the caller checks. The write and
 * write-watermark callbacks are not run for bytes written here.
 */
#ifndef POSTERN_BEV_FLUSH_H
#define POSTERN_BEV_FLUSH_H

struct bufferevent;

/* 1 when the output is empty afterwards, else 0. */
int bev_flush_now(struct bufferevent *bev);

#endif
