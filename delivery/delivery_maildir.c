/*
 * delivery_maildir.c - Maildir delivery.
 *
 * Per recipient: tmp/<name> gets the headers + content, is given its name
 * new/<name> (renameat2 RENAME_NOREPLACE; link + unlink where the file
 * system has no RENAME_NOREPLACE), then fsynced. On ext4 and XFS that one
 * sync also makes the new name durable (lib/util/fsname.h); elsewhere new/
 * is fsynced too, once per request for all recipients delivered into that
 * Maildir (delivery_maildir_sync(), before any status is reported).
 *
 * Why naming before the sync is safe. A reader sees new/<name> only
 * complete: every byte is written (page cache) before the name. Nothing is
 * reported delivered until the file's fsync (and new/'s, where needed) is
 * done. A power cut in between may leave new/<name> naming a file the disk
 * kept only in part (or an inode fsck removed the name of); the message is
 * still in the queue and comes again. Then new/<name> is there: it counts
 * as delivered only if it holds exactly the bytes this delivery would
 * write (same_content(): size, then every byte), and is fsynced again; a
 * file that differs is removed and written anew. So a torn file is never
 * taken for a delivered one, and a whole one is never delivered twice.
 *
 * The Maildir and its tmp/ and new/ are kept open in a small LRU cache
 * (keyed by path; the path is re-checked against the cached inode at most
 * once a second, and at once when an operation on a cached directory
 * fails), so a delivery does no path walk and no mkdir: those happen
 * only when a Maildir is opened.
 *
 * <name> is deterministic (arrival, queue id, recipient index, host), so a
 * re-delivery after a crash finds new/<name> (the link fails with EEXIST,
 * or a failed attempt finds it there) and, when it holds the same bytes,
 * reports delivered instead of writing a duplicate. Must never deliver
 * twice, never report delivered before the data and the directory entry
 * are on disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "delivery.h"
#include "util/fsname.h"
#include "util/log.h"
#include "mail/mbox_path.h"

#define MD_CACHE_MAX     64     /* open Maildirs kept */
#define MD_RECHECK_SECS  1      /* path re-checked against the cached inode */

struct md_dir {
    char *path;                 /* NULL = free slot */
    int dfd, tmpfd, newfd;
    dev_t dev;
    ino_t ino;
    time_t checked;             /* CLOCK_MONOTONIC_COARSE seconds */
    uint64_t used;              /* LRU tick */
    int name_with_file;         /* ext4/XFS: the file's fsync covers new/ (fsname.h) */
    /* recipients named in new/ whose new/ is not fsynced yet */
    struct dlv_result **pend;
    size_t npend, cap;
};

static struct md_dir cache[MD_CACHE_MAX];
static uint64_t tick;

static time_t now_coarse(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return ts.tv_sec;
}

/* mkdir -p with mode 0700 for every missing component. */
static int mkdir_p(const char *path)
{
    buf_t p;
    buf_init(&p, strlen(path) + 1);
    buf_append_str(&p, path);
    int rc = 0;
    for (size_t i = 1; i <= p.len && rc == 0; i++) {
        if (i < p.len && p.data[i] != '/')
            continue;
        char save = p.data[i];
        p.data[i] = '\0';
        if (mkdir(p.data, 0700) < 0 && errno != EEXIST)
            rc = -1;
        p.data[i] = save;
    }
    buf_free(&p);
    return rc;
}

static void set_fail(struct dlv_result *r, int e, const char *dir, const char *op)
{
    dlv_result_errno(r, e, "maildir");
    snprintf(r->reason, sizeof(r->reason), "maildir %s: %s: %s", dir, op, strerror(e));
}

/* Open subdirectory sub of dfd, creating it when missing. */
static int open_sub(int dfd, const char *sub)
{
    int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (mkdirat(dfd, sub, 0700) < 0 && errno != EEXIST)
            return -1;
        fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    return fd;
}

/* fsync new/ of e once for every recipient waiting on it; a failure defers
 * them all. */
static void md_flush(struct md_dir *e)
{
    if (e->npend == 0)
        return;
    if (fsync(e->newfd) < 0) {
        int err = errno;
        for (size_t i = 0; i < e->npend; i++)
            set_fail(e->pend[i], err, e->path, "fsync new/");
    }
    e->npend = 0;
}

static void md_close(struct md_dir *e)
{
    md_flush(e);
    close(e->dfd);
    close(e->tmpfd);
    close(e->newfd);
    free(e->path);
    free(e->pend);
    memset(e, 0, sizeof(*e));
}

/* fs_fsync_covers_name for new/ (fd), remembered for the last device
 * seen: it reads /proc/self/mountinfo. */
static int name_with_file(int fd)
{
    static dev_t last_dev;
    static int last = -1;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return 0;
    if (last < 0 || st.st_dev != last_dev) {
        last = fs_fsync_covers_name(fd);
        last_dev = st.st_dev;
    }
    return last;
}

/* Open the Maildir at dir into slot e, creating it and tmp/ new/ cur/ when
 * missing. 0, or -1 with r set. */
static int md_open(struct md_dir *e, const char *dir, struct dlv_result *r)
{
    const char *op = "open";
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT) {
        if (mkdir_p(dir) < 0) {
            set_fail(r, errno, dir, "mkdir");
            return -1;
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (dfd < 0) {
        set_fail(r, errno, dir, op);
        return -1;
    }
    struct stat st;
    int tmpfd = -1, newfd = -1;
    if (fstat(dfd, &st) < 0) {
        op = "fstat";
        goto fail;
    }
    op = "mkdir tmp";
    if ((tmpfd = open_sub(dfd, "tmp")) < 0)
        goto fail;
    op = "mkdir new";
    if ((newfd = open_sub(dfd, "new")) < 0)
        goto fail;
    op = "mkdir cur";
    if (mkdirat(dfd, "cur", 0700) < 0 && errno != EEXIST)
        goto fail;
    memset(e, 0, sizeof(*e));
    e->path = xstrdup(dir);
    e->dfd = dfd;
    e->tmpfd = tmpfd;
    e->newfd = newfd;
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->checked = now_coarse();
    e->name_with_file = name_with_file(newfd);
    return 0;
fail:;
    int err = errno;
    set_fail(r, err, dir, op);
    close(dfd);
    if (tmpfd >= 0)
        close(tmpfd);
    if (newfd >= 0)
        close(newfd);
    return -1;
}

/* Is the cached Maildir still what its path names? */
static int md_valid(const struct md_dir *e)
{
    struct stat st;
    return stat(e->path, &st) == 0 && st.st_dev == e->dev && st.st_ino == e->ino;
}

/* The cache entry for dir (opened if needed); NULL with r set. */
static struct md_dir *md_get(const char *dir, struct dlv_result *r)
{
    struct md_dir *e = NULL, *lru = NULL;
    for (int i = 0; i < MD_CACHE_MAX; i++) {
        struct md_dir *c = &cache[i];
        if (c->path == NULL) {
            if (lru == NULL || lru->path != NULL)
                lru = c;
            continue;
        }
        if (strcmp(c->path, dir) == 0) {
            e = c;
            break;
        }
        if (lru == NULL || (lru->path != NULL && c->used < lru->used))
            lru = c;
    }
    if (e != NULL) {
        time_t now = now_coarse();
        if (now - e->checked < MD_RECHECK_SECS) {
            e->used = ++tick;
            return e;
        }
        if (md_valid(e)) {
            e->checked = now;
            e->used = ++tick;
            return e;
        }
        md_close(e);        /* replaced or gone: open it again */
        lru = e;
    } else if (lru->path != NULL) {
        md_close(lru);      /* evict (its pending recipients are synced first) */
    }
    if (md_open(lru, dir, r) < 0)
        return NULL;
    lru->used = ++tick;
    return lru;
}

/* Reopen e after an operation on it failed, if a directory was removed or
 * replaced. 1 = reopened (retry), 0 = it was fine, -1 = error. */
static int md_reopen(struct md_dir **ep, struct dlv_result *r)
{
    struct md_dir *e = *ep;
    struct stat st;
    if (md_valid(e) && fstat(e->tmpfd, &st) == 0 && st.st_nlink > 0 &&
        fstat(e->newfd, &st) == 0 && st.st_nlink > 0)
        return 0;
    char *dir = xstrdup(e->path);
    md_close(e);
    int rc = md_open(e, dir, r) < 0 ? -1 : 1;
    if (rc > 0)
        e->used = ++tick;
    free(dir);
    return rc;
}

static void md_pend(struct md_dir *e, struct dlv_result *r)
{
    if (e->npend == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 8;
        e->pend = xrealloc(e->pend, e->cap * sizeof(*e->pend));
    }
    e->pend[e->npend++] = r;
}

void delivery_maildir_forget(void)
{
    for (int i = 0; i < MD_CACHE_MAX; i++)
        if (cache[i].path != NULL) {
            close(cache[i].dfd);
            close(cache[i].tmpfd);
            close(cache[i].newfd);
            free(cache[i].path);
            free(cache[i].pend);
            memset(&cache[i], 0, sizeof(cache[i]));
        }
}

void delivery_maildir_sync(void)
{
    for (int i = 0; i < MD_CACHE_MAX; i++)
        if (cache[i].path != NULL)
            md_flush(&cache[i]);
}

/* Headers + content into fd (at its current offset). 0 or -1 (errno). */
static int write_message(const struct dlv_msg *m, int fd, const char *rcpt)
{
    buf_t h;
    buf_init(&h, 256);
    dlv_headers(&h, m->env->sender, rcpt);
    int rc;
    if (m->content != NULL) {
        struct iovec iov[2] = {
            { h.data, h.len },
            { (void *)m->content, (size_t)m->env->content_len },
        };
        rc = fdio_writev_all(fd, iov, 2);
    } else {
        rc = fdio_write_all(fd, h.data, h.len);
        if (rc == 0)
            rc = dlv_copy_content(m, fd);
    }
    buf_free(&h);
    return rc;
}

/* Close fd after rc: a close error fails what had succeeded; errno and
 * *op_r stay those of the first failure. */
static int close_after(int fd, int rc, const char **op_r)
{
    int err = errno;
    if (close(fd) < 0 && rc == 0) {
        *op_r = "close";
        rc = -1;
        err = errno;
    }
    errno = err;
    return rc;
}

static void log_already(const struct md_dir *e, const char *name)
{
    log_info("%s already in %s/new: not delivering twice", name, e->path);
}

/* Does fd hold, at off, the n bytes at p (p NULL: the n bytes of the queue
 * file m->fd at poff)? 1 yes, 0 no, -1 error reading the queue file. */
static int bytes_equal(int fd, off_t off, const unsigned char *p, const struct dlv_msg *m,
                       off_t poff, size_t n)
{
    static unsigned char have[65536], want[65536];
    while (n > 0) {
        size_t k = n < sizeof(have) ? n : sizeof(have);
        if (fdio_pread_all(fd, have, k, off) < 0)
            return 0;                   /* shorter, or unreadable: not the message */
        const unsigned char *w = p;
        if (w == NULL) {
            if (fdio_pread_all(m->fd, want, k, poff) < 0)
                return -1;
            w = want;
            poff += (off_t)k;
        } else {
            p += k;
        }
        if (memcmp(have, w, k) != 0)
            return 0;
        off += (off_t)k;
        n -= k;
    }
    return 1;
}

/* Does fd hold exactly what write_message() writes for rcpt? 1 yes, 0 no,
 * -1 error (errno). */
static int same_content(const struct dlv_msg *m, int fd, const char *rcpt)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    buf_t h;
    buf_init(&h, 256);
    dlv_headers(&h, m->env->sender, rcpt);
    int same = S_ISREG(st.st_mode) && (uint64_t)st.st_size == h.len + m->env->content_len;
    if (same)
        same = bytes_equal(fd, 0, (const unsigned char *)h.data, m, 0, h.len);
    if (same > 0)
        same = bytes_equal(fd, (off_t)h.len, m->content, m, m->env->content_off,
                           (size_t)m->env->content_len);
    buf_free(&h);
    return same;
}

/* new/<name> is there (an earlier attempt linked it and crashed, or failed
 * after the link): 1 = it holds this delivery's bytes and is now fsynced
 * (delivered), 0 = it was not there, or differed and was removed (deliver
 * again), -1 = error (errno). Logged when it counts as delivered; errno
 * kept when it was not there. */
static int existing(const struct md_dir *e, const char *name, const struct dlv_msg *m,
                    const char *rcpt)
{
    int err = errno;
    int fd = openat(e->newfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            return -1;
        errno = err;
        return 0;
    }
    int same = same_content(m, fd, rcpt);
    if (same > 0 && fsync(fd) < 0)
        same = -1;
    int e2 = errno;
    close(fd);
    if (same > 0) {
        log_already(e, name);
        return 1;
    }
    if (same < 0) {
        errno = e2;
        return -1;
    }
    log_warn("%s in %s/new is not the whole message (left by a crash?): writing it again",
             name, e->path);
    if (unlinkat(e->newfd, name, 0) < 0 && errno != ENOENT)
        return -1;
    errno = err;
    return 0;
}

/* tmp/<name> created for writing: a file left there by an attempt that
 * crashed before naming it in new/ is removed first. fd, or -1 (errno). */
static int create_tmp(const struct md_dir *e, const char *name)
{
    int fd = openat(e->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        if (unlinkat(e->tmpfd, name, 0) < 0)
            return -1;
        fd = openat(e->tmpfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    return fd;
}

/* tmp/<name> becomes new/<name>, never over another file: renameat2 with
 * RENAME_NOREPLACE, or link + unlink where the file system lacks it. 0, or
 * -1 with errno (EEXIST: new/<name> is there). */
static int name_file(const struct md_dir *e, const char *name)
{
    if (renameat2(e->tmpfd, name, e->newfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    if (linkat(e->tmpfd, name, e->newfd, name, 0) < 0)
        return -1;
    unlinkat(e->tmpfd, name, 0);
    return 0;
}

/* fsync and close fd, just named new/<name> by this attempt. A failure
 * takes the name back (unlinked): after a failed fsync the page cache may
 * hold what the disk does not, and a later attempt must write the file
 * again, never find this one and count it. 0, or -1 with errno and *op_r. */
static int sync_named(const struct md_dir *e, int fd, const char *name, const char **op_r)
{
    *op_r = "fsync";
    int rc = close_after(fd, fsync(fd), op_r);
    if (rc < 0) {
        int err = errno;
        if (unlinkat(e->newfd, name, 0) < 0 && errno != ENOENT)
            log_error("%s/new/%s could not be synced nor removed: %s", e->path, name,
                      strerror(errno));
        errno = err;
    }
    return rc;
}

/* Write tmp/<name>, name it new/<name>, fsync it. 0 (*dirsync set when
 * new/ must still be fsynced: the file system needs it, or an earlier
 * attempt's file counted), or -1 with errno and *op_r (*named set when it
 * failed after naming the file: see sync_named). */
static int deliver(const struct dlv_msg *m, const struct md_dir *e, const char *name,
                   const char *rcpt, const char **op_r, int *dirsync, int *named)
{
    *dirsync = !e->name_with_file;
    *op_r = "create";
    int fd = create_tmp(e, name);
    if (fd < 0)
        return -1;
    *op_r = "write";
    int rc = write_message(m, fd, rcpt);
    if (rc == 0) {
        *op_r = "rename";
        rc = name_file(e, name);
        if (rc < 0 && errno == EEXIST) {
            int x = existing(e, name, m, rcpt);
            if (x > 0) {                /* delivered by an earlier attempt */
                unlinkat(e->tmpfd, name, 0);
                *dirsync = 1;           /* its name: not known to be synced */
                return close_after(fd, 0, op_r);
            }
            rc = x < 0 ? -1 : name_file(e, name);
        }
        if (rc == 0) {
            *named = 1;
            return sync_named(e, fd, name, op_r);
        }
    }
    int err = errno;
    unlinkat(e->tmpfd, name, 0);
    errno = err;
    return close_after(fd, -1, op_r);
}

void delivery_maildir(const struct dlv_msg *m, unsigned index, const char *rcpt,
                      const char *dir, struct dlv_result *r)
{
    struct md_dir *e = md_get(dir, r);
    if (e == NULL)
        return;
    buf_t name;
    buf_init(&name, 128);
    mbox_maildir_name(&name, m->env->arrival / 1000000, m->qid, index, m->hostname);
    const char *op = "create";
    int retried = 0, rc;
again:
    /* no stat of new/<name> first (a syscall per message for a retry's
     * sake): naming it says EEXIST when it is there, and a failure looks
     * for it before it counts (a full disk must not hold back the answer
     * for a message delivered before a crash) */
    int dirsync, named = 0;
    rc = deliver(m, e, name.data, rcpt, &op, &dirsync, &named);
    if (rc < 0 && !named) {
        /* delivered before a crash, and now failing (a full disk, say)? */
        int err = errno;
        if (existing(e, name.data, m, rcpt) > 0) {
            rc = 0;
            dirsync = 1;
        }
        errno = err;
    }
    if (rc < 0 && !retried) {
        /* tmp/ or new/ removed or replaced under us (ENOENT)? Then open
         * it again, once. */
        int err = errno;
        retried = 1;
        int rr = md_reopen(&e, r);
        if (rr > 0)
            goto again;
        if (rr < 0)
            goto out;
        errno = err;
    }
    if (rc < 0) {
        set_fail(r, errno, dir, op);
        goto out;
    }
    dlv_result_set(r, DS_DELIVERED, "2.0.0", "delivered to maildir");
    if (dirsync)
        md_pend(e, r);          /* delivered once new/ is fsynced (delivery_maildir_sync) */
out:
    buf_free(&name);
}
