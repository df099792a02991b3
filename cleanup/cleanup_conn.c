/*
 * cleanup_conn.c - one smtpd connection and the transactions on it.
 *
 * Protocol (lib/ipc/ipc_msgs.def): HELLO(cleanup), then per transaction BEGIN,
 * RCPT x n, DATA x k, END{abort} -> REPLY. Exactly one transaction at a time
 * per connection; anything out of order is a protocol error and drops the
 * connection (and with it the transaction's tmp file). smtpd is not
 * trusted: sizes, counts and every text field are checked again here.
 * A REPLY with status ACCEPT is sent only after the commit pool reported
 * fsync(file), rename and fsync(incoming/) - never before.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cleanup.h"
#include "ipc/ipc_bev.h"
#include "util/log.h"
#include "util/log_event.h"

#define RCPT_LIMIT_HARD 100000   /* QF_MAX_RCPTS, whatever the config says */

static void conn_free(struct cl_conn *c);
static void txn_ask_filter(struct cl_ctx *ctx, struct cl_txn *t);

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static char *dupfield(const char *s)
{
    return xstrdup(s ? s : "");
}

/* Informational envelope text (HELO, PTR, TLS...): control bytes become '?'
 * so a bad peer cannot make the queue file unwritable or unsafe to print.
 * Addresses are not touched: the queue file writer refuses bad ones. */
static char *dupinfo(const char *s)
{
    char *d = dupfield(s);
    for (char *p = d; *p; p++)
        if ((unsigned char)*p < 32 || *p == 127)
            *p = '?';
    return d;
}

/* Record a local failure (its reply: lib/mail/local_reply.def); the first one
 * wins and the rest of the content is discarded. The reply goes out at END. */
void cl_txn_fail(struct cl_txn *t, enum local_status ls)
{
    if (t->failed)
        return;
    const struct local_reply *r = local_reply(ls);
    t->failed = 1;
    t->fail.status = local_reply_verdict(ls);
    t->fail.local = ls;
    t->fail.code = r->code;
    str_copy(t->fail.enhanced, sizeof(t->fail.enhanced), r->enhanced);
    str_copy(t->fail.text, sizeof(t->fail.text), r->text);
    if (t->w) {
        qf_write_abort(t->w);
        t->w = NULL;
    }
}

/* The transaction's outcome: queued (r == NULL, with its queue id), a
 * local failure (by number: smtpd renders it) or a filter's refusal. */
static void send_reply(struct cl_conn *c, const char *qid, const struct cl_reply *r)
{
    /* a draining cleanup (reload, replacement, stop) serves the transactions
     * smtpd started on its connections, and says not to start another */
    uint32_t last = c->ctx->srv->stopping != 0;
    struct ipc_cleanup_reply m = { V_ACCEPT, qid, 0, "", "", LR_NONE, last };
    if (r && r->local != LR_NONE) {
        m.status = (uint32_t)r->status;
        m.local = (uint32_t)r->local;
    } else if (r) {
        m = (struct ipc_cleanup_reply){ (uint32_t)r->status, "", (uint32_t)r->code,
                                        r->enhanced, r->text, LR_NONE, last };
    }
    if (ipc_peer_send(c->ipc, IPC_CLEANUP_REPLY, &m) < 0) {
        /* only a refusal's text can be long: fall back to the plain 451
         * (an accept is short and, queued, must never be turned into one) */
        log_warn("cannot send the reply to %s: %m", c->peer);
        struct ipc_cleanup_reply f = { V_TEMPFAIL, "", 0, "", "", LR_TEMP, last };
        if (r == NULL || ipc_peer_send(c->ipc, IPC_CLEANUP_REPLY, &f) < 0)
            log_error("no reply sent to %s: smtpd answers 451 at its timeout", c->peer);
    }
    ipc_peer_flush(c->ipc);     /* now, without an EPOLLOUT round */
    c->served++;
}

/* Forget a transaction that will not be queued: file gone, memory freed. */
static void txn_drop(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (t->w)
        qf_write_abort(t->w);
    /* removed before the close drops its lock: the name is still ours */
    if (t->path[0] && unlink(t->path) < 0 && errno != ENOENT) {
        log_set_qid(t->qid);
        log_warn("unlink %s: %m", t->path);
        log_set_qid(NULL);
    }
    if (t->fd >= 0)
        close(t->fd);
    cl_tmp_release(t);
    qf_env_free(&t->env);
    free(t->spf_result);
    free(t->spf_domain);
    free(t->received_spf);
    free(t->auth_domain);
    cla_txn_free(t);
    filter_muts_free(&t->muts);
    filter_muts_free(&t->dmuts);
    buf_free(&t->hbuf);
    if (t->conn && t->conn->txn == t)
        t->conn->txn = NULL;
    free(t);
    ctx->ntxn--;
}

/* A log event of this transaction: queue id (from the context), smtpd's
 * session id, sender and recipient count. */
static void cl_ev(struct log_ev *e, enum log_event ev, const struct cl_txn *t)
{
    log_ev_init(e, ev);
    if (t->session)
        log_ev_printf(e, LF_SESSION, "%016llx", (unsigned long long)t->session);
    log_ev_str(e, LF_SENDER, t->env.sender);
    log_ev_num(e, LF_NRCPT, t->env.nrcpts);
}

static void txn_drop_reply(struct cl_ctx *ctx, struct cl_txn *t, const struct cl_reply *r)
{
    struct cl_conn *c = t->conn;
    log_set_qid(t->qid);
    if (r->local != LR_ABORTED) {
        struct log_ev e;
        cl_ev(&e, LE_CLEANUP_REJECT, t);
        log_ev_num(&e, LF_CODE, r->code);
        log_ev_str(&e, LF_DSN, r->enhanced);
        log_ev_str(&e, LF_REASON, r->text);
        log_ev_str(&e, LF_VERDICT, r->local ? NULL : verdict_name((enum verdict)r->status));
        log_ev_emit(&e);
    }
    log_set_qid(NULL);
    if (c)
        send_reply(c, "", r);
    txn_drop(ctx, t);
}

static void fail_and_drop(struct cl_ctx *ctx, struct cl_txn *t, enum local_status ls)
{
    cl_txn_fail(t, ls);
    txn_drop_reply(ctx, t, &t->fail);
}

static void txn_begin(struct cl_conn *c, const struct ipc_cleanup_begin *b)
{
    struct cl_ctx *ctx = c->ctx;
    struct cl_txn *t = xcalloc(1, sizeof(*t));
    t->conn = c;
    t->fd = -1;
    t->arrival_us = now_us();
    t->session = b->session;
    qf_env_init(&t->env);
    buf_init(&t->auth.sigs, 0);
    clh_start(t);
    ctx->ntxn++;
    c->txn = t;
    queue_id_new(t->qid, sizeof(t->qid));
    log_set_qid(t->qid);
    struct qf_env *e = &t->env;
    e->queue_id = xstrdup(t->qid);
    e->arrival = t->arrival_us;
    e->sender = dupfield(b->sender);
    e->client_ip = dupinfo(b->client_ip);
    e->client_port = b->client_port <= 65535 ? b->client_port : 0;
    e->client_ptr = dupinfo(b->client_ptr);
    e->helo = dupinfo(b->helo);
    e->protocol = dupinfo(b->protocol);
    e->auth_user = dupinfo(b->auth_user);
    e->tls = dupinfo(b->tls);
    e->listener = dupinfo(b->listener);
    e->envid = dupinfo(b->envid);
    e->ret = b->ret <= 2 ? b->ret : 0;
    e->flags = b->flags & (QF_F_SMTPUTF8 | QF_F_8BITMIME | QF_F_BINARYMIME);
    t->faccept = (b->flags & QF_F_FACCEPT) != 0;     /* no data stage */
    t->forwarded = (b->flags & QF_F_FORWARDED) != 0;
    t->spf_result = dupinfo(b->spf_result);
    t->spf_domain = dupinfo(b->spf_domain);
    t->received_spf = dupinfo(b->received_spf);
    t->auth_domain = dupinfo(b->auth_domain);
    if (b->local_user && *b->local_user) {
        /* pickup: kept for the Received field and noted in the queue file */
        buf_t note, who;
        buf_init(&note, 128);
        buf_init(&who, 64);
        clh_sanitize(&who, b->local_user, sizeof(t->local_user) - 1, 1);
        t->local = 1;
        t->local_uid = b->local_uid;
        str_copy(t->local_user, sizeof(t->local_user), who.data);
        buf_printf(&note, "local submission: user %s (uid %u) through sendmail", who.data,
                   (unsigned)b->local_uid);
        qf_env_add_note(e, note.data);
        buf_free(&note);
        buf_free(&who);
    }

    if (ctx->cfg->message_size > 0 && b->size_hint > (uint64_t)ctx->cfg->message_size) {
        cl_txn_fail(t, LR_SIZE_DECLARED);
        return;
    }
    if (cl_limit_over(ctx, t)) {   /* the envelope decides: refuse before any content */
        cl_txn_fail(t, LR_RATE);
        return;
    }
    t->fd = cl_tmp_create(t);
    if (t->fd < 0) {
        int err = errno;
        log_error("create %s: %m", t->path);
        t->path[0] = '\0';
        cl_txn_fail(t, local_reply_errno(err, LR_TEMP));
    }
}

static void txn_rcpt(struct cl_conn *c, struct cl_txn *t, const struct ipc_cleanup_rcpt *r)
{
    if (t->failed)
        return;
    int limit = c->ctx->cfg->recipients > 0 ? c->ctx->cfg->recipients : RCPT_LIMIT_HARD;
    if (limit > RCPT_LIMIT_HARD)
        limit = RCPT_LIMIT_HARD;
    if (t->env.nrcpts >= limit) {
        cl_txn_fail(t, LR_TOO_MANY_RCPTS);
        return;
    }
    if (*r->addr == '\0') {
        cl_txn_fail(t, LR_EMPTY_RCPT);
        return;
    }
    qf_env_add_rcpt(&t->env, r->addr, r->orig, r->notify & 15u);
}

/* First content (or END): the envelope is complete, write it out. */
static void txn_open_writer(struct cl_txn *t)
{
    t->state = T_CONTENT;
    if (t->failed)
        return;
    if (t->env.nrcpts == 0) {
        cl_txn_fail(t, LR_NO_RCPTS);
        return;
    }
    t->w = qf_write_begin(t->fd, &t->env);
    if (t->w == NULL) {
        int err = errno;
        log_warn("cannot start queue file: %s", strerror(err));
        cl_txn_fail(t, local_reply_errno(err, LR_TEMP));
    }
}

static void txn_data(struct cl_conn *c, struct cl_txn *t, const struct ipc_bytes *d)
{
    struct cl_ctx *ctx = c->ctx;
    if (t->state == T_ENVELOPE)
        txn_open_writer(t);
    t->size += d->len;
    /* a backstop (smtpd enforces the exact limit): content arrives with LF
     * line ends, so this count is at most smtpd's SIZE count (CRLF = 2),
     * plus the one LF smtpd adds to a BDAT message without a final CRLF */
    if (ctx->cfg->message_size > 0 && t->size > (uint64_t)ctx->cfg->message_size + 1)
        cl_txn_fail(t, LR_TOO_BIG);
    if (t->failed)
        return;
    clh_content(ctx, t, d->p, d->len);
}

static void txn_end(struct cl_conn *c, struct cl_txn *t, uint32_t abort_)
{
    struct cl_ctx *ctx = c->ctx;
    if (abort_) {
        log_set_qid(t->qid);
        log_debug("transaction aborted by smtpd");
        log_set_qid(NULL);
        fail_and_drop(ctx, t, LR_ABORTED);
        return;
    }
    if (t->state == T_ENVELOPE)
        txn_open_writer(t);
    clh_finish(ctx, t);
    if (t->failed) {
        txn_drop_reply(ctx, t, &t->fail);
        return;
    }
    int auth = cla_wanted(ctx, t);
    const void *p;
    size_t n;
    if (auth && qf_write_buffered(t->w, &p, &n) == 0) {
        t->state = T_AUTH;              /* still in memory: the job writes it once */
        cla_submit(ctx, t);
        return;
    }
    struct qf_writer *w = t->w;
    t->w = NULL;
    off_t end;
    if (qf_write_end_at(w, &end) < 0 || cl_tmp_trim(t, end) < 0) {
        int err = errno;
        log_error("write %s: %s", t->path, strerror(err));
        fail_and_drop(ctx, t, local_reply_errno(err, LR_WRITE));
        return;
    }
    if (auth) {
        t->state = T_AUTH;              /* DKIM and Authentication-Results first */
        cla_submit(ctx, t);
        return;
    }
    txn_ask_filter(ctx, t);
}

/* cleanup_auth.c finished with t: on to the data stage. */
void cl_txn_auth_done(struct cl_ctx *ctx, struct cl_txn *t, int cancelled)
{
    if (t->conn == NULL) {          /* smtpd went away: the client retries */
        log_set_qid(t->qid);
        log_info("lost the smtpd connection during authentication checks");
        log_set_qid(NULL);
        txn_drop(ctx, t);
        return;
    }
    if (cancelled || t->auth.err) {
        log_set_qid(t->qid);
        if (t->auth.err)
            log_error("%s: %s", t->auth.where, strerror(t->auth.err));
        log_set_qid(NULL);
        fail_and_drop(ctx, t, cancelled ? LR_SHUTDOWN : local_reply_errno(t->auth.err, LR_WRITE));
        return;
    }
    struct cl_reply rep;
    if (cld_after(ctx, t, &rep)) {      /* authentication.dmarc_failure = reject */
        t->failed = 1;
        t->fail = rep;
        txn_drop_reply(ctx, t, &rep);
        return;
    }
    txn_ask_filter(ctx, t);
}

/* The file is complete: the data stage decides (or nobody needs asking). */
static void txn_ask_filter(struct cl_ctx *ctx, struct cl_txn *t)
{
    t->state = T_FILTER;
    if (t->faccept || !clf_data_wanted(ctx)) {
        /* faccept before DATA, or no data rules: nothing to ask */
        struct ipc_filter_reply next = { .status = V_NEXT, .enhanced = "", .text = "",
                                         .rule = "" };
        cl_txn_filter_done(ctx, t, &next);
        return;
    }
    if (clf_ask(ctx, t) < 0)
        fail_and_drop(ctx, t, LR_TEMP);
}

/* Copy filter text into a reply, without control bytes. */
static void reply_text(char *dst, size_t size, const char *src, const char *dflt)
{
    if (src == NULL || *src == '\0')
        src = dflt;
    size_t i = 0;
    for (; src[i] && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 32 || ch == 127) ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

/* The data-stage verdict arrived (r == NULL: the filter failed). */
void cl_txn_filter_done(struct cl_ctx *ctx, struct cl_txn *t, const struct ipc_filter_reply *r)
{
    if (r == NULL) {
        log_set_qid(t->qid);
        log_warn("no data verdict from filter: deferring");
        log_set_qid(NULL);
        fail_and_drop(ctx, t, LR_TEMP);
        return;
    }
    enum verdict v = r->status < V__COUNT ? (enum verdict)r->status : V_TEMPFAIL;
    if (r->rule[0]) {                       /* a rule decided the data stage */
        log_set_qid(t->qid);
        struct log_ev e;
        cl_ev(&e, LE_FILTER, t);
        log_ev_str(&e, LF_STAGE, "data");
        log_ev_str(&e, LF_VERDICT, verdict_name(v));
        log_ev_str(&e, LF_RULE, r->rule);
        log_ev_str(&e, LF_REASON, r->text[0] ? r->text : NULL);
        log_ev_emit(&e);
        log_set_qid(NULL);
    }
    if (v == V_REJECT || v == V_DENY || v == V_DEFER || v == V_TEMPFAIL) {
        const struct verdict_reply *d = verdict_default(v, STAGE_DATA);
        int code = (int)r->code;
        int want = d->code / 100;               /* 4 or 5: the class must match */
        if (code < 400 || code > 599 || code / 100 != want)
            code = d->code;
        struct cl_reply rep = { v, LR_NONE, code, "", "" };
        const char *enh = r->enhanced[0] && r->enhanced[0] == '0' + want ? r->enhanced : d->enhanced;
        reply_text(rep.enhanced, sizeof(rep.enhanced), enh, d->enhanced);
        reply_text(rep.text, sizeof(rep.text), r->text, d->text);
        t->failed = 1;
        t->fail = rep;
        txn_drop_reply(ctx, t, &rep);
        return;
    }
    log_set_qid(t->qid);
    if (clr_apply_data(t, v, r->rule) < 0) {
        struct cl_conn *c = t->conn;
        log_info("discarded: the rules removed every recipient");
        log_set_qid(NULL);
        if (c)
            send_reply(c, t->qid, NULL);
        txn_drop(ctx, t);
        return;
    }
    log_set_qid(NULL);
    t->quarantine = t->qname[0] != '\0';
    t->state = T_COMMIT;
    clc_submit(ctx->pool, t);
}

/* The commit pool is done with t (runs in the event loop). */
void cl_txn_commit_done(struct cl_txn *t, void *arg)
{
    struct cl_ctx *ctx = arg;
    struct cl_conn *c = t->conn;
    if (t->auth.fused) {                /* the auth job's loop part, now */
        struct cl_reply none;
        cla_log(t);
        cld_after(ctx, t, &none);       /* disposition none: log and report line only */
    }
    log_set_qid(t->qid);
    if (t->cerr) {
        log_error("commit failed at %s: %s", t->cwhere, strerror(t->cerr));
        t->fd = -1;                     /* closed (or failed closing) by the worker */
        t->path[0] = '\0';              /* the worker unlinked what was left */
        log_set_qid(NULL);
        fail_and_drop(ctx, t, local_reply_errno(t->cerr, LR_WRITE));
        return;
    }
    if (t->cbatch > 0)
        log_trace(TRACE_QUEUE, "committed: %s/%s (directory fsync batch of %d%s)",
                  t->quarantine ? "quarantine" : "incoming", t->qid, t->cbatch,
                  t->auth.fused ? ", by the authentication worker" : "");
    else
        log_trace(TRACE_QUEUE, "committed: incoming/%s (name synced with the file%s)", t->qid,
                  t->auth.fused ? ", by the authentication worker" : "");
    struct log_ev e;
    cl_ev(&e, LE_CLEANUP, t);
    log_ev_num(&e, LF_SIZE, (long long)t->size);
    log_ev_emit(&e);
    cl_limit_count(ctx, t);
    if (t->quarantine) {
        cl_ev(&e, LE_QUARANTINE, t);
        log_ev_str(&e, LF_QUEUE, t->qname);
        log_ev_str(&e, LF_RULE, t->qrule);
        log_ev_str(&e, LF_STAGE, "data");
        log_ev_emit(&e);
    }
    if (c)
        send_reply(c, t->qid, NULL);
    else
        log_warn("smtpd went away before the reply (message is queued)");
    if (!t->quarantine)
        clq_wakeup(ctx, t->qid);
    log_set_qid(NULL);
    t->fd = -1;
    t->path[0] = '\0';
    txn_drop(ctx, t);
}

/* One decoded frame after smtpd's HELLO; -1 = drop the connection. */
static int conn_frame(struct cl_conn *c, enum ipc_type type, const union ipc_msg *m)
{
    struct cl_txn *t = c->txn;
    if (t)
        log_set_qid(t->qid);
    if (type == IPC_CLEANUP_BEGIN && t == NULL) {
        /* also while draining: sent before smtpd heard CLEANUP_DRAIN (or on
         * a connection that had served none); served, and its reply says
         * not to reuse the connection */
        txn_begin(c, &m->cleanup_begin);
        return 0;
    }
    if (t != NULL && t->state >= T_AUTH && type == IPC_CLEANUP_END && m->cleanup_end.abort) {
        /* smtpd's client left while its END was being worked on (an smtpd
         * before this one said so; now it closes): the work in flight (auth
         * worker, filter, commit) owns t, conn_free says who ends it */
        log_info("lost connection with %s after the end of data", c->peer);
        return -1;
    }
    if (t == NULL || t->state >= T_AUTH)
        goto bad;
    switch (type) {
    case IPC_CLEANUP_RCPT:
        if (t->state != T_ENVELOPE)
            goto bad;
        txn_rcpt(c, t, &m->cleanup_rcpt);
        return 0;
    case IPC_CLEANUP_MUT:
        if (t->state != T_ENVELOPE || clr_smtpd_mut(t, &m->cleanup_mut) < 0)
            goto bad;
        return 0;
    case IPC_CLEANUP_DATA:
        txn_data(c, t, &m->cleanup_data.data);
        return 0;
    case IPC_CLEANUP_END:
        txn_end(c, t, m->cleanup_end.abort);
        return 0;
    default:
        break;
    }
bad:
    log_warn("protocol error from %s: unexpected %s", c->peer, ipc_type_name(type));
    return -1;
}

static int conn_on_frame(struct ipc_peer *p, enum ipc_type t, union ipc_msg *m, void *arg)
{
    int r = conn_frame(arg, t, m);
    log_set_qid(NULL);
    return r;
}

/* Broken, closed or misbehaving (already logged): drop it. */
static void conn_error(struct ipc_peer *p, enum ipc_peer_why why, void *arg)
{
    struct cl_conn *c = arg;
    if (why == IPC_PEER_IO)
        log_debug("connection from %s: %s", c->peer, strerror(EVUTIL_SOCKET_ERROR()));
    conn_free(c);
    log_set_qid(NULL);
}

static const struct ipc_peer_ops conn_ops = {
    .proto = IPC_PROTO_CLEANUP, .server = 1, .on_frame = conn_on_frame,
    .on_error = conn_error, .read_direct = 1,
};

void cl_accept(struct cl_ctx *ctx, int fd)
{
    struct cl_conn *c = xcalloc(1, sizeof(*c));
    c->ctx = ctx;
    c->serial = ++ctx->conn_serial;
    snprintf(c->peer, sizeof(c->peer), "smtpd#%llu", (unsigned long long)c->serial);
    c->ipc = ipc_peer_accept(ctx->srv->base, fd, c->peer, &conn_ops, c);
    c->next = ctx->conns;
    if (ctx->conns)
        ctx->conns->prev = c;
    ctx->conns = c;
}

static void conn_free(struct cl_conn *c)
{
    struct cl_ctx *ctx = c->ctx;
    struct cl_txn *t = c->txn;
    if (t) {
        t->conn = NULL;
        c->txn = NULL;
        switch (t->state) {
        case T_ENVELOPE:
        case T_CONTENT:
            log_set_qid(t->qid);
            log_info("lost connection with %s during the transaction", c->peer);
            log_set_qid(NULL);
            txn_drop(ctx, t);
            break;
        case T_FILTER:
            clf_cancel(ctx, t);
            txn_drop(ctx, t);
            break;
        case T_AUTH:        /* the worker finishes; cl_txn_auth_done drops it */
        case T_COMMIT:
            break;          /* the pool finishes it; cl_txn_commit_done frees it */
        }
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        ctx->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ipc_peer_free(c->ipc);
    free(c);
}

void cl_conn_drain(struct cl_ctx *ctx)
{
    struct ipc_cleanup_drain d = { 0 };
    for (struct cl_conn *c = ctx->conns; c; c = c->next)
        if (c->txn == NULL && c->served > 0 && ipc_peer_send(c->ipc, IPC_CLEANUP_DRAIN, &d) == 0)
            ipc_peer_flush(c->ipc);
}

void cl_conn_close_all(struct cl_ctx *ctx)
{
    while (ctx->conns)
        conn_free(ctx->conns);
}
