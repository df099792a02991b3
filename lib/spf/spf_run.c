/*
 * spf_run.c - the two drivers of the one evaluator, blocking (CLI) and in
 * an event loop (smtpd), both on lib/dns's evaluator driver (dns_step.c):
 * it asks lib/dns for exactly the lookup the evaluator names, hands the
 * answer back, and stops the whole check at an overall deadline
 * (temperror), each query being bounded by dns.timeout already.
 */
#include <stdlib.h>
#include <string.h>

#include "spf/spf.h"

static int overall(int ms)
{
    return ms > 0 ? ms : SPF_OVERALL_MS;
}

static int ev_step(void *ev, const char **name_r, uint16_t *type_r)
{
    return spf_eval_step(ev, name_r, type_r);
}

static void ev_answer(void *ev, struct dns_answer *a)
{
    spf_eval_answer(ev, a);
}

static void ev_abort(void *ev, const char *why)
{
    spf_eval_abort(ev, why);
}

static const struct dns_step_ops spf_ops = { ev_step, ev_answer, ev_abort,
                                             "SPF check took too long" };

void spf_check_sync(struct dns_ctx *ctx, const struct spf_request *rq, int overall_ms,
                    struct spf_outcome *out)
{
    struct spf_eval *e = spf_eval_new(rq);
    dns_step_sync(ctx, &spf_ops, e, overall(overall_ms));
    *out = *spf_eval_outcome(e);
    spf_eval_free(e);
}

struct spf_check {
    struct spf_eval *e;
    struct dns_step *s;
    spf_cb           cb;
    void            *arg;
};

/* The driver is gone already: report and free. */
static void check_done(void *arg)
{
    struct spf_check *c = arg;
    struct spf_outcome o = *spf_eval_outcome(c->e);
    spf_cb cb = c->cb;
    void *cbarg = c->arg;
    c->s = NULL;
    spf_check_cancel(c);
    cb(&o, cbarg);
}

struct spf_check *spf_check_start(struct dns_ctx *ctx, struct event_base *base,
                                  const struct spf_request *rq, int overall_ms,
                                  spf_cb cb, void *arg)
{
    struct spf_check *c = xcalloc(1, sizeof *c);
    c->cb = cb;
    c->arg = arg;
    c->e = spf_eval_new(rq);
    c->s = dns_step_start(ctx, base, &spf_ops, c->e, overall(overall_ms), check_done, c);
    if (c->s == NULL) {
        spf_check_cancel(c);
        return NULL;
    }
    return c;
}

void spf_check_cancel(struct spf_check *c)
{
    if (!c)
        return;
    dns_step_cancel(c->s);
    spf_eval_free(c->e);
    free(c);
}
