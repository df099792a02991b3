/*
 * cleanup_headers.c - the header section of a message being queued.
 *
 * The header section is buffered (bounded by CL_HDR_MAX) while lib/mail/hdr.c
 * scans it; when it ends we write, in this order: our Received field, the
 * client's fields unchanged, Message-ID and Date if they were missing, the
 * empty line, then the body streams straight through. Existing fields are
 * never rewritten (DKIM signatures stay valid). Everything we put into a
 * field from the wire (HELO, PTR, recipient, TLS) is sanitised and bounded:
 * no CR, LF, NUL or other control byte can reach the queue file from here.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "mail/addr.h"
#include "util/log.h"

#define FIELD_MAX 255   /* bytes of one wire-derived value in a field */

/* Printable US-ASCII only; inside a comment also no parentheses/backslash.
 * Anything else becomes '?'. Truncated at max bytes. */
void clh_sanitize(buf_t *out, const char *s, size_t max, int in_comment)
{
    size_t n = strlen(s);
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = c > 32 && c < 127;
        if (in_comment && (c == '(' || c == ')' || c == '\\'))
            ok = 0;
        if (!in_comment && (c == '<' || c == '>' || c == ';'))
            ok = 0;
        buf_append_char(out, ok ? (char)c : '?');
    }
}

/* RFC 5322 date-time in local time, C locale names. */
void clh_date(buf_t *out, time_t now)
{
    static const char *days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    localtime_r(&now, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    buf_printf(out, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld",
               days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
               tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
}

/* The "for <addr>" path: as clh_sanitize, but an SMTPUTF8 message keeps its
 * (parser-validated) UTF-8 address intact (RFC 6531 section 3.7). */
static void received_for(buf_t *out, const char *addr, int utf8)
{
    size_t n = strlen(addr);
    if (!utf8 || n > FIELD_MAX || !addr_utf8_valid(addr, n)) {
        clh_sanitize(out, addr, FIELD_MAX, 0);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];
        int ok = c >= 0x80 || (c > 32 && c < 127 && c != '<' && c != '>' && c != ';');
        buf_append_char(out, ok ? (char)c : '?');
    }
}

/* smtpd's Received-SPF field (RFC 7208 9.1: above our Received), folded,
 * controls blanked and capped by filter_hdr_fold; anything else smtpd
 * might send is dropped. */
void clh_received_spf(buf_t *out, const char *field)
{
    static const char name[] = "Received-SPF: ";
    if (field && strncmp(field, name, sizeof name - 1) == 0)
        filter_hdr_fold(out, "Received-SPF", field + sizeof name - 1);
}

/* "\tby HOST (Postern) with PROTO id ID [for <rcpt>]; date": both variants. */
static void received_tail(buf_t *out, const struct qf_env *env, const char *hostname,
                          time_t now)
{
    buf_append_str(out, "\tby ");
    buf_append_str(out, hostname);
    buf_append_str(out, " (Postern) with ");
    const char *proto = env->protocol && *env->protocol ? env->protocol : "SMTP";
    if ((env->flags & QF_F_SMTPUTF8) && strncmp(proto, "ESMTP", 5) == 0) {
        buf_append_str(out, "UTF8SMTP");        /* RFC 6531 3.7.3: UTF8SMTP[S][A] */
        proto += 5;
    }
    clh_sanitize(out, proto, 16, 0);
    buf_append_str(out, " id ");
    buf_append_str(out, env->queue_id);
    if (env->nrcpts == 1) {
        buf_append_str(out, "\n\tfor <");
        received_for(out, env->rcpts[0].addr, (env->flags & QF_F_SMTPUTF8) != 0);
        buf_append_char(out, '>');
    }
    buf_append_str(out, "; ");
    clh_date(out, now);
    buf_append_char(out, '\n');
}

/* RFC 5321 section 4.4 trace field. */
void clh_received(buf_t *out, const struct qf_env *env, const char *hostname, time_t now)
{
    const char *helo = env->helo && *env->helo ? env->helo : NULL;
    const char *ptr = env->client_ptr && *env->client_ptr ? env->client_ptr : "unknown";
    buf_append_str(out, "Received: from ");
    clh_sanitize(out, helo ? helo : ptr, FIELD_MAX, 0);
    buf_append_str(out, " (");
    clh_sanitize(out, ptr, FIELD_MAX, 1);
    buf_append_str(out, " [");
    clh_sanitize(out, env->client_ip && *env->client_ip ? env->client_ip : "127.0.0.1",
                 64, 1);
    buf_append_str(out, "])\n");
    if (env->tls && *env->tls) {
        /* "TLSv1.3 TLS_AES_256_GCM_SHA384" -> (using TLSv1.3 with cipher ...) */
        const char *sp = strchr(env->tls, ' ');
        buf_t v;
        buf_init(&v, 64);
        buf_append(&v, env->tls, sp ? (size_t)(sp - env->tls) : strlen(env->tls));
        buf_append_str(out, "\t(using ");
        clh_sanitize(out, v.data, 32, 1);
        if (sp) {
            buf_append_str(out, " with cipher ");
            clh_sanitize(out, sp + 1, 128, 1);
        }
        buf_append_str(out, ")\n");
        buf_free(&v);
    }
    received_tail(out, env, hostname, now);
}

void clh_received_local(buf_t *out, const struct qf_env *env, const char *login, uint32_t uid,
                        const char *hostname, time_t now)
{
    buf_printf(out, "Received: from local (uid %u, user ", (unsigned)uid);
    clh_sanitize(out, login, 64, 1);
    buf_append_str(out, ")\n");
    received_tail(out, env, hostname, now);
}

static void write_out(struct cl_txn *t, const void *p, size_t n)
{
    if (t->failed || n == 0)
        return;
    if (qf_write_content(t->w, p, n) < 0) {
        int e = errno;
        cl_txn_fail(t, local_reply_errno(e, LR_WRITE));
    }
}

void clh_start(struct cl_txn *t)
{
    t->in_headers = 1;
    hdr_scan_init(&t->hs);
    buf_init(&t->hbuf, 4096);
}

/* The header section is complete: emit it with our additions. */
static void emit_headers(struct cl_ctx *ctx, struct cl_txn *t)
{
    struct hdr_scan *hs = &t->hs;
    time_t now = (time_t)(t->arrival_us / 1000000);
    /* the client's fields, without spoofed Authentication-Results; ours on
     * top when SPF is all it reports (else cleanup_auth.c adds it later) */
    buf_t own, ar;
    buf_init(&own, (size_t)hs->end_off + 1);
    buf_init(&ar, 0);
    cla_headers(ctx, t, &own, &ar, t->hbuf.data, (size_t)hs->end_off);
    write_out(t, ar.data, ar.len);
    buf_free(&ar);
    buf_t add;
    buf_init(&add, 512);
    clh_received_spf(&add, t->received_spf);
    if (t->local)
        clh_received_local(&add, &t->env, t->local_user, t->local_uid, ctx->hostname, now);
    else
        clh_received(&add, &t->env, ctx->hostname, now);
    /* header mutations decided before DATA (cleanup_rules.c) need the
     * whole section in one piece */
    int mut = clr_has_header_muts(&t->muts);
    if (!mut) {
        write_out(t, add.data, add.len);
        buf_reset(&add);
        write_out(t, own.data, own.len);
    } else {
        buf_append(&add, own.data, own.len);
    }
    buf_free(&own);
    if (hs->end_off > 0 && t->hbuf.data[hs->end_off - 1] != '\n')
        buf_append_char(&add, '\n');   /* unterminated last field at end of content */
    if (!(hs->seen & HDR_SEEN_MESSAGE_ID))
        buf_printf(&add, "Message-ID: <%s@%s>\n", t->qid, ctx->hostname);
    if (!(hs->seen & HDR_SEEN_DATE)) {
        buf_append_str(&add, "Date: ");
        clh_date(&add, now);
        buf_append_char(&add, '\n');
    }
    if (mut) {
        buf_t m;
        buf_init(&m, add.len + 512);
        clr_apply_headers(&m, add.data, add.len, &t->muts);
        write_out(t, m.data, m.len);
        buf_free(&m);
        buf_reset(&add);
    }
    /* the body starts with the empty line, or we add one before a body
     * whose first line was not a field (no separator in the message) */
    if (hs->end == HDR_END_BLANK || hs->end == HDR_END_LINE)
        buf_append_char(&add, '\n');
    write_out(t, add.data, add.len);
    buf_free(&add);
    if (hs->body_off < t->hbuf.len)
        write_out(t, t->hbuf.data + hs->body_off, t->hbuf.len - (size_t)hs->body_off);
    if (hs->received >= CL_HOP_LIMIT)
        cl_txn_fail(t, LR_LOOP);
    t->in_headers = 0;
    buf_free(&t->hbuf);
}

void clh_content(struct cl_ctx *ctx, struct cl_txn *t, const unsigned char *p, size_t n)
{
    if (t->failed)
        return;
    if (!t->in_headers) {
        write_out(t, p, n);
        return;
    }
    buf_append(&t->hbuf, p, n);
    hdr_scan_feed(&t->hs, p, n);
    /* the limit holds however the content was cut: a header section that
     * ends in the same piece that takes it past CL_HDR_MAX is refused too */
    if (t->hs.end != HDR_END_NONE && t->hs.end_off <= CL_HDR_MAX) {
        emit_headers(ctx, t);
        return;
    }
    if (t->hbuf.len > CL_HDR_MAX)
        cl_txn_fail(t, LR_HEADER_TOO_BIG);
}

void clh_finish(struct cl_ctx *ctx, struct cl_txn *t)
{
    if (t->failed || !t->in_headers)
        return;
    hdr_scan_finish(&t->hs);
    if (t->hs.end_off > CL_HDR_MAX) {
        cl_txn_fail(t, LR_HEADER_TOO_BIG);
        return;
    }
    emit_headers(ctx, t);
}
