/*
 * smtpd_dns.c - client.ptr for the rules: the client's forward-confirmed
 * reverse DNS name (lib/dns dns_fcrdns: PTR, then A/AAAA of the names,
 * matching the address), or "" when none is confirmed or DNS fails.
 *
 * Looked up only when a rules file is configured: nothing else reads the
 * name (the Received header says "unknown" without it, as before), so a
 * server without rules never waits for DNS. The lookup starts when the
 * session starts; the connect stage (and so the greeting) waits for it,
 * at most dns.timeout in all, while an implicit-TLS handshake runs
 * meanwhile. The session never blocks: the answer comes through the loop.
 * Without a lookup (no rules) client_ptr stays "unknown", as before.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "smtpd.h"
#include "dns/dns.h"
#include "util/log.h"

static struct dns_ctx *dctx;
static int want_ptr;            /* rules are in use: look up client.ptr */

/* While root and before the jail: libunbound reads its files now. One
 * context serves client.ptr and SPF (smtpd_spf.c). */
void smtpd_dns_pre_drop(const struct config *cfg)
{
    want_ptr = cfg->rules != NULL && *cfg->rules != '\0';
    if (!want_ptr && !cfg->authentication_spf)
        return;
    dctx = dns_ctx_for_daemon(cfg, want_ptr ? "client.ptr stays empty, SPF temperror"
                                            : "SPF results are temperror");
}

struct dns_ctx *smtpd_dns_ctx(void)
{
    return dctx;
}

void smtpd_dns_init(struct event_base *base)
{
    if (dctx)
        dns_ctx_attach(dctx, base);
}

void smtpd_dns_shutdown(void)
{
    dns_ctx_free(dctx);
    dctx = NULL;
}

const char *smtpd_dns_ptr(const struct smtpd_session *s)
{
    return s->ptr ? s->ptr : "unknown";
}

/* The lookup ended (or timed out): remember the name, run a connect
 * stage that was waiting for it. */
static void dns_done(struct smtpd_session *s, enum dns_status st, const char *name)
{
    s->fcrdns = NULL;
    if (s->dns_timer)
        event_free(s->dns_timer);
    s->dns_timer = NULL;
    free(s->ptr);
    s->ptr = xstrdup(st == DNS_FOUND ? name : "");
    log_trace(TRACE_DNS, "[%s]:%u: client.ptr \"%s\" (%s)", s->ip, s->port, s->ptr,
              dns_status_name(st));
    if (s->wait == W_DNS) {
        s->wait = W_NONE;
        smtpd_cmd_connect(s);
        smtpd_session_update_timeout(s);
    }
}

static void on_fcrdns(enum dns_status st, const char *name, void *arg)
{
    dns_done(arg, st, name);
}

static void on_dns_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct smtpd_session *s = arg;
    dns_fcrdns_cancel(s->fcrdns);
    dns_done(s, DNS_TEMPFAIL, "");
}

void smtpd_dns_start(struct smtpd_session *s)
{
    if (dctx == NULL || !want_ptr)
        return;
    s->fcrdns = dns_fcrdns(dctx, s->ip, on_fcrdns, s);
    if (s->fcrdns == NULL) {
        s->ptr = xstrdup("");      /* not an address we can look up, or too busy */
        return;
    }
    struct timeval tv = { smtpd_cfg->dns_timeout > 0 ? smtpd_cfg->dns_timeout : 10, 0 };
    s->dns_timer = evtimer_new(smtpd_server->base, on_dns_timeout, s);
    if (s->dns_timer == NULL || evtimer_add(s->dns_timer, &tv) < 0)
        log_fatal("dns: cannot arm a timer");
}

void smtpd_dns_connect(struct smtpd_session *s)
{
    if (s->fcrdns) {
        s->wait = W_DNS;        /* dns_done runs the connect stage */
        return;
    }
    smtpd_cmd_connect(s);
}

void smtpd_dns_session_free(struct smtpd_session *s)
{
    dns_fcrdns_cancel(s->fcrdns);
    s->fcrdns = NULL;
    if (s->dns_timer)
        event_free(s->dns_timer);
    s->dns_timer = NULL;
    free(s->ptr);
    s->ptr = NULL;
}
