/*
 * filter_clnt.h - the one client of the filter daemon, driven by a libevent
 * loop: smtpd (every pre-queue stage), cleanup (data) and qmgr (postq,
 * deliver) each hold one.
 *
 * It owns the connection to private/filter (a struct ipc_peer, ipc_bev.h)
 * and the protocol: HELLO, then FILTER_STAGES {mask, generation} (again
 * after every rules reload), then FILTER_REQ answered by FILTER_REPLY and
 * its FILTER_REPLY.nmut FILTER_MUT (assembled by a filter_rx,
 * filter_mut.h), matched to the request by FILTER_REQ.id. Requests wait in
 * a queue; each must be answered within reply_ms, and filter's HELLO and
 * first FILTER_STAGES within hello_ms of a connect (master holds the
 * socket, so a connect succeeds while filter is down), else the connection
 * is dropped. After any failure every waiting request is answered "no
 * verdict" and the client reconnects by itself with exponential backoff.
 * Until a HELLO arrives again, new requests fail at once (the caller
 * answers with its default policy or a temporary failure); a fresh
 * connection's first requests wait behind its handshake.
 *
 * The last FILTER_STAGES stays known while filter is away, so a stage it
 * said has no rules never waits for filter (HACKING.md "Policy without
 * rules"); before the first one every stage counts as having rules.
 * Callers with no rules file configured create no client at all.
 *
 * Must never: trust the reply (an id that matches no request, a wrong
 * message or a bad mutation drops the connection; strings are copied
 * bounded, filter_mut.c), call back for a cancelled request, or keep a
 * request past its deadline. Not thread-safe: one loop.
 */
#ifndef POSTERN_FILTER_CLNT_H
#define POSTERN_FILTER_CLNT_H

#include <stdint.h>
#include "filter/filter_mut.h"
#include "ipc/ipc.h"
#include "mail/stage.h"

struct event_base;
struct filter_clnt;

struct filter_clnt_conf {
    const char *path;           /* NULL = private/filter (spool-relative) */
    int hello_ms;               /* HELLO + first FILTER_STAGES after a connect */
    int reply_ms;               /* one request's answer */
    int backoff_min_ms;         /* reconnect delays: doubling from min to max */
    int backoff_max_ms;         /* (0: 100 ms and 10 s) */
};

struct filter_clnt_ops {
    /* The answer to request id (req_arg as given to filter_clnt_ask): v is
     * the verdict (the callee may change it: it is freed on return); NULL when
     * none will come (the connection failed or timed out). Never called
     * for a cancelled request nor from inside filter_clnt_ask. */
    void (*on_verdict)(uint64_t id, void *req_arg, struct filter_verdict *v, void *arg);
    /* Optional: a FILTER_STAGES; first = the first on this connection
     * (the client is ready: filter_clnt_ready). */
    void (*on_stages)(uint32_t mask, uint32_t generation, int first, void *arg);
    /* Optional: the connection failed; why is for the log. Called once
     * per failure, before the waiting requests hear on_verdict(NULL)
     * (filter_clnt_pending still counts them). */
    void (*on_down)(const char *why, void *arg);
    /* Optional: filter's HELLO arrived; back = after a failure. */
    void (*on_up)(int back, void *arg);
};

/* Connects at once (a failure is reported through on_down, then retried). */
struct filter_clnt *filter_clnt_new(struct event_base *base, const struct filter_clnt_conf *conf,
                                    const struct filter_clnt_ops *ops, void *arg);
/* Close; waiting requests are dropped without a callback. NULL is ignored.
 * Not from inside one of c's callbacks. */
void filter_clnt_free(struct filter_clnt *c);
/* No more reconnecting (the process is stopping); requests still work. */
void filter_clnt_stop_redial(struct filter_clnt *c);

/* Send a request: req->id is assigned here. 0 = on its way (on_verdict
 * follows, later); -1 = filter unavailable or the request cannot be
 * encoded (logged): no callback. */
int  filter_clnt_ask(struct filter_clnt *c, struct ipc_filter_req *req, void *req_arg);
/* Forget request id: its reply, when it comes, is dropped. */
void filter_clnt_cancel(struct filter_clnt *c, uint64_t id);
/* Another message (FILTER_END) when filter said HELLO: 0, or -1 (not sent). */
int  filter_clnt_send(struct filter_clnt *c, enum ipc_type t, const void *msg);

/* Does stage s have rules (bit s of the last FILTER_STAGES, kept while
 * filter is away)? 1 before the first FILTER_STAGES. */
int  filter_clnt_stage_rules(const struct filter_clnt *c, enum stage s);
int  filter_clnt_have_stages(const struct filter_clnt *c);
uint32_t filter_clnt_generation(const struct filter_clnt *c);
/* HELLO and a FILTER_STAGES arrived on the current connection. */
int  filter_clnt_ready(const struct filter_clnt *c);
/* Connected, the handshake still on its way. */
int  filter_clnt_connecting(const struct filter_clnt *c);
/* A connection failed and no HELLO came since: requests fail at once. */
int  filter_clnt_failing(const struct filter_clnt *c);
int  filter_clnt_pending(const struct filter_clnt *c);     /* requests waiting */

/* A request with every string "" (fill in what you know). */
void filter_req_init(struct ipc_filter_req *req, enum stage stage);

#endif
