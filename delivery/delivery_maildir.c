/*
 * delivery_maildir.c - Maildir delivery.
 *
 * On ext4 and XFS (lib/util/fsname.h: there a file's fsync also makes the
 * name a rename just gave it durable): tmp/<name> gets the headers +
 * content, is renamed to new/<name> (RENAME_NOREPLACE), then fsynced: one
 * sync per delivery, nothing else.
 *
 * Elsewhere: an anonymous file (O_TMPFILE in <maildir>/tmp) gets the
 * headers + content, linkat() gives it its name new/<name>, then the file
 * is fsynced once (data, and the inode with its link count). new/ is
 * fsynced once per request for all recipients delivered into that Maildir
 * (delivery_maildir_sync(), before any status is reported). Two syncs per
 * delivery, the file's and a share of the directory's. Where O_TMPFILE is
 * unsupported: tmp/<name> written and fsynced, link()ed to new/<name>, tmp
 * unlinked (the classic way).
 *
 * Why naming before the sync is safe. A reader sees new/<name> only
 * complete: every byte is written (page cache) before the link. Nothing is
 * reported delivered until the file's fsync (and new/'s, where needed) is
 * done.
 * A power cut between the link and the syncs may leave new/<name> naming a
 * file the disk kept only in part (or an inode fsck removed the name of);
 * the message is still in the queue and comes again. Then new/<name> is
 * there: it counts as delivered only if it holds exactly the bytes this
 * delivery would write (same_content(): size, then every byte), and is
 * fsynced again; a file that differs is removed and written anew. So a
 * torn file is never taken for a delivered one, and a whole one is never
 * delivered twice.
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
    int no_tmpfile;             /* O_TMPFILE refused here: classic tmp/ files */
    int name_with_file;         /* ext4/XFS: the file's fsync covers new/ (fsname.h) */
    /* recipients linked into new/ whose new/ is not fsynced yet */
    struct dlv_result **pend;
    size_t npend, cap;
};

static struct md_dir cache[MD_CACHE_MAX];
static uint64_t tick;
static int proc_link = -1;      /* -1 unknown, 0 AT_EMPTY_PATH works, 1 use /proc/self/fd */

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

/* The message to fd, then fsync: 0, or -1 with errno and *op_r. */
static int write_synced(const struct dlv_msg *m, int fd, const char *rcpt, const char **op_r)
{
    *op_r = "write";
    int rc = write_message(m, fd, rcpt);
    if (rc == 0) {
        *op_r = "fsync";
        rc = fsync(fd);
    }
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

/* Does fd hold exactly what write_message() writes for rcpt? 1 yes, 0 no,
 * -1 error (errno). */
static int same_content(const struct dlv_msg *m, int fd, const char *rcpt)
{
    struct stat st;
    buf_t want, have;
    if (fstat(fd, &st) < 0)
        return -1;
    buf_init(&want, 256);
    dlv_headers(&want, m->env->sender, rcpt);
    uint64_t total = want.len + m->env->content_len;
    int same = S_ISREG(st.st_mode) && (uint64_t)st.st_size == total;
    buf_init(&have, 0);
    /* the header lines, then the content chunk by chunk */
    if (same && (fdio_pread_buf(fd, 0, want.len, &have) < 0 ||
                 have.len != want.len || memcmp(have.data, want.data, want.len) != 0))
        same = 0;
    off_t at = (off_t)want.len;
    uint64_t left = m->env->content_len, done = 0;
    buf_t ref;
    buf_init(&ref, 0);
    while (same && left > 0) {
        size_t n = left > 65536 ? 65536 : (size_t)left;
        have.len = 0;
        if (fdio_pread_buf(fd, at, n, &have) < 0 || have.len != n) {
            same = 0;
            break;
        }
        const void *r;
        if (m->content != NULL) {
            r = m->content + done;
        } else {
            ref.len = 0;
            if (fdio_pread_buf(m->fd, m->env->content_off + (off_t)done, n, &ref) < 0 ||
                ref.len != n) {
                buf_free(&ref);
                buf_free(&have);
                buf_free(&want);
                return -1;
            }
            r = ref.data;
        }
        if (memcmp(have.data, r, n) != 0)
            same = 0;
        at += (off_t)n;
        done += n;
        left -= n;
    }
    buf_free(&ref);
    buf_free(&have);
    buf_free(&want);
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

/* Classic: write tmp/<name>, fsync, link to new/<name> (EEXIST: see
 * existing()), unlink tmp. 0, or -1 with errno and *op_r. */
static int deliver_classic(const struct dlv_msg *m, const struct md_dir *e, const char *name,
                           const char *rcpt, const char **op_r)
{
    *op_r = "create";
    int fd = create_tmp(e, name);
    if (fd < 0)
        return -1;
    int rc = close_after(fd, write_synced(m, fd, rcpt, op_r), op_r);
    int err = errno;
    if (rc == 0) {
        *op_r = "link";
        if (linkat(e->tmpfd, name, e->newfd, name, 0) < 0) {
            rc = -1;
            err = errno;
            if (err == EEXIST) {
                int x = existing(e, name, m, rcpt);
                if (x > 0)
                    rc = 0;
                else if (x == 0 && linkat(e->tmpfd, name, e->newfd, name, 0) == 0)
                    rc = 0;
                else
                    err = errno;
            }
        }
    }
    unlinkat(e->tmpfd, name, 0);
    errno = err;
    return rc;
}

/* Give the anonymous file fd the name new/<name>: 0, -1 (errno), or 1 =
 * this process cannot link anonymous files (no AT_EMPTY_PATH permission
 * and no /proc). */
static int link_tmpfile(int fd, int newfd, const char *name)
{
    if (proc_link <= 0) {
        if (linkat(fd, "", newfd, name, AT_EMPTY_PATH) == 0) {
            proc_link = 0;
            return 0;
        }
        /* without CAP_DAC_READ_SEARCH (kernels before 6.10): ENOENT or EPERM */
        if (proc_link == 0 || (errno != ENOENT && errno != EPERM))
            return -1;
    }
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, p, newfd, name, AT_SYMLINK_FOLLOW) == 0) {
        proc_link = 1;
        return 0;
    }
    int e = errno;
    struct stat st;
    if (proc_link < 0 && (e == ENOENT || e == EPERM || e == EACCES) &&
        fstat(newfd, &st) == 0 && st.st_nlink > 0)
        return 1;       /* new/ is there: it is the link method that fails */
    errno = e;
    return -1;
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

/* ext4/XFS: write tmp/<name>, rename it to new/<name> (never over
 * another file), fsync it: that sync covers the new name too. 0 (*dirsync
 * set when new/ must still be fsynced: an earlier attempt's file counted),
 * or -1 with errno and *op_r (*named set when it failed after naming the
 * file: see sync_named). */
static int deliver_renamed(const struct dlv_msg *m, const struct md_dir *e, const char *name,
                           const char *rcpt, const char **op_r, int *dirsync, int *named)
{
    *op_r = "create";
    int fd = create_tmp(e, name);
    if (fd < 0)
        return -1;
    *op_r = "write";
    int rc = write_message(m, fd, rcpt);
    if (rc == 0) {
        *op_r = "rename";
        rc = renameat2(e->tmpfd, name, e->newfd, name, RENAME_NOREPLACE);
        if (rc < 0 && errno == EEXIST) {
            int x = existing(e, name, m, rcpt);
            if (x > 0) {                /* delivered by an earlier attempt */
                unlinkat(e->tmpfd, name, 0);
                *dirsync = 1;           /* its name: not known to be synced */
                return close_after(fd, 0, op_r);
            }
            rc = x < 0 ? -1 : renameat2(e->tmpfd, name, e->newfd, name, RENAME_NOREPLACE);
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

/* O_TMPFILE in tmp/: write, link to new/<name>, fsync (data, and the
 * link count). 0, 1 = O_TMPFILE (or linking it) not supported, or -1 with
 * errno and *op_r. new/<name> already there (EEXIST): 0 if it holds this
 * delivery's bytes (existing()), else it is replaced. */
static int deliver_tmpfile(const struct dlv_msg *m, const struct md_dir *e, const char *name,
                           const char *rcpt, const char **op_r, int *named)
{
    *op_r = "create";
    int fd = openat(e->tmpfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)
            return 1;
        return -1;
    }
    *op_r = "write";
    int rc = write_message(m, fd, rcpt);
    if (rc == 0) {
        *op_r = "link";
        rc = link_tmpfile(fd, e->newfd, name);
        if (rc > 0) {
            close(fd);
            return 1;
        }
        if (rc < 0 && errno == EEXIST) {
            int x = existing(e, name, m, rcpt);
            if (x > 0)
                return close_after(fd, 0, op_r);    /* delivered by an earlier attempt */
            rc = x < 0 ? -1 : link_tmpfile(fd, e->newfd, name);
        }
        if (rc == 0) {
            *named = 1;
            return sync_named(e, fd, name, op_r);
        }
    }
    return close_after(fd, rc, op_r);
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
     * sake): the link says EEXIST when it is there, and a failure looks
     * for it before it counts (a full disk must not hold back the answer
     * for a message delivered before a crash) */
    int dirsync = 1, named = 0;
    if (e->name_with_file) {
        dirsync = 0;
        rc = deliver_renamed(m, e, name.data, rcpt, &op, &dirsync, &named);
    } else {
        rc = e->no_tmpfile ? 1 : deliver_tmpfile(m, e, name.data, rcpt, &op, &named);
    }
    if (rc > 0) {
        e->no_tmpfile = 1;
        rc = deliver_classic(m, e, name.data, rcpt, &op);
    }
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
        /* tmp/ or new/ removed or replaced under us (ENOENT, or EPERM for
         * O_TMPFILE in a removed directory)? Then open it again, once. */
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
