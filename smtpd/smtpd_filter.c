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
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "smtpd.h"
#include "ipc.h"
#include "spool.h"
#include "log.h"

#define FILTER_TIMEOUT     120      /* seconds without an answer while requests wait */
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     10000

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

static void on_reply(const struct ipc_filter_reply *r)
{
    struct smtpd_pending *p;
    for (p = phead; p; p = p->next)
        if (p->id == r->id)
            break;
    if (p == NULL) {
        log_warn("filter: reply for unknown request %llu: ignored", (unsigned long long)r->id);
        return;
    }
    struct smtpd_session *s = p->s;
    unlink_pending(p);
    free(p);
    if (s == NULL)
        return;                     /* session went away meanwhile */
    s->pend = NULL;
    struct smtpd_verdict v = { (enum verdict)r->status, r->code, r->enhanced, r->text, r->rule };
    if (r->status >= V__COUNT)
        v.status = V_TEMPFAIL;
    smtpd_cmd_verdict(s, &v);
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
            if (down_logged)
                log_info("filter connection is back");
            down_logged = 0;
        } else if (t == IPC_FILTER_REPLY) {
            on_reply(&m.filter_reply);      /* sessions only write to fbev */
        } else {
            f_fail("unexpected message");
            return;
        }
        evbuffer_drain(in, used);
    }
}

static void f_event(struct bufferevent *bev, short what, void *arg)
{
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
    struct timeval tv = { FILTER_TIMEOUT, 0 };
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
    if (fbev == NULL)
        return -1;
    const struct smtpd_txn *t = s->txn ? s->txn : s->wait_txn;
    const char *helo = st == STAGE_HELO && s->wait_arg ? s->wait_arg : s->helo ? s->helo : "";
    struct ipc_filter_req q = {
        .id = ++next_id, .stage = (uint32_t)st, .session = s->id,
        .listener = s->lis->name, .client_ip = s->ip, .client_port = s->port,
        .client_ptr = "unknown", .helo = helo, .auth_user = "",
        .tls_version = "", .tls_cipher = "",
        .mail_from = t ? t->sender : "", .rcpt = rcpt ? rcpt : "",
        .nrcpt = s->txn ? (uint32_t)s->txn->nrcpts : 0, .queue_id = "",
        .size = t ? t->size_hint : 0, .path = "",
    };
    buf_t b;
    buf_init(&b, 256);
    ipc_put_filter_req(&b, &q);
    bufferevent_write(fbev, b.data, b.len);
    buf_free(&b);
    if (phead == NULL) {
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
}

void smtpd_filter_shutdown(void)
{
    if (fbev)
        bufferevent_free(fbev);
    fbev = NULL;
    if (retry_ev)
        event_free(retry_ev);
    retry_ev = NULL;
}
