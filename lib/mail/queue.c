/*
 * queue.c - message paths, moves between queues, the directory sync and
 * the rename point of the commit protocol (see queue.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail/queue.h"

int queue_path(char *out, size_t size, const char *queue, const char *id)
{
    if (!queue_id_valid(id)) {
        errno = EINVAL;
        return -1;
    }
    int n = snprintf(out, size, "%s/%s", queue, id);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int queue_fsync_dir(int base, const char *dir)
{
    int fd = openat(base, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

int queue_move(int base, const char *from, const char *to, const char *id, unsigned flags)
{
    char src[512], dst[512];
    if (queue_path(src, sizeof(src), from, id) < 0 || queue_path(dst, sizeof(dst), to, id) < 0)
        return -1;
    unsigned rflags = (flags & QUEUE_MV_NOREPLACE) ? RENAME_NOREPLACE : 0;
    if (renameat2(base, src, base, dst, rflags) < 0)
        return -1;
    if ((flags & QUEUE_MV_SYNC) && queue_fsync_dir(base, to) < 0)
        return -1;
    return 0;
}

int queue_quarantine_dir(int base, const char *name, char *dir, size_t size)
{
    if (queue_dir_of(name, dir, size) < 0)
        return -1;
    if (mkdirat(base, dir, 0700) == 0)
        return queue_fsync_dir(base, SPOOL_QUARANTINE);
    return errno == EEXIST ? 0 : -1;
}

int queue_dir_of(const char *qname, char *out, size_t size)
{
    int n = qname[0] ? snprintf(out, size, "%s/%s", SPOOL_QUARANTINE, qname)
                     : snprintf(out, size, "%s", SPOOL_INCOMING);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int queue_publish(const char *tmp_path, const char *qname, const char *id,
                  char *dst, size_t dstsize)
{
    char dir[256];
    if (queue_dir_of(qname, dir, sizeof(dir)) < 0 || queue_path(dst, dstsize, dir, id) < 0)
        return -1;
    return rename(tmp_path, dst);
}

int queue_tmp_create(const char *path)
{
    for (int tries = 0; tries < 3; tries++) {
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return -1;
        /* only a purge can hold a file just made, for an instant (it
         * unlinks before it lets go): wait, then see it is still linked */
        int r;
        struct stat st;
        while ((r = flock(fd, LOCK_EX)) < 0 && errno == EINTR)
            ;
        if (r == 0 && fstat(fd, &st) == 0) {
            if (st.st_nlink > 0)
                return fd;
            close(fd);              /* purged meanwhile: made again */
            continue;
        }
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    errno = EAGAIN;
    return -1;
}

int queue_tmp_take(int fd, const char *path, struct stat *st)
{
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 || fstat(fd, st) < 0)
        return -1;
    /* another process may have taken it, written it and renamed it away
     * (still linked) before letting go */
    struct stat pst;
    if (lstat(path, &pst) == 0 && pst.st_dev == st->st_dev && pst.st_ino == st->st_ino)
        return 0;
    errno = ENOENT;
    return -1;
}

int queue_tmp_remove(int dfd, const char *name)
{
    /* O_NONBLOCK: never wait on a FIFO; what cannot be opened (a symlink,
     * another user's file) is nobody's of ours */
    int fd = openat(dfd, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return 0;                   /* in use */
    }
    int r = unlinkat(dfd, name, 0) == 0;    /* (while locked) */
    if (fd >= 0)
        close(fd);
    return r;
}

int queue_tmp_purge(int base, const char *dir, const char *skip_prefix, int *removed)
{
    *removed = 0;
    int dfd = openat(base, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (d == NULL) {
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    size_t skiplen = skip_prefix ? strlen(skip_prefix) : 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (queue_tmp_remove(dfd, name))
            *removed += !(skiplen && strncmp(name, skip_prefix, skiplen) == 0);
    }
    closedir(d);
    return 0;
}
