/*
 * smtp_reply.c - bounded multiline SMTP reply parser and EHLO keywords
 * (smtp_reply.h). No I/O here: the caller reads lines.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp_reply.h"

void smtp_reply_init(struct smtp_reply *r)
{
    r->code = 0;
    r->enh[0] = '\0';
    r->nlines = 0;
    r->len = 0;
    r->text[0] = '\0';
}

static int reply_err(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    return -1;
}

/* "d.ddd.ddd" at p whose class matches the reply code, followed by a space
 * or the end: copy it to enh. */
static void take_enhanced(struct smtp_reply *r, const char *p, size_t n)
{
    size_t i = 0, dots = 0, digits = 0;
    if (n < 5 || p[0] != r->code / 100 + '0' || p[1] != '.')
        return;
    for (i = 0; i < n && p[i] != ' '; i++) {
        if (p[i] == '.') {
            if (digits == 0 || ++dots > 2)
                return;
            digits = 0;
        } else if (isdigit((unsigned char)p[i]) && ++digits <= 3) {
            continue;
        } else {
            return;
        }
    }
    if (dots != 2 || digits == 0 || i >= sizeof(r->enh))
        return;
    memcpy(r->enh, p, i);
    r->enh[i] = '\0';
}

int smtp_reply_line(struct smtp_reply *r, const char *line, size_t len, char *err, size_t errlen)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len > SMTP_REPLY_LINE_MAX)
        return reply_err(err, errlen, "reply line too long");
    if (len < 3 || !isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
        !isdigit((unsigned char)line[2]) || line[0] < '2' || line[0] > '5')
        return reply_err(err, errlen, "malformed reply line");
    if (len > 3 && line[3] != ' ' && line[3] != '-')
        return reply_err(err, errlen, "malformed reply line");
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (r->nlines > 0 && code != r->code)
        return reply_err(err, errlen, "reply lines disagree on the code");
    if (++r->nlines > SMTP_REPLY_LINES)
        return reply_err(err, errlen, "reply has too many lines");
    r->code = code;
    const char *t = len > 4 ? line + 4 : "";
    size_t tl = len > 4 ? len - 4 : 0;
    if (r->nlines == 1)
        take_enhanced(r, t, tl);
    if (r->len + tl + 1 > SMTP_REPLY_MAX)
        return reply_err(err, errlen, "reply too long");
    if (r->nlines > 1)
        r->text[r->len++] = '\n';
    memcpy(r->text + r->len, t, tl);
    r->len += tl;
    r->text[r->len] = '\0';
    return len > 3 && line[3] == '-' ? 0 : 1;
}

void smtp_reply_format(const struct smtp_reply *r, char *out, size_t size)
{
    if (size == 0)
        return;
    int n = snprintf(out, size, "%d ", r->code);
    size_t o = n > 0 && (size_t)n < size ? (size_t)n : size - 1;
    for (size_t i = 0; i < r->len && o + 1 < size; i++) {
        unsigned char c = (unsigned char)r->text[i];
        out[o++] = c == '\n' ? ' ' : (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
}

/* One EHLO keyword line: "SIZE 1000", "AUTH PLAIN LOGIN", "AUTH=LOGIN". */
static void ext_line(const char *p, size_t n, struct smtp_ext *e)
{
    size_t kl = 0;
    while (kl < n && p[kl] != ' ' && p[kl] != '=')
        kl++;
    const char *args = kl < n ? p + kl + 1 : p + n;
    size_t al = kl < n ? n - kl - 1 : 0;
#define KW(s) (kl == sizeof(s) - 1 && strncasecmp(p, s, kl) == 0)
    if (KW("PIPELINING"))
        e->flags |= EXT_PIPELINING;
    else if (KW("8BITMIME"))
        e->flags |= EXT_8BITMIME;
    else if (KW("SMTPUTF8"))
        e->flags |= EXT_SMTPUTF8;
    else if (KW("DSN"))
        e->flags |= EXT_DSN;
    else if (KW("STARTTLS"))
        e->flags |= EXT_STARTTLS;
    else if (KW("ENHANCEDSTATUSCODES"))
        e->flags |= EXT_ENHANCEDSTATUSCODES;
    else if (KW("SIZE")) {
        e->flags |= EXT_SIZE;
        uint64_t v = 0;
        for (size_t i = 0; i < al && isdigit((unsigned char)args[i]); i++)
            v = v > UINT64_MAX / 10 - 10 ? UINT64_MAX / 10 : v * 10 + (uint64_t)(args[i] - '0');
        e->size = v;
    } else if (KW("AUTH")) {
        e->flags |= EXT_AUTH;
        for (size_t i = 0; i < al;) {
            size_t j = i;
            while (j < al && args[j] != ' ')
                j++;
            if (j - i == 5 && strncasecmp(args + i, "PLAIN", 5) == 0)
                e->auth |= AUTHM_PLAIN;
            else if (j - i == 5 && strncasecmp(args + i, "LOGIN", 5) == 0)
                e->auth |= AUTHM_LOGIN;
            i = j + 1;
        }
    }
#undef KW
}

void smtp_ext_parse(const struct smtp_reply *r, struct smtp_ext *e)
{
    memset(e, 0, sizeof(*e));
    const char *p = memchr(r->text, '\n', r->len), *end = r->text + r->len;
    while (p && p < end) {
        p++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        ext_line(p, n, e);
        p = nl;
    }
}
