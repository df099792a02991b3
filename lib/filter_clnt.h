/*
 * filter_clnt.h - a small blocking client for the filter daemon.
 *
 * For callers that can block (a worker thread, qmgr helpers, the CLI): one
 * connection to private/filter, HELLO once (filter answers HELLO, then
 * FILTER_STAGES), then ask() sends one FILTER_REQ and waits for the
 * FILTER_REPLY with the same id and the FILTER_REPLY.nmut FILTER_MUT
 * messages that follow it. FILTER_STAGES messages (sent again by filter
 * after each rules reload) may arrive at any point between replies: they
 * only update the stage mask. Event-loop daemons (smtpd, cleanup, qmgr)
 * multiplex their own connection instead (struct ipc_peer, ipc_bev.h, with
 * a struct filter_rx, filter_mut.h). Not thread-safe: one handle per thread.
 * Every string of the reply is copied (bounded, control bytes turned into
 * '?') into the caller's struct, so it outlives the next call.
 */
#ifndef POSTERN_FILTER_CLNT_H
#define POSTERN_FILTER_CLNT_H

#include <stdint.h>
#include "filter_mut.h"
#include "ipc.h"
#include "stage.h"

#define FILTER_CLNT_MAX_MUTS FILTER_MAX_REPLY_MUTS   /* more in one reply: protocol error */

struct filter_clnt;

/* struct filter_verdict and filter_verdict_free: filter_mut.h */

/* Connect to path (NULL = private/filter, spool-relative), say HELLO and
 * read filter's first FILTER_STAGES. NULL on failure (logged). */
struct filter_clnt *filter_clnt_open(const char *path);
/* Ask for a verdict: req->id is assigned here. v is overwritten (call
 * filter_verdict_free on it after each ask, also after a failure). 0 ok; -1
 * when the filter could not answer (v->status = V_TEMPFAIL, no mutations;
 * the handle is then dead: close it). */
int  filter_clnt_ask(struct filter_clnt *c, struct ipc_filter_req *req, struct filter_verdict *v);
/* Does stage s have rules (bit s of the last FILTER_STAGES)? Without rules a
 * post-queue stage answers V_NEXT with no mutations, so callers may skip
 * the request. Generation counts filter's successful reloads. */
int  filter_clnt_stage_on(const struct filter_clnt *c, enum stage s);
uint32_t filter_clnt_generation(const struct filter_clnt *c);
void filter_clnt_close(struct filter_clnt *c);
/* A request with every string "" (fill in what you know). */
void filter_req_init(struct ipc_filter_req *req, enum stage stage);

#endif
