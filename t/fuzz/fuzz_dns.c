/*
 * fuzz_dns.c - libFuzzer target for lib/dns/dns_rr.c: wire-format rdata
 * of every parsed type (the first byte picks it), wire names, and MX
 * post-processing over records cut from the input (sort, shuffle, Null MX).
 * Build: make fuzz (obj-fuzz/fuzz_dns); seeds: t/fuzz/corpus/dns/
 * Input: [type selector][rdata...]; for the MX list: [n][len][rdata]...
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dns/dns.h"

static const uint16_t types[] = { DNS_T_MX, DNS_T_A, DNS_T_AAAA, DNS_T_TLSA, DNS_T_TXT,
                                  DNS_T_PTR, 99 };

/* A name from the parsers: bounded, and only letters, digits, - _ . \ */
static void check_name(const char *s)
{
    if (strlen(s) > 4 * 255)
        abort();
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || strchr("-_.\\", *s)))
            abort();
}

static void check_rr(const struct dns_rr *rr, size_t n)
{
    switch (rr->type) {
    case DNS_T_MX:   check_name(rr->u.mx.host); break;
    case DNS_T_PTR:  check_name(rr->u.ptr); break;
    case DNS_T_TXT:  if (rr->u.txt.len >= n || rr->u.txt.text[rr->u.txt.len]) abort(); break;
    case DNS_T_TLSA: if (rr->u.tlsa.len + 3 != n) abort(); break;
    default: break;
    }
}

/* Cuts [len][rdata] MX records out of p and runs the MX rules on them. */
static void mx_list(const uint8_t *p, size_t n)
{
    struct dns_answer a;
    memset(&a, 0, sizeof a);
    a.status = DNS_FOUND;
    a.rr = calloc(32, sizeof *a.rr);
    size_t o = 0;
    while (o < n && a.n < 32) {
        size_t l = p[o++];
        if (l > n - o)
            break;
        uint8_t *copy = malloc(l ? l : 1);     /* exact size: ASan sees over-reads */
        memcpy(copy, p + o, l);
        if (dns_rdata_parse(DNS_T_MX, copy, l, &a.rr[a.n]) == 0)
            a.n++;
        free(copy);
        o += l;
    }
    if (a.n == 0)
        a.status = DNS_NOTFOUND;
    dns_mx_finish(&a, "fuzz.test");
    for (int i = 1; a.status == DNS_FOUND && i < a.n; i++)
        if (a.rr[i].u.mx.pref < a.rr[i - 1].u.mx.pref)
            abort();
    if (a.status == DNS_NULL_MX && a.n != 0)
        abort();
    for (int i = 0; i < a.n; i++)
        dns_rr_clear(&a.rr[i]);
    free(a.rr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, data + 1, n);
    uint16_t type = types[data[0] % (sizeof types / sizeof types[0])];
    struct dns_rr rr;
    if (dns_rdata_parse(type, p, n, &rr) == 0) {
        check_rr(&rr, n);
        dns_rr_clear(&rr);
    }
    char name[64];               /* small on purpose: the cap must hold */
    size_t off = 0;
    if (dns_name_text(p, n, &off, name, sizeof name) == 0) {
        if (off > n || strlen(name) >= sizeof name)
            abort();
        check_name(name);
    }
    if (data[0] & 0x80)
        mx_list(p, n);
    free(p);
    return 0;
}
