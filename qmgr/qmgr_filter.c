/*
 * qmgr_filter.c - qmgr's filter client (lib/filter/filter_clnt.h): FILTER_REQ
 * {stage postq|deliver, path active/ID} answered by FILTER_REPLY +
 * FILTER_REPLY.nmut FILTER_MUT, handed to qmgr_rules_verdict.
 *
 * The client is created when the first message needs to know whether a
 * stage has rules; messages wait (bounded by QMGR_FILTER_CONNECT, the
 * client's handshake timeout) until the stage mask is known. A stage
 * without rules costs no round trip. A slow rule never stalls the loop; a
 * filter that does not answer within QMGR_FILTER_TIMEOUT, closes the
 * connection or breaks the protocol fails every request on it (the
 * messages are deferred and retried soon) and the client reconnects with
 * backoff. With no rules file configured, no stage is asked and filter is
 * never needed. While filter cannot be reached, the last FILTER_STAGES it
 * sent still says which stages have rules: a message goes on through the
 * stages without (default policy: next), and only a stage with rules waits
 * or is deferred.
 */
#include <stdlib.h>
#include <string.h>

#include "filter/filter_clnt.h"
#include "filter/filter_mut.h"
#include "util/log.h"
#include "qmgr.h"

/* A request in flight (the client's req_arg); listed so stopping frees it. */
struct freq {
    struct qmsg *m;
    enum stage stage;
    struct freq *next, *prev;
};

struct fwait {
    struct qmsg *m;
    struct fwait *next;
};

static struct filter_clnt *fc;
static struct freq *reqs;
static struct fwait *waiting, **waiting_tail = &waiting;
static int stopped;

static void freq_unlink(struct freq *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
}

/* Stages are known now: let every waiting message go on. */
static void release_waiting(void)
{
    struct fwait *w = waiting;
    waiting = NULL;
    waiting_tail = &waiting;
    for (struct fwait *n; w; w = n) {
        n = w->next;
        struct qmsg *m = w->m;
        free(w);
        qmgr_active_advance(m);
    }
}

/* The verdict for one message (NULL: none will come: deferred). */
static void f_verdict(uint64_t id, void *arg, struct filter_verdict *v, void *unused)
{
    struct freq *r = arg;
    struct qmsg *m = r->m;
    enum stage s = r->stage;
    freq_unlink(r);
    free(r);
    qmgr_rules_verdict(m, s, v);
}

static void f_stages(uint32_t mask, uint32_t generation, int first, void *arg)
{
    static uint32_t last_mask;
    if (first || mask != last_mask)
        log_info("filter rules generation %u: postq %s, deliver %s", (unsigned)generation,
                 (mask >> STAGE_POSTQ) & 1 ? "on" : "off",
                 (mask >> STAGE_DELIVER) & 1 ? "on" : "off");
    last_mask = mask;
    if (first)
        release_waiting();
}

/* The connection is gone: the waiting messages are deferred (the requests
 * in flight hear f_verdict(NULL) next). */
static void f_down(const char *why, void *arg)
{
    struct fwait *w = waiting;
    waiting = NULL;
    waiting_tail = &waiting;
    if (w || (fc && filter_clnt_pending(fc) > 0))
        log_warn("filter connection: %s: %s", why,
                 "messages waiting for a verdict are deferred and retried soon");
    for (struct fwait *n; w; w = n) {
        n = w->next;
        struct qmsg *m = w->m;
        free(w);
        qmgr_active_defer_all(m, "4.3.0", "rule filter not available", m->phase == QP_DELIVER,
                              qmgr_now() + QMGR_FILTER_BACKOFF);
    }
}

static const struct filter_clnt_ops f_ops = {
    .on_verdict = f_verdict, .on_stages = f_stages, .on_down = f_down,
};

int qmgr_filter_need(enum stage s)
{
    const char *rules = qmgr_g->cfg->rules;
    if (rules == NULL || rules[0] == '\0')
        return 0;                   /* no rules file: nothing to ask */
    if (stopped)
        return -2;
    if (fc == NULL) {
        struct filter_clnt_conf conf = {
            .hello_ms = QMGR_FILTER_CONNECT * 1000, .reply_ms = QMGR_FILTER_TIMEOUT * 1000,
        };
        fc = filter_clnt_new(qmgr_g->base, &conf, &f_ops, NULL);
    }
    if (filter_clnt_ready(fc))
        return filter_clnt_stage_rules(fc, s);
    if (filter_clnt_have_stages(fc) && !filter_clnt_stage_rules(fc, s))
        return 0;                   /* no rules there when last heard of */
    return filter_clnt_connecting(fc) ? -1 : -2;
}

void qmgr_filter_wait(struct qmsg *m)
{
    struct fwait *w = xcalloc(1, sizeof(*w));
    w->m = m;
    *waiting_tail = w;
    waiting_tail = &w->next;
}

void qmgr_filter_ask(struct qmsg *m, enum stage s)
{
    if (fc == NULL || !filter_clnt_ready(fc)) {
        qmgr_rules_verdict(m, s, NULL);
        return;
    }
    char path[QUEUE_ID_MAX + 16];
    str_format(path, sizeof(path), SPOOL_ACTIVE "/%s", m->id);
    struct ipc_filter_req req;
    filter_req_init(&req, s);
    req.queue_id = m->id;
    req.path = path;
    struct freq *r = xcalloc(1, sizeof(*r));
    r->m = m;
    r->stage = s;
    if (filter_clnt_ask(fc, &req, r) < 0) {
        free(r);
        qmgr_rules_verdict(m, s, NULL);     /* logged: this message is deferred */
        return;
    }
    r->next = reqs;
    if (reqs)
        reqs->prev = r;
    reqs = r;
}

/* Stopping: messages waiting for a verdict stay in active/ (no callbacks). */
void qmgr_filter_stop(void)
{
    stopped = 1;
    filter_clnt_free(fc);
    fc = NULL;
    for (struct freq *n; reqs; reqs = n) {
        n = reqs->next;
        free(reqs);
    }
    for (struct fwait *n; waiting; waiting = n) {
        n = waiting->next;
        free(waiting);
    }
    waiting_tail = &waiting;
}
