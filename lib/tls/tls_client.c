/*
 * tls_client.c - client TLS contexts and per-connection peer checks
 * (tls_client.h): reference names, SNI, and DANE through OpenSSL
 * (SSL_CTX_dane_enable / SSL_dane_enable / SSL_dane_tlsa_add).
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
    /* DANE: enabled on the context once, used only by SSLs given TLSA
     * records. DANE-EE(3) matches the key alone: no name checks (RFC 7672
     * 3.1.1), which OpenSSL does only with this flag. */
    if (SSL_CTX_dane_enable(ctx) <= 0) {
        buf_append_str(err, "cannot enable DANE: ");
        tls_errors(err);
        goto fail;
    }
    SSL_CTX_dane_set_flags(ctx, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
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

int tls_client_tlsa_usable(const struct dns_tlsa *t)
{
    if ((t->usage != 2 && t->usage != 3) || t->selector > 1)
        return 0;
    switch (t->mtype) {
    case 0: return t->len > 0;
    case 1: return t->len == 32;
    case 2: return t->len == 64;
    default: return 0;
    }
}

int tls_client_tlsa_count(const struct dns_answer *a)
{
    int n = 0;
    for (int i = 0; a && i < a->n; i++)
        n += a->rr[i].type == DNS_T_TLSA && tls_client_tlsa_usable(&a->rr[i].u.tlsa);
    return n;
}

/* DANE on ssl: base domain names[0] (also SNI unless set), more names
 * for DANE-TA(2), the usable records. 0, or -1 when none could be used. */
static int dane_setup(SSL *ssl, const struct tls_client_peer *p, buf_t *err)
{
    if (SSL_dane_enable(ssl, p->names[0]) <= 0) {
        buf_append_str(err, "cannot enable DANE: ");
        tls_errors(err);
        return -1;
    }
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    for (int i = 1; i < p->nnames; i++)
        SSL_add1_host(ssl, p->names[i]);
    int used = 0;
    for (int i = 0; i < p->tlsa->n; i++) {
        const struct dns_tlsa *t = &p->tlsa->rr[i].u.tlsa;
        if (p->tlsa->rr[i].type == DNS_T_TLSA && tls_client_tlsa_usable(t) &&
            SSL_dane_tlsa_add(ssl, t->usage, t->selector, t->mtype, t->data, t->len) > 0)
            used++;
    }
    ERR_clear_error();   /* records OpenSSL refused are simply not used */
    if (used == 0) {
        buf_append_str(err, "no usable TLSA record");
        return -1;
    }
    return 0;
}

/* Names (or one IP literal) for the X.509 checks of verify. */
static int names_setup(SSL *ssl, const struct tls_client_peer *p)
{
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    if (p->nnames > 0 && is_ip(p->names[0]))
        return X509_VERIFY_PARAM_set1_ip_asc(vp, p->names[0]);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    for (int i = 0; i < p->nnames; i++)
        if (!(i == 0 ? X509_VERIFY_PARAM_set1_host(vp, p->names[i], 0)
                     : X509_VERIFY_PARAM_add1_host(vp, p->names[i], 0)))
            return 0;
    return 1;
}

SSL *tls_client_ssl(SSL_CTX *ctx, int fd, const struct tls_client_peer *p, buf_t *err)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        tls_errors(err);
        return NULL;
    }
    int ok = SSL_set_fd(ssl, fd);
    if (ok && p->sni && p->sni[0] && !is_ip(p->sni))
        ok = SSL_set_tlsext_host_name(ssl, p->sni);
    if (!ok) {
        tls_errors(err);
    } else if (p->tlsa && p->nnames > 0) {
        ok = dane_setup(ssl, p, err) == 0;
    } else if (!(ok = names_setup(ssl, p))) {
        tls_errors(err);
    }
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

enum tls_auth tls_client_verified(const SSL *ssl, buf_t *why)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL) {
        buf_append_str(why, "no peer certificate");
        return TLS_AUTH_UNTRUSTED;
    }
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        buf_append_str(why, X509_verify_cert_error_string(v));
        return TLS_AUTH_UNTRUSTED;
    }
    uint8_t usage, selector, mtype;
    if (SSL_get0_dane_authority((SSL *)ssl, NULL, NULL) >= 0 &&
        SSL_get0_dane_tlsa((SSL *)ssl, &usage, &selector, &mtype, NULL, NULL) >= 0) {
        buf_printf(why, "TLSA %u %u %u matched", usage, selector, mtype);
        return TLS_AUTH_DANE;
    }
    buf_append_str(why, "verified");
    return TLS_AUTH_TRUSTED;
}

const char *tls_auth_name(enum tls_auth a)
{
    return a == TLS_AUTH_DANE ? "dane" : a == TLS_AUTH_TRUSTED ? "trusted" : "untrusted";
}
