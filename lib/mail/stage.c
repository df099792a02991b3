/*
 * stage.c - names of stages and statuses, and the status -> reply table.
 * The one place default SMTP replies for policy outcomes are defined.
 */
#include <string.h>
#include "mail/stage.h"

static const char *stage_names[STAGE__COUNT] = {
    "connect", "helo", "auth", "mail", "rcpt", "data", "postq", "deliver"
};

static const char *verdict_names[V__COUNT] = {
    "next", "accept", "faccept", "reject", "deny", "defer", "quarantine", "tempfail"
};

/* Defaults per status; REJECT/DENY at RCPT name the recipient's refusal. */
static const struct verdict_reply replies[V__COUNT] = {
    [V_NEXT]       = { 250, "2.0.0", "Ok" },
    [V_ACCEPT]     = { 250, "2.0.0", "Ok" },
    [V_FACCEPT]    = { 250, "2.0.0", "Ok" },
    [V_REJECT]     = { 550, "5.7.1", "Rejected by policy" },
    [V_DENY]       = { 554, "5.7.1", "Transaction denied by policy" },
    [V_DEFER]      = { 451, "4.7.1", "Try again later" },
    [V_QUARANTINE] = { 250, "2.0.0", "Ok" },
    [V_TEMPFAIL]   = { 451, "4.3.0", "Temporary local problem, try again later" },
};

static const struct verdict_reply rcpt_reject = { 550, "5.7.1", "Recipient rejected by policy" };
static const struct verdict_reply connect_deny = { 554, "5.7.1", "Connection refused by policy" };

const char *stage_name(enum stage s)
{
    return (unsigned)s < STAGE__COUNT ? stage_names[s] : "unknown";
}

int stage_parse(const char *name, enum stage *s_r)
{
    for (int i = 0; i < STAGE__COUNT; i++) {
        if (strcmp(name, stage_names[i]) == 0) {
            *s_r = (enum stage)i;
            return 0;
        }
    }
    return -1;
}

const char *verdict_name(enum verdict v)
{
    return (unsigned)v < V__COUNT ? verdict_names[v] : "unknown";
}

const struct verdict_reply *verdict_default(enum verdict v, enum stage s)
{
    if ((unsigned)v >= V__COUNT)
        v = V_TEMPFAIL;
    if (v == V_REJECT && s == STAGE_RCPT)
        return &rcpt_reject;
    if ((v == V_DENY || v == V_REJECT) && s == STAGE_CONNECT)
        return &connect_deny;
    return &replies[v];
}
