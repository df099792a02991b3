/*
 * spf_macro.c - the SPF macro language (RFC 7208 7): syntax checks for
 * macro-strings and domain-specs, and expansion with transformers
 * (rightmost N parts, reversal, delimiters), URL escaping for upper-case
 * letters, and the 253-byte domain rule.
 *
 * Pure: no DNS, no clock (the evaluator supplies every value, %{p}
 * included). Bounded: an expansion over SPF_EXPAND_MAX is an error.
 * Fuzzed by t/fuzz/fuzz_spf.c.
 */
#include <ctype.h>
#include <string.h>

#include "spf/spf_int.h"

/* One token of a macro-string: a literal byte, an escape (%% %_ %-) or a
 * macro-expand %{letter digits r delimiters}. */
struct mtok {
    int    kind;                 /* 0 literal, 1 escape, 2 macro */
    char   ch;                   /* literal / escape output / macro letter */
    int    upper, reverse, digits;
    char   delims[8];
    size_t end;                  /* offset after the token */
};

static int is_delim(char c)
{
    return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

static int letter_ok(char c, int ctx)
{
    c = (char)tolower((unsigned char)c);
    if (strchr("slodiphv", c))
        return 1;
    return ctx == SPF_MX_EXP && strchr("crt", c) != NULL;
}

/* Reads the macro-expand starting at s[i] == '{'; 0 or -1. */
static int tok_macro(const char *s, size_t n, size_t i, int ctx, struct mtok *t)
{
    if (++i >= n || !letter_ok(s[i], ctx))
        return -1;
    t->kind = 2;
    t->ch = (char)tolower((unsigned char)s[i]);
    t->upper = isupper((unsigned char)s[i]) != 0;
    i++;
    int nd = 0;
    long v = 0;
    while (i < n && isdigit((unsigned char)s[i])) {
        if (v < 1000)
            v = v * 10 + (s[i] - '0');
        nd++, i++;
    }
    if (nd > 0 && v == 0)
        return -1;                       /* "the value MUST be at least one" */
    t->digits = nd ? (int)v : 0;
    if (i < n && (s[i] == 'r' || s[i] == 'R'))
        t->reverse = 1, i++;
    size_t nl = 0;
    while (i < n && is_delim(s[i])) {
        if (nl < sizeof t->delims - 1 && !strchr(t->delims, s[i]))
            t->delims[nl++] = s[i];
        i++;
    }
    t->delims[nl] = '\0';
    if (i >= n || s[i] != '}')
        return -1;
    t->end = i + 1;
    return 0;
}

/* The token at s[i]; 0 or -1 (syntax error). */
static int tok_next(const char *s, size_t n, size_t i, int ctx, struct mtok *t)
{
    memset(t, 0, sizeof *t);
    unsigned char c = (unsigned char)s[i];
    if (c != '%') {
        /* macro-literal = %x21-24 / %x26-7E; exp text also has SP */
        if (c < 0x21 || c > 0x7e) {
            if (!(c == ' ' && ctx == SPF_MX_EXP))
                return -1;
        }
        t->kind = 0;
        t->ch = (char)c;
        t->end = i + 1;
        return 0;
    }
    if (i + 1 >= n)
        return -1;
    switch (s[i + 1]) {
    case '%': t->ch = '%'; break;
    case '_': t->ch = ' '; break;
    case '-': t->ch = '-'; break;         /* "%20", written by the expander */
    case '{': return tok_macro(s, n, i + 1, ctx, t);
    default: return -1;
    }
    t->kind = 1;
    t->end = i + 2;
    return 0;
}

int spf_macro_check(const char *s, size_t n, int ctx)
{
    struct mtok t;
    for (size_t i = 0; i < n; i = t.end)
        if (tok_next(s, n, i, ctx, &t) < 0)
            return -1;
    return 0;
}

int spf_macro_uses_p(const char *s, size_t n)
{
    struct mtok t;
    for (size_t i = 0; i < n; i = t.end) {
        if (tok_next(s, n, i, SPF_MX_EXP, &t) < 0)
            return 0;
        if (t.kind == 2 && t.ch == 'p')
            return 1;
    }
    return 0;
}

/* toplabel = ( *alphanum ALPHA *alphanum ) /
 *            ( 1*alphanum "-" *( alphanum / "-" ) alphanum ) */
static int toplabel_ok(const char *s, size_t n)
{
    int alpha = 0, dash = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (isalpha((unsigned char)s[i]))
            alpha = 1;
        else if (s[i] == '-')
            dash = 1;
        else if (!isdigit((unsigned char)s[i]))
            return 0;
    }
    if (!dash)
        return alpha;
    return s[0] != '-' && s[n - 1] != '-';
}

int spf_domain_spec_check(const char *s, size_t n)
{
    struct mtok t;
    size_t tail = 0;                    /* start of the literal text at the end */
    for (size_t i = 0; i < n; i = t.end) {
        if (tok_next(s, n, i, SPF_MX_DOMAIN, &t) < 0)
            return -1;
        if (t.kind != 0)
            tail = t.end;
    }
    if (n == 0)
        return -1;
    if (tail == n)
        return 0;                       /* domain-end = macro-expand */
    /* domain-end = "." toplabel [ "." ] */
    size_t end = n;
    if (s[end - 1] == '.')
        end--;
    size_t dot = end;
    while (dot > tail && s[dot - 1] != '.')
        dot--;
    if (dot == tail)
        return -1;                      /* no dot before the toplabel */
    return toplabel_ok(s + dot, end - dot) ? 0 : -1;
}

/* URL-escapes v (upper-case macro letters): RFC 3986 unreserved kept. */
static void append_escaped(buf_t *out, const char *v, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            buf_append_char(out, (char)c);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            buf_append(out, e, 3);
        }
    }
}

static const char *env_value(const struct spf_macro_env *env, char letter)
{
    const char *v = NULL;
    switch (letter) {
    case 's': v = env->s; break;
    case 'l': v = env->l; break;
    case 'o': v = env->o; break;
    case 'd': v = env->d; break;
    case 'i': v = env->i; break;
    case 'p': v = env->p; break;
    case 'h': v = env->h; break;
    case 'c': v = env->c; break;
    case 'r': v = env->r; break;
    case 't': v = env->t; break;
    case 'v': v = env->v; break;
    }
    return v ? v : "";
}

#define MAX_PARTS 128

/* One macro: split on the delimiters, reverse, keep the rightmost N parts,
 * join with "." (7.3), escape when the letter was upper case. */
static void expand_one(const struct mtok *t, const char *v, buf_t *out)
{
    if (!t->digits && !t->reverse && !t->delims[0]) {
        if (t->upper)
            append_escaped(out, v, strlen(v));
        else
            buf_append_str(out, v);
        return;
    }
    const char *delims = t->delims[0] ? t->delims : ".";
    const char *part[MAX_PARTS];
    size_t plen[MAX_PARTS];
    int np = 0;
    const char *p = v;
    for (;;) {
        size_t k = strcspn(p, delims);
        if (np == MAX_PARTS) {           /* keep the rightmost parts */
            memmove(part, part + 1, sizeof part[0] * (MAX_PARTS - 1));
            memmove(plen, plen + 1, sizeof plen[0] * (MAX_PARTS - 1));
            np--;
        }
        part[np] = p;
        plen[np++] = k;
        if (p[k] == '\0')
            break;
        p += k + 1;
    }
    int first = 0, last = np, step = 1;
    if (t->reverse)
        first = np - 1, last = -1, step = -1;
    int keep = t->digits && t->digits < np ? t->digits : np;
    int skip = np - keep, done = 0;
    buf_t tmp;
    buf_init(&tmp, 64);
    for (int i = first; i != last; i += step) {
        if (skip > 0) {
            skip--;
            continue;
        }
        if (done++)
            buf_append_char(&tmp, '.');
        buf_append(&tmp, part[i], plen[i]);
    }
    if (t->upper)
        append_escaped(out, tmp.data, tmp.len);
    else
        buf_append(out, tmp.data, tmp.len);
    buf_free(&tmp);
}

/* 7.3: a name over 253 bytes loses labels from the left. */
static void domain_finish(buf_t *out)
{
    if (out->len > 0 && out->data[out->len - 1] == '.')
        buf_truncate(out, out->len - 1);
    while (out->len > 253) {
        char *dot = memchr(out->data, '.', out->len);
        if (!dot)
            break;
        buf_consume(out, (size_t)(dot - out->data) + 1);
    }
}

int spf_macro_expand(const struct spf_macro_env *env, const char *s, size_t n, int ctx,
                     buf_t *out)
{
    struct mtok t;
    buf_reset(out);
    for (size_t i = 0; i < n; i = t.end) {
        if (tok_next(s, n, i, ctx, &t) < 0)
            return -1;
        if (t.kind == 0)
            buf_append_char(out, t.ch);
        else if (t.kind == 1 && t.ch == '-')
            buf_append_str(out, "%20");
        else if (t.kind == 1)
            buf_append_char(out, t.ch);
        else
            expand_one(&t, env_value(env, t.ch), out);
        if (out->len > SPF_EXPAND_MAX)
            return -1;
    }
    if (ctx == SPF_MX_DOMAIN)
        domain_finish(out);
    return 0;
}
