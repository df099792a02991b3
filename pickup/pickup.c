/*
 * pickup.c - the pickup daemon: watch <spool>/maildrop/ and hand each
 * finished file to pickup_file().
 *
 * postdrop writes "t<random>" and renames it to "<32 hex digits>" once
 * complete, so only those names are picked up; inotify (IN_MOVED_TO)
 * starts a sweep at once, a timer every PK_SWEEP_SECS catches the rest
 * (retries after a temporary failure, events lost to an overflow) and the
 * first sweep at start takes what was submitted while the daemons were
 * down. At most PK_BATCH files per loop turn, so SIGTERM is heard soon.
 * A file cleanup deferred (a tenant over its limit, cleanup restarting) is
 * remembered and skipped for PK_RETRY_SECS, twice that after each further
 * deferral up to PK_RETRY_MAX_SECS (each try sends the whole file again):
 * sweeps neither resubmit it in a loop nor let it hold back the files
 * behind it.
 * Temporary files older than PK_STALE_SECS (a postdrop that died) are
 * removed, and any other name is moved to corrupt/: pickup owns the
 * sticky directory, so it may. Never exits because of what it finds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "pickup.h"
#include "daemon/server.h"
#include "mail/spool.h"
#include "util/hash.h"
#include "util/log.h"
#include "ipc/ipc_report.h"

struct pk_ctx {
    struct server *srv;
    int dirfd;                      /* maildrop/ */
    int ifd;                        /* inotify, -1 = none (timer only) */
    struct event *ev_inotify, *ev_timer, *ev_sweep;
};

/* ---- files cleanup deferred ---------------------------------------------- */
#define DEFER_BUCKETS 1024
struct pk_defer { struct pk_defer *next; time_t until; unsigned tries; char name[33]; };
static struct pk_defer *deferred[DEFER_BUCKETS];
static int ndeferred;

static struct pk_defer **defer_slot(const char *name)
{
    struct pk_defer **pp = &deferred[fnv1a_str(FNV1A_INIT, name) % DEFER_BUCKETS];
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void defer_unlink(struct pk_defer **pp)
{
    struct pk_defer *d = *pp;
    *pp = d->next;
    free(d);
    ndeferred--;
}

/* Deferred and not due yet? (a due one is kept: its count of tries sets
 * the next wait, until the file is queued or gone) */
static int defer_waiting(const char *name, time_t now)
{
    struct pk_defer **pp = defer_slot(name);
    return *pp != NULL && (*pp)->until > now;
}

/* Remember a deferral; 0, or -1 when the table is full. */
static int defer_add(const char *name, time_t now)
{
    struct pk_defer **pp = defer_slot(name);
    if (*pp == NULL) {
        if (ndeferred >= PK_DEFERRED_MAX)
            return -1;
        *pp = xcalloc(1, sizeof(**pp));
        str_copy((*pp)->name, sizeof((*pp)->name), name);
        ndeferred++;
    }
    /* 30 s, then doubling up to PK_RETRY_MAX_SECS: each try sends the
     * whole file to cleanup again */
    unsigned t = (*pp)->tries < 8 ? (*pp)->tries : 8;
    time_t wait = (time_t)PK_RETRY_SECS << t;
    (*pp)->until = now + (wait < PK_RETRY_MAX_SECS ? wait : PK_RETRY_MAX_SECS);
    (*pp)->tries++;
    return 0;
}

static void defer_forget(const char *name)
{
    struct pk_defer **pp = defer_slot(name);
    if (*pp)
        defer_unlink(pp);
}

/* Entries of files long gone (removed by hand, `postern queue`...). */
static void defer_prune(time_t now)
{
    for (int b = 0; b < DEFER_BUCKETS; b++)
        for (struct pk_defer **pp = &deferred[b]; *pp;)
            if ((*pp)->until + PK_STALE_SECS < now)
                defer_unlink(pp);
            else
                pp = &(*pp)->next;
}

static int is_hex_name(const char *s, size_t want)
{
    size_t n = strlen(s);
    if (n != want)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* maildrop/NAME -> corrupt/maildrop-NAME, for the postmaster to look at. */
static void to_corrupt(struct pk_ctx *c, const char *name)
{
    char dst[300];
    str_format(dst, sizeof(dst), "%s/maildrop-%s", SPOOL_CORRUPT, name);
    if (renameat(c->dirfd, name, AT_FDCWD, dst) == 0)
        log_warn("maildrop/%s moved to %s", name, dst);
    else if (unlinkat(c->dirfd, name, 0) == 0)
        log_warn("maildrop/%s removed (cannot move it to %s/)", name, SPOOL_CORRUPT);
    else
        log_error("maildrop/%s: cannot move or remove it: %m", name);
}

/* A name that is no finished maildrop file. */
static void odd_name(struct pk_ctx *c, const char *name)
{
    struct stat st;
    if (name[0] == 't' && is_hex_name(name + 1, 32)) {
        if (fstatat(c->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            time(NULL) - st.st_mtime > PK_STALE_SECS && unlinkat(c->dirfd, name, 0) == 0)
            log_info("maildrop/%s: removed an unfinished submission (uid %u)", name,
                     (unsigned)st.st_uid);
        return;                     /* else: postdrop is still writing it */
    }
    log_warn("maildrop/%s: not a name postdrop makes", name);
    to_corrupt(c, name);
}

/* Up to PK_BATCH files; 1 when there may be more. */
static int sweep_batch(struct pk_ctx *c)
{
    int dfd = openat(c->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        log_error("open %s/: %m", SPOOL_MAILDROP);
        if (dfd >= 0)
            close(dfd);
        return 0;
    }
    int done = 0, more = 0;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL && !c->srv->stopping) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (!is_hex_name(name, 32)) {
            odd_name(c, name);
            continue;
        }
        if (defer_waiting(name, now))
            continue;               /* deferred a moment ago: its time comes */
        if (done++ >= PK_BATCH) {
            more = 1;
            break;
        }
        enum pk_result r = pickup_file(c->srv->cfg, c->dirfd, name);
        if (r == PK_RETRY) {
            if (defer_add(name, now) < 0) {
                more = 0;           /* too many to remember: the timer comes back */
                break;
            }
            continue;
        }
        defer_forget(name);
        if (r == PK_DONE && unlinkat(c->dirfd, name, 0) < 0 && errno != ENOENT)
            log_error("maildrop/%s: queued, but cannot remove it: %m", name);
        else if (r == PK_DROP && unlinkat(c->dirfd, name, 0) < 0 && errno != ENOENT)
            log_error("maildrop/%s: refused, but cannot remove it: %m", name);
        else if (r == PK_DROP)
            log_warn("maildrop/%s: refused submission removed", name);
        else if (r == PK_REJECT)
            to_corrupt(c, name);
    }
    closedir(d);
    return more;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct pk_ctx *c = arg;
    if (c->srv->stopping)
        return;
    defer_prune(time(NULL));
    if (sweep_batch(c))
        event_active(c->ev_sweep, EV_TIMEOUT, 0);
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    struct pk_ctx *c = arg;
    char b[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (read(c->ifd, b, sizeof(b)) > 0)
        ;                           /* which file does not matter: sweep */
    event_active(c->ev_sweep, EV_TIMEOUT, 0);
}

static void on_stop(struct server *s)
{
    server_stop_loop(s);
}

int main(int argc, char **argv)
{
    struct server *s = server_init("pickup", argc, argv, SERVER_F_POSTDROP);
    struct pk_ctx c = { .srv = s, .ifd = -1 };
    s->ctx = &c;
    s->on_stop = on_stop;
    c.dirfd = open(SPOOL_MAILDROP, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (c.dirfd < 0)
        log_fatal("open %s/: %m", SPOOL_MAILDROP);
    c.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (c.ifd >= 0 && inotify_add_watch(c.ifd, SPOOL_MAILDROP, IN_MOVED_TO | IN_ONLYDIR) < 0) {
        log_warn("inotify on %s/: %m (sweeping every %d s only)", SPOOL_MAILDROP,
                 PK_SWEEP_SECS);
        close(c.ifd);
        c.ifd = -1;
    }
    c.ev_sweep = event_new(s->base, -1, 0, on_sweep, &c);
    c.ev_timer = event_new(s->base, -1, EV_PERSIST, on_sweep, &c);
    struct timeval tv = { PK_SWEEP_SECS, 0 };
    event_add(c.ev_timer, &tv);
    if (c.ifd >= 0) {
        c.ev_inotify = event_new(s->base, c.ifd, EV_READ | EV_PERSIST, on_inotify, &c);
        event_add(c.ev_inotify, NULL);
    }
    event_active(c.ev_sweep, EV_TIMEOUT, 0);    /* what came while we were down */
    ipc_report_start(s);   /* metrics to master, once a second */
    server_run(s);
    if (c.ev_inotify)
        event_free(c.ev_inotify);
    event_free(c.ev_timer);
    event_free(c.ev_sweep);
    if (c.ifd >= 0)
        close(c.ifd);
    close(c.dirfd);
    log_debug("stopped");
    return 0;
}
