/*
 * smtpd_filter.c - the process's one connection to filter (private/filter).
 *
 * Requests from every session are multiplexed by FILTER_REQ.id; a pending
 * table (FIFO list, replies normally come in order) maps ids back to
 * sessions. A session that dies while waiting leaves its entry with s=NULL
 * and the late reply is dropped. When the connection is down, requests
 * fail at once (the caller answers 451 4.3.0) and we reconnect with
 * exponential backoff; requests in flight when it breaks get V_TEMPFAIL.
 * filter is trusted to speak the protocol but not to be well-behaved:
 * anything but HELLO then FILTER_REPLY drops the connection, and a filter
 * silent for FILTER_TIMEOUT with requests outstanding is dropped too. The
 * connection is a struct ipc_peer (lib/ipc_bev.h); verdicts are assembled
 * by a filter_rx (lib/filter_mut.h).
 * filter follows its HELLO with FILTER_STAGES (again after each reload):
 * stages whose bit is clear are not asked (smtpd_filter_wanted). Relay
 * control at such a rcpt stage (a non-local recipient) is decided here, by
 * filter's default policy itself (lib/filter_policy.h): relayed for a
 * trusted client, else 554. The last FILTER_STAGES stays known while filter
 * is unavailable (down, restarting, no HELLO, frozen), so only a stage with
 * rules gets 4xx then. With no rules file configured smtpd never needs
 * filter: it does not even connect. A local verdict reaches the session
 * like filter's, from the event loop (never inside smtpd_filter_ask).
 * Before any FILTER_STAGES (a rules file, filter never seen) every stage is
 * taken to have rules; requests in flight when the link breaks are
 * answered by the default policy when their stage has no rules, else 4xx.
 * A FILTER_REPLY is followed at once by its nmut FILTER_MUTs; the
 * verdict is delivered when the last one arrived, the mutations readable
 * through smtpd_filter_muts() during that call. A closing session sends
 * FILTER_END so filter frees its rule context.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/event.h>
#include "smtpd.h"
#include "addr.h"
#include "filter_mut.h"
#include "filter_policy.h"
#include "ipc_bev.h"
#include "spool.h"
#include "log.h"

#define FILTER_TIMEOUT     120      /* seconds without an answer while requests wait */
#define HELLO_TIMEOUT      2        /* seconds for filter's HELLO (master holds the
                                     * socket: connect succeeds while filter is down) */
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     10000

struct smtpd_pending {
    struct smtpd_pending *next, *prev;
    uint64_t id;
    struct smtpd_session *s;        /* NULL once the session is gone */
    enum stage stage;
    char *rcpt;                     /* rcpt stage: the recipient asked for */
    struct verdict_out local;       /* a local verdict (the local list) */
};

static struct event_base *fbase;
static struct ipc_peer *fpeer;
static struct event *retry_ev;
static int backoff_ms, down_logged;
static struct smtpd_pending *phead, *ptail;
static uint64_t next_id;
static uint32_t stage_mask;         /* the last FILTER_STAGES; until one: ask all */
static int have_mask;               /* kept while filter is unavailable */
static int rules_off;               /* no rules file: filter is never needed */
static struct smtpd_pending *lhead, *ltail;     /* local verdicts to deliver */
static struct event *local_ev;

static struct filter_rx rx;         /* the reply being assembled */
static const char *bad_why;         /* why f_frame refused a message */
static const struct filter_mut *cur_muts;   /* during smtpd_cmd_verdict */
static int cur_nmuts;

const struct filter_mut *smtpd_filter_muts(int *n_r)
{
    *n_r = cur_nmuts;
    return cur_muts;
}

/* No verdict can come from filter now: not connected, or a handshake
 * failed and no HELLO came since. */
static int f_unavailable(void)
{
    return fpeer == NULL || (!ipc_peer_ready(fpeer) && down_logged);
}

/* Is stage st decided here, by the default policy, rather than by filter?
 * Yes when it has no rules: no round trip, and a filter that is down, slow
 * or restarting cannot hold it up. */
static int local_stage(enum stage st)
{
    return rules_off || (have_mask && !(stage_mask & (1u << st)));
}

int smtpd_filter_wanted(enum stage st, const char *rcpt)
{
    if (!rules_off && (!have_mask || (stage_mask & (1u << st))))
        return 1;
    return st == STAGE_RCPT && !policy_rcpt_is_local(smtpd_cfg, rcpt ? rcpt : "");
}

static void f_connect(void);

static void unlink_pending(struct smtpd_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        phead = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        ptail = p->prev;
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

/* Deliver one verdict to p's session (if still there); may free it. */
static void deliver(struct smtpd_pending *p, const struct smtpd_verdict *v)
{
    struct smtpd_session *s = p->s;
    pending_free(p);
    if (s == NULL)
        return;                     /* session went away meanwhile */
    s->pend = NULL;
    smtpd_cmd_verdict(s, v);
}

/* The default policy's verdict for p, delivered from the loop. */
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

/* Queue the default policy's verdict for a stage without rules. */
static void decide_local(struct smtpd_session *s, enum stage st, const char *rcpt)
{
    struct smtpd_pending *p = pending_new(s, st, rcpt);
    policy_decide_stage(st, p->rcpt, s->ip, s->auth_user ? s->auth_user : "", &p->local);
    if (lhead == NULL)
        lhead = p;
    else
        ltail->next = p;
    ltail = p;
    if (local_ev == NULL)
        local_ev = event_new(fbase, -1, 0, on_local, NULL);
    event_active(local_ev, 0, 0);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    f_connect();
}

static void schedule_retry(void)
{
    backoff_ms = backoff_ms ? backoff_ms * 2 : BACKOFF_MIN_MS;
    if (backoff_ms > BACKOFF_MAX_MS)
        backoff_ms = BACKOFF_MAX_MS;
    struct timeval tv = { backoff_ms / 1000, (backoff_ms % 1000) * 1000 };
    if (retry_ev == NULL)
        retry_ev = evtimer_new(fbase, on_retry, NULL);
    evtimer_add(retry_ev, &tv);
}

/* The connection broke: every waiting session gets its answer now (the
 * default policy at a stage without rules, else a temporary failure). */
static void f_fail(const char *why)
{
    if (!down_logged)
        log_warn("filter connection: %s: stages with rules get 4xx until it is back", why);
    down_logged = 1;
    ipc_peer_free(fpeer);
    fpeer = NULL;
    filter_rx_reset(&rx);           /* the stage mask stays known */
    while (phead) {
        struct smtpd_pending *p = phead;
        unlink_pending(p);
        p->next = p->prev = NULL;
        if (p->s && local_stage(p->stage)) {
            /* no rules at this stage: the default policy answers */
            p->s->pend = NULL;
            decide_local(p->s, p->stage, p->rcpt);
            pending_free(p);
            continue;
        }
        struct smtpd_verdict v = { V_TEMPFAIL, 0, "", "", "(filter unavailable)" };
        deliver(p, &v);             /* may free the session */
    }
    if (!smtpd_server->stopping)
        schedule_retry();
}

/* The verdict in rx is complete (mutations included): deliver it. */
static void on_reply(void)
{
    uint64_t id = rx.id;
    struct filter_verdict fv;
    filter_rx_take(&rx, &fv);
    struct smtpd_pending *p;
    for (p = phead; p; p = p->next)
        if (p->id == id)
            break;
    if (p == NULL) {
        log_warn("filter: reply for unknown request %llu: ignored", (unsigned long long)id);
        filter_verdict_free(&fv);
        return;
    }
    unlink_pending(p);
    struct smtpd_verdict v = { fv.status, (unsigned)fv.code, fv.enhanced, fv.text, fv.rule };
    cur_muts = fv.muts;
    cur_nmuts = fv.nmuts < SMTPD_MAX_MUTS ? fv.nmuts : SMTPD_MAX_MUTS;
    deliver(p, &v);
    cur_muts = NULL;
    cur_nmuts = 0;
    filter_verdict_free(&fv);
}

/* filter's HELLO: the link is up (again). */
static void f_hello(struct ipc_peer *p, void *arg)
{
    backoff_ms = 0;
    ipc_peer_set_timeout(p, FILTER_TIMEOUT);
    if (down_logged)
        log_info("filter connection is back");
    down_logged = 0;
}

/* FILTER_REPLY + its FILTER_MUTs, FILTER_STAGES; -1 = protocol error. */
static int f_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m, void *arg)
{
    int in_reply = rx.active;
    switch (filter_rx_feed(&rx, t, m)) {
    case FILTER_RX_MORE:
        return 0;
    case FILTER_RX_DONE:
        on_reply();                 /* sessions only write to fpeer */
        return 0;
    case FILTER_RX_STAGES:
        stage_mask = m->filter_stages.mask;
        have_mask = 1;
        return 0;
    default:
        bad_why = in_reply ? "bad FILTER_MUT" :
                  t == IPC_FILTER_REPLY ? "bad FILTER_REPLY" : "unexpected message";
        return -1;
    }
}

static void f_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    if (why == IPC_PEER_TIMEOUT && !ipc_peer_ready(p)) {
        f_fail("no HELLO from filter");
        return;
    }
    if (why == IPC_PEER_TIMEOUT && phead == NULL) {
        ipc_peer_read_again(p);     /* idle: nothing is waiting */
        return;
    }
    f_fail(why == IPC_PEER_EOF ? "closed by filter" :
           why == IPC_PEER_TIMEOUT ? "no answer" :
           why == IPC_PEER_IO ? "I/O error" :
           why == IPC_PEER_HELLO ? "bad HELLO" :
           why == IPC_PEER_PROTO ? "protocol error" : bad_why);
}

static const struct ipc_peer_ops f_ops = {
    .proto = IPC_PROTO_FILTER, .connect_nonblock = 1, .on_hello = f_hello,
    .on_frame = f_frame, .on_error = f_error,
};

static void f_connect(void)
{
    fpeer = ipc_peer_connect(fbase, SOCK_FILTER, "filter", &f_ops, NULL);
    if (fpeer == NULL) {
        if (!down_logged)
            log_warn("filter: connect %s: %s: stages with rules get 4xx until it is up",
                     SOCK_FILTER, strerror(errno));
        down_logged = 1;
        if (!smtpd_server->stopping)
            schedule_retry();
        return;
    }
    ipc_peer_set_timeout(fpeer, HELLO_TIMEOUT);
}

void smtpd_filter_init(struct event_base *base)
{
    fbase = base;
    policy_init(smtpd_cfg);
    rules_off = smtpd_cfg->rules == NULL || smtpd_cfg->rules[0] == '\0';
    if (!rules_off)
        f_connect();                /* without rules filter is never asked */
}

int smtpd_filter_ask(struct smtpd_session *s, enum stage st, const char *rcpt)
{
    /* Connected but the handshake is still on its way (a fresh smtpd after
     * a reload): queue behind it - filter answers in order after its HELLO,
     * and a filter that never says HELLO fails these within HELLO_TIMEOUT.
     * Once a handshake has failed (filter down or crash-looping), answer
     * 451/421 at once until a HELLO arrives again. */
    if (local_stage(st)) {
        decide_local(s, st, rcpt);
        return 0;
    }
    if (f_unavailable())
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
        .id = ++next_id, .stage = (uint32_t)st, .session = s->id,
        .listener = s->lis->name, .client_ip = s->ip, .client_port = s->port,
        .client_ptr = "unknown", .helo = helo, .auth_user = s->auth_user ? s->auth_user : "",
        .tls_version = tlsv, .tls_cipher = cipher,
        .mail_from = t ? t->sender : "", .rcpt = rcpt ? rcpt : "",
        .nrcpt = s->txn ? (uint32_t)s->txn->nrcpts : 0, .queue_id = "",
        .size = t ? t->size_hint : 0, .path = "",
    };
    if (ipc_peer_send(fpeer, IPC_FILTER_REQ, &q) < 0)
        return -1;                  /* cannot be encoded (logged): 4xx for this one */
    if (phead == NULL && ipc_peer_ready(fpeer)) {
        /* the answer clock starts now, not at the last read of an idle link */
        ipc_peer_set_timeout(fpeer, FILTER_TIMEOUT);
    }
    struct smtpd_pending *p = pending_new(s, st, rcpt);
    p->id = q.id;
    p->prev = ptail;
    if (ptail)
        ptail->next = p;
    else
        phead = p;
    ptail = p;
    return 0;
}

void smtpd_filter_cancel(struct smtpd_session *s)
{
    if (s->pend) {
        s->pend->s = NULL;
        s->pend = NULL;
    }
    filter_muts_free(&s->muts);
    if (ipc_peer_ready(fpeer)) {
        struct ipc_filter_end e = { s->id };
        ipc_peer_send(fpeer, IPC_FILTER_END, &e);
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
    filter_rx_reset(&rx);
    ipc_peer_free(fpeer);
    fpeer = NULL;
    if (retry_ev)
        event_free(retry_ev);
    retry_ev = NULL;
}
