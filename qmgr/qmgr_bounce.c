/*
 * qmgr_bounce.c - delivery status notifications (RFC 3464): when a message
 * is finished, the recipients that failed in this pass, those delivered
 * with NOTIFY=SUCCESS, and (once, past delivery.delay_warning) those still
 * pending each get one report per event, sent to the envelope sender.
 *
 * Injection: the report is a new queue file written with the qf writer in
 * tmp/, committed like cleanup commits (lib/mail/queue.h: fsync file,
 * queue_publish into incoming/, fsync incoming/) BEFORE the original's
 * outcomes are recorded (qmgr_active_finish calls us first). A crash in
 * between repeats a report, never loses one. The report is then picked
 * up from incoming/ like any message (a rescan is asked for at once).
 *
 * Success: a recipient the smtp agent handed to a next hop that offered
 * DSN had its NOTIFY passed on (that hop reports); one handed to a hop
 * without DSN gets Action: relayed (RFC 3461 5.2.2.1): DELIVER_STATUS
 * flags, kept in rflags (QF_R_NOTIFY_PASSED / QF_R_RELAYED).
 *
 * Loops: a report has the null sender and QF_F_DSN. A failing message with
 * the null sender (a report, or anyone's <> mail) goes once to postmaster
 * as a double bounce (QF_F_DSN2); a double bounce that fails is logged and
 * dropped. Null-sender mail never gets delay or success reports.
 * Must never record a failure whose report could not be queued: those
 * recipients go back to deferred (tried again, reported then).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"
#include "util/log_event.h"
#include "mail/dsn.h"
#include "mail/queue.h"
#include "qmgr.h"

#define DSN_POSTMASTER "postmaster"

/* One event's recipients: indexes into m->env.rcpts. */
struct event {
    enum dsn_action action;
    int *idx;
    int n;
};

/* The original message for the report: its header section, or all of it
 * for RET=FULL failures that are not too big. Caller frees *p_r. */
static int read_original(const struct qmsg *m, int full, char **p_r, size_t *n_r)
{
    uint64_t len = m->env.content_len;
    size_t n = full ? (size_t)len : (size_t)(len < DSN_HDRS_MAX ? len : DSN_HDRS_MAX);
    char *p = xmalloc(n + 1);
    if (n > 0 && qf_pread_all(m->fd, p, n, m->env.content_off) < 0) {
        free(p);
        return -1;
    }
    *p_r = p;
    *n_r = full ? n : dsn_header_len(p, n);
    return 0;
}

/* Build the report text for event ev of m into out. */
static int format(const struct qmsg *m, const struct event *ev, const char *newid,
                  const char *to, int64_t now, buf_t *out)
{
    const struct config *cfg = qmgr_g->cfg;
    int full = ev->action == DSN_FAILED && m->env.ret == 1 &&
               m->env.content_len <= DSN_FULL_MAX;
    char *orig = NULL;
    size_t olen = 0;
    if (read_original(m, full, &orig, &olen) < 0)
        return -1;
    struct dsn_rcpt *rr = xcalloc((size_t)ev->n, sizeof(*rr));
    for (int i = 0; i < ev->n; i++) {
        const struct qf_rcpt *r = &m->env.rcpts[ev->idx[i]];
        rr[i] = (struct dsn_rcpt){ r->addr, r->orig, r->dsn, r->reason, r->last_try,
                                   (r->rflags & QF_R_RELAYED) != 0 };
    }
    char msgid[QUEUE_ID_MAX + 300], boundary[QUEUE_ID_MAX + 300];
    dsn_names(msgid, sizeof(msgid), boundary, sizeof(boundary), newid, now, cfg->hostname);
    struct dsn_msg d = {
        .action = ev->action, .hostname = cfg->hostname, .to = to, .queue_id = m->id,
        .message_id = msgid, .boundary = boundary, .envid = m->env.envid,
        .arrival = m->env.arrival / 1000000, .now = now,
        .retry_until = m->env.arrival / 1000000 + cfg->lifetime, .full = full,
        .rcpts = rr, .nrcpts = ev->n,
    };
    dsn_format(out, &d, orig, olen);
    free(rr);
    free(orig);
    return 0;
}

/* 1 if p[0..n) has a byte above 127. */
static int has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] & 0x80)
            return 1;
    return 0;
}

/* Write the report's queue file on fd (qf writer, then fsync). NULL, or
 * the step that failed (errno set). */
static const char *write_file(int fd, const char *id, const char *to, uint32_t flags,
                              const char *note, const buf_t *text, int64_t now)
{
    struct qf_env env;
    qf_env_init(&env);
    env.queue_id = xstrdup(id);
    env.arrival = now * 1000000;
    env.protocol = xstrdup("dsn");
    /* an onward smtp agent needs to know what the report carries: the
     * original's 8-bit header or a UTF-8 address */
    env.flags = flags | (has_8bit(text->data, text->len) ? QF_F_8BITMIME : 0) |
                (has_8bit(to, strlen(to)) ? QF_F_SMTPUTF8 : 0);
    qf_env_add_note(&env, note);
    qf_env_add_rcpt(&env, to, "", NOTIFY_NONE);
    struct qf_writer *w = qf_write_begin(fd, &env);
    qf_env_free(&env);
    if (w == NULL)
        return "write";
    if (qf_write_content(w, text->data, text->len) < 0) {
        qf_write_abort(w);
        return "write";
    }
    if (qf_write_end(w) < 0)
        return "write";
    return fsync(fd) < 0 ? "fsync" : NULL;
}

/* Write text as queue file tmp/ID and commit it into incoming/ (file and
 * directory synced, lib/mail/queue.h). 0, or -1 (logged, nothing left). */
static int commit(const char *id, const char *to, uint32_t flags, const char *note,
                  const buf_t *text, int64_t now)
{
    char path[QUEUE_ID_MAX + 16], dst[QUEUE_ID_MAX + 64];
    queue_path(path, sizeof(path), SPOOL_TMP, id);
    int fd = queue_tmp_create(path);    /* locked: a cleanup starting leaves it */
    if (fd < 0) {
        log_error("create %s: %m", path);
        return -1;
    }
    const char *where = write_file(fd, id, to, flags, note, text, now);
    if (where == NULL && queue_publish(path, "", id, dst, sizeof(dst)) < 0)
        where = "rename";
    if (where) {
        log_error("cannot queue delivery status notification %s (%s): %m", id, where);
        unlink(path);
        close(fd);
        return -1;
    }
    if (close(fd) < 0) {
        log_error("cannot queue delivery status notification %s (close): %m", id);
        unlink(dst);
        return -1;
    }
    if (queue_fsync_dir(AT_FDCWD, SPOOL_INCOMING) < 0) {
        log_error("fsync %s/: %m (delivery status notification %s)", SPOOL_INCOMING, id);
        unlink(dst);
        return -1;
    }
    return 0;
}

/* Queue one report for ev. 0 sent (or nothing to send), -1 not queued. */
static int send_report(const struct qmsg *m, const struct event *ev, int64_t now)
{
    if (ev->n == 0)
        return 0;
    const char *to = m->env.sender;
    uint32_t flags = QF_F_DSN;
    if (to[0] == '\0') {
        if (ev->action != DSN_FAILED)
            return 0;
        if (m->env.flags & QF_F_DSN2) {
            log_warn("double bounce to %s failed: dropped (%d recipient%s)", DSN_POSTMASTER,
                     ev->n, ev->n == 1 ? "" : "s");
            return 0;
        }
        to = DSN_POSTMASTER;
        flags = QF_F_DSN | QF_F_DSN2;
    }
    char newid[QUEUE_ID_MAX], note[QUEUE_ID_MAX + 64];
    queue_id_new(newid, sizeof(newid));
    snprintf(note, sizeof(note), "dsn: %s report for %s",
             ev->action == DSN_FAILED ? "failure" :
             ev->action == DSN_DELAYED ? "delay" : "success", m->id);
    buf_t text;
    buf_init(&text, 4096);
    int rc = format(m, ev, newid, to, now, &text);
    if (rc < 0)
        log_error("cannot read the message for its delivery status notification: %m");
    else
        rc = commit(newid, to, flags, note, &text, now);
    buf_free(&text);
    if (rc == 0) {
        /* names the report's queue id: `postern log` follows it */
        struct log_ev e;
        log_ev_init(&e, LE_BOUNCE);
        log_ev_str(&e, LF_QUEUE_ID, m->id);
        log_ev_str(&e, LF_BOUNCE_ID, newid);
        log_ev_str(&e, LF_KIND, ev->action == DSN_FAILED ? "non-delivery" :
                                ev->action == DSN_DELAYED ? "delay" : "delivery");
        log_ev_str(&e, LF_RECIPIENT, to);
        log_ev_str(&e, LF_NOTIFY, flags & QF_F_DSN2 ? "postmaster" : "sender");
        log_ev_emit(&e);
        qmgr_wake_at(now);   /* picked up from incoming/ by the next scan */
    }
    return rc;
}

/* Recipients of m that this pass made part of event a. */
static void collect(struct qmsg *m, struct event *ev, int64_t now)
{
    const struct config *cfg = qmgr_g->cfg;
    int64_t age = now - m->env.arrival / 1000000;
    for (int i = 0; i < m->env.nrcpts; i++) {
        struct qf_rcpt *r = &m->env.rcpts[i];
        int take = 0;
        switch (ev->action) {
        case DSN_FAILED:
            take = m->dirty[i] && r->status == DS_BOUNCED;
            break;
        case DSN_DELIVERED:   /* a next hop that took NOTIFY over reports itself */
            take = m->dirty[i] && r->status == DS_DELIVERED &&
                   !(r->rflags & QF_R_NOTIFY_PASSED);
            break;
        case DSN_DELAYED:
            take = cfg->delay_warning > 0 && age >= cfg->delay_warning &&
                   !qmgr_rcpt_done(r->status) && !(r->rflags & QF_R_DELAY_SENT);
            break;
        }
        if (take && dsn_wanted(r->notify, ev->action))
            ev->idx[ev->n++] = i;
    }
}

/* A failure report could not be queued: its recipients are not recorded
 * as failed but deferred, so they are tried (and reported) again. */
static void unbounce(struct qmsg *m, const struct event *ev)
{
    for (int i = 0; i < ev->n; i++) {
        struct qf_rcpt *r = &m->env.rcpts[ev->idx[i]];
        r->status = DS_DEFERRED;
        str_copy(r->dsn, sizeof(r->dsn), "4.3.0");
        str_copy(r->reason, sizeof(r->reason), "delivery status notification not queued");
    }
    if (m->retry_at == 0 || m->retry_at > qmgr_now() + 60)
        m->retry_at = qmgr_now() + 60;
}

int qmgr_bounce_reports(struct qmsg *m, int64_t now)
{
    if (m->env.nrcpts == 0)
        return 0;
    int rc = 0;
    struct event ev = { DSN_FAILED, xcalloc((size_t)m->env.nrcpts, sizeof(int)), 0 };
    collect(m, &ev, now);
    if (send_report(m, &ev, now) < 0) {
        unbounce(m, &ev);
        rc = -1;
    }
    /* a success report that cannot be queued is lost rather than the
     * recipient delivered twice */
    ev.action = DSN_DELIVERED;
    ev.n = 0;
    collect(m, &ev, now);
    if (send_report(m, &ev, now) < 0)
        rc = -1;
    ev.action = DSN_DELAYED;
    ev.n = 0;
    collect(m, &ev, now);
    if (ev.n > 0 && send_report(m, &ev, now) == 0)
        for (int i = 0; i < ev.n; i++) {
            m->env.rcpts[ev.idx[i]].rflags |= QF_R_DELAY_SENT;
            m->dirty[ev.idx[i]] = 1;
        }
    free(ev.idx);
    return rc;
}
