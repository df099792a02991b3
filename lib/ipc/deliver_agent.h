/*
 * deliver_agent.h - the agent side of qmgr's DELIVER protocol, shared by the
 * blocking delivery agents (delivery/: local, smtp/: remote). An agent serves
 * one qmgr connection at a time: HELLO, then DELIVER_REQ + DELIVER_RCPT×n,
 * answered with DELIVER_STATUS×n and DELIVER_DONE (which may name a
 * destination the agent keeps a connection open to: held, held_ms).
 */
#ifndef POSTERN_DELIVER_AGENT_H
#define POSTERN_DELIVER_AGENT_H

#include <stdint.h>
#include "daemon/server.h"
#include "ipc/ipc.h"
#include "mail/qfile.h"

/* Serve one DELIVER_REQ (already received in m); -1 drops the connection. */
typedef int (*deliver_req_fn)(struct server *s, struct ipc_conn *c, union ipc_msg *m);

/* The agent's life after server_init: SIGTERM/SIGINT ask it to stop (no
 * SA_RESTART: blocking calls return EINTR), SIGPIPE is ignored, then qmgr's
 * connections on the listening socket `sockname` (POSTERN_FDS) are accepted
 * and served one at a time until a stop. */
void deliver_agent_run(struct server *s, const char *sockname, deliver_req_fn req);

/* Queue one recipient's DELIVER_STATUS. A reason that cannot be encoded
 * (EMSGSIZE) goes out short with the same outcome: the mail may already be
 * delivered, never turn that into a retry. 0, or -1: the link is unusable. */
int deliver_agent_status(struct ipc_conn *c, uint32_t index, uint32_t status,
                         const char *dsn, const char *reason);

/* Queue DELIVER_DONE for n recipients and flush everything. 0 or -1. */
int deliver_agent_done(struct ipc_conn *c, uint32_t n);
/* The same, telling qmgr that a connection to destination held (a
 * deliver_nexthop key, "" = none) stays open for held_ms idle ms. */
int deliver_agent_done_held(struct ipc_conn *c, uint32_t n, const char *held,
                            uint32_t held_ms);

/* Called before every wait for qmgr (between requests): the agent may
 * close what it keeps open (idle connections). Returns the longest the
 * wait may last in ms (<= 0: the default, 1 s). */
typedef int (*deliver_idle_fn)(void);
void deliver_agent_set_idle(deliver_idle_fn fn);

/* How long one request may take before what is left of it is deferred:
 * the agents' answer to qmgr's QMGR_AGENT_TIMEOUT (after which qmgr may
 * hand the request out again). dflt_ms, or less when the environment has
 * POSTERN_TEST_REQUEST_BUDGET_MS (for tests: it can only shorten it). */
int64_t deliver_agent_budget_ms(int64_t dflt_ms);

/* The destination a remote recipient's mail is scheduled under, shared by
 * qmgr (per-destination concurrency, connection reuse) and the smtp agent
 * (its connection cache): delivery.relayhost when set, else the address's
 * domain in lower case ("" without one). */
void deliver_nexthop(const struct config *cfg, const char *addr, char *out, size_t size);

/* One DELIVER_REQ with its recipients, the strings copied out of the frames. */
struct deliver_req {
    char *queue_id, *path, *transport;
    uint32_t n;
    struct deliver_req_rcpt { uint32_t index; char *nexthop; } *rcpt;
};
/* Take the DELIVER_REQ in m and read its n DELIVER_RCPT. 0, or -1: a
 * protocol error (logged; drop the connection; nothing to free). */
int  deliver_agent_read(struct ipc_conn *c, const union ipc_msg *m, struct deliver_req *r);
void deliver_req_free(struct deliver_req *r);

/* How an agent parses its opened queue file (NULL: qf_read): 0, or -1
 * with err set. arg is deliver_agent_open's. */
typedef int (*deliver_parse_fn)(int fd, struct qf_env *env, void *arg, char *err,
                                size_t errlen);

/* Open and parse request r's queue file, which must be active/<its valid
 * queue id> holding that id, for an agent serving `transport`: fd
 * (read-only), or -1 with err set, env empty and *dsn_r the enhanced code
 * to defer with: 4.3.5 for a request this agent cannot serve (bad path,
 * another transport), 4.3.0 for a file it cannot open or read. */
int  deliver_agent_open(const struct deliver_req *r, const char *transport,
                        deliver_parse_fn parse, void *arg, struct qf_env *env,
                        const char **dsn_r, char *err, size_t errlen);
/* A request's file work is over: close fd (if >= 0), free env and r, and
 * log lines name no queue id again. */
void deliver_agent_end(int fd, struct qf_env *env, struct deliver_req *r);

#endif
