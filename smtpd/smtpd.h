/*
 * smtpd.h - internals shared by the smtpd files (not a public header).
 *
 * One smtpd process serves many sessions from one libevent loop. A session
 * is a bufferevent plus a small struct; transaction state (struct
 * smtpd_txn) exists only between MAIL and the end of the transaction.
 * Files: smtpd.c (main, listeners, limits, drain), smtpd_session.c (I/O,
 * line framing, timeouts, life cycle), smtpd_cmd.c (verb table, handlers),
 * smtpd_data.c (DATA phase), smtpd_reply.c (replies, reject logs),
 * smtpd_filter.c (the shared filter connection), smtpd_cleanup.c (the
 * per-session cleanup connection).
 */
#ifndef POSTERN_SMTPD_H
#define POSTERN_SMTPD_H

#include <netinet/in.h>
#include <stdint.h>
#include "buf.h"
#include "config.h"
#include "server.h"
#include "smtp_data.h"
#include "stage.h"

struct bufferevent;
struct evconnlistener;

#define SMTPD_CHUNK          65536       /* CLEANUP_DATA payload limit */
#define SMTPD_CLEANUP_HIGH   (1u << 20)  /* stop reading the client above this backlog */
#define SMTPD_CLEANUP_LOW    (256u << 10)
#define SMTPD_DRAIN_SECS     30

struct smtpd_listener {
    const struct listener *conf;         /* listen block */
    const char *name;
    struct evconnlistener *evl;
};

/* One mail transaction: from MAIL to end of DATA / RSET / EHLO. */
struct smtpd_txn {
    char    *sender;        /* "" = <> */
    char   **rcpts;
    int      nrcpts, rcap;
    uint64_t size_hint;     /* SIZE= */
    unsigned flags;         /* QF_F_* */
    int      faccept;       /* faccept at mail/rcpt: skip filter for the rest */
    struct smtp_data dec;   /* DATA decoder */
    buf_t    out;           /* decoded content not yet sent to cleanup */
    int      in_data;
};

enum smtpd_state { SS_CONNECT = 0, SS_CMD, SS_DATA, SS_WAIT_DATA, SS_CLOSING };

/* What the session waits for before it reads the next command. */
enum smtpd_wait { W_NONE = 0, W_FILTER, W_CLEANUP, W_THROTTLE };

struct smtpd_pending;   /* filter request (smtpd_filter.c) */
struct smtpd_cmd;       /* verb table row (smtpd_cmd.c) */

#define SMTPD_NCMD_COUNT 16

struct smtpd_session {
    struct smtpd_session *next, *prev;
    struct bufferevent *bev;
    struct smtpd_listener *lis;
    uint64_t id;
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
    struct smtpd_txn *txn;
    struct smtpd_pending *pend;          /* outstanding filter request */
    const struct smtpd_cmd *wait_cmd;    /* command whose verdict is awaited */
    char    *wait_arg;                   /* its argument (helo name, address) */
    struct smtpd_txn *wait_txn;          /* MAIL: the transaction to open on accept */
    struct bufferevent *cleanup;         /* lazily opened, reused */
    int      cleanup_hello;              /* peer HELLO received */
    int      cleanup_busy;               /* a transaction is open on it */
    int      cleanup_broken;             /* broke during this transaction */
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

/* smtpd_session.c */
void smtpd_session_start(struct smtpd_listener *l, int fd, const char *ip, unsigned port);
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
int  smtpd_cmd_index_unknown(void);
const char *smtpd_cmd_name(int i);
int  smtpd_cmd_count(void);

/* smtpd_data.c */
void smtpd_data_start(struct smtpd_session *s);
/* Decode what is buffered; 1 when the DATA phase ended (state changed). */
int  smtpd_data_input(struct smtpd_session *s);
void smtpd_data_unthrottle(struct smtpd_session *s);   /* cleanup backlog drained */
void smtpd_data_cleanup_reply(struct smtpd_session *s, int ok, unsigned status,
                              const char *qid, unsigned code, const char *enh, const char *text);

/* smtpd_filter.c */
void smtpd_filter_init(struct event_base *base);
/* Ask filter at a stage; 0 = sent (the session waits for
 * smtpd_cmd_verdict), -1 = filter unavailable (answer 451 4.3.0). */
int  smtpd_filter_ask(struct smtpd_session *s, enum stage st, const char *rcpt);
void smtpd_filter_cancel(struct smtpd_session *s);
void smtpd_filter_shutdown(void);
int  smtpd_unix_connect(const char *path);    /* non-blocking; fd or -1 */

/* smtpd_cleanup.c */
int  smtpd_cleanup_begin(struct smtpd_session *s);     /* 0 or -1 (unreachable) */
void smtpd_cleanup_data(struct smtpd_session *s, const void *p, size_t n);
void smtpd_cleanup_end(struct smtpd_session *s, int abort);
void smtpd_cleanup_close(struct smtpd_session *s);     /* drop the connection */
size_t smtpd_cleanup_backlog(const struct smtpd_session *s);

#endif
