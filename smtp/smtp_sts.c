/*
 * smtp_sts.c - MTA-STS (RFC 8461) in the smtp agent: the hook between
 * lib/sts (policy, TXT, fetch, cache) and the next hop (smtp.h).
 *
 *   smtp_sts_policy   at MX resolution (smtp_resolve.c): the destination's
 *                     policy, when delivery.mta_sts is on; its mode goes
 *                     into the hop (and the delivery log lines)
 *   smtp_sts_mx_ok    which MX hosts may be used: enforce drops the ones the
 *                     policy does not list; testing logs them and goes on
 *   smtp_sts_tls      at STARTTLS (smtp_session.c): enforce requires TLS
 *                     with a certificate verified for the MX host name
 *                     (PKIX, SNI = MX name); a failure defers, never
 *                     plaintext. testing: failures are logged only.
 *
 * Not for a relayhost or an address literal (no MX: RFC 8461 applies to
 * the MX hosts of the recipient domain). DANE comes first (RFC 8461 2):
 * where the TLS policy finds secure TLSA records for the MX host, its
 * verdict replaces this one (call smtp_sts_tls only when DANE does not
 * apply).
 */
#include <stdio.h>
#include <stdlib.h>

#include "smtp.h"
#include "sts/sts.h"
#include "dns/dns.h"
#include "mail/spool.h"
#include "util/log.h"

struct sts_policy *smtp_sts_policy(const struct config *cfg, struct dns_ctx *dns,
                                   const char *domain, struct smtp_hop *hop)
{
    hop->sts_mode = STS_NO_POLICY;
    if (!cfg->mta_sts)
        return NULL;
    struct sts_policy *p = xmalloc(sizeof(*p));
    if (sts_policy_get(cfg, dns, SPOOL_STS, domain, p) != 1) {
        free(p);
        return NULL;
    }
    hop->sts_mode = (int)p->mode;
    return p;
}

int smtp_sts_mx_ok(const struct sts_policy *p, const char *domain, const char *mx)
{
    if (p == NULL || p->mode == STS_NONE || sts_mx_match(p, mx))
        return 1;
    if (p->mode == STS_TESTING) {
        log_info("MTA-STS policy of %s (testing): MX host %s not in the policy; "
                 "used anyway", domain, mx);
        return 1;
    }
    log_info("MTA-STS policy of %s (enforce): MX host %s not in the policy; skipped",
             domain, mx);
    return 0;
}

int smtp_sts_any_mx(const struct sts_policy *p, const struct dns_answer *a)
{
    if (p == NULL || p->mode != STS_ENFORCE)
        return 1;
    for (int i = 0; i < a->n; i++)
        if (a->rr[i].type == DNS_T_MX && a->rr[i].u.mx.host && sts_mx_match(p, a->rr[i].u.mx.host))
            return 1;
    return 0;
}

enum tls_policy smtp_sts_tls(const struct smtp_hop *hop, enum tls_policy pol, char *source,
                             size_t len)
{
    if (hop->sts_mode != STS_ENFORCE)
        return pol;
    snprintf(source, len, "MTA-STS policy of %s, mode enforce", hop->key);
    return TLSP_VERIFY;
}

void smtp_sts_testing(const struct smtp_hop *hop, const char *relay, const char *what)
{
    if (hop->sts_mode == STS_TESTING)
        log_info("MTA-STS policy of %s (testing): %s: %s; going on", hop->key, relay,
                 what);
}

const char *smtp_sts_mode(int mode)
{
    return sts_mode_name((enum sts_mode)mode);
}
