/*
 * smtpd_local.c - is a recipient at a local domain someone we deliver to?
 * (lib/local/local_rcpt.h; the default policy answers 550 5.1.1 when not.)
 *
 * smtpd lives in an empty jail: no /etc/passwd, no aliases index. So before
 * the jail a helper process is forked (smtpd_local_pre_drop): it drops to
 * the user like every child (not jailed, not dumpable, dies with smtpd) and
 * answers one question per packet on a SOCK_SEQPACKET pair:
 * {u32 id, address} -> {u32 id, '1' | '0' | 'T'}. smtpd asks synchronously
 * with a bounded wait (LOCAL_CHECK_MS): the alias index is a local file
 * read, but getpwnam goes through NSS and could be slow with a network
 * directory (LDAP); a late or missing answer is a temporary failure (451),
 * and a late answer is recognised by its id and dropped. Must never let the
 * helper keep a listener or the readiness pipe, never block longer than
 * LOCAL_CHECK_MS per recipient.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "smtpd.h"
#include "filter/filter_policy.h"
#include "local/local_rcpt.h"
#include "util/clock.h"
#include "util/log.h"

#define LOCAL_CHECK_MS  5000
#define LOCAL_ADDR_MAX  1024

static int qfd = -1;
static uint32_t next_id;

/* The helper: answer until smtpd goes away. */
static void __attribute__((noreturn)) helper(const struct config *cfg, int fd)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    server_drop_privileges(cfg);
    prctl(PR_SET_DUMPABLE, 0);
    struct aliases_db *db = aliases_db_new(cfg->local_aliases);
    unsigned char q[4 + LOCAL_ADDR_MAX + 1];
    for (;;) {
        ssize_t n = recv(fd, q, sizeof(q) - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 4)
            _exit(0);
        q[n] = '\0';
        int r = memchr(q + 4, '\0', (size_t)n - 4) ? 0
                                                    : local_rcpt_known(cfg, db, (char *)q + 4);
        unsigned char a[5];
        memcpy(a, q, 4);
        a[4] = r > 0 ? '1' : r == 0 ? '0' : 'T';
        if (send(fd, a, sizeof(a), MSG_NOSIGNAL) < 0)
            _exit(0);
    }
}

/* The policy's local check: ask the helper. */
static int ask(const char *addr)
{
    size_t len = strlen(addr);
    if (qfd < 0 || len > LOCAL_ADDR_MAX)
        return qfd < 0 ? -1 : 0;
    unsigned char q[4 + LOCAL_ADDR_MAX];
    uint32_t id = ++next_id;
    memcpy(q, &id, 4);
    memcpy(q + 4, addr, len);
    if (send(qfd, q, 4 + len, MSG_NOSIGNAL) < 0) {
        log_error("local recipient check: %m");
        return -1;
    }
    int64_t deadline = clock_now_ms() + LOCAL_CHECK_MS;
    for (;;) {
        int64_t left = deadline - clock_now_ms();
        struct pollfd p = { qfd, POLLIN, 0 };
        if (left <= 0 || (poll(&p, 1, (int)left) <= 0 && errno != EINTR)) {
            log_warn("local recipient check: no answer within %d ms", LOCAL_CHECK_MS);
            return -1;
        }
        unsigned char a[5];
        ssize_t n = recv(qfd, a, sizeof(a), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n != 5) {
            log_error("local recipient check: helper gone");
            close(qfd);
            qfd = -1;
            return -1;
        }
        uint32_t got;
        memcpy(&got, a, 4);
        if (got == id)
            return a[4] == '1' ? 1 : a[4] == '0' ? 0 : -1;
        /* an answer to an earlier question that timed out: drop it */
    }
}

void smtpd_local_pre_drop(struct server *srv)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        log_fatal("socketpair: %m");
    pid_t pid = fork();
    if (pid < 0)
        log_fatal("fork: %m");
    if (pid == 0) {
        /* nothing of smtpd's: no listener, no readiness pipe */
        for (int i = 0; i < srv->nfds; i++)
            close(srv->fds[i].fd);
        if (srv->ready_fd >= 0)
            close(srv->ready_fd);
        close(sv[0]);
        helper(srv->cfg, sv[1]);
    }
    close(sv[1]);
    qfd = sv[0];
    policy_set_local_check(ask);
}
