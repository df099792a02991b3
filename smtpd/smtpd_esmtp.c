/*
 * smtpd_esmtp.c - the SMTP service extensions beyond the base verbs: the
 * EHLO keywords they add, and their MAIL/RCPT parameters.
 *
 *   SMTPUTF8 (RFC 6531)   MAIL ... SMTPUTF8: UTF-8 allowed in the paths of
 *                         the transaction; without it a non-ASCII address
 *                         gets 553 5.6.7 (the parser accepts well-formed
 *                         UTF-8 only, so nothing else reaches this check).
 *   DSN (RFC 3461)        MAIL: RET=FULL|HDRS, ENVID=xtext (<= 100 octets);
 *                         RCPT: NOTIFY=NEVER|SUCCESS,FAILURE,DELAY,
 *                         ORCPT=addr-type;xtext (<= 500 octets). xtext is
 *                         decoded here and must decode to printable ASCII:
 *                         no CR, LF or NUL reaches the queue file or a log
 *                         (TESTING.md item 5). ORCPT is kept as
 *                         "addr-type;decoded-address".
 * A malformed, repeated or out-of-place value is 501 5.5.4; an unknown
 * parameter (or any parameter after HELO) 555 5.5.4. SIZE and BODY stay
 * with MAIL in smtpd_cmd.c. Never writes anything but replies.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "smtpd.h"
#include "mail/smtp_cmd.h"
#include "mail/addr.h"
#include "mail/qfile.h"
#include "util/log.h"

#define ENVID_MAX 100       /* RFC 3461 4.4 */
#define ORCPT_MAX 500       /* RFC 3461 4.2 */

void smtpd_esmtp_keywords(struct smtpd_session *s)
{
    smtpd_reply_raw(s, "250-SMTPUTF8");
    smtpd_reply_raw(s, "250-DSN");
    smtpd_reply_raw(s, "250-CHUNKING");
}

void smtpd_esmtp_unsupported(struct smtpd_session *s, const struct esmtp_param *p)
{
    buf_t b;
    buf_init(&b, 32);
    buf_append_printable(&b, p->key, p->keylen > 32 ? 32 : p->keylen);
    smtpd_reply(s, 555, "5.5.4", "Unsupported parameter %s", b.data);
    buf_free(&b);
}

static int bad(struct smtpd_session *s, const char *what)
{
    smtpd_reply(s, 501, "5.5.4", "Bad %s parameter", what);
    return -1;
}

static int val_is(const struct esmtp_param *p, const char *v)
{
    size_t n = strlen(v);
    return p->vallen == n && strncasecmp(p->val, v, n) == 0;
}

int smtpd_esmtp_mail_param(struct smtpd_session *s, const struct esmtp_param *p,
                           struct smtpd_txn *t)
{
    if (esmtp_param_is(p, "SMTPUTF8")) {
        if (p->val != NULL || (t->flags & QF_F_SMTPUTF8))
            return bad(s, "SMTPUTF8");
        t->flags |= QF_F_SMTPUTF8;
        return 0;
    }
    if (esmtp_param_is(p, "RET")) {
        if (p->val == NULL || t->ret != 0)
            return bad(s, "RET");
        if (val_is(p, "FULL"))
            t->ret = 1;
        else if (val_is(p, "HDRS"))
            t->ret = 2;
        else
            return bad(s, "RET");
        return 0;
    }
    if (esmtp_param_is(p, "ENVID")) {
        buf_t d;
        if (p->val == NULL || t->envid != NULL || p->vallen > ENVID_MAX)
            return bad(s, "ENVID");
        buf_init(&d, p->vallen + 1);
        if (xtext_decode(p->val, p->vallen, &d) < 0 || d.len == 0) {
            buf_free(&d);
            return bad(s, "ENVID");
        }
        t->envid = buf_steal(&d);
        buf_free(&d);
        return 0;
    }
    smtpd_esmtp_unsupported(s, p);
    return -1;
}

int smtpd_esmtp_mail_check(struct smtpd_session *s, const char *sender, const struct smtpd_txn *t)
{
    if ((t->flags & QF_F_SMTPUTF8) || addr_is_ascii(sender, strlen(sender)))
        return 0;
    smtpd_reply(s, 553, "5.6.7", "Non-ASCII sender address needs MAIL FROM ... SMTPUTF8");
    return -1;
}

/* NOTIFY=NEVER or a comma list of SUCCESS, FAILURE, DELAY (each once). */
static int parse_notify(const char *v, size_t n, uint32_t *bits_r)
{
    static const struct { const char *name; uint32_t bit; } kw[] = {
        { "NEVER", NOTIFY_NEVER }, { "SUCCESS", NOTIFY_SUCCESS },
        { "FAILURE", NOTIFY_FAILURE }, { "DELAY", NOTIFY_DELAY },
    };
    uint32_t bits = 0;
    size_t i = 0;
    for (;;) {
        size_t k = i;
        while (i < n && v[i] != ',')
            i++;
        uint32_t bit = 0;
        for (size_t j = 0; j < sizeof(kw) / sizeof(kw[0]); j++)
            if (i - k == strlen(kw[j].name) && strncasecmp(v + k, kw[j].name, i - k) == 0)
                bit = kw[j].bit;
        if (bit == 0 || (bits & bit))
            return -1;
        bits |= bit;
        if (i == n)
            break;
        i++;            /* the comma; a trailing one leaves an empty item: refused */
    }
    if ((bits & NOTIFY_NEVER) && bits != NOTIFY_NEVER)
        return -1;
    *bits_r = bits;
    return 0;
}

/* ORCPT=addr-type ";" xtext -> "addr-type;decoded" in out. */
static int parse_orcpt(const char *v, size_t n, buf_t *out)
{
    size_t i = 0;
    if (n > ORCPT_MAX)
        return -1;
    while (i < n && v[i] != ';') {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c == '-' && i > 0)))
            return -1;
        i++;
    }
    if (i == 0 || i + 1 >= n)
        return -1;      /* no type, no ";" or nothing after it */
    buf_t d;
    buf_init(&d, n);
    if (xtext_decode(v + i + 1, n - i - 1, &d) < 0) {
        buf_free(&d);
        return -1;
    }
    buf_set(out, v, i + 1);
    buf_append(out, d.data, d.len);
    buf_free(&d);
    return 0;
}

int smtpd_esmtp_rcpt(struct smtpd_session *s, const char *rcpt, const struct smtp_mailrcpt *r)
{
    struct smtpd_txn *t = s->txn;
    uint32_t notify = 0;
    int seen_orcpt = 0, seen_notify = 0;
    buf_t orcpt;
    free(s->wait_orcpt);
    s->wait_orcpt = NULL;
    s->wait_notify = 0;
    buf_init(&orcpt, 0);
    for (int i = 0; i < r->nparams; i++) {
        const struct esmtp_param *p = &r->params[i];
        if (!s->esmtp || !(esmtp_param_is(p, "NOTIFY") || esmtp_param_is(p, "ORCPT"))) {
            smtpd_esmtp_unsupported(s, p);
            goto fail;
        }
        if (esmtp_param_is(p, "NOTIFY")) {
            if (p->val == NULL || seen_notify++ || parse_notify(p->val, p->vallen, &notify) < 0) {
                bad(s, "NOTIFY");
                goto fail;
            }
        } else if (p->val == NULL || seen_orcpt++ || parse_orcpt(p->val, p->vallen, &orcpt) < 0) {
            bad(s, "ORCPT");
            goto fail;
        }
    }
    if (!(t->flags & QF_F_SMTPUTF8) && !addr_is_ascii(rcpt, strlen(rcpt))) {
        smtpd_reply(s, 553, "5.6.7", "Non-ASCII recipient address needs MAIL FROM ... SMTPUTF8");
        goto fail;
    }
    s->wait_notify = notify;
    s->wait_orcpt = seen_orcpt ? buf_steal(&orcpt) : NULL;
    buf_free(&orcpt);
    return 0;
fail:
    buf_free(&orcpt);
    return -1;
}
