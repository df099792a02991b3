/*
 * logdest.c - the log destination rule (logdest.h) and opening the log
 * file safely as root.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "daemon/logdest.h"
#include "mail/spool.h"

enum logdest logdest_of(const struct config *cfg, buf_t *path_r, int *fallback_r)
{
    *fallback_r = 0;
    buf_reset(path_r);
    if (cfg->log_file && cfg->log_file[0]) {
        buf_append_str(path_r, cfg->log_file);
        return LOGDEST_FILE;
    }
    if (access("/dev/log", W_OK) == 0)
        return LOGDEST_SYSLOG;
    buf_printf(path_r, "%s/%s", cfg->spool, LOGDEST_FALLBACK);
    *fallback_r = 1;
    return LOGDEST_FILE;
}

/* fd must be a regular file with one link (not a device, FIFO or a hard
 * link someone made to another file). */
static int check_file(int fd, const char *path, buf_t *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        buf_printf(err, "%s: not a regular file with one link: refusing to log there", path);
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

static int open_fallback(const struct config *cfg, buf_t *err)
{
    int sfd = open(cfg->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0) {
        buf_printf(err, "%s: %s", cfg->spool, strerror(errno));
        return -1;
    }
    int root = geteuid() == 0;
    int dfd = spool_make_dir(sfd, "log", 0750, root ? 0 : (uid_t)-1, root ? 0 : (gid_t)-1, err);
    close(sfd);
    if (dfd < 0)
        return -1;
    int fd = openat(dfd, "postern.log",
                    O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0640);
    int e = errno;
    close(dfd);
    if (fd < 0) {
        buf_printf(err, "%s/%s: %s", cfg->spool, LOGDEST_FALLBACK, strerror(e));
        return -1;
    }
    return check_file(fd, LOGDEST_FALLBACK, err);
}

int logdest_open(const struct config *cfg, buf_t *err)
{
    if (!cfg->log_file || !cfg->log_file[0])
        return open_fallback(cfg, err);
    int fd = open(cfg->log_file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
                  O_CLOEXEC, 0640);
    if (fd < 0) {
        buf_printf(err, "log.file %s: %s", cfg->log_file,
                   errno == ELOOP ? "a symbolic link: refusing to log there" : strerror(errno));
        return -1;
    }
    return check_file(fd, cfg->log_file, err);
}
