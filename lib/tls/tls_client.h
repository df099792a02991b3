/*
 * tls_client.h - the client side of TLS (the smtp agent's STARTTLS):
 * one SSL_CTX for outgoing connections, and per-connection peer checks:
 * the names the certificate must match (SNI, verify) and DANE TLSA
 * records (RFC 7672) through OpenSSL's DANE support.
 *
 * The context always loads the trust anchors (delivery.tls_ca_file, else
 * the system store) so `verify` can check the chain; whether a failed
 * check matters is the caller's policy (SSL_VERIFY_NONE here: the result
 * is read after the handshake with tls_client_verified and logged).
 * Never decides policy: smtp/smtp_tls.c does.
 */
#ifndef POSTERN_TLS_CLIENT_H
#define POSTERN_TLS_CLIENT_H

#include "dns/dns.h"
#include "tls/tls.h"

#define TLS_CLIENT_NAMES 4      /* reference identifiers per connection */

/* What one connection checks the server against. */
struct tls_client_peer {
    const char *sni;            /* server name sent; NULL or an IP literal: none */
    const char *names[TLS_CLIENT_NAMES];  /* names (or one IP) the certificate must
                                           * match; names[0] is DANE's base domain */
    int nnames;
    const struct dns_answer *tlsa;  /* DANE: the TLSA RRset, NULL = no DANE */
};

/* How the server was authenticated (the log's verified=...). */
enum tls_auth {
    TLS_AUTH_UNTRUSTED = 0,     /* chain or name not verified */
    TLS_AUTH_TRUSTED,           /* chain to a trusted CA and a name matched */
    TLS_AUTH_DANE,              /* matched a TLSA record */
};

/* Build the client context (tls.protocols range, DANE enabled). NULL
 * with why in err. */
SSL_CTX *tls_client_ctx_new(const struct config *cfg, buf_t *err);
/* A new SSL on fd set up for peer. NULL on failure (why in err); with
 * TLSA records of which OpenSSL can use none, also NULL. */
SSL *tls_client_ssl(SSL_CTX *ctx, int fd, const struct tls_client_peer *peer, buf_t *err);
/* Can DANE for SMTP use this record (RFC 7672 3.1: usages DANE-TA(2) and
 * DANE-EE(3); selectors 0/1; full data, SHA-256 or SHA-512 of the right
 * length)? */
int tls_client_tlsa_usable(const struct dns_tlsa *t);
/* How many records of a TLSA answer are usable. */
int tls_client_tlsa_count(const struct dns_answer *a);
/* After the handshake: how the peer was authenticated; why gets a few
 * words ("verified", "TLSA 3 1 1 matched", the verify error). */
enum tls_auth tls_client_verified(const SSL *ssl, buf_t *why);
/* "dane", "trusted", "untrusted" */
const char *tls_auth_name(enum tls_auth a);

#endif
