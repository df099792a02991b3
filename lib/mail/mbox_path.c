/*
 * mbox_path.c - mailbox template expansion, recipient sanitising, Maildir
 * names and mboxrd quoting (see mbox_path.h). Pure functions: no I/O.
 * Must never produce a path from a local part or domain it did not check.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "mail/mbox_path.h"
#include "mail/addr.h"
#include "util/idna.h"

static void append_lower(buf_t *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_append_char(b, (char)tolower((unsigned char)p[i]));
}

void mbox_addr_split(const char *addr, buf_t *local_r, buf_t *domain_r)
{
    const char *at = strrchr(addr, '@');
    buf_reset(local_r);
    buf_reset(domain_r);
    if (at == NULL) {
        append_lower(local_r, addr, strlen(addr));
        return;
    }
    append_lower(local_r, addr, (size_t)(at - addr));
    append_lower(domain_r, at + 1, strlen(at + 1));
}

int mbox_local_ok(const char *lp)
{
    size_t n = strlen(lp);
    if (n == 0 || n > MBOX_LOCAL_MAX || lp[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)lp[i];
        if (c >= 0x80) {
            /* SMTPUTF8 local part: whole well-formed sequences only (never
             * '/', '.', NUL or a control inside one) */
            size_t l = addr_utf8_seq((const unsigned char *)lp + i, n - i);
            if (l == 0)
                return 0;
            i += l - 1;
            continue;
        }
        if (!isalnum(c) && strchr("._+=-", c) == NULL)
            return 0;
    }
    return 1;
}

int mbox_domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > MBOX_DOMAIN_MAX || d[0] == '.' || strstr(d, "..") != NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (!(isascii(c) && isalnum(c)) && c != '.' && c != '-')
            return 0;
    }
    return 1;
}

int mbox_template_wants_home(const char *tmpl)
{
    return tmpl[0] == '~' && (tmpl[1] == '/' || tmpl[1] == '\0');
}

enum mbox_path_rc mbox_path_expand(const char *tmpl, const char *local, const char *domain,
                                   const char *home, buf_t *out)
{
    buf_reset(out);
    if (!mbox_local_ok(local))
        return MBP_BAD_ADDR;
    const char *p = tmpl;
    if (mbox_template_wants_home(tmpl)) {
        if (home == NULL || home[0] == '\0')
            return MBP_NO_USER;
        size_t hn = strlen(home);
        while (hn > 1 && home[hn - 1] == '/')
            hn--;
        buf_append(out, home, hn);
        p++;    /* keep the '/' that follows '~' (if any) */
    }
    for (; *p; p++) {
        if (*p != '%') {
            buf_append_char(out, *p);
            continue;
        }
        p++;
        if (*p == '%') {
            buf_append_char(out, '%');
        } else if (*p == 'u') {
            buf_append_str(out, local);
        } else if (*p == 'd') {
            /* a domain in U-labels (SMTPUTF8) names the folder of its
             * A-labels, as the configuration spells the domain */
            char ace[IDNA_ASCII_MAX];
            if (idna_domain_ascii(domain, strlen(domain), ace, sizeof ace) < 0 ||
                !mbox_domain_ok(ace))
                return MBP_BAD_ADDR;
            buf_append_str(out, ace);
        } else {
            buf_reset(out);
            return MBP_BAD_TEMPLATE;   /* also a trailing '%' (*p == '\0') */
        }
    }
    return MBP_OK;
}

void mbox_maildir_name(buf_t *out, int64_t secs, const char *qid, unsigned index,
                       const char *host)
{
    buf_reset(out);
    buf_printf(out, "%lld.P%sR%u.", (long long)secs, qid, index);
    for (const char *h = host; *h; h++) {
        if (*h == '/')
            buf_append_str(out, "\\057");
        else if (*h == ':')
            buf_append_str(out, "\\072");
        else
            buf_append_char(out, *h);
    }
}

/* At a line start: 1 = the line matches /^>*From /, 0 = it does not,
 * -1 = not enough bytes to tell (and no newline in sight). */
static int from_line_match(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] == '>')
        i++;
    size_t rest = n - i;
    size_t cmp = rest < 5 ? rest : 5;
    if (memcmp(p + i, "From ", cmp) != 0)
        return 0;
    return cmp == 5 ? 1 : -1;
}

size_t mbox_from_quote(buf_t *out, const char *p, size_t n, int final, int *midline)
{
    size_t pos = 0;
    while (pos < n) {
        if (!*midline) {
            int m = from_line_match(p + pos, n - pos);
            if (m < 0) {
                if (!final)
                    return pos;   /* undecided: wait for more bytes */
                m = 0;
            }
            if (m)
                buf_append_char(out, '>');
            *midline = 1;
        }
        const char *nl = memchr(p + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - p) + 1 : n;
        buf_append(out, p + pos, end - pos);
        pos = end;
        if (nl)
            *midline = 0;
    }
    return pos;
}

void mbox_from_line(buf_t *out, const char *sender, const struct tm *tm)
{
    char date[64];
    buf_append_str(out, "From ");
    if (sender == NULL || sender[0] == '\0') {
        buf_append_str(out, "MAILER-DAEMON");
    } else {
        for (const unsigned char *s = (const unsigned char *)sender; *s; s++)
            buf_append_char(out, (*s <= 0x20 || *s == 0x7f) ? '_' : (char)*s);
    }
    if (strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", tm) == 0)
        date[0] = '\0';
    buf_printf(out, " %s\n", date);
}
