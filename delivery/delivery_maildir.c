/*
 * delivery_maildir.c - Maildir delivery: tmp/<name> written and fsynced,
 * link()ed to new/<name>, tmp unlinked, new/ fsynced.
 *
 * <name> is deterministic (arrival, queue id, recipient index, host), so a
 * re-delivery after a crash finds new/<name> and reports delivered instead
 * of writing a duplicate. Must never deliver twice, never report delivered
 * before the data and the directory entry are on disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "delivery.h"
#include "log.h"
#include "mbox_path.h"

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

/* Open the Maildir, creating it and tmp/ new/ cur/ when missing. */
static int maildir_open(const char *dir, struct dlv_result *r)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT) {
        if (mkdir_p(dir) < 0) {
            dlv_result_errno(r, errno, "maildir");
            snprintf(r->reason, sizeof(r->reason), "maildir %s: mkdir: %s", dir, strerror(errno));
            return -1;
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (dfd < 0) {
        int e = errno;
        dlv_result_errno(r, e, "maildir");
        snprintf(r->reason, sizeof(r->reason), "maildir %s: open: %s", dir, strerror(e));
        return -1;
    }
    static const char *const sub[] = { "tmp", "new", "cur" };
    for (int i = 0; i < 3; i++) {
        if (mkdirat(dfd, sub[i], 0700) < 0 && errno != EEXIST) {
            int e = errno;
            dlv_result_errno(r, e, "maildir");
            snprintf(r->reason, sizeof(r->reason), "maildir %s: mkdir %s: %s", dir, sub[i],
                     strerror(e));
            close(dfd);
            return -1;
        }
    }
    return dfd;
}

/* Write tmp/<name>: headers + content, fsync. 0, or -1 with errno and *op_r. */
static int write_tmp(const struct dlv_msg *m, int dfd, const char *tmpname, const char *rcpt,
                     const char **op_r)
{
    *op_r = "create";
    int fd = openat(dfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        /* left over by an attempt that crashed before link(): start again */
        if (unlinkat(dfd, tmpname, 0) < 0)
            return -1;
        fd = openat(dfd, tmpname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (fd < 0)
        return -1;
    buf_t h;
    buf_init(&h, 256);
    dlv_headers(&h, m->env->sender, rcpt);
    *op_r = "write";
    int rc = dlv_write_all(fd, h.data, h.len);
    buf_free(&h);
    if (rc == 0)
        rc = dlv_copy_content(m, fd);
    if (rc == 0) {
        *op_r = "fsync";
        rc = fsync(fd);
    }
    int e = errno;
    if (close(fd) < 0 && rc == 0) {
        *op_r = "close";
        rc = -1;
        e = errno;
    }
    if (rc < 0) {
        unlinkat(dfd, tmpname, 0);
        errno = e;
    }
    return rc;
}

/* fsync a subdirectory of the Maildir so a new entry is durable. */
static int sync_subdir(int dfd, const char *sub)
{
    int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

void delivery_maildir(const struct dlv_msg *m, unsigned index, const char *rcpt,
                      const char *dir, struct dlv_result *r)
{
    int dfd = maildir_open(dir, r);
    if (dfd < 0)
        return;
    buf_t name, tmpn, newn;
    buf_init(&name, 128);
    buf_init(&tmpn, 128);
    buf_init(&newn, 128);
    mbox_maildir_name(&name, m->env->arrival / 1000000, m->qid, index, m->hostname);
    buf_printf(&tmpn, "tmp/%s", name.data);
    buf_printf(&newn, "new/%s", name.data);
    struct stat st;
    const char *op = "stat";
    if (fstatat(dfd, newn.data, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        log_info("%s already in %s/new: not delivering twice", name.data, dir);
        dlv_result_set(r, DS_DELIVERED, "2.0.0", "delivered to maildir");
        goto out;
    }
    if (errno != ENOENT)
        goto fail;
    if (write_tmp(m, dfd, tmpn.data, rcpt, &op) < 0)
        goto fail;
    op = "link";
    if (linkat(dfd, tmpn.data, dfd, newn.data, 0) < 0 && errno != EEXIST) {
        int e = errno;
        unlinkat(dfd, tmpn.data, 0);
        errno = e;
        goto fail;
    }
    unlinkat(dfd, tmpn.data, 0);
    op = "fsync new/";
    if (sync_subdir(dfd, "new") < 0)
        goto fail;
    dlv_result_set(r, DS_DELIVERED, "2.0.0", "delivered to maildir");
    goto out;
fail:;
    int e = errno;
    dlv_result_errno(r, e, "maildir");
    snprintf(r->reason, sizeof(r->reason), "maildir %s: %s: %s", dir, op, strerror(e));
out:
    close(dfd);
    buf_free(&name);
    buf_free(&tmpn);
    buf_free(&newn);
}
