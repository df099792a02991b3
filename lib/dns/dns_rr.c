/*
 * dns_rr.c - wire-format rdata to typed records (MX, A, AAAA, TLSA, TXT,
 * PTR), names to text, MX ordering and reverse names.
 *
 * The bytes come from the network (through libunbound, which checks the
 * message but not every rdata's inner shape), so every read is bounded by
 * the rdata length and a malformed record is refused, never guessed at.
 * No libunbound here: t/fuzz/fuzz_dns.c drives these parsers directly.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "dns/dns.h"

/* Appends one label byte in text form; 0, or -1 when out is full. */
static int name_put(char *out, size_t cap, size_t *len, uint8_t c)
{
    char tmp[5];
    size_t k;
    if (isalnum(c) || c == '-' || c == '_') {
        tmp[0] = (char)tolower(c);
        k = 1;
    } else {
        k = (size_t)snprintf(tmp, sizeof tmp, "\\%03u", c);
    }
    if (*len + k + 1 > cap)
        return -1;
    memcpy(out + *len, tmp, k);
    *len += k;
    out[*len] = '\0';
    return 0;
}

int dns_name_text(const uint8_t *p, size_t n, size_t *off, char *out, size_t cap)
{
    size_t o = *off, len = 0, wire = 0;
    if (cap < 2)
        return -1;
    out[0] = '\0';
    for (;;) {
        if (o >= n)
            return -1;
        uint8_t l = p[o++];
        if (l == 0)
            break;
        if (l > 63 || l > n - o)        /* compression pointers (0xC0) refused too */
            return -1;
        wire += 1u + l;
        if (wire > 254)                 /* RFC 1035: 255 bytes with the root label */
            return -1;
        if (len > 0) {
            if (len + 2 > cap)
                return -1;
            out[len++] = '.';
            out[len] = '\0';
        }
        for (size_t i = 0; i < l; i++)
            if (name_put(out, cap, &len, p[o + i]) < 0)
                return -1;
        o += l;
    }
    if (len == 0) {
        out[0] = '.';
        out[1] = '\0';
    }
    *off = o;
    return 0;
}

/* A name that must fill the rdata to its end; malloc'd text or NULL. */
static char *name_whole(const uint8_t *p, size_t n, size_t off)
{
    char tmp[4 * 255 + 8];
    if (dns_name_text(p, n, &off, tmp, sizeof tmp) < 0 || off != n)
        return NULL;
    return xstrdup(tmp);
}

static int parse_mx(const uint8_t *p, size_t n, struct dns_rr *rr)
{
    if (n < 3)
        return -1;
    rr->u.mx.pref = (uint16_t)(p[0] << 8 | p[1]);
    rr->u.mx.host = name_whole(p, n, 2);
    return rr->u.mx.host ? 0 : -1;
}

static int parse_addr(int family, const uint8_t *p, size_t n, struct dns_rr *rr)
{
    size_t want = family == AF_INET ? 4 : 16;
    if (n != want)
        return -1;
    rr->u.addr.family = family;
    memset(rr->u.addr.addr, 0, sizeof rr->u.addr.addr);
    memcpy(rr->u.addr.addr, p, want);
    if (!inet_ntop(family, p, rr->u.addr.text, sizeof rr->u.addr.text))
        return -1;
    return 0;
}

/* TLSA: usage, selector, matching type, then at least one byte of data. */
static int parse_tlsa(const uint8_t *p, size_t n, struct dns_rr *rr)
{
    if (n < 4)
        return -1;
    rr->u.tlsa.usage = p[0];
    rr->u.tlsa.selector = p[1];
    rr->u.tlsa.mtype = p[2];
    rr->u.tlsa.len = n - 3;
    rr->u.tlsa.data = xmalloc(n - 3);
    memcpy(rr->u.tlsa.data, p + 3, n - 3);
    return 0;
}

/* TXT: one or more <length><bytes> strings, concatenated. */
static int parse_txt(const uint8_t *p, size_t n, struct dns_rr *rr)
{
    char *t = xmalloc(n + 1);
    size_t o = 0, len = 0;
    if (n == 0)
        goto bad;
    while (o < n) {
        size_t l = p[o++];
        if (l > n - o)
            goto bad;
        memcpy(t + len, p + o, l);
        len += l;
        o += l;
    }
    t[len] = '\0';
    rr->u.txt.text = t;
    rr->u.txt.len = len;
    return 0;
bad:
    free(t);
    return -1;
}

int dns_rdata_parse(uint16_t type, const uint8_t *p, size_t n, struct dns_rr *rr)
{
    memset(rr, 0, sizeof *rr);
    rr->type = type;
    if (n > 65535 || (n > 0 && p == NULL))
        return -1;
    switch (type) {
    case DNS_T_MX:   return parse_mx(p, n, rr);
    case DNS_T_A:    return parse_addr(AF_INET, p, n, rr);
    case DNS_T_AAAA: return parse_addr(AF_INET6, p, n, rr);
    case DNS_T_TLSA: return parse_tlsa(p, n, rr);
    case DNS_T_TXT:  return parse_txt(p, n, rr);
    case DNS_T_PTR:
        rr->u.ptr = name_whole(p, n, 0);
        return rr->u.ptr ? 0 : -1;
    default:
        return -1;
    }
}

void dns_rr_clear(struct dns_rr *rr)
{
    switch (rr->type) {
    case DNS_T_MX:   free(rr->u.mx.host); break;
    case DNS_T_TLSA: free(rr->u.tlsa.data); break;
    case DNS_T_TXT:  free(rr->u.txt.text); break;
    case DNS_T_PTR:  free(rr->u.ptr); break;
    default: break;
    }
    memset(rr, 0, sizeof *rr);
}

/* ---- MX -------------------------------------------------------------- */

static int mx_cmp(const void *a, const void *b)
{
    const struct dns_rr *x = a, *y = b;
    return (int)x->u.mx.pref - (int)y->u.mx.pref;
}

/* Fisher-Yates over each run of equal preferences (RFC 5321 5.1: spread
 * the load over equal-preference hosts). */
static void mx_shuffle_equal(struct dns_rr *rr, int n)
{
    for (int lo = 0, hi; lo < n; lo = hi) {
        for (hi = lo + 1; hi < n && rr[hi].u.mx.pref == rr[lo].u.mx.pref; hi++)
            ;
        for (int i = hi - 1; i > lo; i--) {
            int j = lo + (int)arc4random_uniform((uint32_t)(i - lo + 1));
            struct dns_rr t = rr[i];
            rr[i] = rr[j];
            rr[j] = t;
        }
    }
}

/* Drops the "." hosts from a list that has others: they mean nothing there. */
static void mx_drop_root(struct dns_answer *a)
{
    int k = 0;
    for (int i = 0; i < a->n; i++) {
        if (strcmp(a->rr[i].u.mx.host, ".") == 0)
            dns_rr_clear(&a->rr[i]);
        else
            a->rr[k++] = a->rr[i];
    }
    a->n = k;
}

void dns_mx_finish(struct dns_answer *a, const char *domain)
{
    if (a->status == DNS_NOTFOUND && !a->nxdomain) {
        /* NODATA: the domain exists without MX: it is its own mail host */
        free(a->rr);
        a->rr = xcalloc(1, sizeof *a->rr);
        a->rr[0].type = DNS_T_MX;
        a->rr[0].u.mx.host = xstrdup(domain);
        for (char *s = a->rr[0].u.mx.host; *s; s++)
            *s = (char)tolower((unsigned char)*s);
        size_t l = strlen(a->rr[0].u.mx.host);
        if (l > 1 && a->rr[0].u.mx.host[l - 1] == '.')
            a->rr[0].u.mx.host[l - 1] = '\0';
        a->n = 1;
        a->implicit_mx = 1;
        a->status = DNS_FOUND;
        return;
    }
    if (a->status != DNS_FOUND)
        return;
    if (a->n == 1 && a->rr[0].u.mx.pref == 0 && strcmp(a->rr[0].u.mx.host, ".") == 0) {
        dns_rr_clear(&a->rr[0]);
        a->n = 0;
        a->status = DNS_NULL_MX;
        return;
    }
    mx_drop_root(a);
    if (a->n == 0) {                /* only "." hosts, not as RFC 7505 says: */
        a->status = DNS_NULL_MX;    /* still nowhere to deliver */
        return;
    }
    qsort(a->rr, (size_t)a->n, sizeof *a->rr, mx_cmp);
    mx_shuffle_equal(a->rr, a->n);
}

/* ---- names for addresses --------------------------------------------- */

int dns_reverse_name(const char *ip, char *out, size_t cap, int *family_r, uint8_t *addr_r)
{
    uint8_t a[16];
    buf_t b;
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, ip, a) != 1)
        return -1;
    buf_init(&b, 80);
    if (family == AF_INET) {
        buf_printf(&b, "%u.%u.%u.%u.in-addr.arpa", a[3], a[2], a[1], a[0]);
    } else {
        for (int i = 15; i >= 0; i--)
            buf_printf(&b, "%x.%x.", a[i] & 0xf, a[i] >> 4);
        buf_append_str(&b, "ip6.arpa");
    }
    int rc = str_copy(out, cap, b.data);
    buf_free(&b);
    if (rc < 0)
        return -1;
    if (family_r)
        *family_r = family;
    if (addr_r) {
        memset(addr_r, 0, 16);
        memcpy(addr_r, a, family == AF_INET ? 4 : 16);
    }
    return 0;
}

const char *dns_status_name(enum dns_status st)
{
    switch (st) {
    case DNS_FOUND:    return "found";
    case DNS_NOTFOUND: return "not found";
    case DNS_TEMPFAIL: return "temporary failure";
    case DNS_NULL_MX:  return "null MX";
    }
    return "?";
}

const char *dns_sec_name(enum dns_sec s)
{
    switch (s) {
    case DNS_SEC_INSECURE: return "insecure";
    case DNS_SEC_SECURE:   return "secure";
    case DNS_SEC_BOGUS:    return "bogus";
    }
    return "?";
}
