/*
 * spool.c - spool directory names, safe directory creation (by
 * descriptor, never following a symlink) and queue id generation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "mail/spool.h"

const char *const spool_dirs[] = {
    SPOOL_MAILDROP, SPOOL_INCOMING, SPOOL_ACTIVE, SPOOL_DEFERRED, SPOOL_HOLD,
    SPOOL_CORRUPT, SPOOL_QUARANTINE, SPOOL_PRIVATE, SPOOL_PUBLIC, SPOOL_TMP, SPOOL_STS,
    SPOOL_DMARC, NULL
};

int spool_make_dir(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid, buf_t *err)
{
    if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST) {
        buf_printf(err, "cannot create %s: %s", name, strerror(errno));
        return -1;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR)
            buf_printf(err, "%s exists and is not a directory (a symlink?): refusing", name);
        else
            buf_printf(err, "cannot open %s: %s", name, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) {
        buf_printf(err, "%s is not a directory", name);
        close(fd);
        return -1;
    }
    if (uid != (uid_t)-1 && (st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid) < 0) {
        buf_printf(err, "chown %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0) {
        buf_printf(err, "chmod %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void b32(char **p, uint64_t v, int digits)
{
    static const char al[] = "0123456789ABCDEFGHJKLMNPQRSTVWXZ";
    for (int i = digits - 1; i >= 0; i--) {
        (*p)[i] = al[v & 31];
        v >>= 5;
    }
    *p += digits;
}

/* seconds (7 digits = 35 bits), microseconds (4 digits), pid (4 digits),
 * counter (3 digits): 18 characters, sorts by arrival time. */
/* The process id, asked once (a system call costs microseconds on some
 * VMs) and again in a child after fork(). */
static _Atomic pid_t id_pid;

static void id_pid_forget(void)
{
    id_pid = 0;
}

static void id_pid_atfork(void)
{
    pthread_atfork(NULL, NULL, id_pid_forget);
}

static pid_t id_pid_get(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, id_pid_atfork);
    pid_t p = id_pid;
    if (p == 0) {
        p = getpid();
        id_pid = p;
    }
    return p;
}

void queue_id_new(char *id, size_t size)
{
    static _Atomic uint32_t counter;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char tmp[QUEUE_ID_MAX], *p = tmp;
    b32(&p, (uint64_t)tv.tv_sec, 7);
    b32(&p, (uint64_t)tv.tv_usec, 4);
    b32(&p, (uint64_t)id_pid_get(), 4);
    b32(&p, atomic_fetch_add(&counter, 1), 3);
    *p = '\0';
    snprintf(id, size, "%s", tmp);
}

int64_t queue_id_time(const char *id)
{
    static const char al[] = "0123456789ABCDEFGHJKLMNPQRSTVWXZ";
    int64_t t = 0;
    for (int i = 0; i < 7; i++) {
        const char *p = id[i] ? strchr(al, id[i]) : NULL;
        if (p == NULL)
            return 0;
        t = t << 5 | (int64_t)(p - al);
    }
    return t;
}

int queue_id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= QUEUE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return 1;
}
