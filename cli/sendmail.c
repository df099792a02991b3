/*
 * sendmail.c - sendmail(1): the mode dispatch, reading a message from
 * stdin the way sendmail does, and the submission through postdrop.
 *
 * Input: CRLF and bare LF line ends both become LF (the queue's form); a
 * last line without a newline gets one; a line of a single "." ends the
 * message unless -i/-oi; lines of any length pass unchanged (up to
 * limits.message_size); a leading mbox "From " line is dropped. The header
 * section (up to SM_HDR_MAX) is rewritten by sm_headers (Bcc removed, From:
 * added when missing, -t recipients taken); the body is streamed.
 * Submission: libexec/postdrop (setgid postdrop) gets the records of
 * lib/mail/maildrop.h on a pipe and writes maildrop/; it works whether the
 * daemons run or not (pickup sweeps maildrop/ when it starts).
 * Exit codes are sysexits(3).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "sendmail.h"
#include "mail/maildrop.h"
#include "util/fdio.h"

#define SM_HDR_MAX (256 * 1024)     /* cleanup's CL_HDR_MAX: a longer one fails there */

struct sm_drop {
    pid_t pid;
    int fd;
    buf_t out;                      /* records not yet written to the pipe */
    buf_t pend;                     /* content not yet in a record: lines are
                                     * gathered into records of MD_REC_MAX */
    uint64_t size;
    int64_t max;                    /* limits.message_size, 0 = none */
    int broken;
};

static void sm_err(const char *fmt, ...) PRINTF_LIKE(1, 2);
static void sm_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sendmail: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int drop_flush(struct sm_drop *d)
{
    if (d->broken)
        return -1;
    if (d->out.len && fdio_write_all(d->fd, d->out.data, d->out.len) < 0) {
        d->broken = 1;
        return -1;
    }
    buf_reset(&d->out);
    return 0;
}

struct sm_drop *sm_drop_begin(const struct config *cfg, const struct sm_msg *m)
{
    char path[4096];
    if (cli_find_libexec("postdrop", path, sizeof(path)) < 0)
        return NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        sm_err("pipe: %s", strerror(errno));
        return NULL;
    }
    pid_t pid = fork();
    if (pid < 0) {
        sm_err("fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return NULL;
    }
    if (pid == 0) {
        if (dup2(p[0], STDIN_FILENO) < 0)
            _exit(EX_OSERR);
        char *argv[] = { path, cfg->spool, NULL };
        char *envp[] = { "PATH=/usr/bin:/bin", NULL };
        execve(path, argv, envp);
        fprintf(stderr, "sendmail: cannot execute %s: %s\n", path, strerror(errno));
        _exit(EX_UNAVAILABLE);
    }
    close(p[0]);
    struct sm_drop *d = xcalloc(1, sizeof(*d));
    d->pid = pid;
    d->fd = p[1];
    d->max = cfg->message_size;
    buf_init(&d->out, 2 * MD_REC_MAX);
    buf_init(&d->pend, 2 * MD_REC_MAX);
    md_put_str(&d->out, MD_SENDER, m->sender);
    for (int i = 0; i < m->rcpts.n; i++)
        md_put_str(&d->out, MD_RCPT, m->rcpts.v[i]);
    char num[24];
    if (m->notify) {
        snprintf(num, sizeof(num), "%u", (unsigned)m->notify);
        md_put_str(&d->out, MD_NOTIFY, num);
    }
    if (m->ret) {
        snprintf(num, sizeof(num), "%u", (unsigned)m->ret);
        md_put_str(&d->out, MD_RET, num);
    }
    md_put_str(&d->out, MD_BODY, m->body_8bit ? "8BITMIME" : "7BIT");
    return d;
}

/* Pending content into records: whole MD_REC_MAX ones, or all with last. */
static int drop_records(struct sm_drop *d, int last)
{
    size_t off = 0;
    while (d->pend.len - off >= MD_REC_MAX || (last && off < d->pend.len)) {
        size_t k = d->pend.len - off < MD_REC_MAX ? d->pend.len - off : MD_REC_MAX;
        md_put(&d->out, MD_CONTENT, d->pend.data + off, k);
        off += k;
        if (d->out.len >= MD_REC_MAX && drop_flush(d) < 0)
            return -1;
    }
    buf_consume(&d->pend, off);
    return 0;
}

int sm_drop_content(struct sm_drop *d, const void *p, size_t n)
{
    d->size += n;
    if (d->max > 0 && d->size > (uint64_t)d->max)
        return -1;
    buf_append(&d->pend, p, n);
    return d->pend.len >= MD_REC_MAX ? drop_records(d, 0) : 0;
}

int sm_drop_end(struct sm_drop *d, int abort_)
{
    if (!abort_ && drop_records(d, 1) == 0) {
        char num[24];
        snprintf(num, sizeof(num), "%llu", (unsigned long long)d->size);
        md_put_str(&d->out, MD_END, num);
        drop_flush(d);
    }
    close(d->fd);               /* without END postdrop discards its file */
    int status = 0, rc;
    while (waitpid(d->pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status))
        rc = WEXITSTATUS(status);
    else
        rc = EX_TEMPFAIL;
    if (rc == 0 && (abort_ || d->broken))
        rc = EX_TEMPFAIL;
    buf_free(&d->out);
    buf_free(&d->pend);
    free(d);
    return rc;
}

/* ---- reading the message ------------------------------------------------ */

int sm_next_line(struct sm_in *in, buf_t *line)
{
    buf_reset(line);
    if (in->ended)
        return 0;
    char *nl;
    while ((nl = memchr(in->buf.data + in->pos, '\n', in->buf.len - in->pos)) == NULL &&
           !in->eof) {
        if (in->buf.len - in->pos > in->max)
            return -1;
        buf_consume(&in->buf, in->pos);     /* once per read, not once per line */
        in->pos = 0;
        buf_reserve(&in->buf, 65536);
        ssize_t n = read(STDIN_FILENO, in->buf.data + in->buf.len, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            in->eof = 1;
        else
            in->buf.len += (size_t)n;
    }
    const char *start = in->buf.data + in->pos;
    size_t take = nl ? (size_t)(nl - start) + 1 : in->buf.len - in->pos;
    if (take == 0) {
        in->ended = 1;
        return 0;
    }
    size_t n = nl ? take - 1 : take;
    if (n > 0 && nl && start[n - 1] == '\r')
        n--;
    buf_append(line, start, n);
    in->pos += take;
    if ((!in->dots_ok || in->smtp) && n == 1 && line->data[0] == '.') {
        in->ended = in->dot = 1;
        return 0;
    }
    if (in->smtp && n > 0 && line->data[0] == '.')
        buf_consume(line, 1);       /* SMTP dot-stuffing */
    buf_append_char(line, '\n');
    return 1;
}

/* A header field's first line: name (printable, no blank) and a colon. */
static int is_field(const buf_t *l)
{
    size_t i = 0;
    while (i < l->len && l->data[i] > 32 && l->data[i] < 127 && l->data[i] != ':')
        i++;
    while (i > 0 && i < l->len && (l->data[i] == ' ' || l->data[i] == '\t'))
        i++;
    return i > 0 && i < l->len && l->data[i] == ':';
}

/* The header section into hdr; *first_body = the first body line (blank
 * separator consumed) when there is one. 0, or a sysexits code. */
static int read_header(struct sm_in *in, buf_t *hdr, buf_t *first_body, int *has_body)
{
    buf_t line;
    buf_init(&line, 256);
    int rc, first = 1;
    *has_body = 0;
    while ((rc = sm_next_line(in, &line)) == 1) {
        if (first && line.len >= 5 && memcmp(line.data, "From ", 5) == 0) {
            first = 0;
            continue;                /* an mbox separator, not a field */
        }
        first = 0;
        int cont = (line.data[0] == ' ' || line.data[0] == '\t') && hdr->len > 0;
        if (!cont && !is_field(&line)) {
            *has_body = 1;
            if (!(line.len == 1 && line.data[0] == '\n'))
                buf_set(first_body, line.data, line.len);
            break;
        }
        buf_append(hdr, line.data, line.len);
        if (hdr->len > SM_HDR_MAX) {
            buf_free(&line);
            sm_err("the header section is longer than %d bytes", SM_HDR_MAX);
            return EX_DATAERR;
        }
    }
    buf_free(&line);
    if (rc < 0) {
        sm_err("message too big (limits.message_size)");
        return EX_DATAERR;
    }
    return 0;
}

/* "From: Full Name <addr>" (the name quoted when it needs it). */
static void from_line(buf_t *out, const char *name, const char *sender)
{
    buf_append_str(out, "From: ");
    if (name && *name) {
        buf_append_char(out, '"');
        for (const char *p = name; *p; p++) {
            if ((unsigned char)*p < 32 || *p == 127)
                continue;
            if (*p == '"' || *p == '\\')
                buf_append_char(out, '\\');
            buf_append_char(out, *p);
        }
        buf_append_str(out, "\" <");
        buf_append_str(out, sender);
        buf_append_char(out, '>');
    } else {
        buf_append_str(out, sender);
    }
}

/* The caller's login (from the uid, never the environment) and full name. */
static void caller(char *login, size_t lsize, char *gecos, size_t gsize)
{
    struct passwd *pw = getpwuid(getuid());
    if (pw && pw->pw_name[0]) {
        str_copy(login, lsize, pw->pw_name);
        str_copy(gecos, gsize, pw->pw_gecos ? pw->pw_gecos : "");
        gecos[strcspn(gecos, ",")] = '\0';
    } else {
        snprintf(login, lsize, "uid%lu", (unsigned long)getuid());
        gecos[0] = '\0';
    }
}

const char *sm_origin(const struct config *cfg)
{
    if (config_is_local_domain(cfg, cfg->hostname))
        return cfg->hostname;
    const char *lh = NULL;
    for (int i = 0; i < cfg->local_domains.n; i++) {
        if (strcasecmp(cfg->local_domains.v[i], "localhost") != 0)
            return cfg->local_domains.v[i];
        lh = cfg->local_domains.v[i];
    }
    return lh ? lh : cfg->hostname;
}

/* Envelope sender: -f (any "<...>" form; "<>" is the null sender), else
 * login@hostname. -1 when -f is no address. */
static int envelope_sender(const struct config *cfg, const char *from, const char *login,
                           char **out)
{
    if (from == NULL) {
        buf_t b;
        buf_init(&b, 64);
        buf_printf(&b, "%s@%s", login, sm_origin(cfg));
        *out = buf_steal(&b);
        buf_free(&b);
        return 0;
    }
    if (strcmp(from, "<>") == 0 || from[0] == '\0') {
        *out = xstrdup("");
        return 0;
    }
    *out = sm_qualify(from, sm_origin(cfg));
    return *out ? 0 : -1;
}

/* Qualify and check every recipient; 0 or EX_DATAERR (message printed). */
static int qualify_all(const struct config *cfg, const struct sm_list *in, struct sm_list *out)
{
    const char *origin = sm_origin(cfg);
    for (int i = 0; i < in->n; i++) {
        char *a = sm_qualify(in->v[i], origin);
        if (a == NULL) {
            sm_err("bad recipient address: %s", in->v[i]);
            return EX_DATAERR;
        }
        sm_list_add(out, a, strlen(a));
        free(a);
    }
    return 0;
}

/* Stream the rest of the message after the header section. */
static int send_body(struct sm_in *in, struct sm_drop *d, const buf_t *first)
{
    if (first->len && sm_drop_content(d, first->data, first->len) < 0)
        return -1;
    buf_t line;
    buf_init(&line, 256);
    int rc;
    while ((rc = sm_next_line(in, &line)) == 1)
        if (sm_drop_content(d, line.data, line.len) < 0) {
            rc = -1;
            break;
        }
    buf_free(&line);
    return rc;
}

int sm_submit(const struct config *cfg, struct sm_in *in, const struct sm_msg *m)
{
    struct sm_msg q = *m;           /* with the recipients qualified */
    q.rcpts = (struct sm_list){ 0 };
    struct sm_list raw = { 0 };
    for (int i = 0; i < m->rcpts.n; i++)
        sm_list_add(&raw, m->rcpts.v[i], strlen(m->rcpts.v[i]));
    buf_t hdr, first, nhdr, from;
    buf_init(&hdr, 4096);
    buf_init(&first, 256);
    buf_init(&nhdr, 4096);
    buf_init(&from, 256);
    int has_body = 0;
    int rc = read_header(in, &hdr, &first, &has_body);
    if (rc == 0) {
        from_line(&from, m->fullname, m->sender);
        sm_headers(hdr.data, hdr.len, m->extract, *m->sender ? from.data : NULL, &nhdr, &raw);
        if (has_body)
            buf_append_char(&nhdr, '\n');
        rc = qualify_all(cfg, &raw, &q.rcpts);
    }
    if (rc == 0 && q.rcpts.n == 0) {
        sm_err(m->extract ? "no recipient addresses found in the message header" :
               "no recipients specified");
        rc = m->extract ? EX_DATAERR : EX_USAGE;
    }
    struct sm_drop *d = rc == 0 ? sm_drop_begin(cfg, &q) : NULL;
    if (rc == 0 && d == NULL)
        rc = EX_UNAVAILABLE;
    if (d) {
        int bad = sm_drop_content(d, nhdr.data, nhdr.len) < 0 ||
                  (has_body && send_body(in, d, &first) < 0);
        int too_big = bad && !d->broken;
        rc = sm_drop_end(d, bad);
        if (too_big) {
            sm_err("message too big (limits.message_size is %lld bytes)",
                   (long long)cfg->message_size);
            rc = EX_DATAERR;
        } else if (rc != 0) {
            sm_err("the message was not queued (postdrop exit status %d)", rc);
        } else if (m->verbose) {
            fprintf(stderr, "sendmail: queued for %d recipient(s) in %s/maildrop\n",
                    q.rcpts.n, cfg->spool);
        }
    }
    sm_list_free(&raw);
    sm_list_free(&q.rcpts);
    buf_free(&hdr);
    buf_free(&first);
    buf_free(&nhdr);
    buf_free(&from);
    return rc;
}

/* -bm / -t: read the message from stdin, submit it. */
static int submit(const struct config *cfg, const struct sm_opts *o)
{
    char login[256], gecos[256];
    caller(login, sizeof(login), gecos, sizeof(gecos));
    struct sm_msg m = { .notify = o->notify, .ret = o->ret, .body_8bit = o->body_8bit,
                        .fullname = o->fullname ? o->fullname : gecos,
                        .extract = o->extract, .verbose = o->verbose };
    char *sender = NULL;
    if (envelope_sender(cfg, o->from, login, &sender) < 0) {
        sm_err("bad sender address: %s", o->from);
        return EX_USAGE;
    }
    m.sender = sender;
    for (int i = 0; i < o->nrcpts; i++)
        sm_list_add(&m.rcpts, o->rcpts[i], strlen(o->rcpts[i]));
    struct sm_in in = { .max = cfg->message_size > 0 ? (size_t)cfg->message_size + 2 :
                               (size_t)1 << 30, .dots_ok = o->dots_ok };
    buf_init(&in.buf, 65536);
    int rc = sm_submit(cfg, &in, &m);
    free(sender);
    sm_list_free(&m.rcpts);
    buf_free(&in.buf);
    return rc;
}

/* -q: ask qmgr to retry the deferred mail now (root only: qmgr's socket is
 * the postern user's). */
static int sm_flush(const char *config_path)
{
    if (getuid() != 0) {
        sm_err("-q: only root can flush the queue (it is 'postern queue flush')");
        return EX_NOPERM;
    }
    struct cli c = { config_path };
    char *argv[] = { "queue", "flush", NULL };
    return cli_queue(&c, 2, argv) == 0 ? 0 : EX_UNAVAILABLE;
}

int cli_sendmail(int argc, char **argv)
{
    struct sm_opts o;
    char err[256];
    signal(SIGPIPE, SIG_IGN);      /* a dead postdrop is an error return */
    if (sm_parse_args(argc, argv, &o, err, sizeof(err)) != 0) {
        sm_err("%s", err);
        fputs("usage: sendmail [-t] [-i] [-f FROM] [-F NAME] [-bs|-bp|-bi|-bv|-q] [-v] "
              "[-N DSN] [-R RET] [-B TYPE] [-C CONFIG] [RCPT...]\n", stderr);
        return EX_USAGE;
    }
    const char *path = config_default_path(o.config);
    if (o.mode == SM_QUEUE_LIST) {
        struct cli c = { path };
        return cli_mailq(&c, 0, NULL) == 0 ? 0 : EX_UNAVAILABLE;
    }
    if (o.mode == SM_FLUSH)
        return sm_flush(path);
    struct config *cfg = cli_load_config(path);
    if (cfg == NULL)
        return EX_CONFIG;
    int rc;
    char login[256], gecos[256];
    switch (o.mode) {
    case SM_ALIASES:
        rc = cli_aliases_build(cfg) == 0 ? 0 : EX_DATAERR;   /* newaliases, -bi */
        break;
    case SM_SMTP:
        caller(login, sizeof(login), gecos, sizeof(gecos));
        rc = sm_smtp(cfg, &o, login);
        break;
    case SM_VERIFY: {
        struct sm_list raw = { 0 };
        for (int i = 0; i < o.nrcpts; i++)
            sm_list_add(&raw, o.rcpts[i], strlen(o.rcpts[i]));
        rc = raw.n ? sm_verify(cfg, &raw) : EX_USAGE;
        if (raw.n == 0)
            sm_err("-bv: no recipients specified");
        sm_list_free(&raw);
        break;
    }
    default:
        rc = submit(cfg, &o);
        break;
    }
    config_free(cfg);
    return rc;
}
