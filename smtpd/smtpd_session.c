/*
 * smtpd_session.c - one SMTP session: its bufferevent, command-line
 * framing, pipelining, timeouts and life cycle.
 *
 * Pipelining (RFC 2920): every complete line in the input buffer is
 * handled in order and the replies collect in the output evbuffer, which
 * libevent writes once the callback returns - so one group of pipelined
 * commands gets one write. When a command needs a round trip (filter,
 * cleanup) the session stops taking lines (wait != W_NONE) and later lines
 * stay queued in the input buffer until the answer arrives.
 *
 * A session is never freed inside smtpd_session_process(): handlers only
 * mark it SS_CLOSING; the top-level callbacks free it once its replies
 * are written. Memory per idle session: this struct, the bufferevent and
 * its (empty) evbuffers; transaction state is freed when it ends.
 *
 * Back-pressure: a client may pipeline commands without ever reading the
 * replies. Before each command the pending output is checked: above
 * SMTPD_OUT_HIGH the session stops reading AND parsing (out_blocked; the
 * input stays below its 64 KiB read watermark) and waits for libevent to
 * write the output down to SMTPD_OUT_LOW (the write watermark makes
 * on_write fire there). A client that never reads hits the write timeout.
 * The bounds of the whole session are in HACKING.md ("Per-session memory").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "smtpd.h"
#include "mail/smtp_cmd.h"
#include "util/bev_flush.h"
#include "util/bev_read.h"
#include "util/log.h"
#include "metrics/metrics.h"

struct smtpd_session *smtpd_sessions;
int smtpd_nsessions;

static void set_tv(struct timeval *tv, int secs)
{
    tv->tv_sec = secs;
    tv->tv_usec = 0;
}

void smtpd_session_update_timeout(struct smtpd_session *s)
{
    struct timeval rd, wr;
    int rsecs, wsecs = smtpd_cfg->command_timeout > 0 ? smtpd_cfg->command_timeout : 300;
    if (s->wait == W_TLS && s->state != SS_CLOSING)
        rsecs = smtpd_cfg->tls_handshake_timeout;      /* smtpd_tls.c */
    else if (s->state == SS_CLOSING || s->wait != W_NONE || s->out_blocked)
        rsecs = 0;
    else if (s->state == SS_DATA || s->state == SS_BDAT)
        rsecs = smtpd_cfg->data_timeout;
    else if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0)
        rsecs = smtpd_cfg->command_timeout;
    else
        rsecs = smtpd_cfg->idle_timeout;
    /* unchanged: nothing to do (libevent re-arms a persistent event's
     * timeout by itself each time it fires) */
    if (rsecs == s->tmo_r && wsecs == s->tmo_w)
        return;
    s->tmo_r = rsecs;
    s->tmo_w = wsecs;
    set_tv(&rd, rsecs);
    set_tv(&wr, wsecs);
    bufferevent_set_timeouts(s->bev, rsecs > 0 ? &rd : NULL, &wr);
}

void smtpd_txn_free(struct smtpd_txn *t)
{
    if (t == NULL)
        return;
    free(t->sender);
    for (int i = 0; i < t->nrcpts; i++)
        free(t->rcpts[i]);
    free(t->rcpts);
    for (int i = 0; i < t->nrcpts; i++)
        free(t->orcpts[i]);
    free(t->orcpts);
    free(t->notify);
    free(t->envid);
    smtpd_spf_txn_free(t);
    filter_muts_free(&t->muts);
    if (t->out.data)
        buf_free(&t->out);
    free(t);
}

/* End the current transaction (RSET, EHLO, DENY, after DATA). An open
 * cleanup transaction (between BDAT chunks) is aborted. */
void smtpd_session_reset(struct smtpd_session *s)
{
    if (s->cleanup_busy && s->state != SS_WAIT_DATA)
        smtpd_cleanup_end(s, 1);
    smtpd_txn_free(s->txn);
    s->txn = NULL;
}

int smtpd_session_idle(const struct smtpd_session *s)
{
    return s->state == SS_CMD && s->wait == W_NONE && s->txn == NULL &&
           evbuffer_get_length(bufferevent_get_input(s->bev)) == 0;
}

static void log_disconnect(struct smtpd_session *s)
{
    if (!log_event_on(LE_DISCONNECT))
        return;                         /* the counts cost a buffer and a printf each */
    buf_t b;
    buf_init(&b, 128);
    int n = smtpd_cmd_count();
    for (int i = 0; i < n && i < SMTPD_NCMD_COUNT; i++)
        if (s->counts[i])
            buf_printf(&b, " %s=%u", smtpd_cmd_name(i), s->counts[i]);
    struct log_ev e;
    smtpd_ev(&e, LE_DISCONNECT, s);
    if (b.len > 1)
        log_ev_str(&e, LF_COUNTS, b.data + 1);
    log_ev_num(&e, LF_COMMANDS, s->ncommands);
    log_ev_num(&e, LF_ERRORS, s->errors);
    log_ev_emit(&e);
    buf_free(&b);
}

void smtpd_session_free(struct smtpd_session *s)
{
    smtpd_filter_cancel(s);
    smtpd_cleanup_close(s);
    smtpd_txn_free(s->txn);
    smtpd_txn_free(s->wait_txn);
    free(s->helo);
    free(s->wait_arg);
    free(s->wait_orcpt);
    smtpd_auth_session_free(s);
    smtpd_tls_session_free(s);
    smtpd_dns_session_free(s);
    smtpd_spf_session_free(s);
    log_disconnect(s);
    if (s->prev)
        s->prev->next = s->next;
    else
        smtpd_sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    smtpd_nsessions--;
    metric_gauge(MET_SMTPD_SESSIONS_ACTIVE, -1, s->lis->name, NULL);
    bufferevent_free(s->bev);
    smtpd_session_gone(s);
    free(s);
}

void smtpd_session_close(struct smtpd_session *s)
{
    s->state = SS_CLOSING;
    bufferevent_disable(s->bev, EV_READ);
    smtpd_session_update_timeout(s);
}

/* Free a closing session once its last replies are on the wire.
 * Returns 1 when s was freed. */
static int session_check(struct smtpd_session *s)
{
    if (s->state == SS_CLOSING &&
        evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
        smtpd_session_free(s);
        return 1;
    }
    return 0;
}

/* Take one command line from the input, if complete. 1 = handled one (or
 * swallowed bytes), 0 = need more input. */
static int next_line(struct smtpd_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return 0;
    size_t look = len < SMTP_LINE_MAX ? len : SMTP_LINE_MAX;
    const char *p = (const char *)evbuffer_pullup(in, (ssize_t)look);
    const char *lf = memchr(p, '\n', look);
    if (s->skip_line) {
        /* the rest of an overlong line: discard through its LF */
        if (lf) {
            evbuffer_drain(in, (size_t)(lf - p) + 1);
            s->skip_line = 0;
        } else {
            evbuffer_drain(in, look);
        }
        return 1;
    }
    if (lf == NULL) {
        if (len < SMTP_LINE_MAX)
            return 0;
        evbuffer_drain(in, look);
        s->skip_line = 1;
        s->ncommands++;
        smtpd_reply_local(s, LR_LINE_TOO_LONG);
        return 1;
    }
    char line[SMTP_LINE_MAX];
    size_t n = (size_t)(lf - p);
    memcpy(line, p, n);
    evbuffer_drain(in, n + 1);
    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (s->auth)
        smtpd_auth_line(s, line, n);        /* an AUTH response, not a command */
    else
        smtpd_cmd_line(s, line, n);
    explicit_bzero(line, n);
    return 1;
}

/* Too many replies not yet written? Then stop reading and parsing until
 * on_write sees the output at SMTPD_OUT_LOW. 1 = blocked. */
static int output_full(struct smtpd_session *s)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);
    if (evbuffer_get_length(out) <= SMTPD_OUT_HIGH)
        return 0;
    if (s->plain_bev) {
        bev_flush_now(s->bev);          /* the client may be reading after all */
        if (evbuffer_get_length(out) <= SMTPD_OUT_HIGH)
            return 0;
    }
    if (!s->out_blocked) {
        s->out_blocked = 1;
        bufferevent_disable(s->bev, EV_READ);
        bufferevent_setwatermark(s->bev, EV_WRITE, SMTPD_OUT_LOW, 0);
        log_debug("[%s]:%u does not read its replies: reading paused", s->ip, s->port);
    }
    return 1;
}

/* on_write: the output drained to SMTPD_OUT_LOW; read and parse again. */
static void output_drained(struct smtpd_session *s)
{
    s->out_blocked = 0;
    bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
    if (s->state != SS_CLOSING && s->wait != W_THROTTLE && s->wait != W_TLS)
        bufferevent_enable(s->bev, EV_READ);
    smtpd_session_process(s);
}

void smtpd_session_process(struct smtpd_session *s)
{
    if (s->in_process)
        return;
    s->in_process = 1;
    for (;;) {
        if (s->wait != W_NONE)
            break;
        if (output_full(s))
            break;
        if (s->state == SS_DATA) {
            if (!smtpd_data_input(s))
                break;
            continue;
        }
        if (s->state == SS_BDAT) {
            if (!smtpd_bdat_input(s))
                break;
            continue;
        }
        if (s->state != SS_CMD)
            break;
        if (!next_line(s))
            break;
        if (smtpd_cfg->max_errors > 0 && s->errors >= smtpd_cfg->max_errors &&
            s->state != SS_CLOSING) {
            log_warn("too many errors from [%s]:%u", s->ip, s->port);
            smtpd_reply_local(s, LR_TOO_MANY_ERRORS);
            smtpd_session_close(s);
        }
    }
    s->in_process = 0;
    if (s->state != SS_CLOSING)
        smtpd_session_update_timeout(s);
    /* the replies to this batch of (pipelined) commands: one write, now */
    if (s->plain_bev)
        bev_flush_now(s->bev);
}

/* A wait (filter verdict, cleanup reply, backlog) ended: take more input.
 * May free s. */
void smtpd_session_resume(struct smtpd_session *s)
{
    if (s->state != SS_CLOSING && s->eof && s->wait == W_NONE &&
        evbuffer_get_length(bufferevent_get_input(s->bev)) == 0) {
        smtpd_session_close(s);
    }
    smtpd_session_process(s);
    session_check(s);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct smtpd_session *s = arg;
    log_set_session(s->sid);            /* on every line logged meanwhile */
    smtpd_session_process(s);
    session_check(s);
    log_set_session(NULL);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct smtpd_session *s = arg;
    if (s->out_blocked &&
        evbuffer_get_length(bufferevent_get_output(bev)) <= SMTPD_OUT_LOW)
        output_drained(s);
    session_check(s);
}

static void on_event_session(struct smtpd_session *s, short what);

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct smtpd_session *s = arg;
    log_set_session(s->sid);
    on_event_session(s, what);
    log_set_session(NULL);
}

static void on_event_session(struct smtpd_session *s, short what)
{
    if (s->wait == W_TLS) {
        smtpd_tls_event(s, what);           /* handshake done, failed or timed out */
        return;
    }
    if (what & BEV_EVENT_EOF) {
        s->eof = 1;
        if (s->state != SS_CLOSING)
            smtpd_session_process(s);       /* lines sent before the close */
        if (s->state == SS_CLOSING) {
            session_check(s);
            return;
        }
        if (s->state == SS_DATA || s->state == SS_BDAT || s->wait != W_NONE)
            log_info("lost connection from [%s]:%u in %s", s->ip, s->port,
                     s->state == SS_DATA ? "DATA" : s->state == SS_BDAT ? "BDAT" : "a command");
        smtpd_session_free(s);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if ((what & BEV_EVENT_WRITING) || s->state == SS_CLOSING) {
            smtpd_session_free(s);
            return;
        }
        log_info("timeout after %s from [%s]:%u",
                 s->state == SS_DATA ? "DATA" : s->state == SS_BDAT ? "BDAT" :
                 s->txn ? "a command" : "idle", s->ip, s->port);
        smtpd_reply_local(s, LR_TIMEOUT);
        smtpd_session_close(s);
        session_check(s);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        log_info("lost connection from [%s]:%u: %s", s->ip, s->port,
                 strerror(EVUTIL_SOCKET_ERROR()));
        smtpd_session_free(s);
    }
}

/* SIGTERM: idle sessions hear 421 now; the others at their next command
 * once their transaction is over. */
void smtpd_session_drain(struct smtpd_session *s)
{
    if (!smtpd_session_idle(s))
        return;
    smtpd_reply_local(s, LR_SHUTDOWN);
    smtpd_session_close(s);
    session_check(s);
}

void smtpd_ev(struct log_ev *e, enum log_event ev, const struct smtpd_session *s)
{
    log_ev_init(e, ev);
    log_ev_str(e, LF_SESSION, s->sid);
    log_ev_client(e, s->ip, s->port);
}

/* 32 random bits for a session id: splitmix64 seeded once per process
 * from the kernel (arc4random() asks the kernel on every call: a getrandom
 * system call per connection). Ids need to be unique, not secret. */
static uint32_t session_random(void)
{
    static uint64_t x;
    static int seeded;
    if (!seeded) {
        x = (uint64_t)arc4random() << 32 | arc4random();
        seeded = 1;
    }
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

void smtpd_session_start(struct smtpd_listener *l, int fd, const char *ip, unsigned port)
{
    struct smtpd_session *s = xcalloc(1, sizeof(*s));
    /* unique across processes and restarts (pids are reused), sortable by
     * time: the key filter keeps per-session state under, and the log's
     * session id that links smtpd's lines to the queue id */
    s->id = ((uint64_t)(uint32_t)time(NULL) << 32) | session_random();
    str_format(s->sid, sizeof(s->sid), "%016llx", (unsigned long long)s->id);
    s->lis = l;
    str_copy(s->ip, sizeof(s->ip), ip);
    s->port = port;
    s->state = SS_CONNECT;
    s->tmo_r = s->tmo_w = -1;
    /* fd is non-blocking: accept4(SOCK_NONBLOCK), smtpd_io.c */
    if (smtpd_tls_implicit(l)) {
        s->bev = smtpd_tls_accept(s, fd);   /* sets W_TLS: greeting after the handshake */
    } else {
        s->bev = bufferevent_socket_new(smtpd_server->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (s->bev)
            bev_read_direct(s->bev);    /* read() without libevent's FIONREAD */
        s->plain_bev = 1;
    }
    if (s->bev == NULL)
        log_fatal("bufferevent_socket_new failed");
    /* stop reading while a full buffer waits for a verdict */
    bufferevent_setwatermark(s->bev, EV_READ, 0, 65536);
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    s->next = smtpd_sessions;
    if (smtpd_sessions)
        smtpd_sessions->prev = s;
    smtpd_sessions = s;
    smtpd_nsessions++;
    metric_add(MET_SMTPD_CONNECTIONS, 1, l->name, NULL);
    metric_gauge(MET_SMTPD_SESSIONS_ACTIVE, 1, l->name, NULL);
    struct log_ev e;
    smtpd_ev(&e, LE_CONNECT, s);
    log_ev_str(&e, LF_LISTENER, l->name);
    log_ev_emit(&e);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    smtpd_dns_start(s);
    if (s->wait != W_TLS)
        smtpd_dns_connect(s);
    smtpd_session_update_timeout(s);
    if (s->plain_bev && s->state != SS_CLOSING)
        bev_flush_now(s->bev);          /* the greeting (or a refusal: on_write frees) */
}

/* Early talker: did the client send anything before the greeting? */
int smtpd_session_early_talker(struct smtpd_session *s)
{
    if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0)
        return 1;
    if (s->tls_on)
        return 0;       /* the socket carries TLS records, not commands */
    char c;
    ssize_t n = recv(bufferevent_getfd(s->bev), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0;
}
