/*
 * cli_queue.c - postern queue list | show | flush | delete | hold |
 * release | requeue, and mailq. Reads queue files with the qfile reader
 * (never trusting them), moves files between queue directories with the
 * queue module (rename, no replace; the target directory synced once), and
 * wakes qmgr over private/qmgr. Queue ids from
 * the command line are validated before they become file names.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "util/fdio.h"
#include "ipc/ipc.h"
#include "mail/qfile.h"
#include "mail/queue.h"
#include "daemon/server.h"
#include "mail/spool.h"

/* A message found in the spool: queue dir (spool-relative) + id. */
struct qent {
    char id[QUEUE_ID_MAX];
    char dir[300];          /* "deferred", "quarantine/junk" */
};

struct qlist { struct qent *v; int n; };

enum { Q_INCOMING = 1, Q_ACTIVE = 2, Q_DEFERRED = 4, Q_HOLD = 8, Q_QUARANTINE = 16,
       Q_CORRUPT = 32 };
#define Q_LISTED (Q_INCOMING | Q_ACTIVE | Q_DEFERRED | Q_HOLD | Q_QUARANTINE)
#define Q_ALL    (Q_LISTED | Q_CORRUPT)

static const struct { int bit; const char *dir; } qdirs[] = {
    { Q_INCOMING, SPOOL_INCOMING }, { Q_ACTIVE, SPOOL_ACTIVE }, { Q_DEFERRED, SPOOL_DEFERRED },
    { Q_HOLD, SPOOL_HOLD }, { Q_CORRUPT, SPOOL_CORRUPT },
};

/* ---- JSON and text output --------------------------------------------- */

/* Length of a valid UTF-8 sequence at p, 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned min;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0) { len = 2; min = 0x80; }
    else if ((p[0] & 0xf0) == 0xe0) { len = 3; min = 0x800; }
    else if ((p[0] & 0xf8) == 0xf0) { len = 4; min = 0x10000; }
    else return 0;
    if (len > n)
        return 0;
    unsigned cp = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* A JSON string; bytes that are not UTF-8 become \u00XX (Latin-1 reading). */
static void json_str(buf_t *b, const void *data, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = data;
    buf_append_char(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char ch = p[i];
        if (ch == '"' || ch == '\\') {
            buf_append_char(b, '\\');
            buf_append_char(b, (char)ch);
            i++;
        } else if (ch == '\n') {
            buf_append_str(b, "\\n"), i++;
        } else if (ch == '\t') {
            buf_append_str(b, "\\t"), i++;
        } else if (ch == '\r') {
            buf_append_str(b, "\\r"), i++;
        } else if (ch < 0x20 || ch == 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
            buf_append(b, e, 6);
            i++;
        } else {
            size_t l = utf8_len(p + i, n - i);
            if (l == 0) {
                char e[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
                buf_append(b, e, 6);
                i++;
            } else {
                buf_append(b, p + i, l);
                i += l;
            }
        }
    }
    buf_append_char(b, '"');
}

static void json_key_str(buf_t *b, const char *key, const char *val)
{
    buf_printf(b, "\"%s\":", key);
    json_str(b, val ? val : "", val ? strlen(val) : 0);
}

/* Envelope text safe for a terminal: controls escaped. */
static void text_str(buf_t *b, const char *s)
{
    buf_append_printable(b, s ? s : "", s ? strlen(s) : 0);
}

static void iso_time(char *out, size_t size, int64_t usec)
{
    time_t t = (time_t)(usec / 1000000);
    struct tm tm;
    if (usec <= 0 || gmtime_r(&t, &tm) == NULL) {
        str_copy(out, size, "-");
        return;
    }
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void flush_out(buf_t *b)
{
    if (b->len && fwrite(b->data, 1, b->len, stdout) != b->len) { /* reported at exit */ }
    buf_reset(b);
}

/* ---- finding messages ------------------------------------------------- */

static int cmp_qent(const void *a, const void *b)
{
    const struct qent *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : strcmp(x->dir, y->dir);
}

/* Append every valid queue file in spool/rel. -1 if the directory cannot be
 * read (other than missing). */
static int scan_dir(const struct config *cfg, const char *rel, struct qlist *l)
{
    char path[4096];
    spool_path(cfg, rel, path, sizeof(path));
    DIR *d = opendir(path);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        cli_err("cannot read %s: %s%s", path, strerror(errno),
                errno == EACCES ? " (run as root or the postern user)" : "");
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!queue_id_valid(de->d_name))
            continue;
        l->v = xrealloc(l->v, sizeof(*l->v) * (size_t)(l->n + 1));
        str_copy(l->v[l->n].id, sizeof(l->v[0].id), de->d_name);
        str_copy(l->v[l->n].dir, sizeof(l->v[0].dir), rel);
        l->n++;
    }
    closedir(d);
    return 0;
}

/* Every quarantine/<name>/ directory. */
static int scan_quarantine(const struct config *cfg, struct qlist *l)
{
    char path[4096];
    spool_path(cfg, SPOOL_QUARANTINE, path, sizeof(path));
    DIR *d = opendir(path);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        cli_err("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strchr(de->d_name, '/'))
            continue;
        char rel[300];
        if (str_format(rel, sizeof(rel), "%s/%s", SPOOL_QUARANTINE, de->d_name) < 0)
            continue;
        struct stat st;
        char full[4096];
        spool_path(cfg, rel, full, sizeof(full));
        if (lstat(full, &st) == 0 && S_ISDIR(st.st_mode) && scan_dir(cfg, rel, l) < 0)
            rc = -1;
    }
    closedir(d);
    return rc;
}

static int scan(const struct config *cfg, int which, struct qlist *l)
{
    int rc = 0;
    for (size_t i = 0; i < sizeof(qdirs) / sizeof(qdirs[0]); i++)
        if ((which & qdirs[i].bit) && scan_dir(cfg, qdirs[i].dir, l) < 0)
            rc = -1;
    if ((which & Q_QUARANTINE) && scan_quarantine(cfg, l) < 0)
        rc = -1;
    if (l->n > 1)
        qsort(l->v, (size_t)l->n, sizeof(*l->v), cmp_qent);
    return rc;
}

/* Open spool/dir/id and parse it. 0 ok, -1 err (err set), -2 gone. */
static int open_read(const struct config *cfg, const struct qent *q, struct qf_env *env,
                     int *fd_r, char *err, size_t errlen)
{
    char rel[400], path[4400];
    str_format(rel, sizeof(rel), "%s/%s", q->dir, q->id);
    spool_path(cfg, rel, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return -2;   /* moved on (qmgr) while we looked */
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    qf_env_init(env);
    if (qf_read(fd, env, err, errlen) < 0) {
        qf_env_free(env);
        close(fd);
        return -1;
    }
    if (fd_r)
        *fd_r = fd;
    else
        close(fd);
    return 0;
}

/* ---- queue list / mailq ----------------------------------------------- */

static void list_text(buf_t *o, const struct qent *q, const struct qf_env *e)
{
    char when[40];
    iso_time(when, sizeof(when), e->arrival);
    buf_printf(o, "%s  %llu  %s  <", q->id, (unsigned long long)e->content_len, when);
    text_str(o, e->sender);
    buf_printf(o, ">  %s\n", q->dir);
    for (int i = 0; i < e->nrcpts; i++) {
        const struct qf_rcpt *r = &e->rcpts[i];
        buf_append_str(o, "    <");
        text_str(o, r->addr);
        buf_printf(o, ">  %s", dstatus_name((enum dstatus)r->status));
        if (r->reason[0]) {
            buf_append_str(o, "  ");
            text_str(o, r->reason);
        }
        buf_append_char(o, '\n');
    }
}

static void json_rcpts(buf_t *o, const struct qf_env *e)
{
    buf_append_str(o, "\"recipients\":[");
    for (int i = 0; i < e->nrcpts; i++) {
        const struct qf_rcpt *r = &e->rcpts[i];
        buf_append_str(o, i ? ",{" : "{");
        json_key_str(o, "address", r->addr);
        buf_append_char(o, ',');
        json_key_str(o, "status", dstatus_name((enum dstatus)r->status));
        buf_append_char(o, ',');
        json_key_str(o, "reason", r->reason);
        buf_append_char(o, ',');
        json_key_str(o, "dsn", r->dsn);
        buf_printf(o, ",\"attempts\":%u", (unsigned)r->attempts);
        if (r->orig && *r->orig) {
            buf_append_char(o, ',');
            json_key_str(o, "orig", r->orig);
        }
        if (r->notify) {        /* DSN NOTIFY: the keywords given at RCPT */
            static const char *const nn[] = { "NEVER", "SUCCESS", "FAILURE", "DELAY" };
            buf_append_str(o, ",\"notify\":[");
            for (int k = 0, first = 1; k < 4; k++)
                if (r->notify & (1u << k)) {
                    buf_printf(o, "%s\"%s\"", first ? "" : ",", nn[k]);
                    first = 0;
                }
            buf_append_char(o, ']');
        }
        buf_append_char(o, '}');
    }
    buf_append_char(o, ']');
}

static void list_json(buf_t *o, const struct qent *q, const struct qf_env *e)
{
    char when[40];
    iso_time(when, sizeof(when), e->arrival);
    buf_append_char(o, '{');
    json_key_str(o, "id", q->id);
    buf_printf(o, ",\"size\":%llu,", (unsigned long long)e->content_len);
    json_key_str(o, "arrival", when);
    buf_append_char(o, ',');
    json_key_str(o, "sender", e->sender);
    buf_append_char(o, ',');
    json_key_str(o, "queue", q->dir);
    buf_append_char(o, ',');
    if (strncmp(q->dir, SPOOL_QUARANTINE "/", sizeof(SPOOL_QUARANTINE)) == 0) {
        /* the quarantine's name: its directory (the file records it too) */
        json_key_str(o, "quarantine", q->dir + sizeof(SPOOL_QUARANTINE));
        buf_append_char(o, ',');
    }
    json_rcpts(o, e);
    buf_append_str(o, "}\n");
}

static int queue_list(const struct config *cfg, int json)
{
    struct qlist l = { NULL, 0 };
    int rc = scan(cfg, Q_LISTED, &l) < 0 ? EX_FAIL : 0;
    buf_t o;
    buf_init(&o, 4096);
    int shown = 0;
    for (int i = 0; i < l.n; i++) {
        struct qf_env e;
        char err[256];
        int r = open_read(cfg, &l.v[i], &e, NULL, err, sizeof(err));
        if (r == -2)
            continue;
        shown++;
        if (r < 0) {
            if (json) {
                buf_append_char(&o, '{');
                json_key_str(&o, "id", l.v[i].id);
                buf_append_char(&o, ',');
                json_key_str(&o, "queue", l.v[i].dir);
                buf_append_char(&o, ',');
                json_key_str(&o, "error", err);
                buf_append_str(&o, "}\n");
            } else {
                buf_printf(&o, "%s  -  -  -  %s  !! unreadable: ", l.v[i].id, l.v[i].dir);
                text_str(&o, err);
                buf_append_char(&o, '\n');
            }
        } else {
            (json ? list_json : list_text)(&o, &l.v[i], &e);
            qf_env_free(&e);
        }
        if (o.len > 65536)
            flush_out(&o);
    }
    if (shown == 0 && !json && rc == 0)
        buf_append_str(&o, "Mail queue is empty\n");
    flush_out(&o);
    buf_free(&o);
    free(l.v);
    if (fflush(stdout) != 0) {
        cli_err("write error on stdout: %s", strerror(errno));
        rc = EX_FAIL;
    }
    return rc;
}

/* ---- queue show ------------------------------------------------------- */

static void show_text(buf_t *o, const struct qent *q, const struct qf_env *e)
{
    char when[40];
    iso_time(when, sizeof(when), e->arrival);
    buf_printf(o, "id: %s\nqueue: %s\nsender: <", q->id, q->dir);
    text_str(o, e->sender);
    buf_append_str(o, ">\n");
    for (int i = 0; i < e->nrcpts; i++) {
        const struct qf_rcpt *r = &e->rcpts[i];
        buf_append_str(o, "recipient: <");
        text_str(o, r->addr);
        buf_printf(o, ">  %s  attempts=%u", dstatus_name((enum dstatus)r->status),
                   (unsigned)r->attempts);
        if (r->dsn[0])
            buf_printf(o, "  dsn=%s", r->dsn);
        if (r->reason[0]) {
            buf_append_str(o, "  ");
            text_str(o, r->reason);
        }
        buf_append_char(o, '\n');
    }
    buf_printf(o, "arrival: %s\nsize: %llu\nclient: ", when, (unsigned long long)e->content_len);
    text_str(o, e->client_ip && *e->client_ip ? e->client_ip : "-");
    buf_printf(o, " port %u ptr ", (unsigned)e->client_port);
    text_str(o, e->client_ptr && *e->client_ptr ? e->client_ptr : "-");
    static const char *const names[] = { "helo", "protocol", "auth", "tls", "listener", "envid" };
    const char *vals[] = { e->helo, e->protocol, e->auth_user, e->tls, e->listener, e->envid };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        buf_printf(o, "\n%s: ", names[i]);
        text_str(o, vals[i] && *vals[i] ? vals[i] : "-");
    }
    if (e->quarantine && *e->quarantine) {
        buf_append_str(o, "\nquarantine: ");
        text_str(o, e->quarantine);
    }
    for (int i = 0; i < e->nnotes; i++) {    /* rule verdicts and applied mutations */
        buf_append_str(o, "\nnote: ");
        text_str(o, e->notes[i]);
    }
    buf_append_str(o, "\n\n");
}

static void show_json(buf_t *o, const struct qent *q, const struct qf_env *e, const buf_t *content)
{
    char when[40];
    iso_time(when, sizeof(when), e->arrival);
    buf_append_char(o, '{');
    json_key_str(o, "id", q->id);
    buf_append_char(o, ',');
    json_key_str(o, "queue", q->dir);
    buf_append_str(o, ",\"envelope\":{");
    json_key_str(o, "sender", e->sender);
    buf_append_char(o, ',');
    json_rcpts(o, e);
    buf_append_str(o, "},\"metadata\":{");
    json_key_str(o, "arrival", when);
    buf_printf(o, ",\"size\":%llu,", (unsigned long long)e->content_len);
    json_key_str(o, "client_ip", e->client_ip);
    buf_printf(o, ",\"client_port\":%u,", (unsigned)e->client_port);
    const struct { const char *key, *val; } text[] = {
        { "client_ptr", e->client_ptr }, { "helo", e->helo }, { "protocol", e->protocol },
        { "auth", e->auth_user }, { "tls", e->tls }, { "listener", e->listener },
        { "envid", e->envid },
    };
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
        if (i)
            buf_append_char(o, ',');
        json_key_str(o, text[i].key, text[i].val);
    }
    buf_printf(o, ",\"ret\":%u,\"smtputf8\":%s,\"8bitmime\":%s,", (unsigned)e->ret,
               e->flags & QF_F_SMTPUTF8 ? "true" : "false",
               e->flags & QF_F_8BITMIME ? "true" : "false");
    json_key_str(o, "quarantine", e->quarantine);
    buf_append_str(o, ",\"notes\":[");
    for (int i = 0; i < e->nnotes; i++) {
        if (i)
            buf_append_char(o, ',');
        json_str(o, e->notes[i], strlen(e->notes[i]));
    }
    buf_append_str(o, "]},\"content\":");
    json_str(o, content->data, content->len);
    buf_append_str(o, "}\n");
}

/* Find id in the spool (any queue directory). 1 found, 0 not, -1 error. */
static int find_id(const struct config *cfg, const char *id, int which, struct qent *q_r)
{
    struct qlist l = { NULL, 0 };
    int rc = scan(cfg, which, &l);
    int found = 0;
    for (int i = 0; i < l.n && !found; i++)
        if (strcmp(l.v[i].id, id) == 0) {
            *q_r = l.v[i];
            found = 1;
        }
    free(l.v);
    return found ? 1 : rc < 0 ? -1 : 0;
}

static int bad_id(const char *id)
{
    buf_t b;
    buf_init(&b, 64);
    buf_append_printable(&b, id, strlen(id));
    cli_err("invalid queue id \"%s\" (letters A-Z and digits only)", b.data);
    buf_free(&b);
    return EX_FAIL;
}

static int queue_show(const struct config *cfg, const char *id, int mode)
{
    if (!queue_id_valid(id))
        return bad_id(id);
    struct qent q;
    int f = find_id(cfg, id, Q_ALL, &q);
    if (f <= 0) {
        if (f == 0)
            cli_err("queue file %s not found", id);
        return EX_FAIL;
    }
    struct qf_env e;
    char err[256];
    int fd = -1;
    int r = open_read(cfg, &q, &e, &fd, err, sizeof(err));
    if (r == -2) {
        cli_err("queue file %s not found (it just left %s/)", id, q.dir);
        return EX_FAIL;
    }
    if (r < 0) {
        cli_err("queue file %s/%s: %s", q.dir, id, err);
        return EX_FAIL;
    }
    buf_t content, o;
    buf_init(&content, 4096);
    buf_init(&o, 4096);
    int rc = 0;
    if (fdio_pread_buf(fd, e.content_off, (size_t)e.content_len, &content) < 0) {
        cli_err("queue file %s/%s: cannot read the content", q.dir, id);
        rc = EX_FAIL;
    } else if (mode == 'r') {
        flush_out(&content);
    } else if (mode == 'j') {
        show_json(&o, &q, &e, &content);
    } else {
        show_text(&o, &q, &e);
        buf_append(&o, content.data, content.len);
    }
    flush_out(&o);
    if (fflush(stdout) != 0) {
        cli_err("write error on stdout: %s", strerror(errno));
        rc = EX_FAIL;
    }
    close(fd);
    qf_env_free(&e);
    buf_free(&content);
    buf_free(&o);
    return rc;
}

/* ---- flush and the actions -------------------------------------------- */

/* QMGR_WAKEUP over private/qmgr; quiet = no message when qmgr is away. */
static int qmgr_wakeup(const struct config *cfg, uint32_t flags, int quiet)
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
    struct ipc_qmgr_wakeup w = { "", flags };
    int rc = 0;
    if (ipc_hello_client(&c, IPC_PROTO_QMGR) < 0 || ipc_send(&c, IPC_QMGR_WAKEUP, &w) < 0) {
        if (!quiet)
            cli_err("qmgr at %s did not take the request", path);
        rc = -1;
    }
    ipc_conn_close(&c);
    return rc;
}

enum action { A_DELETE, A_HOLD, A_RELEASE, A_REQUEUE };

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

static int queue_action(const struct config *cfg, enum action act, int argc, char **argv)
{
    const struct action_def *a = &actions[act];
    if (argc < 1) {
        fprintf(stderr, "usage: postern queue %s ID...|ALL\n", a->name);
        return EX_USAGE_;
    }
    int all = 0, rc = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "ALL") == 0)
            all = 1;
        else if (!queue_id_valid(argv[i]))
            return bad_id(argv[i]);
    }
    struct qlist l = { NULL, 0 };
    if (scan(cfg, a->from, &l) < 0)
        rc = EX_FAIL;
    int done = 0, base = spool_fd(cfg);
    if (base < 0)
        rc = EX_FAIL;
    char *used = xcalloc((size_t)l.n + 1, 1);
    for (int k = 0; k < l.n; k++) {
        int want = all;
        for (int i = 0; i < argc && !want; i++)
            want = strcmp(argv[i], l.v[k].id) == 0;
        if (!want || base < 0)
            continue;
        used[k] = 1;
        int r = act_one(cfg, base, a, &l.v[k]);
        if (r > 0)
            done++;
        else if (r < 0)
            rc = EX_FAIL;
    }
    /* explicit ids that matched nothing the action applies to */
    for (int i = 0; i < argc && !all; i++) {
        int hit = 0;
        for (int k = 0; k < l.n && !hit; k++)
            hit = used[k] && strcmp(argv[i], l.v[k].id) == 0;
        if (hit)
            continue;
        struct qent q;
        if (find_id(cfg, argv[i], Q_ALL, &q) == 1)
            cli_err("%s: in %s/, cannot %s it from there", argv[i], q.dir, a->name);
        else
            cli_err("queue file %s not found", argv[i]);
        rc = EX_FAIL;
    }
    free(used);
    free(l.v);
    if (done > 0 && base >= 0) {
        if (queue_fsync_dir(base, a->to ? a->to : SPOOL_INCOMING) < 0)
            cli_err("fsync %s/: %s", a->to ? a->to : SPOOL_INCOMING, strerror(errno));
        if (a->to && strcmp(a->to, SPOOL_INCOMING) == 0)
            qmgr_wakeup(cfg, 0, 1);   /* qmgr rescans at start if it is down */
    }
    if (base >= 0)
        close(base);
    printf("%s %d message%s\n", a->done, done, done == 1 ? "" : "s");
    return rc;
}

static int queue_usage(void)
{
    fputs("usage: postern queue list [--json]\n"
          "       postern queue show ID [--json|--raw]\n"
          "       postern queue hold|release|delete|requeue ID...|ALL\n"
          "       postern queue flush\n", stderr);
    return EX_USAGE_;
}

static int list_args(struct cli *c, int argc, char **argv)
{
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return queue_usage();
    }
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    int rc = queue_list(cfg, json);
    config_free(cfg);
    return rc;
}

int cli_mailq(struct cli *c, int argc, char **argv)
{
    return list_args(c, argc, argv);
}

int cli_queue(struct cli *c, int argc, char **argv)
{
    if (argc < 2)
        return queue_usage();
    const char *sub = argv[1];
    argc -= 2;
    argv += 2;
    if (strcmp(sub, "list") == 0)
        return list_args(c, argc, argv);
    int mode = 't';
    const char *id = NULL;
    enum action act = A_DELETE;
    if (strcmp(sub, "show") == 0) {
        for (int i = 0; i < argc; i++) {
            if (strcmp(argv[i], "--json") == 0)
                mode = 'j';
            else if (strcmp(argv[i], "--raw") == 0)
                mode = 'r';
            else if (id == NULL && argv[i][0] != '-')
                id = argv[i];
            else
                return queue_usage();
        }
        if (id == NULL)
            return queue_usage();
    } else if (strcmp(sub, "flush") == 0) {
        if (argc != 0)
            return queue_usage();
    } else if (strcmp(sub, "delete") == 0) {
        act = A_DELETE;
    } else if (strcmp(sub, "hold") == 0) {
        act = A_HOLD;
    } else if (strcmp(sub, "release") == 0) {
        act = A_RELEASE;
    } else if (strcmp(sub, "requeue") == 0) {
        act = A_REQUEUE;
    } else {
        return queue_usage();
    }
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    int rc;
    if (strcmp(sub, "show") == 0) {
        rc = queue_show(cfg, id, mode);
    } else if (strcmp(sub, "flush") == 0) {
        rc = qmgr_wakeup(cfg, 1, 0) < 0 ? EX_FAIL : 0;
        if (rc == 0)
            printf("flush requested: deferred mail will be retried now\n");
    } else {
        rc = queue_action(cfg, act, argc, argv);
    }
    config_free(cfg);
    return rc;
}
