/*
 * delivery_pipe.c - "|command" targets from aliases and .forward files:
 * /bin/sh -c COMMAND (the administrator's or the user's own command, as
 * Postfix local(8) runs it) with the message on stdin, in a new session,
 * with a clean environment (PATH, HOME, USER, LOGNAME, SHELL, SENDER,
 * RECIPIENT), cwd the user's home (or /), bounded by PIPE_TIMEOUT_SECS.
 *
 * Runs in a process that already is the target's identity (never root:
 * delivery_expand.c). Values from the mail reach the command only as
 * environment variables, never in its text. Exit status: 0 delivered,
 * 75 (EX_TEMPFAIL) deferred, a signal deferred, anything else bounced with
 * the first line of the command's output.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include "delivery.h"
#include "util/clock.h"
#include "daemon/server.h"
#include "util/log.h"

#define PIPE_TIMEOUT_SECS 300
#define PIPE_OUTPUT_KEEP  200       /* bytes of output kept for the reason */
#define EX_TEMPFAIL_CODE  75

/* The child: stdin/stdout/stderr set, a clean environment, exec. */
static void exec_child(const struct dlv_target *t, const struct dlv_msg *m, int in, int out)
{
    setsid();
    signal(SIGPIPE, SIG_DFL);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
        _exit(EX_TEMPFAIL_CODE);
    closefrom(3);
    if ((t->id.home[0] == '\0' || chdir(t->id.home) < 0) && chdir("/") < 0)
        _exit(EX_TEMPFAIL_CODE);
    buf_t e[7];
    char *envp[8];
    const char *vals[7][2] = {
        { "PATH", "/usr/local/bin:/usr/bin:/bin" }, { "HOME", t->id.home[0] ? t->id.home : "/" },
        { "USER", t->id.user }, { "LOGNAME", t->id.user }, { "SHELL", "/bin/sh" },
        { "SENDER", m->env->sender }, { "RECIPIENT", t->rcpt },
    };
    for (int i = 0; i < 7; i++) {
        buf_init(&e[i], 64);
        buf_printf(&e[i], "%s=%s", vals[i][0], vals[i][1]);
        envp[i] = e[i].data;
    }
    envp[7] = NULL;
    char *argv[] = { "sh", "-c", t->value, NULL };
    execve("/bin/sh", argv, envp);
    _exit(EX_TEMPFAIL_CODE);
}

/* Feed headers + content to fd (non-blocking) and collect output from ofd
 * until the command ends its output or the deadline passes. 0, or -1 on
 * timeout. */
static int pump(const struct dlv_msg *m, const buf_t *head, int fd, int ofd, buf_t *output,
                int64_t deadline)
{
    uint64_t total = head->len + m->env->content_len, sent = 0;
    char chunk[65536];
    size_t clen = 0, coff = 0;
    while (ofd >= 0) {
        int64_t left = deadline - clock_now_ms();
        struct pollfd p[2] = { { ofd, POLLIN, 0 }, { fd, POLLOUT, 0 } };
        int np = fd >= 0 ? 2 : 1;
        if (left <= 0 ||
            (poll(p, (nfds_t)np, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR)) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        if (p[0].revents) {
            char o[4096];
            ssize_t k = read(ofd, o, sizeof(o));
            if (k <= 0 && !(k < 0 && (errno == EINTR || errno == EAGAIN)))
                ofd = -1;
            else if (k > 0 && output->len < PIPE_OUTPUT_KEEP)
                buf_append(output, o, (size_t)k);
        }
        if (np == 2 && p[1].revents) {
            if (coff == clen) {         /* next piece: the headers, then the content */
                coff = 0;
                if (sent < head->len) {
                    clen = head->len - sent < sizeof(chunk) ? head->len - sent : sizeof(chunk);
                    memcpy(chunk, head->data + sent, clen);
                } else {
                    uint64_t at = sent - head->len, rest = m->env->content_len - at;
                    clen = rest < sizeof(chunk) ? (size_t)rest : sizeof(chunk);
                    if (m->content)
                        memcpy(chunk, m->content + at, clen);
                    else if (fdio_pread_all(m->fd, chunk, clen, m->env->content_off + (off_t)at) < 0)
                        clen = 0, sent = total;     /* unreadable: end the input */
                }
            }
            ssize_t k = clen > coff ? write(fd, chunk + coff, clen - coff) : 0;
            if (k > 0) {
                coff += (size_t)k;
                sent += (uint64_t)k;
            }
            if ((k < 0 && errno != EAGAIN && errno != EINTR) || sent >= total) {
                close(fd);              /* done, or the command stopped reading */
                fd = -1;
            }
        }
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

/* Wait for pid until the deadline; the status, or -1 (killed on timeout). */
static int reap(pid_t pid, int64_t deadline)
{
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return st;
        if (w < 0 && errno != EINTR)
            return -1;
        if (clock_now_ms() >= deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            return -1;
        }
        struct timespec ts = { 0, 20 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

static void set_outcome(struct dlv_result *r, int st, int timed_out, int budget_cut,
                        buf_t *output)
{
    buf_append_char(output, '\0');
    char *nl = strpbrk(output->data, "\r\n");
    if (nl)
        *nl = '\0';
    buf_t why;
    buf_init(&why, 64);
    buf_append_printable(&why, output->data, strlen(output->data));
    if (timed_out && budget_cut)        /* not the command's fault: again later */
        dlv_result_set(r, DS_DEFERRED, "4.4.7",
                       "command stopped: this delivery request's time budget is used up");
    else if (timed_out)
        dlv_result_set(r, DS_BOUNCED, "5.3.0", "command time limit (%ds) exceeded",
                       PIPE_TIMEOUT_SECS);
    else if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        dlv_result_set(r, DS_DELIVERED, "2.0.0", "delivered to command");
    else if (WIFSIGNALED(st))
        dlv_result_set(r, DS_DEFERRED, "4.3.0", "command killed by signal %d", WTERMSIG(st));
    else if (WEXITSTATUS(st) == EX_TEMPFAIL_CODE)
        dlv_result_set(r, DS_DEFERRED, "4.3.0", "command deferred: %s", why.data);
    else
        dlv_result_set(r, DS_BOUNCED, "5.3.0", "command exited with status %d: %s",
                       WEXITSTATUS(st), why.data);
    buf_free(&why);
}

void delivery_pipe(const struct dlv_msg *m, const struct dlv_target *t, struct dlv_result *r)
{
    if (t->id.uid == 0 || geteuid() == 0) {
        dlv_result_set(r, DS_DEFERRED, "4.3.0", "refusing to run a command as root");
        return;
    }
    int in[2] = { -1, -1 }, out[2] = { -1, -1 };
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
        dlv_result_errno(r, errno, "pipe");
        if (in[0] >= 0) {
            close(in[0]);
            close(in[1]);
        }
        return;
    }
    int64_t deadline = clock_now_ms() + PIPE_TIMEOUT_SECS * 1000LL;
    int budget_cut = deadline > m->deadline_ms;
    if (budget_cut)
        deadline = m->deadline_ms;      /* what is left of the request's budget */
    pid_t pid = fork();
    if (pid == 0)
        exec_child(t, m, in[0], out[1]);
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        dlv_result_errno(r, errno, "fork");
        close(in[1]);
        close(out[0]);
        return;
    }
    fd_set_nonblock(in[1], 1);
    fd_set_nonblock(out[0], 1);
    buf_t head, output;
    buf_init(&head, 256);
    buf_init(&output, 256);
    dlv_headers(&head, m->env->sender, t->rcpt);
    int timed_out = pump(m, &head, in[1], out[0], &output, deadline) < 0;
    close(out[0]);
    int st = reap(pid, timed_out ? 0 : deadline);
    set_outcome(r, st, timed_out || st < 0, budget_cut, &output);
    buf_free(&head);
    buf_free(&output);
}
