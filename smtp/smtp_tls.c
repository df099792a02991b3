/*
 * smtp_tls.c - TLS towards one next-hop address (smtp.h): which policy
 * applies, what STARTTLS must achieve, and the handshake's verdict.
 *
 * Policy: delivery.tls is the default; delivery.tls_policy overrides it per
 * destination. The lookup keys are the next hop as Postfix's
 * smtp_tls_policy_maps has them: for MX delivery the recipient domain (then
 * ".parent" entries), for a relayhost or an address literal "[host]:port",
 * then "[host]". An MX host name never selects an entry.
 *
 * Levels:
 *   none     never STARTTLS;
 *   may      STARTTLS when offered, certificate not checked; a failed
 *            handshake retries that host once in plaintext (as Postfix);
 *   encrypt  TLS required, certificate not checked;
 *   verify   TLS required, the chain verified against delivery.tls_ca_file
 *            (or the system CAs) and the name: the MX host (or relayhost)
 *            name, also sent as SNI;
 *   dane     RFC 7672: TLSA "_PORT._tcp.MXHOST" is asked only when the MX
 *            and the host's address answers were DNSSEC-secure. Usable
 *            secure TLSA -> TLS required and checked against the records
 *            (usages 2 and 3 through OpenSSL's DANE; DANE-TA checks the MX
 *            host name, also sent as SNI); secure TLSA of which none is
 *            usable -> encrypt; no secure TLSA (insecure answers, or none
 *            published) -> may; a failed or bogus TLSA lookup -> that host
 *            is skipped (4.7.5). A DANE failure never falls back to plaintext.
 *
 * MTA-STS (smtp_sts.c) applies where DANE did not decide: an enforce
 * policy raises the level to verify; testing only logs what would fail.
 *
 * Must never: send mail in plaintext when the level in force requires TLS.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <openssl/ssl.h>

#include "smtp.h"
#include "dns/dns.h"
#include "util/log.h"
#include "metrics/metrics.h"

static void set_fail(char *dsn, size_t dsnlen, const char *code, char *why, size_t whylen,
                     const char *fmt, ...) PRINTF_LIKE(6, 7);
static void set_fail(char *dsn, size_t dsnlen, const char *code, char *why, size_t whylen,
                     const char *fmt, ...)
{
    va_list ap;
    str_copy(dsn, dsnlen, code);
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);   /* cut at whylen: a reason, not data */
    va_end(ap);
}

/* The configured level for hop: a delivery.tls_policy entry, or delivery.tls. */
static enum tls_policy configured(const struct config *cfg, const struct smtp_hop *hop,
                                  char *source, size_t size)
{
    enum tls_policy lv = cfg->delivery_tls;
    char keys[2][280];
    int nk = 0;
    if (hop->key[0] == '[' || strchr(hop->key, ':')) {   /* relayhost, address literal */
        snprintf(keys[nk++], sizeof(keys[0]), "[%s]:%d", hop->host, hop->port);
        snprintf(keys[nk++], sizeof(keys[0]), "[%s]", hop->host);
    } else {
        str_copy(keys[nk++], sizeof(keys[0]), hop->key);
    }
    for (int k = 0; k < nk; k++) {
        if (config_tls_policy_lookup(cfg, keys[k], &lv)) {
            snprintf(source, size, "delivery.tls_policy for %.270s", keys[k]);
            return lv;
        }
    }
    snprintf(source, size, "delivery.tls");
    return lv;
}

/* DANE's decision for address i (see the header). */
static int dane(const struct smtp_hop *hop, int i, struct smtp_tls_req *req, char *dsn,
                size_t dsnlen, char *why, size_t whylen)
{
    const char *host = req->names[0];
    struct dns_ctx *d = smtp_resolve_dns();
    if (!hop->secure[i] || d == NULL) {
        log_debug("dane: %s: MX or address not DNSSEC-secure: opportunistic TLS", host);
        req->level = TLSP_MAY;
        return 0;
    }
    struct dns_answer *a = dns_resolve_tlsa(d, hop->port, host);
    if (a->status == DNS_TEMPFAIL) {
        set_fail(dsn, dsnlen, "4.7.5", why, whylen, "TLSA lookup for %s (port %d) failed: %s", host,
                 hop->port, a->why[0] ? a->why : "temporary failure");
        dns_answer_free(a);
        return -1;
    }
    if (a->status != DNS_FOUND || a->sec != DNS_SEC_SECURE) {
        log_debug("dane: %s: no secure TLSA (%s, %s): opportunistic TLS", host,
                  dns_status_name(a->status), dns_sec_name(a->sec));
        req->level = TLSP_MAY;
    } else if (tls_client_tlsa_count(a) == 0) {
        log_info("dane: %s: no usable TLSA record: unauthenticated TLS required", host);
        req->level = TLSP_ENCRYPT;
    } else {
        req->tlsa = a;
        req->peer.tlsa = a;
        return 0;
    }
    dns_answer_free(a);
    return 0;
}

int smtp_tls_policy_for(const struct config *cfg, const struct smtp_hop *hop, int i,
                        struct smtp_tls_req *req, char *dsn, size_t dsnlen, char *why,
                        size_t whylen)
{
    memset(req, 0, sizeof(*req));
    req->asked = req->level = configured(cfg, hop, req->source, sizeof(req->source));
    const char *host = i >= 0 && i < hop->naddr && hop->name[i][0] ? hop->name[i] : hop->host;
    str_copy(req->names[0], sizeof(req->names[0]), host);
    req->peer.names[0] = req->names[0];
    req->peer.nnames = 1;
    req->peer.sni = req->names[0];
    req->hop = hop;
    if (req->level == TLSP_DANE && dane(hop, i, req, dsn, dsnlen, why, whylen) < 0)
        return -1;
    if (req->tlsa == NULL) {   /* DANE did not decide: MTA-STS may (RFC 8461 2) */
        enum tls_policy before = req->level;
        req->level = smtp_sts_tls(hop, before, req->source, sizeof(req->source));
        if (req->level != before)
            req->asked = req->level;
    }
    return 0;
}

void smtp_tls_req_free(struct smtp_tls_req *req)
{
    dns_answer_free(req->tlsa);
    req->tlsa = NULL;
    req->peer.tlsa = NULL;
}

int smtp_tls_want(const struct smtp_tls_req *req, int offered, int have_ctx, const char *relay,
                  char *dsn, size_t dsnlen, char *why, size_t whylen)
{
    if (req->level == TLSP_NONE)
        return 0;
    if (req->level == TLSP_MAY && (!offered || !have_ctx)) {
        if (!offered)
            smtp_sts_testing(req->hop, relay, "STARTTLS not offered");
        return 0;
    }
    if (!offered) {
        set_fail(dsn, dsnlen, "4.7.4", why, whylen, "TLS is required (%s = %s), but was not offered by host %s",
                 req->source, config_tls_policy_name(req->asked), relay);
        return -1;
    }
    if (!have_ctx) {
        set_fail(dsn, dsnlen, "4.7.5", why, whylen, "TLS is required by %s, but there is no client TLS "
                 "context (see the log at start-up)", req->source);
        return -1;
    }
    return 1;
}

/* Is the authentication the handshake achieved enough for req's level? */
static int good_enough(const struct smtp_tls_req *req, enum tls_auth auth)
{
    switch (req->level) {
    case TLSP_DANE: return auth == TLS_AUTH_DANE;
    case TLSP_VERIFY: return auth == TLS_AUTH_TRUSTED;
    default: return 1;
    }
}

int smtp_tls_start(struct sio *io, SSL_CTX *ctx, const struct smtp_tls_req *req, int timeout,
                   const char *relay, char *info, size_t infolen, char *dsn, size_t dsnlen,
                   char *why, size_t whylen)
{
    if (sio_starttls(io, ctx, &req->peer, timeout) < 0) {
        log_info("TLS handshake with %s failed: %s%s", relay, io->err,
                 req->level == TLSP_MAY ? "; trying again without TLS" : "");
        set_fail(dsn, dsnlen, "4.7.5", why, whylen, "TLS handshake with %s failed: %s", relay,
                 io->err);
        return -2;
    }
    buf_t w;
    buf_init(&w, 128);
    enum tls_auth auth = tls_client_verified(io->ssl, &w);
    snprintf(info, infolen, "tls=%s/%s verified=%s", tls_version(io->ssl), tls_cipher(io->ssl),
             tls_auth_name(auth));
    metric_add(MET_SMTP_TLS, 1, config_tls_policy_name(req->level), tls_auth_name(auth));
    log_info("TLS with %s: %s %s, level %s (%s), certificate %s: %s", relay,
             tls_version(io->ssl), tls_cipher(io->ssl), config_tls_policy_name(req->level),
             req->source, tls_auth_name(auth), w.data);
    int rc = 0;
    if (!good_enough(req, auth)) {
        if (req->level == TLSP_DANE)
            set_fail(dsn, dsnlen, "4.7.5", why, whylen, "server certificate of %s does not "
                     "match its TLSA records (DANE): %s", relay, w.data);
        else
            set_fail(dsn, dsnlen, "4.7.5", why, whylen, "server certificate of %s not verified "
                     "(name %s, %s): %s", relay, req->names[0], req->source, w.data);
        rc = -1;
    } else if (auth != TLS_AUTH_TRUSTED && auth != TLS_AUTH_DANE) {
        smtp_sts_testing(req->hop, relay, w.data);
    }
    buf_free(&w);
    return rc;
}
