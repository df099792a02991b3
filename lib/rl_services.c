/*
 * rl_services.c - services: named backends the rules call, behind one
 * interface (struct rl_svc_ops: open/close, lookup/insert for tables,
 * exec for programs and delegation) so SQL/Redis backends plug in by adding
 * one ops table and its options. Every call is tri-state: found / not found
 * / temporary failure, and a temporary failure ends the evaluation with
 * V_TEMPFAIL (a 4xx), never an accept or a 5xx by accident.
 *   csv  - key[,value] lines; lookup/contains/insert. An insert appends one
 *          line (the last line of a key wins when the file is read); at
 *          max_entries keys the oldest tenth is evicted and the file is
 *          rewritten atomically (temp file, fsync, rename), as it is when
 *          superseded lines outnumber live ones: the file never holds more
 *          than about 2 x max_entries lines. Reloaded on change.
 *   cmd  - runs a program (no shell, fork + execve) with fixed + per-call
 *          arguments, the message on stdin when there is one, a timeout, a
 *          clean environment, signals at their defaults, only fds 0-2 open;
 *          output captured (64 KiB kept, the rest drained), exit status
 *          returned. A per-call argument (a value the rules computed, often
 *          from mail) that begins with '-' is never passed: the call fails
 *          temporarily, so a value from mail can never be read as an option
 *          (options belong in the service's fixed args).
 *   smtp - delegates the message to another SMTP server (MAIL, RCPT..., DATA)
 *          and returns its final reply code (text via .reply()).
 * Every blocking wait (a child's output and exit, a socket, a table's lock)
 * ends at the sooner of the service's timeout and the calling thread's
 * evaluation deadline (rl_set_deadline), so a slow backend never holds an
 * evaluation past it. Each service locks itself: one program may be used
 * from several threads.
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "log.h"
#include "qfile.h"
#include "rl_int.h"

enum { SVC_NOTFOUND = 0, SVC_FOUND = 1, SVC_TEMPFAIL = -1 };
#define OUT_MAX (64 * 1024)
#define CSV_MAX_ENTRIES_DEFAULT 10000
#define CSV_MAX_ENTRIES_MAX     10000000
#define CSV_FIELD_MAX           1000     /* octets of an inserted key or value */

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

/* One line of a csv file; key == NULL: superseded or evicted (the line is
 * still in the file until the next rewrite). */
struct csv_row { char *key, *val; uint32_t h; int32_t hnext; };

struct rl_service {
    const struct rl_svc_ops *ops;
    char *name;
    char *basedir;
    int index;
    pthread_mutex_t mu;
    /* csv: rows in file order, a chained hash over the live ones */
    char *path;
    struct csv_row *rows; size_t nrows, caprows, live;
    int32_t *bkt; size_t nbkt;
    long max_entries;
    int tail_nl;                 /* the file is empty or ends with a newline */
    struct timespec mtime; off_t size; ino_t ino; int loaded;
    /* cmd */
    char **argv; int argc;
    long timeout;
    /* smtp */
    char *address, *helo;
};

const struct rl_svc_option rl_svc_options[] = {
    { SVC_CSV, "path", T_STRING, 1, 0, 0, NULL },
    { SVC_CSV, "max_entries", T_INT, 0, 1, CSV_MAX_ENTRIES_MAX, NULL },
    { SVC_CMD, "path", T_STRING, 1, 0, 0, NULL },
    { SVC_CMD, "args", T_LIST, 0, 0, 0, NULL },
    { SVC_CMD, "timeout", T_INT, 0, 1, RL_SVC_TIMEOUT_MAX, NULL },
    { SVC_CMD, "user", T_STRING, 0, 0, 0,
      "commands run as the filter's own unprivileged user, never as another one" },
    { SVC_SMTP, "address", T_STRING, 1, 0, 0, NULL },
    { SVC_SMTP, "timeout", T_INT, 0, 1, RL_SVC_TIMEOUT_MAX, NULL },
    { SVC_SMTP, "helo", T_STRING, 0, 0, 0, NULL },
};
const int rl_nsvc_options = (int)(sizeof(rl_svc_options) / sizeof(rl_svc_options[0]));

/* ---- deadlines -------------------------------------------------------------------------------------- */
static _Thread_local int64_t eval_deadline;     /* CLOCK_MONOTONIC ms; 0 = none */

void rl_set_deadline(int64_t mono_ms) { eval_deadline = mono_ms; }

int64_t rl_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Milliseconds one wait of a service whose timeout is timeout_s may take
 * from now: the sooner of that and the evaluation deadline (*cut = 1 when
 * the deadline is the nearer). <= 0: no time left. */
static int64_t wait_ms(long timeout_s, int *cut)
{
    int64_t t = (int64_t)timeout_s * 1000;
    if (eval_deadline > 0) {
        int64_t d = eval_deadline - rl_now_ms();
        if (d <= t) {
            t = d;
            if (cut)
                *cut = 1;
        }
    }
    return t;
}

/* The service's lock, waited for until the evaluation deadline at most. */
static int svc_lock(struct rl_service *s)
{
    if (eval_deadline <= 0) {
        pthread_mutex_lock(&s->mu);
        return 0;
    }
    int64_t left = eval_deadline - rl_now_ms();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (left < 0)
        left = 0;
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_timedlock(&s->mu, &ts) != 0) {
        log_warn("rules: service %s: busy until the evaluation deadline", s->name);
        return -1;
    }
    return 0;
}

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
static uint32_t csv_hash(const char *k)
{
    uint32_t h = 2166136261u;
    for (; *k; k++) {
        h ^= (unsigned char)((*k >= 'A' && *k <= 'Z') ? *k + 32 : *k);
        h *= 16777619u;
    }
    return h;
}

static void csv_rehash(struct rl_service *s)
{
    size_t want = 64;
    while (want < s->nrows * 2)
        want *= 2;
    if (want != s->nbkt) {
        free(s->bkt);
        s->bkt = xcalloc(want, sizeof(*s->bkt));
        s->nbkt = want;
    }
    for (size_t i = 0; i < s->nbkt; i++)
        s->bkt[i] = -1;
    for (size_t i = 0; i < s->nrows; i++) {
        struct csv_row *r = &s->rows[i];
        if (r->key == NULL)
            continue;
        size_t b = r->h & (s->nbkt - 1);
        r->hnext = s->bkt[b];
        s->bkt[b] = (int32_t)i;
    }
}

static void csv_clear(struct rl_service *s)
{
    for (size_t i = 0; i < s->nrows; i++) {
        free(s->rows[i].key);
        free(s->rows[i].val);
    }
    s->nrows = s->live = 0;
    s->tail_nl = 1;
    csv_rehash(s);
}

static long csv_find(const struct rl_service *s, const char *key)
{
    if (s->nbkt == 0)
        return -1;
    uint32_t h = csv_hash(key);
    for (int32_t i = s->bkt[h & (s->nbkt - 1)]; i >= 0; i = s->rows[i].hnext)
        if (s->rows[i].h == h && strcasecmp(s->rows[i].key, key) == 0)
            return i;
    return -1;
}

/* The row's line stays (key NULL) until the next rewrite. */
static void csv_kill(struct rl_service *s, size_t i)
{
    struct csv_row *r = &s->rows[i];
    for (int32_t *pp = &s->bkt[r->h & (s->nbkt - 1)]; *pp >= 0; pp = &s->rows[*pp].hnext)
        if (*pp == (int32_t)i) {
            *pp = r->hnext;
            break;
        }
    free(r->key);
    free(r->val);
    r->key = r->val = NULL;
    s->live--;
}

/* A line (k, v owned): it supersedes an earlier line of the same key. */
static void csv_add(struct rl_service *s, char *k, char *v)
{
    long old = csv_find(s, k);
    if (old >= 0)
        csv_kill(s, (size_t)old);
    if (s->nrows == s->caprows) {
        s->caprows = s->caprows ? s->caprows * 2 : 64;
        s->rows = xrealloc(s->rows, sizeof(*s->rows) * s->caprows);
    }
    struct csv_row *r = &s->rows[s->nrows++];
    r->key = k;
    r->val = v;
    r->h = csv_hash(k);
    s->live++;
    if (s->nrows * 2 > s->nbkt) {
        csv_rehash(s);
    } else {
        size_t b = r->h & (s->nbkt - 1);
        r->hnext = s->bkt[b];
        s->bkt[b] = (int32_t)(s->nrows - 1);
    }
}

/* Drop the dead rows (after the file was rewritten without them). */
static void csv_compact(struct rl_service *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nrows; i++)
        if (s->rows[i].key)
            s->rows[n++] = s->rows[i];
    s->nrows = n;
    csv_rehash(s);
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

static void csv_line(buf_t *b, const char *k, const char *v)
{
    csv_put(b, k);
    buf_append_char(b, ',');
    csv_put(b, v);
    buf_append_char(b, '\n');
}

static void csv_stat(struct rl_service *s, const struct stat *st)
{
    s->mtime = st->st_mtim;
    s->size = st->st_size;
    s->ino = st->st_ino;
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
        s->size = 0;
        s->ino = 0;
        return 0;
    }
    if (s->loaded && st.st_mtim.tv_sec == s->mtime.tv_sec && st.st_mtim.tv_nsec == s->mtime.tv_nsec &&
        st.st_size == s->size && st.st_ino == s->ino)
        return 0;
    /* O_NONBLOCK: a FIFO put there must not hang the evaluation */
    int fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        log_warn("rules: service %s: %s: %s", s->name, s->path,
                 fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    FILE *fp = fdopen(fd, "r");
    if (fp == NULL) {
        close(fd);
        return -1;
    }
    csv_clear(s);
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    while ((r = getline(&line, &cap, fp)) >= 0) {
        s->tail_nl = r > 0 && line[r - 1] == '\n';
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
    csv_stat(s, &st);
    s->loaded = 1;
    return 0;
}

static int csv_open(struct rl_service *s, const char **opt, const struct rl_value *val, int nopt,
                    char *err, size_t errlen)
{
    s->path = resolve(s, opt_str(opt, val, nopt, "path", ""));
    s->max_entries = opt_int(opt, val, nopt, "max_entries", CSV_MAX_ENTRIES_DEFAULT);
    if (s->max_entries < 1 || s->max_entries > CSV_MAX_ENTRIES_MAX) {
        snprintf(err, errlen, "csv service %s: max_entries must be between 1 and %d", s->name,
                 CSV_MAX_ENTRIES_MAX);
        return -1;
    }
    s->tail_nl = 1;
    return 0;
}

static void csv_close(struct rl_service *s)
{
    csv_clear(s);
    free(s->rows);
    free(s->bkt);
}

static int csv_lookup(struct rl_service *s, const char *key, buf_t *value)
{
    if (svc_lock(s) < 0)
        return SVC_TEMPFAIL;
    int rc = SVC_TEMPFAIL;
    if (csv_refresh(s) == 0) {
        long i = csv_find(s, key);
        rc = i >= 0 ? SVC_FOUND : SVC_NOTFOUND;
        if (i >= 0 && value)
            buf_set(value, s->rows[i].val, strlen(s->rows[i].val));
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write every live row to PATH.tmp.PID, fsync, rename over PATH: readers
 * see the old or the new file, never half of one. Then the rows match. */
static int csv_write(struct rl_service *s)
{
    buf_t b, tmp;
    buf_init(&b, 4096);
    buf_init(&tmp, 128);
    for (size_t i = 0; i < s->nrows; i++)
        if (s->rows[i].key)
            csv_line(&b, s->rows[i].key, s->rows[i].val);
    buf_printf(&tmp, "%s.tmp.%ld", s->path, (long)getpid());
    int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int rc = -1;
    struct stat st;
    if (fd >= 0) {
        if (write_all(fd, b.data, b.len) == 0 && fsync(fd) == 0 && fstat(fd, &st) == 0 &&
            close(fd) == 0) {
            fd = -1;
            rc = rename(tmp.data, s->path);
        }
        if (fd >= 0)
            close(fd);
        if (rc < 0)
            unlink(tmp.data);
    }
    if (rc < 0) {
        log_warn("rules: service %s: cannot rewrite %s: %s", s->name, s->path, strerror(errno));
        s->loaded = 0;          /* read it again next time */
    } else {
        csv_stat(s, &st);
        csv_compact(s);
        s->tail_nl = 1;
    }
    buf_free(&b);
    buf_free(&tmp);
    return rc;
}

/* Append one line (O_APPEND, fdatasync): the common case of an insert. */
static int csv_append(struct rl_service *s, const char *key, const char *value)
{
    buf_t b;
    buf_init(&b, 128);
    if (!s->tail_nl)
        buf_append_char(&b, '\n');
    csv_line(&b, key, value);
    int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    int rc = -1;
    struct stat st;
    if (fd >= 0) {
        if (write_all(fd, b.data, b.len) == 0 && fdatasync(fd) == 0 && fstat(fd, &st) == 0)
            rc = 0;
        if (close(fd) < 0)
            rc = -1;
    }
    buf_free(&b);
    if (rc < 0) {
        log_warn("rules: service %s: cannot append to %s: %s", s->name, s->path, strerror(errno));
        s->loaded = 0;
        return -1;
    }
    /* what we know is the file, unless someone else wrote to it meanwhile */
    if (st.st_size == s->size + (off_t)b.len || s->size == 0)
        csv_stat(s, &st);
    else
        s->loaded = 0;
    s->tail_nl = 1;
    return 0;
}

static int csv_insert(struct rl_service *s, const char *key, const char *value)
{
    if (strlen(key) > CSV_FIELD_MAX || strlen(value) > CSV_FIELD_MAX) {
        log_warn("rules: service %s: insert refused: key or value longer than %d octets", s->name,
                 CSV_FIELD_MAX);
        return SVC_TEMPFAIL;
    }
    if (svc_lock(s) < 0)
        return SVC_TEMPFAIL;
    int rc = SVC_TEMPFAIL;
    if (csv_refresh(s) == 0) {
        long i = csv_find(s, key);
        if (i >= 0 && strcmp(s->rows[i].val, value) == 0) {
            rc = SVC_FOUND;     /* nothing changes */
        } else {
            int rewrite = 0;
            if (i < 0 && s->live >= (size_t)s->max_entries) {
                /* full: the oldest tenth goes, in one rewrite */
                size_t batch = (size_t)s->max_entries / 10 ? (size_t)s->max_entries / 10 : 1;
                size_t keep = (size_t)s->max_entries - batch;
                for (size_t j = 0; j < s->nrows && s->live > keep; j++)
                    if (s->rows[j].key)
                        csv_kill(s, j);
                log_info("rules: service %s: %s holds max_entries=%ld keys: oldest evicted",
                         s->name, s->path, s->max_entries);
                rewrite = 1;
            }
            csv_add(s, xstrdup(key), xstrdup(value));
            if (s->nrows - s->live > s->live + 16)
                rewrite = 1;    /* superseded lines dominate */
            int w = rewrite ? csv_write(s) : csv_append(s, key, value);
            rc = w == 0 ? SVC_FOUND : SVC_TEMPFAIL;
        }
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
    if (s->timeout <= 0 || s->timeout > RL_SVC_TIMEOUT_MAX) {
        snprintf(err, errlen, "cmd service %s: timeout must be between 1s and %ds", s->name,
                 RL_SVC_TIMEOUT_MAX);
        return -1;
    }
    return 0;
}

static void cmd_close(struct rl_service *s)
{
    for (int i = 0; i < s->argc; i++)
        free(s->argv[i]);
    free(s->argv);
}

/* The child of a threaded process: async-signal-safe calls only. */
static void child_exec(const char **argv, int in_fd, int out_fd, uid_t uid, gid_t gid)
{
    /* filter's workers block every signal and the process ignores SIGPIPE:
     * both would survive execve */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, &dfl, NULL) < 0) {
            /* glibc refuses its own signals (32, 33), which an ignoring
             * parent may have passed down: ask the kernel directly */
            struct { void (*h)(int); unsigned long flags; void (*r)(void); unsigned long mask; } k =
                { SIG_DFL, 0, NULL, 0 };
            syscall(SYS_rt_sigaction, sig, &k, NULL, sizeof(k.mask));
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setpgid(0, 0);                   /* a timeout kills the whole group */
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(126);
    if (close_range(3, ~0U, 0) < 0)
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    if (chdir("/") < 0)
        _exit(126);
    if (uid != (uid_t)-1) {
        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
            _exit(126);
        if (setuid(0) == 0)
            _exit(126);     /* must not be able to regain root */
    }
    char *const envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", NULL };
    execve(argv[0], (char *const *)argv, envp);
    _exit(127);
}

/* Root never runs a rules command as root (`postern rules test` run by
 * root, a unit test): it runs as nobody. filter itself is unprivileged. */
static int cmd_identity(uid_t *uid, gid_t *gid)
{
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (getuid() != 0 && geteuid() != 0)
        return 0;
    struct passwd pw, *res = NULL;
    char b[1024];
    if (getpwnam_r("nobody", &pw, b, sizeof(b), &res) != 0 || res == NULL)
        return -1;
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

static void kill_and_reap(pid_t pid, int *st)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, st, 0) < 0 && errno == EINTR)
        ;
}

static int cmd_exec(struct rl_service *s, struct rl_vm *vm, const char **extra, int nextra, buf_t *out,
                    int *status_r)
{
    buf_reset(out);
    for (int i = 0; i < nextra; i++)
        if (extra[i][0] == '-') {
            /* a value the rules computed (from mail, as often as not): data,
             * never an option */
            log_warn("rules: service %s: not running %s: argument %d begins with '-' and would "
                     "be taken as an option", s->name, s->argv[0], i + 1);
            return SVC_TEMPFAIL;
        }
    int cut = 0;
    int64_t left = wait_ms(s->timeout, &cut);
    if (left <= 0) {
        log_warn("rules: service %s: not running %s: evaluation deadline reached", s->name,
                 s->argv[0]);
        return SVC_TEMPFAIL;
    }
    int64_t end = rl_now_ms() + left;
    uid_t uid;
    gid_t gid;
    if (cmd_identity(&uid, &gid) < 0) {
        log_warn("rules: service %s: running as root and no user nobody: not running %s",
                 s->name, s->argv[0]);
        return SVC_TEMPFAIL;
    }
    struct content c;
    if (content_open(vm, &c) < 0)
        return SVC_TEMPFAIL;
    const char **argv = xcalloc((size_t)(s->argc + nextra + 1), sizeof(char *));
    for (int i = 0; i < s->argc; i++)
        argv[i] = s->argv[i];
    for (int i = 0; i < nextra; i++)
        argv[s->argc + i] = extra[i];
    int inp[2] = { -1, -1 }, outp[2] = { -1, -1 };
    pid_t pid = -1;
    int err = 0;
    if (pipe2(inp, O_CLOEXEC) == 0 && pipe2(outp, O_CLOEXEC) == 0) {
        signal(SIGPIPE, SIG_IGN);       /* a child that stops reading: EPIPE */
        pid = fork();
        if (pid == 0)
            child_exec(argv, inp[0], outp[1], uid, gid);
    }
    if (pid < 0)
        err = errno;
    free(argv);
    if (inp[0] >= 0)
        close(inp[0]);
    if (outp[1] >= 0)
        close(outp[1]);
    if (pid < 0) {
        log_warn("rules: service %s: cannot run %s: %s", s->name, s->argv[0], strerror(err));
        if (inp[1] >= 0)
            close(inp[1]);
        if (outp[0] >= 0)
            close(outp[0]);
        if (c.fd >= 0)
            close(c.fd);
        return SVC_TEMPFAIL;
    }
    setpgid(pid, pid);                  /* also here: no window before the child's own */
    fcntl(inp[1], F_SETFL, O_NONBLOCK);
    int wfd = inp[1];
    if (c.fd < 0 || c.len == 0) {
        close(wfd);
        wfd = -1;
    }
    uint64_t sent = 0;
    char chunk[16384];
    size_t clen = 0, cpos = 0;
    int timed_out = 0;
    for (;;) {
        struct pollfd pf[2] = { { outp[0], POLLIN, 0 }, { wfd, POLLOUT, 0 } };
        int64_t ms = end - rl_now_ms();
        if (ms <= 0) {
            timed_out = 1;
            break;
        }
        int n = poll(pf, wfd >= 0 ? 2 : 1, (int)ms);
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
                sent = r > 0 ? sent + clen : c.len;     /* a read error ends the input */
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
            if (out->len < OUT_MAX)     /* the rest is drained, not kept */
                buf_append(out, rb, out->len + (size_t)r > OUT_MAX ? OUT_MAX - out->len : (size_t)r);
        }
    }
    if (wfd >= 0)
        close(wfd);
    close(outp[0]);
    if (c.fd >= 0)
        close(c.fd);
    /* wait for the exit without reaping (WNOWAIT): the group's id stays
     * ours until the reap, so killing the group never hits a stranger */
    while (!timed_out) {
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        int w = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
        if (w == 0 && si.si_pid == pid)
            break;
        if (w < 0 && errno != EINTR) {
            timed_out = 1;
            break;
        }
        if (rl_now_ms() >= end) {
            timed_out = 1;
            break;
        }
        usleep(2000);
    }
    int st = 0;
    kill_and_reap(pid, &st);    /* nothing the command started outlives the call */
    if (timed_out) {
        if (cut)
            log_warn("rules: service %s: %s killed at the evaluation deadline", s->name, s->argv[0]);
        else
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
    if (s->timeout <= 0 || s->timeout > RL_SVC_TIMEOUT_MAX) {
        snprintf(err, errlen, "smtp service %s: timeout must be between 1s and %ds", s->name,
                 RL_SVC_TIMEOUT_MAX);
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

/* timeout: the service's, per read or write; cut: the evaluation deadline
 * was the nearer limit of some wait. */
struct sconn { int fd; buf_t in; long timeout; int cut; };

/* Before each blocking call: its limit is the sooner of the timeout and
 * the evaluation deadline. -1: no time left. */
static int s_arm(struct sconn *c)
{
    int64_t ms = wait_ms(c->timeout, &c->cut);
    if (ms <= 0)
        return -1;
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return 0;
}

static int s_connect(struct sconn *c, const struct sockaddr *sa, socklen_t sl)
{
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    if (connect(c->fd, sa, sl) < 0) {
        if (errno != EINPROGRESS)
            return -1;
        for (;;) {
            int64_t ms = wait_ms(c->timeout, &c->cut);
            if (ms <= 0)
                return -1;
            struct pollfd pf = { c->fd, POLLOUT, 0 };
            int n = poll(&pf, 1, (int)ms);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return -1;
            break;
        }
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e != 0)
            return -1;
    }
    return fcntl(c->fd, F_SETFL, fl);
}

static int s_send(struct sconn *c, const char *p, size_t n)
{
    while (n) {
        if (s_arm(c) < 0)
            return -1;
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
            if (s_arm(c) < 0)
                return -1;
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
    struct sconn c = { .fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0),
                       .timeout = s->timeout };
    buf_init(&c.in, 1024);
    int code = -1;
    if (c.fd < 0)
        goto done;
    if (s_connect(&c, (struct sockaddr *)&ss, sl) < 0)
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
        log_warn("rules: service %s: delegation to %s failed: %s%s", s->name, s->address,
                 out->len ? out->data : "no reply",
                 eval_deadline > 0 && rl_now_ms() >= eval_deadline ?
                 " (evaluation deadline reached)" : "");
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
