/*
 * auth.c - the auth.users table and password checks (see auth.h), plus a
 * small thread pool so an event loop never waits for a slow hash.
 *
 * Used by smtpd's AUTH. Never logs a password or a hash; user names are
 * logged escaped by the caller. The pool (lib/util/workq.c) workers only run
 * crypt_rn() on private copies; all bookkeeping that touches callers
 * happens in the loop thread, so callers need no locks.
 */
#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>
#include <openssl/crypto.h>

#include "mail/auth.h"
#include "util/log.h"
#include "util/workq.h"

struct auth_entry { char *user, *hash; };

struct auth_users {
    char *path;
    char *domain;            /* a domain's users file (auth_users_load_domain), else NULL */
    int fd;                  /* the file, kept open: re-read through it from a
                                chroot where path is not visible */
    int gone_warned;         /* the open file was removed: said once */
    struct auth_entry *v;
    int n;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

/* ---- the users file ------------------------------------------------------ */

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct auth_entry *)a)->user, ((const struct auth_entry *)b)->user);
}

static int hash_ok(const char *h)
{
    if (*h == '\0')
        return 0;
    for (; *h; h++)
        if (*h <= ' ' || *h == 0x7f || *h == ':')
            return 0;
    return 1;
}

/* A domain's users file also lists recipients without a password: such a
 * line is no login. Its names are local parts (or local@domain), matched
 * without regard to case as at RCPT: kept in lower case, the domain cut. */
static int domain_user(const struct auth_users *u, char *name, int lineno)
{
    char *at = strchr(name, '@');
    if (at != NULL) {
        if (strcasecmp(at + 1, u->domain) != 0) {
            log_warn("%s:%d: user of another domain than %s: line ignored", u->path, lineno,
                     u->domain);
            return -1;
        }
        *at = '\0';
    }
    for (char *c = name; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return *name ? 0 : -1;
}

/* One line (no LF); adds to u or logs why not. */
static void parse_line(struct auth_users *u, char *line, int lineno, int *cap)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = '\0';
    char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#')
        return;
    char *colon = strchr(p, ':');
    if (colon == NULL && u->domain != NULL)
        return;           /* a recipient with no password */
    if (colon == NULL || colon == p || colon - p > AUTH_FIELD_MAX) {
        log_warn("%s:%d: expected user:hash: line ignored", u->path, lineno);
        return;
    }
    *colon = '\0';
    char *hash = colon + 1, *end = strchr(hash, ':');
    if (end)
        *end = '\0';      /* passwd-style trailing fields are ignored */
    if (u->domain != NULL && *hash == '\0')
        return;           /* "user:" - a recipient with no password */
    if (!hash_ok(hash)) {
        log_warn("%s:%d: bad hash for user: line ignored", u->path, lineno);
        return;
    }
    if (u->domain != NULL && domain_user(u, p, lineno) < 0)
        return;
    if (u->n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        u->v = xrealloc(u->v, sizeof(*u->v) * (size_t)*cap);
    }
    u->v[u->n].user = xstrdup(p);
    u->v[u->n].hash = xstrdup(hash);
    u->n++;
}

static void drop_duplicates(struct auth_users *u)
{
    int w = 0;
    for (int i = 0; i < u->n; i++) {
        if (w > 0 && strcmp(u->v[w - 1].user, u->v[i].user) == 0) {
            log_warn("%s: user listed twice: the first line wins", u->path);
            free(u->v[i].user);
            free(u->v[i].hash);
            continue;
        }
        u->v[w++] = u->v[i];
    }
    u->n = w;
}

/* Read the file open at fd (from its start; fd stays open and is owned by
 * the result); domain: a domain's users file. */
static struct auth_users *load_fd(const char *path, const char *domain, int fd, buf_t *err)
{
    int rfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    FILE *f = rfd >= 0 ? fdopen(rfd, "re") : NULL;
    if (f == NULL || lseek(rfd, 0, SEEK_SET) < 0) {
        buf_printf(err, "%s: %s", path, strerror(errno));
        if (f)
            fclose(f);
        else if (rfd >= 0)
            close(rfd);
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) < 0) {
        buf_printf(err, "%s: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    struct auth_users *u = xcalloc(1, sizeof(*u));
    u->path = xstrdup(path);
    u->domain = domain ? xstrdup(domain) : NULL;
    u->fd = -1;
    u->dev = st.st_dev;
    u->ino = st.st_ino;
    u->size = st.st_size;
    u->mtime = st.st_mtim;
    char *line = NULL;
    size_t lcap = 0;
    int lineno = 0, cap = 0;
    /* stable sort keeps file order among equal names for drop_duplicates */
    while (getline(&line, &lcap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        parse_line(u, line, lineno, &cap);
    }
    int rerr = ferror(f);
    if (line) {
        explicit_bzero(line, lcap);
        free(line);
    }
    fclose(f);
    if (rerr) {
        buf_printf(err, "%s: read error", path);
        auth_users_free(u);
        return NULL;
    }
    u->fd = fd;
    for (int i = 1; i < u->n; i++) {     /* insertion sort: stable, files are small */
        struct auth_entry e = u->v[i];
        int j = i;
        for (; j > 0 && entry_cmp(&u->v[j - 1], &e) > 0; j--)
            u->v[j] = u->v[j - 1];
        u->v[j] = e;
    }
    drop_duplicates(u);
    return u;
}

static struct auth_users *load_path(const char *path, const char *domain, buf_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        buf_printf(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct auth_users *u = load_fd(path, domain, fd, err);
    if (u == NULL)
        close(fd);
    return u;
}

struct auth_users *auth_users_load(const char *path, buf_t *err)
{
    return load_path(path, NULL, err);
}

struct auth_users *auth_users_load_domain(const char *path, const char *domain, buf_t *err)
{
    return load_path(path, domain, err);
}

const char *auth_users_domain(const struct auth_users *u)
{
    return u ? u->domain : NULL;
}

void auth_users_free(struct auth_users *u)
{
    if (u == NULL)
        return;
    for (int i = 0; i < u->n; i++) {
        free(u->v[i].user);
        explicit_bzero(u->v[i].hash, strlen(u->v[i].hash));
        free(u->v[i].hash);
    }
    free(u->v);
    free(u->path);
    free(u->domain);
    if (u->fd >= 0)
        close(u->fd);
    free(u);
}

/* Which file, in log lines. */
static const char *kind(const struct auth_users *u)
{
    return u->domain ? "users file" : "auth.users";
}

int auth_users_refresh(struct auth_users **up)
{
    struct auth_users *u = *up;
    struct stat st;
    /* a file replaced under its name is read by name; edited in place, or
     * its name out of sight (smtpd's chroot), through the open file */
    int by_name = stat(u->path, &st) == 0;
    if (!by_name && errno != ENOENT) {
        log_warn("%s %s: %s: keeping the %d users loaded before", kind(u), u->path,
                 strerror(errno), u->n);
        return -1;
    }
    if (by_name && (st.st_dev != u->dev || st.st_ino != u->ino)) {
        /* re-read below by name */
    } else if (fstat(u->fd, &st) < 0 || st.st_nlink == 0) {
        /* removed or replaced out of our sight (chroot): a reload, which
         * restarts smtpd, reads the new file */
        int e = errno;
        if (fstat(u->fd, &st) == 0 && st.st_nlink == 0)
            e = ENOENT;
        if (!u->gone_warned)
            log_warn("%s %s: %s: keeping the %d users loaded before", kind(u), u->path,
                     strerror(e), u->n);
        u->gone_warned = 1;
        return -1;
    } else if (st.st_size == u->size && st.st_mtim.tv_sec == u->mtime.tv_sec &&
               st.st_mtim.tv_nsec == u->mtime.tv_nsec) {
        return 0;
    } else {
        by_name = 0;
    }
    buf_t err;
    buf_init(&err, 64);
    struct auth_users *n = by_name ? load_path(u->path, u->domain, &err)
                                   : load_fd(u->path, u->domain, u->fd, &err);
    if (n != NULL && !by_name)
        u->fd = -1;   /* now n's */
    if (n == NULL) {
        log_warn("%s changed but cannot be read: %s: keeping the %d users loaded "
                 "before", kind(u), err.data, u->n);
        buf_free(&err);
        return -1;
    }
    buf_free(&err);
    log_info("%s %s re-read: %d users", kind(n), n->path, n->n);
    auth_users_free(u);
    *up = n;
    return 1;
}

int auth_users_count(const struct auth_users *u)
{
    return u ? u->n : 0;
}

const char *auth_users_hash(const struct auth_users *u, const char *user)
{
    if (u == NULL || u->n == 0)
        return NULL;
    struct auth_entry key = { (char *)user, NULL };
    const struct auth_entry *e = bsearch(&key, u->v, (size_t)u->n, sizeof(*u->v), entry_cmp);
    return e ? e->hash : NULL;
}

/* ---- checking one password ---------------------------------------------- */

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[CRYPT_OUTPUT_SIZE];

/* A real hash of nothing anyone knows, for unknown users. */
static void dummy_init(void)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = xcalloc(1, sizeof(*cd));
    if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)) == NULL ||
        crypt_rn("postern-dummy-password", setting, cd, (int)sizeof(*cd)) == NULL ||
        str_copy(dummy_hash, sizeof(dummy_hash), cd->output) < 0)
        str_copy(dummy_hash, sizeof(dummy_hash), "*");   /* crypt_rn then fails fast */
    free(cd);
}

static int check_with(struct crypt_data *cd, const char *hash, const char *pass, size_t passlen)
{
    pthread_once(&dummy_once, dummy_init);
    int known = hash != NULL;
    const char *h = known ? hash : dummy_hash;
    char pw[AUTH_FIELD_MAX + 1];
    if (passlen > AUTH_FIELD_MAX || memchr(pass, '\0', passlen) != NULL) {
        known = 0;          /* cannot match: still spend the time */
        passlen = 0;
    }
    memcpy(pw, pass, passlen);
    pw[passlen] = '\0';
    const char *out = crypt_rn(pw, h, cd, (int)sizeof(*cd));
    explicit_bzero(pw, sizeof(pw));
    int ok = 0;
    size_t hl = strlen(h);
    if (out != NULL && out[0] != '*' && strlen(out) == hl)
        ok = CRYPTO_memcmp(out, h, hl) == 0;
    explicit_bzero(cd, sizeof(*cd));
    return ok && known;
}

int auth_check(const char *hash, const char *pass, size_t passlen)
{
    struct crypt_data *cd = xcalloc(1, sizeof(*cd));
    int ok = check_with(cd, hash, pass, passlen);
    free(cd);
    return ok;
}

/* ---- the worker pool ---------------------------------------------------- */

struct auth_job {
    struct workq_item item;     /* first: the job is its item */
    struct auth_pool *pool;
    char *hash;                 /* NULL = unknown user */
    char *pass;
    size_t passlen;
    int ok;
    auth_done_fn *done;
    void *arg;
};

struct auth_pool {
    struct workq *q;
};

static void job_free(struct auth_job *j)
{
    if (j->pass) {
        explicit_bzero(j->pass, j->passlen);
        free(j->pass);
    }
    free(j->hash);
    free(j);
}

/* Each worker keeps one crypt_data (large) for all its checks. */
static void *worker_start(void *arg)
{
    return xcalloc(1, sizeof(struct crypt_data));
}

static void worker_end(void *cd, void *arg)
{
    free(cd);
}

static int job_run(struct workq_item *it, void *cd, void *arg)
{
    struct auth_job *j = (struct auth_job *)it;
    j->ok = check_with(cd, j->hash, j->pass, j->passlen);
    explicit_bzero(j->pass, j->passlen);
    return WORKQ_DONE;
}

/* Loop thread: hand the result to its requester (unless cancelled). */
static void job_done(struct workq_item *it, void *arg)
{
    struct auth_job *j = (struct auth_job *)it;
    if (!it->wq_cancelled)
        j->done(j->arg, j->ok);
    job_free(j);
}

static const struct workq_ops auth_ops = {
    .thread_start = worker_start, .thread_end = worker_end, .run = job_run, .done = job_done,
};

struct auth_pool *auth_pool_new(struct event_base *base, int nthreads)
{
    struct auth_pool *p = xcalloc(1, sizeof(*p));
    p->q = workq_new(base, nthreads, &auth_ops, p);
    return p;
}

void auth_pool_free(struct auth_pool *p)
{
    if (p == NULL)
        return;
    workq_free(p->q, 0);     /* nothing is delivered any more: jobs are just freed */
    free(p);
}

struct auth_job *auth_pool_submit(struct auth_pool *p, const char *hash, const char *pass,
                                  size_t passlen, auth_done_fn *done, void *arg)
{
    struct auth_job *j = xcalloc(1, sizeof(*j));
    j->hash = hash ? xstrdup(hash) : NULL;
    j->pass = xmalloc(passlen + 1);
    memcpy(j->pass, pass, passlen);
    j->pass[passlen] = '\0';
    j->passlen = passlen;
    j->done = done;
    j->arg = arg;
    j->pool = p;
    workq_submit(p->q, &j->item);
    return j;
}

void auth_job_cancel(struct auth_job *j)
{
    workq_cancel(j->pool->q, &j->item);
}
