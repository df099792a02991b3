/*
 * qmgr_rules.c - what qmgr does with a postq or deliver verdict:
 *   next/accept/faccept  go on (postq: apply the mutations allowed there;
 *                        deliver: record each recipient's delivery choice)
 *   defer/tempfail       defer every pending recipient with the reply text
 *   deny/reject          bounce every pending recipient
 *   quarantine           move the file to quarantine/<name>/ (never scheduled
 *                        again until `postern queue release`)
 * Mutations that change the envelope or the headers (add_rcpt, bcc,
 * rewrite_mail_from, add/set/remove_header, quarantine) rewrite the queue
 * file: a new file next to it (<ID>.tmp, fsynced) renamed over it, then the
 * directory fsynced; each applied mutation is kept as a NOTE record
 * ("postq: ..."), which also marks the postq stage as done.
 *
 * postq runs once per message: not after a recipient was attempted or
 * finished, not after a rewrite (NOTE "postq: ..."), not for a message that
 * was quarantined and released. Must never deliver a message a rule
 * quarantined, and never lose a recipient the rules did not remove.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "hdr.h"
#include "log.h"
#include "qmgr.h"
#include "rules.h"

#define NOTE_POSTQ "postq: "

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

static int quarantine_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isascii((unsigned char)s[i]) ||
            !(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '-'))
            return 0;
    return 1;
}

static const char *rule_or(const char *rule)
{
    return rule && *rule ? rule : "rules";
}

/* An address a rule may add: non-empty, bounded, no controls or spaces. */
static int addr_ok(const char *a)
{
    size_t n = strlen(a);
    if (n == 0 || n > 512)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)a[i] <= 32 || a[i] == 127 || a[i] == '<' || a[i] == '>')
            return 0;
    return 1;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
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
    log_set_qid(m->id);
    log_info("%s: deferred by rule \"%s\": %s", stage_name(s), rule_or(v->rule), text);
    log_set_qid(NULL);
    /* at postq the stage is asked again at the next try: not counted as a
     * delivery attempt (the retry interval stays the first one) */
    qmgr_active_defer_all(m, dsn, text, s == STAGE_DELIVER, 0);
}

/* ---- queue file rewrite ------------------------------------------------- */

/* Is the header field starting at p (a line of the header section) named name? */
static int field_is(const char *p, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && p[n] == ':' && strncasecmp(p, name, n) == 0;
}

/* Drop every field named name (with its continuation lines) from h. */
static void header_remove(buf_t *h, const char *name)
{
    buf_t out;
    buf_init(&out, h->len + 1);
    size_t i = 0;
    int skipping = 0;
    while (i < h->len) {
        const char *nl = memchr(h->data + i, '\n', h->len - i);
        size_t end = nl ? (size_t)(nl - h->data) + 1 : h->len;
        const char *line = h->data + i;
        if (line[0] == ' ' || line[0] == '\t') {
            if (!skipping)
                buf_append(&out, line, end - i);
        } else {
            skipping = field_is(line, end - i, name);
            if (!skipping)
                buf_append(&out, line, end - i);
        }
        i = end;
    }
    buf_set(h, out.data, out.len);
    buf_free(&out);
}

/* The field a rule adds: capped and folded (lib/filter_mut.h). */
static void header_add(buf_t *h, const char *name, const char *value)
{
    if (h->len && h->data[h->len - 1] != '\n')
        buf_append_char(h, '\n');
    filter_hdr_fold(h, name, value);
}

/* What a rewrite changes besides the recipients and notes already in m->env. */
struct qedit {
    const char *sender;         /* new sender, NULL = unchanged */
    const char *quarantine;     /* quarantine name to record, NULL = none */
    const struct filter_verdict *v;   /* header mutations, applied in order */
};

/* Write dir/ID from m (env + edited content) through dir/ID.tmp. 0 or -1
 * with err set. m->fd still refers to the old file (in dir or active/). */
static int rewrite(struct qmsg *m, const char *dir, const struct qedit *ed, char *err, size_t errlen)
{
    char tmp[QUEUE_ID_MAX + 300], dst[QUEUE_ID_MAX + 300];
    str_format(tmp, sizeof(tmp), "%s/%s.tmp", dir, m->id);
    str_format(dst, sizeof(dst), "%s/%s", dir, m->id);
    /* the header section of the current content */
    struct hdr_scan hs;
    hdr_scan_init(&hs);
    char chunk[65536];
    uint64_t off = 0, len = m->env.content_len;
    while (off < len && hs.end == HDR_END_NONE) {
        size_t want = len - off < sizeof(chunk) ? (size_t)(len - off) : sizeof(chunk);
        if (qf_pread_all(m->fd, chunk, want, m->env.content_off + (off_t)off) < 0) {
            snprintf(err, errlen, "read %s: %s", m->id, strerror(errno));
            return -1;
        }
        hdr_scan_feed(&hs, chunk, want);
        off += want;
    }
    if (hs.end == HDR_END_NONE)
        hdr_scan_finish(&hs);
    uint64_t hlen = hs.end_off <= len ? hs.end_off : len;
    buf_t h;
    buf_init(&h, (size_t)hlen + 256);
    buf_reserve(&h, (size_t)hlen);
    if (hlen && qf_pread_all(m->fd, h.data, (size_t)hlen, m->env.content_off) < 0) {
        snprintf(err, errlen, "read %s: %s", m->id, strerror(errno));
        buf_free(&h);
        return -1;
    }
    h.len = (size_t)hlen;
    h.data[h.len] = '\0';
    for (int i = 0; ed->v && i < ed->v->nmuts; i++) {
        const struct filter_mut *mu = &ed->v->muts[i];
        if (mu->kind != RL_M_ADD_HEADER && mu->kind != RL_M_SET_HEADER &&
            mu->kind != RL_M_REMOVE_HEADER)
            continue;
        if (!hdr_name_ok(mu->arg, strlen(mu->arg)))
            continue;
        if (mu->kind != RL_M_ADD_HEADER)
            header_remove(&h, mu->arg);
        if (mu->kind != RL_M_REMOVE_HEADER)
            header_add(&h, mu->arg, mu->arg2);
    }
    /* the new file */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "create %s: %s", tmp, strerror(errno));
        buf_free(&h);
        return -1;
    }
    char *old_sender = m->env.sender, *old_q = m->env.quarantine;
    if (ed->sender)
        m->env.sender = (char *)ed->sender;
    if (ed->quarantine)
        m->env.quarantine = (char *)ed->quarantine;
    struct qf_writer *w = qf_write_begin(fd, &m->env);
    m->env.sender = old_sender;
    m->env.quarantine = old_q;
    int rc = -1;
    if (w == NULL) {
        snprintf(err, errlen, "write %s: %s", tmp, strerror(errno));
        goto out;
    }
    qf_write_content(w, h.data, h.len);
    for (off = hlen; off < len;) {
        size_t want = len - off < sizeof(chunk) ? (size_t)(len - off) : sizeof(chunk);
        if (qf_pread_all(m->fd, chunk, want, m->env.content_off + (off_t)off) < 0) {
            snprintf(err, errlen, "read %s: %s", m->id, strerror(errno));
            qf_write_abort(w);
            goto out;
        }
        qf_write_content(w, chunk, want);
        off += want;
    }
    if (qf_write_end(w) < 0 || fsync(fd) < 0) {
        snprintf(err, errlen, "write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, dst) < 0) {
        snprintf(err, errlen, "rename %s -> %s: %s", tmp, dst, strerror(errno));
        goto out;
    }
    if (fsync_dir(dir) < 0)
        log_warn("fsync %s/: %m", dir);
    rc = 0;
out:
    close(fd);
    if (rc < 0)
        unlink(tmp);
    buf_free(&h);
    return rc;
}

/* ---- quarantine ------------------------------------------------------------- */

/* Move m into quarantine/<name>/ and record the name in the file; m is
 * forgotten. On failure it is held (hold/) instead: never delivered. */
static void quarantine(struct qmsg *m, const char *name, const char *rule, struct qedit *ed)
{
    char dir[128], from[QUEUE_ID_MAX + 16], to[QUEUE_ID_MAX + 160];
    log_set_qid(m->id);
    if (!quarantine_name_ok(name)) {
        log_warn("rule \"%s\": invalid quarantine name (letters, digits, _ and -, at most 64): "
                 "using \"default\"", rule_or(rule));
        name = "default";
    }
    str_format(dir, sizeof(dir), SPOOL_QUARANTINE "/%s", name);
    str_format(from, sizeof(from), SPOOL_ACTIVE "/%s", m->id);
    str_format(to, sizeof(to), "%s/%s", dir, m->id);
    int made = mkdir(dir, 0700) == 0;
    if (!made && errno != EEXIST) {
        log_error("mkdir %s: %m", dir);
    } else if (made && fsync_dir(SPOOL_QUARANTINE) < 0) {
        log_error("fsync %s/: %m", SPOOL_QUARANTINE);
    } else if (rename(from, to) < 0) {
        log_error("rename %s -> %s: %m", from, to);
    } else {
        if (fsync_dir(dir) < 0)
            log_error("fsync %s/: %m", dir);
        char err[1024] = "";
        ed->quarantine = name;
        /* the recorded name lets a released message skip postq; a crash
         * before it is written only means postq runs again at release */
        if (rewrite(m, dir, ed, err, sizeof(err)) < 0)
            log_error("cannot record the quarantine in the queue file: %s", err);
        log_info("quarantined in %s by rule \"%s\"", dir, rule_or(rule));
        log_set_qid(NULL);
        qmgr_active_drop(m);
        return;
    }
    str_format(to, sizeof(to), SPOOL_HOLD "/%s", m->id);
    if (rename(from, to) < 0)
        log_error("rename %s -> %s: %m: left in %s/", from, to, SPOOL_ACTIVE);
    else
        log_warn("could not quarantine: held in %s/ instead", SPOOL_HOLD);
    log_set_qid(NULL);
    qmgr_active_drop(m);
}

/* ---- postq --------------------------------------------------------------------- */

static void note(struct qmsg *m, const struct filter_mut *mu, const char *what)
{
    buf_t b;
    buf_init(&b, 128);
    buf_printf(&b, NOTE_POSTQ "rule \"%s\": %s", rule_or(mu->rule), what);
    qf_env_add_note(&m->env, b.data);
    buf_free(&b);
}

static void add_rcpt(struct qmsg *m, const struct filter_mut *mu, int *changed)
{
    if (!addr_ok(mu->rcpt)) {
        log_warn("rule \"%s\": %s: invalid address ignored", rule_or(mu->rule),
                 rl_mut_name((enum rl_mut_kind)mu->kind));
        return;
    }
    for (int i = 0; i < m->env.nrcpts; i++)
        if (addr_same(mu->rcpt, m->env.rcpts[i].addr))
            return;   /* already a recipient */
    if (m->env.nrcpts >= QF_MAX_RCPTS)
        return;
    qf_env_add_rcpt(&m->env, mu->rcpt, "", 0);
    m->dirty = xrealloc(m->dirty, (size_t)m->env.nrcpts);
    m->dirty[m->env.nrcpts - 1] = 0;
    char what[600];
    str_format(what, sizeof(what), "%s <%s>", rl_mut_name((enum rl_mut_kind)mu->kind), mu->rcpt);
    note(m, mu, what);
    log_info("%s <%s> (rule \"%s\")", mu->kind == RL_M_BCC ? "bcc" : "added recipient", mu->rcpt,
             rule_or(mu->rule));
    *changed = 1;
}

static void postq_go_on(struct qmsg *m, struct filter_verdict *v)
{
    int changed = 0;
    const char *qname = NULL, *qrule = NULL;
    struct qedit ed = { NULL, NULL, v };
    log_set_qid(m->id);
    for (int k = 0; k < v->nmuts; k++) {
        struct filter_mut *mu = &v->muts[k];
        char what[600];
        switch (mu->kind) {
        case RL_M_REMOVE_RCPT: {
            char why[200];
            str_format(why, sizeof(why), "removed by rule \"%s\"", rule_or(mu->rule));
            for (int i = 0; i < m->env.nrcpts; i++) {
                struct qf_rcpt *r = &m->env.rcpts[i];
                if (qmgr_rcpt_done(r->status) || !addr_same(mu->rcpt, r->addr))
                    continue;
                qmgr_active_outcome(m, (uint32_t)i, DS_DISCARDED, "2.0.0", why, "none", 0);
                log_set_qid(m->id);
            }
            break;
        }
        case RL_M_ADD_RCPT: case RL_M_BCC:
            add_rcpt(m, mu, &changed);
            break;
        case RL_M_REWRITE_MAIL_FROM: {
            char *a = addr_clean(mu->arg);   /* never store the brackets */
            if (a == NULL) {
                log_warn("rule \"%s\": rewrite_mail_from: invalid address ignored",
                         rule_or(mu->rule));
                break;
            }
            free(mu->arg);
            mu->arg = a;                    /* the verdict owns it, like ed */
            ed.sender = a;
            str_format(what, sizeof(what), "rewrite_mail_from <%s> (was <%s>)", a, m->env.sender);
            note(m, mu, what);
            log_info("sender rewritten to <%s> (rule \"%s\")", a, rule_or(mu->rule));
            changed = 1;
            break;
        }
        case RL_M_ADD_HEADER: case RL_M_SET_HEADER: case RL_M_REMOVE_HEADER:
            if (!hdr_name_ok(mu->arg, strlen(mu->arg)))
                break;
            if (mu->kind == RL_M_REMOVE_HEADER)
                str_format(what, sizeof(what), "remove_header %s", mu->arg);
            else
                str_format(what, sizeof(what), "%s %s: %.400s",
                           rl_mut_name((enum rl_mut_kind)mu->kind), mu->arg, mu->arg2);
            note(m, mu, what);
            changed = 1;
            break;
        case RL_M_QUARANTINE:
            qname = mu->arg;
            qrule = mu->rule;
            break;
        default:
            log_warn("rule \"%s\": %s is not applied at postq", rule_or(mu->rule),
                     (unsigned)mu->kind < RL_M__COUNT ? rl_mut_name((enum rl_mut_kind)mu->kind)
                                                      : "unknown mutation");
            break;
        }
    }
    log_set_qid(NULL);
    if (v->status == V_QUARANTINE && qname == NULL) {
        qname = v->text[0] ? v->text : "default";
        qrule = v->rule;
    }
    if (qname) {
        quarantine(m, qname, qrule, &ed);
        return;
    }
    if (changed) {
        char err[1024] = "";
        if (rewrite(m, SPOOL_ACTIVE, &ed, err, sizeof(err)) < 0) {
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
        case RL_M_MAILDIR: kind = QR_MAILDIR; break;
        case RL_M_MBOX:    kind = QR_MBOX; break;
        case RL_M_DISCARD: kind = QR_DISCARD; break;
        case RL_M_RELAY:   kind = QR_RELAY; break;
        case RL_M_FORWARD: kind = QR_FORWARD; break;
        case RL_M_LMTP:    kind = QR_LMTP; break;
        default:
            log_set_qid(m->id);
            log_warn("rule \"%s\": %s is not applied at deliver", rule_or(mu->rule),
                     (unsigned)mu->kind < RL_M__COUNT ? rl_mut_name((enum rl_mut_kind)mu->kind)
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
                     rl_mut_name((enum rl_mut_kind)mu->kind), mu->rcpt);
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
            const char *name = v->text[0] ? v->text : "default";
            for (int k = 0; k < v->nmuts; k++)
                if (v->muts[k].kind == RL_M_QUARANTINE)
                    name = v->muts[k].arg;
            struct qedit ed = { NULL, NULL, NULL };
            quarantine(m, name, v->rule, &ed);
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
