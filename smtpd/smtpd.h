/*
 * smtpd.h - internals shared by the smtpd files (not a public header).
 *
 * One smtpd process serves many sessions from one libevent loop. A session
 * is a bufferevent plus a small struct; transaction state (struct
 * smtpd_txn) exists only between MAIL and the end of the transaction.
 * Files: smtpd.c (main, listeners, limits, drain), smtpd_session.c (I/O,
 * line framing, timeouts, life cycle), smtpd_io.c (accepting), smtpd_cmd.c (verb table, handlers),
 * smtpd_data.c (DATA phase), smtpd_bdat.c (BDAT chunks, RFC 3030),
 * smtpd_esmtp.c (EHLO keywords and MAIL/RCPT parameters: SIZE, BODY,
 * SMTPUTF8, DSN), smtpd_reply.c (replies, reject logs),
 * smtpd_filter.c (the shared filter connection), smtpd_cleanup.c (the
 * pool of cleanup connections), smtpd_tls.c (STARTTLS, implicit TLS),
 * smtpd_auth.c (AUTH PLAIN/LOGIN, the password-check pool), smtpd_dns.c
 * (client.ptr: forward-confirmed reverse DNS when rules are in use).
 */
#ifndef POSTERN_SMTPD_H
#define POSTERN_SMTPD_H

#include <netinet/in.h>
#include <stdint.h>
#include "util/buf.h"
#include "util/log_event.h"
#include "config/config.h"
#include "filter/filter_mut.h"
#include "mail/local_reply.h"
#include "daemon/server.h"
#include "mail/smtp_data.h"
#include "mail/stage.h"

struct bufferevent;
struct event;

#define SMTPD_CHUNK          65536       /* CLEANUP_DATA payload limit */
#define SMTPD_CLEANUP_HIGH   (1u << 20)  /* stop reading the client above this backlog */
#define SMTPD_CLEANUP_LOW    (256u << 10)
#define SMTPD_DRAIN_SECS     30
/* Replies not yet written: above HIGH the session stops reading and parsing
 * (a client that sends commands but never reads its replies), below LOW it
 * goes on (smtpd_session.c). */
#define SMTPD_OUT_HIGH       (32u << 10)
#define SMTPD_OUT_LOW        (8u << 10)

struct smtpd_listener {
    const struct listener *conf;         /* listen block */
    const char *name;
    int fd;                              /* the listening socket, -1 once closed */
    struct event *ev;                    /* its readiness, or its stand-in's (smtpd_io.c) */
    int standin;                         /* the stand-in eventfd, -1 when none */
};

/* Mutations from filter that cleanup applies (header mutations,
 * quarantine) are kept from the verdict until CLEANUP_BEGIN in a
 * struct filter_muts (lib/filter/filter_mut.h), at most SMTPD_MAX_MUTS. */
#define SMTPD_MAX_MUTS   256     /* remembered per session / transaction */
#define SMTPD_MAX_EXTRA  100     /* recipients added by rules per transaction */

/* One mail transaction: from MAIL to end of DATA / RSET / EHLO. */
struct smtpd_txn {
    char    *sender;        /* "" = <> */
    char   **rcpts;
    char   **orcpts;        /* per rcpt: DSN ORCPT "type;addr" (decoded) or NULL */
    uint32_t *notify;       /* per rcpt: DSN NOTIFY_* bits */
    int      nrcpts, rcap;
    uint64_t size_hint;     /* SIZE= */
    unsigned flags;         /* QF_F_* */
    char    *envid;         /* DSN ENVID= (decoded xtext) or NULL */
    unsigned ret;           /* DSN RET=: 0 none, 1 FULL, 2 HDRS */
    int      bdat;          /* BDAT chunks taken: DATA and RCPT now refused */
    uint64_t bdat_octets;   /* octets received in BDAT chunks */
    int      faccept;       /* faccept at mail/rcpt: skip filter for the rest */
    struct smtp_data dec;   /* DATA decoder */
    buf_t    out;           /* decoded content not yet sent to cleanup */
    int      in_data;
    struct filter_muts muts; /* from mail/rcpt verdicts, for cleanup */
    int      nextra;        /* recipients added by rules (add_rcpt, bcc) */
    int      nremoved;      /* recipients accepted but removed by rules */
    struct smtpd_spf *spf;  /* SPF outcome at MAIL (smtpd_spf.c), NULL: not checked */
};

enum smtpd_state { SS_CONNECT = 0, SS_CMD, SS_DATA, SS_WAIT_DATA, SS_CLOSING, SS_BDAT };

/* The BDAT chunk being read (smtpd_bdat.c). */
struct smtpd_chunk {
    uint64_t left;          /* octets still to read */
    uint64_t size;          /* as announced */
    int      last;          /* BDAT ... LAST */
    unsigned refuse;        /* 0: content kept; else the reply code, chunk discarded */
    const char *enh, *text; /* the refusal (static strings) */
};

/* What the session waits for before it reads the next command. */
enum smtpd_wait { W_NONE = 0, W_FILTER, W_CLEANUP, W_THROTTLE,
                  W_TLS,        /* TLS handshake (smtpd_tls.c) */
                  W_AUTH,       /* password check or failure delay (smtpd_auth.c) */
                  W_DNS,        /* connect stage waits for client.ptr (smtpd_dns.c) */
                  W_SPF };      /* MAIL waits for its SPF check (smtpd_spf.c) */

struct smtpd_pending;   /* filter request (smtpd_filter.c) */
struct smtpd_cconn;     /* pooled cleanup connection (smtpd_cleanup.c) */
struct smtpd_cmd;       /* verb table row (smtpd_cmd.c) */

#define SMTPD_NCMD_COUNT 24

struct smtpd_session {
    struct smtpd_session *next, *prev;
    struct bufferevent *bev;
    struct smtpd_listener *lis;
    uint64_t id;            /* time << 32 | random: unique, sortable */
    char     sid[17];       /* id as 16 hex digits: the log's session id */
    char     ip[INET6_ADDRSTRLEN];
    unsigned port;
    char    *helo;          /* NULL until HELO/EHLO accepted */
    int      esmtp;
    enum smtpd_state state;
    enum smtpd_wait wait;
    int      errors;
    unsigned ncommands;
    uint16_t counts[SMTPD_NCMD_COUNT];   /* per verb table row, last = unknown */
    unsigned skip_line : 1;  /* swallowing the rest of an overlong line */
    unsigned eof : 1;        /* client closed its side */
    unsigned faccept : 1;    /* faccept at connect/helo: no more filter calls */
    unsigned in_process : 1; /* inside session_process (no re-entry) */
    unsigned plain_bev : 1;  /* bev is a plain socket one (not TLS): bev_flush_now ok */
    unsigned out_blocked : 1; /* replies above SMTPD_OUT_HIGH: not reading until LOW */
    unsigned junk;           /* NOOP/HELP/VRFY/RSET since the last message (limits.junk_commands) */
    int      tmo_r, tmo_w;   /* timeouts last given to bev (-1: none yet) */
    struct smtpd_txn *txn;
    struct smtpd_pending *pend;          /* outstanding filter request */
    const struct smtpd_cmd *wait_cmd;    /* command whose verdict is awaited */
    char    *wait_arg;                   /* its argument (helo name, address) */
    char    *wait_orcpt;                 /* RCPT: its DSN ORCPT (or NULL) */
    uint32_t wait_notify;                /* RCPT: its DSN NOTIFY bits */
    struct smtpd_chunk chunk;            /* BDAT chunk in progress (SS_BDAT) */
    struct smtpd_txn *wait_txn;          /* MAIL: the transaction to open on accept */
    struct smtpd_cconn *cleanup;         /* taken from the pool at DATA/BDAT */
    int      cleanup_busy;               /* a transaction is open on it */
    int      cleanup_broken;             /* broke during this transaction */
    /* TLS and AUTH (smtpd_tls.c, smtpd_auth.c) */
    int      tls_on;                     /* TLS is up (STARTTLS or implicit) */
    char    *tls_info;                   /* "TLSv1.3 TLS_AES_256_GCM_SHA384" once up */
    char    *auth_user;                  /* authenticated user, NULL before AUTH */
    const char *auth_domain;             /* a tenant login's domain (config-owned), else NULL */
    struct smtpd_auth *auth;             /* AUTH exchange in progress, else NULL */
    struct filter_muts muts;             /* from connect/helo/auth verdicts, for cleanup */
    /* client.ptr (smtpd_dns.c) */
    char    *ptr;                        /* FCrDNS name, "" none; NULL: not looked up */
    struct dns_fcrdns *fcrdns;           /* lookup in progress */
    struct event *dns_timer;             /* bounds it: dns.timeout */
    struct spf_check *spf_check;         /* SPF check in progress (smtpd_spf.c) */
};

/* A verdict from filter, strings valid during the callback only. */
struct smtpd_verdict {
    enum verdict status;
    unsigned code;
    const char *enhanced, *text, *rule;
};

/* smtpd.c */
extern struct server *smtpd_server;
extern struct config *smtpd_cfg;
void smtpd_session_gone(struct smtpd_session *s);   /* counts, drain check */
/* A connection accept4()ed on l (non-blocking): limits, then a session. */
struct sockaddr;
void smtpd_accepted(struct smtpd_listener *l, int fd, const struct sockaddr *sa);

/* smtpd_io.c: accepting without libevent's extra system calls */
int  smtpd_io_listen(struct smtpd_listener *l, int fd);   /* -1: failed */
void smtpd_io_unlisten(struct smtpd_listener *l);   /* stop accepting, close fd */

/* smtpd_session.c */
void smtpd_session_start(struct smtpd_listener *l, int fd, const char *ip, unsigned port);
/* A log event of this session: session id and client set. */
void smtpd_ev(struct log_ev *e, enum log_event ev, const struct smtpd_session *s);
void smtpd_session_process(struct smtpd_session *s);
void smtpd_session_close(struct smtpd_session *s);   /* after flushing replies */
void smtpd_session_free(struct smtpd_session *s);    /* now */
void smtpd_session_resume(struct smtpd_session *s);  /* a wait ended: go on */
void smtpd_session_update_timeout(struct smtpd_session *s);
void smtpd_txn_free(struct smtpd_txn *t);
void smtpd_session_reset(struct smtpd_session *s);   /* end the transaction */
int  smtpd_session_idle(const struct smtpd_session *s);
void smtpd_session_drain(struct smtpd_session *s);   /* stop signal arrived */
int  smtpd_session_early_talker(struct smtpd_session *s);
extern struct smtpd_session *smtpd_sessions;
extern int smtpd_nsessions;

/* smtpd_reply.c */
void smtpd_reply(struct smtpd_session *s, unsigned code, const char *enh, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
void smtpd_reply_raw(struct smtpd_session *s, const char *line);     /* adds CRLF */
/* A local failure's reply (lib/mail/local_reply.def); _refuse_ also logs it. */
void smtpd_reply_local(struct smtpd_session *s, enum local_status ls);
void smtpd_refuse_local(struct smtpd_session *s, const char *verb, enum local_status ls);
void smtpd_reply_verdict(struct smtpd_session *s, const char *verb, enum stage st,
                         const struct smtpd_verdict *v);
void smtpd_log_reject(struct smtpd_session *s, const char *verb, unsigned code,
                      const char *enh, const char *text, const char *rule);
/* Pick the reply for a refusing verdict: defaults from verdict_default(),
 * overrides when they are well-formed and of the right class. */
void smtpd_verdict_reply(const struct smtpd_verdict *v, enum stage st, unsigned *code_r,
                         const char **enh_r, buf_t *text);

/* smtpd_cmd.c */
void smtpd_cmd_line(struct smtpd_session *s, const char *line, size_t len);
void smtpd_cmd_verdict(struct smtpd_session *s, const struct smtpd_verdict *v);
void smtpd_cmd_connect(struct smtpd_session *s);
/* Ask filter at the stage of the verb's row (AUTH after the password
 * check); the verdict goes to the row's on_verdict. */
void smtpd_cmd_ask_verb(struct smtpd_session *s, const char *verb);
int  smtpd_cmd_index_unknown(void);
const char *smtpd_cmd_name(int i);
int  smtpd_cmd_count(void);

/* smtpd_data.c */
void smtpd_data_start(struct smtpd_session *s);
/* Decode what is buffered; 1 when the DATA phase ended (state changed). */
int  smtpd_data_input(struct smtpd_session *s);
void smtpd_data_unthrottle(struct smtpd_session *s);   /* cleanup backlog drained */
void smtpd_data_cleanup_reply(struct smtpd_session *s, int ok, unsigned status, unsigned local,
                              const char *qid, unsigned code, const char *enh, const char *text);
/* Send whole chunks (all=1: everything) of decoded content to cleanup. */
void smtpd_data_flush(struct smtpd_session *s, int all);
/* The content is complete (t->dec.done): refuse it or hand it to cleanup. */
void smtpd_data_finish(struct smtpd_session *s);

/* smtpd_bdat.c */
void smtpd_bdat_cmd(struct smtpd_session *s, const char *arg, size_t len);   /* verb row */
/* Read chunk bytes from the input; 1 when the chunk ended (state changed). */
int  smtpd_bdat_input(struct smtpd_session *s);

/* smtpd_esmtp.c */
struct smtp_mailrcpt;
struct esmtp_param;
void smtpd_esmtp_keywords(struct smtpd_session *s);      /* EHLO lines we add */
/* 555 5.5.4 "Unsupported parameter KEY" (the key escaped, at most 32 bytes). */
void smtpd_esmtp_unsupported(struct smtpd_session *s, const struct esmtp_param *p);
/* One MAIL parameter other than SIZE/BODY; 0 ok, -1 replied. */
int  smtpd_esmtp_mail_param(struct smtpd_session *s, const struct esmtp_param *p,
                            struct smtpd_txn *t);
/* After MAIL parsed: a non-ASCII sender needs SMTPUTF8; 0 ok, -1 replied. */
int  smtpd_esmtp_mail_check(struct smtpd_session *s, const char *sender, const struct smtpd_txn *t);
/* RCPT parameters (NOTIFY, ORCPT) and the UTF-8 check: sets s->wait_orcpt,
 * s->wait_notify; 0 ok, -1 replied. */
int  smtpd_esmtp_rcpt(struct smtpd_session *s, const char *rcpt, const struct smtp_mailrcpt *r);

/* smtpd_tls.c */
struct server;
void smtpd_tls_pre_drop(struct server *srv, void *arg);   /* server_init_ex hook: keys */
void smtpd_tls_ehlo(struct smtpd_session *s);             /* 250-STARTTLS when offered */
void smtpd_tls_cmd_starttls(struct smtpd_session *s, const char *arg, size_t len);
/* Implicit TLS (listen.X.tls = "implicit"): the session's bufferevent,
 * handshaking; the greeting follows the handshake. */
int  smtpd_tls_implicit(const struct smtpd_listener *l);
struct bufferevent *smtpd_tls_accept(struct smtpd_session *s, int fd);
/* Events while s->wait == W_TLS (handshake done, failed, timed out). May free s. */
void smtpd_tls_event(struct smtpd_session *s, short what);
int  smtpd_tls_offered(const struct smtpd_session *s);   /* STARTTLS possible now */
int  smtpd_tls_needed(const struct smtpd_session *s);    /* required on this listener */
/* MAIL gate: TLS required (listener or tls.level) and not up -> 530; 0 ok. */
int  smtpd_tls_mail_check(struct smtpd_session *s);
/* RFC 3848 protocol name for Received: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA */
const char *smtpd_tls_protocol(const struct smtpd_session *s);
void smtpd_tls_session_free(struct smtpd_session *s);

/* smtpd_dns.c: client.ptr, looked up only when a rules file is set */
struct dns_fcrdns;
struct event;
void smtpd_dns_pre_drop(const struct config *cfg);   /* before the jail */
/* smtpd_local.c: the local-recipient check (550 5.1.1) without blocking:
 * fork its helper (before the jail), hook it to the loop, ask it. */
void smtpd_local_pre_drop(struct server *srv);
void smtpd_local_init(struct event_base *base);
/* Is addr a local recipient? known: 1 yes, 0 no, -1 temporary failure. */
typedef void smtpd_local_fn(int known, void *arg);
#define SMTPD_LOCAL_ASKED 2
/* SMTPD_LOCAL_ASKED: cb(known, arg) follows once from the loop (within a
 * bounded time, or at smtpd_local_shutdown with -1); else the answer now
 * (1 or 0 kept from a recent question, 0 for an overlong address, -1) and
 * cb is never called. */
int smtpd_local_ask(const char *addr, smtpd_local_fn *cb, void *arg);
void smtpd_local_shutdown(void);       /* open questions: cb(-1) */
void smtpd_dns_init(struct event_base *base);
void smtpd_dns_shutdown(void);
void smtpd_dns_start(struct smtpd_session *s);        /* at session start */
void smtpd_dns_connect(struct smtpd_session *s);      /* connect stage, once ptr known */
const char *smtpd_dns_ptr(const struct smtpd_session *s);  /* for filter, cleanup */
void smtpd_dns_session_free(struct smtpd_session *s);
struct dns_ctx *smtpd_dns_ctx(void);                  /* shared with smtpd_spf.c; may be NULL */

/* smtpd_spf.c: SPF at MAIL FROM (authentication.spf) */
struct smtpd_spf;
struct spf_check;
/* 1: a check started, the session waits (W_SPF) and MAIL's stage follows
 * its end; 0: go on now. */
int  smtpd_spf_mail(struct smtpd_session *s);
const char *smtpd_spf_result(const struct smtpd_txn *t);   /* "" when not checked */
const char *smtpd_spf_domain(const struct smtpd_txn *t);
const char *smtpd_spf_header(const struct smtpd_txn *t);   /* Received-SPF field or "" */
void smtpd_spf_txn_free(struct smtpd_txn *t);
void smtpd_spf_session_free(struct smtpd_session *s);

/* smtpd_auth.c */
struct smtpd_auth;
void smtpd_auth_init(struct event_base *base);            /* after the privilege drop */
void smtpd_auth_load(const struct config *cfg);           /* pre-drop: read auth.users */
void smtpd_auth_ehlo(struct smtpd_session *s);            /* 250-AUTH PLAIN LOGIN */
void smtpd_auth_cmd(struct smtpd_session *s, const char *arg, size_t len);
void smtpd_auth_line(struct smtpd_session *s, const char *line, size_t len);  /* s->auth */
void smtpd_auth_verdict(struct smtpd_session *s, const struct smtpd_verdict *v);
/* MAIL gate: listen.X.auth = "required" and not authenticated -> 530; 0 ok. */
int  smtpd_auth_mail_check(struct smtpd_session *s);
/* A tenant login may send only as <> or from its own domain: 553 5.7.1
 * (replied and logged) and -1 otherwise. */
int  smtpd_auth_sender_check(struct smtpd_session *s, const char *sender);
/* MAIL ... AUTH=xtext (RFC 4954 5): checked, then ignored; 0 ok, -1 replied. */
int  smtpd_auth_mail_param(struct smtpd_session *s, const struct esmtp_param *p);
void smtpd_auth_reset(struct smtpd_session *s);           /* STARTTLS: forget AUTH */
void smtpd_auth_session_free(struct smtpd_session *s);
void smtpd_auth_shutdown(void);

/* smtpd_filter.c */
void smtpd_filter_init(struct event_base *base);
/* Ask filter at a stage; 0 = sent (the session waits for
 * smtpd_cmd_verdict), -1 = filter unavailable (answer 451 4.3.0). */
int  smtpd_filter_ask(struct smtpd_session *s, enum stage st, const char *rcpt);
void smtpd_filter_cancel(struct smtpd_session *s);    /* session gone: also FILTER_END */
/* Should stage st be asked (FILTER_STAGES mask; rcpt also for every
 * non-local recipient: relay control lives in filter)? */
int  smtpd_filter_wanted(enum stage st, const char *rcpt);
/* The mutations of the verdict being delivered (valid during
 * smtpd_cmd_verdict only; none for skipped or failed requests). */
const struct filter_mut *smtpd_filter_muts(int *n_r);
void smtpd_filter_shutdown(void);

/* smtpd_rules.c: the verdict's mutations (smtpd_filter_muts) */
void smtpd_rules_before(struct smtpd_session *s, enum stage st, const struct smtpd_verdict *v);
void smtpd_rules_after(struct smtpd_session *s, enum stage st, const char *rcpt,
                       const struct smtpd_verdict *v);    /* MAIL, RCPT: recipients */

/* smtpd_cleanup.c */
int  smtpd_cleanup_begin(struct smtpd_session *s);     /* 0 or -1 (unreachable) */
void smtpd_cleanup_data(struct smtpd_session *s, const void *p, size_t n);
int  smtpd_cleanup_end(struct smtpd_session *s, int abort);   /* -1: not sent (abort it) */
void smtpd_cleanup_close(struct smtpd_session *s);     /* drop the connection */
size_t smtpd_cleanup_backlog(const struct smtpd_session *s);
void smtpd_cleanup_shutdown(void);                      /* close idle connections */

#endif
