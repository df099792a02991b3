/*
 * spf_run.c - the two drivers of the one evaluator: blocking (CLI) and in
 * an event loop (smtpd). Both ask lib/dns for exactly the lookup the
 * evaluator names, hand the answer back and step again; both stop the
 * whole check at an overall deadline (temperror), each query being bounded
 * by dns.timeout already.
 *
 * The loop driver never calls back from inside spf_check_start (a check
 * that needs no DNS finishes through a zero timer) and never blocks.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "spf/spf.h"
#include "util/clock.h"

static int overall(int ms)
{
    return ms > 0 ? ms : SPF_OVERALL_MS;
}

void spf_check_sync(struct dns_ctx *ctx, const struct spf_request *rq, int overall_ms,
                    struct spf_outcome *out)
{
    struct spf_eval *e = spf_eval_new(rq);
    int64_t deadline = clock_now_ms() + overall(overall_ms);
    const char *name;
    uint16_t type;
    while (spf_eval_step(e, &name, &type)) {
        if (clock_now_ms() >= deadline) {
            spf_eval_abort(e, "SPF check took too long");
            break;
        }
        spf_eval_answer(e, dns_resolve(ctx, name, type));
    }
    *out = *spf_eval_outcome(e);
    spf_eval_free(e);
}

struct spf_check {
    struct dns_ctx   *ctx;
    struct spf_eval  *e;
    struct dns_query *q;
    struct event     *timer;      /* overall deadline, or "finish now" */
    int64_t           deadline;
    int               started;
    spf_cb            cb;
    void             *arg;
};

static void check_end(struct spf_check *c)
{
    spf_cb cb = c->cb;
    void *arg = c->arg;
    struct spf_outcome o = *spf_eval_outcome(c->e);
    spf_check_cancel(c);
    cb(&o, arg);
}

static void on_answer(struct dns_answer *a, void *arg);

/* Steps until a lookup is outstanding or the check is done. */
static void check_advance(struct spf_check *c)
{
    const char *name;
    uint16_t type;
    while (spf_eval_step(c->e, &name, &type)) {
        c->q = dns_query(c->ctx, name, type, on_answer, c);
        if (c->q)
            return;
        /* could not start (too many outstanding): a temporary failure */
        struct dns_answer *a = calloc(1, sizeof *a);
        if (!a) {
            spf_eval_abort(c->e, "out of memory");
            break;
        }
        a->status = DNS_TEMPFAIL;
        a->rcode = -1;
        str_copy(a->why, sizeof a->why, "query not started");
        spf_eval_answer(c->e, a);
    }
    check_end(c);
}

static void on_answer(struct dns_answer *a, void *arg)
{
    struct spf_check *c = arg;
    c->q = NULL;
    spf_eval_answer(c->e, a);
    if (clock_now_ms() >= c->deadline) {
        spf_eval_abort(c->e, "SPF check took too long");
        check_end(c);
        return;
    }
    check_advance(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct spf_check *c = arg;
    if (c->started) {                  /* the overall deadline */
        if (c->q)
            dns_cancel(c->q);
        c->q = NULL;
        spf_eval_abort(c->e, "SPF check took too long");
        check_end(c);
        return;
    }
    /* the first step, outside spf_check_start; then the deadline */
    c->started = 1;
    int64_t left = c->deadline - clock_now_ms();
    if (left < 0)
        left = 0;
    struct timeval tv = { (time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000 };
    evtimer_add(c->timer, &tv);
    check_advance(c);
}

struct spf_check *spf_check_start(struct dns_ctx *ctx, struct event_base *base,
                                  const struct spf_request *rq, int overall_ms,
                                  spf_cb cb, void *arg)
{
    if (!ctx || !base)
        return NULL;
    struct spf_check *c = xcalloc(1, sizeof *c);
    c->ctx = ctx;
    c->cb = cb;
    c->arg = arg;
    c->e = spf_eval_new(rq);
    c->deadline = clock_now_ms() + overall(overall_ms);
    c->timer = evtimer_new(base, on_timer, c);
    struct timeval now = { 0, 0 };
    if (!c->timer || evtimer_add(c->timer, &now) < 0) {
        spf_check_cancel(c);
        return NULL;
    }
    return c;
}

void spf_check_cancel(struct spf_check *c)
{
    if (!c)
        return;
    if (c->q)
        dns_cancel(c->q);
    if (c->timer)
        event_free(c->timer);
    spf_eval_free(c->e);
    free(c);
}
