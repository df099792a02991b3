/*
 * filter_policy.h - the default policy (HACKING.md "Policy without rules"):
 * the verdict for one FILTER_REQ when no rule decided.
 *
 * One implementation for two users: filter (a rcpt for which the rules said
 * next) and smtpd (the stages without rules while filter is unavailable,
 * and every stage when no rules file is configured). Pure: no I/O, the only
 * state is the configuration set with policy_init().
 */
#ifndef POSTERN_FILTER_POLICY_H
#define POSTERN_FILTER_POLICY_H

#include "config/config.h"
#include "ipc/ipc.h"
#include "mail/stage.h"
#include "util/buf.h"

struct verdict_out {
    enum verdict status;
    int code;                   /* 0 = the status's default */
    char enhanced[16];          /* "" = default */
    char text[256];             /* "" = default */
    char rule[64];              /* "" = default policy */
};

void policy_init(const struct config *cfg);
/* Is a recipient at a local domain someone we deliver to (lib/local/
 * local_rcpt.h)? 1 yes, 0 no (550 5.1.1), -1 temporary failure (451 4.3.0).
 * A process with a synchronous check sets it (filter: directly, in its
 * worker threads); unset = every local recipient is known (smtpd asks its
 * helper asynchronously through policy_local_query instead). */
typedef int policy_local_fn(const char *addr);
void policy_set_local_check(policy_local_fn *fn);
/* For a process whose local check answers later (smtpd, from its event
 * loop): 1 when the verdict for (st, rcpt) is a local recipient's, hanging
 * on the local check: addr_r is the address to ask; then
 * policy_local_verdict() gives the verdict for the answer (1, 0, -1, as
 * policy_local_fn). 0: policy_decide_stage() answers at once. */
int policy_local_query(enum stage st, const char *rcpt, buf_t *addr_r);
void policy_local_verdict(int known, struct verdict_out *out);
void policy_decide(const struct ipc_filter_req *req, struct verdict_out *out);
/* The same from the pieces smtpd knows (rcpt: only at STAGE_RCPT). */
void policy_decide_stage(enum stage st, const char *rcpt, const char *client_ip,
                         const char *auth_user, struct verdict_out *out);

/* Pieces of the default policy (exposed for tests). */
int policy_rcpt_is_local(const struct config *cfg, const char *rcpt);
int policy_client_trusted(const struct config *cfg, const char *ip, const char *auth_user);

#endif
