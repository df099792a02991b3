/*
 * smtp_resolve.c - the next hop for a recipient domain.
 *
 * delivery.relayhost for every remote domain (port default
 * delivery.smtp_port), with Postfix's meaning of the brackets:
 * "[host]:port" / "[host]" is that host itself (an IP address, or its
 * AAAA and A records: no MX lookup), "host:port" / "host" is a domain
 * whose MX hosts are looked up as for a recipient domain. A relayhost
 * that cannot be resolved defers (4.4.3), even when its domain does not
 * exist: that is the site's configuration, not the recipient's fault.
 * Without a relayhost, an IP-literal domain ("[192.0.2.1]",
 * "[IPv6:2001:db8::1]") is used as is.
 *
 * Otherwise MX through lib/dns (mx_lookup): hosts by preference, implicit
 * MX, each host's AAAA then A addresses, at most SMTP_MAX_ADDRS in all;
 * null MX -> 5.1.10 bounce, NXDOMAIN -> 5.1.2, DNS trouble -> 4.4.3, an MX
 * that is ourselves cuts the list (best MX -> 4.4.6, loops back).
 * hop->host is the first usable MX name (log labels); each address keeps
 * its own MX host name and DNSSEC status for TLS (hop->name, hop->secure).
 * MTA-STS (smtp_sts.c): an enforce policy drops the MX hosts it does not
 * list (none left -> 4.7.5).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp.h"
#include "dns/dns.h"
#include "util/idna.h"
#include "sts/sts.h"
#include "util/buf.h"
#include "util/log.h"

static int fail(char *dsn, size_t dsnlen, const char *code, char *why, size_t whylen,
                const char *fmt, const char *arg)
{
    snprintf(dsn, dsnlen, "%s", code);
    snprintf(why, whylen, fmt, arg);
    return -1;
}

/* Fill hop's addresses for host (numeric only when numeric = 1). */
static int addrs(struct smtp_hop *hop, const char *host, int numeric)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (numeric ? AI_NUMERICHOST : 0);
    char port[8];
    snprintf(port, sizeof(port), "%d", hop->port);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return rc;
    hop->naddr = 0;
    for (struct addrinfo *a = res; a && hop->naddr < SMTP_MAX_ADDRS; a = a->ai_next) {
        str_copy(hop->name[hop->naddr], sizeof(hop->name[0]), host);   /* never secure */
        memcpy(&hop->addr[hop->naddr], a->ai_addr, a->ai_addrlen);
        hop->addrlen[hop->naddr++] = a->ai_addrlen;
    }
    freeaddrinfo(res);
    return hop->naddr > 0 ? 0 : EAI_NONAME;
}

/* Split "[host]:port" / "host:port" / "host" (checked by config already). */
static int split_relay(const char *s, char *host, size_t hl, int *port)
{
    const char *p = NULL;
    size_t n;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return -1;
        n = (size_t)(close - s - 1);
        p = close[1] == ':' ? close + 2 : NULL;
        s++;
    } else {
        const char *colon = strchr(s, ':');
        n = colon ? (size_t)(colon - s) : strlen(s);
        p = colon ? colon + 1 : NULL;
    }
    if (n == 0 || n >= hl)
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    if (p)
        *port = atoi(p);
    return 0;
}

/* One resolver per agent process, made before the privilege drop
 * (libunbound reads its config and trust anchor then). */
static struct dns_ctx *dctx;

void smtp_resolve_init(const struct config *cfg)
{
    dctx = dns_ctx_for_daemon(cfg, "mail for domains without relayhost defers");
}

struct dns_ctx *smtp_resolve_dns(void)
{
    return dctx;
}

/* Append host's addresses of one type (AAAA before A: IPv6 first), each
 * with host's name and whether it is DNSSEC-secure (mxsec: so was the MX).
 * Returns the lookup status; a full hop just stops adding. */
static enum dns_status add_addrs(struct smtp_hop *hop, const char *host, uint16_t type,
                                 int mxsec)
{
    struct dns_answer *a = dns_resolve(dctx, host, type);
    if (a == NULL)
        return DNS_TEMPFAIL;
    enum dns_status st = a->status;
    for (int i = 0; st == DNS_FOUND && i < a->n && hop->naddr < SMTP_MAX_ADDRS; i++) {
        if (a->rr[i].type != type)
            continue;
        const struct dns_addr *da = &a->rr[i].u.addr;
        struct sockaddr_storage *ss = &hop->addr[hop->naddr];
        memset(ss, 0, sizeof(*ss));
        str_copy(hop->name[hop->naddr], sizeof(hop->name[0]), host);
        hop->secure[hop->naddr] = mxsec && a->sec == DNS_SEC_SECURE;
        if (da->family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)hop->port);
            memcpy(&s6->sin6_addr, da->addr, 16);
            hop->addrlen[hop->naddr] = sizeof(*s6);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)hop->port);
            memcpy(&s4->sin_addr, da->addr, 4);
            hop->addrlen[hop->naddr] = sizeof(*s4);
        }
        hop->naddr++;
    }
    dns_answer_free(a);
    return st;
}

/* Both address families of one MX host; TEMPFAIL only if neither answered. */
static enum dns_status host_addrs(struct smtp_hop *hop, const char *host, int mxsec)
{
    enum dns_status s6 = add_addrs(hop, host, DNS_T_AAAA, mxsec);
    enum dns_status s4 = add_addrs(hop, host, DNS_T_A, mxsec);
    if (s6 == DNS_FOUND || s4 == DNS_FOUND)
        return DNS_FOUND;
    return (s6 == DNS_TEMPFAIL || s4 == DNS_TEMPFAIL) ? DNS_TEMPFAIL : DNS_NOTFOUND;
}

/* Is sa one of our own listen addresses (same IP and port, or a
 * wildcard listener on that port)? */
static int is_self(const struct config *cfg, const struct sockaddr_storage *sa)
{
    for (int i = 0; i < cfg->nlisteners; i++) {
        const struct strlist *al = &cfg->listeners[i].address;
        for (int j = 0; j < al->n; j++) {
            struct sockaddr_storage ls;
            if (config_parse_address(al->v[j], &ls, NULL) < 0 || ls.ss_family != sa->ss_family)
                continue;
            if (sa->ss_family == AF_INET) {
                const struct sockaddr_in *x = (const void *)sa, *y = (const void *)&ls;
                if (x->sin_port == y->sin_port &&
                    (y->sin_addr.s_addr == x->sin_addr.s_addr || y->sin_addr.s_addr == 0))
                    return 1;
            } else if (sa->ss_family == AF_INET6) {
                const struct sockaddr_in6 *x = (const void *)sa, *y = (const void *)&ls;
                if (x->sin6_port == y->sin6_port &&
                    (memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 ||
                     IN6_IS_ADDR_UNSPECIFIED(&y->sin6_addr)))
                    return 1;
            }
        }
    }
    return 0;
}

/* Fill hop from the sorted MX hosts of a. As Postfix does, an MX host
 * that is ourselves ends the list: it and every host of the same or a
 * worse preference are dropped (they would send the mail back here).
 * Returns 1 when that happened. */
static int mx_hosts(const struct config *cfg, const struct dns_answer *a, struct smtp_hop *hop,
                    int *tempfail, const struct sts_policy *sts, const char *domain)
{
    int group = 0, pref = -1;     /* first address of the current preference */
    int hosts = 0;
    for (int i = 0; i < a->n && hop->naddr < SMTP_MAX_ADDRS; i++) {
        if (a->rr[i].type != DNS_T_MX || a->rr[i].u.mx.host == NULL)
            continue;
        if (!smtp_sts_mx_ok(sts, domain, a->rr[i].u.mx.host))   /* MTA-STS enforce */
            continue;
        /* a domain with 100 slow MX hosts must not hold the agent: the best
         * SMTP_MAX_MX_HOSTS, and none once the request's time is spent */
        if (hosts++ >= SMTP_MAX_MX_HOSTS || sio_request_over()) {
            if (hop->naddr == 0)
                *tempfail = 1;
            break;
        }
        if (a->rr[i].u.mx.pref != pref) {
            pref = a->rr[i].u.mx.pref;
            group = hop->naddr;
        }
        int first = hop->naddr;
        if (host_addrs(hop, a->rr[i].u.mx.host, a->sec == DNS_SEC_SECURE) == DNS_TEMPFAIL)
            *tempfail = 1;
        for (int k = first; k < hop->naddr; k++) {
            if (is_self(cfg, &hop->addr[k])) {
                hop->naddr = group;
                return 1;
            }
        }
        if (hop->host[0] == '\0' && hop->naddr > first)
            snprintf(hop->host, sizeof(hop->host), "%s", a->rr[i].u.mx.host);
    }
    return 0;
}

/* Every address of every MX host in preference order (equal preferences
 * shuffled by dns_mx_finish), at most SMTP_MAX_ADDRS in all. Null MX ->
 * 5.1.10 bounce, NXDOMAIN -> 5.1.2 bounce, failures -> 4.4.3 defer. */
static int mx_lookup(const struct config *cfg, const char *domain, struct smtp_hop *hop,
                     char *dsn, size_t dsnlen, char *why, size_t whylen)
{
    if (dctx == NULL)
        return fail(dsn, dsnlen, "4.4.3", why, whylen, "no route to %s: no resolver", domain);
    struct dns_answer *a = dns_resolve_mx(dctx, domain);
    if (a == NULL)
        return fail(dsn, dsnlen, "4.4.3", why, whylen, "MX lookup for %s failed", domain);
    enum dns_status st = a->status;
    int tempfail = 0, self = 0;
    struct sts_policy *sts = NULL;
    if (st == DNS_FOUND) {
        snprintf(hop->key, sizeof(hop->key), "%s", domain);
        sts = smtp_sts_policy(cfg, dctx, domain, hop);
        self = mx_hosts(cfg, a, hop, &tempfail, sts, domain);
    }
    int sts_none_left = hop->naddr == 0 && !smtp_sts_any_mx(sts, a);
    free(sts);
    dns_answer_free(a);
    switch (st) {
    case DNS_NULL_MX:
        return fail(dsn, dsnlen, "5.1.10", why, whylen,
                    "%s does not accept mail (null MX)", domain);
    case DNS_NOTFOUND:
        return fail(dsn, dsnlen, "5.1.2", why, whylen, "domain %s not found", domain);
    case DNS_TEMPFAIL:
        return fail(dsn, dsnlen, "4.4.3", why, whylen, "MX lookup for %s: temporary failure",
                    domain);
    case DNS_FOUND:
        break;
    }
    if (sts_none_left)
        return fail(dsn, dsnlen, "4.7.5", why, whylen,
                    "no MX host of %s is allowed by its MTA-STS policy (enforce)", domain);
    if (hop->naddr == 0 && self)
        return fail(dsn, dsnlen, "4.4.6", why, whylen, "mail for %s loops back to myself",
                    domain);
    if (hop->naddr == 0)
        return fail(dsn, dsnlen, "4.4.3", why, whylen,
                    tempfail ? "no address yet for the MX hosts of %s"
                             : "the MX hosts of %s have no address", domain);
    return 0;
}

/* The relayhost's addresses: "[host]" itself, "host" by MX (see the top). */
static int relay_lookup(const struct config *cfg, struct smtp_hop *hop, char *dsn,
                        size_t dsnlen, char *why, size_t whylen)
{
    char host[256];
    if (split_relay(cfg->relayhost, host, sizeof(host), &hop->port) < 0)
        return fail(dsn, dsnlen, "4.3.5", why, whylen, "bad relayhost %s", cfg->relayhost);
    if (cfg->relayhost[0] != '[') {
        int rc = mx_lookup(cfg, host, hop, dsn, dsnlen, why, whylen);
        if (rc < 0)
            dsn[0] = '4';   /* the site's relayhost, not the recipient, is wrong */
        snprintf(hop->key, sizeof(hop->key), "%s", cfg->relayhost);
        return rc;
    }
    snprintf(hop->key, sizeof(hop->key), "%s", cfg->relayhost);
    str_copy(hop->host, sizeof(hop->host), host);
    if (addrs(hop, host, 1) == 0)
        return 0;
    if (dctx == NULL)
        return fail(dsn, dsnlen, "4.4.3", why, whylen, "relayhost %s: no resolver", host);
    enum dns_status st = host_addrs(hop, host, 1);   /* no MX step: the address answer decides */
    if (st == DNS_FOUND && hop->naddr > 0)
        return 0;
    return fail(dsn, dsnlen, "4.4.3", why, whylen,
                st == DNS_TEMPFAIL ? "relayhost %s: address lookup failed temporarily"
                                   : "relayhost %s: no address", host);
}

int smtp_resolve(const struct config *cfg, const char *domain, struct smtp_hop *hop,
                 char *dsn, size_t dsnlen, char *why, size_t whylen)
{
    memset(hop, 0, sizeof(*hop));
    hop->port = cfg->smtp_port;
    if (cfg->relayhost && cfg->relayhost[0])
        return relay_lookup(cfg, hop, dsn, dsnlen, why, whylen);
    size_t dl = strlen(domain);
    if (dl > 2 && domain[0] == '[' && domain[dl - 1] == ']') {
        const char *ip = domain + 1;
        size_t il = dl - 2;
        if (il > 5 && strncasecmp(ip, "IPv6:", 5) == 0) {
            ip += 5;
            il -= 5;
        }
        if (il >= sizeof(hop->host))
            return fail(dsn, dsnlen, "5.1.2", why, whylen, "bad address literal %s", domain);
        memcpy(hop->host, ip, il);
        hop->host[il] = '\0';
        snprintf(hop->key, sizeof(hop->key), "%s", domain);
        if (addrs(hop, hop->host, 1) != 0)
            return fail(dsn, dsnlen, "5.1.2", why, whylen, "bad address literal %s", domain);
        return 0;
    }
    /* RFC 8616 / 6531: a domain in U-labels (an SMTPUTF8 recipient) is
     * looked up - MX, addresses, MTA-STS, TLSA - by its A-labels */
    char ace[IDNA_ASCII_MAX];
    const char *name = idna_lookup_name(domain, ace);
    if (name == NULL)
        return fail(dsn, dsnlen, "5.1.2", why, whylen,
                    "domain %s is no valid internationalized name", domain);
    return mx_lookup(cfg, name, hop, dsn, dsnlen, why, whylen);
}
