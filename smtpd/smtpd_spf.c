/*
 * smtpd_spf.c - SPF at MAIL FROM (authentication.spf = true): the sender's
 * domain (postmaster@HELO for <>) is checked with lib/spf's event-loop
 * driver on the context smtpd_dns.c shares, before MAIL's filter stage, so
 * the rules see spf.result and spf.domain from `mail` on. The outcome
 * travels with the transaction: to filter in every request, to cleanup in
 * CLEANUP_BEGIN with the Received-SPF field cleanup writes.
 *
 * The session waits (W_SPF: no command is read) at most dns.timeout per
 * query and SPF_OVERALL_MS in all; the loop never blocks. Authenticated
 * clients are not checked (their mail is ours to vouch for). The result
 * never rejects by itself: that is the rules' choice.
 */
#include <stdlib.h>
#include <string.h>

#include "smtpd.h"
#include "config/config.h"
#include "daemon/server.h"
#include "spf/spf.h"
#include "util/log.h"

struct smtpd_spf {
    char  result[16];
    char *domain;
    char *header;               /* "Received-SPF: ..." unfolded, no line end */
};

const char *smtpd_spf_result(const struct smtpd_txn *t)
{
    return t->spf ? t->spf->result : "";
}

const char *smtpd_spf_domain(const struct smtpd_txn *t)
{
    return t->spf ? t->spf->domain : "";
}

const char *smtpd_spf_header(const struct smtpd_txn *t)
{
    return t->spf ? t->spf->header : "";
}

void smtpd_spf_txn_free(struct smtpd_txn *t)
{
    if (!t->spf)
        return;
    free(t->spf->domain);
    free(t->spf->header);
    free(t->spf);
    t->spf = NULL;
}

void smtpd_spf_session_free(struct smtpd_session *s)
{
    spf_check_cancel(s->spf_check);
    s->spf_check = NULL;
}

static struct spf_request request(const struct smtpd_session *s)
{
    struct spf_request rq = { .ip = s->ip, .sender = s->wait_txn->sender,
                              .helo = s->helo ? s->helo : "", .receiver = smtpd_cfg->hostname };
    return rq;
}

/* Keeps the outcome with the transaction MAIL opens. */
static void record(struct smtpd_session *s, const struct spf_outcome *o)
{
    struct smtpd_txn *t = s->wait_txn;
    struct spf_request rq = request(s);
    buf_t h;
    smtpd_spf_txn_free(t);
    t->spf = xcalloc(1, sizeof *t->spf);
    str_copy(t->spf->result, sizeof t->spf->result, spf_result_name(o->result));
    t->spf->domain = xstrdup(o->domain);
    buf_init(&h, 256);
    spf_received_spf(o, &rq, smtpd_cfg->hostname, &h);
    t->spf->header = buf_steal(&h);
    buf_free(&h);
    log_info("spf: [%s]:%u: %s for %s (%s): %s", s->ip, s->port, t->spf->result, o->sender,
             o->helo_identity ? "helo" : "mailfrom", o->reason);
}

static void on_spf(const struct spf_outcome *o, void *arg)
{
    struct smtpd_session *s = arg;
    s->spf_check = NULL;
    record(s, o);
    s->wait = W_NONE;
    smtpd_cmd_ask_verb(s, "MAIL");
    if (s->wait == W_NONE)
        smtpd_session_resume(s);    /* answered at once: take the next command */
}

int smtpd_spf_mail(struct smtpd_session *s)
{
    if (!smtpd_cfg->authentication_spf || s->auth_user)
        return 0;
    struct spf_request rq = request(s);
    int cap = smtpd_cfg->dns_timeout * 1000 > SPF_OVERALL_MS ? smtpd_cfg->dns_timeout * 1000
                                                             : SPF_OVERALL_MS;
    struct dns_ctx *ctx = smtpd_dns_ctx();
    s->spf_check = ctx ? spf_check_start(ctx, smtpd_server->base, &rq, cap, on_spf, s) : NULL;
    if (!s->spf_check) {
        struct spf_outcome o = { .result = SPF_TEMPERROR };
        const char *at = strrchr(rq.sender, '@');
        str_copy(o.reason, sizeof o.reason, "no resolver");
        str_copy(o.sender, sizeof o.sender, rq.sender);
        str_copy(o.domain, sizeof o.domain, rq.sender[0] ? (at ? at + 1 : rq.sender) : rq.helo);
        o.helo_identity = rq.sender[0] == '\0';
        record(s, &o);
        return 0;
    }
    s->wait = W_SPF;
    return 1;
}
