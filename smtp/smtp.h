/*
 * smtp.h - internals of the SMTP client agent shared by its files:
 *   smtp.c          accept loop, DELIVER_REQ protocol, grouping by next hop
 *   smtp_resolve.c  the next hop of a domain (relayhost, IP literal; MX later)
 *   smtp_io.c       one connection: deadlines, plaintext or TLS, lines
 *   smtp_session.c  the SMTP dialogue: EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA
 *   smtp_lmtp.c     next hops from qmgr (forward(), lmtp(), transports) and
 *                   LMTP's replies after the final dot
 *   smtp_auth.c     the relay credentials file
 *   smtp_reply.c    the bounded reply parser (also built by the fuzz harness)
 *
 * The agent is blocking like the local one (delivery/): one connection
 * from qmgr, one request, one SMTP session per next hop at a time; every
 * wait (connect, banner, each reply, TLS handshake, writes) has a deadline.
 * Several agent processes (processes.delivery) share private/smtp.
 */
#ifndef POSTERN_SMTP_H
#define POSTERN_SMTP_H

#include <stdint.h>
#include <sys/socket.h>
#include "util/buf.h"
#include "config/config.h"
#include "mail/qfile.h"
#include "smtp_reply.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

/* The outcome for one recipient, as sent in DELIVER_STATUS. */
struct smtp_rcpt {
    uint32_t index;
    const struct qf_rcpt *q;    /* in the parsed queue file, NULL = bad index */
    int done;                   /* outcome final for this request */
    int accepted;               /* RCPT answered 2xx in the current session */
    char nexthop[320];          /* DELIVER_RCPT.nexthop: "" (MX/relayhost), "smtp:HOST", "lmtp:ADDR" */
    enum dstatus status;
    char dsn[16];
    char reason[QF_REASON_MAX + 1];
};

/* The message being sent. */
struct smtp_msg {
    const struct config *cfg;
    SSL_CTX *tls;               /* client context, NULL = TLS unavailable */
    int fd;                     /* queue file */
    const struct qf_env *env;
};

/* ---- next hop (smtp_resolve.c) ---- */
#define SMTP_MAX_ADDRS 10       /* addresses tried per delivery, all MX hosts */
struct smtp_hop {
    char host[256];             /* name for logs, TLS SNI/verify and credentials */
    char key[300];              /* as configured: "[host]:port" (credentials lookup) */
    int port;
    int lmtp;                   /* speak LMTP (RFC 2033): LHLO, a reply per recipient */
    int naddr;
    struct sockaddr_storage addr[SMTP_MAX_ADDRS];
    socklen_t addrlen[SMTP_MAX_ADDRS];
};
/* Where mail for domain goes: 0 ok, or -1 with a DSN code and reason set
 * (4.x.x deferred, 5.x.x bounced; see smtp_resolve.c). */
/* Make the resolver; call once, before the privilege drop. */
void smtp_resolve_init(const struct config *cfg);
int smtp_resolve(const struct config *cfg, const char *domain, struct smtp_hop *hop,
                 char *dsn, size_t dsnlen, char *why, size_t whylen);

/* ---- one connection (smtp_io.c) ---- */
struct sio {
    int fd;
    SSL *ssl;
    size_t len;                 /* bytes buffered in in */
    char in[SMTP_REPLY_LINE_MAX + 2];
    char err[256];              /* what failed last */
    int timed_out;
};
/* 0 connected, -1 (err set). */
/* source: delivery.source_address or NULL (bound only for its family) */
int  sio_connect(struct sio *s, const struct sockaddr *sa, socklen_t len, int timeout,
                 const char *source);
/* Read one whole reply into r: 0, or -1 (err set: I/O, timeout, malformed). */
int  sio_reply(struct sio *s, struct smtp_reply *r, int timeout);
int  sio_write(struct sio *s, const void *p, size_t n, int timeout);
/* STARTTLS handshake on the connection (after the 220). 0 or -1 (err). */
int  sio_starttls(struct sio *s, SSL_CTX *ctx, const char *name, int timeout);
void sio_close(struct sio *s);

/* ---- credentials (smtp_auth.c) ---- */
/* Look up hop in the delivery.relay_auth file: 1 found (user/pass set),
 * 0 none, -1 the file cannot be read (why set). */
int smtp_auth_lookup(const struct config *cfg, const struct smtp_hop *hop, char *user,
                     size_t ulen, char *pass, size_t plen, char *why, size_t whylen);

/* ---- the dialogue (smtp_session.c) ---- */
/* Send the message to the recipients rr[0..n) that are not done, via hop.
 * Every recipient ends with done = 1 and a status (delivered, deferred,
 * bounced) and is logged. */
void smtp_session_deliver(const struct smtp_msg *m, const struct smtp_hop *hop,
                          struct smtp_rcpt **rr, int n);
/* Set a recipient's outcome and log the line. */
void smtp_rcpt_set(const struct smtp_msg *m, struct smtp_rcpt *r, const char *relay,
                   enum dstatus st, const char *dsn, const char *fmt, ...) PRINTF_LIKE(6, 7);

/* ---- next hops chosen by qmgr, LMTP (smtp_lmtp.c) ---- */
/* Deliver rr[first] and every later recipient with the same nexthop (not
 * "") in one session; each ends done. */
void smtp_lmtp_deliver(const struct smtp_msg *m, struct smtp_rcpt *rr, uint32_t n,
                       uint32_t first);
/* After LMTP's final ".": one reply per recipient accepted at RCPT, in
 * order (RFC 2033 4.2). Sets each outcome; -1 when the connection failed
 * (the unanswered ones deferred). */
int smtp_lmtp_replies(const struct smtp_msg *m, struct sio *io, const char *relay,
                      struct smtp_rcpt **rr, int n, int timeout);

#endif
