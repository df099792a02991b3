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
#include "cli_queue.h"
#include "util/fdio.h"
#include "ipc/ipc.h"
#include "mail/qfile.h"
#include "mail/queue.h"
#include "daemon/server.h"
#include "mail/spool.h"

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
void json_str(buf_t *b, const void *data, size_t n)
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
void text_str(buf_t *b, const char *s)
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

void flush_out(buf_t *b)
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

int scan(const struct config *cfg, int which, struct qlist *l)
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
int open_read(const struct config *cfg, const struct qent *q, struct qf_env *env,
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

/* mailq in Postfix's layout: id (+ '*' active, '!' held or quarantined),
 * size, arrival, sender; then each recipient still to be delivered, the
 * last reason above it in parentheses; a blank line between messages. */
static void list_mailq(buf_t *o, const struct qent *q, const struct qf_env *e)
{
    char when[40] = "-";
    time_t t = (time_t)(e->arrival / 1000000);
    struct tm tm;
    if (e->arrival > 0 && localtime_r(&t, &tm))
        strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
    char mark = strcmp(q->dir, SPOOL_ACTIVE) == 0 ? '*'
              : strcmp(q->dir, SPOOL_INCOMING) == 0 || strcmp(q->dir, SPOOL_DEFERRED) == 0
              ? ' ' : '!';
    buf_printf(o, "%-11s%c %8llu %-20s  ", q->id, mark, (unsigned long long)e->content_len, when);
    text_str(o, e->sender[0] ? e->sender : "MAILER-DAEMON");
    buf_append_char(o, '\n');
    for (int i = 0; i < e->nrcpts; i++) {
        const struct qf_rcpt *r = &e->rcpts[i];
        if (r->status != DS_PENDING && r->status != DS_DEFERRED)
            continue;
        if (r->reason[0]) {
            buf_append_char(o, '(');
            text_str(o, r->reason);
            buf_append_str(o, ")\n");
        }
        buf_printf(o, "%43s", "");
        text_str(o, r->addr);
        buf_append_char(o, '\n');
    }
    buf_append_char(o, '\n');
}

static void list_error(buf_t *o, const struct qent *q, const char *err, int style)
{
    if (style == 'j') {
        buf_append_char(o, '{');
        json_key_str(o, "id", q->id);
        buf_append_char(o, ',');
        json_key_str(o, "queue", q->dir);
        buf_append_char(o, ',');
        json_key_str(o, "error", err);
        buf_append_str(o, "}\n");
    } else {
        buf_printf(o, "%s  -  -  -  %s  !! unreadable: ", q->id, q->dir);
        text_str(o, err);
        buf_append_char(o, '\n');
    }
}

/* style: 't' text, 'j' JSON, 'm' mailq. Selectors narrow the list; the text
 * forms end with the count and total size. */
static int queue_list(const struct config *cfg, int style, const struct qsel *sel)
{
    struct qlist l = { NULL, 0 };
    int rc = scan(cfg, sel->queues ? sel->queues : Q_LISTED, &l) < 0 ? EX_FAIL : 0;
    buf_t o;
    buf_init(&o, 4096);
    int shown = 0;
    uint64_t bytes = 0;
    if (style == 'm')
        buf_append_str(&o, "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    for (int i = 0; i < l.n; i++) {
        struct qf_env e;
        char err[256];
        int r = open_read(cfg, &l.v[i], &e, NULL, err, sizeof(err));
        if (r == -2 || (r == 0 && !qsel_match(sel, &l.v[i], &e)) ||
            (r < 0 && qsel_needs_env(sel))) {
            if (r == 0)
                qf_env_free(&e);
            continue;
        }
        shown++;
        if (r < 0) {
            list_error(&o, &l.v[i], err, style);
        } else {
            bytes += e.content_len;
            (style == 'j' ? list_json : style == 'm' ? list_mailq : list_text)(&o, &l.v[i], &e);
            qf_env_free(&e);
        }
        if (o.len > 65536)
            flush_out(&o);
    }
    if (style != 'j' && rc == 0) {
        if (shown == 0 && !qsel_given(sel)) {
            buf_reset(&o);
            buf_append_str(&o, "Mail queue is empty\n");
        } else if (style == 'm') {
            buf_printf(&o, "-- %llu Kbytes in %d Request%s.\n",
                       (unsigned long long)((bytes + 1023) / 1024), shown, shown == 1 ? "" : "s");
        } else {
            buf_printf(&o, "-- %d message%s, %llu bytes\n", shown, shown == 1 ? "" : "s",
                       (unsigned long long)bytes);
        }
    }
    flush_out(&o);
    buf_free(&o);
    free(l.v);
    if (fflush(stdout) != 0) {
        cli_err("write error on stdout: %s", strerror(errno));
        rc = EX_FAIL;
    }
    return rc;
}

/* ---- status ----------------------------------------------------------- */

#define SUMMARY_READ_MAX 20000   /* queue files read per queue for the oldest */

void cli_queue_summary(const struct config *cfg)
{
    static const struct { int bit; const char *name; } qs[] = {
        { Q_INCOMING, "incoming" }, { Q_ACTIVE, "active" }, { Q_DEFERRED, "deferred" },
        { Q_HOLD, "hold" }, { Q_QUARANTINE, "quarantine" }, { Q_CORRUPT, "corrupt" },
    };
    printf("\n%-11s %9s %12s  %s\n", "queue", "messages", "bytes", "oldest");
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        struct qlist l = { NULL, 0 };
        int bad = scan(cfg, qs[i].bit, &l) < 0;
        uint64_t bytes = 0;
        int64_t oldest = 0;
        for (int k = 0; k < l.n && k < SUMMARY_READ_MAX; k++) {
            struct qf_env e;
            char err[256];
            if (open_read(cfg, &l.v[k], &e, NULL, err, sizeof(err)) != 0)
                continue;
            bytes += e.content_len;
            if (e.arrival > 0 && (oldest == 0 || e.arrival < oldest))
                oldest = e.arrival;
            qf_env_free(&e);
        }
        char age[48] = "-";
        if (bad)
            str_copy(age, sizeof(age), "(unreadable)");
        else if (oldest > 0) {
            int64_t a = now - oldest / 1000000;
            str_format(age, sizeof(age), "%lldd%02lldh%02lldm ago", (long long)(a / 86400),
                       (long long)(a / 3600 % 24), (long long)(a / 60 % 60));
        }
        printf("%-11s %9d %12llu  %s\n", qs[i].name, l.n, (unsigned long long)bytes, age);
        free(l.v);
    }
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
int find_id(const struct config *cfg, const char *id, int which, struct qent *q_r)
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

int bad_id(const char *id)
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

static int queue_usage(void)
{
    fputs("usage: postern queue list [--json] [SELECTOR...]\n"
          "       postern queue show ID [--json|--raw]\n"
          "       postern queue hold|release|delete|requeue ID...|ALL|SELECTOR...\n"
          "       postern queue flush\n"
          "       postern queue shape [--json] [--at UNIXTIME] [SELECTOR...]\n"
          "selectors: --queue incoming|active|deferred|hold|quarantine[/NAME]|corrupt,\n"
          "           --sender ADDR|@DOMAIN|'<>', --rcpt ADDR|@DOMAIN,\n"
          "           --older-than AGE, --newer-than AGE (30m, 4h, 2d)\n", stderr);
    return EX_USAGE_;
}

static int list_args(struct cli *c, int argc, char **argv, int style)
{
    struct qsel sel = { 0 };
    for (int i = 0; i < argc; i++) {
        int r = qsel_parse(&sel, argc, argv, &i);
        if (r < 0)
            return EX_USAGE_;
        if (r > 0)
            continue;
        if (strcmp(argv[i], "--json") == 0)
            style = 'j';
        else
            return queue_usage();
    }
    struct config *cfg = cli_load_config(c->config_path);
    if (cfg == NULL)
        return EX_FAIL;
    int rc = queue_list(cfg, style, &sel);
    config_free(cfg);
    return rc;
}

int cli_mailq(struct cli *c, int argc, char **argv)
{
    return list_args(c, argc, argv, 'm');
}

int cli_queue(struct cli *c, int argc, char **argv)
{
    if (argc < 2)
        return queue_usage();
    const char *sub = argv[1];
    argc -= 2;
    argv += 2;
    if (strcmp(sub, "list") == 0)
        return list_args(c, argc, argv, 't');
    if (strcmp(sub, "shape") == 0) {
        struct config *cfg = cli_load_config(c->config_path);
        if (cfg == NULL)
            return EX_FAIL;
        int rc = queue_shape(cfg, argc, argv);
        config_free(cfg);
        return rc;
    }
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
        rc = queue_flush(cfg);
    } else {
        rc = queue_action(cfg, act, argc, argv);
    }
    config_free(cfg);
    return rc;
}
