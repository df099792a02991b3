/*
 * smtpd_bdat.c - BDAT (RFC 3030 CHUNKING, without BINARYMIME).
 *
 * "BDAT n [LAST]" is followed by exactly n octets: no dot-unstuffing, no
 * end-of-data detection. The octets are decoded by lib/mail/smtp_data.c's BDAT
 * decoder (CRLF -> LF, the same refusals as DATA: bare CR/LF, NUL, long
 * lines) and streamed to cleanup as CLEANUP_DATA as they arrive; the
 * cleanup transaction opens at the first chunk and ends at LAST, where the
 * reply waits for cleanup exactly as after DATA (smtpd_data_finish).
 *
 * Every BDAT whose size parsed gets its chunk read, even when refused, so
 * the session stays in step with the client: the refusal is the chunk's
 * reply, written after its last octet (RFC 3030 section 3):
 *   before EHLO / after HELO          503 5.5.1
 *   no MAIL / no accepted RCPT        503 5.5.1
 *   octets so far + n > message_size  552 5.3.4 (transaction dropped; the
 *                                     same octets as SIZE= and DATA count)
 *   cleanup unreachable / broken      451 4.3.0 (transaction dropped)
 * A refusal inside a transaction ends it, so later pipelined chunks meet
 * "503 need MAIL" and are discarded too. A size that does not parse
 * (not 1..19 digits, junk after it) gets 501 5.5.4 and the session is
 * closed: nobody can tell where that chunk ends, and reading its octets as
 * commands would be a smuggling channel.
 * Refusals of content (bare CR/LF, NUL, limits.line_length) are answered at LAST,
 * the way DATA answers them at the dot.
 */
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include "smtpd.h"
#include "mail/smtp_cmd.h"
#include "util/log.h"

static void chunk_refuse(struct smtpd_session *s, unsigned code, const char *enh,
                         const char *text)
{
    s->chunk.refuse = code;
    s->chunk.enh = enh;
    s->chunk.text = text;
}

static void chunk_refuse_local(struct smtpd_session *s, enum local_status ls)
{
    const struct local_reply *r = local_reply(ls);
    chunk_refuse(s, (unsigned)r->code, r->enhanced, r->text);
}

/* The refusal ends the transaction: abort at cleanup, forget it. */
static void drop_txn(struct smtpd_session *s)
{
    smtpd_cleanup_end(s, 1);
    smtpd_session_reset(s);
}

/* Decide at the command what happens to the chunk's octets. */
static void chunk_check(struct smtpd_session *s, uint64_t n)
{
    struct smtpd_txn *t = s->txn;
    uint64_t max = smtpd_cfg->message_size > 0 ? (uint64_t)smtpd_cfg->message_size : 0;
    if (s->helo == NULL || !s->esmtp) {
        chunk_refuse(s, 503, "5.5.1", "Error: send EHLO first");
    } else if (t == NULL) {
        chunk_refuse(s, 503, "5.5.1", "Error: need MAIL command");
    } else if (t->nrcpts == 0 || t->nrcpts - t->nextra + t->nremoved == 0) {
        chunk_refuse(s, 503, "5.5.1", "Error: need RCPT command");   /* rule-added ones do not count */
    } else if (max && (n > max || t->bdat_octets > max - n)) {
        chunk_refuse_local(s, LR_TOO_BIG);
        drop_txn(s);
    } else if (!t->bdat) {
        if (smtpd_cleanup_begin(s) < 0) {
            chunk_refuse_local(s, LR_TEMP);
            drop_txn(s);
            return;
        }
        smtp_bdat_init(&t->dec, max,
                       smtpd_cfg->line_length > 0 ? (uint64_t)smtpd_cfg->line_length : 0);
        buf_init(&t->out, 0);
        t->in_data = 1;
        t->bdat = 1;
    }
    if (s->chunk.refuse == 0 && (s->cleanup_broken || !s->cleanup_busy)) {
        chunk_refuse_local(s, LR_TEMP);
        drop_txn(s);
    }
}

/* The chunk's last octet was read: answer it. */
static void chunk_done(struct smtpd_session *s)
{
    struct smtpd_txn *t = s->txn;
    s->state = SS_CMD;
    if (s->chunk.refuse) {
        smtpd_reply(s, s->chunk.refuse, s->chunk.enh, "%s", s->chunk.text);
        smtpd_log_reject(s, "BDAT", s->chunk.refuse, s->chunk.enh, s->chunk.text, "");
        return;
    }
    t->bdat_octets += s->chunk.size;
    if (s->cleanup_broken || !s->cleanup_busy) {
        smtpd_reply_local(s, LR_TEMP);
        drop_txn(s);
        return;
    }
    if (s->chunk.last) {
        smtp_bdat_end(&t->dec, &t->out);
        if (t->dec.errors)
            buf_reset(&t->out);
        smtpd_data_finish(s);       /* refuses, or waits for cleanup (SS_WAIT_DATA) */
        return;
    }
    smtpd_reply(s, 250, "2.0.0", "Ok: %llu octets", (unsigned long long)s->chunk.size);
}

void smtpd_bdat_cmd(struct smtpd_session *s, const char *arg, size_t len)
{
    uint64_t n;
    int last;
    if (smtp_cmd_bdat(arg, len, &n, &last) < 0) {
        log_warn("malformed BDAT from [%s]:%u: closing", s->ip, s->port);
        smtpd_reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
        smtpd_session_close(s);
        return;
    }
    memset(&s->chunk, 0, sizeof(s->chunk));
    s->chunk.left = n;
    s->chunk.size = n;
    s->chunk.last = last;
    chunk_check(s, n);
    if (n == 0) {
        chunk_done(s);
        return;
    }
    s->state = SS_BDAT;
}

int smtpd_bdat_input(struct smtpd_session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    while (s->chunk.left > 0 && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t n = v.iov_len < s->chunk.left ? v.iov_len : (size_t)s->chunk.left;
        if (s->chunk.refuse == 0) {
            struct smtpd_txn *t = s->txn;
            smtp_bdat_feed(&t->dec, v.iov_base, n, &t->out);
            if (t->dec.errors || s->cleanup_broken)
                buf_reset(&t->out);         /* refused anyway: stop sending */
            else
                smtpd_data_flush(s, 0);
        }
        evbuffer_drain(in, n);
        s->chunk.left -= n;
        if (s->chunk.left > 0 && s->chunk.refuse == 0 &&
            smtpd_cleanup_backlog(s) > SMTPD_CLEANUP_HIGH) {
            s->wait = W_THROTTLE;           /* cleanup is slower than the client */
            bufferevent_disable(s->bev, EV_READ);
            return 0;
        }
    }
    if (s->chunk.left > 0)
        return 0;
    chunk_done(s);
    return 1;
}
