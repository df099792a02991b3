/*
 * smtpd_tls.c - TLS in smtpd: STARTTLS (RFC 3207) and implicit TLS
 * (listen.X.tls = "implicit", port 465), driven by bufferevent_openssl
 * inside the one event loop; nothing here blocks.
 *
 * The server context (lib/tls/tls.c) is built by smtpd_tls_pre_drop() while
 * smtpd is still root (server_init_ex hook): key files are root-only.
 * A reload restarts smtpd, which builds it again.
 *
 * Per listener, STARTTLS is: listen.X.tls = "none" never; "may" as
 * tls.level says (none: not offered; may: offered; encrypt: required);
 * "required" offered and required (MAIL/AUTH get 530 5.7.0 before it);
 * "implicit" never offered: the handshake starts on connect and the
 * greeting follows it. tls.handshake_timeout bounds every handshake.
 *
 * STARTTLS must never let plaintext reach the TLS session (CVE-2011-0411):
 * STARTTLS is "last in group", so a command pipelined after it in the same
 * read ends the session with 554 5.5.0 before anything else happens; any
 * plaintext that is still buffered when we switch is dropped, never
 * executed. All session state is discarded (RFC 3207 4.2): HELO/EHLO, the
 * transaction, AUTH; the client must EHLO again.
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include "smtpd.h"
#include "tls/tls.h"
#include "util/log.h"
#include "metrics/metrics.h"

static struct tls_server *tls_srv;

/* The effective STARTTLS policy of a listener: TLSM_NONE (not offered),
 * TLSM_MAY, TLSM_REQUIRED or TLSM_IMPLICIT. */
static enum tls_mode listener_mode(const struct listener *l, const struct config *cfg)
{
    if (l->tls != TLSM_MAY)
        return l->tls;
    switch (cfg->tls_level) {
    case TLSL_NONE:
        return TLSM_NONE;
    case TLSL_ENCRYPT:
        return TLSM_REQUIRED;
    default:
        return TLSM_MAY;
    }
}

void smtpd_tls_pre_drop(struct server *srv, void *arg)
{
    const struct config *cfg = srv->cfg;
    int used = 0, needed = 0;
    smtpd_auth_load(cfg);
    for (int i = 0; i < cfg->nlisteners; i++) {
        enum tls_mode m = listener_mode(&cfg->listeners[i], cfg);
        used |= m != TLSM_NONE;
        needed |= m == TLSM_REQUIRED || m == TLSM_IMPLICIT;
    }
    if (!used || cfg->tls_certificate == NULL) {
        if (needed)
            log_fatal("TLS is required by a listener but no tls.certificate is set");
        return;
    }
    buf_t err;
    buf_init(&err, 128);
    tls_srv = tls_server_new(cfg, &err);
    if (tls_srv == NULL) {
        if (needed)
            log_fatal("TLS: %s", err.data);
        log_error("TLS: %s: STARTTLS is not offered", err.data);
    } else {
        log_debug("TLS: certificate %s, %d domain certificate%s", cfg->tls_certificate,
                  tls_server_ndomains(tls_srv), tls_server_ndomains(tls_srv) == 1 ? "" : "s");
    }
    buf_free(&err);
}

static enum tls_mode session_mode(const struct smtpd_session *s)
{
    return listener_mode(s->lis->conf, smtpd_cfg);
}

int smtpd_tls_needed(const struct smtpd_session *s)
{
    enum tls_mode m = session_mode(s);
    return m == TLSM_REQUIRED || m == TLSM_IMPLICIT;
}

int smtpd_tls_offered(const struct smtpd_session *s)
{
    enum tls_mode m = session_mode(s);
    return tls_srv && !s->tls_on && (m == TLSM_MAY || m == TLSM_REQUIRED);
}

void smtpd_tls_ehlo(struct smtpd_session *s)
{
    if (smtpd_tls_offered(s))
        smtpd_reply_raw(s, "250-STARTTLS");
}

int smtpd_tls_implicit(const struct smtpd_listener *l)
{
    return l->conf->tls == TLSM_IMPLICIT;
}

int smtpd_tls_mail_check(struct smtpd_session *s)
{
    if (s->tls_on || session_mode(s) != TLSM_REQUIRED)
        return 0;
    smtpd_reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
    return -1;
}

const char *smtpd_tls_protocol(const struct smtpd_session *s)
{
    if (!s->esmtp)
        return "SMTP";
    if (s->tls_on)
        return s->auth_user ? "ESMTPSA" : "ESMTPS";
    return s->auth_user ? "ESMTPA" : "ESMTP";
}

static SSL *new_ssl(void)
{
    if (tls_srv == NULL)
        log_panic("TLS requested without a server context");
    return tls_server_ssl(tls_srv);
}

struct bufferevent *smtpd_tls_accept(struct smtpd_session *s, int fd)
{
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        smtpd_server->base, fd, new_ssl(), BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        log_fatal("bufferevent_openssl_socket_new failed");
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    s->wait = W_TLS;
    return bev;
}

/* Write the plaintext output (the 220) now; 0 when all of it went. */
static int flush_plain(struct bufferevent *plain)
{
    struct evbuffer *out = bufferevent_get_output(plain);
    int fd = bufferevent_getfd(plain);
    evbuffer_unfreeze(out, 1);      /* the bufferevent keeps its front frozen */
    while (evbuffer_get_length(out) > 0)
        if (evbuffer_write(out, fd) <= 0)
            return -1;
    return 0;
}

void smtpd_tls_cmd_starttls(struct smtpd_session *s, const char *arg, size_t len)
{
    if (s->tls_on) {
        smtpd_reply(s, 554, "5.5.1", "Error: TLS already active");
        return;
    }
    if (!smtpd_tls_offered(s)) {
        smtpd_reply(s, 502, "5.5.1", "Error: command not implemented");
        return;
    }
    struct bufferevent *plain = s->bev;
    struct evbuffer *in = bufferevent_get_input(plain);
    size_t junk = evbuffer_get_length(in);
    if (junk > 0) {
        /* cannot happen past the pipelining check; never execute it anyway */
        log_warn("discarding %zu bytes of plaintext after STARTTLS from [%s]:%u", junk, s->ip,
                 s->port);
        evbuffer_drain(in, junk);
    }
    smtpd_reply(s, 220, "2.0.0", "Ready to start TLS");
    /* RFC 3207 4.2: forget everything learnt from the client */
    smtpd_session_reset(s);
    free(s->helo);
    s->helo = NULL;
    s->esmtp = 0;
    s->faccept = 0;
    smtpd_auth_reset(s);
    /* The client waits for the 220 before it sends its hello, and it has
     * read our earlier replies (STARTTLS ends a pipelined group), so the
     * 220 fits the socket buffer; a client that does not read gets
     * dropped. Then the same socket gets a TLS bufferevent: the bytes that
     * follow on the wire are read as TLS records, never as commands. */
    int fd = bufferevent_getfd(plain);
    if (flush_plain(plain) < 0) {
        log_info("lost connection from [%s]:%u after STARTTLS: cannot write the reply",
                 s->ip, s->port);
        smtpd_session_close(s);
        return;
    }
    bufferevent_data_cb rcb, wcb;
    bufferevent_event_cb ecb;
    void *cbarg;
    bufferevent_getcb(plain, &rcb, &wcb, &ecb, &cbarg);
    bufferevent_disable(plain, EV_READ | EV_WRITE);
    bufferevent_setfd(plain, -1);           /* the free below must not close fd */
    bufferevent_free(plain);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        smtpd_server->base, fd, new_ssl(), BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        log_fatal("bufferevent_openssl_socket_new failed");
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    bufferevent_setcb(bev, rcb, wcb, ecb, cbarg);
    bufferevent_setwatermark(bev, EV_READ, 0, 65536);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    s->bev = bev;
    s->plain_bev = 0;
    s->tmo_r = s->tmo_w = -1;
    s->wait = W_TLS;
}

static void established(struct smtpd_session *s)
{
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    char info[160];
    tls_session_info(ssl, info, sizeof(info));
    free(s->tls_info);
    s->tls_info = xstrdup(info);
    s->tls_on = 1;
    metric_add(MET_SMTPD_TLS_SESSIONS, 1, s->lis->name, NULL);
    buf_t d;
    buf_init(&d, 128);
    tls_session_describe(ssl, &d);
    struct log_ev e;
    smtpd_ev(&e, LE_TLS, s);
    log_ev_str(&e, LF_TLS_INFO, d.data);
    log_ev_str(&e, LF_TLS_VERSION, tls_version(ssl));
    log_ev_str(&e, LF_TLS_CIPHER, tls_cipher(ssl));
    log_ev_emit(&e);
    buf_free(&d);
    s->wait = W_NONE;
    if (s->state == SS_CONNECT)
        smtpd_dns_connect(s);      /* implicit TLS: now the connect stage and greeting */
    smtpd_session_resume(s);
}

void smtpd_tls_event(struct smtpd_session *s, short what)
{
    if (what & BEV_EVENT_CONNECTED) {
        established(s);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        struct log_ev ev;
        smtpd_ev(&ev, LE_TLS_TIMEOUT, s);
        log_ev_emit(&ev);
        smtpd_session_free(s);
        return;
    }
    buf_t e;
    buf_init(&e, 128);
    unsigned long err;
    while ((err = bufferevent_get_openssl_error(s->bev)) != 0) {
        char b[256];
        ERR_error_string_n(err, b, sizeof(b));
        if (e.len)
            buf_append_str(&e, "; ");
        buf_append_str(&e, b);
    }
    struct log_ev ev;
    smtpd_ev(&ev, LE_TLS_FAILED, s);
    log_ev_str(&ev, LF_REASON,
               e.len ? e.data : (what & BEV_EVENT_EOF) ? "connection closed" : "I/O error");
    log_ev_emit(&ev);
    buf_free(&e);
    smtpd_session_free(s);
}

void smtpd_tls_session_free(struct smtpd_session *s)
{
    free(s->tls_info);
    s->tls_info = NULL;
}
