/*
 * qmgr.h - internals of the queue manager shared by its files:
 *   qmgr.c         main, wakeup listener, timers, drain on stop
 *   qmgr_scan.c    start-up recovery of active/, scans of incoming/, deferred/
 *   qmgr_active.c  messages in memory: load, outcomes, durable finish
 *   qmgr_deliver.c delivery agent connection pool and dispatch
 *   qmgr_dest.c    destinations: per-destination job queues, concurrency
 *                  and rate limits, round-robin order
 *   qmgr_defer.c   retry schedule, lifetime, move to deferred/
 *   qmgr_bounce.c  delivery status notifications (bounces, delay warnings,
 *                  success reports) queued before outcomes are recorded
 *   qmgr_filter.c  the connection to filter: postq/deliver verdicts (async)
 *   qmgr_route.c   which agent and next hop each recipient gets
 *   qmgr_rules.c   applying verdicts and mutations: bounce, defer, quarantine,
 *                  queue file rewrite, per-recipient delivery choices
 *
 * One process, one libevent loop, a singleton (master starts a replacement
 * only after the old one exited). qmgr never delivers mail itself and
 * never forgets an outcome before it is on disk.
 */
#ifndef POSTERN_QMGR_H
#define POSTERN_QMGR_H

#include <stdint.h>
#include "config/config.h"
#include "filter/filter_mut.h"
#include "mail/qfile.h"
#include "mail/spool.h"
#include "mail/stage.h"

/* The active queue (messages in memory, each with its open queue file) is
 * bounded by limits.active_queue messages (at most the fd limit less
 * QMGR_FD_RESERVE) and QMGR_ACTIVE_RCPTS recipients; the rest stays in
 * incoming/ and deferred/ on disk (the spool is the truth) and is taken by
 * a later scan as messages finish. */
#define QMGR_ACTIVE_RCPTS  200000
#define QMGR_FD_RESERVE    256
#define QMGR_SCAN_SECS     5     /* periodic rescan of incoming/ */
#define QMGR_FULLSCAN_SECS 60    /* deferred/ rescanned at least this often */
#define QMGR_AGENT_BACKOFF 2     /* seconds before retrying after an agent died */
#define QMGR_AGENT_TIMEOUT 900   /* seconds one request may take */
#define QMGR_DRAIN_SECS    10    /* wait for in-flight replies on stop */
#define QMGR_FILTER_TIMEOUT 120  /* seconds filter may take for one verdict */
#define QMGR_FILTER_CONNECT 30   /* seconds to wait for filter's HELLO + stages */
#define QMGR_FILTER_BACKOFF 5    /* retry a message this soon after filter failed */

/* Where a message is in its activation. */
enum qphase { QP_POSTQ = 0, QP_DELIVER, QP_ROUTE };

/* A delivery choice made at the deliver stage for one recipient. */
enum qroute_kind { QR_DEFAULT = 0, QR_MAILDIR, QR_MBOX, QR_DISCARD, QR_RELAY, QR_FORWARD,
                   QR_LMTP, QR_TRANSPORT };
struct qroute {
    uint8_t kind;               /* enum qroute_kind */
    char rule[64];              /* rule/action that chose it */
    char arg[256];              /* forward host / lmtp address / transport name */
};

/* Where one routed recipient goes (qmgr_route.c), resolved once per
 * activation: its agent pool and DELIVER_RCPT.nexthop. */
struct qhop {
    int pool;                   /* QPOOL_* */
    char *nexthop;              /* NULL = "" (the common case: nothing allocated) */
};

struct qmsg {
    char id[QUEUE_ID_MAX];
    int fd;                     /* active/ID, read-write */
    struct qf_env env;
    uint32_t *idx; int nidx;    /* recipients handed to the agent */
    struct qhop *hops;          /* per idx entry: where it goes */
    unsigned char *got;         /* per idx entry: outcome received */
    unsigned char *dirty;       /* per recipient: to write back */
    int64_t retry_at;           /* 0, or the earliest next try (agent died) */
    enum qphase phase;
    struct qroute *routes;      /* per recipient, NULL = all default */
    struct qmsg *hnext;         /* hash chain */
    int njobs;                  /* delivery jobs queued or in flight (qmgr_deliver.c) */
    int ncounted;               /* recipients counted in the active queue's bound */
};

/* One delivery request: recipients of m (positions in m->idx) for one
 * agent pool and destination. */
struct qjob {
    struct qmsg *m;
    int pool;
    struct qdest *d;
    int *pos; int n;
    struct qjob *next;          /* its destination's queue */
};

/* A destination (next hop: deliver_nexthop) of one agent pool. Jobs wait
 * in its queue (not deferred) while busy >= limit or the rate says not yet. */
struct qdest {
    char *name;
    int pool;
    int busy;                   /* jobs in flight */
    int limit;                  /* at most this many in flight */
    int64_t gap_ms;             /* rate: ms between two dispatches, 0 = none */
    int64_t next_ms;            /* rate: no dispatch before (clock_now_ms) */
    struct qjob *head, *tail;
    struct qdest *hnext;        /* hash chain */
    struct qdest *wnext, *wprev;/* the pool's list of destinations with jobs */
};

struct qmgr {
    struct server *srv;
    const struct config *cfg;
    struct event_base *base;
    int stopping;
    int more;                   /* a scan stopped at QMGR_ACTIVE_MAX */
    int64_t deferred_due;       /* earliest known next try in deferred/ (0 = unknown) */
    int64_t last_fullscan;
};

extern struct qmgr *qmgr_g;

/* qmgr.c */
void qmgr_wake_at(int64_t when);     /* rescan deferred/ at (or after) when */
void qmgr_drained(void);             /* called when nothing is in flight any more */
int64_t qmgr_now(void);

/* qmgr_scan.c */
void qmgr_scan_recover(void);
void qmgr_scan_incoming(void);
void qmgr_scan_deferred(int flush);

/* qmgr_active.c: 1 started or nothing to do, 0 = memory full (try later). */
int  qmgr_active_start(const char *dir, const char *id);
int  qmgr_active_has(const char *id);
int  qmgr_active_count(void);
/* Record one recipient's outcome in memory and log it. attempt = count it
 * as a delivery attempt (not when an agent died under us). */
void qmgr_active_outcome(struct qmsg *m, uint32_t index, unsigned status, const char *dsn,
                         const char *reason, const char *relay, int attempt);
/* Write outcomes to the queue file, then unlink or move to deferred/; frees m. */
void qmgr_active_finish(struct qmsg *m);
/* Position of rcpt index in m->idx, or -1. */
int  qmgr_active_idx(const struct qmsg *m, uint32_t index);

/* Go on with m after its filter phase (or waiting for filter) ended. */
void qmgr_active_advance(struct qmsg *m);
/* Forget m without touching its file (it was moved away: quarantine). */
void qmgr_active_drop(struct qmsg *m);
/* Re-read active/ID after the file was replaced; -1 = m is gone (logged). */
int  qmgr_active_reload(struct qmsg *m);
/* Defer every pending recipient (dsn, reason) and finish the message.
 * attempt: count it as a delivery attempt. retry: earliest next try, 0 = schedule. */
void qmgr_active_defer_all(struct qmsg *m, const char *dsn, const char *reason,
                           int attempt, int64_t retry);
/* The relay label for a recipient's log line: "local", "local (maildir)". */
const char *qmgr_active_relay(const struct qmsg *m, uint32_t index);
/* Log one outcome line for recipient index with a reason other than the stored one. */
void qmgr_active_log(const struct qmsg *m, uint32_t index, const char *relay, const char *word,
                     const char *reason);

/* qmgr_filter.c: 1 = stage s has rules, 0 = it has none, -1 = not known yet
 * (not connected): call qmgr_filter_wait(m), qmgr_active_advance(m) follows. */
int  qmgr_filter_need(enum stage s);
void qmgr_filter_wait(struct qmsg *m);
/* Ask filter about m at stage s; qmgr_rules_verdict(m, s, v or NULL) follows
 * (NULL = filter failed: treat as a temporary failure). */
void qmgr_filter_ask(struct qmsg *m, enum stage s);
void qmgr_filter_stop(void);

/* qmgr_rules.c */
void qmgr_rules_verdict(struct qmsg *m, enum stage s, struct filter_verdict *v);
/* Should the postq stage run for m (not done before, not released from quarantine)? */
int  qmgr_rules_postq_due(const struct qmsg *m);

/* qmgr_dest.c (pool: an index below QMGR_POOLS) */
#define QMGR_POOLS 8
struct qdest *qmgr_dest_get(int pool, const char *name, int limit, int64_t gap_ms);
struct qdest *qmgr_dest_find(int pool, const char *name);
/* Free the idle destinations kept for their rate gap once it has passed.
 * From a timer only: never while a caller holds destinations it got. */
void qmgr_dest_sweep(void);
void qmgr_dest_push(struct qdest *d, struct qjob *j);
/* Can d start one more job now (concurrency and rate)? */
int  qmgr_dest_open(const struct qdest *d, int64_t now_ms);
/* Take d's first job to start it: busy++, d goes to the end of the list. */
struct qjob *qmgr_dest_pop(struct qdest *d, int64_t now_ms);
/* Drop d's first job without starting it (qmgr stops). */
struct qjob *qmgr_dest_drop(struct qdest *d);
/* A job of d ended: busy--; d may be freed. */
void qmgr_dest_done(struct qdest *d);
struct qdest *qmgr_dest_waiting(int pool);  /* first with jobs, NULL = none */
int  qmgr_dest_nwaiting(int pool);
/* Move d (with jobs) to the end of its pool's list: round robin. */
void qmgr_dest_rotate(struct qdest *d);

/* qmgr_route.c: the agents (qmgr_deliver.c's pools) and their next hops */
enum { QPOOL_LOCAL, QPOOL_SMTP, QPOOL_PIPE, QPOOL__COUNT };
#define QMGR_NEXTHOP_MAX 300
/* Resolve recipient index into *h (the deliver stage's choice, else the
 * default). 1 = routed; 0 = the choice cannot be used: the recipient was
 * deferred (4.3.5, reason logged) and *h is untouched. */
int  qmgr_route_resolve(struct qmsg *m, uint32_t index, struct qhop *h);
/* DELIVER_RCPT.nexthop of a resolved hop ("" when none). */
static inline const char *qmgr_hop_nexthop(const struct qhop *h)
{
    return h->nexthop ? h->nexthop : "";
}
/* Free the hops of m's routed recipients. */
void qmgr_route_free(struct qmsg *m);

/* qmgr_deliver.c */
void qmgr_deliver_submit(struct qmsg *m);
int  qmgr_deliver_busy(void);        /* requests in flight */
void qmgr_deliver_stop(void);        /* close idle connections, dispatch no more */

/* qmgr_bounce.c: queue the reports m's outcomes of this pass call for
 * (failed, delivered with NOTIFY=SUCCESS, delayed past delivery.delay_warning),
 * each committed to incoming/ before the caller records anything. A failure
 * report that could not be queued turns its recipients back to deferred.
 * 0, or -1 when a report was not queued (logged). */
int  qmgr_bounce_reports(struct qmsg *m, int64_t now);

/* qmgr_defer.c */
int64_t qmgr_defer_next(const struct config *cfg, const struct qf_env *env, int64_t now);
int  qmgr_defer_expired(const struct config *cfg, const struct qf_env *env, int64_t now);
/* fsync'ed fd: set mtime = when and rename active/ID -> deferred/ID. 0 or -1. */
int  qmgr_defer_move(const char *id, int fd, int64_t when);
int  qmgr_rcpt_done(unsigned status);

#endif
