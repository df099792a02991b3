/*
 * filter_policy.h - the verdict for one FILTER_REQ, as one function.
 *
 * Until the rule language lands, policy_decide() is the default policy of
 * HACKING.md "Policy without rules"; the rules VM will replace its body and
 * keep this interface. Pure: no I/O, the only state is the configuration
 * set with policy_init().
 */
#ifndef POSTERN_FILTER_POLICY_H
#define POSTERN_FILTER_POLICY_H

#include "config.h"
#include "ipc.h"
#include "stage.h"

struct verdict_out {
    enum verdict status;
    int code;                   /* 0 = the status's default */
    char enhanced[16];          /* "" = default */
    char text[256];             /* "" = default */
    char rule[64];              /* "" = default policy */
};

void policy_init(const struct config *cfg);
void policy_decide(const struct ipc_filter_req *req, struct verdict_out *out);

/* Pieces of the default policy (exposed for tests). */
int policy_rcpt_is_local(const struct config *cfg, const char *rcpt);
int policy_client_trusted(const struct config *cfg, const char *ip, const char *auth_user);

#endif
