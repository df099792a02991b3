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
 * Each process sets how it asks (smtpd: its helper outside the jail;
 * filter: directly); unset = every local recipient is known. */
typedef int policy_local_fn(const char *addr);
void policy_set_local_check(policy_local_fn *fn);
void policy_decide(const struct ipc_filter_req *req, struct verdict_out *out);
/* The same from the pieces smtpd knows (rcpt: only at STAGE_RCPT). */
void policy_decide_stage(enum stage st, const char *rcpt, const char *client_ip,
                         const char *auth_user, struct verdict_out *out);

/* Pieces of the default policy (exposed for tests). */
int policy_rcpt_is_local(const struct config *cfg, const char *rcpt);
int policy_client_trusted(const struct config *cfg, const char *ip, const char *auth_user);

#endif
