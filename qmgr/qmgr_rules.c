/*
 * qmgr_rules.c - what qmgr does with a postq or deliver verdict:
 *   next/accept/faccept  go on (postq: apply the mutations allowed there;
 *                        deliver: record each recipient's delivery choice)
 *   defer/tempfail       defer every pending recipient with the reply text
 *   deny/reject          bounce every pending recipient
 *   quarantine           move the file to quarantine/<name>/ (never scheduled
 *                        again until `postern queue release`)
 * Mutations that change the envelope or the headers (add_rcpt, bcc,
 * remove_rcpt, rewrite_mail_from, add/set/remove_header, quarantine) are
 * applied by lib/filter/qf_mutate.c (the same module cleanup uses at data; what it
 * does is in postern.rules(5)) and rewrite the queue file: a new file next
 * to it (<ID>.tmp, fsynced) renamed over it, then the directory fsynced;
 * each applied mutation is kept as a NOTE record ("postq: ..."), which also
 * marks the postq stage as done.
 *
 * postq runs once per message: not after a recipient was attempted or
 * finished, not after a rewrite (NOTE "postq: ..."), not for a message that
 * was quarantined and released. Must never deliver a message a rule
 * quarantined, and never lose a recipient the rules did not remove.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail/addr.h"
#include "util/log.h"
#include "util/log_event.h"
#include "filter/qf_mutate.h"
#include "mail/queue.h"
#include "qmgr.h"
#include "filter/filter_mut.h"

#define NOTE_POSTQ QFM_NOTE_POSTQ

int qmgr_rules_postq_due(const struct qmsg *m)
{
    if (m->env.quarantine != NULL)
        return 0;   /* quarantined once and released by an administrator */
    for (int i = 0; i < m->env.nnotes; i++)
        if (strncmp(m->env.notes[i], NOTE_POSTQ, strlen(NOTE_POSTQ)) == 0)
            return 0;
    for (int i = 0; i < m->env.nrcpts; i++) {
        const struct qf_rcpt *r = &m->env.rcpts[i];
        if (r->attempts > 0 || qmgr_rcpt_done(r->status))
            return 0;
    }
    return 1;
}

static const char *rule_or(const char *rule)
{
    return rule && *rule ? rule : "rules";
}

/* ---- bounce and defer ----------------------------------------------------- */

static void bounce_all(struct qmsg *m, enum stage s, const struct filter_verdict *v)
{
    const struct verdict_reply *def = verdict_default(v->status, s);
    const char *dsn = v->enhanced[0] ? v->enhanced : "5.7.1";
    const char *text = v->text[0] ? v->text : (def && def->text ? def->text : "rejected");
    char why[400];
    str_format(why, sizeof(why), "rejected by rule \"%s\": %s", rule_or(v->rule), text);
    for (int i = 0; i < m->env.nrcpts; i++) {
        struct qf_rcpt *r = &m->env.rcpts[i];
        if (qmgr_rcpt_done(r->status))
            continue;
        r->status = DS_BOUNCED;
        str_copy(r->dsn, sizeof(r->dsn), dsn);
        str_copy(r->reason, sizeof(r->reason), text);
        r->last_try = qmgr_now();
        m->dirty[i] = 1;
        qmgr_active_log(m, (uint32_t)i, "none", "bounced", why);
    }
    qmgr_active_finish(m);
}

static void defer_verdict(struct qmsg *m, enum stage s, const struct filter_verdict *v)
{
    const struct verdict_reply *def = verdict_default(v->status, s);
    const char *dsn = v->enhanced[0] ? v->enhanced :
                      def && def->enhanced ? def->enhanced : "4.7.1";
    const char *text = v->text[0] ? v->text : (def && def->text ? def->text : "deferred");
    struct log_ev e;
    log_ev_init(&e, LE_FILTER);
    log_ev_str(&e, LF_QUEUE_ID, m->id);
    log_ev_str(&e, LF_STAGE, stage_name(s));
    log_ev_str(&e, LF_VERDICT, "deferred");
    log_ev_str(&e, LF_RULE, rule_or(v->rule));
    log_ev_str(&e, LF_DSN, dsn);
    log_ev_str(&e, LF_REASON, text);
    log_ev_emit(&e);
    /* at postq the stage is asked again at the next try: not counted as a
     * delivery attempt (the retry interval stays the first one) */
    qmgr_active_defer_all(m, dsn, text, s == STAGE_DELIVER, 0);
}

/* ---- queue file rewrite ------------------------------------------------- */

/* Write dir/ID from m->env and the current content with v's header
 * mutations (v may be NULL) through dir/ID.tmp. 0 or -1 with err set.
 * m->fd still refers to the old file (in dir or active/). */
static int rewrite(struct qmsg *m, const char *dir, const struct filter_verdict *v,
                   char *err, size_t errlen)
{
    char tmp[QUEUE_ID_MAX + 300], dst[QUEUE_ID_MAX + 300];
    str_format(tmp, sizeof(tmp), "%s/%s.tmp", dir, m->id);
    str_format(dst, sizeof(dst), "%s/%s", dir, m->id);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "create %s: %s", tmp, strerror(errno));
        return -1;
    }
    int rc = -1;
    if (qfm_write(fd, &m->env, m->fd, m->env.content_off, m->env.content_len,
                  v ? v->muts : NULL, v ? v->nmuts : 0) < 0 || fsync(fd) < 0) {
        snprintf(err, errlen, "write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, dst) < 0) {
        snprintf(err, errlen, "rename %s -> %s: %s", tmp, dst, strerror(errno));
        goto out;
    }
    if (queue_fsync_dir(AT_FDCWD, dir) < 0)
        log_warn("fsync %s/: %m", dir);
    rc = 0;
out:
    close(fd);
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* ---- quarantine ------------------------------------------------------------- */

/* Move m into quarantine/<name>/ and record the name in the file (with
 * v's header mutations, v may be NULL); m is forgotten. On failure it is
 * held (hold/) instead: never delivered. */
static void quarantine(struct qmsg *m, const char *name, const char *rule,
                       const struct filter_verdict *v)
{
    char dir[256];
    log_set_qid(m->id);
    name = qfm_quarantine_name(name, rule);
    if (queue_quarantine_dir(AT_FDCWD, name, dir, sizeof(dir)) < 0) {
        log_error("quarantine/%s/: %m", name);
    } else if (queue_move(AT_FDCWD, SPOOL_ACTIVE, dir, m->id, 0) < 0) {
        log_error("move %s/%s -> %s/: %m", SPOOL_ACTIVE, m->id, dir);
    } else {
        if (queue_fsync_dir(AT_FDCWD, dir) < 0)     /* moved even if this fails */
            log_error("fsync %s/: %m", dir);
        char err[1024] = "";
        if (m->env.quarantine == NULL || strcmp(m->env.quarantine, name) != 0) {
            free(m->env.quarantine);
            m->env.quarantine = xstrdup(name);
        }
        /* the recorded name lets a released message skip postq; a crash
         * before it is written only means postq runs again at release */
        if (rewrite(m, dir, v, err, sizeof(err)) < 0)
            log_error("cannot record the quarantine in the queue file: %s", err);
        struct log_ev e;
        log_ev_init(&e, LE_QUARANTINE);
        log_ev_str(&e, LF_QUEUE, name);
        log_ev_str(&e, LF_PATH, dir);
        log_ev_str(&e, LF_RULE, rule_or(rule));
        log_ev_str(&e, LF_STAGE, "postq");
        log_ev_emit(&e);
        log_set_qid(NULL);
        qmgr_active_drop(m);
        return;
    }
    if (queue_move(AT_FDCWD, SPOOL_ACTIVE, SPOOL_HOLD, m->id, 0) < 0)
        log_error("move to %s/: %m: left in %s/", SPOOL_HOLD, SPOOL_ACTIVE);
    else
        log_warn("could not quarantine: held in %s/ instead", SPOOL_HOLD);
    log_set_qid(NULL);
    qmgr_active_drop(m);
}

/* ---- postq --------------------------------------------------------------------- */

/* m->dirty has one entry per recipient: grow it with the envelope. */
struct postq_ctx {
    struct qmsg *m;
    int ndirty;
};

static void dirty_grow(struct postq_ctx *c)
{
    int n = c->m->env.nrcpts;
    if (n <= c->ndirty)
        return;
    c->m->dirty = xrealloc(c->m->dirty, (size_t)n);
    memset(c->m->dirty + c->ndirty, 0, (size_t)(n - c->ndirty));
    c->ndirty = n;
}

/* qf_mutate marked recipient i discarded (remove_rcpt): log it, keep it dirty. */
static void discarded(void *arg, int i, const char *why)
{
    struct postq_ctx *c = arg;
    dirty_grow(c);      /* i may be a recipient an earlier add_rcpt made */
    qmgr_active_outcome(c->m, (uint32_t)i, DS_DISCARDED, "2.0.0", why, "none", 0);
    log_set_qid(c->m->id);
}

static void postq_go_on(struct qmsg *m, struct filter_verdict *v)
{
    struct postq_ctx c = { m, m->env.nrcpts };
    struct qfm_result r;
    log_set_qid(m->id);
    qfm_apply_env(&m->env, STAGE_POSTQ, v->status, v->rule, v->muts, v->nmuts, discarded, &c, &r);
    log_set_qid(NULL);
    dirty_grow(&c);                     /* added recipients: nothing to write in place */
    if (r.quarantine) {
        quarantine(m, r.quarantine, r.qrule, v);
        return;
    }
    if (r.changed) {
        char err[1024] = "";
        if (rewrite(m, SPOOL_ACTIVE, v, err, sizeof(err)) < 0) {
            log_set_qid(m->id);
            log_error("cannot apply the postq mutations: %s", err);
            log_set_qid(NULL);
            /* forget what was applied in memory; postq runs again next time */
            if (qmgr_active_reload(m) == 0)
                qmgr_active_defer_all(m, "4.3.0", "cannot apply rule mutations", 0,
                                      qmgr_now() + QMGR_FILTER_BACKOFF);
            return;
        }
        /* discarded recipients are in the new file; keep nothing dirty */
        if (qmgr_active_reload(m) < 0)
            return;
    }
    m->phase = QP_DELIVER;
    qmgr_active_advance(m);
}

/* ---- deliver ----------------------------------------------------------------------- */

static void deliver_choices(struct qmsg *m, const struct filter_verdict *v)
{
    for (int k = 0; k < v->nmuts; k++) {
        const struct filter_mut *mu = &v->muts[k];
        enum qroute_kind kind;
        switch (mu->kind) {
        case FILTER_M_MAILDIR: kind = QR_MAILDIR; break;
        case FILTER_M_MBOX:    kind = QR_MBOX; break;
        case FILTER_M_DISCARD: kind = QR_DISCARD; break;
        case FILTER_M_RELAY:   kind = QR_RELAY; break;
        case FILTER_M_FORWARD: kind = QR_FORWARD; break;
        case FILTER_M_LMTP:    kind = QR_LMTP; break;
        case FILTER_M_TRANSPORT: kind = QR_TRANSPORT; break;
        default:
            log_set_qid(m->id);
            log_warn("rule \"%s\": %s is not applied at deliver", rule_or(mu->rule),
                     (unsigned)mu->kind < FILTER_M__COUNT ? filter_mut_name((enum filter_mut_kind)mu->kind)
                                                      : "unknown mutation");
            log_set_qid(NULL);
            continue;
        }
        if (m->routes == NULL)
            m->routes = xcalloc((size_t)m->env.nrcpts, sizeof(*m->routes));
        int hit = 0;
        for (int i = 0; i < m->env.nrcpts; i++) {
            if (mu->rcpt[0] && !addr_same(mu->rcpt, m->env.rcpts[i].addr))
                continue;
            struct qroute *q = &m->routes[i];
            q->kind = (uint8_t)kind;   /* the last choice for a recipient wins */
            str_copy(q->rule, sizeof(q->rule), rule_or(mu->rule));
            str_copy(q->arg, sizeof(q->arg), mu->arg);
            hit = 1;
        }
        if (!hit) {
            log_set_qid(m->id);
            log_warn("rule \"%s\": %s <%s>: not a recipient of this message", rule_or(mu->rule),
                     filter_mut_name((enum filter_mut_kind)mu->kind), mu->rcpt);
            log_set_qid(NULL);
        }
    }
}

/* ---- entry --------------------------------------------------------------------------- */

void qmgr_rules_verdict(struct qmsg *m, enum stage s, struct filter_verdict *v)
{
    if (v == NULL) {
        qmgr_active_defer_all(m, "4.3.0", "rule filter not available", s == STAGE_DELIVER,
                              qmgr_now() + QMGR_FILTER_BACKOFF);
        return;
    }
    switch (v->status) {
    case V_DEFER: case V_TEMPFAIL:
        defer_verdict(m, s, v);
        return;
    case V_DENY: case V_REJECT:
        bounce_all(m, s, v);
        return;
    case V_QUARANTINE:
        if (s == STAGE_POSTQ) {
            postq_go_on(m, v);   /* applies the other mutations, then quarantines */
        } else {
            const char *name = QFM_QUARANTINE_DEFAULT;
            for (int k = 0; k < v->nmuts; k++)
                if (v->muts[k].kind == FILTER_M_QUARANTINE)
                    name = v->muts[k].arg;
            quarantine(m, name, v->rule, NULL);
        }
        return;
    default:
        break;
    }
    if (s == STAGE_POSTQ) {
        postq_go_on(m, v);
    } else {
        deliver_choices(m, v);
        m->phase = QP_ROUTE;
        qmgr_active_advance(m);
    }
}
