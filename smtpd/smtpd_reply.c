/*
 * smtpd_reply.c - writing SMTP replies and logging refusals.
 *
 * Every reply goes through smtpd_reply(): "code enhanced text" (RFC 2034;
 * the 220 greeting and the EHLO/HELO 250 lines are written raw, as RFC
 * 2034 exempts them). Text from filter or cleanup is never copied to the
 * wire unchecked: control bytes become spaces and the length is bounded,
 * so a peer process cannot inject reply lines. 4xx/5xx replies count as
 * session errors (limits.max_errors).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include "smtpd.h"
#include "util/log.h"
#include "metrics/metrics.h"

#define REPLY_TEXT_MAX 400

static void reply_add(struct smtpd_session *s, const char *line, size_t n)
{
    evbuffer_add(bufferevent_get_output(s->bev), line, n);     /* CRLF included */
    if (log_trace_on(TRACE_SMTP))
        log_trace(TRACE_SMTP, "[%s]:%u < %.*s", s->ip, s->port, (int)(n - 2), line);
}

void smtpd_reply_raw(struct smtpd_session *s, const char *line)
{
    char l[REPLY_TEXT_MAX + 32];
    size_t n = strlen(line);
    if (n + 2 <= sizeof(l)) {
        memcpy(l, line, n);
        memcpy(l + n, "\r\n", 2);
        reply_add(s, l, n + 2);
        return;
    }
    struct evbuffer *out = bufferevent_get_output(s->bev);
    evbuffer_add(out, line, n);
    evbuffer_add(out, "\r\n", 2);
    if (log_trace_on(TRACE_SMTP))
        log_trace(TRACE_SMTP, "[%s]:%u < %s", s->ip, s->port, line);
}

void smtpd_reply(struct smtpd_session *s, unsigned code, const char *enh, const char *fmt, ...)
{
    char text[REPLY_TEXT_MAX + 1], line[REPLY_TEXT_MAX + 32];
    const char *t = fmt;
    if (strchr(fmt, '%')) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        t = text;
    }
    /* "code enh text\r\n" by hand: no printf for the constant replies */
    size_t n = 0;
    line[n++] = (char)('0' + code / 100 % 10);
    line[n++] = (char)('0' + code / 10 % 10);
    line[n++] = (char)('0' + code % 10);
    line[n++] = ' ';
    size_t el = strlen(enh);
    if (el > 16)
        el = 16;
    memcpy(line + n, enh, el);
    n += el;
    line[n++] = ' ';
    for (size_t i = 0; t[i] && i < REPLY_TEXT_MAX; i++) {
        char c = t[i];
        line[n++] = ((unsigned char)c < 0x20 || c == 0x7f) ? ' ' : c;
    }
    line[n++] = '\r';
    line[n++] = '\n';
    reply_add(s, line, n);
    if (code >= 400 && code != 421)
        s->errors++;
}

void smtpd_reply_local(struct smtpd_session *s, enum local_status ls)
{
    const struct local_reply *r = local_reply(ls);
    smtpd_reply(s, (unsigned)r->code, r->enhanced, "%s", r->text);
}

void smtpd_refuse_local(struct smtpd_session *s, const char *verb, enum local_status ls)
{
    const struct local_reply *r = local_reply(ls);
    smtpd_reply(s, (unsigned)r->code, r->enhanced, "%s", r->text);
    smtpd_log_reject(s, verb, (unsigned)r->code, r->enhanced, r->text, "");
}

/* "d.d{1,3}.d{1,3}" with the class digit matching the reply code */
static int enhanced_ok(const char *e, unsigned code)
{
    if (e == NULL || e[0] != (char)('0' + code / 100) || e[1] != '.')
        return 0;
    const char *p = e + 2;
    for (int part = 0; part < 2; part++) {
        int d = 0;
        while (isdigit((unsigned char)*p) && d < 4) {
            p++;
            d++;
        }
        if (d == 0 || d > 3)
            return 0;
        if (part == 0 && *p++ != '.')
            return 0;
    }
    return *p == '\0';
}

void smtpd_verdict_reply(const struct smtpd_verdict *v, enum stage st, unsigned *code_r,
                         const char **enh_r, buf_t *text)
{
    const struct verdict_reply *def = verdict_default(v->status, st);
    unsigned code = (unsigned)def->code;
    /* a refusal keeps its class: 5xx for reject/deny, 4xx for defer/tempfail */
    if (v->code >= 200 && v->code <= 599 && v->code / 100 == code / 100)
        code = v->code;
    *code_r = code;
    *enh_r = enhanced_ok(v->enhanced, code) ? v->enhanced : def->enhanced;
    if (!enhanced_ok(*enh_r, code))
        *enh_r = code >= 500 ? "5.0.0" : code >= 400 ? "4.0.0" : "2.0.0";
    buf_reset(text);
    const char *t = v->text && v->text[0] ? v->text : def->text;
    size_t n = strlen(t);
    buf_append(text, t, n > REPLY_TEXT_MAX ? REPLY_TEXT_MAX : n);
}

void smtpd_log_reject(struct smtpd_session *s, const char *verb, unsigned code,
                      const char *enh, const char *text, const char *rule)
{
    /* the stage label is the command in lower case: connect, mail, rcpt.. */
    char stage[16];
    size_t i = 0;
    for (; verb[i] && i < sizeof(stage) - 1; i++)
        stage[i] = (char)tolower((unsigned char)verb[i]);
    stage[i] = '\0';
    metric_add(MET_MSG_REJECTED, 1, stage, enh);
    if (rule && rule[0])
        metric_add(MET_MSG_REJECTED_RULE, 1, stage, rule);
    struct log_ev e;
    smtpd_ev(&e, LE_REJECT, s);
    log_ev_str(&e, LF_COMMAND, verb);
    log_ev_num(&e, LF_CODE, code);
    log_ev_str(&e, LF_DSN, enh);
    log_ev_str(&e, LF_REASON, text);
    if (s->txn || s->wait_txn)
        log_ev_str(&e, LF_SENDER, s->txn ? s->txn->sender : s->wait_txn->sender);
    if (s->wait_arg && strcmp(verb, "RCPT") == 0)
        log_ev_str(&e, LF_RECIPIENT, s->wait_arg);
    log_ev_str(&e, LF_HELO, s->helo);
    log_ev_str(&e, LF_RULE, rule && rule[0] ? rule : NULL);
    log_ev_emit(&e);
}

/* Answer a refusing verdict and log it. */
void smtpd_reply_verdict(struct smtpd_session *s, const char *verb, enum stage st,
                         const struct smtpd_verdict *v)
{
    unsigned code;
    const char *enh;
    buf_t text;
    buf_init(&text, 128);
    smtpd_verdict_reply(v, st, &code, &enh, &text);
    smtpd_reply(s, code, enh, "%s", text.data);
    smtpd_log_reject(s, verb, code, enh, text.data, v->rule);
    buf_free(&text);
}
