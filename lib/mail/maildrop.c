/*
 * maildrop.c - framing, writing and checking of maildrop files (format:
 * maildrop.h). Used by sendmail and postdrop (writing, framing) and by
 * pickup (every check, on a file the submitting user owns and may have
 * changed): nothing here trusts a byte it reads.
 */
#include <stdio.h>
#include <string.h>

#include "mail/maildrop.h"
#include "mail/addr.h"

enum { PH_VERSION, PH_USER, PH_ENVELOPE, PH_CONTENT, PH_DONE };
enum { SEEN_S = 1, SEEN_N = 2, SEEN_E = 4, SEEN_B = 8 };

static int fail(char *err, size_t errlen, const char *msg)
{
    if (errlen)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

long md_rec_next(const unsigned char *p, size_t avail, struct md_rec *r, char *err,
                 size_t errlen)
{
    if (avail < 1)
        return 0;
    if (strchr("VUSRNEBMZ", p[0]) == NULL || p[0] == '\0')
        return fail(err, errlen, "unknown record type");
    if (avail < MD_HDR_LEN)
        return 0;
    uint32_t len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    if (len > MD_REC_MAX)
        return fail(err, errlen, "record too long");
    if (avail - MD_HDR_LEN < len)
        return 0;
    r->type = p[0];
    r->p = p + MD_HDR_LEN;
    r->len = len;
    return (long)(MD_HDR_LEN + len);
}

void md_put(buf_t *out, int type, const void *p, size_t n)
{
    unsigned char h[MD_HDR_LEN] = { (unsigned char)type, (unsigned char)(n >> 24),
                                    (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                                    (unsigned char)n };
    buf_append(out, h, sizeof(h));
    buf_append(out, p, n);
}

void md_put_str(buf_t *out, int type, const char *s)
{
    md_put(out, type, s, strlen(s));
}

void md_state_init(struct md_state *st)
{
    memset(st, 0, sizeof(*st));
}

/* Printable text without controls (UTF-8 bytes pass), 0..max bytes. */
static int text_ok(const struct md_rec *r, size_t max)
{
    if (r->len > max)
        return 0;
    for (size_t i = 0; i < r->len; i++)
        if (r->p[i] < 32 || r->p[i] == 127)
            return 0;
    return 1;
}

/* A decimal number of at most 19 digits, no sign, no blanks. */
static int number(const unsigned char *p, size_t n, uint64_t *v)
{
    if (n == 0 || n > 19)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    *v = x;
    return 0;
}

static int mailbox_ok(const struct md_rec *r, int empty_ok)
{
    if (r->len == 0)
        return empty_ok;
    return text_ok(r, MD_TEXT_MAX) &&
           addr_check_mailbox((const char *)r->p, r->len, ADDR_F_UTF8) == ADDR_OK;
}

/* "<uid> <login>": the login is what getpwuid said, kept for the log. */
static int user_rec(struct md_state *st, const struct md_rec *r)
{
    const unsigned char *sp = memchr(r->p, ' ', r->len);
    uint64_t uid;
    if (!text_ok(r, MD_TEXT_MAX) || sp == NULL || number(r->p, (size_t)(sp - r->p), &uid) < 0 ||
        uid > UINT32_MAX)
        return -1;
    size_t ln = r->len - (size_t)(sp - r->p) - 1;
    if (ln == 0 || memchr(sp + 1, ' ', ln) != NULL)
        return -1;
    st->uid = (uint32_t)uid;
    memcpy(st->login, sp + 1, ln);
    st->login[ln] = '\0';
    return 0;
}

/* S R N E B: the envelope, before any content. */
static int envelope_rec(struct md_state *st, const struct md_rec *r, char *err, size_t errlen)
{
    uint64_t v = 0;
    unsigned bit = r->type == MD_SENDER ? SEEN_S : r->type == MD_NOTIFY ? SEEN_N :
                   r->type == MD_RET ? SEEN_E : r->type == MD_BODY ? SEEN_B : 0;
    if (bit && (st->seen & bit))
        return fail(err, errlen, "repeated envelope record");
    st->seen |= bit;
    switch (r->type) {
    case MD_SENDER:
        return mailbox_ok(r, 1) ? 0 : fail(err, errlen, "bad sender address");
    case MD_RCPT:
        if (st->nrcpt >= MD_RCPT_MAX)
            return fail(err, errlen, "too many recipients");
        st->nrcpt++;
        return mailbox_ok(r, 0) ? 0 : fail(err, errlen, "bad recipient address");
    case MD_NOTIFY:
        if (number(r->p, r->len, &v) < 0 || v > 15 || ((v & 1) && v != 1))
            return fail(err, errlen, "bad NOTIFY value");
        st->notify = (uint32_t)v;
        return 0;
    case MD_RET:
        if (number(r->p, r->len, &v) < 0 || v > 2)
            return fail(err, errlen, "bad RET value");
        st->ret = (uint32_t)v;
        return 0;
    case MD_BODY:
        if (r->len == 4 && memcmp(r->p, "7BIT", 4) == 0)
            return 0;
        if (r->len == 8 && memcmp(r->p, "8BITMIME", 8) == 0) {
            st->body_8bit = 1;
            return 0;
        }
        return fail(err, errlen, "bad body type");
    default:
        return fail(err, errlen, "record out of order");
    }
}

static int end_rec(struct md_state *st, const struct md_rec *r, char *err, size_t errlen)
{
    uint64_t v;
    if (number(r->p, r->len, &v) < 0 || v != st->content)
        return fail(err, errlen, "content length does not match END");
    st->phase = PH_DONE;
    st->done = 1;
    return 0;
}

int md_check(struct md_state *st, const struct md_rec *r, int from_user, char *err,
             size_t errlen)
{
    if (st->phase == PH_DONE)
        return fail(err, errlen, "data after END");
    if (from_user && (r->type == MD_VERSION || r->type == MD_USER))
        return fail(err, errlen, "version or user record from the caller");
    if (!from_user && st->phase == PH_VERSION) {
        if (r->type != MD_VERSION || r->len != strlen(MD_MAGIC) ||
            memcmp(r->p, MD_MAGIC, r->len) != 0)
            return fail(err, errlen, "not a maildrop file (bad version record)");
        st->phase = PH_USER;
        return 0;
    }
    if (!from_user && st->phase == PH_USER) {
        if (r->type != MD_USER || user_rec(st, r) < 0)
            return fail(err, errlen, "bad user record");
        st->phase = PH_ENVELOPE;
        return 0;
    }
    if (from_user && st->phase < PH_ENVELOPE)
        st->phase = PH_ENVELOPE;
    if (r->type == MD_CONTENT || r->type == MD_END) {
        if (st->phase == PH_ENVELOPE && (!(st->seen & SEEN_S) || st->nrcpt == 0))
            return fail(err, errlen, "content before sender and recipients");
        st->phase = PH_CONTENT;
        if (r->type == MD_END)
            return end_rec(st, r, err, errlen);
        st->content += r->len;
        return 0;
    }
    if (st->phase != PH_ENVELOPE)
        return fail(err, errlen, "envelope record after content");
    return envelope_rec(st, r, err, errlen);
}

int md_parse(const unsigned char *p, size_t len, struct md_state *st,
             int (*cb)(const struct md_rec *r, void *arg), void *arg, char *err,
             size_t errlen)
{
    size_t off = 0;
    md_state_init(st);
    while (off < len) {
        struct md_rec r;
        long n = md_rec_next(p + off, len - off, &r, err, errlen);
        if (n < 0)
            return -1;
        if (n == 0)
            return fail(err, errlen, "truncated record");
        if (md_check(st, &r, 0, err, errlen) < 0)
            return -1;
        if (cb) {
            int rc = cb(&r, arg);
            if (rc != 0)
                return rc;
        }
        off += (size_t)n;
    }
    if (!st->done)
        return fail(err, errlen, "no END record");
    return 0;
}
