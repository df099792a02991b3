/*
 * config_value.c - value parsers shared by the config, the rules compiler
 * and the CLI: sizes, durations, networks (cidr) and listen addresses.
 * Pure functions over C strings; they never allocate and never log.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "config/config_private.h"

/* Leading decimal digits into *v (no sign); returns digits consumed, -1 on overflow. */
static int parse_digits(const char *s, int64_t *v)
{
    int64_t r = 0;
    int n = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        int d = s[n] - '0';
        if (r > (INT64_MAX - d) / 10)
            return -1;
        r = r * 10 + d;
        n++;
    }
    *v = r;
    return n;
}

int config_parse_size(const char *s, int64_t *r)
{
    int64_t v, mul = 1;
    int n = parse_digits(s, &v);
    if (n <= 0)
        return -1;
    const char *p = s + n;
    switch (*p) {
    case '\0': break;
    case 'k': case 'K': mul = 1024LL; p++; break;
    case 'm': case 'M': mul = 1024LL * 1024; p++; break;
    case 'g': case 'G': mul = 1024LL * 1024 * 1024; p++; break;
    case 't': case 'T': mul = 1024LL * 1024 * 1024 * 1024; p++; break;
    default: return -1;
    }
    if (*p == 'B' || *p == 'b')          /* 50MB, 10kB: same thing */
        p++;
    if (*p != '\0' || v > INT64_MAX / mul)
        return -1;
    *r = v * mul;
    return 0;
}

/* "300s", "5m", "4h", "5d", "1w", "1h30m", or plain seconds. */
int config_parse_duration(const char *s, int64_t *secs)
{
    int64_t total = 0;
    const char *p = s;
    if (*p == '\0')
        return -1;
    while (*p) {
        int64_t v, mul;
        int n = parse_digits(p, &v);
        if (n <= 0)
            return -1;
        p += n;
        switch (*p) {
        case '\0':
            if (p - n != s)               /* "1h30" is ambiguous */
                return -1;
            mul = 1;
            break;
        case 's': mul = 1; p++; break;
        case 'm': mul = 60; p++; break;
        case 'h': mul = 3600; p++; break;
        case 'd': mul = 86400; p++; break;
        case 'w': mul = 7 * 86400; p++; break;
        default: return -1;
        }
        if (v > (INT64_MAX - total) / mul)
            return -1;
        total += v * mul;
    }
    *secs = total;
    return 0;
}

static void mask_prefix(unsigned char a[16], int prefix)
{
    for (int i = 0; i < 16; i++) {
        int bits = prefix - i * 8;
        if (bits >= 8)
            continue;
        a[i] &= bits <= 0 ? 0 : (unsigned char)(0xff << (8 - bits));
    }
}

int cidr_parse(const char *s, struct cidr *r)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    long prefix = -1;
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (slash) {
        char *end;
        if (!isdigit((unsigned char)slash[1]) || strlen(slash + 1) > 3)
            return -1;
        prefix = strtol(slash + 1, &end, 10);
        if (*end != '\0')
            return -1;
    }
    memset(r, 0, sizeof(*r));
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        if (prefix > 32)
            return -1;
        r->addr[10] = r->addr[11] = 0xff;
        memcpy(r->addr + 12, &a4, 4);
        r->prefix = prefix < 0 ? 128 : (int)prefix + 96;
    } else {
        char *h = host;
        if (h[0] == '[') {
            size_t n = strlen(h);
            if (n < 3 || h[n - 1] != ']')
                return -1;
            h[n - 1] = '\0';
            h++;
        }
        if (inet_pton(AF_INET6, h, r->addr) != 1 || prefix > 128)
            return -1;
        r->prefix = prefix < 0 ? 128 : (int)prefix;
    }
    mask_prefix(r->addr, r->prefix);
    return 0;
}

static int cidr_match16(const struct cidr *c, const unsigned char a[16])
{
    int full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, a, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char m = (unsigned char)(0xff << (8 - rest));
    return (a[full] & m) == c->addr[full];
}

/* A v4 or v6 sockaddr as 16 bytes (v4 as ::ffff:a.b.c.d, as struct cidr)
 * and its port (network order); -1 for another family. */
static int sa16(const struct sockaddr *sa, unsigned char a[16], in_port_t *port)
{
    memset(a, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &s4->sin_addr, 4);
        *port = s4->sin_port;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        *port = ((const struct sockaddr_in6 *)sa)->sin6_port;
    } else {
        return -1;
    }
    return 0;
}

int cidr_match_sa(const struct cidrlist *l, const struct sockaddr *sa)
{
    unsigned char a[16];
    in_port_t port;
    if (l == NULL || sa == NULL || sa16(sa, a, &port) < 0)
        return 0;
    for (int i = 0; i < l->n; i++)
        if (cidr_match16(&l->v[i], a))
            return 1;
    return 0;
}

int config_address_overlap(const char *x, const char *y)
{
    static const unsigned char any6[16], any4[16] = { [10] = 0xff, [11] = 0xff };
    struct sockaddr_storage sx, sy;
    unsigned char a[16], b[16];
    in_port_t px, py;
    if (config_parse_address(x, &sx, NULL) < 0 || config_parse_address(y, &sy, NULL) < 0 ||
        sa16((struct sockaddr *)&sx, a, &px) < 0 || sa16((struct sockaddr *)&sy, b, &py) < 0)
        return 0;
    int v4 = memcmp(a, any4, 12) == 0;
    if (px != py || v4 != (memcmp(b, any4, 12) == 0))
        return 0;                   /* v6 listeners are IPV6_V6ONLY */
    const unsigned char *any = v4 ? any4 : any6;
    return memcmp(a, b, 16) == 0 || memcmp(a, any, 16) == 0 || memcmp(b, any, 16) == 0;
}

int config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len_r)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon, *hs;
    size_t hl;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hs = s + 1;
        hl = (size_t)(close - hs);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            return -1;                    /* no port, or IPv6 without brackets */
        hs = s;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    const char *ps = colon + 1;
    if (!isdigit((unsigned char)*ps) || strlen(ps) > 5)
        return -1;
    char *end;
    long port = strtol(ps, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535)
        return -1;
    struct sockaddr_storage tmp;
    if (ss == NULL)
        ss = &tmp;
    memset(ss, 0, sizeof(*ss));
    if (s[0] != '[') {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return -1;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (len_r)
            *len_r = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return -1;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (len_r)
            *len_r = sizeof(*s6);
    }
    return 0;
}
