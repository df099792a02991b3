/*
 * rl_svc_csv.c - the csv service (rl_services.c): key[,value] lines, lookup /
 * contains / insert, reloaded when the file changes, bounded by
 * max_entries (the oldest tenth evicted, the file rewritten atomically).
 * Never leaves a half-written file in place of the table.
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
#include "util/hash.h"
#include "util/fdio.h"
#include "util/log.h"
#include "mail/qfile.h"
#include "rules/rl_svc.h"

/* ---- csv ------------------------------------------------------------------------------------------ */
static uint32_t csv_hash(const char *k)
{
    return fnv1a_str_lower(FNV1A_INIT, k);
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
    s->path = svc_resolve(s, svc_opt_str(opt, val, nopt, "path", ""));
    s->max_entries = svc_opt_int(opt, val, nopt, "max_entries", CSV_MAX_ENTRIES_DEFAULT);
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
        if (fdio_write_all(fd, b.data, b.len) == 0 && fsync(fd) == 0 && fstat(fd, &st) == 0 &&
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
        if (fdio_write_all(fd, b.data, b.len) == 0 && fdatasync(fd) == 0 && fstat(fd, &st) == 0)
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

const struct rl_svc_ops rl_svc_csv_ops = {
    SVC_CSV, "csv", csv_open, csv_close, csv_lookup, csv_insert, NULL,
};
