/*
 * queue.c - message paths, moves between queues, the directory sync and
 * the rename point of the commit protocol (see queue.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
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

#define EXT4_MAGIC 0xEF53          /* ext2, ext3 and ext4 */
#define XFS_MAGIC  0x58465342

/* The file system type /proc/self/mountinfo gives for device dev into
 * out; 0, or -1 when not found. */
static int mount_type(dev_t dev, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return -1;
    char want[32], line[4096];
    snprintf(want, sizeof(want), "%u:%u", major(dev), minor(dev));
    int rc = -1;
    while (rc < 0 && fgets(line, sizeof(line), f) != NULL) {
        /* id parent major:minor root mountpoint options [optional...] - type source super */
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok != NULL && i < 2; i++)
            tok = strtok_r(NULL, " ", &save);
        if (tok == NULL || strcmp(tok, want) != 0)
            continue;
        while ((tok = strtok_r(NULL, " ", &save)) != NULL && strcmp(tok, "-") != 0)
            ;
        if (tok != NULL && (tok = strtok_r(NULL, " ", &save)) != NULL) {
            snprintf(out, size, "%s", tok);
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

int queue_names_follow_file(int dirfd)
{
    struct statfs sf;
    struct stat st;
    char type[64];
    if (fstatfs(dirfd, &sf) < 0 || fstat(dirfd, &st) < 0)
        return 0;
    if ((unsigned long)sf.f_type == XFS_MAGIC)
        return 1;
    if ((unsigned long)sf.f_type == EXT4_MAGIC)
        return mount_type(st.st_dev, type, sizeof(type)) == 0 && strcmp(type, "ext4") == 0;
    return 0;
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
