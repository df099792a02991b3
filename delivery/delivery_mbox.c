/*
 * delivery_mbox.c - mbox delivery: dotlock (<path>.lock) plus an fcntl
 * write lock, "From " separator, Return-Path/Delivered-To, content with
 * mboxrd ">From " quoting, a blank line, fsync.
 *
 * Must never leave a half-written message: on any write error the file is
 * truncated back to its size before we started. Must never wait on a lock
 * forever (bounded retries, then deferred).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "delivery.h"
#include "util/log.h"
#include "mail/mbox_path.h"

#define LOCK_WAIT_MS   10000   /* give up on a busy mailbox after this */
#define LOCK_STEP_MS   200
#define DOTLOCK_STALE  300     /* seconds: an older dotlock is removed */

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Create <path>.lock exclusively; 0, 1 = busy (timed out), -1 = error. */
static int dotlock_take(const char *lock)
{
    for (int waited = 0; ; waited += LOCK_STEP_MS) {
        int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (errno != EEXIST)
            return -1;
        struct stat st;
        if (lstat(lock, &st) == 0 && time(NULL) - st.st_mtime > DOTLOCK_STALE) {
            log_warn("removing stale lock %s", lock);
            unlink(lock);
            continue;
        }
        if (waited >= LOCK_WAIT_MS)
            return 1;
        sleep_ms(LOCK_STEP_MS);
    }
}

/* fcntl write lock on the whole file; 0, 1 = busy (timed out), -1 = error. */
static int fcntl_lock(int fd)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    for (int waited = 0; ; waited += LOCK_STEP_MS) {
        if (fcntl(fd, F_SETLK, &fl) == 0)
            return 0;
        if (errno != EAGAIN && errno != EACCES)
            return -1;
        if (waited >= LOCK_WAIT_MS)
            return 1;
        sleep_ms(LOCK_STEP_MS);
    }
}

/* Content through the quoting filter, in chunks, then the final blank line. */
static int write_quoted(const struct dlv_msg *m, int fd, buf_t *out)
{
    char chunk[65536];
    buf_t carry;
    buf_init(&carry, 64);
    int midline = 0, rc = 0;
    uint64_t done = 0, len = m->env->content_len;
    char last = '\n';
    while (rc == 0 && done < len) {
        size_t want = len - done < sizeof(chunk) ? (size_t)(len - done) : sizeof(chunk);
        /* EIO: the queue file is shorter than its content record */
        if (fdio_pread_all(m->fd, chunk, want, m->env->content_off + (off_t)done) < 0) {
            rc = -1;
            break;
        }
        done += want;
        last = chunk[want - 1];
        buf_append(&carry, chunk, want);
        buf_consume(&carry, mbox_from_quote(out, carry.data, carry.len, 0, &midline));
        if (out->len >= sizeof(chunk)) {
            rc = fdio_write_all(fd, out->data, out->len);
            buf_reset(out);
        }
    }
    if (rc == 0) {
        mbox_from_quote(out, carry.data, carry.len, 1, &midline);
        buf_append_str(out, last == '\n' ? "\n" : "\n\n");
        rc = fdio_write_all(fd, out->data, out->len);
    }
    buf_free(&carry);
    return rc;
}

/* Append one message to an open, locked mailbox; truncate back on error.
 * The file must be a regular one with one link (a hard link would put the
 * mail into another file), and a mailbox the delivering user's own: one
 * that someone else made in a shared spool (/var/mail is writable by the
 * mail group) would be theirs to read. */
static int mbox_append(const struct dlv_msg *m, int fd, const char *rcpt, int mailbox,
                       const char **op_r)
{
    struct stat st;
    *op_r = "fstat";
    if (fstat(fd, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        *op_r = "not a regular file";
        return -1;
    }
    if (st.st_nlink != 1) {
        errno = EPERM;
        *op_r = "more than one link to the file";
        return -1;
    }
    if (mailbox && st.st_uid != geteuid()) {
        errno = EPERM;
        *op_r = "the mailbox belongs to another user";
        return -1;
    }
    buf_t out;
    buf_init(&out, 65536 + 4096);
    struct tm tm;
    time_t now = time(NULL);
    localtime_r(&now, &tm);
    mbox_from_line(&out, m->env->sender, &tm);
    dlv_headers(&out, m->env->sender, rcpt);
    *op_r = "write";
    int rc = write_quoted(m, fd, &out);
    if (rc == 0) {
        *op_r = "fsync";
        rc = fsync(fd);
    }
    buf_free(&out);
    if (rc < 0) {
        int e = errno;
        if (ftruncate(fd, st.st_size) < 0)
            log_error("cannot truncate mailbox back to %lld bytes: %m", (long long)st.st_size);
        errno = e;
    }
    return rc;
}

void delivery_mbox(const struct dlv_msg *m, const char *rcpt, const char *path, int dotlock,
                   int group_rw, struct dlv_result *r)
{
    buf_t lock;
    buf_init(&lock, 128);
    buf_printf(&lock, "%s.lock", path);
    const char *op = "lock";
    int fd = -1, have_dot = 0;
    int lr = dotlock ? dotlock_take(lock.data) : 0;
    if (lr != 0) {
        if (lr > 0) {
            dlv_result_set(r, DS_DEFERRED, "4.2.0", "mbox %s: locked by another process", path);
            goto out;
        }
        op = "create lock";
        goto fail;
    }
    have_dot = dotlock;
    op = "open";
    fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        /* new: the owner's alone, or the owner's and the group's (mail) as
         * Debian's /var/mail wants (the setgid directory gives the group) */
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 && group_rw && fchmod(fd, 0660) < 0)
            log_warn("chmod 0660 %s: %m", path);
    }
    if (fd < 0)
        goto fail;
    op = "lock";
    lr = fcntl_lock(fd);
    if (lr > 0) {
        dlv_result_set(r, DS_DEFERRED, "4.2.0", "mbox %s: locked by another process", path);
        goto out;
    }
    if (lr < 0 || mbox_append(m, fd, rcpt, dotlock, &op) < 0)
        goto fail;
    dlv_result_set(r, DS_DELIVERED, "2.0.0", dotlock ? "delivered to mailbox" : "delivered to file");
    goto out;
fail:;
    int e = errno;
    dlv_result_errno(r, e, "mbox");
    snprintf(r->reason, sizeof(r->reason), "%s %s: %s: %s", dotlock ? "mbox" : "file", path, op,
             strerror(e));
out:
    if (fd >= 0)
        close(fd);          /* releases the fcntl lock */
    if (have_dot)
        unlink(lock.data);
    buf_free(&lock);
}
