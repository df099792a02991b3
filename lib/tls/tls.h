/*
 * tls.h - OpenSSL contexts and TLS session facts, shared by smtpd (server
 * side) and later the SMTP client.
 *
 * tls_server_new() builds the server context from the config: the default
 * certificate chain and key (tls.certificate / tls.key), the protocol range
 * from tls.protocols (only TLSv1.2 and TLSv1.3 are ever enabled), and one
 * extra context per `domain "x" { tls { certificate; key; } }` block, picked
 * by SNI with the default certificate as fallback. It reads key files, so
 * smtpd calls it before dropping root (server_init_ex). Nothing here does
 * I/O on connections: callers drive SSL objects (bufferevent_openssl).
 */
#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

#include <stddef.h>
#include "util/buf.h"
#include "config/config.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

struct tls_server;

/* Build the server contexts. NULL (and why in err) when no certificate is
 * configured or the default one cannot be loaded; a broken per-domain
 * certificate is logged and that domain falls back to the default. */
struct tls_server *tls_server_new(const struct config *cfg, buf_t *err);
void tls_server_free(struct tls_server *t);
/* A new SSL for one accepted connection (server mode, SNI armed). */
SSL *tls_server_ssl(struct tls_server *t);
int  tls_server_ndomains(const struct tls_server *t);   /* domain contexts loaded */

/* Apply tls.protocols to a context (server or client): the lowest and
 * highest listed versions, clamped to TLSv1.2..TLSv1.3. 0 ok, -1 (err set)
 * when no allowed version is listed. */
int tls_ctx_set_protocols(SSL_CTX *ctx, const struct strlist *protocols, buf_t *err);

/* Facts of an established session. */
const char *tls_version(const SSL *ssl);                  /* "TLSv1.3" */
const char *tls_cipher(const SSL *ssl);                   /* "TLS_AES_256_GCM_SHA384" */
/* "TLSv1.3 TLS_AES_256_GCM_SHA384": the CLEANUP_BEGIN.tls form */
void tls_session_info(const SSL *ssl, char *out, size_t size);
/* "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits), sni=a.test,
 * client-cert=none" for log lines */
void tls_session_describe(const SSL *ssl, buf_t *out);
/* Append the queued OpenSSL errors ("; "-separated) and clear the queue. */
void tls_errors(buf_t *out);

#endif
