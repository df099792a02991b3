/*
 * cleanup.h - cleanup's internal interfaces, shared by the cleanup sources only.
 *
 * One event loop (connections from smtpd, the filter and qmgr clients, the
 * completion pipe of the commit pool) plus a pool of fsync worker threads.
 * A transaction (struct cl_txn) belongs to the event loop except while it
 * sits in the commit pool: then only the commit fields (c*) are touched, by
 * the pool, and the loop gets it back through the completion queue.
 */
#ifndef POSTERN_CLEANUP_H
#define POSTERN_CLEANUP_H

#include <stdint.h>

#include "util/buf.h"
#include "config/config.h"
#include "filter/filter_mut.h"
#include "mail/addr.h"
#include "mail/hdr.h"
#include "ipc/ipc.h"
#include "mail/local_reply.h"
#include "mail/qfile.h"
#include "daemon/server.h"
#include "mail/spool.h"
#include "mail/stage.h"
#include "util/workq.h"
#include "dkim/pdk.h"

struct filter_clnt;

#define CL_HDR_MAX      (256 * 1024)   /* buffered header section */
#define CL_HOP_LIMIT    50             /* Received: fields before 554 5.4.6 */
#define CL_TEXT_MAX     256            /* reply text we keep */
#define CL_FILTER_TIMEOUT 120          /* seconds a data verdict may take */
#define CL_DRAIN_SECS   30             /* bounded wait at SIGTERM */

struct ipc_peer;
struct event;
struct cl_conn;
struct cl_pool;

enum cl_state {
    T_ENVELOPE = 0,     /* BEGIN seen, collecting recipients */
    T_CONTENT,          /* DATA chunks arriving */
    T_AUTH,             /* END seen, with cleanup_auth.c's workers (DKIM, A-R) */
    T_FILTER,           /* waiting for the data verdict */
    T_COMMIT,           /* in the commit pool */
};

#define CL_MAX_MUTS     256            /* mutations kept per transaction */

/* Mutations to apply (struct filter_muts, lib/filter/filter_mut.h, at most
 * CL_MAX_MUTS): from smtpd (CLEANUP_MUT, decided before DATA) or from the
 * data verdict (FILTER_MUT). kind = enum filter_mut_kind. */

/* A reply we owe smtpd (sticky failure or verdict). */
struct cl_reply {
    int status;                 /* enum verdict */
    int local;                  /* enum local_status; 0: a filter's reply below */
    int code;
    char enhanced[16];
    char text[CL_TEXT_MAX];
};

#define CLA_AUTHORS_MAX 8       /* author domains DMARC evaluates per message */

/* Email authentication of one message (cleanup_auth.c). Set in the loop
 * before the job, filled by a worker while state == T_AUTH, read by the
 * loop afterwards. SPF itself comes from smtpd (cl_txn.spf_*). */
struct cl_auth {
    int submission;             /* authenticated, mynetworks or local */
    int verify, sign, add_ar;   /* what the job does */
    int dmarc_on;               /* evaluate DMARC (authentication.dmarc, not a submission) */
    int decided;                /* the fields above are set (cla_headers) */
    int fuse;                   /* the commit may follow in the worker (cla_submit) */
    int fused;                  /* it did: the loop hears of t at commit done */
    int stripped;               /* spoofed Authentication-Results dropped */
    char from_domain[ADDR_DOMAIN_MAX + 1];  /* the first author domain, lower case, or "" */
    char (*from_more)[ADDR_DOMAIN_MAX + 1]; /* the other ones (malloc'd), or NULL */
    int nfrom;                  /* distinct author domains in all From fields (may
                                 * exceed CLA_AUTHORS_MAX: only that many are kept) */
    struct pdk_verdict dkim;    /* one result per DKIM-Signature */
    buf_t sigs;                 /* the DKIM-Signature fields we made */
    char sign_err[192];
    /* DMARC (cleanup_dmarc.c fills these after DKIM; "" = not evaluated) */
    char dmarc_result[16];      /* pass | fail | none | temperror | permerror */
    char dmarc_policy[16];      /* policy.dmarc and dmarc.policy: what the record asks
                                 * for this message (p= or sp=, after pct=); "" no record */
    char dmarc_reason[128];
    struct dmarc_outcome *dmarc;    /* the whole outcome (reports, logs), or NULL */
    int dmarc_disposition;      /* enum dmarc_policy: what we do (dmarc_failure) */
    /* worker failure (file not rewritten: the transaction gets 4xx) */
    int err;
    const char *where;
};

#define CL_RECYCLE_NAME_MAX (sizeof(SPOOL_RECYCLE_PREFIX) - 1 + QUEUE_ID_MAX)   /* NUL included */

struct cl_txn {
    struct cl_conn *conn;       /* NULL once the smtpd connection is gone */
    enum cl_state state;
    char qid[QUEUE_ID_MAX];
    char path[64];              /* tmp/ID, or tmp/.free-X (a recycled inode) */
    int fd;
    char rname[CL_RECYCLE_NAME_MAX];    /* the recycled file tmp/rname it holds, or "" */
    struct cl_txn *rnext, *rprev;
    off_t old_size;             /* a recycled file's length before (0: new file) */
    int64_t arrival_us;
    uint64_t session;           /* smtpd's session id (filter requests) */
    /* a sendmail submission from pickup: the user who submitted it */
    int local;
    uint32_t local_uid;
    char local_user[64];
    struct qf_env env;          /* envelope; recipients collected until content */
    struct qf_writer *w;        /* open once the first content (or END) arrives */
    uint64_t size;              /* content bytes from smtpd */
    int failed;                 /* fail holds the reply; content is discarded */
    struct cl_reply fail;
    /* header section */
    int in_headers;
    struct hdr_scan hs;
    buf_t hbuf;
    /* filter request */
    uint64_t freq_id;           /* 0: none outstanding */
    int quarantine;
    /* rules (cleanup_rules.c) */
    int faccept;                /* CLEANUP_BEGIN flag: no data stage */
    struct filter_muts muts;    /* CLEANUP_MUT: header mutations, quarantine */
    struct filter_muts dmuts;   /* the data verdict's mutations */
    char qname[65];             /* quarantine/<qname>/ instead of incoming/ */
    char qrule[64];             /* rule that quarantined */
    int rewrite;                /* the pool rewrites the file first (data mutations) */
    /* SPF from smtpd (CLEANUP_BEGIN): for the data stage and Received-SPF */
    char *spf_result, *spf_domain, *received_spf;
    char *auth_domain;          /* a tenant login's domain (signs only its mail), or NULL */
    int forwarded;              /* CLEANUP_BEGIN QF_F_FORWARDED: the local agent's copy */
    struct cl_auth auth;        /* DKIM, Authentication-Results (cleanup_auth.c) */
    struct workq_item awitem;   /* its job */
    /* commit pool (touched by worker threads while state == T_COMMIT) */
    struct workq_item witem;
    struct cl_txn *cnext;
    int cerr;                   /* errno of the failed step, 0 = committed */
    const char *cwhere;         /* which step failed */
    int cbatch;                 /* entries in its directory fsync (trace) */
    int csyncs;                 /* file/directory fsyncs not finished (cleanup_commit.c) */
};

struct cl_conn {
    struct cl_ctx *ctx;
    struct ipc_peer *ipc;
    struct cl_txn *txn;
    uint64_t serial;
    uint64_t served;            /* replies sent on it */
    char peer[32];
    struct cl_conn *next, *prev;
};

struct cl_ctx {
    struct server *srv;
    const struct config *cfg;
    char hostname[256];         /* sanitised, for Received / Message-ID */
    struct cl_conn *conns;
    uint64_t conn_serial;
    int ntxn;                   /* live transactions */
    struct event *drain_timer;
    int drain_ticks;
    /* filter client (cleanup_filter.c) */
    struct filter_clnt *fclnt;
    /* qmgr client */
    struct ipc_peer *qpeer;
    int64_t q_last_fail;
    /* commit pool */
    struct cl_pool *pool;
    /* per-tenant limits (cleanup_limit.c), one per domain block; NULL: none */
    struct cl_rate *rates;
};

/* cleanup_conn.c */
void cl_accept(struct cl_ctx *ctx, int fd);
void cl_conn_close_all(struct cl_ctx *ctx);
/* Draining: tell smtpd's idle connections (no transaction, one served) to
 * go (CLEANUP_DRAIN): smtpd closes them and opens new ones, to the new
 * cleanup. Nothing is closed here: a transaction smtpd sent before it
 * heard is still served. */
void cl_conn_drain(struct cl_ctx *ctx);
void cl_txn_filter_done(struct cl_ctx *ctx, struct cl_txn *t, const struct ipc_filter_reply *r);
void cl_txn_commit_done(struct cl_txn *t, void *arg);
void cl_txn_fail(struct cl_txn *t, enum local_status ls);
/* cleanup_auth.c is done with t (cancelled: the process is stopping). */
void cl_txn_auth_done(struct cl_ctx *ctx, struct cl_txn *t, int cancelled);

/* cleanup_limit.c: domain "X" { limits { messages_per_hour } } */
void cl_limits_init(struct cl_ctx *ctx);
void cl_limits_free(struct cl_ctx *ctx);
/* Is t a submission for a tenant already at its hourly limit (logged)? */
int  cl_limit_over(struct cl_ctx *ctx, const struct cl_txn *t);
/* t was committed: count it against its tenant's limit, if any. */
void cl_limit_count(struct cl_ctx *ctx, const struct cl_txn *t);

/* cleanup_headers.c */
void clh_start(struct cl_txn *t);
/* Feed content (already size-checked); failures become t->failed. */
void clh_content(struct cl_ctx *ctx, struct cl_txn *t, const unsigned char *p, size_t n);
/* End of content: flush a still-buffered header section. */
void clh_finish(struct cl_ctx *ctx, struct cl_txn *t);
/* Received / Message-ID / Date text (exposed for tests). */
void clh_received(buf_t *out, const struct qf_env *env, const char *hostname, time_t now);
void clh_received_spf(buf_t *out, const char *field);   /* smtpd's Received-SPF, or nothing */
/* The local variant (sendmail through pickup): "from local (uid N, user LOGIN)". */
void clh_received_local(buf_t *out, const struct qf_env *env, const char *login, uint32_t uid,
                        const char *hostname, time_t now);
void clh_date(buf_t *out, time_t now);
void clh_sanitize(buf_t *out, const char *s, size_t max, int in_comment);

/* cleanup_auth.c: DKIM verify/sign and Authentication-Results */
/* Submitted mail: SMTP AUTH, a client in mynetworks, or sendmail through
 * pickup (signed, never verified; counts against tenant limits). */
int  cl_txn_submitted(const struct cl_ctx *ctx, const struct cl_txn *t);
void cla_pre_drop(struct server *s);       /* keys and resolvers, still root */
void cla_start(struct cl_ctx *ctx);
void cla_stop(void);
/* The header section as it is emitted: From domain noted, spoofed
 * Authentication-Results dropped; the rest appended to own. What the job
 * will do is decided here; when only SPF is there to report, the
 * Authentication-Results field is composed now into ar (no job). */
void cla_headers(struct cl_ctx *ctx, struct cl_txn *t, buf_t *own, buf_t *ar,
                 const char *hdr, size_t len);
int  cla_wanted(struct cl_ctx *ctx, struct cl_txn *t);   /* the job has work */
void cla_submit(struct cl_ctx *ctx, struct cl_txn *t);   /* -> cl_txn_auth_done */
void cla_txn_free(struct cl_txn *t);
/* The k-th distinct author domain of the message's From fields (k from 0),
 * or NULL past the last one kept (t->auth.nfrom, CLA_AUTHORS_MAX). */
const char *cla_author_domain(const struct cl_txn *t, int k);
/* The loop's part once the job is done: its log lines. */
void cla_log(const struct cl_txn *t);
const char *cla_dkim_result(const struct cl_txn *t);     /* dkim.result */
void cla_dkim_domains(const struct cl_txn *t, buf_t *out);   /* dkim.domains */

/* cleanup_dmarc.c: DMARC after DKIM (in the auth worker), then its log,
 * report data and action in the loop */
struct dns_ctx;
void cld_pre_drop(const struct config *cfg);     /* the public suffix list */
void cld_evaluate(struct cl_ctx *ctx, struct cl_txn *t, struct dns_ctx *dns);
/* 1: reject the message with *rep (550 5.7.1); quarantine sets t->qname. */
int  cld_after(struct cl_ctx *ctx, struct cl_txn *t, struct cl_reply *rep);

/* cleanup_rules.c */
/* CLEANUP_MUT from smtpd (before content): remembered, noted; 0 or -1 (bad). */
int  clr_smtpd_mut(struct cl_txn *t, const struct ipc_cleanup_mut *m);
int  clr_has_header_muts(const struct filter_muts *l);
/* Header section hdr (our Received first) with the header mutations of l
 * applied, into out. Pure (the commit pool calls it too). */
void clr_apply_headers(buf_t *out, const char *hdr, size_t len, const struct filter_muts *l);
/* The data verdict's mutations: envelope changed in memory, notes added;
 * sets t->rewrite when the file must be rewritten, t->qname for quarantine.
 * Returns 0, or -1 when no recipient is left (message dropped). */
int  clr_apply_data(struct cl_txn *t, enum verdict v, const char *rule);
/* Commit pool: rewrite t's file with t->env and t->dmuts' header mutations
 * (new tmp file replaces t->path / t->fd). 0, or -1 with t->cerr/cwhere. */
int  clr_rewrite(struct cl_txn *t);

/* cleanup_filter.c: the asynchronous data-stage client */
int  clf_data_wanted(struct cl_ctx *ctx);   /* data stage has rules (or unknown) */
int  clf_ask(struct cl_ctx *ctx, struct cl_txn *t);
void clf_cancel(struct cl_ctx *ctx, struct cl_txn *t);
void clf_close(struct cl_ctx *ctx);

/* cleanup_qmgr.c */
void clq_wakeup(struct cl_ctx *ctx, const char *qid);
void clq_close(struct cl_ctx *ctx);

/* cleanup_recycle.c: t's file in tmp/ (t->path, t->old_size): a recycled
 * inode, tmp/.free-* left by qmgr, when one is known, else a new tmp/ID; the
 * fd (O_WRONLY; a recycled file's old bytes are still there up to old_size)
 * or -1 with errno. A recycled name is t's until cl_tmp_release(t) (when t
 * is dropped): no scan hands it out again meanwhile. */
int  cl_tmp_create(struct cl_txn *t);
void cl_tmp_release(struct cl_txn *t);
/* A recycled file was overwritten from offset 0: cut what is left of the
 * old content past the new end (the file must end at END). 0 or -1. */
int  cl_tmp_trim(struct cl_txn *t, off_t end);
/* Rewrites (commit pool, auth workers): t's file opened for reading with
 * its content located (fd, or -1 with errno); a new file beside it,
 * tmp/ID<suffix> (fd or -1); and that file replacing t's (ok) or removed. */
int  cl_tmp_content(const struct cl_txn *t, off_t *off_r, uint64_t *len_r);
int  cl_tmp_side_open(const struct cl_txn *t, const char *suffix, char *path, size_t size);
void cl_tmp_side_done(struct cl_txn *t, int nfd, const char *npath, int ok);

/* cleanup_commit.c. names_with_file: fsync(file) also makes the name in
 * incoming/ durable (fs_fsync_covers_name(): no directory syncer). */
struct cl_pool *clc_start(struct event_base *base, int nthreads, int names_with_file,
                          void (*done)(struct cl_txn *t, void *arg), void *arg);
void clc_submit(struct cl_pool *p, struct cl_txn *t);
/* cleanup_auth.c's straight-to-commit jobs: the loop counts one in flight
 * when it submits it (expect), and takes it back if the worker did not go
 * on to the commit (unexpect); the worker commits with clc_run_here, and
 * the completion comes as for clc_submit. */
void clc_expect(struct cl_pool *p);
void clc_unexpect(struct cl_pool *p);
void clc_run_here(struct cl_pool *p, struct cl_txn *t);
int  clc_inflight(struct cl_pool *p);
void clc_stop(struct cl_pool *p);

#endif
