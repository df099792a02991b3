/*
 * dmarc_run.c - the drivers of the DMARC evaluator: blocking (postern
 * dmarc) and in an event loop (cleanup), both on lib/dns's evaluator
 * driver (dns_step.c, as lib/spf), bounded by an overall deadline that
 * ends the evaluation as temperror.
 */
#include <stdlib.h>
#include <string.h>

#include "dmarc/dmarc.h"

static int ev_step(void *ev, const char **name_r, uint16_t *type_r)
{
    *type_r = DNS_T_TXT;
    return dmarc_eval_step(ev, name_r);
}

static void ev_answer(void *ev, struct dns_answer *a)
{
    dmarc_eval_answer(ev, a);
}

static void ev_abort(void *ev, const char *why)
{
    dmarc_eval_abort(ev, why);
}

static const struct dns_step_ops dmarc_ops = { ev_step, ev_answer, ev_abort,
                                               "DMARC check took too long" };

void dmarc_check_sync(struct dns_ctx *ctx, const struct dmarc_input *in, int overall_ms,
                      struct dmarc_outcome *out)
{
    struct dmarc_eval *e = dmarc_eval_new(in);
    dns_step_sync(ctx, &dmarc_ops, e, overall_ms > 0 ? overall_ms : DMARC_OVERALL_MS);
    *out = *dmarc_eval_outcome(e);
    dmarc_eval_free(e);
}

struct dmarc_check {
    struct dmarc_eval *e;
    struct dns_step   *s;
    dmarc_cb           cb;
    void              *arg;
};

static void check_done(void *arg)
{
    struct dmarc_check *c = arg;
    c->s = NULL;                       /* the driver freed itself */
    dmarc_cb cb = c->cb;
    void *cbarg = c->arg;
    struct dmarc_outcome *o = xmalloc(sizeof *o);   /* large: not on the stack twice */
    *o = *dmarc_eval_outcome(c->e);
    dmarc_check_cancel(c);
    cb(o, cbarg);
    free(o);
}

struct dmarc_check *dmarc_check_start(struct dns_ctx *ctx, struct event_base *base,
                                      const struct dmarc_input *in, int overall_ms,
                                      dmarc_cb cb, void *arg)
{
    struct dmarc_check *c = xcalloc(1, sizeof *c);
    c->cb = cb;
    c->arg = arg;
    c->e = dmarc_eval_new(in);
    c->s = dns_step_start(ctx, base, &dmarc_ops, c->e,
                          overall_ms > 0 ? overall_ms : DMARC_OVERALL_MS, check_done, c);
    if (c->s == NULL) {
        dmarc_check_cancel(c);
        return NULL;
    }
    return c;
}

void dmarc_check_cancel(struct dmarc_check *c)
{
    if (!c)
        return;
    dns_step_cancel(c->s);
    dmarc_eval_free(c->e);
    free(c);
}
