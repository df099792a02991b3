/*
 * tls.c - OpenSSL server contexts (default + per-domain certificates chosen
 * by SNI), the protocol range, and session facts for logs and headers.
 *
 * Used by smtpd (before the privilege drop: key files are root-only) and
 * meant to be shared with the SMTP client. Never enables anything below
 * TLSv1.2, whatever tls.protocols lists (postern.conf(5)). Never does
 * socket I/O: connections are driven by the caller.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls.h"
#include "util/log.h"

struct tls_domain {
    char *name;                 /* domain block label */
    SSL_CTX *ctx;
};

struct tls_server {
    SSL_CTX *ctx;               /* default certificate; SNI switches from here */
    struct tls_domain *dom;
    int ndom;
};

void tls_errors(buf_t *out)
{
    unsigned long e;
    int first = 1;
    while ((e = ERR_get_error()) != 0) {
        char b[256];
        ERR_error_string_n(e, b, sizeof(b));
        if (!first)
            buf_append_str(out, "; ");
        buf_append_str(out, b);
        first = 0;
    }
}

static int proto_version(const char *name)
{
    static const struct { const char *name; int v; } tab[] = {
        { "TLSv1", TLS1_VERSION }, { "TLSv1.1", TLS1_1_VERSION },
        { "TLSv1.2", TLS1_2_VERSION }, { "TLSv1.3", TLS1_3_VERSION },
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (strcmp(name, tab[i].name) == 0)
            return tab[i].v;
    return 0;
}

int tls_ctx_set_protocols(SSL_CTX *ctx, const struct strlist *protocols, buf_t *err)
{
    int lo = 0, hi = 0;
    for (int i = 0; i < protocols->n; i++) {
        int v = proto_version(protocols->v[i]);
        if (v < TLS1_2_VERSION)
            continue;       /* TLSv1 and TLSv1.1 are never enabled */
        if (lo == 0 || v < lo)
            lo = v;
        if (v > hi)
            hi = v;
    }
    if (lo == 0) {
        buf_append_str(err, "tls.protocols lists neither TLSv1.2 nor TLSv1.3");
        return -1;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, lo) || !SSL_CTX_set_max_proto_version(ctx, hi)) {
        buf_append_str(err, "cannot set the TLS protocol range: ");
        tls_errors(err);
        return -1;
    }
    return 0;
}

/* One server context with a certificate chain and key; NULL + err. */
static SSL_CTX *ctx_new(const struct config *cfg, const char *cert, const char *key, buf_t *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        buf_append_str(err, "SSL_CTX_new: ");
        tls_errors(err);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                        SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* idle sessions keep no read/write buffers */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_dh_auto(ctx, 1);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"postern", 7);
    if (tls_ctx_set_protocols(ctx, &cfg->tls_protocols, err) < 0)
        goto fail;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        buf_printf(err, "certificate %s: ", cert);
        tls_errors(err);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        buf_printf(err, "key %s: ", key);
        tls_errors(err);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        buf_printf(err, "key %s does not match certificate %s: ", key, cert);
        tls_errors(err);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* The domain context for an SNI name: exact match, else the longest domain
 * the name is a subdomain of (mx.tenant.example -> tenant.example). */
static SSL_CTX *sni_lookup(const struct tls_server *t, const char *name)
{
    size_t n = strlen(name);
    if (n > 0 && name[n - 1] == '.')
        n--;
    SSL_CTX *best = NULL;
    size_t best_len = 0;
    for (int i = 0; i < t->ndom; i++) {
        const char *d = t->dom[i].name;
        size_t dl = strlen(d);
        if (dl > n || dl <= best_len)
            continue;
        if (strncasecmp(name + (n - dl), d, dl) != 0)
            continue;
        if (dl == n || name[n - dl - 1] == '.') {
            best = t->dom[i].ctx;
            best_len = dl;
        }
    }
    return best;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    const struct tls_server *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL || *name == '\0' || t->ndom == 0)
        return SSL_TLSEXT_ERR_NOACK;          /* default certificate */
    SSL_CTX *ctx = sni_lookup(t, name);
    if (ctx == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_set_SSL_CTX(ssl, ctx) == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    return SSL_TLSEXT_ERR_OK;
}

struct tls_server *tls_server_new(const struct config *cfg, buf_t *err)
{
    if (cfg->tls_certificate == NULL || cfg->tls_key == NULL) {
        buf_append_str(err, "no tls.certificate / tls.key configured");
        return NULL;
    }
    SSL_CTX *ctx = ctx_new(cfg, cfg->tls_certificate, cfg->tls_key, err);
    if (ctx == NULL)
        return NULL;
    struct tls_server *t = xcalloc(1, sizeof(*t));
    t->ctx = ctx;
    for (int i = 0; i < cfg->ndomains; i++) {
        const struct domain_conf *d = &cfg->domains[i];
        if (d->tls_certificate == NULL || d->tls_key == NULL)
            continue;
        buf_t e;
        buf_init(&e, 128);
        SSL_CTX *dctx = ctx_new(cfg, d->tls_certificate, d->tls_key, &e);
        if (dctx == NULL) {
            log_error("domain \"%s\": TLS: %s: using the default certificate", d->name, e.data);
            buf_free(&e);
            continue;
        }
        buf_free(&e);
        t->dom = xrealloc(t->dom, sizeof(*t->dom) * (size_t)(t->ndom + 1));
        t->dom[t->ndom].name = xstrdup(d->name);
        t->dom[t->ndom].ctx = dctx;
        t->ndom++;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    return t;
}

void tls_server_free(struct tls_server *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->ndom; i++) {
        SSL_CTX_free(t->dom[i].ctx);
        free(t->dom[i].name);
    }
    free(t->dom);
    SSL_CTX_free(t->ctx);
    free(t);
}

SSL *tls_server_ssl(struct tls_server *t)
{
    SSL *ssl = SSL_new(t->ctx);
    if (ssl == NULL) {
        buf_t e;
        buf_init(&e, 64);
        tls_errors(&e);
        log_fatal("SSL_new: %s", e.data);
    }
    return ssl;
}

int tls_server_ndomains(const struct tls_server *t)
{
    return t ? t->ndom : 0;
}

const char *tls_version(const SSL *ssl)
{
    return SSL_get_version(ssl);
}

const char *tls_cipher(const SSL *ssl)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    return c ? SSL_CIPHER_get_name(c) : "NONE";
}

void tls_session_info(const SSL *ssl, char *out, size_t size)
{
    if (str_format(out, size, "%s %s", tls_version(ssl), tls_cipher(ssl)) < 0)
        out[0] = '\0';
}

void tls_session_describe(const SSL *ssl, buf_t *out)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    int alg = 0, bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;
    buf_printf(out, "%s with cipher %s (%d/%d bits)", tls_version(ssl), tls_cipher(ssl), bits,
               alg);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sni) {
        buf_append_str(out, ", sni=");
        buf_append_printable(out, sni, strlen(sni) > 255 ? 255 : strlen(sni));
    }
    X509 *peer = SSL_get1_peer_certificate(ssl);
    if (peer) {
        char subj[256];
        X509_NAME_oneline(X509_get_subject_name(peer), subj, sizeof(subj));
        buf_append_str(out, ", client-cert=");
        buf_append_printable(out, subj, strlen(subj));
        X509_free(peer);
    } else {
        buf_append_str(out, ", client-cert=none");
    }
}
