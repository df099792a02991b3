/*
 * smtpd_cleanup.c - connections to cleanup (private/cleanup), pooled per
 * smtpd process.
 *
 * A transaction takes a connection at DATA / first BDAT chunk: an idle one
 * from the pool (most recently used first) or a new one (HELLO is sent at
 * once and its answer read whenever it comes, so the BEGIN is pipelined
 * behind it). Then CLEANUP_BEGIN, CLEANUP_RCPT×n, CLEANUP_DATA×k
 * (<= SMTPD_CHUNK each), CLEANUP_END, and one CLEANUP_REPLY back; only that
 * reply lets smtpd say 250, and with it the connection goes back to the pool
 * (cleanup has forgotten the transaction by then, so the next BEGIN on it is
 * clean). With one message per client connection this saves a
 * connect/accept/HELLO/close per message in smtpd and cleanup.
 *
 * An aborted transaction (END abort=1) closes its connection instead, so a
 * late answer can never be taken for another transaction's. A broken
 * connection turns the open transaction into "451 4.3.0"; the next DATA
 * takes another connection. An idle connection that hears anything (EOF:
 * cleanup restarted) is dropped. The pool keeps at most CC_IDLE_MAX idle
 * connections (extra ones are closed when returned); connections in use are
 * at most one per session in DATA/BDAT, so the total is bounded by
 * limits.sessions like before. When cleanup reads slower than the client
 * sends, the client is throttled (SMTPD_CLEANUP_HIGH/LOW) so the backlog in
 * memory stays bounded.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "smtpd.h"
#include "ipc/ipc_bev.h"
#include "mail/qfile.h"
#include "mail/spool.h"
#include "util/log.h"

#define CLEANUP_REPLY_TIMEOUT 600   /* seconds for cleanup to answer END */
#define CC_IDLE_MAX           32    /* idle connections kept per smtpd process */

struct smtpd_cconn {
    struct ipc_peer *ipc;
    struct smtpd_session *s;        /* NULL while idle in the pool */
    int last;                       /* cleanup is draining: not back to the pool */
    struct smtpd_cconn *next;       /* idle list */
};

static struct smtpd_cconn *cc_idle;
static int cc_nidle;

static void cc_free(struct smtpd_cconn *cc)
{
    ipc_peer_free(cc->ipc);
    free(cc);
}

static void cc_unidle(struct smtpd_cconn *cc)
{
    for (struct smtpd_cconn **pp = &cc_idle; *pp; pp = &(*pp)->next)
        if (*pp == cc) {
            *pp = cc->next;
            cc_nidle--;
            return;
        }
}

/* The transaction is over and its reply read: keep the connection (unless
 * cleanup said it is draining: last). */
static void cc_release(struct smtpd_session *s, int last)
{
    struct smtpd_cconn *cc = s->cleanup;
    s->cleanup = NULL;
    s->cleanup_busy = 0;
    cc->s = NULL;
    if (!ipc_peer_ready(cc->ipc)) { /* cannot happen (REPLY after HELLO) */
        cc_free(cc);
        return;
    }
    if (last || cc_nidle >= CC_IDLE_MAX || smtpd_server->stopping) {
        cc_free(cc);
        return;
    }
    ipc_peer_set_timeout(cc->ipc, 0);
    cc->next = cc_idle;
    cc_idle = cc;
    cc_nidle++;
}

/* Send one frame of the open transaction. A frame that cannot be encoded
 * (EMSGSIZE) or queued leaves cleanup with a partial transaction: mark it
 * broken, so it is aborted and answered 451 instead of committed. */
static int c_send(struct smtpd_session *s, enum ipc_type t, const void *m)
{
    if (ipc_peer_send(s->cleanup->ipc, t, m) == 0)
        return 0;
    if (!s->cleanup_broken)
        log_warn("cleanup: cannot send %s for [%s]:%u: %s", ipc_type_name(t), s->ip, s->port,
                 strerror(errno));
    s->cleanup_broken = 1;
    return -1;
}

/* The connection failed: drop it and fail the open transaction. May free s
 * (through the 451 reply path). */
static void c_broken(struct smtpd_cconn *cc, const char *why)
{
    struct smtpd_session *s = cc->s;
    if (s == NULL) {                /* idle: cleanup went away (restart) */
        log_debug("idle cleanup connection: %s", why);
        cc_unidle(cc);
        cc_free(cc);
        return;
    }
    log_warn("cleanup connection for [%s]:%u: %s", s->ip, s->port, why);
    int busy = s->cleanup_busy;
    s->cleanup_busy = 0;
    s->cleanup = NULL;
    cc_free(cc);
    if (!busy)
        return;
    if (s->state == SS_WAIT_DATA) {
        smtpd_data_cleanup_reply(s, 0, V_TEMPFAIL, LR_NONE, "", 0, "", "");
    } else {
        s->cleanup_broken = 1;      /* keep reading DATA, answer 451 at its end */
        if (s->wait == W_THROTTLE)
            smtpd_data_unthrottle(s);
    }
}

/* The one message cleanup sends after its HELLO: the transaction's reply.
 * With it the connection goes back to the pool. */
static int c_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m, void *arg)
{
    struct smtpd_cconn *cc = arg;
    struct smtpd_session *s = cc->s;
    if (t == IPC_CLEANUP_DRAIN) {
        /* idle: dropped now (c_error), the next one is new; taken
         * meanwhile: its transaction is served, then it is closed */
        cc->last = 1;
        return s == NULL ? -1 : 0;
    }
    if (t != IPC_CLEANUP_REPLY || s == NULL || !s->cleanup_busy ||
        s->state != SS_WAIT_DATA)
        return -1;
    const struct ipc_cleanup_reply *cr = &m->cleanup_reply;
    char qid[QUEUE_ID_MAX + 1] = "", enh[16] = "", text[512];
    str_copy(qid, sizeof(qid), cr->queue_id);
    str_copy(enh, sizeof(enh), cr->enhanced);
    str_copy(text, sizeof(text), cr->text);   /* replies are cut at 400 anyway */
    unsigned status = cr->status, code = cr->code, local = cr->local;
    cc_release(s, cr->last != 0 || cc->last);   /* may free the frame: all is copied */
    log_set_session(s->sid);
    smtpd_data_cleanup_reply(s, 1, status, local, qid, code, enh, text);   /* may free s */
    log_set_session(NULL);
    return 0;
}

static void c_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    struct smtpd_cconn *cc = arg;
    if (why == IPC_PEER_REFUSED && cc->s == NULL) {
        /* nothing but CLEANUP_DRAIN may follow a REPLY: don't reuse it */
        if (cc->last)
            log_debug("idle cleanup connection: cleanup is draining");
        else
            log_warn("cleanup connection: unexpected data after the reply");
        cc_unidle(cc);
        cc_free(cc);
        return;
    }
    c_broken(cc, why == IPC_PEER_EOF ? "closed by cleanup" :
                 why == IPC_PEER_TIMEOUT ? "no answer" :
                 why == IPC_PEER_IO ? "I/O error" :
                 why == IPC_PEER_HELLO ? "bad HELLO" :
                 why == IPC_PEER_PROTO ? "protocol error" : "unexpected message");
}

/* Output drained to SMTPD_CLEANUP_LOW: let a throttled client send again. */
static void c_drained(struct ipc_peer *p, void *arg)
{
    struct smtpd_cconn *cc = arg;
    struct smtpd_session *s = cc->s;
    if (s && s->wait == W_THROTTLE && smtpd_cleanup_backlog(s) <= SMTPD_CLEANUP_LOW)
        smtpd_data_unthrottle(s);
}

static const struct ipc_peer_ops cc_ops = {
    .proto = IPC_PROTO_CLEANUP, .connect_nonblock = 1, .out_low = SMTPD_CLEANUP_LOW,
    .read_direct = 1,
    .on_frame = c_frame, .on_error = c_error, .on_drained = c_drained,
};

/* Take an idle connection or open one; 0 or -1. */
static int c_take(struct smtpd_session *s)
{
    struct smtpd_cconn *cc = cc_idle;
    if (cc) {
        cc_idle = cc->next;
        cc_nidle--;
        cc->next = NULL;
        cc->s = s;
        s->cleanup = cc;
        return 0;
    }
    cc = xcalloc(1, sizeof(*cc));
    cc->ipc = ipc_peer_connect(smtpd_server->base, SOCK_CLEANUP, "cleanup", &cc_ops, cc);
    if (cc->ipc == NULL) {
        log_warn("cleanup: connect %s: %s", SOCK_CLEANUP, strerror(errno));
        free(cc);
        return -1;
    }
    cc->s = s;
    s->cleanup = cc;
    return 0;
}

int smtpd_cleanup_begin(struct smtpd_session *s)
{
    const struct smtpd_txn *t = s->txn;
    if (s->cleanup == NULL && c_take(s) < 0)
        return -1;
    struct ipc_cleanup_begin b = {
        .session = s->id, .listener = s->lis->name, .sender = t->sender,
        .client_ip = s->ip, .client_port = s->port, .client_ptr = smtpd_dns_ptr(s),
        .helo = s->helo ? s->helo : "", .protocol = smtpd_tls_protocol(s),
        .auth_user = s->auth_user ? s->auth_user : "",
        .auth_domain = s->auth_domain ? s->auth_domain : "",
        .tls = s->tls_info ? s->tls_info : "", .envid = t->envid ? t->envid : "", .ret = t->ret,
        .flags = t->flags | (s->faccept || t->faccept ? QF_F_FACCEPT : 0),
        .size_hint = t->size_hint, .spf_result = smtpd_spf_result(t),
        .spf_domain = smtpd_spf_domain(t), .received_spf = smtpd_spf_header(t),
    };
    s->cleanup_busy = 1;
    s->cleanup_broken = 0;
    c_send(s, IPC_CLEANUP_BEGIN, &b);
    for (int i = 0; i < t->nrcpts; i++) {
        struct ipc_cleanup_rcpt r = { t->rcpts[i], t->orcpts[i] ? t->orcpts[i] : "",
                                      t->notify[i] };
        c_send(s, IPC_CLEANUP_RCPT, &r);
    }
    /* header mutations and quarantine decided before DATA (smtpd_rules.c) */
    const struct filter_muts *ml[2] = { &s->muts, &t->muts };
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ml[k]->n; i++) {
            const struct filter_mut *m = &ml[k]->v[i];
            struct ipc_cleanup_mut cm = { m->kind, m->rcpt, m->arg, m->arg2, m->rule };
            c_send(s, IPC_CLEANUP_MUT, &cm);
        }
    if (s->cleanup_broken) {        /* the envelope did not fit: abort now */
        smtpd_cleanup_close(s);
        s->cleanup_broken = 0;
        return -1;
    }
    /* goes with the first content sent or the END (smtpd_cleanup_end
     * flushes): one write per message instead of two and an EPOLLOUT round */
    ipc_peer_hold(s->cleanup->ipc);
    return 0;
}

void smtpd_cleanup_data(struct smtpd_session *s, const void *p, size_t n)
{
    if (s->cleanup == NULL || !s->cleanup_busy || s->cleanup_broken || n == 0)
        return;
    struct ipc_cleanup_data d = { { p, n } };
    c_send(s, IPC_CLEANUP_DATA, &d);
}

int smtpd_cleanup_end(struct smtpd_session *s, int abort)
{
    if (s->cleanup == NULL || !s->cleanup_busy)
        return -1;
    if (abort) {
        smtpd_cleanup_close(s);
        return 0;
    }
    struct ipc_cleanup_end e = { 0 };
    if (s->cleanup_broken || c_send(s, IPC_CLEANUP_END, &e) < 0) {
        smtpd_cleanup_close(s);     /* sends END abort=1 */
        return -1;
    }
    ipc_peer_set_timeout(s->cleanup->ipc, CLEANUP_REPLY_TIMEOUT);
    /* the transaction's frames now, in one write: no EPOLLOUT round */
    ipc_peer_flush(s->cleanup->ipc);
    return 0;
}

/* Drop the session's connection (never back to the pool: a reply may still
 * come); an open transaction is aborted first (best effort: cleanup also
 * treats EOF inside a transaction as an abort). After END (SS_WAIT_DATA)
 * there is nothing to abort: cleanup may be signing, filtering or
 * committing the message, and the close alone tells it the client left. */
void smtpd_cleanup_close(struct smtpd_session *s)
{
    struct smtpd_cconn *cc = s->cleanup;
    if (cc == NULL)
        return;
    if (s->cleanup_busy && s->state != SS_WAIT_DATA) {
        struct ipc_cleanup_end e = { 1 };
        c_send(s, IPC_CLEANUP_END, &e);
        ipc_peer_flush(cc->ipc);
    }
    s->cleanup = NULL;
    s->cleanup_busy = 0;
    cc_free(cc);
}

size_t smtpd_cleanup_backlog(const struct smtpd_session *s)
{
    return s->cleanup ? ipc_peer_backlog(s->cleanup->ipc) : 0;
}

/* Stopping: close the idle connections. */
void smtpd_cleanup_shutdown(void)
{
    while (cc_idle) {
        struct smtpd_cconn *cc = cc_idle;
        cc_idle = cc->next;
        cc_free(cc);
    }
    cc_nidle = 0;
}
