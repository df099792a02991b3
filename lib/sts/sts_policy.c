/*
 * sts_policy.c - the MTA-STS parsers (sts.h): the policy body served at
 * https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 3.2), the
 * _mta-sts.DOMAIN TXT record (3.1), and MX name matching (4.1).
 *
 * Pure functions over untrusted bytes: no allocation, every loop bounded
 * by the input, every copy by its destination. Used by the smtp agent
 * (through sts_cache.c) and by the fuzz target.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "sts/sts.h"
#include "util/buf.h"

static int bad(char *why, size_t whylen, const char *what)
{
    str_copy(why, whylen, what);
    return -1;
}

static int is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

/* Field and extension names: 1*32(ALPHA / DIGIT / "_" / "-" / "."). */
static int name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return 0;
    return 1;
}

/* A host name of n octets (no final dot), ASCII only. */
static int host_ok(const char *s, size_t n)
{
    return str_hostname_ok(s, n, 0);
}

int sts_domain_ok(const char *domain)
{
    return host_ok(domain, strlen(domain));
}

const char *sts_mode_name(enum sts_mode m)
{
    return m == STS_ENFORCE ? "enforce" : m == STS_TESTING ? "testing" :
           m == STS_NONE ? "none" : NULL;
}

/* An mx value: ["*."] host name, an optional final dot dropped; stored in
 * lower case. 0 or -1. */
static int add_mx(struct sts_policy *p, const char *v, size_t n)
{
    if (n > 0 && v[n - 1] == '.')
        n--;
    size_t off = n > 2 && v[0] == '*' && v[1] == '.' ? 2 : 0;
    if (!host_ok(v + off, n - off) || p->nmx >= STS_MX_MAX)
        return -1;
    char *d = p->mx[p->nmx++];
    for (size_t i = 0; i < n; i++)
        d[i] = (char)tolower((unsigned char)v[i]);
    d[n] = '\0';
    return 0;
}

/* max_age: 1*10 DIGIT, capped at a year. */
static int max_age(const char *v, size_t n, long *out)
{
    if (n == 0 || n > 10)
        return -1;
    long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i]))
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    *out = x > STS_MAX_AGE_MAX ? STS_MAX_AGE_MAX : (long)x;
    return 0;
}

#define SEEN_MODE 1
#define SEEN_AGE  2

/* One "key: value" line after the version. 0 or -1 (why set). */
static int field(struct sts_policy *p, const char *k, size_t kl, const char *v, size_t vl,
                 int *seen, char *why, size_t whylen)
{
    if (kl == 4 && memcmp(k, "mode", 4) == 0) {
        if (*seen & SEEN_MODE)
            return 0;                       /* the first one counts */
        *seen |= SEEN_MODE;
        if (vl == 7 && memcmp(v, "enforce", 7) == 0)
            p->mode = STS_ENFORCE;
        else if (vl == 7 && memcmp(v, "testing", 7) == 0)
            p->mode = STS_TESTING;
        else if (vl == 4 && memcmp(v, "none", 4) == 0)
            p->mode = STS_NONE;
        else
            return bad(why, whylen, "unknown mode");
    } else if (kl == 7 && memcmp(k, "max_age", 7) == 0) {
        if (*seen & SEEN_AGE)
            return 0;
        *seen |= SEEN_AGE;
        if (max_age(v, vl, &p->max_age) < 0)
            return bad(why, whylen, "bad max_age");
    } else if (kl == 2 && memcmp(k, "mx", 2) == 0) {
        if (add_mx(p, v, vl) < 0)
            return bad(why, whylen, p->nmx >= STS_MX_MAX ? "too many mx lines" : "bad mx");
    } else if (kl == 7 && memcmp(k, "version", 7) == 0) {
        return 0;                           /* a repeated version: the first counts */
    }
    /* other (extension) fields are ignored (RFC 8461 3.2) */
    return 0;
}

/* Split one line into key and value: "key:" *WSP value *WSP. 0 or -1. */
static int split_line(const char *s, size_t n, const char **k, size_t *kl, const char **v,
                      size_t *vl)
{
    const char *colon = memchr(s, ':', n);
    if (colon == NULL || !name_ok(s, (size_t)(colon - s)))
        return -1;
    *k = s;
    *kl = (size_t)(colon - s);
    const char *b = colon + 1, *e = s + n;
    while (b < e && is_wsp(*b))
        b++;
    while (e > b && is_wsp(e[-1]))
        e--;
    if (b == e)
        return -1;
    for (const char *c = b; c < e; c++)   /* printable ASCII and blanks only */
        if (((unsigned char)*c < 0x20 && *c != '\t') || (unsigned char)*c > 0x7e)
            return -1;
    *v = b;
    *vl = (size_t)(e - b);
    return 0;
}

int sts_policy_parse(const char *text, size_t len, struct sts_policy *p, char *why,
                     size_t whylen)
{
    memset(p, 0, sizeof(*p));
    if (len > STS_POLICY_MAX)
        return bad(why, whylen, "policy too large");
    int seen = 0, lines = 0;
    for (size_t off = 0; off < len;) {
        const char *s = text + off, *nl = memchr(s, '\n', len - off);
        size_t n = nl ? (size_t)(nl - s) : len - off;
        off += n + (nl != NULL);
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;                       /* blank lines (a final CRLF) */
        const char *k, *v;
        size_t kl, vl;
        if (split_line(s, n, &k, &kl, &v, &vl) < 0)
            return bad(why, whylen, "malformed line");
        if (lines++ == 0) {
            if (kl != 7 || memcmp(k, "version", 7) != 0 || vl != 5 || memcmp(v, "STSv1", 5) != 0)
                return bad(why, whylen, "does not start with version: STSv1");
            continue;
        }
        if (field(p, k, kl, v, vl, &seen, why, whylen) < 0)
            return -1;
    }
    if (lines == 0)
        return bad(why, whylen, "empty policy");
    if (!(seen & SEEN_MODE))
        return bad(why, whylen, "no mode");
    if (!(seen & SEEN_AGE))
        return bad(why, whylen, "no max_age");
    if (p->nmx == 0 && p->mode != STS_NONE)
        return bad(why, whylen, "no mx");
    return 0;
}

/* TXT extension values: 1*(%x21-3A / %x3C / %x3E-7E). */
static int txt_value_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == ';' || c == '=')
            return 0;
    }
    return 1;
}

int sts_txt_parse(const char *txt, size_t len, char *id_r, size_t idcap)
{
    if (len < 7 || memcmp(txt, "v=STSv1", 7) != 0 ||
        (len > 7 && txt[7] != ';' && !is_wsp(txt[7])))
        return 0;                           /* e.g. v=STSv10: not ours, discarded */
    const char *s = txt + 7, *e = txt + len;
    int have_id = 0;
    for (;;) {
        while (s < e && is_wsp(*s))
            s++;
        if (s == e)
            break;
        if (*s++ != ';')
            return -1;
        while (s < e && is_wsp(*s))
            s++;
        if (s == e)
            break;                          /* a final ";" */
        const char *f = s;
        while (s < e && *s != ';' && !is_wsp(*s))
            s++;
        const char *eq = memchr(f, '=', (size_t)(s - f));
        if (eq == NULL || !name_ok(f, (size_t)(eq - f)) || !txt_value_ok(eq + 1, (size_t)(s - eq - 1)))
            return -1;
        size_t vl = (size_t)(s - eq - 1);
        if (eq - f == 2 && memcmp(f, "id", 2) == 0 && !have_id) {
            for (size_t i = 0; i < vl; i++)
                if (!isalnum((unsigned char)eq[1 + i]))
                    return -1;
            if (vl > STS_ID_MAX || vl >= idcap)
                return -1;
            memcpy(id_r, eq + 1, vl);
            id_r[vl] = '\0';
            have_id = 1;
        }
    }
    return have_id ? 1 : -1;
}

/* One pattern against one name (both without a final dot). */
static int match1(const char *pat, const char *name, size_t nl)
{
    if (pat[0] == '*' && pat[1] == '.') {
        const char *dot = memchr(name, '.', nl);   /* drop exactly one label */
        if (dot == NULL || dot == name)
            return 0;
        size_t rest = nl - (size_t)(dot + 1 - name);
        return strlen(pat + 2) == rest && strncasecmp(pat + 2, dot + 1, rest) == 0;
    }
    return strlen(pat) == nl && strncasecmp(pat, name, nl) == 0;
}

int sts_mx_match(const struct sts_policy *p, const char *mx)
{
    size_t nl = strlen(mx);
    if (nl > 0 && mx[nl - 1] == '.')
        nl--;
    if (nl == 0)
        return 0;
    for (int i = 0; i < p->nmx; i++)
        if (match1(p->mx[i], mx, nl))
            return 1;
    return 0;
}
