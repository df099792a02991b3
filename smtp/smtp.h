/*
 * smtp.h - internals of the SMTP client agent shared by its files:
 *   smtp.c          accept loop, DELIVER_REQ protocol, grouping by next hop
 *   smtp_resolve.c  the next hop of a domain (relayhost, IP literal, MX)
 *   smtp_io.c       one connection: deadlines, plaintext or TLS, lines
 *   smtp_session.c  the SMTP dialogue: EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA
 *   smtp_cache.c    the one session kept open between requests (idle close)
 *   smtp_tls.c      the TLS policy of a connection (delivery.tls, the
 *                   delivery.tls_policy map, DANE) and the STARTTLS handshake
 *   smtp_lmtp.c     next hops from qmgr (forward(), lmtp(), transports) and
 *                   LMTP's replies after the final dot
 *   smtp_auth.c     the relay credentials file
 *   smtp_reply.c    the bounded reply parser (also built by the fuzz harness)
 *   smtp_sts.c      MTA-STS (RFC 8461): the hook to lib/sts (its TLS part is
 *                   applied by smtp_tls_policy_for)
 *   smtp_mime.c     8-bit content for a next hop without 8BITMIME (lib/mail/mime8)
 *
 * The agent is blocking like the local one (delivery/): one connection
 * from qmgr, one request, one SMTP session per next hop at a time (kept
 * open afterwards for the next request to the same destination); every
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

#include "tls/tls_client.h"

/* The outcome for one recipient, as sent in DELIVER_STATUS. */
struct smtp_rcpt {
    uint32_t index;
    const struct qf_rcpt *q;    /* in the parsed queue file, NULL = bad index */
    int done;                   /* outcome final for this request */
    int accepted;               /* RCPT answered 2xx in the current session */
    char nexthop[320];          /* DELIVER_RCPT.nexthop: "" (MX/relayhost), "smtp:HOST", "lmtp:ADDR" */
    enum dstatus status;
    int sts_mode;               /* MTA-STS mode applied (enum sts_mode), 0 no policy */
    unsigned sflags;            /* DS_F_* sent with a delivered status (success reports) */
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
#define SMTP_MAX_MX_HOSTS 10    /* MX hosts whose addresses are looked up (each two
                                   lookups of up to dns.timeout) */
/* qmgr gives one request QMGR_AGENT_TIMEOUT (900 s) before it defers what
 * is unanswered while the agent may still deliver it (a duplicate later):
 * every wait of a request, DNS included, ends by SMTP_REQUEST_BUDGET
 * seconds after it began; what is left then is deferred (4.4.7) */
#define SMTP_REQUEST_BUDGET 600
struct smtp_hop {
    char host[256];             /* name for logs, TLS SNI/verify and credentials */
    char key[300];              /* as configured: "[host]:port" (credentials lookup) */
    int port;
    int lmtp;                   /* speak LMTP (RFC 2033): LHLO, a reply per recipient */
    int naddr;
    struct sockaddr_storage addr[SMTP_MAX_ADDRS];
    socklen_t addrlen[SMTP_MAX_ADDRS];
    /* per address: the name of its host (the MX host; TLS names, SNI, DANE's
     * TLSA name; "" = host above), and whether the MX and the address answers
     * were both DNSSEC-secure (DANE looks up TLSA only then) */
    char name[SMTP_MAX_ADDRS][256];
    unsigned char secure[SMTP_MAX_ADDRS];
    int sts_mode;               /* MTA-STS policy mode (enum sts_mode), 0 no policy */
};
/* Where mail for domain goes: 0 ok, or -1 with a DSN code and reason set
 * (4.x.x deferred, 5.x.x bounced; see smtp_resolve.c). */
/* Make the resolver; call once, before the privilege drop. */
void smtp_resolve_init(const struct config *cfg);
struct dns_ctx *smtp_resolve_dns(void);   /* that resolver, NULL without one */
int smtp_resolve(const struct config *cfg, const char *domain, struct smtp_hop *hop,
                 char *dsn, size_t dsnlen, char *why, size_t whylen);

/* ---- MTA-STS (smtp_sts.c) ---- */
struct sts_policy;
struct dns_ctx;
/* The policy of domain (NULL: none or delivery.mta_sts off; free() it);
 * sets hop->sts_mode. */
struct sts_policy *smtp_sts_policy(const struct config *cfg, struct dns_ctx *dns,
                                   const char *domain, struct smtp_hop *hop);
/* May MX host mx be used under p (NULL = no policy)? 0 = skip it (enforce). */
int smtp_sts_mx_ok(const struct sts_policy *p, const char *domain, const char *mx);
/* Does any MX host of answer a match p? (1 without an enforce policy) */
struct dns_answer;
int smtp_sts_any_mx(const struct sts_policy *p, const struct dns_answer *a);
/* The TLS level for hop (called by smtp_tls_policy_for when DANE does not
 * decide): TLSP_VERIFY under an enforce policy (source then names it, for
 * DSN reasons), else pol unchanged. */
enum tls_policy smtp_sts_tls(const struct smtp_hop *hop, enum tls_policy pol, char *source,
                             size_t len);
/* A TLS failure that was let pass: logged when the policy is testing. */
void smtp_sts_testing(const struct smtp_hop *hop, const char *relay, const char *what);
/* "enforce" / "testing" / "none", or NULL for 0 (no policy). */
const char *smtp_sts_mode(int mode);

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
/* STARTTLS handshake on the connection (after the 220), the server checked
 * as peer says (names, DANE). 0 or -1 (err). */
int  sio_starttls(struct sio *s, SSL_CTX *ctx, const struct tls_client_peer *peer,
                  int timeout);
void sio_close(struct sio *s);
/* The request's end (clock_now_ms), 0 = none: every socket wait ends by it
 * (the error says "request time budget spent"). */
void sio_request_deadline(int64_t ms);
/* The request's budget is spent: start nothing more. */
int  sio_request_over(void);

/* ---- credentials (smtp_auth.c) ---- */
/* Look up hop in the delivery.relay_auth file: 1 found (user/pass set),
 * 0 none, -1 the file cannot be read (why set). */
int smtp_auth_lookup(const struct config *cfg, const struct smtp_hop *hop, char *user,
                     size_t ulen, char *pass, size_t plen, char *why, size_t whylen);

/* ---- TLS policy (smtp_tls.c) ---- */
/* What one connection must do about TLS. smtp_tls_policy_for is the ONE
 * place that decides it (MTA-STS hooks in there too). */
struct smtp_tls_req {
    enum tls_policy level;       /* in force: dane without usable secure TLSA became
                                  * may (or encrypt: TLSA but none usable) */
    enum tls_policy asked;       /* what the configuration said */
    char source[340];            /* which setting: "delivery.tls", "delivery.tls_policy[...]" */
    char names[TLS_CLIENT_NAMES][256];
    struct tls_client_peer peer; /* for lib/tls: SNI, names, TLSA */
    struct dns_answer *tlsa;     /* owned; level dane only */
    const struct smtp_hop *hop;  /* for MTA-STS testing-mode reports */
};
#define SMTP_TLS_INFO 160        /* "tls=TLSv1.3/TLS_AES_256_GCM_SHA384 verified=dane" */
/* The policy towards address i of hop. 0, or -1 with a DSN code and reason
 * (a TLSA lookup that failed or was bogus: that host is skipped). */
int  smtp_tls_policy_for(const struct config *cfg, const struct smtp_hop *hop, int i,
                         struct smtp_tls_req *req, char *dsn, size_t dsnlen, char *why,
                         size_t whylen);
void smtp_tls_req_free(struct smtp_tls_req *req);
/* After EHLO: 1 send STARTTLS, 0 go on in plaintext, -1 refuse (dsn, why set). */
int  smtp_tls_want(const struct smtp_tls_req *req, int offered, int have_ctx, const char *relay,
                   char *dsn, size_t dsnlen, char *why, size_t whylen);
/* After the 220 to STARTTLS: handshake and check per req; info gets the log
 * words. 0 TLS up and good enough; -1 TLS up but the check failed, -2 the
 * handshake failed (the connection is unusable; at level may the caller
 * retries this host in plaintext): dsn and why set for both. */
int  smtp_tls_start(struct sio *io, SSL_CTX *ctx, const struct smtp_tls_req *req, int timeout,
                    const char *relay, char *info, size_t infolen, char *dsn, size_t dsnlen,
                    char *why, size_t whylen);

/* ---- the connection kept open between requests (smtp_session.c) ---- */
#define SMTP_CACHE_IDLE_MS  3000   /* an idle kept connection is closed after this */
#define SMTP_CACHE_MAX_MSGS 100    /* transactions per connection, then QUIT */
struct smtp_cache {
    int open;                   /* io is a live session after a transaction */
    char key[300];              /* its destination (deliver_nexthop) */
    struct sio io;
    struct smtp_ext ext;
    char relay[320];            /* host[ip]:port, for logs */
    int tls;
    char tlsinfo[SMTP_TLS_INFO]; /* the session's tls= verified= log words */
    int rset;                   /* the last transaction failed: RSET first */
    int nmsg;                   /* transactions sent on it */
    int64_t since;              /* clock_now_ms() when it became idle */
};
void smtp_cache_init(struct smtp_cache *c);
/* QUIT and close the kept connection, if any. */
void smtp_cache_close(struct smtp_cache *c);
/* Close it once idle too long; ms it may still stay idle (0 = none open). */
int  smtp_cache_idle(struct smtp_cache *c);

/* ---- 8-bit to 7-bit downgrade (smtp_mime.c) ---- */
struct mime8;
#define SMTP_MIME_CHUNK 65536
/* Scan the message for a next hop without 8BITMIME: 0 with *m8_r the
 * converter ready for mime8_convert (NULL: the content is 7-bit already),
 * -1 no 7-bit form (why set), -2 queue file read error (errno). */
int smtp_mime_plan(const struct smtp_msg *m, struct mime8 **m8_r, char *why, size_t whylen);

/* ---- the dialogue (smtp_session.c) ---- */
/* Send the message to the recipients rr[0..n) that are not done, via hop
 * (a new connection; the session may stay open in cache under key
 * afterwards). Every recipient ends with done = 1 and a status (delivered,
 * deferred, bounced) and is logged. */
void smtp_session_deliver(const struct smtp_msg *m, const struct smtp_hop *hop,
                          struct smtp_rcpt **rr, int n, struct smtp_cache *cache,
                          const char *key);
/* The same over the connection kept in cache when it is to key and still
 * usable: 1 = done (outcomes set as above), 0 = nothing sent or the peer
 * had closed it before answering (no outcome set): use smtp_session_deliver. */
int  smtp_session_reuse(const struct smtp_msg *m, struct smtp_rcpt **rr, int n,
                        struct smtp_cache *cache, const char *key);
/* A delivery to one next hop starts: the clock of the delays=Q/C/T field
 * of its log lines (Q: arrival to now; C connection set-up: DNS, connect,
 * greeting, STARTTLS, AUTH, nothing on a kept session; T: the transfer). */
void smtp_times_start(void);
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
