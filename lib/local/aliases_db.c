/*
 * aliases_db.c - the compiled aliases index (tinycdb): aliases_compile()
 * writes it atomically for newaliases, the aliases_db reader looks names
 * up for local delivery and the recipient check.
 * Must never replace a good index with a broken one, never read an
 * unbounded source, never block on anything but a local file.
 */
#include <cdb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "local/aliases.h"
#include "util/fdio.h"
#include "util/log.h"

void aliases_db_path(const char *src, buf_t *out)
{
    buf_reset(out);
    buf_printf(out, "%s.cdb", src);
}

/* Read a whole regular file of at most max bytes into out. 0, or -1 with
 * errno (EFBIG when too big). */
static int read_file(const char *path, size_t max, buf_t *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) < 0)
        goto out;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        errno = EFBIG;
        goto out;
    }
    buf_reset(out);
    buf_reserve(out, (size_t)st.st_size + 1);
    if (fdio_pread_all(fd, out->data, (size_t)st.st_size, 0) < 0)
        goto out;
    out->len = (size_t)st.st_size;
    out->data[out->len] = '\0';
    rc = 0;
out:;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

struct compile_ctx {
    struct cdb_make cm;
    buf_t val;
    unsigned count;
    buf_t *err;
    const char *fname;
};

static int add_entry(const char *name, const struct alias_list *items, unsigned line, void *arg)
{
    struct compile_ctx *c = arg;
    unsigned kl = (unsigned)strlen(name);
    if (cdb_make_exists(&c->cm, name, kl) > 0) {
        buf_printf(c->err, "%s:%u:1: duplicate alias \"%s\"\n", c->fname, line, name);
        return 1;
    }
    aliases_encode(items, &c->val);
    if (cdb_make_add(&c->cm, name, kl, c->val.data, (unsigned)c->val.len) < 0) {
        buf_printf(c->err, "%s: writing the index: %s\n", c->fname, strerror(errno));
        return 2;
    }
    c->count++;
    return 0;
}

/* Parse text into an index written on fd. Count of aliases, or -1. */
static int build(const char *fname, const buf_t *text, int fd, buf_t *err)
{
    struct compile_ctx c;
    memset(&c, 0, sizeof(c));
    c.err = err;
    c.fname = fname;
    buf_init(&c.val, 256);
    int rc = -1;
    if (cdb_make_start(&c.cm, fd) < 0) {
        buf_printf(err, "%s: cdb: %s\n", fname, strerror(errno));
    } else if (aliases_parse(fname, text->data, text->len, add_entry, &c, err) == 0) {
        if (cdb_make_finish(&c.cm) < 0)
            buf_printf(err, "%s: writing the index: %s\n", fname, strerror(errno));
        else
            rc = (int)c.count;
    } else {
        cdb_make_finish(&c.cm);     /* frees its tables; the file is dropped */
    }
    buf_free(&c.val);
    return rc;
}

/* fsync the directory holding path (the rename's durability). */
static void sync_dir_of(const char *path)
{
    buf_t d;
    buf_init(&d, 64);
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        buf_set(&d, ".", 1);
    else
        buf_set(&d, path, slash == path ? 1 : (size_t)(slash - path));
    int fd = open(d.data, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    buf_free(&d);
}

int aliases_compile(const char *src, const char *dst, buf_t *err)
{
    buf_t text, path, tmp;
    buf_init(&text, 4096);
    buf_init(&path, 128);
    buf_init(&tmp, 128);
    int rc = -1, fd = -1;
    if (dst == NULL || dst[0] == '\0')
        aliases_db_path(src, &path);
    else
        buf_set(&path, dst, strlen(dst));
    if (read_file(src, ALIAS_FILE_MAX, &text) < 0) {
        buf_printf(err, "%s: %s\n", src, errno == EFBIG ? "file too big" : strerror(errno));
        goto out;
    }
    buf_printf(&tmp, "%s.tmp.%ld", path.data, (long)getpid());
    fd = open(tmp.data, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        buf_printf(err, "%s: %s\n", tmp.data, strerror(errno));
        goto out;
    }
    int n = build(src, &text, fd, err);
    if (n >= 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0)) {
        buf_printf(err, "%s: %s\n", tmp.data, strerror(errno));
        n = -1;
    }
    if (n >= 0 && rename(tmp.data, path.data) < 0) {
        buf_printf(err, "rename %s: %s\n", path.data, strerror(errno));
        n = -1;
    }
    if (n < 0)
        unlink(tmp.data);
    else
        sync_dir_of(path.data);
    rc = n;
out:
    if (fd >= 0)
        close(fd);
    buf_free(&text);
    buf_free(&path);
    buf_free(&tmp);
    return rc;
}

int aliases_check(const char *src, buf_t *err)
{
    buf_t text;
    buf_init(&text, 4096);
    int n = -1, fd = memfd_create("aliases-check", MFD_CLOEXEC);
    if (fd < 0)
        buf_printf(err, "%s: memfd: %s\n", src, strerror(errno));
    else if (read_file(src, ALIAS_FILE_MAX, &text) < 0)
        buf_printf(err, "%s: %s\n", src, errno == EFBIG ? "file too big" : strerror(errno));
    else
        n = build(src, &text, fd, err);
    if (fd >= 0)
        close(fd);
    buf_free(&text);
    return n;
}

/* ---- the reader ------------------------------------------------------------ */

#define DB_RECHECK_SECS 1

struct aliases_db {
    char *src, *idx;
    int fd;                     /* open index (file or memfd), -1 = none */
    struct cdb cdb;
    dev_t dev; ino_t ino;       /* of the file behind fd (0 for a memfd) */
    struct timespec idx_mtime, src_mtime;
    uid_t owner;
    time_t checked;
    int warned_stale;
    int src_tried;              /* the source was compiled in memory (src_mtime) */
};

struct aliases_db *aliases_db_new(const char *src)
{
    struct aliases_db *db = xcalloc(1, sizeof(*db));
    db->fd = -1;
    db->checked = -1000;
    if (src != NULL && src[0] != '\0') {
        buf_t p;
        buf_init(&p, 64);
        aliases_db_path(src, &p);
        db->src = xstrdup(src);
        db->idx = buf_steal(&p);
        buf_free(&p);
    }
    return db;
}

static void db_close(struct aliases_db *db)
{
    if (db->fd >= 0) {
        cdb_free(&db->cdb);
        close(db->fd);
    }
    db->fd = -1;
    db->dev = 0;
    db->ino = 0;
}

void aliases_db_free(struct aliases_db *db)
{
    if (db == NULL)
        return;
    db_close(db);
    free(db->src);
    free(db->idx);
    free(db);
}

static int ts_newer(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

/* Compile the source into an anonymous in-memory file (no index yet). */
static int open_from_source(struct aliases_db *db)
{
    int fd = memfd_create("aliases", MFD_CLOEXEC);
    if (fd < 0)
        return -1;
    buf_t text, err;
    buf_init(&text, 4096);
    buf_init(&err, 256);
    int n = -1;
    if (read_file(db->src, ALIAS_FILE_MAX, &text) == 0)
        n = build(db->src, &text, fd, &err);
    if (n < 0 || cdb_init(&db->cdb, fd) < 0) {
        log_error("aliases: %s: cannot be used: %s", db->src,
                  err.len ? err.data : strerror(errno));
        close(fd);
        fd = -1;
    } else {
        log_warn("aliases: %s has no index %s: read the source (run newaliases)",
                 db->src, db->idx);
        db->fd = fd;
    }
    buf_free(&text);
    buf_free(&err);
    return fd >= 0 ? 0 : -1;
}

/* (Re)open the index when it changed; 0 (fd may stay -1: no aliases), -1 temporary failure. */
static int db_refresh(struct aliases_db *db)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    if (now.tv_sec - db->checked < DB_RECHECK_SECS)
        return 0;
    db->checked = now.tv_sec;
    struct stat si, ss;
    int have_src = stat(db->src, &ss) == 0;
    db->owner = have_src ? ss.st_uid : 0;
    if (stat(db->idx, &si) < 0) {
        if (errno != ENOENT)
            return -1;
        /* no index: the source, compiled in memory, while it is unchanged */
        if (!have_src) {
            db_close(db);
            return 0;
        }
        if (db->src_tried && db->ino == 0 && !ts_newer(&ss.st_mtim, &db->src_mtime))
            return 0;               /* compiled (or refused) already, unchanged */
        db_close(db);
        db->src_mtime = ss.st_mtim;
        db->src_tried = 1;
        open_from_source(db);       /* refused: logged, no aliases until it changes */
        return 0;
    }
    if (have_src && ts_newer(&ss.st_mtim, &si.st_mtim)) {
        if (!db->warned_stale)
            log_error("aliases: index %s is older than %s: run newaliases (using the old index)",
                      db->idx, db->src);
        db->warned_stale = 1;
    } else {
        db->warned_stale = 0;
    }
    if (db->fd >= 0 && db->dev == si.st_dev && db->ino == si.st_ino &&
        !ts_newer(&si.st_mtim, &db->idx_mtime))
        return 0;
    db_close(db);
    db->src_tried = 0;
    int fd = open(db->idx, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || cdb_init(&db->cdb, fd) < 0) {
        log_error("aliases: open %s: %s", db->idx, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct stat st;
    fstat(fd, &st);
    db->fd = fd;
    db->dev = st.st_dev;
    db->ino = st.st_ino;
    db->idx_mtime = st.st_mtim;
    return 0;
}

int aliases_lookup(struct aliases_db *db, const char *name, struct alias_list *out)
{
    if (db == NULL || db->src == NULL)
        return 0;
    if (db_refresh(db) < 0) {
        db->checked = -1000;        /* try again at the next lookup */
        return -1;
    }
    if (db->fd < 0)
        return 0;
    int r = cdb_find(&db->cdb, name, (unsigned)strlen(name));
    if (r < 0) {
        log_error("aliases: %s: damaged index", db->idx);
        return -1;
    }
    if (r == 0)
        return 0;
    const void *p = cdb_getdata(&db->cdb);
    if (p == NULL || aliases_decode(p, cdb_datalen(&db->cdb), out) < 0) {
        log_error("aliases: %s: damaged entry \"%s\"", db->idx, name);
        return -1;
    }
    return 1;
}

uid_t aliases_db_owner(struct aliases_db *db)
{
    if (db == NULL || db->src == NULL)
        return 0;
    db_refresh(db);
    return db->owner;
}
