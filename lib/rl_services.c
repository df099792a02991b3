/*
 * rl_services.c - services: named backends the rules call, behind one
 * interface (struct rl_svc_ops: open/close, lookup/insert for tables,
 * exec for programs and delegation) so SQL/Redis backends plug in by adding
 * one ops table and its options. Every call is tri-state: found / not found
 * / temporary failure, and a temporary failure ends the evaluation with
 * V_TEMPFAIL (a 4xx), never an accept or a 5xx by accident.
 *   csv  - key[,value] lines; lookup/contains/insert; insert rewrites the
 *          file atomically (temp file, fsync, rename); reloaded on change.
 *   cmd  - runs a program (no shell) with fixed + per-call arguments, the
 *          message on stdin when there is one, a timeout, as an unprivileged
 *          user when started as root; output captured, exit status returned.
 *   smtp - delegates the message to another SMTP server (MAIL, RCPT..., DATA)
 *          and returns its final reply code (text via .reply()).
 * Each service locks itself: one program may be used from several threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "qfile.h"
#include "rl_int.h"

enum { SVC_NOTFOUND = 0, SVC_FOUND = 1, SVC_TEMPFAIL = -1 };
#define OUT_MAX (64 * 1024)

struct rl_service;
struct rl_svc_ops {
    enum rl_svc_kind kind;
    const char *name;
    int  (*open)(struct rl_service *s, const char **opt, const struct rl_value *val, int nopt,
                 char *err, size_t errlen);
    void (*close)(struct rl_service *s);
    int  (*lookup)(struct rl_service *s, const char *key, buf_t *value);
    int  (*insert)(struct rl_service *s, const char *key, const char *value);
    /* programs and delegation: *status_r = exit status / reply code */
    int  (*exec)(struct rl_service *s, struct rl_vm *vm, const char **args, int nargs, buf_t *out,
                 int *status_r);
};

struct rl_service {
    const struct rl_svc_ops *ops;
    char *name;
    char *basedir;
    int index;
    pthread_mutex_t mu;
    /* csv */
    char *path;
    char **keys, **vals; size_t n, cap;
    struct timespec mtime; off_t size; ino_t ino; int loaded;
    /* cmd */
    char **argv; int argc;
    long timeout;
    char *user;
    /* smtp */
    char *address, *helo;
};

const struct rl_svc_option rl_svc_options[] = {
    { SVC_CSV, "path", T_STRING, 1 },
    { SVC_CMD, "path", T_STRING, 1 }, { SVC_CMD, "args", T_LIST, 0 },
    { SVC_CMD, "timeout", T_INT, 0 }, { SVC_CMD, "user", T_STRING, 0 },
    { SVC_SMTP, "address", T_STRING, 1 }, { SVC_SMTP, "timeout", T_INT, 0 },
    { SVC_SMTP, "helo", T_STRING, 0 },
};
const int rl_nsvc_options = (int)(sizeof(rl_svc_options) / sizeof(rl_svc_options[0]));

static const char *opt_str(const char **opt, const struct rl_value *val, int nopt, const char *name,
                           const char *def)
{
    for (int i = 0; i < nopt; i++)
        if (strcmp(opt[i], name) == 0 && val[i].t != T_INT)
            return val[i].u.s;
    return def;
}

static long opt_int(const char **opt, const struct rl_value *val, int nopt, const char *name, long def)
{
    for (int i = 0; i < nopt; i++)
        if (strcmp(opt[i], name) == 0 && val[i].t == T_INT)
            return (long)val[i].u.i;
    return def;
}

static char *resolve(const struct rl_service *s, const char *p)
{
    buf_t b;
    buf_init(&b, 128);
    if (p[0] != '/')
        buf_printf(&b, "%s/", s->basedir);
    buf_append_str(&b, p);
    char *r = buf_steal(&b);
    buf_free(&b);
    return r;
}

/* ---- csv ------------------------------------------------------------------------------------------ */
static void csv_clear(struct rl_service *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->keys[i]);
        free(s->vals[i]);
    }
    s->n = 0;
}

/* One CSV field (RFC 4180 quoting) from *pp; advances past the comma. */
static char *csv_field(const char **pp)
{
    const char *p = *pp;
    buf_t b;
    buf_init(&b, 32);
    if (*p == '"') {
        p++;
        while (*p) {
            if (*p == '"' && p[1] == '"') {
                buf_append_char(&b, '"');
                p += 2;
            } else if (*p == '"') {
                p++;
                break;
            } else {
                buf_append_char(&b, *p++);
            }
        }
        while (*p && *p != ',')
            p++;
    } else {
        while (*p && *p != ',')
            buf_append_char(&b, *p++);
    }
    if (*p == ',')
        p++;
    *pp = p;
    char *r = buf_steal(&b);
    buf_free(&b);
    return r;
}

static void csv_put(buf_t *b, const char *f)
{
    if (strpbrk(f, ",\"\n\r#") == NULL && *f != ' ') {
        buf_append_str(b, f);
        return;
    }
    buf_append_char(b, '"');
    for (; *f; f++) {
        if (*f == '"')
            buf_append_char(b, '"');
        buf_append_char(b, (*f == '\n' || *f == '\r') ? ' ' : *f);
    }
    buf_append_char(b, '"');
}

static void csv_add(struct rl_service *s, char *k, char *v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->keys = xrealloc(s->keys, sizeof(char *) * s->cap);
        s->vals = xrealloc(s->vals, sizeof(char *) * s->cap);
    }
    s->keys[s->n] = k;
    s->vals[s->n] = v;
    s->n++;
}

/* With s->mu held: (re)read the file when it changed. -1 = temporary failure. */
static int csv_refresh(struct rl_service *s)
{
    struct stat st;
    if (stat(s->path, &st) < 0) {
        if (errno != ENOENT) {
            log_warn("rules: service %s: %s: %s", s->name, s->path, strerror(errno));
            return -1;
        }
        csv_clear(s);           /* created by the first insert */
        s->loaded = 1;
        memset(&s->mtime, 0, sizeof(s->mtime));
        return 0;
    }
    if (s->loaded && st.st_mtim.tv_sec == s->mtime.tv_sec && st.st_mtim.tv_nsec == s->mtime.tv_nsec &&
        st.st_size == s->size && st.st_ino == s->ino)
        return 0;
    FILE *fp = fopen(s->path, "r");
    if (fp == NULL) {
        log_warn("rules: service %s: %s: %s", s->name, s->path, strerror(errno));
        return -1;
    }
    csv_clear(s);
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, fp)) >= 0) {
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r'))
            line[--r] = '\0';
        if (r == 0 || line[0] == '#')
            continue;
        const char *p = line;
        char *k = csv_field(&p);
        char *v = *p || (p > line && p[-1] == ',') ? csv_field(&p) : xstrdup("");
        csv_add(s, k, v);
    }
    free(line);
    fclose(fp);
    s->mtime = st.st_mtim;
    s->size = st.st_size;
    s->ino = st.st_ino;
    s->loaded = 1;
    return 0;
}

static long csv_find(const struct rl_service *s, const char *key)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcasecmp(s->keys[i], key) == 0)
            return (long)i;
    return -1;
}

static int csv_open(struct rl_service *s, const char **opt, const struct rl_value *val, int nopt,
                    char *err, size_t errlen)
{
    s->path = resolve(s, opt_str(opt, val, nopt, "path", ""));
    return 0;
}

static void csv_close(struct rl_service *s)
{
    csv_clear(s);
    free(s->keys);
    free(s->vals);
}

static int csv_lookup(struct rl_service *s, const char *key, buf_t *value)
{
    pthread_mutex_lock(&s->mu);
    int rc = SVC_TEMPFAIL;
    if (csv_refresh(s) == 0) {
        long i = csv_find(s, key);
        rc = i >= 0 ? SVC_FOUND : SVC_NOTFOUND;
        if (i >= 0 && value)
            buf_set(value, s->vals[i], strlen(s->vals[i]));
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* Write every row to PATH.tmp.PID, fsync, rename over PATH: readers see
 * the old or the new file, never half of one. */
static int csv_write(struct rl_service *s)
{
    buf_t b, tmp;
    buf_init(&b, 4096);
    buf_init(&tmp, 128);
    for (size_t i = 0; i < s->n; i++) {
        csv_put(&b, s->keys[i]);
        buf_append_char(&b, ',');
        csv_put(&b, s->vals[i]);
        buf_append_char(&b, '\n');
    }
    buf_printf(&tmp, "%s.tmp.%ld", s->path, (long)getpid());
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = -1;
    if (fd >= 0) {
        size_t off = 0;
        while (off < b.len) {
            ssize_t w = write(fd, b.data + off, b.len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        if (off == b.len && fsync(fd) == 0 && close(fd) == 0) {
            fd = -1;
            rc = rename(tmp.data, s->path);
        }
        if (fd >= 0)
            close(fd);
        if (rc < 0)
            unlink(tmp.data);
    }
    if (rc < 0)
        log_warn("rules: service %s: cannot rewrite %s: %s", s->name, s->path, strerror(errno));
    struct stat st;
    if (rc == 0 && stat(s->path, &st) == 0) {
        s->mtime = st.st_mtim;
        s->size = st.st_size;
        s->ino = st.st_ino;
    }
    buf_free(&b);
    buf_free(&tmp);
    return rc;
}

static int csv_insert(struct rl_service *s, const char *key, const char *value)
{
    pthread_mutex_lock(&s->mu);
    int rc = SVC_TEMPFAIL;
    if (csv_refresh(s) == 0) {
        long i = csv_find(s, key);
        if (i >= 0) {
            free(s->vals[i]);
            s->vals[i] = xstrdup(value);
        } else {
            csv_add(s, xstrdup(key), xstrdup(value));
        }
        rc = csv_write(s) == 0 ? SVC_FOUND : SVC_TEMPFAIL;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- the message content (cmd stdin, smtp DATA) ---------------------------------------------------- */
struct content { int fd; off_t off; uint64_t len; };

static int content_open(struct rl_vm *vm, struct content *c)
{
    c->fd = -1;
    c->len = 0;
    const char *path = vm->txn->f[RL_MSG_PATH];
    if (*path == '\0')
        return 0;
    struct qf_env env;
    char err[128];
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0 || qf_read(c->fd, &env, err, sizeof(err)) < 0) {
        log_warn("rules: cannot read message %s", path);
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->off = env.content_off;
    c->len = env.content_len;
    qf_env_free(&env);
    return 0;
}

/* ---- cmd ---------------------------------------------------------------------------------------------- */
static int cmd_open(struct rl_service *s, const char **opt, const struct rl_value *val, int nopt,
                    char *err, size_t errlen)
{
    const char *path = opt_str(opt, val, nopt, "path", "");
    if (path[0] != '/') {
        snprintf(err, errlen, "cmd service %s: path must be absolute", s->name);
        return -1;
    }
    const struct rl_list *args = NULL;
    for (int i = 0; i < nopt; i++)
        if (strcmp(opt[i], "args") == 0)
            args = val[i].u.p;
    s->argc = 1 + (args ? (int)args->n : 0);
    s->argv = xcalloc((size_t)s->argc + 1, sizeof(char *));
    s->argv[0] = xstrdup(path);
    for (int i = 1; i < s->argc; i++)
        s->argv[i] = xstrndup(args->v[i - 1].u.s, args->v[i - 1].len);
    s->timeout = opt_int(opt, val, nopt, "timeout", 10);
    if (s->timeout <= 0 || s->timeout > 3600) {
        snprintf(err, errlen, "cmd service %s: timeout must be between 1s and 1h", s->name);
        return -1;
    }
    s->user = xstrdup(opt_str(opt, val, nopt, "user", "nobody"));
    return 0;
}

static void cmd_close(struct rl_service *s)
{
    for (int i = 0; i < s->argc; i++)
        free(s->argv[i]);
    free(s->argv);
    free(s->user);
}

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

static void child_exec(struct rl_service *s, const char **argv, int in_fd, int out_fd,
                       const struct passwd *pw)
{
    setpgid(0, 0);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(126);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    if (getuid() == 0 || geteuid() == 0) {
        if (pw == NULL || setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
            _exit(126);
        if (setuid(0) == 0)
            _exit(126);     /* must not be able to regain root */
    }
    char *const envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", NULL };
    execve(argv[0], (char *const *)argv, envp);
    _exit(127);
}

static int cmd_exec(struct rl_service *s, struct rl_vm *vm, const char **extra, int nextra, buf_t *out,
                    int *status_r)
{
    struct content c;
    if (content_open(vm, &c) < 0)
        return SVC_TEMPFAIL;
    const char **argv = xcalloc((size_t)(s->argc + nextra + 1), sizeof(char *));
    for (int i = 0; i < s->argc; i++)
        argv[i] = s->argv[i];
    for (int i = 0; i < nextra; i++)
        argv[s->argc + i] = extra[i];
    struct passwd *pw = (getuid() == 0 || geteuid() == 0) ? getpwnam(s->user) : NULL;
    int inp[2], outp[2];
    if (pipe2(inp, O_CLOEXEC) < 0) {
        free(argv);
        if (c.fd >= 0)
            close(c.fd);
        return SVC_TEMPFAIL;
    }
    if (pipe2(outp, O_CLOEXEC) < 0) {
        close(inp[0]);
        close(inp[1]);
        free(argv);
        if (c.fd >= 0)
            close(c.fd);
        return SVC_TEMPFAIL;
    }
    pid_t pid = fork();
    if (pid == 0)
        child_exec(s, argv, inp[0], outp[1], pw);
    free(argv);
    close(inp[0]);
    close(outp[1]);
    if (pid < 0) {
        close(inp[1]);
        close(outp[0]);
        if (c.fd >= 0)
            close(c.fd);
        return SVC_TEMPFAIL;
    }
    fcntl(inp[1], F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    int wfd = inp[1];
    if (c.fd < 0 || c.len == 0) {
        close(wfd);
        wfd = -1;
    }
    uint64_t sent = 0;
    char chunk[16384];
    size_t clen = 0, cpos = 0;
    long deadline = now_ms() + s->timeout * 1000L;
    int timed_out = 0;
    buf_reset(out);
    for (;;) {
        struct pollfd pf[2] = { { outp[0], POLLIN, 0 }, { wfd, POLLOUT, 0 } };
        long left = deadline - now_ms();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        int n = poll(pf, wfd >= 0 ? 2 : 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (wfd >= 0 && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            if (cpos == clen) {
                size_t want = c.len - sent > sizeof(chunk) ? sizeof(chunk) : (size_t)(c.len - sent);
                ssize_t r = pread(c.fd, chunk, want, c.off + (off_t)sent);
                clen = r > 0 ? (size_t)r : 0;
                cpos = 0;
                sent += clen;
            }
            ssize_t w = clen > cpos ? write(wfd, chunk + cpos, clen - cpos) : 0;
            if (w > 0)
                cpos += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                cpos = clen, sent = c.len;      /* child stopped reading */
            if (cpos == clen && sent >= c.len) {
                close(wfd);
                wfd = -1;
            }
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char rb[4096];
            ssize_t r = read(outp[0], rb, sizeof(rb));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            if (out->len < OUT_MAX)
                buf_append(out, rb, out->len + (size_t)r > OUT_MAX ? OUT_MAX - out->len : (size_t)r);
        }
    }
    if (wfd >= 0)
        close(wfd);
    close(outp[0]);
    if (c.fd >= 0)
        close(c.fd);
    int st = 0;
    if (timed_out)
        kill(-pid, SIGKILL);
    while (!timed_out) {
        long left = deadline - now_ms();
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (left <= 0) {
            timed_out = 1;
            kill(-pid, SIGKILL);
            break;
        }
        usleep(2000);
    }
    if (timed_out) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        log_warn("rules: service %s: %s timed out after %lds", s->name, s->argv[0], s->timeout);
        return SVC_TEMPFAIL;
    }
    while (out->len && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r'))
        buf_truncate(out, out->len - 1);
    if (!WIFEXITED(st)) {
        log_warn("rules: service %s: %s killed by signal %d", s->name, s->argv[0], WTERMSIG(st));
        return SVC_TEMPFAIL;
    }
    if (WEXITSTATUS(st) == 126 || WEXITSTATUS(st) == 127)
        log_warn("rules: service %s: cannot run %s (exit %d)", s->name, s->argv[0], WEXITSTATUS(st));
    *status_r = WEXITSTATUS(st);
    return SVC_FOUND;
}

/* ---- smtp ------------------------------------------------------------------------------------------- */
static int smtp_open(struct rl_service *s, const char **opt, const struct rl_value *val, int nopt,
                     char *err, size_t errlen)
{
    s->address = xstrdup(opt_str(opt, val, nopt, "address", ""));
    if (config_parse_address(s->address, NULL, NULL) < 0) {
        snprintf(err, errlen, "smtp service %s: invalid address \"%s\" (want host:port with a literal "
                 "IP)", s->name, s->address);
        return -1;
    }
    s->timeout = opt_int(opt, val, nopt, "timeout", 60);
    if (s->timeout <= 0 || s->timeout > 3600) {
        snprintf(err, errlen, "smtp service %s: timeout must be between 1s and 1h", s->name);
        return -1;
    }
    s->helo = xstrdup(opt_str(opt, val, nopt, "helo", "localhost"));
    return 0;
}

static void smtp_close(struct rl_service *s)
{
    free(s->address);
    free(s->helo);
}

struct sconn { int fd; buf_t in; };

static int s_send(struct sconn *c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read one (multi-line) reply; code or -1. Text of the last line into text. */
static int s_reply(struct sconn *c, buf_t *text)
{
    for (int lines = 0; lines < 100;) {
        char *nl = memchr(c->in.data, '\n', c->in.len);
        if (nl == NULL) {
            if (c->in.len > 4096)
                return -1;
            char b[1024];
            ssize_t r = recv(c->fd, b, sizeof(b), 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return -1;
            buf_append(&c->in, b, (size_t)r);
            continue;
        }
        size_t ll = (size_t)(nl - c->in.data);
        if (ll < 3)
            return -1;
        int code = (c->in.data[0] - '0') * 100 + (c->in.data[1] - '0') * 10 + (c->in.data[2] - '0');
        int last = ll == 3 || c->in.data[3] != '-';
        size_t tl = ll > 4 ? ll - 4 : 0;
        if (tl && c->in.data[ll - 1] == '\r')
            tl--;
        buf_reset(text);
        buf_printf(text, "%d ", code);
        buf_append_printable(text, c->in.data + 4 > nl ? nl : c->in.data + 4, tl);
        buf_consume(&c->in, ll + 1);
        lines++;
        if (code < 200 || code > 599)
            return -1;
        if (last)
            return code;
    }
    return -1;
}

static int s_cmd(struct sconn *c, buf_t *text, const char *fmt, const char *arg)
{
    buf_t b;
    buf_init(&b, 128);
    buf_printf(&b, fmt, arg);
    int rc = s_send(c, b.data, b.len);
    buf_free(&b);
    return rc < 0 ? -1 : s_reply(c, text);
}

static int smtp_exec(struct rl_service *s, struct rl_vm *vm, const char **args, int nargs, buf_t *out,
                     int *status_r)
{
    struct content ct;
    if (content_open(vm, &ct) < 0)
        return SVC_TEMPFAIL;
    struct sockaddr_storage ss;
    socklen_t sl;
    config_parse_address(s->address, &ss, &sl);
    struct sconn c = { .fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0) };
    buf_init(&c.in, 1024);
    struct timeval tv = { .tv_sec = s->timeout };
    int code = -1;
    if (c.fd < 0)
        goto done;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(c.fd, (struct sockaddr *)&ss, sl) < 0)
        goto done;
    if ((code = s_reply(&c, out)) != 220)
        goto done;
    if ((code = s_cmd(&c, out, "EHLO %s\r\n", s->helo)) != 250 &&
        (code = s_cmd(&c, out, "HELO %s\r\n", s->helo)) != 250)
        goto done;
    if ((code = s_cmd(&c, out, "MAIL FROM:<%s>\r\n", vm->txn->f[RL_MAIL_FROM])) != 250)
        goto done;
    int accepted = 0;
    for (int i = 0; i < vm->txn->nrcpts; i++) {
        code = s_cmd(&c, out, "RCPT TO:<%s>\r\n", vm->txn->rcpts[i]);
        if (code >= 400)
            goto done;
        accepted++;
    }
    if (accepted == 0)
        goto done;
    if ((code = s_cmd(&c, out, "%s", "DATA\r\n")) != 354)
        goto done;
    /* content: LF -> CRLF, dot-stuffed */
    buf_t o;
    buf_init(&o, 16384);
    int bol = 1;
    char chunk[8192];
    for (uint64_t off = 0; off < ct.len;) {
        size_t want = ct.len - off > sizeof(chunk) ? sizeof(chunk) : (size_t)(ct.len - off);
        ssize_t r = pread(ct.fd, chunk, want, ct.off + (off_t)off);
        if (r <= 0)
            break;
        off += (uint64_t)r;
        for (ssize_t i = 0; i < r; i++) {
            if (bol && chunk[i] == '.')
                buf_append_char(&o, '.');
            if (chunk[i] == '\n')
                buf_append_char(&o, '\r');
            buf_append_char(&o, chunk[i]);
            bol = chunk[i] == '\n';
        }
        if (o.len > 8192) {
            if (s_send(&c, o.data, o.len) < 0) {
                buf_free(&o);
                code = -1;
                goto done;
            }
            buf_reset(&o);
        }
    }
    buf_append_str(&o, bol ? ".\r\n" : "\r\n.\r\n");
    code = s_send(&c, o.data, o.len) < 0 ? -1 : s_reply(&c, out);
    buf_free(&o);
    if (code > 0) {
        buf_t q;
        buf_init(&q, 64);
        s_cmd(&c, &q, "%s", "QUIT\r\n");
        buf_free(&q);
    }
done:
    if (c.fd >= 0)
        close(c.fd);
    if (ct.fd >= 0)
        close(ct.fd);
    buf_free(&c.in);
    (void)args;
    (void)nargs;
    if (code < 0) {
        log_warn("rules: service %s: delegation to %s failed: %s", s->name, s->address,
                 out->len ? out->data : "no reply");
        return SVC_TEMPFAIL;
    }
    *status_r = code;
    return SVC_FOUND;
}

static const struct rl_svc_ops svc_ops[] = {
    { SVC_CSV, "csv", csv_open, csv_close, csv_lookup, csv_insert, NULL },
    { SVC_CMD, "cmd", cmd_open, cmd_close, NULL, NULL, cmd_exec },
    { SVC_SMTP, "smtp", smtp_open, smtp_close, NULL, NULL, smtp_exec },
};

const char *rl_svc_kind_name(enum rl_svc_kind k)
{
    for (size_t i = 0; i < sizeof(svc_ops) / sizeof(svc_ops[0]); i++)
        if (svc_ops[i].kind == k)
            return svc_ops[i].name;
    return "?";
}

int rl_svc_kind_parse(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof(svc_ops) / sizeof(svc_ops[0]); i++)
        if (strlen(svc_ops[i].name) == n && memcmp(svc_ops[i].name, s, n) == 0)
            return svc_ops[i].kind;
    return 0;
}

struct rl_service *rl_service_new(enum rl_svc_kind k, const char *name, const char *basedir,
                                  const char **opt, const struct rl_value *val, int nopt,
                                  char *err, size_t errlen)
{
    const struct rl_svc_ops *ops = NULL;
    for (size_t i = 0; i < sizeof(svc_ops) / sizeof(svc_ops[0]); i++)
        if (svc_ops[i].kind == k)
            ops = &svc_ops[i];
    if (ops == NULL) {
        snprintf(err, errlen, "unknown service kind");
        return NULL;
    }
    struct rl_service *s = xcalloc(1, sizeof(*s));
    s->ops = ops;
    s->name = xstrdup(name);
    s->basedir = xstrdup(basedir);
    pthread_mutex_init(&s->mu, NULL);
    if (ops->open(s, opt, val, nopt, err, errlen) < 0) {
        rl_service_free(s);
        return NULL;
    }
    return s;
}

void rl_service_free(void *p)
{
    struct rl_service *s = p;
    if (s == NULL)
        return;
    s->ops->close(s);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s->name);
    free(s->basedir);
    free(s);
}

int rl_service_index(const struct rl_service *s) { return s->index; }
const char *rl_service_name(const struct rl_service *s) { return s->name; }
void rl_service_set_index(struct rl_service *s, int i) { s->index = i; }

/* ---- methods (the registry the checker and VM use) ------------------------------------------------ */
static const char *arg_text(struct rl_vm *vm, const struct rl_value *v)
{
    buf_reset(&vm->tmp);
    rl_value_str(v, &vm->tmp);
    for (size_t i = 0; i < vm->tmp.len; i++)
        if (vm->tmp.data[i] == '\0')
            vm->tmp.data[i] = ' ';
    return rl_vm_strdup(vm, vm->tmp.data, vm->tmp.len);
}

static int tempfail(struct rl_vm *vm, const struct rl_service *s, const char *what)
{
    rl_vm_fail(vm, V_TEMPFAIL, "service %s: %s failed temporarily", s->name, what);
    return -1;
}

static int m_contains(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    struct rl_service *s = (struct rl_service *)self;
    int rc = s->ops->lookup(s, arg_text(vm, &a[0]), NULL);
    if (rc == SVC_TEMPFAIL)
        return tempfail(vm, s, "lookup");
    out->t = T_BOOL;
    out->u.i = rc == SVC_FOUND;
    return 0;
}

static int m_lookup(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    struct rl_service *s = (struct rl_service *)self;
    buf_t v;
    buf_init(&v, 64);
    int rc = s->ops->lookup(s, arg_text(vm, &a[0]), &v);
    if (rc == SVC_TEMPFAIL) {
        buf_free(&v);
        return tempfail(vm, s, "lookup");
    }
    out->t = T_STRING;
    out->u.s = rl_vm_strdup(vm, v.data, v.len);
    out->len = (uint32_t)v.len;
    buf_free(&v);
    return 0;
}

static int m_insert(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    struct rl_service *s = (struct rl_service *)self;
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    const char *key = arg_text(vm, &a[0]);
    const char *val = n > 1 ? arg_text(vm, &a[1]) : now;
    if (s->ops->insert(s, key, val) == SVC_TEMPFAIL)
        return tempfail(vm, s, "insert");
    return 0;
}

static void keep_output(struct rl_vm *vm, const struct rl_service *s, const buf_t *o)
{
    if (vm->svc_out == NULL)
        vm->svc_out = xcalloc((size_t)vm->p->nsvcs, sizeof(char *));
    free(vm->svc_out[s->index]);
    vm->svc_out[s->index] = xstrndup(o->data, o->len);
}

static int m_exec(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    struct rl_service *s = (struct rl_service *)self;
    const char *args[RL_MAX_ARGS];
    for (int i = 0; i < n && i < RL_MAX_ARGS; i++)
        args[i] = arg_text(vm, &a[i]);
    buf_t o;
    buf_init(&o, 256);
    int st = 0;
    int rc = s->ops->exec(s, vm, args, n, &o, &st);
    keep_output(vm, s, &o);
    buf_free(&o);
    if (rc == SVC_TEMPFAIL)
        return tempfail(vm, s, s->ops->kind == SVC_SMTP ? "delegation" : "command");
    out->t = T_INT;
    out->u.i = st;
    return 0;
}

static int m_output(struct rl_vm *vm, struct rl_value *a, int n, struct rl_value *out, const void *self)
{
    const struct rl_service *s = self;
    const char *o = vm->svc_out && vm->svc_out[s->index] ? vm->svc_out[s->index] : "";
    out->t = T_STRING;
    out->u.s = o;
    out->len = (uint32_t)strlen(o);
    return 0;
}

#define S TY(T_STRING, 0)
const struct rl_svc_method rl_svc_methods[] = {
    { SVC_CSV, "contains", 1, 1, { S }, TY(T_BOOL, 0), STAGES_ALL, 1, m_contains },
    { SVC_CSV, "lookup", 1, 1, { S }, S, STAGES_ALL, 1, m_lookup },
    { SVC_CSV, "insert", 1, 2, { S, S }, TY(T_VOID, 0), STAGES_ALL, 1, m_insert },
    { SVC_CMD, "run", 0, RL_MAX_ARGS, { S, S, S, S }, TY(T_INT, 0), STAGES_ALL, 1, m_exec },
    { SVC_CMD, "output", 0, 0, { S }, S, STAGES_ALL, 0, m_output },
    { SVC_SMTP, "delegate", 0, 0, { S }, TY(T_INT, 0),
      STAGE_BIT(STAGE_DATA) | STAGE_BIT(STAGE_POSTQ), 1, m_exec },
    { SVC_SMTP, "reply", 0, 0, { S }, S, STAGES_ALL, 0, m_output },
};
const int rl_nsvc_methods = (int)(sizeof(rl_svc_methods) / sizeof(rl_svc_methods[0]));

int rl_svc_method_find(enum rl_svc_kind k, const char *name, size_t n)
{
    for (int i = 0; i < rl_nsvc_methods; i++)
        if (rl_svc_methods[i].kind == k && strlen(rl_svc_methods[i].name) == n &&
            memcmp(rl_svc_methods[i].name, name, n) == 0)
            return i;
    return -1;
}
