/*
 * authres.c - Authentication-Results (RFC 8601): see authres.h.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "dkim/authres.h"

#define VALUE_MAX 255
#define B64 "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

/* RFC 2045 token: printable ASCII but SP, controls and tspecials. '@' is
 * a tspecial, but RFC 8601 2.2 lets pvalue be [local-part "@"] domain, so
 * an address without other specials goes out bare. */
static int token_char(unsigned char c, int at_ok)
{
    if (c <= 32 || c >= 127)
        return 0;
    if (c == '@')
        return at_ok;
    return strchr("()<>,;:\\\"/[]?=", c) == NULL;
}

/* A quoted-string of s[0..n): controls dropped, other bytes outside
 * printable ASCII as '?', quotes and backslashes escaped. */
static void quoted(buf_t *out, const char *s, size_t n)
{
    buf_append_char(out, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 32 || c == 127)
            continue;
        if (c > 127)
            c = '?';
        if (c == '"' || c == '\\')
            buf_append_char(out, '\\');
        buf_append_char(out, (char)c);
    }
    buf_append_char(out, '"');
}

void authres_value(buf_t *out, const char *s)
{
    size_t n = strlen(s);
    if (n > VALUE_MAX)
        n = VALUE_MAX;
    int tok = n > 0;
    for (size_t i = 0; i < n; i++)
        tok &= token_char((unsigned char)s[i], 1);
    if (tok) {
        buf_append(out, s, n);
        return;
    }
    quoted(out, s, n);
}

/* reason="..." */
static void reason(buf_t *out, const char *s)
{
    if (s == NULL || *s == '\0')
        return;
    buf_append_str(out, " reason=");
    quoted(out, s, strnlen(s, VALUE_MAX));
}

static void part_start(buf_t *out, int *parts)
{
    buf_append_str(out, ";\n\t");
    (*parts)++;
}

static void spf_part(buf_t *out, const struct authres *a, int *parts)
{
    if (a->spf_result == NULL || *a->spf_result == '\0')
        return;
    part_start(out, parts);
    buf_append_str(out, "spf=");
    buf_append_str(out, a->spf_result);
    if (a->spf_helo) {
        if (a->spf_domain && *a->spf_domain) {
            buf_append_str(out, " smtp.helo=");
            authres_value(out, a->spf_domain);
        }
    } else if (a->spf_sender && *a->spf_sender) {
        buf_append_str(out, " smtp.mailfrom=");
        authres_value(out, a->spf_sender);
    } else if (a->spf_domain && *a->spf_domain) {
        buf_append_str(out, " smtp.mailfrom=");
        authres_value(out, a->spf_domain);
    }
}

static void dkim_part(buf_t *out, const struct authres *a, int *parts)
{
    if (!a->dkim_on)
        return;
    if (a->dkim == NULL || a->dkim->n == 0) {
        part_start(out, parts);
        buf_append_str(out, "dkim=none");
        return;
    }
    for (int i = 0; i < a->dkim->n; i++) {
        const struct pdk_sig *s = &a->dkim->sig[i];
        part_start(out, parts);
        buf_append_str(out, "dkim=");
        buf_append_str(out, pdk_result_name(s->result));
        reason(out, s->reason);
        if (s->domain[0]) {
            buf_append_str(out, "\n\t header.d=");
            authres_value(out, s->domain);
        }
        if (s->selector[0]) {
            buf_append_str(out, " header.s=");
            authres_value(out, s->selector);
        }
        if (s->b[0] && strspn(s->b, B64) == strlen(s->b)) {
            /* bare, as OpenDKIM and the big receivers write it (and as
             * python3-authres reads it): base64 is not a token ('/') */
            buf_append_str(out, " header.b=");
            buf_append_str(out, s->b);
        }
        if (s->alg[0]) {
            buf_append_str(out, " header.a=");
            authres_value(out, s->alg);
        }
    }
}

static void dmarc_part(buf_t *out, const struct authres *a, int *parts)
{
    if (a->dmarc_result == NULL || *a->dmarc_result == '\0')
        return;
    part_start(out, parts);
    buf_append_str(out, "dmarc=");
    buf_append_str(out, a->dmarc_result);
    reason(out, a->dmarc_reason);
    if (a->dmarc_policy && *a->dmarc_policy) {
        buf_append_str(out, " policy.dmarc=");
        authres_value(out, a->dmarc_policy);
    }
    if (a->dmarc_header_from && *a->dmarc_header_from) {
        buf_append_str(out, " header.from=");
        authres_value(out, a->dmarc_header_from);
    }
}

void authres_format(buf_t *out, const char *authserv_id, const struct authres *a)
{
    int parts = 0;
    buf_append_str(out, "Authentication-Results: ");
    authres_value(out, authserv_id && *authserv_id ? authserv_id : "localhost");
    spf_part(out, a, &parts);
    dkim_part(out, a, &parts);
    dmarc_part(out, a, &parts);
    if (parts == 0)
        buf_append_str(out, "; none");
    buf_append_char(out, '\n');
}

/* Skip FWS and (nested) comments from p[i]; returns the new index. */
static size_t skip_cfws(const char *p, size_t n, size_t i)
{
    int depth = 0;
    while (i < n) {
        char c = p[i];
        if (depth > 0 && c == '\\' && i + 1 < n) {
            i += 2;
            continue;
        }
        if (c == '(')
            depth++;
        else if (c == ')' && depth > 0)
            depth--;
        else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n')
            break;
        i++;
    }
    return i;
}

int authres_is_ours(const char *f, size_t flen, const char *id)
{
    static const char name[] = "Authentication-Results";
    size_t nl = sizeof(name) - 1;
    if (flen <= nl || strncasecmp(f, name, nl) != 0)
        return 0;
    size_t i = nl;
    while (i < flen && (f[i] == ' ' || f[i] == '\t'))
        i++;
    if (i >= flen || f[i] != ':')
        return 0;
    i = skip_cfws(f, flen, i + 1);
    size_t s = i;
    int q = i < flen && f[i] == '"';
    if (q) {                    /* authserv-id may be a quoted-string */
        s = ++i;
        while (i < flen && f[i] != '"')
            i++;
    } else {
        while (i < flen && !strchr(" \t\r\n;(", f[i]))
            i++;
    }
    size_t idl = strlen(id);
    return idl > 0 && i - s == idl && strncasecmp(f + s, id, idl) == 0;
}

int authres_strip(buf_t *out, const char *hdr, size_t len, const char *id)
{
    int dropped = 0;
    size_t i = 0;
    while (i < len) {
        size_t e = i;           /* the field: up to a line not starting with a blank */
        for (;;) {
            const char *nl = memchr(hdr + e, '\n', len - e);
            e = nl ? (size_t)(nl - hdr) + 1 : len;
            if (e >= len || (hdr[e] != ' ' && hdr[e] != '\t'))
                break;
        }
        if (authres_is_ours(hdr + i, e - i, id))
            dropped++;
        else
            buf_append(out, hdr + i, e - i);
        i = e;
    }
    return dropped;
}
