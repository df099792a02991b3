/*
 * spf_parse.c - one v=spf1 record to a list of terms (RFC 7208 4.6, 5, 6).
 *
 * The whole record is checked before anything is evaluated (4.6: a syntax
 * error anywhere is a permerror, with no further interpretation):
 * qualifiers, mechanism names, domain-specs (macro syntax and the toplabel
 * rule), CIDR lengths without leading zeros and within range, IP literals,
 * at most one redirect= and one exp=, and the macro syntax of unknown
 * modifiers (which are otherwise ignored). Names are case-insensitive.
 *
 * Pure and bounded (SPF_MAX_TERMS); the terms point into the text.
 * Fuzzed by t/fuzz/fuzz_spf.c.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spf/spf_int.h"

int spf_record_is_v1(const char *text, size_t len)
{
    return len >= 6 && strncasecmp(text, "v=spf1", 6) == 0 && (len == 6 || text[6] == ' ');
}

void spf_record_free(struct spf_record *r)
{
    free(r->terms);
    memset(r, 0, sizeof *r);
}

/* ip4-cidr-length / ip6-cidr-length: "/" ( "0" / %x31-39 0*2DIGIT ); the
 * number at s[0..n) after the slash; -1 when malformed. */
static int cidr_number(const char *s, size_t n)
{
    if (n == 0 || n > 3 || (s[0] == '0' && n > 1))
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Takes a trailing "/N" off [s, *n) (dual: "//N"); the number, -1 if
 * there is none, -2 when it is there but malformed. */
static int strip_cidr(const char *s, size_t *n, int dual)
{
    size_t k = *n;
    while (k > 0 && isdigit((unsigned char)s[k - 1]))
        k--;
    if (k == *n || k == 0 || s[k - 1] != '/')
        return -1;
    size_t slash = k - 1;
    if (dual && (slash == 0 || s[slash - 1] != '/'))
        return -1;
    if (!dual && slash > 0 && s[slash - 1] == '/')
        return -1;
    int v = cidr_number(s + k, *n - k);
    if (v < 0)
        return -2;
    *n = dual ? slash - 1 : slash;
    return v;
}

/* ip4-network = qnum "." qnum "." qnum "." qnum, qnum without leading 0s */
static int ip4_parse(const char *s, size_t n, uint8_t *out)
{
    int part = 0;
    size_t i = 0;
    while (part < 4) {
        size_t st = i;
        int v = 0;
        while (i < n && isdigit((unsigned char)s[i]) && i - st < 3)
            v = v * 10 + (s[i++] - '0');
        if (i == st || v > 255 || (s[st] == '0' && i - st > 1))
            return -1;
        out[part++] = (uint8_t)v;
        if (part < 4) {
            if (i >= n || s[i] != '.')
                return -1;
            i++;
        }
    }
    return i == n ? 0 : -1;
}

static int ip6_parse(const char *s, size_t n, uint8_t *out)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, out) == 1 ? 0 : -1;
}

static const struct { const char *name; enum spf_mech m; } mechs[] = {
    { "all", SPF_M_ALL }, { "include", SPF_M_INCLUDE }, { "a", SPF_M_A },
    { "mx", SPF_M_MX }, { "ptr", SPF_M_PTR }, { "ip4", SPF_M_IP4 },
    { "ip6", SPF_M_IP6 }, { "exists", SPF_M_EXISTS },
};

static int mech_lookup(const char *s, size_t n, enum spf_mech *m_r)
{
    for (size_t i = 0; i < sizeof mechs / sizeof mechs[0]; i++)
        if (strlen(mechs[i].name) == n && strncasecmp(s, mechs[i].name, n) == 0) {
            *m_r = mechs[i].m;
            return 0;
        }
    return -1;
}

static int fail(buf_t *err, const char *what, const char *s, size_t n)
{
    buf_reset(err);
    buf_printf(err, "%s: ", what);
    buf_append_printable(err, s, n > 200 ? 200 : n);
    return -1;
}

/* The argument checks per mechanism (5.1-5.7); 0 or -1. */
static int mech_args(struct spf_term *t, const char *arg, size_t an, int has_arg,
                     int c4, int c6, buf_t *err)
{
    const char *s = t->text.p;
    size_t n = t->text.n;
    int dom = t->mech == SPF_M_INCLUDE || t->mech == SPF_M_EXISTS || t->mech == SPF_M_A ||
              t->mech == SPF_M_MX || t->mech == SPF_M_PTR;
    if ((t->mech == SPF_M_INCLUDE || t->mech == SPF_M_EXISTS || t->mech == SPF_M_IP4 ||
         t->mech == SPF_M_IP6) && !has_arg)
        return fail(err, "argument required", s, n);
    if (t->mech == SPF_M_ALL && has_arg)
        return fail(err, "all takes no argument", s, n);
    if ((c4 >= 0 || c6 >= 0) && t->mech != SPF_M_A && t->mech != SPF_M_MX &&
        t->mech != SPF_M_IP4 && t->mech != SPF_M_IP6)
        return fail(err, "CIDR length not allowed", s, n);
    if (c6 >= 0 && (t->mech == SPF_M_IP4 || t->mech == SPF_M_IP6))
        return fail(err, "dual CIDR length not allowed", s, n);
    int max4 = t->mech == SPF_M_IP6 ? 128 : 32;
    if (c4 > max4 || c6 > 128)
        return fail(err, "CIDR length out of range", s, n);
    if (t->mech == SPF_M_IP6) {
        t->cidr6 = c4 >= 0 ? c4 : 128;
        if (ip6_parse(arg, an, t->net) < 0)
            return fail(err, "invalid ip6 address", s, n);
        return 0;
    }
    t->cidr4 = c4 >= 0 ? c4 : 32;
    t->cidr6 = c6 >= 0 ? c6 : 128;
    if (t->mech == SPF_M_IP4) {
        if (ip4_parse(arg, an, t->net) < 0)
            return fail(err, "invalid ip4 address", s, n);
        return 0;
    }
    if (dom && has_arg) {
        if (spf_domain_spec_check(arg, an) < 0)
            return fail(err, "invalid domain-spec", s, n);
        t->spec.p = arg;
        t->spec.n = an;
    }
    return 0;
}

static int parse_mech(const char *s, size_t n, struct spf_term *t, buf_t *err)
{
    memset(t, 0, sizeof *t);
    t->text.p = s;
    t->text.n = n;
    t->qual = SPF_PASS;
    size_t i = 0;
    switch (s[0]) {
    case '+': i = 1; break;
    case '-': t->qual = SPF_FAIL; i = 1; break;
    case '~': t->qual = SPF_SOFTFAIL; i = 1; break;
    case '?': t->qual = SPF_NEUTRAL; i = 1; break;
    }
    size_t end = n;
    int c6 = strip_cidr(s, &end, 1);
    int c4 = strip_cidr(s, &end, 0);
    if (c4 == -2 || c6 == -2)
        return fail(err, "invalid CIDR length", s, n);
    const char *colon = memchr(s + i, ':', end - i);
    size_t nl = colon ? (size_t)(colon - (s + i)) : end - i;
    if (mech_lookup(s + i, nl, &t->mech) < 0)
        return fail(err, "unknown mechanism", s, n);
    const char *arg = colon ? colon + 1 : NULL;
    size_t an = colon ? (size_t)(s + end - arg) : 0;
    if (colon && an == 0)
        return fail(err, "empty argument", s, n);
    return mech_args(t, arg, an, colon != NULL, c4, c6, err);
}

/* name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) "=": the length of
 * the name, 0 if the term is no modifier. */
static size_t modifier_name(const char *s, size_t n)
{
    if (n == 0 || !isalpha((unsigned char)s[0]))
        return 0;
    size_t i = 1;
    while (i < n && (isalnum((unsigned char)s[i]) || strchr("-_.", s[i])))
        i++;
    return i < n && s[i] == '=' ? i : 0;
}

static int parse_modifier(const char *s, size_t n, size_t nl, struct spf_record *r,
                          buf_t *err)
{
    const char *v = s + nl + 1;
    size_t vn = n - nl - 1;
    struct spf_span *slot = NULL;
    if (nl == 8 && strncasecmp(s, "redirect", 8) == 0)
        slot = &r->redirect;
    else if (nl == 3 && strncasecmp(s, "exp", 3) == 0)
        slot = &r->exp;
    if (!slot) {
        /* unknown modifiers are ignored, but must be well-formed (6, 4.6) */
        if (spf_macro_check(v, vn, SPF_MX_DOMAIN) < 0)
            return fail(err, "invalid macro-string", s, n);
        return 0;
    }
    if (slot->p)
        return fail(err, "modifier given twice", s, n);
    if (spf_domain_spec_check(v, vn) < 0)
        return fail(err, "invalid domain-spec", s, n);
    slot->p = v;
    slot->n = vn;
    return 0;
}

int spf_record_parse(const char *text, size_t len, struct spf_record *r, buf_t *err)
{
    memset(r, 0, sizeof *r);
    if (!spf_record_is_v1(text, len))
        return fail(err, "not an SPF record", text, len);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e)
            return fail(err, "not 7-bit printable ASCII", text, len);
    int cap = 0;
    size_t i = 6;
    for (;;) {
        while (i < len && text[i] == ' ')
            i++;
        if (i >= len)
            return 0;
        size_t st = i;
        while (i < len && text[i] != ' ')
            i++;
        const char *s = text + st;
        size_t n = i - st;
        size_t nl = modifier_name(s, n);
        if (nl > 0) {
            if (parse_modifier(s, n, nl, r, err) < 0)
                goto bad;
            continue;
        }
        if (r->n == SPF_MAX_TERMS) {
            fail(err, "too many terms", text, 0);
            goto bad;
        }
        if (r->n == cap) {
            cap = cap ? cap * 2 : 8;
            r->terms = xrealloc(r->terms, (size_t)cap * sizeof *r->terms);
        }
        if (parse_mech(s, n, &r->terms[r->n], err) < 0)
            goto bad;
        r->n++;
    }
bad:
    spf_record_free(r);
    return -1;
}
