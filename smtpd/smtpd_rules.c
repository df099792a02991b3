/*
 * smtpd_rules.c - applying the mutations that come with a filter verdict
 * (smtpd_filter_muts(), valid while smtpd_cmd_verdict runs).
 *
 * Only a verdict that lets the command go on (next, accept, faccept,
 * quarantine) has effect. What smtpd does itself:
 *   mail: rewrite_mail_from replaces the envelope sender of the transaction
 *         being opened;
 *   mail, rcpt: add_rcpt / bcc add recipients to the transaction (not
 *         counted against the client's limit, at most SMTPD_MAX_EXTRA, no
 *         duplicates; DATA still needs a recipient the client gave);
 *   rcpt: remove_rcpt drops the recipient (the client still gets 250), ""
 *         or the current address = the current recipient.
 * What cleanup does: header mutations and quarantine from any stage before
 * DATA are remembered (per session for connect/helo/auth, per transaction
 * for mail/rcpt) and sent as CLEANUP_MUT after CLEANUP_BEGIN
 * (smtpd_cleanup.c). Delivery choices (maildir, relay...) belong to the
 * post-queue stages and are ignored here.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpd.h"
#include "mail/addr.h"
#include "util/log.h"
#include "filter/filter_mut.h"

static int goes_on(enum verdict v)
{
    return v == V_NEXT || v == V_ACCEPT || v == V_FACCEPT || v == V_QUARANTINE;
}

static int find_rcpt(const struct smtpd_txn *t, const char *addr)
{
    for (int i = t->nrcpts - 1; i >= 0; i--)
        if (strcasecmp(t->rcpts[i], addr) == 0)
            return i;
    return -1;
}

static void add_rcpt(struct smtpd_session *s, struct smtpd_txn *t, const char *addr,
                     const struct filter_mut *m)
{
    char *a = addr_clean(addr);
    if (a == NULL || *a == '\0') {
        log_warn("[%s]:%u: rule \"%s\": bad address in %s ignored", s->ip, s->port, m->rule,
                 filter_mut_name((enum filter_mut_kind)m->kind));
        free(a);
        return;
    }
    if (find_rcpt(t, a) >= 0 || t->nextra >= SMTPD_MAX_EXTRA) {
        if (t->nextra >= SMTPD_MAX_EXTRA)
            log_warn("[%s]:%u: rule \"%s\": more than %d added recipients: <%s> ignored",
                     s->ip, s->port, m->rule, SMTPD_MAX_EXTRA, a);
        free(a);
        return;
    }
    if (t->nrcpts == t->rcap) {
        t->rcap = t->rcap ? t->rcap * 2 : 4;
        t->rcpts = xrealloc(t->rcpts, sizeof(*t->rcpts) * (size_t)t->rcap);
        t->orcpts = xrealloc(t->orcpts, sizeof(*t->orcpts) * (size_t)t->rcap);
        t->notify = xrealloc(t->notify, sizeof(*t->notify) * (size_t)t->rcap);
    }
    t->rcpts[t->nrcpts] = a;
    t->orcpts[t->nrcpts] = NULL;
    t->notify[t->nrcpts] = 0;
    t->nrcpts++;
    t->nextra++;
    log_info("[%s]:%u: rule \"%s\": %s <%s>", s->ip, s->port, m->rule,
             filter_mut_name((enum filter_mut_kind)m->kind), a);
}

static void remove_rcpt(struct smtpd_session *s, struct smtpd_txn *t, const char *current,
                        const struct filter_mut *m)
{
    char *a = addr_clean(m->rcpt[0] ? m->rcpt : current ? current : "");
    int i = a ? find_rcpt(t, a) : -1;
    free(a);
    if (i < 0)
        return;
    log_info("[%s]:%u: rule \"%s\": remove_rcpt <%s>", s->ip, s->port, m->rule, t->rcpts[i]);
    free(t->rcpts[i]);
    free(t->orcpts[i]);
    memmove(&t->rcpts[i], &t->rcpts[i + 1], sizeof(*t->rcpts) * (size_t)(t->nrcpts - i - 1));
    memmove(&t->orcpts[i], &t->orcpts[i + 1], sizeof(*t->orcpts) * (size_t)(t->nrcpts - i - 1));
    memmove(&t->notify[i], &t->notify[i + 1], sizeof(*t->notify) * (size_t)(t->nrcpts - i - 1));
    t->nrcpts--;
    t->nremoved++;
}

/* Remember m for cleanup (CLEANUP_MUT at CLEANUP_BEGIN); over the caps
 * (SMTPD_MAX_MUTS, FILTER_MUTS_MAX_BYTES of header fields) it is dropped. */
static void keep_mut(struct smtpd_session *s, struct filter_muts *l, const struct filter_mut *m)
{
    if (filter_muts_add(l, SMTPD_MAX_MUTS, m->kind, m->rcpt, m->arg, m->arg2, m->rule) < 0)
        log_warn("[%s]:%u: rule \"%s\": %s over the mutation cap (%d, %d octets) ignored",
                 s->ip, s->port, m->rule, filter_mut_name((enum filter_mut_kind)m->kind),
                 SMTPD_MAX_MUTS, FILTER_MUTS_MAX_BYTES);
}

static int for_cleanup(uint32_t k)
{
    return k == FILTER_M_ADD_HEADER || k == FILTER_M_SET_HEADER || k == FILTER_M_REMOVE_HEADER ||
           k == FILTER_M_QUARANTINE;
}

void smtpd_rules_before(struct smtpd_session *s, enum stage st, const struct smtpd_verdict *v)
{
    int n;
    const struct filter_mut *m = smtpd_filter_muts(&n);
    if (n == 0 || !goes_on(v->status))
        return;
    for (int i = 0; i < n; i++) {
        if (st == STAGE_MAIL && m[i].kind == FILTER_M_REWRITE_MAIL_FROM && s->wait_txn) {
            char *a = addr_clean(m[i].arg);
            if (a == NULL) {
                log_warn("[%s]:%u: rule \"%s\": bad address in rewrite_mail_from ignored",
                         s->ip, s->port, m[i].rule);
                continue;
            }
            log_info("[%s]:%u: rule \"%s\": rewrite_mail_from <%s> -> <%s>", s->ip, s->port,
                     m[i].rule, s->wait_txn->sender, a);
            free(s->wait_txn->sender);
            s->wait_txn->sender = a;
        } else if (for_cleanup(m[i].kind)) {
            if (st <= STAGE_AUTH)
                keep_mut(s, &s->muts, &m[i]);
            else if (st == STAGE_MAIL && s->wait_txn)
                keep_mut(s, &s->wait_txn->muts, &m[i]);
            else if (s->txn)
                keep_mut(s, &s->txn->muts, &m[i]);
        }
    }
}

void smtpd_rules_after(struct smtpd_session *s, enum stage st, const char *rcpt,
                       const struct smtpd_verdict *v)
{
    int n;
    const struct filter_mut *m = smtpd_filter_muts(&n);
    struct smtpd_txn *t = s->txn;
    if (n == 0 || t == NULL || !goes_on(v->status))
        return;
    for (int i = 0; i < n; i++)
        if (m[i].kind == FILTER_M_ADD_RCPT || m[i].kind == FILTER_M_BCC)
            add_rcpt(s, t, m[i].rcpt, &m[i]);
    for (int i = 0; i < n && st == STAGE_RCPT; i++)
        if (m[i].kind == FILTER_M_REMOVE_RCPT)
            remove_rcpt(s, t, rcpt, &m[i]);
}
