/*
 * dns_step.c - the one driver for evaluators that name their next lookup
 * and are handed its answer (lib/spf, lib/dmarc): blocking for the CLI, or
 * inside an event loop for the daemons. Both bound the whole computation by
 * an overall deadline (the evaluator's abort: temperror), each query being
 * bounded by dns.timeout already.
 *
 * The loop driver never calls back from inside dns_step_start (an
 * evaluation that needs no DNS finishes through a zero timer) and never
 * blocks. A query that cannot start is answered as a temporary failure.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "dns/dns.h"
#include "util/clock.h"

void dns_step_sync(struct dns_ctx *ctx, const struct dns_step_ops *ops, void *ev,
                   int overall_ms)
{
    int64_t deadline = clock_now_ms() + overall_ms;
    const char *name;
    uint16_t type;
    while (ops->step(ev, &name, &type)) {
        if (clock_now_ms() >= deadline) {
            ops->abort(ev, ops->too_long);
            break;
        }
        ops->answer(ev, dns_resolve(ctx, name, type));
    }
}

struct dns_step {
    struct dns_ctx   *ctx;
    const struct dns_step_ops *ops;
    void             *ev;
    struct dns_query *q;
    struct event     *timer;      /* overall deadline, or "start now" */
    int64_t           deadline;
    int               started;
    void            (*done)(void *arg);
    void             *arg;
};

static void step_end(struct dns_step *s)
{
    void (*done)(void *) = s->done;
    void *arg = s->arg;
    dns_step_cancel(s);
    done(arg);
}

static void on_answer(struct dns_answer *a, void *arg);

/* A temporary failure for a query that could not start. */
static struct dns_answer *not_started(void)
{
    struct dns_answer *a = xcalloc(1, sizeof *a);
    a->status = DNS_TEMPFAIL;
    a->rcode = -1;
    str_copy(a->why, sizeof a->why, "query not started");
    return a;
}

/* Steps until a lookup is outstanding or the evaluation is done. */
static void step_advance(struct dns_step *s)
{
    const char *name;
    uint16_t type;
    while (s->ops->step(s->ev, &name, &type)) {
        s->q = dns_query(s->ctx, name, type, on_answer, s);
        if (s->q)
            return;
        s->ops->answer(s->ev, not_started());
    }
    step_end(s);
}

static void on_answer(struct dns_answer *a, void *arg)
{
    struct dns_step *s = arg;
    s->q = NULL;
    s->ops->answer(s->ev, a);
    if (clock_now_ms() >= s->deadline) {
        s->ops->abort(s->ev, s->ops->too_long);
        step_end(s);
        return;
    }
    step_advance(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct dns_step *s = arg;
    if (s->started) {                  /* the overall deadline */
        if (s->q)
            dns_cancel(s->q);
        s->q = NULL;
        s->ops->abort(s->ev, s->ops->too_long);
        step_end(s);
        return;
    }
    /* the first step, outside dns_step_start; then the deadline */
    s->started = 1;
    int64_t left = s->deadline - clock_now_ms();
    if (left < 0)
        left = 0;
    struct timeval tv = { (time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000 };
    evtimer_add(s->timer, &tv);
    step_advance(s);
}

struct dns_step *dns_step_start(struct dns_ctx *ctx, struct event_base *base,
                                const struct dns_step_ops *ops, void *ev, int overall_ms,
                                void (*done)(void *arg), void *arg)
{
    if (!ctx || !base)
        return NULL;
    struct dns_step *s = xcalloc(1, sizeof *s);
    s->ctx = ctx;
    s->ops = ops;
    s->ev = ev;
    s->done = done;
    s->arg = arg;
    s->deadline = clock_now_ms() + overall_ms;
    s->timer = evtimer_new(base, on_timer, s);
    struct timeval now = { 0, 0 };
    if (!s->timer || evtimer_add(s->timer, &now) < 0) {
        dns_step_cancel(s);
        return NULL;
    }
    return s;
}

void dns_step_cancel(struct dns_step *s)
{
    if (!s)
        return;
    if (s->q)
        dns_cancel(s->q);
    if (s->timer)
        event_free(s->timer);
    free(s);
}
