/*
 * fsname.c - does fsync() of a file make its newest name durable too?
 * (see fsname.h)
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include "util/fsname.h"

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
    int partial = 0;
    while (rc < 0 && fgets(line, sizeof(line), f) != NULL) {
        int whole = strchr(line, '\n') != NULL;
        int skip = partial;         /* the rest of a line too long for the buffer */
        partial = !whole;
        if (skip || !whole)
            continue;
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

int fs_fsync_covers_name(int dirfd)
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

