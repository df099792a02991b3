/*
 * rl_svc_cmd.c - the cmd service (rl_services.c): fork + execve a program (no
 * shell) with the message on stdin, a clean environment and a timeout; and
 * the message content reader cmd and smtp share. Never passes a per-call
 * argument that begins with '-'.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "util/clock.h"
#include "util/log.h"
#include "mail/qfile.h"
#include "rules/rl_svc.h"

/* ---- the message content (cmd stdin, smtp DATA) ---------------------------------------------------- */
int svc_content_open(struct rl_vm *vm, struct content *c)
{
    c->fd = -1;
    c->len = 0;
    const char *path = vm->txn->f[RL_MSG_PATH];
    if (*path == '\0')
        return 0;
    struct qf_env env;
    char err[128];
    c->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0 || qf_read(c->fd, &env, err, sizeof(err)) < 0) {
        log_warn("rules: cannot read message %s", path);
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->off = env.content_off;
    c->len = env.content_len;
    qf_env_free(&env);
    return 0;
}

/* ---- cmd ---------------------------------------------------------------------------------------------- */
static int cmd_open(struct rl_service *s, const char **opt, const struct rl_value *val, int nopt,
                    char *err, size_t errlen)
{
    const char *path = svc_opt_str(opt, val, nopt, "path", "");
    if (path[0] != '/') {
        snprintf(err, errlen, "cmd service %s: path must be absolute", s->name);
        return -1;
    }
    const struct rl_list *args = NULL;
    for (int i = 0; i < nopt; i++)
        if (strcmp(opt[i], "args") == 0)
            args = val[i].u.p;
    s->argc = 1 + (args ? (int)args->n : 0);
    s->argv = xcalloc((size_t)s->argc + 1, sizeof(char *));
    s->argv[0] = xstrdup(path);
    for (int i = 1; i < s->argc; i++)
        s->argv[i] = xstrndup(args->v[i - 1].u.s, args->v[i - 1].len);
    s->timeout = svc_opt_int(opt, val, nopt, "timeout", 10);
    if (s->timeout <= 0 || s->timeout > RL_SVC_TIMEOUT_MAX) {
        snprintf(err, errlen, "cmd service %s: timeout must be between 1s and %ds", s->name,
                 RL_SVC_TIMEOUT_MAX);
        return -1;
    }
    return 0;
}

static void cmd_close(struct rl_service *s)
{
    for (int i = 0; i < s->argc; i++)
        free(s->argv[i]);
    free(s->argv);
}

/* The child of a threaded process: async-signal-safe calls only. */
static void child_exec(const char **argv, int in_fd, int out_fd, uid_t uid, gid_t gid)
{
    /* filter's workers block every signal and the process ignores SIGPIPE:
     * both would survive execve */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, &dfl, NULL) < 0) {
            /* glibc refuses its own signals (32, 33), which an ignoring
             * parent may have passed down: ask the kernel directly */
            struct { void (*h)(int); unsigned long flags; void (*r)(void); unsigned long mask; } k =
                { SIG_DFL, 0, NULL, 0 };
            syscall(SYS_rt_sigaction, sig, &k, NULL, sizeof(k.mask));
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setpgid(0, 0);                   /* a timeout kills the whole group */
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0)
        _exit(126);
    if (close_range(3, ~0U, 0) < 0)
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    if (chdir("/") < 0)
        _exit(126);
    if (uid != (uid_t)-1) {
        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
            _exit(126);
        if (setuid(0) == 0)
            _exit(126);     /* must not be able to regain root */
    }
    char *const envp[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", NULL };
    execve(argv[0], (char *const *)argv, envp);
    _exit(127);
}

/* Root never runs a rules command as root (`postern rules test` run by
 * root, a unit test): it runs as nobody. filter itself is unprivileged. */
static int cmd_identity(uid_t *uid, gid_t *gid)
{
    *uid = (uid_t)-1;
    *gid = (gid_t)-1;
    if (getuid() != 0 && geteuid() != 0)
        return 0;
    struct passwd pw, *res = NULL;
    char b[1024];
    if (getpwnam_r("nobody", &pw, b, sizeof(b), &res) != 0 || res == NULL)
        return -1;
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

static void kill_and_reap(pid_t pid, int *st)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, st, 0) < 0 && errno == EINTR)
        ;
}

static int cmd_exec(struct rl_service *s, struct rl_vm *vm, const char **extra, int nextra, buf_t *out,
                    int *status_r)
{
    buf_reset(out);
    for (int i = 0; i < nextra; i++)
        if (extra[i][0] == '-') {
            /* a value the rules computed (from mail, as often as not): data,
             * never an option */
            log_warn("rules: service %s: not running %s: argument %d begins with '-' and would "
                     "be taken as an option", s->name, s->argv[0], i + 1);
            return SVC_TEMPFAIL;
        }
    int cut = 0;
    int64_t left = svc_wait_ms(s->timeout, &cut);
    if (left <= 0) {
        log_warn("rules: service %s: not running %s: evaluation deadline reached", s->name,
                 s->argv[0]);
        return SVC_TEMPFAIL;
    }
    int64_t end = clock_now_ms() + left;
    uid_t uid;
    gid_t gid;
    if (cmd_identity(&uid, &gid) < 0) {
        log_warn("rules: service %s: running as root and no user nobody: not running %s",
                 s->name, s->argv[0]);
        return SVC_TEMPFAIL;
    }
    struct content c;
    if (svc_content_open(vm, &c) < 0)
        return SVC_TEMPFAIL;
    const char **argv = xcalloc((size_t)(s->argc + nextra + 1), sizeof(char *));
    for (int i = 0; i < s->argc; i++)
        argv[i] = s->argv[i];
    for (int i = 0; i < nextra; i++)
        argv[s->argc + i] = extra[i];
    int inp[2] = { -1, -1 }, outp[2] = { -1, -1 };
    pid_t pid = -1;
    int err = 0;
    if (pipe2(inp, O_CLOEXEC) == 0 && pipe2(outp, O_CLOEXEC) == 0) {
        signal(SIGPIPE, SIG_IGN);       /* a child that stops reading: EPIPE */
        pid = fork();
        if (pid == 0)
            child_exec(argv, inp[0], outp[1], uid, gid);
    }
    if (pid < 0)
        err = errno;
    free(argv);
    if (inp[0] >= 0)
        close(inp[0]);
    if (outp[1] >= 0)
        close(outp[1]);
    if (pid < 0) {
        log_warn("rules: service %s: cannot run %s: %s", s->name, s->argv[0], strerror(err));
        if (inp[1] >= 0)
            close(inp[1]);
        if (outp[0] >= 0)
            close(outp[0]);
        if (c.fd >= 0)
            close(c.fd);
        return SVC_TEMPFAIL;
    }
    setpgid(pid, pid);                  /* also here: no window before the child's own */
    fcntl(inp[1], F_SETFL, O_NONBLOCK);
    int wfd = inp[1];
    if (c.fd < 0 || c.len == 0) {
        close(wfd);
        wfd = -1;
    }
    uint64_t sent = 0;
    char chunk[16384];
    size_t clen = 0, cpos = 0;
    int timed_out = 0;
    for (;;) {
        struct pollfd pf[2] = { { outp[0], POLLIN, 0 }, { wfd, POLLOUT, 0 } };
        int64_t ms = end - clock_now_ms();
        if (ms <= 0) {
            timed_out = 1;
            break;
        }
        int n = poll(pf, wfd >= 0 ? 2 : 1, (int)ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (wfd >= 0 && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            if (cpos == clen) {
                size_t want = c.len - sent > sizeof(chunk) ? sizeof(chunk) : (size_t)(c.len - sent);
                ssize_t r = pread(c.fd, chunk, want, c.off + (off_t)sent);
                clen = r > 0 ? (size_t)r : 0;
                cpos = 0;
                sent = r > 0 ? sent + clen : c.len;     /* a read error ends the input */
            }
            ssize_t w = clen > cpos ? write(wfd, chunk + cpos, clen - cpos) : 0;
            if (w > 0)
                cpos += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                cpos = clen, sent = c.len;      /* child stopped reading */
            if (cpos == clen && sent >= c.len) {
                close(wfd);
                wfd = -1;
            }
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char rb[4096];
            ssize_t r = read(outp[0], rb, sizeof(rb));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            if (out->len < OUT_MAX)     /* the rest is drained, not kept */
                buf_append(out, rb, out->len + (size_t)r > OUT_MAX ? OUT_MAX - out->len : (size_t)r);
        }
    }
    if (wfd >= 0)
        close(wfd);
    close(outp[0]);
    if (c.fd >= 0)
        close(c.fd);
    /* wait for the exit without reaping (WNOWAIT): the group's id stays
     * ours until the reap, so killing the group never hits a stranger */
    while (!timed_out) {
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        int w = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
        if (w == 0 && si.si_pid == pid)
            break;
        if (w < 0 && errno != EINTR) {
            timed_out = 1;
            break;
        }
        if (clock_now_ms() >= end) {
            timed_out = 1;
            break;
        }
        usleep(2000);
    }
    int st = 0;
    kill_and_reap(pid, &st);    /* nothing the command started outlives the call */
    if (timed_out) {
        if (cut)
            log_warn("rules: service %s: %s killed at the evaluation deadline", s->name, s->argv[0]);
        else
            log_warn("rules: service %s: %s timed out after %lds", s->name, s->argv[0], s->timeout);
        return SVC_TEMPFAIL;
    }
    while (out->len && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r'))
        buf_truncate(out, out->len - 1);
    if (!WIFEXITED(st)) {
        log_warn("rules: service %s: %s killed by signal %d", s->name, s->argv[0], WTERMSIG(st));
        return SVC_TEMPFAIL;
    }
    if (WEXITSTATUS(st) == 126 || WEXITSTATUS(st) == 127)
        log_warn("rules: service %s: cannot run %s (exit %d)", s->name, s->argv[0], WEXITSTATUS(st));
    *status_r = WEXITSTATUS(st);
    return SVC_FOUND;
}

const struct rl_svc_ops rl_svc_cmd_ops = {
    SVC_CMD, "cmd", cmd_open, cmd_close, NULL, NULL, cmd_exec,
};
