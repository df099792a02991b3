/*
 * queue.c - message paths, moves between queues, the directory sync and
 * the rename point of the commit protocol (see queue.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
