/*
 * smtpd_filter.c - the process's one filter client (lib/filter/filter_clnt.h) and
 * what smtpd makes of its answers.
 *
 * Requests from every session share the client's connection; each carries
 * its struct smtpd_pending (the session, stage and recipient). A session
 * that goes away cancels its request (the late reply is dropped) and sends
 * FILTER_END so filter frees its rule context. When filter is unavailable
 * requests fail at once (the caller answers 451 4.3.0) while the client
 * reconnects with backoff; requests in flight when the link breaks are
 * answered by the default policy when their stage has no rules, else 4xx.
 * Stages whose bit of the last FILTER_STAGES is clear are not asked
 * (smtpd_filter_wanted). Relay control at such a rcpt stage (a non-local
 * recipient) is decided here, by filter's default policy itself
 * (lib/filter/filter_policy.h): relayed for a trusted client, else 554. The last
 * FILTER_STAGES stays known while filter is unavailable (down, restarting,
 * no HELLO, frozen), so only a stage with rules gets 4xx then; before the
 * first one every stage counts as having rules. With no rules file
 * configured smtpd never needs filter: it does not even connect. A local
 * verdict reaches the session like filter's, from the event loop (never
 * inside smtpd_filter_ask). A verdict's mutations are readable through
 * smtpd_filter_muts() while it is delivered.
 */
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include "smtpd.h"
#include "filter/filter_clnt.h"
#include "filter/filter_mut.h"
#include "filter/filter_policy.h"
#include "util/log.h"

#define FILTER_TIMEOUT_MS  (120 * 1000)   /* one request's answer */
#define HELLO_TIMEOUT_MS   2000           /* filter's HELLO (master holds the socket:
                                           * connect succeeds while filter is down) */

struct smtpd_pending {
    struct smtpd_pending *next;     /* the local list */
    uint64_t id;                    /* a request to filter; 0 = a local verdict
                                     * (on the local list, or waiting for the local
                                     * check, which puts it there) */
    struct smtpd_session *s;        /* NULL once the session is gone (local verdict) */
    enum stage stage;
    char *rcpt;                     /* rcpt stage: the recipient asked for */
    struct verdict_out local;       /* a local verdict */
};

static struct event_base *fbase;
static struct filter_clnt *fc;
static int down_logged;
static int rules_off;               /* no rules file: filter is never needed */
static struct smtpd_pending *lhead, *ltail;     /* local verdicts to deliver */
static struct event *local_ev;

static const struct filter_mut *cur_muts;   /* during smtpd_cmd_verdict */
static int cur_nmuts;

const struct filter_mut *smtpd_filter_muts(int *n_r)
{
    *n_r = cur_nmuts;
    return cur_muts;
}

/* Is stage st decided here, by the default policy, rather than by filter?
 * Yes when it has no rules: no round trip, and a filter that is down, slow
 * or restarting cannot hold it up. */
static int local_stage(enum stage st)
{
    return rules_off || (filter_clnt_have_stages(fc) && !filter_clnt_stage_rules(fc, st));
}

int smtpd_filter_wanted(enum stage st, const char *rcpt)
{
    if (!rules_off && filter_clnt_stage_rules(fc, st))
        return 1;
    /* every rcpt: relay control for a non-local one, the local-recipient
     * check (550 5.1.1, smtpd_local.c) for a local one */
    return st == STAGE_RCPT;
}

static void pending_free(struct smtpd_pending *p)
{
    free(p->rcpt);
    free(p);
}

static struct smtpd_pending *pending_new(struct smtpd_session *s, enum stage st,
                                         const char *rcpt)
{
    struct smtpd_pending *p = xcalloc(1, sizeof(*p));
    p->s = s;
    p->stage = st;
    p->rcpt = xstrdup(rcpt ? rcpt : "");
    s->pend = p;
    return p;
}

/* Deliver one verdict to p's session (if still there); frees p. */
static void deliver(struct smtpd_pending *p, const struct smtpd_verdict *v)
{
    struct smtpd_session *s = p->s;
    pending_free(p);
    if (s == NULL)
        return;                     /* session went away meanwhile */
    s->pend = NULL;
    smtpd_cmd_verdict(s, v);
}

/* The default policy's verdicts, delivered from the loop. */
static void on_local(evutil_socket_t fd, short what, void *arg)
{
    while (lhead) {
        struct smtpd_pending *p = lhead;
        lhead = p->next;
        if (lhead == NULL)
            ltail = NULL;
        struct verdict_out o = p->local;    /* deliver() frees p */
        struct smtpd_verdict v = { o.status, (unsigned)o.code, o.enhanced, o.text, o.rule };
        deliver(p, &v);
    }
}

/* Put p on the local list, its verdict to be delivered from the loop. */
static void local_queue(struct smtpd_pending *p)
{
    p->next = NULL;
    if (lhead == NULL)
        lhead = p;
    else
        ltail->next = p;
    ltail = p;
    if (local_ev == NULL)
        local_ev = event_new(fbase, -1, 0, on_local, NULL);
    event_active(local_ev, 0, 0);
}

/* The local check's answer for p (smtpd_local.c); p->s may be gone. */
static void local_known(int known, void *arg)
{
    struct smtpd_pending *p = arg;
    policy_local_verdict(known, &p->local);
    local_queue(p);
}

/* The default policy's verdict for p (a stage without rules); a local
 * recipient's waits for the local check, which never blocks the loop. */
static void decide_local(struct smtpd_pending *p)
{
    struct smtpd_session *s = p->s;
    p->id = 0;
    buf_t a;
    buf_init(&a, 64);
    int asked = 0;
    if (policy_local_query(p->stage, p->rcpt, &a)) {
        int r = smtpd_local_ask(a.data, local_known, p);
        asked = r == SMTPD_LOCAL_ASKED;
        if (!asked)
            policy_local_verdict(r, &p->local);
    } else {
        policy_decide_stage(p->stage, p->rcpt, s->ip, s->auth_user ? s->auth_user : "",
                            &p->local);
    }
    buf_free(&a);
    if (!asked)
        local_queue(p);
}

/* filter's answer to p; NULL: the link broke before it came. */
static void f_verdict(uint64_t id, void *arg, struct filter_verdict *fv, void *unused)
{
    struct smtpd_pending *p = arg;
    if (fv == NULL && local_stage(p->stage)) {
        decide_local(p);            /* no rules at this stage: the default policy answers */
        return;
    }
    if (fv == NULL) {
        struct smtpd_verdict v = { V_TEMPFAIL, 0, "", "", "(filter unavailable)" };
        deliver(p, &v);             /* may free the session */
        return;
    }
    struct smtpd_verdict v = { fv->status, (unsigned)fv->code, fv->enhanced, fv->text, fv->rule };
    cur_muts = fv->muts;
    cur_nmuts = fv->nmuts < SMTPD_MAX_MUTS ? fv->nmuts : SMTPD_MAX_MUTS;
    deliver(p, &v);
    cur_muts = NULL;
    cur_nmuts = 0;
}

static void f_down(const char *why, void *arg)
{
    if (!down_logged)
        log_warn("filter connection: %s: stages with rules get 4xx until it is back", why);
    down_logged = 1;
    if (fc && smtpd_server->stopping)
        filter_clnt_stop_redial(fc);
}

static void f_up(int back, void *arg)
{
    if (down_logged)
        log_info("filter connection is back");
    down_logged = 0;
}

static const struct filter_clnt_ops f_ops = {
    .on_verdict = f_verdict, .on_down = f_down, .on_up = f_up,
};

void smtpd_filter_init(struct event_base *base)
{
    fbase = base;
    policy_init(smtpd_cfg);
    rules_off = smtpd_cfg->rules == NULL || smtpd_cfg->rules[0] == '\0';
    if (rules_off)
        return;                     /* without rules filter is never asked */
    struct filter_clnt_conf conf = {
        .hello_ms = HELLO_TIMEOUT_MS, .reply_ms = FILTER_TIMEOUT_MS,
    };
    fc = filter_clnt_new(base, &conf, &f_ops, NULL);
}

int smtpd_filter_ask(struct smtpd_session *s, enum stage st, const char *rcpt)
{
    /* A fresh connection's handshake still on its way: the request waits
     * behind it (filter_clnt.h). Once a handshake failed, 451/421 at once
     * until a HELLO arrives again. */
    if (local_stage(st)) {
        decide_local(pending_new(s, st, rcpt));
        return 0;
    }
    if (fc == NULL || filter_clnt_failing(fc))
        return -1;
    const struct smtpd_txn *t = s->txn ? s->txn : s->wait_txn;
    char tlsv[32] = "";                 /* s->tls_info is "VERSION CIPHER" */
    const char *cipher = "";
    const char *sp = s->tls_info ? strchr(s->tls_info, ' ') : NULL;
    if (sp && (size_t)(sp - s->tls_info) < sizeof(tlsv)) {
        memcpy(tlsv, s->tls_info, (size_t)(sp - s->tls_info));
        tlsv[sp - s->tls_info] = '\0';
        cipher = sp + 1;
    }
    const char *helo = st == STAGE_HELO && s->wait_arg ? s->wait_arg : s->helo ? s->helo : "";
    struct ipc_filter_req q = {
        .stage = (uint32_t)st, .session = s->id,
        .listener = s->lis->name, .client_ip = s->ip, .client_port = s->port,
        .client_ptr = smtpd_dns_ptr(s), .helo = helo, .auth_user = s->auth_user ? s->auth_user : "",
        .tls_version = tlsv, .tls_cipher = cipher,
        .mail_from = t ? t->sender : "", .rcpt = rcpt ? rcpt : "",
        .nrcpt = s->txn ? (uint32_t)s->txn->nrcpts : 0, .queue_id = "",
        .size = t ? t->size_hint : 0, .path = "",
        .spf_result = t ? smtpd_spf_result(t) : "", .spf_domain = t ? smtpd_spf_domain(t) : "",
    };
    struct smtpd_pending *p = pending_new(s, st, rcpt);
    if (filter_clnt_ask(fc, &q, p) < 0) {
        s->pend = NULL;             /* unavailable, or cannot be encoded (logged) */
        pending_free(p);
        return -1;
    }
    p->id = q.id;
    return 0;
}

void smtpd_filter_cancel(struct smtpd_session *s)
{
    struct smtpd_pending *p = s->pend;
    s->pend = NULL;
    if (p && p->id == 0) {
        p->s = NULL;                /* a local verdict: dropped when it comes */
    } else if (p) {
        if (fc)
            filter_clnt_cancel(fc, p->id);
        pending_free(p);
    }
    filter_muts_free(&s->muts);
    if (fc) {
        struct ipc_filter_end e = { s->id };
        filter_clnt_send(fc, IPC_FILTER_END, &e);
    }
}

void smtpd_filter_shutdown(void)
{
    while (lhead) {
        struct smtpd_pending *p = lhead;
        lhead = p->next;
        if (p->s)
            p->s->pend = NULL;      /* a session freed later must not touch it */
        pending_free(p);
    }
    ltail = NULL;
    if (local_ev)
        event_free(local_ev);
    local_ev = NULL;
    filter_clnt_free(fc);           /* sessions still waiting free their own pending */
    fc = NULL;
}
