/*
 * smtpd_data.c - the DATA phase: decode the client's bytes with the
 * lib/mail/smtp_data.c state machine and stream the content to cleanup as it
 * arrives (CLEANUP_DATA <= SMTPD_CHUNK); never holds a whole message.
 *
 * Refusals found by the decoder are answered at the end of the data (the
 * client is not listening before; the rest of the data is read and
 * discarded, the session goes on), with the transaction aborted at cleanup:
 *   size over limits.message_size   552 5.3.4 Message too big
 *   NUL                             550 5.6.0 NUL not allowed
 *   bare CR or bare LF              550 5.6.0 bare CR or LF not allowed
 *   a line over limits.line_length  500 5.5.2 Line too long   (RFC 5321 4.5.3.1.6)
 * in that order of precedence. The size is counted like SIZE= (RFC 1870):
 * the message as transmitted after dot-unstuffing, CRLF = 2 octets
 * (lib/mail/smtp_data.h); BDAT counts its chunk octets, the same thing. Lines
 * have no length limit unless limits.line_length is set (0, the default:
 * any length up to message_size; never buffered whole). 250 is only said
 * after cleanup's CLEANUP_REPLY says the file is durable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "smtpd.h"
#include "mail/spool.h"
#include "util/log.h"
#include "metrics/metrics.h"

void smtpd_data_start(struct smtpd_session *s)
{
    struct smtpd_txn *t = s->txn;
    if (smtpd_cleanup_begin(s) < 0) {
        smtpd_reply_local(s, LR_TEMP);
        return;
    }
    smtp_data_init(&t->dec, smtpd_cfg->message_size > 0 ? (uint64_t)smtpd_cfg->message_size : 0,
                   smtpd_cfg->line_length > 0 ? (uint64_t)smtpd_cfg->line_length : 0);
    buf_init(&t->out, 0);
    t->in_data = 1;
    smtpd_reply_raw(s, "354 End data with <CR><LF>.<CR><LF>");
    s->state = SS_DATA;
}

/* Send whole chunks (all=1: everything) of decoded content to cleanup.
 * Also used by smtpd_bdat.c. */
void smtpd_data_flush(struct smtpd_session *s, int all)
{
    buf_t *out = &s->txn->out;
    size_t off = 0;
    while (out->len - off >= SMTPD_CHUNK || (all && out->len > off)) {
        size_t n = out->len - off < SMTPD_CHUNK ? out->len - off : SMTPD_CHUNK;
        smtpd_cleanup_data(s, out->data + off, n);
        off += n;
    }
    if (off)
        buf_consume(out, off);
}

/* The terminator (or BDAT LAST) was seen: answer now or wait for cleanup. */
void smtpd_data_finish(struct smtpd_session *s)
{
    struct smtpd_txn *t = s->txn;
    unsigned e = t->dec.errors;
    if (e) {
        smtpd_cleanup_end(s, 1);
        smtpd_refuse_local(s, "DATA", e & SMTP_DATA_E_SIZE ? LR_TOO_BIG :
                                      e & SMTP_DATA_E_NUL ? LR_NUL :
                                      e & SMTP_DATA_E_BARE ? LR_BARE_CR_LF : LR_LINE_TOO_LONG);
        smtpd_session_reset(s);
        s->state = SS_CMD;
        return;
    }
    if (s->cleanup != NULL && s->cleanup_busy && !s->cleanup_broken)
        smtpd_data_flush(s, 1);
    /* cleanup gone, or a frame that could not be sent: abort, 451 */
    if (smtpd_cleanup_end(s, 0) < 0) {
        smtpd_cleanup_close(s);
        smtpd_refuse_local(s, "DATA", LR_TEMP);
        smtpd_session_reset(s);
        s->state = SS_CMD;
        return;
    }
    buf_free(&t->out);
    s->state = SS_WAIT_DATA;
    s->wait = W_CLEANUP;
}

int smtpd_data_input(struct smtpd_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    struct smtpd_txn *t = s->txn;
    while (!t->dec.done && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t used = smtp_data_feed(&t->dec, v.iov_base, v.iov_len, &t->out);
        evbuffer_drain(in, used);
        if (t->dec.errors || s->cleanup_broken)
            buf_reset(&t->out);             /* refused anyway: stop sending */
        else
            smtpd_data_flush(s, 0);
        if (!t->dec.done && smtpd_cleanup_backlog(s) > SMTPD_CLEANUP_HIGH) {
            s->wait = W_THROTTLE;           /* cleanup is slower than the client */
            bufferevent_disable(s->bev, EV_READ);
            return 0;
        }
    }
    if (!t->dec.done)
        return 0;
    smtpd_data_finish(s);
    return 1;
}

void smtpd_data_unthrottle(struct smtpd_session *s)
{
    s->wait = W_NONE;
    bufferevent_enable(s->bev, EV_READ);
    smtpd_session_resume(s);
}

/* cleanup answered (ok=1) or the connection broke (ok=0). May free s. */
void smtpd_data_cleanup_reply(struct smtpd_session *s, int ok, unsigned status, unsigned local,
                              const char *qid, unsigned code, const char *enh, const char *text)
{
    struct smtpd_txn *t = s->txn;
    s->wait = W_NONE;
    s->state = SS_CMD;
    int queued = ok && (status == V_ACCEPT || status == V_NEXT || status == V_FACCEPT ||
                        status == V_QUARANTINE);
    if (queued && queue_id_valid(qid)) {
        smtpd_reply(s, 250, "2.0.0", "Ok: queued as %s", qid);
        s->junk = 0;                        /* limits.junk_commands: mail moved */
        metric_add(MET_MSG_ACCEPTED, 1, s->lis->name, NULL);
        metric_add(MET_BYTES_RECEIVED, t->dec.size, s->lis->name, NULL);
        /* the line that links the session id to the queue id */
        struct log_ev e;
        smtpd_ev(&e, LE_QUEUED, s);
        log_ev_str(&e, LF_QUEUE_ID, qid);
        log_ev_str(&e, LF_HELO, s->helo ? s->helo : "");
        log_ev_str(&e, LF_SENDER, t->sender);
        log_ev_num(&e, LF_NRCPT, t->nrcpts);
        log_ev_num(&e, LF_SIZE, (long long)t->dec.size);
        log_ev_emit(&e);
    } else if (ok && !queued && local != LR_NONE) {
        smtpd_refuse_local(s, "DATA", local < LR__COUNT ? (enum local_status)local : LR_TEMP);
    } else if (ok && !queued && status < V__COUNT) {
        struct smtpd_verdict v = { (enum verdict)status, code, enh, text, "" };
        smtpd_reply_verdict(s, "DATA", STAGE_DATA, &v);
    } else {
        if (ok)
            log_warn("cleanup: bad reply (status %u, queue id \"%s\")", status, qid);
        smtpd_refuse_local(s, "DATA", LR_TEMP);
    }
    smtpd_session_reset(s);
    smtpd_session_resume(s);
}
