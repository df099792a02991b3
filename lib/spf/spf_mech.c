/*
 * spf_mech.c - the mechanisms of RFC 7208 5 against the client address,
 * the lookups they make (with the 10-term, 2-void, 10-MX and 10-PTR limits
 * of 4.6.4), validated PTR names (ptr and %{p}), and domain-spec expansion.
 *
 * Every lookup goes through spf_lookup(): answered from the check's own
 * store, or SPF_X_NEED (the driver looks it up and the check is replayed).
 * Void lookups count as python3-spf counts them: every lookup a mechanism
 * makes that returns NXDOMAIN or no records (exp= lookups do not count).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "spf/spf_eval_int.h"

/* A name from lib/dns (MX exchange, PTR target) back to its bytes: its
 * \DDD escapes undone (a byte that is a dot stays escaped: cannot be
 * asked as one label, the name is then invalid). */
static void dns_unescape(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < cap; p++) {
        char c = *p;
        if (c == '\\' && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
            isdigit((unsigned char)p[3])) {
            int v = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
            if (v > 0 && v < 256 && v != '.') {
                c = (char)v;
                p += 3;
            }
        }
        out[o++] = c;
    }
    out[o] = '\0';
}

/* lower case, no final dot; -1 when not a valid name (empty or long
 * label, over 253 bytes) */
static int name_key(const char *name, char *out, size_t cap)
{
    size_t o = 0, label = 0;
    for (const char *p = name; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (p[1] == '\0' && o > 0)
                break;                  /* the final dot */
            if (label == 0)
                return -1;
            label = 0;
            out[o++] = '.';
            if (o >= cap || o > DNS_NAME_MAX)
                return -1;
            continue;
        }
        if (++label > 63)
            return -1;
        out[o++] = (char)tolower((unsigned char)c);
        if (o >= cap || o > DNS_NAME_MAX)
            return -1;
    }
    if (label == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

/* The name as libunbound's parser reads it: bytes other than letters,
 * digits, '-' and '_' inside a label as \DDD, so a macro expansion cannot
 * change what is asked. */
static void name_escape(const char *key, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = key; *p && o + 5 < cap; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) || c == '-' || c == '_' || c == '.')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\%03u", c);
    }
    out[o] = '\0';
}

int spf_lookup(struct spf_eval *e, const char *name, uint16_t type, int count_void,
               const struct dns_answer **a_r)
{
    char key[DNS_NAME_MAX + 2];
    *a_r = NULL;
    if (name_key(name, key, sizeof key) < 0)
        return 0;
    const struct dns_answer *a = NULL;
    for (int k = 0; k < e->ncache && !a; k++)
        if (e->cache[k].type == type && strcmp(e->cache[k].name, key) == 0)
            a = e->cache[k].a;
    if (!a) {
        str_copy(e->need_key, sizeof e->need_key, key);
        name_escape(key, e->need, sizeof e->need);
        e->need_type = type;
        return SPF_X_NEED;
    }
    *a_r = a;
    if (count_void && a->status != DNS_TEMPFAIL && (a->status != DNS_FOUND || a->n == 0) &&
        ++e->voids > SPF_MAX_VOID)
        return spf_why(e, SPF_PERMERROR, "more than %d void lookups (at %s)", SPF_MAX_VOID,
                       key);
    return 0;
}

int spf_count_term(struct spf_eval *e, const char *term)
{
    if (++e->lookups > SPF_MAX_LOOKUPS)
        return spf_why(e, SPF_PERMERROR, "more than %d DNS-querying terms (at %s)",
                       SPF_MAX_LOOKUPS, term);
    return 0;
}

static int addr_match(const struct spf_eval *e, int family, const uint8_t *net, int bits)
{
    if (family != e->family)
        return 0;
    int full = bits / 8, rest = bits % 8;
    if (memcmp(e->addr, net, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (e->addr[full] & mask) == (net[full] & mask);
}

/* Does an A/AAAA answer hold an address in the client's network? */
static int answer_match(const struct spf_eval *e, const struct dns_answer *a, int bits)
{
    if (!a || a->status != DNS_FOUND)
        return 0;
    for (int k = 0; k < a->n; k++)
        if (addr_match(e, a->rr[k].u.addr.family, a->rr[k].u.addr.addr, bits))
            return 1;
    return 0;
}

static uint16_t addr_type(const struct spf_eval *e)
{
    return e->family == AF_INET6 ? DNS_T_AAAA : DNS_T_A;
}

/* The validated PTR names of the client (5.5): the first SPF_MAX_PTR PTR
 * names whose own addresses include the client. A failing PTR lookup means
 * none; a name whose address lookup fails is skipped. *list_r: names
 * separated by NULs, count in *n_r. 0, SPF_X_NEED or SPF_PERMERROR. */
static int validated_ptrs(struct spf_eval *e, buf_t *list, int *n_r)
{
    char rev[DNS_NAME_MAX + 2];
    int fam;
    uint8_t tmp[16];
    const struct dns_answer *a;
    *n_r = 0;
    if (dns_reverse_name(e->c, rev, sizeof rev, &fam, tmp) < 0)
        return 0;
    int r = spf_lookup(e, rev, DNS_T_PTR, 1, &a);
    if (r != 0 || !a || a->status != DNS_FOUND)
        return r;
    for (int k = 0; k < a->n && k < SPF_MAX_PTR; k++) {
        const struct dns_answer *fa;
        char name[DNS_NAME_MAX * 4 + 8];
        dns_unescape(a->rr[k].u.ptr, name, sizeof name);
        if ((r = spf_lookup(e, name, addr_type(e), 1, &fa)) != 0)
            return r;
        if (answer_match(e, fa, e->family == AF_INET6 ? 128 : 32)) {
            buf_append(list, name, strlen(name) + 1);
            (*n_r)++;
        }
    }
    return 0;
}

/* name == domain or a subdomain of it, any case */
static int domain_within(const char *name, const char *domain)
{
    size_t n = strlen(name), d = strlen(domain);
    if (d > 0 && domain[d - 1] == '.')
        d--;
    if (n < d || strncasecmp(name + n - d, domain, d) != 0)
        return 0;
    return n == d || name[n - d - 1] == '.';
}

/* %{p} (7.3): a validated name, the domain itself or one of its
 * subdomains preferred; "unknown" without one. Once per run. */
int spf_compute_p(struct spf_eval *e, const char *d)
{
    if (e->p)
        return 0;
    buf_t list;
    int n, r;
    buf_init(&list, 64);
    if ((r = validated_ptrs(e, &list, &n)) != 0) {
        buf_free(&list);
        return r;
    }
    const char *pick = n ? list.data : "unknown";
    for (const char *q = list.data; n && q < list.data + list.len; q += strlen(q) + 1)
        if (strcasecmp(q, d) == 0) {
            pick = q;
            break;
        }
    if (pick == list.data)
        for (const char *q = list.data; n && q < list.data + list.len; q += strlen(q) + 1)
            if (domain_within(q, d) && strcasecmp(q, d) != 0) {
                pick = q;
                break;
            }
    e->p = xstrdup(pick);
    buf_free(&list);
    return 0;
}

int spf_expand_domain(struct spf_eval *e, const struct spf_span *spec, const char *d,
                      int ctx, buf_t *out)
{
    if (!spec->p) {
        buf_set(out, d, strlen(d));
        return 0;
    }
    int r;
    if (spf_macro_uses_p(spec->p, spec->n) && (r = spf_compute_p(e, d)) != 0)
        return r;
    struct spf_macro_env env = { .s = e->s, .l = e->l, .o = e->o, .d = d, .i = e->i,
                                 .p = e->p, .h = e->h, .c = e->c, .r = e->r, .t = e->t,
                                 .v = e->v };
    if (spf_macro_expand(&env, spec->p, spec->n, ctx, out) < 0)
        return spf_why(e, SPF_PERMERROR, "macro expansion failed in %.*s",
                       (int)(spec->n > 100 ? 100 : spec->n), spec->p);
    if (ctx == SPF_MX_DOMAIN && out->len == 0)
        return spf_why(e, SPF_PERMERROR, "empty domain after expansion");
    return 0;
}

/* a / exists: any address of target in the network */
static int mech_a(struct spf_eval *e, const struct spf_term *t, const char *target)
{
    const struct dns_answer *a;
    uint16_t type = t->mech == SPF_M_EXISTS ? DNS_T_A : addr_type(e);
    int r = spf_lookup(e, target, type, 1, &a);
    if (r != 0)
        return r;
    if (a && a->status == DNS_TEMPFAIL)
        return spf_why(e, SPF_TEMPERROR, "DNS lookup of %s failed: %s", target, a->why);
    if (t->mech == SPF_M_EXISTS)
        return a && a->status == DNS_FOUND && a->n > 0 ? SPF_X_MATCH : SPF_X_NOMATCH;
    return answer_match(e, a, e->family == AF_INET6 ? t->cidr6 : t->cidr4) ? SPF_X_MATCH
                                                                            : SPF_X_NOMATCH;
}

static int mech_mx(struct spf_eval *e, const struct spf_term *t, const char *target)
{
    const struct dns_answer *a;
    int r = spf_lookup(e, target, DNS_T_MX, 1, &a);
    if (r != 0)
        return r;
    if (!a || a->status == DNS_NOTFOUND)
        return SPF_X_NOMATCH;
    if (a->status == DNS_TEMPFAIL)
        return spf_why(e, SPF_TEMPERROR, "DNS lookup of %s MX failed: %s", target, a->why);
    if (a->n > SPF_MAX_MX)
        return spf_why(e, SPF_PERMERROR, "%s has more than %d MX records", target, SPF_MAX_MX);
    int bits = e->family == AF_INET6 ? t->cidr6 : t->cidr4;
    for (int k = 0; k < a->n; k++) {
        const struct dns_answer *h;
        char host[DNS_NAME_MAX * 4 + 8];
        if (strcmp(a->rr[k].u.mx.host, ".") == 0)
            continue;
        dns_unescape(a->rr[k].u.mx.host, host, sizeof host);
        if ((r = spf_lookup(e, host, addr_type(e), 1, &h)) != 0)
            return r;
        if (h && h->status == DNS_TEMPFAIL)
            return spf_why(e, SPF_TEMPERROR, "DNS lookup of %s failed: %s", host, h->why);
        if (answer_match(e, h, bits))
            return SPF_X_MATCH;
    }
    return SPF_X_NOMATCH;
}

static int mech_ptr(struct spf_eval *e, const char *target)
{
    buf_t list;
    int n, r;
    buf_init(&list, 64);
    r = validated_ptrs(e, &list, &n);
    for (const char *q = list.data; r == 0 && n && q < list.data + list.len;
         q += strlen(q) + 1)
        if (domain_within(q, target)) {
            buf_free(&list);
            return SPF_X_MATCH;
        }
    buf_free(&list);
    return r != 0 ? r : SPF_X_NOMATCH;
}

static int mech_include(struct spf_eval *e, const char *target)
{
    int r = spf_check_host(e, target, 0);
    switch (r) {
    case SPF_PASS:
        return SPF_X_MATCH;
    case SPF_FAIL: case SPF_SOFTFAIL: case SPF_NEUTRAL:
        return SPF_X_NOMATCH;
    case SPF_NONE:
        return spf_why(e, SPF_PERMERROR, "include:%s has no SPF record", target);
    default:
        return r;                 /* temperror, permerror, need */
    }
}

int spf_mech_eval(struct spf_eval *e, const struct spf_term *t, const char *d)
{
    switch (t->mech) {
    case SPF_M_ALL:
        return SPF_X_MATCH;
    case SPF_M_IP4:
        return addr_match(e, AF_INET, t->net, t->cidr4) ? SPF_X_MATCH : SPF_X_NOMATCH;
    case SPF_M_IP6:
        return addr_match(e, AF_INET6, t->net, t->cidr6) ? SPF_X_MATCH : SPF_X_NOMATCH;
    default:
        break;
    }
    char term[64];
    str_format(term, sizeof term, "%.*s", (int)(t->text.n > 60 ? 60 : t->text.n), t->text.p);
    int r = spf_count_term(e, term);
    if (r != 0)
        return r;
    buf_t target;
    buf_init(&target, 64);
    r = spf_expand_domain(e, &t->spec, d, SPF_MX_DOMAIN, &target);
    if (r == 0) {
        switch (t->mech) {
        case SPF_M_INCLUDE: r = mech_include(e, target.data); break;
        case SPF_M_MX:      r = mech_mx(e, t, target.data); break;
        case SPF_M_PTR:     r = mech_ptr(e, target.data); break;
        default:            r = mech_a(e, t, target.data); break;
        }
    }
    buf_free(&target);
    return r;
}
