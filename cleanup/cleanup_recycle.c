/*
 * cleanup_recycle.c - new queue files on recycled inodes.
 *
 * Why: on ext4 without a journal (the benchmark VM's root file system)
 * every inode allocation skips the inodes deleted in the last ~30 s
 * (ialloc.c recently_deleted()), reading their inode-table blocks one by
 * one. At 1000+ queue files created and deleted per second, open(O_CREAT)
 * cost cleanup's loop ~100 us per message, half its CPU.
 *
 * So qmgr does not unlink a finished queue file but renames it to
 * tmp/.free-<ID> (qmgr_active_finish), and here a new transaction takes such
 * a file: open tmp/.free-X without O_TRUNC - no inode allocated, and the new
 * content overwrites the old blocks in place (no block allocation, no
 * unwritten-extent conversion; cl_tmp_trim() cuts the old tail once the new
 * file is written). The file keeps that name until the commit renames it to
 * incoming/ID (one rename per message, not two): the transaction's path is
 * tmp/.free-X instead of tmp/ID, which the filter and crash recovery treat
 * alike (both are in tmp/). A name handed out stays "in use" until the
 * transaction gives it back (cl_tmp_release, when it is dropped): a scan
 * while the file is being written or committed still lists the name, and
 * must not hand the same inode to a second transaction. When no free name
 * is known, tmp/ is scanned again (at most every RECYCLE_SCAN_US); else a
 * new file tmp/ID is created. The names start with a dot so that tools and
 * tests listing the queue directories with "*" never take them for
 * messages.
 *
 * Crash safety. A recycled inode must not still be reachable under its old
 * name active/ID after a crash, or the old name would now hold another
 * message (a duplicate delivery). qmgr's rename is not synced, so every
 * batch found by a scan is only used after one fsync(active/), which makes
 * the names' removal from active/ durable. tmp/ is never trusted: cleanup
 * removes at start everything in it that no live process holds (.free-*
 * included), exactly like unfinished files. A name is taken only with its
 * flock (queue_tmp_take, without waiting): a draining cleanup and its
 * replacement both scan tmp/, and the one that holds the file keeps it.
 * Files that are not regular, single-link files are not reused. At most
 * RECYCLE_MAX are kept per scan; extra ones are removed (unless held).
 * Since the commit renames before it fsyncs (cleanup_commit.c), a power cut
 * can also leave incoming/ID naming a recycled inode that still holds some
 * or all of the old message's blocks: never acknowledged, and refused by
 * every reader (END checksum, or the old queue id in a file named ID).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "util/clock.h"
#include "util/log.h"
#include "mail/queue.h"

#define RECYCLE_MAX      512
#define RECYCLE_SCAN_US  100000    /* rescan tmp/ at most this often when empty */

_Static_assert(sizeof(SPOOL_TMP) + CL_RECYCLE_NAME_MAX <= sizeof(((struct cl_txn *)0)->path),
               "tmp/ and a held name fit in a transaction's path");

static char *free_names[RECYCLE_MAX];
static int nfree;
static int64_t last_scan_us;
static struct cl_txn *inuse;        /* holding a recycled name: t->rnext/rprev */

/* t holds tmp/NAME (loop thread only, like release and scan: workers may
 * change t->path meanwhile, never t->rname). NAME fits: scan saw to it. */
static void hold(struct cl_txn *t, const char *name)
{
    str_copy(t->rname, sizeof(t->rname), name);
    t->rprev = NULL;
    t->rnext = inuse;
    if (inuse)
        inuse->rprev = t;
    inuse = t;
}

void cl_tmp_release(struct cl_txn *t)
{
    if (t->rname[0] == '\0')
        return;
    if (t->rprev)
        t->rprev->rnext = t->rnext;
    else
        inuse = t->rnext;
    if (t->rnext)
        t->rnext->rprev = t->rprev;
    t->rname[0] = '\0';
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names transactions hold, sorted, and how many (*n; NULL when none). */
static const char **held_names(size_t *n)
{
    *n = 0;
    for (struct cl_txn *t = inuse; t; t = t->rnext)
        (*n)++;
    if (*n == 0)
        return NULL;
    const char **v = xmalloc(*n * sizeof(*v));
    size_t i = 0;
    for (struct cl_txn *t = inuse; t; t = t->rnext)
        v[i++] = t->rname;
    qsort(v, *n, sizeof(*v), name_cmp);
    return v;
}

/* Collect free names (the ones no transaction holds; at most RECYCLE_MAX;
 * extra ones, and any too long to hold, removed). */
static void scan(void)
{
    size_t nheld;
    const char **held = held_names(&nheld);
    DIR *d = opendir(SPOOL_TMP);
    if (d == NULL) {
        free(held);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strncmp(name, SPOOL_RECYCLE_PREFIX, sizeof(SPOOL_RECYCLE_PREFIX) - 1) != 0 ||
            (held && bsearch(&name, held, nheld, sizeof(*held), name_cmp)))
            continue;
        if (nfree < RECYCLE_MAX && strlen(name) < CL_RECYCLE_NAME_MAX)
            free_names[nfree++] = xstrdup(name);
        else
            queue_tmp_remove(dirfd(d), name);   /* unless another cleanup holds it */
    }
    closedir(d);
    free(held);
    if (nfree == 0)
        return;
    /* their names are gone from active/ for good before the inodes change */
    int fd = open(SPOOL_ACTIVE, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = fd < 0 || fsync(fd) < 0;
    if (fd >= 0)
        close(fd);
    if (err) {
        log_warn("fsync %s: %m: not reusing queue files", SPOOL_ACTIVE);
        while (nfree > 0)
            free(free_names[--nfree]);
    }
}

int cl_tmp_create(struct cl_txn *t)
{
    t->old_size = 0;
    if (nfree == 0) {
        int64_t now = clock_now_us();
        if (now - last_scan_us >= RECYCLE_SCAN_US) {
            last_scan_us = now;
            scan();
        }
    }
    while (nfree > 0) {
        char *name = free_names[--nfree];
        str_format(t->path, sizeof(t->path), "%s/%s", SPOOL_TMP, name);   /* fits: scan kept short names (above) */
        free(name);
        /* claimed without waiting: one another cleanup (a draining one, or
         * its replacement) holds, or took and renamed, is not ours */
        int fd = open(t->path, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;               /* gone (restart race): take another */
        struct stat st;
        if (queue_tmp_take(fd, t->path, &st) < 0) {
            close(fd);
            continue;
        }
        if (S_ISREG(st.st_mode) && st.st_nlink == 1 &&
            (st.st_mode & 07777) == 0600) {
            t->old_size = st.st_size;
            hold(t, t->path + sizeof(SPOOL_TMP));
            return fd;
        }
        unlink(t->path);            /* odd (and ours: locked): not reused */
        close(fd);
    }
    str_format(t->path, sizeof(t->path), "%s/%s", SPOOL_TMP, t->qid);
    return queue_tmp_create(t->path);
}

int cl_tmp_trim(struct cl_txn *t, off_t end)
{
    if (t->old_size == 0)
        return 0;
    if (end < t->old_size && ftruncate(t->fd, end) < 0)
        return -1;
    t->old_size = 0;
    return 0;
}

int cl_tmp_content(const struct cl_txn *t, off_t *off_r, uint64_t *len_r)
{
    int rfd = open(t->path, O_RDONLY | O_CLOEXEC);
    if (rfd < 0)
        return -1;
    struct qf_env old;
    char err[128];
    if (qf_read(rfd, &old, err, sizeof(err)) < 0) {
        close(rfd);
        errno = EIO;
        return -1;
    }
    *off_r = old.content_off;
    *len_r = old.content_len;
    qf_env_free(&old);
    return rfd;
}

int cl_tmp_side_open(const struct cl_txn *t, const char *suffix, char *path, size_t size)
{
    str_format(path, size, "%s/%s%s", SPOOL_TMP, t->qid, suffix);
    return queue_tmp_create(path);
}

void cl_tmp_side_done(struct cl_txn *t, int nfd, const char *npath, int ok)
{
    if (!ok) {
        unlink(npath);
        close(nfd);
        return;
    }
    unlink(t->path);        /* the new file replaces the old one (removed */
    close(t->fd);           /* while locked; its name stays held until t is dropped) */
    t->fd = nfd;
    t->old_size = 0;
    str_copy(t->path, sizeof(t->path), npath);
}
