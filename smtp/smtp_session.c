/*
 * smtp_session.c - one SMTP session to a next hop (smtp.h): banner, EHLO
 * (HELO fallback), STARTTLS per the TLS policy (smtp_tls.c), AUTH to the relay,
 * MAIL/RCPT (pipelined when offered)/DATA, QUIT.
 *
 * Outcomes: a 2xx to the final "." delivers every recipient the peer
 * accepted; 4xx replies, connection failures and timeouts defer; 5xx
 * replies bounce. The reason carries the peer's reply ("host h[ip] said:
 * 550 5.1.1 ... (in reply to RCPT TO command)"), the DSN code is the
 * peer's enhanced code or X.0.0 from the reply class.
 *
 * Connection reuse: after a transaction whose replies were all read, and
 * no 421, I/O error or timeout, the session stays open in the agent's
 * smtp_cache (no QUIT) for the next message to the same destination:
 * smtp_session_reuse sends RSET first only when the last transaction
 * failed. A kept connection the peer closed meanwhile (noticed before the
 * peer answered anything) is dropped without an outcome, and the caller
 * connects anew.
 *
 * An 8-bit message to a peer without 8BITMIME goes as its 7-bit form
 * (smtp_mime.c, lib/mail/mime8.h: quoted-printable parts), or bounces
 * 5.6.3 before MAIL when it has none (8-bit headers...); SMTPUTF8 mail to
 * a peer without it bounces 5.6.7.
 */
#include <stdarg.h>
#include <stdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <openssl/evp.h>

#include "smtp.h"
#include "mail/mime8.h"
#include "tls/tls_client.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/log_event.h"
#include "metrics/metrics.h"

#define SMTP_LINE_MAX 998          /* octets per wire line without CRLF (RFC 5321 4.5.3.1.6) */
#define SMTP_QUIT_TIMEOUT 5

struct sess {
    const struct smtp_msg *m;
    const struct smtp_hop *hop;
    const struct config *cfg;
    struct sio io;
    struct smtp_reply r;
    struct smtp_ext ext;
    char relay[320];               /* host[ip]:port */
    struct smtp_rcpt **rr;
    int n;
    int tls;
    int soft;                      /* a 5xx now defers (AUTH: the relay's configuration) */
    int reused;                    /* on a kept connection (smtp_session_reuse) */
    int nread;                     /* replies read in this session */
    int stale;                     /* kept connection found closed: nothing decided */
    int iofail;                    /* I/O error or timeout: never reuse */
    int txn_end;                   /* 0 replies unread, 1 transaction over, 2 failed: RSET */
    struct smtp_cache *cache;      /* where the session may stay open, NULL = never */
    const char *key;               /* its destination there */
    struct smtp_tls_req tlsreq;    /* the TLS policy towards this address (smtp_tls.c) */
    int plain_only;                /* the may-level retry after a failed handshake */
    int retry_plain;               /* the handshake failed at may: connect again, no TLS */
    int broken;                    /* the handshake failed: no QUIT on this connection */
    int unmet;                     /* TLS policy not met here: the next address may do */
    char unmet_dsn[16], unmet_why[QF_REASON_MAX + 1];
    char tlsinfo[SMTP_TLS_INFO];   /* "tls=... verified=..." for every delivery line */
    struct mime8 *m8;              /* the 7-bit downgrade of this session, or NULL */
};

/* A kept connection that fails before its first reply was closed by the
 * peer while idle: no outcome, the caller connects anew. */
static int went_stale(struct sess *s)
{
    s->iofail = 1;
    if (!s->reused || s->nread > 0)
        return 0;
    s->stale = 1;
    return 1;
}

/* Wall clock and monotonic marks of the delivery in progress (one at a
 * time per agent process; smtp_times_start). */
static struct {
    double req_wall;   /* seconds, at smtp_times_start */
    int64_t req_ms;    /* clock_now_ms() then */
    int64_t ready_ms;  /* the session could send MAIL (0: not yet) */
} times;

void smtp_times_start(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    times.req_wall = (double)tv.tv_sec + tv.tv_usec / 1e6;
    times.req_ms = clock_now_ms();
    times.ready_ms = 0;
}

/* delays=Q/C/T (see smtp.h) for a line logged now. */
static void delays(const struct smtp_msg *m, char *out, size_t size)
{
    double q = times.req_wall - (double)m->env->arrival / 1e6;
    int64_t now = clock_now_ms(), ready = times.ready_ms ? times.ready_ms : now;
    double c = (double)(ready - times.req_ms) / 1e3, t = (double)(now - ready) / 1e3;
    snprintf(out, size, "%.2f/%.2f/%.2f", q < 0 ? 0 : q, c < 0 ? 0 : c, t < 0 ? 0 : t);
}

/* tls is "tls=VERSION/CIPHER verified=HOW" or "tls=none verified=none"
 * (smtp_tls.c, smtp_session_deliver): into the event's fields. */
static void log_tls_fields(struct log_ev *e, const char *tls)
{
    char v[SMTP_TLS_INFO];
    if (tls == NULL || strncmp(tls, "tls=", 4) != 0)
        return;
    str_copy(v, sizeof(v), tls + 4);
    char *sp = strchr(v, ' ');
    if (sp == NULL || strncmp(sp + 1, "verified=", 9) != 0)
        return;
    *sp = '\0';
    log_ev_printf(e, LF_TLS_VERIFIED, "%s", sp + 10);
    log_ev_printf(e, LF_TLS_INFO, "%s", v);
    char *slash = strchr(v, '/');
    if (slash) {
        *slash = '\0';
        log_ev_printf(e, LF_TLS_VERSION, "%s", v);
        log_ev_printf(e, LF_TLS_CIPHER, "%s", slash + 1);
    }
}

/* The outcome and its log line; tls: "tls=... verified=..." of the
 * session, NULL when there was none. */
static void rcpt_vset(const struct smtp_msg *m, struct smtp_rcpt *r, const char *relay,
                      const char *tls, enum dstatus st, const char *dsn, const char *fmt,
                      va_list ap)
{
    r->status = st;
    r->done = 1;
    str_copy(r->dsn, sizeof(r->dsn), dsn);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double delay = ((double)tv.tv_sec * 1e6 + tv.tv_usec - (double)m->env->arrival) / 1e6;
    char dl[64];
    delays(m, dl, sizeof(dl));
    struct log_ev e;
    log_ev_init(&e, LE_ATTEMPT);
    log_ev_str(&e, LF_TRANSPORT, "smtp");
    log_ev_str(&e, LF_SENDER, m->env->sender);
    log_ev_str(&e, LF_RECIPIENT, r->q ? r->q->addr : "?");
    log_ev_str(&e, LF_RELAY, relay);
    log_ev_str(&e, LF_MTA_STS, smtp_sts_mode(r->sts_mode));
    log_ev_dbl(&e, LF_DELAY, delay < 0 ? 0 : delay);
    log_ev_str(&e, LF_DELAYS, dl);
    log_ev_str(&e, LF_DSN, r->dsn);
    log_ev_str(&e, LF_STATUS,
               st == DS_DELIVERED ? "sent" : st == DS_BOUNCED ? "bounced" : "deferred");
    log_ev_str(&e, LF_REASON, r->reason);
    log_tls_fields(&e, tls);
    log_ev_emit(&e);
}

void smtp_rcpt_set(const struct smtp_msg *m, struct smtp_rcpt *r, const char *relay,
                   enum dstatus st, const char *dsn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rcpt_vset(m, r, relay, NULL, st, dsn, fmt, ap);
    va_end(ap);
}

/* smtp_rcpt_set for a recipient of this session (its TLS facts logged). */
static void sess_set(struct sess *s, struct smtp_rcpt *r, enum dstatus st, const char *dsn,
                     const char *fmt, ...) PRINTF_LIKE(5, 6);
static void sess_set(struct sess *s, struct smtp_rcpt *r, enum dstatus st, const char *dsn,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rcpt_vset(s->m, r, s->relay, s->tlsinfo[0] ? s->tlsinfo : NULL, st, dsn, fmt, ap);
    va_end(ap);
}

/* Every recipient not done yet gets this outcome. */
static void fail_all(struct sess *s, enum dstatus st, const char *dsn, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
static void fail_all(struct sess *s, enum dstatus st, const char *dsn, const char *fmt, ...)
{
    char why[QF_REASON_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    for (int i = 0; i < s->n; i++)
        if (!s->rr[i]->done)
            sess_set(s, s->rr[i], st, dsn, "%s", why);
}

/* The outcome a non-2xx reply gives, for rcpt r (NULL = every pending one). */
static void reply_fail(struct sess *s, struct smtp_rcpt *r, const char *cmd)
{
    char text[QF_REASON_MAX + 1], dsn[16];
    int perm = s->r.code >= 500 && !s->soft;
    smtp_reply_format(&s->r, text, sizeof(text));
    if (s->r.enh[0] == '4' || s->r.enh[0] == '5') {   /* class matches the code (parser) */
        str_copy(dsn, sizeof(dsn), s->r.enh);
        dsn[0] = perm ? '5' : '4';                     /* a soft 5xx keeps its detail */
    } else
        str_copy(dsn, sizeof(dsn), perm ? "5.0.0" : "4.0.0");
    enum dstatus st = perm ? DS_BOUNCED : DS_DEFERRED;
    if (r)
        sess_set(s, r, st, dsn, "host %s said: %s (in reply to %s)", s->relay, text, cmd);
    else
        fail_all(s, st, dsn, "host %s said: %s (in reply to %s)", s->relay, text, cmd);
}

/* Read a reply; -1 = connection lost or broken (pending recipients deferred). */
static int get_reply(struct sess *s, int timeout, const char *cmd)
{
    if (sio_reply(&s->io, &s->r, timeout) == 0) {
        log_trace(TRACE_SMTP, "%s < %d %s", s->relay, s->r.code, s->r.text);
        s->nread++;
        return 0;
    }
    if (went_stale(s))
        return -1;
    if (s->io.timed_out)
        fail_all(s, DS_DEFERRED, "4.4.2", "conversation with %s timed out (waiting for the "
                 "reply to %s)", s->relay, cmd);
    else
        fail_all(s, DS_DEFERRED, "4.4.2", "lost connection with %s (waiting for the reply "
                 "to %s): %s", s->relay, cmd, s->io.err);
    return -1;
}

static int put(struct sess *s, const char *data, size_t n)
{
    if (sio_write(&s->io, data, n, s->cfg->smtp_command_timeout) == 0)
        return 0;
    if (went_stale(s))
        return -1;
    fail_all(s, DS_DEFERRED, "4.4.2", "lost connection with %s while sending: %s", s->relay,
             s->io.err);
    return -1;
}

/* Send one command line and read its reply. */
static int command(struct sess *s, const char *line, const char *cmd)
{
    char b[1100];
    int n = snprintf(b, sizeof(b), "%s\r\n", line);
    if (n < 0 || (size_t)n >= sizeof(b))
        return -1;
    log_trace(TRACE_SMTP, "%s > %s", s->relay, cmd);
    return put(s, b, (size_t)n) < 0 ? -1 : get_reply(s, s->cfg->smtp_command_timeout, cmd);
}

/* EHLO, or HELO when EHLO is refused. 0 ok, -1 done (outcomes set). */
static int greet(struct sess *s)
{
    char line[300];
    memset(&s->ext, 0, sizeof(s->ext));
    const char *hello = s->hop->lmtp ? "LHLO" : "EHLO";   /* LMTP: RFC 2033 4.1 */
    snprintf(line, sizeof(line), "%s %s", hello, s->cfg->hostname);
    if (command(s, line, hello) < 0)
        return -1;
    if (s->r.code / 100 == 2) {
        smtp_ext_parse(&s->r, &s->ext);
        return 0;
    }
    const char *cmd = hello;
    /* an old server: HELO, no extensions (LMTP has no fallback) */
    if (s->r.code / 100 == 5 && !s->tls && !s->hop->lmtp) {
        snprintf(line, sizeof(line), "HELO %s", s->cfg->hostname);
        cmd = "HELO";
        if (command(s, line, cmd) < 0)
            return -1;
        if (s->r.code / 100 == 2)
            return 0;
    }
    reply_fail(s, NULL, cmd);
    return -1;
}

/* The TLS policy cannot be met at this address: -1, outcome held for
 * attempt() (the next address, as Postfix tries the next MX). */
static int tls_unmet(struct sess *s, const char *dsn, const char *why)
{
    s->unmet = 1;
    str_copy(s->unmet_dsn, sizeof(s->unmet_dsn), dsn);
    str_copy(s->unmet_why, sizeof(s->unmet_why), why);
    return -1;
}

/* STARTTLS as the policy says (smtp_tls.c decides). 0 go on (TLS or
 * allowed plaintext), -1 done (outcomes set, or retry_plain / unmet set). */
static int starttls(struct sess *s)
{
    char dsn[16], why[QF_REASON_MAX + 1];
    int go = s->plain_only ? 0 : smtp_tls_want(&s->tlsreq, (s->ext.flags & EXT_STARTTLS) != 0,
                                               s->m->tls != NULL, s->relay, dsn, sizeof(dsn),
                                               why, sizeof(why));
    if (go < 0)
        return tls_unmet(s, dsn, why);
    if (go == 0)
        return 0;
    if (command(s, "STARTTLS", "STARTTLS") < 0)
        return -1;
    if (s->r.code != 220) {
        if (s->tlsreq.level == TLSP_MAY)   /* still a plaintext session: go on */
            return 0;
        char text[QF_REASON_MAX + 1];      /* our policy, not the message: defer */
        smtp_reply_format(&s->r, text, sizeof(text));
        buf_t b;
        buf_init(&b, 256);
        buf_printf(&b, "TLS is required (%s), but host %s said: %s (in reply to STARTTLS)",
                   s->tlsreq.source, s->relay, text);
        tls_unmet(s, "4.7.4", b.data);
        buf_free(&b);
        return -1;
    }
    int rc = smtp_tls_start(&s->io, s->m->tls, &s->tlsreq, s->cfg->tls_handshake_timeout,
                            s->relay, s->tlsinfo, sizeof(s->tlsinfo), dsn, sizeof(dsn), why,
                            sizeof(why));
    s->broken = rc == -2;
    s->retry_plain = s->broken && s->tlsreq.level == TLSP_MAY;
    if (rc < 0)
        return s->retry_plain ? -1 : tls_unmet(s, dsn, why);
    s->tls = 1;
    return greet(s);
}

static void b64(const char *in, size_t n, char *out, size_t size)
{
    if (size < 4 * ((n + 2) / 3) + 1 || n > 600) {
        out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
}

/* AUTH to the next hop when the credentials file names it. */
static int auth(struct sess *s)
{
    char user[256], pass[256], why[300];
    int f = smtp_auth_lookup(s->cfg, s->hop, user, sizeof(user), pass, sizeof(pass), why,
                             sizeof(why));
    if (f < 0) {
        fail_all(s, DS_DEFERRED, "4.7.0", "relay credentials: %s", why);
        return -1;
    }
    if (f == 0)
        return 0;
    int rc = -1;
    char raw[600], enc[1000], line[1100];
    s->soft = 1;
    if (!s->tls) {
        fail_all(s, DS_DEFERRED, "4.7.0", "credentials for %s not sent over a session "
                 "without TLS", s->relay);
    } else if (!(s->ext.flags & EXT_AUTH) || !(s->ext.auth & (AUTHM_PLAIN | AUTHM_LOGIN))) {
        fail_all(s, DS_DEFERRED, "4.7.0", "host %s offers no AUTH PLAIN or LOGIN", s->relay);
    } else if (s->ext.auth & AUTHM_PLAIN) {
        int n = snprintf(raw, sizeof(raw), "%c%s%c%s", 0, user, 0, pass);
        b64(raw, n > 0 && (size_t)n < sizeof(raw) ? (size_t)n : 0, enc, sizeof(enc));
        snprintf(line, sizeof(line), "AUTH PLAIN %s", enc);
        if (command(s, line, "AUTH") == 0)
            rc = s->r.code == 235 ? 0 : (reply_fail(s, NULL, "AUTH"), -1);
    } else if (command(s, "AUTH LOGIN", "AUTH") == 0) {
        b64(user, strlen(user), enc, sizeof(enc));
        if (s->r.code == 334 && command(s, enc, "AUTH") == 0) {
            b64(pass, strlen(pass), enc, sizeof(enc));
            if (s->r.code == 334 && command(s, enc, "AUTH") == 0 && s->r.code == 235)
                rc = 0;
        }
        if (rc < 0 && s->r.code != 0)
            reply_fail(s, NULL, "AUTH");
    }
    s->soft = 0;
    explicit_bzero(pass, sizeof(pass));
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(line, sizeof(line));
    return rc;
}

/* xtext (RFC 3461 4): '+', '=' and bytes outside '!'..'~' as +XX. */
static void xtext(buf_t *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < '!' || c > '~' || c == '+' || c == '=')
            buf_printf(b, "+%02X", c);
        else
            buf_append_char(b, (char)c);
    }
}

/* Refusals before MAIL: size and content the peer cannot take. */
static int precheck(struct sess *s)
{
    const struct qf_env *e = s->m->env;
    if ((s->ext.flags & EXT_SIZE) && s->ext.size > 0 && e->content_len > s->ext.size) {
        fail_all(s, DS_BOUNCED, "5.3.4", "message size %llu exceeds size limit %llu of "
                 "host %s", (unsigned long long)e->content_len,
                 (unsigned long long)s->ext.size, s->relay);
        return -1;
    }
    if ((e->flags & QF_F_SMTPUTF8) && !(s->ext.flags & EXT_SMTPUTF8)) {
        fail_all(s, DS_BOUNCED, "5.6.7", "SMTPUTF8 is required, but was not offered by "
                 "host %s", s->relay);
        return -1;
    }
    if ((e->flags & (QF_F_8BITMIME | QF_F_BINARYMIME)) && !(s->ext.flags & EXT_8BITMIME)) {
        char why[200];
        int rc = smtp_mime_plan(s->m, &s->m8, why, sizeof(why));
        if (rc == -2)
            fail_all(s, DS_DEFERRED, "4.3.0", "queue file read error: %m");
        else if (rc < 0)
            fail_all(s, DS_BOUNCED, "5.6.3", "8-bit message, but host %s does not offer "
                     "8BITMIME, and the message has no 7-bit form: %s", s->relay, why);
        else if (s->m8)
            log_info("host %s does not offer 8BITMIME: content converted to 7bit", s->relay);
        return rc < 0 ? -1 : 0;
    }
    return 0;
}

static void mail_cmd(struct sess *s, buf_t *b)
{
    const struct qf_env *e = s->m->env;
    buf_printf(b, "MAIL FROM:<%s>", e->sender);
    if (s->ext.flags & EXT_SIZE)
        buf_printf(b, " SIZE=%llu", (unsigned long long)e->content_len);
    if ((e->flags & (QF_F_8BITMIME | QF_F_BINARYMIME)) && (s->ext.flags & EXT_8BITMIME))
        buf_append_str(b, " BODY=8BITMIME");
    if ((e->flags & QF_F_SMTPUTF8) && (s->ext.flags & EXT_SMTPUTF8))
        buf_append_str(b, " SMTPUTF8");
    if (s->ext.flags & EXT_DSN) {
        if (e->ret)
            buf_append_str(b, e->ret == 1 ? " RET=FULL" : " RET=HDRS");
        if (e->envid && e->envid[0]) {
            buf_append_str(b, " ENVID=");
            xtext(b, e->envid);
        }
    }
    buf_append_str(b, "\r\n");
}

static void rcpt_cmd(struct sess *s, const struct qf_rcpt *q, buf_t *b)
{
    buf_printf(b, "RCPT TO:<%s>", q->addr);
    if (s->ext.flags & EXT_DSN) {
        if (q->notify & NOTIFY_NEVER)
            buf_append_str(b, " NOTIFY=NEVER");
        else if (q->notify) {
            const char *sep = " NOTIFY=";
            static const struct { unsigned bit; const char *w; } nw[] = {
                { NOTIFY_SUCCESS, "SUCCESS" }, { NOTIFY_FAILURE, "FAILURE" },
                { NOTIFY_DELAY, "DELAY" } };
            for (size_t i = 0; i < sizeof(nw) / sizeof(nw[0]); i++)
                if (q->notify & nw[i].bit) {
                    buf_printf(b, "%s%s", sep, nw[i].w);
                    sep = ",";
                }
        }
        if (q->orig && q->orig[0]) {
            const char *semi = strchr(q->orig, ';');
            buf_append_str(b, " ORCPT=");
            if (semi) {
                buf_append(b, q->orig, (size_t)(semi - q->orig + 1));
                xtext(b, semi + 1);
            } else {
                buf_append_str(b, "rfc822;");
                xtext(b, q->orig);
            }
        }
    }
    buf_append_str(b, "\r\n");
}

/* Wire form of content bytes: CRLF, dot-stuffed, lines folded at 998
 * octets (a header line continues with a space, i.e. as a folded header). */
struct wire {
    int bol, hdr;
    size_t col;
};

static void wire_put(struct wire *w, const char *in, size_t n, buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '\n') {
            if (w->col == 0 && w->bol)
                w->hdr = 0;   /* the empty line ends the header */
            buf_append(out, "\r\n", 2);
            w->bol = 1;
            w->col = 0;
            continue;
        }
        if (w->col >= SMTP_LINE_MAX) {
            buf_append(out, "\r\n", 2);
            w->col = 0;
            if (w->hdr) {
                buf_append_char(out, ' ');
                w->col = 1;
            } else {
                w->bol = 1;
            }
        }
        if (w->bol && c == '.') {
            buf_append_char(out, '.');
            w->col++;
        }
        buf_append_char(out, c);
        w->col++;
        w->bol = 0;
    }
}

/* The content on the wire (through the 7-bit downgrade when s->m8), then
 * ".". 0, or -1 (outcomes set). */
static int send_body(struct sess *s)
{
    const struct qf_env *e = s->m->env;
    char in[SMTP_MIME_CHUNK];
    buf_t out, conv;
    buf_init(&out, sizeof(in) * 2);
    buf_init(&conv, s->m8 ? sizeof(in) * 2 : 1);
    struct wire w = { 1, 1, 0 };
    int rc = 0;
    for (uint64_t off = 0; off < e->content_len && rc == 0;) {
        size_t want = e->content_len - off < sizeof(in) ? (size_t)(e->content_len - off)
                                                         : sizeof(in);
        if (qf_pread_all(s->m->fd, in, want, e->content_off + (off_t)off) < 0) {
            fail_all(s, DS_DEFERRED, "4.3.0", "queue file read error: %m");
            rc = -1;
            break;
        }
        off += want;
        if (s->m8) {
            buf_reset(&conv);
            mime8_convert(s->m8, in, want, &conv);
            if (off >= e->content_len)
                mime8_convert_end(s->m8, &conv);
            wire_put(&w, conv.data, conv.len, &out);
        } else {
            wire_put(&w, in, want, &out);
        }
        if (out.len >= sizeof(in) && (rc = put(s, out.data, out.len)) == 0)
            buf_reset(&out);
    }
    if (rc == 0) {
        if (w.col > 0 || !w.bol)
            buf_append(&out, "\r\n", 2);
        buf_append(&out, ".\r\n", 3);
        rc = put(s, out.data, out.len);
    }
    buf_free(&conv);
    buf_free(&out);
    return rc;
}

/* MAIL, RCPT x n, DATA (one batch with PIPELINING), content, ".". */
static void transaction(struct sess *s)
{
    int pipe = (s->ext.flags & EXT_PIPELINING) != 0, nok = 0;
    buf_t b;
    buf_init(&b, 1024);
    mail_cmd(s, &b);
    if (!pipe) {
        if (put(s, b.data, b.len) < 0 || get_reply(s, s->cfg->smtp_command_timeout, "MAIL FROM") < 0)
            goto out;
        if (s->r.code / 100 != 2) {
            reply_fail(s, NULL, "MAIL FROM");
            s->txn_end = 2;
            goto out;
        }
        buf_reset(&b);
    }
    for (int i = 0; i < s->n; i++) {
        if (!pipe)
            buf_reset(&b);
        rcpt_cmd(s, s->rr[i]->q, &b);
        if (!pipe && (put(s, b.data, b.len) < 0 ||
                      get_reply(s, s->cfg->smtp_command_timeout, "RCPT TO") < 0))
            goto out;
        if (!pipe && s->r.code / 100 != 2)
            reply_fail(s, s->rr[i], "RCPT TO");
        else if (!pipe)
            s->rr[i]->accepted = 1, nok++;
    }
    if (pipe) {
        buf_append_str(&b, "DATA\r\n");
        if (put(s, b.data, b.len) < 0 || get_reply(s, s->cfg->smtp_command_timeout, "MAIL FROM") < 0)
            goto out;
        if (s->r.code / 100 != 2) {
            reply_fail(s, NULL, "MAIL FROM");
            goto out;
        }
        for (int i = 0; i < s->n; i++) {
            if (get_reply(s, s->cfg->smtp_command_timeout, "RCPT TO") < 0)
                goto out;
            if (s->r.code / 100 != 2)
                reply_fail(s, s->rr[i], "RCPT TO");
            else
                s->rr[i]->accepted = 1, nok++;
        }
    } else if (nok > 0 && (put(s, "DATA\r\n", 6) < 0)) {
        goto out;
    }
    if (nok == 0 && !pipe) {
        s->txn_end = 2;
        goto out;
    }
    if (get_reply(s, s->cfg->smtp_command_timeout, "DATA") < 0)
        goto out;
    if (s->r.code != 354) {
        if (nok > 0)
            reply_fail(s, NULL, "DATA");
        s->txn_end = 2;
        goto out;
    }
    if (nok == 0) {   /* DATA accepted though every RCPT failed: send nothing */
        if (put(s, ".\r\n", 3) == 0 && get_reply(s, s->cfg->smtp_data_timeout, "end of DATA") == 0)
            s->txn_end = 2;
        goto out;
    }
    if (send_body(s) < 0)
        goto out;
    /* LMTP: a reply per recipient (smtp_lmtp.c); no hop: a kept session, always SMTP */
    if (s->hop && s->hop->lmtp) {
        smtp_lmtp_replies(s->m, &s->io, s->relay, s->rr, s->n, s->cfg->smtp_data_timeout);
        goto out;
    }
    if (get_reply(s, s->cfg->smtp_data_timeout, "end of DATA") < 0)
        goto out;
    s->txn_end = 1;   /* the reply to "." ends the transaction either way */
    if (s->r.code / 100 != 2) {
        reply_fail(s, NULL, "end of DATA");
        goto out;
    }
    char text[QF_REASON_MAX + 1];
    smtp_reply_format(&s->r, text, sizeof(text));
    for (int i = 0; i < s->n; i++)
        if (!s->rr[i]->done) {
            /* NOTIFY=SUCCESS: a hop with DSN got NOTIFY and reports, else we
             * report "relayed" (RFC 3461 5.2.2) */
            if (s->rr[i]->q->notify & NOTIFY_SUCCESS)
                s->rr[i]->sflags = s->ext.flags & EXT_DSN ? DS_F_NOTIFY_PASSED : DS_F_RELAYED;
            sess_set(s, s->rr[i], DS_DELIVERED, s->r.enh[0] == '2' ? s->r.enh : "2.0.0", "%s",
                     text);
        }
out:
    mime8_free(s->m8);   /* the next transaction on a kept session plans anew */
    s->m8 = NULL;
    buf_free(&b);
}

/* After a transaction: keep the session for the next message to the same
 * destination when every reply was read and nothing went wrong (no 421,
 * I/O error or timeout) and it has not carried SMTP_CACHE_MAX_MSGS yet.
 * 1 = kept (s->io now belongs to the cache), 0 = the caller QUITs. */
static int keep(struct sess *s)
{
    struct smtp_cache *c = s->cache;
    if (c == NULL || s->iofail || s->txn_end == 0 || s->r.code == 421 ||
        c->nmsg + 1 >= SMTP_CACHE_MAX_MSGS)
        return 0;
    c->io = s->io;
    c->ext = s->ext;
    c->tls = s->tls;
    str_copy(c->tlsinfo, sizeof(c->tlsinfo), s->tlsinfo);
    c->rset = s->txn_end == 2;
    c->nmsg++;
    c->since = clock_now_ms();
    str_copy(c->relay, sizeof(c->relay), s->relay);
    str_copy(c->key, sizeof(c->key), s->key);
    c->open = 1;
    s->io.fd = -1;
    s->io.ssl = NULL;
    return 1;
}

static void session(struct sess *s)
{
    if (get_reply(s, s->cfg->smtp_command_timeout, "initial greeting") < 0)
        return;
    if (s->r.code / 100 != 2) {
        reply_fail(s, NULL, "initial greeting");
        return;
    }
    /* LMTP goes to a local store (delivery.tls is for SMTP peers) */
    if (greet(s) < 0 || (!s->hop->lmtp && starttls(s) < 0) || auth(s) < 0)
        goto quit;
    times.ready_ms = clock_now_ms();
    if (precheck(s) < 0)
        s->txn_end = 1;   /* nothing sent: the session stays usable */
    else
        transaction(s);
    if (keep(s))
        return;
quit:
    mime8_free(s->m8);
    s->m8 = NULL;
    if (s->broken)   /* a failed handshake: nothing more to say on it */
        return;
    if (sio_write(&s->io, "QUIT\r\n", 6, SMTP_QUIT_TIMEOUT) == 0)
        sio_reply(&s->io, &s->r, SMTP_QUIT_TIMEOUT);
}

/* The MX host name of address i (SNI, certificate name, log label). */
static const char *addr_name(const struct smtp_hop *hop, int i)
{
    return hop->name[i][0] ? hop->name[i] : hop->host;
}

static void addr_label(const struct smtp_hop *hop, int i, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr *sa = (const struct sockaddr *)&hop->addr[i];
    if (sa->sa_family == AF_UNIX) {   /* LMTP over a socket: host is its path */
        snprintf(out, size, "%s", hop->host);
        return;
    }
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    snprintf(out, size, "%s[%s]:%d", addr_name(hop, i), ip, hop->port);
}

static void sess_init(struct sess *s, const struct smtp_msg *m, struct smtp_rcpt **rr, int n,
                      struct smtp_cache *cache, const char *key)
{
    memset(s, 0, sizeof(*s));
    s->m = m;
    s->cfg = m->cfg;
    s->rr = rr;
    s->n = n;
    s->io.fd = -1;
    s->cache = cache;
    s->key = key;
}

int smtp_session_reuse(const struct smtp_msg *m, struct smtp_rcpt **rr, int n,
                       struct smtp_cache *cache, const char *key)
{
    if (!cache->open || strcmp(cache->key, key) != 0)
        return 0;
    /* anything readable on an idle session is the peer's 421 or its close */
    struct pollfd p = { .fd = cache->io.fd, .events = POLLIN };
    if (cache->io.len > 0 || poll(&p, 1, 0) != 0) {
        log_info("kept connection to %s closed by the peer", cache->relay);
        sio_close(&cache->io);
        cache->open = 0;
        return 0;
    }
    struct sess s;
    sess_init(&s, m, rr, n, cache, key);
    s.io = cache->io;
    s.ext = cache->ext;
    s.tls = cache->tls;
    str_copy(s.tlsinfo, sizeof(s.tlsinfo), cache->tlsinfo);
    s.reused = 1;
    str_copy(s.relay, sizeof(s.relay), cache->relay);
    cache->open = 0;
    cache->io.fd = -1;
    cache->io.ssl = NULL;
    log_trace(TRACE_SMTP, "%s: connection reused (%d before)", s.relay, cache->nmsg);
    times.ready_ms = clock_now_ms();   /* no connection set-up on a kept session */
    /* a refused RSET is the peer's (e.g. 421 at its idle limit): start anew */
    if (cache->rset && (command(&s, "RSET", "RSET") < 0 || s.r.code / 100 != 2))
        s.stale = 1;
    else if (precheck(&s) < 0)
        s.txn_end = 1;
    else
        transaction(&s);
    if (s.stale) {
        log_info("kept connection to %s closed by the peer: connecting again", s.relay);
        sio_close(&s.io);
        cache->nmsg = 0;
        return 0;
    }
    if (!keep(&s)) {
        if (!s.iofail && sio_write(&s.io, "QUIT\r\n", 6, SMTP_QUIT_TIMEOUT) == 0)
            sio_reply(&s.io, &s.r, SMTP_QUIT_TIMEOUT);
        sio_close(&s.io);
        cache->nmsg = 0;
    }
    fail_all(&s, DS_DEFERRED, "4.4.2", "conversation with %s ended early", s.relay);
    return 1;
}

/* Connect to address i of the hop and hold the session, under the TLS
 * policy for that address; at level may a failed handshake is retried
 * once in plaintext; a policy not met here (no STARTTLS, failed handshake
 * or check) moves on to the next address, deferring at the last. 1 = a
 * session took place (stop), 0 = try the next address. */
static int attempt(struct sess *s, int i)
{
    const struct smtp_hop *hop = s->hop;
    char dsn[16], why[QF_REASON_MAX + 1];
    int last = i + 1 == hop->naddr, rc = 0;
    addr_label(hop, i, s->relay, sizeof(s->relay));
    s->tlsinfo[0] = '\0';
    if (smtp_tls_policy_for(s->cfg, hop, i, &s->tlsreq, dsn, sizeof(dsn), why, sizeof(why)) < 0) {
        log_info("%s: %s", s->relay, why);
        if (last)
            fail_all(s, DS_DEFERRED, dsn, "%s", why);
        return 0;
    }
    for (s->plain_only = 0;; s->plain_only = 1) {
        s->retry_plain = s->tls = s->broken = s->unmet = 0;
        s->tlsinfo[0] = '\0';
        if (sio_connect(&s->io, (const struct sockaddr *)&hop->addr[i], hop->addrlen[i],
                        s->cfg->smtp_connect_timeout, s->cfg->source_address) < 0) {
            log_info("connect to %s: %s", s->relay, s->io.err);
            metric_add(MET_SMTP_CONNECTIONS, 1, "failed", NULL);
            sio_close(&s->io);
            if (last || s->plain_only)
                fail_all(s, DS_DEFERRED, "4.4.1", "connect to %s: %s", s->relay, s->io.err);
            rc = s->plain_only;
            break;
        }
        metric_add(MET_SMTP_CONNECTIONS, 1, "ok", NULL);
        str_copy(s->tlsinfo, sizeof(s->tlsinfo), "tls=none verified=none");
        session(s);
        sio_close(&s->io);
        if (s->unmet && !last)
            log_info("%s: %s; trying the next address", s->relay, s->unmet_why);
        else if (s->unmet)
            fail_all(s, DS_DEFERRED, s->unmet_dsn, "%s", s->unmet_why);
        if (!s->retry_plain) {
            rc = !s->unmet || last;
            break;
        }
    }
    smtp_tls_req_free(&s->tlsreq);
    return rc;
}

void smtp_session_deliver(const struct smtp_msg *m, const struct smtp_hop *hop,
                          struct smtp_rcpt **rr, int n, struct smtp_cache *cache,
                          const char *key)
{
    struct sess s;
    sess_init(&s, m, rr, n, cache, key);
    s.hop = hop;
    if (cache) {
        smtp_cache_close(cache);
        cache->nmsg = 0;
    }
    for (int i = 0; i < hop->naddr; i++)
        if (attempt(&s, i))
            break;
    if (hop->naddr == 0)
        fail_all(&s, DS_DEFERRED, "4.4.3", "no address for %s", hop->host);
    /* nothing may stay undecided */
    fail_all(&s, DS_DEFERRED, "4.4.2", "conversation with %s ended early", s.relay);
}
