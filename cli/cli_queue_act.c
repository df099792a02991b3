/*
 * cli_queue_act.c - what `postern queue` changes: hold, release, delete,
 * requeue (by id, ALL, or selectors), flush; the selectors shared with
 * `queue list`; and the audit line every administrative action leaves in
 * the mail log, naming who did it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_queue.h"
#include "ipc/ipc.h"
#include "daemon/server.h"
#include "util/log.h"
#include "util/log_event.h"

/* ---- flush and the actions -------------------------------------------- */

/* One message to qmgr over private/qmgr; quiet = no message when qmgr is away. */
static int qmgr_send(const struct config *cfg, enum ipc_type type, const void *msg, int quiet)
{
    char path[4096];
    spool_path(cfg, SOCK_QMGR, path, sizeof(path));
    int fd = ipc_connect_unix(path);
    if (fd < 0) {
        if (!quiet)
            cli_err("cannot reach qmgr at %s: %s (is postern running?)", path, strerror(errno));
        return -1;
    }
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct ipc_conn c;
    ipc_conn_init(&c, fd, "qmgr");
    int rc = 0;
    if (ipc_hello_client(&c, IPC_PROTO_QMGR) < 0 || ipc_send(&c, type, msg) < 0) {
        if (!quiet)
            cli_err("qmgr at %s did not take the request", path);
        rc = -1;
    }
    ipc_conn_close(&c);
    return rc;
}

/* QMGR_WAKEUP: look at incoming/ (flags 0) or retry deferred mail now (1). */
static int qmgr_wakeup(const struct config *cfg, uint32_t flags, int quiet)
{
    struct ipc_qmgr_wakeup w = { "", flags };
    return qmgr_send(cfg, IPC_QMGR_WAKEUP, &w, quiet);
}

static int qmgr_send_audit(const struct config *cfg, const struct ipc_qmgr_audit *m)
{
    return qmgr_send(cfg, IPC_QMGR_AUDIT, m, 1);
}

static const struct action_def {
    const char *name, *done;   /* "delete", "deleted" */
    int from;                  /* Q_* the action applies to */
    const char *to;            /* target dir, NULL = unlink */
} actions[] = {
    [A_DELETE]  = { "delete",  "deleted",  Q_ALL, NULL },
    [A_HOLD]    = { "hold",    "held",     Q_INCOMING | Q_DEFERRED, SPOOL_HOLD },
    [A_RELEASE] = { "release", "released", Q_HOLD | Q_QUARANTINE, SPOOL_INCOMING },
    [A_REQUEUE] = { "requeue", "requeued", Q_DEFERRED, SPOOL_INCOMING },
};

/* The spool directory, for the queue module's moves (relative to it). */
static int spool_fd(const struct config *cfg)
{
    int fd = open(cfg->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        cli_err("open %s: %s", cfg->spool, strerror(errno));
    return fd;
}

/* Apply the action to one message: 1 done, 0 gone meanwhile, -1 failed. */
static int act_one(const struct config *cfg, int base, const struct action_def *a,
                   const struct qent *q)
{
    char rel[400], src[4400];
    if (queue_path(rel, sizeof(rel), q->dir, q->id) < 0)
        return -1;
    spool_path(cfg, rel, src, sizeof(src));
    if (a->to == NULL) {
        if (unlink(src) == 0)
            return 1;
    } else {
        /* synced later, once for all (queue_action) */
        if (queue_move(base, q->dir, a->to, q->id, QUEUE_MV_NOREPLACE) == 0)
            return 1;
        if (errno == EEXIST) {
            cli_err("%s: %s/%s already exists: not replaced", q->id, a->to, q->id);
            return -1;
        }
    }
    if (errno == ENOENT)
        return 0;
    cli_err("%s %s: %s", a->name, src, strerror(errno));
    return -1;
}

/* ---- selectors ---------------------------------------------------------- */

static const struct { const char *name; int bit; } qnames[] = {
    { "incoming", Q_INCOMING }, { "active", Q_ACTIVE }, { "deferred", Q_DEFERRED },
    { "hold", Q_HOLD }, { "quarantine", Q_QUARANTINE }, { "corrupt", Q_CORRUPT },
};

static int sel_queue(struct qsel *s, const char *v)
{
    for (size_t i = 0; i < sizeof(qnames) / sizeof(qnames[0]); i++)
        if (strcmp(v, qnames[i].name) == 0) {
            s->queues |= qnames[i].bit;
            return 1;
        }
    if (strncmp(v, "quarantine/", 11) == 0 && v[11] && !strchr(v + 11, '/')) {
        s->queues |= Q_QUARANTINE;
        s->quarantine = v;
        return 1;
    }
    cli_err("--queue: unknown queue \"%s\" (incoming, active, deferred, hold, quarantine, "
            "quarantine/NAME, corrupt)", v);
    return -1;
}

static int sel_age(int64_t *out, const char *opt, const char *v)
{
    if (config_parse_duration(v, out) < 0 || *out <= 0) {
        cli_err("%s: expected a duration like 30m, 4h or 2d, got \"%s\"", opt, v);
        return -1;
    }
    return 1;
}

int qsel_parse(struct qsel *s, int argc, char **argv, int *i)
{
    static const char *const opts[] = { "--queue", "--sender", "--rcpt", "--older-than",
                                        "--newer-than" };
    size_t k = 0;
    while (k < sizeof(opts) / sizeof(opts[0]) && strcmp(argv[*i], opts[k]) != 0)
        k++;
    if (k == sizeof(opts) / sizeof(opts[0]))
        return 0;
    if (*i + 1 >= argc) {
        cli_err("%s needs a value", opts[k]);
        return -1;
    }
    const char *v = argv[++*i];
    switch (k) {
    case 0: return sel_queue(s, v);
    case 1: s->sender = v; return 1;
    case 2: s->rcpt = v; return 1;
    case 3: return sel_age(&s->older, opts[k], v);
    default: return sel_age(&s->newer, opts[k], v);
    }
}

int qsel_given(const struct qsel *s)
{
    return s->queues || s->sender || s->rcpt || s->older || s->newer;
}

int qsel_needs_env(const struct qsel *s)
{
    return s->sender || s->rcpt || s->older || s->newer;
}

/* "user@dom" equal (ignoring case), "@dom" = any address at dom, "<>" = null. */
static int addr_match(const char *pat, const char *addr)
{
    if (strcmp(pat, "<>") == 0)
        return addr[0] == '\0';
    if (pat[0] == '@') {
        const char *at = strrchr(addr, '@');
        return at && strcasecmp(at + 1, pat + 1) == 0;
    }
    return strcasecmp(pat, addr) == 0;
}

int qsel_match(const struct qsel *s, const struct qent *q, const struct qf_env *e)
{
    /* --queue quarantine/NAME: other quarantines are out (other queues
     * named with --queue stay in) */
    if (s->quarantine && strncmp(q->dir, "quarantine/", 11) == 0 &&
        strcmp(q->dir, s->quarantine) != 0)
        return 0;
    if (e == NULL)
        return !qsel_needs_env(s);
    if (s->sender && !addr_match(s->sender, e->sender))
        return 0;
    if (s->rcpt) {
        int any = 0;
        for (int i = 0; i < e->nrcpts && !any; i++)
            any = addr_match(s->rcpt, e->rcpts[i].addr);
        if (!any)
            return 0;
    }
    int64_t age = (int64_t)time(NULL) - e->arrival / 1000000;
    if (s->older && age < s->older)
        return 0;
    if (s->newer && age >= s->newer)
        return 0;
    return 1;
}
/* ---- the audit line ------------------------------------------------------ */

#define AUDIT_IDS_MAX 20     /* ids named in the line; the count is always exact */

struct audit { const char *what; buf_t ids; int n; };

static void audit_begin(struct audit *a, const char *what)
{
    a->what = what;
    a->n = 0;
    buf_init(&a->ids, 64);
}

static void audit_id(struct audit *a, const char *id)
{
    if (a->n++ < AUDIT_IDS_MAX)
        buf_printf(&a->ids, "%s%s", a->ids.len ? " " : "", id);
}

/* "queue delete: 2 messages (A B) by root (uid 0)": into qmgr's log stream
 * (the daemons' log, wherever it goes); when qmgr is away, to syslog. The
 * uid is the real one of this process, never from the environment. */
static void audit_end(struct audit *a, const struct config *cfg, int done)
{
    uid_t uid = getuid();
    struct passwd *pw = getpwuid(uid);
    if (done > AUDIT_IDS_MAX)
        buf_append_str(&a->ids, " ...");
    struct ipc_qmgr_audit m = {
        .kind = "queue", .action = a->what, .count = done >= 0 ? (uint32_t)done : UINT32_MAX,
        .ids = done > 0 ? a->ids.data : "", .user = pw ? pw->pw_name : "?", .uid = (uint32_t)uid };
    if (qmgr_send_audit(cfg, &m) < 0) {
        cli_log_attach(cfg);                /* the daemons' log file, or syslog */
        log_admin(m.kind, m.action, done >= 0 ? done : -1, m.ids, m.user, m.uid);
        cli_log_detach();
    }
    buf_free(&a->ids);
}
/* Which of argv are ids, "ALL" or selectors: 0 ok, else an exit status. */
static int action_args(int argc, char **argv, struct qsel *sel, int *all, char ***ids, int *nids)
{
    *ids = xcalloc((size_t)argc + 1, sizeof(char *));
    for (int i = 0; i < argc; i++) {
        int r = qsel_parse(sel, argc, argv, &i);
        if (r < 0)
            return EX_USAGE_;
        if (r > 0)
            continue;
        if (strcmp(argv[i], "ALL") == 0)
            *all = 1;
        else if (!queue_id_valid(argv[i]))
            return bad_id(argv[i]);
        else
            (*ids)[(*nids)++] = argv[i];
    }
    if (!*all && *nids == 0 && !qsel_given(sel))
        return EX_USAGE_;
    return 0;
}

/* Does message k match the ids (none given: every one) and the selectors? */
static int wanted(const struct config *cfg, const struct qsel *sel, const struct qent *q,
                  char **ids, int nids)
{
    int want = nids == 0;
    for (int i = 0; i < nids && !want; i++)
        want = strcmp(ids[i], q->id) == 0;
    if (!want || !qsel_given(sel))
        return want;
    struct qf_env e;
    char err[256];
    int r = qsel_needs_env(sel) ? open_read(cfg, q, &e, NULL, err, sizeof(err)) : 1;
    if (r == 0) {
        want = qsel_match(sel, q, &e);
        qf_env_free(&e);
    } else {
        want = r == 1 && qsel_match(sel, q, NULL);
    }
    return want;
}

/* Explicit ids that matched nothing the action applies to: say where they are. */
static int report_unmatched(const struct config *cfg, const struct action_def *a, char **ids,
                            int nids, const struct qlist *l, const char *used)
{
    int rc = 0;
    for (int i = 0; i < nids; i++) {
        int hit = 0;
        for (int k = 0; k < l->n && !hit; k++)
            hit = used[k] && strcmp(ids[i], l->v[k].id) == 0;
        if (hit)
            continue;
        struct qent q;
        if (find_id(cfg, ids[i], Q_ALL, &q) == 1)
            cli_err("%s: in %s/, not selected or cannot %s it from there", ids[i], q.dir,
                    a->name);
        else
            cli_err("queue file %s not found", ids[i]);
        rc = EX_FAIL;
    }
    return rc;
}

int queue_action(const struct config *cfg, enum action act, int argc, char **argv)
{
    const struct action_def *a = &actions[act];
    struct qsel sel = { 0 };
    char **ids = NULL;
    int all = 0, nids = 0, rc = action_args(argc, argv, &sel, &all, &ids, &nids);
    if (rc != 0) {
        if (rc == EX_USAGE_)
            fprintf(stderr, "usage: postern queue %s ID...|ALL|SELECTOR...\n", a->name);
        free(ids);
        return rc;
    }
    struct qlist l = { NULL, 0 };
    if (scan(cfg, a->from & (sel.queues ? sel.queues : Q_ALL), &l) < 0)
        rc = EX_FAIL;
    int done = 0, base = spool_fd(cfg);
    if (base < 0)
        rc = EX_FAIL;
    char *used = xcalloc((size_t)l.n + 1, 1);
    struct audit au;
    audit_begin(&au, a->name);
    for (int k = 0; k < l.n && base >= 0; k++) {
        if (!wanted(cfg, &sel, &l.v[k], ids, nids))
            continue;
        used[k] = 1;
        int r = act_one(cfg, base, a, &l.v[k]);
        if (r > 0) {
            done++;
            audit_id(&au, l.v[k].id);
        } else if (r < 0) {
            rc = EX_FAIL;
        }
    }
    if (!all && report_unmatched(cfg, a, ids, nids, &l, used) != 0)
        rc = EX_FAIL;
    free(used);
    free(l.v);
    free(ids);
    if (done > 0 && base >= 0) {
        if (queue_fsync_dir(base, a->to ? a->to : SPOOL_INCOMING) < 0)
            cli_err("fsync %s/: %s", a->to ? a->to : SPOOL_INCOMING, strerror(errno));
        if (a->to && strcmp(a->to, SPOOL_INCOMING) == 0)
            qmgr_wakeup(cfg, 0, 1);   /* qmgr rescans at start if it is down */
    }
    if (base >= 0)
        close(base);
    printf("%s %d message%s\n", a->done, done, done == 1 ? "" : "s");
    audit_end(&au, cfg, done);
    return rc;
}

int queue_flush(const struct config *cfg)
{
    int rc = qmgr_wakeup(cfg, 1, 0) < 0 ? EX_FAIL : 0;
    if (rc == 0)
        printf("flush requested: deferred mail will be retried now\n");
    struct audit au;
    audit_begin(&au, "flush");
    audit_end(&au, cfg, -1);
    return rc;
}
