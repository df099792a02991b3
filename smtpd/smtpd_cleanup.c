/*
 * smtpd_cleanup.c - the session's connection to cleanup (private/cleanup).
 *
 * Opened lazily at the first DATA of a session and kept for its later
 * transactions: HELLO, then per transaction CLEANUP_BEGIN, CLEANUP_RCPT×n,
 * CLEANUP_DATA×k (<= SMTPD_CHUNK each), CLEANUP_END, and one CLEANUP_REPLY
 * back. Only that reply lets smtpd say 250. An aborted transaction
 * (END abort=1) closes the connection, so a late answer can never be
 * taken for the next transaction's. A broken connection turns the open
 * transaction into "451 4.3.0"; the next DATA reconnects. When cleanup
 * reads slower than the client sends, the client is throttled
 * (SMTPD_CLEANUP_HIGH/LOW) so the backlog in memory stays bounded.
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

static void c_send(struct smtpd_session *s, enum ipc_type t, const void *m)
{
    buf_t b;
    buf_init(&b, 256);
    ipc_encode(&b, t, m);
    bufferevent_write(s->cleanup, b.data, b.len);
    buf_free(&b);
}

/* The connection failed: drop it and fail the open transaction. May free s
 * (through the 451 reply path). */
static void c_broken(struct smtpd_session *s, const char *why)
{
    log_warn("cleanup connection for [%s]:%u: %s", s->ip, s->port, why);
    int busy = s->cleanup_busy;
    s->cleanup_busy = 0;
    bufferevent_free(s->cleanup);
    s->cleanup = NULL;
    s->cleanup_hello = 0;
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
    struct smtpd_session *s = arg;
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
            c_broken(s, "protocol error");
            return;
        }
        if (!s->cleanup_hello) {
            if (t != IPC_HELLO || ipc_hello_ok(&m.hello, IPC_PROTO_CLEANUP) != 0) {
                c_broken(s, "bad HELLO");
                return;
            }
            s->cleanup_hello = 1;
            evbuffer_drain(in, used);
            continue;
        }
        if (t != IPC_CLEANUP_REPLY || !s->cleanup_busy || s->state != SS_WAIT_DATA) {
            c_broken(s, "unexpected message");
            return;
        }
        const struct ipc_cleanup_reply *cr = &m.cleanup_reply;
        char qid[QUEUE_ID_MAX + 1] = "", enh[16] = "";
        str_copy(qid, sizeof(qid), cr->queue_id);
        str_copy(enh, sizeof(enh), cr->enhanced);
        char *text = xstrdup(cr->text);
        unsigned status = cr->status, code = cr->code;
        evbuffer_drain(in, used);
        s->cleanup_busy = 0;
        bufferevent_set_timeouts(bev, NULL, NULL);
        smtpd_data_cleanup_reply(s, 1, status, qid, code, enh, text);   /* may free s */
        free(text);
        return;
    }
}

static void c_write(struct bufferevent *bev, void *arg)
{
    struct smtpd_session *s = arg;
    if (s->wait == W_THROTTLE && smtpd_cleanup_backlog(s) <= SMTPD_CLEANUP_LOW)
        smtpd_data_unthrottle(s);
}

static void c_event(struct bufferevent *bev, short what, void *arg)
{
    c_broken(arg, what & BEV_EVENT_EOF ? "closed by cleanup" :
                  what & BEV_EVENT_TIMEOUT ? "no answer" : "I/O error");
}

static int c_open(struct smtpd_session *s)
{
    int fd = smtpd_unix_connect(SOCK_CLEANUP);
    if (fd < 0) {
        log_warn("cleanup: connect %s: %s", SOCK_CLEANUP, strerror(errno));
        return -1;
    }
    s->cleanup = bufferevent_socket_new(smtpd_server->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (s->cleanup == NULL)
        log_fatal("bufferevent_socket_new failed");
    bufferevent_setcb(s->cleanup, c_read, c_write, c_event, s);
    bufferevent_setwatermark(s->cleanup, EV_WRITE, SMTPD_CLEANUP_LOW, 0);
    bufferevent_enable(s->cleanup, EV_READ | EV_WRITE);
    s->cleanup_hello = 0;
    struct ipc_hello h = { IPC_PROTO_CLEANUP, IPC_VERSION };
    c_send(s, IPC_HELLO, &h);
    return 0;
}

int smtpd_cleanup_begin(struct smtpd_session *s)
{
    const struct smtpd_txn *t = s->txn;
    if (s->cleanup == NULL && c_open(s) < 0)
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
    bufferevent_set_timeouts(s->cleanup, &tv, NULL);
}

/* Drop the connection; an open transaction is aborted first (best effort:
 * cleanup also treats EOF inside a transaction as an abort). */
void smtpd_cleanup_close(struct smtpd_session *s)
{
    if (s->cleanup == NULL)
        return;
    if (s->cleanup_busy) {
        struct ipc_cleanup_end e = { 1 };
        c_send(s, IPC_CLEANUP_END, &e);
        struct evbuffer *out = bufferevent_get_output(s->cleanup);
        int fd = bufferevent_getfd(s->cleanup);
        while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0)
            ;
    }
    bufferevent_free(s->cleanup);
    s->cleanup = NULL;
    s->cleanup_busy = 0;
    s->cleanup_hello = 0;
}

size_t smtpd_cleanup_backlog(const struct smtpd_session *s)
{
    return s->cleanup ? evbuffer_get_length(bufferevent_get_output(s->cleanup)) : 0;
}
