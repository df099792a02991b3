/*
 * qmgr_active.c - messages in memory. A message is taken by renaming it
 * into active/, parsed, passed through the postq and deliver stages when
 * they have rules (qmgr_filter.c, qmgr_rules.c), its pending recipients
 * routed (the deliver stage's choice; else local -> the local agent,
 * remote -> deferred until an smtp agent exists), and finished by
 * writing every outcome into the queue file before the message is
 * forgotten: all done -> removed (renamed to tmp/.free-ID for cleanup to
 * reuse the inode); otherwise one fsync, mtime = next try,
 * rename to deferred/.
 * The active queue is bounded (qmgr.h: limits.active_queue messages,
 * QMGR_ACTIVE_RCPTS recipients): when full, qmgr_active_start refuses and
 * the file stays where it is (incoming/, deferred/) for a later scan.
 * Must never drop a recipient that was not recorded done.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <sys/resource.h>

#include "util/log.h"
#include "util/log_event.h"
#include "qmgr.h"
#include "mail/queue.h"
#include "metrics/metrics.h"

#define HASH_SIZE 1024

static struct qmsg *table[HASH_SIZE];
static int nactive;
static long nrcpts;             /* recipients of the messages in memory */

/* limits.active_queue, but never more than the open files allow (each
 * message holds its queue file open). */
static int active_max(void)
{
    static const struct config *seen;
    static int max;
    if (seen != qmgr_g->cfg) {
        seen = qmgr_g->cfg;
        max = seen->active_queue;
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            (rlim_t)max + QMGR_FD_RESERVE > rl.rlim_cur) {
            max = rl.rlim_cur > 2 * QMGR_FD_RESERVE ? (int)(rl.rlim_cur - QMGR_FD_RESERVE)
                                                    : QMGR_FD_RESERVE;
            log_warn("limits.active_queue %d is above the open file limit: %d used",
                     seen->active_queue, max);
        }
    }
    return max;
}

/* m's recipients count against QMGR_ACTIVE_RCPTS (again after a reload). */
static void count_rcpts(struct qmsg *m)
{
    nrcpts += m->env.nrcpts - m->ncounted;
    m->ncounted = m->env.nrcpts;
}

static unsigned hash_id(const char *id)
{
    return str_hash(id) % HASH_SIZE;
}

int qmgr_active_has(const char *id)
{
    for (struct qmsg *m = table[hash_id(id)]; m; m = m->hnext)
        if (strcmp(m->id, id) == 0)
            return 1;
    return 0;
}

int qmgr_active_count(void)
{
    return nactive;
}

int qmgr_active_idx(const struct qmsg *m, uint32_t index)
{
    for (int i = 0; i < m->nidx; i++)
        if (m->idx[i] == index)
            return i;
    return -1;
}

static void forget(struct qmsg *m)
{
    struct qmsg **pp = &table[hash_id(m->id)];
    while (*pp && *pp != m)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = m->hnext;
    nactive--;
    nrcpts -= m->ncounted;
    if (m->fd >= 0)
        close(m->fd);
    qf_env_free(&m->env);
    qmgr_route_free(m);
    free(m->idx);
    free(m->got);
    free(m->dirty);
    free(m->routes);
    free(m);
}

void qmgr_active_drop(struct qmsg *m)
{
    forget(m);
    if (qmgr_g->more && !qmgr_g->stopping)
        qmgr_wake_at(qmgr_now());
}

static const char *status_word(unsigned st)
{
    switch (st) {
    case DS_DELIVERED: return "sent";
    case DS_BOUNCED:   return "bounced";
    case DS_DISCARDED: return "discarded";
    default:           return "deferred";
    }
}

/* The outcome of one recipient: the event is named after the status word
 * (sent -> delivered, deferred, bounced, expired, discarded). */
static void log_rcpt(const struct qmsg *m, const struct qf_rcpt *r, const char *relay,
                     const char *word, const char *reason)
{
    double delay = (double)qmgr_now() - (double)m->env.arrival / 1e6;
    enum log_event ev = strcmp(word, "sent") == 0 ? LE_DELIVERED :
                        strcmp(word, "bounced") == 0 ? LE_BOUNCED :
                        strcmp(word, "expired") == 0 ? LE_EXPIRED :
                        strcmp(word, "discarded") == 0 ? LE_DISCARDED : LE_DEFERRED;
    struct log_ev e;
    log_ev_init(&e, ev);
    log_ev_str(&e, LF_QUEUE_ID, m->id);
    log_ev_str(&e, LF_SENDER, m->env.sender);
    log_ev_str(&e, LF_RECIPIENT, r->addr);
    log_ev_str(&e, LF_ORCPT, r->orig && r->orig[0] ? r->orig : NULL);
    log_ev_str(&e, LF_RELAY, relay);
    log_ev_dbl(&e, LF_DELAY, delay < 0 ? 0 : delay);
    log_ev_str(&e, LF_DSN, r->dsn);
    log_ev_str(&e, LF_STATUS, word);
    log_ev_str(&e, LF_REASON, reason);
    log_ev_emit(&e);
}

static void log_outcome(const struct qmsg *m, const struct qf_rcpt *r, const char *relay,
                        const char *word)
{
    log_rcpt(m, r, relay, word, r->reason);
}

void qmgr_active_log(const struct qmsg *m, uint32_t index, const char *relay, const char *word,
                     const char *reason)
{
    if (index >= (uint32_t)m->env.nrcpts)
        return;
    log_rcpt(m, &m->env.rcpts[index], relay, word, reason);
}

const char *qmgr_active_relay(const struct qmsg *m, uint32_t index)
{
    if (m->routes == NULL || index >= (uint32_t)m->env.nrcpts)
        return "local";
    switch (m->routes[index].kind) {
    case QR_MAILDIR: return "local (maildir)";
    case QR_MBOX:    return "local (mbox)";
    case QR_DISCARD: return "local (discard)";
    default:         return "local";
    }
}

/* The transport label of a delivery, from the relay the log names: the
 * agent pool's name (smtp, pipe), "local" for every local mailbox kind, or
 * "none" (no agent: expired, refused by a rule, discarded). */
static const char *transport_of(const char *relay)
{
    return strncmp(relay, "local", 5) == 0 ? "local" : relay;
}

/* Metrics: attempts by transport and outcome; arrival-to-delivery delay. */
static void count_outcome(const struct qmsg *m, unsigned status, const char *relay, int attempt)
{
    const char *tr = transport_of(relay);
    if (attempt)
        metric_add(MET_DELIVERY_ATTEMPTS, 1, tr, status_word(status));
    if (status == DS_DELIVERED) {
        struct timeval tv;
        gettimeofday(&tv, NULL);   /* arrival is wall-clock microseconds */
        int64_t us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec - m->env.arrival;
        metric_observe(MET_DELIVERY_DELAY, us, tr, NULL);
    }
}

void qmgr_active_outcome(struct qmsg *m, uint32_t index, unsigned status, const char *dsn,
                         const char *reason, const char *relay, int attempt)
{
    if (index >= (uint32_t)m->env.nrcpts)
        return;
    struct qf_rcpt *r = &m->env.rcpts[index];
    unsigned sflags = status & DS_F_MASK;   /* success-report hints (qfile.h) */
    status &= ~(unsigned)DS_F_MASK;
    r->rflags &= (uint8_t)~(QF_R_NOTIFY_PASSED | QF_R_RELAYED);
    if (status == DS_DELIVERED)
        r->rflags |= (sflags & DS_F_NOTIFY_PASSED ? QF_R_NOTIFY_PASSED : 0) |
                     (sflags & DS_F_RELAYED ? QF_R_RELAYED : 0);
    if (status >= DS__COUNT || status == DS_PENDING) {
        status = DS_DEFERRED;   /* an agent may not leave a recipient unanswered */
        dsn = "4.3.0";
    }
    r->status = (uint8_t)status;
    if (attempt) {
        if (r->attempts < UINT16_MAX)
            r->attempts++;
        r->last_try = qmgr_now();
    }
    str_copy(r->dsn, sizeof(r->dsn), dsn && *dsn ? dsn : (status == DS_DEFERRED ? "4.0.0" : "2.0.0"));
    str_copy(r->reason, sizeof(r->reason), reason ? reason : "");
    m->dirty[index] = 1;
    log_set_qid(m->id);
    log_outcome(m, r, relay, status_word(status));
    log_set_qid(NULL);
    count_outcome(m, status, relay, attempt);
}

/* Is this recipient's domain one of ours (no domain: local too)? */
static int rcpt_is_local(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at == NULL || config_is_local_domain(qmgr_g->cfg, at + 1);
}

/* Past the lifetime: bounce every recipient still pending (4.4.7: the
 * last problem was temporary, RFC 3463 "delivery time expired"). */
static void expire(struct qmsg *m)
{
    for (int i = 0; i < m->env.nrcpts; i++) {
        struct qf_rcpt *r = &m->env.rcpts[i];
        if (qmgr_rcpt_done(r->status))
            continue;
        r->status = DS_BOUNCED;
        str_copy(r->dsn, sizeof(r->dsn), "4.4.7");
        if (r->reason[0] == '\0')
            str_copy(r->reason, sizeof(r->reason), "delivery time expired");
        else {
            char last[QF_REASON_MAX + 1];
            str_copy(last, sizeof(last), r->reason);
            str_format(r->reason, sizeof(r->reason), "delivery time expired; last: %s", last);
        }
        m->dirty[i] = 1;
        log_outcome(m, r, "none", "expired");
    }
}

void qmgr_active_finish(struct qmsg *m)
{
    int64_t now = qmgr_now();
    char path[QUEUE_ID_MAX + 16];
    queue_path(path, sizeof(path), SPOOL_ACTIVE, m->id);
    log_set_qid(m->id);
    int pending = 0;
    for (int i = 0; i < m->env.nrcpts; i++)
        pending += !qmgr_rcpt_done(m->env.rcpts[i].status);
    if (pending && qmgr_defer_expired(qmgr_g->cfg, &m->env, now)) {
        expire(m);
        pending = 0;
    }
    /* reports are committed before any outcome is recorded (qmgr_bounce.c);
     * one that could not be queued may leave recipients deferred again */
    if (qmgr_bounce_reports(m, now) < 0) {
        pending = 0;
        for (int i = 0; i < m->env.nrcpts; i++)
            pending += !qmgr_rcpt_done(m->env.rcpts[i].status);
    }
    if (pending == 0) {
        /* every recipient is done: the file itself is the only record left.
         * Its inode goes to cleanup for reuse (cleanup/cleanup_recycle.c:
         * inode allocation is costly on ext4 without a journal). */
        char fpath[sizeof(SPOOL_TMP "/" SPOOL_RECYCLE_PREFIX) + QUEUE_ID_MAX];
        str_format(fpath, sizeof(fpath), SPOOL_TMP "/" SPOOL_RECYCLE_PREFIX "%s", m->id);
        if (rename(path, fpath) < 0 && unlink(path) < 0)
            log_error("unlink %s: %m", path);
        else {
            struct log_ev e;
            log_ev_init(&e, LE_REMOVED);
            log_ev_emit(&e);
        }
    } else {
        int ioerr = 0;
        for (int i = 0; i < m->env.nrcpts; i++)
            if (m->dirty[i] && qf_update_rcpt(m->fd, &m->env.rcpts[i]) < 0) {
                log_error("cannot record the outcome for <%s>: %m", m->env.rcpts[i].addr);
                ioerr = 1;
            }
        if (fsync(m->fd) < 0) {
            log_error("fsync %s: %m", path);
            ioerr = 1;
        }
        int64_t next = qmgr_defer_next(qmgr_g->cfg, &m->env, now);
        if (m->retry_at && m->retry_at < next)
            next = m->retry_at;
        if (ioerr && next > now + 60)
            next = now + 60;   /* outcomes may be lost: try again soon (idempotent) */
        if (qmgr_defer_move(m->id, m->fd, next) == 0)
            qmgr_wake_at(next);
    }
    log_set_qid(NULL);
    forget(m);
    if (qmgr_g->more && !qmgr_g->stopping)
        qmgr_wake_at(now);
}

/* Parse an opened queue file (active/ID); on corruption (a torn file
 * included: END checksum, lib/mail/qfile.h) move it to corrupt/. */
static int load(struct qmsg *m)
{
    char err[256] = "";
    if (qf_read(m->fd, &m->env, err, sizeof(err)) == 0) {
        if (strcmp(m->env.queue_id, m->id) == 0)
            return 0;
        snprintf(err, sizeof(err), "queue id %s in the file does not match its name",
                 m->env.queue_id);
    }
    if (queue_move(AT_FDCWD, SPOOL_ACTIVE, SPOOL_CORRUPT, m->id, 0) < 0)
        log_error("%s: corrupt queue file (%s), and move to %s/ failed: %m", m->id, err,
                  SPOOL_CORRUPT);
    else
        log_error("%s: corrupt queue file moved to %s/%s: %s", m->id, SPOOL_CORRUPT, m->id, err);
    return -1;
}

/* Route the pending recipients; 1 if any goes to a delivery agent. A
 * delivery choice from the deliver stage wins over the default (local
 * domain -> local agent per local.mailbox; remote -> the smtp agent:
 * qmgr_deliver.c picks the agent). */
static int route(struct qmsg *m)
{
    qmgr_route_free(m);
    free(m->idx);
    free(m->got);
    m->idx = xcalloc((size_t)m->env.nrcpts, sizeof(*m->idx));
    m->got = xcalloc((size_t)m->env.nrcpts, 1);
    m->hops = xcalloc((size_t)m->env.nrcpts, sizeof(*m->hops));
    m->nidx = 0;
    for (int i = 0; i < m->env.nrcpts; i++) {
        struct qf_rcpt *r = &m->env.rcpts[i];
        if (r->status != DS_PENDING && r->status != DS_DEFERRED)
            continue;
        struct qroute *q = m->routes ? &m->routes[i] : NULL;
        if (q && q->kind == QR_RELAY && rcpt_is_local(r->addr) &&
            (qmgr_g->cfg->relayhost == NULL || qmgr_g->cfg->relayhost[0] == '\0')) {
            /* relay by MX to one of our own domains would come back here */
            log_set_qid(m->id);
            log_info("to=<%s>: relay() chosen by rule \"%s\" for a local domain: "
                     "delivered locally (would loop back to myself)", r->addr, q->rule);
            log_set_qid(NULL);
            q->kind = QR_DEFAULT;
        }
        /* qmgr_route.c: agent and next hop, once per activation (a choice
         * that cannot be used is deferred there) */
        if (qmgr_route_resolve(m, (uint32_t)i, &m->hops[m->nidx]))
            m->idx[m->nidx++] = (uint32_t)i;
    }
    return m->nidx > 0;
}

static int pending_count(const struct qmsg *m)
{
    int n = 0;
    for (int i = 0; i < m->env.nrcpts; i++)
        n += !qmgr_rcpt_done(m->env.rcpts[i].status);
    return n;
}

void qmgr_active_advance(struct qmsg *m)
{
    if (qmgr_g->stopping)
        return;   /* stays in active/: recovered at the next start */
    for (;;) {
        if (m->phase == QP_ROUTE || pending_count(m) == 0) {
            if (route(m))
                qmgr_deliver_submit(m);
            else
                qmgr_active_finish(m);
            return;
        }
        enum stage s = m->phase == QP_POSTQ ? STAGE_POSTQ : STAGE_DELIVER;
        if (s == STAGE_POSTQ && !qmgr_rules_postq_due(m)) {
            m->phase = QP_DELIVER;
            continue;
        }
        switch (qmgr_filter_need(s)) {
        case 0:
            m->phase = s == STAGE_POSTQ ? QP_DELIVER : QP_ROUTE;
            continue;
        case 1:
            qmgr_filter_ask(m, s);
            return;
        case -1:
            qmgr_filter_wait(m);
            return;
        default:
            qmgr_active_defer_all(m, "4.3.0", "rule filter not available", s == STAGE_DELIVER,
                                  qmgr_now() + QMGR_FILTER_BACKOFF);
            return;
        }
    }
}

void qmgr_active_defer_all(struct qmsg *m, const char *dsn, const char *reason, int attempt,
                           int64_t retry)
{
    for (int i = 0; i < m->env.nrcpts; i++)
        if (!qmgr_rcpt_done(m->env.rcpts[i].status))
            qmgr_active_outcome(m, (uint32_t)i, DS_DEFERRED, dsn, reason, "none", attempt);
    if (retry && (m->retry_at == 0 || retry < m->retry_at))
        m->retry_at = retry;
    qmgr_active_finish(m);
}

int qmgr_active_reload(struct qmsg *m)
{
    char path[QUEUE_ID_MAX + 16];
    queue_path(path, sizeof(path), SPOOL_ACTIVE, m->id);
    if (m->fd >= 0)
        close(m->fd);
    qf_env_free(&m->env);
    free(m->dirty);
    m->dirty = NULL;
    free(m->routes);
    m->routes = NULL;
    m->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (m->fd < 0) {
        log_error("%s: open %s: %m", m->id, path);
        forget(m);
        return -1;
    }
    if (load(m) < 0) {
        forget(m);
        return -1;
    }
    m->dirty = xcalloc((size_t)m->env.nrcpts, 1);
    count_rcpts(m);
    return 0;
}

int qmgr_active_start(const char *dir, const char *id)
{
    if (!queue_id_valid(id) || qmgr_active_has(id))
        return 1;
    if (nactive >= active_max() || nrcpts >= QMGR_ACTIVE_RCPTS) {
        qmgr_g->more = 1;
        return 0;
    }
    char path[QUEUE_ID_MAX + 16];
    queue_path(path, sizeof(path), SPOOL_ACTIVE, id);
    if (queue_move(AT_FDCWD, dir, SPOOL_ACTIVE, id, 0) < 0) {
        if (errno != ENOENT)
            log_error("move %s from %s/ to %s/: %m", id, dir, SPOOL_ACTIVE);
        return 1;
    }
    struct qmsg *m = xcalloc(1, sizeof(*m));
    str_copy(m->id, sizeof(m->id), id);
    qf_env_init(&m->env);
    m->hnext = table[hash_id(id)];
    table[hash_id(id)] = m;
    nactive++;
    m->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (m->fd < 0) {
        log_error("open %s: %m", path);
        if (queue_move(AT_FDCWD, SPOOL_ACTIVE, dir, id, 0) < 0)
            log_error("move %s from %s/ back to %s/: %m", id, SPOOL_ACTIVE, dir);
        forget(m);
        return 1;
    }
    if (load(m) < 0) {
        forget(m);
        return 1;
    }
    m->dirty = xcalloc((size_t)m->env.nrcpts, 1);
    count_rcpts(m);
    struct log_ev e;
    log_ev_init(&e, LE_ACTIVE);
    log_ev_str(&e, LF_QUEUE_ID, id);
    log_ev_str(&e, LF_SENDER, m->env.sender);
    log_ev_num(&e, LF_SIZE, (long long)m->env.content_len);
    log_ev_num(&e, LF_NRCPT, m->env.nrcpts);
    log_ev_str(&e, LF_QUEUE, dir);
    log_ev_emit(&e);
    m->phase = QP_POSTQ;
    qmgr_active_advance(m);
    return 1;
}
