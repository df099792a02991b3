/*
 * cleanup_limit.c - per-tenant submission limits:
 * domain "X" { limits { messages_per_hour = N; } }.
 *
 * What counts: a message submitted for the tenant, i.e. whose envelope
 * sender is at the domain (exactly, as config_domain matches) and that came
 * from a client allowed to relay: SMTP AUTH, mynetworks, or sendmail
 * through pickup. Mail from the Internet to or "from" the domain never
 * counts, so no outsider can use up a tenant's allowance.
 *
 * The window is the last 60 minutes in one-minute buckets, counted when a
 * message is committed (a refused one does not count). cleanup is one
 * process, so the count is global; it lives in memory and starts again
 * when cleanup restarts (a reload). Over the limit the transaction is
 * failed at CLEANUP_BEGIN (nothing is written) and refused at the end of
 * DATA with 450 4.7.0 (LR_RATE): the client keeps it and retries later.
 * Messages in flight at once may pass the limit by that many.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "mail/addr.h"
#include "util/log.h"

#define WINDOW 60   /* one-minute buckets */

struct cl_rate {
    long limit;
    uint32_t minute[WINDOW];    /* which minute (time / 60) bucket i holds */
    uint32_t count[WINDOW];
};

static uint32_t now_minute(void)
{
    return (uint32_t)(time(NULL) / 60);
}

/* Messages committed in the last hour for r. */
static long window_sum(const struct cl_rate *r, uint32_t now)
{
    long n = 0;
    for (int i = 0; i < WINDOW; i++)
        if (now - r->minute[i] < WINDOW)
            n += r->count[i];
    return n;
}

/* Does t count against a tenant's limit? Its rate slot, or NULL. */
static struct cl_rate *rate_of(struct cl_ctx *ctx, const struct cl_txn *t)
{
    const struct config *cfg = ctx->cfg;
    if (ctx->rates == NULL || t->env.sender == NULL || t->env.sender[0] == '\0')
        return NULL;
    const struct domain_conf *d = config_domain(cfg, addr_domain(t->env.sender));
    if (d == NULL || d->messages_per_hour <= 0)
        return NULL;
    return cl_txn_submitted(ctx, t) ? &ctx->rates[d - cfg->domains] : NULL;
}

void cl_limits_init(struct cl_ctx *ctx)
{
    const struct config *cfg = ctx->cfg;
    for (int i = 0; i < cfg->ndomains; i++)
        if (cfg->domains[i].messages_per_hour > 0) {
            ctx->rates = xcalloc((size_t)cfg->ndomains, sizeof(*ctx->rates));
            break;
        }
    for (int i = 0; ctx->rates && i < cfg->ndomains; i++)
        ctx->rates[i].limit = cfg->domains[i].messages_per_hour;
}

void cl_limits_free(struct cl_ctx *ctx)
{
    free(ctx->rates);
    ctx->rates = NULL;
}

int cl_limit_over(struct cl_ctx *ctx, const struct cl_txn *t)
{
    const struct cl_rate *r = rate_of(ctx, t);
    if (r == NULL || window_sum(r, now_minute()) < r->limit)
        return 0;
    log_info("from=<%s>: refused: domain %s is at its limit of %ld messages per hour",
             t->env.sender, addr_domain(t->env.sender), r->limit);
    return 1;
}

void cl_limit_count(struct cl_ctx *ctx, const struct cl_txn *t)
{
    struct cl_rate *r = rate_of(ctx, t);
    if (r == NULL)
        return;
    uint32_t now = now_minute();
    int i = (int)(now % WINDOW);
    if (r->minute[i] != now) {
        r->minute[i] = now;
        r->count[i] = 0;
    }
    r->count[i]++;
}
