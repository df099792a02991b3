/*
 * tls_client.c - client TLS contexts (tls_client.h).
 */
#include <arpa/inet.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tls_client.h"

SSL_CTX *tls_client_ctx_new(const struct config *cfg, buf_t *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        tls_errors(err);
        return NULL;
    }
    if (tls_ctx_set_protocols(ctx, &cfg->tls_protocols, err) < 0)
        goto fail;
    int ok = cfg->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, cfg->tls_ca_file, NULL)
                              : SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        buf_printf(err, "cannot load CA %s: ", cfg->tls_ca_file ? cfg->tls_ca_file : "store");
        tls_errors(err);
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

SSL *tls_client_ssl(SSL_CTX *ctx, int fd, const char *name)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL)
        return NULL;
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    int ok = SSL_set_fd(ssl, fd);
    if (ok && is_ip(name)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(vp, name);
    } else if (ok) {
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(ssl, name) && X509_VERIFY_PARAM_set1_host(vp, name, 0);
    }
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

int tls_client_verified(const SSL *ssl, buf_t *why)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL) {
        buf_append_str(why, "no peer certificate");
        return 0;
    }
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        buf_append_str(why, X509_verify_cert_error_string(v));
        return 0;
    }
    buf_append_str(why, "verified");
    return 1;
}
