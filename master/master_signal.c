/*
 * master_signal.c - master's signals (SIGCHLD, SIGHUP, SIGTERM, SIGINT,
 * SIGUSR1) as records on a non-blocking self-pipe, read by the poll loop in
 * master.c, so no real work ever runs inside a signal handler. Each record
 * names the sender (pid and uid from the kernel's siginfo): reload and
 * stop are logged with who asked.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "master.h"

static int sig_pipe[2] = { -1, -1 };
static const int handled[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGUSR1 };
#define NHANDLED (int)(sizeof(handled) / sizeof(handled[0]))

/* one write of a small record on a pipe is atomic (< PIPE_BUF) */
static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    struct msig r = { sig, si ? si->si_pid : 0, si ? si->si_uid : (uid_t)-1 };
    if (write(sig_pipe[1], &r, sizeof(r)) < 0) { /* pipe full: a record is pending anyway */ }
    errno = saved;
}

int msignal_init(void)
{
    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP | SA_SIGINFO;
    for (int i = 0; i < NHANDLED; i++)
        if (sigaction(handled[i], &sa, NULL) < 0)
            return -1;
    signal(SIGPIPE, SIG_IGN);
    return sig_pipe[0];
}

int msignal_next(struct msig *r)
{
    ssize_t n = read(sig_pipe[0], r, sizeof(*r));
    return n == (ssize_t)sizeof(*r) ? r->sig : 0;
}

void msignal_block(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < NHANDLED; i++)
        sigaddset(&set, handled[i]);
    sigprocmask(SIG_BLOCK, &set, old);
}

void msignal_restore(const sigset_t *old)
{
    sigprocmask(SIG_SETMASK, old, NULL);
}

/* After fork in a child: the handlers would write into master's pipe. */
void msignal_child_reset(void)
{
    for (int i = 0; i < NHANDLED; i++)
        signal(handled[i], SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}
