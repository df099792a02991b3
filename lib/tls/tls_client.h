/*
 * tls_client.h - the client side of TLS (the smtp agent's STARTTLS):
 * one SSL_CTX for outgoing connections, and per-connection name checks.
 *
 * The context always loads the trust anchors (delivery.tls_ca_file, else
 * the system store) so `verify` can check the chain; whether a failed
 * check matters is the caller's policy (SSL_VERIFY_NONE here: the result
 * is read with SSL_get_verify_result after the handshake and logged).
 */
#ifndef POSTERN_TLS_CLIENT_H
#define POSTERN_TLS_CLIENT_H

#include "tls/tls.h"

/* Build the client context (tls.protocols range). NULL with why in err. */
SSL_CTX *tls_client_ctx_new(const struct config *cfg, buf_t *err);
/* A new SSL on fd, SNI = name (unless an IP literal), and the name (DNS
 * name or IP address) the peer certificate must match. NULL on failure. */
SSL *tls_client_ssl(SSL_CTX *ctx, int fd, const char *name);
/* After the handshake: 1 chain and name verified; 0 not (why in out). */
int  tls_client_verified(const SSL *ssl, buf_t *why);

#endif
