/*
 * cleanup_dmarc.c - DMARC (lib/dmarc) for cleanup, in two halves around
 * cleanup_auth.c's job:
 *  - cld_evaluate, in the auth worker thread right after DKIM: the From
 *    domain (cleanup_auth.c noted it while the header section went out),
 *    smtpd's SPF result and the DKIM results give the outcome, through the
 *    worker's own blocking lib/dns context (lookups bounded by dns.timeout,
 *    the whole by CLD_OVERALL_MS). It fills the auth slots the
 *    Authentication-Results field and the rules read. No logging here.
 *  - cld_after, in the loop once the job is done: one log line, one line of
 *    aggregate-report data (SPOOL_DMARC_RECORDS), and the action of
 *    authentication.dmarc_failure for a failing message whose policy asks
 *    it: quarantine into quarantine/dmarc/ (a quarantine mutation, as the
 *    rules make it), or reject (550 5.7.1 at end of
 *    data). temperror, permerror and none never lead to either.
 * Only mail from outside is evaluated (cla_wanted: not for submissions).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "dmarc/dmarc.h"
#include "util/clock.h"
#include "util/log.h"

#define CLD_OVERALL_MS   15000
#define DMARC_QUARANTINE "dmarc"          /* quarantine/dmarc/ */

void cld_pre_drop(const struct config *cfg)
{
    if (cfg->authentication_dmarc)
        dmarc_init(NULL);                  /* the public suffix list, outside the jail */
}

/* What we do with the message: authentication.dmarc_failure caps what the
 * policy (after pct=) asks of a failing message. */
static enum dmarc_policy disposition(const struct config *cfg, const struct dmarc_outcome *o)
{
    if (o->result != DMARC_R_FAIL || cfg->authentication_dmarc_failure == DMF_NONE)
        return DMARC_P_NONE;
    if (cfg->authentication_dmarc_failure == DMF_QUARANTINE && o->policy == DMARC_P_REJECT)
        return DMARC_P_QUARANTINE;
    return o->policy;
}

/* How bad an outcome is, to pick the one that speaks for a message with
 * several author domains: a failure (the stricter its policy, the worse),
 * then temperror, permerror, none, pass. */
static int badness(const struct dmarc_outcome *o)
{
    switch (o->result) {
    case DMARC_R_FAIL:      return 10 + (int)o->policy;
    case DMARC_R_TEMPERROR: return 4;
    case DMARC_R_PERMERROR: return 3;
    case DMARC_R_NONE:      return 2;
    default:                return 1;
    }
}

/* Every author domain is evaluated (RFC 7489 6.6.1), within one overall
 * time budget; the worst outcome decides. More than CLA_AUTHORS_MAX
 * distinct author domains cannot all be checked: the message then fails
 * as under p=reject (what authentication.dmarc_failure makes of it is
 * still up to the configuration), so that no domain's policy can be pushed
 * out of sight behind others. */
void cld_evaluate(struct cl_ctx *ctx, struct cl_txn *t, struct dns_ctx *dns)
{
    struct cl_auth *a = &t->auth;
    struct dmarc_dkim k[DMARC_DKIM_MAX];
    int n = 0;
    for (int i = 0; i < a->dkim.n && n < DMARC_DKIM_MAX; i++, n++) {
        k[n].domain = a->dkim.sig[i].domain;
        k[n].result = pdk_result_name(a->dkim.sig[i].result);
    }
    struct dmarc_input in = { .spf_result = t->spf_result,
                              .spf_domain = t->spf_domain, .dkim = k, .ndkim = n,
                              .draw = -1 };
    struct dmarc_outcome *o = xmalloc(sizeof *o), cur;
    int64_t deadline = clock_now_ms() + CLD_OVERALL_MS;
    /* (no author domain at all: evaluated once, as none) */
    for (int i = 0; i == 0 || cla_author_domain(t, i) != NULL; i++) {
        in.from_domain = cla_author_domain(t, i);
        int64_t left = deadline - clock_now_ms();
        if (dns && left > 0)
            dmarc_check_sync(dns, &in, (int)left, &cur);
        else
            dmarc_decide(&in, NULL, NULL, 1, &cur);     /* no resolver or no time: temperror */
        if (i == 0 || badness(&cur) > badness(o))
            *o = cur;
    }
    if (a->nfrom > CLA_AUTHORS_MAX) {
        o->result = DMARC_R_FAIL;
        o->policy = o->published = DMARC_P_REJECT;
        o->has_record = 0;
        o->sampled_out = 0;
        str_format(o->reason, sizeof o->reason,
                   "%d author domains in From, more than the %d that are checked",
                   a->nfrom, CLA_AUTHORS_MAX);
    }
    free(a->dmarc);
    a->dmarc = o;
    a->dmarc_disposition = disposition(ctx->cfg, o);
    str_copy(a->dmarc_result, sizeof a->dmarc_result, dmarc_result_name(o->result));
    str_copy(a->dmarc_policy, sizeof a->dmarc_policy,
             o->has_record ? dmarc_policy_name(o->policy) : "");
    if (o->has_record)
        str_format(a->dmarc_reason, sizeof a->dmarc_reason, "%s=%s pct=%d%s dis=%s",
                   o->sp_used ? "sp" : "p", dmarc_policy_name(o->published), o->pct,
                   o->sampled_out ? " sampled out" : "",
                   dmarc_policy_name(a->dmarc_disposition));
    else
        str_copy(a->dmarc_reason, sizeof a->dmarc_reason, o->reason);
}

int cld_after(struct cl_ctx *ctx, struct cl_txn *t, struct cl_reply *rep)
{
    struct cl_auth *a = &t->auth;
    const struct dmarc_outcome *o = a->dmarc;
    if (o == NULL)
        return 0;
    const char *dis = dmarc_policy_name(a->dmarc_disposition);
    log_set_qid(t->qid);
    log_info("dmarc=%s header.from=%s policy=%s disposition=%s (%s)",
             dmarc_result_name(o->result), o->from_domain[0] ? o->from_domain : "-",
             dmarc_policy_name(o->policy), dis, o->reason);
    struct dmarc_report_row row = {
        .when = (int64_t)time(NULL), .queue_id = t->qid, .client_ip = t->env.client_ip,
        .disposition = dis, .o = o, .spf_result = t->spf_result, .spf_domain = t->spf_domain,
    };
    if (o->from_domain[0] && dmarc_report_append(SPOOL_DMARC_RECORDS, &row) < 0)
        log_warn("dmarc: cannot append to %s: %m: report data of this message lost",
                 SPOOL_DMARC_RECORDS);
    int reject = 0;
    if (a->dmarc_disposition == DMARC_P_QUARANTINE) {
        /* through the mutation path like a rule's quarantine: noted in the
         * queue file, applied with the data stage's mutations */
        if (filter_muts_add(&t->dmuts, CL_MAX_MUTS, FILTER_M_QUARANTINE, "", DMARC_QUARANTINE,
                            "", "authentication.dmarc_failure") < 0)
            log_warn("dmarc: quarantine over the mutation cap: the message is delivered");
    } else if (a->dmarc_disposition == DMARC_P_REJECT) {
        *rep = (struct cl_reply){ V_REJECT, LR_NONE, 550, "5.7.1", "" };
        if (a->nfrom > CLA_AUTHORS_MAX)
            str_format(rep->text, sizeof rep->text,
                       "Message rejected: DMARC cannot check %d author domains", a->nfrom);
        else
            str_format(rep->text, sizeof rep->text,
                       "Message rejected: DMARC policy of %.180s", o->from_domain);
        log_info("rejected: %s", rep->text + sizeof("Message rejected: ") - 1);
        reject = 1;
    }
    log_set_qid(NULL);
    return reject;
}
