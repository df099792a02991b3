/*
 * master_signal.c - master's signals (SIGCHLD, SIGHUP, SIGTERM, SIGINT) as
 * bytes on a non-blocking self-pipe, read by the poll loop in master.c, so
 * no real work ever runs inside a signal handler.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "master.h"

static int sig_pipe[2] = { -1, -1 };
static const int handled[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT };
#define NHANDLED (int)(sizeof(handled) / sizeof(handled[0]))

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(sig_pipe[1], &b, 1) < 0) { /* pipe full: a byte is pending anyway */ }
    errno = saved;
}

int msignal_init(void)
{
    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    for (int i = 0; i < NHANDLED; i++)
        if (sigaction(handled[i], &sa, NULL) < 0)
            return -1;
    signal(SIGPIPE, SIG_IGN);
    return sig_pipe[0];
}

int msignal_next(void)
{
    unsigned char b;
    ssize_t n = read(sig_pipe[0], &b, 1);
    return n == 1 ? b : 0;
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
