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
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "smtpd.h"
#include "ipc.h"
#include "qfile.h"
#include "spool.h"
#include "log.h"

#define CLEANUP_REPLY_TIMEOUT 600   /* seconds for cleanup to answer END */
#define CC_IDLE_MAX           32    /* idle connections kept per smtpd process */

struct smtpd_cconn {
    struct bufferevent *bev;
    struct smtpd_session *s;        /* NULL while idle in the pool */
    int hello;                      /* peer HELLO received */
    struct smtpd_cconn *next;       /* idle list */
};

static struct smtpd_cconn *cc_idle;
static int cc_nidle;

static void cc_free(struct smtpd_cconn *cc)
{
    bufferevent_free(cc->bev);
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

/* The transaction is over and its reply read: keep the connection. */
static void cc_release(struct smtpd_session *s)
{
    struct smtpd_cconn *cc = s->cleanup;
    s->cleanup = NULL;
    s->cleanup_busy = 0;
    cc->s = NULL;
    if (!cc->hello) {               /* cannot happen (REPLY after HELLO) */
        cc_free(cc);
        return;
    }
    if (cc_nidle >= CC_IDLE_MAX || smtpd_server->stopping) {
        cc_free(cc);
        return;
    }
    bufferevent_set_timeouts(cc->bev, NULL, NULL);
    cc->next = cc_idle;
    cc_idle = cc;
    cc_nidle++;
}

static void c_send(struct smtpd_session *s, enum ipc_type t, const void *m)
{
    static buf_t b;                 /* reused: no malloc per frame */
    if (b.data == NULL)
        buf_init(&b, 1024);
    buf_reset(&b);
    ipc_encode(&b, t, m);
    bufferevent_write(s->cleanup->bev, b.data, b.len);
    if (b.cap > 256 * 1024)         /* a big DATA frame: don't keep it */
        buf_free(&b);
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
        smtpd_data_cleanup_reply(s, 0, V_TEMPFAIL, "", 0, "", "");
    } else {
        s->cleanup_broken = 1;      /* keep reading DATA, answer 451 at its end */
        if (s->wait == W_THROTTLE)
            smtpd_data_unthrottle(s);
    }
}

static void c_read(struct bufferevent *bev, void *arg)
{
    struct smtpd_cconn *cc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in), used = 0;
        if (len == 0)
            return;
        const unsigned char *p = evbuffer_pullup(in, (ssize_t)len);
        enum ipc_type t;
        union ipc_msg m;
        int r = ipc_next(p, len, &t, &m, &used, "cleanup");
        if (r == 0)
            return;
        if (r < 0) {
            c_broken(cc, "protocol error");
            return;
        }
        if (!cc->hello) {
            if (t != IPC_HELLO || ipc_hello_ok(&m.hello, IPC_PROTO_CLEANUP) != 0) {
                c_broken(cc, "bad HELLO");
                return;
            }
            cc->hello = 1;
            evbuffer_drain(in, used);
            continue;
        }
        struct smtpd_session *s = cc->s;
        if (t != IPC_CLEANUP_REPLY || s == NULL || !s->cleanup_busy ||
            s->state != SS_WAIT_DATA) {
            c_broken(cc, "unexpected message");
            return;
        }
        const struct ipc_cleanup_reply *cr = &m.cleanup_reply;
        char qid[QUEUE_ID_MAX + 1] = "", enh[16] = "", text[512];
        str_copy(qid, sizeof(qid), cr->queue_id);
        str_copy(enh, sizeof(enh), cr->enhanced);
        str_copy(text, sizeof(text), cr->text);   /* replies are cut at 400 anyway */
        unsigned status = cr->status, code = cr->code;
        evbuffer_drain(in, used);
        if (evbuffer_get_length(in) == 0) {
            cc_release(s);
        } else {                    /* nothing may follow a REPLY: don't reuse it */
            log_warn("cleanup connection: unexpected data after the reply");
            s->cleanup_busy = 0;
            smtpd_cleanup_close(s); /* not busy: just closes */
        }
        smtpd_data_cleanup_reply(s, 1, status, qid, code, enh, text);   /* may free s */
        return;
    }
}

static void c_write(struct bufferevent *bev, void *arg)
{
    struct smtpd_cconn *cc = arg;
    struct smtpd_session *s = cc->s;
    if (s && s->wait == W_THROTTLE && smtpd_cleanup_backlog(s) <= SMTPD_CLEANUP_LOW)
        smtpd_data_unthrottle(s);
}

static void c_event(struct bufferevent *bev, short what, void *arg)
{
    c_broken(arg, what & BEV_EVENT_EOF ? "closed by cleanup" :
                  what & BEV_EVENT_TIMEOUT ? "no answer" : "I/O error");
}

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
    int fd = smtpd_unix_connect(SOCK_CLEANUP);
    if (fd < 0) {
        log_warn("cleanup: connect %s: %s", SOCK_CLEANUP, strerror(errno));
        return -1;
    }
    cc = xcalloc(1, sizeof(*cc));
    cc->bev = bufferevent_socket_new(smtpd_server->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (cc->bev == NULL)
        log_fatal("bufferevent_socket_new failed");
    cc->s = s;
    s->cleanup = cc;
    bufferevent_setcb(cc->bev, c_read, c_write, c_event, cc);
    bufferevent_setwatermark(cc->bev, EV_WRITE, SMTPD_CLEANUP_LOW, 0);
    bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
    struct ipc_hello h = { IPC_PROTO_CLEANUP, IPC_VERSION };
    c_send(s, IPC_HELLO, &h);
    return 0;
}

int smtpd_cleanup_begin(struct smtpd_session *s)
{
    const struct smtpd_txn *t = s->txn;
    if (s->cleanup == NULL && c_take(s) < 0)
        return -1;
    struct ipc_cleanup_begin b = {
        .session = s->id, .listener = s->lis->name, .sender = t->sender,
        .client_ip = s->ip, .client_port = s->port, .client_ptr = "unknown",
        .helo = s->helo ? s->helo : "", .protocol = smtpd_tls_protocol(s),
        .auth_user = s->auth_user ? s->auth_user : "",
        .tls = s->tls_info ? s->tls_info : "", .envid = t->envid ? t->envid : "", .ret = t->ret,
        .flags = t->flags | (s->faccept || t->faccept ? QF_F_FACCEPT : 0),
        .size_hint = t->size_hint,
    };
    c_send(s, IPC_CLEANUP_BEGIN, &b);
    for (int i = 0; i < t->nrcpts; i++) {
        struct ipc_cleanup_rcpt r = { t->rcpts[i], t->orcpts[i] ? t->orcpts[i] : "",
                                      t->notify[i] };
        c_send(s, IPC_CLEANUP_RCPT, &r);
    }
    /* header mutations and quarantine decided before DATA (smtpd_rules.c) */
    const struct smtpd_muts *ml[2] = { &s->muts, &t->muts };
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < ml[k]->n; i++) {
            const struct smtpd_mut *m = &ml[k]->v[i];
            struct ipc_cleanup_mut cm = { m->kind, m->rcpt, m->arg, m->arg2, m->rule };
            c_send(s, IPC_CLEANUP_MUT, &cm);
        }
    s->cleanup_busy = 1;
    s->cleanup_broken = 0;
    return 0;
}

void smtpd_cleanup_data(struct smtpd_session *s, const void *p, size_t n)
{
    if (s->cleanup == NULL || !s->cleanup_busy || n == 0)
        return;
    struct ipc_cleanup_data d = { { p, n } };
    c_send(s, IPC_CLEANUP_DATA, &d);
}

void smtpd_cleanup_end(struct smtpd_session *s, int abort)
{
    if (s->cleanup == NULL || !s->cleanup_busy)
        return;
    if (abort) {
        smtpd_cleanup_close(s);
        return;
    }
    struct ipc_cleanup_end e = { 0 };
    c_send(s, IPC_CLEANUP_END, &e);
    struct timeval tv = { CLEANUP_REPLY_TIMEOUT, 0 };
    bufferevent_set_timeouts(s->cleanup->bev, &tv, NULL);
}

/* Drop the session's connection (never back to the pool: a reply may still
 * come); an open transaction is aborted first (best effort: cleanup also
 * treats EOF inside a transaction as an abort). */
void smtpd_cleanup_close(struct smtpd_session *s)
{
    struct smtpd_cconn *cc = s->cleanup;
    if (cc == NULL)
        return;
    if (s->cleanup_busy) {
        struct ipc_cleanup_end e = { 1 };
        c_send(s, IPC_CLEANUP_END, &e);
        struct evbuffer *out = bufferevent_get_output(cc->bev);
        int fd = bufferevent_getfd(cc->bev);
        while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
            ;
    }
    s->cleanup = NULL;
    s->cleanup_busy = 0;
    cc_free(cc);
}

size_t smtpd_cleanup_backlog(const struct smtpd_session *s)
{
    return s->cleanup ? evbuffer_get_length(bufferevent_get_output(s->cleanup->bev)) : 0;
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
