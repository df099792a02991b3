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
 * silent for FILTER_TIMEOUT with requests outstanding is dropped too.
 * filter follows its HELLO with FILTER_STAGES (again after each reload):
 * stages whose bit is clear are not asked (smtpd_filter_wanted), except
 * rcpt for a non-local recipient (relay control is filter's default
 * policy). A FILTER_REPLY is followed at once by its nmut FILTER_MUTs; the
 * verdict is delivered when the last one arrived, the mutations readable
 * through smtpd_filter_muts() during that call. A closing session sends
 * FILTER_END so filter frees its rule context.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "smtpd.h"
#include "addr.h"
#include "ipc.h"
#include "rules.h"
#include "spool.h"
#include "log.h"

#define FILTER_TIMEOUT     120      /* seconds without an answer while requests wait */
#define HELLO_TIMEOUT      2        /* seconds for filter's HELLO (master holds the
                                     * socket: connect succeeds while filter is down) */
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     10000
#define MAX_REPLY_MUTS     10000    /* more in one reply: protocol error */

struct smtpd_pending {
    struct smtpd_pending *next, *prev;
    uint64_t id;
    struct smtpd_session *s;        /* NULL once the session is gone */
};

static struct event_base *fbase;
static struct bufferevent *fbev;
static struct event *retry_ev;
static int f_hello, backoff_ms, down_logged;
static struct smtpd_pending *phead, *ptail;
static uint64_t next_id;
static uint32_t stage_mask;         /* FILTER_STAGES; until it arrives: ask all */
static int have_mask;

/* The reply being assembled while its FILTER_MUTs arrive. */
static struct {
    int active;
    uint64_t id;
    uint32_t status, code, want, got;
    char enhanced[16], rule[128];
    char *text;
    struct smtpd_muts muts;
} cur;
static const struct smtpd_mut *cur_muts;   /* during smtpd_cmd_verdict */
static int cur_nmuts;

void smtpd_muts_add(struct smtpd_muts *l, const struct smtpd_mut *m)
{
    if (l->n >= SMTPD_MAX_MUTS)
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->v = xrealloc(l->v, sizeof(*l->v) * (size_t)l->cap);
    }
    struct smtpd_mut *d = &l->v[l->n++];
    d->kind = m->kind;
    d->rcpt = xstrdup(m->rcpt ? m->rcpt : "");
    d->arg = xstrdup(m->arg ? m->arg : "");
    d->arg2 = xstrdup(m->arg2 ? m->arg2 : "");
    d->rule = xstrdup(m->rule ? m->rule : "");
}

void smtpd_muts_free(struct smtpd_muts *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].rcpt);
        free(l->v[i].arg);
        free(l->v[i].arg2);
        free(l->v[i].rule);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

const struct smtpd_mut *smtpd_filter_muts(int *n_r)
{
    *n_r = cur_nmuts;
    return cur_muts;
}

static void cur_reset(void)
{
    smtpd_muts_free(&cur.muts);
    free(cur.text);
    memset(&cur, 0, sizeof(cur));
}

/* Local recipient (as filter's default policy sees it): postmaster, or a
 * local domain without sender routing ('%', '!') in the local part. */
static int rcpt_local(const char *rcpt)
{
    size_t llen = addr_local_part_len(rcpt);
    const char *dom = addr_domain(rcpt);
    if (llen == 10 && strncasecmp(rcpt, "postmaster", 10) == 0 &&
        (*dom == '\0' || config_is_local_domain(smtpd_cfg, dom)))
        return 1;
    return *dom != '\0' && memchr(rcpt, '%', llen) == NULL && memchr(rcpt, '!', llen) == NULL &&
           config_is_local_domain(smtpd_cfg, dom);
}

int smtpd_filter_wanted(enum stage st, const char *rcpt)
{
    if (!have_mask || (stage_mask & (1u << st)))
        return 1;
    return st == STAGE_RCPT && !rcpt_local(rcpt ? rcpt : "");
}

static void f_connect(void);

/* Non-blocking connect to a spool-relative Unix socket: fd or -1. */
int smtpd_unix_connect(const char *path)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (str_copy(sun.sun_path, sizeof(sun.sun_path), path) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

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

/* The connection broke: every waiting session gets a temporary failure. */
static void f_fail(const char *why)
{
    if (!down_logged)
        log_warn("filter connection: %s: answering 4xx until it is back", why);
    down_logged = 1;
    if (fbev) {
        bufferevent_free(fbev);
        fbev = NULL;
    }
    f_hello = 0;
    have_mask = 0;
    cur_reset();
    while (phead) {
        struct smtpd_pending *p = phead;
        struct smtpd_session *s = p->s;
        unlink_pending(p);
        free(p);
        if (s) {
            struct smtpd_verdict v = { V_TEMPFAIL, 0, "", "", "(filter unavailable)" };
            s->pend = NULL;
            smtpd_cmd_verdict(s, &v);      /* may free s */
        }
    }
    if (!smtpd_server->stopping)
        schedule_retry();
}

/* The reply in cur is complete (mutations included): deliver it. */
static void on_reply(void)
{
    struct smtpd_pending *p;
    for (p = phead; p; p = p->next)
        if (p->id == cur.id)
            break;
    if (p == NULL) {
        log_warn("filter: reply for unknown request %llu: ignored", (unsigned long long)cur.id);
        cur_reset();
        return;
    }
    struct smtpd_session *s = p->s;
    unlink_pending(p);
    free(p);
    if (s == NULL) {
        cur_reset();
        return;                     /* session went away meanwhile */
    }
    s->pend = NULL;
    struct smtpd_verdict v = { (enum verdict)cur.status, cur.code, cur.enhanced,
                               cur.text ? cur.text : "", cur.rule };
    if (cur.status >= V__COUNT)
        v.status = V_TEMPFAIL;
    cur_muts = cur.muts.v;
    cur_nmuts = cur.muts.n;
    smtpd_cmd_verdict(s, &v);
    cur_muts = NULL;
    cur_nmuts = 0;
    cur_reset();
}

/* 0 ok, -1 protocol error */
static int on_reply_head(const struct ipc_filter_reply *r)
{
    if (r->nmut > MAX_REPLY_MUTS)
        return -1;
    cur_reset();
    cur.active = 1;
    cur.id = r->id;
    cur.status = r->status;
    cur.code = r->code;
    cur.want = r->nmut;
    str_copy(cur.enhanced, sizeof(cur.enhanced), r->enhanced);
    str_copy(cur.rule, sizeof(cur.rule), r->rule);
    cur.text = xstrdup(r->text);
    if (cur.want == 0)
        on_reply();
    return 0;
}

static int on_mut(const struct ipc_filter_mut *m)
{
    if (!cur.active || m->kind >= RL_M__COUNT)
        return -1;
    struct smtpd_mut x = { m->kind, (char *)m->rcpt, (char *)m->arg, (char *)m->arg2,
                           (char *)m->rule };
    if (cur.muts.n < SMTPD_MAX_MUTS)
        smtpd_muts_add(&cur.muts, &x);
    if (++cur.got == cur.want)
        on_reply();
    return 0;
}

static void f_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in), used = 0;
        if (len == 0)
            return;
        const unsigned char *p = evbuffer_pullup(in, (ssize_t)len);
        enum ipc_type t;
        union ipc_msg m;
        int r = ipc_next(p, len, &t, &m, &used, "filter");
        if (r == 0)
            return;
        if (r < 0) {
            f_fail("protocol error");
            return;
        }
        if (!f_hello) {
            if (t != IPC_HELLO || ipc_hello_ok(&m.hello, IPC_PROTO_FILTER) != 0) {
                f_fail("bad HELLO");
                return;
            }
            f_hello = 1;
            backoff_ms = 0;
            struct timeval tv = { FILTER_TIMEOUT, 0 };
            bufferevent_set_timeouts(bev, &tv, NULL);
            if (down_logged)
                log_info("filter connection is back");
            down_logged = 0;
        } else if (cur.active) {
            if (t != IPC_FILTER_MUT || on_mut(&m.filter_mut) < 0) {  /* may deliver */
                f_fail("bad FILTER_MUT");
                return;
            }
        } else if (t == IPC_FILTER_REPLY) {
            if (on_reply_head(&m.filter_reply) < 0) {   /* sessions only write to fbev */
                f_fail("bad FILTER_REPLY");
                return;
            }
        } else if (t == IPC_FILTER_STAGES) {
            stage_mask = m.filter_stages.mask;
            have_mask = 1;
        } else {
            f_fail("unexpected message");
            return;
        }
        evbuffer_drain(in, used);
    }
}

static void f_event(struct bufferevent *bev, short what, void *arg)
{
    if ((what & BEV_EVENT_TIMEOUT) && !f_hello) {
        f_fail("no HELLO from filter");
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && phead == NULL) {
        bufferevent_enable(bev, EV_READ);   /* idle: nothing is waiting */
        return;
    }
    f_fail(what & BEV_EVENT_EOF ? "closed by filter" :
           what & BEV_EVENT_TIMEOUT ? "no answer" : "I/O error");
}

static void f_connect(void)
{
    int fd = smtpd_unix_connect(SOCK_FILTER);
    if (fd < 0) {
        if (!down_logged)
            log_warn("filter: connect %s: %s: answering 4xx until it is up", SOCK_FILTER,
                     strerror(errno));
        down_logged = 1;
        if (!smtpd_server->stopping)
            schedule_retry();
        return;
    }
    fbev = bufferevent_socket_new(fbase, fd, BEV_OPT_CLOSE_ON_FREE);
    if (fbev == NULL)
        log_fatal("bufferevent_socket_new failed");
    bufferevent_setcb(fbev, f_read, NULL, f_event, NULL);
    struct timeval tv = { HELLO_TIMEOUT, 0 };
    bufferevent_set_timeouts(fbev, &tv, NULL);
    bufferevent_enable(fbev, EV_READ | EV_WRITE);
    struct ipc_hello h = { IPC_PROTO_FILTER, IPC_VERSION };
    buf_t b;
    buf_init(&b, 64);
    ipc_put_hello(&b, &h);
    bufferevent_write(fbev, b.data, b.len);
    buf_free(&b);
}

void smtpd_filter_init(struct event_base *base)
{
    fbase = base;
    f_connect();
}

int smtpd_filter_ask(struct smtpd_session *s, enum stage st, const char *rcpt)
{
    /* Connected but the handshake is still on its way (a fresh smtpd after
     * a reload): queue behind it - filter answers in order after its HELLO,
     * and a filter that never says HELLO fails these within HELLO_TIMEOUT.
     * Once a handshake has failed (filter down or crash-looping), answer
     * 451/421 at once until a HELLO arrives again. */
    if (fbev == NULL || (!f_hello && down_logged))
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
    buf_t b;
    buf_init(&b, 256);
    ipc_put_filter_req(&b, &q);
    bufferevent_write(fbev, b.data, b.len);
    buf_free(&b);
    if (phead == NULL && f_hello) {
        /* the answer clock starts now, not at the last read of an idle link */
        struct timeval tv = { FILTER_TIMEOUT, 0 };
        bufferevent_set_timeouts(fbev, &tv, NULL);
    }
    struct smtpd_pending *p = xcalloc(1, sizeof(*p));
    p->id = q.id;
    p->s = s;
    p->prev = ptail;
    if (ptail)
        ptail->next = p;
    else
        phead = p;
    ptail = p;
    s->pend = p;
    return 0;
}

void smtpd_filter_cancel(struct smtpd_session *s)
{
    if (s->pend) {
        s->pend->s = NULL;
        s->pend = NULL;
    }
    smtpd_muts_free(&s->muts);
    if (fbev && f_hello) {
        struct ipc_filter_end e = { s->id };
        buf_t b;
        buf_init(&b, 32);
        ipc_put_filter_end(&b, &e);
        bufferevent_write(fbev, b.data, b.len);
        buf_free(&b);
    }
}

void smtpd_filter_shutdown(void)
{
    cur_reset();
    if (fbev)
        bufferevent_free(fbev);
    fbev = NULL;
    if (retry_ev)
        event_free(retry_ev);
    retry_ev = NULL;
}
