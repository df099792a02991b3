/*
 * master_log.c - the log file (log.file, or <spool>/log/postern.log when
 * there is no /dev/log): master alone holds it open and writes it. The
 * children log to stderr, which is one end of a datagram socket pair whose
 * other end master reads: each line is one datagram, so lines of
 * concurrent processes never interleave, and a reopen (SIGUSR1, or SIGHUP
 * along with the reload: logrotate renames the file first) takes effect
 * for every process at once, jailed ones included. master's own lines go
 * straight to the file.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "master.h"
#include "daemon/logdest.h"
#include "util/log.h"
#include "util/log_event.h"

static int file_fd = -1;
static int sink[2] = { -1, -1 };    /* [0] master reads, [1] children's stderr */

int mlog_setup(buf_t *err)
{
    buf_t path;
    buf_init(&path, 64);
    int fallback;
    enum logdest d = logdest_of(M.cfg, &path, &fallback);
    buf_free(&path);
    if (d != LOGDEST_FILE || (M.foreground && fallback))
        return 0;                   /* syslog, or `run` on stderr */
    file_fd = logdest_open(M.cfg, err);
    if (file_fd < 0)
        return -1;
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sink) < 0) {
        buf_printf(err, "socketpair: %s", strerror(errno));
        return -1;
    }
    int big = 1 << 20;              /* bursts wait in the kernel, not in children */
    setsockopt(sink[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    log_set_fd(file_fd);
    log_set_format(1, M.cfg->log_json);
    return 0;
}

int mlog_active(void) { return file_fd >= 0; }
int mlog_child_fd(void) { return sink[1]; }
int mlog_poll_fd(void) { return sink[0]; }

/* Every datagram waiting, written as it came (one line each). */
void mlog_input(void)
{
    static char b[65536];
    for (int i = 0; i < 4096 && sink[0] >= 0; i++) {
        ssize_t n = recv(sink[0], b, sizeof(b), MSG_DONTWAIT);
        if (n <= 0)
            return;
        if (write(file_fd, b, (size_t)n) < 0) { /* disk full: nothing better to do */ }
    }
}

/* logrotate moved the file away: open the configured path again. */
void mlog_reopen(void)
{
    if (file_fd < 0)
        return;
    mlog_input();                   /* what was sent before goes to the old file */
    buf_t err;
    buf_init(&err, 64);
    int fd = logdest_open(M.cfg, &err);
    if (fd < 0) {
        log_error("cannot reopen the log file: %s: still writing the old one", err.data);
    } else {
        dup2(fd, file_fd);          /* same number: log.c keeps writing to file_fd */
        close(fd);
        buf_t path;
        buf_init(&path, 64);
        int fallback;
        logdest_of(M.cfg, &path, &fallback);
        struct log_ev e;
        log_ev_init(&e, LE_REOPEN);
        log_ev_str(&e, LF_PATH, path.data);
        log_ev_emit(&e);
        buf_free(&path);
    }
    buf_free(&err);
}
