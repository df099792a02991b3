/*
 * ipc_bev.h - one IPC conversation driven by a libevent bufferevent: the
 * event-loop counterpart of struct ipc_conn (ipc.h).
 *
 * Used by every daemon that talks to another one from its event loop:
 * smtpd (filter, cleanup), cleanup (its smtpd peers, filter, qmgr), filter
 * (its clients), qmgr (filter, delivery agents). The handle does the ritual
 * they all share: connect (or take an accepted fd), HELLO both ways, pull
 * whole frames out of the input and decode them strictly (ipc_next), hand
 * each one to the owner's on_frame, encode and queue typed messages, read
 * timeouts, and optional back-pressure on the output. What a message means,
 * reconnecting and backoff policy stay with the owner.
 *
 * Must never: guess at a malformed frame (the owner hears IPC_PEER_PROTO
 * and drops the peer), deliver a frame before the peer's HELLO was checked,
 * or touch a handle after ipc_peer_free (freeing from inside a callback is
 * allowed: the memory goes when the callback returns).
 */
#ifndef POSTERN_IPC_BEV_H
#define POSTERN_IPC_BEV_H

#include <stddef.h>
#include "ipc/ipc.h"

struct event_base;
struct ipc_peer;

/* Why a conversation ended (on_error). */
enum ipc_peer_why {
    IPC_PEER_EOF,        /* closed by the peer */
    IPC_PEER_IO,         /* read/write error: EVUTIL_SOCKET_ERROR() tells which */
    IPC_PEER_TIMEOUT,    /* nothing read within ipc_peer_set_timeout's time */
    IPC_PEER_PROTO,      /* bad frame (already logged by ipc_next) */
    IPC_PEER_HELLO,      /* first message not HELLO, or the wrong protocol/version */
    IPC_PEER_REFUSED,    /* on_frame returned -1 */
};

struct ipc_peer_ops {
    const char *proto;          /* IPC_PROTO_*: named in both HELLOs */
    int server;                 /* 1: accept side, answers the peer's HELLO with ours;
                                 * 0: client side, says HELLO first */
    int connect_nonblock;       /* client: connect without blocking the loop */
    size_t out_low;             /* write watermark: on_drained / resume below it */
    size_t out_high;            /* > 0: stop reading while more is unsent */
    int read_direct;            /* 1: one read() per wake-up, no FIONREAD (util/bev_read.h) */
    /* The peer's HELLO was accepted (server side: ours is queued already). */
    void (*on_hello)(struct ipc_peer *p, void *arg);
    /* One decoded message after HELLO; its strings live until it returns.
     * 0 = go on, -1 = protocol error (on_error(IPC_PEER_REFUSED) follows). */
    int  (*on_frame)(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m, void *arg);
    /* The conversation failed: call ipc_peer_free (or, on IPC_PEER_TIMEOUT
     * only, ipc_peer_read_again to keep it). */
    void (*on_error)(struct ipc_peer *p, enum ipc_peer_why why, void *arg);
    /* Optional: unsent output fell to out_low. */
    void (*on_drained)(struct ipc_peer *p, void *arg);
};

/* Connect to the Unix socket path (spool-relative) and queue our HELLO.
 * NULL with errno set when the connect fails (the caller logs). name is
 * the peer's name in log lines. */
struct ipc_peer *ipc_peer_connect(struct event_base *base, const char *path, const char *name,
                                  const struct ipc_peer_ops *ops, void *arg);
/* Take an accepted connection (made non-blocking here). */
struct ipc_peer *ipc_peer_accept(struct event_base *base, int fd, const char *name,
                                 const struct ipc_peer_ops *ops, void *arg);
/* Close and free (safe inside this peer's callbacks). NULL is ignored. */
void ipc_peer_free(struct ipc_peer *p);

/* Encode one typed message and queue it; 0, or -1 when it cannot be queued. */
int  ipc_peer_send(struct ipc_peer *p, enum ipc_type t, const void *msg);
/* Write what is queued now, as far as the socket takes it (before a close,
 * or to skip an EPOLLOUT round: lib/util/bev_flush.h); libevent sends the rest. */
void ipc_peer_flush(struct ipc_peer *p);
/* Keep what is queued until the next send or flush: no write and no
 * EPOLLOUT round for a frame that more frames follow soon (smtpd's
 * CLEANUP_BEGIN, sent with the content). */
void ipc_peer_hold(struct ipc_peer *p);
/* Bytes queued and not yet written. */
size_t ipc_peer_backlog(const struct ipc_peer *p);

/* Fail with IPC_PEER_TIMEOUT when nothing arrives for secs (<= 0: never).
 * Restarts the clock. */
void ipc_peer_set_timeout(struct ipc_peer *p, int secs);
/* Read again after a timeout the owner chose to survive. */
void ipc_peer_read_again(struct ipc_peer *p);

int  ipc_peer_ready(const struct ipc_peer *p);       /* the peer's HELLO arrived */
const char *ipc_peer_name(const struct ipc_peer *p);

#endif
