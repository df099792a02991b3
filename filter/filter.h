/*
 * filter.h - internals shared by the filter sources (not a public header).
 *
 * filter.c: main, the connections on private/filter (HELLO, FILTER_STAGES,
 * FILTER_REQ -> FILTER_REPLY + FILTER_MUT x nmut, FILTER_END), start-up
 * compilation and the in-place reload on SIGHUP.
 * filter_eval.c: per-session rule contexts (a table keyed by
 * FILTER_REQ.session), evaluation jobs and the worker-thread pool that runs
 * rl_eval off the event loop (services may take seconds; the pool grows so
 * a slow one never delays another session), results posted back through an
 * eventfd; every evaluation ends by its deadline (limits.rules_timeout:
 * 451 4.4.3). filter_policy.c: the default policy.
 *
 * Everything but the body of a job's evaluation runs in the loop thread:
 * session table, reference counts, connections. A worker touches only its
 * job (request copy, result) and the job's rl_txn, which no one else uses
 * while the job runs (one job at a time per session; later requests of a
 * busy session wait in its queue).
 */
#ifndef POSTERN_FILTER_H
#define POSTERN_FILTER_H

#include <stdint.h>
#include "config/config.h"
#include "ipc/ipc.h"
#include "rules/rules.h"
#include "daemon/server.h"

#define FILTER_WORKERS     4         /* rules worker threads always there */
#define FILTER_WORKERS_MAX 128       /* more start while jobs would wait for a busy one */
#define FILTER_IDLE_EXIT   10        /* seconds: an extra worker without work leaves */
#define FILTER_MAX_SESSIONS 100000   /* beyond: the oldest idle context is evicted */

struct ipc_peer;
struct evconnlistener;
struct fsess;
struct fpool;

/* A compiled program shared by the jobs that use it (loop-thread refcount). */
struct fprog {
    struct rl_program *p;      /* NULL = no rules file: default policy only */
    int refs;
};

struct fconn {
    struct fctx *ctx;
    struct ipc_peer *ipc;      /* NULL once closed (jobs still running) */
    int closed;
    int njobs;                 /* jobs of this connection not finished */
    char peer[32];
    struct fsess *sessions;    /* contexts this connection created */
    struct fconn *next, *prev;
};

struct fctx {
    struct server *srv;
    struct config *cfg;        /* current (reload swaps it) */
    struct evconnlistener *lis;
    struct fconn *conns;
    uint64_t serial;
    struct fprog *prog;        /* current program */
    uint32_t mask, generation; /* FILTER_STAGES */
    struct fpool *pool;        /* the threads running rl_eval (filter_eval.c) */
};

/* filter.c */
/* Send FILTER_REPLY + its mutations for one finished job. */
void filter_send_reply(struct fconn *c, uint64_t id, enum verdict st, int code, const char *enh,
                       const char *text, const char *rule, const struct rl_result *res,
                       const char *qname);
void fconn_release(struct fconn *c);     /* a job finished: free a closed connection */

/* filter_eval.c */
void fe_init(struct fctx *ctx);
/* filter_local.c: the default policy's local-recipient check (at start and reload). */
void filter_local_init(const struct config *cfg);
void fe_request(struct fconn *c, const struct ipc_filter_req *q);
void fe_session_end(struct fconn *c, uint64_t session);
void fe_conn_closed(struct fconn *c);    /* forget the contexts it created */
void fe_shutdown(struct fctx *ctx);
void fprog_unref(struct fprog *p);
uint32_t fprog_mask(const struct fprog *p);

#endif
