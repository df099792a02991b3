/*
 * smtp_session.c - one SMTP session to a next hop (smtp.h): banner, EHLO
 * (HELO fallback), STARTTLS per delivery.tls_policy, AUTH to the relay,
 * MAIL/RCPT (pipelined when offered)/DATA, QUIT.
 *
 * Outcomes: a 2xx to the final "." delivers every recipient the peer
 * accepted; 4xx replies, connection failures and timeouts defer; 5xx
 * replies bounce. The reason carries the peer's reply ("host h[ip] said:
 * 550 5.1.1 ... (in reply to RCPT TO command)"), the DSN code is the
 * peer's enhanced code or X.0.0 from the reply class.
 *
 * Limits of this first version (said in the DSN reason): no 8BITMIME ->
 * 7bit conversion (an 8-bit message to a peer without 8BITMIME bounces
 * 5.6.3); SMTPUTF8 mail to a peer without it bounces 5.6.7.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <openssl/evp.h>

#include "smtp.h"
#include "tls/tls_client.h"
#include "util/log.h"

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
};

void smtp_rcpt_set(const struct smtp_msg *m, struct smtp_rcpt *r, const char *relay,
                   enum dstatus st, const char *dsn, const char *fmt, ...)
{
    va_list ap;
    r->status = st;
    r->done = 1;
    str_copy(r->dsn, sizeof(r->dsn), dsn);
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double delay = ((double)tv.tv_sec * 1e6 + tv.tv_usec - (double)m->env->arrival) / 1e6;
    log_info("to=<%s>, relay=%s, delay=%.2f, dsn=%s, status=%s (%s)",
             r->q ? r->q->addr : "?", relay, delay < 0 ? 0 : delay, r->dsn,
             st == DS_DELIVERED ? "sent" : st == DS_BOUNCED ? "bounced" : "deferred", r->reason);
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
            smtp_rcpt_set(s->m, s->rr[i], s->relay, st, dsn, "%s", why);
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
        smtp_rcpt_set(s->m, r, s->relay, st, dsn, "host %s said: %s (in reply to %s)",
                      s->relay, text, cmd);
    else
        fail_all(s, st, dsn, "host %s said: %s (in reply to %s)", s->relay, text, cmd);
}

/* Read a reply; -1 = connection lost or broken (pending recipients deferred). */
static int get_reply(struct sess *s, int timeout, const char *cmd)
{
    if (sio_reply(&s->io, &s->r, timeout) == 0) {
        log_trace(TRACE_SMTP, "%s < %d %s", s->relay, s->r.code, s->r.text);
        return 0;
    }
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

/* STARTTLS per policy. 0 go on (TLS or allowed plaintext), -1 done. */
static int starttls(struct sess *s)
{
    enum tls_policy pol = s->cfg->tls_policy;
    if (pol == TLSP_NONE)
        return 0;
    if (!(s->ext.flags & EXT_STARTTLS)) {
        if (pol == TLSP_MAY)
            return 0;
        fail_all(s, DS_DEFERRED, "4.7.4", "TLS is required (delivery.tls_policy = %s), but "
                 "was not offered by host %s", pol == TLSP_VERIFY ? "verify" : "encrypt",
                 s->relay);
        return -1;
    }
    if (s->m->tls == NULL) {
        fail_all(s, DS_DEFERRED, "4.7.5", "TLS offered by %s, but no client TLS context "
                 "(see the log at start-up)", s->relay);
        return -1;
    }
    if (command(s, "STARTTLS", "STARTTLS") < 0)
        return -1;
    if (s->r.code != 220) {
        reply_fail(s, NULL, "STARTTLS");
        return -1;
    }
    if (sio_starttls(&s->io, s->m->tls, s->hop->host, s->cfg->tls_handshake_timeout) < 0) {
        log_info("TLS handshake with %s failed: %s", s->relay, s->io.err);
        fail_all(s, DS_DEFERRED, "4.7.5", "TLS handshake with %s failed: %s", s->relay,
                 s->io.err);
        return -1;
    }
    buf_t why;
    buf_init(&why, 128);
    int ok = tls_client_verified(s->io.ssl, &why);
    log_info("TLS with %s: %s %s, certificate %s", s->relay, tls_version(s->io.ssl),
             tls_cipher(s->io.ssl), why.data);
    s->tls = 1;
    int rc = 0;
    if (!ok && pol == TLSP_VERIFY) {
        fail_all(s, DS_DEFERRED, "4.7.5", "server certificate of %s not verified (name %s): %s",
                 s->relay, s->hop->host, why.data);
        rc = -1;
    }
    buf_free(&why);
    return rc < 0 ? -1 : greet(s);
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
        fail_all(s, DS_BOUNCED, "5.6.3", "8-bit message, but host %s does not offer "
                 "8BITMIME (conversion to 7bit is not implemented yet)", s->relay);
        return -1;
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

/* The content on the wire: CRLF, dot-stuffed, lines folded at 998 octets
 * (a header line continues with a space, i.e. as a folded header), then
 * ".". 0, or -1 (outcomes set). */
static int send_body(struct sess *s)
{
    const struct qf_env *e = s->m->env;
    char in[65536];
    buf_t out;
    buf_init(&out, sizeof(in) * 2);
    int bol = 1, hdr = 1, rc = 0;
    size_t col = 0;
    for (uint64_t off = 0; off < e->content_len && rc == 0;) {
        size_t want = e->content_len - off < sizeof(in) ? (size_t)(e->content_len - off)
                                                         : sizeof(in);
        if (qf_pread_all(s->m->fd, in, want, e->content_off + (off_t)off) < 0) {
            fail_all(s, DS_DEFERRED, "4.3.0", "queue file read error: %m");
            rc = -1;
            break;
        }
        off += want;
        for (size_t i = 0; i < want; i++) {
            char c = in[i];
            if (c == '\n') {
                if (col == 0 && bol)
                    hdr = 0;   /* the empty line ends the header */
                buf_append(&out, "\r\n", 2);
                bol = 1;
                col = 0;
                continue;
            }
            if (col >= SMTP_LINE_MAX) {
                buf_append(&out, "\r\n", 2);
                col = 0;
                if (hdr) {
                    buf_append_char(&out, ' ');
                    col = 1;
                } else {
                    bol = 1;
                }
            }
            if (bol && c == '.') {
                buf_append_char(&out, '.');
                col++;
            }
            buf_append_char(&out, c);
            col++;
            bol = 0;
        }
        if (out.len >= sizeof(in) && (rc = put(s, out.data, out.len)) == 0)
            buf_reset(&out);
    }
    if (rc == 0) {
        if (col > 0 || !bol)
            buf_append(&out, "\r\n", 2);
        buf_append(&out, ".\r\n", 3);
        rc = put(s, out.data, out.len);
    }
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
    if (nok == 0 && !pipe)
        goto out;
    if (get_reply(s, s->cfg->smtp_command_timeout, "DATA") < 0)
        goto out;
    if (s->r.code != 354) {
        if (nok > 0)
            reply_fail(s, NULL, "DATA");
        goto out;
    }
    if (nok == 0) {   /* DATA accepted though every RCPT failed: send nothing */
        put(s, ".\r\n", 3);
        goto out;
    }
    if (send_body(s) < 0)
        goto out;
    if (s->hop->lmtp) {   /* a reply per recipient (smtp_lmtp.c) */
        smtp_lmtp_replies(s->m, &s->io, s->relay, s->rr, s->n, s->cfg->smtp_data_timeout);
        goto out;
    }
    if (get_reply(s, s->cfg->smtp_data_timeout, "end of DATA") < 0)
        goto out;
    if (s->r.code / 100 != 2) {
        reply_fail(s, NULL, "end of DATA");
        goto out;
    }
    char text[QF_REASON_MAX + 1];
    smtp_reply_format(&s->r, text, sizeof(text));
    for (int i = 0; i < s->n; i++)
        if (!s->rr[i]->done)
            smtp_rcpt_set(s->m, s->rr[i], s->relay, DS_DELIVERED,
                          s->r.enh[0] == '2' ? s->r.enh : "2.0.0", "%s", text);
out:
    buf_free(&b);
}

static void session(struct sess *s)
{
    if (get_reply(s, s->cfg->smtp_command_timeout, "initial greeting") < 0)
        return;
    if (s->r.code / 100 != 2) {
        reply_fail(s, NULL, "initial greeting");
        return;
    }
    /* LMTP goes to a local store (delivery.tls_policy is for SMTP peers) */
    if (greet(s) < 0 || (!s->hop->lmtp && starttls(s) < 0) || auth(s) < 0 || precheck(s) < 0)
        goto quit;
    transaction(s);
quit:
    if (sio_write(&s->io, "QUIT\r\n", 6, SMTP_QUIT_TIMEOUT) == 0)
        sio_reply(&s->io, &s->r, SMTP_QUIT_TIMEOUT);
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
    snprintf(out, size, "%s[%s]:%d", hop->host, ip, hop->port);
}

void smtp_session_deliver(const struct smtp_msg *m, const struct smtp_hop *hop,
                          struct smtp_rcpt **rr, int n)
{
    struct sess s;
    memset(&s, 0, sizeof(s));
    s.m = m;
    s.hop = hop;
    s.cfg = m->cfg;
    s.rr = rr;
    s.n = n;
    for (int i = 0; i < hop->naddr; i++) {
        addr_label(hop, i, s.relay, sizeof(s.relay));
        if (sio_connect(&s.io, (const struct sockaddr *)&hop->addr[i], hop->addrlen[i],
                        s.cfg->smtp_connect_timeout, s.cfg->source_address) == 0) {
            session(&s);
            sio_close(&s.io);
            break;
        }
        log_info("connect to %s: %s", s.relay, s.io.err);
        sio_close(&s.io);
        if (i + 1 == hop->naddr)
            fail_all(&s, DS_DEFERRED, "4.4.1", "connect to %s: %s", s.relay, s.io.err);
    }
    if (hop->naddr == 0)
        fail_all(&s, DS_DEFERRED, "4.4.3", "no address for %s", hop->host);
    /* nothing may stay undecided */
    fail_all(&s, DS_DEFERRED, "4.4.2", "conversation with %s ended early", s.relay);
}
